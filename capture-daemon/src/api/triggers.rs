//! `GET /v1/triggers` (each rule's and alert's state) and `POST /v1/alerts`
//! (Alertmanager's webhook, see `triggers::alerts`).
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{json_response, text, Context};
use crate::pins::PinState;
use crate::triggers::alerts::AlertOutcome;
use crate::triggers::TriggerStatus;

/// A trigger with its last pin as the pin store has it now: a pin can fail after its
/// firing, while it copies.
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    status: TriggerStatus,
    /// copying, pinned, archived, failed, or gone (unpinned).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_pin_state: Option<&'static str>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_pin_error: Option<String>,
}

/// The answer of `GET /v1/triggers`.
#[derive(serde::Serialize)]
struct Answer {
    interval_seconds: f64,
    triggers: Vec<Listed>,
}

pub(super) async fn list(State(context): State<Arc<Context>>) -> Response {
    let sources = &context.sources;
    let triggers = sources
        .triggers
        .list()
        .into_iter()
        .map(|status| {
            let pin = status.last_pin.as_deref().map(|name| sources.pins.get(name));
            let last_pin_state = pin.as_ref().map(|p| p.as_ref().map_or("gone", |p| p.state.label()));
            let last_pin_error = pin.flatten().and_then(|p| match p.state {
                PinState::Failed(why) => Some(why),
                _ => None,
            });
            Listed { status, last_pin_state, last_pin_error }
        })
        .collect();
    let answer = Answer { interval_seconds: sources.triggers.interval.as_secs_f64(), triggers };
    json_response(serde_json::json!(answer))
}

/// The answer of `POST /v1/alerts`.
#[derive(serde::Serialize)]
struct Received {
    alerts: Vec<AlertOutcome>,
}

/// 200 with what became of each alert, or 400 (nothing pinned) for a payload that is not
/// a version 4 webhook or carries a bad alert.
pub(super) async fn receive_alerts(State(context): State<Arc<Context>>, body: Bytes) -> Response {
    let sources = Arc::clone(&context.sources);
    let received =
        tokio::task::spawn_blocking(move || sources.triggers.receive_alerts(&body, &sources.pins)).await;
    match received {
        Ok(Ok(alerts)) => json_response(serde_json::json!(Received { alerts })),
        Ok(Err(refused)) => text(StatusCode::BAD_REQUEST, &refused),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the alerts could not be handled"),
    }
}
