//! Daily VDM metrics by ISP from a folder of SES event files as Firehose
//! writes them to S3 (JSON Lines, gzip or plain), with no server and no
//! database beyond memory; or, with `--sqlite FILE`, into a SQLite file
//! that a later run (or `ses-export-server --database-url sqlite://FILE`)
//! reads again.
//!
//! ```sh
//! ses-export seed --messages 2000 | gzip > events/part-0001.gz
//! cargo run -p ses-export-core --example vdm_by_isp -- events
//! cargo run -p ses-export-core --example vdm_by_isp -- events --sqlite events.sqlite
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use ses_export_core::Scope;
use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::backend::sqlite::SqliteEventStore;
use ses_export_core::clock::{Interval, Millis};
use ses_export_core::event::open_events;
use ses_export_core::event_store::EventStore;
use ses_export_core::ingest::{DEFAULT_BATCH, ingest};
use ses_export_core::model::types::Metric;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(args.next().ok_or("usage: vdm_by_isp FOLDER [--sqlite FILE]")?);
    let store: Box<dyn EventStore> = match (args.next().as_deref(), args.next()) {
        (Some("--sqlite"), Some(path)) => Box::new(SqliteEventStore::open(path)?),
        (None, _) => Box::new(MemoryEventStore::new()),
        _ => return Err("usage: vdm_by_isp FOLDER [--sqlite FILE]".into()),
    };
    let account = Scope::development();

    // Every file of the folder, in name order, as Firehose names them.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in &files {
        let input = open_events(std::fs::File::open(path)?)?;
        let report = ingest(&*store, &account, input, DEFAULT_BATCH, &|_, _| {}).await?;
        eprintln!(
            "{}: {} events kept, {} already kept, {} lines rejected",
            path.display(),
            report.accepted,
            report.duplicates,
            report.rejected
        );
    }

    // Daily counts per ISP, as BatchGetMetricData and metrics exports see them.
    let everything = Interval::new(Millis(0), Millis(i64::MAX / 2));
    let mut by_day_and_isp: BTreeMap<(i64, String), [i64; 6]> = BTreeMap::new();
    for row in store.daily_counts(&account, everything).await? {
        let counts = by_day_and_isp.entry((row.day, row.dimensions.isp.clone())).or_default();
        for (i, metric) in [
            Metric::Send,
            Metric::Delivery,
            Metric::Open,
            Metric::Click,
            Metric::PermanentBounce,
            Metric::Complaint,
        ]
        .iter()
        .enumerate()
        {
            counts[i] += row.counts.get(metric);
        }
    }
    println!("day         isp               send  delivery  open  click  bounce  complaint");
    for ((day, isp), [send, delivery, open, click, bounce, complaint]) in by_day_and_isp {
        let date = ses_export_core::clock::format_iso8601(ses_export_core::clock::day_start(day));
        println!(
            "{}  {isp:<15} {send:>6} {delivery:>9} {open:>5} {click:>6} {bounce:>7} {complaint:>10}",
            &date[..10]
        );
    }
    store.close().await?;
    Ok(())
}
