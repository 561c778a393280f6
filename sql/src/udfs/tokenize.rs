//! `tokenize(text)` and `token_count(text)`: a pipeline tokenizer as SQL
//! functions. Each call encodes a whole Arrow batch at once, in parallel (see
//! [`TokenEncoder::encode_batch`]); long documents are segmented so they stay
//! linear. `tokenize` returns the ids (`List<UInt32>`, without `</s>`: the
//! shard writer appends it); `token_count` their number.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, UInt32Builder, UInt64Builder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::encoder::TokenEncoder;

/// What a call returns: the ids, or only how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Ids,
    Count,
}

/// `tokenize` / `token_count` bound to one tokenizer.
#[derive(Debug)]
pub struct Tokenize {
    encoder: Arc<TokenEncoder>,
    output: Output,
    signature: Signature,
}

// Two instances are the same function when they share output and tokenizer bytes.
impl PartialEq for Tokenize {
    fn eq(&self, other: &Self) -> bool {
        self.output == other.output && self.encoder.sha256() == other.encoder.sha256()
    }
}

impl Eq for Tokenize {}

impl Hash for Tokenize {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.output.hash(state);
        self.encoder.sha256().hash(state);
    }
}

impl Tokenize {
    /// `tokenize(text)`: the token ids of each text.
    pub fn tokenize_udf(encoder: Arc<TokenEncoder>) -> ScalarUDF {
        Self::udf(encoder, Output::Ids)
    }

    /// `token_count(text)`: how many tokens each text encodes to.
    pub fn token_count_udf(encoder: Arc<TokenEncoder>) -> ScalarUDF {
        Self::udf(encoder, Output::Count)
    }

    fn udf(encoder: Arc<TokenEncoder>, output: Output) -> ScalarUDF {
        ScalarUDF::from(Tokenize {
            encoder,
            output,
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

/// The type `tokenize` returns.
pub fn ids_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt32, false)))
}

static TOKENIZE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The token ids of a text under the pipeline's trained tokenizer (its `tokenizer` stage's tokenizer.json), \
         without special tokens, as HF encode(text, add_special_tokens=False); the shards add `</s>` after each \
         document. Registered once that stage has run.",
        "tokenize(text)",
    )
    .with_argument("text", "The text (any string type); NULL gives NULL.")
    .with_related_udf("token_count")
    .build()
});

static TOKEN_COUNT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "How many tokens a text encodes to under the pipeline's trained tokenizer (the length of tokenize(text)). \
         Registered once the `tokenizer` stage has run.",
        "token_count(text)",
    )
    .with_argument("text", "The text (any string type); NULL gives NULL.")
    .with_sql_example("SELECT sum(token_count(text)) FROM wikipedia;")
    .with_related_udf("tokenize")
    .build()
});

impl ScalarUDFImpl for Tokenize {
    fn name(&self) -> &str {
        match self.output {
            Output::Ids => "tokenize",
            Output::Count => "token_count",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::Ids => ids_type(),
            Output::Count => DataType::UInt64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = super::text_argument(self.name(), &args)?;
        let texts = array.as_string::<i32>();
        let inputs: Vec<&str> = (0..texts.len())
            .map(|i| if texts.is_null(i) { "" } else { texts.value(i) })
            .collect();
        let encoded = self
            .encoder
            .encode_batch(&inputs)
            .map_err(|e| exec_datafusion_err!("{}: {e}", self.name()))?;
        let out: ArrayRef = match self.output {
            Output::Ids => {
                let total: usize = encoded.iter().map(Vec::len).sum();
                let values = UInt32Builder::with_capacity(total);
                let mut list = ListBuilder::with_capacity(values, encoded.len())
                    .with_field(Arc::new(Field::new_list_field(DataType::UInt32, false)));
                for (i, ids) in encoded.iter().enumerate() {
                    if texts.is_null(i) {
                        list.append_null();
                    } else {
                        list.values().append_slice(ids);
                        list.append(true);
                    }
                }
                Arc::new(list.finish())
            }
            Output::Count => {
                let mut counts = UInt64Builder::with_capacity(encoded.len());
                for (i, ids) in encoded.iter().enumerate() {
                    if texts.is_null(i) {
                        counts.append_null();
                    } else {
                        counts.append_value(ids.len() as u64);
                    }
                }
                Arc::new(counts.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            Output::Ids => &TOKENIZE_DOC,
            Output::Count => &TOKEN_COUNT_DOC,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::tests::tiny_tokenizer;

    #[tokio::test]
    async fn sql_tokenize_and_token_count_agree_with_the_encoder() {
        let encoder = Arc::new(TokenEncoder::from_bytes(&tiny_tokenizer(false), "tiny").unwrap());
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_udf(Tokenize::tokenize_udf(encoder.clone()));
        ctx.register_udf(Tokenize::token_count_udf(encoder.clone()));
        let batches = ctx
            .sql("SELECT tokenize(t) AS ids, token_count(t) AS n FROM (VALUES ('the quick fox 42'), (NULL)) AS v(t)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = &batches[0];
        let ids = batch.column(0).as_list::<i32>();
        let n = batch.column(1).as_primitive::<arrow::datatypes::UInt64Type>();
        let expected = encoder.encode_whole("the quick fox 42").unwrap();
        let got: Vec<u32> = ids
            .value(0)
            .as_primitive::<arrow::datatypes::UInt32Type>()
            .values()
            .to_vec();
        assert_eq!(got, expected);
        assert_eq!(n.value(0), expected.len() as u64);
        assert!(ids.is_null(1) && n.is_null(1));
    }
}
