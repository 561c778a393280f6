//! `llamaflow export megatron`: a tokenize stage's shards as Megatron-LM
//! indexed datasets (`.bin` + `.idx`), one per source and split, ready for
//! Megatron's blended datasets (`--data-path 0.67 DIR/commoncrawl_train ...`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use llamaflow_stages::tokenize::catalog::ShardCatalog;
use llamaflow_stages::tokenize::megatron::export_megatron;

use crate::GlobalArgs;

/// Flags of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    format: ExportFormat,
}

/// What to export to.
#[derive(Debug, Subcommand)]
enum ExportFormat {
    /// Megatron-LM's indexed dataset (`MMIDIDX`): `<source>_<split>.bin` and `.idx` per source.
    Megatron {
        /// The tokenize stage whose shards to export.
        #[arg(long, default_value = "tokenize")]
        stage: String,
        /// The folder to write into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs the export and prints what it wrote, as JSON lines.
pub fn export(global: &GlobalArgs, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Megatron { stage, out } = args.format;
    let engine = super::load_engine(global)?;
    let root =
        engine.root().root.url.to_file_path().map_err(|()| {
            anyhow::anyhow!("`export` reads memory-mapped shards: the output root must be a local folder")
        })?;
    let catalog = ShardCatalog::load(&root, &stage)?;
    if catalog.entries.is_empty() {
        bail!("stage `{stage}` committed no shards");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for split in ["train", "validation"] {
        for source in catalog.open(split)? {
            // The catalog just opened these shards, so each Arc is the only one.
            let shards = source
                .shards
                .into_iter()
                .map(|s| std::sync::Arc::try_unwrap(s).map_err(|_| anyhow::anyhow!("a shard is shared")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let prefix = out.join(format!("{}_{split}", source.name));
            let summary = export_megatron(&shards, &prefix)?;
            println!("{}", serde_json::to_string(&summary)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
