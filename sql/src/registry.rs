//! The UDF registry: stages add the functions their artifacts make possible
//! (a tokenizer's `token_count`, a language model's `lang`), and every session
//! built from the registry, the `sql` command's included, gets all of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

/// A named set of scalar and aggregate UDFs to register in DataFusion sessions.
#[derive(Debug, Clone, Default)]
pub struct UdfRegistry {
    scalars: BTreeMap<String, Arc<ScalarUDF>>,
    aggregates: BTreeMap<String, Arc<AggregateUDF>>,
}

impl UdfRegistry {
    /// Adds (or replaces) a scalar UDF under its own name.
    pub fn add_scalar(&mut self, udf: ScalarUDF) {
        self.scalars.insert(udf.name().to_string(), Arc::new(udf));
    }

    /// Adds (or replaces) an aggregate UDF under its own name.
    pub fn add_aggregate(&mut self, udaf: AggregateUDF) {
        self.aggregates.insert(udaf.name().to_string(), Arc::new(udaf));
    }

    /// Names of every registered function, sorted.
    pub fn names(&self) -> Vec<String> {
        self.scalars.keys().chain(self.aggregates.keys()).cloned().collect()
    }

    /// Registers every function in `ctx`.
    pub fn register_into(&self, ctx: &SessionContext) {
        for udf in self.scalars.values() {
            ctx.register_udf(udf.as_ref().clone());
        }
        for udaf in self.aggregates.values() {
            ctx.register_udaf(udaf.as_ref().clone());
        }
    }
}
