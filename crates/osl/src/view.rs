//! The data side: what the interpreter needs from one customer, implemented
//! by the caller over its store, plus what a run hands back.

use crate::value::Value;

/// A customer id as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerId<'a> {
    /// Numeric tables.
    Int(i64),
    /// Textual tables (already lower-cased).
    Text(&'a str),
}

/// Read access to one customer's rows, customer properties and the
/// partition dictionary. Rows are ordered by stamp. Row indexes passed in
/// are always `< row_count()`.
///
/// Encoded cells: Int as `i64 as u64`, Double as fixed point (×10,000)
/// `i64 as u64`, Bool as 0/1, Text as a dictionary id.
pub trait CustomerView {
    /// Iterator over the encoded cells of one property (one item for a
    /// scalar property, one per member for a set, none when absent).
    type Values<'a>: Iterator<Item = u64>
    where
        Self: 'a;

    /// Number of rows.
    fn row_count(&self) -> usize;
    /// Stamp (epoch ms) of a row.
    fn stamp(&self, row: usize) -> i64;
    /// The last row's stamp, `None` without rows. Stores that keep it
    /// beside the customer override this to spare a read of the rows.
    fn last_stamp(&self) -> Option<i64> {
        let n = self.row_count();
        (n > 0).then(|| self.stamp(n - 1))
    }
    /// The session count for session time `gap` (ms) when the store keeps
    /// it for that gap, else `None` (the run counts from the stamps).
    fn kept_session_count(&self, gap: i64) -> Option<i64> {
        let _ = gap;
        None
    }
    /// Dictionary id of the event name of a row.
    fn event(&self, row: usize) -> u32;
    /// Cells of event property `prop` (schema index) at `row`.
    fn values(&self, row: usize, prop: u32) -> Self::Values<'_>;
    /// The rows named by dictionary id `id`, ascending, when the store
    /// keeps them listed (`None`: search the names).
    fn rows_named(&self, id: u32) -> Option<&[u32]> {
        let _ = id;
        None
    }
    /// Stamps and event-name ids of all rows, as slices (row order): scans
    /// read them directly instead of calling [`CustomerView::stamp`] and
    /// [`CustomerView::event`] per row.
    fn columns(&self) -> (&[i64], NameIds<'_>);
    /// Cells of customer property `prop`.
    fn customer_values(&self, prop: u32) -> Self::Values<'_>;
    /// The customer id.
    fn id(&self) -> CustomerId<'_>;
    /// Text of a dictionary id.
    fn text(&self, id: u32) -> &str;
    /// A dictionary text as an OSL value. Stores that keep texts in `Arc`s
    /// override this to share them instead of copying per read.
    fn text_value(&self, id: u32) -> crate::value::Value {
        crate::value::Value::text(self.text(id))
    }
    /// Dictionary id of a text, if the partition has it.
    fn text_id(&self, text: &str) -> Option<u32>;
    /// Identity of the dictionary behind `text`/`text_id` (same value for
    /// every customer sharing it), or `None` when unknown. Runs check their
    /// cached text ids once per dictionary instead of once per customer.
    fn dictionary_identity(&self) -> Option<usize> {
        None
    }
    /// Whether any of this customer's rows is named by dictionary id `id`,
    /// when the store can tell without reading the rows (an index); `None`
    /// when it cannot. Runs use it to count as done the pushes that sit
    /// inside scans over an event the customer never had.
    fn has_event(&self, id: u32) -> Option<bool> {
        let _ = id;
        None
    }
    /// Membership of this customer in stored segment `name` (§9.9);
    /// `None` when no such segment exists.
    fn in_segment(&self, name: &str) -> Option<bool> {
        let _ = name;
        None
    }
}

/// Per-request inputs of a run.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// `now`, epoch ms, fixed for the whole request.
    pub now: i64,
    /// Session timeout in ms (§7.1).
    pub session_time: i64,
    /// `stamp_counts=true`: per-row de-duplication by stamp.
    pub stamp_counts: bool,
    /// Segment index for segment-compare mode (0 = `c`, 1 = `c2`, ...).
    pub segment: usize,
    /// Value of `each_value` (histogram `foreach`), nil otherwise.
    pub each_value: Value,
}

impl Default for RunContext {
    fn default() -> Self {
        RunContext {
            now: 0,
            session_time: 1_800_000,
            stamp_counts: false,
            segment: 0,
            each_value: Value::Nil,
        }
    }
}

/// The event-name dictionary ids of a customer's rows, in the width the
/// store keeps them (two bytes each while they fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameIds<'a> {
    /// Two bytes an id.
    Narrow(&'a [u16]),
    /// Four bytes an id.
    Wide(&'a [u32]),
}

impl NameIds<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            NameIds::Narrow(n) => n.len(),
            NameIds::Wide(n) => n.len(),
        }
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A value to store into a customer property (same shape as the store's
/// logged scalars: numbers of every type as i64, text as text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredValue {
    /// Int, fixed-point double (×10,000) or bool (0/1).
    Num(i64),
    /// Text.
    Text(String),
}

/// A customer-property write produced by a run; empty `values` removes the property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerWrite {
    /// Property index.
    pub prop: u32,
    /// New value(s), coerced to the declared type.
    pub values: Vec<StoredValue>,
}

/// What one customer run produced besides its pushes.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    /// The `return` value (nil without `return`, after `exit`, or `return()`).
    pub value: Value,
    /// Customer-property writes to apply (only changed properties).
    pub writes: Vec<CustomerWrite>,
    /// Values passed to `debug(...)`, in order.
    pub debug: Vec<Value>,
    /// Lines produced by `log(...)`, for the caller's log.
    pub log: Vec<String>,
}

impl RunOutcome {
    /// Segment membership (§11.3): the return value is truthy.
    pub fn is_member(&self) -> bool {
        self.value.truthy()
    }
}
