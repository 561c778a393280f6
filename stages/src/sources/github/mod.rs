//! The `github` source: files exported from BigQuery's `github_repos` tables
//! (JSON lines, gzip or plain, or Parquet — by the `.parquet` name — with
//! `repo_name`, `path`, `content`, `license`, optionally `language`; in
//! Parquet the record key and `input_offset` are the row number), or plain
//! repositories ([`repos`]: a folder per repository or a tarball each, the
//! licence detected from their licence files), cleaned as LLaMA did,
//! following RedPajama-Data v1 where the paper is vague:
//!
//! - licence: only MIT, a BSD variant or Apache-2.0 (configurable). The field
//!   is an SPDX expression: `A OR B` is kept if either side is allowed, `A AND B`
//!   only if both are; missing or unparsable licences are dropped and counted.
//! - extension: the path must end in one of RedPajama's ~70 programming-language
//!   extensions (`Dockerfile` and `Makefile` by name).
//! - licence files and certificates are dropped wherever they sit (RedPajama
//!   only dropped a top-level `LICENSE`).
//! - header boilerplate: a leading comment block that mentions copyright or a
//!   licence is removed. Unlike RedPajama, only the block at the top of the
//!   file is considered, in the file's own comment syntax, and only when it
//!   mentions copyright or a licence (RedPajama stripped every leading `#`,
//!   `//` or `--` line, `#include` and shebangs included, and skipped the
//!   header whenever a `/* */` comment appeared anywhere).
//! - then max line length > 1000, mean line length > 100 or alphanumeric
//!   fraction < 0.25 drop the file (strict comparisons, as RedPajama).

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{DefaultParquetFileReaderFactory, ParquetFileReaderFactory};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use futures::future::BoxFuture;
use llamaflow_pipeline::document::{DocumentColumnsBuilder, document_schema, excerpt};
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::ParquetMetaData;
use serde::Deserialize;

use crate::jsonl::{JsonRows, QUARANTINE_REASON, json_lines_partitions, take_good_rows, unreadable};

pub mod repos;

/// The `source` column value.
const SOURCE: &str = "github";

/// RedPajama-Data v1's extension whitelist (`data_prep/github/github_run_filter.py`), verbatim.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    ".asm",
    ".bat",
    ".cmd",
    ".c",
    ".h",
    ".cs",
    ".cpp",
    ".hpp",
    ".c++",
    ".h++",
    ".cc",
    ".hh",
    ".C",
    ".H",
    ".cmake",
    ".css",
    ".dockerfile",
    ".f90",
    ".f",
    ".f03",
    ".f08",
    ".f77",
    ".f95",
    ".for",
    ".fpp",
    ".go",
    ".hs",
    ".html",
    ".java",
    ".js",
    ".jl",
    ".lua",
    ".md",
    ".markdown",
    ".php",
    ".php3",
    ".php4",
    ".php5",
    ".phps",
    ".phpt",
    ".pl",
    ".pm",
    ".pod",
    ".perl",
    ".ps1",
    ".psd1",
    ".psm1",
    ".py",
    ".rb",
    ".rs",
    ".sql",
    ".scala",
    ".sh",
    ".bash",
    ".command",
    ".zsh",
    ".ts",
    ".tsx",
    ".tex",
    ".vb",
    "Dockerfile",
    "Makefile",
    ".xml",
    ".rst",
    ".m",
    ".smali",
];

fn default_licenses() -> Vec<String> {
    ["MIT", "Apache-2.0", "BSD-*", "0BSD"].map(String::from).to_vec()
}
fn default_extensions() -> Vec<String> {
    DEFAULT_EXTENSIONS.iter().map(|s| s.to_string()).collect()
}
fn default_max_line_length() -> usize {
    1000
}
fn default_max_mean_line_length() -> f64 {
    100.0
}
fn default_min_alphanumeric_fraction() -> f64 {
    0.25
}
fn default_true() -> bool {
    true
}

/// `[stages.NAME]` parameters of a `github` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// SPDX ids allowed; `PREFIX-*` allows every id starting with `PREFIX-`.
    #[serde(default = "default_licenses")]
    pub licenses: Vec<String>,
    /// Path suffixes kept.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Files with a longer line are dropped.
    #[serde(default = "default_max_line_length")]
    pub max_line_length: usize,
    /// Files whose characters per line exceed this are dropped.
    #[serde(default = "default_max_mean_line_length")]
    pub max_mean_line_length: f64,
    /// Files with a smaller share of alphanumeric characters are dropped.
    #[serde(default = "default_min_alphanumeric_fraction")]
    pub min_alphanumeric_fraction: f64,
    /// Remove a leading comment block that mentions copyright or a licence.
    #[serde(default = "default_true")]
    pub remove_license_header: bool,
}

/// Builds `github` stages.
#[derive(Debug)]
pub struct GithubFactory;

impl StageFactory for GithubFactory {
    fn type_name(&self) -> &'static str {
        "github"
    }

    fn summary(&self) -> &'static str {
        "BigQuery github_repos rows (JSON lines, Parquet) or plain repositories (folders, tarballs; licence detected), \
         filtered by licence, extension and line statistics, headers stripped"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: GithubConfig = parse_params(&decl.params)?;
        for l in &config.licenses {
            let id = l.strip_suffix('*').unwrap_or(l);
            if !l.ends_with('*') && spdx::license_id(id).is_none() {
                return Err(ParamError {
                    key: Some("licenses".into()),
                    message: format!("`{l}` is not an SPDX licence id"),
                });
            }
        }
        Ok(Arc::new(GithubStage { config }))
    }
}

fn extra_fields() -> Vec<Field> {
    vec![
        Field::new("repo_name", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("license", DataType::Utf8, true),
        Field::new("language", DataType::Utf8, true),
    ]
}

/// The `github` dataset's schema: core columns plus `repo_name`, `path`, `license`, `language`.
pub fn github_schema() -> SchemaRef {
    document_schema(extra_fields())
}

/// The raw table's schema: the `github` schema plus `quarantine_reason`.
pub fn github_raw_schema() -> SchemaRef {
    let mut fields = extra_fields();
    fields.push(Field::new(QUARANTINE_REASON, DataType::Utf8, true));
    document_schema(fields)
}

/// Raw GitHub rows as a DataFusion table: one partition per rows file (JSON
/// lines, or Parquet when the name ends in `.parquet`) and per repository
/// (a tarball, or a folder's files). Repository files whose path does not end
/// in one of `extensions` are listed without being read.
pub fn github_table(
    files: Vec<InputFile>,
    extensions: Arc<Vec<String>>,
    progress: Progress,
) -> Result<StreamingTable, StageError> {
    let (rows_files, repo_files): (Vec<InputFile>, Vec<InputFile>) =
        files.into_iter().partition(|f| repos::is_rows_file(&f.relative));
    let (parquet, json): (Vec<InputFile>, Vec<InputFile>) =
        rows_files.into_iter().partition(|f| f.relative.ends_with(".parquet"));
    let mut partitions = json_lines_partitions(json, progress.clone(), GithubRows::new);
    for repo in repos::github_units(repo_files) {
        partitions.push(Arc::new(repos::RepoPartition {
            files: repo.files,
            extensions: extensions.clone(),
            progress: progress.clone(),
            schema: github_raw_schema(),
        }));
    }
    for file in parquet {
        partitions.push(Arc::new(GithubParquetPartition {
            file,
            progress: progress.clone(),
            schema: github_raw_schema(),
        }));
    }
    Ok(StreamingTable::try_new(github_raw_schema(), partitions)?)
}

/// Rows per batch read from Parquet exports (file contents can be large).
const PARQUET_BATCH_ROWS: usize = 1024;

/// One Parquet export file, read through the object store.
#[derive(Debug)]
struct GithubParquetPartition {
    file: InputFile,
    progress: Progress,
    schema: SchemaRef,
}

impl PartitionStream for GithubParquetPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let file = self.file.clone();
        let progress = self.progress.clone();
        builder.spawn(async move {
            let loc = &file.location;
            // Listed inputs come without a size; Parquet needs it to find the footer.
            let size = match file.size {
                0 => {
                    loc.store
                        .head(&loc.path)
                        .await
                        .map_err(|e| unreadable(&file, e.to_string()))?
                        .size
                }
                n => n,
            };
            // DataFusion's own reader: ranged reads through the object store, never the whole file.
            let reader = DefaultParquetFileReaderFactory::new(loc.store.clone()).create_reader(
                0,
                PartitionedFile::new(loc.path.to_string(), size),
                None,
                &ExecutionPlanMetricsSet::new(),
            )?;
            let mut stream = ParquetRecordBatchStreamBuilder::new(SendReader(reader))
                .await
                .and_then(|b| b.with_batch_size(PARQUET_BATCH_ROWS).build())
                .map_err(|e| unreadable(&file, format!("not a readable Parquet file: {e}")))?;
            let mut rows = GithubRows::new();
            let mut row_number: u64 = 0;
            while let Some(batch) = stream.next().await {
                let batch = batch
                    .map_err(|e| unreadable(&file, format!("Parquet decoding failed after row {row_number}: {e}")))?;
                let column = |name: &str| -> Result<Option<ArrayRef>, DataFusionError> {
                    match batch.column_by_name(name) {
                        Some(c) => Ok(Some(arrow::compute::cast(c, &DataType::Utf8)?)),
                        None => Ok(None),
                    }
                };
                let (Some(repo), Some(path), Some(content)) =
                    (column("repo_name")?, column("path")?, column("content")?)
                else {
                    return Err(unreadable(
                        &file,
                        "a GitHub export needs the columns repo_name, path and content".into(),
                    ));
                };
                let (license, language) = (column("license")?, column("language")?);
                for r in 0..batch.num_rows() {
                    let fields = GithubFields {
                        repo_name: cell(Some(&repo), r),
                        path: cell(Some(&path), r),
                        content: cell(Some(&content), r),
                        license: cell(license.as_ref(), r),
                        language: cell(language.as_ref(), r),
                    };
                    rows.push_fields(&file, row_number, fields);
                    row_number += 1;
                }
                if tx.send(rows.finish().map_err(Into::into)).await.is_err() {
                    return Ok(());
                }
            }
            progress.add_bytes(file.size);
            Ok(())
        });
        builder.build()
    }
}

/// The `github` stage.
#[derive(Debug)]
pub struct GithubStage {
    config: GithubConfig,
}

/// Why a file is dropped, named as the counts and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropRule {
    /// No licence in the row.
    LicenseMissing,
    /// The licence is not an SPDX expression, even read leniently.
    LicenseUnparsable,
    /// The licence expression is not satisfied by the allowed licences.
    LicenseNotAllowed,
    /// The path's extension is not in the whitelist.
    Extension,
    /// A licence file or certificate.
    LicenseFile,
    /// Nothing left (after header removal).
    Empty,
    /// A line longer than the maximum.
    MaxLineLength,
    /// Too many characters per line on average.
    MeanLineLength,
    /// Too few alphanumeric characters.
    AlphanumericFraction,
}

impl DropRule {
    /// The rule's name in counts.
    pub fn name(self) -> &'static str {
        match self {
            DropRule::LicenseMissing => "license_missing",
            DropRule::LicenseUnparsable => "license_unparsable",
            DropRule::LicenseNotAllowed => "license_not_allowed",
            DropRule::Extension => "extension",
            DropRule::LicenseFile => "license_file",
            DropRule::Empty => "empty",
            DropRule::MaxLineLength => "max_line_length",
            DropRule::MeanLineLength => "mean_line_length",
            DropRule::AlphanumericFraction => "alphanumeric_fraction",
        }
    }
}

impl GithubStage {
    fn license_allowed(&self, id: &str) -> bool {
        self.config
            .licenses
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => allowed == id,
            })
    }

    /// Checks the licence expression.
    pub fn check_license(&self, license: Option<&str>) -> Result<(), DropRule> {
        let Some(text) = license.map(str::trim).filter(|l| !l.is_empty()) else {
            return Err(DropRule::LicenseMissing);
        };
        let normalized = normalize_license_case(text);
        let expr =
            spdx::Expression::parse_mode(&normalized, spdx::ParseMode::LAX).map_err(|_| DropRule::LicenseUnparsable)?;
        let ok = expr.evaluate(|req| match &req.license {
            spdx::LicenseItem::Spdx { id, .. } => self.license_allowed(id.name),
            spdx::LicenseItem::Other(_) => false,
        });
        if ok { Ok(()) } else { Err(DropRule::LicenseNotAllowed) }
    }

    /// Applies every rule to one file; returns the cleaned content to keep.
    pub fn clean<'a>(&self, path: &str, content: &'a str, license: Option<&str>) -> Result<Cow<'a, str>, DropRule> {
        self.check_license(license)?;
        if !self.config.extensions.iter().any(|e| path.ends_with(e.as_str())) {
            return Err(DropRule::Extension);
        }
        if is_license_file(path) {
            return Err(DropRule::LicenseFile);
        }
        let content = if self.config.remove_license_header {
            strip_license_header(path, content)
        } else {
            Cow::Borrowed(content)
        };
        let stats = LineStats::of(&content);
        if stats.chars == 0 || content.trim().is_empty() {
            return Err(DropRule::Empty);
        }
        if stats.max_line_length > self.config.max_line_length {
            return Err(DropRule::MaxLineLength);
        }
        if stats.mean_line_length() > self.config.max_mean_line_length {
            return Err(DropRule::MeanLineLength);
        }
        if stats.alphanumeric_fraction() < self.config.min_alphanumeric_fraction {
            return Err(DropRule::AlphanumericFraction);
        }
        Ok(content)
    }
}

#[async_trait]
impl Stage for GithubStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        github_schema()
    }

    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        repos::github_units(inputs)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let extensions = Arc::new(self.config.extensions.clone());
        let table = github_table(unit.files.clone(), extensions, ctx.progress.clone())?;
        let mut stream = ctx.session.read_table(Arc::new(table))?.execute_stream().await?;
        let mut counts = UnitCounts::default();
        let out_schema = ctx.schema();
        while let Some(batch) = stream.next().await {
            let good = take_good_rows(&batch?, ctx, &mut counts).await?;
            let col = |name: &str| good.column_by_name(name).map(|c| c.as_string::<i32>());
            let (Some(texts), Some(paths), Some(licenses)) = (col("text"), col("path"), col("license")) else {
                return Err(StageError::Other(
                    "the raw github table lacks text, path or license".into(),
                ));
            };
            // Rows are kept or dropped one by one; the kept ones are rebuilt with cleaned text.
            let mut keep = Vec::with_capacity(good.num_rows());
            let mut cleaned = StringBuilder::new();
            let mut n_chars = arrow::array::UInt64Builder::new();
            for row in 0..good.num_rows() {
                let license = (!licenses.is_null(row)).then(|| licenses.value(row));
                match self.clean(paths.value(row), texts.value(row), license) {
                    Ok(text) => {
                        keep.push(row as u32);
                        n_chars.append_value(text.chars().count() as u64);
                        cleaned.append_value(text);
                    }
                    Err(rule) => counts.filter(rule.name()),
                }
            }
            let kept = arrow::compute::take_record_batch(&good, &arrow::array::UInt32Array::from(keep))?;
            counts.kept += kept.num_rows() as u64;
            let mut columns: Vec<ArrayRef> = kept.columns().to_vec();
            columns[out_schema.index_of("text")?] = Arc::new(cleaned.finish());
            columns[out_schema.index_of("n_chars")?] = Arc::new(n_chars.finish());
            ctx.write(&RecordBatch::try_new(out_schema.clone(), columns)?).await?;
        }
        Ok(counts)
    }
}

/// BigQuery's `license` field holds GitHub's lowercase keys (`apache-2.0`,
/// `bsd-3-clause`): each licence token is given its SPDX spelling before parsing.
fn normalize_license_case(text: &str) -> Cow<'_, str> {
    let needs = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .any(|t| !t.is_empty() && !["AND", "OR", "WITH"].contains(&t) && spdx::license_id(t).is_none());
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.is_empty() {
            return;
        }
        let upper = token.to_ascii_uppercase();
        if ["AND", "OR", "WITH"].contains(&upper.as_str()) {
            out.push_str(&upper);
        } else {
            let plus = token.ends_with('+');
            let bare = token.trim_end_matches('+');
            match spdx::identifiers::LICENSES
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(bare))
            {
                Some(l) => {
                    out.push_str(l.name);
                    if plus {
                        out.push('+');
                    }
                }
                None => out.push_str(token),
            }
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || c == '(' || c == ')' {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    Cow::Owned(out)
}

/// Licence texts and certificates, at any depth (`LICENSE`, `COPYING.txt`,
/// `LICENSE-MIT.md`; not code such as `license_check.rs`).
fn is_license_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let (stem, ext) = lower.split_once('.').unwrap_or((&lower, ""));
    let text_like = matches!(
        ext,
        "" | "md" | "txt" | "rst" | "markdown" | "html" | "mit" | "apache" | "bsd"
    );
    let licence_like = text_like
        && ["license", "licence", "copying", "copyright", "notice"]
            .iter()
            .any(|l| stem == *l || stem.starts_with(&format!("{l}-")));
    let cert = [".crt", ".pem", ".cer", ".der", ".p12", ".pfx", ".key"]
        .iter()
        .any(|e| lower.ends_with(e));
    licence_like || cert
}

/// The line-comment markers of a file's language, from its name.
fn line_comment_markers(path: &str) -> &'static [&'static str] {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or(name);
    match ext {
        "py" | "rb" | "sh" | "bash" | "zsh" | "command" | "pl" | "pm" | "perl" | "cmake" | "ps1" | "psd1" | "psm1"
        | "Dockerfile" | "dockerfile" | "Makefile" => &["#"],
        "sql" | "lua" | "hs" => &["--"],
        "f" | "f90" | "f03" | "f08" | "f77" | "f95" | "for" | "fpp" => &["!", "c ", "C "],
        "tex" | "m" => &["%"],
        "bat" | "cmd" => &["REM", "rem", "::"],
        "vb" => &["'"],
        "asm" => &[";"],
        "md" | "markdown" | "rst" | "html" | "xml" => &[],
        _ => &["//"],
    }
}

fn mentions_license(block: &str) -> bool {
    let lower = block.to_lowercase();
    ["copyright", "license", "licence", "spdx-license-identifier", "(c) "]
        .iter()
        .any(|w| lower.contains(w))
}

/// Removes the comment block at the very top of the file (after a shebang and
/// blank lines) when it mentions copyright or a licence; keeps the shebang.
pub fn strip_license_header<'a>(path: &str, content: &'a str) -> Cow<'a, str> {
    let mut start = 0;
    if content.starts_with("#!") {
        start = content.find('\n').map_or(content.len(), |i| i + 1);
    }
    let body = &content[start..];
    let lead = body.len() - body.trim_start().len();
    let rest = &body[lead..];
    let block_len = if rest.starts_with("/*") {
        rest.find("*/").map(|i| i + 2)
    } else if rest.starts_with("<!--") {
        rest.find("-->").map(|i| i + 3)
    } else if path.ends_with(".py") && (rest.starts_with("\"\"\"") || rest.starts_with("'''")) {
        rest[3..].find(&rest[..3]).map(|i| i + 6)
    } else {
        let markers = line_comment_markers(path);
        let mut len = 0;
        for line in rest.split_inclusive('\n') {
            let t = line.trim_start();
            if markers.iter().any(|m| t.starts_with(m))
                && !(t.starts_with("#!") || t.starts_with("#include") || t.starts_with("#define"))
            {
                len += line.len();
            } else {
                break;
            }
        }
        (len > 0).then_some(len)
    };
    match block_len {
        Some(len) if mentions_license(&rest[..len]) => {
            let after = rest[len..]
                .trim_start_matches([' ', '\t'])
                .trim_start_matches(['\r', '\n']);
            let mut out = String::with_capacity(start + after.len());
            out.push_str(&content[..start]);
            out.push_str(after);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(content),
    }
}

/// Line statistics as RedPajama computes them, in characters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineStats {
    /// Characters in the file (newlines included).
    pub chars: usize,
    /// Lines.
    pub lines: usize,
    /// The longest line, in characters.
    pub max_line_length: usize,
    /// Alphanumeric characters.
    pub alphanumeric: usize,
}

impl LineStats {
    /// Computes the statistics of `text`.
    pub fn of(text: &str) -> Self {
        let mut stats = LineStats {
            chars: 0,
            lines: 0,
            max_line_length: 0,
            alphanumeric: 0,
        };
        for line in text.lines() {
            let n = line.chars().count();
            stats.lines += 1;
            stats.max_line_length = stats.max_line_length.max(n);
        }
        for c in text.chars() {
            stats.chars += 1;
            if c.is_alphanumeric() {
                stats.alphanumeric += 1;
            }
        }
        stats
    }

    /// Characters per line (RedPajama: len(content) / number of lines).
    pub fn mean_line_length(&self) -> f64 {
        if self.lines == 0 {
            0.0
        } else {
            self.chars as f64 / self.lines as f64
        }
    }

    /// Share of alphanumeric characters.
    pub fn alphanumeric_fraction(&self) -> f64 {
        if self.chars == 0 {
            0.0
        } else {
            self.alphanumeric as f64 / self.chars as f64
        }
    }
}

/// One BigQuery row; other fields (`size`, `id`, ...) are ignored.
#[derive(Deserialize)]
struct GithubLine<'a> {
    #[serde(borrow, default)]
    repo_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    license: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    language: Option<Cow<'a, str>>,
}

/// DataFusion hands out `Box<dyn AsyncFileReader + Send>`, while parquet
/// implements the trait only for the box without `Send`; forwarding through
/// this wrapper keeps the reading task `Send`.
struct SendReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for SendReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.0.get_metadata(options)
    }
}

/// The string in row `r` of a Utf8 column, if the column exists and the cell is not null.
fn cell(column: Option<&ArrayRef>, r: usize) -> Option<&str> {
    let strings = column?.as_string::<i32>();
    (!strings.is_null(r)).then(|| strings.value(r))
}

/// The fields of one row, whatever the export format.
struct GithubFields<'a> {
    repo_name: Option<&'a str>,
    path: Option<&'a str>,
    content: Option<&'a str>,
    license: Option<&'a str>,
    language: Option<&'a str>,
}

/// Builds rows of the raw GitHub table.
struct GithubRows {
    docs: DocumentColumnsBuilder,
    repo_name: StringBuilder,
    path: StringBuilder,
    license: StringBuilder,
    language: StringBuilder,
    reason: StringBuilder,
}

impl GithubRows {
    /// Adds one row; a row without `repo_name` or `path` cannot be named and is quarantined.
    fn push_fields(&mut self, file: &InputFile, offset: u64, f: GithubFields) {
        let (Some(repo_name), Some(path)) = (f.repo_name, f.path) else {
            let raw = format!("repo_name={:?} path={:?}", f.repo_name, f.path);
            self.push_bad(file, offset, "row without repo_name or path", &raw);
            return;
        };
        let locator = format!("{}#{offset}", file.relative);
        let url = format!("github:{repo_name}/{path}");
        // A row without content is kept as an empty file; the `empty` rule drops it.
        self.docs
            .append(&locator, Some(&url), f.content.unwrap_or(""), &file.display, offset);
        self.repo_name.append_value(repo_name);
        self.path.append_value(path);
        self.license.append_option(f.license);
        self.language.append_option(f.language);
        self.reason.append_null();
    }

    fn new() -> Self {
        GithubRows {
            docs: DocumentColumnsBuilder::new(SOURCE),
            repo_name: StringBuilder::new(),
            path: StringBuilder::new(),
            license: StringBuilder::new(),
            language: StringBuilder::new(),
            reason: StringBuilder::new(),
        }
    }
}

impl JsonRows for GithubRows {
    fn schema(&self) -> SchemaRef {
        github_raw_schema()
    }

    fn push_line(&mut self, file: &InputFile, offset: u64, line: &str) {
        match serde_json::from_str::<GithubLine>(line) {
            Ok(rec) => {
                let fields = GithubFields {
                    repo_name: rec.repo_name.as_deref(),
                    path: rec.path.as_deref(),
                    content: rec.content.as_deref(),
                    license: rec.license.as_deref(),
                    language: rec.language.as_deref(),
                };
                self.push_fields(file, offset, fields);
            }
            Err(e) => self.push_bad(file, offset, &format!("invalid JSON record: {e}"), line),
        }
    }

    fn push_bad(&mut self, file: &InputFile, offset: u64, reason: &str, raw: &str) {
        let locator = format!("{}#{offset}", file.relative);
        self.docs.append(&locator, None, &excerpt(raw), &file.display, offset);
        self.repo_name.append_value("");
        self.path.append_value("");
        self.license.append_null();
        self.language.append_null();
        self.reason.append_value(reason);
    }

    fn docs(&self) -> &DocumentColumnsBuilder {
        &self.docs
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns: Vec<ArrayRef> = self.docs.finish();
        columns.push(Arc::new(self.repo_name.finish()));
        columns.push(Arc::new(self.path.finish()));
        columns.push(Arc::new(self.license.finish()));
        columns.push(Arc::new(self.language.finish()));
        columns.push(Arc::new(self.reason.finish()));
        RecordBatch::try_new(github_raw_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> GithubStage {
        let config: GithubConfig = parse_params(&toml::Table::new()).unwrap();
        GithubStage { config }
    }

    #[test]
    fn licence_expressions_follow_or_and_semantics() {
        let s = stage();
        for ok in [
            "MIT",
            "Apache-2.0",
            "BSD-3-Clause",
            "MIT OR Apache-2.0",
            "Unlicense OR MIT",
            "BSD-3-Clause AND BSD-2-Clause",
            "mit",
            "apache-2.0",
            "bsd-2-clause",
            "Apache-2.0 WITH LLVM-exception",
        ] {
            assert_eq!(s.check_license(Some(ok)), Ok(()), "{ok}");
        }
        for no in ["GPL-3.0", "MIT AND GPL-2.0", "Unlicense", "gpl-2.0", "MPL-2.0"] {
            assert_eq!(s.check_license(Some(no)), Err(DropRule::LicenseNotAllowed), "{no}");
        }
        assert_eq!(s.check_license(None), Err(DropRule::LicenseMissing));
        assert_eq!(s.check_license(Some("  ")), Err(DropRule::LicenseMissing));
        assert_eq!(
            s.check_license(Some("((not a licence")),
            Err(DropRule::LicenseUnparsable)
        );
    }

    #[test]
    fn extension_whitelist_and_licence_files() {
        let s = stage();
        let code = "fn main() {\n    println!(\"hello\");\n}\n";
        assert!(s.clean("src/main.rs", code, Some("MIT")).is_ok());
        assert!(
            s.clean("docker/Dockerfile", "FROM debian\nRUN make all\n", Some("MIT"))
                .is_ok()
        );
        assert_eq!(s.clean("Cargo.toml", code, Some("MIT")), Err(DropRule::Extension));
        assert_eq!(
            s.clean(
                "docs/LICENSE.md",
                "MIT License\nPermission is hereby granted\n",
                Some("MIT")
            ),
            Err(DropRule::LicenseFile)
        );
        assert_eq!(
            s.clean("certs/ca.pem.md", code, Some("MIT")).map(|_| ()),
            Ok(()),
            "only the name's own extension matters"
        );
        assert!(
            is_license_file("a/b/COPYING.txt") && is_license_file("LICENSE-MIT.md") && is_license_file("x/server.crt")
        );
        assert!(!is_license_file("src/license_check.rs") && !is_license_file("src/license-check.rs"));
        assert_eq!(normalize_license_case("apache-2.0 or mit"), "Apache-2.0 OR MIT");
    }

    #[test]
    fn line_statistics_thresholds_are_strict() {
        let s = stage();
        let short_lines = "int x = 1;\n".repeat(20);
        let exactly_1000 = format!("{}\n{short_lines}", "a".repeat(1000));
        assert!(s.clean("a.c", &exactly_1000, Some("MIT")).is_ok());
        let over = format!("{}\n{short_lines}", "a".repeat(1001));
        assert_eq!(s.clean("a.c", &over, Some("MIT")), Err(DropRule::MaxLineLength));
        let long_lines = format!("{}\n", "word ".repeat(30)).repeat(10); // 151 chars per line
        assert_eq!(s.clean("a.c", &long_lines, Some("MIT")), Err(DropRule::MeanLineLength));
        assert_eq!(
            s.clean("a.c", "{}[]();\n{}[]();\n=+-*/;\n", Some("MIT")),
            Err(DropRule::AlphanumericFraction)
        );
        assert_eq!(s.clean("a.c", "   \n\n", Some("MIT")), Err(DropRule::Empty));
        let stats = LineStats::of("ab\ncd\n");
        assert_eq!((stats.chars, stats.lines, stats.max_line_length), (6, 2, 2));
        assert_eq!(stats.mean_line_length(), 3.0);
    }

    #[test]
    fn only_a_leading_licence_block_is_stripped() {
        let c = "/*\n * Copyright (c) 2020 Someone\n * Licensed under MIT\n */\n#include <stdio.h>\nint main() { return 0; }\n";
        assert_eq!(
            strip_license_header("a.c", c),
            "#include <stdio.h>\nint main() { return 0; }\n"
        );
        let py = "#!/usr/bin/env python\n# Copyright 2019 Foo\n# SPDX-License-Identifier: MIT\n\nimport os\n";
        assert_eq!(strip_license_header("x.py", py), "#!/usr/bin/env python\nimport os\n");
        let rs = "// SPDX-License-Identifier: MIT OR Apache-2.0\n// Copyright The Authors\nuse std::io;\n";
        assert_eq!(strip_license_header("x.rs", rs), "use std::io;\n");
        // A leading comment that is not about licensing stays, and so does #include (RedPajama stripped it).
        let doc = "// Parses the config file.\nfn parse() {}\n";
        assert_eq!(strip_license_header("x.rs", doc), doc);
        let inc = "#include <a.h>\n/* Copyright 2020 */\nint x;\n";
        assert_eq!(strip_license_header("x.c", inc), inc);
        // A copyright comment further down is not a header.
        let later = "int x;\n/* Copyright 2020 */\n";
        assert_eq!(strip_license_header("x.c", later), later);
        let docstring = "\"\"\"Module.\n\nLicensed under the Apache License.\n\"\"\"\nimport sys\n";
        assert_eq!(strip_license_header("m.py", docstring), "import sys\n");
    }

    #[tokio::test]
    async fn parquet_exports_are_read_with_row_numbers_as_keys() {
        use arrow::array::{LargeStringArray, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.parquet");
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            Field::new("repo_name", DataType::Utf8, true),
            Field::new("path", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
            Field::new("license", DataType::LargeUtf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("a/b"), Some("a/b"), Some("c/d")])),
                Arc::new(StringArray::from(vec![Some("src/lib.rs"), None, Some("x.py")])),
                Arc::new(StringArray::from(vec![Some("fn f() {}\n"), Some("x"), None])),
                Arc::new(LargeStringArray::from(vec![Some("MIT"), Some("MIT"), None])),
            ],
        )
        .unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let loc = llamaflow_pipeline::store::StoreRegistry::default()
            .resolve(path.to_str().unwrap(), dir.path())
            .unwrap();
        let file = InputFile {
            location: loc,
            relative: "export.parquet".into(),
            display: "github/export.parquet".into(),
            size: 0,
            version: "v".into(),
        };

        let ctx = datafusion::prelude::SessionContext::new();
        let table = github_table(vec![file], Arc::new(default_extensions()), Progress::hidden()).unwrap();
        let batches = ctx.read_table(Arc::new(table)).unwrap().collect().await.unwrap();
        let rows: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let col = |n: &str| b.column_by_name(n).unwrap().clone();
                let (url, offset, reason, lic) =
                    (col("url"), col("input_offset"), col(QUARANTINE_REASON), col("license"));
                (0..b.num_rows())
                    .map(|r| {
                        let s = |a: &ArrayRef| arrow::util::display::array_value_to_string(a, r).unwrap();
                        format!("{}|{}|{}|{}", s(&offset), s(&url), s(&lic), s(&reason))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            rows,
            [
                "0|github:a/b/src/lib.rs|MIT|",
                "1|||row without repo_name or path",
                "2|github:c/d/x.py||",
            ]
        );
    }

    #[test]
    fn unknown_parameters_and_bad_licence_ids_are_refused() {
        let t: toml::Table = toml::from_str("max_line_lenght = 5").unwrap();
        assert_eq!(
            parse_params::<GithubConfig>(&t).unwrap_err().key.as_deref(),
            Some("max_line_lenght")
        );
    }
}
