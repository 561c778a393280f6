//! The engine: builds every stage from the pipeline file, decides what is up to
//! date, and runs the rest, stages as their upstreams finish and units under
//! one `--jobs` budget, committing each unit atomically and recording it all
//! in the ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use crate::dag::Dag;
use crate::dataset::{
    DatasetError, DatasetManifest, ManifestFile, OutputRoot, PartWriter, UnitCommit, dataset_name, delete_unlisted,
    manifest_columns, read_commits, read_json, write_json,
};
use crate::inputs::{InputError, InputFile, resolve_location};
use crate::ledger::{Ledger, RunRecord, StageRecord, StageStatus, UnitRecord};
use crate::pipeline_file::{InputRef, PipelineFile, PipelineFileError, StageDecl};
use crate::progress::Progress;
use crate::registry::StageRegistry;
use crate::stage::{Stage, UnitCounts};
use crate::store::{Location, StoreError, StoreRegistry};
use crate::unit::{UnitContext, WorkUnit, short_hash};
use llamaflow_sql::SessionBuilder;

/// Errors that stop the engine before or outside a stage.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The pipeline file is wrong.
    #[error(transparent)]
    PipelineFile(#[from] PipelineFileError),
    /// The output root cannot be opened.
    #[error("output root: {0}")]
    Root(#[from] StoreError),
    /// Reading or writing the output root failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The stage selection is wrong.
    #[error("{0}")]
    Selection(String),
}

/// Runtime knobs of a run (flags, never TOML).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Units (and thus decoding threads) in flight at once.
    pub jobs: usize,
    /// Recompute even up-to-date stages and committed units.
    pub force: bool,
    /// The command line, for the ledger.
    pub command: String,
}

/// Where a stage stands against its current inputs and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageState {
    /// Its manifest matches its inputs and config.
    UpToDate,
    /// Never completed.
    NeverRun,
    /// Some units are committed, not all.
    Partial {
        /// Units committed and still valid.
        committed: usize,
        /// Units in all.
        total: usize,
    },
    /// Completed once, but its inputs or config changed since.
    Stale(String),
    /// An upstream stage has no complete output yet.
    Waiting(String),
}

impl std::fmt::Display for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageState::UpToDate => write!(f, "up to date"),
            StageState::NeverRun => write!(f, "never run"),
            StageState::Partial { committed, total } => write!(f, "partial ({committed}/{total} units committed)"),
            StageState::Stale(why) => write!(f, "stale ({why})"),
            StageState::Waiting(up) => write!(f, "waiting for `{up}`"),
        }
    }
}

/// A stage's units and state, as computed before running it.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// The stage.
    pub stage: String,
    /// Where it stands.
    pub state: StageState,
    /// Its units (empty while waiting for an upstream).
    pub units: Vec<WorkUnit>,
    /// Committed units still valid, by unit hash.
    pub reusable: BTreeMap<String, UnitCommit>,
    /// The config fingerprint.
    pub config_fingerprint: String,
    /// Fingerprint over the units' input fingerprints.
    pub inputs_fingerprint: String,
    /// The main dataset's current manifest, if any.
    pub manifest: Option<DatasetManifest>,
}

/// How a stage ended in a run.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    /// The ledger record (status, counts, units).
    pub record: StageRecord,
    /// Units that failed, with their errors.
    pub failed_units: Vec<(String, String)>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// Every selected stage's outcome, in DAG order.
    pub stages: Vec<StageOutcome>,
}

impl RunSummary {
    /// True when no stage failed or was skipped for an upstream failure.
    pub fn succeeded(&self) -> bool {
        self.stages.iter().all(|s| s.record.status.is_ok())
    }
}

struct BuiltStage {
    decl: StageDecl,
    stage: Arc<dyn Stage>,
}

/// A pipeline ready to plan and run (cheap to clone: stage tasks each hold one).
#[derive(Clone)]
pub struct Engine {
    file: Arc<PipelineFile>,
    dag: Arc<Dag>,
    stages: Arc<BTreeMap<String, BuiltStage>>,
    stores: StoreRegistry,
    root: OutputRoot,
    session: SessionBuilder,
}

impl Engine {
    /// Builds every stage of `file`; `output_override` replaces `[output] root`.
    pub fn new(
        file: PipelineFile,
        registry: &StageRegistry,
        output_override: Option<&str>,
        session: SessionBuilder,
    ) -> Result<Self, EngineError> {
        let dag = Dag::build(&file)?;
        let mut stages = BTreeMap::new();
        for decl in &file.stages {
            let Some(factory) = registry.get(&decl.type_name) else {
                return Err(file
                    .error_at(
                        &decl.name,
                        Some("type"),
                        format!(
                            "unknown stage type `{}` (known: {})",
                            decl.type_name,
                            registry.type_names().join(", ")
                        ),
                    )
                    .into());
            };
            let stage = factory
                .build(decl)
                .map_err(|e| file.error_at(&decl.name, e.key.as_deref(), e.message))?;
            stages.insert(
                decl.name.clone(),
                BuiltStage {
                    decl: decl.clone(),
                    stage,
                },
            );
        }
        // `"stage.output"` must name an output that stage declares (every stage has `quarantine`).
        for decl in &file.stages {
            for input in &decl.inputs {
                let InputRef::Stage {
                    stage: up,
                    output: Some(out),
                } = input
                else {
                    continue;
                };
                let declared = stages
                    .get(up)
                    .is_some_and(|b| out == "quarantine" || b.stage.named_outputs().iter().any(|(n, _)| n == out));
                if !declared {
                    let message = format!("stage `{up}` has no output named `{out}`");
                    return Err(file.error_at(&decl.name, Some("inputs"), message).into());
                }
            }
        }
        let stores = StoreRegistry::default();
        let root_text = output_override.unwrap_or(&file.output_root);
        let root = OutputRoot {
            root: stores.resolve(root_text, &file.base_dir)?,
        };
        Ok(Engine {
            file: Arc::new(file),
            dag: Arc::new(dag),
            stages: Arc::new(stages),
            stores,
            root,
            session,
        })
    }

    /// The pipeline file.
    pub fn file(&self) -> &PipelineFile {
        &self.file
    }

    /// The DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The output root.
    pub fn root(&self) -> &OutputRoot {
        &self.root
    }

    /// Each stage's type, by name.
    pub fn stage_types(&self) -> BTreeMap<String, String> {
        self.stages
            .iter()
            .map(|(k, b)| (k.clone(), b.decl.type_name.clone()))
            .collect()
    }

    fn built(&self, stage: &str) -> Result<&BuiltStage, EngineError> {
        self.stages
            .get(stage)
            .ok_or_else(|| EngineError::Selection(format!("no stage named `{stage}`")))
    }

    /// The config fingerprint: type, code version, parameters and inputs as written.
    fn config_fingerprint(&self, b: &BuiltStage) -> String {
        let params = serde_json::to_string(&b.decl.params).unwrap_or_default();
        let inputs: Vec<String> = b.decl.inputs.iter().map(ToString::to_string).collect();
        let text = format!(
            "{}\0{}\0{}\0{}{}",
            b.decl.type_name,
            b.stage.version(),
            params,
            inputs.join("\0"),
            b.stage.fingerprint_extra()
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..16])
    }

    /// Resolves a stage's inputs to files. `Ok(Err(name))` when upstream `name` has no complete output.
    async fn resolve_inputs(&self, b: &BuiltStage) -> Result<Result<Vec<InputFile>, String>, String> {
        let mut files = Vec::new();
        for input in &b.decl.inputs {
            match input {
                InputRef::Location(entry) => {
                    let resolved = resolve_location(entry, &self.file.base_dir, &self.stores)
                        .await
                        .map_err(|e: InputError| {
                            self.file
                                .error_at(&b.decl.name, Some("inputs"), e.to_string())
                                .to_string()
                        })?;
                    files.extend(resolved);
                }
                InputRef::Stage { stage, output } => {
                    let name = dataset_name(stage, output.as_deref());
                    let dir = self.root.dataset(&name);
                    let manifest = read_json::<DatasetManifest>(&dir.join("_manifest.json"))
                        .await
                        .map_err(|e| e.to_string())?;
                    let Some(manifest) = manifest else {
                        return Ok(Err(stage.clone()));
                    };
                    for f in manifest.files {
                        files.push(InputFile {
                            location: dir.join(&f.name),
                            relative: format!("{name}/{}", f.name),
                            display: format!("{name}/{}", f.name),
                            size: f.bytes,
                            version: f.fingerprint,
                        });
                    }
                }
            }
        }
        Ok(Ok(files))
    }

    /// Computes a stage's units and state without running anything.
    pub async fn plan(&self, stage: &str, force: bool) -> Result<StagePlan, String> {
        let b = self.built(stage).map_err(|e| e.to_string())?;
        let config_fingerprint = self.config_fingerprint(b);
        let manifest = read_json::<DatasetManifest>(&self.root.dataset(stage).join("_manifest.json"))
            .await
            .map_err(|e| e.to_string())?;
        let files = match self.resolve_inputs(b).await? {
            Ok(files) => files,
            Err(upstream) => {
                return Ok(StagePlan {
                    stage: stage.to_string(),
                    state: StageState::Waiting(upstream),
                    units: Vec::new(),
                    reusable: BTreeMap::new(),
                    config_fingerprint,
                    inputs_fingerprint: String::new(),
                    manifest,
                });
            }
        };
        let units = b.stage.units(files);
        let inputs_fingerprint = {
            let mut keys: Vec<String> = units.iter().map(|u| format!("{}\0{}", u.key, u.fingerprint)).collect();
            keys.sort();
            short_hash(&keys.join("\n"))
        };
        let up_to_date = manifest
            .as_ref()
            .is_some_and(|m| m.config_fingerprint == config_fingerprint && m.inputs_fingerprint == inputs_fingerprint);
        // Commit records matter only when there is work to do: an up-to-date
        // stage is decided by its manifest alone, without reading ~1 record per unit.
        let mut reusable = BTreeMap::new();
        if !force && !up_to_date {
            let current: BTreeMap<String, &WorkUnit> = units.iter().map(|u| (u.hash(), u)).collect();
            for commit in read_commits(&self.root, stage).await.map_err(|e| e.to_string())? {
                let valid = commit.config_fingerprint == config_fingerprint
                    && current
                        .get(&commit.unit_hash)
                        .is_some_and(|u| u.fingerprint == commit.unit_fingerprint);
                if valid {
                    reusable.insert(commit.unit_hash.clone(), commit);
                }
            }
        }
        let state = match &manifest {
            _ if up_to_date => StageState::UpToDate,
            Some(m) if m.config_fingerprint != config_fingerprint => {
                StageState::Stale("its configuration changed".into())
            }
            Some(_) => StageState::Stale("its inputs changed".into()),
            None if !reusable.is_empty() => StageState::Partial {
                committed: reusable.len(),
                total: units.len(),
            },
            None => StageState::NeverRun,
        };
        Ok(StagePlan {
            stage: stage.to_string(),
            state,
            units,
            reusable,
            config_fingerprint,
            inputs_fingerprint,
            manifest,
        })
    }

    /// Runs the selected stages (in DAG order; see [`Dag::select`]).
    pub async fn run(&self, selected: &[String], opts: &RunOptions) -> Result<RunSummary, EngineError> {
        let run_id = Ledger::new_run_id();
        let ledger = Ledger::new(self.root.ledger(), run_id.clone());
        let started_at = chrono::Utc::now().to_rfc3339();
        let mut run_record = RunRecord {
            run_id: run_id.clone(),
            started_at,
            finished_at: None,
            status: "running".into(),
            command: opts.command.clone(),
            pipeline: self.file.path.display().to_string(),
            stages: selected.to_vec(),
            failures: Vec::new(),
        };
        ledger.start(&run_record).await?;
        info!(run_id = %run_id, root = %self.root.root.url, "run started");

        let jobs = Arc::new(Semaphore::new(opts.jobs.max(1)));
        let selected_set: BTreeSet<&String> = selected.iter().collect();
        let mut outcomes: BTreeMap<String, StageOutcome> = BTreeMap::new();
        let mut pending: Vec<String> = selected.to_vec();
        let mut running: JoinSet<(String, StageOutcome)> = JoinSet::new();
        // Stages start as soon as their upstreams in this run have finished.
        loop {
            let mut still_pending = Vec::new();
            for stage in pending.drain(..) {
                let ups: Vec<&String> = self.dag.upstream(&stage).filter(|u| selected_set.contains(u)).collect();
                if ups.iter().any(|u| !outcomes.contains_key(*u)) {
                    still_pending.push(stage);
                    continue;
                }
                let failed_up = ups.iter().find(|u| !outcomes[**u].record.status.is_ok());
                let b = self.built(&stage)?;
                if let Some(up) = failed_up {
                    let record = StageRecord {
                        run_id: run_id.clone(),
                        stage: stage.clone(),
                        stage_type: b.decl.type_name.clone(),
                        status: StageStatus::Skipped,
                        finished_at: chrono::Utc::now().to_rfc3339(),
                        error: Some(format!("upstream stage `{up}` did not succeed")),
                        ..Default::default()
                    };
                    ledger.stage(&record).await?;
                    warn!(stage = %stage, "skipped: upstream `{up}` did not succeed");
                    outcomes.insert(
                        stage.clone(),
                        StageOutcome {
                            record,
                            failed_units: Vec::new(),
                        },
                    );
                    continue;
                }
                let engine = self.clone();
                let (force, jobs, ledger) = (opts.force, jobs.clone(), ledger.clone());
                running.spawn(async move { engine.run_stage(stage, force, jobs, ledger).await });
            }
            pending = still_pending;
            if running.is_empty() {
                if pending.is_empty() {
                    break;
                }
                // Nothing running yet stages pending cannot happen in an acyclic
                // graph (Dag::build refuses cycles); an error beats a hang.
                return Err(EngineError::Selection(format!(
                    "cannot schedule: {}",
                    pending.join(", ")
                )));
            }
            match running.join_next().await {
                Some(Ok((stage, outcome))) => {
                    outcomes.insert(stage, outcome);
                }
                Some(Err(e)) => {
                    return Err(EngineError::Selection(format!("a stage task failed: {e}")));
                }
                None => {}
            }
        }

        let stages: Vec<StageOutcome> = selected.iter().filter_map(|s| outcomes.remove(s)).collect();
        for s in &stages {
            if !s.record.status.is_ok() {
                run_record.failures.push(format!(
                    "stage `{}`: {}",
                    s.record.stage,
                    s.record.error.clone().unwrap_or_default()
                ));
            }
        }
        run_record.finished_at = Some(chrono::Utc::now().to_rfc3339());
        let summary = RunSummary { run_id, stages };
        run_record.status = if summary.succeeded() {
            "succeeded".into()
        } else {
            "failed".into()
        };
        ledger.finish(&run_record).await?;
        Ok(summary)
    }

    async fn run_stage(
        &self,
        stage: String,
        force: bool,
        jobs: Arc<Semaphore>,
        ledger: Ledger,
    ) -> (String, StageOutcome) {
        let started = Instant::now();
        let outcome = match self.try_run_stage(&stage, force, jobs, &ledger, started).await {
            Ok(outcome) => outcome,
            Err(error) => self.failed_outcome(&ledger, &stage, error, started).await,
        };
        (stage, outcome)
    }

    /// Runs one stage; an `Err` is a failure of the stage as a whole (units
    /// that fail are reported inside the outcome instead).
    async fn try_run_stage(
        &self,
        stage: &str,
        force: bool,
        jobs: Arc<Semaphore>,
        ledger: &Ledger,
        started: Instant,
    ) -> Result<StageOutcome, String> {
        let stage = stage.to_string();
        let b = self.built(&stage).map_err(|e| e.to_string())?;
        let type_name = b.decl.type_name.clone();
        let plan = self.plan(&stage, force).await?;
        if let StageState::Waiting(up) = &plan.state {
            return Err(format!(
                "upstream stage `{up}` has no committed output (run it first, or drop --no-deps)"
            ));
        }
        if plan.state == StageState::UpToDate && !force {
            info!(stage = %stage, "up to date, skipped");
            let record = StageRecord {
                run_id: ledger.run_id().to_string(),
                stage: stage.clone(),
                stage_type: type_name,
                status: StageStatus::UpToDate,
                units_total: plan.units.len() as u64,
                units_reused: plan.units.len() as u64,
                duration_s: started.elapsed().as_secs_f64(),
                finished_at: chrono::Utc::now().to_rfc3339(),
                ..Default::default()
            };
            let _ = ledger.stage(&record).await.map_err(|e| warn!("ledger: {e}"));
            return Ok(StageOutcome {
                record,
                failed_units: Vec::new(),
            });
        }

        let pending: Vec<WorkUnit> = plan
            .units
            .iter()
            .filter(|u| !plan.reusable.contains_key(&u.hash()))
            .cloned()
            .collect();
        let total_bytes: u64 = pending.iter().map(WorkUnit::bytes).sum();
        let progress = Progress::for_stage(&stage, total_bytes, pending.len());
        info!(stage = %stage, units = plan.units.len(), pending = pending.len(), reused = plan.reusable.len(), "running");

        let session = self.session.build().map_err(|e| e.to_string())?;
        // Parts left by interrupted attempts, found with one listing per folder
        // (not one per unit: a CommonCrawl stage has ~90k units).
        let mut leftovers: BTreeMap<String, Vec<Location>> = BTreeMap::new();
        for dir in self.output_dirs(b, &stage) {
            let names = crate::dataset::list_names(&dir).await.map_err(|e| e.to_string())?;
            for (name, path) in names {
                if let Some(hash) = name.strip_prefix("part-").and_then(|r| r.split('-').next()) {
                    leftovers.entry(hash.to_string()).or_default().push(dir.with_path(path));
                }
            }
        }
        let mut tasks: JoinSet<(WorkUnit, Result<UnitCommit, String>, f64)> = JoinSet::new();
        for unit in pending {
            let ctx = StageTaskContext {
                leftovers: leftovers.remove(&unit.hash()).unwrap_or_default(),
                stage: stage.clone(),
                stage_impl: b.stage.clone(),
                root: self.root.clone(),
                config_fingerprint: plan.config_fingerprint.clone(),
                run_id: ledger.run_id().to_string(),
                session: session.clone(),
                progress: progress.clone(),
            };
            let jobs = jobs.clone();
            let span = progress.span().clone();
            tasks.spawn(
                async move {
                    let Ok(_permit) = jobs.acquire_owned().await else {
                        return (unit, Err("the job pool closed".to_string()), 0.0);
                    };
                    let t = Instant::now();
                    // A panic in a stage is a bug, but it must fail one unit, not the run.
                    let inner = tokio::spawn({
                        let unit = unit.clone();
                        async move { ctx.run_unit(&unit).await }
                    });
                    let result = match inner.await {
                        Ok(r) => r,
                        Err(e) => Err(format!("the stage panicked: {e}")),
                    };
                    (unit, result, t.elapsed().as_secs_f64())
                }
                .instrument(span),
            );
        }

        let mut record = StageRecord {
            run_id: ledger.run_id().to_string(),
            stage: stage.clone(),
            stage_type: type_name.clone(),
            units_total: plan.units.len() as u64,
            units_reused: plan.reusable.len() as u64,
            ..Default::default()
        };
        let mut commits: BTreeMap<String, UnitCommit> = plan.reusable.clone();
        let mut failed_units = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((unit, result, secs)) = joined else { continue };
            let (status, counts, bytes_out, error) = match &result {
                Ok(commit) => {
                    let out: u64 = commit.outputs.values().flatten().map(|p| p.bytes).sum();
                    ("committed", commit.counts.clone(), out, None)
                }
                Err(e) => ("failed", UnitCounts::default(), 0, Some(e.clone())),
            };
            record.units_run += 1;
            record.counts.add(&counts);
            record.bytes_in += unit.bytes();
            let unit_record = UnitRecord {
                run_id: ledger.run_id().to_string(),
                stage: stage.clone(),
                unit: unit.key.clone(),
                status: status.into(),
                counts,
                bytes_in: unit.bytes(),
                bytes_out,
                duration_s: secs,
                finished_at: chrono::Utc::now().to_rfc3339(),
                error: error.clone(),
            };
            if let Err(e) = ledger.unit(&unit.hash(), &unit_record).await {
                warn!("ledger: {e}");
            }
            match result {
                Ok(commit) => {
                    commits.insert(commit.unit_hash.clone(), commit);
                }
                Err(e) => {
                    warn!(stage = %stage, unit = %unit.key, "unit failed: {e}");
                    record.units_failed += 1;
                    failed_units.push((unit.key.clone(), e));
                }
            }
        }

        if failed_units.is_empty() {
            if let Err(e) = self.write_manifests(b, &plan, &commits, ledger.run_id()).await {
                record.status = StageStatus::Failed;
                record.error = Some(format!("cannot write the manifest: {e}"));
            } else {
                record.status = StageStatus::Succeeded;
            }
        } else {
            record.status = StageStatus::Failed;
            record.error = Some(format!(
                "{} of {} units failed: {}",
                failed_units.len(),
                plan.units.len(),
                failed_units
                    .iter()
                    .map(|(u, e)| format!("{u}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        record.duration_s = started.elapsed().as_secs_f64();
        record.finished_at = chrono::Utc::now().to_rfc3339();
        if let Err(e) = ledger.stage(&record).await {
            warn!("ledger: {e}");
        }
        info!(stage = %stage, status = %record.status, kept = record.counts.kept, quarantined = record.counts.quarantined, "stage finished");
        Ok(StageOutcome { record, failed_units })
    }

    /// The dataset folders a stage writes: main, quarantine, named outputs.
    fn output_dirs(&self, b: &BuiltStage, stage: &str) -> Vec<Location> {
        let mut dirs = vec![
            self.root.dataset(stage),
            self.root.dataset(&dataset_name(stage, Some("quarantine"))),
        ];
        for (name, _) in b.stage.named_outputs() {
            dirs.push(self.root.dataset(&dataset_name(stage, Some(name))));
        }
        dirs
    }

    async fn failed_outcome(&self, ledger: &Ledger, stage: &str, error: String, started: Instant) -> StageOutcome {
        warn!(stage = %stage, "failed: {error}");
        let record = StageRecord {
            run_id: ledger.run_id().to_string(),
            stage: stage.to_string(),
            stage_type: self
                .stages
                .get(stage)
                .map(|b| b.decl.type_name.clone())
                .unwrap_or_default(),
            status: StageStatus::Failed,
            duration_s: started.elapsed().as_secs_f64(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            error: Some(error),
            ..Default::default()
        };
        let _ = ledger.stage(&record).await.map_err(|e| warn!("ledger: {e}"));
        StageOutcome {
            record,
            failed_units: Vec::new(),
        }
    }

    /// Once every unit is committed: drop what no current unit owns, then write
    /// each dataset folder's manifest (main last, since it marks the stage done).
    async fn write_manifests(
        &self,
        b: &BuiltStage,
        plan: &StagePlan,
        commits: &BTreeMap<String, UnitCommit>,
        run_id: &str,
    ) -> Result<(), DatasetError> {
        let stage = &plan.stage;
        let current: BTreeSet<String> = plan.units.iter().map(WorkUnit::hash).collect();
        // Commit records of units whose input disappeared.
        let commits_dir = self.root.commits(stage);
        for (name, path) in crate::dataset::list_names(&commits_dir).await? {
            let hash = name.trim_end_matches(".json");
            if !current.contains(hash) {
                let _ = commits_dir.store.delete(&path).await;
            }
        }
        let mut outputs: Vec<(String, arrow::datatypes::SchemaRef)> = vec![(
            dataset_name(stage, Some("quarantine")),
            crate::document::quarantine_schema(),
        )];
        for (name, schema) in b.stage.named_outputs() {
            outputs.push((dataset_name(stage, Some(name)), schema));
        }
        outputs.push((stage.clone(), b.stage.schema()));
        let committed_at = chrono::Utc::now().to_rfc3339();
        let mut total_counts = UnitCounts::default();
        let mut bytes_in = 0;
        for unit in &plan.units {
            if let Some(c) = commits.get(&unit.hash()) {
                total_counts.add(&c.counts);
                bytes_in += c.bytes_in;
            }
        }
        for (dataset, schema) in outputs {
            let mut files = Vec::new();
            for unit in &plan.units {
                let Some(c) = commits.get(&unit.hash()) else { continue };
                for part in c.outputs.get(&dataset).into_iter().flatten() {
                    files.push(ManifestFile {
                        name: part.name.clone(),
                        rows: part.rows,
                        bytes: part.bytes,
                        unit: unit.key.clone(),
                        fingerprint: short_hash(&format!(
                            "{}\0{}\0{}",
                            plan.config_fingerprint, c.unit_fingerprint, part.name
                        )),
                    });
                }
            }
            let dir = self.root.dataset(&dataset);
            let keep: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
            let removed = delete_unlisted(&dir, &keep).await?;
            if removed > 0 {
                info!(dataset = %dataset, removed, "removed files no committed unit owns");
            }
            let manifest = DatasetManifest {
                dataset: dataset.clone(),
                stage: stage.clone(),
                stage_type: b.decl.type_name.clone(),
                config_fingerprint: plan.config_fingerprint.clone(),
                inputs_fingerprint: plan.inputs_fingerprint.clone(),
                run_id: run_id.to_string(),
                committed_at: committed_at.clone(),
                schema: manifest_columns(&schema),
                rows: files.iter().map(|f| f.rows).sum(),
                files,
                counts: total_counts.clone(),
                bytes_in,
            };
            write_json(&dir.join("_manifest.json"), &manifest).await?;
        }
        Ok(())
    }
}

/// Everything one unit's task needs, owned so it can run on any worker thread.
struct StageTaskContext {
    stage: String,
    leftovers: Vec<Location>,
    stage_impl: Arc<dyn Stage>,
    root: OutputRoot,
    config_fingerprint: String,
    run_id: String,
    session: datafusion::prelude::SessionContext,
    progress: Progress,
}

impl StageTaskContext {
    async fn run_unit(self, unit: &WorkUnit) -> Result<UnitCommit, String> {
        let hash = unit.hash();
        let prefix = format!("part-{hash}");
        let main_dir = self.root.dataset(&self.stage);
        let q_name = dataset_name(&self.stage, Some("quarantine"));
        let q_dir = self.root.dataset(&q_name);
        let mut named = BTreeMap::new();
        for (name, schema) in self.stage_impl.named_outputs() {
            let ds = dataset_name(&self.stage, Some(name));
            named.insert(
                name.to_string(),
                PartWriter::new(self.root.dataset(&ds), ds, prefix.clone(), schema),
            );
        }
        // Leftovers of an interrupted attempt at this unit are removed first, so
        // a redo with fewer parts leaves nothing stale behind.
        for loc in &self.leftovers {
            match loc.store.delete(&loc.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(format!("cannot remove the leftover {}: {e}", loc.url)),
            }
        }
        let mut ctx = UnitContext::new(
            self.stage.clone(),
            self.session.clone(),
            self.progress.clone(),
            PartWriter::new(main_dir, self.stage.clone(), prefix.clone(), self.stage_impl.schema()),
            PartWriter::new(q_dir, q_name, prefix.clone(), crate::document::quarantine_schema()),
            named,
            prefix.clone(),
        );
        let counts = self
            .stage_impl
            .run_unit(unit, &mut ctx)
            .await
            .map_err(|e| e.to_string())?;
        if !counts.reconciles() {
            return Err(format!(
                "counts do not reconcile: {} in, {} kept + {} filtered + {} quarantined",
                counts.rows_in,
                counts.kept,
                counts.filtered_total(),
                counts.quarantined
            ));
        }
        let outputs = ctx.finish().await.map_err(|e| e.to_string())?;
        let commit = UnitCommit {
            unit: unit.key.clone(),
            unit_hash: hash.clone(),
            unit_fingerprint: unit.fingerprint.clone(),
            config_fingerprint: self.config_fingerprint.clone(),
            run_id: self.run_id.clone(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            outputs,
            counts,
            bytes_in: unit.bytes(),
        };
        write_json(&self.root.commits(&self.stage).join(&format!("{hash}.json")), &commit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{ParamError, StageError, StageFactory};
    use async_trait::async_trait;

    /// A stage that reads each input and reports counts `rows_in`/`kept` from its parameters.
    #[derive(Debug)]
    struct CountingStage {
        rows_in: u64,
        kept: u64,
    }

    #[async_trait]
    impl Stage for CountingStage {
        fn version(&self) -> u32 {
            1
        }
        fn schema(&self) -> arrow::datatypes::SchemaRef {
            crate::document::document_schema(Vec::new())
        }
        async fn run_unit(&self, _unit: &WorkUnit, _ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
            Ok(UnitCounts {
                rows_in: self.rows_in,
                kept: self.kept,
                ..Default::default()
            })
        }
    }

    struct CountingFactory;

    impl StageFactory for CountingFactory {
        fn type_name(&self) -> &'static str {
            "counting"
        }
        fn summary(&self) -> &'static str {
            "test stage"
        }
        fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
            let get = |k: &str| decl.params.get(k).and_then(|v| v.as_integer()).unwrap_or(0) as u64;
            Ok(Arc::new(CountingStage {
                rows_in: get("rows_in"),
                kept: get("kept"),
            }))
        }
    }

    async fn run_with(rows_in: u64, kept: u64) -> (RunSummary, std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        let text = format!(
            "[output]\nroot = \"out\"\n[stages.s]\ntype = \"counting\"\ninputs = [\"./a.txt\"]\nrows_in = {rows_in}\nkept = {kept}\n"
        );
        let file = PipelineFile::parse(&dir.path().join("p.toml"), &text).unwrap();
        let mut registry = StageRegistry::default();
        registry.register(Box::new(CountingFactory));
        let engine = Engine::new(file, &registry, None, SessionBuilder::default()).unwrap();
        let opts = RunOptions {
            jobs: 1,
            force: false,
            command: "test".into(),
        };
        let summary = engine.run(&["s".to_string()], &opts).await.unwrap();
        let root = dir.path().join("out");
        (summary, root, dir)
    }

    #[tokio::test]
    async fn a_unit_whose_counts_do_not_reconcile_is_not_committed() {
        let (summary, root, _dir) = run_with(3, 2).await;
        assert!(!summary.succeeded());
        let stage = &summary.stages[0];
        assert_eq!(stage.record.status, StageStatus::Failed);
        assert!(
            stage.failed_units[0]
                .1
                .contains("counts do not reconcile: 3 in, 2 kept + 0 filtered + 0 quarantined"),
            "{:?}",
            stage.failed_units
        );
        assert!(!root.join("datasets/s/_commits").exists(), "nothing was committed");
        assert!(!root.join("datasets/s/_manifest.json").exists());
    }

    #[tokio::test]
    async fn reconciled_counts_are_committed_with_a_manifest_and_a_ledger_record() {
        let (summary, root, _dir) = run_with(3, 3).await;
        assert!(summary.succeeded());
        assert_eq!(summary.stages[0].record.status, StageStatus::Succeeded);
        assert!(root.join("datasets/s/_manifest.json").exists());
        let runs = std::fs::read_dir(root.join("ledger/runs")).unwrap().count();
        assert_eq!(runs, 1);
    }
}
