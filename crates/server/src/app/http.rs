//! What every request and answer goes through: the framing layer (request
//! ids, the access log, `Connection: close` after a refusal), bodies read
//! within their bounds, and the ingest slots.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use http_body_util::BodyExt;
use ses_export_core::AccountId;
use sha2::{Digest, Sha256};

use super::{AppState, WireError};

/// What every request and answer gets, whatever handles it: a request id,
/// made first and carried in a tracing span (so every log line written
/// while handling the request names it) and answered as `x-amzn-RequestId`;
/// and `Connection: close` when the request's body was not read to its end
/// (a refusal before the body): the server then closes the connection, and
/// the header tells the client not to send another request on it.
pub(crate) async fn framing(
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
pub(crate) async fn read_body(
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
pub(crate) struct ReadBody {
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

    pub(crate) fn into_bytes(mut self) -> Bytes {
        if self.frames.len() <= 1 {
            return self.frames.pop_front().unwrap_or_default();
        }
        let mut joined = bytes::BytesMut::with_capacity(self.frames.iter().map(Bytes::len).sum());
        for frame in self.frames {
            joined.extend_from_slice(&frame);
        }
        joined.freeze()
    }

    pub(crate) fn starts_with(&self, prefix: &[u8]) -> bool {
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
