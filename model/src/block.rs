//! One pre-normalised transformer block.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::LlamaConfig;
use crate::attention::Attention;
use crate::feed_forward::FeedForward;
use crate::init::WeightInit;
use crate::norm::RmsNorm;
use crate::rope::RotaryEmbedding;

/// `h = x + attn(norm(x)); out = h + ffn(norm(h))`: normalising sublayer inputs, not outputs,
/// is what keeps LLaMA training stable without warm-up tricks.
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    /// Self-attention sublayer.
    pub attention: Attention<B>,
    /// SwiGLU sublayer.
    pub feed_forward: FeedForward<B>,
    /// Norm before attention (HF: `input_layernorm`).
    pub attention_norm: RmsNorm<B>,
    /// Norm before the feed-forward (HF: `post_attention_layernorm`).
    pub ffn_norm: RmsNorm<B>,
}

impl<B: Backend> TransformerBlock<B> {
    /// Builds one block; norms start at unit gain.
    pub(crate) fn new(config: &LlamaConfig, init: WeightInit, device: &B::Device) -> Self {
        Self {
            attention: Attention::new(config, init, device),
            feed_forward: FeedForward::new(config, init, device),
            attention_norm: RmsNorm::ones(config.dim, config.norm_eps, device),
            ffn_norm: RmsNorm::ones(config.dim, config.norm_eps, device),
        }
    }

    /// Applies the block to `[batch, seq, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RotaryEmbedding<B>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let h = x.clone() + self.attention.forward(self.attention_norm.forward(x), rope, mask);
        h.clone() + self.feed_forward.forward(self.ffn_norm.forward(h))
    }
}
