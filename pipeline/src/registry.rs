//! The stage-type registry: the one list that maps `type = "..."` to a factory.

use std::collections::BTreeMap;

use crate::stage::StageFactory;

/// Stage factories by type name.
#[derive(Default)]
pub struct StageRegistry {
    factories: BTreeMap<&'static str, Box<dyn StageFactory>>,
}

impl StageRegistry {
    /// Adds a stage type.
    pub fn register(&mut self, factory: Box<dyn StageFactory>) -> &mut Self {
        self.factories.insert(factory.type_name(), factory);
        self
    }

    /// The factory for `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&dyn StageFactory> {
        self.factories.get(type_name).map(|f| f.as_ref())
    }

    /// Every registered type name, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Each type with its one-line summary.
    pub fn summaries(&self) -> Vec<(&'static str, &'static str)> {
        self.factories.values().map(|f| (f.type_name(), f.summary())).collect()
    }
}
