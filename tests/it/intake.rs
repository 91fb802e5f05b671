//! Event intake without SigV4 (SPEC §10): intake keys in `x-api-key` on
//! `/_ses-export/v1/events` (an EventBridge API destination), and the
//! Firehose HTTP endpoint at `/_ses-export/v1/firehose`, with request
//! bodies built as AWS's "HTTP endpoint delivery request and response
//! specifications" describe them. Every refused delivery keeps nothing.

use std::io::Write;

use base64::Engine;
use ses_export_tests::{Server, generated_lines, http_client};

const ACCOUNT_A: &str = "111111111111";
const KEY_A: &str = "intake-key-for-account-a-0123456789";

const CREDENTIALS: &str = r#"
[[credentials]]
access_key_id = "AKIAACCOUNTA"
secret_access_key = "secret-of-account-a"
account_id = "111111111111"
intake_keys = ["intake-key-for-account-a-0123456789"]

[[credentials]]
access_key_id = "AKIAACCOUNTB"
secret_access_key = "secret-of-account-b"
account_id = "222222222222"
"#;

async fn server() -> Server {
    Server::with_credentials(CREDENTIALS, &[]).await
}

/// Events the server has counted, by outcome, from `/metrics`.
async fn counted(server: &Server) -> (u64, u64, u64) {
    server.event_counts().await
}

/// How many insight records `message_id` has for the account of `key`.
async fn insight_count(server: &Server, key: (&str, &str), message_id: &str) -> usize {
    match server
        .client_as(key.0, key.1)
        .get_message_insights()
        .message_id(message_id)
        .send()
        .await
    {
        Ok(found) => found.insights().len(),
        Err(e) => {
            assert_eq!(
                aws_sdk_sesv2::error::ProvideErrorMetadata::code(&e),
                Some("NotFoundException"),
                "{e:?}"
            );
            0
        }
    }
}

fn first_message_id(lines: &str) -> String {
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().expect("a line")).expect("JSON");
    first["mail"]["messageId"].as_str().expect("messageId").to_owned()
}

async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut request = http_client().post(format!("{}{path}", server.url)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

#[tokio::test]
async fn an_intake_key_ingests_into_its_account_and_nothing_else() {
    let server = server().await;
    let lines = generated_lines(7, 20);
    let message = first_message_id(&lines);

    // A wrong key, an access key id, and a key with a signature's absence
    // otherwise are refused before the body, and keep nothing.
    for key in ["not-a-key", "AKIAACCOUNTA", ""] {
        let (status, body) = post(
            &server,
            "/_ses-export/v1/events",
            &[("x-api-key", key)],
            lines.clone().into_bytes(),
        )
        .await;
        assert_eq!(status, 403, "key {key:?}: {body}");
        assert!(body["message"].is_string());
    }
    assert_eq!(counted(&server).await, (0, 0, 0));

    let (status, report) = post(
        &server,
        "/_ses-export/v1/events",
        &[("x-api-key", KEY_A), ("content-type", "application/x-ndjson")],
        lines.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let accepted = report["accepted"].as_u64().expect("accepted");
    assert_eq!(accepted as usize, lines.lines().count());
    assert!(insight_count(&server, ("AKIAACCOUNTA", "secret-of-account-a"), &message).await > 0);
    assert_eq!(
        insight_count(&server, ("AKIAACCOUNTB", "secret-of-account-b"), &message).await,
        0,
        "another account sees nothing"
    );

    // An intake key is no API credential.
    let api = server
        .signed("POST", "/v2/email/list-export-jobs", b"{}", (KEY_A, KEY_A))
        .await;
    assert_eq!(api.status, 403);
    assert_eq!(
        api.header("x-amzn-ErrorType").as_deref(),
        Some("UnrecognizedClientException")
    );
}

#[tokio::test]
async fn an_eventbridge_api_destination_posts_one_event_at_a_time() {
    let server = server().await;
    let lines = generated_lines(11, 3);
    for line in lines.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("JSON");
        // What an EventBridge rule on SES's events passes to an API
        // destination: the event, its record in `detail`.
        let event = serde_json::json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "Email Sent",
            "source": "aws.ses",
            "account": ACCOUNT_A,
            "time": "2024-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ses:us-east-1:111111111111:configuration-set/marketing"],
            "detail": record,
        });
        let (status, report) = post(
            &server,
            "/_ses-export/v1/events",
            &[
                ("x-api-key", KEY_A),
                ("content-type", "application/json; charset=utf-8"),
            ],
            serde_json::to_vec(&event).expect("JSON"),
        )
        .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 1, "{report}");
    }
    let message = first_message_id(&lines);
    assert!(insight_count(&server, ("AKIAACCOUNTA", "secret-of-account-a"), &message).await > 0);
}

/// A Firehose delivery of `lines`, one SES record per Firehose record.
fn delivery(request_id: &str, lines: &str) -> Vec<u8> {
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| {
            serde_json::json!({
                "data": base64::engine::general_purpose::STANDARD.encode(format!("{line}\n"))
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "requestId": request_id,
        "timestamp": 1_578_090_901_599_i64,
        "records": records,
    }))
    .expect("JSON")
}

fn firehose_headers<'a>(request_id: &'a str, key: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("x-amz-firehose-protocol-version", "1.0"),
        ("x-amz-firehose-request-id", request_id),
        (
            "x-amz-firehose-source-arn",
            "arn:aws:firehose:us-east-1:111111111111:deliverystream/ses-events",
        ),
        ("x-amz-firehose-access-key", key),
        ("x-amz-firehose-common-attributes", r#"{"commonAttributes":{}}"#),
        ("user-agent", "Amazon Kinesis Data Firehose Agent/1.0"),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

fn assert_firehose_answer(answer: &serde_json::Value, request_id: &str, error: bool) {
    assert_eq!(answer["requestId"], request_id, "{answer}");
    assert!(
        answer["timestamp"].as_i64().is_some_and(|t| t > 1_700_000_000_000),
        "{answer}"
    );
    assert_eq!(answer["errorMessage"].is_string(), error, "{answer}");
}

#[tokio::test]
async fn firehose_deliveries_are_kept_once_whatever_the_retries() {
    let server = server().await;
    let lines = generated_lines(5, 40);
    let events = lines.lines().count() as u64;
    let request_id = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f";
    let body = delivery(request_id, &lines);

    let (status, answer) = post(
        &server,
        "/_ses-export/v1/firehose",
        &firehose_headers(request_id, KEY_A),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_firehose_answer(&answer, request_id, false);
    assert_eq!(counted(&server).await, (events, 0, 0));

    // Firehose retries a delivery it did not see answered: the same body
    // again, here gzip, counts every event as a duplicate.
    let mut headers = firehose_headers(request_id, KEY_A);
    headers.push(("content-encoding", "gzip"));
    let (status, answer) = post(&server, "/_ses-export/v1/firehose", &headers, gzip(&body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_firehose_answer(&answer, request_id, false);
    assert_eq!(counted(&server).await, (events, events, 0));
    let message = first_message_id(&lines);
    assert!(insight_count(&server, ("AKIAACCOUNTA", "secret-of-account-a"), &message).await > 0);
}

#[tokio::test]
async fn firehose_errors_come_in_firehose_shape_and_keep_nothing_refused() {
    let server = server().await;
    let lines = generated_lines(9, 5);
    let request_id = "0b1f6a2e-5d0c-4a8e-9b57-2f3f7b1c9d11";
    let body = delivery(request_id, &lines);

    // No access key, a wrong one, another account's API key: nothing kept.
    for (key, expected) in [("", 401), ("wrong-key", 403), ("AKIAACCOUNTB", 403)] {
        let (status, answer) = post(
            &server,
            "/_ses-export/v1/firehose",
            &firehose_headers(request_id, key),
            body.clone(),
        )
        .await;
        assert_eq!(status, expected, "key {key:?}: {answer}");
        assert_firehose_answer(&answer, request_id, true);
    }
    assert_eq!(counted(&server).await, (0, 0, 0));

    // A body that is not a delivery: 400, the request id from the header.
    let (status, answer) = post(
        &server,
        "/_ses-export/v1/firehose",
        &firehose_headers(request_id, KEY_A),
        b"{\"records\": 7}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_firehose_answer(&answer, request_id, true);

    // A broken gzip body: 400, nothing kept.
    let mut headers = firehose_headers(request_id, KEY_A);
    headers.push(("content-encoding", "gzip"));
    let zipped = gzip(&body);
    let (status, answer) = post(
        &server,
        "/_ses-export/v1/firehose",
        &headers,
        zipped[..zipped.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_firehose_answer(&answer, request_id, true);
    assert_eq!(counted(&server).await, (0, 0, 0));

    // Records that are not SES events are refused (Firehose keeps them and
    // backs them up); the good ones beside them are kept.
    let mut mixed: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let records = mixed["records"].as_array_mut().expect("records");
    records.push(serde_json::json!({"data": "bm90IGFuIFNFUyByZWNvcmQ="}));
    records.push(serde_json::json!({"data": "%%% not base64 %%%"}));
    let (status, answer) = post(
        &server,
        "/_ses-export/v1/firehose",
        &firehose_headers(request_id, KEY_A),
        serde_json::to_vec(&mixed).expect("JSON"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_firehose_answer(&answer, request_id, true);
    assert!(
        answer["errorMessage"]
            .as_str()
            .expect("message")
            .contains("2 of the records"),
        "{answer}"
    );
    assert_eq!(counted(&server).await, (lines.lines().count() as u64, 0, 2));
}
