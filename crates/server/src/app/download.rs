//! Managed exports, downloaded by their pre-signed URLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use ses_export_core::service::DOWNLOAD_PATH;

use crate::sigv4;

use super::{AppState, WireError, answered};

/// `GET /_ses-export/v1/exports/{key}?X-Amz-Expires=..&X-Amz-Signature=..`:
/// a managed export, by its pre-signed URL; anything else is 403.
pub(crate) async fn download(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
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
