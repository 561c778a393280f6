//! The `arxiv` source: arXiv LaTeX sources, one document per paper, cleaned
//! as LLaMA §2 ("ArXiv") and RedPajama-Data v1 did, with its bugs fixed.
//!
//! Inputs, told apart by their bytes rather than their names:
//! - an arXiv bulk source bundle (a tar of per-paper `.gz` files, each a
//!   gzipped `.tex` or a gzipped tar of a project): a paper per member;
//! - one paper's project as a `.tar`/`.tar.gz`, or a `.tex`/`.tex.gz` file.
//!
//! [`project`] joins a paper's `.tex` files from its main file by following
//! `\input`/`\include`; [`latex`] cuts the preamble, comments, bibliography
//! (and the appendix, as RedPajama, `cut_appendix`) and expands user macros,
//! with arguments too, in bounded depth and size. Papers with no section are
//! filtered (`no_section`), PDF-only submissions too (`pdf`). Archive entries
//! are read in memory, never extracted (see [`crate::archive`]).

pub mod latex;
pub mod project;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use llamaflow_pipeline::document::document_schema;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::Deserialize;

use crate::archive::{ArchiveLimits, TarItem, for_each_tar_entry, looks_like_gzip, looks_like_tar, read_capped};
use crate::read::open_input;
use crate::records::{ExtraValue, RecordSink, SourceDoc, read_unit_records};
use crate::sources::books::text::decode_book;
use latex::{CleanError, CleanOptions, LatexCleaner};

/// The `source` column value.
const SOURCE: &str = "arxiv";

fn default_max_paper_bytes() -> u64 {
    64 << 20
}
fn default_max_archive_bytes() -> u64 {
    1 << 40
}
fn default_true() -> bool {
    true
}
fn default_max_macro_depth() -> usize {
    32
}

/// `[stages.NAME]` parameters of an `arxiv` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArxivConfig {
    /// A paper (all its files, decompressed) larger than this is quarantined.
    #[serde(default = "default_max_paper_bytes")]
    pub max_paper_bytes: u64,
    /// An archive decompressing to more than this stops being read (a gzip bomb).
    #[serde(default = "default_max_archive_bytes")]
    pub max_archive_bytes: u64,
    /// Cut from `\appendix` to the end, as RedPajama does.
    #[serde(default = "default_true")]
    pub cut_appendix: bool,
    /// Macro expansions nested deeper than this quarantine the paper.
    #[serde(default = "default_max_macro_depth")]
    pub max_macro_depth: usize,
}

/// Builds `arxiv` stages.
#[derive(Debug)]
pub struct ArxivFactory;

impl StageFactory for ArxivFactory {
    fn type_name(&self) -> &'static str {
        "arxiv"
    }

    fn summary(&self) -> &'static str {
        "arXiv LaTeX sources (bulk bundles, project tarballs, .tex): preamble, comments, bibliography cut, macros expanded"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: ArxivConfig = parse_params(&decl.params)?;
        if config.max_paper_bytes == 0 || config.max_archive_bytes == 0 || config.max_macro_depth == 0 {
            return Err(ParamError {
                key: None,
                message: "`max_paper_bytes`, `max_archive_bytes` and `max_macro_depth` must be positive".into(),
            });
        }
        Ok(Arc::new(ArxivStage { config }))
    }
}

fn extra_fields() -> Vec<Field> {
    vec![Field::new("arxiv_id", DataType::Utf8, true)]
}

/// The `arxiv` dataset's schema: core columns plus `arxiv_id`.
pub fn arxiv_schema() -> SchemaRef {
    document_schema(extra_fields())
}

/// The `arxiv` stage.
#[derive(Debug)]
pub struct ArxivStage {
    config: ArxivConfig,
}

#[async_trait]
impl Stage for ArxivStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        arxiv_schema()
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let config = self.config.clone();
        read_unit_records(unit, SOURCE, extra_fields(), ctx, move |sink| {
            PaperReader::new(&config).read(sink)
        })
        .await
    }
}

/// The arXiv identifier in a file name: `1809.03842v2.gz` → `1809.03842v2`,
/// `math0601001.gz` → `math/0601001` (old-style ids lose their slash in file names).
pub fn arxiv_id_from_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.split(".tar").next().unwrap_or(base);
    let stem = [".gz", ".tex"].iter().fold(stem, |s, e| s.strip_suffix(e).unwrap_or(s));
    let strip_version = |s: &str| -> bool {
        let s = match s.rfind('v') {
            Some(v) if v + 1 < s.len() && s[v + 1..].bytes().all(|b| b.is_ascii_digit()) => &s[..v],
            _ => s,
        };
        s.split_once('.').is_some_and(|(yymm, num)| {
            yymm.len() == 4
                && yymm.bytes().all(|b| b.is_ascii_digit())
                && (4..=5).contains(&num.len())
                && num.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if strip_version(stem) {
        return Some(stem.to_string());
    }
    // Old style: an archive name (`hep-th`, `math.AG`) then seven digits.
    let digits_at = stem.find(|c: char| c.is_ascii_digit())?;
    let (archive, number) = stem.split_at(digits_at);
    let number_ok = number.len() >= 7 && number[..7].bytes().all(|b| b.is_ascii_digit());
    let archive_ok = !archive.is_empty()
        && archive.starts_with(|c: char| c.is_ascii_lowercase())
        && archive
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'.');
    (number_ok && archive_ok).then(|| format!("{archive}/{number}"))
}

/// Reads one input into papers.
struct PaperReader {
    cleaner: LatexCleaner,
    max_paper_bytes: u64,
    max_archive_bytes: u64,
}

/// A paper's `.tex` files, by path inside its project.
type TexFiles = BTreeMap<String, String>;

impl PaperReader {
    fn new(config: &ArxivConfig) -> Self {
        let options = CleanOptions {
            cut_appendix: config.cut_appendix,
            max_expansion_depth: config.max_macro_depth,
            ..CleanOptions::default()
        };
        PaperReader {
            cleaner: LatexCleaner::new(options),
            max_paper_bytes: config.max_paper_bytes,
            max_archive_bytes: config.max_archive_bytes,
        }
    }

    fn read(&self, sink: &mut RecordSink) -> Result<(), StageError> {
        let file = sink.file.clone();
        let unreadable = |message: String| StageError::Unreadable {
            file: file.display.clone(),
            message,
        };
        let mut opened =
            open_input(&file, sink.progress.clone(), &sink.handle).map_err(|e| unreadable(e.to_string()))?;
        let fault = opened.fault.clone();
        let head = opened.reader.fill_buf().map_err(|e| unreadable(e.to_string()))?;
        let id = arxiv_id_from_name(&file.relative);
        if !looks_like_tar(head) {
            return match read_capped(opened.reader, self.max_paper_bytes) {
                Ok(bytes) => self.push_paper(sink, &file.relative, id, 0, &bytes),
                Err(_) if fault.happened() => Err(unreadable("the store failed while reading".into())),
                Err(e) => sink.bad(0, format!("paper not read: {e}"), ""),
            };
        }
        // A tar: a bundle's `.gz` members are papers; loose `.tex` files make one project.
        let limits = ArchiveLimits {
            max_entry_bytes: self.max_paper_bytes,
            max_total_bytes: self.max_archive_bytes,
        };
        let mut project = TexFiles::new();
        let mut project_bytes: u64 = 0;
        let mut project_too_large = false;
        let mut failure = Ok(());
        let result = for_each_tar_entry(opened.reader, limits, |item| {
            let step = match item {
                TarItem::Refused { path, offset, reason } => sink.bad(offset, reason, &path),
                TarItem::File { path, offset, bytes } if path.ends_with(".gz") => {
                    let locator = format!("{}#{path}", file.relative);
                    self.push_paper(sink, &locator, arxiv_id_from_name(&path), offset, &bytes)
                }
                // Past the cap the project is one quarantined record; the bundle's other members still count.
                TarItem::File { .. } if project_too_large => Ok(()),
                TarItem::File { path, offset, bytes } if path.ends_with(".tex") => {
                    project_bytes += bytes.len() as u64;
                    if project_bytes > self.max_paper_bytes {
                        project_too_large = true;
                        project.clear();
                        let reason = format!("the paper's .tex files exceed {} bytes", self.max_paper_bytes);
                        sink.bad(offset, reason, &path)
                    } else {
                        match decode_book(&bytes) {
                            Ok(decoded) => {
                                project.insert(path, decoded.text);
                                Ok(())
                            }
                            Err(e) => sink.bad(offset, format!("{path}: {e}"), &path),
                        }
                    }
                }
                TarItem::File { .. } => Ok(()), // figures, styles, .bib: not text of the paper
            };
            match step {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failure = Err(e);
                    ControlFlow::Break(())
                }
            }
        });
        failure?;
        match result {
            Ok(()) => {}
            Err(_) if fault.happened() => return Err(unreadable("the store failed while reading".into())),
            Err(e) => sink.bad(0, e.to_string(), &file.relative)?,
        }
        if !project.is_empty() {
            self.push_project(sink, &file.relative, id, 0, &project)?;
        }
        Ok(())
    }

    /// One paper's bytes: gzipped or not, a tar of a project or one `.tex` file.
    fn push_paper(
        &self,
        sink: &mut RecordSink,
        locator: &str,
        id: Option<String>,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StageError> {
        let unzipped;
        let bytes = if looks_like_gzip(bytes) {
            match read_capped(flate2::read::MultiGzDecoder::new(bytes), self.max_paper_bytes) {
                Ok(b) => {
                    unzipped = b;
                    &unzipped[..]
                }
                Err(e) => return sink.bad(offset, format!("{locator}: {e}"), ""),
            }
        } else {
            bytes
        };
        if bytes.starts_with(b"%PDF") {
            sink.filtered("pdf");
            return Ok(());
        }
        let mut files = TexFiles::new();
        if looks_like_tar(bytes) {
            let limits = ArchiveLimits {
                max_entry_bytes: self.max_paper_bytes,
                max_total_bytes: self.max_paper_bytes,
            };
            let mut refused = Vec::new();
            let result = for_each_tar_entry(bytes, limits, |item| {
                match item {
                    TarItem::Refused { path, reason, .. } => refused.push(format!("{path}: {reason}")),
                    TarItem::File { path, bytes, .. } if path.ends_with(".tex") => match decode_book(&bytes) {
                        Ok(decoded) => {
                            files.insert(path, decoded.text);
                        }
                        Err(e) => refused.push(format!("{path}: {e}")),
                    },
                    TarItem::File { .. } => {}
                }
                ControlFlow::Continue(())
            });
            // A project with a hostile or broken entry is refused whole: its text could be anything.
            if let Err(e) = result {
                return sink.bad(offset, format!("{locator}: {e}"), "");
            }
            if let Some(first) = refused.first() {
                return sink.bad(offset, format!("{locator}: {first}"), "");
            }
        } else {
            match decode_book(bytes) {
                Ok(decoded) => {
                    files.insert("main.tex".into(), decoded.text);
                }
                Err(e) => return sink.bad(offset, format!("{locator}: {e}"), ""),
            }
        }
        if files.is_empty() {
            sink.filtered("no_tex");
            return Ok(());
        }
        self.push_project(sink, locator, id, offset, &files)
    }

    /// Joins, cleans and adds one paper.
    fn push_project(
        &self,
        sink: &mut RecordSink,
        locator: &str,
        id: Option<String>,
        offset: u64,
        files: &TexFiles,
    ) -> Result<(), StageError> {
        let joined = match project::assemble(files) {
            Ok(text) => text,
            Err(e) => return sink.bad(offset, format!("{locator}: {e}"), ""),
        };
        match self.cleaner.clean(&joined) {
            Err(CleanError::NoSection) => {
                sink.filtered("no_section");
                Ok(())
            }
            Err(e) => sink.bad(offset, format!("{locator}: {e}"), &joined),
            Ok(text) if text.trim().is_empty() => {
                sink.filtered("empty");
                Ok(())
            }
            Ok(text) => sink.doc(SourceDoc {
                locator: locator.to_string(),
                url: id.as_ref().map(|id| format!("https://arxiv.org/abs/{id}")),
                text,
                offset,
                extra: vec![ExtraValue::Text(id)],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arxiv_ids_come_from_file_names() {
        assert_eq!(
            arxiv_id_from_name("src/1809/1809.03842.gz").as_deref(),
            Some("1809.03842")
        );
        assert_eq!(
            arxiv_id_from_name("2101.00001v3.tar.gz").as_deref(),
            Some("2101.00001v3")
        );
        assert_eq!(
            arxiv_id_from_name("0701/math0701001.gz").as_deref(),
            Some("math/0701001")
        );
        assert_eq!(
            arxiv_id_from_name("hep-th9901001.gz").as_deref(),
            Some("hep-th/9901001")
        );
        assert_eq!(arxiv_id_from_name("quantikz.tex"), None);
        assert_eq!(arxiv_id_from_name("tikz-feynman-src.tar.gz"), None);
        assert_eq!(arxiv_id_from_name("123.45.gz"), None);
    }
}
