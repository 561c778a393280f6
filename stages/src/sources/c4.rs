//! The `c4` source: C4 as released (JSON lines, usually gzip, with the fields
//! `text`, `url`, `timestamp`) into document Parquet with a `timestamp` column.
//!
//! The raw files are a DataFusion table ([`c4_table`]): each row is a document,
//! or a bad record with its `quarantine_reason` set, so `sql` can query raw C4
//! too. The stage scans that table and splits it three ways: kept, filtered
//! (`empty_text`) and quarantined.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use futures::StreamExt;
use llamaflow_pipeline::document::{DocumentColumnsBuilder, document_schema, excerpt};
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::Deserialize;

use crate::jsonl::{JsonRows, QUARANTINE_REASON, json_lines_table, take_good_rows};

/// The `source` column value.
const SOURCE: &str = "c4";

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

fn timestamp_field() -> Field {
    Field::new(
        "timestamp",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

/// The document schema of the `c4` dataset: core columns plus `timestamp`.
pub fn c4_schema() -> SchemaRef {
    document_schema(vec![timestamp_field()])
}

/// The raw table's schema: the `c4` schema plus `quarantine_reason`.
pub fn c4_raw_schema() -> SchemaRef {
    document_schema(vec![
        timestamp_field(),
        Field::new(QUARANTINE_REASON, DataType::Utf8, true),
    ])
}

/// Raw C4 files as a DataFusion table, one partition per file; bad records
/// are rows with `quarantine_reason` set.
pub fn c4_table(files: Vec<InputFile>, progress: Progress) -> Result<StreamingTable, StageError> {
    json_lines_table(files, progress, C4Rows::new)
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
        let table = c4_table(unit.files.clone(), ctx.progress.clone())?;
        let mut stream = ctx.session.read_table(Arc::new(table))?.execute_stream().await?;
        let mut counts = UnitCounts::default();
        let out_schema = ctx.schema();
        while let Some(batch) = stream.next().await {
            let good = take_good_rows(&batch?, ctx, &mut counts).await?;
            // Documents whose text is empty or blank carry nothing to train on.
            let texts = good.column(out_schema.index_of("text")?).as_string::<i32>();
            let keep: BooleanArray = texts
                .iter()
                .map(|t| {
                    let blank = t.is_none_or(|t| t.trim().is_empty());
                    if blank {
                        counts.filter("empty_text");
                    }
                    Some(!blank)
                })
                .collect();
            let kept = if keep.true_count() == good.num_rows() {
                good
            } else {
                filter_record_batch(&good, &keep)?
            };
            counts.kept += kept.num_rows() as u64;
            ctx.write(&RecordBatch::try_new(out_schema.clone(), kept.columns().to_vec())?)
                .await?;
        }
        Ok(counts)
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

/// Builds rows of the raw C4 table.
struct C4Rows {
    docs: DocumentColumnsBuilder,
    timestamp: TimestampMicrosecondBuilder,
    reason: StringBuilder,
}

impl C4Rows {
    fn new() -> Self {
        C4Rows {
            docs: DocumentColumnsBuilder::new(SOURCE),
            timestamp: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            reason: StringBuilder::new(),
        }
    }
}

impl JsonRows for C4Rows {
    fn schema(&self) -> SchemaRef {
        c4_raw_schema()
    }

    fn push_line(&mut self, file: &InputFile, offset: u64, line: &str) {
        match serde_json::from_str::<C4Line>(line) {
            Ok(rec) => {
                let locator = format!("{}#{offset}", file.relative);
                self.docs
                    .append(&locator, rec.url.as_deref(), &rec.text, &file.display, offset);
                let ts = rec
                    .timestamp
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_micros());
                self.timestamp.append_option(ts);
                self.reason.append_null();
            }
            Err(e) => self.push_bad(file, offset, &format!("invalid JSON record: {e}"), line),
        }
    }

    fn push_bad(&mut self, file: &InputFile, offset: u64, reason: &str, raw: &str) {
        let locator = format!("{}#{offset}", file.relative);
        self.docs.append(&locator, None, &excerpt(raw), &file.display, offset);
        self.timestamp.append_null();
        self.reason.append_value(reason);
    }

    fn docs(&self) -> &DocumentColumnsBuilder {
        &self.docs
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
    use arrow::array::Array;
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
        let table = c4_table(vec![file], Progress::hidden()).unwrap();
        ctx.read_table(Arc::new(table)).unwrap().collect().await.unwrap()
    }

    fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name(name).unwrap().as_string::<i32>();
                (0..c.len())
                    .map(|i| (!c.is_null(i)).then(|| c.value(i).to_string()))
                    .collect::<Vec<_>>()
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
        assert_eq!(
            column(&batches, "input_file"),
            [Some("c4/a.json.gz".into()), Some("c4/a.json.gz".into())]
        );
        let offsets = batches[0]
            .column_by_name("input_offset")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let second = lines.find("{\"text\":\"World").unwrap() as u64;
        assert_eq!(offsets.values().to_vec(), vec![0, second]);
        let ids = column(&batches, "id");
        assert_eq!(
            ids[0].as_deref(),
            Some(llamaflow_pipeline::document::document_id("c4", "a.json.gz#0").as_str())
        );
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
        assert!(
            reasons[1].as_deref().unwrap().starts_with("invalid JSON record"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].as_deref().unwrap().starts_with("invalid UTF-8 at byte 13"),
            "{reasons:?}"
        );
        assert!(
            reasons[3].as_deref().unwrap().contains("missing field `text`"),
            "{reasons:?}"
        );
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
