//! RMSNorm, the pre-normalisation LLaMA uses instead of LayerNorm.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// Root-mean-square normalisation with a learned gain and no bias or mean-centring.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel gain, initialised to ones.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square so all-zero rows do not divide by zero.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Wraps an existing gain vector.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            eps,
        }
    }

    /// A unit-gain norm of width `dim`.
    pub fn ones(dim: usize, eps: f64, device: &B::Device) -> Self {
        Self::new(Tensor::ones([dim], device), eps)
    }

    /// Normalises over the last dimension of `[batch, seq, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // Meta computes the statistic in f32 even for half-precision activations: the mean of
        // squares overflows/underflows easily in f16/bf16. A no-op cast on f32 backends.
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let inv_rms = x.clone().powi_scalar(2).mean_dim(2).add_scalar(self.eps).sqrt().recip();
        let normed = (x * inv_rms).cast(dtype);
        normed * self.weight.val().unsqueeze::<3>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn unit_gain_rows_have_unit_rms() {
        let device = Default::default();
        let norm = RmsNorm::<NdArray>::ones(4, 1e-6, &device);
        let x = Tensor::<NdArray, 3>::from_floats([[[1.0, -2.0, 3.0, -4.0]]], &device);
        let y = norm.forward(x).into_data().to_vec::<f32>().unwrap();
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-5, "rms {rms}");
        // Sign and ratios are preserved: no mean-centring.
        assert!((y[1] / y[0] + 2.0).abs() < 1e-5);
    }
}
