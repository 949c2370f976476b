//! Queries over a node's partitions. Knows nothing of HTTP: each query
//! returns JSON values or a [`QueryError`] the server maps to a status.

pub mod batch;
pub mod control;
pub mod customer;
pub mod event;
pub mod histogram;
pub mod parallel;
pub mod property;
pub mod segment;
pub mod view;

use store::StoreError;

/// The answer of a scripted query: a result tree as JSON, or (with
/// `debug=true`) a readable listing of the compiled program(s).
pub enum Answer {
    /// The rendered tree.
    Tree(serde_json::Value),
    /// A readable listing.
    Listing(String),
}

/// Why a query failed.
#[derive(Debug)]
pub enum QueryError {
    /// The store refused (unknown table, node not initialised, ...).
    Store(StoreError),
    /// The script does not compile.
    Compile(osl::CompileError),
    /// A customer's run failed; the query is aborted (OSL spec 13.1, D69).
    Runtime(osl::RuntimeError),
    /// `sort=` names no select column.
    BadSort(String),
    /// The property named in the path does not exist.
    PropertyNotFound,
    /// The property named by a histogram's `foreach=` does not exist.
    MissingForeach(String),
    /// A parameter value that is malformed or out of range.
    BadParam(String),
    /// A segment named by `segments=` or `@use` that does not exist.
    MissingSegment(String),
    /// A parameter that does not fit the query (the detail says how).
    Request {
        /// Human text.
        detail: String,
    },
    /// A client cancelled the query (`DELETE /queries/{id}`).
    Cancelled,
    /// The query ran past its deadline.
    TimedOut,
    /// The script writes customer properties and the caller may not write.
    ReadOnly,
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        QueryError::Store(e)
    }
}
