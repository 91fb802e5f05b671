//! Every `EventStore` backend passes the same conformance suite.

use ses_export_core::backend::memory::MemoryEventStore;
use ses_export_core::backend::sqlite::SqliteEventStore;
use ses_export_core::event_store::{EventStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::run(|| async { Box::new(MemoryEventStore::new()) as Box<dyn EventStore> }).await;
    conformance::check_failed_batch_leaves_nothing(&MemoryEventStore::with_max_events(1000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance::run(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("events-{n}.sqlite"));
        async move { Box::new(SqliteEventStore::open(path).expect("open")) as Box<dyn EventStore> }
    })
    .await;
    // A database capped at 1 MiB: the 3,000-message batch runs out of room
    // halfway, as a full disk would.
    let capped = SqliteEventStore::open_with_max_size(dir.path().join("capped.sqlite"), 1 << 20).expect("open");
    conformance::check_failed_batch_leaves_nothing(&capped).await;
}

/// The same suite with every day settled into a segment after each batch,
/// late records kept beside it (merged at read) or folded in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms_with_settled_days() {
    for fold_ratio in [0, u64::MAX] {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = std::sync::atomic::AtomicUsize::new(0);
        conformance::run(|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("events-{n}.sqlite"));
            async move {
                let store = SqliteEventStore::open(path).expect("open");
                Box::new(conformance::SettledAfterEachBatch::new(Box::new(store), fold_ratio)) as Box<dyn EventStore>
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.sqlite");
    let account = conformance::account();
    {
        let store = SqliteEventStore::open(&path).expect("open");
        let events = conformance::events(&conformance::sample_records());
        store.write_batch(&account, events).await.expect("ingest");
    }
    let store = SqliteEventStore::open(&path).expect("reopen");
    let detail = store.message_insights(&account, "msg-a").await.expect("read");
    assert!(detail.is_some());
    let again = store
        .write_batch(&account, conformance::events(&conformance::sample_records()))
        .await
        .expect("ingest");
    assert_eq!(again.accepted, 0, "what was kept before the reopen is still known");
}
