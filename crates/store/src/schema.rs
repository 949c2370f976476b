//! Table schemas: property definitions, naming rules, settings and the
//! create-table body forms of rest spec 3.1 and 3.2.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most user properties one table may define (rest spec 1.10).
pub const MAX_PROPERTIES: usize = 3096;
/// Most `event_order` entries (rest spec 1.10).
pub const MAX_EVENT_ORDER: usize = 256;
/// Longest name of a table, property, segment or subscriber.
pub const MAX_NAME_LEN: usize = 64;
/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// The type of a property's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropType {
    /// Signed 64-bit integer.
    Int,
    /// Fixed point with 4 decimals, stored as i64 scaled by 10,000.
    Double,
    /// `true` / `false`.
    Bool,
    /// Dictionary-encoded UTF-8 text.
    Text,
}

impl PropType {
    /// Reads a type name as the API spells it.
    pub fn parse(s: &str) -> Option<PropType> {
        match s {
            "int" => Some(PropType::Int),
            "double" => Some(PropType::Double),
            "bool" => Some(PropType::Bool),
            "text" => Some(PropType::Text),
            _ => None,
        }
    }

    /// The type's API name.
    pub fn name(self) -> &'static str {
        match self {
            PropType::Int => "int",
            PropType::Double => "double",
            PropType::Bool => "bool",
            PropType::Text => "text",
        }
    }
}

/// Whether customer ids are integers or case-folded text (rest spec 1.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// JSON integers in signed 64-bit range.
    Numeric,
    /// Strings of 1 to 64 bytes, ASCII-lowercased.
    Textual,
}

/// One user property of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyDef {
    /// Stable internal id; never reused within a table, so log records that
    /// name a dropped property are recognisably stale on replay.
    pub id: u32,
    /// The property name.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: PropType,
    /// Holds a set of values.
    #[serde(default)]
    pub is_set: bool,
    /// A fact about the customer rather than an event.
    #[serde(default)]
    pub is_customer: bool,
}

impl PropertyDef {
    /// The describe-table JSON of this property (`is_set`/`is_customer` only when true).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::from(self.name.clone()));
        m.insert("type".into(), Value::from(self.kind.name()));
        if self.is_set {
            m.insert("is_set".into(), Value::Bool(true));
        }
        if self.is_customer {
            m.insert("is_customer".into(), Value::Bool(true));
        }
        Value::Object(m)
    }
}

/// Per-table settings (rest spec 3.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Events older than now minus this are trimmed (0: off).
    pub event_ttl: i64,
    /// Most events kept per customer (0: off).
    pub event_max: i64,
    /// Inactivity gap that starts a new session, ms.
    pub session_time: i64,
    /// Minutes; stored and echoed only.
    pub tz_offset: i64,
    /// How often retention runs, ms.
    pub maint_interval: i64,
    /// How often segment refresh is checked, ms.
    pub segment_interval: i64,
    /// Storage hint, 1 to 20.
    pub index_compression: i64,
    /// Storage hint, 1 to 20.
    pub person_compression: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            event_ttl: 0,
            event_max: 0,
            session_time: 1_800_000,
            tz_offset: 0,
            maint_interval: 86_400_000,
            segment_interval: 1_000,
            index_compression: 5,
            person_compression: 5,
        }
    }
}

impl Settings {
    /// Applies a settings object: unknown keys and non-integers are errors,
    /// values outside a key's range are clamped into it.
    pub fn apply(&mut self, body: &Map<String, Value>) -> Result<(), String> {
        let mut next = self.clone();
        for (key, value) in body {
            let v = value
                .as_i64()
                .ok_or_else(|| format!("setting '{key}' must be an integer"))?;
            let zero_or_at_least = |min: i64| if v <= 0 { 0 } else { v.max(min) };
            match key.as_str() {
                "event_ttl" => next.event_ttl = zero_or_at_least(60_000),
                "event_max" => next.event_max = zero_or_at_least(1),
                "session_time" => next.session_time = v.max(1_000),
                "tz_offset" => next.tz_offset = v.clamp(-720, 840),
                "maint_interval" => next.maint_interval = v.max(60_000),
                "segment_interval" => next.segment_interval = v.max(1_000),
                "index_compression" => next.index_compression = v.clamp(1, 20),
                "person_compression" => next.person_compression = v.clamp(1, 20),
                _ => return Err(format!("unknown setting '{key}'")),
            }
        }
        *self = next;
        Ok(())
    }

    /// The settings as the API shows them.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A table's complete definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Incarnation id: a table dropped and created again gets a new one.
    pub uid: u64,
    /// Table name.
    pub name: String,
    /// Customer id kind.
    pub id_type: IdType,
    /// Created with the older `columns` form: integer ids are accepted as text
    /// and describe adds the older keys.
    pub legacy: bool,
    /// User properties in schema order (ascending `id`).
    pub properties: Vec<PropertyDef>,
    /// Next property id to hand out.
    pub next_property_id: u32,
    /// Event names, highest priority first, for ordering same-stamp events.
    pub event_order: Vec<String>,
    /// Settings.
    pub settings: Settings,
    /// Stored segment definitions by name.
    #[serde(default)]
    pub segments: std::collections::BTreeMap<String, SegmentDef>,
}

/// A named segment: its script and header flags (rest spec 5.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentDef {
    /// Segment name.
    pub name: String,
    /// The section's script, after `{{name}}` substitution.
    pub source: String,
    /// Script parameters it was defined with, as JSON values (text, integer, number, bool).
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// 1-based line of the section header in the request that defined it.
    pub header_line: u32,
    /// Re-evaluate in the background this often, ms.
    pub refresh_ms: Option<i64>,
    /// Stored, no effect.
    pub ttl_ms: Option<i64>,
    /// Answer from the stored result while it is younger than `refresh`.
    pub use_cached: bool,
    /// Re-evaluate for the customers an insert touched.
    pub on_insert: bool,
    /// Evaluation order, lowest first.
    pub z_index: i64,
    /// Definition order (ties of `z_index`).
    pub seq: u64,
}

impl TableSchema {
    /// The property of that name.
    pub fn property(&self, name: &str) -> Option<&PropertyDef> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The property of that id.
    pub fn property_by_id(&self, id: u32) -> Option<&PropertyDef> {
        self.properties
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .map(|i| &self.properties[i])
    }

    /// Rank of an event name for same-stamp ordering: its position in
    /// `event_order`, or after all listed names.
    pub fn event_rank(&self, event: &str) -> u16 {
        self.event_order
            .iter()
            .position(|e| e == event)
            .map_or(MAX_EVENT_ORDER as u16, |p| p as u16)
    }

    /// Describe-table JSON (rest spec 3.3).
    pub fn describe(&self, legacy_keys: bool) -> Value {
        let props: Vec<Value> = self.properties.iter().map(PropertyDef::to_json).collect();
        let mut m = Map::new();
        m.insert("table".into(), Value::from(self.name.clone()));
        m.insert(
            "id_type".into(),
            Value::from(match self.id_type {
                IdType::Numeric => "numeric",
                IdType::Textual => "textual",
            }),
        );
        m.insert("properties".into(), Value::Array(props.clone()));
        m.insert("event_order".into(), Value::from(self.event_order.clone()));
        m.insert("settings".into(), self.settings.to_json());
        if self.legacy || legacy_keys {
            m.insert("columns".into(), Value::Array(props));
            m.insert("z-order".into(), Value::from(self.event_order.clone()));
        }
        Value::Object(m)
    }
}

/// True when `name` is a valid table name (`[a-z0-9_]+`, 1 to 64).
pub fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// True when `name` is a valid property name (`[a-z_][a-z0-9_]*`, 1 to 64).
pub fn valid_property_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// True when `name` is a valid segment or subscriber name (`[a-z0-9_][a-z0-9_.]*`, 1 to 64).
pub fn valid_segment_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0] != b'.'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'.')
}

/// Names no property may take: record keys, built-ins and OSL's reserved words (rest spec 1.6).
const RESERVED: &[&str] = &[
    "id",
    "stamp",
    "stamp_iso",
    "event",
    "session",
    "_",
    "person",
    "action",
    "attr",
    // OSL statement and operator words
    "if",
    "elif",
    "elsif",
    "else",
    "end",
    "for",
    "in",
    "each_row",
    "where",
    "select",
    "break",
    "continue",
    "exit",
    "return",
    "contains",
    "any",
    "not",
    "and",
    "or",
    "true",
    "false",
    "nil",
    "sort",
    "each_value",
    // inline aggregations
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "dcount",
    "test",
    "row",
    // built-in variables and functions
    "now",
    "cursor",
    "row_count",
    "first_stamp",
    "last_stamp",
    "session_count",
    "round",
    "trunc",
    "bucket",
    "fix",
    "iso8601_to_stamp",
    "to_seconds",
    "to_minutes",
    "to_hours",
    "to_days",
    "to_weeks",
    "get_second",
    "get_minute",
    "get_hour",
    "get_day_of_week",
    "get_day_of_month",
    "get_day_of_year",
    "get_month",
    "get_quarter",
    "get_year",
    "start_of_second",
    "start_of_minute",
    "start_of_hour",
    "start_of_day",
    "date_day",
    "start_of_week",
    "start_of_month",
    "start_of_quarter",
    "start_of_year",
    "int",
    "float",
    "str",
    "len",
    "keys",
    "set",
    "list",
    "dict",
    "range",
    "url_decode",
    "get_row",
    "log",
    "debug",
    "population",
    "intersection",
    "union",
    "difference",
    "compliment",
    "complement",
    "tally",
];

/// True when `name` may not be used for a user property.
pub fn is_reserved_property_name(name: &str) -> bool {
    name.starts_with("__") || RESERVED.contains(&name)
}

/// Checks a property name against the name rule and the reserved list, with
/// the spec's detail text on failure.
pub fn check_property_name(name: &str) -> Result<(), String> {
    if !valid_property_name(name) {
        return Err(
            "bad properties name: may contain lowercase a-z, 0-9 and _ but cannot start with a number."
                .into(),
        );
    }
    if is_reserved_property_name(name) {
        return Err(format!("reserved property name '{name}'"));
    }
    Ok(())
}

/// Builds a table schema from a create-table body (either form), or the detail text of the 400.
pub fn parse_create_body(name: &str, uid: u64, body: &Value) -> Result<TableSchema, String> {
    let obj = body
        .as_object()
        .ok_or("table definition must be a JSON object")?;
    let mut order_key: Option<&str> = None;
    for key in obj.keys() {
        match key.as_str() {
            "id_type" | "properties" | "columns" | "settings" => {}
            "event_order" | "z-order" | "z_order" => {
                if order_key.replace(key).is_some() {
                    return Err(
                        "more than one event order key (event_order, z-order, z_order)".into(),
                    );
                }
            }
            other => return Err(format!("unknown field '{other}'")),
        }
    }
    let (defs, legacy) = match (obj.get("properties"), obj.get("columns")) {
        (Some(_), Some(_)) => return Err("give either 'properties' or 'columns', not both".into()),
        (Some(p), None) => (p, false),
        (None, Some(c)) => (c, true),
        (None, None) => return Err("properties definition required, missing /properties".into()),
    };
    let id_type = match obj.get("id_type") {
        Some(Value::String(s)) if s == "textual" => IdType::Textual,
        Some(Value::String(s)) if s == "numeric" => IdType::Numeric,
        None if legacy => IdType::Textual,
        _ => return Err("properties /id_type should be 'textual' or 'numeric'".into()),
    };
    let defs = defs
        .as_array()
        .ok_or("properties definition required, missing /properties")?;
    if defs.len() > MAX_PROPERTIES {
        return Err(format!(
            "too many properties: the limit is {MAX_PROPERTIES}"
        ));
    }
    let mut properties: Vec<PropertyDef> = Vec::with_capacity(defs.len());
    for def in defs {
        let d = def.as_object().ok_or("missing properties type or name")?;
        for key in d.keys() {
            if !matches!(key.as_str(), "name" | "type" | "is_set" | "is_customer") {
                return Err(format!("unknown field '{key}'"));
            }
        }
        let (Some(Value::String(pname)), Some(Value::String(ptype))) =
            (d.get("name"), d.get("type"))
        else {
            return Err("missing properties type or name".into());
        };
        check_property_name(pname)?;
        let kind =
            PropType::parse(ptype).ok_or("bad properties type: must be int|double|text|bool")?;
        let flag = |key: &str| match d.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!(
                "'{key}' of property '{pname}' must be true or false"
            )),
        };
        if properties.iter().any(|p| &p.name == pname) {
            return Err(format!("duplicate property name '{pname}'"));
        }
        properties.push(PropertyDef {
            id: properties.len() as u32,
            name: pname.clone(),
            kind,
            is_set: flag("is_set")?,
            is_customer: flag("is_customer")?,
        });
    }
    let mut event_order: Vec<String> = Vec::new();
    if let Some(key) = order_key {
        let list = obj[key]
            .as_array()
            .ok_or("event_order must be an array of event names")?;
        if list.len() > MAX_EVENT_ORDER {
            return Err(format!(
                "too many event_order entries: the limit is {MAX_EVENT_ORDER}"
            ));
        }
        for e in list {
            let e = e
                .as_str()
                .ok_or("event_order must be an array of event names")?;
            if !valid_event_name(e) {
                return Err(format!("bad event name '{e}' in event_order"));
            }
            if event_order.iter().any(|x| x == e) {
                return Err(format!("duplicate event name '{e}' in event_order"));
            }
            event_order.push(e.to_string());
        }
    }
    let mut settings = Settings::default();
    if let Some(s) = obj.get("settings") {
        settings.apply(s.as_object().ok_or("settings must be an object")?)?;
    }
    Ok(TableSchema {
        uid,
        name: name.to_string(),
        id_type,
        legacy,
        next_property_id: properties.len() as u32,
        properties,
        event_order,
        settings,
        segments: Default::default(),
    })
}

/// True when `e` is a valid event name: 1 to 128 bytes, no control characters.
pub fn valid_event_name(e: &str) -> bool {
    !e.is_empty() && e.len() <= MAX_EVENT_NAME_LEN && !e.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(valid_table_name("2024_rides"));
        assert!(!valid_table_name("Rides"));
        assert!(valid_property_name("_x1"));
        assert!(valid_property_name("a"));
        assert!(!valid_property_name("1a"));
        assert!(!valid_property_name(&"a".repeat(65)));
        assert!(is_reserved_property_name("__segment"));
        assert!(is_reserved_property_name("now"));
        assert!(!is_reserved_property_name("station"));
    }

    #[test]
    fn create_forms() {
        let t = parse_create_body(
            "rides",
            1,
            &json!({"id_type": "numeric", "properties": [{"name": "a", "type": "int", "is_set": true}], "event_order": ["x"]}),
        )
        .unwrap();
        assert_eq!(t.id_type, IdType::Numeric);
        assert!(t.properties[0].is_set);
        assert_eq!(t.event_rank("x"), 0);
        assert_eq!(t.event_rank("y"), 256);
        let old = parse_create_body(
            "r",
            2,
            &json!({"columns": [{"name": "a", "type": "text"}], "z-order": ["q"]}),
        )
        .unwrap();
        assert!(old.legacy);
        assert_eq!(old.id_type, IdType::Textual);
        for (body, msg) in [
            (json!({"properties": []}), "id_type"),
            (json!({"id_type": "textual"}), "missing /properties"),
            (
                json!({"id_type": "textual", "properties": [], "extra": 1}),
                "unknown field 'extra'",
            ),
            (
                json!({"id_type": "textual", "properties": [{"name": "a"}]}),
                "missing properties type or name",
            ),
            (
                json!({"id_type": "textual", "properties": [{"name": "a", "type": "float"}]}),
                "bad properties type",
            ),
            (
                json!({"id_type": "textual", "properties": [{"name": "A", "type": "int"}]}),
                "bad properties name",
            ),
            (
                json!({"id_type": "textual", "properties": [{"name": "stamp", "type": "int"}]}),
                "reserved",
            ),
            (
                json!({"id_type": "textual", "properties": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}),
                "duplicate property",
            ),
            (
                json!({"id_type": "textual", "properties": [], "event_order": ["a", "a"]}),
                "duplicate event name",
            ),
            (
                json!({"columns": [], "z-order": [], "z_order": []}),
                "more than one",
            ),
        ] {
            let err = parse_create_body("t", 1, &body).unwrap_err();
            assert!(err.contains(msg), "{err} should contain {msg}");
        }
    }

    #[test]
    fn settings_clamp_and_reject() {
        let mut s = Settings::default();
        s.apply(
            json!({"event_ttl": 5, "tz_offset": -1000, "session_time": 10})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (s.event_ttl, s.tz_offset, s.session_time),
            (60_000, -720, 1_000)
        );
        assert!(s.apply(json!({"nope": 1}).as_object().unwrap()).is_err());
        assert!(s
            .apply(json!({"event_max": "1"}).as_object().unwrap())
            .is_err());
    }
}
