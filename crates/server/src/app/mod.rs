//! The HTTP surface: the router and the one handler every operation goes
//! through (admitted from its head, its body read within bounds, its input
//! parsed, served, answered in restJson1). By job: `dispatch` (generated
//! from the model: one method, `Serve` and route per operation), `auth`,
//! `http` (framing, bodies, ingest slots), `error`, `intake`, `firehose`,
//! `download`, `status` (`/metrics`, reputation, `/healthz`, `/readyz`) and
//! `console`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use ses_export_core::destination::BucketAccess;
use ses_export_core::query::ExportQuery;
use ses_export_core::service::{DOWNLOAD_PATH, ExportService, ServiceError};
use ses_export_core::{Region, Scope};
use ses_export_model::operation::Operation;
use ses_export_model::parse_input;
use ses_export_model::types::{
    BatchGetMetricDataRequest, BatchGetMetricDataResponse, CancelExportJobRequest, CancelExportJobResponse,
    CreateExportJobRequest, CreateExportJobResponse, GetExportJobRequest, GetExportJobResponse,
    GetMessageInsightsRequest, GetMessageInsightsResponse, ListExportJobsRequest, ListExportJobsResponse,
};

use crate::credentials::CredentialSource;
use crate::sigv4::Verifier;

mod auth;
mod console;
mod dispatch;
mod download;
mod error;
mod firehose;
mod http;
mod intake;
mod status;

use auth::{admit, base_url};
use download::download;
pub use error::WireError;
use error::json_response;
pub(crate) use http::answered;
pub use http::{IngestSlot, IngestSlots};
use http::{ReadBody, framing, read_body};
pub(crate) use status::Readiness;
use status::{healthz, metrics, readyz, reputation};

/// Where the ingest endpoint is.
pub const INGEST_PATH: &str = "/_ses-export/v1/events";
/// Where an Amazon Data Firehose HTTP endpoint destination delivers.
pub const FIREHOSE_PATH: &str = "/_ses-export/v1/firehose";
/// Where an SNS HTTP(S) subscription delivers.
pub const SNS_PATH: &str = "/_ses-export/v1/sns";
/// Where an account's reputation is (SigV4-signed, for the console).
pub const REPUTATION_PATH: &str = "/_ses-export/v1/reputation";
/// SNS bodies read at once before their signatures are checked (each at
/// most `--max-body-bytes`); more are answered 429 and SNS retries them.
pub const SNS_READS: usize = 32;

/// What every handler shares: [`crate::build_state`] makes one from the
/// server's flags; an embedder changes what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppState {
    /// The export-jobs service and its stores.
    pub service: Arc<ExportService>,
    /// Where events go when nothing names their region (`--default-region`).
    pub default_region: Region,
    /// Whether `/metrics` shows each account's reputation
    /// (`--reputation-metrics`).
    pub reputation_metrics: bool,
    /// How many of the latest eligible sends reputation is measured over.
    pub reputation_sends: usize,
    /// Who may call: the credentials file, or a source of the embedder's.
    pub credentials: Arc<dyn CredentialSource>,
    /// Checks the requests' signatures.
    pub verifier: Verifier,
    /// Largest API request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest ingest body, in bytes.
    pub max_ingest_bytes: usize,
    /// How long a request body may go without a byte.
    pub body_timeout: Duration,
    /// How long a whole request body may take to arrive.
    pub body_deadline: Duration,
    /// Ingest bodies in flight, shared fairly between accounts; a request
    /// that finds none it may take is 429.
    pub ingest_slots: Arc<IngestSlots>,
    /// SNS bodies being read before their signature is checked.
    pub(crate) sns_reads: Arc<tokio::sync::Semaphore>,
    /// Failed intake keys, by client address: a client that guesses is
    /// slowed to a few guesses a second.
    pub(crate) intake_failures: Arc<crate::throttle::Failures>,
    /// What `/metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where download URLs point: `--public-url`, or this server as the
    /// caller reached it.
    pub public_url: Option<String>,
    /// Whether this server serves HTTPS (download URLs then say `https`).
    pub tls: bool,
    /// Verifies SNS deliveries and confirms subscriptions.
    pub sns: crate::sns::Sns,
    /// `/readyz`'s probes, one at a time.
    pub(crate) readiness: Arc<Readiness>,
}

/// The router.
pub fn app(state: AppState) -> Router {
    let state = Arc::new(state);
    dispatch::routes(Router::new())
        .route(INGEST_PATH, post(intake::events).fallback(method_not_allowed))
        .route(FIREHOSE_PATH, post(intake::firehose).fallback(method_not_allowed))
        .route(SNS_PATH, post(intake::sns).fallback(method_not_allowed))
        .route(
            &format!("{DOWNLOAD_PATH}{{*key}}"),
            get(download).fallback(method_not_allowed),
        )
        .route(console::CONSOLE_PATH, get(console::root).fallback(method_not_allowed))
        .route(
            &format!("{}/", console::CONSOLE_PATH),
            get(console::index).fallback(method_not_allowed),
        )
        .route(
            &format!("{}/defaults.json", console::CONSOLE_PATH),
            get(console::defaults).fallback(method_not_allowed),
        )
        .route(
            &format!("{}/{{file}}", console::CONSOLE_PATH),
            get(console::file).fallback(method_not_allowed),
        )
        .route(REPUTATION_PATH, get(reputation).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), framing))
        .with_state(state)
}

fn route<O: Serve>(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    let spec = O::spec();
    let method = match spec.method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::POST,
    };
    let serve = || on(method, handle::<O>).fallback(method_not_allowed);
    // The model's URI templates are axum's: `/v2/email/export-jobs/{JobId}`.
    let router = router.route(spec.uri, serve());
    // `/v2/email/insights/{MessageId}/`: botocore sends the trailing slash,
    // the Rust SDK does not. Both are the operation.
    match spec.uri.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => router.route(trimmed, serve()),
        _ => router,
    }
}

/// What a handler knows of its caller.
#[derive(Debug)]
pub struct Caller {
    /// The caller's account, in the region its signature is scoped to.
    pub scope: Scope,
    /// The buckets the caller may name in `S3Url`.
    pub buckets: Arc<BucketAccess>,
    /// `http(s)://host:port` as the caller reached us (or `--public-url`),
    /// for download URLs.
    pub base_url: String,
}

/// One operation served by the core service.
trait Serve: Operation + Send + 'static {
    fn serve(
        service: &ExportService,
        caller: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send;
}

/// The service's operations as the server calls them: the caller's scope,
/// buckets and base URL beside each typed input.
impl dispatch::Operations for ExportService {
    async fn create_export_job(
        &self,
        c: &Caller,
        input: CreateExportJobRequest,
    ) -> Result<CreateExportJobResponse, ServiceError> {
        let query = ExportQuery::try_from(input)?;
        ExportService::create_export_job(self, &c.scope, &c.buckets, query).await
    }

    fn get_export_job(
        &self,
        c: &Caller,
        input: GetExportJobRequest,
    ) -> impl Future<Output = Result<GetExportJobResponse, ServiceError>> + Send {
        ExportService::get_export_job(self, &c.scope, input, &c.base_url)
    }

    fn list_export_jobs(
        &self,
        c: &Caller,
        input: ListExportJobsRequest,
    ) -> impl Future<Output = Result<ListExportJobsResponse, ServiceError>> + Send {
        ExportService::list_export_jobs(self, &c.scope, input)
    }

    fn cancel_export_job(
        &self,
        c: &Caller,
        input: CancelExportJobRequest,
    ) -> impl Future<Output = Result<CancelExportJobResponse, ServiceError>> + Send {
        ExportService::cancel_export_job(self, &c.scope, input)
    }

    fn get_message_insights(
        &self,
        c: &Caller,
        input: GetMessageInsightsRequest,
    ) -> impl Future<Output = Result<GetMessageInsightsResponse, ServiceError>> + Send {
        ExportService::get_message_insights(self, &c.scope, input)
    }

    fn batch_get_metric_data(
        &self,
        c: &Caller,
        input: BatchGetMetricDataRequest,
    ) -> impl Future<Output = Result<BatchGetMetricDataResponse, ServiceError>> + Send {
        ExportService::batch_get_metric_data(self, &c.scope, input)
    }
}

async fn handle<O: Serve>(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    body: Body,
) -> Response {
    let name = O::spec().name;
    let mut account = None;
    let result = async {
        let admitted = admit(&state, &method, &uri, &headers)?;
        account = Some(admitted.identity.account.clone());
        let scope = admitted.scope()?;
        let (identity, body) = admitted.body(&state, &headers, body, state.max_body_bytes).await?;
        let body = body.into_bytes();
        let params = params.map_err(|e| WireError::bad_request(e.body_text()))?;
        let labels: Vec<(&str, &str)> = params.iter().collect();
        let input: O::Input = parse_input(&body, &labels).map_err(|e| WireError::bad_request(e.to_string()))?;
        let caller = Caller {
            scope,
            buckets: Arc::clone(&identity.buckets),
            base_url: base_url(&state, &headers),
        };
        let output = O::serve(&state.service, &caller, input).await?;
        let status = StatusCode::from_u16(O::spec().success_status).unwrap_or(StatusCode::OK);
        Ok::<_, WireError>(json_response(status, &output))
    }
    .await;
    answered(
        result.unwrap_or_else(IntoResponse::into_response),
        name,
        account.as_ref(),
    )
}

async fn unknown(method: Method, uri: Uri) -> Response {
    let response = WireError {
        status: StatusCode::NOT_FOUND,
        error_type: "UnknownOperationException",
        message: format!("No operation is served at {method} {}", uri.path()),
        extra: None,
    }
    .into_response();
    answered(response, "UnknownOperation", None)
}

/// A path that exists, asked with a method it does not take.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let response = WireError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error_type: "MethodNotAllowedException",
        message: format!("{method} is not allowed on {}", uri.path()),
        extra: None,
    }
    .into_response();
    answered(response, "MethodNotAllowed", None)
}
