//! The one place a database URL picks a backend: [`Database`] from
//! `--database-url`, and [`open`], which opens (and migrates) its stores.
//! A backend this build lacks is an error that names its feature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Region;
use crate::event_store::EventStore;
use crate::job::JobStore;
use crate::limits::RateLimiter;

use super::OpenError;

/// Where a server keeps its events, jobs and rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// SQLite files in a folder (`sqlite://DIR`, or the data dir when no URL
    /// is given): one server.
    Sqlite(PathBuf),
    /// PostgreSQL (`postgres://...` or `postgresql://...`), which several
    /// servers share.
    Postgres(String),
}

impl Database {
    /// The database `url` names; without one, SQLite in `data_dir`.
    ///
    /// ```
    /// use std::path::{Path, PathBuf};
    /// use ses_export_core::backend::Database;
    ///
    /// let data = Path::new("/var/lib/ses-export");
    /// for (url, database) in [
    ///     (None, Some(Database::Sqlite(data.to_path_buf()))),
    ///     (Some("sqlite:///srv/db"), Some(Database::Sqlite(PathBuf::from("/srv/db")))),
    ///     (Some("postgresql://db/ses"), Some(Database::Postgres("postgresql://db/ses".into()))),
    ///     (Some("mysql://db/ses"), None),
    /// ] {
    ///     assert_eq!(Database::from_url(url, data).ok(), database, "{url:?}");
    /// }
    /// assert!(Database::from_url(Some("postgres://db"), data).unwrap().is_shared());
    /// ```
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> Result<Database, OpenError> {
        match url {
            None => Ok(Database::Sqlite(data_dir.to_path_buf())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.to_owned()))
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(dir) => Ok(Database::Sqlite(PathBuf::from(dir))),
                None => Err(OpenError::new(format!(
                    "--database-url {url:?}: expected sqlite://DIR or postgres://..."
                ))),
            },
        }
    }

    /// Whether several servers may share it (their jobs, leases and
    /// limits).
    pub fn is_shared(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

/// What [`open`] needs beside the database.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenOptions {
    /// What was kept before regions existed becomes this region's.
    pub default_region: Region,
    /// Per-account rate limits as AWS's (`false`: none).
    pub rate_limits: bool,
    /// PostgreSQL's settled days: the cluster's bucket, this server's cache
    /// of it and the cache's size in bytes (required with PostgreSQL).
    #[cfg(feature = "postgres")]
    pub segments: Option<(crate::destination::Storage, PathBuf, u64)>,
}

impl OpenOptions {
    /// Options for `default_region`, with AWS's rate limits.
    pub fn new(default_region: Region) -> Self {
        OpenOptions {
            default_region,
            rate_limits: true,
            #[cfg(feature = "postgres")]
            segments: None,
        }
    }
}

/// A database's stores.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Events, insight records and rollups.
    pub events: Arc<dyn EventStore>,
    /// Export jobs.
    pub jobs: Arc<dyn JobStore>,
    /// Per-account rate limits (SQLite's in this process, PostgreSQL's
    /// shared by the cluster).
    pub limiter: Arc<dyn RateLimiter>,
}

/// Opens `database`'s stores, migrating its schema.
pub async fn open(database: &Database, options: OpenOptions) -> Result<Stores, OpenError> {
    match database {
        Database::Sqlite(dir) => sqlite(dir, &options),
        Database::Postgres(url) => postgres(url, options).await,
    }
}

#[cfg(feature = "sqlite")]
fn sqlite(dir: &Path, options: &OpenOptions) -> Result<Stores, OpenError> {
    use super::sqlite::{SqliteEventStore, SqliteJobStore};
    std::fs::create_dir_all(dir).map_err(|e| OpenError::caused(format!("creating {}", dir.display()), e))?;
    let (events_path, jobs_path) = (dir.join("events.sqlite"), dir.join("jobs.sqlite"));
    let events = SqliteEventStore::open_with_default_region(&events_path, &options.default_region)
        .map_err(|e| OpenError::caused(format!("opening {}", events_path.display()), e))?;
    let jobs = SqliteJobStore::open_with_default_region(&jobs_path, &options.default_region)
        .map_err(|e| OpenError::caused(format!("opening {}", jobs_path.display()), e))?;
    let limiter: Arc<dyn RateLimiter> = if options.rate_limits {
        Arc::new(super::memory::TokenBuckets::aws())
    } else {
        Arc::new(crate::limits::Unlimited)
    };
    Ok(Stores {
        events: Arc::new(events),
        jobs: Arc::new(jobs),
        limiter,
    })
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &Path, _: &OpenOptions) -> Result<Stores, OpenError> {
    Err(OpenError::new(
        "this build has no SQLite support: give --database-url postgres://... (or build with --features sqlite)"
            .to_owned(),
    ))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str, options: OpenOptions) -> Result<Stores, OpenError> {
    use super::postgres::{PgEventStore, PgJobStore, PgRateLimiter, SegmentBucket, connect_with_default_region};
    let Some((storage, cache, cache_bytes)) = &options.segments else {
        return Err(OpenError::new(
            "PostgreSQL keeps settled days in the cluster's bucket: give its storage".to_owned(),
        ));
    };
    let pool = connect_with_default_region(url, 16, &options.default_region)
        .await
        .map_err(|e| OpenError::caused("--database-url", e))?;
    let segments = SegmentBucket::in_storage(storage, cache, *cache_bytes)
        .map_err(|e| OpenError::caused(format!("segment cache {}", cache.display()), e))?;
    let limiter: Arc<dyn RateLimiter> = if options.rate_limits {
        Arc::new(PgRateLimiter::new(pool.clone()))
    } else {
        Arc::new(crate::limits::Unlimited)
    };
    Ok(Stores {
        events: Arc::new(PgEventStore::with_segments(pool.clone(), segments)),
        jobs: Arc::new(PgJobStore::new(pool)),
        limiter,
    })
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &str, _: OpenOptions) -> Result<Stores, OpenError> {
    Err(OpenError::new(
        "--database-url postgres://...: this build has no PostgreSQL support (build with --features postgres)"
            .to_owned(),
    ))
}
