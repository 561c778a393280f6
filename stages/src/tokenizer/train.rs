//! Training a LLaMA-style tokenizer with HF `tokenizers`: SentencePiece-style
//! BPE, every digit its own token, byte fallback for what the vocabulary lacks.
//!
//! The layout follows LLaMA's `tokenizer.json`: `<unk>` = 0, `<s>` = 1,
//! `</s>` = 2, the 256 byte tokens `<0x00>`..`<0xFF>` = 3..258, then the
//! learned pieces, most frequent merges first. Words are marked with `▁`
//! (SentencePiece's dummy prefix, added before the first word of a text), and
//! the decoder undoes it all, as LLaMA's does. One difference: LLaMA splits
//! nothing before BPE (one "word" per text, with spaces turned into `▁` by a
//! normalizer), while ours splits at `▁` and around digits with a pre-tokenizer.
//! The ids are the same kind (no piece crosses a word start, digits are single),
//! training needs a pre-tokenizer anyway, and encoding stays linear in the text.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["<unk>", "<s>", "</s>"];
/// Ids taken before the learned pieces: the special and the 256 byte tokens.
pub const RESERVED_IDS: usize = SPECIAL_TOKENS.len() + 256;

/// Errors while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The requested vocabulary cannot hold the reserved tokens.
    #[error("vocab_size {0} is too small: the special and byte tokens alone take {RESERVED_IDS}")]
    VocabTooSmall(usize),
    /// `tokenizers` failed.
    #[error("tokenizer training failed: {0}")]
    Library(String),
}

fn lib(e: impl std::fmt::Display) -> TrainError {
    TrainError::Library(e.to_string())
}

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// Final vocabulary size, special and byte tokens included (LLaMA: 32000).
    pub vocab_size: usize,
    /// Pairs seen fewer times are never merged.
    pub min_frequency: u64,
    /// At most this many distinct characters get their own token; rarer ones fall back to bytes.
    pub limit_alphabet: usize,
    /// Longest piece, in characters (SentencePiece's default: 16).
    pub max_piece_chars: usize,
}

/// The pre-tokenizer: `▁` word starts (dummy prefix on the first word), digits isolated.
pub fn pre_tokenizer() -> PreTokenizerWrapper {
    PreTokenizerSequence::new(vec![
        Metaspace::new('▁', PrependScheme::First, true).into(),
        Digits::new(true).into(),
    ])
    .into()
}

/// LLaMA's decoder: `▁` back to spaces, byte tokens back to UTF-8, the dummy prefix dropped.
fn decoder() -> Result<DecoderWrapper, TrainError> {
    Ok(DecoderSequence::new(vec![
        Replace::new("▁", " ").map_err(lib)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
        Strip::new(' ', 1, 0).into(),
    ])
    .into())
}

/// Trains a tokenizer on `texts`. A sample too small to learn `vocab_size`
/// pieces gives a smaller vocabulary (the caller reports it).
pub fn train(texts: &[String], settings: &TrainSettings) -> Result<Tokenizer, TrainError> {
    if settings.vocab_size <= RESERVED_IDS {
        return Err(TrainError::VocabTooSmall(settings.vocab_size));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(settings.vocab_size - RESERVED_IDS)
        .min_frequency(settings.min_frequency)
        .limit_alphabet(settings.limit_alphabet)
        .max_token_length(Some(settings.max_piece_chars))
        .show_progress(false)
        .build();
    let mut learner = TokenizerBuilder::<
        BPE,
        tokenizers::NormalizerWrapper,
        PreTokenizerWrapper,
        tokenizers::PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(pre_tokenizer()))
    .build()
    .map_err(lib)?;
    learner.train(&mut trainer, texts.iter()).map_err(lib)?;

    // Re-number: special and byte tokens first, then the learned pieces in the
    // trainer's order (alphabet, then merges by rank).
    let learned = learner.get_model().get_vocab();
    let mut pieces: Vec<(&String, u32)> = learned.iter().map(|(t, id)| (t, *id)).collect();
    pieces.sort_by_key(|(_, id)| *id);
    let mut vocab: Vec<(String, u32)> = Vec::with_capacity(RESERVED_IDS + pieces.len());
    for token in SPECIAL_TOKENS {
        vocab.push((token.to_string(), vocab.len() as u32));
    }
    for byte in 0..=255u8 {
        vocab.push((format!("<0x{byte:02X}>"), vocab.len() as u32));
    }
    for (token, _) in pieces {
        if !vocab[..RESERVED_IDS].iter().any(|(t, _)| t == token) {
            vocab.push((token.clone(), vocab.len() as u32));
        }
    }
    let merges = merges_of(learner.get_model())?;
    let model = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .unk_token("<unk>".into())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(lib)?;

    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer()));
    tokenizer.with_decoder(Some(decoder()?));
    let bos = ("<s>".to_string(), 1u32);
    let post = TemplateProcessing::builder()
        .try_single("<s>:0 $A:0")
        .and_then(|b| b.try_pair("<s>:0 $A:0 <s>:1 $B:1"))
        .map_err(lib)?
        .special_tokens(vec![bos])
        .build()
        .map_err(lib)?;
    tokenizer.with_post_processor(Some(post));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(specials).map_err(lib)?;
    Ok(tokenizer)
}

/// The trained model's merges, in rank order (read from its serialized form,
/// the one place `tokenizers` exposes them).
fn merges_of(model: &BPE) -> Result<Vec<(String, String)>, TrainError> {
    let value = serde_json::to_value(model).map_err(lib)?;
    let list = value
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| lib("the trained model has no merges list"))?;
    list.iter()
        .map(|m| match m {
            serde_json::Value::Array(pair) if pair.len() == 2 => Ok((
                pair[0].as_str().unwrap_or_default().to_string(),
                pair[1].as_str().unwrap_or_default().to_string(),
            )),
            serde_json::Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| lib(format!("merge `{s}` is not two tokens"))),
            other => Err(lib(format!("unexpected merge {other}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let base = "The quick brown fox jumps over the lazy dog in 1987. Foxes, dogs and 42 cats.\n\
                    fn main() { let total = 3 + 4; println!(\"{total}\"); }\n";
        (0..50).map(|i| format!("{base} Item number {i}.")).collect()
    }

    fn settings(vocab_size: usize) -> TrainSettings {
        TrainSettings {
            vocab_size,
            min_frequency: 2,
            limit_alphabet: 1000,
            max_piece_chars: 16,
        }
    }

    #[test]
    fn the_layout_is_llamas_specials_then_bytes_then_pieces() {
        let tok = train(&corpus(), &settings(400)).unwrap();
        assert_eq!(tok.token_to_id("<unk>"), Some(0));
        assert_eq!(tok.token_to_id("<s>"), Some(1));
        assert_eq!(tok.token_to_id("</s>"), Some(2));
        assert_eq!(tok.token_to_id("<0x00>"), Some(3));
        assert_eq!(tok.token_to_id("<0xFF>"), Some(258));
        assert!(tok.get_vocab_size(true) <= 400);
        assert!(tok.token_to_id("▁the").is_some() || tok.token_to_id("▁The").is_some());
    }

    #[test]
    fn digits_are_single_tokens_and_unknown_characters_fall_back_to_bytes() {
        let tok = train(&corpus(), &settings(400)).unwrap();
        let enc = tok.encode("in 1987 🦙", false).unwrap();
        let tokens = enc.get_tokens();
        for d in ["1", "9", "8", "7"] {
            assert!(tokens.iter().any(|t| t == d), "{tokens:?}");
        }
        // 🦙 is F0 9F A6 99 in UTF-8.
        for b in ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"] {
            assert!(tokens.iter().any(|t| t == b), "{tokens:?}");
        }
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), "in 1987 🦙");
    }

    #[test]
    fn a_vocabulary_too_small_for_the_reserved_tokens_is_refused() {
        assert!(matches!(
            train(&corpus(), &settings(200)),
            Err(TrainError::VocabTooSmall(200))
        ));
    }
}
