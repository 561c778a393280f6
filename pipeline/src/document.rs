//! The document columns every source emits, and the document id: fixed here,
//! in one place, so dedup, tokenize and `sql` work on any source alike.

use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sha2::{Digest, Sha256};

/// Names of the core document columns, in their fixed order.
pub const DOCUMENT_COLUMNS: [&str; 7] = ["id", "source", "url", "text", "n_chars", "input_file", "input_offset"];

/// The core document fields, in order; sources append their own after these.
pub fn document_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, false),
        Field::new("n_chars", DataType::UInt64, false),
        Field::new("input_file", DataType::Utf8, false),
        Field::new("input_offset", DataType::UInt64, false),
    ]
}

/// A document schema: the core fields followed by a source's own `extra` fields.
pub fn document_schema(extra: Vec<Field>) -> SchemaRef {
    let mut fields = document_fields();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

/// The schema of every `<stage>__quarantine` dataset.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stage", DataType::Utf8, false),
        Field::new("input_file", DataType::Utf8, false),
        Field::new("input_offset", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("excerpt", DataType::Utf8, false),
    ]))
}

/// How many characters of a bad record the quarantine keeps.
pub const QUARANTINE_EXCERPT_CHARS: usize = 200;

/// The stable document id: lowercase hex of the first 16 bytes of
/// SHA-256(`source` + NUL + `locator`). The locator is the input path relative
/// to its `inputs` entry's base, `#`, and the record key or byte offset, so the
/// id survives a move of the inputs to another folder, machine or bucket.
pub fn document_id(source: &str, locator: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0u8]);
    hasher.update(locator.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Builds the core document columns row by row; a source keeps one next to
/// builders for its own extra columns.
#[derive(Debug)]
pub struct DocumentColumnsBuilder {
    source: String,
    id: StringBuilder,
    source_col: StringBuilder,
    url: StringBuilder,
    text: StringBuilder,
    n_chars: UInt64Builder,
    input_file: StringBuilder,
    input_offset: UInt64Builder,
    text_bytes: usize,
}

impl DocumentColumnsBuilder {
    /// A builder for documents of `source`.
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_string(),
            id: StringBuilder::new(),
            source_col: StringBuilder::new(),
            url: StringBuilder::new(),
            text: StringBuilder::new(),
            n_chars: UInt64Builder::new(),
            input_file: StringBuilder::new(),
            input_offset: UInt64Builder::new(),
            text_bytes: 0,
        }
    }

    /// Appends one document; `locator` is the id's locator (see [`document_id`]).
    pub fn append(&mut self, locator: &str, url: Option<&str>, text: &str, input_file: &str, input_offset: u64) {
        self.id.append_value(document_id(&self.source, locator));
        self.source_col.append_value(&self.source);
        self.url.append_option(url);
        self.text.append_value(text);
        self.n_chars.append_value(text.chars().count() as u64);
        self.input_file.append_value(input_file);
        self.input_offset.append_value(input_offset);
        self.text_bytes += text.len();
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.n_chars.len()
    }

    /// True when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Text bytes pending: callers flush well before Arrow's 2 GiB offset limit.
    pub fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// The pending rows as the seven core columns, in schema order.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.text_bytes = 0;
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.source_col.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.n_chars.finish()),
            Arc::new(self.input_file.finish()),
            Arc::new(self.input_offset.finish()),
        ]
    }
}

/// Cuts `text` to at most [`QUARANTINE_EXCERPT_CHARS`] characters for a quarantine row.
pub fn excerpt(text: &str) -> String {
    text.chars().take(QUARANTINE_EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_sha256_prefix_of_source_nul_locator() {
        // Computed independently: printf 'c4\0a.json.gz#0' | sha256sum | cut -c1-32
        assert_eq!(document_id("c4", "a.json.gz#0"), "a9a8b88af4fcc55a4b5894f4ff29f4dd");
        assert_ne!(document_id("c4", "a.json.gz#0"), document_id("c4", "a.json.gz#1"));
        assert_ne!(document_id("c4", "a.json.gz#0"), document_id("books", "a.json.gz#0"));
        assert_eq!(document_id("c4", "x").len(), 32);
    }

    #[test]
    fn builder_counts_characters_not_bytes() {
        let mut b = DocumentColumnsBuilder::new("c4");
        b.append("f#0", None, "héllo", "f", 0);
        let cols = b.finish();
        let n = cols[4].as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
        assert_eq!(n.value(0), 5);
        assert!(b.is_empty());
    }

    #[test]
    fn excerpt_respects_char_boundaries() {
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), QUARANTINE_EXCERPT_CHARS);
    }
}
