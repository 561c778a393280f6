//! The `train` stage: the LLaMA model of `llamaflow-model` trained on a `tokenize` stage's shards,
//! read through the mixture reader so every step sees the `[mixture]` proportions.
//!
//! Inputs: one `tokenize` stage (`inputs = ["tokenize"]`; its output root must be local, as the
//! shards are memory-mapped). One unit: the whole run.
//!
//! Outputs: the stage's table, one row per optimiser step (loss, learning rate, gradient norm,
//! tokens/s, MFU, validation loss where measured), also written as `metrics.csv` and plotted in
//! `loss.png`; and
//! `checkpoints/step-NNNNNNNN/` in the stage's folder, each written to a temporary folder and
//! renamed, holding the model (`model.mpk`, `llama_config.json`: what `llamaflow generate` and
//! `model export-hf` read), both optimisers' state, `state.json` (step, mixture position, the
//! run's fingerprint) and `metrics.csv` (the metrics so far).
//!
//! Resume: a rerun of an unfinished unit (after a kill) continues from the newest checkpoint
//! whose fingerprint (model and optimiser settings, mixture, seed, and a hash of the shard
//! manifest's entries, which stands for the corpus version) matches, and the losses it then computes equal
//! an uninterrupted run's bit for bit on CPU. Training has no randomness besides the seeded
//! initialisation and the mixture order (LLaMA uses no dropout), so the mixture position is the
//! whole RNG state.

mod loss_plot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Builder, RecordBatch, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use burn::tensor::backend::{AutodiffBackend, Backend};
use llamaflow_model::LlamaConfig;
use llamaflow_model::train::{CpuTrainBackend, LrSchedule, OptimizerSettings, StepReport, TokenBatch, Trainer};
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::unit::short_hash;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::tokenize::catalog::ShardCatalog;
use crate::tokenize::mixture::{MixturePlan, MixturePosition, MixtureReader};

/// `[stages.NAME]` parameters of a `train` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model preset (`tiny`, `small`, `7B`, `13B`, `33B`, `65B`).
    #[serde(default = "default_model")]
    pub model: String,
    /// Tokens per training sequence (at most the preset's context).
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Sequences per micro-batch (one forward and backward pass).
    #[serde(default = "default_micro_batch")]
    pub micro_batch: usize,
    /// Tokens per optimiser step, reached by gradient accumulation (a multiple of
    /// `micro_batch · seq_len`; LLaMA: 4M).
    pub batch_tokens: usize,
    /// Optimiser steps to run.
    pub steps: u64,
    /// Peak learning rate (default: the preset's, from the paper).
    pub lr: Option<f64>,
    /// Linear warmup steps (LLaMA: 2000).
    #[serde(default = "default_warmup")]
    pub warmup_steps: u64,
    /// The cosine's floor as a fraction of the peak.
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// AdamW weight decay on the matrices (the norm gains are not decayed).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// AdamW β1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Save a checkpoint every this many steps (and after the last).
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
    /// Measure validation loss every this many steps (and after the last); 0 turns it off.
    #[serde(default = "default_every")]
    pub eval_every: u64,
    /// Validation sequences per measurement (the same ones every time).
    #[serde(default = "default_eval_sequences")]
    pub eval_sequences: usize,
    /// Seed of the initial weights and of the mixture's reading order.
    #[serde(default)]
    pub seed: u64,
    /// No source is repeated more than this many times (the mixture's cap).
    pub max_epochs: Option<f64>,
    /// The device's peak FLOP/s in teraFLOPs, for MFU (none: MFU is not reported).
    pub peak_tflops: Option<f64>,
    /// Where to train: `cpu` (Burn's ndarray backend), or `cuda` in a build with `--features cuda`.
    #[serde(default)]
    pub device: TrainDevice,
}

/// The backend a `train` stage runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDevice {
    /// Burn's ndarray backend, f32.
    #[default]
    Cpu,
    /// Burn's CUDA backend, f32 (only in builds with the `cuda` feature).
    #[cfg(feature = "cuda")]
    Cuda,
}

fn default_model() -> String {
    "tiny".into()
}
fn default_seq_len() -> usize {
    2048
}
fn default_micro_batch() -> usize {
    1
}
fn default_warmup() -> u64 {
    2000
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_clip() -> f64 {
    1.0
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_every() -> u64 {
    1000
}
fn default_eval_sequences() -> usize {
    32
}

impl TrainConfig {
    fn model_config(&self) -> Result<LlamaConfig, String> {
        let config = LlamaConfig::preset(&self.model).map_err(|e| e.to_string())?;
        if self.seq_len == 0 || self.seq_len > config.max_seq_len {
            return Err(format!(
                "seq_len must be between 1 and the model's context {}, got {}",
                config.max_seq_len, self.seq_len
            ));
        }
        Ok(config)
    }

    /// Micro-batches per optimiser step.
    fn accumulation(&self) -> usize {
        self.batch_tokens / (self.micro_batch * self.seq_len)
    }

    fn optimizer(&self, config: &LlamaConfig) -> OptimizerSettings {
        OptimizerSettings {
            schedule: LrSchedule {
                peak: self.lr.unwrap_or(config.learning_rate),
                warmup_steps: self.warmup_steps,
                total_steps: self.steps,
                min_ratio: self.min_lr_ratio,
            },
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: 1e-8,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
        }
    }

    fn validate(&self) -> Result<(), ParamError> {
        let err = |key: &str, message: String| {
            Err(ParamError {
                key: Some(key.into()),
                message,
            })
        };
        if let Err(message) = self.model_config() {
            let key = if message.contains("seq_len") {
                "seq_len"
            } else {
                "model"
            };
            return err(key, message);
        }
        if self.micro_batch == 0 {
            return err("micro_batch", "must be at least 1".into());
        }
        let micro_tokens = self.micro_batch * self.seq_len;
        if self.batch_tokens == 0 || self.batch_tokens % micro_tokens != 0 {
            return err(
                "batch_tokens",
                format!("must be a positive multiple of micro_batch × seq_len = {micro_tokens}"),
            );
        }
        if self.steps == 0 {
            return err("steps", "must be at least 1".into());
        }
        if self.checkpoint_every == 0 {
            return err("checkpoint_every", "must be at least 1".into());
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return err("lr", format!("must be positive, got {lr}"));
        }
        for (key, v) in [
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("min_lr_ratio", self.min_lr_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(key, format!("must be between 0 and 1, got {v}"));
            }
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return err("max_grad_norm", "must be positive".into());
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return err("weight_decay", "must be zero or more".into());
        }
        Ok(())
    }
}

/// Builds `train` stages.
pub struct TrainFactory;

impl StageFactory for TrainFactory {
    fn type_name(&self) -> &'static str {
        "train"
    }

    fn summary(&self) -> &'static str {
        "train the LLaMA model on a tokenize stage's shards in the [mixture] proportions (AdamW + cosine, global-norm clipping, exact resume)"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: TrainConfig = parse_params(&decl.params)?;
        config.validate()?;
        Ok(Arc::new(TrainStage {
            config,
            mixture: decl.mixture.clone(),
        }))
    }
}

/// A configured `train` stage.
#[derive(Debug, Clone)]
pub struct TrainStage {
    config: TrainConfig,
    mixture: BTreeMap<String, f64>,
}

/// The stage's table: one row per optimiser step.
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("step", DataType::UInt64, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("lr", DataType::Float64, false),
        Field::new("grad_norm", DataType::Float64, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("tokens_per_second", DataType::Float64, false),
        Field::new("mfu", DataType::Float64, true),
        Field::new("validation_loss", DataType::Float64, true),
    ]))
}

/// One row of the metrics table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// What the optimiser step did.
    #[serde(flatten)]
    pub report: StepReport,
    /// Tokens per second of wall time over the step.
    pub tokens_per_second: f64,
    /// Model FLOPs utilisation against `peak_tflops`.
    pub mfu: Option<f64>,
    /// Mean validation loss after the step, where measured.
    pub validation_loss: Option<f64>,
}

/// `state.json` of a checkpoint: what the model crate's trainer files do not hold.
#[derive(Debug, Serialize, Deserialize)]
struct RunState {
    fingerprint: String,
    step: u64,
    position: MixturePosition,
}

const CHECKPOINTS: &str = "checkpoints";
const STATE_FILE: &str = "state.json";
/// The metrics so far, beside `state.json`: CSV because Rust prints an f64 as the shortest text that
/// parses back to the same bits (serde_json's default parser can be one ulp off), so a resumed
/// run's table equals an uninterrupted one's exactly.
const METRICS_FILE: &str = "metrics.csv";

fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The newest complete checkpoint under `dir` made by the run `fingerprint`, if any.
fn latest_checkpoint(dir: &Path, fingerprint: &str) -> Result<Option<(PathBuf, RunState)>, StageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StageError::Other(format!("cannot list {}: {e}", dir.display()))),
    };
    let mut steps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.sort();
    for path in steps.into_iter().rev() {
        let state_path = path.join(STATE_FILE);
        let Ok(text) = std::fs::read_to_string(&state_path) else {
            continue;
        };
        match serde_json::from_str::<RunState>(&text) {
            Ok(state) if state.fingerprint == fingerprint => return Ok(Some((path, state))),
            Ok(_) => info!(checkpoint = %path.display(), "checkpoint of a different run configuration: not resumed"),
            Err(e) => warn!(checkpoint = %state_path.display(), "unreadable checkpoint state: {e}"),
        }
    }
    Ok(None)
}

/// Where the run's shards are: the tokenize stage named by the inputs, under a local root.
fn shard_catalog(unit: &WorkUnit) -> Result<ShardCatalog, StageError> {
    let Some(file) = unit.files.first() else {
        return Err(StageError::Other(
            "the train stage has no input: use inputs = [\"tokenize\"]".into(),
        ));
    };
    let stage = file.relative.split('/').next().unwrap_or_default().to_string();
    let path = file.location.url.to_file_path().map_err(|()| {
        StageError::Other(format!(
            "{}: training reads memory-mapped shards, so the output root must be a local folder",
            file.location.url
        ))
    })?;
    // `<root>/datasets/<stage>/<file>`: three levels up is the output root.
    let root = path
        .ancestors()
        .nth(3)
        .ok_or_else(|| StageError::Other(format!("{}: not inside an output root", path.display())))?;
    let names: std::collections::BTreeSet<&str> =
        unit.files.iter().filter_map(|f| f.relative.split('/').next()).collect();
    if names.len() != 1 {
        return Err(StageError::Other(format!(
            "the train stage reads one tokenize stage, its inputs are {names:?}"
        )));
    }
    ShardCatalog::load(root, &stage).map_err(|e| StageError::Other(e.to_string()))
}

/// A training failure, with where the last good state is.
fn stopped(e: impl std::fmt::Display, last_saved: &Option<PathBuf>) -> StageError {
    match last_saved {
        Some(p) => other(format!("{e}; the last good checkpoint is {}", p.display())),
        None => other(format!("{e}; no checkpoint was written in this run")),
    }
}

/// An error and its sources, `: `-separated (the stage error holds one string).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn other(e: impl std::fmt::Display) -> StageError {
    StageError::Other(e.to_string())
}

impl TrainStage {
    /// Everything a checkpoint must agree with to be resumed.
    fn fingerprint(&self, corpus: &str) -> String {
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        short_hash(&format!("{config}\0{:?}\0{corpus}", self.mixture))
    }

    /// The training loop on backend `B` (blocking; run off the async runtime).
    fn train<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        catalog: &ShardCatalog,
        checkpoints: &Path,
        progress: &Progress,
    ) -> Result<Vec<StepMetrics>, StageError> {
        let c = &self.config;
        let model_config = c.model_config().map_err(other)?;
        // The corpus version until corpus versions exist: every shard's name, source, split, sizes
        // and tokenizer (not the manifest file, whose commit time changes on a no-op rerun).
        let fingerprint = self.fingerprint(&short_hash(&format!("{:?}", catalog.entries)));

        let sequences_per_step = c.batch_tokens / c.seq_len;
        let budget = c.steps * c.batch_tokens as u64;
        let plan = MixturePlan::new(
            &self.mixture,
            &catalog.tokens_by_source("train"),
            Some(budget),
            c.max_epochs,
        )
        .map_err(|e| other(format!("cannot plan the training mixture: {e}")))?;
        for w in &plan.warnings {
            warn!("{w}");
        }
        let validation = self.validation_batches::<B::InnerBackend>(catalog, &model_config, device)?;

        let (mut trainer, position, mut metrics) = match latest_checkpoint(checkpoints, &fingerprint)? {
            Some((path, state)) => {
                info!(checkpoint = %path.display(), step = state.step, "resuming from the last checkpoint");
                let trainer = Trainer::<B>::load(&path, device).map_err(|e| other(with_causes(&e)))?;
                let metrics_path = path.join(METRICS_FILE);
                let metrics = std::fs::read_to_string(&metrics_path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| parse_metrics_csv(&text))
                    .map_err(|e| other(format!("{}: {e}", metrics_path.display())))?;
                (trainer, Some(state.position), metrics)
            }
            None => {
                let model = model_config.init_seeded::<B>(device, c.seed);
                (
                    Trainer::new(model, model_config.clone(), c.optimizer(&model_config)),
                    None,
                    Vec::new(),
                )
            }
        };
        let mut reader = MixtureReader::new(
            &plan,
            catalog.open("train").map_err(other)?,
            c.seq_len,
            c.seed,
            0,
            1,
            position,
        )
        .map_err(|e| other(format!("cannot read the training mixture: {e}")))?;
        let flops_per_token = model_config.flops_per_token(c.seq_len) as f64;
        let mut last_saved = None;
        while trainer.steps_done() < c.steps {
            let started = Instant::now();
            let mut micro_batches = Vec::with_capacity(c.accumulation());
            let mut sequences = Vec::with_capacity(c.micro_batch);
            for _ in 0..sequences_per_step {
                let sequence = reader
                    .next()
                    .ok_or_else(|| other("the training mixture ran out of sequences"))?;
                sequences.push(sequence.tokens);
                if sequences.len() == c.micro_batch {
                    micro_batches
                        .push(TokenBatch::from_sequences(&sequences, model_config.vocab_size, device).map_err(other)?);
                    sequences.clear();
                }
            }
            let report = trainer.step(&micro_batches).map_err(|e| stopped(e, &last_saved))?;
            let seconds = started.elapsed().as_secs_f64().max(1e-9);
            let tokens_per_second = report.tokens as f64 / seconds;
            let step = report.step;
            let validation_loss =
                (c.eval_every > 0 && (step % c.eval_every == 0 || step == c.steps) && !validation.is_empty())
                    .then(|| trainer.evaluate(&validation));
            metrics.push(StepMetrics {
                report,
                tokens_per_second,
                mfu: c
                    .peak_tflops
                    .map(|peak| tokens_per_second * flops_per_token / (peak * 1e12)),
                validation_loss,
            });
            progress.add_docs(1);
            info!(
                step,
                loss = report.loss,
                lr = report.lr,
                grad_norm = report.grad_norm,
                tokens_per_second = tokens_per_second.round(),
                validation_loss,
                "train step"
            );
            if step % c.checkpoint_every == 0 || step == c.steps {
                let state = RunState {
                    fingerprint: fingerprint.clone(),
                    step,
                    position: reader.saved_position(),
                };
                let saved = save_checkpoint(&trainer, &state, &metrics, checkpoints);
                last_saved = Some(saved.map_err(|e| stopped(e, &last_saved))?);
            }
        }
        Ok(metrics)
    }

    /// Runs [`Self::train`] on the configured device.
    fn train_on_device(
        &self,
        catalog: &ShardCatalog,
        checkpoints: &Path,
        progress: &Progress,
    ) -> Result<Vec<StepMetrics>, StageError> {
        match self.config.device {
            TrainDevice::Cpu => self.train::<CpuTrainBackend>(&Default::default(), catalog, checkpoints, progress),
            #[cfg(feature = "cuda")]
            TrainDevice::Cuda => self.train::<llamaflow_model::train::CudaTrainBackend>(
                &Default::default(),
                catalog,
                checkpoints,
                progress,
            ),
        }
    }

    /// The first `eval_sequences` of the validation split, drawn in the mixture's proportions
    /// among the sources that have a whole sequence of validation tokens.
    fn validation_batches<B: Backend>(
        &self,
        catalog: &ShardCatalog,
        config: &LlamaConfig,
        device: &B::Device,
    ) -> Result<Vec<TokenBatch<B>>, StageError> {
        let c = &self.config;
        if c.eval_every == 0 || c.eval_sequences == 0 {
            return Ok(Vec::new());
        }
        let tokens: BTreeMap<String, u64> = catalog
            .tokens_by_source("validation")
            .into_iter()
            .filter(|(_, t)| *t > c.seq_len as u64)
            .collect();
        let sources: Vec<_> = catalog
            .open("validation")
            .map_err(other)?
            .into_iter()
            .filter(|s| tokens.contains_key(&s.name))
            .collect();
        let mixture: BTreeMap<String, f64> = self
            .mixture
            .iter()
            .filter(|(s, _)| tokens.contains_key(*s))
            .map(|(s, w)| (s.clone(), *w))
            .collect();
        let Ok(plan) = MixturePlan::new(&mixture, &tokens, None, None) else {
            warn!("no source has a whole validation sequence: validation loss is not measured");
            return Ok(Vec::new());
        };
        let reader = MixtureReader::new(&plan, sources, c.seq_len, 0, 0, 1, None).map_err(other)?;
        let sequences: Vec<Vec<u32>> = reader.take(c.eval_sequences).map(|s| s.tokens).collect();
        sequences
            .chunks(c.micro_batch)
            .map(|chunk| TokenBatch::from_sequences(chunk, config.vocab_size, device).map_err(other))
            .collect()
    }
}

/// Writes `step-N` under `dir` through a temporary folder and a rename, so a kill never leaves a
/// half-written checkpoint that looks complete.
fn save_checkpoint<B: AutodiffBackend>(
    trainer: &Trainer<B>,
    state: &RunState,
    metrics: &[StepMetrics],
    dir: &Path,
) -> Result<PathBuf, StageError> {
    let name = checkpoint_name(state.step);
    let target = dir.join(&name);
    let staging = dir.join(format!(".{name}.tmp"));
    let io = |what: &str, path: &Path, e: std::io::Error| other(format!("cannot {what} {}: {e}", path.display()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io("remove", &staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io("create", &staging, e))?;
    trainer.save(&staging).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        other(with_causes(&e))
    })?;
    let state_path = staging.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state).map_err(other)?;
    std::fs::write(&state_path, text + "\n").map_err(|e| io("write", &state_path, e))?;
    let metrics_path = staging.join(METRICS_FILE);
    std::fs::write(&metrics_path, metrics_csv(metrics)).map_err(|e| io("write", &metrics_path, e))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| io("remove", &target, e))?;
    }
    std::fs::rename(&staging, &target).map_err(|e| io("rename into place", &target, e))?;
    Ok(target)
}

fn metrics_batch(metrics: &[StepMetrics]) -> Result<RecordBatch, StageError> {
    let mut step = UInt64Builder::new();
    let mut loss = Float64Builder::new();
    let mut lr = Float64Builder::new();
    let mut grad_norm = Float64Builder::new();
    let mut tokens = UInt64Builder::new();
    let mut tps = Float64Builder::new();
    let mut mfu = Float64Builder::new();
    let mut validation = Float64Builder::new();
    for m in metrics {
        step.append_value(m.report.step);
        loss.append_value(m.report.loss);
        lr.append_value(m.report.lr);
        grad_norm.append_value(m.report.grad_norm);
        tokens.append_value(m.report.tokens);
        tps.append_value(m.tokens_per_second);
        mfu.append_option(m.mfu);
        validation.append_option(m.validation_loss);
    }
    Ok(RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(step.finish()),
            Arc::new(loss.finish()),
            Arc::new(lr.finish()),
            Arc::new(grad_norm.finish()),
            Arc::new(tokens.finish()),
            Arc::new(tps.finish()),
            Arc::new(mfu.finish()),
            Arc::new(validation.finish()),
        ],
    )?)
}

const METRICS_HEADER: &str = "step,loss,lr,grad_norm,tokens,tokens_per_second,mfu,validation_loss";

fn metrics_csv(metrics: &[StepMetrics]) -> String {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = format!("{METRICS_HEADER}\n");
    for m in metrics {
        let r = &m.report;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.step,
            r.loss,
            r.lr,
            r.grad_norm,
            r.tokens,
            m.tokens_per_second,
            opt(m.mfu),
            opt(m.validation_loss)
        ));
    }
    out
}

/// Reads back [`metrics_csv`]'s text, bit for bit.
fn parse_metrics_csv(text: &str) -> Result<Vec<StepMetrics>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(METRICS_HEADER) {
        return Err("not a metrics file (unexpected header)".into());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = |what: &str| format!("line {}: bad {what}", i + 2);
            let cells: Vec<&str> = line.split(',').collect();
            let [step, loss, lr, grad_norm, tokens, tps, mfu, validation] = cells[..] else {
                return Err(bad("number of columns"));
            };
            let float = |cell: &str, what: &str| cell.parse::<f64>().map_err(|_| bad(what));
            let optional = |cell: &str, what: &str| {
                if cell.is_empty() {
                    Ok(None)
                } else {
                    float(cell, what).map(Some)
                }
            };
            Ok(StepMetrics {
                report: StepReport {
                    step: step.parse().map_err(|_| bad("step"))?,
                    loss: float(loss, "loss")?,
                    lr: float(lr, "lr")?,
                    grad_norm: float(grad_norm, "grad_norm")?,
                    tokens: tokens.parse().map_err(|_| bad("tokens"))?,
                },
                tokens_per_second: float(tps, "tokens_per_second")?,
                mfu: optional(mfu, "mfu")?,
                validation_loss: optional(validation, "validation_loss")?,
            })
        })
        .collect()
}

#[async_trait]
impl Stage for TrainStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        metrics_schema()
    }

    fn fingerprint_extra(&self) -> String {
        format!("{:?}", self.mixture)
    }

    fn units(&self, inputs: Vec<llamaflow_pipeline::inputs::InputFile>) -> Vec<WorkUnit> {
        WorkUnit::all_in_one("train", inputs)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let catalog = shard_catalog(unit)?;
        let checkpoints = ctx
            .main_dir()
            .url
            .to_file_path()
            .map_err(|()| other("checkpoints are written to a local output root"))?
            .join(CHECKPOINTS);
        let stage = self.clone();
        let progress = ctx.progress.clone();
        let metrics = tokio::task::spawn_blocking(move || stage.train_on_device(&catalog, &checkpoints, &progress))
            .await
            .map_err(|e| other(format!("the training task failed: {e}")))??;
        ctx.write(&metrics_batch(&metrics)?).await?;
        let csv = metrics_csv(&metrics);
        // Rows 0: the manifest's row count is the table's, and the CSV repeats it.
        ctx.put_file("metrics.csv", bytes::Bytes::from(csv), 0).await?;
        match loss_plot::loss_png(&metrics) {
            Ok(png) => ctx.put_file("loss.png", bytes::Bytes::from(png), 0).await?,
            Err(e) => warn!("no loss plot: {e}"),
        }
        let steps = metrics.len() as u64;
        Ok(UnitCounts {
            rows_in: steps,
            kept: steps,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<TrainConfig, ParamError> {
        let table: toml::Table =
            toml::from_str(&format!("batch_tokens = 256\nsteps = 10\nseq_len = 64\n{extra}")).unwrap();
        let config: TrainConfig = parse_params(&table)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_are_the_papers() {
        let c = config("").unwrap();
        let o = c.optimizer(&LlamaConfig::preset("tiny").unwrap());
        assert_eq!(
            (o.beta1, o.beta2, o.weight_decay, o.max_grad_norm),
            (0.9, 0.95, 0.1, 1.0)
        );
        assert_eq!((o.schedule.warmup_steps, o.schedule.min_ratio), (2000, 0.1));
        assert_eq!(c.accumulation(), 4);
    }

    #[test]
    fn bad_parameters_name_their_key() {
        for (extra, key) in [
            ("micro_batch = 3", "batch_tokens"),
            ("model = \"huge\"", "model"),
            ("lr = -1.0", "lr"),
            ("beta2 = 1.5", "beta2"),
            ("checkpoint_every = 0", "checkpoint_every"),
        ] {
            let e = config(extra).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {}", e.message);
        }
        let table: toml::Table = toml::from_str("batch_tokens = 4096\nsteps = 1\nseq_len = 4096").unwrap();
        let e = parse_params::<TrainConfig>(&table).unwrap().validate().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("seq_len"), "{}", e.message);
    }

    #[test]
    fn csv_has_a_row_per_step_and_empty_optional_cells() {
        let m = StepMetrics {
            report: StepReport {
                step: 1,
                loss: 10.5,
                lr: 1e-3,
                grad_norm: 2.0,
                tokens: 256,
            },
            tokens_per_second: 100.0,
            mfu: None,
            validation_loss: Some(9.0),
        };
        let csv = metrics_csv(&[m.clone(), m]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "1,10.5,0.001,2,256,100,,9");
        assert_eq!(metrics_batch(&[]).unwrap().num_rows(), 0);
    }

    #[test]
    fn metrics_read_back_bit_for_bit() {
        let m = StepMetrics {
            report: StepReport {
                step: 3,
                loss: 10.295463562011719,
                lr: 0.1 + 0.2,
                grad_norm: 1.4114281579577437,
                tokens: 256,
            },
            tokens_per_second: 1.0 / 3.0,
            mfu: Some(f64::MIN_POSITIVE),
            validation_loss: None,
        };
        let back = parse_metrics_csv(&metrics_csv(std::slice::from_ref(&m))).unwrap();
        assert_eq!(back.len(), 1);
        let bits = |m: &StepMetrics| {
            [
                m.report.loss,
                m.report.lr,
                m.report.grad_norm,
                m.tokens_per_second,
                m.mfu.unwrap(),
            ]
            .map(f64::to_bits)
        };
        assert_eq!(bits(&back[0]), bits(&m));
        assert_eq!(back[0], m);
        assert!(parse_metrics_csv("step,loss\n").is_err());
        let csv = metrics_csv(&[m]);
        let (truncated, _) = csv.trim_end().rsplit_once(',').unwrap();
        assert!(parse_metrics_csv(truncated).unwrap_err().contains("line 2"));
    }

    #[test]
    fn only_complete_checkpoints_of_this_run_are_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, fingerprint: &str, step: u64| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            let state = RunState {
                fingerprint: fingerprint.into(),
                step,
                position: MixturePosition {
                    seed: 0,
                    seq_len: 64,
                    step,
                    drawn: BTreeMap::new(),
                },
            };
            std::fs::write(p.join(STATE_FILE), serde_json::to_string(&state).unwrap()).unwrap();
        };
        assert!(latest_checkpoint(dir.path(), "a").unwrap().is_none());
        write("step-00000002", "a", 2);
        write("step-00000004", "a", 4);
        write("step-00000006", "b", 6);
        // A staging folder from a kill mid-save is never picked.
        std::fs::create_dir_all(dir.path().join(".step-00000008.tmp")).unwrap();
        let (path, state) = latest_checkpoint(dir.path(), "a").unwrap().unwrap();
        assert_eq!(state.step, 4);
        assert!(path.ends_with("step-00000004"));
        assert!(latest_checkpoint(&dir.path().join("missing"), "a").unwrap().is_none());
    }
}
