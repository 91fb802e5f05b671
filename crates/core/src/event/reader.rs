//! Files and bodies of records: JSON Lines, plain or gzip (as Firehose
//! writes them), read one line at a time so memory stays flat.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;

use super::{SesEvent, parse_record};

/// The longest line read; a longer one is reported, skipped, and never held
/// in memory whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

pub use ses_export_model::ingest::LineError;

/// One non-blank line, parsed.
#[derive(Debug)]
pub struct ParsedLine {
    /// The line's number in the input, from 1.
    pub line: u64,
    /// The event, or why the line is not one.
    pub result: Result<SesEvent, String>,
}

/// Wraps `input` so that gzip data (one or more members, as Firehose
/// concatenates them) is decompressed and plain text passes through.
pub fn open_events<'a, R: Read + Send + 'a>(input: R) -> io::Result<Box<dyn BufRead + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Parses records line by line; an I/O error ends the iteration.
#[derive(Debug)]
pub struct EventReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> EventReader<R> {
    /// Reads lines from `input` (already decompressed: see [`open_events`]).
    pub fn new(input: R) -> Self {
        EventReader {
            input,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Skips the rest of an over-long line without keeping it.
    fn skip_line(&mut self) -> io::Result<()> {
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.input.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = chunk.len();
                    self.input.consume(n);
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = io::Result<ParsedLine>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            let read = (&mut self.input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf);
            match read {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
            }
            self.line += 1;
            let line = self.line;
            if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
                if let Err(e) = self.skip_line() {
                    self.done = true;
                    return Some(Err(e));
                }
                let reason = format!("line is longer than {MAX_LINE_BYTES} bytes");
                return Some(Ok(ParsedLine {
                    line,
                    result: Err(reason),
                }));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text.trim(),
                Err(e) => {
                    let result = Err(format!("not UTF-8: {e}"));
                    return Some(Ok(ParsedLine { line, result }));
                }
            };
            if text.is_empty() {
                continue;
            }
            return Some(Ok(ParsedLine {
                line,
                result: parse_record(text),
            }));
        }
        None
    }
}

/// A reader that decompresses one or more gzip members from `input`.
pub fn gzip_reader<R: Read>(input: R) -> impl Read {
    MultiGzDecoder::new(BufReader::new(input))
}
