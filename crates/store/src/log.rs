//! The partition log: the one durability boundary of the store.
//!
//! Every partition's state is a deterministic function of its ordered log.
//! [`PartitionLog`] is the trait the cluster will implement on NATS
//! JetStream (one stream per partition); [`LocalLog`] is the embedded
//! default on local disk: one directory per partition holding segment files
//! of CRC-checked frames.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Log sequence number of an entry within its partition; the first entry is 1.
pub type Lsn = u64;

/// A log failure. Nothing of the failed append is kept.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Writing or syncing failed (disk full, unwritable directory, ...).
    #[error("partition log write failed: {0}")]
    Io(#[from] io::Error),
    /// A frame in the middle of the log is damaged.
    #[error("partition {partition} log is damaged in {file}: {detail}")]
    Corrupt {
        /// Partition number.
        partition: u32,
        /// Segment file.
        file: String,
        /// What was wrong.
        detail: String,
    },
    /// The caller's visitor failed.
    #[error("{0}")]
    Visit(String),
}

/// Receives each replayed entry: its LSN and bytes. An `Err` stops the replay.
pub type ReplayVisitor<'a> = dyn FnMut(Lsn, &[u8]) -> Result<(), String> + 'a;

/// An ordered, durable log per partition.
pub trait PartitionLog: Send + Sync {
    /// Appends each `(partition, entry)` durably, all or none, and returns
    /// the LSN each got. Several entries may name the same partition; they
    /// get consecutive LSNs in the order given.
    fn append(&self, entries: &[(u32, &[u8])]) -> Result<Vec<Lsn>, LogError>;
    /// Calls `visit` for every entry of `partition` with LSN above `after`,
    /// in order, and returns the last LSN of the log (or `after`).
    fn replay(
        &self,
        partition: u32,
        after: Lsn,
        visit: &mut ReplayVisitor<'_>,
    ) -> Result<Lsn, LogError>;
    /// Forgets entries up to and including `upto`, which a snapshot now covers.
    fn compact(&self, partition: u32, upto: Lsn) -> Result<(), LogError>;
    /// Bytes the partition's log holds (to decide when to snapshot).
    fn size(&self, partition: u32) -> u64;
}

/// Segments are rotated at this size so compaction can delete whole files.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Frame header: payload length u32, CRC32 u32, LSN u64.
const FRAME_HEADER: usize = 16;
/// Largest frame payload accepted when reading (a bound against garbage lengths).
const MAX_FRAME: usize = 1 << 30;

struct Segment {
    start: Lsn,
    path: PathBuf,
    len: u64,
}

struct PartitionFiles {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    next_lsn: Lsn,
}

/// [`PartitionLog`] on local disk.
pub struct LocalLog {
    partitions: Vec<Mutex<PartitionFiles>>,
    /// Fault injection for tests: appends fail once this many bytes were written.
    fail_after_bytes: Option<u64>,
    written: Mutex<u64>,
}

fn segment_path(dir: &Path, start: Lsn) -> PathBuf {
    dir.join(format!("{start:020}.log"))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends a CRC-checked frame holding `payload` under sequence number `lsn`.
pub(crate) fn frame(lsn: Lsn, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads frames from `bytes`; returns the frames and the length of the valid prefix.
pub(crate) fn read_frames(bytes: &[u8]) -> (Vec<(Lsn, std::ops::Range<usize>)>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER {
        let h = &bytes[pos..pos + FRAME_HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut lsn_bytes = [0u8; 8];
        lsn_bytes.copy_from_slice(&h[8..16]);
        let start = pos + FRAME_HEADER;
        if len > MAX_FRAME || bytes.len() - start < len {
            break;
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&lsn_bytes);
        hasher.update(&bytes[start..start + len]);
        if hasher.finalize() != crc {
            break;
        }
        frames.push((u64::from_le_bytes(lsn_bytes), start..start + len));
        pos = start + len;
    }
    (frames, pos)
}

impl LocalLog {
    /// Opens (creating as needed) the logs of `partitions` partitions under
    /// `dir`. A torn frame at the tail of a partition's last segment (a
    /// write that was never acknowledged) is cut off.
    pub fn open(
        dir: &Path,
        partitions: u32,
        fail_after_bytes: Option<u64>,
    ) -> Result<LocalLog, LogError> {
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let pdir = dir.join(format!("p{p:04}"));
            fs::create_dir_all(&pdir)?;
            let mut starts: Vec<Lsn> = Vec::new();
            for e in fs::read_dir(&pdir)? {
                let name = e?.file_name();
                let name = name.to_string_lossy();
                if let Some(stem) = name.strip_suffix(".log") {
                    if let Ok(start) = stem.parse::<Lsn>() {
                        starts.push(start);
                    }
                }
            }
            starts.sort_unstable();
            if starts.is_empty() {
                File::create(segment_path(&pdir, 1))?.sync_all()?;
                sync_dir(&pdir)?;
                starts.push(1);
            }
            let mut segments: Vec<Segment> = starts
                .iter()
                .map(|&start| {
                    let path = segment_path(&pdir, start);
                    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    Segment { start, path, len }
                })
                .collect();
            let last = segments
                .last_mut()
                .ok_or_else(|| io::Error::other("no segment"))?;
            let mut file = OpenOptions::new().read(true).write(true).open(&last.path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let (frames, valid) = read_frames(&bytes);
            if valid as u64 != last.len {
                tracing::warn!(
                    partition = p,
                    cut = last.len - valid as u64,
                    "cutting torn tail of partition log"
                );
                file.set_len(valid as u64)?;
                file.sync_all()?;
                last.len = valid as u64;
            }
            file.seek(SeekFrom::End(0))?;
            let next_lsn = frames.last().map_or(last.start, |(lsn, _)| lsn + 1);
            parts.push(Mutex::new(PartitionFiles {
                dir: pdir,
                segments,
                file,
                next_lsn,
            }));
        }
        Ok(LocalLog {
            partitions: parts,
            fail_after_bytes,
            written: Mutex::new(0),
        })
    }

    fn part(&self, p: u32) -> Result<std::sync::MutexGuard<'_, PartitionFiles>, LogError> {
        let m = self
            .partitions
            .get(p as usize)
            .ok_or_else(|| LogError::Io(io::Error::other(format!("no partition {p}"))))?;
        Ok(m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn charge(&self, bytes: u64) -> io::Result<()> {
        if let Some(limit) = self.fail_after_bytes {
            let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
            if *w + bytes > limit {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (injected fault)",
                ));
            }
            *w += bytes;
        }
        Ok(())
    }

    fn rotate(files: &mut PartitionFiles) -> io::Result<()> {
        let start = files.next_lsn;
        let path = segment_path(&files.dir, start);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        file.sync_all()?;
        sync_dir(&files.dir)?;
        files.file = file;
        files.segments.push(Segment {
            start,
            path,
            len: 0,
        });
        Ok(())
    }
}

impl PartitionLog for LocalLog {
    fn append(&self, entries: &[(u32, &[u8])]) -> Result<Vec<Lsn>, LogError> {
        let mut touched: Vec<u32> = entries.iter().map(|e| e.0).collect();
        touched.sort_unstable();
        touched.dedup();
        // Lock in ascending order; the committer is the only writer anyway.
        let mut guards = Vec::with_capacity(touched.len());
        for &p in &touched {
            guards.push(self.part(p)?);
        }
        let idx = |p: u32| touched.binary_search(&p).unwrap_or(0);
        let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); touched.len()];
        let mut next: Vec<Lsn> = guards.iter().map(|g| g.next_lsn).collect();
        let mut lsns = Vec::with_capacity(entries.len());
        for (p, payload) in entries {
            let i = idx(*p);
            frame(next[i], payload, &mut buffers[i]);
            lsns.push(next[i]);
            next[i] += 1;
        }
        let before: Vec<u64> = guards
            .iter()
            .map(|g| g.segments.last().map_or(0, |s| s.len))
            .collect();
        let result = (|| -> io::Result<()> {
            for (g, buf) in guards.iter_mut().zip(&buffers) {
                self.charge(buf.len() as u64)?;
                g.file.write_all(buf)?;
            }
            for g in guards.iter_mut() {
                g.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Roll every touched partition back so no part of the append survives.
            for (g, &len) in guards.iter_mut().zip(&before) {
                let undo = g
                    .file
                    .set_len(len)
                    .and_then(|_| g.file.seek(SeekFrom::Start(len)))
                    .and_then(|_| g.file.sync_data());
                if let Err(u) = undo {
                    tracing::error!(error = %u, "could not roll back a failed log append; the unacknowledged tail may be replayed");
                }
            }
            return Err(LogError::Io(e));
        }
        for ((g, buf), n) in guards.iter_mut().zip(&buffers).zip(next) {
            g.next_lsn = n;
            if let Some(seg) = g.segments.last_mut() {
                seg.len += buf.len() as u64;
                if seg.len >= SEGMENT_BYTES {
                    PartitionFiles::rotate_logged(g);
                }
            }
        }
        Ok(lsns)
    }

    fn replay(
        &self,
        partition: u32,
        after: Lsn,
        visit: &mut ReplayVisitor<'_>,
    ) -> Result<Lsn, LogError> {
        let files = self.part(partition)?;
        let mut last = after;
        for (i, seg) in files.segments.iter().enumerate() {
            if let Some(next) = files.segments.get(i + 1) {
                if next.start <= after + 1 {
                    continue;
                }
            }
            let bytes = fs::read(&seg.path)?;
            let (frames, valid) = read_frames(&bytes);
            if valid != bytes.len() {
                return Err(LogError::Corrupt {
                    partition,
                    file: seg.path.display().to_string(),
                    detail: format!("bad frame at byte {valid}"),
                });
            }
            for (lsn, range) in frames {
                if lsn <= after {
                    continue;
                }
                if lsn != last + 1 && last != 0 {
                    return Err(LogError::Corrupt {
                        partition,
                        file: seg.path.display().to_string(),
                        detail: format!("expected entry {} but found {lsn}", last + 1),
                    });
                }
                visit(lsn, &bytes[range]).map_err(LogError::Visit)?;
                last = lsn;
            }
        }
        Ok(last)
    }

    fn compact(&self, partition: u32, upto: Lsn) -> Result<(), LogError> {
        let mut files = self.part(partition)?;
        // Rotate so the covered entries sit in closed segments; a closed
        // segment that also holds later entries goes at the next compaction.
        if files
            .segments
            .last()
            .is_some_and(|s| s.start <= upto && s.len > 0)
        {
            LocalLog::rotate(&mut files)?;
        }
        let mut keep_from = 0;
        for i in 0..files.segments.len().saturating_sub(1) {
            if files.segments[i + 1].start <= upto + 1 {
                keep_from = i + 1;
            }
        }
        for seg in files.segments.drain(..keep_from) {
            fs::remove_file(&seg.path)?;
        }
        sync_dir(&files.dir)?;
        Ok(())
    }

    fn size(&self, partition: u32) -> u64 {
        self.part(partition)
            .map(|f| f.segments.iter().map(|s| s.len).sum())
            .unwrap_or(0)
    }
}

impl PartitionFiles {
    fn rotate_logged(files: &mut PartitionFiles) {
        // A failed rotation is not a failed append: the entries are durable in
        // the current segment, which simply keeps growing.
        if let Err(e) = LocalLog::rotate(files) {
            tracing::warn!(error = %e, "could not rotate partition log segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(log: &LocalLog, p: u32, after: Lsn) -> Vec<(Lsn, Vec<u8>)> {
        let mut out = Vec::new();
        log.replay(p, after, &mut |lsn, b| {
            out.push((lsn, b.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn append_replay_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LocalLog::open(dir.path(), 2, None).unwrap();
            assert_eq!(
                log.append(&[(0, b"a"), (1, b"b"), (0, b"c")]).unwrap(),
                vec![1, 1, 2]
            );
        }
        // Simulate a torn write at the tail of partition 0.
        let seg = dir.path().join("p0000").join(format!("{:020}.log", 1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let log = LocalLog::open(dir.path(), 2, None).unwrap();
        assert_eq!(
            collect(&log, 0, 0),
            vec![(1, b"a".to_vec()), (2, b"c".to_vec())]
        );
        assert_eq!(log.append(&[(0, b"d")]).unwrap(), vec![3]);
        assert_eq!(collect(&log, 0, 2), vec![(3, b"d".to_vec())]);
    }

    #[test]
    fn failed_append_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), 2, Some(40)).unwrap();
        log.append(&[(0, b"x")]).unwrap();
        assert!(log.append(&[(0, b"y"), (1, &[0u8; 30])]).is_err());
        drop(log);
        let log = LocalLog::open(dir.path(), 2, None).unwrap();
        assert_eq!(collect(&log, 0, 0), vec![(1, b"x".to_vec())]);
        assert!(collect(&log, 1, 0).is_empty());
        assert_eq!(log.append(&[(0, b"z")]).unwrap(), vec![2]);
    }

    #[test]
    fn compaction_deletes_covered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), 1, None).unwrap();
        log.append(&[(0, b"a"), (0, b"b")]).unwrap();
        log.compact(0, 2).unwrap();
        log.append(&[(0, b"c")]).unwrap();
        assert_eq!(collect(&log, 0, 2), vec![(3, b"c".to_vec())]);
        drop(log);
        let log = LocalLog::open(dir.path(), 1, None).unwrap();
        assert_eq!(collect(&log, 0, 2), vec![(3, b"c".to_vec())]);
        assert_eq!(log.append(&[(0, b"d")]).unwrap(), vec![4]);
    }
}
