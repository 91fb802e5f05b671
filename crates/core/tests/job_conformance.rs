//! Every `JobStore` backend passes the same conformance suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ses_export_core::backend::memory::MemoryJobStore;
use ses_export_core::backend::sqlite::SqliteJobStore;
use ses_export_core::job::{JobStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_job_store_conforms() {
    conformance::run(|| async { Arc::new(MemoryJobStore::new()) as Arc<dyn JobStore> }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_job_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    conformance::run(|| {
        let path = dir
            .path()
            .join(format!("jobs-{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteJobStore::open(path).expect("open")) as Arc<dyn JobStore> }
    })
    .await;
}
