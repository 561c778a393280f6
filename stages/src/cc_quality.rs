//! The `cc_quality` stage: the last of LLaMA's CommonCrawl steps. Every page
//! gets its perplexity under the `quality_lm` model of its language, the
//! bucket that puts it in (`head`, `middle`, `tail` by the cut-offs), and the
//! `ref_classifier`'s probability that it is like a page Wikipedia cites, as
//! columns. Kept: pages in `keep_buckets` (RedPajama's head and middle) with
//! a probability of at least `min_probability` (RedPajama's 0.25).
//!
//! `inputs = ["commoncrawl", "quality_lm", "ref_classifier"]`; one unit per
//! page file, each depending on the model files' versions, so new models
//! re-score everything and new pages score only themselves. Filtered by rule:
//! `bucket_<name>` (a bucket not kept), `no_language_model` (no model for
//! the page's language, or no words to score), `ref_probability`. The named
//! output `buckets` counts pages per (input, language, bucket, kept).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, RecordBatch, StringArray, StringBuilder, UInt64Array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use llamaflow_sql::quality::ref_classifier::Features;
use llamaflow_sql::quality::words::HashedText;
use llamaflow_sql::quality::{NgramLm, RefClassifier};
use serde::Deserialize;

use crate::quality_lm::{CUTOFFS_FILE, Cutoffs};
use crate::ref_classifier::MODEL_FILE;

/// `[stages.NAME]` parameters of a `cc_quality` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcQualityConfig {
    /// Buckets kept (RedPajama: head and middle).
    #[serde(default = "default_keep_buckets")]
    pub keep_buckets: Vec<String>,
    /// The least reference-classifier probability kept (RedPajama: 0.25; 0 keeps all).
    #[serde(default = "default_min_probability")]
    pub min_probability: f64,
    /// The input's columns, passed through (`commoncrawl`, or `document`).
    #[serde(default = "default_columns")]
    pub columns: String,
}

fn default_keep_buckets() -> Vec<String> {
    vec!["head".into(), "middle".into()]
}
fn default_min_probability() -> f64 {
    0.25
}
fn default_columns() -> String {
    "commoncrawl".into()
}

const BUCKETS: [&str; 3] = ["head", "middle", "tail"];

/// Builds `cc_quality` stages.
pub struct CcQualityFactory;

impl StageFactory for CcQualityFactory {
    fn type_name(&self) -> &'static str {
        "cc_quality"
    }

    fn summary(&self) -> &'static str {
        "score CommonCrawl pages with quality_lm (perplexity bucket) and ref_classifier (probability); keep head+middle with probability >= 0.25"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: CcQualityConfig = parse_params(&decl.params)?;
        if let Some(b) = config.keep_buckets.iter().find(|b| !BUCKETS.contains(&b.as_str())) {
            return Err(ParamError {
                key: Some("keep_buckets".into()),
                message: format!("`{b}` is not a bucket (head, middle, tail)"),
            });
        }
        if !(0.0..=1.0).contains(&config.min_probability) {
            return Err(ParamError {
                key: Some("min_probability".into()),
                message: "must be 0 to 1".into(),
            });
        }
        let base = crate::datasets::columns_schema(&config.columns).ok_or_else(|| ParamError {
            key: Some("columns".into()),
            message: format!("`{}` is not `document` or a source type", config.columns),
        })?;
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("perplexity", DataType::Float64, true));
        fields.push(Field::new("bucket", DataType::Utf8, true));
        fields.push(Field::new("ref_probability", DataType::Float64, false));
        let input_fields = base.fields().len();
        Ok(Arc::new(CcQualityStage {
            config,
            schema: Arc::new(Schema::new(fields)),
            input_fields,
            models: Mutex::new(None),
        }))
    }
}

/// The models a unit scores with, loaded once per version.
#[derive(Debug)]
struct Models {
    version: String,
    lms: BTreeMap<String, (NgramLm, Cutoffs)>,
    classifier: RefClassifier,
}

/// A configured `cc_quality` stage.
#[derive(Debug)]
pub struct CcQualityStage {
    config: CcQualityConfig,
    schema: SchemaRef,
    input_fields: usize,
    models: Mutex<Option<Arc<Models>>>,
}

/// The `buckets` output: pages per input, language, bucket and whether kept.
pub fn buckets_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("input", DataType::Utf8, false),
        Field::new("language", DataType::Utf8, false),
        Field::new("bucket", DataType::Utf8, false),
        Field::new("kept", DataType::Boolean, false),
        Field::new("documents", DataType::UInt64, false),
    ]))
}

/// A model file among the inputs (everything else is pages).
fn is_model_file(file: &InputFile) -> bool {
    file.relative.ends_with(".bin") || file.relative.ends_with(CUTOFFS_FILE)
}

fn file_name(file: &InputFile) -> &str {
    file.relative.rsplit('/').next().unwrap_or(&file.relative)
}

impl CcQualityStage {
    async fn models(&self, files: &[&InputFile]) -> Result<Arc<Models>, StageError> {
        let version: String = files
            .iter()
            .map(|f| format!("{}\0{}\n", f.relative, f.version))
            .collect();
        if let Ok(guard) = self.models.lock()
            && let Some(models) = guard.as_ref()
            && models.version == version
        {
            return Ok(models.clone());
        }
        let missing = |what: &str| {
            StageError::Other(format!(
                "cc_quality needs {what} among its inputs (add the `quality_lm` and `ref_classifier` stages to `inputs`)"
            ))
        };
        let cutoffs_file = files
            .iter()
            .find(|f| file_name(f) == CUTOFFS_FILE)
            .ok_or_else(|| missing(CUTOFFS_FILE))?;
        let cutoffs: BTreeMap<String, Cutoffs> = serde_json::from_slice(&crate::read::read_whole(cutoffs_file).await?)
            .map_err(|e| StageError::Other(format!("{}: {e}", cutoffs_file.display)))?;
        let classifier_file = files
            .iter()
            .find(|f| file_name(f) == MODEL_FILE)
            .ok_or_else(|| missing(MODEL_FILE))?;
        let bytes = crate::read::read_whole(classifier_file).await?;
        let classifier = RefClassifier::from_bytes(&bytes, &classifier_file.display)
            .map_err(|e| StageError::Other(e.to_string()))?;
        let mut lms = BTreeMap::new();
        for (language, c) in cutoffs {
            let name = crate::quality_lm::model_file(&language);
            let file = files
                .iter()
                .find(|f| file_name(f) == name)
                .ok_or_else(|| missing(&name))?;
            let bytes = crate::read::read_whole(file).await?;
            let display = file.display.clone();
            let lm = tokio::task::spawn_blocking(move || NgramLm::from_bytes(&bytes, &display))
                .await
                .map_err(|e| StageError::Other(format!("a worker thread failed: {e}")))?
                .map_err(|e| StageError::Other(e.to_string()))?;
            lms.insert(language, (lm, c));
        }
        let models = Arc::new(Models {
            version,
            lms,
            classifier,
        });
        if let Ok(mut guard) = self.models.lock() {
            *guard = Some(models.clone());
        }
        Ok(models)
    }
}

/// What scoring one batch gives: the new columns, the verdicts, per-bucket counts.
struct Scored {
    perplexity: ArrayRef,
    bucket: ArrayRef,
    probability: ArrayRef,
    keep: Vec<bool>,
    rules: Vec<Option<String>>,
    buckets: BTreeMap<(String, String, bool), u64>,
}

fn score(
    models: &Models,
    config: &CcQualityConfig,
    texts: &arrow::array::StringArray,
    languages: Option<&arrow::array::StringArray>,
) -> Scored {
    let mut perplexity = Float64Builder::with_capacity(texts.len());
    let mut bucket = StringBuilder::new();
    let mut probability = Float64Builder::with_capacity(texts.len());
    let (mut keep, mut rules) = (Vec::with_capacity(texts.len()), Vec::with_capacity(texts.len()));
    let mut buckets = BTreeMap::new();
    // Each page is normalized and hashed once, for both models.
    let mut hashed = HashedText::default();
    let (mut line, mut features) = (Vec::new(), Features::default());
    for i in 0..texts.len() {
        hashed.fill(if texts.is_valid(i) { texts.value(i) } else { "" });
        let language = languages.filter(|l| l.is_valid(i)).map_or("", |l| l.value(i));
        let scored = models
            .lms
            .get(language)
            .and_then(|(lm, cutoffs)| lm.perplexity_hashed(&hashed, &mut line).map(|p| (p, cutoffs.bucket(p))));
        let p = models.classifier.probability_hashed(&hashed, &mut features);
        perplexity.append_option(scored.map(|(ppl, _)| ppl));
        bucket.append_option(scored.map(|(_, b)| b));
        probability.append_value(p);
        let rule = match scored {
            None => Some("no_language_model".to_string()),
            Some((_, b)) if !config.keep_buckets.iter().any(|k| k == b) => Some(format!("bucket_{b}")),
            Some(_) if p < config.min_probability => Some("ref_probability".to_string()),
            Some(_) => None,
        };
        let kept = rule.is_none();
        *buckets
            .entry((
                language.to_string(),
                scored.map_or("none", |(_, b)| b).to_string(),
                kept,
            ))
            .or_default() += 1;
        keep.push(kept);
        rules.push(rule);
    }
    Scored {
        perplexity: Arc::new(perplexity.finish()),
        bucket: Arc::new(bucket.finish()),
        probability: Arc::new(probability.finish()),
        keep,
        rules,
        buckets,
    }
}

#[async_trait]
impl Stage for CcQualityStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("buckets", buckets_schema())]
    }

    /// One unit per page file, each also reading the model files, whose
    /// versions are part of every unit's fingerprint.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        crate::datasets::units_with_artifacts(inputs, is_model_file)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let (model_files, pages): (Vec<&InputFile>, Vec<&InputFile>) =
            unit.files.iter().partition(|f| is_model_file(f));
        let models = self.models(&model_files).await?;
        let fields: Vec<Field> = self.schema.fields()[..self.input_fields]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let hint = "; set `columns = \"document\"` to score on the core columns";
        let frame = crate::datasets::read_datasets(&pages, &ctx.session, &fields, hint).await?;
        let input = pages
            .first()
            .map_or(unit.key.as_str(), |f| f.display.as_str())
            .to_string();
        let base = crate::datasets::columns_schema(&self.config.columns)
            .ok_or_else(|| StageError::Other(format!("unknown columns `{}`", self.config.columns)))?;
        let text_column = base
            .index_of("text")
            .map_err(|_| StageError::Other("cc_quality: the input has no `text` column".into()))?;
        let language_column = base.index_of("language").ok();
        let mut counts = UnitCounts::default();
        let mut buckets: BTreeMap<(String, String, bool), u64> = BTreeMap::new();
        // Partitions one after the other: rows are written in file order.
        for mut stream in frame.execute_stream_partitioned().await? {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let texts = arrow::compute::cast(batch.column(text_column), &DataType::Utf8)?;
                let languages = language_column
                    .map(|c| arrow::compute::cast(batch.column(c), &DataType::Utf8))
                    .transpose()?;
                let models = models.clone();
                let config = self.config.clone();
                let scored = tokio::task::spawn_blocking(move || {
                    score(
                        &models,
                        &config,
                        texts.as_string::<i32>(),
                        languages.as_ref().map(|l| l.as_string::<i32>()),
                    )
                })
                .await
                .map_err(|e| StageError::Other(format!("a worker thread failed: {e}")))?;
                counts.rows_in += batch.num_rows() as u64;
                for rule in &scored.rules {
                    match rule {
                        Some(rule) => counts.filter(rule),
                        None => counts.kept += 1,
                    }
                }
                for (key, n) in scored.buckets {
                    *buckets.entry(key).or_default() += n;
                }
                ctx.progress.add_docs(batch.num_rows() as u64);
                let mut columns = batch.columns().to_vec();
                columns.extend([scored.perplexity, scored.bucket, scored.probability]);
                let full = RecordBatch::try_new(self.schema.clone(), columns)?;
                let kept = filter_record_batch(&full, &BooleanArray::from(scored.keep))?;
                if kept.num_rows() > 0 {
                    ctx.write(&kept).await?;
                }
            }
        }
        let n = buckets.len();
        let batch = RecordBatch::try_new(
            buckets_schema(),
            vec![
                Arc::new(StringArray::from(vec![input.as_str(); n])),
                Arc::new(StringArray::from(
                    buckets.keys().map(|k| k.0.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    buckets.keys().map(|k| k.1.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(buckets.keys().map(|k| k.2).collect::<Vec<_>>())),
                Arc::new(UInt64Array::from(buckets.values().copied().collect::<Vec<_>>())),
            ],
        )?;
        ctx.write_named("buckets", &batch).await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llamaflow_sql::quality::ref_classifier::featurize;
    use llamaflow_sql::quality::{NgramCounter, TrainSettings};

    fn models() -> Models {
        let mut counter = NgramCounter::new(3);
        counter
            .add_text("The river flows through the city.\nThe city lies on the river.\nThe bridge crosses the river.");
        let features = |t: &str| {
            let (mut h, mut f) = (HashedText::default(), Features::default());
            h.fill(t);
            featurize(&h, 12, &mut f);
            f
        };
        let examples = vec![
            (features("The river flows through the city."), true),
            (features("buy now click here"), false),
        ];
        let settings = TrainSettings {
            bucket_bits: 12,
            epochs: 30,
            ..Default::default()
        };
        Models {
            version: String::new(),
            lms: BTreeMap::from([(
                "en".to_string(),
                (
                    counter.finish(),
                    Cutoffs {
                        head_max: 10.0,
                        middle_max: 15.0,
                        documents: 3,
                    },
                ),
            )]),
            classifier: RefClassifier::train(&examples, &settings),
        }
    }

    #[test]
    fn pages_are_bucketed_scored_and_kept_by_rule() {
        let models = models();
        let config = CcQualityConfig {
            keep_buckets: default_keep_buckets(),
            min_probability: 0.25,
            columns: "commoncrawl".into(),
        };
        let texts = StringArray::from(vec![
            "The river flows through the city.",
            "zebra quantum saxophone nebula",
            "The river flows through the city.",
            "",
        ]);
        let languages = StringArray::from(vec!["en", "en", "fr", "en"]);
        let scored = score(&models, &config, &texts, Some(&languages));
        assert_eq!(
            scored.rules,
            vec![
                None,
                Some("bucket_tail".to_string()),
                Some("no_language_model".to_string()),
                Some("no_language_model".to_string())
            ]
        );
        assert_eq!(scored.keep, vec![true, false, false, false]);
        assert_eq!(scored.bucket.as_string::<i32>().value(0), "head");
        assert!(scored.perplexity.is_null(2));
        let strict = CcQualityConfig {
            min_probability: 1.0,
            ..config
        };
        let scored = score(&models, &strict, &texts, Some(&languages));
        assert_eq!(scored.rules[0].as_deref(), Some("ref_probability"));
    }
}
