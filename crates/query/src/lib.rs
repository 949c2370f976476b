//! Queries over a node's partitions. Knows nothing of HTTP: each query
//! returns JSON values or a typed error the server maps to a status.

pub mod customer;
