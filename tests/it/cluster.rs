//! Three servers on one PostgreSQL and one S3-compatible server: jobs
//! created through all three, one server SIGKILLed while its jobs are
//! PROCESSING, and every job still ends COMPLETED with a correct file; the
//! account limits hold across the three; ingest through one server is
//! visible to exports on another.

use crate::expectations;

use std::time::Duration;

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{DataFormat, ExportDataSource, ExportDestination, JobStatus, MessageInsightsDataSource};
use ses_export_core::generate::{EventGenerator, GeneratorConfig};
use ses_export_tests::{S3Server, Server, download, wait_for_end};

const T0: i64 = 1_704_067_200;

fn database_url() -> Option<String> {
    match std::env::var("SES_EXPORT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "SES_EXPORT_TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipping: set SES_EXPORT_TEST_DATABASE_URL to run the cluster test");
            None
        }
    }
}

fn source(salt: i32) -> ExportDataSource {
    let insights = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(T0))
        .end_date(DateTime::from_secs(T0 + 5 * 86_400))
        // Every job exports all records; the salt only makes requests differ.
        .max_results(10_000 - salt)
        .build()
        .expect("source");
    ExportDataSource::builder()
        .message_insights_data_source(insights)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_jobs_limits_and_data() {
    let Some(base) = database_url() else { return };
    // One S3, with the bucket the servers keep exports in.
    let Some(s3) = S3Server::start().await else { return };
    s3.bucket("managed").await;
    let endpoint = s3.endpoint.clone();

    // One database schema for this run.
    let schema = format!(
        "cluster_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let args = [
        "--database-url",
        &url,
        "--s3-endpoint-url",
        &endpoint,
        "--managed-bucket",
        "managed",
        "--signing-secret",
        "cluster-signing-secret-of-at-least-32-bytes",
        "--workers",
        "1",
        "--lease-seconds",
        "3",
        "--min-job-duration-ms",
        "8000",
        "--max-active-jobs",
        "3",
    ];
    let env = [
        ("AWS_ACCESS_KEY_ID", "moto"),
        ("AWS_SECRET_ACCESS_KEY", "moto"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(Server::start_with_env(dir.path(), &args, &env).await);
    }
    let clients: Vec<_> = servers.iter().map(Server::client).collect();

    // Ingest through server 1; export through the others.
    let lines: String = EventGenerator::new(GeneratorConfig::new(
        31,
        150,
        ses_export_core::clock::Millis(T0 * 1000),
        3,
    ))
    .map(|l| l + "\n")
    .collect();
    let report = servers[1].ingest(lines.as_bytes()).await;
    assert_eq!(report["accepted"], lines.lines().count() as u64);
    let expected = expectations::rows(&lines);

    // The rate limit is the cluster's: one CreateExportJob a second for the
    // account, whichever server it reaches.
    let create = |client: &aws_sdk_sesv2::Client, n: i32| {
        client
            .create_export_job()
            .export_data_source(source(n))
            .export_destination(
                ExportDestination::builder()
                    .data_format(DataFormat::Csv)
                    .build()
                    .expect("dest"),
            )
            .send()
    };
    let racing = futures_util::future::join_all(clients.iter().enumerate().map(|(i, c)| create(c, i as i32))).await;
    let won = racing.iter().filter(|r| r.is_ok()).count();
    let throttled = racing
        .iter()
        .filter(|r| r.as_ref().err().and_then(|e| e.code()) == Some("TooManyRequestsException"))
        .count();
    assert_eq!(
        (won, throttled),
        (1, 2),
        "one create a second across three servers: {racing:?}"
    );
    let mut ids: Vec<String> = racing
        .iter()
        .flatten()
        .map(|r| r.job_id().expect("id").to_owned())
        .collect();

    // Three active jobs at most, across the cluster (each runs at least 8 s):
    // two more fit, through other servers; the fourth is refused.
    for (n, client) in clients.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let created = create(client, 10 + n as i32).await.expect("under the limit");
        ids.push(created.job_id().expect("id").to_owned());
    }
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let fourth = create(&clients[0], 99).await.expect_err("a fourth active job");
    assert_eq!(fourth.code(), Some("LimitExceededException"), "{fourth:?}");

    // Kill server 0 while all three jobs are PROCESSING: each server has one
    // worker, so server 0 holds one of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut processing = 0;
        for id in &ids {
            // One GetExportJob a second: the account's rate, cluster-wide.
            tokio::time::sleep(Duration::from_millis(1050)).await;
            let job = clients[2].get_export_job().job_id(id).send().await;
            if job.is_ok_and(|j| j.job_status() == Some(&JobStatus::Processing)) {
                processing += 1;
            }
        }
        if processing == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the three jobs never ran together"
        );
    }
    let killed = servers.remove(0);
    killed.kill().await;
    let survivors: Vec<_> = servers.iter().map(Server::client).collect();

    let check = |ids: Vec<String>| {
        let servers = &servers;
        let survivors = &survivors;
        let expected = &expected;
        async move {
            for (i, id) in ids.iter().enumerate() {
                let client = &survivors[i % survivors.len()];
                let job = tokio::time::timeout(Duration::from_secs(90), wait_for_end(client, id))
                    .await
                    .expect("the job ends");
                assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{id}: {job:?}");
                // The URL works on the other server too: the key is shared.
                let url = job.export_destination().and_then(|d| d.s3_url()).expect("url");
                let other = &servers[(i + 1) % servers.len()].url;
                let here = url.split("/_ses-export/").next().expect("base");
                let (status, body) = download(&url.replacen(here, other, 1)).await;
                assert_eq!(status, 200);
                let csv = String::from_utf8(body).expect("UTF-8");
                assert_eq!(csv.lines().count(), expected.len() + 1, "{id}");
                for (got, want) in csv.lines().skip(1).zip(expected.iter()) {
                    assert_eq!(got, want.csv());
                }
            }
        }
    };
    check(ids.clone()).await;

    // The two survivors take more jobs and finish them.
    let mut more = Vec::new();
    for n in 0..3 {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let created = create(&survivors[n % 2], 20 + n as i32).await.expect("create");
        more.push(created.job_id().expect("id").to_owned());
    }
    check(more.clone()).await;
    ids.extend(more);

    // The managed bucket holds every account's exports: no S3Url may name
    // it, not even the development credential's, which may name any other.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let refused = survivors[0]
        .create_export_job()
        .export_data_source(source(30))
        .export_destination(
            ExportDestination::builder()
                .data_format(DataFormat::Csv)
                .s3_url("s3://managed/000000000000/stolen.csv")
                .build()
                .expect("dest"),
        )
        .send()
        .await
        .expect_err("the managed bucket is never a destination");
    assert_eq!(refused.code(), Some("BadRequestException"), "{refused:?}");
    assert!(refused.message().unwrap_or_default().contains("managed"), "{refused:?}");
    println!(
        "cluster: {} jobs through 3 servers, server 0 killed mid-run, all COMPLETED",
        ids.len()
    );
}

/// A PostgreSQL configuration that would keep exports in a local folder, or
/// sign with a key of its own, is refused at start, saying what to fix.
#[test]
fn a_shared_database_needs_shared_storage_and_a_shared_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let start = |extra: &[&str]| {
        std::process::Command::new(ses_export_tests::server_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--database-url", "postgres://postgres@127.0.0.1:5432/test"])
            .args(extra)
            .output()
            .expect("run the server")
    };
    let local = start(&[]);
    assert!(!local.status.success());
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("--managed-bucket"),
        "{local:?}"
    );
    let no_secret = start(&["--managed-bucket", "b", "--s3-endpoint-url", "http://127.0.0.1:9"]);
    assert!(!no_secret.status.success());
    assert!(
        String::from_utf8_lossy(&no_secret.stderr).contains("--signing-secret"),
        "{no_secret:?}"
    );
}
