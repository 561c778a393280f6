//! Logit parity with Hugging Face `transformers.LlamaForCausalLM`, in both directions.
//!
//! Needs `python3` with `torch` and `transformers` (the workspace's `tests/requirements.txt`, which `./test.sh` installs); set
//! `LLAMAFLOW_PYTHON` to use another interpreter. Without them the tests fail, unless
//! `LLAMAFLOW_SKIP_HF_PARITY=1` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::NdArray;
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use llamaflow_model::{Llama, LlamaConfig, export_hf, import_hf};

type B = NdArray;

/// Both sides compute in f32; this leaves room only for summation-order differences.
const TOLERANCE: f32 = 1e-4;

/// The interpreter to use, or `None` when the user asked to skip.
fn python_or_skip(test: &str) -> Option<String> {
    if std::env::var("LLAMAFLOW_SKIP_HF_PARITY").as_deref() == Ok("1") {
        eprintln!("{test}: SKIPPED because LLAMAFLOW_SKIP_HF_PARITY=1");
        return None;
    }
    let python = std::env::var("LLAMAFLOW_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let hint = "install them with `python3 -m pip install -r tests/requirements.txt`, \
                or set LLAMAFLOW_SKIP_HF_PARITY=1 to skip the HF parity tests";
    match Command::new(&python)
        .args(["-c", "import torch, transformers"])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => panic!(
            "{test}: `{python}` cannot import torch and transformers ({}); {hint}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!("{test}: cannot run `{python}` ({err}); {hint}"),
    }
}

/// Runs `hf_parity.py COMMAND --model-dir M --ids I --out O EXTRA...`.
fn run_script(python: &str, command: &str, model_dir: &Path, ids: &Path, out: &Path, extra: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_parity.py");
    let args = [
        command,
        "--model-dir",
        path(model_dir),
        "--ids",
        path(ids),
        "--out",
        path(out),
    ];
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .args(extra)
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Batch of 2 × 12 pseudo-random ids, including both ends of the vocabulary.
fn token_ids() -> Vec<Vec<i64>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rows = Vec::new();
    for _ in 0..2 {
        let mut row = vec![1i64];
        for _ in 0..10 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            row.push(((state >> 33) % 32000) as i64);
        }
        row.push(31999);
        rows.push(row);
    }
    rows
}

fn write_ids(dir: &Path) -> PathBuf {
    let path = dir.join("ids.json");
    std::fs::write(&path, serde_json::json!({ "ids": token_ids() }).to_string()).unwrap();
    path
}

fn read_logits(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let shape = json["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let logits = json["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (shape, logits)
}

fn burn_logits(model: &Llama<B>) -> (Vec<usize>, Vec<f32>) {
    let ids = token_ids();
    let (batch, seq) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.into_iter().flatten().collect();
    let tokens: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(flat, [batch, seq]), &Default::default());
    let logits = model.forward(tokens);
    (logits.dims().to_vec(), logits.into_data().to_vec::<f32>().unwrap())
}

fn compare(what: &str, ours: (Vec<usize>, Vec<f32>), theirs: (Vec<usize>, Vec<f32>)) {
    assert_eq!(ours.0, theirs.0, "{what}: logits shape");
    let max_diff = ours
        .1
        .iter()
        .zip(&theirs.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let max_abs = theirs.1.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    eprintln!("{what}: max |logit diff| = {max_diff:e} (max |logit| = {max_abs})");
    // Guard against a vacuous pass on near-zero logits.
    assert!(
        max_abs > 0.1,
        "{what}: logits are too small for a meaningful comparison"
    );
    assert!(
        max_diff <= TOLERANCE,
        "{what}: max |logit diff| {max_diff:e} exceeds {TOLERANCE:e}"
    );
}

fn random<const D: usize>(shape: [usize; D], distribution: Distribution) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(shape, distribution, &Default::default()))
}

#[test]
fn burn_export_loads_in_transformers_with_matching_logits() {
    let Some(python) = python_or_skip("burn_export_loads_in_transformers_with_matching_logits") else {
        return;
    };
    let config = LlamaConfig::preset("tiny").unwrap();
    let device = Default::default();
    let mut model = config.init_seeded::<B>(&device, 42);
    // Sharpen attention and vary the norm gains so layout mistakes in q/k or the norms show up.
    B::seed(&device, 43);
    for layer in &mut model.layers {
        layer.attention.wq.weight = random([config.dim, config.dim], Distribution::Normal(0.0, 0.3));
        layer.attention.wk.weight = random([config.dim, config.dim], Distribution::Normal(0.0, 0.3));
        layer.attention_norm.weight = random([config.dim], Distribution::Uniform(0.5, 1.5));
        layer.ffn_norm.weight = random([config.dim], Distribution::Uniform(0.5, 1.5));
    }
    model.norm.weight = random([config.dim], Distribution::Uniform(0.5, 1.5));

    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("hf");
    export_hf(&model, &config, &model_dir).unwrap();
    let ids = write_ids(dir.path());
    let out = dir.path().join("logits.json");
    run_script(&python, "logits", &model_dir, &ids, &out, &[]);
    compare("burn → HF", burn_logits(&model), read_logits(&out));
}

#[test]
fn transformers_checkpoint_imports_with_matching_logits() {
    let Some(python) = python_or_skip("transformers_checkpoint_imports_with_matching_logits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("hf");
    let ids = write_ids(dir.path());
    let out = dir.path().join("logits.json");
    run_script(&python, "make", &model_dir, &ids, &out, &["--seed", "7"]);
    let (config, model) = import_hf::<B>(&model_dir, &Default::default()).unwrap();
    assert_eq!(
        (config.dim, config.n_layers, config.n_heads, config.ffn_hidden_dim),
        (64, 2, 4, 256)
    );
    compare("HF → burn", burn_logits(&model), read_logits(&out));
}
