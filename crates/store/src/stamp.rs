//! Time stamps: the input forms of rest spec 1.9 and the ISO output form.
//!
//! Hand-written rather than a date crate because the accepted grammar is
//! narrow and exact (seconds-or-milliseconds threshold, fraction rules,
//! offsets), and only UTC civil-date arithmetic is needed.

use crate::json::Num;
use serde_json::Value;

/// Bare numbers below this are seconds, at or above it milliseconds (2100-01-01 in seconds).
pub const SECONDS_THRESHOLD: i64 = 4_102_444_800;
/// Last millisecond of year 9999, the largest stamp accepted.
pub const MAX_STAMP_MS: i64 = 253_402_300_799_999;

/// Reads a JSON stamp value (integer, fractional number or ISO 8601 text) as epoch ms.
///
/// ```
/// assert_eq!(store::stamp::parse_stamp_value(&serde_json::json!(1709640000)), Ok(1709640000000));
/// ```
pub fn parse_stamp_value(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => stamp_from_number(Num::I(i)),
            (None, Some(u)) => stamp_from_number(Num::U(u)),
            _ => stamp_from_number(Num::F(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => stamp_from_text(s),
        other => Err(format!("{} is not a valid stamp", json_kind(other))),
    }
}

/// Reads a numeric stamp: seconds below [`SECONDS_THRESHOLD`], else milliseconds.
pub fn stamp_from_number(n: Num) -> Result<i64, String> {
    let ms = match n {
        Num::I(i) if i < 0 => return Err(format!("{i} is negative")),
        Num::I(i) if i < SECONDS_THRESHOLD => i * 1000,
        Num::I(i) => i,
        Num::U(u) => return Err(format!("{u} is beyond year 9999")),
        Num::F(f) if !f.is_finite() || f < 0.0 => return Err(format!("{f} is not a valid stamp")),
        Num::F(f) if f < SECONDS_THRESHOLD as f64 => (f * 1000.0).trunc() as i64,
        Num::F(f) if f <= MAX_STAMP_MS as f64 => f.trunc() as i64,
        Num::F(f) => return Err(format!("{f} is beyond year 9999")),
    };
    if ms > MAX_STAMP_MS {
        return Err(format!("{ms} is beyond year 9999"));
    }
    Ok(ms)
}

/// Reads an ISO 8601 stamp.
pub fn stamp_from_text(s: &str) -> Result<i64, String> {
    parse_iso8601(s)
        .ok_or_else(|| format!("'{s}' is not epoch seconds, epoch milliseconds or ISO 8601"))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|z|±HH:MM|±HHMM]` as epoch ms (UTC when no zone).
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month as u32) as i64 {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        // A fraction of a second, kept to the millisecond (".5" is 500 ms).
        for (i, c) in frac[..n.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let total = h * 60 + m;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    let ms = secs * 1000 + millis;
    (0..=MAX_STAMP_MS).contains(&ms).then_some(ms)
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (the fraction only when non-zero).
///
/// ```
/// assert_eq!(store::stamp::format_iso8601(1709539200000), "2024-03-04T08:00:00Z");
/// assert_eq!(store::stamp::format_iso8601(1710064834567), "2024-03-10T10:00:34.567Z");
/// ```
pub fn format_iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_follow_the_seconds_threshold() {
        assert_eq!(parse_stamp_value(&json!(1709640000)), Ok(1_709_640_000_000));
        assert_eq!(
            parse_stamp_value(&json!(1709640000000i64)),
            Ok(1_709_640_000_000)
        );
        assert_eq!(
            parse_stamp_value(&json!(1709640000.25)),
            Ok(1_709_640_000_250)
        );
        assert!(parse_stamp_value(&json!(-1)).is_err());
        assert!(parse_stamp_value(&json!(true)).is_err());
    }

    #[test]
    fn iso_forms() {
        assert_eq!(
            parse_iso8601("2024-03-09T18:30:00+01:00"),
            Some(1_710_005_400_000)
        );
        assert_eq!(
            parse_iso8601("2024-03-09T18:30:00+0100"),
            Some(1_710_005_400_000)
        );
        assert_eq!(
            parse_iso8601("2024-03-09 17:30:00"),
            Some(1_710_005_400_000)
        );
        assert_eq!(
            parse_iso8601("2024-03-09T17:30:00.5Z"),
            Some(1_710_005_400_500)
        );
        assert_eq!(
            parse_iso8601("2024-03-09T17:30:00.123456789z"),
            Some(1_710_005_400_123)
        );
        assert_eq!(parse_iso8601("2024-03-09"), None);
        assert_eq!(parse_iso8601("2023-02-29T00:00:00Z"), None);
        assert_eq!(
            parse_iso8601("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_iso8601("2024-03-09T17:30:00.Z"), None);
    }

    #[test]
    fn format_round_trips() {
        for ms in [
            0,
            1_709_539_200_000,
            1_710_064_834_567,
            MAX_STAMP_MS,
            951_782_400_000,
        ] {
            assert_eq!(parse_iso8601(&format_iso8601(ms)), Some(ms));
        }
    }
}
