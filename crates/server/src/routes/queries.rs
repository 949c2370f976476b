//! Query endpoints (rest spec 5). The customer query is served here; the
//! OSL-driven kinds answer 501 until the OSL engine is wired in.

use crate::error::{not_initialized, ApiError};
use crate::params::Params;
use crate::State;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use store::ingest::text_id;
use store::record::CustomerKey;
use store::schema::IdType;

pub async fn customer(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let p = Params::parse(q.as_deref())?;
    let bad = |d: &str| ApiError::new(StatusCode::BAD_REQUEST, "query", "general_error", d);
    let raw = match (p.get("id"), p.get("sid")) {
        (Some(_), Some(_)) => return Err(bad("give either id= or sid=, not both")),
        (None, None) => return Err(bad("customer query must expecting id= parameter")),
        (Some(v), None) | (None, Some(v)) => v.to_string(),
    };
    let schema = s.db.table(&table).map_err(ApiError::from_query)?;
    let key = match schema.id_type {
        IdType::Numeric => CustomerKey::Num(raw.trim().parse().map_err(|_| bad("invalid id"))?),
        IdType::Textual => text_id(&raw).map_err(|_| bad("invalid id"))?,
    };
    match query::customer::customer_history(&s.db, &table, &key).map_err(ApiError::from_query)? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "query",
            "item not found",
            "customer could not be found",
        )),
    }
}

/// Endpoints whose engine is not built yet answer 501, never hang or pretend.
pub async fn not_yet(
    St(s): St<State>,
    Path(path): Path<Vec<String>>,
) -> Result<Json<Value>, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let _ = path;
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "query",
        "general_error",
        "this endpoint is not implemented yet",
    ))
}
