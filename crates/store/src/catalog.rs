//! The catalog: node identity, partition count and table schemas, persisted
//! as one JSON file replaced atomically on every change.

use crate::log::sync_dir;
use crate::schema::TableSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

const FILE: &str = "catalog.json";

/// Node and schema state that is not part of any partition log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// The node's name, set on init.
    pub node_name: Option<String>,
    /// Partition count, set on init; `None` while the node waits.
    pub partitions: Option<u32>,
    /// Next table incarnation id.
    pub next_table_uid: u64,
    /// Tables by name.
    pub tables: BTreeMap<String, Arc<TableSchema>>,
}

impl Catalog {
    /// The table with incarnation id `uid`.
    pub fn table_by_uid(&self, uid: u64) -> Option<Arc<TableSchema>> {
        self.tables.values().find(|t| t.uid == uid).cloned()
    }

    /// Reads the catalog of `dir`, or an empty one for a new directory.
    pub fn load(dir: &Path) -> io::Result<Catalog> {
        match fs::read(dir.join(FILE)) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| io::Error::other(format!("{FILE}: {e}")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Catalog {
                next_table_uid: 1,
                ..Default::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes the catalog atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(FILE))?;
        sync_dir(dir)
    }
}
