//! SQLite stores as older versions of this crate left them, for tests of
//! upgrades (feature `test-support`): the steps of that time, as they ran,
//! filled from a store of today through that time's columns.

use std::path::Path;

use rusqlite::Connection;

use super::{BoxError, Step, migrate};
use crate::backend::migrate::older::{EVENT_TABLES, JOB_COLUMNS, LEASE_COLUMNS, UNTIL};

/// Makes `old` an event store at schema `version` (2 to 6) holding what
/// the event store at `from` holds. Nothing is derived again: change what
/// an older version would have derived differently before opening it.
pub fn event_store(old: &Path, version: usize, from: &Path) -> Result<(), BoxError> {
    let tables = EVENT_TABLES
        .iter()
        .filter(|(_, since, _)| *since <= version)
        .map(|(table, _, columns)| (*table, (*columns).to_owned()));
    fill(old, version, 2, super::events::MIGRATIONS, tables.collect(), from)
}

/// Makes `old` a job store at schema `version` (1 to 3) holding the jobs
/// of the job store at `from`.
pub fn job_store(old: &Path, version: usize, from: &Path) -> Result<(), BoxError> {
    let columns = match version {
        1 => JOB_COLUMNS.to_owned(),
        _ => format!("{JOB_COLUMNS}, {LEASE_COLUMNS}"),
    };
    fill(
        old,
        version,
        1,
        super::jobs::MIGRATIONS,
        vec![("export_jobs", columns)],
        from,
    )
}

fn fill(
    old: &Path,
    version: usize,
    first: usize,
    steps: &[Step],
    tables: Vec<(&str, String)>,
    from: &Path,
) -> Result<(), BoxError> {
    if !(first..=UNTIL.min(steps.len())).contains(&version) {
        return Err(format!("no older schema {version} to make").into());
    }
    let mut conn = Connection::open(old)?;
    migrate(&mut conn, "older", &steps[..version], &crate::Region::us_east_1(), None)?;
    let from = from.to_str().ok_or("a path that is not UTF-8")?;
    conn.execute("ATTACH ?1 AS f", [from])?;
    for (table, columns) in tables {
        conn.execute_batch(&format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM f.{table}"
        ))?;
    }
    conn.execute("DETACH f", [])?;
    Ok(())
}
