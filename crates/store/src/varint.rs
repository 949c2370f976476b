//! Compact in-memory encoding of event rows' cells.
//!
//! A row's cells are stored as a byte stream, ascending by property id; each
//! cell is two LEB128 varints: the property id's delta from the previous cell
//! of the same row (from 0 for the first), then the value, zigzag-encoded as
//! an `i64` so that small negative numbers stay short. Property deltas are
//! mostly 0 or 1 and values are small numbers or dictionary ids, so a cell
//! takes about 4 bytes instead of the 12 of a packed [`Cell`].
//!
//! The stream is memory only: snapshots and the log carry values, never
//! these bytes, so the encoding can change without a format version.

use crate::partition::Cell;

/// Longest varint of a `u64`: 64 bits at 7 per byte.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `v` as an LEB128 varint (7 bits per byte, low first, high bit set
/// on every byte but the last).
#[inline]
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint from the front of `buf` and advances past it. `None`
/// (with `buf` left as it was) when `buf` ends inside the varint or the
/// varint is longer than [`MAX_VARINT_LEN`] bytes.
#[inline]
pub fn get_u64(buf: &mut &[u8]) -> Option<u64> {
    let (&b, rest) = buf.split_first()?;
    // Most property deltas and many values fit one byte.
    if b < 0x80 {
        *buf = rest;
        return Some(u64::from(b));
    }
    get_u64_long(buf)
}

#[inline(never)]
fn get_u64_long(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        // Bits past 64 (only possible in a 10th byte) are dropped, as the
        // encoder never sets them.
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Advances `buf` past one varint without computing its value; `false`
/// (with `buf` left as it was) when `buf` ends inside the varint.
#[inline]
pub fn skip(buf: &mut &[u8]) -> bool {
    match buf.iter().position(|&b| b < 0x80) {
        Some(i) => {
            *buf = &buf[i + 1..];
            true
        }
        None => false,
    }
}

/// Maps an `i64` to a `u64` so that numbers near zero, negative or not,
/// get small codes: 0, -1, 1, -2, 2 ... become 0, 1, 2, 3, 4 ...
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends the encoding of one row's cells to `out`. Cells should be in
/// ascending property id; out-of-order ids still round-trip (the delta
/// wraps), they only take more bytes.
pub fn encode_row(cells: impl IntoIterator<Item = Cell>, out: &mut Vec<u8>) {
    let mut prev = 0u32;
    for c in cells {
        let prop = c.prop;
        put_u64(out, u64::from(prop.wrapping_sub(prev)));
        put_u64(out, zigzag(c.value as i64));
        prev = prop;
    }
}

/// The decoded cells of one encoded row, in stored order.
///
/// Stops at the end of the row, or early at a malformed cell (which
/// [`encode_row`] never writes).
#[derive(Clone, Debug)]
pub struct RowCells<'a> {
    bytes: &'a [u8],
    prop: u32,
}

impl<'a> RowCells<'a> {
    /// The cells encoded in `bytes` (one whole row, as [`encode_row`] wrote it).
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        RowCells { bytes, prop: 0 }
    }

    /// The next value of property `prop`, skipping (without decoding the
    /// values of) cells of smaller property ids; `None` once the row holds no
    /// more of `prop`, after which the iterator is empty. For a set property
    /// repeated calls return its members.
    #[inline]
    pub fn next_value_of(&mut self, prop: u32) -> Option<u64> {
        loop {
            let mut b = self.bytes;
            let Some(delta) = get_u64(&mut b) else {
                break;
            };
            let p = self.prop.wrapping_add(delta as u32);
            if p > prop {
                break;
            }
            if p == prop {
                let Some(v) = get_u64(&mut b) else {
                    break;
                };
                self.bytes = b;
                self.prop = p;
                return Some(unzigzag(v) as u64);
            }
            if !skip(&mut b) {
                break;
            }
            self.bytes = b;
            self.prop = p;
        }
        self.bytes = &[];
        None
    }
}

impl Iterator for RowCells<'_> {
    type Item = Cell;

    #[inline]
    fn next(&mut self) -> Option<Cell> {
        let mut b = self.bytes;
        let cell = get_u64(&mut b).and_then(|delta| {
            let v = get_u64(&mut b)?;
            Some(Cell {
                prop: self.prop.wrapping_add(delta as u32),
                value: unzigzag(v) as u64,
            })
        });
        match cell {
            Some(c) => {
                self.bytes = b;
                self.prop = c.prop;
            }
            None => self.bytes = &[],
        }
        cell
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Each cell takes at least two bytes.
        (0, Some(self.bytes.len() / 2))
    }
}

impl std::iter::FusedIterator for RowCells<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: u64) {
        let mut out = Vec::new();
        put_u64(&mut out, v);
        assert!(out.len() <= MAX_VARINT_LEN);
        let mut b = &out[..];
        assert_eq!(get_u64(&mut b), Some(v), "{v}");
        assert!(b.is_empty());
        let mut b = &out[..];
        assert!(skip(&mut b) && b.is_empty());
    }

    const EDGES: [u64; 14] = [
        0,
        1,
        0x7f,
        0x80,
        0x3fff,
        0x4000,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        i64::MAX as u64,
        i64::MIN as u64,
        u64::MAX,
        u64::MAX - 1,
        -1i64 as u64,
        -10_000i64 as u64,
    ];

    #[test]
    fn varints_round_trip_edge_values() {
        for v in EDGES {
            round_trip(v);
        }
        for shift in 0..64 {
            round_trip(1 << shift);
            round_trip((1 << shift) - 1);
        }
        let mut out = Vec::new();
        put_u64(&mut out, 0);
        put_u64(&mut out, 1);
        put_u64(&mut out, u64::MAX);
        assert_eq!(out.len(), 1 + 1 + MAX_VARINT_LEN);
    }

    #[test]
    fn zigzag_keeps_small_negatives_short() {
        for v in [0i64, 1, -1, 2, -2, 12_345, -12_345, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        let mut out = Vec::new();
        put_u64(&mut out, zigzag(-50));
        assert_eq!(out.len(), 1);
        out.clear();
        // A scaled double -1.5 (x10000).
        put_u64(&mut out, zigzag(-15_000));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn truncated_or_overlong_input_is_refused() {
        let mut out = Vec::new();
        put_u64(&mut out, u64::MAX);
        for n in 0..out.len() {
            let mut b = &out[..n];
            assert_eq!(get_u64(&mut b), None);
            assert_eq!(b.len(), n);
            assert!(!skip(&mut b));
        }
        let long = [0x80u8; 11];
        let mut b = &long[..];
        assert_eq!(get_u64(&mut b), None);
        assert_eq!(b.len(), 11);
    }

    fn cells(pairs: &[(u32, u64)]) -> Vec<Cell> {
        pairs
            .iter()
            .map(|&(prop, value)| Cell { prop, value })
            .collect()
    }

    #[test]
    fn rows_round_trip() {
        let row = cells(&[
            (0, 0),
            (0, 1),
            (3, u64::MAX),
            (4, i64::MIN as u64),
            (9, -7i64 as u64),
            (9, 3_000_000_000),
            (200, 1),
            (70_000, 0),
            (u32::MAX, 5),
        ]);
        let mut out = Vec::new();
        encode_row(row.iter().copied(), &mut out);
        assert_eq!(RowCells::new(&out).collect::<Vec<_>>(), row);
        assert_eq!(RowCells::new(&[]).next(), None);
    }

    #[test]
    fn many_cells_take_few_bytes() {
        let row: Vec<Cell> = (0..1000u32)
            .map(|i| Cell {
                prop: i / 3,
                value: if i % 2 == 0 {
                    u64::from(i)
                } else {
                    -(i as i64) as u64
                },
            })
            .collect();
        let mut out = Vec::new();
        encode_row(row.iter().copied(), &mut out);
        assert!(out.len() <= 1000 * 3, "{}", out.len());
        assert_eq!(RowCells::new(&out).collect::<Vec<_>>(), row);
    }

    #[test]
    fn out_of_order_props_still_round_trip() {
        let row = cells(&[(5, 1), (2, 2), (7, 3)]);
        let mut out = Vec::new();
        encode_row(row.iter().copied(), &mut out);
        assert_eq!(RowCells::new(&out).collect::<Vec<_>>(), row);
    }

    #[test]
    fn values_of_one_property() {
        let row = cells(&[(1, 10), (4, 40), (4, 41), (6, 60), (9, 90)]);
        let mut out = Vec::new();
        encode_row(row.iter().copied(), &mut out);
        let of = |p: u32| {
            let mut it = RowCells::new(&out);
            std::iter::from_fn(move || it.next_value_of(p)).collect::<Vec<_>>()
        };
        assert_eq!(of(4), [40, 41]);
        assert_eq!(of(1), [10]);
        assert_eq!(of(9), [90]);
        assert!(of(0).is_empty() && of(5).is_empty() && of(10).is_empty());
        // Past the property the iterator is spent.
        let mut it = RowCells::new(&out);
        assert_eq!(it.next_value_of(4), Some(40));
        assert_eq!(it.next_value_of(4), Some(41));
        assert_eq!(it.next_value_of(4), None);
        assert_eq!(it.next(), None);
    }

    #[test]
    fn truncated_row_stops_without_panic() {
        let row = cells(&[(1, 300), (2, u64::MAX)]);
        let mut out = Vec::new();
        encode_row(row.iter().copied(), &mut out);
        for n in 0..out.len() {
            let got: Vec<Cell> = RowCells::new(&out[..n]).collect();
            assert!(row.starts_with(&got));
            let mut it = RowCells::new(&out[..n]);
            while it.next_value_of(2).is_some() {}
        }
    }
}
