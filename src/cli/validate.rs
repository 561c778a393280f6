//! `llamaflow validate`: parse the pipeline file, build every stage, check the DAG.

use std::process::ExitCode;

use crate::GlobalArgs;

/// Checks the pipeline file and that every stage's file inputs exist; prints what it declares.
pub async fn validate(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(global)?;
    let mut problems = Vec::new();
    for stage in engine.dag().order() {
        // Planning resolves the stage's file inputs (stage references wait for their upstream).
        if let Err(e) = engine.plan(stage, false).await {
            problems.push(e);
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Ok(ExitCode::from(2));
    }
    println!(
        "{}: ok ({} stages: {}; output root {})",
        global.pipeline.display(),
        engine.dag().order().len(),
        engine.dag().order().join(", "),
        engine.root().root.url
    );
    Ok(ExitCode::SUCCESS)
}
