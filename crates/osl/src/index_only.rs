//! Index-only segments (OSL spec 11.4 rule 3): scripts whose answer is a
//! set expression over (property, value) bitmaps and stored segments, so
//! the caller can compute membership without running the script.
//!
//! Accepted shapes: a body of exactly `if C` / `return(true)` / `end`, or
//! `return(C)`, where `C` is built from `&&`, `||`, `!` and atoms the index
//! answers exactly: `p.ever(== lit)`, `p.ever(in [lits])`, and for sets
//! `p.ever(contains lit)` (one member) / `p.ever(any [lits])`, each also with `.never`,
//! without time scope; customer properties compared with `==` / `in`
//! against literals; and the segment functions with literal names.

use crate::ast::{Expr, FilterMode, PropRef, Stmt};
use crate::compile::Program;
use crate::functions::Func;
use crate::prefilter::IndexAtom;
use crate::value::{CmpOp, Value};

/// A set of customers described by index bitmaps.
#[derive(Clone, Debug, PartialEq)]
pub enum BitExpr {
    /// Customers having at least one of these (property, value) atoms.
    Any(Vec<IndexAtom>),
    /// Everyone not in the inner set.
    Not(Box<BitExpr>),
    /// Both.
    And(Box<BitExpr>, Box<BitExpr>),
    /// Either.
    Or(Box<BitExpr>, Box<BitExpr>),
    /// Members of the stored segment of this name.
    Segment(String),
}

impl BitExpr {
    /// Names of the stored segments the expression reads.
    pub fn segments(&self) -> Vec<&str> {
        match self {
            BitExpr::Any(_) => Vec::new(),
            BitExpr::Not(x) => x.segments(),
            BitExpr::And(a, b) | BitExpr::Or(a, b) => {
                let mut v = a.segments();
                v.extend(b.segments());
                v
            }
            BitExpr::Segment(s) => vec![s.as_str()],
        }
    }
}

impl Program {
    /// The set expression equal to this segment script's membership, when
    /// its shape allows computing it from indexes alone.
    pub fn index_only(&self) -> Option<BitExpr> {
        match self.stmts.as_slice() {
            [Stmt::If {
                arms,
                otherwise: None,
            }] if arms.len() == 1 => {
                let (cond, body) = arms.first()?;
                match body.as_slice() {
                    [Stmt::Return(Some(Expr::Lit(Value::Bool(true))))] => self.exact(cond),
                    _ => None,
                }
            }
            [Stmt::Return(Some(cond))] => self.exact(cond),
            _ => None,
        }
    }

    fn exact(&self, e: &Expr) -> Option<BitExpr> {
        match e {
            Expr::And(a, b) => Some(BitExpr::And(
                Box::new(self.exact(a)?),
                Box::new(self.exact(b)?),
            )),
            Expr::Or(a, b) => Some(BitExpr::Or(
                Box::new(self.exact(a)?),
                Box::new(self.exact(b)?),
            )),
            Expr::Not(x) => Some(BitExpr::Not(Box::new(self.exact(x)?))),
            Expr::Filter(f) => {
                if f.scope.is_some() || f.next {
                    return None;
                }
                let Expr::Lit(lit) = &f.rhs else { return None };
                let has = atoms(f.prop, f.cmp, lit, false)?;
                match f.mode {
                    FilterMode::Ever => Some(has),
                    FilterMode::Never => Some(BitExpr::Not(Box::new(has))),
                    _ => None,
                }
            }
            Expr::Cmp(op @ (CmpOp::Eq | CmpOp::In), l, r) => {
                let (Expr::Var(slot), Expr::Lit(lit)) = (&**l, &**r) else {
                    return None;
                };
                let (_, def) = self.customer_slots.iter().find(|(s, _)| s == slot)?;
                if def.is_set {
                    return None;
                }
                let p = PropRef::User {
                    index: def.index,
                    kind: def.kind,
                    is_set: false,
                };
                atoms(p, *op, lit, true)
            }
            Expr::Call(f, args, _) => {
                let name = |i: usize| match args.get(i) {
                    Some(Expr::Lit(Value::Text(t))) => Some(BitExpr::Segment(t.to_string())),
                    _ => None,
                };
                match f {
                    Func::Population => name(0),
                    Func::Compliment => Some(BitExpr::Not(Box::new(name(0)?))),
                    Func::Intersection => {
                        Some(BitExpr::And(Box::new(name(0)?), Box::new(name(1)?)))
                    }
                    Func::Union => Some(BitExpr::Or(Box::new(name(0)?), Box::new(name(1)?))),
                    Func::Difference => Some(BitExpr::And(
                        Box::new(name(0)?),
                        Box::new(BitExpr::Not(Box::new(name(1)?))),
                    )),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// "Has a row (or the customer value) matching `op lit`", exactly.
fn atoms(prop: PropRef, op: CmpOp, lit: &Value, customer: bool) -> Option<BitExpr> {
    let one = |v: &Value| crate::prefilter::exact_atom(prop, v, customer);
    let list = |v: &Value| -> Option<Vec<IndexAtom>> {
        match v {
            Value::List(l) => l.iter().map(one).collect(),
            Value::Set(s) => s.values().map(one).collect(),
            _ => None,
        }
    };
    match op {
        CmpOp::Eq if !matches!(lit, Value::List(_) | Value::Set(_)) => {
            Some(BitExpr::Any(vec![one(lit)?]))
        }
        CmpOp::In => Some(BitExpr::Any(list(lit)?)),
        // `contains [a, b]` needs both in one row's set: per-customer bitmaps
        // cannot tell, so only a single member is exact.
        CmpOp::Contains if prop.is_set() && !customer => match lit {
            Value::List(_) | Value::Set(_) => None,
            scalar => Some(BitExpr::Any(vec![one(scalar)?])),
        },
        CmpOp::Any if prop.is_set() && !customer => match lit {
            Value::List(_) | Value::Set(_) => Some(BitExpr::Any(list(lit)?)),
            scalar => Some(BitExpr::Any(vec![one(scalar)?])),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::PropKind;
    use crate::schema::{Params, PropDef, Schema, ScriptKind};
    use crate::CompileOptions;

    fn compile(src: &str) -> Option<BitExpr> {
        let p = |name: &str, kind, is_set, is_customer, index| PropDef {
            name: name.into(),
            kind,
            is_set,
            is_customer,
            index,
        };
        let schema = Schema {
            props: vec![
                p("genre", PropKind::Text, true, false, 1),
                p("title", PropKind::Text, false, false, 2),
                p("tier", PropKind::Text, false, true, 3),
            ],
            numeric_ids: false,
        };
        let opts = CompileOptions {
            kind: ScriptKind::Segment,
            ..CompileOptions::default()
        };
        crate::compile_with(src, &schema, &Params::new(), &opts)
            .ok()?
            .index_only()
    }

    #[test]
    fn recognises_exact_shapes_only() {
        assert!(matches!(
            compile("return(genre.ever(== \"outdoor\") && genre.never(== \"garage\"))"),
            Some(BitExpr::And(..))
        ));
        assert!(matches!(
            compile("if title.ever(in [\"a\", \"b\"]) || tier == \"gold\"\n  return(true)\nend"),
            Some(BitExpr::Or(..))
        ));
        assert_eq!(
            compile("return(population(\"vip\"))"),
            Some(BitExpr::Segment("vip".into()))
        );
        assert!(compile("return(difference(\"a\", \"b\"))").is_some());
        // Not exact: a cursor-row test, a time scope, a second statement, a false return.
        assert_eq!(compile("return(title == \"a\")"), None);
        assert_eq!(
            compile("return(title.ever(== \"a\").within(1_day, now))"),
            None
        );
        assert_eq!(compile("x = 1\nreturn(title.ever(== \"a\"))"), None);
        assert_eq!(
            compile("if title.ever(== \"a\")\n  return(false)\nend"),
            None
        );
        assert_eq!(compile("return(title.ever(> \"a\"))"), None);
        assert_eq!(
            compile("return(genre.ever(contains [\"a\", \"b\"]))"),
            None,
            "one row must hold both"
        );
    }
}
