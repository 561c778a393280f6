//! `llamaflow mixture`: the training mixture over a tokenize stage's shards:
//! per source its proportion, tokens and epochs for a budget, and (with
//! `--draw N`) the share of tokens each source gets over N sequences, as the
//! trainer's reader serves them.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use llamaflow_stages::tokenize::catalog::ShardCatalog;
use llamaflow_stages::tokenize::mixture::{MixturePlan, MixtureReader};
use tracing::warn;

use crate::GlobalArgs;

/// Flags of `mixture`.
#[derive(Debug, Args)]
pub struct MixtureArgs {
    /// The tokenize stage whose shards to read (default: the pipeline's only one).
    #[arg(long)]
    stage: Option<String>,
    /// Tokens per training sequence (each sequence read is one longer, for the shifted target).
    #[arg(long, default_value_t = 2048)]
    seq_len: usize,
    /// Training tokens to plan for (default: all the training tokens there are).
    #[arg(long)]
    budget_tokens: Option<u64>,
    /// No source is repeated more than this many times; the others make up the budget.
    #[arg(long)]
    max_epochs: Option<f64>,
    /// Seed of the reading order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Read this many sequences and report each source's share of their tokens.
    #[arg(long)]
    draw: Option<u64>,
}

/// Prints the plan (and the drawn shares) as JSON.
pub async fn mixture(global: &GlobalArgs, args: MixtureArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    let types = engine.stage_types();
    let stage = match args.stage {
        Some(s) => s,
        None => {
            let tokenize: Vec<&String> = types.iter().filter(|(_, t)| *t == "tokenize").map(|(n, _)| n).collect();
            match tokenize.as_slice() {
                [one] => (*one).clone(),
                [] => bail!("the pipeline has no tokenize stage"),
                _ => bail!("the pipeline has several tokenize stages: pick one with --stage"),
            }
        }
    };
    let root = engine.root().root.url.to_file_path().map_err(|()| {
        anyhow::anyhow!("`mixture` reads memory-mapped shards: the output root must be a local folder")
    })?;
    let catalog = ShardCatalog::load(&root, &stage)?;
    let tokens = catalog.tokens_by_source("train");
    let plan = MixturePlan::new(&engine.file().mixture, &tokens, args.budget_tokens, args.max_epochs)
        .context("cannot plan the mixture")?;
    for w in &plan.warnings {
        warn!("{w}");
    }
    let mut report = serde_json::json!({ "stage": stage, "seq_len": args.seq_len, "plan": plan });
    if let Some(n) = args.draw {
        let sources = catalog.open("train")?;
        let reader = MixtureReader::new(&plan, sources, args.seq_len, args.seed, 0, 1, None)?;
        let mut drawn: BTreeMap<String, u64> = BTreeMap::new();
        for sequence in reader.take(n as usize) {
            *drawn.entry(sequence.source).or_default() += sequence.tokens.len() as u64;
        }
        let total: u64 = drawn.values().sum();
        let share: BTreeMap<&String, f64> = drawn
            .iter()
            .map(|(s, t)| (s, *t as f64 / total.max(1) as f64))
            .collect();
        report["draw"] = serde_json::json!({ "sequences": n, "tokens": drawn, "share": share });
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
