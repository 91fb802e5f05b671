//! Ingestion of record files and bodies into an [`EventStore`]: parsing on
//! a blocking thread, storing batch by batch, and a report of what was
//! kept, what was already there and which lines were bad, and why.

use std::io::BufRead;

use crate::AccountId;
use crate::event::{EventReader, LineError, SesEvent};
use crate::event_store::{EventStore, StoreError};

/// Events per stored batch (each batch is one transaction).
pub const DEFAULT_BATCH: usize = 5000;
/// Bad lines listed in a report; all of them are counted.
pub const MAX_LISTED_ERRORS: usize = 1000;

pub use ses_export_model::ingest::IngestReport;

/// An ingest that stopped partway: what was kept before is kept, and
/// `report` says how much that was.
#[derive(Debug)]
pub struct IngestError {
    /// What was kept before the stop.
    pub report: IngestReport,
    /// Why it stopped.
    pub cause: IngestFailure,
}

/// Why an ingest stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum IngestFailure {
    /// The input could not be read (a broken gzip stream, a closed pipe).
    Read(std::io::Error),
    /// The store refused a batch; nothing of that batch was kept.
    Store(StoreError),
}

impl std::fmt::Display for IngestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestFailure::Read(e) => write!(f, "{e}"),
            IngestFailure::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.report.accepted + self.report.duplicates;
        match &self.cause {
            IngestFailure::Read(e) => write!(f, "reading the events failed after {kept} events: {e}"),
            IngestFailure::Store(e) => write!(f, "storing the events failed after {kept} events: {e}"),
        }
    }
}

impl std::error::Error for IngestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            IngestFailure::Read(e) => Some(e),
            IngestFailure::Store(e) => Some(e),
        }
    }
}

enum Parsed {
    Batch(Vec<SesEvent>, Vec<LineError>),
    Failed(std::io::Error, Vec<LineError>),
}

/// Reads records from `input` (see [`crate::event::open_events`] for gzip)
/// and keeps them for `account`, `batch_size` events per transaction.
/// `on_batch` sees the report after each stored batch.
pub async fn ingest<R: BufRead + Send + 'static>(
    store: &dyn EventStore,
    account: &AccountId,
    input: R,
    batch_size: usize,
    on_batch: &(dyn Fn(&IngestReport) + Sync),
) -> Result<IngestReport, IngestError> {
    let batch_size = batch_size.max(1);
    // One batch parsed ahead of the one being written: enough to keep both
    // busy, and what an ingest holds stays two batches whatever its size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(1);
    let parser = tokio::task::spawn_blocking(move || {
        let mut events = Vec::with_capacity(batch_size);
        let mut errors = Vec::new();
        for line in EventReader::new(input) {
            match line {
                Ok(line) => match line.result {
                    Ok(event) => events.push(event),
                    Err(reason) => errors.push(LineError {
                        line: line.line,
                        reason,
                    }),
                },
                Err(e) => {
                    // What was read before the break is kept, then the
                    // failure is reported.
                    let batch = std::mem::take(&mut events);
                    let _ = tx.blocking_send(Parsed::Batch(batch, std::mem::take(&mut errors)));
                    let _ = tx.blocking_send(Parsed::Failed(e, Vec::new()));
                    return;
                }
            }
            if events.len() >= batch_size {
                let batch = std::mem::replace(&mut events, Vec::with_capacity(batch_size));
                if tx
                    .blocking_send(Parsed::Batch(batch, std::mem::take(&mut errors)))
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = tx.blocking_send(Parsed::Batch(events, errors));
    });

    let mut report = IngestReport::default();
    let note_errors = |report: &mut IngestReport, errors: Vec<LineError>| {
        report.rejected += errors.len() as u64;
        let room = MAX_LISTED_ERRORS.saturating_sub(report.errors.len());
        report.errors.extend(errors.into_iter().take(room));
    };
    while let Some(parsed) = rx.recv().await {
        match parsed {
            Parsed::Batch(events, errors) => {
                note_errors(&mut report, errors);
                if !events.is_empty() {
                    match store.write_batch(account, events).await {
                        Ok(outcome) => {
                            report.accepted += outcome.accepted;
                            report.duplicates += outcome.duplicates;
                        }
                        Err(e) => {
                            return Err(IngestError {
                                report,
                                cause: IngestFailure::Store(e),
                            });
                        }
                    }
                }
                on_batch(&report);
            }
            Parsed::Failed(e, errors) => {
                note_errors(&mut report, errors);
                return Err(IngestError {
                    report,
                    cause: IngestFailure::Read(e),
                });
            }
        }
    }
    // The parser only ends early when this side stopped listening.
    let _ = parser.await;
    Ok(report)
}
