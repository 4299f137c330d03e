//! The hub's HTTP API: devices, events, dead letters, alarms, health and metrics; cases with their
//! timelines, rates, supervision letters, work orders, complaints, notifications and the item
//! catalog. Reads use the reader connection; the few writes (work-order and complaint steps) use
//! their own write connection, one short transaction each, recorded in the audit log.
//!
//! Every `/api/v1/` route but those boxes call needs an account (API token or dashboard session):
//! see [`crate::apiauth`].

use crate::apiauth::Caller;
use crate::metrics::Metrics;
use crate::store::{self, CaseFilter, EventFilter, Reader, Writer};
use crate::supervise::Supervision;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ApiState {
    pub reader: Arc<Mutex<Reader>>,
    pub writer: Arc<Mutex<Writer>>,
    pub metrics: Arc<Metrics>,
    pub sup: Supervision,
    pub blobs: Arc<dyn crate::blobs::BlobStore>,
    /// Permits for image uploads read at once (`[blobs] max_concurrent_puts`).
    pub blob_puts: Arc<tokio::sync::Semaphore>,
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
        .route("/api/v1/cases/{site}/{case_no}", get(case_detail))
        .route("/api/v1/rates", get(rates))
        .route("/api/v1/letters", get(letters))
        .route("/api/v1/letters/{id}", get(letter_document))
        .route("/api/v1/work-orders", get(work_orders))
        .route(
            "/api/v1/work-orders/{id}",
            get(work_order).post(work_order_action),
        )
        .route("/api/v1/complaints", get(complaints))
        .route(
            "/api/v1/complaints/{site}/{no}",
            get(complaint).post(complaint_advance),
        )
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/items", get(items))
        .route("/api/v1/roster", get(roster))
        .route("/api/v1/roster/push", axum::routing::post(roster_push))
        .route(
            "/api/v1/commands",
            get(commands).post(crate::fieldops::send_command),
        )
        .route("/api/v1/attendance/board", get(attendance_board))
        .route(
            "/api/v1/attendance/staff/{site}/{staff_id}",
            get(attendance_staff),
        )
        .route("/api/v1/attendance/units", get(attendance_units))
        .route("/api/v1/reports/monthly", get(report_monthly))
        .route("/api/v1/reports/weekly", get(report_weekly))
        .route("/api/v1/attendance/patrols", get(attendance_patrols))
        .route("/api/v1/attendance/leave", get(attendance_leave))
        .route(
            "/api/v1/attendance/makeups",
            get(makeups).post(makeup_request),
        )
        .route(
            "/api/v1/attendance/makeups/{id}",
            axum::routing::post(makeup_decision),
        )
        .route(
            "/api/v1/attendance/violations",
            axum::routing::post(violation),
        )
        .merge(crate::blobs::router())
        .merge(crate::enroll::router())
        .merge(crate::sites::router())
        .merge(crate::updates::router())
        .merge(crate::fieldops::router())
        .merge(crate::dashboard::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::apiauth::guard,
        ))
        .with_state(state)
}

/// Who the audit log names for a change: the signed-in account, and the person the request says
/// it acts for when that is someone else (`"jiancha (for 王科长)"`).
pub(crate) fn audit_who(caller: &Option<Extension<Caller>>, claimed: &str) -> String {
    let claimed = claimed.trim();
    match caller {
        Some(Extension(Caller(user))) if claimed.is_empty() || claimed == user.name => {
            user.name.clone()
        }
        Some(Extension(Caller(user))) => format!("{} (for {claimed})", user.name),
        None => claimed.to_owned(),
    }
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

fn fail(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// A read answered as `{"<key>": <value>}`, the shape of the list endpoints.
async fn read_json<T: serde::Serialize + Send + 'static>(
    state: &ApiState,
    key: &'static str,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Response {
    match read(state, move |r| r.run(f)).await {
        Ok(v) => axum::Json(json!({ key: v })).into_response(),
        Err(r) => r,
    }
}

/// Runs a read on the blocking pool with the shared reader connection.
pub(crate) async fn read<T: Send + 'static>(
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

/// Cheap: one query that proves the store answers. The full integrity check is scheduled
/// (`metrics::spawn_integrity_check`) and reported on `/metrics`, never run per request.
async fn healthz(State(state): State<ApiState>) -> Response {
    match read(&state, |r| {
        r.run(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    })
    .await
    {
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

/// Reads the JSON body of a POST, or says what is wrong with it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

async fn case_detail(
    State(state): State<ApiState>,
    Path((site, case_no)): Path<(String, String)>,
) -> Response {
    let (s, c) = (site.clone(), case_no.clone());
    match read(&state, move |r| {
        r.run(|conn| store::cases::detail(conn, &s, &c))
    })
    .await
    {
        Ok(Some(d)) => axum::Json(d).into_response(),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            format!("no case {case_no} at {site}"),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesQuery {
    /// unit (default) or window
    by: Option<String>,
    site: Option<String>,
    /// YYYY-MM-DD; default: the first day of the current month
    from: Option<NaiveDate>,
    /// YYYY-MM-DD; default: today
    to: Option<NaiveDate>,
}

/// On-time and early rates, warnings, satisfaction and work-order rates per unit or window.
async fn rates(State(state): State<ApiState>, Query(q): Query<RatesQuery>) -> Response {
    let by = match q.by.as_deref() {
        None | Some("unit") => store::rates::GroupBy::Unit,
        Some("window") => store::rates::GroupBy::Window,
        Some(other) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("by={other:?}: use unit or window"),
            );
        }
    };
    let today = state.sup.clock.today();
    let to = q.to.unwrap_or(today);
    let from = q.from.unwrap_or_else(|| to.with_day(1).unwrap_or(to));
    if from > to {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "from is after to");
    }
    match read(&state, move |r| {
        r.run(|conn| store::rates::figures(conn, by, q.site.as_deref(), from, to))
    })
    .await
    {
        Ok(f) => axum::Json(json!({ "from": from, "to": to, "rates": f })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    site: Option<String>,
    status: Option<String>,
    stage: Option<String>,
    case_no: Option<String>,
    /// Notifications whose key starts with this (e.g. case:<site>:<no>:).
    about: Option<String>,
    limit: Option<u32>,
}

async fn letters(State(state): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    read_json(&state, "letters", move |conn| {
        store::letters::list(
            conn,
            q.site.as_deref(),
            q.case_no.as_deref(),
            q.limit.unwrap_or(100),
        )
    })
    .await
}

/// The printable letter (HTML, zh-CN).
async fn letter_document(State(state): State<ApiState>, Path(id): Path<i64>) -> Response {
    match read(&state, move |r| {
        r.run(|conn| store::letters::document(conn, id))
    })
    .await
    {
        Ok(Some(html)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, format!("no letter {id}")),
        Err(r) => r,
    }
}

async fn work_orders(State(state): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    read_json(&state, "work_orders", move |conn| {
        store::ratings::list(
            conn,
            q.site.as_deref(),
            q.status.as_deref(),
            q.case_no.as_deref(),
            q.limit.unwrap_or(100),
        )
    })
    .await
}

async fn work_order(State(state): State<ApiState>, Path(id): Path<i64>) -> Response {
    match read(&state, move |r| r.run(|conn| store::ratings::get(conn, id))).await {
        Ok(Some(w)) => axum::Json(w).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, format!("no work order {id}")),
        Err(r) => r,
    }
}

/// Runs a write on the blocking pool with the API's write connection, in one transaction.
pub(crate) async fn write<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, Response> {
    let writer = state.writer.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut w = writer
            .lock()
            .map_err(|_| "the write connection is poisoned".to_owned())?;
        let tx = w.transaction().map_err(|e| e.to_string())?;
        match f(&tx) {
            Ok(v) => tx.commit().map(|()| Ok(v)).map_err(|e| e.to_string()),
            Err(e) => Ok(Err(e)),
        }
    })
    .await;
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(fail(e)),
        Err(e) => Err(fail(e)),
    }
}

/// `{"action": "callback" | "classify" | "fix" | "feedback", "by": "...", ...}`
async fn work_order_action(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let action: store::ratings::WorkOrderAction = match parse_body(&body) {
        Ok(a) => a,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let today = state.sup.clock.today();
    let result = write(&state, move |tx| {
        let view = store::ratings::act(tx, id, &action, today)?;
        let (who, detail) = match &action {
            store::ratings::WorkOrderAction::Callback { by, note }
            | store::ratings::WorkOrderAction::Fix { by, note }
            | store::ratings::WorkOrderAction::Feedback { by, note } => (by.clone(), note.clone()),
            store::ratings::WorkOrderAction::Classify {
                by, classification, ..
            } => (by.clone(), classification.zh().to_owned()),
        };
        store::audit(
            tx,
            &audit_who(&caller, &who),
            &format!("work_order.{}", view.status),
            &format!("work_order:{id}"),
            &detail,
        )?;
        Ok::<_, store::ratings::ActError>(view)
    })
    .await;
    match result {
        Ok(Ok(view)) => axum::Json(view).into_response(),
        Ok(Err(store::ratings::ActError::NotFound(_))) => {
            refuse(StatusCode::NOT_FOUND, format!("no work order {id}"))
        }
        Ok(Err(store::ratings::ActError::Conflict(m))) => refuse(StatusCode::CONFLICT, m),
        Ok(Err(e)) => fail(e),
        Err(r) => r,
    }
}

async fn complaints(State(state): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    let today = state.sup.clock.today();
    match read(&state, move |r| {
        r.run(|conn| {
            store::complaints::list(
                conn,
                q.site.as_deref(),
                q.stage.as_deref(),
                today,
                q.limit.unwrap_or(100),
            )
        })
    })
    .await
    {
        Ok(c) => axum::Json(json!({ "complaints": c })).into_response(),
        Err(r) => r,
    }
}

async fn complaint(
    State(state): State<ApiState>,
    Path((site, no)): Path<(String, String)>,
) -> Response {
    let today = state.sup.clock.today();
    let (s, n) = (site.clone(), no.clone());
    match read(&state, move |r| {
        r.run(|conn| store::complaints::get(conn, &s, &n, today))
    })
    .await
    {
        Ok(Some(c)) => axum::Json(c).into_response(),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            format!("no complaint {no} at {site}"),
        ),
        Err(r) => r,
    }
}

/// `{"to": "investigating" | "handling" | "feedback" | "archived", "by": "...", "note": "...", "upheld": bool}`
async fn complaint_advance(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    Path((site, no)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let advance: store::complaints::Advance = match parse_body(&body) {
        Ok(a) => a,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let today = state.sup.clock.today();
    let (s, n) = (site.clone(), no.clone());
    let result = write(&state, move |tx| {
        let view = store::complaints::advance(tx, &s, &n, &advance, today)?;
        store::audit(
            tx,
            &audit_who(&caller, &advance.by),
            &format!("complaint.{}", advance.to.as_str()),
            &format!("complaint:{s}:{n}"),
            &advance.note,
        )?;
        Ok::<_, store::complaints::AdvanceError>(view)
    })
    .await;
    match result {
        Ok(Ok(view)) => axum::Json(view).into_response(),
        Ok(Err(store::complaints::AdvanceError::NotFound(..))) => refuse(
            StatusCode::NOT_FOUND,
            format!("no complaint {no} at {site}"),
        ),
        Ok(Err(store::complaints::AdvanceError::Conflict(m))) => refuse(StatusCode::CONFLICT, m),
        Ok(Err(e)) => fail(e),
        Err(r) => r,
    }
}

async fn notifications(State(state): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    match read(&state, move |r| {
        r.run(|conn| {
            store::notices::list(
                conn,
                q.status.as_deref(),
                q.about.as_deref(),
                q.limit.unwrap_or(100),
            )
        })
    })
    .await
    {
        Ok(n) => axum::Json(json!({ "notifications": n })).into_response(),
        Err(r) => r,
    }
}

async fn items(State(state): State<ApiState>) -> Response {
    match read(&state, |r| r.run(store::items::list)).await {
        Ok(i) => axum::Json(json!({ "items": i })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttendanceQuery {
    site: Option<String>,
    /// YYYY-MM-DD (board; default today)
    day: Option<NaiveDate>,
    /// YYYY-MM (month views; default this month)
    month: Option<String>,
    status: Option<String>,
}

impl AttendanceQuery {
    fn month(&self, today: NaiveDate) -> String {
        self.month
            .clone()
            .unwrap_or_else(|| format!("{:04}-{:02}", today.year(), today.month()))
    }

    fn site(&self) -> Result<String, Box<Response>> {
        self.site.clone().ok_or_else(|| {
            Box::new(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "site=… is required (a site id such as suixian-shangshi)",
            ))
        })
    }
}

fn bad_month(month: &str) -> Response {
    refuse(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("month {month:?} is not YYYY-MM"),
    )
}

async fn roster(State(state): State<ApiState>, Query(q): Query<AttendanceQuery>) -> Response {
    match read(&state, move |r| {
        r.run(|c| store::attendance::roster(c, q.site.as_deref(), false))
    })
    .await
    {
        Ok(s) => axum::Json(json!({ "staff": s })).into_response(),
        Err(r) => r,
    }
}

/// Per window: who is on duty in each segment, vacant segments, each clerk's verdicts and punches
/// (with the box's clock offset).
async fn attendance_board(
    State(state): State<ApiState>,
    Query(q): Query<AttendanceQuery>,
) -> Response {
    let site = match q.site() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let day = q.day.unwrap_or_else(|| state.sup.clock.today());
    let sup = state.sup.clone();
    match read(&state, move |r| {
        r.run(|c| {
            store::attendance::board_at(
                c,
                &sup.office(),
                &sup.calendar(),
                &site,
                day,
                sup.clock.until(),
            )
        })
    })
    .await
    {
        Ok(w) => {
            // Whether the day is working or off rests on a provisional year (decision 0014).
            let provisional = state.sup.calendar().provisional_in(day, day);
            let mut v = json!({ "day": day, "windows": w, "provisional": provisional.is_some() });
            if let Some(year) = provisional {
                v["provisional_year"] = year.into();
            }
            axum::Json(v).into_response()
        }
        Err(r) => r,
    }
}

async fn attendance_staff(
    State(state): State<ApiState>,
    Path((site, staff_id)): Path<(String, String)>,
    Query(q): Query<AttendanceQuery>,
) -> Response {
    let today = state.sup.clock.today();
    let month = q.month(today);
    let sup = state.sup.clone();
    let m = month.clone();
    match read(&state, move |r| {
        r.run(|c| {
            store::attendance::staff_month(
                c,
                &sup.office(),
                &sup.calendar(),
                &site,
                &staff_id,
                &m,
                (today, sup.clock.until()),
            )
        })
    })
    .await
    {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => bad_month(&month),
        Err(r) => r,
    }
}

async fn attendance_units(
    State(state): State<ApiState>,
    Query(q): Query<AttendanceQuery>,
) -> Response {
    let site = match q.site() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let today = state.sup.clock.today();
    let month = q.month(today);
    let sup = state.sup.clone();
    let m = month.clone();
    match read(&state, move |r| {
        r.run(|c| {
            store::attendance::units_month(
                c,
                &sup.office(),
                &sup.calendar(),
                &site,
                &m,
                today,
                sup.clock.until(),
            )
        })
    })
    .await
    {
        Ok(Some(u)) => {
            let provisional = store::attendance::month_range(&month)
                .and_then(|(a, b)| state.sup.calendar().provisional_in(a, b));
            let mut v = json!({ "month": month, "units": u, "provisional": provisional.is_some() });
            if let Some(year) = provisional {
                v["provisional_year"] = year.into();
            }
            axum::Json(v).into_response()
        }
        Ok(None) => bad_month(&month),
        Err(r) => r,
    }
}

async fn attendance_patrols(
    State(state): State<ApiState>,
    Query(q): Query<AttendanceQuery>,
) -> Response {
    let site = match q.site() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let month = q.month(state.sup.clock.today());
    let m = month.clone();
    match read(&state, move |r| {
        r.run(|c| store::attendance::patrols_month(c, &site, &m))
    })
    .await
    {
        Ok(Some(p)) => axum::Json(p).into_response(),
        Ok(None) => bad_month(&month),
        Err(r) => r,
    }
}

async fn makeups(State(state): State<ApiState>, Query(q): Query<AttendanceQuery>) -> Response {
    match read(&state, move |r| {
        r.run(|c| store::attendance::makeups(c, q.site.as_deref(), q.status.as_deref()))
    })
    .await
    {
        Ok(m) => axum::Json(json!({ "makeups": m })).into_response(),
        Err(r) => r,
    }
}

fn request_result<T: serde::Serialize>(
    result: Result<Result<T, store::attendance::RequestError>, Response>,
    created: bool,
) -> Response {
    use store::attendance::RequestError;
    match result {
        Ok(Ok(v)) => (
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            axum::Json(v),
        )
            .into_response(),
        Ok(Err(RequestError::Refused(m))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
        Ok(Err(RequestError::NotFound(m))) => refuse(StatusCode::NOT_FOUND, m),
        Ok(Err(e)) => fail(e),
        Err(r) => r,
    }
}

/// `{"site", "staff_id", "day": "YYYY-MM-DD", "time": "HH:MM", "reason", "by"}`
async fn makeup_request(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let req: store::attendance::MakeupRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let sup = state.sup.clone();
    let today = sup.clock.today();
    let result = write(&state, move |tx| {
        let v = store::attendance::request_makeup(tx, &sup.config(), &sup.calendar(), &req, today)?;
        store::audit(
            tx,
            &audit_who(&caller, &req.by),
            "makeup.request",
            &format!("makeup:{}", v.id),
            &req.reason,
        )?;
        Ok::<_, store::attendance::RequestError>(v)
    })
    .await;
    request_result(result, true)
}

/// `{"approve": true|false, "by", "note"}`
async fn makeup_decision(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let d: store::attendance::MakeupDecision = match parse_body(&body) {
        Ok(d) => d,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let today = state.sup.clock.today();
    let result = write(&state, move |tx| {
        let v = store::attendance::decide_makeup(tx, id, &d, today)?;
        store::audit(
            tx,
            &audit_who(&caller, &d.by),
            &format!("makeup.{}", v.status),
            &format!("makeup:{id}"),
            &d.note,
        )?;
        Ok::<_, store::attendance::RequestError>(v)
    })
    .await;
    request_result(result, false)
}

/// `{"site", "staff_id", "day", "what", "by", "months"?}`: marks the unit's other clerks (捆绑考核).
async fn violation(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let v: store::attendance::ViolationInput = match parse_body(&body) {
        Ok(v) => v,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let config = state.sup.config().clone();
    let result = write(&state, move |tx| {
        let out = store::attendance::record_violation(tx, &config, &v)?;
        store::audit(
            tx,
            &audit_who(&caller, &v.by),
            "violation",
            &format!("staff:{}:{}", v.site, v.staff_id),
            &v.what,
        )?;
        Ok::<_, store::attendance::RequestError>(out)
    })
    .await;
    request_result(result, true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    site: String,
    by: String,
    /// How long the boxes have to pick it up (default 7 days: a box may be offline for days).
    #[serde(default)]
    ttl_hours: Option<u32>,
}

/// `{"site", "by"}`: sends the site's roster (with PIN hashes and card numbers) to its boxes as a
/// `set_roster` command; each box caches it for offline punching and answers once.
async fn roster_push(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let p: PushBody = match parse_body(&body) {
        Ok(p) => p,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let ttl_ms = i64::from(p.ttl_hours.unwrap_or(24 * 7).clamp(1, 24 * 90)) * 3_600_000;
    let result = write(&state, move |tx| {
        let staff = store::attendance::roster(tx, Some(&p.site), true)?;
        if staff.is_empty() {
            return Ok(Err(format!(
                "no roster for {}: import one with sunlight-hub roster import",
                p.site
            )));
        }
        let args = json!({ "site": p.site, "staff": staff });
        let ids =
            store::commands::create_for_site(tx, &p.site, "set_roster", &args, ttl_ms, &p.by)?;
        if ids.is_empty() {
            return Ok(Err(format!("no box is registered for {}", p.site)));
        }
        store::audit(
            tx,
            &audit_who(&caller, &p.by),
            "roster.push",
            &p.site,
            &format!("{} staff", staff.len()),
        )?;
        Ok::<_, rusqlite::Error>(Ok(ids))
    })
    .await;
    match result {
        Ok(Ok(Ok(ids))) => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "commands": ids }))).into_response()
        }
        Ok(Ok(Err(m))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
        Ok(Err(e)) => fail(e),
        Err(r) => r,
    }
}

async fn commands(State(state): State<ApiState>, Query(q): Query<AttendanceQuery>) -> Response {
    match read(&state, move |r| {
        r.run(|c| store::commands::list(c, q.site.as_deref(), store::now_ms()))
    })
    .await
    {
        Ok(c) => axum::Json(json!({ "commands": c })).into_response(),
        Err(r) => r,
    }
}

/// Leave and out-of-office registrations in a month, flagged where a stamped note is missing.
async fn attendance_leave(
    State(state): State<ApiState>,
    Query(q): Query<AttendanceQuery>,
) -> Response {
    let site = match q.site() {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let month = q.month(state.sup.clock.today());
    let (m, cal) = (month.clone(), state.sup.calendar().clone());
    match read(&state, move |r| {
        r.run(|c| store::attendance::leave_month(c, &cal, &site, &m))
    })
    .await
    {
        Ok(Some(l)) => axum::Json(json!({ "month": month, "leave": l })).into_response(),
        Ok(None) => bad_month(&month),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    month: Option<String>,
    week: Option<String>,
    site: Option<String>,
    unit: Option<String>,
}

/// `GET /api/v1/reports/monthly?month=YYYY-MM&site=&unit=`: the monthly window work report
/// (OVERSIGHT.md §5) as JSON; the last full month by default, the whole county without `site`.
async fn report_monthly(State(state): State<ApiState>, Query(q): Query<ReportQuery>) -> Response {
    if q.week.is_some() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "week is for /api/v1/reports/weekly",
        );
    }
    let today = state.sup.clock.today();
    let period = match q.month.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        None => Ok(crate::report::Period::last_month(today)),
        Some(m) => crate::report::Period::month(m),
    };
    report_json(state, period, q).await
}

/// `GET /api/v1/reports/weekly?week=YYYY-Www&site=&unit=`: the weekly summary (the same figures
/// for an ISO week); the last full week by default.
async fn report_weekly(State(state): State<ApiState>, Query(q): Query<ReportQuery>) -> Response {
    if q.month.is_some() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "month is for /api/v1/reports/monthly",
        );
    }
    let today = state.sup.clock.today();
    let period = match q.week.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        None => Ok(crate::report::Period::last_week(today)),
        Some(w) => crate::report::Period::week(w),
    };
    report_json(state, period, q).await
}

async fn report_json(
    state: ApiState,
    period: Result<crate::report::Period, String>,
    q: ReportQuery,
) -> Response {
    let period = match period {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let scope = crate::report::ReportScope {
        site: nonempty(q.site),
        unit: nonempty(q.unit),
    };
    let sup = state.sup.clone();
    let today = sup.clock.report_day();
    match read(&state, move |r| {
        r.run(|c| crate::report::compute_live(c, &sup, &scope, &period, today))
    })
    .await
    {
        Ok(report) => axum::Json(report).into_response(),
        Err(r) => r,
    }
}
