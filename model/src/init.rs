//! Parameter initialisation shared by every layer constructor.

use burn::module::{Initializer, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// How a freshly constructed model fills its weight matrices.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WeightInit {
    /// Draws `N(0, std²)` immediately, so a seeded backend RNG gives the same model every time
    /// (Burn's own initialisers are lazy and would draw in first-use order instead).
    Normal { std: f64 },
    /// Placeholders that are never materialised: the weights are about to be replaced by a
    /// checkpoint, and drawing billions of random numbers first would be wasted work.
    Lazy,
}

impl WeightInit {
    /// A float parameter of the given shape.
    pub(crate) fn param<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        device: &B::Device,
    ) -> Param<Tensor<B, D>> {
        match self {
            Self::Normal { std } => Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, *std), device)),
            Self::Lazy => Initializer::Zeros.init(shape, device),
        }
    }

    /// A bias-free linear layer in Burn's `[d_input, d_output]` weight layout.
    pub(crate) fn linear<B: Backend>(&self, d_input: usize, d_output: usize, device: &B::Device) -> Linear<B> {
        Linear {
            weight: self.param([d_input, d_output], device),
            bias: None,
        }
    }
}
