//! One optimiser step of LLaMA's recipe: gradient accumulation over micro-batches, global-norm
//! clipping, AdamW (β 0.9/0.95, decoupled weight decay on the matrices only) at the schedule's
//! rate; plus validation loss and checkpoints that resume bit for bit.

use std::path::Path;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

use super::batch::TokenBatch;
use super::grad_norm::clip_grad_norm;
use super::schedule::LrSchedule;
use crate::checkpoint::{self, CheckpointRecorder};
use crate::{Llama, LlamaConfig, ModelError};

/// The optimiser settings; LLaMA's values are the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// Learning rate over steps.
    pub schedule: LrSchedule,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub epsilon: f64,
    /// Decoupled weight decay, applied to every matrix (embeddings, projections, output head) and
    /// not to the RMSNorm gains (the 1-D parameters), as in GPT-style recipes.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
}

impl OptimizerSettings {
    /// LLaMA's settings around a schedule: β 0.9/0.95, ε 1e-8, weight decay 0.1, clip at 1.0.
    pub fn llama(schedule: LrSchedule) -> Self {
        OptimizerSettings {
            schedule,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
            max_grad_norm: 1.0,
        }
    }

    fn adamw(&self, weight_decay: f64) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay(weight_decay as f32)
    }
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Optimiser steps completed, this one included.
    pub step: u64,
    /// Mean next-token cross-entropy over the step's tokens (nats).
    pub loss: f64,
    /// The learning rate the step used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens predicted in the step.
    pub tokens: u64,
}

type Adam<B> = OptimizerAdaptor<AdamW, Llama<B>, B>;

/// Files of a trainer checkpoint besides the model's own.
const DECAYED_STATE: &str = "optimizer_decayed.mpk";
const UNDECAYED_STATE: &str = "optimizer_undecayed.mpk";
const TRAINER_STATE: &str = "trainer.json";

#[derive(Debug, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    settings: OptimizerSettings,
}

/// A model and its optimiser state, stepping through LLaMA's training recipe.
pub struct Trainer<B: AutodiffBackend> {
    /// `None` only while a step has moved the model into the optimiser.
    model: Option<Llama<B>>,
    config: LlamaConfig,
    settings: OptimizerSettings,
    decayed: Adam<B>,
    undecayed: Adam<B>,
    undecayed_ids: Vec<ParamId>,
    step: u64,
}

impl<B: AutodiffBackend> std::fmt::Debug for Trainer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Collects the ids of the 1-D parameters (the RMSNorm gains), which are not weight-decayed.
#[derive(Default)]
struct VectorParams(Vec<ParamId>);

impl<B: Backend> ModuleVisitor<B> for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if D == 1 {
            self.0.push(param.id);
        }
    }
}

/// Sums every parameter's squares on the inner backend: finite exactly when every weight is
/// finite and none is so large that its square overflows.
struct WeightSquares<B: AutodiffBackend> {
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for WeightSquares<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let squares = param.val().inner().square().sum();
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + squares,
            None => squares,
        });
    }
}

/// Mean next-token cross-entropy of `model` on `batch`, computed from f32-stable log-softmax.
pub fn cross_entropy<B: Backend>(model: &Llama<B>, batch: &TokenBatch<B>) -> Tensor<B, 1> {
    let logits = model.forward(batch.inputs.clone());
    let [b, s, v] = logits.dims();
    let log_probs = log_softmax(logits.reshape([b * s, v]), 1);
    let picked = log_probs.gather(1, batch.targets.clone().reshape([b * s, 1]));
    picked.mean().neg()
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A trainer at step 0 with fresh optimiser state.
    pub fn new(model: Llama<B>, config: LlamaConfig, settings: OptimizerSettings) -> Self {
        let mut vectors = VectorParams::default();
        model.visit(&mut vectors);
        Trainer {
            model: Some(model),
            config,
            decayed: settings.adamw(settings.weight_decay).init(),
            undecayed: settings.adamw(0.0).init(),
            settings,
            undecayed_ids: vectors.0,
            step: 0,
        }
    }

    /// The model being trained.
    pub fn model(&self) -> &Llama<B> {
        // Invariant: `model` is only `None` inside `step`, which always puts it back.
        self.model.as_ref().expect("the model is present between steps")
    }

    /// The model's architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Optimiser steps completed.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The optimiser settings.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// One optimiser step over `micro_batches` (the gradient is their mean).
    ///
    /// A non-finite loss or gradient norm leaves the model and optimiser untouched and is an error.
    pub fn step(&mut self, micro_batches: &[TokenBatch<B>]) -> Result<StepReport, ModelError> {
        if micro_batches.is_empty() {
            return Err(ModelError::InvalidBatch("a step needs at least one micro-batch".into()));
        }
        let n = micro_batches.len() as f64;
        let mut accumulator = GradientsAccumulator::<Llama<B>>::new();
        let mut loss_sum = 0.0;
        let mut tokens = 0u64;
        for batch in micro_batches {
            let model = self.model();
            // Scaling each micro-batch's mean by 1/n makes the summed gradients the mean's gradient.
            let loss = cross_entropy(model, batch).div_scalar(n);
            loss_sum += loss.clone().into_scalar().elem::<f64>();
            tokens += batch.tokens() as u64;
            let grads = GradientsParams::from_grads(loss.backward(), model);
            accumulator.accumulate(model, grads);
        }
        let step = self.step + 1;
        if !loss_sum.is_finite() {
            return Err(ModelError::NonFinite {
                step,
                what: "loss",
                value: loss_sum,
            });
        }
        let mut grads = accumulator.grads();
        let grad_norm = clip_grad_norm::<B, _>(self.model(), &mut grads, self.settings.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(ModelError::NonFinite {
                step,
                what: "gradient norm",
                value: grad_norm,
            });
        }
        let mut vector_grads = GradientsParams::new();
        for &id in &self.undecayed_ids {
            if let Some(grad) = grads.remove::<B::InnerBackend, 1>(id) {
                vector_grads.register(id, grad);
            }
        }
        let lr = self.settings.schedule.at(self.step);
        // Invariant: `model` is Some here (see `model()`); it is put back two lines below.
        let model = self.model.take().expect("the model is present between steps");
        let model = self.decayed.step(lr, model, grads);
        self.model = Some(self.undecayed.step(lr, model, vector_grads));
        self.step = step;
        Ok(StepReport {
            step,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens,
        })
    }

    /// Mean next-token loss over `batches`, weighted by tokens, without building a graph.
    pub fn evaluate(&self, batches: &[TokenBatch<B::InnerBackend>]) -> f64 {
        let model = self.model().valid();
        let mut total = 0.0;
        let mut tokens = 0.0;
        for batch in batches {
            let n = batch.tokens() as f64;
            total += cross_entropy(&model, batch).into_scalar().elem::<f64>() * n;
            tokens += n;
        }
        if tokens == 0.0 { f64::NAN } else { total / tokens }
    }

    /// Writes the model, both optimisers' state and the step into `dir`; refuses (with
    /// [`ModelError::NonFinite`]) when a weight is not finite, so every checkpoint is a good one.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let mut squares = WeightSquares::<B> { sum: None };
        self.model().visit(&mut squares);
        let total = squares.sum.map_or(0.0, |s| s.into_scalar().elem::<f64>());
        if !total.is_finite() {
            return Err(ModelError::NonFinite {
                step: self.step,
                what: "weights",
                value: total,
            });
        }
        checkpoint::save(self.model(), &self.config, dir)?;
        for (name, optimizer) in [(DECAYED_STATE, &self.decayed), (UNDECAYED_STATE, &self.undecayed)] {
            let path = dir.join(name);
            CheckpointRecorder::new()
                .record(optimizer.to_record(), path.clone())
                .map_err(|source| ModelError::Recorder { path, source })?;
        }
        let path = dir.join(TRAINER_STATE);
        let state = TrainerState {
            step: self.step,
            settings: self.settings.clone(),
        };
        let text = serde_json::to_string_pretty(&state).map_err(|e| ModelError::json(&path, e))?;
        std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))
    }

    /// Restores a trainer saved by [`Trainer::save`] onto `device`.
    ///
    /// The optimiser state is keyed by parameter id, which the model's record carries, so the
    /// model must come from the same checkpoint (a re-initialised model would not match it).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let config = checkpoint::load_config(dir)?;
        let model = checkpoint::load::<B>(&config, dir, device)?;
        let path = dir.join(TRAINER_STATE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| ModelError::json(&path, e))?;
        let mut trainer = Trainer::new(model, config, state.settings);
        trainer.step = state.step;
        let load = |name: &str| {
            let path = dir.join(name);
            CheckpointRecorder::new()
                .load(path.clone(), device)
                .map_err(|source| ModelError::Recorder { path, source })
        };
        trainer.decayed = trainer.decayed.load_record(load(DECAYED_STATE)?);
        trainer.undecayed = trainer.undecayed.load_record(load(UNDECAYED_STATE)?);
        Ok(trainer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::lock_rng;
    use crate::train::{CpuTrainBackend, LrSchedule, TokenBatch};
    use burn::module::Param;

    type B = CpuTrainBackend;

    fn settings(peak: f64) -> OptimizerSettings {
        OptimizerSettings::llama(LrSchedule {
            peak,
            warmup_steps: 2,
            total_steps: 8,
            min_ratio: 0.1,
        })
    }

    /// Fixed pseudo-random sequences of 17 tokens (16 predicted), different per step.
    fn batches(step: u64, micro: usize) -> Vec<TokenBatch<B>> {
        (0..micro)
            .map(|m| {
                let seqs: Vec<Vec<u32>> = (0..2u64)
                    .map(|row| {
                        (0..17u64)
                            .map(|t| {
                                ((step * 7919 + m as u64 * 104_729 + row * 1_299_709 + t * 15_485_863) % 500) as u32
                            })
                            .collect()
                    })
                    .collect();
                TokenBatch::from_sequences(&seqs, 32000, &Default::default()).unwrap()
            })
            .collect()
    }

    fn tiny_trainer(seed: u64, peak: f64) -> Trainer<B> {
        let config = LlamaConfig::preset("tiny").unwrap();
        let model = {
            let _rng = lock_rng();
            config.init_seeded::<B>(&Default::default(), seed)
        };
        Trainer::new(model, config, settings(peak))
    }

    #[test]
    fn loss_falls_on_a_repeated_batch() {
        let mut trainer = tiny_trainer(1, 3e-3);
        let first = trainer.step(&batches(0, 2)).unwrap();
        assert!(
            (first.loss - (32000f64).ln()).abs() < 0.5,
            "initial loss {}",
            first.loss
        );
        let mut last = first;
        for _ in 0..6 {
            last = trainer.step(&batches(0, 2)).unwrap();
        }
        assert_eq!(last.step, 7);
        assert_eq!(last.tokens, 2 * 2 * 16);
        assert!(last.loss < first.loss - 1.0, "{} -> {}", first.loss, last.loss);
        let eval = trainer.evaluate(&[TokenBatch::from_sequences(
            &[(0..17).map(|t| ((t * 15_485_863u64) % 500) as u32).collect::<Vec<_>>()],
            32000,
            &Default::default(),
        )
        .unwrap()]);
        assert!(eval.is_finite());
    }

    #[test]
    fn resumed_training_matches_an_uninterrupted_run_bit_for_bit() {
        let mut straight = tiny_trainer(2, 1e-3);
        let expected: Vec<u64> = (0..4)
            .map(|s| straight.step(&batches(s, 2)).unwrap().loss.to_bits())
            .collect();

        let mut first = tiny_trainer(2, 1e-3);
        let mut got: Vec<u64> = (0..2)
            .map(|s| first.step(&batches(s, 2)).unwrap().loss.to_bits())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        first.save(dir.path()).unwrap();
        drop(first);
        let mut resumed = Trainer::<B>::load(dir.path(), &Default::default()).unwrap();
        assert_eq!(resumed.steps_done(), 2);
        got.extend((2..4).map(|s| resumed.step(&batches(s, 2)).unwrap().loss.to_bits()));
        assert_eq!(got, expected);
    }

    #[test]
    fn a_non_finite_loss_is_an_error_and_changes_nothing() {
        let mut trainer = tiny_trainer(3, 1e-3);
        trainer.step(&batches(0, 1)).unwrap();
        let mut model = trainer.model.take().unwrap();
        let weight = model.tok_embeddings.weight.val();
        model.tok_embeddings.weight = Param::from_tensor(weight.detach().add_scalar(f32::NAN).detach());
        trainer.model = Some(model);
        match trainer.step(&batches(1, 1)) {
            Err(ModelError::NonFinite {
                step: 2, what: "loss", ..
            }) => {}
            other => panic!("expected a non-finite loss at step 2, got {other:?}"),
        }
        assert_eq!(trainer.steps_done(), 1);
        let dir = tempfile::tempdir().unwrap();
        match trainer.save(dir.path()) {
            Err(ModelError::NonFinite { what: "weights", .. }) => {}
            other => panic!("a model with NaN weights must not be saved, got {other:?}"),
        }
    }

    #[test]
    fn only_the_norm_gains_are_exempt_from_weight_decay() {
        let trainer = tiny_trainer(4, 1e-3);
        assert_eq!(
            trainer.undecayed_ids.len(),
            2 * 2 + 1,
            "two norms per layer plus the final one"
        );
    }
}
