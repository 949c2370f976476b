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
    /// Per property, the customers with any value, kept while the property
    /// only gains values (events never lose theirs). After a removal it is
    /// `None` and [`PropertyIndex::any_value`] computes the union instead: a
    /// customer may still hold another value, and finding out would cost a
    /// look at every value.
    any: FxHashMap<u32, Option<RoaringBitmap>>,
}

impl PropertyIndex {
    /// Records that customer `customer` has `value` for `prop`.
    pub fn add(&mut self, prop: u32, value: u64, customer: u32) {
        let added = self
            .props
            .entry(prop)
            .or_default()
            .entry(value)
            .or_default()
            .insert(customer);
        if added {
            if let Some(any) = self
                .any
                .entry(prop)
                .or_insert_with(|| Some(RoaringBitmap::new()))
            {
                any.insert(customer);
            }
        }
    }

    /// Forgets that customer `customer` has `value` for `prop` (customer
    /// properties change; event values are never taken back).
    pub fn remove(&mut self, prop: u32, value: u64, customer: u32) {
        if let Some(values) = self.props.get_mut(&prop) {
            if let Some(b) = values.get_mut(&value) {
                if b.remove(customer) {
                    self.any.insert(prop, None);
                }
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
    pub fn any_value(&self, prop: u32) -> std::borrow::Cow<'_, RoaringBitmap> {
        match self.any.get(&prop) {
            Some(Some(any)) => std::borrow::Cow::Borrowed(any),
            // The multi-way union works container by container, without the
            // intermediate results of repeated `|=` (hundreds of values).
            _ => {
                use roaring::MultiOps;
                std::borrow::Cow::Owned(self.values(prop).map(|(_, b)| b).union())
            }
        }
    }

    /// Drops everything indexed for `prop`.
    pub fn drop_property(&mut self, prop: u32) {
        self.props.remove(&prop);
        self.any.remove(&prop);
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
        // Customer 2 lost one value but keeps the other.
        ix.remove(1, 11, 2);
        assert_eq!(ix.values(1).count(), 1);
        assert_eq!(ix.any_value(1).iter().collect::<Vec<_>>(), vec![2]);
        ix.add(1, 12, 7);
        assert_eq!(ix.any_value(1).iter().collect::<Vec<_>>(), vec![2, 7]);
        ix.drop_property(1);
        assert_eq!(ix.any_value(1).len(), 0);
        assert_eq!(ix.any_value(EVENT_PROP).len(), 1);
    }
}
