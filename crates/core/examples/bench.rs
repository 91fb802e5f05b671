//! The workloads `cargo xtask bench` measures, one per process so each
//! reports its own peak memory: generate, ingest, insights, metrics.
//! Prints one JSON object with the result and `peak_rss_bytes`.

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use ses_export_core::backend::sqlite::SqliteEventStore;
use ses_export_core::clock::{DAY_MILLIS, Interval, Millis};
use ses_export_core::event::open_events;
use ses_export_core::event_store::EventStore;
use ses_export_core::filter::{InsightFilter, TextPattern};
use ses_export_core::generate::{Arrival, GeneratorConfig, write_events};
use ses_export_core::ingest::ingest;
use ses_export_core::query::{DimensionSelect, InsightQuery, MetricsQuery, select_insights, select_metrics};
use ses_export_core::{Scope, vdm::METRICS};
use ses_export_model::types::{MetricAggregation, MetricDimensionName};

// The allocator the server binary uses, so the numbers are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the generated messages start: 2024-01-01T00:00:00Z.
const START: Millis = Millis(1_704_067_200_000);
const DAYS: u32 = 30;

fn account() -> Scope {
    "000000000000/us-east-1".parse().expect("a scope")
}

/// The peak resident set of this process, from /proc.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The interval the queries ask about: 20 of the 30 days, starting and
/// ending mid-day so partial days are recounted too.
fn query_interval() -> Interval {
    Interval::new(
        START + 5 * DAY_MILLIS + DAY_MILLIS / 3,
        START + 25 * DAY_MILLIS + DAY_MILLIS / 2,
    )
}

/// A store from its spec: a PostgreSQL URL, or a SQLite file path.
fn open_store(
    runtime: &tokio::runtime::Runtime,
    spec: &str,
) -> Result<Box<dyn EventStore>, Box<dyn std::error::Error>> {
    if spec.starts_with("postgres://") {
        let pool = runtime.block_on(ses_export_core::backend::postgres::connect(spec, 4))?;
        Ok(Box::new(ses_export_core::backend::postgres::PgEventStore::new(pool)))
    } else {
        Ok(Box::new(SqliteEventStore::open(spec)?))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let result = match arg(0)? {
        "generate" => {
            let messages: u64 = arg(1)?.parse()?;
            let config =
                GeneratorConfig::new(2026, messages, START, DAYS).with_arrival(match args.get(3).map(String::as_str) {
                    Some("backfill") => Arrival::Backfill,
                    _ => Arrival::Live,
                });
            let events = write_events(&config, BufWriter::new(File::create(arg(2)?)?))?;
            serde_json::json!({"events": events})
        }
        "pg-schema" => {
            // A fresh schema in the database at BASE; prints its URL.
            let base = arg(1)?;
            let name = format!("bench_{}", std::process::id());
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))
                    .await
            })?;
            let separator = if base.contains('?') { '&' } else { '?' };
            serde_json::json!({"url": format!("{base}{separator}options=-c%20search_path%3D{name}")})
        }
        "ingest" => {
            let store = open_store(&runtime, arg(1)?)?;
            let input = open_events(File::open(arg(2)?)?)?;
            let report = runtime.block_on(ingest(&*store, &account(), input, 5000, &|_, _| {}))?;
            serde_json::json!({"accepted": report.accepted, "rejected": report.rejected})
        }
        "insights" => {
            let store = open_store(&runtime, arg(1)?)?;
            let include = InsightFilter {
                from_email_address: vec![TextPattern::parse("news@*").map_err(|e| e.to_string())?],
                isp: vec!["Gmail".into(), "Yahoo".into(), "Hotmail".into()],
                ..InsightFilter::default()
            };
            let query = InsightQuery {
                interval: query_interval(),
                include,
                exclude: InsightFilter::default(),
                max_results: 10_000,
                seed: 7,
            };
            let s = runtime.block_on(select_insights(&*store, &account(), &query, &Default::default()))?;
            serde_json::json!({"processed": s.processed, "matched": s.matched, "exported": s.records.len()})
        }
        "metrics" => {
            let store = open_store(&runtime, arg(1)?)?;
            let query = MetricsQuery {
                interval: query_interval(),
                dimensions: vec![
                    (MetricDimensionName::EmailIdentity, DimensionSelect::All),
                    (MetricDimensionName::Isp, DimensionSelect::All),
                ],
                metrics: METRICS.iter().map(|m| (m.clone(), MetricAggregation::Volume)).collect(),
            };
            let s = runtime.block_on(select_metrics(&*store, &account(), &query))?;
            serde_json::json!({"processed": s.processed, "rows": s.rows.len()})
        }
        other => return Err(format!("unknown workload {other}").into()),
    };
    let mut out = result;
    out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    out["peak_rss_bytes"] = serde_json::json!(peak_rss_bytes());
    println!("{out}");
    Ok(())
}
