//! `ses-export`: the command line for SES v2 export jobs, in the AWS CLI's
//! habits (`--endpoint-url`, `--region`, `--profile`, `--output`), over
//! `ses-export-client`; `seed` uses `ses-export-core`'s generator.

mod commands;
mod ingest;
pub mod output;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::Format;

/// The command line for Amazon SES v2 export jobs.
#[derive(Debug, Parser)]
#[command(name = "ses-export", version, about, long_about = None)]
pub struct Cli {
    /// The service to call.
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:4599"
    )]
    pub endpoint_url: String,

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

    /// How to print answers (default: table on a terminal, json otherwise).
    #[arg(long, global = true, value_enum)]
    pub output: Option<Format>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an export job.
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
    GetExportJob {
        #[arg(long)]
        job_id: String,
    },
    /// List export jobs, newest first, every page.
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
    CancelExportJob {
        #[arg(long)]
        job_id: String,
    },
    /// Wait for an export job to end; exits 3 if it FAILED or was CANCELLED.
    Wait {
        #[arg(long)]
        job_id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Download a completed export job's file.
    Download {
        #[arg(long)]
        job_id: String,
        /// Where to write it (default: JOB_ID.csv or JOB_ID.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send SES event records (JSON Lines, gzip or plain; `-` for stdin).
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
    GetMessageInsights {
        #[arg(long)]
        message_id: String,
    },
    /// Daily metric values: --queries '[{"Id": ..., "Namespace": "VDM", ...}]'.
    BatchGetMetricData {
        /// The queries as JSON, or file://PATH.
        #[arg(long)]
        queries: String,
    },
}

/// Exit codes.
pub mod exit {
    /// The service or the connection failed, or the input was wrong.
    pub const ERROR: u8 = 1;
    /// `wait`: the job ended FAILED or CANCELLED.
    pub const JOB_DID_NOT_COMPLETE: u8 = 3;
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ses-export: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(commands::run(&cli, format)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("ses-export: {message}");
            ExitCode::from(exit::ERROR)
        }
    }
}
