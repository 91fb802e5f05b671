//! Ingesting files: every good record goes in, every bad line is reported
//! once with its line number and reason, plain or gzip.

use std::io::{Cursor, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::TryStreamExt;
use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::clock::{Interval, Millis};
use ses_export_core::event::open_events;
use ses_export_core::event_store::EventStore;
use ses_export_core::ingest::{IngestFailure, IngestReport, ingest};
use ses_export_core::{Scope, insight::InsightRecord};

const MIXED: &[u8] = include_bytes!("data/mixed.jsonl");

fn account() -> Scope {
    "111111111111/us-east-1".parse().expect("a scope")
}

async fn ingest_bytes(store: &dyn EventStore, bytes: Vec<u8>) -> IngestReport {
    let input = open_events(Cursor::new(bytes)).expect("open");
    ingest(store, &account(), input, 4, &|_, _| {}).await.expect("ingest")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

async fn records(store: &dyn EventStore) -> Vec<InsightRecord> {
    store
        .scan_insights(&account(), Interval::new(Millis(0), Millis(i64::MAX / 2)))
        .try_collect()
        .await
        .expect("scan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_and_good_ones_kept() {
    let store = MemoryEventStore::new();
    let report = ingest_bytes(&store, MIXED.to_vec()).await;
    insta::assert_json_snapshot!(report);
    let kept: Vec<(String, String)> = records(&store)
        .await
        .into_iter()
        .map(|r| (r.message_id, r.destination))
        .collect();
    let expected = [
        ("m1", "ann@gmail.com"),
        ("m12", "hal@web.de"),
        ("m13", "ivy@gmail.com"),
        ("m2", "bob@yahoo.com"),
        ("m3", "cy@outlook.com"),
        ("m4", "dee@aol.com"),
        ("m5", "eve@icloud.com"),
        ("m6", "fay@comcast.net"),
        ("m7", "gus@gmx.de"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(m, d)| (m.to_string(), d.to_string())).collect();
    assert_eq!(kept, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_concatenated_gzip_read_like_plain_text() {
    let plain = MemoryEventStore::new();
    let expected = ingest_bytes(&plain, MIXED.to_vec()).await;

    let zipped = MemoryEventStore::new();
    assert_eq!(ingest_bytes(&zipped, gzip(MIXED)).await, expected);

    // Firehose appends gzip members; a split at a line boundary reads as one file.
    let split = MIXED.iter().position(|b| *b == b'\n').expect("a line") + 1;
    let mut members = gzip(&MIXED[..split]);
    members.extend(gzip(&MIXED[split..]));
    let concatenated = MemoryEventStore::new();
    assert_eq!(ingest_bytes(&concatenated, members).await, expected);
    assert_eq!(records(&concatenated).await, records(&plain).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_gzip_stream_stops_with_what_was_kept() {
    let store = MemoryEventStore::new();
    let mut big = Vec::new();
    for _ in 0..50 {
        big.extend_from_slice(MIXED);
    }
    let zipped = gzip(&big);
    let truncated = zipped[..zipped.len() / 2].to_vec();
    let input = open_events(Cursor::new(truncated)).expect("open");
    let error = ingest(&store, &account(), input, 4, &|_, _| {})
        .await
        .expect_err("a truncated stream");
    assert!(matches!(error.cause, IngestFailure::Read(_)), "{error}");
    assert!(error.report.accepted > 0, "batches before the break are kept: {error}");
    assert_eq!(records(&store).await.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_line_is_reported_not_kept_in_memory() {
    let store = MemoryEventStore::new();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&vec![b'x'; 3 << 20]);
    bytes.push(b'\n');
    bytes.extend_from_slice(MIXED);
    let report = ingest_bytes(&store, bytes).await;
    assert_eq!(report.errors[0].line, 1);
    assert_eq!(report.errors[0].reason, "line is longer than 1048576 bytes");
    assert_eq!(report.accepted, 12);
}

/// One body cannot name regions without end: each region of a batch is a
/// transaction of its own, so past `MAX_REGIONS` an event naming yet
/// another is a rejected line, and the rest is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_names_a_bounded_number_of_regions() {
    use ses_export_core::event_store::conformance::{T0, record};
    use ses_export_core::ingest::MAX_REGIONS;
    let mut body = String::new();
    for i in 0..MAX_REGIONS + 8 {
        let mut r = record("Send", &format!("m-{i}"), T0, &["a@gmail.com"], serde_json::json!({}));
        r["mail"]["sourceArn"] = format!("arn:aws:ses:xx-region-{i}:111111111111:identity/example.com").into();
        body.push_str(&format!("{r}\n"));
    }
    let store = MemoryEventStore::new();
    let regions = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let report = ingest(&store, &account(), Cursor::new(body), 4, &|region, _| {
        regions.lock().expect("lock").insert(region.as_str().to_owned());
    })
    .await
    .expect("ingest");
    // The carrier's region counts among them, though no event named it.
    assert_eq!(report.accepted as usize, MAX_REGIONS - 1, "{report:?}");
    assert_eq!(report.rejected, 9, "{report:?}");
    assert!(report.errors[0].reason.contains("regions"), "{report:?}");
    assert_eq!(regions.lock().expect("lock").len(), MAX_REGIONS - 1);
}
