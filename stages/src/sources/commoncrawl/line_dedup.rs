//! CCNet's line-level dedup over a dedup group of files: a line is dropped
//! when a line with the same normalized text came earlier in the group, by
//! (file order, line order).
//!
//! Two passes, so the result is the same whatever `--jobs` is. Pass 1 hashes
//! every line (in parallel over files) into scratch Parquet of (hash,
//! position); two DataFusion queries over it then give the group's hash counts
//! (the `line_hashes` output) and, sorted by position, every line that is not
//! the first of its hash. Both queries sort or aggregate under the session's
//! memory pool and spill past it, so memory does not grow with the group.
//! Pass 2 reads the files again in order and skips the listed lines.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use llamaflow_pipeline::StageError;
use parquet::arrow::ArrowWriter;
use sha1::{Digest, Sha1};
use tempfile::TempDir;
use unicode_normalization::UnicodeNormalization;

/// Bits of a position that hold the line's ordinal within its file.
const LINE_BITS: u32 = 40;
/// Lines hashed per scratch batch.
const BATCH_LINES: usize = 64 * 1024;

/// CCNet's normalization for line dedup: trimmed, lowercase, accents
/// stripped, every digit `0`, punctuation and non-printing characters removed.
pub fn normalize_line(line: &str) -> String {
    let line = line.trim();
    if line.is_ascii() {
        // Most lines: no accents to strip, and ASCII's own case, digit and
        // punctuation classes give what the general path gives.
        return line
            .bytes()
            .filter_map(|b| match b {
                b'0'..=b'9' => Some('0'),
                _ if b.is_ascii_punctuation() || b.is_ascii_control() => None,
                _ => Some(char::from(b.to_ascii_lowercase())),
            })
            .collect();
    }
    normalize_unicode_line(line)
}

/// [`normalize_line`] for any text.
fn normalize_unicode_line(line: &str) -> String {
    line.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter_map(|c| {
            if c.is_numeric() {
                Some('0')
            } else if is_punctuation(c) || c.is_control() || is_non_printing(c) {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// ASCII punctuation and the Unicode punctuation blocks (general punctuation,
/// CJK symbols and punctuation, fullwidth forms' punctuation), plus the
/// characters CCNet lists among its Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x2010..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
        || matches!(c, '«' | '»' | '´' | '∶' | '━' | '►' | '¡' | '¿' | '·' | '§' | '¶')
}

/// Zero-width and other format characters that print as nothing.
fn is_non_printing(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xAD)
}

/// A line's dedup key: the first 8 bytes of SHA-1 of its normalized text, as
/// CCNet keeps them (read as a little-endian integer, as numpy does there).
pub fn line_hash(line: &str) -> u64 {
    let digest = Sha1::digest(normalize_line(line).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// A line's place in its group: the file's index in group order, then the
/// line's ordinal within the file (both from 0).
pub fn position(file: u32, line: u64) -> u64 {
    (u64::from(file) << LINE_BITS) | (line & ((1 << LINE_BITS) - 1))
}

/// The file index of a [`position`].
pub fn position_file(position: u64) -> u32 {
    // The shift leaves at most 24 bits: the cast cannot truncate.
    (position >> LINE_BITS) as u32
}

/// The line ordinal of a [`position`].
pub fn position_line(position: u64) -> u64 {
    position & ((1 << LINE_BITS) - 1)
}

/// The largest group, in files, that positions can tell apart.
pub const MAX_GROUP_FILES: usize = 1 << (64 - LINE_BITS);

fn hashes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::UInt64, false),
        Field::new("position", DataType::UInt64, false),
    ]))
}

/// The scratch Parquet of one group's line hashes, one file per input.
pub struct LineHashes {
    folder: TempDir,
    table: String,
    lines: u64,
}

impl LineHashes {
    /// An empty set, registered in a session as `table` once hashed.
    pub fn new(table: String) -> Result<Self, StageError> {
        let folder = tempfile::Builder::new()
            .prefix("llamaflow-line-hashes-")
            .tempdir()
            .map_err(|e| StageError::Other(format!("cannot create a scratch folder for line dedup: {e}")))?;
        Ok(LineHashes {
            folder,
            table,
            lines: 0,
        })
    }

    /// The scratch folder, where [`HashWriter::create`] puts each file's hashes.
    pub fn folder(&self) -> PathBuf {
        self.folder.path().to_path_buf()
    }

    /// A writer for the lines of the group's file number `file`.
    pub fn writer(&self, file: u32) -> Result<HashWriter, StageError> {
        HashWriter::create(&self.folder(), file)
    }

    /// Records how many lines a finished writer wrote.
    pub fn add_lines(&mut self, lines: u64) {
        self.lines += lines;
    }

    /// Lines hashed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    async fn register(&self, session: &SessionContext) -> Result<(), StageError> {
        let _ = session.deregister_table(self.table.as_str());
        let folder = self.folder.path().to_string_lossy().into_owned();
        session
            .register_parquet(self.table.as_str(), &folder, ParquetReadOptions::default())
            .await?;
        Ok(())
    }

    /// Per distinct hash: how many lines have it and the first one's position, in no particular order.
    pub async fn counts(&self, session: &SessionContext) -> Result<SendableRecordBatchStream, StageError> {
        self.register(session).await?;
        let sql = format!(
            "SELECT hash, count(*) AS lines, min(position) AS first FROM {} GROUP BY hash",
            self.table
        );
        Ok(session.sql(&sql).await?.execute_stream().await?)
    }

    /// Every line that repeats an earlier one, as positions in increasing order.
    pub async fn repeats(&self, session: &SessionContext) -> Result<RepeatedLines, StageError> {
        self.register(session).await?;
        let sql = format!(
            "SELECT position FROM (SELECT position, row_number() OVER (PARTITION BY hash ORDER BY position) AS nth \
             FROM {}) WHERE nth > 1 ORDER BY position",
            self.table
        );
        Ok(RepeatedLines {
            stream: session.sql(&sql).await?.execute_stream().await?,
            carry: Vec::new(),
            done: false,
        })
    }

    /// Removes the table from `session` (the folder goes when this is dropped).
    pub fn drop_table(&self, session: &SessionContext) {
        let _ = session.deregister_table(self.table.as_str());
    }
}

/// Writes one input's (hash, position) pairs.
pub struct HashWriter {
    writer: ArrowWriter<File>,
    path: PathBuf,
    file: u32,
    line: u64,
    hashes: Vec<u64>,
    positions: Vec<u64>,
}

impl HashWriter {
    /// A writer for the group's file number `file`, into the scratch `folder`.
    pub fn create(folder: &Path, file: u32) -> Result<Self, StageError> {
        let path = folder.join(format!("file-{file:08}.parquet"));
        let out = File::create(&path).map_err(|e| scratch(&path, e))?;
        let writer = ArrowWriter::try_new(out, hashes_schema(), None).map_err(|e| scratch(&path, e))?;
        Ok(HashWriter {
            writer,
            path,
            file,
            line: 0,
            hashes: Vec::with_capacity(BATCH_LINES),
            positions: Vec::with_capacity(BATCH_LINES),
        })
    }

    /// Hashes the next line of the file.
    pub fn push(&mut self, line: &str) -> Result<(), StageError> {
        self.hashes.push(line_hash(line));
        self.positions.push(position(self.file, self.line));
        self.line += 1;
        if self.hashes.len() >= BATCH_LINES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StageError> {
        if self.hashes.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            hashes_schema(),
            vec![
                Arc::new(UInt64Array::from(std::mem::take(&mut self.hashes))),
                Arc::new(UInt64Array::from(std::mem::take(&mut self.positions))),
            ],
        )?;
        self.writer.write(&batch).map_err(|e| scratch(&self.path, e))
    }

    /// Closes the file; returns the number of lines hashed.
    pub fn finish(mut self) -> Result<u64, StageError> {
        self.flush()?;
        self.writer.close().map_err(|e| scratch(&self.path, e))?;
        Ok(self.line)
    }
}

/// The sorted positions of repeated lines, taken one file at a time.
pub struct RepeatedLines {
    stream: SendableRecordBatchStream,
    carry: Vec<u64>,
    done: bool,
}

impl RepeatedLines {
    /// The line ordinals of file `file` to drop, in increasing order; files
    /// must be asked for in increasing order.
    pub async fn for_file(&mut self, file: u32) -> Result<Vec<u64>, StageError> {
        let mut lines = Vec::new();
        loop {
            let split = self.carry.partition_point(|p| position_file(*p) <= file);
            lines.extend(
                self.carry[..split]
                    .iter()
                    .filter(|p| position_file(**p) == file)
                    .map(|p| position_line(*p)),
            );
            let rest_starts_later = split < self.carry.len();
            self.carry.drain(..split);
            if rest_starts_later || self.done {
                return Ok(lines);
            }
            match self.stream.next().await {
                Some(batch) => {
                    let batch = batch?;
                    self.carry
                        .extend(batch.column(0).as_primitive::<UInt64Type>().values().iter().copied());
                }
                None => self.done = true,
            }
        }
    }
}

fn scratch(path: &Path, e: impl std::fmt::Display) -> StageError {
    StageError::Other(format!("line dedup scratch file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_is_cc_nets() {
        assert_eq!(normalize_line("  Hello, World!  "), "hello world");
        assert_eq!(normalize_line("Posted 12/03/2019 — Café"), "posted 00000000  cafe");
        assert_eq!(normalize_line("«Ça va?»"), "ca va");
        assert_eq!(normalize_line("zero\u{200b}width"), "zerowidth");
        assert_eq!(normalize_line(""), "");
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_general_one() {
        let all_ascii: String = (0u8..128).map(char::from).collect();
        for line in [
            all_ascii.as_str(),
            "  Hello, World! 42 \t",
            "a\u{7f}b\u{1b}[0m",
            "MiXeD-case_under~score",
        ] {
            assert_eq!(normalize_line(line), normalize_unicode_line(line.trim()), "{line:?}");
        }
    }

    #[test]
    fn lines_that_normalize_alike_share_a_hash() {
        assert_eq!(
            line_hash("Copyright 2019 ACME, Inc."),
            line_hash("copyright 2023 acme inc")
        );
        assert_ne!(line_hash("Copyright ACME"), line_hash("Copyright ACNE"));
        // CCNet's value: the first 8 bytes of SHA-1("") read little-endian.
        assert_eq!(
            line_hash("   "),
            u64::from_le_bytes([0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d])
        );
    }

    #[test]
    fn positions_order_by_file_then_line() {
        assert!(position(0, 5) < position(1, 0));
        assert!(position(1, 0) < position(1, 1));
        assert_eq!(position_file(position(7, 9)), 7);
        assert_eq!(position_line(position(7, 9)), 9);
    }

    #[tokio::test]
    async fn repeats_are_every_occurrence_after_the_first_in_group_order() {
        let session = SessionContext::new();
        let mut hashes = LineHashes::new("t".into()).unwrap();
        // File 1 is written first: the order of writing must not matter.
        for (file, lines) in [(1u32, ["b", "A.", "c"]), (0, ["a", "x", "B"])] {
            let mut w = hashes.writer(file).unwrap();
            for l in lines {
                w.push(l).unwrap();
            }
            hashes.add_lines(w.finish().unwrap());
        }
        assert_eq!(hashes.lines(), 6);
        let mut repeats = hashes.repeats(&session).await.unwrap();
        assert_eq!(repeats.for_file(0).await.unwrap(), Vec::<u64>::new());
        assert_eq!(repeats.for_file(1).await.unwrap(), vec![0, 1]);
        let counts: Vec<RecordBatch> = hashes
            .counts(&session)
            .await
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
            .await;
        let rows: usize = counts.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 4);
        hashes.drop_table(&session);
    }
}
