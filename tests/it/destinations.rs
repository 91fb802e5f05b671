//! `S3Url` destinations: the default folder per bucket under the data dir,
//! and a real S3-compatible server (`moto_server`, from PyPI's
//! `moto[server]`, started here; `.ci/run` installs it).

use crate::expectations;

use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{DataFormat, ExportDataSource, ExportDestination, JobStatus, MessageInsightsDataSource};
use ses_export_core::generate::{EventGenerator, GeneratorConfig};
use ses_export_tests::{S3Server, Server, s3_get, wait_for_end};

const T0: i64 = 1_704_067_200;

fn generated() -> String {
    let config = GeneratorConfig::new(77, 80, ses_export_core::clock::Millis(T0 * 1000), 2);
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
    // A bucket name S3 would refuse is refused when the job is created, and makes no folder.
    let bad = server
        .signed(
            "POST",
            "/v2/email/export-jobs",
            br#"{"ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 1, "EndDate": 2}}, "ExportDestination": {"DataFormat": "CSV", "S3Url": "s3://Bad_Bucket/x.csv"}}"#,
            ses_export_tests::DEV,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not a valid S3 bucket name"), "{}", bad.text());
    assert!(!server.data_dir.join("buckets/Bad_Bucket").exists());
    let json = std::fs::read_to_string(server.data_dir.join("buckets/my-exports/fixed/name.json")).expect("file");
    assert_eq!(json.lines().count(), expectations::rows(&lines).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_urls_go_to_a_real_s3_compatible_server() {
    let Some(s3) = S3Server::start().await else { return };
    s3.bucket("exports-bucket").await;
    let endpoint = s3.endpoint.clone();

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
}
