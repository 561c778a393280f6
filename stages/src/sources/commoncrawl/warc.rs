//! WARC records (WARC/1.0 and 1.1) from a plain file or from gzip, one member
//! per record as CommonCrawl writes them (several records in one member are
//! read too). A record's offset is that of its gzip member in the stored file
//! (what CommonCrawl's index gives), or its byte offset in a plain file.
//!
//! Bad bytes never end the file early where the format allows going on: a
//! corrupt gzip member is reported and reading resumes at the next gzip
//! header; a record whose `Content-Length` overruns its member is reported and
//! the next member is read. In a plain file, a bad record ends the file (no
//! member boundary to resume at).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

/// A record's content block larger than this is refused, not buffered.
pub const MAX_RECORD_BYTES: u64 = 256 << 20;
/// Header lines longer than this are refused (no real header comes close).
const MAX_HEADER_LINE: u64 = 64 << 10;

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WarcError {
    /// The bytes at a record's start are not a WARC version line.
    #[error("not a WARC record: starts with {0:?}")]
    NotWarc(String),
    /// A WARC version this reader does not know.
    #[error("unsupported WARC version {0:?}")]
    Version(String),
    /// The header block ended before its blank line, or a line is malformed.
    #[error("bad WARC header: {0}")]
    Header(String),
    /// `Content-Length` is missing or not a number.
    #[error("missing or invalid Content-Length: {0:?}")]
    ContentLength(String),
    /// `Content-Length` says more bytes than there are.
    #[error("Content-Length {declared} overruns the {container}: only {available} bytes follow the header")]
    Overrun {
        /// The declared length.
        declared: u64,
        /// Bytes actually there.
        available: u64,
        /// `gzip member` or `file`.
        container: &'static str,
    },
    /// A content block above [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes is larger than the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(u64),
    /// A gzip member that does not decompress.
    #[error("corrupt or truncated gzip member: {0}")]
    Gzip(String),
    /// The storage failed (not the data): the unit fails and is retried.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// One WARC record: its named headers and its content block.
#[derive(Debug, Clone)]
pub struct WarcRecord {
    /// Offset of the record's gzip member, or of the record in a plain file.
    pub offset: u64,
    /// Position of the record within its gzip member (0 for the first, and in plain files).
    pub index_in_member: u32,
    /// The header fields in file order (names as written).
    pub headers: Vec<(String, String)>,
    /// The content block, `Content-Length` bytes.
    pub block: Vec<u8>,
}

impl WarcRecord {
    /// A header's value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A read position in the stored bytes, counted as they are consumed. While
/// a gzip member is decoded, the bytes it consumes are recorded, so that when
/// the member turns out corrupt, reading can go back to the next gzip header
/// inside them (a truncated member's decoder runs on into the next member).
struct Tracked<R> {
    inner: R,
    position: u64,
    /// Bytes to serve again before `inner`'s.
    replay: Vec<u8>,
    replay_at: usize,
    recording: Option<Vec<u8>>,
}

impl<R: BufRead> Tracked<R> {
    fn new(inner: R) -> Self {
        Tracked {
            inner,
            position: 0,
            replay: Vec::new(),
            replay_at: 0,
            recording: None,
        }
    }

    /// Goes back to `offset` (within the recording started at `start`) and replays from there.
    fn rewind_to(&mut self, start: u64, offset: u64, recorded: &[u8]) {
        // `offset - start` is below `recorded.len()`: callers pass an index into it.
        let from = (offset - start) as usize;
        let mut replay = recorded[from..].to_vec();
        replay.extend_from_slice(&self.replay[self.replay_at..]);
        self.replay = replay;
        self.replay_at = 0;
        self.position = offset;
    }
}

impl<R: BufRead> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.replay_at < self.replay.len() {
            return Ok(&self.replay[self.replay_at..]);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.replay_at < self.replay.len() {
            let amount = amount.min(self.replay.len() - self.replay_at);
            if let Some(recording) = &mut self.recording {
                recording.extend_from_slice(&self.replay[self.replay_at..self.replay_at + amount]);
            }
            self.replay_at += amount;
            if self.replay_at == self.replay.len() {
                self.replay.clear();
                self.replay_at = 0;
            }
        } else {
            if let Some(recording) = &mut self.recording {
                // The buffer is unchanged since the `fill_buf` this `consume` follows.
                if let Ok(buffer) = self.inner.fill_buf() {
                    recording.extend_from_slice(&buffer[..amount.min(buffer.len())]);
                }
            }
            self.inner.consume(amount);
        }
        self.position += amount as u64;
    }
}

/// Reads the records of one WARC file, in order.
pub struct WarcReader<R> {
    input: Tracked<R>,
    gzip: Option<bool>,
    pending: VecDeque<Result<WarcRecord, (u64, WarcError)>>,
    /// After a bad member: skip to the next gzip header, reporting nothing
    /// until a member reads again (a false header inside the bad bytes would
    /// otherwise add a report per false start).
    resyncing: bool,
    done: bool,
}

impl<R: BufRead> WarcReader<R> {
    /// A reader over the stored bytes (gzip or plain, told by the first bytes).
    pub fn new(input: R) -> Self {
        WarcReader {
            input: Tracked::new(input),
            gzip: None,
            pending: VecDeque::new(),
            resyncing: false,
            done: false,
        }
    }

    /// The next record, or the offset and reason of a bad one; `None` at the end.
    pub fn next_record(&mut self) -> Option<Result<WarcRecord, (u64, WarcError)>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err((self.input.position, e)));
            }
        }
    }

    /// Reads the next member (gzip) or record (plain) into `pending`.
    fn fill(&mut self) -> Result<(), WarcError> {
        let head = self.input.fill_buf()?;
        if head.is_empty() {
            self.done = true;
            return Ok(());
        }
        let gzip = *self.gzip.get_or_insert(head.starts_with(&[0x1f, 0x8b]));
        if gzip { self.fill_member() } else { self.fill_plain() }
    }

    fn fill_plain(&mut self) -> Result<(), WarcError> {
        // The blank lines that end the previous record are not part of the next.
        loop {
            let buf = self.input.fill_buf()?;
            let blank = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            if blank == 0 {
                break;
            }
            self.input.consume(blank);
        }
        if self.input.fill_buf()?.is_empty() {
            self.done = true;
            return Ok(());
        }
        let offset = self.input.position;
        match read_record(&mut self.input, offset, 0, "file") {
            Ok(Some(record)) => self.pending.push_back(Ok(record)),
            Ok(None) => self.done = true,
            Err(WarcError::Io(e)) => return Err(WarcError::Io(e)),
            Err(e) => {
                // No boundary to resume at: the rest of the file is this record.
                self.pending.push_back(Err((offset, e)));
                self.done = true;
            }
        }
        Ok(())
    }

    fn fill_member(&mut self) -> Result<(), WarcError> {
        let start = self.input.position;
        if !self.input.fill_buf()?.starts_with(&[0x1f, 0x8b, 0x08]) {
            self.report_member(
                start,
                WarcError::Gzip("no gzip header where a member should start".into()),
            );
            return self.skip_to_gzip_header();
        }
        let mut block = Vec::new();
        self.input.recording = Some(Vec::new());
        let read = flate2::bufread::GzDecoder::new(&mut self.input)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut block);
        let recorded = self.input.recording.take().unwrap_or_default();
        if let Err(e) = read {
            // A failing store shows up here too; the caller tells it apart by its `StorageFault`.
            self.report_member(start, WarcError::Gzip(e.to_string()));
            // Resume at the next gzip header after the member's first byte, even
            // if the decoder already read past it.
            let next = memchr::memmem::find_iter(&recorded, &[0x1f, 0x8b, 0x08]).find(|&i| i > 0);
            if let Some(i) = next {
                self.input.rewind_to(start, start + i as u64, &recorded);
                return Ok(());
            }
            return self.skip_to_gzip_header();
        }
        if block.len() as u64 > MAX_RECORD_BYTES {
            let mut rest = flate2::bufread::GzDecoder::new(&mut self.input);
            if let Err(e) = io::copy(&mut rest, &mut io::sink()) {
                self.report_member(start, WarcError::Gzip(e.to_string()));
                return self.skip_to_gzip_header();
            }
            self.report_member(start, WarcError::TooLarge(block.len() as u64));
            return Ok(());
        }
        self.resyncing = false;
        let mut member = io::Cursor::new(block.as_slice());
        let mut index = 0u32;
        loop {
            match read_record(&mut member, start, index, "gzip member") {
                Ok(Some(record)) => self.pending.push_back(Ok(record)),
                Ok(None) => break,
                Err(e) => {
                    self.pending.push_back(Err((start, e)));
                    break;
                }
            }
            index += 1;
        }
        Ok(())
    }

    fn report_member(&mut self, offset: u64, error: WarcError) {
        if !self.resyncing {
            self.pending.push_back(Err((offset, error)));
        }
        self.resyncing = true;
    }

    /// Consumes bytes up to the next `1f 8b 08` (at least one byte, so a bad
    /// member at the current position is passed).
    fn skip_to_gzip_header(&mut self) -> Result<(), WarcError> {
        let mut first = true;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                self.done = true;
                return Ok(());
            }
            let from = usize::from(first);
            first = false;
            let found = memchr::memchr_iter(0x1f, &buf[from.min(buf.len())..])
                .map(|i| i + from)
                .find(|&i| buf.len() < i + 3 || buf[i + 1..i + 3] == [0x8b, 0x08]);
            match found {
                // A candidate too near the buffer's end to check: consume up to it and look again.
                Some(i) if buf.len() < i + 3 => {
                    if i == 0 {
                        // Fewer than three bytes left in the whole input.
                        let n = buf.len();
                        self.input.consume(n);
                        continue;
                    }
                    self.input.consume(i);
                }
                Some(i) => {
                    self.input.consume(i);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.input.consume(n);
                }
            }
        }
    }
}

/// Reads one record (`None` at a clean end): the version line, headers up to
/// the blank line, then `Content-Length` bytes of block.
fn read_record(
    input: &mut impl BufRead,
    offset: u64,
    index_in_member: u32,
    container: &'static str,
) -> Result<Option<WarcRecord>, WarcError> {
    // Records end with CRLF CRLF; blank lines between records are skipped.
    let version = loop {
        let Some(line) = read_line(input)? else {
            return Ok(None);
        };
        if !line.trim().is_empty() {
            break line;
        }
    };
    let version = version.trim_end();
    if !version.starts_with("WARC/") {
        return Err(WarcError::NotWarc(version.chars().take(40).collect()));
    }
    if version != "WARC/1.0" && version != "WARC/1.1" {
        return Err(WarcError::Version(version.to_string()));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some(line) = read_line(input)? else {
            return Err(WarcError::Header("the input ends inside the header block".into()));
        };
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line (WARC/1.0 allows folded values).
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None => {
                    return Err(WarcError::Header(format!(
                        "continuation line before any field: {line:?}"
                    )));
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(WarcError::Header(format!(
                "a line without a colon: {:?}",
                excerpt(line)
            )));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length_text = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let declared: u64 = length_text
        .parse()
        .map_err(|_| WarcError::ContentLength(length_text.clone()))?;
    if declared > MAX_RECORD_BYTES {
        return Err(WarcError::TooLarge(declared));
    }
    let mut block = Vec::with_capacity(declared.min(1 << 20) as usize);
    input.take(declared).read_to_end(&mut block)?;
    if (block.len() as u64) < declared {
        return Err(WarcError::Overrun {
            declared,
            available: block.len() as u64,
            container,
        });
    }
    Ok(Some(WarcRecord {
        offset,
        index_in_member,
        headers,
        block,
    }))
}

/// One header line as text (`None` at the end of input); invalid UTF-8 is
/// replaced, as header values are ASCII in practice.
fn read_line(input: &mut impl BufRead) -> Result<Option<String>, WarcError> {
    let mut line = Vec::new();
    input.take(MAX_HEADER_LINE).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.len() as u64 >= MAX_HEADER_LINE && !line.ends_with(b"\n") {
        return Err(WarcError::Header(format!(
            "a header line longer than {MAX_HEADER_LINE} bytes"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn excerpt(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A WARC record's bytes with the given type, extra headers and block.
    pub(crate) fn record(kind: &str, extra: &[(&str, &str)], block: &[u8]) -> Vec<u8> {
        let mut out = format!("WARC/1.0\r\nWARC-Type: {kind}\r\n");
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", block.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(block);
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Vec<Result<WarcRecord, (u64, WarcError)>> {
        let mut reader = WarcReader::new(bytes);
        std::iter::from_fn(|| reader.next_record()).collect()
    }

    #[test]
    fn gzip_members_give_records_at_their_member_offsets() {
        let a = gzip(&record("conversion", &[("WARC-Target-URI", "http://a/")], b"alpha"));
        let b = gzip(&record("conversion", &[], b"beta"));
        let file = [a.clone(), b].concat();
        let records: Vec<WarcRecord> = read_all(&file).into_iter().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[1].offset, a.len() as u64);
        assert_eq!(records[0].header("warc-target-uri"), Some("http://a/"));
        assert_eq!(records[1].block, b"beta");
    }

    #[test]
    fn plain_files_and_warc_1_1_are_read() {
        let mut first = record("conversion", &[], b"one");
        first[..8].copy_from_slice(b"WARC/1.1");
        let file = [first.clone(), record("conversion", &[], b"two")].concat();
        let records: Vec<WarcRecord> = read_all(&file).into_iter().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].offset, first.len() as u64);
        assert_eq!(records[1].block, b"two");
    }

    #[test]
    fn a_truncated_member_is_reported_and_the_next_members_are_read() {
        let a = gzip(&record("conversion", &[], &b"x".repeat(5000)));
        let b = gzip(&record("conversion", &[], b"after"));
        let file = [a[..a.len() / 2].to_vec(), b.clone(), b.clone()].concat();
        let items = read_all(&file);
        let (offset, error) = items[0].as_ref().unwrap_err();
        assert_eq!(*offset, 0);
        assert!(matches!(error, WarcError::Gzip(_)), "{error}");
        let good: Vec<_> = items.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(good.len(), 2, "{items:?}");
        assert_eq!(good[0].offset, (a.len() / 2) as u64);
        assert_eq!(good[1].offset, (a.len() / 2 + b.len()) as u64);
    }

    #[test]
    fn a_content_length_past_the_member_is_an_overrun_and_reading_goes_on() {
        let mut bad = record("conversion", &[], b"short");
        let text = String::from_utf8(bad.clone())
            .unwrap()
            .replace("Content-Length: 5", "Content-Length: 500");
        bad = text.into_bytes();
        let bad = gzip(&bad);
        let good = gzip(&record("conversion", &[], b"fine"));
        let items = read_all(&[bad.clone(), good].concat());
        let (offset, error) = items[0].as_ref().unwrap_err();
        assert_eq!(*offset, 0);
        assert!(
            error
                .to_string()
                .starts_with("Content-Length 500 overruns the gzip member"),
            "{error}"
        );
        assert_eq!(items[1].as_ref().unwrap().block, b"fine");
        assert_eq!(items[1].as_ref().unwrap().offset, bad.len() as u64);
    }

    #[test]
    fn a_file_that_is_not_warc_is_one_error() {
        let items = read_all(b"{\"text\": \"a JSON line\"}\n");
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err((0, WarcError::NotWarc(_)))));
        let items = read_all(&gzip(b"<html>not warc</html>"));
        assert!(matches!(items[0], Err((0, WarcError::NotWarc(_)))));
    }

    #[test]
    fn garbage_between_members_is_one_report() {
        let good = gzip(&record("conversion", &[], b"ok"));
        let file = [good.clone(), b"\x00garbage\x1f\x8bno".repeat(50), good.clone()].concat();
        let items = read_all(&file);
        let errors = items.iter().filter(|r| r.is_err()).count();
        let records = items.iter().filter(|r| r.is_ok()).count();
        assert_eq!((records, errors), (2, 1), "{items:?}");
    }

    #[test]
    fn bad_content_length_and_headers_are_named() {
        let text = "WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: lots\r\n\r\nabc";
        assert!(matches!(
            read_all(text.as_bytes())[0],
            Err((0, WarcError::ContentLength(_)))
        ));
        let text = "WARC/1.0\r\nWARC-Type conversion\r\n\r\n";
        assert!(matches!(read_all(text.as_bytes())[0], Err((0, WarcError::Header(_)))));
        let text = "WARC/2.0\r\n\r\n";
        assert!(matches!(read_all(text.as_bytes())[0], Err((0, WarcError::Version(_)))));
    }
}
