//! Training: LLaMA's optimiser recipe over token batches, with checkpoints that resume exactly.
//! The `train` stage (in `stages/`) feeds it from the mixture reader.

mod batch;
mod grad_norm;
mod schedule;
mod trainer;

pub use batch::TokenBatch;
pub use grad_norm::{clip_grad_norm, global_grad_norm};
pub use schedule::LrSchedule;
pub use trainer::{OptimizerSettings, StepReport, Trainer, cross_entropy};

/// The CPU backend (what the training backend runs on, and validation without autodiff).
pub type CpuBackend = burn::backend::NdArray;

/// The CPU training backend: NdArray under autodiff that recomputes cheap element-wise ops in the
/// backward pass instead of keeping their outputs (Burn's `BalancedCheckpointing`; matmuls and
/// other compute-bound ops keep their activations).
pub type CpuTrainBackend =
    burn::backend::Autodiff<CpuBackend, burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing>;

/// The CUDA training backend: f32 weights and activations (Burn 0.21 keeps no f32 master copy
/// under bf16, so bf16 training is left out until it does), the same checkpointing.
#[cfg(feature = "cuda")]
pub type CudaTrainBackend = burn::backend::Autodiff<
    burn::backend::Cuda<f32, i32>,
    burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing,
>;
