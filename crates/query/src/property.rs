//! The property query (rest spec 5.4): customers per value of one property,
//! answered from the partitions' indexes without visiting any row.

use crate::QueryError;
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use std::cmp::Ordering;
use store::index::EVENT_PROP;
use store::ingest::{double_to_fixed, fixed_to_double};
use store::schema::PropType;
use store::Db;

/// Which values to keep.
#[derive(Debug)]
pub enum Filter {
    /// Every value.
    All,
    /// v > x.
    Gt(f64),
    /// v ≥ x.
    Gte(f64),
    /// v < x.
    Lt(f64),
    /// v ≤ x.
    Lte(f64),
    /// x ≤ v < y.
    Between(f64, f64),
    /// v = x (the text as given; converted per the property's type).
    Eq(String),
    /// The whole value matches.
    Rx(regex::Regex),
    /// The value contains the text.
    Sub(String),
}

/// A property query's options.
#[derive(Debug)]
pub struct PropertyQuery {
    /// Value filter.
    pub filter: Filter,
    /// Bucket width for int and double properties.
    pub bucket: Option<f64>,
    /// Descending (default) or ascending.
    pub descending: bool,
    /// `sort=group`: order by value instead of count.
    pub by_value: bool,
    /// Keep the first N values.
    pub trim: Option<usize>,
    /// `segments=`: one count per selection (`c`, `c2`, ...); empty means everyone.
    pub segments: Vec<crate::event::Selection>,
}

impl PropertyQuery {
    /// Reads a property query's parameters (URL parameters, or a batch
    /// section's `key=value` pairs): at most one filter of gt, gte, lt, lte,
    /// eq, between (+ and), rx, sub; `bucket`, `order`, `sort=group`, `trim`.
    pub fn from_params(
        get: &dyn Fn(&str) -> Option<String>,
        segments: Vec<crate::event::Selection>,
    ) -> Result<PropertyQuery, QueryError> {
        let descending = match get("order").map(|o| o.to_ascii_lowercase()).as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(QueryError::BadParam(format!(
                    "order must be asc or desc; got '{other}'"
                )))
            }
        };
        let by_value = match get("sort").as_deref() {
            None => false,
            Some("group") => true,
            Some(other) => {
                return Err(QueryError::BadParam(format!(
                    "sort must be 'group' for a property query; got '{other}'"
                )))
            }
        };
        let bucket = match get("bucket") {
            None => None,
            Some(b) => Some(
                b.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|b| b.is_finite() && *b > 0.0)
                    .ok_or_else(|| {
                        QueryError::BadParam(format!("bucket must be a number above 0; got '{b}'"))
                    })?,
            ),
        };
        let trim = match get("trim") {
            None => None,
            Some(t) => {
                let n: i64 = t.trim().parse().map_err(|_| {
                    QueryError::BadParam(format!("trim must be an integer; got '{t}'"))
                })?;
                (n > 0).then_some(n as usize)
            }
        };
        Ok(PropertyQuery {
            filter: filter_of(get)?,
            bucket,
            descending,
            by_value,
            trim,
            segments,
        })
    }
}

fn filter_of(get: &dyn Fn(&str) -> Option<String>) -> Result<Filter, QueryError> {
    let given: Vec<&str> = ["gt", "gte", "lt", "lte", "eq", "between", "rx", "sub"]
        .into_iter()
        .filter(|k| get(k).is_some())
        .collect();
    if given.len() > 1 {
        return Err(bad("only one filter may be given"));
    }
    let Some(&kind) = given.first() else {
        return Ok(Filter::All);
    };
    let raw = get(kind).unwrap_or_default();
    if raw.is_empty() {
        return Err(bad("property filter requires a value"));
    }
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| bad(format!("filter value '{v}' is not a number")))
    };
    Ok(match kind {
        "gt" => Filter::Gt(number(&raw)?),
        "gte" => Filter::Gte(number(&raw)?),
        "lt" => Filter::Lt(number(&raw)?),
        "lte" => Filter::Lte(number(&raw)?),
        "between" => {
            let and = get("and")
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("property query using 'between' requires an 'and' param"))?;
            Filter::Between(number(&raw)?, number(&and)?)
        }
        "eq" => Filter::Eq(raw),
        "rx" => Filter::Rx(
            regex::Regex::new(&raw)
                .map_err(|_| bad(format!("could not compile regular express: {raw}")))?,
        ),
        _ => Filter::Sub(raw),
    })
}

/// A value as the answer shows it (the merge key across partitions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    /// Fixed point, 4 decimals.
    Fixed(i64),
    Bool(bool),
    Text(String),
}

impl Key {
    fn to_json(&self) -> Value {
        match self {
            Key::Int(i) => json!(i),
            Key::Fixed(f) => json!(fixed_to_double(*f)),
            Key::Bool(b) => json!(b),
            Key::Text(t) => json!(t),
        }
    }

    fn order(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Int(a), Key::Int(b)) | (Key::Fixed(a), Key::Fixed(b)) => a.cmp(b),
            (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
            (Key::Text(a), Key::Text(b)) => a
                .to_lowercase()
                .cmp(&b.to_lowercase())
                .then_with(|| a.cmp(b)),
            _ => Ordering::Equal,
        }
    }
}

fn bad(detail: impl Into<String>) -> QueryError {
    QueryError::Request {
        detail: detail.into(),
    }
}

/// Checks the filter against the property's type.
fn check(kind: PropType, q: &PropertyQuery) -> Result<(), QueryError> {
    let numeric = matches!(kind, PropType::Int | PropType::Double);
    match (&q.filter, kind) {
        (Filter::All | Filter::Eq(_), _) => {}
        (
            Filter::Gt(_) | Filter::Gte(_) | Filter::Lt(_) | Filter::Lte(_) | Filter::Between(..),
            k,
        ) if !matches!(k, PropType::Int | PropType::Double) => {
            return Err(bad(match k {
                PropType::Bool => "specified filter type not compatible with bool property",
                _ => "specified filter type not compatible with string property",
            }))
        }
        (Filter::Rx(_) | Filter::Sub(_), PropType::Int | PropType::Double) => {
            return Err(bad(
                "specified filter type not compatible with integer or double property",
            ))
        }
        (Filter::Rx(_) | Filter::Sub(_), PropType::Bool) => {
            return Err(bad(
                "specified filter type not compatible with bool property",
            ))
        }
        _ => {}
    }
    if q.bucket.is_some() && !numeric {
        return Err(bad("bucket applies only to int and double properties"));
    }
    if let Filter::Eq(x) = &q.filter {
        let ok = match kind {
            PropType::Int => x.trim().parse::<i64>().is_ok(),
            PropType::Double => x.trim().parse::<f64>().is_ok_and(f64::is_finite),
            PropType::Bool => matches!(x.as_str(), "true" | "false" | "1" | "0"),
            PropType::Text => true,
        };
        if !ok {
            return Err(bad(format!(
                "filter value '{x}' is not a valid {}",
                kind.name()
            )));
        }
    }
    Ok(())
}

/// The number a stored numeric cell stands for.
fn numeric(kind: PropType, raw: u64) -> f64 {
    match kind {
        PropType::Double => fixed_to_double(raw as i64),
        _ => raw as i64 as f64,
    }
}

fn keep(kind: PropType, q: &PropertyQuery, raw: u64, text: &str) -> bool {
    let v = || numeric(kind, raw);
    match &q.filter {
        Filter::All => true,
        Filter::Gt(x) => v() > *x,
        Filter::Gte(x) => v() >= *x,
        Filter::Lt(x) => v() < *x,
        Filter::Lte(x) => v() <= *x,
        Filter::Between(x, y) => *x <= v() && v() < *y,
        Filter::Eq(x) => match kind {
            PropType::Text => text == x,
            PropType::Int => x.trim().parse::<i64>().is_ok_and(|x| x == raw as i64),
            PropType::Double => x
                .trim()
                .parse::<f64>()
                .is_ok_and(|x| double_to_fixed(x) == raw as i64),
            PropType::Bool => matches!((x.as_str(), raw), ("true" | "1", 1) | ("false" | "0", 0)),
        },
        Filter::Rx(re) => re
            .find(text)
            .is_some_and(|m| m.start() == 0 && m.end() == text.len()),
        Filter::Sub(s) => text.contains(s.as_str()),
    }
}

/// The answer's key of a stored value (after bucketing).
fn key_of(kind: PropType, q: &PropertyQuery, raw: u64, text: &str) -> Key {
    match (kind, q.bucket) {
        (PropType::Text, _) => Key::Text(text.to_string()),
        (PropType::Bool, _) => Key::Bool(raw != 0),
        (PropType::Int, Some(b)) if b.fract() == 0.0 => {
            let b = b as i64;
            Key::Int((raw as i64).div_euclid(b) * b)
        }
        (PropType::Int, Some(b)) => {
            Key::Fixed(double_to_fixed(((raw as i64) as f64 / b).floor() * b))
        }
        (PropType::Int, None) => Key::Int(raw as i64),
        (PropType::Double, Some(b)) => Key::Fixed(double_to_fixed(
            (fixed_to_double(raw as i64) / b).floor() * b,
        )),
        (PropType::Double, None) => Key::Fixed(raw as i64),
    }
}

/// Runs a property query on `name` (a user property or `event`).
pub fn property_query(
    db: &Db,
    table: &str,
    name: &str,
    q: &PropertyQuery,
) -> Result<Value, QueryError> {
    let schema = db.table(table)?;
    let (prop, kind) = match name {
        "event" => (EVENT_PROP, PropType::Text),
        "stamp" | "id" | "session" => {
            return Err(bad(format!("'{name}' cannot be queried by value")))
        }
        _ => {
            let def = schema.property(name).ok_or(QueryError::PropertyNotFound)?;
            (def.id, def.kind)
        }
    };
    check(kind, q)?;
    let engine = db.engine()?;
    let everyone = [crate::event::Selection::Everyone];
    let sels = if q.segments.is_empty() {
        &everyone[..]
    } else {
        &q.segments[..]
    };
    type Acc = (Vec<u64>, FxHashMap<Key, Vec<u64>>);
    let partials = crate::parallel::for_each_partition(
        engine,
        schema.uid,
        || -> Acc { (vec![0u64; sels.len()], FxHashMap::default()) },
        |(totals, counts), _, tp| {
            let members: Vec<Option<RoaringBitmap>> = sels
                .iter()
                .map(|s| crate::event::selected(tp, s, None))
                .collect();
            let within = |b: &RoaringBitmap, i: usize| match &members[i] {
                None => b.len(),
                Some(m) => b.intersection_len(m),
            };
            let any = tp.index.any_value(prop);
            for (i, t) in totals.iter_mut().enumerate() {
                *t += within(&any, i);
            }
            let mut add = |key: Key, b: &RoaringBitmap| {
                let c = counts.entry(key).or_insert_with(|| vec![0; sels.len()]);
                for (i, n) in c.iter_mut().enumerate() {
                    *n += within(b, i);
                }
            };
            if q.bucket.is_none() {
                // One key per stored value: count each bitmap as it is.
                for (raw, customers) in tp.index.values(prop) {
                    let text = if kind == PropType::Text {
                        tp.dict.text(raw as u32)
                    } else {
                        ""
                    };
                    if keep(kind, q, raw, text) {
                        add(key_of(kind, q, raw, text), customers);
                    }
                }
                return Ok(());
            }
            // Buckets: a customer counts once per bucket, so union first.
            let mut local: FxHashMap<Key, RoaringBitmap> = FxHashMap::default();
            for (raw, customers) in tp.index.values(prop) {
                let text = if kind == PropType::Text {
                    tp.dict.text(raw as u32)
                } else {
                    ""
                };
                if keep(kind, q, raw, text) {
                    *local.entry(key_of(kind, q, raw, text)).or_default() |= customers;
                }
            }
            for (k, b) in local {
                add(k, &b);
            }
            Ok(())
        },
    )?;
    let mut totals = vec![0u64; sels.len()];
    let mut counts: FxHashMap<Key, Vec<u64>> = FxHashMap::default();
    for (t, c) in partials {
        for (i, n) in t.into_iter().enumerate() {
            totals[i] += n;
        }
        for (k, v) in c {
            let e = counts.entry(k).or_insert_with(|| vec![0; sels.len()]);
            for (i, n) in v.into_iter().enumerate() {
                e[i] += n;
            }
        }
    }
    let mut values: Vec<(Key, Vec<u64>)> = counts
        .into_iter()
        .filter(|(_, c)| c.iter().any(|&n| n > 0))
        .collect();
    values.sort_by(|(ka, ca), (kb, cb)| {
        let primary = if q.by_value {
            ka.order(kb)
        } else {
            ca[0].cmp(&cb[0])
        };
        let primary = if q.descending {
            primary.reverse()
        } else {
            primary
        };
        primary.then_with(|| ka.order(kb))
    });
    if let Some(n) = q.trim {
        values.truncate(n);
    }
    let branch = |g: Value, c: &[u64]| {
        let mut m = serde_json::Map::new();
        m.insert("g".into(), g);
        for (i, n) in c.iter().enumerate() {
            let key = if i == 0 {
                "c".to_string()
            } else {
                format!("c{}", i + 1)
            };
            m.insert(key, json!([n]));
        }
        m
    };
    let children: Vec<Value> = values
        .iter()
        .map(|(k, c)| Value::Object(branch(k.to_json(), c)))
        .collect();
    let mut root = branch(json!(name), &totals);
    root.insert("_".into(), Value::Array(children));
    Ok(json!({"_": [root]}))
}
