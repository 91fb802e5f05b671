//! PostgreSQL's settled days as columnar segments in an object store (the
//! cluster's bucket), `events.segments/account=A/region=R/day=D/part-N.parquet`,
//! named by a catalog in the database (docs/ARCHITECTURE.md, "the columnar
//! engine"). Any server may compact a day: it holds the day's lease (an
//! advisory lock, taken without waiting, released with its transaction), and
//! ingest holds the same lock shared while it writes the day's rows, so no
//! row changes between being read and being folded in.
//!
//! Every server keeps the segments it reads in a local cache folder: a
//! generation's object is written once and never changed (a compaction
//! writes a generation above every one it finds, named or not), so a cached
//! file is never stale; the least recently used files go past the cache's
//! size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;

use super::BACKEND;
use crate::backend::settled;
use crate::clock::{DAY_MILLIS, Interval, day_start};
use crate::event_store::{Compacted, CompactionPlan, StoreError};
use crate::insight::InsightRecord;
use crate::segment::{Segment, SegmentFile};

/// The folder of the bucket segments live under.
const PREFIX: &str = "events.segments";

/// The catalog: each scope's settled days and their live generation; the
/// days with rows in `ses_insights`, with when the last was written (the
/// compactor's work list). A store from before segments lists its days as
/// hot and quiet, so the compactor moves them, a day at a time.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE ses_segments (
    account    TEXT COLLATE "C" NOT NULL,
    day        BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    rows       BIGINT NOT NULL,
    PRIMARY KEY (account, day)
);
CREATE TABLE ses_hot_days (
    account    TEXT COLLATE "C" NOT NULL,
    day        BIGINT NOT NULL,
    last_write BIGINT NOT NULL,
    PRIMARY KEY (account, day)
);
INSERT INTO ses_hot_days (account, day, last_write)
    SELECT DISTINCT account, floor(send_ts::numeric / 86400000)::bigint, 0 FROM ses_insights;
"#;

/// The SQL of a day's lease, for `pg_try_advisory_xact_lock` (compaction)
/// and `pg_advisory_xact_lock_shared` (ingest): `$1` the scope, `d` the day.
pub(super) const DAY_LOCK: &str = "hashtextextended('ses-export day ' || $1 || ' ' || d::text, 0)";

/// Where a PostgreSQL store keeps its settled days: an object store, and a
/// local cache of the files it reads.
#[derive(Clone)]
pub struct SegmentBucket {
    store: Arc<dyn ObjectStore>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for SegmentBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentBucket")
            .field("store", &self.store.to_string())
            .field("cache", &self.cache.dir)
            .finish()
    }
}

#[derive(Debug)]
struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Each cached file: its size and when it was last used.
    files: HashMap<PathBuf, (u64, u64)>,
    bytes: u64,
    tick: u64,
}

impl SegmentBucket {
    /// Segments in `store` (under `events.segments/`), read through a cache
    /// of at most `cache_bytes` in `cache_dir`, which is emptied now (what
    /// an earlier run cached is fetched again when needed).
    pub fn new(store: Arc<dyn ObjectStore>, cache_dir: &Path, cache_bytes: u64) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(cache_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(cache_dir)?;
        Ok(SegmentBucket {
            store,
            cache: Arc::new(Cache {
                dir: cache_dir.to_owned(),
                max_bytes: cache_bytes,
                state: Mutex::default(),
            }),
        })
    }

    /// Segments in the managed bucket of `storage` (a cluster's bucket).
    pub fn in_storage(
        storage: &crate::destination::Storage,
        cache_dir: &Path,
        cache_bytes: u64,
    ) -> std::io::Result<Self> {
        SegmentBucket::new(Arc::clone(&storage.managed().store), cache_dir, cache_bytes)
    }

    fn key(scope: &str, day: i64, generation: i64) -> ObjectPath {
        ObjectPath::from(format!(
            "{PREFIX}/{}/{}",
            settled::day_folder(scope, day),
            settled::part_name(generation)
        ))
    }

    fn cached(&self, scope: &str, day: i64, generation: i64) -> PathBuf {
        self.cache
            .dir
            .join(settled::day_folder(scope, day))
            .join(settled::part_name(generation))
    }

    /// The generations of `day` in the bucket, named by the catalog or not.
    async fn generations(&self, scope: &str, day: i64) -> Result<Vec<i64>, StoreError> {
        let folder = ObjectPath::from(format!("{PREFIX}/{}", settled::day_folder(scope, day)));
        let objects: Vec<_> = self.store.list(Some(&folder)).try_collect().await.map_err(generic)?;
        Ok(objects
            .iter()
            .filter_map(|o| o.location.filename().and_then(settled::generation_of))
            .collect())
    }

    /// Generation `generation` of `day` as a local file (fetched into the
    /// cache if it is not there); `None` when the bucket has no such object.
    async fn fetch(&self, scope: &str, day: i64, generation: i64) -> Result<Option<PathBuf>, StoreError> {
        let path = self.cached(scope, day, generation);
        if self.cache.used(&path) {
            return Ok(Some(path));
        }
        let object = match self.store.get(&Self::key(scope, day, generation)).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(generic(e)),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(generic)?;
        // Fetched under a name of its own and renamed when whole: two
        // fetches of one file at once each write their own.
        let partial = dir.join(format!(
            "{}.{}.partial",
            settled::part_name(generation),
            crate::ids::request_id()
        ));
        let mut file = tokio::fs::File::create(&partial).await.map_err(generic)?;
        let mut chunks = object.into_stream();
        let mut bytes = 0;
        let copied: Result<(), StoreError> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(generic)?;
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(generic)?;
            }
            file.flush().await.map_err(generic)
        }
        .await;
        if let Err(e) = copied.and(tokio::fs::rename(&partial, &path).await.map_err(generic)) {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
        self.cache.add(path.clone(), bytes);
        Ok(Some(path))
    }

    /// `day`'s segment as the catalog named it (`generation`); if a
    /// compaction retired that object since, the newest generation there is
    /// (a fold only adds to a day, and the rows a reader's snapshot still
    /// holds win over the file's); `None` when retention took the day.
    pub(super) async fn open(&self, scope: &str, day: i64, generation: i64) -> Result<Option<PathBuf>, StoreError> {
        if let Some(path) = self.fetch(scope, day, generation).await? {
            return Ok(Some(path));
        }
        match self.generations(scope, day).await?.into_iter().max() {
            Some(newest) if newest > generation => self.fetch(scope, day, newest).await,
            _ => Ok(None),
        }
    }

    /// Deletes `day`'s objects other than generation `keep` (all of them
    /// with `None`): retired generations, and what a compaction cut short
    /// left. Failures are logged; what stays is deleted next time.
    async fn delete_except(&self, scope: &str, day: i64, keep: Option<i64>) {
        let generations = match self.generations(scope, day).await {
            Ok(generations) => generations,
            Err(e) => {
                tracing::warn!(error = %e, scope, day, "listing a day's segments failed; retired ones stay for now");
                return;
            }
        };
        for generation in generations.into_iter().filter(|g| Some(*g) != keep) {
            if let Err(e) = self.store.delete(&Self::key(scope, day, generation)).await {
                tracing::warn!(error = %e, scope, day, generation, "a retired segment stays for now");
            }
        }
    }

    /// Uploads the local file `path` as `day`'s generation `generation`.
    async fn upload(&self, path: &Path, scope: &str, day: i64, generation: i64) -> Result<(), StoreError> {
        let mut file = tokio::fs::File::open(path).await.map_err(generic)?;
        let mut writer =
            object_store::buffered::BufWriter::new(Arc::clone(&self.store), Self::key(scope, day, generation));
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(generic(e));
        }
        writer.shutdown().await.map_err(generic)
    }
}

impl Cache {
    /// Whether `path` is cached, marking it used.
    fn used(&self, path: &Path) -> bool {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.tick += 1;
        let tick = state.tick;
        match state.files.get_mut(path) {
            Some(entry) => {
                entry.1 = tick;
                true
            }
            None => false,
        }
    }

    /// Adds a file, then deletes the least recently used past the cache's
    /// size (a reader that has one open keeps reading it).
    fn add(&self, path: PathBuf, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.tick += 1;
        let tick = state.tick;
        if state.files.insert(path, (bytes, tick)).is_none() {
            state.bytes += bytes;
        }
        while state.bytes > self.max_bytes && state.files.len() > 1 {
            let Some(oldest) = state
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some((size, _)) = state.files.remove(&oldest) {
                state.bytes -= size;
            }
            let _ = std::fs::remove_file(&oldest);
        }
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Generic {
        backend: BACKEND,
        source: Box::new(e),
    }
}

/// The days `plan` may settle or fold, oldest first.
pub(super) async fn candidates(
    client: &deadpool_postgres::Client,
    plan: &CompactionPlan,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = client
        .query(
            "SELECT account, day FROM ses_hot_days WHERE day < $1 AND last_write <= $2 ORDER BY day, account",
            &[&crate::clock::day_of(plan.settled_before), &plan.quiet_since],
        )
        .await
        .map_err(generic)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Settles `scope`'s `day`, or folds its late records into its segment, if
/// `plan` says so and no other server holds the day; in one transaction
/// that holds the day's lease throughout.
///
/// The steps, and what a crash after each leaves: (1) write generation N+1
/// (above every generation in the bucket) to a local file and upload it:
/// nothing names it, reads go on with N and the rows, and the next
/// compaction of the day deletes it; (2) commit the catalog naming N+1 with
/// the folded rows deleted: reads see N and the rows, or N+1 alone;
/// (3) delete N: an object a crash leaves here is deleted by the day's next
/// compaction or by retention.
pub(super) async fn compact_day(
    client: &mut deadpool_postgres::Client,
    bucket: &SegmentBucket,
    scope: &str,
    day: i64,
    plan: &CompactionPlan,
    record_sql: &str,
    record: fn(&tokio_postgres::Row) -> InsightRecord,
) -> Result<Compacted, StoreError> {
    let tx = client.transaction().await.map_err(generic)?;
    let leased: bool = tx
        .query_one(
            &format!("SELECT pg_try_advisory_xact_lock({DAY_LOCK}) FROM (SELECT $2::int8 AS d) AS days"),
            &[&scope, &day],
        )
        .await
        .map_err(generic)?
        .get(0);
    if !leased {
        // Another server is compacting the day, or an ingest is writing
        // to it: the next round sees it again.
        return Ok(Compacted::default());
    }
    let range = Interval::new(day_start(day), day_start(day) + DAY_MILLIS - 1);
    let late: i64 = tx
        .query_one(
            "SELECT count(*) FROM ses_insights WHERE account = $1 AND send_ts BETWEEN $2 AND $3",
            &[&scope, &range.start, &range.end],
        )
        .await
        .map_err(generic)?
        .get(0);
    let old: Option<(i64, i64)> = tx
        .query_opt(
            "SELECT generation, rows FROM ses_segments WHERE account = $1 AND day = $2",
            &[&scope, &day],
        )
        .await
        .map_err(generic)?
        .map(|r| (r.get(0), r.get(1)));
    if late == 0 {
        tx.execute(
            "DELETE FROM ses_hot_days WHERE account = $1 AND day = $2",
            &[&scope, &day],
        )
        .await
        .map_err(generic)?;
        tx.commit().await.map_err(generic)?;
        return Ok(Compacted::default());
    }
    if let Some((_, rows)) = old
        && u128::from(late.unsigned_abs()) * u128::from(plan.fold_ratio) < u128::from(rows.unsigned_abs())
    {
        // Too few late records to rewrite the day for: scans merge them.
        return Ok(Compacted::default());
    }
    let written = bucket.generations(scope, day).await?.into_iter().max();
    let generation = old.map(|(g, _)| g).max(written).unwrap_or(0) + 1;
    let old_file = match old {
        Some((g, _)) => Some(bucket.fetch(scope, day, g).await?.ok_or_else(|| {
            generic(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the catalog names generation {g} of {scope} day {day}, which the bucket does not hold"),
            ))
        })?),
        None => None,
    };

    // The day's rows stream from the database into a writer on a blocking
    // thread, a chunk at a time.
    let path = bucket.cached(scope, day, generation);
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    tokio::fs::create_dir_all(&dir).await.map_err(generic)?;
    let partial = dir.join(format!(
        "{}.{}.partial",
        settled::part_name(generation),
        crate::ids::request_id()
    ));
    let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel::<Result<Vec<InsightRecord>, StoreError>>(4);
    let writing = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let old = old_file
                .map(|path| SegmentFile::open(&path).and_then(|f| Segment::open(f).map_err(std::io::Error::other)))
                .transpose()
                .map_err(generic)?;
            let file = std::fs::File::create(&partial).map_err(generic)?;
            let rows = rows_rx.into_iter().flat_map(|chunk| match chunk {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            });
            let (written, out) = settled::write_day(std::io::BufWriter::new(file), old.as_ref(), range, rows, BACKEND)?;
            let file = out.into_inner().map_err(|e| generic(e.into_error()))?;
            file.sync_all().map_err(generic)?;
            Ok(written)
        })
    };
    let reading = async {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&scope, &range.start, &range.end];
        let stream = tx.query_raw(record_sql, params).await.map_err(generic)?;
        let mut stream = std::pin::pin!(stream.chunks(settled::CHUNK));
        while let Some(chunk) = stream.next().await {
            let records: Result<Vec<InsightRecord>, StoreError> = chunk
                .into_iter()
                .map(|row| row.map(|r| record(&r)).map_err(generic))
                .collect();
            let failed = records.is_err();
            if rows_tx.send(records).is_err() || failed {
                break;
            }
        }
        drop(rows_tx);
        Ok::<(), StoreError>(())
    };
    let (read, written) = tokio::join!(reading, writing);
    let outcome = read.and(written.map_err(generic).and_then(|w| w));
    let rows = match outcome {
        Ok(rows) => rows,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    if let Err(e) = bucket.upload(&partial, scope, day, generation).await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    let rows_i64 = i64::try_from(rows).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO ses_segments (account, day, generation, rows) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account, day) DO UPDATE SET generation = EXCLUDED.generation, rows = EXCLUDED.rows",
        &[&scope, &day, &generation, &rows_i64],
    )
    .await
    .map_err(generic)?;
    tx.execute(
        "DELETE FROM ses_insights WHERE account = $1 AND send_ts BETWEEN $2 AND $3",
        &[&scope, &range.start, &range.end],
    )
    .await
    .map_err(generic)?;
    tx.execute(
        "DELETE FROM ses_hot_days WHERE account = $1 AND day = $2",
        &[&scope, &day],
    )
    .await
    .map_err(generic)?;
    if let Err(e) = tx.commit().await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(generic(e));
    }
    // The file just written is the cache's copy of the new generation.
    let size = tokio::fs::metadata(&partial).await.map_or(0, |m| m.len());
    match tokio::fs::rename(&partial, &path).await {
        Ok(()) => bucket.cache.add(path, size),
        Err(_) => {
            let _ = tokio::fs::remove_file(&partial).await;
        }
    }
    bucket.delete_except(scope, day, Some(generation)).await;
    Ok(Compacted { segments: 1, rows })
}

/// Retention: deletes the objects of days the catalog no longer names
/// (after the transaction that dropped them committed).
pub(super) async fn delete_days(bucket: &SegmentBucket, days: &[(String, i64)]) {
    for (scope, day) in days {
        bucket.delete_except(scope, *day, None).await;
    }
}
