//! The PostgreSQL job store: claims with `FOR UPDATE SKIP LOCKED`, so any
//! server can take any job and exactly one does; the active-jobs limit
//! under a per-account advisory lock, so it holds across servers.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use ses_export_model::types::JobStatus;
use tokio_postgres::Row;

use super::{BACKEND, boxed};
use crate::Scope;
use crate::clock::Millis;
use crate::job::{ExportJob, JobCursor, JobFilter, JobLease, JobStatistics, JobStore, JobStoreError, JobUpdate};

/// The PostgreSQL [`JobStore`].
#[derive(Debug, Clone)]
pub struct PgJobStore {
    pool: Pool,
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> JobStoreError {
    JobStoreError::Generic {
        backend: BACKEND,
        source: boxed(e),
    }
}

const COLUMNS: &str = "account, job_id, source_type, status, request, created, completed, failure, processed, exported, \
                       output_key, lease_owner, lease_expires";

fn job(row: &Row) -> Result<ExportJob, JobStoreError> {
    let account: String = row.get(0);
    let request: String = row.get(4);
    let processed: Option<i64> = row.get(8);
    let exported: Option<i64> = row.get(9);
    Ok(ExportJob {
        account: account.parse().map_err(|e: String| generic(std::io::Error::other(e)))?,
        job_id: row.get(1),
        status: JobStatus::from(row.get::<_, String>(3)),
        query: serde_json::from_str(&request).map_err(generic)?,
        created: row.get(5),
        completed: row.get(6),
        failure: row.get(7),
        statistics: match (processed, exported) {
            (Some(p), Some(e)) => Some(JobStatistics {
                processed: p as u64,
                exported: e as u64,
            }),
            _ => None,
        },
        output_key: row.get(10),
        lease: match (row.get::<_, Option<String>>(11), row.get::<_, Option<Millis>>(12)) {
            (Some(owner), Some(expires)) => Some(JobLease { owner, expires }),
            _ => None,
        },
    })
}

impl PgJobStore {
    /// A store over `pool`, whose schema is migrated already.
    pub fn new(pool: Pool) -> Self {
        PgJobStore { pool }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, JobStoreError> {
        self.pool.get().await.map_err(generic)
    }
}

/// The one statement that changes a job's status: from one of `from` to
/// `to`, with what `update` sets (a `None` keeps the stored value). With
/// an `owner`, only while that owner holds the job's lease, which it then
/// releases. Returns the job as changed, or `None` when nothing matched.
async fn update_job(
    client: &deadpool_postgres::Client,
    account: &Scope,
    job_id: &str,
    from: &[JobStatus],
    owner: Option<&str>,
    to: &JobStatus,
    update: &JobUpdate,
) -> Result<Option<ExportJob>, JobStoreError> {
    let from: Vec<&str> = from.iter().map(JobStatus::as_str).collect();
    let row = client
        .query_opt(
            &format!(
                "UPDATE export_jobs SET status = $4, completed = coalesce($5, completed), \
                 failure = coalesce($6, failure), processed = coalesce($7, processed), \
                 exported = coalesce($8, exported), output_key = coalesce($9, output_key), \
                 lease_owner = CASE WHEN $10::text IS NULL THEN lease_owner END, \
                 lease_expires = CASE WHEN $10::text IS NULL THEN lease_expires END \
                 WHERE account = $1 AND job_id = $2 AND status = ANY($3) \
                 AND ($10::text IS NULL OR lease_owner = $10) RETURNING {COLUMNS}"
            ),
            &[
                &account.as_str(),
                &job_id,
                &from,
                &to.as_str(),
                &update.completed,
                &update.failure,
                &update.statistics.map(|s| s.processed as i64),
                &update.statistics.map(|s| s.exported as i64),
                &update.output_key,
                &owner,
            ],
        )
        .await
        .map_err(generic)?;
    row.as_ref().map(job).transpose()
}

#[async_trait]
impl JobStore for PgJobStore {
    async fn create(&self, job: &ExportJob, max_active: usize) -> Result<(), JobStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(generic)?;
        let account = job.account.as_str();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('jobs ' || $1, 0))",
            &[&account],
        )
        .await
        .map_err(generic)?;
        let active: i64 = tx
            .query_one(
                "SELECT count(*) FROM export_jobs WHERE account = $1 AND status IN ('CREATED', 'PROCESSING')",
                &[&account],
            )
            .await
            .map_err(generic)?
            .get(0);
        if active as usize >= max_active {
            return Err(JobStoreError::TooManyActive { limit: max_active });
        }
        let request = serde_json::to_string(&job.query).map_err(generic)?;
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO export_jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT DO NOTHING"
                ),
                &[
                    &account,
                    &job.job_id,
                    &job.source_type().as_str(),
                    &job.status.as_str(),
                    &request,
                    &job.created,
                    &job.completed,
                    &job.failure,
                    &job.statistics.map(|s| s.processed as i64),
                    &job.statistics.map(|s| s.exported as i64),
                    &job.output_key,
                    &job.lease.as_ref().map(|l| l.owner.clone()),
                    &job.lease.as_ref().map(|l| l.expires),
                ],
            )
            .await
            .map_err(generic)?;
        if inserted == 0 {
            return Err(JobStoreError::AlreadyExists);
        }
        tx.commit().await.map_err(generic)
    }

    async fn get(&self, account: &Scope, job_id: &str) -> Result<Option<ExportJob>, JobStoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM export_jobs WHERE account = $1 AND job_id = $2"),
                &[&account.as_str(), &job_id],
            )
            .await
            .map_err(generic)?;
        row.as_ref().map(job).transpose()
    }

    async fn list(
        &self,
        account: &Scope,
        filter: &JobFilter,
        cursor: Option<&JobCursor>,
        limit: usize,
    ) -> Result<Vec<ExportJob>, JobStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM export_jobs WHERE account = $1 \
                     AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR source_type = $3) \
                     AND ($4::int8 IS NULL OR (created, job_id) < ($4, $5::text)) \
                     ORDER BY created DESC, job_id DESC LIMIT $6"
                ),
                &[
                    &account.as_str(),
                    &filter.status.as_ref().map(|s| s.as_str().to_owned()),
                    &filter.source_type.as_ref().map(|s| s.as_str().to_owned()),
                    &cursor.map(|c| c.created),
                    &cursor.map(|c| c.job_id.clone()),
                    &(limit as i64),
                ],
            )
            .await
            .map_err(generic)?;
        rows.iter().map(job).collect()
    }

    async fn transition(
        &self,
        account: &Scope,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<Option<(ExportJob, bool)>, JobStoreError> {
        let moved = update_job(&self.client().await?, account, job_id, from, None, &to, &update).await?;
        match moved {
            Some(job) => Ok(Some((job, true))),
            None => Ok(self.get(account, job_id).await?.map(|j| (j, false))),
        }
    }

    async fn claim(&self, owner: &str, now: Millis, lease: i64) -> Result<Option<ExportJob>, JobStoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE export_jobs SET status = 'PROCESSING', lease_owner = $1, lease_expires = $2 \
                     WHERE (account, job_id) = (SELECT account, job_id FROM export_jobs \
                       WHERE status = 'CREATED' OR (status = 'PROCESSING' AND coalesce(lease_expires, 0) < $3) \
                       ORDER BY created, job_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING {COLUMNS}"
                ),
                &[&owner, &(now + lease), &now],
            )
            .await
            .map_err(generic)?;
        row.as_ref().map(job).transpose()
    }

    async fn renew(&self, account: &Scope, job_id: &str, owner: &str, until: Millis) -> Result<bool, JobStoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE export_jobs SET lease_expires = $4 \
                 WHERE account = $1 AND job_id = $2 AND status = 'PROCESSING' AND lease_owner = $3",
                &[&account.as_str(), &job_id, &owner, &until],
            )
            .await
            .map_err(generic)?;
        Ok(n == 1)
    }

    async fn finish(
        &self,
        account: &Scope,
        job_id: &str,
        owner: &str,
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<bool, JobStoreError> {
        let client = self.client().await?;
        let moved = update_job(
            &client,
            account,
            job_id,
            &[JobStatus::Processing],
            Some(owner),
            &to,
            &update,
        )
        .await?;
        Ok(moved.is_some())
    }

    async fn requeue_processing(&self) -> Result<u64, JobStoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE export_jobs SET status = 'CREATED', lease_owner = NULL, lease_expires = NULL \
                 WHERE status = 'PROCESSING'",
                &[],
            )
            .await
            .map_err(generic)
    }

    async fn ended_with_output(&self, before: Millis, limit: usize) -> Result<Vec<ExportJob>, JobStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM export_jobs WHERE output_key IS NOT NULL AND completed < $1 \
                     ORDER BY completed LIMIT $2"
                ),
                &[&before, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(generic)?;
        rows.iter().map(job).collect()
    }

    async fn clear_output(&self, account: &Scope, job_id: &str) -> Result<(), JobStoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE export_jobs SET output_key = NULL WHERE account = $1 AND job_id = $2",
                &[&account.as_str(), &job_id],
            )
            .await
            .map_err(generic)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), JobStoreError> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(generic)?;
        Ok(())
    }

    async fn count_by_status(&self) -> Result<Vec<(crate::Region, JobStatus, u64)>, JobStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT account, status, count(*) FROM export_jobs GROUP BY account, status",
                &[],
            )
            .await
            .map_err(generic)?;
        Ok(crate::job::by_region(rows.iter().filter_map(|row| {
            Some((
                crate::job::region_of(&row.get::<_, String>(0))?,
                JobStatus::from(row.get::<_, String>(1)),
                row.get::<_, i64>(2) as u64,
            ))
        })))
    }
}
