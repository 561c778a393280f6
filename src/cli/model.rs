//! `llamaflow model`: the LLaMA model's configs and checkpoints: print a
//! config's size, write a seeded random checkpoint, and convert checkpoints
//! to and from the Hugging Face `LlamaForCausalLM` layout.
//!
//! Every command that writes a folder writes it beside the target first and
//! renames it into place, so a killed command leaves no half checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use llamaflow_model::{LlamaConfig, checkpoint, export_hf, import_hf};

/// The backend the CLI's model commands run on: CPU, f32.
type CpuBackend = burn::backend::NdArray;

/// Flags of `model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// A config's shape, parameter count and training FLOPs per token.
    Info {
        /// A preset (tiny, small, 7B, 13B, 33B, 65B) or a checkpoint folder.
        config: String,
        /// Context length for the FLOPs figure (default: the config's).
        #[arg(long)]
        seq_len: Option<usize>,
    },
    /// Write a random checkpoint (weights N(0, 0.02²), norms at one), seeded.
    Init {
        /// A preset (tiny, small, 7B, ...).
        #[arg(long)]
        config: String,
        /// The checkpoint folder to create.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Convert a checkpoint to Hugging Face safetensors + config.json.
    ExportHf {
        /// The checkpoint folder (from `model init` or training).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The folder to create, loadable by `LlamaForCausalLM.from_pretrained`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Time training steps of a config on random tokens (CPU), printed as JSON.
    Bench(super::model_bench::BenchArgs),
    /// Convert a Hugging Face LLaMA checkpoint (safetensors) to ours.
    ImportHf {
        /// The Hugging Face folder (config.json and model.safetensors or its index).
        #[arg(long)]
        from: PathBuf,
        /// The checkpoint folder to create.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one `model` subcommand.
pub fn model(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let device = Default::default();
    match args.command {
        ModelCommand::Info { config, seq_len } => info(&config, seq_len),
        ModelCommand::Bench(bench) => super::model_bench::bench(bench),
        ModelCommand::Init { config, out, seed } => {
            let config = LlamaConfig::preset(&config)?;
            write_folder(&out, |tmp| {
                let model = config.init_seeded::<CpuBackend>(&device, seed);
                Ok(checkpoint::save(&model, &config, tmp)?)
            })?;
            println!(
                "wrote {} ({} parameters, seed {seed})",
                out.display(),
                super::count(config.parameter_count())
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::ExportHf { checkpoint: from, out } => {
            let config = checkpoint::load_config(&from)
                .with_context(|| format!("{} is not a llamaflow checkpoint", from.display()))?;
            let model = checkpoint::load::<CpuBackend>(&config, &from, &device)?;
            write_folder(&out, |tmp| Ok(export_hf(&model, &config, tmp)?))?;
            println!("wrote {} (Hugging Face LlamaForCausalLM, f32)", out.display());
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::ImportHf { from, out } => {
            let (config, model) = import_hf::<CpuBackend>(&from, &device)
                .with_context(|| format!("cannot import the Hugging Face checkpoint {}", from.display()))?;
            write_folder(&out, |tmp| Ok(checkpoint::save(&model, &config, tmp)?))?;
            println!(
                "wrote {} ({} parameters)",
                out.display(),
                super::count(config.parameter_count())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a config as JSON with its parameter count and FLOPs per token.
fn info(name: &str, seq_len: Option<usize>) -> anyhow::Result<ExitCode> {
    let config = if Path::new(name).is_dir() {
        checkpoint::load_config(Path::new(name))?
    } else {
        LlamaConfig::preset(name)?
    };
    let seq_len = seq_len.unwrap_or(config.max_seq_len);
    let parameters = config.parameter_count();
    let report = serde_json::json!({
        "config": config,
        "parameters": parameters,
        "parameters_billions": (parameters as f64 / 1e9 * 100.0).round() / 100.0,
        "seq_len": seq_len,
        "flops_per_token": config.flops_per_token(seq_len),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// Writes a folder through `write` into a sibling staging folder, then renames it to `out`.
fn write_folder(out: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if out.exists() {
        bail!("{} already exists; remove it or pick another --out", out.display());
    }
    let name = out
        .file_name()
        .with_context(|| format!("--out {} names no folder", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = write(&staging).and_then(|()| {
        std::fs::rename(&staging, out).with_context(|| format!("cannot move the result to {}", out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
