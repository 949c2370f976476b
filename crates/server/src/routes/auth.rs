//! Users and tokens (`/v1/auth/...`): register, change password, delete,
//! list, and issue a bearer token. The role checks of the group are done by
//! the access middleware; these handlers add the per-user rules.

use crate::access::{Caller, Scheme};
use crate::body::read_body;
use crate::error::ApiError;
use crate::State;
use auth::{AuthError, Role};
use axum::body::Body;
use axum::extract::{Path, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn auth_error(e: AuthError) -> Response {
    match e {
        AuthError::Unauthenticated => crate::access::unauthorized(),
        AuthError::Forbidden => crate::access::forbidden("only a super_user may do this"),
        AuthError::NoSuchUser => ApiError::new(
            StatusCode::NOT_FOUND,
            "auth",
            "item not found",
            "user not found",
        )
        .into_response(),
        AuthError::Exists => ApiError::new(
            StatusCode::BAD_REQUEST,
            "auth",
            "general_error",
            "a user of that name already exists",
        )
        .into_response(),
        AuthError::Invalid(d) => {
            ApiError::new(StatusCode::BAD_REQUEST, "auth", "general_error", d).into_response()
        }
        AuthError::Io(d) => {
            tracing::error!(error = %d, "saving users failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth",
                "general_error",
                "cannot save users right now",
            )
            .into_response()
        }
    }
}

async fn json_body(headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    let bytes = read_body(headers, body, 64 << 10, "auth")
        .await
        .map_err(IntoResponse::into_response)?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "auth",
                "general_error",
                "body must be a JSON object",
            )
            .into_response()
        })
}

fn text_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    v[key].as_str().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "auth",
            "general_error",
            format!("'{key}' must be a string"),
        )
    })
}

/// `POST /v1/auth/user/register` `{"username", "password", "role"}`: the
/// first user needs no credential and is always a super_user.
pub async fn register(
    St(s): St<State>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = match json_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (name, password) = match (text_field(&v, "username"), text_field(&v, "password")) {
        (Ok(n), Ok(p)) => (n.to_string(), p.to_string()),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let role = match v.get("role") {
        None | Some(Value::Null) => Role::Reader,
        Some(r) => match r.as_str().and_then(Role::parse) {
            Some(r) => r,
            None => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "auth",
                    "general_error",
                    "role must be super_user, writer or reader",
                )
                .into_response()
            }
        },
    };
    let principal = caller.0.map(|(p, _)| p);
    let store = s.auth.clone();
    let n = name.clone();
    let done = tokio::task::spawn_blocking(move || {
        store.register(&n, &password, role, principal.as_ref())
    })
    .await;
    match done {
        Ok(Ok(role)) => Json(json!({
            "message": "user created successfully",
            "username": name,
            "role": role.name(),
        }))
        .into_response(),
        Ok(Err(e)) => auth_error(e),
        Err(_) => auth_error(AuthError::Io("task failed".into())),
    }
}

/// `PUT /v1/auth/user/{name}/password` `{"password"}`: oneself, or a
/// super_user for anyone. Revokes the user's tokens.
pub async fn password(
    St(s): St<State>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match &caller.0 {
        Some((p, _)) if p.name == name || p.role == Role::SuperUser => {}
        Some(_) => return auth_error(AuthError::Forbidden),
        None => return auth_error(AuthError::NoSuchUser),
    }
    let v = match json_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let password = match text_field(&v, "password") {
        Ok(p) => p.to_string(),
        Err(e) => return e.into_response(),
    };
    let store = s.auth.clone();
    match tokio::task::spawn_blocking(move || store.set_password(&name, &password)).await {
        Ok(Ok(())) => Json(json!({ "message": "password changed" })).into_response(),
        Ok(Err(e)) => auth_error(e),
        Err(_) => auth_error(AuthError::Io("task failed".into())),
    }
}

/// `DELETE /v1/auth/user/{name}`.
pub async fn delete(St(s): St<State>, Path(name): Path<String>) -> Response {
    match s.auth.delete(&name) {
        Ok(()) => Json(json!({ "message": "user deleted" })).into_response(),
        Err(e) => auth_error(e),
    }
}

/// `GET /v1/auth/users`.
pub async fn list(St(s): St<State>) -> Json<Value> {
    let users: Vec<Value> = s
        .auth
        .list()
        .into_iter()
        .map(|(n, r)| json!({ "username": n, "role": r.name() }))
        .collect();
    Json(json!({ "users": users }))
}

/// `GET /v1/auth/token/user`: a bearer token for the Basic-authenticated
/// caller, valid for the node's token lifetime (3600 s by default).
pub async fn token(St(s): St<State>, caller: Caller) -> Response {
    match &caller.0 {
        Some((p, Scheme::Basic)) => match s.auth.issue_token(p) {
            Ok((token, expires)) => Json(json!({
                "token": token,
                "expires": expires,
                "expires_in": s.auth.token_ttl().as_secs(),
            }))
            .into_response(),
            Err(e) => auth_error(e),
        },
        Some((_, Scheme::Bearer)) => crate::access::forbidden(
            "tokens are issued for a user name and password (Basic), not for another token",
        ),
        None => ApiError::new(
            StatusCode::BAD_REQUEST,
            "auth",
            "general_error",
            "authentication is off: register a user first",
        )
        .into_response(),
    }
}
