//! `S3Url` destinations: the default folder per bucket under the data dir,
//! and a real S3-compatible server (`moto_server`, from PyPI's
//! `moto[server]`, started here; `.ci/run` installs it).

mod expectations;

use std::time::Duration;

use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{DataFormat, ExportDataSource, ExportDestination, JobStatus, MessageInsightsDataSource};
use ses_export_core::generate::{EventGenerator, GeneratorConfig};
use ses_export_tests::{Server, s3_get, wait_for_end};

const T0: i64 = 1_704_067_200;

fn generated() -> String {
    let config = GeneratorConfig {
        seed: 77,
        messages: 80,
        start: T0 * 1000,
        days: 2,
        account_id: "000000000000".into(),
    };
    EventGenerator::new(config).map(|l| l + "\n").collect()
}

async fn export_to(server: &Server, s3_url: &str, format: DataFormat) -> String {
    let client = server.client();
    let source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(T0))
        .end_date(DateTime::from_secs(T0 + 3 * 86_400))
        .max_results(10_000)
        .build()
        .expect("source");
    let created = client
        .create_export_job()
        .export_data_source(ExportDataSource::builder().message_insights_data_source(source).build())
        .export_destination(
            ExportDestination::builder()
                .data_format(format)
                .s3_url(s3_url)
                .build()
                .expect("dest"),
        )
        .send()
        .await
        .expect("CreateExportJob");
    let id = created.job_id().expect("id").to_owned();
    let job = wait_for_end(&client, &id).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    // The S3Url comes back as it was sent.
    assert_eq!(job.export_destination().and_then(|d| d.s3_url()), Some(s3_url));
    id
}

fn check_csv(csv: &str, lines: &str) {
    let expected = expectations::rows(lines);
    assert_eq!(csv.lines().count(), expected.len() + 1);
    for (got, want) in csv.lines().skip(1).zip(&expected) {
        assert_eq!(got, want.csv());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_urls_go_to_a_folder_per_bucket_by_default() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = generated();
    server.ingest(lines.as_bytes()).await;
    let id = export_to(&server, "s3://my-exports/daily/", DataFormat::Csv).await;
    let file = server.data_dir.join(format!("buckets/my-exports/daily/{id}.csv"));
    check_csv(&std::fs::read_to_string(&file).expect("the export file"), &lines);
    export_to(&server, "s3://my-exports/fixed/name.json", DataFormat::Json).await;
    let json = std::fs::read_to_string(server.data_dir.join("buckets/my-exports/fixed/name.json")).expect("file");
    assert_eq!(json.lines().count(), expectations::rows(&lines).len());
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_urls_go_to_a_real_s3_compatible_server() {
    let Ok(moto) = which("moto_server") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is missing: pip install 'moto[server]'"
        );
        eprintln!("skipping: moto_server is not installed (pip install 'moto[server]')");
        return;
    };
    let port = free_port();
    let mut s3 = tokio::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http.get(&endpoint).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = http
        .put(format!("{endpoint}/exports-bucket"))
        .send()
        .await
        .expect("create bucket");
    assert!(made.status().is_success(), "{made:?}");

    let dir = tempfile::tempdir().expect("dir");
    let env = [
        ("AWS_ACCESS_KEY_ID", "moto"),
        ("AWS_SECRET_ACCESS_KEY", "moto"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = Server::start_with_env(
        dir.path(),
        &["--rate-limits", "off", "--s3-endpoint-url", &endpoint],
        &env,
    )
    .await;
    let lines = generated();
    server.ingest(lines.as_bytes()).await;
    let id = export_to(&server, "s3://exports-bucket/ses/", DataFormat::Csv).await;
    let object = s3_get(&endpoint, "exports-bucket", &format!("ses/{id}.csv"), ("moto", "moto")).await;
    assert_eq!(object.status, 200, "{}", object.text());
    check_csv(&object.text(), &lines);
    s3.kill().await.expect("stop moto");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
