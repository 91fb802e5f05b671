//! VDM metrics: what each metric counts, per message and recipient, and the
//! dimension values they are grouped by.

use std::ops::{AddAssign, SubAssign};

use ses_export_model::types::{Metric, MetricDimensionName};

use crate::insight::EventFlags;

/// The ten metrics, in the model's order; the index of each is its slot in
/// [`MetricCounts`].
pub const METRICS: [Metric; 10] = [
    Metric::Send,
    Metric::Complaint,
    Metric::PermanentBounce,
    Metric::TransientBounce,
    Metric::Open,
    Metric::Click,
    Metric::Delivery,
    Metric::DeliveryOpen,
    Metric::DeliveryClick,
    Metric::DeliveryComplaint,
];

/// The slot of `metric` in [`MetricCounts`]; `None` for a metric this
/// version does not know.
pub fn slot(metric: &Metric) -> Option<usize> {
    METRICS.iter().position(|m| m == metric)
}

/// A volume per metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricCounts(pub [i64; 10]);

impl MetricCounts {
    /// What one message and recipient with `flags` adds to each metric.
    pub fn of(flags: EventFlags) -> MetricCounts {
        let has = |f| flags.contains(f);
        let delivered = has(EventFlags::DELIVERY);
        let bits = [
            flags.sent(),
            has(EventFlags::COMPLAINT),
            has(EventFlags::PERMANENT_BOUNCE),
            has(EventFlags::TRANSIENT_BOUNCE),
            has(EventFlags::OPEN),
            has(EventFlags::CLICK),
            delivered,
            delivered && has(EventFlags::OPEN),
            delivered && has(EventFlags::CLICK),
            delivered && has(EventFlags::COMPLAINT),
        ];
        MetricCounts(bits.map(i64::from))
    }

    /// The volume of `metric`.
    pub fn get(&self, metric: &Metric) -> i64 {
        slot(metric).map_or(0, |i| self.0[i])
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

impl AddAssign for MetricCounts {
    fn add_assign(&mut self, other: MetricCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl SubAssign for MetricCounts {
    fn sub_assign(&mut self, other: MetricCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a -= b;
        }
    }
}

/// A record's value for each dimension; the empty string where it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DimensionValues {
    pub email_identity: String,
    pub configuration_set: String,
    pub isp: String,
    pub tenant_name: String,
}

impl DimensionValues {
    /// The value of dimension `name`; `None` for a dimension this version
    /// does not know.
    pub fn get(&self, name: &MetricDimensionName) -> Option<&str> {
        match name {
            MetricDimensionName::EmailIdentity => Some(&self.email_identity),
            MetricDimensionName::ConfigurationSet => Some(&self.configuration_set),
            MetricDimensionName::Isp => Some(&self.isp),
            MetricDimensionName::TenantName => Some(&self.tenant_name),
            MetricDimensionName::Unknown(_) => None,
        }
    }
}

/// The counts of one UTC day and one combination of dimension values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCounts {
    /// Days since the epoch.
    pub day: i64,
    pub dimensions: DimensionValues,
    pub counts: MetricCounts,
}

/// Sorts and merges daily counts with equal day and dimensions, dropping
/// combinations with no counted message. Stores return their pieces
/// (rollups, recounted partial days) in any order; this makes them one.
pub fn merge_daily(mut rows: Vec<DailyCounts>) -> Vec<DailyCounts> {
    rows.sort_by(|a, b| (a.day, &a.dimensions).cmp(&(b.day, &b.dimensions)));
    let mut out: Vec<DailyCounts> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.day == row.day && last.dimensions == row.dimensions => last.counts += row.counts,
            _ => out.push(row),
        }
    }
    // SEND counts every counted message, so a zero SEND means none.
    out.retain(|r| r.counts.get(&Metric::Send) != 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each metric against hand-computed expectations, one line a case.
    #[test]
    fn each_metric_counts_what_it_says() {
        let f = |flags: &[EventFlags]| flags.iter().fold(EventFlags::default(), |a, b| a.union(*b));
        let cases: &[(&[EventFlags], [i64; 10])] = &[
            //  SEND CMPL PERM TRAN OPEN CLIK DELV D_OP D_CL D_CM
            (&[], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::REJECT], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::SEND], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::DELIVERY], [1, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
            (
                &[EventFlags::SEND, EventFlags::PERMANENT_BOUNCE],
                [1, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            ),
            (&[EventFlags::TRANSIENT_BOUNCE], [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::UNDETERMINED_BOUNCE], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::DELIVERY_DELAY], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (&[EventFlags::OPEN], [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
            (
                &[EventFlags::SEND, EventFlags::DELIVERY, EventFlags::OPEN],
                [1, 0, 0, 0, 1, 0, 1, 1, 0, 0],
            ),
            (
                &[EventFlags::DELIVERY, EventFlags::CLICK],
                [1, 0, 0, 0, 0, 1, 1, 0, 1, 0],
            ),
            (&[EventFlags::COMPLAINT], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            (
                &[EventFlags::COMPLAINT, EventFlags::DELIVERY],
                [1, 1, 0, 0, 0, 0, 1, 0, 0, 1],
            ),
        ];
        for (flags, expected) in cases {
            assert_eq!(MetricCounts::of(f(flags)).0, *expected, "{flags:?}");
        }
    }
}
