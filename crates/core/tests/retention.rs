//! Retention through the service (docs/security.md): managed export files go after
//! their days, their jobs stay; event retention runs beside ingest and
//! never touches what is younger than the limit.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use ses_export_core::backend::sqlite::{SqliteEventStore, SqliteJobStore};
use ses_export_core::clock::{DAY_MILLIS, Interval, Millis};
use ses_export_core::destination::{BucketAccess, BucketBackend, Storage};
use ses_export_core::event::parse_record;
use ses_export_core::event_store::EventStore;
use ses_export_core::generate::{EventGenerator, GeneratorConfig};
use ses_export_core::job::JobStore;
use ses_export_core::limits::Unlimited;
use ses_export_core::model::types::{
    CreateExportJobRequest, DataFormat, ExportDataSource, ExportDestination, GetExportJobRequest, JobStatus,
    MessageInsightsDataSource,
};
use ses_export_core::retention::{Retention, Swept, sweep};
use ses_export_core::service::{ExportService, ServiceConfig};
use ses_export_core::signing::SigningKey;
use ses_export_core::{Scope, event::SesEvent};

/// 2024-01-01T00:00:00Z.
const T0: Millis = Millis(1_704_067_200_000);

fn generated(seed: u64, messages: u64, start: Millis, days: u32) -> Vec<SesEvent> {
    let config = GeneratorConfig::new(seed, messages, start, days);
    EventGenerator::new(config)
        .map(|line| parse_record(&line).expect("parses"))
        .collect()
}

struct Fixture {
    service: Arc<ExportService>,
    events: Arc<dyn EventStore>,
    exports: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp");
    let events: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(dir.path().join("events.sqlite")).expect("events"));
    let jobs: Arc<dyn JobStore> = Arc::new(SqliteJobStore::open(dir.path().join("jobs.sqlite")).expect("jobs"));
    let exports = dir.path().join("exports");
    let storage = Storage::new(&exports, BucketBackend::Local(dir.path().join("buckets"))).expect("storage");
    let service = ExportService::new(
        Arc::clone(&events),
        jobs,
        Arc::new(Unlimited),
        storage,
        SigningKey::random().expect("key"),
        ServiceConfig::default(),
    );
    Fixture {
        service: Arc::new(service),
        events,
        exports,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_exports_go_after_their_days_and_jobs_stay() {
    let f = fixture();
    let account = Scope::development();
    f.events
        .write_batch(&account, generated(3, 50, T0, 2))
        .await
        .expect("ingest");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(Arc::new(f.service.workers()).run(1, stopped));
    let request = CreateExportJobRequest {
        export_data_source: ExportDataSource {
            message_insights_data_source: Some(MessageInsightsDataSource {
                start_date: T0.timestamp().expect("time"),
                end_date: (T0 + 3 * DAY_MILLIS).timestamp().expect("time"),
                include: None,
                exclude: None,
                max_results: None,
            }),
            metrics_data_source: None,
        },
        export_destination: ExportDestination {
            data_format: DataFormat::Csv,
            s3_url: None,
        },
    };
    let job_id = f
        .service
        .create_export_job(
            &account,
            &BucketAccess::Any,
            ses_export_core::query::ExportQuery::try_from(request).expect("a valid request"),
        )
        .await
        .expect("create")
        .job_id
        .expect("id");
    let get = || {
        f.service.get_export_job(
            &account,
            GetExportJobRequest { job_id: job_id.clone() },
            "http://localhost",
        )
    };
    let mut job = get().await.expect("get");
    for _ in 0..200 {
        if job.job_status == Some(JobStatus::Completed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        job = get().await.expect("get");
    }
    assert_eq!(job.job_status, Some(JobStatus::Completed));
    assert!(
        job.export_destination
            .as_ref()
            .and_then(|d| d.s3_url.as_ref())
            .is_some()
    );
    let file = f.exports.join(account.as_str()).join(format!("{job_id}.csv"));
    assert!(file.exists());
    // What a run that crashed mid-write leaves.
    let staging = f.exports.join(account.as_str()).join("crashed.csv.run-7.partial");
    std::fs::write(&staging, b"half a file").expect("staging");

    let ended = Millis::of(job.completed_timestamp.expect("ended"));
    let keep_seven = Retention::new(0, 7);
    // Six days on, the file is still young.
    let swept = sweep(
        &*f.events,
        &**f.service.jobs(),
        f.service.storage(),
        keep_seven,
        ended + 6 * DAY_MILLIS,
    )
    .await
    .expect("sweep");
    assert_eq!(swept, Swept::default());
    assert!(file.exists() && staging.exists());
    // Eight days on, it goes; the job stays, with no download URL.
    let swept = sweep(
        &*f.events,
        &**f.service.jobs(),
        f.service.storage(),
        keep_seven,
        ended + 8 * DAY_MILLIS,
    )
    .await
    .expect("sweep");
    assert_eq!((swept.export_files, swept.staging_files), (1, 1));
    assert!(!file.exists() && !staging.exists());
    let job = get().await.expect("the job stays");
    assert_eq!(job.job_status, Some(JobStatus::Completed));
    assert_eq!(job.export_destination.and_then(|d| d.s3_url), None);
    let _ = stop.send(true);
    workers.await.expect("workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_retention_runs_beside_ingest_and_keeps_the_young() {
    let f = fixture();
    let account = Scope::development();
    // Ten days of old mail, then three days of young mail arriving while
    // the sweep runs.
    let old = generated(5, 4_000, T0, 10);
    let young = generated(6, 2_000, T0 + 20 * DAY_MILLIS, 3);
    f.events.write_batch(&account, old).await.expect("old");
    let now = T0 + 23 * DAY_MILLIS;
    let keep = Retention::new(5, 0);
    let ingesting = {
        let events = Arc::clone(&f.events);
        let account = account.clone();
        let young = young.clone();
        tokio::spawn(async move {
            for chunk in young.chunks(500) {
                events.write_batch(&account, chunk.to_vec()).await.expect("young");
            }
        })
    };
    let swept = sweep(&*f.events, &**f.service.jobs(), f.service.storage(), keep, now)
        .await
        .expect("sweep");
    ingesting.await.expect("ingest ran to its end beside the sweep");
    assert_eq!(swept.messages, 4_000);

    let everything = Interval::new(Millis(0), Millis(i64::MAX / 2));
    let records: Vec<_> = f
        .events
        .scan_insights(&account, everything)
        .try_collect()
        .await
        .expect("scan");
    assert!(records.iter().all(|r| r.send_timestamp >= T0 + 20 * DAY_MILLIS));
    let young_messages: std::collections::HashSet<&str> = young.iter().map(|e| e.mail.message_id.as_str()).collect();
    let kept_messages: std::collections::HashSet<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(kept_messages, young_messages, "every young message is kept");
}
