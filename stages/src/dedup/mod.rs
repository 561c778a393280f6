//! The `dedup` stage: exact deduplication of document datasets, within one
//! source or across sources.
//!
//! Each document's key is a hash of its text (`normalized_text_hash`:
//! lowercase, whitespace collapsed; or `text_hash`, the bytes as they are, for
//! GitHub's file-level dedup). Among documents sharing a key, one survives: the
//! first by a stable order, source priority (curated sources first:
//! wikipedia, books, arxiv, stackexchange, github, c4, commoncrawl, then any
//! other source by name) and then id. The result does not depend on `--jobs`,
//! on input order or on how inputs are split into files.
//!
//! Two passes. The first is a DataFusion query over keys only (the text is
//! hashed before the sort): a window partitioned by key and ordered by
//! (priority, source, id), whose sort spills under the session's memory pool
//! (`--memory-limit`). The second streams the documents again through a
//! DataFusion anti-join against the removed ids ([`RemovedIds`], scratch
//! Parquet on the join's build side, charged to the same pool): memory
//! follows the number of duplicates, never the corpus. Outputs: the kept
//! documents; `removed` (`<stage>__removed`: id, kept_id, similarity, rule),
//! so SQL can say why a document is gone; `index` (`<stage>__index`: the key
//! of every kept document), for later incremental runs against the existing
//! corpus.
//!
//! `mode = "minhash"` adds near-duplicates among the documents the exact pass
//! kept (see [`near`]): MinHash signatures over word n-grams, LSH bands, candidate pairs
//! verified by their estimated Jaccard similarity, clusters by connected
//! components, one document kept per cluster by the same stable order; the
//! band keys join `index`, the dropped documents `removed` (rule
//! `near_duplicate`, with the similarity). `preset = "books"` is that at a
//! 0.9 threshold, for whole books (LLaMA removed books with more than 90%
//! content overlap).

mod components;
mod near;
mod removed_ids;

pub use near::MinHashSettings;
use removed_ids::RemovedIds;

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::Deserialize;

/// The default source priority: curated sources first.
pub const DEFAULT_PRIORITY: &[&str] = &[
    "wikipedia",
    "books",
    "arxiv",
    "stackexchange",
    "github",
    "c4",
    "commoncrawl",
];

/// The rule name of exact duplicates in counts and in `removed`.
const EXACT: &str = "exact_duplicate";
/// The rule name of near-duplicates in counts and in `removed`.
const NEAR: &str = "near_duplicate";

/// What the stage compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Equal text (after normalization, unless `normalize = false`).
    Exact,
    /// Exact duplicates, then near-duplicates by MinHash with LSH.
    Minhash,
}

/// Ready-made settings for a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// GitHub: exact file-level dedup on the content as it is, GitHub's columns kept.
    Github,
    /// Books: near-duplicate books at > 90% overlap (MinHash, threshold 0.9).
    Books,
}

/// `[stages.NAME]` parameters of a `dedup` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// `github` or `books`: sets the other parameters' defaults.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// `exact` (default) or `minhash` (exact, then near-duplicates).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// `minhash`: words per shingle (default 5).
    #[serde(default)]
    pub ngram: Option<usize>,
    /// `minhash`: LSH bands (default 20).
    #[serde(default)]
    pub bands: Option<usize>,
    /// `minhash`: signature slots per band (default 8).
    #[serde(default)]
    pub rows: Option<usize>,
    /// `minhash`: least estimated Jaccard similarity of a near-duplicate pair (default 0.7; 0.9 for books).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Compare texts lowercased with whitespace collapsed (default true; false with `preset = "github"`).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// The output's columns: `document` (the core columns, default) or a source
    /// type whose columns every input has (`github`, `wikipedia`, `c4`).
    #[serde(default)]
    pub columns: Option<String>,
    /// Sources in keep-first order; sources not listed come after, by name.
    #[serde(default)]
    pub source_priority: Option<Vec<String>>,
}

/// Builds `dedup` stages.
#[derive(Debug)]
pub struct DedupFactory;

impl StageFactory for DedupFactory {
    fn type_name(&self) -> &'static str {
        "dedup"
    }

    fn summary(&self) -> &'static str {
        "exact and near-duplicate (MinHash) deduplication of document datasets, within or across sources; first by source priority then id kept"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: DedupConfig = parse_params(&decl.params)?;
        let books = config.preset == Some(Preset::Books);
        let mode = config.mode.unwrap_or(if books { Mode::Minhash } else { Mode::Exact });
        let near = match mode {
            Mode::Exact => {
                for (key, set) in [
                    ("ngram", config.ngram.is_some()),
                    ("bands", config.bands.is_some()),
                    ("rows", config.rows.is_some()),
                    ("threshold", config.threshold.is_some()),
                ] {
                    if set {
                        return Err(ParamError {
                            key: Some(key.into()),
                            message: "only `mode = \"minhash\"` uses it".into(),
                        });
                    }
                }
                None
            }
            Mode::Minhash => Some(minhash_settings(&config, books)?),
        };
        let github = config.preset == Some(Preset::Github);
        let columns = config
            .columns
            .clone()
            .unwrap_or_else(|| if github { "github" } else { "document" }.to_string());
        let schema = crate::datasets::columns_schema(&columns).ok_or_else(|| ParamError {
            key: Some("columns".into()),
            message: format!("`{columns}` is not `document` or a source type (`c4`, `github`, `wikipedia`)"),
        })?;
        let priority = config
            .source_priority
            .clone()
            .unwrap_or_else(|| DEFAULT_PRIORITY.iter().map(|s| s.to_string()).collect());
        Ok(Arc::new(DedupStage {
            normalize: config.normalize.unwrap_or(!github),
            priority,
            schema,
            near,
        }))
    }
}

/// The MinHash settings of a config (the books preset raises the threshold), checked.
fn minhash_settings(config: &DedupConfig, books: bool) -> Result<MinHashSettings, ParamError> {
    let defaults = MinHashSettings::default();
    let settings = MinHashSettings {
        ngram: config.ngram.unwrap_or(defaults.ngram),
        bands: config.bands.unwrap_or(defaults.bands),
        rows: config.rows.unwrap_or(defaults.rows),
        threshold: config.threshold.unwrap_or(if books { 0.9 } else { defaults.threshold }),
    };
    let bad = |key: &str, message: String| ParamError {
        key: Some(key.into()),
        message,
    };
    if settings.ngram == 0 {
        return Err(bad("ngram", "must be at least 1".into()));
    }
    if settings.bands == 0
        || settings.rows == 0
        || settings.bands * settings.rows > llamaflow_sql::minhash::MAX_PERMUTATIONS
    {
        return Err(bad(
            "bands",
            format!(
                "bands and rows must be at least 1, with bands × rows at most {}",
                llamaflow_sql::minhash::MAX_PERMUTATIONS
            ),
        ));
    }
    if !(settings.threshold > 0.0 && settings.threshold <= 1.0) {
        return Err(bad("threshold", "must be in (0, 1]".into()));
    }
    Ok(settings)
}

/// The `removed` output: why each dropped document went.
pub fn removed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("kept_id", DataType::Utf8, false),
        Field::new("similarity", DataType::Float64, false),
        Field::new("rule", DataType::Utf8, false),
    ]))
}

/// The `index` output: the key of every kept document.
pub fn index_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
    ]))
}

/// The `dedup` stage.
#[derive(Debug)]
pub struct DedupStage {
    normalize: bool,
    priority: Vec<String>,
    schema: SchemaRef,
    near: Option<MinHashSettings>,
}

impl DedupStage {
    /// `CASE source WHEN 'wikipedia' THEN 0 ... ELSE n END`: the keep-first rank of a source.
    fn priority_sql(&self) -> String {
        let mut sql = String::from("CASE source");
        for (rank, source) in self.priority.iter().enumerate() {
            sql.push_str(&format!(" WHEN '{}' THEN {rank}", source.replace('\'', "''")));
        }
        sql.push_str(&format!(" ELSE {} END", self.priority.len()));
        sql
    }

    fn key_kind(&self) -> &'static str {
        if self.normalize { "normalized_text" } else { "text" }
    }

    /// Pass 1, over keys only (the text is hashed before the sort, so the sort
    /// holds ids and keys, never texts): decides which documents go, writes
    /// `index` and `removed`, and adds the removed ids to `removed_ids`.
    async fn decide(
        &self,
        session: &SessionContext,
        table: &str,
        removed_ids: &mut RemovedIds,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<(), StageError> {
        let hash = if self.normalize {
            "normalized_text_hash"
        } else {
            "text_hash"
        };
        // The first document of each key by (priority, source, id) is kept; the others point at it.
        let sql = format!(
            "SELECT id, dedup_key, first_value(id) OVER w AS dedup_kept_id, row_number() OVER w = 1 AS dedup_keep \
             FROM (SELECT id, source, {hash}(text) AS dedup_key, {priority} AS dedup_rank FROM {table}) \
             WINDOW w AS (PARTITION BY dedup_key ORDER BY dedup_rank, source, id \
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
            priority = self.priority_sql(),
        );
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            counts.rows_in += batch.num_rows() as u64;
            ctx.progress.add_docs(batch.num_rows() as u64);
            let keep: BooleanArray = batch
                .column(3)
                .as_boolean()
                .iter()
                .map(|k| Some(k.unwrap_or(true)))
                .collect();
            let kept = filter_record_batch(&batch, &keep)?;
            let removed = filter_record_batch(&batch, &not(&keep)?)?;
            counts.kept += kept.num_rows() as u64;
            let index = RecordBatch::try_new(
                index_schema(),
                vec![
                    cast_utf8(kept.column(1))?,
                    cast_utf8(kept.column(0))?,
                    Arc::new(StringArray::from(vec![self.key_kind(); kept.num_rows()])),
                ],
            )?;
            ctx.write_named("index", &index).await?;
            let n = removed.num_rows();
            if n == 0 {
                continue;
            }
            *counts.filtered.entry(EXACT.to_string()).or_default() += n as u64;
            let ids = cast_utf8(removed.column(0))?;
            removed_ids.add(&ids)?;
            let removed = RecordBatch::try_new(
                removed_schema(),
                vec![
                    ids,
                    cast_utf8(removed.column(2))?,
                    Arc::new(Float64Array::from(vec![1.0; n])),
                    Arc::new(StringArray::from(vec![EXACT; n])),
                ],
            )?;
            ctx.write_named("removed", &removed).await?;
        }
        removed_ids.seal(session).await
    }

    /// The exact pass, then (in `minhash` mode) the near-duplicate pass over
    /// the documents the exact pass kept; every removed id ends in `removed_ids`.
    async fn decide_all(
        &self,
        session: &SessionContext,
        table: &str,
        removed_ids: &mut RemovedIds,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<(), StageError> {
        self.decide(session, table, removed_ids, ctx, counts).await?;
        let Some(settings) = &self.near else {
            return Ok(());
        };
        let survivors = format!("dedup_exact_kept_{}", ctx.stage);
        let frame = session
            .sql(&removed_ids.without_removed(table, "d.id, d.source, d.text"))
            .await?;
        session.register_table(survivors.as_str(), frame.into_view())?;
        let found = near::find_near_duplicates(session, &survivors, &self.priority_sql(), settings, ctx).await;
        let _ = session.deregister_table(survivors.as_str());
        let found = found?;
        tracing::info!(
            stage = %ctx.stage,
            candidates = found.candidates,
            verified = found.verified,
            "MinHash candidate pairs"
        );
        let near = found.removals;
        if near.is_empty() {
            return Ok(());
        }
        let n = near.len();
        counts.kept -= n as u64;
        *counts.filtered.entry(NEAR.to_string()).or_default() += n as u64;
        for chunk in near.chunks(8192) {
            let ids: arrow::array::ArrayRef =
                Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.id.as_str())));
            removed_ids.add(&ids)?;
            let batch = RecordBatch::try_new(
                removed_schema(),
                vec![
                    ids,
                    Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.kept_id.as_str()))),
                    Arc::new(Float64Array::from_iter_values(chunk.iter().map(|r| r.similarity))),
                    Arc::new(StringArray::from(vec![NEAR; chunk.len()])),
                ],
            )?;
            ctx.write_named("removed", &batch).await?;
        }
        removed_ids.seal(session).await
    }

    /// Decides, then pass 2: the documents again, minus the removed ones; returns how many were written.
    async fn write_kept(
        &self,
        session: &SessionContext,
        table: &str,
        removed_ids: &mut RemovedIds,
        ctx: &mut UnitContext,
        counts: &mut UnitCounts,
    ) -> Result<u64, StageError> {
        self.decide_all(session, table, removed_ids, ctx, counts).await?;
        let mut stream = session
            .sql(&removed_ids.without_removed(table, "d.*"))
            .await?
            .execute_stream()
            .await?;
        let mut written = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            written += batch.num_rows() as u64;
            ctx.write(&RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?)
                .await?;
        }
        Ok(written)
    }

    /// Every input dataset, read with DataFusion and cut to the output's columns, as one frame.
    async fn documents(&self, files: &[InputFile], session: &SessionContext) -> Result<DataFrame, StageError> {
        let fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let files: Vec<&InputFile> = files.iter().collect();
        let hint = "; set `columns = \"document\"` to dedup on the core columns";
        crate::datasets::read_datasets(&files, session, &fields, hint).await
    }
}

#[async_trait]
impl Stage for DedupStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("removed", removed_schema()), ("index", index_schema())]
    }

    /// The whole corpus is one unit: duplicates are found across all inputs.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        WorkUnit::all_in_one("corpus", inputs)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        // A copy of the session's state (same catalog and memory pool) whose
        // anti-joins collect the removed ids once and stream each partition of
        // documents straight through them: in the partitioned mode the
        // documents, texts included, would be repartitioned by id first, and
        // the repartition buffers them while the writer lags.
        let mut state = ctx.session.state();
        let optimizer = &mut state.config_mut().options_mut().optimizer;
        optimizer.hash_join_single_partition_threshold = 64 << 20;
        optimizer.hash_join_single_partition_threshold_rows = 4 << 20;
        let session = SessionContext::new_with_state(state);
        let docs = self.documents(&unit.files, &session).await?;
        let mut counts = UnitCounts::default();
        // Named after the stage: two dedup stages may run at once in the shared session.
        let table = format!("dedup_documents_{}", ctx.stage);
        session.register_table(table.as_str(), docs.into_view())?;
        let mut removed_ids = RemovedIds::new(format!("dedup_removed_{}", ctx.stage))?;
        let written = self
            .write_kept(&session, &table, &mut removed_ids, ctx, &mut counts)
            .await;
        removed_ids.drop_table(&session);
        let _ = session.deregister_table(table.as_str());
        let written = written?;
        if written != counts.kept {
            return Err(StageError::Other(format!(
                "the inputs changed during dedup: {written} documents written, {} expected (duplicate ids?)",
                counts.kept
            )));
        }
        Ok(counts)
    }
}

fn cast_utf8(array: &arrow::array::ArrayRef) -> Result<arrow::array::ArrayRef, StageError> {
    Ok(arrow::compute::cast(array, &DataType::Utf8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(toml: &str) -> Result<Arc<dyn Stage>, ParamError> {
        let decl = StageDecl {
            name: "d".into(),
            type_name: "dedup".into(),
            inputs: Vec::new(),
            params: toml::from_str(toml).unwrap(),
            line: 1,
            mixture: Default::default(),
        };
        DedupFactory.build(&decl)
    }

    #[test]
    fn presets_set_columns_and_normalization() {
        let github = stage("preset = \"github\"").unwrap();
        assert!(github.schema().field_with_name("repo_name").is_ok());
        let plain = stage("").unwrap();
        assert_eq!(
            plain.schema().fields().len(),
            llamaflow_pipeline::document::DOCUMENT_COLUMNS.len()
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        assert_eq!(stage("columns = \"nope\"").unwrap_err().key.as_deref(), Some("columns"));
        assert_eq!(stage("threshold = 0.8").unwrap_err().key.as_deref(), Some("threshold"));
        let minhash = |extra: &str| stage(&format!("mode = \"minhash\"\n{extra}"));
        assert_eq!(
            minhash("threshold = 1.5").unwrap_err().key.as_deref(),
            Some("threshold")
        );
        assert_eq!(minhash("bands = 0").unwrap_err().key.as_deref(), Some("bands"));
        assert_eq!(minhash("ngram = 0").unwrap_err().key.as_deref(), Some("ngram"));
        assert!(minhash("bands = 20\nrows = 5\nthreshold = 0.8").is_ok());
    }

    #[test]
    fn the_books_preset_is_minhash_at_a_ninety_percent_threshold() {
        let config: DedupConfig = toml::from_str("preset = \"books\"").unwrap();
        let settings = minhash_settings(&config, true).unwrap();
        assert_eq!(settings.threshold, 0.9);
        assert_eq!((settings.bands, settings.rows, settings.ngram), (20, 8, 5));
        assert!(stage("preset = \"books\"").is_ok());
    }

    #[test]
    fn priority_is_a_case_expression_in_the_configured_order() {
        let s = DedupStage {
            normalize: true,
            priority: vec!["c4".into(), "o'brien".into()],
            schema: llamaflow_pipeline::document::document_schema(Vec::new()),
            near: None,
        };
        assert_eq!(
            s.priority_sql(),
            "CASE source WHEN 'c4' THEN 0 WHEN 'o''brien' THEN 1 ELSE 2 END"
        );
    }
}
