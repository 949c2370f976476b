//! The event query (rest spec 5.2): compile once, run the program for every
//! customer of every partition in parallel, merge the partial trees.

use crate::view::osl_schema;
use crate::{Answer, QueryError};
use osl::prefilter::{IndexProp, Prefilter};
use osl::{
    CompileOptions, Params, Program, RenderOptions, ResultTree, RunContext, RunOutcome, SortBy,
    StoredValue,
};
use roaring::RoaringBitmap;
use std::borrow::Cow;
use store::codec::ScalarRef;
use store::index::EVENT_PROP;
use store::partition::TablePartition;
use store::Db;

/// What the request asks beyond the script.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Script parameters (`str_`, `int_`, ...), typed.
    pub params: Params,
    /// `sort=`: a select alias, or `group`.
    pub sort: Option<String>,
    /// `order=desc` (default) or `asc`.
    pub descending: bool,
    /// `trim=`: keep the first N of every list.
    pub trim: Option<usize>,
    /// `session_time=`, ms; the table's setting when absent.
    pub session_time: Option<i64>,
    /// `stamp_counts=true`.
    pub stamp_counts: bool,
    /// `now` for the whole request, epoch ms.
    pub now: i64,
    /// Skip customers the index proves cannot match (OSL spec 11.4);
    /// off only to test that it changes nothing.
    pub prefilter: bool,
    /// `segments=`: one count column set per selection (empty: everyone).
    pub segments: Vec<Selection>,
}

/// Compiles `source` against `table` (after `{{name}}` substitution).
pub fn compile(db: &Db, table: &str, source: &str, params: &Params) -> Result<Program, QueryError> {
    let schema = db.table(table)?;
    let text = osl::substitute_templates(source, params).map_err(QueryError::Compile)?;
    osl::compile_with(
        &text,
        &osl_schema(&schema),
        params,
        &CompileOptions::default(),
    )
    .map_err(QueryError::Compile)
}

/// Runs an event query; with `debug` only compiles and lists the program.
pub fn event_query(
    db: &Db,
    table: &str,
    source: &str,
    q: &EventQuery,
    debug: bool,
) -> Result<Answer, QueryError> {
    let program = compile(db, table, source, &q.params)?;
    if debug {
        return Ok(Answer::Listing(program.debug_listing()));
    }
    let sort = match q.sort.as_deref() {
        None => SortBy::Default,
        Some("group") => SortBy::Group,
        Some(alias) => SortBy::Column(
            program
                .columns()
                .iter()
                .position(|c| c.alias == alias)
                .ok_or_else(|| QueryError::BadSort(alias.to_string()))?,
        ),
    };
    let schema = db.table(table)?;
    let ctx = RunContext {
        now: q.now,
        session_time: q.session_time.unwrap_or(schema.settings.session_time),
        stamp_counts: q.stamp_counts,
        ..RunContext::default()
    };
    let tree = run_all(db, table, &program, &ctx, q.prefilter, &q.segments)?;
    let opts = RenderOptions {
        sort,
        descending: q.descending,
        trim: q.trim,
    };
    Ok(Answer::Tree(tree.render(&opts)))
}

/// Customers of a partition that can satisfy the pre-filter: for every
/// clause, those having at least one of its (property, value) atoms.
pub fn candidates(pf: &Prefilter, tp: &TablePartition) -> RoaringBitmap {
    let mut out: Option<RoaringBitmap> = None;
    for clause in &pf.clauses {
        let mut any = RoaringBitmap::new();
        for atom in clause {
            let prop = match atom.prop {
                IndexProp::Event => EVENT_PROP,
                IndexProp::Prop(p) => p,
            };
            // A text the dictionary lacks: no customer of this partition has it.
            if let Some(b) = atom
                .encode(|t| tp.dict.lookup(t))
                .and_then(|v| tp.index.customers(prop, v))
            {
                any |= b;
            }
        }
        out = Some(match out {
            Some(acc) => acc & any,
            None => any,
        });
    }
    out.unwrap_or_else(|| (0..tp.customers.len() as u32).collect())
}

/// Customer-property writes of one run, ready for the store.
pub(crate) type Writes = Vec<store::db::CustomerWrites<'static>>;

/// Adds a run's customer-property writes to `into` (shared with other query kinds).
pub(crate) fn collect_writes(
    c: &store::partition::Customer,
    outcome: RunOutcome,
    into: &mut Writes,
) {
    if outcome.writes.is_empty() {
        return;
    }
    let props = outcome
        .writes
        .into_iter()
        .map(|w| {
            let values = w
                .values
                .into_iter()
                .map(|v| match v {
                    StoredValue::Num(n) => ScalarRef::Num(n),
                    StoredValue::Text(t) => ScalarRef::Text(Cow::Owned(t)),
                })
                .collect();
            (w.prop, values)
        })
        .collect();
    into.push((c.key.clone(), props));
}

/// Which customers a query runs over: everyone (`*`) or a stored segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every customer.
    Everyone,
    /// The members of this segment.
    Segment(String),
}

/// The customers of one table partition to run for one selection: the
/// selection's members, narrowed by the pre-filter's candidates. `None`
/// means every customer.
pub fn selected(
    tp: &TablePartition,
    sel: &Selection,
    candidates: Option<&RoaringBitmap>,
) -> Option<RoaringBitmap> {
    let base = match sel {
        Selection::Everyone => None,
        Selection::Segment(name) => Some(tp.segments.get(name).cloned().unwrap_or_default()),
    };
    match (base, candidates) {
        (None, None) => None,
        (Some(b), None) => Some(b),
        (None, Some(c)) => Some(c.clone()),
        (Some(b), Some(c)) => Some(b & c),
    }
}

/// Runs `program` over the customers of `table`, partitions in parallel,
/// once per selection (segment-compare mode: selection `i` fills `c{i+1}`),
/// and returns the merged tree. The first runtime error aborts everything
/// (and nothing is written); otherwise customer-property writes of the runs
/// are committed through the log before the answer.
///
/// A program whose push can file its keys by number (`osl::key_space`)
/// runs with a key space first; if a text turns out to make those keys
/// ambiguous, that attempt (and its writes) is dropped and the query runs
/// again with text keys.
pub fn run_all(
    db: &Db,
    table: &str,
    program: &Program,
    ctx: &RunContext,
    prefilter: bool,
    selections: &[Selection],
) -> Result<ResultTree, QueryError> {
    let base = program.new_tree(selections.len().max(1));
    if let Some(space) = program.new_key_space() {
        let (tree, writes) = run_into(
            db,
            table,
            program,
            ctx,
            prefilter,
            selections,
            base.empty_like().with_key_space(space.clone()),
        )?;
        if !space.failed() {
            return commit(db, table, tree, writes);
        }
    }
    let (tree, writes) = run_into(db, table, program, ctx, prefilter, selections, base)?;
    commit(db, table, tree, writes)
}

/// Writes a query's customer-property writes, then hands back its tree.
fn commit(
    db: &Db,
    table: &str,
    tree: ResultTree,
    writes: Writes,
) -> Result<ResultTree, QueryError> {
    crate::control::may_write(!writes.is_empty())?;
    db.write_customer_properties(table, &writes)?;
    Ok(tree)
}

/// [`run_all`]'s runs into trees like `empty`, merged; writes not done.
fn run_into(
    db: &Db,
    table: &str,
    program: &Program,
    ctx: &RunContext,
    prefilter: bool,
    selections: &[Selection],
    empty: ResultTree,
) -> Result<(ResultTree, Writes), QueryError> {
    let everyone = [Selection::Everyone];
    let selections = if selections.is_empty() {
        &everyone[..]
    } else {
        selections
    };
    let schema = db.table(table)?;
    let prefilter = if prefilter { program.prefilter() } else { None };
    let mut results = crate::parallel::for_each_partition(
        db.engine()?,
        schema.uid,
        || (empty.empty_like(), Writes::new()),
        |(tree, writes), _, tp| {
            let mut state = program.new_state();
            let cands = prefilter.as_ref().map(|pf| candidates(pf, tp));
            for (i, sel) in selections.iter().enumerate() {
                let ctx = RunContext {
                    segment: i,
                    ..ctx.clone()
                };
                let chosen = selected(tp, sel, cands.as_ref());
                let visiting = chosen
                    .as_ref()
                    .map_or(tp.customers.len(), |c| c.len() as usize);
                let name_rows = crate::view::stepped_names(tp, program, visiting);
                crate::view::for_each_customer::<QueryError>(
                    tp,
                    chosen.as_ref(),
                    program.row_access(),
                    ctx.session_time,
                    &name_rows,
                    |view| {
                        let outcome = program
                            .run(&view, &ctx, &mut state, tree)
                            .map_err(QueryError::Runtime)?;
                        collect_writes(view.customer, outcome, writes);
                        Ok(())
                    },
                )?;
            }
            Ok(())
        },
    )?;
    let mut merged = empty;
    let mut all_writes = Writes::new();
    // The biggest tree first: its arenas move into the empty one as they are.
    results.sort_by_key(|(t, _)| std::cmp::Reverse(t.node_count()));
    for (t, w) in results {
        merged.merge(t);
        all_writes.extend(w);
    }
    Ok((merged, all_writes))
}
