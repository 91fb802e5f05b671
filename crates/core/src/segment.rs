//! Columnar segments: one settled UTC day of a scope's insight records as
//! a Parquet file (docs/ARCHITECTURE.md, "the columnar engine"): the
//! format, its writer and its reader. Where segments live and when they are
//! written is the store's business (`backend::sqlite::segments`).
//!
//! Rows are in export order (send time, message id, destination), in row
//! groups of [`ROW_GROUP_ROWS`] with min/max statistics, so a scan skips the
//! row groups outside its interval. The text columns a sender repeats
//! (ISP, identity, configuration set, tenant, from address, subject) are
//! dictionary-encoded; the flags are the store's own bits. The file is
//! plain Parquet: DuckDB, Athena, Spark or polars read it as it is
//! (`tests/it/segments.rs` reads one with DuckDB).

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;

use crate::clock::{Interval, Millis};
use crate::filter::{FilterFields, InsightFilter};
use crate::insight::{EventFlags, InsightRecord};

/// Rows per row group: the unit a scan skips or reads.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rows a scan decodes at a time (a row group is read in several): the
/// most it reads between two looks at whether to stop.
pub const SCAN_BATCH_ROWS: usize = 8 * 1024;

/// The columns, in order.
pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| {
        Field::new(
            name,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            nullable,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new(
            "send_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("message_id", DataType::Utf8, false),
        Field::new("destination", DataType::Utf8, false),
        text("from_email_address", true),
        text("subject", true),
        text("isp", false),
        text("email_identity", true),
        text("configuration_set", true),
        text("tenant_name", true),
        Field::new("recipient_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt16, false),
        Field::new("sample_hash", DataType::UInt64, false),
    ]))
}

/// Why a segment could not be written or read.
#[derive(Debug)]
pub struct SegmentError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment: {}", self.0)
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

fn error(e: impl std::error::Error + Send + Sync + 'static) -> SegmentError {
    SegmentError(Box::new(e))
}

/// Writes `records` (in export order) as one segment to `out`; returns how
/// many rows it holds.
pub fn write<W: Write + Send>(records: &[InsightRecord], out: W) -> Result<usize, SegmentError> {
    let mut writer = Writer::new(out)?;
    writer.push(records)?;
    writer.finish()?;
    Ok(records.len())
}

/// Writes a segment a slice of records at a time, so a day never has to be
/// in memory whole.
pub struct Writer<W: Write + Send> {
    inner: ArrowWriter<W>,
    rows: usize,
}

impl<W: Write + Send> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> Writer<W> {
    /// A segment written to `out`.
    pub fn new(out: W) -> Result<Self, SegmentError> {
        // Ids and hashes do not compress: left plain, a scan copies them
        // instead of decompressing.
        let plain = |column: &str| parquet::schema::types::ColumnPath::from(column);
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_compression(Compression::SNAPPY)
            .set_column_compression(plain("message_id"), Compression::UNCOMPRESSED)
            .set_column_compression(plain("destination"), Compression::UNCOMPRESSED)
            .set_column_compression(plain("sample_hash"), Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .build();
        let inner = ArrowWriter::try_new(out, schema(), Some(properties)).map_err(error)?;
        Ok(Writer { inner, rows: 0 })
    }

    /// Appends `records`, which come after every record pushed before in
    /// export order.
    pub fn push(&mut self, records: &[InsightRecord]) -> Result<(), SegmentError> {
        for chunk in records.chunks(ROW_GROUP_ROWS) {
            self.inner.write(&batch(chunk)?).map_err(error)?;
            self.rows += chunk.len();
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the footer; returns `out`, for the caller to sync.
    pub fn finish(self) -> Result<W, SegmentError> {
        self.inner.into_inner().map_err(error)
    }
}

fn batch(records: &[InsightRecord]) -> Result<RecordBatch, SegmentError> {
    let text = |value: &dyn Fn(&InsightRecord) -> Option<&str>| -> ArrayRef {
        let mut builder = StringDictionaryBuilder::<Int32Type>::new();
        for record in records {
            builder.append_option(value(record));
        }
        Arc::new(builder.finish())
    };
    let plain = |value: &dyn Fn(&InsightRecord) -> &str| -> ArrayRef {
        let mut builder = StringBuilder::new();
        for record in records {
            builder.append_value(value(record));
        }
        Arc::new(builder.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.send_timestamp.0))
                .with_timezone("UTC"),
        ),
        plain(&|r| &r.message_id),
        plain(&|r| &r.destination),
        text(&|r| r.from_email_address.as_deref()),
        text(&|r| r.subject.as_deref()),
        text(&|r| Some(&r.isp)),
        text(&|r| r.email_identity.as_deref()),
        text(&|r| r.configuration_set.as_deref()),
        text(&|r| r.tenant_name.as_deref()),
        Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.recipient_count))),
        Arc::new(UInt16Array::from_iter_values(records.iter().map(|r| r.flags.0))),
        Arc::new(UInt64Array::from_iter_values(
            records
                .iter()
                .map(|r| crate::insight::sample_hash(&r.message_id, &r.destination)),
        )),
    ];
    RecordBatch::try_new(schema(), columns).map_err(error)
}

/// Reads the records of a segment (`bytes`, a whole file) sent within
/// `interval` that `keep` keeps, in export order. Row groups whose send
/// times lie outside the interval are not decoded.
pub fn read(
    bytes: bytes::Bytes,
    interval: Interval,
    keep: &dyn Fn(FilterFields<'_>) -> bool,
) -> Result<Vec<InsightRecord>, SegmentError> {
    Segment::open(bytes)?.read(interval, &Selection::everything(), keep)
}

/// Reads the records sent within `interval` that pass `include` and not
/// `exclude`, in export order. Each text filter (from address, subject,
/// ISP, tenant) is judged once per value of a row group's dictionary, not
/// once per row: a row is then a few table lookups, and only rows that pass
/// are built.
pub fn read_selected(
    bytes: bytes::Bytes,
    interval: Interval,
    include: &InsightFilter,
    exclude: &InsightFilter,
) -> Result<Vec<InsightRecord>, SegmentError> {
    let selection = Selection::new(include, exclude);
    let rest = |fields: FilterFields<'_>| selection.rest_passes(fields);
    Segment::open(bytes)?.read(interval, &selection, &rest)
}

/// An open segment: its source (a [`SegmentFile`], or bytes in memory)
/// and its footer, read once.
#[derive(Debug, Clone)]
pub struct Segment<R> {
    source: R,
    metadata: ArrowReaderMetadata,
}

impl<R: ChunkReader + Clone + 'static> Segment<R> {
    /// Reads the footer of the segment in `source`.
    /// A file whose columns are not this version's is refused here, so
    /// reads can rely on them.
    pub fn open(source: R) -> Result<Self, SegmentError> {
        let metadata = ArrowReaderMetadata::load(&source, ArrowReaderOptions::new()).map_err(error)?;
        let expected = schema();
        let found = metadata.schema();
        let same = found.fields().len() == expected.fields().len()
            && found
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            let names: Vec<&str> = found.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(error(std::io::Error::other(format!(
                "not a segment of this version (columns: {})",
                names.join(", ")
            ))));
        }
        Ok(Segment { source, metadata })
    }

    /// The row groups whose send times may lie within `interval`, in order.
    pub fn groups_within(&self, interval: Interval) -> Vec<usize> {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, group)| match group.column(0).statistics() {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(min), Some(max)) => *max >= interval.start.0 && *min <= interval.end.0,
                    _ => true,
                },
                _ => true,
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn reader(
        &self,
        groups: Vec<usize>,
        columns: Option<&[usize]>,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchReaderIter, SegmentError> {
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(self.source.clone(), self.metadata.clone())
                .with_row_groups(groups)
                .with_batch_size(batch_rows);
        if let Some(columns) = columns {
            let mask = ProjectionMask::roots(
                self.metadata.metadata().file_metadata().schema_descr(),
                columns.iter().copied(),
            );
            builder = builder.with_projection(mask);
        }
        Ok(Box::new(builder.build().map_err(error)?))
    }

    /// The records of `groups` sent within `interval` that pass
    /// `selection` and `keep`, in export order, [`SCAN_BATCH_ROWS`] rows
    /// read at a time: each item says how many of the rows it read were
    /// within the interval and holds those it kept, so a reader can stop
    /// between items.
    pub fn scan<'a>(
        &'a self,
        groups: Vec<usize>,
        interval: Interval,
        selection: &'a Selection,
        keep: &'a dyn Fn(FilterFields<'_>) -> bool,
    ) -> Result<impl Iterator<Item = Result<(usize, Vec<InsightRecord>), SegmentError>> + 'a, SegmentError> {
        let reader = self.reader(groups, None, SCAN_BATCH_ROWS)?;
        Ok(reader.map(move |batch| {
            let batch = batch.map_err(error)?;
            let mut records = Vec::new();
            let within = read_batch(&batch, interval, selection, keep, &mut records)?;
            Ok((within, records))
        }))
    }

    /// Every record sent within `interval` that passes `selection` and
    /// `keep`, in export order.
    pub fn read(
        &self,
        interval: Interval,
        selection: &Selection,
        keep: &dyn Fn(FilterFields<'_>) -> bool,
    ) -> Result<Vec<InsightRecord>, SegmentError> {
        let mut records = Vec::new();
        for batch in self.reader(self.groups_within(interval), None, ROW_GROUP_ROWS)? {
            read_batch(&batch.map_err(error)?, interval, selection, keep, &mut records)?;
        }
        Ok(records)
    }

    /// The key and flags of every row of row group `group`, read from its
    /// key columns only.
    pub fn keys_of_group(&self, group: usize) -> Result<Vec<RowKey>, SegmentError> {
        let bad = || error(std::io::Error::other("a column is not of the segment's type"));
        let mut keys = Vec::new();
        for batch in self.reader(vec![group], Some(&[1, 2, 10]), ROW_GROUP_ROWS)? {
            let batch = batch.map_err(error)?;
            let column = |i: usize| batch.columns().get(i).map_or(&() as &dyn std::any::Any, |c| c.as_any());
            let ids = column(0).downcast_ref::<StringArray>().ok_or_else(bad)?;
            let destinations = column(1).downcast_ref::<StringArray>().ok_or_else(bad)?;
            let flags = column(2).downcast_ref::<UInt16Array>().ok_or_else(bad)?;
            keys.extend((0..batch.num_rows()).map(|row| RowKey {
                message_id: ids.value(row).to_owned(),
                destination: destinations.value(row).to_owned(),
                flags: EventFlags(flags.value(row)),
            }));
        }
        Ok(keys)
    }
}

type ParquetRecordBatchReaderIter = Box<dyn Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>> + Send>;

/// A row of a segment as far as ingest needs it: its key and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    /// The message.
    pub message_id: String,
    /// The recipient.
    pub destination: String,
    /// What the recipient's events said, as of the segment.
    pub flags: EventFlags,
}

/// A segment file read by position, so that clones (one per row group
/// read, one per thread) never share a cursor. On Unix an open file stays
/// readable after it is unlinked: a scan that opened a segment finishes
/// with it even if a compaction replaced it meanwhile.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    file: Arc<std::fs::File>,
    len: u64,
}

impl SegmentFile {
    /// Opens the segment at `path` for reading.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(SegmentFile {
            file: Arc::new(file),
            len,
        })
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&*self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < buf.len() {
                let n = std::os::windows::fs::FileExt::seek_read(&*self.file, &mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
            Ok(())
        }
    }
}

impl Length for SegmentFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SegmentFile {
    type T = SegmentRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(SegmentRead {
            file: self.clone(),
            at: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buf = vec![0; length];
        self.read_exact_at(&mut buf, start)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        Ok(buf.into())
    }
}

/// A [`SegmentFile`] read from an offset on, by position.
#[derive(Debug)]
pub struct SegmentRead {
    file: SegmentFile,
    at: u64,
}

impl std::io::Read for SegmentRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.file.len.saturating_sub(self.at)).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// An Include and an Exclude split by field. Include is AND across fields
/// and Exclude OR, so a row passes exactly when every field's part passes
/// (its include part matches, its exclude part does not): the text fields'
/// parts can be judged per dictionary value, the rest per row.
#[derive(Debug)]
pub struct Selection {
    /// From address, subject, ISP, tenant: (include part, exclude part).
    text: [(InsightFilter, InsightFilter); 4],
    /// Destination and the last events, judged per row.
    rest: (InsightFilter, InsightFilter),
}

/// The text columns judged per dictionary value, by their place among
/// columns 3..=8 (from, subject, isp, identity, set, tenant).
const JUDGED: [usize; 4] = [0, 1, 2, 5];

impl Selection {
    /// Every row passes.
    pub fn everything() -> Self {
        Self::new(&InsightFilter::default(), &InsightFilter::default())
    }

    /// The rows that `include` includes and `exclude` does not exclude.
    pub fn new(include: &InsightFilter, exclude: &InsightFilter) -> Self {
        let part = |f: &InsightFilter, field: usize| {
            let mut out = InsightFilter::default();
            match field {
                0 => out.from_email_address = f.from_email_address.clone(),
                1 => out.subject = f.subject.clone(),
                2 => out.isp = f.isp.clone(),
                _ => out.tenant_name = f.tenant_name.clone(),
            }
            out
        };
        let rest = |f: &InsightFilter| InsightFilter {
            destination: f.destination.clone(),
            last_delivery_event: f.last_delivery_event.clone(),
            last_engagement_event: f.last_engagement_event.clone(),
            ..InsightFilter::default()
        };
        Selection {
            text: [0, 1, 2, 3].map(|field| (part(include, field), part(exclude, field))),
            rest: (rest(include), rest(exclude)),
        }
    }

    /// Whether a value of text field `field` passes that field's part.
    fn text_passes(&self, field: usize, value: Option<&str>) -> bool {
        let (include, exclude) = &self.text[field];
        if *include == InsightFilter::default() && *exclude == InsightFilter::default() {
            return true;
        }
        let mut fields = FilterFields {
            message_id: "",
            from_email_address: None,
            destination: "",
            subject: None,
            isp: "",
            tenant_name: None,
            flags: EventFlags::default(),
            recipient_count: 1,
            sample_hash: 0,
        };
        match field {
            0 => fields.from_email_address = value,
            1 => fields.subject = value,
            2 => fields.isp = value.unwrap_or_default(),
            _ => fields.tenant_name = value,
        }
        include.includes_fields(fields) && !exclude.excludes_fields(fields)
    }

    /// Whether the fields judged per row pass.
    pub fn rest_passes(&self, fields: FilterFields<'_>) -> bool {
        self.rest.0.includes_fields(fields) && !self.rest.1.excludes_fields(fields)
    }
}

/// Adds the rows of `batch` within `interval` that pass `selection` and
/// `keep` to `out`; returns how many rows were within the interval.
fn read_batch(
    batch: &RecordBatch,
    interval: Interval,
    selection: &Selection,
    keep: &dyn Fn(FilterFields<'_>) -> bool,
    out: &mut Vec<InsightRecord>,
) -> Result<usize, SegmentError> {
    let bad = || error(std::io::Error::other("a column is not of the segment's type"));
    if batch.num_columns() != schema().fields().len() {
        return Err(bad());
    }
    let column = |i: usize| batch.column(i).as_ref();
    let times = column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(bad)?;
    let plain = |i: usize| column(i).as_any().downcast_ref::<StringArray>().ok_or_else(bad);
    let (ids, destinations) = (plain(1)?, plain(2)?);
    let texts: Vec<Text<'_>> = (3..=8)
        .map(|i| Text::of(column(i)).ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    let counts = column(9).as_any().downcast_ref::<UInt32Array>().ok_or_else(bad)?;
    let flags = column(10).as_any().downcast_ref::<UInt16Array>().ok_or_else(bad)?;
    let hashes = column(11).as_any().downcast_ref::<UInt64Array>().ok_or_else(bad)?;
    let [from, subject, isp, identity, set, tenant] = texts.as_slice() else {
        return Err(bad());
    };
    // Each judged text column's verdict per dictionary value, and for null.
    let verdicts: Vec<(Vec<bool>, bool)> = JUDGED
        .iter()
        .enumerate()
        .map(|(field, column)| {
            let values = texts[*column].values;
            let per_value = (0..values.len())
                .map(|k| selection.text_passes(field, Some(values.value(k))))
                .collect();
            (per_value, selection.text_passes(field, None))
        })
        .collect();
    let passes = |row: usize| {
        JUDGED
            .iter()
            .zip(&verdicts)
            .all(|(column, (per_value, null))| match texts[*column].key(row) {
                Some(k) => per_value.get(k).copied().unwrap_or(false),
                None => *null,
            })
    };
    let mut within = 0;
    for row in 0..batch.num_rows() {
        let sent = Millis(times.value(row));
        if !interval.contains(sent) {
            continue;
        }
        within += 1;
        if !passes(row) {
            continue;
        }
        let fields = FilterFields {
            message_id: ids.value(row),
            from_email_address: from.get(row),
            destination: destinations.value(row),
            subject: subject.get(row),
            isp: isp.get(row).unwrap_or_default(),
            tenant_name: tenant.get(row),
            flags: EventFlags(flags.value(row)),
            recipient_count: counts.value(row),
            sample_hash: hashes.value(row),
        };
        if !keep(fields) {
            continue;
        }
        out.push(InsightRecord {
            message_id: fields.message_id.to_owned(),
            send_timestamp: sent,
            destination: fields.destination.to_owned(),
            from_email_address: fields.from_email_address.map(str::to_owned),
            subject: fields.subject.map(str::to_owned),
            isp: fields.isp.to_owned(),
            email_identity: identity.get(row).map(str::to_owned),
            configuration_set: set.get(row).map(str::to_owned),
            tenant_name: fields.tenant_name.map(str::to_owned),
            recipient_count: fields.recipient_count,
            flags: fields.flags,
        });
    }
    Ok(within)
}

/// A dictionary-encoded text column: a row's value is its key's entry.
struct Text<'a> {
    keys: &'a DictionaryArray<Int32Type>,
    values: &'a StringArray,
}

impl<'a> Text<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        let keys = array.as_any().downcast_ref::<DictionaryArray<Int32Type>>()?;
        let values = keys.values().as_any().downcast_ref::<StringArray>()?;
        Some(Text { keys, values })
    }

    /// The row's dictionary key; `None` for a null.
    fn key(&self, row: usize) -> Option<usize> {
        if self.keys.is_null(row) {
            return None;
        }
        usize::try_from(self.keys.keys().value(row)).ok()
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        self.key(row).map(|key| self.values.value(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<InsightRecord> {
        let events = crate::event_store::conformance::generated(31, 2_000);
        let mut records = crate::event_store::conformance::reference_records(&events);
        records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        records
    }

    /// What goes in comes out, field for field and in order; an interval
    /// and a judge select what they would select from the records.
    #[test]
    fn a_segment_reads_back_what_was_written() {
        let records = records();
        assert!(records.len() > 1_000);
        let mut file = Vec::new();
        assert_eq!(write(&records, &mut file).expect("write"), records.len());
        let bytes = bytes::Bytes::from(file);
        let all = read(bytes.clone(), Interval::EVERYTHING, &|_| true).expect("read");
        assert_eq!(all, records);

        let middle = records[records.len() / 2].send_timestamp;
        let interval = Interval::new(middle, middle + 3_600_000);
        let gmail = |f: FilterFields<'_>| f.isp == "Gmail" && f.subject.is_some();
        let read_back = read(bytes, interval, &gmail).expect("read");
        let expected: Vec<InsightRecord> = records
            .iter()
            .filter(|r| interval.contains(r.send_timestamp) && gmail(r.filter_fields()))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(read_back, expected);
    }

    /// Text filters judged per dictionary value select exactly what the
    /// same Include and Exclude select record by record.
    #[test]
    fn dictionary_judged_filters_select_what_row_judged_ones_do() {
        use crate::filter::TextPattern;
        let records = records();
        let mut file = Vec::new();
        write(&records, &mut file).expect("write");
        let bytes = bytes::Bytes::from(file);
        let everything = Interval::EVERYTHING;
        let pattern = |p: &str| TextPattern::parse(p).expect("pattern");
        let cases = [
            (
                InsightFilter {
                    isp: vec!["Gmail".into(), "Yahoo".into()],
                    ..InsightFilter::default()
                },
                InsightFilter::default(),
            ),
            (
                InsightFilter {
                    subject: vec![pattern("*e*")],
                    ..InsightFilter::default()
                },
                InsightFilter {
                    from_email_address: vec![pattern("news@*")],
                    destination: vec![pattern("*@gmail.com")],
                    ..InsightFilter::default()
                },
            ),
            (
                InsightFilter {
                    tenant_name: vec!["no such tenant".into()],
                    ..InsightFilter::default()
                },
                InsightFilter::default(),
            ),
        ];
        for (include, exclude) in cases {
            let read_back = read_selected(bytes.clone(), everything, &include, &exclude).expect("read");
            let expected: Vec<InsightRecord> = records
                .iter()
                .filter(|r| include.includes(r) && !exclude.excludes(r))
                .cloned()
                .collect();
            assert!(
                !expected.is_empty() || include.tenant_name.len() == 1,
                "a case that selects something"
            );
            assert_eq!(read_back, expected, "{include:?} / {exclude:?}");
        }
    }

    /// A Parquet file with other columns is refused when opened, with its
    /// columns named, and a file that is not Parquet is an error: neither
    /// panics a reader.
    #[test]
    fn other_files_are_refused_not_read() {
        let schema = Arc::new(Schema::new(vec![Field::new("message_id", DataType::Utf8, false)]));
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, Arc::clone(&schema), None).expect("writer");
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["m-1"]));
        writer
            .write(&RecordBatch::try_new(schema, vec![ids]).expect("batch"))
            .expect("write");
        writer.close().expect("close");
        let refused = Segment::open(bytes::Bytes::from(file)).expect_err("another schema");
        assert!(refused.to_string().contains("columns: message_id"), "{refused}");
        assert!(Segment::open(bytes::Bytes::from_static(b"not parquet at all")).is_err());
    }

    /// Row groups outside the interval are skipped by their statistics.
    #[test]
    fn row_groups_carry_send_time_statistics() {
        let records = records();
        let mut file = Vec::new();
        write(&records, &mut file).expect("write");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file)).expect("open");
        let group = &reader.metadata().row_groups()[0];
        let Some(Statistics::Int64(stats)) = group.column(0).statistics() else {
            panic!("no statistics on send_timestamp");
        };
        assert_eq!(stats.min_opt(), Some(&records[0].send_timestamp.0));
        assert_eq!(stats.max_opt(), records.last().map(|r| &r.send_timestamp.0));
    }
}
