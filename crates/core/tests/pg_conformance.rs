//! The PostgreSQL backends pass the same conformance suites as the others,
//! against the database in `SES_EXPORT_TEST_DATABASE_URL` (`.ci/run` sets
//! it), each test in a schema of its own.

use std::sync::Arc;

use ses_export_core::backend::postgres::{self, PgEventStore, PgJobStore};
use ses_export_core::event_store::{EventStore, conformance};
use ses_export_core::job::{self, JobStore};

mod common;

use common::{database_url, drop_schemas, schema};

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
    let stream = generated(17, 400);
    let (old, fresh) = (schema(&base, "rederive").await, schema(&base, "rederive").await);
    for url in [&old, &fresh] {
        let store = PgEventStore::new(postgres::connect(url, 4).await.expect("connect"));
        store.write_batch(&account(), stream.clone()).await.expect("ingest");
    }
    let pool = postgres::connect(&old, 2).await.expect("connect");
    let changed = pool
        .get()
        .await
        .expect("client")
        .execute(
            "UPDATE ses_insights SET flags = (flags & ~4096) | 4 WHERE flags & 4096 != 0",
            &[],
        )
        .await
        .expect("old flags");
    assert!(changed > 0, "the stream has suppression-list bounces");
    pool.get()
        .await
        .expect("client")
        .batch_execute(
            "UPDATE ses_metric_days SET delivery_open = delivery, permanent_bounce = permanent_bounce + 1; \
             DROP TABLE ses_learned; DELETE FROM ses_export_migrations WHERE version >= 3;",
        )
        .await
        .expect("the previous version");
    drop(pool);
    let everything = Interval::new(i64::MIN / 2, i64::MAX / 2);
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
    use ses_export_core::clock::Interval;
    use ses_export_core::event_store::conformance::{account, events, sample_records};
    let Some(base) = database_url() else { return };
    // Its third message has two recipients, one of whom complains.
    let stream = events(&sample_records());
    let (old, fresh) = (schema(&base, "lessons").await, schema(&base, "lessons").await);
    for url in [&old, &fresh] {
        let store = PgEventStore::new(postgres::connect(url, 4).await.expect("connect"));
        store.write_batch(&account(), stream.clone()).await.expect("ingest");
    }
    let pool = postgres::connect(&old, 2).await.expect("connect");
    let forgotten = pool
        .get()
        .await
        .expect("client")
        .execute("DELETE FROM ses_learned WHERE lesson = 2", &[])
        .await
        .expect("forget");
    assert_eq!(forgotten, 1, "the complaint teaches its ISP's feedback loop");
    pool.get()
        .await
        .expect("client")
        .batch_execute("DELETE FROM ses_export_migrations WHERE version >= 4;")
        .await
        .expect("the previous version");
    drop(pool);
    let everything = Interval::new(i64::MIN / 2, i64::MAX / 2);
    let mut counts = Vec::new();
    for url in [&old, &fresh] {
        let store = PgEventStore::new(postgres::connect(url, 4).await.expect("connect and migrate"));
        counts.push(store.daily_counts(&account(), everything).await.expect("counts"));
    }
    assert_eq!(counts[0], counts[1]);
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
    let everything = Interval::new(i64::MIN / 2, i64::MAX / 2);
    let before = store.daily_counts(&account(), everything).await.expect("counts");
    drop(store);
    let pool = postgres::connect(&url, 2).await.expect("connect");
    // A job and a rate bucket, as the previous version kept them too.
    let old_job = job::conformance::job(1, "job-from-before", 1_000);
    PgJobStore::new(pool.clone()).create(&old_job, 20).await.expect("job");
    let limiter = || postgres::PgRateLimiter::new(pool.clone());
    let create = ses_export_core::limits::LimitedOperation::CreateExportJob;
    assert!(ses_export_core::limits::RateLimiter::try_acquire(&limiter(), &old_job.account, create).await);
    pool.get()
        .await
        .expect("client")
        .batch_execute(
            "UPDATE ses_messages SET account = split_part(account, '/', 1); \
             UPDATE ses_events SET account = split_part(account, '/', 1); \
             UPDATE ses_insights SET account = split_part(account, '/', 1); \
             UPDATE ses_metric_days SET account = split_part(account, '/', 1); \
             UPDATE ses_learned SET account = split_part(account, '/', 1); \
             UPDATE export_jobs SET account = split_part(account, '/', 1); \
             UPDATE rate_buckets SET account = split_part(account, '/', 1); \
             DELETE FROM ses_export_migrations WHERE version >= 5;",
        )
        .await
        .expect("the previous version");
    drop(pool);
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
