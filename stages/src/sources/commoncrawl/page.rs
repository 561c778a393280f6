//! What a WARC record holds as a page: a WET `conversion` record's text as it
//! is, or a WARC `response` record's HTML as text (HTTP de-chunked and
//! decompressed, the charset decoded, then [`crate::html::html_to_text`]: the
//! whole page's text, as CommonCrawl's own WET conversion keeps it; CCNet's
//! line dedup is what removes the boilerplate repeated across pages).

use std::io::Read;

use super::warc::{MAX_RECORD_BYTES, WarcRecord};

/// A page's text and what its record says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// `WARC-Target-URI`.
    pub url: Option<String>,
    /// `WARC-Date`, microseconds since the epoch.
    pub timestamp: Option<i64>,
    /// `WARC-Identified-Content-Language` (CommonCrawl's own guess, post-2020 WET files).
    pub content_languages: Option<String>,
    /// `WARC-Record-ID`, the record's stable key.
    pub record_id: Option<String>,
    /// The text, lines separated by `\n`.
    pub text: String,
}

/// What one record contributes.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordContent {
    /// A page.
    Page(Page),
    /// Not a page (request, metadata, warcinfo, an image...): dropped by this rule.
    Skip(&'static str),
    /// A page that cannot be used, and why.
    Bad(String),
}

/// The rule for records that are not pages (warcinfo, request, metadata, revisit).
pub const NOT_A_PAGE: &str = "not_a_page";
/// The rule for responses that are not HTML (images, scripts, PDFs).
pub const NOT_HTML: &str = "not_html";
/// The rule for responses without a 2xx status (redirects, errors).
pub const HTTP_STATUS: &str = "http_status";

/// The page `record` holds, if any.
pub fn record_content(record: &WarcRecord) -> RecordContent {
    let kind = record.header("WARC-Type").unwrap_or("").to_ascii_lowercase();
    let text = match kind.as_str() {
        "conversion" => match text_of(&record.block, "the text") {
            Ok(text) => text,
            Err(reason) => return RecordContent::Bad(reason),
        },
        "response" => match response_text(&record.block) {
            Ok(text) => text,
            Err(Verdict::Skip(rule)) => return RecordContent::Skip(rule),
            Err(Verdict::Bad(reason)) => return RecordContent::Bad(reason),
        },
        _ => return RecordContent::Skip(NOT_A_PAGE),
    };
    RecordContent::Page(Page {
        url: record.header("WARC-Target-URI").map(str::to_string),
        timestamp: record
            .header("WARC-Date")
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.timestamp_micros()),
        content_languages: record.header("WARC-Identified-Content-Language").map(str::to_string),
        record_id: record.header("WARC-Record-ID").map(str::to_string),
        text: text.trim_end().to_string(),
    })
}

/// UTF-8 text without NUL bytes (binary data is not a page).
fn text_of(bytes: &[u8], what: &str) -> Result<String, String> {
    if let Some(at) = memchr::memchr(0, bytes) {
        return Err(format!("binary payload: {what} has a NUL byte at byte {at}"));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => Err(format!("invalid UTF-8 at byte {} of {what}", e.valid_up_to())),
    }
}

enum Verdict {
    Skip(&'static str),
    Bad(String),
}

/// An HTTP response's HTML as text.
fn response_text(block: &[u8]) -> Result<String, Verdict> {
    let split = memchr::memmem::find(block, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| memchr::memmem::find(block, b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else {
        return Err(Verdict::Bad(
            "an HTTP response without the blank line after its headers".into(),
        ));
    };
    let head = String::from_utf8_lossy(&block[..head_end]);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        None => {
            return Err(Verdict::Bad(format!(
                "not an HTTP status line: {:?}",
                short(status_line)
            )));
        }
        Some(s) if !(200..300).contains(&s) => return Err(Verdict::Skip(HTTP_STATUS)),
        Some(_) => {}
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let content_type = header("Content-Type").unwrap_or_default().to_ascii_lowercase();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime != "text/html" && mime != "application/xhtml+xml" {
        return Err(Verdict::Skip(NOT_HTML));
    }
    let mut body = block[body_start..].to_vec();
    if header("Transfer-Encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        body = dechunk(&body).map_err(Verdict::Bad)?;
    }
    match header("Content-Encoding").map(|e| e.to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {}
        Some("gzip") | Some("x-gzip") => body = inflate(flate2::read::MultiGzDecoder::new(body.as_slice()))?,
        Some("deflate") => body = inflate(flate2::read::ZlibDecoder::new(body.as_slice()))?,
        Some(other) => return Err(Verdict::Bad(format!("unsupported Content-Encoding {other:?}"))),
    }
    if let Some(at) = memchr::memchr(0, &body) {
        return Err(Verdict::Bad(format!(
            "binary payload: the HTML has a NUL byte at byte {at}"
        )));
    }
    let html = decode_charset(&body, &content_type);
    Ok(crate::html::html_to_text(&html))
}

fn inflate(mut decoder: impl Read) -> Result<Vec<u8>, Verdict> {
    let mut out = Vec::new();
    (&mut decoder)
        .take(MAX_RECORD_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| Verdict::Bad(format!("the response body does not decompress: {e}")))?;
    Ok(out)
}

/// HTTP/1.1 chunked transfer coding, decoded. Archives often store the body
/// already decoded under the original header: a body that does not start
/// with a chunk size line is taken as it is.
fn dechunk(body: &[u8]) -> Result<Vec<u8>, String> {
    let first_line = body.split(|b| *b == b'\n').next().unwrap_or(b"");
    let first = String::from_utf8_lossy(first_line);
    let first = first.trim().split(';').next().unwrap_or("").trim().to_string();
    if first.is_empty() || usize::from_str_radix(&first, 16).is_err() {
        return Ok(body.to_vec());
    }
    decode_chunks(body)
}

fn decode_chunks(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = memchr::memchr(b'\n', body).ok_or("a chunk size line without its end")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.trim().split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 1..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err(format!("a chunk of {size} bytes with {} left", body.len()));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size..];
        // The CRLF after the chunk's data.
        while body.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            body = &body[1..];
        }
        if body.is_empty() {
            // Crawlers keep truncated chunked bodies; what arrived is the page.
            return Ok(out);
        }
    }
}

/// The body as text: the `charset` of `Content-Type` when it names one, UTF-8
/// when the bytes are valid UTF-8, else the encoding `chardetng` guesses.
fn decode_charset(body: &[u8], content_type: &str) -> String {
    let declared = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .and_then(|label| encoding_rs::Encoding::for_label(label.trim_matches('"').as_bytes()));
    let encoding = match declared {
        Some(e) => e,
        None if std::str::from_utf8(body).is_ok() => encoding_rs::UTF_8,
        None => {
            let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
            detector.feed(body, true);
            detector.guess(None, chardetng::Utf8Detection::Deny)
        }
    };
    encoding.decode(body).0.into_owned()
}

fn short(text: &str) -> String {
    text.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, block: &[u8]) -> WarcRecord {
        WarcRecord {
            offset: 0,
            index_in_member: 0,
            headers: vec![
                ("WARC-Type".into(), kind.into()),
                ("WARC-Target-URI".into(), "https://example.org/a".into()),
                ("WARC-Date".into(), "2024-05-18T01:58:04Z".into()),
                ("WARC-Identified-Content-Language".into(), "eng,deu".into()),
            ],
            block: block.to_vec(),
        }
    }

    #[test]
    fn a_conversion_record_is_its_text() {
        let RecordContent::Page(page) = record_content(&record("conversion", b"Title\nBody line.\n\n")) else {
            panic!()
        };
        assert_eq!(page.text, "Title\nBody line.");
        assert_eq!(page.url.as_deref(), Some("https://example.org/a"));
        assert_eq!(page.content_languages.as_deref(), Some("eng,deu"));
        assert_eq!(page.timestamp, Some(1_715_997_484_000_000));
    }

    #[test]
    fn binary_and_invalid_utf8_are_bad() {
        assert_eq!(
            record_content(&record("conversion", b"ok\xff\xfe")),
            RecordContent::Bad("invalid UTF-8 at byte 2 of the text".into())
        );
        assert_eq!(
            record_content(&record("conversion", b"PNG\0\0")),
            RecordContent::Bad("binary payload: the text has a NUL byte at byte 3".into())
        );
    }

    #[test]
    fn responses_give_the_text_of_their_html() {
        let body = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n<html><head><title>T</title><script>x()</script></head><body><p>Caf\u{e9}</p></body></html>";
        let bytes = encoding_rs::WINDOWS_1252.encode(body).0.into_owned();
        let RecordContent::Page(page) = record_content(&record("response", &bytes)) else {
            panic!()
        };
        assert_eq!(page.text, "T\n\nCafé");
    }

    #[test]
    fn chunked_and_gzipped_bodies_are_decoded() {
        let html = b"<p>chunked and zipped</p>";
        let zipped = super::super::warc::tests::gzip(html);
        let mut body = format!("{:x}\r\n", 10).into_bytes();
        body.extend_from_slice(&zipped[..10]);
        body.extend_from_slice(format!("\r\n{:x}\r\n", zipped.len() - 10).as_bytes());
        body.extend_from_slice(&zipped[10..]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        block.extend_from_slice(&body);
        let RecordContent::Page(page) = record_content(&record("response", &block)) else {
            panic!()
        };
        assert_eq!(page.text, "chunked and zipped");
        let stored_decoded =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n<p>as stored</p>";
        let RecordContent::Page(page) = record_content(&record("response", stored_decoded)) else {
            panic!()
        };
        assert_eq!(page.text, "as stored");
    }

    #[test]
    fn other_records_are_skipped_by_rule() {
        let image = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n\x89PNG";
        assert_eq!(
            record_content(&record("response", image)),
            RecordContent::Skip(NOT_HTML)
        );
        let moved = b"HTTP/1.1 301 Moved\r\nContent-Type: text/html\r\n\r\n<p>moved</p>";
        assert_eq!(
            record_content(&record("response", moved)),
            RecordContent::Skip(HTTP_STATUS)
        );
        assert_eq!(
            record_content(&record("request", b"GET / HTTP/1.1")),
            RecordContent::Skip(NOT_A_PAGE)
        );
        assert!(matches!(
            record_content(&record("response", b"garbage")),
            RecordContent::Bad(_)
        ));
    }
}
