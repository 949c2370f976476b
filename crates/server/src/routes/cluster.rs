//! `/ping`, `/status`, `/v1/version`, and the one-node cluster calls (rest spec 2, 8).

use crate::error::ApiError;
use crate::params::Params;
use crate::State;
use axum::extract::{RawQuery, State as St};
use axum::Json;
use serde_json::{json, Value};

/// Version of this server.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OpenSet API generation served.
pub const API: &str = "0.4.4";

pub async fn ping() -> Json<Value> {
    Json(json!({ "pong": true }))
}

pub async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION, "api": API }))
}

pub async fn is_member(St(s): St<State>) -> Json<Value> {
    Json(json!({ "part_of_cluster": s.db.is_initialized() }))
}

pub async fn init(St(s): St<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref())?;
    let bad = || ApiError::config("partitions must be >= 1 and <= 1000");
    let n = p.int("partitions").map_err(|_| bad())?.ok_or_else(bad)?;
    if s.db.is_initialized() {
        return Err(ApiError::config(
            "This instance is already part of a cluster",
        ));
    }
    let n = u32::try_from(n).map_err(|_| bad())?;
    let name = super::blocking(move || s.db.init(n, None).map_err(ApiError::from_config)).await?;
    Ok(Json(json!({ "server_name": name })))
}

pub async fn status(St(s): St<State>) -> Json<Value> {
    let catalog = s.db.catalog();
    let init = s.db.is_initialized();
    let name = catalog
        .node_name
        .clone()
        .unwrap_or_else(|| "startup".into());
    let partitions = catalog.partitions.filter(|_| init).unwrap_or(0);
    let (host, port) = s
        .config
        .public_address
        .rsplit_once(':')
        .unwrap_or((&s.config.public_address, "0"));
    let counts = s.db.counts();
    let tables: Vec<&String> = catalog.tables.keys().collect();
    let routes = if init {
        json!({ name.clone(): { "name": name, "public_host": host, "public_port": port.parse::<u16>().unwrap_or(0) } })
    } else {
        json!({})
    };
    let parts: Vec<Value> = (0..partitions)
        .map(|p| json!({ "partition": p, "routes": { name.clone(): "active" } }))
        .collect();
    Json(json!({
        "routes": routes,
        "partitions": parts,
        "status": {
            "init": init,
            "cluster_complete": init,
            "redundancy": 0,
            "tolerance": 0,
            "balanced": true,
            "sentinel": name,
            "tables": tables.len(),
        },
        "tables": tables,
        "node": {
            "name": name,
            "state": if init { "active" } else { "ready_wait" },
            "version": VERSION,
            "api": API,
            "uptime_ms": s.started.elapsed().as_millis() as u64,
            "partition_count": partitions,
        },
        "counts": { "customers": counts.customers, "events": counts.events },
        "subscriptions": s.subs.totals(),
        "maintenance": { "huge_pages_pass_running": s.db.huge_pages_pass_running() },
    }))
}
