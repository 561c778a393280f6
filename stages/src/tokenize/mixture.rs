//! The data mixture: how much of each source a training run sees (the plan),
//! and a deterministic, resumable reader that serves fixed-length sequences in
//! those proportions.
//!
//! The plan turns the pipeline's `[mixture]` weights (LLaMA's Table 1:
//! commoncrawl 0.67, c4 0.15, ...) and the tokens each source has into
//! proportions and epochs for a token budget, optionally capping how many
//! times any source is repeated.
//!
//! The reader cuts each source's token stream (its shards concatenated) into
//! sequences of `seq_len + 1` tokens, crossing document and shard boundaries.
//! Which source step `k` draws is a pure function of the proportions and the
//! draws so far (earliest-deadline-first over exact integer shares, so after
//! any `k` steps every source has been drawn within one sequence of
//! `k * proportion`); which of its sequences the `d`-th draw reads is a seeded
//! permutation of the source's sequences, fresh each epoch. The whole state is
//! a step and a count of draws per source ([`MixturePosition`]), so a run
//! restores exactly, with any number of workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::shard::TokenShard;

/// Errors planning a mixture or reading from one.
#[derive(Debug, thiserror::Error)]
pub enum MixtureError {
    /// A weight is negative, infinite or NaN.
    #[error("source `{source_name}` has weight {weight}: weights must be finite and not negative")]
    InvalidWeight {
        /// The source.
        source_name: String,
        /// Its weight.
        weight: f64,
    },
    /// No source has both a positive weight and tokens.
    #[error("no source has both a weight in [mixture] and tokens to train on")]
    NoUsableSources,
    /// The budget is zero.
    #[error("the token budget must be positive")]
    InvalidBudget,
    /// `max_epochs` is not a positive finite number.
    #[error("max_epochs must be positive and finite, not {0}")]
    InvalidMaxEpochs(f64),
    /// Even `max_epochs` of every source falls short of the budget.
    #[error(
        "the budget of {budget} tokens needs more than max_epochs={max_epochs} of every source \
         ({tokens} tokens in all): lower the budget or raise max_epochs"
    )]
    BudgetExceedsCap {
        /// The budget.
        budget: u64,
        /// The cap.
        max_epochs: f64,
        /// Tokens of all the planned sources.
        tokens: u64,
    },
    /// The plan names a source the reader was not given.
    #[error("the mixture plan has source `{0}`, but no shards were given for it")]
    MissingSource(String),
    /// A source cannot fill a single sequence.
    #[error("source `{source_name}` has {tokens} tokens, fewer than one sequence of {needed}")]
    TooFewTokens {
        /// The source.
        source_name: String,
        /// Its tokens.
        tokens: u64,
        /// `seq_len + 1`.
        needed: u64,
    },
    /// `seq_len` is zero.
    #[error("seq_len must be positive")]
    InvalidSeqLen,
    /// The worker index is out of range.
    #[error("worker {worker} of {workers}: the worker must be below the number of workers, which must be positive")]
    InvalidWorker {
        /// The worker.
        worker: usize,
        /// Workers in all.
        workers: usize,
    },
    /// A saved position does not belong to this plan, seed or sequence length.
    #[error("the saved mixture position does not fit this reader: {0}")]
    PositionMismatch(String),
    /// A position before the reader's start was asked for.
    #[error("step {step} is before the reader's start (step {start})")]
    StepBeforeStart {
        /// The step asked for.
        step: u64,
        /// The first step the reader can serve.
        start: u64,
    },
}

/// One source's place in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSource {
    /// The source's name.
    pub name: String,
    /// Its weight as given in `[mixture]`.
    pub weight: f64,
    /// Its share of the training tokens, after renormalization and the cap.
    pub proportion: f64,
    /// Tokens the source has.
    pub tokens: u64,
    /// How many times the budget goes through the source.
    pub epochs: f64,
    /// Whether `max_epochs` fixed its proportion.
    pub capped: bool,
}

/// The mixture of a training run: per source, its proportion of the budget and its epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixturePlan {
    /// Training tokens the plan is for.
    pub budget_tokens: u64,
    /// The cap on any source's epochs, if any.
    pub max_epochs: Option<f64>,
    /// The planned sources, by name.
    pub sources: Vec<PlannedSource>,
    /// Sources left out and why.
    pub warnings: Vec<String>,
}

impl MixturePlan {
    /// Plans `budget_tokens` (default: every planned source's tokens) over `weights` and `tokens` per source.
    pub fn new(
        weights: &BTreeMap<String, f64>,
        tokens: &BTreeMap<String, u64>,
        budget_tokens: Option<u64>,
        max_epochs: Option<f64>,
    ) -> Result<Self, MixtureError> {
        if let Some(cap) = max_epochs
            && !(cap.is_finite() && cap > 0.0)
        {
            return Err(MixtureError::InvalidMaxEpochs(cap));
        }
        let mut warnings = Vec::new();
        let mut kept: Vec<(String, f64, u64)> = Vec::new();
        for (name, &weight) in weights {
            if !weight.is_finite() || weight < 0.0 {
                return Err(MixtureError::InvalidWeight {
                    source_name: name.clone(),
                    weight,
                });
            }
            let available = tokens.get(name).copied().unwrap_or(0);
            if weight == 0.0 {
                if available > 0 {
                    warnings.push(format!("source `{name}` has weight 0: left out"));
                }
            } else if available == 0 {
                warnings.push(format!(
                    "source `{name}` has no tokens: left out, the other proportions renormalized"
                ));
            } else {
                kept.push((name.clone(), weight, available));
            }
        }
        for (name, &available) in tokens {
            if available > 0 && !weights.contains_key(name) {
                warnings.push(format!(
                    "source `{name}` has {available} tokens but no weight in [mixture]: left out"
                ));
            }
        }
        if kept.is_empty() {
            return Err(MixtureError::NoUsableSources);
        }
        let total_tokens: u64 = kept.iter().map(|(_, _, t)| t).sum();
        let budget = budget_tokens.unwrap_or(total_tokens);
        if budget == 0 {
            return Err(MixtureError::InvalidBudget);
        }
        let budget_f = budget as f64;
        let capped = match max_epochs {
            None => vec![false; kept.len()],
            Some(cap) => {
                if budget_f > cap * total_tokens as f64 {
                    return Err(MixtureError::BudgetExceedsCap {
                        budget,
                        max_epochs: cap,
                        tokens: total_tokens,
                    });
                }
                cap_sources(&kept, budget_f, cap)
            }
        };
        let proportions = proportions(&kept, &capped, budget_f, max_epochs.unwrap_or(f64::INFINITY));
        let sources = kept
            .into_iter()
            .zip(proportions)
            .zip(capped)
            .map(|(((name, weight, tokens), proportion), capped)| PlannedSource {
                name,
                weight,
                proportion,
                tokens,
                epochs: proportion * budget_f / tokens as f64,
                capped,
            })
            .collect();
        Ok(MixturePlan {
            budget_tokens: budget,
            max_epochs,
            sources,
            warnings,
        })
    }

    /// The planned source called `name`.
    pub fn source(&self, name: &str) -> Option<&PlannedSource> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// Proportions given which sources are capped: capped ones get exactly `cap` epochs, the rest share
/// what is left by weight.
fn proportions(kept: &[(String, f64, u64)], capped: &[bool], budget: f64, cap: f64) -> Vec<f64> {
    let fixed: f64 = kept
        .iter()
        .zip(capped)
        .filter(|(_, c)| **c)
        .map(|((_, _, t), _)| cap * *t as f64 / budget)
        .sum();
    let free_weight: f64 = kept
        .iter()
        .zip(capped)
        .filter(|(_, c)| !**c)
        .map(|((_, w, _), _)| w)
        .sum();
    let remaining = (1.0 - fixed).max(0.0);
    kept.iter()
        .zip(capped)
        .map(|((_, w, t), c)| {
            if *c {
                cap * *t as f64 / budget
            } else {
                remaining * w / free_weight
            }
        })
        .collect()
}

/// Which sources `max_epochs` caps. Capping one moves its excess to the others, which may push one of
/// them over in turn, hence the loop; it ends because each round caps at least one more source, and it
/// cannot cap them all because the caller checked that the budget fits under the cap overall.
fn cap_sources(kept: &[(String, f64, u64)], budget: f64, cap: f64) -> Vec<bool> {
    let mut capped = vec![false; kept.len()];
    loop {
        let props = proportions(kept, &capped, budget, cap);
        let mut changed = false;
        for (i, ((_, _, t), p)) in kept.iter().zip(&props).enumerate() {
            // The relative slack keeps a source sitting exactly at the cap from being "capped" by rounding.
            if !capped[i] && p * budget / *t as f64 > cap * (1.0 + 1e-12) {
                capped[i] = true;
                changed = true;
            }
        }
        if !changed || capped.iter().all(|c| *c) {
            return capped;
        }
    }
}

/// Integer shares are proportions scaled by this: fine enough that rounding moves a share by less
/// than one sequence in four billion, coarse enough that step × share fits easily in `u128`.
const SHARE_SCALE: f64 = (1u64 << 32) as f64;

/// The order sources are drawn in: earliest-deadline-first over exact integer shares.
///
/// With `p_s = share_s / total`, the `j`-th draw of `s` must land by step `ceil(j / p_s)` for the
/// deficit `k·p_s − drawn_s(k)` to stay below 1, and may not land before step `(j − 1) / p_s` for it
/// to stay above −1. Tijdeman's chairman-assignment theorem says a sequence meeting every such window
/// exists, and for unit jobs with release times and deadlines EDF meets every deadline whenever any
/// schedule does, so `|drawn_s(k) − k·p_s| < 1` for every source at every step, exactly for the integer
/// shares (the plan's proportions rounded to 2^-32, so against those within 1 + k·2^-32).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Schedule {
    shares: Vec<u64>,
    total: u128,
    step: u64,
    drawn: Vec<u64>,
}

impl Schedule {
    fn new(plan: &MixturePlan) -> Self {
        // Every planned source has a positive proportion; at least 1 keeps a tiny one drawable.
        let shares: Vec<u64> = plan
            .sources
            .iter()
            .map(|s| ((s.proportion * SHARE_SCALE).round() as u64).max(1))
            .collect();
        let total = shares.iter().map(|&s| s as u128).sum();
        Schedule {
            drawn: vec![0; shares.len()],
            shares,
            total,
            step: 0,
        }
    }

    /// The schedule at `position`, which must belong to `plan`.
    fn at(plan: &MixturePlan, position: &MixturePosition) -> Result<Self, MixtureError> {
        let mut schedule = Schedule::new(plan);
        let planned: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
        let saved: Vec<&str> = position.drawn.keys().map(String::as_str).collect();
        if planned != saved {
            return Err(MixtureError::PositionMismatch(format!(
                "it has sources {saved:?}, the plan {planned:?}"
            )));
        }
        // Positions come from JSON a person may edit: the counts must add up to the step.
        let sum = position.drawn.values().try_fold(0u64, |a, &d| a.checked_add(d));
        if sum != Some(position.step) {
            return Err(MixtureError::PositionMismatch(format!(
                "its draws per source do not add up to its step {}",
                position.step
            )));
        }
        schedule.drawn = position.drawn.values().copied().collect();
        schedule.step = position.step;
        Ok(schedule)
    }

    /// Draws the next step's source; returns it and how many times it was drawn before.
    fn draw(&mut self) -> (usize, u64) {
        let k = self.step as u128 + 1;
        let mut best: Option<usize> = None;
        for (s, (&share, &drawn)) in self.shares.iter().zip(&self.drawn).enumerate() {
            // Released: drawing s now keeps its deficit above −1.
            if k * share as u128 <= drawn as u128 * self.total {
                continue;
            }
            // Deadline (drawn + 1) / share, compared exactly by cross-multiplying; ties go to the lower index.
            let earlier = match best {
                None => true,
                Some(b) => {
                    let ours = (drawn as u128 + 1) * (self.shares[b] as u128);
                    let theirs = (self.drawn[b] as u128 + 1) * (share as u128);
                    ours < theirs
                }
            };
            if earlier {
                best = Some(s);
            }
        }
        // Some source is always released: the shares sum to `total`, so Σ k·share = k·total exceeds
        // Σ drawn·total = (k − 1)·total, and some term must too.
        let s = best.expect("some source is always released (see comment)");
        let d = self.drawn[s];
        self.drawn[s] += 1;
        self.step += 1;
        (s, d)
    }

    fn advance(&mut self, steps: u64) {
        for _ in 0..steps {
            self.draw();
        }
    }

    fn position(&self, plan: &MixturePlan, seed: u64, seq_len: u64) -> MixturePosition {
        MixturePosition {
            seed,
            seq_len,
            step: self.step,
            drawn: plan
                .sources
                .iter()
                .map(|s| s.name.clone())
                .zip(self.drawn.iter().copied())
                .collect(),
        }
    }
}

/// Where a mixture stands: everything needed to continue exactly (saved with a checkpoint, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixturePosition {
    /// The seed of the permutations.
    pub seed: u64,
    /// Tokens per sequence, minus the one shifted target.
    pub seq_len: u64,
    /// Global steps served so far; the next one is this.
    pub step: u64,
    /// Draws per planned source so far.
    pub drawn: BTreeMap<String, u64>,
}

impl MixturePosition {
    /// The position `steps` global steps after this one under `plan`, computed without reading tokens.
    pub fn advanced(&self, plan: &MixturePlan, steps: u64) -> Result<Self, MixtureError> {
        let mut schedule = Schedule::at(plan, self)?;
        schedule.advance(steps);
        Ok(schedule.position(plan, self.seed, self.seq_len))
    }
}

/// One source's training shards, read as one stream in the given order.
#[derive(Debug, Clone)]
pub struct MixtureSource {
    /// The source's name, as in the plan.
    pub name: String,
    /// Its training-split shards.
    pub shards: Vec<Arc<TokenShard>>,
}

/// One training sequence: `seq_len + 1` tokens of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// The global step that drew it.
    pub step: u64,
    /// The source it comes from.
    pub source: String,
    /// Its index among the source's sequences.
    pub index: u64,
    /// Which pass over the source it belongs to (0 for the first).
    pub epoch: u64,
    /// The tokens.
    pub tokens: Vec<u32>,
}

/// A source's stream as the reader sees it.
#[derive(Debug)]
struct SourceStream {
    name: String,
    name_hash: u64,
    shards: Vec<Arc<TokenShard>>,
    /// `starts[i]`: stream offset of shard `i`'s first token.
    starts: Vec<u64>,
    sequences: u64,
}

impl SourceStream {
    /// Appends stream tokens `[start, end)` to `out`, across shards (the stream holds them: checked at open).
    fn read(&self, mut start: u64, end: u64, out: &mut Vec<u32>) {
        // The last shard whose start is at or before `start`: empty shards share a start with their
        // successor, so this skips them.
        let mut i = self.starts.partition_point(|&s| s <= start) - 1;
        while start < end {
            let shard = &self.shards[i];
            let shard_end = self.starts[i] + shard.tokens();
            let stop = end.min(shard_end);
            if stop > start {
                shard.read_into(start - self.starts[i], stop - self.starts[i], out);
                start = stop;
            }
            i += 1;
        }
    }
}

/// Serves a mixture's sequences in a deterministic, seeded order that honours the plan's proportions;
/// one of `workers` readers serves global steps `start, start + workers, ...` offset by `worker`.
#[derive(Debug)]
pub struct MixtureReader {
    plan: MixturePlan,
    sources: Vec<SourceStream>,
    seq_len: u64,
    seed: u64,
    worker: u64,
    workers: u64,
    start: Schedule,
    schedule: Schedule,
    started: bool,
}

impl MixtureReader {
    /// A reader of `plan` over `sources`, from `start` (default: the beginning), as worker `worker` of `workers`.
    pub fn new(
        plan: &MixturePlan,
        sources: Vec<MixtureSource>,
        seq_len: usize,
        seed: u64,
        worker: usize,
        workers: usize,
        start: Option<MixturePosition>,
    ) -> Result<Self, MixtureError> {
        if seq_len == 0 {
            return Err(MixtureError::InvalidSeqLen);
        }
        if workers == 0 || worker >= workers {
            return Err(MixtureError::InvalidWorker { worker, workers });
        }
        let seq_len = seq_len as u64;
        let needed = seq_len + 1;
        let mut by_name: BTreeMap<String, Vec<Arc<TokenShard>>> =
            sources.into_iter().map(|s| (s.name, s.shards)).collect();
        let mut streams = Vec::with_capacity(plan.sources.len());
        for planned in &plan.sources {
            let shards = by_name
                .remove(&planned.name)
                .ok_or_else(|| MixtureError::MissingSource(planned.name.clone()))?;
            let mut starts = Vec::with_capacity(shards.len() + 1);
            let mut total = 0u64;
            for shard in &shards {
                starts.push(total);
                total += shard.tokens();
            }
            starts.push(total);
            let sequences = total / needed;
            if sequences == 0 {
                return Err(MixtureError::TooFewTokens {
                    source_name: planned.name.clone(),
                    tokens: total,
                    needed,
                });
            }
            streams.push(SourceStream {
                name_hash: xxh3_64_with_seed(planned.name.as_bytes(), 0),
                name: planned.name.clone(),
                shards,
                starts,
                sequences,
            });
        }
        let schedule = match &start {
            None => Schedule::new(plan),
            Some(position) => {
                if position.seed != seed || position.seq_len != seq_len {
                    return Err(MixtureError::PositionMismatch(format!(
                        "it was saved with seed {} and seq_len {}, this reader has seed {seed} and seq_len {seq_len}",
                        position.seed, position.seq_len
                    )));
                }
                Schedule::at(plan, position)?
            }
        };
        Ok(MixtureReader {
            plan: plan.clone(),
            sources: streams,
            seq_len,
            seed,
            worker: worker as u64,
            workers: workers as u64,
            start: schedule.clone(),
            schedule,
            started: false,
        })
    }

    /// The position after the last sequence this reader yielded (its start before any).
    pub fn saved_position(&self) -> MixturePosition {
        self.schedule.position(&self.plan, self.seed, self.seq_len)
    }

    /// The position after global step `step`, whichever worker serves it (no tokens are read).
    pub fn position_after(&self, step: u64) -> Result<MixturePosition, MixtureError> {
        let target = step.checked_add(1).ok_or(MixtureError::StepBeforeStart {
            step,
            start: self.start.step,
        })?;
        if target < self.start.step {
            return Err(MixtureError::StepBeforeStart {
                step,
                start: self.start.step,
            });
        }
        // Start from the nearest state known to be at or before the target: usually our own, a few steps back.
        let base = if self.schedule.step <= target {
            &self.schedule
        } else {
            &self.start
        };
        let mut schedule = base.clone();
        schedule.advance(target - schedule.step);
        Ok(schedule.position(&self.plan, self.seed, self.seq_len))
    }

    /// How many sequences each planned source is cut into.
    pub fn sequences_per_source(&self) -> BTreeMap<String, u64> {
        self.sources.iter().map(|s| (s.name.clone(), s.sequences)).collect()
    }
}

impl Iterator for MixtureReader {
    type Item = Sequence;

    /// The next sequence of this worker; never `None`, since sources repeat.
    fn next(&mut self) -> Option<Sequence> {
        // Other workers' steps are skipped lazily, before our next draw, so `saved_position()` stays right
        // after our last yielded step.
        let skip = if self.started { self.workers - 1 } else { self.worker };
        self.started = true;
        self.schedule.advance(skip);
        let step = self.schedule.step;
        let (s, d) = self.schedule.draw();
        let source = &self.sources[s];
        let epoch = d / source.sequences;
        let key = xxh3_64_with_seed(
            &[source.name_hash.to_le_bytes(), epoch.to_le_bytes()].concat(),
            self.seed,
        );
        let index = permute(source.sequences, key, d % source.sequences);
        let len = self.seq_len + 1;
        let mut tokens = Vec::with_capacity(len as usize);
        source.read(index * len, (index + 1) * len, &mut tokens);
        Some(Sequence {
            step,
            source: source.name.clone(),
            index,
            epoch,
            tokens,
        })
    }
}

/// Position of `i` in a seeded pseudo-random order of `[0, n)`, in O(1) memory: a 4-round Feistel
/// network over the next power of two (xxh3 as round function), cycle-walking until the result is in
/// range. Each round is a bijection, so the whole is one; the power of two is below `2n`, so fewer than
/// two walks are expected.
fn permute(n: u64, key: u64, i: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    // The split is unbalanced when `bits` is odd: each round maps (hi, lo) to (lo, hi ^ F(lo)) with the
    // fields swapping places, which stays a bijection whatever their widths.
    let hi_bits = bits.div_ceil(2);
    let lo_bits = bits - hi_bits;
    let hi_mask = (1u64 << hi_bits) - 1;
    let lo_mask = (1u64 << lo_bits) - 1;
    let mut x = i;
    loop {
        for round in 0..4u64 {
            let hi = x >> lo_bits;
            let lo = x & lo_mask;
            let f = xxh3_64_with_seed(&[lo.to_le_bytes(), round.to_le_bytes()].concat(), key) & hi_mask;
            x = (lo << hi_bits) | (hi ^ f);
        }
        if x < n {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::tokenize::shard::{TokenShardWriter, TokenWidth};

    fn map<T: Copy>(pairs: &[(&str, T)]) -> BTreeMap<String, T> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const PAPER: &[(&str, f64, f64)] = &[
        ("commoncrawl", 0.67, 1.10),
        ("c4", 0.15, 1.06),
        ("github", 0.045, 0.64),
        ("wikipedia", 0.045, 2.45),
        ("books", 0.045, 2.23),
        ("arxiv", 0.025, 1.06),
        ("stackexchange", 0.02, 1.03),
    ];

    #[test]
    fn the_papers_table_gives_back_the_papers_epochs() {
        let budget = 1.4e12;
        let weights: BTreeMap<_, _> = PAPER.iter().map(|(n, p, _)| (n.to_string(), *p)).collect();
        let tokens: BTreeMap<_, _> = PAPER
            .iter()
            .map(|(n, p, e)| (n.to_string(), (p * budget / e).round() as u64))
            .collect();
        let plan = MixturePlan::new(&weights, &tokens, Some(budget as u64), None).unwrap();
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        for (name, p, e) in PAPER {
            let s = plan.source(name).unwrap();
            assert!((s.proportion - p).abs() < 1e-12, "{name}: {}", s.proportion);
            assert_eq!(format!("{:.2}", s.epochs), format!("{e:.2}"), "{name}");
        }
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains("\"epochs\""), "{json}");
    }

    #[test]
    fn a_source_without_tokens_is_left_out_with_a_warning_and_the_rest_renormalized() {
        let weights = map(&[("a", 0.5), ("b", 0.3), ("c", 0.2)]);
        let tokens = map(&[("a", 1000u64), ("b", 1000), ("d", 50)]);
        let plan = MixturePlan::new(&weights, &tokens, None, None).unwrap();
        let names: Vec<_> = plan.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!((plan.source("a").unwrap().proportion - 0.625).abs() < 1e-12);
        assert!((plan.source("b").unwrap().proportion - 0.375).abs() < 1e-12);
        assert_eq!(plan.budget_tokens, 2000);
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("`c` has no tokens") && plan.warnings[0].contains("renormalized"));
        assert!(plan.warnings[1].contains("`d`") && plan.warnings[1].contains("no weight"));
        let none = MixturePlan::new(&map(&[("c", 1.0)]), &tokens, None, None).unwrap_err();
        assert!(matches!(none, MixtureError::NoUsableSources), "{none}");
        let bad = MixturePlan::new(&map(&[("a", -1.0)]), &tokens, None, None).unwrap_err();
        assert!(bad.to_string().contains("`a` has weight -1"), "{bad}");
    }

    #[test]
    fn the_cap_moves_the_excess_to_the_others_until_none_is_over() {
        let weights = map(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
        let tokens = map(&[("a", 100u64), ("b", 300), ("c", 10_000)]);
        let plan = MixturePlan::new(&weights, &tokens, Some(1500), Some(2.0)).unwrap();
        let (a, b, c) = (
            plan.source("a").unwrap(),
            plan.source("b").unwrap(),
            plan.source("c").unwrap(),
        );
        // Capping `a` alone would push `b` to 2.17 epochs, so `b` is capped in the second round.
        assert!(a.capped && b.capped && !c.capped);
        assert!((a.epochs - 2.0).abs() < 1e-9 && (b.epochs - 2.0).abs() < 1e-9);
        assert!((a.proportion - 200.0 / 1500.0).abs() < 1e-12);
        assert!((b.proportion - 0.4).abs() < 1e-12);
        let sum: f64 = plan.sources.iter().map(|s| s.proportion).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert!((c.epochs - 700.0 / 10_000.0).abs() < 1e-9);

        let err = MixturePlan::new(&weights, &tokens, Some(100_000), Some(2.0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("budget of 100000 tokens needs more than max_epochs=2 of every source"),
            "{err}"
        );
    }

    #[test]
    fn every_source_stays_within_one_draw_of_its_share_at_every_step() {
        let mut cases: Vec<Vec<f64>> = vec![
            vec![0.67, 0.15, 0.045, 0.045, 0.045, 0.025, 0.02],
            vec![0.5, 0.5],
            vec![0.999, 0.0005, 0.0005],
            vec![0.1; 10],
            vec![
                0.3, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.5, 0.09,
            ],
        ];
        // And arbitrary weights, 2 to 20 sources.
        for case in 0..20u64 {
            let n = 2 + case % 19;
            cases.push(
                (0..n)
                    .map(|i| 1.0 + (xxh3_64_with_seed(&i.to_le_bytes(), case) % 1000) as f64)
                    .collect(),
            );
        }
        for weights in &cases {
            let w: BTreeMap<_, _> = weights
                .iter()
                .enumerate()
                .map(|(i, &p)| (format!("s{i:02}"), p))
                .collect();
            let t: BTreeMap<_, _> = w.keys().map(|k| (k.clone(), 1000u64)).collect();
            let plan = MixturePlan::new(&w, &t, None, None).unwrap();
            let mut schedule = Schedule::new(&plan);
            for k in 1..=50_000u64 {
                schedule.draw();
                for (s, planned) in plan.sources.iter().enumerate() {
                    // Exactly, against the integer shares the schedule follows...
                    let exact =
                        (k as u128 * schedule.shares[s] as u128).abs_diff(schedule.drawn[s] as u128 * schedule.total);
                    assert!(exact < schedule.total, "{weights:?} step {k} source {s}");
                    // ...and, up to their rounding to 2^-32, against the plan's proportions.
                    let deficit = k as f64 * planned.proportion - schedule.drawn[s] as f64;
                    assert!(
                        deficit.abs() < 1.0 + 1e-6,
                        "{weights:?} step {k} source {s}: deficit {deficit}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_permutation_is_a_bijection() {
        for n in [1u64, 2, 7, 1000, 4097] {
            for key in [0u64, 1, 0xdead_beef] {
                let seen: BTreeSet<u64> = (0..n).map(|i| permute(n, key, i)).collect();
                assert_eq!(seen.len() as u64, n, "n={n}");
                assert!(seen.iter().all(|&x| x < n), "n={n}");
            }
        }
        let a: Vec<u64> = (0..1000).map(|i| permute(1000, 1, i)).collect();
        let b: Vec<u64> = (0..1000).map(|i| permute(1000, 2, i)).collect();
        assert_ne!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
    }

    fn local(dir: &Path) -> llamaflow_pipeline::store::Location {
        llamaflow_pipeline::store::StoreRegistry::default()
            .resolve(dir.to_str().unwrap(), dir)
            .unwrap()
    }

    /// Writes `tokens` tokens for `name` as documents of varying length over three shards (one empty);
    /// returns the source and its stream as the reader should see it.
    async fn source(dir: &Path, name: &str, tokens: usize, tag: u32) -> (MixtureSource, Vec<u32>) {
        let eos = 2;
        let loc = local(dir);
        let mut stream = Vec::new();
        let mut shards = Vec::new();
        let mut next = 0u32;
        for (part, share) in [(0, tokens / 3), (1, 0), (2, tokens - tokens / 3)].into_iter() {
            let base = format!("part-{part}-{name}-train");
            let mut w = TokenShardWriter::new(&loc, &base, TokenWidth::U32, eos);
            let mut written = 0;
            while written < share {
                // Documents of 1 to 13 tokens, `</s>` included, so sequences cross documents and shards.
                let len = (1 + (next as usize * 7) % 13).min(share - written);
                let ids: Vec<u32> = (0..len - 1).map(|i| tag * 1_000_000 + next + i as u32).collect();
                next += len as u32;
                w.push(&ids).await.unwrap();
                stream.extend_from_slice(&ids);
                stream.push(eos);
                written += len;
            }
            w.finish().await.unwrap();
            shards.push(Arc::new(TokenShard::open(&dir.join(&base)).unwrap()));
        }
        assert_eq!(stream.len(), tokens);
        let source = MixtureSource {
            name: name.to_string(),
            shards,
        };
        (source, stream)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        plan: MixturePlan,
        sources: Vec<MixtureSource>,
        streams: BTreeMap<String, Vec<u32>>,
    }

    const SEQ_LEN: usize = 7;

    /// Three sources of very different sizes; `big` is subsampled, `small` repeated about 2.5 times over
    /// 10,000 steps.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        let mut streams = BTreeMap::new();
        let mut tokens = BTreeMap::new();
        for (tag, (name, n)) in [("big", 80_000usize), ("mid", 20_000), ("small", 4_003)]
            .into_iter()
            .enumerate()
        {
            let (s, stream) = source(dir.path(), name, n, tag as u32 + 1).await;
            tokens.insert(name.to_string(), n as u64);
            streams.insert(name.to_string(), stream);
            sources.push(s);
        }
        let weights = map(&[("big", 0.6), ("mid", 0.3), ("small", 0.1)]);
        let plan = MixturePlan::new(&weights, &tokens, Some(80_000), None).unwrap();
        Fixture {
            _dir: dir,
            plan,
            sources,
            streams,
        }
    }

    fn reader(f: &Fixture, seed: u64, worker: usize, workers: usize, start: Option<MixturePosition>) -> MixtureReader {
        MixtureReader::new(&f.plan, f.sources.clone(), SEQ_LEN, seed, worker, workers, start).unwrap()
    }

    #[tokio::test]
    async fn shares_match_the_proportions_and_sequences_are_the_streams_slices() {
        let f = fixture().await;
        let n = 10_000;
        let mut tokens_by_source: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen: BTreeMap<String, BTreeMap<u64, usize>> = BTreeMap::new();
        let mut draws: BTreeMap<String, u64> = BTreeMap::new();
        let r = reader(&f, 7, 0, 1, None);
        let per_source = r.sequences_per_source();
        for (k, seq) in r.take(n).enumerate() {
            assert_eq!(seq.step, k as u64);
            let len = SEQ_LEN + 1;
            let start = seq.index as usize * len;
            assert_eq!(seq.tokens, f.streams[&seq.source][start..start + len], "step {k}");
            let d = draws.entry(seq.source.clone()).or_default();
            assert_eq!(seq.epoch, *d / per_source[&seq.source]);
            *d += 1;
            *tokens_by_source.entry(seq.source.clone()).or_default() += seq.tokens.len();
            *seen.entry(seq.source).or_default().entry(seq.index).or_default() += 1;
        }
        let total: usize = tokens_by_source.values().sum();
        for planned in &f.plan.sources {
            let share = tokens_by_source[&planned.name] as f64 / total as f64;
            // One sequence of slack at most, far inside the 1-point tolerance.
            assert!(
                (share - planned.proportion).abs() < 1.0 / n as f64 + 1e-9,
                "{}: {share}",
                planned.name
            );
        }
        // `small` (500 sequences) is drawn 1,000 times (give or take one): every sequence twice, once per epoch.
        assert_eq!(per_source["small"], 500);
        assert!(seen["small"].len() == 500 && seen["small"].values().all(|&c| c == 2 || c == 3));
        // `big` (10,000 sequences) is drawn 6,000 times: subsampled without repetition.
        assert!(seen["big"].values().all(|&c| c == 1));
    }

    #[tokio::test]
    async fn a_source_drawn_two_and_a_half_times_sees_every_sequence_at_least_twice() {
        let f = fixture().await;
        let r = reader(&f, 3, 0, 1, None);
        let n_small = r.sequences_per_source()["small"];
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        let mut draws = 0;
        for seq in r.take(20_000) {
            if seq.source == "small" {
                *counts.entry(seq.index).or_default() += 1;
                draws += 1;
                if draws == n_small * 5 / 2 {
                    break;
                }
            }
        }
        assert_eq!(draws, n_small * 5 / 2);
        assert_eq!(counts.len() as u64, n_small);
        assert!(counts.values().all(|&c| (2..=3).contains(&c)));
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_sequences_and_another_seed_another_order() {
        let f = fixture().await;
        let a: Vec<Sequence> = reader(&f, 1, 0, 1, None).take(500).collect();
        let b: Vec<Sequence> = reader(&f, 1, 0, 1, None).take(500).collect();
        let c: Vec<Sequence> = reader(&f, 2, 0, 1, None).take(500).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The seed reorders within sources; which source each step draws depends on the proportions only.
        let sources = |v: &[Sequence]| v.iter().map(|s| s.source.clone()).collect::<Vec<_>>();
        assert_eq!(sources(&a), sources(&c));
    }

    #[tokio::test]
    async fn a_restored_position_continues_the_same_global_sequence_with_any_number_of_workers() {
        let f = fixture().await;
        let mut one = reader(&f, 11, 0, 1, None);
        let all: Vec<Sequence> = one.by_ref().take(1000).collect();
        assert_eq!(one.saved_position().step, 1000);

        let saved = one.position_after(399).unwrap();
        let mut first = reader(&f, 11, 0, 1, None);
        first.by_ref().take(400).for_each(drop);
        assert_eq!(first.saved_position(), saved);
        let json = serde_json::to_string(&saved).unwrap();
        let saved: MixturePosition = serde_json::from_str(&json).unwrap();
        assert_eq!(saved.step, 400);

        // (a) One worker from the saved position.
        let resumed: Vec<Sequence> = reader(&f, 11, 0, 1, Some(saved.clone())).take(600).collect();
        assert_eq!(resumed, all[400..]);

        // (b) Three workers from it, consumed round-robin as a trainer would.
        let mut workers: Vec<MixtureReader> = (0..3).map(|w| reader(&f, 11, w, 3, Some(saved.clone()))).collect();
        let mut interleaved = Vec::new();
        for k in 0..600 {
            let seq = workers[k % 3].next().unwrap();
            // Any worker can say where the global order stands after any worker's step.
            let w = &workers[k % 3];
            assert_eq!(w.saved_position(), w.position_after(seq.step).unwrap());
            assert_eq!(
                workers[(k + 1) % 3].position_after(seq.step).unwrap(),
                w.saved_position()
            );
            interleaved.push(seq);
        }
        assert_eq!(interleaved, all[400..]);
        assert_eq!(saved.advanced(&f.plan, 600).unwrap(), one.saved_position());
        assert!(matches!(
            workers[0].position_after(10),
            Err(MixtureError::StepBeforeStart { step: 10, start: 400 })
        ));
    }

    #[tokio::test]
    async fn readers_refuse_bad_inputs_by_name() {
        let f = fixture().await;
        let mut sources = f.sources.clone();
        sources[2].shards.truncate(1);
        let tiny = MixtureReader::new(&f.plan, sources, 4_000, 0, 0, 1, None).unwrap_err();
        assert!(
            tiny.to_string()
                .contains("source `small` has 1334 tokens, fewer than one sequence of 4001"),
            "{tiny}"
        );
        let missing = MixtureReader::new(&f.plan, f.sources[..2].to_vec(), SEQ_LEN, 0, 0, 1, None).unwrap_err();
        assert!(missing.to_string().contains("`small`"), "{missing}");
        let worker = MixtureReader::new(&f.plan, f.sources.clone(), SEQ_LEN, 0, 3, 3, None).unwrap_err();
        assert!(matches!(worker, MixtureError::InvalidWorker { .. }));
        let mut position = reader(&f, 0, 0, 1, None).saved_position();
        let seeded = MixtureReader::new(&f.plan, f.sources.clone(), SEQ_LEN, 1, 0, 1, Some(position.clone()));
        assert!(matches!(seeded, Err(MixtureError::PositionMismatch(_))));
        position.step = 5;
        let uneven = MixtureReader::new(&f.plan, f.sources.clone(), SEQ_LEN, 0, 0, 1, Some(position)).unwrap_err();
        assert!(uneven.to_string().contains("do not add up"), "{uneven}");
    }
}
