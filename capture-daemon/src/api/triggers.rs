//! `GET /v1/triggers` (each rule's and alert's state) and `POST /v1/alerts`
//! (Alertmanager's webhook, see `triggers::alerts`).
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{json_response, text, Context};

/// Each trigger with its last pin as the pin store has it now (`last_pin_state`: copying,
/// pinned, archived, failed with `last_pin_error`, or gone once unpinned): a pin can fail
/// after its firing, while it copies.
pub(super) async fn list(State(context): State<Arc<Context>>) -> Response {
    let sources = &context.sources;
    let triggers: Vec<serde_json::Value> = sources
        .triggers
        .list()
        .into_iter()
        .map(|status| {
            let pin = status.last_pin.as_deref().map(|name| sources.pins.get(name));
            let mut value = serde_json::json!(status);
            if let Some(pin) = pin {
                let listed = pin.map(|p| p.to_json());
                value["last_pin_state"] = listed.as_ref().map_or("gone".into(), |p| p["state"].clone());
                if let Some(error) = listed.as_ref().and_then(|p| p.get("error")) {
                    value["last_pin_error"] = error.clone();
                }
            }
            value
        })
        .collect();
    json_response(serde_json::json!({
        "interval_seconds": sources.triggers.interval.as_secs_f64(),
        "triggers": triggers,
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
