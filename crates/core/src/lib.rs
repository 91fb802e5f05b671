//! The ses-export domain: SES event records and what is built from them
//! (insight records, VDM metrics), the stores that keep them, and the
//! queries that exports and read APIs run. Knows nothing of HTTP.
//!
//! The flow: [`event::EventReader`] turns JSON lines (plain, gzip, or SNS
//! wrapped) into [`event::SesEvent`]s; an [`store::EventStore`] keeps them
//! per [`AccountId`], maintaining one [`insight::InsightRecord`] per message
//! and recipient and daily metric rollups; [`query`] reads them back for
//! message-insight exports and metrics.

pub mod account;
pub mod clock;
pub mod event;
pub mod export;
pub mod filter;
pub mod flags;
pub mod generate;
pub mod ingest;
pub mod insight;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod page_token;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod query;
#[cfg(feature = "service")]
pub mod retention;
mod rng;
#[cfg(feature = "service")]
pub mod service;
pub mod signing;
#[cfg(feature = "service")]
pub mod storage;
pub mod store;
pub mod validate;
#[cfg(feature = "service")]
pub mod worker;

pub use account::AccountId;
pub use ses_export_model as model;

/// Syncs the folder that holds `path`, so a file just created or renamed
/// there survives power loss (the file's own data is synced separately).
pub fn fsync_dir(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
