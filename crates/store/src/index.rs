//! Per table partition: a roaring bitmap of customers (by their index in the
//! partition) for each (property, value), kept current on apply.
//!
//! Values are the stored cell encodings (numbers as i64 bits, text as
//! dictionary ids), so a text compare is an integer compare. Event names are
//! indexed under [`EVENT_PROP`]. Bitmaps are sets, so the index is the same
//! whatever order the same records were applied in, and replay rebuilds it
//! exactly.

use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

/// The pseudo property id under which event names are indexed.
pub const EVENT_PROP: u32 = u32::MAX;

/// Customer bitmaps by property, then by value.
#[derive(Default, Debug)]
pub struct PropertyIndex {
    props: FxHashMap<u32, FxHashMap<u64, RoaringBitmap>>,
}

impl PropertyIndex {
    /// Records that customer `customer` has `value` for `prop`.
    pub fn add(&mut self, prop: u32, value: u64, customer: u32) {
        self.props
            .entry(prop)
            .or_default()
            .entry(value)
            .or_default()
            .insert(customer);
    }

    /// Forgets that customer `customer` has `value` for `prop` (customer
    /// properties change; event values are never taken back).
    pub fn remove(&mut self, prop: u32, value: u64, customer: u32) {
        if let Some(values) = self.props.get_mut(&prop) {
            if let Some(b) = values.get_mut(&value) {
                b.remove(customer);
                if b.is_empty() {
                    values.remove(&value);
                }
            }
        }
    }

    /// The customers having `value` for `prop`.
    pub fn customers(&self, prop: u32, value: u64) -> Option<&RoaringBitmap> {
        self.props.get(&prop)?.get(&value)
    }

    /// Every value of `prop` with its customers (in no particular order).
    pub fn values(&self, prop: u32) -> impl Iterator<Item = (u64, &RoaringBitmap)> {
        self.props
            .get(&prop)
            .into_iter()
            .flat_map(|m| m.iter().map(|(v, b)| (*v, b)))
    }

    /// Customers having any value of `prop`.
    pub fn any_value(&self, prop: u32) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (_, b) in self.values(prop) {
            out |= b;
        }
        out
    }

    /// Drops everything indexed for `prop`.
    pub fn drop_property(&mut self, prop: u32) {
        self.props.remove(&prop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_and_union() {
        let mut ix = PropertyIndex::default();
        ix.add(1, 10, 0);
        ix.add(1, 10, 2);
        ix.add(1, 11, 2);
        ix.add(EVENT_PROP, 0, 5);
        assert_eq!(ix.customers(1, 10).map(RoaringBitmap::len), Some(2));
        assert_eq!(ix.any_value(1).len(), 2);
        ix.remove(1, 10, 0);
        ix.remove(1, 11, 2);
        assert_eq!(ix.values(1).count(), 1);
        ix.drop_property(1);
        assert_eq!(ix.any_value(1).len(), 0);
        assert_eq!(ix.any_value(EVENT_PROP).len(), 1);
    }
}
