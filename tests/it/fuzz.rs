//! The fuzz harness (docs/security.md, "Proof"): mutated real samples fed to the
//! server's whole request path in process (the axum router that the binary
//! serves, SigV4 included) and to the event parser. It checks that nothing
//! panics and that no input earns a 500.
//!
//! Targets, in turn: request bodies of all six operations (signed validly,
//! so parsing and validation run), event lines (JSON, SNS-wrapped, gzip;
//! through the parser, and one body in 500 through the ingest endpoint),
//! SigV4 headers and queries (mutated after signing), and download paths.
//!
//! `cargo test -p ses-export-tests --test it fuzz::` runs a short pass (CI);
//! `cargo xtask fuzz --inputs N --seed S` runs a long one in release.
//! `SES_EXPORT_FUZZ_INPUTS` and `SES_EXPORT_FUZZ_SEED` set both.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::http::Request;
use clap::Parser;
use futures_util::FutureExt;
use serde_json::{Value, json};
use ses_export_core::event::{EventReader, open_events};
use ses_export_server::app::app;
use ses_export_server::config::Config;
use ses_export_server::sigv4;
use tower::ServiceExt;

const MIXED: &str = include_str!("../../crates/core/tests/data/mixed.jsonl");

/// A small, fast, seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that break parsers: limits, types, escapes, sizes.
fn interesting(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(i64::MAX),
        5 => json!(1e308),
        6 => json!(""),
        7 => json!("*"),
        8 => json!("\\*\\"),
        9 => json!("x".repeat(rng.below(5000))),
        10 => json!([]),
        11 => json!({}),
        12 => json!("2026-13-45T99:99:99Z"),
        13 => json!(-62_135_596_801_i64),
        14 => json!("\u{0}\u{ffff}é𝄞"),
        _ => {
            let mut deep = json!(1);
            for _ in 0..rng.below(300) {
                deep = json!([deep]);
            }
            deep
        }
    }
}

/// Replaces one node of `value` (chosen at random) with something odd.
fn mutate_value(value: &mut Value, rng: &mut Rng) {
    let dive = rng.below(4) != 0;
    match value {
        Value::Object(map) if dive && !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("{key}x"), interesting(rng));
                }
                _ => {
                    if let Some(inner) = map.get_mut(&key) {
                        mutate_value(inner, rng);
                    }
                }
            }
        }
        Value::Array(items) if dive && !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(4) {
                0 => {
                    let copy = items[i].clone();
                    for _ in 0..rng.below(100) {
                        items.push(copy.clone());
                    }
                }
                _ => mutate_value(&mut items[i], rng),
            }
        }
        _ => *value = interesting(rng),
    }
}

/// Byte-level damage: flips, inserts, cuts, repeats.
fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) {
    const TOKENS: &[&[u8]] = &[
        b"\"", b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\\u0000", b"\n", b"%", b"%2F", b"\xff",
    ];
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = rng.pick(TOKENS);
                bytes.splice(at..at, token.iter().copied());
            }
            2 if at < bytes.len() => {
                let end = (at + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 if at < bytes.len() => {
                let end = (at + rng.below(32)).min(bytes.len());
                let piece: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// A sample mutated as JSON or as bytes.
fn mutated(seed: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut value = seed.clone();
    for _ in 0..=rng.below(3) {
        mutate_value(&mut value, rng);
    }
    let mut bytes = serde_json::to_vec(&value).unwrap_or_default();
    if rng.below(3) == 0 {
        mutate_bytes(&mut bytes, rng);
    }
    bytes
}

/// One operation's route and a valid body to start from.
struct Operation {
    method: &'static str,
    path: fn(&str) -> String,
    body: Value,
}

fn operations() -> Vec<Operation> {
    let insights = json!({
        "ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 1704067200, "EndDate": 1704153600.25,
            "Include": {"FromEmailAddress": ["*@example.com"], "Isp": ["Gmail"], "LastDeliveryEvent": ["DELIVERY"]},
            "Exclude": {"Subject": ["Weekly\\*"]}, "MaxResults": 100}},
        "ExportDestination": {"DataFormat": "CSV"}
    });
    let metrics = json!({
        "ExportDataSource": {"MetricsDataSource": {"Dimensions": {"ISP": ["*"], "EMAIL_IDENTITY": ["example.com"]},
            "Namespace": "VDM", "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}, {"Name": "DELIVERY_OPEN", "Aggregation": "RATE"}],
            "StartDate": 1704067200, "EndDate": 1704153600}},
        "ExportDestination": {"DataFormat": "JSON", "S3Url": "s3://bucket-one/prefix/"}
    });
    vec![
        Operation {
            method: "POST",
            path: |_| "/v2/email/export-jobs".to_owned(),
            body: insights,
        },
        Operation {
            method: "POST",
            path: |_| "/v2/email/export-jobs".to_owned(),
            body: metrics,
        },
        Operation {
            method: "GET",
            path: |label| format!("/v2/email/export-jobs/{label}"),
            body: json!({}),
        },
        Operation {
            method: "POST",
            path: |_| "/v2/email/list-export-jobs".to_owned(),
            body: json!({"PageSize": 10, "NextToken": "1.61.00", "JobStatus": "COMPLETED", "ExportSourceType": "METRICS_DATA"}),
        },
        Operation {
            method: "PUT",
            path: |label| format!("/v2/email/export-jobs/{label}/cancel"),
            body: json!({}),
        },
        Operation {
            method: "GET",
            path: |label| format!("/v2/email/insights/{label}/"),
            body: json!({}),
        },
        Operation {
            method: "POST",
            path: |_| "/v2/email/metrics/batch".to_owned(),
            body: json!({"Queries": [{"Id": "q1", "Namespace": "VDM", "Metric": "SEND",
                "Dimensions": {"ISP": "Gmail"}, "StartDate": 1704067200, "EndDate": 1704153600}]}),
        },
    ]
}

/// Path labels: ids, escapes, traversal, lengths.
fn label(rng: &mut Rng) -> String {
    let labels = [
        "0f8e2a64-6b5e-4c1e-9f62-2b0e1a7c4d11",
        "..",
        "%2e%2e",
        "%00",
        "a%2Fb",
        "%ZZ",
        "msg-1",
        "",
    ];
    let mut label = (*rng.pick(&labels)).to_owned();
    if rng.below(4) == 0 {
        label = "x".repeat(rng.below(3000));
    }
    label
}

/// Signs `request` with the development credential, as an SDK would.
fn signed_headers(method: &str, path: &str, query: &str, body: &[u8]) -> Vec<(String, String)> {
    let now = SystemTime::now();
    let amz_date = sigv4::format_amz_date(now);
    let date = amz_date[..8].to_owned();
    let headers = vec![
        ("host".to_owned(), "localhost".to_owned()),
        ("x-amz-date".to_owned(), amz_date.clone()),
    ];
    let request = sigv4::Request {
        method,
        path,
        query,
        headers: headers.clone(),
        body,
    };
    let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(body));
    let creq = sigv4::canonical_request(&request, &signed, &hash, sigv4::PathRules::NON_S3);
    let credential = sigv4::Credential {
        access_key: "test".into(),
        date: date.clone(),
        region: "us-east-1".into(),
        service: "ses".into(),
    };
    let sts = sigv4::string_to_sign(&amz_date, &credential, &creq);
    let signature = sigv4::sign(&sigv4::signing_key("test", &date, "us-east-1", "ses"), &sts);
    let mut out = headers;
    out.push((
        "authorization".to_owned(),
        format!("AWS4-HMAC-SHA256 Credential=test/{date}/us-east-1/ses/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
    ));
    out
}

/// One generated input: what it exercises, and a request when it goes
/// through the router.
struct Input {
    target: &'static str,
    request: Option<FuzzRequest>,
}

/// A request to send: method, path and query, headers, body.
struct FuzzRequest(String, String, Vec<(String, String)>, Vec<u8>);

fn event_seeds() -> Vec<Value> {
    MIXED
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("eventType").is_some() || v.get("notificationType").is_some())
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Parses a body of event lines the way ingest does, to the end.
fn parse_events(body: &[u8]) {
    if let Ok(input) = open_events(std::io::Cursor::new(body.to_vec())) {
        for line in EventReader::new(input) {
            if line.is_err() {
                break;
            }
        }
    }
}

fn generate(i: u64, rng: &mut Rng, operations: &[Operation], events: &[Value]) -> Input {
    match i % 5 {
        0 => {
            let op = rng.pick(operations);
            let path = (op.path)(&label(rng));
            let body = if op.method == "POST" {
                mutated(&op.body, rng)
            } else {
                Vec::new()
            };
            let headers = signed_headers(op.method, &path, "", &body);
            Input {
                target: "operation bodies",
                request: Some(FuzzRequest(op.method.to_owned(), path, headers, body)),
            }
        }
        1 | 4 => {
            let seed = rng.pick(events);
            let mut line = mutated(seed, rng);
            if rng.below(3) == 0 {
                let sns = json!({"Type": "Notification", "Message": String::from_utf8_lossy(&line)});
                line = serde_json::to_vec(&sns).unwrap_or_default();
            }
            // Envelopes inside envelopes (EventBridge in `detail`, SNS in
            // `Message`), a few deep or thousands: one is unwrapped, the
            // rest is a rejected line, never a recursion on the caller's depth.
            if rng.below(8) == 0 {
                let depth = if rng.below(10) == 0 {
                    1 + rng.below(4000)
                } else {
                    1 + rng.below(130)
                };
                for _ in 0..depth {
                    let mut wrapped = br#"{"source":"aws.ses","detail-type":"x","detail":"#.to_vec();
                    if rng.below(4) == 0 {
                        wrapped = br#"{"Type":"Notification","detail":"#.to_vec();
                    }
                    wrapped.extend_from_slice(&line);
                    wrapped.push(b'}');
                    line = wrapped;
                }
            }
            // A value sized to be quoted back in a reason.
            if rng.below(16) == 0 {
                let big = "q".repeat(1 + rng.below(64 << 10));
                let at = rng.below(line.len().max(1));
                if line.get(at) == Some(&b'"') {
                    line.splice(at + 1..at + 1, big.into_bytes());
                }
            }
            let mut body = line;
            body.push(b'\n');
            if rng.below(2) == 0 {
                body.extend(mutated(rng.pick(events), rng));
            }
            if rng.below(3) == 0 {
                body = gzip(&body);
                if rng.below(2) == 0 {
                    mutate_bytes(&mut body, rng);
                }
            }
            parse_events(&body);
            // Through the ingest endpoint now and then (each commits, synced).
            let request = (i % 500 == 1).then(|| {
                let path = "/_ses-export/v1/events".to_owned();
                let headers = signed_headers("POST", &path, "", &body);
                FuzzRequest("POST".to_owned(), path, headers, body)
            });
            Input {
                target: "event lines",
                request,
            }
        }
        2 => {
            let op = rng.pick(operations);
            let path = (op.path)("0f8e2a64-6b5e-4c1e-9f62-2b0e1a7c4d11");
            let body = if op.method == "POST" {
                serde_json::to_vec(&op.body).unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut headers = signed_headers(op.method, &path, "", &body);
            let mut query = String::new();
            match rng.below(5) {
                0 => {
                    // Move the signature into a (mangled) pre-signed query.
                    let auth = headers.pop().map(|(_, v)| v).unwrap_or_default();
                    let mut q = format!(
                        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2F20261201%2Fus-east-1%2Fses%2Faws4_request&X-Amz-Date=20261201T000000Z&X-Amz-Expires={}&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
                        rng.next() % 1_000_000,
                        &auth[auth.len().saturating_sub(64)..]
                    )
                    .into_bytes();
                    mutate_bytes(&mut q, rng);
                    query = String::from_utf8_lossy(&q).replace([' ', '#'], "");
                }
                1 => headers.push((
                    "x-amz-content-sha256".to_owned(),
                    rng.pick(&["UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "00", "zz"])
                        .to_string(),
                )),
                _ => {
                    let k = rng.below(headers.len());
                    let mut value = headers[k].1.clone().into_bytes();
                    mutate_bytes(&mut value, rng);
                    headers[k].1 = String::from_utf8_lossy(&value).replace(['\r', '\n', '\0'], "");
                }
            }
            let path = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            Input {
                target: "SigV4 headers",
                request: Some(FuzzRequest(op.method.to_owned(), path, headers, body)),
            }
        }
        _ => {
            let mut tail = format!(
                "000000000000/{}.csv?X-Amz-Expires={}&X-Amz-Signature={:064x}",
                label(rng),
                rng.next() % 4_000_000_000,
                rng.next()
            )
            .into_bytes();
            mutate_bytes(&mut tail, rng);
            let tail = String::from_utf8_lossy(&tail).replace([' ', '#'], "");
            Input {
                target: "download paths",
                request: Some(FuzzRequest(
                    "GET".to_owned(),
                    format!("/_ses-export/v1/exports/{tail}"),
                    Vec::new(),
                    Vec::new(),
                )),
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    inputs: AtomicU64,
    requests: AtomicU64,
    panics: AtomicU64,
    server_errors: AtomicU64,
    by_status: std::sync::Mutex<BTreeMap<u16, u64>>,
    by_target: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

async fn fuzz_lane(router: axum::Router, lane: u64, lanes: u64, inputs: u64, seed: u64, tally: Arc<Tally>) {
    let operations = operations();
    let events = event_seeds();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (lane + 1));
    let mut i = lane;
    while i < inputs {
        let input = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate(i, &mut rng, &operations, &events)
        }));
        let input = match input {
            Ok(input) => input,
            Err(_) => {
                tally.panics.fetch_add(1, Ordering::Relaxed);
                eprintln!("fuzz: panic in a parser at input {i} (seed {seed})");
                i += lanes;
                continue;
            }
        };
        *tally.by_target.lock().expect("tally").entry(input.target).or_default() += 1;
        tally.inputs.fetch_add(1, Ordering::Relaxed);
        if let Some(FuzzRequest(method, path, headers, body)) = input.request {
            let mut builder = Request::builder().method(method.as_str()).uri(&path);
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            let Ok(request) = builder.body(Body::from(body.clone())) else {
                // Not even an HTTP request (a header value hyper would refuse).
                i += lanes;
                continue;
            };
            tally.requests.fetch_add(1, Ordering::Relaxed);
            let answer = std::panic::AssertUnwindSafe(router.clone().oneshot(request))
                .catch_unwind()
                .await;
            match answer {
                Err(_) => {
                    tally.panics.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "fuzz: panic serving {method} {path} (input {i}, seed {seed}): {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    *tally.by_status.lock().expect("tally").entry(status).or_default() += 1;
                    if status >= 500 || !response.headers().contains_key("x-amzn-RequestId") {
                        tally.server_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "fuzz: {status} for {method} {path} (input {i}, seed {seed}): {:?}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
                Ok(Err(infallible)) => match infallible {},
            }
        }
        i += lanes;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz() {
    let inputs: u64 = std::env::var("SES_EXPORT_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("SES_EXPORT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().expect("temp");
    let config = Config::parse_from([
        "ses-export-server",
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
        "--rate-limits",
        "off",
        "--workers",
        "0",
    ]);
    let state = ses_export_server::build_state(&config).await.expect("state");
    let router = app(state);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let lanes = 2;
    let handles: Vec<_> = (0..lanes)
        .map(|lane| tokio::spawn(fuzz_lane(router.clone(), lane, lanes, inputs, seed, Arc::clone(&tally))))
        .collect();
    for handle in handles {
        handle.await.expect("a lane");
    }
    let elapsed = started.elapsed();
    println!(
        "fuzz: {} inputs ({} HTTP requests) in {:.1} s, seed {seed}: {} panics, {} answers >= 500 or without a request id",
        tally.inputs.load(Ordering::Relaxed),
        tally.requests.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        tally.panics.load(Ordering::Relaxed),
        tally.server_errors.load(Ordering::Relaxed),
    );
    println!("fuzz: inputs by target {:?}", tally.by_target.lock().expect("tally"));
    println!("fuzz: answers by status {:?}", tally.by_status.lock().expect("tally"));
    assert_eq!(tally.panics.load(Ordering::Relaxed), 0, "panics");
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0, "answers of 500 or more");
    assert_eq!(tally.inputs.load(Ordering::Relaxed), inputs);
}
