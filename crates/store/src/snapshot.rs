//! Partition snapshots: a partition's whole state at one LSN, so recovery
//! replays only the log after it and the log before it can be deleted.
//!
//! A snapshot file is a sequence of CRC-checked frames (the log's framing):
//! a header with the LSN, then per table its dictionary and its records in
//! restore order, then an end marker. A file without a valid end marker is
//! ignored, so a crash while writing one is harmless.

use crate::codec::decode_entry;
use crate::log::{frame, read_frames, sync_dir, Lsn};
use crate::partition::{PartitionState, TablePartition};
use crate::schema::TableSchema;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"OPENSET-SNAPSHOT-1";
const KIND_TABLE: u8 = 1;
const KIND_RECORDS: u8 = 2;
const KIND_END: u8 = 3;
const RECORDS_PER_FRAME: usize = 8192;

/// Encodes `state` (tables the catalog no longer has are left out).
pub fn encode(
    state: &PartitionState,
    schema_of: &dyn Fn(u64) -> Option<std::sync::Arc<TableSchema>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq: Lsn = 0;
    let mut push = |payload: &[u8], out: &mut Vec<u8>| {
        frame(seq, payload, out);
        seq += 1;
    };
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&state.applied.to_le_bytes());
    push(&header, &mut out);
    for (&uid, table) in &state.tables {
        let Some(schema) = schema_of(uid) else {
            continue;
        };
        let mut t = vec![KIND_TABLE];
        t.extend_from_slice(&uid.to_le_bytes());
        t.extend_from_slice(&(table.dict.len() as u32).to_le_bytes());
        for text in table.dict.texts() {
            t.extend_from_slice(&(text.len() as u32).to_le_bytes());
            t.extend_from_slice(text.as_bytes());
        }
        push(&t, &mut out);
        let mut payload = Vec::new();
        table.encode_snapshot(&schema, RECORDS_PER_FRAME, &mut |entry| {
            payload.clear();
            payload.push(KIND_RECORDS);
            payload.extend_from_slice(entry);
            push(&payload, &mut out);
        });
    }
    push(&[KIND_END], &mut out);
    out
}

/// Decodes a snapshot into a fresh partition state; `None` when the bytes
/// are not a complete snapshot.
pub fn decode(
    bytes: &[u8],
    schema_of: &dyn Fn(u64) -> Option<std::sync::Arc<TableSchema>>,
) -> Option<PartitionState> {
    let (frames, valid) = read_frames(bytes);
    if valid != bytes.len() {
        return None;
    }
    let mut iter = frames.into_iter().enumerate();
    let (_, (_, first)) = iter.next()?;
    let header = &bytes[first];
    if !header.starts_with(MAGIC) || header.len() != MAGIC.len() + 8 {
        return None;
    }
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&header[MAGIC.len()..]);
    let mut state = PartitionState {
        applied: u64::from_le_bytes(lsn),
        ..Default::default()
    };
    let mut ended = false;
    for (i, (seq, range)) in iter {
        if seq != i as u64 || ended {
            return None;
        }
        let payload = &bytes[range];
        match *payload.first()? {
            KIND_TABLE => {
                let mut r = payload.get(1..)?;
                let uid = u64::from_le_bytes(r.get(..8)?.try_into().ok()?);
                r = &r[8..];
                let n = u32::from_le_bytes(r.get(..4)?.try_into().ok()?);
                r = &r[4..];
                let mut table = TablePartition::default();
                for _ in 0..n {
                    let len = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
                    let text = std::str::from_utf8(r.get(4..4 + len)?).ok()?;
                    table.dict.intern(text);
                    r = &r[4 + len..];
                }
                state.tables.insert(uid, table);
            }
            KIND_RECORDS => {
                let (uid, records) = decode_entry(&payload[1..]).ok()?;
                let schema = schema_of(uid);
                let table = state.tables.get_mut(&uid)?;
                if let Some(schema) = schema {
                    for rec in &records {
                        table.apply(&schema, rec, false);
                    }
                }
            }
            KIND_END => ended = true,
            _ => return None,
        }
    }
    ended.then_some(state)
}

fn snapshot_path(dir: &Path, lsn: Lsn) -> PathBuf {
    dir.join(format!("{lsn:020}.snap"))
}

/// Writes `bytes` as the snapshot at `lsn` in `dir` atomically, then
/// deletes older snapshots.
pub fn write(dir: &Path, lsn: Lsn, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{lsn:020}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, snapshot_path(dir, lsn))?;
    sync_dir(dir)?;
    for old in list(dir)? {
        if old < lsn {
            fs::remove_file(snapshot_path(dir, old))?;
        }
    }
    Ok(())
}

/// LSNs of the snapshots in `dir`, newest first.
pub fn list(dir: &Path) -> io::Result<Vec<Lsn>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(stem) = name.to_string_lossy().strip_suffix(".snap") {
            if let Ok(lsn) = stem.parse() {
                out.push(lsn);
            }
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ok(out)
}

/// Loads the newest complete snapshot in `dir`.
pub fn load_latest(
    dir: &Path,
    schema_of: &dyn Fn(u64) -> Option<std::sync::Arc<TableSchema>>,
) -> io::Result<Option<PartitionState>> {
    for lsn in list(dir)? {
        let bytes = fs::read(snapshot_path(dir, lsn))?;
        match decode(&bytes, schema_of) {
            Some(state) => return Ok(Some(state)),
            None => tracing::warn!(dir = %dir.display(), lsn, "ignoring damaged snapshot"),
        }
    }
    Ok(None)
}
