//! The in-memory backend: maps behind one lock. For tests and throwaway
//! servers; everything is gone when the process ends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::stream;

use crate::Scope;
use crate::clock::{Interval, Millis};
use crate::event::{EventId, SesEvent};
use crate::event_store::batch::{BatchTxn, MessageRow, PlannedEvent, apply_batch_now};
use crate::event_store::{
    BatchOutcome, EventStore, InsightStream, MessageDetail, RecipientDetail, StoreError, StoredEvent,
};
use crate::insight::{EventFlags, InsightRecord};
use crate::vdm::{DailyCounts, DimensionValues, Learned, Lesson, MetricCounts, merge_daily};

const BACKEND: &str = "memory";
/// Records handed to a scan per lock.
const SCAN_CHUNK: usize = 1024;

type RecordKey = (Millis, String, String);

#[derive(Debug, Default)]
struct AccountData {
    event_keys: HashSet<(String, EventId, String)>,
    /// Per message, each recipient's events.
    events: HashMap<String, Vec<PlannedEvent>>,
    messages: HashMap<String, MessageRow>,
    records: BTreeMap<RecordKey, InsightRecord>,
    rollups: BTreeMap<(i64, DimensionValues), MetricCounts>,
    /// What the account's events taught, with the order learned (for undo).
    lessons: BTreeSet<(Lesson, String)>,
}

/// The in-memory [`EventStore`].
#[derive(Debug, Clone, Default)]
pub struct MemoryEventStore {
    accounts: Arc<Mutex<HashMap<Scope, AccountData>>>,
    /// The most events (per recipient) the store holds; `None` for no limit.
    max_events: Option<usize>,
}

impl MemoryEventStore {
    /// An empty store without a size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that refuses, with [`StoreError::Full`], a batch that would
    /// take it past `max_events` kept events (counted per recipient).
    pub fn with_max_events(max_events: usize) -> Self {
        MemoryEventStore {
            max_events: Some(max_events),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, AccountData>> {
        // A panic while holding the lock cannot leave a half-applied batch
        // (batches roll back through their undo log), so the data is sound.
        self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What to undo if a batch fails partway.
enum Undo {
    Event((String, EventId, String)),
    Message(String),
    Record(RecordKey, Option<InsightRecord>),
    Rollup((i64, DimensionValues), MetricCounts),
    Lesson((Lesson, String)),
}

struct MemoryTxn<'a> {
    data: &'a mut AccountData,
    total_events: usize,
    max_events: Option<usize>,
    undo: Vec<Undo>,
}

impl MemoryTxn<'_> {
    fn rollback(self) {
        for step in self.undo.into_iter().rev() {
            match step {
                Undo::Event(key) => {
                    self.data.event_keys.remove(&key);
                    if let Some(list) = self.data.events.get_mut(&key.0) {
                        list.retain(|e| (e.id, &e.recipient) != (key.1, &key.2));
                    }
                }
                Undo::Message(id) => {
                    self.data.messages.remove(&id);
                }
                Undo::Record(key, Some(old)) => {
                    self.data.records.insert(key, old);
                }
                Undo::Record(key, None) => {
                    self.data.records.remove(&key);
                }
                Undo::Rollup(key, delta) => {
                    if let Some(counts) = self.data.rollups.get_mut(&key) {
                        *counts -= delta;
                    }
                }
                Undo::Lesson(lesson) => {
                    self.data.lessons.remove(&lesson);
                }
            }
        }
    }
}

fn record_key(record: &InsightRecord) -> RecordKey {
    (
        record.send_timestamp,
        record.message_id.clone(),
        record.destination.clone(),
    )
}

impl MemoryTxn<'_> {
    fn insert_event(&mut self, event: &PlannedEvent) -> Result<bool, StoreError> {
        let key = (event.message_id.clone(), event.id, event.recipient.clone());
        if self.data.event_keys.contains(&key) {
            return Ok(false);
        }
        if self.max_events.is_some_and(|max| self.total_events >= max) {
            return Err(StoreError::Full {
                backend: BACKEND,
                detail: format!("it holds its limit of {} events", self.total_events),
            });
        }
        self.total_events += 1;
        self.data.event_keys.insert(key.clone());
        self.data
            .events
            .entry(event.message_id.clone())
            .or_default()
            .push(event.clone());
        self.undo.push(Undo::Event(key));
        Ok(true)
    }
}

impl BatchTxn for MemoryTxn<'_> {
    async fn insert_events(&mut self, events: &[PlannedEvent]) -> Result<Vec<bool>, StoreError> {
        events.iter().map(|event| self.insert_event(event)).collect()
    }

    async fn insert_messages(&mut self, messages: &[MessageRow]) -> Result<(), StoreError> {
        for message in messages {
            if !self.data.messages.contains_key(&message.message_id) {
                self.data.messages.insert(message.message_id.clone(), message.clone());
                self.undo.push(Undo::Message(message.message_id.clone()));
            }
        }
        Ok(())
    }

    async fn record_flags(
        &mut self,
        records: &[(InsightRecord, EventFlags)],
    ) -> Result<Vec<Option<EventFlags>>, StoreError> {
        Ok(records
            .iter()
            .map(|(record, _)| self.data.records.get(&record_key(record)).map(|r| r.flags))
            .collect())
    }

    async fn put_records(&mut self, records: &[(InsightRecord, bool)]) -> Result<(), StoreError> {
        for (record, _) in records {
            let key = record_key(record);
            let old = self.data.records.insert(key.clone(), record.clone());
            self.undo.push(Undo::Record(key, old));
        }
        Ok(())
    }

    async fn add_rollups(&mut self, rollups: &[DailyCounts]) -> Result<(), StoreError> {
        for r in rollups {
            let key = (r.day, r.dimensions.clone());
            *self.data.rollups.entry(key.clone()).or_default() += r.counts;
            self.undo.push(Undo::Rollup(key, r.counts));
        }
        Ok(())
    }

    async fn learn(&mut self, lessons: &[(Lesson, String)]) -> Result<(), StoreError> {
        for key in lessons {
            if self.data.lessons.insert(key.clone()) {
                self.undo.push(Undo::Lesson(key.clone()));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn write_batch(&self, account: &Scope, events: Vec<SesEvent>) -> Result<BatchOutcome, StoreError> {
        let mut accounts = self.lock();
        let total_events = accounts.values().map(|a| a.event_keys.len()).sum();
        let data = accounts.entry(account.clone()).or_default();
        let mut txn = MemoryTxn {
            data,
            total_events,
            max_events: self.max_events,
            undo: Vec::new(),
        };
        match apply_batch_now(&mut txn, &events, BACKEND) {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    fn scan_insights(&self, account: &Scope, interval: Interval) -> InsightStream {
        let store = self.clone();
        let account = account.clone();
        let start: Bound<RecordKey> = Bound::Included((interval.start, String::new(), String::new()));
        let chunks = stream::unfold(Some(start), move |from| {
            let store = store.clone();
            let account = account.clone();
            async move {
                let from = from?;
                let accounts = store.lock();
                let records = &accounts.get(&account)?.records;
                let chunk: Vec<InsightRecord> = records
                    .range((from, Bound::Unbounded))
                    .take_while(|(key, _)| key.0 <= interval.end)
                    .take(SCAN_CHUNK)
                    .map(|(_, r)| r.clone())
                    .collect();
                let next = (chunk.len() == SCAN_CHUNK)
                    .then(|| chunk.last().map(|r| Bound::Excluded(record_key(r))))
                    .flatten();
                (!chunk.is_empty()).then_some((stream::iter(chunk.into_iter().map(Ok)), next))
            }
        });
        Box::pin(futures_util::StreamExt::flatten(chunks))
    }

    async fn message_insights(&self, account: &Scope, message_id: &str) -> Result<Option<MessageDetail>, StoreError> {
        let accounts = self.lock();
        let Some(data) = accounts.get(account) else {
            return Ok(None);
        };
        let Some(message) = data.messages.get(message_id) else {
            return Ok(None);
        };
        let from = (message.send_timestamp, message_id.to_owned(), String::new());
        let records = data
            .records
            .range(from..)
            .take_while(|(key, _)| key.0 == message.send_timestamp && key.1 == message_id)
            .map(|(_, r)| r);
        let events = data.events.get(message_id).map(Vec::as_slice).unwrap_or_default();
        let recipients = records
            .map(|record| RecipientDetail {
                destination: record.destination.clone(),
                isp: record.isp.clone(),
                recipient_count: record.recipient_count,
                events: stored_events(events.iter().filter(|e| e.recipient == record.destination)),
            })
            .collect();
        Ok(Some(MessageDetail {
            message_id: message.message_id.clone(),
            from_email_address: message.from_email_address.clone(),
            subject: message.subject.clone(),
            tags: message.tags.clone(),
            recipients,
        }))
    }

    async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, StoreError> {
        let accounts = self.lock();
        let Some(data) = accounts.get(scope) else {
            return Ok(crate::vdm::Reputation::default());
        };
        Ok(crate::vdm::Reputation::of(
            data.records
                .values()
                .rev()
                .filter(|r| r.counts_toward_metrics())
                .take(sends)
                .map(|r| r.flags),
        ))
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn expire(&self, before: Millis, max_messages: usize) -> Result<u64, StoreError> {
        let mut accounts = self.lock();
        let mut old: Vec<(Millis, Scope, String)> = accounts
            .iter()
            .flat_map(|(account, data)| {
                data.messages
                    .values()
                    .filter(|m| m.send_timestamp < before)
                    .map(|m| (m.send_timestamp, account.clone(), m.message_id.clone()))
            })
            .collect();
        old.sort();
        let done = old.len() <= max_messages;
        old.truncate(max_messages);
        for (_, account, message_id) in &old {
            let Some(data) = accounts.get_mut(account) else {
                continue;
            };
            data.messages.remove(message_id);
            data.events.remove(message_id);
            data.event_keys.retain(|(m, _, _)| m != message_id);
            data.records.retain(|(_, m, _), _| m != message_id);
        }
        if done {
            let first_kept = crate::clock::day_of(before);
            for data in accounts.values_mut() {
                data.rollups.retain(|(day, _), _| *day >= first_kept);
            }
        }
        Ok(old.len() as u64)
    }

    async fn daily_counts(&self, account: &Scope, interval: Interval) -> Result<Vec<DailyCounts>, StoreError> {
        let accounts = self.lock();
        let Some(data) = accounts.get(account) else {
            return Ok(Vec::new());
        };
        let split = interval.split_days();
        let mut rows = Vec::new();
        if let Some((first, last)) = split.whole_days {
            let from = (first, DimensionValues::default());
            rows.extend(data.rollups.range(from..).take_while(|((day, _), _)| *day <= last).map(
                |((day, dimensions), counts)| DailyCounts {
                    day: *day,
                    dimensions: dimensions.clone(),
                    counts: *counts,
                },
            ));
        }
        for part in split.partial {
            let from = (part.start, String::new(), String::new());
            let records = data.records.range(from..).take_while(|(key, _)| key.0 <= part.end);
            rows.extend(crate::event_store::batch::recount(records.map(|(_, r)| r)));
        }
        let mut rows = merge_daily(rows);
        let mut learned = Learned::default();
        for (lesson, value) in &data.lessons {
            learned.learn(*lesson, value.clone());
        }
        learned.apply(&mut rows);
        Ok(rows)
    }
}

/// A recipient's events in time order, as `GetMessageInsights` shows them.
fn stored_events<'a>(events: impl Iterator<Item = &'a PlannedEvent>) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = events
        .map(|e| StoredEvent {
            timestamp: e.timestamp,
            kind: e.kind,
            bounce_type: e.bounce_type.clone(),
            bounce_sub_type: e.bounce_sub_type.clone(),
            diagnostic_code: e.diagnostic_code.clone(),
            complaint_sub_type: e.complaint_sub_type.clone(),
            complaint_feedback_type: e.complaint_feedback_type.clone(),
        })
        .collect();
    out.sort_by_key(|e| (e.timestamp, e.kind));
    out
}
