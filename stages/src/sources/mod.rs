//! Source stages: each reads one raw format into the document columns.

pub mod arxiv;
pub mod books;
pub mod c4;
pub mod commoncrawl;
pub mod github;
pub mod stackexchange;
pub mod wikipedia;
