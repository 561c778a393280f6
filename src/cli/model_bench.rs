//! `llamaflow model bench`: the time of one training step (forward, backward, global-norm clip,
//! AdamW) of a config on random tokens, for side-by-side comparison with a PyTorch reference
//! (`bench/train_step.py` runs both in one go).

use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use llamaflow_model::LlamaConfig;
use llamaflow_model::train::{CpuTrainBackend, LrSchedule, OptimizerSettings, TokenBatch, Trainer};

/// Flags of `model bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A preset (tiny, small, 7B, ...).
    #[arg(long, default_value = "small")]
    config: String,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed steps, after `--warmup` untimed ones.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed steps first (allocator and cache warm-up).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Seed of the weights and the tokens.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A LLaMA shape instead of the preset: width (with --n-layers and --n-heads; e.g. the ~1B
    /// GPU check is --dim 2048 --n-layers 16 --n-heads 16).
    #[arg(long, requires_all = ["n_layers", "n_heads"])]
    dim: Option<usize>,
    /// Layers of the --dim shape.
    #[arg(long)]
    n_layers: Option<usize>,
    /// Attention heads of the --dim shape.
    #[arg(long)]
    n_heads: Option<usize>,
    /// `cpu`, or `cuda` in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs the steps on the chosen device and prints their times as JSON.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.device.as_str() {
        "cpu" => run::<CpuTrainBackend>(&args, "burn-ndarray (f32, BalancedCheckpointing)"),
        #[cfg(feature = "cuda")]
        "cuda" => run::<llamaflow_model::train::CudaTrainBackend>(&args, "burn-cuda (f32, BalancedCheckpointing)"),
        #[cfg(not(feature = "cuda"))]
        "cuda" => anyhow::bail!("this build has no CUDA backend: build with `cargo build --release --features cuda`"),
        other => anyhow::bail!("unknown --device `{other}`: cpu or cuda"),
    }
}

fn run<B: AutodiffBackend>(args: &BenchArgs, backend: &str) -> anyhow::Result<ExitCode> {
    let config = match (args.dim, args.n_layers, args.n_heads) {
        (Some(dim), Some(layers), Some(heads)) => {
            let config = LlamaConfig::new(dim, layers, heads);
            config.validate()?;
            config
        }
        _ => LlamaConfig::preset(&args.config)?,
    };
    anyhow::ensure!(
        (1..=config.max_seq_len).contains(&args.seq_len) && args.batch > 0 && args.steps > 0,
        "--seq-len must be 1..={}, --batch and --steps at least 1",
        config.max_seq_len
    );
    let device = Default::default();
    let model = config.init_seeded::<B>(&device, args.seed);
    let settings = OptimizerSettings::llama(LrSchedule {
        peak: config.learning_rate,
        warmup_steps: 1,
        total_steps: (args.warmup + args.steps) as u64,
        min_ratio: 0.1,
    });
    let mut trainer = Trainer::new(model, config.clone(), settings);
    // xorshift64*: any fixed token stream does; the step's cost does not depend on the ids.
    let mut state = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next_token = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % config.vocab_size as u32
    };
    let mut seconds = Vec::with_capacity(args.steps);
    let mut losses = Vec::with_capacity(args.warmup + args.steps);
    for i in 0..args.warmup + args.steps {
        let sequences: Vec<Vec<u32>> = (0..args.batch)
            .map(|_| (0..=args.seq_len).map(|_| next_token()).collect())
            .collect();
        let batch = TokenBatch::from_sequences(&sequences, config.vocab_size, &device)?;
        let started = Instant::now();
        let report = trainer.step(&[batch])?;
        if i >= args.warmup {
            seconds.push(started.elapsed().as_secs_f64());
        }
        losses.push(report.loss);
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let tokens = (args.batch * args.seq_len) as f64;
    let flops = config.flops_per_token(args.seq_len) as f64 * tokens;
    let report = serde_json::json!({
        "tool": "llamaflow",
        "backend": backend,
        "config": config,
        "parameters": config.parameter_count(),
        "seq_len": args.seq_len,
        "batch": args.batch,
        "step_seconds": seconds,
        "median_step_seconds": median,
        "tokens_per_second": tokens / median,
        "gflops_per_second": flops / median / 1e9,
        "losses": losses,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
