//! The console at `/_ses-export/console/`: static files embedded in the
//! binary (plain ES modules, no bundler), served with a strict Content
//! Security Policy. It holds no data and no session: the page signs every
//! API call in the browser with the credential the user typed
//! (docs/console.md), so the server's API answers it as it answers any
//! client, and another site cannot act for a signed-in user.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use ses_export_model::ErrorCode;

use super::{AppState, WireError, answered};

/// Where the console is.
pub const CONSOLE_PATH: &str = "/_ses-export/console";

/// The files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/console.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "sigv4.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/sigv4.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/charts.js"),
    ),
];

/// Scripts, styles and connections from this origin only; no inline code,
/// no framing, no plugins.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /_ses-export/console` → the folder.
pub(super) async fn root() -> Response {
    answered(
        Redirect::permanent(&format!("{CONSOLE_PATH}/")).into_response(),
        "Console",
        None,
    )
}

/// `GET /_ses-export/console/`: the page.
pub(super) async fn index() -> Response {
    file_response("index.html")
}

/// `GET /_ses-export/console/defaults.json`: what the page starts from
/// (the server's `--default-region`).
pub(super) async fn defaults(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({"region": state.default_region.as_str()}).to_string();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answered(response, "Console", None)
}

/// `GET /_ses-export/console/{file}`.
pub(super) async fn file(Path(name): Path<String>) -> Response {
    file_response(&name)
}

fn file_response(name: &str) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        // An error in the API's shape, as for any path nothing is served at.
        let error = WireError::of(
            ErrorCode::NotFoundException,
            format!("The console has no file {name:?}."),
        );
        return answered(error.into_response(), "Console", None);
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary: always ask.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answered(response, "Console", None)
}
