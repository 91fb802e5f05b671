//! Wiring: configuration to stores, service, workers and the listening
//! socket; connection limits (hyper's header timeout, a bound on
//! connections served at once) and a shutdown with a deadline on SIGTERM
//! or Ctrl-C.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use ses_export_core::backend::{Database, OpenOptions, Stores};
use ses_export_core::destination::{BucketBackend, Storage};
use ses_export_core::event_store::EventStore;
use ses_export_core::job::JobStore;
use ses_export_core::limits::RateLimiter;
use ses_export_core::service::{ExportService, ServiceConfig};
use ses_export_core::signing::SigningKey;

use crate::StartError;
use crate::app::{AppState, app};
use crate::config::{Config, RateLimits, S3Backend};
use crate::connections::{Connections, Watched};
use crate::credentials::Credentials;
use crate::metrics::Metrics;
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
pub async fn build_state(config: &Config) -> Result<AppState, StartError> {
    let data_dir = &config.data_dir;
    secure_data_dir(data_dir)?;
    let credentials = match &config.credentials {
        Some(path) => {
            warn_if_readable_by_others(path);
            Credentials::load(path)?
        }
        None if !config.listen.ip().is_loopback() && !config.allow_dev_credential => {
            return Err(StartError::from(format!(
                "--listen {} is reachable from other machines, and without --credentials the server would accept \
                 the development credential (test / test) that anyone knows: give --credentials FILE, listen on \
                 127.0.0.1, or pass --allow-dev-credential if that is really what you want",
                config.listen
            )));
        }
        None => {
            tracing::warn!(
                "no --credentials file: accepting the development credential (access key `test`, secret `test`, account 000000000000)"
            );
            Credentials::development()
        }
    };
    let signing_secret = signing_secret(config)?;
    let database = Database::from_url(config.database_url.as_deref(), data_dir)
        .map_err(|e| StartError::caused("--database-url", e))?;
    let shared = database.is_shared();
    let backend = match (config.s3_backend, &config.s3_endpoint_url) {
        (Some(S3Backend::Local), Some(_)) => {
            return Err(StartError::from(
                "--s3-endpoint-url needs --s3-backend aws (or no --s3-backend)".to_owned(),
            ));
        }
        (Some(S3Backend::Local), None) | (None, None) => BucketBackend::Local(data_dir.join("buckets")),
        (_, endpoint) => BucketBackend::S3 {
            endpoint: endpoint.clone(),
        },
    };
    if matches!(backend, BucketBackend::S3 { .. }) && !cfg!(feature = "s3") {
        return Err(StartError::from(
            "--s3-endpoint-url / --s3-backend aws: this ses-export-server was built without S3 support \
             (build it with --features s3)"
                .to_owned(),
        ));
    }
    let Backends {
        events,
        jobs,
        limiter,
        storage,
        key,
    } = backends(config, &database, backend, signing_secret.as_deref()).await?;
    let mut service_config = ServiceConfig::default();
    service_config.max_active_jobs = config.max_active_jobs;
    service_config.strict = config.strict;
    service_config.download_ttl = Duration::from_secs(config.download_url_ttl);
    service_config.min_job_duration = Duration::from_millis(config.min_job_duration_ms);
    service_config.lease = Duration::from_secs(config.lease_seconds.max(1));
    service_config.sole_server = !shared;
    let service = ExportService::new(events, jobs, limiter, storage, key, service_config);
    Ok(AppState {
        service: Arc::new(service),
        default_region: config.default_region.clone(),
        reputation_metrics: config.reputation_metrics,
        reputation_sends: usize::try_from(config.reputation_sends).unwrap_or(usize::MAX),
        credentials: Arc::new(credentials),
        verifier: Verifier::ses(),
        max_body_bytes: config.max_body_bytes,
        max_ingest_bytes: config.max_ingest_bytes,
        body_timeout: Duration::from_secs(config.body_timeout),
        body_deadline: Duration::from_secs(config.body_deadline),
        ingest_slots: crate::app::IngestSlots::new(config.max_ingest_inflight as usize),
        sns_reads: Arc::new(tokio::sync::Semaphore::new(crate::app::SNS_READS)),
        intake_failures: Arc::default(),
        metrics: Arc::new(Metrics::default()),
        public_url: config.public_url.clone(),
        tls: config.tls_cert.is_some(),
        sns: crate::sns::Sns::new(config.sns_trust_ca.as_deref(), config.sns_cert_host.as_deref())?,
        readiness: Arc::default(),
    })
}

/// The stores `--database-url` names, with the storage and signing key
/// that go with them: a sole server keeps exports in its data dir and may
/// make its own key; servers sharing PostgreSQL must share a bucket and a
/// secret.
async fn backends(
    config: &Config,
    database: &Database,
    backend: BucketBackend,
    signing_secret: Option<&str>,
) -> Result<Backends, StartError> {
    let mut options = OpenOptions::new(config.default_region.clone());
    options.rate_limits = matches!(config.rate_limits, RateLimits::Aws);
    let (storage, key) = if database.is_shared() {
        // Every server must find every export and trust every URL.
        let (Some(bucket), BucketBackend::S3 { .. }) = (&config.managed_bucket, &backend) else {
            return Err(StartError::from(
                "with a PostgreSQL database, several servers share the jobs, so managed exports must live \
                 where all of them can read them: give --managed-bucket NAME with --s3-endpoint-url URL \
                 (or --s3-backend aws), not a local folder"
                    .to_owned(),
            ));
        };
        let Some(secret) = signing_secret else {
            return Err(StartError::from(
                "with a PostgreSQL database, give every server the same --signing-secret, so download URLs \
                 and page tokens made by one server are valid on the others"
                    .to_owned(),
            ));
        };
        let storage =
            Storage::with_managed_bucket(bucket, backend).map_err(|e| format!("--managed-bucket {bucket}: {e}"))?;
        #[cfg(feature = "postgres")]
        {
            options.segments = Some((
                storage.clone(),
                config.data_dir.join("segment-cache"),
                config.segment_cache_mib.saturating_mul(1 << 20),
            ));
        }
        (storage, SigningKey::from_secret(secret.as_bytes()))
    } else {
        let data_dir = &config.data_dir;
        let storage = Storage::new(&data_dir.join("exports"), backend).map_err(|e| format!("opening storage: {e}"))?;
        let key = match signing_secret {
            Some(secret) => SigningKey::from_secret(secret.as_bytes()),
            None => {
                let path = data_dir.join("signing.key");
                SigningKey::load_or_create(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
            }
        };
        (storage, key)
    };
    let Stores { events, jobs, limiter } = ses_export_core::backend::open(database, options)
        .await
        .map_err(|e| StartError::caused("opening the database", e))?;
    Ok(Backends {
        events,
        jobs,
        limiter,
        storage,
        key,
    })
}

/// The smallest signing secret accepted: 256 bits.
const MIN_SIGNING_SECRET_BYTES: usize = 32;

/// The signing secret from `--signing-secret` or `--signing-secret-file`,
/// refused when shorter than [`MIN_SIGNING_SECRET_BYTES`].
fn signing_secret(config: &Config) -> Result<Option<String>, String> {
    let (secret, source) = match (&config.signing_secret, &config.signing_secret_file) {
        (Some(secret), _) => (secret.clone(), "--signing-secret".to_owned()),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--signing-secret-file {}: {e}", path.display()))?;
            warn_if_readable_by_others(path);
            (
                text.trim_end_matches(['\r', '\n']).to_owned(),
                format!("--signing-secret-file {}", path.display()),
            )
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_SIGNING_SECRET_BYTES {
        return Err(format!(
            "{source}: the signing secret is {} bytes; it must be at least {MIN_SIGNING_SECRET_BYTES} (for example \
             the output of `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(Some(secret))
}

/// Raises the process's open-file limit towards what `--max-connections`
/// needs (each connection a descriptor, and room for databases, files and
/// outgoing connections): a soft limit below it would make the accept loop
/// fail at a few hundred connections, however many slots the flag gives.
/// Says so when the hard limit is lower.
fn raise_open_files_limit(max_connections: u32) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let wanted = u64::from(max_connections) + 256;
        let limit = getrlimit(Resource::Nofile);
        let current = limit.current.unwrap_or(u64::MAX);
        if current >= wanted {
            return;
        }
        let target = limit.maximum.map_or(wanted, |hard| wanted.min(hard));
        let raised = target > current
            && setrlimit(
                Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(target),
                    maximum: limit.maximum,
                },
            )
            .is_ok();
        let now = if raised { target } else { current };
        if now < wanted {
            tracing::warn!(
                open_files = now,
                max_connections,
                "the open-file limit is below what --max-connections needs; raise `ulimit -n` or lower --max-connections"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

/// Makes the data dir (0700) and makes every file and folder the server
/// creates from now on private to its user (umask 077: files 0600).
fn secure_data_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::create_dir_all(dir).map_err(|e| format!("creating the data dir {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("making the data dir {} private: {e}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| format!("creating the data dir {}: {e}", dir.display()))?;
    Ok(())
}

/// Warns when a file of secrets can be read by users other than its owner.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o044 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "this file holds secrets and other users can read it; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Runs the server until SIGTERM or Ctrl-C, then stops within
/// `--shutdown-timeout`: no new connections, requests in flight finish,
/// workers stop at their next safe point, the databases are closed.
pub async fn run(config: Config) -> Result<(), StartError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    raise_open_files_limit(config.max_connections);
    let state = build_state(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut worker_task = tokio::spawn(Arc::new(state.service.workers()).run(workers, stopped.clone()));
    let retention =
        ses_export_core::retention::Retention::new(config.event_retention_days, config.export_retention_days);
    tokio::spawn(ses_export_core::retention::run_retention(
        Arc::clone(state.service.events()),
        Arc::clone(state.service.jobs()),
        state.service.storage().clone(),
        retention,
        stopped.clone(),
    ));
    let settling = ses_export_core::compaction::Settling::new(
        config.settle_days,
        Duration::from_secs(config.settle_quiet_seconds),
        Duration::from_secs(config.compact_every_seconds),
    );
    tokio::spawn(ses_export_core::compaction::run_compaction(
        Arc::clone(state.service.events()),
        settling,
        stopped,
    ));

    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, workers, data_dir = %config.data_dir.display(), "ses-export-server started");

    // Jobs this server's workers end, into the metrics.
    let mut ended = state.service.jobs_ended();
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match ended.recv().await {
                Ok(job) => metrics.job_ended(
                    job.scope.region().as_str(),
                    job.source_type.as_str(),
                    job.status.as_str(),
                    job.duration,
                ),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });

    let service = Arc::clone(&state.service);
    let graceful = serve(listener, app(state), tls, &config, shutdown_signal()).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.shutdown_timeout);
    tracing::info!("shutting down: finishing requests in flight, stopping jobs at a safe point");
    service.begin_shutdown();
    let _ = stop.send(true);
    let drained = async {
        graceful.shutdown().await;
        let _ = (&mut worker_task).await;
    };
    if tokio::time::timeout_at(deadline, drained).await.is_err() {
        tracing::warn!(
            seconds = config.shutdown_timeout,
            "shutdown deadline reached: closing the connections and jobs still open"
        );
        worker_task.abort();
    }
    service.close().await;
    Ok(())
}

/// Accepts connections until `shutdown` resolves; returns the handle that
/// drains the connections still open. See [`crate::connections`] for who
/// gives way when every slot is taken.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections as usize));
    let connections = Connections::new();
    let write_timeout = Duration::from_secs(config.write_timeout);
    let sweeper = tokio::spawn({
        let connections = Arc::clone(&connections);
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                connections.sweep(write_timeout);
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper times the header block from the moment it waits for one, which
    // is also how long an idle keep-alive connection stays open.
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout))
        .keep_alive(true);
    let handshake_timeout = Duration::from_secs(config.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A connection is served only with a slot: a free one, or one a
        // stalled connection gives up.
        let slot = loop {
            if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                break Some(slot);
            }
            let wait = if connections.make_room() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
            tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => break slot.ok(),
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(slot) = slot else { break };
        let _ = stream.set_nodelay(true);
        let registered = connections.open(peer.ip());
        let connection = Arc::clone(registered.connection());
        let stream = Watched::new(stream, Arc::clone(&connection));
        let service = {
            let router = TowerToHyperService::new(router.clone());
            let connection = Arc::clone(&connection);
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let handling = connection.handling();
                let answer = hyper::service::Service::call(&router, request);
                async move {
                    let answer = answer.await;
                    drop(handling);
                    answer
                }
            })
        };
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = async {
                match tls {
                    None => {
                        let _ = watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await;
                    }
                    Some(acceptor) => {
                        // The handshake is bounded like a header block: a
                        // client that opens a connection and says nothing
                        // holds a slot for at most --header-timeout.
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let _ = watcher
                                    .watch(http.serve_connection(TokioIo::new(stream), service))
                                    .await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = connection.closed() => {}
            }
            drop(registered);
            drop(slot);
        });
    }
    sweeper.abort();
    graceful
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
