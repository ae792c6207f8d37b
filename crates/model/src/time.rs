//! Timestamps (microseconds since the Unix epoch, UTC) and durations, with
//! the RFC 3339 text that users type and read. No clock is read here: the
//! caller says what time it is.

use std::fmt;

use crate::serde_text::text_serde;

use crate::error::{Error, Result};

/// A point in time, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

const US: i64 = 1_000_000;

// Days from civil date and back (H. Hinnant's algorithms, proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

const TIME_RULE: &str = "a time is RFC 3339, e.g. 2026-05-03T14:00:00Z or 2026-05-03T16:00:00+02:00; \"2026-05-03 14:00\" and \"2026-05-03\" are read as UTC";

impl Timestamp {
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Parse an RFC 3339 time, or the common shorter forms listed in the error.
    pub fn parse(field: &str, text: &str) -> Result<Timestamp> {
        parse_time(text.trim()).ok_or_else(|| Error::invalid(field, text, TIME_RULE))
    }
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_time(s: &str) -> Option<Timestamp> {
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) {
        return None;
    }
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut micros = days_from_civil(y, m, d) * 86_400 * US;
    let Some(rest) = rest else {
        return Some(Timestamp(micros));
    };
    // Split off the zone: Z, +HH:MM, -HH:MM, or none (UTC).
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = z[1..].split_once(':')?;
        let (hh, mm) = (num(hh)?, num(mm)?);
        if hh > 23 || mm > 59 {
            return None;
        }
        (c, sign * (hh * 3600 + mm * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let h = num(tp.next()?)?;
    let mi = num(tp.next()?)?;
    let sec = match tp.next() {
        Some(x) => num(x)?,
        None => 0,
    };
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    micros += (h * 3600 + mi * 60 + sec - offset) * US;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{f:0<6}");
        micros += num(&padded[..6])?;
    }
    Some(Timestamp(micros))
}

impl std::str::FromStr for Timestamp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Timestamp> {
        Timestamp::parse("time", s)
    }
}

impl std::str::FromStr for Seconds {
    type Err = Error;
    fn from_str(s: &str) -> Result<Seconds> {
        Seconds::parse("duration", s)
    }
}

text_serde!(Timestamp);
text_serde!(Seconds);

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microseconds: exact, so a time printed by one
    /// command can be given to `--at` of another and mean the same instant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(US);
        let us = self.0.rem_euclid(US);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
            t / 3600,
            t % 3600 / 60,
            t % 60
        )
    }
}

/// A duration in whole seconds, written like `0`, `90s`, `15m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn parse(field: &str, text: &str) -> Result<Seconds> {
        let t = text.trim();
        let bad = || {
            Error::invalid(
                field,
                text,
                "a duration is a whole number with an optional unit s, m, h or d (e.g. 0, 90s, 15m, 1h, 7d), at most 10 years",
            )
        };
        let (n, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, "s"),
        };
        let n: u64 = num(n).and_then(|v| u64::try_from(v).ok()).ok_or_else(bad)?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let secs = n.checked_mul(mult).ok_or_else(bad)?;
        if secs > 10 * 366 * 86_400 {
            return Err(bad());
        }
        Ok(Seconds(secs))
    }

    pub fn micros(self) -> i64 {
        // Bounded to 10 years by `parse`, far inside i64 microseconds.
        i64::try_from(self.0).unwrap_or(i64::MAX / US) * US
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s == 0 {
            write!(f, "0s")
        } else if s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> i64 {
        Timestamp::parse("at", s).unwrap().0
    }

    #[test]
    fn parses_the_forms_operators_type() {
        let t = p("2026-05-03T14:00:00Z");
        assert_eq!(p("2026-05-03 14:00"), t);
        assert_eq!(p("2026-05-03T16:00:00+02:00"), t);
        assert_eq!(p("2026-05-03T14:00:00.5Z"), t + 500_000);
        assert_eq!(p("2026-05-03"), t - 14 * 3600 * US);
        assert_eq!(p("1970-01-01T00:00:00Z"), 0);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-05-03T25:00",
            "2026-05-03T14:00:00+0200",
            "2026-5-3",
        ] {
            assert!(Timestamp::parse("at", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(Seconds::parse("c", "0").unwrap(), Seconds(0));
        assert_eq!(Seconds::parse("c", "90s").unwrap(), Seconds(90));
        assert_eq!(Seconds::parse("c", "1h").unwrap().to_string(), "1h");
        assert!(Seconds::parse("c", "-1").is_err());
        assert!(Seconds::parse("c", "1w").is_err());
        assert!(Seconds::parse("c", "99999999999999999999").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(us in -2_000_000_000_000_000i64..8_000_000_000_000_000i64) {
            let t = Timestamp(us);
            prop_assert_eq!(Timestamp::parse("at", &t.to_string()).unwrap(), t);
        }
    }
}
