//! The result tree of event queries (§10): typed group keys, one
//! accumulator per (segment, select column) per node, an associative and
//! commutative merge, deterministic sorting, trimming and JSON rendering.
//!
//! Every column value that can be aggregated is an integer in storage
//! (ints, fixed-point doubles, bools, stamps), so accumulators are exact
//! integers; doubles are converted only when rendering. That makes merging
//! partitions order-independent.

use crate::ast::{PropKind, PropRef};
/// One level of the tree: children by key.
pub type HashMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;
use serde_json::{Map, Number, Value as J};
use std::cmp::Ordering;
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
        let scaled = (f * 10_000.0).round();
        GroupKey::Float(if scaled.is_finite() { scaled as i64 } else { 0 })
    }

    /// JSON form.
    pub fn to_json(&self) -> J {
        match self {
            GroupKey::Bool(b) => J::Bool(*b),
            GroupKey::Int(i) => J::from(*i),
            GroupKey::Float(f) => float_json(*f as f64 / 10_000.0),
            GroupKey::Text(t) => J::from(&**t),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            GroupKey::Bool(_) => 0,
            GroupKey::Int(_) | GroupKey::Float(_) => 1,
            GroupKey::Text(_) => 2,
        }
    }

    fn num(&self) -> f64 {
        match self {
            GroupKey::Int(i) => *i as f64,
            GroupKey::Float(f) => *f as f64 / 10_000.0,
            _ => 0.0,
        }
    }

    /// The `sort=group` order: bool < number < text; numbers numerically,
    /// text case-insensitively then by bytes.
    pub fn order(&self, other: &GroupKey) -> Ordering {
        match (self, other) {
            (GroupKey::Bool(a), GroupKey::Bool(b)) => a.cmp(b),
            // ASCII (the common case) without allocating; the same order.
            (GroupKey::Text(a), GroupKey::Text(b)) if a.is_ascii() && b.is_ascii() => a
                .bytes()
                .map(|c| c.to_ascii_lowercase())
                .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
                .then_with(|| a.as_bytes().cmp(b.as_bytes())),
            (GroupKey::Text(a), GroupKey::Text(b)) => a
                .to_lowercase()
                .cmp(&b.to_lowercase())
                .then_with(|| a.as_bytes().cmp(b.as_bytes())),
            (GroupKey::Int(a), GroupKey::Int(b)) => a.cmp(b),
            _ if self.rank() == 1 && other.rank() == 1 => self
                .num()
                .partial_cmp(&other.num())
                .unwrap_or(Ordering::Equal)
                .then_with(|| {
                    matches!(self, GroupKey::Float(_)).cmp(&matches!(other, GroupKey::Float(_)))
                }),
            _ => self.rank().cmp(&other.rank()),
        }
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

impl From<&GroupKey> for GroupKey {
    fn from(k: &GroupKey) -> GroupKey {
        k.clone()
    }
}

/// One node of the tree.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Unique id within its tree (used for per-run de-duplication).
    pub id: u64,
    /// Accumulators, `segments * columns`, segment-major.
    pub accs: Vec<Acc>,
    /// Children by key.
    pub children: HashMap<GroupKey, Node>,
    /// The last run (a [`crate::RunState`] run number, unique per process)
    /// that counted this node's once-per-customer columns: the common
    /// de-duplication, done without a set lookup.
    pub(crate) customer_run: u64,
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
#[derive(Clone, Debug)]
pub struct ResultTree {
    columns: Arc<[Column]>,
    segments: usize,
    roots: HashMap<GroupKey, Node>,
    next_id: u64,
}

impl ResultTree {
    /// An empty tree for these columns and `segments` (≥ 1) column sets.
    pub fn new(columns: &[Column], segments: usize) -> ResultTree {
        ResultTree {
            columns: Arc::from(columns),
            segments: segments.max(1),
            roots: HashMap::default(),
            next_id: 1,
        }
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
        self.roots.is_empty()
    }

    /// The top-level nodes.
    pub fn roots(&self) -> &HashMap<GroupKey, Node> {
        &self.roots
    }

    /// Finds (creating if needed) the node at `path` under `parent` (None:
    /// top level) and returns a mutable reference to it.
    pub(crate) fn child_mut<'t>(
        roots: &'t mut HashMap<GroupKey, Node>,
        next_id: &mut u64,
        width: usize,
        key: &GroupKey,
    ) -> &'t mut Node {
        // One lookup, and no key clone, on the common path (the node exists).
        roots.entry_ref(key).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            Node {
                id,
                accs: vec![Acc::default(); width],
                children: HashMap::default(),
                customer_run: 0,
            }
        })
    }

    /// Mutable access for the interpreter: (roots, id counter, accumulator width).
    pub(crate) fn parts_mut(&mut self) -> (&mut HashMap<GroupKey, Node>, &mut u64, usize) {
        let w = self.segments * self.columns.len();
        (&mut self.roots, &mut self.next_id, w)
    }

    /// Merges `other` into `self` (associative and commutative; both trees
    /// must have the same columns and segment count).
    pub fn merge(&mut self, other: ResultTree) {
        let w = self.segments * self.columns.len();
        merge_level(&mut self.roots, other.roots, &mut self.next_id, w);
    }

    /// Renders the `{"_": [...]}` JSON after sorting and trimming.
    pub fn render(&self, opts: &RenderOptions) -> J {
        let mut top = Map::new();
        top.insert("_".into(), J::Array(self.render_level(&self.roots, opts)));
        J::Object(top)
    }

    fn render_level(&self, level: &HashMap<GroupKey, Node>, opts: &RenderOptions) -> Vec<J> {
        let col = match opts.sort {
            SortBy::Column(i) => Some(i),
            SortBy::Default => Some(0),
            SortBy::Group => None,
        };
        let col = col.and_then(|i| self.columns.get(i).map(|c| (i, c)));
        // Sort values computed once per node, not once per comparison.
        let mut nodes: Vec<(Option<f64>, &GroupKey, &Node)> = level
            .iter()
            .map(|(k, n)| {
                let v = col.and_then(|(i, c)| n.accs.get(i).and_then(|a| a.sort_value(c)));
                (v, k, n)
            })
            .collect();
        let order = |(va, ka, _): &(Option<f64>, &GroupKey, &Node),
                     (vb, kb, _): &(Option<f64>, &GroupKey, &Node)| {
            let primary = match col {
                Some(_) => {
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
                }
                None => {
                    let o = ka.order(kb);
                    if opts.descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            primary.then_with(|| ka.order(kb))
        };
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
            .map(|(_, k, n)| {
                let mut m = Map::new();
                m.insert("g".into(), k.to_json());
                for s in 0..self.segments {
                    let vals: Vec<J> = self
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(ci, c)| {
                            n.accs
                                .get(s * ncols + ci)
                                .copied()
                                .unwrap_or_default()
                                .value(c)
                        })
                        .collect();
                    let name = if s == 0 {
                        "c".to_string()
                    } else {
                        format!("c{}", s + 1)
                    };
                    m.insert(name, J::Array(vals));
                }
                if !n.children.is_empty() {
                    m.insert("_".into(), J::Array(self.render_level(&n.children, opts)));
                }
                J::Object(m)
            })
            .collect()
    }
}

fn merge_level(
    into: &mut HashMap<GroupKey, Node>,
    from: HashMap<GroupKey, Node>,
    next_id: &mut u64,
    width: usize,
) {
    for (k, n) in from {
        let target = ResultTree::child_mut(into, next_id, width, &k);
        for (a, b) in target.accs.iter_mut().zip(n.accs.iter()) {
            a.merge(b);
        }
        merge_level(&mut target.children, n.children, next_id, width);
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
        let (roots, next, w) = t.parts_mut();
        for (k, v) in entries {
            let n = ResultTree::child_mut(roots, next, w, &GroupKey::Text(Arc::from(*k)));
            n.accs[0].add(1);
            n.accs[1].add(*v);
        }
        t
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
        let (roots, next, w) = t.parts_mut();
        let n = ResultTree::child_mut(roots, next, w, &GroupKey::Int(1));
        n.accs[0].add(1);
        let j = t.render(&RenderOptions::default());
        assert_eq!(j["_"][0]["c"], serde_json::json!([1, null]));
        assert_eq!(j["_"][0]["c2"], serde_json::json!([0, null]));
    }
}
