//! The in-memory job store: a map behind one lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ses_export_model::types::JobStatus;

use crate::Scope;
use crate::clock::Millis;
use crate::job::{
    ExportJob, JobCursor, JobFilter, JobLease, JobStore, JobStoreError, JobUpdate, claimable, held_by, is_active,
};

/// The in-memory [`JobStore`].
#[derive(Debug, Default)]
pub struct MemoryJobStore {
    /// By (account, job id).
    jobs: Mutex<BTreeMap<(Scope, String), ExportJob>>,
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(Scope, String), ExportJob>> {
        // Every change is one insert or one field update: never half done.
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &ExportJob, max_active: usize) -> Result<(), JobStoreError> {
        let mut jobs = self.lock();
        let key = (job.account.clone(), job.job_id.clone());
        if jobs.contains_key(&key) {
            return Err(JobStoreError::AlreadyExists);
        }
        let active = jobs
            .values()
            .filter(|j| j.account == job.account && is_active(&j.status))
            .count();
        if active >= max_active {
            return Err(JobStoreError::TooManyActive { limit: max_active });
        }
        jobs.insert(key, job.clone());
        Ok(())
    }

    async fn get(&self, account: &Scope, job_id: &str) -> Result<Option<ExportJob>, JobStoreError> {
        Ok(self.lock().get(&(account.clone(), job_id.to_owned())).cloned())
    }

    async fn list(
        &self,
        account: &Scope,
        filter: &JobFilter,
        cursor: Option<&JobCursor>,
        limit: usize,
    ) -> Result<Vec<ExportJob>, JobStoreError> {
        let jobs = self.lock();
        let mut out: Vec<ExportJob> = jobs
            .values()
            .filter(|j| &j.account == account && j.matches(filter) && cursor.is_none_or(|c| j.is_after(c)))
            .cloned()
            .collect();
        out.sort_by(|a, b| (b.created, &b.job_id).cmp(&(a.created, &a.job_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn transition(
        &self,
        account: &Scope,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<Option<(ExportJob, bool)>, JobStoreError> {
        let mut jobs = self.lock();
        let Some(job) = jobs.get_mut(&(account.clone(), job_id.to_owned())) else {
            return Ok(None);
        };
        if !from.contains(&job.status) {
            return Ok(Some((job.clone(), false)));
        }
        job.apply(to, update);
        Ok(Some((job.clone(), true)))
    }

    async fn claim(&self, owner: &str, now: Millis, lease: i64) -> Result<Option<ExportJob>, JobStoreError> {
        let mut jobs = self.lock();
        let oldest = jobs
            .values_mut()
            .filter(|j| claimable(j, now))
            .min_by(|a, b| (a.created, &a.job_id).cmp(&(b.created, &b.job_id)));
        Ok(oldest.map(|job| {
            job.status = JobStatus::Processing;
            job.lease = Some(JobLease {
                owner: owner.to_owned(),
                expires: now + lease,
            });
            job.clone()
        }))
    }

    async fn renew(&self, account: &Scope, job_id: &str, owner: &str, until: Millis) -> Result<bool, JobStoreError> {
        let mut jobs = self.lock();
        match jobs.get_mut(&(account.clone(), job_id.to_owned())) {
            Some(job) if held_by(job, owner) => {
                job.lease = Some(JobLease {
                    owner: owner.to_owned(),
                    expires: until,
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish(
        &self,
        account: &Scope,
        job_id: &str,
        owner: &str,
        to: JobStatus,
        update: JobUpdate,
    ) -> Result<bool, JobStoreError> {
        let mut jobs = self.lock();
        match jobs.get_mut(&(account.clone(), job_id.to_owned())) {
            Some(job) if held_by(job, owner) => {
                job.apply(to, update);
                job.lease = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn requeue_processing(&self) -> Result<u64, JobStoreError> {
        let mut jobs = self.lock();
        let mut n = 0;
        for job in jobs.values_mut().filter(|j| j.status == JobStatus::Processing) {
            job.status = JobStatus::Created;
            job.lease = None;
            n += 1;
        }
        Ok(n)
    }

    async fn ended_with_output(&self, before: Millis, limit: usize) -> Result<Vec<ExportJob>, JobStoreError> {
        let jobs = self.lock();
        let mut ended: Vec<ExportJob> = jobs
            .values()
            .filter(|j| j.output_key.is_some() && j.completed.is_some_and(|t| t < before))
            .cloned()
            .collect();
        ended.sort_by_key(|j| j.completed);
        ended.truncate(limit);
        Ok(ended)
    }

    async fn clear_output(&self, account: &Scope, job_id: &str) -> Result<(), JobStoreError> {
        if let Some(job) = self.lock().get_mut(&(account.clone(), job_id.to_owned())) {
            job.output_key = None;
        }
        Ok(())
    }

    async fn count_by_status(&self) -> Result<Vec<(crate::Region, JobStatus, u64)>, JobStoreError> {
        let jobs = self.lock();
        Ok(crate::job::by_region(
            jobs.values()
                .map(|job| (job.account.region().clone(), job.status.clone(), 1)),
        ))
    }
}
