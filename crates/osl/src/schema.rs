//! What the caller tells the compiler: the table schema, the URL script
//! parameters and the kind of script being compiled.

pub use crate::ast::PropKind;
use crate::value::Value;

/// One user property of the table (built-ins `stamp`, `event`, `id`,
/// `session` are implicit and must not be listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropDef {
    /// Property name.
    pub name: String,
    /// Value type.
    pub kind: PropKind,
    /// Holds a set of values.
    pub is_set: bool,
    /// Belongs to the customer rather than to events.
    pub is_customer: bool,
    /// Stable property index, passed back to [`crate::CustomerView`].
    pub index: u32,
}

/// The table schema as OSL needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// User properties.
    pub props: Vec<PropDef>,
    /// True when customer ids are integers (`id_type: numeric`).
    pub numeric_ids: bool,
}

impl Schema {
    /// The property with this name.
    pub fn find(&self, name: &str) -> Option<&PropDef> {
        self.props.iter().find(|p| p.name == name)
    }
}

/// URL script parameters (`str_`/`int_`/`dbl_`/`bool_`), already typed.
#[derive(Clone, Debug, Default)]
pub struct Params {
    vars: Vec<(String, Value)>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds (or replaces) parameter `name`.
    pub fn insert(&mut self, name: &str, value: Value) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    /// Builder form of [`Params::insert`].
    pub fn with(mut self, name: &str, value: Value) -> Params {
        self.insert(name, value);
        self
    }

    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// All parameters in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v))
    }
}

/// Which kind of request the script belongs to (§1.3); decides whether
/// `select` and `<<` are allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScriptKind {
    /// Event query: `select` and `<<` allowed.
    #[default]
    Event,
    /// `@segment` script.
    Segment,
    /// Histogram script.
    Histogram,
}
