//! Source stages: each reads one raw format into the document columns.

pub mod c4;
pub mod github;
pub mod wikipedia;
