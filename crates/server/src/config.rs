//! The server's flags, each with its `SES_EXPORT_*` environment twin.

// These doc comments are the flags' `--help` text, written for a terminal:
// `[[credentials]]` and `<data-dir>` are text there, not links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Serves the Amazon SES v2 export-jobs API.
#[derive(Debug, Clone, Parser)]
#[command(name = "ses-export-server", version, about, long_about = None)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "SES_EXPORT_LISTEN", default_value = "127.0.0.1:4599")]
    pub listen: SocketAddr,

    /// Where data lives: the SQLite databases, managed exports, local buckets.
    #[arg(long, env = "SES_EXPORT_DATA_DIR", default_value = "./ses-export-data")]
    pub data_dir: PathBuf,

    /// Database: embedded SQLite in the data dir when unset (or sqlite://PATH),
    /// or postgres://USER@HOST/DB, with libpq's sslmode (disable, prefer,
    /// require, verify-ca, verify-full) and sslrootcert=FILE as parameters.
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

    /// Secret for download URLs and page tokens, at least 32 bytes; servers
    /// sharing one database must share it. Default: a key kept in the data
    /// dir.
    #[arg(
        long,
        env = "SES_EXPORT_SIGNING_SECRET",
        hide_env_values = true,
        conflicts_with = "signing_secret_file"
    )]
    pub signing_secret: Option<String>,

    /// A file holding the signing secret (trailing newline ignored), so it
    /// stays out of the process list and the environment.
    #[arg(long, env = "SES_EXPORT_SIGNING_SECRET_FILE")]
    pub signing_secret_file: Option<PathBuf>,

    /// Accept the development credential (`test` / `test`) on an address
    /// other than loopback. Anyone who can reach the port can then use it.
    #[arg(long, env = "SES_EXPORT_ALLOW_DEV_CREDENTIAL")]
    pub allow_dev_credential: bool,

    /// Seconds a client has to send a request's header block; an idle
    /// keep-alive connection closes after the same time.
    #[arg(long, env = "SES_EXPORT_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub header_timeout: u64,

    /// Seconds a request body may go without a byte before it is refused.
    #[arg(long, env = "SES_EXPORT_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,

    /// The region of events nothing else places (no `sourceArn`, an intake
    /// key without a `region`), and of everything kept before regions
    /// existed. An API call's region is always its signature's.
    #[arg(long, env = "SES_EXPORT_DEFAULT_REGION", default_value = "us-east-1", value_parser = parse_region)]
    pub default_region: ses_export_core::Region,

    /// Publish each account's bounce and complaint rates (over its latest
    /// eligible sends, per region) on /metrics. Off by default: /metrics
    /// needs no signature, and these series tell whoever reaches it which
    /// accounts exist and how they send.
    #[arg(long, env = "SES_EXPORT_REPUTATION_METRICS")]
    pub reputation_metrics: bool,

    /// How many of an account's latest eligible sends its reputation is
    /// measured over (AWS's representative volume).
    #[arg(long, env = "SES_EXPORT_REPUTATION_SENDS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub reputation_sends: u64,

    /// Seconds a whole request body may take to arrive, however steadily it
    /// trickles in; a body still arriving then is refused (400).
    #[arg(long, env = "SES_EXPORT_BODY_DEADLINE", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_deadline: u64,

    /// Seconds an answer may wait for the client to take it (a client that
    /// sends requests and never reads the answers); then the connection is
    /// closed.
    #[arg(long, env = "SES_EXPORT_WRITE_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout: u64,

    /// Connections served at once. When all are taken, a new one takes the
    /// place of the connection stalled longest (no request in progress),
    /// from the client address holding the most; otherwise it waits.
    #[arg(long, env = "SES_EXPORT_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Ingest bodies read and stored at once; more are answered 429. One
    /// account holds at most as many as remain free, so one sender cannot
    /// take them all.
    #[arg(long, env = "SES_EXPORT_MAX_INGEST_INFLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_ingest_inflight: u32,

    /// Seconds a SIGTERM or SIGINT waits for requests in flight and jobs to
    /// reach a safe point before the server exits anyway.
    #[arg(long, env = "SES_EXPORT_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    pub shutdown_timeout: u64,

    /// Delete events, insight records and rollups of messages sent more than
    /// this many days ago (a day at a time); 0 keeps them forever.
    #[arg(long, env = "SES_EXPORT_EVENT_RETENTION_DAYS", default_value_t = 0)]
    pub event_retention_days: u32,

    /// Whole UTC days a day's records stay in the row store after the day
    /// ends; then they settle into a columnar segment (Parquet, beside the
    /// database; with PostgreSQL, in the managed bucket). Events for a
    /// settled day still count at once.
    #[arg(long, env = "SES_EXPORT_SETTLE_DAYS", default_value_t = 3)]
    pub settle_days: u32,

    /// Seconds without a new record a day waits before it settles (so a
    /// backfill writes a day whole first).
    #[arg(long, env = "SES_EXPORT_SETTLE_QUIET_SECONDS", default_value_t = 300)]
    pub settle_quiet_seconds: u64,

    /// Seconds between two looks for days to settle.
    #[arg(long, env = "SES_EXPORT_COMPACT_EVERY_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_every_seconds: u64,

    /// With PostgreSQL: MiB of settled days' segments a server keeps in
    /// its data dir, fetched from the managed bucket (the least recently
    /// read go first).
    #[arg(long, env = "SES_EXPORT_SEGMENT_CACHE_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_cache_mib: u64,

    /// Delete managed export files this many days after their job ended; 0
    /// keeps them forever. The job's record stays.
    #[arg(long, env = "SES_EXPORT_EXPORT_RETENTION_DAYS", default_value_t = 7)]
    pub export_retention_days: u32,

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

    /// Serve HTTPS with this certificate chain (PEM, the server's first);
    /// needs --tls-key.
    #[arg(long, env = "SES_EXPORT_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SES_EXPORT_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The URL clients reach this server at, when a proxy or load balancer
    /// stands in front of it (`https://exports.example.com`): download URLs
    /// begin with it. Default: the scheme this server serves and the Host
    /// the client sent.
    #[arg(long, env = "SES_EXPORT_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// For tests: trust only this CA (PEM) when fetching SNS's signing
    /// certificates and confirmation URLs, instead of the system's roots.
    #[arg(long, env = "SES_EXPORT_SNS_TRUST_CA", value_name = "FILE", hide = true)]
    pub sns_trust_ca: Option<PathBuf>,

    /// For tests: the one host (HOST or HOST:PORT) SNS's certificate and
    /// confirmation URLs may name, instead of sns.<region>.amazonaws.com.
    #[arg(long, env = "SES_EXPORT_SNS_CERT_HOST", value_name = "HOST", hide = true)]
    pub sns_cert_host: Option<String>,

    /// Log format on stderr.
    #[arg(long, env = "SES_EXPORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Which rate limits apply (`--rate-limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimits {
    /// AWS's per-account rates.
    Aws,
    /// None, for test suites.
    Off,
}

/// Where `S3Url` destinations go (`--s3-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum S3Backend {
    /// Folders under the data dir's `buckets`.
    Local,
    /// S3, or the S3-compatible `--s3-endpoint-url`.
    Aws,
}

/// How the log is written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// `http(s)://host[:port][/path]`, kept without a trailing slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must begin with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host".to_owned());
    }
    if rest.contains(['?', '#', ' ']) {
        return Err("must not hold a query, a fragment or a space".to_owned());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn parse_region(text: &str) -> Result<ses_export_core::Region, String> {
    text.parse()
}
