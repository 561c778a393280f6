//! Assembly of one ArXiv paper's source files into a single LaTeX text, the input of the LaTeX cleaner.
//!
//! Papers are often split over several files joined with `\input`/`\include`, and the LLaMA paper cleans "the .tex
//! files" of a paper, so we splice them into the main file as LaTeX would. Comments are stripped before looking for
//! inputs, so a commented-out `\input` is not followed. When no main file can be identified every `.tex` file is
//! concatenated in path order, as RedPajama-Data v1 does.

use std::collections::BTreeMap;

use thiserror::Error;

use super::latex::{Commands, find_env, group_end, skip_ws, strip_comments};

/// Deepest allowed chain of nested inputs below the main file.
const MAX_INCLUDE_DEPTH: usize = 16;
/// The assembled text may be at most this many times the project's total size (or 1 MiB).
const OUTPUT_FACTOR: usize = 8;
/// Floor of the output cap, so a small file input many times over is still fine.
const MIN_OUTPUT_CAP: usize = 1 << 20;

/// Why a paper's files could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectError {
    /// The project holds no `.tex` file.
    #[error("no .tex file in the project")]
    NoTex,
    /// A file inputs itself, directly or through others.
    #[error("{path} inputs itself")]
    IncludeCycle {
        /// The file met twice on one chain of inputs.
        path: String,
    },
    /// Inputs nest deeper than allowed.
    #[error("inputs nest deeper than {MAX_INCLUDE_DEPTH} levels at {path}")]
    TooDeep {
        /// The file that would exceed the depth.
        path: String,
    },
    /// Splicing inputs produced more text than the cap.
    #[error("assembled text exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
}

/// A paper's assembled text and what was found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembly {
    /// The comment-free LaTeX with inputs spliced in.
    pub text: String,
    /// The main file, or `None` when all `.tex` files were concatenated.
    pub main: Option<String>,
    /// Input targets absent from the project (often generated files), in order of appearance.
    pub missing: Vec<String>,
}

/// Assembles a paper's files (relative path → content) into one comment-free LaTeX text.
pub fn assemble(files: &BTreeMap<String, String>) -> Result<String, ProjectError> {
    assemble_project(files).map(|assembly| assembly.text)
}

/// Like [`assemble`], also reporting the main file and the inputs that were missing.
pub fn assemble_project(files: &BTreeMap<String, String>) -> Result<Assembly, ProjectError> {
    let total: usize = files.values().map(String::len).sum();
    let limit = total.saturating_mul(OUTPUT_FACTOR).max(MIN_OUTPUT_CAP);
    let Some(main) = find_main(files) else {
        let texts: Vec<String> = files
            .iter()
            .filter(|(path, _)| is_tex(path))
            .map(|(_, t)| strip_comments(t))
            .collect();
        if texts.is_empty() {
            return Err(ProjectError::NoTex);
        }
        return Ok(Assembly {
            text: texts.join("\n\n"),
            main: None,
            missing: Vec::new(),
        });
    };
    // LaTeX resolves inputs against the directory it runs in, which is the main file's.
    let dir = main.rfind('/').map_or("", |slash| &main[..=slash]);
    let mut assembler = Assembler {
        files,
        dir,
        stack: Vec::new(),
        missing: Vec::new(),
        produced: 0,
        limit,
    };
    let mut text = String::new();
    assembler.splice(main, &mut text)?;
    Ok(Assembly {
        text,
        main: Some(main.to_string()),
        missing: assembler.missing,
    })
}

/// The main file: a `.tex` file with `\documentclass` (or `\documentstyle`) and `\begin{document}`; the largest wins.
pub fn find_main(files: &BTreeMap<String, String>) -> Option<&str> {
    files
        .iter()
        .filter(|(path, text)| is_tex(path) && text.contains("\\begin") && text.contains("\\document"))
        .filter(|(_, text)| is_main(&strip_comments(text)))
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
        .map(|(path, _)| path.as_str())
}

/// Whether comment-free `text` declares a document class and opens the document.
fn is_main(text: &str) -> bool {
    let declares = Commands::new(text, 0).any(|(s, e)| matches!(&text[s + 1..e], "documentclass" | "documentstyle"));
    declares && find_env(text, 0, "begin", "document").is_some()
}

/// Whether `path` names a `.tex` file.
fn is_tex(path: &str) -> bool {
    path.len() > 4 && path.as_bytes()[path.len() - 4..].eq_ignore_ascii_case(b".tex")
}

/// Splices inputs recursively, tracking the chain of open files and the bytes read.
struct Assembler<'a> {
    files: &'a BTreeMap<String, String>,
    dir: &'a str,
    stack: Vec<&'a str>,
    missing: Vec<String>,
    produced: usize,
    limit: usize,
}

impl<'a> Assembler<'a> {
    /// Appends file `path`, comment-free and with its inputs spliced in, to `out`.
    fn splice(&mut self, path: &'a str, out: &mut String) -> Result<(), ProjectError> {
        if self.stack.contains(&path) {
            return Err(ProjectError::IncludeCycle { path: path.to_string() });
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(ProjectError::TooDeep { path: path.to_string() });
        }
        let Some(raw) = self.files.get(path) else { return Ok(()) };
        // Counting every file read, not only output bytes, also stops many inputs of empty files.
        self.produced = self.produced.saturating_add(raw.len() + 1);
        if self.produced > self.limit {
            return Err(ProjectError::TooLarge { limit: self.limit });
        }
        let full = strip_comments(raw);
        let text = if self.stack.is_empty() {
            full.as_str()
        } else {
            document_body(&full)
        };
        self.stack.push(path);
        let mut copied = 0;
        let mut cmds = Commands::new(text, 0);
        while let Some((start, name_end)) = cmds.next() {
            let command = &text[start + 1..name_end];
            if !matches!(command, "input" | "include" | "subfile") {
                continue;
            }
            let Some((target, end)) = input_target(text, name_end, command == "input") else {
                continue;
            };
            out.push_str(&text[copied..start]);
            (copied, cmds.pos) = (end, end);
            match self.resolve(target) {
                Some(found) => self.splice(found, out)?,
                None => self.missing.push(target.to_string()),
            }
        }
        out.push_str(&text[copied..]);
        self.stack.pop();
        Ok(())
    }

    /// The project file an input names: tried against the main file's folder, then the root, with `.tex` and without.
    fn resolve(&self, target: &str) -> Option<&'a str> {
        let files = self.files;
        [self.dir, ""]
            .iter()
            .flat_map(|base| [".tex", ""].map(|ext| normalize(&format!("{base}{target}{ext}"))))
            .find_map(|candidate| files.get_key_value(&candidate).map(|(key, _)| key.as_str()))
    }
}

/// The file name of an input at `p`: a `{group}`, or for the primitive `\input` a word ending at a space.
fn input_target(text: &str, p: usize, primitive: bool) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let p = skip_ws(b, p);
    if let Some(end) = group_end(b, p) {
        let name = text[p + 1..end - 1].trim();
        return (!name.is_empty()).then_some((name, end));
    }
    let len = b[p..]
        .iter()
        .take_while(|c| !c.is_ascii_whitespace() && !b"{}\\%".contains(c))
        .count();
    (primitive && len > 0).then(|| (&text[p..p + len], p + len))
}

/// An included file's document body when it is a complete document itself (`subfiles`, `standalone`).
fn document_body(text: &str) -> &str {
    let Some((_, start)) = find_env(text, 0, "begin", "document") else {
        return text;
    };
    let end = find_env(text, start, "end", "document").map_or(text.len(), |(end, _)| end);
    &text[start..end]
}

/// `path` with `.` and `..` components resolved and repeated slashes dropped.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => _ = parts.pop(),
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect()
    }

    const HEAD: &str = "\\documentclass{article}\n\\begin{document}\n";

    #[test]
    fn splices_inputs_includes_and_nested_files() {
        let main =
            format!("{HEAD}A \\input{{intro}} B \\include{{sec/method}} C \\input ./end.tex\nD\n\\end{{document}}");
        let files = project(&[
            ("paper/main.tex", &main),
            ("paper/intro.tex", "intro % comment"),
            ("paper/sec/method.tex", "method \\input{sec/detail.tex} \\subfile{sub}"),
            ("paper/sec/detail.tex", "detail"),
            (
                "sub.tex",
                "\\documentclass[main]{subfiles}\\begin{document}sub body\\end{document}",
            ),
            ("paper/end.tex", "end"),
        ]);
        let assembly = assemble_project(&files).unwrap();
        assert_eq!(assembly.main.as_deref(), Some("paper/main.tex"));
        assert_eq!(
            assembly.text,
            format!("{HEAD}A intro B method detail sub body C end\nD\n\\end{{document}}")
        );
        assert!(assembly.missing.is_empty());
    }

    #[test]
    fn missing_inputs_are_dropped_and_reported() {
        let main =
            format!("{HEAD}a \\input{{gen/table}} b \\include{{paper.bbl}} c \\input{{}} \\input\n\\end{{document}}");
        let assembly = assemble_project(&project(&[("main.tex", &main), ("paper.bbl", "bbl")])).unwrap();
        assert_eq!(
            assembly.text,
            format!("{HEAD}a  b bbl c \\input{{}} \\input\n\\end{{document}}")
        );
        assert_eq!(assembly.missing, ["gen/table"]);
    }

    #[test]
    fn commented_and_verbatim_inputs_are_not_followed() {
        let main =
            format!("{HEAD}% \\input{{secret}}\nx % \\input{{secret}}\n\\verb|\\input{{secret}}|\n\\end{{document}}");
        let text = assemble(&project(&[("main.tex", &main), ("secret.tex", "SECRET")])).unwrap();
        assert!(
            !text.contains("SECRET") && text.contains("x\n\\verb|\\input{secret}|"),
            "{text}"
        );
    }

    #[test]
    fn cycles_depth_and_size_are_bounded() {
        let cycle = project(&[
            ("main.tex", &format!("{HEAD}\\input{{a}}")),
            ("a.tex", "\\input{b}"),
            ("b.tex", "\\input{a}"),
        ]);
        assert_eq!(
            assemble(&cycle),
            Err(ProjectError::IncludeCycle { path: "a.tex".into() })
        );
        let mut deep = project(&[("main.tex", &format!("{HEAD}\\input{{f0}}"))]);
        deep.extend((0..20).map(|i| (format!("f{i}.tex"), format!("\\input{{f{}}}", i + 1))));
        assert_eq!(assemble(&deep), Err(ProjectError::TooDeep { path: "f16.tex".into() }));
        let twice = project(&[("main.tex", &format!("{HEAD}\\input{{a}}\\input{{a}}")), ("a.tex", "A")]);
        assert_eq!(assemble(&twice).unwrap(), format!("{HEAD}AA"));
        let mut wide = project(&[("main.tex", &format!("{HEAD}\\input{{w0}}"))]);
        wide.extend((0..16).map(|i| (format!("w{i}.tex"), format!("\\input{{w{}}}", i + 1).repeat(100))));
        assert!(matches!(assemble(&wide), Err(ProjectError::TooLarge { .. })));
    }

    #[test]
    fn main_file_detection() {
        let small = format!("{HEAD}small");
        let large = format!("{HEAD}a much larger document");
        let files = project(&[
            ("a.tex", &small),
            (
                "b.tex",
                "% \\documentclass{article}\n% \\begin{document}\n a very long commented-out draft header",
            ),
            ("c.TEX", &large),
            ("d.txt", &large),
        ]);
        assert_eq!(find_main(&files), Some("c.TEX"));
        assert_eq!(
            find_main(&project(&[("b.tex", &small), ("a.tex", &small)])),
            Some("a.tex")
        );
    }

    #[test]
    fn concatenates_when_there_is_no_main_file() {
        let files = project(&[
            ("b.tex", "B % note"),
            ("a.tex", "A"),
            ("c.sty", "sty"),
            ("sec/z.tex", "Z"),
        ]);
        let assembly = assemble_project(&files).unwrap();
        assert_eq!((assembly.text.as_str(), assembly.main), ("A\n\nB\n\nZ", None));
        assert_eq!(assemble(&project(&[("x.bib", "@article{}")])), Err(ProjectError::NoTex));
        assert_eq!(assemble(&BTreeMap::new()), Err(ProjectError::NoTex));
    }

    #[test]
    fn tikz_feynman_sample() {
        let Ok(tex) = std::fs::read_to_string("/work/shared/samples/arxiv/tikz-feynman.tex") else {
            return;
        };
        let assembly = assemble_project(&project(&[("tikz-feynman.tex", &tex)])).unwrap();
        assert_eq!(assembly.missing, ["pgfmanual-en-macros"]);
        assert!(assembly.text.contains("\\section{Introduction}") && !assembly.text.contains("%%%%"));
    }
}
