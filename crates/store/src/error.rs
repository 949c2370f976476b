//! The store's error type.

/// Everything the store can refuse or fail at. The server maps each variant
/// to a status code and the spec's error JSON.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The node has no partitions yet (`PUT /v1/cluster/init`).
    #[error("node not initialized - call PUT /v1/cluster/init or join it to a cluster")]
    NotInitialized,
    /// `init` on a node that already is a cluster.
    #[error("This instance is already part of a cluster")]
    AlreadyInitialized,
    /// No table of that name.
    #[error("table not found")]
    TableNotFound,
    /// No property of that name.
    #[error("property not found")]
    PropertyNotFound,
    /// A request that breaks a rule; the text is the detail for the client.
    #[error("{0}")]
    Invalid(String),
    /// Storage cannot take writes right now (disk full, unwritable); nothing
    /// of the request was kept.
    #[error("storage unavailable, nothing was written: {0}")]
    Unavailable(String),
    /// Another process holds the data directory.
    #[error("{0}")]
    Locked(String),
    /// Stored data could not be read back.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<crate::log::LogError> for StoreError {
    fn from(e: crate::log::LogError) -> Self {
        match e {
            crate::log::LogError::Io(io) => StoreError::Unavailable(io.to_string()),
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}
