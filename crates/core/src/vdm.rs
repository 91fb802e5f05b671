//! VDM metrics: what each metric counts, per message and recipient, and the
//! dimension values they are grouped by.

use std::collections::BTreeSet;
use std::ops::{AddAssign, SubAssign};

use ses_export_model::types::{Metric, MetricDimensionName};

use crate::flags::EventFlags;

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
pub struct MetricCounts(pub [i64; METRICS.len()]);

impl MetricCounts {
    /// What one eligible message and recipient with `flags` adds to each
    /// metric, as rolled up. `DELIVERY_OPEN`, `DELIVERY_CLICK` and
    /// `DELIVERY_COMPLAINT` are 0 here: they are deliveries that could be
    /// opened, clicked or complained about, which depends on what the
    /// account's events teach over time ([`Learned::apply`], when read).
    /// Suppression-list bounces and complaints have bits of their own, so
    /// they are neither `PERMANENT_BOUNCE` nor `COMPLAINT`.
    pub fn of(flags: EventFlags) -> MetricCounts {
        let has = |f| flags.contains(f);
        let bits = [
            flags.sent(),
            has(EventFlags::COMPLAINT),
            has(EventFlags::PERMANENT_BOUNCE),
            has(EventFlags::TRANSIENT_BOUNCE),
            has(EventFlags::OPEN),
            has(EventFlags::CLICK),
            has(EventFlags::DELIVERY),
            false,
            false,
            false,
        ];
        MetricCounts(bits.map(i64::from))
    }

    /// The volume of `metric`.
    pub fn get(&self, metric: &Metric) -> i64 {
        slot(metric).map_or(0, |i| self.0[i])
    }

    /// Whether every metric is zero.
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

/// One thing an account's events teach (docs/metrics.md, Metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lesson {
    /// The configuration set publishes Open events, so SES inserts open
    /// trackers into its messages.
    OpenTracked,
    /// The configuration set publishes Click events: its links are wrapped.
    ClickTracked,
    /// The ISP sends complaints: it has a feedback loop with SES.
    FeedbackLoop,
}

impl Lesson {
    /// The lesson's code in a store.
    pub fn code(self) -> i16 {
        match self {
            Lesson::OpenTracked => 0,
            Lesson::ClickTracked => 1,
            Lesson::FeedbackLoop => 2,
        }
    }

    /// The lesson a stored code names ([`code`](Self::code)'s inverse).
    pub fn from_code(code: i64) -> Option<Lesson> {
        match code {
            0 => Some(Lesson::OpenTracked),
            1 => Some(Lesson::ClickTracked),
            2 => Some(Lesson::FeedbackLoop),
            _ => None,
        }
    }
}

/// What an account's events have taught: open- and click-tracked
/// configuration sets, ISPs with a feedback loop. It only grows, so a late
/// Open, Click or Complaint raises these metrics for earlier days too, and
/// the order events arrive in does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// Configuration sets that publish Open events.
    pub open_tracked: BTreeSet<String>,
    /// Configuration sets that publish Click events.
    pub click_tracked: BTreeSet<String>,
    /// ISPs that have sent a complaint.
    pub feedback_loops: BTreeSet<String>,
}

impl Learned {
    /// Adds what one lesson teaches.
    pub fn learn(&mut self, lesson: Lesson, value: String) {
        match lesson {
            Lesson::OpenTracked => self.open_tracked.insert(value),
            Lesson::ClickTracked => self.click_tracked.insert(value),
            Lesson::FeedbackLoop => self.feedback_loops.insert(value),
        };
    }

    /// Fills in `DELIVERY_OPEN`, `DELIVERY_CLICK` and `DELIVERY_COMPLAINT`
    /// of rolled-up counts: the deliveries of an open-tracked (click-tracked)
    /// configuration set, and to an ISP with a feedback loop. A message
    /// without a configuration set carries no tracker.
    pub fn apply(&self, rows: &mut [DailyCounts]) {
        let [delivery, open, click, complaint] = [
            Metric::Delivery,
            Metric::DeliveryOpen,
            Metric::DeliveryClick,
            Metric::DeliveryComplaint,
        ]
        .map(|m| slot(&m).unwrap_or_default());
        for row in rows {
            let delivered = row.counts.0[delivery];
            let set = &row.dimensions.configuration_set;
            let tracked = |sets: &BTreeSet<String>| !set.is_empty() && sets.contains(set);
            row.counts.0[open] = if tracked(&self.open_tracked) { delivered } else { 0 };
            row.counts.0[click] = if tracked(&self.click_tracked) { delivered } else { 0 };
            row.counts.0[complaint] = if self.feedback_loops.contains(&row.dimensions.isp) {
                delivered
            } else {
                0
            };
        }
    }
}

/// A record's value for each dimension; the empty string where it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DimensionValues {
    /// The `EMAIL_IDENTITY` dimension: [`InsightRecord::email_identity`](crate::insight::InsightRecord::email_identity).
    pub email_identity: String,
    /// The `CONFIGURATION_SET` dimension: the `ses:configuration-set` tag.
    pub configuration_set: String,
    /// The `ISP` dimension: the recipient's mailbox provider.
    pub isp: String,
    /// The `TENANT_NAME` dimension: the `ses:tenant-name` tag.
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
    /// The dimension values the counts are for.
    pub dimensions: DimensionValues,
    /// The day's volume of each metric.
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
            // The three "could be" metrics are filled in when read.
            (
                &[EventFlags::SEND, EventFlags::DELIVERY, EventFlags::OPEN],
                [1, 0, 0, 0, 1, 0, 1, 0, 0, 0],
            ),
            (
                &[EventFlags::DELIVERY, EventFlags::CLICK],
                [1, 0, 0, 0, 0, 1, 1, 0, 0, 0],
            ),
            (&[EventFlags::COMPLAINT], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            (
                &[EventFlags::COMPLAINT, EventFlags::DELIVERY],
                [1, 1, 0, 0, 0, 0, 1, 0, 0, 0],
            ),
            // The suppression list: sent, but neither a bounce nor a complaint.
            (&[EventFlags::SUPPRESSED_BOUNCE], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (
                &[EventFlags::DELIVERY, EventFlags::SUPPRESSED_COMPLAINT],
                [1, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            ),
        ];
        for (flags, expected) in cases {
            assert_eq!(MetricCounts::of(f(flags)).0, *expected, "{flags:?}");
        }
    }

    /// Deliveries that could be opened, clicked, complained about: by what
    /// the account has learned, whatever day they were on.
    #[test]
    fn learned_sets_decide_the_could_be_metrics() {
        let row = |set: &str, isp: &str, delivered: i64| DailyCounts {
            day: 1,
            dimensions: DimensionValues {
                configuration_set: set.to_owned(),
                isp: isp.to_owned(),
                ..DimensionValues::default()
            },
            counts: MetricCounts([delivered, 0, 0, 0, 0, 0, delivered, 0, 0, 0]),
        };
        let mut rows = vec![
            row("tracked", "Yahoo", 5),
            row("plain", "Gmail", 3),
            row("", "Yahoo", 2),
        ];
        let mut learned = Learned::default();
        learned.learn(Lesson::OpenTracked, "tracked".to_owned());
        learned.learn(Lesson::ClickTracked, "tracked".to_owned());
        learned.learn(Lesson::FeedbackLoop, "Yahoo".to_owned());
        learned.apply(&mut rows);
        let could: Vec<[i64; 3]> = rows
            .iter()
            .map(|r| [r.counts.0[7], r.counts.0[8], r.counts.0[9]])
            .collect();
        assert_eq!(could, [[5, 5, 5], [0, 0, 0], [0, 0, 2]]);
    }
}

/// An account's reputation in a region as AWS shows it on its reputation
/// page: the bounce and complaint rates over its most recent eligible sends
/// (a representative volume, not a calendar window), with AWS's
/// thresholds: above [`Reputation::BOUNCE_REVIEW`] or
/// [`Reputation::COMPLAINT_REVIEW`] AWS reviews the account, above
/// [`Reputation::BOUNCE_PAUSE`] or [`Reputation::COMPLAINT_PAUSE`] it may
/// pause its sending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reputation {
    /// Eligible messages sent among those looked at.
    pub sends: u64,
    /// Of them, permanently bounced (not from the suppression list).
    pub bounces: u64,
    /// Of them, complained about (not from the suppression list).
    pub complaints: u64,
}

impl Reputation {
    /// The bounce rate at which AWS reviews an account.
    pub const BOUNCE_REVIEW: f64 = 0.05;
    /// The bounce rate at which AWS may pause an account's sending.
    pub const BOUNCE_PAUSE: f64 = 0.10;
    /// The complaint rate at which AWS reviews an account.
    pub const COMPLAINT_REVIEW: f64 = 0.001;
    /// The complaint rate at which AWS may pause an account's sending.
    pub const COMPLAINT_PAUSE: f64 = 0.005;
    /// How many of the latest eligible sends the rates are over, unless
    /// told otherwise.
    pub const DEFAULT_SENDS: usize = 10_000;

    /// Counts the sent records among `flags` (eligible records, newest
    /// first, already cut to the volume wanted).
    pub fn of(flags: impl IntoIterator<Item = EventFlags>) -> Reputation {
        let mut reputation = Reputation::default();
        for flags in flags.into_iter().filter(|f| f.sent()) {
            let counts = MetricCounts::of(flags);
            reputation.sends += 1;
            reputation.bounces += u64::from(counts.get(&Metric::PermanentBounce) > 0);
            reputation.complaints += u64::from(counts.get(&Metric::Complaint) > 0);
        }
        reputation
    }

    /// Permanent bounces over sends; none without sends.
    pub fn bounce_rate(&self) -> Option<f64> {
        (self.sends > 0).then(|| self.bounces as f64 / self.sends as f64)
    }

    /// Complaints over sends; none without sends.
    pub fn complaint_rate(&self) -> Option<f64> {
        (self.sends > 0).then(|| self.complaints as f64 / self.sends as f64)
    }
}
