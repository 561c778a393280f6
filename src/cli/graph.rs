//! `llamaflow graph`: the stage DAG as text, or as Graphviz DOT with `--dot`.

use std::process::ExitCode;

use clap::Args;

use crate::GlobalArgs;

/// Flags of `graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Print Graphviz DOT instead of text.
    #[arg(long)]
    dot: bool,
}

/// Prints the DAG.
pub fn graph(global: &GlobalArgs, args: GraphArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    let types = engine.stage_types();
    if args.dot {
        print!("{}", engine.dag().to_dot(&types));
        return Ok(ExitCode::SUCCESS);
    }
    for stage in engine.dag().order() {
        let decl = engine
            .file()
            .stage(stage)
            .map(|d| d.inputs.iter().map(ToString::to_string).collect::<Vec<_>>());
        println!("{stage} ({})", types.get(stage).map(String::as_str).unwrap_or("?"));
        for input in decl.unwrap_or_default() {
            println!("  <- {input}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
