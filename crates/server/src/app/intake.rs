//! Event intake: `POST /_ses-export/v1/events` (SigV4-signed, or with an
//! intake key in `x-api-key`, as an EventBridge API destination sends it)
//! and `POST /_ses-export/v1/firehose` (an Amazon Data Firehose HTTP
//! endpoint destination, in the protocol AWS specifies).
//!
//! Both authenticate from the head before a byte of the body is read, hold
//! one of the ingest slots while they read and store, and store through
//! the one ingest path: events are idempotent, so a retried delivery
//! counts its events as duplicates, never twice.

use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ses_export_core::ingest::{IngestError, IngestFailure, IngestReport};
use ses_export_core::service::{InternalError, ServiceError};
use ses_export_core::{AccountId, Scope};
use ses_export_model::{AuthErrorCode, ErrorCode};

use super::firehose;
use super::{AppState, IngestSlot, ReadBody, WireError, admit, answered, json_response, read_body};
use crate::metrics::Source;

/// The header an EventBridge API destination (API key authorization)
/// carries the intake key in.
const API_KEY: &str = "x-api-key";
/// The header Firehose carries an HTTP endpoint's access key in.
const FIREHOSE_ACCESS_KEY: &str = "x-amz-firehose-access-key";
const FIREHOSE_REQUEST_ID: &str = "x-amz-firehose-request-id";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `POST /_ses-export/v1/events`: JSON Lines of SES records (each may be
/// wrapped in SNS's or EventBridge's envelope), optionally gzip
/// (`Content-Encoding: gzip`, or just gzip bytes), into the caller's account.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut known = None;
    let result = async {
        let signed =
            headers.contains_key(header::AUTHORIZATION) || uri.query().is_some_and(|q| q.contains("X-Amz-Signature="));
        let (carrier, body, slot) = match headers.get(API_KEY) {
            Some(key) if !signed => {
                let carrier = intake_scope(&state, peer, key.to_str().unwrap_or_default())?;
                let slot = ingest_slot(&state, carrier.account())?;
                let (body, _) = read_body(&state, &headers, body, state.max_ingest_bytes).await?;
                (carrier, body, slot)
            }
            _ => {
                let admitted = admit(&state, &method, &uri, &headers)?;
                let carrier = admitted.scope()?;
                let slot = ingest_slot(&state, carrier.account())?;
                let (_, body) = admitted.body(&state, &headers, body, state.max_ingest_bytes).await?;
                (carrier, body, slot)
            }
        };
        known = Some(carrier.account().clone());
        check_gzip_size(&body, state.max_ingest_bytes as u64).await?;
        let input = ses_export_core::event::open_events(body)
            .map_err(|e| WireError::bad_request(format!("The body could not be read: {e}")))?;
        match store(&state, &carrier, input, Source::Events, slot).await {
            Ok(report) => Ok(json_response(StatusCode::OK, &report)),
            Err(e) => Err(ingest_error(e)),
        }
    }
    .await;
    answered(
        result.unwrap_or_else(IntoResponse::into_response),
        "Ingest",
        known.as_ref(),
    )
}

/// Why an intake key was not taken.
enum KeyRefused {
    /// No account has it.
    Unknown,
    /// The client has guessed too often; it may try again in a second.
    Throttled,
}

impl From<KeyRefused> for WireError {
    fn from(refused: KeyRefused) -> Self {
        match refused {
            KeyRefused::Unknown => {
                WireError::forbidden(AuthErrorCode::UnrecognizedClient.name(), "The intake key is not valid.")
            }
            KeyRefused::Throttled => WireError::of(
                ErrorCode::TooManyRequestsException,
                "Too many wrong intake keys from this address; retry later.",
            ),
        }
    }
}

/// The account an intake key feeds, in the key's region (the credentials
/// file's `region`, else `--default-region`): where its events go unless
/// their `sourceArn` names another. A client address that has sent many
/// wrong keys is answered 429 without its key being looked at.
fn intake_scope(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    key: &str,
) -> Result<Scope, KeyRefused> {
    let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
    if !state.intake_failures.allows(peer) {
        return Err(KeyRefused::Throttled);
    }
    let account = state.credentials.intake_account(key).ok_or_else(|| {
        state.intake_failures.failed(peer);
        KeyRefused::Unknown
    })?;
    let region = state
        .credentials
        .intake_region(key)
        .unwrap_or_else(|| state.default_region.clone());
    Ok(Scope::new(account, region))
}

/// One of the ingest slots for `account`, or 429 when it may take none.
fn ingest_slot(state: &AppState, account: &AccountId) -> Result<IngestSlot, WireError> {
    state.ingest_slots.try_take(account).ok_or_else(|| {
        WireError::of(
            ErrorCode::TooManyRequestsException,
            "Too many ingest requests are in flight; retry later.",
        )
    })
}

/// Refuses a gzip body that expands past `bound` (the limit of a plain
/// body: what a request may cost follows what it holds, not how well it
/// compresses), before anything of it is kept, so an over-large body is
/// refused whole.
async fn check_gzip_size(body: &ReadBody, bound: u64) -> Result<(), WireError> {
    if !body.starts_with(&GZIP_MAGIC) {
        return Ok(());
    }
    let bytes = body.clone();
    let size = tokio::task::spawn_blocking(move || expanded_size(bytes, bound))
        .await
        .map_err(|e| ServiceError::Internal(InternalError::new(e)))?;
    if size > bound {
        return Err(WireError::bad_request(format!(
            "The decompressed body is larger than the limit of {bound} bytes."
        )));
    }
    Ok(())
}

/// Stores `input`'s lines into `account`, counting what became of them.
///
/// The work runs as its own task: a client that goes away mid-body does
/// not cut a store off between two batches with its counts untold (what
/// was stored stays stored either way; events are idempotent).
async fn store<R: BufRead + Send + 'static>(
    state: &AppState,
    carrier: &Scope,
    input: R,
    source: Source,
    slot: IngestSlot,
) -> Result<IngestReport, IngestError> {
    let store = state.service.events().clone();
    let metrics = Arc::clone(&state.metrics);
    let carrier = carrier.clone();
    let task = tokio::spawn(async move {
        // Events are counted in the region they were kept in; lines that
        // are not events, in the region of what carried them.
        let result = ses_export_core::ingest::ingest(
            &*store,
            &carrier,
            input,
            ses_export_core::ingest::DEFAULT_BATCH,
            &|region, outcome| metrics.events_stored(source, region, outcome),
        )
        .await;
        let report = match &result {
            Ok(report) => report,
            Err(e) => &e.report,
        };
        metrics.events_rejected(source, carrier.region(), report.rejected);
        // The ingest slot is free only once the store is done.
        drop(slot);
        result
    });
    match task.await {
        Ok(result) => result,
        Err(e) => Err(IngestError {
            report: IngestReport::default(),
            cause: IngestFailure::Read(std::io::Error::other(format!("the ingest stopped: {e}"))),
        }),
    }
}

/// An ingest that stopped partway, as the events endpoint answers it: what
/// was kept stays kept, and the answer says how much.
fn ingest_error(e: IngestError) -> WireError {
    let mut error = match e.cause {
        IngestFailure::Read(read) => WireError::bad_request(format!(
            "The body could not be read past a point: {read}. The events before it were kept."
        )),
        IngestFailure::Store(store) => {
            let mut error = WireError::from(ServiceError::Internal(InternalError::new(store)));
            error.message.push_str(" The events counted as accepted were kept.");
            error
        }
    };
    error.extra = match serde_json::to_value(&e.report) {
        Ok(serde_json::Value::Object(members)) => Some(members),
        _ => None,
    };
    error
}

/// The size `gzip` expands to, reading at most `bound + 1` bytes of it. A
/// stream that breaks counts up to the break: the ingest then keeps the
/// lines before it and reports the rest.
fn expanded_size(gzip: impl Read, bound: u64) -> u64 {
    let mut decoder = ses_export_core::event::gzip_reader(gzip).take(bound + 1);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while let Ok(n) = decoder.read(&mut buffer) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// Firehose's answer: `{"requestId", "timestamp"}`, and `errorMessage`
/// when the status is not 200 (Firehose then retries, and in the end
/// backs the records up to S3).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FirehoseResponse {
    request_id: String,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn firehose_answer(status: StatusCode, request_id: String, error: Option<String>) -> Response {
    let body = FirehoseResponse {
        request_id,
        timestamp: now_millis(),
        error_message: error,
    };
    let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `POST /_ses-export/v1/firehose`: an Amazon Data Firehose HTTP endpoint
/// destination. `X-Amz-Firehose-Access-Key` is an intake key; the body is
/// JSON (gzip with `Content-Encoding: gzip`) whose records each hold one SES
/// record in base64. Errors are answered in Firehose's shape.
pub(super) async fn firehose(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Until the body says otherwise, the request id is the header's.
    let mut request_id = headers
        .get(FIREHOSE_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut account = None;
    let result = firehose_deliver(&state, peer, &headers, body, &mut request_id, &mut account).await;
    let response = match result {
        Ok(report) if report.rejected == 0 => firehose_answer(StatusCode::OK, request_id, None),
        Ok(report) => {
            // Kept what it could; the rest is refused, so Firehose keeps
            // those records (retried, then backed up to S3), not us.
            let first = report
                .errors
                .first()
                .map(|e| format!(" The first, record {}: {}", e.line, e.reason))
                .unwrap_or_default();
            tracing::warn!(
                accepted = report.accepted,
                rejected = report.rejected,
                "a Firehose delivery held records that are not SES events"
            );
            firehose_answer(
                StatusCode::BAD_REQUEST,
                request_id,
                Some(format!(
                    "{} of the records are not SES event records and were not kept; the other {} were.{first}",
                    report.rejected,
                    report.accepted + report.duplicates
                )),
            )
        }
        Err((status, message)) => firehose_answer(status, request_id, Some(message)),
    };
    answered(response, "Firehose", account.as_ref())
}

async fn firehose_deliver(
    state: &AppState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    body: Body,
    request_id: &mut String,
    known: &mut Option<AccountId>,
) -> Result<IngestReport, (StatusCode, String)> {
    let key = headers
        .get(FIREHOSE_ACCESS_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .ok_or((
            StatusCode::UNAUTHORIZED,
            "No access key: set the HTTP endpoint's access key to one of the account's intake keys.".to_owned(),
        ))?;
    let carrier = intake_scope(state, peer, key).map_err(|refused| match refused {
        KeyRefused::Unknown => (
            StatusCode::FORBIDDEN,
            "The access key is not an intake key of any account.".to_owned(),
        ),
        KeyRefused::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong access keys from this address; retry later.".to_owned(),
        ),
    })?;
    *known = Some(carrier.account().clone());
    let slot = ingest_slot(state, carrier.account()).map_err(|e| (StatusCode::TOO_MANY_REQUESTS, e.message))?;
    let (body, _) = read_body(state, headers, body, state.max_ingest_bytes)
        .await
        .map_err(|e| (firehose_status(&e), e.message))?;
    // The JSON of a delivery is its records in base64 (4/3 of their size)
    // and a little more; twice the ingest limit bounds it whatever the
    // compression.
    let bound = state.max_ingest_bytes as u64 * 2;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
        || body.starts_with(&GZIP_MAGIC);
    let open = move |body: ReadBody| -> Box<dyn Read + Send> {
        if gzip {
            Box::new(ses_export_core::event::gzip_reader(body))
        } else {
            Box::new(body)
        }
    };
    // First the whole delivery is read without keeping anything, so a body
    // that is not one, breaks off or is too large is refused whole; then it
    // is read again and stored as it goes, a few records in between, never
    // the whole (a record's worth of memory, twice the parsing).
    let checked = body.clone();
    *request_id = tokio::task::spawn_blocking(move || firehose::stream(open(checked), bound, None))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            firehose::DeliveryError::TooLarge(bound) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The decompressed body is larger than the limit of {bound} bytes."),
            ),
            firehose::DeliveryError::Malformed(message) => (StatusCode::BAD_REQUEST, message),
        })?;
    let (lines, received) = std::sync::mpsc::sync_channel(16);
    let reader = tokio::task::spawn_blocking(move || firehose::stream(open(body), bound, Some(&lines)));
    let stored = store(
        state,
        &carrier,
        std::io::BufReader::new(firehose::Lines::new(received)),
        Source::Firehose,
        slot,
    )
    .await;
    // The same bytes read the same: only a stopped ingest ends it early.
    let _ = reader.await;
    stored.map_err(|e| match e.cause {
        IngestFailure::Read(read) => (StatusCode::BAD_REQUEST, read.to_string()),
        store => {
            tracing::error!(error = %store, "a Firehose delivery could not be stored");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The events could not be stored; retry.".to_owned(),
            )
        }
    })
}

fn firehose_status(error: &WireError) -> StatusCode {
    if error.message.contains("larger than the limit") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        error.status
    }
}

/// The header SNS names the message's type in.
const SNS_MESSAGE_TYPE: &str = "x-amz-sns-message-type";
const SNS_TOPIC_ARN: &str = "x-amz-sns-topic-arn";
/// Set by SNS when a subscription has raw message delivery on.
const SNS_RAW_DELIVERY: &str = "x-amz-sns-rawdelivery";

/// `POST /_ses-export/v1/sns`: an SNS HTTP(S) subscription. The topic must
/// be one a credential lists (checked from the head when SNS names it
/// there, before the body); every message's signature is verified with
/// SNS's certificate; a `SubscriptionConfirmation` is confirmed by fetching
/// its `SubscribeURL`; a `Notification`'s `Message` is ingested into the
/// topic's account like a line of `/_ses-export/v1/events`.
pub(super) async fn sns(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let mut account = None;
    let result = sns_deliver(&state, &headers, body, &mut account).await;
    answered(
        result.unwrap_or_else(IntoResponse::into_response),
        "Sns",
        account.as_ref(),
    )
}

fn sns_refused(message: impl Into<String>) -> WireError {
    WireError::forbidden("AccessDeniedException", message)
}

async fn sns_deliver(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    known: &mut Option<AccountId>,
) -> Result<Response, WireError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header(SNS_RAW_DELIVERY).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(WireError::bad_request(
            "This subscription has raw message delivery on: SNS then sends the bare message without its \
             signature, which cannot be verified. Turn raw message delivery off for this subscription.",
        ));
    }
    if let Some(topic) = header(SNS_TOPIC_ARN)
        && state.credentials.topic_account(topic).is_none()
    {
        return Err(sns_refused(format!(
            "Topic {topic} is not one any account lists in sns_topic_arns."
        )));
    }
    // Not yet verified, so no ingest slot: SNS bodies are read under their
    // own bound, and a slot is taken only to store a verified notification.
    let _reading = Arc::clone(&state.sns_reads).try_acquire_owned().map_err(|_| {
        WireError::of(
            ErrorCode::TooManyRequestsException,
            "Too many SNS deliveries are being read; retry later.",
        )
    })?;
    let (body, _) = read_body(state, headers, body, state.max_body_bytes).await?;
    let body = body.into_bytes();
    let message: crate::sns::Message = serde_json::from_slice(&body).map_err(|e| {
        WireError::bad_request(format!(
            "The body is not an SNS message ({e}). If raw message delivery is on for this subscription, turn it off."
        ))
    })?;
    if header(SNS_MESSAGE_TYPE).is_some_and(|t| t != message.kind) {
        return Err(WireError::bad_request(
            "The x-amz-sns-message-type header and the message's Type differ.",
        ));
    }
    if header(SNS_TOPIC_ARN).is_some_and(|t| t != message.topic_arn) {
        return Err(sns_refused(
            "The x-amz-sns-topic-arn header and the message's TopicArn differ.",
        ));
    }
    let account = state.credentials.topic_account(&message.topic_arn).ok_or_else(|| {
        sns_refused(format!(
            "Topic {} is not one any account lists in sns_topic_arns.",
            message.topic_arn
        ))
    })?;
    *known = Some(account.clone());
    state.sns.verify(&message).await.map_err(sns_error)?;
    match message.kind.as_str() {
        "SubscriptionConfirmation" => {
            let fetched = state.sns.confirm(&message).await.map_err(sns_error)?;
            if fetched {
                tracing::info!(topic = %message.topic_arn, account = %account.as_str(), "SNS subscription confirmed");
            }
            Ok(json_response(StatusCode::OK, &serde_json::json!({"confirmed": true})))
        }
        "UnsubscribeConfirmation" => {
            tracing::info!(topic = %message.topic_arn, account = %account.as_str(), "SNS subscription ended");
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"unsubscribed": true}),
            ))
        }
        _ => {
            // One record, one line: a raw line break cannot be inside a JSON
            // string, so outside one it is whitespace.
            let mut line = message.message.replace(['\n', '\r'], " ");
            line.push('\n');
            let slot = ingest_slot(state, &account)?;
            // Events the topic carries are its region's, unless their
            // sourceArn names another.
            let region = message
                .topic_arn
                .split(':')
                .nth(3)
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| state.default_region.clone());
            let report = store(
                state,
                &Scope::new(account.clone(), region),
                std::io::Cursor::new(line.into_bytes()),
                Source::Sns,
                slot,
            )
            .await
            .map_err(ingest_error)?;
            if let Some(error) = report.errors.first() {
                // Refused, so SNS's retry policy and dead-letter queue keep it.
                let mut refused = WireError::bad_request(format!(
                    "The notification's Message is not an SES event record: {}",
                    error.reason
                ));
                refused.extra = match serde_json::to_value(&report) {
                    Ok(serde_json::Value::Object(members)) => Some(members),
                    _ => None,
                };
                return Err(refused);
            }
            Ok(json_response(StatusCode::OK, &report))
        }
    }
}

fn sns_error(error: crate::sns::SnsError) -> WireError {
    use crate::sns::SnsError;
    match error {
        SnsError::Refused(m) => sns_refused(m),
        SnsError::Malformed(m) => WireError::bad_request(m),
        SnsError::Unreachable(m) => {
            tracing::warn!(error = %m, "SNS could not be reached");
            let mut e = WireError::of(ErrorCode::InternalServiceErrorException, m);
            e.status = StatusCode::BAD_GATEWAY;
            e
        }
    }
}
