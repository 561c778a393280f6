//! The llamaflow engine: the pipeline file, the stage DAG, the `Stage` trait,
//! units of work, atomic dataset commits, the run ledger and progress.
//!
//! Reading order for a newcomer: `pipeline_file` (what users write), `dag`,
//! `stage` (what stage types implement), `unit`, `dataset` (how output is
//! committed), `engine` (how a run proceeds), `ledger`.

pub mod catalog;
pub mod dag;
pub mod dataset;
pub mod document;
pub mod engine;
pub mod inputs;
pub mod ledger;
pub mod pipeline_file;
pub mod progress;
pub mod registry;
pub mod stage;
pub mod store;
pub mod unit;

pub use dag::Dag;
pub use engine::{Engine, EngineError, RunOptions, RunSummary, StagePlan, StageState};
pub use pipeline_file::{InputRef, PipelineFile, PipelineFileError, StageDecl};
pub use registry::StageRegistry;
pub use stage::{ParamError, Stage, StageError, StageFactory, UnitCounts, parse_params};
pub use unit::{UnitContext, WorkUnit};
