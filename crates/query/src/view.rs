//! The store's customers seen through OSL's `CustomerView`.

use osl::{CustomerId, CustomerView, PropDef, PropKind, RowAccess, Schema};
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::sync::Arc;
use store::index::{PropertyIndex, EVENT_PROP};
use store::narrow::NarrowSlice;
use store::partition::{
    Cell, Customer, Dictionary, NameRows, RowCells, RowPrefetch, TablePartition, SESSION_GAP,
};
use store::record::CustomerKey;
use store::schema::{IdType, PropType, TableSchema};

/// OSL's view of a table schema: property indexes are the store's stable property ids.
pub fn osl_schema(schema: &TableSchema) -> Schema {
    Schema {
        props: schema
            .properties
            .iter()
            .map(|p| PropDef {
                name: p.name.clone(),
                kind: match p.kind {
                    PropType::Int => PropKind::Int,
                    PropType::Double => PropKind::Double,
                    PropType::Bool => PropKind::Bool,
                    PropType::Text => PropKind::Text,
                },
                is_set: p.is_set,
                is_customer: p.is_customer,
                index: p.id,
            })
            .collect(),
        numeric_ids: schema.id_type == IdType::Numeric,
    }
}

/// One stored customer, its partition's dictionary and segment memberships.
pub struct StoredCustomer<'a> {
    /// The customer.
    pub customer: &'a Customer,
    /// The customer's index in its table partition.
    pub index: u32,
    /// The dictionary of its table partition.
    pub dict: &'a Dictionary,
    /// Segment memberships of its table partition.
    pub segments: &'a BTreeMap<String, RoaringBitmap>,
    /// The property index of its table partition (event names included).
    pub prop_index: &'a PropertyIndex,
    /// The customers of each event name, listed once per walk when there
    /// are few names (empty otherwise: `prop_index` answers).
    pub event_customers: &'a [(u64, &'a RoaringBitmap)],
    /// The rows of the event names the program steps through, per
    /// customer, for those its partition lists ([`stepped_names`]).
    pub name_rows: &'a [(u32, Arc<NameRows>)],
}

/// The listed rows of the event names `program` steps through in its
/// guarded row loops, for a walk over `visiting` of the partition's
/// customers. Lists are built (a pass over every customer's names, kept
/// until the rows change) only for a walk over at least a quarter of the
/// customers; a smaller walk uses those already built.
pub fn stepped_names(
    tp: &TablePartition,
    program: &osl::Program,
    visiting: usize,
) -> Vec<(u32, Arc<NameRows>)> {
    let build = visiting.saturating_mul(4) >= tp.customers.len();
    program
        .row_loop_names()
        .iter()
        .filter_map(|t| {
            let id = tp.dict.lookup(t)?;
            Some((id, tp.name_rows(id, build)?))
        })
        .collect()
}

impl<'a> StoredCustomer<'a> {
    /// The view of customer `index` of a table partition.
    /// `None` also once the running query was asked to stop
    /// ([`crate::control`]): callers skip the customer, and the query's
    /// driver then reports the stop, so a cancelled query ends within one customer.
    pub fn of(tp: &'a TablePartition, index: u32) -> Option<StoredCustomer<'a>> {
        if crate::control::stopped() {
            return None;
        }
        Some(StoredCustomer {
            customer: tp.customers.get(index as usize)?,
            index,
            dict: &tp.dict,
            segments: &tp.segments,
            prop_index: &tp.index,
            event_customers: &[],
            name_rows: &[],
        })
    }
}

/// The cells of one property in a row (cells are sorted by property id).
pub struct PropCells<'a> {
    cells: Cells<'a>,
    prop: u32,
}

/// Where a [`PropCells`] reads: an event row's encoded cells or the
/// customer's properties.
enum Cells<'a> {
    Row(RowCells<'a>),
    Customer(std::slice::Iter<'a, Cell>),
}

impl Iterator for PropCells<'_> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        match &mut self.cells {
            Cells::Row(r) => r.next_value_of(self.prop),
            Cells::Customer(cells) => {
                for c in cells.by_ref() {
                    if c.prop == self.prop {
                        return Some(c.value);
                    }
                    if c.prop > self.prop {
                        break;
                    }
                }
                *cells = [].iter();
                None
            }
        }
    }
}

impl CustomerView for StoredCustomer<'_> {
    type Values<'b>
        = PropCells<'b>
    where
        Self: 'b;

    fn row_count(&self) -> usize {
        self.customer.events.len()
    }
    fn stamp(&self, row: usize) -> i64 {
        self.customer.events.stamps[row]
    }
    fn last_stamp(&self) -> Option<i64> {
        self.customer.last_stamp()
    }
    fn kept_session_count(&self, gap: i64) -> Option<i64> {
        (gap == SESSION_GAP).then(|| i64::from(self.customer.sessions()))
    }
    fn rows_named(&self, id: u32) -> Option<&[u32]> {
        self.name_rows
            .iter()
            .find(|(name, _)| *name == id)
            .map(|(_, rows)| rows.of(self.index))
    }
    fn columns(&self) -> (&[i64], osl::NameIds<'_>) {
        let names = match self.customer.events.names.as_slice() {
            NarrowSlice::Narrow(n) => osl::NameIds::Narrow(n),
            NarrowSlice::Wide(n) => osl::NameIds::Wide(n),
        };
        (&self.customer.events.stamps, names)
    }
    fn event(&self, row: usize) -> u32 {
        self.customer.events.names.get(row)
    }
    fn values(&self, row: usize, prop: u32) -> PropCells<'_> {
        PropCells {
            cells: Cells::Row(self.customer.events.row_cells(row)),
            prop,
        }
    }
    fn customer_values(&self, prop: u32) -> PropCells<'_> {
        PropCells {
            cells: Cells::Customer(self.customer.props.iter()),
            prop,
        }
    }
    fn id(&self) -> CustomerId<'_> {
        match &self.customer.key {
            CustomerKey::Num(n) => CustomerId::Int(*n),
            CustomerKey::Text(t) => CustomerId::Text(t),
        }
    }
    fn text(&self, id: u32) -> &str {
        self.dict.text(id)
    }
    fn text_value(&self, id: u32) -> osl::Value {
        self.dict
            .text_arc(id)
            .map_or_else(|| osl::Value::text(""), |t| osl::Value::Text(t.clone()))
    }
    fn text_id(&self, text: &str) -> Option<u32> {
        self.dict.lookup(text)
    }
    fn dictionary_identity(&self) -> Option<usize> {
        Some(self.dict as *const Dictionary as usize)
    }
    fn has_event(&self, id: u32) -> Option<bool> {
        // No bitmap: no customer of the partition has a row of that name.
        let customers = if self.event_customers.is_empty() {
            self.prop_index.customers(EVENT_PROP, u64::from(id))
        } else {
            self.event_customers
                .iter()
                .find(|(name, _)| *name == u64::from(id))
                .map(|(_, b)| *b)
        };
        Some(customers.is_some_and(|b| b.contains(self.index)))
    }
    fn in_segment(&self, name: &str) -> Option<bool> {
        self.segments.get(name).map(|b| b.contains(self.index))
    }
}

/// The row prefetch matching what a program reads with session time
/// `session_time`.
fn prefetch_plan(access: RowAccess, session_time: i64) -> RowPrefetch {
    RowPrefetch {
        first_stamp: access.first_stamp,
        // Session counts read every stamp (the customer keeps those for
        // the default session time), and scans in a time window the
        // stamps of the rows they pass: a look-ahead's jump to a listed
        // row far on is otherwise a miss on its stamp.
        stamps: access.stamps && session_time != SESSION_GAP || access.scoped,
        rows: access.rows,
        cells: access.cells,
        props: access.customer_props,
    }
}

/// Most event names [`for_each_customer`] lists for `has_event`.
const MAX_LISTED_EVENTS: usize = 32;

/// Calls `visit` for every customer of `tp` in `chosen` (every customer
/// when `None`), in index order. Scans over customers are bound by cache
/// misses, so this loads the customer a few places ahead: its own fields
/// eight customers ahead, then the row data `access` says the run reads
/// two ahead. Each view carries `name_rows` ([`stepped_names`]), the
/// listed rows its guarded loops step through. Stops early (without an
/// error) once the running query was asked to stop ([`crate::control`]):
/// the query's driver reports that, so a cancelled query ends within one
/// customer.
pub fn for_each_customer<E>(
    tp: &TablePartition,
    chosen: Option<&RoaringBitmap>,
    access: RowAccess,
    session_time: i64,
    name_rows: &[(u32, Arc<NameRows>)],
    mut visit: impl FnMut(StoredCustomer<'_>) -> Result<(), E>,
) -> Result<(), E> {
    const HEADER_AHEAD: usize = 8;
    const ROWS_AHEAD: usize = 2;
    // Listed rows: where their cells start, then (at `ROWS_AHEAD`) the
    // cells, for at most this many rows a customer.
    const LISTED_AHEAD: usize = 4;
    const LISTED_ROWS: usize = 16;
    let listed: Option<Vec<u32>> = chosen.map(|b| b.iter().collect());
    let count = listed.as_ref().map_or(tp.customers.len(), Vec::len);
    let index_at = |k: usize| -> Option<u32> {
        match &listed {
            Some(l) => l.get(k).copied(),
            None => (k < count).then_some(k as u32),
        }
    };
    let customer_at = |k: usize| index_at(k).and_then(|ci| tp.customers.get(ci as usize));
    let indexed_at =
        |k: usize| index_at(k).and_then(|ci| Some((ci, tp.customers.get(ci as usize)?)));
    let mut plan = prefetch_plan(access, session_time);
    // A pair walk over listed rows reads only the cells of those rows:
    // ask for exactly those (where the rows' cells start, then the cells)
    // instead of the first lines of every column.
    let listed_rows = match name_rows {
        [(_, rows)] if access.listed_cells => Some(rows.as_ref()),
        _ => None,
    };
    if listed_rows.is_some() {
        plan = RowPrefetch::default();
    }
    let rows = plan != RowPrefetch::default();
    // Runs that read rows or customer properties (or the id, which any
    // script may) need more than the first line of the customer.
    let whole_header = plan.rows || plan.props || access.id || listed_rows.is_some();
    let control = crate::control::current();
    // A handful of event names is searched faster in a list than through
    // the index's two hash maps, once per customer.
    let mut event_customers: Vec<(u64, &RoaringBitmap)> = tp
        .index
        .values(EVENT_PROP)
        .take(MAX_LISTED_EVENTS + 1)
        .collect();
    if event_customers.len() > MAX_LISTED_EVENTS {
        event_customers.clear();
    }
    for k in 0..count {
        if control.as_ref().is_some_and(|c| c.stopped()) {
            break;
        }
        if let Some(c) = customer_at(k + HEADER_AHEAD) {
            c.prefetch_header(whole_header);
        }
        if rows {
            if let Some(c) = customer_at(k + ROWS_AHEAD) {
                c.prefetch(plan);
            }
        }
        if let Some(list) = listed_rows {
            if let Some((i, c)) = indexed_at(k + LISTED_AHEAD) {
                for &r in list.of(i).iter().take(LISTED_ROWS) {
                    c.events.prefetch_row_start(r as usize);
                }
            }
            if let Some((i, c)) = indexed_at(k + ROWS_AHEAD) {
                for &r in list.of(i).iter().take(LISTED_ROWS) {
                    c.events.prefetch_row(r as usize);
                }
            }
        }
        let Some(index) = index_at(k) else { break };
        let Some(customer) = tp.customers.get(index as usize) else {
            continue;
        };
        visit(StoredCustomer {
            customer,
            index,
            dict: &tp.dict,
            segments: &tp.segments,
            prop_index: &tp.index,
            event_customers: &event_customers,
            name_rows,
        })?;
    }
    Ok(())
}
