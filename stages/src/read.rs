//! Opening an input file for streaming reading: bytes come through
//! `object_store`, gzip and bzip2 (multistream too) are detected by their magic
//! bytes (not the file name), and consumed input bytes feed the stage's progress bar.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use object_store::{GetResultPayload, ObjectStoreExt};

/// Buffer size of the decompressed stream.
const READ_BUFFER: usize = 1 << 20;
/// Compressed bytes between two progress updates.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Tells apart a failure of the storage under a decoder (the unit fails and is
/// retried next run) from bad bytes in the file (quarantined).
#[derive(Debug, Clone, Default)]
pub struct StorageFault(Arc<AtomicBool>);

impl StorageFault {
    /// True when the underlying store or file failed to deliver bytes.
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountingReader<R> {
    inner: R,
    progress: Progress,
    pending: u64,
    fault: StorageFault,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.pending += n as u64;
                if self.pending >= PROGRESS_EVERY || n == 0 {
                    self.progress.add_bytes(self.pending);
                    self.pending = 0;
                }
                Ok(n)
            }
            Err(e) => {
                self.fault.0.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// How an input file is compressed, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip, one member or several.
    Gzip,
    /// bzip2, one stream or several (Wikipedia's multistream dumps).
    Bzip2,
}

impl Compression {
    /// Tells the compression from a file's first bytes.
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Compression::Bzip2,
            _ => Compression::None,
        }
    }

    /// What a decoding failure is called in quarantine reasons.
    pub fn corrupt_stream(self) -> &'static str {
        match self {
            Compression::None => "unreadable input",
            Compression::Gzip => "corrupt or truncated gzip stream",
            Compression::Bzip2 => "corrupt or truncated bzip2 stream",
        }
    }
}

/// An input file opened for reading, decompressed.
pub struct OpenedInput {
    /// The decompressed bytes.
    pub reader: Box<dyn BufRead + Send>,
    /// How the file was compressed.
    pub compression: Compression,
    /// Set when the store, not the data, failed.
    pub fault: StorageFault,
}

/// An input file's bytes as stored (not decompressed), buffered.
pub struct RawInput {
    /// The stored bytes.
    pub reader: Box<dyn BufRead + Send>,
    /// Set when the store, not the data, failed.
    pub fault: StorageFault,
}

/// The whole of a small input (a tokenizer, a model file) in memory; an
/// error names the file.
pub async fn read_whole(file: &InputFile) -> Result<bytes::Bytes, llamaflow_pipeline::StageError> {
    use object_store::ObjectStoreExt;
    let unreadable = |e: object_store::Error| llamaflow_pipeline::StageError::Unreadable {
        file: file.display.clone(),
        message: e.to_string(),
    };
    file.location
        .store
        .get(&file.location.path)
        .await
        .map_err(unreadable)?
        .bytes()
        .await
        .map_err(unreadable)
}

/// Opens `file`'s stored bytes, for formats that need the compressed layout
/// (WARC: one gzip member per record, addressed by its offset). Must run on a
/// blocking thread (it blocks on the object store through `handle`).
pub fn open_raw(file: &InputFile, progress: Progress, handle: &tokio::runtime::Handle) -> io::Result<RawInput> {
    let loc = &file.location;
    let result = handle.block_on(loc.store.get(&loc.path)).map_err(io::Error::other)?;
    let raw: Box<dyn Read + Send> = match result.payload {
        // Local files: read the file object_store opened, without a task per chunk.
        GetResultPayload::File(f, _) => Box::new(f),
        GetResultPayload::Stream(stream) => {
            let reader = tokio_util::io::StreamReader::new(stream.map_err(io::Error::other));
            Box::new(tokio_util::io::SyncIoBridge::new_with_handle(reader, handle.clone()))
        }
    };
    let fault = StorageFault::default();
    let counted = CountingReader {
        inner: raw,
        progress,
        pending: 0,
        fault: fault.clone(),
    };
    Ok(RawInput {
        reader: Box::new(BufReader::with_capacity(READ_BUFFER, counted)),
        fault,
    })
}

/// Opens `file` for reading, decompressed. Must run on a blocking thread (it
/// blocks on the object store through `handle`).
pub fn open_input(file: &InputFile, progress: Progress, handle: &tokio::runtime::Handle) -> io::Result<OpenedInput> {
    let RawInput { mut reader, fault } = open_raw(file, progress, handle)?;
    let compression = Compression::sniff(reader.fill_buf()?);
    let reader: Box<dyn BufRead + Send> = match compression {
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(reader),
        )),
        Compression::Bzip2 => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            bzip2::bufread::MultiBzDecoder::new(reader),
        )),
        Compression::None => reader,
    };
    Ok(OpenedInput {
        reader,
        compression,
        fault,
    })
}

/// Opens `file` as a seekable local file, for formats that keep their index
/// at the end (7z): a local input is opened in place, anything else is first
/// copied to an anonymous temporary file, deleted when closed. Must run on a
/// blocking thread.
pub fn open_seekable(
    file: &InputFile,
    progress: Progress,
    handle: &tokio::runtime::Handle,
) -> io::Result<std::fs::File> {
    let loc = &file.location;
    let result = handle.block_on(loc.store.get(&loc.path)).map_err(io::Error::other)?;
    match result.payload {
        GetResultPayload::File(f, _) => {
            progress.add_bytes(file.size);
            Ok(f)
        }
        GetResultPayload::Stream(stream) => {
            let reader = tokio_util::io::StreamReader::new(stream.map_err(io::Error::other));
            let mut bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle.clone());
            let mut copy = tempfile::tempfile()?;
            let n = io::copy(&mut bridge, &mut copy)?;
            progress.add_bytes(n);
            io::Seek::rewind(&mut copy)?;
            Ok(copy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(Compression::sniff(b"BZh0"), Compression::None);
        assert_eq!(Compression::sniff(b"<mediawiki"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }
}
