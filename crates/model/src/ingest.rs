//! The ingest endpoint's wire shapes (`POST /_ses-export/v1/events`), which
//! are not in AWS's model: the report the server answers with and the
//! client reads.

use serde::{Deserialize, Serialize};

/// What an ingest did: events kept, events already kept, and lines that
/// are not events, with the first of them listed and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Events kept for the first time.
    pub accepted: u64,
    /// Events that were kept already.
    pub duplicates: u64,
    /// Lines that are not events.
    pub rejected: u64,
    /// The first bad lines (the server lists up to 1,000), with reasons.
    pub errors: Vec<LineError>,
}

/// A line that is not an event, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    /// Counted from 1 within the body sent, blank lines included.
    pub line: u64,
    /// Why it is not one, in words.
    pub reason: String,
}
