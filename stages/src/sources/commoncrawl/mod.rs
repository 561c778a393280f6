//! The `commoncrawl` source: CommonCrawl WET files (or WARC files, whose HTML
//! responses become text) through CCNet's steps, in CCNet's order:
//!
//! 1. line dedup within a dedup group of files ([`line_dedup`]): a line whose
//!    normalized text came earlier in the group, by (file order, line order),
//!    is dropped;
//! 2. documents under `min_chars` characters after dedup are dropped;
//! 3. language identification ([`llamaflow_sql::language`], also the SQL
//!    functions `detect_language` and `language_score`): documents in `languages`
//!    (English by default) with a score of at least `language_threshold` are kept.
//!
//! A unit is a dedup group: `group_files` consecutive input files (CCNet used
//! ~1.6k WET files, a whole shard); with `line_dedup = false`, a file. Inputs can be files, globs, or a dump's
//! `wet.paths.gz` listing (`limit` takes its first N paths).
//!
//! Besides the documents, the stage writes what it counted: `lines`
//! (`<stage>__lines`: per input, lines `seen` and dropped by `line_dedup`),
//! `languages` (per input and language, the documents that reached language
//! ID) and `line_hashes` (the group's hash counts: hash, lines, first
//! occurrence), the artifact CCNet keeps between its two passes.

pub mod line_dedup;
pub mod page;
pub mod warc;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use async_trait::async_trait;
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::{Deserialize, Serialize};

use crate::records::{ExtraValue, RecordSink, SourceDoc, read_records};
use line_dedup::{HashWriter, LineHashes, RepeatedLines};
use llamaflow_sql::language;
use page::{RecordContent, record_content};
use warc::WarcReader;

/// The `source` column value.
const SOURCE: &str = "commoncrawl";
/// Rule: under `min_chars` characters after line dedup.
const TOO_SHORT: &str = "too_short";
/// Rule: identified as a language that is not kept.
const LANGUAGE: &str = "language";
/// Rule: a kept language, but scored under `language_threshold` (or no language told).
const LANGUAGE_SCORE: &str = "language_score";
/// Rule (in `lines`): a line seen earlier in the group.
const LINE_DEDUP: &str = "line_dedup";

/// `[stages.NAME]` parameters of a `commoncrawl` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonCrawlConfig {
    /// CCNet's line dedup (off: every line is kept).
    #[serde(default = "default_true")]
    pub line_dedup: bool,
    /// Files per dedup group (a unit).
    #[serde(default = "default_group_files")]
    pub group_files: usize,
    /// Documents with fewer characters after dedup are dropped.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Languages kept (ISO 639-1 codes); empty keeps every language.
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// Lowest language score kept.
    #[serde(default = "default_threshold")]
    pub language_threshold: f64,
    /// Only the first N input files (of a listing: its first N paths).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn default_true() -> bool {
    true
}
fn default_group_files() -> usize {
    1600
}
fn default_min_chars() -> usize {
    300
}
fn default_languages() -> Vec<String> {
    vec!["en".to_string()]
}
fn default_threshold() -> f64 {
    0.5
}

/// Builds `commoncrawl` stages.
#[derive(Debug)]
pub struct CommonCrawlFactory;

impl StageFactory for CommonCrawlFactory {
    fn type_name(&self) -> &'static str {
        "commoncrawl"
    }

    fn summary(&self) -> &'static str {
        "CommonCrawl WET (or WARC) files through CCNet: line dedup per group, length cut, language ID"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: CommonCrawlConfig = parse_params(&decl.params)?;
        let bad = |key: &str, message: String| ParamError {
            key: Some(key.into()),
            message,
        };
        if config.group_files == 0 || config.group_files > line_dedup::MAX_GROUP_FILES {
            return Err(bad(
                "group_files",
                format!("must be between 1 and {}", line_dedup::MAX_GROUP_FILES),
            ));
        }
        if let Some(unknown) = config.languages.iter().find(|l| !language::is_known(l)) {
            return Err(bad(
                "languages",
                format!("`{unknown}` is not a language the identifier knows (ISO 639-1 codes such as `en`, `de`)"),
            ));
        }
        if !(0.0..=1.0).contains(&config.language_threshold) {
            return Err(bad("language_threshold", "must be between 0 and 1".into()));
        }
        if config.limit == Some(0) {
            return Err(bad(
                "limit",
                "must be at least 1 (leave it out to read every file)".into(),
            ));
        }
        Ok(Arc::new(CommonCrawlStage { config }))
    }
}

/// The document schema of the `commoncrawl` dataset.
pub fn commoncrawl_schema() -> SchemaRef {
    llamaflow_pipeline::document::document_schema(extra_fields())
}

fn extra_fields() -> Vec<Field> {
    vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("language", DataType::Utf8, true),
        Field::new("language_score", DataType::Float64, true),
        Field::new("warc_languages", DataType::Utf8, true),
    ]
}

/// The `lines` output: lines seen and dropped, per input and rule.
pub fn lines_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("input", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("lines", DataType::UInt64, false),
    ]))
}

/// The `languages` output: documents that reached language ID, per input and language.
pub fn languages_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("input", DataType::Utf8, false),
        Field::new("language", DataType::Utf8, false),
        Field::new("documents", DataType::UInt64, false),
    ]))
}

/// The `line_hashes` output: a group's line hashes, how many lines have each, and the first.
pub fn line_hashes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::UInt64, false),
        Field::new("lines", DataType::UInt64, false),
        Field::new("first_input", DataType::Utf8, false),
        Field::new("first_line", DataType::UInt64, false),
    ]))
}

/// The `commoncrawl` stage.
#[derive(Debug)]
pub struct CommonCrawlStage {
    config: CommonCrawlConfig,
}

/// What pass 2 counted in one file besides documents.
#[derive(Debug, Default)]
struct FileReport {
    lines_seen: u64,
    lines_dropped: u64,
    languages: BTreeMap<&'static str, u64>,
}

#[async_trait]
impl Stage for CommonCrawlStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        commoncrawl_schema()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![
            ("lines", lines_schema()),
            ("languages", languages_schema()),
            ("line_hashes", line_hashes_schema()),
        ]
    }

    /// Dedup groups: `group_files` consecutive files in path order; without
    /// line dedup, nothing spans files, and each file is a unit.
    fn units(&self, mut inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        if let Some(limit) = self.config.limit {
            inputs.truncate(limit);
        }
        inputs.sort_by(|a, b| a.relative.cmp(&b.relative));
        if !self.config.line_dedup {
            return inputs.into_iter().map(WorkUnit::single).collect();
        }
        inputs
            .chunks(self.config.group_files)
            .flat_map(|group| WorkUnit::all_in_one(&format!("group:{}", group[0].relative), group.to_vec()))
            .collect()
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let files = &unit.files;
        let hashes = if self.config.line_dedup {
            let hashes = hash_group(files, &ctx.session, &ctx.stage).await?;
            write_hash_counts(&hashes, files, ctx).await?;
            Some(hashes)
        } else {
            None
        };
        let result = self.filter_group(files, hashes.as_ref(), ctx).await;
        if let Some(hashes) = &hashes {
            hashes.drop_table(&ctx.session);
        }
        result
    }
}

impl CommonCrawlStage {
    /// Pass 2: every file again, in group order, without its repeated lines.
    async fn filter_group(
        &self,
        files: &[InputFile],
        hashes: Option<&LineHashes>,
        ctx: &mut UnitContext,
    ) -> Result<UnitCounts, StageError> {
        let mut repeats: Option<RepeatedLines> = match hashes {
            Some(h) => Some(h.repeats(&ctx.session).await?),
            None => None,
        };
        let mut counts = UnitCounts::default();
        for (index, file) in files.iter().enumerate() {
            // Group sizes are checked against MAX_GROUP_FILES, far below u32::MAX.
            let index = u32::try_from(index).map_err(|_| StageError::Other("dedup group too large".into()))?;
            let drop_lines = match repeats.as_mut() {
                Some(r) => r.for_file(index).await?,
                None => Vec::new(),
            };
            let report = Arc::new(Mutex::new(FileReport::default()));
            let filter = DocumentFilter {
                config: self.config.clone(),
                drop_lines,
                report: report.clone(),
            };
            read_records(file, SOURCE, extra_fields(), ctx, &mut counts, move |sink| {
                filter.run(sink)
            })
            .await?;
            let report = std::mem::take(&mut *report.lock().map_err(|_| poisoned())?);
            write_report(&file.display, report, ctx).await?;
        }
        Ok(counts)
    }
}

/// Pass 1: the line hashes of every file of the group, files read in parallel.
async fn hash_group(
    files: &[InputFile],
    session: &datafusion::prelude::SessionContext,
    stage: &str,
) -> Result<LineHashes, StageError> {
    let mut hashes = LineHashes::new(format!("cc_line_hashes_{stage}"))?;
    let jobs = session.state().config().target_partitions().max(1);
    let handle = tokio::runtime::Handle::current();
    tracing::info!(stage, files = files.len(), "line dedup: hashing the group's lines");
    let folder = hashes.folder();
    let mut tasks = futures::stream::iter(files.iter().cloned().enumerate().collect::<Vec<_>>())
        .map(move |(index, file)| {
            let folder = folder.clone();
            let handle = handle.clone();
            tokio::task::spawn_blocking(move || {
                let index = u32::try_from(index).map_err(|_| StageError::Other("dedup group too large".into()))?;
                let mut writer = HashWriter::create(&folder, index)?;
                for_each_record(&file, Progress::hidden(), &handle, |_, _, content| {
                    if let Ok(RecordContent::Page(page)) = content {
                        for line in page.text.split('\n') {
                            writer.push(line)?;
                        }
                    }
                    Ok(())
                })?;
                writer.finish()
            })
        })
        .buffer_unordered(jobs);
    let mut total = 0u64;
    while let Some(done) = tasks.next().await {
        total += done.map_err(|e| StageError::Other(format!("a hashing thread failed: {e}")))??;
    }
    hashes.add_lines(total);
    tracing::info!(stage, lines = hashes.lines(), "line dedup: lines hashed");
    Ok(hashes)
}

/// Writes the group's hash counts to `line_hashes`.
async fn write_hash_counts(hashes: &LineHashes, files: &[InputFile], ctx: &mut UnitContext) -> Result<(), StageError> {
    if hashes.lines() == 0 {
        return Ok(());
    }
    let mut stream = hashes.counts(&ctx.session).await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let first = batch.column(2).as_primitive::<UInt64Type>();
        let first_input: StringArray = first
            .values()
            .iter()
            .map(|p| {
                files
                    .get(line_dedup::position_file(*p) as usize)
                    .map(|f| f.display.as_str())
            })
            .collect();
        let first_line: UInt64Array = first.values().iter().map(|p| line_dedup::position_line(*p)).collect();
        let out = RecordBatch::try_new(
            line_hashes_schema(),
            vec![
                arrow::compute::cast(batch.column(0), &DataType::UInt64)?,
                arrow::compute::cast(batch.column(1), &DataType::UInt64)?,
                Arc::new(first_input) as ArrayRef,
                Arc::new(first_line),
            ],
        )?;
        ctx.write_named("line_hashes", &out).await?;
    }
    Ok(())
}

/// Writes one file's line and language counts.
async fn write_report(input: &str, report: FileReport, ctx: &mut UnitContext) -> Result<(), StageError> {
    let lines = RecordBatch::try_new(
        lines_schema(),
        vec![
            Arc::new(StringArray::from(vec![input; 2])),
            Arc::new(StringArray::from(vec!["seen", LINE_DEDUP])),
            Arc::new(UInt64Array::from(vec![report.lines_seen, report.lines_dropped])),
        ],
    )?;
    ctx.write_named("lines", &lines).await?;
    let n = report.languages.len();
    if n > 0 {
        let languages = RecordBatch::try_new(
            languages_schema(),
            vec![
                Arc::new(StringArray::from(vec![input; n])),
                Arc::new(StringArray::from_iter_values(report.languages.keys())),
                Arc::new(UInt64Array::from_iter_values(report.languages.values().copied())),
            ],
        )?;
        ctx.write_named("languages", &languages).await?;
    }
    Ok(())
}

fn poisoned() -> StageError {
    StageError::Other("a reading thread panicked while counting".into())
}

/// Reads `file`'s records in order and hands each to `each` with its offset
/// and index in its gzip member: the page, or why it cannot be used. A store
/// failure fails the unit; bad bytes are handed on as bad records.
fn for_each_record(
    file: &InputFile,
    progress: Progress,
    handle: &tokio::runtime::Handle,
    mut each: impl FnMut(u64, u32, Result<RecordContent, String>) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let unreadable = |message: String| StageError::Unreadable {
        file: file.display.clone(),
        message,
    };
    let raw = crate::read::open_raw(file, progress, handle).map_err(|e| unreadable(e.to_string()))?;
    let fault = raw.fault.clone();
    let mut reader = WarcReader::new(raw.reader);
    while let Some(item) = reader.next_record() {
        match item {
            Ok(record) => each(record.offset, record.index_in_member, Ok(record_content(&record)))?,
            Err((offset, error)) => {
                if fault.happened() || matches!(error, warc::WarcError::Io(_)) {
                    return Err(unreadable(format!("at byte {offset}: {error}")));
                }
                each(offset, 0, Err(error.to_string()))?;
            }
        }
    }
    Ok(())
}

/// Pass 2 over one file: drops repeated lines, then short documents, then
/// documents not in a kept language.
struct DocumentFilter {
    config: CommonCrawlConfig,
    /// Ordinals of the file's lines to drop, increasing.
    drop_lines: Vec<u64>,
    report: Arc<Mutex<FileReport>>,
}

impl DocumentFilter {
    fn run(self, sink: &mut RecordSink) -> Result<(), StageError> {
        let file = sink.file.clone();
        let progress = sink.progress.clone();
        let handle = sink.handle.clone();
        let mut report = FileReport::default();
        let mut line = 0u64;
        let mut next_drop = self.drop_lines.iter().copied().peekable();
        for_each_record(&file, progress, &handle, |offset, index, content| {
            let page = match content {
                Ok(RecordContent::Page(page)) => page,
                Ok(RecordContent::Skip(rule)) => {
                    sink.filtered(rule);
                    return Ok(());
                }
                Ok(RecordContent::Bad(reason)) | Err(reason) => return sink.bad(offset, reason, ""),
            };
            let mut text = String::with_capacity(page.text.len());
            for l in page.text.split('\n') {
                report.lines_seen += 1;
                let repeated = next_drop.next_if_eq(&line).is_some();
                line += 1;
                if repeated {
                    report.lines_dropped += 1;
                    continue;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(l);
            }
            if !has_chars(&text, self.config.min_chars) {
                sink.filtered(TOO_SHORT);
                return Ok(());
            }
            let guess = language::identify(&text);
            *report
                .languages
                .entry(guess.as_ref().map_or("unknown", |g| g.code))
                .or_default() += 1;
            let kept_language =
                |code: &str| self.config.languages.is_empty() || self.config.languages.iter().any(|l| l == code);
            match &guess {
                Some(g) if !kept_language(g.code) => {
                    sink.filtered(LANGUAGE);
                    return Ok(());
                }
                Some(g) if g.score >= self.config.language_threshold => {}
                _ if self.config.languages.is_empty() => {}
                _ => {
                    sink.filtered(LANGUAGE_SCORE);
                    return Ok(());
                }
            }
            let key = match (&page.record_id, index) {
                (Some(id), _) => id.clone(),
                (None, 0) => offset.to_string(),
                (None, i) => format!("{offset}:{i}"),
            };
            sink.doc(SourceDoc {
                locator: format!("{}#{key}", file.relative),
                url: page.url,
                text,
                offset,
                extra: vec![
                    ExtraValue::Timestamp(page.timestamp),
                    ExtraValue::Text(guess.as_ref().map(|g| g.code.to_string())),
                    ExtraValue::Float(guess.as_ref().map(|g| g.score)),
                    ExtraValue::Text(page.content_languages),
                ],
            })
        })?;
        if next_drop.next().is_some() {
            return Err(StageError::Other(format!(
                "{} changed between the two passes of line dedup (fewer lines the second time)",
                file.display
            )));
        }
        *self.report.lock().map_err(|_| poisoned())? = report;
        Ok(())
    }
}

/// True when `text` has at least `n` characters (without counting them all when the bytes settle it).
fn has_chars(text: &str, n: usize) -> bool {
    if text.len() < n {
        return false;
    }
    // A character is at most 4 bytes.
    text.len() >= n.saturating_mul(4) || text.chars().nth(n.saturating_sub(1)).is_some() || n == 0
}

#[cfg(test)]
mod tests;
