//! The OpenSet HTTP API on axum: routes, parameters, bodies and error JSON.
//! Handlers translate HTTP to calls on `store` and `query` and back; they
//! hold no data of their own.

pub mod access;
pub mod activity;
pub mod body;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod params;
mod routes;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use std::sync::Arc;
use std::time::Instant;

/// Limits and identity of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `host:port` other nodes and clients should use (the `routes` list).
    pub public_address: String,
    /// Largest request body, raw or decoded (bytes).
    pub max_body: usize,
    /// Most records in one insert.
    pub max_records: usize,
    /// Largest JSON body of table, settings and subscription requests.
    pub max_json_body: usize,
    /// Longest URL (path plus query).
    pub max_url: usize,
    /// Largest OSL script in one query request.
    pub max_script: usize,
    /// Use index pre-filters in queries (off only to test they change nothing).
    pub prefilter: bool,
    /// Report every 4xx other than 401 and 403 as 400 (rest spec 1.4), for
    /// clients of the original that test for 400 exactly.
    pub legacy_status_codes: bool,
    /// Longest a query may run; `timeout=` may only shorten it.
    pub query_timeout: std::time::Duration,
    /// Most branches in a query's result tree.
    pub max_result_nodes: u64,
    /// Longest wait for the rest of a request body once headers arrived.
    pub body_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            public_address: "127.0.0.1:8080".into(),
            max_body: 32 << 20,
            max_records: 100_000,
            max_json_body: 1 << 20,
            max_url: 16 << 10,
            max_script: 1 << 20,
            prefilter: true,
            legacy_status_codes: false,
            query_timeout: std::time::Duration::from_secs(300),
            max_result_nodes: 1_000_000,
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The node's database.
    pub db: store::Db,
    /// HTTP settings.
    pub config: ServerConfig,
    /// Compiled segments and their freshness.
    pub segments: std::sync::Arc<query::segment::SegmentRegistry>,
    /// When the server started.
    pub started: Instant,
    /// Users, roles and tokens.
    pub auth: Arc<auth::AuthStore>,
    /// Counters and histograms for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Running and recent queries.
    pub activity: activity::Activity,
    /// The data directory (for `/info`).
    pub data_dir: std::path::PathBuf,
    /// Subscriptions and their delivery.
    pub subs: Arc<subscriptions::Hub>,
}

/// Shared handle to the state.
pub type State = Arc<AppState>;

/// The service: routes wrapped in the protocol rules that apply to every path.
pub fn app(state: State) -> axum::Router {
    let max_url = state.config.max_url;
    let legacy = state.config.legacy_status_codes;
    body::set_read_timeout(state.config.body_timeout);
    let (a, m) = (state.clone(), state.clone());
    routes::router(state)
        // Per-route layers (they also wrap the fallback): the metrics layer
        // sees the matched route and every answer, 401 and 403 included.
        .layer(axum::middleware::from_fn(move |req, next| {
            access::authorize(a.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            count_request(m.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            protocol(req, next, max_url, legacy)
        }))
}

/// Serves `app(state)` on `listener` (HTTPS when `listen.tls` is set) until
/// the process ends. Trailing slashes are folded before routing.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    listen: listen::ListenConfig,
) -> std::io::Result<()> {
    listen::run(listener, app(state), listen).await
}

/// Counts a request by route, method and status, and times it.
async fn count_request(s: State, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    s.metrics.inc(
        "openset_http_requests_total",
        &[("route", &route), ("method", &method), ("status", &status)],
    );
    s.metrics.observe(
        "openset_http_request_duration_seconds",
        &[("route", &route)],
        t.elapsed().as_secs_f64(),
    );
    resp
}

pub(crate) fn strip_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";

/// CORS, preflight, URL limit, and JSON bodies for the router's own 404/405.
async fn protocol(req: Request, next: Next, max_url: usize, legacy_status_codes: bool) -> Response {
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("Content-Type, Content-Encoding, Authorization"),
        );
        r
    } else if req.uri().to_string().len() > max_url {
        ApiError::param(format!("URL is over the limit of {max_url} bytes")).into_response()
    } else if let Some(e) = req.uri().query().and_then(|q| {
        q.split(['&', '='])
            .find_map(|part| params::decode(part).err())
    }) {
        // Every decoded parameter must be UTF-8, whether the endpoint reads it or not.
        e.into_response()
    } else {
        let path = req.uri().path().to_string();
        let r = next.run(req).await;
        let is_json = r
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        match r.status() {
            StatusCode::NOT_FOUND if !is_json => ApiError::new(
                StatusCode::NOT_FOUND,
                "config",
                "general_error",
                format!("no route for {path}"),
            )
            .into_response(),
            status
                if status.is_client_error()
                    && !is_json
                    && status != StatusCode::METHOD_NOT_ALLOWED =>
            {
                // An extractor's own rejection (a path that does not decode,
                // say): same status, the spec's error JSON.
                let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024)
                    .await
                    .unwrap_or_default();
                ApiError::new(
                    status,
                    "config",
                    "general_error",
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
                .into_response()
            }
            StatusCode::METHOD_NOT_ALLOWED if !is_json => {
                let allow = r.headers().get(header::ALLOW).cloned();
                let mut e = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "config",
                    "general_error",
                    format!("method not allowed on {path}"),
                )
                .into_response();
                if let Some(a) = allow {
                    e.headers_mut().insert(header::ALLOW, a);
                }
                e
            }
            _ => r,
        }
    };
    if legacy_status_codes
        && resp.status().is_client_error()
        && !matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    {
        *resp.status_mut() = StatusCode::BAD_REQUEST;
    }
    resp.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    resp
}
