//! The announced membership of one subscribed segment, per partition, as a
//! journal of flips on top of base bitmaps. It is the diff base for the
//! start-up evaluation (ADR 0004): after a restart, exactly the flips that
//! were never announced become messages, and nothing else.
//!
//! Records: `[kind u8][partition u32][payload]`, kind 1 entered and 2
//! exited (payload: customer indexes, u32 each), kind 3 base (payload: a
//! serialized roaring bitmap that replaces the partition's set).

use crate::frame::{self, Reader};
use query::segment::Change;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const ENTERED: u8 = 1;
const EXITED: u8 = 2;
const BASE: u8 = 3;

/// An open journal file.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Appends not yet synced.
    pub dirty: bool,
}

fn record(kind: u8, partition: u32, body: impl FnOnce(&mut Vec<u8>), out: &mut Vec<u8>) {
    let mut p = vec![kind];
    p.extend_from_slice(&partition.to_le_bytes());
    body(&mut p);
    frame::push(out, &p);
}

impl Journal {
    /// Reads the announced sets of the journal at `path` (`None` if absent).
    pub fn load(path: &Path) -> io::Result<Option<Vec<(u32, RoaringBitmap)>>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut sets: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        for f in frame::read(&bytes).0 {
            let mut r = Reader(f);
            let (Some(kind), Some(p)) = (r.u8(), r.u32()) else {
                continue;
            };
            let set = sets.entry(p).or_default();
            match kind {
                BASE => {
                    *set = RoaringBitmap::deserialize_from(r.0).unwrap_or_default();
                }
                ENTERED | EXITED => {
                    while let Some(ci) = r.u32() {
                        if kind == ENTERED {
                            set.insert(ci);
                        } else {
                            set.remove(ci);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Some(sets.into_iter().collect()))
    }

    /// Opens `path` for appending (creating it empty).
    pub fn open(path: &Path) -> io::Result<Journal> {
        // A torn tail is harmless to read past, but appends must not follow it.
        if let Ok(bytes) = fs::read(path) {
            let good = frame::read(&bytes).1;
            if good < bytes.len() {
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(good as u64)?;
            }
        }
        Ok(Journal {
            file: OpenOptions::new().create(true).append(true).open(path)?,
            path: path.to_path_buf(),
            dirty: false,
        })
    }

    /// Replaces the journal by base records of `sets` (compaction).
    pub fn rewrite(&mut self, sets: &[(u32, RoaringBitmap)]) -> io::Result<()> {
        let mut buf = Vec::new();
        for (p, set) in sets {
            record(BASE, *p, |b| set.serialize_into(b).unwrap_or(()), &mut buf);
        }
        frame::replace(&self.path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.dirty = false;
        Ok(())
    }

    /// Appends a base record: partition `p` is announced as `set`.
    pub fn base(&mut self, p: u32, set: &RoaringBitmap) -> io::Result<()> {
        let mut buf = Vec::new();
        record(BASE, p, |b| set.serialize_into(b).unwrap_or(()), &mut buf);
        self.write(&buf)
    }

    /// Appends the flips of partition `p`.
    pub fn changes(&mut self, p: u32, changes: &[Change]) -> io::Result<()> {
        let mut buf = Vec::new();
        for (kind, entered) in [(ENTERED, true), (EXITED, false)] {
            let cis: Vec<u32> = changes
                .iter()
                .filter(|c| c.entered == entered)
                .map(|c| c.ci)
                .collect();
            if !cis.is_empty() {
                record(
                    kind,
                    p,
                    |b| {
                        cis.iter()
                            .for_each(|ci| b.extend_from_slice(&ci.to_le_bytes()))
                    },
                    &mut buf,
                );
            }
        }
        self.write(&buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.dirty = true;
        Ok(())
    }

    /// A handle to sync outside the lock when appends are unsynced.
    pub fn take_dirty(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.file.try_clone().ok()
    }

    /// Removes the file (nobody listens to the segment any more).
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::record::CustomerKey;

    fn ch(ci: u32, entered: bool) -> Change {
        Change {
            ci,
            key: CustomerKey::Num(ci as i64),
            entered,
        }
    }

    #[test]
    fn replays_bases_and_flips_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        assert!(Journal::load(&path).unwrap().is_none());
        let mut j = Journal::open(&path).unwrap();
        j.changes(0, &[ch(9, true)]).unwrap();
        j.base(0, &[1u32, 2, 3].into_iter().collect()).unwrap();
        j.changes(0, &[ch(2, false), ch(4, true)]).unwrap();
        j.changes(1, &[ch(7, true)]).unwrap();
        let sets = Journal::load(&path).unwrap().unwrap();
        let want: Vec<(u32, RoaringBitmap)> = vec![
            (0, [1u32, 3, 4].into_iter().collect()),
            (1, [7u32].into_iter().collect()),
        ];
        assert_eq!(sets, want);
        j.rewrite(&want).unwrap();
        j.changes(1, &[ch(7, false)]).unwrap();
        let sets = Journal::load(&path).unwrap().unwrap();
        assert_eq!(sets[1], (1, RoaringBitmap::new()));
        assert_eq!(sets[0], want[0]);
    }
}
