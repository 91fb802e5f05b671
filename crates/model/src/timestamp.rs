//! Timestamps as restJson1 sends them in bodies: epoch seconds, whole or
//! fractional.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with microsecond precision, kept as AWS sends it: a whole
/// number of seconds stays whole on the way back out, a fraction stays a
/// fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    secs: i64,
    /// Always below one second, and a whole number of microseconds.
    nanos: u32,
}

/// 0001-01-01T00:00:00Z, the earliest instant the wire accepts.
const MIN_SECS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the latest.
const MAX_SECS: i64 = 253_402_300_799;

impl Timestamp {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// A whole number of seconds since the epoch; `None` outside years 1 to 9999.
    pub fn from_secs(secs: i64) -> Option<Self> {
        (MIN_SECS..=MAX_SECS)
            .contains(&secs)
            .then_some(Timestamp { secs, nanos: 0 })
    }

    /// Milliseconds since the epoch; `None` outside years 1 to 9999.
    pub fn from_millis(millis: i64) -> Option<Self> {
        let secs = millis.div_euclid(1000);
        let nanos = u32::try_from(millis.rem_euclid(1000) * 1_000_000).ok()?;
        Self::from_secs(secs).map(|t| Timestamp { nanos, ..t })
    }

    /// Seconds since the epoch with a fraction, rounded to the microsecond
    /// (the precision an `f64` holds for present-day times); `None` for
    /// NaN, infinities and instants outside years 1 to 9999.
    pub fn from_secs_f64(value: f64) -> Option<Self> {
        if !value.is_finite() || value < MIN_SECS as f64 || value >= (MAX_SECS + 1) as f64 {
            return None;
        }
        let whole = value.floor();
        let mut micros = ((value - whole) * 1e6).round() as u32;
        let mut secs = whole as i64;
        if micros >= 1_000_000 {
            secs += 1;
            micros -= 1_000_000;
        }
        Self::from_secs(secs).map(|t| Timestamp {
            nanos: micros * 1000,
            ..t
        })
    }

    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Whole seconds since the epoch (rounded down).
    pub fn secs(&self) -> i64 {
        self.secs
    }

    /// The fraction of a second, in nanoseconds.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Milliseconds since the epoch (rounded down).
    pub fn as_millis(&self) -> i64 {
        self.secs * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// Seconds since the epoch as a float, as the wire carries fractions.
    pub fn as_secs_f64(&self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        let clamped = millis.clamp(MIN_SECS * 1000, MAX_SECS * 1000);
        Self::from_millis(clamped).unwrap_or(Self::UNIX_EPOCH)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let since = Duration::new(t.secs.unsigned_abs(), 0);
        let base = if t.secs >= 0 {
            UNIX_EPOCH + since
        } else {
            UNIX_EPOCH - since
        };
        base + Duration::from_nanos(u64::from(t.nanos))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.nanos == 0 {
            serializer.serialize_i64(self.secs)
        } else {
            serializer.serialize_f64(self.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EpochSeconds)
    }
}

struct EpochSeconds;

impl Visitor<'_> for EpochSeconds {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("epoch seconds between years 1 and 9999")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
        Timestamp::from_secs(v).ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
        i64::try_from(v)
            .ok()
            .and_then(Timestamp::from_secs)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
        Timestamp::from_secs_f64(v).ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> String {
        let t: Timestamp = serde_json::from_str(json).expect(json);
        serde_json::to_string(&t).expect("serialize")
    }

    #[test]
    fn whole_and_fractional_seconds_come_back_as_sent() {
        for json in ["1704067200", "1704198615.25", "1704198615.123", "0", "-1.5"] {
            assert_eq!(round_trip(json), json);
        }
    }

    #[test]
    fn out_of_range_and_non_numbers_are_refused() {
        for json in [
            "1e300",
            "-1e300",
            "\"1704067200\"",
            "253402300800",
            "18446744073709551615",
        ] {
            assert!(serde_json::from_str::<Timestamp>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn fractions_round_to_the_microsecond() {
        let t = Timestamp::from_secs_f64(1.999_999_9).expect("in range");
        assert_eq!((t.secs(), t.subsec_nanos()), (2, 0));
        let t = Timestamp::from_secs_f64(-0.25).expect("in range");
        assert_eq!((t.secs(), t.subsec_nanos()), (-1, 750_000_000));
        assert_eq!(t.as_millis(), -250);
    }

    #[test]
    fn system_time_round_trips_at_millisecond_precision() {
        let t = Timestamp::from_millis(1_704_067_200_123).expect("in range");
        assert_eq!(Timestamp::from(SystemTime::from(t)), t);
    }
}
