//! Property: over random event streams (shuffled, duplicated, split into
//! random batches), the fast metric path (daily rollups kept at ingest,
//! partial days recounted) equals a plain recount over the records, for any
//! interval, on every backend.

use proptest::prelude::*;
use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::backend::sqlite::SqliteEventStore;
use ses_export_core::clock::{DAY_MILLIS, Interval};
use ses_export_core::event::SesEvent;
use ses_export_core::event_store::EventStore;
use ses_export_core::event_store::conformance::{T0, account, generated, reference_counts, reference_records};

#[derive(Debug, Clone)]
struct Case {
    events: Vec<SesEvent>,
    batches: Vec<usize>,
    intervals: Vec<Interval>,
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
            )
        })
        .prop_map(|(events, order, batches, bounds)| Case {
            events: order.into_iter().filter_map(|i| events.get(i).cloned()).collect(),
            batches,
            intervals: bounds
                .into_iter()
                .map(|(start, len)| Interval::new(T0 - DAY_MILLIS / 2 + start, T0 - DAY_MILLIS / 2 + start + len))
                .collect(),
        })
}

async fn check(store: &dyn EventStore, case: &Case) -> Result<(), TestCaseError> {
    let mut rest = case.events.as_slice();
    for size in case.batches.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at((*size).min(rest.len()));
        store.write_batch(&account(), batch.to_vec()).await.expect("ingest");
        rest = tail;
    }
    let records = reference_records(&case.events);
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
    /// the shared phases), when the test database is set.
    #[test]
    fn postgres_rollups_equal_a_recount(case in case(120)) {
        if let Some(base) = common::database_url() {
            runtime().block_on(async {
                let url = common::schema(&base, "properties").await;
                let pool = ses_export_core::backend::postgres::connect(&url, 4).await.expect("connect");
                let result = check(&ses_export_core::backend::postgres::PgEventStore::new(pool), &case).await;
                common::drop_schemas(&base, "properties").await;
                result
            })?;
        }
    }
}
