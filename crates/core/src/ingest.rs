//! Ingestion of record files and bodies into an [`EventStore`]: parsing on
//! a blocking thread, storing batch by batch, and a report of what was
//! kept, what was already there and which lines were bad, and why.

use std::io::BufRead;

use crate::event::{EventReader, LineError, SesEvent};
use crate::event_store::{BatchOutcome, EventStore, StoreError};
use crate::{Region, Scope};

/// Events per stored batch (each batch is one transaction).
pub const DEFAULT_BATCH: usize = 5000;
/// Bad lines listed in a report; all of them are counted.
pub const MAX_LISTED_ERRORS: usize = 1000;
/// Regions one ingest may keep events in (SES has fewer); an event naming
/// one more is a rejected line.
pub const MAX_REGIONS: usize = 32;

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

/// What the parser hands the writer: a batch of events and the bad lines
/// read with it. Only the first [`MAX_LISTED_ERRORS`] bad lines of an
/// ingest are kept with their reasons; the rest are counted in `unlisted`,
/// so a body of nothing but bad lines costs no more memory than a good one.
struct Parsed {
    events: Vec<SesEvent>,
    errors: Vec<LineError>,
    unlisted: u64,
    failed: Option<std::io::Error>,
}

/// Bad lines as the parser meets them: listed up to the cap, then counted.
#[derive(Default)]
struct BadLines {
    errors: Vec<LineError>,
    listed: usize,
    unlisted: u64,
}

impl BadLines {
    fn note(&mut self, line: u64, reason: String) {
        if self.listed < MAX_LISTED_ERRORS {
            self.listed += 1;
            self.errors.push(LineError { line, reason });
        } else {
            self.unlisted += 1;
        }
    }

    /// The batch's events with the bad lines met since the last batch.
    fn batch(&mut self, events: Vec<SesEvent>, failed: Option<std::io::Error>) -> Parsed {
        Parsed {
            events,
            errors: std::mem::take(&mut self.errors),
            unlisted: std::mem::take(&mut self.unlisted),
            failed,
        }
    }
}

/// Reads records from `input` (see [`crate::event::open_events`] for gzip)
/// and keeps them for `carrier`'s account, `batch_size` events per
/// transaction. Each event is kept in the region SES sent it from: the one
/// its `mail.sourceArn` names, else `carrier`'s region (where the request,
/// topic or intake key that brought it belongs; see [`event_region`]).
/// `on_stored` sees each stored part of a batch: its region and outcome.
pub async fn ingest<R: BufRead + Send + 'static>(
    store: &dyn EventStore,
    carrier: &Scope,
    input: R,
    batch_size: usize,
    on_stored: &(dyn Fn(&Region, &BatchOutcome) + Sync),
) -> Result<IngestReport, IngestError> {
    let batch_size = batch_size.max(1);
    // One batch parsed ahead of the one being written: enough to keep both
    // busy, and what an ingest holds stays two batches whatever its size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(1);
    let carrier_region = carrier.region().clone();
    let parser = tokio::task::spawn_blocking(move || {
        let mut events = Vec::with_capacity(batch_size);
        let mut bad = BadLines::default();
        // Each region of a batch is a transaction of its own: how many one
        // body may name is bounded, whatever its sourceArns say.
        let mut regions = std::collections::HashSet::from([carrier_region.clone()]);
        for line in EventReader::new(input) {
            match line {
                Ok(line) => match line.result {
                    Ok(event) => {
                        let region = event_region(&event, &carrier_region);
                        if regions.len() >= MAX_REGIONS && !regions.contains(&region) {
                            bad.note(
                                line.line,
                                format!("the body names more than {MAX_REGIONS} regions in its events' sourceArn"),
                            );
                        } else {
                            regions.insert(region);
                            events.push(event);
                        }
                    }
                    Err(reason) => bad.note(line.line, reason),
                },
                Err(e) => {
                    // What was read before the break is kept, then the
                    // failure is reported.
                    let _ = tx.blocking_send(bad.batch(std::mem::take(&mut events), Some(e)));
                    return;
                }
            }
            if events.len() >= batch_size {
                let batch = std::mem::replace(&mut events, Vec::with_capacity(batch_size));
                if tx.blocking_send(bad.batch(batch, None)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.blocking_send(bad.batch(events, None));
    });

    let mut report = IngestReport::default();
    while let Some(parsed) = rx.recv().await {
        report.rejected += parsed.errors.len() as u64 + parsed.unlisted;
        report.errors.extend(parsed.errors);
        for (scope, events) in by_scope(carrier, parsed.events) {
            match store.write_batch(&scope, events).await {
                Ok(outcome) => {
                    report.accepted += outcome.accepted;
                    report.duplicates += outcome.duplicates;
                    on_stored(scope.region(), &outcome);
                }
                Err(e) => {
                    return Err(IngestError {
                        report,
                        cause: IngestFailure::Store(e),
                    });
                }
            }
        }
        if let Some(e) = parsed.failed {
            return Err(IngestError {
                report,
                cause: IngestFailure::Read(e),
            });
        }
    }
    // The parser only ends early when this side stopped listening.
    let _ = parser.await;
    Ok(report)
}

/// The region an event belongs to: the one in its `mail.sourceArn`
/// (`arn:aws:ses:REGION:ACCOUNT:identity/...`, where SES sent it), else
/// `carrier`'s.
pub fn event_region(event: &SesEvent, carrier: &Region) -> Region {
    event
        .mail
        .source_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(3))
        .and_then(|region| region.parse().ok())
        .unwrap_or_else(|| carrier.clone())
}

/// A batch's events split by the scope each belongs to, in their order.
fn by_scope(carrier: &Scope, events: Vec<SesEvent>) -> Vec<(Scope, Vec<SesEvent>)> {
    let mut parts: Vec<(Scope, Vec<SesEvent>)> = Vec::new();
    for event in events {
        let region = event_region(&event, carrier.region());
        match parts.iter_mut().find(|(scope, _)| *scope.region() == region) {
            Some((_, part)) => part.push(event),
            None => parts.push((Scope::new(carrier.account().clone(), region), vec![event])),
        }
    }
    parts
}
