//! Subscriptions (rest spec 6): create, update, delete and list webhooks
//! told when customers enter or leave a segment.

use crate::body::read_body;
use crate::error::{not_initialized, ApiError};
use crate::State;
use axum::body::Body;
use axum::extract::{Path, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use store::schema::{valid_segment_name, valid_table_name};
use subscriptions::{SubError, Target};

/// The answer for a subscription or trigger failure.
pub(crate) fn from_sub(e: SubError) -> ApiError {
    match e {
        SubError::Compile(c) => ApiError::from_compile(&c),
        SubError::NotFound(d) => {
            ApiError::new(StatusCode::NOT_FOUND, "config", "general_config_error", d)
        }
        SubError::Bad(d) => ApiError::config(d),
        SubError::Storage(d) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "config",
            "general_error",
            d,
        ),
    }
}

/// Node, table and names checked in the order of rest spec 6.1.
fn check(s: &State, table: &str, names: &[(&str, &str)]) -> Result<u64, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    if !valid_table_name(table) {
        return Err(ApiError::config("bad table name"));
    }
    let uid = s.db.table(table).map_err(ApiError::from_config)?.uid;
    for (kind, name) in names {
        if !valid_segment_name(name) {
            return Err(ApiError::config(format!(
                "bad {kind} name '{name}': may contain a-z, 0-9, _ and . (not first)"
            )));
        }
    }
    Ok(uid)
}

/// `PUT`/`POST /v1/subscription/{table}/{segment}/{subscriber}` (and `/v1/trigger/...`).
pub async fn subscribe(
    St(s): St<State>,
    Path((table, segment, subscriber)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check(
        &s,
        &table,
        &[("segment", &segment), ("subscriber", &subscriber)],
    )?;
    let bytes = read_body(&headers, body, s.config.max_json_body, "config").await?;
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::config(format!("body is not valid JSON: {e}")))?
    };
    let (t, seg, sub) = (table.clone(), segment.clone(), subscriber.clone());
    super::blocking(move || {
        // The segment (or trigger) is checked before the body (rest spec 6.1 order).
        let schema = s.db.table(&t).map_err(ApiError::from_config)?;
        if !schema.segments.contains_key(&seg) && s.subs.trigger(schema.uid, &seg).is_none() {
            return Err(from_sub(SubError::NotFound(format!(
                "segment: '{seg}' not found."
            ))));
        }
        let target = Target::parse(&body).map_err(from_sub)?;
        s.subs
            .subscribe(&s.db, &t, &seg, &sub, target)
            .map_err(from_sub)
    })
    .await?;
    Ok(Json(json!({
        "message": "created", "table": table, "segment": segment, "subname": subscriber
    })))
}

/// `DELETE /v1/subscription/{table}/{segment}/{subscriber}` (and `/v1/trigger/...`).
pub async fn unsubscribe(
    St(s): St<State>,
    Path((table, segment, subscriber)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check(
        &s,
        &table,
        &[("segment", &segment), ("subscriber", &subscriber)],
    )?;
    let (t, seg, sub) = (table.clone(), segment.clone(), subscriber.clone());
    super::blocking(move || s.subs.unsubscribe(&t, &seg, &sub).map_err(from_sub)).await?;
    Ok(Json(json!({
        "message": "removed", "table": table, "segment": segment, "subname": subscriber
    })))
}

/// `DELETE /v1/trigger/{table}/{subscriber}`: the subscriber leaves every segment.
pub async fn unsubscribe_all(
    St(s): St<State>,
    Path((table, subscriber)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check(&s, &table, &[("subscriber", &subscriber)])?;
    let (t, sub) = (table.clone(), subscriber.clone());
    let segments =
        super::blocking(move || s.subs.unsubscribe_all(&t, &sub).map_err(from_sub)).await?;
    Ok(Json(json!({
        "message": "removed", "table": table, "subname": subscriber, "segments": segments
    })))
}

/// `GET /v1/subscription/{table}` (and `/v1/trigger/{table}`).
pub async fn list(St(s): St<State>, Path(table): Path<String>) -> Result<Json<Value>, ApiError> {
    let uid = check(&s, &table, &[])?;
    Ok(Json(
        json!({ "table": table, "subscriptions": s.subs.list(uid) }),
    ))
}
