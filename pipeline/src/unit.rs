//! A unit of work (an input file, or a chunk of one) and the context a stage
//! writes a unit's output through: the main dataset, the quarantine and any
//! named outputs, all staged until the engine commits the unit.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayBuilder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use crate::dataset::{DatasetError, PartFile, PartWriter};
use crate::document::{excerpt, quarantine_schema};
use crate::inputs::InputFile;
use crate::progress::Progress;
use crate::store::Location;

/// One unit of work: the files it reads and what identifies it across runs.
#[derive(Debug, Clone)]
pub struct WorkUnit {
    /// Stable key (the input's relative path, plus a chunk suffix when split).
    pub key: String,
    /// The files it reads.
    pub files: Vec<InputFile>,
    /// Changes when any input changes.
    pub fingerprint: String,
}

impl WorkUnit {
    /// A unit of one whole file.
    pub fn single(file: InputFile) -> Self {
        let fingerprint = short_hash(&format!("{}\0{}\0{}", file.relative, file.size, file.version));
        WorkUnit {
            key: file.relative.clone(),
            files: vec![file],
            fingerprint,
        }
    }

    /// One unit named `key` over every file (none when there are no files), for
    /// stages that must see all their input at once (dedup, tokenizer training).
    pub fn all_in_one(key: &str, mut files: Vec<InputFile>) -> Vec<Self> {
        if files.is_empty() {
            return Vec::new();
        }
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        let listing: String = files
            .iter()
            .map(|f| format!("{}\0{}\0{}\n", f.relative, f.size, f.version))
            .collect();
        vec![WorkUnit {
            key: key.to_string(),
            files,
            fingerprint: short_hash(&listing),
        }]
    }

    /// The name of this unit's part files and commit record: a hash of its key.
    pub fn hash(&self) -> String {
        short_hash(&self.key)
    }

    /// Total input bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// First 16 hex characters of SHA-256.
pub fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Rows of quarantine buffered before a batch is written.
const QUARANTINE_BATCH_ROWS: usize = 1024;

/// Where a stage writes one unit's output.
pub struct UnitContext {
    /// The stage's name (used in quarantine rows).
    pub stage: String,
    /// A DataFusion session for the stage's queries.
    pub session: SessionContext,
    /// Progress counters shown on the stage's bar.
    pub progress: Progress,
    main: PartWriter,
    quarantine: PartWriter,
    named: BTreeMap<String, PartWriter>,
    files: Vec<PartFile>,
    part_prefix: String,
    q_input_file: StringBuilder,
    q_offset: UInt64Builder,
    q_reason: StringBuilder,
    q_excerpt: StringBuilder,
}

impl std::fmt::Debug for UnitContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitContext")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl UnitContext {
    pub(crate) fn new(
        stage: String,
        session: SessionContext,
        progress: Progress,
        main: PartWriter,
        quarantine: PartWriter,
        named: BTreeMap<String, PartWriter>,
        part_prefix: String,
    ) -> Self {
        Self {
            stage,
            session,
            progress,
            main,
            quarantine,
            named,
            files: Vec::new(),
            part_prefix,
            q_input_file: StringBuilder::new(),
            q_offset: UInt64Builder::new(),
            q_reason: StringBuilder::new(),
            q_excerpt: StringBuilder::new(),
        }
    }

    /// The main output's schema.
    pub fn schema(&self) -> SchemaRef {
        self.main.schema()
    }

    /// Writes kept rows to the main output.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        self.main.write(batch).await
    }

    /// The main dataset's folder, where a stage puts files that are not Parquet
    /// (a tokenizer, token shards) next to its Parquet parts.
    pub fn main_dir(&self) -> &Location {
        self.main.dir()
    }

    /// `part-<unit hash>`: the prefix of every file this unit owns. Files named
    /// with it are removed when an interrupted unit is redone, so a stage that
    /// writes several files per unit names them `<prefix>-<suffix>`.
    pub fn part_prefix(&self) -> &str {
        &self.part_prefix
    }

    /// Writes `bytes` as file `name` of the main dataset (one atomic put) and
    /// lists it in the unit's commit with `rows` as its row count. `name` must be
    /// unique over the stage's units: use [`Self::part_prefix`] unless the stage
    /// has a single unit and its file needs a fixed name (`tokenizer.json`).
    pub async fn put_file(&mut self, name: &str, bytes: bytes::Bytes, rows: u64) -> Result<(), DatasetError> {
        let size = bytes.len() as u64;
        let location = self.main.dir().join(name);
        location
            .store
            .put(&location.path, object_store::PutPayload::from(bytes))
            .await?;
        self.add_file(PartFile {
            name: name.to_string(),
            rows,
            bytes: size,
        });
        Ok(())
    }

    /// Lists a file the stage wrote itself into [`Self::main_dir`] (with an
    /// atomic put or multipart upload) in the unit's commit.
    pub fn add_file(&mut self, file: PartFile) {
        self.files.push(file);
    }

    /// Writes rows to the named output `output`.
    pub async fn write_named(&mut self, output: &str, batch: &RecordBatch) -> Result<(), DatasetError> {
        match self.named.get_mut(output) {
            Some(w) => w.write(batch).await,
            None => Err(DatasetError::UnknownOutput(output.to_string())),
        }
    }

    /// Sends one bad record to the stage's quarantine, with where it was and why.
    pub async fn quarantine(
        &mut self,
        input_file: &str,
        input_offset: u64,
        reason: &str,
        text: &str,
    ) -> Result<(), DatasetError> {
        self.q_input_file.append_value(input_file);
        self.q_offset.append_value(input_offset);
        self.q_reason.append_value(reason);
        self.q_excerpt.append_value(excerpt(text));
        if self.q_offset.len() >= QUARANTINE_BATCH_ROWS {
            self.flush_quarantine().await?;
        }
        Ok(())
    }

    async fn flush_quarantine(&mut self) -> Result<(), DatasetError> {
        let rows = self.q_offset.len();
        if rows == 0 {
            return Ok(());
        }
        let mut stage = StringBuilder::new();
        for _ in 0..rows {
            stage.append_value(&self.stage);
        }
        let batch = RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(stage.finish()),
                Arc::new(self.q_input_file.finish()),
                Arc::new(self.q_offset.finish()),
                Arc::new(self.q_reason.finish()),
                Arc::new(self.q_excerpt.finish()),
            ],
        )?;
        self.quarantine.write(&batch).await
    }

    /// Closes every writer; returns the parts written, per output dataset folder.
    pub(crate) async fn finish(mut self) -> Result<BTreeMap<String, Vec<PartFile>>, DatasetError> {
        self.flush_quarantine().await?;
        let mut out = BTreeMap::new();
        let main_name = self.main.dataset().to_string();
        let mut main_files = self.main.finish().await?;
        main_files.append(&mut self.files);
        out.insert(main_name, main_files);
        let q_name = self.quarantine.dataset().to_string();
        out.insert(q_name, self.quarantine.finish().await?);
        for (_, w) in self.named {
            let name = w.dataset().to_string();
            out.insert(name, w.finish().await?);
        }
        Ok(out)
    }
}
