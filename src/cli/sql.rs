//! `llamaflow sql`: read-only SQL over every dataset of the output root, with
//! DataFusion. Each dataset folder is a table (`c4`, `wikipedia__refs`,
//! `tokenize__shards`), `quarantine` spans every stage's quarantine, and the
//! pipeline's tokenizer, once trained, gives `tokenize(text)` and
//! `token_count(text)`; its quality models `perplexity(text, language)` and
//! `ref_probability(text)`. Statements that would write or create anything are
//! refused. Ready-made queries (`sql/queries/*.sql`) run by name with `--query`.
//! The run ledger is there as `runs`, `stage_runs` and `units`. Without
//! statements, an interactive shell.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use clap::{Args, ValueEnum};
use datafusion::execution::context::SQLOptions;
use datafusion::object_store::ObjectStoreExt;
use datafusion::prelude::SessionContext;
use llamaflow_pipeline::Engine;
use llamaflow_pipeline::catalog::OutputCatalog;
use llamaflow_sql::TokenEncoder;
use llamaflow_sql::udfs::tokenize::Tokenize;

use crate::GlobalArgs;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Flags of `sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// A statement to run (repeatable; run in order).
    #[arg(short = 'c', long = "command")]
    commands: Vec<String>,
    /// A file of statements separated by `;` (repeatable).
    #[arg(short = 'f', long = "file")]
    files: Vec<PathBuf>,
    /// A ready-made query from sql/queries/ by name (repeatable): sources_overview, top_domains, why_removed, token_budget.
    #[arg(long = "query")]
    queries: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// At most this many rows per result in `table` format (0: all).
    #[arg(long, default_value_t = 40)]
    maxrows: usize,
}

/// Runs the statements and prints each result.
pub async fn sql(global: &GlobalArgs, args: SqlArgs) -> anyhow::Result<ExitCode> {
    let mut statements: Vec<String> = args.commands.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        statements.extend(split_statements(&text));
    }
    for name in &args.queries {
        let Some(query) = llamaflow_sql::queries::named(name) else {
            let known: Vec<&str> = llamaflow_sql::queries::LIBRARY.iter().map(|(n, _)| *n).collect();
            bail!("no ready-made query `{name}` (known: {})", known.join(", "));
        };
        statements.extend(split_statements(query));
    }
    let engine = super::load_engine(global)?;
    // Loading a tokenizer or a model takes a while: only for the shell, or
    // when a statement names one of its functions.
    let uses = |functions: &[&str]| {
        statements.is_empty()
            || statements.iter().any(|s| {
                let s: String = s.to_ascii_lowercase().split_whitespace().collect();
                functions.iter().any(|f| s.contains(&format!("{f}(")))
            })
    };
    let artifacts = Artifacts {
        tokenizer: uses(&["tokenize", "token_count"]),
        perplexity: uses(&["perplexity"]),
        ref_probability: uses(&["ref_probability"]),
    };
    let ctx = session(global, &engine, artifacts).await?;
    if statements.is_empty() {
        shell(&ctx, args.format, args.maxrows).await?;
        return Ok(ExitCode::SUCCESS);
    }
    for statement in statements {
        run_statement(&ctx, &statement, args.format, args.maxrows).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one statement, read-only, and prints its result.
async fn run_statement(ctx: &SessionContext, statement: &str, format: Format, maxrows: usize) -> anyhow::Result<()> {
    // Read-only: no DDL (CREATE, DROP), no DML (INSERT, COPY ... TO), no SET.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(statement, options).await.map_err(|e| {
        let message = e.to_string();
        if message.contains("not supported") || message.contains("Unsupported") {
            anyhow::anyhow!("`llamaflow sql` is read-only: {message}")
        } else {
            anyhow::anyhow!(message)
        }
    })?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.collect().await?;
    if batches.is_empty() {
        // No rows still prints the columns.
        batches.push(RecordBatch::new_empty(schema));
    }
    print(&batches, format, maxrows)
}

const SHELL_HELP: &str = "statements end with `;` and may span lines; \\d lists the tables, \\d NAME describes one, \\h shows this, \\h NAME explains a function, \\q quits (or Ctrl-D)";

/// The interactive shell: statements over several lines, history in
/// `~/.llamaflow_history`, and backslash commands.
async fn shell(ctx: &SessionContext, format: Format, maxrows: usize) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".llamaflow_history"));
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    eprintln!("llamaflow sql: {SHELL_HELP}");
    let tables = || -> Vec<String> {
        let mut names = ctx
            .catalog("datafusion")
            .and_then(|c| c.schema("public"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.sort();
        names
    };
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "llamaflow> "
        } else {
            "       ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            match (words.next(), words.next()) {
                (Some("\\q"), _) => break,
                (Some("\\h"), None) => {
                    println!("{SHELL_HELP}");
                    let ours = llamaflow_sql::help::llamaflow_functions(&ctx.state());
                    println!("llamaflow's functions: {}", ours.join(", "));
                }
                (Some("\\h"), Some(name)) => match llamaflow_sql::help::function_help(&ctx.state(), name) {
                    Some(help) => println!("{help}"),
                    None => eprintln!("error: no function `{name}`"),
                },
                (Some("\\d"), None) => println!("{}", tables().join("\n")),
                (Some("\\d"), Some(name)) if tables().iter().any(|t| t == name) => {
                    let describe = async {
                        let batches = ctx.sql(&format!("DESCRIBE \"{name}\"")).await?.collect().await?;
                        print(&batches, Format::Table, 0)
                    };
                    if let Err(e) = describe.await {
                        eprintln!("error: {e:#}");
                    }
                }
                (Some("\\d"), Some(name)) => eprintln!("error: no table `{name}` (\\d lists them)"),
                _ => eprintln!("error: unknown command `{trimmed}`: {SHELL_HELP}"),
            }
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if trimmed.ends_with(';') {
            let _ = editor.add_history_entry(buffer.trim());
            for statement in split_statements(&buffer) {
                if let Err(e) = run_statement(ctx, &statement, format, maxrows).await {
                    eprintln!("error: {e:#}");
                }
            }
            buffer.clear();
        }
    }
    if let Some(path) = &history {
        // History is a convenience: a read-only home must not fail the session.
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Which artifacts' functions a session loads.
#[derive(Debug, Clone, Copy)]
struct Artifacts {
    tokenizer: bool,
    perplexity: bool,
    ref_probability: bool,
}

/// The bytes of a file in a stage's dataset folder, if the stage has run.
async fn stage_file(
    root: &llamaflow_pipeline::dataset::OutputRoot,
    stage: &str,
    name: &str,
) -> anyhow::Result<Option<(bytes::Bytes, String)>> {
    let location = root.dataset(stage).join(name);
    let Ok(found) = location.store.get(&location.path).await else {
        return Ok(None);
    };
    Ok(Some((found.bytes().await?, location.url.to_string())))
}

/// Registers `perplexity` and `ref_probability` from the `quality_lm` and
/// `ref_classifier` stages that have run (the last of each type wins).
async fn register_quality_models(ctx: &SessionContext, engine: &Engine, artifacts: Artifacts) -> anyhow::Result<()> {
    use llamaflow_sql::quality::{NgramLm, RefClassifier};
    use sha2::Digest;
    let root = engine.root();
    for (stage, type_name) in engine.stage_types() {
        if type_name == "quality_lm" && artifacts.perplexity {
            let Some((bytes, _)) = stage_file(root, &stage, llamaflow_stages::quality_lm::CUTOFFS_FILE).await? else {
                continue;
            };
            let cutoffs: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes)?;
            let mut models = std::collections::BTreeMap::new();
            let mut digest = sha2::Sha256::new();
            for language in cutoffs.keys() {
                let name = llamaflow_stages::quality_lm::model_file(language);
                let Some((bytes, url)) = stage_file(root, &stage, &name).await? else {
                    continue;
                };
                digest.update(&bytes);
                models.insert(language.clone(), NgramLm::from_bytes(&bytes, &url)?);
            }
            let version = hex::encode(digest.finalize());
            ctx.register_udf(llamaflow_sql::udfs::perplexity::Perplexity::udf(
                Arc::new(models),
                version,
            ));
        }
        if type_name == "ref_classifier" && artifacts.ref_probability {
            let file = llamaflow_stages::ref_classifier::MODEL_FILE;
            let Some((bytes, url)) = stage_file(root, &stage, file).await? else {
                continue;
            };
            let version = hex::encode(sha2::Sha256::digest(&bytes));
            let model = Arc::new(RefClassifier::from_bytes(&bytes, &url)?);
            ctx.register_udf(llamaflow_sql::udfs::ref_probability::RefProbability::udf(
                model, version,
            ));
        }
    }
    Ok(())
}

/// A session whose default schema is the output root's catalog, with the pipeline's UDFs.
async fn session(global: &GlobalArgs, engine: &Engine, artifacts: Artifacts) -> anyhow::Result<SessionContext> {
    let ctx = llamaflow_sql::SessionBuilder::default()
        .target_partitions(super::jobs(global))
        .memory_limit(global.memory_limit)
        .build()?;
    let root = engine.root().clone();
    let mut base = root.root.url.clone();
    base.set_path("");
    ctx.runtime_env().register_object_store(&base, root.root.store.clone());
    // Each tokenizer stage that has run gives `tokenize` and `token_count` (the last one wins).
    for (stage, type_name) in engine.stage_types() {
        if type_name != "tokenizer" || !artifacts.tokenizer {
            continue;
        }
        let location = root.dataset(&stage).join("tokenizer.json");
        let Ok(found) = location.store.get(&location.path).await else {
            continue;
        };
        let bytes = found.bytes().await?;
        let encoder = Arc::new(TokenEncoder::from_bytes(&bytes, location.url.as_str())?);
        ctx.register_udf(Tokenize::tokenize_udf(encoder.clone()));
        ctx.register_udf(Tokenize::token_count_udf(encoder));
    }
    register_quality_models(&ctx, engine, artifacts).await?;
    let catalog = OutputCatalog::open(root, ctx.state(), engine.file().mixture.clone()).await?;
    let schema = ctx
        .catalog("datafusion")
        .context("DataFusion's default catalog is missing")?;
    schema.register_schema("public", Arc::new(catalog))?;
    Ok(ctx)
}

/// Statements of a file: split at `;` outside quotes and `--` comments.
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn print(batches: &[RecordBatch], format: Format, maxrows: usize) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match format {
        Format::Table => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let shown: Vec<RecordBatch> = if maxrows == 0 || rows <= maxrows {
                batches.to_vec()
            } else {
                let mut left = maxrows;
                let mut shown = Vec::new();
                for b in batches {
                    if left == 0 {
                        break;
                    }
                    let n = b.num_rows().min(left);
                    shown.push(b.slice(0, n));
                    left -= n;
                }
                shown
            };
            println!("{}", arrow::util::pretty::pretty_format_batches(&shown)?);
            if shown.iter().map(RecordBatch::num_rows).sum::<usize>() < rows {
                println!("({rows} rows, {maxrows} shown; --maxrows 0 shows all)");
            }
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(stdout.lock());
            for b in batches {
                writer.write(&nested_as_text(b)?)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(stdout.lock());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            println!();
        }
        Format::Ndjson => {
            let mut writer = arrow::json::LineDelimitedWriter::new(stdout.lock());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
        }
    }
    Ok(())
}

/// `batch` with its list, struct and map columns as their display text
/// (`[1, 2]`, `{a: 1}`), which CSV cannot hold otherwise.
fn nested_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default().with_null("");
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let text: StringArray = (0..column.len())
                .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), arrow::datatypes::DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_at_semicolons_outside_quotes_and_comments() {
        let text = "SELECT 'a;b'; -- a comment; with a semicolon\nSELECT \"x;\" FROM t;\n\n;";
        assert_eq!(split_statements(text), vec!["SELECT 'a;b'", "SELECT \"x;\" FROM t"]);
    }
}
