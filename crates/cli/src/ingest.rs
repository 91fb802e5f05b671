//! `ses-export ingest`: files, standard input, and `s3://bucket/prefix/`
//! backfills, each sent in bodies of whole lines to the ingest endpoint.
//!
//! A backfill lists the prefix, reads a few objects at a time (plain or
//! gzip, as Firehose writes them), reports an object that cannot be read
//! and goes on with the rest, and with `--resume FILE` records each object
//! once all of its events are acknowledged, so an interrupted run continues
//! where it stopped. Events are idempotent on the server: an object sent
//! again counts its events as duplicates, never twice.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use serde_json::{Value, json};
use ses_export_client::credentials::Resolve;
use ses_export_client::s3::{S3Object, S3Reader, parse_s3_url};
use ses_export_client::{Client, Error};

/// Rejected lines listed in the summary (all are counted).
const LISTED_ERRORS: usize = 20;

pub(crate) enum IngestError {
    Client(Error),
    Input(String),
}

/// How to ingest.
pub(crate) struct Options {
    pub chunk_bytes: usize,
    pub resume: Option<PathBuf>,
    pub s3_endpoint_url: Option<String>,
    pub parallel: usize,
    pub resolve: Resolve,
    pub ca_bundle: Option<PathBuf>,
}

/// What the inputs came to.
#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    errors: Vec<Value>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        for e in other.errors {
            if self.errors.len() < LISTED_ERRORS {
                self.errors.push(e);
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} accepted, {} duplicates, {} rejected",
            self.accepted, self.duplicates, self.rejected
        )
    }
}

/// Ingests every input; the summary, and whether some input failed (an
/// S3 object that could not be read: the rest were still ingested).
pub(crate) async fn run(client: &Client, inputs: &[String], options: &Options) -> Result<(Value, bool), IngestError> {
    let mut tally = Tally::default();
    let mut s3_summary = serde_json::Map::new();
    let mut failed = false;
    for input in inputs {
        if input.starts_with("s3://") {
            let (bucket, prefix) = parse_s3_url(input)
                .ok_or_else(|| IngestError::Input(format!("{input}: an S3 URL is s3://BUCKET/PREFIX")))?;
            let outcome = backfill(client, &bucket, &prefix, options, &mut tally).await?;
            failed |= !outcome["failed"].as_array().is_none_or(Vec::is_empty);
            for (key, value) in outcome.as_object().into_iter().flatten() {
                s3_summary.insert(key.clone(), value.clone());
            }
        } else {
            file(client, input, options.chunk_bytes, &mut tally).await?;
        }
    }
    let mut report = json!({
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "rejected": tally.rejected,
        "errors": tally.errors,
    });
    if let Value::Object(members) = &mut report {
        members.extend(s3_summary);
    }
    Ok((report, failed))
}

/// A file, or standard input for `-`.
async fn file(client: &Client, name: &str, chunk_bytes: usize, tally: &mut Tally) -> Result<(), IngestError> {
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = if name == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(name).map_err(|e| IngestError::Input(format!("{name}: {e}")))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let read = Arc::new(AtomicU64::new(0));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = match size {
            Some(size) => indicatif::ProgressBar::new(size),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {bytes}/{total_bytes} {wide_bar} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(name.to_owned());
        bar
    });
    let progress = |t: &Tally| {
        if let Some(bar) = &bar {
            bar.set_position(read.load(Ordering::Relaxed));
            bar.set_message(t.summary());
        }
    };
    let counted = CountingReader {
        inner: reader,
        count: Arc::clone(&read),
    };
    let result = send(client, name, Box::new(counted), chunk_bytes, tally, &progress).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

/// Sends `reader`'s lines in bodies of at most `chunk_bytes`, split at line
/// ends; rejected lines are listed by input and line.
async fn send(
    client: &Client,
    name: &str,
    reader: Box<dyn Read + Send>,
    chunk_bytes: usize,
    tally: &mut Tally,
    progress: &(dyn Fn(&Tally) + Sync),
) -> Result<(), IngestError> {
    let mut lines =
        ses_export_core::event::open_events(reader).map_err(|e| IngestError::Input(format!("{name}: {e}")))?;
    let mut first_line = 1u64;
    let mut line_count = 0u64;
    let mut body = Vec::with_capacity(chunk_bytes.min(64 << 20));
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = lines
            .read_until(b'\n', &mut line)
            .map_err(|e| IngestError::Input(format!("{name}: reading: {e}")))?;
        let full = n > 0 && body.len() + line.len() > chunk_bytes && !body.is_empty();
        if n == 0 || full {
            if !body.is_empty() {
                let report = client.ingest(&body).await.map_err(IngestError::Client)?;
                tally.accepted += report.accepted;
                tally.duplicates += report.duplicates;
                tally.rejected += report.rejected;
                for e in report.errors {
                    if tally.errors.len() < LISTED_ERRORS {
                        tally
                            .errors
                            .push(json!({"file": name, "line": e.line + first_line - 1, "reason": e.reason}));
                    }
                }
                progress(tally);
                body.clear();
                first_line = line_count + 1;
            }
            if n == 0 {
                return Ok(());
            }
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        body.extend_from_slice(&line);
        line_count += 1;
    }
}

/// Counts the bytes read, for the progress bar.
struct CountingReader {
    inner: Box<dyn Read + Send>,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The keys a resume file records as finished.
fn finished(path: &std::path::Path) -> Result<HashSet<String>, IngestError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(IngestError::Input(format!("--resume {}: {e}", path.display()))),
    }
}

/// Ingests every object under `s3://bucket/prefix`, `options.parallel` at
/// a time; the backfill's part of the summary.
async fn backfill(
    client: &Client,
    bucket: &str,
    prefix: &str,
    options: &Options,
    tally: &mut Tally,
) -> Result<Value, IngestError> {
    let reader = S3Reader::new(
        options.s3_endpoint_url.as_deref(),
        &options.resolve,
        options.ca_bundle.as_deref(),
    )
    .map_err(IngestError::Client)?;
    let listed = reader.list(bucket, prefix).await.map_err(IngestError::Client)?;
    let done = match &options.resume {
        Some(path) => finished(path)?,
        None => HashSet::new(),
    };
    let mut resume = match &options.resume {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| IngestError::Input(format!("--resume {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let (skipped, todo): (Vec<S3Object>, Vec<S3Object>) = listed.into_iter().partition(|o| done.contains(&o.key));
    let total_bytes: u64 = todo.iter().map(|o| o.size).sum();
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} s3://{prefix} {pos}/{len} objects {wide_bar} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{bucket}/{prefix}"));

    let chunk_bytes = options.chunk_bytes;
    let reader = &reader;
    let mut results = futures_util::stream::iter(todo)
        .map(|object| async move {
            let name = format!("s3://{bucket}/{}", object.key);
            let mut own = Tally::default();
            let outcome = match reader.get(bucket, &object.key).await {
                Ok(bytes) => {
                    let body: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes));
                    send(client, &name, body, chunk_bytes, &mut own, &|_| {}).await
                }
                Err(e) => Err(IngestError::Client(e)),
            };
            (object, own, outcome)
        })
        .buffer_unordered(options.parallel.max(1));

    let mut objects = 0u64;
    let mut bytes = 0u64;
    let mut failed = Vec::new();
    while let Some((object, own, outcome)) = results.next().await {
        tally.merge(own);
        match outcome {
            Ok(()) => {
                objects += 1;
                bytes += object.size;
                if let (Some(file), Some(path)) = (&mut resume, &options.resume) {
                    writeln!(file, "{}", object.key)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| IngestError::Input(format!("--resume {}: {e}", path.display())))?;
                }
            }
            // The server or the connection failing stops the backfill: the
            // resume file says where to go on from.
            Err(IngestError::Client(e @ (Error::Transport { .. } | Error::Service(_) | Error::Config(_)))) => {
                bar.finish_and_clear();
                return Err(IngestError::Client(e));
            }
            // An object that cannot be read is reported; the rest go on.
            Err(IngestError::Client(e)) => {
                failed.push(json!({"object": format!("s3://{bucket}/{}", object.key), "error": e.to_string()}));
            }
            Err(IngestError::Input(message)) => {
                failed.push(json!({"object": format!("s3://{bucket}/{}", object.key), "error": message}));
            }
        }
        bar.inc(1);
        bar.set_message(format!("{} of {} bytes, {}", bytes, total_bytes, tally.summary()));
    }
    bar.finish_and_clear();
    Ok(json!({
        "objects": objects,
        "objects_skipped": skipped.len(),
        "bytes": bytes,
        "failed": failed,
    }))
}
