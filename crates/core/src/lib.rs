//! The ses-export domain: SES event records and what is built from them
//! (insight records, VDM metrics), the stores that keep them, and the
//! queries that exports and read APIs run. Knows nothing of HTTP.
//!
//! The flow: [`event::EventReader`] turns JSON lines (plain, gzip, or SNS
//! wrapped) into [`event::SesEvent`]s; [`ingest`] hands them in batches to
//! an [`event_store::EventStore`] (one of the [`backend`]s), which keeps
//! them per [`AccountId`], maintaining one [`insight::InsightRecord`] per
//! message and recipient and daily [`vdm`] metric rollups; [`query`] reads
//! them back for message-insight exports and metrics, and [`rows`] writes
//! them as CSV or JSON Lines.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod account;
pub mod backend;
pub mod clock;
pub mod compaction;
#[cfg(feature = "service")]
pub mod destination;
pub mod event;
pub mod event_store;
pub mod filter;
pub mod flags;
pub mod generate;
pub mod ids;
pub mod ingest;
pub mod insight;
pub mod job;
pub mod limits;
pub mod page_token;
pub mod query;
#[cfg(feature = "service")]
pub mod retention;
mod rng;
pub mod rows;
pub mod rules;
#[cfg(feature = "segments")]
pub mod segment;
#[cfg(feature = "service")]
pub mod service;
pub mod signing;
pub mod vdm;
#[cfg(feature = "service")]
pub mod worker;

pub use account::{AccountId, Region, Scope};

/// `error` and what caused it, each after a colon (a cause already in the
/// text is not repeated): a TLS refusal, say, names the certificate
/// problem, not only that a handshake failed.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
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
