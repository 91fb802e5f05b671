//! Safe on a network (docs/security.md), against the real binary: authentication
//! before the body, connection limits, shutdown with a deadline, bounded
//! cost per input, buckets per account, error shapes, files and secrets.
//! Each test is one attack and what the server must answer.

use std::time::{Duration, Instant};

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{
    BatchGetMetricDataQuery, DataFormat, ExportDataSource, ExportDestination, JobStatus, MessageInsightsDataSource,
    Metric,
};
use ses_export_tests::{DEV, Server, create_export, server_binary, sign_unsigned_payload, wait_for_end};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INGEST: &str = "/_ses-export/v1/events";

/// Reads from `stream` until the end of a response head (or EOF, or
/// `within`); returns what came.
async fn read_head(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn head(method: &str, path: &str, headers: &[(String, String)], length: usize) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text.push_str(&format!("content-length: {length}\r\n\r\n"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_body_is_refused_before_it_is_read() {
    let server = Server::start(&[]).await;
    let mut stream = TcpStream::connect(server.address()).await.expect("connect");
    let announced = 60 << 20;
    let headers = vec![("host".to_owned(), server.address())];
    stream
        .write_all(head("POST", INGEST, &headers, announced).as_bytes())
        .await
        .expect("head");
    // Not a byte of the 60 MiB is sent: the answer comes from the head alone.
    let answer = read_head(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("MissingAuthenticationTokenException"), "{answer}");
    // And the server says it will not read the rest: the connection closes.
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_hashes_must_bind_the_body() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let path = "/v2/email/list-export-jobs";
    let url = format!("{}{path}", server.url);
    let send = |headers: Vec<(String, String)>, body: &'static [u8]| {
        let mut request = ses_export_tests::http_client().post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    // UNSIGNED-PAYLOAD belongs to S3: refused, whatever the body.
    let headers = sign_unsigned_payload("POST", &url, &server.address(), DEV);
    let response = send(headers, b"{}").await.expect("send");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(response.headers()["x-amzn-ErrorType"], "InvalidSignatureException");

    // A claimed hash that is not the body's.
    let mut headers = server.signature_headers("POST", path, b"{}");
    let claimed = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    headers.push(("x-amz-content-sha256".to_owned(), claimed.to_owned()));
    let response = send(headers, b"{\"PageSize\": 1}").await.expect("send");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(response.headers()["x-amzn-ErrorType"], "InvalidSignatureException");

    // An Authorization header and a pre-signed query together.
    let headers = server.signature_headers("POST", path, b"{}");
    let mut request = ses_export_tests::http_client()
        .post(format!("{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00"))
        .body("{}");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("send");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers()["x-amzn-ErrorType"], "BadRequestException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let server = Server::start(&["--header-timeout", "1", "--body-timeout", "1"]).await;

    // Half a header block: the connection is closed, nothing is served.
    let mut stream = TcpStream::connect(server.address()).await.expect("connect");
    stream
        .write_all(b"POST /v2/email/list-export-jobs HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("half a head");
    let started = Instant::now();
    let answer = read_head(&mut stream, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");

    // A signed body that stops arriving: refused once it goes silent.
    let body = b"{\"PageSize\": 10}";
    let headers = server.signature_headers("POST", "/v2/email/list-export-jobs", body);
    let mut stream = TcpStream::connect(server.address()).await.expect("connect");
    let mut request = head("POST", "/v2/email/list-export-jobs", &headers, body.len()).into_bytes();
    request.extend_from_slice(&body[..4]);
    stream.write_all(&request).await.expect("part of a body");
    let started = Instant::now();
    let answer = read_head(&mut stream, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held {:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("x-amzn-errortype: BadRequestException"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_ingest_bodies_are_bounded() {
    let server = Server::start(&["--max-connections", "2", "--max-ingest-inflight", "1"]).await;

    // One ingest whose body is still arriving holds the only slot.
    let body = b"{}\n".repeat(100);
    let headers = server.signature_headers("POST", INGEST, &body);
    let mut slow = TcpStream::connect(server.address()).await.expect("connect");
    let mut request = head("POST", INGEST, &headers, body.len()).into_bytes();
    request.extend_from_slice(&body[..10]);
    slow.write_all(&request).await.expect("part of a body");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = server.signed("POST", INGEST, b"{}\n", DEV).await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(
        second.header("x-amzn-ErrorType").as_deref(),
        Some("TooManyRequestsException")
    );
    assert!(second.header("x-amzn-RequestId").is_some());

    // The 429 closed its connection (its body was not read). With the slow
    // one and an idle one open, a third takes the idle one's place: the
    // idle one is closed, the third served.
    let mut idle = TcpStream::connect(server.address()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut third = TcpStream::connect(server.address()).await.expect("connect");
    let healthz = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", server.address());
    third.write_all(healthz.as_bytes()).await.expect("request");
    let served = read_head(&mut third, Duration::from_secs(5)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the idle connection was not closed"
    );

    // With both slots busy with requests (two bodies still arriving), a
    // newcomer waits until one ends.
    let body = b"{\"PageSize\": 10}";
    let headers = server.signature_headers("POST", "/v2/email/list-export-jobs", body);
    let mut busy = TcpStream::connect(server.address()).await.expect("connect");
    let mut request = head("POST", "/v2/email/list-export-jobs", &headers, body.len()).into_bytes();
    request.extend_from_slice(&body[..4]);
    busy.write_all(&request).await.expect("part of a body");
    drop(third);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut fourth = TcpStream::connect(server.address()).await.expect("connect");
    fourth.write_all(healthz.as_bytes()).await.expect("request");
    let waiting = read_head(&mut fourth, Duration::from_millis(1500)).await;
    assert!(waiting.is_empty(), "served beyond --max-connections: {waiting}");
    drop(slow);
    let served = read_head(&mut fourth, Duration::from_secs(5)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_server_whatever_clients_do() {
    let server = Server::start(&["--shutdown-timeout", "2"]).await;
    let events = ses_export_tests::generated_lines(3, 20);
    server.ingest(events.as_bytes()).await;

    // A client stalls mid-upload and never finishes.
    let body = b"{}\n".repeat(100);
    let headers = server.signature_headers("POST", INGEST, &body);
    let mut stalled = TcpStream::connect(server.address()).await.expect("connect");
    let mut request = head("POST", INGEST, &headers, body.len()).into_bytes();
    request.extend_from_slice(&body[..10]);
    stalled.write_all(&request).await.expect("part of a body");

    let data_dir = server.data_dir.clone();
    let pid = server.pid().expect("pid").to_string();
    let started = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill").success());
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    // One self-contained database file: no write-ahead log left beside it.
    for name in ["events.sqlite-wal", "jobs.sqlite-wal"] {
        assert!(!data_dir.join(name).exists(), "{name} is left after a clean exit");
    }
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_request_id_and_every_error_a_shape() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    for (method, path, status, error_type) in [
        (
            "DELETE",
            "/v2/email/export-jobs",
            405,
            Some("MethodNotAllowedException"),
        ),
        ("GET", "/v2/email/metrics/batch", 405, Some("MethodNotAllowedException")),
        ("POST", "/healthz", 405, Some("MethodNotAllowedException")),
        ("GET", "/v2/email/nothing-here", 404, Some("UnknownOperationException")),
        ("GET", "/_ses-export/console/nothing.js", 404, Some("NotFoundException")),
        ("GET", "/_ses-export/console/", 200, None),
        ("GET", "/healthz", 200, None),
        ("GET", "/metrics", 200, None),
        (
            "GET",
            "/_ses-export/v1/exports/000000000000/x.csv?X-Amz-Expires=%ZZ",
            403,
            Some("AccessDeniedException"),
        ),
    ] {
        let response = server.unsigned(method, path, b"").await;
        assert_eq!(response.status, status, "{method} {path}: {}", response.text());
        assert!(response.header("x-amzn-RequestId").is_some(), "{method} {path}");
        if let Some(error_type) = error_type {
            assert_eq!(
                response.header("x-amzn-ErrorType").as_deref(),
                Some(error_type),
                "{method} {path}"
            );
            assert!(
                response.json()["message"].is_string(),
                "{method} {path}: {}",
                response.text()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_cannot_multiply_into_the_store() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let recipients: Vec<String> = (0..3000).map(|i| format!("\"r{i}@example.com\"")).collect();
    let many = format!(
        r#"{{"eventType":"Send","mail":{{"timestamp":"2026-11-01T12:00:00.000Z","messageId":"m-many","source":"a@example.com","destination":[{}]}},"send":{{}}}}"#,
        recipients.join(",")
    );
    let subject = "s".repeat(50 * 1024);
    let wordy = format!(
        r#"{{"eventType":"Send","mail":{{"timestamp":"2026-11-01T12:00:00.000Z","messageId":"m-wordy","source":"a@example.com","destination":["b@example.com"],"commonHeaders":{{"subject":"{subject}"}}}},"send":{{}}}}"#
    );
    let fine = r#"{"eventType":"Send","mail":{"timestamp":"2026-11-01T12:00:00.000Z","messageId":"m-fine","source":"a@example.com","destination":["b@example.com"]},"send":{}}"#;
    let report = server.ingest(format!("{many}\n{wordy}\n{fine}\n").as_bytes()).await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["rejected"], 2, "{report}");
    let reasons = report["errors"].to_string();
    assert!(reasons.contains("3000 recipients"), "{reasons}");
    assert!(reasons.contains("at most 10240"), "{reasons}");
    let size = std::fs::metadata(server.data_dir.join("events.sqlite")).map_or(0, |m| m.len());
    assert!(size < 8 << 20, "the store grew to {size} bytes");

    // Three years at most per metrics query.
    let query = |end: i64| {
        BatchGetMetricDataQuery::builder()
            .id("q")
            .namespace(aws_sdk_sesv2::types::MetricNamespace::Vdm)
            .metric(Metric::Send)
            .start_date(DateTime::from_secs(-62_135_596_800))
            .end_date(DateTime::from_secs(end))
            .build()
            .expect("query")
    };
    let refused = server
        .client()
        .batch_get_metric_data()
        .queries(query(253_402_300_799))
        .send()
        .await
        .expect_err("9,999 years");
    assert_eq!(refused.code(), Some("BadRequestException"));
    assert!(
        refused.message().unwrap_or_default().contains("1096 days"),
        "{refused:?}"
    );
    let three_years = -62_135_596_800 + 1095 * 86_400;
    let answered = server
        .client()
        .batch_get_metric_data()
        .queries(query(three_years))
        .send()
        .await
        .expect("1,096 days");
    assert_eq!(answered.results()[0].timestamps().len(), 1096);

    // An export's cost follows the data, not the interval: year 1 to 9999.
    let metrics = aws_sdk_sesv2::types::MetricsDataSource::builder()
        .dimensions(aws_sdk_sesv2::types::MetricDimensionName::Isp, vec!["*".to_owned()])
        .namespace(aws_sdk_sesv2::types::MetricNamespace::Vdm)
        .metrics(
            aws_sdk_sesv2::types::ExportMetric::builder()
                .name(Metric::Send)
                .aggregation(aws_sdk_sesv2::types::MetricAggregation::Volume)
                .build(),
        )
        .start_date(DateTime::from_secs(-62_135_596_800))
        .end_date(DateTime::from_secs(253_402_300_799))
        .build()
        .expect("metrics source");
    let job_id = create_export(
        &server.client(),
        ExportDataSource::builder().metrics_data_source(metrics).build(),
        DataFormat::Csv,
    )
    .await;
    let started = Instant::now();
    let job = wait_for_end(&server.client(), &job_id).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_still_reports_what_was_kept() {
    use std::io::Write;
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = ses_export_tests::generated_lines(5, 3);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(lines.as_bytes()).expect("gzip");
    let mut body = gzip.finish().expect("gzip");
    // Cut the trailer and a little more: the stream breaks near its end.
    body.truncate(body.len() - 12);
    let response = server.signed("POST", INGEST, &body, DEV).await;
    assert_eq!(response.status, 400, "{}", response.text());
    let answer = response.json();
    assert!(answer["message"].is_string(), "{answer}");
    assert!(answer["accepted"].as_u64().is_some_and(|n| n > 0), "{answer}");
}

fn credentials_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("credentials.toml");
    std::fs::write(
        &path,
        "[[credentials]]\naccess_key_id = \"AKIAONE\"\nsecret_access_key = \"secret-one\"\naccount_id = \
         \"111111111111\"\ns3_buckets = [\"bucket-one\"]\n\n[[credentials]]\naccess_key_id = \"AKIATWO\"\n\
         secret_access_key = \"secret-two\"\naccount_id = \"222222222222\"\ns3_buckets = [\"team-*\"]\n",
    )
    .expect("credentials");
    path
}

fn s3_export(url: &str) -> (ExportDataSource, ExportDestination) {
    let source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(1_700_000_000))
        .end_date(DateTime::from_secs(1_800_000_000))
        .build()
        .expect("source");
    (
        ExportDataSource::builder().message_insights_data_source(source).build(),
        ExportDestination::builder()
            .data_format(DataFormat::Csv)
            .s3_url(url)
            .build()
            .expect("destination"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_belong_to_accounts() {
    let dir = tempfile::tempdir().expect("temp");
    let credentials = credentials_file(dir.path());
    let data = dir.path().join("data");
    let server = Server::start_in(
        &data,
        &[
            "--rate-limits",
            "off",
            "--credentials",
            credentials.to_str().expect("utf-8"),
        ],
    )
    .await;
    let create = |key: &str, secret: &str, url: &str| {
        let client = server.client_as(key, secret);
        let (source, destination) = s3_export(url);
        async move {
            client
                .create_export_job()
                .export_data_source(source)
                .export_destination(destination)
                .send()
                .await
        }
    };
    let one = create("AKIAONE", "secret-one", "s3://bucket-one/daily/report.csv").await;
    let job = one
        .expect("account one writes its bucket")
        .job_id()
        .expect("id")
        .to_owned();
    let refused = create("AKIATWO", "secret-two", "s3://bucket-one/daily/report.csv")
        .await
        .expect_err("account two may not name bucket-one");
    assert_eq!(refused.code(), Some("BadRequestException"));
    assert!(
        refused.message().unwrap_or_default().contains("bucket-one"),
        "{refused:?}"
    );
    create("AKIATWO", "secret-two", "s3://team-red/x.csv")
        .await
        .expect("a prefix match");
    create("AKIAONE", "secret-one", "s3://team-red/x.csv")
        .await
        .expect_err("not listed for account one");
    let done = wait_for_end(&server.client_as("AKIAONE", "secret-one"), &job).await;
    assert_eq!(done.job_status(), Some(&JobStatus::Completed));
    assert!(data.join("buckets/bucket-one/daily/report.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_speaks_in_the_users_terms() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    // A file stands where the key's folder would go: the write fails deep
    // in the object store, whose errors name the server's paths.
    std::fs::create_dir_all(server.data_dir.join("buckets/blocked")).expect("bucket");
    std::fs::write(server.data_dir.join("buckets/blocked/daily"), b"").expect("a file in the way");
    let (source, destination) = s3_export("s3://blocked/daily/out.csv");
    let client = server.client();
    let created = client
        .create_export_job()
        .export_data_source(source)
        .export_destination(destination)
        .send()
        .await
        .expect("create");
    let job = wait_for_end(&client, created.job_id().expect("id")).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Failed));
    let message = job.failure_info().and_then(|f| f.error_message()).unwrap_or_default();
    assert!(message.contains("s3://blocked/daily/out.csv"), "{message}");
    let data_dir = server.data_dir.to_string_lossy().into_owned();
    assert!(!message.contains(&data_dir) && !message.contains("/tmp"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&["--rate-limits", "off"]).await;
    server.ingest(ses_export_tests::generated_lines(1, 5).as_bytes()).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o700);
    let mut seen = 0;
    for entry in std::fs::read_dir(&server.data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} entries");
}

/// Runs the server binary until it exits (it should refuse to start).
async fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(server_binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output(),
    )
    .await
    .expect("the server refuses at once")
    .expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_guarded_at_start() {
    let (code, stderr) = refused_start(&["--listen", "0.0.0.0:0"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--allow-dev-credential"), "{stderr}");

    let (code, stderr) = refused_start(&["--listen", "127.0.0.1:0", "--signing-secret", "short"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at least 32"), "{stderr}");

    // A long enough secret from a file, and the dev credential on purpose.
    let dir = tempfile::tempdir().expect("temp");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", "k".repeat(40))).expect("secret");
    let mut child = tokio::process::Command::new(server_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--allow-dev-credential",
            "--signing-secret-file",
        ])
        .arg(&secret)
        .env("SES_EXPORT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("listening")
        .expect("read")
        .expect("a line");
    let port = line.rsplit(':').next().expect("port").to_owned();
    let health = ses_export_tests::http_client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
}

/// A run whose lease expires mid-run (its server is frozen) while a second
/// server reruns the job: the job ends `COMPLETED` with its file, exactly
/// one final object exists, and no staging object is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ends_once_under_its_lease() {
    let dir = tempfile::tempdir().expect("temp");
    let args = [
        "--rate-limits",
        "off",
        "--lease-seconds",
        "1",
        "--min-job-duration-ms",
        "2500",
        "--workers",
        "1",
    ];
    let first = Server::start_in(dir.path(), &args).await;
    first.ingest(ses_export_tests::generated_lines(2, 30).as_bytes()).await;
    let client = first.client();
    let (source, _) = s3_export("s3://unused/x.csv");
    let job_id = create_export(&client, source, DataFormat::Csv).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = client.get_export_job().job_id(&job_id).send().await.expect("get");
        if job.job_status() == Some(&JobStatus::Processing) {
            break;
        }
        assert!(Instant::now() < deadline, "never PROCESSING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Freeze the first server mid-run; its lease runs out.
    let pid = first.pid().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("stop")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = Server::start_in(dir.path(), &args).await;
    let done = wait_for_end(&second.client(), &job_id).await;
    assert_eq!(done.job_status(), Some(&JobStatus::Completed));
    // The first run wakes up, finds its lease gone, and cleans up after itself.
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("cont")
            .success()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = second
        .client()
        .get_export_job()
        .job_id(&job_id)
        .send()
        .await
        .expect("get");
    assert_eq!(again.job_status(), Some(&JobStatus::Completed));
    let url = again
        .export_destination()
        .and_then(|d| d.s3_url())
        .expect("a download URL");
    let (status, body) = ses_export_tests::download(url).await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    // Export keys are ACCOUNT/REGION/JOB.
    let exports = dir.path().join("exports/000000000000/us-east-1");
    let names: Vec<String> = std::fs::read_dir(&exports)
        .expect("exports")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{job_id}.csv")], "one final object, nothing staged");
    drop(first);
}

/// The request id is made first and carried in a span: the log lines
/// written while handling a request name the id its answer carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_request_id() {
    let dir = tempfile::tempdir().expect("temp");
    let mut child = tokio::process::Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .env("SES_EXPORT_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines.next_line().await.expect("read").expect("a line");
    let url = line.strip_prefix("listening on ").expect("listening").to_owned();
    let answer = ses_export_tests::http_client()
        .post(format!("{url}/v2/email/list-export-jobs"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status().as_u16(), 403);
    let id = answer.headers()["x-amzn-RequestId"].to_str().expect("id").to_owned();
    let pid = child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let log = String::from_utf8_lossy(&output.stderr);
    let mine: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
    assert!(!mine.is_empty(), "no log line names request {id}:\n{log}");
    assert!(
        mine.iter().any(|l| l.contains("answered") && l.contains("403")),
        "{mine:?}"
    );
}
