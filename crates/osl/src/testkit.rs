//! A small in-memory implementation of [`CustomerView`] (Vec-backed rows,
//! one shared dictionary per partition) for tests and examples.

use crate::schema::{PropKind, Schema};
use crate::value::Value;
use crate::view::{CustomerId, CustomerView, NameIds};
use std::collections::HashMap;

/// A test partition: schema, dictionary and customers.
#[derive(Debug, Default)]
pub struct TestPartition {
    /// The table schema.
    pub schema: Schema,
    texts: Vec<String>,
    ids: HashMap<String, u32>,
    /// Customers in insertion order.
    pub customers: Vec<TestCustomer>,
    /// Hand scans four-byte event-name ids even where two would do.
    pub wide_names: bool,
    /// Name the dictionary to runs (as the server's views do), so that run
    /// states keep what they derived from it between customers.
    pub named_dictionary: bool,
    /// List every event name's rows per customer to runs
    /// ([`CustomerView::rows_named`]), as a store's partition lists rare ones.
    pub list_rows: bool,
}

/// One test customer.
#[derive(Debug, Default)]
pub struct TestCustomer {
    id: TestId,
    rows: Vec<TestRow>,
    /// `rows`' stamps and event ids as columns, for [`CustomerView::columns`].
    stamps: Vec<i64>,
    events: Vec<u32>,
    /// `events` in two bytes each (truncated where one does not fit).
    events16: Vec<u16>,
    /// Per event-name id, its rows (for [`TestPartition::list_rows`]).
    rows_by_name: HashMap<u32, Vec<u32>>,
    props: Vec<(u32, u64)>,
    segments: HashMap<String, bool>,
}

#[derive(Debug)]
enum TestId {
    Int(i64),
    Text(String),
}

impl Default for TestId {
    fn default() -> Self {
        TestId::Int(0)
    }
}

#[derive(Debug)]
struct TestRow {
    stamp: i64,
    event: u32,
    cells: Vec<(u32, u64)>,
}

impl TestPartition {
    /// An empty partition for `schema`.
    pub fn new(schema: Schema) -> TestPartition {
        TestPartition {
            schema,
            ..TestPartition::default()
        }
    }

    fn intern(&mut self, t: &str) -> u32 {
        if let Some(i) = self.ids.get(t) {
            return *i;
        }
        let i = self.texts.len() as u32;
        self.texts.push(t.to_string());
        self.ids.insert(t.to_string(), i);
        i
    }

    fn encode(&mut self, kind: PropKind, v: &Value) -> Vec<u64> {
        let one = |me: &mut Self, v: &Value| -> Option<u64> {
            Some(match (kind, v) {
                (_, Value::Nil) => return None,
                (PropKind::Int, v) => match v.to_int() {
                    Value::Int(i) => i as u64,
                    _ => return None,
                },
                (PropKind::Double, v) => match v.to_float() {
                    Value::Float(f) => (f * 10_000.0).round() as i64 as u64,
                    _ => return None,
                },
                (PropKind::Bool, v) => u64::from(v.truthy()),
                (PropKind::Text, v) => u64::from(me.intern(&v.to_text())),
            })
        };
        match v {
            Value::List(l) => {
                let mut out: Vec<u64> = Vec::new();
                for x in l.iter() {
                    if let Some(c) = one(self, x) {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
                out
            }
            other => one(self, other).into_iter().collect(),
        }
    }

    /// Adds a customer with a text id; returns its index.
    pub fn add_customer(&mut self, id: &str) -> usize {
        self.customers.push(TestCustomer {
            id: TestId::Text(id.to_lowercase()),
            ..TestCustomer::default()
        });
        self.customers.len() - 1
    }

    /// Adds a customer with a numeric id; returns its index.
    pub fn add_numeric_customer(&mut self, id: i64) -> usize {
        self.customers.push(TestCustomer {
            id: TestId::Int(id),
            ..TestCustomer::default()
        });
        self.customers.len() - 1
    }

    /// Appends a row (rows must be added in stamp order). Property values
    /// are given by name; set properties take a list value. Unknown names
    /// are ignored.
    pub fn add_row(&mut self, customer: usize, stamp: i64, event: &str, props: &[(&str, Value)]) {
        let ev = self.intern(event);
        let mut cells = Vec::new();
        for (name, v) in props {
            let Some(def) = self.schema.find(name).cloned() else {
                continue;
            };
            for c in self.encode(def.kind, v) {
                cells.push((def.index, c));
            }
        }
        if let Some(c) = self.customers.get_mut(customer) {
            c.stamps.push(stamp);
            c.events.push(ev);
            c.events16.push(ev as u16);
            let row = c.rows.len() as u32;
            c.rows_by_name.entry(ev).or_default().push(row);
            c.rows.push(TestRow {
                stamp,
                event: ev,
                cells,
            });
        }
    }

    /// Sets a customer property.
    pub fn set_customer_prop(&mut self, customer: usize, name: &str, v: Value) {
        let Some(def) = self.schema.find(name).cloned() else {
            return;
        };
        let cells = self.encode(def.kind, &v);
        if let Some(c) = self.customers.get_mut(customer) {
            c.props.retain(|(p, _)| *p != def.index);
            c.props.extend(cells.into_iter().map(|v| (def.index, v)));
        }
    }

    /// Declares the customer's membership of a stored segment.
    pub fn set_segment(&mut self, customer: usize, name: &str, member: bool) {
        if let Some(c) = self.customers.get_mut(customer) {
            c.segments.insert(name.to_string(), member);
        }
    }

    /// A view of customer `i` for running programs.
    pub fn view(&self, i: usize) -> TestView<'_> {
        TestView {
            part: self,
            cust: self.customers.get(i),
        }
    }
}

/// A [`CustomerView`] over one [`TestCustomer`].
#[derive(Debug, Clone, Copy)]
pub struct TestView<'a> {
    part: &'a TestPartition,
    cust: Option<&'a TestCustomer>,
}

/// Iterator over one property's cells in a test row.
#[derive(Debug)]
pub struct TestCells<'a> {
    cells: std::slice::Iter<'a, (u32, u64)>,
    prop: u32,
}

impl Iterator for TestCells<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        for (p, v) in self.cells.by_ref() {
            if *p == self.prop {
                return Some(*v);
            }
        }
        None
    }
}

impl CustomerView for TestView<'_> {
    type Values<'b>
        = TestCells<'b>
    where
        Self: 'b;

    fn row_count(&self) -> usize {
        self.cust.map_or(0, |c| c.rows.len())
    }

    fn dictionary_identity(&self) -> Option<usize> {
        self.part
            .named_dictionary
            .then_some(self.part as *const TestPartition as usize)
    }

    fn stamp(&self, row: usize) -> i64 {
        self.cust
            .and_then(|c| c.rows.get(row))
            .map_or(0, |r| r.stamp)
    }

    fn columns(&self) -> (&[i64], NameIds<'_>) {
        match self.cust {
            // Two bytes an id when they fit, as the store keeps them.
            Some(c)
                if !self.part.wide_names && c.events.iter().all(|&e| e <= u32::from(u16::MAX)) =>
            {
                (&c.stamps[..], NameIds::Narrow(&c.events16[..]))
            }
            Some(c) => (&c.stamps[..], NameIds::Wide(&c.events[..])),
            None => (&[], NameIds::Wide(&[])),
        }
    }

    fn rows_named(&self, id: u32) -> Option<&[u32]> {
        if !self.part.list_rows {
            return None;
        }
        let rows = self.cust.and_then(|c| c.rows_by_name.get(&id));
        Some(rows.map_or(&[], Vec::as_slice))
    }

    fn event(&self, row: usize) -> u32 {
        self.cust
            .and_then(|c| c.rows.get(row))
            .map_or(u32::MAX, |r| r.event)
    }

    fn values(&self, row: usize, prop: u32) -> TestCells<'_> {
        let cells: &[(u32, u64)] = self
            .cust
            .and_then(|c| c.rows.get(row))
            .map_or(&[], |r| &r.cells);
        TestCells {
            cells: cells.iter(),
            prop,
        }
    }

    fn customer_values(&self, prop: u32) -> TestCells<'_> {
        let cells: &[(u32, u64)] = self.cust.map_or(&[], |c| &c.props);
        TestCells {
            cells: cells.iter(),
            prop,
        }
    }

    fn id(&self) -> CustomerId<'_> {
        match self.cust.map(|c| &c.id) {
            Some(TestId::Text(t)) => CustomerId::Text(t),
            Some(TestId::Int(i)) => CustomerId::Int(*i),
            None => CustomerId::Int(0),
        }
    }

    fn text(&self, id: u32) -> &str {
        self.part.texts.get(id as usize).map_or("", String::as_str)
    }

    fn text_id(&self, text: &str) -> Option<u32> {
        self.part.ids.get(text).copied()
    }

    fn in_segment(&self, name: &str) -> Option<bool> {
        self.cust.and_then(|c| c.segments.get(name).copied())
    }

    fn has_event(&self, id: u32) -> Option<bool> {
        Some(self.cust.is_some_and(|c| c.events.contains(&id)))
    }
}
