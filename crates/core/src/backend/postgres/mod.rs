//! PostgreSQL backends, for several servers sharing one database: the
//! event store, the job store (leases with `FOR UPDATE SKIP LOCKED`) and
//! cluster-wide rate limits (a row per bucket, updated atomically).
//!
//! Migrations run at start-up under an advisory lock, so servers starting
//! at once do not race. Text keys use the "C" collation: exports order text
//! by byte value, as exports order them.
//!
//! The stores take a [`Pool`] of `deadpool-postgres`, re-exported here on
//! purpose (with its `tokio_postgres`): an application may share its own
//! pool, and run its own SQL on the connections. Its version is part of
//! this crate's public surface.

mod events;
mod jobs;
mod limits;
#[cfg(feature = "test-support")]
pub mod older;
mod segments;
mod tls;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};

use super::OpenError;
use super::migrate::{SchemaTxn, Step};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use deadpool_postgres::{self, Pool};
pub use events::PgEventStore;
pub use jobs::PgJobStore;
pub use limits::PgRateLimiter;
pub use segments::SegmentBucket;

pub(crate) const BACKEND: &str = "postgres";

/// Any error of the driver or the pool, for the stores' error types.
pub(crate) fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// The schema, step by step ([`crate::backend::migrate`]).
const MIGRATIONS: &[Step] = &[
    Step::sql(
        r#"
CREATE TABLE ses_messages (
    account      TEXT COLLATE "C" NOT NULL,
    message_id   TEXT COLLATE "C" NOT NULL,
    send_ts      BIGINT NOT NULL,
    from_address TEXT,
    subject      TEXT,
    tags         TEXT NOT NULL,
    PRIMARY KEY (account, message_id)
);
CREATE TABLE ses_events (
    account                 TEXT COLLATE "C" NOT NULL,
    message_id              TEXT COLLATE "C" NOT NULL,
    event_id                BYTEA NOT NULL,
    recipient               TEXT COLLATE "C" NOT NULL,
    kind                    SMALLINT NOT NULL,
    ts                      BIGINT NOT NULL,
    bounce_type             TEXT,
    bounce_sub_type         TEXT,
    diagnostic_code         TEXT,
    complaint_sub_type      TEXT,
    complaint_feedback_type TEXT,
    PRIMARY KEY (account, message_id, event_id, recipient)
);
CREATE TABLE ses_insights (
    account           TEXT COLLATE "C" NOT NULL,
    send_ts           BIGINT NOT NULL,
    message_id        TEXT COLLATE "C" NOT NULL,
    destination       TEXT COLLATE "C" NOT NULL,
    from_address      TEXT,
    subject           TEXT,
    isp               TEXT NOT NULL,
    email_identity    TEXT,
    configuration_set TEXT,
    tenant_name       TEXT,
    recipient_count   INTEGER NOT NULL,
    flags             INTEGER NOT NULL,
    PRIMARY KEY (account, send_ts, message_id, destination)
);
CREATE TABLE ses_metric_days (
    account            TEXT COLLATE "C" NOT NULL,
    day                BIGINT NOT NULL,
    email_identity     TEXT COLLATE "C" NOT NULL,
    configuration_set  TEXT COLLATE "C" NOT NULL,
    isp                TEXT COLLATE "C" NOT NULL,
    tenant_name        TEXT COLLATE "C" NOT NULL,
    send               BIGINT NOT NULL,
    complaint          BIGINT NOT NULL,
    permanent_bounce   BIGINT NOT NULL,
    transient_bounce   BIGINT NOT NULL,
    open               BIGINT NOT NULL,
    click              BIGINT NOT NULL,
    delivery           BIGINT NOT NULL,
    delivery_open      BIGINT NOT NULL,
    delivery_click     BIGINT NOT NULL,
    delivery_complaint BIGINT NOT NULL,
    PRIMARY KEY (account, day, email_identity, configuration_set, isp, tenant_name)
);
CREATE TABLE export_jobs (
    account       TEXT COLLATE "C" NOT NULL,
    job_id        TEXT COLLATE "C" NOT NULL,
    source_type   TEXT NOT NULL,
    status        TEXT NOT NULL,
    request       TEXT NOT NULL,
    created       BIGINT NOT NULL,
    completed     BIGINT,
    failure       TEXT,
    processed     BIGINT,
    exported      BIGINT,
    output_key    TEXT,
    lease_owner   TEXT,
    lease_expires BIGINT,
    PRIMARY KEY (account, job_id)
);
CREATE INDEX export_jobs_by_time ON export_jobs (account, created DESC, job_id DESC);
CREATE INDEX export_jobs_by_status ON export_jobs (status, created, job_id);
CREATE TABLE rate_buckets (
    account   TEXT NOT NULL,
    operation TEXT NOT NULL,
    tokens    DOUBLE PRECISION NOT NULL,
    updated   BIGINT NOT NULL,
    PRIMARY KEY (account, operation)
);
"#,
    ),
    // A message's text is kept once, in ses_messages (docs/security.md).
    Step::sql(
        r#"
ALTER TABLE ses_insights DROP COLUMN from_address, DROP COLUMN subject;
CREATE INDEX ses_messages_by_send_ts ON ses_messages (send_ts);
"#,
    ),
    // Metrics and insight records as AWS defines them: what the account's
    // events teach; flags and rollups are derived again.
    Step::rederiving(
        r#"
CREATE TABLE ses_learned (
    account TEXT COLLATE "C" NOT NULL,
    lesson  SMALLINT NOT NULL,
    value   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, lesson, value)
);
"#,
    ),
    // A complaint teaches its ISP's feedback loop from a message of any
    // number of recipients (SPEC §5 as of 2026-12-06): what was learned is
    // derived again; no table changes.
    Step::rederiving(""),
    // Everything is kept per account and region (`Scope`): what was kept
    // before regions existed becomes the default region's (the migrating
    // transaction sets `ses_export.default_region`).
    Step::sql(
        r#"
UPDATE ses_messages SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE ses_events SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE ses_insights SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE ses_metric_days SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE ses_learned SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE export_jobs SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
UPDATE rate_buckets SET account = account || '/' || current_setting('ses_export.default_region') WHERE strpos(account, '/') = 0;
"#,
    ),
    // Settled days as segments in the bucket, and the compactor's work list
    // (docs/ARCHITECTURE.md, "the columnar engine").
    Step::sql(segments::SCHEMA),
];

/// A lock id for migrations, the same for every server.
const MIGRATION_LOCK: i64 = 0x0005_e5e4_0000_0001;

/// Connects a pool to `url` (`postgres://...`, libpq-style parameters
/// included: `?options=-c%20search_path%3Dmy_schema` picks a schema;
/// `sslmode` and `sslrootcert` as libpq reads them, see the `tls` module) and
/// brings the schema up to date.
pub async fn connect(url: &str, max_connections: usize) -> Result<Pool, OpenError> {
    connect_with_default_region(url, max_connections, &crate::Region::us_east_1()).await
}

/// Like [`connect`]; what was kept before regions existed becomes
/// `default_region`'s when the database is migrated.
pub async fn connect_with_default_region(
    url: &str,
    max_connections: usize,
    default_region: &crate::Region,
) -> Result<Pool, OpenError> {
    let pool = connect_pool(url, max_connections)?;
    migrate(&pool, default_region).await?;
    Ok(pool)
}

/// A pool for `url`, not yet connected nor migrated.
fn connect_pool(url: &str, max_connections: usize) -> Result<Pool, OpenError> {
    let (url, tls) = tls::split(url).map_err(OpenError::new)?;
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| OpenError::caused("database URL", e))?;
    config.ssl_mode(tls.ssl_mode());
    let manager = Manager::from_config(
        config,
        tls.connector().map_err(OpenError::new)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_connections)
        .build()
        .map_err(|e| OpenError::caused("database pool", e))
}

/// [`connect`] with an owned URL and a small pool, for spawning.
pub async fn connect_owned(url: String) -> Result<Pool, OpenError> {
    connect(&url, 2).await
}

/// Migrates under an advisory lock, in one transaction
/// ([`crate::backend::migrate`]): servers starting at once take turns, and
/// the second finds nothing to do.
async fn migrate(pool: &Pool, default_region: &crate::Region) -> Result<(), OpenError> {
    migrate_to(pool, default_region, MIGRATIONS).await
}

async fn migrate_to(pool: &Pool, default_region: &crate::Region, steps: &[Step]) -> Result<(), OpenError> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| OpenError::caused("connecting to PostgreSQL", e))?;
    let failed = |e| OpenError::caused("migrating the schema", e);
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.execute(
        "SELECT set_config('ses_export.default_region', $1, true)",
        &[&default_region.as_str()],
    )
    .await
    .map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS ses_export_migrations (version INTEGER PRIMARY KEY)")
        .await
        .map_err(failed)?;
    crate::backend::migrate::migrate(&mut Migrating { tx: &tx }, "PostgreSQL", steps)
        .await
        .map_err(|e| OpenError::caused("migrating the PostgreSQL database", e))?;
    tx.commit().await.map_err(failed)
}

struct Migrating<'a> {
    tx: &'a deadpool_postgres::Transaction<'a>,
}

impl SchemaTxn for Migrating<'_> {
    async fn version(&mut self) -> Result<usize, BoxError> {
        let row = self
            .tx
            .query_one("SELECT coalesce(max(version), 0) FROM ses_export_migrations", &[])
            .await?;
        Ok(usize::try_from(row.get::<_, i32>(0)).unwrap_or(0))
    }

    async fn run(&mut self, sql: &str) -> Result<(), BoxError> {
        Ok(self.tx.batch_execute(sql).await?)
    }

    async fn set_version(&mut self, version: usize) -> Result<(), BoxError> {
        // One row per step run, as every version of this backend kept them.
        let version = i32::try_from(version)?;
        self.tx
            .execute(
                "INSERT INTO ses_export_migrations (version) SELECT v FROM generate_series(1, $1) AS v \
                 ON CONFLICT DO NOTHING",
                &[&version],
            )
            .await?;
        Ok(())
    }

    async fn rederive(&mut self) -> Result<(), BoxError> {
        Ok(events::rederive(self.tx).await?)
    }
}
