//! Hostile input, round 2 (docs/security.md): each test is one attack from
//! the second review, against the real binary, and what the server must do
//! instead of crashing, growing or starving its other clients. Memory is
//! the process's own (VmRSS, VmHWM), as an operator would see it.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use ses_export_tests::{DEV, Server, generated_lines, http_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INGEST: &str = "/_ses-export/v1/events";
const FIREHOSE: &str = "/_ses-export/v1/firehose";
const INTAKE_A: &str = "intake-key-of-account-a-0123456789";
const INTAKE_B: &str = "intake-key-of-account-b-0123456789";
const CREDENTIALS: &str = r#"
[[credentials]]
access_key_id = "AKIAACCOUNTA"
secret_access_key = "secret-of-account-a"
account_id = "111111111111"
intake_keys = ["intake-key-of-account-a-0123456789"]

[[credentials]]
access_key_id = "AKIAACCOUNTB"
secret_access_key = "secret-of-account-b"
account_id = "222222222222"
intake_keys = ["intake-key-of-account-b-0123456789"]
"#;

/// A line of `/proc/PID/status` in KiB, as MiB.
fn status_mib(server: &Server, field: &str) -> f64 {
    let pid = server.pid().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The server's peak resident memory so far, in MiB.
fn peak_mib(server: &Server) -> f64 {
    status_mib(server, "VmHWM:")
}

/// The server's resident memory now, in MiB.
fn rss_mib(server: &Server) -> f64 {
    status_mib(server, "VmRSS:")
}

/// `/healthz` answered `times` in a row, each within `within`.
async fn served(server: &Server, times: usize, within: Duration, beside: &str) {
    for _ in 0..times {
        let answered =
            tokio::time::timeout(within, ses_export_tests::download(&format!("{}/healthz", server.url))).await;
        assert!(matches!(answered, Ok((200, _))), "/healthz was not answered {beside}");
    }
}

async fn alive(server: &Server) {
    let (status, _) = ses_export_tests::download(&format!("{}/healthz", server.url)).await;
    assert_eq!(status, 200, "the server no longer answers");
}

/// Posts `body` to the events endpoint with an intake key.
async fn intake(server: &Server, key: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = http_client()
        .post(format!("{}{INGEST}", server.url))
        .header("x-api-key", key)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Row 1: an EventBridge envelope nested deep in `detail` is one rejected
/// line, whichever path brings it; the server lives, and the good line
/// beside it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_envelopes_are_rejected_lines_not_a_crash() {
    let server = Server::with_credentials(CREDENTIALS, &[]).await;
    let good = generated_lines(11, 1);
    for depth in [2, 55, 120, 5000] {
        let mut nested = good.lines().next().expect("a line").to_owned();
        for _ in 0..depth {
            nested = format!(r#"{{"version":"0","source":"aws.ses","detail-type":"Email Sent","detail":{nested}}}"#);
        }
        let body = format!("{nested}\n{good}");
        let (status, report) = intake(&server, INTAKE_A, body.clone().into_bytes()).await;
        assert_eq!(status, 200, "depth {depth}: {report}");
        assert_eq!(report["rejected"], 1, "depth {depth}: {report}");
        assert!(
            report["errors"][0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{report}"
        );
        alive(&server).await;
        // The same through Firehose: one record of many.
        let records: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(l)}))
            .collect();
        let delivery = serde_json::json!({"requestId": "r-nested", "timestamp": 1, "records": records});
        let response = http_client()
            .post(format!("{}{FIREHOSE}", server.url))
            .header("x-amz-firehose-access-key", INTAKE_A)
            .body(delivery.to_string())
            .send()
            .await
            .expect("firehose");
        assert_eq!(
            response.status().as_u16(),
            400,
            "the nested record is refused to Firehose"
        );
        alive(&server).await;
    }
    assert_eq!(server.event_counts().await.0, good.lines().count() as u64);
}

/// Rows 2 and 6: a body of nothing but bad lines, or of bad lines whose
/// reasons would quote them, costs memory bounded by the 1,000-error cap,
/// and the answer stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_lines_cost_bounded_memory_and_answer_small() {
    let server = Server::start(&[]).await;
    let before = peak_mib(&server);
    let body = b"x\n".repeat(6 << 20);
    let response = server.signed("POST", INGEST, &body, DEV).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let report = response.json();
    assert_eq!(report["rejected"], 6 << 20);
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(1000));
    let grown = peak_mib(&server) - before;
    // The body itself is held (12 MiB); 6M errors kept would be ~400 MiB.
    assert!(grown < 100.0, "peak grew {grown:.0} MiB for 6M rejected lines");

    // Reasons that would quote a 20 KiB value each are cut.
    let long = "v".repeat(20 << 10);
    let line = format!(r#"{{"eventType":"{long}","mail":{{}}}}"#);
    let body = format!("{line}\n").repeat(1500);
    let response = server.signed("POST", INGEST, body.as_bytes(), DEV).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.body.len() < 1 << 20,
        "an answer of {} bytes",
        response.body.len()
    );
    let report = response.json();
    assert_eq!(report["rejected"], 1500);
    for error in report["errors"].as_array().expect("errors") {
        let reason = error["reason"].as_str().expect("reason");
        assert!(reason.len() <= 256, "a reason of {} bytes", reason.len());
    }
}

/// Row 3: connections that pipeline requests and never read the answers
/// hold every slot; a newcomer is served all the same (a stalled one gives
/// way), and a stalled writer is closed after --write-timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_do_not_starve_others() {
    let server = Server::start(&["--max-connections", "16", "--write-timeout", "3"]).await;
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {}\r\n\r\n", server.address()).repeat(4000);
    let address: std::net::SocketAddr = server.address().parse().expect("addr");
    // Sends the pipelined requests and reads no answer.
    let stall = |request: String| async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small receive buffer");
        let mut stream = socket.connect(address).await.expect("connect");
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.write_all(request.as_bytes())).await;
        stream
    };

    // Alone (no newcomer needs its place), a stalled reader is closed once
    // its answers have waited the write timeout: read after that, it gives
    // what the kernel held, then ends.
    let mut stream = stall(request.clone()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut sink = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a connection whose answers are not read stays open");

    // Every slot held by stalled readers: newcomers are served all the same.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(tokio::spawn(stall(request.clone())));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    served(&server, 5, Duration::from_secs(20), "beside stalled readers").await;
    drop(stalled);
}

/// Row 4: one account's slow intake bodies take at most its share of the
/// ingest slots; another account ingests beside them. A body that
/// trickles in is cut at --body-deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_ingest_slot() {
    let server = Server::with_credentials(CREDENTIALS, &["--body-deadline", "3", "--body-timeout", "30"]).await;
    let mut slow = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.address()).await.expect("connect");
        let head = format!(
            "POST {INGEST} HTTP/1.1\r\nhost: {}\r\nx-api-key: {INTAKE_A}\r\ncontent-length: 100000\r\n\r\n{{",
            server.address()
        );
        stream.write_all(head.as_bytes()).await.expect("part of a body");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answer = [0u8; 12];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut answer)).await
            && String::from_utf8_lossy(&answer[..n]).contains("429")
        {
            refused += 1;
        }
        slow.push(stream);
    }
    assert!(refused >= 1, "account A took every one of the four slots");
    let (status, report) = intake(&server, INTAKE_B, generated_lines(12, 2).into_bytes()).await;
    assert_eq!(status, 200, "account B starved: {report}");

    // A body that keeps trickling is cut at the deadline, not held forever.
    let mut trickle = TcpStream::connect(server.address()).await.expect("connect");
    let head = format!(
        "POST {INGEST} HTTP/1.1\r\nhost: {}\r\nx-api-key: {INTAKE_B}\r\ncontent-length: 100000\r\n\r\n",
        server.address()
    );
    trickle.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let _ = trickle.write_all(b" ").await;
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), trickle.read(&mut buf)).await
            && n > 0
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    drop(slow);
}

/// Row 5: requests signed in a scope with a huge region, by a known access
/// key with a wrong signature, are refused and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_chosen_scopes_are_not_kept() {
    let server = Server::start(&[]).await;
    let before = rss_mib(&server);
    let region = "r".repeat(200 << 10);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // 2026-12-06T11:20:00.000Z as SigV4 writes it: 20261206T112000Z.
    let iso = ses_export_core::clock::format_iso8601(ses_export_core::clock::Millis(now));
    let stamp = format!("{}Z", iso[..19].replace(['-', ':'], ""));
    let day = stamp[..8].to_owned();
    let client = http_client();
    for _ in 0..1000 {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=test/{day}/{region}/ses/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        );
        let response = client
            .post(format!("{}/v2/email/list-export-jobs", server.url))
            .header("authorization", authorization)
            .header("x-amz-date", &stamp)
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 403);
        let body = response.bytes().await.expect("body");
        assert!(body.len() < 4096, "an answer of {} bytes", body.len());
    }
    let grown = rss_mib(&server) - before;
    // Kept, the regions alone would be 200 MiB.
    assert!(
        grown < 64.0,
        "RSS grew {grown:.0} MiB after 1,000 huge scopes (200 MiB of regions)"
    );
}

/// Row 7: a Firehose delivery is read as a stream: a large one costs a
/// bounded amount of memory, not several times its expanded size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_deliveries_are_streamed() {
    let server = Server::with_credentials(CREDENTIALS, &[]).await;
    let before = peak_mib(&server);
    // 60,000 records of 1 KiB that are not SES events: 80 MiB of JSON
    // that gzip makes small.
    let record = base64::engine::general_purpose::STANDARD.encode(format!("{{\"pad\":\"{}\"}}", "p".repeat(1000)));
    let mut json = String::from(r#"{"requestId":"r-large","timestamp":1,"records":["#);
    for i in 0..60_000 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(r#"{{"data":"{record}"}}"#));
    }
    json.push_str("]}");
    let body = gzip(json.as_bytes());
    let response = http_client()
        .post(format!("{}{FIREHOSE}", server.url))
        .header("x-amz-firehose-access-key", INTAKE_A)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("firehose");
    let status = response.status().as_u16();
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON answer");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["requestId"], "r-large");
    assert!(
        answer["errorMessage"].as_str().is_some_and(|m| m.contains("60000")),
        "{answer}"
    );
    let grown = peak_mib(&server) - before;
    assert!(grown < 60.0, "peak grew {grown:.0} MiB for an 80 MiB delivery");
}

/// Row 8: U+0000 in a stored field is a rejected line, and in an id of a
/// URL a 404, on every backend; the rest of the body is kept.
async fn nul_bytes_are_refused_on(server: &Server) {
    let good = generated_lines(13, 1);
    let line = good.lines().next().expect("a line");
    let record: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let mut in_id = record.clone();
    in_id["mail"]["messageId"] = "id-with-\u{0}-nul".into();
    let mut in_subject = record.clone();
    in_subject["mail"]["commonHeaders"]["subject"] = "subject \u{0}".into();
    let body = format!("{in_id}\n{in_subject}\n{good}");
    let report = server.ingest(body.as_bytes()).await;
    assert_eq!(report["rejected"], 2, "{report}");
    assert_eq!(report["accepted"], good.lines().count(), "{report}");
    assert!(report["errors"].to_string().contains("NUL"), "{report}");
    for path in ["/v2/email/export-jobs/abc%00def", "/v2/email/insights/abc%00def/"] {
        let response = server.signed("GET", path, b"", DEV).await;
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert_eq!(
            response.header("x-amzn-ErrorType").as_deref(),
            Some("NotFoundException")
        );
    }
    let response = server
        .signed("PUT", "/v2/email/export-jobs/abc%00def/cancel", b"", DEV)
        .await;
    assert_eq!(response.status, 404, "{}", response.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_refused_on_sqlite() {
    let server = Server::start(&[]).await;
    nul_bytes_are_refused_on(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_refused_on_postgres() {
    let Some(pg) = ses_export_tests::PgServer::start("hostile", &[]).await else {
        return;
    };
    nul_bytes_are_refused_on(&pg.server).await;
    pg.finish().await;
}

/// Row 10: header blocks that trickle in and never end, re-opened as fast
/// as they are cut, hold every slot; requests that send their head are
/// served all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_do_not_keep_others_waiting() {
    let server = Server::start(&["--max-connections", "32"]).await;
    let address = server.address();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 64 clients for 32 slots, each re-opening as soon as it is cut off.
    let mut attackers = Vec::new();
    for _ in 0..64 {
        let (address, stop) = (address.clone(), std::sync::Arc::clone(&stop));
        attackers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(&address).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Half a head, then a byte of a header value every 200 ms:
                // never silent, never done.
                let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ").await;
                let mut buf = [0u8; 256];
                loop {
                    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                        Ok(_) => break,
                        Err(_) if stream.write_all(b"x").await.is_err() => break,
                        Err(_) => {}
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    served(&server, 10, Duration::from_secs(5), "behind half-sent heads").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
}

/// Row 11: a small gzip body that expands past the ingest limit is refused
/// before any of it is read as lines, and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_of_blank_lines_is_refused() {
    let server = Server::start(&["--max-ingest-bytes", "8388608"]).await;
    let bomb = gzip(&vec![b'\n'; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let response = server.signed("POST", INGEST, &bomb, DEV).await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("larger than the limit"), "{}", response.text());
    assert_eq!(server.event_counts().await, (0, 0, 0));
}

/// Row 15: a client that guesses intake keys is slowed to a few guesses a
/// second; its answers turn 429 before many guesses are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_intake_keys_are_throttled() {
    let server = Server::with_credentials(CREDENTIALS, &[]).await;
    let mut statuses = Vec::new();
    for n in 0..60 {
        let (status, _) = intake(&server, &format!("guess-{n:032}"), b"{}\n".to_vec()).await;
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 403).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!((10..=30).contains(&refused), "{statuses:?}");
    assert!(throttled >= 30, "{statuses:?}");
    // Firehose's header is the same key, throttled alike.
    let response = http_client()
        .post(format!("{}{FIREHOSE}", server.url))
        .header("x-amz-firehose-access-key", "guess")
        .body(r#"{"requestId":"r","timestamp":1,"records":[]}"#)
        .send()
        .await
        .expect("firehose");
    assert_eq!(response.status().as_u16(), 429);
}

/// Row 16: timestamps before SES existed or far ahead of the clock are
/// rejected lines with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_any_real_range_are_rejected() {
    let server = Server::start(&[]).await;
    let good = generated_lines(14, 1);
    let line = good.lines().next().expect("a line");
    let original = serde_json::from_str::<serde_json::Value>(line).expect("JSON")["mail"]["timestamp"]
        .as_str()
        .expect("timestamp")
        .to_owned();
    let mut body = String::new();
    for at in [
        "9999-12-31T00:00:00.000Z",
        "1970-01-01T00:00:00.000Z",
        "2099-01-01T00:00:00.000Z",
    ] {
        body.push_str(&line.replace(&original, at));
        body.push('\n');
    }
    body.push_str(&good);
    let report = server.ingest(body.as_bytes()).await;
    assert_eq!(report["rejected"], 3, "{report}");
    let reasons = report["errors"].to_string();
    assert!(
        reasons.contains("ahead of this server's clock") && reasons.contains("before 2011"),
        "{reasons}"
    );
}

/// A soft open-file limit below what --max-connections needs (a few hundred
/// descriptors is common) is raised at start towards the hard limit, so the
/// accept loop does not run out of descriptors long before its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_follows_max_connections() {
    if std::process::Command::new("prlimit").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "prlimit (util-linux) is needed in CI");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new("prlimit")
        .arg("--nofile=256:8192")
        .arg(ses_export_tests::server_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SES_EXPORT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server under prlimit");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("it starts")
        .expect("read")
        .expect("a line");
    assert!(line.starts_with("listening on"), "{line}");
    let pid = child.id().expect("pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .expect("the soft limit");
    assert!(
        soft >= 1024 + 256,
        "soft open-file limit {soft} for --max-connections 1024"
    );
}
