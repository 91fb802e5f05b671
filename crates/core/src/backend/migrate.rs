//! The one migration scheme of both databases. A schema is a list of
//! [`Step`]s; a database records how many it has run; opening it runs the
//! rest, and re-derives what events mean when a step asks for it, all in
//! one transaction: a database is at one version or the next, never
//! between. Each backend says how its transaction does the four things
//! ([`SchemaTxn`]); the order and the rules are here.

use super::OpenError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One step of a schema.
pub(crate) struct Step {
    /// The statements (may be empty: a step that only re-derives).
    pub sql: &'static str,
    /// Whether what the kept events mean changed with this step: a database
    /// that held data from before it has its records' flags, rollups and
    /// lessons derived again by replaying its events, once, after the last
    /// step (an upgrade across several such steps replays once).
    pub rederive: bool,
}

impl Step {
    pub(crate) const fn sql(sql: &'static str) -> Self {
        Step { sql, rederive: false }
    }

    pub(crate) const fn rederiving(sql: &'static str) -> Self {
        Step { sql, rederive: true }
    }
}

/// A database's migrating transaction.
#[allow(async_fn_in_trait)]
pub(crate) trait SchemaTxn {
    /// How many steps the database has run (0 when it is new).
    async fn version(&mut self) -> Result<usize, BoxError>;
    /// Runs a step's statements.
    async fn run(&mut self, sql: &str) -> Result<(), BoxError>;
    /// Records that the first `version` steps have run.
    async fn set_version(&mut self, version: usize) -> Result<(), BoxError>;
    /// Derives records' flags, rollups and lessons again from the kept
    /// events (through `event_store::batch::replay`).
    async fn rederive(&mut self) -> Result<(), BoxError>;
}

/// Brings the database `txn` is in up to the last of `steps`. A database
/// newer than this build is refused, not guessed at. The caller commits.
pub(crate) async fn migrate<T: SchemaTxn>(txn: &mut T, database: &str, steps: &[Step]) -> Result<(), OpenError> {
    let version = txn
        .version()
        .await
        .map_err(|e| OpenError::caused("reading the schema version", e))?;
    if version > steps.len() {
        return Err(OpenError::new(format!(
            "the {database} database is at schema version {version}, newer than this build's {}",
            steps.len()
        )));
    }
    for (i, step) in steps.iter().enumerate().skip(version) {
        if !step.sql.is_empty() {
            txn.run(step.sql)
                .await
                .map_err(|e| OpenError::caused(format!("migration {}", i + 1), e))?;
        }
    }
    if version < steps.len() {
        txn.set_version(steps.len())
            .await
            .map_err(|e| OpenError::caused("recording the schema version", e))?;
    }
    // A new database (version 0) has nothing to derive.
    if version > 0 && steps[version..].iter().any(|s| s.rederive) {
        tracing::info!(
            database,
            "re-deriving insight records and metric rollups from the kept events (once)"
        );
        txn.rederive()
            .await
            .map_err(|e| OpenError::caused("re-deriving from the kept events", e))?;
    }
    Ok(())
}

/// Why a database with settled days is not re-derived: replaying reaches
/// the rows of hot days only (a settled day's records live in its segment,
/// not in the tables), so re-deriving would leave settled days' records
/// and rollups with the old meaning and drop their lessons. The upgrade is
/// refused, and the database stays as it was, rather than half-derived.
pub(crate) fn settled_days_refused(settled: i64) -> String {
    format!(
        "this version changes what kept events mean, and re-deriving reaches hot days only: the database keeps \
         {settled} settled days as segments, which it would leave with the old meaning; it is left at its \
         previous version"
    )
}

/// What older versions of this crate kept, for tests of upgrades (feature
/// `test-support`): each backend makes an older database by the steps of
/// that time, as they ran, and fills it from a database of today through
/// these columns, so a later migration (a new column, a new metric) does
/// not change what an older database is.
#[cfg(feature = "test-support")]
pub(crate) mod older {
    /// The event tables as both databases had them up to schema 6: name
    /// (PostgreSQL's start with `ses_`), the schema that made them so, and
    /// their columns.
    pub(crate) const EVENT_TABLES: &[(&str, usize, &str)] = &[
        (
            "messages",
            1,
            "account, message_id, send_ts, from_address, subject, tags",
        ),
        (
            "events",
            1,
            "account, message_id, event_id, recipient, kind, ts, bounce_type, bounce_sub_type, diagnostic_code, \
             complaint_sub_type, complaint_feedback_type",
        ),
        (
            "insights",
            2,
            "account, send_ts, message_id, destination, isp, email_identity, configuration_set, tenant_name, \
             recipient_count, flags",
        ),
        (
            "metric_days",
            1,
            "account, day, email_identity, configuration_set, isp, tenant_name, send, complaint, permanent_bounce, \
             transient_bounce, open, click, delivery, delivery_open, delivery_click, delivery_complaint",
        ),
        ("learned", 3, "account, lesson, value"),
    ];

    /// `export_jobs`' columns in schema 1 (of SQLite's job file, and of
    /// PostgreSQL).
    pub(crate) const JOB_COLUMNS: &str =
        "account, job_id, source_type, status, request, created, completed, failure, processed, exported, output_key";

    /// The lease's columns, from SQLite's job schema 2 (PostgreSQL had them
    /// from its first).
    pub(crate) const LEASE_COLUMNS: &str = "lease_owner, lease_expires";

    /// PostgreSQL's rate buckets, from its first schema.
    pub(crate) const RATE_BUCKET_COLUMNS: &str = "account, operation, tokens, updated";

    /// The newest schema these columns describe.
    pub(crate) const UNTIL: usize = 6;
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// A database in memory: its version, what ran, whether it re-derived.
    #[derive(Default)]
    struct Log {
        version: usize,
        ran: Vec<&'static str>,
        rederived: usize,
    }

    impl SchemaTxn for Log {
        async fn version(&mut self) -> Result<usize, BoxError> {
            Ok(self.version)
        }
        async fn run(&mut self, sql: &str) -> Result<(), BoxError> {
            let step = STEPS.iter().find(|s| s.sql == sql).ok_or("unknown step")?;
            self.ran.push(step.sql);
            Ok(())
        }
        async fn set_version(&mut self, version: usize) -> Result<(), BoxError> {
            self.version = version;
            Ok(())
        }
        async fn rederive(&mut self) -> Result<(), BoxError> {
            self.rederived += 1;
            Ok(())
        }
    }

    const STEPS: &[Step] = &[
        Step::sql("one"),
        Step::rederiving("two"),
        Step::rederiving(""),
        Step::sql("four"),
    ];

    fn run(version: usize, steps: &[Step]) -> Result<Log, OpenError> {
        let mut log = Log {
            version,
            ..Log::default()
        };
        migrate(&mut log, "test", steps).now_or_never().expect("never waits")?;
        Ok(log)
    }

    #[test]
    fn a_new_database_runs_every_step_and_derives_nothing() {
        let log = run(0, STEPS).expect("migrated");
        assert_eq!(
            (log.ran, log.version, log.rederived),
            (vec!["one", "two", "four"], 4, 0)
        );
    }

    #[test]
    fn an_upgrade_across_rederiving_steps_replays_once() {
        let log = run(1, STEPS).expect("migrated");
        assert_eq!((log.ran, log.version, log.rederived), (vec!["two", "four"], 4, 1));
        let log = run(3, STEPS).expect("migrated");
        assert_eq!((log.ran, log.version, log.rederived), (vec!["four"], 4, 0));
    }

    #[test]
    fn an_up_to_date_database_is_left_alone() {
        let log = run(4, STEPS).expect("migrated");
        assert_eq!((log.ran.len(), log.version, log.rederived), (0, 4, 0));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let refused = run(5, STEPS).map(|_| ()).expect_err("newer");
        assert!(
            crate::error_chain(&refused).contains("schema version 5, newer than this build's 4"),
            "{}",
            crate::error_chain(&refused)
        );
    }
}
