//! The compiler driver: tokenise, parse (with name resolution and static
//! checks), run the §6.9 assigned-variable check and package a [`Program`].
//!
//! Executable form: the resolved syntax tree itself, walked by `interp.rs`.
//! Why not bytecode or closures: every OSL construct is already a compact
//! tree node once names are resolved to slots/property indexes and text
//! constants to dictionary-id lookups; the per-row cost is dominated by
//! reading cells and comparing values, not by dispatch. A tree keeps the
//! interpreter short, keeps source positions on nodes for runtime errors,
//! makes `debug_listing()` a direct rendering, and needs no unsafe code or
//! allocation per evaluated node.

use crate::ast::{each_stmt, listing, prop_name, Expr, PropKind, PropRef, Stmt};
use crate::error::{CompileError, ErrorCode, Pos};
use crate::key_space::{KeySpace, KeyTemplate, TemplateItem};
use crate::lexer::tokenize;
use crate::parser::{is_reserved, Parser, Slots};
use crate::result_tree::{Column, ResultTree};
use crate::schema::{Params, PropDef, Schema, ScriptKind};
use crate::value::{ArithOp, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Options beyond the source, schema and parameters.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Script kind (decides whether `select` / `<<` are allowed).
    pub kind: ScriptKind,
    /// Lines before this script in the request body (sections), so errors
    /// report lines relative to the whole body.
    pub line_offset: u32,
    /// Section name, copied into errors.
    pub section: Option<String>,
}

/// A compiled script, ready to run once per customer. `Send + Sync`: share
/// one program between worker threads.
#[derive(Clone, Debug)]
pub struct Program {
    pub(crate) kind: ScriptKind,
    pub(crate) stmts: Vec<Stmt>,
    pub(crate) columns: Vec<Column>,
    pub(crate) has_select: bool,
    pub(crate) names: Vec<String>,
    pub(crate) param_inits: Vec<(u32, Value)>,
    pub(crate) customer_slots: Vec<(u32, PropDef)>,
    /// The customer slots the script reads or assigns: only these are
    /// loaded before a run and compared after it (loading the others costs
    /// a cache miss per customer for nothing).
    pub(crate) loaded_slots: Vec<(u32, PropDef)>,
    pub(crate) each_value_slot: u32,
    pub(crate) texts: Vec<Arc<str>>,
    pub(crate) event_props: Vec<(Arc<str>, PropRef)>,
    pub(crate) uses_each_value: bool,
    pub(crate) source_lines: Vec<String>,
    pub(crate) line_offset: u32,
    pub(crate) section: Option<String>,
    /// Number of memoized pushes (`Stmt::Push::memo`).
    pub(crate) memo_sites: u32,
    /// Event names (program text indexes) that guard the row scans around
    /// memoized pushes (at most 64; none when there are more).
    pub(crate) memo_events: Vec<u32>,
    /// Per memoized push, a bit per [`Program::memo_events`] entry that
    /// guards a scan around it: a customer with no row of one of those
    /// events can never reach the push.
    pub(crate) memo_requires: Vec<u64>,
    /// An event query whose every push is memoized and which writes no
    /// customer property: once each push fired for a customer, nothing the
    /// rest of the run does can change the result, so the run stops there.
    pub(crate) stop_when_saturated: bool,
    /// The script is only `return(<number expression>)` reading no
    /// variable (see [`Program::quick_number`]), decided once here.
    pub(crate) quick_return: bool,
    /// The program's only push, when it is a text chain its keys can be
    /// interned by (`key_space`): the template and, per varying part, its
    /// operand (evaluated as usual when not read in place).
    pub(crate) key_chain: Option<(KeyTemplate, Vec<Expr>)>,
    /// Variables of the key chain that only ever hold a text property's
    /// value and are read nowhere else: a run keeps the value's dictionary
    /// id for them instead of the text (see [`id_only_vars`]).
    pub(crate) id_only_vars: Vec<u32>,
    /// The loop marked to run with its look-ahead as one (see
    /// [`crate::pair_walk`]).
    pub(crate) pair_walk: Option<crate::pair_walk::PairWalk>,
    /// How pushes count when every column is a plain count (see
    /// [`crate::interp::CountPlan`]).
    pub(crate) count_plan: Option<crate::interp::CountPlan>,
    /// The row data a run can read (drivers prefetch only that).
    pub(crate) row_access: crate::access::RowAccess,
    /// See [`Program::row_loop_names`].
    row_loop_names: Vec<Arc<str>>,
    /// Unique in the process: a `RunState` notices when it is handed
    /// another program and drops what it derived from the last one.
    pub(crate) uid: u64,
}

impl Program {
    /// The `select` columns (the default `count id` when there is no select).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// True when the script had a `select` block.
    pub fn has_select(&self) -> bool {
        self.has_select
    }

    /// The row data a run of this program can read.
    pub fn row_access(&self) -> crate::access::RowAccess {
        self.row_access
    }

    /// The event names whose rows the program's guarded forward row loops
    /// step through (`each_row where event.is(== "x") ...`, any modifiers
    /// but `.reverse()`): a store that lists a name's rows per customer
    /// ([`crate::CustomerView::rows_named`]) spares those loops the search.
    pub fn row_loop_names(&self) -> &[Arc<str>] {
        &self.row_loop_names
    }

    /// The script kind it was compiled for.
    pub fn kind(&self) -> ScriptKind {
        self.kind
    }

    /// True when the script reads `each_value` (histogram `foreach` check).
    pub fn uses_each_value(&self) -> bool {
        self.uses_each_value
    }

    /// An empty result tree for this program's columns.
    pub fn new_tree(&self, segments: usize) -> ResultTree {
        ResultTree::new(&self.columns, segments)
    }

    /// A fresh space for interned push keys, when the program's pushes can
    /// use one: give it to every tree of one query ([`ResultTree::with_key_space`]);
    /// if it [`KeySpace::failed`] afterwards, run the query again without.
    pub fn new_key_space(&self) -> Option<Arc<KeySpace>> {
        self.key_chain
            .as_ref()
            .map(|(t, _)| Arc::new(KeySpace::new(t.clone())))
    }

    /// A readable dump of the compiled program (`debug=true`).
    pub fn debug_listing(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.section {
            out.push_str(&format!("SECTION {s}\n"));
        }
        out.push_str(&format!("KIND {:?}\n", self.kind));
        out.push_str("SELECT\n");
        for c in &self.columns {
            let dedup = match c.dedup {
                crate::result_tree::Dedup::Key(k) => {
                    format!("with {}", prop_name(&k, &self.event_props))
                }
                other => format!("{other:?}"),
            };
            out.push_str(&format!(
                "  {:?} {} as {} dedup {}\n",
                c.agg,
                prop_name(&c.prop, &self.event_props),
                c.alias,
                dedup
            ));
        }
        out.push_str("SLOTS\n");
        for (i, n) in self.names.iter().enumerate() {
            let role = if self.customer_slots.iter().any(|(s, _)| *s as usize == i) {
                " (customer property)"
            } else if self.param_inits.iter().any(|(s, _)| *s as usize == i) {
                " (parameter)"
            } else {
                ""
            };
            out.push_str(&format!("  #{i} {n}{role}\n"));
        }
        if !self.texts.is_empty() {
            out.push_str("TEXT CONSTANTS (compared by dictionary id)\n");
            for (i, t) in self.texts.iter().enumerate() {
                out.push_str(&format!("  ${i} {:?}\n", &**t));
            }
        }
        out.push_str("CODE\n");
        out.push_str(&listing(
            &self.stmts,
            &self.names,
            &self.texts,
            &self.event_props,
        ));
        out
    }

    pub(crate) fn source_line(&self, line: u32) -> String {
        let idx = line.saturating_sub(self.line_offset).saturating_sub(1) as usize;
        self.source_lines
            .get(idx)
            .map_or(String::new(), |l| l.trim().to_string())
    }
}

/// Compiles an event-query script.
pub fn compile(source: &str, schema: &Schema, params: &Params) -> Result<Program, CompileError> {
    compile_with(source, schema, params, &CompileOptions::default())
}

/// Compiles a script of any kind.
pub fn compile_with(
    source: &str,
    schema: &Schema,
    params: &Params,
    opts: &CompileOptions,
) -> Result<Program, CompileError> {
    let lines: Vec<String> = source.lines().map(str::to_string).collect();
    let fix = |mut e: CompileError| {
        let idx = e.line.saturating_sub(1) as usize;
        e.additional = lines
            .get(idx)
            .map_or(String::new(), |l| l.trim().to_string());
        e.line += opts.line_offset;
        e.section = opts.section.clone();
        e
    };
    compile_inner(source, schema, params, opts, &lines).map_err(fix)
}

fn compile_inner(
    source: &str,
    schema: &Schema,
    params: &Params,
    opts: &CompileOptions,
    lines: &[String],
) -> Result<Program, CompileError> {
    let toks = tokenize(source)?;
    let mut slots = Slots {
        names: Vec::new(),
        by_name: HashMap::new(),
        assigned: Vec::new(),
    };
    let add = |slots: &mut Slots, name: &str| -> u32 {
        let s = slots.names.len() as u32;
        slots.names.push(name.to_string());
        slots.assigned.push(true);
        slots.by_name.insert(name.to_string(), s);
        s
    };
    let mut customer_slots = Vec::new();
    for p in schema.props.iter().filter(|p| p.is_customer) {
        if is_reserved(&p.name) {
            continue;
        }
        let s = add(&mut slots, &p.name);
        customer_slots.push((s, p.clone()));
    }
    let mut param_inits = Vec::new();
    for (name, v) in params.iter() {
        if is_reserved(name) || schema.find(name).is_some() {
            continue;
        }
        let s = match slots.by_name.get(name) {
            Some(s) => *s,
            None => add(&mut slots, name),
        };
        param_inits.push((s, v.clone()));
    }
    let each_value_slot = match slots.by_name.get("each_value") {
        Some(s) => *s,
        None => add(&mut slots, "each_value"),
    };
    let parsed =
        Parser::new(toks, schema, params, opts.kind, slots, each_value_slot).parse_script()?;
    // §6.9: a variable read somewhere must be assigned somewhere.
    for (slot, pos) in &parsed.reads {
        if !parsed
            .assigned
            .get(*slot as usize)
            .copied()
            .unwrap_or(false)
        {
            let name = parsed
                .names
                .get(*slot as usize)
                .cloned()
                .unwrap_or_default();
            return Err(CompileError::new(
                ErrorCode::SyntaxError,
                format!("variable: '{name}' is used but never assigned a value"),
                *pos,
            ));
        }
    }
    let event_props = schema
        .props
        .iter()
        .filter(|p| !p.is_customer)
        .map(|p| {
            (
                Arc::from(p.name.as_str()),
                PropRef::User {
                    index: p.index,
                    kind: p.kind,
                    is_set: p.is_set,
                },
            )
        })
        .collect();
    let mut stmts = parsed.stmts;
    let mut row_access = crate::access::RowAccess::of(&stmts, &parsed.columns);
    let quick_return = crate::interp::is_quick_return(&stmts);
    let customer: Vec<u32> = customer_slots.iter().map(|(s, _)| *s).collect();
    let mut memos = PushMemos::default();
    mark_pushes(
        &mut stmts,
        &parsed.columns,
        &customer,
        &mut Vec::new(),
        &mut memos,
    );
    let loaded_slots = customer_slots
        .iter()
        .filter(|(s, _)| parsed.reads.iter().any(|(r, _)| r == s) || memos.written.contains(s))
        .cloned()
        .collect::<Vec<_>>();
    row_access.customer_props = !loaded_slots.is_empty();
    let key_chain = key_chain(&stmts);
    let id_only_vars = match &key_chain {
        Some((t, _)) => {
            let reserved: Vec<u32> = customer
                .iter()
                .copied()
                .chain(param_inits.iter().map(|(s, _)| *s))
                .chain([each_value_slot])
                .collect();
            id_only_vars(&stmts, t, &parsed.reads, &reserved)
        }
        None => Vec::new(),
    };
    let pair_walk = crate::pair_walk::mark(
        &mut stmts,
        key_chain.as_ref().map(|(t, _)| t),
        &id_only_vars,
    );
    row_access.listed_cells =
        stmts.len() == 1 && pair_walk.as_ref().is_some_and(|w| w.outer == w.inner);
    let row_loop_names = stepped_loop_names(&stmts, &parsed.texts);
    Ok(Program {
        pair_walk,
        kind: opts.kind,
        count_plan: crate::interp::CountPlan::of(&parsed.columns),
        stmts,
        columns: parsed.columns,
        has_select: parsed.has_select,
        names: parsed.names,
        param_inits,
        customer_slots,
        loaded_slots,
        each_value_slot,
        texts: parsed.texts,
        event_props,
        uses_each_value: parsed.uses_each_value,
        source_lines: lines.to_vec(),
        line_offset: opts.line_offset,
        section: opts.section.clone(),
        memo_sites: memos.sites,
        memo_events: memos.guard_events(),
        memo_requires: memos.guard_masks(),
        quick_return,
        key_chain,
        id_only_vars,
        stop_when_saturated: opts.kind == ScriptKind::Event
            && memos.sites > 0
            && !memos.unmemoized
            && memos.written.is_empty(),
        row_access,
        row_loop_names,
        uid: {
            static PROGRAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            PROGRAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        },
    })
}

/// The key template of the program's pushes: there must be exactly one
/// push, of one group, a `+` chain of text literals, single-valued text
/// properties and variables (see [`KeyTemplate::of`]). With more pushes,
/// keys of different shapes would share levels.
fn key_chain(stmts: &[Stmt]) -> Option<(KeyTemplate, Vec<Expr>)> {
    let mut all = Vec::new();
    each_stmt(stmts, &mut |s| {
        if let Stmt::Push { groups, .. } = s {
            all.push(&groups[..]);
        }
    });
    let [[chain @ Expr::Arith(ArithOp::Add, ..)]] = all[..] else {
        return None;
    };
    let mut rights = Vec::new();
    let mut cur = chain;
    while let Expr::Arith(ArithOp::Add, l, r, _) = cur {
        rights.push(&**r);
        cur = l;
    }
    rights.push(cur);
    rights.reverse();
    let mut items = Vec::with_capacity(rights.len());
    let mut varying = Vec::new();
    for e in rights {
        items.push(match e {
            Expr::Lit(Value::Text(t)) => TemplateItem::Lit(t.clone()),
            Expr::Prop(PropRef::User {
                index,
                kind: PropKind::Text,
                is_set: false,
            }) => TemplateItem::Prop(*index),
            Expr::Var(slot) => TemplateItem::Var(*slot),
            _ => return None,
        });
        if !matches!(e, Expr::Lit(_)) {
            varying.push(e.clone());
        }
    }
    KeyTemplate::of(items).map(|t| (t, varying))
}

/// The key chain's variables whose text a run never needs: each is read
/// only by the chain and assigned only by plain `v = text_property`
/// statements, and is no parameter, customer property or `each_value`.
/// A run then notes the property value's dictionary id and leaves the
/// variable nil (no shared text, no reference count), and the chain
/// numbers the id; a nil or missing value reads as the variable would.
fn id_only_vars(
    stmts: &[Stmt],
    template: &KeyTemplate,
    reads: &[(u32, Pos)],
    reserved: &[u32],
) -> Vec<u32> {
    // Every write of the slot is `slot = text_property` (a `for` over it
    // writes too).
    let writes_only_props = |slot: u32| {
        let mut only = true;
        each_stmt(stmts, &mut |s| match s {
            Stmt::Assign {
                target, op, value, ..
            } if target.slot == slot => {
                only &= op.is_none()
                    && target.path.is_empty()
                    && matches!(
                        value,
                        Expr::Prop(PropRef::User {
                            kind: PropKind::Text,
                            is_set: false,
                            ..
                        })
                    );
            }
            Stmt::For { var, .. } if *var == slot => only = false,
            _ => {}
        });
        only
    };
    let mut out = Vec::new();
    for item in &template.items {
        let TemplateItem::Var(slot) = item else {
            continue;
        };
        let in_chain = template
            .items
            .iter()
            .filter(|i| **i == TemplateItem::Var(*slot))
            .count();
        let read = reads.iter().filter(|(r, _)| r == slot).count();
        if read == in_chain
            && !reserved.contains(slot)
            && !out.contains(slot)
            && writes_only_props(*slot)
        {
            out.push(*slot);
        }
    }
    out
}

/// What [`mark_pushes`] found.
#[derive(Default)]
struct PushMemos {
    sites: u32,
    /// Pushes of literal groups (`Stmt::Push::literal`).
    literal_sites: u32,
    /// Per site, the guard events of the scans around it.
    requires: Vec<Vec<u32>>,
    unmemoized: bool,
    /// Customer slots assigned anywhere.
    written: Vec<u32>,
}

impl PushMemos {
    /// The distinct guard events of all sites, in first-seen order (none
    /// beyond 64, or when no site has one).
    fn guard_events(&self) -> Vec<u32> {
        let mut events: Vec<u32> = Vec::new();
        for &t in self.requires.iter().flatten() {
            if !events.contains(&t) {
                events.push(t);
            }
        }
        if events.len() > 64 {
            events.clear();
        }
        events
    }

    /// Per site, its guard events as bits over [`PushMemos::guard_events`].
    fn guard_masks(&self) -> Vec<u64> {
        let events = self.guard_events();
        if events.is_empty() {
            return Vec::new();
        }
        self.requires
            .iter()
            .map(|r| {
                r.iter()
                    .filter_map(|t| events.iter().position(|e| e == t))
                    .fold(0u64, |mask, bit| mask | 1 << bit)
            })
            .collect()
    }
}

/// Numbers every push whose groups are literals when every column counts
/// once per customer: after its first time in a run, repeating it changes
/// nothing (the per-node customer de-duplication drops it), so the
/// interpreter skips it. Also notes whether all pushes are such, which
/// customer properties are assigned, and for each numbered push the
/// `guards` (event-name texts) of the row scans around it.
fn mark_pushes(
    stmts: &mut [Stmt],
    columns: &[Column],
    customer: &[u32],
    guards: &mut Vec<u32>,
    m: &mut PushMemos,
) {
    use crate::result_tree::Dedup;
    let per_customer = columns.iter().all(|c| c.dedup == Dedup::Customer);
    for s in stmts {
        match s {
            Stmt::Push {
                groups,
                memo,
                literal,
                ..
            } => {
                let constant = groups.iter().all(|g| matches!(g, Expr::Lit(_)));
                if constant {
                    *literal = Some(m.literal_sites);
                    m.literal_sites += 1;
                }
                if per_customer && constant {
                    *memo = Some(m.sites);
                    m.sites += 1;
                    m.requires.push(guards.clone());
                } else {
                    m.unmemoized = true;
                }
            }
            Stmt::Assign { target, .. } => {
                if customer.contains(&target.slot) {
                    m.written.push(target.slot);
                }
            }
            Stmt::If { arms, otherwise } => {
                for (_, body) in arms.iter_mut() {
                    mark_pushes(body, columns, customer, guards, m);
                }
                if let Some(body) = otherwise {
                    mark_pushes(body, columns, customer, guards, m);
                }
            }
            Stmt::For { var, body, .. } => {
                if customer.contains(var) {
                    m.written.push(*var);
                }
                mark_pushes(body, columns, customer, guards, m);
            }
            Stmt::EachRow { plan, body, .. } => {
                // The body runs only on rows named by the guard, if any.
                let guard = plan.guard;
                guards.extend(guard);
                mark_pushes(body, columns, customer, guards, m);
                if guard.is_some() {
                    guards.pop();
                }
            }
            Stmt::Break(..) | Stmt::Continue | Stmt::Exit | Stmt::Return(_) | Stmt::Expr(_) => {}
        }
    }
}

/// The texts of the event names guarding forward row loops: the
/// interpreter steps through their rows where the store lists them.
fn stepped_loop_names(stmts: &[Stmt], texts: &[Arc<str>]) -> Vec<Arc<str>> {
    let mut names: Vec<Arc<str>> = Vec::new();
    each_stmt(stmts, &mut |s| {
        if let Stmt::EachRow { plan, mods, .. } = s {
            // Forward loops guarded by a name step from one row of it to
            // the next (`Interp::rows_named`, `Interp::scan_in`).
            let stepped = !mods.reverse;
            let text = plan.guard.and_then(|i| texts.get(i as usize));
            if let (true, Some(t)) = (stepped, text) {
                if !names.contains(t) {
                    names.push(t.clone());
                }
            }
        }
    });
    names
}

/// Textual `{{name}}` substitution (rest spec 5.1): each reference is
/// replaced by the parameter's value written as an OSL literal. `{{` inside
/// string literals and comments is left alone.
pub fn substitute_templates(source: &str, params: &Params) -> Result<String, CompileError> {
    let mut out = String::with_capacity(source.len());
    let chars: Vec<char> = source.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let mut quote: Option<char> = None;
    let mut comment = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            comment = false;
        }
        if !comment && quote.is_none() && c == '{' && chars.get(i + 1) == Some(&'{') {
            if let Some(end) = (i + 2..chars.len().saturating_sub(1))
                .find(|&k| chars[k] == '}' && chars[k + 1] == '}')
            {
                let name: String = chars[i + 2..end]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string();
                let pos = Pos { line, col };
                let v = params.get(&name).ok_or_else(|| {
                    let mut e = CompileError::new(
                        ErrorCode::TemplateMissingVar,
                        format!("missing template variable '{name}'"),
                        pos,
                    );
                    e.additional = source
                        .lines()
                        .nth(line as usize - 1)
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    e
                })?;
                out.push_str(&v.to_literal());
                col += (end + 2 - i) as u32;
                i = end + 2;
                continue;
            }
        }
        match (quote, c) {
            (None, '#') => comment = true,
            (None, '"' | '\'') if !comment => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (Some(_), '\\') => {
                out.push(c);
                i += 1;
                col += 1;
                if let Some(n) = chars.get(i) {
                    out.push(*n);
                    i += 1;
                    col += 1;
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
        i += 1;
    }
    Ok(out)
}

/// The type of an `@` section (§3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// `@segment`
    Segment,
    /// `@use`
    Use,
    /// `@property`
    Property,
    /// `@histogram`
    Histogram,
}

/// One `@` section of a segment or batch body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Type.
    pub kind: SectionKind,
    /// Name (first word after the type).
    pub name: String,
    /// Further words: `@use` segment names, or `key=value` flags (a bare
    /// `key` has value `"true"`). Quotes around values are removed.
    pub flags: Vec<(String, String)>,
    /// The script lines (header excluded).
    pub body: String,
    /// 1-based line of the header; the body starts on the next line. Pass
    /// it as `CompileOptions::line_offset` when compiling `body`.
    pub header_line: u32,
}

/// Splits a sectioned body into sections (§3.4).
pub fn parse_sections(source: &str) -> Result<Vec<Section>, CompileError> {
    let mut out: Vec<Section> = Vec::new();
    for (k, raw) in source.lines().enumerate() {
        let line_no = k as u32 + 1;
        let t = raw.trim();
        if let Some(header) = t.strip_prefix('@') {
            let header = strip_comment(header);
            let mut words = header.split_whitespace();
            let ty = words.next().unwrap_or("");
            let kind = match ty {
                "segment" => SectionKind::Segment,
                "use" => SectionKind::Use,
                "property" => SectionKind::Property,
                "histogram" => SectionKind::Histogram,
                _ => {
                    let mut e = CompileError::new(
                        ErrorCode::SyntaxError,
                        format!("unknown section type '@{ty}'"),
                        Pos {
                            line: line_no,
                            col: 1,
                        },
                    );
                    e.additional = t.to_string();
                    return Err(e);
                }
            };
            let name = words.next().unwrap_or("").to_string();
            if name.is_empty() && kind != SectionKind::Use {
                let mut e = CompileError::new(
                    ErrorCode::SyntaxError,
                    format!("section '@{ty}' requires a name"),
                    Pos {
                        line: line_no,
                        col: 1,
                    },
                );
                e.additional = t.to_string();
                return Err(e);
            }
            let flags = words
                .map(|w| match w.split_once('=') {
                    Some((key, v)) => (key.to_string(), v.trim_matches(['"', '\'']).to_string()),
                    None => (w.to_string(), "true".to_string()),
                })
                .collect();
            out.push(Section {
                kind,
                name,
                flags,
                body: String::new(),
                header_line: line_no,
            });
        } else if let Some(cur) = out.last_mut() {
            cur.body.push_str(raw);
            cur.body.push('\n');
        } else if !t.is_empty() && !t.starts_with('#') {
            let mut e = CompileError::new(
                ErrorCode::SyntaxError,
                "code outside of a section",
                Pos {
                    line: line_no,
                    col: (raw.chars().take_while(|c| c.is_whitespace()).count() + 1) as u32,
                },
            );
            e.additional = t.to_string();
            return Err(e);
        }
    }
    Ok(out)
}

fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '#') => return &s[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            _ => {}
        }
    }
    s
}

/// Parses a header duration (§11.2): bare seconds, `s/m/h/d` suffix, or a
/// time-span literal. Returns milliseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    if let Some(ms) = crate::lexer::parse_span(t) {
        return Some(ms);
    }
    let (last, _) = t.char_indices().last()?;
    let (num, unit) = t.split_at(last);
    let n: i64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// True when `name` may be a script parameter (`str_<name>=`...): a valid
/// identifier that is neither reserved nor a table property (§3.3).
pub fn is_valid_param_name(name: &str, schema: &Schema) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_reserved(name)
        && !matches!(name, "stamp" | "event" | "id" | "session")
        && schema.find(name).is_none()
}

/// Header flags of an `@segment` section (§11.2, rest spec 5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFlags {
    /// `refresh=`, ms.
    pub refresh: Option<i64>,
    /// `ttl=`, ms.
    pub ttl: Option<i64>,
    /// `use_cached`
    pub use_cached: bool,
    /// `on_insert`
    pub on_insert: bool,
    /// `z_index=` (default 100; lower evaluates first).
    pub z_index: i64,
}

impl Default for SegmentFlags {
    fn default() -> Self {
        SegmentFlags {
            refresh: None,
            ttl: None,
            use_cached: false,
            on_insert: false,
            z_index: 100,
        }
    }
}

fn flag_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.chars().next() {
        Some('t' | 'T' | '1') => Ok(true),
        Some('f' | 'F' | '0') => Ok(false),
        _ => Err(format!("flag '{key}' expects true or false, got '{v}'")),
    }
}

impl SegmentFlags {
    /// Reads the flags of a section; unknown or repeated flags and bad
    /// values are errors (the message is the request error detail).
    pub fn parse(flags: &[(String, String)]) -> Result<SegmentFlags, String> {
        let mut out = SegmentFlags::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in flags {
            if seen.contains(&k.as_str()) {
                return Err(format!("flag '{k}' given more than once"));
            }
            seen.push(k);
            match k.as_str() {
                "refresh" => {
                    out.refresh = Some(
                        parse_duration(v)
                            .ok_or_else(|| format!("invalid duration '{v}' for 'refresh'"))?,
                    )
                }
                "ttl" => {
                    out.ttl = Some(
                        parse_duration(v)
                            .ok_or_else(|| format!("invalid duration '{v}' for 'ttl'"))?,
                    )
                }
                "use_cached" => out.use_cached = flag_bool(k, v)?,
                "on_insert" => out.on_insert = flag_bool(k, v)?,
                "z_index" => {
                    out.z_index = v
                        .parse()
                        .map_err(|_| format!("invalid integer '{v}' for 'z_index'"))?
                }
                _ => return Err(format!("unknown segment flag '{k}'")),
            }
        }
        Ok(out)
    }
}
