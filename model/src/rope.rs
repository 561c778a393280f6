//! Rotary position embeddings in Meta's interleaved-pair layout.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Precomputed RoPE rotation tables.
///
/// Plain tensor fields are Burn constants (never visited as parameters, so never optimised);
/// [`crate::Llama`] additionally marks its instance `#[module(skip)]` so the tables are not
/// saved either, being a pure function of the config.
///
/// Meta's `llama_v1` rotates adjacent pairs `(0,1), (2,3), …` of each head; Hugging Face instead
/// rotates `(i, i + head_dim/2)`. The two agree once q/k projection rows are permuted, which
/// `hf.rs` does on export/import.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    /// `cos(pos · θ^(-2i/head_dim))`, shape `[max_seq_len, head_dim / 2]`.
    pub cos: Tensor<B, 2>,
    /// `sin(pos · θ^(-2i/head_dim))`, shape `[max_seq_len, head_dim / 2]`.
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Builds the tables for positions `0..max_seq_len`.
    pub fn new(head_dim: usize, max_seq_len: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_seq_len * half);
        let mut sin = Vec::with_capacity(max_seq_len * half);
        for pos in 0..max_seq_len {
            for i in 0..half {
                // f64 keeps large positions accurate; the result is rounded once to f32.
                let freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_seq_len, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_seq_len, half]), device),
        }
    }

    /// Longest sequence the tables cover.
    pub fn max_seq_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]`, positions starting at 0.
    ///
    /// # Panics
    /// If `seq` exceeds [`Self::max_seq_len`].
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, heads, seq, head_dim] = x.dims();
        assert!(
            seq <= self.max_seq_len(),
            "sequence length {seq} exceeds the RoPE table length {}",
            self.max_seq_len()
        );
        let half = head_dim / 2;
        let cos = self.cos.clone().narrow(0, 0, seq).reshape([1, 1, seq, half, 1]);
        let sin = self.sin.clone().narrow(0, 0, seq).reshape([1, 1, seq, half, 1]);
        let pairs = x.reshape([batch, heads, seq, half, 2]);
        let even = pairs.clone().narrow(4, 0, 1);
        let odd = pairs.narrow(4, 1, 1);
        // Complex multiplication (even + i·odd) · (cos + i·sin), as Meta's `torch.view_as_complex`.
        let rotated_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
        let rotated_odd = even * sin + odd * cos;
        Tensor::cat(vec![rotated_even, rotated_odd], 4).reshape([batch, heads, seq, head_dim])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn rotates_adjacent_pairs_by_position_angle() {
        let device = Default::default();
        let rope = RotaryEmbedding::<NdArray>::new(4, 8, 10000.0, &device);
        // One head, positions 0 and 3, vector (1, 0, 1, 0).
        let x = Tensor::<NdArray, 4>::from_floats([[[[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]]]], &device);
        let x = Tensor::cat(vec![x.clone().narrow(2, 0, 1), x.clone(), x.narrow(2, 0, 1)], 2);
        let y = rope.apply(x).into_data().to_vec::<f32>().unwrap();
        // Position 0 is the identity.
        assert_eq!(&y[0..4], &[1.0, 0.0, 1.0, 0.0]);
        // Position 3: pair 0 turns by 3 rad, pair 1 by 3·10000^(-1/2) rad.
        let a0 = 3.0f64;
        let a1 = 3.0 * 10000f64.powf(-0.5);
        let expected = [a0.cos(), a0.sin(), a1.cos(), a1.sin()];
        for (got, want) in y[12..16].iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
