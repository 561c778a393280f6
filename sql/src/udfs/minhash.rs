//! `minhash(text [, permutations [, ngram]])`: the MinHash signature of a text
//! (see [`crate::minhash`]), a list of `permutations` UInt64 slots (default
//! 160, the `dedup` stage's 20 bands × 8 rows) over word `ngram`-grams (default 5).
//! Compare two with `minhash_jaccard`.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, ListBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::minhash::{DEFAULT_NGRAM, DEFAULT_PERMUTATIONS, MAX_PERMUTATIONS, MinHasher};

/// The `minhash` UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHash {
    signature: Signature,
}

impl MinHash {
    /// `minhash(text [, permutations [, ngram]])`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(MinHash {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

/// The type of a signature: a list of UInt64 slots.
pub fn signature_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::UInt64, true)))
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The MinHash signature of a text: lowercased, cut into words at anything that is not a letter or digit, \
         hashed as overlapping word n-grams; slot i is the least of a fixed random permutation of those hashes. \
         Two signatures agree in a slot with probability equal to the Jaccard similarity of the texts' n-gram sets. \
         The permutations are seeded, so signatures from any run compare.",
        "minhash(text [, permutations [, ngram]])",
    )
    .with_argument("text", "The text (any string type); NULL gives NULL.")
    .with_argument(
        "permutations",
        "Slots of the signature, a constant 1..4096 (default 160: the `dedup` stage's 20 bands × 8 rows).",
    )
    .with_argument("ngram", "Words per shingle, a constant ≥ 1 (default 5).")
    .with_sql_example("SELECT minhash_jaccard(minhash(a.text), minhash(b.text)) FROM c4 a, c4 b LIMIT 1;")
    .with_related_udf("minhash_jaccard")
    .build()
});

impl ScalarUDFImpl for MinHash {
    fn name(&self) -> &str {
        "minhash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 3 {
            return plan_err!("minhash takes (text [, permutations [, ngram]])");
        }
        let mut out = vec![DataType::Utf8];
        out.extend(arg_types[1..].iter().map(|_| DataType::Int64));
        Ok(out)
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(signature_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let permutations = constant(&args, 1, DEFAULT_PERMUTATIONS)?;
        let ngram = constant(&args, 2, DEFAULT_NGRAM)?;
        if !(1..=MAX_PERMUTATIONS).contains(&permutations) || ngram == 0 {
            return exec_err!("minhash: permutations must be 1..={MAX_PERMUTATIONS} and ngram at least 1");
        }
        let hasher = MinHasher::new(permutations, ngram);
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = texts.as_string::<i32>();
        let mut out = ListBuilder::with_capacity(UInt64Builder::with_capacity(texts.len() * permutations), texts.len());
        for i in 0..texts.len() {
            if texts.is_valid(i) {
                out.values().append_slice(&hasher.signature(texts.value(i)));
                out.append(true);
            } else {
                out.append_null();
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

/// Argument `index` as a positive constant, or `default` when absent.
fn constant(args: &ScalarFunctionArgs, index: usize, default: usize) -> Result<usize> {
    let Some(arg) = args.args.get(index) else {
        return Ok(default);
    };
    let value = match arg {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v))) => Some(*v),
        ColumnarValue::Array(a) => {
            let a = a.as_primitive::<Int64Type>();
            // The same value in every row is as good as a constant.
            (!a.is_empty() && a.null_count() == 0 && a.values().iter().all(|v| *v == a.value(0))).then(|| a.value(0))
        }
        _ => None,
    };
    match value {
        Some(v) if v > 0 => Ok(v as usize),
        _ => exec_err!("minhash: argument {} must be a positive constant", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn signatures_through_sql_have_the_asked_size_and_match_the_library() {
        let ctx = SessionContext::new();
        ctx.register_udf(MinHash::udf());
        let batches = ctx
            .sql("SELECT minhash('Hello, world!') AS a, minhash(arrow_cast('x y z', 'Utf8View'), 16, 2) AS b, minhash(NULL) AS c")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let a = batches[0].column(0).as_list::<i32>().value(0);
        assert_eq!(
            a.as_primitive::<arrow::datatypes::UInt64Type>().values().to_vec(),
            MinHasher::default().signature("hello world")
        );
        assert_eq!(batches[0].column(1).as_list::<i32>().value(0).len(), 16);
        assert!(batches[0].column(2).is_null(0));
        let err = ctx
            .sql("SELECT minhash('x', 0)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("positive constant"), "{err}");
    }
}
