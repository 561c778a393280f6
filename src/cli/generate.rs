//! `llamaflow generate`: continue a prompt with a checkpoint, so a user can
//! see what a model learned. Greedy at temperature 0, else temperature and
//! nucleus (top-p) sampling, seeded.
//!
//! Each new token runs the whole context through the model again (there is
//! no key/value cache): fine for the CPU configs this command is for.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use llamaflow_model::checkpoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizers::Tokenizer;

/// The backend generation runs on: CPU, f32.
type CpuBackend = burn::backend::NdArray;

/// The end-of-sequence token in our tokenizer's layout (`</s>` = 2, as LLaMA's).
const EOS_TOKEN: &str = "</s>";

/// Flags of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The checkpoint folder (from `model init`, `model import-hf` or training).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The tokenizer.json the model was trained with.
    #[arg(long)]
    tokenizer: PathBuf,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    /// Tokens to add at most (stops early at `</s>`).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 picks the likeliest token every time.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling: draw only among the likeliest tokens whose probabilities sum to this.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Prints the prompt and its continuation.
pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.temperature < 0.0 || !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!("--temperature must be >= 0 and --top-p in (0, 1]");
    }
    let tokenizer = Tokenizer::from_file(&args.tokenizer)
        .map_err(|e| anyhow::anyhow!("cannot load the tokenizer {}: {e}", args.tokenizer.display()))?;
    let device = Default::default();
    let config = checkpoint::load_config(&args.checkpoint)
        .with_context(|| format!("{} is not a llamaflow checkpoint", args.checkpoint.display()))?;
    let model = checkpoint::load::<CpuBackend>(&config, &args.checkpoint, &device)?;
    if tokenizer.get_vocab_size(true) > config.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model only {}",
            tokenizer.get_vocab_size(true),
            config.vocab_size
        );
    }
    let encoding = tokenizer
        .encode(args.prompt.as_str(), true)
        .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
    let mut tokens: Vec<u32> = encoding.get_ids().to_vec();
    let prompt_len = tokens.len();
    let eos = tokenizer.token_to_id(EOS_TOKEN);
    let mut rng = StdRng::seed_from_u64(args.seed);
    for _ in 0..args.max_new_tokens {
        let window = &tokens[tokens.len().saturating_sub(config.max_seq_len)..];
        let ids: Vec<i64> = window.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new(ids, [1, window.len()]), &device);
        let logits = model.forward(input);
        let [_, seq, vocab] = logits.dims();
        let last: Vec<f32> = logits
            .slice([0..1, seq - 1..seq, 0..vocab])
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| anyhow::anyhow!("cannot read the logits: {e:?}"))?;
        let next = pick(&last, args.temperature, args.top_p, &mut rng);
        tokens.push(next);
        if Some(next) == eos {
            break;
        }
    }
    let text = tokenizer
        .decode(&tokens[prompt_len..], true)
        .map_err(|e| anyhow::anyhow!("cannot decode the output: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}{}", args.prompt, text)?;
    Ok(ExitCode::SUCCESS)
}

/// The next token: the argmax at temperature 0, else a draw from the
/// tempered distribution restricted to its top-p nucleus.
fn pick(logits: &[f32], temperature: f64, top_p: f64, rng: &mut StdRng) -> u32 {
    let argmax = logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &l)| if l > best.1 { (i, l) } else { best },
        )
        .0;
    if temperature == 0.0 {
        return argmax as u32;
    }
    let max = logits[argmax] as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l as f64 - max) / temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut nucleus = Vec::new();
    let mut mass = 0.0;
    for (i, p) in probs {
        nucleus.push((i, p));
        mass += p / total;
        if mass >= top_p {
            break;
        }
    }
    let kept: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut draw = rng.random::<f64>() * kept;
    for &(i, p) in &nucleus {
        if draw < p {
            return i as u32;
        }
        draw -= p;
    }
    // Rounding can leave a sliver past the last token; it belongs to the last one.
    nucleus.last().map_or(argmax, |p| p.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_zero_is_greedy() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(pick(&[0.1, 3.0, 2.9], 0.0, 1.0, &mut rng), 1);
    }

    #[test]
    fn a_small_nucleus_keeps_only_the_likeliest_token() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            assert_eq!(pick(&[0.0, 5.0, 4.0, 1.0], 1.0, 0.5, &mut rng), 1);
        }
    }

    #[test]
    fn sampling_draws_every_token_of_a_flat_distribution() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen = [false; 4];
        for _ in 0..200 {
            seen[pick(&[1.0; 4], 1.0, 1.0, &mut rng) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
