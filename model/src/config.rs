//! Model hyper-parameters: the LLaMA-1 paper presets and small CPU-sized variants.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Hyper-parameters of a LLaMA-1 model, serialisable so checkpoints carry their own shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Model (residual stream) width.
    pub dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of attention heads; LLaMA-1 uses full multi-head attention (no grouped KV).
    pub n_heads: usize,
    /// Vocabulary size of the tokenizer (32000 for the LLaMA SentencePiece model).
    pub vocab_size: usize,
    /// SwiGLU hidden sizes are rounded up to a multiple of this for hardware-friendly matmuls.
    pub multiple_of: usize,
    /// SwiGLU hidden size; stored rather than derived so imported checkpoints may deviate.
    pub ffn_hidden_dim: usize,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Rotary embedding base.
    pub rope_theta: f64,
    /// Context length; RoPE tables are precomputed up to this many positions.
    pub max_seq_len: usize,
    /// Peak learning rate (LLaMA paper, Table 2, for the paper presets).
    pub learning_rate: f64,
}

/// SwiGLU hidden size exactly as Meta's `llama_v1` model.py computes it.
///
/// The 2/3 factor keeps the parameter count of the three-matrix SwiGLU equal to a
/// two-matrix 4·dim MLP; Meta truncates `2·4·dim/3` to an integer before rounding up.
pub fn llama_ffn_hidden_dim(dim: usize, multiple_of: usize) -> usize {
    let hidden = 2 * (4 * dim) / 3;
    multiple_of * hidden.div_ceil(multiple_of)
}

impl LlamaConfig {
    /// Every name [`LlamaConfig::preset`] accepts.
    pub const PRESET_NAMES: [&'static str; 6] = ["tiny", "small", "7B", "13B", "33B", "65B"];

    /// A LLaMA-1 shaped config with the paper's defaults for everything but the three sizes.
    pub fn new(dim: usize, n_layers: usize, n_heads: usize) -> Self {
        let multiple_of = 256;
        Self {
            dim,
            n_layers,
            n_heads,
            vocab_size: 32000,
            multiple_of,
            ffn_hidden_dim: llama_ffn_hidden_dim(dim, multiple_of),
            norm_eps: 1e-6,
            rope_theta: 10000.0,
            max_seq_len: 2048,
            learning_rate: 3e-4,
        }
    }

    /// Returns the config with a different peak learning rate.
    pub fn with_learning_rate(mut self, learning_rate: f64) -> Self {
        self.learning_rate = learning_rate;
        self
    }

    /// Looks up a named preset (case-insensitive): `tiny`, `small`, `7B`, `13B`, `33B`, `65B`.
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let config = match name.to_ascii_lowercase().as_str() {
            // Embedding-dominated (~4.2M params) so CPU tests and smoke runs stay fast.
            "tiny" => Self::new(64, 2, 4).with_learning_rate(1e-3),
            // GPT-3 Small-like shape (~134M params with the untied 32k vocabulary).
            "small" => Self::new(768, 12, 12).with_learning_rate(6e-4),
            "7b" => Self::new(4096, 32, 32).with_learning_rate(3e-4),
            "13b" => Self::new(5120, 40, 40).with_learning_rate(3e-4),
            "33b" => Self::new(6656, 60, 52).with_learning_rate(1.5e-4),
            "65b" => Self::new(8192, 80, 64).with_learning_rate(1.5e-4),
            _ => {
                return Err(ModelError::UnknownPreset {
                    name: name.to_string(),
                    valid: Self::PRESET_NAMES.join(", "),
                });
            }
        };
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Checks the invariants the model code relies on (divisible heads, even head width for RoPE pairs).
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.dim == 0 || self.n_layers == 0 || self.n_heads == 0 || self.vocab_size == 0 {
            return fail(format!(
                "dim, n_layers, n_heads and vocab_size must be non-zero: {self:?}"
            ));
        }
        if self.ffn_hidden_dim == 0 || self.max_seq_len == 0 {
            return fail(format!("ffn_hidden_dim and max_seq_len must be non-zero: {self:?}"));
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return fail(format!("dim {} is not divisible by n_heads {}", self.dim, self.n_heads));
        }
        if !self.head_dim().is_multiple_of(2) {
            return fail(format!(
                "head_dim {} must be even for rotary embedding pairs",
                self.head_dim()
            ));
        }
        if !(self.norm_eps > 0.0 && self.rope_theta > 0.0) {
            return fail(format!("norm_eps and rope_theta must be positive: {self:?}"));
        }
        Ok(())
    }

    /// Number of trainable parameters (embeddings and output head counted separately: they are untied).
    pub fn parameter_count(&self) -> u64 {
        let d = self.dim as u64;
        let v = self.vocab_size as u64;
        let h = self.ffn_hidden_dim as u64;
        let attention = 4 * d * d;
        let feed_forward = 3 * d * h;
        let norms = 2 * d;
        let per_layer = attention + feed_forward + norms;
        let embeddings = 2 * v * d;
        embeddings + self.n_layers as u64 * per_layer + d
    }

    /// Training FLOPs per token at context length `seq_len`.
    ///
    /// Uses the PaLM / Chinchilla convention `6·N + 12·n_layers·dim·seq_len`: `6·N` covers the
    /// forward and backward matmuls against every parameter, and the second term the attention
    /// score and value matmuls, which scale with context rather than with parameters.
    pub fn flops_per_token(&self, seq_len: usize) -> u64 {
        6 * self.parameter_count() + 12 * self.n_layers as u64 * self.dim as u64 * seq_len as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_b_has_paper_parameter_count() {
        let config = LlamaConfig::preset("7B").unwrap();
        assert_eq!(config.ffn_hidden_dim, 11008);
        assert_eq!(config.parameter_count(), 6_738_415_616);
    }

    #[test]
    fn paper_presets_have_paper_hidden_sizes() {
        let hidden: Vec<usize> = ["13B", "33B", "65B"]
            .iter()
            .map(|n| LlamaConfig::preset(n).unwrap().ffn_hidden_dim)
            .collect();
        assert_eq!(hidden, vec![13824, 17920, 22016]);
        assert_eq!(LlamaConfig::preset("33B").unwrap().learning_rate, 1.5e-4);
    }

    #[test]
    fn tiny_is_small_and_embedding_dominated() {
        let config = LlamaConfig::preset("tiny").unwrap();
        assert_eq!(config.ffn_hidden_dim, 256);
        // 2·32000·64 embeddings + 2·(4·64² + 3·64·256 + 2·64) + 64.
        assert_eq!(config.parameter_count(), 4_227_392);
        let small = LlamaConfig::preset("small").unwrap();
        assert_eq!(small.parameter_count(), 134_105_856);
    }

    #[test]
    fn presets_are_valid_and_case_insensitive() {
        for name in LlamaConfig::PRESET_NAMES {
            LlamaConfig::preset(name).unwrap().validate().unwrap();
        }
        assert_eq!(LlamaConfig::preset("7b").unwrap(), LlamaConfig::preset("7B").unwrap());
    }

    #[test]
    fn unknown_preset_lists_valid_names() {
        let err = LlamaConfig::preset("70B").unwrap_err().to_string();
        assert!(
            err.contains("70B") && err.contains("tiny, small, 7B, 13B, 33B, 65B"),
            "{err}"
        );
    }

    #[test]
    fn flops_follow_chinchilla_convention() {
        let config = LlamaConfig::preset("7B").unwrap();
        assert_eq!(config.flops_per_token(2048), 6 * 6_738_415_616 + 12 * 32 * 4096 * 2048);
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = LlamaConfig::preset("small").unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<LlamaConfig>(&json).unwrap(), config);
    }
}
