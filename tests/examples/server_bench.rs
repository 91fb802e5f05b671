//! The server as users meet it, for `cargo xtask bench`: the release
//! `ses-export-server` driven over HTTP. Prints one JSON object.
//!
//! - `server_bench run DATA_FILE DATA_DIR [DATABASE_URL]`: starts a server
//!   on DATA_DIR (PostgreSQL when a URL is given), ingests DATA_FILE in
//!   signed bodies of at most 32 MiB, four in flight; waits until the
//!   compactor has settled the days (they are in the past, and a day
//!   settles once quiet for 10 s here, so during the ingest too); runs each
//!   export (create, poll, download) three times, best counts, in the
//!   process that ingested, then once more on the server started again on
//!   the same data (for its memory alone); then loads `GetExportJob` with
//!   `wrk` (one request signed once: a signature stays valid for 15
//!   minutes).
//!   The server runs at the default log level (one access-log line per
//!   request, into `DATA_DIR/server.log`), as users run it.
//!   Memory is the server's resident set: idle, the peak during ingest and
//!   what stays after it, and the peak during exports, in the ingesting
//!   process and in a fresh one (peaks are reset between phases through
//!   `/proc/PID/clear_refs`).
//! - `server_bench bare`: the anchor for the API row, a bare axum handler
//!   answering the same path with a fixed body, under the same `wrk` load.
//!
//! `WRK_SECONDS` and `WRK_CONNECTIONS` set the load (10 s, 64 connections),
//! `INGEST_IN_FLIGHT` the ingest bodies in flight (4);
//! a DATA_FILE of `-` skips ingest, for profiling a data dir already full.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{
    DataFormat, DeliveryEventType, ExportDataSource, ExportDestination, ExportMetric, MessageInsightsDataSource,
    MessageInsightsFilters, Metric, MetricAggregation, MetricDimensionName, MetricNamespace, MetricsDataSource,
};
use ses_export_tests::{DEV, S3Server, Server, download, http_client, sign};

/// 2024-01-01T00:00:00Z, where the generated messages start.
const T0: i64 = 1_704_067_200;
const DAY: i64 = 86_400;
const MAX_BODY: usize = 32 << 20;
const EXPORT_RUNS: usize = 3;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") as f64 / 1024.0
}

fn peak_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") as f64 / 1024.0
}

/// Resets the process's peak resident set to its current one.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The file in bodies of whole lines, each at most [`MAX_BODY`] bytes.
fn bodies(path: &str) -> impl Iterator<Item = Vec<u8>> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("data file"));
    let mut carry: Vec<u8> = Vec::new();
    std::iter::from_fn(move || {
        let mut body = std::mem::take(&mut carry);
        loop {
            let mut line = Vec::new();
            let n = reader.read_until(b'\n', &mut line).expect("read");
            if n == 0 {
                return (!body.is_empty()).then_some(body);
            }
            if body.len() + line.len() > MAX_BODY && !body.is_empty() {
                carry = line;
                return Some(body);
            }
            body.extend_from_slice(&line);
        }
    })
}

async fn ingest(server: &Server, path: &str) -> serde_json::Value {
    let url = format!("{}/_ses-export/v1/events", server.url);
    let host = server.address();
    let in_flight = env_or("INGEST_IN_FLIGHT", 4) as usize;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(in_flight);
    let path = path.to_owned();
    let reader = std::thread::spawn(move || {
        for body in bodies(&path) {
            if tx.blocking_send(body).is_err() {
                break;
            }
        }
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (rx, url, host) = (Arc::clone(&rx), url.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let mut totals = [0u64; 3];
            loop {
                let Some(body) = rx.lock().await.recv().await else {
                    break;
                };
                // One account holds at most half the ingest slots: a body
                // refused for that waits a moment and goes again, as an
                // SDK's retry of a throttled call does.
                let report = loop {
                    let headers = sign("POST", &url, &host, &body, DEV, SystemTime::now());
                    let mut request = http_client()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                    let response = request.send().await.expect("send");
                    let status = response.status();
                    let report: serde_json::Value =
                        serde_json::from_slice(&response.bytes().await.expect("report")).expect("json report");
                    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    assert!(status.is_success(), "ingest answered {status}: {report}");
                    break report;
                };
                for (slot, key) in ["accepted", "duplicates", "rejected"].iter().enumerate() {
                    totals[slot] += report[key].as_u64().unwrap_or(0);
                }
            }
            totals
        }));
    }
    let mut totals = [0u64; 3];
    for task in tasks {
        let t = task.await.expect("ingest task");
        for i in 0..3 {
            totals[i] += t[i];
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    reader.join().expect("reader");
    serde_json::json!({
        "accepted": totals[0], "duplicates": totals[1], "rejected": totals[2],
        "seconds": seconds, "events_per_second": totals[0] as f64 / seconds,
    })
}

fn insights(filters: Option<MessageInsightsFilters>, exclude: Option<MessageInsightsFilters>) -> ExportDataSource {
    let mut source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(T0))
        .end_date(DateTime::from_secs(T0 + 31 * DAY))
        .max_results(10_000);
    if let Some(f) = filters {
        source = source.include(f);
    }
    if let Some(f) = exclude {
        source = source.exclude(f);
    }
    ExportDataSource::builder()
        .message_insights_data_source(source.build().expect("source"))
        .build()
}

fn metrics() -> ExportDataSource {
    let mut source = MetricsDataSource::builder()
        .dimensions(MetricDimensionName::Isp, vec!["*".to_owned()])
        .namespace(MetricNamespace::Vdm)
        .start_date(DateTime::from_secs(T0))
        .end_date(DateTime::from_secs(T0 + 30 * DAY));
    for name in [
        Metric::Send,
        Metric::Delivery,
        Metric::PermanentBounce,
        Metric::TransientBounce,
        Metric::Complaint,
        Metric::Open,
        Metric::Click,
        Metric::DeliveryOpen,
        Metric::DeliveryClick,
        Metric::DeliveryComplaint,
    ] {
        source = source.metrics(
            ExportMetric::builder()
                .name(name)
                .aggregation(MetricAggregation::Volume)
                .build(),
        );
    }
    ExportDataSource::builder()
        .metrics_data_source(source.build().expect("metrics source"))
        .build()
}

/// One export, create to downloaded: the wall time, the job's own time
/// (completed − created, as the service reports it) and its statistics.
async fn export(server: &Server, source: ExportDataSource) -> serde_json::Value {
    let client = server.client();
    let started = Instant::now();
    let created = client
        .create_export_job()
        .export_data_source(source)
        .export_destination(
            ExportDestination::builder()
                .data_format(DataFormat::Csv)
                .build()
                .expect("destination"),
        )
        .send()
        .await
        .expect("create");
    let id = created.job_id().expect("id").to_owned();
    let job = loop {
        let job = client.get_export_job().job_id(&id).send().await.expect("get");
        if job
            .job_status()
            .is_some_and(|s| s.as_str() != "CREATED" && s.as_str() != "PROCESSING")
        {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(job.job_status().map(|s| s.as_str()), Some("COMPLETED"), "{job:?}");
    let url = job
        .export_destination()
        .and_then(|d| d.s3_url())
        .expect("a download URL")
        .to_owned();
    let (status, file) = download(&url).await;
    assert_eq!(status, 200, "download");
    let seconds = started.elapsed().as_secs_f64();
    let job_seconds = match (job.created_timestamp(), job.completed_timestamp()) {
        (Some(a), Some(b)) => (b.to_millis().unwrap_or(0) - a.to_millis().unwrap_or(0)) as f64 / 1000.0,
        _ => f64::NAN,
    };
    let stats = job.statistics();
    serde_json::json!({
        "id": id,
        "seconds": seconds,
        "job_seconds": job_seconds,
        "bytes": file.len(),
        "processed": stats.and_then(|s| s.processed_records_count()),
        "exported": stats.and_then(|s| s.exported_records_count()),
    })
}

/// The best of [`EXPORT_RUNS`], by wall time.
async fn best_export(server: &Server, source: impl Fn() -> ExportDataSource) -> serde_json::Value {
    let mut best: Option<serde_json::Value> = None;
    for _ in 0..EXPORT_RUNS {
        let run = export(server, source()).await;
        if best
            .as_ref()
            .is_none_or(|b| run["seconds"].as_f64() < b["seconds"].as_f64())
        {
            best = Some(run);
        }
    }
    best.expect("a run")
}

/// Waits until the compactor has nothing left to settle: the segment files
/// under `dir` (SQLite's) unchanged for 15 s, longer than a day's quiet
/// (10 s) and a compactor round (1 s), or none appearing (a backend that
/// keeps none). Their count and bytes.
async fn wait_until_settled(dir: &std::path::Path) -> (u64, u64) {
    fn files(dir: &std::path::Path) -> (u64, u64) {
        let mut found = (0, 0);
        // SQLite's segments, or (PostgreSQL) the cache a compaction puts
        // each segment it uploads into.
        let mut stack = vec![dir.join("events.segments"), dir.join("segment-cache")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet")
                    && let Ok(meta) = entry.metadata()
                {
                    found = (found.0 + 1, found.1 + meta.len());
                }
            }
        }
        found
    }
    let mut last = files(dir);
    let mut unchanged = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = files(dir);
        if now != last {
            last = now;
            unchanged = Instant::now();
        } else if unchanged.elapsed() > Duration::from_secs(15) {
            return now;
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `wrk` on `url` with `headers`; requests per second and latency
/// percentiles in ms, from its `--latency` report.
fn wrk(url: &str, headers: &[(String, String)]) -> serde_json::Value {
    let seconds = env_or("WRK_SECONDS", 10);
    let connections = env_or("WRK_CONNECTIONS", 64);
    let mut command = std::process::Command::new("wrk");
    command.args([
        "--latency",
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
    ]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let output = command.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let number = |line: &str| -> Option<f64> {
        let value = line.split_whitespace().nth(1)?;
        let (digits, unit) = value.split_at(value.find(|c: char| c.is_alphabetic()).unwrap_or(value.len()));
        let n: f64 = digits.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "s" => n * 1000.0,
            _ => n,
        })
    };
    let find = |prefix: &str| text.lines().find(|l| l.trim_start().starts_with(prefix)).map(str::trim);
    let non_2xx = find("Non-2xx").and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok());
    serde_json::json!({
        "rps": find("Requests/sec:").and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()),
        "p50_ms": find("50%").and_then(number),
        "p99_ms": find("99%").and_then(number),
        "non_2xx": non_2xx.unwrap_or(0),
        "seconds": seconds,
        "connections": connections,
    })
}

async fn run(args: &[String]) -> serde_json::Value {
    let data = &args[0];
    let dir = std::path::PathBuf::from(&args[1]);
    let mut server_args: Vec<String> = [
        "--rate-limits",
        "off",
        "--workers",
        "1",
        // Quiet for 10 s: at the bench's pace, a day's opens and clicks
        // (days of event time after its sends) arrive within that.
        "--settle-quiet-seconds",
        "10",
        "--compact-every-seconds",
        "1",
        // One account holds at most half the ingest slots: eight, so the
        // bench's one account sends its four bodies side by side.
        "--max-ingest-inflight",
        "8",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut env = Vec::new();
    // PostgreSQL servers keep managed exports where every server can read
    // them: an S3-compatible server (moto's), started here.
    let _moto = match args.get(2) {
        Some(url) => {
            let moto = S3Server::start()
                .await
                .expect("moto_server (pip install 'moto[server]')");
            moto.bucket("managed").await;
            let endpoint = moto.endpoint.clone();
            server_args.extend(
                [
                    "--database-url",
                    url,
                    "--s3-endpoint-url",
                    &endpoint,
                    "--managed-bucket",
                    "managed",
                    "--signing-secret",
                    "bench-signing-secret-of-at-least-32-bytes",
                ]
                .map(str::to_owned),
            );
            env.extend([
                ("AWS_ACCESS_KEY_ID", "x"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("AWS_REGION", "us-east-1"),
            ]);
            Some(moto)
        }
        None => None,
    };
    let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    // At the default log level, as users run it: an access-log line per
    // request, into a file.
    let log = dir.join("server.log");
    let mut server = Server::start_logged(&dir, &server_args, &env, Some(&log)).await;
    let pid = server.pid().expect("pid");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(pid);

    reset_peak(pid);
    // `-` skips ingest: the data dir already holds the events (for profiling).
    let ingested = if data == "-" {
        serde_json::json!({"skipped": true})
    } else {
        ingest(&server, data).await
    };
    let ingest_peak = peak_mib(pid);
    let after_ingest = rss_mib(pid);

    let settle_started = Instant::now();
    let settled = wait_until_settled(&dir).await;
    let settle_seconds = settle_started.elapsed().as_secs_f64();
    let after_settling = rss_mib(pid);

    let gmail_delivered = || {
        insights(
            Some(
                MessageInsightsFilters::builder()
                    .isp("Gmail")
                    .last_delivery_event(DeliveryEventType::Delivery)
                    .build(),
            ),
            None,
        )
    };
    let from_news = || {
        insights(
            Some(
                MessageInsightsFilters::builder()
                    .from_email_address("*@news.example.com")
                    .build(),
            ),
            Some(MessageInsightsFilters::builder().subject("Your weekly*").build()),
        )
    };
    reset_peak(pid);
    let all = best_export(&server, || insights(None, None)).await;
    let gmail = best_export(&server, gmail_delivered).await;
    let news = best_export(&server, from_news).await;
    let metric = best_export(&server, metrics).await;
    let export_peak = peak_mib(pid);

    // The same exports on the server started again on the same data: their
    // peak alone, without what the allocator kept from the ingest.
    server.kill().await;
    server = Server::start_logged(&dir, &server_args, &env, Some(&log)).await;
    let pid = server.pid().expect("pid");
    tokio::time::sleep(Duration::from_secs(1)).await;
    reset_peak(pid);
    export(&server, insights(None, None)).await;
    export(&server, gmail_delivered()).await;
    export(&server, from_news()).await;
    export(&server, metrics()).await;
    let export_peak_restarted = peak_mib(pid);

    let url = format!(
        "{}/v2/email/export-jobs/{}",
        server.url,
        all["id"].as_str().unwrap_or("")
    );
    let mut headers = sign("GET", &url, &server.address(), b"", DEV, SystemTime::now());
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let get = wrk(&url, &headers);
    let result = serde_json::json!({
        "ingest": ingested,
        "exports": {"insights_all": all, "insights_gmail_delivered": gmail, "insights_from_news": news, "metrics": metric},
        "get_export_job": get,
        "settle": {"seconds": settle_seconds, "segments": settled.0, "bytes": settled.1},
        "memory_mib": {
            "idle": idle, "ingest_peak": ingest_peak, "after_ingest": after_ingest,
            "after_settling": after_settling, "export_peak": export_peak,
            "export_peak_restarted": export_peak_restarted, "after": rss_mib(pid),
        },
    });
    server.kill().await;
    result
}

async fn bare() -> serde_json::Value {
    let body = serde_json::to_vec(&serde_json::json!({"JobId": "0", "JobStatus": "COMPLETED"})).expect("json");
    let app = axum::Router::new().route(
        "/v2/email/export-jobs/{id}",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_mib(std::process::id());
    let url = format!("http://{addr}/v2/email/export-jobs/0");
    let load = tokio::task::spawn_blocking(move || wrk(&url, &[])).await.expect("wrk");
    serde_json::json!({"get": load, "idle_mib": idle})
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]).await,
        Some("bare") => bare().await,
        other => panic!("usage: server_bench run DATA_FILE DATA_DIR [DATABASE_URL] | bare (got {other:?})"),
    };
    println!("{result}");
}
