//! Event time: one UTC instant type and a parser for every timestamp shape
//! Salesforce and its forwarders emit.
//!
//! Shapes accepted (see the reference's §0.3):
//! - ISO 8601 / RFC 3339 with `Z`, `+00:00`, `+0000` or `+00`, or no zone (UTC),
//!   `T` or a space between date and time, 0–9 fraction digits
//!   (`2024-07-08T07:26:18.239+0000`, `2021-10-19T11:47:22Z`);
//! - ELF `TIMESTAMP`, `yyyyMMddHHmmss[.SSS]` in GMT (`20231218054831.655`);
//! - epoch numbers (Pub/Sub Avro `long`), as JSON numbers or digit strings:
//!   values of 10^11 or more are milliseconds, smaller ones seconds.
//!
//! The parser is hand-written because chrono's format-string parsing is the
//! single largest cost of a naive decoder and has to try six formats in turn.

use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC. All state and windows use it; the
/// wall clock is never read by the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(pub i64);

pub const MS_PER_MINUTE: i64 = 60_000;
pub const MS_PER_HOUR: i64 = 3_600_000;
pub const MS_PER_DAY: i64 = 86_400_000;

/// Earliest and latest instants accepted: years 1970 to 9999.
const MIN_MS: i64 = 0;
const MAX_MS: i64 = 253_402_300_799_999;

impl EventTime {
    /// Sorts before every real event; used for inventory baselines.
    pub const BEGINNING: EventTime = EventTime(i64::MIN);

    /// Parses an ISO timestamp (the tests' way to write a time).
    #[cfg(test)]
    pub(crate) fn from_rfc3339(s: &str) -> Option<EventTime> {
        parse_timestamp(s)
    }

    /// The UTC day number, used in alert ids.
    pub fn utc_day(self) -> i64 {
        self.0.div_euclid(MS_PER_DAY)
    }

    /// First instant of the next UTC day.
    pub fn next_day_start(self) -> EventTime {
        EventTime((self.utc_day() + 1) * MS_PER_DAY)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    /// `YYYY-MM-DD` of the UTC day.
    pub fn day_string(self) -> String {
        if !(MIN_MS..=MAX_MS).contains(&self.0) {
            return self.to_datetime().format("%Y-%m-%d").to_string();
        }
        // Every grant's alert id holds its day: computed by hand, not through
        // chrono's strftime machinery.
        let (y, m, d) = civil_from_days(self.utc_day());
        let digit = |n: i64| char::from(b'0' + (n % 10) as u8);
        let mut s = String::with_capacity(10);
        for x in [y / 1000, y / 100, y / 10, y] {
            s.push(digit(x));
        }
        s.push('-');
        s.extend([digit(m / 10), digit(m)]);
        s.push('-');
        s.extend([digit(d / 10), digit(d)]);
        s
    }

    pub fn plus(self, ms: i64) -> EventTime {
        EventTime(self.0.saturating_add(ms))
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 UTC with milliseconds, e.g. `2023-12-18T05:48:31.655Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

/// Parses any accepted shape; `None` when the text is not a valid instant.
pub fn parse_timestamp(s: &str) -> Option<EventTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' {
        return parse_iso(b);
    }
    let digits_end = b.iter().position(|c| !c.is_ascii_digit()).unwrap_or(b.len());
    if digits_end == 14 && (b.len() == 14 || b[14] == b'.') {
        return parse_elf(b);
    }
    parse_epoch(s)
}

/// Epoch seconds or milliseconds, as a JSON number literal or digit string.
pub fn parse_epoch(s: &str) -> Option<EventTime> {
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let ms = if v >= 1e11 { v } else { v * 1000.0 };
    let ms = ms.round() as i64;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(EventTime(ms))
}

fn num(b: &[u8], start: usize, len: usize) -> Option<i64> {
    let part = b.get(start..start + len)?;
    let mut v = 0i64;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses `.SSS…` at `i`; returns (millis, index after the fraction).
fn fraction(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    if b.get(i) != Some(&b'.') && b.get(i) != Some(&b',') {
        return Some((0, i));
    }
    i += 1;
    let start = i;
    let mut ms = 0i64;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if i - start < 3 {
            ms = ms * 10 + i64::from(c - b'0');
        }
        i += 1;
    }
    let n = i - start;
    if n == 0 || n > 9 {
        return None;
    }
    for _ in n..3 {
        ms *= 10;
    }
    Some((ms, i))
}

thread_local! {
    /// The last `YYYY-MM-DD` parsed on this thread and its day number: an
    /// archive's consecutive records nearly always share their date.
    static LAST_DATE: std::cell::Cell<([u8; 10], i64)> = const { std::cell::Cell::new(([0; 10], 0)) };
}

/// Days since the epoch of a valid `YYYY-MM-DD` prefix.
fn iso_date_days(b: &[u8]) -> Option<i64> {
    let date: [u8; 10] = b.get(..10)?.try_into().ok()?;
    let (last, days) = LAST_DATE.get();
    if date == last {
        return Some(days);
    }
    let (y, mo, d) = (num(b, 0, 4)?, num(b, 5, 2)?, num(b, 8, 2)?);
    if b[7] != b'-' {
        return None;
    }
    let days = date_days(y, mo, d)?;
    LAST_DATE.set((date, days));
    Some(days)
}

fn parse_iso(b: &[u8]) -> Option<EventTime> {
    let days = iso_date_days(b)?;
    if b.len() == 10 {
        return from_days(days, 0, 0, 0, 0, 0);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, mi) = (num(b, 11, 2)?, num(b, 14, 2)?);
    let (sec, i) = if b.get(16) == Some(&b':') { (num(b, 17, 2)?, 19) } else { (0, 16) };
    let (ms, mut i) = fraction(b, i)?;
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(b, i + 1, 2)?;
            i += 3;
            let om = if b.get(i) == Some(&b':') {
                i += 3;
                num(b, i - 2, 2)?
            } else if i < b.len() {
                i += 2;
                num(b, i - 2, 2)?
            } else {
                0
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if sign == b'+' {
                m
            } else {
                -m
            }
        }
        Some(_) => return None,
    };
    if i != b.len() {
        return None;
    }
    from_days(days, h, mi, sec, ms, offset_min)
}

fn parse_elf(b: &[u8]) -> Option<EventTime> {
    let (y, mo, d) = (num(b, 0, 4)?, num(b, 4, 2)?, num(b, 6, 2)?);
    let (h, mi, s) = (num(b, 8, 2)?, num(b, 10, 2)?, num(b, 12, 2)?);
    let (ms, i) = fraction(b, 14)?;
    if i != b.len() {
        return None;
    }
    from_days(date_days(y, mo, d)?, h, mi, s, ms, 0)
}

/// Days since the epoch of year `y`, month `mo`, day `d`, if that date exists.
fn date_days(y: i64, mo: i64, d: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo) && d >= 1 && d <= days_in_month(y, mo);
    valid.then(|| days_from_civil(y, mo, d))
}

/// The instant `h:mi:s.ms` at UTC offset `offset_min` on day `days` (a valid date).
fn from_days(days: i64, h: i64, mi: i64, s: i64, ms: i64, offset_min: i64) -> Option<EventTime> {
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let s = s.min(59); // a leap second folds into the minute's last second
    let t = ((days * 24 + h) * 60 + mi - offset_min) * 60_000 + s * 1000 + ms;
    (MIN_MS..=MAX_MS).contains(&t).then_some(EventTime(t))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of a day number; the inverse of `days_from_civil`
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        parse_timestamp(s).map(|t| t.to_string()).unwrap_or_else(|| "none".into())
    }

    #[test]
    fn the_day_is_chronos_day() {
        let chrono_day = |t: EventTime| t.to_datetime().format("%Y-%m-%d").to_string();
        let mut ms = MIN_MS;
        while ms <= MAX_MS {
            for t in [ms, ms + MS_PER_DAY - 1, ms.saturating_sub(1).max(MIN_MS)] {
                let t = EventTime(t.min(MAX_MS));
                assert_eq!(t.day_string(), chrono_day(t), "{}", t.0);
            }
            ms += 997 * MS_PER_DAY + 12_345;
        }
        for t in [EventTime(MAX_MS), EventTime::BEGINNING, EventTime(-1), EventTime(MAX_MS + 1)] {
            assert_eq!(t.day_string(), chrono_day(t), "{}", t.0);
        }
    }

    #[test]
    fn every_reference_shape() {
        assert_eq!(t("2024-07-08T07:26:18.239+0000"), "2024-07-08T07:26:18.239Z");
        assert_eq!(t("2021-10-19T11:47:22Z"), "2021-10-19T11:47:22.000Z");
        assert_eq!(t("2017-04-09T18:31:40.517Z"), "2017-04-09T18:31:40.517Z");
        assert_eq!(t("20231218054831.655"), "2023-12-18T05:48:31.655Z");
        assert_eq!(t("20220803011210"), "2022-08-03T01:12:10.000Z");
        assert_eq!(t("2023-12-18T05:48:31.655Z"), "2023-12-18T05:48:31.655Z");
        assert_eq!(t("2024-07-18T08:39:02.000+0000"), "2024-07-18T08:39:02.000Z");
        assert_eq!(t("1702878511655"), "2023-12-18T05:48:31.655Z");
        assert_eq!(t("1702878511"), "2023-12-18T05:48:31.000Z");
    }

    #[test]
    fn offsets_and_variants() {
        assert_eq!(t("2024-07-08T09:26:18.239+02:00"), "2024-07-08T07:26:18.239Z");
        assert_eq!(t("2024-07-08T02:26:18-0500"), "2024-07-08T07:26:18.000Z");
        assert_eq!(t("2024-07-08 07:26:18"), "2024-07-08T07:26:18.000Z");
        assert_eq!(t("2024-07-08T07:26:18.239123456Z"), "2024-07-08T07:26:18.239Z");
        assert_eq!(t("2024-07-08T07:26:18.2Z"), "2024-07-08T07:26:18.200Z");
        assert_eq!(t("2024-02-29"), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_remembered_date_checks_only_the_date() {
        assert_eq!(t("2024-07-08T07:26:18Z"), "2024-07-08T07:26:18.000Z");
        // Same date, so the memo answers for it; the rest is still checked.
        assert_eq!(t("2024-07-08T25:00:00Z"), "none");
        assert_eq!(t("2024-07-08Tjunk"), "none");
        assert_eq!(t("2024-07-08T23:59:59.999-01:00"), "2024-07-09T00:59:59.999Z");
        // A new date replaces it only when valid.
        assert_eq!(t("2023-02-29T00:00:00Z"), "none");
        assert_eq!(t("2023-02-28"), "2023-02-28T00:00:00.000Z");
        assert_eq!(t("2024-07-08"), "2024-07-08T00:00:00.000Z");
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "yesterday",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-07-08T25:00:00Z",
            "2024-07-08T07:26:18.Z",
            "2024-07-08T07:26:18Zjunk",
            "20231318054831.655",
            "-5",
            "NaN",
            "2024-07-08T07:26:18+99:00",
        ] {
            assert_eq!(t(s), "none", "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn agrees_with_chrono(ms in 0i64..253_402_300_799_999) {
            let s = EventTime(ms).to_string();
            proptest::prop_assert_eq!(parse_timestamp(&s), Some(EventTime(ms)));
            let salesforce = s.replace('Z', "+0000");
            proptest::prop_assert_eq!(parse_timestamp(&salesforce), Some(EventTime(ms)), "{}", salesforce);
        }
    }
}
