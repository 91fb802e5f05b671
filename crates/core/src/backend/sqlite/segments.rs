//! The SQLite store's settled days as columnar segments
//! (docs/ARCHITECTURE.md, "the columnar engine"): where the files live, the
//! catalog that names each day's live file, compaction, and the lookups
//! ingest makes into a settled day.
//!
//! The invariant every read relies on: a record is in the `insights` table
//! (its day is hot, or it is a late record of a settled day), or in its
//! day's live segment, or in both. Where both, the table's row wins: flags
//! only gain bits, and ingest writes a late record with the segment's bits
//! already in it.

use std::collections::HashSet;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::scan::{RECORD_TABLES, record_from_row};
use crate::backend::RECORD_COLUMNS;
use crate::backend::settled;
use crate::clock::{DAY_MILLIS, Interval, Millis, day_of, day_start};
use crate::event_store::{Compacted, CompactionPlan, StoreError};
use crate::insight::InsightRecord;
use crate::segment::{Segment, SegmentFile};

/// The catalog: each scope's settled days and their live generation.
/// `hot_days` lists the days that have rows in `insights`, with when the
/// last of them was written: the compactor's work list.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE segments (
    account    TEXT NOT NULL,
    day        INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    PRIMARY KEY (account, day)
) WITHOUT ROWID;
CREATE TABLE hot_days (
    account    TEXT NOT NULL,
    day        INTEGER NOT NULL,
    last_write INTEGER NOT NULL,
    PRIMARY KEY (account, day)
) WITHOUT ROWID;
-- A store from before segments: each day it holds becomes hot and quiet,
-- so the compactor settles its old days, a day at a time.
INSERT OR IGNORE INTO hot_days (account, day, last_write)
    SELECT DISTINCT account, send_ts / 86400000, 0 FROM insights;
"#;

/// Where a store's segments live: beside its database, as
/// `account=A/region=R/day=YYYY-MM-DD/part-GENERATION.parquet` (Hive's
/// layout, which DuckDB, Spark and Athena read as columns).
#[derive(Debug, Clone)]
pub(super) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// `events.sqlite`'s segments are in `events.segments/`.
    pub(super) fn beside(database: &Path) -> Self {
        Layout {
            root: database.with_extension("segments"),
        }
    }

    fn day_dir(&self, scope: &str, day: i64) -> PathBuf {
        self.root.join(settled::day_folder(scope, day))
    }

    fn file(&self, scope: &str, day: i64, generation: i64) -> PathBuf {
        self.day_dir(scope, day).join(settled::part_name(generation))
    }

    /// The highest generation of `day`'s files on disk.
    fn newest(&self, scope: &str, day: i64) -> std::io::Result<Option<i64>> {
        let entries = match std::fs::read_dir(self.day_dir(scope, day)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut newest = None;
        for entry in entries {
            let name = entry?.file_name();
            newest = newest.max(name.to_str().and_then(settled::generation_of));
        }
        Ok(newest)
    }

    fn open(&self, scope: &str, day: i64, entry: Entry) -> std::io::Result<Segment<SegmentFile>> {
        let file = SegmentFile::open(&self.file(scope, day, entry.generation))?;
        Segment::open(file).map_err(std::io::Error::other)
    }

    /// Deletes every segment file the catalog does not name: what a crash
    /// in the middle of a compaction, or before a retired file was deleted,
    /// left behind. Runs at open, before any scan or compaction.
    pub(super) fn sweep(&self, conn: &Connection) -> Result<usize, StoreError> {
        let mut live = HashSet::new();
        let mut stmt = conn.prepare("SELECT account, day, generation FROM segments")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            live.insert(self.file(&row.get::<_, String>(0)?, row.get(1)?, row.get(2)?));
        }
        let mut deleted = 0;
        sweep_dir(&self.root, 0, &live, &mut deleted).map_err(generic)?;
        Ok(deleted)
    }
}

/// Walks `account=/region=/day=` folders under `dir` (at `depth`),
/// deleting files not in `live` and folders left empty.
fn sweep_dir(dir: &Path, depth: usize, live: &HashSet<PathBuf>, deleted: &mut usize) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if depth < 3 && path.is_dir() {
            sweep_dir(&path, depth + 1, live, deleted)?;
            // Only an empty folder goes; an error here means it is not.
            let _ = std::fs::remove_dir(&path);
        } else if depth == 3 && !live.contains(&path) {
            std::fs::remove_file(&path)?;
            *deleted += 1;
        }
    }
    Ok(())
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Generic {
        backend: super::BACKEND,
        source: Box::new(e),
    }
}

/// A day's entry in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    generation: i64,
    rows: i64,
}

fn entry(conn: &Connection, scope: &str, day: i64) -> rusqlite::Result<Option<Entry>> {
    conn.prepare_cached("SELECT generation, rows FROM segments WHERE account = ?1 AND day = ?2")?
        .query_row(params![scope, day], |r| {
            Ok(Entry {
                generation: r.get(0)?,
                rows: r.get(1)?,
            })
        })
        .optional()
}

/// A read transaction over a scope's days: the catalog and the `insights`
/// rows it reads agree. Each day's segment is opened when a scan reaches
/// it (one file open at a time, however long the interval). Ends (rolls
/// back) on drop.
pub(super) struct Snapshot<'c> {
    pub conn: &'c Connection,
    layout: Layout,
    scope: String,
    /// The settled days of the interval asked for, in order, with the
    /// generation the catalog named when the snapshot began.
    pub days: Vec<(i64, Entry)>,
}

impl<'c> Snapshot<'c> {
    /// Begins a read of `scope`'s days in `interval` on `conn`.
    pub(super) fn begin(
        conn: &'c Connection,
        layout: &Layout,
        scope: &str,
        interval: Interval,
    ) -> Result<Self, StoreError> {
        conn.execute_batch("BEGIN")?;
        let mut snapshot = Snapshot {
            conn,
            layout: layout.clone(),
            scope: scope.to_owned(),
            days: Vec::new(),
        };
        if !interval.is_empty() {
            let mut stmt = conn.prepare_cached(
                "SELECT day, generation, rows FROM segments WHERE account = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day",
            )?;
            snapshot.days = stmt
                .query_map(params![scope, day_of(interval.start), day_of(interval.end)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        Entry {
                            generation: r.get(1)?,
                            rows: r.get(2)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(snapshot)
    }

    /// The segment of `day` as this snapshot's catalog named it; if a
    /// compaction retired that file since, the newest generation there is
    /// (a fold only adds to a day, and the rows this snapshot still holds
    /// win over the file's: nothing is missed or shown twice); `None` when
    /// retention took the day meanwhile.
    pub(super) fn segment(&self, day: i64, entry: Entry) -> Result<Option<Segment<SegmentFile>>, StoreError> {
        let mut generation = entry.generation;
        loop {
            let at = Entry { generation, ..entry };
            match self.layout.open(&self.scope, day, at) {
                Ok(segment) => return Ok(Some(segment)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match self.layout.newest(&self.scope, day).map_err(generic)? {
                        Some(newer) if newer > generation => generation = newer,
                        _ => return Ok(None),
                    }
                }
                Err(e) => return Err(generic(e)),
            }
        }
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

/// The live segment of `scope`'s `day`, if the day has settled: what
/// ingest's [`Lookup`](settled::Lookup) reads a late record's flags from.
pub(super) fn live_segment(
    conn: &Connection,
    layout: &Layout,
    scope: &str,
    day: i64,
) -> Result<Option<Segment<SegmentFile>>, StoreError> {
    match entry(conn, scope, day)? {
        Some(entry) => Ok(Some(layout.open(scope, day, entry).map_err(generic)?)),
        None => Ok(None),
    }
}

/// Where a compaction may be cut short, for the crash test: the test
/// binary aborts there when `SES_EXPORT_TEST_CRASH_AT` names the step and
/// the generation being written (`written 2`).
fn reached(step: &str, generation: i64) {
    #[cfg(test)]
    if std::env::var("SES_EXPORT_TEST_CRASH_AT").is_ok_and(|at| at == format!("{step} {generation}")) {
        std::process::abort();
    }
    #[cfg(not(test))]
    let _ = (step, generation);
}

/// The days `plan` may settle or fold, oldest first.
pub(super) fn candidates(conn: &Connection, plan: &CompactionPlan) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT account, day FROM hot_days WHERE day < ?1 AND last_write <= ?2 ORDER BY day, account",
    )?;
    let days = stmt
        .query_map(params![day_of(plan.settled_before), plan.quiet_since], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(days)
}

/// Settles `scope`'s `day`, or folds its late records into its segment,
/// if `plan` says so; `conn` is the store's only writer, held throughout,
/// so no row changes between being read and being folded in.
///
/// The steps, and what a crash after each leaves: (1) write generation
/// N+1 beside N and sync it: N+1 is not in the catalog, so reads go on
/// with N and the rows, and the sweep at the next open deletes N+1;
/// (2) one transaction names N+1 in the catalog and deletes the rows
/// folded into it: reads see N and the rows, or N+1 alone; (3) delete N:
/// a crash before leaves N unnamed, for the sweep.
pub(super) fn compact_day(
    conn: &mut Connection,
    layout: &Layout,
    scope: &str,
    day: i64,
    plan: &CompactionPlan,
) -> Result<Compacted, StoreError> {
    let tx = conn.transaction()?;
    let range = Interval::new(day_start(day), day_start(day) + DAY_MILLIS - 1);
    let late: i64 = tx
        .prepare_cached("SELECT count(*) FROM insights WHERE account = ?1 AND send_ts BETWEEN ?2 AND ?3")?
        .query_row(params![scope, range.start, range.end], |r| r.get(0))?;
    let late = late.unsigned_abs();
    let old = entry(&tx, scope, day)?;
    if late == 0 {
        tx.execute(
            "DELETE FROM hot_days WHERE account = ?1 AND day = ?2",
            params![scope, day],
        )?;
        tx.commit()?;
        return Ok(Compacted::default());
    }
    if let Some(old) = old
        && u128::from(late) * u128::from(plan.fold_ratio) < u128::from(old.rows.unsigned_abs())
    {
        // Too few late records to rewrite the day for: they stay as they
        // are (scans merge them), and the day stays on the work list.
        return Ok(Compacted::default());
    }
    let generation = old.map_or(1, |e| e.generation + 1);
    let path = layout.file(scope, day, generation);
    let rows = write_day(&tx, layout, scope, day, range, old, &path)?;
    reached("written", generation);
    let rows_i64 = i64::try_from(rows).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO segments (account, day, generation, rows) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO UPDATE SET generation = excluded.generation, rows = excluded.rows",
        params![scope, day, generation, rows_i64],
    )?;
    tx.execute(
        "DELETE FROM insights WHERE account = ?1 AND send_ts BETWEEN ?2 AND ?3",
        params![scope, range.start, range.end],
    )?;
    tx.execute(
        "DELETE FROM hot_days WHERE account = ?1 AND day = ?2",
        params![scope, day],
    )?;
    tx.commit()?;
    reached("swapped", generation);
    if let Some(old) = old {
        match std::fs::remove_file(layout.file(scope, day, old.generation)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, "a retired segment stays until the next open");
            }
            _ => {}
        }
    }
    Ok(Compacted { segments: 1, rows })
}

/// Writes the day's records (its segment's, where the table has no newer
/// row, and the table's) to `path` in export order, a row group at a time,
/// and makes the file and its folders durable. Returns the rows written.
/// (`path.partial` until it is whole; the sweep at open deletes one a
/// crash left.)
fn write_day(
    conn: &Connection,
    layout: &Layout,
    scope: &str,
    day: i64,
    range: Interval,
    old: Option<Entry>,
    path: &Path,
) -> Result<u64, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(generic)?;
    // Written under a temporary name and renamed when whole: a file named
    // `part-N.parquet` is always complete, so a scan that looks for the
    // newest generation never reads one being written.
    let partial = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&partial).map_err(generic)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE i.account = ?1 AND i.send_ts BETWEEN ?2 AND ?3 \
         ORDER BY i.send_ts, i.message_id, i.destination"
    ))?;
    let rows = stmt
        .query_map(params![scope, range.start, range.end], record_from_row)?
        .map(|row| row.map_err(StoreError::from));
    let old = old
        .map(|old| layout.open(scope, day, old))
        .transpose()
        .map_err(generic)?;
    let (rows, out) = settled::write_day(BufWriter::new(file), old.as_ref(), range, rows, super::BACKEND)?;
    let file = out.into_inner().map_err(|e| generic(e.into_error()))?;
    file.sync_all().map_err(generic)?;
    std::fs::rename(&partial, path).map_err(generic)?;
    sync_dirs(dir, &layout.root).map_err(generic)?;
    Ok(rows)
}

/// Syncs `dir` and each folder above it up to `root`'s parent, so that a
/// new file's name survives power loss.
fn sync_dirs(dir: &Path, root: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let stop = root.parent();
        let mut at = Some(dir);
        while let Some(d) = at {
            std::fs::File::open(d)?.sync_all()?;
            if Some(d) == stop {
                break;
            }
            at = d.parent();
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, root);
    Ok(())
}

/// Retention: drops the segments of days before `before` (a day's start)
/// from the catalog, in `tx`; returns the files to delete once it commits.
pub(super) fn expire(
    tx: &rusqlite::Transaction<'_>,
    layout: &Layout,
    before: Millis,
) -> Result<Vec<PathBuf>, StoreError> {
    let day = day_of(before);
    let mut stmt = tx.prepare_cached("SELECT account, day, generation FROM segments WHERE day < ?1")?;
    let files = stmt
        .query_map(params![day], |r| {
            Ok(layout.file(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    tx.execute("DELETE FROM segments WHERE day < ?1", params![day])?;
    tx.execute("DELETE FROM hot_days WHERE day < ?1", params![day])?;
    Ok(files)
}

/// Marks the days of `records` as written to now, for the compactor.
pub(super) fn touch_days(
    tx: &rusqlite::Transaction<'_>,
    scope: &str,
    records: &[(InsightRecord, bool)],
    now: Millis,
) -> Result<(), StoreError> {
    let days: std::collections::BTreeSet<i64> = records.iter().map(|(r, _)| day_of(r.send_timestamp)).collect();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO hot_days (account, day, last_write) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO UPDATE SET last_write = excluded.last_write",
    )?;
    for day in days {
        stmt.execute(params![scope, day, now])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures_util::TryStreamExt;

    use crate::backend::sqlite::SqliteEventStore;
    use crate::clock::{DAY_MILLIS, Interval, Millis};
    use crate::event::SesEvent;
    use crate::event_store::conformance::{T0, account, generated, reference_counts, reference_records};
    use crate::event_store::{CompactionPlan, EventStore};
    use crate::insight::InsightRecord;

    const EVERYTHING: Interval = Interval {
        start: Millis(T0.0 - 10 * DAY_MILLIS),
        end: Millis(T0.0 + 40 * DAY_MILLIS),
    };

    fn settle_all(fold_ratio: u64) -> CompactionPlan {
        CompactionPlan {
            settled_before: T0 + 100 * DAY_MILLIS,
            quiet_since: Millis::MAX,
            fold_ratio,
        }
    }

    async fn records(store: &SqliteEventStore) -> Vec<InsightRecord> {
        store
            .scan_insights(&account(), EVERYTHING)
            .try_collect()
            .await
            .expect("scan")
    }

    fn segment_files(database: &Path) -> Vec<std::path::PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&database.with_extension("segments"), &mut files);
        files.sort();
        files
    }

    /// The stream split in two: every message's Send, then what came later
    /// (deliveries, opens, bounces...), so that the second half is made of
    /// late events once the days settle between the halves.
    fn sends_then_the_rest(events: &[SesEvent]) -> (Vec<SesEvent>, Vec<SesEvent>) {
        events
            .iter()
            .cloned()
            .partition(|e| e.kind == crate::event::EventKind::Send)
    }

    /// Late events for settled days show at once in scans, message
    /// insights and metrics, whether they stay beside the segment or are
    /// folded into a new one; the files are where the docs say.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_events_for_settled_days_show_at_once() {
        let stream = generated(5, 600);
        let expected = {
            let mut r = reference_records(&stream);
            r.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            r
        };
        let (sends, rest) = sends_then_the_rest(&stream);
        assert!(!rest.is_empty());
        for fold_ratio in [0, u64::MAX] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("events.sqlite");
            let store = SqliteEventStore::open(&path).expect("open");
            store.write_batch(&account(), sends.clone()).await.expect("sends");
            let done = store.compact(&settle_all(fold_ratio)).await.expect("compact");
            assert!(done.segments >= 3, "{done:?}");
            let files = segment_files(&path);
            assert_eq!(files.len() as u64, done.segments);
            let first = files[0].strip_prefix(dir.path()).expect("under the dir");
            assert!(
                first.starts_with("events.segments/account=111111111111/region=us-east-1"),
                "{}",
                first.display()
            );
            assert!(
                first.to_string_lossy().ends_with("/part-1.parquet"),
                "{}",
                first.display()
            );

            store.write_batch(&account(), rest.clone()).await.expect("late events");
            assert_eq!(records(&store).await, expected, "right after the late events");
            let counts = store.daily_counts(&account(), EVERYTHING).await.expect("counts");
            assert_eq!(counts, reference_counts(&expected, &stream, EVERYTHING));
            let partial = Interval::new(T0 + DAY_MILLIS / 3, T0 + DAY_MILLIS + DAY_MILLIS / 2);
            let counts = store.daily_counts(&account(), partial).await.expect("counts");
            assert_eq!(counts, reference_counts(&expected, &stream, partial));
            let some = &expected[expected.len() / 2];
            let detail = store
                .message_insights(&account(), &some.message_id)
                .await
                .expect("read")
                .expect("the message");
            let destinations: Vec<&str> = detail.recipients.iter().map(|r| r.destination.as_str()).collect();
            let mut expected_destinations: Vec<&str> = expected
                .iter()
                .filter(|r| r.message_id == some.message_id)
                .map(|r| r.destination.as_str())
                .collect();
            expected_destinations.sort_unstable();
            assert_eq!(destinations, expected_destinations);
            assert!(detail.recipients.iter().all(|r| !r.events.is_empty()));

            // Folding (or not) changes nothing a reader sees.
            store.compact(&settle_all(fold_ratio)).await.expect("compact again");
            assert_eq!(records(&store).await, expected, "after compacting again");
            let generations = segment_files(&path);
            if fold_ratio == 0 {
                assert_eq!(generations, files, "late records stay beside the segment");
            } else {
                assert!(
                    generations
                        .iter()
                        .all(|f| f.to_string_lossy().ends_with("/part-2.parquet"))
                );
            }
            // Ingesting everything again is all duplicates, settled or not.
            let again = store.write_batch(&account(), stream.clone()).await.expect("again");
            assert_eq!(again.accepted, 0);
            assert_eq!(records(&store).await, expected);
        }
    }

    /// Scans that run while late events arrive and compactions fold them
    /// in see each record once, in order, with no flag it will not end
    /// with (the conformance check): a file retired between a scan's
    /// catalog read and its opening is replaced by the newest generation,
    /// and an open file outlives its retirement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scans_during_compactions_see_each_record_once() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteEventStore::open(dir.path().join("events.sqlite")).expect("open");
        let compactor: Arc<dyn EventStore> = Arc::new(store.clone());
        crate::event_store::conformance::check_scans_during_compactions(Arc::new(store), vec![compactor]).await;
    }

    /// One batch of late events for far more settled days than a lookup
    /// keeps open at a time: each still counts, exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_across_many_settled_days_counts_each_event() {
        use crate::event_store::conformance::{events, record};
        use serde_json::json;
        let days = 40;
        let sent = |d: i64| T0 + d * DAY_MILLIS + 3_600_000;
        let id = |d: i64| format!("m-{d}");
        let sends: Vec<_> = (0..days)
            .map(|d| record("Send", &id(d), sent(d), &["a@gmail.com", "b@yahoo.com"], json!({})))
            .collect();
        let deliveries: Vec<_> = (0..days)
            .map(|d| {
                record(
                    "Delivery",
                    &id(d),
                    sent(d),
                    &["a@gmail.com", "b@yahoo.com"],
                    json!({"timestamp": crate::clock::format_iso8601(sent(d) + 5_000), "recipients": ["a@gmail.com"]}),
                )
            })
            .collect();
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteEventStore::open(dir.path().join("events.sqlite")).expect("open");
        store.write_batch(&account(), events(&sends)).await.expect("sends");
        let done = store.compact(&settle_all(u64::MAX)).await.expect("settle");
        assert_eq!(done.segments, days as u64);
        let late = store.write_batch(&account(), events(&deliveries)).await.expect("late");
        assert_eq!(late.accepted, days as u64);
        let all = records(&store).await;
        assert_eq!(all.len(), 2 * days as usize);
        let delivered = all
            .iter()
            .filter(|r| r.flags.union(crate::insight::EventFlags::DELIVERY) == r.flags)
            .count();
        assert_eq!(delivered, days as usize, "one recipient of each message");
        let again = store.write_batch(&account(), events(&deliveries)).await.expect("again");
        assert_eq!((again.accepted, again.duplicates), (0, days as u64));
    }

    /// The crash test's child: ingests, then compacts with the crash step
    /// named by the parent, which aborts the process there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "run by compaction_survives_a_crash_at_every_step"]
    async fn compaction_crash_child() {
        let path = std::env::var("SES_EXPORT_TEST_DATABASE").expect("the database to use");
        let store = SqliteEventStore::open(&path).expect("open");
        let stream = generated(9, 300);
        let (sends, rest) = sends_then_the_rest(&stream);
        store.write_batch(&account(), sends).await.expect("sends");
        store.compact(&settle_all(u64::MAX)).await.expect("settle");
        store.write_batch(&account(), rest).await.expect("late events");
        // This one folds the late events in; the parent's step aborts it.
        let _ = store.compact(&settle_all(u64::MAX)).await;
    }

    /// Killing the process after the new generation is written, or after
    /// the catalog names it (before the old one is deleted), loses nothing
    /// and shows nothing twice; the files left over are swept at the next
    /// open; a compaction afterwards finishes the job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_survives_a_crash_at_every_step() {
        let stream = generated(9, 300);
        let mut expected = reference_records(&stream);
        expected.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        for step in ["written 2", "swapped 2"] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("events.sqlite");
            let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "backend::sqlite::segments::tests::compaction_crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SES_EXPORT_TEST_DATABASE", &path)
                .env("SES_EXPORT_TEST_CRASH_AT", step)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("run the child");
            assert!(!status.success(), "the child was meant to die at {step}");
            let before_open = segment_files(&path);
            let store = SqliteEventStore::open(&path).expect("reopen");
            let swept = segment_files(&path);
            assert!(
                swept.len() < before_open.len(),
                "{step}: a file was left over: {before_open:?}"
            );
            assert_eq!(records(&store).await, expected, "{step}");
            let counts = store.daily_counts(&account(), EVERYTHING).await.expect("counts");
            assert_eq!(counts, reference_counts(&expected, &stream, EVERYTHING), "{step}");
            store.compact(&settle_all(u64::MAX)).await.expect("compact");
            assert_eq!(records(&store).await, expected, "{step}: after compacting");
            let again = store.write_batch(&account(), stream.clone()).await.expect("again");
            assert_eq!(again.accepted, 0, "{step}");
        }
    }

    /// Re-deriving (a migration that changes what events mean) refuses a
    /// store with settled days, whose records and rollups it cannot reach,
    /// and changes nothing, rather than leave those days half-derived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rederiving_refuses_a_store_with_settled_days() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.sqlite");
        let store = SqliteEventStore::open(&path).expect("open");
        store.write_batch(&account(), generated(5, 60)).await.expect("ingest");
        let done = store.compact(&settle_all(u64::MAX)).await.expect("compact");
        assert!(done.segments > 0, "{done:?}");
        let (before, counts) = (
            records(&store).await,
            store.daily_counts(&account(), EVERYTHING).await.expect("counts"),
        );
        {
            let mut conn = rusqlite::Connection::open(&path).expect("open");
            let tx = conn.transaction().expect("transaction");
            let refused = super::super::events::rederive(&tx).expect_err("settled days are refused");
            assert!(
                crate::error_chain(&refused).contains("settled days"),
                "{}",
                crate::error_chain(&refused)
            );
        }
        assert_eq!(records(&store).await, before);
        assert_eq!(
            store.daily_counts(&account(), EVERYTHING).await.expect("counts"),
            counts
        );
    }

    /// A store made before segments (schema 5) opens with every day it
    /// holds on the compactor's list, as quiet: the first compaction moves
    /// its settled days into segments, and nothing a reader sees changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_from_before_segments_move_into_them() {
        let stream = generated(13, 200);
        let dir = tempfile::tempdir().expect("dir");
        let (path, fresh) = (dir.path().join("events.sqlite"), dir.path().join("fresh.sqlite"));
        {
            let store = SqliteEventStore::open(&fresh).expect("open");
            store.write_batch(&account(), stream.clone()).await.expect("ingest");
        }
        super::super::events::tests::old_store(&path, 5, &fresh);
        let store = SqliteEventStore::open(&path).expect("migrated");
        let before = records(&store).await;
        assert!(!before.is_empty());
        let plan = CompactionPlan::at(crate::clock::now(), 3, 300_000);
        let done = store.compact(&plan).await.expect("compact");
        assert!(done.segments >= 3, "{done:?}");
        assert_eq!(done.rows as usize, before.len());
        assert_eq!(segment_files(&path).len() as u64, done.segments);
        assert_eq!(records(&store).await, before);
        assert_eq!(store.compact(&plan).await.expect("again"), Default::default());
    }
}
