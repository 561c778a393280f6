//! HTML to plain text, keeping the layout a reader relies on: StackExchange post bodies (the LLaMA
//! paper "removed the HTML tags from text") and the pages of WARC responses (as CommonCrawl's WET
//! conversion does).
//!
//! html5ever's tokenizer is used without a tree builder: no DOM is built, the work is linear in
//! the input, and entities are decoded by the same code browsers' parsers follow. Rendering is a
//! small browser-like subset:
//!
//! - block elements end lines; paragraphs, headings, lists and code blocks are separated by one
//!   blank line, `<br>` ends a line, table rows are lines and cells are separated by a space;
//! - list items are lines starting with `* `, indented two spaces per nesting level;
//! - `<pre>` is verbatim (code keeps its indentation), elsewhere whitespace runs collapse to one
//!   space;
//! - links keep their text; images, scripts, styles and comments are dropped.

use std::cell::RefCell;

use html5ever::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer};

/// Deeper list nesting is not indented further, so hostile nesting cannot make output quadratic.
const MAX_INDENT_LEVELS: usize = 16;

/// Tendrils hold at most 4 GiB; bodies are fed in pieces well below that.
const CHUNK_BYTES: usize = 1 << 20;

/// The text of an HTML fragment: tags removed, entities decoded, block layout kept as line breaks.
pub fn html_to_text(html: &str) -> String {
    let input = BufferQueue::default();
    let mut rest = html;
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        input.push_back(StrTendril::from_slice(chunk));
        rest = tail;
    }
    let tokenizer = Tokenizer::new(Sink::default(), Default::default());
    // The sink never asks to pause for a script, so one call normally drains the queue.
    while !input.is_empty() {
        if let TokenizerResult::Done = tokenizer.feed(&input) {
            break;
        }
    }
    tokenizer.end();
    tokenizer.sink.text.take().finish()
}

/// The tokenizer calls the sink through `&self`.
#[derive(Default)]
struct Sink {
    text: RefCell<Text>,
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line_number: u64) -> TokenSinkResult<()> {
        let mut text = self.text.borrow_mut();
        match token {
            Token::TagToken(tag) => return text.tag(&tag),
            Token::CharacterTokens(chars) => text.characters(&chars),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The text being written, and what is owed before the next character.
#[derive(Default)]
struct Text {
    out: String,
    /// Newlines owed: 1 ends the line, 2 leaves a blank line.
    breaks: usize,
    /// Collapsed whitespace owed (one space, unless a line starts first).
    space: bool,
    /// A list item's `* ` is owed; it absorbs its content's own block breaks.
    bullet: bool,
    /// Open `<ul>`/`<ol>`.
    lists: usize,
    /// Open `<pre>`: their text is verbatim.
    pre: usize,
    /// Just after `<pre>`, where a browser drops one newline.
    pre_start: bool,
    /// Inside `<script>` or `<style>`, whose content is not text.
    skipping: bool,
}

impl Text {
    fn tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let start = tag.kind == TagKind::StartTag;
        self.pre_start = false;
        if self.skipping {
            // In raw-text states the tokenizer emits only the matching end tag.
            self.skipping = start;
            return TokenSinkResult::Continue;
        }
        match &*tag.name {
            "script" | "style" if start => {
                self.skipping = true;
                let kind = if &*tag.name == "script" {
                    RawKind::ScriptData
                } else {
                    RawKind::Rawtext
                };
                return TokenSinkResult::RawData(kind);
            }
            "br" => self.line_break(),
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "table" | "hr" | "dl" | "figure"
            | "section" | "article" | "header" | "footer" | "aside" | "nav" | "details" | "address" => self.block(2),
            "div" | "tr" | "dt" | "dd" | "caption" | "summary" | "figcaption" => self.block(1),
            "td" | "th" => self.space = true,
            "pre" | "listing" => {
                self.block(2);
                if start {
                    self.pre += 1;
                    self.pre_start = true;
                } else {
                    self.pre = self.pre.saturating_sub(1);
                }
            }
            "ul" | "ol" | "menu" => {
                if start {
                    self.block(if self.lists == 0 { 2 } else { 1 });
                    self.lists += 1;
                } else {
                    self.lists = self.lists.saturating_sub(1);
                    self.block(if self.lists == 0 { 2 } else { 1 });
                }
            }
            "li" if start => {
                self.block(1);
                self.bullet = true;
            }
            "li" => {
                // Items stay one per line even when they hold paragraphs ("loose" lists).
                if !self.bullet {
                    self.breaks = 1;
                }
                self.bullet = false;
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }

    fn characters(&mut self, chars: &str) {
        if self.skipping {
            return;
        }
        if self.pre > 0 {
            let verbatim = if std::mem::take(&mut self.pre_start) {
                chars.strip_prefix('\n').unwrap_or(chars)
            } else {
                chars
            };
            if !verbatim.is_empty() {
                self.flush();
                self.out.push_str(verbatim);
            }
            return;
        }
        self.pre_start = false;
        for (i, word) in chars.split(is_html_space).enumerate() {
            // Every piece after the first follows whitespace.
            self.space |= i > 0;
            if !word.is_empty() {
                self.flush();
                self.out.push_str(word);
            }
        }
    }

    /// A block boundary: at least `newlines` line ends before the next text.
    fn block(&mut self, newlines: usize) {
        if !self.bullet {
            self.breaks = self.breaks.max(newlines);
        }
    }

    fn line_break(&mut self) {
        if self.pre > 0 {
            self.flush();
            self.out.push('\n');
        } else {
            self.breaks = (self.breaks + 1).min(2);
        }
    }

    /// Writes what is owed before the next character: line ends and indentation, or a space.
    fn flush(&mut self) {
        let mut line_start = false;
        if self.breaks > 0 && !self.out.is_empty() {
            // Verbatim text may already end with line ends; never leave more than one blank line.
            let present = self.out.bytes().rev().take(2).take_while(|&b| b == b'\n').count();
            for _ in present..self.breaks {
                self.out.push('\n');
            }
            line_start = true;
        }
        self.breaks = 0;
        let levels = self.lists.min(MAX_INDENT_LEVELS);
        if std::mem::take(&mut self.bullet) {
            push_indent(&mut self.out, levels.saturating_sub(1));
            self.out.push_str("* ");
        } else if line_start {
            // Continuation lines of a list item line up with its text.
            push_indent(&mut self.out, levels);
        } else if self.space && !self.out.is_empty() && !self.out.ends_with([' ', '\n']) {
            self.out.push(' ');
        }
        self.space = false;
    }

    /// The text, without blank lines or trailing whitespace around it (a leading code line keeps
    /// its indentation).
    fn finish(mut self) -> String {
        self.out.truncate(self.out.trim_end().len());
        let first = self.out.find(|c: char| !c.is_whitespace()).unwrap_or(self.out.len());
        let line = self.out[..first].rfind('\n').map_or(0, |newline| newline + 1);
        self.out.split_off(line)
    }
}

fn push_indent(out: &mut String, levels: usize) {
    for _ in 0..levels {
        out.push_str("  ");
    }
}

/// HTML's ASCII whitespace; a no-break space is text.
fn is_html_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C')
}

#[cfg(test)]
mod tests {
    use super::html_to_text;

    #[test]
    fn paragraphs_are_separated_by_one_blank_line() {
        let html = "<p>First   paragraph\n with  wrapped\ttext.</p>\n\n<p>Second.</p><p></p><p>Third</p>";
        assert_eq!(
            html_to_text(html),
            "First paragraph with wrapped text.\n\nSecond.\n\nThird"
        );
        assert_eq!(html_to_text("<h1>Title</h1><div>a</div><div>b</div>"), "Title\n\na\nb");
        assert_eq!(
            html_to_text("<blockquote>\n  <p>Quoted.</p>\n</blockquote>\n<p>After</p>"),
            "Quoted.\n\nAfter"
        );
    }

    #[test]
    fn br_ends_a_line() {
        assert_eq!(
            html_to_text("one<br>two<br/>three<br><br>four"),
            "one\ntwo\nthree\n\nfour"
        );
        assert_eq!(html_to_text("<br><br><br>x<br><br><br><br>y<br>"), "x\n\ny");
        assert_eq!(html_to_text("a<br> \n b"), "a\nb");
    }

    #[test]
    fn lists_are_bulleted_and_nested_lists_indented() {
        let html = "<p>Intro:</p>\n<ul>\n<li>one</li>\n<li>two\n<ul>\n<li>two.a</li>\n<li><p>two.b</p></li>\
                    \n</ul>\n</li>\
                    \n<li>three</li>\n</ul>\n<ol><li>first</li><li>second</li></ol><p>After.</p>";
        assert_eq!(
            html_to_text(html),
            "Intro:\n\n* one\n* two\n  * two.a\n  * two.b\n* three\n\n* first\n* second\n\nAfter."
        );
        // A second paragraph in an item lines up with the item's text.
        assert_eq!(
            html_to_text("<ul><li><p>a</p><p>b</p></li><li><p>c</p></li></ul>x"),
            "* a\n\n  b\n* c\n\nx"
        );
        assert_eq!(html_to_text("<ul><li></li><li>a</li></ul>"), "* a");
        assert_eq!(
            html_to_text(&format!("{}<li>deep", "<ul>".repeat(1000))),
            format!("{}* deep", "  ".repeat(15))
        );
    }

    #[test]
    fn pre_is_verbatim_with_entities_decoded() {
        let html = "<p>Code:</p>\n<pre><code>fn main() {\n    if a &lt; b &amp;&amp; c &gt; d {\n\n\n        \
                    println!(&quot;hi&quot;);\n    }\n}\n</code></pre>\n<p>Done.</p>";
        assert_eq!(
            html_to_text(html),
            "Code:\n\nfn main() {\n    if a < b && c > d {\n\n\n        println!(\"hi\");\n    }\n}\n\nDone."
        );
        // A browser drops the newline right after <pre>; indentation of a leading code line stays.
        assert_eq!(
            html_to_text("<pre>\n    x = 1\n    y = 2</pre>"),
            "    x = 1\n    y = 2"
        );
        assert_eq!(html_to_text("<pre>a<br>b</pre>"), "a\nb");
        assert_eq!(html_to_text("<pre>a\r\n  b\rc</pre>"), "a\n  b\nc");
    }

    #[test]
    fn inline_code_and_links_keep_their_text() {
        let html =
            "<p>Use <code>x &lt;= y</code> and see <a href=\"https://example.com/a?b=1&amp;c\">the  docs</a>.</p>";
        assert_eq!(html_to_text(html), "Use x <= y and see the docs.");
        let html = "<p>A <strong>bold</strong><em>word</em> and \
                    <img src=\"a.png\" alt=\"enter image description here\"> done</p>";
        assert_eq!(html_to_text(html), "A boldword and done");
    }

    #[test]
    fn whitespace_collapses_outside_pre() {
        assert_eq!(html_to_text("  \n a \t\r\n  b  \n"), "a b");
        assert_eq!(html_to_text("<span>a</span> <span>b</span>"), "a b");
        assert_eq!(html_to_text("a&nbsp;&nbsp;b"), "a\u{a0}\u{a0}b");
        assert_eq!(
            html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>x"),
            "a b\nc\n\nx"
        );
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            html_to_text("&lt;tag&gt; &amp; &quot;q&quot; &#39;s &#x263A; &eacute; &copy"),
            "<tag> & \"q\" 's ☺ é ©"
        );
        assert_eq!(html_to_text("AT&T &unknown; a & b"), "AT&T &unknown; a & b");
    }

    #[test]
    fn scripts_styles_and_comments_are_dropped() {
        let html = "<p>a</p><script>if (x < 1) { document.write('<p>no</p>'); }</script><style>p { color: red }</style>\
                    <!-- hidden --><p>b</p>";
        assert_eq!(html_to_text(html), "a\n\nb");
        assert_eq!(html_to_text("x<script>never closed <p>y"), "x");
    }

    #[test]
    fn hostile_input_is_linear_and_never_panics() {
        for html in [
            "<",
            "</",
            "<p",
            "&",
            "&#",
            "&#x110000;",
            "<pre>",
            "</ul></ul></li></pre>",
            "\0",
            "<!--",
            "<![CDATA[x",
        ] {
            let _ = html_to_text(html);
        }
        let started = std::time::Instant::now();
        let big = "<ul><li><p>x</p>".repeat(20_000) + &"<br>".repeat(20_000) + &"&amp;".repeat(100_000);
        let text = html_to_text(&big);
        assert!(text.len() < 4 * big.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
