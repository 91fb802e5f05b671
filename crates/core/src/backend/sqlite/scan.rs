//! Reading insight records: hot days from the `insights` table, settled
//! days from their segment merged with the late records the table holds
//! for them (see `segments` for the invariant), in export order.

use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::segments::Snapshot;
use crate::backend::settled::{self, CHUNK, Sink};
use crate::backend::{Col, RECORD_COLUMNS};
use crate::clock::{DAY_MILLIS, Interval, day_of, day_start};
use crate::event_store::{RecordFilter, SCAN_CHECK_ROWS, ScanControl, StoreError};
use crate::filter::FilterFields;
use crate::insight::{EventFlags, InsightRecord};

/// The tables [`RECORD_COLUMNS`] come from (a message row is keyed by its
/// send day first, as the record's send time says). The insight rows drive
/// the scan (a LEFT JOIN keeps SQLite from reordering it), so records come
/// in the insights key's order.
pub(super) const RECORD_TABLES: &str = "insights i LEFT JOIN messages m ON m.account = i.account \
     AND m.day = i.send_ts / 86400000 AND m.message_id = i.message_id";
/// [`RECORD_COLUMNS`] without the message's text, from the insights alone:
/// for scans whose filter does not read the text, which then fetch it only
/// for the records they keep (a seek per kept record, not per row).
static RECORD_COLUMNS_NO_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    RECORD_COLUMNS
        .split(", ")
        .map(|c| if c.starts_with("m.") { "NULL" } else { c })
        .collect::<Vec<_>>()
        .join(", ")
});

pub(super) fn record_from_row(row: &Row<'_>) -> rusqlite::Result<InsightRecord> {
    record_from_offset_row(row, 0)
}

/// A record from [`RECORD_COLUMNS`] starting at column `at`.
pub(super) fn record_from_offset_row(row: &Row<'_>, at: usize) -> rusqlite::Result<InsightRecord> {
    Ok(InsightRecord {
        send_timestamp: row.get(Col::SendTs.at(at))?,
        message_id: row.get(Col::MessageId.at(at))?,
        destination: row.get(Col::Destination.at(at))?,
        from_email_address: row.get(Col::From.at(at))?,
        subject: row.get(Col::Subject.at(at))?,
        isp: row.get(Col::Isp.at(at))?,
        email_identity: row.get(Col::EmailIdentity.at(at))?,
        configuration_set: row.get(Col::ConfigurationSet.at(at))?,
        tenant_name: row.get(Col::TenantName.at(at))?,
        recipient_count: row.get(Col::RecipientCount.at(at))?,
        flags: EventFlags(row.get(Col::Flags.at(at))?),
    })
}

/// The filter fields of a row of [`RECORD_COLUMNS`], borrowed.
fn filter_fields<'r>(row: &'r Row<'_>) -> rusqlite::Result<FilterFields<'r>> {
    let text = |c: Col| -> rusqlite::Result<Option<&'r str>> {
        let i = c as usize;
        match row.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            value => value
                .as_str()
                .map(Some)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e))),
        }
    };
    let (message_id, destination) = (
        text(Col::MessageId)?.unwrap_or_default(),
        text(Col::Destination)?.unwrap_or_default(),
    );
    Ok(FilterFields {
        message_id,
        destination,
        sample_hash: crate::insight::sample_hash(message_id, destination),
        from_email_address: text(Col::From)?,
        subject: text(Col::Subject)?,
        isp: text(Col::Isp)?.unwrap_or_default(),
        tenant_name: text(Col::TenantName)?,
        flags: EventFlags(row.get(Col::Flags as usize)?),
        recipient_count: row.get(Col::RecipientCount as usize)?,
    })
}

/// One scan of `scope`'s records sent in `interval`, in export order,
/// within `snapshot`. With `keep`, only the records it keeps, each row
/// counted in `control.scanned` and the scan ended once `control` says
/// stop.
pub(super) struct Scan<'a> {
    pub scope: &'a str,
    pub keep: Option<(&'a RecordFilter, &'a ScanControl)>,
}

impl Scan<'_> {
    pub(super) fn run(&self, snapshot: &Snapshot<'_>, interval: Interval, sink: Sink<'_>) -> Result<(), StoreError> {
        let mut cursor = interval.start;
        for (day, entry) in &snapshot.days {
            // A day whose file retention took meanwhile is read as a hot
            // one: what the snapshot's rows hold of it.
            let Some(segment) = snapshot.segment(*day, *entry)? else {
                continue;
            };
            let part = Interval::new(
                day_start(*day).max(interval.start),
                (day_start(*day) + DAY_MILLIS - 1).min(interval.end),
            );
            if cursor < part.start && !self.hot(snapshot.conn, Interval::new(cursor, part.start - 1), sink)? {
                return Ok(());
            }
            if !self.settled(snapshot.conn, &segment, part, sink)? {
                return Ok(());
            }
            cursor = part.end.saturating_add(1);
        }
        if cursor <= interval.end {
            self.hot(snapshot.conn, Interval::new(cursor, interval.end), sink)?;
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.keep.is_some_and(|(_, control)| control.stopped())
    }

    /// The records of hot days in `part`, from the table alone.
    fn hot(&self, conn: &Connection, part: Interval, sink: Sink<'_>) -> Result<bool, StoreError> {
        // Rows judged before their text is read: the text is fetched for
        // the rows that may be kept, and the filter judges those whole.
        let text_later = self.keep.is_some_and(|(keep, _)| keep.judges_before_text());
        let sql = if text_later {
            format!(
                "SELECT {} FROM insights i WHERE i.account = ?1 AND i.send_ts BETWEEN ?2 AND ?3 \
                 ORDER BY i.send_ts, i.message_id, i.destination",
                *RECORD_COLUMNS_NO_TEXT
            )
        } else {
            format!(
                "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE i.account = ?1 AND i.send_ts BETWEEN ?2 AND ?3 \
                 ORDER BY i.send_ts, i.message_id, i.destination"
            )
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut text = conn.prepare_cached(
            "SELECT from_address, subject FROM messages WHERE account = ?1 AND day = ?2 AND message_id = ?3",
        )?;
        let mut rows = stmt.query(params![self.scope, part.start, part.end])?;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut read: u64 = 0;
        while let Some(row) = rows.next()? {
            read += 1;
            // Rows read, not rows kept: a filter that keeps nothing still
            // hears a cancel or a shutdown.
            if read.is_multiple_of(SCAN_CHECK_ROWS) && self.stopped() {
                return Ok(false);
            }
            if let Some((keep, control)) = self.keep {
                control.scanned.fetch_add(1, Ordering::Relaxed);
                let fields = filter_fields(row)?;
                let judged = if text_later {
                    keep.may_keep_before_text(fields)
                } else {
                    Some(keep.keeps(fields))
                };
                if judged == Some(false) {
                    continue;
                }
            }
            let mut record = record_from_row(row)?;
            if text_later {
                if let Some((from, subject)) = text
                    .query_row(
                        params![self.scope, day_of(record.send_timestamp), record.message_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                {
                    record.from_email_address = from;
                    record.subject = subject;
                }
                if self.keep.is_some_and(|(keep, _)| !keep.keeps(record.filter_fields())) {
                    continue;
                }
            }
            chunk.push(record);
            if chunk.len() == CHUNK && !sink(std::mem::take(&mut chunk))? {
                return Ok(false);
            }
        }
        if !chunk.is_empty() {
            return sink(chunk);
        }
        Ok(true)
    }

    /// The records of a settled day in `part`: its segment's, except those
    /// the table holds a newer row for, merged in order with the table's.
    fn settled(
        &self,
        conn: &Connection,
        segment: &crate::segment::Segment<crate::segment::SegmentFile>,
        part: Interval,
        sink: Sink<'_>,
    ) -> Result<bool, StoreError> {
        // The day's late records: few, as the compactor folds them into the
        // segment once they are a sixteenth of it.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} WHERE i.account = ?1 AND i.send_ts BETWEEN ?2 AND ?3 \
             ORDER BY i.send_ts, i.message_id, i.destination"
        ))?;
        let late: Vec<InsightRecord> = stmt
            .query_map(params![self.scope, part.start, part.end], record_from_row)?
            .collect::<Result<_, _>>()?;
        settled::merge_day(segment, part, late, self.keep, super::BACKEND, sink)
    }
}
