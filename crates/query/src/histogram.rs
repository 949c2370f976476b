//! The histogram query (rest spec 5.6, OSL spec 12.1): compile once, run the
//! program for every customer of every partition in parallel, turn each
//! run's `return` value into a sample, count customers per (bucketed)
//! sample, merge the per-worker histograms, then fill, sort and trim.
//!
//! With `foreach=<property>` the script runs once per customer for every
//! distinct value the property has anywhere in the table (gathered from the
//! partitions' indexes first, so the answer does not depend on how customers
//! are spread over partitions), with `each_value` set to that value.

use crate::event::{collect_writes, Selection, Writes};
use crate::view::osl_schema;
use crate::Answer;
use crate::QueryError;
use osl::{
    histogram_sample, CompileError, CompileOptions, ErrorCode, GroupKey, Histogram,
    HistogramOptions, Params, Pos, Program, RunContext, RuntimeError, Sample, ScriptKind, Value,
};
use std::collections::HashMap;
use std::sync::Arc;
use store::index::EVENT_PROP;
use store::ingest::fixed_to_double;
use store::schema::{PropType, TableSchema};
use store::Db;

/// Smallest `bucket=` accepted: samples keep 4 decimals, so a finer grid
/// cannot be represented.
pub const MIN_BUCKET: f64 = 0.0001;

/// Largest magnitude of `bucket=`, `min=` and `max=`: samples are kept as
/// fixed point ×10,000 in 64 bits.
pub const MAX_MAGNITUDE: f64 = 1e14;

/// Most buckets a `min=`/`max=` pair may ask the fill to create.
pub const MAX_FILL: f64 = 100_000.0;

/// What the request asks beyond the script.
#[derive(Clone, Debug)]
pub struct HistogramQuery {
    /// The `{name}` of the path: the root branch's group value.
    pub name: String,
    /// Script parameters (`str_`, `int_`, ...), typed.
    pub params: Params,
    /// `bucket=`: group samples into `floor(v / bucket) × bucket` and fill.
    pub bucket: Option<f64>,
    /// `min=`: lower end of the fill (needs `bucket`).
    pub min: Option<f64>,
    /// `max=`: upper end of the fill; samples at or above it fold into it (needs `bucket`).
    pub max: Option<f64>,
    /// `foreach=`: run once per value of this property, with `each_value` set.
    pub foreach: Option<String>,
    /// `order=desc` (default) or `asc`: the order of group values.
    pub descending: bool,
    /// `trim=`: keep the first N of every list.
    pub trim: Option<usize>,
    /// `session_time=`, ms; the table's setting when absent.
    pub session_time: Option<i64>,
    /// `segments=`: one count column per selection (`c`, `c2`, ...).
    pub selections: Vec<Selection>,
    /// `now` for the whole request, epoch ms.
    pub now: i64,
}

impl Default for HistogramQuery {
    fn default() -> Self {
        HistogramQuery {
            name: String::new(),
            params: Params::new(),
            bucket: None,
            min: None,
            max: None,
            foreach: None,
            descending: true,
            trim: None,
            session_time: None,
            selections: vec![Selection::Everyone],
            now: 0,
        }
    }
}

impl HistogramQuery {
    /// Reads a histogram query's parameters (URL parameters, or a batch
    /// section's `key=value` pairs): `bucket`, `min`, `max`, `foreach`,
    /// `order`, `trim`, `session_time`. Selections default to everyone.
    pub fn from_params(
        get: &dyn Fn(&str) -> Option<String>,
        name: String,
        params: Params,
        now: i64,
    ) -> Result<HistogramQuery, QueryError> {
        let bad = |d: String| QueryError::BadParam(d);
        let number = |key: &str| -> Result<Option<f64>, QueryError> {
            let Some(raw) = get(key) else { return Ok(None) };
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() <= MAX_MAGNITUDE)
                .map(Some)
                .ok_or_else(|| bad(format!("{key} must be a number from -{MAX_MAGNITUDE} to {MAX_MAGNITUDE}; got '{raw}'")))
        };
        let int = |key: &str| -> Result<Option<i64>, QueryError> {
            get(key)
                .map(|raw| {
                    raw.trim().parse::<i64>().map_err(|_| {
                        bad(format!("parameter '{key}' must be an integer; got '{raw}'"))
                    })
                })
                .transpose()
        };
        let descending = match get("order").map(|o| o.to_ascii_lowercase()).as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(bad(format!("order must be asc or desc; got '{other}'"))),
        };
        let foreach = match get("foreach") {
            None => None,
            Some(f) if f.trim().is_empty() => {
                return Err(bad("foreach must name a property".into()))
            }
            Some(f) => Some(f.trim().to_string()),
        };
        let query = HistogramQuery {
            name,
            params,
            bucket: number("bucket")?,
            min: number("min")?,
            max: number("max")?,
            foreach,
            descending,
            trim: int("trim")?.filter(|&t| t > 0).map(|t| t as usize),
            session_time: match int("session_time")? {
                Some(t) if t <= 0 => {
                    return Err(bad(
                        "session_time must be a positive number of milliseconds".into(),
                    ))
                }
                other => other,
            },
            selections: vec![Selection::Everyone],
            now,
        };
        query.check().map_err(bad)?;
        Ok(query)
    }

    /// Checks `bucket`, `min` and `max` together (rest spec 5.6): bucket
    /// above 0 (at least [`MIN_BUCKET`]), min and max only with bucket, min
    /// not above max, numbers within [`MAX_MAGNITUDE`], and at most
    /// [`MAX_FILL`] buckets between min and max. The error is the detail.
    pub fn check(&self) -> Result<(), String> {
        let in_range = |v: f64| v.is_finite() && v.abs() <= MAX_MAGNITUDE;
        if let Some(b) = self.bucket {
            if !in_range(b) || b <= 0.0 {
                return Err(format!("bucket must be a number above 0; got {b}"));
            }
            if b < MIN_BUCKET {
                return Err(format!(
                    "bucket must be at least {MIN_BUCKET} (samples keep 4 decimals); got {b}"
                ));
            }
        }
        for (name, v) in [("min", self.min), ("max", self.max)] {
            if let Some(v) = v {
                if self.bucket.is_none() {
                    return Err("min and max require bucket".into());
                }
                if !in_range(v) {
                    return Err(format!(
                        "{name} must be a number from -{MAX_MAGNITUDE} to {MAX_MAGNITUDE}; got {v}"
                    ));
                }
            }
        }
        if let (Some(b), Some(lo), Some(hi)) = (self.bucket, self.min, self.max) {
            if lo > hi {
                return Err(format!("min ({lo}) must not be above max ({hi})"));
            }
            if (hi - (lo / b).floor() * b) / b > MAX_FILL {
                return Err(format!(
                    "min, max and bucket would fill more than {MAX_FILL} buckets"
                ));
            }
        }
        Ok(())
    }
}

/// Compiles a histogram script against `table` (after `{{name}}` substitution).
/// `opts` places errors in a batch body (line offset, section name).
pub fn compile(
    schema: &TableSchema,
    source: &str,
    params: &Params,
    opts: CompileOptions,
) -> Result<Program, QueryError> {
    let text = osl::substitute_templates(source, params).map_err(QueryError::Compile)?;
    let opts = CompileOptions {
        kind: ScriptKind::Histogram,
        ..opts
    };
    osl::compile_with(&text, &osl_schema(schema), params, &opts).map_err(QueryError::Compile)
}

/// The property `foreach=` names: its index id and type.
fn foreach_property(schema: &TableSchema, name: &str) -> Result<(u32, PropType), QueryError> {
    match name {
        "event" => Ok((EVENT_PROP, PropType::Text)),
        "stamp" | "stamp_iso" | "id" | "session" => Err(QueryError::Request {
            detail: format!("foreach cannot use the built-in property '{name}'"),
        }),
        _ => schema
            .property(name)
            .map(|p| (p.id, p.kind))
            .ok_or_else(|| QueryError::MissingForeach(name.to_string())),
    }
}

/// One `foreach` value: its group key in the answer and its `each_value`.
fn foreach_value(
    kind: PropType,
    raw: u64,
    dict: &store::partition::Dictionary,
) -> (GroupKey, Value) {
    match kind {
        PropType::Int => (GroupKey::Int(raw as i64), Value::Int(raw as i64)),
        PropType::Double => (
            GroupKey::Float(raw as i64),
            Value::Float(fixed_to_double(raw as i64)),
        ),
        PropType::Bool => (GroupKey::Bool(raw != 0), Value::Bool(raw != 0)),
        PropType::Text => {
            let text = dict.text(raw as u32);
            (GroupKey::Text(Arc::from(text)), Value::text(text))
        }
    }
}

/// Every distinct value of `prop` in the table, in group-key order (so runs
/// and their writes happen in the same order whatever the partition count).
fn foreach_values(
    db: &Db,
    schema: &TableSchema,
    prop: u32,
    kind: PropType,
) -> Result<Vec<(GroupKey, Value)>, QueryError> {
    let engine = db.engine()?;
    let mut seen: HashMap<GroupKey, Value> = HashMap::new();
    for p in 0..engine.partition_count() {
        let part = engine.read(p);
        let Some(tp) = part.tables.get(&schema.uid) else {
            continue;
        };
        for (raw, customers) in tp.index.values(prop) {
            if customers.is_empty() {
                continue;
            }
            let (key, value) = foreach_value(kind, raw, &tp.dict);
            seen.entry(key).or_insert(value);
        }
    }
    let mut values: Vec<(GroupKey, Value)> = seen.into_iter().collect();
    values.sort_by(|a, b| a.0.order(&b.0));
    Ok(values)
}

/// A histogram query checked and compiled, ready to run (also one
/// `@histogram` section of a batch).
pub struct HistogramSection {
    query: HistogramQuery,
    program: Program,
    foreach: Option<(u32, PropType)>,
}

impl HistogramSection {
    /// Checks the parameters and compiles the script; nothing runs yet.
    pub fn compile(
        schema: &TableSchema,
        source: &str,
        query: HistogramQuery,
        opts: CompileOptions,
    ) -> Result<HistogramSection, QueryError> {
        query.check().map_err(QueryError::BadParam)?;
        let program = compile(schema, source, &query.params, opts)?;
        let foreach = match query.foreach.as_deref() {
            None => None,
            Some(name) => {
                let prop = foreach_property(schema, name)?;
                if !program.uses_each_value() {
                    return Err(QueryError::Compile(CompileError::new(
                        ErrorCode::SyntaxError,
                        "'foreach' specified in query, but the 'each_value' variable was not found in the script.",
                        Pos::default(),
                    )));
                }
                Some(prop)
            }
        };
        Ok(HistogramSection {
            query,
            program,
            foreach,
        })
    }

    /// The readable listing of the compiled script.
    pub fn listing(&self) -> String {
        self.program.debug_listing()
    }

    /// Runs the script for every selected customer and renders the tree.
    pub fn run(&self, db: &Db, table: &str) -> Result<serde_json::Value, QueryError> {
        let schema = db.table(table)?;
        let q = &self.query;
        let base = RunContext {
            now: q.now,
            session_time: q.session_time.unwrap_or(schema.settings.session_time),
            ..RunContext::default()
        };
        // One context (and group key) per run of a customer.
        let runs: Vec<(Option<GroupKey>, RunContext)> = match self.foreach {
            None => vec![(None, base)],
            Some((prop, kind)) => foreach_values(db, &schema, prop, kind)?
                .into_iter()
                .map(|(key, value)| {
                    (
                        Some(key),
                        RunContext {
                            each_value: value,
                            ..base.clone()
                        },
                    )
                })
                .collect(),
        };
        let opts = HistogramOptions {
            name: q.name.clone(),
            bucket: q.bucket,
            min: q.min,
            max: q.max,
            descending: q.descending,
            trim: q.trim,
        };
        let everyone = [Selection::Everyone];
        let selections = if q.selections.is_empty() {
            &everyone[..]
        } else {
            &q.selections[..]
        };
        let hist = run_all(db, &schema, &self.program, &runs, &opts, selections)?;
        let mut out = hist.render();
        if runs.first().is_some_and(|r| r.0.is_none()) {
            add_empty_fill(&mut out, &opts, selections.len());
        }
        Ok(out)
    }
}

/// Runs a histogram query; with `debug` only compiles and lists the program.
pub fn histogram_query(
    db: &Db,
    table: &str,
    source: &str,
    q: &HistogramQuery,
    debug: bool,
) -> Result<Answer, QueryError> {
    let schema = db.table(table)?;
    let section = HistogramSection::compile(&schema, source, q.clone(), CompileOptions::default())?;
    if debug {
        return Ok(Answer::Listing(section.listing()));
    }
    Ok(Answer::Tree(section.run(db, table)?))
}

/// When nobody produced a sample, `min` and `max` with `bucket` still give
/// the zero-filled branches and the `max` branch (rest spec 5.6: "the max
/// branch is always present"); `Histogram` renders no children then.
fn add_empty_fill(out: &mut serde_json::Value, opts: &HistogramOptions, segments: usize) {
    let (Some(b), Some(lo), Some(hi)) = (opts.bucket, opts.min, opts.max) else {
        return;
    };
    let Some(root) = out
        .get_mut("_")
        .and_then(|l| l.get_mut(0))
        .and_then(|r| r.as_object_mut())
    else {
        return;
    };
    if root.contains_key("_") {
        return;
    }
    let scaled = |f: f64| (f * 10_000.0).round() as i64;
    let ints = [b, lo, hi].iter().all(|v| v.fract() == 0.0);
    let step = scaled(b).max(1);
    let top = scaled(hi);
    let mut keys = Vec::new();
    let mut k = scaled((lo / b + 1e-9).floor() * b);
    while k < top && (keys.len() as f64) < MAX_FILL {
        keys.push(k);
        k = k.saturating_add(step);
    }
    keys.push(top);
    if opts.descending {
        keys.reverse();
    }
    if let Some(n) = opts.trim {
        keys.truncate(n);
    }
    let children = keys
        .into_iter()
        .map(|k| {
            let mut m = serde_json::Map::new();
            let g = if ints {
                serde_json::Value::from(k / 10_000)
            } else {
                serde_json::Value::from(k as f64 / 10_000.0)
            };
            m.insert("g".into(), g);
            for s in 0..segments {
                let name = if s == 0 {
                    "c".to_string()
                } else {
                    format!("c{}", s + 1)
                };
                m.insert(name, serde_json::json!([0]));
            }
            serde_json::Value::Object(m)
        })
        .collect();
    root.insert("_".into(), serde_json::Value::Array(children));
}

/// The run-time fault of a return value that is not a number (OSL spec 12.1, D66).
fn sample_error(detail: String) -> RuntimeError {
    RuntimeError {
        code: ErrorCode::RunTimeExceptionTriggered,
        detail,
        line: 0,
        column: 0,
        additional: String::new(),
        section: None,
    }
}

/// Runs every customer of one partition through `runs`, adding its samples
/// to `hist` and its customer-property writes to `writes`.
fn run_partition(
    tp: &store::partition::TablePartition,
    program: &Program,
    runs: &[(Option<GroupKey>, RunContext)],
    selections: &[Selection],
    hist: &mut Histogram,
    writes: &mut Writes,
) -> Result<(), RuntimeError> {
    let members: Vec<Option<roaring::RoaringBitmap>> = selections
        .iter()
        .map(|sel| crate::event::selected(tp, sel, None))
        .collect();
    let mut state = program.new_state();
    // Histogram scripts cannot push (a compile error), so this stays empty.
    let mut scratch = program.new_tree(1);
    let mut samples: Vec<(Option<GroupKey>, Sample)> = Vec::with_capacity(runs.len());
    // Every selection's members (`None`: everyone) are run once.
    let union = if members.iter().any(Option::is_none) {
        None
    } else {
        Some(
            members
                .iter()
                .flatten()
                .fold(roaring::RoaringBitmap::new(), |acc, b| acc | b),
        )
    };
    let session_time = runs.first().map_or(0, |(_, ctx)| ctx.session_time);
    let visiting = union
        .as_ref()
        .map_or(tp.customers.len(), |c| c.len() as usize);
    let name_rows = crate::view::stepped_names(tp, program, visiting);
    crate::view::for_each_customer(
        tp,
        union.as_ref(),
        program.row_access(),
        session_time,
        &name_rows,
        |view| {
            let ci = view.index;
            // One run, one selection (the common case): straight in.
            if let ([(key, ctx)], [_]) = (runs, members.as_slice()) {
                // `return(<number expression>)`: straight from the customer.
                if let Some(value) = program.quick_number(&view, ctx, &mut state, &mut scratch) {
                    if let Some(s) = histogram_sample(&value).map_err(sample_error)? {
                        hist.add_one(0, key, s);
                    }
                    return Ok(());
                }
                let mut outcome = program.run(&view, ctx, &mut state, &mut scratch)?;
                let value = std::mem::take(&mut outcome.value);
                if let Some(s) = histogram_sample(&value).map_err(sample_error)? {
                    hist.add_one(0, key, s);
                }
                collect_writes(view.customer, outcome, writes);
                return Ok(());
            }
            samples.clear();
            for (key, ctx) in runs {
                let mut outcome = program.run(&view, ctx, &mut state, &mut scratch)?;
                let value = std::mem::take(&mut outcome.value);
                if let Some(s) = histogram_sample(&value).map_err(sample_error)? {
                    samples.push((key.clone(), s));
                }
                collect_writes(view.customer, outcome, writes);
            }
            for (seg, m) in members.iter().enumerate() {
                if m.as_ref().is_none_or(|b| b.contains(ci)) {
                    hist.add_customer(seg, &samples);
                }
            }
            Ok(())
        },
    )
}

/// Runs `program` over every customer of the table, partitions in parallel
/// (workers take partitions one at a time under the partition's read
/// lock), and returns the merged histogram. The first runtime error aborts
/// everything and nothing is written; otherwise customer-property writes
/// of the runs are committed through the log before the answer.
fn run_all(
    db: &Db,
    schema: &TableSchema,
    program: &Program,
    runs: &[(Option<GroupKey>, RunContext)],
    opts: &HistogramOptions,
    selections: &[Selection],
) -> Result<Histogram, QueryError> {
    let segments = selections.len();
    let results = crate::parallel::for_each_partition(
        db.engine()?,
        schema.uid,
        || (Histogram::new(opts.clone(), segments), Writes::new()),
        |(hist, writes), _, tp| {
            run_partition(tp, program, runs, selections, hist, writes).map_err(QueryError::Runtime)
        },
    )?;
    let mut merged = Histogram::new(opts.clone(), segments);
    let mut all_writes = Writes::new();
    for (h, w) in results {
        merged.merge(h);
        all_writes.extend(w);
    }
    crate::control::may_write(!all_writes.is_empty())?;
    db.write_customer_properties(&schema.name, &all_writes)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(bucket: Option<f64>, min: Option<f64>, max: Option<f64>) -> HistogramQuery {
        HistogramQuery {
            bucket,
            min,
            max,
            ..HistogramQuery::default()
        }
    }

    #[test]
    fn number_checks() {
        assert!(q(None, None, None).check().is_ok());
        assert!(q(Some(10.0), Some(-5.0), Some(50.0)).check().is_ok());
        assert!(q(Some(0.0), None, None).check().is_err());
        assert!(q(Some(-1.0), None, None).check().is_err());
        assert!(q(Some(f64::NAN), None, None).check().is_err());
        assert!(q(None, Some(1.0), None).check().is_err());
        assert!(q(None, None, Some(1.0)).check().is_err());
        assert!(q(Some(1.0), Some(5.0), Some(1.0)).check().is_err());
        assert!(q(Some(0.001), Some(0.0), Some(1e6)).check().is_err());
        assert!(q(Some(1.0), Some(1e15), None).check().is_err());
    }

    #[test]
    fn non_numeric_sample_is_a_runtime_fault() {
        let e = histogram_sample(&Value::text("x")).map_err(sample_error);
        assert!(matches!(
            e,
            Err(RuntimeError {
                code: ErrorCode::RunTimeExceptionTriggered,
                ..
            })
        ));
    }
}
