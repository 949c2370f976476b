//! `POST /v1/query/{table}/histogram/{name}` (rest spec 5.6): one number
//! per customer from the script's `return`, counted per bucket.

use super::queries::{now_ms, respond, script_request, selections};
use crate::access::Caller;
use crate::activity::{run_query, QueryInfo};
use crate::error::ApiError;
use crate::State;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::HeaderMap;
use axum::response::Response;
use query::histogram::HistogramQuery;
use store::schema::valid_segment_name;

/// The histogram query handler.
pub async fn histogram(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (p, source, debug, vars) = script_request(&s, &table, q.as_deref(), &headers, body).await?;
    if !valid_segment_name(&name) {
        return Err(ApiError::param(format!(
            "histogram name '{name}' must match [a-z0-9_][a-z0-9_.]* and be 1 to 64 characters"
        )));
    }
    let schema = s.db.table(&table).map_err(ApiError::from_query)?;
    let lookup = |k: &str| p.get(k).map(str::to_string);
    let mut query = HistogramQuery::from_params(&lookup, name, vars, now_ms())
        .map_err(ApiError::from_query_error)?;
    query.selections = selections(&p, &schema)?;
    let info = QueryInfo::new("histogram", &table, &source, &caller);
    let (st, t, src) = (s.clone(), table.clone(), source.clone());
    let answer = run_query(&s, info, &p, move || {
        query::histogram::histogram_query(&st.db, &t, &src, &query, debug)
            .map_err(ApiError::from_query_error)
    })
    .await?;
    Ok(respond(answer))
}
