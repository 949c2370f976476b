//! Validated insert records: what the log stores and partitions apply.

use crate::schema::PropType;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

/// A customer id after validation: an integer, or ASCII-lowercased text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomerKey {
    /// Id of a `numeric` table.
    Num(i64),
    /// Id of a `textual` table, already lowercased.
    Text(Box<str>),
}

impl CustomerKey {
    /// The partition this customer lives in. Stable across versions: stored
    /// data depends on it (rest spec 4.9).
    pub fn partition(&self, partitions: u32) -> u32 {
        let h = match self {
            CustomerKey::Num(n) => xxh3_64(&n.to_le_bytes()),
            CustomerKey::Text(t) => xxh3_64(t.as_bytes()),
        };
        (h % u64::from(partitions.max(1))) as u32
    }

    /// The id as the API shows it.
    pub fn to_json(&self) -> Value {
        match self {
            CustomerKey::Num(n) => Value::from(*n),
            CustomerKey::Text(t) => Value::from(&**t),
        }
    }
}

/// One property value as logged: numbers of every type as i64 (a double is
/// fixed point scaled by 10,000, a bool 0 or 1), text as the string itself
/// (dictionary ids are per partition and assigned on apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// Int, fixed-point double or bool.
    Num(i64),
    /// Text.
    Text(String),
}

/// The values one record gives one property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropValues {
    /// Property id in the table schema.
    pub prop: u32,
    /// Its type (kept so a replay can skip values of a dropped property).
    pub kind: PropType,
    /// One value, or a set's members in first-appearance order without
    /// duplicates. Empty means "no value" (a customer property is removed).
    pub values: Vec<Scalar>,
}

/// A validated record, ready to log and apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The customer.
    pub id: CustomerKey,
    /// Milliseconds since the epoch.
    pub stamp: i64,
    /// Event name; `None` for a customer-only record.
    pub event: Option<String>,
    /// Event property values, ascending property id, never empty lists.
    pub props: Vec<PropValues>,
    /// Customer property writes, ascending property id; empty `values` removes.
    pub customer_props: Vec<PropValues>,
}
