//! Binary encoding of log entries: one table's records for one partition.
//!
//! Validation encodes records straight into entry bytes, and partitions
//! apply records by reading those bytes through borrowed views, on the live
//! path and on replay alike: one representation, one apply path.
//!
//! Hand-written (little-endian, length-prefixed) because the format is tiny,
//! must stay stable across versions, and sits on the insert and recovery hot
//! paths. Frames around entries carry a CRC (`log.rs`); decoding still
//! bounds-checks every read and never panics on damaged bytes.
//!
//! Entry: `table_uid u64`, then records to the end. Record: `flags u8`
//! (1: has event, 2: text id), id (`i64`, or `u16` length + bytes), `stamp
//! i64`, event (`u16` length + bytes), event props, customer props. Props:
//! `count u16`, each `prop u32`, `kind u8`, `n u16`, n values (`i64`, or for
//! text `u32` length + bytes).

use crate::schema::PropType;
use std::borrow::Cow;

/// An entry's bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("log entry is malformed at byte {0}")]
pub struct DecodeError(pub usize);

const FLAG_EVENT: u8 = 1;
const FLAG_TEXT_ID: u8 = 2;
const FLAG_RETENTION: u8 = 4;

/// A customer id, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    /// Numeric id.
    Num(i64),
    /// Lowercased textual id.
    Text(&'a str),
}

/// A value to encode: a number (int, fixed-point double, bool) or text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScalarRef<'a> {
    /// Int, fixed-point double or 0/1 bool.
    Num(i64),
    /// Text.
    Text(Cow<'a, str>),
}

/// A decoded value, borrowed from the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Int, fixed-point double or 0/1 bool.
    Num(i64),
    /// Text.
    Text(&'a str),
}

/// One property's values, to encode.
#[derive(Clone, Copy, Debug)]
pub struct PropRef<'a, 'v> {
    /// Property id.
    pub prop: u32,
    /// Its type (kept so replay can skip a dropped property's values).
    pub kind: PropType,
    /// One value, or a set's members; empty for "no value" (removal).
    pub values: &'v [ScalarRef<'a>],
}

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

/// Starts an entry of table `table_uid` in `out`.
pub fn begin_entry(table_uid: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&table_uid.to_le_bytes());
}

/// Appends one record to an entry begun with [`begin_entry`].
pub fn encode_record(
    out: &mut Vec<u8>,
    id: KeyRef<'_>,
    stamp: i64,
    event: Option<&str>,
    props: &[PropRef<'_, '_>],
    customer_props: &[PropRef<'_, '_>],
) {
    begin_record(out, id, stamp, event);
    for section in [props, customer_props] {
        put_prop_count(out, section.len());
        for p in section {
            put_prop(out, p.prop, p.kind, p.values.iter());
        }
    }
}

/// Appends a retention record: apply drops every event of the table's
/// customers older than `cutoff` (0: none), then all but the newest `max`
/// (0: no limit). Logged like any record, so replay trims identically.
pub fn encode_retention(out: &mut Vec<u8>, cutoff: i64, max: i64) {
    out.push(FLAG_RETENTION);
    out.extend_from_slice(&max.to_le_bytes());
    out.extend_from_slice(&cutoff.to_le_bytes());
    put_prop_count(out, 0);
    put_prop_count(out, 0);
}

/// Writes a record's head; two prop sections (event, then customer) must follow,
/// each [`put_prop_count`] then that many [`put_prop`].
pub fn begin_record(out: &mut Vec<u8>, id: KeyRef<'_>, stamp: i64, event: Option<&str>) {
    let mut flags = 0u8;
    if event.is_some() {
        flags |= FLAG_EVENT;
    }
    if matches!(id, KeyRef::Text(_)) {
        flags |= FLAG_TEXT_ID;
    }
    out.push(flags);
    match id {
        KeyRef::Num(n) => out.extend_from_slice(&n.to_le_bytes()),
        KeyRef::Text(t) => put_str16(out, t),
    }
    out.extend_from_slice(&stamp.to_le_bytes());
    if let Some(e) = event {
        put_str16(out, e);
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Ids (64 B) and event names (128 B) are bounded well below u16.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Writes the number of properties in the next section (at most 65,535: a
/// table has at most 3,096 properties).
pub fn put_prop_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u16).to_le_bytes());
}

/// Writes one property and its values (at most 1,000 per record).
pub fn put_prop<'v, 'a: 'v>(
    out: &mut Vec<u8>,
    prop: u32,
    kind: PropType,
    values: impl ExactSizeIterator<Item = &'v ScalarRef<'a>>,
) {
    out.extend_from_slice(&prop.to_le_bytes());
    out.push(kind_code(kind));
    out.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for v in values {
        match v {
            ScalarRef::Num(n) => out.extend_from_slice(&n.to_le_bytes()),
            ScalarRef::Text(t) => {
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
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
    fn str(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError(at))
    }
    /// Checks a props section and returns it as a view.
    fn props(&mut self) -> Result<PropsView<'a>, DecodeError> {
        let start = self.pos;
        let n = self.u16()?;
        for _ in 0..n {
            self.u32()?;
            let at = self.pos;
            let kind = kind_of(self.u8()?).ok_or(DecodeError(at))?;
            let count = self.u16()?;
            for _ in 0..count {
                if kind == PropType::Text {
                    let len = self.u32()? as usize;
                    self.str(len)?;
                } else {
                    self.take(8)?;
                }
            }
        }
        Ok(PropsView {
            bytes: &self.buf[start..self.pos],
        })
    }
}

/// A record read from an entry.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The customer.
    pub id: KeyRef<'a>,
    /// Milliseconds since the epoch.
    pub stamp: i64,
    /// Event name; `None` for a customer-only record.
    pub event: Option<&'a str>,
    /// Event properties, ascending id.
    pub props: PropsView<'a>,
    /// Customer property writes, ascending id; no values means removal.
    pub customer_props: PropsView<'a>,
    /// A retention record (see [`encode_retention`]): `stamp` is the cutoff
    /// and `id` (numeric) the per-customer maximum.
    pub retention: bool,
}

/// A checked props section.
#[derive(Clone, Copy, Debug)]
pub struct PropsView<'a> {
    bytes: &'a [u8],
}

impl<'a> PropsView<'a> {
    /// The properties in order: id, type and values.
    pub fn iter(&self) -> impl Iterator<Item = (u32, PropType, ValuesView<'a>)> + 'a {
        let mut r = Reader {
            buf: self.bytes,
            pos: 0,
        };
        let n = r.u16().unwrap_or(0);
        (0..n).map_while(move |_| {
            let prop = r.u32().ok()?;
            let kind = kind_of(r.u8().ok()?)?;
            let count = r.u16().ok()?;
            let start = r.pos;
            for _ in 0..count {
                if kind == PropType::Text {
                    let len = r.u32().ok()? as usize;
                    r.take(len).ok()?;
                } else {
                    r.take(8).ok()?;
                }
            }
            Some((
                prop,
                kind,
                ValuesView {
                    bytes: &r.buf[start..r.pos],
                    kind,
                    count,
                },
            ))
        })
    }
}

/// The values of one property in a record.
#[derive(Clone, Copy, Debug)]
pub struct ValuesView<'a> {
    bytes: &'a [u8],
    kind: PropType,
    count: u16,
}

impl<'a> ValuesView<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when there is no value (a customer property removal).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = ValueRef<'a>> + 'a {
        let mut r = Reader {
            buf: self.bytes,
            pos: 0,
        };
        let kind = self.kind;
        (0..self.count).map_while(move |_| {
            if kind == PropType::Text {
                let len = r.u32().ok()? as usize;
                Some(ValueRef::Text(r.str(len).ok()?))
            } else {
                Some(ValueRef::Num(r.u64().ok()? as i64))
            }
        })
    }
}

/// Decodes an entry: its table and its records, all checked.
pub fn decode_entry(buf: &[u8]) -> Result<(u64, Vec<RecordView<'_>>), DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let table_uid = r.u64()?;
    let mut records = Vec::new();
    while r.pos < buf.len() {
        let flags = r.u8()?;
        let id = if flags & FLAG_TEXT_ID != 0 {
            let len = r.u16()? as usize;
            KeyRef::Text(r.str(len)?)
        } else {
            KeyRef::Num(r.u64()? as i64)
        };
        let stamp = r.u64()? as i64;
        let event = if flags & FLAG_EVENT != 0 {
            let len = r.u16()? as usize;
            Some(r.str(len)?)
        } else {
            None
        };
        let props = r.props()?;
        let customer_props = r.props()?;
        let retention = flags & FLAG_RETENTION != 0;
        records.push(RecordView {
            id,
            stamp,
            event,
            props,
            customer_props,
            retention,
        });
    }
    Ok((table_uid, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let tags = [ScalarRef::Text("x".into()), ScalarRef::Text("y".into())];
        let mut buf = Vec::new();
        begin_entry(9, &mut buf);
        encode_record(
            &mut buf,
            KeyRef::Text("ana"),
            1_709_539_200_000,
            Some("ride_end"),
            &[PropRef {
                prop: 3,
                kind: PropType::Text,
                values: &tags,
            }],
            &[PropRef {
                prop: 5,
                kind: PropType::Int,
                values: &[],
            }],
        );
        encode_record(&mut buf, KeyRef::Num(-7), 0, None, &[], &[]);
        let (uid, recs) = decode_entry(&buf).unwrap();
        assert_eq!(uid, 9);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].id, KeyRef::Text("ana"));
        assert_eq!(recs[0].event, Some("ride_end"));
        let props: Vec<_> = recs[0]
            .props
            .iter()
            .map(|(p, k, v)| (p, k, v.iter().collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            props,
            vec![(
                3,
                PropType::Text,
                vec![ValueRef::Text("x"), ValueRef::Text("y")]
            )]
        );
        let cust: Vec<_> = recs[0]
            .customer_props
            .iter()
            .map(|(p, _, v)| (p, v.len()))
            .collect();
        assert_eq!(cust, vec![(5, 0)]);
        assert_eq!(
            (recs[1].id, recs[1].stamp, recs[1].event),
            (KeyRef::Num(-7), 0, None)
        );
        for cut in 9..buf.len() {
            if let Ok((_, r)) = decode_entry(&buf[..cut]) {
                // A cut exactly between records decodes the records before it.
                assert!(r.len() < 2, "cut at {cut}");
            }
        }
        assert!(decode_entry(&buf[..4]).is_err());
    }
}
