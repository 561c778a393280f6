//! Book text: decoding raw book bytes and stripping Project Gutenberg framing.
//!
//! Book dumps (Gutenberg, Books3) mix UTF-8, Latin-1, windows-1252 and UTF-16, and
//! Gutenberg files wrap every book in a header and a licence footer that would otherwise
//! be trained on thousands of times. [`decode_book`] turns bytes into text only when the
//! encoding is known (valid UTF-8, a BOM, a declared `Character set encoding:` or a clean
//! `chardetng` guess) and refuses the rest, so mojibake and binaries never become books;
//! UTF-8 with a few stray bytes is refused too, as any legacy decoding would garble all of it.
//! [`strip_gutenberg`] cuts the header and footer by plain line scanning (linear time,
//! no regex), keeping the book and the header's id and title.

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{DecoderResult, Encoding, UTF_8, UTF_16BE, UTF_16LE};

/// How far into a file a `Character set encoding:` header line is looked for.
const DECLARATION_WINDOW: usize = 64 * 1024;
/// How many leading non-blank lines may hold an old etext's "The Project Gutenberg Etext of" line.
const TITLE_LINE_WINDOW: usize = 5;
/// The words Gutenberg has used for "ebook" over the years.
const ETEXT_WORDS: &[&str] = &["EBOOK", "E-BOOK", "ETEXT", "E-TEXT"];

/// A decoded book and the encoding it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text, with CRLF and lone CR line endings turned into `\n`.
    pub text: String,
    /// The encoding's name as encoding_rs spells it (`"UTF-8"`, `"windows-1252"`, ...).
    pub encoding: &'static str,
}

/// Why bytes were refused as a book.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// UTF-8 was declared (by a BOM or a `Character set encoding:` line) but the bytes are not UTF-8.
    #[error("declared UTF-8 but not UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// An encoding declared by a BOM or a header line met a malformed byte sequence.
    #[error("declared {encoding} but malformed at byte {offset}")]
    Malformed { encoding: &'static str, offset: usize },
    /// Mostly UTF-8 with some invalid bytes: any legacy decoding would garble every UTF-8 character in it.
    #[error("damaged UTF-8: {bad} invalid sequences, the first at byte {offset}, among {good} UTF-8 characters")]
    DamagedUtf8 { offset: usize, bad: usize, good: usize },
    /// Not UTF-8, nothing declared, and the detector's best guess does not decode cleanly either.
    #[error("not UTF-8 at byte {offset} and no encoding could be detected (best guess {guess} is malformed too)")]
    Undetectable { offset: usize, guess: &'static str },
    /// The text decodes but is binary: it holds a NUL or too many control characters.
    #[error("binary data, not text: {found} in the text decoded as {encoding}")]
    Binary { encoding: &'static str, found: String },
}

/// Decodes book bytes to text, or refuses them when the encoding is unknown or the content is binary.
pub fn decode_book(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let (text, encoding) = decode_raw(bytes)?;
    let encoding = encoding.name();
    if let Some(found) = binary_evidence(&text) {
        return Err(DecodeError::Binary { encoding, found });
    }
    let text = normalize_newlines(text);
    Ok(Decoded { text, encoding })
}

/// BOM, then valid UTF-8, then a declared encoding, then detection: the first that applies decides.
fn decode_raw(bytes: &[u8]) -> Result<(String, &'static Encoding), DecodeError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        let offset = match std::str::from_utf8(rest) {
            Ok(text) => return Ok((text.to_owned(), UTF_8)),
            Err(e) => 3 + e.valid_up_to(),
        };
        return Err(DecodeError::InvalidUtf8 { offset });
    }
    for (bom, encoding) in [(b"\xFF\xFE", UTF_16LE), (b"\xFE\xFF", UTF_16BE)] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return decode_declared(encoding, rest, bom.len());
        }
    }
    let offset = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok((text.to_owned(), UTF_8)),
        Err(e) => e.valid_up_to(),
    };
    let declared = declared_encoding(bytes);
    if declared == Some(UTF_8) {
        return Err(DecodeError::InvalidUtf8 { offset });
    }
    if let Some((bad, good)) = damaged_utf8(bytes) {
        return Err(DecodeError::DamagedUtf8 { offset, bad, good });
    }
    if let Some(encoding) = declared {
        return decode_declared(encoding, bytes, 0);
    }
    // A file wholly in 7-bit ISO-2022-JP is valid UTF-8 and never gets here.
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    // UTF-8 is ruled out above; a generic TLD keeps the guess free of locale bias.
    let encoding = detector.guess(None, Utf8Detection::Deny);
    let guess = encoding.name();
    match decode_strict(encoding, bytes) {
        Ok(text) => Ok((text, encoding)),
        Err(_) => Err(DecodeError::Undetectable { offset, guess }),
    }
}

/// Decodes `bytes`, found `skipped` bytes into the file, as the encoding a BOM or header line declared.
fn decode_declared(
    encoding: &'static Encoding,
    bytes: &[u8],
    skipped: usize,
) -> Result<(String, &'static Encoding), DecodeError> {
    match decode_strict(encoding, bytes) {
        Ok(text) => Ok((text, encoding)),
        Err(at) => {
            let (encoding, offset) = (encoding.name(), skipped + at);
            Err(DecodeError::Malformed { encoding, offset })
        }
    }
}

/// Decodes without replacement characters, so a malformed sequence is an error at its byte offset.
fn decode_strict(encoding: &'static Encoding, bytes: &[u8]) -> Result<String, usize> {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::new();
    let mut done = 0;
    loop {
        let rest = bytes.get(done..).unwrap_or_default();
        // The bound only fails to exist on usize overflow; any spare room still lets the decoder progress.
        let room = decoder.max_utf8_buffer_length_without_replacement(rest.len());
        out.reserve(room.unwrap_or(4096));
        let (result, read) = decoder.decode_to_string_without_replacement(rest, &mut out, true);
        done += read;
        match result {
            DecoderResult::InputEmpty => return Ok(out),
            DecoderResult::OutputFull => {}
            // `done` counts the malformed sequence and the bytes read after it; the offset is where it began.
            DecoderResult::Malformed(bad, after) => {
                return Err(done.saturating_sub(usize::from(bad) + usize::from(after)));
            }
        }
    }
}

/// Counts of invalid sequences and multi-byte characters, when the latter show the bytes are UTF-8 gone bad.
fn damaged_utf8(mut bytes: &[u8]) -> Option<(usize, usize)> {
    let (mut invalid, mut multibyte) = (0, 0);
    loop {
        let (valid, bad) = match std::str::from_utf8(bytes) {
            Ok(_) => (bytes.len(), 0),
            Err(e) => (e.valid_up_to(), e.error_len().unwrap_or(bytes.len() - e.valid_up_to())),
        };
        // Lead bytes of the valid prefix start exactly its multi-byte characters.
        multibyte += bytes[..valid].iter().filter(|&&b| b >= 0xC0).count();
        if bad == 0 {
            // Real Latin-1 text forms a valid UTF-8 pair only by accident, far less often than it fails.
            return (multibyte >= invalid).then_some((invalid, multibyte));
        }
        invalid += 1;
        bytes = &bytes[valid + bad..];
    }
}

/// A NUL, or more than 1% control characters: what makes decoded "text" a binary file.
fn binary_evidence(text: &str) -> Option<String> {
    if let Some(at) = memchr::memchr(0, text.as_bytes()) {
        return Some(format!("a NUL at byte {at}"));
    }
    // Form feeds separate pages in many old etexts, so they count as text.
    let is_control = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c');
    let control = text.chars().filter(|&c| is_control(c)).count();
    let chars = text.chars().count();
    (control.saturating_mul(100) > chars).then(|| format!("{control} control characters among {chars}"))
}

/// The encoding named by a Gutenberg `Character set encoding:` line near the start, if encoding_rs knows it.
fn declared_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    const NEEDLE: &[u8] = b"character set encoding:";
    let head = bytes.get(..DECLARATION_WINDOW).unwrap_or(bytes).to_ascii_lowercase();
    let rest = bytes.get(memchr::memmem::find(&head, NEEDLE)? + NEEDLE.len()..)?;
    let line = &rest[..memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len()).min(80)];
    label_encoding(&String::from_utf8_lossy(line))
}

/// Maps free-form spellings ("ISO Latin-1", "CP-1252", "Unicode UTF-8") onto encoding_rs labels.
fn label_encoding(label: &str) -> Option<&'static Encoding> {
    let lower = label.trim().trim_end_matches(['.', ';']).to_ascii_lowercase();
    let compact = lower.replace([' ', '-', '_'], "");
    let compact = compact.replace("isolatin", "latin").replace("windows", "cp");
    let words = lower.split(|c: char| c.is_whitespace() || "()[],".contains(c));
    [lower.as_str(), compact.as_str()]
        .into_iter()
        .chain(words)
        .filter(|candidate| !candidate.is_empty())
        // An ASCII header line cannot truthfully declare UTF-16 (label "unicode") or ISO-2022-JP.
        .find_map(|candidate| Encoding::for_label(candidate.as_bytes()).filter(|e| e.is_ascii_compatible()))
}

/// Turns CRLF and lone CR into `\n`, without copying text that has no CR.
fn normalize_newlines(text: String) -> String {
    match memchr::memchr(b'\r', text.as_bytes()) {
        None => text,
        Some(_) => text.replace("\r\n", "\n").replace('\r', "\n"),
    }
}

/// A book with its Gutenberg framing removed, and what the header said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped<'a> {
    /// The book itself: a trimmed slice of the input.
    pub body: &'a str,
    /// The Gutenberg ebook number from the header (`[EBook #103]`), if any.
    pub gutenberg_id: Option<u64>,
    /// The title from the header's `Title:` line, else the START marker, else the old etext title line.
    pub title: Option<String>,
    /// Whether any Gutenberg framing (START marker, small print, etext title line or END line) was found.
    pub had_header: bool,
}

/// Removes the Project Gutenberg header and licence footer, keeping the book; other text comes back whole.
pub fn strip_gutenberg(text: &str) -> Stripped<'_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let line = |i: usize| lines[i].trim_end_matches('\r');
    // Every line is a subslice of `text`, so its pointer distance from `text` is its byte offset.
    let base = text.as_ptr() as usize;
    let line_start = |i: usize| lines.get(i).map_or(text.len(), |l| l.as_ptr() as usize - base);
    let blank = |i: usize| line(i).trim().is_empty();

    // START markers count only before the first END line, so a small-print footer never starts the book.
    let (mut start, mut marker_title, mut end) = (None, None, None);
    for i in 0..lines.len() {
        if start.is_none() {
            marker_title = start_marker(line(i));
            if marker_title.is_some() || small_print_end(line(i)).is_some() {
                start = Some(i);
                continue;
            }
        }
        if end_marker(line(i)).is_some() {
            end = Some(i);
            break;
        }
    }
    let title_line = (0..lines.len())
        .take_while(|&i| Some(i) != start && Some(i) != end)
        .filter(|&i| !blank(i))
        .take(TITLE_LINE_WINDOW)
        .find_map(|i| old_title(line(i)).map(|title| (i, title)));

    let (header_end, body_from) = match (start, title_line) {
        (Some(s), _) => {
            // Credit paragraphs ("Produced by ...") right after the marker are header, not book.
            let credits = |i: usize| Some(i) != end && produced_by(line(i)).is_some();
            let mut i = s + 1;
            while let Some(p) = (i..lines.len()).find(|&j| !blank(j)).filter(|&p| credits(p)) {
                i = p + (p..lines.len()).take_while(|&j| !blank(j) && Some(j) != end).count();
            }
            (line_start(s), line_start(i))
        }
        (None, Some((t, _))) => (line_start(t + 1), line_start(t + 1)),
        (None, None) => (0, 0),
    };
    let body_to = end.map_or(text.len(), line_start);
    let header = &text[..header_end];
    let marker_title = marker_title.filter(|t| !t.is_empty());
    let old_title = title_line.map(|(_, t)| cut_author(t)).filter(|t| !t.is_empty());
    Stripped {
        body: text[body_from.min(body_to)..body_to].trim(),
        gutenberg_id: gutenberg_id(header),
        title: title_field(header).or(marker_title.or(old_title).map(str::to_owned)),
        had_header: start.is_some() || end.is_some() || title_line.is_some(),
    }
}

/// Consumes `word` (ASCII, any case) after leading whitespace, only at a word boundary.
fn eat<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let s = s.trim_start();
    let rest = s.get(word.len()..)?;
    let matches = s.get(..word.len()).is_some_and(|head| head.eq_ignore_ascii_case(word));
    (matches && !rest.starts_with(char::is_alphanumeric)).then_some(rest)
}

/// Consumes the first of `words` that matches.
fn eat_any<'a>(s: &'a str, words: &[&str]) -> Option<&'a str> {
    words.iter().find_map(|word| eat(s, word))
}

/// `*** START OF [THIS|THE] PROJECT GUTENBERG EBOOK <title> ***`: the title text, possibly empty.
fn start_marker(line: &str) -> Option<&str> {
    let s = eat(eat(line.trim().trim_start_matches('*'), "START")?, "OF")?;
    let s = eat_any(s, &["THIS", "THE"]).unwrap_or(s);
    let s = eat_any(eat(eat(s, "PROJECT")?, "GUTENBERG")?, ETEXT_WORDS)?;
    Some(s.trim_start_matches([' ', ',', ':']).trim_end_matches([' ', '*']))
}

/// `*** END OF THIS PROJECT GUTENBERG EBOOK`, `End of Project Gutenberg's X`, `*End of The Project Gutenberg Etext`.
fn end_marker(line: &str) -> Option<&str> {
    let s = eat(eat(line.trim().trim_start_matches('*'), "END")?, "OF")?;
    let s = eat_any(s, &["THIS", "THE"]).unwrap_or(s);
    eat(eat(s, "PROJECT")?, "GUTENBERG")
}

/// `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...*END*`, which closes a 1990s etext header.
fn small_print_end(line: &str) -> Option<&str> {
    let s = eat(line.trim().trim_start_matches('*'), "END")?.trim_start_matches(['*', ' ']);
    eat(eat(eat(s, "THE")?, "SMALL")?, "PRINT")
}

/// `The Project Gutenberg Etext of X` / `Project Gutenberg's [Etext of] X`: the X.
fn old_title(line: &str) -> Option<&str> {
    let s = line.trim().trim_start_matches('*');
    let s = eat(eat(eat(s, "THE").unwrap_or(s), "PROJECT")?, "GUTENBERG")?;
    let rest = match eat_any(s, &["'S", "\u{2019}S"]) {
        Some(r) => eat_any(r, ETEXT_WORDS).and_then(|r| eat(r, "OF")).unwrap_or(r),
        None => eat(eat_any(s, ETEXT_WORDS)?, "OF")?,
    };
    Some(rest.trim().trim_end_matches([' ', '*']))
}

/// `Produced by ...`, `This eBook was produced by ...`, `E-text prepared by ...`: credits, not book.
fn produced_by(line: &str) -> Option<&str> {
    if let Some(s) = eat(line, "PRODUCED") {
        return eat(s, "BY");
    }
    let s = eat_any(eat(line, "THIS").unwrap_or(line), ETEXT_WORDS)?;
    eat(eat_any(eat(s, "WAS").unwrap_or(s), &["PRODUCED", "PREPARED"])?, "BY")
}

/// The value of a `Title:` header line, joined with its indented continuation lines.
fn title_field(header: &str) -> Option<String> {
    let mut lines = header.lines();
    let first = lines.find_map(|line| eat(line, "TITLE").and_then(|s| s.strip_prefix(':')))?;
    let mut title = first.trim().to_owned();
    for next in lines.take_while(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty()) {
        title.push(' ');
        title.push_str(next.trim());
    }
    Some(title).filter(|t| !t.is_empty())
}

/// The digits after `EBook #` / `eBook #` / `Etext #` in the header.
fn gutenberg_id(header: &str) -> Option<u64> {
    memchr::memchr_iter(b'#', header.as_bytes()).find_map(|at| {
        let before = header[..at].trim_end();
        // Only the last few bytes matter, which keeps headers full of `#` linear.
        let tail = before.get(before.len().saturating_sub(7)..).unwrap_or_default();
        let word = tail.rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '-').next()?;
        let digits = header[at + 1..].trim_start();
        let digits = &digits[..digits.bytes().take_while(u8::is_ascii_digit).count()];
        let named = ETEXT_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word));
        named.then(|| digits.parse().ok())?
    })
}

/// `Title, by Author` → `Title`, as old etext title lines name the author too.
fn cut_author(title: &str) -> &str {
    match title.to_ascii_lowercase().rfind(", by ") {
        Some(at) => title.get(..at).unwrap_or(title).trim(),
        None => title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODERN: &str = "The Project Gutenberg EBook of Tiny Tales, by A. Writer\n\nTitle: Tiny Tales\n\n\
        Release Date: May 15, 2008 [EBook #4242]\n\n*** START OF THIS PROJECT GUTENBERG EBOOK TINY TALES ***\n\n\n\
        CHAPTER I\n\nOnce upon a time.\n\nEnd of Project Gutenberg's Tiny Tales, by A. Writer\n\n\
        *** END OF THIS PROJECT GUTENBERG EBOOK TINY TALES ***\n\nSection 1. Project Gutenberg-tm License\n";
    const START: &str = "*** START OF THE PROJECT GUTENBERG EBOOK";

    fn body(text: &str) -> &str {
        strip_gutenberg(text).body
    }

    /// The header facts, in a shape that compares in one line.
    fn meta(text: &str) -> (Option<u64>, Option<String>, bool) {
        let s = strip_gutenberg(text);
        (s.gutenberg_id, s.title, s.had_header)
    }

    fn decoded(bytes: &[u8]) -> (String, &'static str) {
        let d = decode_book(bytes).unwrap();
        (d.text, d.encoding)
    }

    fn refusal(bytes: &[u8]) -> String {
        decode_book(bytes).unwrap_err().to_string()
    }

    #[test]
    fn modern_markers_in_all_spellings() {
        assert_eq!(body(MODERN), "CHAPTER I\n\nOnce upon a time.");
        assert_eq!(meta(MODERN), (Some(4242), Some("Tiny Tales".into()), true));
        for (start, end) in [
            ("*** START OF THE", "*** END OF THE"),
            ("***START OF THE", "***END OF THE"),
            ("* start of", "End of the"),
            ("***** START OF THIS", "*End of The"),
        ] {
            let text = format!("a\n{start} PROJECT GUTENBERG EBOOK X ***\nbook\n{end} Project Gutenberg Etext\nz");
            assert_eq!(body(&text), "book", "{start} / {end}");
        }
        let not_a_marker = "a\nSTARTING OF PROJECT GUTENBERG EBOOK\nb";
        assert_eq!(body(not_a_marker), not_a_marker);
    }

    #[test]
    fn boms_and_line_endings() {
        let bytes = format!("\u{feff}{}", MODERN.replace('\n', "\r\n"));
        assert_eq!(decoded(bytes.as_bytes()), (MODERN.to_owned(), "UTF-8"));
        // Undecoded CRLF text with its BOM is stripped the same way.
        assert_eq!(body(&bytes), "CHAPTER I\r\n\r\nOnce upon a time.");
        assert_eq!(decoded(b"a\rb\r\nc\n"), ("a\nb\nc\n".to_owned(), "UTF-8"));
        let (mut le, mut be) = (vec![0xFF, 0xFE], vec![0xFE, 0xFF]);
        for unit in "Hé\r\nx".encode_utf16() {
            le.extend(unit.to_le_bytes());
            be.extend(unit.to_be_bytes());
        }
        assert_eq!(decoded(&le), ("Hé\nx".to_owned(), "UTF-16LE"));
        assert_eq!(decoded(&be), ("Hé\nx".to_owned(), "UTF-16BE"));
        let lone_surrogate = [0xFF, 0xFE, b'a', 0, 0x00, 0xDC];
        assert_eq!(refusal(&lone_surrogate), "declared UTF-16LE but malformed at byte 4");
    }

    #[test]
    fn produced_by_paragraphs_belong_to_the_header() {
        let text = format!(
            "{START} X ***\n\nProduced by Jane Doe and the Online\nDistributed Proofreading Team\n\n\
            This eBook was produced by Bob.\n\nCHAPTER I\n\nProduced by nobody."
        );
        assert_eq!(body(&text), "CHAPTER I\n\nProduced by nobody.");
        assert_eq!(body(&format!("{START} X ***\nE-text prepared by Al\n")), "");
    }

    #[test]
    fn old_small_print_header_and_etext_lines() {
        let small_print = "The Project Gutenberg Etext of Old Book\n**The Project Gutenberg Etext**\nblah\n\
            *END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nOld Book\n\nIt was old.\n";
        assert_eq!(body(small_print), "Old Book\n\nIt was old.");
        assert_eq!(meta(small_print), (None, Some("Old Book".into()), true));
        let etext = "\n\nThe Project Gutenberg Etext of OLD TEXTS, by Someone\n\n  OLD TEXTS\n\nbody\n\n\
            *End of The Project Gutenberg Etext of OLD TEXTS\nafter\n";
        assert_eq!(body(etext), "OLD TEXTS\n\nbody");
        assert_eq!(meta(etext), (None, Some("OLD TEXTS".into()), true));
        // A title line deep in the text is the book's, not the header's.
        let far = "1\n2\n3\n4\n5\nThe Project Gutenberg Etext of X\nbody";
        assert_eq!((body(far), meta(far)), (far, (None, None, false)));
    }

    #[test]
    fn id_and_title_come_from_the_header_only() {
        let text = format!("Title: The Long\n     Title Here\nDate: 1990 [eBook #12]\n{START} X ***\nTitle: Y #99");
        assert_eq!(meta(&text), (Some(12), Some("The Long Title Here".into()), true));
        let text = "Etext #103\n*** START OF THIS PROJECT GUTENBERG EBOOK AROUND 80 DAYS ***\nb";
        assert_eq!(meta(text), (Some(103), Some("AROUND 80 DAYS".into()), true));
        let text = format!("Notebook #5 EBook#77\nProject Gutenberg's Alice, by L. C.\n{START} ***\n");
        assert_eq!(meta(&text), (Some(77), Some("Alice".into()), true));
        let text = format!("ebook #x EBook #99999999999999999999999\n{START} ***");
        assert_eq!(meta(&text), (None, None, true));
    }

    #[test]
    fn text_without_markers_is_unchanged_and_nothing_panics() {
        let text = "\n  Title: A Books3 novel #1\n\nChapter 1\n\nThe end of the Project.\n";
        assert_eq!((body(text), meta(text)), (text.trim(), (None, None, false)));
        let odd = "|\r|é|#|EBook #|ééé #1|Title:|Title:\n |\u{feff}|Project Gutenberg's|*END*THE SMALL PRINT!\
            |*** START OF THE PROJECT GUTENBERG EBOOK é|*** END OF THE PROJECT GUTENBERG|*** END OF THE \
            PROJECT GUTENBERG EBOOK\n*** START OF THE PROJECT GUTENBERG EBOOK\nx";
        for text in odd.split('|') {
            assert!(text.contains(body(text)), "{text:?}");
        }
    }

    #[test]
    fn declared_and_detected_encodings() {
        let latin1 = b"Title: Caf\xe9\r\nCharacter set encoding: ISO-8859-1\r\n\r\nna\xefve\r\n";
        let text = "Title: Café\nCharacter set encoding: ISO-8859-1\n\nnaïve\n";
        assert_eq!(decoded(latin1), (text.to_owned(), "windows-1252"));
        for label in "ISO Latin-1|Latin-1|Latin1|ASCII|CP-1252|Windows-1252|ISO-8859-1 (Latin-1)".split('|') {
            assert_eq!(label_encoding(label), Some(encoding_rs::WINDOWS_1252), "{label}");
        }
        assert_eq!(label_encoding("Unicode UTF-8"), Some(UTF_8));
        assert_eq!((label_encoding("UTF-16"), label_encoding("EBCDIC")), (None, None));
        let greek = b"Character set encoding: ISO-8859-7\n\xe1\xe2\xe3";
        assert_eq!(decoded(greek).1, "ISO-8859-7");
        assert!(decoded(greek).0.ends_with("αβγ"));
        // Undeclared smart quotes: chardetng's guess.
        let bytes = b"He said \x93I shall go to London tomorrow morning\x94 and she didn\x92t answer him at all.\n";
        let (text, encoding) = decoded(bytes);
        assert_eq!(encoding, "windows-1252");
        assert!(text.starts_with("He said \u{201c}I shall") && text.contains("didn\u{2019}t"));
    }

    #[test]
    fn refusals_name_what_was_found() {
        let nul = "binary data, not text: a NUL at byte 2 in the text decoded as UTF-8";
        assert_eq!(refusal(b"ab\0cd"), nul);
        let blob: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert!(refusal(&blob).contains("binary data") || refusal(&blob).contains("no encoding could be detected"));
        let controls = format!("{}\x01\x02", "a".repeat(100));
        assert!(refusal(controls.as_bytes()).contains("2 control characters among 102"));
        assert!(decode_book(format!("{}\x01", "a".repeat(100)).as_bytes()).is_ok());
        let declared = b"Character set encoding: UTF-8\nok \xff bad";
        assert_eq!(refusal(declared), "declared UTF-8 but not UTF-8 at byte 33");
        assert_eq!(refusal(b"\xEF\xBB\xBFab\xc3"), "declared UTF-8 but not UTF-8 at byte 5");
        // A stray byte in UTF-8 text must not turn every "é" into "Ã©", declared Latin-1 or not.
        let damaged = "damaged UTF-8: 1 invalid sequences, the first at byte 13, among 2 UTF-8 characters";
        assert_eq!(refusal(b"caf\xc3\xa9 na\xc3\xafve \xff"), damaged);
        assert!(refusal(b"Character set encoding: Latin-1\n\xc3\xa9 \xff").starts_with("damaged UTF-8"));
    }

    #[test]
    fn real_samples_if_present() {
        let dir = std::path::Path::new("/work/shared/samples/books");
        if let Ok(bytes) = std::fs::read(dir.join("pg103-around-the-world-in-80-days.txt")) {
            let (text, _) = decoded(&bytes);
            let book = body(&text);
            assert!(book.starts_with("AROUND THE WORLD IN EIGHTY DAYS\n\n\n\nCONTENTS"));
            assert!(book.ends_with("make the tour around the world?"));
            assert!(!book.contains("Gutenberg") && !book.contains("License"));
            let title = Some("Around the World in 80 Days".into());
            assert_eq!(meta(&text), (Some(103), title, true));
        }
        if let Ok(bytes) = std::fs::read(dir.join("lcet10.txt")) {
            let (text, _) = decoded(&bytes);
            assert!(body(&text).starts_with("WORKSHOP ON ELECTRONIC TEXTS\n") && body(&text).ends_with("CAPS mh]"));
            assert!(!body(&text).contains("*End of The Project Gutenberg"));
            let title = Some("LOC WORKSHOP ON ELECTRONIC TEXTS".into());
            assert_eq!(meta(&text), (None, title, true));
        }
    }
}
