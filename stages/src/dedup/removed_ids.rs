//! The ids a dedup run removes, kept on disk as scratch Parquet so that
//! DataFusion joins the documents against them: the near-duplicate pass reads
//! the documents the exact pass kept, and the output is the documents minus
//! every removed id.
//!
//! The joins put the removed ids on the build side of a hash anti-join (they
//! are a fraction of the corpus, and their hash table is charged to the
//! session's memory pool); the documents, texts included, only stream through
//! the probe side, so neither pass holds the corpus.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use llamaflow_pipeline::StageError;
use parquet::arrow::ArrowWriter;
use tempfile::TempDir;

/// Removed ids, one scratch Parquet file per pass, joinable as one table.
pub struct RemovedIds {
    folder: TempDir,
    table: String,
    writer: Option<(ArrowWriter<File>, PathBuf)>,
}

impl RemovedIds {
    /// An empty set, its table registered in `session` as `table` once [`Self::seal`]ed.
    pub fn new(table: String) -> Result<Self, StageError> {
        let folder = tempfile::Builder::new()
            .prefix("llamaflow-removed-")
            .tempdir()
            .map_err(|e| StageError::Other(format!("cannot create a scratch folder for dedup: {e}")))?;
        Ok(RemovedIds {
            folder,
            table,
            writer: None,
        })
    }

    /// Adds the ids of `ids` (a string column) to the current pass's file.
    pub fn add(&mut self, ids: &ArrayRef) -> Result<(), StageError> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let path = self.folder.path().join(format!("pass-{}.parquet", self.files()?));
            let file = File::create(&path).map_err(|e| scratch(&path, e))?;
            let writer = ArrowWriter::try_new(file, schema(), None).map_err(|e| scratch(&path, e))?;
            self.writer = Some((writer, path));
        }
        let ids = arrow::compute::cast(ids, &DataType::Utf8)?;
        let batch = RecordBatch::try_new(schema(), vec![ids])?;
        if let Some((writer, path)) = self.writer.as_mut() {
            writer.write(&batch).map_err(|e| scratch(path, e))?;
        }
        Ok(())
    }

    /// Closes the current pass's file and (re)registers the table over every
    /// pass so far, so the next query sees all of them.
    pub async fn seal(&mut self, session: &SessionContext) -> Result<(), StageError> {
        if let Some((writer, path)) = self.writer.take() {
            writer.close().map_err(|e| scratch(&path, e))?;
        }
        let _ = session.deregister_table(self.table.as_str());
        if self.files()? == 0 {
            // No id removed yet: an empty table of the same schema.
            let empty = session.read_batch(RecordBatch::new_empty(schema()))?;
            session.register_table(self.table.as_str(), empty.into_view())?;
        } else {
            let folder = self.folder.path().to_str().ok_or_else(|| {
                StageError::Other(format!("scratch path {} is not UTF-8", self.folder.path().display()))
            })?;
            session
                .register_parquet(self.table.as_str(), folder, ParquetReadOptions::default())
                .await?;
        }
        Ok(())
    }

    /// The query of `documents` (a registered table or view with an `id`
    /// column) without the removed ids; `columns` is the select list over the
    /// documents' alias `d`. (SQL rather than a frame: a future holding
    /// `&self` would not be `Send`, the Parquet writer not being `Sync`.)
    pub fn without_removed(&self, documents: &str, columns: &str) -> String {
        // Removed ids on the left: the build side of the hash join.
        format!(
            "SELECT {columns} FROM {removed} r RIGHT ANTI JOIN {documents} d ON r.id = d.id",
            removed = self.table
        )
    }

    /// Deregisters the table; the scratch files go with `self`.
    pub fn drop_table(&self, session: &SessionContext) {
        let _ = session.deregister_table(self.table.as_str());
    }

    fn files(&self) -> Result<usize, StageError> {
        let entries = std::fs::read_dir(self.folder.path()).map_err(|e| scratch(self.folder.path(), e))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .count())
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]))
}

fn scratch(path: &Path, e: impl std::fmt::Display) -> StageError {
    StageError::Other(format!("cannot write dedup scratch file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};

    async fn ids_left(removed: &RemovedIds, session: &SessionContext) -> Vec<String> {
        let frame = session.sql(&removed.without_removed("docs", "d.id")).await.unwrap();
        let mut ids: Vec<String> = frame
            .collect()
            .await
            .unwrap()
            .iter()
            .flat_map(|b| {
                let col = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                col.as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn documents_lose_exactly_the_ids_of_every_sealed_pass() {
        let session = SessionContext::new();
        let docs = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("text", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(StringArray::from(vec!["1", "2", "3", "4"])),
            ],
        )
        .unwrap();
        session.register_batch("docs", docs).unwrap();
        let mut removed = RemovedIds::new("removed_test".into()).unwrap();
        removed.seal(&session).await.unwrap();
        assert_eq!(ids_left(&removed, &session).await, ["a", "b", "c", "d"]);

        removed
            .add(&(Arc::new(StringArray::from(vec!["b"])) as ArrayRef))
            .unwrap();
        removed.seal(&session).await.unwrap();
        assert_eq!(ids_left(&removed, &session).await, ["a", "c", "d"]);

        let two: ArrayRef = Arc::new(StringArray::from(vec!["d", "zz"]));
        removed.add(&two).unwrap();
        removed.seal(&session).await.unwrap();
        assert_eq!(ids_left(&removed, &session).await, ["a", "c"]);
    }
}
