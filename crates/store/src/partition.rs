//! One partition's in-memory state: per table, its customers, each with a
//! stamp-ordered event sequence, plus the partition's text dictionary.
//!
//! Apply is deterministic: the same entries in the same order give the same
//! state (no clocks, no randomness, no hash-map iteration order).

use crate::log::Lsn;
use crate::record::{CustomerKey, PropValues, Record, Scalar};
use crate::schema::TableSchema;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Text values and event names of one table in one partition, as u32 ids.
#[derive(Default, Debug)]
pub struct Dictionary {
    texts: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Dictionary {
    /// The id of `text`, adding it if new.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        let t: Arc<str> = Arc::from(text);
        self.texts.push(t.clone());
        self.ids.insert(t, id);
        id
    }

    /// The id of `text`, if present.
    pub fn lookup(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The text of an id (empty for an unknown id, which apply never produces).
    pub fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }

    /// All texts in id order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(|t| &**t)
    }

    /// Number of distinct texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when no text was interned.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// One stored value of a property: numbers as i64 bits (doubles in fixed
/// point, bools 0/1), text as a dictionary id. A set has one cell per member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// Property id.
    pub prop: u32,
    /// Encoded value.
    pub value: u64,
}

/// A customer's events, columnar: row `i` has `stamps[i]`, `names[i]` and
/// the cells `cells[cell_start[i]..cell_start[i + 1]]` (ascending property id).
#[derive(Default, Debug)]
pub struct Events {
    /// Milliseconds since the epoch, ascending.
    pub stamps: Vec<i64>,
    /// Event name dictionary ids.
    pub names: Vec<u32>,
    /// Start of each row's cells; one more entry than rows.
    pub cell_start: Vec<u32>,
    /// Property values of all rows.
    pub cells: Vec<Cell>,
}

impl Events {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// The cells of row `i`.
    pub fn row_cells(&self, i: usize) -> &[Cell] {
        let (s, e) = (self.cell_start[i] as usize, self.cell_start[i + 1] as usize);
        &self.cells[s..e]
    }

    fn insert(&mut self, at: usize, stamp: i64, name: u32, row: &[Cell]) {
        if self.cell_start.is_empty() {
            self.cell_start.push(0);
        }
        let cell_at = self.cell_start[at] as usize;
        self.stamps.insert(at, stamp);
        self.names.insert(at, name);
        self.cells.splice(cell_at..cell_at, row.iter().copied());
        self.cell_start.insert(at + 1, (cell_at + row.len()) as u32);
        for s in &mut self.cell_start[at + 2..] {
            *s += row.len() as u32;
        }
    }

    fn remove_prop(&mut self, prop: u32) {
        if !self.cells.iter().any(|c| c.prop == prop) {
            return;
        }
        let mut cells = Vec::with_capacity(self.cells.len());
        let mut starts = Vec::with_capacity(self.cell_start.len());
        starts.push(0);
        for i in 0..self.len() {
            cells.extend(self.row_cells(i).iter().filter(|c| c.prop != prop));
            starts.push(cells.len() as u32);
        }
        self.cells = cells;
        self.cell_start = starts;
    }
}

/// A customer: id, customer properties and events.
#[derive(Debug)]
pub struct Customer {
    /// The customer id.
    pub key: CustomerKey,
    /// Customer property values, ascending property id.
    pub props: Vec<Cell>,
    /// Events in stored order (stamp, then event rank, then arrival).
    pub events: Events,
}

/// One table's data within one partition.
#[derive(Default, Debug)]
pub struct TablePartition {
    /// Customers in order of first appearance.
    pub customers: Vec<Customer>,
    index: HashMap<CustomerKey, u32>,
    /// Dictionary of texts.
    pub dict: Dictionary,
    /// `event_order` rank by dictionary id (filled lazily).
    ranks: Vec<u16>,
    /// Number of events held.
    pub event_count: u64,
    /// Reused buffer for a row's cells during apply (no allocation per record).
    scratch: Vec<Cell>,
}

impl TablePartition {
    /// The customer with that id.
    pub fn customer(&self, key: &CustomerKey) -> Option<&Customer> {
        self.index.get(key).map(|&i| &self.customers[i as usize])
    }

    fn rank(&mut self, schema: &TableSchema, name: u32) -> u16 {
        while self.ranks.len() <= name as usize {
            let id = self.ranks.len() as u32;
            let r = schema.event_rank(self.dict.text(id));
            self.ranks.push(r);
        }
        self.ranks[name as usize]
    }

    fn encode(
        &mut self,
        schema: &TableSchema,
        pv: &PropValues,
        customer: bool,
        out: &mut Vec<Cell>,
    ) {
        // Values of a property dropped (or never known) are skipped: replay of
        // old entries under the current schema gives the same state as memory.
        let Some(def) = schema.property_by_id(pv.prop) else {
            return;
        };
        if def.kind != pv.kind || def.is_customer != customer {
            return;
        }
        for v in &pv.values {
            let value = match v {
                Scalar::Num(n) => *n as u64,
                Scalar::Text(t) => u64::from(self.dict.intern(t)),
            };
            out.push(Cell {
                prop: pv.prop,
                value,
            });
        }
    }

    /// Applies one record. With `dedup`, an event equal to a stored one is
    /// dropped (rest spec 4.8); snapshot restore passes `false` because a
    /// snapshot already holds exactly the stored rows.
    pub fn apply(&mut self, schema: &TableSchema, rec: &Record, dedup: bool) {
        let ci = match self.index.get(&rec.id) {
            Some(&i) => i as usize,
            None => {
                self.index
                    .insert(rec.id.clone(), self.customers.len() as u32);
                self.customers.push(Customer {
                    key: rec.id.clone(),
                    props: Vec::new(),
                    events: Events::default(),
                });
                self.customers.len() - 1
            }
        };
        let mut scratch = Vec::new();
        for pv in &rec.customer_props {
            scratch.clear();
            self.encode(schema, pv, true, &mut scratch);
            if schema.property_by_id(pv.prop).is_none() {
                continue;
            }
            let props = &mut self.customers[ci].props;
            props.retain(|c| c.prop != pv.prop);
            let at = props.partition_point(|c| c.prop < pv.prop);
            props.splice(at..at, scratch.iter().copied());
        }
        let Some(event) = &rec.event else { return };
        let name = self.dict.intern(event);
        let rank = self.rank(schema, name);
        let mut row = std::mem::take(&mut self.scratch);
        row.clear();
        for pv in &rec.props {
            self.encode(schema, pv, false, &mut row);
        }
        let mut ranks = std::mem::take(&mut self.ranks);
        let events = &self.customers[ci].events;
        // Position: after every row with a smaller stamp, or the same stamp and
        // a rank not after ours (ties keep arrival order).
        let mut at = events.stamps.partition_point(|&s| s <= rec.stamp);
        while at > 0
            && events.stamps[at - 1] == rec.stamp
            && ranks[events.names[at - 1] as usize] > rank
        {
            at -= 1;
        }
        let duplicate = dedup && {
            let mut i = at;
            let mut found = false;
            while i > 0 && events.stamps[i - 1] == rec.stamp && !found {
                i -= 1;
                found = events.names[i] == name && same_cells(events.row_cells(i), &row);
            }
            found
        };
        std::mem::swap(&mut self.ranks, &mut ranks);
        if !duplicate {
            self.customers[ci].events.insert(at, rec.stamp, name, &row);
            self.event_count += 1;
        }
        self.scratch = row;
    }

    /// Removes every value of property `prop` from events and customers.
    pub fn remove_property(&mut self, prop: u32) {
        for c in &mut self.customers {
            c.props.retain(|cell| cell.prop != prop);
            c.events.remove_prop(prop);
        }
    }

    /// Records that rebuild this table's state exactly when restored in order
    /// (customers in order, each first with its properties, then its events).
    pub fn to_records(&self, schema: &TableSchema) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.event_count as usize + self.customers.len());
        for c in &self.customers {
            out.push(Record {
                id: c.key.clone(),
                stamp: 0,
                event: None,
                props: Vec::new(),
                customer_props: self.decode_cells(schema, &c.props),
            });
            for i in 0..c.events.len() {
                out.push(Record {
                    id: c.key.clone(),
                    stamp: c.events.stamps[i],
                    event: Some(self.dict.text(c.events.names[i]).to_string()),
                    props: self.decode_cells(schema, c.events.row_cells(i)),
                    customer_props: Vec::new(),
                });
            }
        }
        out
    }

    /// Groups cells back into per-property values.
    pub fn decode_cells(&self, schema: &TableSchema, cells: &[Cell]) -> Vec<PropValues> {
        let mut out: Vec<PropValues> = Vec::new();
        for cell in cells {
            let Some(def) = schema.property_by_id(cell.prop) else {
                continue;
            };
            let v = if def.kind == crate::schema::PropType::Text {
                Scalar::Text(self.dict.text(cell.value as u32).to_string())
            } else {
                Scalar::Num(cell.value as i64)
            };
            match out.last_mut() {
                Some(last) if last.prop == cell.prop => last.values.push(v),
                _ => out.push(PropValues {
                    prop: cell.prop,
                    kind: def.kind,
                    values: vec![v],
                }),
            }
        }
        out
    }
}

/// Equal as rows: same cells, with set members compared as sets.
fn same_cells(a: &[Cell], b: &[Cell]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let (mut x, mut y) = (a.to_vec(), b.to_vec());
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// All tables' data in one partition, and how far the log has been applied.
#[derive(Default, Debug)]
pub struct PartitionState {
    /// Last log entry applied.
    pub applied: Lsn,
    /// Tables by incarnation id.
    pub tables: BTreeMap<u64, TablePartition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::parse_create_body;
    use serde_json::json;

    fn schema() -> TableSchema {
        parse_create_body(
            "t",
            1,
            &json!({"id_type": "textual", "event_order": ["ride_end", "payment"], "properties": [
                {"name": "tags", "type": "text", "is_set": true}, {"name": "n", "type": "int"}]}),
        )
        .unwrap()
    }

    fn ev(stamp: i64, event: &str, tags: &[&str]) -> Record {
        let props = if tags.is_empty() {
            vec![]
        } else {
            vec![PropValues {
                prop: 0,
                kind: crate::schema::PropType::Text,
                values: tags.iter().map(|t| Scalar::Text(t.to_string())).collect(),
            }]
        };
        Record {
            id: CustomerKey::Text("a".into()),
            stamp,
            event: Some(event.into()),
            props,
            customer_props: vec![],
        }
    }

    fn names(t: &TablePartition) -> Vec<(i64, String)> {
        let e = &t.customers[0].events;
        (0..e.len())
            .map(|i| (e.stamps[i], t.dict.text(e.names[i]).to_string()))
            .collect()
    }

    #[test]
    fn order_by_stamp_rank_arrival_and_dedup() {
        let s = schema();
        let mut t = TablePartition::default();
        for r in [
            ev(5, "payment", &[]),
            ev(5, "zzz", &[]),
            ev(5, "ride_end", &[]),
            ev(1, "x", &[]),
            ev(5, "aaa", &[]),
        ] {
            t.apply(&s, &r, true);
        }
        assert_eq!(
            names(&t),
            vec![
                (1, "x".into()),
                (5, "ride_end".into()),
                (5, "payment".into()),
                (5, "zzz".into()),
                (5, "aaa".into())
            ]
        );
        t.apply(&s, &ev(5, "zzz", &[]), true);
        t.apply(&s, &ev(7, "s", &["a", "b"]), true);
        t.apply(&s, &ev(7, "s", &["b", "a"]), true);
        t.apply(&s, &ev(7, "s", &["b"]), true);
        assert_eq!(t.event_count, 7);
        assert_eq!(t.customers[0].events.len(), 7);
    }

    #[test]
    fn snapshot_records_restore_identically() {
        let s = schema();
        let mut t = TablePartition::default();
        for r in [
            ev(5, "payment", &["q"]),
            ev(5, "ride_end", &[]),
            ev(2, "x", &["a", "b"]),
        ] {
            t.apply(&s, &r, true);
        }
        let mut u = TablePartition::default();
        for text in t.dict.texts() {
            u.dict.intern(text);
        }
        for r in t.to_records(&s) {
            u.apply(&s, &r, false);
        }
        assert_eq!(names(&t), names(&u));
        assert_eq!(t.customers[0].events.cells, u.customers[0].events.cells);
    }
}
