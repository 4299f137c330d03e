//! The LAN intake API (`POST /api/v1/events`): the approval system, evaluator pads and other local
//! systems post events here. The answer is 201 only once the events are durable in the outbox.
//! Offices that can only export files use `POST /api/v1/import` ([`super::import`]). The API is
//! described by `agent/openapi.json`, served at `GET /api/v1/openapi.json`.
//!
//! Input is parsed by hand from the raw body so that every refusal says exactly what was wrong.
//! Every event, posted or imported, becomes a draft through [`draft`]: masked, then validated.
//!
//! Posting needs a key ([`intake_keys`]): 401 without one, 403 for a kind the key was not issued
//! for (and always for `punch`, `health`, `cmd_result`, `snapshot` from the LAN); events must be
//! sent as `application/json` (415 otherwise). Status, the OpenAPI document and `/healthz` are open.

use super::intake_keys::{self, Grant, IntakeKeys};
use super::{import, mask};
use crate::capture::camera::Cameras;
use crate::clock::Clock;
use crate::error::Error;
use crate::health::Alarms;
use crate::outbox::Outbox;
use crate::sync::SharedLink;
use crate::sync::upload::SharedUpload;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use sunlight_protocol::{EventDraft, EventError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most events in one request.
pub const MAX_EVENTS: usize = 1000;
/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

#[derive(Clone)]
pub struct IntakeState {
    pub outbox: Outbox,
    pub clock: Clock,
    pub link: SharedLink,
    pub site: String,
    pub device: String,
    /// Cameras, spool and uploads, for status; `None` in tests of the intake alone.
    pub snapshots: Option<SnapshotStatus>,
    pub alarms: Alarms,
    /// The keys posting systems must show.
    pub keys: Arc<IntakeKeys>,
    /// Bounds past which an event's `at` marks it back-dated.
    pub backdating: crate::config::BackdatingConfig,
}

/// What status shows about snapshots.
#[derive(Clone)]
pub struct SnapshotStatus {
    pub cameras: Arc<Cameras>,
    pub upload: SharedUpload,
}

impl SnapshotStatus {
    /// `{spool, upload, cameras}`. Blocking: reads the spool index.
    pub fn json(&self) -> Value {
        let spool = self.cameras.spool().figures();
        let upload = self.upload.lock().map(|u| u.clone()).unwrap_or_default();
        json!({
            "spool": match spool { Ok(f) => json!(f), Err(e) => json!({"error": e.to_string()}) },
            "upload": upload,
            "cameras": self.cameras.status(),
            "calendar": self.cameras.calendar().map(|c| c.json()),
        })
    }
}

/// Every path the intake serves; `agent/openapi.json` documents each (checked by a test). The
/// posting routes are behind [`intake_keys::require_key`], which runs before the body is read.
fn routes(keys: &Arc<IntakeKeys>) -> [(&'static str, MethodRouter<IntakeState>); 6] {
    let guard = || axum::middleware::from_fn_with_state(keys.clone(), intake_keys::require_key);
    [
        ("/api/v1/events", post(post_events).layer(guard())),
        (
            "/api/v1/import",
            post(import::post_import)
                .layer(DefaultBodyLimit::max(import::MAX_FILE))
                .layer(guard()),
        ),
        ("/api/v1/status", get(status)),
        ("/api/v1/openapi.json", get(openapi_json)),
        ("/api/v1/openapi.yaml", get(openapi_yaml)),
        ("/healthz", get(|| async { "ok" })),
    ]
}

pub fn router(state: IntakeState) -> Router {
    routes(&state.keys)
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The same document: JSON is YAML 1.2, for tools that ask for YAML.
async fn openapi_yaml() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedEvent {
    kind: String,
    #[serde(default)]
    at: Option<String>,
    body: Value,
}

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// 503 when the outbox could not record (retry), 500 for anything else.
pub(super) fn store_failed(e: Error) -> Response {
    match e {
        Error::Store(_) | Error::Closed => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One event as intake takes it: phone numbers masked ([`mask::mask_body`]), then checked against
/// the kind's schema. Posted and imported events both become drafts here.
pub fn draft(kind: &str, at: &str, mut body: Value) -> Result<EventDraft, EventError> {
    mask::mask_body(kind, &mut body);
    EventDraft::new(kind, at, &body)
}

/// Turns the posted JSON (one event object, or an array of them) into drafts, or says what is wrong.
pub fn parse_events(body: &[u8], clock: &Clock) -> Result<Vec<EventDraft>, String> {
    parse_allowed(body, clock, |_| None).map_err(|(_, message)| message)
}

/// [`parse_events`] for a key: `forbids(kind)` says why a kind may not be posted (403), checked
/// before the event's body; anything else wrong is 422.
fn parse_allowed(
    body: &[u8],
    clock: &Clock,
    forbids: impl Fn(&str) -> Option<String>,
) -> Result<Vec<EventDraft>, (StatusCode, String)> {
    let invalid = |m: String| (StatusCode::UNPROCESSABLE_ENTITY, m);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
    let (items, many) =
        match value {
            Value::Array(items) => (items, true),
            single @ Value::Object(_) => (vec![single], false),
            _ => return Err(invalid(
                "the body must be an event object {\"kind\":..,\"body\":{..}} or an array of them"
                    .into(),
            )),
        };
    if items.is_empty() {
        return Err(invalid("the array holds no events".into()));
    }
    if items.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "{} events in one request; send at most {MAX_EVENTS}",
            items.len()
        )));
    }
    let now = clock.now_rfc3339();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at_index = |e: String| if many { format!("event #{i}: {e}") } else { e };
            let posted: PostedEvent =
                serde_json::from_value(item).map_err(|e| invalid(at_index(format!("{e}"))))?;
            if let Some(why) = forbids(&posted.kind) {
                return Err((StatusCode::FORBIDDEN, at_index(why)));
            }
            let at = posted.at.as_deref().unwrap_or(&now);
            draft(&posted.kind, at, posted.body).map_err(|e| invalid(at_index(e.to_string())))
        })
        .collect()
}

async fn post_events(
    State(state): State<IntakeState>,
    Extension(grant): Extension<Grant>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = intake_keys::require_json(&headers) {
        return refusal.into_response();
    }
    // All or nothing, as recording is: one event of a kind the key may not post refuses all.
    let mut drafts = match parse_allowed(&body, &state.clock, |kind| grant.forbids(kind)) {
        Ok(d) => d,
        Err((status, message)) => {
            if status == StatusCode::FORBIDDEN {
                tracing::warn!(key = %grant.name, "intake: a kind the key may not post was refused");
            }
            return refuse(status, message);
        }
    };
    // Recorded all the same, with both times (issue 14, item 6).
    let marked = state
        .backdating
        .mark(drafts.iter_mut(), &state.clock.now_rfc3339());
    if marked > 0 {
        tracing::warn!(key = %grant.name, marked, "intake: back-dated events recorded with their mark");
    }
    // Case events may call for snapshots (`on_case_stages`): taken after the events are recorded,
    // in the background, never waited for here.
    let case_shots = state
        .snapshots
        .as_ref()
        .map(|s| s.cameras.case_shots(&drafts))
        .unwrap_or_default();
    match state.outbox.append(drafts).await {
        Ok(appended) => {
            if let (Some(s), false) = (&state.snapshots, case_shots.is_empty()) {
                s.cameras.start_case_shots(case_shots, &appended);
            }
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
        Err(e) => store_failed(e),
    }
}

async fn status(State(state): State<IntakeState>) -> Response {
    let outbox = state.outbox.clone();
    let snapshots = state.snapshots.clone();
    let read = tokio::task::spawn_blocking(move || {
        outbox
            .backlog()
            .map(|b| (b, snapshots.map(|s| s.json()).unwrap_or(Value::Null)))
    });
    let (backlog, snapshots) = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let link = state.link.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(json!({
        "site": state.site,
        "device": state.device,
        "version": crate::update::version(),
        "link": link,
        "backlog": backlog,
        "clock_offset_ms": state.clock.offset_ms(),
        "now": state.clock.now_rfc3339(),
        "snapshots": snapshots,
        "alarms": state.alarms.recent(),
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
    fn phone_numbers_are_masked_before_validation() {
        let body = br#"{"kind":"complaint","body":{"complaint_no":"T1","channel":"12345","about":{"window":"W1"},"text":"x","contact":"13812341234"}}"#;
        let drafts = parse_events(body, &clock()).unwrap();
        assert!(
            drafts[0].body().contains("138****1234"),
            "{}",
            drafts[0].body()
        );
        assert!(!drafts[0].body().contains("13812341234"));
    }

    /// An intake on `dir` with one key for every LAN kind, kept in `KEY` for [`call`].
    fn state(dir: &tempfile::TempDir) -> IntakeState {
        let (keys, key) = intake_keys::test_key(dir.path(), false);
        KEY.with(|k| *k.borrow_mut() = key);
        let site = sunlight_protocol::SiteId::new("suixian-shangshi").unwrap();
        let device = sunlight_protocol::DeviceId::new("box-01").unwrap();
        IntakeState {
            outbox: Outbox::open(&dir.path().join("o.db"), &site, &device).unwrap(),
            clock: clock(),
            link: Default::default(),
            site: site.to_string(),
            device: device.to_string(),
            snapshots: None,
            alarms: crate::health::Alarms::new().0,
            keys,
            backdating: Default::default(),
        }
    }

    thread_local! {
        static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    /// A request with the test key, as JSON.
    async fn call(router: &Router, method: &str, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let key = KEY.with(|k| k.borrow().clone());
        let headers = [
            ("authorization", format!("Bearer {key}")),
            ("content-type", "application/json".to_owned()),
        ];
        call_with(router, method, path, &headers, body).await
    }

    async fn call_with(
        router: &Router,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Vec<u8>) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(axum::body::Body::from(body.to_vec())).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_openapi_document_describes_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("agent/openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (path, _) in routes(&Arc::new(IntakeKeys::open(dir.path()))) {
            assert!(
                paths.contains_key(path),
                "{path} is served but not in agent/openapi.json"
            );
        }
        // ... and the router answers every documented operation.
        let router = router(state(&dir));
        for (path, operations) in paths {
            for method in operations.as_object().unwrap().keys() {
                let (status, _) = call(&router, &method.to_uppercase(), path, b"").await;
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status}"
                );
            }
        }
        let (status, served) = call(&router, "GET", "/api/v1/openapi.json", b"").await;
        assert_eq!(
            (status, served.as_slice()),
            (StatusCode::OK, OPENAPI.as_bytes())
        );
    }

    /// A value of the documented type for a property (the first enum value, if any).
    fn sample(property: &Value) -> Value {
        if let Some(first) = property["enum"].get(0) {
            return first.clone();
        }
        let types = match &property["type"] {
            Value::Array(types) => types.clone(),
            one => vec![one.clone()],
        };
        match types.first().and_then(Value::as_str) {
            Some("integer") => json!(5),
            Some("number") => json!(1.5),
            Some("object") => json!({}),
            Some("array") => json!([]),
            _ => json!("x"),
        }
    }

    /// Every documented body property is the protocol's, with the documented type, enum values
    /// and required-ness: checked through the same validation the intake uses.
    #[test]
    fn the_documented_bodies_are_the_protocols() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        let at = "2025-11-03T09:00:00+08:00";
        for (kind, name) in [
            ("case", "CaseBody"),
            ("rating", "RatingBody"),
            ("complaint", "ComplaintBody"),
            ("punch", "PunchBody"),
            ("duty", "DutyBody"),
            ("patrol", "PatrolBody"),
        ] {
            let schema = &schemas[name];
            let properties = schema["properties"].as_object().unwrap();
            let full: serde_json::Map<String, Value> = properties
                .iter()
                .map(|(field, p)| (field.clone(), sample(p)))
                .collect();
            draft(kind, at, Value::Object(full.clone()))
                .unwrap_or_else(|e| panic!("{name} with every field: {e}"));
            let required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for (field, property) in properties {
                let mut without = full.clone();
                without.remove(field);
                let result = draft(kind, at, Value::Object(without));
                assert_eq!(
                    result.is_err(),
                    required.contains(&field.as_str()),
                    "{name}.{field}: required in the document, and only then in the protocol"
                );
                if property.get("type").is_some() {
                    let wrong = if property["type"].to_string().contains("object") {
                        json!("not an object")
                    } else {
                        json!({"not": "this type"})
                    };
                    let mut mistyped = full.clone();
                    mistyped.insert(field.clone(), wrong);
                    assert!(
                        draft(kind, at, Value::Object(mistyped)).is_err(),
                        "{name}.{field} is not a field of the protocol's {kind} body"
                    );
                }
                for value in property["enum"].as_array().into_iter().flatten() {
                    let mut each = full.clone();
                    each.insert(field.clone(), value.clone());
                    draft(kind, at, Value::Object(each))
                        .unwrap_or_else(|e| panic!("{name}.{field} = {value}: {e}"));
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_posted_phone_number_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let router = router(state.clone());
        let event = json!({"kind": "case", "body": {"case_no": "C1", "item_code": "MZ-001",
            "item_name": "老年优待证", "unit": "民政办", "window": "W1", "stage": "accepted",
            "staff_id": "0451", "kind": "promised", "limit_days": 5, "limit_unit": "working",
            "applicant_name": "张三", "applicant_phone": "13812341234"}});
        let (status, answer) = call(
            &router,
            "POST",
            "/api/v1/events",
            event.to_string().as_bytes(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let stored = state.outbox.read_from(1, 10, usize::MAX).unwrap();
        let row = String::from_utf8(stored[0].canonical.clone()).unwrap();
        assert!(row.contains("\"applicant_phone\":\"138****1234\""), "{row}");
        drop(state);
        drop(router);
        // Not in the row, and not anywhere in the database files (WAL included).
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            // A file removed since the listing (SQLite's -shm on close) holds nothing any more;
            // directories (the log directory) are not database files.
            let Ok(bytes) = std::fs::read(&path) else {
                assert!(!path.exists() || path.is_dir(), "{}", path.display());
                continue;
            };
            assert!(!bytes.windows(11).any(|w| w == b"13812341234"));
            assert!(!bytes.windows(8).any(|w| w == b"12341234"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_takes_ten_mebibytes_events_one() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(state(&dir));
        let big = vec![b' '; 2 * MAX_BODY];
        let (status, _) = call(&router, "POST", "/api/v1/events", &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, answer) = call(&router, "POST", "/api/v1/import?kind=case", &big).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // 2 MiB of spaces is one cell, over the bound of one cell.
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("more than 32 KiB"), "{answer}");
        let huge = vec![b' '; import::MAX_FILE + 1];
        let (status, _) = call(&router, "POST", "/api/v1/import?kind=case", &huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zip_bomb_is_too_large_and_names_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let router = router(state.clone());
        let mut bomb = crate::capture::table::tests::bomb();
        crate::capture::table::tests::lie_about_sizes(&mut bomb, 100);
        let (status, answer) = call(&router, "POST", "/api/v1/import?kind=case", &bomb).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("the import limit is 128 MiB"), "{answer}");
        assert_eq!(state.outbox.backlog().unwrap().head_seq, 0);
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
