//! `ses-export ingest`: files, standard input, and `s3://bucket/prefix/`
//! backfills, each sent in bodies of whole lines to the ingest endpoint.
//!
//! A backfill lists the prefix, reads a few objects at a time (plain or
//! gzip, as Firehose writes them), reports an object that cannot be read
//! and goes on with the rest, and with `--resume FILE` records each object
//! once all of its events are acknowledged, so an interrupted run continues
//! where it stopped. Events are idempotent on the server: an object sent
//! again counts its events as duplicates, never twice.
//!
//! Memory is bounded whatever the input: objects stream through, a blocking
//! thread per input splits lines into bodies a couple ahead of the sender,
//! and a line over the server's cap is skipped as it is read.

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use serde_json::{Value, json};
use ses_export_client::credentials::Resolve;
use ses_export_client::s3::{S3Body, S3Object, S3Reader, parse_s3_url};
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
#[derive(Default, serde::Serialize)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    errors: Vec<Value>,
}

impl Tally {
    /// Lists a rejected line, while the list has room.
    fn listed(&mut self, file: &str, line: u64, reason: String) {
        if self.errors.len() < LISTED_ERRORS {
            self.errors.push(json!({"file": file, "line": line, "reason": reason}));
        }
    }

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
pub(crate) async fn run(client: &Client, inputs: &[String], options: &Options) -> Result<(Report, bool), IngestError> {
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
    Ok((Report { tally, s3: s3_summary }, failed))
}

/// What `ingest` answers: the totals and the first rejected lines, then
/// what an S3 backfill adds (its objects, the failed ones).
#[derive(serde::Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    tally: Tally,
    #[serde(flatten)]
    s3: serde_json::Map<String, Value>,
}

impl Report {
    /// Lines that were not events.
    pub(crate) fn rejected(&self) -> u64 {
        self.tally.rejected
    }
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

/// What the splitter hands the sender: a body of whole lines, or the
/// number of a line too long for the server (skipped, never held whole).
enum Piece {
    Body { bytes: Vec<u8>, first_line: u64 },
    TooLong { line: u64 },
}

/// Sends `reader`'s lines in bodies of at most `chunk_bytes`, split at line
/// ends; rejected lines are listed by input and line. The reading and
/// splitting run on a blocking thread, a body or two ahead of the sending,
/// so memory stays a few bodies whatever the input.
async fn send(
    client: &Client,
    name: &str,
    reader: Box<dyn Read + Send>,
    chunk_bytes: usize,
    tally: &mut Tally,
    progress: &(dyn Fn(&Tally) + Sync),
) -> Result<(), IngestError> {
    let (pieces, mut received) = tokio::sync::mpsc::channel(2);
    let owned_name = name.to_owned();
    let splitter = tokio::task::spawn_blocking(move || split(&owned_name, reader, chunk_bytes, &pieces));
    while let Some(piece) = received.recv().await {
        match piece {
            Piece::Body { bytes, first_line } => {
                let report = client.ingest(&bytes).await.map_err(IngestError::Client)?;
                tally.accepted += report.accepted;
                tally.duplicates += report.duplicates;
                tally.rejected += report.rejected;
                for e in report.errors {
                    tally.listed(name, e.line + first_line - 1, e.reason);
                }
            }
            Piece::TooLong { line } => {
                tally.rejected += 1;
                tally.listed(name, line, ses_export_core::event::line_too_long());
            }
        }
        progress(tally);
    }
    splitter
        .await
        .map_err(|e| IngestError::Input(format!("{name}: reading stopped: {e}")))?
}

/// Splits `reader`'s lines (gzip undone) into bodies of at most
/// `chunk_bytes` for `pieces`; stops early when nobody receives them.
fn split(
    name: &str,
    reader: Box<dyn Read + Send>,
    chunk_bytes: usize,
    pieces: &tokio::sync::mpsc::Sender<Piece>,
) -> Result<(), IngestError> {
    use ses_export_core::event::{Line, read_line};
    let read_error = |e: std::io::Error| IngestError::Input(format!("{name}: reading: {e}"));
    let mut lines =
        ses_export_core::event::open_events(reader).map_err(|e| IngestError::Input(format!("{name}: {e}")))?;
    let capacity = chunk_bytes.min(64 << 20);
    let mut body = Vec::with_capacity(capacity);
    let mut first_line = 1u64;
    let mut line_count = 0u64;
    let mut line = Vec::new();
    // Hands over the body (if any); false when nobody receives any more.
    let flush = |body: &mut Vec<u8>, first_line: u64| {
        body.is_empty()
            || pieces
                .blocking_send(Piece::Body {
                    bytes: std::mem::replace(body, Vec::with_capacity(capacity)),
                    first_line,
                })
                .is_ok()
    };
    while !pieces.is_closed() {
        match read_line(&mut lines, &mut line).map_err(read_error)? {
            Line::End => {
                flush(&mut body, first_line);
                break;
            }
            Line::TooLong => {
                line_count += 1;
                if !flush(&mut body, first_line) || pieces.blocking_send(Piece::TooLong { line: line_count }).is_err() {
                    break;
                }
                first_line = line_count + 1;
            }
            Line::Read => {
                line_count += 1;
                if !body.is_empty() && body.len() + line.len() > chunk_bytes {
                    if !flush(&mut body, first_line) {
                        break;
                    }
                    first_line = line_count;
                }
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                body.extend_from_slice(&line);
            }
        }
    }
    Ok(())
}

/// Reads, on a blocking thread, what an async task pumps into the channel
/// (an S3 object as it arrives).
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Ingests one S3 object as it arrives, never holding it whole.
async fn send_object(
    client: &Client,
    name: &str,
    mut object: S3Body,
    chunk_bytes: usize,
    tally: &mut Tally,
) -> Result<(), IngestError> {
    let (chunks, received) = tokio::sync::mpsc::channel(4);
    let pump = async move {
        loop {
            let chunk = match object.chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => break,
                Err(e) => Err(e.to_string()),
            };
            let failed = chunk.is_err();
            if chunks.send(chunk).await.is_err() || failed {
                break;
            }
        }
    };
    let reader = Box::new(ChannelReader {
        chunks: received,
        current: bytes::Bytes::new(),
    });
    let ((), outcome) = tokio::join!(pump, send(client, name, reader, chunk_bytes, tally, &|_| {}));
    outcome
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
        Ok(text) => Ok(text.lines().filter(|l| !l.is_empty()).map(unescape_key).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(IngestError::Input(format!("--resume {}: {e}", path.display()))),
    }
}

/// A key as a resume file's line: an S3 key may hold any character, line
/// breaks included, so `%`, CR and LF are written `%25`, `%0D`, `%0A`.
fn escape_key(key: &str) -> String {
    key.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A resume file's line as the key it records.
fn unescape_key(line: &str) -> String {
    let mut key = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('%') {
        key.push_str(&rest[..at]);
        let escaped = &rest[at..];
        let (text, len) = match escaped.get(..3) {
            Some("%25") => ("%", 3),
            Some("%0D" | "%0d") => ("\r", 3),
            Some("%0A" | "%0a") => ("\n", 3),
            _ => ("%", 1),
        };
        key.push_str(text);
        rest = &escaped[len..];
    }
    key.push_str(rest);
    key
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
            let outcome = match reader.open(bucket, &object.key).await {
                Ok(body) => send_object(client, &name, body, chunk_bytes, &mut own).await,
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
                    writeln!(file, "{}", escape_key(&object.key))
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

#[cfg(test)]
mod tests {
    use super::{escape_key, unescape_key};

    /// Any key, line breaks and `%` included, is one line of a resume file
    /// and reads back as itself.
    #[test]
    fn resume_lines_hold_any_key() {
        for key in [
            "plain/key.gz",
            "two\nlines",
            "cr\r\nlf",
            "100%",
            "%0A literal",
            "%",
            "é/%25",
        ] {
            let line = escape_key(key);
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            assert_eq!(unescape_key(&line), key);
        }
    }
}
