//! The HTTP surface: `/graphql`, GraphiQL at `/`, `/healthz`, `/readyz` and
//! `/metrics`.

pub mod graphiql;
mod graphql;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;

/// Largest request body accepted on `/graphql`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The router, ready to serve.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/", get(graphiql::page))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(graphql::panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus' text format (see [`crate::telemetry`]).
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let page = app.telemetry.render(&app);
    ([(header::CONTENT_TYPE, content_type)], page).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if crate::db::is_ready(&app.pool, &app.latest_migration).await {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database unreachable or management schema not migrated",
        )
            .into_response()
    }
}
