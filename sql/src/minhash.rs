//! MinHash signatures of texts, the near-duplicate key of deduplication (the
//! `minhash` and `minhash_jaccard` UDFs, and the `dedup` stage's LSH).
//!
//! A text is lowercased and cut into words (runs of letters and digits; all
//! punctuation is a separator), the words into overlapping n-grams (word
//! 5-grams by default, as datatrove), and each n-gram is hashed once with
//! XXH3-64. Slot `i` of the signature is the least value of the universal hash
//! `(a_i·x + b_i) mod (2^61−1)` over the n-gram hashes `x`, so two texts agree
//! in a slot with probability equal to the Jaccard similarity of their n-gram
//! sets. The `a_i, b_i` come from a fixed seed: signatures made anywhere, in
//! any run, are comparable.

/// Slots of a default signature: the `dedup` stage's 20 bands × 8 rows.
pub const DEFAULT_PERMUTATIONS: usize = 160;
/// Words per shingle by default (datatrove's word 5-grams).
pub const DEFAULT_NGRAM: usize = 5;
/// Most slots a signature may have (a bound for user-given arguments).
pub const MAX_PERMUTATIONS: usize = 4096;

/// The Mersenne prime 2^61−1, the modulus of the permutations.
const PRIME: u64 = (1 << 61) - 1;
/// Seed of the permutation coefficients, fixed so signatures stay comparable.
const SEED: u64 = 0x6c6c_616d_6166_6c6f; // "llamaflo"

/// Computes MinHash signatures with a fixed number of slots and n-gram size.
#[derive(Debug, Clone)]
pub struct MinHasher {
    ngram: usize,
    coefficients: Vec<(u64, u64)>,
}

impl MinHasher {
    /// A hasher of `permutations` slots over word `ngram`-grams (both at least 1).
    pub fn new(permutations: usize, ngram: usize) -> Self {
        let mut state = SEED;
        let coefficients = (0..permutations.max(1))
            .map(|_| {
                // a must be non-zero for the map to be a permutation of Z_p.
                let a = splitmix64(&mut state) % (PRIME - 1) + 1;
                let b = splitmix64(&mut state) % PRIME;
                (a, b)
            })
            .collect();
        MinHasher {
            ngram: ngram.max(1),
            coefficients,
        }
    }

    /// Slots per signature.
    pub fn permutations(&self) -> usize {
        self.coefficients.len()
    }

    /// The signature of `text`. A text without words has every slot at
    /// `u64::MAX` (no n-gram was seen); one with fewer words than the n-gram
    /// size is a single shingle of all its words.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let mut signature = vec![u64::MAX; self.coefficients.len()];
        self.for_each_shingle(text, |x| {
            for (slot, &(a, b)) in signature.iter_mut().zip(&self.coefficients) {
                let value = permute(a, b, x);
                if value < *slot {
                    *slot = value;
                }
            }
        });
        signature
    }

    /// Calls `f` with the hash (reduced mod p) of every word n-gram of `text`.
    fn for_each_shingle(&self, text: &str, mut f: impl FnMut(u64)) {
        let mut words: Vec<u64> = Vec::new();
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut Vec<u64>| {
            if !word.is_empty() {
                words.push(xxhash_rust::xxh3::xxh3_64(word.as_bytes()));
                word.clear();
            }
        };
        for c in text.chars() {
            if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
            } else {
                flush(&mut word, &mut words);
            }
        }
        flush(&mut word, &mut words);
        if words.is_empty() {
            return;
        }
        let n = self.ngram.min(words.len());
        let mut bytes = Vec::with_capacity(n * 8);
        for window in words.windows(n) {
            bytes.clear();
            for w in window {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            f(xxhash_rust::xxh3::xxh3_64(&bytes) % PRIME);
        }
    }
}

impl Default for MinHasher {
    fn default() -> Self {
        MinHasher::new(DEFAULT_PERMUTATIONS, DEFAULT_NGRAM)
    }
}

/// The estimated Jaccard similarity of two signatures: the share of slots in
/// which they agree. `None` when their lengths differ (different hashers).
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    Some(equal as f64 / a.len() as f64)
}

/// `(a·x + b) mod (2^61−1)` without overflow.
fn permute(a: u64, b: u64, x: u64) -> u64 {
    let product = (a as u128) * (x as u128) + b as u128;
    // Mersenne reduction: 2^61 ≡ 1 (mod p), so fold the high bits onto the low.
    let folded = (product & PRIME as u128) + (product >> 61);
    let folded = (folded & PRIME as u128) + (folded >> 61);
    let value = folded as u64;
    if value >= PRIME { value - PRIME } else { value }
}

/// The SplitMix64 generator: a fixed, well-mixed stream from one seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, salt: &str) -> Vec<String> {
        (0..n).map(|i| format!("{salt}{i}")).collect()
    }

    #[test]
    fn permute_matches_u128_arithmetic() {
        for (a, b, x) in [(1, 0, 5), (PRIME - 1, PRIME - 1, PRIME - 1), (123_456_789, 42, 1 << 60)] {
            let expected = ((a as u128 * x as u128 + b as u128) % PRIME as u128) as u64;
            assert_eq!(permute(a, b, x), expected);
        }
    }

    #[test]
    fn case_punctuation_and_spacing_do_not_change_the_signature() {
        let h = MinHasher::default();
        let a = h.signature("The quick brown fox jumps over the lazy dog, again and again.");
        let b = h.signature("the QUICK   brown fox\njumps over the lazy dog again -- and again");
        assert_eq!(a, b);
    }

    #[test]
    fn estimate_tracks_the_true_jaccard_of_the_shingle_sets() {
        // 200 shared words with 50 words swapped at the end: the true Jaccard of
        // the 5-gram sets is known exactly, and 512 slots estimate it within 0.07.
        let h = MinHasher::new(512, 5);
        let base = words(200, "w");
        let mut edited = base.clone();
        edited.truncate(150);
        edited.extend(words(50, "x"));
        let shingles =
            |w: &[String]| -> std::collections::HashSet<String> { w.windows(5).map(|s| s.join(" ")).collect() };
        let (sa, sb) = (shingles(&base), shingles(&edited));
        let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let estimate = estimated_jaccard(&h.signature(&base.join(" ")), &h.signature(&edited.join(" "))).unwrap();
        assert!((estimate - truth).abs() < 0.07, "estimate {estimate}, truth {truth}");
    }

    #[test]
    fn unrelated_texts_share_almost_no_slots_and_short_texts_are_one_shingle() {
        let h = MinHasher::default();
        let a = h.signature(&words(100, "a").join(" "));
        let b = h.signature(&words(100, "b").join(" "));
        assert!(estimated_jaccard(&a, &b).unwrap() < 0.05);
        assert_eq!(h.signature("two words"), h.signature("Two, words!"));
        assert_ne!(h.signature("two words"), h.signature("two other words"));
        assert!(h.signature("  ...  ").iter().all(|&v| v == u64::MAX));
    }

    #[test]
    fn signatures_of_different_sizes_are_not_compared() {
        let a = MinHasher::new(8, 5).signature("some text here");
        let b = MinHasher::new(16, 5).signature("some text here");
        assert_eq!(estimated_jaccard(&a, &b), None);
        assert_eq!(a[..], b[..8], "the coefficients are one fixed stream");
    }
}
