//! llamaflow's stage types. Adding a source or filter means adding one module
//! here and one line to [`registry`].

pub mod archive;
pub mod budgeted;
pub mod c4_filter;
pub mod cc_quality;
pub mod datasets;
pub mod dedup;
pub mod html;
pub mod jsonl;
pub mod quality_lm;
pub mod read;
pub mod records;
pub mod ref_classifier;
pub mod sampling;
pub mod sources;
pub mod tokenize;
pub mod tokenizer;
pub mod train;

use llamaflow_pipeline::StageRegistry;

/// Every stage type llamaflow knows, by its `type = "..."` name.
pub fn registry() -> StageRegistry {
    let mut registry = StageRegistry::default();
    registry.register(Box::new(sources::c4::C4Factory));
    registry.register(Box::new(sources::commoncrawl::CommonCrawlFactory));
    registry.register(Box::new(sources::github::GithubFactory));
    registry.register(Box::new(sources::wikipedia::WikipediaFactory));
    registry.register(Box::new(sources::books::BooksFactory));
    registry.register(Box::new(sources::arxiv::ArxivFactory));
    registry.register(Box::new(sources::stackexchange::StackExchangeFactory));
    registry.register(Box::new(quality_lm::QualityLmFactory));
    registry.register(Box::new(ref_classifier::RefClassifierFactory));
    registry.register(Box::new(cc_quality::CcQualityFactory));
    registry.register(Box::new(c4_filter::C4FilterFactory));
    registry.register(Box::new(dedup::DedupFactory));
    registry.register(Box::new(tokenizer::TokenizerFactory));
    registry.register(Box::new(tokenize::TokenizeFactory));
    registry.register(Box::new(train::TrainFactory));
    registry
}
