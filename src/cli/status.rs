//! `llamaflow status`: each stage's state against its current inputs and config,
//! its counts, and when it last ran.

use std::process::ExitCode;

use clap::Args;
use llamaflow_pipeline::ledger::read_history;

use super::count;
use crate::GlobalArgs;

/// Flags of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object per stage instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the status table.
pub async fn status(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    let history = read_history(&engine.root().ledger()).await?;
    if !args.json {
        println!("output root {}", engine.root().root.url);
        println!(
            "{:<20} {:<36} {:>12} {:>12} {:>12} {:>12}  last run",
            "stage", "state", "in", "kept", "filtered", "quarantined"
        );
    }
    for stage in engine.dag().order() {
        let plan = engine.plan(stage, false).await;
        let (state, manifest) = match &plan {
            Ok(p) => (p.state.to_string(), p.manifest.clone()),
            Err(e) => (format!("error: {e}"), None),
        };
        let last = history.last_stage.get(stage);
        let counts = manifest.as_ref().map(|m| m.counts.clone()).unwrap_or_default();
        if args.json {
            let value = serde_json::json!({
                "stage": stage,
                "state": state,
                "rows_in": counts.rows_in,
                "kept": counts.kept,
                "filtered": counts.filtered,
                "quarantined": counts.quarantined,
                "reconciles": counts.reconciles(),
                "committed_at": manifest.as_ref().map(|m| m.committed_at.clone()),
                "last_run": last.map(|l| serde_json::json!({"run_id": l.run_id, "status": l.status, "finished_at": l.finished_at})),
            });
            println!("{value}");
            continue;
        }
        let last_text = last.map_or_else(|| "-".to_string(), |l| format!("{} ({})", l.finished_at, l.status));
        println!(
            "{:<20} {:<36} {:>12} {:>12} {:>12} {:>12}  {}",
            stage,
            state,
            count(counts.rows_in),
            count(counts.kept),
            count(counts.filtered_total()),
            count(counts.quarantined),
            last_text
        );
        for (rule, n) in &counts.filtered {
            println!("{:<20}   filtered by {rule}: {}", "", count(*n));
        }
    }
    if !args.json {
        for run in &history.unfinished {
            println!(
                "note: run {} started {} and never finished (killed?)",
                run.run_id, run.started_at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
