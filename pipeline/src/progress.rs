//! Progress of a stage: a bar (through `tracing-indicatif`) over the input
//! bytes of its pending units, with documents per second alongside.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::ProgressStyle;
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// A cloneable handle units report their progress through.
#[derive(Debug, Clone)]
pub struct Progress {
    span: Span,
    docs: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    started: Instant,
}

impl Progress {
    /// A bar for `stage` over `total_bytes` of input.
    pub fn for_stage(stage: &str, total_bytes: u64, units: usize) -> Self {
        let span = tracing::info_span!("stage", name = stage, units);
        let style = ProgressStyle::with_template(
            "{span_child_prefix}{spinner} {span_fields} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        span.pb_set_style(&style);
        span.pb_set_length(total_bytes);
        span.pb_start();
        Progress {
            span,
            docs: Arc::default(),
            bytes: Arc::default(),
            started: Instant::now(),
        }
    }

    /// A handle that reports nowhere (tests, dry runs).
    pub fn hidden() -> Self {
        Progress {
            span: Span::none(),
            docs: Arc::default(),
            bytes: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Counts `n` input bytes consumed.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.span.pb_inc(n);
    }

    /// Counts `n` records read, and refreshes the docs/s figure.
    pub fn add_docs(&self, n: u64) {
        let total = self.docs.fetch_add(n, Ordering::Relaxed) + n;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.span
            .pb_set_message(&format!("{total} docs {:.0} docs/s", total as f64 / secs));
    }

    /// Records read so far.
    pub fn docs(&self) -> u64 {
        self.docs.load(Ordering::Relaxed)
    }

    /// Input bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The tracing span the bar hangs on (enter it so logs nest under the stage).
    pub fn span(&self) -> &Span {
        &self.span
    }
}
