//! Export of token shards to Megatron-LM's indexed dataset: `<prefix>.bin` and `<prefix>.idx`, the
//! "MMIDIDX" layout that `megatron/core/datasets/indexed_dataset.py` (`_IndexWriter`, `_IndexReader`,
//! `DType`) in NVIDIA/Megatron-LM writes and reads.
//!
//! `.bin` holds the token ids, one sequence per document, each copied as it is in our shards (`</s>`
//! included), so it is our shards' token files concatenated. `.idx`, little-endian:
//!
//! | field | type |
//! |---|---|
//! | magic `MMIDIDX\0\0` | 9 bytes |
//! | version = 1 | `u64` |
//! | dtype code of `.bin` | `u8` |
//! | sequence count `S` | `u64` |
//! | document count `D = S + 1` | `u64` |
//! | sequence lengths (tokens) | `int32[S]` |
//! | sequence pointers (bytes into `.bin`) | `int64[S]` |
//! | document indices `0, 1, ..., S` | `int64[D]` |
//!
//! The dtype follows our token width: `u16` shards export as code 8 (`np.uint16`), which Megatron's
//! `DType.optimal_dtype` also picks for vocabularies such as LLaMA's; `u32` shards as code 4
//! (`np.int32`), Megatron's choice for larger ones, since it has no `uint32` code. Ids above
//! `i32::MAX` would read back negative, so they are refused.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::shard::{TokenShard, TokenWidth};

/// The `.idx` magic bytes.
pub const MEGATRON_MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// The `.idx` layout version Megatron writes and accepts.
pub const MEGATRON_VERSION: u64 = 1;
/// Bytes of the `.idx` header before the lengths.
pub const MEGATRON_HEADER_BYTES: usize = 9 + 8 + 1 + 8 + 8;
/// Megatron's dtype code of `np.uint16`.
pub const DTYPE_UINT16: u8 = 8;
/// Megatron's dtype code of `np.int32`.
pub const DTYPE_INT32: u8 = 4;

/// Bytes copied at a time from a shard into `.bin`.
const COPY_BYTES: usize = 8 << 20;

/// Errors exporting to or reading Megatron's indexed dataset.
#[derive(Debug, thiserror::Error)]
pub enum MegatronError {
    /// A file could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// There is nothing to export.
    #[error("no shards to export")]
    NoShards,
    /// Shards of both token widths were given; one `.bin` has one dtype.
    #[error("{first} has {first_width:?} tokens but {other} has {other_width:?}: one export needs one width")]
    MixedWidths {
        /// The first shard.
        first: String,
        /// Its width.
        first_width: TokenWidth,
        /// A shard of the other width.
        other: String,
        /// Its width.
        other_width: TokenWidth,
    },
    /// A document does not fit Megatron's `int32` sequence length.
    #[error("{path}: document {document} has {tokens} tokens, more than Megatron's int32 lengths allow")]
    DocumentTooLong {
        /// The shard.
        path: String,
        /// The document's index in it.
        document: u64,
        /// Its tokens.
        tokens: u64,
    },
    /// A token id does not fit `np.int32`.
    #[error("{path}: token id {id} does not fit Megatron's int32 dtype")]
    TokenTooLarge {
        /// The shard.
        path: String,
        /// The id.
        id: u32,
    },
    /// An `.idx` or `.bin` disagrees with the layout.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MegatronSummary {
    /// The `.bin` file.
    pub bin_path: PathBuf,
    /// The `.idx` file.
    pub idx_path: PathBuf,
    /// Megatron's dtype code of `.bin`.
    pub dtype_code: u8,
    /// Documents (Megatron sequences) written.
    pub documents: u64,
    /// Tokens written, every `</s>` included.
    pub tokens: u64,
    /// Bytes of `.bin`.
    pub bin_bytes: u64,
    /// Bytes of `.idx`.
    pub idx_bytes: u64,
}

/// `path` with `suffix` appended to its file name (`prefix` may contain dots, so no `with_extension`).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// A file written under a temporary name in its final folder, renamed into place on `commit`, removed
/// if dropped before: a reader never sees half a file.
struct AtomicFile {
    temp: PathBuf,
    target: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    fn create(target: PathBuf) -> Result<Self, MegatronError> {
        let temp = suffixed(&target, &format!(".tmp-{}", std::process::id()));
        let file = File::create(&temp).map_err(|source| MegatronError::Io {
            path: temp.display().to_string(),
            source,
        })?;
        Ok(AtomicFile {
            temp,
            target,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), MegatronError> {
        let io = |source| MegatronError::Io {
            path: self.temp.display().to_string(),
            source,
        };
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(io),
            // `out` is only taken by `commit`, which consumes the file.
            None => Ok(()),
        }
    }

    /// Flushes, syncs and renames into place; returns the file's size.
    fn commit(mut self) -> Result<u64, MegatronError> {
        let temp_io = |source| MegatronError::Io {
            path: self.temp.display().to_string(),
            source,
        };
        let Some(out) = self.out.take() else {
            return Err(temp_io(std::io::Error::other("written twice")));
        };
        let file = out.into_inner().map_err(|e| temp_io(e.into_error()))?;
        file.sync_all().map_err(temp_io)?;
        let bytes = file.metadata().map_err(temp_io)?.len();
        std::fs::rename(&self.temp, &self.target).map_err(|source| MegatronError::Io {
            path: self.target.display().to_string(),
            source,
        })?;
        Ok(bytes)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            // Best effort: the export failed already and that error is the one to report.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `shards` (one width) as Megatron's `<out_prefix>.bin` and `<out_prefix>.idx`, each atomically.
pub fn export_megatron(shards: &[TokenShard], out_prefix: &Path) -> Result<MegatronSummary, MegatronError> {
    let first = shards.first().ok_or(MegatronError::NoShards)?;
    let width = first.width();
    if let Some(other) = shards.iter().find(|s| s.width() != width) {
        return Err(MegatronError::MixedWidths {
            first: first.path().display().to_string(),
            first_width: width,
            other: other.path().display().to_string(),
            other_width: other.width(),
        });
    }
    let dtype_code = match width {
        TokenWidth::U16 => DTYPE_UINT16,
        TokenWidth::U32 => DTYPE_INT32,
    };
    let mut documents = 0u64;
    let mut tokens = 0u64;
    for shard in shards {
        for d in 0..shard.documents() {
            let (start, end) = shard.document_range(d);
            if end - start > i32::MAX as u64 {
                return Err(MegatronError::DocumentTooLong {
                    path: shard.path().display().to_string(),
                    document: d,
                    tokens: end - start,
                });
            }
        }
        documents += shard.documents();
        tokens += shard.tokens();
    }

    let bin_path = suffixed(out_prefix, ".bin");
    let idx_path = suffixed(out_prefix, ".idx");
    let mut bin = AtomicFile::create(bin_path.clone())?;
    for shard in shards {
        let per_chunk = (COPY_BYTES / width.bytes()) as u64;
        let mut at = 0;
        while at < shard.tokens() {
            let end = shard.tokens().min(at + per_chunk);
            let raw = shard.raw(at, end);
            if width == TokenWidth::U32
                && let Some(id) = raw
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .find(|&id| id > i32::MAX as u32)
            {
                return Err(MegatronError::TokenTooLarge {
                    path: shard.path().display().to_string(),
                    id,
                });
            }
            bin.write(raw)?;
            at = end;
        }
    }

    // The index is streamed in three passes over the shards' offsets (memory-mapped), so a corpus of
    // billions of documents needs no index in memory.
    let mut idx = AtomicFile::create(idx_path.clone())?;
    idx.write(MEGATRON_MAGIC)?;
    idx.write(&MEGATRON_VERSION.to_le_bytes())?;
    idx.write(&[dtype_code])?;
    idx.write(&documents.to_le_bytes())?;
    idx.write(&(documents + 1).to_le_bytes())?;
    for shard in shards {
        for d in 0..shard.documents() {
            let (start, end) = shard.document_range(d);
            // Checked above: every length fits i32.
            idx.write(&((end - start) as i32).to_le_bytes())?;
        }
    }
    let mut pointer = 0i64;
    for shard in shards {
        for d in 0..shard.documents() {
            idx.write(&pointer.to_le_bytes())?;
            let (start, end) = shard.document_range(d);
            pointer += ((end - start) * width.bytes() as u64) as i64;
        }
    }
    for i in 0..=documents {
        idx.write(&(i as i64).to_le_bytes())?;
    }

    // `.bin` goes into place first, so an `.idx` next to it always describes a complete `.bin`.
    let bin_bytes = bin.commit()?;
    let idx_bytes = idx.commit()?;
    Ok(MegatronSummary {
        bin_path,
        idx_path,
        dtype_code,
        documents,
        tokens,
        bin_bytes,
        idx_bytes,
    })
}

/// A Megatron `.idx` file, parsed and checked against the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegatronIndex {
    /// The file it was read from.
    pub path: PathBuf,
    /// Megatron's dtype code of the `.bin`.
    pub dtype_code: u8,
    /// Tokens per sequence.
    pub lengths: Vec<i32>,
    /// Byte offset of each sequence in the `.bin`.
    pub pointers: Vec<i64>,
    /// Sequence indices at which documents start, then the sequence count.
    pub document_indices: Vec<i64>,
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl MegatronIndex {
    /// Reads and checks the `.idx` at `path`.
    pub fn read(path: &Path) -> Result<Self, MegatronError> {
        let bytes = std::fs::read(path).map_err(|source| MegatronError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let corrupt = |message: String| MegatronError::Corrupt {
            path: path.display().to_string(),
            message,
        };
        if bytes.len() < MEGATRON_HEADER_BYTES || &bytes[..9] != MEGATRON_MAGIC {
            return Err(corrupt("not a Megatron index (bad magic or short header)".into()));
        }
        let version = u64::from_le_bytes(le(&bytes, 9));
        if version != MEGATRON_VERSION {
            return Err(corrupt(format!("version {version}, {MEGATRON_VERSION} expected")));
        }
        let dtype_code = bytes[17];
        if dtype_size(dtype_code).is_none() {
            return Err(corrupt(format!("unknown dtype code {dtype_code}")));
        }
        let sequences = u64::from_le_bytes(le(&bytes, 18));
        let documents = u64::from_le_bytes(le(&bytes, 26));
        let expected = MEGATRON_HEADER_BYTES as u128 + sequences as u128 * (4 + 8) + documents as u128 * 8;
        if bytes.len() as u128 != expected {
            return Err(corrupt(format!(
                "{} bytes, but {sequences} sequences and {documents} documents need {expected}",
                bytes.len()
            )));
        }
        // The length check bounds both counts by the file size, so they fit usize.
        let (s, d) = (sequences as usize, documents as usize);
        let mut at = MEGATRON_HEADER_BYTES;
        let lengths = (0..s).map(|i| i32::from_le_bytes(le(&bytes, at + 4 * i))).collect();
        at += 4 * s;
        let pointers = (0..s).map(|i| i64::from_le_bytes(le(&bytes, at + 8 * i))).collect();
        at += 8 * s;
        let document_indices = (0..d).map(|i| i64::from_le_bytes(le(&bytes, at + 8 * i))).collect();
        Ok(MegatronIndex {
            path: path.to_path_buf(),
            dtype_code,
            lengths,
            pointers,
            document_indices,
        })
    }

    /// Sequences in the dataset.
    pub fn sequences(&self) -> usize {
        self.lengths.len()
    }

    /// Sequence `i`'s tokens from `bin`, the `.bin`'s bytes (`uint16` and `int32` dtypes only).
    pub fn sequence(&self, bin: &[u8], i: usize) -> Result<Vec<u32>, MegatronError> {
        let corrupt = |message: String| MegatronError::Corrupt {
            path: self.path.display().to_string(),
            message,
        };
        let (Some(&length), Some(&pointer)) = (self.lengths.get(i), self.pointers.get(i)) else {
            return Err(corrupt(format!("no sequence {i} among {}", self.sequences())));
        };
        let size = match self.dtype_code {
            DTYPE_UINT16 => 2,
            DTYPE_INT32 => 4,
            code => return Err(corrupt(format!("reading dtype code {code} is not supported"))),
        };
        let start = usize::try_from(pointer).map_err(|_| corrupt(format!("sequence {i} has pointer {pointer}")))?;
        let length = usize::try_from(length).map_err(|_| corrupt(format!("sequence {i} has length {length}")))?;
        let end = start
            .checked_add(length * size)
            .filter(|&e| e <= bin.len())
            .ok_or_else(|| corrupt(format!("sequence {i} ends past the .bin's {} bytes", bin.len())))?;
        let raw = &bin[start..end];
        Ok(match size {
            2 => raw
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .collect(),
            _ => raw
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
    }
}

/// Bytes per item of Megatron's dtype `code` (its `DType` enum), `None` for codes it does not define.
fn dtype_size(code: u8) -> Option<usize> {
    match code {
        1 | 2 => Some(1),
        3 | 8 => Some(2),
        4 | 7 => Some(4),
        5 | 6 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::shard::TokenShardWriter;

    fn local(dir: &Path) -> llamaflow_pipeline::store::Location {
        llamaflow_pipeline::store::StoreRegistry::default()
            .resolve(dir.to_str().unwrap(), dir)
            .unwrap()
    }

    /// Writes shards of `docs` (one shard per inner list) and returns them with every document, `</s>` included.
    async fn shards(dir: &Path, width: TokenWidth, docs: &[Vec<Vec<u32>>]) -> (Vec<TokenShard>, Vec<Vec<u32>>) {
        let loc = local(dir);
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for (i, shard_docs) in docs.iter().enumerate() {
            let base = format!("part-{i}-src-train-{}", width.bytes());
            let mut w = TokenShardWriter::new(&loc, &base, width, 2);
            for doc in shard_docs {
                w.push(doc).await.unwrap();
                expected.push(doc.iter().copied().chain([2]).collect());
            }
            w.finish().await.unwrap();
            out.push(TokenShard::open(&dir.join(base)).unwrap());
        }
        (out, expected)
    }

    #[tokio::test]
    async fn an_export_reads_back_document_for_document() {
        let dir = tempfile::tempdir().unwrap();
        let docs = vec![
            vec![vec![5, 6, 7], vec![], vec![31_999, 1]],
            vec![],
            vec![(0..1000).collect(), vec![9]],
        ];
        for (width, code, big) in [
            (TokenWidth::U16, DTYPE_UINT16, 65_535),
            (TokenWidth::U32, DTYPE_INT32, 100_000),
        ] {
            let mut docs = docs.clone();
            docs[2][1].push(big);
            let (shards, expected) = shards(dir.path(), width, &docs).await;
            let prefix = dir.path().join(format!("out.v1-{}", width.bytes()));
            let summary = export_megatron(&shards, &prefix).unwrap();
            assert_eq!(
                summary.bin_path,
                dir.path().join(format!("out.v1-{}.bin", width.bytes()))
            );
            assert_eq!((summary.documents, summary.tokens, summary.dtype_code), (5, 1012, code));
            assert_eq!(summary.bin_bytes, 1012 * width.bytes() as u64);
            assert_eq!(summary.idx_bytes, 34 + 5 * 12 + 6 * 8);

            let index = MegatronIndex::read(&summary.idx_path).unwrap();
            assert_eq!(index.dtype_code, code);
            assert_eq!(index.lengths, [4, 1, 3, 1001, 3]);
            assert_eq!(index.document_indices, [0, 1, 2, 3, 4, 5]);
            let bin = std::fs::read(&summary.bin_path).unwrap();
            assert_eq!(index.sequences(), expected.len());
            for (i, doc) in expected.iter().enumerate() {
                assert_eq!(&index.sequence(&bin, i).unwrap(), doc, "document {i}");
            }
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    #[tokio::test]
    async fn shards_of_two_widths_or_none_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, _) = shards(dir.path(), TokenWidth::U16, &[vec![vec![1]]]).await;
        let (b, _) = shards(dir.path(), TokenWidth::U32, &[vec![vec![1]]]).await;
        a.extend(b);
        let err = export_megatron(&a, &dir.path().join("out")).unwrap_err().to_string();
        assert!(
            err.contains("part-0-src-train-4.tokens") && err.contains("one width"),
            "{err}"
        );
        assert!(!dir.path().join("out.bin").exists());
        assert!(matches!(
            export_megatron(&[], &dir.path().join("out")),
            Err(MegatronError::NoShards)
        ));
    }

    #[tokio::test]
    async fn a_corrupt_or_truncated_index_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = shards(dir.path(), TokenWidth::U16, &[vec![vec![1, 2, 3], vec![4]]]).await;
        let summary = export_megatron(&s, &dir.path().join("out")).unwrap();
        let good = std::fs::read(&summary.idx_path).unwrap();

        std::fs::write(&summary.idx_path, &good[..good.len() - 3]).unwrap();
        let err = MegatronIndex::read(&summary.idx_path).unwrap_err().to_string();
        assert!(
            err.contains("out.idx") && err.contains("bytes, but 2 sequences"),
            "{err}"
        );

        std::fs::write(&summary.idx_path, &good[..20]).unwrap();
        let err = MegatronIndex::read(&summary.idx_path).unwrap_err().to_string();
        assert!(err.contains("out.idx") && err.contains("short header"), "{err}");

        let mut bad = good.clone();
        bad[0] = b'X';
        std::fs::write(&summary.idx_path, &bad).unwrap();
        let err = MegatronIndex::read(&summary.idx_path).unwrap_err().to_string();
        assert!(err.contains("out.idx") && err.contains("bad magic"), "{err}");

        // A pointer past the end of the .bin is caught when the sequence is read.
        let mut far = good.clone();
        far[34 + 2 * 4 + 8..34 + 2 * 4 + 16].copy_from_slice(&1_000i64.to_le_bytes());
        std::fs::write(&summary.idx_path, &far).unwrap();
        let index = MegatronIndex::read(&summary.idx_path).unwrap();
        let bin = std::fs::read(&summary.bin_path).unwrap();
        let err = index.sequence(&bin, 1).unwrap_err().to_string();
        assert!(err.contains("out.idx") && err.contains("past the .bin"), "{err}");
    }
}
