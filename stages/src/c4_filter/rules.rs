//! C4's page-cleaning heuristics (Raffel et al. 2020, §2.2, as TFDS's
//! `c4_utils.clean_page` implements them), applied to one document.
//!
//! Lines are taken one by one, in TFDS's order of checks: a word over
//! `max_word_length` characters drops the line; Wikipedia-style citations
//! (`[1]`, `[edit]`, `[citation needed]`) are cut; a line not ending in
//! terminal punctuation (`. ? ! " '`, an ellipsis does not count) is dropped, as
//! is one of fewer than `min_words_per_line` words; "lorem ipsum" drops the
//! page; a line mentioning "javascript" is dropped; a curly bracket drops the
//! page; a line with a cookie or terms-of-use notice is dropped. A page whose
//! kept lines hold fewer than `min_sentences` sentences (or fewer than
//! `min_lines` lines) is dropped. Page-level rules look only at lines that
//! survived the line rules before them, as in TFDS.
//!
//! Not applied: C4's bad-words list (LDNOOBW, not shipped offline here), and
//! C4's line dedup across pages (the `commoncrawl` stage does CCNet's).

use serde::Deserialize;

use super::sentences::count_sentences;

/// Substrings (lowercase) of the policy and cookie notices C4 drops.
const POLICY: &[&str] = &[
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
];

/// Characters that end a kept line.
const TERMINAL: &[char] = &['.', '?', '!', '"', '\''];

/// Line-level rules, in the order they are checked; their names in counts.
pub const LINE_RULES: [&str; 5] = [
    "too_long_word",
    "no_terminal_punctuation",
    "too_few_words",
    "javascript",
    "policy",
];

/// `[stages.NAME]` switches and thresholds of `c4_filter`; every rule can be turned off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C4Rules {
    /// Drop lines not ending in `. ? ! " '` (an ellipsis does not count).
    pub terminal_punctuation: bool,
    /// Drop lines of fewer words (0 turns it off).
    pub min_words_per_line: usize,
    /// Drop lines with a longer word, in characters (0 turns it off).
    pub max_word_length: usize,
    /// Cut `[1]`, `[edit]`, `[citation needed]` from lines.
    pub remove_citations: bool,
    /// Drop pages containing "lorem ipsum".
    pub lorem_ipsum: bool,
    /// Drop lines mentioning "javascript".
    pub javascript: bool,
    /// Drop pages containing `{`.
    pub curly_bracket: bool,
    /// Drop lines with cookie and terms-of-use notices.
    pub policy: bool,
    /// Drop pages with fewer sentences in their kept lines (0 turns it off).
    pub min_sentences: usize,
    /// Drop pages with fewer kept lines (0, the default, turns it off).
    pub min_lines: usize,
}

impl Default for C4Rules {
    /// C4's settings.
    fn default() -> Self {
        C4Rules {
            terminal_punctuation: true,
            min_words_per_line: 3,
            max_word_length: 1000,
            remove_citations: true,
            lorem_ipsum: true,
            javascript: true,
            curly_bracket: true,
            policy: true,
            min_sentences: 5,
            min_lines: 0,
        }
    }
}

/// What the rules made of one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageVerdict {
    /// The page stays, cleaned to its kept lines (joined by `\n`).
    Kept(String),
    /// The page goes, by this rule.
    Dropped(&'static str),
}

/// The verdict on one page, and the lines each line rule dropped (indexed as [`LINE_RULES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOutcome {
    /// Kept (cleaned) or dropped.
    pub verdict: PageVerdict,
    /// Lines dropped by each line rule, as [`LINE_RULES`].
    pub lines_dropped: [u32; LINE_RULES.len()],
    /// Lines looked at (blank ones included, as TFDS counts them).
    pub lines_seen: u32,
}

impl C4Rules {
    /// Applies the rules to `text`.
    pub fn apply(&self, text: &str) -> PageOutcome {
        let mut lines_dropped = [0u32; LINE_RULES.len()];
        let mut lines_seen = 0u32;
        let mut kept = String::with_capacity(text.len());
        let (mut kept_lines, mut sentences) = (0usize, 0usize);
        // One buffer for every line's lowercase form (Unicode lowercasing, as Python's `lower()`).
        let mut lower = String::new();
        for raw in split_lines(text) {
            lines_seen += 1;
            let line = raw.trim();
            let words = line.split_whitespace().count();
            if self.max_word_length > 0 && line.split_whitespace().any(|w| longer_than(w, self.max_word_length)) {
                lines_dropped[0] += 1;
                continue;
            }
            let line = if self.remove_citations {
                remove_citations(line)
            } else {
                std::borrow::Cow::Borrowed(line)
            };
            if self.terminal_punctuation && (!line.ends_with(TERMINAL) || line.ends_with("...")) {
                lines_dropped[1] += 1;
                continue;
            }
            // Words are counted before citations are cut, as TFDS does.
            if words < self.min_words_per_line {
                lines_dropped[2] += 1;
                continue;
            }
            lower.clear();
            lower.extend(line.chars().flat_map(char::to_lowercase));
            if self.lorem_ipsum && lower.contains("lorem ipsum") {
                return dropped("lorem_ipsum", lines_dropped, lines_seen);
            }
            if self.javascript && lower.contains("javascript") {
                lines_dropped[3] += 1;
                continue;
            }
            if self.curly_bracket && line.contains('{') {
                return dropped("curly_bracket", lines_dropped, lines_seen);
            }
            if self.policy && POLICY.iter().any(|p| lower.contains(p)) {
                lines_dropped[4] += 1;
                continue;
            }
            if self.min_sentences > 0 {
                sentences += count_sentences(&line);
            }
            if kept_lines > 0 {
                kept.push('\n');
            }
            kept.push_str(&line);
            kept_lines += 1;
        }
        if sentences < self.min_sentences {
            return dropped("too_few_sentences", lines_dropped, lines_seen);
        }
        if kept_lines < self.min_lines {
            return dropped("too_few_lines", lines_dropped, lines_seen);
        }
        if kept.trim().is_empty() {
            return dropped("empty", lines_dropped, lines_seen);
        }
        PageOutcome {
            verdict: PageVerdict::Kept(kept),
            lines_dropped,
            lines_seen,
        }
    }
}

fn dropped(rule: &'static str, lines_dropped: [u32; LINE_RULES.len()], lines_seen: u32) -> PageOutcome {
    PageOutcome {
        verdict: PageVerdict::Dropped(rule),
        lines_dropped,
        lines_seen,
    }
}

/// Lines as Python's `str.splitlines` cuts them (TFDS and datatrove use it):
/// at `\n`, `\r\n`, `\r`, and the rarer breaks (`\v`, `\f`, `\x1c`-`\x1e`,
/// NEL, LS, PS). A final break does not start an empty line.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.char_indices().find(|&(_, c)| is_line_break(c)) {
            Some((at, c)) => {
                let line = &rest[..at];
                let mut next = at + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Whether `word` has more than `max` characters (counted as code points, as Python does).
fn longer_than(word: &str, max: usize) -> bool {
    word.len() > max && word.chars().nth(max).is_some()
}

/// `line` without `[digits]`, `[edit]` and `[citation needed]`.
fn remove_citations(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('[') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let citation = after.find(']').filter(|&close| {
            let inner = &after[..close];
            inner.bytes().all(|b| b.is_ascii_digit()) || inner == "edit" || inner == "citation needed"
        });
        match citation {
            Some(close) => rest = &after[close + 1..],
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "This line has enough words and ends well.";

    fn page(lines: &[&str]) -> String {
        lines.join("\n")
    }

    fn kept(outcome: &PageOutcome) -> &str {
        match &outcome.verdict {
            PageVerdict::Kept(text) => text,
            PageVerdict::Dropped(rule) => panic!("dropped by {rule}"),
        }
    }

    fn five_good() -> Vec<&'static str> {
        vec![GOOD; 5]
    }

    #[test]
    fn a_line_without_terminal_punctuation_is_dropped() {
        let mut lines = five_good();
        lines.insert(2, "Home | About us | Contact");
        lines.insert(3, "And so it goes on and on...");
        let outcome = C4Rules::default().apply(&page(&lines));
        assert_eq!(kept(&outcome), page(&five_good()));
        assert_eq!(outcome.lines_dropped[1], 2);
    }

    #[test]
    fn quotes_end_a_line_and_citations_are_cut_first() {
        let mut lines = five_good();
        lines.push("He said it was \"fine.\"");
        lines.push("The town was founded in 1820.[3]");
        lines.push("It was rebuilt after the fire.[citation needed]");
        // Cut after the line is trimmed: the space left before `[edit]` ends this one.
        lines.push("It burnt down again in 1901. [edit]");
        let out = C4Rules::default().apply(&page(&lines));
        let text = kept(&out);
        assert!(
            text.ends_with("He said it was \"fine.\"\nThe town was founded in 1820.\nIt was rebuilt after the fire."),
            "{text}"
        );
        assert_eq!(out.lines_dropped[1], 1);
    }

    #[test]
    fn short_lines_and_long_words_are_dropped() {
        let mut lines = five_good();
        lines.push("Too short.");
        let long = format!("A word {} is far too long.", "x".repeat(1001));
        lines.push(&long);
        let out = C4Rules::default().apply(&page(&lines));
        assert_eq!(kept(&out), page(&five_good()));
        assert_eq!((out.lines_dropped[0], out.lines_dropped[2]), (1, 1));
    }

    #[test]
    fn fewer_than_five_sentences_drop_the_page() {
        let four = vec![GOOD; 4];
        assert_eq!(
            C4Rules::default().apply(&page(&four)).verdict,
            PageVerdict::Dropped("too_few_sentences")
        );
        // Two sentences on one line count twice.
        let mut lines = four.clone();
        lines[0] = "One sentence here is fine. Another sentence follows it.";
        assert!(matches!(
            C4Rules::default().apply(&page(&lines)).verdict,
            PageVerdict::Kept(_)
        ));
        let lenient = C4Rules {
            min_sentences: 0,
            ..C4Rules::default()
        };
        assert!(matches!(lenient.apply(&page(&four)).verdict, PageVerdict::Kept(_)));
        let three_lines = C4Rules {
            min_sentences: 0,
            min_lines: 5,
            ..C4Rules::default()
        };
        assert_eq!(
            three_lines.apply(&page(&four)).verdict,
            PageVerdict::Dropped("too_few_lines")
        );
    }

    #[test]
    fn lorem_ipsum_and_curly_brackets_drop_the_page_but_only_on_surviving_lines() {
        let mut lines = five_good();
        lines.push("Lorem ipsum dolor sit amet, consectetur.");
        assert_eq!(
            C4Rules::default().apply(&page(&lines)).verdict,
            PageVerdict::Dropped("lorem_ipsum")
        );
        let mut lines = five_good();
        lines.push("function f() { return 1; } is code here.");
        assert_eq!(
            C4Rules::default().apply(&page(&lines)).verdict,
            PageVerdict::Dropped("curly_bracket")
        );
        // A bracket on a line already dropped (no terminal punctuation) does not count.
        let mut lines = five_good();
        lines.push("var x = { a: 1 }");
        assert!(matches!(
            C4Rules::default().apply(&page(&lines)).verdict,
            PageVerdict::Kept(_)
        ));
        let off = C4Rules {
            curly_bracket: false,
            ..C4Rules::default()
        };
        let mut lines = five_good();
        lines.push("The set {1, 2} has two members.");
        assert!(off.apply(&page(&lines)).verdict != PageVerdict::Dropped("curly_bracket"));
    }

    #[test]
    fn javascript_and_policy_notices_drop_their_lines() {
        let mut lines = five_good();
        lines.push("Please enable JavaScript to view the comments.");
        lines.push("By using this site you agree to our Privacy Policy.");
        lines.push("This website uses cookies to improve your experience.");
        let out = C4Rules::default().apply(&page(&lines));
        assert_eq!(kept(&out), page(&five_good()));
        assert_eq!((out.lines_dropped[3], out.lines_dropped[4]), (1, 2));
    }

    #[test]
    fn lines_split_like_python_splitlines() {
        let lines: Vec<&str> = split_lines("a\r\nb\rc\u{2028}d\n\ne\n").collect();
        assert_eq!(lines, ["a", "b", "c", "d", "", "e"]);
        assert_eq!(split_lines("").count(), 0);
    }

    #[test]
    fn words_are_measured_in_characters() {
        assert!(!longer_than(&"é".repeat(1000), 1000));
        assert!(longer_than(&"é".repeat(1001), 1000));
    }

    #[test]
    fn only_citation_brackets_are_cut() {
        assert_eq!(
            remove_citations("a[1] b[] c[edit] d[x] e[citation needed]"),
            "a b c d[x] e"
        );
        assert_eq!(remove_citations("[[12]"), "[");
    }
}
