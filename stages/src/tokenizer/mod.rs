//! The `tokenizer` stage: trains LLaMA's kind of tokenizer (see [`train`]) on
//! a sample of the corpus drawn by the pipeline's `[mixture]`, or imports an
//! existing `tokenizer.json`.
//!
//! Inputs are document datasets (`inputs = ["dedup"]`): the stage samples
//! about `sample_bytes` of text, each source's share by its mixture
//! proportion (a source smaller than its share gives all it has), documents
//! chosen by a hash of their id, so the sample is the same on every run and
//! every machine. Or the input is one `.json` file (`inputs =
//! ["llama/tokenizer.json"]`): it is checked (HF `tokenizers` loads it, it has
//! `</s>`) and copied, and no training happens.
//!
//! Outputs: `tokenizer.json` in the stage's dataset folder (what the
//! `tokenize` stage, HF `tokenizers` and `transformers` load), and the
//! vocabulary as the stage's table (`id`, `token`, `kind`: special, byte or
//! piece) for SQL. Counts: documents read, documents sampled (kept), the
//! rest filtered as `not_sampled`.

pub mod train;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::functions::expr_fn::octet_length;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::col;
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use llamaflow_sql::TokenEncoder;
use serde::Deserialize;
use tracing::{info, warn};

use self::train::{TrainSettings, train};
use crate::sampling::sample_point;

/// The file name of the tokenizer in the stage's dataset folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// `[stages.NAME]` parameters of a `tokenizer` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Vocabulary size, special and byte tokens included (LLaMA: 32000).
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Bytes of text to train on.
    #[serde(default = "default_sample_bytes")]
    pub sample_bytes: u64,
    /// Pairs seen fewer times are never merged.
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Characters with their own token at most; rarer ones fall back to bytes.
    #[serde(default = "default_limit_alphabet")]
    pub limit_alphabet: usize,
    /// Changes which documents are sampled.
    #[serde(default)]
    pub seed: u64,
}

fn default_vocab_size() -> usize {
    32_000
}
fn default_sample_bytes() -> u64 {
    256 << 20
}
fn default_min_frequency() -> u64 {
    2
}
fn default_limit_alphabet() -> usize {
    1000
}

/// Builds `tokenizer` stages.
pub struct TokenizerFactory;

impl StageFactory for TokenizerFactory {
    fn type_name(&self) -> &'static str {
        "tokenizer"
    }

    fn summary(&self) -> &'static str {
        "train a 32k LLaMA-style BPE (digits split, byte fallback) on a mixture-weighted sample, or import a tokenizer.json"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: TokenizerConfig = parse_params(&decl.params)?;
        if config.vocab_size <= train::RESERVED_IDS {
            return Err(ParamError {
                key: Some("vocab_size".into()),
                message: format!(
                    "must be more than {}: the special and byte tokens take that many",
                    train::RESERVED_IDS
                ),
            });
        }
        if config.sample_bytes == 0 {
            return Err(ParamError {
                key: Some("sample_bytes".into()),
                message: "must be more than 0".into(),
            });
        }
        Ok(Arc::new(TokenizerStage {
            config,
            mixture: decl.mixture.clone(),
        }))
    }
}

/// A configured `tokenizer` stage.
#[derive(Debug)]
pub struct TokenizerStage {
    config: TokenizerConfig,
    mixture: BTreeMap<String, f64>,
}

/// The vocabulary table's schema.
pub fn vocab_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt32, false),
        Field::new("token", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
    ]))
}

/// Sampling rate per source: its mixture share of the sample over its size.
fn sampling_rates(
    sizes: &BTreeMap<String, u64>,
    mixture: &BTreeMap<String, f64>,
    sample_bytes: u64,
) -> BTreeMap<String, f64> {
    let weight = |s: &str| {
        if mixture.is_empty() {
            1.0
        } else {
            mixture.get(s).copied().unwrap_or(0.0)
        }
    };
    let total: f64 = sizes.keys().map(|s| weight(s)).sum();
    sizes
        .iter()
        .map(|(source, &bytes)| {
            let share = if total > 0.0 { weight(source) / total } else { 0.0 };
            let rate = if bytes == 0 {
                0.0
            } else {
                (share * sample_bytes as f64 / bytes as f64).min(1.0)
            };
            (source.clone(), rate)
        })
        .collect()
}

impl TokenizerStage {
    async fn import(&self, file: &InputFile, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let bytes = crate::read::read_whole(file).await?;
        let encoder = TokenEncoder::from_bytes(&bytes, &file.display).map_err(|e| StageError::Other(e.to_string()))?;
        info!(file = %file.display, vocab = encoder.vocab_size(), "imported the tokenizer");
        self.write(encoder.tokenizer(), bytes, ctx).await?;
        Ok(UnitCounts {
            rows_in: 1,
            kept: 1,
            ..Default::default()
        })
    }

    async fn write(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        json: Bytes,
        ctx: &mut UnitContext,
    ) -> Result<(), StageError> {
        let vocab = tokenizer.get_vocab(true);
        let mut entries: Vec<(&String, &u32)> = vocab.iter().collect();
        entries.sort_by_key(|(_, id)| **id);
        let specials: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special)
            .map(|t| t.content.clone())
            .collect();
        let mut ids = UInt32Builder::new();
        let mut tokens = StringBuilder::new();
        let mut kinds = StringBuilder::new();
        for (token, id) in &entries {
            ids.append_value(**id);
            tokens.append_value(token);
            let is_byte = token.len() == 6 && token.starts_with("<0x") && token.ends_with('>');
            kinds.append_value(if specials.contains(token) {
                "special"
            } else if is_byte {
                "byte"
            } else {
                "piece"
            });
        }
        let batch = RecordBatch::try_new(
            vocab_schema(),
            vec![
                Arc::new(ids.finish()),
                Arc::new(tokens.finish()),
                Arc::new(kinds.finish()),
            ],
        )?;
        ctx.write(&batch).await?;
        ctx.put_file(TOKENIZER_FILE, json, entries.len() as u64).await?;
        Ok(())
    }

    async fn train_on(&self, files: &[InputFile], ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let files: Vec<&InputFile> = files.iter().collect();
        let fields = [
            Field::new("source", DataType::Utf8, true),
            Field::new("id", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
        ];
        let docs = crate::datasets::read_datasets(&files, &ctx.session, &fields, "").await?;
        // Pass 1: bytes per source, to turn the mixture into sampling rates.
        let sizes_frame = docs
            .clone()
            .aggregate(vec![col("source")], vec![sum(octet_length(col("text"))).alias("bytes")])?;
        let mut sizes = BTreeMap::new();
        for batch in sizes_frame.collect().await? {
            let sources = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let bytes = arrow::compute::cast(batch.column(1), &DataType::UInt64)?;
            let (sources, bytes) = (
                sources.as_string::<i32>(),
                bytes.as_primitive::<arrow::datatypes::UInt64Type>(),
            );
            for i in 0..batch.num_rows() {
                let size = if bytes.is_valid(i) { bytes.value(i) } else { 0 };
                sizes.insert(sources.value(i).to_string(), size);
            }
        }
        for source in sizes.keys() {
            if !self.mixture.is_empty() && !self.mixture.contains_key(source) {
                warn!(source = %source, "the source has no [mixture] proportion: left out of the tokenizer's sample");
            }
        }
        let rates = sampling_rates(&sizes, &self.mixture, self.config.sample_bytes);
        info!(?rates, "sampling the corpus for the tokenizer");

        // Pass 2: the sample itself.
        let mut counts = UnitCounts::default();
        let mut sample: Vec<String> = Vec::new();
        let mut sampled_bytes = 0u64;
        let mut stream = docs.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let (sources, ids, texts) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_string::<i32>(),
            );
            for i in 0..batch.num_rows() {
                counts.rows_in += 1;
                let rate = rates.get(sources.value(i)).copied().unwrap_or(0.0);
                if texts.is_valid(i) && sample_point(ids.value(i), self.config.seed) < rate {
                    counts.kept += 1;
                    sampled_bytes += texts.value(i).len() as u64;
                    sample.push(texts.value(i).to_string());
                } else {
                    counts.filter("not_sampled");
                }
            }
            ctx.progress.add_docs(batch.num_rows() as u64);
        }
        if sample.is_empty() {
            return Err(StageError::Other(
                "no document was sampled to train the tokenizer on (no input documents, or no source with a [mixture] proportion)".into(),
            ));
        }
        info!(
            documents = sample.len(),
            bytes = sampled_bytes,
            "training the tokenizer"
        );
        let settings = TrainSettings {
            vocab_size: self.config.vocab_size,
            min_frequency: self.config.min_frequency,
            limit_alphabet: self.config.limit_alphabet,
            max_piece_chars: 16,
        };
        let tokenizer = tokio::task::spawn_blocking(move || train(&sample, &settings))
            .await
            .map_err(|e| StageError::Other(format!("the training thread failed: {e}")))?
            .map_err(|e| StageError::Other(e.to_string()))?;
        let size = tokenizer.get_vocab_size(true);
        if size < self.config.vocab_size {
            warn!(
                vocab = size,
                wanted = self.config.vocab_size,
                "the sample was too small to learn the full vocabulary (raise sample_bytes or lower min_frequency)"
            );
        }
        let json = tokenizer
            .to_string(true)
            .map_err(|e| StageError::Other(format!("cannot serialize the tokenizer: {e}")))?;
        self.write(&tokenizer, Bytes::from(json), ctx).await?;
        Ok(counts)
    }
}

#[async_trait]
impl Stage for TokenizerStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        vocab_schema()
    }

    fn fingerprint_extra(&self) -> String {
        format!("{:?}", self.mixture)
    }

    /// One unit over every input: the sample is drawn across all of them.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        WorkUnit::all_in_one("tokenizer", inputs)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let (json, parquet): (Vec<&InputFile>, Vec<&InputFile>) =
            unit.files.iter().partition(|f| f.relative.ends_with(".json"));
        match (json.as_slice(), parquet.is_empty()) {
            ([file], true) => self.import(file, ctx).await,
            ([], false) => {
                let parquet: Vec<InputFile> = parquet.into_iter().cloned().collect();
                self.train_on(&parquet, ctx).await
            }
            _ => Err(StageError::Other(
                "inputs must be document datasets (to train) or one tokenizer .json file (to import), not both".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_rates_follow_the_mixture_and_cap_at_everything() {
        let sizes = BTreeMap::from([
            ("c4".to_string(), 1000u64),
            ("wikipedia".to_string(), 100),
            ("x".to_string(), 50),
        ]);
        let mixture = BTreeMap::from([("c4".to_string(), 0.75), ("wikipedia".to_string(), 0.25)]);
        let rates = sampling_rates(&sizes, &mixture, 400);
        assert!((rates["c4"] - 0.3).abs() < 1e-9);
        assert_eq!(rates["wikipedia"], 1.0, "a small source gives all it has");
        assert_eq!(rates["x"], 0.0, "a source without a proportion is left out");
        let even = sampling_rates(&sizes, &BTreeMap::new(), 150);
        assert!((even["c4"] - 0.05).abs() < 1e-9);
    }
}
