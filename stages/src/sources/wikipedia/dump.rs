//! Reading a MediaWiki XML dump page by page, with `quick-xml`, safely:
//!
//! - no entity is ever expanded beyond XML's five and character references;
//!   a dump that declares entities (`<!DOCTYPE [<!ENTITY ...>]>`, the shape of
//!   both "billion laughs" and external-entity attacks) is refused whole, and a
//!   page that uses an undeclared entity is refused alone;
//! - a page may take at most `max_page_bytes` of XML: past that the reader
//!   stops buffering, skips to the page's end and reports the page as bad;
//! - malformed XML costs the page it is in: the reader skips to the next
//!   `</page>` and goes on. A broken compressed stream ends the file.

use std::io::{self, BufRead};

use crate::budgeted::Budgeted;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// What the dump says about its wiki.
#[derive(Debug, Clone, Default)]
pub struct SiteInfo {
    /// `enwiki`, from `<siteinfo><dbname>`.
    pub dbname: Option<String>,
    /// The root element's `xml:lang`.
    pub xml_lang: Option<String>,
    /// `(key, name)` of every namespace declared.
    pub namespaces: Vec<(i64, String)>,
}

impl SiteInfo {
    /// The wiki's language code: from `dbname` (`enwiki` → `en`,
    /// `zh_min_nanwiki` → `zh-min-nan`), else from `xml:lang`.
    pub fn language(&self) -> Option<String> {
        let from_db = self
            .dbname
            .as_deref()
            .and_then(|db| db.strip_suffix("wiki"))
            .filter(|code| !code.is_empty())
            .map(|code| code.replace('_', "-"));
        from_db.or_else(|| self.xml_lang.clone())
    }

    /// Names of the namespaces whose links are not text: File (6), Media (-2), Category (14).
    pub fn non_text_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|(key, _)| matches!(key, -2 | 6 | 14))
            .map(|(_, name)| name.clone())
            .collect()
    }
}

/// One `<page>` of the dump.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Decompressed byte offset of `<page>`.
    pub offset: u64,
    /// `<title>`.
    pub title: Option<String>,
    /// `<ns>`, the namespace key (0 for articles).
    pub ns: Option<i64>,
    /// The page's `<id>` (not a revision's or a contributor's).
    pub id: Option<u64>,
    /// `<redirect>` present.
    pub redirect: bool,
    /// The last revision's `<text>`: wikitext.
    pub text: String,
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum DumpItem {
    /// A page that was read whole.
    Page(Page),
    /// A page (or the file) that could not be read: where, why, and what was read.
    Bad {
        /// Decompressed byte offset.
        offset: u64,
        /// Why.
        reason: String,
        /// The start of what was read.
        excerpt: String,
    },
}

/// Which field's text is being collected.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    DbName,
    Namespace(i64),
    Title,
    Ns,
    PageId,
    Text,
}

/// Streams the pages of one dump.
pub struct DumpReader<R: BufRead> {
    xml: Option<Reader<Budgeted<R>>>,
    /// Decompressed offset where the current `Reader` started.
    base: u64,
    site: SiteInfo,
    max_page_bytes: u64,
    /// Tells a store failure (fatal for the unit) from corrupt data.
    is_storage_fault: Box<dyn Fn() -> bool + Send>,
    /// What a decoding failure of the compressed stream is called.
    stream_name: &'static str,
    buf: Vec<u8>,
    page: Option<Page>,
    page_error: Option<String>,
    field: Option<Field>,
    /// Element names open inside the current page (to tell the page's `<id>` apart).
    path: Vec<Vec<u8>>,
    field_text: String,
    done: bool,
}

impl<R: BufRead> DumpReader<R> {
    /// A reader over decompressed XML; `stream_name` names the compression in
    /// error messages, `is_storage_fault` says whether an I/O error came from the store.
    pub fn new(
        reader: R,
        max_page_bytes: u64,
        stream_name: &'static str,
        is_storage_fault: Box<dyn Fn() -> bool + Send>,
    ) -> Self {
        let budgeted = Budgeted::new(reader, "page exceeds max_page_bytes");
        DumpReader {
            xml: Some(xml_reader(budgeted)),
            base: 0,
            site: SiteInfo::default(),
            max_page_bytes,
            is_storage_fault,
            stream_name,
            buf: Vec::with_capacity(64 << 10),
            page: None,
            page_error: None,
            field: None,
            path: Vec::new(),
            field_text: String::new(),
            done: false,
        }
    }

    /// What the dump has said about its wiki so far (complete once the first page is read).
    pub fn site(&self) -> &SiteInfo {
        &self.site
    }

    /// The next page, or `None` at the end; `Err` only when the store failed.
    pub fn next_item(&mut self) -> Result<Option<DumpItem>, io::Error> {
        while !self.done {
            let Some(xml) = self.xml.as_mut() else { return Ok(None) };
            let position = self.base + xml.buffer_position();
            self.buf.clear();
            let event = xml.read_event_into(&mut self.buf);
            match event {
                Ok(Event::Eof) => {
                    self.done = true;
                    if let Some(page) = self.page.take() {
                        return Ok(Some(bad(&page, "the XML ends inside a page (truncated file?)".into())));
                    }
                }
                Ok(Event::DocType(doctype)) => {
                    if doctype.windows(8).any(|w| w == b"<!ENTITY") {
                        self.done = true;
                        return Ok(Some(DumpItem::Bad {
                            offset: position,
                            reason: "the XML declares entities in its DOCTYPE; entity expansion and external \
                                     entities are refused, so the file is not read"
                                .into(),
                            excerpt: String::from_utf8_lossy(&doctype).chars().take(200).collect(),
                        }));
                    }
                }
                Ok(Event::Start(start)) => {
                    let start = start.into_owned();
                    self.on_start(&start, position, false);
                }
                Ok(Event::Empty(start)) => {
                    let start = start.into_owned();
                    self.on_start(&start, position, true);
                }
                Ok(Event::End(end)) => {
                    let name = end.local_name().as_ref().to_vec();
                    if let Some(item) = self.on_end(&name) {
                        return Ok(Some(item));
                    }
                }
                Ok(Event::Text(text)) => {
                    if self.field.is_some() {
                        match text.decode() {
                            Ok(t) => self.field_text.push_str(&t),
                            Err(e) => self.fail_page(format!("invalid UTF-8 in the page: {e}")),
                        }
                    }
                }
                Ok(Event::CData(data)) => {
                    if self.field.is_some() {
                        match std::str::from_utf8(&data) {
                            Ok(t) => self.field_text.push_str(t),
                            Err(e) => self.fail_page(format!("invalid UTF-8 in the page: {e}")),
                        }
                    }
                }
                Ok(Event::GeneralRef(reference)) => {
                    if self.field.is_some() {
                        let name = String::from_utf8_lossy(&reference).into_owned();
                        match resolve_reference(&name) {
                            Some(c) => self.field_text.push_str(&c),
                            None => self.fail_page(format!(
                                "undefined entity &{name}; (only XML's own entities and character references are \
                                 expanded)"
                            )),
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return self.on_error(e),
            }
        }
        Ok(None)
    }

    fn fail_page(&mut self, reason: String) {
        if self.page.is_some() && self.page_error.is_none() {
            self.page_error = Some(reason);
        }
    }

    fn on_start(&mut self, start: &BytesStart, position: u64, empty: bool) {
        let name = start.local_name().as_ref().to_vec();
        let attr = |key: &[u8]| {
            start
                .attributes()
                .flatten()
                .find(|a| a.key.as_ref() == key)
                .and_then(|a| String::from_utf8(a.value.into_owned()).ok())
        };
        if let Some(page) = self.page.as_mut() {
            let in_page = self.path.is_empty();
            match name.as_slice() {
                b"redirect" => page.redirect = true,
                b"title" if in_page => self.field = Some(Field::Title),
                b"ns" if in_page => self.field = Some(Field::Ns),
                b"id" if in_page => self.field = Some(Field::PageId),
                b"text" if self.path.last().is_some_and(|p| p == b"revision") => {
                    // Full-history dumps carry many revisions: the last one wins.
                    page.text.clear();
                    self.field = Some(Field::Text);
                }
                _ => {}
            }
            if !empty {
                self.path.push(name);
            }
            self.field_text.clear();
            if empty {
                self.field = None;
            }
            return;
        }
        match name.as_slice() {
            b"mediawiki" => self.site.xml_lang = attr(b"xml:lang"),
            b"dbname" => self.field = Some(Field::DbName),
            b"namespace" => {
                let key = attr(b"key").and_then(|k| k.parse().ok());
                self.field = key.map(Field::Namespace);
            }
            b"page" if !empty => {
                self.page = Some(Page {
                    offset: position,
                    ..Page::default()
                });
                self.page_error = None;
                self.path.clear();
                if let Some(xml) = self.xml.as_mut() {
                    xml.get_mut().limit = Some(position + self.max_page_bytes);
                }
            }
            _ => {}
        }
        self.field_text.clear();
        if empty {
            self.field = None;
        }
    }

    fn on_end(&mut self, name: &[u8]) -> Option<DumpItem> {
        if let Some(field) = self.field.take() {
            let text = std::mem::take(&mut self.field_text);
            match (field, self.page.as_mut()) {
                (Field::DbName, _) => self.site.dbname = Some(text.trim().to_string()),
                (Field::Namespace(key), _) => self.site.namespaces.push((key, text.trim().to_string())),
                (Field::Title, Some(page)) => page.title = Some(text),
                (Field::Ns, Some(page)) => page.ns = text.trim().parse().ok(),
                (Field::PageId, Some(page)) => page.id = text.trim().parse().ok(),
                (Field::Text, Some(page)) => page.text = text,
                _ => {}
            }
        }
        self.page.as_ref()?;
        // Pages do not nest: `</page>` ends the page whatever was left open in it.
        if name == b"page" {
            if let Some(xml) = self.xml.as_mut() {
                xml.get_mut().limit = None;
            }
            let page = self.page.take()?;
            return Some(match self.page_error.take() {
                Some(reason) => bad(&page, reason),
                None => DumpItem::Page(page),
            });
        }
        if self.path.last().is_some_and(|p| p == name) {
            self.path.pop();
        }
        None
    }

    /// An XML or I/O error: report the page (or the file) and resynchronise on
    /// the next page, unless the stream itself is broken.
    fn on_error(&mut self, error: quick_xml::Error) -> Result<Option<DumpItem>, io::Error> {
        let Some(xml) = self.xml.take() else { return Ok(None) };
        let error_at = self.base + xml.error_position();
        let mut inner = xml.into_inner();
        let over_budget = std::mem::take(&mut inner.exceeded);
        inner.limit = None;
        let page = self.page.take();
        let offset = page.as_ref().map_or(error_at, |p| p.offset);
        let reason = if over_budget {
            format!("the page is larger than max_page_bytes ({} bytes)", self.max_page_bytes)
        } else if let quick_xml::Error::Io(io_error) = &error {
            if (self.is_storage_fault)() {
                return Err(io::Error::new(io_error.kind(), io_error.to_string()));
            }
            self.done = true;
            let reason = format!(
                "{} at decompressed byte {}: {io_error}",
                self.stream_name, inner.consumed
            );
            return Ok(Some(bad_at(offset, reason, page.as_ref())));
        } else {
            format!("malformed XML at decompressed byte {error_at}: {error}")
        };
        // Skip to the end of the page the error is in (or the next one's start
        // when outside pages) and go on with a fresh parser from there.
        let resumed = if page.is_some() {
            skip_past(&mut inner, b"</page>")
        } else {
            let found = skip_past(&mut inner, b"<page>");
            if let Ok(true) = found {
                let start = inner.consumed - 6;
                self.page = Some(Page {
                    offset: start,
                    ..Page::default()
                });
                inner.limit = Some(start + self.max_page_bytes);
            }
            found
        };
        match resumed {
            Ok(true) => {}
            Ok(false) => self.done = true,
            Err(e) if (self.is_storage_fault)() => return Err(e),
            Err(_) => self.done = true,
        }
        self.base = inner.consumed;
        self.xml = Some(xml_reader(inner));
        self.path.clear();
        self.field = None;
        self.page_error = None;
        Ok(Some(bad_at(offset, reason, page.as_ref())))
    }
}

fn xml_reader<R: BufRead>(inner: Budgeted<R>) -> Reader<Budgeted<R>> {
    let mut xml = Reader::from_reader(inner);
    let config = xml.config_mut();
    // Dumps are machine-written; a mismatched end tag is not worth a page.
    config.check_end_names = false;
    // After a resynchronisation the parser meets end tags it never saw open.
    config.allow_unmatched_ends = true;
    config.trim_text(false);
    xml
}

fn bad(page: &Page, reason: String) -> DumpItem {
    bad_at(page.offset, reason, Some(page))
}

/// A bad record at `offset`; its excerpt is the page's title, else the start of its text.
fn bad_at(offset: u64, reason: String, page: Option<&Page>) -> DumpItem {
    let excerpt = page
        .map(|p| p.title.clone().unwrap_or_else(|| p.text.chars().take(200).collect()))
        .unwrap_or_default();
    DumpItem::Bad {
        offset,
        reason,
        excerpt,
    }
}

/// XML's five entities and character references; nothing else is expanded.
fn resolve_reference(name: &str) -> Option<String> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|&c| c != '\0').map(String::from);
    }
    quick_xml::escape::resolve_predefined_entity(name).map(String::from)
}

/// Consumes `reader` up to and including `needle`; false when the input ends first.
fn skip_past<R: BufRead>(reader: &mut R, needle: &[u8]) -> io::Result<bool> {
    // How much of the needle the bytes consumed so far end with.
    let mut matched = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let mut used = 0;
        for &b in buf {
            used += 1;
            matched = if b == needle[matched] {
                matched + 1
            } else if b == needle[0] {
                1
            } else {
                0
            };
            if matched == needle.len() {
                reader.consume(used);
                return Ok(true);
            }
        }
        reader.consume(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(xml: &str, max_page_bytes: u64) -> (Vec<DumpItem>, SiteInfo) {
        let mut reader = DumpReader::new(
            io::BufReader::with_capacity(64, xml.as_bytes()),
            max_page_bytes,
            "stream",
            Box::new(|| false),
        );
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        (items, reader.site().clone())
    }

    fn page(title: &str, id: u64, text: &str) -> String {
        format!(
            "<page><title>{title}</title><ns>0</ns><id>{id}</id><revision><id>99</id><contributor><id>7</id></contributor><text xml:space=\"preserve\">{text}</text></revision></page>\n"
        )
    }

    fn dump(pages: &str) -> String {
        format!(
            "<mediawiki xml:lang=\"de\"><siteinfo><dbname>dewiki</dbname><base>https://de.wikipedia.org/wiki/Wikipedia:Hauptseite</base><namespaces><namespace key=\"6\">Datei</namespace><namespace key=\"14\">Kategorie</namespace></namespaces></siteinfo>\n{pages}</mediawiki>"
        )
    }

    fn titles(items: &[DumpItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                DumpItem::Page(p) => p.title.clone().unwrap_or_default(),
                DumpItem::Bad { reason, .. } => format!("BAD {reason}"),
            })
            .collect()
    }

    #[test]
    fn pages_and_site_info_are_read() {
        let xml = dump(&(page("Berlin", 5, "Berlin ist &lt;b&gt; &amp; &#x41;&#66;") + &page("Paris", 6, "x")));
        let (items, site) = read_all(&xml, 1 << 20);
        assert_eq!(site.language().as_deref(), Some("de"));
        assert_eq!(site.non_text_namespaces(), vec!["Datei", "Kategorie"]);
        let DumpItem::Page(first) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(first.id, Some(5), "the page id, not the revision's or contributor's");
        assert_eq!(first.ns, Some(0));
        assert_eq!(first.text, "Berlin ist <b> & AB");
        assert_eq!(&xml[first.offset as usize..][..6], "<page>");
        assert_eq!(titles(&items), vec!["Berlin", "Paris"]);
    }

    #[test]
    fn redirects_are_flagged() {
        let xml = dump(
            "<page><title>R</title><ns>0</ns><id>1</id><redirect title=\"X\" /><revision><text>#REDIRECT [[X]]</text></revision></page>",
        );
        let (items, _) = read_all(&xml, 1 << 20);
        assert!(matches!(&items[0], DumpItem::Page(p) if p.redirect));
    }

    #[test]
    fn entity_declarations_refuse_the_file() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><mediawiki>".to_string()
            + &page("A", 1, "&lol2;")
            + "</mediawiki>";
        let (items, _) = read_all(&bomb, 1 << 20);
        assert_eq!(items.len(), 1);
        assert!(titles(&items)[0].contains("declares entities"), "{items:?}");
        let xxe = "<!DOCTYPE m [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><mediawiki>".to_string()
            + &page("A", 1, "&xxe;")
            + "</mediawiki>";
        let (items, _) = read_all(&xxe, 1 << 20);
        assert!(titles(&items)[0].contains("declares entities"));
    }

    #[test]
    fn undefined_entities_cost_their_page_only() {
        let xml = dump(&(page("A", 1, "x &xxe; y") + &page("B", 2, "fine")));
        let (items, _) = read_all(&xml, 1 << 20);
        assert_eq!(
            titles(&items)[0],
            "BAD undefined entity &xxe; (only XML's own entities and character references are expanded)"
        );
        assert_eq!(titles(&items)[1], "B");
    }

    #[test]
    fn oversized_pages_are_skipped_with_bounded_memory() {
        let big = "y".repeat(10_000);
        let xml = dump(&(page("A", 1, "small") + &page("Huge", 2, &big) + &page("C", 3, "after")));
        let (items, _) = read_all(&xml, 4096);
        let t = titles(&items);
        assert_eq!(t[0], "A");
        assert!(t[1].starts_with("BAD the page is larger than max_page_bytes"), "{t:?}");
        assert_eq!(t[2], "C");
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn malformed_xml_costs_one_page() {
        let broken = "<page><title>B</title><ns>0</ns><id>2</id><revision><text>b</text></revision><!x></page>\n";
        let xml = dump(&(page("A", 1, "a") + broken + &page("C", 3, "c")));
        let (items, _) = read_all(&xml, 1 << 20);
        let t = titles(&items);
        assert_eq!(t[0], "A");
        assert!(t[1].starts_with("BAD malformed XML"), "{t:?}");
        assert_eq!(t[2], "C");
    }

    #[test]
    fn truncated_xml_is_reported() {
        let xml = dump(&(page("A", 1, "a") + &page("B", 2, "b")));
        let cut = &xml[..xml.len() - 40];
        let (items, _) = read_all(cut, 1 << 20);
        let t = titles(&items);
        assert_eq!(t[0], "A");
        assert!(t[1].starts_with("BAD"), "{t:?}");
    }

    #[test]
    fn invalid_utf8_costs_its_page() {
        let mut xml = dump(&(page("A", 1, "AAAA") + &page("B", 2, "b"))).into_bytes();
        let at = xml.windows(4).position(|w| w == b"AAAA").unwrap();
        xml[at] = 0xff;
        let mut reader = DumpReader::new(&xml[..], 1 << 20, "stream", Box::new(|| false));
        let first = reader.next_item().unwrap().unwrap();
        assert!(
            matches!(&first, DumpItem::Bad { reason, .. } if reason.contains("invalid UTF-8")),
            "{first:?}"
        );
        assert!(matches!(reader.next_item().unwrap().unwrap(), DumpItem::Page(p) if p.id == Some(2)));
    }

    #[test]
    fn skip_past_finds_needles_across_buffer_boundaries() {
        let data = b"xx</pa</page>rest";
        let mut r = io::BufReader::with_capacity(3, &data[..]);
        assert!(skip_past(&mut r, b"</page>").unwrap());
        let mut rest = String::new();
        io::Read::read_to_string(&mut r, &mut rest).unwrap();
        assert_eq!(rest, "rest");
    }
}
