//! Snapshots of the wire: every operation's success body and every error
//! shape, as the server sends them (ids, times and signatures redacted).

use serde_json::Value;
use ses_export_tests::{DEV, Response, Server, wait_for_end};

/// Records of every event type, from core's ingest tests.
const RECORDS: &[u8] = include_bytes!("../../crates/core/tests/data/mixed.jsonl");

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "JobId" | "CreatedTimestamp" | "CompletedTimestamp" => *v = Value::from("[redacted]"),
                    "S3Url" => {
                        if let Some(url) = v.as_str().filter(|u| u.starts_with("http")) {
                            let path = url.split("/_ses-export/").nth(1).unwrap_or("");
                            let path = path.split('?').next().unwrap_or("");
                            let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
                            let ext = file.rsplit('.').next().unwrap_or("");
                            *v = Value::from(format!("http://[server]/_ses-export/{dir}/[job].{ext}?[signature]"));
                        }
                    }
                    _ => redact(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn show(name: &str, response: &Response) -> String {
    let mut body: Value = if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    };
    redact(&mut body);
    let error_type = response.header("x-amzn-ErrorType").unwrap_or_default();
    assert!(
        response.header("x-amzn-RequestId").is_some(),
        "{name}: every response has a request id"
    );
    format!(
        "## {name}\n{} {error_type}\n{}\n\n",
        response.status,
        serde_json::to_string_pretty(&body).unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_on_the_wire() {
    let server = Server::start(&["--rate-limits", "off", "--max-active-jobs", "2"]).await;
    server.ingest(RECORDS).await;
    let mut out = String::new();

    let create_body = br#"{"ExportDataSource": {"MessageInsightsDataSource": {"StartDate": 1704153600, "EndDate": 1704240000.5, "Include": {"Isp": ["Gmail"]}, "MaxResults": 100}}, "ExportDestination": {"DataFormat": "CSV"}}"#;
    let created = server.signed("POST", "/v2/email/export-jobs", create_body, DEV).await;
    out.push_str(&show("CreateExportJob", &created));
    let id = created.json()["JobId"].as_str().expect("JobId").to_owned();
    wait_for_end(&server.client(), &id).await;
    let got = server
        .signed("GET", &format!("/v2/email/export-jobs/{id}"), b"", DEV)
        .await;
    out.push_str(&show("GetExportJob (COMPLETED)", &got));
    let listed = server
        .signed("POST", "/v2/email/list-export-jobs", br#"{"PageSize": 1}"#, DEV)
        .await;
    let mut listed_json = listed.json();
    assert!(listed_json["NextToken"].is_null(), "one job, one page");
    listed_json["NextToken"] = Value::Null;
    out.push_str(&show("ListExportJobs", &listed));
    let insights = server.signed("GET", "/v2/email/insights/m2/", b"", DEV).await;
    out.push_str(&show("GetMessageInsights", &insights));
    let metrics = server
        .signed(
            "POST",
            "/v2/email/metrics/batch",
            br#"{"Queries": [{"Id": "q1", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1704153600, "EndDate": 1704326400}, {"Id": "q2", "Namespace": "VDM", "Metric": "DELIVERY", "Dimensions": {"ISP": "Gmail"}, "StartDate": 1704153600, "EndDate": 1704240000}]}"#,
            DEV,
        )
        .await;
    out.push_str(&show("BatchGetMetricData", &metrics));

    let invalid = server
        .signed("POST", "/v2/email/export-jobs", br#"{"ExportDataSource": {"MetricsDataSource": {"Namespace": "XYZ"}}, "ExportDestination": {"DataFormat": "CSV"}}"#, DEV)
        .await;
    out.push_str(&show("BadRequestException", &invalid));
    let missing = server
        .signed("GET", "/v2/email/export-jobs/no-such-job", b"", DEV)
        .await;
    out.push_str(&show("NotFoundException", &missing));
    let finished = server
        .signed("PUT", &format!("/v2/email/export-jobs/{id}/cancel"), b"", DEV)
        .await;
    out.push_str(&show("CancelExportJob of a finished job", &finished).replace(&id, "[job]"));
    let unsigned = server.unsigned("GET", "/v2/email/export-jobs/x", b"").await;
    out.push_str(&show("MissingAuthenticationTokenException", &unsigned));
    let unknown_key = server
        .signed("GET", "/v2/email/export-jobs/x", b"", ("AKIAUNKNOWN", "x"))
        .await;
    out.push_str(&show("UnrecognizedClientException", &unknown_key));
    let bad_signature = server
        .signed("GET", "/v2/email/export-jobs/x", b"", ("test", "wrong"))
        .await;
    out.push_str(&show("InvalidSignatureException", &bad_signature));
    insta::assert_snapshot!(out);

    // The jobs and rate limits, on servers that keep jobs waiting.
    let waiting = Server::start(&["--workers", "0", "--max-active-jobs", "1"]).await;
    let first = waiting.signed("POST", "/v2/email/export-jobs", create_body, DEV).await;
    let first_id = first.json()["JobId"].as_str().expect("JobId").to_owned();
    let mut limits = String::new();
    let throttled = waiting.signed("POST", "/v2/email/export-jobs", create_body, DEV).await;
    limits.push_str(&show("TooManyRequestsException", &throttled));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let over = waiting.signed("POST", "/v2/email/export-jobs", create_body, DEV).await;
    limits.push_str(&show("LimitExceededException", &over));
    let cancelled = waiting
        .signed("PUT", &format!("/v2/email/export-jobs/{first_id}/cancel"), b"", DEV)
        .await;
    limits.push_str(&show("CancelExportJob", &cancelled));
    insta::assert_snapshot!("limits", limits);
}
