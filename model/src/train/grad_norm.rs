//! Gradient clipping by the GLOBAL L2 norm over every parameter, as in the paper and
//! `torch.nn.utils.clip_grad_norm_`. (Burn's built-in `GradientClipping::Norm` clips each tensor
//! by its own norm, which changes the update's direction; this scales all of them by one factor.)

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// Sums squared gradients on the device, so the norm costs one host read.
struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

/// Multiplies every gradient by one factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of `module`'s gradients in `grads`.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredSum::<B> { grads, sum: None };
    module.visit(&mut visitor);
    match visitor.sum {
        Some(sum) => sum.into_scalar().elem::<f64>().sqrt(),
        None => 0.0,
    }
}

/// Scales `grads` so their global norm is at most `max_norm`, returning the norm before clipping.
///
/// The factor is `max_norm / (norm + 1e-6)` when that is below 1, as PyTorch computes it. A
/// non-finite norm is returned unchanged and nothing is scaled: the caller stops on it.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_grad_norm::<B, M>(module, grads);
    let factor = max_norm / (norm + 1e-6);
    if norm.is_finite() && factor < 1.0 {
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    type B = Autodiff<NdArray>;

    /// A 2→1 linear layer with weight [3, 4] and bias 0 on input [1, 1]: the gradients of the
    /// output are the input (1, 1) for the weight and 1 for the bias; norm √3.
    fn grads_of_linear() -> (Linear<B>, GradientsParams) {
        let device = Default::default();
        // Init draws from NdArray's process-wide RNG: hold the lock other tests seed it under.
        let mut layer: Linear<B> = {
            let _rng = crate::test_support::lock_rng();
            LinearConfig::new(2, 1).init(&device)
        };
        layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(vec![3.0f32, 4.0], [2, 1]), &device));
        let x = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        let loss = layer.forward(x).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        (layer, grads)
    }

    #[test]
    fn norm_is_global_over_all_tensors() {
        let (layer, grads) = grads_of_linear();
        assert!((global_grad_norm::<B, _>(&layer, &grads) - 3f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_every_tensor_by_one_factor() {
        let (layer, mut grads) = grads_of_linear();
        let before = clip_grad_norm::<B, _>(&layer, &mut grads, 1.0);
        assert!((before - 3f64.sqrt()).abs() < 1e-6);
        assert!((global_grad_norm::<B, _>(&layer, &grads) - 1.0).abs() < 1e-5);
        let w = grads
            .get::<NdArray, 2>(layer.weight.id)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let expected = (1.0 / (3f64.sqrt() + 1e-6)) as f32;
        assert!(w.iter().all(|g| (g - expected).abs() < 1e-6), "{w:?}");
    }

    #[test]
    fn small_gradients_are_left_alone() {
        let (layer, mut grads) = grads_of_linear();
        clip_grad_norm::<B, _>(&layer, &mut grads, 10.0);
        assert!((global_grad_norm::<B, _>(&layer, &grads) - 3f64.sqrt()).abs() < 1e-6);
    }
}
