//! The server's flags, each with its `SES_EXPORT_*` environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Serves the Amazon SES v2 export-jobs API.
#[derive(Debug, Clone, Parser)]
#[command(name = "ses-export-server", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "SES_EXPORT_LISTEN", default_value = "127.0.0.1:4599")]
    pub listen: SocketAddr,

    /// Where data lives: the SQLite databases, managed exports, local buckets.
    #[arg(long, env = "SES_EXPORT_DATA_DIR", default_value = "./ses-export-data")]
    pub data_dir: PathBuf,

    /// Database: embedded SQLite in the data dir when unset (or sqlite://PATH).
    #[arg(long, env = "SES_EXPORT_DATABASE_URL")]
    pub database_url: Option<String>,

    /// TOML file of [[credentials]] (access_key_id, secret_access_key,
    /// account_id); without it, access key `test` / secret `test` for
    /// account 000000000000.
    #[arg(long, env = "SES_EXPORT_CREDENTIALS")]
    pub credentials: Option<PathBuf>,

    /// Rate limits: AWS's per-account rates, or none (for test suites).
    #[arg(long, env = "SES_EXPORT_RATE_LIMITS", value_enum, default_value_t = RateLimits::Aws)]
    pub rate_limits: RateLimits,

    /// Refuse S3Url in CreateExportJob, as AWS does today.
    #[arg(long, env = "SES_EXPORT_STRICT")]
    pub strict: bool,

    /// S3-compatible endpoint for S3Url destinations (implies --s3-backend aws).
    #[arg(long, env = "SES_EXPORT_S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,

    /// Where S3Url destinations go: folders under <data-dir>/buckets, or S3.
    #[arg(long, env = "SES_EXPORT_S3_BACKEND", value_enum)]
    pub s3_backend: Option<S3Backend>,

    /// Export jobs an account may have CREATED or PROCESSING at once.
    #[arg(long, env = "SES_EXPORT_MAX_ACTIVE_JOBS", default_value_t = 20)]
    pub max_active_jobs: usize,

    /// How long a download URL stays valid, in seconds.
    #[arg(long, env = "SES_EXPORT_DOWNLOAD_URL_TTL", default_value_t = 300)]
    pub download_url_ttl: u64,

    /// Export workers; 0 serves the API but runs no jobs. Default: the cores.
    #[arg(long, env = "SES_EXPORT_WORKERS")]
    pub workers: Option<usize>,

    /// Largest API request body, in bytes.
    #[arg(long, env = "SES_EXPORT_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// Largest ingest body, in bytes (a gzip body may expand to 16 times this).
    #[arg(long, env = "SES_EXPORT_MAX_INGEST_BYTES", default_value_t = 64 << 20)]
    pub max_ingest_bytes: usize,

    /// Secret for download URLs and page tokens; servers sharing one
    /// database must share it. Default: a key kept in the data dir.
    #[arg(long, env = "SES_EXPORT_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,

    /// With PostgreSQL: the bucket (on --s3-endpoint-url or AWS) where every
    /// server keeps and serves managed exports.
    #[arg(long, env = "SES_EXPORT_MANAGED_BUCKET")]
    pub managed_bucket: Option<String>,

    /// Seconds a worker holds a job without renewing; a dead server's jobs
    /// move to another after this.
    #[arg(long, env = "SES_EXPORT_LEASE_SECONDS", default_value_t = 10)]
    pub lease_seconds: u64,

    /// Keep each job PROCESSING at least this many milliseconds (demos, tests).
    #[arg(long, env = "SES_EXPORT_MIN_JOB_DURATION_MS", default_value_t = 0)]
    pub min_job_duration_ms: u64,

    /// Log format on stderr.
    #[arg(long, env = "SES_EXPORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimits {
    Aws,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum S3Backend {
    Local,
    Aws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
