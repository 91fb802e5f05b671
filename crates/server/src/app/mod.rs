//! The HTTP surface: one route per operation of the model (paths taken
//! from the generated metadata), restJson1 framing, SigV4 on every API
//! call, the ingest and download endpoints, `/healthz` and `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use http_body_util::BodyExt;
use serde::Serialize;
use ses_export_core::destination::BucketAccess;
use ses_export_core::query::ExportQuery;
use ses_export_core::service::{DOWNLOAD_PATH, ExportService, InternalError, ServiceError};
use ses_export_core::{AccountId, Region, Scope};
use ses_export_model::AuthErrorCode;
use ses_export_model::error::ErrorBody;
use ses_export_model::operation::{self, Operation};
use ses_export_model::types::JobStatus;
use ses_export_model::{ErrorCode, parse_input};
use sha2::{Digest, Sha256};

use crate::credentials::{CredentialSource, Identity};
use crate::sigv4::{self, AuthError, SignedHead, Verifier};

mod console;
mod firehose;
mod intake;

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
    let router = Router::new();
    let router = route::<operation::CreateExportJob>(router);
    let router = route::<operation::GetExportJob>(router);
    let router = route::<operation::ListExportJobs>(router);
    let router = route::<operation::CancelExportJob>(router);
    let router = route::<operation::GetMessageInsights>(router);
    let router = route::<operation::BatchGetMetricData>(router);
    router
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

impl Serve for operation::CreateExportJob {
    async fn serve(s: &ExportService, c: &Caller, input: Self::Input) -> Result<Self::Output, ServiceError> {
        let query = ExportQuery::try_from(input)?;
        s.create_export_job(&c.scope, &c.buckets, query).await
    }
}

impl Serve for operation::GetExportJob {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.get_export_job(&c.scope, input, &c.base_url)
    }
}

impl Serve for operation::ListExportJobs {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.list_export_jobs(&c.scope, input)
    }
}

impl Serve for operation::CancelExportJob {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.cancel_export_job(&c.scope, input)
    }
}

impl Serve for operation::GetMessageInsights {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.get_message_insights(&c.scope, input)
    }
}

impl Serve for operation::BatchGetMetricData {
    fn serve(
        s: &ExportService,
        c: &Caller,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ServiceError>> + Send {
        s.batch_get_metric_data(&c.scope, input)
    }
}

/// An error response in restJson1's shape.
#[derive(Debug)]
pub struct WireError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
    /// Members beside `message` (an ingest that failed partway says what
    /// it kept).
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl WireError {
    fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: code.name(),
            message: message.into(),
            extra: None,
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
            extra: None,
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
                tracing::error!(error = %ses_export_core::error_chain(&detail), "internal error");
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
        let message = e.to_string();
        match e {
            AuthError::Missing => WireError::forbidden(AuthErrorCode::MissingAuthenticationToken.name(), message),
            AuthError::UnknownKey => WireError::forbidden(AuthErrorCode::UnrecognizedClient.name(), message),
            AuthError::Invalid(_) => WireError::forbidden(AuthErrorCode::InvalidSignature.name(), message),
            AuthError::Conflicting => WireError::bad_request(message),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error_type, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for WireError {}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let body = match self.extra {
            None => serde_json::to_vec(&ErrorBody { message: self.message }),
            Some(mut members) => {
                members.insert("message".to_owned(), serde_json::Value::String(self.message));
                serde_json::to_vec(&members)
            }
        }
        .unwrap_or_default();
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
        Err(e) => WireError::from(ServiceError::Internal(InternalError::new(e))).into_response(),
    }
}

/// What every request and answer gets, whatever handles it: a request id,
/// made first and carried in a tracing span (so every log line written
/// while handling the request names it) and answered as `x-amzn-RequestId`;
/// and `Connection: close` when the request's body was not read to its end
/// (a refusal before the body): the server then closes the connection, and
/// the header tells the client not to send another request on it.
async fn framing(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::StreamExt;
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let id = ses_export_core::ids::request_id();
    let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    let (parts, body) = request.into_parts();
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0");
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(!has_body));
    let request = if has_body {
        let flag = Arc::clone(&finished);
        let end = futures_util::stream::once(async move {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, axum::Error>(Bytes::new())
        });
        axum::extract::Request::from_parts(parts, Body::from_stream(body.into_data_stream().chain(end)))
    } else {
        axum::extract::Request::from_parts(parts, body)
    };
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let answered = response.extensions_mut().remove::<Answered>().unwrap_or(Answered {
        operation: "UnknownOperation",
        account: None,
    });
    state.metrics.request(answered.operation, status, elapsed);
    // The access log: one line per request, in the request's span (so with
    // its id). `RUST_LOG=info,ses_export::access=off` turns it off.
    span.in_scope(|| {
        tracing::info!(
            target: "ses_export::access",
            operation = answered.operation,
            account = answered.account.as_deref().unwrap_or("-"),
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        );
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-amzn-RequestId", value);
    }
    if !finished.load(std::sync::atomic::Ordering::Relaxed) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What a handler tells the framing layer about the request it answered,
/// for the access log and the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Answered {
    pub operation: &'static str,
    pub account: Option<String>,
}

/// `response` marked as answering `operation` for `account`.
pub(crate) fn answered(mut response: Response, operation: &'static str, account: Option<&AccountId>) -> Response {
    response.extensions_mut().insert(Answered {
        operation,
        account: account.map(|a| a.as_str().to_owned()),
    });
    response
}

/// Reads a body of at most `limit` bytes, each part arriving within
/// `silence` of the last, and returns it with its SHA-256 (hex). A body
/// announced larger than `limit` is refused before a byte of it is read.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<(ReadBody, String), WireError> {
    let silence = state.body_timeout;
    let deadline = tokio::time::Instant::now() + state.body_deadline;
    let too_large = || WireError::bad_request(format!("The request body is larger than the limit of {limit} bytes."));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Memory grows with what arrives, not with what a header announces.
    let mut read = ReadBody::default();
    let mut received = 0usize;
    let mut hash = Sha256::new();
    loop {
        let wait = (tokio::time::Instant::now() + silence).min(deadline);
        let frame = match tokio::time::timeout_at(wait, body.frame()).await {
            Err(_) if wait == deadline => {
                return Err(WireError::bad_request(format!(
                    "The request body did not arrive whole within {} seconds.",
                    state.body_deadline.as_secs()
                )));
            }
            Err(_) => {
                return Err(WireError::bad_request(format!(
                    "The request body stopped arriving: nothing came for {} seconds.",
                    silence.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(WireError::bad_request(format!(
                    "The request body could not be read: {e}"
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if received + data.len() > limit {
                return Err(too_large());
            }
            hash.update(&data);
            received += data.len();
            read.push(data);
        }
    }
    read.finish();
    Ok((read, hex::encode(hash.finalize())))
}

/// A body as it arrived, in frames. An API body is joined once, into a
/// buffer of exactly its size ([`ReadBody::into_bytes`]); an ingest body is
/// read through ([`std::io::Read`]), each frame let go once it is parsed,
/// so a large body is never held twice and shrinks as it is ingested.
///
/// Frames smaller than [`ReadBody::PIECE`] are copied together into pieces
/// of that size, so a body sent in one-byte chunks costs what its bytes do,
/// not a frame's bookkeeping per byte.
#[derive(Debug, Clone, Default)]
struct ReadBody {
    frames: VecDeque<Bytes>,
    small: bytes::BytesMut,
}

impl ReadBody {
    const PIECE: usize = 64 << 10;

    fn push(&mut self, data: Bytes) {
        if data.len() >= Self::PIECE {
            self.finish();
            self.frames.push_back(data);
            return;
        }
        self.small.extend_from_slice(&data);
        if self.small.len() >= Self::PIECE {
            self.finish();
        }
    }

    /// Moves what is gathered of small frames into the frames.
    fn finish(&mut self) {
        if !self.small.is_empty() {
            self.frames.push_back(self.small.split().freeze());
        }
    }

    fn into_bytes(mut self) -> Bytes {
        if self.frames.len() <= 1 {
            return self.frames.pop_front().unwrap_or_default();
        }
        let mut joined = bytes::BytesMut::with_capacity(self.frames.iter().map(Bytes::len).sum());
        for frame in self.frames {
            joined.extend_from_slice(&frame);
        }
        joined.freeze()
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        let head = self.frames.iter().flat_map(|f| f.iter()).take(prefix.len());
        head.copied().eq(prefix.iter().copied())
    }
}

impl Read for ReadBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while let Some(front) = self.frames.front_mut() {
            if front.is_empty() {
                self.frames.pop_front();
                continue;
            }
            let n = front.len().min(out.len());
            out[..n].copy_from_slice(&front[..n]);
            bytes::Buf::advance(front, n);
            return Ok(n);
        }
        Ok(0)
    }
}

/// The ingest slots: `--max-ingest-inflight` bodies read and stored at
/// once, shared so that no account starves another. An account may take a
/// slot while it holds fewer than remain free: alone it gets half of them,
/// and whoever comes next still finds one.
#[derive(Debug)]
pub struct IngestSlots {
    /// Every slot, whoever holds it.
    slots: Arc<tokio::sync::Semaphore>,
    held: std::sync::Mutex<std::collections::HashMap<AccountId, usize>>,
}

/// One ingest slot, held for `account` until dropped.
#[derive(Debug)]
pub struct IngestSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    slots: Arc<IngestSlots>,
    account: AccountId,
}

impl IngestSlots {
    /// `total` slots.
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(IngestSlots {
            slots: Arc::new(tokio::sync::Semaphore::new(total)),
            held: std::sync::Mutex::default(),
        })
    }

    /// A slot for `account`, if one is free and its share allows it.
    pub fn try_take(self: &Arc<Self>, account: &AccountId) -> Option<IngestSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let holds = held.get(account).copied().unwrap_or(0);
        let free = self.slots.available_permits();
        // At most as many as remain free: alone, an account takes half the
        // slots (one of one), and another account still finds one.
        if holds > 0 && holds >= free {
            return None;
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        *held.entry(account.clone()).or_default() += 1;
        Some(IngestSlot {
            _permit: permit,
            slots: Arc::clone(self),
            account: account.clone(),
        })
    }
}

impl Drop for IngestSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.account);
            }
        }
    }
}

/// The parts of a request the verifier reads; the body is never among them.
fn signable<'a>(method: &'a Method, uri: &'a Uri, headers: &HeaderMap) -> sigv4::Request<'a> {
    sigv4::Request {
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
        body: &[],
    }
}

/// A request whose head passed authentication; its body is still unread.
struct Admitted<'a> {
    request: sigv4::Request<'a>,
    head: SignedHead,
    identity: Arc<Identity>,
}

/// Authenticates from the head alone (docs/security.md): form, key, scope, clock,
/// `host`, the payload hash's kind, and, when the head claims the body's
/// hash, the signature itself. Nothing of the body is read.
fn admit<'a>(
    state: &'a AppState,
    method: &'a Method,
    uri: &'a Uri,
    headers: &HeaderMap,
) -> Result<Admitted<'a>, WireError> {
    let request = signable(method, uri, headers);
    let (head, identity) = state.verifier.check_head(&request, SystemTime::now(), |key| {
        state
            .credentials
            .identity(key)
            .map(|identity| (identity.secret.clone(), identity))
    })?;
    if let Some(claimed) = head.claimed_payload_hash() {
        state.verifier.check_signature(&request, &head, claimed)?;
    }
    Ok(Admitted {
        request,
        head,
        identity,
    })
}

impl<'a> Admitted<'a> {
    /// The caller's account in the region its signature is scoped to: a
    /// call's region is its SigV4 scope's, as AWS's.
    fn scope(&self) -> Result<Scope, WireError> {
        let region = self
            .head
            .region()
            .parse()
            .map_err(|e: String| WireError::from(AuthError::Invalid(e)))?;
        Ok(Scope::new(self.identity.account.clone(), region))
    }

    /// Reads the body under `limit` and finishes the signature check: the
    /// body must hash to what the head claimed, or, when it claimed nothing,
    /// the signature must hold over the body's hash.
    async fn body(
        self,
        state: &AppState,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<(Arc<Identity>, ReadBody), WireError> {
        let (bytes, hash) = read_body(state, headers, body, limit).await?;
        match self.head.claimed_payload_hash() {
            Some(claimed) if !claimed.eq_ignore_ascii_case(&hash) => return Err(sigv4::payload_mismatch().into()),
            Some(_) => {}
            None => state.verifier.check_signature(&self.request, &self.head, &hash)?,
        }
        Ok((self.identity, bytes))
    }
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
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

/// `GET /_ses-export/v1/exports/{key}?X-Amz-Expires=..&X-Amz-Signature=..`:
/// a managed export, by its pre-signed URL; anything else is 403.
async fn download(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let key = sigv4::percent_decode(uri.path().strip_prefix(DOWNLOAD_PATH).unwrap_or_default());
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (sigv4::percent_decode(k), sigv4::percent_decode(v)))
        .collect();
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
    answered(response, "Download", None)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Jobs by status as the store has them, counted at most once a second;
    // a store that does not answer in time leaves the gauge out rather
    // than hold the scrape.
    let jobs: Option<Vec<(String, String, u64)>> = if state.metrics.job_counts_due() {
        match tokio::time::timeout(Duration::from_secs(2), state.service.jobs().count_by_status()).await {
            // Every status of every region that holds jobs, those without
            // jobs at 0, so a series never vanishes when its last job moves
            // on.
            Ok(Ok(counts)) => {
                let regions: std::collections::BTreeSet<&Region> = counts.iter().map(|(r, _, _)| r).collect();
                Some(
                    regions
                        .into_iter()
                        .flat_map(|region| {
                            let counts = &counts;
                            JobStatus::VALUES.iter().map(move |status| {
                                let n = counts
                                    .iter()
                                    .filter(|(r, s, _)| r == region && s.as_str() == *status)
                                    .map(|(_, _, n)| n)
                                    .sum();
                                (region.as_str().to_owned(), (*status).to_owned(), n)
                            })
                        })
                        .collect(),
                )
            }
            _ => Some(Vec::new()),
        }
    } else {
        None
    };
    if state.reputation_metrics && state.metrics.reputation_due() {
        let read = async {
            let events = state.service.events();
            let mut all = Vec::new();
            for scope in events.scopes().await?.into_iter().take(MAX_REPUTATION_SCOPES) {
                let reputation = events.reputation(&scope, state.reputation_sends).await?;
                all.push((scope, reputation));
            }
            Ok::<_, ses_export_core::event_store::StoreError>(all)
        };
        // A store that does not answer in time leaves the last figures.
        if let Ok(Ok(all)) = tokio::time::timeout(Duration::from_secs(5), read).await {
            state.metrics.reputation(&all);
        }
    }
    let mut response = state.metrics.render(jobs.as_deref()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    answered(response, "Metrics", None)
}

/// Scopes whose reputation `/metrics` shows at most.
const MAX_REPUTATION_SCOPES: usize = 1000;

/// `GET /_ses-export/v1/reputation` (SigV4): the caller's bounce and
/// complaint rates in the region it signs for, over its latest eligible
/// sends, with AWS's review and pause thresholds, as the console's
/// dashboard shows them.
async fn reputation(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut account = None;
    let result = async {
        let admitted = admit(&state, &method, &uri, &headers)?;
        let scope = admitted.scope()?;
        account = Some(scope.account().clone());
        admitted.body(&state, &headers, body, state.max_body_bytes).await?;
        let reputation = state.service.reputation(&scope, state.reputation_sends).await?;
        use ses_export_core::vdm::Reputation as R;
        Ok::<_, WireError>(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "Region": scope.region().as_str(),
                "Volume": state.reputation_sends,
                "Sends": reputation.sends,
                "BounceRate": reputation.bounce_rate(),
                "ComplaintRate": reputation.complaint_rate(),
                "Thresholds": {
                    "BounceReview": R::BOUNCE_REVIEW,
                    "BouncePause": R::BOUNCE_PAUSE,
                    "ComplaintReview": R::COMPLAINT_REVIEW,
                    "ComplaintPause": R::COMPLAINT_PAUSE,
                },
            }),
        ))
    }
    .await;
    answered(
        result.unwrap_or_else(IntoResponse::into_response),
        "Reputation",
        account.as_ref(),
    )
}

/// `GET /healthz`: the process answers (liveness).
async fn healthz() -> Response {
    answered("ok\n".into_response(), "Healthz", None)
}

/// `/readyz`'s probes, one at a time: `/readyz` needs no signature, so
/// however many callers ask at once, the database and the object store
/// see one probe in flight, and every answer still comes from a probe that
/// began after its request arrived.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    /// Held while probing.
    probing: tokio::sync::Mutex<()>,
    /// Probes begun so far.
    begun: std::sync::atomic::AtomicU64,
    /// The last probe to end: its number (from 1) and what did not answer.
    last: std::sync::Mutex<(u64, serde_json::Map<String, serde_json::Value>)>,
}

impl Readiness {
    /// What does not answer, by part, as a probe begun after this call
    /// found it.
    async fn check(&self, service: &ExportService) -> serde_json::Map<String, serde_json::Value> {
        use std::sync::atomic::Ordering;
        let arrived = self.begun.load(Ordering::SeqCst);
        let _probing = self.probing.lock().await;
        {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 > arrived {
                return last.1.clone();
            }
        }
        let number = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        let failing = probe(service).await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (number, failing.clone());
        failing
    }
}

/// Pings the stores and the object store, each within two seconds.
async fn probe(service: &ExportService) -> serde_json::Map<String, serde_json::Value> {
    const WAIT: Duration = Duration::from_secs(2);
    let (events, jobs, storage) = tokio::join!(
        tokio::time::timeout(WAIT, service.events().ping()),
        tokio::time::timeout(WAIT, service.jobs().ping()),
        tokio::time::timeout(WAIT, service.storage().ping()),
    );
    let mut failing = serde_json::Map::new();
    let why = |outcome: Result<Result<(), String>, tokio::time::error::Elapsed>| match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("no answer within {} seconds", WAIT.as_secs())),
    };
    let database =
        why(events.map(|r| r.map_err(|e| e.to_string()))).or_else(|| why(jobs.map(|r| r.map_err(|e| e.to_string()))));
    let object_store = why(storage.map(|r| r.map_err(|e| e.reason().to_owned())));
    for (part, problem) in [("database", database), ("object store", object_store)] {
        if let Some(problem) = problem {
            tracing::warn!(part, error = %problem, "not ready");
            failing.insert(part.to_owned(), problem.into());
        }
    }
    failing
}

/// `GET /readyz`: 200 while the database and the object store answer;
/// 503 naming the one that does not.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let failing = state.readiness.check(&state.service).await;
    let response = if failing.is_empty() {
        json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}))
    } else {
        let names: Vec<&str> = failing.keys().map(String::as_str).collect();
        let mut error = WireError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error_type: "ServiceUnavailableException",
            message: format!("Not ready: the {} does not answer.", names.join(" and the ")),
            extra: None,
        };
        error.extra = Some(failing);
        error.into_response()
    };
    answered(response, "Readyz", None)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body in one-byte frames is kept in a few pieces, read back whole.
    #[test]
    fn tiny_frames_are_gathered_into_pieces() {
        let mut body = ReadBody::default();
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for byte in &sent[..150_000] {
            body.push(Bytes::copy_from_slice(&[*byte]));
        }
        body.push(Bytes::copy_from_slice(&sent[150_000..]));
        body.finish();
        assert!(body.frames.len() <= 4, "{} frames", body.frames.len());
        assert!(body.starts_with(&sent[..3]));
        let mut read = Vec::new();
        body.clone().read_to_end(&mut read).expect("read");
        assert_eq!(read, sent);
        assert_eq!(body.into_bytes(), sent);
    }
}
