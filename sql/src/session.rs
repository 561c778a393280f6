//! Builds the DataFusion `SessionContext` every stage and the `sql` command use,
//! so memory limits, parallelism and object stores are set in one place.

use std::sync::Arc;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::registry::UdfRegistry;

/// Errors raised while building a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// DataFusion refused the runtime configuration.
    #[error("cannot build the DataFusion runtime: {0}")]
    Runtime(#[from] datafusion::error::DataFusionError),
}

/// How many of the largest memory consumers an out-of-memory error names.
const TOP_CONSUMERS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(5).expect("5 is not zero");

/// Settings for a DataFusion session: parallelism, memory and the UDFs to expose.
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    target_partitions: usize,
    memory_limit: Option<usize>,
    batch_size: usize,
    udfs: UdfRegistry,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: None,
            batch_size: 8192,
            udfs: crate::udfs::builtin(),
        }
    }
}

impl SessionBuilder {
    /// How many partitions plans are split into (usually `--jobs`).
    pub fn target_partitions(mut self, n: usize) -> Self {
        self.target_partitions = n.max(1);
        self
    }

    /// Bytes DataFusion may hold for sorts, joins and aggregates before spilling.
    pub fn memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Rows per record batch inside DataFusion plans.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// The UDFs to register in every session this builder makes.
    pub fn udfs(mut self, udfs: UdfRegistry) -> Self {
        self.udfs = udfs;
        self
    }

    /// Builds the session.
    pub fn build(&self) -> Result<SessionContext, SessionError> {
        let config = SessionConfig::new()
            .with_target_partitions(self.target_partitions)
            .with_batch_size(self.batch_size)
            .with_information_schema(true);
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = self.memory_limit {
            // Tracked: a query over the limit names the operators holding the memory.
            let pool = TrackConsumersPool::new(FairSpillPool::new(limit), TOP_CONSUMERS);
            runtime = runtime.with_memory_pool(Arc::new(pool));
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        self.udfs.register_into(&ctx);
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn session_runs_a_query_within_its_memory_limit() {
        let ctx = SessionBuilder::default()
            .target_partitions(2)
            .memory_limit(Some(64 << 20))
            .build()
            .unwrap();
        let batches = ctx
            .sql("SELECT 40 + 2 AS answer")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("42"), "{text}");
        assert_eq!(ctx.state().config().target_partitions(), 2);
    }
}
