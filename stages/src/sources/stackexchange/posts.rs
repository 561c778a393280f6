//! Streaming a StackExchange dump's `Posts.xml` row by row, with `quick-xml`, safely.
//!
//! The dump is one `<posts>` element holding one `<row .../>` per post, so a post is one tag and
//! the reader never holds more than one tag in memory:
//!
//! - every event (a row, or whatever else the file holds) may take at most `max_row_bytes`: the
//!   reader's input is cut off there, so quick-xml's buffer cannot grow past it; the oversized
//!   markup is reported as a bad record and reading resumes at the next `<` (which cannot occur
//!   inside an attribute value, so it starts the next tag);
//! - no entity is ever expanded beyond XML's five and character references: a DOCTYPE's entity
//!   declarations are ignored, so an "entity bomb" costs only the rows that use its entities;
//! - a row lacking what the corpus needs (numeric `Id`, `PostTypeId`, `Score`; an answer's
//!   `ParentId`) is a bad record, and reading goes on;
//! - malformed XML ends the file: past a syntax error nothing is trustworthy, so the caller gets
//!   the position and quarantines the rest.
//!
//! Scores are parsed as integers here because RedPajama's string sort put "9" above "10".

use std::borrow::Cow;
use std::io::{self, BufRead};

use crate::budgeted::Budgeted;
use memchr::memmem;
use quick_xml::Decoder;
use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, SyntaxError};
use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesStart, Event};

/// How much of a bad row is kept to show what it was.
const EXCERPT_CHARS: usize = 200;

/// One post: a question (`post_type` 1), an answer (2) or another kind of page.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// `Id`.
    pub id: i64,
    /// `PostTypeId`: 1 question, 2 answer, others are wiki and moderation pages.
    pub post_type: i64,
    /// `ParentId`: the question an answer belongs to.
    pub parent_id: Option<i64>,
    /// `Score`, as a number.
    pub score: i64,
    /// `Title` (questions only).
    pub title: Option<String>,
    /// `Body`: HTML, with the XML escaping undone; empty when absent.
    pub body: String,
    /// Byte offset of the row's `<` in the decompressed XML.
    pub offset: u64,
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum PostItem {
    /// A row read whole.
    Post(Post),
    /// A row (or other markup) that could not be used: where, why, and its start.
    Bad {
        /// Byte offset of the markup in the decompressed XML.
        offset: u64,
        /// Why it was refused.
        reason: String,
        /// The start of the raw markup.
        excerpt: String,
    },
}

/// Why the rest of a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PostsError {
    /// A syntax error: nothing after `offset` can be trusted.
    #[error("malformed XML at decompressed byte {offset}: {message}")]
    Malformed {
        /// Byte offset of the markup the error is in.
        offset: u64,
        /// What quick-xml said.
        message: String,
    },
    /// The XML ends inside a tag or before its root element is closed.
    #[error("the XML ends early at decompressed byte {offset} (truncated file?)")]
    Truncated {
        /// Byte offset of the unfinished markup, or of the end of the input.
        offset: u64,
    },
    /// The underlying reader (a file, a decompressor) failed.
    #[error("reading failed at decompressed byte {offset}: {source}")]
    Io {
        /// Decompressed bytes read before the failure.
        offset: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
}

impl PostsError {
    /// Where in the decompressed XML the reading stopped.
    pub fn offset(&self) -> u64 {
        match self {
            PostsError::Malformed { offset, .. } | PostsError::Truncated { offset } | PostsError::Io { offset, .. } => {
                *offset
            }
        }
    }
}

/// Streams the posts of one `Posts.xml`.
pub struct PostsReader<R: BufRead> {
    /// `None` only while being rebuilt after an oversized event.
    xml: Option<Reader<Budgeted<R>>>,
    /// Decompressed offset where the current `Reader` started.
    base: u64,
    max_row_bytes: u64,
    buf: Vec<u8>,
    /// Elements open (the root, normally); an end of input while one is open is a truncation.
    depth: u64,
    root_seen: bool,
    done: bool,
}

impl<R: BufRead> PostsReader<R> {
    /// A reader over decompressed XML; no row (or other markup) may exceed `max_row_bytes`.
    pub fn new(reader: R, max_row_bytes: u64) -> Self {
        let budgeted = Budgeted::new(reader, "markup exceeds max_row_bytes");
        PostsReader {
            xml: Some(xml_reader(budgeted, false)),
            base: 0,
            max_row_bytes: max_row_bytes.max(1),
            buf: Vec::new(),
            depth: 0,
            root_seen: false,
            done: false,
        }
    }

    /// The next row, or `None` at the end; after an `Err` the file yields nothing more.
    pub fn next_item(&mut self) -> Result<Option<PostItem>, PostsError> {
        while !self.done {
            let Some(xml) = self.xml.as_mut() else { break };
            let parsed = xml.buffer_position();
            let budget = xml.get_mut();
            // quick-xml does not count a byte-order mark it skips; the budget counts every byte.
            self.base = budget.consumed.saturating_sub(parsed);
            let position = budget.consumed;
            budget.limit = Some(budget.consumed.saturating_add(self.max_row_bytes));
            let decoder = xml.decoder();
            self.buf.clear();
            let (tag, opens) = match xml.read_event_into(&mut self.buf) {
                Ok(Event::Empty(tag)) => (tag, false),
                Ok(Event::Start(tag)) => (tag, true),
                Ok(Event::End(_)) => {
                    self.depth = self.depth.saturating_sub(1);
                    continue;
                }
                Ok(Event::Eof) => {
                    self.done = true;
                    if self.depth > 0 || !self.root_seen {
                        return Err(PostsError::Truncated { offset: position });
                    }
                    continue;
                }
                // DOCTYPE (never expanded), comments, processing instructions and text between rows.
                Ok(_) => continue,
                Err(error) => return self.on_error(error, position),
            };
            self.root_seen = true;
            self.depth += u64::from(opens);
            if tag.name().as_ref() == b"row" {
                return read_row(&tag, position, decoder)
                    .map(Some)
                    .inspect_err(|_| self.done = true);
            }
        }
        Ok(None)
    }

    /// An oversized event costs itself; any other error ends the file.
    fn on_error(&mut self, error: XmlError, position: u64) -> Result<Option<PostItem>, PostsError> {
        self.done = true;
        let Some(xml) = self.xml.take() else { return Ok(None) };
        let error_at = self.base + xml.error_position();
        let mut inner = xml.into_inner();
        if std::mem::take(&mut inner.exceeded) {
            inner.limit = None;
            let what = if self.buf.starts_with(b"<row") { "row" } else { "markup" };
            let item = PostItem::Bad {
                offset: position,
                reason: format!("{what} larger than max_row_bytes ({} bytes)", self.max_row_bytes),
                excerpt: excerpt(&self.buf),
            };
            if let Err(source) = skip_to_tag(&mut inner) {
                return Err(PostsError::Io {
                    offset: inner.consumed,
                    source,
                });
            }
            self.base = inner.consumed;
            // The fresh parser starts inside the root and will meet its end tag unopened.
            self.xml = Some(xml_reader(inner, true));
            self.done = false;
            return Ok(Some(item));
        }
        Err(match error {
            XmlError::Io(source) => PostsError::Io {
                offset: inner.consumed,
                source: io::Error::new(source.kind(), source.to_string()),
            },
            // Every other syntax error is an unclosed construct, met only at the end of input.
            XmlError::Syntax(kind) if kind != SyntaxError::InvalidBangMarkup => {
                PostsError::Truncated { offset: error_at }
            }
            other => PostsError::Malformed {
                offset: error_at,
                message: other.to_string(),
            },
        })
    }
}

fn xml_reader<R: BufRead>(inner: Budgeted<R>, resynchronised: bool) -> Reader<Budgeted<R>> {
    let mut xml = Reader::from_reader(inner);
    let config = xml.config_mut();
    config.trim_text(false);
    config.allow_unmatched_ends = resynchronised;
    xml
}

/// The attributes a post is made of, in the order `read_row` destructures them.
const NAMES: [&[u8]; 6] = [b"Id", b"PostTypeId", b"ParentId", b"Score", b"Title", b"Body"];

/// One row: its post, or a bad record; `Err` only for an attribute syntax error.
fn read_row(tag: &BytesStart, offset: u64, decoder: Decoder) -> Result<PostItem, PostsError> {
    let mut fields: [Option<String>; 6] = Default::default();
    for attribute in tag.attributes() {
        let attribute = attribute.map_err(|e| PostsError::Malformed {
            offset,
            message: e.to_string(),
        })?;
        // Only the attributes used are unescaped: the others cost nothing and cannot fail a row.
        let Some(slot) = NAMES.iter().position(|name| *name == attribute.key.as_ref()) else {
            continue;
        };
        match attribute.decode_and_unescape_value(decoder) {
            Ok(value) => fields[slot] = Some(value.into_owned()),
            Err(error) => return Ok(bad(offset, unescape_failure(NAMES[slot], error), tag)),
        }
    }
    Ok(match post(fields, offset) {
        Ok(post) => PostItem::Post(post),
        Err(reason) => bad(offset, reason, tag),
    })
}

/// The post a row's attributes make, or why they make none.
fn post([id, post_type, parent_id, score, title, body]: [Option<String>; 6], offset: u64) -> Result<Post, String> {
    let id = number("Id", id.as_deref())?;
    let post_type = number("PostTypeId", post_type.as_deref())?;
    let parent_id = match number("ParentId", parent_id.as_deref()) {
        Ok(parent) => Some(parent),
        Err(reason) if post_type == 2 => return Err(format!("answer with {reason}")),
        Err(_) => None,
    };
    let score = match score {
        Some(raw) => raw.parse().map_err(|_| format!("unparsable score {raw:?}"))?,
        None => return Err("missing score".into()),
    };
    Ok(Post {
        id,
        post_type,
        parent_id,
        score,
        title,
        body: body.unwrap_or_default(),
        offset,
    })
}

/// A required integer attribute, or why it is unusable.
fn number(name: &str, raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Err(format!("missing {name}")),
        Some(raw) => raw.parse().map_err(|_| format!("non-numeric {name} {raw:?}")),
    }
}

fn unescape_failure(attribute: &[u8], error: XmlError) -> String {
    match error {
        XmlError::Escape(EscapeError::UnrecognizedEntity(_, name)) => format!("unknown entity &{name};"),
        other => format!("bad {} attribute: {other}", String::from_utf8_lossy(attribute)),
    }
}

fn bad(offset: u64, reason: String, tag: &BytesStart) -> PostItem {
    PostItem::Bad {
        offset,
        reason,
        // quick-xml hands over a tag without its `<`.
        excerpt: format!("<{}", excerpt(tag)),
    }
}

fn excerpt(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(EXCERPT_CHARS * 4)];
    let text: Cow<str> = String::from_utf8_lossy(head);
    text.chars().take(EXCERPT_CHARS).collect()
}

/// Consumes `reader` up to (not including) the next `<`; at the end of input it stops there.
fn skip_to_tag<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(at) = memchr::memchr(b'<', buf) {
            reader.consume(at);
            return Ok(());
        }
        let n = buf.len();
        reader.consume(n);
    }
}

/// How many `<row` occur in the input: ranks sites by post count without parsing (`<` is always
/// escaped inside attribute values, so every occurrence is a row's start).
pub fn count_rows<R: BufRead>(mut reader: R) -> io::Result<u64> {
    const NEEDLE: &[u8] = b"<row";
    let finder = memmem::Finder::new(NEEDLE);
    let carry = NEEDLE.len() - 1;
    let mut count = 0;
    // The stream's last `carry` bytes so far, for a needle split across chunks.
    let mut tail: Vec<u8> = Vec::with_capacity(2 * carry);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(count);
        }
        count += finder.find_iter(buf).count() as u64;
        let carried = tail.len();
        tail.extend_from_slice(&buf[..buf.len().min(carry)]);
        // Only matches starting in the carried bytes straddle the boundary; the rest were counted.
        count += finder.find_iter(&tail).filter(|&at| at < carried).count() as u64;
        if buf.len() > carry {
            tail.clear();
            tail.extend_from_slice(&buf[buf.len() - carry..]);
        } else {
            let excess = tail.len().saturating_sub(carry);
            tail.drain(..excess);
        }
        let n = buf.len();
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "/work/shared/samples/stackexchange/ai.meta.stackexchange.Posts.xml";

    /// Reads everything; a tiny `BufReader` makes tags straddle reads.
    fn read_all(xml: &str, max_row_bytes: u64) -> (Vec<PostItem>, Option<PostsError>) {
        let mut reader = PostsReader::new(io::BufReader::with_capacity(16, xml.as_bytes()), max_row_bytes);
        let mut items = Vec::new();
        loop {
            match reader.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return (items, None),
                Err(e) => {
                    assert!(matches!(reader.next_item(), Ok(None)), "nothing after an error");
                    return (items, Some(e));
                }
            }
        }
    }

    fn posts(rows: &str) -> String {
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<posts>\n{rows}</posts>\n")
    }

    fn post(item: &PostItem) -> &Post {
        match item {
            PostItem::Post(post) => post,
            PostItem::Bad { reason, .. } => panic!("bad row: {reason}"),
        }
    }

    fn reason(item: &PostItem) -> &str {
        match item {
            PostItem::Bad { reason, .. } => reason,
            PostItem::Post(post) => panic!("expected a bad row, got post {}", post.id),
        }
    }

    fn at(xml: &str, needle: &str) -> u64 {
        xml.find(needle).unwrap_or(usize::MAX) as u64
    }

    #[test]
    fn questions_and_answers_are_read_with_offsets() {
        let xml = posts(
            "  <row Id=\"1\" PostTypeId=\"1\" Score=\"10\" Body=\"&lt;p&gt;What does &quot;backprop&quot; \
             mean?&lt;/p&gt;&#xA;\" Title=\"What is backprop?\" Tags=\"&lt;nn&gt;\" />\n  \
             <row Id=\"3\" PostTypeId=\"2\" ParentId=\"1\" Score=\"-2\" Body=\"It&apos;s &amp;&#10;\" />\n",
        );
        let (items, error) = read_all(&xml, 1 << 20);
        assert!(error.is_none());
        let q = post(&items[0]);
        assert_eq!(
            (q.id, q.post_type, q.parent_id, q.score, q.offset),
            (1, 1, None, 10, at(&xml, "<row"))
        );
        assert_eq!(
            (q.title.as_deref(), q.body.as_str()),
            (Some("What is backprop?"), "<p>What does \"backprop\" mean?</p>\n")
        );
        let a = post(&items[1]);
        assert_eq!(
            (a.id, a.parent_id, a.score, a.offset),
            (3, Some(1), -2, at(&xml, "<row Id=\"3\""))
        );
        assert_eq!((a.title.as_deref(), a.body.as_str()), (None, "It's &\n"));
    }

    #[test]
    fn unusable_rows_are_bad_and_reading_goes_on() {
        let xml = posts(
            "<row PostTypeId=\"1\" Score=\"1\" />\n<row Id=\"x\" PostTypeId=\"1\" Score=\"1\" />\n\
             <row Id=\"2\" Score=\"1\" />\n<row Id=\"3\" PostTypeId=\"2\" Score=\"1\" />\n\
             <row Id=\"4\" PostTypeId=\"2\" ParentId=\"q\" Score=\"1\" />\n\
             <row Id=\"5\" PostTypeId=\"1\" Score=\"12a\" Body=\"b\" />\n<row Id=\"6\" PostTypeId=\"1\" />\n\
             <row Id=\"7\" PostTypeId=\"1\" Score=\"1\" Body=\"&amp\" />\n\
             <row Id=\"8\" PostTypeId=\"2\" ParentId=\"1\" Score=\"9\" />\n",
        );
        let (items, error) = read_all(&xml, 1 << 20);
        assert!(error.is_none());
        let reasons: Vec<&str> = items[..8].iter().map(reason).collect();
        assert_eq!(
            reasons[..7],
            [
                "missing Id",
                "non-numeric Id \"x\"",
                "missing PostTypeId",
                "answer with missing ParentId",
                "answer with non-numeric ParentId \"q\"",
                "unparsable score \"12a\"",
                "missing score",
            ]
        );
        assert!(reasons[7].starts_with("bad Body attribute"), "{}", reasons[7]);
        let PostItem::Bad { offset, excerpt, .. } = &items[5] else {
            unreachable!()
        };
        assert_eq!(
            (*offset, excerpt.as_str()),
            (
                at(&xml, "<row Id=\"5\""),
                "<row Id=\"5\" PostTypeId=\"1\" Score=\"12a\" Body=\"b\" "
            )
        );
        assert_eq!(
            (
                post(&items[8]).score,
                post(&items[8]).parent_id,
                post(&items[8]).body.as_str()
            ),
            (9, Some(1), "")
        );
    }

    #[test]
    fn oversized_rows_are_bad_and_reading_resumes() {
        let big = format!(
            "<row Id=\"2\" PostTypeId=\"1\" Score=\"1\" Body=\"{}&gt;&lt;row\" />\n",
            "x".repeat(5000)
        );
        let xml = posts(&format!(
            "<row Id=\"1\" PostTypeId=\"1\" Score=\"1\" />\n{big}<row Id=\"3\" PostTypeId=\"1\" Score=\"1\" />\n"
        ));
        let (items, error) = read_all(&xml, 1000);
        assert!(error.is_none(), "{error:?}");
        assert_eq!((items.len(), post(&items[0]).id), (3, 1));
        assert_eq!(reason(&items[1]), "row larger than max_row_bytes (1000 bytes)");
        let PostItem::Bad { offset, excerpt, .. } = &items[1] else {
            unreachable!()
        };
        assert_eq!(
            (*offset, excerpt.chars().count()),
            (at(&xml, "<row Id=\"2\""), EXCERPT_CHARS)
        );
        assert!(excerpt.starts_with("<row Id=\"2\""), "{excerpt}");
        assert_eq!(
            (post(&items[2]).id, post(&items[2]).offset),
            (3, at(&xml, "<row Id=\"3\""))
        );
        // A row of exactly the limit fits.
        let row = "<row Id=\"1\" PostTypeId=\"1\" Score=\"1\" />";
        assert_eq!(post(&read_all(&posts(row), row.len() as u64).0[0]).id, 1);
    }

    #[test]
    fn entity_bombs_are_not_expanded() {
        let (a, b) = ("a".repeat(100), "&a;".repeat(100));
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE posts [<!ENTITY a \"{a}\"><!ENTITY b \"{b}\">\
             <!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n\
             <posts>\n<row Id=\"1\" PostTypeId=\"1\" Score=\"1\" Body=\"&c;\" />\n\
             <row Id=\"2\" PostTypeId=\"1\" Score=\"1\" Title=\"&x;\" Body=\"ok\" />\n\
             <row Id=\"3\" PostTypeId=\"1\" Score=\"1\" Body=\"&lt;b&gt;\" />\n</posts>\n"
        );
        let (items, error) = read_all(&xml, 1 << 16);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            (reason(&items[0]), reason(&items[1])),
            ("unknown entity &c;", "unknown entity &x;")
        );
        assert_eq!(post(&items[2]).body, "<b>");
        // A DOCTYPE past the allowance is refused without being buffered whole.
        let huge = format!(
            "<!DOCTYPE posts [{}]>\n<posts></posts>",
            "<!ENTITY a \"aaaa\">".repeat(10_000)
        );
        let mut reader = PostsReader::new(huge.as_bytes(), 4096);
        let first = reader.next_item();
        assert!(matches!(&first, Ok(Some(PostItem::Bad { reason, .. })) if reason.starts_with("markup larger")));
        assert!(reader.buf.capacity() <= 2 * 4096, "{}", reader.buf.capacity());
        assert!(reader.next_item().is_err());
    }

    #[test]
    fn malformed_xml_ends_the_file_with_its_offset() {
        let good = "<row Id=\"1\" PostTypeId=\"1\" Score=\"1\" />\n";
        for broken in [
            "<row Id=1 PostTypeId=\"1\" />\n",
            "<row Id=\"1\" Id=\"2\" />\n",
            "</post>\n",
            "<!X>\n",
        ] {
            let xml = posts(&format!("{good}{broken}{good}"));
            let (items, error) = read_all(&xml, 1 << 20);
            assert_eq!(items.len(), 1, "{broken}");
            assert!(
                matches!(error, Some(PostsError::Malformed { .. })),
                "{broken}: {error:?}"
            );
            assert_eq!(error.map(|e| e.offset()), Some(at(&xml, broken)), "{broken}");
        }
    }

    #[test]
    fn truncated_files_are_reported() {
        let row = "<row Id=\"1\" PostTypeId=\"1\" Score=\"1\" Body=\"abc\" />\n";
        let xml = posts(&format!("{row}{row}"));
        let in_row = &xml[..xml.rfind("Body").unwrap_or_default()];
        let in_root = &xml[..xml.find("</posts>").unwrap_or_default()];
        for (cut, rows) in [(in_row, 1), (in_root, 2), ("", 0), ("<?xml version=\"1.0\"?>\n", 0)] {
            let (items, error) = read_all(cut, 1 << 20);
            assert_eq!(items.len(), rows);
            assert!(
                matches!(error, Some(PostsError::Truncated { .. })),
                "{cut:?}: {error:?}"
            );
        }
        let offset = read_all(in_row, 1 << 20).1.map(|e| e.offset());
        assert_eq!(offset, xml.rfind("<row").map(|at| at as u64));
    }

    #[test]
    fn other_elements_are_ignored() {
        let xml = posts("<!-- note --><meta a=\"&zz;\"/><row Id=\"1\" PostTypeId=\"1\" Score=\"0\"></row>\n");
        let (items, error) = read_all(&xml, 1 << 20);
        assert!(error.is_none(), "{error:?}");
        assert_eq!((items.len(), post(&items[0]).id), (1, 1));
    }

    #[test]
    fn count_rows_counts_across_chunk_boundaries() {
        let xml = posts(&"<row Id=\"1\" />\n".repeat(37));
        for capacity in [1, 2, 3, 4, 5, 7, 64, 1 << 16] {
            let counted = count_rows(io::BufReader::with_capacity(capacity, xml.as_bytes())).ok();
            assert_eq!(counted, Some(37), "capacity {capacity}");
        }
        assert_eq!(count_rows(&b"<ro<row<row"[..]).ok(), Some(2));
    }

    #[test]
    fn the_ai_meta_sample_reads_whole() {
        let Ok(bytes) = std::fs::read(SAMPLE) else { return };
        let mut reader = PostsReader::new(&bytes[..], 1 << 20);
        let mut by_type = std::collections::BTreeMap::<i64, u64>::new();
        while let Some(item) = reader.next_item().unwrap() {
            let post = post(&item);
            if by_type.is_empty() {
                // Offsets count the byte-order mark.
                assert_eq!(post.offset, memmem::find(&bytes, b"<row").unwrap_or_default() as u64);
            }
            *by_type.entry(post.post_type).or_default() += 1;
        }
        assert_eq!((by_type.get(&1), by_type.get(&2)), (Some(&141), Some(&242)));
        assert_eq!(count_rows(&bytes[..]).unwrap(), by_type.values().sum::<u64>());
    }
}
