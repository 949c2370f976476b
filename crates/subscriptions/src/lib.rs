//! Subscriptions (rest spec 6): webhooks told when customers enter or leave
//! a segment. Membership flips arrive from the segment registry through
//! `query::segment::ChangeSink` while the partition is write-locked; they
//! are appended to one durable queue per subscription (no network on that
//! path) and delivered by one thread per subscription.
//!
//! Files in `{data_dir}/subscriptions/`: `subscriptions.json` (definitions),
//! `q{id}.log` + `q{id}.json` (a subscription's stream and position), and
//! `j{table uid}-{segment}.log` (the announced membership of a subscribed
//! segment, the diff base at start-up), `triggers.json` and `timers.log`
//! (re-event triggers, `revent`). See ADR 0004.

mod deliver;
pub mod frame;
mod journal;
pub mod queue;
pub mod revent;

use journal::Journal;
use query::segment::{Change, ChangeSink, SegmentRegistry};
use queue::{Kind, Queue};
use revent::{Produced, Registry, Timers, TriggerDef};
use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use store::catalog::Catalog;
use store::db::ApplyObserver;
use store::partition::PartitionState;
use store::record::CustomerKey;
use store::schema::TableSchema;
use store::Db;

/// Default retention of undelivered messages: 3 hours.
pub const DEFAULT_RETENTION_MS: i64 = 3 * 3600 * 1000;
/// How often appended messages are forced to disk.
const SYNC_EVERY: Duration = Duration::from_millis(200);
const DEFS_FILE: &str = "subscriptions.json";
const TRIGGERS_FILE: &str = "triggers.json";

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where and how a subscription's hook is called.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path, starting with `/`, possibly with its own query string.
    pub path: String,
    /// Undelivered messages older than this (ms) are dropped.
    pub retention: i64,
}

impl Target {
    /// Reads and checks a subscribe body (rest spec 6.1).
    pub fn parse(body: &Value) -> Result<Target, SubError> {
        let bad = |d: &str| Err(SubError::Bad(d.to_string()));
        let Value::Object(o) = body else {
            return bad("subscription body must be a JSON object");
        };
        let host = match o.get("host") {
            Some(Value::String(h)) if !h.trim().is_empty() => h.trim().to_string(),
            _ => {
                return bad("host is required (path and port are optional and default to / and 80 respectively.")
            }
        };
        if host.contains(['/', '?', '#', '@', ' ']) {
            return bad("host must be a host name or IP address");
        }
        let port = match o.get("port") {
            None | Some(Value::Null) => 80,
            Some(v) => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) if p > 0 => p,
                _ => return bad("port must be an integer from 1 to 65535"),
            },
        };
        let path = match o.get("path") {
            None | Some(Value::Null) => "/".to_string(),
            Some(Value::String(p)) if p.starts_with('/') && !p.contains([' ', '#']) => p.clone(),
            _ => return bad("path must start with /"),
        };
        let retention = match o.get("retention") {
            None | Some(Value::Null) => DEFAULT_RETENTION_MS,
            Some(v) => match v.as_i64() {
                Some(r) if r >= 1000 => r,
                _ => return bad("retention must be an integer of at least 1000 (ms)"),
            },
        };
        let scheme = match o.get("scheme") {
            None | Some(Value::Null) => "http".to_string(),
            Some(Value::String(s)) if s == "http" || s == "https" => s.clone(),
            _ => return bad("scheme must be http or https"),
        };
        Ok(Target {
            scheme,
            host,
            port,
            path,
            retention,
        })
    }

    fn base(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}{}", self.scheme, self.port, self.path)
    }

    /// The hook's URL with the delivery parameters appended.
    pub fn url(
        &self,
        segment: &str,
        subscriber: &str,
        count: usize,
        remaining: usize,
        dropped: u64,
    ) -> String {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        let mut url = format!(
            "{}{sep}segment={segment}&subscriber={subscriber}&count={count}&remaining={remaining}",
            self.base()
        );
        if dropped > 0 {
            url.push_str(&format!("&dropped={dropped}"));
        }
        url
    }
}

/// Why a subscription call failed.
#[derive(Debug, PartialEq)]
pub enum SubError {
    /// A table, segment or subscription that does not exist (404).
    NotFound(String),
    /// A bad request or a failed test call (400).
    Bad(String),
    /// A trigger script that does not compile (400 with the OSL error).
    Compile(osl::CompileError),
    /// Storage failed (503).
    Storage(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SubDef {
    id: u64,
    table: String,
    table_uid: u64,
    segment: String,
    subscriber: String,
    target: Target,
}

#[derive(Default, Serialize, Deserialize)]
struct Defs {
    next_id: u64,
    subs: Vec<SubDef>,
}

/// A subscription's mutable state, under one lock.
pub(crate) struct SubState {
    pub(crate) queue: Queue,
    pub(crate) last_success: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) failing: bool,
    /// Deleted: its files are gone and nothing may be written again.
    pub(crate) removed: bool,
}

/// One subscription.
pub(crate) struct Sub {
    id: u64,
    table_uid: u64,
    pub(crate) segment: String,
    pub(crate) subscriber: String,
    target: Mutex<Target>,
    state: Mutex<SubState>,
    /// Signalled on new messages and on removal.
    pub(crate) wake: Condvar,
    pub(crate) stop: AtomicBool,
}

impl Sub {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SubState> {
        lock(&self.state)
    }
    pub(crate) fn target(&self) -> Target {
        lock(&self.target).clone()
    }
}

/// Everyone listening to one segment (or trigger) of one table.
struct Feed {
    /// Announced membership (segments only).
    journal: Option<Mutex<Journal>>,
    subs: RwLock<Vec<Arc<Sub>>>,
    /// False until the journal holds a base: until then flips are not announced.
    seeded: AtomicBool,
}

type Feeds = FxHashMap<u64, FxHashMap<String, Arc<Feed>>>;
/// Announced memberships per partition.
type Sets = Vec<(u32, RoaringBitmap)>;

/// Running totals of delivery calls (not test calls), for `/metrics`.
#[derive(Default)]
pub(crate) struct CallCounts {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// The trust store for `https` hooks: the bundled web roots plus every
/// certificate of the PEM file `extra_ca` (a private CA, a self-signed hook).
pub fn webhook_roots(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        let what = |e: &dyn std::fmt::Display| format!("--webhook-ca-file {}: {e}", path.display());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| what(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| what(&e))?;
        if certs.is_empty() {
            return Err(what(&"no certificate found"));
        }
        for c in certs {
            roots.add(c).map_err(|e| what(&e))?;
        }
    }
    Ok(roots)
}

/// All subscriptions of the node.
pub struct Hub {
    dir: PathBuf,
    defs: Mutex<Defs>,
    feeds: RwLock<Feeds>,
    baselines: Mutex<FxHashMap<(u64, String), Sets>>,
    agent: ureq::Agent,
    calls: Arc<CallCounts>,
    running: AtomicBool,
    triggers: Registry,
    timers: Mutex<Timers>,
}

fn journal_path(dir: &Path, uid: u64, segment: &str) -> PathBuf {
    dir.join(format!("j{uid}-{segment}.log"))
}

impl Hub {
    /// Opens the subscriptions of `{data_dir}/subscriptions`, dropping those
    /// whose table or segment is gone, and reads each subscribed segment's
    /// announced membership (handed out once through `baseline`). `tls`
    /// is the client config for `https` hooks.
    pub fn open(
        data_dir: &Path,
        catalog: &Catalog,
        tls: Arc<rustls::ClientConfig>,
    ) -> io::Result<Arc<Hub>> {
        let dir = data_dir.join("subscriptions");
        fs::create_dir_all(&dir)?;
        let mut defs: Defs = match fs::read(dir.join(DEFS_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Defs::default(),
            Err(e) => return Err(e),
        };
        let hub = Hub {
            timers: Mutex::new(Timers::open(&dir)?),
            dir,
            defs: Mutex::new(Defs::default()),
            feeds: RwLock::new(FxHashMap::default()),
            baselines: Mutex::new(FxHashMap::default()),
            agent: deliver::agent(tls),
            calls: Arc::default(),
            running: AtomicBool::new(false),
            triggers: Registry::default(),
        };
        hub.open_triggers(catalog)?;
        let before = defs.subs.len();
        defs.subs.retain(|d| {
            let alive = catalog.tables.get(&d.table).is_some_and(|t| {
                t.uid == d.table_uid
                    && (t.segments.contains_key(&d.segment) || hub.triggers.has(t.uid, &d.segment))
            });
            if !alive {
                let _ = fs::remove_file(hub.dir.join(format!("q{}.log", d.id)));
                let _ = fs::remove_file(hub.dir.join(format!("q{}.json", d.id)));
            }
            alive
        });
        for d in &defs.subs {
            let feed = hub.feed_for_open(d.table_uid, &d.segment)?;
            let sub = hub.new_sub(d)?;
            feed.subs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(sub);
        }
        let changed = before != defs.subs.len();
        *lock(&hub.defs) = defs;
        if changed {
            hub.save_defs(&lock(&hub.defs))?;
        }
        // Journals nobody listens to any more.
        if let Ok(entries) = fs::read_dir(&hub.dir) {
            let feeds = hub.feeds.read().unwrap_or_else(|e| e.into_inner());
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix('j').and_then(|r| r.strip_suffix(".log")) else {
                    continue;
                };
                let known = rest.split_once('-').is_some_and(|(uid, seg)| {
                    uid.parse::<u64>()
                        .ok()
                        .and_then(|u| feeds.get(&u))
                        .is_some_and(|m| m.contains_key(seg))
                });
                if !known {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Arc::new(hub))
    }

    /// The feed of a subscribed segment at open, its baseline loaded.
    fn feed_for_open(&self, uid: u64, segment: &str) -> io::Result<Arc<Feed>> {
        let mut feeds = self.feeds.write().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = feeds.get(&uid).and_then(|m| m.get(segment)) {
            return Ok(f.clone());
        }
        let feed = if self.triggers.has(uid, segment) {
            Arc::new(Feed {
                journal: None,
                subs: RwLock::new(Vec::new()),
                seeded: AtomicBool::new(true),
            })
        } else {
            let path = journal_path(&self.dir, uid, segment);
            let baseline = Journal::load(&path)?;
            let seeded = baseline.is_some();
            if let Some(b) = baseline {
                lock(&self.baselines).insert((uid, segment.to_string()), b);
            }
            Arc::new(Feed {
                journal: Some(Mutex::new(Journal::open(&path)?)),
                subs: RwLock::new(Vec::new()),
                seeded: AtomicBool::new(seeded),
            })
        };
        feeds
            .entry(uid)
            .or_default()
            .insert(segment.to_string(), feed.clone());
        Ok(feed)
    }

    fn new_sub(&self, d: &SubDef) -> io::Result<Arc<Sub>> {
        Ok(Arc::new(Sub {
            id: d.id,
            table_uid: d.table_uid,
            segment: d.segment.clone(),
            subscriber: d.subscriber.clone(),
            target: Mutex::new(d.target.clone()),
            state: Mutex::new(SubState {
                queue: Queue::open(&self.dir, d.id)?,
                last_success: None,
                last_error: None,
                failing: false,
                removed: false,
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        }))
    }

    fn save_defs(&self, defs: &Defs) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(defs).map_err(io::Error::other)?;
        frame::replace(&self.dir.join(DEFS_FILE), &bytes)
    }

    fn all_subs(&self) -> Vec<Arc<Sub>> {
        let feeds = self.feeds.read().unwrap_or_else(|e| e.into_inner());
        feeds
            .values()
            .flat_map(|m| m.values())
            .flat_map(|f| f.subs.read().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// After the start-up evaluation: rewrites every journal as the current
    /// memberships (so journals do not grow across restarts) and starts
    /// announcing flips of segments whose journal was missing.
    pub fn compact_journals(&self, db: &Db) {
        let Ok(engine) = db.engine() else { return };
        let feeds = self.feeds.read().unwrap_or_else(|e| e.into_inner());
        for (uid, m) in feeds.iter() {
            for (segment, feed) in m {
                let Some(j) = &feed.journal else { continue };
                let sets: Vec<(u32, RoaringBitmap)> = (0..engine.partition_count())
                    .map(|p| {
                        let st = engine.read(p);
                        let set = st
                            .tables
                            .get(uid)
                            .and_then(|t| t.segments.get(segment))
                            .cloned()
                            .unwrap_or_default();
                        (p, set)
                    })
                    .collect();
                if let Err(e) = lock(j).rewrite(&sets) {
                    tracing::warn!(%segment, error = %e, "cannot compact a subscription journal");
                    continue;
                }
                feed.seeded.store(true, Ordering::Release);
            }
        }
        lock(&self.baselines).clear();
    }

    /// Starts delivery (one thread per subscription) and the periodic sync.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        self.running.store(true, Ordering::Release);
        for sub in self.all_subs() {
            self.spawn_delivery(sub)?;
        }
        let hub = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("subs-sync".into())
            .spawn(move || loop {
                std::thread::sleep(SYNC_EVERY);
                let Some(hub) = hub.upgrade() else { return };
                hub.sync();
            })?;
        Ok(())
    }

    fn spawn_delivery(&self, sub: Arc<Sub>) -> io::Result<()> {
        if std::env::var("XX_NO_DELIVERY").is_ok() {
            return Ok(());
        }
        let (agent, calls) = (self.agent.clone(), self.calls.clone());
        std::thread::Builder::new()
            .name(format!("subs-{}", sub.id))
            .spawn(move || deliver::run(agent, sub, &calls))?;
        Ok(())
    }

    /// Forces appended messages and journal records to disk. The file is
    /// synced through a duplicate handle, so appends are not held up.
    pub fn sync(&self) {
        let handle = lock(&self.timers).take_dirty();
        if let Some(Err(e)) = handle.map(|h| h.sync_data()) {
            tracing::warn!(error = %e, "cannot sync trigger timers");
        }
        let feeds: Vec<Arc<Feed>> = {
            let f = self.feeds.read().unwrap_or_else(|e| e.into_inner());
            f.values().flat_map(|m| m.values().cloned()).collect()
        };
        for feed in feeds {
            if let Some(j) = &feed.journal {
                let handle = lock(j).take_dirty();
                if let Some(Err(e)) = handle.map(|h| h.sync_data()) {
                    tracing::warn!(error = %e, "cannot sync a subscription journal");
                }
            }
            for sub in feed.subs.read().unwrap_or_else(|e| e.into_inner()).iter() {
                let handle = {
                    let mut st = sub.lock();
                    if st.removed {
                        continue;
                    }
                    st.queue.take_dirty()
                };
                if let Some(Err(e)) = handle.map(|h| h.sync_data()) {
                    tracing::warn!(error = %e, "cannot sync a subscription queue");
                }
            }
        }
    }

    /// Creates or updates a subscription (rest spec 6.1): checks the
    /// segment, makes the test call, then stores it durably.
    pub fn subscribe(
        &self,
        db: &Db,
        table: &str,
        segment: &str,
        subscriber: &str,
        target: Target,
    ) -> Result<(), SubError> {
        let schema = db
            .table(table)
            .map_err(|_| SubError::NotFound("table not found".into()))?;
        let is_trigger = self.triggers.has(schema.uid, segment);
        let def = schema.segments.get(segment);
        if def.is_none() && !is_trigger {
            return Err(SubError::NotFound(format!(
                "segment: '{segment}' not found."
            )));
        }
        if def.is_some_and(|d| d.refresh_ms.is_none() && !d.on_insert) {
            return Err(SubError::Bad(format!(
                "segment: '{segment}' is not maintained (needs refresh or on_insert)"
            )));
        }
        if let Err(e) = deliver::test_call(&self.agent, &target, segment, subscriber) {
            // The spec's text; a transport failure (refused, TLS) adds why.
            let mut d = format!("Expecting 2xx response from {}.", target.base());
            if let deliver::CallError::Transport(why) = e {
                d.push(' ');
                d.push_str(&why);
            }
            return Err(SubError::Bad(d));
        }
        let storage = |e: io::Error| SubError::Storage(e.to_string());
        let mut defs = lock(&self.defs);
        if let Some(i) = defs
            .subs
            .iter()
            .position(|d| d.table == table && d.segment == segment && d.subscriber == subscriber)
        {
            // An update keeps the backlog and the numbering.
            defs.subs[i].target = target.clone();
            self.save_defs(&defs).map_err(storage)?;
            if let Some(sub) = self
                .all_subs()
                .into_iter()
                .find(|s| s.id == defs.subs[i].id)
            {
                *lock(&sub.target) = target;
                sub.wake.notify_all();
            }
            return Ok(());
        }
        defs.next_id += 1;
        let d = SubDef {
            id: defs.next_id,
            table: table.to_string(),
            table_uid: schema.uid,
            segment: segment.to_string(),
            subscriber: subscriber.to_string(),
            target,
        };
        // Leftovers of an earlier life of this id (a crash mid-create).
        let _ = fs::remove_file(self.dir.join(format!("q{}.log", d.id)));
        let _ = fs::remove_file(self.dir.join(format!("q{}.json", d.id)));
        let sub = self.new_sub(&d).map_err(storage)?;
        let feed = self
            .feed_for_new(db, schema.uid, segment)
            .map_err(storage)?;
        defs.subs.push(d);
        if let Err(e) = self.save_defs(&defs) {
            defs.subs.pop();
            return Err(storage(e));
        }
        feed.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub.clone());
        if self.running.load(Ordering::Acquire) {
            self.spawn_delivery(sub).map_err(storage)?;
        }
        Ok(())
    }

    /// The feed of a segment that gets its first subscriber now: its journal
    /// starts with the current membership of every partition.
    fn feed_for_new(&self, db: &Db, uid: u64, segment: &str) -> io::Result<Arc<Feed>> {
        if let Some(f) = self
            .feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .and_then(|m| m.get(segment))
        {
            return Ok(f.clone());
        }
        let journal = if self.triggers.has(uid, segment) {
            None
        } else {
            let path = journal_path(&self.dir, uid, segment);
            let _ = fs::remove_file(&path);
            Some(Mutex::new(Journal::open(&path)?))
        };
        let feed = Arc::new(Feed {
            journal,
            subs: RwLock::new(Vec::new()),
            seeded: AtomicBool::new(true),
        });
        // Listening first, then a base per partition under its lock: flips
        // before a base are overwritten by it, flips after it follow it.
        self.feeds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(uid)
            .or_default()
            .insert(segment.to_string(), feed.clone());
        if let (Ok(engine), Some(j)) = (db.engine(), &feed.journal) {
            for p in 0..engine.partition_count() {
                let st = engine.read(p);
                let empty = RoaringBitmap::new();
                let set = st
                    .tables
                    .get(&uid)
                    .and_then(|t| t.segments.get(segment))
                    .unwrap_or(&empty);
                lock(j).base(p, set)?;
            }
        }
        Ok(feed)
    }

    /// Removes subscriptions matching `pick`; returns their segments.
    fn remove_where(&self, pick: impl Fn(&SubDef) -> bool) -> Result<Vec<String>, SubError> {
        let mut defs = lock(&self.defs);
        let (gone, kept): (Vec<SubDef>, Vec<SubDef>) =
            std::mem::take(&mut defs.subs).into_iter().partition(&pick);
        defs.subs = kept;
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let saved = self.save_defs(&defs);
        let mut feeds = self.feeds.write().unwrap_or_else(|e| e.into_inner());
        for d in &gone {
            let Some(m) = feeds.get_mut(&d.table_uid) else {
                continue;
            };
            let Some(feed) = m.get(&d.segment).cloned() else {
                continue;
            };
            let mut subs = feed.subs.write().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| {
                if s.id != d.id {
                    return true;
                }
                let mut st = s.lock();
                st.removed = true;
                st.queue.remove();
                s.stop.store(true, Ordering::Release);
                s.wake.notify_all();
                false
            });
            if subs.is_empty() {
                if let Some(j) = &feed.journal {
                    lock(j).remove();
                }
                m.remove(&d.segment);
            }
        }
        feeds.retain(|_, m| !m.is_empty());
        saved.map_err(|e| SubError::Storage(e.to_string()))?;
        Ok(gone.into_iter().map(|d| d.segment).collect())
    }

    /// Deletes one subscription and its backlog (rest spec 6.2).
    pub fn unsubscribe(
        &self,
        table: &str,
        segment: &str,
        subscriber: &str,
    ) -> Result<(), SubError> {
        let gone = self.remove_where(|d| {
            d.table == table && d.segment == segment && d.subscriber == subscriber
        })?;
        if gone.is_empty() {
            return Err(SubError::NotFound(format!(
                "subscriber name not found: '{subscriber}'"
            )));
        }
        Ok(())
    }

    /// Deletes every subscription of `subscriber` in `table`; returns the segments.
    pub fn unsubscribe_all(&self, table: &str, subscriber: &str) -> Result<Vec<String>, SubError> {
        let gone = self.remove_where(|d| d.table == table && d.subscriber == subscriber)?;
        if gone.is_empty() {
            return Err(SubError::NotFound(format!(
                "subscriber name not found: '{subscriber}'"
            )));
        }
        Ok(gone)
    }

    /// Deletes the subscriptions, triggers and timers of a dropped table.
    pub fn drop_table(&self, uid: u64) {
        if let Err(e) = self.remove_where(|d| d.table_uid == uid) {
            tracing::warn!(error = ?e, "removing subscriptions of a dropped table");
        }
        let names: Vec<String> = lock(&self.triggers.defs)
            .iter()
            .filter(|d| d.table_uid == uid)
            .map(|d| d.name.clone())
            .collect();
        for n in names {
            let _ = self.drop_trigger(uid, &n);
        }
    }

    /// Deletes the subscriptions of removed segments.
    pub fn drop_segments(&self, uid: u64, names: &[String]) {
        if let Err(e) = self.remove_where(|d| d.table_uid == uid && names.contains(&d.segment)) {
            tracing::warn!(error = ?e, "removing subscriptions of dropped segments");
        }
    }

    fn describe(sub: &Sub) -> Value {
        let t = sub.target();
        let st = sub.lock();
        json!({
            "segment": sub.segment,
            "subscriber": sub.subscriber,
            "scheme": t.scheme,
            "host": t.host,
            "port": t.port,
            "path": t.path,
            "retention": t.retention,
            "backlog": st.queue.pending.len(),
            "delivered": st.queue.delivered(),
            "dropped": st.queue.dropped(),
            "last_seq": st.queue.last_seq(),
            "last_success": st.last_success,
            "last_error": st.last_error,
        })
    }

    /// The subscriptions of a table (rest spec 6.3), by segment then subscriber.
    pub fn list(&self, uid: u64) -> Vec<Value> {
        let mut subs: Vec<Arc<Sub>> = self
            .all_subs()
            .into_iter()
            .filter(|s| s.table_uid == uid)
            .collect();
        subs.sort_by(|a, b| (&a.segment, &a.subscriber).cmp(&(&b.segment, &b.subscriber)));
        subs.iter().map(|s| Self::describe(s)).collect()
    }

    /// Delivery calls so far that the hook answered 2xx, and those that
    /// failed (any other answer or a transport failure); test calls excluded.
    pub fn delivery_calls(&self) -> (u64, u64) {
        (
            self.calls.ok.load(Ordering::Relaxed),
            self.calls.failed.load(Ordering::Relaxed),
        )
    }

    /// Totals for `/v1/status` (rest spec 8.2).
    pub fn totals(&self) -> Value {
        let subs = self.all_subs();
        let (mut backlog, mut delivered, mut dropped, mut failing) = (0u64, 0u64, 0u64, 0u64);
        for s in &subs {
            let st = s.lock();
            backlog += st.queue.pending.len() as u64;
            delivered += st.queue.delivered();
            dropped += st.queue.dropped();
            failing += u64::from(st.failing);
        }
        json!({
            "total": subs.len(),
            "backlog": backlog,
            "delivered": delivered,
            "dropped": dropped,
            "failing": failing,
        })
    }

    fn save_triggers(&self, defs: &[TriggerDef]) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(defs).map_err(io::Error::other)?;
        frame::replace(&self.dir.join(TRIGGERS_FILE), &bytes)
    }

    /// Reads and compiles the stored triggers of tables that still exist.
    fn open_triggers(&self, catalog: &Catalog) -> io::Result<()> {
        let mut defs: Vec<TriggerDef> = match fs::read(self.dir.join(TRIGGERS_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        defs.retain(|d| {
            catalog
                .tables
                .get(&d.table)
                .is_some_and(|t| t.uid == d.table_uid)
        });
        *lock(&self.triggers.defs) = defs;
        for schema in catalog.tables.values() {
            for broken in self.compile_triggers(schema) {
                tracing::warn!(trigger = %broken, table = %schema.name, "trigger no longer compiles; dropped");
                let _ = self.drop_trigger(schema.uid, &broken);
            }
        }
        Ok(())
    }

    /// Compiles a table's stored triggers into the registry; returns the
    /// names of those that no longer compile (left out).
    fn compile_triggers(&self, schema: &TableSchema) -> Vec<String> {
        let defs: Vec<TriggerDef> = lock(&self.triggers.defs)
            .iter()
            .filter(|d| d.table_uid == schema.uid)
            .cloned()
            .collect();
        let mut ok = Vec::new();
        let mut broken = Vec::new();
        for d in defs {
            match revent::compile(schema, &d.name, &d.script) {
                Ok(c) => ok.push(Arc::new(c)),
                Err(_) => broken.push(d.name),
            }
        }
        ok.sort_by(|a, b| a.name.cmp(&b.name));
        self.triggers.set_compiled(schema.uid, ok);
        broken
    }

    /// After a property drop: triggers that no longer compile are dropped
    /// with their subscriptions and timers; returns their names.
    pub fn reload_triggers(&self, schema: &TableSchema) -> Vec<String> {
        let broken = self.compile_triggers(schema);
        for n in &broken {
            let _ = self.drop_trigger(schema.uid, n);
        }
        broken
    }

    /// Creates or replaces a re-event trigger (rest spec 3.10).
    pub fn define_trigger(
        &self,
        db: &Db,
        table: &str,
        name: &str,
        script: &str,
    ) -> Result<(), SubError> {
        let schema = db
            .table(table)
            .map_err(|_| SubError::NotFound("table not found".into()))?;
        if schema.segments.contains_key(name) {
            return Err(SubError::Bad(format!(
                "'{name}' is the name of a segment (segments and triggers share names)"
            )));
        }
        revent::compile(&schema, name, script).map_err(SubError::Compile)?;
        let mut defs = lock(&self.triggers.defs);
        let def = TriggerDef {
            table: table.to_string(),
            table_uid: schema.uid,
            name: name.to_string(),
            script: script.to_string(),
        };
        match defs
            .iter_mut()
            .find(|d| d.table_uid == schema.uid && d.name == name)
        {
            Some(d) => *d = def,
            None => defs.push(def),
        }
        self.save_triggers(&defs)
            .map_err(|e| SubError::Storage(e.to_string()))?;
        drop(defs);
        self.compile_triggers(&schema);
        Ok(())
    }

    /// A stored trigger.
    pub fn trigger(&self, uid: u64, name: &str) -> Option<TriggerDef> {
        lock(&self.triggers.defs)
            .iter()
            .find(|d| d.table_uid == uid && d.name == name)
            .cloned()
    }

    /// Deletes a trigger with its timers and subscriptions; `false` if unknown.
    pub fn drop_trigger(&self, uid: u64, name: &str) -> Result<bool, SubError> {
        let mut defs = lock(&self.triggers.defs);
        let before = defs.len();
        defs.retain(|d| !(d.table_uid == uid && d.name == name));
        if defs.len() == before {
            return Ok(false);
        }
        self.save_triggers(&defs)
            .map_err(|e| SubError::Storage(e.to_string()))?;
        drop(defs);
        let list: Vec<Arc<revent::Compiled>> = self
            .triggers
            .of(uid)
            .map(|l| l.iter().filter(|c| c.name != name).cloned().collect())
            .unwrap_or_default();
        self.triggers.set_compiled(uid, list);
        lock(&self.timers)
            .forget(uid, name)
            .map_err(|e| SubError::Storage(e.to_string()))?;
        self.remove_where(|d| d.table_uid == uid && d.segment == name)?;
        Ok(true)
    }

    /// Timers waiting (all triggers).
    pub fn timers_waiting(&self) -> usize {
        lock(&self.timers).len()
    }

    /// Emits messages and adds timers a trigger run produced.
    fn deliver_produced(&self, uid: u64, stamp: i64, produced: Produced) {
        if !produced.timers.is_empty() {
            let mut timers = lock(&self.timers);
            for t in produced.timers {
                if let Err(e) = timers.add(t) {
                    tracing::error!(error = %e, "cannot store a trigger timer");
                }
            }
        }
        let mut emitted = produced.emitted;
        emitted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut i = 0;
        while i < emitted.len() {
            let name = emitted[i].0.clone();
            let end = i + emitted[i..].iter().take_while(|e| e.0 == name).count();
            if let Some(feed) = self.feed(uid, &name) {
                let items: Vec<_> = emitted[i..end]
                    .iter()
                    .map(|(_, key, text)| {
                        (
                            stamp,
                            key.clone(),
                            Kind::Emitted,
                            Some(text.as_str().into()),
                        )
                    })
                    .collect();
                self.fan_out(&feed, &items);
            }
            i = end;
        }
    }

    /// Runs every trigger's `on_insert` for the customers an insert touched.
    fn run_triggers(&self, partition: u32, state: &mut PartitionState, touched: &[(u64, u32)]) {
        let mut i = 0;
        while i < touched.len() {
            let uid = touched[i].0;
            let end = i + touched[i..].iter().take_while(|t| t.0 == uid).count();
            let customers = &touched[i..end];
            i = end;
            let (Some(list), Some(tp)) = (self.triggers.of(uid), state.tables.get(&uid)) else {
                continue;
            };
            let now = now_ms();
            let mut produced = Produced::default();
            for trigger in list.iter() {
                for &(_, ci) in customers {
                    revent::run_one(
                        trigger,
                        osl::trigger::ENTRY,
                        tp,
                        uid,
                        partition,
                        ci,
                        now,
                        &mut produced,
                    );
                }
            }
            self.deliver_produced(uid, now, produced);
        }
    }

    /// Runs the scheduled functions that are due (called every ~100 ms).
    pub fn fire_timers(&self, db: &Db) {
        let Ok(engine) = db.engine() else { return };
        let now = now_ms();
        let due = lock(&self.timers).take_due(now);
        for t in due {
            let trigger = self
                .triggers
                .of(t.table_uid)
                .and_then(|l| l.iter().find(|c| c.name == t.trigger).cloned());
            if let (Some(trigger), true) = (trigger, t.partition < engine.partition_count()) {
                let st = engine.read(t.partition);
                if let Some(tp) = st.tables.get(&t.table_uid) {
                    if tp
                        .customers
                        .get(t.ci as usize)
                        .is_some_and(|c| c.key == t.key)
                    {
                        let mut produced = Produced::default();
                        revent::run_one(
                            &trigger,
                            &t.function,
                            tp,
                            t.table_uid,
                            t.partition,
                            t.ci,
                            now,
                            &mut produced,
                        );
                        // Emitted under the read lock: in order with on_insert runs.
                        self.deliver_produced(t.table_uid, now, produced);
                    }
                }
            }
            if let Err(e) = lock(&self.timers).done(t.id) {
                tracing::warn!(error = %e, "cannot record a finished timer; it may run again");
            }
        }
    }

    /// The store's observer: `on_insert` segments first, then triggers.
    pub fn observer(self: &Arc<Self>, segments: Arc<SegmentRegistry>) -> Arc<dyn ApplyObserver> {
        Arc::new(Chain {
            segments,
            hub: self.clone(),
        })
    }

    fn feed(&self, uid: u64, name: &str) -> Option<Arc<Feed>> {
        self.feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)?
            .get(name)
            .cloned()
    }

    /// Appends messages to every subscriber of a feed and wakes their senders.
    fn fan_out(&self, feed: &Feed, items: &[(i64, CustomerKey, Kind, Option<Box<str>>)]) {
        for sub in feed.subs.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let mut st = sub.lock();
            if st.removed {
                continue;
            }
            if let Err(e) = st.queue.append(items.iter().cloned()) {
                tracing::error!(subscriber = %sub.subscriber, error = %e, "cannot store subscription messages");
                continue;
            }
            drop(st);
            sub.wake.notify_one();
        }
    }
}

impl ChangeSink for Hub {
    fn reserved(&self, uid: u64, name: &str) -> bool {
        self.triggers.has(uid, name)
    }

    fn listens(&self, uid: u64, segment: &str) -> bool {
        self.feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .and_then(|m| m.get(segment))
            .is_some_and(|f| f.seeded.load(Ordering::Acquire))
    }

    fn changed(&self, uid: u64, segment: &str, partition: u32, stamp: i64, changes: &[Change]) {
        let Some(feed) = self.feed(uid, segment) else {
            return;
        };
        if let Some(j) = &feed.journal {
            if let Err(e) = lock(j).changes(partition, changes) {
                tracing::error!(%segment, error = %e, "cannot journal segment changes");
            }
        }
        let kind = |entered| if entered { Kind::Entered } else { Kind::Exited };
        let items: Vec<_> = changes
            .iter()
            .map(|c| (stamp, c.key.clone(), kind(c.entered), None))
            .collect();
        self.fan_out(&feed, &items);
    }

    fn baseline(&self, uid: u64, segment: &str) -> Option<Vec<(u32, RoaringBitmap)>> {
        lock(&self.baselines).remove(&(uid, segment.to_string()))
    }
}

/// Segments, then triggers, after every applied group.
struct Chain {
    segments: Arc<SegmentRegistry>,
    hub: Arc<Hub>,
}

impl ApplyObserver for Chain {
    fn applied(&self, partition: u32, state: &mut PartitionState, touched: &[(u64, u32)]) {
        self.segments.applied(partition, state, touched);
        self.hub.run_triggers(partition, state, touched);
    }
}
