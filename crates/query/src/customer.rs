//! The customer query (rest spec 5.5): one customer's properties and events.

use serde_json::{Map, Value};
use store::ingest::fixed_to_double;
use store::partition::{Cell, TablePartition};
use store::record::CustomerKey;
use store::schema::{PropType, TableSchema};
use store::stamp::format_iso8601;
use store::{Db, StoreError};

/// The customer's history as the spec shapes it, or `None` when the table has no such customer.
pub fn customer_history(
    db: &Db,
    table: &str,
    key: &CustomerKey,
) -> Result<Option<Value>, StoreError> {
    let schema = db.table(table)?;
    let engine = db.engine()?;
    let part = engine.read(key.partition(engine.partition_count()));
    let Some(tp) = part.tables.get(&schema.uid) else {
        return Ok(None);
    };
    let Some(c) = tp.customer(key) else {
        return Ok(None);
    };
    let mut events = Vec::with_capacity(c.events.len());
    let mut row: Vec<Cell> = Vec::new();
    for i in 0..c.events.len() {
        row.clear();
        row.extend(c.events.row_cells(i));
        let stamp = c.events.stamps[i];
        let mut e = Map::new();
        e.insert("stamp".into(), Value::from(stamp));
        e.insert("stamp_iso".into(), Value::from(format_iso8601(stamp)));
        e.insert(
            "event".into(),
            Value::from(tp.dict.text(c.events.names.get(i))),
        );
        e.insert("_".into(), Value::Object(cells_json(&schema, tp, &row)));
        events.push(Value::Object(e));
    }
    let mut out = Map::new();
    out.insert("id".into(), c.key.to_json());
    out.insert(
        "properties".into(),
        Value::Object(cells_json(&schema, tp, &c.props)),
    );
    out.insert("events".into(), Value::Array(events));
    Ok(Some(Value::Object(out)))
}

/// Property values of one row (or of a customer) keyed by name, in schema order.
fn cells_json(schema: &TableSchema, tp: &TablePartition, cells: &[Cell]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut i = 0;
    while i < cells.len() {
        let prop = cells[i].prop;
        let end = i + cells[i..].iter().take_while(|c| c.prop == prop).count();
        if let Some(def) = schema.property_by_id(prop) {
            let vals: Vec<Value> = cells[i..end]
                .iter()
                .map(|c| value_json(def.kind, tp, c.value))
                .collect();
            let v = if def.is_set {
                Value::Array(vals)
            } else {
                vals.into_iter().next().unwrap_or(Value::Null)
            };
            out.insert(def.name.clone(), v);
        }
        i = end;
    }
    out
}

/// One stored value as JSON (doubles always carry a decimal point).
pub fn value_json(kind: PropType, tp: &TablePartition, raw: u64) -> Value {
    match kind {
        PropType::Int => Value::from(raw as i64),
        PropType::Double => Value::from(fixed_to_double(raw as i64)),
        PropType::Bool => Value::Bool(raw != 0),
        PropType::Text => Value::from(tp.dict.text(raw as u32)),
    }
}
