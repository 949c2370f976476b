//! `POST /v1/query/{table}/histogram/{name}` (rest spec 5.6): one number
//! per customer from the script's `return`, counted per bucket.

use super::queries::{check_segments, now_ms, script_body, script_params};
use crate::error::{not_initialized, ApiError};
use crate::params::Params;
use crate::State;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use query::event::Answer;
use query::histogram::{HistogramQuery, MAX_MAGNITUDE, MIN_BUCKET};
use store::schema::valid_segment_name;

/// A number parameter: finite and within the fixed-point range.
fn number(p: &Params, name: &str) -> Result<Option<f64>, ApiError> {
    let Some(raw) = p.get(name) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() <= MAX_MAGNITUDE)
        .map(Some)
        .ok_or_else(|| {
            ApiError::param(format!(
                "{name} must be a number from -{MAX_MAGNITUDE} to {MAX_MAGNITUDE}; got '{raw}'"
            ))
        })
}

/// Reads and checks every histogram parameter but the script variables.
fn histogram_params(p: &Params, name: String) -> Result<HistogramQuery, ApiError> {
    check_segments(p)?;
    let segments = p
        .get("segments")
        .map_or(1, |l| l.split(',').filter(|n| !n.trim().is_empty()).count());
    let descending = match p.get("order").map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::param(format!(
                "order must be asc or desc; got '{other}'"
            )))
        }
    };
    let bucket = number(p, "bucket")?;
    if let Some(b) = bucket {
        if b <= 0.0 {
            return Err(ApiError::param(format!(
                "bucket must be a number above 0; got '{}'",
                p.get("bucket").unwrap_or_default()
            )));
        }
        if b < MIN_BUCKET {
            return Err(ApiError::param(format!(
                "bucket must be at least {MIN_BUCKET} (samples keep 4 decimals)"
            )));
        }
    }
    let min = number(p, "min")?;
    let max = number(p, "max")?;
    if bucket.is_none() && (min.is_some() || max.is_some()) {
        return Err(ApiError::param("min and max require bucket"));
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return Err(ApiError::param(format!(
                "min ({lo}) must not be above max ({hi})"
            )));
        }
    }
    let foreach = match p.get("foreach") {
        None => None,
        Some(f) if f.trim().is_empty() => {
            return Err(ApiError::param("foreach must name a property"))
        }
        Some(f) => Some(f.trim().to_string()),
    };
    Ok(HistogramQuery {
        name,
        params: script_params(p)?,
        bucket,
        min,
        max,
        foreach,
        descending,
        trim: p.int("trim")?.filter(|&t| t > 0).map(|t| t as usize),
        session_time: match p.int("session_time")? {
            Some(t) if t <= 0 => {
                return Err(ApiError::param(
                    "session_time must be a positive number of milliseconds",
                ))
            }
            other => other,
        },
        segments,
        now: now_ms(),
    })
}

/// The histogram query handler.
pub async fn histogram(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let p = Params::parse(q.as_deref())?;
    if !valid_segment_name(&name) {
        return Err(ApiError::param(format!(
            "histogram name '{name}' must match [a-z0-9_][a-z0-9_.]* and be 1 to 64 characters"
        )));
    }
    s.db.table(&table).map_err(ApiError::from_query)?;
    let source = script_body(&s, &headers, body).await?;
    let debug = p.bool("debug", false)?;
    let query = histogram_params(&p, name)?;
    let answer = super::blocking(move || {
        query::histogram::histogram_query(&s.db, &table, &source, &query, debug)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    Ok(match answer {
        Answer::Tree(v) => Json(v).into_response(),
        Answer::Listing(text) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
    })
}
