//! Retention: events, insight records and rollups of messages sent longer
//! ago than `--event-retention-days`, and managed export files of jobs that
//! ended longer ago than `--export-retention-days` (and staging objects
//! crashed runs left, as old), are deleted in the background, oldest first,
//! in short steps, so ingest and the API go on meanwhile. Nothing else ever
//! deletes data.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{DAY_MILLIS, Millis, day_of, day_start, now};
use crate::destination::Storage;
use crate::event_store::EventStore;
use crate::job::JobStore;

/// Messages deleted per step (one transaction each).
pub const EXPIRE_STEP: usize = 5_000;
/// Jobs whose files are deleted per step.
const EXPORT_STEP: usize = 100;
/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// How long data is kept; 0 keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Days a message's events are kept, counted in whole UTC days of its
    /// send time: with 7, messages sent on the 1st go when the 9th begins.
    pub event_days: u32,
    /// Days a managed export file is kept after its job ended.
    pub export_days: u32,
}

impl Retention {
    /// Events kept `event_days`, export files `export_days` (0: forever).
    pub fn new(event_days: u32, export_days: u32) -> Self {
        Retention {
            event_days,
            export_days,
        }
    }
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// Messages deleted, with their records and events.
    pub messages: u64,
    /// Managed export files deleted.
    pub export_files: u64,
    /// Staging objects of crashed runs, as old as an expired export.
    pub staging_files: u64,
}

/// Sweeps now and every [`SWEEP_EVERY`] until `stop` turns true.
pub async fn run_retention(
    events: Arc<dyn EventStore>,
    jobs: Arc<dyn JobStore>,
    storage: Storage,
    retention: Retention,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if retention == Retention::default() {
        return;
    }
    loop {
        match sweep(&*events, &*jobs, &storage, retention, now()).await {
            Ok(swept) if swept != Swept::default() => {
                tracing::info!(
                    messages = swept.messages,
                    export_files = swept.export_files,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; it runs again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One sweep as of `now`.
pub async fn sweep(
    events: &dyn EventStore,
    jobs: &dyn JobStore,
    storage: &Storage,
    retention: Retention,
    now: Millis,
) -> Result<Swept, String> {
    let mut swept = Swept::default();
    if retention.event_days > 0 {
        let before = day_start(day_of(now) - i64::from(retention.event_days));
        loop {
            let deleted = events.expire(before, EXPIRE_STEP).await.map_err(|e| e.to_string())?;
            swept.messages += deleted;
            if deleted < EXPIRE_STEP as u64 {
                break;
            }
            // Let ingest and queries in between steps.
            tokio::task::yield_now().await;
        }
    }
    if retention.export_days > 0 {
        let before = now - i64::from(retention.export_days) * DAY_MILLIS;
        loop {
            let ended = jobs
                .ended_with_output(before, EXPORT_STEP)
                .await
                .map_err(|e| e.to_string())?;
            for job in &ended {
                let Some(key) = &job.output_key else { continue };
                let path = object_store::path::Path::from(key.as_str());
                // The file first, then the record: a failed delete is tried
                // again on the next sweep.
                match storage.managed().store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(format!("deleting export {key}: {e}")),
                }
                jobs.clear_output(&job.account, &job.job_id)
                    .await
                    .map_err(|e| e.to_string())?;
                swept.export_files += 1;
            }
            if ended.len() < EXPORT_STEP {
                break;
            }
        }
        swept.staging_files = sweep_staging(storage, before).await?;
    }
    Ok(swept)
}

/// Deletes the staging objects (`*.partial`) in managed storage last
/// written before `before`: what runs that crashed mid-write left. A run in
/// progress rewrites its staging object far more often than that.
async fn sweep_staging(storage: &Storage, before: Millis) -> Result<u64, String> {
    use futures_util::StreamExt;
    let store = &storage.managed().store;
    let mut listing = store.list(None);
    let mut old = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| format!("listing managed exports: {e}"))?;
        if meta.location.as_ref().ends_with(".partial") && meta.last_modified.timestamp_millis() < before.0 {
            old.push(meta.location);
        }
    }
    drop(listing);
    for location in &old {
        match store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("deleting {location}: {e}")),
        }
    }
    Ok(old.len() as u64)
}
