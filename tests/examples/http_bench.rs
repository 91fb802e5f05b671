//! The HTTP workloads `cargo xtask bench` measures: `GetExportJob` with
//! signatures on against the real server, beside a bare axum handler in
//! this process answering the same bytes, under the same signed load; and
//! the time from `CreateExportJob` to `COMPLETED` for a 10,000-row export.
//!
//! `http_bench DATA_DIR SECONDS CONCURRENCY` prints one JSON object.

use std::time::{Duration, Instant, SystemTime};

use ses_export_tests::{DEV, Server, http_client, sign};

const T0: i64 = 1_704_067_200;

/// Runs `concurrency` loops of signed GETs (spread over `urls`) for `seconds`; returns
/// requests per second and the 50th and 99th percentile latencies in ms.
async fn load(urls: Vec<String>, seconds: u64, concurrency: usize) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let url = urls[i % urls.len()].clone();
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        tasks.push(tokio::spawn(async move {
            let client = http_client();
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let headers = sign("GET", &url, &host, b"", DEV, SystemTime::now());
                let mut request = client.get(&url).header("content-type", "application/json");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let started = Instant::now();
                let response = request.send().await.expect("send");
                let ok = response.status().is_success();
                let _ = response.bytes().await;
                assert!(ok, "a failed request under load");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    serde_json::json!({
        "requests": all.len(),
        "rps": all.len() as f64 / seconds as f64,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    })
}

fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `cluster PG_URL SECONDS CONCURRENCY`: GetExportJob on one server, then
/// round-robin across three, all on one PostgreSQL (and moto for S3).
async fn cluster(args: &[String]) {
    let url = &args[1];
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let Ok(_moto) = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    else {
        println!("{}", serde_json::json!({"skipped": "moto_server is not installed"}));
        return;
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    while http_client().get(&endpoint).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http_client()
        .put(format!("{endpoint}/managed"))
        .send()
        .await
        .expect("bucket");
    let args = [
        "--database-url",
        url,
        "--s3-endpoint-url",
        &endpoint,
        "--managed-bucket",
        "managed",
        "--signing-secret",
        "bench",
        "--rate-limits",
        "off",
        "--workers",
        "1",
    ];
    let env = [
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-east-1"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let first = Server::start_with_env(dirs[0].path(), &args, &env).await;
    let created = first
        .client()
        .create_export_job()
        .export_data_source(
            aws_sdk_sesv2::types::ExportDataSource::builder()
                .message_insights_data_source(
                    aws_sdk_sesv2::types::MessageInsightsDataSource::builder()
                        .start_date(aws_sdk_sesv2::primitives::DateTime::from_secs(T0))
                        .end_date(aws_sdk_sesv2::primitives::DateTime::from_secs(T0 + 86_400))
                        .max_results(10)
                        .build()
                        .expect("source"),
                )
                .build(),
        )
        .export_destination(
            aws_sdk_sesv2::types::ExportDestination::builder()
                .data_format(aws_sdk_sesv2::types::DataFormat::Csv)
                .build()
                .expect("destination"),
        )
        .send()
        .await
        .expect("create");
    let id = created.job_id().expect("id").to_owned();
    let one = load(
        vec![format!("{}/v2/email/export-jobs/{id}", first.url)],
        seconds,
        concurrency,
    )
    .await;
    let second = Server::start_with_env(dirs[1].path(), &args, &env).await;
    let third = Server::start_with_env(dirs[2].path(), &args, &env).await;
    let urls = [&first, &second, &third]
        .iter()
        .map(|s| format!("{}/v2/email/export-jobs/{id}", s.url))
        .collect();
    let three = load(urls, seconds, concurrency).await;
    println!(
        "{}",
        serde_json::json!({"one_server": one, "three_servers": three, "seconds": seconds, "concurrency": concurrency})
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("cluster") {
        return cluster(&args).await;
    }
    let data_dir = std::path::PathBuf::from(&args[0]);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);

    let server = Server::start_in(&data_dir, &["--rate-limits", "off", "--workers", "1"]).await;
    let client = server.client();

    // A 10,000-row export over the whole store: create to COMPLETED.
    let source = aws_sdk_sesv2::types::MessageInsightsDataSource::builder()
        .start_date(aws_sdk_sesv2::primitives::DateTime::from_secs(T0))
        .end_date(aws_sdk_sesv2::primitives::DateTime::from_secs(T0 + 31 * 86_400))
        .max_results(10_000)
        .build()
        .expect("source");
    let started = Instant::now();
    let created = client
        .create_export_job()
        .export_data_source(
            aws_sdk_sesv2::types::ExportDataSource::builder()
                .message_insights_data_source(source)
                .build(),
        )
        .export_destination(
            aws_sdk_sesv2::types::ExportDestination::builder()
                .data_format(aws_sdk_sesv2::types::DataFormat::Csv)
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let export_seconds = started.elapsed().as_secs_f64();
    assert_eq!(job.job_status().map(|s| s.as_str()), Some("COMPLETED"));
    let stats = job.statistics().expect("statistics");

    let ours = load(
        vec![format!("{}/v2/email/export-jobs/{id}", server.url)],
        seconds,
        concurrency,
    )
    .await;

    // The baseline: a bare axum handler answering the same body.
    let body = serde_json::to_vec(&serde_json::json!({"JobId": id, "JobStatus": "COMPLETED"})).expect("json");
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
    let bare = load(
        vec![format!("http://{addr}/v2/email/export-jobs/{id}")],
        seconds,
        concurrency,
    )
    .await;

    let pid = server.pid();
    let result = serde_json::json!({
        "export_seconds": export_seconds,
        "export_rows": stats.exported_records_count(),
        "export_processed": stats.processed_records_count(),
        "get_export_job": ours,
        "bare_axum": bare,
        "server_peak_rss_bytes": pid.map_or(0, peak_rss_bytes),
        "concurrency": concurrency,
        "seconds": seconds,
    });
    println!("{result}");
    server.kill().await;
}
