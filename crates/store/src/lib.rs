//! The store: tables and schemas, partitions of customers with their
//! time-ordered events, the partition log and snapshots.
//!
//! Knows nothing of HTTP or OSL syntax. The one rule it guards: a
//! partition's state is a deterministic function of its ordered log.

pub mod catalog;
pub mod codec;
pub mod db;
pub mod error;
pub mod hugepages;
pub mod index;
pub mod ingest;
pub mod json;
pub mod log;
pub mod narrow;
pub mod partition;
pub mod record;
pub mod schema;
pub mod snapshot;
pub mod stamp;
pub mod varint;

pub use db::{AddProperty, Counts, Db, DbConfig, Engine, InsertOptions, InsertReport};
pub use error::StoreError;
