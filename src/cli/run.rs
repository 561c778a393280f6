//! `llamaflow run`: run the whole DAG or a selection, skipping what is up to date.

use std::process::ExitCode;

use clap::Args;
use llamaflow_pipeline::{RunOptions, StageState};

use super::count;
use crate::GlobalArgs;

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only these stages (comma-separated), plus any missing or stale upstream.
    #[arg(long, value_delimiter = ',')]
    stages: Vec<String>,
    /// Start at this stage (it and everything downstream).
    #[arg(long)]
    from: Option<String>,
    /// Stop at this stage (it and everything upstream).
    #[arg(long)]
    until: Option<String>,
    /// With --stages: do not add upstream stages.
    #[arg(long)]
    no_deps: bool,
    /// Recompute even up-to-date stages and committed units.
    #[arg(long)]
    force: bool,
    /// Print the plan and exit.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the selected stages; exit code 1 when any stage or unit failed.
pub async fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    let selected = engine
        .dag()
        .select(&args.stages, args.from.as_deref(), args.until.as_deref(), args.no_deps)
        .map_err(anyhow::Error::msg)?;

    if args.dry_run {
        println!(
            "plan for {} (output root {}):",
            global.pipeline.display(),
            engine.root().root.url
        );
        for stage in &selected {
            match engine.plan(stage, args.force).await {
                Ok(plan) => {
                    let todo = plan.units.len() - plan.reusable.len();
                    let action = match (&plan.state, args.force) {
                        (StageState::UpToDate, false) => "skip".to_string(),
                        (StageState::Waiting(_), _) => "run after its upstream".to_string(),
                        _ => format!("run {todo} of {} units", plan.units.len()),
                    };
                    println!("  {stage:<20} {:<40} {action}", plan.state.to_string());
                }
                Err(e) => println!("  {stage:<20} error: {e}"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let opts = RunOptions {
        jobs: super::jobs(global),
        force: args.force,
        command,
    };
    let summary = engine.run(&selected, &opts).await?;

    println!("run {}", summary.run_id);
    println!(
        "{:<20} {:<11} {:>13} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "stage", "status", "units r/c/all", "in", "kept", "filtered", "quarantined", "secs"
    );
    for s in &summary.stages {
        let r = &s.record;
        println!(
            "{:<20} {:<11} {:>13} {:>12} {:>12} {:>12} {:>12} {:>8.1}",
            r.stage,
            r.status,
            format!("{}/{}/{}", r.units_run, r.units_reused, r.units_total),
            count(r.counts.rows_in),
            count(r.counts.kept),
            count(r.counts.filtered_total()),
            count(r.counts.quarantined),
            r.duration_s
        );
        for (rule, n) in &r.counts.filtered {
            println!("{:<20}   filtered by {rule}: {}", "", count(*n));
        }
    }
    if summary.succeeded() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: the run did not complete:");
    for s in summary.stages.iter().filter(|s| !s.record.status.is_ok()) {
        eprintln!(
            "  stage `{}` {}: {}",
            s.record.stage,
            s.record.status,
            s.record.error.clone().unwrap_or_default()
        );
        for (unit, err) in &s.failed_units {
            eprintln!("    unit {unit}: {err}");
        }
    }
    eprintln!("committed units are kept; `llamaflow run` again redoes only what failed.");
    Ok(ExitCode::from(1))
}
