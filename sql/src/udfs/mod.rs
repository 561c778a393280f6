//! llamaflow's generic UDFs, one `ScalarUDFImpl` a file; [`builtin`] lists them.

pub mod text_hash;

use crate::registry::UdfRegistry;

/// A registry holding every generic UDF (stages add theirs on top).
pub fn builtin() -> UdfRegistry {
    let mut registry = UdfRegistry::default();
    registry.add_scalar(text_hash::TextHash::udf(false));
    registry.add_scalar(text_hash::TextHash::udf(true));
    registry
}
