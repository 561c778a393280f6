//! The `quality_lm` stage: CCNet's quality language model. It trains an
//! n-gram LM per language (see [`NgramLm`]) on the `wikipedia` output, then
//! scores a deterministic sample of `commoncrawl` documents and takes the
//! perplexities at the 30th and 60th percentiles as the cut-offs between the
//! head, middle and tail buckets (CCNet shipped such cut-offs per language).
//!
//! `inputs = ["wikipedia", "commoncrawl"]`: the dataset named by `train_on`
//! trains, every other one calibrates. Outputs, in the stage's dataset folder:
//! `lm.<language>.bin` (the models), `cutoffs.json` (per language:
//! `head_max`, `middle_max`, `documents`), and the table (one row per
//! language) for SQL. They are versioned by the training text: new
//! CommonCrawl input (an incremental refresh) reuses them, as CCNet's shipped
//! cut-offs were reused, and `cc_quality` re-scores only new pages; a new
//! Wikipedia retrains, and `cc_quality` then re-scores everything.
//!
//! Counts: every document read; kept are those trained on or in the
//! calibration sample; filtered `other_language` and `not_sampled`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array};
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
use llamaflow_sql::quality::ngram_lm::Scratch;
use llamaflow_sql::quality::{NgramCounter, NgramLm};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::sampling::{BottomK, sample_point};

/// The file of cut-offs in the stage's dataset folder.
pub const CUTOFFS_FILE: &str = "cutoffs.json";

/// The model file of `language` in the stage's dataset folder.
pub fn model_file(language: &str) -> String {
    format!("lm.{language}.bin")
}

/// `[stages.NAME]` parameters of a `quality_lm` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityLmConfig {
    /// One model per language (codes as the `commoncrawl` stage's `language` column).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// The n of the n-gram model (CCNet: 5).
    #[serde(default = "default_order")]
    pub order: usize,
    /// Bytes of training text per language at most; more is sampled down (by id) to this.
    #[serde(default = "default_train_bytes")]
    pub train_bytes: u64,
    /// Documents per language in the calibration sample.
    #[serde(default = "default_calibration_documents")]
    pub calibration_documents: usize,
    /// The percentile that ends the head bucket (CCNet: 30).
    #[serde(default = "default_head_percentile")]
    pub head_percentile: f64,
    /// The percentile that ends the middle bucket (CCNet: 60).
    #[serde(default = "default_middle_percentile")]
    pub middle_percentile: f64,
    /// The input dataset to train on; the others calibrate.
    #[serde(default = "default_train_on")]
    pub train_on: String,
    /// The training dataset's language column (`wikipedia`: `lang`).
    #[serde(default = "default_train_language_column")]
    pub train_language_column: String,
    /// The calibration datasets' language column (`commoncrawl`: `language`).
    #[serde(default = "default_language_column")]
    pub language_column: String,
    /// Changes which documents are sampled.
    #[serde(default)]
    pub seed: u64,
}

fn default_languages() -> Vec<String> {
    vec!["en".into()]
}
fn default_order() -> usize {
    5
}
fn default_train_bytes() -> u64 {
    64 << 20
}
fn default_calibration_documents() -> usize {
    10_000
}
fn default_head_percentile() -> f64 {
    30.0
}
fn default_middle_percentile() -> f64 {
    60.0
}
fn default_train_on() -> String {
    "wikipedia".into()
}
fn default_train_language_column() -> String {
    "lang".into()
}
fn default_language_column() -> String {
    "language".into()
}

/// One language's cut-offs, as `cutoffs.json` holds them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cutoffs {
    /// The highest perplexity in the head bucket.
    pub head_max: f64,
    /// The highest perplexity in the middle bucket (above: tail).
    pub middle_max: f64,
    /// Calibration documents the cut-offs come from.
    pub documents: u64,
}

impl Cutoffs {
    /// The bucket of a perplexity: `head`, `middle` or `tail`.
    pub fn bucket(&self, perplexity: f64) -> &'static str {
        if perplexity <= self.head_max {
            "head"
        } else if perplexity <= self.middle_max {
            "middle"
        } else {
            "tail"
        }
    }

    /// The cut-offs at percentiles `head` and `middle` of `perplexities`.
    pub fn from_sample(mut perplexities: Vec<f64>, head: f64, middle: f64) -> Option<Self> {
        if perplexities.is_empty() {
            return None;
        }
        perplexities.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least p% of the sample at or below it.
        let rank = |p: f64| {
            let n = perplexities.len();
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            perplexities[r.clamp(1, n) - 1]
        };
        Some(Self {
            head_max: rank(head),
            middle_max: rank(middle),
            documents: perplexities.len() as u64,
        })
    }
}

/// Builds `quality_lm` stages.
pub struct QualityLmFactory;

impl StageFactory for QualityLmFactory {
    fn type_name(&self) -> &'static str {
        "quality_lm"
    }

    fn summary(&self) -> &'static str {
        "CCNet's quality LM: an n-gram model per language trained on Wikipedia, with perplexity cut-offs (30th/60th percentiles) from a sample of CommonCrawl"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: QualityLmConfig = parse_params(&decl.params)?;
        let bad = |key: &str, message: String| ParamError {
            key: Some(key.into()),
            message,
        };
        if !(2..=llamaflow_sql::quality::ngram_lm::MAX_ORDER).contains(&config.order) {
            return Err(bad(
                "order",
                format!("must be 2 to {}", llamaflow_sql::quality::ngram_lm::MAX_ORDER),
            ));
        }
        if config.languages.is_empty() {
            return Err(bad("languages", "must name at least one language".into()));
        }
        if let Some(l) = config
            .languages
            .iter()
            .find(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(bad("languages", format!("`{l}` is not a language code")));
        }
        if !(0.0 < config.head_percentile
            && config.head_percentile <= config.middle_percentile
            && config.middle_percentile <= 100.0)
        {
            return Err(bad(
                "head_percentile",
                "need 0 < head_percentile <= middle_percentile <= 100".into(),
            ));
        }
        if config.calibration_documents == 0 {
            return Err(bad("calibration_documents", "must be more than 0".into()));
        }
        Ok(Arc::new(QualityLmStage { config }))
    }
}

/// A configured `quality_lm` stage.
#[derive(Debug)]
pub struct QualityLmStage {
    config: QualityLmConfig,
}

/// The stage's table: one row per language.
pub fn models_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("language", DataType::Utf8, false),
        Field::new("model_file", DataType::Utf8, false),
        Field::new("order", DataType::UInt64, false),
        Field::new("training_documents", DataType::UInt64, false),
        Field::new("training_words", DataType::UInt64, false),
        Field::new("vocabulary", DataType::UInt64, false),
        Field::new("ngrams", DataType::UInt64, false),
        Field::new("calibration_documents", DataType::UInt64, false),
        Field::new("head_max_perplexity", DataType::Float64, false),
        Field::new("middle_max_perplexity", DataType::Float64, false),
    ]))
}

/// Streams `(id, text, language)` of `files` in batches.
async fn documents(
    files: &[&InputFile],
    session: &datafusion::prelude::SessionContext,
    language_column: &str,
) -> Result<datafusion::physical_plan::SendableRecordBatchStream, StageError> {
    let fields = [
        Field::new("id", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new(language_column, DataType::Utf8, true),
    ];
    let hint = "; set `train_language_column` / `language_column` to the datasets' language column";
    let frame = crate::datasets::read_datasets(files, session, &fields, hint).await?;
    Ok(frame.execute_stream().await?)
}

/// Columns of a `(id, text, language)` batch, as strings.
fn string_columns(batch: &RecordBatch) -> Result<[ArrayRef; 3], StageError> {
    Ok([
        arrow::compute::cast(batch.column(0), &DataType::Utf8)?,
        arrow::compute::cast(batch.column(1), &DataType::Utf8)?,
        arrow::compute::cast(batch.column(2), &DataType::Utf8)?,
    ])
}

/// Runs CPU work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StageError::Other(format!("a worker thread failed: {e}")))
}

impl QualityLmStage {
    /// Bytes of training text per language.
    async fn training_bytes(
        &self,
        files: &[&InputFile],
        session: &datafusion::prelude::SessionContext,
    ) -> Result<HashMap<String, u64>, StageError> {
        let fields = [
            Field::new("text", DataType::Utf8, true),
            Field::new(&self.config.train_language_column, DataType::Utf8, true),
        ];
        let frame = crate::datasets::read_datasets(files, session, &fields, "").await?;
        let frame = frame.aggregate(
            vec![col(&self.config.train_language_column)],
            vec![sum(octet_length(col("text"))).alias("bytes")],
        )?;
        let mut sizes = HashMap::new();
        for batch in frame.collect().await? {
            let languages = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let bytes = arrow::compute::cast(batch.column(1), &DataType::UInt64)?;
            let (languages, bytes) = (
                languages.as_string::<i32>(),
                bytes.as_primitive::<arrow::datatypes::UInt64Type>(),
            );
            for i in 0..batch.num_rows() {
                if languages.is_valid(i) && bytes.is_valid(i) {
                    sizes.insert(languages.value(i).to_string(), bytes.value(i));
                }
            }
        }
        Ok(sizes)
    }

    /// Trains one model per language on `files`.
    async fn train(
        &self,
        files: &[&InputFile],
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<BTreeMap<String, (NgramLm, u64)>, StageError> {
        let session = ctx.session.clone();
        let sizes = self.training_bytes(files, &session).await?;
        let rates: HashMap<String, f64> = self
            .config
            .languages
            .iter()
            .map(|l| {
                let size = sizes.get(l).copied().unwrap_or(0);
                let rate = if size <= self.config.train_bytes {
                    1.0
                } else {
                    self.config.train_bytes as f64 / size as f64
                };
                (l.clone(), rate)
            })
            .collect();
        let mut counters: BTreeMap<String, (NgramCounter, u64)> = self
            .config
            .languages
            .iter()
            .map(|l| (l.clone(), (NgramCounter::new(self.config.order), 0)))
            .collect();
        let mut stream = documents(files, &session, &self.config.train_language_column).await?;
        let input = files.first().map_or("", |f| f.display.as_str()).to_string();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let [ids, texts, languages] = string_columns(&batch)?;
            let (ids, texts, languages) = (
                ids.as_string::<i32>(),
                texts.as_string::<i32>(),
                languages.as_string::<i32>(),
            );
            // Which rows train which language, decided here; the counting runs off the runtime.
            let mut chosen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for i in 0..batch.num_rows() {
                let null = ids.is_null(i) || texts.is_null(i);
                if crate::datasets::count_row(ctx, counts, &input, null).await? {
                    continue;
                }
                let language = if languages.is_valid(i) { languages.value(i) } else { "" };
                let Some(&rate) = rates.get(language) else {
                    counts.filter("other_language");
                    continue;
                };
                if rate < 1.0 && sample_point(ids.value(i), self.config.seed) >= rate {
                    counts.filter("not_sampled");
                    continue;
                }
                counts.kept += 1;
                chosen.entry(language.to_string()).or_default().push(i);
            }
            ctx.progress.add_docs(batch.num_rows() as u64);
            for (language, rows) in chosen {
                let Some((counter, documents)) = counters.remove(&language) else {
                    continue;
                };
                let texts = texts.clone();
                let (counter, documents) = blocking(move || {
                    let mut counter = counter;
                    for &i in &rows {
                        counter.add_text(texts.value(i));
                    }
                    (counter, documents + rows.len() as u64)
                })
                .await?;
                counters.insert(language, (counter, documents));
            }
        }
        let mut models = BTreeMap::new();
        for (language, (counter, documents)) in counters {
            if documents == 0 {
                return Err(StageError::Other(format!(
                    "quality_lm: no `{}` document of language `{language}` to train on (check `languages`, and that the input `{}` is there)",
                    self.config.train_on, self.config.train_on
                )));
            }
            let model = blocking(move || counter.finish()).await?;
            info!(language = %language, documents, ngrams = model.ngrams(), "trained the quality LM");
            models.insert(language, (model, documents));
        }
        Ok(models)
    }

    /// The perplexities of a deterministic sample of `files`, per language.
    async fn calibrate(
        &self,
        files: &[&InputFile],
        models: Arc<BTreeMap<String, NgramLm>>,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<BTreeMap<String, Vec<f64>>, StageError> {
        // The sample's texts are kept, and only the final sample is scored.
        let mut samples: BTreeMap<String, BottomK<String>> = models
            .keys()
            .map(|l| (l.clone(), BottomK::new(self.config.calibration_documents)))
            .collect();
        let session = ctx.session.clone();
        let mut stream = documents(files, &session, &self.config.language_column).await?;
        let input = files.first().map_or("", |f| f.display.as_str()).to_string();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let [ids, texts, languages] = string_columns(&batch)?;
            let (ids, texts, languages) = (
                ids.as_string::<i32>(),
                texts.as_string::<i32>(),
                languages.as_string::<i32>(),
            );
            for i in 0..batch.num_rows() {
                let null = ids.is_null(i) || texts.is_null(i);
                if crate::datasets::count_row(ctx, counts, &input, null).await? {
                    continue;
                }
                let language = if languages.is_valid(i) { languages.value(i) } else { "" };
                let Some(sample) = samples.get_mut(language) else {
                    counts.filter("other_language");
                    continue;
                };
                let key = BottomK::<String>::key(ids.value(i), self.config.seed);
                if sample.admits(key) {
                    sample.offer(key, texts.value(i).to_string());
                }
            }
            ctx.progress.add_docs(batch.num_rows() as u64);
        }
        let mut sampled = 0u64;
        let samples: Vec<(String, Vec<String>)> = samples
            .into_iter()
            .map(|(language, sample)| {
                let texts = sample.into_sorted();
                sampled += texts.len() as u64;
                (language, texts)
            })
            .collect();
        counts.kept += sampled;
        blocking(move || {
            let mut scratch = Scratch::default();
            samples
                .into_iter()
                .map(|(language, texts)| {
                    // A sampled document with no words has no perplexity (but was sampled).
                    let perplexities = texts
                        .iter()
                        .filter_map(|t| models.get(&language).and_then(|m| m.perplexity(t, &mut scratch)))
                        .collect();
                    (language, perplexities)
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl Stage for QualityLmStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        models_schema()
    }

    /// One unit over every input, whose fingerprint follows the training
    /// text only: like CCNet's shipped cut-offs, the calibration is pinned, so
    /// new CommonCrawl files (an incremental refresh) reuse the models and
    /// cut-offs, and pages already kept stay kept. `run --force --stages
    /// quality_lm` recalibrates.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        let parquet: Vec<InputFile> = inputs
            .into_iter()
            .filter(|f| f.relative.ends_with(".parquet"))
            .collect();
        let train_on = crate::datasets::dataset_name(&self.config.train_on);
        let training: Vec<InputFile> = parquet
            .iter()
            .filter(|f| crate::datasets::dataset_of(f) == train_on)
            .cloned()
            .collect();
        let mut units = WorkUnit::all_in_one("quality_lm", parquet);
        if let (Some(unit), [_, ..]) = (units.first_mut(), training.as_slice()) {
            unit.fingerprint = WorkUnit::all_in_one("quality_lm", training)
                .pop()
                .map_or_else(String::new, |u| u.fingerprint);
        }
        units
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let train_on = crate::datasets::dataset_name(&self.config.train_on);
        let (train, calibration): (Vec<&InputFile>, Vec<&InputFile>) = unit
            .files
            .iter()
            .partition(|f| crate::datasets::dataset_of(f) == train_on);
        if train.is_empty() || calibration.is_empty() {
            return Err(StageError::Other(format!(
                "quality_lm needs the `{}` dataset to train on (`train_on`) and another (`commoncrawl`) to set the cut-offs, in `inputs`",
                self.config.train_on
            )));
        }
        let mut counts = UnitCounts::default();
        let trained = self.train(&train, ctx, &mut counts).await?;
        let mut training = BTreeMap::new();
        let mut models = BTreeMap::new();
        for (language, (model, documents)) in trained {
            training.insert(language.clone(), documents);
            models.insert(language, model);
        }
        let models = Arc::new(models);
        let rows_before = counts.rows_in;
        let filtered_before = counts.filtered_total();
        let quarantined_before = counts.quarantined;
        let kept_before = counts.kept;
        let perplexities = self.calibrate(&calibration, models.clone(), ctx, &mut counts).await?;
        // The calibration documents left over are the ones not sampled.
        let calibration_rows = counts.rows_in - rows_before;
        let accounted = (counts.kept - kept_before)
            + (counts.filtered_total() - filtered_before)
            + (counts.quarantined - quarantined_before);
        for _ in accounted..calibration_rows {
            counts.filter("not_sampled");
        }

        let mut cutoffs = BTreeMap::new();
        let mut rows: Vec<(String, Cutoffs)> = Vec::new();
        for (language, sample) in perplexities {
            let Some(c) = Cutoffs::from_sample(sample, self.config.head_percentile, self.config.middle_percentile)
            else {
                return Err(StageError::Other(format!(
                    "quality_lm: no calibration document of language `{language}` (with words) to set the cut-offs from"
                )));
            };
            info!(language = %language, head_max = c.head_max, middle_max = c.middle_max, documents = c.documents, "perplexity cut-offs");
            cutoffs.insert(language.clone(), c);
            rows.push((language, c));
        }
        for (language, model) in models.iter() {
            let bytes = model.to_bytes();
            ctx.put_file(&model_file(language), Bytes::from(bytes), model.ngrams())
                .await?;
        }
        let json = serde_json::to_vec_pretty(&cutoffs).map_err(|e| StageError::Other(e.to_string()))?;
        ctx.put_file(CUTOFFS_FILE, Bytes::from(json), cutoffs.len() as u64)
            .await?;

        let get = |f: &dyn Fn(&str, &NgramLm, &Cutoffs) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from(
                rows.iter().map(|(l, c)| f(l, &models[l], c)).collect::<Vec<_>>(),
            ))
        };
        let batch = RecordBatch::try_new(
            models_schema(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|(l, _)| model_file(l)).collect::<Vec<_>>(),
                )),
                get(&|_, m, _| m.order() as u64),
                get(&|l, _, _| training.get(l).copied().unwrap_or(0)),
                get(&|_, m, _| m.training_words()),
                get(&|_, m, _| m.vocabulary()),
                get(&|_, m, _| m.ngrams()),
                get(&|_, _, c| c.documents),
                Arc::new(Float64Array::from(
                    rows.iter().map(|(_, c)| c.head_max).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|(_, c)| c.middle_max).collect::<Vec<_>>(),
                )),
            ],
        )?;
        ctx.write(&batch).await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_nearest_rank_percentiles_and_bucket_by_them() {
        let c = Cutoffs::from_sample((1..=10).rev().map(f64::from).collect(), 30.0, 60.0).unwrap();
        assert_eq!((c.head_max, c.middle_max, c.documents), (3.0, 6.0, 10));
        assert_eq!(c.bucket(3.0), "head");
        assert_eq!(c.bucket(3.5), "middle");
        assert_eq!(c.bucket(6.01), "tail");
        assert!(Cutoffs::from_sample(Vec::new(), 30.0, 60.0).is_none());
        let one = Cutoffs::from_sample(vec![42.0], 30.0, 60.0).unwrap();
        assert_eq!((one.head_max, one.middle_max), (42.0, 42.0));
    }

    fn stage(toml: &str) -> Result<Arc<dyn Stage>, ParamError> {
        let decl = StageDecl {
            name: "q".into(),
            type_name: "quality_lm".into(),
            inputs: Vec::new(),
            params: toml::from_str(toml).unwrap(),
            line: 1,
            mixture: Default::default(),
        };
        QualityLmFactory.build(&decl)
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert!(stage("order = 3\nlanguages = [\"en\", \"de\"]").is_ok());
        assert_eq!(stage("order = 1").unwrap_err().key.as_deref(), Some("order"));
        assert_eq!(stage("languages = []").unwrap_err().key.as_deref(), Some("languages"));
        assert_eq!(
            stage("languages = [\"../x\"]").unwrap_err().key.as_deref(),
            Some("languages")
        );
        assert_eq!(
            stage("head_percentile = 70.0").unwrap_err().key.as_deref(),
            Some("head_percentile")
        );
        assert_eq!(stage("orders = 5").unwrap_err().key.as_deref(), Some("orders"));
    }
}
