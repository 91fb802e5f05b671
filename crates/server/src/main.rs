//! `ses-export-server`: serves the Amazon SES v2 export-jobs API. Prints
//! `listening on http://ADDR` to stdout once ready; logs go to stderr.

use std::process::ExitCode;

use clap::Parser;
use ses_export_server::config::{Config, LogFormat};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    // RUST_LOG, as every Rust program; SES_EXPORT_LOG, the older name, when
    // RUST_LOG is not set.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("SES_EXPORT_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Lines are written by a thread of their own, so a request does not
    // wait on a write to stderr (one per request with the access log: a
    // fifth of the throughput, docs/benchmarks.md). Not lossy: when the
    // writer falls 16k lines behind, logging waits rather than drops (the
    // buffer is allocated whole: the default 128k lines idled at 4 MiB).
    let (writer, _flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(16_384)
        .lossy(false)
        .thread_name("ses-export-log")
        .finish(std::io::stderr());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours on a terminal only: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match config.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ses-export-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(ses_export_server::run(config));
    // A scan still running on a blocking thread past the shutdown deadline
    // does not hold the exit; its job is run again at the next start.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ses-export-server: {e}");
            ExitCode::FAILURE
        }
    }
}
