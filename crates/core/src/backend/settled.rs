//! What every backend that keeps settled days as segments does the same
//! way (docs/ARCHITECTURE.md, "the columnar engine"): merging a settled
//! day's segment with the late rows its row store holds for it (in a scan
//! and in a compaction), and the lookups ingest makes into settled days.
//!
//! The invariant all of it relies on: a record is in the row store (its day
//! is hot, or it is a late record of a settled day), or in its day's live
//! segment, or in both. Where both, the row store's row wins: flags only
//! gain bits, and ingest writes a late record with the segment's bits
//! already in it.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::Ordering;

use crate::clock::{Interval, day_of};
use crate::event_store::{RecordFilter, ScanControl, StoreError};
use crate::filter::FilterFields;
use crate::insight::{EventFlags, InsightRecord};
use crate::segment::{SCAN_BATCH_ROWS, Segment, SegmentError, SegmentFile, Selection};

/// Where a scan's records go, a chunk at a time; `Ok(false)` ends the scan
/// (its reader went away).
pub(crate) type Sink<'s> = &'s mut dyn FnMut(Vec<InsightRecord>) -> Result<bool, StoreError>;

/// Records a scan hands on at a time.
pub(crate) const CHUNK: usize = 512;

/// The records of chunks a scan's producer sends, as a stream.
pub(crate) fn stream_chunks(
    mut chunks: tokio::sync::mpsc::Receiver<Result<Vec<InsightRecord>, StoreError>>,
) -> crate::event_store::InsightStream {
    use futures_util::StreamExt;
    let chunks = futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx));
    Box::pin(chunks.flat_map(|chunk| {
        let items: Vec<Result<InsightRecord, StoreError>> = match chunk {
            Ok(records) => records.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    }))
}

/// Hands `records` on in chunks.
pub(crate) fn send(mut records: Vec<InsightRecord>, sink: Sink<'_>) -> Result<bool, StoreError> {
    while records.len() > CHUNK {
        let rest = records.split_off(CHUNK);
        if !sink(std::mem::replace(&mut records, rest))? {
            return Ok(false);
        }
    }
    if records.is_empty() { Ok(true) } else { sink(records) }
}

/// The records of a settled day within `part`: `segment`'s, except those
/// `late` (the row store's rows of `part`, in export order) holds a newer
/// row for, merged in order with `late`. With `keep`, only those it keeps,
/// each row counted in the control's `scanned`. `Ok(false)` when the scan
/// was stopped or its reader went away.
pub(crate) fn merge_day(
    segment: &Segment<SegmentFile>,
    part: Interval,
    late: Vec<InsightRecord>,
    keep: Option<(&RecordFilter, &ScanControl)>,
    backend: &'static str,
    sink: Sink<'_>,
) -> Result<bool, StoreError> {
    let mut replaced: Vec<(&str, &str)> = late
        .iter()
        .map(|r| (r.message_id.as_str(), r.destination.as_str()))
        .collect();
    replaced.sort_unstable();
    let selection = match keep.and_then(|(keep, _)| keep.filters()) {
        Some((include, exclude)) => Selection::new(include, exclude),
        None => Selection::everything(),
    };
    let judge = |fields: FilterFields<'_>| {
        (replaced.is_empty()
            || replaced
                .binary_search(&(fields.message_id, fields.destination))
                .is_err())
            && keep.is_none_or(|(keep, _)| keep.keeps(fields))
    };
    let keeps_late = |record: &InsightRecord| {
        keep.is_none_or(|(keep, control)| {
            control.scanned.fetch_add(1, Ordering::Relaxed);
            keep.keeps(record.filter_fields())
        })
    };
    let mut late_at = 0;
    let error = |e: SegmentError| generic(backend, e);
    let batches = segment
        .scan(segment.groups_within(part), part, &selection, &judge)
        .map_err(error)?;
    for batch in batches {
        if keep.is_some_and(|(_, control)| control.stopped()) {
            return Ok(false);
        }
        let (read, records) = batch.map_err(error)?;
        if let Some((_, control)) = keep {
            control.scanned.fetch_add(read as u64, Ordering::Relaxed);
        }
        let mut merged = Vec::with_capacity(records.len());
        for record in records {
            while let Some(l) = late.get(late_at).filter(|l| l.sort_key() < record.sort_key()) {
                late_at += 1;
                if keeps_late(l) {
                    merged.push(l.clone());
                }
            }
            merged.push(record);
        }
        if !send(merged, sink)? {
            return Ok(false);
        }
    }
    let rest = late[late_at..].iter().filter(|l| keeps_late(l)).cloned().collect();
    send(rest, sink)
}

/// Writes a day's records to `out` in export order: `old`'s (the day's live
/// segment, if it has one), where `rows` (the row store's rows of the day,
/// in export order) has no newer one, and `rows`. A scan batch at a time:
/// the writer keeps the row group it is building encoded, so the day is
/// never in memory as records. Returns the rows written and `out`.
pub(crate) fn write_day<W: Write + Send>(
    out: W,
    old: Option<&Segment<SegmentFile>>,
    range: Interval,
    rows: impl Iterator<Item = Result<InsightRecord, StoreError>>,
    backend: &'static str,
) -> Result<(u64, W), StoreError> {
    let error = |e: SegmentError| generic(backend, e);
    let mut writer = crate::segment::Writer::new(out).map_err(error)?;
    let mut rows = rows.peekable();
    let mut out: Vec<InsightRecord> = Vec::with_capacity(SCAN_BATCH_ROWS);
    let mut flush = |out: &mut Vec<InsightRecord>, force: bool| -> Result<(), StoreError> {
        if out.len() >= SCAN_BATCH_ROWS || (force && !out.is_empty()) {
            writer.push(out).map_err(error)?;
            out.clear();
        }
        Ok(())
    };
    if let Some(segment) = old {
        let everything = Selection::everything();
        let all = |_: FilterFields<'_>| true;
        for batch in segment
            .scan(segment.groups_within(range), range, &everything, &all)
            .map_err(error)?
        {
            let (_, records) = batch.map_err(error)?;
            for record in records {
                let mut replaced = false;
                while let Some(row) = rows.next_if(|h| !matches!(h, Ok(h) if h.sort_key() > record.sort_key())) {
                    let row = row?;
                    replaced = row.sort_key() == record.sort_key();
                    out.push(row);
                    if replaced {
                        break;
                    }
                }
                if !replaced {
                    out.push(record);
                }
                flush(&mut out, false)?;
            }
        }
    }
    for row in rows {
        out.push(row?);
        flush(&mut out, false)?;
    }
    flush(&mut out, true)?;
    let written = writer.rows() as u64;
    let out = writer.finish().map_err(error)?;
    Ok((written, out))
}

/// What ingest reads of settled days within one batch: the segments and
/// row groups it read last, kept for the next records (a batch's records
/// come in send-time order, so those are the ones it needs again). At most
/// [`Lookup::KEPT`] of each: a batch naming a thousand settled days holds
/// a few files and row groups open, not a thousand.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    days: VecDeque<(i64, Option<Segment<SegmentFile>>)>,
    groups: VecDeque<((i64, usize), GroupKeys)>,
}

/// A row group's rows by (message id, destination): their flags.
type GroupKeys = HashMap<(String, String), EventFlags>;

impl Lookup {
    /// Segments, and row groups' keys, kept at a time.
    const KEPT: usize = 4;

    /// The flags the segment of `record`'s day holds for it, if its day
    /// has settled and the segment has it; `open` gives a day's live
    /// segment (`None` for a day that has not settled).
    pub(crate) fn flags(
        &mut self,
        record: &InsightRecord,
        backend: &'static str,
        open: impl FnOnce(i64) -> Result<Option<Segment<SegmentFile>>, StoreError>,
    ) -> Result<Option<EventFlags>, StoreError> {
        let day = day_of(record.send_timestamp);
        let index = match self.days.iter().position(|(d, _)| *d == day) {
            Some(index) => index,
            None => {
                let segment = open(day)?;
                if self.days.len() == Self::KEPT {
                    self.days.pop_front();
                }
                self.days.push_back((day, segment));
                self.days.len() - 1
            }
        };
        let Some((_, Some(segment))) = self.days.get(index) else {
            return Ok(None);
        };
        let at = record.send_timestamp;
        for group in segment.groups_within(Interval::new(at, at)) {
            let index = match self.groups.iter().position(|(g, _)| *g == (day, group)) {
                Some(index) => index,
                None => {
                    let keys = segment.keys_of_group(group).map_err(|e| generic(backend, e))?;
                    let keys = keys
                        .into_iter()
                        .map(|k| ((k.message_id, k.destination), k.flags))
                        .collect();
                    if self.groups.len() == Self::KEPT {
                        self.groups.pop_front();
                    }
                    self.groups.push_back(((day, group), keys));
                    self.groups.len() - 1
                }
            };
            // A message id has one send time, so (message, destination)
            // is a key within a day.
            let key = (record.message_id.clone(), record.destination.clone());
            if let Some(flags) = self.groups.get(index).and_then(|(_, keys)| keys.get(&key)) {
                return Ok(Some(*flags));
            }
        }
        Ok(None)
    }
}

fn generic(backend: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Generic {
        backend,
        source: Box::new(e),
    }
}

/// The path of a day's segment of generation `generation` under a store's
/// segment root: `account=A/region=R/day=YYYY-MM-DD/part-N.parquet` (Hive's
/// layout, which DuckDB, Spark and Athena read as columns).
pub(crate) fn day_folder(scope: &str, day: i64) -> String {
    // A scope is `ACCOUNT/REGION`, both checked to be plain names.
    let (account, region) = scope.split_once('/').unwrap_or((scope, "none"));
    let date = crate::clock::format_iso8601(crate::clock::day_start(day));
    format!("account={account}/region={region}/day={}", &date[..10])
}

/// The file name of generation `generation` in a day's folder.
pub(crate) fn part_name(generation: i64) -> String {
    format!("part-{generation}.parquet")
}

/// The generation a file name in a day's folder names, if it is a part.
pub(crate) fn generation_of(name: &str) -> Option<i64> {
    name.strip_prefix("part-")?.strip_suffix(".parquet")?.parse().ok()
}
