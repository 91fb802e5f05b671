//! What the server says of itself and of accounts: `/metrics`, the
//! reputation endpoint, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ses_export_core::Region;
use ses_export_core::service::ExportService;
use ses_export_model::types::JobStatus;

use super::{AppState, WireError, admit, answered, json_response};

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
pub(crate) const MAX_REPUTATION_SCOPES: usize = 1000;

/// `GET /_ses-export/v1/reputation` (SigV4): the caller's bounce and
/// complaint rates in the region it signs for, over its latest eligible
/// sends, with AWS's review and pause thresholds, as the console's
/// dashboard shows them.
pub(crate) async fn reputation(
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
pub(crate) async fn healthz() -> Response {
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
pub(crate) async fn probe(service: &ExportService) -> serde_json::Map<String, serde_json::Value> {
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
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
