//! The soak test `cargo xtask soak` runs (docs/security.md, "Proof"): the release
//! server under 64 clients for a minute, every operation and ingest mixed
//! with hostile requests (unsigned bodies, bad signatures, malformed JSON,
//! forged download URLs), under AWS's rate limits. It counts the answers by
//! status, and compares the server's memory and open files over the ten
//! seconds after a warm-up with the last ten seconds of load.
//!
//! `soak SECONDS CLIENTS` prints one JSON object; it exits non-zero when an
//! answer was not a designed one (a 5xx, a dropped connection) or memory or
//! open files grew by more than 10 % after the warm-up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ses_export_tests::{DEV, Server, generated_lines, http_client, sign};

/// A status, or 0 when the connection failed (never expected here).
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

async fn send(server: &Server, method: &str, path: &str, body: &[u8], creds: Option<(&str, &str)>) -> Answer {
    let url = format!("{}{path}", server.url);
    let mut request = http_client()
        .request(method.parse().expect("method"), &url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(creds) = creds {
        for (name, value) in sign(
            method,
            &url,
            &server.address(),
            body,
            creds,
            std::time::SystemTime::now(),
        ) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Answer { status, body }
        }
        Err(_) => Answer {
            status: 0,
            body: Vec::new(),
        },
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// One client's turn: a request picked by `n`, and its status (0 when the
/// connection failed).
async fn turn(server: &Server, n: u64, bodies: &[String], jobs: &Mutex<Vec<String>>) -> (&'static str, u16) {
    let pick = n % 20;
    let job = jobs
        .lock()
        .expect("jobs")
        .last()
        .cloned()
        .unwrap_or_else(|| "none".to_owned());
    match pick {
        0..=3 => {
            let body = &bodies[(n / 20) as usize % bodies.len()];
            (
                "Ingest",
                send(server, "POST", "/_ses-export/v1/events", body.as_bytes(), Some(DEV))
                    .await
                    .status,
            )
        }
        4 => {
            let body = br#"{"ExportDataSource":{"MessageInsightsDataSource":{"StartDate":1704067200,"EndDate":1704499200,"MaxResults":500}},"ExportDestination":{"DataFormat":"CSV"}}"#;
            let response = send(server, "POST", "/v2/email/export-jobs", body, Some(DEV)).await;
            if response.status == 200
                && let Some(id) = response.json()["JobId"].as_str()
            {
                jobs.lock().expect("jobs").push(id.to_owned());
            }
            ("CreateExportJob", response.status)
        }
        5..=7 => {
            let response = send(server, "GET", &format!("/v2/email/export-jobs/{job}"), b"", Some(DEV)).await;
            if response.status == 200
                && let Some(url) = response.json()["ExportDestination"]["S3Url"].as_str()
            {
                let status = http_client().get(url).send().await.map_or(0, |r| r.status().as_u16());
                return ("Download", status);
            }
            ("GetExportJob", response.status)
        }
        8 => (
            "ListExportJobs",
            send(server, "POST", "/v2/email/list-export-jobs", b"{}", Some(DEV))
                .await
                .status,
        ),
        9 => (
            "CancelExportJob",
            send(
                server,
                "PUT",
                &format!("/v2/email/export-jobs/{job}/cancel"),
                b"",
                Some(DEV),
            )
            .await
            .status,
        ),
        10 => (
            "GetMessageInsights",
            send(
                server,
                "GET",
                "/v2/email/insights/0000018cc25b1a00-seed/",
                b"",
                Some(DEV),
            )
            .await
            .status,
        ),
        11..=12 => {
            let body = br#"{"Queries":[{"Id":"q","Namespace":"VDM","Metric":"SEND","StartDate":1704067200,"EndDate":1704499200}]}"#;
            (
                "BatchGetMetricData",
                send(server, "POST", "/v2/email/metrics/batch", body, Some(DEV))
                    .await
                    .status,
            )
        }
        13 => (
            "Unsigned",
            send(server, "POST", "/_ses-export/v1/events", &[b'x'; 16 << 10], None)
                .await
                .status,
        ),
        14 => (
            "WrongSecret",
            send(
                server,
                "POST",
                "/v2/email/list-export-jobs",
                b"{}",
                Some(("test", "wrong")),
            )
            .await
            .status,
        ),
        15 => (
            "Malformed",
            send(server, "POST", "/v2/email/export-jobs", b"{\"Export", Some(DEV))
                .await
                .status,
        ),
        16 => (
            "ForgedDownload",
            send(
                server,
                "GET",
                "/_ses-export/v1/exports/000000000000/x.csv?X-Amz-Expires=9999999999&X-Amz-Signature=00",
                b"",
                None,
            )
            .await
            .status,
        ),
        17 => (
            "UnknownRoute",
            send(server, "DELETE", "/v2/email/export-jobs", b"", None).await.status,
        ),
        _ => ("Health", send(server, "GET", "/healthz", b"", None).await.status),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(60);
    let clients: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let server = Arc::new(Server::start(&[]).await);
    let pid = server.pid().expect("pid");
    // A fixed pool of bodies: after the warm-up they are duplicates, so the
    // store stops growing and memory should settle.
    let bodies: Arc<Vec<String>> = Arc::new((0..40).map(|seed| generated_lines(seed, 50)).collect());
    let jobs = Arc::new(Mutex::new(Vec::new()));
    let counts: Arc<Mutex<BTreeMap<(&'static str, u16), u64>>> = Arc::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let warm_up = Duration::from_secs((seconds / 4).max(5));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (server, bodies, jobs, counts) = (
            Arc::clone(&server),
            Arc::clone(&bodies),
            Arc::clone(&jobs),
            Arc::clone(&counts),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = client * 7919;
            while Instant::now() < until {
                let (operation, status) = turn(&server, n, &bodies, &jobs).await;
                *counts.lock().expect("counts").entry((operation, status)).or_default() += 1;
                n += 1;
            }
        }));
    }
    // Memory and open files every second while the load runs: RSS moves by
    // tens of MiB from one second to the next under this load, so the two
    // windows compared are ten seconds each, not single samples.
    let samples = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() + Duration::from_secs(1) < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push((started.elapsed().as_secs(), rss_bytes(pid), open_files(pid)));
        }
        samples
    });
    for task in tasks {
        task.await.expect("a client");
    }
    let samples = samples.await.expect("samples");
    let window = |from: u64, to: u64| -> (u64, u64) {
        let inside: Vec<_> = samples.iter().filter(|(t, _, _)| (from..to).contains(t)).collect();
        let n = inside.len().max(1) as u64;
        (
            inside.iter().map(|(_, rss, _)| rss).sum::<u64>() / n,
            inside.iter().map(|(_, _, files)| files).sum::<u64>() / n,
        )
    };
    let warm = warm_up.as_secs();
    let (rss_warm, files_warm) = window(warm, warm + 10);
    let (rss_end, files_end) = window(seconds.saturating_sub(11), seconds);
    let rss_every_5s_mib: Vec<u64> = samples.iter().step_by(5).map(|(_, rss, _)| rss >> 20).collect();
    let counts = counts.lock().expect("counts").clone();
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut by_operation: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    for ((operation, status), n) in &counts {
        *by_status.entry(*status).or_default() += n;
        *by_operation
            .entry((*operation).to_owned())
            .or_default()
            .entry(*status)
            .or_default() += n;
    }
    let undesigned: u64 = by_status
        .iter()
        .filter(|(s, _)| **s == 0 || **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let grew = |end: u64, warm: u64| end as f64 > warm as f64 * 1.10;
    let memory_grew = grew(rss_end, rss_warm);
    let files_grew = grew(files_end, files_warm);
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "clients": clients,
            "requests": by_status.values().sum::<u64>(),
            "by_status": by_status,
            "by_operation": by_operation,
            "undesigned_answers": undesigned,
            "rss_every_5s_mib": rss_every_5s_mib,
            "warm_up_seconds": warm,
            "rss_after_warm_up_bytes": rss_warm,
            "rss_at_end_bytes": rss_end,
            "open_files_after_warm_up": files_warm,
            "open_files_at_end": files_end,
            "note": "rss and open files: means over the 10 s after the warm-up and the last 10 s of load",
        })
    );
    if undesigned > 0 || memory_grew || files_grew {
        eprintln!("soak: undesigned answers {undesigned}, memory grew {memory_grew}, open files grew {files_grew}");
        std::process::exit(1);
    }
}
