//! The harness for end-to-end tests: starts the real `ses-export-server`
//! binary on `127.0.0.1:0` with its own data dir, and builds the real
//! `aws-sdk-sesv2` client and SigV4-signed raw requests against it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The development credential.
pub const DEV: (&str, &str) = ("test", "test");

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (`https://` when it serves TLS)
    pub url: String,
    pub data_dir: PathBuf,
    /// Keeps a temporary data dir alive as long as the server.
    _temp: Option<tempfile::TempDir>,
}

/// The server binary, built by `cargo test --workspace`; built here when a
/// lone `cargo test -p ses-export-tests` has not.
pub fn server_binary() -> PathBuf {
    binary("ses-export-server", "ses-export-server")
}

/// The `ses-export` CLI binary, found or built the same way.
pub fn cli_binary() -> PathBuf {
    binary("ses-export-cli", "ses-export")
}

/// `ses-export --endpoint-url ENDPOINT --output json` with the development
/// credential and nothing of the machine's AWS settings (no shared files,
/// no profile, no CA bundle), for a test to add its arguments to.
pub fn cli_command(endpoint: &str) -> std::process::Command {
    let mut command = std::process::Command::new(cli_binary());
    command
        .args(["--endpoint-url", endpoint, "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", DEV.0)
        .env("AWS_SECRET_ACCESS_KEY", DEV.1)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE");
    command
}

fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join(name);
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    binary
}

impl Server {
    /// Starts a server on a fresh data dir with `args` added to
    /// `--listen 127.0.0.1:0 --data-dir DIR`.
    pub async fn start(args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_owned();
        let mut server = Self::start_in(&dir, args).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server whose callers are those of `credentials` (a
    /// credentials file's TOML, written beside its data dir), with `args`.
    pub async fn with_credentials(credentials: &str, args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let file = temp.path().join("credentials.toml");
        std::fs::write(&file, credentials).expect("write credentials");
        let mut all = vec!["--credentials", file.to_str().expect("path")];
        all.extend_from_slice(args);
        let mut server = Self::start_in(&temp.path().join("data"), &all).await;
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir` (which outlives it).
    pub async fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_with_env(data_dir, args, &[]).await
    }

    /// Starts a server on `data_dir` with extra environment variables.
    pub async fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_logged(data_dir, args, env, None).await
    }

    /// Starts a server as [`Server::start_with_env`] does; with `log`, at
    /// the default log level (the access log on, as users run it), its
    /// log appended to that file, else errors only, to this process's
    /// stderr.
    pub async fn start_logged(data_dir: &Path, args: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Server {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the server's log file"),
            ),
            None => Stdio::inherit(),
        };
        let mut command = Command::new(server_binary());
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args);
        if log.is_none() {
            command.env("SES_EXPORT_LOG", "error");
        } else {
            command.env_remove("RUST_LOG").env_remove("SES_EXPORT_LOG");
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start ses-export-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server says it is listening within a minute")
            .expect("read stdout")
            .expect("a line");
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            data_dir: data_dir.to_owned(),
            _temp: None,
        }
    }

    /// An SDK client with the development credential and no retries, so
    /// every error the server sends is seen.
    pub fn client(&self) -> aws_sdk_sesv2::Client {
        self.client_as(DEV.0, DEV.1)
    }

    /// An SDK client of an HTTPS server that trusts only `ca_pem`.
    pub fn client_trusting(&self, ca_pem: &str) -> aws_sdk_sesv2::Client {
        use aws_smithy_http_client::tls;
        let context = tls::TlsContext::builder()
            .with_trust_store(
                tls::TrustStore::empty()
                    .with_native_roots(false)
                    .with_pem_certificate(ca_pem.as_bytes()),
            )
            .build()
            .expect("TLS context");
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .tls_context(context)
            .build_https();
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(DEV.0, DEV.1, None, None, "e2e"))
            .http_client(http)
            .retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_sesv2::Client::from_conf(config)
    }

    pub fn client_as(&self, access_key: &str, secret: &str) -> aws_sdk_sesv2::Client {
        self.client_in("us-east-1", access_key, secret)
    }

    /// An SDK client of `region` (whose data it sees) for a credential.
    pub fn client_in(&self, region: &str, access_key: &str, secret: &str) -> aws_sdk_sesv2::Client {
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(access_key, secret, None, None, "e2e"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_sesv2::Client::from_conf(config)
    }

    /// Sends a SigV4-signed request (signed by `aws-sigv4`, independently of
    /// the server's verifier) and returns status, headers and body.
    pub async fn signed(&self, method: &str, path: &str, body: &[u8], creds: (&str, &str)) -> Response {
        self.signed_at(method, path, body, creds, SystemTime::now()).await
    }

    pub async fn signed_at(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        creds: (&str, &str),
        at: SystemTime,
    ) -> Response {
        self.signed_for("us-east-1", method, path, body, creds, at).await
    }

    /// [`Server::signed`], scoped to `region`.
    pub async fn signed_in(
        &self,
        region: &str,
        method: &str,
        path: &str,
        body: &[u8],
        creds: (&str, &str),
    ) -> Response {
        self.signed_for(region, method, path, body, creds, SystemTime::now())
            .await
    }

    async fn signed_for(
        &self,
        region: &str,
        method: &str,
        path: &str,
        body: &[u8],
        creds: (&str, &str),
        at: SystemTime,
    ) -> Response {
        let url = format!("{}{path}", self.url);
        let host = self.url.trim_start_matches("http://").to_owned();
        let headers = sign_for(
            "ses",
            region,
            aws_sigv4::http_request::SigningSettings::default(),
            method,
            &url,
            &host,
            aws_sigv4::http_request::SignableBody::Bytes(body),
            creds,
            at,
        );
        let mut request = http_client()
            .request(method.parse().expect("method"), &url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        Response::from(request.send().await.expect("send")).await
    }

    /// `127.0.0.1:PORT`, for raw sockets.
    pub fn address(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned()
    }

    /// The SigV4 headers (`host` included) for `method path` over `body`,
    /// signed now with the development credential.
    pub fn signature_headers(&self, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
        let url = format!("{}{path}", self.url);
        let mut headers = sign(method, &url, &self.address(), body, DEV, SystemTime::now());
        headers.push(("host".to_owned(), self.address()));
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        headers
    }

    /// Sends an unsigned request.
    pub async fn unsigned(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let request = http_client()
            .request(method.parse().expect("method"), format!("{}{path}", self.url))
            .body(body.to_vec());
        Response::from(request.send().await.expect("send")).await
    }

    /// Ingests JSON Lines (or gzip) through the signed ingest endpoint.
    pub async fn ingest(&self, body: &[u8]) -> serde_json::Value {
        let response = self.signed("POST", "/_ses-export/v1/events", body, DEV).await;
        assert_eq!(response.status, 200, "ingest: {}", response.text());
        response.json()
    }

    /// The server's process id.
    /// Events the server has taken in, summed over sources, from
    /// `/metrics`: (accepted, duplicate, rejected).
    pub async fn event_counts(&self) -> (u64, u64, u64) {
        let page = self.unsigned("GET", "/metrics", b"").await.text();
        let mut counts = (0, 0, 0);
        for line in page.lines().filter(|l| l.starts_with("ses_export_events_total{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let n: u64 = value.parse().unwrap_or(0);
            if labels.contains("outcome=\"accepted\"") {
                counts.0 += n;
            } else if labels.contains("outcome=\"duplicate\"") {
                counts.1 += n;
            } else if labels.contains("outcome=\"rejected\"") {
                counts.2 += n;
            }
        }
        counts
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits up to `timeout` for the server to exit by itself.
    pub async fn wait(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait()).await.ok()?.ok()
    }

    /// Kills the server without warning (SIGKILL).
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

/// `messages` generated messages (seeded) as JSON Lines, sent over the
/// five days from 2024-01-01.
pub fn generated_lines(seed: u64, messages: u64) -> String {
    let config = ses_export_core::generate::GeneratorConfig::new(
        seed,
        messages,
        ses_export_core::clock::Millis(1_704_067_200_000),
        5,
    );
    let mut out = String::new();
    for line in ses_export_core::generate::EventGenerator::new(config) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Creates an export job of `source` into managed storage as `format`;
/// its id.
pub async fn create_export(
    client: &aws_sdk_sesv2::Client,
    source: aws_sdk_sesv2::types::ExportDataSource,
    format: aws_sdk_sesv2::types::DataFormat,
) -> String {
    let destination = aws_sdk_sesv2::types::ExportDestination::builder()
        .data_format(format)
        .build()
        .expect("destination");
    let created = client
        .create_export_job()
        .export_data_source(source)
        .export_destination(destination)
        .send()
        .await
        .expect("CreateExportJob");
    created.job_id().expect("JobId").to_owned()
}

/// The sum of `metric`'s daily values (VDM, no dimension) from `start` to
/// `end` (epoch seconds), through `BatchGetMetricData`.
pub async fn metric_total(
    client: &aws_sdk_sesv2::Client,
    metric: aws_sdk_sesv2::types::Metric,
    start: i64,
    end: i64,
) -> i64 {
    use aws_sdk_sesv2::primitives::DateTime;
    use aws_sdk_sesv2::types::{BatchGetMetricDataQuery, MetricNamespace};
    let query = BatchGetMetricDataQuery::builder()
        .id("total")
        .namespace(MetricNamespace::Vdm)
        .metric(metric)
        .start_date(DateTime::from_secs(start))
        .end_date(DateTime::from_secs(end))
        .build()
        .expect("query");
    let answer = client
        .batch_get_metric_data()
        .queries(query)
        .send()
        .await
        .expect("BatchGetMetricData");
    answer.results()[0].values().iter().sum()
}

/// An export of daily SEND volumes by ISP, `start` to `end` (epoch seconds).
pub fn send_volume_by_isp(start: i64, end: i64) -> aws_sdk_sesv2::types::ExportDataSource {
    use aws_sdk_sesv2::types::{Metric, MetricAggregation};
    metrics_by_isp(start, end, &[(Metric::Send, MetricAggregation::Volume)])
}

/// An export of `metrics` by ISP, `start` to `end` (epoch seconds).
pub fn metrics_by_isp(
    start: i64,
    end: i64,
    metrics: &[(aws_sdk_sesv2::types::Metric, aws_sdk_sesv2::types::MetricAggregation)],
) -> aws_sdk_sesv2::types::ExportDataSource {
    use aws_sdk_sesv2::primitives::DateTime;
    use aws_sdk_sesv2::types::{
        ExportDataSource, ExportMetric, MetricDimensionName, MetricNamespace, MetricsDataSource,
    };
    let metrics = metrics
        .iter()
        .map(|(name, aggregation)| {
            ExportMetric::builder()
                .name(name.clone())
                .aggregation(aggregation.clone())
                .build()
        })
        .collect();
    let source = MetricsDataSource::builder()
        .dimensions(MetricDimensionName::Isp, vec!["*".to_owned()])
        .namespace(MetricNamespace::Vdm)
        .set_metrics(Some(metrics))
        .start_date(DateTime::from_secs(start))
        .end_date(DateTime::from_secs(end))
        .build()
        .expect("a metrics data source");
    ExportDataSource::builder().metrics_data_source(source).build()
}

/// One HTTP client for the process, so connections are reused.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| https_client(&[])).clone()
}

/// An HTTP client that trusts, for `https`, only the PEM certificates given.
pub fn https_client(ca_pems: &[&str]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
        }
    }
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("http client")
}

/// A certificate authority made for one test (in a temporary folder), and
/// a server certificate it signed for `127.0.0.1` and `localhost`.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    /// Where `ca_pem` is, for `--ca-bundle` and the like.
    pub ca_path: PathBuf,
    /// The server certificate (PEM) and its key, for `--tls-cert` / `--tls-key`.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        let test_ca = TestCa {
            ca_pem: ca.pem(),
            ca_path,
            cert_path: dir.path().join("server.pem"),
            key_path: dir.path().join("server-key.pem"),
            params,
            key,
            dir,
        };
        let (cert, key) = test_ca.issue(&["127.0.0.1", "localhost"]);
        std::fs::write(&test_ca.cert_path, cert).expect("write certificate");
        std::fs::write(&test_ca.key_path, key).expect("write key");
        test_ca
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by
    /// this CA: (certificate PEM, private key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let key = rcgen::KeyPair::generate().expect("key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// The folder the CA's files are in (removed with it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The SigV4 headers for a request to SES, signed with `aws-sigv4`.
pub fn sign(
    method: &str,
    url: &str,
    host: &str,
    body: &[u8],
    creds: (&str, &str),
    at: SystemTime,
) -> Vec<(String, String)> {
    sign_for(
        "ses",
        "us-east-1",
        aws_sigv4::http_request::SigningSettings::default(),
        method,
        url,
        host,
        aws_sigv4::http_request::SignableBody::Bytes(body),
        creds,
        at,
    )
}

/// The SigV4 headers for a request to SES with `x-amz-content-sha256`
/// set to `UNSIGNED-PAYLOAD`, as S3 clients send it.
pub fn sign_unsigned_payload(method: &str, url: &str, host: &str, creds: (&str, &str)) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SigningSettings};
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    sign_for(
        "ses",
        "us-east-1",
        settings,
        method,
        url,
        host,
        SignableBody::UnsignedPayload,
        creds,
        SystemTime::now(),
    )
}

/// Gets an object from an S3-compatible server, signed as S3 wants it.
pub async fn s3_get(endpoint: &str, bucket: &str, key: &str, creds: (&str, &str)) -> Response {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
    };
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let url = format!("{endpoint}/{bucket}/{key}");
    let host = endpoint.trim_start_matches("http://");
    let body = aws_sigv4::http_request::SignableBody::Bytes(b"");
    let headers = sign_for(
        "s3",
        "us-east-1",
        settings,
        "GET",
        &url,
        host,
        body,
        creds,
        SystemTime::now(),
    );
    let mut request = http_client().get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    Response::from(request.send().await.expect("send")).await
}

#[allow(clippy::too_many_arguments)]
fn sign_for(
    service: &str,
    region: &str,
    settings: aws_sigv4::http_request::SigningSettings,
    method: &str,
    url: &str,
    host: &str,
    body: aws_sigv4::http_request::SignableBody<'_>,
    creds: (&str, &str),
    at: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableRequest, sign};
    let identity = Credentials::new(creds.0, creds.1, None, None, "e2e").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let headers = [("host", host), ("content-type", "application/json")];
    let request = SignableRequest::new(method, url, headers.into_iter(), body).expect("signable");
    let (instructions, _) = sign(request, &params).expect("sign").into_parts();
    let (headers, _) = instructions.into_parts();
    headers
        .iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    async fn from(response: reqwest::Response) -> Response {
        Response {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// Downloads a URL with a plain GET.
pub async fn download(url: &str) -> (u16, Vec<u8>) {
    let response = http_client().get(url).send().await.expect("download");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// Polls `GetExportJob` until the job ends; panics after a minute.
pub async fn wait_for_end(
    client: &aws_sdk_sesv2::Client,
    job_id: &str,
) -> aws_sdk_sesv2::operation::get_export_job::GetExportJobOutput {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = match client.get_export_job().job_id(job_id).send().await {
            Ok(job) => job,
            // Under AWS's rate limits (one GetExportJob a second), wait a turn.
            Err(e) if aws_sdk_sesv2::error::ProvideErrorMetadata::code(&e) == Some("TooManyRequestsException") => {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                continue;
            }
            Err(e) => panic!("GetExportJob: {e:?}"),
        };
        let status = job.job_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if matches!(status.as_str(), "COMPLETED" | "FAILED" | "CANCELLED") {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} still {status} after a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running S3-compatible server (`moto_server`); stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    _child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl S3Server {
    /// Starts `moto_server` on a free port, or returns `None` (after saying
    /// so) when it is not installed; in CI its absence is a failure.
    pub async fn start() -> Option<S3Server> {
        let path = std::env::var_os("PATH")?;
        let Some(moto) = std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "moto_server is missing: pip install 'moto[server]'"
            );
            eprintln!("skipping: moto_server is not installed (pip install 'moto[server]')");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while http_client().get(&endpoint).send().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(S3Server {
            _child: child,
            endpoint,
        })
    }

    /// Creates a bucket.
    pub async fn bucket(&self, name: &str) {
        let made = http_client()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(made.status().is_success(), "{made:?}");
    }
}

/// A server on PostgreSQL (a schema of its own in the database of
/// `SES_EXPORT_TEST_DATABASE_URL`) with its managed exports on an
/// S3-compatible server, as a cluster member runs; the schema is dropped
/// by [`PgServer::finish`].
#[derive(Debug)]
pub struct PgServer {
    /// The cluster member: its URL, data dir and process.
    pub server: Server,
    /// The S3 server's `http://127.0.0.1:PORT`, whose bucket `managed`
    /// holds the server's exports and segments.
    pub s3_endpoint: String,
    _s3: S3Server,
    base: String,
    schema: String,
}

impl PgServer {
    /// Starts one with `args` added, or returns `None` (after saying so)
    /// when PostgreSQL or `moto_server` is not there; in CI that is a
    /// failure.
    pub async fn start(label: &str, args: &[&str]) -> Option<PgServer> {
        let Ok(base) = std::env::var("SES_EXPORT_TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "SES_EXPORT_TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipping: set SES_EXPORT_TEST_DATABASE_URL");
            return None;
        };
        let s3 = S3Server::start().await?;
        s3.bucket("managed").await;
        let schema = format!("{label}_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .expect("schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let mut all = vec![
            "--database-url",
            &url,
            "--s3-endpoint-url",
            &s3.endpoint,
            "--managed-bucket",
            "managed",
            "--signing-secret",
            "a-signing-secret-of-at-least-32-bytes!!",
        ];
        all.extend_from_slice(args);
        // Any key does for moto; without one the S3 client asks the
        // machine's instance metadata.
        let env = [
            ("AWS_ACCESS_KEY_ID", "moto"),
            ("AWS_SECRET_ACCESS_KEY", "moto"),
            ("AWS_REGION", "us-east-1"),
        ];
        let temp = tempfile::tempdir().expect("temp dir");
        let mut server = Server::start_with_env(temp.path(), &all, &env).await;
        server._temp = Some(temp);
        Some(PgServer {
            server,
            s3_endpoint: s3.endpoint.clone(),
            _s3: s3,
            base,
            schema,
        })
    }

    /// Stops the server and drops its schema.
    pub async fn finish(self) {
        let PgServer {
            server, base, schema, ..
        } = self;
        drop(server);
        if let Ok((client, connection)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

/// Runs `script` with `python3`, `input` on its standard input; its
/// standard output, or `None` (after saying so) when the PyPI package that
/// provides `module` is not installed, which in CI is a failure. A script
/// that fails is a failed test.
pub fn python_with(module: &str, package: &str, script: &str, input: &[u8]) -> Option<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(input).expect("write");
    let output = child.wait_with_output().expect("python3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains(&format!("No module named '{module}'")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "pip install {package}: CI runs this test with it"
        );
        eprintln!("skipping: pip install {package}");
        return None;
    }
    assert!(output.status.success(), "python3 failed: {stderr}");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}
