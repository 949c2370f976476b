//! Operations: `/metrics`, `/metrics.json`, `/version`, `/info`,
//! `/queries` (and cancelling one), `/query-history`.

use crate::error::ApiError;
use crate::State;
use axum::extract::{Path, State as St};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn gauges(s: &State) -> Vec<(&'static str, f64)> {
    let init = s.db.is_initialized();
    let partitions = s.db.catalog().partitions.filter(|_| init).unwrap_or(0);
    vec![
        ("openset_active_queries", s.activity.active_count() as f64),
        ("openset_partitions", partitions as f64),
        ("openset_tables", s.db.catalog().tables.len() as f64),
        (
            "openset_resident_memory_bytes",
            crate::metrics::resident_bytes() as f64,
        ),
        ("openset_uptime_seconds", s.started.elapsed().as_secs_f64()),
    ]
}

/// Segment evaluations are counted by the query crate, webhook calls by
/// the subscriptions hub; copy the running totals into the registry before
/// rendering.
fn sync_counters(s: &State) {
    let n = query::segment::SEGMENTS_EVALUATED.load(std::sync::atomic::Ordering::Relaxed);
    s.metrics
        .set_total("openset_segments_refreshed_total", n as f64);
    let (ok, failed) = s.subs.delivery_calls();
    s.metrics
        .set_total("openset_webhook_deliveries_total", ok as f64);
    s.metrics
        .set_total("openset_webhook_failures_total", failed as f64);
}

/// `GET /metrics`: Prometheus text format.
pub async fn prometheus(St(s): St<State>) -> Response {
    sync_counters(&s);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.prometheus(&gauges(&s)),
    )
        .into_response()
}

/// `GET /metrics.json`.
pub async fn metrics_json(St(s): St<State>) -> Json<Value> {
    sync_counters(&s);
    Json(s.metrics.json(&gauges(&s)))
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({
        "version": super::cluster::VERSION,
        "api": super::cluster::API,
    }))
}

/// `GET /info`: build, machine and data directory.
pub async fn info(St(s): St<State>) -> Result<Json<Value>, ApiError> {
    let dir = s.data_dir.clone();
    let data_bytes = super::blocking(move || Ok(dir_size(&dir))).await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    Ok(Json(json!({
        "version": super::cluster::VERSION,
        "build": {
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "target_os": std::env::consts::OS,
            "target_arch": std::env::consts::ARCH,
        },
        "cores": cores,
        "memory": {
            "total_bytes": total_memory(),
            "resident_bytes": crate::metrics::resident_bytes(),
        },
        "data_dir": s.data_dir.display().to_string(),
        "data_dir_bytes": data_bytes,
        "uptime_ms": s.started.elapsed().as_millis() as u64,
        "auth": s.auth.enabled(),
    })))
}

/// `GET /queries`: running queries with their age.
pub async fn queries(St(s): St<State>) -> Json<Value> {
    Json(Value::Array(s.activity.active()))
}

/// `DELETE /queries/{id}`: asks a running query to stop.
pub async fn cancel(St(s): St<State>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let found = id.parse::<u64>().is_ok_and(|n| s.activity.cancel(n));
    if found {
        Ok(Json(json!({ "message": "cancelling", "id": id })))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "query",
            "item not found",
            format!("no running query with id '{id}'"),
        ))
    }
}

/// `GET /query-history`: the last finished queries, newest first.
pub async fn history(St(s): St<State>) -> Json<Value> {
    Json(Value::Array(s.activity.history()))
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}
