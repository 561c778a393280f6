//! The full LLaMA-1 decoder: embeddings, transformer blocks, final norm and output head.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::attention::causal_mask;
use crate::block::TransformerBlock;
use crate::init::WeightInit;
use crate::norm::RmsNorm;
use crate::rope::RotaryEmbedding;
use crate::{LlamaConfig, ModelError};

/// Standard deviation of the random initialisation (the Hugging Face `initializer_range` default).
pub const INIT_STD: f64 = 0.02;

/// A LLaMA-1 causal language model.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding table `[vocab, dim]`.
    pub tok_embeddings: Embedding<B>,
    /// The transformer blocks, input to output.
    pub layers: Vec<TransformerBlock<B>>,
    /// Final RMSNorm before the output head.
    pub norm: RmsNorm<B>,
    /// Output head `dim → vocab`, untied from the embeddings as in LLaMA-1.
    pub output: Linear<B>,
    /// RoPE tables: derived from the config, so skipped by the recorder and the optimiser.
    #[module(skip)]
    pub rope: RotaryEmbedding<B>,
}

impl LlamaConfig {
    /// A randomly initialised model (`N(0, 0.02²)` matrices, unit norms).
    ///
    /// Draws eagerly from the backend RNG in a fixed order, so calling `B::seed(device, seed)`
    /// first (or using [`LlamaConfig::init_seeded`]) makes the weights reproducible.
    ///
    /// # Panics
    /// If [`LlamaConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        self.build(WeightInit::Normal { std: INIT_STD }, device)
    }

    /// Seeds the backend RNG, then calls [`LlamaConfig::init`].
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> Llama<B> {
        B::seed(device, seed);
        self.init(device)
    }

    /// A model whose matrices are unmaterialised placeholders, to be overwritten by a checkpoint.
    pub(crate) fn init_placeholder<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        self.build(WeightInit::Lazy, device)
    }

    fn build<B: Backend>(&self, init: WeightInit, device: &B::Device) -> Llama<B> {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        Llama {
            tok_embeddings: Embedding {
                weight: init.param([self.vocab_size, self.dim], device),
            },
            layers: (0..self.n_layers)
                .map(|_| TransformerBlock::new(self, init, device))
                .collect(),
            norm: RmsNorm::ones(self.dim, self.norm_eps, device),
            output: init.linear(self.dim, self.vocab_size, device),
            rope: RotaryEmbedding::new(self.head_dim(), self.max_seq_len, self.rope_theta, device),
        }
    }
}

impl<B: Backend> Llama<B> {
    /// Next-token logits `[batch, seq, vocab]` for `tokens` of shape `[batch, seq]`.
    ///
    /// # Panics
    /// If `seq` exceeds the config's `max_seq_len`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, seq] = tokens.dims();
        let mask = causal_mask::<B>(seq, &tokens.device());
        let mut h = self.tok_embeddings.forward(tokens);
        for layer in &self.layers {
            h = layer.forward(h, &self.rope, mask.clone());
        }
        self.output.forward(self.norm.forward(h))
    }

    /// Verifies every parameter has the shape `config` implies (Burn's `load_record` does not check).
    pub fn check_shapes(&self, config: &LlamaConfig) -> Result<(), ModelError> {
        let (d, v, h) = (config.dim, config.vocab_size, config.ffn_hidden_dim);
        if self.layers.len() != config.n_layers {
            return Err(ModelError::InvalidConfig(format!(
                "model has {} layers, config expects {}",
                self.layers.len(),
                config.n_layers
            )));
        }
        let mut checks: Vec<(String, Vec<usize>, Vec<usize>)> = vec![
            ("tok_embeddings".into(), dims(&self.tok_embeddings.weight), vec![v, d]),
            ("norm".into(), dims(&self.norm.weight), vec![d]),
            ("output".into(), dims(&self.output.weight), vec![d, v]),
        ];
        for (i, layer) in self.layers.iter().enumerate() {
            let a = &layer.attention;
            let f = &layer.feed_forward;
            for (name, param, expected) in [
                ("attention.wq", &a.wq.weight, [d, d]),
                ("attention.wk", &a.wk.weight, [d, d]),
                ("attention.wv", &a.wv.weight, [d, d]),
                ("attention.wo", &a.wo.weight, [d, d]),
                ("feed_forward.w1", &f.w1.weight, [d, h]),
                ("feed_forward.w2", &f.w2.weight, [h, d]),
                ("feed_forward.w3", &f.w3.weight, [d, h]),
            ] {
                checks.push((format!("layers.{i}.{name}"), dims(param), expected.to_vec()));
            }
            checks.push((
                format!("layers.{i}.attention_norm"),
                dims(&layer.attention_norm.weight),
                vec![d],
            ));
            checks.push((format!("layers.{i}.ffn_norm"), dims(&layer.ffn_norm.weight), vec![d]));
        }
        for (name, actual, expected) in checks {
            if actual != expected {
                return Err(ModelError::InvalidConfig(format!(
                    "parameter {name} has shape {actual:?}, config expects {expected:?}"
                )));
            }
        }
        Ok(())
    }
}

fn dims<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Vec<usize> {
    param.val().dims().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TestBackend, lock_rng, seeded_tiny};
    use burn::tensor::TensorData;

    fn tokens(ids: &[i64]) -> Tensor<TestBackend, 2, Int> {
        Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &Default::default())
    }

    #[test]
    fn forward_shape_and_param_count_match_config() {
        let (config, model) = seeded_tiny(1);
        assert_eq!(model.num_params() as u64, config.parameter_count());
        model.check_shapes(&config).unwrap();
        assert_eq!(model.forward(tokens(&[1, 2, 3])).dims(), [1, 3, config.vocab_size]);
    }

    #[test]
    fn seeded_init_is_reproducible() {
        let config = LlamaConfig::preset("tiny").unwrap();
        let device = Default::default();
        let (a, b) = {
            let _rng = lock_rng();
            (
                config.init_seeded::<TestBackend>(&device, 7),
                config.init_seeded::<TestBackend>(&device, 7),
            )
        };
        let ids = [5, 9, 31999, 0];
        assert_eq!(a.forward(tokens(&ids)).into_data(), b.forward(tokens(&ids)).into_data());
    }

    #[test]
    fn later_tokens_do_not_change_earlier_logits() {
        let (config, model) = seeded_tiny(3);
        let a = model
            .forward(tokens(&[10, 20, 30, 40, 50]))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let b = model
            .forward(tokens(&[10, 20, 30, 41, 7]))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let v = config.vocab_size;
        assert_eq!(&a[..3 * v], &b[..3 * v], "positions 0..3 must not see positions 3..5");
        assert_ne!(
            &a[3 * v..],
            &b[3 * v..],
            "changed positions must change their own logits"
        );
    }

    #[test]
    fn rope_tables_are_not_parameters_or_recorded() {
        let config = LlamaConfig::preset("tiny").unwrap();
        let model = config.init_placeholder::<TestBackend>(&Default::default());
        assert_eq!(model.num_params() as u64, config.parameter_count());
        assert_eq!(model.rope.max_seq_len(), config.max_seq_len);
    }

    #[test]
    fn shape_check_rejects_a_different_config() {
        let config = LlamaConfig::preset("tiny").unwrap();
        let model = config.init_placeholder::<TestBackend>(&Default::default());
        let mut other = config.clone();
        other.ffn_hidden_dim = 512;
        let err = model.check_shapes(&other).unwrap_err().to_string();
        assert!(err.contains("layers.0.feed_forward.w1"), "{err}");
    }
}
