//! Native Burn checkpoints: full-precision named MessagePack plus the config as JSON.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::Backend;

use crate::{Llama, LlamaConfig, ModelError};

/// Config file written beside the weights, so a checkpoint directory is self-describing.
pub const CHECKPOINT_CONFIG_FILE: &str = "llama_config.json";
/// Weights file; Burn's recorder appends the `.mpk` extension to this stem.
pub const CHECKPOINT_WEIGHTS_STEM: &str = "model";

/// The recorder used for native checkpoints: f32 so resumed training loses no precision.
pub type CheckpointRecorder = NamedMpkFileRecorder<FullPrecisionSettings>;

fn weights_path(dir: &Path) -> PathBuf {
    dir.join(format!("{CHECKPOINT_WEIGHTS_STEM}.mpk"))
}

/// Writes `model` and `config` into `dir` (created if needed).
pub fn save<B: Backend>(model: &Llama<B>, config: &LlamaConfig, dir: &Path) -> Result<(), ModelError> {
    model.check_shapes(config)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let config_path = dir.join(CHECKPOINT_CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).map_err(|e| ModelError::json(&config_path, e))?;
    std::fs::write(&config_path, text + "\n").map_err(|e| ModelError::io(&config_path, e))?;
    let path = weights_path(dir);
    CheckpointRecorder::new()
        .record(model.clone().into_record(), path.clone())
        .map_err(|source| ModelError::Recorder { path, source })
}

/// Reads the config a checkpoint directory was saved with.
pub fn load_config(dir: &Path) -> Result<LlamaConfig, ModelError> {
    let path = dir.join(CHECKPOINT_CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let config: LlamaConfig = serde_json::from_str(&text).map_err(|e| ModelError::json(&path, e))?;
    config.validate()?;
    Ok(config)
}

/// Loads the weights in `dir` into a model shaped by `config`, on `device`.
pub fn load<B: Backend>(config: &LlamaConfig, dir: &Path, device: &B::Device) -> Result<Llama<B>, ModelError> {
    config.validate()?;
    let path = weights_path(dir);
    let record: <Llama<B> as Module<B>>::Record =
        CheckpointRecorder::new()
            .load(path.clone(), device)
            .map_err(|source| ModelError::Recorder {
                path: path.clone(),
                source,
            })?;
    // Burn asserts (panics) on a layer-count mismatch; turn that into an error first.
    if record.layers.len() != config.n_layers {
        return Err(ModelError::InvalidConfig(format!(
            "checkpoint {} has {} layers, config expects {}",
            path.display(),
            record.layers.len(),
            config.n_layers
        )));
    }
    let model = config.init_placeholder::<B>(device).load_record(record);
    model.check_shapes(config)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TestBackend, seeded_tiny};
    use burn::tensor::{Int, Tensor, TensorData};

    #[test]
    fn save_load_round_trip_preserves_logits() {
        let (config, model) = seeded_tiny(9);
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        save(&model, &config, dir.path()).unwrap();
        assert_eq!(load_config(dir.path()).unwrap(), config);
        let loaded = load::<TestBackend>(&config, dir.path(), &device).unwrap();
        let ids: Tensor<TestBackend, 2, Int> =
            Tensor::from_data(TensorData::new(vec![3i64, 1, 4, 1, 5], [1, 5]), &device);
        assert_eq!(model.forward(ids.clone()).into_data(), loaded.forward(ids).into_data());
    }

    #[test]
    fn load_rejects_a_mismatched_config() {
        let config = LlamaConfig::preset("tiny").unwrap();
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        save(&config.init_placeholder::<TestBackend>(&device), &config, dir.path()).unwrap();
        let mut deeper = config.clone();
        deeper.n_layers = 3;
        assert!(matches!(
            load::<TestBackend>(&deeper, dir.path(), &device),
            Err(ModelError::InvalidConfig(_))
        ));
        let mut wider = config.clone();
        wider.ffn_hidden_dim = 512;
        assert!(matches!(
            load::<TestBackend>(&wider, dir.path(), &device),
            Err(ModelError::InvalidConfig(_))
        ));
        assert!(matches!(
            load::<TestBackend>(&config, Path::new("/nonexistent"), &device),
            Err(ModelError::Recorder { .. })
        ));
    }
}
