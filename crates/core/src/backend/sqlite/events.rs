//! The SQLite backend, the embedded default: one file in the data dir, one
//! writer, a reader per scan (WAL lets them run side by side).
//!
//! Insight records of hot days are clustered by (account, send time,
//! message, destination), so an export's scan reads them in export order
//! with no sort; settled days are columnar segments beside the database
//! (`segments`), merged with their late records at read (`scan`). Rollups
//! are one row per account, UTC day and dimension values.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use ses_export_model::types::BounceType;

use super::scan::{Scan, record_from_offset_row};
use super::segments::{self, Layout, Snapshot};
use super::{BACKEND, Step, fold_wal, lock, migrate};
use crate::Scope;
use crate::backend::RECORD_COLUMNS;
use crate::backend::rollup;
use crate::backend::settled::Lookup;
use crate::clock::{DAY_MILLIS, Interval, Millis, day_of, day_start};
use crate::event::{EventKind, SesEvent};
use crate::event_store::batch::{BatchTxn, MessageRow, PlannedEvent, apply_batch_now, now, recount, replay};
use crate::event_store::{
    BatchOutcome, Compacted, CompactionPlan, CompactionRound, EventStore, InsightStream, MessageDetail,
    RecipientDetail, RecordFilter, ScanControl, StoreError, StoredEvent,
};
use crate::insight::{EventFlags, InsightRecord};
use crate::vdm::{DailyCounts, DimensionValues, Learned, Lesson, MetricCounts, merge_daily};

/// The schema, step by step (see [`migrate`]).
pub(super) const MIGRATIONS: &[Step] = &[
    Step::sql(
        r#"
CREATE TABLE messages (
    account      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    send_ts      INTEGER NOT NULL,
    from_address TEXT,
    subject      TEXT,
    tags         TEXT NOT NULL,
    PRIMARY KEY (account, message_id)
) WITHOUT ROWID;

CREATE TABLE events (
    account                 TEXT NOT NULL,
    message_id              TEXT NOT NULL,
    event_id                BLOB NOT NULL,
    recipient               TEXT NOT NULL,
    kind                    INTEGER NOT NULL,
    ts                      INTEGER NOT NULL,
    bounce_type             TEXT,
    bounce_sub_type         TEXT,
    diagnostic_code         TEXT,
    complaint_sub_type      TEXT,
    complaint_feedback_type TEXT,
    PRIMARY KEY (account, message_id, event_id, recipient)
) WITHOUT ROWID;

CREATE TABLE insights (
    account           TEXT NOT NULL,
    send_ts           INTEGER NOT NULL,
    message_id        TEXT NOT NULL,
    destination       TEXT NOT NULL,
    from_address      TEXT,
    subject           TEXT,
    isp               TEXT NOT NULL,
    email_identity    TEXT,
    configuration_set TEXT,
    tenant_name       TEXT,
    recipient_count   INTEGER NOT NULL,
    flags             INTEGER NOT NULL,
    PRIMARY KEY (account, send_ts, message_id, destination)
) WITHOUT ROWID;

CREATE TABLE metric_days (
    account            TEXT NOT NULL,
    day                INTEGER NOT NULL,
    email_identity     TEXT NOT NULL,
    configuration_set  TEXT NOT NULL,
    isp                TEXT NOT NULL,
    tenant_name        TEXT NOT NULL,
    send               INTEGER NOT NULL,
    complaint          INTEGER NOT NULL,
    permanent_bounce   INTEGER NOT NULL,
    transient_bounce   INTEGER NOT NULL,
    open               INTEGER NOT NULL,
    click              INTEGER NOT NULL,
    delivery           INTEGER NOT NULL,
    delivery_open      INTEGER NOT NULL,
    delivery_click     INTEGER NOT NULL,
    delivery_complaint INTEGER NOT NULL,
    PRIMARY KEY (account, day, email_identity, configuration_set, isp, tenant_name)
) WITHOUT ROWID;
"#,
    ),
    // A message's text (from address, subject) is kept once, in `messages`,
    // not once per recipient (docs/security.md): insight rows lose their copies.
    Step::sql(
        r#"
CREATE TABLE insights_v2 (
    account           TEXT NOT NULL,
    send_ts           INTEGER NOT NULL,
    message_id        TEXT NOT NULL,
    destination       TEXT NOT NULL,
    isp               TEXT NOT NULL,
    email_identity    TEXT,
    configuration_set TEXT,
    tenant_name       TEXT,
    recipient_count   INTEGER NOT NULL,
    flags             INTEGER NOT NULL,
    PRIMARY KEY (account, send_ts, message_id, destination)
) WITHOUT ROWID;
INSERT INTO insights_v2
    SELECT account, send_ts, message_id, destination, isp, email_identity, configuration_set, tenant_name,
           recipient_count, flags
    FROM insights;
DROP TABLE insights;
ALTER TABLE insights_v2 RENAME TO insights;
-- Retention deletes the oldest messages first.
CREATE INDEX messages_by_send_ts ON messages (send_ts);
"#,
    ),
    // Metrics and insight records as AWS defines them (docs/metrics.md):
    // what the account's events teach, kept once each. The records' flags
    // and the rollups are derived again from the kept events.
    Step::rederiving(
        r#"
CREATE TABLE learned (
    account TEXT NOT NULL,
    lesson  INTEGER NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (account, lesson, value)
) WITHOUT ROWID;
"#,
    ),
    // A complaint teaches its ISP's feedback loop from a message of any
    // number of recipients, not only from single-recipient ones (SPEC §5
    // as of 2026-12-06): what was learned is derived again.
    Step::rederiving(""),
    // Everything is kept per account and region (`Scope`): what was kept
    // before regions existed becomes the default region's.
    Step::sql(
        r#"
UPDATE messages SET account = account || '/' || (SELECT region FROM temp.defaults) WHERE instr(account, '/') = 0;
UPDATE events SET account = account || '/' || (SELECT region FROM temp.defaults) WHERE instr(account, '/') = 0;
UPDATE insights SET account = account || '/' || (SELECT region FROM temp.defaults) WHERE instr(account, '/') = 0;
UPDATE metric_days SET account = account || '/' || (SELECT region FROM temp.defaults) WHERE instr(account, '/') = 0;
UPDATE learned SET account = account || '/' || (SELECT region FROM temp.defaults) WHERE instr(account, '/') = 0;
"#,
    ),
    // Settled days move into columnar segments (docs/ARCHITECTURE.md): the
    // catalog, and every day already kept listed for the compactor.
    Step::sql(segments::SCHEMA),
    // Keys that follow time: events and messages keyed by their message's
    // send day first, so a backfill's batch touches the days it holds, not
    // the whole tree; a narrow index from a message id to its days (SES's
    // ids begin with their send time, so it grows at its end).
    Step::sql(
        r#"
CREATE TABLE messages_v2 (
    account      TEXT NOT NULL,
    day          INTEGER NOT NULL,
    message_id   TEXT NOT NULL,
    send_ts      INTEGER NOT NULL,
    from_address TEXT,
    subject      TEXT,
    tags         TEXT NOT NULL,
    PRIMARY KEY (account, day, message_id)
) WITHOUT ROWID;
INSERT INTO messages_v2
    SELECT account, send_ts / 86400000, message_id, send_ts, from_address, subject, tags FROM messages;
CREATE TABLE events_v2 (
    account                 TEXT NOT NULL,
    day                     INTEGER NOT NULL,
    message_id              TEXT NOT NULL,
    event_id                BLOB NOT NULL,
    recipient               TEXT NOT NULL,
    kind                    INTEGER NOT NULL,
    ts                      INTEGER NOT NULL,
    bounce_type             TEXT,
    bounce_sub_type         TEXT,
    diagnostic_code         TEXT,
    complaint_sub_type      TEXT,
    complaint_feedback_type TEXT,
    PRIMARY KEY (account, day, message_id, event_id, recipient)
) WITHOUT ROWID;
INSERT INTO events_v2
    SELECT e.account, m.send_ts / 86400000, e.message_id, e.event_id, e.recipient, e.kind, e.ts, e.bounce_type,
           e.bounce_sub_type, e.diagnostic_code, e.complaint_sub_type, e.complaint_feedback_type
    FROM events e JOIN messages m ON m.account = e.account AND m.message_id = e.message_id;
DROP TABLE events;
DROP TABLE messages;
ALTER TABLE events_v2 RENAME TO events;
ALTER TABLE messages_v2 RENAME TO messages;
-- Retention deletes the oldest messages first.
CREATE INDEX messages_by_send_ts ON messages (send_ts);
CREATE TABLE message_days (
    account    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    day        INTEGER NOT NULL,
    PRIMARY KEY (account, message_id, day)
) WITHOUT ROWID;
INSERT INTO message_days SELECT account, message_id, day FROM messages;
"#,
    ),
];

/// The days `message_id` has a message row in, oldest first.
fn message_days(conn: &Connection, account: &str, message_id: &str) -> Result<Vec<i64>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT day FROM message_days WHERE account = ?1 AND message_id = ?2 ORDER BY day")?;
    let days = stmt
        .query_map(params![account, message_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(days)
}

/// The SQLite [`EventStore`].
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    layout: Layout,
    writer: Mutex<Connection>,
    /// Opened on first use, dropped by `close`.
    reader: Mutex<Option<Connection>>,
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Generic {
        backend: BACKEND,
        source: Box::new(e),
    }
}

fn sql_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full {
            backend: BACKEND,
            detail: e.to_string(),
        },
        _ => generic(e),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        sql_error(e)
    }
}

impl SqliteEventStore {
    /// Opens (creating and migrating as needed) the database at `path`.
    /// What was kept before regions existed is `us-east-1`'s.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_inner(path.as_ref(), None, &crate::Region::us_east_1())
    }

    /// Like [`open`](Self::open); what was kept before regions existed
    /// becomes `default_region`'s.
    pub fn open_with_default_region(
        path: impl AsRef<Path>,
        default_region: &crate::Region,
    ) -> Result<Self, StoreError> {
        Self::open_inner(path.as_ref(), None, default_region)
    }

    /// Like [`open`](Self::open), with the database file capped at about
    /// `max_bytes`: a batch that would grow it further fails whole with
    /// [`StoreError::Full`].
    pub fn open_with_max_size(path: impl AsRef<Path>, max_bytes: u64) -> Result<Self, StoreError> {
        Self::open_inner(path.as_ref(), Some(max_bytes), &crate::Region::us_east_1())
    }

    fn open_inner(path: &Path, max_bytes: Option<u64>, default_region: &crate::Region) -> Result<Self, StoreError> {
        let mut writer = Connection::open(path)?;
        // Larger pages make shallower trees for these wide keys; it only
        // takes effect when the file is created.
        writer.pragma_update(None, "page_size", 16384)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // Checkpoint every ~64 MiB of WAL rather than every 4 MiB: fewer
        // copies of hot pages during bulk ingest.
        writer.pragma_update(None, "wal_autocheckpoint", 4096)?;
        // An acknowledged ingest survives power loss (docs/security.md): in WAL mode,
        // FULL syncs the log at every commit.
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "cache_size", -32768)?;
        writer.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(
            &mut writer,
            "event",
            MIGRATIONS,
            default_region,
            Some(|tx| Ok(rederive(tx)?)),
        )
        .map_err(|e| StoreError::Generic {
            backend: BACKEND,
            source: Box::new(e),
        })?;
        if let Some(max_bytes) = max_bytes {
            let page_size: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = i64::try_from(max_bytes).unwrap_or(i64::MAX) / page_size.max(1);
            writer.pragma_update(None, "max_page_count", pages.max(1))?;
        }
        let layout = Layout::beside(path);
        let swept = layout.sweep(&writer)?;
        if swept > 0 {
            tracing::info!(files = swept, "deleted segment files a compaction left unnamed");
        }
        let reader = open_reader(path)?;
        Ok(SqliteEventStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                layout,
                writer: Mutex::new(writer),
                reader: Mutex::new(Some(reader)),
            }),
        })
    }

    /// Runs `work` with the reader connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut reader = lock(&inner.reader);
            let conn = match &mut *reader {
                Some(conn) => conn,
                empty => empty.insert(open_reader(&inner.path)?),
            };
            work(conn)
        })
        .await
        .map_err(generic)?
    }
}

/// What `account`'s events have taught.
fn learned(conn: &Connection, account: &str) -> Result<Learned, StoreError> {
    let mut learned = Learned::default();
    let mut stmt = conn.prepare_cached("SELECT lesson, value FROM learned WHERE account = ?1")?;
    let mut rows = stmt.query(params![account])?;
    while let Some(row) = rows.next()? {
        if let Some(lesson) = Lesson::from_code(row.get(0)?) {
            learned.learn(lesson, row.get(1)?);
        }
    }
    Ok(learned)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Scans read in order and the system caches the file: a small cache
    // keeps two scans side by side light.
    conn.pragma_update(None, "cache_size", -4096)?;
    Ok(conn)
}

/// Derives again what the kept events mean (every record's flags, the
/// rollups, the lessons) by replaying them through the batch driver, a
/// chunk of rows at a time: the migration to a changed meaning.
pub(super) fn rederive(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    const CHUNK: usize = 10_000;
    let settled: i64 = tx.query_row("SELECT count(*) FROM segments", [], |r| r.get(0))?;
    if settled > 0 {
        return Err(StoreError::Generic {
            backend: BACKEND,
            source: crate::backend::migrate::settled_days_refused(settled).into(),
        });
    }
    tx.execute_batch("UPDATE insights SET flags = 0; DELETE FROM metric_days; DELETE FROM learned;")?;
    let mut stmt = tx.prepare(&format!(
        "SELECT e.account, e.event_id, e.kind, e.ts, e.bounce_type, e.bounce_sub_type, e.diagnostic_code, \
         e.complaint_sub_type, e.complaint_feedback_type, {RECORD_COLUMNS} \
         FROM events e JOIN messages m ON m.account = e.account AND m.day = e.day AND m.message_id = e.message_id \
         JOIN insights i ON i.account = e.account AND i.send_ts = m.send_ts AND i.message_id = e.message_id \
         AND i.destination = e.recipient ORDER BY e.account, e.day, e.message_id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut account = String::new();
    let mut kept: Vec<(PlannedEvent, InsightRecord)> = Vec::with_capacity(CHUNK);
    let flush = |account: &str, kept: &mut Vec<(PlannedEvent, InsightRecord)>| -> Result<(), StoreError> {
        let mut txn = SqliteTxn {
            tx,
            account,
            settled: None,
        };
        now(replay(&mut txn, kept), BACKEND)?;
        kept.clear();
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let row_account: String = row.get(0)?;
        if row_account != account || kept.len() == CHUNK {
            flush(&account, &mut kept)?;
            account = row_account;
        }
        let record = record_from_offset_row(row, 9)?;
        let event = PlannedEvent {
            id: row.get(1)?,
            message_id: record.message_id.clone(),
            send_timestamp: record.send_timestamp,
            recipient: record.destination.clone(),
            kind: EventKind::from_code(row.get(2)?).unwrap_or(EventKind::Send),
            timestamp: row.get(3)?,
            bounce_type: row.get::<_, Option<String>>(4)?.map(BounceType::from),
            bounce_sub_type: row.get(5)?,
            diagnostic_code: row.get(6)?,
            complaint_sub_type: row.get(7)?,
            complaint_feedback_type: row.get(8)?,
        };
        kept.push((event, record));
    }
    flush(&account, &mut kept)
}

struct SqliteTxn<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    account: &'a str,
    /// Settled days' segments, where a record the table lacks may be
    /// (none in a migration, which runs before there are segments).
    settled: Option<(&'a Layout, Lookup)>,
}

impl SqliteTxn<'_> {
    fn insert_event(&mut self, e: &PlannedEvent) -> Result<bool, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO events (account, message_id, event_id, recipient, kind, ts, bounce_type, \
             bounce_sub_type, diagnostic_code, complaint_sub_type, complaint_feedback_type, day) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let changed = stmt.execute(params![
            self.account,
            e.message_id,
            &e.id[..],
            e.recipient,
            e.kind.code(),
            e.timestamp,
            e.bounce_type.as_ref().map(BounceType::as_str),
            e.bounce_sub_type,
            e.diagnostic_code,
            e.complaint_sub_type,
            e.complaint_feedback_type,
            day_of(e.send_timestamp),
        ])?;
        Ok(changed == 1)
    }

    fn insert_message(&mut self, m: &MessageRow) -> Result<(), StoreError> {
        let tags = serde_json::to_string(&m.tags).map_err(generic)?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (account, day, message_id, send_ts, from_address, subject, tags) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let day = day_of(m.send_timestamp);
        let new = stmt.execute(params![
            self.account,
            day,
            m.message_id,
            m.send_timestamp,
            m.from_email_address,
            m.subject,
            tags
        ])?;
        if new == 1 {
            self.tx
                .prepare_cached("INSERT OR IGNORE INTO message_days (account, message_id, day) VALUES (?1, ?2, ?3)")?
                .execute(params![self.account, m.message_id, day])?;
        }
        Ok(())
    }

    fn record_flag(&mut self, r: &InsightRecord) -> Result<Option<EventFlags>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT flags FROM insights WHERE account = ?1 AND send_ts = ?2 AND message_id = ?3 AND destination = ?4",
        )?;
        let flags = stmt
            .query_row(
                params![self.account, r.send_timestamp, r.message_id, r.destination],
                |row| row.get::<_, u16>(0),
            )
            .optional()?;
        match (flags, &mut self.settled) {
            (Some(flags), _) => Ok(Some(EventFlags(flags))),
            (None, Some((layout, lookup))) => lookup.flags(r, BACKEND, |day| {
                segments::live_segment(self.tx, layout, self.account, day)
            }),
            (None, None) => Ok(None),
        }
    }

    /// Inserts the record, or updates its flags; a late record of a
    /// settled day is inserted whole, with its segment's bits in it.
    fn put_record(&mut self, r: &InsightRecord) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO insights (account, send_ts, message_id, destination, isp, email_identity, \
             configuration_set, tenant_name, recipient_count, flags) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO UPDATE SET flags = excluded.flags",
        )?;
        stmt.execute(params![
            self.account,
            r.send_timestamp,
            r.message_id,
            r.destination,
            r.isp,
            r.email_identity,
            r.configuration_set,
            r.tenant_name,
            r.recipient_count,
            r.flags.0,
        ])?;
        Ok(())
    }

    fn learn_one(&mut self, lesson: Lesson, value: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO learned (account, lesson, value) VALUES (?1, ?2, ?3)")?
            .execute(params![self.account, lesson.code(), value])?;
        Ok(())
    }

    fn add_rollup(&mut self, day: i64, d: &DimensionValues, delta: &MetricCounts) -> Result<(), StoreError> {
        static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let places: Vec<String> = (0..MetricCounts::default().0.len())
                .map(|i| format!("?{}", i + 7))
                .collect();
            format!(
                "INSERT INTO metric_days (account, day, email_identity, configuration_set, isp, tenant_name, {}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, {}) ON CONFLICT DO UPDATE SET {}",
                rollup::column_list(),
                places.join(", "),
                rollup::sums("")
            )
        });
        let mut stmt = self.tx.prepare_cached(&UPSERT)?;
        let keys: [&dyn rusqlite::ToSql; 6] = [
            &self.account,
            &day,
            &d.email_identity,
            &d.configuration_set,
            &d.isp,
            &d.tenant_name,
        ];
        let counts = delta.0.iter().map(|c| c as &dyn rusqlite::ToSql);
        stmt.execute(rusqlite::params_from_iter(keys.into_iter().chain(counts)))?;
        Ok(())
    }
}

/// Statement by statement: SQLite runs in-process, so a statement per row
/// costs no round trip.
impl BatchTxn for SqliteTxn<'_> {
    async fn insert_events(&mut self, events: &[PlannedEvent]) -> Result<Vec<bool>, StoreError> {
        events.iter().map(|e| self.insert_event(e)).collect()
    }

    async fn insert_messages(&mut self, messages: &[MessageRow]) -> Result<(), StoreError> {
        messages.iter().try_for_each(|m| self.insert_message(m))
    }

    async fn record_flags(
        &mut self,
        records: &[(InsightRecord, EventFlags)],
    ) -> Result<Vec<Option<EventFlags>>, StoreError> {
        records.iter().map(|(r, _)| self.record_flag(r)).collect()
    }

    async fn put_records(&mut self, records: &[(InsightRecord, bool)]) -> Result<(), StoreError> {
        records.iter().try_for_each(|(r, _)| self.put_record(r))?;
        if self.settled.is_some() {
            segments::touch_days(self.tx, self.account, records, crate::clock::now())?;
        }
        Ok(())
    }

    async fn add_rollups(&mut self, rollups: &[DailyCounts]) -> Result<(), StoreError> {
        rollups
            .iter()
            .try_for_each(|r| self.add_rollup(r.day, &r.dimensions, &r.counts))
    }

    async fn learn(&mut self, lessons: &[(Lesson, String)]) -> Result<(), StoreError> {
        lessons
            .iter()
            .try_for_each(|(lesson, value)| self.learn_one(*lesson, value))
    }
}

/// Streams `scope`'s records in `interval` (those `keep` keeps) from a
/// fresh reader connection on a blocking thread, a chunk at a time.
fn stream_records(
    inner: &Arc<Inner>,
    scope: String,
    interval: Interval,
    keep: Option<(RecordFilter, Arc<ScanControl>)>,
) -> InsightStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<InsightRecord>, StoreError>>(4);
    let no_runtime = tx.clone();
    let inner = Arc::clone(inner);
    let producer = move || {
        let run = || -> Result<(), StoreError> {
            let conn = open_reader(&inner.path)?;
            let snapshot = Snapshot::begin(&conn, &inner.layout, &scope, interval)?;
            let scan = Scan {
                scope: &scope,
                keep: keep.as_ref().map(|(keep, control)| (keep, &**control)),
            };
            scan.run(&snapshot, interval, &mut |chunk| {
                Ok(tx.blocking_send(Ok(chunk)).is_ok())
            })
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(producer);
        }
        Err(e) => {
            let _ = no_runtime.try_send(Err(generic(e)));
        }
    }
    crate::backend::settled::stream_chunks(rx)
}

/// Every record of `scope` in `interval` that `keep` keeps, read within
/// `conn`'s own snapshot.
fn records_in(
    conn: &Connection,
    layout: &Layout,
    scope: &str,
    interval: Interval,
    keep: &RecordFilter,
) -> Result<Vec<InsightRecord>, StoreError> {
    let snapshot = Snapshot::begin(conn, layout, scope, interval)?;
    let control = ScanControl::default();
    let mut records = Vec::new();
    Scan {
        scope,
        keep: Some((keep, &control)),
    }
    .run(&snapshot, interval, &mut |chunk| {
        records.extend(chunk);
        Ok(true)
    })?;
    Ok(records)
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn write_batch(&self, account: &Scope, events: Vec<SesEvent>) -> Result<BatchOutcome, StoreError> {
        let inner = Arc::clone(&self.inner);
        let account = account.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction()?;
            let outcome = apply_batch_now(
                &mut SqliteTxn {
                    tx: &tx,
                    account: account.as_str(),
                    settled: Some((&inner.layout, Lookup::default())),
                },
                &events,
                BACKEND,
            )?;
            tx.commit()?;
            Ok(outcome)
        })
        .await
        .map_err(generic)?
    }

    fn scan_insights(&self, account: &Scope, interval: Interval) -> InsightStream {
        stream_records(&self.inner, account.to_string(), interval, None)
    }

    fn scan_insights_where(
        &self,
        account: &Scope,
        interval: Interval,
        keep: RecordFilter,
        control: Arc<ScanControl>,
    ) -> InsightStream {
        stream_records(&self.inner, account.to_string(), interval, Some((keep, control)))
    }

    async fn message_insights(&self, account: &Scope, message_id: &str) -> Result<Option<MessageDetail>, StoreError> {
        let account = account.to_string();
        let message_id = message_id.to_owned();
        let layout = self.inner.layout.clone();
        self.read(move |conn| {
            let mut message = None;
            for day in message_days(conn, &account, &message_id)? {
                message = conn
                    .prepare_cached(
                        "SELECT send_ts, from_address, subject, tags FROM messages \
                         WHERE account = ?1 AND day = ?2 AND message_id = ?3",
                    )?
                    .query_row(params![account, day, message_id], |r| {
                        Ok((
                            r.get::<_, Millis>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })
                    .optional()?;
                if message.is_some() {
                    break;
                }
            }
            let Some((send_ts, from, subject, tags)) = message else {
                return Ok(None);
            };
            let tags: Vec<(String, String)> = serde_json::from_str(&tags).map_err(generic)?;
            let id = message_id.clone();
            let of_message = RecordFilter::new(false, move |f| f.message_id == id);
            let records = records_in(conn, &layout, &account, Interval::new(send_ts, send_ts), &of_message)?;
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
            let mut stmt = conn.prepare_cached(
                "SELECT recipient, ts, kind, bounce_type, bounce_sub_type, diagnostic_code, complaint_sub_type, \
                 complaint_feedback_type FROM events WHERE account = ?1 AND day = ?2 AND message_id = ?3 \
                 ORDER BY ts, kind",
            )?;
            let mut rows = stmt.query(params![account, day_of(send_ts), message_id])?;
            while let Some(row) = rows.next()? {
                let recipient: String = row.get(0)?;
                let code: u8 = row.get(2)?;
                let event = StoredEvent {
                    timestamp: row.get(1)?,
                    kind: EventKind::from_code(code).unwrap_or(EventKind::Send),
                    bounce_type: row.get::<_, Option<String>>(3)?.map(BounceType::from),
                    bounce_sub_type: row.get(4)?,
                    diagnostic_code: row.get(5)?,
                    complaint_sub_type: row.get(6)?,
                    complaint_feedback_type: row.get(7)?,
                };
                if let Some(r) = recipients.iter_mut().find(|r| r.destination == recipient) {
                    r.events.push(event);
                }
            }
            Ok(Some(MessageDetail {
                message_id,
                from_email_address: from,
                subject,
                tags,
                recipients,
            }))
        })
        .await
    }

    async fn daily_counts(&self, account: &Scope, interval: Interval) -> Result<Vec<DailyCounts>, StoreError> {
        let account = account.to_string();
        let layout = self.inner.layout.clone();
        self.read(move |conn| {
            let split = interval.split_days();
            let mut rows = Vec::new();
            if let Some((first, last)) = split.whole_days {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT day, email_identity, configuration_set, isp, tenant_name, {} FROM metric_days \
                     WHERE account = ?1 AND day BETWEEN ?2 AND ?3",
                    rollup::column_list()
                ))?;
                let mut query = stmt.query(params![account, first, last])?;
                while let Some(r) = query.next()? {
                    let mut counts = MetricCounts::default();
                    for (i, slot) in counts.0.iter_mut().enumerate() {
                        *slot = r.get(5 + i)?;
                    }
                    rows.push(DailyCounts {
                        day: r.get(0)?,
                        dimensions: DimensionValues {
                            email_identity: r.get(1)?,
                            configuration_set: r.get(2)?,
                            isp: r.get(3)?,
                            tenant_name: r.get(4)?,
                        },
                        counts,
                    });
                }
            }
            let single = RecordFilter::new(false, |f| f.recipient_count == 1);
            for part in split.partial {
                let records = records_in(conn, &layout, &account, part, &single)?;
                rows.extend(recount(records.iter()));
            }
            let mut rows = merge_daily(rows);
            learned(conn, &account)?.apply(&mut rows);
            Ok(rows)
        })
        .await
    }

    async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, StoreError> {
        let key = scope.as_str().to_owned();
        let layout = self.inner.layout.clone();
        self.read(move |conn| {
            // The days that hold records (rows: `hot_days` lists every day
            // the table has rows of; or a settled day's file), newest
            // first, each day's eligible records newest first, until there
            // are enough.
            let days: Vec<i64> = conn
                .prepare_cached(
                    "SELECT day FROM hot_days WHERE account = ?1 UNION SELECT day FROM segments WHERE account = ?1 \
                     ORDER BY day DESC",
                )?
                .query_map(params![key], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let eligible = RecordFilter::new(false, |f| {
                f.recipient_count == 1 && !crate::insight::is_simulator(f.destination)
            });
            let mut latest: Vec<EventFlags> = Vec::new();
            for day in days {
                if latest.len() >= sends {
                    break;
                }
                let whole = Interval::new(day_start(day), day_start(day) + DAY_MILLIS - 1);
                let mut records = records_in(conn, &layout, &key, whole, &eligible)?;
                records.sort_by_key(|r| std::cmp::Reverse(r.send_timestamp));
                latest.extend(records.iter().take(sends - latest.len()).map(|r| r.flags));
            }
            Ok(crate::vdm::Reputation::of(latest))
        })
        .await
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT DISTINCT account FROM metric_days")?;
            let keys = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(keys.iter().filter_map(|k| k.parse().ok()).collect())
        })
        .await
    }

    async fn expire(&self, before: Millis, max_messages: usize) -> Result<u64, StoreError> {
        let inner = Arc::clone(&self.inner);
        let limit = i64::try_from(max_messages).unwrap_or(i64::MAX);
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction()?;
            let old: Vec<(String, String, Millis)> = tx
                .prepare_cached(
                    "SELECT account, message_id, send_ts FROM messages WHERE send_ts < ?1 ORDER BY send_ts LIMIT ?2",
                )?
                .query_map(params![before, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (account, message_id, send_ts) in &old {
                let day = day_of(*send_ts);
                tx.prepare_cached("DELETE FROM events WHERE account = ?1 AND day = ?2 AND message_id = ?3")?
                    .execute(params![account, day, message_id])?;
                tx.prepare_cached("DELETE FROM insights WHERE account = ?1 AND send_ts = ?2 AND message_id = ?3")?
                    .execute(params![account, send_ts, message_id])?;
                tx.prepare_cached("DELETE FROM messages WHERE account = ?1 AND day = ?2 AND message_id = ?3")?
                    .execute(params![account, day, message_id])?;
                tx.prepare_cached("DELETE FROM message_days WHERE account = ?1 AND message_id = ?2 AND day = ?3")?
                    .execute(params![account, message_id, day])?;
            }
            let mut retired = Vec::new();
            if old.len() < max_messages {
                tx.execute("DELETE FROM metric_days WHERE day < ?1", params![day_of(before)])?;
                retired = segments::expire(&tx, &inner.layout, before)?;
            }
            tx.commit()?;
            for file in retired {
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, "an expired segment stays until the next open");
                }
            }
            Ok(old.len() as u64)
        })
        .await
        .map_err(generic)?
    }

    async fn compact(&self, plan: &CompactionPlan) -> Result<Compacted, StoreError> {
        let inner = Arc::clone(&self.inner);
        let plan = *plan;
        tokio::task::spawn_blocking(move || {
            let days = segments::candidates(&lock(&inner.writer), &plan)?;
            let mut round = CompactionRound::default();
            for (scope, day) in days {
                // The writer is taken a day at a time: ingest goes on
                // between days.
                let step = segments::compact_day(&mut lock(&inner.writer), &inner.layout, &scope, day, &plan);
                round.record(&scope, day, step);
            }
            round.finish()
        })
        .await
        .map_err(generic)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            lock(&inner.reader).take();
            fold_wal(&lock(&inner.writer))?;
            Ok(())
        })
        .await
        .map_err(generic)?
    }
}

#[cfg(test)]
pub(super) mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// Makes `old` a store at schema `version` holding what `fresh` holds.
    pub(in crate::backend::sqlite) fn old_store(old: &Path, version: usize, fresh: &Path) {
        super::super::older::event_store(old, version, fresh).expect("an older store");
    }

    /// A fresh store at `path` that ingested `stream`.
    async fn fresh_store(path: &Path, stream: Vec<SesEvent>) {
        let store = SqliteEventStore::open(path).expect("open");
        store
            .write_batch(&crate::event_store::conformance::account(), stream)
            .await
            .expect("ingest");
    }

    /// A store made by the first schema (text copied into every insight
    /// row) opens under the current one with nothing lost, and its text is
    /// then kept once per message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_schema_stores_are_migrated() {
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("events.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0].sql).expect("schema 1");
            conn.pragma_update(None, "user_version", 1).expect("version");
            conn.execute(
                "INSERT INTO messages VALUES ('000000000000', 'm1', 5, 'from@example.com', 'Hello', '[]')",
                [],
            )
            .expect("message");
            conn.execute(
                "INSERT INTO insights VALUES ('000000000000', 5, 'm1', 'to@example.com', 'from@example.com', \
                 'Hello', 'UNKNOWN_ISP', 'example.com', NULL, NULL, 1, 1)",
                [],
            )
            .expect("insight");
        }
        let store = SqliteEventStore::open(&path).expect("migrated");
        let records: Vec<InsightRecord> = store
            .scan_insights(&Scope::development(), Interval::new(Millis(0), Millis(10)))
            .map(|r| r.expect("record"))
            .collect()
            .await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].from_email_address.as_deref(), Some("from@example.com"));
        assert_eq!(records[0].subject.as_deref(), Some("Hello"));
        assert_eq!(records[0].destination, "to@example.com");
        let conn = Connection::open(&path).expect("open");
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('insights')")
            .expect("columns")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("names");
        assert!(
            !columns.iter().any(|c| c == "subject" || c == "from_address"),
            "{columns:?}"
        );
    }

    /// A store from before events and messages were keyed by send day
    /// (schema 6) opens with them re-keyed: the message's events read back,
    /// and its events already kept are duplicates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_before_day_first_keys_are_rekeyed() {
        use crate::event_store::conformance::{account, events, sample_records};
        let dir = tempfile::tempdir().expect("temp");
        let (old, fresh) = (dir.path().join("old.sqlite"), dir.path().join("fresh.sqlite"));
        let stream = events(&sample_records());
        fresh_store(&fresh, stream.clone()).await;
        old_store(&old, 6, &fresh);
        let (old, fresh) = (
            SqliteEventStore::open(&old).expect("migrated"),
            SqliteEventStore::open(&fresh).expect("open"),
        );
        for id in ["msg-a", "msg-b", "msg-c"] {
            let detail = old.message_insights(&account(), id).await.expect("read");
            assert!(detail.as_ref().is_some_and(|d| !d.recipients.is_empty()), "{id}");
            assert_eq!(
                detail,
                fresh.message_insights(&account(), id).await.expect("read"),
                "{id}"
            );
        }
        let again = old.write_batch(&account(), stream).await.expect("again");
        assert_eq!(again.accepted, 0, "{again:?}");
    }

    /// A store from before complaints of multi-recipient messages taught a
    /// feedback loop opens with its lessons derived again: the same as a
    /// store that ingested its events afresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_before_multi_recipient_complaints_taught_are_rederived() {
        use crate::event_store::conformance::{events, sample_records};
        let dir = tempfile::tempdir().expect("temp");
        let (old, fresh) = (dir.path().join("old.sqlite"), dir.path().join("fresh.sqlite"));
        // Its third message has two recipients, one of whom complains.
        fresh_store(&fresh, events(&sample_records())).await;
        old_store(&old, 3, &fresh);
        // What the previous version learned: nothing from that complaint.
        let forgotten = Connection::open(&old)
            .expect("open")
            .execute("DELETE FROM learned WHERE lesson = 2", [])
            .expect("forget");
        assert_eq!(forgotten, 1, "the complaint teaches its ISP's feedback loop");
        let learned = |path: PathBuf| {
            drop(SqliteEventStore::open(&path).expect("open"));
            let conn = Connection::open(&path).expect("open");
            let mut stmt = conn
                .prepare("SELECT account, lesson, value FROM learned ORDER BY 1, 2, 3")
                .expect("sql");
            stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
        };
        let (old_learned, fresh_learned) = (learned(old), learned(fresh));
        assert!(old_learned.iter().any(|l| l.1 == 2), "{old_learned:?}");
        assert_eq!(old_learned, fresh_learned);
    }

    /// A store of the version before the revised definitions (flags that
    /// count a suppression-list bounce as permanent, rollups with the old
    /// meaning, nothing learned) opens with everything derived again from
    /// its kept events: the same as a store that ingested them afresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_before_the_revised_definitions_are_rederived() {
        use crate::event_store::conformance::{account, generated};
        let dir = tempfile::tempdir().expect("temp");
        let (old, fresh) = (dir.path().join("old.sqlite"), dir.path().join("fresh.sqlite"));
        fresh_store(&fresh, generated(17, 400)).await;
        old_store(&old, 2, &fresh);
        {
            // Make `old` what the previous version would have written.
            let conn = Connection::open(&old).expect("open");
            let changed = conn
                .execute(
                    "UPDATE insights SET flags = (flags & ~4096) | 4 WHERE flags & 4096 != 0",
                    [],
                )
                .expect("old flags");
            assert!(changed > 0, "the stream has suppression-list bounces");
            conn.execute_batch(
                "UPDATE metric_days SET delivery_open = delivery, permanent_bounce = permanent_bounce + 1;",
            )
            .expect("old rollups");
        }
        let everything = Interval::EVERYTHING;
        let state = |path: PathBuf| async move {
            let store = SqliteEventStore::open(&path).expect("open");
            let records: Vec<InsightRecord> = store
                .scan_insights(&account(), everything)
                .map(|r| r.expect("record"))
                .collect()
                .await;
            let counts = store.daily_counts(&account(), everything).await.expect("counts");
            (records, counts)
        };
        let (old_state, fresh_state) = (state(old).await, state(fresh).await);
        assert_eq!(old_state.0, fresh_state.0, "records");
        assert_eq!(old_state.1, fresh_state.1, "rollups and learned sets");
    }
}
