//! One partition's in-memory state: per table, its customers, each with a
//! stamp-ordered event sequence, plus the partition's text dictionary.
//!
//! Apply is deterministic: the same entries in the same order give the same
//! state (no clocks, no randomness, no hash-map iteration order).

use crate::codec::{
    begin_entry, begin_record, put_prop, put_prop_count, KeyRef, PropsView, RecordView, ScalarRef,
    ValueRef,
};
use crate::index::{PropertyIndex, EVENT_PROP};
use crate::log::Lsn;
use crate::narrow::{NarrowSlice, NarrowVec};
use crate::record::CustomerKey;
use crate::schema::TableSchema;
use crate::varint::encode_row;
pub use crate::varint::RowCells;
use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
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

    /// The shared text of an id (`None` for an unknown id).
    pub fn text_arc(&self, id: u32) -> Option<&Arc<str>> {
        self.texts.get(id as usize)
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
///
/// Packed to 12 bytes (from 16) for customer properties and buffers; event
/// rows hold their cells encoded (see [`crate::varint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C, packed(4))]
pub struct Cell {
    /// Property id.
    pub prop: u32,
    /// Encoded value.
    pub value: u64,
}

/// A customer's events, columnar: row `i` has `stamps[i]`, `names.get(i)`
/// and the cells encoded in `cells` from offset `cell_start.get(i)` to
/// `i + 1`'s
/// (ascending property id; read them with [`Events::row_cells`]).
#[derive(Default, Debug)]
#[repr(C)]
pub struct Events {
    /// Milliseconds since the epoch, ascending.
    pub stamps: Vec<i64>,
    /// Event name dictionary ids (two bytes each while they fit).
    pub names: NarrowVec,
    /// Byte offset of each row's cells in `cells`; one more entry than rows
    /// (two bytes each for streams under 64 KiB).
    pub cell_start: NarrowVec,
    /// Property values of all rows, encoded by [`crate::varint::encode_row`]:
    /// about 4 bytes a cell, where a [`Cell`] takes 12, and cells are most
    /// of a table's memory.
    pub cells: Vec<u8>,
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

    /// The cells of row `i`, decoded, ascending property id.
    #[inline]
    pub fn row_cells(&self, i: usize) -> RowCells<'_> {
        RowCells::new(self.row_bytes(i))
    }

    /// The encoded cells of row `i`.
    #[inline]
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        &self.cells[self.cell_start.get(i) as usize..self.cell_start.get(i + 1) as usize]
    }

    /// Asks the CPU to load where row `i`'s cells start (a hint).
    #[inline]
    pub fn prefetch_row_start(&self, i: usize) {
        prefetch(self.cell_start.addr(i).0);
    }

    /// Asks the CPU to load the first cells of row `i` (a hint: reads one
    /// offset, faults on nothing).
    #[inline]
    pub fn prefetch_row(&self, i: usize) {
        if i < self.stamps.len() {
            prefetch(
                self.cells
                    .as_ptr()
                    .wrapping_add(self.cell_start.get(i) as usize),
            );
        }
    }

    /// Inserts a row at `at` with its cells already encoded in `row`.
    fn insert(&mut self, at: usize, stamp: i64, name: u32, row: &[u8]) {
        if self.cell_start.is_empty() {
            self.cell_start.push(0);
        }
        let cell_at = self.cell_start.get(at);
        grow_gently(&mut self.stamps, 1);
        self.names.reserve_gently(1);
        self.cell_start.reserve_gently(1);
        grow_gently(&mut self.cells, row.len());
        if at == self.stamps.len() {
            // Appending (events mostly arrive in time order): no shifting.
            self.stamps.push(stamp);
            self.names.push(name);
            self.cells.extend_from_slice(row);
            self.cell_start.push(cell_at + row.len() as u32);
            return;
        }
        self.stamps.insert(at, stamp);
        self.names.insert(at, name);
        self.cells
            .splice(cell_at as usize..cell_at as usize, row.iter().copied());
        self.cell_start
            .insert_shifting(at + 1, cell_at + row.len() as u32, row.len() as u32);
    }

    fn remove_prop(&mut self, prop: u32) {
        if !(0..self.len()).any(|i| self.row_cells(i).any(|c| c.prop == prop)) {
            return;
        }
        let mut cells = Vec::with_capacity(self.cells.len());
        let mut starts = NarrowVec::default();
        starts.push(0);
        for i in 0..self.len() {
            encode_row(self.row_cells(i).filter(|c| c.prop != prop), &mut cells);
            starts.push(cells.len() as u32);
        }
        self.cells = cells;
        self.cell_start = starts;
    }
}

/// Makes room for `more` elements growing by a quarter instead of the
/// standard doubling: customers' vectors are most of memory, and doubling
/// leaves a third of them empty on average. Amortized cost stays constant.
pub(crate) fn grow_gently<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 4).max(4));
    }
}

/// A customer: id, customer properties and events.
///
/// `repr(C)` keeps the declared order: the kept facts and the stamps' and
/// names' vector headers share the first cache line, which is all a walk
/// over customers reads for scripts about recency, sessions or row counts.
#[derive(Debug)]
#[repr(C)]
pub struct Customer {
    /// The newest stamp (meaningful while there are events): a copy kept
    /// in the customer itself, which a walk over customers reads in order,
    /// so recency questions need not touch the stamps' own allocation
    /// (a cache and TLB miss per customer).
    last_stamp: i64,
    /// Sessions among the events with a new session after every gap over
    /// [`SESSION_GAP`] ms (the default session time), kept in step with
    /// inserts for the same reason.
    sessions: u32,
    /// Events in stored order (stamp, then event rank, then arrival).
    pub events: Events,
    /// Customer property values, ascending property id.
    pub props: Vec<Cell>,
    /// The customer id.
    pub key: CustomerKey,
}

/// The session gap (ms) whose session count each customer keeps: the
/// default session time (rest spec 3.6), so queries on tables that keep
/// the default need not read every stamp for `session_count`.
pub const SESSION_GAP: i64 = 1_800_000;

/// Sessions in `stamps` (ascending) with a new one after every gap over
/// [`SESSION_GAP`]; 0 without stamps.
pub fn count_sessions(stamps: &[i64]) -> u32 {
    if stamps.is_empty() {
        return 0;
    }
    let breaks = stamps
        .windows(2)
        .filter(|w| w[1].saturating_sub(w[0]) > SESSION_GAP)
        .count();
    (1 + breaks).min(u32::MAX as usize) as u32
}

impl Customer {
    /// The newest event's stamp, `None` without events.
    #[inline]
    pub fn last_stamp(&self) -> Option<i64> {
        (!self.events.is_empty()).then_some(self.last_stamp)
    }

    /// The number of sessions for a gap of [`SESSION_GAP`] (0 without events).
    #[inline]
    pub fn sessions(&self) -> u32 {
        self.sessions
    }

    /// Brings the kept facts in line after inserting a row at `at`: the
    /// session count changes only around the new row.
    fn note_insert(&mut self, at: usize) {
        let st = &self.events.stamps;
        let Some(&s) = st.get(at) else { return };
        let broken = |a: i64, b: i64| i64::from(b.saturating_sub(a) > SESSION_GAP);
        let prev = at.checked_sub(1).and_then(|i| st.get(i)).copied();
        let next = st.get(at + 1).copied();
        let delta = match (prev, next) {
            (Some(p), Some(n)) => broken(p, s) + broken(s, n) - broken(p, n),
            (Some(p), None) => broken(p, s),
            (None, Some(n)) => broken(s, n),
            (None, None) => 1,
        };
        self.sessions = (i64::from(self.sessions) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        self.last_stamp = st.last().copied().unwrap_or(s);
    }
}

/// What of a customer's rows a scan is about to read (see
/// [`Customer::prefetch`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowPrefetch {
    /// The first stamp. (The last one needs no prefetch: the customer
    /// keeps a copy, [`Customer::last_stamp`].)
    pub first_stamp: bool,
    /// Every stamp (the first few cache lines; the hardware prefetcher
    /// follows a sequential read from there).
    pub stamps: bool,
    /// The first rows: stamps, event names and the start of the cells.
    pub rows: bool,
    /// All of the cells (up to a bound): the run reads event properties.
    pub cells: bool,
    /// The customer properties.
    pub props: bool,
}

impl Customer {
    /// Asks the CPU to start loading the parts of this customer's rows in
    /// `what`. Each customer's vectors live in their own allocations, so a
    /// scan over customers misses the cache on every one of them; issued a
    /// customer or two ahead, the loads overlap with the current run.
    /// Prefetching what a run never reads is not free: it fills the
    /// memory pipeline the run's own loads wait in.
    #[inline]
    pub fn prefetch(&self, what: RowPrefetch) {
        let e = &self.events;
        if what.first_stamp || what.rows || what.stamps {
            prefetch(e.stamps.as_ptr());
        }
        if what.stamps {
            // 8 stamps per cache line; the rest stream in.
            for line in 1..4.min(e.stamps.len().div_ceil(8)) {
                prefetch(e.stamps.as_ptr().wrapping_add(line * 8));
            }
        }
        if what.props {
            prefetch(self.props.as_ptr());
        }
        if what.rows {
            // A guarded scan reads names until a match: the first few
            // lines (32 or 16 names each) cover most customers.
            let (first, per_line) = e.names.addr(0);
            prefetch(first);
            for line in 1..6.min(e.names.len().div_ceil(per_line)) {
                prefetch(first.wrapping_add(line * 64));
            }
            prefetch(e.cell_start.addr(0).0);
            prefetch(e.cells.as_ptr());
        }
        if what.cells {
            // A property read is two dependent misses (offset, then cells):
            // most customers' cells fit in these lines.
            let (first, per_line) = e.cell_start.addr(0);
            for line in 1..4.min(e.cell_start.len().div_ceil(per_line)) {
                prefetch(first.wrapping_add(line * 64));
            }
            for line in 1..12.min(e.cells.len().div_ceil(64)) {
                prefetch(e.cells.as_ptr().wrapping_add(line * 64));
            }
        }
    }

    /// Asks the CPU to load this customer's own fields (the vectors'
    /// pointers and lengths), a step before [`Customer::prefetch`] reads
    /// them: the first cache line (kept facts, stamps and names) always,
    /// the rest (cells, customer properties, id) when `all`.
    #[inline]
    pub fn prefetch_header(&self, all: bool) {
        let p = self as *const Customer as *const u8;
        prefetch(p);
        if all {
            prefetch(p.wrapping_add(64));
            prefetch(p.wrapping_add(128));
        }
    }
}

#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One table's data within one partition.
#[derive(Default, Debug)]
pub struct TablePartition {
    /// Customers in order of first appearance.
    pub customers: Vec<Customer>,
    num_index: HashMap<i64, u32>,
    text_index: HashMap<Box<str>, u32>,
    /// Dictionary of texts.
    pub dict: Dictionary,
    /// `event_order` rank by dictionary id (filled lazily).
    ranks: Vec<u16>,
    /// Number of events held.
    pub event_count: u64,
    /// Customers by (property, value), event names included.
    pub index: PropertyIndex,
    /// Segment memberships by segment name. Derived state, kept by the query
    /// layer (segments depend on `now`), not part of the log.
    pub segments: BTreeMap<String, roaring::RoaringBitmap>,
    /// Reused buffer for a row's cells during apply (no allocation per record).
    scratch: Vec<Cell>,
    /// Reused buffer for the encoding of `scratch`.
    scratch_bytes: Vec<u8>,
    /// The (property, value) pairs already indexed for the customer applied
    /// last: a customer's records usually arrive together and repeat event
    /// names and values, and this set answers "already there" for a fraction
    /// of a bitmap insert's cost. Cleared whenever the customer changes or
    /// anything is removed from the index.
    recent: (u32, rustc_hash::FxHashSet<(u32, u64)>),
    /// Derived: the rows of an event name, customer by customer, for names
    /// queries stepped through ([`TablePartition::name_rows`]); `None` for
    /// a name too common to be worth listing. Emptied by every change of
    /// the rows (apply, trim).
    name_rows: std::sync::Mutex<HashMap<u32, Option<Arc<NameRows>>>>,
}

/// The rows of one event name, customer by customer: a derived index that
/// lets a loop over that event's rows go from one to the next without
/// searching the names between them.
#[derive(Debug, Default)]
pub struct NameRows {
    /// Customer `c`'s rows are `rows[starts[c]..starts[c + 1]]`.
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl NameRows {
    /// Lists the rows named `id` of every customer; `None` when they are
    /// more than one row in [`NameRows::MAX_SHARE`] (a search finds so
    /// common a name within a few rows anyway).
    fn build(customers: &[Customer], id: u32) -> Option<NameRows> {
        let total: usize = customers.iter().map(|c| c.events.len()).sum();
        let mut out = NameRows {
            starts: Vec::with_capacity(customers.len() + 1),
            rows: Vec::new(),
        };
        out.starts.push(0);
        for c in customers {
            match c.events.names.as_slice() {
                NarrowSlice::Narrow(names) => {
                    if let Ok(id) = u16::try_from(id) {
                        let hits = names.iter().enumerate().filter(|&(_, &n)| n == id);
                        out.rows.extend(hits.map(|(r, _)| r as u32));
                    }
                }
                NarrowSlice::Wide(names) => {
                    let hits = names.iter().enumerate().filter(|&(_, &n)| n == id);
                    out.rows.extend(hits.map(|(r, _)| r as u32));
                }
            }
            if out.rows.len() > total / Self::MAX_SHARE + 1 {
                return None;
            }
            out.starts.push(u32::try_from(out.rows.len()).ok()?);
        }
        out.rows.shrink_to_fit();
        Some(out)
    }

    /// A name is listed only when at most one row in this many has it.
    pub const MAX_SHARE: usize = 8;

    /// Customer `customer`'s rows of the name, ascending.
    pub fn of(&self, customer: u32) -> &[u32] {
        let c = customer as usize;
        match (self.starts.get(c), self.starts.get(c + 1)) {
            (Some(&a), Some(&b)) => self.rows.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

impl TablePartition {
    /// The rows of event name `id` (a dictionary id), customer by
    /// customer, if the name is rare enough to list. Built on the first
    /// call after the rows last changed when `build` is set (a pass over
    /// every customer's names), else only handed out when already built.
    pub fn name_rows(&self, id: u32, build: bool) -> Option<Arc<NameRows>> {
        let mut cache = self.name_rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = cache.get(&id) {
            return known.clone();
        }
        if !build {
            return None;
        }
        let rows = NameRows::build(&self.customers, id).map(Arc::new);
        cache.insert(id, rows.clone());
        rows
    }

    /// Drops the derived row lists (the rows are about to change).
    fn rows_changed(&mut self) {
        let cache = self.name_rows.get_mut().unwrap_or_else(|e| e.into_inner());
        if !cache.is_empty() {
            cache.clear();
        }
    }

    /// The customer with that id.
    pub fn customer(&self, key: &CustomerKey) -> Option<&Customer> {
        self.index_of(key.as_ref()).map(|i| &self.customers[i])
    }

    fn index_of(&self, key: KeyRef<'_>) -> Option<usize> {
        match key {
            KeyRef::Num(n) => self.num_index.get(&n),
            KeyRef::Text(t) => self.text_index.get(t),
        }
        .map(|&i| i as usize)
    }

    fn rank(&mut self, schema: &TableSchema, name: u32) -> u16 {
        while self.ranks.len() <= name as usize {
            let id = self.ranks.len() as u32;
            let r = schema.event_rank(self.dict.text(id));
            self.ranks.push(r);
        }
        self.ranks[name as usize]
    }

    /// Appends the cells of a props section, skipping values of properties
    /// the schema no longer has (or has with another type or kind): replay of
    /// old entries under the current schema gives what memory holds.
    fn encode(
        &mut self,
        schema: &TableSchema,
        props: PropsView<'_>,
        customer: bool,
        only: Option<u32>,
        out: &mut Vec<Cell>,
    ) {
        for (prop, kind, values) in props.iter() {
            if only.is_some_and(|p| p != prop) {
                continue;
            }
            let Some(def) = schema.property_by_id(prop) else {
                continue;
            };
            if def.kind != kind || def.is_customer != customer {
                continue;
            }
            for v in values.iter() {
                let value = match v {
                    ValueRef::Num(n) => n as u64,
                    ValueRef::Text(t) => u64::from(self.dict.intern(t)),
                };
                out.push(Cell { prop, value });
            }
        }
    }

    /// Applies one record. With `dedup`, an event equal to a stored one is
    /// dropped (rest spec 4.8); snapshot restore passes `false` because a
    /// snapshot already holds exactly the stored rows.
    /// Returns the customer's index in the partition.
    pub fn apply(&mut self, schema: &TableSchema, rec: &RecordView<'_>, dedup: bool) -> u32 {
        self.rows_changed();
        if rec.retention {
            let max = match rec.id {
                KeyRef::Num(n) => n,
                KeyRef::Text(_) => 0,
            };
            self.trim(rec.stamp, max);
            return u32::MAX;
        }
        let ci = match self.index_of(rec.id) {
            Some(i) => i,
            None => {
                let i = self.customers.len() as u32;
                let key = match rec.id {
                    KeyRef::Num(n) => {
                        self.num_index.insert(n, i);
                        CustomerKey::Num(n)
                    }
                    KeyRef::Text(t) => {
                        self.text_index.insert(t.into(), i);
                        CustomerKey::Text(t.into())
                    }
                };
                self.customers.push(Customer {
                    key,
                    props: Vec::new(),
                    events: Events::default(),
                    last_stamp: 0,
                    sessions: 0,
                });
                i as usize
            }
        };
        let mut row = std::mem::take(&mut self.scratch);
        for (prop, _, _) in rec.customer_props.iter() {
            if schema.property_by_id(prop).is_none_or(|d| !d.is_customer) {
                continue;
            }
            row.clear();
            self.encode(schema, rec.customer_props, true, Some(prop), &mut row);
            let props = &mut self.customers[ci].props;
            for old in props.iter().filter(|c| c.prop == prop) {
                self.index.remove(prop, old.value, ci as u32);
            }
            self.recent.1.clear();
            props.retain(|c| c.prop != prop);
            let at = props.partition_point(|c| c.prop < prop);
            props.splice(at..at, row.iter().copied());
            for cell in &row {
                self.index.add(prop, cell.value, ci as u32);
            }
        }
        let Some(event) = rec.event else {
            self.scratch = row;
            return ci as u32;
        };
        let name = self.dict.intern(event);
        let rank = self.rank(schema, name);
        row.clear();
        self.encode(schema, rec.props, false, None, &mut row);
        let mut bytes = std::mem::take(&mut self.scratch_bytes);
        bytes.clear();
        encode_row(row.iter().copied(), &mut bytes);
        let ranks = &self.ranks;
        let events = &self.customers[ci].events;
        // Position: after every row with a smaller stamp, or the same stamp and
        // a rank not after ours (ties keep arrival order).
        let mut at = events.stamps.partition_point(|&s| s <= rec.stamp);
        while at > 0
            && events.stamps[at - 1] == rec.stamp
            && ranks[events.names.get(at - 1) as usize] > rank
        {
            at -= 1;
        }
        let duplicate = dedup && {
            let mut i = at;
            let mut found = false;
            while i > 0 && events.stamps[i - 1] == rec.stamp && !found {
                i -= 1;
                found = events.names.get(i) == name && same_cells(events, i, &bytes, &row);
            }
            found
        };
        if !duplicate {
            let c = &mut self.customers[ci];
            c.events.insert(at, rec.stamp, name, &bytes);
            // Retention recounts what it cuts; inserts keep the rest.
            c.note_insert(at);
            self.event_count += 1;
            self.index_add(EVENT_PROP, u64::from(name), ci as u32);
            for cell in &row {
                self.index_add(cell.prop, cell.value, ci as u32);
            }
        }
        self.scratch = row;
        self.scratch_bytes = bytes;
        ci as u32
    }

    /// Adds to the index unless `recent` shows it is already there.
    fn index_add(&mut self, prop: u32, value: u64, ci: u32) {
        if self.recent.0 != ci {
            self.recent.0 = ci;
            self.recent.1.clear();
        }
        if self.recent.1.insert((prop, value)) {
            self.index.add(prop, value, ci);
        }
    }

    /// Retention (rest spec 3.6): drops every customer's events older than
    /// `cutoff` (0: none), then all but the newest `max` (0: no limit), and
    /// brings the index in line with the rows that remain.
    pub fn trim(&mut self, cutoff: i64, max: i64) {
        self.rows_changed();
        self.recent.1.clear();
        for (ci, c) in self.customers.iter_mut().enumerate() {
            let ev = &mut c.events;
            let n = ev.len();
            let mut start = if cutoff > 0 {
                ev.stamps.partition_point(|&s| s < cutoff)
            } else {
                0
            };
            if max > 0 && n - start > max as usize {
                start = n - max as usize;
            }
            if start == 0 {
                continue;
            }
            let ci = ci as u32;
            // Forget the customer's event values, then index what remains.
            for i in 0..n {
                self.index
                    .remove(EVENT_PROP, u64::from(ev.names.get(i)), ci);
                for cell in ev.row_cells(i) {
                    self.index.remove(cell.prop, cell.value, ci);
                }
            }
            let cut = ev.cell_start.get(start) as usize;
            ev.stamps.drain(..start);
            ev.names.drain_front(start);
            ev.cells.drain(..cut);
            ev.cell_start.cut_front(start);
            for i in 0..ev.len() {
                self.index.add(EVENT_PROP, u64::from(ev.names.get(i)), ci);
                for cell in ev.row_cells(i) {
                    self.index.add(cell.prop, cell.value, ci);
                }
            }
            self.event_count -= start as u64;
            c.sessions = count_sessions(&c.events.stamps);
        }
    }

    /// Removes every value of property `prop` from events and customers.
    pub fn remove_property(&mut self, prop: u32) {
        self.recent.1.clear();
        self.index.drop_property(prop);
        for c in &mut self.customers {
            c.props.retain(|cell| cell.prop != prop);
            c.events.remove_prop(prop);
        }
    }

    /// Encodes this table's state as log entries that rebuild it exactly
    /// when applied in order without dedup: customers in order, each first
    /// with its properties, then its events. `emit` gets each entry.
    pub fn encode_snapshot(
        &self,
        schema: &TableSchema,
        records_per_entry: usize,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        let mut buf = Vec::new();
        let mut in_entry = 0usize;
        let mut values: Vec<ScalarRef<'_>> = Vec::new();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut row: Vec<Cell> = Vec::new();
        for c in &self.customers {
            // Row 0 is the customer's properties, row i + 1 its event i.
            for r in 0..=c.events.len() {
                let (stamp, event, cells, customer) = match r.checked_sub(1) {
                    None => (0, None, &c.props[..], true),
                    Some(i) => {
                        row.clear();
                        row.extend(c.events.row_cells(i));
                        let name = self.dict.text(c.events.names.get(i));
                        (c.events.stamps[i], Some(name), &row[..], false)
                    }
                };
                if in_entry == 0 {
                    buf.clear();
                    begin_entry(schema.uid, &mut buf);
                }
                begin_record(&mut buf, c.key.as_ref(), stamp, event);
                // Runs of cells by property, for properties the schema still has.
                runs.clear();
                let mut i = 0;
                while i < cells.len() {
                    let prop = cells[i].prop;
                    let end = i + cells[i..].iter().take_while(|x| x.prop == prop).count();
                    if schema.property_by_id(prop).is_some() {
                        runs.push((i, end));
                    }
                    i = end;
                }
                for section_is_customer in [false, true] {
                    let mine = section_is_customer == customer;
                    put_prop_count(&mut buf, if mine { runs.len() } else { 0 });
                    if !mine {
                        continue;
                    }
                    for &(start, end) in &runs {
                        let Some(def) = schema.property_by_id(cells[start].prop) else {
                            continue;
                        };
                        values.clear();
                        values.extend(cells[start..end].iter().map(|cell| match def.kind {
                            crate::schema::PropType::Text => {
                                ScalarRef::Text(Cow::Borrowed(self.dict.text(cell.value as u32)))
                            }
                            _ => ScalarRef::Num(cell.value as i64),
                        }));
                        put_prop(&mut buf, def.id, def.kind, values.iter());
                    }
                }
                in_entry += 1;
                if in_entry == records_per_entry {
                    emit(&buf);
                    in_entry = 0;
                }
            }
        }
        if in_entry > 0 {
            emit(&buf);
        }
    }
}

/// Equal as rows: row `i` of `events` has the cells `row` (encoded as
/// `bytes`), with set members compared as sets.
fn same_cells(events: &Events, i: usize, bytes: &[u8], row: &[Cell]) -> bool {
    let stored = events.row_bytes(i);
    if stored == bytes {
        return true;
    }
    // Set members in another order encode differently; rows with equal
    // stamps and names are rare enough to decode.
    let mut x: Vec<Cell> = RowCells::new(stored).collect();
    if x.len() != row.len() {
        return false;
    }
    let mut y = row.to_vec();
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

    /// One encoded entry holding one event of customer "a".
    fn ev(stamp: i64, event: &str, tags: &[&str]) -> Vec<u8> {
        let values: Vec<ScalarRef> = tags
            .iter()
            .map(|t| ScalarRef::Text(Cow::Borrowed(*t)))
            .collect();
        let props = if tags.is_empty() {
            vec![]
        } else {
            vec![crate::codec::PropRef {
                prop: 0,
                kind: crate::schema::PropType::Text,
                values: &values,
            }]
        };
        let mut buf = Vec::new();
        begin_entry(1, &mut buf);
        crate::codec::encode_record(&mut buf, KeyRef::Text("a"), stamp, Some(event), &props, &[]);
        buf
    }

    fn apply(t: &mut TablePartition, s: &TableSchema, entry: &[u8], dedup: bool) {
        let (_, recs) = crate::codec::decode_entry(entry).unwrap();
        for r in &recs {
            t.apply(s, r, dedup);
        }
    }

    fn names(t: &TablePartition) -> Vec<(i64, String)> {
        let e = &t.customers[0].events;
        (0..e.len())
            .map(|i| (e.stamps[i], t.dict.text(e.names.get(i)).to_string()))
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
            apply(&mut t, &s, &r, true);
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
        apply(&mut t, &s, &ev(5, "zzz", &[]), true);
        apply(&mut t, &s, &ev(7, "s", &["a", "b"]), true);
        apply(&mut t, &s, &ev(7, "s", &["b", "a"]), true);
        apply(&mut t, &s, &ev(7, "s", &["b"]), true);
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
            apply(&mut t, &s, &r, true);
        }
        let mut u = TablePartition::default();
        for text in t.dict.texts() {
            u.dict.intern(text);
        }
        t.encode_snapshot(&s, 2, &mut |entry| apply(&mut u, &s, entry, false));
        assert_eq!(names(&t), names(&u));
        assert_eq!(t.customers[0].events.cells, u.customers[0].events.cells);
        assert_eq!(rows(&t), rows(&u));
    }

    /// One entry with one event of customer "a" with tags and `n`.
    fn ev_n(stamp: i64, tags: &[&str], n: i64) -> Vec<u8> {
        let texts: Vec<ScalarRef> = tags
            .iter()
            .map(|t| ScalarRef::Text(Cow::Borrowed(*t)))
            .collect();
        let nums = [ScalarRef::Num(n)];
        let mut props = vec![crate::codec::PropRef {
            prop: 1,
            kind: crate::schema::PropType::Int,
            values: &nums,
        }];
        if !tags.is_empty() {
            props.insert(
                0,
                crate::codec::PropRef {
                    prop: 0,
                    kind: crate::schema::PropType::Text,
                    values: &texts,
                },
            );
        }
        let mut buf = Vec::new();
        begin_entry(1, &mut buf);
        crate::codec::encode_record(&mut buf, KeyRef::Text("a"), stamp, Some("e"), &props, &[]);
        buf
    }

    /// Every row's (stamp, tags, n), decoded.
    fn rows(t: &TablePartition) -> Vec<(i64, Vec<String>, Vec<i64>)> {
        let e = &t.customers[0].events;
        (0..e.len())
            .map(|i| {
                let cells: Vec<Cell> = e.row_cells(i).collect();
                let tags = cells
                    .iter()
                    .filter(|c| c.prop == 0)
                    .map(|c| t.dict.text(c.value as u32).to_string())
                    .collect();
                let n = cells
                    .iter()
                    .filter(|c| c.prop == 1)
                    .map(|c| c.value as i64)
                    .collect();
                (e.stamps[i], tags, n)
            })
            .collect()
    }

    #[test]
    fn encoded_cells_survive_middle_inserts_removal_and_trim() {
        let s = schema();
        let mut t = TablePartition::default();
        for (stamp, tags, n) in [
            (10, &["a", "b"][..], -3),
            (30, &["c"][..], i64::MIN),
            (20, &[][..], 1_000_000),
            (5, &["d", "a"][..], i64::MAX),
            (25, &["e"][..], 0),
        ] {
            apply(&mut t, &s, &ev_n(stamp, tags, n), true);
        }
        let owned = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let want = vec![
            (5, owned(&["d", "a"]), vec![i64::MAX]),
            (10, owned(&["a", "b"]), vec![-3]),
            (20, owned(&[]), vec![1_000_000]),
            (25, owned(&["e"]), vec![0]),
            (30, owned(&["c"]), vec![i64::MIN]),
        ];
        assert_eq!(rows(&t), want);
        let e = &t.customers[0].events;
        assert_eq!(e.cell_start.len(), 6);
        assert_eq!(e.cell_start.last() as usize, e.cells.len());
        // A set in another order is the same row.
        apply(&mut t, &s, &ev_n(10, &["b", "a"], -3), true);
        assert_eq!(rows(&t), want);
        t.trim(11, 0);
        assert_eq!(rows(&t), want[2..]);
        let n = u64::from(t.dict.lookup("e").unwrap());
        assert!(t.index.customers(0, n).is_some_and(|b| b.contains(0)));
        t.remove_property(0);
        let no_tags: Vec<_> = want[2..]
            .iter()
            .map(|(s, _, n)| (*s, vec![], n.clone()))
            .collect();
        assert_eq!(rows(&t), no_tags);
        t.remove_property(1);
        assert!(t.customers[0].events.cells.is_empty());
        assert!(rows(&t).iter().all(|r| r.1.is_empty() && r.2.is_empty()));
    }

    /// A customer whose cells pass 64 KiB (two-byte offsets widen to four)
    /// through inserts in the middle keeps every row; a trim back under
    /// that keeps the rest.
    #[test]
    fn rows_past_64_kib_of_cells_read_back_through_middle_inserts_and_trim() {
        let s = schema();
        let mut t = TablePartition::default();
        // About 7 bytes of cells a row (texts are dictionary ids): 12,000
        // rows. Even stamps first, then odd ones into the middle.
        let tag = |i: i64| format!("tag-{i}");
        let stamps: Vec<i64> = (0..6000)
            .map(|i| 2 * i)
            .chain((0..6000).map(|i| 2 * i + 1))
            .collect();
        for &stamp in &stamps {
            apply(&mut t, &s, &ev_n(stamp, &[&tag(stamp)], stamp), true);
        }
        let e = &t.customers[0].events;
        assert!(
            e.cells.len() > 65_536,
            "only {} bytes of cells",
            e.cells.len()
        );
        assert!(matches!(e.cell_start, NarrowVec::Wide(_)));
        let want: Vec<_> = (0..12_000).map(|i| (i, vec![tag(i)], vec![i])).collect();
        assert_eq!(rows(&t), want);
        t.trim(11_990, 0);
        assert_eq!(rows(&t), want[11_990..]);
        assert_eq!(
            t.customers[0].events.cell_start.last() as usize,
            t.customers[0].events.cells.len()
        );
    }

    #[test]
    fn index_follows_rows_through_trim_and_reapply() {
        let s = schema();
        let mut t = TablePartition::default();
        apply(&mut t, &s, &ev(5, "payment", &["q"]), true);
        apply(&mut t, &s, &ev(6, "payment", &["q"]), true);
        let pay = u64::from(t.dict.lookup("payment").unwrap());
        let q = u64::from(t.dict.lookup("q").unwrap());
        let has =
            |t: &TablePartition, prop, v| t.index.customers(prop, v).is_some_and(|b| b.contains(0));
        assert!(has(&t, EVENT_PROP, pay) && has(&t, 0, q));
        t.trim(100, 0);
        assert_eq!(t.customers[0].events.len(), 0);
        assert!(!has(&t, EVENT_PROP, pay) && !has(&t, 0, q));
        // The same customer and values again: indexed again.
        apply(&mut t, &s, &ev(200, "payment", &["q"]), true);
        assert!(has(&t, EVENT_PROP, pay) && has(&t, 0, q));
    }

    #[test]
    fn name_rows_list_each_customers_rows_and_follow_inserts_and_trim() {
        let s = schema();
        let mut t = TablePartition::default();
        // One customer ("a"), 20 rows; "buy" at stamps 4 and 15.
        for stamp in 1..=20 {
            let name = if stamp == 4 || stamp == 15 {
                "buy"
            } else {
                "view"
            };
            apply(&mut t, &s, &ev(stamp, name, &[]), true);
        }
        let buy = t.dict.lookup("buy").unwrap();
        let view = t.dict.lookup("view").unwrap();
        // Not built unless asked to build; then kept.
        assert!(t.name_rows(buy, false).is_none());
        assert_eq!(t.name_rows(buy, true).unwrap().of(0), &[3, 14]);
        assert_eq!(t.name_rows(buy, false).unwrap().of(0), &[3, 14]);
        // Past the last customer: nothing.
        assert_eq!(t.name_rows(buy, false).unwrap().of(1), &[] as &[u32]);
        // 18 rows in 20: too common to list.
        assert!(t.name_rows(view, true).is_none());
        // An older "buy" moves every row down: the list goes, and comes
        // back right.
        apply(&mut t, &s, &ev(0, "buy", &[]), true);
        assert!(t.name_rows(buy, false).is_none());
        assert_eq!(t.name_rows(buy, true).unwrap().of(0), &[0, 4, 15]);
        // So does a trim.
        t.trim(5, 0);
        assert!(t.name_rows(buy, false).is_none());
        assert_eq!(t.name_rows(buy, true).unwrap().of(0), &[10]);
    }

    #[test]
    fn last_stamp_follows_inserts_and_trim() {
        let s = schema();
        let mut t = TablePartition::default();
        assert!(t.customers.is_empty());
        apply(&mut t, &s, &ev(50, "payment", &["q"]), true);
        assert_eq!(t.customers[0].last_stamp(), Some(50));
        // An older event lands before the newest: unchanged.
        apply(&mut t, &s, &ev(10, "payment", &["r"]), true);
        assert_eq!(t.customers[0].last_stamp(), Some(50));
        apply(&mut t, &s, &ev(90, "payment", &["s"]), true);
        assert_eq!(t.customers[0].last_stamp(), Some(90));
        t.trim(60, 0);
        assert_eq!(t.customers[0].last_stamp(), Some(90));
        t.trim(100, 0);
        assert_eq!(t.customers[0].last_stamp(), None);
        apply(&mut t, &s, &ev(120, "payment", &["q"]), true);
        assert_eq!(t.customers[0].last_stamp(), Some(120));
    }

    #[test]
    fn kept_session_count_matches_a_recount_through_inserts_and_trim() {
        let s = schema();
        let mut t = TablePartition::default();
        // Stamps arrive out of order, with gaps both side of SESSION_GAP
        // and ties.
        let mut seed: u64 = 7;
        let mut stamp_of = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = seed >> 33;
            (r % 400) as i64 * 600_000 + i64::from(r.is_multiple_of(7))
        };
        for k in 0..300 {
            let stamp = stamp_of();
            apply(&mut t, &s, &ev(stamp, "payment", &[&format!("v{k}")]), true);
            let c = &t.customers[0];
            assert_eq!(
                c.sessions(),
                count_sessions(&c.events.stamps),
                "after insert {k}"
            );
            assert_eq!(c.last_stamp(), c.events.stamps.last().copied());
        }
        t.trim(100 * 600_000, 0);
        let c = &t.customers[0];
        assert_eq!(c.sessions(), count_sessions(&c.events.stamps));
        t.trim(0, 3);
        let c = &t.customers[0];
        assert_eq!(c.events.len(), 3);
        assert_eq!(c.sessions(), count_sessions(&c.events.stamps));
    }
}
