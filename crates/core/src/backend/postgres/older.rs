//! PostgreSQL databases as older versions of this crate left them, for
//! tests of upgrades (feature `test-support`): the steps of that time, as
//! they ran, filled from a database of today through that time's columns.

use super::{MIGRATIONS, OpenError, connect_pool, migrate_to};
use crate::backend::migrate::older::{EVENT_TABLES, JOB_COLUMNS, LEASE_COLUMNS, RATE_BUCKET_COLUMNS, UNTIL};

/// Makes the (empty) database at `url` one at schema `version` (2 to 5)
/// holding what the schema `from`, of today and in the same database,
/// holds: events, jobs and rate buckets. Nothing is derived again: change
/// what an older version would have derived differently before opening
/// it with [`super::connect`].
pub async fn database(url: &str, version: usize, from: &str) -> Result<(), OpenError> {
    if !(2..UNTIL).contains(&version) {
        return Err(OpenError::new(format!("no older schema {version} to make")));
    }
    let pool = connect_pool(url, 1)?;
    migrate_to(&pool, &crate::Region::us_east_1(), &MIGRATIONS[..version]).await?;
    let mut tables: Vec<(String, String)> = EVENT_TABLES
        .iter()
        .filter(|(_, since, _)| *since <= version)
        .map(|(table, _, columns)| (format!("ses_{table}"), (*columns).to_owned()))
        .collect();
    tables.push(("export_jobs".to_owned(), format!("{JOB_COLUMNS}, {LEASE_COLUMNS}")));
    tables.push(("rate_buckets".to_owned(), RATE_BUCKET_COLUMNS.to_owned()));
    let client = pool
        .get()
        .await
        .map_err(|e| OpenError::caused("connecting to PostgreSQL", e))?;
    for (table, columns) in tables {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} ({columns}) SELECT {columns} FROM \"{from}\".{table}"
            ))
            .await
            .map_err(|e| OpenError::caused(format!("copying {table}"), e))?;
    }
    Ok(())
}
