//! The database of one node: catalog, partitions, the group-committing
//! writer, recovery and the schema operations.
//!
//! Writes flow through one committer thread: it takes every pending insert,
//! appends them to the partition logs with one sync per partition (group
//! commit), applies them to the partitions in log order, and only then
//! answers the callers. So an acknowledged insert is durable and visible, and
//! apply order equals log order, which keeps replay deterministic.

use crate::catalog::Catalog;
use crate::codec::{
    begin_entry, begin_record, decode_entry, put_prop, put_prop_count, RecordView, ScalarRef,
};
use crate::error::StoreError;
use crate::hugepages::Collapser;
use crate::ingest::{validate, RawRecord, RecordError, UnknownPolicy};
use crate::log::{LocalLog, Lsn, PartitionLog};
use crate::partition::PartitionState;
use crate::record::CustomerKey;
use crate::schema::{
    check_property_name, parse_create_body, valid_table_name, PropType, PropertyDef, SegmentDef,
    TableSchema, MAX_PROPERTIES,
};
use crate::snapshot;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

/// How a database is opened.
#[derive(Clone, Debug)]
pub struct DbConfig {
    /// Directory holding the catalog, logs and snapshots.
    pub data_dir: PathBuf,
    /// A partition is snapshotted (and its log cut) once its log holds this many bytes.
    pub snapshot_bytes: u64,
    /// Fault injection for tests: log appends fail after this many bytes.
    pub fail_log_after_bytes: Option<u64>,
}

impl DbConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> DbConfig {
        DbConfig {
            data_dir: data_dir.into(),
            snapshot_bytes: 256 << 20,
            fail_log_after_bytes: None,
        }
    }
}

/// Options of one insert request.
#[derive(Clone, Copy, Debug, Default)]
pub struct InsertOptions {
    /// Store valid records even when others are invalid.
    pub partial: bool,
    /// What to do with properties the table lacks.
    pub unknown: UnknownPolicy,
}

/// What an insert did.
#[derive(Debug, Default)]
pub struct InsertReport {
    /// Records stored.
    pub accepted: usize,
    /// Stored records that took the receive time.
    pub stamped: usize,
    /// Invalid records.
    pub rejected: usize,
    /// Problems, index order.
    pub errors: Vec<RecordError>,
    /// Unknown properties skipped (with `unknown=ignore`).
    pub ignored: BTreeMap<String, u64>,
}

/// Customer-property writes for one customer: (property id, values) pairs.
pub type CustomerWrites<'a> = (CustomerKey, Vec<(u32, Vec<ScalarRef<'a>>)>);

/// The answer to adding a property.
#[derive(Debug, PartialEq, Eq)]
pub enum AddProperty {
    /// The property was added.
    Added,
    /// An identical property already existed; nothing changed.
    Unchanged,
}

/// Customer and event totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Customers over all tables.
    pub customers: u64,
    /// Events over all tables.
    pub events: u64,
}

/// One partition's share of an insert: the partition and its encoded log entry.
type PartEntry = (u32, Vec<u8>);
/// The answer to an append; the entries travel back so the caller, not the
/// committer, pays for freeing them.
type AppendReply = SyncSender<Result<Vec<PartEntry>, StoreError>>;

enum Msg {
    Append {
        entries: Vec<PartEntry>,
        reply: AppendReply,
    },
    DropTable {
        uid: u64,
        reply: SyncSender<Result<(), StoreError>>,
    },
    DropProperty {
        uid: u64,
        prop: u32,
        reply: SyncSender<Result<(), StoreError>>,
    },
}

/// The partitions of an initialised node.
pub struct Engine {
    partition_count: u32,
    /// Moves the heap onto huge pages (see `crate::hugepages`).
    collapser: Option<Arc<Collapser>>,
    parts: Arc<Vec<RwLock<PartitionState>>>,
    tx: Mutex<Sender<Msg>>,
}

impl Engine {
    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// Write access to one partition, for derived state only (segment
    /// memberships); data changes go through the log.
    pub fn write(&self, p: u32) -> std::sync::RwLockWriteGuard<'_, PartitionState> {
        self.parts[p as usize]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Read access to one partition (queries hold it while they scan).
    pub fn read(&self, p: u32) -> RwLockReadGuard<'_, PartitionState> {
        self.parts[p as usize]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, msg: Msg) -> Result<(), StoreError> {
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(msg)
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))
    }

    fn send(
        &self,
        build: impl FnOnce(SyncSender<Result<(), StoreError>>) -> Msg,
    ) -> Result<(), StoreError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit(build(reply))?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer has stopped".into())))
    }
}

struct Shared {
    config: DbConfig,
    catalog: RwLock<Arc<Catalog>>,
    observer: OnceLock<Arc<dyn ApplyObserver>>,
}

impl Shared {
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One node's database.
pub struct Db {
    shared: Arc<Shared>,
    engine: OnceLock<Engine>,
    admin: Mutex<()>,
    _lock: File,
    started: Instant,
}

const MAX_PARTITIONS: u32 = 1000;

impl Db {
    /// Opens (creating) the data directory, takes its lock, and recovers
    /// every partition from its snapshot and log.
    pub fn open(config: DbConfig) -> Result<Db, StoreError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot write to data directory {}: {e}",
                    dir.display()
                ))
            })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(format!(
                "data directory {} is in use by another openset process; stop it or choose another --data-dir",
                dir.display()
            )));
        }
        let catalog = Catalog::load(dir).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let partitions = catalog.partitions;
        let db = Db {
            shared: Arc::new(Shared {
                config,
                catalog: RwLock::new(Arc::new(catalog)),
                observer: OnceLock::new(),
            }),
            engine: OnceLock::new(),
            admin: Mutex::new(()),
            _lock: lock,
            started: Instant::now(),
        };
        if let Some(n) = partitions {
            db.start_engine(n)?;
        }
        Ok(db)
    }

    fn start_engine(&self, n: u32) -> Result<(), StoreError> {
        let dir = &self.shared.config.data_dir;
        let log = LocalLog::open(&dir.join("log"), n, self.shared.config.fail_log_after_bytes)?;
        let catalog = self.shared.catalog();
        let schema_of = |uid: u64| catalog.table_by_uid(uid);
        let t0 = Instant::now();
        let mut states: Vec<Option<Result<PartitionState, StoreError>>> =
            (0..n).map(|_| None).collect();
        let workers = std::thread::available_parallelism()
            .map_or(2, |c| c.get())
            .min(n as usize)
            .max(1);
        std::thread::scope(|s| {
            for (w, chunk) in states
                .chunks_mut((n as usize).div_ceil(workers))
                .enumerate()
            {
                let log = &log;
                let schema_of = &schema_of;
                let base = w * (n as usize).div_ceil(workers);
                s.spawn(move || {
                    for (i, slot) in chunk.iter_mut().enumerate() {
                        *slot = Some(recover_partition(dir, log, (base + i) as u32, schema_of));
                    }
                });
            }
        });
        let mut parts = Vec::with_capacity(n as usize);
        for s in states {
            parts.push(RwLock::new(s.unwrap_or(Err(StoreError::Corrupt(
                "recovery did not run".into(),
            )))?));
        }
        // The recovered rows onto huge pages, off the startup path.
        let collapser = Collapser::start().map(Arc::new);
        if let Some(c) = &collapser {
            c.request();
        }
        let parts = Arc::new(parts);
        let counts = count(&parts);
        tracing::info!(
            partitions = n,
            customers = counts.customers,
            events = counts.events,
            ms = t0.elapsed().as_millis() as u64,
            "recovered"
        );
        let (tx, rx) = mpsc::channel();
        let committer = Committer {
            shared: self.shared.clone(),
            parts: parts.clone(),
            log: Arc::new(log),
            collapser: collapser.clone(),
        };
        std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let _ = self.engine.set(Engine {
            partition_count: n,
            collapser,
            parts,
            tx: Mutex::new(tx),
        });
        Ok(())
    }

    /// The engine, once the node is initialised.
    pub fn engine(&self) -> Result<&Engine, StoreError> {
        self.engine.get().ok_or(StoreError::NotInitialized)
    }

    /// True once the node has partitions.
    pub fn is_initialized(&self) -> bool {
        self.engine.get().is_some()
    }

    /// The catalog as of now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog()
    }

    /// Time since open.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Makes this node a one-node cluster with `partitions` partitions and returns its name.
    pub fn init(&self, partitions: u32, name: Option<String>) -> Result<String, StoreError> {
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_initialized() {
            return Err(StoreError::AlreadyInitialized);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(StoreError::Invalid(
                "partitions must be >= 1 and <= 1000".into(),
            ));
        }
        let name = name.unwrap_or_else(random_node_name);
        self.update_catalog(|c| {
            c.partitions = Some(partitions);
            c.node_name = Some(name.clone());
            Ok(())
        })?;
        self.start_engine(partitions)?;
        Ok(name)
    }

    fn update_catalog(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<(), StoreError>,
    ) -> Result<Arc<Catalog>, StoreError> {
        let mut next = (*self.shared.catalog()).clone();
        change(&mut next)?;
        next.save(&self.shared.config.data_dir)?;
        let next = Arc::new(next);
        *self
            .shared
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = next.clone();
        Ok(next)
    }

    /// The schema of table `name`.
    pub fn table(&self, name: &str) -> Result<Arc<TableSchema>, StoreError> {
        self.engine()?;
        self.shared
            .catalog()
            .tables
            .get(name)
            .cloned()
            .ok_or(StoreError::TableNotFound)
    }

    /// Creates a table from a create body (either form).
    pub fn create_table(&self, name: &str, body: &Value) -> Result<Arc<TableSchema>, StoreError> {
        self.engine()?;
        if !valid_table_name(name) {
            return Err(StoreError::Invalid("bad table name".into()));
        }
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let mut created = None;
        self.update_catalog(|c| {
            if c.tables.contains_key(name) {
                return Err(StoreError::Invalid("table already exists".into()));
            }
            let schema = Arc::new(
                parse_create_body(name, c.next_table_uid, body).map_err(StoreError::Invalid)?,
            );
            c.next_table_uid += 1;
            c.tables.insert(name.to_string(), schema.clone());
            created = Some(schema);
            Ok(())
        })?;
        created.ok_or(StoreError::TableNotFound)
    }

    /// Drops a table and its data.
    pub fn drop_table(&self, name: &str) -> Result<(), StoreError> {
        let engine = self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let uid = self.table(name)?.uid;
        self.update_catalog(|c| {
            c.tables.remove(name);
            Ok(())
        })?;
        engine.send(|reply| Msg::DropTable { uid, reply })
    }

    /// Adds a property; an identical existing one is a no-op.
    pub fn add_property(
        &self,
        table: &str,
        name: &str,
        kind: PropType,
        is_set: bool,
        is_customer: bool,
    ) -> Result<AddProperty, StoreError> {
        self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.table(table)?;
        check_property_name(name)
            .map_err(|d| StoreError::Invalid(d.replace("properties name", "property name")))?;
        if let Some(p) = schema.property(name) {
            return if p.kind == kind && p.is_set == is_set && p.is_customer == is_customer {
                Ok(AddProperty::Unchanged)
            } else {
                Err(StoreError::Invalid(format!(
                    "property '{name}' already exists with a different definition"
                )))
            };
        }
        if schema.properties.len() >= MAX_PROPERTIES {
            return Err(StoreError::Invalid(format!(
                "too many properties: the limit is {MAX_PROPERTIES}"
            )));
        }
        self.update_catalog(|c| {
            let mut t = (*schema).clone();
            t.properties.push(PropertyDef {
                id: t.next_property_id,
                name: name.into(),
                kind,
                is_set,
                is_customer,
            });
            t.next_property_id += 1;
            c.tables.insert(table.into(), Arc::new(t));
            Ok(())
        })?;
        Ok(AddProperty::Added)
    }

    /// Drops a property and its values.
    pub fn drop_property(&self, table: &str, name: &str) -> Result<(), StoreError> {
        let engine = self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.table(table)?;
        if matches!(name, "id" | "stamp" | "event" | "session") {
            return Err(StoreError::Invalid(format!(
                "cannot drop built-in property '{name}'"
            )));
        }
        let prop = schema
            .property(name)
            .ok_or(StoreError::PropertyNotFound)?
            .id;
        self.update_catalog(|c| {
            let mut t = (*schema).clone();
            t.properties.retain(|p| p.id != prop);
            c.tables.insert(table.into(), Arc::new(t));
            Ok(())
        })?;
        engine.send(|reply| Msg::DropProperty {
            uid: schema.uid,
            prop,
            reply,
        })
    }

    /// Changes settings; returns the settings after the change.
    pub fn update_settings(
        &self,
        table: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, StoreError> {
        self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.table(table)?;
        let mut t = (*schema).clone();
        t.settings.apply(body).map_err(StoreError::Invalid)?;
        let json = t.settings.to_json();
        self.update_catalog(|c| {
            c.tables.insert(table.into(), Arc::new(t));
            Ok(())
        })?;
        Ok(json)
    }

    /// Validates and (when valid, or with `partial`) durably stores records.
    /// `now_ms` stamps records that have none. Returns once the stored
    /// records are durable and visible to queries.
    pub fn insert(
        &self,
        table: &str,
        raw: Vec<RawRecord<'_>>,
        opts: InsertOptions,
        now_ms: i64,
    ) -> Result<InsertReport, StoreError> {
        let engine = self.engine()?;
        let schema = self.table(table)?;
        let v = validate(&schema, raw, opts.unknown, now_ms, engine.partition_count);
        let mut report = InsertReport {
            accepted: 0,
            stamped: 0,
            rejected: v.rejected,
            errors: v.errors,
            ignored: v.ignored,
        };
        if (v.rejected > 0 && !opts.partial) || v.entries.is_empty() {
            return Ok(report);
        }
        let accepted = v.accepted;
        let entries = v.entries;
        let (reply, rx) = mpsc::sync_channel(1);
        engine.submit(Msg::Append { entries, reply })?;
        let returned = rx
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer has stopped".into())))?;
        drop(returned);
        report.accepted = accepted;
        report.stamped = v.stamped;
        Ok(report)
    }

    /// Durably writes customer properties computed by a script (OSL spec
    /// 7.6): each write becomes a customer record in the partition log, so
    /// replay reproduces it. `writes` pairs a customer with (property id,
    /// values); no values removes the property.
    pub fn write_customer_properties(
        &self,
        table: &str,
        writes: &[CustomerWrites<'_>],
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let engine = self.engine()?;
        let schema = self.table(table)?;
        let n = engine.partition_count;
        let mut buffers: Vec<Vec<u8>> = (0..n).map(|_| Vec::new()).collect();
        for (key, props) in writes {
            let buf = &mut buffers[key.partition(n) as usize];
            if buf.is_empty() {
                begin_entry(schema.uid, buf);
            }
            begin_record(buf, key.as_ref(), 0, None);
            put_prop_count(buf, 0);
            let known: Vec<_> = props
                .iter()
                .filter_map(|(prop, values)| {
                    let def = schema.property_by_id(*prop).filter(|d| d.is_customer)?;
                    Some((def.id, def.kind, values))
                })
                .collect();
            put_prop_count(buf, known.len());
            for (prop, kind, values) in known {
                put_prop(buf, prop, kind, values.iter());
            }
        }
        let entries: Vec<PartEntry> = buffers
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, b)| (p as u32, b))
            .collect();
        let (reply, rx) = mpsc::sync_channel(1);
        engine.submit(Msg::Append { entries, reply })?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer has stopped".into())))?;
        Ok(())
    }

    /// Applies the table's retention settings (`event_ttl`, `event_max`) as
    /// of `now_ms`, through the log so replay trims the same events. Does
    /// nothing when both are off.
    pub fn run_retention(&self, table: &str, now_ms: i64) -> Result<(), StoreError> {
        let engine = self.engine()?;
        let schema = self.table(table)?;
        let settings = &schema.settings;
        if settings.event_ttl <= 0 && settings.event_max <= 0 {
            return Ok(());
        }
        let cutoff = if settings.event_ttl > 0 {
            now_ms.saturating_sub(settings.event_ttl).max(1)
        } else {
            0
        };
        let entries: Vec<PartEntry> = (0..engine.partition_count)
            .map(|p| {
                let mut buf = Vec::new();
                begin_entry(schema.uid, &mut buf);
                crate::codec::encode_retention(&mut buf, cutoff, settings.event_max.max(0));
                (p, buf)
            })
            .collect();
        let (reply, rx) = mpsc::sync_channel(1);
        engine.submit(Msg::Append { entries, reply })?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the writer has stopped".into())))?;
        Ok(())
    }

    /// Installs the observer of applied inserts (once).
    pub fn set_observer(&self, observer: Arc<dyn ApplyObserver>) {
        let _ = self.shared.observer.set(observer);
    }

    /// Creates or replaces segment definitions of `table` (durably).
    pub fn define_segments(
        &self,
        table: &str,
        defs: Vec<SegmentDef>,
    ) -> Result<Arc<TableSchema>, StoreError> {
        self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.table(table)?;
        let mut t = (*schema).clone();
        let first = t.segments.values().map(|d| d.seq + 1).max().unwrap_or(0);
        for (seq, mut d) in (first..).zip(defs) {
            d.seq = seq;
            t.segments.insert(d.name.clone(), d);
        }
        let t = Arc::new(t);
        self.update_catalog(|c| {
            c.tables.insert(table.into(), t.clone());
            Ok(())
        })?;
        Ok(t)
    }

    /// Removes segment definitions of `table` (and their memberships).
    pub fn remove_segments(&self, table: &str, names: &[String]) -> Result<(), StoreError> {
        let engine = self.engine()?;
        let _g = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.table(table)?;
        let mut t = (*schema).clone();
        for n in names {
            t.segments.remove(n);
        }
        self.update_catalog(|c| {
            c.tables.insert(table.into(), Arc::new(t));
            Ok(())
        })?;
        for p in 0..engine.partition_count {
            if let Some(tp) = engine.write(p).tables.get_mut(&schema.uid) {
                for n in names {
                    tp.segments.remove(n);
                }
            }
        }
        Ok(())
    }

    /// True while the heap is being moved onto huge pages (see
    /// `crate::hugepages`): queries may be slower until it is done.
    pub fn huge_pages_pass_running(&self) -> bool {
        self.engine
            .get()
            .and_then(|e| e.collapser.as_ref())
            .is_some_and(|c| c.busy())
    }

    /// Customers and events over all tables.
    pub fn counts(&self) -> Counts {
        self.engine
            .get()
            .map(|e| count(&e.parts))
            .unwrap_or_default()
    }
}

fn count(parts: &[RwLock<PartitionState>]) -> Counts {
    let mut c = Counts::default();
    for p in parts {
        let st = p.read().unwrap_or_else(|e| e.into_inner());
        for t in st.tables.values() {
            c.customers += t.customers.len() as u64;
            c.events += t.event_count;
        }
    }
    c
}

fn snapshot_dir(data_dir: &Path, p: u32) -> PathBuf {
    data_dir.join("snapshots").join(format!("p{p:04}"))
}

fn recover_partition(
    dir: &Path,
    log: &LocalLog,
    p: u32,
    schema_of: &dyn Fn(u64) -> Option<Arc<TableSchema>>,
) -> Result<PartitionState, StoreError> {
    let mut state = snapshot::load_latest(&snapshot_dir(dir, p), schema_of)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .unwrap_or_default();
    let after = state.applied;
    let last = log.replay(p, after, &mut |lsn, bytes| {
        apply_bytes(&mut state, bytes, schema_of, None)
            .map_err(|e| format!("partition {p} entry {lsn}: {e}"))
    })?;
    state.applied = last;
    Ok(state)
}

/// Applies one log entry: the only way data enters a partition, live and on replay.
fn apply_bytes(
    state: &mut PartitionState,
    bytes: &[u8],
    schema_of: &dyn Fn(u64) -> Option<Arc<TableSchema>>,
    touched: Option<&mut Vec<(u64, u32)>>,
) -> Result<(), crate::codec::DecodeError> {
    let (uid, records) = decode_entry(bytes)?;
    apply_records(state, uid, &records, schema_of, touched);
    Ok(())
}

fn apply_records(
    state: &mut PartitionState,
    uid: u64,
    records: &[RecordView<'_>],
    schema_of: &dyn Fn(u64) -> Option<Arc<TableSchema>>,
    mut touched: Option<&mut Vec<(u64, u32)>>,
) {
    // A table dropped since the entry was logged: its records are skipped.
    let Some(schema) = schema_of(uid) else { return };
    let table = state.tables.entry(uid).or_default();
    for r in records {
        let ci = table.apply(&schema, r, true);
        if let (Some(t), false) = (touched.as_deref_mut(), r.retention) {
            t.push((uid, ci));
        }
    }
}

/// Told about every applied group, per partition, while the partition is
/// still write-locked: the query layer uses it to re-evaluate `on_insert`
/// segments for exactly the customers an insert touched.
pub trait ApplyObserver: Send + Sync {
    /// `touched` lists (table uid, customer index) pairs, sorted and unique.
    fn applied(&self, partition: u32, state: &mut PartitionState, touched: &[(u64, u32)]);
}

/// The write pipeline: a writer thread appends groups to the log (one sync
/// per touched partition per group) and hands them, in order, to an applier
/// thread that applies them to the partitions and answers the callers. While
/// the applier works on one group the writer is already syncing the next.
struct Committer {
    shared: Arc<Shared>,
    parts: Arc<Vec<RwLock<PartitionState>>>,
    log: Arc<dyn PartitionLog>,
    /// Handed to the applier (see `crate::hugepages`).
    collapser: Option<Arc<Collapser>>,
}

/// Most inserts taken into one group commit.
const MAX_GROUP: usize = 256;
/// Groups written but not yet applied; bounds memory when apply lags.
const MAX_PENDING_GROUPS: usize = 4;
/// How long the applier goes without work before it moves the heap onto
/// huge pages (see `crate::hugepages`).
const COLLAPSE_AFTER_IDLE: Duration = Duration::from_millis(500);
/// Log bytes applied since the last collapse that make another worth it.
const COLLAPSE_AFTER_BYTES: u64 = 16 << 20;

type Group = Vec<(Vec<PartEntry>, AppendReply)>;
/// One partition's entries of a group, in log order.
type PartitionWork<'a> = Vec<(Lsn, &'a [u8])>;

/// Work handed from the writer to the applier, in log order.
enum Stage {
    Apply(Group, Vec<Lsn>),
    Schema(Msg),
}

impl Committer {
    fn run(self, rx: Receiver<Msg>) {
        let (tx, applier_rx) = mpsc::sync_channel::<Stage>(MAX_PENDING_GROUPS);
        let applier = Applier {
            shared: self.shared.clone(),
            parts: self.parts.clone(),
            log: self.log.clone(),
            since_snapshot: vec![0; self.parts.len()],
            since_collapse: 0,
            collapser: self.collapser.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("applier".into())
            .spawn(move || applier.run(applier_rx));
        if let Err(e) = handle {
            tracing::error!(error = %e, "cannot start the applier; inserts will fail");
            return;
        }
        while let Ok(first) = rx.recv() {
            let mut appends = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append { entries, reply } => appends.push((entries, reply)),
                    schema_change => {
                        self.write(std::mem::take(&mut appends), &tx);
                        let _ = tx.send(Stage::Schema(schema_change));
                    }
                }
                if appends.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            self.write(appends, &tx);
        }
    }

    fn write(&self, group: Group, tx: &SyncSender<Stage>) {
        if group.is_empty() {
            return;
        }
        let frames: Vec<(u32, &[u8])> = group
            .iter()
            .flat_map(|(e, _)| e.iter().map(|(p, b)| (*p, &b[..])))
            .collect();
        match self.log.append(&frames) {
            Ok(lsns) => {
                let _ = tx.send(Stage::Apply(group, lsns));
            }
            Err(e) => {
                tracing::error!(error = %e, "insert not stored");
                let msg = e.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }
}

struct Applier {
    shared: Arc<Shared>,
    parts: Arc<Vec<RwLock<PartitionState>>>,
    log: Arc<dyn PartitionLog>,
    /// Log bytes applied per partition since its last snapshot.
    since_snapshot: Vec<u64>,
    /// Log bytes applied since the heap last went onto huge pages.
    since_collapse: u64,
    /// The thread that moves the heap onto huge pages.
    collapser: Option<Arc<Collapser>>,
}

impl Applier {
    fn run(mut self, rx: Receiver<Stage>) {
        loop {
            let stage = match rx.recv_timeout(COLLAPSE_AFTER_IDLE) {
                Ok(stage) => stage,
                Err(RecvTimeoutError::Timeout) => {
                    // Quiet after enough new rows: their memory onto huge pages.
                    if self.since_collapse >= COLLAPSE_AFTER_BYTES {
                        self.since_collapse = 0;
                        if let Some(c) = &self.collapser {
                            c.request();
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match stage {
                Stage::Apply(group, lsns) => self.apply(group, &lsns),
                Stage::Schema(Msg::DropTable { uid, reply }) => {
                    let _ = reply.send(self.drop_table(uid));
                }
                Stage::Schema(Msg::DropProperty { uid, prop, reply }) => {
                    let _ = reply.send(self.drop_property(uid, prop));
                }
                Stage::Schema(Msg::Append { reply, .. }) => {
                    let _ = reply.send(Err(StoreError::Unavailable("misrouted append".into())));
                }
            }
        }
    }

    fn apply(&mut self, group: Group, lsns: &[Lsn]) {
        // Per partition, the entries in log order.
        let mut work: BTreeMap<u32, PartitionWork<'_>> = BTreeMap::new();
        let mut i = 0;
        for (entries, _) in &group {
            for (p, bytes) in entries {
                work.entry(*p).or_default().push((lsns[i], bytes));
                self.since_snapshot[*p as usize] += bytes.len() as u64;
                self.since_collapse += bytes.len() as u64;
                i += 1;
            }
        }
        let catalog = self.shared.catalog();
        let schema_of = |uid: u64| catalog.table_by_uid(uid);
        let work: Vec<_> = work.into_iter().collect();
        let workers = std::thread::available_parallelism()
            .map_or(2, |c| c.get())
            .min(work.len())
            .max(1);
        let parts = &self.parts;
        let observer = self.shared.observer.get().map(|o| &**o);
        let apply = |chunk: &[(u32, PartitionWork<'_>)]| {
            for (p, items) in chunk {
                let mut st = parts[*p as usize]
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let mut touched = Vec::new();
                for (lsn, bytes) in items {
                    // The bytes were encoded by this process a moment ago.
                    if let Err(e) =
                        apply_bytes(&mut st, bytes, &schema_of, observer.map(|_| &mut touched))
                    {
                        tracing::error!(partition = p, lsn, error = %e, "could not apply an entry");
                    }
                    st.applied = *lsn;
                }
                if let Some(obs) = observer {
                    touched.sort_unstable();
                    touched.dedup();
                    obs.applied(*p, &mut st, &touched);
                }
            }
        };
        if workers == 1 {
            apply(&work);
        } else {
            std::thread::scope(|s| {
                for chunk in work.chunks(work.len().div_ceil(workers)) {
                    s.spawn(|| apply(chunk));
                }
            });
        }
        let touched: Vec<u32> = work.iter().map(|(p, _)| *p).collect();
        drop(work);
        for (entries, reply) in group {
            let _ = reply.send(Ok(entries));
        }
        for p in touched {
            if self.since_snapshot[p as usize] >= self.shared.config.snapshot_bytes {
                self.snapshot_logged(p);
            }
        }
    }

    fn snapshot(&mut self, p: u32) -> Result<(), StoreError> {
        let catalog = self.shared.catalog();
        let (bytes, lsn) = {
            let st = self.parts[p as usize]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            (
                snapshot::encode(&st, &|uid| catalog.table_by_uid(uid)),
                st.applied,
            )
        };
        snapshot::write(&snapshot_dir(&self.shared.config.data_dir, p), lsn, &bytes)?;
        self.since_snapshot[p as usize] = 0;
        self.log.compact(p, lsn)?;
        Ok(())
    }

    fn snapshot_logged(&mut self, p: u32) {
        // A failed snapshot loses nothing: the log it would have replaced stays.
        if let Err(e) = self.snapshot(p) {
            tracing::warn!(partition = p, error = %e, "snapshot failed");
        }
    }

    fn drop_table(&self, uid: u64) -> Result<(), StoreError> {
        for part in self.parts.iter() {
            part.write()
                .unwrap_or_else(|e| e.into_inner())
                .tables
                .remove(&uid);
        }
        Ok(())
    }

    fn drop_property(&mut self, uid: u64, prop: u32) -> Result<(), StoreError> {
        for p in 0..self.parts.len() {
            let changed = {
                let mut st = self.parts[p].write().unwrap_or_else(|e| e.into_inner());
                st.tables
                    .get_mut(&uid)
                    .map(|t| t.remove_property(prop))
                    .is_some()
            };
            // Snapshot now, so a replay never re-judges duplicates under the
            // narrower schema differently from what memory holds.
            if changed {
                self.snapshot(p as u32)?;
            }
        }
        Ok(())
    }
}

fn random_node_name() -> String {
    const ADJ: &[&str] = &[
        "brisk", "calm", "eager", "gentle", "jolly", "keen", "lucky", "mellow", "nimble", "proud",
        "quiet", "swift", "tidy", "witty", "bold", "bright",
    ];
    const NOUN: &[&str] = &[
        "otter", "falcon", "badger", "heron", "lynx", "marten", "owl", "panda", "raven", "seal",
        "tiger", "wombat", "yak", "zebra", "fox", "hare",
    ];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = xxhash_rust::xxh3::xxh3_64(&(nanos ^ u64::from(std::process::id())).to_le_bytes());
    format!(
        "{}-{}",
        ADJ[(seed % ADJ.len() as u64) as usize],
        NOUN[((seed >> 32) % NOUN.len() as u64) as usize]
    )
}
