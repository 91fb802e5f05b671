//! The SQLite backend, the embedded default: events in one file, jobs in
//! another, each brought up to date by the same `migrate` at open.
//! Rate limits need no table here: one process serves a SQLite data dir,
//! so the in-memory token buckets are the whole truth.

mod events;
mod jobs;
#[cfg(feature = "test-support")]
pub mod older;
mod scan;
mod segments;

use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use events::SqliteEventStore;
pub use jobs::SqliteJobStore;

pub(crate) const BACKEND: &str = "sqlite";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::backend::OpenError;
use crate::backend::migrate::SchemaTxn;
pub(crate) use crate::backend::migrate::Step;

/// Derives what the kept events mean again, inside the migrating transaction.
pub(crate) type Rederive = fn(&rusqlite::Transaction<'_>) -> Result<(), BoxError>;

/// Brings `conn` up to the last of `steps` in one transaction
/// ([`crate::backend::migrate`]); `PRAGMA user_version` says how many ran.
///
/// `default_region` is where data kept before regions existed goes: a step
/// reads it as `(SELECT region FROM temp.defaults)`.
pub(crate) fn migrate(
    conn: &mut Connection,
    database: &str,
    steps: &[Step],
    default_region: &crate::Region,
    rederive: Option<Rederive>,
) -> Result<(), OpenError> {
    use futures_util::FutureExt;
    let mut txn = Migrating {
        tx: conn.transaction().map_err(boxed)?,
        rederive,
    };
    txn.tx
        .execute_batch("CREATE TEMP TABLE IF NOT EXISTS defaults (region TEXT NOT NULL); DELETE FROM temp.defaults;")
        .map_err(boxed)?;
    txn.tx
        .execute(
            "INSERT INTO temp.defaults (region) VALUES (?1)",
            [default_region.as_str()],
        )
        .map_err(boxed)?;
    // Every step of a SQLite transaction runs when polled: nothing waits.
    crate::backend::migrate::migrate(&mut txn, database, steps)
        .now_or_never()
        .unwrap_or_else(|| Err(OpenError::new("a SQLite migration step waited".to_owned())))?;
    txn.tx.commit().map_err(boxed)?;
    Ok(())
}

fn boxed(e: rusqlite::Error) -> OpenError {
    OpenError::caused("migrating the schema", e)
}

struct Migrating<'c> {
    tx: rusqlite::Transaction<'c>,
    rederive: Option<Rederive>,
}

impl SchemaTxn for Migrating<'_> {
    async fn version(&mut self) -> Result<usize, BoxError> {
        let version: i64 = self.tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(version).unwrap_or(usize::MAX))
    }

    async fn run(&mut self, sql: &str) -> Result<(), BoxError> {
        Ok(self.tx.execute_batch(sql)?)
    }

    async fn set_version(&mut self, version: usize) -> Result<(), BoxError> {
        Ok(self.tx.pragma_update(None, "user_version", i64::try_from(version)?)?)
    }

    async fn rederive(&mut self) -> Result<(), BoxError> {
        let rederive = self.rederive.ok_or("this database has nothing to derive")?;
        rederive(&self.tx)
    }
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
