//! `Timestamp`: an RFC 3339 UTC instant carried as a validated string (no time crate here).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant in UTC, written as RFC 3339 with a `Z` offset: `2026-11-23T10:00:00Z`, optionally
/// with a fraction of 1 to 9 digits (`2026-11-23T10:00:00.250Z`).
///
/// On the wire it is a JSON string. It is validated when constructed and when deserialized
/// (calendar ranges included, so `2026-02-30T00:00:00Z` is refused); other offsets than `Z` are
/// refused, so two timestamps of the contract always compare in the same zone. The agent writes
/// whole seconds ([`Timestamp::from_unix_seconds`]).
// No `Ord`: string order is not time order once fractions differ in length; compare
// `unix_seconds()` instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(String);

/// Why a string is not a [`Timestamp`]; names the offending part, never guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidTimestamp {
    /// The string that was refused.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for InvalidTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid timestamp {:?}: {} (expected RFC 3339 UTC like 2026-11-23T10:00:00Z)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for InvalidTimestamp {}

impl Timestamp {
    /// Validates `s` as an RFC 3339 UTC timestamp.
    pub fn parse(s: &str) -> Result<Self, InvalidTimestamp> {
        let fail = |reason| InvalidTimestamp {
            input: s.to_owned(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(fail("too short"));
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b[range].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return Err(fail("wrong separators"));
        }
        let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
            digits(0..4),
            digits(5..7),
            digits(8..10),
            digits(11..13),
            digits(14..16),
            digits(17..19),
        ) else {
            return Err(fail("a date or time field is not all digits"));
        };
        if !(1..=12).contains(&month) {
            return Err(fail("month out of range"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(fail("day out of range"));
        }
        if hour > 23 || minute > 59 {
            return Err(fail("hour or minute out of range"));
        }
        // RFC 3339 allows a leap second.
        if second > 60 {
            return Err(fail("second out of range"));
        }
        let rest = &b[19..];
        let rest = match rest.first() {
            Some(b'.') => {
                let frac = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if frac == 0 || frac > 9 {
                    return Err(fail("the fraction must have 1 to 9 digits"));
                }
                &rest[1 + frac..]
            }
            _ => rest,
        };
        if rest != b"Z" {
            return Err(fail("the offset must be Z (UTC)"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The timestamp of `secs` seconds after 1970-01-01T00:00:00Z, in whole seconds.
    pub fn from_unix_seconds(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Self(format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ))
    }

    /// Whole seconds since 1970-01-01T00:00:00Z (the fraction is dropped; negative before 1970).
    pub fn unix_seconds(&self) -> i64 {
        let b = self.0.as_bytes();
        let num = |from: usize, to: usize| -> i64 {
            b[from..to]
                .iter()
                .fold(0, |acc, &c| acc * 10 + i64::from(c - b'0'))
        };
        let days = days_from_civil(num(0, 4), num(5, 7), num(8, 10));
        days * 86_400 + num(11, 13) * 3600 + num(14, 16) * 60 + num(17, 19)
    }

    /// The string as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = InvalidTimestamp;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Timestamp> for String {
    fn from(value: Timestamp) -> Self {
        value.0
    }
}

impl std::str::FromStr for Timestamp {
    type Err = InvalidTimestamp;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `civil_from_days` / `days_from_civil` (public-domain algorithms).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_utc_with_and_without_fraction() {
        for s in [
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.5Z",
            "2026-11-23T10:00:00.123456789Z",
            "2024-02-29T23:59:60Z",
        ] {
            assert_eq!(Timestamp::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn refuses_what_is_not_rfc3339_utc() {
        for (s, reason) in [
            ("", "too short"),
            ("2026-11-23 10:00:00Z", "wrong separators"),
            ("2026-11-23T10:00:00+01:00", "the offset must be Z (UTC)"),
            ("2026-11-23T10:00:00", "too short"),
            ("2026-11-23T10:00:00z", "the offset must be Z (UTC)"),
            ("2026-13-01T00:00:00Z", "month out of range"),
            ("2025-02-29T00:00:00Z", "day out of range"),
            ("2026-04-31T00:00:00Z", "day out of range"),
            ("2026-11-23T24:00:00Z", "hour or minute out of range"),
            ("2026-11-23T10:00:61Z", "second out of range"),
            (
                "2026-11-23T10:00:00.Z",
                "the fraction must have 1 to 9 digits",
            ),
            (
                "2026-11-23T10:00:00.1234567890Z",
                "the fraction must have 1 to 9 digits",
            ),
            (
                "2026-1a-23T10:00:00Z",
                "a date or time field is not all digits",
            ),
            ("2026-11-23T10:00:00ZZ", "the offset must be Z (UTC)"),
        ] {
            let err = Timestamp::parse(s).unwrap_err();
            assert_eq!(err.reason, reason, "{s}");
            assert!(err.to_string().contains(&format!("{s:?}")));
        }
    }

    #[test]
    fn unix_seconds_round_trip() {
        for (secs, s) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_428_000, "2026-11-23T10:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            let t = Timestamp::from_unix_seconds(secs);
            assert_eq!(t.as_str(), s);
            assert_eq!(t.unix_seconds(), secs as i64);
        }
        // Every day over several leap cycles, against the validator too.
        for day in (0..60_000u64).step_by(7) {
            let t = Timestamp::from_unix_seconds(day * 86_400 + 3_723);
            assert!(Timestamp::parse(t.as_str()).is_ok(), "{t}");
            assert_eq!(t.unix_seconds(), (day * 86_400 + 3_723) as i64);
        }
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59.9Z")
                .unwrap()
                .unix_seconds(),
            -1
        );
    }

    #[test]
    fn serializes_as_a_plain_string_and_validates_on_read() {
        let t = Timestamp::from_unix_seconds(1_795_428_000);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-23T10:00:00Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2026-11-23T10:00:00Z\"").unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("1795428000").is_err());
    }
}
