//! Table and property endpoints (rest spec 3).

use crate::body::read_body;
use crate::error::{not_initialized, ApiError};
use crate::params::Params;
use crate::State;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use store::schema::{valid_property_name, valid_table_name, PropType};
use store::AddProperty;

fn check_table(name: &str, detail: &str) -> Result<(), ApiError> {
    if valid_table_name(name) {
        Ok(())
    } else {
        Err(ApiError::config(detail))
    }
}

fn require_init(s: &State) -> Result<(), ApiError> {
    if s.db.is_initialized() {
        Ok(())
    } else {
        Err(not_initialized())
    }
}

async fn json_body(s: &State, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_body(headers, body, s.config.max_json_body, "config").await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::config(format!("body is not valid JSON: {e}")))
}

pub async fn list(St(s): St<State>) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    Ok(Json(json!(s
        .db
        .catalog()
        .tables
        .keys()
        .collect::<Vec<_>>())))
}

pub async fn create(
    St(s): St<State>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "bad table name")?;
    let def = json_body(&s, &headers, body).await?;
    let t = table.clone();
    super::blocking(move || s.db.create_table(&t, &def).map_err(ApiError::from_config)).await?;
    Ok(Json(json!({ "message": "created", "table": table })))
}

pub async fn describe(
    St(s): St<State>,
    Path(table): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "missing table name")?;
    let legacy = Params::parse(q.as_deref())?.bool("legacy", false)?;
    let schema = s.db.table(&table).map_err(ApiError::from_config)?;
    Ok(Json(schema.describe(legacy)))
}

pub async fn drop(St(s): St<State>, Path(table): Path<String>) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "missing table name")?;
    let t = table.clone();
    super::blocking(move || {
        let uid = s.db.table(&t).map_err(ApiError::from_config)?.uid;
        s.db.drop_table(&t).map_err(ApiError::from_config)?;
        // Subscriptions go with the table (rest spec 6.6.9).
        s.subs.drop_table(uid);
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "message": "dropped", "table": table })))
}

pub async fn settings(
    St(s): St<State>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "missing table name")?;
    s.db.table(&table).map_err(ApiError::from_config)?;
    let Value::Object(body) = json_body(&s, &headers, body).await? else {
        return Err(ApiError::config("settings must be a JSON object"));
    };
    let out = super::blocking(move || {
        s.db.update_settings(&table, &body)
            .map_err(ApiError::from_config)
    })
    .await?;
    Ok(Json(out))
}

/// Adds a property; `key` is `property` or, for the older alias, `column`.
async fn add(
    s: State,
    table: String,
    name: String,
    kind: Option<&str>,
    is_set: bool,
    is_customer: bool,
    key: &'static str,
) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "missing table name")?;
    s.db.table(&table).map_err(ApiError::from_config)?;
    if name.is_empty() {
        return Err(ApiError::config(format!("missing or invalid {key} name")));
    }
    if !valid_property_name(&name) {
        return Err(ApiError::config(format!(
            "bad {key} name: may contain lowercase a-z, 0-9 and _ but cannot start with a number."
        )));
    }
    let kind = kind
        .and_then(PropType::parse)
        .ok_or_else(|| ApiError::config(format!("bad {key} type: must be int|double|text|bool")))?;
    let (t, n) = (table.clone(), name.clone());
    // Added and Unchanged answer alike, so a retried call is harmless.
    let _: AddProperty = super::blocking(move || {
        s.db.add_property(&t, &n, kind, is_set, is_customer)
            .map_err(ApiError::from_config)
    })
    .await?;
    Ok(Json(
        json!({ "message": "added", "table": table, key: name, "type": kind.name() }),
    ))
}

async fn drop_prop(
    s: State,
    table: String,
    name: String,
    key: &'static str,
) -> Result<Json<Value>, ApiError> {
    require_init(&s)?;
    check_table(&table, "missing table name")?;
    let (t, n) = (table.clone(), name.clone());
    let dropped = super::blocking(move || {
        s.db.drop_property(&t, &n).map_err(ApiError::from_config)?;
        // Segments whose script names the property go with it (rest spec 3.8).
        let schema = s.db.table(&t).map_err(ApiError::from_config)?;
        let broken = s.segments.reload(&schema);
        if !broken.is_empty() {
            s.db.remove_segments(&t, &broken)
                .map_err(ApiError::from_config)?;
            s.subs.drop_segments(schema.uid, &broken);
        }
        let mut broken = broken;
        broken.extend(s.subs.reload_triggers(&schema));
        Ok(broken)
    })
    .await?;
    let mut out = json!({ "message": "dropped", "table": table, key: name });
    if !dropped.is_empty() {
        out["dropped_segments"] = json!(dropped);
    }
    Ok(Json(out))
}

pub async fn add_property(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref())?;
    let is_set = p.bool("is_set", false)?;
    let is_customer = p.bool("is_customer", false)?;
    let kind = p.get("type").map(str::to_string);
    add(
        s,
        table,
        name,
        kind.as_deref(),
        is_set,
        is_customer,
        "property",
    )
    .await
}

pub async fn drop_property(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    drop_prop(s, table, name, "property").await
}

pub async fn add_column(
    St(s): St<State>,
    Path((table, spec)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let Some((name, kind)) = spec.split_once(':') else {
        return Err(ApiError::config("missing or invalid column type"));
    };
    if PropType::parse(kind).is_none() {
        return Err(ApiError::config("missing or invalid column type"));
    }
    add(
        s,
        table,
        name.to_string(),
        Some(kind),
        false,
        false,
        "column",
    )
    .await
}

pub async fn drop_column(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    drop_prop(s, table, name, "column").await
}

fn check_trigger(s: &State, table: &str, name: &str) -> Result<u64, ApiError> {
    require_init(s)?;
    check_table(table, "missing table name")?;
    let uid = s.db.table(table).map_err(ApiError::from_config)?.uid;
    let mut c = name.chars();
    let valid = name.len() <= 64
        && c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_');
    if !valid {
        return Err(ApiError::config(format!(
            "bad re-event trigger name '{name}': [a-z_][a-z0-9_]*"
        )));
    }
    Ok(uid)
}

fn trigger_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "config",
        "general_config_error",
        "re-event trigger not found",
    )
}

/// `POST /v1/table/{table}/revent/{name}`: create or replace (rest spec 3.10).
pub async fn revent_create(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check_trigger(&s, &table, &name)?;
    let script = super::queries::script_body(&s, &headers, body).await?;
    let (t, n) = (table.clone(), name.clone());
    super::blocking(move || {
        s.subs
            .define_trigger(&s.db, &t, &n, &script)
            .map_err(super::subscriptions::from_sub)
    })
    .await?;
    Ok(Json(
        json!({ "message": "created", "table": table, "revent": name }),
    ))
}

/// `GET /v1/table/{table}/revent/{name}`: the stored script.
pub async fn revent_describe(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let uid = check_trigger(&s, &table, &name)?;
    let def = s.subs.trigger(uid, &name).ok_or_else(trigger_not_found)?;
    Ok(Json(json!({
        "table": table, "revent": name, "entry": "on_insert", "script": def.script
    })))
}

/// `DELETE /v1/table/{table}/revent/{name}`: drops the trigger, its
/// scheduled runs and its subscriptions' backlogs.
pub async fn revent_drop(
    St(s): St<State>,
    Path((table, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let uid = check_trigger(&s, &table, &name)?;
    let n = name.clone();
    let dropped = super::blocking(move || {
        s.subs
            .drop_trigger(uid, &n)
            .map_err(super::subscriptions::from_sub)
    })
    .await?;
    if !dropped {
        return Err(trigger_not_found());
    }
    Ok(Json(
        json!({ "message": "dropped", "table": table, "revent": name }),
    ))
}
