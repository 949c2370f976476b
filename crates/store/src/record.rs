//! Customer ids and partition routing.

use crate::codec::KeyRef;
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
    /// The id borrowed.
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            CustomerKey::Num(n) => KeyRef::Num(*n),
            CustomerKey::Text(t) => KeyRef::Text(t),
        }
    }

    /// The partition this customer lives in.
    pub fn partition(&self, partitions: u32) -> u32 {
        partition_of(self.as_ref(), partitions)
    }

    /// The id as the API shows it.
    pub fn to_json(&self) -> Value {
        match self {
            CustomerKey::Num(n) => Value::from(*n),
            CustomerKey::Text(t) => Value::from(&**t),
        }
    }
}

/// The partition of a customer: `xxh3(id) % partitions`, where a numeric id
/// hashes its little-endian bytes and a textual id its lowercased bytes.
/// Stable across versions: stored data depends on it (rest spec 4.9).
pub fn partition_of(key: KeyRef<'_>, partitions: u32) -> u32 {
    let h = match key {
        KeyRef::Num(n) => xxh3_64(&n.to_le_bytes()),
        KeyRef::Text(t) => xxh3_64(t.as_bytes()),
    };
    (h % u64::from(partitions.max(1))) as u32
}
