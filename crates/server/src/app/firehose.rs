//! A Firehose delivery read as a stream: `{"requestId", "timestamp",
//! "records": [{"data": base64}, ...]}` is parsed as it is decompressed,
//! each record's data decoded and handed on as lines as soon as it is read,
//! so a delivery costs a record's worth of memory at a time, whatever its
//! size, exactly as `/_ses-export/v1/events` does with its lines.

use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender};

use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use ses_export_core::event::MAX_LINE_BYTES;

/// The longest JSON string a delivery may hold: a record's base64, for a
/// record of at most [`MAX_LINE_BYTES`] (Firehose's own limit is 1,000 KiB).
pub(super) const MAX_STRING_BYTES: usize = MAX_LINE_BYTES / 3 * 4 + 4096;

/// Why a delivery could not be read whole.
#[derive(Debug)]
pub(super) enum DeliveryError {
    /// It expanded past the limit: 413.
    TooLarge(u64),
    /// It is not a delivery (or it broke off): 400.
    Malformed(String),
}

/// Reads the delivery in `json`, at most `bound` bytes of it, sending each
/// record's decoded data, ending in a line break, to `lines` (with `None`,
/// only checking that it is a whole delivery); returns the delivery's
/// `requestId`. A record whose data is not base64 is sent as a line that
/// says so, which the ingest then rejects with that reason.
pub(super) fn stream(
    json: impl Read,
    bound: u64,
    lines: Option<&SyncSender<Vec<u8>>>,
) -> Result<String, DeliveryError> {
    let mut guarded = Guard {
        input: json.take(bound + 1),
        read: 0,
        bound,
        string: None,
        escaped: false,
        too_large: false,
    };
    let result = {
        let mut deserializer =
            serde_json::Deserializer::from_reader(io::BufReader::with_capacity(64 << 10, &mut guarded));
        deserializer
            .deserialize_map(DeliveryVisitor { lines })
            .and_then(|id| deserializer.end().map(|()| id))
    };
    if guarded.read > bound {
        return Err(DeliveryError::TooLarge(bound));
    }
    if guarded.too_large {
        return Err(DeliveryError::Malformed(format!(
            "A record is larger than Firehose's limit: its data is over {MAX_STRING_BYTES} bytes of base64."
        )));
    }
    result.map_err(|e| {
        DeliveryError::Malformed(format!(
            "The body is not a Firehose delivery ({{\"requestId\", \"timestamp\", \"records\"}}): {e}"
        ))
    })
}

/// The delivery's members; `records` is read element by element.
struct DeliveryVisitor<'a> {
    lines: Option<&'a SyncSender<Vec<u8>>>,
}

impl<'de> Visitor<'de> for DeliveryVisitor<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Firehose delivery object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut request_id = None;
        let mut records = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "requestId" => request_id = Some(map.next_value::<String>()?),
                "records" => {
                    map.next_value_seed(Records { lines: self.lines })?;
                    records = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !records {
            return Err(de::Error::missing_field("records"));
        }
        request_id.ok_or_else(|| de::Error::missing_field("requestId"))
    }
}

struct Records<'a> {
    lines: Option<&'a SyncSender<Vec<u8>>>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Record>()? {
            let Some(lines) = self.lines else { continue };
            let mut line = match base64::engine::general_purpose::STANDARD.decode(record.data.trim()) {
                // SES puts one record per Firehose record; a producer that
                // puts several puts them as JSON Lines, which read the same.
                Ok(data) => data,
                Err(e) => format!("record data is not base64: {e}").into_bytes(),
            };
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if lines.send(line).is_err() {
                return Err(de::Error::custom("the ingest stopped"));
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct Record {
    /// Base64 of what the producer (SES) put: one record, a JSON object.
    data: String,
}

/// The JSON as it is read: counted against the bound, and no string in it
/// longer than [`MAX_STRING_BYTES`] (serde_json holds a string whole while
/// it reads it).
struct Guard<R> {
    input: R,
    read: u64,
    bound: u64,
    /// Bytes of the string being read, when inside one.
    string: Option<usize>,
    escaped: bool,
    too_large: bool,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(out)?;
        self.read += n as u64;
        if self.read > self.bound {
            return Err(io::Error::other("the delivery is larger than the limit"));
        }
        for &byte in &out[..n] {
            match self.string.as_mut() {
                None => {
                    if byte == b'"' {
                        self.string = Some(0);
                    }
                }
                Some(length) => {
                    *length += 1;
                    if *length > MAX_STRING_BYTES {
                        self.too_large = true;
                        return Err(io::Error::other("a string is larger than a record may be"));
                    }
                    if self.escaped {
                        self.escaped = false;
                    } else if byte == b'\\' {
                        self.escaped = true;
                    } else if byte == b'"' {
                        self.string = None;
                    }
                }
            }
        }
        Ok(n)
    }
}

/// The lines a [`stream`] sends, read back as one input.
pub(super) struct Lines {
    received: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Lines {
    pub(super) fn new(received: Receiver<Vec<u8>>) -> Self {
        Lines {
            received,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.received.recv() {
                Ok(next) => {
                    self.current = next;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.current.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
