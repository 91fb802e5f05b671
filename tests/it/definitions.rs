//! docs/metrics.md as AWS's service model defines it (steps 13 and 14), through the
//! wire with aws-sdk-sesv2: which events a record shows (multi-recipient
//! messages, the mailbox simulator, the account-level suppression list) and
//! what VDM metrics count (deliveries that could be opened, clicked or
//! complained about, learned from the events and applied to earlier days).

use crate::expectations;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{
    BatchGetMetricDataQuery, DataFormat, DeliveryEventType, ExportDataSource, ExportMetric, JobStatus,
    MessageInsightsDataSource, MessageInsightsFilters, Metric, MetricAggregation, MetricDimensionName, MetricNamespace,
    MetricsDataSource,
};
use serde_json::{Value, json};
use ses_export_tests::{Server, create_export, download, generated_lines, wait_for_end};

/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200;
const DAY: i64 = 86_400;

fn iso(secs: i64) -> String {
    let days = secs.div_euclid(DAY);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rest = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// An event record as SES publishes it.
fn event(kind: &str, id: &str, sent: i64, to: &[&str], set: &str, detail: Value) -> String {
    let key = match kind {
        "DeliveryDelay" => "deliveryDelay".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    let mut record = json!({
        "eventType": kind,
        "mail": {
            "timestamp": iso(sent),
            "messageId": id,
            "source": "news@example.com",
            "sourceArn": "arn:aws:ses:us-east-1:000000000000:identity/example.com",
            "destination": to,
            "commonHeaders": {"from": ["news@example.com"], "subject": "Hello"},
            "tags": {"ses:configuration-set": [set]},
        },
    });
    record[key] = detail;
    record.to_string()
}

fn lines(events: &[String]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

fn insights_export(start: i64, end: i64, include: Option<MessageInsightsFilters>) -> ExportDataSource {
    let mut source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(start))
        .end_date(DateTime::from_secs(end));
    if let Some(include) = include {
        source = source.include(include);
    }
    ExportDataSource::builder()
        .message_insights_data_source(source.build().expect("source"))
        .build()
}

/// Runs an export to its end; returns the file.
async fn export(server: &Server, source: ExportDataSource) -> String {
    let client = server.client();
    let job_id = create_export(&client, source, DataFormat::Csv).await;
    let job = wait_for_end(&client, &job_id).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed));
    let url = job.export_destination().and_then(|d| d.s3_url()).expect("url");
    let (status, body) = download(url).await;
    assert_eq!(status, 200);
    String::from_utf8(body).expect("UTF-8")
}

/// `DESTINATION LAST_DELIVERY_EVENT LAST_ENGAGEMENT_EVENT` of each row.
fn shown(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            format!("{} {} {}", cells[3], cells[9], cells[10])
        })
        .collect()
}

/// Step 14: what a record shows, in exports, filters and GetMessageInsights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_show_what_aws_shows() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let at = |t: i64| json!(iso(t));
    let two = ["a@yahoo.com", "b@yahoo.com"];
    let events = [
        // A delivered, opened two-recipient message.
        event("Send", "m-two", T0, &two, "marketing", json!({})),
        event(
            "Delivery",
            "m-two",
            T0,
            &two,
            "marketing",
            json!({"timestamp": at(T0 + 1), "recipients": two}),
        ),
        event("Open", "m-two", T0, &two, "marketing", json!({"timestamp": at(T0 + 9)})),
        // The mailbox simulator, delivered.
        event(
            "Send",
            "m-sim",
            T0 + 10,
            &["success@simulator.amazonses.com"],
            "marketing",
            json!({}),
        ),
        event(
            "Delivery",
            "m-sim",
            T0 + 10,
            &["success@simulator.amazonses.com"],
            "marketing",
            json!({"timestamp": at(T0 + 11), "recipients": ["success@simulator.amazonses.com"]}),
        ),
        // A suppression-list bounce.
        event("Send", "m-supp", T0 + 20, &["c@yahoo.com"], "marketing", json!({})),
        event(
            "Bounce",
            "m-supp",
            T0 + 20,
            &["c@yahoo.com"],
            "marketing",
            json!({"timestamp": at(T0 + 21),
              "bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
              "bouncedRecipients": [{"emailAddress": "c@yahoo.com", "diagnosticCode": "Amazon SES did not send"}]}),
        ),
        // A delivery, then a complaint from the suppression list.
        event("Send", "m-supc", T0 + 30, &["d@yahoo.com"], "marketing", json!({})),
        event(
            "Delivery",
            "m-supc",
            T0 + 30,
            &["d@yahoo.com"],
            "marketing",
            json!({"timestamp": at(T0 + 31), "recipients": ["d@yahoo.com"]}),
        ),
        event(
            "Complaint",
            "m-supc",
            T0 + 30,
            &["d@yahoo.com"],
            "marketing",
            json!({"timestamp": at(T0 + 39),
              "complaintSubType": "OnAccountSuppressionList", "complainedRecipients": [{"emailAddress": "d@yahoo.com"}]}),
        ),
        // An ordinary delivered message, for contrast.
        event("Send", "m-one", T0 + 40, &["e@yahoo.com"], "marketing", json!({})),
        event(
            "Delivery",
            "m-one",
            T0 + 40,
            &["e@yahoo.com"],
            "marketing",
            json!({"timestamp": at(T0 + 41), "recipients": ["e@yahoo.com"]}),
        ),
    ];
    let report = server.ingest(lines(&events).as_bytes()).await;
    assert_eq!(report["accepted"], events.len() as u64, "{report}");

    let csv = export(&server, insights_export(T0, T0 + DAY, None)).await;
    assert_eq!(
        shown(&csv),
        [
            "a@yahoo.com SEND ",
            "b@yahoo.com SEND ",
            "success@simulator.amazonses.com SEND ",
            "c@yahoo.com SEND ",
            "d@yahoo.com DELIVERY ",
            "e@yahoo.com DELIVERY ",
        ]
    );

    // Include LastDeliveryEvent DELIVERY: only what shows a delivery.
    let delivered = MessageInsightsFilters::builder()
        .last_delivery_event(DeliveryEventType::Delivery)
        .build();
    let csv = export(&server, insights_export(T0, T0 + DAY, Some(delivered))).await;
    assert_eq!(shown(&csv), ["d@yahoo.com DELIVERY ", "e@yahoo.com DELIVERY "]);
    let permanent = MessageInsightsFilters::builder()
        .last_delivery_event(DeliveryEventType::PermanentBounce)
        .build();
    let csv = export(&server, insights_export(T0, T0 + DAY, Some(permanent))).await;
    assert!(shown(&csv).is_empty(), "{csv}");

    // GetMessageInsights lists what AWS lists.
    let types = |id: &'static str| {
        let client = server.client();
        async move {
            let out = client
                .get_message_insights()
                .message_id(id)
                .send()
                .await
                .expect("insights");
            out.insights()
                .iter()
                .map(|i| {
                    let kinds: Vec<&str> = i
                        .events()
                        .iter()
                        .filter_map(|e| e.r#type().map(|t| t.as_str()))
                        .collect();
                    format!("{} {}", i.destination().unwrap_or_default(), kinds.join(" "))
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(types("m-two").await, ["a@yahoo.com SEND", "b@yahoo.com SEND"]);
    assert_eq!(types("m-sim").await, ["success@simulator.amazonses.com SEND"]);
    assert_eq!(types("m-supp").await, ["c@yahoo.com SEND BOUNCE"]);
    assert_eq!(types("m-supc").await, ["d@yahoo.com SEND DELIVERY"]);
    let supp = server
        .client()
        .get_message_insights()
        .message_id("m-supp")
        .send()
        .await
        .expect("insights");
    let bounce = supp.insights()[0].events()[1]
        .details()
        .and_then(|d| d.bounce())
        .expect("bounce details");
    assert_eq!(bounce.bounce_sub_type(), Some("OnAccountSuppressionList"));
}

const METRICS: [Metric; 10] = [
    Metric::Send,
    Metric::Complaint,
    Metric::PermanentBounce,
    Metric::TransientBounce,
    Metric::Open,
    Metric::Click,
    Metric::Delivery,
    Metric::DeliveryOpen,
    Metric::DeliveryClick,
    Metric::DeliveryComplaint,
];

/// A metrics export of all ten metrics' volumes by ISP, `start` to `end`.
fn volumes_by_isp(start: i64, end: i64) -> ExportDataSource {
    let mut source = MetricsDataSource::builder()
        .namespace(MetricNamespace::Vdm)
        .dimensions(MetricDimensionName::Isp, vec!["*".to_owned()])
        .start_date(DateTime::from_secs(start))
        .end_date(DateTime::from_secs(end));
    for metric in &METRICS {
        source = source.metrics(
            ExportMetric::builder()
                .name(metric.clone())
                .aggregation(MetricAggregation::Volume)
                .build(),
        );
    }
    ExportDataSource::builder()
        .metrics_data_source(source.build().expect("source"))
        .build()
}

/// Each day's `_VOLUME` of all ten metrics in a metrics export for that day
/// alone (summed over ISPs), and the same days from `BatchGetMetricData`.
async fn by_day(server: &Server, first: i64, days: i64) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    let mut exported = Vec::new();
    for d in 0..days {
        let csv = export(server, volumes_by_isp(first + d * DAY, first + (d + 1) * DAY - 1)).await;
        // The day's total over every ISP.
        let mut total = vec![0; 10];
        for line in csv.lines().skip(1) {
            for (t, v) in total.iter_mut().zip(line.split(',').skip(1)) {
                *t += v.parse::<i64>().expect("a volume");
            }
        }
        exported.push(total);
    }
    let mut request = server.client().batch_get_metric_data();
    for (i, metric) in METRICS.iter().enumerate() {
        request = request.queries(
            BatchGetMetricDataQuery::builder()
                .id(format!("q{i}"))
                .namespace(MetricNamespace::Vdm)
                .metric(metric.clone())
                .start_date(DateTime::from_secs(first))
                .end_date(DateTime::from_secs(first + days * DAY - 1))
                .build()
                .expect("query"),
        );
    }
    let answer = request.send().await.expect("BatchGetMetricData");
    let mut daily = vec![vec![0; 10]; days as usize];
    for result in answer.results() {
        let i: usize = result.id().and_then(|id| id[1..].parse().ok()).expect("id");
        for (d, value) in result.values().iter().enumerate() {
            daily[d][i] = *value;
        }
    }
    (exported, daily)
}

/// Step 13: deliveries that could be opened or complained about are learned
/// from later events and raise earlier days; exports and
/// `BatchGetMetricData` agree at every moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_metrics_rise_on_earlier_days_everywhere() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let at = |t: i64| json!(iso(t));
    let delivered = |id: &str, to: &str, t: i64, set: &str| {
        vec![
            event("Send", id, t, &[to], set, json!({})),
            event(
                "Delivery",
                id,
                t,
                &[to],
                set,
                json!({"timestamp": at(t + 1), "recipients": [to]}),
            ),
        ]
    };
    // Day 0: a Gmail delivery in the "quiet" set, a simulator delivery, a
    // suppression-list bounce.
    let mut day0 = delivered("q1", "a@gmail.com", T0 + 60, "quiet");
    day0.extend(delivered("s1", "x@simulator.amazonses.com", T0 + 70, "quiet"));
    day0.push(event("Send", "b1", T0 + 80, &["c@yahoo.com"], "quiet", json!({})));
    day0.push(event(
        "Bounce",
        "b1",
        T0 + 80,
        &["c@yahoo.com"],
        "quiet",
        json!({"timestamp": at(T0 + 81),
        "bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
        "bouncedRecipients": [{"emailAddress": "c@yahoo.com"}]}),
    ));
    server.ingest(lines(&day0).as_bytes()).await;
    //                SEND CMPL PERM TRAN OPEN CLIK DELV D_OP D_CL D_CM
    let before = vec![2, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let (exported, daily) = by_day(&server, T0, 2).await;
    assert_eq!(exported, daily);
    assert_eq!(exported[0], before);

    // Day 1: the quiet set's first Open, a Gmail recipient's first complaint.
    let mut day1 = delivered("q2", "d@gmail.com", T0 + DAY + 60, "quiet");
    day1.push(event(
        "Open",
        "q2",
        T0 + DAY + 60,
        &["d@gmail.com"],
        "quiet",
        json!({"timestamp": at(T0 + DAY + 99)}),
    ));
    day1.push(event(
        "Complaint",
        "q2",
        T0 + DAY + 60,
        &["d@gmail.com"],
        "quiet",
        json!({"timestamp": at(T0 + DAY + 199),
        "complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "d@gmail.com"}]}),
    ));
    server.ingest(lines(&day1).as_bytes()).await;
    let (exported, daily) = by_day(&server, T0, 2).await;
    assert_eq!(exported, daily);
    assert_eq!(exported[0], vec![2, 0, 0, 0, 0, 0, 1, 1, 0, 1], "day 0 rose");
    assert_eq!(exported[1], vec![1, 1, 0, 0, 1, 0, 1, 1, 0, 1]);
}

/// Generated data (simulator recipients, suppression lists, untracked
/// sets, Gmail without a feedback loop): all ten metrics per ISP equal the
/// expectations computed from the raw records, and each day's
/// `BatchGetMetricData` equals that day's export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_metrics_agree_with_the_records() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let lines = generated_lines(21, 1500);
    server.ingest(lines.as_bytes()).await;
    let rows = expectations::rows(&lines);
    // What the events teach, from the raw rows.
    let open_tracked: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.events.contains("Open") && !r.configuration_set.is_empty())
        .map(|r| r.configuration_set.as_str())
        .collect();
    let click_tracked: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.events.contains("Click") && !r.configuration_set.is_empty())
        .map(|r| r.configuration_set.as_str())
        .collect();
    // Any complaint teaches its ISP, a multi-recipient message's too; not
    // one from the suppression list or the mailbox simulator.
    let feedback_loops: BTreeSet<&str> = rows
        .iter()
        .filter(|r| !r.destination.ends_with("@simulator.amazonses.com") && r.events.contains("Complaint"))
        .map(|r| r.isp.as_str())
        .collect();
    assert!(!feedback_loops.contains("Gmail"), "Gmail sends no complaints");
    assert!(rows.iter().any(|r| r.destination.ends_with("@simulator.amazonses.com")));
    assert!(rows.iter().any(|r| r.events.contains("Bounce:Suppressed")));

    let (first, last) = (1_704_067_200, 1_704_067_200 + 5 * DAY - 1);
    let mut expected: BTreeMap<&str, [i64; 10]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.shows_every_event() && r.sent()) {
        let has = |e: &str| r.events.contains(e);
        let delivered = has("Delivery");
        let counts = [
            true,
            has("Complaint"),
            has("Bounce:Permanent"),
            has("Bounce:Transient"),
            has("Open"),
            has("Click"),
            delivered,
            delivered && open_tracked.contains(r.configuration_set.as_str()),
            delivered && click_tracked.contains(r.configuration_set.as_str()),
            delivered && feedback_loops.contains(r.isp.as_str()),
        ];
        let sum = expected.entry(r.isp.as_str()).or_default();
        for (s, c) in sum.iter_mut().zip(counts) {
            *s += i64::from(c);
        }
    }
    let csv = export(&server, volumes_by_isp(first, last)).await;
    let got: BTreeMap<String, Vec<i64>> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split(',');
            let isp = cells.next().expect("isp").to_owned();
            (isp, cells.map(|v| v.parse().expect("volume")).collect())
        })
        .collect();
    let want: BTreeMap<String, Vec<i64>> = expected.into_iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect();
    assert_eq!(got, want);

    let (exported, daily) = by_day(&server, first, 5).await;
    assert_eq!(exported, daily, "BatchGetMetricData per day equals each day's export");
}
