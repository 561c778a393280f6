//! Datasets in the output root and how they are committed.
//!
//! A unit writes its Parquet parts under deterministic names
//! (`part-<unit hash>-<seq>.parquet`; each put is atomic on every object
//! store), then the engine writes the unit's commit record
//! (`<stage>/_commits/<unit hash>.json`), which is the commit point: a unit
//! without a record is redone from its start, overwriting the same names, so a
//! killed run neither loses nor duplicates a document. When every unit of a
//! stage is committed, `_manifest.json` in each of its dataset folders lists
//! the files, rows, schema and fingerprints; a stage whose manifest matches its
//! current inputs and config is up to date.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::stage::UnitCounts;
use crate::store::Location;

/// Errors raised while writing or reading datasets.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Parquet encoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A batch did not fit the schema.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A manifest or commit record could not be (de)serialized.
    #[error("{path}: {source}")]
    Json {
        /// The record's path.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A stage wrote to an output it did not declare.
    #[error("the stage has no output named `{0}`")]
    UnknownOutput(String),
}

/// Rows per Parquet file before a unit's output rolls over to the next part.
const MAX_ROWS_PER_PART: usize = 1_000_000;
/// Encoded bytes per Parquet file before rolling over.
const MAX_BYTES_PER_PART: usize = 512 << 20;
/// Buffered bytes before a row group is flushed: what bounds a writer's memory
/// (64k rows of web pages would otherwise buffer ~150 MB per unit).
const MAX_ROW_GROUP_BYTES: usize = 32 << 20;

/// The folder layout of an output root.
#[derive(Debug, Clone)]
pub struct OutputRoot {
    /// The root itself.
    pub root: Location,
}

impl OutputRoot {
    /// The folder of dataset `name` (`c4`, `c4__quarantine`, `wikipedia__refs`).
    pub fn dataset(&self, name: &str) -> Location {
        self.root.join(&format!("datasets/{name}"))
    }

    /// Where `stage` keeps its unit commit records.
    pub fn commits(&self, stage: &str) -> Location {
        self.root.join(&format!("datasets/{stage}/_commits"))
    }

    /// The run ledger's folder.
    pub fn ledger(&self) -> Location {
        self.root.join("ledger")
    }
}

/// The dataset folder name of a stage's output: `stage` or `stage__output`.
pub fn dataset_name(stage: &str, output: Option<&str>) -> String {
    match output {
        None => stage.to_string(),
        Some(o) => format!("{stage}__{o}"),
    }
}

/// One committed Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartFile {
    /// File name inside the dataset folder.
    pub name: String,
    /// Rows in it.
    pub rows: u64,
    /// Bytes on the store.
    pub bytes: u64,
}

/// Writes one unit's rows for one dataset as Parquet parts, rolling over by size.
pub struct PartWriter {
    dir: Location,
    dataset: String,
    prefix: String,
    schema: SchemaRef,
    current: Option<(AsyncArrowWriter<BufWriter>, String, u64)>,
    done: Vec<PartFile>,
}

impl PartWriter {
    /// A writer for dataset `dataset` in folder `dir`, naming parts `<prefix>-<seq>.parquet`.
    pub fn new(dir: Location, dataset: String, prefix: String, schema: SchemaRef) -> Self {
        PartWriter {
            dir,
            dataset,
            prefix,
            schema,
            current: None,
            done: Vec::new(),
        }
    }

    /// The dataset this writer writes.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The folder it writes into.
    pub fn dir(&self) -> &Location {
        &self.dir
    }

    /// The schema it writes.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Appends a batch (empty batches are skipped; no rows means no file).
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            let name = format!("{}-{:05}.parquet", self.prefix, self.done.len());
            let path = self.dir.join(&name).path;
            // Document text and ids are nearly all distinct: dictionaries and
            // min/max statistics on them cost time and buy nothing.
            let mut props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(64 * 1024));
            for column in ["text", "id", "excerpt"] {
                if self.schema.column_with_name(column).is_some() {
                    let path = ColumnPath::from(column);
                    props = props
                        .set_column_dictionary_enabled(path.clone(), false)
                        .set_column_statistics_enabled(path, EnabledStatistics::None);
                }
            }
            let props = props.build();
            let writer = AsyncArrowWriter::try_new(
                BufWriter::new(self.dir.store.clone(), path),
                self.schema.clone(),
                Some(props),
            )?;
            self.current = Some((writer, name, 0));
        }
        if let Some((writer, _, rows)) = self.current.as_mut() {
            writer.write(batch).await?;
            *rows += batch.num_rows() as u64;
            if writer.in_progress_size() >= MAX_ROW_GROUP_BYTES {
                writer.flush().await?;
            }
            if *rows as usize >= MAX_ROWS_PER_PART
                || writer.bytes_written() + writer.in_progress_size() >= MAX_BYTES_PER_PART
            {
                self.close_current().await?;
            }
        }
        Ok(())
    }

    async fn close_current(&mut self) -> Result<(), DatasetError> {
        if let Some((writer, name, rows)) = self.current.take() {
            writer.close().await?;
            let bytes = self.dir.store.head(&self.dir.join(&name).path).await?.size;
            self.done.push(PartFile { name, rows, bytes });
        }
        Ok(())
    }

    /// Closes the open part; returns every part written.
    pub async fn finish(mut self) -> Result<Vec<PartFile>, DatasetError> {
        self.close_current().await?;
        Ok(self.done)
    }
}

/// The commit record of one unit: the point after which it is never redone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitCommit {
    /// The unit's key.
    pub unit: String,
    /// Hash of the key (the part files' prefix).
    pub unit_hash: String,
    /// The unit's input fingerprint when committed.
    pub unit_fingerprint: String,
    /// The stage's config fingerprint when committed.
    pub config_fingerprint: String,
    /// The run that committed it.
    pub run_id: String,
    /// When.
    pub committed_at: String,
    /// The parts written, per dataset folder.
    pub outputs: BTreeMap<String, Vec<PartFile>>,
    /// Its counts.
    pub counts: UnitCounts,
    /// Input bytes read.
    pub bytes_in: u64,
}

/// A column of a dataset's schema, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestColumn {
    /// Column name.
    pub name: String,
    /// Arrow type, as Arrow prints it.
    pub data_type: String,
    /// Nullable or not.
    pub nullable: bool,
}

/// A file listed in a dataset manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the dataset folder.
    pub name: String,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// The unit that wrote it.
    pub unit: String,
    /// Changes whenever the file's content may have: the unit and config fingerprints.
    pub fingerprint: String,
}

/// `_manifest.json` of a dataset folder: what a complete stage run committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// The dataset (folder) name.
    pub dataset: String,
    /// The stage that writes it.
    pub stage: String,
    /// That stage's type.
    pub stage_type: String,
    /// The stage's config fingerprint.
    pub config_fingerprint: String,
    /// Fingerprint over every unit's input fingerprint.
    pub inputs_fingerprint: String,
    /// The run that completed it.
    pub run_id: String,
    /// When.
    pub committed_at: String,
    /// Its schema.
    pub schema: Vec<ManifestColumn>,
    /// Its files, in unit order.
    pub files: Vec<ManifestFile>,
    /// Total rows.
    pub rows: u64,
    /// The stage's counts summed over units (kept, filtered by rule, quarantined).
    pub counts: UnitCounts,
    /// Input bytes read over all units.
    pub bytes_in: u64,
}

/// Describes a schema for a manifest.
pub fn manifest_columns(schema: &SchemaRef) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Reads a JSON record, `None` when it does not exist.
pub async fn read_json<T: for<'de> Deserialize<'de>>(loc: &Location) -> Result<Option<T>, DatasetError> {
    match loc.store.get(&loc.path).await {
        Ok(res) => {
            let bytes = res.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| DatasetError::Json {
                    path: loc.url.to_string(),
                    source,
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes a JSON record atomically (one put), replacing any previous one.
pub async fn write_json<T: Serialize>(loc: &Location, value: &T) -> Result<(), DatasetError> {
    let mut bytes = serde_json::to_vec(value).map_err(|source| DatasetError::Json {
        path: loc.url.to_string(),
        source,
    })?;
    bytes.push(b'\n');
    loc.store.put(&loc.path, PutPayload::from(Bytes::from(bytes))).await?;
    Ok(())
}

/// Lists the names of the objects directly in `dir` (not recursive).
pub async fn list_names(dir: &Location) -> Result<Vec<(String, StorePath)>, DatasetError> {
    let listed = dir.store.list_with_delimiter(Some(&dir.path)).await?;
    Ok(listed
        .objects
        .into_iter()
        .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.location.clone())))
        .collect())
}

/// Commit records read at once (one GET each; a CommonCrawl stage has ~90k).
const CONCURRENT_READS: usize = 32;

/// Reads every unit commit record of `stage`.
pub async fn read_commits(root: &OutputRoot, stage: &str) -> Result<Vec<UnitCommit>, DatasetError> {
    use futures::StreamExt;
    let dir = root.commits(stage);
    let reads = list_names(&dir)
        .await?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .map(|(_, path)| {
            let loc = dir.with_path(path);
            async move { read_json::<UnitCommit>(&loc).await }
        });
    let results: Vec<Result<Option<UnitCommit>, DatasetError>> = futures::stream::iter(reads)
        .buffer_unordered(CONCURRENT_READS)
        .collect()
        .await;
    let mut commits = Vec::with_capacity(results.len());
    for result in results {
        commits.extend(result?);
    }
    Ok(commits)
}

/// Deletes the data files in `dir` that `keep` does not name (left by killed
/// runs or by units whose input disappeared). Bookkeeping (`_*`) is untouched.
pub async fn delete_unlisted(dir: &Location, keep: &std::collections::BTreeSet<String>) -> Result<usize, DatasetError> {
    let mut deleted = 0;
    for (name, path) in list_names(dir).await? {
        if name.starts_with('_') || name.starts_with('.') || keep.contains(&name) {
            continue;
        }
        match dir.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

/// Lists every object under `dir`, recursively.
pub async fn list_recursive(dir: &Location) -> Result<Vec<object_store::ObjectMeta>, DatasetError> {
    Ok(dir.store.list(Some(&dir.path)).try_collect().await?)
}
