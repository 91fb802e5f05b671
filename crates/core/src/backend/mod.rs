//! The backends: where events, jobs and rate-limit buckets are kept. Each
//! has the same layout (`events`, `jobs`, `limits` where it keeps its own,
//! and its one migration scheme in `mod.rs`) and passes the same
//! conformance suites (`event_store::conformance`, `job::conformance`).
//!
//! - [`memory`]: always built; tests and throwaway servers.
//! - [`sqlite`] (feature `sqlite`, default): the embedded default, one
//!   process per data dir.
//! - [`postgres`] (feature `postgres`): several servers sharing one
//!   database, with cluster-wide leases and rate limits.

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod settled;
#[cfg(feature = "sqlite")]
pub mod sqlite;
