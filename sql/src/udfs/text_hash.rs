//! `text_hash(text)` and `normalized_text_hash(text)`: the keys of exact
//! deduplication, as 32 lowercase hex characters of XXH3-128.
//!
//! The normalized form lowercases the text and collapses every run of
//! whitespace to one space (trimmed at both ends), so copies that differ only
//! in case, spacing or line breaks share a hash. XXH3-128, not a cryptographic
//! hash: the keys only need to be collision-free by chance (2^-128 per pair),
//! and XXH3 runs at memory speed.

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The exact-dedup key of a text, as a UDF (`normalized` picks the variant).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextHash {
    normalized: bool,
    signature: Signature,
}

impl TextHash {
    /// `text_hash` (the bytes as they are) or `normalized_text_hash`.
    pub fn udf(normalized: bool) -> ScalarUDF {
        ScalarUDF::from(TextHash {
            normalized,
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

/// Lowercase, whitespace runs collapsed to one space, trimmed.
pub fn normalize_for_hash(text: &str, out: &mut String) {
    out.clear();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

/// The hex key of `text`'s bytes.
pub fn hash_hex(text: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

static TEXT_HASH_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The exact-dedup key of a text's bytes: 32 lowercase hex characters of XXH3-128.",
        "text_hash(text)",
    )
    .with_argument("text", "The text (any string type); NULL gives NULL.")
    .with_related_udf("normalized_text_hash")
    .build()
});

static NORMALIZED_TEXT_HASH_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The key exact dedup compares: XXH3-128 (32 hex characters) of the text lowercased, with every run of \
         whitespace collapsed to one space and trimmed, so copies differing only in case or spacing share it.",
        "normalized_text_hash(text)",
    )
    .with_argument("text", "The text (any string type); NULL gives NULL.")
    .with_sql_example(
        "SELECT normalized_text_hash(text) AS key, count(*) AS copies FROM c4 GROUP BY key HAVING count(*) > 1;",
    )
    .with_related_udf("text_hash")
    .build()
});

impl ScalarUDFImpl for TextHash {
    fn name(&self) -> &str {
        if self.normalized {
            "normalized_text_hash"
        } else {
            "text_hash"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut scratch = String::new();
        super::map_text(self.name(), &args, |text| {
            Some(if self.normalized {
                normalize_for_hash(text, &mut scratch);
                hash_hex(&scratch)
            } else {
                hash_hex(text)
            })
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(if self.normalized {
            &NORMALIZED_TEXT_HASH_DOC
        } else {
            &TEXT_HASH_DOC
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn copies_differing_in_case_and_spacing_share_the_normalized_hash_only() {
        let ctx = SessionContext::new();
        ctx.register_udf(TextHash::udf(true));
        ctx.register_udf(TextHash::udf(false));
        let batches = ctx
            .sql(
                "SELECT normalized_text_hash(t), text_hash(t) FROM (VALUES ('Hello  World\n'), ('hello world'), ('hello there'), (NULL)) AS v(t)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &batches[0];
        let (norm, exact) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
        assert_eq!(norm.value(0), norm.value(1));
        assert_ne!(norm.value(0), norm.value(2));
        assert_ne!(exact.value(0), exact.value(1));
        assert_eq!(
            exact.value(1),
            norm.value(1),
            "normalizing normalized text changes nothing"
        );
        assert_eq!(norm.value(0).len(), 32);
        assert!(norm.is_null(3));
    }
}
