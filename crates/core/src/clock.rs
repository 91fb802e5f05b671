//! Times as the domain keeps them: milliseconds since the Unix epoch, UTC
//! days, and the ISO 8601 text that SES records and export files use.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Milliseconds in a UTC day.
pub const DAY_MILLIS: Millis = 86_400_000;

/// The time now, in milliseconds since the epoch.
pub fn now() -> Millis {
    ses_export_model::Timestamp::now().as_millis()
}

/// Parses an ISO 8601 / RFC 3339 time (`2026-11-01T12:00:00.000Z`, any
/// offset, any number of fraction digits) to milliseconds, rounding down.
pub fn parse_iso8601(text: &str) -> Option<Millis> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Formats milliseconds as export files write times: UTC with milliseconds,
/// `2026-11-01T12:00:00.000Z`.
pub fn format_iso8601(millis: Millis) -> String {
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000) else {
        return String::new();
    };
    let time = time.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// The UTC day (days since the epoch) that `millis` falls in.
pub fn day_of(millis: Millis) -> i64 {
    millis.div_euclid(DAY_MILLIS)
}

/// The first millisecond of UTC day `day`.
pub fn day_start(day: i64) -> Millis {
    day * DAY_MILLIS
}

/// An interval of send times, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The first millisecond in it.
    pub start: Millis,
    /// The last millisecond in it.
    pub end: Millis,
}

impl Interval {
    /// The interval from `start` to `end`, both inclusive.
    pub fn new(start: Millis, end: Millis) -> Self {
        Interval { start, end }
    }

    /// Whether `t` is inside.
    pub fn contains(&self, t: Millis) -> bool {
        self.start <= t && t <= self.end
    }

    /// Whether the interval holds no instant at all.
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// The interval's pieces by UTC day: whole days (kept in rollups) as one
    /// range of days, and the partial days at either end as intervals.
    pub fn split_days(&self) -> DaySplit {
        let mut split = DaySplit::default();
        if self.is_empty() {
            return split;
        }
        let (first, last) = (day_of(self.start), day_of(self.end));
        let whole_first = if self.start == day_start(first) {
            first
        } else {
            first + 1
        };
        let whole_last = if self.end == day_start(last + 1) - 1 {
            last
        } else {
            last - 1
        };
        if whole_first > whole_last {
            // No whole day inside: one or two partial pieces.
            if first == last {
                split.partial.push(*self);
            } else {
                split.partial.push(Interval::new(self.start, day_start(first + 1) - 1));
                split.partial.push(Interval::new(day_start(last), self.end));
            }
            return split;
        }
        if whole_first > first {
            split
                .partial
                .push(Interval::new(self.start, day_start(whole_first) - 1));
        }
        split.whole_days = Some((whole_first, whole_last));
        if whole_last < last {
            split.partial.push(Interval::new(day_start(last), self.end));
        }
        split
    }
}

/// See [`Interval::split_days`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaySplit {
    /// First and last whole UTC day, inclusive.
    pub whole_days: Option<(i64, i64)>,
    /// Pieces of days, each inside a single UTC day.
    pub partial: Vec<Interval>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips() {
        let t = parse_iso8601("2026-11-01T12:00:00.123Z").expect("valid");
        assert_eq!(format_iso8601(t), "2026-11-01T12:00:00.123Z");
        assert_eq!(parse_iso8601("2026-11-01T13:00:00.123456+01:00"), Some(t));
        assert_eq!(parse_iso8601("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn intervals_split_into_whole_and_partial_days() {
        let d = DAY_MILLIS;
        let check = |start, end, whole, partial: &[(i64, i64)]| {
            let split = Interval::new(start, end).split_days();
            let got: Vec<(i64, i64)> = split.partial.iter().map(|i| (i.start, i.end)).collect();
            assert_eq!((split.whole_days, got.as_slice()), (whole, partial), "{start}..={end}");
        };
        check(0, d - 1, Some((0, 0)), &[]);
        check(0, 3 * d - 1, Some((0, 2)), &[]);
        check(5, 3 * d - 1, Some((1, 2)), &[(5, d - 1)]);
        check(5, 3 * d, Some((1, 2)), &[(5, d - 1), (3 * d, 3 * d)]);
        check(5, 10, None, &[(5, 10)]);
        check(5, d + 10, None, &[(5, d - 1), (d, d + 10)]);
        check(d, d, None, &[(d, d)]);
        check(10, 5, None, &[]);
    }
}
