//! `llamaflow validate`: parse the pipeline file, build every stage, check the DAG.

use std::process::ExitCode;

use crate::GlobalArgs;

/// Checks the pipeline file; prints what it declares.
pub fn validate(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    println!(
        "{}: ok ({} stages: {}; output root {})",
        global.pipeline.display(),
        engine.dag().order().len(),
        engine.dag().order().join(", "),
        engine.root().root.url
    );
    Ok(ExitCode::SUCCESS)
}
