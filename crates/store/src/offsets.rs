//! Where each of a customer's rows starts in its cell stream: two bytes an
//! offset while the stream stays under 64 KiB (nearly every customer: 1,300
//! rows of about 12 bytes), four beyond. The offsets are a tenth of a
//! table's memory at four bytes each.

/// Byte offsets of rows in a customer's cell stream, ascending, one more
/// than the rows (the last is the stream's length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellOffsets {
    /// Every offset fits in 16 bits.
    Narrow(Vec<u16>),
    /// Some offset does not.
    Wide(Vec<u32>),
}

impl Default for CellOffsets {
    fn default() -> Self {
        CellOffsets::Narrow(Vec::new())
    }
}

impl CellOffsets {
    /// Number of offsets.
    pub fn len(&self) -> usize {
        match self {
            CellOffsets::Narrow(v) => v.len(),
            CellOffsets::Wide(v) => v.len(),
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset `i` (panics when out of range, like slice indexing).
    #[inline]
    pub fn get(&self, i: usize) -> usize {
        match self {
            CellOffsets::Narrow(v) => usize::from(v[i]),
            CellOffsets::Wide(v) => v[i] as usize,
        }
    }

    /// The last offset: the stream's length (0 when empty).
    pub fn last(&self) -> usize {
        match self.len() {
            0 => 0,
            n => self.get(n - 1),
        }
    }

    /// Switches to four-byte offsets unless `max` fits in two.
    fn fit(&mut self, max: usize) {
        if let CellOffsets::Narrow(v) = self {
            if max > usize::from(u16::MAX) {
                *self = CellOffsets::Wide(v.iter().map(|&x| u32::from(x)).collect());
            }
        }
    }

    /// Appends offset `at`.
    pub fn push(&mut self, at: usize) {
        self.fit(at);
        match self {
            CellOffsets::Narrow(v) => v.push(at as u16),
            CellOffsets::Wide(v) => v.push(at as u32),
        }
    }

    /// Inserts offset `at` at position `i`, then adds `grow` to the offsets
    /// after it (a row of `grow` bytes inserted before them).
    pub fn insert(&mut self, i: usize, at: usize, grow: usize) {
        self.fit(self.last().max(at) + grow);
        match self {
            CellOffsets::Narrow(v) => {
                v.insert(i, at as u16);
                for x in &mut v[i + 1..] {
                    *x += grow as u16;
                }
            }
            CellOffsets::Wide(v) => {
                v.insert(i, at as u32);
                for x in &mut v[i + 1..] {
                    *x += grow as u32;
                }
            }
        }
    }

    /// Drops the first `rows` offsets and makes the rest relative to the
    /// new first one (the rows before it were cut from the stream).
    pub fn cut_front(&mut self, rows: usize) {
        let cut = self.get(rows);
        match self {
            CellOffsets::Narrow(v) => {
                v.drain(..rows);
                for x in v.iter_mut() {
                    *x -= cut as u16;
                }
            }
            CellOffsets::Wide(v) => {
                v.drain(..rows);
                for x in v.iter_mut() {
                    *x -= cut as u32;
                }
            }
        }
    }

    /// Makes room for `more` offsets growing by a quarter (see
    /// `partition::grow_gently`).
    pub fn reserve_gently(&mut self, more: usize) {
        match self {
            CellOffsets::Narrow(v) => crate::partition::grow_gently(v, more),
            CellOffsets::Wide(v) => crate::partition::grow_gently(v, more),
        }
    }

    /// Address of offset `i` and how many offsets share a cache line, for
    /// prefetching.
    pub fn addr(&self, i: usize) -> (*const u8, usize) {
        match self {
            CellOffsets::Narrow(v) => (v.as_ptr().wrapping_add(i) as *const u8, 32),
            CellOffsets::Wide(v) => (v.as_ptr().wrapping_add(i) as *const u8, 16),
        }
    }
}

impl FromIterator<usize> for CellOffsets {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut out = CellOffsets::default();
        for at in iter {
            out.push(at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_widen_past_64_kib_and_keep_their_values() {
        let mut o: CellOffsets = [0, 10, 20].into_iter().collect();
        assert!(matches!(o, CellOffsets::Narrow(_)));
        // A row of 70,000 bytes inserted after the first.
        o.insert(1, 10, 70_000);
        assert!(matches!(o, CellOffsets::Wide(_)));
        assert_eq!(
            (0..o.len()).map(|i| o.get(i)).collect::<Vec<_>>(),
            vec![0, 10, 70_010, 70_020]
        );
        o.cut_front(2);
        assert_eq!(
            (0..o.len()).map(|i| o.get(i)).collect::<Vec<_>>(),
            vec![0, 10]
        );
        let mut n: CellOffsets = [0, 5].into_iter().collect();
        n.insert(1, 2, 3);
        assert_eq!(
            (0..n.len()).map(|i| n.get(i)).collect::<Vec<_>>(),
            vec![0, 2, 8]
        );
        n.push(65_535);
        assert!(matches!(n, CellOffsets::Narrow(_)));
        n.push(65_536);
        assert!(matches!(n, CellOffsets::Wide(_)));
        assert_eq!(n.last(), 65_536);
    }
}
