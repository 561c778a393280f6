//! An interpolated Kneser-Ney n-gram language model over normalized words,
//! trained in memory: CCNet's quality LM (a 5-gram KenLM of Wikipedia) in
//! kind. Perplexity is CCNet's: per line, `log10 P` of every word and of the
//! end of the line, each line starting from `<s>`; a document's perplexity is
//! `10^(-sum / tokens)` over its lines.
//!
//! Where CCNet's models differ: words (see [`super::words`]), not
//! SentencePiece pieces; one discount per order (`n1 / (n1 + 2 n2)`), not
//! modified KN's three; no pruning. An unseen word gets the discounted mass
//! spread over the vocabulary plus one unknown.
//!
//! N-grams and contexts are keyed by hashes (a context's hash extends to the
//! left one word at a time), so scoring a word is one lookup per order and
//! stops at the first unseen context.

use std::collections::HashMap;

use super::model_file::{ModelFileError, ModelReader, ModelWriter};
use super::words::{END_OF_LINE, HashedText, KeyHashBuilder, START_OF_LINE, WordHasher, mix};

const MAGIC: &str = "llamaflow-ngram-lm 1";
/// The hash every context starts from (the empty context).
const EMPTY_CONTEXT: u64 = 0x6e67_7261_6d00_0000;
/// The largest order the model supports.
pub const MAX_ORDER: usize = 8;

type Counts = HashMap<u64, u32, KeyHashBuilder>;
type Contexts = HashMap<u64, ContextStats, KeyHashBuilder>;

/// What the model knows of one context: the counts after it, in total, and
/// how many different words followed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ContextStats {
    total: u32,
    distinct: u32,
}

/// Counts n-grams of training text; [`NgramCounter::finish`] makes the model.
#[derive(Debug)]
pub struct NgramCounter {
    order: usize,
    /// Per context length k (order k + 1): n-gram key to its count (raw at the
    /// highest order and for n-grams that start with `<s>`, else the number
    /// of different words seen before it, Kneser-Ney's continuation count).
    counts: Vec<Counts>,
    contexts: Vec<Contexts>,
    vocabulary: HashMap<u64, (), KeyHashBuilder>,
    words: u64,
    hasher: WordHasher,
    line: Vec<u64>,
}

impl NgramCounter {
    /// A counter for a model of `order` (2 to [`MAX_ORDER`]; CCNet: 5).
    pub fn new(order: usize) -> Self {
        let order = order.clamp(2, MAX_ORDER);
        Self {
            order,
            counts: (0..order).map(|_| Counts::default()).collect(),
            contexts: (0..order).map(|_| Contexts::default()).collect(),
            vocabulary: HashMap::default(),
            words: 0,
            hasher: WordHasher::default(),
            line: Vec::new(),
        }
    }

    /// Words counted so far (ends of lines included).
    pub fn words(&self) -> u64 {
        self.words
    }

    /// Counts every non-empty line of `text`.
    pub fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            let mut tokens = std::mem::take(&mut self.line);
            tokens.clear();
            tokens.push(START_OF_LINE);
            self.hasher.line(line, |w| tokens.push(w));
            if tokens.len() > 1 {
                tokens.push(END_OF_LINE);
                self.add_line(&tokens);
            }
            self.line = tokens;
        }
    }

    fn add_line(&mut self, tokens: &[u64]) {
        let top = self.order - 1;
        let mut context_keys = [0u64; MAX_ORDER];
        for p in 1..tokens.len() {
            let word = tokens[p];
            self.vocabulary.insert(word, ());
            self.words += 1;
            let longest = p.min(top);
            context_keys[0] = EMPTY_CONTEXT;
            for k in 1..=longest {
                context_keys[k] = mix(context_keys[k - 1], tokens[p - k]);
            }
            // From the longest n-gram down: a shorter one is counted raw only
            // when it starts with `<s>`; otherwise it gains one continuation
            // each time a longer n-gram ending the same way is new.
            let mut longer_was_new = false;
            for k in (0..=longest).rev() {
                let raw = k == top || k == p;
                if !raw && !longer_was_new {
                    break;
                }
                let key = mix(context_keys[k], word);
                let count = self.counts[k].entry(key).or_insert(0);
                *count += 1;
                let new = *count == 1;
                let stats = self.contexts[k].entry(context_keys[k]).or_default();
                stats.total += 1;
                stats.distinct += u32::from(new);
                longer_was_new = new;
            }
        }
    }

    /// The model: counts plus each order's discount from its counts of counts.
    pub fn finish(self) -> NgramLm {
        let discounts = self
            .counts
            .iter()
            .map(|counts| {
                let (mut n1, mut n2) = (0u64, 0u64);
                for &c in counts.values() {
                    match c {
                        1 => n1 += 1,
                        2 => n2 += 1,
                        _ => {}
                    }
                }
                if n1 == 0 {
                    0.5
                } else {
                    (n1 as f64 / (n1 + 2 * n2) as f64).clamp(0.05, 0.95) as f32
                }
            })
            .collect();
        NgramLm {
            order: self.order,
            words: self.words,
            vocabulary: self.vocabulary.len() as u64,
            discounts,
            counts: self.counts,
            contexts: self.contexts,
        }
    }
}

/// A trained n-gram model: scores text by perplexity.
#[derive(Debug)]
pub struct NgramLm {
    order: usize,
    words: u64,
    vocabulary: u64,
    discounts: Vec<f32>,
    counts: Vec<Counts>,
    contexts: Vec<Contexts>,
}

/// Reusable buffers for [`NgramLm::perplexity`].
#[derive(Debug, Default)]
pub struct Scratch {
    text: HashedText,
    line: Vec<u64>,
}

impl NgramLm {
    /// The model's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Words trained on (ends of lines included).
    pub fn training_words(&self) -> u64 {
        self.words
    }

    /// Distinct words seen in training.
    pub fn vocabulary(&self) -> u64 {
        self.vocabulary
    }

    /// Stored n-grams over all orders.
    pub fn ngrams(&self) -> u64 {
        self.counts.iter().map(|c| c.len() as u64).sum()
    }

    /// `P(tokens[p] | tokens[..p])`, interpolated from the empty context up.
    fn probability(&self, tokens: &[u64], p: usize) -> f64 {
        let word = tokens[p];
        let mut probability = 1.0 / (self.vocabulary + 1) as f64;
        let mut context = EMPTY_CONTEXT;
        for k in 0..self.order.min(p + 1) {
            if k > 0 {
                context = mix(context, tokens[p - k]);
            }
            let Some(stats) = self.contexts[k].get(&context) else {
                break;
            };
            let count = self.counts[k].get(&mix(context, word)).copied().unwrap_or(0);
            let d = f64::from(self.discounts[k]);
            let total = f64::from(stats.total);
            probability = ((f64::from(count) - d).max(0.0) + d * f64::from(stats.distinct) * probability) / total;
        }
        probability
    }

    /// `(sum of log10 P, tokens scored)` over the lines of a hashed text.
    pub fn log10_score_hashed(&self, text: &HashedText, line_buffer: &mut Vec<u64>) -> (f64, u64) {
        let (mut sum, mut tokens) = (0.0, 0u64);
        for words in text.lines() {
            line_buffer.clear();
            line_buffer.push(START_OF_LINE);
            line_buffer.extend_from_slice(words);
            line_buffer.push(END_OF_LINE);
            // A product of probabilities, turned into a logarithm only before
            // it could underflow: one log per ~30 tokens rather than per token.
            let mut product = 1.0f64;
            for p in 1..line_buffer.len() {
                product *= self.probability(line_buffer, p);
                if product < 1e-200 {
                    sum += product.log10();
                    product = 1.0;
                }
            }
            sum += product.log10();
            tokens += line_buffer.len() as u64 - 1;
        }
        (sum, tokens)
    }

    /// `(sum of log10 P, tokens scored)` over the lines of `text`.
    pub fn log10_score(&self, text: &str, scratch: &mut Scratch) -> (f64, u64) {
        scratch.text.fill(text);
        self.log10_score_hashed(&scratch.text, &mut scratch.line)
    }

    /// The perplexity of a hashed text; `None` when it has no word.
    pub fn perplexity_hashed(&self, text: &HashedText, line_buffer: &mut Vec<u64>) -> Option<f64> {
        let (sum, tokens) = self.log10_score_hashed(text, line_buffer);
        (tokens > 0).then(|| 10f64.powf(-sum / tokens as f64))
    }

    /// The perplexity of `text`; `None` when it has no word.
    pub fn perplexity(&self, text: &str, scratch: &mut Scratch) -> Option<f64> {
        scratch.text.fill(text);
        self.perplexity_hashed(&scratch.text, &mut scratch.line)
    }

    /// The model as a file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = ModelWriter::new(MAGIC);
        out.u32(self.order as u32);
        out.u64(self.words);
        out.u64(self.vocabulary);
        for &d in &self.discounts {
            out.f32(d);
        }
        for (counts, contexts) in self.counts.iter().zip(&self.contexts) {
            // Sorted, so the same model is the same bytes (its digest is its version).
            let mut entries: Vec<(u64, u32)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
            entries.sort_unstable();
            out.u64(entries.len() as u64);
            for (key, count) in entries {
                out.u64(key);
                out.u32(count);
            }
            let mut entries: Vec<(u64, ContextStats)> = contexts.iter().map(|(k, v)| (*k, *v)).collect();
            entries.sort_unstable_by_key(|(k, _)| *k);
            out.u64(entries.len() as u64);
            for (key, stats) in entries {
                out.u64(key);
                out.u32(stats.total);
                out.u32(stats.distinct);
            }
        }
        out.finish()
    }

    /// Loads a model saved by [`Self::to_bytes`]; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, ModelFileError> {
        let mut r = ModelReader::open(bytes, file, MAGIC)?;
        let order = r.u32()? as usize;
        if !(2..=MAX_ORDER).contains(&order) {
            return Err(r.invalid(format!("order {order} is outside 2..={MAX_ORDER}")));
        }
        let words = r.u64()?;
        let vocabulary = r.u64()?;
        let discounts = (0..order).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        let (mut counts, mut contexts) = (Vec::new(), Vec::new());
        for _ in 0..order {
            let n = r.count(12)?;
            let mut c = Counts::with_capacity_and_hasher(n, KeyHashBuilder::default());
            for _ in 0..n {
                c.insert(r.u64()?, r.u32()?);
            }
            counts.push(c);
            let n = r.count(16)?;
            let mut x = Contexts::with_capacity_and_hasher(n, KeyHashBuilder::default());
            for _ in 0..n {
                let key = r.u64()?;
                let stats = ContextStats {
                    total: r.u32()?,
                    distinct: r.u32()?,
                };
                if stats.total == 0 {
                    return Err(r.invalid("a context with no count"));
                }
                x.insert(key, stats);
            }
            contexts.push(x);
        }
        r.finish()?;
        Ok(Self {
            order,
            words,
            vocabulary,
            discounts,
            counts,
            contexts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIKI: &str = "The cat sat on the mat.\nThe dog sat on the rug.\nA cat and a dog sat on the mat together.\n\
        The history of the city began in the year 1200.\nThe river flows through the city to the sea.";

    fn model(order: usize) -> NgramLm {
        let mut counter = NgramCounter::new(order);
        counter.add_text(WIKI);
        counter.finish()
    }

    #[test]
    fn probabilities_sum_to_one_over_the_vocabulary_plus_unknown() {
        let lm = model(3);
        let mut words = Vec::new();
        WordHasher::default().line(WIKI.replace('\n', " ").as_str(), |w| words.push(w));
        words.sort_unstable();
        words.dedup();
        words.push(END_OF_LINE);
        let unknown = 0xdead_beef_u64;
        for context in [
            vec![START_OF_LINE],
            vec![START_OF_LINE, words[0]],
            vec![START_OF_LINE, 42, 43],
        ] {
            let total: f64 = words
                .iter()
                .chain([&unknown])
                .map(|&w| {
                    let mut t = context.clone();
                    t.push(w);
                    lm.probability(&t, t.len() - 1)
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-6, "context {context:?}: {total}");
        }
    }

    #[test]
    fn text_like_the_training_text_has_lower_perplexity() {
        let lm = model(5);
        let mut s = Scratch::default();
        let seen = lm.perplexity("The cat sat on the mat.", &mut s).unwrap();
        let shuffled = lm.perplexity("mat the on sat cat the", &mut s).unwrap();
        let unseen = lm.perplexity("click here buy cheap pills now", &mut s).unwrap();
        assert!(seen < shuffled && shuffled < unseen, "{seen} {shuffled} {unseen}");
        assert_eq!(lm.perplexity("!!! ...", &mut s), None);
    }

    #[test]
    fn the_model_file_round_trips_and_bad_files_are_named() {
        let lm = model(4);
        let bytes = lm.to_bytes();
        assert_eq!(bytes, model(4).to_bytes(), "the same text gives the same bytes");
        let back = NgramLm::from_bytes(&bytes, "lm.en.bin").unwrap();
        let mut s = Scratch::default();
        assert_eq!(back.perplexity(WIKI, &mut s), lm.perplexity(WIKI, &mut s));
        let e = NgramLm::from_bytes(&bytes[..bytes.len() - 3], "lm.en.bin").unwrap_err();
        assert!(e.to_string().contains("lm.en.bin: truncated"), "{e}");
        let e = NgramLm::from_bytes(b"PAR1", "x.parquet").unwrap_err();
        assert!(matches!(e, ModelFileError::WrongFormat { .. }), "{e}");
    }
}
