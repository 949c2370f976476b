//! Running queries and the recent ones: what `GET /queries` and
//! `GET /query-history` show, what `DELETE /queries/{id}` cancels, and the
//! one wrapper every query handler runs its work through (timeout, cancel
//! flag, result-size limit, metrics).

use crate::error::ApiError;
use crate::params::Params;
use crate::State;
use axum::http::StatusCode;
use query::control::QueryControl;
use query::Answer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Active {
    kind: &'static str,
    table: String,
    digest: String,
    user: Option<String>,
    started: Instant,
    started_ms: i64,
    control: Arc<QueryControl>,
}

/// The node's running and recent queries.
pub struct Activity {
    next: AtomicU64,
    active: Mutex<BTreeMap<u64, Active>>,
    history: Mutex<VecDeque<Value>>,
    history_len: usize,
}

impl Activity {
    /// Keeps the last `history_len` finished queries.
    pub fn new(history_len: usize) -> Activity {
        Activity {
            next: AtomicU64::new(1),
            active: Mutex::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
            history_len,
        }
    }

    /// Running queries, oldest first.
    pub fn active(&self) -> Vec<Value> {
        let Ok(a) = self.active.lock() else {
            return Vec::new();
        };
        a.iter()
            .map(|(id, q)| {
                json!({
                    "id": id.to_string(),
                    "kind": q.kind,
                    "table": q.table,
                    "digest": q.digest,
                    "user": q.user,
                    "start": q.started_ms,
                    "age_ms": q.started.elapsed().as_millis() as u64,
                })
            })
            .collect()
    }

    /// How many queries run now.
    pub fn active_count(&self) -> usize {
        self.active.lock().map_or(0, |a| a.len())
    }

    /// Finished queries, newest first.
    pub fn history(&self) -> Vec<Value> {
        self.history
            .lock()
            .map(|h| h.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Asks query `id` to stop; false when no such query runs.
    pub fn cancel(&self, id: u64) -> bool {
        match self
            .active
            .lock()
            .ok()
            .and_then(|a| a.get(&id).map(|q| q.control.clone()))
        {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    fn finish(&self, id: u64, record: Value) {
        if let Ok(mut a) = self.active.lock() {
            a.remove(&id);
        }
        if self.history_len == 0 {
            return;
        }
        if let Ok(mut h) = self.history.lock() {
            if h.len() >= self.history_len {
                h.pop_front();
            }
            h.push_back(record);
        }
    }
}

/// What identifies a query in the listings.
pub(crate) struct QueryInfo<'a> {
    /// `event`, `segment`, `property`, `histogram`, `batch`, `customer`.
    pub kind: &'static str,
    /// The table queried.
    pub table: &'a str,
    /// The script (or the property/customer named), digested for the listing.
    pub script: &'a str,
    /// Who asked (with authentication on).
    pub user: Option<String>,
    /// The caller may not write (customer-property writes are refused).
    pub read_only: bool,
}

impl<'a> QueryInfo<'a> {
    /// A query of `kind` on `table` by `caller` (user and read-only flag
    /// come from the caller).
    pub fn new(
        kind: &'static str,
        table: &'a str,
        script: &'a str,
        caller: &crate::access::Caller,
    ) -> QueryInfo<'a> {
        QueryInfo {
            kind,
            table,
            script,
            user: caller.name(),
            read_only: caller.read_only(),
        }
    }
}

/// Runs a query's blocking work under a cancel flag and deadline, listed in
/// `/queries` while it runs and in `/query-history` after; refuses a result
/// tree over the node limit; counts it in the metrics.
pub(crate) async fn run_query(
    s: &State,
    info: QueryInfo<'_>,
    p: &Params,
    work: impl FnOnce() -> Result<Answer, ApiError> + Send + 'static,
) -> Result<Answer, ApiError> {
    let limit = s.config.query_timeout;
    let timeout = match p.int("timeout")? {
        None => limit,
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(limit),
        Some(_) => {
            return Err(ApiError::param(
                "timeout must be a positive number of milliseconds",
            ))
        }
    };
    let control = QueryControl::new();
    if info.read_only {
        control.set_read_only();
    }
    let id = s.activity.next.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let started_ms = crate::routes::now_ms();
    let digest = digest(info.script);
    if let Ok(mut a) = s.activity.active.lock() {
        a.insert(
            id,
            Active {
                kind: info.kind,
                table: info.table.to_string(),
                digest: digest.clone(),
                user: info.user.clone(),
                started,
                started_ms,
                control: control.clone(),
            },
        );
    }
    // The deadline is a timer that raises the flag; workers only read it.
    let timer = {
        let c = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            c.time_out();
        })
    };
    let c = control.clone();
    let result = crate::routes::blocking(move || query::control::with_control(Some(c), work)).await;
    timer.abort();
    let max_nodes = s.config.max_result_nodes;
    let result = result.and_then(|answer| {
        let size = match &answer {
            Answer::Tree(v) => tree_nodes(v),
            Answer::Listing(t) => t.len() as u64,
        };
        if size > max_nodes {
            Err(ApiError::param(format!(
                "the result has {size} branches, over the limit of {max_nodes}; narrow the query (trim=, fewer groups) or raise --max-result-nodes"
            ))
            .with("result_nodes", size))
        } else {
            Ok((answer, size))
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.status == StatusCode::GATEWAY_TIMEOUT => "timed_out",
        Err(e) if e.status == StatusCode::CONFLICT && control.stopped() => "cancelled",
        Err(_) => "error",
    };
    s.metrics.inc(
        "openset_queries_total",
        &[("kind", info.kind), ("outcome", outcome)],
    );
    s.metrics.observe(
        "openset_query_duration_seconds",
        &[("kind", info.kind)],
        secs,
    );
    s.activity.finish(
        id,
        json!({
            "id": id.to_string(),
            "kind": info.kind,
            "table": info.table,
            "digest": digest,
            "user": info.user,
            "start": started_ms,
            "duration_ms": secs * 1000.0,
            "outcome": outcome,
            "result_nodes": result.as_ref().map_or(0, |(_, n)| *n),
        }),
    );
    result.map(|(a, _)| a)
}

/// Branches of a rendered result tree (`{"_": [{"g", "c", "_"}]}`), counted
/// through every level.
fn tree_nodes(v: &Value) -> u64 {
    match v.get("_") {
        Some(Value::Array(children)) => children.iter().map(|c| 1 + tree_nodes(c)).sum(),
        _ => 0,
    }
}

/// A short stable digest of a script (FNV-1a, 64 bits, hex).
fn digest(script: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in script.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
