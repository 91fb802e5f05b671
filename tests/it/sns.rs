//! The SNS endpoint (SPEC §10) against a stand-in for SNS: an HTTPS server
//! with a test CA that serves the signing certificate and the confirmation
//! URL, and messages signed as SNS signs them (RSA with SHA-1 for
//! SignatureVersion 1, SHA-256 for 2; `openssl` signs, so the server's
//! verifier is checked against another implementation). A forged,
//! tampered, stale or misdirected message is refused and nothing is kept.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use ses_export_core::clock::format_iso8601;
use ses_export_tests::{Server, TestCa, generated_lines, http_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:ses-events";
const CERT_PATH: &str = "/SimpleNotificationService-0000000000000000000000.pem";

/// An HTTPS stand-in for SNS: the signing certificate at [`CERT_PATH`],
/// confirmation URLs at `/?Action=ConfirmSubscription...`, each GET counted.
struct FakeSns {
    /// `https://127.0.0.1:PORT`
    url: String,
    /// `127.0.0.1:PORT`, for `--sns-cert-host`.
    host: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// The RSA key SNS signs with.
    key: PathBuf,
}

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (Debian's openssl package)");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write");
    let output = child.wait_with_output().expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl FakeSns {
    async fn start(ca: &TestCa, dir: &Path) -> FakeSns {
        let key = dir.join("sns-key.pem");
        let cert = dir.join("sns-cert.pem");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=sns.amazonaws.com",
                "-keyout",
                key.to_str().expect("path"),
                "-out",
                cert.to_str().expect("path"),
            ],
            b"",
        );
        let signing_cert = std::fs::read(&cert).expect("certificate");
        let (tls_cert, tls_key) = ca.issue(&["127.0.0.1"]);
        let chain = rustls::pki_types::pem::PemObject::pem_slice_iter(tls_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let private = rustls::pki_types::pem::PemObject::from_pem_slice(tls_key.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let hits = Arc::clone(&counted);
                let signing_cert = signing_cert.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    *hits.lock().expect("hits").entry(path.clone()).or_default() += 1;
                    let (status, body) = if path == CERT_PATH {
                        ("200 OK", signing_cert)
                    } else if path.starts_with("/?Action=ConfirmSubscription") {
                        ("200 OK", b"<ConfirmSubscriptionResponse/>".to_vec())
                    } else {
                        ("404 Not Found", Vec::new())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeSns {
            url: format!("https://{host}"),
            host,
            hits,
            key,
        }
    }

    fn hits(&self, prefix: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// A message as SNS sends it, signed as SNS signs it: the fields of
    /// AWS's documented string to sign, in order, each `Name\nValue\n`.
    fn message(&self, kind: &str, body: &str, version: &str, timestamp_millis: i64) -> serde_json::Value {
        let id = format!("{:016x}-0000-4000-8000-000000000000", rand_id());
        let timestamp = format_iso8601(ses_export_core::clock::Millis(timestamp_millis));
        let mut message = serde_json::json!({
            "Type": kind,
            "MessageId": id,
            "TopicArn": TOPIC,
            "Message": body,
            "Timestamp": timestamp,
            "SignatureVersion": version,
            "SigningCertURL": format!("{}{CERT_PATH}", self.url),
        });
        let fields: &[&str] = if kind == "Notification" {
            message["UnsubscribeURL"] = format!("{}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1", self.url).into();
            &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        } else {
            message["Token"] = "2336412f37fb687f5d51e6e2425c464de12884a3".into();
            message["SubscribeURL"] =
                format!("{}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={id}", self.url).into();
            &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ]
        };
        message["Signature"] = self.sign(&message, fields, version).into();
        message
    }

    fn sign(&self, message: &serde_json::Value, fields: &[&str], version: &str) -> String {
        let mut text = String::new();
        for field in fields {
            if let Some(value) = message[*field].as_str() {
                text.push_str(&format!("{field}\n{value}\n"));
            }
        }
        let digest = if version == "1" { "-sha1" } else { "-sha256" };
        let signature = openssl(
            &["dgst", digest, "-sign", self.key.to_str().expect("path")],
            text.as_bytes(),
        );
        base64::engine::general_purpose::STANDARD.encode(signature)
    }
}

fn rand_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Setup {
    server: Server,
    sns: FakeSns,
    _ca: TestCa,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("test SNS CA");
    let sns = FakeSns::start(&ca, dir.path()).await;
    let credentials = format!(
        "[[credentials]]\naccess_key_id = \"AKIAACCOUNTA\"\nsecret_access_key = \"secret-of-account-a\"\n\
         account_id = \"111111111111\"\nsns_topic_arns = [\"{TOPIC}\"]\n"
    );
    let server = Server::with_credentials(
        &credentials,
        &[
            "--sns-trust-ca",
            ca.ca_path.to_str().expect("path"),
            "--sns-cert-host",
            &sns.host,
        ],
    )
    .await;
    Setup {
        server,
        sns,
        _ca: ca,
        _dir: dir,
    }
}

/// Posts `message` as SNS does (its headers, `text/plain`).
async fn deliver(server: &Server, message: &serde_json::Value) -> (u16, String) {
    let response = http_client()
        .post(format!("{}/_ses-export/v1/sns", server.url))
        .header("content-type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", message["Type"].as_str().unwrap_or_default())
        .header(
            "x-amz-sns-message-id",
            message["MessageId"].as_str().unwrap_or_default(),
        )
        .header("x-amz-sns-topic-arn", message["TopicArn"].as_str().unwrap_or_default())
        .header("user-agent", "Amazon Simple Notification Service Agent")
        .body(serde_json::to_vec(message).expect("JSON"))
        .send()
        .await
        .expect("send");
    (response.status().as_u16(), response.text().await.expect("body"))
}

async fn accepted(server: &Server) -> u64 {
    server.event_counts().await.0
}

#[tokio::test]
async fn a_subscription_is_confirmed_once_and_notifications_are_ingested() {
    let setup = setup().await;
    let (server, sns) = (&setup.server, &setup.sns);

    let confirmation = sns.message(
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.",
        "1",
        now_millis(),
    );
    let (status, body) = deliver(server, &confirmation).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sns.hits("/?Action=ConfirmSubscription"), 1);
    // SNS may deliver a confirmation again; it is confirmed once.
    let (status, _) = deliver(server, &confirmation).await;
    assert_eq!(status, 200);
    assert_eq!(
        sns.hits("/?Action=ConfirmSubscription"),
        1,
        "the SubscribeURL is fetched once"
    );

    let lines = generated_lines(3, 4);
    let mut kept = 0;
    for (i, line) in lines.lines().enumerate() {
        let version = if i % 2 == 0 { "1" } else { "2" };
        let notification = sns.message("Notification", line, version, now_millis());
        let (status, body) = deliver(server, &notification).await;
        assert_eq!(status, 200, "SignatureVersion {version}: {body}");
        kept += 1;
        assert_eq!(accepted(server).await, kept);
    }
    // The certificate was fetched once and then cached.
    assert_eq!(sns.hits(CERT_PATH), 1);

    let unsubscribed = sns.message("UnsubscribeConfirmation", "You have unsubscribed.", "2", now_millis());
    let (status, body) = deliver(server, &unsubscribed).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn forged_misdirected_and_stale_messages_are_refused_with_nothing_kept() {
    let setup = setup().await;
    let (server, sns) = (&setup.server, &setup.sns);
    let record = generated_lines(4, 1).lines().next().expect("a line").to_owned();
    let good = sns.message("Notification", &record, "2", now_millis());

    let mut cases: Vec<(&str, serde_json::Value, u16)> = Vec::new();
    let mut tampered = good.clone();
    tampered["Message"] = record.replace("\"eventType\"", " \"eventType\"").into();
    cases.push(("a tampered message", tampered, 403));
    let mut other_version = good.clone();
    other_version["SignatureVersion"] = "1".into();
    cases.push(("a signature checked under the other version", other_version, 403));
    let mut other_host = good.clone();
    other_host["SigningCertURL"] = format!(
        "https://localhost:{}{CERT_PATH}",
        sns.host.rsplit(':').next().expect("port")
    )
    .into();
    cases.push(("a certificate from another host", other_host, 403));
    let mut plain_http = good.clone();
    plain_http["SigningCertURL"] = format!("http://{}{CERT_PATH}", sns.host).into();
    cases.push(("a certificate over plain http", plain_http, 403));
    let mut not_a_certificate = good.clone();
    not_a_certificate["SigningCertURL"] = format!("{}/anything/else.pem", sns.url).into();
    cases.push((
        "a URL on SNS's host that is no signing certificate",
        not_a_certificate,
        403,
    ));
    let mut other_topic = good.clone();
    other_topic["TopicArn"] = "arn:aws:sns:us-east-1:111111111111:someone-elses".into();
    cases.push(("an unknown topic", other_topic, 403));
    let mut malformed = good.clone();
    malformed["Signature"] = "not base64 at all!".into();
    cases.push(("a malformed signature", malformed, 403));
    let mut truncated = good.clone();
    truncated["Signature"] = base64::engine::general_purpose::STANDARD.encode([7u8; 16]).into();
    cases.push(("a signature of the wrong length", truncated, 403));
    cases.push((
        "an expired signature (a day old)",
        sns.message("Notification", &record, "2", now_millis() - 86_400_000),
        403,
    ));
    let mut unknown_version = good.clone();
    unknown_version["SignatureVersion"] = "3".into();
    cases.push(("an unknown SignatureVersion", unknown_version, 403));

    for (what, message, expected) in &cases {
        let (status, body) = deliver(server, message).await;
        assert_eq!(status, *expected, "{what}: {body}");
    }
    assert_eq!(accepted(server).await, 0, "nothing refused was kept");
    assert_eq!(sns.hits("/anything"), 0, "only certificate paths are fetched");
    // No confirmation was fetched for anything above.
    assert_eq!(sns.hits("/?Action=ConfirmSubscription"), 0);

    // Raw message delivery sends the bare record, unsigned: refused with
    // the reason.
    let raw = http_client()
        .post(format!("{}/_ses-export/v1/sns", server.url))
        .header("x-amz-sns-message-type", "Notification")
        .header("x-amz-sns-topic-arn", TOPIC)
        .header("x-amz-sns-rawdelivery", "true")
        .body(record.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status().as_u16(), 400);
    assert!(raw.text().await.expect("body").contains("raw message delivery"));
    assert_eq!(accepted(server).await, 0);

    // The good one, after all that, is kept.
    let (status, body) = deliver(server, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(accepted(server).await, 1);
}

/// Messages that name a new certificate each, with no valid signature,
/// cannot make the server fetch more than a handful: new certificates are
/// fetched at a bounded rate, and a URL that failed is not fetched again.
#[tokio::test]
async fn unsigned_messages_cannot_make_the_server_fetch_at_will() {
    let setup = setup().await;
    let (server, sns) = (&setup.server, &setup.sns);
    let record = generated_lines(6, 1).lines().next().expect("a line").to_owned();
    let mut statuses = Vec::new();
    for n in 0..40 {
        let mut message = sns.message("Notification", &record, "2", now_millis());
        // A certificate SNS does not have (the stand-in answers 404).
        message["SigningCertURL"] = format!("{}/SimpleNotificationService-{n:032}.pem", sns.url).into();
        statuses.push(deliver(server, &message).await.0);
        // The same URL again: its failure is remembered, not fetched again.
        statuses.push(deliver(server, &message).await.0);
    }
    assert!(statuses.iter().all(|s| *s == 502 || *s == 403), "{statuses:?}");
    let fetched = sns.hits("/SimpleNotificationService-") - sns.hits(CERT_PATH);
    assert!(
        (1..=11).contains(&fetched),
        "{fetched} certificate fetches for 40 new URLs asked twice each"
    );
    // The real certificate is cached already or waits its turn; a good
    // message is taken once the bucket allows, and nothing else was kept.
    assert_eq!(accepted(server).await, 0);
}

/// Slow SNS bodies (anyone can send them: the signature is inside) hold
/// no ingest slot: the account's own ingest goes on beside them.
#[tokio::test]
async fn slow_sns_bodies_hold_no_ingest_slot() {
    let setup = setup().await;
    let server = &setup.server;
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(server.address()).await.expect("connect");
        let head = format!(
            "POST /_ses-export/v1/sns HTTP/1.1\r\nhost: {}\r\nx-amz-sns-message-type: Notification\r\n\
             x-amz-sns-topic-arn: {TOPIC}\r\ncontent-length: 100000\r\n\r\n{{\"Type\"",
            server.address()
        );
        stream.write_all(head.as_bytes()).await.expect("part of a body");
        slow.push(stream);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let lines = generated_lines(7, 3);
    let response = server
        .signed(
            "POST",
            "/_ses-export/v1/events",
            lines.as_bytes(),
            ("AKIAACCOUNTA", "secret-of-account-a"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    drop(slow);
}
