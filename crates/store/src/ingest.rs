//! Insert bodies: parsing JSON arrays and NDJSON, and validating every record
//! against a table schema (rest spec 4.1 to 4.7) before anything is written.

use crate::codec::{begin_entry, begin_record, put_prop, put_prop_count, KeyRef, ScalarRef};
use crate::json::{Num, Val};
use crate::record::{partition_of, CustomerKey};
use crate::schema::{
    is_reserved_property_name, valid_event_name, IdType, PropType, PropertyDef, TableSchema,
};
use crate::stamp::{stamp_from_number, stamp_from_text};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Longest text value, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Most members of one set value.
pub const MAX_SET_MEMBERS: usize = 1000;
/// Longest textual customer id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Most error entries listed in one answer.
pub const MAX_ERROR_ENTRIES: usize = 100;
/// Largest absolute double value accepted.
pub const MAX_DOUBLE: f64 = 9.2e14;

/// A body that could not be read as records at all.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyError {
    /// Human text.
    pub detail: String,
    /// 1-based line of a JSON syntax error.
    pub line: Option<usize>,
    /// 1-based column of a JSON syntax error.
    pub column: Option<usize>,
}

impl BodyError {
    fn plain(detail: &str) -> Self {
        BodyError {
            detail: detail.into(),
            line: None,
            column: None,
        }
    }
    fn json(prefix: &str, e: &serde_json::Error) -> Self {
        let text = e.to_string();
        // serde_json appends " at line L column C"; we report those as fields too.
        let msg = text.split(" at line ").next().unwrap_or(&text);
        BodyError {
            detail: format!("{prefix}{msg} at line {} column {}", e.line(), e.column()),
            line: Some(e.line()),
            column: Some(e.column()),
        }
    }
}

/// One raw record, borrowing from the body, and for NDJSON its 1-based line.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The JSON value as sent.
    pub value: Val<'a>,
    /// Line of NDJSON input.
    pub line: Option<usize>,
}

/// Splits a body into raw records: a JSON array, or a sequence of objects
/// (NDJSON) when `ndjson` is set or the body starts with `{`.
pub fn parse_body(body: &[u8], ndjson: bool) -> Result<Vec<RawRecord<'_>>, BodyError> {
    let start = body.iter().position(|c| !c.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(BodyError::plain("body is empty"));
    };
    if body[start] == b'[' && !ndjson {
        let values: Vec<Val> = serde_json::from_slice(body)
            .map_err(|e| BodyError::json("body is not valid JSON: ", &e))?;
        return Ok(values
            .into_iter()
            .map(|value| RawRecord { value, line: None })
            .collect());
    }
    if body[start] != b'{' {
        return Err(BodyError::plain(
            "body must be a JSON array of records or a sequence of JSON objects",
        ));
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Val>();
    let mut line = 1usize;
    let mut counted_to = 0usize;
    loop {
        let before = stream.byte_offset();
        let value_start = before
            + body[before..]
                .iter()
                .position(|c| !c.is_ascii_whitespace())
                .unwrap_or(body.len() - before);
        line += body[counted_to..value_start]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        counted_to = value_start;
        match stream.next() {
            None => break,
            Some(Ok(value)) => out.push(RawRecord {
                value,
                line: Some(line),
            }),
            Some(Err(e)) => return Err(BodyError::json("body is not valid JSON: ", &e)),
        }
    }
    Ok(out)
}

/// One problem with one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// 0-based position of the record.
    pub index: usize,
    /// NDJSON line.
    pub line: Option<usize>,
    /// The id as given, when usable.
    pub id: Option<Value>,
    /// The key at fault.
    pub field: Option<String>,
    /// Reason code (rest spec 4.7).
    pub reason: &'static str,
    /// Human text.
    pub detail: String,
}

impl RecordError {
    /// The error entry JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("index".into(), Value::from(self.index));
        if let Some(l) = self.line {
            m.insert("line".into(), Value::from(l));
        }
        if let Some(id) = &self.id {
            m.insert("id".into(), id.clone());
        }
        if let Some(f) = &self.field {
            m.insert("field".into(), Value::from(f.clone()));
        }
        m.insert("reason".into(), Value::from(self.reason));
        m.insert("detail".into(), Value::from(self.detail.clone()));
        Value::Object(m)
    }
}

/// How unknown properties are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownPolicy {
    /// The record is invalid (default).
    #[default]
    Reject,
    /// The property is dropped and counted.
    Ignore,
}

/// The outcome of validating a batch.
#[derive(Debug, Default)]
pub struct Validated {
    /// Per partition with valid records: the encoded log entry.
    pub entries: Vec<(u32, Vec<u8>)>,
    /// Number of valid records.
    pub accepted: usize,
    /// Problems, in index order.
    pub errors: Vec<RecordError>,
    /// Number of distinct invalid records.
    pub rejected: usize,
    /// Valid records that took the receive time as stamp.
    pub stamped: usize,
    /// Unknown properties skipped, with how many records each was skipped in.
    pub ignored: BTreeMap<String, u64>,
}

/// One record's property values while it is validated; reused across records.
#[derive(Default)]
struct Scratch<'a> {
    /// (property id, type, is customer property, range in `values`).
    props: Vec<(u32, PropType, bool, usize, usize)>,
    values: Vec<ScalarRef<'a>>,
}

/// A record's head once valid.
struct Head<'a> {
    id: Cow<'a, str>,
    num_id: Option<i64>,
    stamp: i64,
    event: Option<Cow<'a, str>>,
}

/// Validates every raw record against `schema` and encodes the valid ones
/// into one log entry per partition (of `partitions`), routed by customer.
/// `now_ms` is the stamp given to records without one (read once per
/// request, before logging).
pub fn validate<'a>(
    schema: &TableSchema,
    raw: Vec<RawRecord<'a>>,
    unknown: UnknownPolicy,
    now_ms: i64,
    partitions: u32,
) -> Validated {
    let mut out = Validated::default();
    let mut buffers: Vec<Vec<u8>> = (0..partitions).map(|_| Vec::new()).collect();
    let mut scratch = Scratch::<'a>::default();
    let by_name: rustc_hash::FxHashMap<&str, &PropertyDef> = schema
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    for (index, raw) in raw.into_iter().enumerate() {
        let mut ctx = RecordCtx {
            index,
            line: raw.line,
            id: None,
            errors: Vec::new(),
        };
        let mut stamped = false;
        scratch.props.clear();
        scratch.values.clear();
        let head = validate_one(
            schema,
            &by_name,
            raw.value,
            unknown,
            now_ms,
            &mut ctx,
            &mut out.ignored,
            &mut stamped,
            &mut scratch,
        );
        if !ctx.errors.is_empty() {
            out.rejected += 1;
            out.errors.extend(ctx.errors);
            continue;
        }
        let Some(head) = head else { continue };
        let key = match head.num_id {
            Some(n) => KeyRef::Num(n),
            None => KeyRef::Text(&head.id),
        };
        let Some(buf) = buffers.get_mut(partition_of(key, partitions) as usize) else {
            continue;
        };
        if buf.is_empty() {
            begin_entry(schema.uid, buf);
        }
        scratch.props.sort_by_key(|p| p.0);
        begin_record(buf, key, head.stamp, head.event.as_deref());
        for customer in [false, true] {
            let section = scratch.props.iter().filter(|p| p.2 == customer);
            put_prop_count(buf, section.clone().count());
            for &(prop, kind, _, start, end) in section {
                put_prop(buf, prop, kind, scratch.values[start..end].iter());
            }
        }
        out.accepted += 1;
        out.stamped += usize::from(stamped);
    }
    out.entries = buffers
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(p, b)| (p as u32, b))
        .collect();
    out
}

struct RecordCtx {
    index: usize,
    line: Option<usize>,
    id: Option<Value>,
    errors: Vec<RecordError>,
}

impl RecordCtx {
    fn fail(&mut self, field: Option<&str>, reason: &'static str, detail: String) {
        self.errors.push(RecordError {
            index: self.index,
            line: self.line,
            id: self.id.clone(),
            field: field.map(str::to_string),
            reason,
            detail,
        });
    }
}

fn take<'a>(obj: &mut Vec<(Cow<'a, str>, Val<'a>)>, key: &str) -> Option<Val<'a>> {
    let i = obj.iter().position(|(k, _)| k == key)?;
    Some(obj.swap_remove(i).1)
}

fn take_aliased<'a>(
    obj: &mut Vec<(Cow<'a, str>, Val<'a>)>,
    key: &str,
    alias: &str,
    ctx: &mut RecordCtx,
) -> Option<Val<'a>> {
    match (take(obj, key), take(obj, alias)) {
        (Some(_), Some(_)) => {
            ctx.fail(
                Some(key),
                "conflicting_alias",
                format!("record has both '{key}' and '{alias}'"),
            );
            None
        }
        (a, b) => a.or(b),
    }
}

#[allow(clippy::too_many_arguments)]
fn validate_one<'a>(
    schema: &TableSchema,
    by_name: &rustc_hash::FxHashMap<&str, &PropertyDef>,
    value: Val<'a>,
    unknown: UnknownPolicy,
    now_ms: i64,
    ctx: &mut RecordCtx,
    ignored: &mut BTreeMap<String, u64>,
    stamped: &mut bool,
    scratch: &mut Scratch<'a>,
) -> Option<Head<'a>> {
    let Val::Obj(mut obj) = value else {
        ctx.fail(None, "not_an_object", "record is not a JSON object".into());
        return None;
    };
    if let Some((k, _)) = obj
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.0, i))
        .find(|(k, i)| obj[..*i].iter().any(|(p, _)| p == *k))
    {
        ctx.fail(
            Some(k),
            "duplicate_property",
            format!("key '{k}' appears twice in the record"),
        );
        return None;
    }
    let id_value = take_aliased(&mut obj, "id", "person", ctx);
    let id = match id_value {
        None => {
            ctx.fail(Some("id"), "missing_id", "record has no 'id'".into());
            None
        }
        Some(v) => parse_id(schema, &v, ctx),
    };
    let stamp = match take(&mut obj, "stamp") {
        None | Some(Val::Null) => {
            *stamped = true;
            Some(now_ms)
        }
        Some(v) => {
            let parsed = match &v {
                Val::Num(n) => stamp_from_number(*n),
                Val::Str(s) => stamp_from_text(s),
                other => Err(format!("{} is not a valid stamp", other.describe())),
            };
            match parsed {
                Ok(ms) => Some(ms),
                Err(detail) => {
                    ctx.fail(Some("stamp"), "bad_stamp", detail);
                    None
                }
            }
        }
    };
    let event = match take_aliased(&mut obj, "event", "action", ctx) {
        None => None,
        Some(Val::Str(e)) if valid_event_name(&e) => Some(e),
        Some(other) => {
            ctx.fail(
                Some("event"),
                "bad_event",
                format!(
                    "event must be a string of 1 to 128 bytes without control characters; got {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let nested = take_aliased(&mut obj, "_", "attr", ctx);
    let mut fields = obj;
    match nested {
        None | Some(Val::Null) => {}
        Some(Val::Obj(inner)) => {
            for (k, v) in inner {
                if fields.iter().any(|(f, _)| *f == k) {
                    ctx.fail(
                        Some(&k),
                        "duplicate_property",
                        format!("property '{k}' is given both flat and under '_'"),
                    );
                } else {
                    fields.push((k, v));
                }
            }
        }
        Some(_) => ctx.fail(
            Some("_"),
            "nested_object",
            "'_' must be an object of properties".into(),
        ),
    }
    let mut customer_prop_keys = 0usize;
    let mut event_prop_keys = 0usize;
    for (key, v) in &fields {
        let key: &str = key;
        if is_reserved_property_name(key) {
            ctx.fail(
                Some(key),
                "reserved_property",
                format!("'{key}' is a reserved name, not a property"),
            );
            continue;
        }
        let Some(&def) = by_name.get(key) else {
            match unknown {
                UnknownPolicy::Reject => ctx.fail(
                    Some(key),
                    "unknown_property",
                    format!("table '{}' has no property '{key}'", schema.name),
                ),
                UnknownPolicy::Ignore => *ignored.entry(key.to_string()).or_default() += 1,
            }
            continue;
        };
        if def.is_customer {
            customer_prop_keys += 1;
        } else {
            event_prop_keys += 1;
        }
        let start = scratch.values.len();
        if let Err((reason, detail)) =
            convert_values(def.kind, def.is_set, key, v, &mut scratch.values)
        {
            ctx.fail(Some(key), reason, detail);
            continue;
        }
        let end = scratch.values.len();
        // An event property without a value is simply absent; a customer
        // property without a value is a removal and must be logged.
        if def.is_customer || end > start {
            scratch
                .props
                .push((def.id, def.kind, def.is_customer, start, end));
        }
    }
    if event.is_none()
        && ctx
            .errors
            .iter()
            .all(|e| e.field.as_deref() != Some("event"))
    {
        if event_prop_keys > 0 {
            ctx.fail(
                Some("event"),
                "missing_event",
                "record has event properties but no 'event'".into(),
            );
        } else if customer_prop_keys == 0 {
            ctx.fail(
                None,
                "empty_record",
                "record has no event and no customer property".into(),
            );
        }
    }
    let (id, num_id) = match id? {
        IdKey::Num(n) => (Cow::Borrowed(""), Some(n)),
        IdKey::Text(t) => (t, None),
    };
    Some(Head {
        id,
        num_id,
        stamp: stamp?,
        event,
    })
}

/// A validated id before encoding.
enum IdKey<'a> {
    Num(i64),
    Text(Cow<'a, str>),
}

fn parse_id<'a>(schema: &TableSchema, v: &Val<'a>, ctx: &mut RecordCtx) -> Option<IdKey<'a>> {
    let key = match (schema.id_type, v) {
        (IdType::Numeric, Val::Num(Num::I(i))) => Ok(IdKey::Num(*i)),
        (IdType::Numeric, Val::Num(n)) => Err((
            "bad_id",
            format!("id {n} is not an integer in signed 64-bit range"),
        )),
        (IdType::Numeric, other) => Err((
            "bad_id",
            format!(
                "this table is configured for numeric customer ids; got {}",
                other.describe()
            ),
        )),
        (IdType::Textual, Val::Str(s)) => fold_id(s.clone()),
        (IdType::Textual, Val::Num(Num::I(i))) if schema.legacy => {
            fold_id(Cow::Owned(i.to_string()))
        }
        (IdType::Textual, other) => Err((
            "bad_id",
            format!(
                "this table is configured for textual customer ids; got {}",
                other.describe()
            ),
        )),
    };
    match key {
        Ok(k) => {
            ctx.id = Some(v.to_value());
            Some(k)
        }
        Err((reason, detail)) => {
            ctx.fail(Some("id"), reason, detail);
            None
        }
    }
}

/// Folds and checks a textual id (shared with look-ups, which fold the same way).
pub fn text_id(s: &str) -> Result<CustomerKey, (&'static str, String)> {
    fold_id(Cow::Borrowed(s)).map(|k| match k {
        IdKey::Text(t) => CustomerKey::Text(t.into_owned().into_boxed_str()),
        IdKey::Num(n) => CustomerKey::Num(n),
    })
}

fn fold_id(s: Cow<'_, str>) -> Result<IdKey<'_>, (&'static str, String)> {
    if s.is_empty() {
        return Err(("empty_id", "id is empty".into()));
    }
    if s.len() > MAX_ID_LEN {
        return Err((
            "id_too_long",
            format!("id is {} bytes; the limit is {MAX_ID_LEN}", s.len()),
        ));
    }
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return Ok(IdKey::Text(Cow::Owned(s.to_ascii_lowercase())));
    }
    Ok(IdKey::Text(s))
}

type ValueError = (&'static str, String);

/// Appends the values of one property to `out` (set members once each).
fn convert_values<'a>(
    kind: PropType,
    is_set: bool,
    name: &str,
    v: &Val<'a>,
    out: &mut Vec<ScalarRef<'a>>,
) -> Result<(), ValueError> {
    match v {
        Val::Null => Ok(()),
        Val::Obj(_) => Err(("nested_object", format!("property '{name}' got an object"))),
        Val::Arr(items) => {
            if !is_set {
                return Err((
                    "not_a_set",
                    format!("property '{name}' is not a set; got an array"),
                ));
            }
            if items.len() > MAX_SET_MEMBERS {
                return Err((
                    "too_many_values",
                    format!(
                        "property '{name}' got {} members; the limit is {MAX_SET_MEMBERS}",
                        items.len()
                    ),
                ));
            }
            let start = out.len();
            for item in items {
                let s = match item {
                    Val::Obj(_) | Val::Arr(_) => {
                        return Err((
                            "nested_object",
                            format!("property '{name}' has a nested member"),
                        ))
                    }
                    Val::Null => {
                        return Err((
                            "type_mismatch",
                            format!("property '{name}' has a null set member"),
                        ))
                    }
                    other => convert_scalar(kind, name, other)?,
                };
                if !out[start..].contains(&s) {
                    out.push(s);
                }
            }
            Ok(())
        }
        other => {
            out.push(convert_scalar(kind, name, other)?);
            Ok(())
        }
    }
}

fn mismatch(kind: PropType, name: &str, v: &Val<'_>) -> ValueError {
    (
        "type_mismatch",
        format!("property '{name}' is {}; got {}", kind.name(), v.describe()),
    )
}

/// Converts one JSON scalar to a property value per rest spec 4.5.
fn convert_scalar<'a>(
    kind: PropType,
    name: &str,
    v: &Val<'a>,
) -> Result<ScalarRef<'a>, ValueError> {
    let out_of_range = |n: &Num| {
        (
            "out_of_range",
            format!("property '{name}' value {n} is outside signed 64-bit"),
        )
    };
    match (kind, v) {
        (PropType::Int, Val::Num(Num::I(i))) => Ok(ScalarRef::Num(*i)),
        (PropType::Int, Val::Num(n @ Num::U(_))) => Err(out_of_range(n)),
        (PropType::Int, Val::Num(n @ Num::F(f))) => {
            if f.fract() != 0.0 || !f.is_finite() {
                Err(mismatch(kind, name, v))
            } else if f.abs() >= 9.223_372_036_854_775e18 {
                Err(out_of_range(n))
            } else {
                Ok(ScalarRef::Num(*f as i64))
            }
        }
        (PropType::Double, Val::Num(n)) => {
            let f = match n {
                Num::I(i) => *i as f64,
                Num::U(u) => *u as f64,
                Num::F(f) => *f,
            };
            if !f.is_finite() || f.abs() > MAX_DOUBLE {
                return Err((
                    "out_of_range",
                    format!("property '{name}' value {n} is beyond ±9.2e14"),
                ));
            }
            Ok(ScalarRef::Num(double_to_fixed(f)))
        }
        (PropType::Bool, Val::Bool(b)) => Ok(ScalarRef::Num(i64::from(*b))),
        (PropType::Bool, Val::Num(Num::I(i @ (0 | 1)))) => Ok(ScalarRef::Num(*i)),
        (PropType::Text, Val::Str(s)) => {
            if s.len() > MAX_TEXT_LEN {
                Err((
                    "value_too_long",
                    format!(
                        "property '{name}' text is {} bytes; the limit is {MAX_TEXT_LEN}",
                        s.len()
                    ),
                ))
            } else {
                Ok(ScalarRef::Text(s.clone()))
            }
        }
        (PropType::Text, Val::Num(n)) => Ok(ScalarRef::Text(Cow::Owned(n.to_string()))),
        (PropType::Text, Val::Bool(b)) => Ok(ScalarRef::Text(Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        }))),
        _ => Err(mismatch(kind, name, v)),
    }
}

/// Scales a double to the stored fixed point: 4 decimals, half away from zero.
pub fn double_to_fixed(f: f64) -> i64 {
    (f * 10_000.0).round() as i64
}

/// The double a stored fixed-point value stands for.
pub fn fixed_to_double(v: i64) -> f64 {
    v as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::parse_create_body;
    use serde_json::json;

    fn rides() -> TableSchema {
        parse_create_body(
            "rides",
            1,
            &json!({"id_type": "textual", "properties": [
                {"name": "station", "type": "text"},
                {"name": "minutes", "type": "int"},
                {"name": "fare", "type": "double"},
                {"name": "helmet", "type": "bool"},
                {"name": "extras", "type": "text", "is_set": true},
                {"name": "plan", "type": "text", "is_customer": true}
            ]}),
        )
        .unwrap()
    }

    fn check(records: Value) -> Validated {
        let text = records.to_string();
        let raw = parse_body(text.as_bytes(), false).unwrap();
        validate(&rides(), raw, UnknownPolicy::Reject, 5_000_000_000_000, 3)
    }

    #[test]
    fn spec_example_rejects_four_of_five() {
        let v = check(json!([
            { "id": "erin", "stamp": "2024-03-11T10:00:00Z", "event": "ride_end", "station": "harbour", "minutes": "12" },
            { "stamp": "2024-03-11T10:05:00Z", "event": "payment", "fare": 3.0 },
            { "id": "erin", "stamp": "yesterday", "event": "payment", "fare": 3.0 },
            { "id": "erin", "stamp": "2024-03-11T10:05:00Z", "event": "payment", "fare": 3.0, "coupon": "SPRING" },
            { "id": "erin", "stamp": "2024-03-11T10:06:00Z", "event": "app_open" }
        ]));
        assert_eq!(v.rejected, 4);
        let reasons: Vec<_> = v
            .errors
            .iter()
            .map(|e| (e.index, e.reason, e.field.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (0, "type_mismatch", Some("minutes".into())),
                (1, "missing_id", Some("id".into())),
                (2, "bad_stamp", Some("stamp".into())),
                (3, "unknown_property", Some("coupon".into())),
            ]
        );
        assert_eq!(
            v.errors[0].detail,
            "property 'minutes' is int; got string \"12\""
        );
        assert_eq!(v.accepted, 1);
    }

    #[test]
    fn coercions_and_shapes() {
        let v = check(json!([
            { "id": "Ana", "event": "e", "_": {"station": 42, "fare": 17.99}, "minutes": 3.0, "helmet": 1, "extras": ["a", "b", "a"], "plan": "gold" }
        ]));
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert_eq!((v.accepted, v.entries.len()), (1, 1));
        let key = CustomerKey::Text("ana".into());
        assert_eq!(v.entries[0].0, key.partition(3));
        let (_, recs) = crate::codec::decode_entry(&v.entries[0].1).unwrap();
        let r = &recs[0];
        assert_eq!(r.id, KeyRef::Text("ana"));
        assert_eq!(r.stamp, 5_000_000_000_000);
        assert_eq!(v.stamped, 1);
        use crate::codec::ValueRef;
        let vals: Vec<Vec<ValueRef>> = r.props.iter().map(|p| p.2.iter().collect()).collect();
        assert_eq!(
            vals,
            vec![
                vec![ValueRef::Text("42")],
                vec![ValueRef::Num(3)],
                vec![ValueRef::Num(179_900)],
                vec![ValueRef::Num(1)],
                vec![ValueRef::Text("a"), ValueRef::Text("b")],
            ]
        );
        let cust: Vec<Vec<ValueRef>> = r
            .customer_props
            .iter()
            .map(|p| p.2.iter().collect())
            .collect();
        assert_eq!(cust, vec![vec![ValueRef::Text("gold")]]);
    }

    #[test]
    fn every_reason_code() {
        let cases = [
            (json!(5), "not_an_object"),
            (json!({"id": "", "event": "e"}), "empty_id"),
            (json!({"id": "x".repeat(65), "event": "e"}), "id_too_long"),
            (json!({"id": 4, "event": "e"}), "bad_id"),
            (json!({"id": "a", "station": "x"}), "missing_event"),
            (json!({"id": "a", "event": ""}), "bad_event"),
            (json!({"id": "a"}), "empty_record"),
            (
                json!({"id": "a", "event": "e", "session": 1}),
                "reserved_property",
            ),
            (
                json!({"id": "a", "event": "e", "station": "x", "_": {"station": "x"}}),
                "duplicate_property",
            ),
            (
                json!({"id": "a", "person": "b", "event": "e"}),
                "conflicting_alias",
            ),
            (
                json!({"id": "a", "event": "e", "minutes": 1.5}),
                "type_mismatch",
            ),
            (
                json!({"id": "a", "event": "e", "minutes": 1e30}),
                "out_of_range",
            ),
            (
                json!({"id": "a", "event": "e", "station": ["x"]}),
                "not_a_set",
            ),
            (
                json!({"id": "a", "event": "e", "extras": vec!["x"; 1001]}),
                "too_many_values",
            ),
            (
                json!({"id": "a", "event": "e", "station": "x".repeat(70_000)}),
                "value_too_long",
            ),
            (
                json!({"id": "a", "event": "e", "station": {"a": 1}}),
                "nested_object",
            ),
            (
                json!({"id": "a", "event": "e", "helmet": "true"}),
                "type_mismatch",
            ),
        ];
        for (record, reason) in cases {
            let v = check(json!([record]));
            assert_eq!(v.errors.first().map(|e| e.reason), Some(reason), "{record}");
        }
    }

    #[test]
    fn ndjson_lines_and_errors() {
        let body = b"{\"id\":\"a\",\"event\":\"e\"}\n\n{\"id\":\"b\"}\n";
        let raw = parse_body(body, false).unwrap();
        assert_eq!(
            raw.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![Some(1), Some(3)]
        );
        let v = validate(&rides(), raw, UnknownPolicy::Reject, 1, 3);
        assert_eq!(v.errors[0].line, Some(3));
        assert_eq!(
            parse_body(b"  ", false).unwrap_err().detail,
            "body is empty"
        );
        assert!(parse_body(b"5", false).is_err());
        let e = parse_body(b"[{\"id\": 1,}\n]", false).unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
