//! Export jobs and where they are kept: the [`JobStore`] trait, its
//! contract, and its backends. Every status change is a compare-and-set in
//! the store, so a cancel can never race a finishing worker into a wrong
//! state.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

use std::fmt;

use async_trait::async_trait;
use ses_export_model::types::{ExportSourceType, JobStatus};

use crate::clock::Millis;
use crate::query::ExportQuery;
use crate::{Region, Scope};

/// One export job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    /// The account that created the job, in the region it was created in;
    /// only it sees the job, and only there.
    pub account: Scope,
    /// The job's id (a UUID), unique in the account.
    pub job_id: String,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// The request as sent, validated; `GetExportJob` returns it unchanged.
    pub query: ExportQuery,
    /// When the job was created.
    pub created: Millis,
    /// Set when the job ends: completed, failed or cancelled.
    pub completed: Option<Millis>,
    /// Why a `FAILED` job failed, in the user's terms (`FailureInfo`).
    pub failure: Option<String>,
    /// What a `COMPLETED` job counted.
    pub statistics: Option<JobStatistics>,
    /// Where the finished file is, for managed exports: the key in managed
    /// storage.
    pub output_key: Option<String>,
    /// Who runs the job, until when: set by `claim`, extended by `renew`.
    pub lease: Option<JobLease>,
}

/// A worker's hold on a `PROCESSING` job. When it expires (the worker
/// died), another worker may claim the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    /// The worker's name, unique per run of a worker.
    pub owner: String,
    /// When the hold ends unless renewed.
    pub expires: Millis,
}

/// Counts a finished job reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStatistics {
    /// Records scanned inside the interval.
    pub processed: u64,
    /// Rows written.
    pub exported: u64,
}

/// What a status change also sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
///
/// `None` leaves a field as it is.
pub struct JobUpdate {
    /// [`ExportJob::completed`].
    pub completed: Option<Millis>,
    /// [`ExportJob::failure`].
    pub failure: Option<String>,
    /// [`ExportJob::statistics`].
    pub statistics: Option<JobStatistics>,
    /// [`ExportJob::output_key`].
    pub output_key: Option<String>,
}

/// Which jobs `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this source type.
    pub source_type: Option<ExportSourceType>,
}

/// Where a page of `list` starts: after the job with this creation time
/// and id (newest first, ties by id descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCursor {
    /// The last job's creation time.
    pub created: Millis,
    /// The last job's id.
    pub job_id: String,
}

/// Keeps export jobs.
///
/// Contract, for every backend:
/// - `create` counts the account's active jobs (`CREATED`, `PROCESSING`)
///   and inserts in one atomic step: two concurrent creates can never both
///   pass a limit that only one fits under.
/// - `transition` is a compare-and-set: it changes the status only from
///   one of `from`, and says whether it did.
/// - `claim` hands each `CREATED` job (or `PROCESSING` job whose lease has
///   expired) to exactly one caller, oldest first, as `PROCESSING` under a
///   lease; `finish` ends it only for the lease's owner.
/// - Reads see only the caller's account.
#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug {
    /// Inserts `job` unless the account already has `max_active` active jobs.
    async fn create(&self, job: &ExportJob, max_active: usize) -> Result<(), JobStoreError>;

    /// The account's job with this id.
    async fn get(&self, account: &Scope, job_id: &str) -> Result<Option<ExportJob>, JobStoreError>;

    /// Up to `limit` jobs, newest first, after `cursor`.
    async fn list(
        &self,
        account: &Scope,
        filter: &JobFilter,
        cursor: Option<&JobCursor>,
        limit: usize,
    ) -> Result<Vec<ExportJob>, JobStoreError>;

    /// Moves the job to `to` if its status is one of `from`, applying
    /// `update`; returns the job as it is afterwards, and whether it moved.
    /// `None` when there is no such job.
    async fn transition(
        &self,
        account: &Scope,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<Option<(ExportJob, bool)>, JobStoreError>;

    /// The oldest `CREATED` job of any account (or `PROCESSING` job whose
    /// lease expired before `now`), moved to `PROCESSING` under a lease for
    /// `owner` until `now + lease`.
    async fn claim(&self, owner: &str, now: Millis, lease: i64) -> Result<Option<ExportJob>, JobStoreError>;

    /// Extends `owner`'s lease on a `PROCESSING` job to `until`; `false`
    /// when the job is no longer `PROCESSING` under that owner (it was
    /// cancelled, or the lease was lost).
    async fn renew(&self, account: &Scope, job_id: &str, owner: &str, until: Millis) -> Result<bool, JobStoreError>;

    /// Ends a `PROCESSING` job held by `owner`: compare-and-set on status
    /// and owner. `false` when it was cancelled or taken over meanwhile.
    async fn finish(
        &self,
        account: &Scope,
        job_id: &str,
        owner: &str,
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<bool, JobStoreError>;

    /// Moves every `PROCESSING` job back to `CREATED`: after a crash, before
    /// workers start, so no job is lost or left hanging. Returns how many.
    async fn requeue_processing(&self) -> Result<u64, JobStoreError>;

    /// Up to `limit` jobs of any account that ended before `before` and
    /// still have a managed export file (`output_key`), oldest first.
    async fn ended_with_output(&self, before: Millis, limit: usize) -> Result<Vec<ExportJob>, JobStoreError>;

    /// Forgets a job's managed export file (it was deleted): the job keeps
    /// its record, and `GetExportJob` no longer gives a download URL.
    async fn clear_output(&self, account: &Scope, job_id: &str) -> Result<(), JobStoreError>;

    /// Makes what is stored self-contained and durable for a clean exit;
    /// the store may still be used afterwards.
    async fn close(&self) -> Result<(), JobStoreError> {
        Ok(())
    }

    /// Whether the database answers (a trivial query), for readiness.
    async fn ping(&self) -> Result<(), JobStoreError> {
        Ok(())
    }

    /// How many jobs of every account have each status (statuses with none
    /// may be left out), for the server's metrics.
    async fn count_by_status(&self) -> Result<Vec<(Region, JobStatus, u64)>, JobStoreError>;
}

/// Why a job store call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobStoreError {
    /// The account has its limit of active jobs.
    TooManyActive {
        /// How many jobs an account may have CREATED or PROCESSING at
        /// once (the server's `--max-active-jobs`).
        limit: usize,
    },
    /// A job with this id exists already.
    AlreadyExists,
    /// Anything else the backend reports.
    Generic {
        /// The backend's name.
        backend: &'static str,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for JobStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobStoreError::TooManyActive { limit } => write!(f, "the account has {limit} active export jobs"),
            JobStoreError::AlreadyExists => f.write_str("a job with this id exists"),
            JobStoreError::Generic { backend, source } => write!(f, "{backend} job store: {source}"),
        }
    }
}

impl std::error::Error for JobStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JobStoreError::Generic { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Whether a worker may claim `job` at `now`.
pub(crate) fn claimable(job: &ExportJob, now: Millis) -> bool {
    match job.status {
        JobStatus::Created => true,
        JobStatus::Processing => job.lease.as_ref().is_none_or(|l| l.expires < now),
        _ => false,
    }
}

/// Whether `job` is `PROCESSING` under `owner`'s lease.
pub(crate) fn held_by(job: &ExportJob, owner: &str) -> bool {
    job.status == JobStatus::Processing && job.lease.as_ref().is_some_and(|l| l.owner == owner)
}

/// Whether a status is one a job ends in.
pub fn is_final(status: &JobStatus) -> bool {
    matches!(status, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
}

/// Whether a status counts against the active-jobs limit.
pub fn is_active(status: &JobStatus) -> bool {
    matches!(status, JobStatus::Created | JobStatus::Processing)
}

impl ExportJob {
    /// `METRICS_DATA` or `MESSAGE_INSIGHTS`, as its query says.
    pub fn source_type(&self) -> ExportSourceType {
        self.query.source_type()
    }

    /// The ordering key of `list`: newest first.
    pub fn cursor(&self) -> JobCursor {
        JobCursor {
            created: self.created,
            job_id: self.job_id.clone(),
        }
    }

    /// Whether the job comes after `cursor` in `list` order.
    pub fn is_after(&self, cursor: &JobCursor) -> bool {
        (self.created, self.job_id.as_str()) < (cursor.created, cursor.job_id.as_str())
    }

    /// Whether `filter` selects the job.
    pub fn matches(&self, filter: &JobFilter) -> bool {
        filter.status.as_ref().is_none_or(|s| *s == self.status)
            && filter.source_type.as_ref().is_none_or(|t| *t == self.source_type())
    }

    /// Moves the job to `to` with what `update` sets (fields it leaves
    /// `None` keep their values), as every store's one update does.
    pub fn apply(&mut self, to: JobStatus, update: JobUpdate) {
        self.status = to;
        if update.completed.is_some() {
            self.completed = update.completed;
        }
        if update.failure.is_some() {
            self.failure = update.failure;
        }
        if update.statistics.is_some() {
            self.statistics = update.statistics;
        }
        if update.output_key.is_some() {
            self.output_key = update.output_key;
        }
    }
}

/// Job counts by region and status (one entry per scope and status in),
/// summed by region.
pub(crate) fn by_region(counts: impl IntoIterator<Item = (Region, JobStatus, u64)>) -> Vec<(Region, JobStatus, u64)> {
    let mut out: Vec<(Region, JobStatus, u64)> = Vec::new();
    for (region, status, n) in counts {
        match out.iter_mut().find(|(r, s, _)| *r == region && *s == status) {
            Some((_, _, total)) => *total += n,
            None => out.push((region, status, n)),
        }
    }
    out
}

/// The region of a scope key as a store keeps it (`ACCOUNT/REGION`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn region_of(key: &str) -> Option<Region> {
    key.parse::<Scope>().ok().map(|scope| scope.region().clone())
}
