//! A sound customer pre-filter for index use (§11.4 rule 2).
//!
//! When the script body (after `select`) is one top-level `if` without
//! `elif`/`else`, or one `each_row` with a `where`, and nothing else, the
//! body runs only if its condition holds somewhere. From the condition we
//! extract necessary facts of the form "the customer has property P with
//! value V" (event properties through plain / `.is` / `.ever` equality and
//! membership tests with literals, without time scope and not negated;
//! customer properties through `==`/`in` with literals). A customer for
//! which some clause has none of its (property, value) pairs cannot
//! produce any effect and may be skipped. Literals are only used when
//! their type matches the property type exactly, so the equality rules of
//! §4.4 (numeric text, bool/number) cannot make a skipped customer match.

use crate::ast::{Expr, FilterMode, PropFilter, PropKind, PropRef, Stmt};
use crate::compile::Program;
use crate::value::{CmpOp, Value};

/// The property an index atom is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexProp {
    /// The event name (`event`).
    Event,
    /// A user property (event or customer) by schema index.
    Prop(u32),
}

/// "The customer has `value` for `prop`" (in some row, or as customer property).
#[derive(Clone, Debug, PartialEq)]
pub struct IndexAtom {
    /// Property.
    pub prop: IndexProp,
    /// Property type (decides the cell encoding).
    pub kind: PropKind,
    /// The literal (type-matched to `kind`).
    pub value: Value,
    /// True for a customer property (false: event property or event name).
    pub customer: bool,
}

impl IndexAtom {
    /// The stored cell encoding of the value; text goes through `text_id`
    /// (a text missing from the dictionary gives `None`: no customer has it).
    pub fn encode(&self, text_id: impl Fn(&str) -> Option<u32>) -> Option<u64> {
        match (&self.value, self.kind) {
            (Value::Text(t), PropKind::Text) => text_id(t).map(u64::from),
            (Value::Int(i), PropKind::Int) => Some(*i as u64),
            (Value::Int(i), PropKind::Double) => Some(i.saturating_mul(10_000) as u64),
            (Value::Float(f), PropKind::Double) => {
                let s = f * 10_000.0;
                // Only values representable in 4 decimals can be stored.
                ((s - s.round()).abs() < 1e-6 && s.abs() < 9.2e18)
                    .then_some(s.round() as i64 as u64)
            }
            (Value::Bool(b), PropKind::Bool) => Some(u64::from(*b)),
            _ => None,
        }
    }
}

/// Necessary conditions in conjunctive form: every clause must have at
/// least one atom the customer satisfies, otherwise the customer can be
/// skipped. An atom the caller cannot check (e.g. a property it does not
/// index) must be treated as satisfied.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Prefilter {
    /// Clauses (AND) of atoms (OR).
    pub clauses: Vec<Vec<IndexAtom>>,
}

impl Program {
    /// The index pre-filter of this program, if its shape allows one.
    pub fn prefilter(&self) -> Option<Prefilter> {
        let [stmt] = self.stmts.as_slice() else {
            return None;
        };
        let cond = match stmt {
            Stmt::If {
                arms,
                otherwise: None,
            } if arms.len() == 1 => arms.first().map(|(c, _)| c)?,
            Stmt::EachRow { cond: Some(c), .. } => c,
            _ => return None,
        };
        let clauses = self.necessary(cond)?;
        (!clauses.is_empty()).then_some(Prefilter { clauses })
    }

    fn necessary(&self, e: &Expr) -> Option<Vec<Vec<IndexAtom>>> {
        match e {
            Expr::And(a, b) => match (self.necessary(a), self.necessary(b)) {
                (Some(mut x), Some(y)) => {
                    x.extend(y);
                    Some(x)
                }
                (x, y) => x.or(y),
            },
            Expr::Or(a, b) => {
                // (X1 ∧ ..) ∨ (Y1 ∧ ..) implies X1 ∨ Y1.
                let mut x = self.necessary(a)?.into_iter().next()?;
                let y = self.necessary(b)?.into_iter().next()?;
                x.extend(y);
                Some(vec![x])
            }
            Expr::Filter(f) => filter_atoms(f),
            Expr::Cmp(op, l, r) => {
                let Expr::Lit(lit) = &**r else { return None };
                match &**l {
                    Expr::Prop(p) => prop_atoms(*p, *op, lit),
                    Expr::Var(slot) => {
                        let (_, def) = self.customer_slots.iter().find(|(s, _)| s == slot)?;
                        let p = PropRef::User {
                            index: def.index,
                            kind: def.kind,
                            is_set: def.is_set,
                        };
                        if def.is_set {
                            return None;
                        }
                        let mut c = prop_atoms(p, *op, lit)?;
                        for a in c.iter_mut().flatten() {
                            a.customer = true;
                        }
                        Some(c)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn filter_atoms(f: &PropFilter) -> Option<Vec<Vec<IndexAtom>>> {
    if !matches!(f.mode, FilterMode::Is | FilterMode::Ever) || f.scope.is_some() || f.next {
        return None;
    }
    let Expr::Lit(lit) = &f.rhs else { return None };
    prop_atoms(f.prop, f.cmp, lit)
}

fn atom(prop: PropRef, v: &Value) -> Option<IndexAtom> {
    atom_of(prop, v, false)
}

/// The atom "has `v` for `prop`" when the literal's type matches the
/// property's exactly (so index membership equals OSL equality).
pub(crate) fn exact_atom(prop: PropRef, v: &Value, customer: bool) -> Option<IndexAtom> {
    atom_of(prop, v, customer)
}

fn atom_of(prop: PropRef, v: &Value, customer: bool) -> Option<IndexAtom> {
    let (ip, kind) = match prop {
        PropRef::Event => (IndexProp::Event, PropKind::Text),
        PropRef::User { index, kind, .. } => (IndexProp::Prop(index), kind),
        _ => return None,
    };
    let a = IndexAtom {
        prop: ip,
        kind,
        value: v.clone(),
        customer,
    };
    // Only exactly type-matched literals (see the module comment).
    a.encode(|_| Some(0)).map(|_| a)
}

fn list_atoms(prop: PropRef, v: &Value) -> Option<Vec<IndexAtom>> {
    match v {
        Value::List(l) => l.iter().map(|x| atom(prop, x)).collect(),
        Value::Set(s) => s.values().map(|x| atom(prop, x)).collect(),
        _ => None,
    }
}

fn prop_atoms(prop: PropRef, op: CmpOp, lit: &Value) -> Option<Vec<Vec<IndexAtom>>> {
    let clauses = match op {
        CmpOp::Eq => vec![vec![atom(prop, lit)?]],
        CmpOp::In => vec![list_atoms(prop, lit)?],
        CmpOp::Contains if prop.is_set() => match lit {
            Value::List(_) | Value::Set(_) => list_atoms(prop, lit)?
                .into_iter()
                .map(|a| vec![a])
                .collect(),
            scalar => vec![vec![atom(prop, scalar)?]],
        },
        CmpOp::Any if prop.is_set() => match lit {
            Value::List(_) | Value::Set(_) => vec![list_atoms(prop, lit)?],
            scalar => vec![vec![atom(prop, scalar)?]],
        },
        _ => return None,
    };
    // An empty clause would skip everyone: only from `in []`, which is
    // indeed never true, but keep it simple and give no filter.
    if clauses.iter().any(Vec::is_empty) {
        return None;
    }
    Some(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Params, PropDef, Schema};

    fn schema() -> Schema {
        let p = |name: &str, kind, is_set, is_customer, index| PropDef {
            name: name.into(),
            kind,
            is_set,
            is_customer,
            index,
        };
        Schema {
            props: vec![
                p("title", PropKind::Text, false, false, 1),
                p("genre", PropKind::Text, true, false, 2),
                p("price", PropKind::Double, false, false, 3),
                p("tier", PropKind::Text, false, true, 4),
                p("qty", PropKind::Int, false, false, 5),
            ],
            numeric_ids: false,
        }
    }

    fn pf(src: &str) -> Option<Prefilter> {
        crate::compile(src, &schema(), &Params::new())
            .ok()?
            .prefilter()
    }

    fn a(prop: IndexProp, kind: PropKind, v: Value) -> IndexAtom {
        IndexAtom {
            prop,
            kind,
            value: v,
            customer: false,
        }
    }

    #[test]
    fn extracts_necessary_atoms() {
        let f = pf("each_row where event.is(== \"order\") && price > 10.0\n << title\nend");
        assert_eq!(
            f.map(|f| f.clauses),
            Some(vec![vec![a(
                IndexProp::Event,
                PropKind::Text,
                Value::text("order")
            )]])
        );
        let f = pf("if genre.ever(contains \"scifi\") || title.ever(in [\"Dune\", \"Emma\"])\n return(true)\nend");
        assert_eq!(f.map(|f| f.clauses.first().map_or(0, Vec::len)), Some(3));
        let f = pf("if tier == \"gold\" && qty.ever(== 2)\n return(true)\nend");
        assert_eq!(f.as_ref().map(|f| f.clauses.len()), Some(2));
        assert_eq!(
            f.and_then(|f| f.clauses.first()?.first().map(|a| (a.customer, a.prop))),
            Some((true, IndexProp::Prop(4)))
        );
        let f = pf("if price.ever(== 0.1)\n return(true)\nend");
        assert_eq!(
            f.and_then(|f| f.clauses.first()?.first()?.encode(|_| None)),
            Some(1000)
        );
        let f = pf("if price.ever(== 12.5)\n return(true)\nend");
        let enc = f.and_then(|f| f.clauses.first()?.first()?.encode(|_| None));
        assert_eq!(enc, Some(125_000));
    }

    #[test]
    fn refuses_unsound_shapes() {
        // statement before/after, else branch, negation, time scope, never
        assert_eq!(pf("x = 1\nif event == \"order\"\n return(true)\nend"), None);
        assert_eq!(
            pf("if event == \"order\"\n return(true)\nelse\n return(false)\nend"),
            None
        );
        assert_eq!(pf("if !(event == \"order\")\n return(true)\nend"), None);
        assert_eq!(pf("if event.never(== \"order\")\n return(true)\nend"), None);
        assert_eq!(
            pf("if event.ever(== \"order\").within(1_days, now)\n return(true)\nend"),
            None
        );
        assert_eq!(
            pf("if event.ever(== \"order\") || qty > 1\n return(true)\nend"),
            None
        );
        // type-mismatched literal (numeric text equals numbers)
        assert_eq!(pf("if qty.ever(== \"2\")\n return(true)\nend"), None);
        assert_eq!(pf("if tier != \"gold\"\n return(true)\nend"), None);
    }
}
