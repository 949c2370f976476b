//! `POST /v1/insert/{table}` (rest spec 4).

use crate::body::read_body;
use crate::error::{not_initialized, ApiError};
use crate::params::Params;
use crate::State;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use store::ingest::{parse_body, UnknownPolicy, MAX_ERROR_ENTRIES};
use store::InsertOptions;

pub async fn insert(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let p = Params::parse(q.as_deref())?;
    let partial = p.bool("partial", false)?;
    let _wait = p.bool("wait", false)?; // every 200 is already applied and visible
    let unknown = match p.get("unknown").map(str::to_ascii_lowercase).as_deref() {
        None | Some("reject") => UnknownPolicy::Reject,
        Some("ignore") => UnknownPolicy::Ignore,
        Some(other) => {
            return Err(ApiError::param(format!(
                "parameter 'unknown' must be reject or ignore; got '{other}'"
            )))
        }
    };
    s.db.table(&table).map_err(ApiError::from_insert)?;
    let ndjson = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")
        });
    let bytes = read_body(&headers, body, s.config.max_body, "insert").await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let state = s.clone();
    let report = super::blocking(move || {
        let raw = parse_body(&bytes, ndjson).map_err(|e| {
            let mut err =
                ApiError::new(StatusCode::BAD_REQUEST, "insert", "general_error", e.detail);
            if let (Some(l), Some(c)) = (e.line, e.column) {
                err = err.with("line", l).with("column", c);
            }
            err
        })?;
        if raw.len() > state.config.max_records {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "insert",
                "general_error",
                format!(
                    "{} records in one request; the limit is {}",
                    raw.len(),
                    state.config.max_records
                ),
            ));
        }
        let total = raw.len();
        let report = state
            .db
            .insert(&table, raw, InsertOptions { partial, unknown }, now)
            .map_err(ApiError::from_insert)?;
        Ok((total, report))
    })
    .await?;
    let (total, report) = report;
    let events: Vec<Value> = report
        .errors
        .iter()
        .take(MAX_ERROR_ENTRIES)
        .map(|e| e.to_json())
        .collect();
    let truncated = report.errors.len() > MAX_ERROR_ENTRIES;
    if report.rejected > 0 && !partial {
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "insert",
            "general_error",
            format!(
                "{} of {total} records rejected; nothing was inserted",
                report.rejected
            ),
        )
        .with("rejected", report.rejected)
        .with("events", events);
        if truncated {
            err = err.with("truncated", true);
        }
        return Err(err);
    }
    s.metrics.inc("openset_insert_requests_total", &[]);
    s.metrics
        .add("openset_inserted_events_total", &[], report.accepted as f64);
    s.metrics
        .add("openset_rejected_events_total", &[], report.rejected as f64);
    let mut out = Map::new();
    out.insert("message".into(), json!("yummy"));
    out.insert("routes".into(), json!([s.config.public_address]));
    out.insert("accepted".into(), json!(report.accepted));
    out.insert("stamped".into(), json!(report.stamped));
    if partial {
        out.insert("rejected".into(), json!(report.rejected));
        out.insert("events".into(), Value::Array(events));
        if truncated {
            out.insert("truncated".into(), json!(true));
        }
    }
    if unknown == UnknownPolicy::Ignore {
        out.insert("ignored".into(), json!(report.ignored));
    }
    Ok(Json(Value::Object(out)))
}
