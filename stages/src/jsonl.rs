//! JSON-lines sources (C4, BigQuery GitHub exports, ...) as DataFusion tables:
//! one partition per file, read on a blocking thread. The loop that every such
//! source shares (blank lines, invalid UTF-8, a truncated gzip tail, a storage
//! failure) is here once; a source only says how to turn a line into a row.

use std::io::BufRead;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use llamaflow_pipeline::StageError;
use llamaflow_pipeline::document::DocumentColumnsBuilder;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;

use crate::read::open_input;

/// Name of the raw tables' column that marks bad records (null for good rows).
pub const QUARANTINE_REASON: &str = "quarantine_reason";
/// Rows per batch.
const BATCH_ROWS: usize = 4096;
/// Text bytes per batch: far below Arrow's 2 GiB string offsets.
const BATCH_TEXT_BYTES: usize = 32 << 20;

/// Turns JSON lines of one source into rows of its raw table. The raw table's
/// last column is [`QUARANTINE_REASON`].
pub trait JsonRows: Send + 'static {
    /// The raw table's schema.
    fn schema(&self) -> SchemaRef;
    /// Parses one line (valid UTF-8, without its newline) that starts at
    /// decompressed byte `offset`; a record that cannot be used goes through `push_bad`.
    fn push_line(&mut self, file: &InputFile, offset: u64, line: &str);
    /// Adds a bad record with its reason and the raw text.
    fn push_bad(&mut self, file: &InputFile, offset: u64, reason: &str, raw: &str);
    /// The document columns being built (they hold the row count and text size).
    fn docs(&self) -> &DocumentColumnsBuilder;
    /// Rows pending.
    fn len(&self) -> usize {
        self.docs().len()
    }
    /// True when no row is pending.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Text bytes pending.
    fn text_bytes(&self) -> usize {
        self.docs().text_bytes()
    }
    /// The pending rows as a batch.
    fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError>;
}

/// A streaming table over JSON-lines `files`, rows built by `make_rows()`.
pub fn json_lines_table<R, F>(
    files: Vec<InputFile>,
    progress: Progress,
    make_rows: F,
) -> Result<StreamingTable, StageError>
where
    R: JsonRows,
    F: Fn() -> R + Send + Sync + 'static,
{
    let schema = make_rows().schema();
    let partitions = json_lines_partitions(files, progress, make_rows);
    Ok(StreamingTable::try_new(schema, partitions)?)
}

/// One table partition per JSON-lines file (for sources that mix formats in one table).
pub fn json_lines_partitions<R, F>(
    files: Vec<InputFile>,
    progress: Progress,
    make_rows: F,
) -> Vec<Arc<dyn PartitionStream>>
where
    R: JsonRows,
    F: Fn() -> R + Send + Sync + 'static,
{
    let make_rows = Arc::new(make_rows);
    let schema = make_rows().schema();
    files
        .into_iter()
        .map(|file| {
            Arc::new(JsonLinesPartition {
                file,
                schema: schema.clone(),
                progress: progress.clone(),
                make_rows: make_rows.clone(),
            }) as _
        })
        .collect()
}

struct JsonLinesPartition<F> {
    file: InputFile,
    schema: SchemaRef,
    progress: Progress,
    make_rows: Arc<F>,
}

impl<F> std::fmt::Debug for JsonLinesPartition<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesPartition")
            .field("file", &self.file.display)
            .finish_non_exhaustive()
    }
}

/// A `StageError::Unreadable` for `file`, as DataFusion carries it out of a plan.
pub fn unreadable(file: &InputFile, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(StageError::Unreadable {
        file: file.display.clone(),
        message,
    }))
}

impl<R, F> PartitionStream for JsonLinesPartition<F>
where
    R: JsonRows,
    F: Fn() -> R + Send + Sync + 'static,
{
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let file = self.file.clone();
        let progress = self.progress.clone();
        let make_rows = self.make_rows.clone();
        let handle = tokio::runtime::Handle::current();
        builder.spawn_blocking(move || {
            let mut rows = make_rows();
            let send = |rows: &mut R| tx.blocking_send(rows.finish().map_err(Into::into)).is_ok();
            let opened = open_input(&file, progress, &handle).map_err(|e| unreadable(&file, e.to_string()))?;
            let (compression, fault) = (opened.compression, opened.fault.clone());
            let mut reader = opened.reader;
            let mut line = Vec::with_capacity(64 << 10);
            let mut offset: u64 = 0;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(n) => {
                        push_raw_line(&mut rows, &file, offset, &line);
                        offset += n as u64;
                    }
                    // The store failed, not the data: fail the unit so the next run retries it.
                    Err(e) if fault.happened() => {
                        return Err(unreadable(
                            &file,
                            format!("read failed after {offset} decompressed bytes: {e}"),
                        ));
                    }
                    Err(e) => {
                        let what = compression.corrupt_stream();
                        let reason = format!("{what} at decompressed byte {offset}: {e}");
                        rows.push_bad(&file, offset, &reason, &String::from_utf8_lossy(&line));
                        break;
                    }
                }
                if (rows.len() >= BATCH_ROWS || rows.text_bytes() >= BATCH_TEXT_BYTES) && !send(&mut rows) {
                    return Ok(()); // the consumer is gone
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

/// Strips the line ending, skips blank lines, checks UTF-8, then hands the line to the source.
fn push_raw_line<R: JsonRows>(rows: &mut R, file: &InputFile, offset: u64, raw: &[u8]) {
    let trimmed = raw.strip_suffix(b"\n").unwrap_or(raw);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    if trimmed.iter().all(u8::is_ascii_whitespace) {
        return; // blank lines are not records
    }
    match std::str::from_utf8(trimmed) {
        Ok(line) => rows.push_line(file, offset, line),
        Err(e) => {
            let reason = format!("invalid UTF-8 at byte {} of the line", e.valid_up_to());
            rows.push_bad(file, offset, &reason, &String::from_utf8_lossy(trimmed));
        }
    }
}

/// Sends a raw batch's bad rows (those with a [`QUARANTINE_REASON`]) to the
/// stage's quarantine, counts every row in, and returns the good rows without
/// the reason column.
pub async fn take_good_rows(
    batch: &RecordBatch,
    ctx: &mut llamaflow_pipeline::UnitContext,
    counts: &mut llamaflow_pipeline::UnitCounts,
) -> Result<RecordBatch, StageError> {
    use arrow::array::{Array, AsArray};
    counts.rows_in += batch.num_rows() as u64;
    ctx.progress.add_docs(batch.num_rows() as u64);
    let schema = batch.schema();
    let reason_idx = schema.index_of(QUARANTINE_REASON)?;
    let reasons = batch.column(reason_idx).as_string::<i32>();
    let good = arrow::compute::is_null(reasons)?;
    if good.true_count() < batch.num_rows() {
        let files = batch.column(schema.index_of("input_file")?).as_string::<i32>();
        let offsets = batch
            .column(schema.index_of("input_offset")?)
            .as_primitive::<arrow::datatypes::UInt64Type>();
        let texts = batch.column(schema.index_of("text")?).as_string::<i32>();
        for row in (0..batch.num_rows()).filter(|&r| !reasons.is_null(r)) {
            ctx.quarantine(
                files.value(row),
                offsets.value(row),
                reasons.value(row),
                texts.value(row),
            )
            .await?;
            counts.quarantined += 1;
        }
    }
    // Bad rows are rare: only copy the batch when there is one to drop.
    let good_rows = if good.true_count() == batch.num_rows() {
        batch.clone()
    } else {
        arrow::compute::filter_record_batch(batch, &good)?
    };
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|&i| i != reason_idx).collect();
    Ok(good_rows.project(&keep)?)
}
