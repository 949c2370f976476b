//! Which parts of a customer's rows a program can read, worked out from
//! its statements once at compile time. Drivers use it to prefetch only
//! what a run will touch: a scan over customers is bound by cache misses,
//! and loading rows a script never reads (`return(row_count)`, a segment
//! over customer properties) costs more than the run itself.

use crate::ast::{Expr, InlineAgg, IterMods, PropFilter, PropRef, Stmt, TimeScope};
use crate::functions::Func;
use crate::result_tree::{Column, Dedup};

/// The row data a program may read (a conservative over-estimate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowAccess {
    /// The first stamp (`first_stamp`).
    pub first_stamp: bool,
    /// The last stamp (`last_stamp`, `session_count`'s end).
    pub last_stamp: bool,
    /// Every stamp (`session_count`).
    pub stamps: bool,
    /// Rows at the cursor or in scans: stamps, event names and properties.
    pub rows: bool,
    /// Of the rows, their event properties (cells) too, not only stamps,
    /// event names and sessions.
    pub cells: bool,
    /// Customer properties (loaded before every run).
    pub customer_props: bool,
    /// The customer id (`id` in an expression).
    pub id: bool,
    /// Some row scan or filter has a time scope: it reads the stamps of
    /// the rows it passes.
    pub scoped: bool,
    /// The program is one pair walk over the rows of one event
    /// (`crate::pair_walk`): where the store lists that event's rows, the
    /// run reads nothing of the rows but the cells of those rows.
    pub listed_cells: bool,
}

impl RowAccess {
    /// Nothing of the rows is read (the row count is not a row read).
    pub fn is_none(&self) -> bool {
        *self == RowAccess::default()
    }

    pub(crate) fn of(stmts: &[Stmt], columns: &[Column]) -> RowAccess {
        let mut a = RowAccess::default();
        a.stmts(stmts, columns);
        a
    }

    fn stmts(&mut self, stmts: &[Stmt], columns: &[Column]) {
        for s in stmts {
            match s {
                Stmt::Assign { target, value, .. } => {
                    self.expr(value);
                    target.path.iter().for_each(|e| self.expr(e));
                }
                Stmt::If { arms, otherwise } => {
                    for (cond, body) in arms {
                        self.expr(cond);
                        self.stmts(body, columns);
                    }
                    if let Some(body) = otherwise {
                        self.stmts(body, columns);
                    }
                }
                Stmt::For { src, body, .. } => {
                    self.expr(src);
                    self.stmts(body, columns);
                }
                Stmt::EachRow {
                    mods, cond, body, ..
                } => {
                    self.rows = true;
                    self.mods(mods);
                    if let Some(c) = cond {
                        self.expr(c);
                    }
                    self.stmts(body, columns);
                }
                Stmt::Push { groups, .. } => {
                    groups.iter().for_each(|e| self.expr(e));
                    // Columns read the cursor row unless they only count
                    // the customer.
                    let customer_only = columns.iter().all(|c| {
                        matches!(c.prop, crate::ast::PropRef::Id)
                            && matches!(c.dedup, Dedup::Customer | Dedup::All)
                    });
                    if !customer_only {
                        self.rows = true;
                    }
                    if columns.iter().any(|c| {
                        matches!(c.prop, PropRef::User { .. })
                            || matches!(c.dedup, Dedup::Key(PropRef::User { .. }))
                    }) {
                        self.cells = true;
                    }
                }
                Stmt::Break(d, _) => {
                    if let crate::ast::BreakDepth::Computed(e, _) = d {
                        self.expr(e);
                    }
                }
                Stmt::Return(Some(e)) | Stmt::Expr(e) => self.expr(e),
                Stmt::Return(None) | Stmt::Continue | Stmt::Exit => {}
            }
        }
    }

    fn mods(&mut self, m: &IterMods) {
        if let Some(e) = &m.from {
            self.expr(e);
        }
        if let Some(e) = &m.limit {
            self.expr(e);
        }
        self.scope(&m.scope);
    }

    fn scope(&mut self, s: &TimeScope) {
        self.scoped |= s.is_some();
        if let Some((a, b)) = &s.range {
            self.expr(a);
            self.expr(b);
        }
        if let Some((_, w, a)) = &s.window {
            self.expr(w);
            self.expr(a);
        }
    }

    fn filter(&mut self, f: &PropFilter) {
        self.rows = true;
        self.prop(f.prop);
        self.expr(&f.rhs);
        self.scope(&f.scope);
    }

    fn prop(&mut self, p: PropRef) {
        if matches!(p, PropRef::User { .. }) {
            self.cells = true;
        }
    }

    fn agg(&mut self, a: &InlineAgg) {
        self.rows = true;
        self.mods(&a.mods);
        if let Some(e) = &a.value {
            self.expr(e);
        }
        if let Some(e) = &a.cond {
            self.expr(e);
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Lit(_) | Expr::Var(_) => {}
            Expr::Prop(p) => {
                // The id is the customer's, not a row's.
                if matches!(p, PropRef::Id) {
                    self.id = true;
                } else {
                    self.rows = true;
                    self.prop(*p);
                }
            }
            Expr::Filter(f) => self.filter(f),
            Expr::Neg(x, _) | Expr::Not(x) => self.expr(x),
            Expr::Arith(_, a, b, _)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Index(a, b) => {
                self.expr(a);
                self.expr(b);
            }
            Expr::List(items) => items.iter().for_each(|x| self.expr(x)),
            Expr::Dict(items) => items.iter().for_each(|(_, x)| self.expr(x)),
            Expr::Call(f, args, _) => {
                match f {
                    Func::FirstStamp => self.first_stamp = true,
                    Func::LastStamp => self.last_stamp = true,
                    Func::SessionCount => self.stamps = true,
                    Func::GetRow => {
                        self.rows = true;
                        self.cells = true;
                        self.id = true;
                    }
                    _ => {}
                }
                args.iter().for_each(|x| self.expr(x));
            }
            Expr::Agg(a, _) => self.agg(a),
        }
    }
}
