//! Workers: take `CREATED` jobs from the job store, run them, and record
//! how they ended. Each status change is a compare-and-set, so a cancel and
//! a finishing worker can never both win; the loser cleans up after itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ses_export_model::types::{ExportSourceType, JobStatus};

use crate::export::{RowWriter, insight_cells, metric_cells, metric_columns};
use crate::job::{ExportJob, JobStatistics, JobUpdate};
use crate::query::{select_insights, select_metrics};
use crate::rng;
use crate::service::{ExportService, insight_query, metrics_query, now};
use crate::storage::{ExportWriter, FinishedExport, Storage, s3_target};

/// How often an idle worker looks for work it was not woken for.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs `count` workers until `shutdown` turns true. Jobs that were
/// `PROCESSING` when the process last stopped go back to `CREATED` first.
pub async fn run_workers(service: Arc<ExportService>, count: usize, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if count == 0 {
        return;
    }
    // A sole server's PROCESSING jobs are its own from a previous run; in a
    // cluster, they belong to servers that may be alive, and leases decide.
    if service.config.sole_server {
        match service.jobs.requeue_processing().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "requeued jobs left PROCESSING by the last run"),
            Err(e) => tracing::error!(error = %e, "could not requeue interrupted jobs"),
        }
    }
    let mut workers = Vec::new();
    for _ in 0..count {
        let service = Arc::clone(&service);
        let mut shutdown = shutdown.clone();
        workers.push(tokio::spawn(async move {
            while !*shutdown.borrow() {
                let lease = service.config.lease.as_millis() as i64;
                match service.jobs.claim(&service.worker_id, now(), lease).await {
                    Ok(Some(job)) => service.run_job(job).await,
                    Ok(None) => {
                        let woken = service.wake.notified();
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
    for worker in workers {
        let _ = worker.await;
    }
}

/// How a job's work ended.
pub(crate) enum Outcome {
    Written {
        file: FinishedExport,
        output_key: Option<String>,
        statistics: JobStatistics,
    },
    Cancelled,
    Failed(String),
}

/// Runs the export of `job`, writing its file; stops early when `cancelled`.
pub(crate) async fn export(service: &ExportService, job: &ExportJob, cancelled: &AtomicBool) -> Outcome {
    let hold_until = tokio::time::Instant::now() + service.config.min_job_duration;
    let request = &job.request;
    let format = request.export_destination.data_format.clone();
    let (columns, rows, statistics) = match job.source_type {
        ExportSourceType::MetricsData => {
            let Some(source) = &request.export_data_source.metrics_data_source else {
                return Outcome::Failed("The job has no MetricsDataSource.".to_owned());
            };
            let query = metrics_query(source);
            match select_metrics(&*service.events, &job.account, &query).await {
                Ok(selection) => {
                    let rows: Vec<_> = selection.rows.iter().map(metric_cells).collect();
                    let stats = JobStatistics {
                        processed: selection.processed,
                        exported: rows.len() as u64,
                    };
                    (metric_columns(&query), rows, stats)
                }
                Err(e) => return failed(job, e),
            }
        }
        _ => {
            let Some(source) = &request.export_data_source.message_insights_data_source else {
                return Outcome::Failed("The job has no MessageInsightsDataSource.".to_owned());
            };
            let seed = rng::hash(0, &[job.account.as_str().as_bytes(), job.job_id.as_bytes()]);
            let query = match insight_query(source, seed) {
                Ok(q) => q,
                Err(e) => return Outcome::Failed(e.to_string()),
            };
            let keep_going = || !cancelled.load(Ordering::SeqCst);
            match select_insights(&*service.events, &job.account, &query, &keep_going).await {
                Ok(selection) => {
                    let rows: Vec<_> = selection.records.iter().map(insight_cells).collect();
                    let stats = JobStatistics {
                        processed: selection.processed,
                        exported: rows.len() as u64,
                    };
                    let columns = crate::export::INSIGHT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
                    (columns, rows, stats)
                }
                Err(e) => return failed(job, e),
            }
        }
    };

    // Hold the job in PROCESSING as configured, still answering cancels.
    while tokio::time::Instant::now() < hold_until {
        if cancelled.load(Ordering::SeqCst) {
            return Outcome::Cancelled;
        }
        tokio::time::sleep(Duration::from_millis(20).min(hold_until - tokio::time::Instant::now())).await;
    }
    if cancelled.load(Ordering::SeqCst) {
        return Outcome::Cancelled;
    }

    let writer = RowWriter::new(format, columns);
    let (store, key, output_key) = match &request.export_destination.s3_url {
        Some(url) => {
            let Some((bucket, key)) = s3_target(url, &job.job_id, writer.extension()) else {
                return Outcome::Failed(format!("S3Url {url} does not name a bucket and key."));
            };
            match service.storage.bucket(&bucket) {
                Ok(store) => (store, key, None),
                Err(e) => return Outcome::Failed(format!("The export could not be written to {url}: {e}")),
            }
        }
        None => {
            let key = format!("{}/{}.{}", job.account, job.job_id, writer.extension());
            (Arc::clone(service.storage.managed()), key.clone(), Some(key))
        }
    };
    let mut file = Storage::writer(store, &key);
    let written = write_rows(&mut file, &writer, &rows, cancelled).await;
    match written {
        Ok(true) => match file.finish().await {
            Ok(file) => Outcome::Written {
                file,
                output_key,
                statistics,
            },
            Err(e) => Outcome::Failed(format!("The export could not be written: {e}")),
        },
        Ok(false) => {
            file.abort().await;
            Outcome::Cancelled
        }
        Err(e) => {
            file.abort().await;
            Outcome::Failed(format!("The export could not be written: {e}"))
        }
    }
}

fn failed(job: &ExportJob, e: impl std::fmt::Display) -> Outcome {
    tracing::error!(error = %e, job = %job.job_id, "export failed reading the event store");
    Outcome::Failed("The export could not read the event data; try again.".to_owned())
}

/// Writes the header and rows in chunks; `false` if cancelled on the way.
async fn write_rows(
    file: &mut ExportWriter,
    writer: &RowWriter,
    rows: &[Vec<crate::export::Cell>],
    cancelled: &AtomicBool,
) -> Result<bool, crate::storage::StorageError> {
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

/// Records how a job ended: compare-and-set from `PROCESSING`. When a
/// cancel got there first, the written file is taken back.
pub(crate) async fn finish(service: &ExportService, job: ExportJob, outcome: Outcome) {
    let (status, update, file) = match outcome {
        Outcome::Written {
            file,
            output_key,
            statistics,
        } => {
            let update = JobUpdate {
                completed: Some(now()),
                statistics: Some(statistics),
                output_key,
                ..JobUpdate::default()
            };
            (JobStatus::Completed, update, Some(file))
        }
        Outcome::Failed(message) => {
            let update = JobUpdate {
                completed: Some(now()),
                failure: Some(message),
                ..JobUpdate::default()
            };
            (JobStatus::Failed, update, None)
        }
        // The canceller already moved the job to CANCELLED.
        Outcome::Cancelled => return,
    };
    let moved = service
        .jobs
        .transition(
            &job.account,
            &job.job_id,
            &[JobStatus::Processing],
            status.clone(),
            update,
        )
        .await;
    match moved {
        Ok(Some((_, true))) => tracing::info!(job = %job.job_id, status = %status, "export job ended"),
        Ok(_) => {
            tracing::info!(job = %job.job_id, "export job was cancelled as it finished; its file is removed");
            if let Some(file) = file {
                file.delete().await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, job = %job.job_id, "recording the end of an export job failed");
            if let Some(file) = file {
                file.delete().await;
            }
        }
    }
}
