//! `perplexity(text, language)`: a text's perplexity under the pipeline's
//! `quality_lm` model of that language (CCNet's score: lower is more like
//! Wikipedia); NULL for NULL, a language without a model, or no words.
//! Registered by `sql` once a `quality_lm` stage has run.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, Float64Builder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::quality::NgramLm;
use crate::quality::ngram_lm::Scratch;

/// `perplexity` bound to one set of language models.
#[derive(Debug)]
pub struct Perplexity {
    models: Arc<BTreeMap<String, NgramLm>>,
    /// What identifies the models (their files' digests).
    version: String,
    signature: Signature,
}

impl PartialEq for Perplexity {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Eq for Perplexity {}

impl Hash for Perplexity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.version.hash(state);
    }
}

impl Perplexity {
    /// `perplexity(text, language)` over `models` (by language), identified by `version`.
    pub fn udf(models: Arc<BTreeMap<String, NgramLm>>, version: String) -> ScalarUDF {
        ScalarUDF::from(Perplexity {
            models,
            version,
            signature: Signature::string(2, Volatility::Immutable),
        })
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The perplexity of a text under the pipeline's quality_lm n-gram model of `language` (lower: more like \
         Wikipedia); NULL when there is no model for the language or the text has no words. Registered once a \
         quality_lm stage has run.",
        "perplexity(text, language)",
    )
    .with_argument("text", "Any text (any string type).")
    .with_argument(
        "language",
        "A language code the quality_lm stage has a model for, such as `en`.",
    )
    .with_sql_example("SELECT url, perplexity(text, language) AS ppl FROM commoncrawl ORDER BY ppl LIMIT 10;")
    .build()
});

impl ScalarUDFImpl for Perplexity {
    fn name(&self) -> &str {
        "perplexity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, language] = args.args.as_slice() else {
            return exec_err!("perplexity takes two arguments: text and language");
        };
        let text = arrow::compute::cast(&text.to_array(args.number_rows)?, &DataType::Utf8)?;
        let language = arrow::compute::cast(&language.to_array(args.number_rows)?, &DataType::Utf8)?;
        let (texts, languages) = (text.as_string::<i32>(), language.as_string::<i32>());
        let mut out = Float64Builder::with_capacity(texts.len());
        let mut scratch = Scratch::default();
        for i in 0..texts.len() {
            let value = (texts.is_valid(i) && languages.is_valid(i))
                .then(|| self.models.get(languages.value(i)))
                .flatten()
                .and_then(|lm| lm.perplexity(texts.value(i), &mut scratch));
            out.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}
