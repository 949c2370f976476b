//! The route table (rest spec section 0) and the handlers, one module per area.

mod auth;
mod cluster;
mod histogram;
mod insert;
mod ops;
mod queries;
mod subscriptions;
mod tables;

pub(crate) use queries::now_ms;

use crate::State;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// Every public path, old aliases included.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/ping", get(cluster::ping))
        .route("/status", get(cluster::status))
        .route("/v1/status", get(cluster::status))
        .route("/v1/version", get(cluster::version))
        .route("/v1/cluster/init", put(cluster::init))
        .route("/v1/cluster/is_member", get(cluster::is_member))
        .route("/v1/internode/is_member", get(cluster::is_member))
        .route("/v1/tables", get(tables::list))
        .route(
            "/v1/table/{table}",
            post(tables::create)
                .get(tables::describe)
                .delete(tables::drop),
        )
        .route("/v1/table/{table}/settings", put(tables::settings))
        .route(
            "/v1/table/{table}/property/{name}",
            put(tables::add_property).delete(tables::drop_property),
        )
        .route(
            "/v1/table/{table}/column/{spec}",
            put(tables::add_column).delete(tables::drop_column),
        )
        .route(
            "/v1/table/{table}/revent/{name}",
            get(tables::revent_describe)
                .post(tables::revent_create)
                .delete(tables::revent_drop),
        )
        .route("/v1/insert/{table}", post(insert::insert))
        .route("/v1/query/{table}/customer", get(queries::customer))
        .route("/v1/query/{table}/person", get(queries::customer))
        .route("/v1/query/{table}/event", post(queries::event))
        .route("/v1/query/{table}/events", post(queries::event))
        .route("/v1/query/{table}/segment", post(queries::segment))
        .route("/v1/query/{table}/counts", post(queries::segment))
        .route("/v1/query/{table}/property/{name}", get(queries::property))
        .route("/v1/query/{table}/column/{name}", get(queries::property))
        .route(
            "/v1/query/{table}/histogram/{name}",
            post(histogram::histogram),
        )
        .route("/v1/query/{table}/batch", post(queries::batch))
        .route(
            "/v1/subscription/{table}/{segment}/{subscriber}",
            put(subscriptions::subscribe)
                .post(subscriptions::subscribe)
                .delete(subscriptions::unsubscribe),
        )
        .route(
            "/v1/trigger/{table}/{segment}/{subscriber}",
            put(subscriptions::subscribe)
                .post(subscriptions::subscribe)
                .delete(subscriptions::unsubscribe),
        )
        .route("/v1/auth/user/register", post(auth::register))
        .route("/v1/auth/user/{name}/password", put(auth::password))
        .route("/v1/auth/user/{name}", delete(auth::delete))
        .route("/v1/auth/users", get(auth::list))
        .route("/v1/auth/token/user", get(auth::token))
        .route("/metrics", get(ops::prometheus))
        .route("/metrics.json", get(ops::metrics_json))
        .route("/version", get(ops::version))
        .route("/info", get(ops::info))
        .route("/queries", get(ops::queries))
        .route("/queries/{id}", delete(ops::cancel))
        .route("/query-history", get(ops::history))
        .route(
            "/v1/trigger/{table}/{subscriber}",
            delete(subscriptions::unsubscribe_all),
        )
        .route("/v1/subscription/{table}", get(subscriptions::list))
        .route("/v1/trigger/{table}", get(subscriptions::list))
        .with_state(state)
}

/// Runs a blocking closure off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::error::ApiError> + Send + 'static,
) -> Result<T, crate::error::ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "request task failed");
        Err(crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "config",
            "general_error",
            "internal error",
        ))
    })
}
