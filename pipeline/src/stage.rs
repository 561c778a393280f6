//! The `Stage` trait every stage type implements, the factory that builds a
//! stage from its pipeline-file table, and what a stage reports per unit.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::inputs::InputFile;
use crate::pipeline_file::StageDecl;
use crate::unit::{UnitContext, WorkUnit};

/// A stage failed on a unit; the unit is recorded as failed and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The unit's input could not be read at all.
    #[error("cannot read {file}: {message}")]
    Unreadable {
        /// The input, as displayed.
        file: String,
        /// Why.
        message: String,
    },
    /// Writing the unit's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] crate::dataset::DatasetError),
    /// An Arrow kernel failed (a stage bug or a schema mismatch).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The DataFusion plan failed.
    #[error("query failed: {0}")]
    Query(datafusion::error::DataFusionError),
    /// Anything else the stage reports.
    #[error("{0}")]
    Other(String),
}

impl From<datafusion::error::DataFusionError> for StageError {
    /// A stage's own error raised inside a DataFusion plan comes back out as itself,
    /// so users read "cannot read FILE: ..." rather than DataFusion's wrapping.
    fn from(e: datafusion::error::DataFusionError) -> Self {
        match e {
            datafusion::error::DataFusionError::External(inner) => match inner.downcast::<StageError>() {
                Ok(stage_error) => *stage_error,
                Err(other) => StageError::Query(datafusion::error::DataFusionError::External(other)),
            },
            other => StageError::Query(other),
        }
    }
}

/// Rows in, and where each went: kept, filtered (by rule) or quarantined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCounts {
    /// Records read.
    pub rows_in: u64,
    /// Records written to the main output.
    pub kept: u64,
    /// Records dropped, by the rule that dropped them.
    pub filtered: BTreeMap<String, u64>,
    /// Records sent to quarantine.
    pub quarantined: u64,
}

impl UnitCounts {
    /// Total filtered over all rules.
    pub fn filtered_total(&self) -> u64 {
        self.filtered.values().sum()
    }

    /// True when rows_in = kept + filtered + quarantined.
    pub fn reconciles(&self) -> bool {
        self.rows_in == self.kept + self.filtered_total() + self.quarantined
    }

    /// Adds another unit's counts into this one.
    pub fn add(&mut self, other: &UnitCounts) {
        self.rows_in += other.rows_in;
        self.kept += other.kept;
        self.quarantined += other.quarantined;
        for (rule, n) in &other.filtered {
            *self.filtered.entry(rule.clone()).or_default() += n;
        }
    }

    /// Counts one record dropped by `rule`.
    pub fn filter(&mut self, rule: &str) {
        *self.filtered.entry(rule.to_string()).or_default() += 1;
    }
}

/// A configured stage: it cuts its inputs into units and processes one unit at a time.
#[async_trait]
pub trait Stage: Send + Sync + Debug {
    /// Bump when a code change alters the stage's output, so datasets made by
    /// the old code become stale.
    fn version(&self) -> u32;

    /// The main output's schema.
    fn schema(&self) -> SchemaRef;

    /// What else its output depends on besides its parameters and inputs (the
    /// `[mixture]` for a stage that samples by it): part of the config fingerprint.
    fn fingerprint_extra(&self) -> String {
        String::new()
    }

    /// Named secondary outputs (`"refs"` is read as `"STAGE.refs"`) and their schemas.
    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        Vec::new()
    }

    /// Cuts the resolved input files into units; by default one unit per file.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        inputs.into_iter().map(WorkUnit::single).collect()
    }

    /// Processes one unit, writing through `ctx`, and returns its counts.
    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError>;
}

/// Builds stages of one type from their `[stages.NAME]` tables.
pub trait StageFactory: Send + Sync {
    /// The `type = "..."` this factory answers to.
    fn type_name(&self) -> &'static str;

    /// One line for `llamaflow graph` and the docs.
    fn summary(&self) -> &'static str;

    /// Builds the stage from its declaration (parameters in `decl.params`).
    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError>;
}

/// A stage's parameters are wrong: which key, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The offending key, when one is to blame.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Deserializes a stage's parameter table into its config struct (which should
/// `deny_unknown_fields`), naming the key that is unknown or wrong.
pub fn parse_params<T: DeserializeOwned>(params: &toml::Table) -> Result<T, ParamError> {
    toml::Value::Table(params.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            let message = e.message().trim().to_string();
            let key = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.find('`').map(|i| rest[..i].to_string()))
                .or_else(|| params.keys().find(|k| message.contains(&format!("`{k}`"))).cloned());
            ParamError { key, message }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        #[serde(default)]
        threshold: f64,
    }

    #[test]
    fn unknown_parameters_are_named() {
        let t: toml::Table = toml::from_str("threshhold = 0.5").unwrap();
        let e = parse_params::<Cfg>(&t).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("threshhold"));
        assert!(e.message.contains("unknown field"));
    }

    #[test]
    fn counts_reconcile() {
        let mut c = UnitCounts {
            rows_in: 5,
            kept: 2,
            quarantined: 1,
            ..Default::default()
        };
        c.filter("empty_text");
        assert!(!c.reconciles());
        c.filter("empty_text");
        assert!(c.reconciles());
        let mut total = UnitCounts::default();
        total.add(&c);
        total.add(&c);
        assert_eq!(total.filtered["empty_text"], 4);
        assert!(total.reconciles());
    }
}
