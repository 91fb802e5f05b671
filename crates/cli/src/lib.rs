//! `ses-export`: the command line for SES v2 export jobs, in the AWS CLI's
//! habits (`--endpoint-url`, `--region`, `--profile`, `--output`), over
//! `ses-export-client`; `seed` uses `ses-export-core`'s generator.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod commands;
mod ingest;
pub mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Format;

/// The command line for Amazon SES v2 export jobs.
#[derive(Debug, Parser)]
#[command(
    name = "ses-export",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  ses-export seed --messages 10000 | ses-export ingest -\n  ses-export list-export-jobs --query 'ExportJobs[].JobId' --output text\n\nExit codes: 0 done, 1 an error, 2 a usage error, 3 the job ended FAILED or CANCELLED (wait),\n4 some lines were rejected (ingest, seed --send)."
)]
pub struct Cli {
    /// The service to call (default: AWS_ENDPOINT_URL_SESV2, AWS_ENDPOINT_URL,
    /// the profile's endpoint_url, or http://127.0.0.1:4599).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The region to sign for (default: AWS_REGION, the profile's, or us-east-1).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// A profile from the shared credentials and config files.
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// A PEM file of the certificate authorities to trust for an https
    /// endpoint, instead of the system's (as the AWS CLI's --ca-bundle).
    #[arg(
        long,
        global = true,
        env = "AWS_CA_BUNDLE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ca_bundle: Option<PathBuf>,

    /// How to print answers (default: AWS_DEFAULT_OUTPUT, the profile's
    /// output, or json).
    #[arg(long, global = true, value_enum)]
    pub output: Option<Format>,

    /// A JMESPath query applied to the answer before it is printed, as the
    /// AWS CLI's --query (for example 'ExportJobs[].JobId').
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands: the six operations, then the local ones.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an export job.
    #[command(
        after_help = "Example:\n  ses-export create-export-job \\\n    --export-data-source '{\"MessageInsightsDataSource\": {\"StartDate\": \"2024-01-01\", \"EndDate\": \"2024-02-01\", \"Include\": {\"Isp\": [\"Gmail\"]}}}' \\\n    --export-destination '{\"DataFormat\": \"CSV\"}'"
    )]
    CreateExportJob {
        /// The ExportDataSource as JSON (timestamps as epoch seconds or ISO 8601).
        #[arg(long)]
        export_data_source: Option<String>,
        /// The ExportDestination as JSON.
        #[arg(long)]
        export_destination: Option<String>,
        /// The whole request as JSON, or file://PATH.
        #[arg(long)]
        cli_input_json: Option<String>,
    },
    /// Show an export job.
    #[command(
        after_help = "Example:\n  ses-export get-export-job --job-id 0c3b2a1e-... --query JobStatus --output text"
    )]
    GetExportJob {
        /// The job's id, as CreateExportJob answered it.
        #[arg(long)]
        job_id: String,
    },
    /// List export jobs, newest first, every page.
    #[command(
        after_help = "Example:\n  ses-export list-export-jobs --query 'ExportJobs[?JobStatus==`COMPLETED`].JobId' --output text"
    )]
    ListExportJobs {
        /// Jobs per request.
        #[arg(long)]
        page_size: Option<i32>,
        /// Only jobs with this status (CREATED, PROCESSING, COMPLETED, FAILED, CANCELLED).
        #[arg(long)]
        job_status: Option<String>,
        /// Only jobs of this type (METRICS_DATA, MESSAGE_INSIGHTS).
        #[arg(long)]
        export_source_type: Option<String>,
    },
    /// Cancel an export job that has not ended.
    #[command(after_help = "Example:\n  ses-export cancel-export-job --job-id 0c3b2a1e-...")]
    CancelExportJob {
        /// The job's id.
        #[arg(long)]
        job_id: String,
    },
    /// Wait for an export job to end; exits 3 if it FAILED or was CANCELLED.
    #[command(after_help = "Example:\n  ses-export wait --job-id 0c3b2a1e-... --timeout 600")]
    Wait {
        /// The job's id.
        #[arg(long)]
        job_id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Download a completed export job's file.
    #[command(after_help = "Example:\n  ses-export download --job-id 0c3b2a1e-... --out gmail.csv")]
    Download {
        /// The job's id.
        #[arg(long)]
        job_id: String,
        /// Where to write it (default: JOB_ID.csv or JOB_ID.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send SES event records (JSON Lines, gzip or plain; `-` for stdin; s3://).
    #[command(
        after_help = "Examples:\n  ses-export seed --messages 10000 | ses-export ingest -\n  ses-export ingest s3://my-ses-events/firehose/2024/ --resume backfill.txt\n\nExit code 4 when some lines were rejected (the rest were kept)."
    )]
    Ingest {
        /// Files to read (`-` for standard input), plain or gzip, or
        /// s3://BUCKET/PREFIX for every object under the prefix.
        #[arg(required = true, value_name = "FILE|S3_URL")]
        files: Vec<String>,
        /// Largest request body, in bytes (split at line ends).
        #[arg(long, default_value_t = 4 << 20)]
        chunk_bytes: usize,
        /// With s3://: record each finished object in FILE and skip those
        /// it already lists, so an interrupted backfill goes on where it
        /// stopped.
        #[arg(long, value_name = "FILE")]
        resume: Option<PathBuf>,
        /// With s3://: an S3-compatible endpoint instead of AWS.
        #[arg(long, env = "AWS_ENDPOINT_URL_S3", hide_env_values = true, value_name = "URL")]
        s3_endpoint_url: Option<String>,
        /// With s3://: objects read and sent at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
    },
    /// Write a synthetic, realistic SES event stream.
    #[command(after_help = "Example:\n  ses-export seed --messages 10000 --days 7 --out events.jsonl")]
    Seed {
        /// How many messages.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Over how many days, ending today.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The same seed gives the same stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// When the first message is sent (ISO 8601; default: DAYS days ago).
        #[arg(long)]
        start: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, conflicts_with = "send")]
        out: Option<PathBuf>,
        /// Send the stream to the service instead.
        #[arg(long)]
        send: bool,
    },
    /// Show one message's recipients and events.
    #[command(after_help = "Example:\n  ses-export get-message-insights --message-id 0100018c...-000000")]
    GetMessageInsights {
        /// The message id SES gave the message.
        #[arg(long)]
        message_id: String,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ses-export completion bash > /etc/bash_completion.d/ses-export\n  ses-export completion zsh > \"${fpath[1]}/_ses-export\""
    )]
    Completion {
        /// The shell: bash, zsh, fish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Daily metric values, as VDM's dashboard shows them.
    #[command(
        after_help = "Example:\n  ses-export batch-get-metric-data --queries '[{\"Id\": \"sends\", \"Namespace\": \"VDM\", \"Metric\": \"SEND\", \"StartDate\": \"2024-01-01\", \"EndDate\": \"2024-01-08\"}]'"
    )]
    BatchGetMetricData {
        /// The queries as JSON, or file://PATH.
        #[arg(long)]
        queries: String,
    },
}

/// Exit codes (SPEC §11).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The service or the connection failed, or the input was wrong.
    pub const ERROR: u8 = 1;
    /// The command line itself is wrong (clap's usage errors).
    pub const USAGE: u8 = 2;
    /// `wait`: the job ended FAILED or CANCELLED.
    pub const JOB_DID_NOT_COMPLETE: u8 = 3;
    /// `ingest`, `seed --send`: some lines were rejected (the rest were kept).
    pub const LINES_REJECTED: u8 = 4;
}

/// Where the CLI talks to when nothing says otherwise: a local server.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4599";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Cli {
    /// The endpoint to call, resolved once at start (see [`Cli::resolve`]).
    pub fn endpoint(&self) -> &str {
        self.endpoint_url.as_deref().unwrap_or(DEFAULT_ENDPOINT)
    }

    /// Fills in what the flags left to the environment and the profile, in
    /// the AWS CLI's order: the endpoint (`--endpoint-url`,
    /// `AWS_ENDPOINT_URL_SESV2`, `AWS_ENDPOINT_URL`, the profile's
    /// `endpoint_url`) and the output (`--output`, `AWS_DEFAULT_OUTPUT`, the
    /// profile's `output`, json).
    pub fn resolve(&mut self) -> Result<Format, output::OutputError> {
        let profile = self.profile.clone();
        let setting = |key: &str| ses_export_client::credentials::profile_setting(profile.as_deref(), key);
        if self.endpoint_url.is_none() {
            self.endpoint_url = env("AWS_ENDPOINT_URL_SESV2")
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .or_else(|| setting("endpoint_url"));
        }
        match self.output {
            Some(format) => Ok(format),
            None => match env("AWS_DEFAULT_OUTPUT") {
                Some(text) => text
                    .parse()
                    .map_err(|e: output::OutputError| e.of("AWS_DEFAULT_OUTPUT")),
                None => match setting("output") {
                    Some(text) => text
                        .parse()
                        .map_err(|e: output::OutputError| e.of("the profile's output")),
                    None => Ok(Format::Json),
                },
            },
        }
    }
}

/// Runs the command line: parses the arguments, runs the command, and
/// says how it ended (SPEC §11's exit codes).
pub fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let output = match cli
        .resolve()
        .and_then(|format| output::Output::new(format, cli.query.as_deref()))
    {
        Ok(output) => output,
        Err(message) => {
            eprintln!("ses-export: {message}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ses-export: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let result = runtime.block_on(commands::run(&cli, &output));
    // A reader blocked on a terminal's standard input must not keep the
    // process alive once the command has ended.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("ses-export: {message}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The shells `completion` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
// The variants are the shells' names; a doc comment on one would become
// clap's help text for that value.
#[allow(missing_docs)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}
