//! The SQLite backend, the embedded default: events in one file, jobs in
//! another, each brought up to date by the same `migrate` at open.
//! Rate limits need no table here: one process serves a SQLite data dir,
//! so the in-memory token buckets are the whole truth.

mod events;
mod jobs;
mod scan;
mod segments;

use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use events::SqliteEventStore;
pub use jobs::SqliteJobStore;

pub(crate) const BACKEND: &str = "sqlite";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Converts what a database holds, inside a migration's transaction.
pub(crate) type Convert = fn(&rusqlite::Transaction<'_>) -> Result<(), BoxError>;

/// One step of a database's schema.
pub(crate) struct Migration {
    pub sql: &'static str,
    /// Runs after `sql`, in its transaction, when the database held data
    /// from before this step (a new database has nothing to convert).
    pub then: Option<Convert>,
}

impl Migration {
    pub const fn sql(sql: &'static str) -> Self {
        Migration { sql, then: None }
    }
}

/// Brings `conn` up to the last of `steps`, each step in its own
/// transaction; `PRAGMA user_version` says how many ran. A database newer
/// than this build is refused, not guessed at.
///
/// `default_region` is where data kept before regions existed goes: a step
/// reads it as `(SELECT region FROM temp.defaults)`.
pub(crate) fn migrate(
    conn: &mut Connection,
    database: &str,
    steps: &[Migration],
    default_region: &crate::Region,
) -> Result<(), BoxError> {
    conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS defaults (region TEXT NOT NULL); DELETE FROM temp.defaults;")?;
    conn.execute(
        "INSERT INTO temp.defaults (region) VALUES (?1)",
        [default_region.as_str()],
    )?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > steps.len() {
        return Err(format!(
            "the {database} database is at schema version {version}, newer than this build's {}",
            steps.len()
        )
        .into());
    }
    for (i, step) in steps.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sql)?;
        if let (Some(then), true) = (step.then, version > 0) {
            then(&tx)?;
        }
        tx.pragma_update(None, "user_version", i64::try_from(i + 1)?)?;
        tx.commit()?;
    }
    Ok(())
}

/// Folds the write-ahead log into the database file and leaves WAL mode,
/// so the file alone is the whole database (for a clean exit).
pub(crate) fn fold_wal(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
}

/// Locks a connection. A panic inside a transaction drops it, which rolls
/// it back, so a poisoned lock still guards a sound connection.
pub(crate) fn lock<T>(conn: &Mutex<T>) -> MutexGuard<'_, T> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
