//! The `ref_classifier` stage: LLaMA's quality classifier, a linear model of
//! "pages used as references in Wikipedia" against random pages (see
//! [`RefClassifier`]), trained here in Rust.
//!
//! `inputs = ["wikipedia.refs", "wikipedia", "commoncrawl"]`. Positives are
//! the `commoncrawl` pages whose URL a Wikipedia article cites (URLs compared
//! without scheme, `www.`, fragment or trailing `/`). A sample with fewer
//! than `min_positives` such pages (a small sample of CommonCrawl meets few
//! of Wikipedia's citations) gets Wikipedia's own articles as positives
//! besides; the table's `positives_from` says so, and a warning. Negatives:
//! a seeded random sample of the other pages. Both classes are cut to the
//! same size (at most `max_examples`), and a seeded `holdout` share is kept
//! out of training to measure accuracy.
//!
//! Outputs: `ref_classifier.bin` in the stage's dataset folder, and a
//! one-row table (how many examples of each kind, where positives came
//! from, held-out accuracy). Counts: documents read; kept are those used as
//! examples; filtered `other_language` and `not_sampled`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use llamaflow_sql::quality::ref_classifier::{Features, featurize};
use llamaflow_sql::quality::words::HashedText;
use llamaflow_sql::quality::{RefClassifier, TrainSettings};
use serde::Deserialize;
use tracing::{info, warn};

use crate::sampling::{BottomK, sample_point};

/// The model's file in the stage's dataset folder.
pub const MODEL_FILE: &str = "ref_classifier.bin";

/// `[stages.NAME]` parameters of a `ref_classifier` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefClassifierConfig {
    /// The input of cited URLs (a `url` column).
    #[serde(default = "default_refs")]
    pub refs: String,
    /// The input of Wikipedia articles, positives when too few pages are cited.
    #[serde(default = "default_wikipedia")]
    pub wikipedia: String,
    /// Fewer cited pages than this and Wikipedia's articles join the positives.
    #[serde(default = "default_min_positives")]
    pub min_positives: usize,
    /// Examples of each class at most.
    #[serde(default = "default_max_examples")]
    pub max_examples: usize,
    /// Languages of the examples (the pages' `language`, the articles' `lang`).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// log2 of the hash buckets (fastText: about 2^21).
    #[serde(default = "default_bucket_bits")]
    pub bucket_bits: u32,
    /// Passes over the examples.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// SGD's starting learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
    /// The share of examples held out to measure accuracy.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Changes the samples and the training order.
    #[serde(default)]
    pub seed: u64,
}

fn default_refs() -> String {
    "wikipedia.refs".into()
}
fn default_wikipedia() -> String {
    "wikipedia".into()
}
fn default_min_positives() -> usize {
    1000
}
fn default_max_examples() -> usize {
    20_000
}
fn default_languages() -> Vec<String> {
    vec!["en".into()]
}
fn default_bucket_bits() -> u32 {
    20
}
fn default_epochs() -> usize {
    5
}
fn default_learning_rate() -> f32 {
    0.5
}
fn default_holdout() -> f64 {
    0.1
}

/// Builds `ref_classifier` stages.
pub struct RefClassifierFactory;

impl StageFactory for RefClassifierFactory {
    fn type_name(&self) -> &'static str {
        "ref_classifier"
    }

    fn summary(&self) -> &'static str {
        "LLaMA's classifier of pages cited by Wikipedia vs random CommonCrawl pages: a fastText-style linear model over hashed word n-grams"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: RefClassifierConfig = parse_params(&decl.params)?;
        let bad = |key: &str, message: &str| ParamError {
            key: Some(key.into()),
            message: message.into(),
        };
        if !(10..=28).contains(&config.bucket_bits) {
            return Err(bad("bucket_bits", "must be 10 to 28"));
        }
        if !(0.0..0.5).contains(&config.holdout) {
            return Err(bad("holdout", "must be at least 0 and under 0.5"));
        }
        if config.max_examples == 0 || config.epochs == 0 {
            return Err(bad(
                if config.epochs == 0 { "epochs" } else { "max_examples" },
                "must be more than 0",
            ));
        }
        if !(config.learning_rate > 0.0) {
            return Err(bad("learning_rate", "must be more than 0"));
        }
        Ok(Arc::new(RefClassifierStage { config }))
    }
}

/// A configured `ref_classifier` stage.
#[derive(Debug)]
pub struct RefClassifierStage {
    config: RefClassifierConfig,
}

/// The stage's one-row table.
pub fn report_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model_file", DataType::Utf8, false),
        Field::new("positives_from", DataType::Utf8, false),
        Field::new("cited_pages", DataType::UInt64, false),
        Field::new("positives", DataType::UInt64, false),
        Field::new("negatives", DataType::UInt64, false),
        Field::new("holdout_examples", DataType::UInt64, false),
        Field::new("holdout_accuracy", DataType::Float64, true),
        Field::new("bucket_bits", DataType::UInt64, false),
        Field::new("epochs", DataType::UInt64, false),
    ]))
}

/// A URL as it is compared: no scheme, `www.`, fragment or trailing `/`; host lowercase.
pub fn url_key(url: &str) -> String {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('#').next().unwrap_or(rest);
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// Examples of one class, the `max_examples` of smallest sample key.
type Candidates = BottomK<Features>;

impl RefClassifierStage {
    async fn cited_urls(
        &self,
        files: &[&InputFile],
        session: &datafusion::prelude::SessionContext,
    ) -> Result<HashSet<String>, StageError> {
        let fields = [Field::new("url", DataType::Utf8, true)];
        let frame = crate::datasets::read_datasets(files, session, &fields, "").await?;
        let mut stream = frame.execute_stream().await?;
        let mut urls = HashSet::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            for url in column.as_string::<i32>().iter().flatten() {
                urls.insert(url_key(url));
            }
        }
        Ok(urls)
    }

    /// Reads documents of `files`, offering each of the configured languages
    /// to `positives` (when `is_positive` says so) or `negatives`.
    #[allow(clippy::too_many_arguments)]
    async fn offer(
        &self,
        files: &[&InputFile],
        language_column: &str,
        is_positive: &(dyn Fn(Option<&str>) -> Option<bool> + Sync),
        positives: &mut Candidates,
        negatives: &mut Candidates,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<u64, StageError> {
        let fields = [
            Field::new("id", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
            Field::new(language_column, DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
        ];
        let session = ctx.session.clone();
        let frame = crate::datasets::read_datasets(files, &session, &fields, "").await?;
        let mut stream = frame.execute_stream().await?;
        let input = files.first().map_or("", |f| f.display.as_str()).to_string();
        let mut hashed = HashedText::default();
        let mut matched = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let columns: Vec<_> = (0..4)
                .map(|i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
                .collect::<Result<_, _>>()?;
            let (ids, texts, languages, urls) = (
                columns[0].as_string::<i32>(),
                columns[1].as_string::<i32>(),
                columns[2].as_string::<i32>(),
                columns[3].as_string::<i32>(),
            );
            for i in 0..batch.num_rows() {
                let null = ids.is_null(i) || texts.is_null(i);
                if crate::datasets::count_row(ctx, counts, &input, null).await? {
                    continue;
                }
                let language = if languages.is_valid(i) { languages.value(i) } else { "" };
                if !self.config.languages.iter().any(|l| l == language) {
                    counts.filter("other_language");
                    continue;
                }
                let url = urls.is_valid(i).then(|| urls.value(i));
                let Some(positive) = is_positive(url) else {
                    continue;
                };
                matched += u64::from(positive);
                let class = if positive { &mut *positives } else { &mut *negatives };
                let key = Candidates::key(ids.value(i), self.config.seed);
                if class.admits(key) {
                    let mut features = Features::default();
                    hashed.fill(texts.value(i));
                    featurize(&hashed, self.config.bucket_bits, &mut features);
                    class.offer(key, features);
                }
            }
            ctx.progress.add_docs(batch.num_rows() as u64);
        }
        Ok(matched)
    }
}

#[async_trait]
impl Stage for RefClassifierStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        report_schema()
    }

    /// One unit over every input.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        let parquet: Vec<InputFile> = inputs
            .into_iter()
            .filter(|f| f.relative.ends_with(".parquet"))
            .collect();
        WorkUnit::all_in_one("ref_classifier", parquet)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let refs_name = crate::datasets::dataset_name(&self.config.refs);
        let wiki_name = crate::datasets::dataset_name(&self.config.wikipedia);
        let of = |name: &str| -> Vec<&InputFile> {
            unit.files
                .iter()
                .filter(|f| crate::datasets::dataset_of(f) == name)
                .collect()
        };
        let (refs, wikipedia) = (of(&refs_name), of(&wiki_name));
        let pages: Vec<&InputFile> = unit
            .files
            .iter()
            .filter(|f| {
                let d = crate::datasets::dataset_of(f);
                d != refs_name && d != wiki_name
            })
            .collect();
        if refs.is_empty() || pages.is_empty() {
            return Err(StageError::Other(format!(
                "ref_classifier needs the cited URLs (`{}`) and pages (`commoncrawl`) in `inputs`",
                self.config.refs
            )));
        }
        let session = ctx.session.clone();
        let cited = self.cited_urls(&refs, &session).await?;
        info!(urls = cited.len(), "URLs cited by Wikipedia");

        let mut counts = UnitCounts::default();
        let (mut positives, mut negatives) = (
            Candidates::new(self.config.max_examples),
            Candidates::new(self.config.max_examples),
        );
        let is_cited = |url: Option<&str>| Some(url.is_some_and(|u| cited.contains(&url_key(u))));
        let cited_pages = self
            .offer(
                &pages,
                "language",
                &is_cited,
                &mut positives,
                &mut negatives,
                ctx,
                &mut counts,
            )
            .await?;
        let positives_from = if (cited_pages as usize) < self.config.min_positives {
            if wikipedia.is_empty() {
                return Err(StageError::Other(format!(
                    "ref_classifier: only {cited_pages} pages are cited by Wikipedia (min_positives = {}), and no `{}` input to take articles from",
                    self.config.min_positives, self.config.wikipedia
                )));
            }
            warn!(
                cited_pages,
                min_positives = self.config.min_positives,
                "too few cited pages: Wikipedia articles stand in as positives"
            );
            let always = |_: Option<&str>| Some(true);
            let mut unused = Candidates::new(0);
            self.offer(
                &wikipedia,
                "lang",
                &always,
                &mut positives,
                &mut unused,
                ctx,
                &mut counts,
            )
            .await?;
            "cited pages + wikipedia articles"
        } else {
            "cited pages"
        };

        // Balanced classes, the smallest sample keys of each.
        let n = positives.len().min(negatives.len());
        if n == 0 {
            return Err(StageError::Other(format!(
                "ref_classifier: no examples of one class ({} positives, {} negatives): check `languages` and the inputs",
                positives.len(),
                negatives.len()
            )));
        }
        let (positives, negatives) = (positives.into_sorted(), negatives.into_sorted());
        counts.kept += 2 * n as u64;
        let examples_seen = counts.rows_in - counts.quarantined - counts.filtered_total();
        for _ in (2 * n as u64)..examples_seen {
            counts.filter("not_sampled");
        }
        let mut train = Vec::new();
        let mut holdout = Vec::new();
        for (i, (features, label)) in positives
            .into_iter()
            .take(n)
            .map(|f| (f, true))
            .chain(negatives.into_iter().take(n).map(|f| (f, false)))
            .enumerate()
        {
            let point = sample_point(&format!("{label}/{i}"), self.config.seed ^ 0x686f_6c64);
            if point < self.config.holdout {
                holdout.push((features, label));
            } else {
                train.push((features, label));
            }
        }
        let settings = TrainSettings {
            bucket_bits: self.config.bucket_bits,
            epochs: self.config.epochs,
            learning_rate: self.config.learning_rate,
            seed: self.config.seed,
        };
        let train_len = train.len();
        let (model, holdout_len, accuracy) = tokio::task::spawn_blocking(move || {
            let model = RefClassifier::train(&train, &settings);
            let right = holdout
                .iter()
                .filter(|(f, label)| (model.probability_of(f) >= 0.5) == *label)
                .count();
            let accuracy = (!holdout.is_empty()).then(|| right as f64 / holdout.len() as f64);
            (model, holdout.len(), accuracy)
        })
        .await
        .map_err(|e| StageError::Other(format!("the training thread failed: {e}")))?;
        info!(
            examples = train_len,
            holdout = holdout_len,
            accuracy = ?accuracy,
            positives_from,
            "trained the reference classifier"
        );
        ctx.put_file(MODEL_FILE, Bytes::from(model.to_bytes()), 1).await?;
        let batch = RecordBatch::try_new(
            report_schema(),
            vec![
                Arc::new(StringArray::from(vec![MODEL_FILE])),
                Arc::new(StringArray::from(vec![positives_from])),
                Arc::new(UInt64Array::from(vec![cited_pages])),
                Arc::new(UInt64Array::from(vec![n as u64])),
                Arc::new(UInt64Array::from(vec![n as u64])),
                Arc::new(UInt64Array::from(vec![holdout_len as u64])),
                Arc::new(Float64Array::from(vec![accuracy])),
                Arc::new(UInt64Array::from(vec![u64::from(self.config.bucket_bits)])),
                Arc::new(UInt64Array::from(vec![self.config.epochs as u64])),
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
    fn urls_compare_without_scheme_www_fragment_or_trailing_slash() {
        assert_eq!(url_key("https://www.Example.org/a/b/#top"), "example.org/a/b");
        assert_eq!(url_key("http://example.org/a/b"), "example.org/a/b");
        assert_eq!(url_key("https://example.org/"), "example.org");
        assert_ne!(url_key("https://example.org/A"), url_key("https://example.org/a"));
    }

    fn stage(toml: &str) -> Result<Arc<dyn Stage>, ParamError> {
        let decl = StageDecl {
            name: "r".into(),
            type_name: "ref_classifier".into(),
            inputs: Vec::new(),
            params: toml::from_str(toml).unwrap(),
            line: 1,
            mixture: Default::default(),
        };
        RefClassifierFactory.build(&decl)
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert!(stage("min_positives = 10\nepochs = 3").is_ok());
        assert_eq!(
            stage("bucket_bits = 40").unwrap_err().key.as_deref(),
            Some("bucket_bits")
        );
        assert_eq!(stage("holdout = 0.9").unwrap_err().key.as_deref(), Some("holdout"));
        assert_eq!(stage("epochs = 0").unwrap_err().key.as_deref(), Some("epochs"));
        assert_eq!(stage("positives = 3").unwrap_err().key.as_deref(), Some("positives"));
    }
}
