//! `minhash_jaccard(a, b)`: the Jaccard similarity two `minhash` signatures
//! estimate, the share of slots in which they agree (0.0 to 1.0).

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder};
use arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::minhash::estimated_jaccard;

/// The `minhash_jaccard` UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MinHashJaccard {
    signature: Signature,
}

impl MinHashJaccard {
    /// `minhash_jaccard(a, b)`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(MinHashJaccard {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The Jaccard similarity of two texts' n-gram sets as their MinHash signatures estimate it: the share of \
         slots in which the signatures agree. NULL when either is NULL; an error when their sizes differ.",
        "minhash_jaccard(a, b)",
    )
    .with_argument("a", "A signature from minhash(text).")
    .with_argument(
        "b",
        "A signature from minhash(text) with the same permutations and ngram.",
    )
    .with_sql_example("SELECT minhash_jaccard(minhash('a b c d e f'), minhash('a b c d e g'));")
    .with_related_udf("minhash")
    .build()
});

impl ScalarUDFImpl for MinHashJaccard {
    fn name(&self) -> &str {
        "minhash_jaccard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("minhash_jaccard takes two signatures from minhash(text)");
        }
        Ok(vec![super::minhash::signature_type(); 2])
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = args.args[0].to_array(args.number_rows)?;
        let b = args.args[1].to_array(args.number_rows)?;
        let (a, b) = (a.as_list::<i32>(), b.as_list::<i32>());
        let mut out = Float64Builder::with_capacity(a.len());
        for i in 0..a.len() {
            if a.is_null(i) || b.is_null(i) {
                out.append_null();
                continue;
            }
            let (x, y) = (a.value(i), b.value(i));
            let (x, y) = (x.as_primitive::<UInt64Type>(), y.as_primitive::<UInt64Type>());
            match estimated_jaccard(x.values(), y.values()) {
                Some(similarity) => out.append_value(similarity),
                None => {
                    return exec_err!(
                        "minhash_jaccard: signatures of {} and {} slots come from different minhash settings",
                        x.len(),
                        y.len()
                    );
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn identical_texts_score_one_and_different_sizes_are_refused() {
        let ctx = SessionContext::new();
        ctx.register_udf(super::super::minhash::MinHash::udf());
        ctx.register_udf(MinHashJaccard::udf());
        let batches = ctx
            .sql("SELECT minhash_jaccard(minhash('The same text, here.'), minhash('the same text here')) AS same, \
                  minhash_jaccard(minhash('one two three four five six'), minhash('seven eight nine ten eleven twelve')) AS other, \
                  minhash_jaccard(minhash('x'), NULL) AS none")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let column = |i: usize| {
            batches[0]
                .column(i)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone()
        };
        assert_eq!(column(0).value(0), 1.0);
        assert!(column(1).value(0) < 0.1);
        assert!(column(2).is_null(0));
        let err = ctx
            .sql("SELECT minhash_jaccard(minhash('a b'), minhash('a b', 8))")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("different minhash settings"), "{err}");
    }
}
