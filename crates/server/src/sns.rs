//! Amazon SNS deliveries to an HTTP(S) subscription, as AWS documents them:
//! the message envelope, its string to sign, the signature (SignatureVersion
//! 1: RSA with SHA-1; 2: RSA with SHA-256) checked with the certificate at
//! `SigningCertURL`, which must be `https` on SNS's own host
//! (`sns.<region>.amazonaws.com`) and is cached, and the fetch of a
//! `SubscribeURL` that confirms a subscription.
//!
//! The certificate is trusted because it comes over TLS from SNS's host
//! (the host rule, and the TLS roots), as AWS's SDKs trust it; tests stand
//! up their own HTTPS "SNS" with `--sns-trust-ca` and `--sns-cert-host`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id};
use serde::Deserialize;

/// The most a signing certificate may weigh (AWS's are about 2 KiB).
const MAX_CERTIFICATE_BYTES: usize = 64 << 10;
/// Certificates kept; SNS signs with a handful at a time.
const MAX_CACHED_CERTIFICATES: usize = 64;
/// Confirmations remembered, so a redelivered one is not fetched again.
const MAX_REMEMBERED_CONFIRMATIONS: usize = 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failed certificate fetch is remembered (and not tried again).
pub const FAILED_FETCH_MEMORY: Duration = Duration::from_secs(60);
/// New (uncached) certificates fetched in a burst at most.
pub const NEW_CERTIFICATE_BURST: f64 = 10.0;
/// Then one more new certificate fetch per this interval.
pub const NEW_CERTIFICATE_INTERVAL: Duration = Duration::from_secs(6);
/// Failed fetches remembered at most.
const MAX_REMEMBERED_FAILURES: usize = 256;
/// How old a message may be. SNS stops retrying an HTTP(S) delivery within
/// an hour; a signed message older than this (with room for clocks) is a
/// replay, not a delivery.
pub const MAX_MESSAGE_AGE: Duration = Duration::from_secs(2 * 3600);
/// How far ahead of this server's clock a message's Timestamp may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// An SNS message as SNS posts it (JSON, keys in PascalCase).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// SNS's id of the message.
    pub message_id: String,
    /// The confirmation token (confirmations only).
    pub token: Option<String>,
    /// The topic it was published to.
    pub topic_arn: String,
    /// The subject, when the publisher gave one.
    pub subject: Option<String>,
    /// The published message: for SES, an event record as JSON text.
    pub message: String,
    /// When SNS signed it (ISO 8601).
    pub timestamp: String,
    /// `1` (RSA with SHA-1) or `2` (RSA with SHA-256).
    pub signature_version: String,
    /// The signature, base64.
    pub signature: String,
    /// Where SNS's signing certificate is.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    /// The URL that confirms a subscription (confirmations only).
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    /// The URL that ends the subscription (notifications).
    #[serde(rename = "UnsubscribeURL")]
    pub unsubscribe_url: Option<String>,
}

/// Why a message is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnsError {
    /// Not authentic, or not allowed: answered 403, nothing kept.
    Refused(String),
    /// Not an SNS message this endpoint understands: 400.
    Malformed(String),
    /// SNS's certificate or confirmation URL could not be fetched: 502, so
    /// SNS delivers again later.
    Unreachable(String),
}

impl std::fmt::Display for SnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnsError::Refused(m) | SnsError::Malformed(m) | SnsError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SnsError {}

impl Message {
    /// The string SNS signed: each field's name and value, each on its own
    /// line, in the order AWS documents for the message's type.
    pub fn string_to_sign(&self) -> Result<String, SnsError> {
        let fields: &[(&str, Option<&str>, bool)] = match self.kind.as_str() {
            "Notification" => &[
                ("Message", Some(&self.message), true),
                ("MessageId", Some(&self.message_id), true),
                ("Subject", self.subject.as_deref(), false),
                ("Timestamp", Some(&self.timestamp), true),
                ("TopicArn", Some(&self.topic_arn), true),
                ("Type", Some(&self.kind), true),
            ],
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
                ("Message", Some(&self.message), true),
                ("MessageId", Some(&self.message_id), true),
                ("SubscribeURL", self.subscribe_url.as_deref(), true),
                ("Timestamp", Some(&self.timestamp), true),
                ("Token", self.token.as_deref(), true),
                ("TopicArn", Some(&self.topic_arn), true),
                ("Type", Some(&self.kind), true),
            ],
            other => return Err(SnsError::Malformed(format!("unknown SNS message Type {other:?}"))),
        };
        let mut out = String::new();
        for (name, value, required) in fields {
            match value {
                Some(value) => {
                    out.push_str(name);
                    out.push('\n');
                    out.push_str(value);
                    out.push('\n');
                }
                None if *required => {
                    return Err(SnsError::Malformed(format!("a {} without {name}", self.kind)));
                }
                None => {}
            }
        }
        Ok(out)
    }
}

/// Which hosts SNS's URLs may name.
#[derive(Debug, Clone)]
enum HostRule {
    /// `sns.<region>.amazonaws.com` (`.com.cn` in China), in the topic's
    /// own region.
    Aws,
    /// Only this host (`--sns-cert-host`, for tests).
    Only(String),
}

impl HostRule {
    /// Whether `uri` may be fetched for a message of a topic in `region`.
    fn allows(&self, uri: &axum::http::Uri, topic_region: &str) -> bool {
        let Some(host) = uri.host() else { return false };
        match self {
            HostRule::Aws => {
                let Some(region) = host.strip_prefix("sns.").and_then(|h| {
                    h.strip_suffix(".amazonaws.com")
                        .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
                }) else {
                    return false;
                };
                !region.is_empty()
                    && region == topic_region
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && uri.port().is_none()
            }
            HostRule::Only(allowed) => {
                uri.authority().is_some_and(|a| a.as_str() == allowed) || (uri.port().is_none() && host == allowed)
            }
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Verifies SNS messages and confirms subscriptions.
#[derive(Clone)]
pub struct Sns {
    hosts: HostRule,
    /// `--sns-trust-ca`'s roots; the platform's when `None`.
    trusted: Option<rustls::RootCertStore>,
    http: Arc<std::sync::OnceLock<HttpsClient>>,
    certificates: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
    /// Certificate URLs whose fetch failed lately, and why: asked again
    /// within [`FAILED_FETCH_MEMORY`], they fail without a fetch.
    failed: Arc<Mutex<HashMap<String, (std::time::Instant, SnsError)>>>,
    /// New certificate fetches allowed: a bucket of
    /// [`NEW_CERTIFICATE_BURST`], one more every
    /// [`NEW_CERTIFICATE_INTERVAL`], so no caller makes the server fetch
    /// faster than that, whatever URLs it names.
    fetches: Arc<Mutex<(f64, std::time::Instant)>>,
    confirmed: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for Sns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sns")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Sns {
    /// Trusting the platform's roots for SNS's HTTPS, or only `trust_ca`'s
    /// certificates; SNS's host, or only `cert_host`.
    pub fn new(trust_ca: Option<&Path>, cert_host: Option<&str>) -> Result<Sns, crate::StartError> {
        // A test CA is read (and refused) at start; the platform's roots
        // are read on the first fetch, so a server no SNS topic feeds
        // never reads them.
        let trusted = match trust_ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--sns-trust-ca {}: {e}", path.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(crate::StartError::from(format!(
                        "--sns-trust-ca {}: no certificate in it",
                        path.display()
                    )));
                }
                Some(roots)
            }
            None => None,
        };
        Ok(Sns {
            hosts: cert_host.map_or(HostRule::Aws, |h| HostRule::Only(h.to_owned())),
            trusted,
            http: Arc::default(),
            certificates: Arc::default(),
            failed: Arc::default(),
            fetches: Arc::new(Mutex::new((NEW_CERTIFICATE_BURST, std::time::Instant::now()))),
            confirmed: Arc::default(),
        })
    }

    /// The HTTPS client for SNS's URLs, made on first use.
    fn http(&self) -> Result<&HttpsClient, SnsError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let roots = self.trusted.clone().unwrap_or_else(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        });
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| SnsError::Unreachable(format!("setting up TLS for SNS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        // Two first fetches at once: one client is kept, the other dropped.
        let _ = self.http.set(Client::builder(TokioExecutor::new()).build(connector));
        self.http
            .get()
            .ok_or_else(|| SnsError::Unreachable("setting up TLS for SNS failed".to_owned()))
    }

    /// `url` if it is `https` on SNS's host in the region of `message`'s
    /// topic, so a caller cannot send the server to hosts of its choosing.
    fn allowed(&self, what: &str, url: &str, message: &Message) -> Result<axum::http::Uri, SnsError> {
        let refused = || {
            SnsError::Refused(format!(
                "{what} {url:?} is not an https URL on SNS's own host in the topic's region"
            ))
        };
        let uri: axum::http::Uri = url.parse().map_err(|_| refused())?;
        let topic_region = message.topic_arn.split(':').nth(3).unwrap_or_default();
        if uri.scheme_str() != Some("https") || !self.hosts.allows(&uri, topic_region) {
            return Err(refused());
        }
        Ok(uri)
    }

    /// Checks `message`'s signature with SNS's certificate, and that it
    /// was signed recently (see [`MAX_MESSAGE_AGE`]).
    pub async fn verify(&self, message: &Message) -> Result<(), SnsError> {
        let signed = ses_export_core::clock::parse_iso8601(&message.timestamp)
            .ok_or_else(|| SnsError::Refused(format!("Timestamp {:?} is not ISO 8601", message.timestamp)))?;
        let now = ses_export_core::clock::now();
        if signed < now - MAX_MESSAGE_AGE.as_millis() as i64 {
            return Err(SnsError::Refused(format!(
                "the message was signed at {}, more than {} hours ago: its signature has expired",
                message.timestamp,
                MAX_MESSAGE_AGE.as_secs() / 3600
            )));
        }
        if signed > now + MAX_CLOCK_SKEW.as_millis() as i64 {
            return Err(SnsError::Refused(format!(
                "the message's Timestamp {} is in the future",
                message.timestamp
            )));
        }
        let algorithm: &dyn SignatureVerificationAlgorithm = match message.signature_version.as_str() {
            "1" => &RSA_PKCS1_SHA1,
            "2" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(SnsError::Refused(format!("SignatureVersion {other:?} is not 1 or 2")));
            }
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(message.signature.trim())
            .map_err(|_| SnsError::Refused("the Signature is not base64".to_owned()))?;
        let string_to_sign = message.string_to_sign()?;
        let uri = self.allowed("SigningCertURL", &message.signing_cert_url, message)?;
        // SNS names its certificates `/SimpleNotificationService-<id>.pem`;
        // anything else on its host is not one, and is not fetched (nor can
        // a caller make the server fetch a new path per request).
        let is_certificate = uri
            .path()
            .strip_prefix("/SimpleNotificationService-")
            .and_then(|rest| rest.strip_suffix(".pem"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            && uri.query().is_none();
        if !is_certificate {
            return Err(SnsError::Refused(format!(
                "SigningCertURL {:?} does not name an SNS signing certificate (/SimpleNotificationService-ID.pem)",
                message.signing_cert_url
            )));
        }
        let der = self.certificate(&message.signing_cert_url, uri).await?;
        let der = CertificateDer::from(der.as_slice());
        let certificate = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| SnsError::Refused(format!("the signing certificate cannot be read: {e}")))?;
        certificate
            .verify_signature(algorithm, string_to_sign.as_bytes(), &signature)
            .map_err(|_| SnsError::Refused("the message's signature does not verify".to_owned()))
    }

    /// The certificate at `url` (DER), from the cache or fetched.
    async fn certificate(&self, url: &str, uri: axum::http::Uri) -> Result<Arc<Vec<u8>>, SnsError> {
        if let Some(der) = self.certificates.lock().unwrap_or_else(|p| p.into_inner()).get(url) {
            return Ok(Arc::clone(der));
        }
        {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            match failed.get(url) {
                Some((at, error)) if at.elapsed() < FAILED_FETCH_MEMORY => return Err(error.clone()),
                Some(_) => {
                    failed.remove(url);
                }
                None => {}
            }
        }
        self.take_fetch()?;
        let fetched = self.get(uri, "the signing certificate").await.and_then(|pem| {
            CertificateDer::pem_slice_iter(&pem)
                .next()
                .and_then(Result::ok)
                .map(|der| der.to_vec())
                .ok_or_else(|| SnsError::Refused("SigningCertURL holds no PEM certificate".to_owned()))
        });
        let der = match fetched {
            Ok(der) => Arc::new(der),
            Err(error) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                if failed.len() >= MAX_REMEMBERED_FAILURES {
                    failed.retain(|_, (at, _)| at.elapsed() < FAILED_FETCH_MEMORY);
                    if failed.len() >= MAX_REMEMBERED_FAILURES {
                        failed.clear();
                    }
                }
                failed.insert(url.to_owned(), (std::time::Instant::now(), error.clone()));
                return Err(error);
            }
        };
        let mut cache = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_CERTIFICATES {
            cache.clear();
        }
        cache.insert(url.to_owned(), Arc::clone(&der));
        Ok(der)
    }

    /// Takes one new certificate fetch from the bucket, or says to retry
    /// later (502: SNS delivers again).
    fn take_fetch(&self) -> Result<(), SnsError> {
        let mut bucket = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *bucket;
        let now = std::time::Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() / NEW_CERTIFICATE_INTERVAL.as_secs_f64())
            .min(NEW_CERTIFICATE_BURST);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return Err(SnsError::Unreachable(
                "too many new SNS signing certificates were asked for lately; retry later".to_owned(),
            ));
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }

    /// Confirms the subscription `message` asks for by fetching its
    /// `SubscribeURL`, once: `false` when this confirmation was already
    /// fetched (SNS delivered it again).
    pub async fn confirm(&self, message: &Message) -> Result<bool, SnsError> {
        let url = message
            .subscribe_url
            .as_deref()
            .ok_or_else(|| SnsError::Malformed("a SubscriptionConfirmation without SubscribeURL".to_owned()))?;
        let uri = self.allowed("SubscribeURL", url, message)?;
        if self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&message.message_id)
        {
            return Ok(false);
        }
        self.get(uri, "the SubscribeURL").await?;
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if confirmed.len() >= MAX_REMEMBERED_CONFIRMATIONS {
            confirmed.pop_front();
        }
        confirmed.push_back(message.message_id.clone());
        Ok(true)
    }

    /// GETs `uri`: a 2xx body of at most [`MAX_CERTIFICATE_BYTES`].
    async fn get(&self, uri: axum::http::Uri, what: &str) -> Result<Vec<u8>, SnsError> {
        let unreachable = |e: String| SnsError::Unreachable(format!("fetching {what} from SNS failed: {e}"));
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.http()?.get(uri))
            .await
            .map_err(|_| unreachable("no answer within 10 seconds".to_owned()))?
            .map_err(|e| unreachable(ses_export_core::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(unreachable(format!("HTTP {}", response.status())));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(response.into_body(), MAX_CERTIFICATE_BYTES).collect(),
        )
        .await
        .map_err(|_| unreachable("the body did not arrive within 10 seconds".to_owned()))?
        .map_err(|e| unreachable(e.to_string()))?;
        Ok(body.to_bytes().to_vec())
    }
}

/// RSA PKCS#1 1.5 with SHA-1, for SNS's SignatureVersion 1 (verification
/// only; ring keeps it for exactly such legacy uses).
#[derive(Debug)]
struct RsaPkcs1Sha1;

static RSA_PKCS1_SHA1: RsaPkcs1Sha1 = RsaPkcs1Sha1;

impl SignatureVerificationAlgorithm for RsaPkcs1Sha1 {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        // sha1WithRSAEncryption (1.2.840.113549.1.1.5), NULL parameters.
        AlgorithmIdentifier::from_slice(&[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_on_sns_hosts_is_allowed() {
        let aws = HostRule::Aws;
        let allows = |rule: &HostRule, url: &str| rule.allows(&url.parse().expect("uri"), "us-east-1");
        assert!(allows(
            &aws,
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
        ));
        assert!(aws.allows(
            &"https://sns.cn-north-1.amazonaws.com.cn/x.pem".parse().expect("uri"),
            "cn-north-1"
        ));
        for bad in [
            // Another region than the topic's: a caller could pick any name.
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
        ] {
            assert!(!allows(&aws, bad), "{bad}");
        }
        let only = HostRule::Only("127.0.0.1:4443".to_owned());
        assert!(allows(&only, "https://127.0.0.1:4443/x.pem"));
        assert!(!allows(&only, "https://127.0.0.1:4444/x.pem"));
        assert!(!allows(&only, "https://sns.us-east-1.amazonaws.com/x.pem"));
    }

    #[test]
    fn strings_to_sign_follow_the_documented_order() {
        let message = Message {
            kind: "Notification".into(),
            message_id: "id".into(),
            token: None,
            topic_arn: "arn:aws:sns:us-east-1:111111111111:t".into(),
            subject: None,
            message: "{}".into(),
            timestamp: "2024-01-01T00:00:00.000Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: None,
            unsubscribe_url: None,
        };
        assert_eq!(
            message.string_to_sign().expect("notification"),
            "Message\n{}\nMessageId\nid\nTimestamp\n2024-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:111111111111:t\nType\nNotification\n"
        );
        let with_subject = Message {
            subject: Some("s".into()),
            ..message.clone()
        };
        assert!(
            with_subject
                .string_to_sign()
                .expect("subject")
                .contains("MessageId\nid\nSubject\ns\nTimestamp")
        );
        let confirmation = Message {
            kind: "SubscriptionConfirmation".into(),
            ..message
        };
        assert!(
            matches!(confirmation.string_to_sign(), Err(SnsError::Malformed(_))),
            "no token"
        );
    }
}
