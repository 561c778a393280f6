//! The `stackexchange` source: the StackExchange data dump, one document per
//! question, as LLaMA §2 ("Stack Exchange"): the largest sites, HTML removed,
//! answers sorted by score from highest to lowest.
//!
//! - Inputs: one `.7z` per site (`ai.stackexchange.com.7z`, whose `Posts.xml`
//!   is read), or a plain, gzip or bzip2 `Posts.xml` (`SITE.Posts.xml`, or
//!   `SITE/Posts.xml`). The site's name comes from the file name.
//! - Sites: `sites = [...]` names them, else the `top_sites` (default 28, as
//!   the paper) with the most posts are kept. Ranking needs every site's
//!   count, so without a list all sites make one unit and each is counted
//!   first (a fast scan for `<row`); the posts of sites not kept are counted
//!   as `site_not_selected`.
//! - A site is read in two passes so memory does not grow with the site:
//!   [`posts`] streams its rows into a scratch Parquet file, then DataFusion
//!   sorts them by question, each question before its answers and the answers
//!   by score as a number (RedPajama sorted the strings, putting "9" above
//!   "10"); the sort spills within `--memory-limit`, and one question at a
//!   time is assembled from the sorted stream.
//! - A document is `Q: title`, the question, then `A: answer` per answer; the
//!   bodies go through [`crate::html`] (tags removed, list items as `* ` lines, code
//!   blocks verbatim). Answers are folded into their question's document and
//!   counted as `answer`; posts of other types (tag wikis, ...) as `post_type`.
//!   Rows that cannot be parsed, unparsable scores and answers whose question
//!   is missing are quarantined.

pub mod posts;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayBuilder, AsArray, Int64Builder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use async_trait::async_trait;
use datafusion::prelude::ParquetReadOptions;
use futures::StreamExt;
use llamaflow_pipeline::document::document_schema;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use parquet::arrow::ArrowWriter;
use serde::Deserialize;

use crate::read::{open_input, open_seekable};
use crate::records::{DocRows, ExtraValue, RecordSink, SourceDoc, read_records};
use posts::{PostItem, PostsReader};

/// The `source` column value.
const SOURCE: &str = "stackexchange";
/// The paper keeps "the 28 largest websites".
const PAPER_TOP_SITES: usize = 28;
/// Memory a 7z decoder may take for its dictionary (KiB): the dumps use far
/// less, and a hostile archive asking for more is refused.
const MAX_7Z_MEMORY_KIB: usize = 1 << 20;
/// Bytes of posts buffered before the scratch file's row group is written.
const SCRATCH_ROW_GROUP_BYTES: usize = 32 << 20;
/// Posts per scratch batch.
const SCRATCH_BATCH: usize = 4096;

fn default_top_sites() -> usize {
    PAPER_TOP_SITES
}
fn default_max_row_bytes() -> u64 {
    16 << 20
}

/// `[stages.NAME]` parameters of a `stackexchange` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackExchangeConfig {
    /// Sites to keep, by name (`math.stackexchange.com`); when absent, the `top_sites` largest.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// How many sites to keep, ranked by post count, when `sites` is absent.
    #[serde(default = "default_top_sites")]
    pub top_sites: usize,
    /// A `<row>` larger than this is quarantined.
    #[serde(default = "default_max_row_bytes")]
    pub max_row_bytes: u64,
}

/// Builds `stackexchange` stages.
#[derive(Debug)]
pub struct StackExchangeFactory;

impl StageFactory for StackExchangeFactory {
    fn type_name(&self) -> &'static str {
        "stackexchange"
    }

    fn summary(&self) -> &'static str {
        "StackExchange dumps (.7z or Posts.xml): a document per question, answers by score, HTML removed"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: StackExchangeConfig = parse_params(&decl.params)?;
        if config.top_sites == 0 || config.sites.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(ParamError {
                key: Some(if config.top_sites == 0 { "top_sites" } else { "sites" }.into()),
                message: "no site would be kept".into(),
            });
        }
        if config.max_row_bytes < 1024 {
            return Err(ParamError {
                key: Some("max_row_bytes".into()),
                message: "`max_row_bytes` is too small to read any post".into(),
            });
        }
        Ok(Arc::new(StackExchangeStage { config }))
    }
}

fn extra_fields() -> Vec<Field> {
    vec![
        Field::new("site", DataType::Utf8, false),
        Field::new("question_id", DataType::Int64, false),
        Field::new("score", DataType::Int64, false),
        Field::new("answers", DataType::UInt64, false),
    ]
}

/// The `stackexchange` dataset's schema: core columns plus `site`, `question_id`, `score` and `answers`.
pub fn stackexchange_schema() -> SchemaRef {
    document_schema(extra_fields())
}

/// A site's name from its dump file: `math.stackexchange.com.7z`,
/// `stackoverflow.com-Posts.7z`, `ai.meta.stackexchange.Posts.xml(.gz)`, `SITE/Posts.xml`.
pub fn site_name(relative: &str) -> String {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let name = [".gz", ".bz2"].iter().fold(name, |n, e| n.strip_suffix(e).unwrap_or(n));
    let name = [".7z", ".xml"].iter().fold(name, |n, e| n.strip_suffix(e).unwrap_or(n));
    let site = name
        .strip_suffix("-Posts")
        .or_else(|| name.strip_suffix(".Posts"))
        .unwrap_or(name);
    if site == "Posts" {
        // `SITE/Posts.xml`: the folder names the site.
        let parent = relative.rsplit('/').nth(1).unwrap_or("");
        return if parent.is_empty() {
            "unknown".into()
        } else {
            parent.to_string()
        };
    }
    site.to_string()
}

/// The web host of a site name (`ai.meta.stackexchange` → `ai.meta.stackexchange.com`).
fn site_host(site: &str) -> String {
    let has_tld = [".com", ".net", ".org", ".io"].iter().any(|t| site.ends_with(t));
    if has_tld {
        site.to_string()
    } else {
        format!("{site}.com")
    }
}

/// True when the names match, with or without a `.com`.
fn same_site(a: &str, b: &str) -> bool {
    site_host(a) == site_host(b)
}

/// The `stackexchange` stage.
#[derive(Debug)]
pub struct StackExchangeStage {
    config: StackExchangeConfig,
}

#[async_trait]
impl Stage for StackExchangeStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        stackexchange_schema()
    }

    /// With a site list, a unit per listed site; else one unit, since the ranking needs all sites.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        match &self.config.sites {
            Some(sites) => inputs
                .into_iter()
                .filter(|f| {
                    let keep = sites.iter().any(|s| same_site(s, &site_name(&f.relative)));
                    if !keep {
                        tracing::info!(file = %f.display, "site not in `sites`: not read");
                    }
                    keep
                })
                .map(WorkUnit::single)
                .collect(),
            None => WorkUnit::all_in_one("all-sites", inputs),
        }
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let mut counts = UnitCounts::default();
        let selected = self.select_sites(unit, &ctx.progress, &mut counts).await?;
        for file in selected {
            self.read_site(&file, ctx, &mut counts).await?;
        }
        Ok(counts)
    }
}

impl StackExchangeStage {
    /// The unit's files to read: all of them with a site list; else the
    /// `top_sites` with the most posts (ties by name), the others counted as filtered.
    async fn select_sites(
        &self,
        unit: &WorkUnit,
        progress: &Progress,
        counts: &mut UnitCounts,
    ) -> Result<Vec<InputFile>, StageError> {
        if self.config.sites.is_some() || unit.files.len() <= self.config.top_sites {
            return Ok(unit.files.clone());
        }
        let mut ranked = Vec::new();
        for file in &unit.files {
            let (f, progress) = (file.clone(), progress.clone());
            let handle = tokio::runtime::Handle::current();
            let posts = tokio::task::spawn_blocking(move || {
                with_posts_stream(&f, progress, &handle, |reader| posts::count_rows(reader))
            })
            .await
            .map_err(|e| StageError::Other(format!("counting the posts of {} failed: {e}", file.display)))?;
            // A site that cannot be counted is ranked last; if it is selected, reading it quarantines why.
            let posts = match posts {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::warn!(file = %file.display, "posts could not be counted: {e}");
                    0
                }
                Err(e) => {
                    tracing::warn!(file = %file.display, "posts could not be counted: {e}");
                    0
                }
            };
            ranked.push((posts, site_name(&file.relative), file.clone()));
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let dropped = ranked.split_off(self.config.top_sites);
        for (posts, site, _) in &dropped {
            tracing::info!(site, posts, "not among the {} largest sites", self.config.top_sites);
            counts.rows_in += posts;
            *counts.filtered.entry("site_not_selected".into()).or_default() += posts;
        }
        Ok(ranked.into_iter().map(|(_, _, f)| f).collect())
    }

    /// Both passes over one site.
    async fn read_site(
        &self,
        file: &InputFile,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<(), StageError> {
        let scratch = tempfile::Builder::new()
            .prefix("llamaflow-stackexchange-")
            .tempdir()
            .map_err(|e| StageError::Other(format!("cannot create a scratch folder: {e}")))?;
        let path = scratch.path().join("posts.parquet");
        let (scratch_path, max_row_bytes) = (path.clone(), self.config.max_row_bytes);
        read_records(file, SOURCE, extra_fields(), ctx, counts, move |sink| {
            write_scratch(sink, &scratch_path, max_row_bytes)
        })
        .await?;
        let site = site_name(&file.relative);
        join_questions(file, &site, &path, ctx, counts).await
    }
}

/// Opens the `Posts.xml` of a site file and hands it to `read`.
fn with_posts_stream<T>(
    file: &InputFile,
    progress: Progress,
    handle: &tokio::runtime::Handle,
    read: impl FnOnce(&mut dyn BufRead) -> T,
) -> Result<T, SiteError> {
    if !file.relative.ends_with(".7z") {
        let opened = open_input(file, progress, handle).map_err(SiteError::Store)?;
        let fault = opened.fault.clone();
        let mut reader = opened.reader;
        let result = read(&mut reader);
        // A failing store looks like a truncated file to the reader: fail the unit instead, to be retried.
        if fault.happened() {
            return Err(SiteError::Store(std::io::Error::other(
                "the store failed while reading",
            )));
        }
        return Ok(result);
    }
    let local = open_seekable(file, progress, handle).map_err(SiteError::Store)?;
    let password = sevenz_rust2::Password::empty();
    let mut archive = sevenz_rust2::ArchiveReader::new_with_memory_limit(local, password, MAX_7Z_MEMORY_KIB)
        .map_err(|e| SiteError::Corrupt(format!("not a readable 7z archive: {e}")))?;
    // Multithreaded LZMA2 decoding runs ahead of the reader and buffers what it
    // decoded; one thread keeps memory flat, and units give the parallelism.
    archive.set_thread_count(1);
    let mut read = Some(read);
    let mut result = None;
    archive
        .for_each_entries(|entry, reader| {
            let name = entry.name();
            if name != "Posts.xml" && !name.ends_with("/Posts.xml") {
                return Ok(true);
            }
            if let Some(read) = read.take() {
                let mut buffered = BufReader::with_capacity(1 << 20, reader);
                result = Some(read(&mut buffered));
            }
            Ok(false)
        })
        .map_err(|e| SiteError::Corrupt(format!("corrupt or truncated 7z archive: {e}")))?;
    result.ok_or_else(|| SiteError::Corrupt("the 7z archive holds no Posts.xml".into()))
}

/// Why a site's posts could not be opened.
#[derive(Debug, thiserror::Error)]
enum SiteError {
    /// The store failed: the unit fails and is retried next run.
    #[error("{0}")]
    Store(std::io::Error),
    /// The file is bad: quarantined.
    #[error("{0}")]
    Corrupt(String),
}

fn scratch_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("post_type", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("score", DataType::Int64, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, false),
        Field::new("offset", DataType::UInt64, false),
    ]))
}

/// Scratch rows being built.
#[derive(Default)]
struct ScratchRows {
    id: Int64Builder,
    post_type: Int64Builder,
    parent_id: Int64Builder,
    score: Int64Builder,
    title: StringBuilder,
    body: StringBuilder,
    offset: UInt64Builder,
}

impl ScratchRows {
    fn push(&mut self, post: posts::Post) {
        self.id.append_value(post.id);
        self.post_type.append_value(post.post_type);
        self.parent_id.append_option(post.parent_id);
        self.score.append_value(post.score);
        self.title.append_option(post.title);
        self.body.append_value(post.body);
        self.offset.append_value(post.offset);
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        RecordBatch::try_new(
            scratch_schema(),
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.post_type.finish()),
                Arc::new(self.parent_id.finish()),
                Arc::new(self.score.finish()),
                Arc::new(self.title.finish()),
                Arc::new(self.body.finish()),
                Arc::new(self.offset.finish()),
            ],
        )
    }
}

/// Pass 1: questions and answers to the scratch file; other posts counted, bad rows quarantined.
fn write_scratch(sink: &mut RecordSink, path: &Path, max_row_bytes: u64) -> Result<(), StageError> {
    let scratch_error = |e: String| StageError::Other(format!("cannot write the scratch file {}: {e}", path.display()));
    let out = std::fs::File::create(path).map_err(|e| scratch_error(e.to_string()))?;
    let mut writer = ArrowWriter::try_new(out, scratch_schema(), None).map_err(|e| scratch_error(e.to_string()))?;
    let file = sink.file.clone();
    let (progress, handle) = (sink.progress.clone(), sink.handle.clone());
    let outcome = with_posts_stream(&file, progress, &handle, |reader| -> Result<(), StageError> {
        let mut posts = PostsReader::new(reader, max_row_bytes);
        let mut rows = ScratchRows::default();
        loop {
            let item = match posts.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                // Past a syntax error the rest of the file cannot be trusted: one quarantined record.
                Err(e) => {
                    sink.bad(e.offset(), format!("Posts.xml: {e}"), "")?;
                    break;
                }
            };
            match item {
                PostItem::Bad {
                    offset,
                    reason,
                    excerpt,
                } => sink.bad(offset, reason, &excerpt)?,
                PostItem::Post(post) if post.post_type == 1 || post.post_type == 2 => rows.push(post),
                PostItem::Post(_) => sink.filtered("post_type"),
            }
            if rows.id.len() >= SCRATCH_BATCH {
                let batch = rows.finish()?;
                writer.write(&batch).map_err(|e| scratch_error(e.to_string()))?;
                // A row group is buffered whole: cut them by size so memory stays flat.
                if writer.in_progress_size() >= SCRATCH_ROW_GROUP_BYTES {
                    writer.flush().map_err(|e| scratch_error(e.to_string()))?;
                }
            }
        }
        let batch = rows.finish()?;
        writer.write(&batch).map_err(|e| scratch_error(e.to_string()))?;
        Ok(())
    });
    writer.close().map_err(|e| scratch_error(e.to_string()))?;
    match outcome {
        Ok(result) => result,
        Err(SiteError::Store(e)) => Err(StageError::Unreadable {
            file: file.display.clone(),
            message: e.to_string(),
        }),
        Err(SiteError::Corrupt(reason)) => sink.bad(0, reason, ""),
    }
}

/// A question's document while its answers arrive.
struct OpenQuestion {
    id: i64,
    score: i64,
    offset: u64,
    text: String,
    answers: u64,
}

/// Pass 2: the posts sorted by question, the question first, then its answers
/// by score as a number (highest first, then by id). One external sort, which
/// spills within the memory limit, and one question held at a time; an answer
/// that arrives with no question before it has none in the dump.
async fn join_questions(
    file: &InputFile,
    site: &str,
    scratch: &Path,
    ctx: &mut UnitContext,
    counts: &mut UnitCounts,
) -> Result<(), StageError> {
    let table = format!(
        "stackexchange_posts_{}",
        xxhash_rust::xxh3::xxh3_64(scratch.as_os_str().as_encoded_bytes())
    );
    let path = scratch
        .to_str()
        .ok_or_else(|| StageError::Other(format!("scratch path {} is not UTF-8", scratch.display())))?;
    let session = ctx.session.clone();
    session
        .register_parquet(table.as_str(), path, ParquetReadOptions::default())
        .await?;
    let sql = format!(
        "SELECT CASE WHEN post_type = 1 THEN id ELSE parent_id END AS question, post_type, id, score, \
                title, body, \"offset\" \
         FROM {table} ORDER BY question, post_type, score DESC, id"
    );
    let mut assembler = QuestionAssembler {
        file,
        host: site_host(site),
        site,
        rows: DocRows::new(SOURCE, extra_fields(), &file.display)?,
        open: None,
    };
    let result = async {
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            // Parquet strings come back as views: cast them to the plain type read here.
            let utf8 = |i: usize| arrow::compute::cast(batch.column(i), &DataType::Utf8);
            let (titles, bodies) = (utf8(4)?, utf8(5)?);
            let (titles, bodies) = (titles.as_string::<i32>(), bodies.as_string::<i32>());
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>();
            let (questions, types, ids, scores) = (int(0), int(1), int(2), int(3));
            let offsets = batch.column(6).as_primitive::<UInt64Type>();
            for row in 0..batch.num_rows() {
                let (id, offset) = (ids.value(row), offsets.value(row));
                if types.value(row) == 1 {
                    assembler.close(ctx, counts).await?;
                    let title = if titles.is_null(row) { "" } else { titles.value(row) };
                    assembler.open = Some(OpenQuestion {
                        id,
                        score: scores.value(row),
                        offset,
                        text: format!("Q: {}\n{}", title.trim(), crate::html::html_to_text(bodies.value(row))),
                        answers: 0,
                    });
                    continue;
                }
                let question = questions.value(row);
                match assembler.open.as_mut() {
                    Some(open) if open.id == question => {
                        open.text.push_str("\n\nA: ");
                        open.text.push_str(&crate::html::html_to_text(bodies.value(row)));
                        open.answers += 1;
                    }
                    _ => {
                        let reason = format!("answer {id} to question {question}, which is not in the dump");
                        ctx.quarantine(&file.display, offset, &reason, bodies.value(row))
                            .await?;
                        counts.rows_in += 1;
                        counts.quarantined += 1;
                    }
                }
            }
        }
        assembler.close(ctx, counts).await?;
        if !assembler.rows.is_empty() {
            ctx.write(&assembler.rows.finish()?).await?;
        }
        Ok::<(), StageError>(())
    }
    .await;
    let _ = session.deregister_table(table.as_str());
    result
}

/// Turns finished questions into document rows.
struct QuestionAssembler<'a> {
    file: &'a InputFile,
    site: &'a str,
    host: String,
    rows: DocRows,
    open: Option<OpenQuestion>,
}

impl QuestionAssembler<'_> {
    /// Ends the open question, if any: its document is written, its answers counted.
    async fn close(&mut self, ctx: &mut UnitContext, counts: &mut UnitCounts) -> Result<(), StageError> {
        let Some(q) = self.open.take() else {
            return Ok(());
        };
        counts.rows_in += 1 + q.answers;
        counts.kept += 1;
        *counts.filtered.entry("answer".into()).or_default() += q.answers;
        ctx.progress.add_docs(1);
        self.rows.push(&SourceDoc {
            locator: format!("{}#{}", self.file.relative, q.id),
            url: Some(format!("https://{}/questions/{}", self.host, q.id)),
            text: q.text,
            offset: q.offset,
            extra: vec![
                ExtraValue::Text(Some(self.site.to_string())),
                ExtraValue::Int(Some(q.id)),
                ExtraValue::Int(Some(q.score)),
                ExtraValue::UInt(Some(q.answers)),
            ],
        })?;
        if self.rows.len() >= 1024 || self.rows.text_bytes() >= 32 << 20 {
            ctx.write(&self.rows.finish()?).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_come_from_dump_file_names() {
        assert_eq!(site_name("dumps/math.stackexchange.com.7z"), "math.stackexchange.com");
        assert_eq!(site_name("stackoverflow.com-Posts.7z"), "stackoverflow.com");
        assert_eq!(site_name("se/ai.meta.stackexchange.Posts.xml"), "ai.meta.stackexchange");
        assert_eq!(
            site_name("se/cooking.stackexchange.com/Posts.xml.gz"),
            "cooking.stackexchange.com"
        );
        assert_eq!(site_name("Posts.xml"), "unknown");
        assert_eq!(site_host("ai.meta.stackexchange"), "ai.meta.stackexchange.com");
        assert!(same_site("math.stackexchange.com", "math.stackexchange"));
        assert!(!same_site("math.stackexchange.com", "mathoverflow.net"));
    }
}
