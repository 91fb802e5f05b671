//! What each command does.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use ses_export_client::credentials::{Credentials, Resolve};
use ses_export_client::model::schema::{Shape, Shaped};
use ses_export_client::model::types::*;
use ses_export_client::{Client, ClientConfig, Error, ErrorKind};
use ses_export_core::clock::{Millis, day_of, day_start, now, parse_iso8601};
use ses_export_core::generate::{EventGenerator, GeneratorConfig};

use crate::output::Output;
use crate::{Cli, Command, Shell, exit, ingest};

type Result<T> = std::result::Result<T, String>;

/// Credentials and region as AWS tools find them, through AWS's own
/// `aws-config`: the environment, the shared credentials and config files
/// (`credential_process`, SSO, assumed roles), web identity, container and
/// instance metadata. An explicit `--profile` is read from the files even
/// when the environment holds keys, as the AWS CLI does.
async fn resolve(cli: &Cli) -> Result<Resolve> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http.clone());
    if let Some(region) = &cli.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &cli.profile {
        let provider_config = aws_config::provider_config::ProviderConfig::default().with_http_client(http);
        loader = loader.profile_name(profile).credentials_provider(
            aws_config::profile::ProfileFileCredentialsProvider::builder()
                .configure(&provider_config)
                .profile_name(profile)
                .build(),
        );
    }
    let config = loader.load().await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| "no credentials provider".to_owned())?;
    let found = provider.provide_credentials().await.map_err(|e| {
        format!(
            "no credentials: {}. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile (a local \
             ses-export-server without --credentials takes access key `test`, secret `test`).",
            ses_export_core::error_chain(&e)
        )
    })?;
    let mut credentials = Credentials::new(found.access_key_id(), found.secret_access_key());
    if let Some(token) = found.session_token() {
        credentials = credentials.with_session_token(token);
    }
    let mut resolve = Resolve::default()
        .with_region(
            config
                .region()
                .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        )
        .with_credentials(credentials);
    resolve.profile = cli.profile.clone();
    Ok(resolve)
}

async fn client(cli: &Cli) -> Result<Client> {
    client_with(cli, resolve(cli).await?)
}

fn client_with(cli: &Cli, resolve: Resolve) -> Result<Client> {
    let mut config = ClientConfig::new(cli.endpoint()).with_resolve(resolve);
    config.ca_bundle = cli.ca_bundle.clone();
    Client::new(config).map_err(|e| explain(&e, cli.endpoint()))
}

/// An error as a sentence that says what to do.
fn explain(error: &Error, endpoint: &str) -> String {
    if let Some(problem) = error.tls_problem() {
        return format!(
            "could not connect to {endpoint}: {problem}. If the server's certificate comes from your own CA, \
             give that CA with --ca-bundle FILE (or AWS_CA_BUNDLE)."
        );
    }
    match error {
        Error::Transport { source, .. } if source.is_connect() => format!(
            "could not connect to {endpoint}: is ses-export-server running there? \
             Start it with `ses-export-server`, or point --endpoint-url (AWS_ENDPOINT_URL) at it."
        ),
        Error::Service(e) => match e.kind.name() {
            _ if matches!(e.kind, ErrorKind::Auth(_)) => format!(
                "{}: {}\nThe server refused the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --profile \
                 (a local server without --credentials takes access key `test`, secret `test`).",
                e.kind.name(),
                e.message
            ),
            "TooManyRequestsException" => format!(
                "{}: throttled even after retries ({}); the service allows about one call a second per operation.",
                e.kind.name(),
                e.message
            ),
            _ => format!("{}: {}", e.kind.name(), e.message),
        },
        other => other.to_string(),
    }
}

fn print(value: &impl serde::Serialize, output: &Output) -> Result<()> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let text = output.render(&value).map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing the answer: {e}"))
}

/// Reads `text` as JSON, or the file it names with `file://`.
fn json_arg(name: &str, text: &str) -> Result<Value> {
    let text = match text.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{name}: reading {path}: {e}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| format!("{name} is not valid JSON: {e}"))
}

/// Turns ISO 8601 strings where the model has timestamps into epoch
/// seconds, as the AWS CLI accepts both.
fn coerce_timestamps(shape: &'static Shape, value: &mut Value) -> Result<()> {
    match (shape, value) {
        (Shape::Timestamp(_), v @ Value::String(_)) => {
            let text = v.as_str().unwrap_or_default().to_owned();
            let millis = parse_iso8601(&text)
                .or_else(|| parse_iso8601(&format!("{text}T00:00:00Z")))
                .ok_or_else(|| format!("{text:?} is not a time: use epoch seconds or ISO 8601"))?
                .0;
            *v = if millis % 1000 == 0 {
                json!(millis / 1000)
            } else {
                json!(millis as f64 / 1000.0)
            };
        }
        (Shape::Structure(s), Value::Object(map)) => {
            for member in s.members {
                if let Some(v) = map.get_mut(member.name) {
                    coerce_timestamps(member.shape, v)?;
                }
            }
        }
        (Shape::List(l), Value::Array(items)) => {
            for item in items {
                coerce_timestamps(l.member, item)?;
            }
        }
        (Shape::Map(m), Value::Object(map)) => {
            for v in map.values_mut() {
                coerce_timestamps(m.value, v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn typed<T: Shaped + serde::de::DeserializeOwned>(mut value: Value, what: &str) -> Result<T> {
    coerce_timestamps(T::SHAPE, &mut value)?;
    serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))
}

/// Runs `cli`'s command; the exit code it ends with (SPEC §11).
pub async fn run(cli: &Cli, output: &Output) -> Result<u8> {
    let fail = |e: Error| explain(&e, cli.endpoint());
    match &cli.command {
        Command::CreateExportJob {
            export_data_source,
            export_destination,
            cli_input_json,
        } => {
            let input = create_request(
                cli_input_json.as_deref(),
                export_data_source.as_deref(),
                export_destination.as_deref(),
            )?;
            print(
                &client(cli).await?.create_export_job(input).await.map_err(fail)?,
                output,
            )?;
        }
        Command::GetExportJob { job_id } => {
            print(&client(cli).await?.get_export_job(job_id).await.map_err(fail)?, output)?;
        }
        Command::ListExportJobs {
            page_size,
            job_status,
            export_source_type,
        } => {
            let input = ListExportJobsRequest {
                next_token: None,
                page_size: *page_size,
                export_source_type: export_source_type.as_deref().map(ExportSourceType::from),
                job_status: job_status.as_deref().map(JobStatus::from),
            };
            print(&list_all(&client(cli).await?, input).await.map_err(fail)?, output)?;
        }
        Command::CancelExportJob { job_id } => {
            print(
                &client(cli).await?.cancel_export_job(job_id).await.map_err(fail)?,
                output,
            )?;
        }
        Command::Wait { job_id, timeout } => return wait(cli, output, job_id, *timeout).await,
        Command::Download { job_id, out } => download(cli, output, job_id, out.as_deref()).await?,
        Command::Ingest {
            files,
            chunk_bytes,
            resume,
            s3_endpoint_url,
            parallel,
        } => {
            let resolved = resolve(cli).await?;
            let client = client_with(cli, resolved.clone())?;
            let options = ingest::Options {
                chunk_bytes: *chunk_bytes,
                resume: resume.clone(),
                s3_endpoint_url: s3_endpoint_url.clone(),
                parallel: usize::from(*parallel),
                resolve: resolved,
                ca_bundle: cli.ca_bundle.clone(),
            };
            let (report, failed) = ingest::run(&client, files, &options).await.map_err(|e| match e {
                ingest::IngestError::Client(e) => fail(e),
                ingest::IngestError::Input(m) => m,
            })?;
            print(&report, output)?;
            if failed {
                return Ok(exit::ERROR);
            }
            if report.rejected() > 0 {
                return Ok(exit::LINES_REJECTED);
            }
        }
        Command::Seed {
            messages,
            days,
            seed,
            start,
            out,
            send,
        } => {
            let config = GeneratorConfig::new(*seed, *messages, seed_start(start.as_deref(), *days)?, *days);
            if *send {
                let totals = send_generated(&client(cli).await?, config).await.map_err(fail)?;
                print(&totals, output)?;
                if totals.rejected > 0 {
                    return Ok(exit::LINES_REJECTED);
                }
            } else {
                write_generated(&config, out.as_deref())?;
            }
        }
        Command::GetMessageInsights { message_id } => {
            print(
                &client(cli)
                    .await?
                    .get_message_insights(message_id)
                    .await
                    .map_err(fail)?,
                output,
            )?;
        }
        Command::Completion { shell } => completion(*shell),
        Command::BatchGetMetricData { queries } => {
            let queries = json_arg("--queries", queries)?;
            let input: BatchGetMetricDataRequest = typed(json!({"Queries": queries}), "--queries")?;
            print(
                &client(cli).await?.batch_get_metric_data(input).await.map_err(fail)?,
                output,
            )?;
        }
    }
    Ok(0)
}

/// `create-export-job`'s request: `--cli-input-json`, then the members
/// given as flags over it.
fn create_request(
    cli_input_json: Option<&str>,
    export_data_source: Option<&str>,
    export_destination: Option<&str>,
) -> Result<CreateExportJobRequest> {
    let mut request = match cli_input_json {
        Some(text) => json_arg("--cli-input-json", text)?,
        None => json!({}),
    };
    if let Some(text) = export_data_source {
        request["ExportDataSource"] = json_arg("--export-data-source", text)?;
    }
    if let Some(text) = export_destination {
        request["ExportDestination"] = json_arg("--export-destination", text)?;
    }
    for (member, flag) in [
        ("ExportDataSource", "--export-data-source"),
        ("ExportDestination", "--export-destination"),
    ] {
        if request.get(member).is_none() {
            return Err(format!(
                "{flag} is required (or give the whole request with --cli-input-json)"
            ));
        }
    }
    typed(request, "the request")
}

/// Every page of `list-export-jobs`, as one answer.
async fn list_all(client: &Client, input: ListExportJobsRequest) -> std::result::Result<ListExportJobsResponse, Error> {
    let mut jobs = Vec::new();
    let mut stream = std::pin::pin!(client.list_all_export_jobs(input));
    while let Some(job) = stream.next().await {
        jobs.push(job?);
    }
    Ok(ListExportJobsResponse {
        export_jobs: Some(jobs),
        next_token: None,
    })
}

/// `wait`: polls until the job ends, with a spinner on a terminal; exits 3
/// unless it COMPLETED.
async fn wait(cli: &Cli, output: &Output, job_id: &str, timeout: u64) -> Result<u8> {
    let fail = |e: Error| explain(&e, cli.endpoint());
    let client = client(cli).await?;
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = String::new();
    let wait = client.wait_for_job(job_id, Duration::from_secs(1), |job| {
        let status = job.job_status.as_ref().map_or("?".to_owned(), ToString::to_string);
        let line = format!("{job_id}: {status} ({}s)", started.elapsed().as_secs());
        match &bar {
            Some(bar) => bar.set_message(line),
            None if status != last => eprintln!("{line}"),
            None => {}
        }
        last = status;
    });
    let job = tokio::time::timeout(Duration::from_secs(timeout), wait)
        .await
        .map_err(|_| format!("{job_id} had not ended after {timeout} s"))?
        .map_err(fail)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print(&job, output)?;
    if job.job_status != Some(JobStatus::Completed) {
        let reason = job
            .failure_info
            .and_then(|f| f.error_message)
            .map_or_else(String::new, |m| format!(": {m}"));
        eprintln!(
            "ses-export: job {job_id} ended {}{reason}",
            job.job_status.map_or_else(String::new, |s| s.to_string())
        );
        return Ok(exit::JOB_DID_NOT_COMPLETE);
    }
    Ok(0)
}

/// `download`: a COMPLETED job's file, to `out` or `JOB_ID.csv|json`.
async fn download(cli: &Cli, output: &Output, job_id: &str, out: Option<&std::path::Path>) -> Result<()> {
    let fail = |e: Error| explain(&e, cli.endpoint());
    let client = client(cli).await?;
    let job = client.get_export_job(job_id).await.map_err(fail)?;
    if job.job_status != Some(JobStatus::Completed) {
        return Err(format!(
            "job {job_id} is {}, not COMPLETED: run `ses-export wait --job-id {job_id}` first",
            job.job_status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
        ));
    }
    let url = job
        .export_destination
        .as_ref()
        .and_then(|d| d.s3_url.clone())
        .ok_or("the job has no download URL")?;
    if url.starts_with("s3://") {
        return Err(format!(
            "job {job_id} wrote its file to {url}; fetch it from there (for example `aws s3 cp {url} .`)"
        ));
    }
    let extension = match job.export_destination.map(|d| d.data_format) {
        Some(DataFormat::Json) => "json",
        _ => "csv",
    };
    let path = out.map_or_else(|| format!("{job_id}.{extension}").into(), std::path::Path::to_path_buf);
    let bytes = client.download(&url, &path).await.map_err(fail)?;
    print(
        &json!({"JobId": job_id, "Path": path.display().to_string(), "Bytes": bytes}),
        output,
    )
}

/// `seed --start`: a day or a time; by default `days` days before today.
fn seed_start(start: Option<&str>, days: u32) -> Result<Millis> {
    match start {
        Some(text) => parse_iso8601(text)
            .or_else(|| parse_iso8601(&format!("{text}T00:00:00Z")))
            .ok_or_else(|| format!("--start {text:?} is not an ISO 8601 time")),
        None => Ok(day_start(day_of(now()) - i64::from(days))),
    }
}

/// What `seed --send` ingested, summed over its bodies.
#[derive(Debug, Default, serde::Serialize)]
struct Totals {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

/// `seed --send`: the generated events, 10,000 lines a body.
async fn send_generated(client: &Client, config: GeneratorConfig) -> std::result::Result<Totals, Error> {
    let mut totals = Totals::default();
    let mut body = Vec::new();
    let mut events = EventGenerator::new(config).peekable();
    while events.peek().is_some() {
        body.clear();
        for line in events.by_ref().take(10_000) {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        let part: ses_export_client::model::ingest::IngestReport = client.ingest(&body).await?;
        totals.accepted += part.accepted;
        totals.duplicates += part.duplicates;
        totals.rejected += part.rejected;
    }
    Ok(totals)
}

/// `seed`: the generated events as JSON Lines, to `out` or standard output.
fn write_generated(config: &GeneratorConfig, out: Option<&std::path::Path>) -> Result<()> {
    let result = match out {
        Some(path) => {
            std::fs::File::create(path).and_then(|file| ses_export_core::generate::write_events(config, file))
        }
        None => ses_export_core::generate::write_events(config, std::io::stdout().lock()),
    };
    match result {
        Ok(_) => Ok(()),
        // `ses-export seed | head` closes the pipe early; that is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing the events: {e}")),
    }
}

/// `completion`: the shell's completion script, to standard output.
fn completion(shell: Shell) {
    use clap::CommandFactory;
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut Cli::command(), "ses-export", &mut std::io::stdout());
}
