//! `detect_language(text)`: the language of a text as the `commoncrawl` stage
//! identifies it (ISO 639-1 where one exists: `en`, `de`...; whatlang's
//! trigram models, offline); NULL for NULL and for text with no language to tell.

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::language::identify;

/// The `detect_language` UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DetectLanguage {
    signature: Signature,
}

impl DetectLanguage {
    /// `detect_language(text)`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(DetectLanguage {
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The language of a text (ISO 639-1 code such as `en`), as the commoncrawl stage identifies it; NULL when none can be told.",
        "detect_language(text)",
    )
    .with_argument("text", "Any text (any string type).")
    .with_sql_example("SELECT detect_language(text) AS lang, count(*) FROM wikipedia GROUP BY lang ORDER BY 2 DESC;")
    .build()
});

impl ScalarUDFImpl for DetectLanguage {
    fn name(&self) -> &str {
        "detect_language"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        super::map_text(self.name(), &args, |text| identify(text).map(|g| g.code.to_string()))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
