//! The PostgreSQL event store. A batch is one transaction of a few
//! statements over arrays (`unnest`), one per step of the shared driver
//! (`store::ingest::apply_batch`). Concurrent ingests of the same messages
//! (from several servers) are serialised by per-message advisory locks,
//! taken in a fixed order so they cannot deadlock.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use futures_util::{StreamExt, TryStreamExt};
use ses_export_model::types::BounceType;
use tokio_postgres::Row;

use super::segments::{self, DAY_LOCK, SegmentBucket};
use super::{BACKEND, boxed};
use crate::Scope;
use crate::backend::settled::{self, CHUNK, Lookup};
use crate::backend::{Col, RECORD_COLUMNS, rollup};
use crate::clock::{DAY_MILLIS, Interval, Millis, day_of, day_start};
use crate::event::{EventKind, SesEvent};
use crate::event_store::batch::{BatchTxn, MessageRow, PlannedEvent, apply_batch, recount, replay};
use crate::event_store::{
    BatchOutcome, Compacted, CompactionPlan, CompactionRound, EventStore, InsightStream, MessageDetail,
    RecipientDetail, RecordFilter, SCAN_CHECK_ROWS, ScanControl, StoreError, StoredEvent,
};
use crate::filter::FilterFields;
use crate::insight::{EventFlags, InsightRecord};
use crate::segment::{Segment, SegmentFile};
use crate::vdm::{DailyCounts, DimensionValues, Learned, Lesson, MetricCounts, merge_daily};

/// The PostgreSQL [`EventStore`].
#[derive(Debug, Clone)]
pub struct PgEventStore {
    pool: Pool,
    /// Where settled days' segments live; without one, every day stays in
    /// the row tables (and a database that has segments is refused).
    segments: Option<SegmentBucket>,
    /// Events written since the tables' statistics were last refreshed.
    unanalyzed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Rows compactions moved out of `ses_insights` since it was last
    /// vacuumed.
    unvacuumed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Events written after which the store refreshes the planner's statistics
/// itself: after a bulk load, PostgreSQL's own autovacuum comes late, and
/// until it does the planner joins a scan's rows to their messages one
/// lookup at a time (twice as slow on a fresh million).
const ANALYZE_EVERY: u64 = 250_000;

/// Rows compactions move out of `ses_insights` after which the compactor
/// vacuums it: until then the table keeps their dead tuples and the
/// planner's statistics count them, so it reads a day's (now few) late
/// rows by scanning the whole table (measured: 100 ms a day, 3 s an export
/// of a month, against 6 ms after).
const VACUUM_EVERY: u64 = 50_000;

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Generic {
        backend: BACKEND,
        source: boxed(e),
    }
}

/// The tables [`RECORD_COLUMNS`] come from.
const RECORD_TABLES: &str =
    "ses_insights i LEFT JOIN ses_messages m ON m.account = i.account AND m.message_id = i.message_id";

fn record(row: &Row) -> InsightRecord {
    record_at(row, 0)
}

/// The fields filters look at, borrowed from a row of [`RECORD_COLUMNS`].
fn filter_fields(row: &Row) -> FilterFields<'_> {
    let c = |c: Col| c as usize;
    FilterFields {
        message_id: row.get(c(Col::MessageId)),
        destination: row.get(c(Col::Destination)),
        from_email_address: row.get(c(Col::From)),
        subject: row.get(c(Col::Subject)),
        isp: row.get(c(Col::Isp)),
        tenant_name: row.get(c(Col::TenantName)),
        flags: EventFlags(u16::try_from(row.get::<_, i32>(c(Col::Flags))).unwrap_or(0)),
        recipient_count: u32::try_from(row.get::<_, i32>(c(Col::RecipientCount))).unwrap_or(1),
        sample_hash: crate::insight::sample_hash(row.get(c(Col::MessageId)), row.get(c(Col::Destination))),
    }
}

/// A record from [`RECORD_COLUMNS`] starting at column `at`.
fn record_at(row: &Row, at: usize) -> InsightRecord {
    InsightRecord {
        send_timestamp: row.get(Col::SendTs.at(at)),
        message_id: row.get(Col::MessageId.at(at)),
        destination: row.get(Col::Destination.at(at)),
        from_email_address: row.get(Col::From.at(at)),
        subject: row.get(Col::Subject.at(at)),
        isp: row.get(Col::Isp.at(at)),
        email_identity: row.get(Col::EmailIdentity.at(at)),
        configuration_set: row.get(Col::ConfigurationSet.at(at)),
        tenant_name: row.get(Col::TenantName.at(at)),
        recipient_count: u32::try_from(row.get::<_, i32>(Col::RecipientCount.at(at))).unwrap_or(1),
        flags: EventFlags(u16::try_from(row.get::<_, i32>(Col::Flags.at(at))).unwrap_or(0)),
    }
}

/// One ingest transaction: each step is one statement over arrays.
struct PgTxn<'a> {
    tx: &'a deadpool_postgres::Transaction<'a>,
    account: &'a str,
    /// Settled days' segments, where a record the table lacks may be.
    segments: Option<&'a SegmentBucket>,
}

impl PgTxn<'_> {
    /// Serialises ingests of the same messages (from several servers) with
    /// per-message advisory locks, taken in a fixed order so they cannot
    /// deadlock.
    async fn lock_messages(&mut self, events: &[SesEvent]) -> Result<(), StoreError> {
        let mut messages: Vec<&str> = events.iter().map(|e| e.mail.message_id.as_str()).collect();
        messages.sort_unstable();
        messages.dedup();
        self.tx
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || m, 0)) \
                 FROM unnest($2::text[]) AS m ORDER BY m",
                &[&self.account, &messages],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }

    /// Holds the leases of the batch's days shared: no compaction folds a
    /// day while a batch reads its segment and writes its rows.
    async fn lock_days(&mut self, events: &[SesEvent]) -> Result<(), StoreError> {
        let mut days: Vec<i64> = events.iter().map(|e| day_of(e.mail.timestamp)).collect();
        days.sort_unstable();
        days.dedup();
        self.tx
            .execute(
                &format!("SELECT pg_advisory_xact_lock_shared({DAY_LOCK}) FROM unnest($2::int8[]) AS d ORDER BY d"),
                &[&self.account, &days],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }

    /// The flags settled days' segments hold for the records at `missing`
    /// (which the table does not hold), a day at a time.
    async fn settled_flags(
        &mut self,
        bucket: &SegmentBucket,
        records: &[(InsightRecord, EventFlags)],
        missing: Vec<usize>,
        flags: &mut [Option<EventFlags>],
    ) -> Result<(), StoreError> {
        let mut by_day: std::collections::BTreeMap<i64, Vec<usize>> = std::collections::BTreeMap::new();
        for i in missing {
            by_day.entry(day_of(records[i].0.send_timestamp)).or_default().push(i);
        }
        let days: Vec<i64> = by_day.keys().copied().collect();
        let settled = self
            .tx
            .query(
                "SELECT day, generation FROM ses_segments WHERE account = $1 AND day = ANY($2)",
                &[&self.account, &days],
            )
            .await
            .map_err(generic)?;
        for row in settled {
            let (day, generation): (i64, i64) = (row.get(0), row.get(1));
            let Some(path) = bucket.open(self.account, day, generation).await? else {
                continue;
            };
            let asks: Vec<(usize, InsightRecord)> = by_day
                .remove(&day)
                .unwrap_or_default()
                .into_iter()
                .map(|i| (i, records[i].0.clone()))
                .collect();
            let found = tokio::task::spawn_blocking(move || -> Result<Vec<(usize, Option<EventFlags>)>, StoreError> {
                let segment = open_segment(&path)?;
                let mut lookup = Lookup::default();
                let mut segment = Some(segment);
                asks.into_iter()
                    .map(|(i, r)| Ok((i, lookup.flags(&r, BACKEND, |_| Ok(segment.take()))?)))
                    .collect()
            })
            .await
            .map_err(generic)??;
            for (i, found) in found {
                flags[i] = found;
            }
        }
        Ok(())
    }
}

/// Opens a segment file.
fn open_segment(path: &std::path::Path) -> Result<Segment<SegmentFile>, StoreError> {
    let file = SegmentFile::open(path).map_err(generic)?;
    Segment::open(file).map_err(generic)
}

impl BatchTxn for PgTxn<'_> {
    async fn insert_events(&mut self, events: &[PlannedEvent]) -> Result<Vec<bool>, StoreError> {
        // A row repeated within the batch is inserted (and new) once.
        let mut seen = HashSet::new();
        let first: Vec<bool> = events
            .iter()
            .map(|p| seen.insert((p.message_id.as_str(), p.id, p.recipient.as_str())))
            .collect();
        let rows: Vec<&PlannedEvent> = events.iter().zip(&first).filter(|(_, f)| **f).map(|(p, _)| p).collect();
        let col = |f: &dyn Fn(&PlannedEvent) -> Option<&str>| rows.iter().map(|p| f(p)).collect::<Vec<_>>();
        let message_ids: Vec<&str> = rows.iter().map(|p| p.message_id.as_str()).collect();
        let ids: Vec<&[u8]> = rows.iter().map(|p| &p.id[..]).collect();
        let recipients: Vec<&str> = rows.iter().map(|p| p.recipient.as_str()).collect();
        let kinds: Vec<i16> = rows.iter().map(|p| i16::from(p.kind.code())).collect();
        let times: Vec<Millis> = rows.iter().map(|p| p.timestamp).collect();
        let inserted = self
            .tx
            .query(
                "INSERT INTO ses_events (account, message_id, event_id, recipient, kind, ts, bounce_type, \
                 bounce_sub_type, diagnostic_code, complaint_sub_type, complaint_feedback_type) \
                 SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::text[], $5::int2[], $6::int8[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::text[]) \
                 ON CONFLICT DO NOTHING RETURNING message_id, event_id, recipient",
                &[
                    &self.account,
                    &message_ids,
                    &ids,
                    &recipients,
                    &kinds,
                    &times,
                    &col(&|p| p.bounce_type.as_ref().map(BounceType::as_str)),
                    &col(&|p| p.bounce_sub_type.as_deref()),
                    &col(&|p| p.diagnostic_code.as_deref()),
                    &col(&|p| p.complaint_sub_type.as_deref()),
                    &col(&|p| p.complaint_feedback_type.as_deref()),
                ],
            )
            .await
            .map_err(generic)?;
        let new_keys: HashSet<(String, Vec<u8>, String)> =
            inserted.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        Ok(events
            .iter()
            .zip(&first)
            .map(|(p, first)| *first && new_keys.contains(&(p.message_id.clone(), p.id.to_vec(), p.recipient.clone())))
            .collect())
    }

    async fn insert_messages(&mut self, messages: &[MessageRow]) -> Result<(), StoreError> {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let sent: Vec<Millis> = messages.iter().map(|m| m.send_timestamp).collect();
        let from: Vec<Option<&str>> = messages.iter().map(|m| m.from_email_address.as_deref()).collect();
        let subjects: Vec<Option<&str>> = messages.iter().map(|m| m.subject.as_deref()).collect();
        let tags = messages
            .iter()
            .map(|m| serde_json::to_string(&m.tags))
            .collect::<Result<Vec<String>, _>>()
            .map_err(generic)?;
        self.tx
            .execute(
                "INSERT INTO ses_messages (account, message_id, send_ts, from_address, subject, tags) \
                 SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[]) \
                 ON CONFLICT DO NOTHING",
                &[&self.account, &ids, &sent, &from, &subjects, &tags],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }

    async fn record_flags(
        &mut self,
        records: &[(InsightRecord, EventFlags)],
    ) -> Result<Vec<Option<EventFlags>>, StoreError> {
        let keys_ts: Vec<Millis> = records.iter().map(|(r, _)| r.send_timestamp).collect();
        let keys_id: Vec<&str> = records.iter().map(|(r, _)| r.message_id.as_str()).collect();
        let keys_dest: Vec<&str> = records.iter().map(|(r, _)| r.destination.as_str()).collect();
        let stored = self
            .tx
            .query(
                "SELECT i.send_ts, i.message_id, i.destination, i.flags FROM ses_insights i \
                 JOIN unnest($2::int8[], $3::text[], $4::text[]) AS k(send_ts, message_id, destination) \
                 ON i.send_ts = k.send_ts AND i.message_id = k.message_id AND i.destination = k.destination \
                 WHERE i.account = $1",
                &[&self.account, &keys_ts, &keys_id, &keys_dest],
            )
            .await
            .map_err(generic)?;
        let old_flags: HashMap<(Millis, String, String), i32> = stored
            .iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
            .collect();
        let mut flags: Vec<Option<EventFlags>> = records
            .iter()
            .map(|(r, _)| {
                old_flags
                    .get(&(r.send_timestamp, r.message_id.clone(), r.destination.clone()))
                    .map(|f| EventFlags(u16::try_from(*f).unwrap_or(0)))
            })
            .collect();
        if let Some(bucket) = self.segments {
            let missing: Vec<usize> = (0..records.len()).filter(|i| flags[*i].is_none()).collect();
            if !missing.is_empty() {
                self.settled_flags(bucket, records, missing, &mut flags).await?;
            }
        }
        Ok(flags)
    }

    async fn put_records(&mut self, records: &[(InsightRecord, bool)]) -> Result<(), StoreError> {
        let r: Vec<&InsightRecord> = records.iter().map(|(r, _)| r).collect();
        self.tx
            .execute(
                "INSERT INTO ses_insights (account, send_ts, message_id, destination, isp, \
                 email_identity, configuration_set, tenant_name, recipient_count, flags) \
                 SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::int4[], $10::int4[]) \
                 ON CONFLICT (account, send_ts, message_id, destination) DO UPDATE SET flags = EXCLUDED.flags",
                &[
                    &self.account,
                    &r.iter().map(|r| r.send_timestamp).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.destination.as_str()).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.isp.as_str()).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.email_identity.as_deref()).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.configuration_set.as_deref()).collect::<Vec<_>>(),
                    &r.iter().map(|r| r.tenant_name.as_deref()).collect::<Vec<_>>(),
                    &r.iter()
                        .map(|r| i32::try_from(r.recipient_count).unwrap_or(i32::MAX))
                        .collect::<Vec<_>>(),
                    &r.iter().map(|r| i32::from(r.flags.0)).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(generic)?;
        // The days written, for the compactor. A day marked within the
        // last second is left alone: batches of one day from several
        // ingests would otherwise queue on its row's lock.
        let mut days: Vec<i64> = r.iter().map(|r| day_of(r.send_timestamp)).collect();
        days.sort_unstable();
        days.dedup();
        self.tx
            .execute(
                "INSERT INTO ses_hot_days (account, day, last_write) SELECT $1, d, $3::int8 FROM unnest($2::int8[]) AS d \
                 WHERE NOT EXISTS (SELECT 1 FROM ses_hot_days h WHERE h.account = $1 AND h.day = d \
                 AND h.last_write >= $3::int8 - 1000) \
                 ON CONFLICT (account, day) DO UPDATE SET last_write = EXCLUDED.last_write",
                &[&self.account, &days, &crate::clock::now()],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }

    async fn add_rollups(&mut self, rollups: &[DailyCounts]) -> Result<(), StoreError> {
        add_rollups(self.tx, self.account, rollups).await
    }

    async fn learn(&mut self, lessons: &[(Lesson, String)]) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO ses_learned (account, lesson, value) SELECT $1, * FROM unnest($2::int2[], $3::text[]) \
                 ON CONFLICT DO NOTHING",
                &[
                    &self.account,
                    &lessons.iter().map(|(l, _)| l.code()).collect::<Vec<_>>(),
                    &lessons.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }
}

impl PgEventStore {
    /// A store over `pool`, whose schema is migrated already.
    pub fn new(pool: Pool) -> Self {
        PgEventStore {
            pool,
            segments: None,
            unanalyzed: std::sync::Arc::default(),
            unvacuumed: std::sync::Arc::default(),
        }
    }

    /// A store over `pool` whose settled days are segments in `segments`
    /// (the cluster's bucket): every server of a cluster must be given the
    /// same bucket.
    pub fn with_segments(pool: Pool, segments: SegmentBucket) -> Self {
        PgEventStore {
            segments: Some(segments),
            ..PgEventStore::new(pool)
        }
    }

    /// The insight records of `interval`, in export order; with a filter,
    /// only those it keeps, each row judged before it is built. Read in
    /// one snapshot of the database (catalog and rows agree) by a task that
    /// hands records on a chunk at a time.
    fn scan(
        &self,
        account: &Scope,
        interval: Interval,
        keep: Option<(RecordFilter, std::sync::Arc<ScanControl>)>,
    ) -> InsightStream {
        let (out, rx) = tokio::sync::mpsc::channel::<Result<Vec<InsightRecord>, StoreError>>(4);
        let reader = Reader {
            pool: self.pool.clone(),
            segments: self.segments.clone(),
            scope: account.to_string(),
            keep,
            out,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = reader.run(interval).await {
                        let _ = reader.out.send(Err(e)).await;
                    }
                });
            }
            Err(e) => {
                let _ = reader.out.try_send(Err(generic(e)));
            }
        }
        settled::stream_chunks(rx)
    }

    /// Every record of `scope` in `interval` that `keep` keeps.
    async fn records_in(
        &self,
        scope: &Scope,
        interval: Interval,
        keep: RecordFilter,
    ) -> Result<Vec<InsightRecord>, StoreError> {
        self.scan(scope, interval, Some((keep, std::sync::Arc::default())))
            .try_collect()
            .await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(generic)
    }
}

/// One scan, run by a task of its own: catalog and rows in one snapshot,
/// hot stretches streamed from the table, settled days from their segment
/// (fetched into the cache) merged with the day's late rows on a blocking
/// thread.
struct Reader {
    pool: Pool,
    segments: Option<SegmentBucket>,
    scope: String,
    keep: Option<(RecordFilter, std::sync::Arc<ScanControl>)>,
    out: tokio::sync::mpsc::Sender<Result<Vec<InsightRecord>, StoreError>>,
}

/// The rows of a stretch of time, in export order.
const SCAN_SQL: &str =
    "WHERE i.account = $1 AND i.send_ts BETWEEN $2 AND $3 ORDER BY i.send_ts, i.message_id, i.destination";

impl Reader {
    async fn run(&self, interval: Interval) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(generic)?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(generic)?;
        let days: Vec<(i64, i64)> = if interval.is_empty() {
            Vec::new()
        } else {
            tx.query(
                "SELECT day, generation FROM ses_segments WHERE account = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
                &[&self.scope, &day_of(interval.start), &day_of(interval.end)],
            )
            .await
            .map_err(generic)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        };
        if !days.is_empty() && self.segments.is_none() {
            return Err(generic(std::io::Error::other(
                "this database keeps settled days as segments in a bucket, and the store was opened \
                 without one (PgEventStore::with_segments)",
            )));
        }
        let mut cursor = interval.start;
        for (day, generation) in days {
            let Some(bucket) = &self.segments else { break };
            // A day whose objects retention took meanwhile is read as a hot
            // one: what the snapshot's rows hold of it.
            let Some(path) = bucket.open(&self.scope, day, generation).await? else {
                continue;
            };
            let part = Interval::new(
                day_start(day).max(interval.start),
                (day_start(day) + DAY_MILLIS - 1).min(interval.end),
            );
            if cursor < part.start && !self.hot(&tx, Interval::new(cursor, part.start - 1)).await? {
                return Ok(());
            }
            let late: Vec<InsightRecord> = tx
                .query(
                    &format!("SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} {SCAN_SQL}"),
                    &[&self.scope, &part.start, &part.end],
                )
                .await
                .map_err(generic)?
                .iter()
                .map(record)
                .collect();
            let (keep, out) = (self.keep.clone(), self.out.clone());
            let go_on = tokio::task::spawn_blocking(move || {
                let segment = open_segment(&path)?;
                let keep = keep.as_ref().map(|(keep, control)| (keep, &**control));
                settled::merge_day(&segment, part, late, keep, BACKEND, &mut |chunk| {
                    Ok(out.blocking_send(Ok(chunk)).is_ok())
                })
            })
            .await
            .map_err(generic)??;
            if !go_on {
                return Ok(());
            }
            cursor = part.end.saturating_add(1);
        }
        if cursor <= interval.end {
            self.hot(&tx, Interval::new(cursor, interval.end)).await?;
        }
        Ok(())
    }

    /// The records of hot days in `part`, streamed from the table.
    async fn hot(&self, tx: &deadpool_postgres::Transaction<'_>, part: Interval) -> Result<bool, StoreError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&self.scope, &part.start, &part.end];
        let rows = tx
            .query_raw(
                &format!("SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} {SCAN_SQL}"),
                params,
            )
            .await
            .map_err(generic)?;
        let mut rows = std::pin::pin!(rows);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut read: u64 = 0;
        while let Some(row) = rows.next().await {
            let row = row.map_err(generic)?;
            read += 1;
            if let Some((keep, control)) = &self.keep {
                // Rows read, not rows kept: a filter that keeps nothing
                // still hears a cancel or a shutdown.
                if read.is_multiple_of(SCAN_CHECK_ROWS) && control.stopped() {
                    return Ok(false);
                }
                control.scanned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !keep.keeps(filter_fields(&row)) {
                    continue;
                }
            }
            chunk.push(record(&row));
            if chunk.len() == CHUNK && self.out.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                return Ok(false);
            }
        }
        Ok(chunk.is_empty() || self.out.send(Ok(chunk)).await.is_ok())
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn write_batch(&self, account: &Scope, events: Vec<SesEvent>) -> Result<BatchOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(generic)?;
        let mut txn = PgTxn {
            tx: &tx,
            account: account.as_str(),
            segments: self.segments.as_ref(),
        };
        txn.lock_messages(&events).await?;
        if self.segments.is_some() {
            txn.lock_days(&events).await?;
        }
        let outcome = apply_batch(&mut txn, &events).await?;
        tx.commit().await.map_err(generic)?;
        let written = self
            .unanalyzed
            .fetch_add(outcome.accepted, std::sync::atomic::Ordering::Relaxed)
            + outcome.accepted;
        if written >= ANALYZE_EVERY {
            self.unanalyzed.store(0, std::sync::atomic::Ordering::Relaxed);
            // In the background, on the connection just used: an ingest
            // does not wait for statistics.
            tokio::spawn(async move {
                if let Err(e) = client
                    .batch_execute("ANALYZE ses_insights, ses_messages, ses_events")
                    .await
                {
                    tracing::warn!(error = %e, "refreshing the planner's statistics failed");
                }
            });
        }
        Ok(outcome)
    }

    fn scan_insights(&self, account: &Scope, interval: Interval) -> InsightStream {
        self.scan(account, interval, None)
    }

    /// Judges each row on its borrowed columns, so the rows a filter (or a
    /// sample's bar) refuses are never built into records.
    fn scan_insights_where(
        &self,
        account: &Scope,
        interval: Interval,
        keep: RecordFilter,
        control: std::sync::Arc<ScanControl>,
    ) -> InsightStream {
        self.scan(account, interval, Some((keep, control)))
    }

    async fn message_insights(&self, scope: &Scope, message_id: &str) -> Result<Option<MessageDetail>, StoreError> {
        let client = self.client().await?;
        let account = scope.as_str();
        let Some(message) = client
            .query_opt(
                "SELECT send_ts, from_address, subject, tags FROM ses_messages WHERE account = $1 AND message_id = $2",
                &[&account, &message_id],
            )
            .await
            .map_err(generic)?
        else {
            return Ok(None);
        };
        let send_ts: Millis = message.get(0);
        let tags: String = message.get(3);
        let id = message_id.to_owned();
        let of_message = RecordFilter::new(false, move |f| f.message_id == id);
        let records = self
            .records_in(scope, Interval::new(send_ts, send_ts), of_message)
            .await?;
        let mut recipients: Vec<RecipientDetail> = records
            .into_iter()
            .map(|r| RecipientDetail {
                destination: r.destination,
                isp: r.isp,
                recipient_count: r.recipient_count,
                events: Vec::new(),
            })
            .collect();
        recipients.sort_by(|a, b| a.destination.cmp(&b.destination));
        for row in client
            .query(
                "SELECT recipient, ts, kind, bounce_type, bounce_sub_type, diagnostic_code, complaint_sub_type, \
                 complaint_feedback_type FROM ses_events WHERE account = $1 AND message_id = $2 ORDER BY ts, kind",
                &[&account, &message_id],
            )
            .await
            .map_err(generic)?
        {
            let recipient: String = row.get(0);
            let event = StoredEvent {
                timestamp: row.get(1),
                kind: EventKind::from_code(u8::try_from(row.get::<_, i16>(2)).unwrap_or(0)).unwrap_or(EventKind::Send),
                bounce_type: row.get::<_, Option<String>>(3).map(BounceType::from),
                bounce_sub_type: row.get(4),
                diagnostic_code: row.get(5),
                complaint_sub_type: row.get(6),
                complaint_feedback_type: row.get(7),
            };
            if let Some(r) = recipients.iter_mut().find(|r| r.destination == recipient) {
                r.events.push(event);
            }
        }
        Ok(Some(MessageDetail {
            message_id: message_id.to_owned(),
            from_email_address: message.get(1),
            subject: message.get(2),
            tags: serde_json::from_str(&tags).map_err(generic)?,
            recipients,
        }))
    }

    async fn compact(&self, plan: &CompactionPlan) -> Result<Compacted, StoreError> {
        let Some(bucket) = &self.segments else {
            return Ok(Compacted::default());
        };
        let mut client = self.client().await?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE i.account = $1 AND i.send_ts BETWEEN $2 AND $3 \
             ORDER BY i.send_ts, i.message_id, i.destination"
        );
        let mut round = CompactionRound::default();
        for (scope, day) in segments::candidates(&client, plan).await? {
            let step = segments::compact_day(&mut client, bucket, &scope, day, plan, &sql, record).await;
            round.record(&scope, day, step);
        }
        let done = round.done();
        let moved = self
            .unvacuumed
            .fetch_add(done.rows, std::sync::atomic::Ordering::Relaxed)
            + done.rows;
        if moved >= VACUUM_EVERY {
            self.unvacuumed.store(0, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = client
                .batch_execute("VACUUM (ANALYZE) ses_insights, ses_hot_days")
                .await
            {
                tracing::warn!(error = %e, "vacuuming the row store after compactions failed");
            }
        }
        round.finish()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(generic)?;
        Ok(())
    }

    async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, StoreError> {
        // The days that hold records, newest first, each day's eligible
        // records newest first, until there are enough.
        let days: Vec<i64> = self
            .client()
            .await?
            .query(
                "SELECT day FROM ses_hot_days WHERE account = $1 UNION SELECT day FROM ses_segments \
                 WHERE account = $1 ORDER BY day DESC",
                &[&scope.as_str()],
            )
            .await
            .map_err(generic)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut latest: Vec<EventFlags> = Vec::new();
        for day in days {
            if latest.len() >= sends {
                break;
            }
            let eligible = RecordFilter::new(false, |f| {
                f.recipient_count == 1 && !crate::insight::is_simulator(f.destination)
            });
            let whole = Interval::new(day_start(day), day_start(day) + DAY_MILLIS - 1);
            let mut records = self.records_in(scope, whole, eligible).await?;
            records.sort_by_key(|r| std::cmp::Reverse(r.send_timestamp));
            latest.extend(records.iter().take(sends - latest.len()).map(|r| r.flags));
        }
        Ok(crate::vdm::Reputation::of(latest))
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT DISTINCT account FROM ses_metric_days", &[])
            .await
            .map_err(generic)?;
        Ok(rows.iter().filter_map(|r| r.get::<_, String>(0).parse().ok()).collect())
    }

    async fn expire(&self, before: Millis, max_messages: usize) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await.map_err(generic)?;
        let tx = client.transaction().await.map_err(generic)?;
        let limit = i64::try_from(max_messages).unwrap_or(i64::MAX);
        // The oldest messages, their events and records, in a few set-based
        // statements; SKIP LOCKED leaves messages an ingest holds to a later
        // call rather than waiting for it.
        let deleted = tx
            .query(
                "WITH old AS (SELECT account, message_id, send_ts FROM ses_messages WHERE send_ts < $1 \
                 ORDER BY send_ts LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 gone_events AS (DELETE FROM ses_events e USING old \
                   WHERE e.account = old.account AND e.message_id = old.message_id), \
                 gone_records AS (DELETE FROM ses_insights i USING old \
                   WHERE i.account = old.account AND i.send_ts = old.send_ts AND i.message_id = old.message_id) \
                 DELETE FROM ses_messages m USING old WHERE m.account = old.account AND m.message_id = old.message_id \
                 RETURNING m.message_id",
                &[&before, &limit],
            )
            .await
            .map_err(generic)?
            .len();
        let mut dropped: Vec<(String, i64)> = Vec::new();
        if deleted < max_messages {
            let day = day_of(before);
            tx.execute("DELETE FROM ses_metric_days WHERE day < $1", &[&day])
                .await
                .map_err(generic)?;
            tx.execute("DELETE FROM ses_hot_days WHERE day < $1", &[&day])
                .await
                .map_err(generic)?;
            dropped = tx
                .query(
                    "DELETE FROM ses_segments WHERE day < $1 RETURNING account, day",
                    &[&day],
                )
                .await
                .map_err(generic)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        }
        tx.commit().await.map_err(generic)?;
        if let Some(bucket) = &self.segments {
            segments::delete_days(bucket, &dropped).await;
        }
        Ok(deleted as u64)
    }

    async fn daily_counts(&self, scope: &Scope, interval: Interval) -> Result<Vec<DailyCounts>, StoreError> {
        let client = self.client().await?;
        let account = scope.as_str();
        let split = interval.split_days();
        let mut rows = Vec::new();
        if let Some((first, last)) = split.whole_days {
            for r in client
                .query(
                    &format!(
                        "SELECT day, email_identity, configuration_set, isp, tenant_name, {} FROM ses_metric_days \
                         WHERE account = $1 AND day BETWEEN $2 AND $3",
                        rollup::column_list()
                    ),
                    &[&account, &first, &last],
                )
                .await
                .map_err(generic)?
            {
                let mut counts = MetricCounts::default();
                for (i, slot) in counts.0.iter_mut().enumerate() {
                    *slot = r.get(5 + i);
                }
                rows.push(DailyCounts {
                    day: r.get(0),
                    dimensions: DimensionValues {
                        email_identity: r.get(1),
                        configuration_set: r.get(2),
                        isp: r.get(3),
                        tenant_name: r.get(4),
                    },
                    counts,
                });
            }
        }
        for part in split.partial {
            let single = RecordFilter::new(false, |f| f.recipient_count == 1);
            let records = self.records_in(scope, part, single).await?;
            rows.extend(recount(records.iter()));
        }
        let mut rows = merge_daily(rows);
        let mut learned = Learned::default();
        for row in client
            .query("SELECT lesson, value FROM ses_learned WHERE account = $1", &[&account])
            .await
            .map_err(generic)?
        {
            if let Some(lesson) = Lesson::from_code(i64::from(row.get::<_, i16>(0))) {
                learned.learn(lesson, row.get(1));
            }
        }
        learned.apply(&mut rows);
        Ok(rows)
    }
}

/// Adds rollup deltas of `account` (day and dimension values to counts).
async fn add_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    account: &str,
    rollups: &[DailyCounts],
) -> Result<(), StoreError> {
    static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let arrays: Vec<String> = (0..MetricCounts::default().0.len())
            .map(|i| format!("${}::int8[]", i + 7))
            .collect();
        format!(
            "INSERT INTO ses_metric_days AS m (account, day, email_identity, configuration_set, isp, tenant_name, {}) \
             SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], {}) \
             ON CONFLICT (account, day, email_identity, configuration_set, isp, tenant_name) DO UPDATE SET {}",
            rollup::column_list(),
            arrays.join(", "),
            rollup::sums("m.")
        )
    });
    if rollups.is_empty() {
        return Ok(());
    }
    let k = rollups;
    let days: Vec<i64> = k.iter().map(|r| r.day).collect();
    let dimension = |f: fn(&DimensionValues) -> &str| k.iter().map(|r| f(&r.dimensions)).collect::<Vec<&str>>();
    let identities = dimension(|v| &v.email_identity);
    let sets = dimension(|v| &v.configuration_set);
    let isps = dimension(|v| &v.isp);
    let tenants = dimension(|v| &v.tenant_name);
    let slots: Vec<Vec<i64>> = (0..MetricCounts::default().0.len())
        .map(|i| k.iter().map(|r| r.counts.0[i]).collect())
        .collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&account, &days, &identities, &sets, &isps, &tenants];
    params.extend(slots.iter().map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync)));
    tx.execute(UPSERT.as_str(), &params).await.map_err(generic)?;
    Ok(())
}

/// Derives again what the kept events mean (every record's flags, the
/// rollups, the lessons) by replaying them through the batch driver, an
/// account and a chunk of rows at a time: the migration to a changed
/// meaning, run by the first server of the new version.
pub(super) async fn rederive(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    const CHUNK: usize = 10_000;
    let settled: i64 = tx
        .query_one("SELECT count(*) FROM ses_segments", &[])
        .await
        .map_err(generic)?
        .get(0);
    if settled > 0 {
        return Err(StoreError::Generic {
            backend: BACKEND,
            source: crate::backend::migrate::settled_days_refused(settled).into(),
        });
    }
    tx.batch_execute("UPDATE ses_insights SET flags = 0; DELETE FROM ses_metric_days; DELETE FROM ses_learned;")
        .await
        .map_err(generic)?;
    // A page of the events at a time, in key order after the last one
    // read, so the database's size does not decide the server's memory.
    let page = |after: &str| {
        format!(
            "SELECT e.account, e.event_id, e.kind, e.ts, e.bounce_type, e.bounce_sub_type, e.diagnostic_code, \
             e.complaint_sub_type, e.complaint_feedback_type, {RECORD_COLUMNS} \
             FROM ses_events e JOIN ses_messages m ON m.account = e.account AND m.message_id = e.message_id \
             JOIN ses_insights i ON i.account = e.account AND i.send_ts = m.send_ts \
             AND i.message_id = e.message_id AND i.destination = e.recipient {after} \
             ORDER BY e.account, e.message_id, e.event_id, e.recipient LIMIT {CHUNK}"
        )
    };
    let (first, next) = (
        page(""),
        page("WHERE (e.account, e.message_id, e.event_id, e.recipient) > ($1, $2, $3, $4)"),
    );
    let mut after: Option<(String, String, Vec<u8>, String)> = None;
    loop {
        let rows = match &after {
            None => tx.query(&first, &[]).await,
            Some((account, message_id, id, recipient)) => tx.query(&next, &[account, message_id, id, recipient]).await,
        }
        .map_err(generic)?;
        let mut account = String::new();
        let mut kept: Vec<(PlannedEvent, InsightRecord)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let row_account: String = row.get(0);
            if row_account != account {
                replay_chunk(tx, &account, &mut kept).await?;
                account = row_account;
            }
            let record = record_at(row, 9);
            let id: Vec<u8> = row.get(1);
            let event = PlannedEvent {
                id: id.try_into().unwrap_or_default(),
                message_id: record.message_id.clone(),
                send_timestamp: record.send_timestamp,
                recipient: record.destination.clone(),
                kind: EventKind::from_code(u8::try_from(row.get::<_, i16>(2)).unwrap_or(0)).unwrap_or(EventKind::Send),
                timestamp: row.get(3),
                bounce_type: row.get::<_, Option<String>>(4).map(BounceType::from),
                bounce_sub_type: row.get(5),
                diagnostic_code: row.get(6),
                complaint_sub_type: row.get(7),
                complaint_feedback_type: row.get(8),
            };
            kept.push((event, record));
        }
        replay_chunk(tx, &account, &mut kept).await?;
        // The last row's key, as stored (the join makes the record's
        // message id and destination the event's).
        after = rows.last().map(|row| {
            (
                row.get(0),
                row.get(Col::MessageId.at(9)),
                row.get(1),
                row.get(Col::Destination.at(9)),
            )
        });
        if rows.len() < CHUNK {
            return Ok(());
        }
    }
}

async fn replay_chunk(
    tx: &deadpool_postgres::Transaction<'_>,
    account: &str,
    kept: &mut Vec<(PlannedEvent, InsightRecord)>,
) -> Result<(), StoreError> {
    let mut txn = PgTxn {
        tx,
        account,
        segments: None,
    };
    replay(&mut txn, kept).await?;
    kept.clear();
    Ok(())
}
