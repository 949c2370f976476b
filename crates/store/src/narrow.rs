//! Per-customer columns of 32-bit values that are nearly always small: two
//! bytes a value while every value fits, four once one does not. A
//! customer's row offsets into its cell stream (under 64 KiB for all but
//! customers of thousands of rows) and its rows' event-name ids (the first
//! texts a table's dictionary meets) are each a tenth of a table's memory
//! at four bytes.

/// A column of `u32` values kept in 16 bits each while they all fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NarrowVec {
    /// Every value fits in 16 bits.
    Narrow(Vec<u16>),
    /// Some value does not.
    Wide(Vec<u32>),
}

/// A [`NarrowVec`]'s values borrowed as they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NarrowSlice<'a> {
    /// Two bytes a value.
    Narrow(&'a [u16]),
    /// Four bytes a value.
    Wide(&'a [u32]),
}

impl Default for NarrowVec {
    fn default() -> Self {
        NarrowVec::Narrow(Vec::new())
    }
}

impl NarrowVec {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            NarrowVec::Narrow(v) => v.len(),
            NarrowVec::Wide(v) => v.len(),
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` (panics when out of range, like slice indexing).
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            NarrowVec::Narrow(v) => u32::from(v[i]),
            NarrowVec::Wide(v) => v[i],
        }
    }

    /// The last value (0 when empty).
    pub fn last(&self) -> u32 {
        match self.len() {
            0 => 0,
            n => self.get(n - 1),
        }
    }

    /// The values as stored.
    #[inline]
    pub fn as_slice(&self) -> NarrowSlice<'_> {
        match self {
            NarrowVec::Narrow(v) => NarrowSlice::Narrow(v),
            NarrowVec::Wide(v) => NarrowSlice::Wide(v),
        }
    }

    /// Switches to four bytes a value unless `max` fits in two.
    fn fit(&mut self, max: u32) {
        if let NarrowVec::Narrow(v) = self {
            if max > u32::from(u16::MAX) {
                *self = NarrowVec::Wide(v.iter().map(|&x| u32::from(x)).collect());
            }
        }
    }

    /// Appends `value`.
    pub fn push(&mut self, value: u32) {
        self.fit(value);
        match self {
            NarrowVec::Narrow(v) => v.push(value as u16),
            NarrowVec::Wide(v) => v.push(value),
        }
    }

    /// Inserts `value` at position `i`.
    pub fn insert(&mut self, i: usize, value: u32) {
        self.insert_shifting(i, value, 0);
    }

    /// Inserts `value` at position `i`, then adds `grow` to the ascending
    /// values after it (offsets: a row of `grow` bytes went in before them).
    pub fn insert_shifting(&mut self, i: usize, value: u32, grow: u32) {
        self.fit(self.last().max(value).saturating_add(grow));
        if grow == 0 {
            match self {
                NarrowVec::Narrow(v) => v.insert(i, value as u16),
                NarrowVec::Wide(v) => v.insert(i, value),
            }
            return;
        }
        match self {
            NarrowVec::Narrow(v) => {
                v.insert(i, value as u16);
                for x in &mut v[i + 1..] {
                    *x += grow as u16;
                }
            }
            NarrowVec::Wide(v) => {
                v.insert(i, value);
                for x in &mut v[i + 1..] {
                    *x += grow;
                }
            }
        }
    }

    /// Drops the first `n` values.
    pub fn drain_front(&mut self, n: usize) {
        match self {
            NarrowVec::Narrow(v) => drop(v.drain(..n)),
            NarrowVec::Wide(v) => drop(v.drain(..n)),
        }
    }

    /// Drops the first `n` ascending values and makes the rest relative to
    /// the new first one (offsets: the rows before it left the stream).
    pub fn cut_front(&mut self, n: usize) {
        let cut = self.get(n);
        self.drain_front(n);
        match self {
            NarrowVec::Narrow(v) => v.iter_mut().for_each(|x| *x -= cut as u16),
            NarrowVec::Wide(v) => v.iter_mut().for_each(|x| *x -= cut),
        }
    }

    /// Makes room for `more` values growing by a quarter (see
    /// `partition::grow_gently`).
    pub fn reserve_gently(&mut self, more: usize) {
        match self {
            NarrowVec::Narrow(v) => crate::partition::grow_gently(v, more),
            NarrowVec::Wide(v) => crate::partition::grow_gently(v, more),
        }
    }

    /// Address of value `i` and how many values share a cache line, for
    /// prefetching.
    pub fn addr(&self, i: usize) -> (*const u8, usize) {
        match self {
            NarrowVec::Narrow(v) => (v.as_ptr().wrapping_add(i) as *const u8, 32),
            NarrowVec::Wide(v) => (v.as_ptr().wrapping_add(i) as *const u8, 16),
        }
    }
}

impl FromIterator<u32> for NarrowVec {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut out = NarrowVec::default();
        for value in iter {
            out.push(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &NarrowVec) -> Vec<u32> {
        (0..v.len()).map(|i| v.get(i)).collect()
    }

    #[test]
    fn values_widen_past_16_bits_and_keep_their_values() {
        let mut o: NarrowVec = [0, 10, 20].into_iter().collect();
        assert!(matches!(o, NarrowVec::Narrow(_)));
        // A row of 70,000 bytes inserted after the first.
        o.insert_shifting(1, 10, 70_000);
        assert!(matches!(o, NarrowVec::Wide(_)));
        assert_eq!(values(&o), vec![0, 10, 70_010, 70_020]);
        o.cut_front(2);
        assert_eq!(values(&o), vec![0, 10]);
        let mut n: NarrowVec = [0, 5].into_iter().collect();
        n.insert_shifting(1, 2, 3);
        assert_eq!(values(&n), vec![0, 2, 8]);
        n.push(65_535);
        assert!(matches!(n, NarrowVec::Narrow(_)));
        n.push(65_536);
        assert!(matches!(n, NarrowVec::Wide(_)));
        assert_eq!(n.last(), 65_536);
        // Unordered values (event names): inserting widens too.
        let mut names: NarrowVec = [3, 1, 2].into_iter().collect();
        names.insert(1, 1 << 20);
        assert_eq!(values(&names), vec![3, 1 << 20, 1, 2]);
        names.drain_front(2);
        assert_eq!(values(&names), vec![1, 2]);
        assert_eq!(names.as_slice(), NarrowSlice::Wide(&[1, 2]));
    }
}
