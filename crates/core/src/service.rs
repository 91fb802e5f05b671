//! The SES v2 export-jobs operations as a Rust API: typed model inputs in,
//! typed model outputs or a [`ServiceError`] out. The server puts HTTP
//! around it; nothing here knows HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ses_export_model::types::*;
use ses_export_model::{InputError, Violation};

use crate::Scope;
use crate::clock::Millis;
use crate::destination::{BucketAccess, Storage, s3_target, valid_bucket_name};
use crate::event_store::{EventStore, MessageDetail};
use crate::ids::uuid_v4;
use crate::job::{ExportJob, JobFilter, JobStore, JobStoreError, JobUpdate};
use crate::limits::{LimitedOperation, RateLimiter};
use crate::page_token;
use crate::query::{self, ExportQuery, interval};
use crate::rules;
use crate::signing::{self, SigningKey};
use crate::worker::{JobSignals, WorkerConfig, Workers};

pub use crate::query::DEFAULT_MAX_RESULTS;
/// `PageSize` when the request has none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub use crate::signing::DOWNLOAD_PATH;

/// An operation's failure, as the wire will name it. A new kind of failure
/// is a new variant here and a new arm in the server's wire mapping, which
/// has no catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// The request breaks a rule (`BadRequestException`, 400).
    BadRequest(String),
    /// No such job or message in the account (`NotFoundException`, 404).
    NotFound(String),
    /// The account has its limit of active jobs (`LimitExceededException`).
    LimitExceeded(String),
    /// The operation's rate limit is spent (`TooManyRequestsException`).
    TooManyRequests(String),
    /// The service's own machinery failed (a store, the bucket, a task):
    /// for the log, with its causes, never for the caller.
    Internal(InternalError),
}

/// What made an operation fail inside the service, with its causes
/// (`source()`), shared so that [`ServiceError`] stays `Clone`.
#[derive(Debug, Clone)]
pub struct InternalError(Arc<dyn std::error::Error + Send + Sync>);

impl InternalError {
    /// Wraps the error that made the operation fail.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        InternalError(Arc::new(error))
    }
}

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InternalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two internal errors are equal when they say the same (tests compare
/// outcomes; the causes are for the log).
impl PartialEq for InternalError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for InternalError {}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::BadRequest(m)
            | ServiceError::NotFound(m)
            | ServiceError::LimitExceeded(m)
            | ServiceError::TooManyRequests(m) => f.write_str(m),
            ServiceError::Internal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Internal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<InternalError> for ServiceError {
    fn from(e: InternalError) -> Self {
        ServiceError::Internal(e)
    }
}

impl From<InputError> for ServiceError {
    fn from(e: InputError) -> Self {
        ServiceError::BadRequest(e.to_string())
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
    ServiceError::Internal(InternalError::new(e))
}

fn invalid(violations: Vec<Violation>) -> Result<(), ServiceError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(InputError::Invalid(violations).into())
    }
}

/// How the service behaves: [`ServiceConfig::default`] (the server's
/// defaults), then set what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Jobs an account may have `CREATED` or `PROCESSING` at once.
    pub max_active_jobs: usize,
    /// Refuse `S3Url`, as AWS does today.
    pub strict: bool,
    /// How long a download URL is valid.
    pub download_ttl: Duration,
    /// Hold each job in `PROCESSING` at least this long: for demos and for
    /// tests that cancel or kill a running job.
    pub min_job_duration: Duration,
    /// How long a worker's hold on a job lasts without renewal; after a
    /// worker dies, its job waits this long before another takes it.
    pub lease: Duration,
    /// Whether jobs left `PROCESSING` are requeued at start-up: true when
    /// this process is the only one using the job store.
    pub sole_server: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_active_jobs: 20,
            strict: false,
            download_ttl: Duration::from_secs(300),
            min_job_duration: Duration::ZERO,
            lease: Duration::from_secs(10),
            sole_server: true,
        }
    }
}

/// The export-jobs service.
#[derive(Debug)]
pub struct ExportService {
    events: Arc<dyn EventStore>,
    jobs: Arc<dyn JobStore>,
    limiter: Arc<dyn RateLimiter>,
    storage: Storage,
    key: SigningKey,
    config: ServiceConfig,
    /// What this process's API side and workers share about jobs.
    signals: Arc<JobSignals>,
}

fn job_store_error(e: JobStoreError) -> ServiceError {
    internal(e)
}

impl ExportService {
    /// The service over its stores, limits and export storage, with
    /// `key` signing download URLs. Starts no workers: see `run_workers`.
    pub fn new(
        events: Arc<dyn EventStore>,
        jobs: Arc<dyn JobStore>,
        limiter: Arc<dyn RateLimiter>,
        storage: Storage,
        key: SigningKey,
        config: ServiceConfig,
    ) -> Self {
        ExportService {
            events,
            jobs,
            limiter,
            storage,
            key,
            config,
            signals: Arc::default(),
        }
    }

    /// The jobs this process's workers end from now on (for metrics).
    pub fn jobs_ended(&self) -> tokio::sync::broadcast::Receiver<crate::worker::JobEnded> {
        self.signals.subscribe_ended()
    }

    /// The workers that run this service's jobs, sharing its stores.
    pub fn workers(&self) -> Workers {
        Workers::new(
            Arc::clone(&self.events),
            Arc::clone(&self.jobs),
            self.storage.clone(),
            Arc::clone(&self.signals),
            WorkerConfig {
                lease: self.config.lease,
                min_job_duration: self.config.min_job_duration,
                sole_server: self.config.sole_server,
            },
        )
    }

    /// The job store.
    pub fn jobs(&self) -> &Arc<dyn JobStore> {
        &self.jobs
    }

    /// Where exports are written.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Starts a shutdown: running jobs stop at their next safe point (a
    /// scan checks every [`crate::event_store::SCAN_CHECK_ROWS`] rows it reads)
    /// and stay `PROCESSING`, to be run again by the next server; no new
    /// job is taken.
    pub fn begin_shutdown(&self) {
        self.signals.begin_shutdown();
    }

    /// Closes the stores for a clean exit (SQLite: the write-ahead log is
    /// folded into the database file).
    pub async fn close(&self) {
        if let Err(e) = self.events.close().await {
            tracing::warn!(error = %e, "closing the event store");
        }
        if let Err(e) = self.jobs.close().await {
            tracing::warn!(error = %e, "closing the job store");
        }
    }

    /// The event store, for ingestion.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    async fn throttle(&self, account: &Scope, operation: LimitedOperation) -> Result<(), ServiceError> {
        if self.limiter.try_acquire(account, operation).await {
            Ok(())
        } else {
            Err(ServiceError::TooManyRequests("Too Many Requests".to_owned()))
        }
    }

    /// `CreateExportJob` of a validated request
    /// (`ExportQuery::try_from(request)`); `buckets` are those the caller
    /// may name in `S3Url`.
    pub async fn create_export_job(
        &self,
        account: &Scope,
        buckets: &BucketAccess,
        query: ExportQuery,
    ) -> Result<CreateExportJobResponse, ServiceError> {
        self.throttle(account, LimitedOperation::CreateExportJob).await?;
        if let Some(url) = &query.request().export_destination.s3_url {
            if self.config.strict {
                return Err(ServiceError::BadRequest(
                    "S3Url is not supported: the export is kept by the service; download it from the \
                     ExportDestination.S3Url that GetExportJob returns once the job is COMPLETED"
                        .to_owned(),
                ));
            }
            let (bucket, _) = s3_target(url, "x", "csv")
                .ok_or_else(|| ServiceError::BadRequest(format!("S3Url {url} does not name a bucket and key")))?;
            // Only the name is checked here; the job opens the bucket.
            if !valid_bucket_name(&bucket) {
                return Err(ServiceError::BadRequest(format!(
                    "S3Url {url}: {bucket:?} is not a valid S3 bucket name"
                )));
            }
            if self.storage.is_managed_bucket(&bucket) || !buckets.allows(&bucket) {
                return Err(ServiceError::BadRequest(format!(
                    "S3Url {url}: this account may not write to bucket {bucket}"
                )));
            }
        }
        let job = ExportJob {
            account: account.clone(),
            job_id: uuid_v4().map_err(internal)?,
            status: JobStatus::Created,
            query,
            created: crate::clock::now(),
            completed: None,
            failure: None,
            statistics: None,
            output_key: None,
            lease: None,
        };
        match self.jobs.create(&job, self.config.max_active_jobs).await {
            Ok(()) => {}
            Err(JobStoreError::TooManyActive { limit }) => {
                return Err(ServiceError::LimitExceeded(format!(
                    "You have reached the limit of {limit} active export jobs (CREATED or PROCESSING). \
                     Wait for one to end or cancel one, then try again."
                )));
            }
            Err(e) => return Err(job_store_error(e)),
        }
        self.signals.job_created();
        Ok(CreateExportJobResponse {
            job_id: Some(job.job_id),
        })
    }

    async fn job(&self, account: &Scope, job_id: &str) -> Result<ExportJob, ServiceError> {
        if !storable_id(job_id) {
            return Err(ServiceError::NotFound(format!("Export job {job_id} does not exist.")));
        }
        self.jobs
            .get(account, job_id)
            .await
            .map_err(job_store_error)?
            .ok_or_else(|| ServiceError::NotFound(format!("Export job {job_id} does not exist.")))
    }

    /// `GetExportJob`. `base_url` (`http://host:port`) is where download
    /// URLs of managed exports point.
    pub async fn get_export_job(
        &self,
        account: &Scope,
        input: GetExportJobRequest,
        base_url: &str,
    ) -> Result<GetExportJobResponse, ServiceError> {
        self.throttle(account, LimitedOperation::GetExportJob).await?;
        let job = self.job(account, &input.job_id).await?;
        let mut destination = job.query.request().export_destination.clone();
        if job.status == JobStatus::Completed
            && let Some(key) = &job.output_key
        {
            destination.s3_url = Some(signing::download_url(
                &self.key,
                base_url,
                key,
                self.config.download_ttl,
            ));
        }
        Ok(GetExportJobResponse {
            job_id: Some(job.job_id.clone()),
            export_source_type: Some(job.source_type()),
            job_status: Some(job.status.clone()),
            export_destination: Some(destination),
            export_data_source: Some(job.query.request().export_data_source.clone()),
            created_timestamp: job.created.timestamp(),
            completed_timestamp: job.completed.and_then(Millis::timestamp),
            failure_info: job.failure.as_ref().map(|message| FailureInfo {
                failed_records_s3_url: None,
                error_message: Some(message.clone()),
            }),
            statistics: job.statistics.map(|s| ExportStatistics {
                processed_records_count: Some(i32::try_from(s.processed).unwrap_or(i32::MAX)),
                exported_records_count: Some(i32::try_from(s.exported).unwrap_or(i32::MAX)),
            }),
        })
    }

    /// `ListExportJobs`: the account's jobs, newest first, a page at a time.
    pub async fn list_export_jobs(
        &self,
        account: &Scope,
        input: ListExportJobsRequest,
    ) -> Result<ListExportJobsResponse, ServiceError> {
        self.throttle(account, LimitedOperation::ListExportJobs).await?;
        invalid(rules::list_export_jobs(&input))?;
        let filter = JobFilter {
            status: input.job_status.clone(),
            source_type: input.export_source_type.clone(),
        };
        let cursor = match &input.next_token {
            Some(token) => Some(
                page_token::read(&self.key, account, &filter, token)
                    .ok_or_else(|| ServiceError::BadRequest("The NextToken is not valid.".to_owned()))?,
            ),
            None => None,
        };
        let size = input.page_size.map_or(DEFAULT_PAGE_SIZE, |n| n.max(1) as usize);
        let mut jobs = self
            .jobs
            .list(account, &filter, cursor.as_ref(), size + 1)
            .await
            .map_err(job_store_error)?;
        let next_token = if jobs.len() > size {
            jobs.truncate(size);
            jobs.last()
                .map(|last| page_token::make(&self.key, account, &filter, &last.cursor()))
        } else {
            None
        };
        Ok(ListExportJobsResponse {
            export_jobs: Some(
                jobs.into_iter()
                    .map(|job| ExportJobSummary {
                        export_source_type: Some(job.source_type()),
                        job_id: Some(job.job_id),
                        job_status: Some(job.status),
                        created_timestamp: job.created.timestamp(),
                        completed_timestamp: job.completed.and_then(Millis::timestamp),
                    })
                    .collect(),
            ),
            next_token,
        })
    }

    /// `CancelExportJob`: a `CREATED` or `PROCESSING` job becomes
    /// `CANCELLED`, and a worker running it stops and deletes its file.
    pub async fn cancel_export_job(
        &self,
        account: &Scope,
        input: CancelExportJobRequest,
    ) -> Result<CancelExportJobResponse, ServiceError> {
        self.throttle(account, LimitedOperation::CancelExportJob).await?;
        if !storable_id(&input.job_id) {
            return Err(ServiceError::NotFound(format!(
                "Export job {} does not exist.",
                input.job_id
            )));
        }
        let update = JobUpdate {
            completed: Some(crate::clock::now()),
            ..JobUpdate::default()
        };
        let result = self
            .jobs
            .transition(
                account,
                &input.job_id,
                &[JobStatus::Created, JobStatus::Processing],
                JobStatus::Cancelled,
                update,
            )
            .await
            .map_err(job_store_error)?;
        match result {
            None => Err(ServiceError::NotFound(format!(
                "Export job {} does not exist.",
                input.job_id
            ))),
            Some((job, false)) => Err(ServiceError::BadRequest(format!(
                "Export job {} is {} and cannot be cancelled.",
                job.job_id, job.status
            ))),
            Some((job, true)) => {
                self.signals.job_cancelled(&job.account, &job.job_id);
                Ok(CancelExportJobResponse {})
            }
        }
    }

    /// `GetMessageInsights`: a message's recipients and their events.
    pub async fn get_message_insights(
        &self,
        account: &Scope,
        input: GetMessageInsightsRequest,
    ) -> Result<GetMessageInsightsResponse, ServiceError> {
        self.throttle(account, LimitedOperation::GetMessageInsights).await?;
        if !storable_id(&input.message_id) {
            return Err(ServiceError::NotFound(format!(
                "Message {} does not exist.",
                input.message_id
            )));
        }
        let detail = self
            .events
            .message_insights(account, &input.message_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound(format!("Message {} does not exist.", input.message_id)))?;
        Ok(message_insights_response(detail))
    }

    /// The bounce and complaint rates of `scope` over its latest `sends`
    /// eligible sends (AWS's reputation page), rate-limited like the read
    /// operations.
    pub async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, ServiceError> {
        self.throttle(scope, LimitedOperation::Reputation).await?;
        self.events.reputation(scope, sends).await.map_err(internal)
    }

    /// `BatchGetMetricData`: daily VDM metric volumes, per query.
    pub async fn batch_get_metric_data(
        &self,
        account: &Scope,
        input: BatchGetMetricDataRequest,
    ) -> Result<BatchGetMetricDataResponse, ServiceError> {
        self.throttle(account, LimitedOperation::BatchGetMetricData).await?;
        invalid(rules::batch_get_metric_data(&input))?;
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for query in input.queries {
            let filter: BTreeMap<MetricDimensionName, String> = query.dimensions.clone().unwrap_or_default();
            let interval = interval(query.start_date, query.end_date);
            match query::daily_volumes(&*self.events, account, &query.metric, &filter, interval).await {
                Ok(days) => results.push(MetricDataResult {
                    id: Some(query.id),
                    timestamps: Some(days.iter().filter_map(|(t, _)| t.timestamp()).collect()),
                    values: Some(days.iter().map(|(_, v)| *v).collect()),
                }),
                Err(e) => {
                    tracing::error!(error = %e, query = %query.id, "metric query failed");
                    errors.push(MetricDataError {
                        id: Some(query.id),
                        code: Some(QueryErrorCode::InternalFailure),
                        message: Some("The query could not be answered; try again.".to_owned()),
                    });
                }
            }
        }
        Ok(BatchGetMetricDataResponse {
            results: Some(results),
            errors: Some(errors),
        })
    }

    /// Opens a managed export from its pre-signed URL's parts; `None` when
    /// the URL is expired, changed or for a file that is gone.
    pub async fn open_download(
        &self,
        key: &str,
        expires: &str,
        signature: &str,
    ) -> Result<Option<Download>, ServiceError> {
        if !signing::download_is_valid(&self.key, key, expires, signature) {
            return Ok(None);
        }
        match self
            .storage
            .managed()
            .store
            .get(&object_store::path::Path::from(key))
            .await
        {
            Ok(result) => {
                use futures_util::StreamExt;
                let size = result.meta.size;
                let body = result.into_stream().map(|chunk| chunk.map_err(std::io::Error::other));
                Ok(Some(Download {
                    size,
                    body: Box::pin(body),
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }
}

/// A managed export being downloaded.
#[non_exhaustive]
pub struct Download {
    /// In bytes.
    pub size: u64,
    /// The file's bytes, in order.
    pub body: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Whether `id` could name something stored: no store keeps U+0000 (event
/// intake refuses it, and PostgreSQL's text cannot hold it), so an id with
/// one names nothing, on every backend alike.
fn storable_id(id: &str) -> bool {
    !id.contains('\0')
}

fn message_insights_response(detail: MessageDetail) -> GetMessageInsightsResponse {
    GetMessageInsightsResponse {
        message_id: Some(detail.message_id),
        from_email_address: detail.from_email_address,
        subject: detail.subject,
        email_tags: Some(
            detail
                .tags
                .into_iter()
                .map(|(name, value)| MessageTag { name, value })
                .collect(),
        ),
        insights: Some(
            detail
                .recipients
                .into_iter()
                .map(|r| {
                    let every_event = crate::insight::shows_every_event(r.recipient_count, &r.destination);
                    EmailInsights {
                        destination: Some(r.destination),
                        isp: Some(r.isp),
                        events: Some(
                            r.events
                                .into_iter()
                                .filter(|e| shown_event(e, every_event))
                                .map(|e| {
                                    let bounce = e.bounce_type.map(|bounce_type| Bounce {
                                        bounce_type: Some(bounce_type),
                                        bounce_sub_type: e.bounce_sub_type.clone(),
                                        diagnostic_code: e.diagnostic_code.clone(),
                                    });
                                    let complaint = (e.kind == crate::event::EventKind::Complaint).then(|| Complaint {
                                        complaint_sub_type: e.complaint_sub_type.clone(),
                                        complaint_feedback_type: e.complaint_feedback_type.clone(),
                                    });
                                    let details = (bounce.is_some() || complaint.is_some())
                                        .then_some(EventDetails { bounce, complaint });
                                    InsightsEvent {
                                        timestamp: e.timestamp.timestamp(),
                                        r#type: Some(e.kind.event_type()),
                                        details,
                                    }
                                })
                                .collect(),
                        ),
                    }
                })
                .collect(),
        ),
    }
}

/// Whether `GetMessageInsights` lists `event` (docs/metrics.md, "Which events a
/// record shows"): a multi-recipient message's or a simulator recipient's
/// Delivery, Bounce, Complaint, Open and Click are not listed, nor ever a
/// complaint from the account-level suppression list (a suppressed bounce
/// is, with its details).
fn shown_event(event: &crate::event_store::StoredEvent, every_event: bool) -> bool {
    use crate::event::EventKind;
    let delivery_or_engagement = matches!(
        event.kind,
        EventKind::Delivery | EventKind::Bounce | EventKind::Complaint | EventKind::Open | EventKind::Click
    );
    let suppressed_complaint = event.kind == EventKind::Complaint
        && event.complaint_sub_type.as_deref() == Some(crate::insight::ON_ACCOUNT_SUPPRESSION_LIST);
    (every_event || !delivery_or_engagement) && !suppressed_complaint
}
