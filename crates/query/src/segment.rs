//! Segments (rest spec 5.3, OSL spec 11): named customer sets defined by a
//! script, stored as a bitmap per partition, computed on request, refreshed
//! in the background, and kept current on insert for `on_insert` segments.
//!
//! Memberships are derived state: they depend on `now`, so they are not in
//! the partition log. Definitions are durable (catalog); memberships are
//! recomputed at start-up.

use crate::event::collect_writes;
use crate::view::{osl_schema, StoredCustomer};
use crate::{Answer, QueryError};
use osl::{
    BitExpr, CompileOptions, IndexProp, Params, Program, RunContext, ScriptKind, Section,
    SectionKind, SegmentFlags,
};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, RwLock};
use store::db::ApplyObserver;
use store::index::EVENT_PROP;
use store::partition::{PartitionState, TablePartition};
use store::record::CustomerKey;
use store::schema::{valid_segment_name, SegmentDef, TableSchema};
use store::Db;

/// One customer's membership flip in one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The customer's index in its table partition.
    pub ci: u32,
    /// The customer's id.
    pub key: CustomerKey,
    /// `true`: entered; `false`: exited.
    pub entered: bool,
}

/// Where membership flips go (subscriptions). Called while the partition is
/// write-locked, so calls for one partition arrive in the order the flips
/// happened; implementations must only append, never wait on the network.
pub trait ChangeSink: Send + Sync {
    /// True when anyone listens to `segment` of table `uid`.
    fn listens(&self, uid: u64, segment: &str) -> bool;
    /// Flips of `segment` in `partition`, detected at `stamp` (ms).
    fn changed(&self, uid: u64, segment: &str, partition: u32, stamp: i64, changes: &[Change]);
    /// The membership last announced per partition, to diff the start-up
    /// evaluation against (`None`: nobody listens, nothing to diff).
    fn baseline(&self, uid: u64, segment: &str) -> Option<Vec<(u32, RoaringBitmap)>>;
    /// True when `name` is taken in table `uid` by something that shares
    /// the segments' name space (a re-event trigger): no segment may use it.
    fn reserved(&self, _uid: u64, _name: &str) -> bool {
        false
    }
}

/// The flips from `old` to `new` (exits first), with customer ids.
fn diff(tp: &TablePartition, old: &RoaringBitmap, new: &RoaringBitmap) -> Vec<Change> {
    let change = |ci: u32, entered: bool| {
        tp.customers.get(ci as usize).map(|c| Change {
            ci,
            key: c.key.clone(),
            entered,
        })
    };
    (old - new)
        .iter()
        .filter_map(|ci| change(ci, false))
        .chain((new - old).iter().filter_map(|ci| change(ci, true)))
        .collect()
}

/// A segment definition with its compiled program.
pub struct CompiledSegment {
    /// The stored definition.
    pub def: SegmentDef,
    /// The program.
    pub program: Program,
}

/// Compiled segments per table and when each was last computed.
#[derive(Default)]
pub struct SegmentRegistry {
    compiled: RwLock<FxHashMap<u64, Arc<Vec<CompiledSegment>>>>,
    computed_at: Mutex<FxHashMap<(u64, String), i64>>,
    sink: std::sync::OnceLock<Arc<dyn ChangeSink>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Script parameters stored with a definition, back as OSL values.
fn params_of(def: &SegmentDef) -> Params {
    let mut p = Params::new();
    for (k, v) in &def.params {
        let value = match v {
            Value::Bool(b) => osl::Value::Bool(*b),
            Value::Number(n) if n.is_i64() => osl::Value::Int(n.as_i64().unwrap_or(0)),
            Value::Number(n) => osl::Value::Float(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => osl::Value::text(s),
            _ => continue,
        };
        p.insert(k, value);
    }
    p
}

/// The stored form of script parameters.
pub fn params_json(params: &Params) -> serde_json::Map<String, Value> {
    params
        .iter()
        .filter_map(|(k, v)| {
            let j = match v {
                osl::Value::Bool(b) => json!(b),
                osl::Value::Int(i) => json!(i),
                osl::Value::Float(f) => json!(f),
                osl::Value::Text(t) => json!(&**t),
                _ => return None,
            };
            Some((k.to_string(), j))
        })
        .collect()
}

fn compile_def(schema: &TableSchema, def: &SegmentDef) -> Result<Program, QueryError> {
    let opts = CompileOptions {
        kind: ScriptKind::Segment,
        line_offset: def.header_line,
        section: Some(def.name.clone()),
    };
    osl::compile_with(&def.source, &osl_schema(schema), &params_of(def), &opts)
        .map_err(QueryError::Compile)
}

/// Definitions in evaluation order: ascending `z_index`, then definition order.
fn ordered(schema: &TableSchema) -> Vec<SegmentDef> {
    let mut defs: Vec<SegmentDef> = schema.segments.values().cloned().collect();
    defs.sort_by_key(|d| (d.z_index, d.seq));
    defs
}

/// Segment evaluations stored since start (on request, refresh or start-up), for metrics.
pub static SEGMENTS_EVALUATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SegmentRegistry {
    /// A new, empty registry.
    pub fn new() -> Arc<SegmentRegistry> {
        Arc::new(SegmentRegistry::default())
    }

    /// Compiles the table's stored definitions; a definition that no longer
    /// compiles (its property was dropped) is returned by name and skipped.
    pub fn reload(&self, schema: &TableSchema) -> Vec<String> {
        let mut ok = Vec::new();
        let mut broken = Vec::new();
        for def in ordered(schema) {
            match compile_def(schema, &def) {
                Ok(program) => ok.push(CompiledSegment { def, program }),
                Err(_) => broken.push(def.name),
            }
        }
        if let Ok(mut c) = self.compiled.write() {
            c.insert(schema.uid, Arc::new(ok));
        }
        broken
    }

    /// Installs the receiver of membership flips (once, before the start-up evaluation).
    pub fn set_sink(&self, sink: Arc<dyn ChangeSink>) {
        let _ = self.sink.set(sink);
    }

    /// The sink, when someone listens to this segment.
    fn listener(&self, uid: u64, name: &str) -> Option<&dyn ChangeSink> {
        self.sink
            .get()
            .map(|s| &**s)
            .filter(|s| s.listens(uid, name))
    }

    fn segments_of(&self, uid: u64) -> Option<Arc<Vec<CompiledSegment>>> {
        self.compiled.read().ok()?.get(&uid).cloned()
    }

    fn computed_at(&self, uid: u64, name: &str) -> Option<i64> {
        self.computed_at
            .lock()
            .ok()?
            .get(&(uid, name.to_string()))
            .copied()
    }

    /// Evaluates the named segments of `table` (in z order) over every
    /// customer and stores their memberships; returns each one's size.
    pub fn evaluate(
        &self,
        db: &Db,
        table: &str,
        names: &[String],
    ) -> Result<Vec<(String, u64)>, QueryError> {
        let schema = db.table(table)?;
        let compiled = self.segments_of(schema.uid).unwrap_or_default();
        let mut out = Vec::new();
        for seg in compiled.iter().filter(|s| names.contains(&s.def.name)) {
            let size = self.compute(db, &schema, seg)?;
            out.push((seg.def.name.clone(), size));
        }
        Ok(out)
    }

    fn compute(
        &self,
        db: &Db,
        schema: &TableSchema,
        seg: &CompiledSegment,
    ) -> Result<u64, QueryError> {
        let engine = db.engine()?;
        let ctx = RunContext {
            now: now_ms(),
            session_time: schema.settings.session_time,
            ..RunContext::default()
        };
        let prefilter = seg.program.prefilter();
        // Answered by bitmap algebra alone when the script's shape allows it
        // and every segment it reads exists (else running reports the error).
        let index_only = seg.program.index_only().filter(|e| {
            e.segments()
                .iter()
                .all(|n| schema.segments.contains_key(*n))
        });
        type Acc = (Vec<(u32, RoaringBitmap)>, crate::event::Writes);
        let results = crate::parallel::for_each_partition(
            engine,
            schema.uid,
            || -> Acc { (Vec::new(), Vec::new()) },
            |(members, writes), p, tp| {
                if let Some(expr) = &index_only {
                    members.push((p, bits(expr, tp)));
                    return Ok(());
                }
                let mut state = seg.program.new_state();
                let mut tree = seg.program.new_tree(1);
                let mut found = RoaringBitmap::new();
                // Customers the pre-filter rules out cannot return true.
                let chosen = prefilter
                    .as_ref()
                    .map(|pf| crate::event::candidates(pf, tp));
                let visiting = chosen
                    .as_ref()
                    .map_or(tp.customers.len(), |c| c.len() as usize);
                let name_rows = crate::view::stepped_names(tp, &seg.program, visiting);
                crate::view::for_each_customer::<QueryError>(
                    tp,
                    chosen.as_ref(),
                    seg.program.row_access(),
                    ctx.session_time,
                    &name_rows,
                    |view| {
                        let outcome = seg
                            .program
                            .run(&view, &ctx, &mut state, &mut tree)
                            .map_err(QueryError::Runtime)?;
                        if outcome.is_member() {
                            found.insert(view.index);
                        }
                        collect_writes(view.customer, outcome, writes);
                        Ok(())
                    },
                )?;
                members.push((p, found));
                Ok(())
            },
        )?;
        let mut all_writes = Vec::new();
        let listener = self.listener(schema.uid, &seg.def.name);
        for (members, writes) in results {
            for (p, bitmap) in members {
                if let Some(tp) = engine.write(p).tables.get_mut(&schema.uid) {
                    if let Some(sink) = listener {
                        // Diffed against the live bitmap (which holds any
                        // on_insert flips since), so announced == stored.
                        let empty = RoaringBitmap::new();
                        let old = tp.segments.get(&seg.def.name).unwrap_or(&empty);
                        let changes = diff(tp, old, &bitmap);
                        if !changes.is_empty() {
                            sink.changed(schema.uid, &seg.def.name, p, ctx.now, &changes);
                        }
                    }
                    tp.segments.insert(seg.def.name.clone(), bitmap);
                }
            }
            all_writes.extend(writes);
        }
        crate::control::may_write(!all_writes.is_empty())?;
        db.write_customer_properties(&schema.name, &all_writes)?;
        if let Ok(mut c) = self.computed_at.lock() {
            c.insert((schema.uid, seg.def.name.clone()), ctx.now);
        }
        SEGMENTS_EVALUATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(size_of(db, schema.uid, &seg.def.name))
    }

    /// Recomputes every stored segment of every table (at start-up). A
    /// segment someone listens to starts from its last announced membership
    /// (the sink's baseline), so the evaluation announces exactly what
    /// changed while the server was down, and nothing else.
    pub fn recompute_all(&self, db: &Db) -> Result<(), QueryError> {
        for (name, schema) in db.catalog().tables.iter() {
            let broken = self.reload(schema);
            if !broken.is_empty() {
                tracing::warn!(table = %name, ?broken, "segments no longer compile; skipped");
            }
            if let (Some(sink), Ok(engine)) = (self.sink.get(), db.engine()) {
                for seg in schema.segments.keys() {
                    for (p, bitmap) in sink.baseline(schema.uid, seg).unwrap_or_default() {
                        if p >= engine.partition_count() {
                            continue;
                        }
                        if let Some(tp) = engine.write(p).tables.get_mut(&schema.uid) {
                            tp.segments.insert(seg.clone(), bitmap);
                        }
                    }
                }
            }
            let names: Vec<String> = schema.segments.keys().cloned().collect();
            self.evaluate(db, name, &names)?;
        }
        Ok(())
    }

    /// Recomputes segments whose `refresh` period has passed.
    pub fn refresh_due(&self, db: &Db) {
        let now = now_ms();
        for (name, schema) in db.catalog().tables.iter() {
            let due: Vec<String> = ordered(schema)
                .into_iter()
                .filter(|d| {
                    d.refresh_ms.is_some_and(|r| {
                        self.computed_at(schema.uid, &d.name)
                            .is_none_or(|t| now - t >= r)
                    })
                })
                .map(|d| d.name)
                .collect();
            if !due.is_empty() {
                if let Err(e) = self.evaluate(db, name, &due) {
                    tracing::warn!(table = %name, error = ?e, "refreshing segments failed");
                }
            }
        }
    }
}

/// The customers of a table partition an index-only expression selects.
pub fn bits(expr: &BitExpr, tp: &TablePartition) -> RoaringBitmap {
    match expr {
        BitExpr::Any(atoms) => {
            let mut out = RoaringBitmap::new();
            for atom in atoms {
                let prop = match atom.prop {
                    IndexProp::Event => EVENT_PROP,
                    IndexProp::Prop(p) => p,
                };
                if let Some(b) = atom
                    .encode(|t| tp.dict.lookup(t))
                    .and_then(|v| tp.index.customers(prop, v))
                {
                    out |= b;
                }
            }
            out
        }
        BitExpr::Not(x) => {
            let mut all: RoaringBitmap = (0..tp.customers.len() as u32).collect();
            all -= bits(x, tp);
            all
        }
        BitExpr::And(a, b) => bits(a, tp) & bits(b, tp),
        BitExpr::Or(a, b) => bits(a, tp) | bits(b, tp),
        BitExpr::Segment(name) => tp.segments.get(name).cloned().unwrap_or_default(),
    }
}

/// Members of a segment over all partitions.
pub fn size_of(db: &Db, uid: u64, name: &str) -> u64 {
    let Ok(engine) = db.engine() else { return 0 };
    (0..engine.partition_count())
        .map(|p| {
            engine
                .read(p)
                .tables
                .get(&uid)
                .and_then(|t| t.segments.get(name))
                .map_or(0, |b| b.len())
        })
        .sum()
}

impl ApplyObserver for SegmentRegistry {
    fn applied(&self, partition: u32, state: &mut PartitionState, touched: &[(u64, u32)]) {
        let mut i = 0;
        while i < touched.len() {
            let uid = touched[i].0;
            let end = i + touched[i..].iter().take_while(|t| t.0 == uid).count();
            let customers = &touched[i..end];
            i = end;
            let Some(compiled) = self.segments_of(uid) else {
                continue;
            };
            let Some(tp) = state.tables.get_mut(&uid) else {
                continue;
            };
            for seg in compiled.iter().filter(|s| s.def.on_insert) {
                let ctx = RunContext {
                    now: now_ms(),
                    ..RunContext::default()
                };
                let mut state = seg.program.new_state();
                let mut tree = seg.program.new_tree(1);
                let mut enter = Vec::new();
                let mut leave = Vec::new();
                for &(_, ci) in customers {
                    let Some(view) = StoredCustomer::of(tp, ci) else {
                        continue;
                    };
                    // A run-time fault leaves the customer out, as a false return would.
                    let member = seg
                        .program
                        .run(&view, &ctx, &mut state, &mut tree)
                        .is_ok_and(|o| o.is_member());
                    if member {
                        enter.push(ci)
                    } else {
                        leave.push(ci)
                    }
                }
                let bitmap = tp.segments.entry(seg.def.name.clone()).or_default();
                let Some(sink) = self.listener(uid, &seg.def.name) else {
                    for ci in enter {
                        bitmap.insert(ci);
                    }
                    for ci in leave {
                        bitmap.remove(ci);
                    }
                    continue;
                };
                // Only real flips become messages, in customer order.
                let mut flips: Vec<(u32, bool)> = Vec::new();
                for ci in enter {
                    if bitmap.insert(ci) {
                        flips.push((ci, true));
                    }
                }
                for ci in leave {
                    if bitmap.remove(ci) {
                        flips.push((ci, false));
                    }
                }
                if flips.is_empty() {
                    continue;
                }
                flips.sort_unstable();
                let changes: Vec<Change> = flips
                    .into_iter()
                    .filter_map(|(ci, entered)| {
                        tp.customers.get(ci as usize).map(|c| Change {
                            ci,
                            key: c.key.clone(),
                            entered,
                        })
                    })
                    .collect();
                sink.changed(uid, &seg.def.name, partition, ctx.now, &changes);
            }
        }
    }
}

/// `POST /v1/query/{table}/segment`: compiles every `@segment` section,
/// stores the definitions, evaluates them (or answers from the cache) and
/// returns their sizes.
pub fn segment_query(
    db: &Db,
    registry: &SegmentRegistry,
    table: &str,
    body: &str,
    params: &Params,
    debug: bool,
) -> Result<Answer, QueryError> {
    let text = osl::substitute_templates(body, params).map_err(QueryError::Compile)?;
    let no_sections = || QueryError::Request {
        detail: "no @segment sections could be found".into(),
    };
    if !text.lines().any(|l| l.trim_start().starts_with("@segment")) {
        return Err(no_sections());
    }
    let sections = osl::parse_sections(&text).map_err(QueryError::Compile)?;
    let sections: Vec<Section> = sections
        .into_iter()
        .filter(|s| s.kind == SectionKind::Segment)
        .collect();
    if sections.is_empty() {
        return Err(no_sections());
    }
    let prepared = prepare(db, registry, table, &sections, params)?;
    if debug {
        return Ok(Answer::Listing(listing(&prepared)));
    }
    let mut sizes = define_and_evaluate(db, registry, table, prepared)?;
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let branches: Vec<Value> = sizes
        .iter()
        .map(|(n, c)| json!({"g": n, "c": [c]}))
        .collect();
    Ok(Answer::Tree(json!({ "_": branches })))
}

/// Segment sections checked and compiled, ready to store.
pub struct Prepared {
    defs: Vec<(SegmentDef, Program)>,
}

/// The readable listing of prepared segments (`debug=true`).
pub fn listing(p: &Prepared) -> String {
    p.defs
        .iter()
        .map(|(d, prog)| format!("@segment {}\n{}\n", d.name, prog.debug_listing()))
        .collect()
}

/// Checks names and flags and compiles every `@segment` section; nothing
/// is stored. A name the registry's sink reserves (a trigger) is refused.
pub fn prepare(
    db: &Db,
    registry: &SegmentRegistry,
    table: &str,
    sections: &[Section],
    params: &Params,
) -> Result<Prepared, QueryError> {
    let schema = db.table(table)?;
    let mut defs: Vec<(SegmentDef, Program)> = Vec::new();
    for s in sections.iter().filter(|s| s.kind == SectionKind::Segment) {
        if !valid_segment_name(&s.name) {
            return Err(QueryError::Request {
                detail: format!("bad segment name '{}'", s.name),
            });
        }
        if registry
            .sink
            .get()
            .is_some_and(|k| k.reserved(schema.uid, &s.name))
        {
            return Err(QueryError::Request {
                detail: format!(
                    "'{}' is the name of a re-event trigger (segments and triggers share names)",
                    s.name
                ),
            });
        }
        if defs.iter().any(|(d, _)| d.name == s.name) {
            return Err(QueryError::Request {
                detail: format!("segment '{}' is defined twice", s.name),
            });
        }
        let flags =
            SegmentFlags::parse(&s.flags).map_err(|detail| QueryError::Request { detail })?;
        let def = SegmentDef {
            name: s.name.clone(),
            source: s.body.clone(),
            params: params_json(params),
            header_line: s.header_line,
            refresh_ms: flags.refresh,
            ttl_ms: flags.ttl,
            use_cached: flags.use_cached,
            on_insert: flags.on_insert,
            z_index: flags.z_index,
            seq: 0,
        };
        let program = compile_def(&schema, &def)?;
        defs.push((def, program));
    }
    Ok(Prepared { defs })
}

/// Stores prepared definitions and evaluates them in z order (answering
/// `use_cached` ones from the store when fresh); returns each one's size.
pub fn define_and_evaluate(
    db: &Db,
    registry: &SegmentRegistry,
    table: &str,
    prepared: Prepared,
) -> Result<Vec<(String, u64)>, QueryError> {
    if prepared.defs.is_empty() {
        return Ok(Vec::new());
    }
    let schema = db.table(table)?;
    let now = now_ms();
    // A cached result answers when the definition is unchanged and younger than `refresh`.
    let cached: Vec<String> = prepared
        .defs
        .iter()
        .map(|(d, _)| d)
        .filter(|d| {
            d.use_cached
                && schema.segments.get(&d.name).is_some_and(|old| {
                    SegmentDef {
                        seq: 0,
                        ..old.clone()
                    } == **d
                })
                && d.refresh_ms.is_some_and(|r| {
                    registry
                        .computed_at(schema.uid, &d.name)
                        .is_some_and(|t| now - t < r)
                })
        })
        .map(|d| d.name.clone())
        .collect();
    let names: Vec<String> = prepared.defs.iter().map(|(d, _)| d.name.clone()).collect();
    // Re-posting unchanged definitions (the common case for dashboards)
    // skips the durable catalog write and the recompile.
    let unchanged = prepared.defs.iter().all(|(d, _)| {
        schema.segments.get(&d.name).is_some_and(|old| {
            SegmentDef {
                seq: 0,
                ..old.clone()
            } == *d
        })
    }) && registry.segments_of(schema.uid).is_some();
    let stored = if unchanged {
        schema.clone()
    } else {
        let stored =
            db.define_segments(table, prepared.defs.into_iter().map(|(d, _)| d).collect())?;
        registry.reload(&stored);
        stored
    };
    let to_compute: Vec<String> = names
        .iter()
        .filter(|n| !cached.contains(n))
        .cloned()
        .collect();
    registry.evaluate(db, table, &to_compute)?;
    Ok(names
        .iter()
        .map(|n| (n.clone(), size_of(db, stored.uid, n)))
        .collect())
}
