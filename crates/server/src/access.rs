//! Authentication and authorisation of every request: which endpoint group
//! a request belongs to, who sent it (Basic or Bearer), and whether their
//! role may use the group (`auth::allowed`). 401 and 403 answers never say
//! whether a user exists.

use crate::error::ApiError;
use crate::State;
use auth::{AuthError, Group, Principal};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// User name and password.
    Basic,
    /// A token from `GET /v1/auth/token/user`.
    Bearer,
}

/// The authenticated caller, or `None` when authentication is off.
#[derive(Clone, Debug)]
pub struct Caller(pub Option<(Principal, Scheme)>);

impl Caller {
    /// Whether the caller may not write data (a reader).
    pub fn read_only(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|(p, _)| !auth::allowed(p.role, auth::Group::Insert))
    }

    /// The caller's user name.
    pub fn name(&self) -> Option<String> {
        self.0.as_ref().map(|(p, _)| p.name.clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller(None)))
    }
}

/// The endpoint group of a request (`auth::allowed` decides per role).
pub fn group_of(method: &Method, path: &str) -> Group {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    match seg.as_slice() {
        ["ping"] => Group::Public,
        ["v1", "auth", "token", "user"] => Group::Own,
        ["v1", "auth", "user", _, "password"] => Group::Own,
        ["v1", "auth", ..] => Group::Users,
        ["v1", "cluster", "is_member"] => Group::Describe,
        ["v1", "cluster", ..] | ["v1", "internode", ..] => Group::Cluster,
        ["v1", "insert", ..] => Group::Insert,
        ["v1", "query", ..] => Group::Query,
        ["v1", "tables"] => Group::Describe,
        ["v1", "table", ..] if read => Group::Describe,
        ["v1", "table", ..] | ["v1", "subscription", ..] | ["v1", "trigger", ..] => {
            if read {
                Group::Describe
            } else {
                Group::Schema
            }
        }
        ["queries", ..] | ["query-history"] => Group::Operations,
        // status, version, metrics, info, and unknown paths (which 404
        // only after the caller has authenticated).
        _ => Group::Describe,
    }
}

/// The 401 answer: one text whatever went wrong.
pub fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth",
        "unauthorized",
        "missing or invalid credentials: send Authorization: Basic (user:password) or Bearer (a token from GET /v1/auth/token/user)",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"openset\", Bearer realm=\"openset\""),
    );
    r
}

/// The 403 answer.
pub fn forbidden(detail: impl Into<String>) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "auth", "forbidden", detail).into_response()
}

/// The middleware: authenticates, checks the role, and leaves a [`Caller`]
/// in the request's extensions for handlers.
pub async fn authorize(s: State, mut req: Request, next: Next) -> Response {
    let group = group_of(req.method(), req.uri().path());
    let store = &s.auth;
    // The first user of a node may register without a credential.
    let bootstrap =
        req.uri().path().trim_end_matches('/') == "/v1/auth/user/register" && !store.has_users();
    if group == Group::Public || !store.enabled() || bootstrap {
        req.extensions_mut().insert(Caller(None));
        return next.run(req).await;
    }
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        s.metrics
            .inc("openset_auth_failures_total", &[("status", "401")]);
        return unauthorized();
    };
    let scheme = if value
        .trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("bearer"))
    {
        Scheme::Bearer
    } else {
        Scheme::Basic
    };
    let outcome = if scheme == Scheme::Bearer {
        // One HMAC and a map lookup: cheap enough for the async thread.
        Ok(s.auth.authenticate(&value))
    } else {
        // argon2 is deliberately slow: keep it off the async threads.
        let checker = s.clone();
        tokio::task::spawn_blocking(move || checker.auth.authenticate(&value)).await
    };
    let principal = match outcome {
        Ok(Ok(p)) => p,
        Ok(Err(AuthError::Unauthenticated)) | Ok(Err(_)) | Err(_) => {
            s.metrics
                .inc("openset_auth_failures_total", &[("status", "401")]);
            return unauthorized();
        }
    };
    if !auth::allowed(principal.role, group) {
        s.metrics
            .inc("openset_auth_failures_total", &[("status", "403")]);
        return forbidden(format!(
            "role {} may not use this endpoint",
            principal.role.name()
        ));
    }
    req.extensions_mut()
        .insert(Caller(Some((principal, scheme))));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_paths() {
        let g = |m: Method, p: &str| group_of(&m, p);
        assert_eq!(g(Method::GET, "/ping"), Group::Public);
        assert_eq!(g(Method::POST, "/v1/insert/t"), Group::Insert);
        assert_eq!(g(Method::POST, "/v1/query/t/event"), Group::Query);
        assert_eq!(g(Method::GET, "/v1/table/t"), Group::Describe);
        assert_eq!(g(Method::POST, "/v1/table/t"), Group::Schema);
        assert_eq!(g(Method::DELETE, "/v1/table/t"), Group::Schema);
        assert_eq!(g(Method::PUT, "/v1/cluster/init"), Group::Cluster);
        assert_eq!(g(Method::POST, "/v1/auth/user/register"), Group::Users);
        assert_eq!(g(Method::PUT, "/v1/auth/user/bob/password"), Group::Own);
        assert_eq!(g(Method::DELETE, "/queries/3"), Group::Operations);
        assert_eq!(g(Method::GET, "/nowhere"), Group::Describe);
    }
}
