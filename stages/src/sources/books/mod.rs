//! The `books` source: Project Gutenberg plain-text books and Books3-style
//! archives, one document per book, as LLaMA §2 ("Gutenberg Project and
//! Books3").
//!
//! - A `.txt` (or `.txt.gz`) input is one book; a `.tar`, `.tar.gz` or `.tgz`
//!   input is a Books3-style archive whose `.txt` entries are books (other
//!   entries are filtered as `not_text`).
//! - [`text`] decodes each book (UTF-8, else its declared or detected
//!   encoding, else quarantined) and strips Project Gutenberg's header and
//!   licence footer; books with no text left are filtered as `empty`.
//! - Archive entries that are links, absolute or `../` paths, or over
//!   `max_book_bytes` are quarantined (see [`crate::archive`]).
//!
//! Book-level near-duplicates (>90% overlap) are removed downstream by a
//! `dedup` stage with `preset = "books"`.

pub mod text;

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use llamaflow_pipeline::document::document_schema;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::Deserialize;

use crate::archive::{ArchiveLimits, TarItem, for_each_tar_entry, read_capped};
use crate::read::open_input;
use crate::records::{ExtraValue, RecordSink, SourceDoc, read_unit_records};

/// The `source` column value.
const SOURCE: &str = "books";

fn default_max_book_bytes() -> u64 {
    256 << 20
}
fn default_max_archive_bytes() -> u64 {
    1 << 40
}

/// `[stages.NAME]` parameters of a `books` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooksConfig {
    /// A book larger than this (decompressed) is quarantined; it bounds memory per book.
    #[serde(default = "default_max_book_bytes")]
    pub max_book_bytes: u64,
    /// An archive decompressing to more than this stops being read (a gzip bomb).
    #[serde(default = "default_max_archive_bytes")]
    pub max_archive_bytes: u64,
}

/// Builds `books` stages.
#[derive(Debug)]
pub struct BooksFactory;

impl StageFactory for BooksFactory {
    fn type_name(&self) -> &'static str {
        "books"
    }

    fn summary(&self) -> &'static str {
        "Project Gutenberg books and Books3-style .tar(.gz) archives, headers and licences stripped"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: BooksConfig = parse_params(&decl.params)?;
        if config.max_book_bytes == 0 || config.max_archive_bytes == 0 {
            return Err(ParamError {
                key: None,
                message: "`max_book_bytes` and `max_archive_bytes` must be positive".into(),
            });
        }
        Ok(Arc::new(BooksStage { config }))
    }
}

fn extra_fields() -> Vec<Field> {
    vec![
        Field::new("gutenberg_id", DataType::UInt64, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("encoding", DataType::Utf8, false),
    ]
}

/// The `books` dataset's schema: core columns plus `gutenberg_id`, `title` and the source `encoding`.
pub fn books_schema() -> SchemaRef {
    document_schema(extra_fields())
}

/// True for inputs read as archives of books.
fn is_archive(relative: &str) -> bool {
    [".tar", ".tar.gz", ".tgz"].iter().any(|e| relative.ends_with(e))
}

/// The `books` stage.
#[derive(Debug)]
pub struct BooksStage {
    config: BooksConfig,
}

#[async_trait]
impl Stage for BooksStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        books_schema()
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let config = self.config.clone();
        read_unit_records(unit, SOURCE, extra_fields(), ctx, move |sink| read_books(sink, &config)).await
    }
}

/// Reads one input: a single book or an archive of them.
fn read_books(sink: &mut RecordSink, config: &BooksConfig) -> Result<(), StageError> {
    let file = sink.file.clone();
    let unreadable = |message: String| StageError::Unreadable {
        file: file.display.clone(),
        message,
    };
    let opened = open_input(&file, sink.progress.clone(), &sink.handle).map_err(|e| unreadable(e.to_string()))?;
    let fault = opened.fault.clone();
    if !is_archive(&file.relative) {
        return match read_capped(opened.reader, config.max_book_bytes) {
            Ok(bytes) => push_book(sink, &file.relative, &file.relative, 0, &bytes),
            Err(_) if fault.happened() => Err(unreadable("the store failed while reading".into())),
            Err(e) => sink.bad(0, format!("book not read: {e}"), ""),
        };
    }
    let limits = ArchiveLimits {
        max_entry_bytes: config.max_book_bytes,
        max_total_bytes: config.max_archive_bytes,
    };
    let mut failure = Ok(());
    let result = for_each_tar_entry(opened.reader, limits, |item| {
        let step = match item {
            TarItem::Refused { path, offset, reason } => sink.bad(offset, reason, &path),
            TarItem::File { path, .. } if !path.ends_with(".txt") => {
                sink.filtered("not_text");
                Ok(())
            }
            TarItem::File { path, offset, bytes } => {
                let locator = format!("{}#{path}", file.relative);
                push_book(sink, &locator, &path, offset, &bytes)
            }
        };
        match step {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Err(e);
                ControlFlow::Break(())
            }
        }
    });
    failure?;
    match result {
        Ok(()) => Ok(()),
        Err(_) if fault.happened() => Err(unreadable("the store failed while reading".into())),
        // What was read stays; the rest of the archive is one quarantined record.
        Err(e) => sink.bad(0, e.to_string(), &file.relative),
    }
}

/// Decodes, strips and adds one book; `name` is its file name (the title of a book without a header).
fn push_book(sink: &mut RecordSink, locator: &str, name: &str, offset: u64, bytes: &[u8]) -> Result<(), StageError> {
    let decoded = match text::decode_book(bytes) {
        Ok(d) => d,
        Err(e) => {
            return sink.bad(
                offset,
                format!("{name}: {e}"),
                &String::from_utf8_lossy(&bytes[..bytes.len().min(400)]),
            );
        }
    };
    let stripped = text::strip_gutenberg(&decoded.text);
    if stripped.body.trim().is_empty() {
        sink.filtered("empty");
        return Ok(());
    }
    let title = stripped.title.clone().or_else(|| {
        let file_name = name.rsplit('/').next().unwrap_or(name);
        let stem = file_name.strip_suffix(".gz").unwrap_or(file_name);
        Some(stem.strip_suffix(".txt").unwrap_or(stem).to_string())
    });
    sink.doc(SourceDoc {
        locator: locator.to_string(),
        url: stripped
            .gutenberg_id
            .map(|id| format!("https://www.gutenberg.org/ebooks/{id}")),
        text: stripped.body.to_string(),
        offset,
        extra: vec![
            ExtraValue::UInt(stripped.gutenberg_id),
            ExtraValue::Text(title),
            ExtraValue::Text(Some(decoded.encoding.to_string())),
        ],
    })
}
