//! A borrowed JSON value for insert bodies.
//!
//! `serde_json::Value` allocates a map and a `String` for every key and text
//! value; at a million events a second that allocation is most of the cost.
//! `Val` borrows keys and unescaped strings from the body and keeps object
//! members in a small vector (records have few keys), so parsing a record
//! allocates little beyond its member list.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A JSON number as read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// Fits i64.
    I(i64),
    /// Positive beyond i64.
    U(u64),
    /// Has a fraction or exponent.
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::I(i) => write!(f, "{i}"),
            Num::U(u) => write!(f, "{u}"),
            // Rust prints the shortest text that reads back exactly ("4.5").
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

/// A JSON value borrowing from the input where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(Num),
    /// A string (borrowed unless it had escapes).
    Str(Cow<'a, str>),
    /// An array.
    Arr(Vec<Val<'a>>),
    /// An object's members in input order.
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
}

impl Val<'_> {
    /// A short description for error texts (`string "12"`, `number 1.5`, ...).
    pub fn describe(&self) -> String {
        match self {
            Val::Str(s) => format!("string {}", serde_json::Value::from(&**s)),
            Val::Num(n) => format!("number {n}"),
            Val::Bool(b) => format!("bool {b}"),
            Val::Null => "null".into(),
            Val::Arr(_) => "an array".into(),
            Val::Obj(_) => "an object".into(),
        }
    }

    /// The value as a `serde_json::Value` (for echoing ids in errors).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(Num::I(i)) => Value::from(*i),
            Val::Num(Num::U(u)) => Value::from(*u),
            Val::Num(Num::F(f)) => Value::from(*f),
            Val::Str(s) => Value::from(&**s),
            Val::Arr(a) => Value::Array(a.iter().map(Val::to_value).collect()),
            Val::Obj(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor(std::marker::PhantomData))
    }
}

struct ValVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ValVisitor<'a> {
    type Value = Val<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val<'a>, E> {
        Ok(Val::Null)
    }
    fn visit_none<E>(self) -> Result<Val<'a>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Val<'a>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val<'a>, E> {
        Ok(Val::Num(Num::I(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Val<'a>, E> {
        Ok(Val::Num(i64::try_from(v).map_or(Num::U(v), Num::I)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val<'a>, E> {
        Ok(Val::Num(Num::F(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'a>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Val::Arr(out))
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Val<'a>, M::Error> {
        let mut out = Vec::with_capacity(8);
        while let Some(k) = map.next_key::<CowStr<'a>>()? {
            out.push((k.0, map.next_value()?));
        }
        Ok(Val::Obj(out))
    }
}

/// A key that borrows when it can.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_and_keeps_order() {
        let body =
            br#"{"b": "x", "a": [1, -2, 3.5, 18446744073709551615, null, true], "c": "e\"s"}"#;
        let v: Val = serde_json::from_slice(body).unwrap();
        let Val::Obj(members) = v else {
            panic!("object")
        };
        assert_eq!(
            members.iter().map(|(k, _)| &**k).collect::<Vec<_>>(),
            ["b", "a", "c"]
        );
        assert!(matches!(&members[0].1, Val::Str(Cow::Borrowed("x"))));
        assert_eq!(
            members[1].1,
            Val::Arr(vec![
                Val::Num(Num::I(1)),
                Val::Num(Num::I(-2)),
                Val::Num(Num::F(3.5)),
                Val::Num(Num::U(u64::MAX)),
                Val::Null,
                Val::Bool(true)
            ])
        );
        assert_eq!(members[2].1, Val::Str(Cow::Owned("e\"s".into())));
    }
}
