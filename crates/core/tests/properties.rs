//! Property: over random event streams (shuffled, duplicated, split into
//! random batches), the fast metric path (daily rollups kept at ingest,
//! partial days recounted) equals a plain recount over the records, for any
//! interval, on every backend; and the records a scan returns are the
//! reference records, with days settling into segments between batches.

use futures_util::TryStreamExt;
use proptest::prelude::*;
use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::backend::sqlite::SqliteEventStore;
use ses_export_core::clock::{DAY_MILLIS, Interval, Millis};
use ses_export_core::event::SesEvent;
use ses_export_core::event_store::conformance::{T0, account, generated, reference_counts, reference_records};
use ses_export_core::event_store::{CompactionPlan, EventStore};

#[derive(Debug, Clone)]
struct Case {
    events: Vec<SesEvent>,
    batches: Vec<usize>,
    intervals: Vec<Interval>,
    /// After the batch of the same index: compact days before T0 + this
    /// many days (with a fold ratio), or not.
    compactions: Vec<Option<(i64, u64)>>,
}

fn case(max_messages: u64) -> impl Strategy<Value = Case> {
    (any::<u64>(), 1..max_messages)
        .prop_flat_map(|(seed, messages)| {
            let events = generated(seed, messages);
            let n = events.len();
            (
                Just(events),
                // A permutation, some events twice, and where batches end.
                Just(()).prop_perturb(move |_, mut rng| {
                    let mut order: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        order.swap(i, rng.random_range(0..=i));
                    }
                    let dups: Vec<usize> = (0..n / 10).map(|_| rng.random_range(0..n.max(1))).collect();
                    order.extend(dups);
                    order
                }),
                proptest::collection::vec(1usize..200, 1..20),
                proptest::collection::vec((0i64..4 * DAY_MILLIS, 0i64..3 * DAY_MILLIS), 1..6),
                proptest::collection::vec(
                    proptest::option::of((0i64..5, prop_oneof![Just(0u64), Just(16), Just(u64::MAX)])),
                    1..8,
                ),
            )
        })
        .prop_map(|(events, order, batches, bounds, compactions)| Case {
            events: order.into_iter().filter_map(|i| events.get(i).cloned()).collect(),
            batches,
            intervals: bounds
                .into_iter()
                .map(|(start, len)| Interval::new(T0 - DAY_MILLIS / 2 + start, T0 - DAY_MILLIS / 2 + start + len))
                .collect(),
            compactions,
        })
}

async fn check(store: &dyn EventStore, case: &Case) -> Result<(), TestCaseError> {
    let mut rest = case.events.as_slice();
    for (size, compaction) in case.batches.iter().cycle().zip(case.compactions.iter().cycle()) {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at((*size).min(rest.len()));
        store.write_batch(&account(), batch.to_vec()).await.expect("ingest");
        rest = tail;
        if let Some((days, fold_ratio)) = compaction {
            let plan = CompactionPlan {
                settled_before: T0 + days * DAY_MILLIS,
                quiet_since: Millis::MAX,
                fold_ratio: *fold_ratio,
            };
            store.compact(&plan).await.expect("compact");
        }
    }
    let mut records = reference_records(&case.events);
    records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let everything = Interval::new(T0 - 10 * DAY_MILLIS, T0 + 30 * DAY_MILLIS);
    let scanned: Vec<_> = store
        .scan_insights(&account(), everything)
        .try_collect()
        .await
        .expect("scan");
    prop_assert_eq!(&scanned, &records);
    for interval in &case.intervals {
        let expected: Vec<_> = records
            .iter()
            .filter(|r| interval.contains(r.send_timestamp))
            .cloned()
            .collect();
        let scanned: Vec<_> = store
            .scan_insights(&account(), *interval)
            .try_collect()
            .await
            .expect("scan");
        prop_assert_eq!(scanned, expected, "{:?}", interval);
    }
    if let Some(record) = records.get(records.len() / 2) {
        let detail = store
            .message_insights(&account(), &record.message_id)
            .await
            .expect("read");
        let recipients = detail.map(|d| d.recipients.len()).unwrap_or_default();
        let expected = records.iter().filter(|r| r.message_id == record.message_id).count();
        prop_assert_eq!(recipients, expected);
    }
    for interval in &case.intervals {
        let fast = store.daily_counts(&account(), *interval).await.expect("counts");
        let slow = reference_counts(&records, &case.events, *interval);
        prop_assert_eq!(fast, slow, "{:?}", interval);
    }
    Ok(())
}

mod common;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_rollups_equal_a_recount(case in case(120)) {
        runtime().block_on(check(&MemoryEventStore::new(), &case))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_rollups_equal_a_recount(case in case(120)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteEventStore::open(dir.path().join("events.sqlite")).expect("open");
        runtime().block_on(check(&store, &case))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// The same on PostgreSQL (whose ingest is its own set-based driver of
    /// the shared phases), its settled days in a bucket (a folder here),
    /// when the test database is set.
    #[test]
    fn postgres_rollups_equal_a_recount(case in case(120)) {
        if let Some(base) = common::database_url() {
            runtime().block_on(async {
                use ses_export_core::backend::postgres::{PgEventStore, SegmentBucket};
                let dir = tempfile::tempdir().expect("temp dir");
                let bucket = dir.path().join("bucket");
                std::fs::create_dir_all(&bucket).expect("bucket");
                let objects = object_store::local::LocalFileSystem::new_with_prefix(&bucket).expect("bucket");
                let segments = SegmentBucket::new(std::sync::Arc::new(objects), &dir.path().join("cache"), 64 << 20)
                    .expect("cache");
                let url = common::schema(&base, "properties").await;
                let pool = ses_export_core::backend::postgres::connect(&url, 4).await.expect("connect");
                let result = check(&PgEventStore::with_segments(pool, segments), &case).await;
                common::drop_schemas(&base, "properties").await;
                result
            })?;
        }
    }
}
