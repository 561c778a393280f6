//! The LLaMA-1 architecture (Touvron et al., 2023) in Burn, following Meta's `llama_v1`
//! `model.py`, with Hugging Face safetensors interop and native checkpoints.

#![warn(missing_docs)]

mod attention;
mod block;
pub mod checkpoint;
mod config;
mod error;
mod feed_forward;
pub mod hf;
mod init;
mod llama;
mod norm;
mod rope;
pub mod train;

pub use attention::{Attention, causal_mask};
pub use block::TransformerBlock;
pub use config::{LlamaConfig, llama_ffn_hidden_dim};
pub use error::ModelError;
pub use feed_forward::FeedForward;
pub use hf::{export_hf, import_hf};
pub use llama::{INIT_STD, Llama};
pub use norm::RmsNorm;
pub use rope::RotaryEmbedding;

#[cfg(test)]
pub(crate) mod test_support {
    //! Shared test fixtures.
    use std::sync::{Mutex, MutexGuard};

    /// CPU backend for unit tests.
    pub type TestBackend = burn::backend::NdArray;

    static RNG: Mutex<()> = Mutex::new(());

    /// NdArray's RNG is process-global and tests run in parallel; hold this between seeding and
    /// drawing so another test cannot consume or reseed the stream in between.
    pub fn lock_rng() -> MutexGuard<'static, ()> {
        RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `tiny` config and a model drawn from it with `seed`, under the RNG lock.
    pub fn seeded_tiny(seed: u64) -> (crate::LlamaConfig, crate::Llama<TestBackend>) {
        let config = crate::LlamaConfig::preset("tiny").expect("tiny is a preset");
        let _rng = lock_rng();
        let model = config.init_seeded::<TestBackend>(&Default::default(), seed);
        (config, model)
    }
}
