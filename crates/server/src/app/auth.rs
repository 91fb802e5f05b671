//! SigV4 admission from a request's head alone, before its body is read.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri, header};
use ses_export_core::Scope;

use crate::credentials::Identity;
use crate::sigv4::{self, AuthError, SignedHead};

use super::{AppState, ReadBody, WireError, read_body};

/// The parts of a request the verifier reads; the body is never among them.
pub(crate) fn signable<'a>(method: &'a Method, uri: &'a Uri, headers: &HeaderMap) -> sigv4::Request<'a> {
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
pub(crate) struct Admitted<'a> {
    request: sigv4::Request<'a>,
    head: SignedHead,
    pub(crate) identity: Arc<Identity>,
}

/// Authenticates from the head alone (docs/security.md): form, key, scope, clock,
/// `host`, the payload hash's kind, and, when the head claims the body's
/// hash, the signature itself. Nothing of the body is read.
pub(crate) fn admit<'a>(
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
    pub(crate) fn scope(&self) -> Result<Scope, WireError> {
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
    pub(crate) async fn body(
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

pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
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
