//! Times as the domain keeps them: instants as [`Millis`] (milliseconds
//! since the Unix epoch), spans as plain milliseconds (`i64`, as
//! [`DAY_MILLIS`]), UTC days as day numbers (`i64`, [`day_of`] and
//! [`day_start`] cross between them), and the ISO 8601 text that SES
//! records and export files use. An instant plus a span is an instant;
//! two instants' difference is a span; an instant is never a day.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// An instant: milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// The earliest instant there is room for.
    pub const MIN: Millis = Millis(i64::MIN);
    /// The latest instant there is room for.
    pub const MAX: Millis = Millis(i64::MAX);

    /// The instant of a wire timestamp (rounded down to the millisecond).
    pub fn of(t: ses_export_model::Timestamp) -> Millis {
        Millis(t.as_millis())
    }

    /// The wire timestamp of this instant; `None` outside years 1 to 9999.
    pub fn timestamp(self) -> Option<ses_export_model::Timestamp> {
        ses_export_model::Timestamp::from_millis(self.0)
    }

    /// `ms` later, or [`Millis::MAX`] (or `MIN`) where that overflows.
    pub const fn saturating_add(self, ms: i64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

impl From<Millis> for i128 {
    fn from(t: Millis) -> i128 {
        i128::from(t.0)
    }
}

impl std::str::FromStr for Millis {
    type Err = std::num::ParseIntError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Millis)
    }
}

impl std::ops::AddAssign<i64> for Millis {
    fn add_assign(&mut self, ms: i64) {
        self.0 += ms;
    }
}

impl std::ops::Add<i64> for Millis {
    type Output = Millis;
    fn add(self, ms: i64) -> Millis {
        Millis(self.0 + ms)
    }
}

impl std::ops::Sub<i64> for Millis {
    type Output = Millis;
    fn sub(self, ms: i64) -> Millis {
        Millis(self.0 - ms)
    }
}

impl std::ops::Sub for Millis {
    type Output = i64;
    fn sub(self, other: Millis) -> i64 {
        self.0 - other.0
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Kept as SQLite's INTEGER.
#[cfg(feature = "sqlite")]
impl rusqlite::ToSql for Millis {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::FromSql for Millis {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(value).map(Millis)
    }
}

/// Kept as PostgreSQL's BIGINT.
#[cfg(feature = "postgres")]
impl tokio_postgres::types::ToSql for Millis {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

#[cfg(feature = "postgres")]
impl<'a> tokio_postgres::types::FromSql<'a> for Millis {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(Millis)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Milliseconds in a UTC day.
pub const DAY_MILLIS: i64 = 86_400_000;

/// The time now, in milliseconds since the epoch.
pub fn now() -> Millis {
    Millis::of(ses_export_model::Timestamp::now())
}

/// Parses an ISO 8601 / RFC 3339 time (`2026-11-01T12:00:00.000Z`, any
/// offset, any number of fraction digits) to milliseconds, rounding down.
pub fn parse_iso8601(text: &str) -> Option<Millis> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000))
        .ok()
        .map(Millis)
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
    millis.0.div_euclid(DAY_MILLIS)
}

/// The first millisecond of UTC day `day`.
pub fn day_start(day: i64) -> Millis {
    Millis(day * DAY_MILLIS)
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
    /// Every instant a store can be asked about (half of `i64`'s range
    /// either side, so arithmetic on its ends cannot overflow).
    pub const EVERYTHING: Interval = Interval {
        start: Millis(i64::MIN / 2),
        end: Millis(i64::MAX / 2),
    };

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
        assert_eq!(parse_iso8601("1969-12-31T23:59:59.999Z"), Some(Millis(-1)));
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn intervals_split_into_whole_and_partial_days() {
        let d = DAY_MILLIS;
        let check = |start, end, whole, partial: &[(i64, i64)]| {
            let split = Interval::new(Millis(start), Millis(end)).split_days();
            let got: Vec<(i64, i64)> = split.partial.iter().map(|i| (i.start.0, i.end.0)).collect();
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
