//! A segment (docs/ARCHITECTURE.md, the columnar engine) is plain Parquet:
//! DuckDB reads one as it is, with the types a user expects (a UTC
//! timestamp, text, integers), and finds what the server wrote. And a
//! server whose days have settled into segments still shows a late event
//! at once, in every API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sesv2::primitives::DateTime;
use aws_sdk_sesv2::types::{DataFormat, ExportDataSource, JobStatus, MessageInsightsDataSource, Metric};
use ses_export_core::event_store::conformance::{generated, reference_records};
use ses_export_tests::{Server, create_export, download, metric_total, wait_for_end};

fn duckdb(sql: &str) -> Option<String> {
    let script = format!(
        "import duckdb\nfor row in duckdb.sql({sql:?}).fetchall():\n    print('|'.join(str(v) for v in row))\n"
    );
    ses_export_tests::python_with("duckdb", "duckdb", &script, b"")
}

#[test]
fn duckdb_reads_a_segment() {
    let mut records = reference_records(&generated(41, 3_000));
    records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("part-1.parquet");
    let file = std::fs::File::create(&path).expect("create");
    ses_export_core::segment::write(&records, file).expect("write");
    let path = path.to_str().expect("path");

    // Rows per ISP, as DuckDB counts them and as the records say.
    let Some(counted) = duckdb(&format!(
        "SELECT isp, count(*) FROM read_parquet('{path}') GROUP BY isp ORDER BY isp"
    )) else {
        return;
    };
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *expected.entry(record.isp.as_str()).or_default() += 1;
    }
    let expected: String = expected.iter().map(|(isp, n)| format!("{isp}|{n}\n")).collect();
    assert_eq!(counted, expected);

    // Types: the send time is a UTC timestamp, flags an integer.
    let described = duckdb(&format!("DESCRIBE SELECT * FROM read_parquet('{path}')")).expect("describe");
    assert!(
        described.contains("send_timestamp|TIMESTAMP WITH TIME ZONE"),
        "{described}"
    );
    assert!(described.contains("flags|USMALLINT"), "{described}");
    assert!(described.contains("subject|VARCHAR"), "{described}");
    let first = duckdb(&format!(
        "SELECT message_id, epoch_ms(send_timestamp) FROM read_parquet('{path}') ORDER BY send_timestamp, message_id, destination LIMIT 1"
    ))
    .expect("first row");
    assert_eq!(
        first,
        format!("{}|{}\n", records[0].message_id, records[0].send_timestamp)
    );
}

/// 2024-01-01T00:00:00Z, in seconds.
const T0: i64 = 1_704_067_200;

/// A record of `kind` for message `id`, sent on 2024-01-0`day` to one
/// recipient.
fn record(kind: &str, id: &str, day: u32) -> String {
    let sent = format!("2024-01-0{day}T10:00:00.000Z");
    let mut record = serde_json::json!({
        "eventType": kind,
        "mail": {
            "timestamp": sent,
            "messageId": id,
            "source": "news@example.com",
            "destination": ["ana@gmail.com"],
            "commonHeaders": {"subject": "Weekly digest"},
        },
    });
    let detail = match kind {
        "Delivery" => {
            serde_json::json!({"timestamp": format!("2024-01-0{day}T10:00:05.000Z"), "recipients": ["ana@gmail.com"]})
        }
        _ => serde_json::json!({}),
    };
    record[kind.to_lowercase()] = detail;
    record.to_string() + "\n"
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

async fn deliveries(client: &aws_sdk_sesv2::Client) -> i64 {
    metric_total(client, Metric::Delivery, T0, T0 + 3 * 86_400).await
}

/// Where a server keeps its segments.
enum Segments {
    /// `events.segments/` in the data dir (SQLite).
    Folder(PathBuf),
    /// `events.segments/` in the managed bucket of an S3 server (PostgreSQL).
    Bucket(String),
}

impl Segments {
    /// The segment files, as paths under `events.segments/`, sorted.
    async fn names(&self) -> Vec<String> {
        match self {
            Segments::Folder(dir) => parquet_files(dir)
                .iter()
                .map(|f| f.strip_prefix(dir).expect("under").display().to_string())
                .collect(),
            Segments::Bucket(endpoint) => {
                let listing = ses_export_tests::http_client()
                    .get(format!("{endpoint}/managed?list-type=2&prefix=events.segments/"))
                    .send()
                    .await
                    .expect("list the bucket")
                    .text()
                    .await
                    .expect("listing");
                let mut names: Vec<String> = listing
                    .split("<Key>")
                    .skip(1)
                    .filter_map(|k| k.split("</Key>").next())
                    .filter_map(|k| k.strip_prefix("events.segments/"))
                    .map(str::to_owned)
                    .collect();
                names.sort();
                names
            }
        }
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let names = self.names().await;
            if done(&names) {
                return names;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what} after 30 s: {names:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The server flags that settle every ended day at once.
const SETTLE_AT_ONCE: [&str; 6] = [
    "--settle-days",
    "0",
    "--settle-quiet-seconds",
    "0",
    "--compact-every-seconds",
    "1",
];

/// Days settle into segments in the data dir (where DuckDB reads them,
/// Hive partitions as columns); a Delivery that arrives after its day
/// settled shows at once in GetMessageInsights, BatchGetMetricData and an
/// export, and the server's next compaction folds it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_a_settled_day_shows_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_in(dir.path(), &SETTLE_AT_ONCE).await;
    let segments = dir.path().join("events.segments");
    late_event_shows_at_once(&server, &Segments::Folder(segments.clone())).await;

    // What docs/operations.md shows a user: DuckDB over the data dir.
    let glob = format!("{}/**/*.parquet", segments.display());
    if let Some(rows) = duckdb(&format!(
        "SELECT account, region, day, count(*) FROM read_parquet('{glob}', hive_partitioning = true) \
         GROUP BY ALL ORDER BY day"
    )) {
        assert_eq!(
            rows,
            "000000000000|us-east-1|2024-01-01|2\n000000000000|us-east-1|2024-01-02|1\n"
        );
    }
}

/// The same on PostgreSQL: the segments are objects in the cluster's
/// bucket, under the same Hive layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_a_settled_day_shows_at_once_on_postgres() {
    let Some(pg) = ses_export_tests::PgServer::start("segments", &SETTLE_AT_ONCE).await else {
        return;
    };
    let bucket = Segments::Bucket(pg.s3_endpoint.clone());
    late_event_shows_at_once(&pg.server, &bucket).await;
    pg.finish().await;
}

async fn late_event_shows_at_once(server: &Server, segments: &Segments) {
    let body = record("Send", "m-1", 1) + &record("Send", "m-2", 1) + &record("Send", "m-3", 2);
    assert_eq!(server.ingest(body.as_bytes()).await["accepted"], 3);

    // Both days settle within a few of the compactor's rounds.
    let names = segments.wait_for("no segments", |names| names.len() >= 2).await;
    assert_eq!(
        names,
        [
            "account=000000000000/region=us-east-1/day=2024-01-01/part-1.parquet",
            "account=000000000000/region=us-east-1/day=2024-01-02/part-1.parquet",
        ]
    );

    // The late Delivery, then at once: every API shows it.
    let client = server.client();
    assert_eq!(deliveries(&client).await, 0);
    assert_eq!(
        server.ingest(record("Delivery", "m-2", 1).as_bytes()).await["accepted"],
        1
    );
    let detail = client
        .get_message_insights()
        .message_id("m-2")
        .send()
        .await
        .expect("GetMessageInsights");
    let events: Vec<&str> = detail.insights()[0]
        .events()
        .iter()
        .filter_map(|e| e.r#type().map(|t| t.as_str()))
        .collect();
    assert_eq!(events, ["SEND", "DELIVERY"]);
    assert_eq!(deliveries(&client).await, 1);
    let source = MessageInsightsDataSource::builder()
        .start_date(DateTime::from_secs(T0))
        .end_date(DateTime::from_secs(T0 + 3 * 86_400))
        .build()
        .expect("source");
    let job = create_export(
        &client,
        ExportDataSource::builder().message_insights_data_source(source).build(),
        DataFormat::Json,
    )
    .await;
    let job = wait_for_end(&client, &job).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    let url = job.export_destination().and_then(|d| d.s3_url()).expect("url");
    let (status, body) = download(url).await;
    assert_eq!(status, 200);
    let lines: Vec<serde_json::Value> = String::from_utf8(body)
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let delivery: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["MESSAGE_ID"].as_str().unwrap_or_default(),
                l["LAST_DELIVERY_EVENT"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        delivery,
        [("m-1", "SEND"), ("m-2", "DELIVERY"), ("m-3", "SEND")],
        "{lines:?}"
    );

    // The next rounds fold the late record into a new generation of its
    // day, and the one it replaces goes.
    let names = segments
        .wait_for("the late record was not folded in", |names| {
            names.iter().any(|n| n.ends_with("part-2.parquet")) && names.len() == 2
        })
        .await;
    assert_eq!(
        names,
        [
            "account=000000000000/region=us-east-1/day=2024-01-01/part-2.parquet",
            "account=000000000000/region=us-east-1/day=2024-01-02/part-1.parquet",
        ]
    );
    assert_eq!(deliveries(&client).await, 1);
}
