//! Workers: take `CREATED` jobs from the job store, run them, and record
//! how they ended. Each run holds the job under a lease of its own; it
//! writes a staging object of its own, publishes it to the final key, and
//! only then ends the job with a compare-and-set on status and lease owner,
//! so a cancel, a takeover after an expired lease and a finishing run can
//! never both win, and the loser deletes only what is its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ses_export_model::types::{ExportSourceType, JobStatus};

use crate::Scope;
use crate::clock::now;
use crate::destination::{ExportWriter, StagedExport, Storage, s3_target};
use crate::event_store::EventStore;
use crate::job::{ExportJob, JobStatistics, JobStore, JobUpdate};
use crate::query::{Selection, select_insights, select_metrics};
use crate::rng;
use crate::rows::{RowWriter, insight_cells, metric_cells, metric_columns};

/// How often an idle worker looks for work it was not woken for.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What the API side and the workers of one process share about jobs: the
/// wake-up when a job is created, the stop flags of the runs in progress
/// (a cancel sets its job's), and whether the process is stopping.
#[derive(Debug)]
pub(crate) struct JobSignals {
    wake: tokio::sync::Notify,
    running: Mutex<HashMap<(Scope, String), Arc<AtomicBool>>>,
    stopping: AtomicBool,
    ended: tokio::sync::broadcast::Sender<JobEnded>,
}

impl Default for JobSignals {
    fn default() -> Self {
        JobSignals {
            wake: tokio::sync::Notify::new(),
            running: Mutex::default(),
            stopping: AtomicBool::new(false),
            ended: tokio::sync::broadcast::channel(256).0,
        }
    }
}

/// A job a worker of this process ended, for whoever watches (the server's
/// metrics): its type, how it ended, and how long it took from creation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobEnded {
    /// The job's account and region.
    pub scope: Scope,
    /// The job's source type.
    pub source_type: ExportSourceType,
    /// `COMPLETED`, `FAILED` or `CANCELLED`.
    pub status: JobStatus,
    /// From the job's creation to its end.
    pub duration: Duration,
}

impl JobSignals {
    /// The jobs ended from now on. A receiver that falls more than 256
    /// behind misses the oldest (it hears that it lagged).
    pub fn subscribe_ended(&self) -> tokio::sync::broadcast::Receiver<JobEnded> {
        self.ended.subscribe()
    }

    /// A job was created: idle workers look now.
    pub fn job_created(&self) {
        self.wake.notify_waiters();
    }

    /// A job was cancelled: a run of it in this process stops at its next
    /// safe point (runs elsewhere hear of it when they renew their lease).
    pub fn job_cancelled(&self, account: &Scope, job_id: &str) {
        if let Some(flag) = self.lock().get(&(account.clone(), job_id.to_owned())) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// The process is stopping: every run stops at its next safe point (a
    /// scan checks every [`crate::event_store::SCAN_CHECK_ROWS`] rows it reads)
    /// and its job stays `PROCESSING`, to be run again by the next server;
    /// no new job is taken.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for flag in self.lock().values() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Scope, String), Arc<AtomicBool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How workers run jobs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// How long a run's hold on a job lasts without renewal.
    pub lease: Duration,
    /// Hold each job in `PROCESSING` at least this long (demos, tests).
    pub min_job_duration: Duration,
    /// Whether this process is the only one using the job store, so jobs
    /// left `PROCESSING` are its own from a previous run, requeued at start.
    pub sole_server: bool,
}

/// The workers of one process: they claim jobs, run them and end them.
#[derive(Debug)]
pub struct Workers {
    events: Arc<dyn EventStore>,
    jobs: Arc<dyn JobStore>,
    storage: Storage,
    signals: Arc<JobSignals>,
    config: WorkerConfig,
    /// This process's name; each run's lease owner starts with it.
    id: String,
}

impl Workers {
    pub(crate) fn new(
        events: Arc<dyn EventStore>,
        jobs: Arc<dyn JobStore>,
        storage: Storage,
        signals: Arc<JobSignals>,
        config: WorkerConfig,
    ) -> Self {
        Workers {
            events,
            jobs,
            storage,
            signals,
            config,
            id: crate::ids::uuid_v4().unwrap_or_else(|_| format!("worker-{}", std::process::id())),
        }
    }

    /// Runs `count` workers until `shutdown` turns true. Jobs that were
    /// `PROCESSING` when the process last stopped go back to `CREATED` first.
    pub async fn run(self: Arc<Self>, count: usize, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if count == 0 {
            return;
        }
        // A sole server's PROCESSING jobs are its own from a previous run; in
        // a cluster, they belong to servers that may be alive, and leases
        // decide.
        if self.config.sole_server {
            match self.jobs.requeue_processing().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "requeued jobs left PROCESSING by the last run"),
                Err(e) => tracing::error!(error = %e, "could not requeue interrupted jobs"),
            }
        }
        let runs = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..count {
            let workers = Arc::clone(&self);
            let runs = Arc::clone(&runs);
            let mut shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                while !*shutdown.borrow() && !workers.signals.stopping() {
                    let lease = workers.config.lease.as_millis() as i64;
                    // Every claim is a run with a lease owner of its own, so
                    // a run whose lease expired cannot end a rerun's job, even
                    // on the same server.
                    let run = format!("{}-{}", workers.id, runs.fetch_add(1, Ordering::Relaxed));
                    match workers.jobs.claim(&run, now(), lease).await {
                        Ok(Some(job)) => workers.run_job(job, run).await,
                        Ok(None) => {
                            let woken = workers.signals.wake.notified();
                            tokio::select! {
                                _ = woken => {}
                                _ = tokio::time::sleep(IDLE_POLL) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "claiming a job failed");
                            tokio::time::sleep(IDLE_POLL).await;
                        }
                    }
                }
            }));
        }
        let _ = shutdown.changed().await;
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Workers {
    /// Runs one claimed job to its end, keeping its lease alive meanwhile: a
    /// renewal that fails means the job was cancelled (perhaps on another
    /// server) or taken over, and the run stops.
    async fn run_job(&self, job: ExportJob, run: String) {
        let key = (job.account.clone(), job.job_id.clone());
        let cancelled = Arc::new(AtomicBool::new(false));
        self.signals.lock().insert(key.clone(), Arc::clone(&cancelled));
        let heartbeat = {
            let jobs = Arc::clone(&self.jobs);
            let (account, job_id, owner) = (job.account.clone(), job.job_id.clone(), run.clone());
            let cancelled = Arc::clone(&cancelled);
            let lease = self.config.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 4).await;
                    let until = now() + lease.as_millis() as i64;
                    match jobs.renew(&account, &job_id, &owner, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            cancelled.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, job = %job_id, "renewing a job lease failed"),
                    }
                }
            })
        };
        if self.signals.stopping() {
            cancelled.store(true, Ordering::SeqCst);
        }
        let outcome = export(self, &job, &run, &cancelled).await;
        heartbeat.abort();
        self.signals.lock().remove(&key);
        finish(self, job, &run, outcome).await;
    }
}

/// How a job's work ended.
enum Outcome {
    Written {
        file: StagedExport,
        output_key: Option<String>,
        statistics: JobStatistics,
    },
    /// Stopped by a cancel, a lost lease or a shutdown; nothing is left.
    Stopped,
    Failed(String),
}

/// Runs the export of `job`, writing its file; stops early when `cancelled`.
async fn export(workers: &Workers, job: &ExportJob, run: &str, cancelled: &Arc<AtomicBool>) -> Outcome {
    let hold_until = tokio::time::Instant::now() + workers.config.min_job_duration;
    let format = job.query.request().export_destination.data_format.clone();
    let seed = rng::hash(0, &[job.account.as_str().as_bytes(), job.job_id.as_bytes()]);
    let (columns, rows, statistics) = match job.query.selection(seed) {
        Selection::Metrics(query) => match select_metrics(&*workers.events, &job.account, &query).await {
            Ok(selection) => {
                let rows: Vec<_> = selection.rows.iter().map(metric_cells).collect();
                let stats = JobStatistics {
                    processed: selection.processed,
                    exported: rows.len() as u64,
                };
                (metric_columns(&query), rows, stats)
            }
            Err(e) => return failed(job, e),
        },
        Selection::Insights(query) => match select_insights(&*workers.events, &job.account, &query, cancelled).await {
            Ok(selection) => {
                let rows: Vec<_> = selection.records.iter().map(insight_cells).collect();
                let stats = JobStatistics {
                    processed: selection.processed,
                    exported: rows.len() as u64,
                };
                let columns = crate::rows::INSIGHT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
                (columns, rows, stats)
            }
            Err(e) => return failed(job, e),
        },
    };

    // Hold the job in PROCESSING as configured, still answering cancels.
    while tokio::time::Instant::now() < hold_until {
        if cancelled.load(Ordering::SeqCst) {
            return Outcome::Stopped;
        }
        tokio::time::sleep(Duration::from_millis(20).min(hold_until - tokio::time::Instant::now())).await;
    }
    if cancelled.load(Ordering::SeqCst) {
        return Outcome::Stopped;
    }

    let writer = RowWriter::new(format, columns);
    let (bucket, key, output_key) = match &job.query.request().export_destination.s3_url {
        Some(url) => {
            let Some((bucket, key)) = s3_target(url, &job.job_id, writer.extension()) else {
                return Outcome::Failed(format!("S3Url {url} does not name a bucket and key."));
            };
            match workers.storage.bucket(&bucket) {
                Ok(store) => (store, key, None),
                Err(e) => return write_failed(job, &destination(job), &e),
            }
        }
        None => {
            let key = format!("{}/{}.{}", job.account, job.job_id, writer.extension());
            (workers.storage.managed().clone(), key.clone(), Some(key))
        }
    };
    let mut file = Storage::writer(bucket, &key, run);
    let written = write_rows(&mut file, &writer, &rows, cancelled).await;
    match written {
        Ok(true) => match file.finish().await {
            Ok(file) => Outcome::Written {
                file,
                output_key,
                statistics,
            },
            Err(e) => write_failed(job, &destination(job), &e),
        },
        Ok(false) => {
            file.abort().await;
            Outcome::Stopped
        }
        Err(e) => {
            file.abort().await;
            write_failed(job, &destination(job), &e)
        }
    }
}

/// Where a job's file goes, as the user would name it.
fn destination(job: &ExportJob) -> String {
    match &job.query.request().export_destination.s3_url {
        Some(url) => url.clone(),
        None => "the workers's export storage".to_owned(),
    }
}

/// A failed write, in the user's terms for `FailureInfo`; the detail
/// (paths, library errors) goes to the log.
fn write_failed(job: &ExportJob, destination: &str, e: &crate::destination::StorageError) -> Outcome {
    tracing::error!(error = %e, job = %job.job_id, "writing an export failed");
    Outcome::Failed(format!(
        "The export could not be written to {destination}: {}.",
        e.reason()
    ))
}

fn failed(job: &ExportJob, e: impl std::fmt::Display) -> Outcome {
    tracing::error!(error = %e, job = %job.job_id, "export failed reading the event store");
    Outcome::Failed("The export could not read the event data; try again.".to_owned())
}

/// Writes the header and rows in chunks; `false` if cancelled on the way.
async fn write_rows(
    file: &mut ExportWriter,
    writer: &RowWriter,
    rows: &[Vec<crate::rows::Cell>],
    cancelled: &AtomicBool,
) -> Result<bool, crate::destination::StorageError> {
    let mut buffer = writer.header();
    for (i, row) in rows.iter().enumerate() {
        buffer.push_str(&writer.row(row));
        if buffer.len() >= 1 << 16 {
            file.write(buffer.as_bytes()).await?;
            buffer.clear();
        }
        if i.is_multiple_of(1024) && cancelled.load(Ordering::SeqCst) {
            return Ok(false);
        }
    }
    file.write(buffer.as_bytes()).await?;
    Ok(true)
}

/// Records how a job ended: a written file is published to its final key
/// first, then the job ends by a compare-and-set on `PROCESSING` and this
/// run's lease. A run that lost its lease deletes only its own staging
/// object; when a cancel won, the published file is taken back.
async fn finish(workers: &Workers, job: ExportJob, run: &str, outcome: Outcome) {
    let (status, update, published) = match outcome {
        Outcome::Written {
            file,
            output_key,
            statistics,
        } => {
            // Still ours? A run that lost its lease publishes nothing.
            let until = now() + workers.config.lease.as_millis() as i64;
            match workers.jobs.renew(&job.account, &job.job_id, run, until).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(job = %job.job_id, "the job was cancelled or taken over; its staging file is removed");
                    file.discard().await;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, job = %job.job_id, "checking a job's lease failed");
                    file.discard().await;
                    return;
                }
            }
            match file.publish().await {
                Ok(published) => {
                    let update = JobUpdate {
                        completed: Some(now()),
                        statistics: Some(statistics),
                        output_key,
                        ..JobUpdate::default()
                    };
                    (JobStatus::Completed, update, Some(published))
                }
                Err(e) => {
                    tracing::error!(error = %e, job = %job.job_id, "publishing an export failed");
                    let message = format!(
                        "The export could not be written to {}: {}.",
                        destination(&job),
                        e.reason()
                    );
                    let update = JobUpdate {
                        completed: Some(now()),
                        failure: Some(message),
                        ..JobUpdate::default()
                    };
                    (JobStatus::Failed, update, None)
                }
            }
        }
        Outcome::Failed(message) => {
            let update = JobUpdate {
                completed: Some(now()),
                failure: Some(message),
                ..JobUpdate::default()
            };
            (JobStatus::Failed, update, None)
        }
        // Cancelled, taken over or shut down: the job is someone else's
        // business now (a shut-down server's job is run again later).
        Outcome::Stopped => return,
    };
    let ended = workers
        .jobs
        .finish(&job.account, &job.job_id, run, status.clone(), update)
        .await;
    match ended {
        Ok(true) => {
            tracing::info!(job = %job.job_id, status = %status, "export job ended");
            let duration = (now() - job.created).max(0) as u64;
            // Nobody listening is fine.
            let _ = workers.signals.ended.send(JobEnded {
                scope: job.account.clone(),
                source_type: job.source_type(),
                status,
                duration: Duration::from_millis(duration),
            });
        }
        Ok(false) => {
            // Only a cancel takes the file back: a run that took the job over
            // writes the same key, and its job must find its file.
            let now_cancelled = matches!(
                workers.jobs.get(&job.account, &job.job_id).await,
                Ok(Some(current)) if current.status == JobStatus::Cancelled
            );
            if let Some(published) = published
                && now_cancelled
            {
                tracing::info!(job = %job.job_id, "export job was cancelled as it finished; its file is removed");
                published.delete().await;
            }
        }
        Err(e) => tracing::error!(error = %e, job = %job.job_id, "recording the end of an export job failed"),
    }
}
