//! The LAN intake API (`POST /api/v1/events`): the approval system, evaluator pads and other local
//! systems post events here. The answer is 201 only once the events are durable in the outbox.
//!
//! Input is parsed by hand from the raw body so that every refusal says exactly what was wrong.

use crate::clock::Clock;
use crate::error::Error;
use crate::outbox::Outbox;
use crate::sync::SharedLink;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sunlight_protocol::EventDraft;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most events in one request.
pub const MAX_EVENTS: usize = 1000;

#[derive(Clone)]
pub struct IntakeState {
    pub outbox: Outbox,
    pub clock: Clock,
    pub link: SharedLink,
    pub site: String,
    pub device: String,
}

pub fn router(state: IntakeState) -> Router {
    Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedEvent {
    kind: String,
    #[serde(default)]
    at: Option<String>,
    body: Value,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Turns the posted JSON (one event object, or an array of them) into drafts, or says what is wrong.
pub fn parse_events(body: &[u8], clock: &Clock) -> Result<Vec<EventDraft>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let (items, many) =
        match value {
            Value::Array(items) => (items, true),
            single @ Value::Object(_) => (vec![single], false),
            _ => return Err(
                "the body must be an event object {\"kind\":..,\"body\":{..}} or an array of them"
                    .into(),
            ),
        };
    if items.is_empty() {
        return Err("the array holds no events".into());
    }
    if items.len() > MAX_EVENTS {
        return Err(format!(
            "{} events in one request; send at most {MAX_EVENTS}",
            items.len()
        ));
    }
    let now = clock.now_rfc3339();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at_index = |e: String| if many { format!("event #{i}: {e}") } else { e };
            let posted: PostedEvent =
                serde_json::from_value(item).map_err(|e| at_index(format!("{e}")))?;
            let at = posted.at.as_deref().unwrap_or(&now);
            EventDraft::new(&posted.kind, at, &posted.body).map_err(|e| at_index(e.to_string()))
        })
        .collect()
}

async fn post_events(State(state): State<IntakeState>, body: Bytes) -> Response {
    let drafts = match parse_events(&body, &state.clock) {
        Ok(d) => d,
        Err(message) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    match state.outbox.append(drafts).await {
        Ok(appended) => {
            let accepted: Vec<Value> = appended
                .iter()
                .map(|a| json!({"seq": a.seq, "hash": a.hash.to_hex()}))
                .collect();
            (
                StatusCode::CREATED,
                axum::Json(json!({ "recorded": true, "accepted": accepted })),
            )
                .into_response()
        }
        Err(e @ (Error::Store(_) | Error::Closed)) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status(State(state): State<IntakeState>) -> Response {
    let outbox = state.outbox.clone();
    let backlog = match tokio::task::spawn_blocking(move || outbox.backlog()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let link = state.link.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(json!({
        "site": state.site,
        "device": state.device,
        "version": crate::VERSION,
        "link": link,
        "backlog": backlog,
        "clock_offset_ms": state.clock.offset_ms(),
        "now": state.clock.now_rfc3339(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new(chrono_tz::Asia::Shanghai)
    }

    #[test]
    fn one_event_or_many() {
        let one = br#"{"kind":"punch","body":{"staff_id":"0451","direction":"in","method":"kiosk","source":"k"}}"#;
        let drafts = parse_events(one, &clock()).unwrap();
        assert_eq!(drafts.len(), 1);
        assert!(drafts[0].at().ends_with("+08:00"), "{}", drafts[0].at());
        let many = format!(
            "[{},{}]",
            std::str::from_utf8(one).unwrap(),
            std::str::from_utf8(one).unwrap()
        );
        assert_eq!(parse_events(many.as_bytes(), &clock()).unwrap().len(), 2);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let cases: [(&[u8], &str); 6] = [
            (b"{oops", "not valid JSON"),
            (b"\xff\xfe\x00", "not valid JSON"),
            (b"42", "must be an event object"),
            (b"[]", "no events"),
            (
                br#"[{"kind":"punch","body":{}}]"#,
                "event #0: punch event body is invalid",
            ),
            (
                br#"{"kind":"punch","body":{},"extra":1}"#,
                "unknown field `extra`",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_events(body, &clock()).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any body gets drafts or a reason, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_events(&bytes, &Clock::new(chrono_tz::Asia::Shanghai));
        }

        #[test]
        fn arbitrary_event_json_never_panics(kind in "\\PC{0,12}", at in "\\PC{0,40}", body in "\\PC{0,200}") {
            let text = format!("{{\"kind\":{},\"at\":{},\"body\":{body}}}", serde_json::json!(kind), serde_json::json!(at));
            let _ = parse_events(text.as_bytes(), &Clock::new(chrono_tz::Asia::Shanghai));
        }
    }
}
