//! Wikitext to plain text, and the external URLs an article cites.
//!
//! Four linear passes, each a plain scan (no recursion, no backtracking, so a
//! page of any shape costs time proportional to its size):
//!
//! 1. comments and tags: `<!-- -->` go; `<ref>` bodies go, their URLs are
//!    collected; tags whose content is not prose (`<math>`, `<gallery>`, ...)
//!    go with their content; other HTML tags go, their content stays.
//! 2. templates `{{ }}` (parser functions and `{{{parameters}}}` too) and
//!    tables `{| |}` go, however nested, up to `max_depth` levels.
//! 3. links: `[[Target|label]]` becomes `label` (`Target` without a label),
//!    file, image and category links and interlanguage links go; external
//!    links `[http://x label]` become `label`, their URLs are collected.
//! 4. lines: section titles become lines of their own (a title whose section
//!    is left empty is dropped), list markers, bold/italic quotes, magic words
//!    and horizontal rules go, HTML entities are decoded, spaces collapsed.

use std::collections::HashSet;

/// Tags dropped together with their content: not prose.
const DROPPED_WITH_CONTENT: &[&str] = &[
    "ref",
    "references",
    "math",
    "chem",
    "ce",
    "gallery",
    "timeline",
    "graph",
    "score",
    "imagemap",
    "mapframe",
    "maplink",
    "templatedata",
    "templatestyles",
    "includeonly",
    "inputbox",
    "categorytree",
    "hiero",
    "charinsert",
];

/// HTML and extension tags removed while their content is kept.
const UNWRAPPED: &[&str] = &[
    "nowiki",
    "pre",
    "noinclude",
    "onlyinclude",
    "poem",
    "section",
    "syntaxhighlight",
    "source",
    "code",
    "tt",
    "kbd",
    "samp",
    "var",
    "span",
    "div",
    "p",
    "small",
    "big",
    "sup",
    "sub",
    "b",
    "i",
    "u",
    "s",
    "strike",
    "del",
    "ins",
    "em",
    "strong",
    "blockquote",
    "center",
    "font",
    "abbr",
    "cite",
    "dfn",
    "q",
    "mark",
    "bdi",
    "bdo",
    "ruby",
    "rb",
    "rt",
    "rp",
    "wbr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ol",
    "ul",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "caption",
    "tbody",
    "thead",
    "hr",
    "br",
];

/// URL schemes MediaWiki recognises in external links.
const URL_SCHEMES: &[&str] = &[
    "https://", "http://", "ftp://", "ftps://", "//", "irc://", "news:", "mailto:",
];

/// How far a `[[` looks for its `]]`: a link never spans more, and the bound
/// keeps a page full of unclosed brackets linear.
const MAX_LINK_BYTES: usize = 16 << 10;

/// How far a tag's `>` or an external link's `]` is looked for.
const MAX_TAG_BYTES: usize = 2048;

/// The largest char boundary of `text` at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

/// A URL an article cites, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitedUrl {
    /// `ref` (inside a `<ref>`) or `link` (an external link in the text).
    pub kind: &'static str,
    /// The URL as written (protocol-relative `//host` ones get `https:`).
    pub url: String,
}

/// An article's plain text and the URLs it cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPage {
    /// Plain text: paragraphs separated by blank lines, section titles as lines.
    pub text: String,
    /// External URLs in order of first appearance, without repeats.
    pub urls: Vec<CitedUrl>,
}

/// Markup the cleaner refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WikitextError {
    /// Templates or tables nested deeper than the limit.
    #[error("templates or tables nested deeper than {limit} levels at byte {at} of the wikitext")]
    TooDeep {
        /// The configured limit.
        limit: usize,
        /// Byte offset in the wikitext where the limit was crossed.
        at: usize,
    },
}

/// Turns wikitext into plain text for one wiki (its namespace names).
#[derive(Debug, Clone)]
pub struct WikitextCleaner {
    /// Lowercased names of the File, Media and Category namespaces (and aliases):
    /// links into them are dropped.
    dropped_namespaces: HashSet<String>,
    max_depth: usize,
}

impl WikitextCleaner {
    /// A cleaner that drops links into `dropped_namespaces` (besides the
    /// canonical `File`, `Image`, `Media` and `Category`).
    pub fn new<I: IntoIterator<Item = String>>(dropped_namespaces: I, max_depth: usize) -> Self {
        let mut names: HashSet<String> = ["file", "image", "media", "category"].map(String::from).into();
        names.extend(dropped_namespaces.into_iter().map(|n| n.to_lowercase()));
        WikitextCleaner {
            dropped_namespaces: names,
            max_depth,
        }
    }

    /// Cleans one page's wikitext.
    pub fn clean(&self, wikitext: &str) -> Result<CleanPage, WikitextError> {
        let mut urls = UrlList::default();
        let text = strip_comments_and_tags(wikitext, &mut urls);
        let text = strip_templates_and_tables(&text, self.max_depth)?;
        let text = self.render_links(&text, &mut urls);
        Ok(CleanPage {
            text: render_lines(&text),
            urls: urls.urls,
        })
    }

    /// Pass 3: internal links, then external ones (whose labels may hold internal links).
    fn render_links(&self, text: &str, urls: &mut UrlList) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("[[") {
            out.push_str(&rest[..i]);
            let at = &rest[i..];
            match find_link_end(at) {
                Some(end) => {
                    self.render_internal(&at[2..end], &mut out);
                    rest = &at[end + 2..];
                }
                None => {
                    out.push_str("[[");
                    rest = &at[2..];
                }
            }
        }
        out.push_str(rest);
        render_external_links(&out, urls)
    }

    /// Writes what an internal link `[[inner]]` shows, if anything.
    fn render_internal(&self, inner: &str, out: &mut String) {
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t.trim(), Some(l)),
            None => (inner.trim(), None),
        };
        // `[[:Category:X]]` is a plain link to the category page, shown as text.
        let (target, escaped) = match target.strip_prefix(':') {
            Some(t) => (t.trim_start(), true),
            None => (target, false),
        };
        if !escaped && let Some((prefix, _)) = target.split_once(':') {
            let prefix = prefix.trim().to_lowercase();
            if self.dropped_namespaces.contains(&prefix) {
                return;
            }
            // `[[de:Berlin]]`: an interlanguage link, not text.
            if label.is_none() && looks_like_language_code(&prefix) {
                return;
            }
        }
        match label {
            Some(l) if !l.trim().is_empty() => out.push_str(l),
            // The pipe trick `[[Paris (band)|]]` shows `Paris`.
            Some(_) => out.push_str(target.split(" (").next().unwrap_or(target)),
            None => out.push_str(target.trim_start_matches('#')),
        }
    }
}

/// `[http://x label]` → `label`; the URL is collected.
fn render_external_links(text: &str, urls: &mut UrlList) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let inner = &rest[i + 1..];
        let end = inner[..floor_char_boundary(inner, MAX_TAG_BYTES)].find(['\n', ']']);
        match end {
            Some(end) if inner.as_bytes()[end] == b']' && starts_with_scheme(inner) => {
                let link = &inner[..end];
                let (url, label) = link.split_once([' ', '\t']).unwrap_or((link, ""));
                // `mailto:`, `news:` and `irc://` links are not pages a classifier can fetch.
                if url.contains("//") && !url.to_ascii_lowercase().starts_with("irc") {
                    urls.push("link", url);
                }
                out.push_str(label.trim());
                rest = &inner[end + 1..];
            }
            _ => {
                out.push('[');
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// URLs collected on a page, first occurrence kept (a page may cite thousands).
#[derive(Debug, Default)]
struct UrlList {
    urls: Vec<CitedUrl>,
    seen: HashSet<String>,
}

impl UrlList {
    fn push(&mut self, kind: &'static str, url: &str) {
        let url = url.trim().trim_end_matches(['.', ',', ';', ')', '\'', '"']);
        if url.len() < 4 {
            return;
        }
        let url = match url.strip_prefix("//") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_string(),
        };
        if self.seen.insert(url.clone()) {
            self.urls.push(CitedUrl { kind, url });
        }
    }

    /// Collects every `scheme://...` URL in `text` (a `<ref>` body).
    fn collect_from(&mut self, kind: &'static str, text: &str) {
        let mut from = 0;
        while let Some(i) = text[from..].find("://") {
            let sep = from + i;
            let start = text[..sep]
                .rfind(|c: char| !c.is_ascii_alphanumeric())
                .map_or(0, |j| j + 1);
            let end = text[sep..]
                .find(|c: char| c.is_whitespace() || "|]}<>\"[{".contains(c))
                .map_or(text.len(), |j| sep + j);
            let scheme = &text[start..sep];
            if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https" | "ftp" | "ftps") {
                self.push(kind, &text[start..end]);
            }
            from = end.max(sep + 3);
        }
    }
}

fn starts_with_scheme(text: &str) -> bool {
    let head = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    URL_SCHEMES.iter().any(|s| head.starts_with(s))
}

/// Interlanguage prefixes: `de`, `pt`, `zh-min-nan`, `simple`.
fn looks_like_language_code(prefix: &str) -> bool {
    let first = prefix.split('-').next().unwrap_or("");
    (2..=3).contains(&first.len()) && prefix.chars().all(|c| c.is_ascii_lowercase() || c == '-') || prefix == "simple"
}

/// The index of the `]]` closing the `[[` at the start of `text`, nested links counted.
fn find_link_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let limit = bytes.len().min(MAX_LINK_BYTES);
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < limit {
        match (bytes[i], bytes[i + 1]) {
            (b'[', b'[') => {
                depth += 1;
                i += 2;
            }
            (b']', b']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// A tag at the start of `text` (which starts with `<`): its lowercase name,
/// whether it closes (`</x>`) or is self-closing (`<x/>`), and its length.
struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
    len: usize,
}

fn parse_tag(text: &str) -> Option<Tag> {
    let body = &text[1..];
    let (closing, body) = match body.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let name_len = body.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(body.len());
    if name_len == 0 {
        return None;
    }
    let name = body[..name_len].to_ascii_lowercase();
    let after = &body[name_len..];
    if !(after.starts_with(['>', '/', ' ', '\t', '\n'])) {
        return None;
    }
    // A tag never spans a paragraph or runs for pages; an unclosed `<x` is text.
    let window = &after[..floor_char_boundary(after, MAX_TAG_BYTES)];
    let end = window.find('>')?;
    if after[..end].contains("\n\n") {
        return None;
    }
    let self_closing = after[..end].trim_end().ends_with('/');
    Some(Tag {
        name,
        closing,
        self_closing,
        len: 1 + closing as usize + name_len + end + 1,
    })
}

/// Finds `</name` (any case) in `text`; returns (start of the closing tag, end after its `>`).
fn find_closing_tag(text: &str, name: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = text[from..].find("</") {
        let start = from + i;
        let after = &text.as_bytes()[start + 2..];
        if after.len() > name.len() && after[..name.len()].eq_ignore_ascii_case(name.as_bytes()) {
            let tail = &text[start + 2 + name.len()..];
            if tail.starts_with(|c: char| c == '>' || c.is_whitespace()) {
                let close = tail.find('>')?;
                return Some((start, start + 2 + name.len() + close + 1));
            }
        }
        from = start + 2;
    }
    None
}

/// Pass 1: comments and tags.
fn strip_comments_and_tags(text: &str, urls: &mut UrlList) -> String {
    let mut out = String::with_capacity(text.len());
    // Tags found to have no closing tag further on: not searched for again,
    // so a page of unclosed `<ref>`s stays linear.
    let mut unclosed: HashSet<String> = HashSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let at = &rest[i..];
        if let Some(comment) = at.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |j| &comment[j + 3..]);
            continue;
        }
        let Some(tag) = parse_tag(at) else {
            out.push('<');
            rest = &at[1..];
            continue;
        };
        let after = &at[tag.len..];
        if DROPPED_WITH_CONTENT.contains(&tag.name.as_str()) {
            if tag.closing || tag.self_closing {
                rest = after; // a stray closing tag, or `<ref name="x"/>`
                continue;
            }
            let closing = match unclosed.contains(&tag.name) {
                true => None,
                false => find_closing_tag(after, &tag.name),
            };
            match closing {
                Some((start, end)) => {
                    if tag.name == "ref" || tag.name == "references" {
                        urls.collect_from("ref", &after[..start]);
                    }
                    rest = &after[end..];
                }
                // Unclosed: MediaWiki shows the rest as text; only the tag goes.
                None => {
                    unclosed.insert(tag.name);
                    rest = after;
                }
            }
            continue;
        }
        if UNWRAPPED.contains(&tag.name.as_str()) {
            if tag.name == "br" || tag.name == "hr" {
                out.push('\n');
            }
            rest = after;
            continue;
        }
        out.push('<');
        rest = &at[1..];
    }
    out.push_str(rest);
    out
}

/// True when `text[i..]` starts a line (only spaces or `:` indents before it).
fn at_line_start(bytes: &[u8], i: usize) -> bool {
    let mut j = i;
    while j > 0 {
        match bytes[j - 1] {
            b'\n' => return true,
            b' ' | b'\t' | b':' => j -= 1,
            _ => return false,
        }
    }
    true
}

/// What pass 2 has open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    /// `{{ }}`
    Template,
    /// `{{{ }}}`, a template parameter
    Parameter,
    /// `{| |}`
    Table,
}

/// Pass 2: templates and tables, nested in each other to any depth up to `max_depth`.
fn strip_templates_and_tables(text: &str, max_depth: usize) -> Result<String, WikitextError> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<Open> = Vec::new();
    let mut copied_to = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at = &bytes[i..];
        let opens = if at.starts_with(b"{{{") {
            Some((Open::Parameter, 3))
        } else if at.starts_with(b"{{") {
            Some((Open::Template, 2))
        } else if at.starts_with(b"{|") && at_line_start(bytes, i) {
            Some((Open::Table, 2))
        } else {
            None
        };
        // `|}` ends a table only at a line start: a template's last parameter
        // may end a line with `|}}`.
        let closes = match open.last() {
            Some(Open::Parameter) if at.starts_with(b"}}}") => Some(3),
            Some(Open::Template) if at.starts_with(b"}}") => Some(2),
            Some(Open::Table) if at.starts_with(b"|}") && at_line_start(bytes, i) => Some(2),
            _ => None,
        };
        if let Some(len) = closes {
            open.pop();
            i += len;
            if open.is_empty() {
                copied_to = i;
            }
        } else if let Some((kind, len)) = opens {
            if open.is_empty() {
                out.push_str(&text[copied_to..i]);
            }
            open.push(kind);
            if open.len() > max_depth {
                return Err(WikitextError::TooDeep {
                    limit: max_depth,
                    at: i,
                });
            }
            i += len;
        } else {
            i += 1;
        }
    }
    // An unclosed template or table runs to the end of the page and is dropped.
    if open.is_empty() {
        out.push_str(&text[copied_to..]);
    }
    Ok(out)
}

/// Pass 4: line structure, formatting and entities.
fn render_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Section titles wait until their section turns out to have text.
    let mut pending_titles: Vec<(usize, String)> = Vec::new();
    let mut paragraph_open = false;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some((level, title)) = heading(line) {
            pending_titles.retain(|(l, _)| *l < level);
            let title = clean_inline(title);
            if !title.is_empty() {
                pending_titles.push((level, title));
            }
            paragraph_open = false;
            continue;
        }
        if line.starts_with("----") || line.starts_with("#REDIRECT") || line.starts_with("#redirect") {
            paragraph_open = false;
            continue;
        }
        let body = clean_inline(line.trim_start_matches(['*', '#', ':', ';']));
        if body.is_empty() || body.chars().all(|c| c.is_ascii_punctuation() || c.is_whitespace()) {
            paragraph_open = false;
            continue;
        }
        for (_, title) in pending_titles.drain(..) {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&title);
            paragraph_open = false;
        }
        if !out.is_empty() {
            out.push_str(if paragraph_open { "\n" } else { "\n\n" });
        }
        out.push_str(&body);
        paragraph_open = true;
    }
    out
}

/// `== Title ==` → (2, "Title").
fn heading(line: &str) -> Option<(usize, &str)> {
    let lead = line.bytes().take_while(|&b| b == b'=').count();
    let trail = line.bytes().rev().take_while(|&b| b == b'=').count();
    if lead == 0 || trail == 0 || lead + trail >= line.len() {
        return None;
    }
    let level = lead.min(trail);
    Some((level, line[level..line.len() - level].trim()))
}

/// Inline formatting of one line: quotes, magic words, entities, spacing.
fn clean_inline(line: &str) -> String {
    let decoded = html_escape::decode_html_entities(line);
    // Most lines have no quotes, magic words, tabs or no-break spaces: only spacing to tidy.
    if !decoded.contains(['\'', '_', '\t', '\u{a0}']) {
        return tidy_spaces(&decoded);
    }
    let mut out = String::with_capacity(decoded.len());
    let mut chars = decoded.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let mut run = 1;
                while chars.peek() == Some(&'\'') {
                    chars.next();
                    run += 1;
                }
                // MediaWiki: '' italic, ''' bold, ''''' both, '''' an apostrophe then bold.
                let kept = match run {
                    1 => 1,
                    2 | 3 | 5 => 0,
                    4 => 1,
                    n => n - 5,
                };
                out.extend(std::iter::repeat_n('\'', kept));
            }
            '_' if chars.peek() == Some(&'_') => {
                // `__TOC__`, `__NOTOC__`: behaviour switches, not text.
                let rest: String = chars.clone().take(40).collect();
                match magic_word_len(&rest) {
                    Some(n) => {
                        for _ in 0..n {
                            chars.next();
                        }
                    }
                    None => out.push('_'),
                }
            }
            '\u{a0}' | '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    tidy_spaces(&out)
}

/// With `rest` following a `_`: the length of `_WORD__` when it closes a magic word.
fn magic_word_len(rest: &str) -> Option<usize> {
    let word = rest.strip_prefix('_')?;
    let end = word.find("__")?;
    let name = &word[..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase())).then_some(1 + end + 2)
}

/// Collapses runs of spaces, drops the `()` and ` ,` that removed templates leave behind.
fn tidy_spaces(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        let starts_with_punct = word.starts_with([',', '.', ')']);
        if !out.is_empty() && !starts_with_punct {
            out.push(' ');
        }
        out.push_str(word);
    }
    for empty in ["()", "( )", "(, )", "(; )", "(,)", "(;)"] {
        if out.contains(empty) {
            out = out.replace(&format!(" {empty}"), "").replace(empty, "");
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> CleanPage {
        WikitextCleaner::new(["Datei".to_string(), "Kategorie".to_string()], 100)
            .clean(text)
            .unwrap()
    }

    fn text(wikitext: &str) -> String {
        clean(wikitext).text
    }

    #[test]
    fn links_keep_their_text_and_drop_their_targets() {
        assert_eq!(
            text("A [[motion of no confidence]] here."),
            "A motion of no confidence here."
        );
        assert_eq!(text("the [[Reichstag (Weimar Republic)|Reichstag]]s"), "the Reichstags");
        assert_eq!(text("[[Paris (band)|]] played"), "Paris played");
        assert_eq!(text("see [[:Category:Physics|physics]]"), "see physics");
        assert_eq!(text("[[wikt:run|run]] fast"), "run fast");
    }

    #[test]
    fn files_categories_and_interlanguage_links_go() {
        let page = "Text.\n[[File:Map.png|thumb|A [[map]] of [[Spain]]]]\n[[Category:Politics]]\n[[Datei:X.jpg|mini]]\n[[Kategorie:Y]]\n[[de:Misstrauensvotum]]";
        assert_eq!(text(page), "Text.");
        assert_eq!(text("[[Image:a.png]] b"), "b");
    }

    #[test]
    fn templates_tables_and_comments_go_however_nested() {
        let page = "Born {{birth date|1950|{{month|5}}|1}} in X.<!-- hidden -->\n{| class=\"wikitable\"\n|-\n| a || {{flag|b}}\n{|\n| inner\n|}\n|}\nAfter.";
        assert_eq!(text(page), "Born in X.\n\nAfter.");
        assert_eq!(text("{{{1|default}}} x"), "x");
        assert_eq!(text("a {{#if: {{{x|}}} | y | z }} b"), "a b");
    }

    #[test]
    fn template_nesting_beyond_the_limit_is_refused() {
        let deep = format!("{}x{}", "{{a|".repeat(150), "}}".repeat(150));
        let cleaner = WikitextCleaner::new(Vec::new(), 100);
        assert!(matches!(
            cleaner.clean(&deep),
            Err(WikitextError::TooDeep { limit: 100, .. })
        ));
        let ok = format!("a {}x{} b", "{{a|".repeat(50), "}}".repeat(50));
        assert_eq!(cleaner.clean(&ok).unwrap().text, "a b");
    }

    #[test]
    fn references_go_and_their_urls_are_collected() {
        let page = "Fact.<ref>{{Cite web|title = T|url = http://www.gesetze-im-internet.de/x.html#p0315|website = w}}</ref> More.<ref name=\"a\" /> See [https://example.org/page Example] and [//archive.org/x].";
        let p = clean(page);
        assert_eq!(p.text, "Fact. More. See Example and.");
        assert_eq!(
            p.urls,
            vec![
                CitedUrl {
                    kind: "ref",
                    url: "http://www.gesetze-im-internet.de/x.html#p0315".into()
                },
                CitedUrl {
                    kind: "link",
                    url: "https://example.org/page".into()
                },
                CitedUrl {
                    kind: "link",
                    url: "https://archive.org/x".into()
                },
            ]
        );
    }

    #[test]
    fn section_titles_are_lines_and_empty_sections_go() {
        let page =
            "Intro.\n\n==History==\n===Early===\nOld text.\n==References==\n{{reflist}}\n==See also==\n* [[Other]]\n";
        assert_eq!(
            text(page),
            "Intro.\n\nHistory\n\nEarly\n\nOld text.\n\nSee also\n\nOther"
        );
    }

    #[test]
    fn formatting_lists_entities_and_magic_words_go() {
        let page = "__NOTOC__\nThe '''constructive vote''' (in German: ''konstruktives''), '''Bob''''s.\n* one\n# two\n: '''Article 67.''' (1)\n&quot;Federal Diet&quot;&nbsp;x &lt;b&gt;\n----\n";
        assert_eq!(
            text(page),
            "The constructive vote (in German: konstruktives), Bob's.\none\ntwo\nArticle 67. (1)\n\"Federal Diet\" x <b>"
        );
    }

    #[test]
    fn tags_lose_markup_but_not_prose() {
        assert_eq!(text("E = mc<sup>2</sup> and <math>x^2</math> end"), "E = mc2 and end");
        assert_eq!(text("a <gallery>\nFile:x.jpg\n</gallery> b"), "a b");
        assert_eq!(text("x < y and <b>bold</b>"), "x < y and bold");
        assert_eq!(text("unclosed <ref>rest stays"), "unclosed rest stays");
    }

    #[test]
    fn external_link_labels_may_hold_internal_links() {
        let p = clean("* [http://x.org/v \"Talk\" (at [[University of California, Berkeley|UC Berkeley]], 1962)]");
        assert_eq!(p.text, "\"Talk\" (at UC Berkeley, 1962)");
        assert_eq!(p.urls[0].url, "http://x.org/v");
    }

    #[test]
    fn brackets_that_are_not_links_stay() {
        assert_eq!(text("a [note] b [[unclosed"), "a [note] b [[unclosed");
        assert_eq!(text("[1, 2]"), "[1, 2]");
    }

    #[test]
    fn templates_leave_no_empty_parentheses() {
        assert_eq!(text("Smith ({{lang-de|Schmidt}}) was"), "Smith was");
    }
}
