//! Query endpoints (rest spec 5): customer and event queries; the
//! segment, property, histogram and batch kinds answer 501 until built.

use crate::access::Caller;
use crate::activity::{run_query, QueryInfo};
use crate::body::read_body;
use crate::error::{not_initialized, ApiError};
use crate::params::Params;
use crate::State;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use query::event::EventQuery;
use query::Answer;
use serde_json::Value;
use store::ingest::text_id;
use store::record::CustomerKey;
use store::schema::IdType;

pub async fn customer(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    caller: Caller,
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
    let info = QueryInfo::new("customer", &table, &raw, &caller);
    let t = table.clone();
    let db = s.clone();
    let answer = run_query(
        &s,
        info,
        &p,
        move || match query::customer::customer_history(&db.db, &t, &key)
            .map_err(ApiError::from_query)?
        {
            Some(v) => Ok(Answer::Tree(v)),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "query",
                "item not found",
                "customer could not be found",
            )),
        },
    )
    .await?;
    match answer {
        Answer::Tree(v) => Ok(Json(v)),
        Answer::Listing(t) => Ok(Json(Value::String(t))),
    }
}

/// A scripted query's answer: JSON tree, or the plain-text listing of `debug=true`.
pub(crate) fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Tree(v) => Json(v).into_response(),
        Answer::Listing(text) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
    }
}

/// What every scripted query reads first: parameters, the script, `debug`
/// and the typed script variables (after checking the node and the table).
pub(crate) async fn script_request(
    s: &State,
    table: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Params, String, bool, osl::Params), ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let p = Params::parse(q)?;
    s.db.table(table).map_err(ApiError::from_query)?;
    let source = script_body(s, headers, body).await?;
    let debug = p.bool("debug", false)?;
    let vars = script_params(&p)?;
    Ok((p, source, debug, vars))
}

/// Reads an OSL body: size-limited, gzip allowed, UTF-8, not empty.
pub(crate) async fn script_body(
    s: &State,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, ApiError> {
    let bytes = read_body(headers, body, s.config.max_script, "query").await?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "query",
            "general_error",
            "query body is not valid UTF-8",
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "query",
            "general_error",
            "missing query code (POST query as text)",
        ));
    }
    Ok(text)
}

/// The `str_`/`int_`/`dbl_`/`bool_` parameters as typed script variables (rest spec 5.1).
pub(crate) fn script_params(p: &Params) -> Result<osl::Params, ApiError> {
    let mut out = osl::Params::new();
    for (key, raw) in p.iter() {
        let Some((prefix, name)) = key.split_once('_') else {
            continue;
        };
        let value = match prefix {
            "str" => osl::Value::text(raw),
            "int" => osl::Value::Int(raw.trim().parse().map_err(|_| {
                ApiError::param(format!("parameter '{key}' must be an integer; got '{raw}'"))
            })?),
            "dbl" => osl::Value::Float(
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        ApiError::param(format!("parameter '{key}' must be a number; got '{raw}'"))
                    })?,
            ),
            "bool" => osl::Value::Bool(crate::params::parse_bool(raw).ok_or_else(|| {
                ApiError::param(format!(
                    "parameter '{key}' must be true or false; got '{raw}'"
                ))
            })?),
            _ => continue,
        };
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ApiError::param(format!(
                "parameter '{key}': '{name}' is not a valid script variable name"
            )));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// Reads `segments=` into selections: `*` is everyone, other names must be
/// stored segments of the table. Absent: everyone.
pub(crate) fn selections(
    p: &Params,
    schema: &store::schema::TableSchema,
) -> Result<Vec<query::event::Selection>, ApiError> {
    use query::event::Selection;
    let Some(list) = p.get("segments") else {
        return Ok(vec![Selection::Everyone]);
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "query",
            "general_error",
            "no segment names specified",
        ));
    }
    if names.len() > 32 {
        return Err(ApiError::param("more than 32 segments in segments="));
    }
    names
        .into_iter()
        .map(|n| match n {
            "*" => Ok(Selection::Everyone),
            _ if schema.segments.contains_key(n) => Ok(Selection::Segment(n.to_string())),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "run_time",
                "item not found",
                format!("missing segment '{n}'"),
            )),
        })
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn event(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, source, debug, vars) = script_request(&s, &table, q.as_deref(), &headers, body).await?;
    let schema = s.db.table(&table).map_err(ApiError::from_query)?;
    let segments = selections(&p, &schema)?;
    let descending = match p.get("order").map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::param(format!(
                "order must be asc or desc; got '{other}'"
            )))
        }
    };
    let query = EventQuery {
        params: vars,
        sort: p.get("sort").map(str::to_string),
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
        stamp_counts: p.bool("stamp_counts", false)?,
        now: now_ms(),
        prefilter: s.config.prefilter,
        segments,
    };
    let info = QueryInfo::new("event", &table, &source, &caller);
    let (st, t, src) = (s.clone(), table.clone(), source.clone());
    let answer = run_query(&s, info, &p, move || {
        query::event::event_query(&st.db, &t, &src, &query, debug)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    Ok(respond(answer))
}

pub async fn property(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if !s.db.is_initialized() {
        return Err(not_initialized());
    }
    let p = Params::parse(q.as_deref())?;
    let schema = s.db.table(&table).map_err(ApiError::from_config)?;
    let segments = selections(&p, &schema)?;
    let lookup = |k: &str| p.get(k).map(str::to_string);
    let pq = query::property::PropertyQuery::from_params(&lookup, segments)
        .map_err(ApiError::from_query_error)?;
    let info = QueryInfo::new("property", &table, &name, &caller);
    let (st, t, name) = (s.clone(), table.clone(), name.clone());
    let out = run_query(&s, info, &p, move || {
        query::property::property_query(&st.db, &t, &name, &pq)
            .map(Answer::Tree)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    match out {
        Answer::Tree(v) => Ok(Json(v)),
        Answer::Listing(t) => Ok(Json(Value::String(t))),
    }
}

pub async fn segment(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, source, debug, params) =
        script_request(&s, &table, q.as_deref(), &headers, body).await?;
    let info = QueryInfo::new("segment", &table, &source, &caller);
    let (st, t, src) = (s.clone(), table.clone(), source.clone());
    let answer = run_query(&s, info, &p, move || {
        query::segment::segment_query(&st.db, &st.segments, &t, &src, &params, debug)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    Ok(respond(answer))
}

pub async fn batch(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, source, debug, params) =
        script_request(&s, &table, q.as_deref(), &headers, body).await?;
    let info = QueryInfo::new("batch", &table, &source, &caller);
    let (st, t, src) = (s.clone(), table.clone(), source.clone());
    let answer = run_query(&s, info, &p, move || {
        query::batch::batch_query(&st.db, &st.segments, &t, &src, &params, now_ms(), debug)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    Ok(respond(answer))
}
