//! The SQLite job store: one small table in its own file, one connection
//! behind a lock (job traffic is light; every call is one transaction).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use ses_export_model::types::JobStatus;

use super::{BACKEND, Step, fold_wal, lock, migrate};
use crate::Scope;
use crate::clock::Millis;
use crate::job::{ExportJob, JobCursor, JobFilter, JobLease, JobStatistics, JobStore, JobStoreError, JobUpdate};

/// The schema, step by step (see [`migrate`]).
pub(super) const MIGRATIONS: &[Step] = &[
    Step::sql(
        r#"
CREATE TABLE IF NOT EXISTS export_jobs (
    account     TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    source_type TEXT NOT NULL,
    status      TEXT NOT NULL,
    request     TEXT NOT NULL,
    created     INTEGER NOT NULL,
    completed   INTEGER,
    failure     TEXT,
    processed   INTEGER,
    exported    INTEGER,
    output_key  TEXT,
    PRIMARY KEY (account, job_id)
);
CREATE INDEX IF NOT EXISTS export_jobs_by_time ON export_jobs (account, created DESC, job_id DESC);
CREATE INDEX IF NOT EXISTS export_jobs_by_status ON export_jobs (status, created, job_id);
"#,
    ),
    Step::sql(
        r#"
ALTER TABLE export_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE export_jobs ADD COLUMN lease_expires INTEGER;
"#,
    ),
    // Jobs are kept per account and region (`Scope`): those made before
    // regions existed become the default region's.
    Step::sql(
        r#"
UPDATE export_jobs SET account = account || '/' || (SELECT region FROM temp.defaults)
    WHERE instr(account, '/') = 0;
"#,
    ),
];

const COLUMNS: &str = "account, job_id, source_type, status, request, created, completed, failure, processed, exported, \
                       output_key, lease_owner, lease_expires";

/// The SQLite [`JobStore`].
///
/// `GetExportJob` is the call clients poll, so jobs read are kept in a
/// small cache beside the connection: a hit answers without a blocking
/// thread or a read transaction. It stays true because one process serves
/// a SQLite data dir and every change goes through this store: a change
/// forgets what it touched while it still holds the connection, and a read
/// fills the cache while it holds the connection too, so a read can never
/// put back what a change has just made stale.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    conn: Arc<Mutex<Connection>>,
    cache: Arc<JobCache>,
}

/// Jobs by account and id, at most [`JobCache::CAPACITY`] of them.
#[derive(Debug, Default)]
struct JobCache {
    jobs: std::sync::RwLock<std::collections::HashMap<(String, String), ExportJob>>,
}

impl JobCache {
    /// Enough for every job clients are likely polling; when full, the
    /// cache starts again (a miss only costs a read).
    const CAPACITY: usize = 4096;

    fn get(&self, account: &str, job_id: &str) -> Option<ExportJob> {
        let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
        jobs.get(&(account.to_owned(), job_id.to_owned())).cloned()
    }

    /// Call with the connection held.
    fn put(&self, job: &ExportJob) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= Self::CAPACITY {
            jobs.clear();
        }
        jobs.insert((job.account.to_string(), job.job_id.clone()), job.clone());
    }

    /// Call with the connection held, after the change is committed.
    fn forget(&self, account: &str, job_id: &str) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        jobs.remove(&(account.to_owned(), job_id.to_owned()));
    }

    /// Call with the connection held, after the change is committed.
    fn forget_all(&self) {
        self.jobs.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> JobStoreError {
    JobStoreError::Generic {
        backend: BACKEND,
        source: Box::new(e),
    }
}

impl From<rusqlite::Error> for JobStoreError {
    fn from(e: rusqlite::Error) -> Self {
        generic(e)
    }
}

impl SqliteJobStore {
    /// Opens (creating as needed) the job database at `path`; jobs made
    /// before regions existed are `us-east-1`'s.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, JobStoreError> {
        Self::open_with_default_region(path, &crate::Region::us_east_1())
    }

    /// Opens the job database at `path`; jobs made before regions existed
    /// become `default_region`'s.
    pub fn open_with_default_region(
        path: impl AsRef<Path>,
        default_region: &crate::Region,
    ) -> Result<Self, JobStoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A state change is visible only once it would survive power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut conn, "job", MIGRATIONS, default_region, None).map_err(|e| JobStoreError::Generic {
            backend: BACKEND,
            source: Box::new(e),
        })?;
        Ok(SqliteJobStore {
            conn: Arc::new(Mutex::new(conn)),
            cache: Arc::default(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, JobStoreError> + Send + 'static,
    ) -> Result<T, JobStoreError> {
        self.with_cache(|conn, _| work(conn)).await
    }

    /// Runs `work` on a blocking thread with the connection and the cache.
    async fn with_cache<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &JobCache) -> Result<T, JobStoreError> + Send + 'static,
    ) -> Result<T, JobStoreError> {
        let (conn, cache) = (Arc::clone(&self.conn), Arc::clone(&self.cache));
        tokio::task::spawn_blocking(move || work(&mut lock(&conn), &cache))
            .await
            .map_err(generic)?
    }
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<ExportJob> {
    let account: String = row.get(0)?;
    let request: String = row.get(4)?;
    let processed: Option<i64> = row.get(8)?;
    let exported: Option<i64> = row.get(9)?;
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e)
    };
    Ok(ExportJob {
        account: account.parse().map_err(|e: String| bad(e.into()))?,
        job_id: row.get(1)?,
        status: JobStatus::from(row.get::<_, String>(3)?),
        query: serde_json::from_str(&request).map_err(|e| bad(Box::new(e)))?,
        created: row.get(5)?,
        completed: row.get(6)?,
        failure: row.get(7)?,
        statistics: match (processed, exported) {
            (Some(p), Some(e)) => Some(JobStatistics {
                processed: p as u64,
                exported: e as u64,
            }),
            _ => None,
        },
        output_key: row.get(10)?,
        lease: match (row.get::<_, Option<String>>(11)?, row.get::<_, Option<Millis>>(12)?) {
            (Some(owner), Some(expires)) => Some(JobLease { owner, expires }),
            _ => None,
        },
    })
}

fn get(conn: &Connection, account: &str, job_id: &str) -> Result<Option<ExportJob>, JobStoreError> {
    let sql = format!("SELECT {COLUMNS} FROM export_jobs WHERE account = ?1 AND job_id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![account, job_id], job_from_row)
        .optional()?)
}

/// The one statement that changes a job's status: to `to`, with what
/// `update` sets (a `None` keeps the stored value). With an `owner`, only
/// while that owner holds the job's lease, which it then releases. Returns
/// how many jobs changed (0 or 1).
fn update_job(
    conn: &Connection,
    account: &str,
    job_id: &str,
    owner: Option<&str>,
    to: &JobStatus,
    update: &JobUpdate,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE export_jobs SET status = ?3, completed = coalesce(?4, completed), \
         failure = coalesce(?5, failure), processed = coalesce(?6, processed), \
         exported = coalesce(?7, exported), output_key = coalesce(?8, output_key), \
         lease_owner = CASE WHEN ?9 IS NULL THEN lease_owner END, \
         lease_expires = CASE WHEN ?9 IS NULL THEN lease_expires END \
         WHERE account = ?1 AND job_id = ?2 AND (?9 IS NULL OR (status = 'PROCESSING' AND lease_owner = ?9))",
    )?
    .execute(params![
        account,
        job_id,
        to.as_str(),
        update.completed,
        update.failure,
        update.statistics.map(|s| s.processed as i64),
        update.statistics.map(|s| s.exported as i64),
        update.output_key,
        owner,
    ])
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create(&self, job: &ExportJob, max_active: usize) -> Result<(), JobStoreError> {
        let job = job.clone();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM export_jobs WHERE account = ?1 AND job_id = ?2)",
                params![job.account.as_str(), job.job_id],
                |r| r.get(0),
            )?;
            if exists {
                return Err(JobStoreError::AlreadyExists);
            }
            let active: i64 = tx.query_row(
                "SELECT count(*) FROM export_jobs WHERE account = ?1 AND status IN ('CREATED', 'PROCESSING')",
                params![job.account.as_str()],
                |r| r.get(0),
            )?;
            if active as usize >= max_active {
                return Err(JobStoreError::TooManyActive { limit: max_active });
            }
            let request = serde_json::to_string(&job.query).map_err(generic)?;
            tx.execute(
                &format!("INSERT INTO export_jobs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![
                    job.account.as_str(),
                    job.job_id,
                    job.source_type().as_str(),
                    job.status.as_str(),
                    request,
                    job.created,
                    job.completed,
                    job.failure,
                    job.statistics.map(|s| s.processed as i64),
                    job.statistics.map(|s| s.exported as i64),
                    job.output_key,
                    job.lease.as_ref().map(|l| l.owner.clone()),
                    job.lease.as_ref().map(|l| l.expires),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get(&self, account: &Scope, job_id: &str) -> Result<Option<ExportJob>, JobStoreError> {
        if let Some(job) = self.cache.get(account.as_str(), job_id) {
            return Ok(Some(job));
        }
        let (account, job_id) = (account.to_string(), job_id.to_owned());
        self.with_cache(move |conn, cache| {
            let job = get(conn, &account, &job_id)?;
            if let Some(job) = &job {
                cache.put(job);
            }
            Ok(job)
        })
        .await
    }

    async fn list(
        &self,
        account: &Scope,
        filter: &JobFilter,
        cursor: Option<&JobCursor>,
        limit: usize,
    ) -> Result<Vec<ExportJob>, JobStoreError> {
        let account = account.to_string();
        let status = filter.status.as_ref().map(|s| s.as_str().to_owned());
        let source = filter.source_type.as_ref().map(|s| s.as_str().to_owned());
        let cursor = cursor.cloned();
        self.with(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM export_jobs WHERE account = ?1 \
                 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR source_type = ?3) \
                 AND (?4 IS NULL OR (created, job_id) < (?4, ?5)) \
                 ORDER BY created DESC, job_id DESC LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let jobs = stmt
                .query_map(
                    params![
                        account,
                        status,
                        source,
                        cursor.as_ref().map(|c| c.created),
                        cursor.as_ref().map(|c| c.job_id.clone()),
                        limit as i64
                    ],
                    job_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn transition(
        &self,
        account: &Scope,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<Option<(ExportJob, bool)>, JobStoreError> {
        let (account, job_id) = (account.to_string(), job_id.to_owned());
        let from: Vec<String> = from.iter().map(|s| s.as_str().to_owned()).collect();
        self.with_cache(move |conn, cache| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some(job) = get(&tx, &account, &job_id)? else {
                return Ok(None);
            };
            if !from.iter().any(|s| s == job.status.as_str()) {
                return Ok(Some((job, false)));
            }
            update_job(&tx, &account, &job_id, None, &to, &update)?;
            let job = get(&tx, &account, &job_id)?;
            tx.commit()?;
            cache.forget(&account, &job_id);
            Ok(job.map(|j| (j, true)))
        })
        .await
    }

    async fn claim(&self, owner: &str, now: Millis, lease: i64) -> Result<Option<ExportJob>, JobStoreError> {
        let owner = owner.to_owned();
        self.with_cache(move |conn, cache| {
            let sql = format!(
                "UPDATE export_jobs SET status = 'PROCESSING', lease_owner = ?1, lease_expires = ?2 \
                 WHERE (account, job_id) = (SELECT account, job_id FROM export_jobs \
                   WHERE status = 'CREATED' OR (status = 'PROCESSING' AND (lease_expires IS NULL OR lease_expires < ?3)) \
                   ORDER BY created, job_id LIMIT 1) \
                 RETURNING {COLUMNS}"
            );
            let job = conn
                .query_row(&sql, params![owner, now + lease, now], job_from_row)
                .optional()?;
            if let Some(job) = &job {
                cache.forget(job.account.as_str(), &job.job_id);
            }
            Ok(job)
        })
        .await
    }

    async fn renew(&self, account: &Scope, job_id: &str, owner: &str, until: Millis) -> Result<bool, JobStoreError> {
        let (account, job_id, owner) = (account.to_string(), job_id.to_owned(), owner.to_owned());
        self.with_cache(move |conn, cache| {
            let n = conn.execute(
                "UPDATE export_jobs SET lease_expires = ?4 \
                 WHERE account = ?1 AND job_id = ?2 AND status = 'PROCESSING' AND lease_owner = ?3",
                params![account, job_id, owner, until],
            )?;
            cache.forget(&account, &job_id);
            Ok(n == 1)
        })
        .await
    }

    async fn finish(
        &self,
        account: &Scope,
        job_id: &str,
        owner: &str,
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<bool, JobStoreError> {
        let (account, job_id, owner) = (account.to_string(), job_id.to_owned(), owner.to_owned());
        self.with_cache(move |conn, cache| {
            let n = update_job(conn, &account, &job_id, Some(&owner), &to, &update)?;
            cache.forget(&account, &job_id);
            Ok(n == 1)
        })
        .await
    }

    async fn requeue_processing(&self) -> Result<u64, JobStoreError> {
        self.with_cache(|conn, cache| {
            let n = conn.execute(
                "UPDATE export_jobs SET status = 'CREATED' WHERE status = 'PROCESSING'",
                [],
            )?;
            cache.forget_all();
            Ok(n as u64)
        })
        .await
    }

    async fn ended_with_output(&self, before: Millis, limit: usize) -> Result<Vec<ExportJob>, JobStoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM export_jobs WHERE output_key IS NOT NULL AND completed < ?1 \
                 ORDER BY completed LIMIT ?2"
            ))?;
            let jobs = stmt
                .query_map(params![before, limit], job_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn clear_output(&self, account: &Scope, job_id: &str) -> Result<(), JobStoreError> {
        let (account, job_id) = (account.to_string(), job_id.to_owned());
        self.with_cache(move |conn, cache| {
            conn.execute(
                "UPDATE export_jobs SET output_key = NULL WHERE account = ?1 AND job_id = ?2",
                params![account, job_id],
            )?;
            cache.forget(&account, &job_id);
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), JobStoreError> {
        self.with(|conn| Ok(fold_wal(conn)?)).await
    }

    async fn ping(&self) -> Result<(), JobStoreError> {
        self.with(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn count_by_status(&self) -> Result<Vec<(crate::Region, JobStatus, u64)>, JobStoreError> {
        self.with(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT account, status, count(*) FROM export_jobs GROUP BY account, status")?;
            let rows = statement.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    JobStatus::from(r.get::<_, String>(1)?),
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            Ok(crate::job::by_region(rows.into_iter().filter_map(
                |(key, status, n)| Some((crate::job::region_of(&key)?, status, n)),
            )))
        })
        .await
    }
}
