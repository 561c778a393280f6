//! Hugging Face `LlamaForCausalLM` safetensors export and import.
//!
//! Two layout differences separate this crate from HF checkpoints:
//! * Burn's `Linear` stores `[d_input, d_output]`, HF/PyTorch `[out, in]`, so matrices are transposed.
//! * HF applies rotary embeddings in the rotate-half layout, Meta (and this crate) to adjacent
//!   pairs. HF's `convert_llama_weights_to_hf.py` compensates by permuting the rows of `wq`/`wk`;
//!   export applies the same permutation and import its inverse, so logits agree exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use serde_json::json;

use crate::{Llama, LlamaConfig, ModelError};

/// Weights file written by [`export_hf`] and read by [`import_hf`].
pub const HF_WEIGHTS_FILE: &str = "model.safetensors";
/// Shard index read by [`import_hf`] when there is no single weights file.
pub const HF_INDEX_FILE: &str = "model.safetensors.index.json";
/// Model configuration file.
pub const HF_CONFIG_FILE: &str = "config.json";

/// How a tensor's layout differs between this crate and HF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Same layout on both sides (embeddings, norm gains).
    Identity,
    /// A `Linear` weight: transposed.
    Linear,
    /// A query/key `Linear` weight: transposed and rotary-permuted.
    RotaryLinear,
}

/// One tensor's HF name, HF shape and layout relation.
struct TensorSpec {
    name: String,
    hf_shape: Vec<usize>,
    layout: Layout,
}

/// Every tensor of an HF `LlamaForCausalLM` with this config, in a stable order.
fn tensor_specs(config: &LlamaConfig) -> Vec<TensorSpec> {
    let (d, v, h) = (config.dim, config.vocab_size, config.ffn_hidden_dim);
    let spec = |name: String, hf_shape: Vec<usize>, layout| TensorSpec { name, hf_shape, layout };
    let mut specs = vec![spec("model.embed_tokens.weight".into(), vec![v, d], Layout::Identity)];
    for i in 0..config.n_layers {
        let p = format!("model.layers.{i}");
        specs.extend([
            spec(format!("{p}.self_attn.q_proj.weight"), vec![d, d], Layout::RotaryLinear),
            spec(format!("{p}.self_attn.k_proj.weight"), vec![d, d], Layout::RotaryLinear),
            spec(format!("{p}.self_attn.v_proj.weight"), vec![d, d], Layout::Linear),
            spec(format!("{p}.self_attn.o_proj.weight"), vec![d, d], Layout::Linear),
            spec(format!("{p}.mlp.gate_proj.weight"), vec![h, d], Layout::Linear),
            spec(format!("{p}.mlp.up_proj.weight"), vec![h, d], Layout::Linear),
            spec(format!("{p}.mlp.down_proj.weight"), vec![d, h], Layout::Linear),
            spec(format!("{p}.input_layernorm.weight"), vec![d], Layout::Identity),
            spec(
                format!("{p}.post_attention_layernorm.weight"),
                vec![d],
                Layout::Identity,
            ),
        ]);
    }
    specs.push(spec("model.norm.weight".into(), vec![d], Layout::Identity));
    specs.push(spec("lm_head.weight".into(), vec![v, d], Layout::Linear));
    specs
}

/// The model parameter an HF tensor maps to, mutably, so export and import share one mapping.
fn param_mut<'m, B: Backend>(model: &'m mut Llama<B>, name: &str) -> Option<ParamRef<'m, B>> {
    if name == "model.embed_tokens.weight" {
        return Some(ParamRef::Matrix(&mut model.tok_embeddings.weight));
    }
    if name == "model.norm.weight" {
        return Some(ParamRef::Vector(&mut model.norm.weight));
    }
    if name == "lm_head.weight" {
        return Some(ParamRef::Matrix(&mut model.output.weight));
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (index, leaf) = rest.split_once('.')?;
    let layer = model.layers.get_mut(index.parse::<usize>().ok()?)?;
    let param = match leaf {
        "self_attn.q_proj.weight" => ParamRef::Matrix(&mut layer.attention.wq.weight),
        "self_attn.k_proj.weight" => ParamRef::Matrix(&mut layer.attention.wk.weight),
        "self_attn.v_proj.weight" => ParamRef::Matrix(&mut layer.attention.wv.weight),
        "self_attn.o_proj.weight" => ParamRef::Matrix(&mut layer.attention.wo.weight),
        "mlp.gate_proj.weight" => ParamRef::Matrix(&mut layer.feed_forward.w1.weight),
        "mlp.up_proj.weight" => ParamRef::Matrix(&mut layer.feed_forward.w3.weight),
        "mlp.down_proj.weight" => ParamRef::Matrix(&mut layer.feed_forward.w2.weight),
        "input_layernorm.weight" => ParamRef::Vector(&mut layer.attention_norm.weight),
        "post_attention_layernorm.weight" => ParamRef::Vector(&mut layer.ffn_norm.weight),
        _ => return None,
    };
    Some(param)
}

/// A borrowed model parameter of either rank.
enum ParamRef<'m, B: Backend> {
    Matrix(&'m mut Param<Tensor<B, 2>>),
    Vector(&'m mut Param<Tensor<B, 1>>),
}

/// Transposes a row-major `[rows, cols]` matrix into `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Meta → HF row permutation of a `[rows, cols]` q/k weight (`permute` in `convert_llama_weights_to_hf.py`).
///
/// Row `2i + j` of each head (pair `i`, component `j`) moves to row `j · head_dim/2 + i`.
pub fn permute_rotary_rows(w: &[f32], n_heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    reorder_rotary_rows(w, n_heads, rows, cols, true)
}

/// HF → Meta: the inverse of [`permute_rotary_rows`].
pub fn unpermute_rotary_rows(w: &[f32], n_heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    reorder_rotary_rows(w, n_heads, rows, cols, false)
}

fn reorder_rotary_rows(w: &[f32], n_heads: usize, rows: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let meta_row = h * head_dim + 2 * i + j;
                let hf_row = h * head_dim + j * half + i;
                let (src, dst) = if to_hf { (meta_row, hf_row) } else { (hf_row, meta_row) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn read_f32<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>, name: &str) -> Result<Vec<f32>, ModelError> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ModelError::TensorData {
            tensor: name.to_string(),
            reason: e.to_string(),
        })
}

/// The HF `config.json` contents for `config`.
pub fn hf_config_json(config: &LlamaConfig) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden_dim,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_heads,
        "num_hidden_layers": config.n_layers,
        "head_dim": config.head_dim(),
        "rms_norm_eps": config.norm_eps,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_seq_len,
        "rope_theta": config.rope_theta,
        "rope_scaling": null,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "attention_dropout": 0.0,
        "initializer_range": crate::llama::INIT_STD,
        "pretraining_tp": 1,
        "use_cache": true,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    })
}

/// Writes `model` as an HF `LlamaForCausalLM` directory: `model.safetensors` (f32) and `config.json`.
///
/// The whole f32 checkpoint is assembled in memory before writing.
pub fn export_hf<B: Backend>(model: &Llama<B>, config: &LlamaConfig, out_dir: &Path) -> Result<(), ModelError> {
    config.validate()?;
    model.check_shapes(config)?;
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;

    // `param_mut` needs `&mut`; a clone shares the tensor storage, so this copies no weights.
    let mut model = model.clone();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in tensor_specs(config) {
        let data = match param_mut(&mut model, &spec.name) {
            Some(ParamRef::Matrix(p)) => read_f32(p, &spec.name)?,
            Some(ParamRef::Vector(p)) => read_f32(p, &spec.name)?,
            // `tensor_specs` and `param_mut` enumerate the same names; a miss is a bug here.
            None => unreachable!("no model parameter for {}", spec.name),
        };
        let data = match spec.layout {
            Layout::Identity => data,
            // Burn holds [in, out]; HF wants [out, in] = hf_shape.
            Layout::Linear => transpose(&data, spec.hf_shape[1], spec.hf_shape[0]),
            Layout::RotaryLinear => {
                let (rows, cols) = (spec.hf_shape[0], spec.hf_shape[1]);
                permute_rotary_rows(&transpose(&data, cols, rows), config.n_heads, rows, cols)
            }
        };
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((spec.name, spec.hf_shape, bytes));
    }

    let weights_path = out_dir.join(HF_WEIGHTS_FILE);
    let st_err = |source| ModelError::SafeTensors {
        path: weights_path.clone(),
        source,
    };
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(st_err)?,
            ))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    // transformers refuses safetensors files whose metadata does not declare the framework.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &weights_path).map_err(st_err)?;

    let config_path = out_dir.join(HF_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&hf_config_json(config)).map_err(|e| ModelError::json(&config_path, e))?;
    std::fs::write(&config_path, text + "\n").map_err(|e| ModelError::io(&config_path, e))?;
    Ok(())
}

/// The subset of an HF `config.json` this crate reads; absent optional keys take HF's defaults.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    num_hidden_layers: usize,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    vocab_size: usize,
    max_position_embeddings: usize,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers ≥ 5 folds `rope_theta`/`rope_scaling` into this object.
    rope_parameters: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
}

impl HfConfig {
    /// Converts to a [`LlamaConfig`], refusing features LLaMA-1 does not have.
    fn to_llama(&self, path: &Path) -> Result<(LlamaConfig, bool), ModelError> {
        let unsupported = |reason: String| {
            Err(ModelError::UnsupportedHfConfig {
                path: path.to_path_buf(),
                reason,
            })
        };
        if let Some(model_type) = &self.model_type
            && model_type != "llama"
        {
            return unsupported(format!("model_type is `{model_type}`, expected `llama`"));
        }
        if let Some(kv) = self.num_key_value_heads
            && kv != self.num_attention_heads
        {
            return unsupported(format!(
                "grouped-query attention ({kv} KV heads for {} heads) is not LLaMA-1",
                self.num_attention_heads
            ));
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return unsupported(format!("hidden_act `{act}`, expected `silu`"));
        }
        if self.attention_bias == Some(true) || self.mlp_bias == Some(true) {
            return unsupported("biases are not part of LLaMA-1".into());
        }
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return unsupported(format!("rope_scaling {scaling} is not supported"));
        }
        let mut rope_theta = self.rope_theta;
        if let Some(params) = self.rope_parameters.as_ref().filter(|p| !p.is_null()) {
            let rope_type = params.get("rope_type").and_then(|t| t.as_str()).unwrap_or("default");
            if rope_type != "default" {
                return unsupported(format!("rope_type `{rope_type}` is not supported"));
            }
            rope_theta = rope_theta.or_else(|| params.get("rope_theta").and_then(|t| t.as_f64()));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return unsupported(format!(
                "hidden_size {} not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if let Some(head_dim) = self.head_dim
            && head_dim != self.hidden_size / self.num_attention_heads
        {
            return unsupported(format!("head_dim {head_dim} is not hidden_size / num_attention_heads"));
        }
        let mut config = LlamaConfig::new(self.hidden_size, self.num_hidden_layers, self.num_attention_heads);
        config.ffn_hidden_dim = self.intermediate_size;
        config.vocab_size = self.vocab_size;
        config.norm_eps = self.rms_norm_eps;
        config.max_seq_len = self.max_position_embeddings;
        config.rope_theta = rope_theta.unwrap_or(10000.0);
        config.validate()?;
        Ok((config, self.tie_word_embeddings.unwrap_or(false)))
    }
}

/// The safetensors files of a checkpoint, read into memory, and which file holds each tensor.
struct WeightFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Tensor name → index into `files`; from the shard index, or from the single file's header.
    location: HashMap<String, usize>,
    /// Where a missing tensor is reported: the single file or the shard index.
    source: PathBuf,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl WeightFiles {
    fn open(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join(HF_WEIGHTS_FILE);
        let index_path = dir.join(HF_INDEX_FILE);
        let read = |path: &Path| std::fs::read(path).map_err(|e| ModelError::io(path, e));
        if single.exists() {
            let bytes = read(&single)?;
            let names = SafeTensors::deserialize(&bytes)
                .map_err(|source| ModelError::SafeTensors {
                    path: single.clone(),
                    source,
                })?
                .names()
                .into_iter()
                .map(|n| (n.to_string(), 0))
                .collect();
            return Ok(Self {
                files: vec![(single.clone(), bytes)],
                location: names,
                source: single,
            });
        }
        if !index_path.exists() {
            return Err(ModelError::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("neither {HF_WEIGHTS_FILE} nor {HF_INDEX_FILE} exists"),
                ),
            ));
        }
        let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::json(&index_path, e))?;
        let mut files = Vec::new();
        let mut file_ids: HashMap<&str, usize> = HashMap::new();
        let mut location = HashMap::new();
        for (tensor, file) in &index.weight_map {
            let id = match file_ids.get(file.as_str()) {
                Some(id) => *id,
                None => {
                    let path = dir.join(file);
                    files.push((path.clone(), read(&path)?));
                    file_ids.insert(file, files.len() - 1);
                    files.len() - 1
                }
            };
            location.insert(tensor.clone(), id);
        }
        Ok(Self {
            files,
            location,
            source: index_path,
        })
    }

    /// Reads tensor `name`, checking its shape, as f32 (from F32, BF16 or F16).
    fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ModelError> {
        let missing = || ModelError::MissingTensor {
            path: self.source.clone(),
            tensor: name.to_string(),
        };
        let (path, bytes) = &self.files[*self.location.get(name).ok_or_else(missing)?];
        let st = SafeTensors::deserialize(bytes).map_err(|source| ModelError::SafeTensors {
            path: path.clone(),
            source,
        })?;
        let view = st.tensor(name).map_err(|_| ModelError::MissingTensor {
            path: path.clone(),
            tensor: name.to_string(),
        })?;
        if view.shape() != expected {
            return Err(ModelError::ShapeMismatch {
                path: path.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.clone(),
                    tensor: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        Ok(values)
    }
}

/// Reads an HF LLaMA directory (`config.json` plus `model.safetensors` or a sharded
/// `model.safetensors.index.json` set) into a model on `device`.
///
/// Tensors may be F32, BF16 or F16; they are converted to f32 before reaching the backend.
pub fn import_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<(LlamaConfig, Llama<B>), ModelError> {
    let config_path = dir.join(HF_CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| ModelError::json(&config_path, e))?;
    let (config, tied) = hf.to_llama(&config_path)?;
    let weights = WeightFiles::open(dir)?;

    let mut model = config.init_placeholder::<B>(device);
    for spec in tensor_specs(&config) {
        // Tied checkpoints omit the head: it is the embedding matrix.
        let source_name = if tied && spec.name == "lm_head.weight" && !weights.location.contains_key(&spec.name) {
            "model.embed_tokens.weight"
        } else {
            spec.name.as_str()
        };
        let data = weights.tensor_f32(source_name, &spec.hf_shape)?;
        let (rows, cols) = (spec.hf_shape[0], spec.hf_shape.get(1).copied().unwrap_or(1));
        let data = match spec.layout {
            Layout::Identity => data,
            Layout::Linear => transpose(&data, rows, cols),
            Layout::RotaryLinear => transpose(&unpermute_rotary_rows(&data, config.n_heads, rows, cols), rows, cols),
        };
        match param_mut(&mut model, &spec.name) {
            Some(ParamRef::Matrix(p)) => {
                let shape = if spec.layout == Layout::Identity {
                    [rows, cols]
                } else {
                    [cols, rows]
                };
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device));
            }
            Some(ParamRef::Vector(p)) => {
                *p = Param::from_tensor(Tensor::from_data(TensorData::new(data, [rows]), device))
            }
            // `tensor_specs` and `param_mut` enumerate the same names; a miss is a bug here.
            None => unreachable!("no model parameter for {}", spec.name),
        }
    }
    Ok((config, model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rope::RotaryEmbedding;
    use crate::test_support::{TestBackend, lock_rng, seeded_tiny};
    use burn::tensor::{Distribution, Int};

    #[test]
    fn rotary_permutation_round_trips_and_matches_hf_reference() {
        // 2 heads of width 4, 3 input columns: rows are labelled by value.
        let w: Vec<f32> = (0..8 * 3).map(|v| v as f32).collect();
        let hf = permute_rotary_rows(&w, 2, 8, 3);
        // HF head 0 rows = Meta rows [0, 2, 1, 3] (even components first, then odd).
        let rows: Vec<f32> = hf.chunks(3).map(|r| r[0] / 3.0).collect();
        assert_eq!(rows, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(unpermute_rotary_rows(&hf, 2, 8, 3), w);
    }

    /// HF's `apply_rotary_pos_emb`: rotate `(x_i, x_{i+half})` pairs.
    fn rope_rotate_half(x: &[f32], seq: usize, head_dim: usize, theta: f64) -> Vec<f32> {
        let half = head_dim / 2;
        let mut out = x.to_vec();
        for pos in 0..seq {
            for i in 0..half {
                let angle = pos as f64 * theta.powf(-((2 * i) as f64) / head_dim as f64);
                let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                let (a, b) = (x[pos * head_dim + i], x[pos * head_dim + i + half]);
                out[pos * head_dim + i] = a * c - b * s;
                out[pos * head_dim + i + half] = b * c + a * s;
            }
        }
        out
    }

    #[test]
    fn interleaved_rope_equals_rotate_half_on_permuted_weights() {
        let (seq, dim, head_dim) = (5, 8, 8);
        let device = Default::default();
        let (x, w_meta) = {
            let _rng = lock_rng();
            TestBackend::seed(&device, 11);
            let x = Tensor::<TestBackend, 2>::random([seq, dim], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<TestBackend, 2>::random([head_dim, dim], Distribution::Normal(0.0, 1.0), &device);
            (x, w)
        };
        // Meta path: q = x·Wᵀ, then interleaved RoPE (via the model's RotaryEmbedding).
        let q = x
            .clone()
            .matmul(w_meta.clone().transpose())
            .reshape([1, 1, seq, head_dim]);
        let q_meta = RotaryEmbedding::<TestBackend>::new(head_dim, 16, 10000.0, &device).apply(q);
        let q_meta = q_meta.into_data().to_vec::<f32>().unwrap();
        // HF path: permuted weight, rotate-half RoPE.
        let w_hf = permute_rotary_rows(&w_meta.into_data().to_vec::<f32>().unwrap(), 1, head_dim, dim);
        let w_hf = Tensor::<TestBackend, 2>::from_data(TensorData::new(w_hf, [head_dim, dim]), &device);
        let q_hf = x.matmul(w_hf.transpose()).into_data().to_vec::<f32>().unwrap();
        let q_hf = rope_rotate_half(&q_hf, seq, head_dim, 10000.0);
        // Same numbers, HF order = Meta order permuted; so q·k dot products agree too.
        let q_meta_in_hf_order = permute_rotary_rows(&q_meta, seq, seq * head_dim, 1);
        for (a, b) in q_meta_in_hf_order.iter().zip(&q_hf) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn export_import_round_trip_is_bit_identical() {
        let (config, model) = seeded_tiny(5);
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        export_hf(&model, &config, dir.path()).unwrap();
        let (imported_config, imported) = import_hf::<TestBackend>(dir.path(), &device).unwrap();
        let mut expected_config = config.clone();
        expected_config.learning_rate = imported_config.learning_rate;
        assert_eq!(imported_config, expected_config);

        let mut a = model.clone();
        let mut b = imported.clone();
        for spec in tensor_specs(&config) {
            let (x, y) = match (param_mut(&mut a, &spec.name), param_mut(&mut b, &spec.name)) {
                (Some(ParamRef::Matrix(x)), Some(ParamRef::Matrix(y))) => (x.val().into_data(), y.val().into_data()),
                (Some(ParamRef::Vector(x)), Some(ParamRef::Vector(y))) => (x.val().into_data(), y.val().into_data()),
                _ => panic!("mismatched parameter kinds for {}", spec.name),
            };
            assert_eq!(x, y, "{} differs after round trip", spec.name);
        }
        let ids: Tensor<TestBackend, 2, Int> =
            Tensor::from_data(TensorData::new(vec![1i64, 500, 31999, 7], [1, 4]), &device);
        assert_eq!(
            model.forward(ids.clone()).into_data(),
            imported.forward(ids).into_data()
        );
    }

    #[test]
    fn import_reads_a_sharded_checkpoint() {
        let (config, model) = seeded_tiny(13);
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        export_hf(&model, &config, dir.path()).unwrap();

        // Split the single file into two shards plus an index, as `save_pretrained` does for big models.
        let single = dir.path().join(HF_WEIGHTS_FILE);
        let bytes = std::fs::read(&single).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut weight_map = serde_json::Map::new();
        let mut shards: [Vec<(String, TensorView)>; 2] = [Vec::new(), Vec::new()];
        for (name, view) in st.tensors() {
            let shard = usize::from(!name.starts_with("model.layers.0.") && name != "model.embed_tokens.weight");
            let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
            weight_map.insert(name.clone(), file.into());
            shards[shard].push((name, view));
        }
        for (i, shard) in shards.into_iter().enumerate() {
            let path = dir.path().join(format!("model-0000{}-of-00002.safetensors", i + 1));
            safetensors::serialize_to_file(shard, None, &path).unwrap();
        }
        let index = json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.path().join(HF_INDEX_FILE), index.to_string()).unwrap();
        std::fs::remove_file(&single).unwrap();

        let (_, imported) = import_hf::<TestBackend>(dir.path(), &device).unwrap();
        let ids: Tensor<TestBackend, 2, Int> = Tensor::from_data(TensorData::new(vec![2i64, 4, 8], [1, 3]), &device);
        assert_eq!(
            model.forward(ids.clone()).into_data(),
            imported.forward(ids).into_data()
        );
    }

    #[test]
    fn import_reports_missing_and_misshapen_tensors() {
        let config = LlamaConfig::preset("tiny").unwrap();
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let model = config.init_placeholder::<TestBackend>(&device);
        export_hf(&model, &config, dir.path()).unwrap();

        // Claim a wider FFN than the weights have.
        let config_path = dir.path().join(HF_CONFIG_FILE);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        json["intermediate_size"] = 512.into();
        std::fs::write(&config_path, json.to_string()).unwrap();
        let err = import_hf::<TestBackend>(dir.path(), &device).unwrap_err();
        assert!(
            matches!(&err, ModelError::ShapeMismatch { tensor, .. } if tensor == "model.layers.0.mlp.gate_proj.weight"),
            "{err}"
        );

        // Claim a third layer that is not in the file.
        json["intermediate_size"] = 256.into();
        json["num_hidden_layers"] = 3.into();
        std::fs::write(&config_path, json.to_string()).unwrap();
        let err = import_hf::<TestBackend>(dir.path(), &device).unwrap_err();
        assert!(
            err.to_string().contains("model.layers.2.self_attn.q_proj.weight"),
            "{err}"
        );
        assert!(err.to_string().contains("model.safetensors"), "{err}");

        // Grouped-query attention is refused up front.
        json["num_hidden_layers"] = 2.into();
        json["num_key_value_heads"] = 2.into();
        std::fs::write(&config_path, json.to_string()).unwrap();
        let err = import_hf::<TestBackend>(dir.path(), &device).unwrap_err();
        assert!(matches!(err, ModelError::UnsupportedHfConfig { .. }), "{err}");
    }

    #[test]
    fn import_converts_half_precision_tensors() {
        let bf = half::bf16::from_f32(1.5).to_le_bytes();
        let fp = half::f16::from_f32(-0.25).to_le_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HF_WEIGHTS_FILE);
        let bf_bytes = [bf, bf].concat();
        let fp_bytes = [fp, fp].concat();
        let views = vec![
            ("a", TensorView::new(Dtype::BF16, vec![2], &bf_bytes).unwrap()),
            ("b", TensorView::new(Dtype::F16, vec![2], &fp_bytes).unwrap()),
        ];
        safetensors::serialize_to_file(views, None, &path).unwrap();
        let files = WeightFiles::open(dir.path()).unwrap();
        assert_eq!(files.tensor_f32("a", &[2]).unwrap(), vec![1.5, 1.5]);
        assert_eq!(files.tensor_f32("b", &[2]).unwrap(), vec![-0.25, -0.25]);
        assert!(matches!(
            files.tensor_f32("a", &[3]),
            Err(ModelError::ShapeMismatch { .. })
        ));
    }
}
