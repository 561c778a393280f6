//! Reading tar archives and compressed files without trusting them. Entries
//! are read into memory and never extracted, so an archive cannot write
//! anywhere at all; entries with `../` or absolute paths, links and devices
//! are refused with a reason; and every read is capped, per entry and per
//! archive, so a gzip bomb stops at the cap instead of filling memory or disk.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::Component;

/// Caps on what one archive may decompress to.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// Largest entry read; a larger one is refused unread.
    pub max_entry_bytes: u64,
    /// Largest total of entry bytes read from one archive; past it, reading stops.
    pub max_total_bytes: u64,
}

/// One entry of a tar archive.
#[derive(Debug)]
pub enum TarItem {
    /// A regular file, read whole.
    File {
        /// Its path inside the archive.
        path: String,
        /// Byte offset of its header in the (decompressed) archive.
        offset: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// An entry that is not read, and why.
    Refused {
        /// Its path as the archive names it.
        path: String,
        /// Byte offset of its header.
        offset: u64,
        /// Why it was refused.
        reason: String,
    },
}

/// Why reading an archive stopped.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive (or its compression) is corrupt or truncated.
    #[error("corrupt or truncated archive after byte {offset}: {source}")]
    Corrupt {
        /// Decompressed bytes read before the failure.
        offset: u64,
        /// The underlying error.
        source: io::Error,
    },
    /// Its entries add up to more than the cap.
    #[error("archive decompresses to more than {cap} bytes")]
    TooLarge {
        /// The cap.
        cap: u64,
    },
}

/// A capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// More bytes than the cap.
    #[error("more than {cap} bytes once decompressed")]
    TooLarge {
        /// The cap.
        cap: u64,
    },
    /// The bytes could not be read (corrupt or truncated compression).
    #[error("corrupt or truncated after {read} bytes: {source}")]
    Io {
        /// Bytes read before the failure.
        read: u64,
        /// The underlying error.
        source: io::Error,
    },
}

/// Reads all of `reader`, refusing more than `cap` bytes without holding more than `cap + 1`.
pub fn read_capped(reader: impl Read, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    let mut bytes = Vec::new();
    let mut limited = reader.take(cap.saturating_add(1));
    if let Err(source) = limited.read_to_end(&mut bytes) {
        let read = bytes.len() as u64;
        return Err(CappedReadError::Io { read, source });
    }
    if bytes.len() as u64 > cap {
        return Err(CappedReadError::TooLarge { cap });
    }
    Ok(bytes)
}

/// True when `head` (at least 262 bytes of a stream) starts a POSIX or GNU tar archive.
pub fn looks_like_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// True when `bytes` start with gzip's magic bytes.
pub fn looks_like_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Why an entry's path must not be used, if it must not.
fn unsafe_path(path: &std::path::Path) -> Option<&'static str> {
    path.components().find_map(|c| match c {
        Component::ParentDir => Some("a `..` path"),
        Component::RootDir | Component::Prefix(_) => Some("an absolute path"),
        _ => None,
    })
}

/// Calls `each` for every file entry of the tar stream `reader` (directories
/// are skipped) until it breaks or the archive ends.
pub fn for_each_tar_entry<R: Read>(
    reader: R,
    limits: ArchiveLimits,
    mut each: impl FnMut(TarItem) -> ControlFlow<()>,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut total: u64 = 0;
    let mut last_offset: u64 = 0;
    let corrupt = |offset: u64| move |source: io::Error| ArchiveError::Corrupt { offset, source };
    for entry in archive.entries().map_err(corrupt(0))? {
        let mut entry = entry.map_err(corrupt(last_offset))?;
        let offset = entry.raw_header_position();
        last_offset = offset;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let refusal = if kind.is_dir() {
            continue;
        } else if kind.is_symlink() || kind.is_hard_link() {
            Some("a link".to_string())
        } else if !kind.is_file() && !kind.is_contiguous() {
            Some(format!("not a regular file (tar type {})", kind.as_byte()))
        } else if let Some(why) = entry
            .path()
            .map_or(Some("a path that cannot be read"), |p| unsafe_path(&p))
        {
            Some(why.to_string())
        } else if entry.size() > limits.max_entry_bytes {
            Some(format!(
                "{} bytes, over the cap of {}",
                entry.size(),
                limits.max_entry_bytes
            ))
        } else {
            None
        };
        let item = match refusal {
            Some(reason) => TarItem::Refused {
                path,
                offset,
                reason: format!("archive entry refused: {reason}"),
            },
            None => {
                total += entry.size();
                if total > limits.max_total_bytes {
                    return Err(ArchiveError::TooLarge {
                        cap: limits.max_total_bytes,
                    });
                }
                let size = entry.size();
                let bytes = read_capped(&mut entry, limits.max_entry_bytes).map_err(|e| match e {
                    CappedReadError::Io { source, .. } => ArchiveError::Corrupt { offset, source },
                    // The header's size was checked, and tar never yields more than it.
                    CappedReadError::TooLarge { cap } => ArchiveError::TooLarge { cap },
                })?;
                // tar ends an entry quietly at the end of the stream: a short entry is a cut archive.
                if (bytes.len() as u64) < size {
                    let message = format!("entry {path} ends after {} of its {size} bytes", bytes.len());
                    return Err(ArchiveError::Corrupt {
                        offset,
                        source: io::Error::new(io::ErrorKind::UnexpectedEof, message),
                    });
                }
                TarItem::File { path, offset, bytes }
            }
        };
        if each(item).is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ArchiveLimits = ArchiveLimits {
        max_entry_bytes: 1000,
        max_total_bytes: 10_000,
    };

    /// A tar with a regular file, a directory, a symlink, an absolute path and a `../` path.
    fn hostile_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &[u8], kind: tar::EntryType, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            // `set_path` refuses `..` and absolute paths, which is the point of the test: write the name raw.
            header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            if kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        };
        add(b"paper/main.tex", tar::EntryType::Regular, b"\\section{A}");
        add(b"paper/", tar::EntryType::Directory, b"");
        add(b"paper/link.tex", tar::EntryType::Symlink, b"");
        add(b"/etc/cron.d/x", tar::EntryType::Regular, b"evil");
        add(b"paper/../../escape.tex", tar::EntryType::Regular, b"evil");
        add(b"paper/big.tex", tar::EntryType::Regular, &[b'a'; 1001]);
        builder.into_inner().unwrap()
    }

    fn items(bytes: &[u8], limits: ArchiveLimits) -> (Vec<String>, Result<(), ArchiveError>) {
        let mut seen = Vec::new();
        let result = for_each_tar_entry(bytes, limits, |item| {
            seen.push(match item {
                TarItem::File { path, bytes, .. } => format!("file {path} {}", bytes.len()),
                TarItem::Refused { path, reason, .. } => format!("refused {path}: {reason}"),
            });
            ControlFlow::Continue(())
        });
        (seen, result)
    }

    #[test]
    fn links_absolute_and_parent_paths_are_refused_and_nothing_is_written() {
        let (seen, result) = items(&hostile_tar(), LIMITS);
        result.unwrap();
        assert_eq!(
            seen,
            [
                "file paper/main.tex 11",
                "refused paper/link.tex: archive entry refused: a link",
                "refused /etc/cron.d/x: archive entry refused: an absolute path",
                "refused paper/../../escape.tex: archive entry refused: a `..` path",
                "refused paper/big.tex: archive entry refused: 1001 bytes, over the cap of 1000",
            ]
        );
    }

    #[test]
    fn the_total_cap_and_truncation_stop_reading() {
        let tar = hostile_tar();
        let small = ArchiveLimits {
            max_total_bytes: 5,
            ..LIMITS
        };
        assert!(matches!(items(&tar, small).1, Err(ArchiveError::TooLarge { cap: 5 })));
        let (seen, result) = items(&tar[..515], LIMITS);
        assert!(seen.is_empty());
        assert!(matches!(result, Err(ArchiveError::Corrupt { .. })), "{result:?}");
    }

    #[test]
    fn capped_reads_stop_a_gzip_bomb_at_the_cap() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &vec![0u8; 10 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 20_000);
        let decoder = flate2::read::GzDecoder::new(&bomb[..]);
        assert!(matches!(
            read_capped(decoder, 1 << 20),
            Err(CappedReadError::TooLarge { cap }) if cap == 1 << 20
        ));
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), b"abc");
        let truncated = flate2::read::GzDecoder::new(&bomb[..bomb.len() / 2]);
        assert!(matches!(
            read_capped(truncated, 100 << 20),
            Err(CappedReadError::Io { .. })
        ));
    }

    #[test]
    fn formats_are_sniffed() {
        assert!(looks_like_tar(&hostile_tar()));
        assert!(!looks_like_tar(b"\\documentclass{article}"));
        assert!(looks_like_gzip(&[0x1f, 0x8b, 8]));
    }
}
