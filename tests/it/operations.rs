//! Running the server (SPEC §11): `/metrics` after a scripted sequence of
//! calls, exact, and the whole page read by Prometheus' own OpenMetrics
//! parser (the `prometheus_client` Python package); rate-limit refusals;
//! `/readyz` naming what does not answer; one access-log line per request,
//! with the request id the client saw.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_sesv2::types::DataFormat;
use base64::Engine;
use ses_export_tests::{Server, create_export, generated_lines, http_client, send_volume_by_isp, server_binary};

const KEY: &str = "firehose-intake-key-for-the-metrics-test";
const CREDENTIALS: &str = r#"
[[credentials]]
access_key_id = "AKIAOPERATIONS"
secret_access_key = "secret-of-operations"
account_id = "111111111111"
intake_keys = ["firehose-intake-key-for-the-metrics-test"]
"#;

/// Every sample of an OpenMetrics page as Prometheus' parser reads it:
/// `name{label="value",...} value`, labels sorted; `None` when the parser
/// is not installed (outside CI).
fn parse_with_prometheus(page: &str) -> Option<Vec<String>> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, s.value))
"#;
    let output = ses_export_tests::python_with("prometheus_client", "prometheus-client", script, page.as_bytes())?;
    Some(output.lines().map(str::to_owned).collect())
}

fn sample<'a>(samples: &'a [String], prefix: &str) -> Option<&'a str> {
    samples
        .iter()
        .find_map(|s| s.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(' ')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_sequence_exactly() {
    let server = Server::with_credentials(CREDENTIALS, &["--rate-limits", "off"]).await;
    let client = server.client_as("AKIAOPERATIONS", "secret-of-operations");

    // The sequence.
    assert_eq!(server.unsigned("GET", "/healthz", b"").await.status, 200);
    for _ in 0..2 {
        client.list_export_jobs().send().await.expect("ListExportJobs");
    }
    assert_eq!(server.unsigned("GET", "/v2/email/export-jobs/x", b"").await.status, 403);
    assert_eq!(server.unsigned("GET", "/no/such/route", b"").await.status, 404);
    let lines = generated_lines(8, 10);
    let events = lines.lines().count() as u64;
    let signed = server
        .signed(
            "POST",
            "/_ses-export/v1/events",
            lines.as_bytes(),
            ("AKIAOPERATIONS", "secret-of-operations"),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.text());
    let more = generated_lines(9, 3);
    let records: Vec<serde_json::Value> = more
        .lines()
        .map(|l| serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(l)}))
        .collect();
    let firehose = http_client()
        .post(format!("{}/_ses-export/v1/firehose", server.url))
        .header("x-amz-firehose-access-key", KEY)
        .body(
            serde_json::to_vec(&serde_json::json!({"requestId": "r-1", "timestamp": 1, "records": records}))
                .expect("JSON"),
        )
        .send()
        .await
        .expect("firehose");
    assert_eq!(firehose.status().as_u16(), 200);
    create_export(
        &client,
        send_volume_by_isp(1_704_067_200, 1_704_499_200),
        DataFormat::Csv,
    )
    .await;

    // Wait for the job through /metrics itself, so no API call is added.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let page = loop {
        let page = server.unsigned("GET", "/metrics", b"").await.text();
        if page.contains("ses_export_export_jobs{region=\"us-east-1\",status=\"COMPLETED\"} 1")
            && page.contains(
                "ses_export_export_job_duration_seconds_count{region=\"us-east-1\",source_type=\"METRICS_DATA\",status=\"COMPLETED\"} 1",
            )
        {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not end: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(page.ends_with("# EOF\n"), "an OpenMetrics page ends with # EOF");

    let Some(samples) = parse_with_prometheus(&page) else {
        return;
    };
    let expect = |prefix: &str, value: &str| {
        assert_eq!(
            sample(&samples, prefix),
            Some(value),
            "{prefix}\n{}",
            samples.join("\n")
        );
    };
    expect("ses_export_requests_total{operation=\"Healthz\",status=\"200\"}", "1");
    expect(
        "ses_export_requests_total{operation=\"ListExportJobs\",status=\"200\"}",
        "2",
    );
    expect(
        "ses_export_requests_total{operation=\"GetExportJob\",status=\"403\"}",
        "1",
    );
    expect(
        "ses_export_requests_total{operation=\"UnknownOperation\",status=\"404\"}",
        "1",
    );
    expect("ses_export_requests_total{operation=\"Ingest\",status=\"200\"}", "1");
    expect("ses_export_requests_total{operation=\"Firehose\",status=\"200\"}", "1");
    expect(
        "ses_export_requests_total{operation=\"CreateExportJob\",status=\"200\"}",
        "1",
    );
    expect(
        "ses_export_request_duration_seconds_count{operation=\"ListExportJobs\"}",
        "2",
    );
    expect(
        "ses_export_events_total{outcome=\"accepted\",region=\"us-east-1\",source=\"events\"}",
        &events.to_string(),
    );
    expect(
        "ses_export_events_total{outcome=\"accepted\",region=\"us-east-1\",source=\"firehose\"}",
        &more.lines().count().to_string(),
    );
    expect(
        "ses_export_events_total{outcome=\"rejected\",region=\"us-east-1\",source=\"events\"}",
        "0",
    );
    expect("ses_export_export_jobs{region=\"us-east-1\",status=\"COMPLETED\"}", "1");
    // A status without jobs is there at 0, not missing.
    expect(
        "ses_export_export_jobs{region=\"us-east-1\",status=\"PROCESSING\"}",
        "0",
    );
    expect("ses_export_export_jobs{region=\"us-east-1\",status=\"CANCELLED\"}", "0");
    expect(
        "ses_export_export_job_duration_seconds_count{region=\"us-east-1\",source_type=\"METRICS_DATA\",status=\"COMPLETED\"}",
        "1",
    );
    expect("ses_export_build_info{version=\"0.1.0\"}", "1");
    assert!(
        sample(
            &samples,
            "ses_export_rate_limited_requests_total{operation=\"ListExportJobs\"}"
        )
        .is_none(),
        "nothing was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refusals_are_counted() {
    let server = Server::start(&[]).await;
    let client = server.client();
    let mut refused = 0;
    for _ in 0..4 {
        if let Err(e) = client.list_export_jobs().send().await {
            assert_eq!(
                aws_sdk_sesv2::error::ProvideErrorMetadata::code(&e),
                Some("TooManyRequestsException")
            );
            refused += 1;
        }
    }
    assert!(refused > 0, "AWS's rate: one ListExportJobs a second");
    let page = server.unsigned("GET", "/metrics", b"").await.text();
    assert!(
        page.contains(&format!(
            "ses_export_rate_limited_requests_total{{operation=\"ListExportJobs\"}} {refused}\n"
        )),
        "{page}"
    );
    assert!(page.contains(&format!(
        "ses_export_requests_total{{operation=\"ListExportJobs\",status=\"429\"}} {refused}\n"
    )));
}

#[tokio::test]
async fn readyz_names_what_does_not_answer() {
    let server = Server::start(&[]).await;
    let ready = server.unsigned("GET", "/readyz", b"").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    // Many at once share the probes, and each is answered.
    let many = futures_util::future::join_all((0..64).map(|_| server.unsigned("GET", "/readyz", b""))).await;
    assert!(many.iter().all(|r| r.status == 200));

    // The export folder gone: the object store does not answer.
    std::fs::remove_dir_all(server.data_dir.join("exports")).expect("remove exports");
    let not_ready = server.unsigned("GET", "/readyz", b"").await;
    assert_eq!(not_ready.status, 503);
    assert!(not_ready.header("x-amzn-RequestId").is_some());
    assert_eq!(
        not_ready.header("x-amzn-ErrorType").as_deref(),
        Some("ServiceUnavailableException")
    );
    let body = not_ready.json();
    assert!(
        body["message"].as_str().expect("message").contains("object store"),
        "{body}"
    );
    assert!(body.get("database").is_none(), "the database answers: {body}");
    // Liveness is another matter.
    assert_eq!(server.unsigned("GET", "/healthz", b"").await.status, 200);
}

#[tokio::test]
async fn every_request_gets_one_access_log_line_with_its_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env("SES_EXPORT_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = lines.next_line().await.expect("read").expect("a line");
    let url = first.strip_prefix("listening on ").expect("address").to_owned();

    let listed = http_client()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    let health_id = listed.headers()["x-amzn-RequestId"].to_str().expect("id").to_owned();
    let refused = http_client()
        .get(format!("{url}/v2/email/export-jobs/abc"))
        .send()
        .await
        .expect("get");
    let refused_id = refused.headers()["x-amzn-RequestId"].to_str().expect("id").to_owned();

    // Stop the server so its log is complete.
    let pid = child.id().expect("pid");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let output = child.wait_with_output().await.expect("exit");
    let log = String::from_utf8_lossy(&output.stderr);
    let access: Vec<&str> = log.lines().filter(|l| l.contains("ses_export::access")).collect();
    assert_eq!(access.len(), 2, "one line per request:\n{log}");
    let health = access
        .iter()
        .find(|l| l.contains(&health_id))
        .expect("the healthz line has its id");
    assert!(
        health.contains("operation=\"Healthz\"") || health.contains("operation=Healthz"),
        "{health}"
    );
    assert!(health.contains("status=200"), "{health}");
    assert!(health.contains("latency_ms="), "{health}");
    let get = access
        .iter()
        .find(|l| l.contains(&refused_id))
        .expect("the GetExportJob line has its id");
    assert!(get.contains("GetExportJob") && get.contains("status=403"), "{get}");
    assert!(get.contains("account=\"-\"") || get.contains("account=-"), "{get}");
}

/// Reputation you can alert on (SPEC §13): with `--reputation-metrics`,
/// each account's bounce and complaint rates over its latest eligible
/// sends, per region, read by Prometheus' own parser; the console's
/// endpoint agrees; without the flag, no account's series is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_gauges_have_known_values() {
    // Five eligible sends (one bounced permanently, one complained, one
    // bounced from the suppression list), and two that are not eligible.
    let lines: String = ses_export_core::event_store::conformance::reputation_records()
        .iter()
        .map(|r| r.to_string() + "\n")
        .collect();

    let server = Server::start(&["--reputation-metrics"]).await;
    let report = server.ingest(lines.as_bytes()).await;
    assert_eq!(report["rejected"], 0, "{report}");
    let page = server.unsigned("GET", "/metrics", b"").await.text();
    let Some(samples) = parse_with_prometheus(&page) else {
        return;
    };
    let labels = "{account=\"000000000000\",region=\"us-east-1\"}";
    assert_eq!(
        sample(&samples, &format!("ses_export_reputation_sends{labels}")),
        Some("5"),
        "{page}"
    );
    assert_eq!(
        sample(&samples, &format!("ses_export_reputation_bounce_rate{labels}")),
        Some("0.2")
    );
    assert_eq!(
        sample(&samples, &format!("ses_export_reputation_complaint_rate{labels}")),
        Some("0.2")
    );

    // The console's endpoint, signed for the caller's region.
    let answer = server
        .signed("GET", "/_ses-export/v1/reputation", b"", ses_export_tests::DEV)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(
        (answer["Sends"].as_u64(), answer["BounceRate"].as_f64()),
        (Some(5), Some(0.2))
    );
    assert_eq!(answer["Thresholds"]["ComplaintPause"], 0.005);
    // Its cost is the store's latest sends: one read a second, as AWS's own
    // read operations.
    let again = server
        .signed("GET", "/_ses-export/v1/reputation", b"", ses_export_tests::DEV)
        .await;
    assert_eq!(again.status, 429, "{}", again.text());
    let unsigned = server.unsigned("GET", "/_ses-export/v1/reputation", b"").await;
    assert_eq!(unsigned.status, 403);

    // Off by default: no account is named on the unsigned page.
    let quiet = Server::start(&[]).await;
    quiet.ingest(lines.as_bytes()).await;
    let page = quiet.unsigned("GET", "/metrics", b"").await.text();
    assert!(!page.contains("ses_export_reputation_bounce_rate{"), "{page}");
}
