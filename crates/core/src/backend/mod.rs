//! The backends: where events, jobs and rate-limit buckets are kept. Each
//! has the same layout (`events`, `jobs`, `limits` where it keeps its own,
//! and in `mod.rs` how its transaction runs the one migration scheme,
//! `migrate`) and passes the same conformance suites
//! (`event_store::conformance`, `job::conformance`).
//!
//! - [`memory`]: always built; tests and throwaway servers.
//! - [`sqlite`] (feature `sqlite`, default): the embedded default, one
//!   process per data dir.
//! - [`postgres`] (feature `postgres`): several servers sharing one
//!   database, with cluster-wide leases and rate limits.

pub mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
#[cfg(feature = "service")]
mod open;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "service"))]
mod open_error;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod settled;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "service")]
pub use open::{Database, OpenOptions, Stores, open};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "service"))]
pub use open_error::OpenError;

/// The rollup tables' metric columns, made from [`crate::vdm::METRICS`]: a
/// metric's column is its wire name in lower case (`PERMANENT_BOUNCE` is
/// `permanent_bounce`), in slot order, so a new metric is an entry there
/// and a migration adding its column, not a statement to edit by position.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod rollup {
    use crate::vdm::METRICS;

    /// The columns, in slot order.
    pub(crate) fn columns() -> Vec<String> {
        METRICS.iter().map(|m| m.as_str().to_ascii_lowercase()).collect()
    }

    /// `c1, c2, ...`.
    pub(crate) fn column_list() -> String {
        columns().join(", ")
    }

    /// The upsert's sums: `c = old.c + excluded.c, ...` (`old` names the
    /// stored row; empty for SQLite, where a bare column is it).
    pub(crate) fn sums(old: &str) -> String {
        columns()
            .iter()
            .map(|c| format!("{c} = {old}{c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Declares [`RECORD_COLUMNS`] and [`Col`], its positions, from one list.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! record_columns {
    ($first:ident = $first_sql:literal $(, $name:ident = $sql:literal)* $(,)?) => {
        /// The columns of an insight record as both databases select them
        /// (`i`: the record's row, `m`: its message's); a row is read by
        /// [`Col`], never by a number.
        pub(crate) const RECORD_COLUMNS: &str = concat!($first_sql $(, ", ", $sql)*);

        /// The position of each of [`RECORD_COLUMNS`].
        #[derive(Debug, Clone, Copy)]
        #[repr(usize)]
        pub(crate) enum Col {
            $first,
            $($name,)*
        }

        impl Col {
            /// The column's index in a row that starts [`RECORD_COLUMNS`]
            /// at `at`.
            pub(crate) fn at(self, at: usize) -> usize {
                at + self as usize
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
record_columns!(
    SendTs = "i.send_ts",
    MessageId = "i.message_id",
    Destination = "i.destination",
    From = "m.from_address",
    Subject = "m.subject",
    Isp = "i.isp",
    EmailIdentity = "i.email_identity",
    ConfigurationSet = "i.configuration_set",
    TenantName = "i.tenant_name",
    RecipientCount = "i.recipient_count",
    Flags = "i.flags",
);
