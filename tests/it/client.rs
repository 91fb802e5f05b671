//! The `ses-export-client` library against the real server: typed calls,
//! modeled errors, the paginator, the waiter and downloads.

use futures_util::StreamExt;
use ses_export_client::credentials::{Credentials, Resolve};
use ses_export_client::model::ErrorCode;
use ses_export_client::model::Timestamp;
use ses_export_client::model::types::*;
use ses_export_client::{Client, ClientConfig};
use ses_export_tests::Server;

fn client(server: &Server) -> Client {
    Client::new(
        ClientConfig::new(&server.url).with_resolve(
            Resolve::default()
                .with_region("eu-west-1")
                .with_credentials(Credentials::new("test", "test")),
        ),
    )
    .expect("client")
}

fn request(max_results: i32) -> CreateExportJobRequest {
    CreateExportJobRequest {
        export_data_source: ExportDataSource {
            message_insights_data_source: Some(MessageInsightsDataSource {
                start_date: Timestamp::from_secs(1_704_067_200).expect("time"),
                end_date: Timestamp::from_secs(1_704_326_400).expect("time"),
                include: None,
                exclude: None,
                max_results: Some(max_results),
            }),
            metrics_data_source: None,
        },
        export_destination: ExportDestination {
            data_format: DataFormat::Csv,
            s3_url: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_errors_paging_waiting_and_downloads() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let client = client(&server);
    let mut ids = Vec::new();
    for n in 1..=5 {
        let created = client.create_export_job(request(n)).await.expect("create");
        ids.push(created.job_id.expect("id"));
    }
    let listed: Vec<String> = client
        .list_all_export_jobs(ListExportJobsRequest {
            page_size: Some(2),
            ..ListExportJobsRequest::default()
        })
        .map(|job| job.expect("page").job_id.expect("id"))
        .collect()
        .await;
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed, expected, "three pages, newest first");

    let job = client
        .wait_for_job(&ids[0], std::time::Duration::from_secs(1), |_| {})
        .await
        .expect("wait");
    assert_eq!(job.job_status, Some(JobStatus::Completed));
    let url = job.export_destination.and_then(|d| d.s3_url).expect("url");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("out.csv");
    let bytes = client.download(&url, &path).await.expect("download");
    assert_eq!(std::fs::metadata(&path).expect("file").len(), bytes);
    let refused = client.download(&format!("{url}0"), &dir.path().join("no.csv")).await;
    assert!(refused.is_err());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "a refused download leaves no file: {leftovers:?}");

    let missing = client.get_export_job("nope").await.expect_err("unknown job");
    assert!(missing.is(ErrorCode::NotFoundException), "{missing}");
    let service = missing.service().expect("a service error");
    assert_eq!(service.status, 404);
    assert!(service.request_id.is_some());
}
