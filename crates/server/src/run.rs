//! Wiring: configuration to stores, service, workers and the listening
//! socket; graceful shutdown on SIGTERM or Ctrl-C.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use ses_export_core::job::{JobStore, SqliteJobStore};
use ses_export_core::limits::{RateLimiter, TokenBuckets, Unlimited};
use ses_export_core::service::{ExportService, ServiceConfig};
use ses_export_core::signing::SigningKey;
use ses_export_core::storage::{BucketBackend, Storage};
use ses_export_core::store::{EventStore, SqliteEventStore};

use crate::app::{AppState, Metrics, app};
use crate::config::{Config, RateLimits, S3Backend};
use crate::credentials::Credentials;
use crate::sigv4::Verifier;

/// What a server stores with.
struct Backends {
    events: Arc<dyn EventStore>,
    jobs: Arc<dyn JobStore>,
    limiter: Arc<dyn RateLimiter>,
    storage: Storage,
    key: SigningKey,
}

/// Builds the shared state from `config`: opens (and migrates) the
/// databases, storage and keys. Errors say what to fix.
pub async fn build_state(config: &Config) -> Result<AppState, String> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("creating the data dir {}: {e}", data_dir.display()))?;
    let shared = config
        .database_url
        .as_deref()
        .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    let backend = match (config.s3_backend, &config.s3_endpoint_url) {
        (Some(S3Backend::Local), Some(_)) => {
            return Err("--s3-endpoint-url needs --s3-backend aws (or no --s3-backend)".to_owned());
        }
        (Some(S3Backend::Local), None) | (None, None) => BucketBackend::Local(data_dir.join("buckets")),
        (_, endpoint) => BucketBackend::S3 {
            endpoint: endpoint.clone(),
        },
    };
    let Backends {
        events,
        jobs,
        limiter,
        storage,
        key,
    } = if shared {
        let url = config.database_url.as_deref().unwrap_or_default();
        // Every server must find every export and trust every URL.
        let (Some(bucket), BucketBackend::S3 { .. }) = (&config.managed_bucket, &backend) else {
            return Err(
                "with a PostgreSQL database, several servers share the jobs, so managed exports must live \
                            where all of them can read them: give --managed-bucket NAME with --s3-endpoint-url URL \
                            (or --s3-backend aws), not a local folder"
                    .to_owned(),
            );
        };
        let Some(secret) = &config.signing_secret else {
            return Err(
                "with a PostgreSQL database, give every server the same --signing-secret, so download URLs \
                            and page tokens made by one server are valid on the others"
                    .to_owned(),
            );
        };
        let pool = ses_export_core::pg::connect(url, 16)
            .await
            .map_err(|e| format!("--database-url: {e}"))?;
        let managed = backend
            .open(bucket)
            .map_err(|e| format!("--managed-bucket {bucket}: {e}"))?;
        let limiter: Arc<dyn RateLimiter> = match config.rate_limits {
            RateLimits::Aws => Arc::new(ses_export_core::pg::PgRateLimiter::new(pool.clone())),
            RateLimits::Off => Arc::new(Unlimited),
        };
        Backends {
            events: Arc::new(ses_export_core::pg::PgEventStore::new(pool.clone())),
            jobs: Arc::new(ses_export_core::pg::PgJobStore::new(pool)),
            limiter,
            storage: Storage::with_managed(managed, backend),
            key: SigningKey::from_secret(secret.as_bytes()),
        }
    } else {
        let base = match config.database_url.as_deref() {
            None => data_dir.clone(),
            Some(url) if url.starts_with("sqlite://") => std::path::PathBuf::from(&url["sqlite://".len()..]),
            Some(url) => {
                return Err(format!(
                    "--database-url {url:?}: expected sqlite://DIR or postgres://..."
                ));
            }
        };
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        let (events_path, jobs_path) = (base.join("events.sqlite"), base.join("jobs.sqlite"));
        let events =
            SqliteEventStore::open(&events_path).map_err(|e| format!("opening {}: {e}", events_path.display()))?;
        let jobs = SqliteJobStore::open(&jobs_path).map_err(|e| format!("opening {}: {e}", jobs_path.display()))?;
        let limiter: Arc<dyn RateLimiter> = match config.rate_limits {
            RateLimits::Aws => Arc::new(TokenBuckets::aws()),
            RateLimits::Off => Arc::new(Unlimited),
        };
        let storage = Storage::new(&data_dir.join("exports"), backend).map_err(|e| format!("opening storage: {e}"))?;
        let key = match &config.signing_secret {
            Some(secret) => SigningKey::from_secret(secret.as_bytes()),
            None => {
                let path = data_dir.join("signing.key");
                SigningKey::load_or_create(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
            }
        };
        Backends {
            events: Arc::new(events),
            jobs: Arc::new(jobs),
            limiter,
            storage,
            key,
        }
    };
    let credentials = match &config.credentials {
        Some(path) => Credentials::load(path)?,
        None => {
            tracing::warn!(
                "no --credentials file: accepting the development credential (access key `test`, secret `test`, account 000000000000)"
            );
            Credentials::development()
        }
    };
    let service = ExportService::new(
        events,
        jobs,
        limiter,
        storage,
        key,
        ServiceConfig {
            max_active_jobs: config.max_active_jobs,
            strict: config.strict,
            download_ttl: Duration::from_secs(config.download_url_ttl),
            min_job_duration: Duration::from_millis(config.min_job_duration_ms),
            lease: Duration::from_secs(config.lease_seconds.max(1)),
            sole_server: !shared,
        },
    );
    Ok(AppState {
        service: Arc::new(service),
        credentials: Arc::new(credentials),
        verifier: Verifier::ses(),
        max_body_bytes: config.max_body_bytes,
        max_ingest_bytes: config.max_ingest_bytes,
        metrics: Arc::new(Metrics::default()),
    })
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), String> {
    let state = build_state(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let worker_task = tokio::spawn(ses_export_core::worker::run_workers(
        Arc::clone(&state.service),
        workers,
        stopped,
    ));

    println!("listening on http://{address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, workers, data_dir = %config.data_dir.display(), "ses-export-server started");

    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("shutting down: waiting for running jobs to reach a safe point");
    let _ = stop.send(true);
    let _ = worker_task.await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
