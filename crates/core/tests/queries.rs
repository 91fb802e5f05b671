//! Message-insight filters and metric rules, table-driven, against
//! hand-computed expectations, through the public query API.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use ses_export_core::Scope;
use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::clock::{DAY_MILLIS, Interval, Millis, format_iso8601};
use ses_export_core::event::parse_record;
use ses_export_core::event_store::EventStore;
use ses_export_core::filter::InsightFilter;
use ses_export_core::query::{
    DimensionSelect, InsightQuery, MetricValue, MetricsQuery, daily_volumes, select_insights, select_metrics,
};
use ses_export_model::types::{MessageInsightsFilters, Metric, MetricAggregation, MetricDimensionName};

const T0: Millis = Millis(1_704_067_200_000); // 2024-01-01T00:00:00Z
const D: i64 = DAY_MILLIS;

fn account() -> Scope {
    "111111111111/us-east-1".parse().expect("a scope")
}

/// One SES record with the given mail fields.
struct Mail<'a> {
    id: &'a str,
    sent: Millis,
    from: &'a str,
    subject: Option<&'a str>,
    to: &'a [&'a str],
    identity: &'a str,
    tenant: Option<&'a str>,
}

impl Mail<'_> {
    fn event(&self, event_type: &str, key: &str, detail: Value) -> Value {
        let mut tags = json!({"ses:configuration-set": ["marketing"]});
        if let Some(tenant) = self.tenant {
            tags["ses:tenant-name"] = json!([tenant]);
        }
        let mut headers = json!({"from": [self.from]});
        if let Some(subject) = self.subject {
            headers["subject"] = json!(subject);
        }
        let mut record = json!({
            "eventType": event_type,
            "mail": {
                "timestamp": format_iso8601(self.sent),
                "messageId": self.id,
                "source": self.from,
                "sourceArn": format!("arn:aws:ses:us-east-1:111111111111:identity/{}", self.identity),
                "destination": self.to,
                "commonHeaders": headers,
                "tags": tags,
            },
        });
        record[key] = detail;
        record
    }

    fn send(&self) -> Value {
        self.event("Send", "send", json!({}))
    }

    fn at(&self, event_type: &str, after: i64) -> Value {
        let key = event_type.to_ascii_lowercase();
        let t = format_iso8601(self.sent + after);
        let detail = match event_type {
            "Delivery" => json!({"timestamp": t, "recipients": self.to}),
            "Complaint" => {
                json!({"timestamp": t, "complainedRecipients": self.to.iter().map(|a| json!({"emailAddress": a})).collect::<Vec<_>>()})
            }
            _ => json!({"timestamp": t}),
        };
        self.event(event_type, &key, detail)
    }

    fn bounce(&self, bounce_type: &str) -> Value {
        let recipients: Vec<Value> = self.to.iter().map(|a| json!({"emailAddress": a})).collect();
        self.event(
            "Bounce",
            "bounce",
            json!({"timestamp": format_iso8601(self.sent + 5), "bounceType": bounce_type, "bouncedRecipients": recipients}),
        )
    }
}

async fn store_with(records: &[Value]) -> MemoryEventStore {
    let store = MemoryEventStore::new();
    let events = records
        .iter()
        .map(|r| parse_record(&r.to_string()).expect("record"))
        .collect();
    store.write_batch(&account(), events).await.expect("ingest");
    store
}

fn filter(json: Value) -> InsightFilter {
    let filters: MessageInsightsFilters = serde_json::from_value(json).expect("filters");
    InsightFilter::parse(&filters).expect("valid patterns")
}

/// Five messages that differ in every field a filter looks at.
fn insight_records() -> Vec<Value> {
    let m = |id, i, from, subject, to, tenant| Mail {
        id,
        sent: T0 + i,
        from,
        subject,
        to,
        identity: "example.com",
        tenant,
    };
    let m1 = m(
        "m1",
        1,
        "news@example.com",
        Some("Spring sale"),
        &["ann@gmail.com"],
        Some("tenant-a"),
    );
    let m2 = m("m2", 2, "News@Example.com", Some("50* off"), &["bob@yahoo.com"], None);
    let m3 = m(
        "m3",
        3,
        "alerts@example.org",
        Some("Your invoice"),
        &["cy@outlook.com"],
        Some("tenant-b"),
    );
    let m4 = m("m4", 4, r"back\slash@example.com", None, &["dee@corp.example"], None);
    let m5 = m(
        "m5",
        5,
        "news@example.com",
        Some("Spring SALE"),
        &["eve@gmail.com"],
        Some("tenant-c"),
    );
    vec![
        m1.send(),
        m1.at("Delivery", 10),
        m1.at("Open", 100),
        m2.send(),
        m2.bounce("Permanent"),
        m3.at("Delivery", 10),
        m3.at("Click", 100),
        m4.send(),
        m5.at("Delivery", 10),
        m5.at("Complaint", 100),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_what_spec_says() {
    check_filters(&store_with(&insight_records()).await).await;
    // SQLite decides on a row's columns before building the record: the same answers.
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = ses_export_core::backend::sqlite::SqliteEventStore::open(dir.path().join("e.sqlite")).expect("open");
    let events = insight_records()
        .iter()
        .map(|r| parse_record(&r.to_string()).expect("record"))
        .collect();
    sqlite.write_batch(&account(), events).await.expect("ingest");
    check_filters(&sqlite).await;
}

async fn check_filters(store: &dyn EventStore) {
    let cases: &[(&str, Value, Value, &str)] = &[
        ("no filters", json!({}), json!({}), "m1 m2 m3 m4 m5"),
        (
            "empty list is no filter",
            json!({"Isp": []}),
            json!({"Subject": []}),
            "m1 m2 m3 m4 m5",
        ),
        (
            "exact, case-sensitive",
            json!({"FromEmailAddress": ["news@example.com"]}),
            json!({}),
            "m1 m5",
        ),
        ("prefix", json!({"FromEmailAddress": ["news@*"]}), json!({}), "m1 m5"),
        (
            "suffix",
            json!({"FromEmailAddress": ["*@example.com"]}),
            json!({}),
            "m1 m4 m5",
        ),
        (
            "contains",
            json!({"FromEmailAddress": ["*@example*"]}),
            json!({}),
            "m1 m3 m4 m5",
        ),
        (
            "star alone needs the field",
            json!({"Subject": ["*"]}),
            json!({}),
            "m1 m2 m3 m5",
        ),
        ("escaped star", json!({"Subject": ["50\\* off"]}), json!({}), "m2"),
        (
            "contains a literal star",
            json!({"Subject": ["*\\**"]}),
            json!({}),
            "m2",
        ),
        (
            "escaped backslash",
            json!({"FromEmailAddress": ["back\\\\slash@*"]}),
            json!({}),
            "m4",
        ),
        (
            "destination suffix",
            json!({"Destination": ["*@gmail.com"]}),
            json!({}),
            "m1 m5",
        ),
        (
            "values within a filter OR",
            json!({"Isp": ["Gmail", "Yahoo"]}),
            json!({}),
            "m1 m2 m5",
        ),
        (
            "filters AND",
            json!({"FromEmailAddress": ["news@*"], "Isp": ["Gmail"], "Subject": ["Spring sale"]}),
            json!({}),
            "m1",
        ),
        (
            "tenant: missing never matches",
            json!({"TenantName": ["tenant-a", "tenant-b"]}),
            json!({}),
            "m1 m3",
        ),
        (
            "last delivery event",
            json!({"LastDeliveryEvent": ["PERMANENT_BOUNCE", "COMPLAINT"]}),
            json!({}),
            "m2 m5",
        ),
        (
            "last delivery event SEND",
            json!({"LastDeliveryEvent": ["SEND"]}),
            json!({}),
            "m4",
        ),
        (
            "last engagement event",
            json!({"LastEngagementEvent": ["CLICK"]}),
            json!({}),
            "m3",
        ),
        ("exclude", json!({}), json!({"Isp": ["Gmail"]}), "m2 m3 m4"),
        (
            "exclude filters OR",
            json!({}),
            json!({"Isp": ["Yahoo"], "TenantName": ["tenant-b"]}),
            "m1 m4 m5",
        ),
        (
            "exclude: missing never matches",
            json!({}),
            json!({"TenantName": ["tenant-a"]}),
            "m2 m3 m4 m5",
        ),
        (
            "include with exclude",
            json!({"FromEmailAddress": ["*@example.com"]}),
            json!({"Subject": ["*SALE*"]}),
            "m1 m4",
        ),
    ];
    for (name, include, exclude, expected) in cases {
        let query = InsightQuery {
            interval: Interval::new(T0, T0 + D),
            include: filter(include.clone()),
            exclude: filter(exclude.clone()),
            max_results: 1000,
            seed: 1,
        };
        let selection = select_insights(store, &account(), &query, &Default::default())
            .await
            .expect("select");
        let got: Vec<&str> = selection.records.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(got.join(" "), *expected, "{name}");
        assert_eq!(selection.processed, 5, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_ends_are_inclusive() {
    let store = store_with(&insight_records()).await;
    let query = |start, end| InsightQuery {
        interval: Interval::new(start, end),
        include: InsightFilter::default(),
        exclude: InsightFilter::default(),
        max_results: 1000,
        seed: 1,
    };
    let ids = |s: ses_export_core::query::InsightSelection| {
        s.records
            .into_iter()
            .map(|r| r.message_id)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let selection = select_insights(&store, &account(), &query(T0 + 2, T0 + 4), &Default::default())
        .await
        .expect("select");
    assert_eq!(ids(selection), "m2 m3 m4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_results_takes_a_reproducible_uniform_sample_in_export_order() {
    let records: Vec<Value> = (0..500)
        .map(|i| {
            Mail {
                id: &format!("msg-{i:03}"),
                sent: T0 + (i % 50) * 1000,
                from: "a@example.com",
                subject: Some("s"),
                to: &["x@gmail.com"],
                identity: "example.com",
                tenant: None,
            }
            .send()
        })
        .collect();
    let store = store_with(&records).await;
    let run = |seed, max_results| {
        let store = &store;
        async move {
            let query = InsightQuery {
                interval: Interval::new(T0, T0 + D),
                include: InsightFilter::default(),
                exclude: InsightFilter::default(),
                max_results,
                seed,
            };
            select_insights(store, &account(), &query, &Default::default())
                .await
                .expect("select")
        }
    };
    let a = run(7, 100).await;
    assert_eq!((a.processed, a.matched, a.records.len()), (500, 500, 100));
    let keys: Vec<_> = a
        .records
        .iter()
        .map(|r| (r.send_timestamp, r.message_id.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "the sample is in export order");
    let again = run(7, 100).await;
    assert_eq!(again.records, a.records, "the same seed picks the same records");
    // SQLite judges rows before building them (and before reading their
    // text), in parts side by side: the same sample, text and all.
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = ses_export_core::backend::sqlite::SqliteEventStore::open(dir.path().join("e.sqlite")).expect("open");
    let events = records
        .iter()
        .map(|r| parse_record(&r.to_string()).expect("record"))
        .collect();
    sqlite.write_batch(&account(), events).await.expect("ingest");
    for (include, exclude) in [
        (InsightFilter::default(), InsightFilter::default()),
        (
            filter(json!({"FromEmailAddress": ["*@example.com"]})),
            InsightFilter::default(),
        ),
        (
            filter(json!({"Isp": ["Gmail"]})),
            filter(json!({"Subject": ["nothing*"]})),
        ),
    ] {
        let query = InsightQuery {
            interval: Interval::new(T0, T0 + D),
            include,
            exclude,
            max_results: 100,
            seed: 7,
        };
        let stop = Default::default();
        let from_sqlite = select_insights(&sqlite, &account(), &query, &stop)
            .await
            .expect("sqlite");
        let from_memory = select_insights(&store, &account(), &query, &stop)
            .await
            .expect("memory");
        assert_eq!(from_sqlite.records, from_memory.records, "{query:?}");
        assert_eq!(from_sqlite.records, a.records, "the filters keep every record");
        assert_eq!(from_sqlite.processed, 500);
    }
    let other = run(8, 100).await;
    assert_ne!(other.records, a.records, "another seed picks others");
    // Uniform: over many seeds every record is picked about max/total = 1/5 of the time.
    let mut picks: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..200 {
        for r in run(seed, 100).await.records {
            *picks.entry(r.message_id).or_default() += 1;
        }
    }
    assert_eq!(picks.len(), 500);
    let (min, max) = (picks.values().min().copied(), picks.values().max().copied());
    assert!(
        min >= Some(15) && max <= Some(70),
        "each record ~40 of 200 times: {min:?}..{max:?}"
    );
    assert_eq!(
        run(1, 600).await.records.len(),
        500,
        "fewer matches than MaxResults: all of them"
    );
}

/// A day of traffic with every case the metric rules name.
fn metric_records() -> Vec<Value> {
    let m = |id, sent, to, identity, tenant| Mail {
        id,
        sent,
        from: "news@example.com",
        subject: Some("s"),
        to,
        identity,
        tenant,
    };
    let m1 = m("m1", T0 + 10, &["a@gmail.com"], "example.com", None);
    let m2 = m("m2", T0 + 20, &["b@yahoo.com"], "example.com", Some("t1"));
    let m3 = m(
        "m3",
        T0 + 30,
        &["c@gmail.com", "d@gmail.com"],
        "example.com",
        Some("t1"),
    );
    let m4 = m("m4", T0 + D + 10, &["e@gmail.com"], "example.com", Some("t1"));
    let m5 = m("m5", T0 + D + 20, &["f@gmail.com"], "example.com", Some("t2"));
    let m6 = m("m6", T0 + 40, &["g@aol.com"], "other.example", None);
    vec![
        // Sent day 0, delivered, opened on day 1: counts on day 0.
        m1.send(),
        m1.at("Delivery", 10),
        m1.at("Open", D + 5),
        // A transient bounce.
        m2.send(),
        m2.bounce("Transient"),
        // Two recipients: never counted.
        m3.send(),
        m3.at("Delivery", 10),
        m3.at("Open", 20),
        // Its Send record lost; delivered and complained: still sent.
        m4.at("Delivery", 10),
        m4.at("Complaint", 20),
        // Rejected: never sent.
        m5.event("Reject", "reject", json!({"reason": "virus"})),
        // Clicked without a Delivery record: a click, but no DELIVERY_CLICK.
        m6.at("Click", 50),
    ]
}

fn all_metrics(aggregation: MetricAggregation) -> Vec<(Metric, MetricAggregation)> {
    ses_export_core::vdm::METRICS
        .iter()
        .map(|m| (m.clone(), aggregation.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_counting_rules() {
    let store = store_with(&metric_records()).await;
    let select = |dimensions: Vec<(MetricDimensionName, DimensionSelect)>, metrics, interval| {
        let store = &store;
        async move {
            let query = MetricsQuery {
                interval,
                dimensions,
                metrics,
            };
            select_metrics(store, &account(), &query).await.expect("select")
        }
    };
    let volumes = |row: &ses_export_core::query::MetricsRow| -> Vec<i64> {
        row.values
            .iter()
            .map(|v| match v {
                MetricValue::Volume(n) => *n,
                MetricValue::Rate(_) => panic!("a rate"),
            })
            .collect()
    };
    use DimensionSelect::{All, Values};
    use MetricDimensionName::{EmailIdentity, Isp, TenantName};
    let two_days = Interval::new(T0, T0 + 2 * D - 1);

    // Order of METRICS: SEND COMPLAINT PERMANENT_BOUNCE TRANSIENT_BOUNCE OPEN CLICK DELIVERY D_OPEN D_CLICK D_COMPLAINT
    let by_isp = select(vec![(Isp, All)], all_metrics(MetricAggregation::Volume), two_days).await;
    let rows: Vec<(String, Vec<i64>)> = by_isp
        .rows
        .iter()
        .map(|r| (r.dimension_values.join("/"), volumes(r)))
        .collect();
    assert_eq!(
        rows,
        [
            ("AOL".to_owned(), vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            // Both Gmail deliveries could be opened and clicked (their
            // configuration set has Opens and Clicks, m3's and m6's) and
            // complained about (m4's complaint: Gmail has a feedback loop).
            ("Gmail".to_owned(), vec![2, 1, 0, 0, 1, 0, 2, 2, 2, 2]),
            ("Yahoo".to_owned(), vec![1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        ]
    );
    assert_eq!(by_isp.processed, 4);

    // `*` keeps the empty value, first; a listed value never matches a missing one.
    let by_tenant = select(
        vec![(TenantName, All)],
        vec![(Metric::Send, MetricAggregation::Volume)],
        two_days,
    )
    .await;
    let rows: Vec<(String, Vec<i64>)> = by_tenant
        .rows
        .iter()
        .map(|r| (r.dimension_values.join("/"), volumes(r)))
        .collect();
    assert_eq!(rows, [(String::new(), vec![2]), ("t1".to_owned(), vec![2])]);
    let listed = select(
        vec![(TenantName, Values(vec!["t1".into(), String::new()]))],
        vec![(Metric::Send, MetricAggregation::Volume)],
        two_days,
    )
    .await;
    assert_eq!(listed.rows.len(), 1);
    assert_eq!(listed.rows[0].dimension_values, ["t1"]);

    // Several dimensions, in column order; one row per combination.
    let both = select(
        vec![(EmailIdentity, All), (Isp, Values(vec!["Gmail".into(), "AOL".into()]))],
        vec![(Metric::Delivery, MetricAggregation::Rate)],
        two_days,
    )
    .await;
    let rows: Vec<(String, Vec<MetricValue>)> = both
        .rows
        .iter()
        .map(|r| (r.dimension_values.join("/"), r.values.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("example.com/Gmail".to_owned(), vec![MetricValue::Rate(Some(1.0))]),
            ("other.example/AOL".to_owned(), vec![MetricValue::Rate(Some(0.0))]),
        ]
    );

    // A combination with nothing sent (only a reject) has no row, so no rate over zero sends.
    let rejected_only = select(
        vec![(TenantName, Values(vec!["t2".into()]))],
        vec![(Metric::Delivery, MetricAggregation::Rate)],
        two_days,
    )
    .await;
    assert!(rejected_only.rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_volumes_count_on_the_send_day() {
    let store = store_with(&metric_records()).await;
    let days = |metric: Metric, filter: BTreeMap<MetricDimensionName, String>, interval| {
        let store = &store;
        async move {
            daily_volumes(store, &account(), &metric, &filter, interval)
                .await
                .expect("volumes")
        }
    };
    let two_days = Interval::new(T0 + 5, T0 + 2 * D - 7);
    // m1 was opened on day 1 but sent on day 0.
    assert_eq!(
        days(Metric::Open, BTreeMap::new(), two_days).await,
        [(T0, 1), (T0 + D, 0)]
    );
    assert_eq!(
        days(Metric::Send, BTreeMap::new(), two_days).await,
        [(T0, 3), (T0 + D, 1)]
    );
    let gmail = BTreeMap::from([(MetricDimensionName::Isp, "Gmail".to_owned())]);
    assert_eq!(days(Metric::Delivery, gmail, two_days).await, [(T0, 1), (T0 + D, 1)]);
    // Zero days are listed; the interval clips the days at its ends.
    let week = Interval::new(T0 + 25, T0 + 4 * D);
    assert_eq!(
        days(Metric::Send, BTreeMap::new(), week).await,
        [(T0, 1), (T0 + D, 1), (T0 + 2 * D, 0), (T0 + 3 * D, 0), (T0 + 4 * D, 0)]
    );
}

/// An embedder builds the service's export input only by validation: the
/// model's constraints (`MaxResults` within 1–10,000 bounds the sample's
/// memory) and the service's rules, whether it builds the request in Rust
/// or a job store reads one back as JSON.
#[test]
fn export_queries_are_built_only_by_validation() {
    use ses_export_core::query::{ExportQuery, Selection};
    use ses_export_model::InputError;
    use ses_export_model::types::CreateExportJobRequest;
    let request = |max_results: Value| -> CreateExportJobRequest {
        serde_json::from_value(json!({
            "ExportDataSource": {"MessageInsightsDataSource": {
                "StartDate": 1_704_067_200, "EndDate": 1_704_153_600, "MaxResults": max_results}},
            "ExportDestination": {"DataFormat": "CSV"}
        }))
        .expect("the model's shape")
    };
    for (max_results, kept) in [
        (json!(null), Some(1000)),
        (json!(1), Some(1)),
        (json!(10_000), Some(10_000)),
        (json!(0), None),
        (json!(-1), None),
        (json!(10_001), None),
        (json!(i32::MAX), None),
    ] {
        let built = ExportQuery::try_from(request(max_results.clone()));
        match kept {
            Some(n) => {
                let query = built.expect("in range");
                let Selection::Insights(insights) = query.selection(7) else {
                    panic!("a message-insights export");
                };
                assert_eq!(insights.max_results, n, "{max_results}");
            }
            None => {
                let Err(InputError::Invalid(violations)) = built else {
                    panic!("MaxResults {max_results} was accepted");
                };
                assert!(
                    violations.iter().any(|v| v.path.ends_with("maxResults")),
                    "{violations:?}"
                );
                let stored = serde_json::to_value(request(max_results.clone())).expect("json");
                assert!(serde_json::from_value::<ExportQuery>(stored).is_err(), "{max_results}");
            }
        }
    }
    // The service's own rules too: the end before the start.
    let mut backwards = request(json!(10));
    let source = backwards
        .export_data_source
        .message_insights_data_source
        .as_mut()
        .expect("insights");
    std::mem::swap(&mut source.start_date, &mut source.end_date);
    assert!(ExportQuery::try_from(backwards).is_err());
}
