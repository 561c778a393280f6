//! `TokenEncoder`: a `tokenizer.json` that encodes documents of any length in
//! linear time and whole batches in parallel, with exactly the ids of HF
//! `tokenizers`' `encode(text, add_special_tokens=False)`.
//!
//! Why segment: with some tokenizer configurations (no pre-tokenizer, as in
//! LLaMA's own `tokenizer.json`) the whole document is one BPE "word", and HF
//! `tokenizers` gets slow on very long inputs (huggingface/tokenizers#1449;
//! TinyLlama#62: one 15.9M-character document took 6.6 hours). Long texts are
//! therefore cut, before encoding, at spaces that no token can span, and the
//! pieces encoded on their own (and in parallel); their ids concatenate to
//! those of the whole text.
//!
//! When is a cut exact? A cut goes right before a space that follows a word
//! character (neither whitespace nor `▁`). No token can span it if no token of
//! the vocabulary holds a word character followed by a space (`' '` or
//! SentencePiece's `▁`), and no added token holds a space; that is checked once
//! per tokenizer from its vocabulary. How the piece after the cut must be
//! written depends on the tokenizer's dummy prefix: with a Metaspace
//! pre-tokenizer (ours) the piece keeps its leading space; with a
//! `Prepend("▁")` normalizer (LLaMA's) it drops it, since the normalizer adds
//! it back. Which of the two applies is found by probing: both are tried on
//! probe texts cut at every possible point and compared with whole-text
//! encoding; a tokenizer for which neither matches is never segmented (and
//! stays exact, if slow on huge documents).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

/// Texts shorter than twice this (bytes) are encoded whole.
const SEGMENT_BYTES: usize = 16 << 10;

/// Pieces encoded per call into HF's thread pool.
const PIECES_PER_CALL: usize = 512;

/// Words whose BPE merges each encoding thread remembers. HF's default (10,000)
/// fills up early on a corpus, after which every other word is merged again.
const BPE_CACHE_WORDS: usize = 1 << 18;

/// Errors loading a tokenizer or encoding with it.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The bytes are not a `tokenizer.json` HF `tokenizers` can load.
    #[error("{origin}: not a tokenizer HF `tokenizers` can load: {message}")]
    Load {
        /// Where the tokenizer came from.
        origin: String,
        /// The library's message.
        message: String,
    },
    /// The tokenizer lacks something llamaflow needs.
    #[error("{origin}: {message}")]
    Unsuitable {
        /// Where the tokenizer came from.
        origin: String,
        /// What is missing.
        message: String,
    },
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// How a long text is cut so that its pieces encode to the whole text's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segmentation {
    /// Never cut: no cut was proven exact for this tokenizer.
    Never,
    /// Cut before a space; the piece after the cut starts with that space (Metaspace pre-tokenizer).
    KeepSpace,
    /// Cut before a space; the piece after the cut starts after it (`Prepend("▁")` normalizer).
    DropSpace,
}

/// A loaded tokenizer, ready to encode documents for shards and UDFs.
#[derive(Debug, Clone)]
pub struct TokenEncoder {
    tokenizer: Arc<Tokenizer>,
    segmentation: Segmentation,
    sha256: String,
    eos: u32,
    vocab_size: usize,
    /// Added tokens (`</s>`, ...), which HF matches in the raw text before
    /// anything else: a text holding one is never cut (see [`Self::pieces`]).
    added: Vec<String>,
}

/// Probe texts for choosing a segmentation: spaces in runs, at the ends, next
/// to digits, newlines, byte-fallback characters and special-token look-alikes.
const PROBES: &[&str] = &[
    "Hello world, this is a test.",
    "two  spaces and   three, then\ta tab and a\nnewline  \n end ",
    " leading space and trailing space ",
    "digits 12345 and 3.14159 and 1,000,000 x2 2x",
    "émoji 🦙 and 漢字 中文 and עברית and ﷽ and \u{200d}\u{0301} marks",
    "fn main() { let x = vec![1, 2, 3]; println!(\"{x:?}\"); }",
    "a b c d e f g h i j k l m n o p",
];

impl TokenEncoder {
    /// Loads a `tokenizer.json` from its bytes; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, EncoderError> {
        let load_error = |e: tokenizers::Error| EncoderError::Load {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(load_error)?;
        // A corpus is encoded as it is: never cut to a length, never padded.
        tokenizer.with_truncation(None).map_err(load_error)?;
        tokenizer.with_padding(None);
        let mut model = tokenizer.get_model().clone();
        if let tokenizers::ModelWrapper::BPE(bpe) = &mut model {
            bpe.resize_cache(BPE_CACHE_WORDS);
        }
        tokenizer.with_model(model);
        let eos = tokenizer.token_to_id("</s>").ok_or_else(|| EncoderError::Unsuitable {
            origin: origin.to_string(),
            message: "the tokenizer has no `</s>` token to end documents with".into(),
        })?;
        let vocab_size = tokenizer.get_vocab_size(true);
        let added = tokenizer
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.clone())
            .filter(|c| !c.is_empty())
            .collect();
        let sha256 = hex::encode(Sha256::digest(bytes));
        let mut encoder = TokenEncoder {
            tokenizer: Arc::new(tokenizer),
            segmentation: Segmentation::Never,
            sha256,
            eos,
            vocab_size,
            added,
        };
        encoder.segmentation = encoder.find_segmentation();
        Ok(encoder)
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, EncoderError> {
        let bytes = std::fs::read(path).map_err(|e| EncoderError::Load {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// The underlying HF tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// How long texts are cut for this tokenizer.
    pub fn segmentation(&self) -> Segmentation {
        self.segmentation
    }

    /// SHA-256 of the `tokenizer.json` bytes, recorded with every shard.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The id of `</s>`, which ends every document in a shard.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Whether no token can span a cut before a space (see the module docs).
    fn cuts_are_safe(&self) -> bool {
        let spacey = |c: char| c == ' ' || c == '▁';
        // A token spans a cut when a space follows a character a cut may follow.
        let spans = |token: &str| {
            let mut prev_is_word = false;
            for c in token.chars() {
                if spacey(c) && prev_is_word {
                    return true;
                }
                prev_is_word = is_word_char(c);
            }
            false
        };
        let added_has_space = self
            .tokenizer
            .get_added_tokens_decoder()
            .values()
            .any(|t| t.content.chars().any(spacey));
        !added_has_space && !self.tokenizer.get_vocab(false).keys().any(|t| spans(t))
    }

    fn find_segmentation(&self) -> Segmentation {
        if !self.cuts_are_safe() {
            return Segmentation::Never;
        }
        for mode in [Segmentation::KeepSpace, Segmentation::DropSpace] {
            let exact = PROBES.iter().all(|text| {
                let cuts = cut_points(text, 1);
                let mut joined = Vec::new();
                for piece in pieces(text, &cuts, mode) {
                    match self.encode_whole(piece) {
                        Ok(ids) => joined.extend(ids),
                        Err(_) => return false,
                    }
                }
                self.encode_whole(text).is_ok_and(|whole| whole == joined)
            });
            if exact {
                return mode;
            }
        }
        Segmentation::Never
    }

    /// Encodes `text` in one call, as HF `encode(text, add_special_tokens=False)`.
    pub fn encode_whole(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| EncoderError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The pieces `text` is encoded as: itself when short or unsegmentable.
    /// A text holding an added token is not cut either: HF splits the text
    /// around added tokens first and normalizes each part on its own, so a
    /// dummy prefix would appear after every one of them.
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        if self.segmentation == Segmentation::Never
            || text.len() < 2 * SEGMENT_BYTES
            || self.added.iter().any(|a| text.contains(a.as_str()))
        {
            return vec![text];
        }
        let cuts = cut_points(text, SEGMENT_BYTES);
        pieces(text, &cuts, self.segmentation)
    }

    /// Encodes one document (segmented when long; pieces in parallel).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let mut out = self.encode_batch(&[text])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Encodes many documents in parallel (HF's thread pool); long ones are
    /// segmented, and every piece of every document is one task.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EncoderError> {
        let mut all_pieces: Vec<&str> = Vec::with_capacity(texts.len());
        let mut counts = Vec::with_capacity(texts.len());
        for text in texts {
            let p = self.pieces(text);
            counts.push(p.len());
            all_pieces.extend(p);
        }
        // HF's `Encoding` keeps a string, offsets and masks per token (~70 bytes):
        // pieces go through in chunks and only their ids (4 bytes) are kept.
        let mut piece_ids: Vec<Vec<u32>> = Vec::with_capacity(all_pieces.len());
        for chunk in all_pieces.chunks(PIECES_PER_CALL) {
            let encodings = self
                .tokenizer
                .encode_batch_fast(chunk.to_vec(), false)
                .map_err(|e| EncoderError::Encode(e.to_string()))?;
            piece_ids.extend(encodings.into_iter().map(|e| e.get_ids().to_vec()));
        }
        let mut piece_ids = piece_ids.into_iter();
        let mut out = Vec::with_capacity(texts.len());
        for n in counts {
            let mut ids: Vec<u32> = piece_ids.next().unwrap_or_default();
            for more in piece_ids.by_ref().take(n.saturating_sub(1)) {
                ids.extend_from_slice(&more);
            }
            out.push(ids);
        }
        Ok(out)
    }
}

/// Characters a cut may follow: neither whitespace nor SentencePiece's `▁`.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && c != '▁'
}

/// Byte positions of spaces that follow a word character (see
/// [`is_word_char`]) and precede something, at least `min_gap` bytes after
/// the previous cut.
fn cut_points(text: &str, min_gap: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let step = min_gap.max(1);
    let mut cuts = Vec::new();
    let mut i = step;
    // Never at the last byte: a piece of nothing encodes to nothing, even
    // where the whole text's trailing space is a token.
    while i + 1 < bytes.len() {
        // A space is ASCII, so `bytes[i] == b' '` is a character boundary.
        if bytes[i] == b' ' && text[..i].chars().next_back().is_some_and(is_word_char) {
            cuts.push(i);
            i += step;
        } else {
            i += 1;
        }
    }
    cuts
}

fn pieces<'t>(text: &'t str, cuts: &[usize], mode: Segmentation) -> Vec<&'t str> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        out.push(&text[start..cut]);
        start = if mode == Segmentation::DropSpace { cut + 1 } else { cut };
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSequence};
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::{AddedToken, TokenizerBuilder};

    const CORPUS: &str = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. \
        In 1987, 42 foxes jumped 3.5 meters. fn main() { println!(\"hi\"); }  two  spaces\tand tabs\n";

    /// A tiny trained BPE in one of two shapes: Metaspace pre-tokenizer (ours) or LLaMA's
    /// (a `Prepend("▁")` + `Replace(" ", "▁")` normalizer, no pre-tokenizer). Both are trained
    /// split at word starts, as SentencePiece trained LLaMA's.
    pub(crate) fn tiny_tokenizer(llama_shape: bool) -> Vec<u8> {
        let mut tokenizer = TokenizerBuilder::<
            BPE,
            tokenizers::NormalizerWrapper,
            tokenizers::PreTokenizerWrapper,
            tokenizers::PostProcessorWrapper,
            tokenizers::DecoderWrapper,
        >::new()
        .with_model(BPE::builder().byte_fallback(true).build().unwrap())
        .with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, true).into()))
        .build()
        .unwrap();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(300)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(vec![
                AddedToken::from("<unk>", true),
                AddedToken::from("<s>", true),
                AddedToken::from("</s>", true),
            ])
            .build();
        let corpus: Vec<String> = (0..20).map(|_| CORPUS.to_string()).collect();
        tokenizer.train(&mut trainer, corpus.iter()).unwrap();
        if llama_shape {
            let normalizer = NormSequence::new(vec![
                Prepend::new("▁".into()).into(),
                Replace::new(" ", "▁").unwrap().into(),
            ]);
            tokenizer.with_pre_tokenizer(None::<tokenizers::PreTokenizerWrapper>);
            tokenizer.with_normalizer(Some(normalizer)).unwrap();
        }
        let tokenizer: Tokenizer = tokenizer.into();
        tokenizer.to_string(false).unwrap().into_bytes()
    }

    fn long_text() -> String {
        let mut text = String::new();
        let mut i = 0u64;
        while text.len() < 200_000 {
            text.push_str(CORPUS);
            text.push_str(&format!("item {i}  🦙 end.\n"));
            i += 1;
        }
        text
    }

    #[test]
    fn metaspace_tokenizers_keep_the_space_and_match_whole_text_encoding() {
        let enc = TokenEncoder::from_bytes(&tiny_tokenizer(false), "tiny").unwrap();
        assert_eq!(enc.segmentation(), Segmentation::KeepSpace);
        let text = long_text();
        assert!(enc.pieces(&text).len() > 5);
        assert_eq!(enc.encode(&text).unwrap(), enc.encode_whole(&text).unwrap());
    }

    #[test]
    fn prepend_normalizer_tokenizers_drop_the_space_and_match_whole_text_encoding() {
        let enc = TokenEncoder::from_bytes(&tiny_tokenizer(true), "tiny-llama").unwrap();
        assert_eq!(enc.segmentation(), Segmentation::DropSpace);
        let text = long_text();
        assert!(enc.pieces(&text).len() > 5);
        assert_eq!(enc.encode(&text).unwrap(), enc.encode_whole(&text).unwrap());
    }

    #[test]
    fn a_vocabulary_with_a_token_across_a_space_is_never_segmented() {
        let json = String::from_utf8(tiny_tokenizer(false)).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let vocab = value["model"]["vocab"].as_object_mut().unwrap();
        let next = vocab.len() as u64 + 10;
        vocab.insert("x▁y".into(), next.into());
        let enc = TokenEncoder::from_bytes(value.to_string().as_bytes(), "bad").unwrap();
        assert_eq!(enc.segmentation(), Segmentation::Never);
        assert_eq!(enc.pieces(&long_text()).len(), 1);
    }

    #[test]
    fn a_long_text_holding_a_special_token_is_encoded_whole_and_exactly() {
        for llama_shape in [false, true] {
            let enc = TokenEncoder::from_bytes(&tiny_tokenizer(llama_shape), "tiny").unwrap();
            let text = format!("{} the end</s> and <s> more {}", long_text(), long_text());
            assert_eq!(enc.pieces(&text).len(), 1);
            assert_eq!(enc.encode(&text).unwrap(), enc.encode_whole(&text).unwrap());
        }
    }

    #[test]
    fn batches_equal_one_by_one_encoding() {
        let enc = TokenEncoder::from_bytes(&tiny_tokenizer(false), "tiny").unwrap();
        let long = long_text();
        let texts = ["a", "", "hello world 123", long.as_str(), "  "];
        let batch = enc.encode_batch(&texts).unwrap();
        for (text, ids) in texts.iter().zip(&batch) {
            assert_eq!(ids, &enc.encode_whole(text).unwrap(), "{text:.40}");
        }
    }

    #[test]
    fn a_tokenizer_without_an_end_of_document_token_is_refused_by_name() {
        let json = String::from_utf8(tiny_tokenizer(false))
            .unwrap()
            .replace("</s>", "<eos>");
        let err = TokenEncoder::from_bytes(json.as_bytes(), "x/tokenizer.json").unwrap_err();
        assert!(
            err.to_string().contains("x/tokenizer.json") && err.to_string().contains("</s>"),
            "{err}"
        );
        let err = TokenEncoder::from_bytes(b"{ not json", "y.json").unwrap_err();
        assert!(err.to_string().starts_with("y.json: not a tokenizer"), "{err}");
    }

    #[test]
    fn cuts_go_before_spaces_that_follow_a_word() {
        assert_eq!(cut_points("ab cd  ef", 1), vec![2, 5]);
        assert_eq!(cut_points("ab cd ", 1), vec![2], "not before a trailing space");
        assert_eq!(cut_points("a\t b▁ c é d", 1), vec![9, 12]);
        assert_eq!(
            pieces("ab cd  ef", &[2, 5], Segmentation::KeepSpace),
            vec!["ab", " cd", "  ef"]
        );
        assert_eq!(
            pieces("ab cd  ef", &[2, 5], Segmentation::DropSpace),
            vec!["ab", "cd", " ef"]
        );
    }
}
