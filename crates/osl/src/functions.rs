//! Built-in functions and variables (§9): the name table with arities,
//! and the pure implementations (numbers, time, conversions, url_decode).
//! Functions that need the customer or the run (now, cursor, get_row,
//! debug, segment math...) are evaluated in `interp.rs`.

use crate::value::{set_insert, DictMap, Key, SetMap, Value};
use std::sync::Arc;

/// A built-in function or variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Func {
    Now,
    Cursor,
    RowCount,
    FirstStamp,
    LastStamp,
    SessionCount,
    Round,
    Trunc,
    Bucket,
    Fix,
    Iso8601ToStamp,
    ToSeconds,
    ToMinutes,
    ToHours,
    ToDays,
    ToWeeks,
    GetSecond,
    GetMinute,
    GetHour,
    GetDayOfWeek,
    GetDayOfMonth,
    GetDayOfYear,
    GetMonth,
    GetQuarter,
    GetYear,
    StartOfSecond,
    StartOfMinute,
    StartOfHour,
    StartOfDay,
    StartOfWeek,
    StartOfMonth,
    StartOfQuarter,
    StartOfYear,
    Int,
    Float,
    Str,
    Len,
    Keys,
    Set,
    List,
    Dict,
    Range,
    UrlDecode,
    GetRow,
    Log,
    Debug,
    Population,
    Intersection,
    Union,
    Difference,
    Compliment,
}

/// (name, function, min args, max args; `usize::MAX` = variadic)
const TABLE: &[(&str, Func, usize, usize)] = &[
    ("now", Func::Now, 0, 0),
    ("cursor", Func::Cursor, 0, 0),
    ("row_count", Func::RowCount, 0, 0),
    ("first_stamp", Func::FirstStamp, 0, 0),
    ("last_stamp", Func::LastStamp, 0, 0),
    ("session_count", Func::SessionCount, 0, 0),
    ("round", Func::Round, 1, 2),
    ("trunc", Func::Trunc, 1, 1),
    ("bucket", Func::Bucket, 2, 2),
    ("fix", Func::Fix, 2, 2),
    ("iso8601_to_stamp", Func::Iso8601ToStamp, 1, 1),
    ("to_seconds", Func::ToSeconds, 1, 1),
    ("to_minutes", Func::ToMinutes, 1, 1),
    ("to_hours", Func::ToHours, 1, 1),
    ("to_days", Func::ToDays, 1, 1),
    ("to_weeks", Func::ToWeeks, 1, 1),
    ("get_second", Func::GetSecond, 1, 1),
    ("get_minute", Func::GetMinute, 1, 1),
    ("get_hour", Func::GetHour, 1, 1),
    ("get_day_of_week", Func::GetDayOfWeek, 1, 1),
    ("get_day_of_month", Func::GetDayOfMonth, 1, 1),
    ("get_day_of_year", Func::GetDayOfYear, 1, 1),
    ("get_month", Func::GetMonth, 1, 1),
    ("get_quarter", Func::GetQuarter, 1, 1),
    ("get_year", Func::GetYear, 1, 1),
    ("start_of_second", Func::StartOfSecond, 1, 1),
    ("start_of_minute", Func::StartOfMinute, 1, 1),
    ("start_of_hour", Func::StartOfHour, 1, 1),
    ("start_of_day", Func::StartOfDay, 1, 1),
    ("date_day", Func::StartOfDay, 1, 1),
    ("start_of_week", Func::StartOfWeek, 1, 1),
    ("start_of_month", Func::StartOfMonth, 1, 1),
    ("start_of_quarter", Func::StartOfQuarter, 1, 1),
    ("start_of_year", Func::StartOfYear, 1, 1),
    ("int", Func::Int, 1, 1),
    ("float", Func::Float, 1, 1),
    ("str", Func::Str, 1, 1),
    ("len", Func::Len, 1, 1),
    ("keys", Func::Keys, 1, 1),
    ("set", Func::Set, 0, usize::MAX),
    ("list", Func::List, 0, usize::MAX),
    ("dict", Func::Dict, 0, 0),
    ("range", Func::Range, 1, 3),
    ("url_decode", Func::UrlDecode, 1, 1),
    ("get_row", Func::GetRow, 1, 1),
    ("log", Func::Log, 0, usize::MAX),
    ("debug", Func::Debug, 1, 1),
    ("population", Func::Population, 1, 1),
    ("intersection", Func::Intersection, 2, 2),
    ("union", Func::Union, 2, 2),
    ("difference", Func::Difference, 2, 2),
    ("compliment", Func::Compliment, 1, 1),
    ("complement", Func::Compliment, 1, 1),
];

impl Func {
    /// Looks a built-in up by name.
    pub fn lookup(name: &str) -> Option<Func> {
        TABLE.iter().find(|e| e.0 == name).map(|e| e.1)
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        TABLE.iter().find(|e| e.1 == self).map_or("?", |e| e.0)
    }

    /// (min, max) argument count.
    pub fn arity(self) -> (usize, usize) {
        TABLE
            .iter()
            .find(|e| e.1 == self)
            .map_or((0, 0), |e| (e.2, e.3))
    }

    /// True for the built-in variables usable without parentheses.
    pub fn is_variable(self) -> bool {
        self.arity() == (0, 0) && !matches!(self, Func::Dict)
    }
}

/// Milliseconds per day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (y, m, d) of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
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

fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(part).ok()?.parse().ok()
}

/// Parses ISO-8601 `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM|±HHMM]` to epoch ms.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    let y = digits(s, 0, 4)?;
    if s.get(4) != Some(&b'-')
        || s.get(7) != Some(&b'-')
        || !matches!(s.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let mo = digits(s, 5, 2)?;
    let d = digits(s, 8, 2)?;
    let h = digits(s, 11, 2)?;
    let mi = digits(s, 14, 2)?;
    let se = digits(s, 17, 2)?;
    if s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        let mut frac = digits(s, start, n.min(3))?;
        for _ in n.min(3)..3 {
            frac *= 10;
        }
        ms = frac;
    }
    let mut offset_min = 0i64;
    match s.get(i) {
        None => {}
        Some(b'Z' | b'z') => {
            i += 1;
        }
        Some(sign @ (b'+' | b'-')) => {
            let neg = *sign == b'-';
            let oh = digits(s, i + 1, 2)?;
            let om = if s.get(i + 3) == Some(&b':') {
                i += 6;
                digits(s, i - 2, 2)?
            } else {
                i += 5;
                digits(s, i - 2, 2)?
            };
            offset_min = oh * 60 + om;
            if neg {
                offset_min = -offset_min;
            }
        }
        Some(_) => return None,
    }
    if i != s.len() {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * DAY_MS + ((h * 60 + mi) * 60 + se) * 1000 + ms - offset_min * 60_000)
}

/// A text that is neither ISO-8601 nor numeric (or a container) used as a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTimestamp;

/// Timestamp conversion of §9.3: `Ok(None)` for nil; `Err` for text that
/// is neither ISO-8601 nor numeric.
pub fn to_stamp(v: &Value) -> Result<Option<i64>, BadTimestamp> {
    let heuristic = |n: i64| {
        if n < 4_102_444_800 {
            n.saturating_mul(1000)
        } else {
            n
        }
    };
    match v {
        Value::Nil => Ok(None),
        Value::Int(i) => Ok(Some(heuristic(*i))),
        Value::Bool(b) => Ok(Some(heuristic(i64::from(*b)))),
        Value::Float(f) if f.is_finite() => Ok(Some(heuristic(*f as i64))),
        Value::Float(_) => Ok(None),
        Value::Text(t) => {
            if let Some(ms) = parse_iso8601(t) {
                Ok(Some(ms))
            } else if let Some(n) = crate::value::numeric_text(t) {
                Ok(Some(heuristic(n as i64)))
            } else {
                Err(BadTimestamp)
            }
        }
        _ => Err(BadTimestamp),
    }
}

fn round_half_away(x: f64) -> f64 {
    x.round()
}

/// `fix(x, p)` (§9.2.2).
pub fn fix(x: f64, p: i64) -> String {
    let p = p.clamp(0, 10) as usize;
    let scaled = round_half_away(x.abs() * 10f64.powi(p as i32));
    if !scaled.is_finite() || scaled > 1e30 {
        return crate::value::format_float(x);
    }
    let r = scaled as u128;
    let mut digits = r.to_string();
    while digits.len() < p + 1 {
        digits.insert(0, '0');
    }
    if p > 0 {
        digits.insert(digits.len() - p, '.');
    }
    if x < 0.0 && r != 0 {
        digits.insert(0, '-');
    }
    digits
}

/// `bucket(x, size)` (§9.2.1).
pub fn bucket(x: &Value, size: &Value) -> Value {
    let (Some(xf), Some(sf)) = (x.as_number(), size.as_number()) else {
        return Value::Nil;
    };
    if sf <= 0.0 || !sf.is_finite() || !xf.is_finite() {
        return Value::Nil;
    }
    let q = (xf / sf + 1e-9).floor();
    if matches!(x, Value::Int(_)) && sf.fract() == 0.0 && sf >= 1.0 {
        let r = q * sf;
        if r.abs() < 9.2e18 {
            return Value::Int(r as i64);
        }
    }
    let r = q * sf;
    Value::Float((r * 1e10).round() / 1e10)
}

fn time_parts(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let h = in_day / 3_600_000;
    let mi = (in_day / 60_000) % 60;
    let s = (in_day / 1000) % 60;
    (y, m, d, h, mi, s, days)
}

/// The calendar functions of §9.3 applied to an epoch-ms stamp.
pub fn time_func(f: Func, ms: i64) -> Option<i64> {
    let (y, m, d, h, mi, s, days) = time_parts(ms);
    Some(match f {
        Func::GetSecond => s,
        Func::GetMinute => mi,
        Func::GetHour => h,
        // 1970-01-01 was a Thursday (Sunday = 1 => Thursday = 5).
        Func::GetDayOfWeek => (days + 4).rem_euclid(7) + 1,
        Func::GetDayOfMonth => d,
        Func::GetDayOfYear => days - days_from_civil(y, 1, 1) + 1,
        Func::GetMonth => m,
        Func::GetQuarter => (m - 1) / 3 + 1,
        Func::GetYear => y,
        Func::StartOfSecond => ms - ms.rem_euclid(1000),
        Func::StartOfMinute => ms - ms.rem_euclid(60_000),
        Func::StartOfHour => ms - ms.rem_euclid(3_600_000),
        Func::StartOfDay => days * DAY_MS,
        Func::StartOfWeek => (days - (days + 4).rem_euclid(7)) * DAY_MS,
        Func::StartOfMonth => days_from_civil(y, m, 1) * DAY_MS,
        Func::StartOfQuarter => days_from_civil(y, (m - 1) / 3 * 3 + 1, 1) * DAY_MS,
        Func::StartOfYear => days_from_civil(y, 1, 1) * DAY_MS,
        _ => return None,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn dict_put(d: &mut DictMap, k: &str, v: Value) {
    let key = Value::text(k);
    if let Some(h) = Key::of(&key) {
        d.insert(h, (key, v));
    }
}

/// `url_decode(text)` (§9.6).
pub fn url_decode(t: &str) -> Value {
    let (host, rest) = match t.find("//") {
        Some(i) => {
            let after = &t[i + 2..];
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Value::text(&after[..end]), &after[end..])
        }
        None => (Value::Nil, t),
    };
    let (path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut params = DictMap::new();
    if let Some(q) = query {
        for piece in q.split('&').filter(|p| !p.is_empty()) {
            match piece.split_once('=') {
                Some((k, v)) => dict_put(
                    &mut params,
                    &percent_decode(k),
                    Value::text(&percent_decode(v)),
                ),
                None => dict_put(&mut params, &percent_decode(piece), Value::Bool(true)),
            }
        }
    }
    let mut d = DictMap::new();
    dict_put(&mut d, "host", host);
    dict_put(&mut d, "path", Value::text(path));
    dict_put(&mut d, "query", query.map_or(Value::Nil, Value::text));
    dict_put(&mut d, "params", Value::Dict(Arc::new(params)));
    Value::Dict(Arc::new(d))
}

/// Most elements `range()` may build (guards memory against a script).
pub const MAX_RANGE: i64 = 10_000_000;

/// `range(...)` with Python semantics.
pub fn range(args: &[Value]) -> Result<Value, String> {
    let ints: Vec<Option<i64>> = args
        .iter()
        .map(|a| match a.to_int() {
            Value::Int(i) => Some(i),
            _ => None,
        })
        .collect();
    if ints.iter().any(Option::is_none) {
        return Ok(Value::Nil);
    }
    let n: Vec<i64> = ints.into_iter().flatten().collect();
    let (start, stop, step) = match n.as_slice() {
        [stop] => (0, *stop, 1),
        [start, stop] => (*start, *stop, 1),
        [start, stop, step] => (*start, *stop, *step),
        _ => return Ok(Value::Nil),
    };
    if step == 0 {
        return Err("range() step must not be zero".into());
    }
    let count = if step > 0 {
        (i128::from(stop) - i128::from(start) + i128::from(step) - 1) / i128::from(step)
    } else {
        (i128::from(start) - i128::from(stop) - i128::from(step) - 1) / -i128::from(step)
    }
    .max(0);
    if count > i128::from(MAX_RANGE) {
        return Err(format!(
            "range() would produce more than {MAX_RANGE} elements"
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut v = start;
    for _ in 0..count {
        out.push(Value::Int(v));
        v = v.saturating_add(step);
    }
    Ok(Value::list(out))
}

/// Evaluates the pure functions; `None` means "not a pure function".
pub fn call_pure(f: Func, args: &[Value]) -> Option<Result<Value, String>> {
    let a0 = args.first().cloned().unwrap_or_default();
    let a1 = args.get(1).cloned().unwrap_or_default();
    let nil_in = args.iter().any(Value::is_nil);
    Some(Ok(match f {
        Func::Int => a0.to_int(),
        Func::Float => a0.to_float(),
        Func::Str => Value::text(&a0.to_text()),
        Func::Len => Value::Int(match &a0 {
            Value::Text(t) => t.chars().count() as i64,
            Value::List(l) => l.len() as i64,
            Value::Set(s) => s.len() as i64,
            Value::Dict(d) => d.len() as i64,
            _ => 0,
        }),
        Func::Keys => match &a0 {
            Value::Dict(d) => Value::list(d.values().map(|(k, _)| k.clone()).collect()),
            _ => return Some(Err("keys can only be performed on dict types".into())),
        },
        Func::List => {
            if args
                .iter()
                .any(|a| crate::value::nested_deeper_than(a, crate::value::MAX_VALUE_DEPTH - 1))
            {
                return Some(Err(crate::value::TOO_DEEP.into()));
            }
            Value::list(args.to_vec())
        }
        Func::Set => {
            let mut m = SetMap::new();
            for v in args.iter().filter(|v| !v.is_nil()) {
                if let Err(e) = set_insert(&mut m, v.clone()) {
                    return Some(Err(e));
                }
            }
            Value::Set(Arc::new(m))
        }
        Func::Dict => Value::Dict(Arc::default()),
        Func::Range => return Some(range(args)),
        _ if nil_in => Value::Nil,
        Func::Round => {
            let Some(x) = a0.to_float().as_number() else {
                return Some(Ok(Value::Nil));
            };
            if args.len() == 1 {
                let r = round_half_away(x);
                if r.is_finite() && r.abs() < 9.2e18 {
                    Value::Int(r as i64)
                } else {
                    Value::Nil
                }
            } else {
                let p = match a1.to_int() {
                    Value::Int(p) => p.clamp(-300, 300) as i32,
                    _ => 0,
                };
                let m = 10f64.powi(p);
                Value::Float(round_half_away(x * m) / m)
            }
        }
        Func::Trunc => a0.to_int(),
        Func::Bucket => bucket(&a0, &a1),
        Func::Fix => {
            let x = a0.to_float().as_number().unwrap_or(0.0);
            let p = match a1.to_int() {
                Value::Int(p) => p,
                _ => 0,
            };
            Value::text(&fix(x, p))
        }
        Func::Iso8601ToStamp => match &a0 {
            Value::Text(t) => parse_iso8601(t).map_or(Value::Nil, Value::Int),
            _ => Value::Nil,
        },
        Func::ToSeconds | Func::ToMinutes | Func::ToHours | Func::ToDays | Func::ToWeeks => {
            let div = match f {
                Func::ToSeconds => 1_000.0,
                Func::ToMinutes => 60_000.0,
                Func::ToHours => 3_600_000.0,
                Func::ToDays => 86_400_000.0,
                _ => 604_800_000.0,
            };
            match &a0 {
                Value::Int(i) => Value::Int(i / div as i64),
                other => match other.to_float().as_number() {
                    Some(x) if x.is_finite() => Value::Int((x / div).trunc() as i64),
                    _ => Value::Nil,
                },
            }
        }
        Func::UrlDecode => match &a0 {
            Value::Text(t) => url_decode(t),
            _ => Value::Nil,
        },
        _ => time_func_value(f, &a0)?,
    }))
}

fn time_func_value(f: Func, a: &Value) -> Option<Value> {
    // Probe that it is a time function at all.
    time_func(f, 0)?;
    Some(match to_stamp(a) {
        Ok(Some(ms)) => time_func(f, ms).map_or(Value::Nil, Value::Int),
        _ => Value::Nil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: Func, args: &[Value]) -> Value {
        call_pure(f, args)
            .and_then(Result::ok)
            .unwrap_or(Value::text("<none>"))
    }

    fn f(x: f64) -> Value {
        Value::Float(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn ms(iso: &str) -> i64 {
        parse_iso8601(iso).unwrap_or(i64::MIN)
    }

    #[test]
    fn rounding_suite_values() {
        assert_eq!(call(Func::Round, &[f(33.544), i(2)]).to_literal(), "33.54");
        assert_eq!(call(Func::Round, &[f(8.3854), i(2)]).to_literal(), "8.39");
        assert_eq!(call(Func::Round, &[f(12.4912), i(2)]).to_literal(), "12.49");
        assert_eq!(call(Func::Round, &[f(5.545), i(2)]).to_literal(), "5.55");
        assert_eq!(call(Func::Round, &[f(2.5)]).to_literal(), "3");
        assert_eq!(call(Func::Round, &[f(-2.5)]).to_literal(), "-3");
        assert_eq!(
            call(Func::Round, &[f(1234.5), i(-2)]).to_literal(),
            "1200.0"
        );
        assert_eq!(call(Func::Round, &[Value::Nil]).to_literal(), "nil");
    }

    #[test]
    fn bucket_suite_values() {
        let b = |x: Value, s: Value| bucket(&x, &s).to_literal();
        assert_eq!(b(i(513), i(25)), "500");
        assert_eq!(b(i(525), i(25)), "525");
        assert_eq!(b(i(551), i(25)), "550");
        assert_eq!(b(i(527), i(25)), "525");
        assert_eq!(b(f(5.11), f(0.25)), "5.0");
        assert_eq!(b(f(5.25), f(0.25)), "5.25");
        assert_eq!(b(f(5.51), f(0.25)), "5.5");
        assert_eq!(b(f(0.3), f(0.1)), "0.3");
        assert_eq!(b(i(-3), i(5)), "-5");
        assert_eq!(b(i(3), i(0)), "nil");
    }

    #[test]
    fn fix_suite_values() {
        assert_eq!(fix(0.01111, 2), "0.01");
        assert_eq!(fix(0.015, 2), "0.02");
        assert_eq!(fix(1234.5678, 2), "1234.57");
        assert_eq!(fix(1234.5678, 0), "1235");
        assert_eq!(fix(-0.015, 2), "-0.02");
        assert_eq!(fix(-1234.5678, 2), "-1234.57");
        assert_eq!(fix(-0.001, 2), "0.00");
    }

    #[test]
    fn calendar() {
        let row1 = ms("2024-03-01T10:05:00Z");
        assert_eq!(time_func(Func::GetDayOfWeek, row1), Some(6));
        assert_eq!(time_func(Func::GetQuarter, row1), Some(1));
        assert_eq!(
            time_func(Func::StartOfWeek, row1),
            Some(ms("2024-02-25T00:00:00Z"))
        );
        assert_eq!(
            time_func(Func::StartOfMonth, row1),
            Some(ms("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            time_func(Func::StartOfQuarter, ms("2024-05-17T03:00:00Z")),
            Some(ms("2024-04-01T00:00:00Z"))
        );
        assert_eq!(time_func(Func::GetYear, row1), Some(2024));
        assert_eq!(
            time_func(Func::GetDayOfYear, ms("2024-12-31T00:00:00Z")),
            Some(366)
        );
        assert_eq!(
            call(Func::GetYear, &[i(1_709_287_500)]).to_literal(),
            "2024"
        );
        assert_eq!(
            call(Func::GetMonth, &[Value::text("2024-03-09T18:30:00Z")]).to_literal(),
            "3"
        );
        let d = ms("2024-03-09T18:30:00Z") - ms("2024-03-01T10:00:00Z");
        assert_eq!(call(Func::ToHours, &[i(d)]).to_literal(), "200");
        assert_eq!(
            call(Func::ToDays, &[f(1.9 * 86_400_000.0)]).to_literal(),
            "1"
        );
    }

    #[test]
    fn iso_forms() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_iso8601("1970-01-01 00:00:01.5"), Some(1500));
        assert_eq!(parse_iso8601("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00-0100"), Some(3_600_000));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00.123456789Z"), Some(123));
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_iso8601("2024-13-01T00:00:00Z"), None);
        assert_eq!(
            call(Func::Iso8601ToStamp, &[Value::text("x")]).to_literal(),
            "nil"
        );
    }

    #[test]
    fn url_decode_example() {
        let v = url_decode("https://shop.example/books/scifi?sort=new&gift&q=space+opera");
        let j = v.to_json();
        assert_eq!(j["host"], "shop.example");
        assert_eq!(j["path"], "/books/scifi");
        assert_eq!(j["query"], "sort=new&gift&q=space+opera");
        assert_eq!(j["params"]["sort"], "new");
        assert_eq!(j["params"]["gift"], true);
        assert_eq!(j["params"]["q"], "space opera");
        let j = url_decode("http://host.only").to_json();
        assert_eq!(j["host"], "host.only");
        assert_eq!(j["path"], "");
        assert!(j["query"].is_null());
        assert_eq!(url_decode("/a?x=%41%2").to_json()["params"]["x"], "A%2");
    }

    #[test]
    fn ranges_and_containers() {
        assert_eq!(call(Func::Range, &[i(3)]).to_literal(), "[0, 1, 2]");
        assert_eq!(
            call(Func::Range, &[i(5), i(0), i(-2)]).to_literal(),
            "[5, 3, 1]"
        );
        assert!(matches!(
            call_pure(Func::Range, &[i(0), i(3), i(0)]),
            Some(Err(_))
        ));
        assert!(matches!(
            call_pure(Func::Range, &[i(i64::MAX)]),
            Some(Err(_))
        ));
        assert_eq!(call(Func::Len, &[Value::text("héllo")]).to_literal(), "5");
        assert!(matches!(call_pure(Func::Keys, &[i(1)]), Some(Err(_))));
        assert_eq!(
            call(Func::Set, &[i(1), i(1), f(1.0)]).to_literal(),
            "set(1)"
        );
    }
}
