//! Typed errors for configuration, checkpoint and Hugging Face interop failures.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, saving or loading a LLaMA model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A preset name that is not one of [`crate::LlamaConfig::PRESET_NAMES`].
    #[error("unknown model preset `{name}`; valid presets are: {valid}")]
    UnknownPreset {
        /// The name that was asked for.
        name: String,
        /// Comma-separated list of the valid names.
        valid: String,
    },

    /// A configuration whose dimensions cannot describe a LLaMA model.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),

    /// A file could not be read or written.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or written.
    #[error("JSON error in {path}")]
    Json {
        /// The JSON file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// A safetensors file is malformed or could not be written.
    #[error("safetensors error in {path}")]
    SafeTensors {
        /// The safetensors file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: safetensors::SafeTensorError,
    },

    /// A tensor the model needs is absent from the checkpoint.
    #[error("tensor `{tensor}` is missing from {path}")]
    MissingTensor {
        /// The file (or shard index) that should have held it.
        path: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },

    /// A tensor exists but its shape does not match the configuration.
    #[error("tensor `{tensor}` in {path} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },

    /// A tensor is stored in a dtype we do not convert from.
    #[error("tensor `{tensor}` in {path} has unsupported dtype {dtype} (supported: F32, BF16, F16)")]
    UnsupportedDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The dtype found, as safetensors spells it.
        dtype: String,
    },

    /// A Hugging Face `config.json` describes a model this LLaMA-1 implementation cannot represent.
    #[error("unsupported Hugging Face config {path}: {reason}")]
    UnsupportedHfConfig {
        /// The `config.json` involved.
        path: PathBuf,
        /// Why it cannot be represented.
        reason: String,
    },

    /// Reading tensor data back from the backend failed.
    #[error("could not read tensor `{tensor}` from the backend: {reason}")]
    TensorData {
        /// The parameter being read.
        tensor: String,
        /// The backend's explanation.
        reason: String,
    },

    /// A training batch cannot be built or used.
    #[error("invalid training batch: {0}")]
    InvalidBatch(String),

    /// Training produced a non-finite value: the step (or the checkpoint) was not written.
    #[error("non-finite {what} ({value}) at step {step}: training stopped (lower the learning rate or check the data)")]
    NonFinite {
        /// The optimiser step that produced it (1-based).
        step: u64,
        /// `loss`, `gradient norm` or `weights`.
        what: &'static str,
        /// The value.
        value: f64,
    },

    /// Burn's recorder failed to save or load a native checkpoint.
    #[error("checkpoint recorder error in {path}")]
    Recorder {
        /// The checkpoint file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: burn::record::RecorderError,
    },
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.into(),
            source,
        }
    }
}
