//! `llamaflow tokens`: how many tokens a file is, with a pipeline's tokenizer,
//! and how long encoding it took (the long-document benchmark uses it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use llamaflow_sql::TokenEncoder;

/// Flags of `tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The `tokenizer.json` to encode with (e.g. OUT/datasets/tokenizer/tokenizer.json).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Encode each file in one call, without cutting long texts into pieces
    /// (what HF `tokenizers` does; slow on huge texts with some tokenizers).
    #[arg(long)]
    whole: bool,
    /// Also print the ids.
    #[arg(long)]
    ids: bool,
    /// UTF-8 text files, each encoded as one document.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Encodes each file and prints one JSON line per file.
pub fn tokens(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let encoder = TokenEncoder::from_file(&args.tokenizer)?;
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
        let started = Instant::now();
        let (ids, segments) = if args.whole {
            (encoder.encode_whole(&text)?, 1)
        } else {
            (encoder.encode(&text)?, encoder.pieces(&text).len())
        };
        let seconds = started.elapsed().as_secs_f64();
        let mut line = serde_json::json!({
            "file": file.display().to_string(),
            "chars": text.chars().count(),
            "bytes": text.len(),
            "tokens": ids.len(),
            "seconds": seconds,
            "segments": segments,
        });
        if args.ids {
            line["ids"] = serde_json::json!(ids);
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
