//! The quality models of the `commoncrawl` path, as CCNet and LLaMA used
//! them: an n-gram language model of Wikipedia whose perplexity buckets pages
//! ([`ngram_lm`]), and a linear classifier of "cited by Wikipedia" pages
//! ([`ref_classifier`]). Stages train and save them; `cc_quality` and the
//! `sql` functions load them.

pub mod model_file;
pub mod ngram_lm;
pub mod ref_classifier;
pub mod words;

pub use model_file::ModelFileError;
pub use ngram_lm::{NgramCounter, NgramLm};
pub use ref_classifier::{RefClassifier, TrainSettings};
