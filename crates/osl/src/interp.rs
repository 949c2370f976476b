//! The interpreter: runs a [`Program`] for one customer over its rows
//! (§1.2, §6, §7, §8, §9, §10.1-10.2). Nothing here panics on script or
//! data input: every failure is a [`RuntimeError`].

use crate::ast::*;
use crate::compile::Program;
use crate::error::{ErrorCode, Pos, RuntimeError};
use crate::functions::{call_pure, to_stamp, Func};
use crate::key_space::{KeySpace, TemplateItem};
use crate::pair_walk::{PairWalk, PartSource};
use crate::result_tree::{float_key, Dedup, GroupKey, KeyRef, ResultTree};
use crate::value::{
    arith, compare, contains_all, contains_any, contains_member, negate, nested_deeper_than,
    set_insert, values_equal, values_order, ArithOp, CmpOp, DictMap, Key, SetMap, Value,
    MAX_VALUE_DEPTH, TOO_DEEP,
};
use crate::view::{
    CustomerId, CustomerView, CustomerWrite, NameIds, RunContext, RunOutcome, StoredValue,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::sync::Arc;

/// De-duplication key of one push for one column (§10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DKey {
    Customer,
    Row(usize),
    Stamp(i64),
    Session(i64),
    Val(Option<u64>),
}

/// What one push counts (see `Interp::column_values`).
enum Counts {
    /// Every column is a plain count: bit `i` is set when column `i` has
    /// a value at the push row.
    Present(u64),
    /// Each column's raw value and de-duplication key (the buffer of
    /// `RunState::col_vals`).
    Values(Vec<(Option<i64>, DKey)>),
}

/// How pushes count when every column is a count de-duplicated by
/// customer or not at all (the usual `select`, and the default `count
/// id`): a push only needs to know which columns have a value at its row,
/// not the values or their de-duplication keys.
#[derive(Clone, Debug, Default)]
pub(crate) struct CountPlan {
    /// Columns with a value at every push (`count id`).
    always: u64,
    /// Columns with a value whenever the push is at a row (`event`,
    /// `stamp`, `session`).
    on_row: u64,
    /// Property columns: (property index, column bit), with a value when
    /// the row has one.
    props: Vec<(u32, u64)>,
    /// Columns counted once per customer (`count ... ` with `id`
    /// de-duplication, the default).
    per_customer: u64,
}

impl CountPlan {
    /// The plan for these columns, if every one is a count de-duplicated
    /// by customer or not at all (and there are at most 64).
    pub(crate) fn of(columns: &[crate::result_tree::Column]) -> Option<CountPlan> {
        if columns.len() > 64 {
            return None;
        }
        let mut plan = CountPlan::default();
        for (i, c) in columns.iter().enumerate() {
            let bit = 1u64 << i;
            if c.agg != crate::result_tree::ColumnAgg::Count {
                return None;
            }
            match c.dedup {
                Dedup::All => {}
                Dedup::Customer => plan.per_customer |= bit,
                _ => return None,
            }
            match c.prop {
                PropRef::Id => plan.always |= bit,
                PropRef::Event | PropRef::Stamp | PropRef::Session => plan.on_row |= bit,
                PropRef::User { index, .. } => plan.props.push((index, bit)),
            }
        }
        Some(plan)
    }
}

/// Reusable per-worker scratch state. Create one per (program, partition
/// dictionary) with [`Program::new_state`] and pass it to every run: it
/// caches dictionary ids of the program's text constants and keeps buffers
/// so runs do not allocate per row.
#[derive(Debug, Default)]
pub struct RunState {
    vars: Vec<Value>,
    text_ids: Vec<TextId>,
    run_no: u64,
    dedup: HashSet<(u64, u32, DKey)>,
    sessions: Vec<i64>,
    sessions_ready: bool,
    windows: Vec<Option<(i64, i64)>>,
    col_vals: Vec<(Option<i64>, DKey)>,
    /// Per memoized push: the run number it last fired in.
    memo_seen: Vec<u64>,
    /// Memoized pushes fired in this run.
    memo_fired: u32,
    /// Jump tables of this run (`jumps[..jumps_used]`; the rest are kept
    /// for their allocations).
    jumps: Vec<Jump>,
    jumps_used: usize,
    /// The dictionary the cached text ids were last checked against.
    checked_dictionary: Option<usize>,
    /// The program (`Program::uid`) the memo state below belongs to.
    program: u64,
    /// Group paths of literal pushes, by site, built on first use.
    literal_paths: Vec<Option<SmallVec<[GroupKey; 4]>>>,
    /// The nodes each literal push's path leads to, by site, in the
    /// tree with that `ResultTree::uid` (0: not looked up yet). A tree's
    /// nodes never move, so later runs count there without a lookup.
    literal_nodes: Vec<(u64, SmallVec<[u32; 4]>)>,
    /// Per-state copies of the program's text literals, by the address of
    /// the program's `Arc` (see `Interp::literal_text`).
    literals: HashMap<usize, Arc<str>>,
    /// The nodes of dictionary texts pushed in place (see
    /// `Interp::text_node`).
    text_nodes: TextNodes,
    /// Reused buffer for text chains (`a + " > " + b`).
    text_buf: String,
    /// The key space of interned pushes last used (see `push_parts`).
    key_space: Option<Arc<KeySpace>>,
    /// Per varying part of the interned push: the number of each
    /// dictionary id seen (`u32::MAX`: not asked yet), for this dictionary.
    key_ids: [Vec<u32>; 2],
    /// Per varying part: the number of each text seen (variables).
    key_texts: [HashMap<Arc<str>, u32>; 2],
    /// Per variable slot, the run number and dictionary id of the text
    /// property value it was last assigned (`u32::MAX`: none). For an
    /// id-only variable (`Program::id_only_vars`) that is its value; for
    /// others only a hint, which counts while the variable still holds
    /// that very dictionary text.
    var_text_ids: Vec<(u64, u32)>,
    /// A pair walk's pushes not counted yet: packed key and the columns
    /// present (see `Interp::pair_walk_rows`).
    pair_pushes: Vec<(u64, u64)>,
    /// Their nodes, found before any is counted.
    pair_nodes: Vec<u32>,
}

/// The nodes of dictionary texts pushed in place, in the tree with
/// `ResultTree::uid` `tree`, for the dictionary the state last checked.
#[derive(Debug, Default)]
struct TextNodes {
    tree: u64,
    /// Top-level nodes by dictionary id (`u32::MAX`: not looked up).
    roots: Vec<u32>,
    /// Deeper nodes by (parent node, dictionary id).
    children: HashMap<(u32, u32), u32>,
}

impl TextNodes {
    fn clear(&mut self) {
        self.roots.clear();
        self.children.clear();
    }
}

/// For forward scans that only visit rows of one event name: once a run
/// has passed over more than twice its row count of other events for that
/// name, `next[i]` (the first row at or after `i` with that name, or the
/// row count) is built in one pass and later scans jump along it. Nested
/// look-aheads (a funnel step searched from every earlier step) thus cost
/// linear time per customer instead of quadratic, and runs that never scan
/// much never pay for the table.
#[derive(Debug, Default)]
struct Jump {
    id: u32,
    skipped: usize,
    built: bool,
    next: Vec<u32>,
}

/// Cached dictionary id of a program text constant. A hit stays valid for
/// the dictionary (ids are never reused); a miss only for the run it was
/// seen in (the text may be interned later).
#[derive(Clone, Copy, Debug, Default)]
enum TextId {
    #[default]
    Unknown,
    Hit(u32),
    Miss(u64),
}

/// A run-time fault: boxed so results stay small on the interpreter's hot
/// return paths (every `eval` returns one).
type Fault = Box<(ErrorCode, String, Pos)>;

type RtResult<T> = Result<T, Fault>;

#[cfg(test)]
thread_local! {
    /// Tests turn the register arithmetic off to compare it with the
    /// general path.
    pub(crate) static FAST_NUMBERS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

#[inline]
fn fast_numbers() -> bool {
    #[cfg(test)]
    return FAST_NUMBERS.with(|f| f.get());
    #[cfg(not(test))]
    true
}

/// A number evaluated in registers (see `Interp::num`).
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
    /// Not a plain number expression: evaluate it as a `Value`.
    Other,
}

/// Evaluated call arguments or push groups (rarely more than four).
type Args = SmallVec<[Value; 4]>;

/// How a statement ended. A payload-free byte: the break depth lives in
/// `Interp::break_depth`, because a (tag, depth) pair returned through
/// every statement was copied in two halves and read back whole, which
/// stalled the CPU's store forwarding on every statement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    /// Leave `Interp::break_depth` loops.
    Break,
    Continue,
    Stop,
}

/// Time bounds of a scan; `None` means "no rows".
type Bounds = Option<(i64, i64)>;

impl RunState {
    /// This state's copy of a text shared with other workers (see
    /// `Interp::literal_text`).
    fn own_text(&mut self, t: &Arc<str>) -> Arc<str> {
        let key = Arc::as_ptr(t) as *const u8 as usize;
        if let Some(own) = self.literals.get(&key) {
            // The address could name another text if the state outlived
            // its program; the comparison keeps that harmless.
            if **own == **t {
                return own.clone();
            }
        }
        let own: Arc<str> = Arc::from(&**t);
        self.literals.insert(key, own.clone());
        own
    }
}

impl Program {
    /// Fresh scratch state for this program.
    pub fn new_state(&self) -> RunState {
        // Run numbers are unique in the process, not just in one state: a
        // result tree fed by several states (one per partition) marks its
        // nodes with them (see `ResultTree::mark_customer`).
        static RUN_BLOCKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RunState {
            text_ids: vec![TextId::Unknown; self.texts.len()],
            run_no: RUN_BLOCKS.fetch_add(1 << 32, std::sync::atomic::Ordering::Relaxed),
            ..RunState::default()
        }
    }

    /// Runs the script for one customer: pushes go into `out` (segment
    /// `ctx.segment`), the outcome carries the return value, customer
    /// property writes and debug output.
    pub fn run<C: CustomerView>(
        &self,
        customer: &C,
        ctx: &RunContext,
        state: &mut RunState,
        out: &mut ResultTree,
    ) -> Result<RunOutcome, RuntimeError> {
        // A failed key space means the query runs again with text keys:
        // the rest of this attempt would count nothing.
        if out.key_space().is_some_and(|k| k.failed()) {
            return Ok(RunOutcome::default());
        }
        if state.text_ids.len() != self.texts.len() {
            state.text_ids = vec![TextId::Unknown; self.texts.len()];
        }
        state.run_no = state.run_no.wrapping_add(1);
        // Guard against a state reused with another dictionary: a cached
        // id must still name the same text. Checked once per dictionary
        // when the view names it, else for every run.
        let dict = customer.dictionary_identity();
        if dict.is_none() || dict != state.checked_dictionary {
            for (slot, text) in state.text_ids.iter_mut().zip(self.texts.iter()) {
                if let TextId::Hit(id) = *slot {
                    if customer.text(id) != &**text {
                        *slot = TextId::Unknown;
                    }
                }
            }
            state.checked_dictionary = dict;
            // Interned-key numbers by dictionary id belong to the old one.
            for ids in state.key_ids.iter_mut() {
                ids.clear();
            }
            state.text_nodes.clear();
        }
        state.vars.clear();
        state.vars.resize(self.names.len(), Value::Nil);
        state.dedup.clear();
        state.memo_fired = 0;
        state.jumps_used = 0;
        if state.program != self.uid {
            state.memo_seen = vec![0; self.memo_sites as usize];
            state.literal_paths.clear();
            state.literal_nodes.clear();
            state.program = self.uid;
        }
        state.sessions_ready = false;
        state.windows.clear();
        for (slot, v) in &self.param_inits {
            let v = match v {
                Value::Text(t) => Value::Text(state.own_text(t)),
                other => other.clone(),
            };
            if let Some(x) = state.vars.get_mut(*slot as usize) {
                *x = v;
            }
        }
        if let Some(x) = state.vars.get_mut(self.each_value_slot as usize) {
            *x = ctx.each_value.clone();
        }
        let mut initial = Vec::with_capacity(self.loaded_slots.len());
        for (slot, def) in &self.loaded_slots {
            let mut it = customer.customer_values(def.index);
            let v = if def.is_set {
                let mut m = SetMap::new();
                for raw in it {
                    let _ = set_insert(&mut m, decode(customer, def.kind, raw));
                }
                if m.is_empty() {
                    Value::Nil
                } else {
                    Value::Set(Arc::new(m))
                }
            } else {
                it.next()
                    .map_or(Value::Nil, |raw| decode(customer, def.kind, raw))
            };
            if let Some(x) = state.vars.get_mut(*slot as usize) {
                *x = v.clone();
            }
            initial.push(v);
        }
        // Filled in place: moving it out of the interpreter right after a
        // `return` wrote it would read the value back whole while its parts
        // are still in the store buffer (a store-forwarding stall per run).
        let mut outcome = RunOutcome::default();
        let mut it = Interp::new(self, customer, ctx, state, out, &mut outcome);
        // A customer none of whose pushes can fire has nothing to run for.
        let res = if self.stop_when_saturated && it.settle_unreachable_pushes() {
            Ok(Flow::Stop)
        } else {
            it.block(&self.stmts)
        };
        let pos = it.pos;
        let to_err = |(code, detail, pos): (ErrorCode, String, Pos)| RuntimeError {
            code,
            detail,
            line: pos.line + self.line_offset,
            column: pos.col,
            additional: self.source_line(pos.line + self.line_offset),
            section: self.section.clone(),
        };
        res.map_err(|f| to_err(*f))?;
        for ((slot, def), init) in self.loaded_slots.iter().zip(initial.iter()) {
            let now = state.vars.get(*slot as usize).cloned().unwrap_or_default();
            let same = values_equal(&now, init) && now.type_name() == init.type_name();
            if same {
                continue;
            }
            let values = store_value(def, &now)
                .map_err(|d| to_err((ErrorCode::RunTimeExceptionTriggered, d, pos)))?;
            outcome.writes.push(CustomerWrite {
                prop: def.index,
                values,
            });
        }
        Ok(outcome)
    }

    /// What a script that is only `return(<number expression>)` (reading
    /// no variable) returns for
    /// `customer`, evaluated straight from the customer's facts without a
    /// run: no variables to reset, no statements, no outcome. `None` when
    /// the script has another shape, or its expression gives no plain
    /// number for this customer (division by zero, a text, ...): then
    /// [`Program::run`] it, which answers exactly as it would have.
    /// Histograms of recency and session counts are such scripts.
    pub fn quick_number<C: CustomerView>(
        &self,
        customer: &C,
        ctx: &RunContext,
        state: &mut RunState,
        out: &mut ResultTree,
    ) -> Option<Value> {
        let ([Stmt::Return(Some(e))], true) = (&self.stmts[..], self.quick_return) else {
            return None;
        };
        if !fast_numbers() {
            return None;
        }
        // Session counts are cached per run.
        state.sessions_ready = false;
        let mut outcome = RunOutcome::default();
        let mut it = Interp::new(self, customer, ctx, state, out, &mut outcome);
        match it.num(e) {
            Num::Int(i) => Some(Value::Int(i)),
            Num::Float(f) => Some(Value::Float(f)),
            Num::Other => None,
        }
    }

    /// Convenience: runs with a fresh [`RunState`] (allocates; prefer
    /// [`Program::run`] in loops).
    pub fn run_once<C: CustomerView>(
        &self,
        customer: &C,
        ctx: &RunContext,
        out: &mut ResultTree,
    ) -> Result<RunOutcome, RuntimeError> {
        let mut st = self.new_state();
        self.run(customer, ctx, &mut st, out)
    }
}

fn decode<C: CustomerView>(c: &C, kind: PropKind, raw: u64) -> Value {
    match kind {
        PropKind::Int => Value::Int(raw as i64),
        PropKind::Double => Value::Float(raw as i64 as f64 / 10_000.0),
        PropKind::Bool => Value::Bool(raw != 0),
        PropKind::Text => c.text_value(raw as u32),
    }
}

fn scalar_to_stored(kind: PropKind, v: &Value) -> Option<StoredValue> {
    Some(match kind {
        PropKind::Int => match v.to_int() {
            Value::Int(i) => StoredValue::Num(i),
            _ => return None,
        },
        PropKind::Double => match v.to_float() {
            Value::Float(f) if f.is_finite() => StoredValue::Num((f * 10_000.0).round() as i64),
            _ => return None,
        },
        PropKind::Bool => StoredValue::Num(i64::from(v.truthy())),
        PropKind::Text => StoredValue::Text(v.to_text()),
    })
}

/// Coerces a customer-property value for storage (§7.6).
fn store_value(def: &crate::schema::PropDef, v: &Value) -> Result<Vec<StoredValue>, String> {
    if v.is_nil() {
        return Ok(Vec::new());
    }
    if def.is_set {
        let items: Vec<Value> = match v {
            Value::List(l) => (**l).clone(),
            Value::Set(s) => s.values().cloned().collect(),
            Value::Dict(_) => {
                return Err(format!(
                    "property '{}' is a set type and cannot be a Dict",
                    def.name
                ))
            }
            _ => {
                return Err(format!(
                    "property '{}' is a set type. Values must be 'List' or 'Set'",
                    def.name
                ))
            }
        };
        let mut out: Vec<StoredValue> = Vec::new();
        for it in items.iter().filter(|x| !x.is_nil()) {
            if let Some(s) = scalar_to_stored(def.kind, it) {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        return Ok(out);
    }
    if v.is_container() {
        return Err(format!(
            "property '{}' is not defined as a 'set' type.",
            def.name
        ));
    }
    Ok(scalar_to_stored(def.kind, v).into_iter().collect())
}

struct Interp<'r, C: CustomerView> {
    prog: &'r Program,
    c: &'r C,
    ctx: &'r RunContext,
    st: &'r mut RunState,
    out: &'r mut ResultTree,
    n: usize,
    cursor: usize,
    loop_depth: u32,
    /// Loops still to leave while a `Flow::Break` travels up.
    break_depth: u32,
    pos: Pos,
    outcome: &'r mut RunOutcome,
    /// The run's last [`Self::next_named`]: (name id, from, found).
    last_named: (u32, usize, Option<usize>),
    /// The run's last [`Self::first_value`]: (row, property, value).
    last_value: std::cell::Cell<(usize, u32, Option<u64>)>,
}

fn rt<T>(code: ErrorCode, detail: impl Into<String>, pos: Pos) -> RtResult<T> {
    Err(Box::new((code, detail.into(), pos)))
}

impl<'r, C: CustomerView> Interp<'r, C> {
    /// An interpreter at the customer's start (cursor on row 0).
    fn new(
        prog: &'r Program,
        c: &'r C,
        ctx: &'r RunContext,
        st: &'r mut RunState,
        out: &'r mut ResultTree,
        outcome: &'r mut RunOutcome,
    ) -> Interp<'r, C> {
        Interp {
            prog,
            c,
            ctx,
            st,
            out,
            n: c.row_count(),
            cursor: 0,
            loop_depth: 0,
            break_depth: 0,
            pos: Pos::default(),
            outcome,
            last_named: (u32::MAX, usize::MAX, None),
            last_value: std::cell::Cell::new((usize::MAX, u32::MAX, None)),
        }
    }
}

impl<C: CustomerView> Interp<'_, C> {
    /// The first (for a single-valued property, the only) value of
    /// property `index` at `row`. The last answer is kept for the run: a
    /// script reads the same cell several times in a row, as a variable,
    /// a push key and a count column's presence, and a row's cells are
    /// decoded from their start each time.
    #[inline]
    fn first_value(&self, row: usize, index: u32) -> Option<u64> {
        let (last_row, last_index, last) = self.last_value.get();
        if last_row == row && last_index == index {
            return last;
        }
        let v = self.c.values(row, index).next();
        self.last_value.set((row, index, v));
        v
    }

    fn fail<T>(&self, detail: impl Into<String>) -> RtResult<T> {
        rt(ErrorCode::RunTimeExceptionTriggered, detail, self.pos)
    }

    // ----- statements ----------------------------------------------------------

    fn block(&mut self, stmts: &[Stmt]) -> RtResult<Flow> {
        for s in stmts {
            match self.stmt(s)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn stmt(&mut self, s: &Stmt) -> RtResult<Flow> {
        match s {
            Stmt::Assign {
                target,
                op,
                value,
                pos,
            } => {
                self.pos = *pos;
                if self.prog.key_chain.is_some() && self.note_text_id(target, *op, value) {
                    return Ok(Flow::Normal);
                }
                let v = self.eval(value)?;
                let mut keys = Vec::with_capacity(target.path.len());
                for k in &target.path {
                    keys.push(self.eval(k)?);
                }
                self.pos = *pos;
                let v = match op {
                    None => v,
                    Some(op) => {
                        let cur = self.read_path(target.slot, &keys);
                        arith(*op, &cur, &v).map_err(|d| {
                            Box::new((ErrorCode::RunTimeExceptionTriggered, d, *pos))
                        })?
                    }
                };
                let slot = target.slot as usize;
                let Some(root) = self.st.vars.get_mut(slot) else {
                    return self.fail("invalid variable slot");
                };
                set_path(root, &keys, v)
                    .map_err(|d| Box::new((ErrorCode::RunTimeExceptionTriggered, d, *pos)))?;
                Ok(Flow::Normal)
            }
            Stmt::If { arms, otherwise } => {
                for (cond, body) in arms {
                    if self.eval(cond)?.truthy() {
                        return self.block(body);
                    }
                }
                match otherwise {
                    Some(b) => self.block(b),
                    None => Ok(Flow::Normal),
                }
            }
            Stmt::For {
                var,
                src,
                body,
                pos,
            } => {
                let v = self.eval(src)?;
                self.pos = *pos;
                let items: Vec<Value> = match v {
                    Value::Nil => Vec::new(),
                    Value::List(l) => (*l).clone(),
                    Value::Set(s) => s.values().cloned().collect(),
                    Value::Dict(d) => d.values().map(|(k, _)| k.clone()).collect(),
                    other => {
                        return rt(
                            ErrorCode::IterationError,
                            format!("cannot iterate over a value of type {}", other.type_name()),
                            *pos,
                        )
                    }
                };
                self.loop_depth += 1;
                let mut result = Flow::Normal;
                for item in items {
                    if let Some(x) = self.st.vars.get_mut(*var as usize) {
                        *x = item;
                    }
                    let f = self.block(body)?;
                    if let Some(out) = self.loop_exit(f) {
                        result = out;
                        break;
                    }
                }
                self.loop_depth -= 1;
                Ok(result)
            }
            Stmt::EachRow {
                mods,
                plan,
                cond,
                body,
                pos,
            } => {
                self.pos = *pos;
                self.each_row(mods, plan, cond.as_ref(), body)
            }
            Stmt::Push {
                groups,
                pos,
                memo,
                literal,
            } => {
                let run_no = self.st.run_no;
                if let Some(m) = memo {
                    if self.st.memo_seen.get(*m as usize) == Some(&run_no) {
                        return Ok(Flow::Normal);
                    }
                }
                if let Some(site) = literal {
                    self.pos = *pos;
                    self.push_literal(*site as usize, groups)?;
                } else if self.prog.key_chain.is_some() && self.out.key_space().is_some() {
                    self.push_parts(*pos)?;
                } else if let [chain @ Expr::Arith(ArithOp::Add, ..)] = &groups[..] {
                    self.push_chain(chain, *pos)?;
                } else if groups.iter().all(reads_in_place) {
                    self.pos = *pos;
                    self.push_in_place(groups)?;
                } else {
                    let mut vals = Args::new();
                    for g in groups {
                        vals.push(self.eval(g)?);
                    }
                    self.pos = *pos;
                    self.push(&vals)?;
                }
                if let Some(seen) = memo.and_then(|m| self.st.memo_seen.get_mut(m as usize)) {
                    *seen = run_no;
                    self.st.memo_fired += 1;
                    if self.prog.stop_when_saturated && self.st.memo_fired == self.prog.memo_sites {
                        return Ok(Flow::Stop);
                    }
                }
                Ok(Flow::Normal)
            }
            Stmt::Break(d, pos) => match d {
                BreakDepth::Fixed(0) => Ok(Flow::Normal),
                BreakDepth::Fixed(n) => {
                    self.break_depth = *n;
                    Ok(Flow::Break)
                }
                BreakDepth::Computed(e, max) => {
                    let v = self.eval(e)?;
                    let n = match &v {
                        Value::Text(t) if &**t == "all" => i64::from(*max),
                        Value::Text(t) if &**t == "top" => i64::from(*max) - 1,
                        other => match other.to_int() {
                            Value::Int(i) => i,
                            _ => -1,
                        },
                    };
                    if n == 0 && matches!(&v, Value::Text(_)) {
                        return Ok(Flow::Normal);
                    }
                    if n < 1 || n > i64::from(*max) {
                        return rt(
                            ErrorCode::BreakDepthTooDeep,
                            format!(
                                "break {} to deep for current nest level ({max})",
                                v.to_text()
                            ),
                            *pos,
                        );
                    }
                    self.break_depth = n as u32;
                    Ok(Flow::Break)
                }
            },
            Stmt::Continue => Ok(Flow::Continue),
            Stmt::Exit => {
                self.outcome.value = Value::Nil;
                Ok(Flow::Stop)
            }
            Stmt::Return(e) => {
                self.outcome.value = match e {
                    Some(e) => self.eval(e)?,
                    None => Value::Nil,
                };
                Ok(Flow::Stop)
            }
            Stmt::Expr(e) => {
                self.eval(e)?;
                Ok(Flow::Normal)
            }
        }
    }

    fn read_path(&self, slot: u32, keys: &[Value]) -> Value {
        let mut v = self.st.vars.get(slot as usize).cloned().unwrap_or_default();
        for k in keys {
            v = index(&v, k);
        }
        v
    }

    // ----- iteration --------------------------------------------------------------

    /// The value of a literal or variable operand, by reference: modifier
    /// arguments are evaluated once per scan, so the common constant and
    /// `t0` cases skip a value copy.
    fn operand<'a>(&'a self, e: &'a Expr) -> Option<&'a Value> {
        match e {
            Expr::Lit(v) => Some(v),
            Expr::Var(s) => self.st.vars.get(*s as usize),
            _ => None,
        }
    }

    fn stamp_arg(&mut self, e: &Expr) -> RtResult<Option<i64>> {
        if let Some(Ok(stamp)) = self.operand(e).map(to_stamp) {
            return Ok(stamp);
        }
        let v = self.eval(e)?;
        to_stamp(&v).or_else(|_| {
            rt(
                ErrorCode::DateParseError,
                format!("could not read '{}' as a timestamp", v.to_text()),
                self.pos,
            )
        })
    }

    fn width_arg(&mut self, e: &Expr) -> RtResult<Option<i64>> {
        if let Some(Value::Int(i)) = self.operand(e) {
            return Ok(Some(*i));
        }
        Ok(match self.eval(e)?.to_int() {
            Value::Int(i) => Some(i),
            _ => None,
        })
    }

    /// Bounds of a scope, starting from `base` (already intersected input).
    fn scope_bounds(&mut self, scope: &TimeScope, base: Bounds) -> RtResult<Bounds> {
        let mut b = base;
        if let Some((s, e)) = &scope.range {
            let lo = self.stamp_arg(s)?;
            let hi = self.stamp_arg(e)?;
            b = match (lo, hi) {
                (Some(lo), Some(hi)) => Some((lo, hi)),
                _ => None,
            };
        }
        if let Some((k, w, a)) = &scope.window {
            let width = self.width_arg(w)?;
            let anchor = self.stamp_arg(a)?;
            let win = match (width, anchor) {
                (Some(w), Some(a)) => Some(match k {
                    WindowKind::Within => (a.saturating_sub(w), a.saturating_add(w)),
                    WindowKind::LookAhead => (a, a.saturating_add(w)),
                    WindowKind::LookBack => (a.saturating_sub(w), a),
                }),
                _ => None,
            };
            b = match (b, win) {
                (Some((l1, h1)), Some((l2, h2))) => Some((l1.max(l2), h1.min(h2))),
                _ => None,
            };
        }
        Ok(b)
    }

    /// Evaluates iterator modifiers once, at the enclosing cursor (§6.4).
    /// Returns (start, step, limit, bounds, has_window).
    fn iter_setup(&mut self, m: &IterMods) -> RtResult<(i64, i64, u64, Bounds)> {
        let n = self.n as i64;
        let d: i64 = if m.reverse { -1 } else { 1 };
        let mut start = if let Some(f) = &m.from {
            match self.eval(f)?.to_int() {
                Value::Int(i) => i,
                _ => -1,
            }
        } else if m.cont {
            self.cursor as i64
        } else if d > 0 {
            0
        } else {
            n - 1
        };
        if m.next {
            start = start.saturating_add(d);
        }
        let limit = match &m.limit {
            Some(Expr::Lit(Value::Int(i))) => (*i).max(0) as u64,
            Some(l) => match self.eval(l)?.to_int() {
                Value::Int(i) => i.max(0) as u64,
                _ => 0,
            },
            None => u64::MAX,
        };
        let bounds = self.scope_bounds(&m.scope, Some((i64::MIN, i64::MAX)))?;
        Ok((start, d, limit, bounds))
    }

    /// Runs the scan algorithm of §6.4, calling `visit` for rows in scope
    /// with the cursor set; `visit` returns (matched, stop).
    fn scan(
        &mut self,
        m: &IterMods,
        only_event: Option<Option<u32>>,
        visit: &mut dyn FnMut(&mut Self) -> RtResult<(bool, bool)>,
    ) -> RtResult<()> {
        // Slices fetched once: the loop reads them without going back
        // through the view for every row, comparing names in the width
        // they are stored in.
        let c = self.c;
        match c.columns() {
            (stamps, NameIds::Narrow(names)) => self.scan_in(m, only_event, visit, stamps, names),
            (stamps, NameIds::Wide(names)) => self.scan_in(m, only_event, visit, stamps, names),
        }
    }

    /// [`Self::scan`] over names stored as `T`.
    fn scan_in<T: NameWidth>(
        &mut self,
        m: &IterMods,
        only_event: Option<Option<u32>>,
        visit: &mut dyn FnMut(&mut Self) -> RtResult<(bool, bool)>,
        stamps: &[i64],
        names: &[T],
    ) -> RtResult<()> {
        let (start, d, limit, bounds) = self.iter_setup(m)?;
        let Some((lo, hi)) = bounds else {
            return Ok(());
        };
        let saved = self.cursor;
        self.st.windows.push(if m.scope.is_some() {
            Some((lo, hi))
        } else {
            None
        });
        let n = self.n as i64;
        let mut matches = 0u64;
        let mut i = start;
        let mut result = Ok(());
        // (`Some(None)`: the event name is in no row of this partition; an
        // id too wide for this customer's names is in none of its rows.)
        let guard = only_event.flatten();
        let guard_in = guard.and_then(T::of);
        if only_event == Some(None) || guard.is_some() && guard_in.is_none() {
            i = -1;
        }
        // A forward scan for a name whose rows the store lists goes from
        // one listed row to the next instead of reading names.
        let listed = match guard {
            Some(id) if d > 0 => self.c.rows_named(id),
            _ => None,
        };
        let jump = match guard {
            Some(id) if d > 0 && listed.is_none() => Some(self.jump_slot(id)),
            _ => None,
        };
        // Unbounded scans never read stamps (a cold cache line per match).
        let bounded = lo != i64::MIN || hi != i64::MAX;
        while matches < limit && i >= 0 && i < n {
            if bounded {
                let Some(&s) = stamps.get(i as usize) else {
                    break;
                };
                if s < lo {
                    if d < 0 {
                        break;
                    }
                    i += d;
                    continue;
                }
                if s > hi {
                    if d > 0 {
                        break;
                    }
                    i += d;
                    continue;
                }
            }
            // Rows of other events are passed over without a call.
            if let Some(id) = guard_in {
                if names.get(i as usize) != Some(&id) {
                    if let Some(rows) = listed {
                        let k = rows.partition_point(|&r| i64::from(r) < i);
                        i = rows.get(k).map_or(n, |&r| i64::from(r));
                        continue;
                    }
                    if let Some(j) = jump {
                        if self.st.jumps[j].built {
                            i = i64::from(self.st.jumps[j].next[i as usize]);
                            continue;
                        }
                    }
                    // A tight pass to the next row of that name, or out of
                    // the time bounds (the loop's top decides which).
                    let from = i;
                    if d > 0 && hi == i64::MAX {
                        // No upper bound: only the names column is read.
                        let k = i as usize;
                        i = names
                            .get(k..)
                            .and_then(|rest| find_name(rest, id))
                            .map_or(names.len(), |p| k + p) as i64;
                    } else if d > 0 {
                        let mut k = i as usize;
                        while k < names.len() && names[k] != id && stamps[k] <= hi {
                            k += 1;
                        }
                        i = k as i64;
                    } else if lo == i64::MIN {
                        while i >= 0 && names[i as usize] != id {
                            i -= 1;
                        }
                    } else {
                        while i >= 0 && names[i as usize] != id && stamps[i as usize] >= lo {
                            i -= 1;
                        }
                    }
                    if let Some(j) = jump {
                        self.passed_over(j, (i - from).unsigned_abs() as usize);
                    }
                    continue;
                }
            }
            self.cursor = i as usize;
            match visit(self) {
                Ok((matched, stop)) => {
                    if matched {
                        matches += 1;
                    }
                    if stop {
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            i += d;
        }
        self.st.windows.pop();
        self.cursor = saved;
        result
    }

    /// The run's jump-table slot for event name `id` (see [`Jump`]).
    fn jump_slot(&mut self, id: u32) -> usize {
        let used = self.st.jumps_used;
        if let Some(k) = self.st.jumps[..used].iter().position(|j| j.id == id) {
            return k;
        }
        if used == self.st.jumps.len() {
            self.st.jumps.push(Jump::default());
        }
        let j = &mut self.st.jumps[used];
        j.id = id;
        j.skipped = 0;
        j.built = false;
        self.st.jumps_used += 1;
        used
    }

    /// Counts `rows` passed over by searches for jump slot `j`'s name and
    /// builds its table once they exceed twice the row count.
    #[inline]
    fn passed_over(&mut self, j: usize, rows: usize) {
        self.st.jumps[j].skipped += rows;
        if self.st.jumps[j].skipped > 2 * self.n + 16 {
            self.build_jump(j);
        }
    }

    fn build_jump(&mut self, j: usize) {
        let n = self.n;
        let id = self.st.jumps[j].id;
        let mut next = std::mem::take(&mut self.st.jumps[j].next);
        next.clear();
        next.resize(n + 1, n as u32);
        match self.c.columns().1 {
            NameIds::Narrow(names) => fill_jump(&mut next, names, id),
            NameIds::Wide(names) => fill_jump(&mut next, names, id),
        }
        self.st.jumps[j].next = next;
        self.st.jumps[j].built = true;
    }

    fn each_row(
        &mut self,
        m: &IterMods,
        plan: &LoopPlan,
        cond: Option<&Expr>,
        body: &[Stmt],
    ) -> RtResult<Flow> {
        let mut flow = Flow::Normal;
        self.loop_depth += 1;
        // When the condition starts with `event.is(== "text")`, rows of other
        // events fail it before anything else is evaluated, so they can be
        // passed over by comparing one dictionary id (`None`: the text is in
        // no row of this partition).
        let guard = plan.guard.map(|idx| self.text_id(idx));
        // When the condition is the guard alone, scan already decided it.
        let cond = match plan.guard_only {
            true => None,
            false => cond,
        };
        // The two commonest loops, guarded by an event name alone, go
        // straight from one row of that name to the next: every row of it
        // (no modifiers), or the next one after the cursor
        // (`.continue().next().limit(1)`).
        if plan.pair_walk && self.out.key_space().is_some_and(|s| !s.failed()) {
            let prog = self.prog;
            if let Some(w) = &prog.pair_walk {
                let r = self.pair_walk(w);
                self.loop_depth -= 1;
                return r;
            }
        }
        if let (true, Some(id)) = (plan.guard_only, guard) {
            let from = match plan.shape {
                LoopShape::EveryRow => Some((0, u64::MAX)),
                LoopShape::NextOne => Some((self.cursor.saturating_add(1), 1)),
                LoopShape::Other => None,
            };
            if let Some((from, limit)) = from {
                let r = self.rows_named(id, from, limit, body);
                self.loop_depth -= 1;
                return r;
            }
        }
        let r = self.scan(m, guard, &mut |me: &mut Self| {
            if let Some(c) = cond {
                if !me.eval(c)?.truthy() {
                    return Ok((false, false));
                }
            }
            let f = me.block(body)?;
            match me.loop_exit(f) {
                None => Ok((true, false)),
                Some(out) => {
                    flow = out;
                    Ok((true, true))
                }
            }
        });
        self.loop_depth -= 1;
        r?;
        Ok(flow)
    }

    /// What a row loop does after its body ended with `f`: `None` to go on
    /// to the next row, else leave the loop, which then ends with the
    /// returned flow (a `break` of more levels travels up as `Break`).
    fn loop_exit(&mut self, f: Flow) -> Option<Flow> {
        match f {
            Flow::Normal | Flow::Continue => None,
            Flow::Break if self.break_depth > 1 => {
                self.break_depth -= 1;
                Some(Flow::Break)
            }
            Flow::Break => Some(Flow::Normal),
            Flow::Stop => Some(Flow::Stop),
        }
    }

    /// [`Self::each_row`] over the rows named by dictionary id `id` (`None`:
    /// a name no row of the partition has), from row `from` on, for at most
    /// `limit` of them, as the general scan would run them.
    fn rows_named(
        &mut self,
        id: Option<u32>,
        from: usize,
        limit: u64,
        body: &[Stmt],
    ) -> RtResult<Flow> {
        let Some(id) = id else {
            return Ok(Flow::Normal);
        };
        let saved = self.cursor;
        self.st.windows.push(None);
        let mut flow = Ok(Flow::Normal);
        let mut next = from;
        let mut done = 0u64;
        while done < limit {
            let Some(row) = self.next_named(id, next) else {
                break;
            };
            self.cursor = row;
            done += 1;
            match self.block(body) {
                Ok(f) => {
                    if let Some(out) = self.loop_exit(f) {
                        flow = Ok(out);
                        break;
                    }
                }
                Err(e) => {
                    flow = Err(e);
                    break;
                }
            }
            next = row + 1;
        }
        self.st.windows.pop();
        self.cursor = saved;
        flow
    }

    /// The loop marked by [`crate::pair_walk`]: every row of the outer
    /// name, then the next row of the inner name and the push there, as
    /// the two general loops would run them.
    #[inline(never)]
    fn pair_walk(&mut self, w: &PairWalk) -> RtResult<Flow> {
        let (Some(outer), Some(inner)) = (self.text_id(w.outer), self.text_id(w.inner)) else {
            // No row of one of the names: no push is ever reached.
            return Ok(Flow::Normal);
        };
        let Some(space) = self.take_key_space() else {
            return Ok(Flow::Normal);
        };
        let saved = self.cursor;
        // The two loops' windows, as the general path keeps them.
        self.st.windows.push(None);
        self.st.windows.push(None);
        let r = self.pair_walk_rows(w, outer, inner, &space);
        self.st.windows.pop();
        self.st.windows.pop();
        self.st.key_space = Some(space);
        self.cursor = saved;
        r.map(|()| Flow::Normal)
    }

    /// [`Self::pair_walk`]'s rows: `outer` and `inner` are the names'
    /// dictionary ids, `space` the tree's key space (taken out of the run
    /// state for the walk).
    fn pair_walk_rows(
        &mut self,
        w: &PairWalk,
        outer: u32,
        inner: u32,
        space: &Arc<KeySpace>,
    ) -> RtResult<()> {
        let c = self.c;
        // Listed rows of the same name for both loops: the inner row is the
        // outer loop's next one, no search needed.
        let listed = match (c.rows_named(outer), outer == inner) {
            (Some(rows), true) => rows,
            _ => &[],
        };
        let mut ids = [0u32; 2];
        let mut next = 0;
        let mut k = 0;
        loop {
            let (row, found) = if listed.is_empty() {
                let Some(row) = self.next_named(outer, next) else {
                    break;
                };
                next = row + 1;
                (row, self.next_named(inner, row + 1))
            } else {
                let Some(&row) = listed.get(k) else { break };
                k += 1;
                let found = listed.get(k).map(|&r| r as usize);
                (row as usize, found)
            };
            // No later row of the inner name: no later outer row finds one.
            let Some(found) = found.filter(|&f| f < self.n) else {
                break;
            };
            self.cursor = found;
            let mut filed = true;
            for (i, part) in w.parts.iter().enumerate() {
                let raw = match *part {
                    PartSource::Noted(note) => match w.notes.get(note) {
                        Some(&(_, index)) => self.first_value(row, index),
                        None => None,
                    },
                    PartSource::Prop(index) => self.first_value(found, index),
                };
                match (
                    raw.and_then(|r| self.key_of_text_id(space, i, r as u32)),
                    ids.get_mut(i),
                ) {
                    (Some(id), Some(slot)) => *slot = id,
                    _ => {
                        filed = false;
                        break;
                    }
                }
            }
            if filed {
                self.pos = w.push_pos;
                let cols = self.column_values();
                let key = KeySpace::pack(ids.get(..w.parts.len()).unwrap_or(&[]));
                if let Counts::Present(present) = cols {
                    self.st.pair_pushes.push((key, present));
                    if self.st.pair_pushes.len() >= PAIR_BATCH {
                        self.count_pair_pushes()?;
                    }
                    continue;
                }
                let r = self.aggregate_keys(std::iter::once(KeyRef::Parts(key)), &cols);
                self.counted(cols);
                r?;
                continue;
            }
            // A missing value or a text the space cannot number: the
            // general push decides, from the notes it would have seen
            // (after the pushes before it).
            self.count_pair_pushes()?;
            for &(slot, index) in &w.notes {
                let raw = self.first_value(row, index);
                self.note_id(slot, raw);
            }
            self.st.key_space = Some(space.clone());
            let r = self.push_parts(w.push_pos);
            self.st.key_space = None;
            r?;
            if space.failed() {
                break;
            }
        }
        self.count_pair_pushes()
    }

    /// Counts the pair walk's pending pushes, in order. Their nodes are
    /// all found first, each record asked for as its node is known: the
    /// lookups do not depend on one another, so their cache misses
    /// overlap, where a push at a time would wait for each in turn.
    fn count_pair_pushes(&mut self) -> RtResult<()> {
        if self.st.pair_pushes.is_empty() {
            return Ok(());
        }
        let pushes = std::mem::take(&mut self.st.pair_pushes);
        let mut nodes = std::mem::take(&mut self.st.pair_nodes);
        nodes.clear();
        let mut r = Ok(());
        for &(key, _) in &pushes {
            match self.out.child(None, KeyRef::Parts(key)) {
                Some(node) => {
                    self.out.prefetch_record(node);
                    nodes.push(node);
                }
                None => {
                    r = self.fail("the result is too large");
                    break;
                }
            }
        }
        for (&(_, present), &node) in pushes.iter().zip(&nodes) {
            self.count_at(node, &Counts::Present(present));
        }
        self.st.pair_pushes = pushes;
        self.st.pair_pushes.clear();
        self.st.pair_nodes = nodes;
        r
    }

    /// The first row at or after `from` named by dictionary id `id`. The
    /// last answer is kept for the run: a look-ahead for the next row of an
    /// event, inside a loop over that event, searches what the loop
    /// searches next.
    fn next_named(&mut self, id: u32, from: usize) -> Option<usize> {
        if self.last_named.0 == id && self.last_named.1 == from {
            return self.last_named.2;
        }
        if let Some(rows) = self.c.rows_named(id) {
            let k = rows.partition_point(|&r| (r as usize) < from);
            let found = rows.get(k).map(|&r| r as usize).filter(|&r| r < self.n);
            self.last_named = (id, from, found);
            return found;
        }
        // Look-aheads from many rows to a far one would pass over the same
        // rows again and again: as in `scan_in`, a jump table is built
        // once searches have passed over more than twice the row count.
        let j = self.jump_slot(id);
        let found = if self.st.jumps[j].built {
            self.st.jumps[j].next.get(from).map(|&r| r as usize)
        } else {
            let found = match self.c.columns().1 {
                NameIds::Narrow(names) => {
                    u16::of(id).and_then(|id| find_name(names.get(from..)?, id))
                }
                NameIds::Wide(names) => names.get(from..).and_then(|r| find_name(r, id)),
            };
            let reached = found.map_or(self.n, |p| from + p);
            self.passed_over(j, reached.saturating_sub(from));
            found.map(|p| from + p)
        };
        let found = found.filter(|&r| r < self.n);
        self.last_named = (id, from, found);
        found
    }

    fn inline_agg(&mut self, a: &InlineAgg) -> RtResult<Value> {
        let mut acc = AggAcc::default();
        let kind = a.kind;
        self.scan(&a.mods, None, &mut |me: &mut Self| {
            if let Some(c) = &a.cond {
                if !me.eval(c)?.truthy() {
                    return Ok((false, false));
                }
            }
            match kind {
                AggKind::Test => {
                    acc.found = Some(me.cursor);
                    return Ok((true, true));
                }
                AggKind::Row => {
                    acc.found = Some(me.cursor);
                    return Ok((true, true));
                }
                _ => {}
            }
            let v = match &a.value {
                Some(e) => me.eval(e)?,
                None => Value::Nil,
            };
            acc.add(kind, v);
            Ok((true, false))
        })?;
        Ok(acc.finish(kind))
    }

    // ----- rows and properties ------------------------------------------------------

    fn on_row(&self) -> bool {
        self.cursor < self.n
    }

    fn id_value(&self) -> Value {
        match self.c.id() {
            CustomerId::Int(i) => Value::Int(i),
            CustomerId::Text(t) => Value::text(t),
        }
    }

    fn ensure_sessions(&mut self) {
        if self.st.sessions_ready {
            return;
        }
        self.st.sessions.clear();
        let mut s = 1i64;
        for r in 0..self.n {
            if r > 0 {
                let gap = self.c.stamp(r).saturating_sub(self.c.stamp(r - 1));
                if gap > self.ctx.session_time {
                    s += 1;
                }
            }
            self.st.sessions.push(s);
        }
        self.st.sessions_ready = true;
    }

    /// `session_count` (§7.1): 0 without rows.
    fn session_count(&mut self) -> i64 {
        if self.n == 0 {
            0
        } else if self.st.sessions_ready {
            self.session_at(self.n - 1)
        } else if let Some(kept) = self.c.kept_session_count(self.ctx.session_time) {
            kept
        } else {
            // Only the count is asked for: count the gaps without numbering
            // every row (same rule as `ensure_sessions`).
            let (stamps, _) = self.c.columns();
            let gap = self.ctx.session_time;
            let breaks = stamps
                .windows(2)
                .filter(|w| w[1].saturating_sub(w[0]) > gap)
                .count();
            1 + breaks as i64
        }
    }

    fn session_at(&mut self, row: usize) -> i64 {
        self.ensure_sessions();
        self.st.sessions.get(row).copied().unwrap_or(0)
    }

    fn prop_at(&mut self, p: PropRef, row: usize) -> Value {
        if let PropRef::Id = p {
            return self.id_value();
        }
        if row >= self.n {
            return Value::Nil;
        }
        match p {
            PropRef::Stamp => Value::Int(self.c.stamp(row)),
            PropRef::Event => self.c.text_value(self.c.event(row)),
            PropRef::Session => Value::Int(self.session_at(row)),
            PropRef::Id => self.id_value(),
            PropRef::User {
                index,
                kind,
                is_set,
            } => {
                if is_set {
                    let mut m = SetMap::new();
                    for raw in self.c.values(row, index) {
                        let _ = set_insert(&mut m, decode(self.c, kind, raw));
                    }
                    if m.is_empty() {
                        Value::Nil
                    } else {
                        Value::Set(Arc::new(m))
                    }
                } else {
                    self.first_value(row, index)
                        .map_or(Value::Nil, |raw| decode(self.c, kind, raw))
                }
            }
        }
    }

    /// Counts as fired, for this run, every memoized push inside a scan
    /// over rows of an event this customer has no row of: nothing can
    /// reach it. True when that leaves no push to wait for.
    fn settle_unreachable_pushes(&mut self) -> bool {
        let prog = self.prog;
        let run_no = self.st.run_no;
        let mut missing = 0u64;
        for (bit, &text) in prog.memo_events.iter().enumerate() {
            let absent = match self.text_id(text) {
                // The name is in no row of the partition.
                None => true,
                Some(id) => self.c.has_event(id) == Some(false),
            };
            if absent {
                missing |= 1 << bit;
            }
        }
        if missing == 0 {
            return false;
        }
        for (site, &requires) in prog.memo_requires.iter().enumerate() {
            if requires & missing == 0 {
                continue;
            }
            if let Some(seen) = self.st.memo_seen.get_mut(site) {
                if *seen != run_no {
                    *seen = run_no;
                    self.st.memo_fired += 1;
                }
            }
        }
        self.st.memo_fired == prog.memo_sites
    }

    fn text_id(&mut self, idx: u32) -> Option<u32> {
        let i = idx as usize;
        match self.st.text_ids.get(i) {
            Some(TextId::Hit(id)) => return Some(*id),
            Some(TextId::Miss(run)) if *run == self.st.run_no => return None,
            _ => {}
        }
        let t = self.prog.texts.get(i)?;
        let id = self.c.text_id(t);
        if let Some(slot) = self.st.text_ids.get_mut(i) {
            *slot = id.map_or(TextId::Miss(self.st.run_no), TextId::Hit);
        }
        id
    }

    /// Evaluates `prop cmp rhs` at the cursor row (set rules of §7.5).
    fn filter_at_cursor(&mut self, f: &PropFilter) -> RtResult<bool> {
        if let Some(idx) = f.text_const {
            let id = self.text_id(idx);
            let hit = match (id, self.on_row()) {
                (Some(id), true) => match f.prop {
                    PropRef::Event => self.c.event(self.cursor) == id,
                    PropRef::User { index, .. } => self
                        .c
                        .values(self.cursor, index)
                        .any(|raw| raw == u64::from(id)),
                    _ => false,
                },
                _ => false,
            };
            return Ok(if f.cmp == CmpOp::Ne { !hit } else { hit });
        }
        let lhs = self.prop_at(f.prop, self.cursor);
        let rhs = self.eval(&f.rhs)?;
        if f.prop.is_set() {
            // Comparing with nil asks whether the row has a value at all.
            if rhs.is_nil() && matches!(f.cmp, CmpOp::Eq | CmpOp::Ne) {
                return Ok(lhs.is_nil() == (f.cmp == CmpOp::Eq));
            }
            let Value::Set(members) = &lhs else {
                return Ok(matches!(f.cmp, CmpOp::Ne | CmpOp::NotIn));
            };
            return Ok(match f.cmp {
                CmpOp::Eq => members.values().any(|m| values_equal(m, &rhs)),
                CmpOp::Ne => !members.values().any(|m| values_equal(m, &rhs)),
                CmpOp::In => members.values().any(|m| contains_member(&rhs, m)),
                CmpOp::NotIn => !members.values().any(|m| contains_member(&rhs, m)),
                CmpOp::Contains => contains_all(&lhs, &rhs),
                CmpOp::Any => contains_any(&lhs, &rhs),
                op => members.values().any(|m| compare(op, m, &rhs)),
            });
        }
        Ok(compare(f.cmp, &lhs, &rhs))
    }

    fn filter(&mut self, f: &PropFilter) -> RtResult<bool> {
        match f.mode {
            FilterMode::Is => self.filter_at_cursor(f),
            FilterMode::IsNot => Ok(!self.filter_at_cursor(f)?),
            FilterMode::Ever | FilterMode::Never => {
                let found = self.ever(f)?;
                Ok(if f.mode == FilterMode::Ever {
                    found
                } else {
                    !found
                })
            }
        }
    }

    fn ever(&mut self, f: &PropFilter) -> RtResult<bool> {
        // Inherited window of the innermost iterator (§7.4).
        let inherited = match self.st.windows.last() {
            Some(Some(w)) => Some(*w),
            _ => Some((i64::MIN, i64::MAX)),
        };
        let base = if f.scope.range.is_some() {
            Some((i64::MIN, i64::MAX))
        } else {
            inherited
        };
        let Some((lo, hi)) = self.scope_bounds(&f.scope, base)? else {
            return Ok(false);
        };
        let saved = self.cursor;
        let (from, to) = if f.next {
            let back = matches!(f.scope.window, Some((WindowKind::LookBack, _, _)));
            if back {
                (0, saved.min(self.n))
            } else {
                (saved.saturating_add(1), self.n)
            }
        } else {
            (0, self.n)
        };
        let mut found = false;
        let mut res = Ok(());
        for r in from..to {
            let s = self.c.stamp(r);
            if s < lo {
                continue;
            }
            if s > hi {
                break;
            }
            self.cursor = r;
            match self.filter_at_cursor(f) {
                Ok(true) => {
                    found = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.cursor = saved;
        res?;
        Ok(found)
    }

    // ----- expressions ---------------------------------------------------------

    /// Evaluates an expression. Literals and variables (most leaves) are
    /// answered inline; everything else goes through [`Self::eval_node`],
    /// kept out of line so the leaves do not pay its large stack frame.
    #[inline]
    fn eval(&mut self, e: &Expr) -> RtResult<Value> {
        match e {
            Expr::Lit(Value::Text(t)) => Ok(self.literal_text(t)),
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Var(s) => Ok(self.st.vars.get(*s as usize).cloned().unwrap_or_default()),
            _ => self.eval_node(e),
        }
    }

    /// This state's own copy of a text literal. The program (and so its
    /// literals' `Arc`s) is shared by every query worker, and cloning a
    /// shared `Arc` is an atomic write to one cache line both cores fight
    /// over; a copy per state is only ever touched by its worker.
    fn literal_text(&mut self, t: &Arc<str>) -> Value {
        Value::Text(self.st.own_text(t))
    }

    #[inline(never)]
    fn eval_node(&mut self, e: &Expr) -> RtResult<Value> {
        if is_number_expr(e) && fast_numbers() {
            match self.num(e) {
                Num::Int(i) => return Ok(Value::Int(i)),
                Num::Float(f) => return Ok(Value::Float(f)),
                Num::Other => {}
            }
        }
        Ok(match e {
            // `eval` answers leaves before calling here.
            Expr::Lit(_) | Expr::Var(_) => return self.eval(e),
            Expr::Prop(p) => self.prop_at(*p, self.cursor),
            Expr::Filter(f) => Value::Bool(self.filter(f)?),
            Expr::Neg(x, pos) => {
                let v = self.eval(x)?;
                negate(&v).map_err(|d| Box::new((ErrorCode::RunTimeExceptionTriggered, d, *pos)))?
            }
            Expr::Not(x) => Value::Bool(!self.eval(x)?.truthy()),
            Expr::Arith(ArithOp::Add, ..) => self.add_chain(e)?,
            Expr::Arith(op, a, b, pos) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                arith(*op, &x, &y)
                    .map_err(|d| Box::new((ErrorCode::RunTimeExceptionTriggered, d, *pos)))?
            }
            Expr::Cmp(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                Value::Bool(compare(*op, &x, &y))
            }
            Expr::And(a, b) => Value::Bool(self.eval(a)?.truthy() && self.eval(b)?.truthy()),
            Expr::Or(a, b) => Value::Bool(self.eval(a)?.truthy() || self.eval(b)?.truthy()),
            Expr::Index(a, k) => {
                let v = self.eval(a)?;
                let k = self.eval(k)?;
                index(&v, &k)
            }
            Expr::List(_) | Expr::Dict(_) => self.eval_container(e)?,
            Expr::Call(f, args, pos) => self.eval_call(*f, args, *pos)?,
            Expr::Agg(a, pos) => {
                self.pos = *pos;
                self.inline_agg(a)?
            }
        })
    }

    /// Numeric arithmetic in registers: evaluates `e` when it is built
    /// only from number literals and variables, stamps, row counts, `now`,
    /// `+ - * /` and `trunc`, with the results [`arith`] would give, and
    /// answers [`Num::Other`] as soon as anything else turns up (the caller
    /// then evaluates `e` the general way). Everything it reads is pure, so
    /// giving up half way has no effect. `Value` results travel through
    /// memory and cost a store-forwarding stall per node; these stay in
    /// registers.
    fn num(&mut self, e: &Expr) -> Num {
        match e {
            Expr::Lit(Value::Int(i)) => Num::Int(*i),
            Expr::Lit(Value::Float(f)) => Num::Float(*f),
            Expr::Var(s) => match self.st.vars.get(*s as usize) {
                Some(Value::Int(i)) => Num::Int(*i),
                Some(Value::Float(f)) => Num::Float(*f),
                _ => Num::Other,
            },
            Expr::Prop(PropRef::Stamp) if self.cursor < self.n => {
                Num::Int(self.c.stamp(self.cursor))
            }
            Expr::Call(Func::LastStamp, _, _) => self.c.last_stamp().map_or(Num::Other, Num::Int),
            Expr::Call(Func::FirstStamp, _, _) if self.n > 0 => Num::Int(self.c.stamp(0)),
            Expr::Call(Func::RowCount, _, _) => Num::Int(self.n as i64),
            Expr::Call(Func::SessionCount, _, _) => Num::Int(self.session_count()),
            Expr::Call(Func::Now, _, _) => Num::Int(self.ctx.now),
            Expr::Call(Func::Trunc, args, _) if args.len() == 1 => match self.num(&args[0]) {
                Num::Int(i) => Num::Int(i),
                Num::Float(f) if f.is_finite() => Num::Int(f as i64),
                _ => Num::Other,
            },
            Expr::Arith(op, a, b, _) => {
                let x = self.num(a);
                if matches!(x, Num::Other) {
                    return Num::Other;
                }
                let r = match (x, self.num(b)) {
                    (Num::Int(x), Num::Int(y)) => crate::value::int_arith(*op, x, y),
                    (Num::Int(x), Num::Float(y)) => crate::value::float_arith(*op, x as f64, y),
                    (Num::Float(x), Num::Int(y)) => crate::value::float_arith(*op, x, y as f64),
                    (Num::Float(x), Num::Float(y)) => crate::value::float_arith(*op, x, y),
                    _ => return Num::Other,
                };
                match r {
                    Value::Int(i) => Num::Int(i),
                    Value::Float(f) => Num::Float(f),
                    _ => Num::Other,
                }
            }
            _ => Num::Other,
        }
    }

    #[inline(never)]
    fn eval_call(&mut self, f: Func, args: &[Expr], pos: Pos) -> RtResult<Value> {
        let mut vals = Args::new();
        for a in args {
            vals.push(self.eval(a)?);
        }
        self.pos = pos;
        self.call(f, &vals, pos)
    }

    #[inline(never)]
    fn eval_container(&mut self, e: &Expr) -> RtResult<Value> {
        Ok(match e {
            Expr::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    let v = self.eval(i)?;
                    if nested_deeper_than(&v, MAX_VALUE_DEPTH - 1) {
                        return self.fail(TOO_DEEP);
                    }
                    out.push(v);
                }
                Value::list(out)
            }
            Expr::Dict(items) => {
                let mut d = DictMap::new();
                for (k, e) in items {
                    let v = self.eval(e)?;
                    if nested_deeper_than(&v, MAX_VALUE_DEPTH - 1) {
                        return self.fail(TOO_DEEP);
                    }
                    if let Some(h) = Key::of(k) {
                        d.insert(h, (k.clone(), v));
                    }
                }
                Value::Dict(Arc::new(d))
            }
            _ => Value::Nil,
        })
    }

    /// `a + b + c ...` (a left-leaning chain of `+`). When the leftmost
    /// operand is text every `+` appends the next operand's text (§4.5), so
    /// the chain builds one string instead of one per `+`; otherwise the
    /// operands are added pairwise as usual. Operands are evaluated left to
    /// right either way.
    fn add_chain(&mut self, e: &Expr) -> RtResult<Value> {
        let mut s = std::mem::take(&mut self.st.text_buf);
        s.clear();
        let v = self
            .chain_into(e, &mut s)
            .map(|other| other.unwrap_or_else(|| Value::text(&s)));
        self.st.text_buf = s;
        v
    }

    /// [`Self::add_chain`] writing a text result into `out` (then `None`);
    /// a chain whose leftmost operand is not text comes back as a value.
    /// Text properties and text variables are appended in place, without a
    /// value of their own.
    fn chain_into(&mut self, e: &Expr, out: &mut String) -> RtResult<Option<Value>> {
        let mut rights: SmallVec<[(&Expr, Pos); 4]> = SmallVec::new();
        let mut cur = e;
        while let Expr::Arith(ArithOp::Add, l, r, pos) = cur {
            rights.push((r, *pos));
            cur = l;
        }
        // A text first part is appended where it lies, like the rest: no
        // value (and no shared-text reference count) per push.
        if let Some(t) = self.text_in_place(cur) {
            out.push_str(t);
        } else {
            let first = self.eval(cur)?;
            let Value::Text(t) = &first else {
                let mut acc = first;
                for (r, pos) in rights.iter().rev() {
                    let x = self.eval(r)?;
                    acc = arith(ArithOp::Add, &acc, &x)
                        .map_err(|d| Box::new((ErrorCode::RunTimeExceptionTriggered, d, *pos)))?;
                }
                return Ok(Some(acc));
            };
            out.push_str(t);
        }
        for (r, _) in rights.iter().rev() {
            if let Some(t) = self.text_in_place(r) {
                out.push_str(t);
                continue;
            }
            match self.eval(r)? {
                Value::Text(x) => out.push_str(&x),
                other => out.push_str(&other.to_text()),
            }
        }
        Ok(None)
    }

    /// The text `e` stands for, read where it lies, when `e` is a text
    /// literal, a variable holding text, or a single-valued text property
    /// with a value at the cursor row; `None` otherwise (evaluate it).
    /// The property case repeats a small part of `prop_at`: values, then
    /// dictionary text.
    #[inline]
    fn text_in_place<'a>(&'a self, e: &'a Expr) -> Option<&'a str> {
        match e {
            Expr::Lit(Value::Text(lit)) => Some(lit),
            Expr::Var(slot) => match self.st.vars.get(*slot as usize) {
                Some(Value::Text(x)) => Some(x),
                _ => None,
            },
            Expr::Prop(PropRef::User {
                index,
                kind: PropKind::Text,
                is_set: false,
            }) if self.on_row() => {
                let raw = self.first_value(self.cursor, *index)?;
                Some(self.c.text(raw as u32))
            }
            _ => None,
        }
    }

    #[inline(never)]
    fn call(&mut self, f: Func, args: &[Value], pos: Pos) -> RtResult<Value> {
        let a0 = args.first().cloned().unwrap_or_default();
        let seg = |me: &Self, v: &Value| -> RtResult<bool> {
            let name = v.to_text();
            me.c.in_segment(&name).map_or_else(
                || {
                    rt(
                        ErrorCode::SetMathParamInvalid,
                        format!("segment '{name}' set could not be found"),
                        pos,
                    )
                },
                Ok,
            )
        };
        Ok(match f {
            Func::Now => Value::Int(self.ctx.now),
            Func::Cursor => Value::Int(self.cursor as i64),
            Func::RowCount => Value::Int(self.n as i64),
            Func::FirstStamp => {
                if self.n > 0 {
                    Value::Int(self.c.stamp(0))
                } else {
                    Value::Nil
                }
            }
            Func::LastStamp => self.c.last_stamp().map_or(Value::Nil, Value::Int),
            Func::SessionCount => Value::Int(self.session_count()),
            Func::GetRow => self.get_row(&a0),
            Func::Log => {
                let parts: Vec<String> = args.iter().map(|v| v.to_log_text(false)).collect();
                self.outcome.log.push(parts.join(" "));
                Value::Nil
            }
            Func::Debug => {
                self.outcome.debug.push(a0);
                Value::Nil
            }
            Func::Population => Value::Bool(seg(self, &a0)?),
            Func::Compliment => Value::Bool(!seg(self, &a0)?),
            Func::Intersection | Func::Union | Func::Difference => {
                let a = seg(self, &a0)?;
                let b = seg(self, &args.get(1).cloned().unwrap_or_default())?;
                Value::Bool(match f {
                    Func::Intersection => a && b,
                    Func::Union => a || b,
                    _ => a && !b,
                })
            }
            _ => match call_pure(f, args) {
                Some(Ok(v)) => v,
                Some(Err(d)) => return rt(ErrorCode::RunTimeExceptionTriggered, d, pos),
                None => {
                    return rt(
                        ErrorCode::RunTimeExceptionTriggered,
                        format!("'{}' is not callable here", f.name()),
                        pos,
                    )
                }
            },
        })
    }

    fn get_row(&mut self, idx: &Value) -> Value {
        let row = match idx.to_int() {
            Value::Int(i) if i >= 0 && (i as u64) < self.n as u64 => i as usize,
            _ => return Value::Nil,
        };
        let mut d = DictMap::new();
        let mut put = |name: &str, v: Value| {
            if v.is_nil() {
                return;
            }
            let k = Value::text(name);
            if let Some(h) = Key::of(&k) {
                d.insert(h, (k, v));
            }
        };
        put("stamp", Value::Int(self.c.stamp(row)));
        put("event", Value::text(self.c.text(self.c.event(row))));
        put("id", self.id_value());
        let props = self.prog.event_props.clone();
        for (name, p) in props.iter() {
            let v = self.prop_at(*p, row);
            put(name, v);
        }
        Value::Dict(Arc::new(d))
    }

    // ----- pushes ----------------------------------------------------------------

    /// A push of literal groups (memoized or not): the path of scalar
    /// groups is built once per state, and the nodes it leads to are
    /// looked up once per tree; later pushes only count there. Lists fan
    /// out as usual.
    fn push_literal(&mut self, site: usize, groups: &[Expr]) -> RtResult<()> {
        if self.st.literal_paths.len() <= site {
            self.st.literal_paths.resize(site + 1, None);
        }
        if self.st.literal_paths[site].is_none() {
            let mut path = SmallVec::<[GroupKey; 4]>::new();
            for g in groups {
                let key = match GroupKey::of_scalar(&self.eval(g)?) {
                    Some(key) => key,
                    // Nil ends the path; containers fan out: the general way.
                    None => {
                        let mut vals = Args::new();
                        for g in groups {
                            vals.push(self.eval(g)?);
                        }
                        return self.push(&vals);
                    }
                };
                path.push(key);
            }
            self.st.literal_paths[site] = Some(path);
        }
        let tree = self.out.uid();
        if !matches!(self.st.literal_nodes.get(site), Some((uid, _)) if *uid == tree) {
            let Some(path) = self.st.literal_paths[site].as_ref() else {
                return Ok(());
            };
            let mut nodes = SmallVec::<[u32; 4]>::new();
            let mut parent = None;
            for key in path.iter() {
                let Some(node) = self.out.child(parent, key.as_key_ref()) else {
                    return self.fail("the result is too large");
                };
                nodes.push(node);
                parent = Some(node);
            }
            if self.st.literal_nodes.len() <= site {
                self.st.literal_nodes.resize(site + 1, (0, SmallVec::new()));
            }
            self.st.literal_nodes[site] = (tree, nodes);
        }
        let cols = self.column_values();
        // (Read in place: copying the node list per push cost more than
        // the lookups it saves.)
        let mut k = 0;
        while let Some(&node) = self.st.literal_nodes.get(site).and_then(|(_, n)| n.get(k)) {
            self.count_at(node, &cols);
            k += 1;
        }
        self.counted(cols);
        Ok(())
    }

    fn push(&mut self, groups: &[Value]) -> RtResult<()> {
        let cols = self.column_values();
        let mut path = SmallVec::<[GroupKey; 4]>::new();
        let r = self.fan_out(groups, &mut path, &cols);
        self.counted(cols);
        r
    }

    /// What a push at the cursor row counts, computed once per push (hand
    /// it back with [`Self::counted`]): which columns have a value when
    /// every column is a plain count (`Program::count_plan`), else each
    /// column's value and de-duplication key.
    fn column_values(&mut self) -> Counts {
        let row = self.cursor;
        if let Some(plan) = &self.prog.count_plan {
            let mut present = plan.always;
            if row < self.n {
                present |= plan.on_row;
                for &(index, bit) in plan.props.iter() {
                    if self.first_value(row, index).is_some() {
                        present |= bit;
                    }
                }
            }
            return Counts::Present(present);
        }
        let mut cols = std::mem::take(&mut self.st.col_vals);
        cols.clear();
        for c in self.prog.columns.iter() {
            let v = self.col_value(c.prop, row);
            let key = match c.dedup {
                Dedup::All => DKey::Val(None),
                Dedup::Customer => DKey::Customer,
                Dedup::Session => DKey::Session(if row < self.n {
                    self.session_at(row)
                } else {
                    0
                }),
                Dedup::Row => {
                    if self.ctx.stamp_counts && row < self.n {
                        DKey::Stamp(self.c.stamp(row))
                    } else {
                        DKey::Row(row)
                    }
                }
                Dedup::Key(p) => DKey::Val(self.key_value(p, row)),
            };
            cols.push((v, key));
        }
        Counts::Values(cols)
    }

    /// Takes back a push's [`Counts`] (keeps the buffer for the next).
    fn counted(&mut self, cols: Counts) {
        if let Counts::Values(v) = cols {
            self.st.col_vals = v;
        }
    }

    /// Raw aggregation value of a column at `row` (None when absent).
    fn col_value(&mut self, p: PropRef, row: usize) -> Option<i64> {
        match p {
            PropRef::Id => Some(1),
            _ if row >= self.n => None,
            PropRef::Stamp => Some(self.c.stamp(row)),
            PropRef::Event => Some(1),
            PropRef::Session => Some(self.session_at(row)),
            PropRef::User { index, .. } => self.first_value(row, index).map(|raw| raw as i64),
        }
    }

    fn key_value(&mut self, p: PropRef, row: usize) -> Option<u64> {
        match p {
            PropRef::Id => Some(0),
            _ if row >= self.n => None,
            PropRef::Stamp => Some(self.c.stamp(row) as u64),
            PropRef::Event => Some(u64::from(self.c.event(row))),
            PropRef::Session => Some(self.session_at(row) as u64),
            PropRef::User { index, .. } => {
                // Sets: a hash of all members (FNV-1a).
                let mut it = self.c.values(row, index).peekable();
                it.peek()?;
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for raw in it {
                    h ^= raw;
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                Some(h)
            }
        }
    }

    fn fan_out(
        &mut self,
        groups: &[Value],
        path: &mut SmallVec<[GroupKey; 4]>,
        cols: &Counts,
    ) -> RtResult<()> {
        let Some((first, rest)) = groups.split_first() else {
            return self.aggregate_path(path, cols);
        };
        match first {
            Value::Nil => self.aggregate_path(path, cols),
            Value::List(_) | Value::Set(_) => {
                let items: Vec<Value> = match first {
                    Value::List(l) => (**l).clone(),
                    Value::Set(s) => s.values().cloned().collect(),
                    _ => Vec::new(),
                };
                if items.is_empty() {
                    return self.aggregate_path(path, cols);
                }
                for it in items {
                    let mut sub = Vec::with_capacity(groups.len());
                    sub.push(it);
                    sub.extend(rest.iter().cloned());
                    self.fan_out(&sub, path, cols)?;
                }
                Ok(())
            }
            Value::Dict(_) => self.fail("group value must be a scalar, list or set"),
            scalar => {
                let Some(key) = GroupKey::of_scalar(scalar) else {
                    return Ok(());
                };
                path.push(key);
                let r = self.fan_out(rest, path, cols);
                path.pop();
                r
            }
        }
    }

    fn aggregate_path(&mut self, path: &[GroupKey], cols: &Counts) -> RtResult<()> {
        // (Keys handed over one by one: a copied array of them, written in
        // pieces and read back whole, stalls store forwarding.)
        self.aggregate_keys(path.iter().map(GroupKey::as_key_ref), cols)
    }

    /// `<< g, ...` whose groups are all [`reads_in_place`]: each key is read
    /// at the cursor row and borrowed, a text straight from the dictionary.
    /// The general path would clone the dictionary's shared `Arc` for each
    /// text (and the key again), and the workers' counter updates on the
    /// same popular texts cost more than the rest of the push. Same result
    /// as the general push: a nil group ends the path there.
    fn push_in_place(&mut self, groups: &[Expr]) -> RtResult<()> {
        let row = self.cursor;
        let on_row = row < self.n;
        let session = match groups
            .iter()
            .any(|g| matches!(g, Expr::Prop(PropRef::Session)))
        {
            true if on_row => self.session_at(row),
            _ => 0,
        };
        let c = self.c;
        let mut keys = SmallVec::<[KeyRef<'_>; 4]>::new();
        // Per key, its dictionary id when it is a text read from the
        // dictionary (see `Interp::text_node`).
        let mut text_ids = SmallVec::<[Option<u32>; 4]>::new();
        for g in groups {
            let mut text_id = None;
            let key = match g {
                Expr::Lit(v) => match v {
                    Value::Bool(b) => Some(KeyRef::Bool(*b)),
                    Value::Int(i) => Some(KeyRef::Int(*i)),
                    Value::Float(f) => Some(KeyRef::Float(float_key(*f))),
                    Value::Text(t) => Some(KeyRef::Text(t)),
                    _ => None,
                },
                Expr::Prop(_) if !on_row => None,
                Expr::Prop(PropRef::Event) => {
                    let id = c.event(row);
                    text_id = Some(id);
                    Some(KeyRef::Text(c.text(id)))
                }
                Expr::Prop(PropRef::Stamp) => Some(KeyRef::Int(c.stamp(row))),
                Expr::Prop(PropRef::Session) => Some(KeyRef::Int(session)),
                Expr::Prop(PropRef::User { index, kind, .. }) => {
                    c.values(row, *index).next().map(|raw| match kind {
                        PropKind::Int => KeyRef::Int(raw as i64),
                        // (As `decode` reads it, then as a float key.)
                        PropKind::Double => KeyRef::Float(float_key(raw as i64 as f64 / 10_000.0)),
                        PropKind::Bool => KeyRef::Bool(raw != 0),
                        PropKind::Text => {
                            text_id = Some(raw as u32);
                            KeyRef::Text(c.text(raw as u32))
                        }
                    })
                }
                _ => None,
            };
            // A nil group ends the path (as `fan_out` does).
            let Some(key) = key else { break };
            keys.push(key);
            text_ids.push(text_id);
        }
        let cols = self.column_values();
        let mut parent = None;
        let mut r = Ok(());
        for (&key, &text_id) in keys.iter().zip(text_ids.iter()) {
            let node = match text_id {
                Some(id) => self.text_node(parent, id, key),
                None => self.out.child(parent, key),
            };
            let Some(node) = node else {
                r = self.fail("the result is too large");
                break;
            };
            self.count_at(node, &cols);
            parent = Some(node);
        }
        self.counted(cols);
        r
    }

    /// The node under `parent` of dictionary text `id` (`key` is its
    /// text), remembered per state and tree: a push of properties such as
    /// `<< shipper, product_name` then neither hashes its texts nor
    /// compares them with the tree's (top-level nodes by id in a vector,
    /// deeper ones by parent and id in a map).
    fn text_node(&mut self, parent: Option<u32>, id: u32, key: KeyRef<'_>) -> Option<u32> {
        const BY_ID: usize = 1 << 20;
        let tree = self.out.uid();
        let known = &mut self.st.text_nodes;
        if known.tree != tree {
            known.tree = tree;
            known.clear();
        }
        if let Some(p) = parent {
            if let Some(&node) = known.children.get(&(p, id)) {
                return Some(node);
            }
            let node = self.out.child(parent, key)?;
            self.st.text_nodes.children.insert((p, id), node);
            return Some(node);
        }
        let at = id as usize;
        if let Some(&node) = known.roots.get(at).filter(|&&n| n != u32::MAX) {
            return Some(node);
        }
        let node = self.out.child(None, key)?;
        if at < BY_ID {
            let nodes = &mut self.st.text_nodes.roots;
            if nodes.len() <= at {
                nodes.resize(at + 1, u32::MAX);
            }
            nodes[at] = node;
        }
        Some(node)
    }

    /// `<< a + b ...` with one group: a text chain is built in the state's
    /// buffer and pushed as a borrowed key, without a value of its own
    /// (same result as the general push of the chain's value).
    fn push_chain(&mut self, chain: &Expr, pos: Pos) -> RtResult<()> {
        let mut text = std::mem::take(&mut self.st.text_buf);
        text.clear();
        let r = match self.chain_into(chain, &mut text) {
            Ok(None) => {
                self.pos = pos;
                let cols = self.column_values();
                let r = self.aggregate_keys(std::iter::once(KeyRef::Text(&text)), &cols);
                self.counted(cols);
                r
            }
            Ok(Some(v)) => {
                self.pos = pos;
                self.push(std::slice::from_ref(&v))
            }
            Err(f) => Err(f),
        };
        self.st.text_buf = text;
        r
    }

    /// The program's text-chain push filed under its parts' numbers in the
    /// tree's key space, without building the text (`key_space`). The
    /// parts are read as `chain_into` reads them; a part that would not be
    /// text where the chain needs it, or whose text could make keys
    /// ambiguous, fails the space (the query then runs again with text
    /// keys) and the push is dropped.
    fn push_parts(&mut self, pos: Pos) -> RtResult<()> {
        let Some(space) = self.take_key_space() else {
            return Ok(());
        };
        let r = self.push_parts_in(&space, pos);
        self.st.key_space = Some(space);
        r
    }

    /// The tree's key space, taken out of the run state (put it back
    /// after use) and made current there: ids numbered for another space
    /// are dropped. `None` without a space or once it failed.
    fn take_key_space(&mut self) -> Option<Arc<KeySpace>> {
        let space = self.out.key_space()?;
        if space.failed() {
            return None;
        }
        if !self
            .st
            .key_space
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, space))
        {
            self.st.key_space = Some(space.clone());
            for ids in self.st.key_ids.iter_mut() {
                ids.clear();
            }
            for texts in self.st.key_texts.iter_mut() {
                texts.clear();
            }
        }
        self.st.key_space.take()
    }

    fn push_parts_in(&mut self, space: &KeySpace, pos: Pos) -> RtResult<()> {
        let Some((template, operands)) = &self.prog.key_chain else {
            return Ok(());
        };
        let mut ids = [0u32; 2];
        let mut part = 0;
        for (i, item) in template.items.iter().enumerate() {
            let var_text = match item {
                TemplateItem::Var(slot) => match self.st.vars.get(*slot as usize) {
                    Some(Value::Text(t)) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            // The dictionary id of the part, when it can be had without
            // its text: a property's value at the cursor row; an id-only
            // variable's noted id; or the noted id of a variable still
            // holding that very dictionary text (same allocation, so the
            // same id).
            let in_place = match item {
                TemplateItem::Lit(_) => continue,
                TemplateItem::Prop(index) if self.on_row() => {
                    self.first_value(self.cursor, *index).map(|raw| raw as u32)
                }
                TemplateItem::Prop(_) => None,
                TemplateItem::Var(slot) => self
                    .st
                    .var_text_ids
                    .get(*slot as usize)
                    .filter(|(run, id)| *run == self.st.run_no && *id != u32::MAX)
                    .map(|(_, id)| *id)
                    .filter(|&id| {
                        self.prog.id_only_vars.contains(slot)
                            || var_text
                                .is_some_and(|t| std::ptr::eq(self.c.text(id).as_ptr(), t.as_ptr()))
                    }),
            };
            let id = match (in_place, var_text) {
                (Some(text_id), _) => self.key_of_text_id(space, part, text_id),
                (None, Some(t)) => key_of_text(&mut self.st.key_texts, space, part, t),
                (None, None) => {
                    let Some(e) = operands.get(part) else {
                        return Ok(());
                    };
                    match self.eval(e)? {
                        Value::Text(t) => key_of_text(&mut self.st.key_texts, space, part, &t),
                        // Nil first: the chain is nil and pushes nothing.
                        Value::Nil if i == 0 => return Ok(()),
                        // The chain's first operand decides it is a text
                        // chain; anything else there is not ours to file.
                        _ if i == 0 => None,
                        other => key_of_text(&mut self.st.key_texts, space, part, &other.to_text()),
                    }
                }
            };
            let Some(id) = id else {
                space.fail();
                return Ok(());
            };
            if let Some(slot) = ids.get_mut(part) {
                *slot = id;
            }
            part += 1;
        }
        self.pos = pos;
        let cols = self.column_values();
        let key = KeySpace::pack(ids.get(..part).unwrap_or(&[]));
        let r = self.aggregate_keys(std::iter::once(KeyRef::Parts(key)), &cols);
        self.counted(cols);
        r
    }

    /// Remembers the dictionary id behind `var = text_property` (see
    /// `RunState::var_text_ids`), so an interned push can number the
    /// variable's text by id instead of hashing it. True when that is all
    /// the assignment has to do (an id-only variable, left nil).
    fn note_text_id(&mut self, target: &Target, op: Option<ArithOp>, value: &Expr) -> bool {
        let Expr::Prop(PropRef::User {
            index,
            kind: PropKind::Text,
            is_set: false,
        }) = value
        else {
            return false;
        };
        if op.is_some() || !target.path.is_empty() {
            return false;
        }
        // (`prop_at` reads nothing off the rows either: nil.)
        let raw = match self.on_row() {
            true => self.first_value(self.cursor, *index),
            false => None,
        };
        self.note_id(target.slot, raw);
        // Only a push filed by number reads the noted id instead of the
        // variable (a tree without a key space takes the text path).
        self.prog.id_only_vars.contains(&target.slot) && self.out.key_space().is_some()
    }

    /// Notes raw text value `raw` as variable `slot`'s dictionary id for
    /// this run (`RunState::var_text_ids`).
    fn note_id(&mut self, slot: u32, raw: Option<u64>) {
        let slot = slot as usize;
        if self.st.var_text_ids.len() <= slot {
            self.st.var_text_ids.resize(slot + 1, (0, u32::MAX));
        }
        if let Some(noted) = self.st.var_text_ids.get_mut(slot) {
            *noted = (self.st.run_no, raw.map_or(u32::MAX, |r| r as u32));
        }
    }

    /// The key-space number of dictionary text `text_id` as part `part`
    /// (remembered by id for the first million ids, by text beyond).
    #[inline]
    fn key_of_text_id(&mut self, space: &KeySpace, part: usize, text_id: u32) -> Option<u32> {
        const BY_ID: usize = 1 << 20;
        let at = text_id as usize;
        let ids = self.st.key_ids.get_mut(part)?;
        if let Some(&id) = ids.get(at).filter(|&&id| id != u32::MAX) {
            return Some(id);
        }
        if at >= BY_ID {
            return key_of_text(&mut self.st.key_texts, space, part, self.c.text(text_id));
        }
        let id = space.intern(part, self.c.text(text_id))?;
        let ids = self.st.key_ids.get_mut(part)?;
        if ids.len() <= at {
            ids.resize(at + 1, u32::MAX);
        }
        if let Some(slot) = ids.get_mut(at) {
            *slot = id;
        }
        Some(id)
    }

    fn aggregate_keys<'k>(
        &mut self,
        path: impl Iterator<Item = KeyRef<'k>>,
        cols: &Counts,
    ) -> RtResult<()> {
        let mut parent = None;
        for key in path {
            let Some(node) = self.out.child(parent, key) else {
                return self.fail("the result is too large");
            };
            self.count_at(node, cols);
            parent = Some(node);
        }
        Ok(())
    }

    /// Counts a push's column values `cols` at `node`.
    fn count_at(&mut self, node: u32, cols: &Counts) {
        let seg = self.ctx.segment.min(self.out.segments() - 1);
        let cols = match cols {
            Counts::Present(present) => {
                let per_customer = self.prog.count_plan.as_ref().map_or(0, |p| p.per_customer);
                self.out
                    .count_present(node, seg, self.st.run_no, *present, per_customer);
                return;
            }
            Counts::Values(cols) => cols,
        };
        let ncols = self.prog.columns.len();
        // Every push reaching a node counts all its columns, so one mark
        // per node and run settles every once-per-customer column.
        let first_for_customer = self.out.mark_customer(node, self.st.run_no);
        for (ci, (v, dk)) in cols.iter().enumerate() {
            let Some(col) = self.prog.columns.get(ci) else {
                continue;
            };
            let counted = match col.dedup {
                Dedup::All => true,
                Dedup::Customer => first_for_customer,
                _ => self.st.dedup.insert((u64::from(node), ci as u32, *dk)),
            };
            if !counted {
                continue;
            }
            let Some(v) = v else { continue };
            self.out.add(node, seg * ncols + ci, *v);
        }
    }
}

/// The most pushes a pair walk holds before counting them.
const PAIR_BATCH: usize = 64;

/// An event-name id as a customer's rows store it (two or four bytes).
trait NameWidth: Copy + PartialEq {
    /// `id` in this width; `None` when it does not fit (no row of a
    /// customer storing names this narrow has it).
    fn of(id: u32) -> Option<Self>;
}

impl NameWidth for u16 {
    fn of(id: u32) -> Option<u16> {
        u16::try_from(id).ok()
    }
}

impl NameWidth for u32 {
    fn of(id: u32) -> Option<u32> {
        Some(id)
    }
}

/// The first position of `id` in `names`. Compares a block of 16 names
/// at a time into a bit mask (the compiler turns the block into vector
/// compares): searches run between rows of one event, a few dozen rows
/// each, and a compare-and-branch per name paid a mispredicted exit per
/// search on top of the per-name work.
#[inline]
fn find_name<T: NameWidth>(names: &[T], id: T) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut blocks = names.chunks_exact(BLOCK);
    let mut base = 0;
    for block in blocks.by_ref() {
        let mut mask = 0u32;
        for (k, &x) in block.iter().enumerate() {
            mask |= u32::from(x == id) << k;
        }
        if mask != 0 {
            return Some(base + mask.trailing_zeros() as usize);
        }
        base += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&x| x == id)
        .map(|p| base + p)
}

/// Fills `next` (one more entry than rows, the last the row count) with
/// the first row at or after each row whose name is `id`.
fn fill_jump<T: NameWidth>(next: &mut [u32], names: &[T], id: u32) {
    let Some(id) = T::of(id) else {
        return;
    };
    let n = next.len().saturating_sub(1);
    for r in (0..n.min(names.len())).rev() {
        next[r] = if names[r] == id {
            r as u32
        } else {
            next[r + 1]
        };
    }
}

/// The key-space number of `text` as part `part`, remembered in `known`.
fn key_of_text(
    known: &mut [HashMap<Arc<str>, u32>; 2],
    space: &KeySpace,
    part: usize,
    text: &str,
) -> Option<u32> {
    let texts = known.get_mut(part)?;
    if let Some(&id) = texts.get(text) {
        return Some(id);
    }
    let id = space.intern(part, text)?;
    texts.insert(Arc::from(text), id);
    Some(id)
}

/// Subscript read (§4.7): never fails, never inserts.
fn index(v: &Value, k: &Value) -> Value {
    match v {
        Value::List(l) => match k {
            Value::Int(i) if *i >= 0 => l.get(*i as usize).cloned().unwrap_or_default(),
            _ => Value::Nil,
        },
        Value::Dict(d) => Key::of(k)
            .and_then(|h| d.get(&h).map(|(_, v)| v.clone()))
            .unwrap_or_default(),
        _ => Value::Nil,
    }
}

/// Subscript write (§4.7).
fn set_path(root: &mut Value, keys: &[Value], v: Value) -> Result<(), String> {
    if !keys.is_empty() && nested_deeper_than(&v, MAX_VALUE_DEPTH.saturating_sub(keys.len())) {
        return Err(TOO_DEEP.into());
    }
    let Some((k, rest)) = keys.split_first() else {
        *root = v;
        return Ok(());
    };
    match root {
        Value::Dict(d) => {
            let h = Key::of(k).ok_or_else(|| {
                if k.is_nil() {
                    "nil cannot be a dictionary key".to_string()
                } else {
                    format!("a {} cannot be a dictionary key", k.type_name())
                }
            })?;
            let d = Arc::make_mut(d);
            if rest.is_empty() {
                d.insert(h, (k.clone(), v));
                return Ok(());
            }
            match d.get_mut(&h) {
                Some((_, inner @ (Value::Dict(_) | Value::List(_)))) => set_path(inner, rest, v),
                _ => Err(format!("key '{}' not in dictionary", k.to_text())),
            }
        }
        Value::List(l) => {
            let i = match k {
                Value::Int(i) if *i >= 0 && (*i as u64) < l.len() as u64 => *i as usize,
                _ => return Err("index out of range".into()),
            };
            let l = Arc::make_mut(l);
            let Some(slot) = l.get_mut(i) else {
                return Err("index out of range".into());
            };
            if rest.is_empty() {
                *slot = v;
                return Ok(());
            }
            match slot {
                Value::Dict(_) | Value::List(_) => set_path(slot, rest, v),
                _ => Err("index out of range".into()),
            }
        }
        other => Err(format!(
            "cannot assign through a subscript of a {}",
            other.type_name()
        )),
    }
}

/// Accumulator of inline aggregations.
#[derive(Default)]
struct AggAcc {
    count: i64,
    int_sum: i64,
    float_sum: f64,
    any_float: bool,
    overflow: bool,
    best: Option<Value>,
    distinct: Vec<Value>,
    keys: HashSet<Key>,
    found: Option<usize>,
}

impl AggAcc {
    fn add(&mut self, kind: AggKind, v: Value) {
        if v.is_nil() {
            return;
        }
        match kind {
            AggKind::Count => self.count += 1,
            AggKind::DCount => match Key::of(&v) {
                Some(k) => {
                    if self.keys.insert(k) {
                        self.count += 1;
                    }
                }
                None => {
                    if !self.distinct.iter().any(|x| values_equal(x, &v)) {
                        self.distinct.push(v);
                        self.count += 1;
                    }
                }
            },
            AggKind::Sum | AggKind::Avg => {
                let n = match &v {
                    Value::Int(i) => Some((Some(*i), *i as f64)),
                    Value::Bool(b) => Some((Some(i64::from(*b)), f64::from(u8::from(*b)))),
                    Value::Float(f) => Some((None, *f)),
                    Value::Text(t) => crate::value::numeric_text(t).map(|f| (None, f)),
                    _ => None,
                };
                if let Some((i, f)) = n {
                    self.count += 1;
                    self.float_sum += f;
                    match i {
                        Some(i) if !self.any_float => match self.int_sum.checked_add(i) {
                            Some(s) => self.int_sum = s,
                            None => self.overflow = true,
                        },
                        _ => self.any_float = true,
                    }
                }
            }
            AggKind::Min | AggKind::Max => {
                let better = match &self.best {
                    None => true,
                    Some(b) => {
                        let o = values_order(&v, b);
                        if kind == AggKind::Min {
                            o == Some(Ordering::Less)
                        } else {
                            o == Some(Ordering::Greater)
                        }
                    }
                };
                if better && (self.best.is_some() || !v.is_container()) {
                    self.best = Some(v);
                }
            }
            AggKind::Test | AggKind::Row => {}
        }
    }

    fn finish(self, kind: AggKind) -> Value {
        match kind {
            AggKind::Count | AggKind::DCount => Value::Int(self.count),
            AggKind::Sum => {
                if self.count == 0 {
                    Value::Nil
                } else if self.any_float || self.overflow {
                    Value::Float(self.float_sum)
                } else {
                    Value::Int(self.int_sum)
                }
            }
            AggKind::Avg => {
                if self.count == 0 {
                    Value::Nil
                } else {
                    Value::Float(self.float_sum / self.count as f64)
                }
            }
            AggKind::Min | AggKind::Max => self.best.unwrap_or_default(),
            AggKind::Test => Value::Bool(self.found.is_some()),
            AggKind::Row => self.found.map_or(Value::Nil, |r| Value::Int(r as i64)),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Program>();
    is::<ResultTree>();
    is::<HashMap<u8, u8>>();
}

/// The text constant of a leading `event.is(== "text")` in a condition
/// (the left-most operand of a chain of `&&`), whose failure decides the
/// whole condition without evaluating anything else.
/// True when `e` is arithmetic or a call that the register arithmetic
/// (`Interp::num`) may answer without building values.
fn is_number_expr(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Arith(..)
            | Expr::Call(
                Func::Trunc
                    | Func::SessionCount
                    | Func::LastStamp
                    | Func::FirstStamp
                    | Func::RowCount
                    | Func::Now,
                ..
            )
    )
}

/// True when `stmts` is only `return(<number expression>)` reading no
/// variable: [`Program::quick_number`] may answer it (variables would hold
/// an earlier run's values there).
pub(crate) fn is_quick_return(stmts: &[Stmt]) -> bool {
    matches!(stmts, [Stmt::Return(Some(e))] if is_number_expr(e) && reads_no_variable(e))
}

/// True when `e` is literals, arithmetic and calls over them, with no
/// variable anywhere (see [`Program::quick_number`]).
fn reads_no_variable(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Prop(_) => true,
        Expr::Arith(_, a, b, _) => reads_no_variable(a) && reads_no_variable(b),
        Expr::Call(_, args, _) => args.iter().all(reads_no_variable),
        _ => false,
    }
}

/// A push group [`Interp::push_in_place`] reads without evaluating it: a
/// scalar literal, or `event`, `stamp`, `session` or a single-valued event
/// property at the cursor.
fn reads_in_place(g: &Expr) -> bool {
    match g {
        Expr::Lit(v) => matches!(
            v,
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Text(_)
        ),
        Expr::Prop(p) => matches!(
            p,
            PropRef::Event
                | PropRef::Stamp
                | PropRef::Session
                | PropRef::User { is_set: false, .. }
        ),
        _ => false,
    }
}

#[cfg(test)]
mod find_name_tests {
    use super::find_name;

    #[test]
    fn finds_the_first_match_in_blocks_and_in_the_remainder() {
        // Lengths around the 16-name block, the match at every position.
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 70] {
            for at in 0..len {
                let mut names = vec![7u16; len];
                names[at] = 3;
                // A second match later must not be the answer.
                if let Some(later) = names.get_mut(at + 5) {
                    *later = 3;
                }
                assert_eq!(find_name(&names, 3u16), Some(at), "len {len} at {at}");
                let wide: Vec<u32> = names.iter().map(|&n| u32::from(n)).collect();
                assert_eq!(find_name(&wide, 3u32), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_name(&vec![7u16; len], 3u16), None, "len {len}");
        }
    }
}
