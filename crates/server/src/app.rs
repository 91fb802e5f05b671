//! The HTTP surface: one route per operation of the model (paths taken
//! from the generated metadata), restJson1 framing, SigV4 on every API
//! call, the ingest and download endpoints, `/healthz` and `/metrics`.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use serde::Serialize;
use ses_export_core::AccountId;
use ses_export_core::service::{DOWNLOAD_PATH, ExportService, ServiceError};
use ses_export_model::error::ErrorBody;
use ses_export_model::operation::{self, Operation};
use ses_export_model::{ErrorCode, parse_input};

use crate::credentials::Credentials;
use crate::sigv4::{self, AuthError, Verifier};

/// Where the ingest endpoint is.
pub const INGEST_PATH: &str = "/_ses-export/v1/events";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: Arc<ExportService>,
    pub credentials: Arc<Credentials>,
    pub verifier: Verifier,
    pub max_body_bytes: usize,
    pub max_ingest_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// Request counts for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    ingested: Mutex<[u64; 3]>,
}

impl Metrics {
    fn count(&self, operation: &'static str, status: StatusCode) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((operation, status.as_u16())).or_default() += 1;
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# HELP ses_export_requests_total API requests by operation and HTTP status.\n\
             # TYPE ses_export_requests_total counter\n",
        );
        for ((operation, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.push_str(&format!(
                "ses_export_requests_total{{operation=\"{operation}\",status=\"{status}\"}} {n}\n"
            ));
        }
        let [accepted, duplicates, rejected] = *self.ingested.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP ses_export_ingested_records_total Ingested records by outcome.\n\
             # TYPE ses_export_ingested_records_total counter\n",
        );
        for (outcome, n) in [
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ] {
            out.push_str(&format!(
                "ses_export_ingested_records_total{{outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    let router = Router::new();
    let router = route::<operation::CreateExportJob>(router);
    let router = route::<operation::GetExportJob>(router);
    let router = route::<operation::ListExportJobs>(router);
    let router = route::<operation::CancelExportJob>(router);
    let router = route::<operation::GetMessageInsights>(router);
    let router = route::<operation::BatchGetMetricData>(router);
    router
        .route(INGEST_PATH, post(ingest))
        .route(&format!("{DOWNLOAD_PATH}{{*key}}"), get(download))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(unknown)
        .with_state(state)
}

fn route<O: Serve>(router: Router<AppState>) -> Router<AppState> {
    let spec = O::spec();
    let method = match spec.method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::POST,
    };
    // The model's URI templates are axum's: `/v2/email/export-jobs/{JobId}`.
    let router = router.route(spec.uri, on(method, handle::<O>));
    // `/v2/email/insights/{MessageId}/`: botocore sends the trailing slash,
    // the Rust SDK does not. Both are the operation.
    match spec.uri.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => router.route(trimmed, on(method, handle::<O>)),
        _ => router,
    }
}

/// What a handler knows of its caller.
#[derive(Debug)]
pub struct Caller {
    pub account: AccountId,
    /// `http://host:port` as the caller reached us, for download URLs.
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

impl Serve for operation::CreateExportJob {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.create_export_job(&c.account, input)
    }
}

impl Serve for operation::GetExportJob {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.get_export_job(&c.account, input, &c.base_url)
    }
}

impl Serve for operation::ListExportJobs {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.list_export_jobs(&c.account, input)
    }
}

impl Serve for operation::CancelExportJob {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.cancel_export_job(&c.account, input)
    }
}

impl Serve for operation::GetMessageInsights {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.get_message_insights(&c.account, input)
    }
}

impl Serve for operation::BatchGetMetricData {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.batch_get_metric_data(&c.account, input)
    }
}

/// An error response in restJson1's shape.
#[derive(Debug)]
pub struct WireError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl WireError {
    fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: code.name(),
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::of(ErrorCode::BadRequestException, message)
    }

    fn forbidden(error_type: &'static str, message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::FORBIDDEN,
            error_type,
            message: message.into(),
        }
    }
}

impl From<ServiceError> for WireError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::BadRequest(m) => WireError::of(ErrorCode::BadRequestException, m),
            ServiceError::NotFound(m) => WireError::of(ErrorCode::NotFoundException, m),
            ServiceError::LimitExceeded(m) => WireError::of(ErrorCode::LimitExceededException, m),
            ServiceError::TooManyRequests(m) => WireError::of(ErrorCode::TooManyRequestsException, m),
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                WireError::of(
                    ErrorCode::InternalServiceErrorException,
                    "The service could not process the request; try again.",
                )
            }
        }
    }
}

impl From<AuthError> for WireError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => {
                WireError::forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
            }
            AuthError::UnknownKey => WireError::forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            AuthError::Invalid(m) => WireError::forbidden("InvalidSignatureException", m),
        }
    }
}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { message: self.message }).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.error_type));
        response
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => WireError::from(ServiceError::Internal(e.to_string())).into_response(),
    }
}

fn with_request_id(mut response: Response) -> Response {
    let id = ses_export_core::signing::uuid_v4().unwrap_or_default();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

/// Reads the body, refusing it (unread beyond the limit) when too large.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, WireError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| WireError::bad_request(format!("The request body is larger than the limit of {limit} bytes.")))
}

/// Checks the signature; returns the caller's account.
fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AccountId, WireError> {
    let request = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let access_key = state.verifier.access_key(&request)?;
    let (secret, account) = state.credentials.get(&access_key).ok_or(AuthError::UnknownKey)?;
    state.verifier.verify(&request, secret, SystemTime::now())?;
    Ok(account.clone())
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn handle<O: Serve>(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    body: Body,
) -> Response {
    let name = O::spec().name;
    let result = async {
        let body = read_body(body, state.max_body_bytes).await?;
        let account = authenticate(&state, &method, &uri, &headers, &body)?;
        let params = params.map_err(|e| WireError::bad_request(e.body_text()))?;
        let labels: Vec<(&str, &str)> = params.iter().collect();
        let input: O::Input = parse_input(&body, &labels).map_err(|e| WireError::bad_request(e.to_string()))?;
        let caller = Caller {
            account,
            base_url: base_url(&headers),
        };
        let output = O::serve(&state.service, &caller, input).await?;
        let status = StatusCode::from_u16(O::spec().success_status).unwrap_or(StatusCode::OK);
        Ok::<_, WireError>(json_response(status, &output))
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    state.metrics.count(name, response.status());
    with_request_id(response)
}

/// `POST /_ses-export/v1/events`: JSON Lines of SES records, optionally
/// gzip (`Content-Encoding: gzip`, or just gzip bytes), into the caller's
/// account.
async fn ingest(State(state): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = read_body(body, state.max_ingest_bytes).await?;
        let account = authenticate(&state, &method, &uri, &headers, &body)?;
        let gzip = body.starts_with(&[0x1f, 0x8b]);
        if gzip {
            // Measure the expanded size before keeping anything, so an
            // over-large body is refused whole.
            let bound = state.max_ingest_bytes as u64 * 16;
            let bytes = body.clone();
            let size = tokio::task::spawn_blocking(move || expanded_size(&bytes, bound))
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            match size {
                Ok(n) if n <= bound => {}
                Ok(_) => {
                    return Err(WireError::bad_request(format!(
                        "The decompressed body is larger than the limit of {bound} bytes."
                    )));
                }
                Err(e) => return Err(WireError::bad_request(format!("The body is not valid gzip: {e}"))),
            }
        }
        let input = ses_export_core::event::open_events(std::io::Cursor::new(body))
            .map_err(|e| WireError::bad_request(format!("The body could not be read: {e}")))?;
        let store = state.service.events().clone();
        let report = ses_export_core::ingest::ingest(
            &*store,
            &account,
            input,
            ses_export_core::ingest::DEFAULT_BATCH,
            &|_| {},
        )
        .await
        .map_err(|e| match e.cause {
            ses_export_core::ingest::IngestFailure::Read(read) => {
                WireError::bad_request(format!("The body could not be read: {read}"))
            }
            ses_export_core::ingest::IngestFailure::Store(store) => ServiceError::Internal(store.to_string()).into(),
        })?;
        {
            let mut counts = state.metrics.ingested.lock().unwrap_or_else(|p| p.into_inner());
            counts[0] += report.accepted;
            counts[1] += report.duplicates;
            counts[2] += report.rejected;
        }
        Ok::<_, WireError>(json_response(StatusCode::OK, &report))
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    state.metrics.count("Ingest", response.status());
    with_request_id(response)
}

/// The size `gzip` expands to, reading at most `bound + 1` bytes of it.
fn expanded_size(gzip: &[u8], bound: u64) -> std::io::Result<u64> {
    let decoder = ses_export_core::event::gzip_reader(gzip);
    std::io::copy(&mut decoder.take(bound + 1), &mut std::io::sink())
}

/// `GET /_ses-export/v1/exports/{key}?X-Amz-Expires=..&X-Amz-Signature=..`:
/// a managed export, by its pre-signed URL; anything else is 403.
async fn download(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let expires = query.get("X-Amz-Expires").map_or("", String::as_str);
    let signature = query.get("X-Amz-Signature").map_or("", String::as_str);
    let response = match state.service.open_download(&key, expires, signature).await {
        Ok(Some(download)) => {
            let content_type = if key.ends_with(".json") {
                "application/x-ndjson"
            } else {
                "text/csv; charset=utf-8"
            };
            let mut response = Response::new(Body::from_stream(download.body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
            response
        }
        Ok(None) => {
            WireError::forbidden("AccessDeniedException", "The download URL is expired or not valid.").into_response()
        }
        Err(e) => WireError::from(e).into_response(),
    };
    state.metrics.count("Download", response.status());
    with_request_id(response)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn unknown(method: Method, uri: Uri) -> Response {
    let error = WireError {
        status: StatusCode::NOT_FOUND,
        error_type: "UnknownOperationException",
        message: format!("No operation is served at {method} {}", uri.path()),
    };
    with_request_id(error.into_response())
}
