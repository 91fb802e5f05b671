//! Where events live: the [`EventStore`] trait, its contract, and
//! [`batch`], the one algorithm that writes a batch in every backend.
//!
//! The backends are in [`crate::backend`]; each passes the `conformance`
//! suite (feature `test-support`), and a new backend is done when it does
//! too.

pub mod batch;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

use std::fmt;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use ses_export_model::types::BounceType;

use crate::Scope;
use crate::clock::{Interval, Millis};
use crate::event::{EventKind, SesEvent};
use crate::insight::InsightRecord;
pub use crate::vdm::DailyCounts;

pub use batch::{BatchTxn, MessageRow, PlannedEvent, apply_batch, apply_batch_now, recount};

/// A stream of insight records in export order.
pub type InsightStream = BoxStream<'static, Result<InsightRecord, StoreError>>;

/// Which records a scan keeps, decided on their fields.
#[derive(Clone)]
pub struct RecordFilter {
    keep: Judge,
    reads_text: bool,
    before_text: Option<Judge>,
    filters: Option<std::sync::Arc<(crate::filter::InsightFilter, crate::filter::InsightFilter)>>,
}

/// A decision on a row's fields.
type Judge = std::sync::Arc<dyn Fn(crate::filter::FilterFields<'_>) -> bool + Send + Sync>;

impl RecordFilter {
    /// A filter that keeps what `keep` accepts. `reads_text` says whether
    /// `keep` looks at the message's text (from address, subject); when it
    /// does not, a backend may judge rows without their text and fetch it
    /// only for the records it keeps.
    pub fn new(
        reads_text: bool,
        keep: impl Fn(crate::filter::FilterFields<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        RecordFilter {
            keep: std::sync::Arc::new(keep),
            reads_text,
            before_text: None,
            filters: None,
        }
    }

    /// Says that `keep` refuses every row that `include` does not include
    /// or `exclude` excludes (it may refuse more): a columnar backend then
    /// judges those filters' text once per distinct value instead of once
    /// per row.
    pub fn with_filters(
        mut self,
        include: crate::filter::InsightFilter,
        exclude: crate::filter::InsightFilter,
    ) -> Self {
        self.filters = Some(std::sync::Arc::new((include, exclude)));
        self
    }

    /// The Include and Exclude given by [`with_filters`](Self::with_filters).
    pub fn filters(&self) -> Option<(&crate::filter::InsightFilter, &crate::filter::InsightFilter)> {
        self.filters.as_deref().map(|(include, exclude)| (include, exclude))
    }

    /// Adds a check for rows judged before their text is read: `false`
    /// when the filter would refuse the row whatever its text is. A
    /// backend may then read the text only for rows that pass it.
    pub fn with_check_before_text(
        mut self,
        check: impl Fn(crate::filter::FilterFields<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.before_text = Some(std::sync::Arc::new(check));
        self
    }

    /// Whether a row whose text is not read yet can still be kept: the
    /// check before text when there is one; without one, only a filter
    /// that does not read text can tell.
    pub fn may_keep_before_text(&self, fields: crate::filter::FilterFields<'_>) -> Option<bool> {
        match (&self.before_text, self.reads_text) {
            (Some(check), _) => Some(check(fields)),
            (None, false) => Some((self.keep)(fields)),
            (None, true) => None,
        }
    }

    /// Whether a backend can judge rows before reading their text.
    pub fn judges_before_text(&self) -> bool {
        self.before_text.is_some() || !self.reads_text
    }

    /// Whether the whole filter keeps a row.
    pub fn keeps(&self, fields: crate::filter::FilterFields<'_>) -> bool {
        (self.keep)(fields)
    }

    /// Whether the filter looks at a message's text (from address,
    /// subject), so a backend must read it before [`keeps`](Self::keeps).
    pub fn reads_text(&self) -> bool {
        self.reads_text
    }
}

impl fmt::Debug for RecordFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordFilter")
            .field("reads_text", &self.reads_text)
            .field("checks_before_text", &self.before_text.is_some())
            .finish_non_exhaustive()
    }
}

/// Keeps SES events per account and answers the queries built on them.
///
/// Contract, for every backend:
/// - `ingest` is atomic per call: all of the batch is kept, or (on error)
///   none of it. It is idempotent (an event already kept, by
///   [`SesEvent::id`], counts as a duplicate and changes nothing) and
///   order-independent (a Delivery before its Send ends the same).
/// - Reads see only the caller's account.
/// - `scan_insights` streams without holding the whole result in memory, in
///   the order of [`InsightRecord::sort_key`] (text by byte value).
/// - `daily_counts` equals a recount over the records, whatever mix of
///   precomputed rollups and recounting the backend uses.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Keeps a batch of events for `account`.
    async fn write_batch(&self, account: &Scope, events: Vec<SesEvent>) -> Result<BatchOutcome, StoreError>;

    /// The insight records whose send time is in `interval`.
    fn scan_insights(&self, account: &Scope, interval: Interval) -> InsightStream;

    /// Like [`scan_insights`](Self::scan_insights), keeping only the
    /// records `keep` accepts, counting in `control.scanned` every record
    /// of the interval looked at, and ending early once `control.stop` is
    /// set (checked at least every [`SCAN_CHECK_ROWS`] rows read, kept or
    /// not). A backend may decide on a stored row's fields before it builds
    /// the record, which is what makes this cheaper.
    fn scan_insights_where(
        &self,
        account: &Scope,
        interval: Interval,
        keep: RecordFilter,
        control: std::sync::Arc<ScanControl>,
    ) -> InsightStream {
        use futures_util::StreamExt;
        let go_on = std::sync::Arc::clone(&control);
        let records = self
            .scan_insights(account, interval)
            .take_while(move |_| std::future::ready(!go_on.stopped()))
            .filter(move |record| {
                let kept = match record {
                    Ok(record) => {
                        control.scanned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        keep.keeps(record.filter_fields())
                    }
                    Err(_) => true,
                };
                std::future::ready(kept)
            });
        Box::pin(records)
    }

    /// One message with its recipients and their events, for
    /// `GetMessageInsights`; `None` when the account has no such message.
    async fn message_insights(&self, account: &Scope, message_id: &str) -> Result<Option<MessageDetail>, StoreError>;

    /// Metric counts of single-recipient messages sent in `interval`, per UTC
    /// day and dimension values, merged (see [`crate::vdm::merge_daily`]).
    async fn daily_counts(&self, account: &Scope, interval: Interval) -> Result<Vec<DailyCounts>, StoreError>;

    /// Retention: deletes, oldest first, up to `max_messages` messages of
    /// any account sent before `before` (a UTC day's start), with their
    /// events and insight records, in one atomic step; once no such message
    /// is left, also the rollups of the days before `before`. Returns how
    /// many messages it deleted. Each call is short, so ingest goes on
    /// between calls.
    async fn expire(&self, before: Millis, max_messages: usize) -> Result<u64, StoreError>;

    /// The bounce and complaint counts over `scope`'s latest `sends`
    /// eligible records (one recipient, not the mailbox simulator), newest
    /// first by send time: AWS's reputation over a representative volume.
    async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, StoreError>;

    /// Every scope that holds data.
    async fn scopes(&self) -> Result<Vec<Scope>, StoreError>;

    /// Moves the records of settled days into columnar segments, and folds
    /// into a day's segment the late records it gathered, as `plan` says
    /// (docs/ARCHITECTURE.md, "the columnar engine"). What every read
    /// returns is the same before and after. A store that keeps no
    /// segments has nothing to move.
    async fn compact(&self, plan: &CompactionPlan) -> Result<Compacted, StoreError> {
        let _ = plan;
        Ok(Compacted::default())
    }

    /// Makes what is stored self-contained and durable for a clean exit;
    /// the store may still be used afterwards.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the database answers (a trivial query), for readiness.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Which days a compaction settles and when it folds late records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Days that end before this (a UTC day's start) may settle.
    pub settled_before: Millis,
    /// ... once no event has arrived for them since this time.
    pub quiet_since: Millis,
    /// A settled day's late records are folded into its segment once they
    /// number at least 1/`fold_ratio` of its rows (`u64::MAX`: at once;
    /// 0: never).
    pub fold_ratio: u64,
}

impl CompactionPlan {
    /// What the server does at `now`: days end `settle_days` whole days
    /// before today's, quiet for `quiet_millis`; late records folded at 1/16.
    pub fn at(now: Millis, settle_days: u32, quiet_millis: i64) -> Self {
        CompactionPlan {
            settled_before: crate::clock::day_start(crate::clock::day_of(now) - i64::from(settle_days)),
            quiet_since: now - quiet_millis,
            fold_ratio: 16,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Segments written (a day settled, or its late records folded in).
    pub segments: u64,
    /// Rows those segments hold.
    pub rows: u64,
}

/// A compaction round's days, one at a time: a day that fails (a full
/// disk, the bucket away) is logged and stays in the row store, the
/// others still settle; the round fails only when no day compacted.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Default)]
pub(crate) struct CompactionRound {
    done: Compacted,
    failed: Option<StoreError>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl CompactionRound {
    pub(crate) fn record(&mut self, scope: &str, day: i64, result: Result<Compacted, StoreError>) {
        match result {
            Ok(step) => {
                self.done.segments += step.segments;
                self.done.rows += step.rows;
            }
            Err(e) => {
                tracing::warn!(scope, day, error = %e, "a day could not be compacted; it stays in the row store");
                self.failed.get_or_insert(e);
            }
        }
    }

    /// What the round did so far.
    #[cfg(feature = "postgres")]
    pub(crate) fn done(&self) -> Compacted {
        self.done
    }

    pub(crate) fn finish(self) -> Result<Compacted, StoreError> {
        match self.failed {
            Some(e) if self.done.segments == 0 => Err(e),
            _ => Ok(self.done),
        }
    }
}

/// A scan checks [`ScanControl::stop`] at least this often, in rows read.
pub const SCAN_CHECK_ROWS: u64 = 10_000;

/// A scan's progress, and how its reader tells it to stop.
#[derive(Debug, Default)]
pub struct ScanControl {
    /// Rows of the interval looked at.
    pub scanned: std::sync::atomic::AtomicU64,
    /// Set (by a cancel, a lost lease, a shutdown) to end the scan early.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ScanControl {
    /// A control that stops when `stop` is set.
    pub fn new(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        ScanControl {
            scanned: Default::default(),
            stop,
        }
    }

    /// Whether the scan should end now.
    pub fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What one `ingest` call kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events kept for the first time.
    pub accepted: u64,
    /// Events that were already kept.
    pub duplicates: u64,
}

/// A message as `GetMessageInsights` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDetail {
    /// SES's message id.
    pub message_id: String,
    /// The first From address.
    pub from_email_address: Option<String>,
    /// `mail.commonHeaders.subject`.
    pub subject: Option<String>,
    /// Every tag value, one pair each, in name order.
    pub tags: Vec<(String, String)>,
    /// One entry per recipient, by address.
    pub recipients: Vec<RecipientDetail>,
}

/// One recipient of a message and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientDetail {
    /// The recipient's address.
    pub destination: String,
    /// The mailbox provider, from the address's domain.
    pub isp: String,
    /// How many recipients the message had (which events AWS shows depends
    /// on it).
    pub recipient_count: u32,
    /// In time order.
    pub events: Vec<StoredEvent>,
}

/// One event as kept for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event's time.
    pub timestamp: Millis,
    /// The event's type.
    pub kind: EventKind,
    /// `bounce.bounceType` (Permanent, Transient, Undetermined) of a Bounce.
    pub bounce_type: Option<BounceType>,
    /// `bounce.bounceSubType` (`General`, `OnAccountSuppressionList`, ...).
    pub bounce_sub_type: Option<String>,
    /// The receiving server's answer for this recipient.
    pub diagnostic_code: Option<String>,
    /// `complaint.complaintSubType`: `OnAccountSuppressionList` or none.
    pub complaint_sub_type: Option<String>,
    /// `complaint.complaintFeedbackType` from the ISP's report (`abuse`,
    /// `not-spam`, ...).
    pub complaint_feedback_type: Option<String>,
}

/// Why a store could not do what was asked. Backends map their own errors
/// into these.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store is out of room (a memory limit, a full disk). Nothing of
    /// the failed call was kept.
    Full {
        /// The backend's name (`memory`, `SQLite`, `PostgreSQL`).
        backend: &'static str,
        /// What ran out, in the backend's words.
        detail: String,
    },
    /// Anything else the backend reports.
    Generic {
        /// The backend's name.
        backend: &'static str,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full { backend, detail } => write!(f, "{backend} store is full: {detail}"),
            StoreError::Generic { backend, source } => write!(f, "{backend} store: {source}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Full { .. } => None,
            StoreError::Generic { source, .. } => Some(source.as_ref()),
        }
    }
}
