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
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = io::Result<ParsedLine>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let read = read_line(&mut self.input, &mut self.buf);
            let line = self.line + 1;
            match read {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Line::End) => {
                    self.done = true;
                    return None;
                }
                Ok(Line::TooLong) => {
                    self.line = line;
                    return Some(Ok(ParsedLine {
                        line,
                        result: Err(line_too_long()),
                    }));
                }
                Ok(Line::Read) => self.line = line,
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
                result: parse_record(text).map_err(|e| bounded_reason(e.into_reason())),
            }));
        }
        None
    }
}

/// The longest reason a rejected line is given, in bytes: a reason may
/// quote the line (serde_json's errors quote the value they refuse), and a
/// report lists up to a thousand of them, so each is cut here.
pub const MAX_REASON_BYTES: usize = 256;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] (on a character
/// boundary) with `…` to say so.
pub fn bounded_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES - '…'.len_utf8();
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A line, in the buffer (with its `\n`, unless it ended the input).
    Read,
    /// A line longer than [`MAX_LINE_BYTES`]: skipped to its end, never
    /// held whole; the buffer holds nothing useful.
    TooLong,
    /// The end of the input.
    End,
}

/// Why a line is refused when it is longer than [`MAX_LINE_BYTES`].
pub fn line_too_long() -> String {
    format!("line is longer than {MAX_LINE_BYTES} bytes")
}

/// Reads the next line of `input` into `buf` (cleared first), holding at
/// most [`MAX_LINE_BYTES`] of it, so no line, however long, costs more
/// memory than that.
pub fn read_line<R: BufRead + ?Sized>(input: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    if input.take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buf)? == 0 {
        return Ok(Line::End);
    }
    if buf.len() <= MAX_LINE_BYTES || buf.last() == Some(&b'\n') {
        return Ok(Line::Read);
    }
    // The rest of an over-long line, skipped without keeping it.
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(Line::TooLong);
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(Line::TooLong);
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

/// A reader that decompresses one or more gzip members from `input`.
pub fn gzip_reader<R: Read>(input: R) -> impl Read {
    MultiGzDecoder::new(BufReader::new(input))
}
