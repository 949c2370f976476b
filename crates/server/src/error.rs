//! API errors: a status code and the spec's error JSON (rest spec 1.5).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.class`.
    pub class: &'static str,
    /// `error.message`: the original's fixed code text.
    pub message: &'static str,
    /// `error.detail`: human text for this occurrence.
    pub detail: String,
    /// Extra keys inside `error` (line, column, rejected, events, ...).
    pub extra: Vec<(String, Value)>,
}

impl ApiError {
    /// A new error without extra keys.
    pub fn new(
        status: StatusCode,
        class: &'static str,
        message: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            class,
            message,
            detail: detail.into(),
            extra: Vec::new(),
        }
    }

    /// A 400 `config` / `general_config_error`.
    pub fn config(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "config",
            "general_config_error",
            detail,
        )
    }

    /// A 400 `query` / `general_query_error` for a bad parameter.
    pub fn param(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "query",
            "general_query_error",
            detail,
        )
    }

    /// Adds a key inside `error`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The error JSON.
    pub fn body(&self) -> Value {
        let mut e = Map::new();
        e.insert("class".into(), Value::from(self.class));
        e.insert("message".into(), Value::from(self.message));
        if !self.detail.is_empty() {
            e.insert("detail".into(), Value::from(self.detail.clone()));
        }
        for (k, v) in &self.extra {
            e.insert(k.clone(), v.clone());
        }
        let mut top = Map::new();
        top.insert("error".into(), Value::Object(e));
        Value::Object(top)
    }

    /// The OSL error JSON of a script that does not compile (OSL spec 13.3).
    pub fn from_compile(e: &osl::CompileError) -> Self {
        Self::osl(
            "parse",
            e.code,
            &e.detail,
            &e.additional,
            e.line,
            e.column,
            e.section.as_deref(),
        )
    }

    /// The OSL error JSON of a run-time fault, which aborts the query.
    pub fn from_runtime(e: &osl::RuntimeError) -> Self {
        Self::osl(
            "run_time",
            e.code,
            &e.detail,
            &e.additional,
            e.line,
            e.column,
            e.section.as_deref(),
        )
    }

    fn osl(
        class: &'static str,
        code: osl::ErrorCode,
        detail: &str,
        additional: &str,
        line: u32,
        column: u32,
        section: Option<&str>,
    ) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, class, code.message(), detail);
        if !additional.is_empty() {
            e = e.with("additional", additional);
        }
        e = e.with("code", code.code());
        if line > 0 {
            e = e.with("line", line).with("column", column);
        }
        if let Some(s) = section {
            e = e.with("section", s);
        }
        e
    }

    /// Maps a query failure.
    pub fn from_query_error(e: query::QueryError) -> Self {
        match e {
            query::QueryError::Store(s) => Self::from_query(s),
            query::QueryError::Compile(c) => Self::from_compile(&c),
            query::QueryError::Runtime(r) => Self::from_runtime(&r),
            query::QueryError::PropertyNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "config",
                "general_config_error",
                "property not found",
            ),
            query::QueryError::MissingForeach(name) => Self::new(
                StatusCode::BAD_REQUEST,
                "run_time",
                "item not found",
                format!("missing foreach column '{name}'"),
            ),
            query::QueryError::BadParam(detail) => Self::param(detail),
            query::QueryError::MissingSegment(name) => Self::new(
                StatusCode::BAD_REQUEST,
                "run_time",
                "item not found",
                format!("missing segment '{name}'"),
            ),
            query::QueryError::Request { detail } => {
                Self::new(StatusCode::BAD_REQUEST, "query", "syntax_error", detail)
            }
            query::QueryError::TimedOut => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "query",
                "query timed out",
                "the query ran past its deadline (timeout= or --query-timeout-ms) and was stopped",
            ),
            query::QueryError::ReadOnly => Self::new(
                StatusCode::FORBIDDEN,
                "auth",
                "forbidden",
                "this role may not write customer properties; the query wrote nothing",
            ),
            query::QueryError::Cancelled => Self::new(
                StatusCode::CONFLICT,
                "query",
                "query cancelled",
                "the query was cancelled (DELETE /queries/{id})",
            ),
            query::QueryError::BadSort(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "parse",
                "syntax_error",
                "sort property not found in query aggregates",
            ),
        }
    }

    /// Maps a store error met by a schema (`config`) endpoint.
    pub fn from_config(e: StoreError) -> Self {
        match e {
            StoreError::TableNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "config",
                "general_config_error",
                "table not found",
            ),
            StoreError::PropertyNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "config",
                "general_config_error",
                "property not found",
            ),
            other => Self::common(other, "config", "general_config_error"),
        }
    }

    /// Maps a store error met by the insert endpoint.
    pub fn from_insert(e: StoreError) -> Self {
        match e {
            StoreError::TableNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "insert",
                "general_error",
                "missing or invalid table name",
            ),
            other => Self::common(other, "insert", "general_error"),
        }
    }

    /// Maps a store error met by a query endpoint.
    pub fn from_query(e: StoreError) -> Self {
        match e {
            StoreError::TableNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "query",
                "general_error",
                "table could not be found",
            ),
            other => Self::common(other, "query", "general_error"),
        }
    }

    fn common(e: StoreError, class: &'static str, message: &'static str) -> Self {
        match e {
            StoreError::NotInitialized => not_initialized(),
            StoreError::AlreadyInitialized => Self::config(e.to_string()),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                class,
                message,
                e.to_string(),
            ),
            StoreError::Invalid(d) => Self::new(StatusCode::BAD_REQUEST, class, message, d),
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    class,
                    message,
                    other.to_string(),
                )
            }
        }
    }
}

/// The 503 of a data endpoint on a node that is not initialised.
pub fn not_initialized() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "config",
        "route not found (node down?)",
        "node not initialized - call PUT /v1/cluster/init or join it to a cluster",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
