//! The `tokenize` stage: document datasets to token shards, through the
//! DataFusion query `sql/queries/tokenize.sql` and the `tokenize` UDF.
//!
//! Inputs: a `tokenizer` stage (its `tokenizer.json`) and document datasets
//! (`inputs = ["tokenizer", "dedup"]`). One unit per input Parquet file. Each
//! document goes to its source's `train` shard, or to its `validation` shard
//! when a hash of its id falls under `validation_fraction` (so the split is
//! stable across runs and does not depend on file order). The shard layout is
//! in [`shard`]; per unit and (source, split), one shard.
//!
//! Outputs: the shards, in the stage's dataset folder; the stage's table, one
//! row per document (`id`, `source`, `split`, `shard`, `document` (its index
//! in the shard), `tokens` (with `</s>`)), so SQL can find any document's
//! tokens; and `shards` (`<stage>__shards`: per shard its source, split,
//! documents, tokens, token width and the tokenizer's SHA-256), the manifest a
//! trainer reads. Counts: documents in, kept, `empty_text` filtered, a null
//! text quarantined.

pub mod catalog;
pub mod megatron;
pub mod mixture;
pub mod shard;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch, StringBuilder, UInt32Builder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use async_trait::async_trait;
use futures::StreamExt;
use llamaflow_pipeline::dataset::PartFile;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use llamaflow_sql::TokenEncoder;
use llamaflow_sql::udfs::tokenize::Tokenize;
use serde::Deserialize;

use self::shard::{TokenShardWriter, TokenWidth};

/// `[stages.NAME]` parameters of a `tokenize` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// Share of documents held out for validation, chosen by a hash of their id.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
}

fn default_validation_fraction() -> f64 {
    0.001
}

/// Builds `tokenize` stages.
pub struct TokenizeFactory;

impl StageFactory for TokenizeFactory {
    fn type_name(&self) -> &'static str {
        "tokenize"
    }

    fn summary(&self) -> &'static str {
        "encode documents with the pipeline's tokenizer (a DataFusion query) into per-source token shards, with a validation split"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: TokenizeConfig = parse_params(&decl.params)?;
        if !(0.0..1.0).contains(&config.validation_fraction) {
            return Err(ParamError {
                key: Some("validation_fraction".into()),
                message: "must be at least 0 and below 1".into(),
            });
        }
        Ok(Arc::new(TokenizeStage {
            config,
            encoder: Mutex::new(None),
        }))
    }
}

/// A configured `tokenize` stage.
#[derive(Debug)]
pub struct TokenizeStage {
    config: TokenizeConfig,
    /// The last tokenizer loaded, by its input version: units share it.
    encoder: Mutex<Option<(String, Arc<TokenEncoder>)>>,
}

/// The stage's table: where each document's tokens are.
pub fn documents_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, false),
        Field::new("document", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
    ]))
}

/// `<stage>__shards`: one row per shard.
pub fn shards_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("documents", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("token_width", DataType::UInt32, false),
        Field::new("tokenizer_sha256", DataType::Utf8, false),
    ]))
}

fn is_tokenizer(file: &InputFile) -> bool {
    file.relative.ends_with(".json")
}

/// Whether a document is held out: a hash of its id, uniform in [0, 1), under `fraction`.
pub fn is_validation(id: &str, fraction: f64) -> bool {
    let point = (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
    point < fraction
}

/// A source name as it may appear in a file name.
fn file_safe(source: &str) -> String {
    source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// The open shards of one unit, by (source, split).
struct UnitShards {
    writers: BTreeMap<(String, &'static str), (String, TokenShardWriter)>,
    width: TokenWidth,
    eos: u32,
}

impl TokenizeStage {
    async fn encoder(&self, file: &InputFile) -> Result<Arc<TokenEncoder>, StageError> {
        if let Ok(guard) = self.encoder.lock()
            && let Some((version, encoder)) = guard.as_ref()
            && *version == file.version
        {
            return Ok(encoder.clone());
        }
        let bytes = crate::read::read_whole(file).await?;
        let encoder = TokenEncoder::from_bytes(&bytes, &file.display).map_err(|e| StageError::Other(e.to_string()))?;
        let encoder = Arc::new(encoder);
        if let Ok(mut guard) = self.encoder.lock() {
            *guard = Some((file.version.clone(), encoder.clone()));
        }
        Ok(encoder)
    }
}

#[async_trait]
impl Stage for TokenizeStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        documents_schema()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("shards", shards_schema())]
    }

    /// One unit per Parquet file, each also reading the tokenizer, whose
    /// version is part of every unit's fingerprint.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        crate::datasets::units_with_artifacts(inputs, is_tokenizer)
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let tokenizers: Vec<&InputFile> = unit.files.iter().filter(|f| is_tokenizer(f)).collect();
        let [tokenizer_file] = tokenizers.as_slice() else {
            return Err(StageError::Other(format!(
                "tokenize needs exactly one tokenizer among its inputs (add the tokenizer stage to `inputs`), found {}",
                tokenizers.len()
            )));
        };
        let documents: Vec<&InputFile> = unit.files.iter().filter(|f| !is_tokenizer(f)).collect();
        let encoder = self.encoder(tokenizer_file).await?;
        let session = ctx.session.clone();
        session.register_udf(Tokenize::tokenize_udf(encoder.clone()));
        session.register_udf(Tokenize::token_count_udf(encoder.clone()));
        let fields = [
            Field::new("id", DataType::Utf8, true),
            Field::new("source", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
        ];
        let frame = crate::datasets::read_datasets(&documents, &session, &fields, "").await?;
        let table = format!("tokenize_documents_{}", unit.hash());
        session.register_table(&table, frame.into_view())?;
        let query = llamaflow_sql::queries::over_table(llamaflow_sql::queries::TOKENIZE, &table)
            .ok_or_else(|| StageError::Other("sql/queries/tokenize.sql has no `FROM documents`".into()))?;
        let input = documents.first().map_or(unit.key.as_str(), |f| f.display.as_str());
        let result = self.tokenize(&session, &query, &encoder, input, ctx).await;
        let _ = session.deregister_table(&table);
        result
    }
}

impl TokenizeStage {
    async fn tokenize(
        &self,
        session: &datafusion::prelude::SessionContext,
        query: &str,
        encoder: &TokenEncoder,
        input: &str,
        ctx: &mut UnitContext,
    ) -> Result<UnitCounts, StageError> {
        let mut shards = UnitShards {
            writers: BTreeMap::new(),
            width: TokenWidth::for_vocab(encoder.vocab_size()),
            eos: encoder.eos(),
        };
        let mut counts = UnitCounts::default();
        // Partitions one after the other, so a unit's shards come out in the
        // same order on every run; the UDF parallelizes within each batch.
        let streams = session.sql(query).await?.execute_stream_partitioned().await?;
        for mut stream in streams {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                self.route(&batch, &mut shards, &mut counts, ctx, input).await?;
            }
        }
        let mut rows = ShardRows::default();
        for ((source, split), (base, writer)) in std::mem::take(&mut shards.writers) {
            let (documents, tokens) = (writer.documents(), writer.tokens());
            let (tokens_bytes, index_bytes) = writer.finish().await.map_err(|e| StageError::Other(e.to_string()))?;
            ctx.add_file(PartFile {
                name: format!("{base}.tokens"),
                rows: tokens,
                bytes: tokens_bytes,
            });
            ctx.add_file(PartFile {
                name: format!("{base}.index"),
                rows: documents,
                bytes: index_bytes,
            });
            rows.push(&base, &source, split, documents, tokens, shards.width, encoder.sha256());
        }
        ctx.write_named("shards", &rows.finish()?).await?;
        Ok(counts)
    }

    /// Sends each row of a query batch (id, source, tokens) to its shard.
    async fn route(
        &self,
        batch: &RecordBatch,
        shards: &mut UnitShards,
        counts: &mut UnitCounts,
        ctx: &mut UnitContext,
        input: &str,
    ) -> Result<(), StageError> {
        let ids = batch.column(0).as_string::<i32>();
        let sources = batch.column(1).as_string::<i32>();
        let tokens = batch.column(2).as_list::<i32>();
        let (mut out_id, mut out_source, mut out_split, mut out_shard) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut out_document, mut out_tokens) = (UInt64Builder::new(), UInt64Builder::new());
        for i in 0..batch.num_rows() {
            counts.rows_in += 1;
            let id = ids.value(i);
            if tokens.is_null(i) || ids.is_null(i) {
                counts.quarantined += 1;
                ctx.quarantine(input, counts.rows_in - 1, "the document's id or text is null", id)
                    .await?;
                continue;
            }
            let list = tokens.value(i);
            let doc_ids = list.as_primitive::<UInt32Type>().values();
            if doc_ids.is_empty() {
                counts.filter("empty_text");
                continue;
            }
            let source = if sources.is_null(i) {
                "unknown"
            } else {
                sources.value(i)
            };
            let split = if is_validation(id, self.config.validation_fraction) {
                "validation"
            } else {
                "train"
            };
            let key = (source.to_string(), split);
            if !shards.writers.contains_key(&key) {
                let base = format!("{}-{}-{split}", ctx.part_prefix(), file_safe(source));
                let writer = TokenShardWriter::new(ctx.main_dir(), &base, shards.width, shards.eos);
                shards.writers.insert(key.clone(), (base, writer));
            }
            let Some((base, writer)) = shards.writers.get_mut(&key) else {
                continue;
            };
            let document = writer.documents();
            writer
                .push(doc_ids)
                .await
                .map_err(|e| StageError::Other(e.to_string()))?;
            counts.kept += 1;
            out_id.append_value(id);
            out_source.append_value(source);
            out_split.append_value(split);
            out_shard.append_value(base.as_str());
            out_document.append_value(document);
            out_tokens.append_value(doc_ids.len() as u64 + 1);
        }
        ctx.progress.add_docs(batch.num_rows() as u64);
        let rows = RecordBatch::try_new(
            documents_schema(),
            vec![
                Arc::new(out_id.finish()),
                Arc::new(out_source.finish()),
                Arc::new(out_split.finish()),
                Arc::new(out_shard.finish()),
                Arc::new(out_document.finish()),
                Arc::new(out_tokens.finish()),
            ],
        )?;
        ctx.write(&rows).await?;
        Ok(())
    }
}

/// Builders of the `shards` table.
#[derive(Default)]
struct ShardRows {
    shard: StringBuilder,
    source: StringBuilder,
    split: StringBuilder,
    documents: UInt64Builder,
    tokens: UInt64Builder,
    width: UInt32Builder,
    sha: StringBuilder,
}

impl ShardRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        shard: &str,
        source: &str,
        split: &str,
        documents: u64,
        tokens: u64,
        width: TokenWidth,
        sha: &str,
    ) {
        self.shard.append_value(shard);
        self.source.append_value(source);
        self.split.append_value(split);
        self.documents.append_value(documents);
        self.tokens.append_value(tokens);
        self.width.append_value(width.bytes() as u32);
        self.sha.append_value(sha);
    }

    fn finish(mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        RecordBatch::try_new(
            shards_schema(),
            vec![
                Arc::new(self.shard.finish()),
                Arc::new(self.source.finish()),
                Arc::new(self.split.finish()),
                Arc::new(self.documents.finish()),
                Arc::new(self.tokens.finish()),
                Arc::new(self.width.finish()),
                Arc::new(self.sha.finish()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_split_is_a_stable_fraction_of_ids() {
        let n = 100_000;
        let held = (0..n)
            .filter(|i| is_validation(&format!("c4/x.json.gz#{i}"), 0.01))
            .count();
        assert!((held as f64 / n as f64 - 0.01).abs() < 0.002, "{held}");
        assert!(!(0..1000).any(|i| is_validation(&format!("{i}"), 0.0)));
        assert_eq!(is_validation("abc", 0.5), is_validation("abc", 0.5));
    }

    #[test]
    fn source_names_are_made_safe_for_file_names() {
        assert_eq!(file_safe("c4"), "c4");
        assert_eq!(file_safe("stack/exchange.x"), "stack_exchange_x");
    }
}
