//! `language_score(text)`: how sure the language identifier is of
//! `detect_language(text)`, from 0 to 1 (the `commoncrawl` stage keeps
//! documents scoring at least its `language_threshold`, 0.5 by default, as
//! CCNet); NULL for NULL and for text with no language to tell.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, Float64Builder};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::language::identify;

/// The `language_score` UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LanguageScore {
    signature: Signature,
}

impl LanguageScore {
    /// `language_score(text)`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(LanguageScore {
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The language identifier's confidence in detect_language(text), 0 to 1; NULL when no language can be told.",
        "language_score(text)",
    )
    .with_argument("text", "Any text (any string type).")
    .with_sql_example("SELECT url, language_score(text) FROM commoncrawl WHERE language_score(text) < 0.9 LIMIT 5;")
    .build()
});

impl ScalarUDFImpl for LanguageScore {
    fn name(&self) -> &str {
        "language_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = super::text_argument(self.name(), &args)?;
        let texts = array.as_string::<i32>();
        let mut out = Float64Builder::with_capacity(texts.len());
        for i in 0..texts.len() {
            out.append_option(
                texts
                    .is_valid(i)
                    .then(|| identify(texts.value(i)))
                    .flatten()
                    .map(|g| g.score),
            );
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
