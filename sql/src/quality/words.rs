//! The words the quality models see: CCNet's normalization (lowercase,
//! accents stripped, every digit `0`) with punctuation as a separator, each
//! word reduced to a 64-bit hash. The n-gram LM and the reference classifier
//! share it, so a model and its scorer can never disagree about a word.

use unicode_normalization::UnicodeNormalization;

/// The hash of the end-of-line token `</s>`.
pub const END_OF_LINE: u64 = 0x2f73_3e00_0000_0001;
/// The hash of the start-of-line token `<s>` (a context, never predicted).
pub const START_OF_LINE: u64 = 0x3c73_3e00_0000_0002;

/// Reusable buffers for [`WordHasher::line`].
#[derive(Debug, Default)]
pub struct WordHasher {
    word: String,
    folded: String,
}

impl WordHasher {
    /// Calls `f` with the hash of each normalized word of `line`, in order.
    pub fn line(&mut self, line: &str, mut f: impl FnMut(u64)) {
        let text: &str = if line.is_ascii() {
            line
        } else {
            // Accents go before case folding, as CCNet's `strip_accents` does.
            self.folded.clear();
            self.folded.extend(
                line.nfd()
                    .filter(|c| !unicode_normalization::char::is_combining_mark(*c)),
            );
            &self.folded
        };
        self.word.clear();
        for c in text.chars() {
            if c.is_alphanumeric() {
                if c.is_numeric() {
                    self.word.push('0');
                } else if c.is_ascii() {
                    self.word.push(c.to_ascii_lowercase());
                } else {
                    self.word.extend(c.to_lowercase());
                }
            } else if !self.word.is_empty() {
                f(word_hash(&self.word));
                self.word.clear();
            }
        }
        if !self.word.is_empty() {
            f(word_hash(&self.word));
            self.word.clear();
        }
    }
}

/// A text's lines as word hashes, made once and read by both models (so a
/// page scored by both is normalized and hashed once).
#[derive(Debug, Default)]
pub struct HashedText {
    words: Vec<u64>,
    /// The end of each non-empty line in `words`.
    line_ends: Vec<usize>,
    hasher: WordHasher,
}

impl HashedText {
    /// Replaces the contents with the words of `text`'s non-empty lines.
    pub fn fill(&mut self, text: &str) {
        self.words.clear();
        self.line_ends.clear();
        for line in text.lines() {
            let words = &mut self.words;
            self.hasher.line(line, |w| words.push(w));
            if self.line_ends.last().copied().unwrap_or(0) < self.words.len() {
                self.line_ends.push(self.words.len());
            }
        }
    }

    /// The words of each non-empty line, in order.
    pub fn lines(&self) -> impl Iterator<Item = &[u64]> {
        let starts = std::iter::once(0).chain(self.line_ends.iter().copied());
        starts
            .zip(self.line_ends.iter().copied())
            .map(|(a, b)| &self.words[a..b])
    }
}

/// The hash of one normalized word.
pub fn word_hash(word: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(word.as_bytes())
}

/// Combines a hash with one more value, order-sensitive (murmur3's finalizer
/// over a multiply-xor, so keys stay well spread for identity hashing).
pub fn mix(state: u64, value: u64) -> u64 {
    let mut h = state.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ value;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A `HashMap` hasher for keys that are already hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0, u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Builds [`KeyHasher`]s.
pub type KeyHashBuilder = std::hash::BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<u64> {
        let mut out = Vec::new();
        WordHasher::default().line(line, |w| out.push(w));
        out
    }

    #[test]
    fn case_digits_accents_and_punctuation_are_normalized_away() {
        assert_eq!(words("Café, 1984!"), words("cafe 0000"));
        assert_eq!(words("ÉTÉ"), vec![word_hash("ete")]);
        assert_eq!(words("  --  "), Vec::<u64>::new());
        assert_eq!(words("a-b"), vec![word_hash("a"), word_hash("b")]);
    }

    #[test]
    fn hashed_text_keeps_non_empty_lines_apart() {
        let mut h = HashedText::default();
        h.fill("One two\n\n  ...\nthree");
        let lines: Vec<Vec<u64>> = h.lines().map(<[u64]>::to_vec).collect();
        assert_eq!(lines, vec![words("one two"), words("three")]);
        h.fill("");
        assert_eq!(h.lines().count(), 0);
    }

    #[test]
    fn mixing_is_order_sensitive() {
        assert_ne!(mix(mix(0, 1), 2), mix(mix(0, 2), 1));
    }
}
