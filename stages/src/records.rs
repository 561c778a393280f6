//! The loop that file-and-archive sources share (books, arXiv, StackExchange):
//! a reading function runs on a blocking thread and pushes each record it
//! finds (a document, a record a rule dropped, or a bad record with its reason)
//! into a [`RecordSink`]; batches of them reach the stage's async side, which
//! writes the documents, quarantines the bad records and counts everything, so
//! `rows_in = kept + filtered + quarantined` holds by construction.

use std::collections::BTreeMap;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use llamaflow_pipeline::document::{DocumentColumnsBuilder, document_schema};
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{StageError, UnitContext, UnitCounts};
use tokio::sync::mpsc;

/// Documents per batch.
const BATCH_DOCS: usize = 1024;
/// Text bytes per batch: far below Arrow's 2 GiB string offsets.
const BATCH_TEXT_BYTES: usize = 32 << 20;

/// The value of one of a source's own columns for one document.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraValue {
    /// A `Utf8` column.
    Text(Option<String>),
    /// A `UInt64` column.
    UInt(Option<u64>),
    /// An `Int64` column.
    Int(Option<i64>),
    /// A `Float64` column.
    Float(Option<f64>),
    /// A `Timestamp(Microsecond, "UTC")` column: microseconds since the epoch.
    Timestamp(Option<i64>),
}

/// One document as a source found it.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    /// The id's locator: the input's relative path, `#`, and the record's key.
    pub locator: String,
    /// Where the document lives on the web, when known.
    pub url: Option<String>,
    /// The cleaned text.
    pub text: String,
    /// Byte offset of the record in its (decompressed) input.
    pub offset: u64,
    /// The source's own columns, in the order of its extra fields.
    pub extra: Vec<ExtraValue>,
}

/// A record that cannot be used, with where it was and why.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Byte offset in the (decompressed) input.
    pub offset: u64,
    /// Why it was refused.
    pub reason: String,
    /// Some of its raw text, for the quarantine row.
    pub excerpt: String,
}

/// What the reading thread sends: documents as a batch, plus the records dropped or refused since the last one.
struct RecordChunk {
    docs: RecordBatch,
    bad: Vec<BadRecord>,
    filtered: BTreeMap<&'static str, u64>,
}

/// Builds batches of documents with a source's extra columns.
pub struct DocRows {
    docs: DocumentColumnsBuilder,
    extra: Vec<Box<dyn ArrayBuilder>>,
    schema: SchemaRef,
    input_file: String,
}

impl DocRows {
    /// Rows of `source` read from `input_file` (as displayed), with `extra_fields` after the core columns.
    pub fn new(source: &str, extra_fields: Vec<Field>, input_file: &str) -> Result<Self, StageError> {
        let extra = extra_fields
            .iter()
            .map(|f| -> Result<Box<dyn ArrayBuilder>, StageError> {
                Ok(match f.data_type() {
                    DataType::Utf8 => Box::new(StringBuilder::new()),
                    DataType::UInt64 => Box::new(UInt64Builder::new()),
                    DataType::Int64 => Box::new(Int64Builder::new()),
                    DataType::Float64 => Box::new(Float64Builder::new()),
                    DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
                        Box::new(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                    }
                    other => return Err(StageError::Other(format!("extra column type {other} is not supported"))),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(DocRows {
            docs: DocumentColumnsBuilder::new(source),
            extra,
            schema: document_schema(extra_fields),
            input_file: input_file.to_string(),
        })
    }

    /// Appends one document; its extra values must match the extra fields in number and type.
    pub fn push(&mut self, doc: &SourceDoc) -> Result<(), StageError> {
        if doc.extra.len() != self.extra.len() {
            return Err(StageError::Other(format!(
                "a document has {} extra values for {} extra columns",
                doc.extra.len(),
                self.extra.len()
            )));
        }
        for (builder, value) in self.extra.iter_mut().zip(&doc.extra) {
            let any = builder.as_any_mut();
            match value {
                ExtraValue::Text(v) => any
                    .downcast_mut::<StringBuilder>()
                    .map(|b| b.append_option(v.as_deref())),
                ExtraValue::UInt(v) => any.downcast_mut::<UInt64Builder>().map(|b| b.append_option(*v)),
                ExtraValue::Int(v) => any.downcast_mut::<Int64Builder>().map(|b| b.append_option(*v)),
                ExtraValue::Float(v) => any.downcast_mut::<Float64Builder>().map(|b| b.append_option(*v)),
                ExtraValue::Timestamp(v) => any
                    .downcast_mut::<TimestampMicrosecondBuilder>()
                    .map(|b| b.append_option(*v)),
            }
            .ok_or_else(|| StageError::Other(format!("extra value {value:?} does not match its column's type")))?;
        }
        self.docs.append(
            &doc.locator,
            doc.url.as_deref(),
            &doc.text,
            &self.input_file,
            doc.offset,
        );
        Ok(())
    }

    /// Documents pending.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when no document is pending.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Text bytes pending.
    pub fn text_bytes(&self) -> usize {
        self.docs.text_bytes()
    }

    /// The pending documents as a batch of the source's schema.
    pub fn finish(&mut self) -> Result<RecordBatch, StageError> {
        let mut columns = self.docs.finish();
        columns.extend(self.extra.iter_mut().map(|b| -> ArrayRef { b.finish() }));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Where a reading function puts what it finds; batches go to the stage as they fill.
pub struct RecordSink {
    /// The input being read.
    pub file: InputFile,
    /// The stage's progress (bytes read, by the input opener).
    pub progress: Progress,
    /// The runtime, for reading through `object_store` from the blocking thread.
    pub handle: tokio::runtime::Handle,
    rows: DocRows,
    bad: Vec<BadRecord>,
    filtered: BTreeMap<&'static str, u64>,
    tx: mpsc::Sender<Result<RecordChunk, StageError>>,
}

impl RecordSink {
    /// Adds a document.
    pub fn doc(&mut self, doc: SourceDoc) -> Result<(), StageError> {
        self.rows.push(&doc)?;
        if self.rows.len() >= BATCH_DOCS || self.rows.text_bytes() >= BATCH_TEXT_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Counts a record dropped by `rule`.
    pub fn filtered(&mut self, rule: &'static str) {
        *self.filtered.entry(rule).or_default() += 1;
    }

    /// Adds a bad record for the quarantine.
    pub fn bad(&mut self, offset: u64, reason: impl Into<String>, excerpt: &str) -> Result<(), StageError> {
        self.bad.push(BadRecord {
            offset,
            reason: reason.into(),
            excerpt: llamaflow_pipeline::document::excerpt(excerpt),
        });
        if self.bad.len() >= BATCH_DOCS {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is pending; fails when the stage stopped listening.
    fn flush(&mut self) -> Result<(), StageError> {
        let chunk = RecordChunk {
            docs: self.rows.finish()?,
            bad: std::mem::take(&mut self.bad),
            filtered: std::mem::take(&mut self.filtered),
        };
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| StageError::Other("the stage stopped taking records".into()))
    }
}

/// Runs `read` over `file` on a blocking thread and writes what it finds
/// through `ctx`: documents to the main output (of `source`, with
/// `extra_fields`), bad records to the quarantine, all of them into `counts`.
pub async fn read_records<F>(
    file: &InputFile,
    source: &'static str,
    extra_fields: Vec<Field>,
    ctx: &mut UnitContext,
    counts: &mut UnitCounts,
    read: F,
) -> Result<(), StageError>
where
    F: FnOnce(&mut RecordSink) -> Result<(), StageError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<RecordChunk, StageError>>(2);
    let mut sink = RecordSink {
        file: file.clone(),
        progress: ctx.progress.clone(),
        handle: tokio::runtime::Handle::current(),
        rows: DocRows::new(source, extra_fields, &file.display)?,
        bad: Vec::new(),
        filtered: BTreeMap::new(),
        tx,
    };
    let task = tokio::task::spawn_blocking(move || {
        let result = read(&mut sink).and_then(|()| sink.flush());
        if let Err(e) = result {
            // Sending fails only when the stage is gone, and then nobody needs the error.
            let _ = sink.tx.blocking_send(Err(e));
        }
    });
    let display = file.display.clone();
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        let records = chunk.docs.num_rows() as u64 + chunk.bad.len() as u64 + chunk.filtered.values().sum::<u64>();
        counts.rows_in += records;
        ctx.progress.add_docs(records);
        counts.kept += chunk.docs.num_rows() as u64;
        for (rule, n) in chunk.filtered {
            *counts.filtered.entry(rule.to_string()).or_default() += n;
        }
        for bad in &chunk.bad {
            ctx.quarantine(&display, bad.offset, &bad.reason, &bad.excerpt).await?;
            counts.quarantined += 1;
        }
        if chunk.docs.num_rows() > 0 {
            let docs = RecordBatch::try_new(ctx.schema(), chunk.docs.columns().to_vec())?;
            ctx.write(&docs).await?;
        }
    }
    task.await
        .map_err(|e| StageError::Other(format!("the reading thread of {display} failed: {e}")))
}

/// Runs `read` over every file of `unit` (see [`read_records`]) and returns the unit's counts.
pub async fn read_unit_records<F>(
    unit: &llamaflow_pipeline::WorkUnit,
    source: &'static str,
    extra_fields: Vec<Field>,
    ctx: &mut UnitContext,
    read: F,
) -> Result<UnitCounts, StageError>
where
    F: Fn(&mut RecordSink) -> Result<(), StageError> + Clone + Send + 'static,
{
    let mut counts = UnitCounts::default();
    for file in &unit.files {
        read_records(file, source, extra_fields.clone(), ctx, &mut counts, read.clone()).await?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn doc_rows_build_the_core_and_extra_columns() {
        let fields = vec![
            Field::new("title", DataType::Utf8, true),
            Field::new("n", DataType::UInt64, true),
            Field::new("score", DataType::Int64, true),
        ];
        let mut rows = DocRows::new("books", fields, "books/a.txt").unwrap();
        let doc = |extra| SourceDoc {
            locator: "a.txt".into(),
            url: None,
            text: "hello".into(),
            offset: 3,
            extra,
        };
        rows.push(&doc(vec![
            ExtraValue::Text(Some("T".into())),
            ExtraValue::UInt(None),
            ExtraValue::Int(Some(-2)),
        ]))
        .unwrap();
        let wrong_type = doc(vec![
            ExtraValue::UInt(None),
            ExtraValue::UInt(None),
            ExtraValue::Int(None),
        ]);
        assert!(rows.push(&wrong_type).is_err());
        assert!(rows.push(&doc(vec![])).is_err(), "too few values");
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column_by_name("title").unwrap().as_string::<i32>().value(0), "T");
        assert_eq!(batch.column_by_name("input_offset").unwrap().len(), 1);
        assert_eq!(
            batch
                .column_by_name("score")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            -2
        );
    }
}
