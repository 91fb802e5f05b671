//! End to end: the real `ses-export-server` binary on 127.0.0.1:0, driven
//! by the real `aws-sdk-sesv2` client and by SigV4-signed raw requests.
//! Every export is downloaded and checked row by row against expectations
//! computed from the raw records by `expectations.rs`.

use crate::expectations;

use std::time::{Duration, SystemTime};

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{
    BatchGetMetricDataQuery, DataFormat, ExportDataSource, ExportDestination, JobStatus, MessageInsightsDataSource,
    MessageInsightsFilters, Metric, MetricAggregation, MetricDimensionName, MetricNamespace,
};
use ses_export_core::generate::{EventGenerator, GeneratorConfig};
use ses_export_tests::{DEV, Server, create_export, download, metrics_by_isp, wait_for_end};

/// 2024-01-01T00:00:00Z, where generated data starts.
const T0: i64 = 1_704_067_200;
const DAY: i64 = 86_400;

fn generated(seed: u64, messages: u64) -> String {
    let config = GeneratorConfig::new(seed, messages, ses_export_core::clock::Millis(T0 * 1000), 5);
    let mut out = String::new();
    for line in EventGenerator::new(config) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn insights_source(start: i64, end: i64, include: Option<MessageInsightsFilters>) -> ExportDataSource {
    let mut source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(start))
        .end_date(DateTime::from_secs(end))
        .max_results(10_000);
    if let Some(filters) = include {
        source = source.include(filters);
    }
    ExportDataSource::builder()
        .message_insights_data_source(source.build().expect("insights source"))
        .build()
}

fn destination(format: DataFormat) -> ExportDestination {
    ExportDestination::builder()
        .data_format(format)
        .build()
        .expect("destination")
}

/// Waits until a job is PROCESSING.
async fn wait_until_processing(client: &aws_sdk_sesv2::Client, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client
        .get_export_job()
        .job_id(id)
        .send()
        .await
        .expect("get")
        .job_status()
        != Some(&JobStatus::Processing)
    {
        assert!(tokio::time::Instant::now() < deadline, "never PROCESSING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exported_file(server: &Server, job_id: &str) -> String {
    let client = server.client();
    let job = wait_for_end(&client, job_id).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    let url = job
        .export_destination()
        .and_then(|d| d.s3_url())
        .expect("a download URL");
    let (status, body) = download(url).await;
    assert_eq!(status, 200);
    String::from_utf8(body).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_insights_exports_match_the_records_row_by_row() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = generated(5, 300);
    let report = server.ingest(lines.as_bytes()).await;
    assert_eq!(report["accepted"], lines.lines().count() as u64);
    assert_eq!(report["rejected"], 0);
    let expected = expectations::rows(&lines);
    let client = server.client();

    // Everything, as CSV.
    let created_id = create_export(&client, insights_source(T0, T0 + 7 * DAY, None), DataFormat::Csv).await;
    let job_id = created_id.as_str();
    let csv = exported_file(&server, job_id).await;
    let mut lines_out = csv.lines();
    assert_eq!(
        lines_out.next(),
        Some(
            "MESSAGE_ID,SEND_TIMESTAMP,FROM_EMAIL_ADDRESS,DESTINATION,SUBJECT,ISP,EMAIL_IDENTITY,CONFIGURATION_SET,TENANT_NAME,LAST_DELIVERY_EVENT,LAST_ENGAGEMENT_EVENT"
        )
    );
    let rows: Vec<&str> = lines_out.collect();
    let wanted: Vec<String> = expected.iter().map(expectations::Row::csv).collect();
    assert_eq!(rows.len(), wanted.len());
    for (got, want) in rows.iter().zip(&wanted) {
        assert_eq!(got, want);
    }
    let job = client
        .get_export_job()
        .job_id(job_id)
        .send()
        .await
        .expect("GetExportJob");
    let stats = job.statistics().expect("statistics");
    assert_eq!(stats.processed_records_count(), Some(expected.len() as i32));
    assert_eq!(stats.exported_records_count(), Some(expected.len() as i32));
    assert!(job.completed_timestamp().is_some());

    // Gmail and Yahoo recipients only, as JSON Lines, in a narrower interval.
    let filters = MessageInsightsFilters::builder().isp("Gmail").isp("Yahoo").build();
    let (start, end) = (T0 + DAY, T0 + 3 * DAY);
    let created_id = create_export(&client, insights_source(start, end, Some(filters)), DataFormat::Json).await;
    let json = exported_file(&server, created_id.as_str()).await;
    let got: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let want: Vec<&expectations::Row> = expected
        .iter()
        .filter(|r| (start * 1000..=end * 1000).contains(&r.sent_ms) && (r.isp == "Gmail" || r.isp == "Yahoo"))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(!want.is_empty());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["MESSAGE_ID"], w.message_id.as_str());
        assert_eq!(g["DESTINATION"], w.destination.as_str());
        assert_eq!(g["ISP"], w.isp.as_str());
        assert_eq!(g["SEND_TIMESTAMP"], w.send_timestamp.as_str());
        let tenant = if w.tenant.is_empty() {
            serde_json::Value::Null
        } else {
            w.tenant.as_str().into()
        };
        assert_eq!(g["TENANT_NAME"], tenant);
        let engagement = w.last_engagement_event();
        let engagement = if engagement.is_empty() {
            serde_json::Value::Null
        } else {
            engagement.into()
        };
        assert_eq!(g["LAST_ENGAGEMENT_EVENT"], engagement);
        let delivery = match w.last_delivery_event() {
            "" => serde_json::Value::Null,
            event => event.into(),
        };
        assert_eq!(g["LAST_DELIVERY_EVENT"], delivery);
    }

    // Ingesting the same data again adds nothing.
    let again = server.ingest(lines.as_bytes()).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], lines.lines().count() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exports_and_batch_get_metric_data_agree_with_the_records() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = generated(9, 400);
    server.ingest(lines.as_bytes()).await;
    let rows = expectations::rows(&lines);
    let client = server.client();
    let (start, end) = (T0 + DAY / 2, T0 + 4 * DAY);
    let counted: Vec<&expectations::Row> = rows
        .iter()
        .filter(|r| r.shows_every_event() && r.sent() && (start * 1000..=end * 1000).contains(&r.sent_ms))
        .collect();

    let source = metrics_by_isp(
        start,
        end,
        &[
            (Metric::Send, MetricAggregation::Volume),
            (Metric::Delivery, MetricAggregation::Rate),
            (Metric::Open, MetricAggregation::Volume),
        ],
    );
    let created_id = create_export(&client, source, DataFormat::Csv).await;
    let csv = exported_file(&server, created_id.as_str()).await;
    let mut expected = String::from("ISP,SEND_VOLUME,DELIVERY_RATE,OPEN_VOLUME\n");
    let mut by_isp: std::collections::BTreeMap<&str, (i64, i64, i64)> = std::collections::BTreeMap::new();
    for r in &counted {
        let e = by_isp.entry(r.isp.as_str()).or_default();
        e.0 += 1;
        e.1 += i64::from(r.events.contains("Delivery"));
        e.2 += i64::from(r.events.contains("Open"));
    }
    for (isp, (send, delivery, open)) in &by_isp {
        let rate = serde_json::Value::from(*delivery as f64 / *send as f64);
        expected.push_str(&format!("{isp},{send},{rate},{open}\n"));
    }
    assert_eq!(csv, expected);

    // BatchGetMetricData: DELIVERY for Gmail, per day, equal to the same count.
    let response = client
        .batch_get_metric_data()
        .queries(
            BatchGetMetricDataQuery::builder()
                .id("gmail-deliveries")
                .namespace(MetricNamespace::Vdm)
                .metric(Metric::Delivery)
                .dimensions(MetricDimensionName::Isp, "Gmail")
                .start_date(DateTime::from_secs(start))
                .end_date(DateTime::from_secs(end))
                .build()
                .expect("query"),
        )
        .send()
        .await
        .expect("BatchGetMetricData");
    let result = &response.results()[0];
    assert_eq!(result.id(), Some("gmail-deliveries"));
    let days: Vec<i64> = result.timestamps().iter().map(|t| t.secs()).collect();
    assert_eq!(days, [T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY]);
    for (day, value) in days.iter().zip(result.values()) {
        let want = counted
            .iter()
            .filter(|r| {
                r.isp == "Gmail" && r.events.contains("Delivery") && r.sent_ms.div_euclid(DAY * 1000) * DAY == *day
            })
            .count() as i64;
        assert_eq!(*value, want, "day {day}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_message_insights_reports_each_recipients_events() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = generated(3, 200);
    server.ingest(lines.as_bytes()).await;
    let rows = expectations::rows(&lines);
    let bounced = rows
        .iter()
        .find(|r| r.shows_every_event() && r.events.iter().any(|e| e.starts_with("Bounce")))
        .expect("a bounce in 200 messages");
    let client = server.client();
    let out = client
        .get_message_insights()
        .message_id(&bounced.message_id)
        .send()
        .await
        .expect("GetMessageInsights");
    assert_eq!(out.message_id(), Some(bounced.message_id.as_str()));
    assert_eq!(out.subject(), Some(bounced.subject.as_str()));
    assert!(
        out.email_tags()
            .iter()
            .any(|t| t.name() == "ses:operation" && t.value() == "SendEmail")
    );
    let insight = &out.insights()[0];
    assert_eq!(insight.destination(), Some(bounced.destination.as_str()));
    assert_eq!(insight.isp(), Some(bounced.isp.as_str()));
    let bounce = insight
        .events()
        .iter()
        .find(|e| e.r#type().map(|t| t.as_str()) == Some("BOUNCE"))
        .expect("the bounce event");
    let details = bounce.details().and_then(|d| d.bounce()).expect("bounce details");
    assert!(details.bounce_type().is_some());
    assert_eq!(details.diagnostic_code(), Some("smtp; 550 5.1.1 user unknown"));

    let missing = client.get_message_insights().message_id("no-such-message").send().await;
    assert_eq!(missing.expect_err("unknown").code(), Some("NotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_newest_first_page_and_cancel() {
    // No workers: every job stays CREATED until cancelled.
    let server = Server::start(&["--rate-limits", "off", "--workers", "0"]).await;
    let client = server.client();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let created_id = create_export(&client, insights_source(T0, T0 + DAY, None), DataFormat::Csv).await;
        ids.push(created_id.as_str().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_export_jobs()
            .page_size(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("list");
        assert!(page.export_jobs().len() <= 2);
        listed.extend(page.export_jobs().iter().map(|j| j.job_id().expect("id").to_owned()));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    let forged = client.list_export_jobs().next_token("1.61.deadbeef").send().await;
    assert_eq!(forged.expect_err("forged").code(), Some("BadRequestException"));
    let too_big = client.list_export_jobs().page_size(1001).send().await;
    assert_eq!(too_big.expect_err("1001").code(), Some("BadRequestException"));

    client.cancel_export_job().job_id(&ids[0]).send().await.expect("cancel");
    let job = client.get_export_job().job_id(&ids[0]).send().await.expect("get");
    assert_eq!(job.job_status(), Some(&JobStatus::Cancelled));
    assert!(job.completed_timestamp().is_some(), "a cancelled job has ended");
    let again = client.cancel_export_job().job_id(&ids[0]).send().await;
    assert_eq!(
        again.expect_err("already cancelled").code(),
        Some("BadRequestException")
    );
    let cancelled = client
        .list_export_jobs()
        .job_status(JobStatus::Cancelled)
        .send()
        .await
        .expect("list");
    assert_eq!(cancelled.export_jobs().len(), 1);
    let unknown = client.cancel_export_job().job_id("nope").send().await;
    assert_eq!(unknown.expect_err("unknown").code(), Some("NotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_processing_job_and_leaves_no_file() {
    let server = Server::start(&["--rate-limits", "off", "--min-job-duration-ms", "3000"]).await;
    server.ingest(generated(1, 50).as_bytes()).await;
    let client = server.client();
    let created_id = create_export(&client, insights_source(T0, T0 + 7 * DAY, None), DataFormat::Csv).await;
    let id = created_id.as_str();
    wait_until_processing(&client, id).await;
    client.cancel_export_job().job_id(id).send().await.expect("cancel");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let job = client.get_export_job().job_id(id).send().await.expect("get");
    assert_eq!(job.job_status(), Some(&JobStatus::Cancelled));
    assert!(job.export_destination().and_then(|d| d.s3_url()).is_none());
    let exports = server.data_dir.join("exports/000000000000");
    let files: Vec<_> = std::fs::read_dir(&exports)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "no file for a cancelled job: {files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_active_jobs_and_rates() {
    let server = Server::start(&["--workers", "0", "--max-active-jobs", "2"]).await;
    let client = server.client();
    let create = || {
        client
            .create_export_job()
            .export_data_source(insights_source(T0, T0 + DAY, None))
            .export_destination(destination(DataFormat::Csv))
            .send()
    };
    create().await.expect("first");
    // One CreateExportJob per second per account.
    let throttled = create().await.expect_err("second within the second");
    assert_eq!(throttled.code(), Some("TooManyRequestsException"));
    assert_eq!(throttled.raw_response().map(|r| r.status().as_u16()), Some(429));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create().await.expect("second, a second later");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let limited = create().await.expect_err("a third active job");
    assert_eq!(limited.code(), Some("LimitExceededException"));
    assert_eq!(limited.raw_response().map(|r| r.status().as_u16()), Some(400));
    // Another account has its own buckets and limits.
    let list = server.client().list_export_jobs().send().await.expect("list");
    assert_eq!(list.export_jobs().len(), 2);
    let throttled_list = server.client().list_export_jobs().send().await;
    assert_eq!(
        throttled_list.expect_err("1/s").code(),
        Some("TooManyRequestsException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_the_three_403s() {
    let server = Server::with_credentials(
        "[[credentials]]\naccess_key_id = \"AKIAEXAMPLE1\"\nsecret_access_key = \"secret-one\"\naccount_id = \"111111111111\"\n\n\
         [[credentials]]\naccess_key_id = \"AKIAEXAMPLE2\"\nsecret_access_key = \"secret-two\"\naccount_id = \"222222222222\"\n",
        &["--rate-limits", "off"],
    )
    .await;
    let one = server.client_as("AKIAEXAMPLE1", "secret-one");
    let two = server.client_as("AKIAEXAMPLE2", "secret-two");
    one.list_export_jobs().send().await.expect("a known key");

    let wrong = server
        .client_as("AKIAEXAMPLE1", "not-the-secret")
        .list_export_jobs()
        .send()
        .await;
    assert_eq!(
        wrong.expect_err("wrong secret").code(),
        Some("InvalidSignatureException")
    );
    let unknown = server.client_as("AKIAUNKNOWN", "x").list_export_jobs().send().await;
    assert_eq!(
        unknown.expect_err("unknown key").code(),
        Some("UnrecognizedClientException")
    );
    let dev = server.client().list_export_jobs().send().await;
    assert_eq!(
        dev.expect_err("no development key with a file").code(),
        Some("UnrecognizedClientException")
    );

    let unsigned = server.unsigned("POST", "/v2/email/list-export-jobs", b"{}").await;
    assert_eq!(
        (unsigned.status, unsigned.header("x-amzn-ErrorType").as_deref()),
        (403, Some("MissingAuthenticationTokenException"))
    );
    let late = server
        .signed_at(
            "POST",
            "/v2/email/list-export-jobs",
            b"{}",
            ("AKIAEXAMPLE1", "secret-one"),
            SystemTime::now() - Duration::from_secs(20 * 60),
        )
        .await;
    assert_eq!(late.status, 403);
    assert_eq!(
        late.header("x-amzn-ErrorType").as_deref(),
        Some("InvalidSignatureException")
    );
    assert!(
        late.json()["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Signature expired"))
    );

    // Everything is per account: another account's job is not found.
    let created_id = create_export(&one, insights_source(T0, T0 + DAY, None), DataFormat::Csv).await;
    let theirs = two.get_export_job().job_id(created_id.as_str()).send().await;
    assert_eq!(
        theirs.expect_err("another account's job").code(),
        Some("NotFoundException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_400_and_never_a_500() {
    let server = Server::start(&["--rate-limits", "off", "--max-body-bytes", "2048", "--strict"]).await;
    let cases: &[(&str, &str, &[u8], &str)] = &[
        ("POST", "/v2/email/export-jobs", b"{", "Unable to parse request body"),
        ("POST", "/v2/email/export-jobs", b"[]", "expected a JSON object"),
        ("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {}, "ExportDestination": {"DataFormat": "CSV"}}"#, "exactly one of metricsDataSource, messageInsightsDataSource"),
        ("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {"MetricsDataSource": {"Namespace": "XYZ"}}, "ExportDestination": {"DataFormat": "CSV"}}"#, "Value 'XYZ' at 'exportDataSource.metricsDataSource.namespace' failed to satisfy constraint: Member must satisfy enum value set: [VDM]"),
        ("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 2, "EndDate": 1}}, "ExportDestination": {"DataFormat": "CSV"}}"#, "Member must not be earlier than startDate"),
        ("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 1, "EndDate": 2, "Include": {"Subject": ["a*b"]}}}, "ExportDestination": {"DataFormat": "CSV"}}"#, "include.subject.1.member"),
        ("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 1, "EndDate": 2}}, "ExportDestination": {"DataFormat": "CSV", "S3Url": "s3://bucket/key"}}"#, "S3Url is not supported"),
        ("POST", "/v2/email/metrics/batch", br#"{"Queries": [{"Id": "a", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1, "EndDate": 2}, {"Id": "a", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1, "EndDate": 2}]}"#, "Member must be unique"),
        ("POST", "/v2/email/list-export-jobs", br#"{"PageSize": 0}"#, "greater than or equal to 1"),
    ];
    for (method, path, body, needle) in cases {
        let response = server.signed(method, path, body, DEV).await;
        assert_eq!(response.status, 400, "{path} {}", String::from_utf8_lossy(body));
        assert_eq!(
            response.header("x-amzn-ErrorType").as_deref(),
            Some("BadRequestException")
        );
        assert!(response.header("x-amzn-RequestId").is_some());
        let message = response.json()["message"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(needle), "{message:?} should contain {needle:?}");
    }
    let big = vec![b' '; 4096];
    let response = server.signed("POST", "/v2/email/list-export-jobs", &big, DEV).await;
    assert_eq!(response.status, 400);
    assert!(response.text().contains("larger than the limit of 2048 bytes"));
    let unknown = server.signed("GET", "/v2/email/nothing-here", b"", DEV).await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_processing_when_the_server_is_killed_completes_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let args = ["--rate-limits", "off", "--min-job-duration-ms", "2000"];
    let server = Server::start_in(dir.path(), &args).await;
    let lines = generated(21, 120);
    server.ingest(lines.as_bytes()).await;
    let client = server.client();
    let created_id = create_export(&client, insights_source(T0, T0 + 7 * DAY, None), DataFormat::Csv).await;
    let id = created_id.as_str().to_owned();
    wait_until_processing(&client, &id).await;
    server.kill().await;

    let restarted = Server::start_in(dir.path(), &["--rate-limits", "off"]).await;
    let csv = exported_file(&restarted, &id).await;
    let expected = expectations::rows(&lines);
    assert_eq!(csv.lines().count(), expected.len() + 1);
    for (got, want) in csv.lines().skip(1).zip(&expected) {
        assert_eq!(got, want.csv());
    }
    let ingested_again = restarted.ingest(lines.as_bytes()).await;
    assert_eq!(
        ingested_again["accepted"], 0,
        "nothing ingested before the kill was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_takes_gzip_and_refuses_an_over_large_body_whole() {
    use std::io::Write;
    let server = Server::start(&["--rate-limits", "off", "--max-ingest-bytes", "65536"]).await;
    let lines = generated(13, 20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).expect("gzip");
    let report = server.ingest(&gz.finish().expect("gzip")).await;
    assert_eq!(report["accepted"], lines.lines().count() as u64);

    // A small gzip body that expands past 16 × 64 KiB is refused, and none of it kept.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let more = generated(14, 5);
    bomb.write_all(more.as_bytes()).expect("gzip");
    bomb.write_all(&vec![b'\n'; 2 << 20]).expect("gzip");
    let response = server
        .signed("POST", "/_ses-export/v1/events", &bomb.finish().expect("gzip"), DEV)
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("decompressed body is larger"));
    let again = server.ingest(more.as_bytes()).await;
    assert_eq!(
        again["accepted"],
        more.lines().count() as u64,
        "nothing of the refused body was kept"
    );

    // A plain body over the limit is refused before it is read.
    let big = vec![b'x'; 70_000];
    let response = server.signed("POST", "/_ses-export/v1/events", &big, DEV).await;
    assert_eq!(response.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_urls_expire_and_refuse_tampering() {
    let server = Server::start(&["--rate-limits", "off", "--download-url-ttl", "1"]).await;
    server.ingest(generated(2, 10).as_bytes()).await;
    let client = server.client();
    let created_id = create_export(&client, insights_source(T0, T0 + 7 * DAY, None), DataFormat::Json).await;
    let job = wait_for_end(&client, created_id.as_str()).await;
    let url = job
        .export_destination()
        .and_then(|d| d.s3_url())
        .expect("url")
        .to_owned();
    assert_eq!(download(&url).await.0, 200);
    let tampered = url.replace("000000000000/", "000000000001/");
    assert_eq!(download(&tampered).await.0, 403);
    let resigned = format!("{}0", url);
    assert_eq!(download(&resigned).await.0, 403);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(download(&url).await.0, 403, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_query_requests_are_verified() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    let server = Server::start(&["--rate-limits", "off", "--workers", "0"]).await;
    let created_id = create_export(&server.client(), insights_source(T0, T0 + DAY, None), DataFormat::Csv).await;
    let url = format!("{}/v2/email/export-jobs/{}", server.url, created_id.as_str());
    let presign = |secret: &str| {
        let identity = aws_sdk_sesv2::config::Credentials::new("test", secret, None, None, "e2e").into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("ses")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .expect("params")
            .into();
        let host = server.url.trim_start_matches("http://").to_owned();
        let request = SignableRequest::new(
            "GET",
            &url,
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(b""),
        )
        .expect("signable");
        let (instructions, _) = sign(request, &params).expect("sign").into_parts();
        let (_, query) = instructions.into_parts();
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", ses_export_core::model::operation::percent_encode(v)))
            .collect();
        format!("{url}?{}", query.join("&"))
    };
    let (status, body) = download(&presign("test")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = download(&presign("wrong")).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_a_graceful_stop() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let health = server.unsigned("GET", "/healthz", b"").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    server.client().list_export_jobs().send().await.expect("list");
    server.unsigned("GET", "/v2/email/export-jobs/x", b"").await;
    let metrics = server.unsigned("GET", "/metrics", b"").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("ses_export_requests_total{operation=\"ListExportJobs\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ses_export_requests_total{operation=\"GetExportJob\",status=\"403\"} 1"),
        "{text}"
    );

    // SIGTERM: the server stops serving and exits cleanly.
    let pid = server.pid().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exited = server.wait(Duration::from_secs(10)).await;
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "exit status after SIGTERM");
}
