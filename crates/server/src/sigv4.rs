//! AWS Signature Version 4 verification, written against the SigV4
//! specification: the Authorization-header form and the pre-signed query
//! form, any `SignedHeaders` list, the payload hash from
//! `x-amz-content-sha256` or computed from the body, a 15-minute clock
//! window, and a constant-time comparison of the signature.
//!
//! Non-S3 services (SES among them) sign the path with each segment
//! URI-encoded twice and normalised (no `.`, `..` or empty segments); S3
//! encodes once and does not normalise. Both are here, for AWS's test suite
//! uses the S3 rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash S3 allows and SES does not: it signs no body.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// A request as the verifier needs it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path as it came on the wire (percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Every header, name and value, in the order received (repeats kept).
    pub headers: Vec<(String, String)>,
    /// The body (empty when it is checked apart, as it streams in).
    pub body: &'a [u8],
}

/// Why a request is not authenticated; each maps to one 403 error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No signature at all: `MissingAuthenticationTokenException`.
    Missing,
    /// An access key nobody has: `UnrecognizedClientException`.
    UnknownKey,
    /// A signature that is malformed, wrong, expired or from the wrong
    /// time: `InvalidSignatureException`, with the reason.
    Invalid(String),
    /// Both an Authorization header and a pre-signed query: a malformed
    /// request (400), not a failed signature.
    Conflicting,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "Missing Authentication Token",
            AuthError::UnknownKey => "The security token included in the request is invalid.",
            AuthError::Invalid(reason) => reason,
            AuthError::Conflicting => {
                "A request is signed either with an Authorization header or with a pre-signed query, not both."
            }
        })
    }
}

impl std::error::Error for AuthError {}

/// How paths are put in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Remove `.`, `..` and empty segments first (every service but S3).
    pub normalize: bool,
    /// Encode each segment as it came on the wire again (every service but
    /// S3), rather than decoding it and encoding it once.
    pub double_encode: bool,
}

impl PathRules {
    /// SES and every other non-S3 service.
    pub const NON_S3: PathRules = PathRules {
        normalize: true,
        double_encode: true,
    };
}

/// The signing scope and credential of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key: String,
    /// The scope's day, `YYYYMMDD`.
    pub date: String,
    /// The scope's region.
    pub region: String,
    /// The scope's service.
    pub service: String,
}

/// Everything the signature covers, parsed from the header or the query.
#[derive(Debug, Clone)]
struct Parsed {
    credential: Credential,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    presigned_expires: Option<u64>,
}

/// Checks signatures for one service.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The service signatures must be scoped to (`ses`).
    pub service: String,
    /// How paths are put in canonical form.
    pub path_rules: PathRules,
    /// How far a signature's time may be from the server's clock.
    pub max_skew: Duration,
    /// Signing keys already derived; shared by the verifier's clones.
    pub keys: SigningKeys,
}

/// Signing keys by secret and scope. A key depends only on the secret,
/// the day, the region and the service, so a client signing all day costs
/// four HMACs once, not on every request. Bounded: the cache is emptied
/// when it reaches [`SigningKeys::MAX`] entries.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys(Arc<Mutex<HashMap<KeyScope, [u8; 32]>>>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct KeyScope {
    secret: String,
    date: String,
    region: String,
    service: String,
}

impl SigningKeys {
    /// Entries kept at most.
    pub const MAX: usize = 4096;

    /// Checks `signature` over `string_to_sign` with the key for `secret`
    /// in `credential`'s scope. The key is derived once: it is kept only
    /// after a signature made with it verified, so what a caller writes in
    /// a scope it cannot sign for is never kept.
    fn verify(&self, secret: &str, credential: &Credential, string_to_sign: &str, signature: &[u8]) -> bool {
        let scope = KeyScope {
            secret: secret.to_owned(),
            date: credential.date.clone(),
            region: credential.region.clone(),
            service: credential.service.clone(),
        };
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&scope).copied();
        let key = cached
            .unwrap_or_else(|| signing_key_bytes(secret, &credential.date, &credential.region, &credential.service));
        let good = hmac(&key, string_to_sign.as_bytes()).verify_slice(signature).is_ok();
        if good && cached.is_none() {
            let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if keys.len() >= Self::MAX {
                keys.clear();
            }
            keys.insert(scope, key);
        }
        good
    }
}

impl Verifier {
    /// The verifier for SES: service `ses`, double-encoded paths, 15 minutes.
    pub fn ses() -> Self {
        Verifier {
            service: "ses".to_owned(),
            path_rules: PathRules::NON_S3,
            max_skew: Duration::from_secs(15 * 60),
            keys: SigningKeys::default(),
        }
    }

    /// Everything that can be decided from the request line and headers
    /// alone (docs/security.md): the signature's form, the access key (through
    /// `lookup`, which gives the key's secret and whatever else the caller
    /// keeps with it), the credential scope, the clock window, `host` among
    /// the signed headers, and a payload hash that binds the body. The body
    /// of `request` is not looked at, so a request that fails here costs no
    /// more than its head.
    pub fn check_head<T>(
        &self,
        request: &Request<'_>,
        now: SystemTime,
        lookup: impl FnOnce(&str) -> Option<(String, T)>,
    ) -> Result<(SignedHead, T), AuthError> {
        let parsed = parse(request)?;
        let (secret, found) = lookup(&parsed.credential.access_key).ok_or(AuthError::UnknownKey)?;
        self.check_scope_and_time(&parsed, now)?;
        if !parsed.signed_headers.iter().any(|h| h == "host") {
            return Err(AuthError::Invalid(
                "'Host' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
            ));
        }
        let claimed_payload_hash = match header(request, "x-amz-content-sha256") {
            Some(claimed) if claimed == UNSIGNED_PAYLOAD || claimed.starts_with("STREAMING-") => {
                return Err(AuthError::Invalid(format!(
                    "x-amz-content-sha256 {claimed} is not accepted: sign the SHA-256 of the body."
                )));
            }
            Some(claimed) if claimed.len() == 64 && claimed.bytes().all(|b| b.is_ascii_hexdigit()) => Some(claimed),
            Some(_) => {
                return Err(AuthError::Invalid(
                    "x-amz-content-sha256 must be the hex SHA-256 of the body.".to_owned(),
                ));
            }
            None => None,
        };
        Ok((
            SignedHead {
                parsed,
                secret,
                claimed_payload_hash,
            },
            found,
        ))
    }

    /// Checks the signature of a request whose head passed
    /// [`check_head`](Self::check_head), over `payload_hash`: the hash
    /// the head claims (checked against the body as it streams in) or the
    /// body's, computed.
    pub fn check_signature(
        &self,
        request: &Request<'_>,
        head: &SignedHead,
        payload_hash: &str,
    ) -> Result<(), AuthError> {
        let parsed = &head.parsed;
        let credential = &parsed.credential;
        // A signature of the wrong length cannot verify.
        let Ok(provided) = hex::decode(&parsed.signature) else {
            return Err(mismatch());
        };
        let creq = canonical_request(request, &parsed.signed_headers, payload_hash, self.path_rules);
        let sts = string_to_sign(&parsed.amz_date, credential, &creq);
        if self.keys.verify(&head.secret, credential, &sts, &provided) {
            Ok(())
        } else {
            Err(mismatch())
        }
    }

    /// Verifies `request`, body included, signed with `secret`, as of
    /// `now`: [`check_head`](Self::check_head), the body against a claimed
    /// hash, then [`check_signature`](Self::check_signature).
    pub fn verify(&self, request: &Request<'_>, secret: &str, now: SystemTime) -> Result<(), AuthError> {
        let (head, ()) = self.check_head(request, now, |_| Some((secret.to_owned(), ())))?;
        let body_hash = hex::encode(Sha256::digest(request.body));
        let payload_hash = match head.claimed_payload_hash() {
            Some(claimed) if !claimed.eq_ignore_ascii_case(&body_hash) => return Err(payload_mismatch()),
            Some(claimed) => claimed.to_owned(),
            None => body_hash,
        };
        self.check_signature(request, &head, &payload_hash)
    }

    fn check_scope_and_time(&self, parsed: &Parsed, now: SystemTime) -> Result<(), AuthError> {
        let credential = &parsed.credential;
        if credential.service != self.service {
            return Err(AuthError::Invalid(format!(
                "Credential should be scoped to correct service: '{}'.",
                self.service
            )));
        }
        if !parsed.amz_date.starts_with(&credential.date) {
            return Err(AuthError::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                credential.date,
                parsed.amz_date.get(..8).unwrap_or("")
            )));
        }
        let signed_at = parse_amz_date(&parsed.amz_date)
            .ok_or_else(|| AuthError::Invalid(format!("X-Amz-Date {} is not a date", parsed.amz_date)))?;
        match parsed.presigned_expires {
            Some(expires) => {
                let until = signed_at + Duration::from_secs(expires);
                if now > until {
                    return Err(AuthError::Invalid("Request has expired".to_owned()));
                }
                if signed_at > now + self.max_skew {
                    return Err(AuthError::Invalid("Request is not yet valid".to_owned()));
                }
            }
            None => {
                if signed_at + self.max_skew < now {
                    return Err(AuthError::Invalid(format!(
                        "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                        parsed.amz_date,
                        format_amz_date(now - self.max_skew),
                        format_amz_date(now)
                    )));
                }
                if signed_at > now + self.max_skew {
                    return Err(AuthError::Invalid(format!(
                        "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                        parsed.amz_date,
                        format_amz_date(now + self.max_skew),
                        format_amz_date(now)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The head of a request whose signature's form, key, scope and time
/// are good; the signature itself is checked once the payload hash is
/// known.
#[derive(Debug)]
pub struct SignedHead {
    parsed: Parsed,
    secret: String,
    claimed_payload_hash: Option<String>,
}

impl SignedHead {
    /// The body's SHA-256 (hex) that the signature covers, when the head
    /// says it (`x-amz-content-sha256`); the body must then match it.
    pub fn claimed_payload_hash(&self) -> Option<&str> {
        self.claimed_payload_hash.as_deref()
    }

    /// The region of the signature's scope: the region the call is for.
    pub fn region(&self) -> &str {
        &self.parsed.credential.region
    }
}

/// The answer to a body whose SHA-256 is not the one the head claims.
pub fn payload_mismatch() -> AuthError {
    AuthError::Invalid("The provided 'x-amz-content-sha256' header does not match what was computed.".to_owned())
}

fn mismatch() -> AuthError {
    AuthError::Invalid(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
            .to_owned(),
    )
}

fn header(request: &Request<'_>, name: &str) -> Option<String> {
    let values: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn parse(request: &Request<'_>) -> Result<Parsed, AuthError> {
    let presigned = query_params(request.query)
        .iter()
        .any(|(k, _)| k == "X-Amz-Algorithm" || k == "X-Amz-Signature" || k == "X-Amz-Credential");
    if let Some(authorization) = header(request, "authorization") {
        if presigned {
            return Err(AuthError::Conflicting);
        }
        let rest = authorization
            .strip_prefix(ALGORITHM)
            .ok_or_else(|| AuthError::Invalid(format!("Unsupported authorization type; only {ALGORITHM} is")))?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v.to_owned());
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(v.to_owned());
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v.to_owned());
            }
        }
        let incomplete = |what: &str| AuthError::Invalid(format!("Authorization header requires '{what}' parameter."));
        let amz_date = header(request, "x-amz-date").ok_or_else(|| {
            AuthError::Invalid("Authorization header requires existence of an 'X-Amz-Date' header.".to_owned())
        })?;
        return Ok(Parsed {
            credential: parse_credential(&credential.ok_or_else(|| incomplete("Credential"))?)?,
            signed_headers: split_headers(&signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?),
            signature: signature.ok_or_else(|| incomplete("Signature"))?,
            amz_date,
            presigned_expires: None,
        });
    }
    let params = query_params(request.query);
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some(algorithm) = get("X-Amz-Algorithm") else {
        return Err(AuthError::Missing);
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::Invalid(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\""
        )));
    }
    let required = |name: &str| {
        get(name)
            .ok_or_else(|| AuthError::Invalid(format!("Query-string authentication requires the {name} parameter.")))
    };
    let expires: u64 = required("X-Amz-Expires")?
        .parse()
        .map_err(|_| AuthError::Invalid("X-Amz-Expires must be a number of seconds".to_owned()))?;
    if expires > 7 * 24 * 3600 {
        return Err(AuthError::Invalid(
            "X-Amz-Expires must be less than a week (in seconds)".to_owned(),
        ));
    }
    Ok(Parsed {
        credential: parse_credential(&required("X-Amz-Credential")?)?,
        signed_headers: split_headers(&required("X-Amz-SignedHeaders")?),
        signature: required("X-Amz-Signature")?,
        amz_date: required("X-Amz-Date")?,
        presigned_expires: Some(expires),
    })
}

fn split_headers(list: &str) -> Vec<String> {
    list.split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The longest access key id taken (AWS's are 16 to 128 characters).
pub const MAX_ACCESS_KEY_BYTES: usize = 128;
/// The longest region name taken (AWS's longest today is 14 characters).
pub const MAX_REGION_BYTES: usize = 32;

fn parse_credential(text: &str) -> Result<Credential, AuthError> {
    let parts: Vec<&str> = text.splitn(6, '/').collect();
    let word = |part: &str, max: usize, allowed: fn(u8) -> bool| {
        !part.is_empty() && part.len() <= max && part.bytes().all(allowed)
    };
    match parts.as_slice() {
        [access_key, date, region, service, "aws4_request"]
            if word(access_key, MAX_ACCESS_KEY_BYTES, |b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
            }) && date.len() == 8
                && date.bytes().all(|b| b.is_ascii_digit())
                && word(region, MAX_REGION_BYTES, |b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
                })
                && word(service, 32, |b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
                }) =>
        {
            Ok(Credential {
                access_key: (*access_key).to_owned(),
                date: (*date).to_owned(),
                region: (*region).to_owned(),
                service: (*service).to_owned(),
            })
        }
        _ => Err(AuthError::Invalid(format!(
            "Credential should be of the form ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request, with a region of at \
             most {MAX_REGION_BYTES} lowercase letters, digits and hyphens, not '{}'.",
            quoted(text)
        ))),
    }
}

/// At most 128 bytes of `text`, for an error that quotes what a caller sent.
fn quoted(text: &str) -> String {
    if text.len() <= 128 {
        return text.to_owned();
    }
    let mut end = 128;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The canonical request of SigV4 step 1.
pub fn canonical_request(
    request: &Request<'_>,
    signed_headers: &[String],
    payload_hash: &str,
    rules: PathRules,
) -> String {
    let mut headers: Vec<&String> = signed_headers.iter().collect();
    headers.sort();
    headers.dedup();
    let canonical_headers: String = headers
        .iter()
        .map(|name| {
            let values: Vec<String> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| collapse_spaces(v))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|h| h.as_str()).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path, rules),
        canonical_query(request.query),
        canonical_headers,
        names.join(";"),
        payload_hash
    )
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical URI of a path as it came on the wire.
pub fn canonical_uri(path: &str, rules: PathRules) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let trailing = path.len() > 1 && path.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "" | "." if rules.normalize => {}
            ".." if rules.normalize => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    if !rules.normalize && trailing {
        // The split left the trailing empty segment in place.
        segments.pop();
    }
    let encoded: Vec<String> = segments
        .iter()
        .map(|s| {
            if rules.double_encode {
                uri_encode(s)
            } else {
                uri_encode(&percent_decode(s))
            }
        })
        .collect();
    let mut out = format!("/{}", encoded.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

/// The canonical query string: every parameter but the signature, decoded
/// and re-encoded, sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut params: Vec<(String, String)> = query_params(query)
        .into_iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4 step 2.
pub fn string_to_sign(amz_date: &str, credential: &Credential, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        credential.date,
        credential.region,
        credential.service,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac
}

/// SigV4 step 3's key.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    signing_key_bytes(secret, date, region, service).to_vec()
}

fn signing_key_bytes(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())
        .finalize()
        .into_bytes();
    let k_region = hmac(&k_date, region.as_bytes()).finalize().into_bytes();
    let k_service = hmac(&k_region, service.as_bytes()).finalize().into_bytes();
    hmac(&k_service, b"aws4_request").finalize().into_bytes().into()
}

/// The signature of a string to sign, as hex.
pub fn sign(key: &[u8], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()).finalize().into_bytes())
}

/// RFC 3986 encoding of everything but the unreserved characters.
pub fn uri_encode(text: &str) -> String {
    ses_export_model::operation::percent_encode(text)
}

pub use ses_export_model::operation::percent_decode;

/// `20261128T185153Z` as a time.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(text, &format).ok()?.assume_utc();
    let secs = u64::try_from(parsed.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A time as `20261128T185153Z`.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let Ok(time) = time::OffsetDateTime::from_unix_timestamp(secs as i64) else {
        return String::new();
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}
