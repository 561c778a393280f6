//! Language identification, offline: `whatlang`'s trigram models (69
//! languages, compiled into the binary, nothing downloaded), with codes given
//! as ISO 639-1 where one exists (`en`, `de`...), as CCNet's fastText labels.
//! The `commoncrawl` stage filters by it; `detect_language(text)` and
//! `language_score(text)` give it to SQL.
//!
//! Chosen over a fastText model because none ships in a registry package and
//! the brief forbids downloads at run time; `bench/language_id.py` measures
//! its English precision and recall on real multilingual text (Debian's
//! translated man pages), and the README reports the figures.

/// Characters of a document looked at: trigram statistics settle long before this.
const SAMPLE_CHARS: usize = 4000;

/// A document's language and how sure the model is (0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageGuess {
    /// ISO 639-1 code (`en`), or whatlang's ISO 639-3 code where 639-1 has none.
    pub code: &'static str,
    /// whatlang's confidence: 1 when the best language's trigram score clears
    /// the runner-up's by a margin that depends on the text's length.
    pub score: f64,
}

/// The language of `text`, `None` when no script or language can be told.
pub fn identify(text: &str) -> Option<LanguageGuess> {
    let cut = text.char_indices().nth(SAMPLE_CHARS).map_or(text.len(), |(i, _)| i);
    let info = whatlang::detect(&text[..cut])?;
    Some(LanguageGuess {
        code: iso_639_1(info.lang().code()),
        score: info.confidence(),
    })
}

/// True when `code` names a language the model knows (for validating `languages`).
pub fn is_known(code: &str) -> bool {
    CODES.iter().any(|(three, one)| *one == code || *three == code)
}

/// whatlang's ISO 639-3 code as ISO 639-1 where one exists.
fn iso_639_1(code: &'static str) -> &'static str {
    CODES
        .iter()
        .find(|(three, _)| *three == code)
        .map_or(code, |(_, one)| *one)
}

/// (ISO 639-3 as whatlang names it, ISO 639-1) for all of whatlang's languages.
const CODES: &[(&str, &str)] = &[
    ("afr", "af"),
    ("aka", "ak"),
    ("amh", "am"),
    ("ara", "ar"),
    ("aze", "az"),
    ("bel", "be"),
    ("ben", "bn"),
    ("bul", "bg"),
    ("cat", "ca"),
    ("ces", "cs"),
    ("cmn", "zh"),
    ("dan", "da"),
    ("deu", "de"),
    ("ell", "el"),
    ("eng", "en"),
    ("epo", "eo"),
    ("est", "et"),
    ("fin", "fi"),
    ("fra", "fr"),
    ("guj", "gu"),
    ("heb", "he"),
    ("hin", "hi"),
    ("hrv", "hr"),
    ("hun", "hu"),
    ("hye", "hy"),
    ("ind", "id"),
    ("ita", "it"),
    ("jav", "jv"),
    ("jpn", "ja"),
    ("kan", "kn"),
    ("kat", "ka"),
    ("khm", "km"),
    ("kor", "ko"),
    ("lat", "la"),
    ("lav", "lv"),
    ("lit", "lt"),
    ("mal", "ml"),
    ("mar", "mr"),
    ("mkd", "mk"),
    ("mya", "my"),
    ("nep", "ne"),
    ("nld", "nl"),
    ("nob", "nb"),
    ("ori", "or"),
    ("pan", "pa"),
    ("pes", "fa"),
    ("pol", "pl"),
    ("por", "pt"),
    ("ron", "ro"),
    ("rus", "ru"),
    ("sin", "si"),
    ("slk", "sk"),
    ("slv", "sl"),
    ("sna", "sn"),
    ("spa", "es"),
    ("srp", "sr"),
    ("swe", "sv"),
    ("tam", "ta"),
    ("tel", "te"),
    ("tgl", "tl"),
    ("tha", "th"),
    ("tuk", "tk"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("urd", "ur"),
    ("uzb", "uz"),
    ("vie", "vi"),
    ("yid", "yi"),
    ("zul", "zu"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_told_with_confidence() {
        let en = "The committee met on Tuesday to discuss the budget for the coming year, and most members agreed that the library needs more funding.";
        let de = "Der Ausschuss traf sich am Dienstag, um den Haushalt für das kommende Jahr zu besprechen, und die meisten Mitglieder waren sich einig.";
        let en = identify(en).unwrap();
        assert_eq!(en.code, "en");
        assert!(en.score >= 0.5, "{en:?}");
        assert_eq!(identify(de).unwrap().code, "de");
        assert_eq!(identify("12345 --- ..."), None);
    }

    #[test]
    fn every_whatlang_language_has_a_code_and_known_codes_are_recognized() {
        assert_eq!(CODES.len(), 69);
        assert!(is_known("en") && is_known("sr") && is_known("cmn"));
        assert!(!is_known("xx"));
    }
}
