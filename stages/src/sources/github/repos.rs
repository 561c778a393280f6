//! Plain repositories as `github` input: a folder of repositories (one
//! subfolder each) or one `.tar.gz` / `.tgz` / `.tar` per repository.
//!
//! The licence is detected from the repository's root licence files
//! (`LICENSE`, `COPYING`, `LICENSE-MIT`, ... ) with `spdx`'s SPDX-based
//! detector (askalono's algorithm and the SPDX licence texts). Several licence
//! files are joined with `AND`: a file is kept only if every licence found is
//! allowed, since the files alone cannot tell a dual licence from a combined
//! one. A licence file no SPDX licence matches with confidence ≥ 0.8 makes the
//! repository's licence unparsable.
//!
//! Each file becomes a raw row (`repo_name`, `path`, `license`, `content`);
//! the stage's rules then apply as to BigQuery rows. Files whose extension is
//! not kept (or licence files) are not read at all: their row carries no
//! content, and the path rules drop them. A tarball is read twice, streaming:
//! once for its licence files, once for its contents, so memory stays at one
//! file whatever the repository's size.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::unit::{WorkUnit, short_hash};
use object_store::ObjectStoreExt;

use super::{GithubFields, GithubRows, is_license_file};
use crate::jsonl::{JsonRows, unreadable};
use crate::read::open_input;

/// Files larger than this are quarantined unread (BigQuery's `contents` table
/// stops at 1 MiB; this leaves room and bounds memory).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Minimum detector confidence for a licence file to name a licence.
pub const MIN_LICENSE_CONFIDENCE: f32 = 0.8;
/// Rows per batch sent downstream.
const BATCH_ROWS: usize = 1024;
/// Text bytes per batch.
const BATCH_TEXT_BYTES: usize = 32 << 20;

/// True for inputs that hold BigQuery rows rather than repository files.
pub fn is_rows_file(relative: &str) -> bool {
    let name = relative.strip_suffix(".gz").unwrap_or(relative);
    [".jsonl", ".json", ".ndjson", ".parquet"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// True for one-repository archives.
pub fn is_tarball(relative: &str) -> bool {
    [".tar.gz", ".tgz", ".tar"].iter().any(|e| relative.ends_with(e))
}

/// A repository's name from its tarball's name (`serde-1.0.tar.gz` → `serde-1.0`).
fn tarball_repo_name(relative: &str) -> String {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|e| name.strip_suffix(e))
        .unwrap_or(name)
        .to_string()
}

/// Groups a `github` stage's inputs into units: a rows file or a tarball is a
/// unit; the files of a folder of repositories make one unit per repository
/// (the first folder of their path).
pub fn github_units(inputs: Vec<InputFile>) -> Vec<WorkUnit> {
    let mut units = Vec::new();
    let mut folders: std::collections::BTreeMap<String, Vec<InputFile>> = Default::default();
    for file in inputs {
        if is_rows_file(&file.relative) || is_tarball(&file.relative) {
            units.push(WorkUnit::single(file));
            continue;
        }
        let repo = file.relative.split_once('/').map_or("", |(repo, _)| repo).to_string();
        folders.entry(repo).or_default().push(file);
    }
    for (repo, mut files) in folders {
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        let mut fingerprint = String::new();
        for f in &files {
            fingerprint.push_str(&format!("{}\0{}\0{}\n", f.relative, f.size, f.version));
        }
        units.push(WorkUnit {
            key: format!("{repo}/"),
            files,
            fingerprint: short_hash(&fingerprint),
        });
    }
    units
}

/// The SPDX licence texts, loaded once per process.
fn license_store() -> Option<&'static spdx::detection::Store> {
    static STORE: OnceLock<Option<spdx::detection::Store>> = OnceLock::new();
    STORE
        .get_or_init(|| match spdx::detection::Store::load_inline() {
            Ok(mut store) => {
                add_apache_without_appendix(&mut store);
                Some(store)
            }
            Err(e) => {
                tracing::error!("the SPDX licence texts could not be loaded: {e}");
                None
            }
        })
        .as_ref()
}

/// The SPDX id of a licence text, when one matches with enough confidence.
pub fn detect_license(text: &str) -> Option<&'static str> {
    let store = license_store()?;
    let best = store.analyze(&spdx::detection::TextData::new(text));
    tracing::debug!(best = best.name, score = best.score, "licence text analysed");
    (best.score >= MIN_LICENSE_CONFIDENCE).then_some(best.name)
}

/// Most projects ship Apache-2.0 without its appendix ("How to apply the
/// Apache License"), which the SPDX text has; cut that way it matches
/// `Pixar` (Apache-2.0 with one clause added) slightly better than
/// Apache-2.0 itself. The cut text is added as an alternate form of Apache-2.0.
fn add_apache_without_appendix(store: &mut spdx::detection::Store) {
    let Some(lines) = store.get_original("Apache-2.0").map(|t| t.lines().to_vec()) else {
        return;
    };
    let Some(cut) = lines.iter().position(|l| l.starts_with("APPENDIX")) else {
        return;
    };
    let text = spdx::detection::TextData::new(&lines[..cut].join("\n"));
    if let Err(e) = store.add_variant("Apache-2.0", spdx::detection::LicenseType::Alternate, text) {
        tracing::warn!("could not register Apache-2.0 without its appendix: {e}");
    }
}

/// What a repository's root licence files say, as the `license` field of its rows.
#[derive(Debug, Default)]
struct RepoLicense {
    ids: BTreeSet<&'static str>,
    unrecognized: Vec<String>,
}

impl RepoLicense {
    fn add(&mut self, path: &str, text: &str) {
        match detect_license(text) {
            Some(id) => {
                self.ids.insert(id);
            }
            None => self.unrecognized.push(path.to_string()),
        }
    }

    /// `None` without licence files (dropped as `license_missing`); a
    /// non-SPDX marker when one is unrecognised (dropped as `license_unparsable`).
    fn expression(&self) -> Option<String> {
        if let Some(first) = self.unrecognized.first() {
            return Some(format!("unrecognized licence file {first}"));
        }
        (!self.ids.is_empty()).then(|| self.ids.iter().copied().collect::<Vec<_>>().join(" AND "))
    }
}

/// A root licence file of a repository (`LICENSE`, `COPYING.txt`, `LICENSE-MIT`).
fn is_root_license_file(path: &str) -> bool {
    !path.contains('/') && is_license_file(path) && !path.contains(".pem") && !path.contains(".crt")
}

/// One repository as a table partition.
#[derive(Debug)]
pub struct RepoPartition {
    /// A tarball, or the files of one repository folder.
    pub files: Vec<InputFile>,
    /// Path suffixes whose files are read (the stage's `extensions`).
    pub extensions: Arc<Vec<String>>,
    /// Progress of the stage.
    pub progress: Progress,
    /// The raw GitHub schema.
    pub schema: SchemaRef,
}

impl PartitionStream for RepoPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let reader = RepoReader {
            files: self.files.clone(),
            extensions: self.extensions.clone(),
            progress: self.progress.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        builder.spawn_blocking(move || {
            let mut rows = GithubRows::new();
            let mut send = |rows: &mut GithubRows, force: bool| {
                let full = rows.len() >= BATCH_ROWS || rows.docs.text_bytes() >= BATCH_TEXT_BYTES;
                if (full || force) && !rows.is_empty() {
                    return tx.blocking_send(rows.finish().map_err(Into::into)).is_ok();
                }
                true
            };
            match reader.files.as_slice() {
                [tarball] if is_tarball(&tarball.relative) => reader.read_tarball(tarball, &mut rows, &mut send)?,
                _ => reader.read_folder(&mut rows, &mut send)?,
            }
            send(&mut rows, true);
            Ok(())
        });
        builder.build()
    }
}

struct RepoReader {
    files: Vec<InputFile>,
    extensions: Arc<Vec<String>>,
    progress: Progress,
    handle: tokio::runtime::Handle,
}

impl RepoReader {
    /// Whether the stage could keep a file at `path`: only those are read.
    fn wanted(&self, path: &str) -> bool {
        self.extensions.iter().any(|e| path.ends_with(e.as_str())) && !is_license_file(path)
    }

    fn read_bytes(&self, file: &InputFile) -> Result<Vec<u8>, DataFusionError> {
        let loc = &file.location;
        let bytes = self
            .handle
            .block_on(async { loc.store.get(&loc.path).await?.bytes().await })
            .map_err(|e| unreadable(file, e.to_string()))?;
        self.progress.add_bytes(bytes.len() as u64);
        Ok(bytes.to_vec())
    }

    /// A folder repository: its files are the unit's files, `REPO/PATH`.
    fn read_folder(
        &self,
        rows: &mut GithubRows,
        send: &mut dyn FnMut(&mut GithubRows, bool) -> bool,
    ) -> Result<(), DataFusionError> {
        let split = |f: &InputFile| -> (String, String) {
            match f.relative.split_once('/') {
                Some((repo, path)) => (repo.to_string(), path.to_string()),
                None => (String::new(), f.relative.clone()),
            }
        };
        let mut license = RepoLicense::default();
        for file in &self.files {
            let (_, path) = split(file);
            if is_root_license_file(&path) {
                let bytes = self.read_bytes(file)?;
                license.add(&path, &String::from_utf8_lossy(&bytes));
            }
        }
        let expression = license.expression();
        for file in &self.files {
            let (repo, path) = split(file);
            if repo.is_empty() {
                let reason = "a file directly in a folder of repositories (expected one subfolder per repository)";
                rows.push_bad(file, 0, reason, &file.relative);
            } else if !self.wanted(&path) {
                self.progress.add_bytes(file.size);
                rows.push_fields(file, 0, fields(&repo, &path, None, expression.as_deref()));
            } else if file.size > MAX_FILE_BYTES {
                rows.push_bad(file, 0, &too_large(file.size), &path);
            } else {
                let bytes = self.read_bytes(file)?;
                push_content(rows, file, 0, &repo, &path, &bytes, expression.as_deref());
            }
            if !send(rows, false) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A tarball repository, read twice: licence files, then everything.
    fn read_tarball(
        &self,
        tarball: &InputFile,
        rows: &mut GithubRows,
        send: &mut dyn FnMut(&mut GithubRows, bool) -> bool,
    ) -> Result<(), DataFusionError> {
        let repo = tarball_repo_name(&tarball.relative);
        // Pass 1: the common top folder (GitHub's `owner-repo-sha/`) and the licence.
        let mut tops = BTreeSet::new();
        let mut license_files: Vec<(String, String)> = Vec::new();
        // A broken archive is reported by pass 2, which reads the same bytes.
        let _ = self.each_entry(tarball, Progress::hidden(), &mut |path, entry, _| {
            let top = path.split_once('/').map_or("", |(t, _)| t).to_string();
            tops.insert(top);
            let inner = path.split_once('/').map_or(path, |(_, p)| p);
            if is_root_license_file(inner) || is_root_license_file(path) {
                let mut text = String::new();
                let _ = entry.take(MAX_FILE_BYTES).read_to_string(&mut text);
                license_files.push((path.to_string(), text));
            }
            true
        })?;
        let strip_top = tops.len() == 1 && !tops.contains("");
        let mut license = RepoLicense::default();
        for (path, text) in &license_files {
            let path = if strip_top {
                path.split_once('/').map_or(path.as_str(), |(_, p)| p)
            } else {
                path
            };
            if is_root_license_file(path) {
                license.add(path, text);
            }
        }
        let expression = license.expression();
        // Pass 2: every file.
        let outcome = self.each_entry(tarball, self.progress.clone(), &mut |path, entry, offset| {
            let path = if strip_top {
                path.split_once('/').map_or(path, |(_, p)| p)
            } else {
                path
            };
            let size = entry.header().size().unwrap_or(0);
            if !self.wanted(path) {
                rows.push_fields(tarball, offset, fields(&repo, path, None, expression.as_deref()));
            } else if size > MAX_FILE_BYTES {
                rows.push_bad(tarball, offset, &too_large(size), path);
            } else {
                let mut bytes = Vec::with_capacity(size as usize);
                match entry.read_to_end(&mut bytes) {
                    Ok(_) => push_content(rows, tarball, offset, &repo, path, &bytes, expression.as_deref()),
                    Err(e) => {
                        let reason = format!("corrupt or truncated archive, inside {path}: {e}");
                        rows.push_bad(tarball, offset, &reason, path);
                        return false;
                    }
                }
            }
            send(rows, false)
        })?;
        if let Err(reason) = outcome {
            rows.push_bad(tarball, reason.0, &reason.1, &tarball.relative);
        }
        Ok(())
    }

    /// Calls `each(path, entry, header offset)` for every regular file of the
    /// archive until it returns false. `Ok(Err((offset, reason)))` when the
    /// archive is corrupt or truncated; `Err` when the store failed.
    fn each_entry(
        &self,
        tarball: &InputFile,
        progress: Progress,
        each: &mut dyn FnMut(&str, &mut TarEntry<'_>, u64) -> bool,
    ) -> Result<Result<(), (u64, String)>, DataFusionError> {
        let opened = open_input(tarball, progress, &self.handle).map_err(|e| unreadable(tarball, e.to_string()))?;
        let (fault, what) = (opened.fault.clone(), opened.compression.corrupt_stream());
        let mut archive = tar::Archive::new(opened.reader);
        let entries = archive
            .entries()
            .map_err(|e| unreadable(tarball, format!("not a tar archive: {e}")))?;
        let mut last_offset = 0;
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) if fault.happened() => return Err(unreadable(tarball, format!("read failed: {e}"))),
                Err(e) => {
                    return Ok(Err((
                        last_offset,
                        format!("corrupt or truncated tar archive ({what}?) after byte {last_offset}: {e}"),
                    )));
                }
            };
            last_offset = entry.raw_header_position();
            if !entry.header().entry_type().is_file() {
                continue;
            }
            // Raw bytes, so no file is skipped for an odd name.
            let path = String::from_utf8_lossy(&entry.path_bytes())
                .trim_start_matches("./")
                .to_string();
            if !each(&path, &mut entry, last_offset) {
                break;
            }
        }
        Ok(Ok(()))
    }
}

/// A file inside a repository tarball, read from the decompressed stream.
type TarEntry<'a> = tar::Entry<'a, Box<dyn std::io::BufRead + Send>>;

fn too_large(size: u64) -> String {
    format!("file of {size} bytes, over the {MAX_FILE_BYTES}-byte limit; not read")
}

fn fields<'a>(repo: &'a str, path: &'a str, content: Option<&'a str>, license: Option<&'a str>) -> GithubFields<'a> {
    GithubFields {
        repo_name: Some(repo),
        path: Some(path),
        content,
        license,
        language: None,
    }
}

/// A file that passed the path rules: its text, or quarantine when it is not UTF-8.
fn push_content(
    rows: &mut GithubRows,
    file: &InputFile,
    offset: u64,
    repo: &str,
    path: &str,
    bytes: &[u8],
    license: Option<&str>,
) {
    match std::str::from_utf8(bytes) {
        Ok(text) => rows.push_fields(file, offset, fields(repo, path, Some(text), license)),
        Err(e) => {
            let reason = format!("{path} is not UTF-8 (invalid byte at {})", e.valid_up_to());
            rows.push_bad(
                file,
                offset,
                &reason,
                &String::from_utf8_lossy(&bytes[..bytes.len().min(200)]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIT: &str = "MIT License\n\nCopyright (c) 2024 Someone\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software and associated documentation files (the \"Software\"), to deal\nin the Software without restriction, including without limitation the rights\nto use, copy, modify, merge, publish, distribute, sublicense, and/or sell\ncopies of the Software, and to permit persons to whom the Software is\nfurnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all\ncopies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\nIMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\nFITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\nAUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\nLIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\nOUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\nSOFTWARE.\n";

    #[test]
    fn licence_texts_are_recognised() {
        assert_eq!(detect_license(MIT), Some("MIT"));
        assert_eq!(detect_license("All rights reserved. Do not copy."), None);
        let apache = include_str!("../../../../LICENSE-APACHE");
        assert_eq!(detect_license(apache), Some("Apache-2.0"));
        let without_appendix = &apache[..apache.find("APPENDIX").unwrap()];
        assert_eq!(detect_license(without_appendix), Some("Apache-2.0"), "not Pixar");
    }

    #[test]
    fn several_licence_files_must_all_be_allowed() {
        let mut l = RepoLicense::default();
        assert_eq!(l.expression(), None);
        l.add("LICENSE-MIT", MIT);
        assert_eq!(l.expression().as_deref(), Some("MIT"));
        l.ids.insert("GPL-3.0-only");
        assert_eq!(l.expression().as_deref(), Some("GPL-3.0-only AND MIT"));
        l.add("COPYING", "my own terms");
        assert_eq!(l.expression().as_deref(), Some("unrecognized licence file COPYING"));
    }

    #[test]
    fn inputs_are_grouped_into_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let stores = llamaflow_pipeline::store::StoreRegistry::default();
        let file = |rel: &str| InputFile {
            location: stores.resolve(rel, dir.path()).unwrap(),
            relative: rel.to_string(),
            display: rel.to_string(),
            size: 1,
            version: "v".into(),
        };
        let units = github_units(vec![
            file("rows.jsonl.gz"),
            file("serde.tar.gz"),
            file("a/LICENSE"),
            file("a/src/lib.rs"),
            file("b/main.py"),
        ]);
        let keys: Vec<(&str, usize)> = units.iter().map(|u| (u.key.as_str(), u.files.len())).collect();
        assert_eq!(keys, [("rows.jsonl.gz", 1), ("serde.tar.gz", 1), ("a/", 2), ("b/", 1)]);
        assert_eq!(tarball_repo_name("x/serde-1.0.tgz"), "serde-1.0");
    }
}
