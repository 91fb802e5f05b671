//! The ingest algorithm, once for every backend: a batch becomes event
//! rows, insight-record updates and rollup deltas, applied through the
//! backend's [`BatchTxn`] inside its transaction.

use std::collections::{BTreeSet, HashMap};

use ses_export_model::types::BounceType;

use super::{BatchOutcome, StoreError};
use crate::clock::{Millis, day_of};
use crate::event::{EventId, EventKind, SesEvent};
use crate::insight::{EventFlags, InsightRecord, is_simulator};
use crate::vdm::{DailyCounts, DimensionValues, Lesson, MetricCounts};

/// One event for one recipient, ready to be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// The event's id ([`SesEvent::id`]); with `recipient`, the row's key.
    pub id: EventId,
    /// The message the event is about.
    pub message_id: String,
    /// When that message was sent (`mail.timestamp`): its UTC day leads a
    /// time-first store's keys.
    pub send_timestamp: Millis,
    /// The recipient this row is for (an event naming several recipients
    /// becomes a row each).
    pub recipient: String,
    /// The event's type.
    pub kind: EventKind,
    /// The event's time.
    pub timestamp: Millis,
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

impl PlannedEvent {
    /// The flag bit this event sets on its record: the one decision of what
    /// an event means, for ingest and for a replay of kept events alike.
    pub fn bit(&self) -> EventFlags {
        // A bounce's subtype when the event is a bounce, else a complaint's.
        let sub_type = match &self.bounce_type {
            Some(_) => self.bounce_sub_type.as_deref(),
            None => self.complaint_sub_type.as_deref(),
        };
        EventFlags::of(self.kind, self.bounce_type.as_ref(), sub_type)
    }
}

/// What is kept once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// SES's message id, the row's key.
    pub message_id: String,
    /// When the message was sent (`mail.timestamp`).
    pub send_timestamp: Millis,
    /// The first From address.
    pub from_email_address: Option<String>,
    /// `mail.commonHeaders.subject`.
    pub subject: Option<String>,
    /// Every tag value, one pair each.
    pub tags: Vec<(String, String)>,
}

/// The storage steps of an ingest, inside one transaction of the backend,
/// each over a whole batch: a backend answers each with one statement (or a
/// few) when it can. [`apply_batch`] is the only caller, with the concrete
/// type, so a backend's futures are `Send` exactly when its transaction is.
#[allow(async_fn_in_trait)]
pub trait BatchTxn {
    /// Keeps each event unless its (message, id, recipient) is kept already
    /// or comes earlier in `events`; for each, whether it was new.
    async fn insert_events(&mut self, events: &[PlannedEvent]) -> Result<Vec<bool>, StoreError>;
    /// Keeps each message unless it is kept already.
    async fn insert_messages(&mut self, messages: &[MessageRow]) -> Result<(), StoreError>;
    /// For each record, the flags of the stored record with its key, if
    /// there is one.
    async fn record_flags(
        &mut self,
        records: &[(InsightRecord, EventFlags)],
    ) -> Result<Vec<Option<EventFlags>>, StoreError>;
    /// Stores each record (with its flags), inserting it or, when it
    /// existed, updating its flags.
    async fn put_records(&mut self, records: &[(InsightRecord, bool)]) -> Result<(), StoreError>;
    /// Adds each delta to the rollup of its day and dimension values.
    async fn add_rollups(&mut self, rollups: &[DailyCounts]) -> Result<(), StoreError>;
    /// Keeps the account's lessons (once each; lessons are never forgotten).
    async fn learn(&mut self, lessons: &[(Lesson, String)]) -> Result<(), StoreError>;
}

/// Applies a batch through `txn`: the one ingest driver of every backend.
/// The caller commits when this returns `Ok`, and rolls back otherwise.
pub async fn apply_batch<T: BatchTxn + ?Sized>(txn: &mut T, events: &[SesEvent]) -> Result<BatchOutcome, StoreError> {
    let planned = plan_events(events);
    let new_rows = txn.insert_events(&planned.rows).await?;
    let folded = fold_new_events(events, &planned, &new_rows);
    if !folded.messages.is_empty() {
        txn.insert_messages(&folded.messages).await?;
    }
    write_back(txn, folded.changes).await?;
    Ok(folded.outcome)
}

/// Replays kept events through the same steps as [`apply_batch`], for a
/// migration that changes what events mean: each row of `kept` is a stored
/// event with the record it belongs to. The caller clears what events
/// derive first (records' flags to none, no rollups, nothing learned);
/// replaying the store's events then, in chunks of any size, leaves what
/// ingesting them afresh would.
pub async fn replay<T: BatchTxn + ?Sized>(
    txn: &mut T,
    kept: &[(PlannedEvent, InsightRecord)],
) -> Result<(), StoreError> {
    let mut touched = Touched::default();
    for (row, record) in kept {
        touched.add(row, || InsightRecord {
            flags: EventFlags::default(),
            ..record.clone()
        });
    }
    write_back(txn, touched.finish()).await
}

/// Steps 3 and 4 of a batch: merges what the touched records gain with
/// their stored flags and writes the records, rollup deltas and lessons.
async fn write_back<T: BatchTxn + ?Sized>(txn: &mut T, changes: Changes) -> Result<(), StoreError> {
    let Changes { touched, lessons } = changes;
    let old = if touched.is_empty() {
        Vec::new()
    } else {
        txn.record_flags(&touched).await?
    };
    let merged = merge_flags(touched, &old);
    if !merged.records.is_empty() {
        txn.put_records(&merged.records).await?;
    }
    if !merged.rollups.is_empty() {
        txn.add_rollups(&merged.rollups).await?;
    }
    if !lessons.is_empty() {
        txn.learn(&lessons).await?;
    }
    Ok(())
}

/// Runs [`apply_batch`] for a backend whose steps never wait (memory,
/// SQLite on its own thread): it completes when first polled.
pub fn apply_batch_now<T: BatchTxn + ?Sized>(
    txn: &mut T,
    events: &[SesEvent],
    backend: &'static str,
) -> Result<BatchOutcome, StoreError> {
    now(apply_batch(txn, events), backend)
}

/// Runs a step of a backend that never waits to its end, at once.
pub fn now<T>(step: impl Future<Output = Result<T, StoreError>>, backend: &'static str) -> Result<T, StoreError> {
    use futures_util::FutureExt;
    step.now_or_never().unwrap_or_else(|| {
        Err(StoreError::Generic {
            backend,
            source: "an ingest step of a synchronous store waited".into(),
        })
    })
}

/// A batch as rows: one per event and recipient.
#[derive(Debug, Default)]
pub struct Planned {
    /// In key order (so a store's trees are walked, not jumped around in).
    pub rows: Vec<PlannedEvent>,
    /// For each row, the index of its event in the batch.
    pub event_index: Vec<usize>,
}

/// Step 1: one row per event and recipient, in key order (send day first,
/// so a time-first store walks its days in order).
pub fn plan_events(events: &[SesEvent]) -> Planned {
    let mut planned: Vec<(usize, PlannedEvent)> = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        for (recipient, diagnostic_code) in event.belongs_to() {
            planned.push((
                index,
                PlannedEvent {
                    id: event.id,
                    message_id: event.mail.message_id.clone(),
                    send_timestamp: event.mail.timestamp,
                    recipient: recipient.to_owned(),
                    kind: event.kind,
                    timestamp: event.timestamp,
                    bounce_type: event.bounce.as_ref().map(|b| b.bounce_type.clone()),
                    bounce_sub_type: event.bounce.as_ref().and_then(|b| b.bounce_sub_type.clone()),
                    diagnostic_code: diagnostic_code.map(str::to_owned),
                    complaint_sub_type: event.complaint.as_ref().and_then(|c| c.complaint_sub_type.clone()),
                    complaint_feedback_type: event.complaint.as_ref().and_then(|c| c.complaint_feedback_type.clone()),
                },
            ));
        }
    }
    planned.sort_by(|(_, a), (_, b)| {
        (day_of(a.send_timestamp), &a.message_id, a.id, &a.recipient).cmp(&(
            day_of(b.send_timestamp),
            &b.message_id,
            b.id,
            &b.recipient,
        ))
    });
    let (event_index, rows) = planned.into_iter().unzip();
    Planned { rows, event_index }
}

/// What the new events of a batch change.
#[derive(Debug)]
pub struct Folded {
    /// How many events were new and how many were kept already.
    pub outcome: BatchOutcome,
    /// Messages seen for the first time in this batch (to insert if absent).
    pub messages: Vec<MessageRow>,
    /// What the new events change.
    pub changes: Changes,
}

/// What one event, as `record` sees it, teaches about the account: an Open
/// (Click) names an open- (click-) tracked configuration set; a complaint
/// names an ISP with a feedback loop, from any message, single- or
/// multi-recipient (which ISP complains is a fact about the ISP, as for
/// Open and Click), except one from the suppression list or from a mailbox
/// simulator recipient (SPEC §5).
pub fn lesson(kind: EventKind, bit: EventFlags, record: &InsightRecord) -> Option<(Lesson, String)> {
    match kind {
        EventKind::Open => Some((Lesson::OpenTracked, record.configuration_set.clone()?)),
        EventKind::Click => Some((Lesson::ClickTracked, record.configuration_set.clone()?)),
        EventKind::Complaint if bit == EventFlags::COMPLAINT && !is_simulator(&record.destination) => {
            Some((Lesson::FeedbackLoop, record.isp.clone()))
        }
        _ => None,
    }
}

/// The flag bit of `event`, decided from the event as SES sent it (the
/// reference implementation's path; ingest decides from its rows,
/// [`PlannedEvent::bit`]).
pub fn event_bit(event: &SesEvent) -> EventFlags {
    let sub_type = match (&event.bounce, &event.complaint) {
        (Some(bounce), _) => bounce.bounce_sub_type.as_deref(),
        (None, Some(complaint)) => complaint.complaint_sub_type.as_deref(),
        (None, None) => None,
    };
    EventFlags::of(event.kind, event.bounce.as_ref().map(|b| &b.bounce_type), sub_type)
}

/// Step 2: given which planned rows were new to the store, the records they
/// touch and the bits they add; an event is a duplicate when none of its
/// rows was new.
pub fn fold_new_events(events: &[SesEvent], planned: &Planned, new_rows: &[bool]) -> Folded {
    let mut is_new = vec![false; events.len()];
    let mut touched = Touched::default();
    for ((index, row), new) in planned.event_index.iter().zip(&planned.rows).zip(new_rows) {
        if !new {
            continue;
        }
        is_new[*index] = true;
        touched.add(row, || InsightRecord::new(&events[*index].mail, &row.recipient));
    }
    let mut outcome = BatchOutcome::default();
    let mut messages = Vec::new();
    let mut messages_seen: HashMap<&str, ()> = HashMap::new();
    for (event, new) in events.iter().zip(&is_new) {
        if !new {
            outcome.duplicates += 1;
            continue;
        }
        outcome.accepted += 1;
        if messages_seen.insert(&event.mail.message_id, ()).is_none() {
            messages.push(MessageRow {
                message_id: event.mail.message_id.clone(),
                send_timestamp: event.mail.timestamp,
                from_email_address: event.mail.from.clone().or_else(|| event.mail.source.clone()),
                subject: event.mail.subject.clone(),
                tags: event
                    .mail
                    .tags
                    .iter()
                    .flat_map(|(name, values)| values.iter().map(move |v| (name.clone(), v.clone())))
                    .collect(),
            });
        }
    }
    Folded {
        outcome,
        messages,
        changes: touched.finish(),
    }
}

/// The records a batch's events touch, with the bits they add, and what
/// those events teach.
#[derive(Default)]
struct Touched<'a> {
    records: HashMap<(Millis, &'a str, &'a str), (InsightRecord, EventFlags)>,
    lessons: BTreeSet<(Lesson, String)>,
}

impl<'a> Touched<'a> {
    /// Adds `row`'s event to its record, which `record` makes the first
    /// time the record is touched.
    fn add(&mut self, row: &'a PlannedEvent, record: impl FnOnce() -> InsightRecord) {
        let bit = row.bit();
        let entry = self
            .records
            .entry((row.send_timestamp, &row.message_id, &row.recipient))
            .or_insert_with(|| (record(), EventFlags::default()));
        entry.1 = entry.1.union(bit);
        self.lessons.extend(lesson(row.kind, bit, &entry.0));
    }

    fn finish(self) -> Changes {
        let mut touched: Vec<(InsightRecord, EventFlags)> = self.records.into_values().collect();
        touched.sort_by(|a, b| a.0.sort_key().cmp(&b.0.sort_key()));
        Changes {
            touched,
            lessons: self.lessons.into_iter().collect(),
        }
    }
}

/// What events change: the records they touch, in key order, with the
/// bits they add, and what they teach, each once.
#[derive(Debug)]
pub struct Changes {
    /// Each record touched, with the bits its events add, in key order.
    pub touched: Vec<(InsightRecord, EventFlags)>,
    /// What the events teach, in order, each once.
    pub lessons: Vec<(Lesson, String)>,
}

/// What to write back.
#[derive(Debug, Default)]
pub struct Merged {
    /// Records whose flags changed, with whether they existed before.
    pub records: Vec<(InsightRecord, bool)>,
    /// Rollup deltas by day and dimension values, in key order.
    pub rollups: Vec<DailyCounts>,
}

/// Step 3: given the stored flags of each touched record (`None` for a new
/// record), the records to write and the rollup deltas: what the record now
/// counts minus what it counted before.
pub fn merge_flags(touched: Vec<(InsightRecord, EventFlags)>, old: &[Option<EventFlags>]) -> Merged {
    let mut merged = Merged::default();
    let mut rollups: HashMap<(i64, DimensionValues), MetricCounts> = HashMap::new();
    for ((mut record, added), old) in touched.into_iter().zip(old) {
        let before = old.unwrap_or_default();
        record.flags = before.union(added);
        if *old == Some(record.flags) {
            continue;
        }
        if record.counts_toward_metrics() {
            let mut delta = MetricCounts::of(record.flags);
            delta -= MetricCounts::of(before);
            if !delta.is_zero() {
                *rollups
                    .entry((day_of(record.send_timestamp), record.dimensions()))
                    .or_default() += delta;
            }
        }
        merged.records.push((record, old.is_some()));
    }
    merged.rollups = daily(rollups);
    merged
        .rollups
        .sort_by(|a, b| (a.day, &a.dimensions).cmp(&(b.day, &b.dimensions)));
    merged
}

/// Daily counts of records, computed from their flags: what rollups hold,
/// recounted (for partial days, and as the reference in tests).
pub fn recount<'a>(records: impl Iterator<Item = &'a InsightRecord>) -> Vec<DailyCounts> {
    let mut sums: HashMap<(i64, DimensionValues), MetricCounts> = HashMap::new();
    for record in records.filter(|r| r.counts_toward_metrics() && r.flags.sent()) {
        *sums
            .entry((day_of(record.send_timestamp), record.dimensions()))
            .or_default() += MetricCounts::of(record.flags);
    }
    daily(sums)
}

fn daily(sums: HashMap<(i64, DimensionValues), MetricCounts>) -> Vec<DailyCounts> {
    sums.into_iter()
        .map(|((day, dimensions), counts)| DailyCounts {
            day,
            dimensions,
            counts,
        })
        .collect()
}
