//! `ses-export ingest s3://bucket/prefix/` (SPEC §10) against `moto_server`:
//! a thousand objects as Firehose writes them, one gzip, one empty, one
//! broken (reported, the rest kept), one outside the prefix (not read); the
//! run interrupted and resumed with `--resume`, and no event counted twice.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use ses_export_tests::{S3Server, Server, cli_command, generated_lines, http_client};

const BUCKET: &str = "ses-events";
const PREFIX: &str = "firehose/2024/01/01/";
const OBJECTS: usize = 1000;

async fn put(s3: &S3Server, key: &str, body: Vec<u8>) {
    let put = http_client()
        .put(format!("{}/{BUCKET}/{key}", s3.endpoint))
        .body(body)
        .send()
        .await
        .expect("put object");
    assert!(put.status().is_success(), "{put:?}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

async fn accepted_and_duplicates(server: &Server) -> (u64, u64) {
    let (accepted, duplicates, _) = server.event_counts().await;
    (accepted, duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_reads_every_object_reports_the_broken_one_and_resumes() {
    let Some(s3) = S3Server::start().await else { return };
    s3.bucket(BUCKET).await;
    let server = Server::start(&[]).await;

    let lines = generated_lines(21, 1200);
    let all: Vec<&str> = lines.lines().collect();
    let per = all.len().div_ceil(OBJECTS);
    let mut events = 0;
    for i in 0..OBJECTS {
        let chunk = &all[i * all.len() / OBJECTS..(i + 1) * all.len() / OBJECTS];
        let mut body = chunk.join("\n").into_bytes();
        body.push(b'\n');
        events += chunk.len();
        let key = format!("{PREFIX}{:02}/ses-events-1-2024-01-01-00-00-00-{i:04}", i % 24);
        let body = if i == 0 { gzip(&body) } else { body };
        put(&s3, &key, body).await;
    }
    put(&s3, &format!("{PREFIX}23/empty"), Vec::new()).await;
    // A gzip header and then nothing a decoder can read.
    put(
        &s3,
        &format!("{PREFIX}23/broken"),
        b"\x1f\x8b\x08\x00garbage that is not deflate".to_vec(),
    )
    .await;
    put(&s3, "elsewhere/not-this-prefix", gzip(all[0].as_bytes())).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let resume = dir.path().join("resume.txt");
    let args = [
        "ingest",
        &format!("s3://{BUCKET}/{PREFIX}"),
        "--s3-endpoint-url",
        &s3.endpoint,
        "--resume",
        resume.to_str().expect("path"),
        "--chunk-bytes",
        "2048",
    ];

    // The first run is stopped partway, as a backfill may be.
    let mut first = cli_command(&server.url)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ses-export");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read_to_string(&resume).map_or(0, |t| t.lines().count());
        if done >= 100 || first.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no object finished within two minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = first.kill();
    let _ = first.wait();
    let finished_before = std::fs::read_to_string(&resume).expect("resume file").lines().count();
    assert!(finished_before >= 100, "{finished_before}");

    let second = cli_command(&server.url).args(args).output().expect("run ses-export");
    assert_eq!(
        second.status.code(),
        Some(1),
        "a broken object makes the run fail after the rest: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&second.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&second.stdout)));
    assert_eq!(summary["objects_skipped"], finished_before as u64, "{summary}");
    assert_eq!(
        summary["objects"].as_u64().expect("objects") + finished_before as u64,
        OBJECTS as u64 + 1,
        "every object but the broken one, the empty one included: {summary}"
    );
    let failed = summary["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["object"], format!("s3://{BUCKET}/{PREFIX}23/broken"));
    assert_eq!(summary["rejected"], 0, "{summary}");

    // Every event once: what the first run sent of an object it did not
    // finish came again as duplicates, never as new events; the object
    // outside the prefix was not read.
    let (accepted, duplicates) = accepted_and_duplicates(&server).await;
    assert_eq!(accepted, events as u64);
    assert!(duplicates <= (4 * per) as u64 * 2, "{duplicates}");

    // A third run finds nothing left but the broken object.
    let third = cli_command(&server.url).args(args).output().expect("run ses-export");
    let summary: serde_json::Value = serde_json::from_slice(&third.stdout).expect("JSON");
    assert_eq!(summary["objects"], 0, "{summary}");
    assert_eq!(summary["objects_skipped"], OBJECTS as u64 + 1);
    assert_eq!(accepted_and_duplicates(&server).await.0, events as u64);
}

/// The highest resident memory the process has had, in MiB.
fn peak_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Runs `ses-export` with `args` to its end (some lines rejected), reading
/// its peak memory as it goes; the summary it prints and the peak.
fn run_watched(server: &Server, args: &[&str]) -> (serde_json::Value, u64) {
    let child = cli_command(&server.url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ses-export");
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(now) = peak_mib(pid) {
            peak = peak.max(now);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let output = child.wait_with_output().expect("ses-export ends");
    let peak = watcher.join().expect("watcher");
    assert_eq!(
        output.status.code(),
        Some(4),
        "rejected lines exit 4: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    (summary, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_built_to_multiply_is_skipped_without_being_held() {
    let Some(s3) = S3Server::start().await else { return };
    s3.bucket(BUCKET).await;
    let server = Server::start(&[]).await;

    // Two good records around one line that gzip turns from a few hundred
    // KiB into 256 MiB without a line end.
    let lines = generated_lines(5, 2);
    let good: Vec<&str> = lines.lines().take(2).collect();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(format!("{}\n", good[0]).as_bytes())
        .expect("compress");
    let block = vec![b'x'; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&block).expect("compress");
    }
    encoder
        .write_all(format!("\n{}\n", good[1]).as_bytes())
        .expect("compress");
    let bomb = encoder.finish().expect("compress");
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    put(&s3, "bombs/one.gz", bomb.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("one.gz");
    std::fs::write(&file, &bomb).expect("write");

    for args in [
        vec!["ingest", "s3://ses-events/bombs/", "--s3-endpoint-url", &s3.endpoint],
        vec!["ingest", file.to_str().expect("path")],
    ] {
        let (summary, peak) = run_watched(&server, &args);
        assert_eq!(summary["rejected"], 1, "{summary}");
        let listed = &summary["errors"][0];
        assert_eq!(listed["line"], 2, "{summary}");
        assert_eq!(listed["reason"], "line is longer than 1048576 bytes", "{summary}");
        assert_eq!(
            summary["accepted"].as_u64().unwrap_or(0) + summary["duplicates"].as_u64().unwrap_or(0),
            2,
            "both good records, once or again: {summary}"
        );
        assert!(peak < 96, "{args:?}: the CLI held {peak} MiB for a 256 MiB line");
    }
}

/// An S3 endpoint that says "more" with a continuation token it gave
/// before would make a listing run forever: it is an error instead, said
/// before anything is ingested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_repeats_its_token_is_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let pages = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = std::sync::Arc::clone(&pages);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let served = std::sync::Arc::clone(&served);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>\
                    <NextContinuationToken>the-same-token</NextContinuationToken>\
                    <Contents><Key>p/object</Key><Size>10</Size></Contents></ListBucketResult>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking({
            let url = server.url.clone();
            move || {
                cli_command(&url)
                    .args(["ingest", "s3://bucket/p/", "--s3-endpoint-url", &endpoint])
                    .output()
                    .expect("run the CLI")
            }
        }),
    )
    .await
    .expect("the listing ended")
    .expect("join");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("continuation token"), "{stderr}");
    assert!(pages.load(std::sync::atomic::Ordering::Relaxed) <= 3);
    assert_eq!(server.event_counts().await, (0, 0, 0));
}
