//! `GET /v1/triggers` (each rule's and alert's state) and `POST /v1/alerts`
//! (Alertmanager's webhook, see `triggers::alerts`).
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{json_response, text, Context};

pub(super) async fn list(State(context): State<Arc<Context>>) -> Response {
    let triggers = &context.sources.triggers;
    json_response(serde_json::json!({
        "interval_seconds": triggers.interval.as_secs_f64(),
        "triggers": triggers.list(),
    }))
}

/// 200 with what became of each alert, or 400 (nothing pinned) for a payload that is not
/// a version 4 webhook or carries a bad alert.
pub(super) async fn receive_alerts(State(context): State<Arc<Context>>, body: Bytes) -> Response {
    let sources = Arc::clone(&context.sources);
    let received =
        tokio::task::spawn_blocking(move || sources.triggers.receive_alerts(&body, &sources.pins)).await;
    match received {
        Ok(Ok(outcomes)) => json_response(serde_json::json!({ "alerts": outcomes })),
        Ok(Err(refused)) => text(StatusCode::BAD_REQUEST, &refused),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the alerts could not be handled"),
    }
}
