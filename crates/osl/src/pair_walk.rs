//! The "each row of A, then the next row of B" pattern, run as one loop.
//!
//! Sequence questions ("after each purchase, what was bought next?") are
//! written as a guarded loop over every row of one event that notes a
//! property, around a look-ahead for the next row of another (or the
//! same) event that pushes the noted value and one read there:
//!
//! ```text
//! each_row where event.is(== "purchase")
//!   p = product_name
//!   each_row.continue().next().limit(1) where event.is(== "purchase")
//!     << p + " > " + product_name
//!   end
//! end
//! ```
//!
//! The interpreter would enter the look-ahead, dispatch its body and read
//! the push's template once per outer row. When the program has this
//! shape exactly (the outer body only notes id-only variables, the inner
//! body is the program's one interned push), the compiler marks the outer
//! loop and the interpreter runs both loops as one, from a row of A to
//! the next row of B, filing the push by dictionary ids. Anything it
//! cannot file that way (a missing value, a text the key space cannot
//! number) goes through the general push, so answers never differ.

use crate::ast::{each_stmt_mut, Expr, LoopShape, Stmt};
use crate::key_space::{KeyTemplate, TemplateItem};
use crate::schema::PropKind;
use crate::Pos;

/// Where one varying part of the push's key is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartSource {
    /// The value noted at the outer row: index into [`PairWalk::notes`].
    Noted(usize),
    /// A text property (its index) read at the inner row.
    Prop(u32),
}

/// A marked outer loop's plan (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PairWalk {
    /// The outer loop's event name (program text index).
    pub outer: u32,
    /// The inner look-ahead's event name (program text index).
    pub inner: u32,
    /// The outer body's notes, in order: (variable slot, text property).
    pub notes: Vec<(u32, u32)>,
    /// The push's varying parts, left to right.
    pub parts: Vec<PartSource>,
    /// The push's position (for errors, as the general path records it).
    pub push_pos: Pos,
}

/// Finds the pattern in `stmts` and marks its outer loop
/// (`LoopPlan::pair_walk`). `chain` is the program's interned push
/// template and `id_only` its id-only variables; without them there is
/// no pattern. At most one loop can match: the push is the program's only
/// one.
pub(crate) fn mark(
    stmts: &mut [Stmt],
    chain: Option<&KeyTemplate>,
    id_only: &[u32],
) -> Option<PairWalk> {
    let chain = chain?;
    let mut found = None;
    each_stmt_mut(stmts, &mut |s| {
        if found.is_some() {
            return;
        }
        if let Some(w) = plan_of(s, chain, id_only) {
            if let Stmt::EachRow { plan, .. } = s {
                plan.pair_walk = true;
            }
            found = Some(w);
        }
    });
    found
}

/// The plan of `s`, if it is an outer loop of the pattern.
fn plan_of(s: &Stmt, chain: &KeyTemplate, id_only: &[u32]) -> Option<PairWalk> {
    let Stmt::EachRow { plan, body, .. } = s else {
        return None;
    };
    if !plan.guard_only || plan.shape != LoopShape::EveryRow {
        return None;
    }
    let outer = plan.guard?;
    let (last, notes_src) = body.split_last()?;
    let mut notes = Vec::with_capacity(notes_src.len());
    for n in notes_src {
        let Stmt::Assign {
            target,
            op: None,
            value:
                Expr::Prop(crate::ast::PropRef::User {
                    index,
                    kind: PropKind::Text,
                    is_set: false,
                }),
            ..
        } = n
        else {
            return None;
        };
        if !target.path.is_empty() || !id_only.contains(&target.slot) {
            return None;
        }
        notes.push((target.slot, *index));
    }
    let Stmt::EachRow {
        plan: inner_plan,
        body: inner_body,
        ..
    } = last
    else {
        return None;
    };
    if !inner_plan.guard_only || inner_plan.shape != LoopShape::NextOne {
        return None;
    }
    let inner = inner_plan.guard?;
    let [Stmt::Push {
        pos: push_pos,
        memo: None,
        literal: None,
        ..
    }] = &inner_body[..]
    else {
        return None;
    };
    let mut parts = Vec::new();
    for item in &chain.items {
        parts.push(match item {
            TemplateItem::Lit(_) => continue,
            TemplateItem::Prop(index) => PartSource::Prop(*index),
            // The last note of the slot is the one the push sees.
            TemplateItem::Var(slot) => {
                PartSource::Noted(notes.iter().rposition(|(s, _)| s == slot)?)
            }
        });
    }
    Some(PairWalk {
        outer,
        inner,
        notes,
        parts,
        push_pos: *push_pos,
    })
}
