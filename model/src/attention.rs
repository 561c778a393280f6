//! Causal multi-head self-attention with rotary position embeddings.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Tensor};

use crate::LlamaConfig;
use crate::init::WeightInit;
use crate::rope::RotaryEmbedding;

/// Multi-head self-attention without biases, as in LLaMA-1 (no grouped-query attention).
///
/// Written with plain tensor ops so it runs and differentiates on every backend. Burn 0.21 also
/// offers a fused `burn::tensor::module::attention` (with `AttentionModuleOptions { is_causal,
/// .. }`) that backends may lower to flash attention; it is a drop-in for [`Self::forward`]'s
/// score/softmax/value steps once RoPE has been applied.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection.
    pub wq: Linear<B>,
    /// Key projection.
    pub wk: Linear<B>,
    /// Value projection.
    pub wv: Linear<B>,
    /// Output projection.
    pub wo: Linear<B>,
    /// Number of heads the model width is split into.
    pub n_heads: usize,
}

impl<B: Backend> Attention<B> {
    /// Builds the four `dim × dim` projections.
    pub(crate) fn new(config: &LlamaConfig, init: WeightInit, device: &B::Device) -> Self {
        let dim = config.dim;
        Self {
            wq: init.linear(dim, dim, device),
            wk: init.linear(dim, dim, device),
            wv: init.linear(dim, dim, device),
            wo: init.linear(dim, dim, device),
            n_heads: config.n_heads,
        }
    }

    /// Attends `x` of shape `[batch, seq, dim]`; `mask` is [`causal_mask`] for `seq`.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RotaryEmbedding<B>, mask: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq, dim] = x.dims();
        let head_dim = dim / self.n_heads;
        let split_heads = |t: Tensor<B, 3>| t.reshape([batch, seq, self.n_heads, head_dim]).swap_dims(1, 2);
        let q = rope.apply(split_heads(self.wq.forward(x.clone())));
        let k = rope.apply(split_heads(self.wk.forward(x.clone())));
        let v = split_heads(self.wv.forward(x));

        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt()) + mask;
        // Meta takes the softmax in f32 whatever the activation dtype (no-op on f32 backends).
        let dtype = scores.dtype();
        let probs = softmax(scores.cast(FloatDType::F32), 3).cast(dtype);
        let out = probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, dim]);
        self.wo.forward(out)
    }
}

/// Additive causal mask of shape `[1, 1, seq, seq]`: 0 on and below the diagonal, -inf above.
pub fn causal_mask<B: Backend>(seq: usize, device: &B::Device) -> Tensor<B, 4> {
    // `tril_mask` is true strictly above the diagonal, i.e. exactly the future positions.
    let future = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, device);
    Tensor::<B, 2>::zeros([seq, seq], device)
        .mask_fill(future, f32::NEG_INFINITY)
        .reshape([1, 1, seq, seq])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn causal_mask_blocks_only_the_future() {
        let mask = causal_mask::<NdArray>(3, &Default::default())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let blocked: Vec<bool> = mask.iter().map(|v| v.is_infinite()).collect();
        assert_eq!(
            blocked,
            vec![false, true, true, false, false, true, false, false, false]
        );
        assert!(mask.iter().all(|v| *v == 0.0 || *v == f32::NEG_INFINITY));
    }
}
