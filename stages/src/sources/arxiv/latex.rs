//! Cleaning of one paper's LaTeX into training text, as the LLaMA paper describes for ArXiv: "we removed everything
//! before the first section, as well as the bibliography. We also removed the comments from the .tex files, and
//! inline-expanded definitions and macros written by users".
//!
//! Where the paper is vague this follows RedPajama-Data v1's `arxiv_cleaner.py`, minus its bugs: macros with
//! arguments are expanded too (RedPajama expands only argument-free ones), `\sectionmark` and the like are not taken
//! for sections, and a bibliography removes only itself rather than everything after it.
//!
//! All recognised syntax is ASCII, so the scanners work on bytes and slice only next to ASCII bytes, which never
//! splits a UTF-8 character. Expansion is one left-to-right pass that recurses into macro bodies under a depth counter
//! and a byte budget, so hostile definitions such as `\def\a{\a\a}` fail fast instead of exhausting memory or time.

use std::collections::HashMap;

use thiserror::Error;

/// Sectioning commands; the first one marks where the kept text starts.
const SECTIONS: [&str; 7] = [
    "part",
    "chapter",
    "section",
    "subsection",
    "subsubsection",
    "paragraph",
    "subparagraph",
];
/// Environments TeX reads literally, so a `%` or a macro name inside them is text.
const VERBATIM_ENVS: [&str; 6] = ["verbatim", "verbatim*", "Verbatim", "BVerbatim", "lstlisting", "minted"];
/// Environments holding the reference list.
const BIBLIOGRAPHY_ENVS: [&str; 3] = ["thebibliography", "references", "REFERENCES"];
/// Ceiling on the configured depth, so the expansion recursion cannot overflow the stack whatever the options say.
const DEPTH_CEILING: usize = 512;
/// Floor of the output cap, so short papers with macro-heavy bodies are not rejected.
const MIN_OUTPUT_CAP: usize = 1 << 20;
/// A `\verb` longer than this is taken for a stray `\verb`, so scanning for its end cannot turn quadratic.
const MAX_VERB_LEN: usize = 512;

/// Options of [`LatexCleaner`].
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Drop everything from `\appendix` or `\begin{appendix}` on, as RedPajama does.
    pub cut_appendix: bool,
    /// Deepest allowed nesting of macro expansions (at most 512 is honoured).
    pub max_expansion_depth: usize,
    /// Expansion may produce at most `max(factor × input, 1 MiB)` bytes.
    pub max_output_factor: usize,
}

impl Default for CleanOptions {
    fn default() -> Self {
        Self {
            cut_appendix: true,
            max_expansion_depth: 32,
            max_output_factor: 8,
        }
    }
}

/// Why a text could not be cleaned; the paper should be dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CleanError {
    /// Nothing marks the start of the content (RedPajama drops such files too).
    #[error("no \\section or other sectioning command")]
    NoSection,
    /// A macro recurses, directly or through others, deeper than allowed.
    #[error("macro \\{name} expands deeper than {depth} levels")]
    MacroDepth {
        /// The macro whose expansion went too deep.
        name: String,
        /// The depth limit in force.
        depth: usize,
    },
    /// Macro expansion produced more text than the cap.
    #[error("expanded text exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
}

/// Cleans one paper's assembled LaTeX into the text kept for training.
#[derive(Debug, Clone, Default)]
pub struct LatexCleaner {
    options: CleanOptions,
}

impl LatexCleaner {
    /// A cleaner with the given options.
    pub fn new(options: CleanOptions) -> Self {
        Self { options }
    }

    /// Strips comments, preamble, macro definitions, bibliography (and appendix) and expands user macros.
    pub fn clean(&self, tex: &str) -> Result<String, CleanError> {
        let text = strip_comments(&tex.replace("\r\n", "\n"));
        let (text, macros) = extract_macros(&text);
        // The preamble is never content; skipping it also skips `\titleformat{\section}` and friends.
        let doc_start = find_env(&text, 0, "begin", "document").map_or(0, |(_, end)| end);
        let doc = cut_tail(&text[doc_start..], self.options.cut_appendix);
        let mut expander = Expander {
            macros: &macros,
            max_depth: self.options.max_expansion_depth.min(DEPTH_CEILING),
            limit: tex
                .len()
                .saturating_mul(self.options.max_output_factor)
                .max(MIN_OUTPUT_CAP),
            produced: 0,
        };
        let body = match find_first_section(&doc) {
            Some(start) if macros.is_empty() => doc[start..].to_string(),
            Some(start) => expander.run(&doc[start..])?,
            None => {
                // Some papers reach `\section` only through a macro such as `\newcommand{\sect}[1]{\section{#1}}`.
                let all = expander.run(&doc)?;
                let start = find_first_section(&all).ok_or(CleanError::NoSection)?;
                all[start..].to_string()
            }
        };
        Ok(collapse_blank_lines(&body))
    }
}

/// A user macro: parameter count, default of the first parameter when optional, and body.
#[derive(Debug)]
struct Macro {
    nargs: usize,
    default: Option<String>,
    body: String,
}

/// A parsed definition: macro name, the macro, and where the definition ends.
type Definition = (String, Macro, usize);

/// Iterates over control sequences as `(start, end of name)`, stepping over verbatim text; `pos` may be moved ahead.
pub(crate) struct Commands<'a> {
    /// The text scanned.
    s: &'a str,
    /// Where the next search starts.
    pub(crate) pos: usize,
}

impl<'a> Commands<'a> {
    /// Scans `s` from byte `pos`.
    pub(crate) fn new(s: &'a str, pos: usize) -> Self {
        Self { s, pos }
    }
}

impl Iterator for Commands<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let b = self.s.as_bytes();
        loop {
            let i = self.pos + memchr::memchr(b'\\', b.get(self.pos..)?)?;
            if let Some(end) = verbatim_end(self.s, i) {
                self.pos = end;
                continue;
            }
            self.pos = cs_name_end(b, i);
            return Some((i, self.pos));
        }
    }
}

/// Removes comments: a line whose first non-blank character is `%` vanishes, an unescaped `%` cuts its line's rest.
pub(crate) fn strip_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut seg, mut line_start) = (0, 0, true);
    while i < b.len() {
        if line_start && at(b, skip_blanks(b, i), b'%') {
            out.push_str(&s[seg..i]);
            i = line_end(b, i).map_or(b.len(), |n| n + 1);
            seg = i;
            continue;
        }
        line_start = false;
        match b[i] {
            b'\n' => (i, line_start) = (i + 1, true),
            b'%' => {
                let kept = s[seg..i].trim_end_matches([' ', '\t']);
                out.push_str(kept);
                // An odd run of backslashes means the trim ate an escaped space (`\ %`); give it back.
                if kept.bytes().rev().take_while(|&c| c == b'\\').count() % 2 == 1 {
                    out.push(' ');
                }
                i = line_end(b, i).unwrap_or(b.len());
                seg = i;
            }
            b'\\' => i = verbatim_end(s, i).unwrap_or_else(|| escape_end(b, i)),
            _ => i += 1,
        }
    }
    out.push_str(&s[seg..]);
    out
}

/// The end of the verbatim environment or `\verb` starting at the backslash at `i`, if one starts there.
fn verbatim_end(s: &str, i: usize) -> Option<usize> {
    let rest = &s[i..];
    if let Some(after) = rest.strip_prefix("\\begin{") {
        let env = &after[..after.bytes().take(64).position(|c| c == b'}')?];
        if !VERBATIM_ENVS.contains(&env) {
            return None;
        }
        let end_tag = format!("\\end{{{env}}}");
        let body = i + "\\begin{}".len() + env.len();
        return Some(s[body..].find(&end_tag).map_or(s.len(), |k| body + k + end_tag.len()));
    }
    let after = rest.strip_prefix("\\verb")?.as_bytes();
    let j = usize::from(at(after, 0, b'*'));
    let delim = *after.get(j)?;
    if !delim.is_ascii() || delim.is_ascii_alphabetic() || delim.is_ascii_whitespace() {
        return None;
    }
    let len = after[j + 1..]
        .iter()
        .take(MAX_VERB_LEN)
        .position(|&c| c == delim || c == b'\n')?;
    at(after, j + 1 + len, delim).then_some(i + "\\verb".len() + j + len + 2)
}

/// Collects user macro definitions and returns the text without them; the last definition of a name wins.
fn extract_macros(s: &str) -> (String, HashMap<String, Macro>) {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut macros = HashMap::new();
    let mut copied = 0;
    let mut cmds = Commands::new(s, 0);
    while let Some((start, name_end)) = cmds.next() {
        let command = &s[start + 1..name_end];
        let parsed = match command {
            "newcommand" | "renewcommand" | "providecommand" | "DeclareRobustCommand" => parse_newcommand(s, name_end),
            "def" | "gdef" | "edef" | "xdef" => parse_def(s, name_end),
            _ => None,
        };
        let Some((name, mac, mut end)) = parsed else { continue };
        out.push_str(&s[copied..start]);
        // A definition alone on its line takes the line with it, so it leaves no blank line inside a paragraph.
        let line_start = out.rfind('\n').map_or(0, |k| k + 1);
        let after = skip_blanks(b, end);
        if out[line_start..].trim().is_empty() && matches!(b.get(after), None | Some(b'\n')) {
            out.truncate(line_start);
            end = (after + 1).min(b.len());
        }
        (copied, cmds.pos) = (end, end);
        // Redefining document structure is layout, not content, and expanding it would hide the sections we cut at.
        if SECTIONS.contains(&name.as_str()) || matches!(name.as_str(), "begin" | "end" | "appendix") {
            continue;
        }
        if command == "providecommand" {
            macros.entry(name).or_insert(mac);
        } else {
            macros.insert(name, mac);
        }
    }
    out.push_str(&s[copied..]);
    (out, macros)
}

/// Parses the rest of `\newcommand*{\name}[n][default]{body}` from `p`.
fn parse_newcommand(s: &str, p: usize) -> Option<Definition> {
    let b = s.as_bytes();
    let p = skip_ws(b, p + usize::from(at(b, p, b'*')));
    let (name, p) = if at(b, p, b'{') {
        let q = skip_ws(b, p + 1);
        let e = at(b, q, b'\\').then(|| cs_name_end(b, q))?;
        let r = skip_ws(b, e);
        (&s[q + 1..e], at(b, r, b'}').then_some(r + 1)?)
    } else {
        let e = at(b, p, b'\\').then(|| cs_name_end(b, p))?;
        (&s[p + 1..e], e)
    };
    let mut p = skip_ws(b, p);
    let (mut nargs, mut default) = (0, None);
    if let Some(e) = bracket_end(b, p) {
        nargs = s[p + 1..e - 1].trim().parse::<usize>().ok().filter(|&n| n <= 9)?;
        p = skip_ws(b, e);
        if let Some(e) = bracket_end(b, p).filter(|_| nargs > 0) {
            default = Some(s[p + 1..e - 1].to_string());
            p = skip_ws(b, e);
        }
    }
    definition(name, nargs, default, s, p)
}

/// Parses the rest of `\def\name#1#2{body}` from `p`; delimited parameter texts are not supported (`None`).
fn parse_def(s: &str, p: usize) -> Option<Definition> {
    let b = s.as_bytes();
    let p = skip_ws(b, p);
    let name_end = at(b, p, b'\\').then(|| cs_name_end(b, p))?;
    let mut q = skip_blanks(b, name_end);
    let mut nargs = 0;
    while nargs < 9 && at(b, q, b'#') && at(b, q + 1, b'1' + nargs as u8) {
        (nargs, q) = (nargs + 1, q + 2);
    }
    definition(&s[p + 1..name_end], nargs, None, s, q)
}

/// The definition of `name` whose body is the group at `p`, unless the name is empty or the group unbalanced.
fn definition(name: &str, nargs: usize, default: Option<String>, s: &str, p: usize) -> Option<Definition> {
    let end = group_end(s.as_bytes(), p)?;
    let body = s[p + 1..end - 1].to_string();
    (!name.is_empty()).then(|| (name.to_string(), Macro { nargs, default, body }, end))
}

/// The first `\kind{env}` at or after `from`, as (start, end).
pub(crate) fn find_env(s: &str, from: usize, kind: &str, env: &str) -> Option<(usize, usize)> {
    Commands::new(s, from).find_map(|(start, name_end)| {
        let (name, end) = env_name(s, name_end).filter(|_| &s[start + 1..name_end] == kind)?;
        (name == env).then_some((start, end))
    })
}

/// The environment name in the `{name}` at `p` (after blanks) and the end of the group.
fn env_name(s: &str, p: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let p = skip_blanks(b, p);
    let close = at(b, p, b'{').then(|| b[p + 1..].iter().take(64).position(|&c| c == b'}'))??;
    Some((s[p + 1..p + 1 + close].trim(), p + close + 2))
}

/// Where the first sectioning command proper (`\section*[short]{title}`, not `\sectionmark`) starts.
fn find_first_section(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    Commands::new(s, 0).find_map(|(start, name_end)| {
        if !SECTIONS.contains(&&s[start + 1..name_end]) {
            return None;
        }
        let mut p = skip_ws(b, name_end + usize::from(at(b, name_end, b'*')));
        if at(b, p, b'[') {
            p = skip_ws(b, bracket_end(b, p)?);
        }
        at(b, p, b'{').then_some(start)
    })
}

/// Removes bibliography environments and commands, and cuts at `\end{document}` or (if asked) the appendix.
fn cut_tail(s: &str, cut_appendix: bool) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut copied, mut end) = (0, s.len());
    let mut cmds = Commands::new(s, 0);
    while let Some((start, name_end)) = cmds.next() {
        let arg = skip_ws(b, name_end);
        let remove_to = match (&s[start + 1..name_end], env_name(s, name_end)) {
            ("end", Some(("document", _))) => None,
            ("appendix", _) | ("begin", Some(("appendix" | "appendices", _))) if cut_appendix => None,
            ("begin", Some((name, after))) if BIBLIOGRAPHY_ENVS.contains(&name) => {
                find_env(s, after, "end", name).map(|(_, e)| e)
            }
            ("bibliography" | "bibliographystyle", _) if at(b, arg, b'{') => group_end(b, arg),
            ("printbibliography", _) => Some(bracket_end(b, arg).unwrap_or(name_end)),
            _ => continue,
        };
        // An unterminated bibliography runs to the end, like `\end{document}` and the appendix.
        let Some(remove_to) = remove_to else {
            end = start;
            break;
        };
        out.push_str(&s[copied..start]);
        (copied, cmds.pos) = (remove_to, remove_to);
    }
    out.push_str(&s[copied..end]);
    out
}

/// Expands user macros under a depth limit and a budget on the bytes all expansions produce.
struct Expander<'m> {
    macros: &'m HashMap<String, Macro>,
    max_depth: usize,
    limit: usize,
    produced: usize,
}

impl Expander<'_> {
    /// `s` with every user macro expanded.
    fn run(&mut self, s: &str) -> Result<String, CleanError> {
        let mut out = String::with_capacity(s.len());
        self.expand(s, 0, &mut out)?;
        Ok(out)
    }

    /// Appends `s` expanded to `out`; `depth` counts the expansions enclosing `s`.
    fn expand(&mut self, s: &str, depth: usize, out: &mut String) -> Result<(), CleanError> {
        let macros = self.macros;
        let mut copied = 0;
        let mut cmds = Commands::new(s, 0);
        while let Some((start, name_end)) = cmds.next() {
            let name = &s[start + 1..name_end];
            let Some(mac) = macros.get(name) else { continue };
            // Too few arguments before the text ends: TeX would fail too, so the call stays as written.
            let Some((args, end)) = parse_args(s, name_end, mac) else {
                continue;
            };
            if depth >= self.max_depth {
                return Err(CleanError::MacroDepth {
                    name: name.to_string(),
                    depth: self.max_depth,
                });
            }
            let body = substitute(&mac.body, &args);
            // Counting every expansion, not just output bytes, also stops chains that expand to nothing.
            self.produced = self.produced.saturating_add(body.len() + 1);
            if self.produced > self.limit {
                return Err(CleanError::TooLarge { limit: self.limit });
            }
            out.push_str(&s[copied..start]);
            self.expand(&body, depth + 1, out)?;
            (copied, cmds.pos) = (end, end);
        }
        out.push_str(&s[copied..]);
        Ok(())
    }
}

/// Reads a macro's arguments after `p` as TeX does: a `{group}`, else one token; the optional one in `[...]`.
fn parse_args<'x>(s: &'x str, mut p: usize, mac: &'x Macro) -> Option<(Vec<&'x str>, usize)> {
    let b = s.as_bytes();
    let mut args = Vec::with_capacity(mac.nargs);
    for k in 0..mac.nargs {
        let q = skip_arg_space(b, p);
        if let (0, Some(default)) = (k, &mac.default) {
            match bracket_end(b, q) {
                Some(e) => {
                    args.push(&s[q + 1..e - 1]);
                    p = e;
                }
                None => args.push(default.as_str()),
            }
            continue;
        }
        p = match b.get(q)? {
            b'{' => group_end(b, q)?,
            b'\\' => cs_name_end(b, q),
            // A closing brace or a paragraph break cannot be an argument.
            b'}' | b'\n' => return None,
            _ => q + s[q..].chars().next()?.len_utf8(),
        };
        args.push(if b[q] == b'{' { &s[q + 1..p - 1] } else { &s[q..p] });
    }
    Some((args, p))
}

/// `body` with `#n` replaced by the n-th argument and `##` by `#`.
fn substitute(body: &str, args: &[&str]) -> String {
    let b = body.as_bytes();
    let mut out = String::with_capacity(body.len() + args.iter().map(|a| a.len()).sum::<usize>());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', _) => i = escape_end(b, i),
            (b'#', Some(b'#')) => {
                out.push_str(&body[copied..=i]);
                (i, copied) = (i + 2, i + 2);
            }
            (b'#', Some(&d @ b'1'..=b'9')) if usize::from(d - b'0') <= args.len() => {
                out.push_str(&body[copied..i]);
                out.push_str(args[usize::from(d - b'1')]);
                (i, copied) = (i + 2, i + 2);
            }
            _ => i += 1,
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// Turns every run of blank lines into one empty line and trims the text.
fn collapse_blank_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_blank_run = false;
    for line in s.split('\n') {
        let blank = line.trim().is_empty();
        if !blank {
            out.push_str(line);
        }
        if !(blank && in_blank_run) {
            out.push('\n');
        }
        in_blank_run = blank;
    }
    out.trim().to_string()
}

/// Whether byte `p` of `b` is `c`.
fn at(b: &[u8], p: usize, c: u8) -> bool {
    b.get(p) == Some(&c)
}

/// The end of a control sequence name starting with the backslash at `i`: letters (and `@`), or one symbol.
fn cs_name_end(b: &[u8], i: usize) -> usize {
    let letters = b[i + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic() || **c == b'@')
        .count();
    if letters > 0 { i + 1 + letters } else { escape_end(b, i) }
}

/// Steps over the backslash at `i` and the ASCII character it escapes; a newline or non-ASCII byte is not escaped.
fn escape_end(b: &[u8], i: usize) -> usize {
    match b.get(i + 1) {
        Some(c) if c.is_ascii() && *c != b'\n' => i + 2,
        _ => i + 1,
    }
}

/// The end of the balanced `{...}` group opening at `p`, honouring `\{` and `\}`; `None` if none opens there.
pub(crate) fn group_end(b: &[u8], p: usize) -> Option<usize> {
    if !at(b, p, b'{') {
        return None;
    }
    let (mut depth, mut i) = (0usize, p);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' if depth <= 1 => return Some(i + 1),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The end of the `[...]` opening at `p`; brackets inside braces do not count and an unmatched `}` fails.
fn bracket_end(b: &[u8], p: usize) -> Option<usize> {
    if !at(b, p, b'[') {
        return None;
    }
    let (mut depth, mut i) = (0usize, p + 1);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' if depth == 0 => return None,
            b'}' => depth -= 1,
            b']' if depth == 0 => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Skips spaces and tabs.
fn skip_blanks(b: &[u8], p: usize) -> usize {
    p + b
        .get(p..)
        .map_or(0, |r| r.iter().take_while(|&&c| c == b' ' || c == b'\t').count())
}

/// Skips all ASCII whitespace.
pub(crate) fn skip_ws(b: &[u8], p: usize) -> usize {
    p + b
        .get(p..)
        .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_whitespace()).count())
}

/// Skips the space TeX ignores before an argument: blanks and at most one newline (two would be a paragraph).
fn skip_arg_space(b: &[u8], p: usize) -> usize {
    let p = skip_blanks(b, p);
    if at(b, p, b'\n') { skip_blanks(b, p + 1) } else { p }
}

/// The position of the next newline at or after `from`.
fn line_end(b: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', b.get(from..)?).map(|k| from + k)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn clean(tex: &str) -> Result<String, CleanError> {
        LatexCleaner::default().clean(tex)
    }

    /// Cleans a document with preamble `pre` and body `body`.
    fn doc(pre: &str, body: &str) -> Result<String, CleanError> {
        clean(&format!(
            "\\documentclass{{article}}\n{pre}\n\\begin{{document}}\n{body}\n\\end{{document}}\n"
        ))
    }

    /// Checks `(preamble, body, cleaned)` cases.
    fn check(cases: &[(&str, &str, &str)]) {
        for (pre, body, want) in cases {
            assert_eq!(doc(pre, body).as_deref(), Ok(*want), "preamble {pre:?} body {body:?}");
        }
    }

    #[test]
    fn comments() {
        #[rustfmt::skip]
        let cases = [
            ("a % c\nb \\% d\ne \\\\% f\ng\\ % h\n", "a\nb \\% d\ne \\\\\ng\\ \n"),
            ("x\n  % whole line\n\t%\n%\ny", "x\ny"),
            ("\\begin{verbatim}\n5%\n% kept\n\\end{verbatim} %", "\\begin{verbatim}\n5%\n% kept\n\\end{verbatim}"),
            ("\\verb|%| \\verb*+%+ \\verbatim %cut\n\\verb|%\n|", "\\verb|%| \\verb*+%+ \\verbatim\n\\verb|\n|"),
        ];
        for (tex, want) in cases {
            assert_eq!(strip_comments(tex), want);
        }
        check(&[(
            "% \\newcommand{\\x}{X}",
            "\\section{A}\ntext \\x % gone\n% gone\nmore",
            "\\section{A}\ntext \\x\nmore",
        )]);
    }

    #[test]
    fn preamble_is_cut_at_first_section() {
        #[rustfmt::skip]
        check(&[
            ("\\titleformat*{\\section}{}", "\\title{T}\\maketitle\nIntro\n\\section{A}\nBody", "\\section{A}\nBody"),
            ("", "\\sectionmark{x} lost \\section{A} kept", "\\section{A} kept"),
            ("", "\\chapter {Ch} \\section{S}", "\\chapter {Ch} \\section{S}"),
        ]);
        for name in SECTIONS {
            let heads = [
                format!("\\{name}{{X}}"),
                format!("\\{name}*{{X}}"),
                format!("\\{name} [{{]}}]\n{{X}}"),
            ];
            for head in heads {
                assert_eq!(doc("", &format!("lost\n{head}\nkept")), Ok(format!("{head}\nkept")));
            }
        }
        let no_section = doc("", "\\sectionmark{x} \\subsectionfont text \\section");
        assert_eq!(no_section, Err(CleanError::NoSection));
        assert_eq!(clean("no structure at all"), Err(CleanError::NoSection));
        assert_eq!(clean("fragment \\section{F} kept").as_deref(), Ok("\\section{F} kept"));
        assert_eq!(
            CleanError::NoSection.to_string(),
            "no \\section or other sectioning command"
        );
    }

    #[test]
    fn bibliography_is_removed_but_text_after_it_kept() {
        let bib = "\\section{A}\nx\n\\bibliographystyle{plain}\n\\bibliography{a,b}\n\\begin{thebibliography}{9}\n\
                   \\bibitem{k} Knuth.\n\\end{thebibliography}\nafter \\printbibliography[heading=none] end";
        #[rustfmt::skip]
        check(&[
            ("", bib, "\\section{A}\nx\n\nafter  end"),
            ("", "\\section{A} x \\begin{thebibliography}{9} \\bibitem{k}", "\\section{A} x"),
            ("", "\\section{A} x \\begin{references} y \\end{references} z", "\\section{A} x  z"),
            ("", "\\section{A} \\bibliography x \\printbibliography y", "\\section{A} \\bibliography x  y"),
        ]);
    }

    #[test]
    fn appendix_and_end_document() {
        let body = "\\section{A} x \\appendixname\n\\appendix\n\\section{Proofs} y";
        #[rustfmt::skip]
        check(&[
            ("", body, "\\section{A} x \\appendixname"),
            ("", "\\section{A} x \\begin{appendix} y \\end{appendix}", "\\section{A} x"),
            ("", "\\section{A} x \\begin{appendices} y \\end{appendices}", "\\section{A} x"),
        ]);
        let keep = LatexCleaner::new(CleanOptions {
            cut_appendix: false,
            ..CleanOptions::default()
        });
        let kept = keep
            .clean(&format!("\\begin{{document}}{body}\\end{{document}} z"))
            .unwrap();
        assert!(kept.ends_with("{Proofs} y"), "{kept}");
        let ended = clean("\\section{A} x\n\\end{document}\njunk \\section{B}");
        assert_eq!(ended.as_deref(), Ok("\\section{A} x"));
    }

    #[test]
    fn newcommand_forms() {
        let pre = "\\newcommand{\\R}{\\mathbb{R}}\n\\newcommand\\one[1]{<#1>}\n\\newcommand*{ \\two }[2]{#1+#2}\n\
                   \\newcommand{\\op}[2][x]{#1/#2}\n\\renewcommand{\\R}{\\mathbf{R}}\n\\providecommand{\\R}{no}\n\
                   \\newcommand{\\lb}{\\{}\\newcommand{\\hh}{a##b}\\newcommand{\\nil}{0}";
        #[rustfmt::skip]
        check(&[
            (pre, "\\section{S} $\\R$ \\one{a} \\two{b}{c} \\lb \\hh", "\\section{S} $\\mathbf{R}$ <a> b+c \\{ a#b"),
            (pre, "\\section{S} \\op{y} \\op[z]{y} \\op [{]}] {y} \\nil{} \\nil.", "\\section{S} x/y z/y {]}/y 0{} 0."),
            ("", "\\section{S}\nBefore\n\\newcommand{\\x}[1]{X#1}\nafter \\x1.", "\\section{S}\nBefore\nafter X1."),
            ("", "\\section{S} \\newcommand{\\x}[a]{X} \\def\\y{Y", "\\section{S} \\newcommand{\\x}[a]{X} \\def\\y{Y"),
            ("\\renewcommand{\\section}{\\S}\\def\\end{E}", "\\section{S} x", "\\section{S} x"),
        ]);
    }

    #[test]
    fn def_forms() {
        let pre = "\\def\\eps{\\epsilon}\\def\\pair#1#2{(#1,#2)}\\gdef\\h #1{\\def\\in##1{##1#1}}\\def\\d#1.{D}";
        let want = "\\section{S} \\epsilon x (a,b) \\def\\in#1{#1q} \\d z.";
        check(&[(pre, "\\section{S} \\eps x \\pair{a}{b} \\h{q} \\d z.", want)]);
    }

    #[test]
    fn nested_macros_and_longer_names() {
        let pre = "\\newcommand{\\foo}{F}\\newcommand{\\w}[1]{[\\foo #1]}\\newcommand{\\twice}[1]{\\w{#1}\\w{#1}}";
        let want = "\\section{S} [F F][F F] \\foobar \\foo@x F1 F";
        check(&[(pre, "\\section{S} \\twice{\\foo} \\foobar \\foo@x \\foo1 \\foo", want)]);
    }

    #[test]
    fn unbraced_and_missing_arguments() {
        let pre = "\\newcommand{\\pair}[2]{(#1,#2)}";
        #[rustfmt::skip]
        check(&[
            (pre, "\\section{S} \\pair ab \\pair\\beta x \\pair éß", "\\section{S} (a,b) (\\beta,x) (é,ß)"),
            (pre, "\\section{S} \\pair\n{1}\n{2} \\pair{1}  {2}", "\\section{S} (1,2) (1,2)"),
            (pre, "\\section{S} {\\pair{x}} \\pair{x}\n\n{y}", "\\section{S} {\\pair{x}} \\pair{x}\n\n{y}"),
        ]);
        let at_end = clean("\\newcommand{\\pair}[2]{#1#2}\\section{S} \\pair{x}");
        assert_eq!(at_end.as_deref(), Ok("\\section{S} \\pair{x}"));
    }

    #[test]
    fn section_reached_through_a_macro() {
        check(&[(
            "\\newcommand{\\sect}[1]{\\section{#1}}",
            "lost \\sect{Intro} kept",
            "\\section{Intro} kept",
        )]);
    }

    #[test]
    fn recursive_macros_fail() {
        let err = doc("\\def\\a{\\a\\a}", "\\section{S} \\a").unwrap_err();
        assert!(matches!(&err, CleanError::MacroDepth { name, depth: 32 } if name == "a"));
        assert_eq!(err.to_string(), "macro \\a expands deeper than 32 levels");
        let err = doc("\\newcommand{\\b}{\\b}", "\\section{S} \\b");
        assert!(matches!(err, Err(CleanError::MacroDepth { .. })));
    }

    /// `levels` macros (`\m`, `\mm`, ...), each calling the next twice, the last expanding to `leaf`.
    fn chain(levels: usize, leaf: &str) -> String {
        let name = |i: usize| "m".repeat(i + 1);
        let defs: String = (1..levels)
            .map(|i| format!("\\def\\{}{{\\{1}\\{1}}}\n", name(i - 1), name(i)))
            .collect();
        let last = name(levels - 1);
        format!("{defs}\\def\\{last}{{{leaf}}}\n\\begin{{document}}\\section{{S}} \\m")
    }

    #[test]
    fn exponential_macros_fail_fast() {
        let cases = [
            (40, "x", "deeper than 32"),
            (30, "xy", "exceeds 1048576"),
            (30, "", "exceeds"),
        ];
        for (levels, leaf, want) in cases {
            let started = Instant::now();
            let err = clean(&chain(levels, leaf)).unwrap_err().to_string();
            let took = started.elapsed();
            assert!(took < Duration::from_secs(1), "{levels} levels took {took:?}");
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(clean(&chain(4, "x")).as_deref(), Ok("\\section{S} xxxxxxxx"));
    }

    #[test]
    fn blank_lines_collapse() {
        check(&[(
            "",
            "\n\\section{S}\na\n\n\n\n  \nb\n\nc\n\n",
            "\\section{S}\na\n\nb\n\nc",
        )]);
    }

    #[test]
    fn megabyte_is_fast_and_no_prefix_panics() {
        let para = "We show $\\R^n$ is \\emph{nice} \\cite{x}, 100\\% \\pair{a}{b} sure.\n\n".repeat(16_000);
        let defs = "\\newcommand{\\R}{\\mathbb{R}}\\newcommand{\\pair}[2]{(#1,#2)}";
        let tex = format!("{defs}\n\\section{{S}}\n{para}");
        let started = Instant::now();
        let out = clean(&tex).unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(out.len() > tex.len() && out.contains("$\\mathbb{R}^n$ is \\emph{nice} \\cite{x}, 100\\% (a,b) sure."));
        let tricky =
            "\\def\\x#1{é#1}\\newcommand{\\y}[2][d]{#2}%c\n\\section*[{]}]{ü} \\x \\y[ \\verb|%\\begin{verbatim}";
        for (i, _) in tricky.char_indices() {
            let _ = clean(&tricky[..i]);
        }
    }

    /// Runs `check` on a shared sample paper if present (a fresh clone has no ../shared).
    fn on_sample(name: &str, check: impl Fn(&str, &str)) {
        let Ok(tex) = std::fs::read_to_string(format!("/work/shared/samples/arxiv/{name}")) else {
            return;
        };
        let out = clean(&tex).unwrap();
        for gone in ["\\newcommand", "thebibliography", "\\end{document}"] {
            assert!(!out.contains(gone), "{gone} left");
        }
        assert!(
            out.lines().all(|l| !l.trim_start().starts_with('%')),
            "comment line left"
        );
        check(&tex, &out);
    }

    #[test]
    fn quantikz_sample() {
        on_sample("quantikz.tex", |_, out| {
            assert!(
                out.starts_with("\\section{Usage}\n\nThe quantikz package is available"),
                "{out:.80}"
            );
            assert!(out.contains("\\verb!tikzcd!") && out.ends_with("arXiv:1809.03842."));
        });
    }

    #[test]
    fn tikz_feynman_sample() {
        on_sample("tikz-feynman.tex", |tex, out| {
            assert!(
                out.starts_with("\\section{Introduction}\n\\label{sec:introduction}"),
                "{out:.80}"
            );
            assert!(tex.contains("\\tikzfeynmanname{}") && !out.contains("\\tikzfeynmanname"));
            assert!(out.contains("\\tikzname-Feynman{} is") && !out.contains("\\acknowledgements"));
            assert!(out.contains("\\subsection*{Acknowledgements}") && !out.contains("\\def\\"));
        });
    }
}
