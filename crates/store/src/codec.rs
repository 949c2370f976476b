//! Binary encoding of log entries: a table's records for one partition.
//!
//! Hand-written (little-endian, length-prefixed) because the format is tiny,
//! must stay stable across versions, and decoding sits on the recovery path
//! where a general serializer's per-field overhead shows. Frames around the
//! entries carry a CRC (see `log.rs`); decoding still bounds-checks every read.

use crate::record::{CustomerKey, PropValues, Record, Scalar};
use crate::schema::PropType;

/// A log entry: records of one table, for one partition, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Incarnation id of the table.
    pub table_uid: u64,
    /// Records in the order they are applied.
    pub records: Vec<Record>,
}

/// An entry's bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("log entry is malformed at byte {0}")]
pub struct DecodeError(pub usize);

const FLAG_EVENT: u8 = 1;
const FLAG_TEXT_ID: u8 = 2;

fn kind_code(k: PropType) -> u8 {
    match k {
        PropType::Int => 0,
        PropType::Double => 1,
        PropType::Bool => 2,
        PropType::Text => 3,
    }
}

fn kind_of(code: u8) -> Option<PropType> {
    Some(match code {
        0 => PropType::Int,
        1 => PropType::Double,
        2 => PropType::Bool,
        3 => PropType::Text,
        _ => return None,
    })
}

/// Appends the encoding of `records` of table `table_uid` to `out`.
pub fn encode_entry(table_uid: u64, records: &[&Record], out: &mut Vec<u8>) {
    out.extend_from_slice(&table_uid.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let mut flags = 0u8;
        if r.event.is_some() {
            flags |= FLAG_EVENT;
        }
        if matches!(r.id, CustomerKey::Text(_)) {
            flags |= FLAG_TEXT_ID;
        }
        out.push(flags);
        match &r.id {
            CustomerKey::Num(n) => out.extend_from_slice(&n.to_le_bytes()),
            CustomerKey::Text(t) => put_str16(out, t),
        }
        out.extend_from_slice(&r.stamp.to_le_bytes());
        if let Some(e) = &r.event {
            put_str16(out, e);
        }
        put_props(out, &r.props);
        put_props(out, &r.customer_props);
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Ids (64 B) and event names (128 B) are bounded well below u16.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_props(out: &mut Vec<u8>, props: &[PropValues]) {
    out.extend_from_slice(&(props.len() as u16).to_le_bytes());
    for p in props {
        out.extend_from_slice(&p.prop.to_le_bytes());
        out.push(kind_code(p.kind));
        out.extend_from_slice(&(p.values.len() as u16).to_le_bytes());
        for v in &p.values {
            match v {
                Scalar::Num(n) => out.extend_from_slice(&n.to_le_bytes()),
                Scalar::Text(t) => {
                    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }
    fn string(&mut self, len: usize) -> Result<String, DecodeError> {
        let at = self.pos;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError(at))
    }
    fn props(&mut self) -> Result<Vec<PropValues>, DecodeError> {
        let n = self.u16()? as usize;
        let mut props = Vec::with_capacity(n);
        for _ in 0..n {
            let prop = self.u32()?;
            let at = self.pos;
            let kind = kind_of(self.u8()?).ok_or(DecodeError(at))?;
            let count = self.u16()? as usize;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                values.push(if kind == PropType::Text {
                    let len = self.u32()? as usize;
                    Scalar::Text(self.string(len)?)
                } else {
                    Scalar::Num(self.i64()?)
                });
            }
            props.push(PropValues { prop, kind, values });
        }
        Ok(props)
    }
}

/// Decodes one entry.
pub fn decode_entry(buf: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let table_uid = r.u64()?;
    let n = r.u32()? as usize;
    // Never trust a count for pre-allocation beyond what the bytes can hold.
    let mut records = Vec::with_capacity(n.min(buf.len() / 16));
    for _ in 0..n {
        let flags = r.u8()?;
        let id = if flags & FLAG_TEXT_ID != 0 {
            let len = r.u16()? as usize;
            CustomerKey::Text(r.string(len)?.into_boxed_str())
        } else {
            CustomerKey::Num(r.i64()?)
        };
        let stamp = r.i64()?;
        let event = if flags & FLAG_EVENT != 0 {
            let len = r.u16()? as usize;
            Some(r.string(len)?)
        } else {
            None
        };
        let props = r.props()?;
        let customer_props = r.props()?;
        records.push(Record {
            id,
            stamp,
            event,
            props,
            customer_props,
        });
    }
    if r.pos != buf.len() {
        return Err(DecodeError(r.pos));
    }
    Ok(Entry { table_uid, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let a = Record {
            id: CustomerKey::Text("ana".into()),
            stamp: 1_709_539_200_000,
            event: Some("ride_end".into()),
            props: vec![PropValues {
                prop: 3,
                kind: PropType::Text,
                values: vec![Scalar::Text("x".into()), Scalar::Text("y".into())],
            }],
            customer_props: vec![PropValues {
                prop: 5,
                kind: PropType::Int,
                values: vec![],
            }],
        };
        let b = Record {
            id: CustomerKey::Num(-7),
            stamp: 0,
            event: None,
            props: vec![],
            customer_props: vec![],
        };
        let mut buf = Vec::new();
        encode_entry(9, &[&a, &b], &mut buf);
        let e = decode_entry(&buf).unwrap();
        assert_eq!(
            e,
            Entry {
                table_uid: 9,
                records: vec![a, b]
            }
        );
        for cut in 0..buf.len() {
            assert!(decode_entry(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
