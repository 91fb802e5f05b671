//! The client: one generic, signed, retried call per operation, and the
//! helpers built on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use ses_export_model::error::ErrorBody;
use ses_export_model::ingest::IngestReport;
use ses_export_model::operation::{self, Operation};
use ses_export_model::types::*;
use tokio::io::AsyncWriteExt;

use crate::credentials::{self, Credentials, Resolve};
use crate::error::{Error, ErrorKind, ServiceError, TransportError};

/// How calls are retried: on 429 and 5xx, with exponential backoff and full
/// jitter, at most `max_attempts` times in all.
///
/// `RetryPolicy::default()` (5 attempts, 250 ms doubling to 5 s), or
/// [`RetryPolicy::attempts`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first retry's greatest wait; each doubles it.
    pub base_delay: Duration,
    /// The greatest wait before any retry.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (1: no retries), with the
    /// default waits.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Where and as whom to call: [`ClientConfig::new`], then `with_*`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `http://127.0.0.1:4599`, or `https://email.us-east-1.amazonaws.com`.
    pub endpoint: String,
    /// Which credentials and region to use.
    pub resolve: Resolve,
    /// How throttling and server errors are retried.
    pub retry: RetryPolicy,
    /// For `https` endpoints: trust only the certificates in this PEM file
    /// (the AWS CLI's `--ca-bundle`); else `AWS_CA_BUNDLE`, else the
    /// platform's trust roots.
    pub ca_bundle: Option<PathBuf>,
}

impl ClientConfig {
    /// `endpoint`, with the credentials and region the environment and
    /// the shared AWS files resolve, and the default retries.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            resolve: Resolve::default(),
            retry: RetryPolicy::default(),
            ca_bundle: None,
        }
    }

    /// A local server with whatever credentials the environment resolves
    /// (the same as [`ClientConfig::new`]).
    pub fn local(endpoint: &str) -> Self {
        Self::new(endpoint)
    }

    /// Where credentials and the region come from.
    pub fn with_resolve(mut self, resolve: Resolve) -> Self {
        self.resolve = resolve;
        self
    }

    /// How throttling and server errors are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// For `https` endpoints: trust only the certificates in this PEM file.
    pub fn with_ca_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_bundle = Some(path.into());
        self
    }
}

/// A client of one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl Client {
    /// A client of `config.endpoint`; fails when no credentials resolve
    /// or the endpoint is not an `http(s)` URL.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        let host = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .ok_or_else(|| Error::Config(format!("endpoint {endpoint:?} must start with http:// or https://")))?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let resolved = credentials::resolve(&config.resolve).map_err(|e| Error::Config(e.to_string()))?;
        let http = crate::tls::http_client(config.ca_bundle.as_deref())?;
        Ok(Client {
            http,
            endpoint,
            host,
            region: resolved.region,
            credentials: resolved.credentials,
            retry: config.retry,
        })
    }

    /// The endpoint this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls one operation.
    pub async fn call<O: Operation>(&self, input: &O::Input) -> Result<O::Output, Error> {
        let spec = O::spec();
        let path = spec.path(&O::labels(input));
        let body = if spec.method == "GET" {
            Vec::new()
        } else {
            serde_json::to_vec(input).map_err(|e| Error::Decode(format!("encoding the request: {e}")))?
        };
        let bytes = self.send(spec.method, &path, &body, "application/json").await?;
        let bytes = if bytes.is_empty() { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Decode(format!("{} answered something unexpected: {e}", spec.name)))
    }

    /// Sends a signed request, retrying throttling and server errors.
    async fn send(&self, method: &str, path: &str, body: &[u8], content_type: &str) -> Result<bytes::Bytes, Error> {
        let url = format!("{}{path}", self.endpoint);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let headers = self.sign(method, &url, body, content_type)?;
            let mut request = self
                .http
                .request(
                    method
                        .parse()
                        .map_err(|_| Error::Config(format!("bad method {method}")))?,
                    &url,
                )
                .header("content-type", content_type)
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let (error_type, request_id) = (header("x-amzn-errortype"), header("x-amzn-requestid"));
                    let bytes = response.bytes().await.map_err(|e| Error::Transport {
                        endpoint: self.endpoint.clone(),
                        source: TransportError::new(e),
                    })?;
                    if (200..300).contains(&status) {
                        return Ok(bytes);
                    }
                    let message = serde_json::from_slice::<ErrorBody>(&bytes)
                        .map(|b| b.message)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                    let kind = match error_type {
                        Some(name) => ErrorKind::from_name(&name),
                        None => ErrorKind::Other(format!("HTTP {status}")),
                    };
                    Err(Error::Service(ServiceError {
                        kind,
                        message,
                        status,
                        request_id,
                    }))
                }
                Err(e) => Err(Error::Transport {
                    endpoint: self.endpoint.clone(),
                    source: TransportError::new(e),
                }),
            };
            let retryable = match &outcome {
                Err(Error::Service(e)) => e.status == 429 || e.status >= 500,
                Err(Error::Transport { source, .. }) => source.is_timeout(),
                _ => false,
            };
            if !retryable || attempt >= self.retry.max_attempts {
                return outcome.map(|_: ()| bytes::Bytes::new());
            }
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// Full jitter: a random delay up to the capped exponential step.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .retry
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.retry.max_delay);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // The sub-second clock is random enough to spread clients apart.
        let fraction = f64::from(nanos % 1_000_000) / 1_000_000.0;
        cap.mul_f64(0.5 + fraction / 2.0)
    }

    fn sign(&self, method: &str, url: &str, body: &[u8], content_type: &str) -> Result<Vec<(String, String)>, Error> {
        let headers = [("host", self.host.as_str()), ("content-type", content_type)];
        credentials::sign(
            &self.credentials,
            &self.region,
            "ses",
            aws_sigv4::http_request::SigningSettings::default(),
            (method, url, &headers, body),
        )
    }

    /// `CreateExportJob`: starts an export job.
    pub async fn create_export_job(&self, input: CreateExportJobRequest) -> Result<CreateExportJobResponse, Error> {
        self.call::<operation::CreateExportJob>(&input).await
    }

    /// `GetExportJob`: a job's status, request, statistics and file.
    pub async fn get_export_job(&self, job_id: &str) -> Result<GetExportJobResponse, Error> {
        let input = GetExportJobRequest {
            job_id: job_id.to_owned(),
        };
        self.call::<operation::GetExportJob>(&input).await
    }

    /// `ListExportJobs`: one page of jobs, newest first.
    pub async fn list_export_jobs(&self, input: ListExportJobsRequest) -> Result<ListExportJobsResponse, Error> {
        self.call::<operation::ListExportJobs>(&input).await
    }

    /// `CancelExportJob`: cancels a job that has not ended.
    pub async fn cancel_export_job(&self, job_id: &str) -> Result<CancelExportJobResponse, Error> {
        let input = CancelExportJobRequest {
            job_id: job_id.to_owned(),
        };
        self.call::<operation::CancelExportJob>(&input).await
    }

    /// `GetMessageInsights`: one message's recipients and their events.
    pub async fn get_message_insights(&self, message_id: &str) -> Result<GetMessageInsightsResponse, Error> {
        let input = GetMessageInsightsRequest {
            message_id: message_id.to_owned(),
        };
        self.call::<operation::GetMessageInsights>(&input).await
    }

    /// `BatchGetMetricData`: daily values of up to ten metric queries.
    pub async fn batch_get_metric_data(
        &self,
        input: BatchGetMetricDataRequest,
    ) -> Result<BatchGetMetricDataResponse, Error> {
        self.call::<operation::BatchGetMetricData>(&input).await
    }

    /// Every job `input` selects, page by page, as a stream.
    pub fn list_all_export_jobs(
        &self,
        input: ListExportJobsRequest,
    ) -> impl Stream<Item = Result<ExportJobSummary, Error>> + '_ {
        let pages = futures_util::stream::unfold(Some(input), move |next| async move {
            let input = next?;
            match self.list_export_jobs(input.clone()).await {
                Ok(page) => {
                    let following = page.next_token.clone().map(|token| ListExportJobsRequest {
                        next_token: Some(token),
                        ..input
                    });
                    let jobs = page
                        .export_jobs
                        .unwrap_or_default()
                        .into_iter()
                        .map(Ok)
                        .collect::<Vec<_>>();
                    Some((futures_util::stream::iter(jobs), following))
                }
                Err(e) => Some((futures_util::stream::iter(vec![Err(e)]), None)),
            }
        });
        futures_util::StreamExt::flatten(pages)
    }

    /// Polls `GetExportJob` until the job ends (every `interval`, at least
    /// a second: the service allows one call a second), telling
    /// `on_status` each answer. Throttling is retried, never returned.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        interval: Duration,
        mut on_status: impl FnMut(&GetExportJobResponse),
    ) -> Result<GetExportJobResponse, Error> {
        let interval = interval.max(Duration::from_millis(1050));
        loop {
            let job = self.get_export_job(job_id).await?;
            on_status(&job);
            if matches!(
                job.job_status,
                Some(JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
            ) {
                return Ok(job);
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Streams `url` (a finished export's pre-signed URL) to `path`. The
    /// file appears only when complete: a failed download leaves nothing.
    pub async fn download(&self, url: &str, path: &Path) -> Result<u64, Error> {
        let mut response = self.http.get(url).send().await.map_err(|e| Error::Transport {
            endpoint: url.to_owned(),
            source: TransportError::new(e),
        })?;
        if !response.status().is_success() {
            return Err(Error::Service(ServiceError {
                kind: ErrorKind::Other(format!("HTTP {}", response.status().as_u16())),
                message: format!(
                    "the download was refused ({}): the URL may have expired; get the job again for a fresh one",
                    response.status()
                ),
                status: response.status().as_u16(),
                request_id: None,
            }));
        }
        let partial = path.with_file_name(format!(
            ".{}.partial",
            path.file_name()
                .map_or_else(|| "download".into(), |n| n.to_string_lossy())
        ));
        // Made new, never opened through whatever is there: a file or a
        // link left at that name (a crashed download, or planted) is
        // removed, not written through, and the file is created exclusively
        // (O_EXCL does not follow a link).
        match tokio::fs::remove_file(&partial).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await?;
        let mut written = 0u64;
        let result: Result<(), Error> = async {
            while let Some(chunk) = response.chunk().await.map_err(|e| Error::Transport {
                endpoint: url.to_owned(),
                source: TransportError::new(e),
            })? {
                file.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            file.flush().await?;
            file.sync_all().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&partial, path).await?;
                Ok(written)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    /// Sends JSON Lines of SES records to the ingest endpoint.
    pub async fn ingest(&self, body: &[u8]) -> Result<IngestReport, Error> {
        let bytes = self
            .send("POST", "/_ses-export/v1/events", body, "application/x-ndjson")
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("the ingest answer: {e}")))
    }
}
