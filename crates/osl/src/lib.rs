//! OSL: the OpenSet scripting language (front end, compiler, interpreter).
//!
//! Pure library: no I/O, no threads. Typical use per request:
//!
//! 1. [`compile`] (or [`compile_with`] for segment/histogram scripts and
//!    sections, see [`parse_sections`]) the script against a [`Schema`].
//! 2. Per partition: `let mut st = program.new_state(); let mut tree = program.new_tree(k);`
//!    then for every customer `program.run(&view, &ctx, &mut st, &mut tree)`.
//! 3. [`ResultTree::merge`] the partition trees, then [`ResultTree::render`].

#![warn(missing_docs)]

pub mod access;
pub mod ast;
pub mod compile;
pub mod error;
pub mod functions;
pub mod histogram;
pub mod index_only;
pub mod interp;
pub mod key_space;
pub mod lexer;
mod pair_walk;
pub mod parser;
pub mod prefilter;
pub mod result_tree;
pub mod schema;
pub mod testkit;
pub mod trigger;
pub mod value;
pub mod view;

pub use access::RowAccess;
pub use compile::{
    compile, compile_with, is_valid_param_name, parse_duration, parse_sections,
    substitute_templates, CompileOptions, Program, Section, SectionKind, SegmentFlags,
};
pub use error::{CompileError, ErrorCode, Pos, RuntimeError};
pub use histogram::{histogram_sample, Histogram, HistogramOptions, Sample};
pub use index_only::BitExpr;
pub use interp::RunState;
pub use prefilter::{IndexAtom, IndexProp, Prefilter};
pub use result_tree::{Column, ColumnAgg, Dedup, GroupKey, RenderOptions, ResultTree, SortBy};
pub use schema::{Params, PropDef, PropKind, Schema, ScriptKind};
pub use value::Value;
pub use view::{
    CustomerId, CustomerView, CustomerWrite, NameIds, RunContext, RunOutcome, StoredValue,
};

#[cfg(test)]
mod tests;
