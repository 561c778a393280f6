//! The token shard layout: what the `tokenize` stage writes and the mixture
//! reader and the Megatron exporter read.
//!
//! A shard is two files side by side in the stage's dataset folder:
//!
//! - `part-<unit>-<source>-<split>.tokens`: the token ids, little-endian,
//!   2 bytes each when the vocabulary fits in `u16`, else 4; the documents
//!   one after another, each followed by `</s>`.
//! - `part-<unit>-<source>-<split>.index`: a 32-byte header, then `documents + 1`
//!   little-endian `u64` offsets (in tokens) of the document boundaries, so
//!   document `i` is `tokens[offsets[i]..offsets[i + 1]]` (O(1) random access).
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `LFTOKIDX` |
//! | 8..12 | layout version, `u32` = 1 |
//! | 12..16 | token width in bytes, `u32` = 2 or 4 |
//! | 16..24 | documents, `u64` |
//! | 24..32 | tokens, `u64` |
//! | 32.. | `documents + 1` offsets, `u64` |
//!
//! Both files are plain arrays, so they memory-map (numpy:
//! `np.memmap(path, dtype='<u2')`). Each is written with one atomic put or
//! multipart upload, and only listed once the unit commits.

use std::path::{Path, PathBuf};

use object_store::buffered::BufWriter;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use llamaflow_pipeline::store::Location;

/// The index file's magic bytes.
pub const INDEX_MAGIC: &[u8; 8] = b"LFTOKIDX";
/// The layout version written in every index.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes before the offsets in an index file.
pub const INDEX_HEADER_BYTES: usize = 32;

/// Errors reading or writing token shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A shard file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed while writing.
    #[error("writing {path}: {source}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
    /// A shard's files disagree with the layout.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// How many bytes a token id takes in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenWidth {
    /// `u16`: vocabularies of at most 65,536 tokens (LLaMA's 32,000).
    U16,
    /// `u32`: anything larger.
    U32,
}

impl TokenWidth {
    /// The narrowest width that holds every id of a vocabulary of `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }

    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }

    fn from_bytes(n: u32) -> Option<Self> {
        match n {
            2 => Some(TokenWidth::U16),
            4 => Some(TokenWidth::U32),
            _ => None,
        }
    }
}

/// Bytes of tokens buffered before they go to the store.
const FLUSH_BYTES: usize = 8 << 20;

/// Writes one shard through the object store: tokens streamed (a multipart
/// upload, atomic on completion), the index put once at the end.
pub struct TokenShardWriter {
    tokens: BufWriter,
    tokens_location: Location,
    index_location: Location,
    width: TokenWidth,
    eos: u32,
    offsets: Vec<u64>,
    buffer: Vec<u8>,
}

impl TokenShardWriter {
    /// A writer for `<base>.tokens` and `<base>.index` (`base` a location without extension).
    pub fn new(dir: &Location, base: &str, width: TokenWidth, eos: u32) -> Self {
        let tokens_location = dir.join(&format!("{base}.tokens"));
        let index_location = dir.join(&format!("{base}.index"));
        TokenShardWriter {
            tokens: BufWriter::new(tokens_location.store.clone(), tokens_location.path.clone()),
            tokens_location,
            index_location,
            width,
            eos,
            offsets: vec![0],
            buffer: Vec::with_capacity(FLUSH_BYTES + (64 << 10)),
        }
    }

    /// Appends one document's ids followed by `</s>`.
    pub async fn push(&mut self, ids: &[u32]) -> Result<(), ShardError> {
        match self.width {
            TokenWidth::U16 => {
                for &id in ids.iter().chain(std::iter::once(&self.eos)) {
                    // Ids fit: the width was chosen from the vocabulary size.
                    self.buffer.extend_from_slice(&(id as u16).to_le_bytes());
                }
            }
            TokenWidth::U32 => {
                for &id in ids.iter().chain(std::iter::once(&self.eos)) {
                    self.buffer.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
        let end = self.offsets.last().copied().unwrap_or(0) + ids.len() as u64 + 1;
        self.offsets.push(end);
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ShardError> {
        let path = self.tokens_location.url.to_string();
        self.tokens
            .write_all(&self.buffer)
            .await
            .map_err(|source| ShardError::Io { path, source })?;
        self.buffer.clear();
        Ok(())
    }

    /// Documents written so far.
    pub fn documents(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    /// Tokens written so far (`</s>` included).
    pub fn tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Completes both files; returns (tokens file bytes, index file bytes).
    pub async fn finish(mut self) -> Result<(u64, u64), ShardError> {
        self.flush().await?;
        let path = self.tokens_location.url.to_string();
        self.tokens
            .shutdown()
            .await
            .map_err(|source| ShardError::Io { path, source })?;
        let tokens = self.tokens();
        let index = encode_index(self.width, &self.offsets, tokens);
        let index_bytes = index.len() as u64;
        self.index_location
            .store
            .put(&self.index_location.path, PutPayload::from(index))
            .await
            .map_err(|source| ShardError::Store {
                path: self.index_location.url.to_string(),
                source,
            })?;
        Ok((tokens * self.width.bytes() as u64, index_bytes))
    }
}

/// The bytes of an index file.
fn encode_index(width: TokenWidth, offsets: &[u64], tokens: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + offsets.len() * 8);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
    out.extend_from_slice(&(width.bytes() as u32).to_le_bytes());
    out.extend_from_slice(&(offsets.len() as u64 - 1).to_le_bytes());
    out.extend_from_slice(&tokens.to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out
}

/// A shard opened for reading: both files memory-mapped, validated against each other.
#[derive(Debug)]
pub struct TokenShard {
    tokens_path: PathBuf,
    tokens: memmap2::Mmap,
    index: memmap2::Mmap,
    width: TokenWidth,
    documents: u64,
    total: u64,
}

fn map(path: &Path) -> Result<memmap2::Mmap, ShardError> {
    let io = |source| ShardError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Safety: shards are immutable once committed (written under their final
    // name only by an atomic rename or upload), so the mapping cannot change under us.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl TokenShard {
    /// Opens `<base>.tokens` and `<base>.index` (local files).
    pub fn open(base: &Path) -> Result<Self, ShardError> {
        let tokens_path = base.with_extension("tokens");
        let index_path = base.with_extension("index");
        let corrupt = |message: String| ShardError::Corrupt {
            path: index_path.display().to_string(),
            message,
        };
        let index = map(&index_path)?;
        if index.len() < INDEX_HEADER_BYTES || &index[..8] != INDEX_MAGIC {
            return Err(corrupt("not a token shard index (bad magic)".into()));
        }
        let version = u32::from_le_bytes([index[8], index[9], index[10], index[11]]);
        if version != LAYOUT_VERSION {
            return Err(corrupt(format!(
                "layout version {version}, this build reads {LAYOUT_VERSION}"
            )));
        }
        let width_bytes = u32::from_le_bytes([index[12], index[13], index[14], index[15]]);
        let width = TokenWidth::from_bytes(width_bytes)
            .ok_or_else(|| corrupt(format!("token width {width_bytes} bytes (2 or 4 expected)")))?;
        let documents = le_u64(&index, 16);
        let total = le_u64(&index, 24);
        let expected = (documents as u128 + 1) * 8 + INDEX_HEADER_BYTES as u128;
        if index.len() as u128 != expected {
            return Err(corrupt(format!(
                "{} bytes, but {documents} documents need {expected}",
                index.len()
            )));
        }
        let tokens = map(&tokens_path)?;
        if tokens.len() as u128 != total as u128 * width.bytes() as u128 {
            return Err(ShardError::Corrupt {
                path: tokens_path.display().to_string(),
                message: format!(
                    "{} bytes, but the index says {total} tokens of {width_bytes} bytes",
                    tokens.len()
                ),
            });
        }
        let shard = TokenShard {
            tokens_path,
            tokens,
            index,
            width,
            documents,
            total,
        };
        if shard.offset(0) != 0 || shard.offset(documents) != total {
            return Err(corrupt("the offsets do not span the tokens file".into()));
        }
        Ok(shard)
    }

    /// The tokens file's path.
    pub fn path(&self) -> &Path {
        &self.tokens_path
    }

    /// Token width.
    pub fn width(&self) -> TokenWidth {
        self.width
    }

    /// Documents in the shard.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Tokens in the shard, every `</s>` included.
    pub fn tokens(&self) -> u64 {
        self.total
    }

    /// Offset (in tokens) of document boundary `i` (0..=documents).
    pub fn offset(&self, i: u64) -> u64 {
        le_u64(&self.index, INDEX_HEADER_BYTES + i as usize * 8)
    }

    /// The token range `[start, end)` of document `i`.
    pub fn document_range(&self, i: u64) -> (u64, u64) {
        (self.offset(i), self.offset(i + 1))
    }

    /// Token `i`.
    pub fn token(&self, i: u64) -> u32 {
        let i = i as usize;
        match self.width {
            TokenWidth::U16 => u16::from_le_bytes([self.tokens[2 * i], self.tokens[2 * i + 1]]) as u32,
            TokenWidth::U32 => u32::from_le_bytes([
                self.tokens[4 * i],
                self.tokens[4 * i + 1],
                self.tokens[4 * i + 2],
                self.tokens[4 * i + 3],
            ]),
        }
    }

    /// Appends tokens `[start, end)` to `out`.
    pub fn read_into(&self, start: u64, end: u64, out: &mut Vec<u32>) {
        out.reserve((end - start) as usize);
        for i in start..end {
            out.push(self.token(i));
        }
    }

    /// The raw bytes of tokens `[start, end)` (for exporters that copy as they are).
    pub fn raw(&self, start: u64, end: u64) -> &[u8] {
        let w = self.width.bytes();
        &self.tokens[start as usize * w..end as usize * w]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path) -> Location {
        llamaflow_pipeline::store::StoreRegistry::default()
            .resolve(dir.to_str().unwrap(), dir)
            .unwrap()
    }

    #[tokio::test]
    async fn a_written_shard_reads_back_document_by_document() {
        let dir = tempfile::tempdir().unwrap();
        let loc = local(dir.path());
        for width in [TokenWidth::U16, TokenWidth::U32] {
            let base = format!("s-{}", width.bytes());
            let mut w = TokenShardWriter::new(&loc, &base, width, 2);
            w.push(&[5, 6, 7]).await.unwrap();
            w.push(&[]).await.unwrap();
            w.push(&[31_999, 1]).await.unwrap();
            let (tok_bytes, _) = w.finish().await.unwrap();
            assert_eq!(tok_bytes, 8 * width.bytes() as u64);
            let shard = TokenShard::open(&dir.path().join(&base)).unwrap();
            assert_eq!((shard.documents(), shard.tokens()), (3, 8));
            assert_eq!(shard.document_range(1), (4, 5));
            let mut out = Vec::new();
            let (s, e) = shard.document_range(2);
            shard.read_into(s, e, &mut out);
            assert_eq!(out, vec![31_999, 1, 2]);
        }
    }

    #[tokio::test]
    async fn a_truncated_tokens_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let loc = local(dir.path());
        let mut w = TokenShardWriter::new(&loc, "s", TokenWidth::U16, 2);
        w.push(&[5, 6, 7]).await.unwrap();
        w.finish().await.unwrap();
        let tokens = dir.path().join("s.tokens");
        let bytes = std::fs::read(&tokens).unwrap();
        std::fs::write(&tokens, &bytes[..bytes.len() - 2]).unwrap();
        let err = TokenShard::open(&dir.path().join("s")).unwrap_err().to_string();
        assert!(
            err.contains("s.tokens") && err.contains("the index says 4 tokens"),
            "{err}"
        );
    }
}
