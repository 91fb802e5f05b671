//! The conformance suite for [`JobStore`] backends: checks over
//! `&dyn JobStore` that every backend runs in its own tests.

use std::future::Future;
use std::sync::Arc;

use ses_export_model::Timestamp;
use ses_export_model::types::{
    CreateExportJobRequest, DataFormat, ExportDataSource, ExportDestination, ExportSourceType, JobStatus,
    MessageInsightsDataSource,
};

use super::{ExportJob, JobFilter, JobStatistics, JobStore, JobStoreError, JobUpdate};
use crate::Scope;
use crate::clock::Millis;
use crate::query::ExportQuery;

/// Runs every check, each on a fresh store from `new_store`.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    check_create_get_and_accounts(&*new_store().await).await;
    check_active_limit(&*new_store().await).await;
    check_list_order_filters_and_cursor(&*new_store().await).await;
    check_transitions_are_compare_and_set(&*new_store().await).await;
    check_claims_are_exclusive(new_store().await).await;
    check_requeue(&*new_store().await).await;
    check_leases(&*new_store().await).await;
    check_export_retention(&*new_store().await).await;
}

fn account(n: u8) -> Scope {
    format!("{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}/us-east-1")
        .parse()
        .expect("12 digits")
}

/// A job as `CreateExportJob` makes it.
pub fn job(account_n: u8, id: &str, created: i64) -> ExportJob {
    let request = CreateExportJobRequest {
        export_data_source: ExportDataSource {
            message_insights_data_source: Some(MessageInsightsDataSource {
                start_date: Timestamp::from_secs(1_704_067_200).expect("in range"),
                end_date: Timestamp::from_secs_f64(1_704_153_600.5).expect("in range"),
                include: None,
                exclude: None,
                max_results: Some(10),
            }),
            metrics_data_source: None,
        },
        export_destination: ExportDestination {
            data_format: DataFormat::Csv,
            s3_url: None,
        },
    };
    ExportJob {
        account: account(account_n),
        job_id: id.to_owned(),
        status: JobStatus::Created,
        query: ExportQuery::try_from(request).expect("a valid request"),
        created: Millis(created),
        completed: None,
        failure: None,
        statistics: None,
        output_key: None,
        lease: None,
    }
}

/// A job comes back as created, and only to its account.
pub async fn check_create_get_and_accounts(store: &dyn JobStore) {
    let a = job(1, "job-a", 1000);
    store.create(&a, 20).await.expect("create");
    assert_eq!(store.get(&account(1), "job-a").await.expect("get"), Some(a.clone()));
    assert_eq!(store.get(&account(2), "job-a").await.expect("get"), None);
    assert!(matches!(store.create(&a, 20).await, Err(JobStoreError::AlreadyExists)));
    // The same id in another account is another job.
    store.create(&job(2, "job-a", 1000), 20).await.expect("create");
}

/// `create` refuses past the active-jobs limit; an ended job frees a place.
pub async fn check_active_limit(store: &dyn JobStore) {
    for i in 0..3 {
        store
            .create(&job(1, &format!("j{i}"), i), 3)
            .await
            .expect("under the limit");
    }
    assert!(matches!(
        store.create(&job(1, "j3", 3), 3).await,
        Err(JobStoreError::TooManyActive { limit: 3 })
    ));
    store
        .create(&job(2, "other", 3), 3)
        .await
        .expect("another account has its own limit");
    let done = JobUpdate {
        completed: Some(Millis(10)),
        ..JobUpdate::default()
    };
    store
        .transition(&account(1), "j0", &[JobStatus::Created], JobStatus::Cancelled, done)
        .await
        .expect("cancel");
    store
        .create(&job(1, "j3", 3), 3)
        .await
        .expect("a finished job frees its place");
}

/// `list` gives newest first, filters by status and type, and pages.
pub async fn check_list_order_filters_and_cursor(store: &dyn JobStore) {
    for (id, created) in [("a", 1), ("b", 3), ("c", 2), ("d", 3), ("e", 5)] {
        store.create(&job(1, id, created), 100).await.expect("create");
    }
    store.create(&job(2, "x", 4), 100).await.expect("create");
    let ids = |jobs: Vec<ExportJob>| jobs.into_iter().map(|j| j.job_id).collect::<Vec<_>>().join(" ");
    let all = store
        .list(&account(1), &JobFilter::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(ids(all.clone()), "e d b c a");
    let page = store
        .list(&account(1), &JobFilter::default(), None, 2)
        .await
        .expect("list");
    assert_eq!(ids(page.clone()), "e d");
    let next = store
        .list(&account(1), &JobFilter::default(), Some(&page[1].cursor()), 2)
        .await
        .expect("list");
    assert_eq!(ids(next), "b c");
    store
        .transition(
            &account(1),
            "b",
            &[JobStatus::Created],
            JobStatus::Processing,
            JobUpdate::default(),
        )
        .await
        .expect("move");
    let processing = JobFilter {
        status: Some(JobStatus::Processing),
        source_type: None,
    };
    assert_eq!(
        ids(store.list(&account(1), &processing, None, 10).await.expect("list")),
        "b"
    );
    let metrics = JobFilter {
        status: None,
        source_type: Some(ExportSourceType::MetricsData),
    };
    assert_eq!(
        ids(store.list(&account(1), &metrics, None, 10).await.expect("list")),
        ""
    );
}

/// `transition` changes a status only from the statuses it names.
pub async fn check_transitions_are_compare_and_set(store: &dyn JobStore) {
    store.create(&job(1, "j", 1), 20).await.expect("create");
    let (job, moved) = store
        .transition(
            &account(1),
            "j",
            &[JobStatus::Created],
            JobStatus::Processing,
            JobUpdate::default(),
        )
        .await
        .expect("transition")
        .expect("the job exists");
    assert!(moved);
    assert_eq!(job.status, JobStatus::Processing);
    // A cancel wins; the worker's late COMPLETED then does not apply.
    let cancel = JobUpdate {
        completed: Some(Millis(50)),
        ..JobUpdate::default()
    };
    let active = [JobStatus::Created, JobStatus::Processing];
    let (_, moved) = store
        .transition(&account(1), "j", &active, JobStatus::Cancelled, cancel)
        .await
        .expect("transition")
        .expect("exists");
    assert!(moved);
    let finish = JobUpdate {
        completed: Some(Millis(60)),
        statistics: Some(JobStatistics {
            processed: 5,
            exported: 4,
        }),
        output_key: Some("k".into()),
        ..JobUpdate::default()
    };
    let (job, moved) = store
        .transition(&account(1), "j", &[JobStatus::Processing], JobStatus::Completed, finish)
        .await
        .expect("transition")
        .expect("exists");
    assert!(!moved);
    assert_eq!(
        (job.status, job.completed, job.statistics),
        (JobStatus::Cancelled, Some(Millis(50)), None)
    );
    let missing = store
        .transition(&account(1), "nope", &active, JobStatus::Cancelled, JobUpdate::default())
        .await
        .expect("transition");
    assert!(missing.is_none());
    // The request comes back as it went in, fractional timestamp and all.
    let stored = store.get(&account(1), "j").await.expect("get").expect("exists");
    assert_eq!(stored.query, self::job(1, "j", 1).query);
}

/// Concurrent claims hand each job to exactly one caller.
pub async fn check_claims_are_exclusive(store: Arc<dyn JobStore>) {
    for i in 0..20 {
        store
            .create(&job(1 + (i % 2) as u8, &format!("j{i:02}"), i), 100)
            .await
            .expect("create");
    }
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = store.claim("w", Millis(0), LEASE).await.expect("claim") {
                assert_eq!(job.status, JobStatus::Processing);
                mine.push(job.job_id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    all.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("j{i:02}")).collect();
    assert_eq!(all, expected, "each job claimed exactly once");
}

/// A sole server's `PROCESSING` jobs go back to `CREATED`.
pub async fn check_requeue(store: &dyn JobStore) {
    store.create(&job(1, "a", 1), 20).await.expect("create");
    store.create(&job(1, "b", 2), 20).await.expect("create");
    let first = store.claim("w", Millis(0), LEASE).await.expect("claim").expect("a job");
    assert_eq!(first.job_id, "a", "oldest first");
    assert_eq!(store.requeue_processing().await.expect("requeue"), 1);
    let again = store.claim("w", Millis(0), LEASE).await.expect("claim").expect("a job");
    assert_eq!(again.job_id, "a");
}

/// How long test leases last.
const LEASE: i64 = 10_000;

/// A lease keeps others off until it expires; only its owner renews
/// or finishes.
pub async fn check_leases(store: &dyn JobStore) {
    store.create(&job(1, "a", 1), 20).await.expect("create");
    let claimed = store
        .claim("w1", Millis(1_000), LEASE)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(
        claimed.lease.as_ref().map(|l| (l.owner.as_str(), l.expires)),
        Some(("w1", Millis(11_000)))
    );
    // While the lease holds, nobody else gets the job.
    assert!(store.claim("w2", Millis(5_000), LEASE).await.expect("claim").is_none());
    assert!(
        store
            .renew(&account(1), "a", "w1", Millis(20_000))
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew(&account(1), "a", "w2", Millis(30_000))
            .await
            .expect("renew"),
        "not w2's lease"
    );
    assert!(
        store.claim("w2", Millis(15_000), LEASE).await.expect("claim").is_none(),
        "renewed to 20,000"
    );
    // w1 dies; after its lease expires w2 takes the job over, and w1's late finish does not count.
    let taken = store
        .claim("w2", Millis(20_001), LEASE)
        .await
        .expect("claim")
        .expect("the expired job");
    assert_eq!(taken.job_id, "a");
    let done = JobUpdate {
        completed: Some(Millis(25_000)),
        ..JobUpdate::default()
    };
    assert!(
        !store
            .finish(&account(1), "a", "w1", JobStatus::Completed, done.clone())
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish(&account(1), "a", "w2", JobStatus::Completed, done.clone())
            .await
            .expect("finish")
    );
    let ended = store.get(&account(1), "a").await.expect("get").expect("exists");
    assert_eq!(
        (ended.status, ended.completed, ended.lease),
        (JobStatus::Completed, Some(Millis(25_000)), None)
    );
    assert!(
        !store
            .finish(&account(1), "a", "w2", JobStatus::Failed, done)
            .await
            .expect("finish"),
        "once"
    );
    // A cancelled job cannot be renewed: that is how a worker learns of the cancel.
    store.create(&job(1, "b", 2), 20).await.expect("create");
    store
        .claim("w1", Millis(30_000), LEASE)
        .await
        .expect("claim")
        .expect("b");
    store
        .transition(
            &account(1),
            "b",
            &[JobStatus::Processing],
            JobStatus::Cancelled,
            JobUpdate::default(),
        )
        .await
        .expect("cancel");
    assert!(
        !store
            .renew(&account(1), "b", "w1", Millis(40_000))
            .await
            .expect("renew")
    );
}

/// Retention: jobs that ended before a time and still have a managed file
/// are listed oldest first, across accounts; clearing the file keeps the job.
pub async fn check_export_retention(store: &dyn JobStore) {
    for (n, (account_n, id, completed)) in [(1, "old", 1_000), (2, "older", 500), (1, "young", 9_000)]
        .into_iter()
        .enumerate()
    {
        store.create(&job(account_n, id, n as i64), 20).await.expect("create");
        let owner = format!("w-{id}");
        store
            .claim(&owner, Millis(100), LEASE)
            .await
            .expect("claim")
            .expect("a job");
        let done = JobUpdate {
            completed: Some(Millis(completed)),
            output_key: Some(format!("{id}.csv")),
            ..JobUpdate::default()
        };
        assert!(
            store
                .finish(&account(account_n), id, &owner, JobStatus::Completed, done)
                .await
                .expect("finish")
        );
    }
    let ended = store.ended_with_output(Millis(5_000), 10).await.expect("ended");
    let ids: Vec<&str> = ended.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(ids, ["older", "old"]);
    assert_eq!(store.ended_with_output(Millis(5_000), 1).await.expect("ended").len(), 1);
    store.clear_output(&account(2), "older").await.expect("clear");
    let ids: Vec<String> = store
        .ended_with_output(Millis(5_000), 10)
        .await
        .expect("ended")
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(ids, ["old"]);
    let kept = store
        .get(&account(2), "older")
        .await
        .expect("get")
        .expect("the job stays");
    assert_eq!((kept.status, kept.output_key), (JobStatus::Completed, None));
}
