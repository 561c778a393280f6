//! `ref_probability(text)`: the probability, under the pipeline's
//! `ref_classifier`, that a page is like the pages Wikipedia cites (LLaMA's
//! quality classifier); NULL for NULL. Registered by `sql` once a
//! `ref_classifier` stage has run.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::quality::RefClassifier;
use crate::quality::ref_classifier::Scratch;

/// `ref_probability` bound to one classifier.
#[derive(Debug)]
pub struct RefProbability {
    model: Arc<RefClassifier>,
    /// What identifies the model (its file's digest).
    version: String,
    signature: Signature,
}

impl PartialEq for RefProbability {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Eq for RefProbability {}

impl Hash for RefProbability {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.version.hash(state);
    }
}

impl RefProbability {
    /// `ref_probability(text)` under `model`, identified by `version`.
    pub fn udf(model: Arc<RefClassifier>, version: String) -> ScalarUDF {
        ScalarUDF::from(RefProbability {
            model,
            version,
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The probability that a page is like the pages Wikipedia cites, under the pipeline's ref_classifier \
         (LLaMA's quality classifier; cc_quality keeps pages at 0.25 or more). Registered once a ref_classifier \
         stage has run.",
        "ref_probability(text)",
    )
    .with_argument("text", "Any text (any string type).")
    .with_sql_example("SELECT url, ref_probability(text) AS p FROM commoncrawl ORDER BY p DESC LIMIT 10;")
    .build()
});

impl ScalarUDFImpl for RefProbability {
    fn name(&self) -> &str {
        "ref_probability"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::array::{Array, AsArray, Float64Builder};
        let array = super::text_argument(self.name(), &args)?;
        let texts = array.as_string::<i32>();
        let mut out = Float64Builder::with_capacity(texts.len());
        let mut scratch = Scratch::default();
        for i in 0..texts.len() {
            out.append_option(
                texts
                    .is_valid(i)
                    .then(|| self.model.probability(texts.value(i), &mut scratch)),
            );
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
