//! Re-event triggers (rest spec 3.10, item 2; ADR 0004): a named script per
//! table whose `on_insert` function runs for every customer an insert
//! touched, right after `on_insert` segments. `emit(text)` becomes a message
//! `{state: "emitted", message}` on the channel named after the trigger (to
//! which subscriptions attach like to a segment); `schedule(span, "fn")`
//! records a durable per-customer timer that runs `fn` later.
//!
//! Timers live in `timers.log` (frames: set or done), one per (trigger,
//! customer, function): scheduling again replaces the earlier timer. A timer
//! is marked done after its run, so a crash in between runs it again.

use crate::frame::{self, Reader};
use osl::trigger::{compile_trigger, effects, TriggerFunction};
use osl::RunContext;
use query::view::{osl_schema, StoredCustomer};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use store::partition::TablePartition;
use store::record::CustomerKey;
use store::schema::TableSchema;

/// A stored trigger definition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TriggerDef {
    /// Table name.
    pub table: String,
    /// Table incarnation.
    pub table_uid: u64,
    /// Trigger name.
    pub name: String,
    /// Its source.
    pub script: String,
}

/// A trigger ready to run.
pub struct Compiled {
    /// Trigger name.
    pub name: String,
    functions: Vec<TriggerFunction>,
    session_time: i64,
}

impl Compiled {
    fn function(&self, name: &str) -> Option<&TriggerFunction> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Compiles a trigger script against a table.
pub fn compile(
    schema: &TableSchema,
    name: &str,
    script: &str,
) -> Result<Compiled, osl::CompileError> {
    Ok(Compiled {
        name: name.to_string(),
        functions: compile_trigger(script, &osl_schema(schema))?,
        session_time: schema.settings.session_time,
    })
}

/// A pending scheduled run.
#[derive(Clone, Debug, PartialEq)]
pub struct Timer {
    /// Unique id (the `done` record names it).
    pub id: u64,
    /// When it is due, ms.
    pub due: i64,
    /// Table incarnation.
    pub table_uid: u64,
    /// Trigger name.
    pub trigger: String,
    /// Partition of the customer.
    pub partition: u32,
    /// Customer index in its table partition.
    pub ci: u32,
    /// Customer id.
    pub key: CustomerKey,
    /// Function to run.
    pub function: String,
}

type Owner = (u64, String, CustomerKey, String);

/// The durable timer set.
pub struct Timers {
    path: PathBuf,
    file: File,
    next_id: u64,
    by_due: BTreeMap<(i64, u64), Timer>,
    by_owner: FxHashMap<Owner, (i64, u64)>,
    /// Appends not yet synced.
    pub dirty: bool,
}

const SET: u8 = 1;
const DONE: u8 = 2;

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn get_str(r: &mut Reader<'_>) -> Option<String> {
    let n = r.u32()? as usize;
    Some(std::str::from_utf8(r.take(n)?).ok()?.to_string())
}

fn encode_set(t: &Timer, out: &mut Vec<u8>) {
    let mut p = vec![SET];
    p.extend_from_slice(&t.id.to_le_bytes());
    p.extend_from_slice(&t.due.to_le_bytes());
    p.extend_from_slice(&t.table_uid.to_le_bytes());
    p.extend_from_slice(&t.partition.to_le_bytes());
    p.extend_from_slice(&t.ci.to_le_bytes());
    put_str(&mut p, &t.trigger);
    put_str(&mut p, &t.function);
    match &t.key {
        CustomerKey::Num(n) => {
            p.push(0);
            p.extend_from_slice(&n.to_le_bytes());
        }
        CustomerKey::Text(s) => {
            p.push(1);
            put_str(&mut p, s);
        }
    }
    frame::push(out, &p);
}

fn decode_set(r: &mut Reader<'_>) -> Option<Timer> {
    let id = r.u64()?;
    let due = r.u64()? as i64;
    let table_uid = r.u64()?;
    let partition = r.u32()?;
    let ci = r.u32()?;
    let trigger = get_str(r)?;
    let function = get_str(r)?;
    let key = match r.u8()? {
        0 => CustomerKey::Num(r.u64()? as i64),
        _ => CustomerKey::Text(get_str(r)?.into()),
    };
    Some(Timer {
        id,
        due,
        table_uid,
        trigger,
        partition,
        ci,
        key,
        function,
    })
}

impl Timers {
    /// Opens `dir/timers.log`, replays it and rewrites it with the live timers.
    pub fn open(dir: &Path) -> io::Result<Timers> {
        let path = dir.join("timers.log");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut t = Timers {
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            next_id: 1,
            by_due: BTreeMap::new(),
            by_owner: FxHashMap::default(),
            dirty: false,
        };
        for f in frame::read(&bytes).0 {
            let mut r = Reader(f);
            match r.u8() {
                Some(SET) => {
                    if let Some(timer) = decode_set(&mut r) {
                        t.next_id = t.next_id.max(timer.id + 1);
                        t.insert(timer);
                    }
                }
                Some(DONE) => {
                    if let Some(id) = r.u64() {
                        t.remove_id(id);
                    }
                }
                _ => {}
            }
        }
        let mut buf = Vec::new();
        for timer in t.by_due.values() {
            encode_set(timer, &mut buf);
        }
        frame::replace(&t.path, &buf)?;
        t.file = OpenOptions::new().append(true).open(&t.path)?;
        Ok(t)
    }

    fn owner(t: &Timer) -> Owner {
        (
            t.table_uid,
            t.trigger.clone(),
            t.key.clone(),
            t.function.clone(),
        )
    }

    fn insert(&mut self, timer: Timer) {
        if let Some(old) = self
            .by_owner
            .insert(Self::owner(&timer), (timer.due, timer.id))
        {
            self.by_due.remove(&old);
        }
        self.by_due.insert((timer.due, timer.id), timer);
    }

    fn remove_id(&mut self, id: u64) {
        let Some(k) = self.by_due.keys().find(|k| k.1 == id).copied() else {
            return;
        };
        if let Some(t) = self.by_due.remove(&k) {
            self.by_owner.remove(&Self::owner(&t));
        }
    }

    /// Schedules (replacing the same owner's timer); written before returning.
    pub fn add(&mut self, mut timer: Timer) -> io::Result<()> {
        timer.id = self.next_id;
        self.next_id += 1;
        let mut buf = Vec::new();
        encode_set(&timer, &mut buf);
        self.file.write_all(&buf)?;
        self.dirty = true;
        self.insert(timer);
        Ok(())
    }

    /// Takes the timers due at `now` (they stay on disk until `done`).
    pub fn take_due(&mut self, now: i64) -> Vec<Timer> {
        let mut out = Vec::new();
        while let Some(e) = self.by_due.first_entry() {
            if e.key().0 > now {
                break;
            }
            let t = e.remove();
            self.by_owner.remove(&Self::owner(&t));
            out.push(t);
        }
        out
    }

    /// Records that a timer ran.
    pub fn done(&mut self, id: u64) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut p = vec![DONE];
        p.extend_from_slice(&id.to_le_bytes());
        frame::push(&mut buf, &p);
        self.file.write_all(&buf)?;
        self.dirty = true;
        Ok(())
    }

    /// Forgets the timers of a trigger (it was deleted), durably.
    pub fn forget(&mut self, table_uid: u64, trigger: &str) -> io::Result<()> {
        let gone: Vec<u64> = self
            .by_due
            .values()
            .filter(|t| t.table_uid == table_uid && (trigger.is_empty() || t.trigger == trigger))
            .map(|t| t.id)
            .collect();
        for id in gone {
            self.remove_id(id);
            self.done(id)?;
        }
        Ok(())
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.by_due.len()
    }

    /// True when none wait.
    pub fn is_empty(&self) -> bool {
        self.by_due.is_empty()
    }

    /// A handle to sync outside the lock when appends are unsynced.
    pub fn take_dirty(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.file.try_clone().ok()
    }
}

/// Triggers of every table, compiled.
#[derive(Default)]
pub struct Registry {
    /// Definitions, persisted in `triggers.json`.
    pub defs: Mutex<Vec<TriggerDef>>,
    compiled: RwLock<FxHashMap<u64, Arc<Vec<Arc<Compiled>>>>>,
}

/// What runs produced: messages per trigger and timers to add.
#[derive(Default)]
pub struct Produced {
    /// (trigger, customer, message text)
    pub emitted: Vec<(String, CustomerKey, String)>,
    /// Timers to add (ids assigned on add).
    pub timers: Vec<Timer>,
}

impl Registry {
    /// Replaces the compiled triggers of a table.
    pub fn set_compiled(&self, uid: u64, list: Vec<Arc<Compiled>>) {
        let mut c = self.compiled.write().unwrap_or_else(|e| e.into_inner());
        if list.is_empty() {
            c.remove(&uid);
        } else {
            c.insert(uid, Arc::new(list));
        }
    }

    /// The compiled triggers of a table.
    pub fn of(&self, uid: u64) -> Option<Arc<Vec<Arc<Compiled>>>> {
        self.compiled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .cloned()
    }

    /// True when the table has a trigger of that name.
    pub fn has(&self, uid: u64, name: &str) -> bool {
        self.of(uid)
            .is_some_and(|l| l.iter().any(|t| t.name == name))
    }
}

/// Runs `function` of `trigger` for customer `ci` of `tp`, collecting effects.
#[allow(clippy::too_many_arguments)]
pub fn run_one(
    trigger: &Compiled,
    function: &str,
    tp: &TablePartition,
    uid: u64,
    partition: u32,
    ci: u32,
    now: i64,
    out: &mut Produced,
) {
    let Some(f) = trigger.function(function) else {
        return;
    };
    let Some(view) = StoredCustomer::of(tp, ci) else {
        return;
    };
    let ctx = RunContext {
        now,
        session_time: trigger.session_time,
        ..RunContext::default()
    };
    let mut state = f.program.new_state();
    let mut tree = f.program.new_tree(1);
    // A run-time fault ends the run without effects, as for segments.
    let Ok(outcome) = f.program.run(&view, &ctx, &mut state, &mut tree) else {
        return;
    };
    let fx = effects(&outcome);
    let key = view.customer.key.clone();
    if let Some(text) = fx.emit {
        out.emitted.push((trigger.name.clone(), key.clone(), text));
    }
    for (delay, function) in fx.schedule {
        out.timers.push(Timer {
            id: 0,
            due: now.saturating_add(delay),
            table_uid: uid,
            trigger: trigger.name.clone(),
            partition,
            ci,
            key: key.clone(),
            function,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(due: i64, key: &str, function: &str) -> Timer {
        Timer {
            id: 0,
            due,
            table_uid: 1,
            trigger: "t".into(),
            partition: 0,
            ci: 3,
            key: CustomerKey::Text(key.into()),
            function: function.into(),
        }
    }

    #[test]
    fn timers_replace_per_owner_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut t = Timers::open(dir.path()).unwrap();
            t.add(timer(100, "ana", "nudge")).unwrap();
            t.add(timer(50, "bo", "nudge")).unwrap();
            // Scheduling again replaces ana's timer.
            t.add(timer(300, "ana", "nudge")).unwrap();
            t.add(timer(200, "ana", "other")).unwrap();
            assert_eq!(t.len(), 3);
            let due = t.take_due(150);
            assert_eq!(due.len(), 1);
            t.done(due[0].id).unwrap();
        }
        let mut t = Timers::open(dir.path()).unwrap();
        let taken = t.take_due(1000);
        let due: Vec<(i64, &str)> = taken.iter().map(|x| (x.due, &*x.function)).collect();
        assert_eq!(due, [(200, "other"), (300, "nudge")]);
        // Taken but not done: a crash would run them again; done: gone.
        for x in &taken {
            t.done(x.id).unwrap();
        }
        t.add(timer(10, "cy", "nudge")).unwrap();
        t.forget(1, "t").unwrap();
        assert!(t.is_empty());
        drop(t);
        assert!(Timers::open(dir.path()).unwrap().is_empty());
    }
}
