//! The PostgreSQL backends pass the same conformance suites as the others,
//! against the database in `SES_EXPORT_TEST_DATABASE_URL` (`.ci/run` sets
//! it), each test in a schema of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ses_export_core::job::{self, JobStore};
use ses_export_core::pg::{self, PgEventStore, PgJobStore};
use ses_export_core::store::{EventStore, conformance};

/// The database, or `None` (with a note) when none is configured outside CI.
fn database_url() -> Option<String> {
    match std::env::var("SES_EXPORT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "SES_EXPORT_TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipping: set SES_EXPORT_TEST_DATABASE_URL=postgres://... to run the PostgreSQL suites");
            None
        }
    }
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A fresh schema; returns a URL whose connections use it.
async fn schema(base: &str, test: &str) -> String {
    let name = format!(
        "t_{}_{test}_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed),
        nanos()
    );
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{name}")
}

/// Drops the schemas this test process made (runs never see each other's
/// data, and the database does not fill up with old runs).
async fn drop_schemas(base: &str, test: &str) {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let prefix = format!("t\\_{}\\_{test}\\_%", std::process::id());
    let rows = client
        .query("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", &[&prefix])
        .await
        .expect("list schemas");
    for row in rows {
        let name: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .await;
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_event_store_conforms() {
    let Some(base) = database_url() else { return };
    conformance::run(|| {
        let base = base.clone();
        async move {
            let pool = pg::connect(&schema(&base, "events").await, 4).await.expect("connect");
            Box::new(PgEventStore::new(pool)) as Box<dyn EventStore>
        }
    })
    .await;
    // A store that refuses a record halfway through a batch (a trigger, as
    // a constraint or a full disk would): nothing of the batch is kept.
    let url = schema(&base, "events").await;
    let pool = pg::connect(&url, 4).await.expect("connect");
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
            let pool = pg::connect(&schema(&base, "jobs").await, 8).await.expect("connect");
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
    let starts: Vec<_> = (0..4).map(|_| tokio::spawn(pg::connect_owned(url.clone()))).collect();
    for start in starts {
        start.await.expect("task").expect("every server starts");
    }
    drop_schemas(&base, "migrations").await;
}
