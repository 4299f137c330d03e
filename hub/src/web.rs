//! The hub's HTTP API: devices, events, dead letters, alarms, health and metrics.

use crate::metrics::Metrics;
use crate::store::{CaseFilter, EventFilter, Reader};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ApiState {
    pub reader: Arc<Mutex<Reader>>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/events", get(events))
        .route("/api/v1/dead-letters", get(dead_letters))
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/cases", get(cases))
        .with_state(state)
}

fn fail(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// Runs a read on the blocking pool with the shared reader connection.
async fn read<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Reader) -> Result<T, crate::Error> + Send + 'static,
) -> Result<T, Response> {
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || {
        reader
            .lock()
            .map_err(|_| crate::Error::Closed)
            .and_then(|r| f(&r))
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fail(e)),
        Err(e) => Err(fail(e)),
    }
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match read(&state, |r| r.integrity_check().map(|_| ())).await {
        Ok(()) => "ok".into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn devices(State(state): State<ApiState>) -> Response {
    match read(&state, |r| r.devices()).await {
        Ok(d) => axum::Json(json!({ "devices": d })).into_response(),
        Err(r) => r,
    }
}

async fn events(State(state): State<ApiState>, Query(filter): Query<EventFilter>) -> Response {
    match read(&state, move |r| r.events(&filter)).await {
        Ok(events) => {
            let next = events.last().map(|e| e.id);
            axum::Json(json!({ "events": events, "next": next })).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Page {
    since: Option<i64>,
    limit: Option<u32>,
}

async fn dead_letters(State(state): State<ApiState>, Query(p): Query<Page>) -> Response {
    match read(&state, move |r| {
        r.dead_letters(p.since.unwrap_or(0), p.limit.unwrap_or(100))
    })
    .await
    {
        Ok(d) => axum::Json(json!({ "dead_letters": d })).into_response(),
        Err(r) => r,
    }
}

async fn alarms(State(state): State<ApiState>, Query(p): Query<Page>) -> Response {
    match read(&state, move |r| {
        r.alarms(p.since.unwrap_or(0), p.limit.unwrap_or(100))
    })
    .await
    {
        Ok(a) => axum::Json(json!({ "alarms": a })).into_response(),
        Err(r) => r,
    }
}

/// Cases with their light or card, due day, process anomalies and warning history.
async fn cases(State(state): State<ApiState>, Query(filter): Query<CaseFilter>) -> Response {
    match read(&state, move |r| r.cases(&filter)).await {
        Ok(c) => axum::Json(json!({ "cases": c })).into_response(),
        Err(r) => r,
    }
}
