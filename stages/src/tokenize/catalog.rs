//! The token shards a `tokenize` stage committed, found through its `shards`
//! table, and opened for the mixture reader or an export (local output roots:
//! shards are memory-mapped).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use llamaflow_pipeline::dataset::DatasetManifest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::mixture::MixtureSource;
use super::shard::{ShardError, TokenShard};

/// Errors finding or opening a stage's shards.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The stage has no committed `shards` table.
    #[error("{0}: no committed shards (run the tokenize stage first)")]
    NotCommitted(String),
    /// A file could not be read.
    #[error("{path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Shards were made by different tokenizers.
    #[error("the shards were made by {0} different tokenizers: re-run the tokenize stage")]
    MixedTokenizers(usize),
    /// A shard failed to open.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// One row of a `shards` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntry {
    /// The shard's base name (`<name>.tokens`, `<name>.index`).
    pub shard: String,
    /// Its source.
    pub source: String,
    /// `train` or `validation`.
    pub split: String,
    /// Documents in it.
    pub documents: u64,
    /// Tokens in it, `</s>` included.
    pub tokens: u64,
    /// SHA-256 of the tokenizer that made it.
    pub tokenizer_sha256: String,
}

/// A tokenize stage's committed shards in a local output root.
#[derive(Debug, Clone)]
pub struct ShardCatalog {
    /// The stage's dataset folder, where the shard files are.
    pub dir: PathBuf,
    /// Every shard, sorted by name.
    pub entries: Vec<ShardEntry>,
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Unreadable {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl ShardCatalog {
    /// Reads stage `stage`'s shards table under the local output root `root`.
    pub fn load(root: &Path, stage: &str) -> Result<Self, CatalogError> {
        let datasets = root.join("datasets");
        let table_dir = datasets.join(format!("{stage}__shards"));
        let manifest_path = table_dir.join("_manifest.json");
        let text = match std::fs::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CatalogError::NotCommitted(table_dir.display().to_string()));
            }
            Err(e) => return Err(unreadable(&manifest_path, e)),
        };
        let manifest: DatasetManifest = serde_json::from_str(&text).map_err(|e| unreadable(&manifest_path, e))?;
        let mut entries = Vec::new();
        for file in &manifest.files {
            let path = table_dir.join(&file.name);
            let reader = std::fs::File::open(&path)
                .map_err(|e| unreadable(&path, e))
                .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| unreadable(&path, e)))
                .and_then(|b| b.build().map_err(|e| unreadable(&path, e)))?;
            for batch in reader {
                let batch = batch.map_err(|e| unreadable(&path, e))?;
                entries.extend(entries_of(&batch).map_err(|e| unreadable(&path, e))?);
            }
        }
        entries.sort_by(|a, b| a.shard.cmp(&b.shard));
        let tokenizers: std::collections::BTreeSet<&str> =
            entries.iter().map(|e| e.tokenizer_sha256.as_str()).collect();
        if tokenizers.len() > 1 {
            return Err(CatalogError::MixedTokenizers(tokenizers.len()));
        }
        Ok(ShardCatalog {
            dir: datasets.join(stage),
            entries,
        })
    }

    /// Tokens per source in `split`.
    pub fn tokens_by_source(&self, split: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.split == split) {
            *out.entry(e.source.clone()).or_default() += e.tokens;
        }
        out
    }

    /// Opens the shards of `split`, grouped by source (each source's shards in name order).
    pub fn open(&self, split: &str) -> Result<Vec<MixtureSource>, CatalogError> {
        let mut by_source: BTreeMap<String, Vec<Arc<TokenShard>>> = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.split == split) {
            let shard = TokenShard::open(&self.dir.join(&e.shard))?;
            by_source.entry(e.source.clone()).or_default().push(Arc::new(shard));
        }
        Ok(by_source
            .into_iter()
            .map(|(name, shards)| MixtureSource { name, shards })
            .collect())
    }
}

fn entries_of(batch: &RecordBatch) -> Result<Vec<ShardEntry>, arrow::error::ArrowError> {
    let column = |name: &str, ty: &DataType| {
        batch
            .column_by_name(name)
            .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("no `{name}` column")))
            .and_then(|c| arrow::compute::cast(c, ty))
    };
    let (shard, source, split, sha) = (
        column("shard", &DataType::Utf8)?,
        column("source", &DataType::Utf8)?,
        column("split", &DataType::Utf8)?,
        column("tokenizer_sha256", &DataType::Utf8)?,
    );
    let (documents, tokens) = (
        column("documents", &DataType::UInt64)?,
        column("tokens", &DataType::UInt64)?,
    );
    let text = |a: &arrow::array::ArrayRef, i: usize| a.as_string::<i32>().value(i).to_string();
    Ok((0..batch.num_rows())
        .filter(|&i| shard.is_valid(i))
        .map(|i| ShardEntry {
            shard: text(&shard, i),
            source: text(&source, i),
            split: text(&split, i),
            documents: documents.as_primitive::<UInt64Type>().value(i),
            tokens: tokens.as_primitive::<UInt64Type>().value(i),
            tokenizer_sha256: text(&sha, i),
        })
        .collect())
}
