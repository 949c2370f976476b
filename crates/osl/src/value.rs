//! Script values (§4): nil, scalars and copy-on-write containers, with the
//! spec's conversions, equality, ordering, arithmetic and membership rules.
//!
//! Containers are `Arc`-shared and copied on write (`Arc::make_mut`), which
//! gives the value semantics of §4.1 without deep copies on every
//! assignment. `Arc` (not `Rc`) keeps compiled programs `Send + Sync`.

use indexmap::IndexMap;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A set: members keyed by their normalised key, in insertion order.
pub type SetMap = IndexMap<Key, Value>;
/// A dict: (original key, value) keyed by the normalised key, in insertion order.
pub type DictMap = IndexMap<Key, (Value, Value)>;

/// One OSL value.
///
/// `repr(u64)`: a word-sized tag puts every payload at offset 8, so the
/// interpreter's many `Value` returns are copied as whole words; with the
/// default byte tag the bool payload sits at offset 1 and copies were done
/// in odd-sized pieces that stalled store forwarding on every `eval`.
#[derive(Clone, Debug, Default)]
#[repr(u64)]
pub enum Value {
    /// Absence of a value.
    #[default]
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// 64-bit signed integer.
    Int(i64),
    /// IEEE double.
    Float(f64),
    /// UTF-8 text.
    Text(Arc<str>),
    /// Ordered list.
    List(Arc<Vec<Value>>),
    /// Set of distinct scalars, insertion ordered.
    Set(Arc<SetMap>),
    /// Map from scalar keys to values, insertion ordered.
    Dict(Arc<DictMap>),
}

/// The normalised identity of a scalar used as a set member or dict key
/// (§4.7: an int and an integral float are the same key; text "1" is not).
#[derive(Clone, Debug)]
pub enum Key {
    /// A bool.
    Bool(bool),
    /// An int, or an integral float.
    Int(i64),
    /// A non-integral float (bit pattern).
    Float(u64),
    /// A text.
    Text(Arc<str>),
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Key::Bool(a), Key::Bool(b)) => a == b,
            (Key::Int(a), Key::Int(b)) => a == b,
            (Key::Float(a), Key::Float(b)) => a == b,
            (Key::Text(a), Key::Text(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Bool(b) => (0u8, b).hash(state),
            Key::Int(i) => (1u8, i).hash(state),
            Key::Float(f) => (2u8, f).hash(state),
            Key::Text(t) => (3u8, t).hash(state),
        }
    }
}

impl Key {
    /// The key of a scalar; `None` for nil and containers.
    pub fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::Bool(b) => Key::Bool(*b),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => float_key(*f),
            Value::Text(t) => Key::Text(t.clone()),
            _ => return None,
        })
    }
}

fn float_key(f: f64) -> Key {
    if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
        Key::Int(f as i64)
    } else {
        Key::Float(f.to_bits())
    }
}

impl Value {
    /// A text value.
    pub fn text(s: &str) -> Value {
        Value::Text(Arc::from(s))
    }

    /// A list value.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A set of the given scalars (non-scalars are an error).
    pub fn set_of(items: impl IntoIterator<Item = Value>) -> Result<Value, String> {
        let mut m = SetMap::new();
        for v in items {
            set_insert(&mut m, v)?;
        }
        Ok(Value::Set(Arc::new(m)))
    }

    /// True for nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
        }
    }

    /// Truthiness (§4.2).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Text(t) => !t.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Set(s) => !s.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }

    /// True for list, set and dict.
    pub fn is_container(&self) -> bool {
        matches!(self, Value::List(_) | Value::Set(_) | Value::Dict(_))
    }

    /// to-int conversion (§4.3).
    pub fn to_int(&self) -> Value {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Int(i64::from(*b)),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => {
                if f.is_finite() {
                    Value::Int(*f as i64)
                } else {
                    Value::Nil
                }
            }
            Value::Text(t) => Value::Int(text_to_int(t)),
            _ => Value::Int(0),
        }
    }

    /// to-float conversion (§4.3).
    pub fn to_float(&self) -> Value {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Float(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Value::Float(*i as f64),
            Value::Float(f) => Value::Float(*f),
            Value::Text(t) => Value::Float(text_to_float(t)),
            _ => Value::Float(0.0),
        }
    }

    /// to-text conversion (§4.3); `str(nil)` is empty, containers are empty.
    pub fn to_text(&self) -> String {
        match self {
            Value::Nil => String::new(),
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Text(t) => t.to_string(),
            _ => String::new(),
        }
    }

    /// The value as f64 when it is a number or bool.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Renders the value as an OSL literal (used by `{{name}}` substitution
    /// and the debug listing).
    pub fn to_literal(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Text(t) => quote(t),
            Value::Float(f) => {
                let s = format!("{f:?}");
                if s.contains('.') || !f.is_finite() {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(|v| v.to_literal()).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Set(s) => {
                let items: Vec<String> = s.values().map(|v| v.to_literal()).collect();
                format!("set({})", items.join(", "))
            }
            Value::Dict(d) => {
                let items: Vec<String> = d
                    .values()
                    .map(|(k, v)| format!("{}: {}", k.to_literal(), v.to_literal()))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            other => other.to_text(),
        }
    }

    /// Rendering for `log(...)`: text inside containers quoted, sets as `(..)`.
    pub fn to_log_text(&self, nested: bool) -> String {
        match self {
            Value::Text(t) if nested => quote(t),
            Value::List(l) => {
                let items: Vec<String> = l.iter().map(|v| v.to_log_text(true)).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Set(s) => {
                let items: Vec<String> = s.values().map(|v| v.to_log_text(true)).collect();
                format!("({})", items.join(", "))
            }
            Value::Dict(d) => {
                let items: Vec<String> = d
                    .values()
                    .map(|(k, v)| format!("{}: {}", k.to_log_text(true), v.to_log_text(true)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Value::Nil if nested => "nil".into(),
            other => other.to_text(),
        }
    }

    /// Converts to a JSON value (debug output, tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Text(t) => J::from(&**t),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Set(s) => J::Array(s.values().map(Value::to_json).collect()),
            Value::Dict(d) => J::Object(
                d.values()
                    .map(|(k, v)| (k.to_text(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Strict equality for Rust code and tests: same type and OSL-equal value
/// (scripts use [`values_equal`], which also equates across types).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.type_name() == other.type_name() && values_equal(self, other)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_literal())
    }
}

/// Deepest container nesting a script may build (keeps recursive
/// comparison, rendering and drop of values within the stack).
pub const MAX_VALUE_DEPTH: usize = 100;

/// True when `v` nests containers more than `budget` levels deep.
pub fn nested_deeper_than(v: &Value, budget: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::List(l) => Box::new(l.iter()),
        Value::Dict(d) => Box::new(d.values().map(|(_, v)| v)),
        Value::Set(_) => return budget == 0,
        _ => return false,
    };
    if budget == 0 {
        return true;
    }
    let mut children = children;
    children.any(|c| nested_deeper_than(c, budget - 1))
}

/// Error text when a container would nest too deeply.
pub const TOO_DEEP: &str = "containers are nested too deeply";

/// Quotes a text as an OSL string literal.
pub fn quote(t: &str) -> String {
    let mut s = String::with_capacity(t.len() + 2);
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Float to text: six decimals, trailing zeros trimmed, at least one kept.
pub fn format_float(f: f64) -> String {
    if !f.is_finite() {
        return format!("{f}");
    }
    let mut s = format!("{f:.6}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    if s == "-0.0" {
        s = "0.0".into();
    }
    s
}

/// to-int of text: leading whitespace, sign, longest digit run (else 0).
pub fn text_to_int(t: &str) -> i64 {
    let s = t.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in rest.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Length in bytes of the longest leading decimal number (with optional
/// sign, fraction and exponent) of `s`, or 0.
fn leading_number_len(s: &[u8]) -> usize {
    let mut i = 0;
    if matches!(s.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < s.len() && s[i] == b'.' {
        let mut j = i + 1;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if digits > 0 || j > i + 1 {
            digits += j - i - 1;
            i = j;
        }
    }
    if digits == 0 {
        return 0;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

/// to-float of text: the longest leading decimal number (else 0.0).
pub fn text_to_float(t: &str) -> f64 {
    let s = t.trim_start();
    let n = leading_number_len(s.as_bytes());
    s.get(..n)
        .and_then(|p| p.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The number a "numeric text" (§4.3) denotes, or `None`.
pub fn numeric_text(t: &str) -> Option<f64> {
    let s = t.trim();
    let n = leading_number_len(s.as_bytes());
    if n == 0 || n != s.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

fn num_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => match (a.as_number(), b.as_number()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn text_bool_eq(t: &str, b: bool) -> bool {
    let l = t.to_ascii_lowercase();
    if b {
        l == "true" || l == "1"
    } else {
        l == "false" || l == "0" || l.is_empty()
    }
}

/// `==` of §4.4 (symmetric, structural for containers).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Nil, Nil) => true,
        (Nil, _) | (_, Nil) => false,
        (Bool(x), Bool(y)) => x == y,
        (Int(_) | Float(_) | Bool(_), Int(_) | Float(_) | Bool(_)) => num_eq(a, b),
        (Text(x), Text(y)) => x == y,
        (Text(t), Bool(v)) | (Bool(v), Text(t)) => text_bool_eq(t, *v),
        (Text(t), n @ (Int(_) | Float(_))) | (n @ (Int(_) | Float(_)), Text(t)) => {
            match (numeric_text(t), n.as_number()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        (List(x), List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| values_equal(p, q))
        }
        (Set(x), Set(y)) => x.len() == y.len() && x.keys().all(|k| y.contains_key(k)),
        (Dict(x), Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, (_, v))| y.get(k).is_some_and(|(_, w)| values_equal(v, w)))
        }
        _ => false,
    }
}

/// Ordering of §4.4; `None` when the values are not comparable (then all
/// of `< <= > >=` are false).
pub fn values_order(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(_) | Float(_) | Bool(_), Int(_) | Float(_) | Bool(_)) => {
            a.as_number()?.partial_cmp(&b.as_number()?)
        }
        (Text(x), Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Text(t), n @ (Int(_) | Float(_) | Bool(_))) => {
            numeric_text(t)?.partial_cmp(&n.as_number()?)
        }
        (n @ (Int(_) | Float(_) | Bool(_)), Text(t)) => {
            n.as_number()?.partial_cmp(&numeric_text(t)?)
        }
        _ => None,
    }
}

/// Binary arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl ArithOp {
    /// The operator symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

pub(crate) fn int_arith(op: ArithOp, x: i64, y: i64) -> Value {
    let r = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div => {
            if y == 0 {
                return Value::Int(0);
            }
            x.checked_div(y)
        }
    };
    match r {
        Some(v) => Value::Int(v),
        // Overflow promotes to float (D24).
        None => float_arith(op, x as f64, y as f64),
    }
}

pub(crate) fn float_arith(op: ArithOp, x: f64, y: f64) -> Value {
    match op {
        ArithOp::Add => Value::Float(x + y),
        ArithOp::Sub => Value::Float(x - y),
        ArithOp::Mul => Value::Float(x * y),
        ArithOp::Div => {
            if y == 0.0 {
                Value::Int(0)
            } else {
                Value::Float(x / y)
            }
        }
    }
}

/// Arithmetic of §4.5 (left operand selects the operation). Errors are
/// runtime-error details.
pub fn arith(op: ArithOp, a: &Value, b: &Value) -> Result<Value, String> {
    use Value::*;
    match a {
        Nil => Ok(Nil),
        Int(_) | Bool(_) => {
            let x = match a {
                Int(i) => *i,
                Bool(v) => i64::from(*v),
                _ => 0,
            };
            match b {
                Nil => Ok(Nil),
                Float(y) => Ok(float_arith(op, x as f64, *y)),
                other => match other.to_int() {
                    Int(y) => Ok(int_arith(op, x, y)),
                    _ => Ok(Nil),
                },
            }
        }
        Float(x) => match b.to_float() {
            Float(y) => Ok(float_arith(op, *x, y)),
            _ => Ok(Nil),
        },
        Text(t) => match op {
            ArithOp::Add => {
                let mut s = t.to_string();
                s.push_str(&b.to_text());
                Ok(Value::text(&s))
            }
            ArithOp::Sub => {
                let r = b.to_text();
                if r.is_empty() {
                    Ok(a.clone())
                } else {
                    Ok(Value::text(&t.replace(&r, "")))
                }
            }
            _ => Err(format!(
                "operator '{}' is not supported on text",
                op.symbol()
            )),
        },
        List(_) | Set(_) | Dict(_) => match op {
            ArithOp::Add => container_add(a, b),
            ArithOp::Sub => container_sub(a, b),
            _ => Err(format!(
                "operator '{}' is not supported on a {}",
                op.symbol(),
                a.type_name()
            )),
        },
    }
}

/// Unary minus (§4.5).
pub fn negate(v: &Value) -> Result<Value, String> {
    match v {
        Value::Nil => Ok(Value::Nil),
        Value::Int(i) => Ok(i
            .checked_neg()
            .map_or(Value::Float(-(*i as f64)), Value::Int)),
        Value::Float(f) => Ok(Value::Float(-f)),
        Value::Bool(b) => Ok(Value::Int(-i64::from(*b))),
        other => Err(format!(
            "unary '-' is not supported on a {}",
            other.type_name()
        )),
    }
}

/// Inserts a scalar into a set map (nil is ignored by callers; containers error).
pub fn set_insert(m: &mut SetMap, v: Value) -> Result<(), String> {
    match Key::of(&v) {
        Some(k) => {
            m.entry(k).or_insert(v);
            Ok(())
        }
        None if v.is_nil() => Err("nil cannot be a member of a set".into()),
        None => Err(format!("a {} cannot be a member of a set", v.type_name())),
    }
}

fn container_add(a: &Value, b: &Value) -> Result<Value, String> {
    match a {
        Value::List(l) => {
            let mut out = (**l).clone();
            match b {
                Value::List(r) => out.extend(r.iter().cloned()),
                Value::Set(r) => out.extend(r.values().cloned()),
                Value::Nil => {}
                other => {
                    if nested_deeper_than(other, MAX_VALUE_DEPTH - 1) {
                        return Err(TOO_DEEP.into());
                    }
                    out.push(other.clone())
                }
            }
            Ok(Value::List(Arc::new(out)))
        }
        Value::Set(s) => {
            let mut out = (**s).clone();
            match b {
                Value::List(r) => {
                    for v in r.iter() {
                        set_insert(&mut out, v.clone())?;
                    }
                }
                Value::Set(r) => {
                    for (k, v) in r.iter() {
                        out.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                Value::Nil => {}
                Value::Dict(_) => return Err("cannot add a dict to a set".into()),
                other => set_insert(&mut out, other.clone())?,
            }
            Ok(Value::Set(Arc::new(out)))
        }
        Value::Dict(d) => match b {
            Value::Dict(r) => {
                let mut out = (**d).clone();
                for (k, kv) in r.iter() {
                    out.insert(k.clone(), kv.clone());
                }
                Ok(Value::Dict(Arc::new(out)))
            }
            other => Err(format!("cannot add a {} to a dict", other.type_name())),
        },
        _ => Ok(a.clone()),
    }
}

fn container_sub(a: &Value, b: &Value) -> Result<Value, String> {
    match a {
        Value::List(l) => {
            let keep = |v: &Value| -> bool {
                match b {
                    Value::List(r) => !r.iter().any(|x| values_equal(x, v)),
                    Value::Set(r) => !r.values().any(|x| values_equal(x, v)),
                    Value::Dict(r) => !r.values().any(|(k, _)| values_equal(k, v)),
                    other => !values_equal(other, v),
                }
            };
            Ok(Value::List(Arc::new(
                l.iter().filter(|v| keep(v)).cloned().collect(),
            )))
        }
        Value::Set(s) => {
            let mut out = (**s).clone();
            match b {
                Value::List(r) => {
                    for v in r.iter() {
                        if let Some(k) = Key::of(v) {
                            out.shift_remove(&k);
                        }
                    }
                }
                Value::Set(r) => {
                    for k in r.keys() {
                        out.shift_remove(k);
                    }
                }
                Value::Dict(_) => return Err("cannot remove a dict from a set".into()),
                other => {
                    if let Some(k) = Key::of(other) {
                        out.shift_remove(&k);
                    }
                }
            }
            Ok(Value::Set(Arc::new(out)))
        }
        Value::Dict(d) => {
            let mut out = (**d).clone();
            match b {
                Value::List(r) => {
                    for v in r.iter() {
                        if let Some(k) = Key::of(v) {
                            out.shift_remove(&k);
                        }
                    }
                }
                Value::Set(r) => {
                    for k in r.keys() {
                        out.shift_remove(k);
                    }
                }
                Value::Dict(r) => {
                    for k in r.keys() {
                        out.shift_remove(k);
                    }
                }
                other => {
                    if let Some(k) = Key::of(other) {
                        out.shift_remove(&k);
                    }
                }
            }
            Ok(Value::Dict(Arc::new(out)))
        }
        _ => Ok(a.clone()),
    }
}

/// `x in c` (§4.7).
pub fn contains_member(c: &Value, x: &Value) -> bool {
    if x.is_container() {
        return false;
    }
    match c {
        Value::List(l) => l.iter().any(|v| values_equal(v, x)),
        Value::Set(s) => match Key::of(x) {
            Some(k) => s.contains_key(&k),
            None => false,
        },
        Value::Dict(d) => match Key::of(x) {
            Some(k) => d.contains_key(&k),
            None => false,
        },
        Value::Text(t) => match x {
            Value::Text(s) => t.contains(&**s),
            _ => false,
        },
        Value::Nil => false,
        other => values_equal(x, other),
    }
}

/// Elements of the right side of `contains`/`any` (dict: its keys).
fn elements(x: &Value) -> Vec<Value> {
    match x {
        Value::List(l) => (**l).clone(),
        Value::Set(s) => s.values().cloned().collect(),
        Value::Dict(d) => d.values().map(|(k, _)| k.clone()).collect(),
        other => vec![other.clone()],
    }
}

/// `c contains x` (every element of x is in c).
pub fn contains_all(c: &Value, x: &Value) -> bool {
    if !c.is_container() && !matches!(c, Value::Text(_)) {
        return false;
    }
    elements(x).iter().all(|e| contains_member(c, e))
}

/// `c any x` (at least one element of x is in c).
pub fn contains_any(c: &Value, x: &Value) -> bool {
    if !c.is_container() && !matches!(c, Value::Text(_)) {
        return false;
    }
    elements(x).iter().any(|e| contains_member(c, e))
}

/// Comparison operators, including the membership words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `contains`
    Contains,
    /// `any`
    Any,
}

impl CmpOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
            CmpOp::Contains => "contains",
            CmpOp::Any => "any",
        }
    }
}

/// Evaluates `a op b` by value semantics.
pub fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    match op {
        CmpOp::Eq => values_equal(a, b),
        CmpOp::Ne => !values_equal(a, b),
        CmpOp::Lt => values_order(a, b) == Some(Ordering::Less),
        CmpOp::Le => matches!(values_order(a, b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => values_order(a, b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(
            values_order(a, b),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        CmpOp::In => contains_member(b, a),
        CmpOp::NotIn => !contains_member(b, a),
        CmpOp::Contains => contains_all(a, b),
        CmpOp::Any => contains_any(a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::text(s)
    }

    #[test]
    fn conversions() {
        assert!(matches!(t("12.9kg").to_int(), Value::Int(12)));
        assert!(matches!(t("abc").to_int(), Value::Int(0)));
        assert!(matches!(t("  -7x").to_int(), Value::Int(-7)));
        assert!(matches!(t("2.5e1x").to_float(), Value::Float(f) if f == 25.0));
        assert!(matches!(Value::Float(-2.9).to_int(), Value::Int(-2)));
        assert!(Value::Float(f64::NAN).to_int().is_nil());
        assert_eq!(Value::Float(2.5).to_text(), "2.5");
        assert_eq!(Value::Float(3.0).to_text(), "3.0");
        assert_eq!(Value::Float(1.0 / 3.0).to_text(), "0.333333");
        assert_eq!(Value::Nil.to_text(), "");
        assert_eq!(numeric_text(" 3.50 "), Some(3.5));
        assert_eq!(numeric_text("7x"), None);
        assert_eq!(numeric_text(".5"), Some(0.5));
    }

    #[test]
    fn equality_rules() {
        assert!(values_equal(&t("3.50"), &Value::Float(3.5)));
        assert!(values_equal(&Value::Int(7), &t("7")));
        assert!(!values_equal(&Value::Int(5), &t("5.7")));
        assert!(!values_equal(&t("5.7"), &Value::Int(5)));
        assert!(values_equal(&Value::Bool(true), &Value::Int(1)));
        assert!(!values_equal(&Value::Bool(true), &Value::Int(5)));
        assert!(!values_equal(&Value::Bool(false), &Value::Nil));
        assert!(values_equal(&t("TRUE"), &Value::Bool(true)));
        assert!(values_equal(&t(""), &Value::Bool(false)));
        assert!(!values_equal(&t("yes"), &Value::Bool(true)));
        let l = Value::list(vec![Value::Int(1), t("a")]);
        assert!(values_equal(&l, &l.clone()));
        assert!(values_order(&Value::Nil, &Value::Int(0)).is_none());
        assert_eq!(
            values_order(&t("10"), &Value::Int(9)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn arithmetic_rules() {
        let r = |op, a: Value, b: Value| arith(op, &a, &b).map(|v| v.to_literal());
        assert_eq!(
            r(ArithOp::Div, Value::Int(7), Value::Int(2)),
            Ok("3".into())
        );
        assert_eq!(
            r(ArithOp::Div, Value::Int(7), Value::Float(2.0)),
            Ok("3.5".into())
        );
        assert_eq!(
            r(ArithOp::Add, t("qty: "), Value::Int(2)),
            Ok("\"qty: 2\"".into())
        );
        assert_eq!(r(ArithOp::Sub, t("a-b-c"), t("-")), Ok("\"abc\"".into()));
        assert_eq!(
            r(ArithOp::Div, Value::Int(10), Value::Int(0)),
            Ok("0".into())
        );
        assert_eq!(r(ArithOp::Sub, Value::Nil, Value::Int(5)), Ok("nil".into()));
        assert_eq!(r(ArithOp::Add, Value::Int(5), t("40")), Ok("45".into()));
        assert_eq!(r(ArithOp::Add, Value::Int(5), t("4.9")), Ok("9".into()));
        assert_eq!(
            r(ArithOp::Mul, Value::Float(2.0), t("1.5")),
            Ok("3.0".into())
        );
        assert_eq!(
            r(ArithOp::Sub, Value::Bool(true), Value::Int(3)),
            Ok("-2".into())
        );
        assert!(r(ArithOp::Mul, t("a"), Value::Int(2)).is_err());
        assert!(matches!(
            arith(ArithOp::Add, &Value::Int(i64::MAX), &Value::Int(1)),
            Ok(Value::Float(_))
        ));
        assert!(negate(&t("x")).is_err());
    }

    #[test]
    fn containers() {
        let l = arith(ArithOp::Add, &Value::list(vec![t("Dune")]), &t("Emma")).unwrap_or_default();
        assert_eq!(l.to_literal(), "[\"Dune\", \"Emma\"]");
        let s = Value::set_of(vec![t("a"), t("a"), Value::Int(1)]).unwrap_or_default();
        assert_eq!(s.to_literal(), "set(\"a\", 1)");
        assert!(contains_member(&s, &Value::Float(1.0)));
        assert!(!contains_member(&s, &t("1")));
        let s2 = arith(ArithOp::Add, &s, &Value::list(vec![t("b")])).unwrap_or_default();
        assert_eq!(s2.to_literal(), "set(\"a\", 1, \"b\")");
        assert!(contains_all(&s2, &Value::list(vec![t("a"), t("b")])));
        assert!(!contains_all(&s2, &Value::list(vec![t("a"), t("z")])));
        assert!(contains_any(&s2, &Value::list(vec![t("q"), t("b")])));
        assert!(contains_member(&t("chapter"), &t("apt")));
        assert!(contains_all(&t("chapter"), &t("apt")));
        assert!(arith(ArithOp::Add, &s, &Value::Dict(Arc::default())).is_err());
    }
}
