//! One module per subcommand, plus what they share.

pub mod export;
pub mod generate;
pub mod graph;
pub mod mixture;
pub mod model;
pub mod model_bench;
pub mod run;
pub mod sql;
pub mod status;
pub mod tokens;
pub mod validate;

use anyhow::Context;
use llamaflow_pipeline::{Engine, PipelineFile};
use llamaflow_sql::SessionBuilder;

use crate::GlobalArgs;

/// Cores to use when `--jobs` is not given.
pub fn jobs(global: &GlobalArgs) -> usize {
    global
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Loads the pipeline file and builds every stage in it.
pub fn load_engine(global: &GlobalArgs) -> anyhow::Result<Engine> {
    let file = PipelineFile::load(&global.pipeline)?;
    let session = SessionBuilder::default()
        .target_partitions(jobs(global))
        .memory_limit(global.memory_limit);
    let engine = Engine::new(file, &llamaflow_stages::registry(), global.output.as_deref(), session)
        .with_context(|| format!("cannot set up the pipeline `{}`", global.pipeline.display()))?;
    Ok(engine)
}

/// Formats a count with thousands separators.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
