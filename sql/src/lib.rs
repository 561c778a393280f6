//! The bottom layer of llamaflow: how every stage and the `sql` command get a
//! DataFusion session, and the registry through which stages contribute UDFs.

pub mod encoder;
pub mod help;
pub mod language;
pub mod minhash;
pub mod quality;
pub mod queries;
pub mod registry;
pub mod session;
pub mod udfs;

pub use encoder::{EncoderError, Segmentation, TokenEncoder};
pub use registry::UdfRegistry;
pub use session::{SessionBuilder, SessionError};
