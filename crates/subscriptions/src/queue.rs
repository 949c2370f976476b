//! One subscription's durable message stream: an append-only file of
//! framed messages plus a small state file with the acknowledged position
//! and counters. Pending messages are also held in memory for delivery.

use crate::frame::{self, Reader};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use store::record::CustomerKey;

/// Most messages waiting per subscription; older ones are dropped (rest spec 6.6.7).
pub const MAX_BACKLOG: usize = 1_000_000;
/// A queue file bigger than this is rewritten with only its pending messages.
const REWRITE_BYTES: u64 = 32 << 20;

/// What happened to the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Left the segment.
    Exited = 0,
    /// Joined the segment.
    Entered = 1,
    /// A re-event trigger's `emit(text)`.
    Emitted = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Exited => "exited",
            Kind::Entered => "entered",
            Kind::Emitted => "emitted",
        }
    }
}

/// One message of a subscription's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Position in the stream, from 1.
    pub seq: u64,
    /// When the change was detected, ms.
    pub stamp: i64,
    /// The customer.
    pub key: CustomerKey,
    /// Entered, exited or emitted.
    pub kind: Kind,
    /// The emitted text (re-event triggers only).
    pub text: Option<Box<str>>,
}

impl Message {
    /// Appends the message as delivered (rest spec 6.4) to `out`, as JSON.
    /// Written by hand: a `serde_json::Value` per message costs an ordered
    /// map and several allocations, and delivery shares the cores with inserts.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        let id = match &self.key {
            CustomerKey::Num(n) => n.to_string(),
            CustomerKey::Text(t) => Value::from(&**t).to_string(),
        };
        let _ = write!(
            out,
            r#"{{"seq":{},"stamp":{},"stamp_iso":"{}","id":{id},"uid":{id},"state":"{}""#,
            self.seq,
            self.stamp,
            store::stamp::format_iso8601(self.stamp),
            self.kind.name()
        );
        if let Some(t) = &self.text {
            let _ = write!(out, r#","message":{}"#, Value::from(&**t));
        }
        out.push('}');
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::with_capacity(40);
        p.extend_from_slice(&self.seq.to_le_bytes());
        p.extend_from_slice(&self.stamp.to_le_bytes());
        p.push(self.kind as u8);
        match &self.key {
            CustomerKey::Num(n) => {
                p.push(0);
                p.extend_from_slice(&n.to_le_bytes());
            }
            CustomerKey::Text(t) => {
                p.push(1);
                p.extend_from_slice(&(t.len() as u32).to_le_bytes());
                p.extend_from_slice(t.as_bytes());
            }
        }
        if let Some(t) = &self.text {
            p.extend_from_slice(&(t.len() as u32).to_le_bytes());
            p.extend_from_slice(t.as_bytes());
        }
        frame::push(out, &p);
    }

    fn decode(payload: &[u8]) -> Option<Message> {
        let mut r = Reader(payload);
        let seq = r.u64()?;
        let stamp = r.u64()? as i64;
        let kind = match r.u8()? {
            0 => Kind::Exited,
            1 => Kind::Entered,
            2 => Kind::Emitted,
            _ => return None,
        };
        let key = match r.u8()? {
            0 => CustomerKey::Num(r.u64()? as i64),
            _ => {
                let n = r.u32()? as usize;
                CustomerKey::Text(std::str::from_utf8(r.take(n)?).ok()?.into())
            }
        };
        let text = if kind == Kind::Emitted {
            let n = r.u32()? as usize;
            Some(std::str::from_utf8(r.take(n)?).ok()?.into())
        } else {
            None
        };
        Some(Message {
            seq,
            stamp,
            key,
            kind,
            text,
        })
    }
}

/// The persisted position and counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Position {
    /// Every message up to this seq is delivered or dropped.
    acked: u64,
    /// The seq the next message gets.
    next_seq: u64,
    delivered: u64,
    dropped: u64,
    /// Drops not yet reported in a successful call's `dropped` parameter.
    unreported: u64,
}

/// A subscription's stream on disk and in memory.
pub struct Queue {
    log_path: PathBuf,
    state_path: PathBuf,
    file: File,
    file_len: u64,
    /// Messages not yet acknowledged, oldest first.
    pub pending: VecDeque<Message>,
    pos: Position,
    /// Appends not yet synced.
    pub dirty: bool,
    /// Counters changed since the state file was written.
    pub state_dirty: bool,
}

impl Queue {
    /// Opens (creating) the queue files `q{id}.log` and `q{id}.json` in `dir`.
    pub fn open(dir: &std::path::Path, id: u64) -> io::Result<Queue> {
        let log_path = dir.join(format!("q{id}.log"));
        let state_path = dir.join(format!("q{id}.json"));
        let pos: Position = match fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Position {
                next_seq: 1,
                ..Default::default()
            },
            Err(e) => return Err(e),
        };
        let bytes = match fs::read(&log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (frames, good) = frame::read(&bytes);
        let mut q = Queue {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?,
            log_path,
            state_path,
            file_len: good as u64,
            pending: VecDeque::new(),
            pos,
            dirty: false,
            state_dirty: false,
        };
        if good < bytes.len() {
            tracing::warn!(file = %q.log_path.display(), "cutting a torn tail");
            q.file.set_len(good as u64)?;
        }
        for f in frames {
            let Some(m) = Message::decode(f) else {
                continue;
            };
            q.pos.next_seq = q.pos.next_seq.max(m.seq + 1);
            if m.seq > q.pos.acked {
                q.pending.push_back(m);
            }
        }
        q.pos.next_seq = q.pos.next_seq.max(q.pos.acked + 1);
        Ok(q)
    }

    /// Appends messages (numbering them) with one write; the bytes reach
    /// the OS before this returns, the disk at the next `sync`.
    pub fn append(
        &mut self,
        items: impl Iterator<Item = (i64, CustomerKey, Kind, Option<Box<str>>)>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        let first = self.pending.len();
        for (stamp, key, kind, text) in items {
            let m = Message {
                seq: self.pos.next_seq,
                stamp,
                key,
                kind,
                text,
            };
            self.pos.next_seq += 1;
            m.encode(&mut buf);
            self.pending.push_back(m);
        }
        if let Err(e) = self.file.write_all(&buf) {
            // Not stored, so not generated: forget them and cut any partial write.
            self.pending.truncate(first);
            let _ = self.file.set_len(self.file_len);
            return Err(e);
        }
        self.file_len += buf.len() as u64;
        self.dirty = true;
        if self.pending.len() > MAX_BACKLOG {
            let n = self.pending.len() - MAX_BACKLOG;
            self.drop_front(n);
        }
        Ok(())
    }

    fn drop_front(&mut self, n: usize) {
        for m in self.pending.drain(..n) {
            self.pos.acked = self.pos.acked.max(m.seq);
        }
        self.pos.dropped += n as u64;
        self.pos.unreported += n as u64;
        self.state_dirty = true;
    }

    /// Drops messages older than `retention` ms from the front; returns how many.
    pub fn expire(&mut self, now: i64, retention: i64) -> usize {
        let cutoff = now.saturating_sub(retention);
        let n = self.pending.iter().take_while(|m| m.stamp < cutoff).count();
        if n > 0 {
            self.drop_front(n);
        }
        n
    }

    /// Drops not yet reported to the hook.
    pub fn unreported(&self) -> u64 {
        self.pos.unreported
    }

    fn acked(
        pos: &mut Position,
        pending: &VecDeque<Message>,
        last_seq: u64,
        dropped: u64,
    ) -> usize {
        let n = pending.iter().take_while(|m| m.seq <= last_seq).count();
        pos.delivered += n as u64;
        pos.acked = pos.acked.max(last_seq);
        pos.unreported = pos.unreported.saturating_sub(dropped);
        n
    }

    /// The state file's path and content once a call that carried messages
    /// up to `last_seq` and reported `dropped` drops is acknowledged: written
    /// (outside the lock appends need) before `ack` makes it visible.
    pub fn position_after(&self, last_seq: u64, dropped: u64) -> Option<(PathBuf, Vec<u8>)> {
        let mut pos = self.pos.clone();
        Self::acked(&mut pos, &self.pending, last_seq, dropped);
        let bytes = serde_json::to_vec(&pos).ok()?;
        Some((self.state_path.clone(), bytes))
    }

    /// Records the acknowledgement in memory (see `position_after`).
    pub fn ack(&mut self, last_seq: u64, dropped: u64) {
        let n = Self::acked(&mut self.pos, &self.pending, last_seq, dropped);
        self.pending.drain(..n);
    }

    /// The state file's path and new content, when the position changed.
    pub fn state_snapshot(&mut self) -> Option<(PathBuf, Vec<u8>)> {
        if !self.state_dirty {
            return None;
        }
        self.state_dirty = false;
        let bytes = serde_json::to_vec(&self.pos).ok()?;
        Some((self.state_path.clone(), bytes))
    }

    /// After the state file was written: acknowledged messages leave the file.
    pub fn after_saved(&mut self) -> io::Result<()> {
        if self.pending.is_empty() && self.file_len > 0 {
            // Everything is acknowledged: the file restarts empty.
            self.file.set_len(0)?;
            self.file_len = 0;
        } else if self.file_len > REWRITE_BYTES {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Persists the position now (snapshot, write, compaction) under the caller's lock.
    pub fn save(&mut self) -> io::Result<()> {
        self.state_dirty = true;
        if let Some((path, bytes)) = self.state_snapshot() {
            frame::replace(&path, &bytes)?;
        }
        self.after_saved()
    }

    fn rewrite(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        for m in &self.pending {
            m.encode(&mut buf);
        }
        frame::replace(&self.log_path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&self.log_path)?;
        self.file_len = buf.len() as u64;
        self.dirty = false;
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

    /// Removes the files (the subscription is deleted).
    pub fn remove(&mut self) {
        let _ = fs::remove_file(&self.log_path);
        let _ = fs::remove_file(&self.state_path);
        self.pending.clear();
    }

    /// Messages generated so far (the last seq given out).
    pub fn last_seq(&self) -> u64 {
        self.pos.next_seq - 1
    }
    /// Messages acknowledged by the hook.
    pub fn delivered(&self) -> u64 {
        self.pos.delivered
    }
    /// Messages dropped by retention or the bound.
    pub fn dropped(&self) -> u64 {
        self.pos.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(keys: &[&str], stamp: i64) -> Vec<(i64, CustomerKey, Kind, Option<Box<str>>)> {
        keys.iter()
            .map(|k| (stamp, CustomerKey::Text((*k).into()), Kind::Entered, None))
            .collect()
    }

    #[test]
    fn survives_reopen_and_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(dir.path(), 1).unwrap();
            q.append(msgs(&["a", "b", "c"], 10).into_iter()).unwrap();
            q.ack(1, 0);
            q.save().unwrap();
        }
        let mut q = Queue::open(dir.path(), 1).unwrap();
        let seqs: Vec<u64> = q.pending.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!(q.delivered(), 1);
        q.append(vec![(11, CustomerKey::Num(-5), Kind::Emitted, Some("hi".into()))].into_iter())
            .unwrap();
        q.ack(3, 0);
        q.save().unwrap();
        drop(q);
        let q = Queue::open(dir.path(), 1).unwrap();
        assert_eq!(q.pending.len(), 1);
        assert_eq!(q.pending[0].seq, 4);
        assert_eq!(q.pending[0].key, CustomerKey::Num(-5));
        assert_eq!(q.pending[0].text.as_deref(), Some("hi"));
    }

    #[test]
    fn messages_render_as_the_spec_shows() {
        let m = Message {
            seq: 7,
            stamp: 1_710_064_800_000,
            key: CustomerKey::Text("a\"na".into()),
            kind: Kind::Emitted,
            text: Some("hi \"there\"".into()),
        };
        let mut out = String::new();
        m.write_json(&mut out);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq": 7, "stamp": 1_710_064_800_000i64,
                "stamp_iso": "2024-03-10T10:00:00Z", "id": "a\"na", "uid": "a\"na",
                "state": "emitted", "message": "hi \"there\""})
        );
        let mut out = String::new();
        Message {
            key: CustomerKey::Num(-3),
            kind: Kind::Exited,
            text: None,
            ..m
        }
        .write_json(&mut out);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["id"].clone(), v["uid"].clone(), v["state"].clone()),
            (
                serde_json::json!(-3),
                serde_json::json!(-3),
                serde_json::json!("exited")
            )
        );
    }

    #[test]
    fn expiry_counts_drops_until_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 2).unwrap();
        q.append(msgs(&["a", "b"], 10).into_iter()).unwrap();
        q.append(msgs(&["c"], 1000).into_iter()).unwrap();
        assert_eq!(q.expire(1500, 1000), 2);
        assert_eq!(q.pending.len(), 1);
        assert_eq!(q.unreported(), 2);
        q.ack(3, 2);
        assert_eq!((q.unreported(), q.dropped(), q.delivered()), (0, 2, 1));
        assert_eq!(q.last_seq(), 3);
    }
}
