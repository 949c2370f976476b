//! The syntax tree of a script, with names already resolved (properties to
//! schema indexes, variables to slots, functions to [`Func`]). This tree is
//! also the executable form: see `compile.rs` for why.

use crate::error::Pos;
use crate::functions::Func;
use crate::value::{ArithOp, CmpOp, Value};
use std::fmt::Write;

/// Type of a table property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PropKind {
    /// i64.
    Int,
    /// Fixed point i64 scaled by 10,000.
    Double,
    /// 0/1.
    Bool,
    /// Dictionary id.
    Text,
}

/// A reference to an event property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropRef {
    /// `stamp`
    Stamp,
    /// `event`
    Event,
    /// `id`
    Id,
    /// `session`
    Session,
    /// A user event property.
    User {
        /// Schema index.
        index: u32,
        /// Type.
        kind: PropKind,
        /// Holds a set.
        is_set: bool,
    },
}

impl PropRef {
    /// True for set-valued properties.
    pub fn is_set(&self) -> bool {
        matches!(self, PropRef::User { is_set: true, .. })
    }
}

/// Which of `.is/.is_not/.ever/.never` a filter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// `.is` (alias `.row`)
    Is,
    /// `.is_not`
    IsNot,
    /// `.ever`
    Ever,
    /// `.never`
    Never,
}

/// A time window modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// `.within(w, a)`: a-w ..= a+w
    Within,
    /// `.look_ahead(w, a)`: a ..= a+w
    LookAhead,
    /// `.look_back(w, a)`: a-w ..= a
    LookBack,
}

/// Time scope of a property filter or iterator.
#[derive(Clone, Debug, Default)]
pub struct TimeScope {
    /// `.range(start, end)`
    pub range: Option<(Expr, Expr)>,
    /// `.within/.look_ahead/.look_back(width, anchor)`
    pub window: Option<(WindowKind, Expr, Expr)>,
}

impl TimeScope {
    /// True when a range or window was given.
    pub fn is_some(&self) -> bool {
        self.range.is_some() || self.window.is_some()
    }
}

/// `p.is(cmp e)` and friends.
#[derive(Clone, Debug)]
pub struct PropFilter {
    /// The property.
    pub prop: PropRef,
    /// Filter kind.
    pub mode: FilterMode,
    /// Comparator.
    pub cmp: CmpOp,
    /// Right-hand side (evaluated at each visited row).
    pub rhs: Expr,
    /// Time scope (ever/never only).
    pub scope: TimeScope,
    /// `.next()`
    pub next: bool,
    /// Fast path: the rhs is this text constant (index into the program's
    /// text table), so rows compare dictionary ids.
    pub text_const: Option<u32>,
}

/// Modifiers of `each_row` and inline aggregations.
#[derive(Clone, Debug, Default)]
pub struct IterMods {
    /// `.reverse()`
    pub reverse: bool,
    /// `.continue()`
    pub cont: bool,
    /// `.next()`
    pub next: bool,
    /// `.from(n)`
    pub from: Option<Expr>,
    /// `.limit(n)`
    pub limit: Option<Expr>,
    /// range / window
    pub scope: TimeScope,
}

/// Inline aggregation kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `sum(v)`
    Sum,
    /// `avg(v)`
    Avg,
    /// `min(v)`
    Min,
    /// `max(v)`
    Max,
    /// `count(v)`
    Count,
    /// `dcount(v)`
    DCount,
    /// `test`
    Test,
    /// `row`
    Row,
}

impl AggKind {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Sum => "sum",
            AggKind::Avg => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::Count => "count",
            AggKind::DCount => "dcount",
            AggKind::Test => "test",
            AggKind::Row => "row",
        }
    }
}

/// An inline aggregation or search.
#[derive(Clone, Debug)]
pub struct InlineAgg {
    /// Kind.
    pub kind: AggKind,
    /// Value expression (none for test/row).
    pub value: Option<Expr>,
    /// Modifiers.
    pub mods: IterMods,
    /// `where` condition.
    pub cond: Option<Expr>,
}

/// An expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A variable slot (user variable, parameter or customer property).
    Var(u32),
    /// An event property read at the cursor row.
    Prop(PropRef),
    /// A property filter.
    Filter(Box<PropFilter>),
    /// Unary minus.
    Neg(Box<Expr>, Pos),
    /// `!x` / `not x`
    Not(Box<Expr>),
    /// `+ - * /`
    Arith(ArithOp, Box<Expr>, Box<Expr>, Pos),
    /// Comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `&&`
    And(Box<Expr>, Box<Expr>),
    /// `||`
    Or(Box<Expr>, Box<Expr>),
    /// `x[k]`
    Index(Box<Expr>, Box<Expr>),
    /// `[a, b]`
    List(Vec<Expr>),
    /// `{k: v}`
    Dict(Vec<(Value, Expr)>),
    /// Built-in call.
    Call(Func, Vec<Expr>, Pos),
    /// Inline aggregation.
    Agg(Box<InlineAgg>, Pos),
}

/// How many loops a `break` leaves.
#[derive(Clone, Debug)]
pub enum BreakDepth {
    /// Known at compile time (0 = no effect).
    Fixed(u32),
    /// Computed; checked at run time against the nesting.
    Computed(Expr, u32),
}

/// An assignment target: a slot with optional subscripts.
#[derive(Clone, Debug)]
pub struct Target {
    /// Variable slot.
    pub slot: u32,
    /// Subscript path.
    pub path: Vec<Expr>,
}

/// A statement.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `t = e`, `t += e`, ...
    Assign {
        /// Target.
        target: Target,
        /// Compound operator.
        op: Option<ArithOp>,
        /// Right side.
        value: Expr,
        /// Position of the statement.
        pos: Pos,
    },
    /// `if/elif/else`
    If {
        /// Conditions and bodies.
        arms: Vec<(Expr, Vec<Stmt>)>,
        /// `else` body.
        otherwise: Option<Vec<Stmt>>,
    },
    /// `for v in e`
    For {
        /// Loop variable slot.
        var: u32,
        /// Source.
        src: Expr,
        /// Body.
        body: Vec<Stmt>,
        /// Position of the source expression.
        pos: Pos,
    },
    /// `each_row`
    EachRow {
        /// Modifiers.
        mods: Box<IterMods>,
        /// How the loop runs, read off its modifiers and condition.
        plan: LoopPlan,
        /// `where` condition.
        cond: Option<Expr>,
        /// Body.
        body: Vec<Stmt>,
        /// Position.
        pos: Pos,
    },
    /// `<< groups`
    Push {
        /// Group expressions.
        groups: Vec<Expr>,
        /// Position.
        pos: Pos,
        /// Set by the compiler when repeating this push within one customer
        /// run can never change the result (constant groups, every column
        /// counted once per customer): the push's index among such pushes.
        memo: Option<u32>,
        /// Set by the compiler when every group is a literal: the push's
        /// index among such pushes. A run state keeps the path of keys it
        /// builds and the nodes that path leads to, so later pushes only
        /// count there (memoized pushes are such pushes).
        literal: Option<u32>,
    },
    /// `break`
    Break(BreakDepth, Pos),
    /// `continue`
    Continue,
    /// `exit`
    Exit,
    /// `return(e)`
    Return(Option<Expr>),
    /// An expression statement.
    Expr(Expr),
}

/// Calls `f` on every statement, those in bodies (`if`, `for`,
/// `each_row`) included, each before its body's.
pub fn each_stmt<'a>(stmts: &'a [Stmt], f: &mut impl FnMut(&'a Stmt)) {
    for s in stmts {
        f(s);
        match s {
            Stmt::If { arms, otherwise } => {
                for (_, body) in arms {
                    each_stmt(body, f);
                }
                if let Some(body) = otherwise {
                    each_stmt(body, f);
                }
            }
            Stmt::For { body, .. } | Stmt::EachRow { body, .. } => each_stmt(body, f),
            _ => {}
        }
    }
}

/// [`each_stmt`] with each statement handed over mutably.
pub fn each_stmt_mut(stmts: &mut [Stmt], f: &mut impl FnMut(&mut Stmt)) {
    for s in stmts {
        f(s);
        match s {
            Stmt::If { arms, otherwise } => {
                for (_, body) in arms {
                    each_stmt_mut(body, f);
                }
                if let Some(body) = otherwise {
                    each_stmt_mut(body, f);
                }
            }
            Stmt::For { body, .. } | Stmt::EachRow { body, .. } => each_stmt_mut(body, f),
            _ => {}
        }
    }
}

/// Renders statements as an indented, readable listing.
pub fn listing(
    stmts: &[Stmt],
    names: &[String],
    texts: &[std::sync::Arc<str>],
    props: &[(std::sync::Arc<str>, PropRef)],
) -> String {
    let mut out = String::new();
    let l = Lister {
        names,
        texts,
        props,
    };
    l.block(stmts, 0, &mut out);
    out
}

/// Readable name of a property reference (`@title`, `@stamp`).
pub fn prop_name(p: &PropRef, props: &[(std::sync::Arc<str>, PropRef)]) -> String {
    match p {
        PropRef::Stamp => "@stamp".into(),
        PropRef::Event => "@event".into(),
        PropRef::Id => "@id".into(),
        PropRef::Session => "@session".into(),
        PropRef::User { index, .. } => props
            .iter()
            .find(|(_, q)| q == p)
            .map_or_else(|| format!("@prop{index}"), |(n, _)| format!("@{n}")),
    }
}

struct Lister<'a> {
    names: &'a [String],
    texts: &'a [std::sync::Arc<str>],
    props: &'a [(std::sync::Arc<str>, PropRef)],
}

impl Lister<'_> {
    fn var(&self, slot: u32) -> String {
        self.names
            .get(slot as usize)
            .cloned()
            .unwrap_or_else(|| format!("${slot}"))
    }

    fn block(&self, stmts: &[Stmt], ind: usize, out: &mut String) {
        for s in stmts {
            self.stmt(s, ind, out);
        }
    }

    fn stmt(&self, s: &Stmt, ind: usize, out: &mut String) {
        let pad = "  ".repeat(ind);
        match s {
            Stmt::Assign {
                target, op, value, ..
            } => {
                let mut t = format!("{}#{}", self.var(target.slot), target.slot);
                for p in &target.path {
                    let _ = write!(t, "[{}]", self.expr(p));
                }
                let o = op.map_or("=".to_string(), |o| format!("{}=", o.symbol()));
                let _ = writeln!(out, "{pad}SET {t} {o} {}", self.expr(value));
            }
            Stmt::If { arms, otherwise } => {
                for (k, (c, b)) in arms.iter().enumerate() {
                    let w = if k == 0 { "IF" } else { "ELIF" };
                    let _ = writeln!(out, "{pad}{w} {}", self.expr(c));
                    self.block(b, ind + 1, out);
                }
                if let Some(b) = otherwise {
                    let _ = writeln!(out, "{pad}ELSE");
                    self.block(b, ind + 1, out);
                }
                let _ = writeln!(out, "{pad}END");
            }
            Stmt::For { var, src, body, .. } => {
                let _ = writeln!(
                    out,
                    "{pad}FOR {}#{var} IN {}",
                    self.var(*var),
                    self.expr(src)
                );
                self.block(body, ind + 1, out);
                let _ = writeln!(out, "{pad}END");
            }
            Stmt::EachRow {
                mods, cond, body, ..
            } => {
                let c = cond.as_ref().map_or("true".into(), |c| self.expr(c));
                let _ = writeln!(out, "{pad}EACH_ROW{} WHERE {c}", self.mods(mods));
                self.block(body, ind + 1, out);
                let _ = writeln!(out, "{pad}END");
            }
            Stmt::Push { groups, .. } => {
                let g: Vec<String> = groups.iter().map(|e| self.expr(e)).collect();
                let _ = writeln!(out, "{pad}PUSH {}", g.join(", "));
            }
            Stmt::Break(d, _) => match d {
                BreakDepth::Fixed(n) => {
                    let _ = writeln!(out, "{pad}BREAK {n}");
                }
                BreakDepth::Computed(e, max) => {
                    let _ = writeln!(out, "{pad}BREAK ({}) max {max}", self.expr(e));
                }
            },
            Stmt::Continue => {
                let _ = writeln!(out, "{pad}CONTINUE");
            }
            Stmt::Exit => {
                let _ = writeln!(out, "{pad}EXIT");
            }
            Stmt::Return(e) => {
                let v = e.as_ref().map_or("nil".into(), |e| self.expr(e));
                let _ = writeln!(out, "{pad}RETURN {v}");
            }
            Stmt::Expr(e) => {
                let _ = writeln!(out, "{pad}EVAL {}", self.expr(e));
            }
        }
    }

    fn prop(&self, p: &PropRef) -> String {
        prop_name(p, self.props)
    }

    fn scope(&self, s: &TimeScope) -> String {
        let mut out = String::new();
        if let Some((a, b)) = &s.range {
            let _ = write!(out, ".range({}, {})", self.expr(a), self.expr(b));
        }
        if let Some((k, w, a)) = &s.window {
            let n = match k {
                WindowKind::Within => "within",
                WindowKind::LookAhead => "look_ahead",
                WindowKind::LookBack => "look_back",
            };
            let _ = write!(out, ".{n}({}, {})", self.expr(w), self.expr(a));
        }
        out
    }

    fn mods(&self, m: &IterMods) -> String {
        let mut out = String::new();
        if m.reverse {
            out.push_str(".reverse()");
        }
        if m.cont {
            out.push_str(".continue()");
        }
        if let Some(f) = &m.from {
            let _ = write!(out, ".from({})", self.expr(f));
        }
        if m.next {
            out.push_str(".next()");
        }
        if let Some(l) = &m.limit {
            let _ = write!(out, ".limit({})", self.expr(l));
        }
        out.push_str(&self.scope(&m.scope));
        out
    }

    fn expr(&self, e: &Expr) -> String {
        match e {
            Expr::Lit(v) => v.to_literal(),
            Expr::Var(s) => format!("{}#{s}", self.var(*s)),
            Expr::Prop(p) => self.prop(p),
            Expr::Filter(f) => {
                let m = match f.mode {
                    FilterMode::Is => "is",
                    FilterMode::IsNot => "is_not",
                    FilterMode::Ever => "ever",
                    FilterMode::Never => "never",
                };
                let fast = f
                    .text_const
                    .and_then(|i| self.texts.get(i as usize))
                    .map_or(String::new(), |t| format!(" [dict id of {:?}]", &**t));
                format!(
                    "{}.{m}({} {}){}{}{}",
                    self.prop(&f.prop),
                    f.cmp.symbol(),
                    self.expr(&f.rhs),
                    self.scope(&f.scope),
                    if f.next { ".next()" } else { "" },
                    fast
                )
            }
            Expr::Neg(x, _) => format!("(-{})", self.expr(x)),
            Expr::Not(x) => format!("(!{})", self.expr(x)),
            Expr::Arith(op, a, b, _) => {
                format!("({} {} {})", self.expr(a), op.symbol(), self.expr(b))
            }
            Expr::Cmp(op, a, b) => format!("({} {} {})", self.expr(a), op.symbol(), self.expr(b)),
            Expr::And(a, b) => format!("({} && {})", self.expr(a), self.expr(b)),
            Expr::Or(a, b) => format!("({} || {})", self.expr(a), self.expr(b)),
            Expr::Index(a, b) => format!("{}[{}]", self.expr(a), self.expr(b)),
            Expr::List(items) => {
                let v: Vec<String> = items.iter().map(|e| self.expr(e)).collect();
                format!("[{}]", v.join(", "))
            }
            Expr::Dict(items) => {
                let v: Vec<String> = items
                    .iter()
                    .map(|(k, e)| format!("{}: {}", k.to_literal(), self.expr(e)))
                    .collect();
                format!("{{{}}}", v.join(", "))
            }
            Expr::Call(f, args, _) => {
                let v: Vec<String> = args.iter().map(|e| self.expr(e)).collect();
                format!("{}({})", f.name(), v.join(", "))
            }
            Expr::Agg(a, _) => {
                let v = a
                    .value
                    .as_ref()
                    .map_or(String::new(), |v| format!("({})", self.expr(v)));
                let c = a.cond.as_ref().map_or("true".into(), |c| self.expr(c));
                format!("[{}{v}{} where {c}]", a.kind.name(), self.mods(&a.mods))
            }
        }
    }
}

/// The shape of a row loop's modifiers that the interpreter runs directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopShape {
    /// No modifiers: every row, first to last.
    EveryRow,
    /// `.continue().next().limit(1)`: the next row after the cursor.
    NextOne,
    /// Anything else.
    Other,
}

/// What an `each_row` needs decided once, when parsed, rather than on
/// every entry into the loop (a look-ahead loop is entered once per row
/// of the loop around it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopPlan {
    /// The text constant of an `event.is(== "text")` leading the
    /// condition: rows of other events can be passed over unread.
    pub guard: Option<u32>,
    /// The condition is that guard alone: nothing else to evaluate.
    pub guard_only: bool,
    /// The modifiers' shape.
    pub shape: LoopShape,
    /// Set by the compiler: this loop and the look-ahead in it run as one
    /// (`crate::pair_walk`, the program's `pair_walk` plan).
    pub pair_walk: bool,
}

impl LoopPlan {
    /// The plan of a loop with modifiers `mods` and condition `cond`.
    pub fn of(mods: &IterMods, cond: Option<&Expr>) -> LoopPlan {
        let guard = cond.and_then(event_guard);
        LoopPlan {
            guard,
            guard_only: guard.is_some() && matches!(cond, Some(Expr::Filter(_))),
            shape: if is_every_row(mods) {
                LoopShape::EveryRow
            } else if is_next_one(mods) {
                LoopShape::NextOne
            } else {
                LoopShape::Other
            },
            pair_walk: false,
        }
    }
}

/// True for an `each_row` without modifiers: every row, first to last.
fn is_every_row(m: &IterMods) -> bool {
    !m.cont && !m.next && !m.reverse && m.from.is_none() && m.limit.is_none() && !m.scope.is_some()
}

/// True for the modifiers `.continue().next().limit(1)` and nothing else:
/// the next row after the cursor that passes the condition.
fn is_next_one(m: &IterMods) -> bool {
    m.cont
        && m.next
        && !m.reverse
        && m.from.is_none()
        && !m.scope.is_some()
        && matches!(m.limit, Some(Expr::Lit(Value::Int(1))))
}

/// The text constant of an `event.is(== "text")` that leads a loop
/// condition (alone or as the left of `&&`), if one does.
fn event_guard(e: &Expr) -> Option<u32> {
    match e {
        Expr::Filter(f)
            if matches!(f.prop, PropRef::Event)
                && f.mode == FilterMode::Is
                && f.cmp == CmpOp::Eq
                && !f.next
                && !f.scope.is_some() =>
        {
            f.text_const
        }
        Expr::And(a, _) => event_guard(a),
        _ => None,
    }
}
