//! SwiGLU feed-forward network.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;

use crate::LlamaConfig;
use crate::init::WeightInit;

/// `w2(silu(w1 x) * w3 x)`: a gated MLP, which the LLaMA paper adopts from PaLM.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    /// Gate projection (`dim → hidden`), passed through SiLU.
    pub w1: Linear<B>,
    /// Down projection (`hidden → dim`).
    pub w2: Linear<B>,
    /// Up projection (`dim → hidden`), multiplied by the gate.
    pub w3: Linear<B>,
}

impl<B: Backend> FeedForward<B> {
    /// Builds the three projections with the config's SwiGLU hidden size.
    pub(crate) fn new(config: &LlamaConfig, init: WeightInit, device: &B::Device) -> Self {
        let (dim, hidden) = (config.dim, config.ffn_hidden_dim);
        Self {
            w1: init.linear(dim, hidden, device),
            w2: init.linear(hidden, dim, device),
            w3: init.linear(dim, hidden, device),
        }
    }

    /// Applies the gated MLP to `[batch, seq, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.w2.forward(silu(self.w1.forward(x.clone())) * self.w3.forward(x))
    }
}
