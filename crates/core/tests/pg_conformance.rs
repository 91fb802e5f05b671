//! The PostgreSQL backends pass the same conformance suites as the others,
//! against the database in `SES_EXPORT_TEST_DATABASE_URL` (`.ci/run` sets
//! it), each test in a schema of its own.

use ses_export_core::clock::Millis;
use std::sync::Arc;

use ses_export_core::backend::postgres::{self, PgEventStore, PgJobStore, SegmentBucket};
use ses_export_core::event_store::{EventStore, conformance};
use ses_export_core::job::{self, JobStore};

mod common;

use common::{client, database_url, drop_schemas, older, schema};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_event_store_conforms() {
    let Some(base) = database_url() else { return };
    conformance::run(|| {
        let base = base.clone();
        async move {
            let pool = postgres::connect(&schema(&base, "events").await, 4)
                .await
                .expect("connect");
            Box::new(PgEventStore::new(pool)) as Box<dyn EventStore>
        }
    })
    .await;
    // A store that refuses a record halfway through a batch (a trigger, as
    // a constraint or a full disk would): nothing of the batch is kept.
    let url = schema(&base, "events").await;
    let pool = postgres::connect(&url, 4).await.expect("connect");
    pool.get()
        .await
        .expect("client")
        .batch_execute(
            "CREATE FUNCTION refuse_yandex() RETURNS trigger AS $$ BEGIN \
               IF NEW.isp = 'Yandex' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_yandex BEFORE INSERT ON ses_insights FOR EACH ROW EXECUTE FUNCTION refuse_yandex();",
        )
        .await
        .expect("trigger");
    conformance::check_failed_batch_leaves_nothing(&PgEventStore::new(pool)).await;
    drop_schemas(&base, "events").await;
}

/// A bucket that is the folder `folder` (the cluster test runs one on an
/// S3 server), read through a server's cache in `cache`.
fn folder_bucket(folder: &std::path::Path, cache: &std::path::Path) -> SegmentBucket {
    std::fs::create_dir_all(folder).expect("bucket");
    let objects = object_store::local::LocalFileSystem::new_with_prefix(folder).expect("bucket");
    SegmentBucket::new(Arc::new(objects), cache, 64 << 20).expect("cache")
}

/// A bucket of its own and a cache, in `dir`.
fn bucket(dir: &std::path::Path) -> SegmentBucket {
    static BUCKETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUCKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    folder_bucket(&dir.join(format!("bucket-{n}")), &dir.join(format!("cache-{n}")))
}

/// A store whose settled days are segments in a bucket.
async fn settled_store(base: &str, dir: &std::path::Path, test: &str) -> PgEventStore {
    let pool = postgres::connect(&schema(base, test).await, 4).await.expect("connect");
    PgEventStore::with_segments(pool, bucket(dir))
}

/// The same suite with every day settled into a segment in the bucket
/// after each batch, late records kept beside it (merged at read) or
/// folded in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_event_store_conforms_with_settled_days() {
    let Some(base) = database_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    for fold_ratio in [0, u64::MAX] {
        conformance::run(|| {
            let (base, dir) = (base.clone(), dir.path().to_owned());
            async move {
                let store = settled_store(&base, &dir, "settled").await;
                Box::new(conformance::SettledAfterEachBatch::new(Box::new(store), fold_ratio)) as Box<dyn EventStore>
            }
        })
        .await;
    }
    drop_schemas(&base, "settled").await;
}

/// A database from before segments (its days all in the row tables) opens
/// with every day listed for the compactor, which moves them into the
/// bucket with nothing lost; and a store opened without the bucket then
/// refuses to read rather than miss the settled days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_before_segments_move_into_them() {
    use futures_util::TryStreamExt;
    use ses_export_core::clock::Interval;
    use ses_export_core::event_store::CompactionPlan;
    use ses_export_core::event_store::conformance::{account, generated};
    let Some(base) = database_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = schema(&base, "upgrade").await;
    let segments = bucket(dir.path());
    let pool = postgres::connect(&url, 4).await.expect("connect");
    let store = PgEventStore::with_segments(pool.clone(), segments.clone());
    store.write_batch(&account(), generated(23, 600)).await.expect("ingest");
    let everything = Interval::EVERYTHING;
    let state = |store: PgEventStore| async move {
        let records: Vec<_> = store
            .scan_insights(&account(), everything)
            .try_collect()
            .await
            .expect("scan");
        let counts = store.daily_counts(&account(), everything).await.expect("counts");
        let first = store
            .message_insights(&account(), &records[0].message_id)
            .await
            .expect("message");
        let reputation = store.reputation(&account(), 10_000).await.expect("reputation");
        (records, counts, first, reputation)
    };
    let before = state(store.clone()).await;
    drop((store, pool));
    // The previous schema: no catalog, no work list.
    let url = older(&base, "upgrade", 5, &url).await;
    let pool = postgres::connect(&url, 4).await.expect("connect and migrate");
    let store = PgEventStore::with_segments(pool.clone(), segments);
    let plan = CompactionPlan {
        settled_before: Millis(i64::MAX / 2),
        quiet_since: Millis::MAX,
        fold_ratio: 16,
    };
    let done = store.compact(&plan).await.expect("compact");
    assert!(done.segments > 0, "{done:?}");
    assert_eq!(state(store).await, before);
    let rows: i64 = pool
        .get()
        .await
        .expect("client")
        .query_one("SELECT count(*) FROM ses_insights", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "every day moved into the bucket");
    let blind = PgEventStore::new(pool);
    let refused = blind
        .scan_insights(&account(), everything)
        .try_collect::<Vec<_>>()
        .await;
    assert!(
        refused.is_err(),
        "a store without the bucket must not miss settled days"
    );
    drop_schemas(&base, "upgrade").await;
}

/// What a server killed in the middle of a compaction leaves in the
/// bucket (an object uploaded but never named by the catalog, a retired
/// generation not yet deleted) is neither read nor overwritten: the next
/// compaction of the day writes a generation above both and deletes them,
/// and every record is there once, with its flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_compaction_leaves_is_never_read() {
    use futures_util::TryStreamExt;
    use ses_export_core::clock::Interval;
    use ses_export_core::event_store::CompactionPlan;
    use ses_export_core::event_store::conformance::{account, generated, reference_records};
    let Some(base) = database_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("bucket");
    let segments = folder_bucket(&folder, &dir.path().join("cache"));
    let pool = postgres::connect(&schema(&base, "killed").await, 4)
        .await
        .expect("connect");
    let store = PgEventStore::with_segments(pool, segments);
    let stream = generated(31, 300);
    let (first, late) = stream.split_at(stream.len() * 2 / 3);
    store.write_batch(&account(), first.to_vec()).await.expect("ingest");
    let plan = CompactionPlan {
        settled_before: Millis(i64::MAX / 2),
        quiet_since: Millis::MAX,
        fold_ratio: u64::MAX,
    };
    assert!(store.compact(&plan).await.expect("settle").segments > 0);
    // Each settled day: a generation 2 that was uploaded and never named
    // (not even a Parquet file), and a retired generation 0.
    let days: Vec<std::path::PathBuf> = walk(&folder)
        .into_iter()
        .filter(|f| f.ends_with("part-1.parquet"))
        .map(|f| f.parent().expect("day").to_owned())
        .collect();
    assert!(!days.is_empty());
    for day in &days {
        std::fs::write(day.join("part-2.parquet"), b"half an upload").expect("orphan");
        std::fs::copy(day.join("part-1.parquet"), day.join("part-0.parquet")).expect("retired");
    }
    let everything = Interval::EVERYTHING;
    let scan = |store: PgEventStore| async move {
        store
            .scan_insights(&account(), everything)
            .try_collect::<Vec<_>>()
            .await
            .expect("scan")
    };
    // Late events for every day, read at once beside the live generation.
    store.write_batch(&account(), late.to_vec()).await.expect("late");
    let expected = reference_records(&stream);
    assert_eq!(scan(store.clone()).await, expected);
    // A day with late records is folded into generation 3, and the rest
    // of it is gone; a day without waits for its next compaction.
    assert!(store.compact(&plan).await.expect("fold").segments > 0);
    assert_eq!(scan(store.clone()).await, expected);
    for day in &days {
        let names: Vec<String> = walk(day)
            .iter()
            .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        if names.iter().any(|n| n == "part-3.parquet") {
            assert_eq!(names, ["part-3.parquet"], "{}", day.display());
        } else {
            assert_eq!(names, ["part-0.parquet", "part-1.parquet", "part-2.parquet"]);
        }
    }
    drop_schemas(&base, "killed").await;
}

/// Scans while late events arrive and compactions (two servers' worth)
/// fold them in: every scan sees each record once, in order, and none with
/// a flag it will not end with; at the end, the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_during_compactions_see_each_record_once() {
    let Some(base) = database_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = schema(&base, "concurrent").await;
    let folder = dir.path().join("bucket");
    let server = |cache: &str| folder_bucket(&folder, &dir.path().join(cache));
    let store = PgEventStore::with_segments(postgres::connect(&url, 8).await.expect("connect"), server("cache-1"));
    // A second server on the same database and bucket, with a cache of its own.
    let other = PgEventStore::with_segments(postgres::connect(&url, 4).await.expect("connect"), server("cache-2"));
    let compactors: Vec<Arc<dyn EventStore>> = vec![Arc::new(store.clone()), Arc::new(other)];
    conformance::check_scans_during_compactions(Arc::new(store), compactors).await;
    drop_schemas(&base, "concurrent").await;
}

/// Retention drops a settled day whole: its catalog row and its objects in
/// the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_settled_days_from_the_bucket() {
    use ses_export_core::event_store::CompactionPlan;
    use ses_export_core::event_store::conformance::{account, generated};
    let Some(base) = database_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("bucket");
    let segments = folder_bucket(&folder, &dir.path().join("cache"));
    let pool = postgres::connect(&schema(&base, "retention").await, 4)
        .await
        .expect("connect");
    let store = PgEventStore::with_segments(pool.clone(), segments);
    let stream = generated(37, 200);
    let last = stream.iter().map(|e| e.mail.timestamp).max().expect("events");
    store.write_batch(&account(), stream).await.expect("ingest");
    let plan = CompactionPlan {
        settled_before: Millis(i64::MAX / 2),
        quiet_since: Millis::MAX,
        fold_ratio: u64::MAX,
    };
    assert!(store.compact(&plan).await.expect("settle").segments > 1);
    let days = walk(&folder).len();
    assert!(days > 1, "{days} objects");
    // Everything before the last day goes; the last day stays.
    let cutoff = ses_export_core::clock::day_start(ses_export_core::clock::day_of(last));
    while store.expire(cutoff, 1_000).await.expect("expire") == 1_000 {}
    let left = walk(&folder);
    assert_eq!(left.len(), 1, "{left:?}");
    let catalog: i64 = pool
        .get()
        .await
        .expect("client")
        .query_one("SELECT count(*) FROM ses_segments", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(catalog, 1);
    drop_schemas(&base, "retention").await;
}

/// The files under `dir`, sorted.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_job_store_conforms() {
    let Some(base) = database_url() else { return };
    job::conformance::run(|| {
        let base = base.clone();
        async move {
            let pool = postgres::connect(&schema(&base, "jobs").await, 8)
                .await
                .expect("connect");
            Arc::new(PgJobStore::new(pool)) as Arc<dyn JobStore>
        }
    })
    .await;
    drop_schemas(&base, "jobs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_safe_when_servers_start_at_once() {
    let Some(base) = database_url() else { return };
    let url = schema(&base, "migrations").await;
    let starts: Vec<_> = (0..4)
        .map(|_| tokio::spawn(postgres::connect_owned(url.clone())))
        .collect();
    for start in starts {
        start.await.expect("task").expect("every server starts");
    }
    drop_schemas(&base, "migrations").await;
}

/// A database of the version before the revised definitions opens with its
/// flags, lessons and rollups derived again from the kept events: the same
/// as a database that ingested them afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_before_the_revised_definitions_are_rederived() {
    use ses_export_core::clock::Interval;
    use ses_export_core::event_store::conformance::{account, generated};
    let Some(base) = database_url() else { return };
    let fresh = schema(&base, "rederive").await;
    let store = PgEventStore::new(postgres::connect(&fresh, 4).await.expect("connect"));
    store.write_batch(&account(), generated(17, 400)).await.expect("ingest");
    drop(store);
    // What the previous version would have derived.
    let old = older(&base, "rederive", 2, &fresh).await;
    let client = client(&old).await;
    let changed = client
        .execute(
            "UPDATE ses_insights SET flags = (flags & ~4096) | 4 WHERE flags & 4096 != 0",
            &[],
        )
        .await
        .expect("old flags");
    assert!(changed > 0, "the stream has suppression-list bounces");
    client
        .batch_execute("UPDATE ses_metric_days SET delivery_open = delivery, permanent_bounce = permanent_bounce + 1")
        .await
        .expect("old rollups");
    let everything = Interval::EVERYTHING;
    let mut states = Vec::new();
    for url in [&old, &fresh] {
        let store = PgEventStore::new(postgres::connect(url, 4).await.expect("connect and migrate"));
        let records: Vec<_> =
            futures_util::TryStreamExt::try_collect::<Vec<_>>(store.scan_insights(&account(), everything))
                .await
                .expect("scan");
        states.push((
            records,
            store.daily_counts(&account(), everything).await.expect("counts"),
        ));
    }
    assert_eq!(states[0], states[1]);
    drop_schemas(&base, "rederive").await;
}

/// A database from before complaints of multi-recipient messages taught a
/// feedback loop opens with its lessons derived again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_before_multi_recipient_complaints_taught_are_rederived() {
    use ses_export_core::event_store::conformance::{account, events, sample_records};
    let Some(base) = database_url() else { return };
    // Its third message has two recipients, one of whom complains.
    let fresh = schema(&base, "lessons").await;
    let store = PgEventStore::new(postgres::connect(&fresh, 4).await.expect("connect"));
    store
        .write_batch(&account(), events(&sample_records()))
        .await
        .expect("ingest");
    drop(store);
    // What the previous version learned: nothing from that complaint.
    let old = older(&base, "lessons", 3, &fresh).await;
    let forgotten = client(&old)
        .await
        .execute("DELETE FROM ses_learned WHERE lesson = 2", &[])
        .await
        .expect("forget");
    assert_eq!(forgotten, 1, "the complaint teaches its ISP's feedback loop");
    let mut learned = Vec::new();
    for url in [&old, &fresh] {
        let pool = postgres::connect(url, 2).await.expect("connect and migrate");
        let rows = pool
            .get()
            .await
            .expect("client")
            .query("SELECT account, lesson, value FROM ses_learned ORDER BY 1, 2, 3", &[])
            .await
            .expect("lessons");
        learned.push(
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i16>(1), r.get::<_, String>(2)))
                .collect::<Vec<_>>(),
        );
    }
    assert!(learned[0].iter().any(|l| l.1 == 2), "{:?}", learned[0]);
    assert_eq!(learned[0], learned[1]);
    drop_schemas(&base, "lessons").await;
}

/// A database from before regions existed (every row keyed by the bare
/// account) opens with its data in the default region it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_before_regions_are_the_default_regions() {
    use ses_export_core::clock::Interval;
    use ses_export_core::event_store::conformance::{account, events, sample_records};
    use ses_export_core::{Region, Scope};
    let Some(base) = database_url() else { return };
    let url = schema(&base, "regions").await;
    let store = PgEventStore::new(postgres::connect(&url, 4).await.expect("connect"));
    store
        .write_batch(&account(), events(&sample_records()))
        .await
        .expect("ingest");
    let everything = Interval::EVERYTHING;
    let before = store.daily_counts(&account(), everything).await.expect("counts");
    drop(store);
    let pool = postgres::connect(&url, 2).await.expect("connect");
    // A job and a rate bucket, as the previous version kept them too.
    let old_job = job::conformance::job(1, "job-from-before", 1_000);
    PgJobStore::new(pool.clone()).create(&old_job, 20).await.expect("job");
    let limiter = || postgres::PgRateLimiter::new(pool.clone());
    let create = ses_export_core::limits::LimitedOperation::CreateExportJob;
    assert!(ses_export_core::limits::RateLimiter::try_acquire(&limiter(), &old_job.account, create).await);
    drop(pool);
    // The previous version kept every row under the bare account.
    let url = older(&base, "regions", 4, &url).await;
    client(&url)
        .await
        .batch_execute(
            "UPDATE ses_messages SET account = split_part(account, '/', 1); \
             UPDATE ses_events SET account = split_part(account, '/', 1); \
             UPDATE ses_insights SET account = split_part(account, '/', 1); \
             UPDATE ses_metric_days SET account = split_part(account, '/', 1); \
             UPDATE ses_learned SET account = split_part(account, '/', 1); \
             UPDATE export_jobs SET account = split_part(account, '/', 1); \
             UPDATE rate_buckets SET account = split_part(account, '/', 1);",
        )
        .await
        .expect("bare accounts");
    let eu: Region = "eu-west-1".parse().expect("region");
    let pool = postgres::connect_with_default_region(&url, 4, &eu)
        .await
        .expect("connect and migrate");
    let store = PgEventStore::new(pool.clone());
    let in_eu = Scope::new(account().account().clone(), eu.clone());
    assert_eq!(store.daily_counts(&in_eu, everything).await.expect("counts"), before);
    assert!(
        store
            .daily_counts(&account(), everything)
            .await
            .expect("counts")
            .is_empty()
    );
    let jobs = PgJobStore::new(pool.clone());
    let job_in_eu = Scope::new(old_job.account.account().clone(), eu);
    assert!(jobs.get(&job_in_eu, &old_job.job_id).await.expect("get").is_some());
    assert!(
        jobs.get(&old_job.account, &old_job.job_id)
            .await
            .expect("get")
            .is_none()
    );
    // The bucket the old call used is the default region's now.
    let buckets: Vec<String> = pool
        .get()
        .await
        .expect("client")
        .query("SELECT account FROM rate_buckets", &[])
        .await
        .expect("buckets")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(buckets, [job_in_eu.as_str()]);
    drop_schemas(&base, "regions").await;
}
