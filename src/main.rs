//! `llamaflow`: build the LLaMA-1 pretraining corpus and inspect it.
//! One file per subcommand under `cli/`; this file parses flags and sets up logging.

mod cli;

// mimalloc, not glibc's malloc: tokenizing allocates a few small strings per
// token, and glibc's allocator took ~40% of the `tokenize` stage's time (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc's `mi_option_purge_delay` (v3's option enum; the `mimalloc` crate
/// builds v3 by default).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// mimalloc's option setter, linked in with the allocator.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Under `--memory-limit`, memory freed goes back to the OS at once. mimalloc
/// otherwise delays purging until the freeing thread allocates again, so
/// threads that went idle keep their freed pages: on a 4x MinHash dedup under
/// a 512M limit, peak RSS was 919 MiB with the default and 500 MiB with this.
fn purge_freed_memory_at_once() {
    // SAFETY: sets a process-wide allocator option (an integer) by its
    // documented id; mimalloc reads options at each purge decision, so
    // setting one after start-up is supported.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Build the LLaMA-1 pretraining corpus: a staged, resumable DAG over DataFusion.
#[derive(Debug, Parser)]
#[command(name = "llamaflow", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The pipeline file.
    #[arg(long, global = true, default_value = "llamaflow.toml", env = "LLAMAFLOW_PIPELINE")]
    pub pipeline: PathBuf,
    /// Overrides the pipeline file's `[output] root` (a path or an object-store URL such as s3://bucket/prefix).
    #[arg(long, global = true)]
    pub output: Option<String>,
    /// Units of work in flight at once (default: the number of cores).
    #[arg(long, global = true)]
    pub jobs: Option<usize>,
    /// Memory DataFusion may use before spilling, e.g. 4G or 512M.
    #[arg(long, global = true, value_parser = parse_bytes)]
    pub memory_limit: Option<usize>,
    /// No progress bars; warnings and errors only.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// How logs are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, with progress bars.
    Text,
    /// One JSON object per line, no progress bars.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (all stages, or a selection).
    Run(cli::run::RunArgs),
    /// Show each stage: up to date, stale or never run, with its counts.
    Status(cli::status::StatusArgs),
    /// Print the stage DAG.
    Graph(cli::graph::GraphArgs),
    /// Check a pipeline file without running anything.
    Validate,
    /// Count the tokens of text files with a tokenizer.json, timing each.
    Tokens(cli::tokens::TokensArgs),
    /// The training mixture over the token shards: proportions, epochs, drawn shares.
    Mixture(cli::mixture::MixtureArgs),
    /// Export token shards for other trainers (Megatron-LM).
    Export(cli::export::ExportArgs),
    /// Query every dataset of the output root with SQL (read-only).
    Sql(cli::sql::SqlArgs),
    /// LLaMA configs and checkpoints: info, init, export-hf, import-hf.
    Model(cli::model::ModelArgs),
    /// Continue a prompt with a checkpoint (greedy, or sampled with --temperature/--top-p).
    Generate(cli::generate::GenerateArgs),
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult: usize = match t[i..].to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                other => return Err(format!("unknown unit `{other}` (use K, M, G or T)")),
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 4G"))?;
    Ok((n * mult as f64) as usize)
}

fn init_logging(global: &GlobalArgs) {
    let default = if global.quiet {
        "warn"
    } else {
        "info,datafusion=warn,object_store=warn"
    };
    let filter = EnvFilter::try_from_env("LLAMAFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    match (global.log_format, global.quiet) {
        (LogFormat::Json, _) => {
            registry
                .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
                .init();
        }
        (LogFormat::Text, true) => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_target(false),
                )
                .init();
        }
        (LogFormat::Text, false) => {
            let bars = tracing_indicatif::IndicatifLayer::new();
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(bars.get_stderr_writer())
                        .with_target(false),
                )
                .with(bars)
                .init();
        }
    }
}

/// Output piped into a reader that stops early (`llamaflow sql ... | head`)
/// ends the process quietly, as for any Unix tool, instead of a panic in
/// `println!` (Rust ignores SIGPIPE by default).
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; setting a
    // signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = Cli::parse();
    init_logging(&cli.global);
    if cli.global.memory_limit.is_some() {
        purge_freed_memory_at_once();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cli::run::run(&cli.global, args).await,
            Command::Status(args) => cli::status::status(&cli.global, args).await,
            Command::Graph(args) => cli::graph::graph(&cli.global, args),
            Command::Validate => cli::validate::validate(&cli.global).await,
            Command::Tokens(args) => cli::tokens::tokens(args),
            Command::Mixture(args) => cli::mixture::mixture(&cli.global, args).await,
            Command::Export(args) => cli::export::export(&cli.global, args),
            Command::Sql(args) => cli::sql::sql(&cli.global, args).await,
            Command::Model(args) => cli::model::model(args),
            Command::Generate(args) => cli::generate::generate(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("4G").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("3X").is_err());
    }
}
