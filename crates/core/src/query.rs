//! The queries exports and read APIs run over an [`EventStore`]: message
//! insights (filtered, sampled) and metrics (grouped, per day).

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::StreamExt;
use ses_export_model::types::{
    CreateExportJobRequest, ExportSourceType, MessageInsightsFilters, Metric, MetricAggregation, MetricDimensionName,
    MetricsDataSource,
};
use ses_export_model::{InputError, Timestamp};

use crate::Scope;
use crate::clock::{Interval, Millis, day_of, day_start};
use crate::event_store::{EventStore, RecordFilter, ScanControl, StoreError};
use crate::filter::InsightFilter;
use crate::insight::InsightRecord;
use crate::rng;
use crate::vdm::{DailyCounts, MetricCounts};

/// `MaxResults` when the request has none.
pub const DEFAULT_MAX_RESULTS: usize = 1000;

/// The interval of a request's `StartDate` and `EndDate`, in milliseconds.
pub fn interval(start: Timestamp, end: Timestamp) -> Interval {
    Interval::new(Millis::of(start), Millis::of(end))
}

/// A `CreateExportJob` request that keeps every rule: the model's
/// constraints (`MaxResults` within 1–10,000, lengths, patterns) and the
/// service's (`rules::create_export_job`: one data source, dates in order,
/// filters that parse). Built only by validation ([`TryFrom`], and when a
/// job store reads one back), kept on the job, and the only input the
/// service's export API takes, so an embedder cannot hand a job an
/// unbounded sample.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "CreateExportJobRequest", into = "CreateExportJobRequest")]
pub struct ExportQuery {
    request: CreateExportJobRequest,
    source: Source,
}

/// What an [`ExportQuery`] selects, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Metrics(Box<MetricsQuery>),
    /// An [`InsightQuery`] but for its seed, which is the job's.
    Insights(Box<InsightQuery>),
}

/// What an export selects: one of its two kinds.
#[derive(Debug, Clone)]
pub enum Selection {
    /// A `MESSAGE_INSIGHTS` export.
    Insights(Box<InsightQuery>),
    /// A `METRICS_DATA` export.
    Metrics(MetricsQuery),
}

impl TryFrom<CreateExportJobRequest> for ExportQuery {
    type Error = InputError;

    fn try_from(request: CreateExportJobRequest) -> Result<Self, InputError> {
        let mut violations = ses_export_model::violations(&request);
        if violations.is_empty() {
            violations = crate::rules::create_export_job(&request);
        }
        if !violations.is_empty() {
            return Err(InputError::Invalid(violations));
        }
        let data = &request.export_data_source;
        let source = match (&data.message_insights_data_source, &data.metrics_data_source) {
            (None, Some(metrics)) => Source::Metrics(Box::new(metrics_query(metrics))),
            (None, None) | (Some(_), Some(_)) => {
                // The rules allow exactly one.
                return Err(InputError::Malformed("Exactly one data source is required.".to_owned()));
            }
            (Some(insights), _) => {
                let parse = |filters: &Option<MessageInsightsFilters>| match filters {
                    // The rules have parsed them; a failure here is one more
                    // way to say they do not parse.
                    Some(f) => InsightFilter::parse(f)
                        .map_err(|_| InputError::Malformed("The message-insights filters are not valid.".to_owned())),
                    None => Ok(InsightFilter::default()),
                };
                Source::Insights(Box::new(InsightQuery {
                    interval: interval(insights.start_date, insights.end_date),
                    include: parse(&insights.include)?,
                    exclude: parse(&insights.exclude)?,
                    max_results: insights
                        .max_results
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(DEFAULT_MAX_RESULTS),
                    seed: 0,
                }))
            }
        };
        Ok(ExportQuery { request, source })
    }
}

impl From<ExportQuery> for CreateExportJobRequest {
    fn from(query: ExportQuery) -> Self {
        query.request
    }
}

impl ExportQuery {
    /// The request as sent (the model members only), which `GetExportJob`
    /// returns unchanged.
    pub fn request(&self) -> &CreateExportJobRequest {
        &self.request
    }

    /// `METRICS_DATA` or `MESSAGE_INSIGHTS`.
    pub fn source_type(&self) -> ExportSourceType {
        match self.source {
            Source::Metrics(_) => ExportSourceType::MetricsData,
            Source::Insights(_) => ExportSourceType::MessageInsights,
        }
    }

    /// What the export selects; a message-insights sample is drawn under
    /// `seed`.
    pub fn selection(&self, seed: u64) -> Selection {
        match &self.source {
            Source::Metrics(query) => Selection::Metrics((**query).clone()),
            Source::Insights(query) => Selection::Insights(Box::new(InsightQuery {
                seed,
                ..(**query).clone()
            })),
        }
    }
}

/// The metrics query of a metrics export; dimensions in column order.
fn metrics_query(source: &MetricsDataSource) -> MetricsQuery {
    MetricsQuery {
        interval: interval(source.start_date, source.end_date),
        dimensions: source
            .dimensions
            .iter()
            .map(|(name, values)| {
                let select = if values.iter().any(|v| v == "*") {
                    DimensionSelect::All
                } else {
                    DimensionSelect::Values(values.clone())
                };
                (name.clone(), select)
            })
            .collect(),
        metrics: source
            .metrics
            .iter()
            .filter_map(|m| Some((m.name.clone()?, m.aggregation.clone()?)))
            .collect(),
    }
}

/// A message-insights selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightQuery {
    /// Which send times, inclusive.
    pub interval: Interval,
    /// Records must pass this (an empty filter passes all).
    pub include: InsightFilter,
    /// Records this passes are left out (an empty filter leaves out none).
    pub exclude: InsightFilter,
    /// At most this many records; when more match, a uniform sample.
    pub max_results: usize,
    /// The sample's seed: the same seed picks the same records.
    pub seed: u64,
}

/// What an [`InsightQuery`] found.
#[derive(Debug, Clone, Default)]
pub struct InsightSelection {
    /// Records scanned inside the interval.
    pub processed: u64,
    /// Records that passed the filters, of those judged whole (a scan may
    /// rule a row out before reading its text, when it could not enter
    /// the sample anyway).
    pub matched: u64,
    /// At most `max_results` of them, in export order.
    pub records: Vec<InsightRecord>,
}

/// A record with its place in the sample: the smallest `max_results` keys
/// win, which is a uniform sample without replacement, independent of scan
/// order and the same for the same seed.
struct Sampled(u64, Box<InsightRecord>);

impl PartialEq for Sampled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Sampled {}
impl PartialOrd for Sampled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sampled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1.sort_key()).cmp(&(other.0, other.1.sort_key()))
    }
}

/// The key that places a record (by its [`crate::insight::sample_hash`])
/// in a sample of `seed`.
fn sample_key(seed: u64, sample_hash: u64) -> u64 {
    rng::mix(sample_hash ^ rng::mix(seed))
}

/// Runs a message-insights selection. Memory holds at most `max_results`
/// records, however many match. Setting `stop` ends the scan (with what was
/// found so far) within [`crate::event_store::SCAN_CHECK_ROWS`] rows read.
///
/// The interval is scanned in parts, one per core, side by side (a sample
/// does not depend on the order records arrive in). Once the sample is
/// full, its largest key is the bar a record must get under: the scans
/// judge that on the row's own fields, so a record that cannot enter the
/// sample is never built.
pub async fn select_insights(
    store: &dyn EventStore,
    account: &Scope,
    query: &InsightQuery,
    stop: &Arc<AtomicBool>,
) -> Result<InsightSelection, StoreError> {
    let mut selection = InsightSelection::default();
    let mut sample: BinaryHeap<Sampled> = BinaryHeap::with_capacity(query.max_results.min(1 << 16) + 1);
    let control = Arc::new(ScanControl::new(Arc::clone(stop)));
    let bar = Arc::new(AtomicU64::new(u64::MAX));
    let matched = Arc::new(Tally::default());
    let keep = {
        let (include, exclude) = (query.include.clone(), query.exclude.clone());
        let (bar, matched, seed) = (Arc::clone(&bar), Arc::clone(&matched), query.seed);
        RecordFilter::new(include.reads_text() || exclude.reads_text(), move |fields| {
            if !include.includes_fields(fields) || exclude.excludes_fields(fields) {
                return false;
            }
            matched.add_one();
            sample_key(seed, fields.sample_hash) <= bar.load(Ordering::Relaxed)
        })
    };
    // Before a row's text is read: the other filters, and the bar (which
    // does not depend on the text). Rows it rules out are not counted as
    // matched: `matched` then counts the records judged whole.
    let keep = {
        let (include, exclude) = (query.include.without_text(), query.exclude.without_text());
        let (bar, seed) = (Arc::clone(&bar), query.seed);
        keep.with_check_before_text(move |fields| {
            include.includes_fields(fields)
                && !exclude.excludes_fields(fields)
                && sample_key(seed, fields.sample_hash) <= bar.load(Ordering::Relaxed)
        })
    };
    let keep = keep.with_filters(query.include.clone(), query.exclude.clone());
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scans = split(query.interval, parts)
        .into_iter()
        .map(|part| store.scan_insights_where(account, part, keep.clone(), Arc::clone(&control)));
    let mut scan = futures_util::stream::select_all(scans);
    while let Some(record) = scan.next().await {
        let record = record?;
        if control.stopped() {
            break;
        }
        let key = sample_key(
            query.seed,
            crate::insight::sample_hash(&record.message_id, &record.destination),
        );
        if sample.len() < query.max_results {
            sample.push(Sampled(key, Box::new(record)));
        } else if sample.peek().is_some_and(|top| key < top.0) {
            sample.pop();
            sample.push(Sampled(key, Box::new(record)));
        } else {
            continue;
        }
        if sample.len() >= query.max_results
            && let Some(top) = sample.peek()
        {
            bar.store(top.0, Ordering::Relaxed);
        }
    }
    drop(scan);
    selection.processed = control.scanned.load(Ordering::Relaxed);
    selection.matched = matched.total();
    let mut records: Vec<InsightRecord> = sample.into_iter().map(|s| *s.1).collect();
    records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    selection.records = records;
    Ok(selection)
}

/// A count that scans on several threads add to row by row: one counter
/// per thread (up to [`Tally::SLOTS`], each on its own cache line), so
/// they do not fight over one.
#[derive(Debug, Default)]
struct Tally {
    slots: [Slot; Tally::SLOTS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl Tally {
    const SLOTS: usize = 16;

    fn add_one(&self) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % Tally::SLOTS;
        }
        let slot = SLOT.with(|s| *s);
        self.slots[slot].0.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// `interval` in at most `parts` consecutive pieces of about equal length.
fn split(interval: Interval, parts: usize) -> Vec<Interval> {
    let span = i128::from(interval.end) - i128::from(interval.start) + 1;
    let parts = i128::try_from(parts.max(1)).unwrap_or(1).min(span.max(1));
    let mut pieces = Vec::new();
    let mut start = i128::from(interval.start);
    for i in 1..=parts {
        let end = i128::from(interval.start) + span * i / parts - 1;
        if end >= start {
            pieces.push(Interval {
                start: Millis(i64::try_from(start).unwrap_or(i64::MAX)),
                end: Millis(i64::try_from(end).unwrap_or(i64::MAX)),
            });
        }
        start = end + 1;
    }
    pieces
}

/// Which values of a dimension a metrics export groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionSelect {
    /// `*`: every value, the empty one included.
    All,
    /// Only these values.
    Values(Vec<String>),
}

/// A metrics export's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsQuery {
    /// Which UTC days, by send time.
    pub interval: Interval,
    /// The dimensions, in column order.
    pub dimensions: Vec<(MetricDimensionName, DimensionSelect)>,
    /// The metrics and how each is given (volume or rate), in column order.
    pub metrics: Vec<(Metric, MetricAggregation)>,
}

/// One row of a metrics export.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// One value per requested dimension, in column order.
    pub dimension_values: Vec<String>,
    /// One value per requested metric: a volume, or a rate (`None` when
    /// nothing was sent).
    pub values: Vec<MetricValue>,
}

/// A metric's value in a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// A count of messages.
    Volume(i64),
    /// The metric's volume over the messages sent, from 0 to 1; `None`
    /// when nothing was sent.
    Rate(Option<f64>),
}

/// What a metrics export found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MetricsSelection {
    /// Messages counted in the interval (the SEND volume over all rows).
    pub processed: u64,
    /// The rows, in export order.
    pub rows: Vec<MetricsRow>,
}

/// Runs a metrics export's query: one row per combination of the requested
/// dimensions' values with at least one counted message, ordered by those
/// values (empty first, by byte value).
pub async fn select_metrics(
    store: &dyn EventStore,
    account: &Scope,
    query: &MetricsQuery,
) -> Result<MetricsSelection, StoreError> {
    let days = store.daily_counts(account, query.interval).await?;
    let mut groups: BTreeMap<Vec<String>, MetricCounts> = BTreeMap::new();
    for DailyCounts { dimensions, counts, .. } in &days {
        let mut key = Vec::with_capacity(query.dimensions.len());
        let mut selected = true;
        for (name, select) in &query.dimensions {
            let value = dimensions.get(name).unwrap_or("");
            // A record without a value never matches a listed one, "" included.
            selected &= match select {
                DimensionSelect::All => true,
                DimensionSelect::Values(values) => !value.is_empty() && values.iter().any(|v| v == value),
            };
            key.push(value.to_owned());
        }
        if selected {
            *groups.entry(key).or_default() += *counts;
        }
    }
    let mut selection = MetricsSelection::default();
    for (dimension_values, counts) in groups {
        let sent = counts.get(&Metric::Send);
        selection.processed += sent as u64;
        let values = query
            .metrics
            .iter()
            .map(|(metric, aggregation)| match aggregation {
                MetricAggregation::Rate => {
                    MetricValue::Rate((sent > 0).then(|| counts.get(metric) as f64 / sent as f64))
                }
                _ => MetricValue::Volume(counts.get(metric)),
            })
            .collect();
        selection.rows.push(MetricsRow {
            dimension_values,
            values,
        });
    }
    Ok(selection)
}

/// `BatchGetMetricData`'s answer to one query: for every UTC day from the
/// interval's first to its last, that day's start and the metric's volume
/// among messages sent inside the interval that day whose dimension values
/// equal `filter`'s (every message when `filter` is empty).
pub async fn daily_volumes(
    store: &dyn EventStore,
    account: &Scope,
    metric: &Metric,
    filter: &BTreeMap<MetricDimensionName, String>,
    interval: Interval,
) -> Result<Vec<(Millis, i64)>, StoreError> {
    if interval.is_empty() {
        return Ok(Vec::new());
    }
    let (first, last) = (day_of(interval.start), day_of(interval.end));
    let mut volumes: BTreeMap<i64, i64> = (first..=last).map(|d| (d, 0)).collect();
    for row in store.daily_counts(account, interval).await? {
        let matches = filter
            .iter()
            .all(|(name, value)| !value.is_empty() && row.dimensions.get(name) == Some(value.as_str()));
        if matches && let Some(v) = volumes.get_mut(&row.day) {
            *v += row.counts.get(metric);
        }
    }
    Ok(volumes.into_iter().map(|(day, v)| (day_start(day), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_splits_into_consecutive_pieces() {
        let whole = Interval {
            start: Millis(10),
            end: Millis(19),
        };
        let pieces = split(whole, 3);
        assert_eq!(pieces.first().map(|p| p.start), Some(Millis(10)));
        assert_eq!(pieces.last().map(|p| p.end), Some(Millis(19)));
        assert!(pieces.windows(2).all(|w| w[0].end + 1 == w[1].start), "{pieces:?}");
        assert_eq!(
            split(
                Interval {
                    start: Millis(5),
                    end: Millis(5)
                },
                4
            ),
            vec![Interval {
                start: Millis(5),
                end: Millis(5)
            }]
        );
        let extreme = Interval {
            start: Millis::MIN,
            end: Millis::MAX,
        };
        let halves = split(extreme, 2);
        assert_eq!((halves[0].start, halves[1].end), (Millis::MIN, Millis::MAX));
        assert_eq!(halves[0].end + 1, halves[1].start);
    }
}
