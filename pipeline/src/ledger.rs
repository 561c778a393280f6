//! The run ledger: every run, stage and unit, with counts, bytes, durations and
//! errors, kept as one-line JSON files in `<root>/ledger/`.
//!
//! Why files and not a database: the ledger must live in the output root so any
//! machine that can read the corpus can read its history, an `s3://` root
//! included. Each record is written once, with the object store's conditional
//! create (`PutMode::Create`), so concurrent writers can never clobber one
//! another and no lock service is needed; and a folder of NDJSON files is a
//! table DataFusion and DuckDB read as is (`ledger/units/*.json`). A Delta table
//! would give the same on S3 but costs a log commit per unit and a heavy
//! dependency for what append-only files already do.

use std::collections::BTreeMap;

use bytes::Bytes;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::dataset::{DatasetError, list_names, read_json};
use crate::stage::UnitCounts;
use crate::store::Location;

/// One run of `llamaflow run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sortable id: start time and a random suffix.
    pub run_id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended, absent in the start record.
    pub finished_at: Option<String>,
    /// `running` (start record), `succeeded` or `failed`.
    pub status: String,
    /// The command line.
    pub command: String,
    /// The pipeline file.
    pub pipeline: String,
    /// The stages it selected.
    pub stages: Vec<String>,
    /// What failed, one line each.
    pub failures: Vec<String>,
}

/// How a stage ended in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Its manifest matched its inputs and config: nothing to do.
    UpToDate,
    /// Every unit is committed and the manifest written.
    Succeeded,
    /// A unit failed, or the stage could not be planned or committed.
    #[default]
    Failed,
    /// Not run because an upstream stage did not succeed.
    Skipped,
}

impl StageStatus {
    /// True when downstream stages may run on this one's output.
    pub fn is_ok(self) -> bool {
        matches!(self, StageStatus::UpToDate | StageStatus::Succeeded)
    }
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StageStatus::UpToDate => "up_to_date",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
        };
        f.pad(name)
    }
}

/// One stage within a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageRecord {
    /// The run.
    pub run_id: String,
    /// The stage.
    pub stage: String,
    /// Its type.
    pub stage_type: String,
    /// How it ended.
    pub status: StageStatus,
    /// Units the stage has.
    pub units_total: u64,
    /// Units processed in this run.
    pub units_run: u64,
    /// Units already committed by an earlier run and reused.
    pub units_reused: u64,
    /// Units that failed in this run.
    pub units_failed: u64,
    /// Counts of the units processed in this run.
    pub counts: UnitCounts,
    /// Input bytes read in this run.
    pub bytes_in: u64,
    /// Wall time.
    pub duration_s: f64,
    /// When it ended.
    pub finished_at: String,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

/// One unit attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitRecord {
    /// The run.
    pub run_id: String,
    /// The stage.
    pub stage: String,
    /// The unit's key.
    pub unit: String,
    /// `committed` or `failed`.
    pub status: String,
    /// Its counts (zero when failed).
    pub counts: UnitCounts,
    /// Input bytes.
    pub bytes_in: u64,
    /// Output bytes over all its datasets.
    pub bytes_out: u64,
    /// Wall time.
    pub duration_s: f64,
    /// When it ended.
    pub finished_at: String,
    /// The error, when failed.
    pub error: Option<String>,
}

/// Writes the records of one run.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: Location,
    run_id: String,
}

impl Ledger {
    /// A ledger in `dir` for a new run.
    pub fn new(dir: Location, run_id: String) -> Self {
        Ledger { dir, run_id }
    }

    /// A fresh, time-sortable run id.
    pub fn new_run_id() -> String {
        let now = chrono::Utc::now();
        let random = uuid::Uuid::now_v7().simple().to_string();
        format!("{}-{}", now.format("%Y%m%dT%H%M%S%.3fZ"), &random[24..])
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Records the start of the run (`ledger/started/<run>.json`).
    pub async fn start(&self, record: &RunRecord) -> Result<(), DatasetError> {
        self.create(&format!("started/{}.json", self.run_id), record).await
    }

    /// Records the end of the run (`ledger/runs/<run>.json`).
    pub async fn finish(&self, record: &RunRecord) -> Result<(), DatasetError> {
        self.create(&format!("runs/{}.json", self.run_id), record).await
    }

    /// Records a stage outcome (`ledger/stages/<run>.<stage>.json`).
    pub async fn stage(&self, record: &StageRecord) -> Result<(), DatasetError> {
        self.create(&format!("stages/{}.{}.json", self.run_id, record.stage), record)
            .await
    }

    /// Records a unit attempt (`ledger/units/<run>.<stage>.<unit hash>.json`).
    pub async fn unit(&self, unit_hash: &str, record: &UnitRecord) -> Result<(), DatasetError> {
        self.create(
            &format!("units/{}.{}.{}.json", self.run_id, record.stage, unit_hash),
            record,
        )
        .await
    }

    async fn create<T: Serialize>(&self, name: &str, value: &T) -> Result<(), DatasetError> {
        let loc = self.dir.join(name);
        let mut bytes = serde_json::to_vec(value).map_err(|source| DatasetError::Json {
            path: loc.url.to_string(),
            source,
        })?;
        bytes.push(b'\n');
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        loc.store
            .put_opts(&loc.path, PutPayload::from(Bytes::from(bytes)), opts)
            .await?;
        Ok(())
    }
}

/// What the ledger says about past runs, for `status`.
#[derive(Debug, Clone, Default)]
pub struct LedgerHistory {
    /// Finished runs, oldest first.
    pub runs: Vec<RunRecord>,
    /// Runs that started but never finished (killed), oldest first.
    pub unfinished: Vec<RunRecord>,
    /// The latest record per stage.
    pub last_stage: BTreeMap<String, StageRecord>,
}

/// Reads the ledger in `dir`.
pub async fn read_history(dir: &Location) -> Result<LedgerHistory, DatasetError> {
    let mut history = LedgerHistory::default();
    let mut finished = std::collections::BTreeSet::new();
    let mut runs = list_names(&dir.join("runs")).await?;
    runs.sort();
    for (_, path) in runs {
        if let Some(r) = read_json::<RunRecord>(&dir.with_path(path)).await? {
            finished.insert(r.run_id.clone());
            history.runs.push(r);
        }
    }
    let mut started = list_names(&dir.join("started")).await?;
    started.sort();
    for (_, path) in started {
        if let Some(r) = read_json::<RunRecord>(&dir.with_path(path)).await?
            && !finished.contains(&r.run_id)
        {
            history.unfinished.push(r);
        }
    }
    let mut stages = list_names(&dir.join("stages")).await?;
    stages.sort();
    for (_, path) in stages {
        if let Some(s) = read_json::<StageRecord>(&dir.with_path(path)).await? {
            history.last_stage.insert(s.stage.clone(), s);
        }
    }
    Ok(history)
}
