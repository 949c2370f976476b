//! The result tree of event queries (§10): typed group keys, one
//! accumulator per (segment, select column) per node, an associative and
//! commutative merge, deterministic sorting, trimming and JSON rendering.
//!
//! Every column value that can be aggregated is an integer in storage
//! (ints, fixed-point doubles, bools, stamps), so accumulators are exact
//! integers; doubles are converted only when rendering. That makes merging
//! partitions order-independent.

use crate::ast::{PropKind, PropRef};
use crate::key_space::{KeySpace, Speller};
use serde_json::{Map, Number, Value as J};
use std::cmp::Ordering;
use std::hash::Hasher;
use std::sync::Arc;

/// A `select` aggregator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnAgg {
    /// `count`
    Count,
    /// `sum`
    Sum,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `avg`
    Avg,
}

/// De-duplication rule of a column (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// `all`: every push contributes.
    All,
    /// `id`: once per customer per node.
    Customer,
    /// `session`: once per session per node.
    Session,
    /// Each row once per node (or each stamp with `stamp_counts`).
    Row,
    /// `with K`: each distinct value of K once per node.
    Key(PropRef),
}

/// One `select` column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Alias (`as`), default the property name.
    pub alias: String,
    /// Aggregator.
    pub agg: ColumnAgg,
    /// Aggregated property.
    pub prop: PropRef,
    /// De-duplication.
    pub dedup: Dedup,
    /// Storage type of the property (decides the JSON type of values).
    pub value_kind: PropKind,
}

/// The payload of a float key: `f` rounded half away from zero to 4
/// decimals, scaled by 10,000 (0 for what is not finite).
pub(crate) fn float_key(f: f64) -> i64 {
    let scaled = (f * 10_000.0).round();
    if scaled.is_finite() {
        scaled as i64
    } else {
        0
    }
}

/// A node key: typed so that int 5, float 5.0 and text "5" differ (§10.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// Bool key.
    Bool(bool),
    /// Int key.
    Int(i64),
    /// Float key, rounded half away from zero to 4 decimals, scaled by 10,000.
    Float(i64),
    /// Text key.
    Text(Arc<str>),
}

impl GroupKey {
    /// The key of a scalar group value; `None` for nil and containers.
    pub fn of_scalar(v: &crate::value::Value) -> Option<GroupKey> {
        use crate::value::Value;
        Some(match v {
            Value::Bool(b) => GroupKey::Bool(*b),
            Value::Int(i) => GroupKey::Int(*i),
            Value::Float(f) => GroupKey::float(*f),
            Value::Text(t) => GroupKey::Text(t.clone()),
            _ => return None,
        })
    }

    /// A float key (rounded to 4 decimals).
    pub fn float(f: f64) -> GroupKey {
        GroupKey::Float(float_key(f))
    }

    /// The key borrowed, as tree lookups take it.
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        match self {
            GroupKey::Bool(b) => KeyRef::Bool(*b),
            GroupKey::Int(i) => KeyRef::Int(*i),
            GroupKey::Float(f) => KeyRef::Float(*f),
            GroupKey::Text(t) => KeyRef::Text(t),
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> J {
        self.as_key_ref().to_json()
    }

    /// The `sort=group` order: bool < number < text; numbers numerically,
    /// text case-insensitively then by bytes.
    pub fn order(&self, other: &GroupKey) -> Ordering {
        self.as_key_ref().order(other.as_key_ref())
    }
}

/// A group key borrowed: finding an existing node copies nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// Bool key.
    Bool(bool),
    /// Int key.
    Int(i64),
    /// Float key (scaled by 10,000, as [`GroupKey::Float`]).
    Float(i64),
    /// Text key.
    Text(&'a str),
    /// An interned text chain: its parts' numbers in the tree's
    /// [`KeySpace`] (spelled out only when rendered).
    Parts(u64),
}

impl KeyRef<'_> {
    /// JSON form.
    pub fn to_json(self) -> J {
        match self {
            KeyRef::Bool(b) => J::Bool(b),
            KeyRef::Int(i) => J::from(i),
            KeyRef::Float(f) => float_json(f as f64 / 10_000.0),
            KeyRef::Text(t) => J::from(t),
            // (Rendering spells these first; never reached.)
            KeyRef::Parts(k) => J::from(k),
        }
    }

    fn rank(self) -> u8 {
        match self {
            KeyRef::Bool(_) => 0,
            KeyRef::Int(_) | KeyRef::Float(_) => 1,
            KeyRef::Text(_) | KeyRef::Parts(_) => 2,
        }
    }

    fn num(self) -> f64 {
        match self {
            KeyRef::Int(i) => i as f64,
            KeyRef::Float(f) => f as f64 / 10_000.0,
            _ => 0.0,
        }
    }

    /// The `sort=group` order (see [`GroupKey::order`]).
    pub fn order(self, other: KeyRef<'_>) -> Ordering {
        match (self, other) {
            (KeyRef::Bool(a), KeyRef::Bool(b)) => a.cmp(&b),
            // ASCII (the common case) without allocating; the same order.
            (KeyRef::Text(a), KeyRef::Text(b)) if a.is_ascii() && b.is_ascii() => a
                .bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
                .then_with(|| a.as_bytes().cmp(b.as_bytes())),
            (KeyRef::Text(a), KeyRef::Text(b)) => a
                .to_lowercase()
                .cmp(&b.to_lowercase())
                .then_with(|| a.as_bytes().cmp(b.as_bytes())),
            (KeyRef::Int(a), KeyRef::Int(b)) => a.cmp(&b),
            (KeyRef::Parts(a), KeyRef::Parts(b)) => a.cmp(&b),
            _ if self.rank() == 1 && other.rank() == 1 => self
                .num()
                .partial_cmp(&other.num())
                .unwrap_or(Ordering::Equal)
                .then_with(|| {
                    matches!(self, KeyRef::Float(_)).cmp(&matches!(other, KeyRef::Float(_)))
                }),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// The hash levels file the key under (kept in each entry, so a merge
    /// or a table's growth never reads key texts again).
    fn hash_value(self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        match self {
            KeyRef::Bool(b) => h.write_u16(u16::from(b)),
            KeyRef::Int(i) => {
                h.write_u8(1);
                h.write_i64(i);
            }
            KeyRef::Float(f) => {
                h.write_u8(2);
                h.write_i64(f);
            }
            KeyRef::Text(t) => {
                h.write_u8(3);
                h.write(t.as_bytes());
            }
            KeyRef::Parts(k) => {
                h.write_u8(4);
                h.write_u64(k);
            }
        }
        h.finish()
    }
}

fn float_json(f: f64) -> J {
    Number::from_f64(f).map_or(J::Null, J::Number)
}

/// One accumulator: serves every aggregator (count of values, exact sum,
/// min, max; avg = sum / count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acc {
    /// Number of values added.
    pub count: i64,
    /// Sum of values (storage units).
    pub sum: i128,
    /// Smallest value.
    pub min: Option<i64>,
    /// Largest value.
    pub max: Option<i64>,
}

impl Acc {
    /// Adds one value.
    pub fn add(&mut self, v: i64) {
        self.count += 1;
        self.sum += i128::from(v);
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// Combines another accumulator into this one.
    pub fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn value(&self, col: &Column) -> J {
        let typed = |v: i64| -> J {
            match col.value_kind {
                PropKind::Double => float_json(v as f64 / 10_000.0),
                PropKind::Bool => J::Bool(v != 0),
                _ => J::from(v),
            }
        };
        match col.agg {
            ColumnAgg::Count => J::from(self.count),
            // Nothing added: integer 0 for every type (rest spec 5.1, appendix C).
            ColumnAgg::Sum if self.count == 0 => J::from(0),
            ColumnAgg::Sum => match col.value_kind {
                PropKind::Double => float_json(self.sum as f64 / 10_000.0),
                _ => J::from(self.sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64),
            },
            ColumnAgg::Min => self.min.map_or(J::Null, typed),
            ColumnAgg::Max => self.max.map_or(J::Null, typed),
            ColumnAgg::Avg => {
                if self.count == 0 {
                    J::Null
                } else {
                    let scale = if col.value_kind == PropKind::Double {
                        10_000.0
                    } else {
                        1.0
                    };
                    float_json(self.sum as f64 / scale / self.count as f64)
                }
            }
        }
    }

    fn sort_value(&self, col: &Column) -> Option<f64> {
        match self.value(col) {
            J::Number(n) => n.as_f64(),
            J::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }
}

/// A key as a level keeps it: scalars inline, text as a span of the
/// tree's text arena (no allocation per key, nothing to free one by one).
#[derive(Clone, Copy, Debug)]
enum StoredKey {
    Bool(bool),
    Int(i64),
    Float(i64),
    Text { start: u32, len: u32 },
    Parts(u64),
}

impl StoredKey {
    /// The key as a slot keeps it: (kind, payload).
    fn bits(self) -> (u32, u64) {
        match self {
            StoredKey::Bool(b) => (0, u64::from(b)),
            StoredKey::Int(i) => (1, i as u64),
            StoredKey::Float(f) => (2, f as u64),
            StoredKey::Text { start, len } => (3, (u64::from(start) << 32) | u64::from(len)),
            StoredKey::Parts(k) => (4, k),
        }
    }

    /// A key stored as it is given (anything but a text, whose bytes go
    /// to the tree's text arena).
    fn fixed(key: KeyRef<'_>) -> Option<StoredKey> {
        match key {
            KeyRef::Bool(b) => Some(StoredKey::Bool(b)),
            KeyRef::Int(i) => Some(StoredKey::Int(i)),
            KeyRef::Float(f) => Some(StoredKey::Float(f)),
            KeyRef::Parts(k) => Some(StoredKey::Parts(k)),
            KeyRef::Text(_) => None,
        }
    }
}

/// One entry of a level, in 16 bytes: the key's payload, its kind and the
/// node's index in the tree's arena, and 32 bits of the key's hash (the
/// table's hash is spread from those, so growth and merges never rehash
/// texts). Levels of tens of thousands of keys are looked up at random
/// once per push: half the bytes of a plain enum-and-hash slot keep twice
/// as many of them in cache.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The key's value: a number, a packed key, `start << 32 | len` of a text.
    payload: u64,
    /// The node index (low [`NODE_BITS`] bits) and the key's kind (above).
    node_kind: u32,
    hash: u32,
}

/// Bits of a slot's `node_kind` that hold the node index.
const NODE_BITS: u32 = 29;
const NODE_MASK: u32 = (1 << NODE_BITS) - 1;

impl Slot {
    fn new(hash: u32, key: StoredKey, node: u32) -> Slot {
        let (kind, payload) = key.bits();
        Slot {
            payload,
            node_kind: (kind << NODE_BITS) | (node & NODE_MASK),
            hash,
        }
    }

    fn node(&self) -> u32 {
        self.node_kind & NODE_MASK
    }

    fn key(&self) -> StoredKey {
        let p = self.payload;
        match self.node_kind >> NODE_BITS {
            0 => StoredKey::Bool(p != 0),
            1 => StoredKey::Int(p as i64),
            2 => StoredKey::Float(p as i64),
            3 => StoredKey::Text {
                start: (p >> 32) as u32,
                len: p as u32,
            },
            _ => StoredKey::Parts(p),
        }
    }

    /// The hash the level's table files this slot under.
    fn table_hash(&self) -> u64 {
        spread(self.hash)
    }
}

/// A key's 64-bit hash folded to the 32 bits a slot keeps.
fn fold(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

/// The table hash of a slot's 32 hash bits: a multiply spreads them over
/// the high bits (the table's tag) and the low ones (its bucket).
fn spread(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One level of the tree: its nodes by key.
type Level = hashbrown::HashTable<Slot>;

/// Words an accumulator of this aggregator keeps in a node's record: a
/// count needs one, a sum or average the count and an exact 128-bit sum,
/// a minimum or maximum a presence count and the value.
fn words_of(agg: ColumnAgg) -> usize {
    match agg {
        ColumnAgg::Count => 1,
        ColumnAgg::Sum | ColumnAgg::Avg => 3,
        ColumnAgg::Min | ColumnAgg::Max => 2,
    }
}

/// Sort key of `_` arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortBy {
    /// By the select column with this index (of `c`). Default column 0.
    Column(usize),
    /// By group key (`sort=group`).
    Group,
    /// Default: column 0.
    #[default]
    Default,
}

/// Rendering options (§10.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Sort key.
    pub sort: SortBy,
    /// Descending (the default).
    pub descending: bool,
    /// Keep only the first N entries of every `_` array (None: all).
    pub trim: Option<usize>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            sort: SortBy::Default,
            descending: true,
            trim: None,
        }
    }
}

/// The result of an event query for some customers.
///
/// Nodes live in arenas (`nodes`, `accs`, `texts`) and are named by their
/// index, which is also their id for per-run de-duplication; levels are
/// hash tables of small entries pointing into them. A big result (tens of
/// thousands of keys) is thus a few allocations: lookups touch a compact
/// table, and merging or dropping a tree does not walk scattered nodes.
#[derive(Debug)]
pub struct ResultTree {
    columns: Arc<[Column]>,
    segments: usize,
    /// Per accumulator (`segment * columns + column`): its aggregator and
    /// its first word in a node's record.
    layout: Arc<[(ColumnAgg, usize)]>,
    /// Words per node record: the customer mark (word 0, the last run
    /// number that counted this node's once-per-customer columns), then
    /// the accumulators, only as wide as their aggregators need.
    record: usize,
    roots: Level,
    /// Each node's children (its counts live in `words`), by node index;
    /// only as long as the last node with children needs, so a flat tree
    /// (one group per push, the common case) keeps none.
    children: Vec<Level>,
    /// Number of nodes (each has `record` words).
    nodes: u32,
    words: Vec<u64>,
    texts: String,
    /// Numbers of interned push keys, shared by the trees of one query.
    key_space: Option<Arc<KeySpace>>,
    /// This tree's identity, unique in the process (see [`Self::uid`]).
    uid: u64,
}

/// The grown buffers of a dropped tree's top level, kept for the next
/// tree that grows (see [`SPARES`]).
struct Spare {
    roots: Level,
    words: Vec<u64>,
    texts: String,
}

impl Spare {
    fn bytes(&self) -> usize {
        self.roots.capacity() * (std::mem::size_of::<Slot>() + 1)
            + self.words.capacity() * 8
            + self.texts.capacity()
    }
}

/// Buffers of dropped trees. A query's trees grow from nothing on every
/// run: each doubling copies the table and the records into memory the
/// allocator has often just handed back to the OS, so every page of it
/// faults again (about 490 page faults per run of the pairs query of
/// `bench/`; 12 with these kept). Trees that grow take these instead, as
/// large as the last queries needed. At most [`MAX_SPARES`] are kept, the
/// largest, and none over [`MAX_SPARE_BYTES`]: a handful of MiB stays
/// resident between queries instead of going back and forth.
static SPARES: std::sync::Mutex<Vec<Spare>> = std::sync::Mutex::new(Vec::new());
/// How many trees' buffers [`SPARES`] keeps (a query of two workers has
/// three growing trees: one per worker and the merged one).
const MAX_SPARES: usize = 4;
/// The largest buffers [`SPARES`] keeps for one tree.
const MAX_SPARE_BYTES: usize = 16 << 20;

impl Drop for ResultTree {
    fn drop(&mut self) {
        if self.words.capacity() == 0 {
            return;
        }
        let mut spare = Spare {
            roots: std::mem::take(&mut self.roots),
            words: std::mem::take(&mut self.words),
            texts: std::mem::take(&mut self.texts),
        };
        if spare.bytes() > MAX_SPARE_BYTES {
            return;
        }
        spare.roots.clear();
        spare.words.clear();
        spare.texts.clear();
        let Ok(mut spares) = SPARES.lock() else {
            return;
        };
        spares.push(spare);
        if spares.len() > MAX_SPARES {
            // Keep the largest: the next queries are likely as large.
            spares.sort_by_key(|s| std::cmp::Reverse(s.bytes()));
            spares.truncate(MAX_SPARES);
        }
    }
}

/// The next [`ResultTree::uid`] (0 is never one).
static NEXT_TREE_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How many slots ahead a merge asks for the other tree's records.
const MERGE_AHEAD: usize = 8;

/// Asks the CPU to start loading the cache line at `p`.
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

impl Clone for ResultTree {
    /// A copy with its own [`ResultTree::uid`]: the two trees grow apart,
    /// so node indexes a run remembers for one must not serve the other.
    fn clone(&self) -> ResultTree {
        ResultTree {
            columns: self.columns.clone(),
            segments: self.segments,
            layout: self.layout.clone(),
            record: self.record,
            roots: self.roots.clone(),
            children: self.children.clone(),
            nodes: self.nodes,
            words: self.words.clone(),
            texts: self.texts.clone(),
            key_space: self.key_space.clone(),
            uid: NEXT_TREE_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

fn split_i128(v: i128) -> (u64, u64) {
    (v as u64, (v >> 64) as u64)
}

fn join_i128(lo: u64, hi: u64) -> i128 {
    (i128::from(hi as i64) << 64) | i128::from(lo)
}

/// The key a stored key names (text spans are always within `texts`).
fn key_at(texts: &str, k: StoredKey) -> KeyRef<'_> {
    match k {
        StoredKey::Bool(b) => KeyRef::Bool(b),
        StoredKey::Int(i) => KeyRef::Int(i),
        StoredKey::Float(f) => KeyRef::Float(f),
        StoredKey::Text { start, len } => {
            let start = start as usize;
            KeyRef::Text(texts.get(start..start + len as usize).unwrap_or(""))
        }
        StoredKey::Parts(k) => KeyRef::Parts(k),
    }
}

impl ResultTree {
    /// An empty tree for these columns and `segments` (≥ 1) column sets.
    pub fn new(columns: &[Column], segments: usize) -> ResultTree {
        let segments = segments.max(1);
        let mut layout = Vec::with_capacity(segments * columns.len());
        let mut record = 1;
        for _ in 0..segments {
            for c in columns {
                layout.push((c.agg, record));
                record += words_of(c.agg);
            }
        }
        ResultTree {
            columns: Arc::from(columns),
            segments,
            layout: Arc::from(layout),
            record,
            roots: Level::default(),
            children: Vec::new(),
            nodes: 0,
            words: Vec::new(),
            texts: String::new(),
            key_space: None,
            uid: NEXT_TREE_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A number no other tree of this process has (a clone gets its own):
    /// runs remember node indexes by it.
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }

    /// This empty tree filing interned push keys in `space` (trees merged
    /// together must share one space).
    pub fn with_key_space(mut self, space: Arc<KeySpace>) -> ResultTree {
        self.key_space = Some(space);
        self
    }

    /// The space of its interned push keys, if it files any.
    pub fn key_space(&self) -> Option<&Arc<KeySpace>> {
        self.key_space.as_ref()
    }

    /// An empty tree with the same columns, segments and key space.
    pub fn empty_like(&self) -> ResultTree {
        let mut t = ResultTree::new(&self.columns, self.segments);
        t.key_space = self.key_space.clone();
        t
    }

    /// The select columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Number of segment column sets (`c`, `c2`, ...).
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Index of the column with this alias (for `sort=`).
    pub fn column_index(&self, alias: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.alias == alias)
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// Number of nodes, all levels.
    pub fn node_count(&self) -> usize {
        self.nodes as usize
    }

    /// The node under `parent` (`None`: the top level) with key `key`,
    /// created when missing: its index. `None` when the tree cannot grow
    /// (4 GiB of key text or 2^29 nodes).
    pub(crate) fn child(&mut self, parent: Option<u32>, key: KeyRef<'_>) -> Option<u32> {
        self.child_hashed(parent, key, fold(key.hash_value()))
    }

    /// [`Self::child`] for a key whose folded hash is `hash`.
    fn child_hashed(&mut self, parent: Option<u32>, key: KeyRef<'_>, hash: u32) -> Option<u32> {
        let texts = &self.texts;
        let level = match parent {
            None => Some(&self.roots),
            Some(p) => self.children.get(p as usize),
        };
        let table_hash = spread(hash);
        // A number or packed key matches on the slot's bits alone.
        let fixed = StoredKey::fixed(key);
        let bits = fixed.map(StoredKey::bits);
        if let Some(s) = level.and_then(|l| {
            l.find(table_hash, |s| {
                s.hash == hash
                    && match bits {
                        Some((kind, payload)) => {
                            s.payload == payload && s.node_kind >> NODE_BITS == kind
                        }
                        None => key_at(texts, s.key()) == key,
                    }
            })
        }) {
            return Some(s.node());
        }
        if self.nodes == 0 {
            self.adopt_spare();
        }
        let stored = match (fixed, key) {
            (Some(stored), _) => stored,
            (None, KeyRef::Text(t)) => {
                let start = u32::try_from(self.texts.len()).ok()?;
                let len = u32::try_from(t.len()).ok()?;
                start.checked_add(len)?;
                self.texts.push_str(t);
                StoredKey::Text { start, len }
            }
            (None, _) => return None,
        };
        let node = self.nodes;
        if node > NODE_MASK {
            return None;
        }
        self.nodes = node + 1;
        self.words.resize(self.words.len() + self.record, 0);
        let slot = Slot::new(hash, stored, node);
        let level = match parent {
            None => &mut self.roots,
            Some(p) => {
                let p = p as usize;
                if self.children.len() <= p {
                    self.children.resize_with(p + 1, Level::default);
                }
                self.children.get_mut(p)?
            }
        };
        level.insert_unique(table_hash, slot, Slot::table_hash);
        Some(node)
    }

    /// Takes the largest spare buffers ([`SPARES`]) for a tree about to
    /// get its first node.
    #[cold]
    fn adopt_spare(&mut self) {
        if self.words.capacity() != 0 || self.roots.capacity() != 0 || self.texts.capacity() != 0 {
            return;
        }
        let spare = SPARES.lock().ok().and_then(|mut spares| {
            let largest = (0..spares.len()).max_by_key(|&i| spares[i].bytes())?;
            Some(spares.swap_remove(largest))
        });
        if let Some(spare) = spare {
            self.roots = spare.roots;
            self.words = spare.words;
            self.texts = spare.texts;
        }
    }

    /// Asks the CPU to load `node`'s record (a hint).
    #[inline]
    pub(crate) fn prefetch_record(&self, node: u32) {
        prefetch(
            self.words
                .as_ptr()
                .wrapping_add(node as usize * self.record),
        );
    }

    fn record_mut(&mut self, node: u32) -> Option<&mut [u64]> {
        let i = node as usize * self.record;
        self.words.get_mut(i..i + self.record)
    }

    fn record(&self, node: u32) -> &[u64] {
        let i = node as usize * self.record;
        self.words.get(i..i + self.record).unwrap_or(&[])
    }

    /// Marks `node` counted for run `run_no` (a [`crate::RunState`] run
    /// number, unique per process): true when this run had not counted it
    /// yet. One mark settles every once-per-customer column of the node,
    /// without a set lookup.
    pub(crate) fn mark_customer(&mut self, node: u32, run_no: u64) -> bool {
        match self.record_mut(node).and_then(|r| r.first_mut()) {
            Some(mark) => {
                let first = *mark != run_no;
                *mark = run_no;
                first
            }
            None => false,
        }
    }

    /// Counts one push at `node` for segment `seg` in a tree of count
    /// columns: column `i` when bit `i` of `present` is set, except that
    /// columns in `per_customer` count only if run `run_no` has not
    /// counted the node yet (the node is marked for the run either way,
    /// as [`Self::mark_customer`] does).
    pub(crate) fn count_present(
        &mut self,
        node: u32,
        seg: usize,
        run_no: u64,
        present: u64,
        per_customer: u64,
    ) {
        let ncols = self.columns.len();
        let mut bits = match self.mark_customer(node, run_no) {
            true => present,
            false => present & !per_customer,
        };
        while bits != 0 {
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.add(node, seg * ncols + c, 1);
        }
    }

    /// Adds `v` to accumulator `slot` (`segment * columns + column`) of
    /// `node` (a count only counts it).
    pub(crate) fn add(&mut self, node: u32, slot: usize, v: i64) {
        if let Some(&(ColumnAgg::Count, at)) = self.layout.get(slot) {
            // The common column: one word, bumped in place.
            if let Some(count) = self.record_mut(node).and_then(|r| r.get_mut(at)) {
                *count += 1;
            }
            return;
        }
        let mut acc = self.acc(node, slot);
        acc.add(v);
        self.put(node, slot, &acc);
    }

    /// Accumulator `slot` of `node` (the parts its aggregator keeps).
    fn acc(&self, node: u32, slot: usize) -> Acc {
        let Some(&(agg, at)) = self.layout.get(slot) else {
            return Acc::default();
        };
        let Some(w) = self.record(node).get(at..at + words_of(agg)) else {
            return Acc::default();
        };
        let count = w[0] as i64;
        match agg {
            ColumnAgg::Count => Acc {
                count,
                ..Acc::default()
            },
            ColumnAgg::Sum | ColumnAgg::Avg => Acc {
                count,
                sum: join_i128(w[1], w[2]),
                ..Acc::default()
            },
            ColumnAgg::Min | ColumnAgg::Max => {
                let v = (count > 0).then_some(w[1] as i64);
                Acc {
                    count,
                    sum: 0,
                    min: v,
                    max: v,
                }
            }
        }
    }

    /// The number column `i` (of the first segment) sorts `node` by.
    fn sort_value(&self, node: u32, i: usize, col: &Column) -> Option<f64> {
        match self.layout.get(i) {
            // A count is its one word: no JSON value built per node.
            Some(&(ColumnAgg::Count, at)) => self.record(node).get(at).map(|&w| w as i64 as f64),
            _ => self.acc(node, i).sort_value(col),
        }
    }

    /// Folds `from` into accumulator `slot` of `node`.
    fn merge_acc(&mut self, node: u32, slot: usize, from: &Acc) {
        let mut acc = self.acc(node, slot);
        acc.merge(from);
        self.put(node, slot, &acc);
    }

    /// Writes the parts of `acc` that accumulator `slot` keeps.
    fn put(&mut self, node: u32, slot: usize, acc: &Acc) {
        let Some(&(agg, at)) = self.layout.get(slot) else {
            return;
        };
        let Some(w) = self
            .record_mut(node)
            .and_then(|r| r.get_mut(at..at + words_of(agg)))
        else {
            return;
        };
        w[0] = acc.count as u64;
        match agg {
            ColumnAgg::Count => {}
            ColumnAgg::Sum | ColumnAgg::Avg => (w[1], w[2]) = split_i128(acc.sum),
            ColumnAgg::Min => w[1] = acc.min.unwrap_or(0) as u64,
            ColumnAgg::Max => w[1] = acc.max.unwrap_or(0) as u64,
        }
    }

    /// Merges `other` into `self` (associative and commutative; both trees
    /// must have the same columns and segment count).
    pub fn merge(&mut self, mut other: ResultTree) {
        if self.nodes == 0 {
            // Nothing here yet: take the other tree's arenas as they are.
            // (Swapped: buffers this tree adopted go back with `other`.)
            std::mem::swap(&mut self.roots, &mut other.roots);
            std::mem::swap(&mut self.children, &mut other.children);
            std::mem::swap(&mut self.words, &mut other.words);
            std::mem::swap(&mut self.texts, &mut other.texts);
            self.nodes = other.nodes;
            if self.key_space.is_none() {
                self.key_space = other.key_space.take();
            }
            return;
        }
        self.merge_level(None, &other, &other.roots);
    }

    fn merge_level(&mut self, parent: Option<u32>, other: &ResultTree, level: &Level) {
        // The slots are copied out first so that the loop knows which
        // records it reads next and asks for them early: records lie in
        // creation order, slots in hash order, so each is a cache miss.
        let slots: Vec<Slot> = level.iter().copied().collect();
        let counts_only = self.layout.iter().all(|(agg, _)| *agg == ColumnAgg::Count);
        for (i, s) in slots.iter().enumerate() {
            if let Some(ahead) = slots.get(i + MERGE_AHEAD) {
                prefetch(
                    other
                        .words
                        .as_ptr()
                        .wrapping_add(ahead.node() as usize * other.record),
                );
            }
            let key = key_at(&other.texts, s.key());
            // (A tree that cannot grow drops what does not fit.)
            let Some(node) = self.child_hashed(parent, key, s.hash) else {
                continue;
            };
            if counts_only {
                // Count words add up in place (word 0 is the customer
                // mark, which belongs to the tree's own runs).
                let from = other.record(s.node());
                if let Some(to) = self.record_mut(node) {
                    for (t, f) in to.iter_mut().zip(from).skip(1) {
                        *t += *f;
                    }
                }
            } else {
                for slot in 0..self.layout.len() {
                    let from = other.acc(s.node(), slot);
                    self.merge_acc(node, slot, &from);
                }
            }
            if let Some(sub) = other.children.get(s.node() as usize) {
                if !sub.is_empty() {
                    self.merge_level(Some(node), other, sub);
                }
            }
        }
    }

    /// Renders the `{"_": [...]}` JSON after sorting and trimming.
    pub fn render(&self, opts: &RenderOptions) -> J {
        let mut top = Map::new();
        let speller = self.key_space.as_ref().map(|k| k.speller());
        top.insert(
            "_".into(),
            J::Array(self.render_level(&self.roots, opts, speller.as_ref())),
        );
        J::Object(top)
    }

    fn render_level(
        &self,
        level: &Level,
        opts: &RenderOptions,
        speller: Option<&Speller<'_>>,
    ) -> Vec<J> {
        let col = match opts.sort {
            SortBy::Column(i) => Some(i),
            SortBy::Default => Some(0),
            SortBy::Group => None,
        };
        let col = col.and_then(|i| self.columns.get(i).map(|c| (i, c)));
        // Sort values computed once per node, not once per comparison.
        // (Slots copied out first, to ask for their records early: see
        // `merge_level`.)
        let slots: Vec<Slot> = level.iter().copied().collect();
        let mut nodes: Vec<(Option<f64>, KeyRef<'_>, u32)> = Vec::with_capacity(slots.len());
        for (i, s) in slots.iter().enumerate() {
            if let Some(ahead) = slots.get(i + MERGE_AHEAD) {
                prefetch(
                    self.words
                        .as_ptr()
                        .wrapping_add(ahead.node() as usize * self.record),
                );
            }
            let v = col.and_then(|(i, c)| self.sort_value(s.node(), i, c));
            nodes.push((v, key_at(&self.texts, s.key()), s.node()));
        }
        let by_value = |va: &Option<f64>, vb: &Option<f64>| {
            // None (null) sorts below every number.
            let o = match (va, vb) {
                (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if opts.descending {
                o.reverse()
            } else {
                o
            }
        };
        let order = |(va, ka, _): &(Option<f64>, KeyRef<'_>, u32),
                     (vb, kb, _): &(Option<f64>, KeyRef<'_>, u32)| {
            let primary = match col {
                Some(_) => by_value(va, vb),
                None => {
                    let o = ka.order(*kb);
                    if opts.descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            primary.then_with(|| ka.order(*kb))
        };
        if let (Some(n), Some(_)) = (opts.trim, col) {
            // Only nodes ordered no later than the n-th value can be among
            // the first n: found on the numbers alone, as key compares (the
            // tie-break) read every key's text.
            if n > 0 && n < nodes.len() {
                let mut values: Vec<Option<f64>> = nodes.iter().map(|x| x.0).collect();
                values.select_nth_unstable_by(n - 1, by_value);
                let nth = values[n - 1];
                nodes.retain(|x| by_value(&x.0, &nth) != Ordering::Greater);
            }
        }
        // Interned keys are spelled out now, for the nodes still in the
        // running only (key order and JSON need their text).
        let mut spelled = String::new();
        let mut spans = Vec::new();
        if let Some(sp) = speller {
            for (_, k, _) in nodes.iter() {
                if let KeyRef::Parts(p) = k {
                    let start = spelled.len();
                    sp.spell(*p, &mut spelled);
                    spans.push(Some((start, spelled.len())));
                } else {
                    spans.push(None);
                }
            }
        }
        let mut nodes: Vec<(Option<f64>, KeyRef<'_>, u32)> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (v, k, n))| match spans.get(i).copied().flatten() {
                Some((a, b)) => (v, KeyRef::Text(spelled.get(a..b).unwrap_or("")), n),
                None => (v, k, n),
            })
            .collect();
        // Keys are unique within a level, so `order` is total: selecting the
        // first `trim` and sorting only those gives the full sort's prefix.
        if let Some(n) = opts.trim {
            if n == 0 {
                nodes.clear();
            } else if n < nodes.len() {
                nodes.select_nth_unstable_by(n - 1, order);
                nodes.truncate(n);
            }
        }
        nodes.sort_by(order);
        let ncols = self.columns.len();
        nodes
            .into_iter()
            .map(|(_, k, node)| {
                let mut m = Map::new();
                m.insert("g".into(), k.to_json());
                for s in 0..self.segments {
                    let vals: Vec<J> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(ci, c)| self.acc(node, s * ncols + ci).value(c))
                        .collect();
                    let name = if s == 0 {
                        "c".to_string()
                    } else {
                        format!("c{}", s + 1)
                    };
                    m.insert(name, J::Array(vals));
                }
                if let Some(children) = self.children.get(node as usize).filter(|c| !c.is_empty()) {
                    m.insert(
                        "_".into(),
                        J::Array(self.render_level(children, opts, speller)),
                    );
                }
                J::Object(m)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![
            Column {
                alias: "n".into(),
                agg: ColumnAgg::Count,
                prop: PropRef::Id,
                dedup: Dedup::Customer,
                value_kind: PropKind::Text,
            },
            Column {
                alias: "lo".into(),
                agg: ColumnAgg::Min,
                prop: PropRef::Stamp,
                dedup: Dedup::Row,
                value_kind: PropKind::Double,
            },
        ]
    }

    fn tree_with(entries: &[(&str, i64)]) -> ResultTree {
        let mut t = ResultTree::new(&cols(), 1);
        for (k, v) in entries {
            let n = t.child(None, KeyRef::Text(k)).expect("node");
            t.add(n, 0, 1);
            t.add(n, 1, *v);
        }
        t
    }

    #[test]
    fn trees_growing_in_a_dropped_trees_buffers_start_empty() {
        // Dropped trees leave their grown buffers for the next trees that
        // grow (`SPARES`): nothing of the old keys, texts or counts may
        // show. (Tests share the process's spares, so any tree may get
        // any; the answers must hold whichever.)
        let big: Vec<(String, i64)> = (0..5_000).map(|i| (format!("old key {i}"), i)).collect();
        let big: Vec<(&str, i64)> = big.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let o = RenderOptions::default();
        for round in 0..3 {
            drop(tree_with(&big));
            drop(tree_with(&big));
            let small = tree_with(&[("x", 50_000), ("y", 10_000), ("x", 20_000)]);
            let fresh = {
                let mut t = tree_with(&[("y", 10_000)]);
                t.merge(tree_with(&[("x", 50_000), ("x", 20_000)]));
                t
            };
            let j = small.render(&o);
            assert_eq!(j, fresh.render(&o), "round {round}");
            assert_eq!(j["_"].as_array().map(Vec::len), Some(2), "{j}");
            assert_eq!(j["_"][0]["g"], "x", "{j}");
            assert_eq!(j["_"][0]["c"][0], 2, "{j}");
            assert_eq!(small.node_count(), 2);
            // A tree that takes another's arenas in a merge hands back
            // what it had adopted; it still answers for the merged keys.
            let mut empty = ResultTree::new(&cols(), 1);
            empty.merge(tree_with(&big));
            assert_eq!(empty.node_count(), big.len());
        }
    }

    #[test]
    fn merge_is_order_independent() {
        let a = || tree_with(&[("x", 50_000), ("y", 10_000)]);
        let b = || tree_with(&[("x", 20_000)]);
        let c = || tree_with(&[("z", 90_000), ("x", 70_000)]);
        let mut ab_c = a();
        ab_c.merge(b());
        ab_c.merge(c());
        let mut c_ba = c();
        let mut ba = b();
        ba.merge(a());
        c_ba.merge(ba);
        let o = RenderOptions::default();
        assert_eq!(ab_c.render(&o), c_ba.render(&o));
        let j = ab_c.render(&o);
        assert_eq!(j["_"][0]["g"], "x");
        assert_eq!(j["_"][0]["c"], serde_json::json!([3, 2.0]));
    }

    #[test]
    fn compact_records_keep_what_each_aggregator_reports() {
        // Every aggregator over negative, zero and extreme values, split
        // over two merged trees, against a plain `Acc` fed everything.
        let aggs = [
            ColumnAgg::Count,
            ColumnAgg::Sum,
            ColumnAgg::Avg,
            ColumnAgg::Min,
            ColumnAgg::Max,
        ];
        let columns: Vec<Column> = aggs
            .iter()
            .map(|&agg| Column {
                alias: format!("{agg:?}"),
                agg,
                prop: PropRef::Stamp,
                dedup: Dedup::All,
                value_kind: PropKind::Int,
            })
            .collect();
        let values = [-5, 0, i64::MAX, 7, i64::MAX, i64::MIN, -1];
        let mut want = Acc::default();
        let mut halves = [ResultTree::new(&columns, 2), ResultTree::new(&columns, 2)];
        for (i, v) in values.iter().enumerate() {
            want.add(*v);
            let t = &mut halves[i % 2];
            let n = t.child(None, KeyRef::Int(1)).expect("node");
            for slot in 0..aggs.len() {
                // Segment 2's columns stay empty.
                t.add(n, slot, *v);
            }
        }
        let [mut merged, other] = halves;
        merged.merge(other);
        let j = merged.render(&RenderOptions::default());
        let got = &j["_"][0];
        for (ci, c) in columns.iter().enumerate() {
            assert_eq!(got["c"][ci], want.value(c), "{:?}", c.agg);
            assert_eq!(got["c2"][ci], Acc::default().value(c), "{:?}", c.agg);
        }
        assert_eq!(
            got["c"][1],
            serde_json::json!(i64::MAX),
            "partial sums beyond i64 come back exact"
        );
    }

    #[test]
    fn slots_keep_every_key_kind_and_node_whole() {
        let keys = [
            StoredKey::Bool(false),
            StoredKey::Bool(true),
            StoredKey::Int(i64::MIN),
            StoredKey::Int(-1),
            StoredKey::Float(i64::MAX),
            StoredKey::Text {
                start: u32::MAX,
                len: u32::MAX,
            },
            StoredKey::Text { start: 7, len: 0 },
            StoredKey::Parts(u64::MAX),
        ];
        for (i, key) in keys.into_iter().enumerate() {
            for node in [0, 1, NODE_MASK] {
                let hash = (i as u32).wrapping_mul(0x9E37_79B9);
                let s = Slot::new(hash, key, node);
                assert_eq!(format!("{:?}", s.key()), format!("{key:?}"));
                assert_eq!(s.node(), node);
                assert_eq!(s.hash, hash);
            }
        }
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn equal_payloads_of_different_kinds_are_different_keys() {
        // 1 as a bool, an int, a float's storage units and a packed key:
        // four nodes, each found again by its own key.
        let mut t = ResultTree::new(&cols(), 1);
        let keys = [
            KeyRef::Bool(true),
            KeyRef::Int(1),
            KeyRef::Float(1),
            KeyRef::Parts(1),
            KeyRef::Text("1"),
        ];
        let nodes: Vec<u32> = keys
            .iter()
            .map(|k| t.child(None, *k).expect("node"))
            .collect();
        assert_eq!(t.node_count(), keys.len());
        for (k, n) in keys.iter().zip(&nodes) {
            assert_eq!(t.child(None, *k), Some(*n));
        }
        assert_eq!(t.node_count(), keys.len());
    }

    #[test]
    fn count_only_trees_merge_to_the_tree_fed_everything() {
        // Count columns only (the merge adds their words in place), two
        // segments, flat keys and keys with children; pushes dealt round
        // to three trees, merged, against one tree fed them all.
        let count = |alias: &str| Column {
            alias: alias.into(),
            agg: ColumnAgg::Count,
            prop: PropRef::Id,
            dedup: Dedup::All,
            value_kind: PropKind::Int,
        };
        let columns = [count("a"), count("b")];
        let mut whole = ResultTree::new(&columns, 2);
        let mut parts: Vec<ResultTree> = (0..3).map(|_| ResultTree::new(&columns, 2)).collect();
        for i in 0..3000u32 {
            let top = format!("k{}", i % 97);
            let slot = (i % 4) as usize;
            for t in [&mut whole, &mut parts[(i % 3) as usize]] {
                let n = t.child(None, KeyRef::Text(&top)).expect("node");
                t.add(n, slot, 1);
                if i % 5 == 0 {
                    let c = t
                        .child(Some(n), KeyRef::Int(i64::from(i % 7)))
                        .expect("child");
                    t.add(c, 3 - slot, 1);
                }
            }
        }
        let mut merged = ResultTree::new(&columns, 2);
        for t in parts {
            merged.merge(t);
        }
        let o = RenderOptions {
            sort: SortBy::Group,
            descending: false,
            trim: None,
        };
        assert_eq!(merged.render(&o), whole.render(&o));
        assert_eq!(merged.node_count(), whole.node_count());
        assert_eq!(whole.render(&o)["_"][0]["c2"], serde_json::json!([8, 7]));
    }

    #[test]
    fn nested_levels_merge_key_by_key_in_any_order() {
        // "x" is in both trees (its children merge), "y" and "z" in one.
        let nested = |top: &[&str], leaves: &[&str]| {
            let mut t = ResultTree::new(&cols(), 1);
            for k in top {
                let n = t.child(None, KeyRef::Text(k)).expect("node");
                t.add(n, 0, 1);
                for l in leaves {
                    let c = t.child(Some(n), KeyRef::Text(l)).expect("child");
                    t.add(c, 0, 1);
                }
                // An int key beside the texts: typed keys stay apart.
                let c = t.child(Some(n), KeyRef::Int(2)).expect("child");
                t.add(c, 0, 10);
            }
            t
        };
        let mut ab = ResultTree::new(&cols(), 1);
        ab.merge(nested(&["x", "y"], &["1", "2"]));
        ab.merge(nested(&["x", "z"], &["2", "3"]));
        let mut ba = nested(&["x", "z"], &["2", "3"]);
        ba.merge(nested(&["x", "y"], &["1", "2"]));
        let o = RenderOptions {
            sort: SortBy::Group,
            descending: false,
            trim: None,
        };
        assert_eq!(ab.render(&o), ba.render(&o));
        assert_eq!(ab.node_count(), ba.node_count());
        let j = ab.render(&o);
        let level = |v: &J| -> Vec<(J, J)> {
            v["_"].as_array().map_or(vec![], |a| {
                a.iter()
                    .map(|n| (n["g"].clone(), n["c"][0].clone()))
                    .collect()
            })
        };
        assert_eq!(
            level(&j),
            vec![
                (J::from("x"), J::from(2)),
                (J::from("y"), J::from(1)),
                (J::from("z"), J::from(1)),
            ]
        );
        assert_eq!(
            level(&j["_"][0]),
            vec![
                (J::from(2), J::from(2)),
                (J::from("1"), J::from(1)),
                (J::from("2"), J::from(2)),
                (J::from("3"), J::from(1)),
            ]
        );
        // Nodes: x y z, x's 1 2 3 and int 2, y's 1 2 and int 2, z's 2 3
        // and int 2.
        assert_eq!(ab.node_count(), 3 + 4 + 3 + 3);
    }

    #[test]
    fn ascii_key_order_matches_the_lowercase_reference() {
        let words = [
            "a", "A", "ab", "aB", "Ab", "b", "_", "[", "Z", "z", "a1", "A1", "", "é", "É",
        ];
        for a in words {
            for b in words {
                let reference = a
                    .to_lowercase()
                    .cmp(&b.to_lowercase())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()));
                let (ka, kb) = (GroupKey::Text(Arc::from(a)), GroupKey::Text(Arc::from(b)));
                assert_eq!(ka.order(&kb), reference, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn trimmed_render_is_the_prefix_of_the_full_sort() {
        // Many ties on the count and mixed-case keys (non-ASCII too), so the
        // partial selection must break ties exactly as the full sort does.
        let words = [
            "b", "B", "a", "Ä", "ä", "c", "Zeta", "zeta", "éclair", "Eclair",
        ];
        let mut entries = Vec::new();
        for (i, w) in words.iter().enumerate() {
            for _ in 0..(i % 3 + 1) {
                entries.push((*w, 1));
            }
        }
        let t = tree_with(&entries);
        for sort in [SortBy::Default, SortBy::Group] {
            for descending in [false, true] {
                let keys = |trim| {
                    let j = t.render(&RenderOptions {
                        sort,
                        descending,
                        trim,
                    });
                    j["_"].as_array().map_or(vec![], |a| {
                        a.iter()
                            .filter_map(|n| n["g"].as_str().map(String::from))
                            .collect::<Vec<_>>()
                    })
                };
                let full = keys(None);
                assert_eq!(full.len(), words.len());
                for n in 0..=words.len() + 1 {
                    let want: Vec<String> = full.iter().take(n).cloned().collect();
                    assert_eq!(
                        keys(Some(n)),
                        want,
                        "trim {n} sort {sort:?} desc {descending}"
                    );
                }
            }
        }
    }

    #[test]
    fn sorting_ties_and_trim() {
        let t = tree_with(&[("b", 1), ("B", 1), ("a", 1), ("c", 1), ("c", 1)]);
        let j = t.render(&RenderOptions::default());
        let keys: Vec<&str> = j["_"].as_array().map_or(vec![], |a| {
            a.iter().filter_map(|n| n["g"].as_str()).collect()
        });
        assert_eq!(keys, vec!["c", "a", "B", "b"]);
        let j = t.render(&RenderOptions {
            sort: SortBy::Group,
            descending: true,
            trim: Some(2),
        });
        let keys: Vec<&str> = j["_"].as_array().map_or(vec![], |a| {
            a.iter().filter_map(|n| n["g"].as_str()).collect()
        });
        assert_eq!(keys, vec!["c", "b"]);
    }

    #[test]
    fn key_order_and_json() {
        assert_eq!(
            GroupKey::Bool(true).order(&GroupKey::Int(0)),
            Ordering::Less
        );
        assert_eq!(
            GroupKey::Int(3).order(&GroupKey::float(2.5)),
            Ordering::Greater
        );
        assert_eq!(
            GroupKey::Int(9).order(&GroupKey::Text(Arc::from("1"))),
            Ordering::Less
        );
        assert_eq!(GroupKey::float(0.00005), GroupKey::Float(1));
        assert_eq!(GroupKey::float(2.0).to_json(), serde_json::json!(2.0));
        assert_ne!(GroupKey::float(5.0), GroupKey::Int(5));
    }

    #[test]
    fn empty_min_is_null() {
        let mut t = ResultTree::new(&cols(), 2);
        let n = t.child(None, KeyRef::Int(1)).expect("node");
        t.add(n, 0, 1);
        let j = t.render(&RenderOptions::default());
        assert_eq!(j["_"][0]["c"], serde_json::json!([1, null]));
        assert_eq!(j["_"][0]["c2"], serde_json::json!([0, null]));
    }
}
