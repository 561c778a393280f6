//! The `c4` source: C4 as released (JSON lines, usually gzip, with the fields
//! `text`, `url`, `timestamp`) into document Parquet with a `timestamp` column.
//!
//! The raw files are a DataFusion table ([`C4Table`]): each row is a document,
//! or a bad record with its `quarantine_reason` set, so `sql` can query raw C4
//! too. The stage is a scan of that table split three ways: kept, filtered
//! (`empty_text`) and quarantined.

use std::borrow::Cow;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::compute::{filter_record_batch, is_null};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use llamaflow_pipeline::document::{DocumentColumnsBuilder, document_schema, excerpt};
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params};
use serde::Deserialize;

use crate::read::open_input;

/// The `source` column value.
const SOURCE: &str = "c4";
/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 4096;
/// Text bytes per batch: far below Arrow's 2 GiB string offsets.
const BATCH_TEXT_BYTES: usize = 32 << 20;
/// Name of the raw table's column that marks bad records.
pub const QUARANTINE_REASON: &str = "quarantine_reason";

/// `[stages.NAME]` parameters of a `c4` stage (none yet: `type` and `inputs` are the engine's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct C4Config {}

/// Builds `c4` stages.
#[derive(Debug)]
pub struct C4Factory;

impl StageFactory for C4Factory {
    fn type_name(&self) -> &'static str {
        "c4"
    }

    fn summary(&self) -> &'static str {
        "C4 JSON lines (text, url, timestamp; gzip or plain) into documents"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let _config: C4Config = parse_params(&decl.params)?;
        Ok(Arc::new(C4Stage))
    }
}

/// The document schema of the `c4` dataset: core columns plus `timestamp`.
pub fn c4_schema() -> SchemaRef {
    document_schema(vec![timestamp_field()])
}

fn timestamp_field() -> Field {
    Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true)
}

/// The raw table's schema: the `c4` schema plus `quarantine_reason`.
pub fn c4_raw_schema() -> SchemaRef {
    document_schema(vec![timestamp_field(), Field::new(QUARANTINE_REASON, DataType::Utf8, true)])
}

/// The `c4` stage.
#[derive(Debug)]
pub struct C4Stage;

#[async_trait]
impl Stage for C4Stage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        c4_schema()
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let table = C4Table::new(unit.files.clone(), ctx.progress.clone())?;
        let frame = ctx.session.read_table(Arc::new(table))?;
        let mut stream = frame.execute_stream().await?;
        let mut counts = UnitCounts::default();
        let out_schema = ctx.schema();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            counts.rows_in += batch.num_rows() as u64;
            ctx.progress.add_docs(batch.num_rows() as u64);
            let reason_col = batch.num_columns() - 1;
            let reasons = batch.column(reason_col).as_string::<i32>();
            let good = is_null(reasons)?;
            if good.true_count() < batch.num_rows() {
                let files = batch.column_by_name("input_file").map(|c| c.as_string::<i32>());
                let offsets = batch.column_by_name("input_offset").map(|c| c.as_primitive::<arrow::datatypes::UInt64Type>());
                let texts = batch.column_by_name("text").map(|c| c.as_string::<i32>());
                if let (Some(files), Some(offsets), Some(texts)) = (files, offsets, texts) {
                    for row in (0..batch.num_rows()).filter(|&r| !reasons.is_null(r)) {
                        ctx.quarantine(files.value(row), offsets.value(row), reasons.value(row), texts.value(row)).await?;
                        counts.quarantined += 1;
                    }
                }
            }
            // Documents whose text is empty or blank carry nothing to train on.
            let texts = batch.column_by_name("text").map(|c| c.as_string::<i32>());
            let keep: BooleanArray = match texts {
                Some(texts) => (0..batch.num_rows())
                    .map(|r| {
                        let ok = good.value(r);
                        if ok && texts.value(r).trim().is_empty() {
                            counts.filter("empty_text");
                            Some(false)
                        } else {
                            Some(ok)
                        }
                    })
                    .collect(),
                None => good,
            };
            let kept = filter_record_batch(&batch, &keep)?;
            counts.kept += kept.num_rows() as u64;
            let kept = kept.project(&(0..out_schema.fields().len()).collect::<Vec<_>>())?;
            let kept = RecordBatch::try_new(out_schema.clone(), kept.columns().to_vec())?;
            ctx.write(&kept).await?;
        }
        Ok(counts)
    }
}

/// Raw C4 files as a DataFusion table: one partition per file.
#[derive(Debug)]
pub struct C4Table;

impl C4Table {
    /// A streaming table over `files` (bad records carry a `quarantine_reason`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(files: Vec<InputFile>, progress: Progress) -> Result<StreamingTable, StageError> {
        let schema = c4_raw_schema();
        let partitions: Vec<Arc<dyn PartitionStream>> = files
            .into_iter()
            .map(|file| Arc::new(C4FilePartition { file, schema: schema.clone(), progress: progress.clone() }) as _)
            .collect();
        Ok(StreamingTable::try_new(schema, partitions)?)
    }
}

#[derive(Debug)]
struct C4FilePartition {
    file: InputFile,
    schema: SchemaRef,
    progress: Progress,
}

impl PartitionStream for C4FilePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let file = self.file.clone();
        let progress = self.progress.clone();
        let handle = tokio::runtime::Handle::current();
        builder.spawn_blocking(move || {
            let mut rows = C4RowsBuilder::new();
            let send = |rows: &mut C4RowsBuilder| -> bool {
                let batch = rows.finish();
                tx.blocking_send(batch.map_err(Into::into)).is_ok()
            };
            let opened = open_input(&file, progress, &handle).map_err(|e| {
                datafusion::error::DataFusionError::External(Box::new(StageError::Unreadable {
                    file: file.display.clone(),
                    message: e.to_string(),
                }))
            })?;
            let fault = opened.fault.clone();
            let mut reader = opened.reader;
            let mut line = Vec::with_capacity(64 << 10);
            let mut offset: u64 = 0;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(n) => {
                        rows.push_line(&file, offset, &line);
                        offset += n as u64;
                    }
                    Err(e) if fault.happened() => {
                        // The store failed, not the data: fail the unit so the next run retries it.
                        return Err(datafusion::error::DataFusionError::External(Box::new(StageError::Unreadable {
                            file: file.display.clone(),
                            message: format!("read failed after {offset} decompressed bytes: {e}"),
                        })));
                    }
                    Err(e) => {
                        let what = if opened.gzip { "corrupt or truncated gzip stream" } else { "unreadable input" };
                        let reason = format!("{what} at decompressed byte {}: {e}", offset);
                        rows.push_bad(&file, offset, &reason, &String::from_utf8_lossy(&line));
                        break;
                    }
                }
                if rows.full() && !send(&mut rows) {
                    return Ok(());
                }
            }
            if !rows.is_empty() {
                send(&mut rows);
            }
            Ok(())
        });
        builder.build()
    }
}

/// One line of C4: unknown fields are ignored (other dumps add metadata).
#[derive(Deserialize)]
struct C4Line<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

struct C4RowsBuilder {
    docs: DocumentColumnsBuilder,
    timestamp: TimestampMicrosecondBuilder,
    reason: StringBuilder,
}

impl C4RowsBuilder {
    fn new() -> Self {
        C4RowsBuilder {
            docs: DocumentColumnsBuilder::new(SOURCE),
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            reason: StringBuilder::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    fn full(&self) -> bool {
        self.docs.len() >= BATCH_ROWS || self.docs.text_bytes() >= BATCH_TEXT_BYTES
    }

    /// Parses one raw line (with its newline) that starts at decompressed byte `offset`.
    fn push_line(&mut self, file: &InputFile, offset: u64, raw: &[u8]) {
        let trimmed = raw.strip_suffix(b"\n").unwrap_or(raw);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            return; // blank lines separate nothing and are not records
        }
        let text = match std::str::from_utf8(trimmed) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("invalid UTF-8 at byte {} of the line", e.valid_up_to());
                self.push_bad(file, offset, &reason, &String::from_utf8_lossy(trimmed));
                return;
            }
        };
        match serde_json::from_str::<C4Line>(text) {
            Ok(rec) => {
                let locator = format!("{}#{offset}", file.relative);
                self.docs.append(&locator, rec.url.as_deref(), &rec.text, &file.display, offset);
                let ts = rec
                    .timestamp
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_micros());
                self.timestamp.append_option(ts);
                self.reason.append_null();
            }
            Err(e) => self.push_bad(file, offset, &format!("invalid JSON record: {e}"), text),
        }
    }

    fn push_bad(&mut self, file: &InputFile, offset: u64, reason: &str, raw: &str) {
        let locator = format!("{}#{offset}", file.relative);
        self.docs.append(&locator, None, &excerpt(raw), &file.display, offset);
        self.timestamp.append_null();
        self.reason.append_value(reason);
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns: Vec<ArrayRef> = self.docs.finish();
        columns.push(Arc::new(self.timestamp.finish()));
        columns.push(Arc::new(self.reason.finish()));
        RecordBatch::try_new(c4_raw_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llamaflow_pipeline::store::StoreRegistry;
    use std::io::Write;

    fn input(dir: &std::path::Path, name: &str, bytes: &[u8]) -> InputFile {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let loc = StoreRegistry::default().resolve(path.to_str().unwrap(), dir).unwrap();
        InputFile {
            location: loc,
            relative: name.to_string(),
            display: format!("c4/{name}"),
            size: bytes.len() as u64,
            version: "v".into(),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    async fn scan(file: InputFile) -> Vec<RecordBatch> {
        let ctx = datafusion::prelude::SessionContext::new();
        let table = C4Table::new(vec![file], Progress::hidden()).unwrap();
        ctx.read_table(Arc::new(table)).unwrap().collect().await.unwrap()
    }

    fn column<'a>(batches: &'a [RecordBatch], name: &str) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap().as_string::<i32>();
                (0..c.len()).map(|i| (!c.is_null(i)).then(|| c.value(i).to_string())).collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn reads_documents_with_offsets_and_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let lines = "{\"text\":\"Hello.\",\"url\":\"https://a.example/\",\"timestamp\":\"2019-04-25T12:57:54Z\"}\n\n{\"text\":\"World.\",\"url\":null}\n";
        let batches = scan(input(dir.path(), "a.json.gz", &gzip(lines.as_bytes()))).await;
        assert_eq!(column(&batches, "text"), [Some("Hello.".into()), Some("World.".into())]);
        assert_eq!(column(&batches, "url"), [Some("https://a.example/".into()), None]);
        assert_eq!(column(&batches, "input_file"), [Some("c4/a.json.gz".into()), Some("c4/a.json.gz".into())]);
        let offsets = batches[0].column_by_name("input_offset").unwrap().as_primitive::<arrow::datatypes::UInt64Type>();
        let second = lines.find("{\"text\":\"World").unwrap() as u64;
        assert_eq!(offsets.values().to_vec(), vec![0, second]);
        let ids = column(&batches, "id");
        assert_eq!(ids[0].as_deref(), Some(llamaflow_pipeline::document::document_id("c4", "a.json.gz#0").as_str()));
        let ts = batches[0].column_by_name("timestamp").unwrap();
        assert!(!ts.is_null(0) && ts.is_null(1));
        assert_eq!(column(&batches, QUARANTINE_REASON), [None, None]);
    }

    #[tokio::test]
    async fn bad_lines_carry_reasons_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = b"{\"text\":\"ok one\"}\n{not json}\n".to_vec();
        data.extend_from_slice(b"{\"text\":\"bad \xff\xfe utf8\"}\n{\"url\":\"no text\"}\n{\"text\":\"ok two\"}\n");
        let batches = scan(input(dir.path(), "plain.jsonl", &data)).await;
        let reasons = column(&batches, QUARANTINE_REASON);
        assert_eq!(reasons.len(), 5);
        assert!(reasons[0].is_none() && reasons[4].is_none());
        assert!(reasons[1].as_deref().unwrap().starts_with("invalid JSON record"), "{reasons:?}");
        assert!(reasons[2].as_deref().unwrap().starts_with("invalid UTF-8 at byte 13"), "{reasons:?}");
        assert!(reasons[3].as_deref().unwrap().contains("missing field `text`"), "{reasons:?}");
    }

    #[tokio::test]
    async fn truncated_gzip_keeps_what_was_read_and_quarantines_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("{{\"text\":\"document number {i} with some words in it\"}}\n"));
        }
        let gz = gzip(text.as_bytes());
        let cut = &gz[..gz.len() / 2];
        let batches = scan(input(dir.path(), "cut.json.gz", cut)).await;
        let reasons = column(&batches, QUARANTINE_REASON);
        let good = reasons.iter().filter(|r| r.is_none()).count();
        assert!(good > 100 && good < 2000, "{good}");
        let bad: Vec<_> = reasons.iter().flatten().collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("corrupt or truncated gzip stream"), "{bad:?}");
    }
}
