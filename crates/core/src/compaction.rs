//! Settling in the background: every so often, the days that have settled
//! move into columnar segments, and late records that grew to a sixteenth
//! of their day are folded into it (docs/ARCHITECTURE.md, "the columnar
//! engine"). Each day is its own short step, so ingest and queries go on.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now;
use crate::event_store::{CompactionPlan, EventStore};

/// When days settle and how often the compactor looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settling {
    /// Whole UTC days a day stays hot after it ends.
    pub settle_days: u32,
    /// How long a day must have had no new record before it settles.
    pub quiet: Duration,
    /// How often the compactor runs.
    pub every: Duration,
}

impl Settling {
    /// Days settle `settle_days` after they end, once quiet for `quiet`;
    /// the compactor runs every `every`.
    pub fn new(settle_days: u32, quiet: Duration, every: Duration) -> Self {
        Settling {
            settle_days,
            quiet,
            every,
        }
    }

    /// The plan of a run at `now`.
    pub fn plan(&self, now: crate::clock::Millis) -> CompactionPlan {
        let quiet = i64::try_from(self.quiet.as_millis()).unwrap_or(i64::MAX);
        CompactionPlan::at(now, self.settle_days, quiet)
    }
}

/// Compacts now and every `settling.every` until `stop` turns true.
pub async fn run_compaction(
    events: Arc<dyn EventStore>,
    settling: Settling,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match events.compact(&settling.plan(now())).await {
            Ok(done) if done.segments > 0 => {
                tracing::info!(segments = done.segments, rows = done.rows, "settled days compacted");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction failed; it runs again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settling.every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
