//! The kiosk (考勤打卡) for offices without an attendance terminal: a page on the intake listener
//! (`GET /kiosk`) that a cheap tablet shows full-screen, and `POST /kiosk/punch` behind it.
//!
//! A clerk types staff number (工号) + PIN (密码), or swipes a card on a USB reader that types its
//! number, and presses 上班 or 下班. The box checks the PIN against the argon2 hash in its cached
//! [`roster`](crate::roster) — offline, no hub needed — and answers 201 "已记录" only once the punch
//! is durable in the outbox. A wrong PIN records nothing; too many lock the staff number for a
//! while. A staff number or card not on the roster (or no roster yet) is never refused: the punch
//! is kept with a flag for the supervisor. Parsing and deciding are pure ([`parse_request`],
//! [`resolve`], [`WrongPins`]); the handler only adds the clock, the roster and the outbox.
//!
//! With `snapshots.punch_camera` set, each punch request starts a photo at once, while the PIN is
//! checked ([`punch_photo`]); the punch never waits for it.

use crate::capture::camera::{Cameras, PendingPhoto};
use crate::clock::Clock;
use crate::config::KioskConfig;
use crate::outbox::Outbox;
use crate::roster::{MAX_ID, PinCheck, RosterCache, RosterIndex, Staff, verify_pin};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The page: one self-contained zh-CN HTML file, plain ES5, no external assets.
pub const PAGE: &str = include_str!("kiosk.html");
/// Largest punch request accepted.
pub const MAX_BODY: usize = 4096;
/// Longest PIN looked at.
pub const MAX_PIN: usize = 64;
/// PIN checks running at once, at most: argon2 is slow and memory-hungry on purpose.
const VERIFY_AT_ONCE: usize = 2;

#[derive(Clone)]
pub struct KioskState {
    pub outbox: Outbox,
    pub clock: Clock,
    pub roster: Arc<RosterCache>,
    pub wrong_pins: Arc<Mutex<WrongPins>>,
    pub verifying: Arc<Semaphore>,
    /// The cameras and the id of the one that takes the punch photo.
    pub photo: Option<(Arc<Cameras>, String)>,
}

impl KioskState {
    pub fn new(
        outbox: Outbox,
        clock: Clock,
        roster: Arc<RosterCache>,
        config: &KioskConfig,
    ) -> KioskState {
        KioskState {
            outbox,
            clock,
            roster,
            wrong_pins: Arc::new(Mutex::new(WrongPins::new(
                config.max_wrong_pins,
                Duration::from_secs(config.lockout_secs),
            ))),
            verifying: Arc::new(Semaphore::new(VERIFY_AT_ONCE)),
            photo: None,
        }
    }

    /// Punches get a photo from camera `camera_id`.
    pub fn with_photo(mut self, cameras: Arc<Cameras>, camera_id: &str) -> KioskState {
        self.photo = Some((cameras, camera_id.to_owned()));
        self
    }
}

pub fn router(state: KioskState) -> Router {
    Router::new()
        .route("/kiosk", get(page))
        .route("/kiosk/punch", axum::routing::post(punch))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// 上班 / 下班.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A punch as the page posts it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchRequest {
    pub staff_id: Option<String>,
    pub pin: Option<String>,
    pub card_no: Option<String>,
    pub direction: Direction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    #[serde(default)]
    staff_id: Option<String>,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    card_no: Option<String>,
    direction: String,
}

fn id_field(value: Option<String>, what: &str) -> Result<Option<String>, String> {
    let Some(v) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.len() > MAX_ID || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{what}只能是 1 到 {MAX_ID} 位数字或字母"));
    }
    Ok(Some(v))
}

/// Reads `{staff_id?, pin?, card_no?, direction}`; the reason for a refusal is shown to the clerk.
pub fn parse_request(body: &[u8]) -> Result<PunchRequest, String> {
    let posted: Posted =
        serde_json::from_slice(body).map_err(|e| format!("请求无效（invalid request: {e}）"))?;
    let direction = match posted.direction.as_str() {
        "in" => Direction::In,
        "out" => Direction::Out,
        _ => return Err("请选择上班或下班（direction: in or out）".into()),
    };
    let staff_id = id_field(posted.staff_id, "工号")?;
    let card_no = id_field(posted.card_no, "卡号")?;
    let pin = posted.pin.filter(|p| !p.is_empty());
    if pin.as_ref().is_some_and(|p| p.len() > MAX_PIN) {
        return Err("密码太长".into());
    }
    match (&staff_id, &card_no) {
        (None, None) => Err("请输入工号和密码，或刷卡".into()),
        (Some(_), Some(_)) => Err("工号和卡号只填一个".into()),
        _ => Ok(PunchRequest {
            staff_id,
            pin,
            card_no,
            direction,
        }),
    }
}

/// Who is punching, as far as the roster tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Who<'a> {
    /// A card on the roster (swiped, or typed into the staff number field): no PIN needed.
    Card(&'a Staff, String),
    /// A staff number on the roster and a PIN to check.
    Pin(&'a Staff, String),
    /// A staff number on the roster without a PIN.
    NoPin(&'a Staff),
    /// Not on the roster, or no roster yet: the punch is kept and flagged.
    Unknown {
        staff_id: String,
        card_no: Option<String>,
    },
}

/// Matches a request against the roster. A number typed into the staff number field without a PIN
/// is tried as a card number first (a card reader may type there).
pub fn resolve<'a>(req: &PunchRequest, roster: Option<&'a RosterIndex>) -> Who<'a> {
    if let Some(card) = &req.card_no {
        return match roster.and_then(|r| r.by_card(card)) {
            Some(staff) => Who::Card(staff, card.clone()),
            None => Who::Unknown {
                staff_id: String::new(),
                card_no: Some(card.clone()),
            },
        };
    }
    let id = req.staff_id.clone().unwrap_or_default();
    let staff = roster.and_then(|r| r.staff(&id));
    let card = roster.and_then(|r| r.by_card(&id));
    match (staff, card, &req.pin) {
        (Some(staff), _, Some(pin)) => Who::Pin(staff, pin.clone()),
        (_, Some(holder), None) => Who::Card(holder, id),
        (Some(staff), None, None) => Who::NoPin(staff),
        (None, Some(holder), Some(_)) => Who::Card(holder, id),
        (None, None, _) => Who::Unknown {
            staff_id: id,
            card_no: None,
        },
    }
}

/// Wrong PINs per staff number in a sliding window: at `max` within `window` the number is locked
/// until the oldest of them is `window` old. Only staff on the roster are counted, so it stays
/// small. With a [`FailureLog`] each failure is also kept in the box's SQLite, so that restarting
/// the agent does not reset a lock.
#[derive(Debug)]
pub struct WrongPins {
    max: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
    log: Option<FailureLog>,
}

/// The wrong PINs of the last lockout window, kept in the outbox database (table
/// `kiosk_wrong_pins`, wall-clock milliseconds).
#[derive(Debug)]
pub struct FailureLog {
    path: std::path::PathBuf,
    conn: rusqlite::Connection,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl FailureLog {
    /// Opens the table in the outbox database at `path`.
    pub fn open(path: &std::path::Path) -> Result<FailureLog, crate::error::Error> {
        let conn = crate::outbox::connect(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kiosk_wrong_pins (staff_id TEXT NOT NULL, at_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS kiosk_wrong_pins_by_staff ON kiosk_wrong_pins (staff_id, at_ms);",
        )
        .map_err(|source| crate::error::Error::Db {
            path: path.to_owned(),
            source,
        })?;
        Ok(FailureLog {
            path: path.to_owned(),
            conn,
        })
    }

    /// The failures younger than `window` (staff number, ms ago), dropping the older ones.
    fn recent(&self, window: Duration) -> rusqlite::Result<Vec<(String, u64)>> {
        let now = unix_ms();
        let oldest = now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        self.conn
            .execute("DELETE FROM kiosk_wrong_pins WHERE at_ms <= ?1", [oldest])?;
        let mut stmt = self
            .conn
            .prepare("SELECT staff_id, at_ms FROM kiosk_wrong_pins ORDER BY at_ms")?;
        let rows = stmt.query_map([], |r| {
            let at: i64 = r.get(1)?;
            Ok((
                r.get(0)?,
                u64::try_from(now.saturating_sub(at)).unwrap_or(0),
            ))
        })?;
        rows.collect()
    }

    fn add(&self, staff_id: &str, keep: usize) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO kiosk_wrong_pins (staff_id, at_ms) VALUES (?1, ?2)",
            rusqlite::params![staff_id, unix_ms()],
        )?;
        // Only the newest `keep` count, as in memory.
        self.conn.execute(
            "DELETE FROM kiosk_wrong_pins WHERE staff_id = ?1 AND rowid NOT IN
                (SELECT rowid FROM kiosk_wrong_pins WHERE staff_id = ?1 ORDER BY at_ms DESC, rowid DESC LIMIT ?2)",
            rusqlite::params![staff_id, i64::try_from(keep).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    fn clear(&self, staff_id: &str) -> rusqlite::Result<()> {
        self.conn
            .execute(
                "DELETE FROM kiosk_wrong_pins WHERE staff_id = ?1",
                [staff_id],
            )
            .map(|_| ())
    }
}

impl WrongPins {
    pub fn new(max: u32, window: Duration) -> WrongPins {
        WrongPins {
            max: (max as usize).max(1),
            window,
            failures: HashMap::new(),
            log: None,
        }
    }

    /// Keeps failures in `log` too, and takes up the ones it holds from before a restart.
    pub fn with_log(mut self, log: FailureLog) -> WrongPins {
        match log.recent(self.window) {
            Ok(rows) => {
                let now = Instant::now();
                for (staff_id, ago) in rows {
                    let at = now.checked_sub(Duration::from_millis(ago)).unwrap_or(now);
                    let failures = self.failures.entry(staff_id).or_default();
                    failures.push_back(at);
                    while failures.len() > self.max {
                        failures.pop_front();
                    }
                }
                if !self.failures.is_empty() {
                    tracing::info!(
                        staff = self.failures.len(),
                        "kiosk: wrong PINs from before the restart still count"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(path = %log.path.display(), error = %e, "kiosk: the kept wrong PINs could not be read; counting from zero")
            }
        }
        self.log = Some(log);
        self
    }

    /// How much longer `staff_id` is locked, if it is.
    pub fn locked_for(&mut self, staff_id: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.get_mut(staff_id)?;
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            failures.pop_front();
        }
        if failures.is_empty() {
            self.failures.remove(staff_id);
            return None;
        }
        if failures.len() < self.max {
            return None;
        }
        failures
            .front()
            .map(|t| self.window.saturating_sub(now.duration_since(*t)))
    }

    /// Counts a wrong PIN; returns the tries left before the lock.
    pub fn failed(&mut self, staff_id: &str, now: Instant) -> usize {
        if let Some(log) = &self.log {
            if let Err(e) = log.add(staff_id, self.max) {
                tracing::warn!(path = %log.path.display(), error = %e, "kiosk: a wrong PIN could not be kept; it counts until the agent restarts");
            }
        }
        let failures = self.failures.entry(staff_id.to_owned()).or_default();
        failures.push_back(now);
        while failures.len() > self.max {
            failures.pop_front();
        }
        self.max - failures.len()
    }

    /// A right PIN clears the count.
    pub fn succeeded(&mut self, staff_id: &str) {
        if self.failures.remove(staff_id).is_some() {
            if let Some(log) = &self.log {
                if let Err(e) = log.clear(staff_id) {
                    tracing::warn!(path = %log.path.display(), error = %e, "kiosk: the kept wrong PINs could not be cleared");
                }
            }
        }
    }
}

/// 拍照刷卡考勤 (seed 004): the box's camera takes a photo at each punch and the punch names it
/// (`photo`, the blob's sha256).
///
/// The photo is started when the request arrives, so it is taken while the roster is read and the
/// PIN checked, just before the punch, and the punch never waits for it: if the picture is on disk
/// (written and fsynced) by the time the punch is written, the punch names it; if not (a slow
/// camera, a card punch with nothing to check), the punch goes without `photo`. Either way the
/// photo's own `snapshot` event (trigger `punch`) follows the punch and names it (`punch_seq`), so
/// the hub can pair them; a punch that is not recorded (a wrong PIN) discards its photo. A camera
/// that fails costs the punch nothing but its photo.
fn punch_photo(pending: Option<&PendingPhoto>) -> Option<String> {
    pending.and_then(PendingPhoto::ready)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({ "error": message.into() }))
}

async fn page(State(state): State<KioskState>) -> Response {
    use chrono::Offset;
    let now = chrono::Utc::now();
    let offset_min = now
        .with_timezone(&state.clock.tz())
        .offset()
        .fix()
        .local_minus_utc()
        / 60;
    let html = PAGE
        .replace("__SERVER_MS__", &now.timestamp_millis().to_string())
        .replace("__TZ_OFFSET_MIN__", &offset_min.to_string());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn punch(
    State(state): State<KioskState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    // The page sends JSON; a form or text/plain from another page on an office PC is refused.
    if let Err(refusal) = crate::capture::intake_keys::require_json(&headers) {
        return refusal.into_response();
    }
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let photo = state.photo.as_ref().map(|(cameras, id)| {
        cameras.start_punch_photo(id, req.staff_id.clone().or_else(|| req.card_no.clone()))
    });
    let (response, seq) = decide_and_record(&state, req, photo.as_ref()).await;
    if let Some(photo) = photo {
        match seq {
            Some(seq) => photo.recorded(seq),
            None => photo.not_recorded(),
        }
    }
    response
}

/// Checks the punch and records it; the seq when it was recorded.
async fn decide_and_record(
    state: &KioskState,
    req: PunchRequest,
    photo: Option<&PendingPhoto>,
) -> (Response, Option<u64>) {
    let cache = state.roster.clone();
    let roster = match tokio::task::spawn_blocking(move || cache.current()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "kiosk: cannot read the roster");
            return (
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "未记录：名册读取失败，请重试",
                ),
                None,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "kiosk: cannot read the roster");
            return (
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "未记录：名册读取失败，请重试",
                ),
                None,
            );
        }
    };
    let dir = req.direction;
    match resolve(&req, roster.as_deref()) {
        Who::Card(staff, card) => {
            let punch = Punch {
                staff_id: &staff.staff_id,
                name: Some(&staff.name),
                method: "card",
                card_no: Some(&card),
                flags: Vec::new(),
            };
            record(state, punch, dir, photo).await
        }
        Who::NoPin(_) => (refuse(StatusCode::UNAUTHORIZED, "请输入密码"), None),
        Who::Pin(staff, pin) => check_pin_and_record(state, staff.clone(), pin, dir, photo).await,
        Who::Unknown { staff_id, card_no } => {
            let mut flags = vec![if card_no.is_some() {
                "unknown_card"
            } else {
                "unknown_staff"
            }];
            if roster.is_none() {
                flags.push("no_roster");
            }
            let punch = Punch {
                staff_id: &staff_id,
                name: None,
                method: if card_no.is_some() { "card" } else { "kiosk" },
                card_no: card_no.as_deref(),
                flags,
            };
            record(state, punch, dir, photo).await
        }
    }
}

async fn check_pin_and_record(
    state: &KioskState,
    staff: Staff,
    pin: String,
    dir: Direction,
    photo: Option<&PendingPhoto>,
) -> (Response, Option<u64>) {
    let locked = state
        .wrong_pins
        .lock()
        .ok()
        .and_then(|mut w| w.locked_for(&staff.staff_id, Instant::now()));
    if let Some(wait) = locked {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        tracing::warn!(staff_id = %staff.staff_id, "kiosk: staff number locked after wrong PINs");
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("密码错误次数过多，请 {minutes} 分钟后再试"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return (response, None);
    }
    let Ok(_permit) = state.verifying.clone().acquire_owned().await else {
        return (
            refuse(StatusCode::SERVICE_UNAVAILABLE, "未记录：请重试"),
            None,
        );
    };
    let checked = {
        let staff = staff.clone();
        tokio::task::spawn_blocking(move || verify_pin(&staff, &pin)).await
    };
    match checked {
        Ok(PinCheck::Match) => {
            if let Ok(mut w) = state.wrong_pins.lock() {
                w.succeeded(&staff.staff_id);
            }
            let punch = Punch {
                staff_id: &staff.staff_id,
                name: Some(&staff.name),
                method: "kiosk",
                card_no: None,
                flags: Vec::new(),
            };
            record(state, punch, dir, photo).await
        }
        Ok(PinCheck::Wrong) => {
            let left = state
                .wrong_pins
                .lock()
                .map(|mut w| w.failed(&staff.staff_id, Instant::now()))
                .unwrap_or(0);
            tracing::warn!(staff_id = %staff.staff_id, tries_left = left, "kiosk: wrong PIN; nothing recorded");
            (
                answer(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "密码错误", "tries_left": left}),
                ),
                None,
            )
        }
        Ok(PinCheck::NotSet) => (
            refuse(
                StatusCode::UNAUTHORIZED,
                "该工号未设置密码，请刷卡或联系管理员",
            ),
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, "kiosk: the PIN check failed");
            (
                refuse(StatusCode::SERVICE_UNAVAILABLE, "未记录：请重试"),
                None,
            )
        }
    }
}

/// A punch about to be recorded.
struct Punch<'a> {
    staff_id: &'a str,
    name: Option<&'a str>,
    method: &'static str,
    card_no: Option<&'a str>,
    flags: Vec<&'static str>,
}

/// The punch body as stored: `at` and `box_time` are the box's clock (there is no terminal clock).
fn punch_body(p: &Punch<'_>, dir: Direction, box_time: &str, photo: Option<String>) -> Value {
    let mut body = json!({
        "staff_id": p.staff_id, "direction": dir.as_str(), "method": p.method, "source": "kiosk",
        "box_time": box_time,
    });
    if let Some(card) = p.card_no {
        body["card_no"] = json!(card);
    }
    if !p.flags.is_empty() {
        body["flags"] = json!(p.flags);
    }
    if let Some(photo) = photo {
        body["photo"] = json!(photo);
    }
    body
}

/// Appends the punch and answers 201 once it is durable; the seq it got.
async fn record(
    state: &KioskState,
    p: Punch<'_>,
    dir: Direction,
    photo: Option<&PendingPhoto>,
) -> (Response, Option<u64>) {
    let at = state.clock.now_rfc3339();
    let photo = punch_photo(photo);
    let draft =
        match super::intake_api::draft("punch", &at, punch_body(&p, dir, &at, photo.clone())) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "kiosk: the punch does not validate");
                return (
                    refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("未记录：{e}")),
                    None,
                );
            }
        };
    match state.outbox.append_one(draft).await {
        Ok(appended) => {
            tracing::info!(staff_id = %p.staff_id, method = p.method, direction = dir.as_str(), seq = appended.seq, flags = ?p.flags, photo = ?photo, "kiosk punch recorded");
            let message = if p.flags.contains(&"unknown_card") {
                "已记录（卡号不在名册中，已标记）"
            } else if p.flags.contains(&"unknown_staff") {
                "已记录（工号不在名册中，已标记）"
            } else {
                "已记录"
            };
            (
                answer(
                    StatusCode::CREATED,
                    json!({
                        "recorded": true, "seq": appended.seq, "name": p.name, "staff_id": p.staff_id,
                        "direction": dir.as_str(), "time": at.get(11..19).unwrap_or(""), "at": at,
                        "message": message, "flags": p.flags, "photo": photo,
                    }),
                ),
                Some(appended.seq),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "kiosk: the punch could not be stored");
            (
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("未记录，请重试（{e}）"),
                ),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::tests::{SITE, roster_json};
    use crate::roster::{Roster, RosterIndex};

    fn index() -> RosterIndex {
        RosterIndex::new(
            Roster::from_value(roster_json(), SITE).unwrap(),
            1,
            0,
            "test".into(),
        )
    }

    fn req(body: Value) -> PunchRequest {
        parse_request(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requests_parse_and_refusals_say_why_in_chinese() {
        let r = req(json!({"staff_id": " 0451 ", "pin": "1357", "direction": "in"}));
        assert_eq!(
            (r.staff_id.as_deref(), r.pin.as_deref(), r.direction),
            (Some("0451"), Some("1357"), Direction::In)
        );
        let r =
            req(json!({"card_no": "0012345678", "staff_id": "", "pin": "", "direction": "out"}));
        assert_eq!(
            (r.card_no.as_deref(), r.staff_id, r.pin),
            (Some("0012345678"), None, None)
        );
        let cases: [(&[u8], &str); 8] = [
            (b"{oops", "请求无效"),
            (br#"{"staff_id":"0451"}"#, "direction"),
            (
                br#"{"staff_id":"0451","direction":"sideways"}"#,
                "上班或下班",
            ),
            (br#"{"direction":"in"}"#, "请输入工号"),
            (br#"{"staff_id":"04 51","direction":"in"}"#, "工号只能是"),
            (br#"{"card_no":"<script>","direction":"in"}"#, "卡号只能是"),
            (
                br#"{"staff_id":"1","card_no":"2","direction":"in"}"#,
                "只填一个",
            ),
            (
                br#"{"staff_id":"1","direction":"in","photo":"x"}"#,
                "unknown field",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_request(body).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn the_roster_decides_who_is_punching() {
        let roster = index();
        let li = roster.staff("0451").unwrap();
        let pin = req(json!({"staff_id": "0451", "pin": "1", "direction": "in"}));
        assert_eq!(resolve(&pin, Some(&roster)), Who::Pin(li, "1".into()));
        let no_pin = req(json!({"staff_id": "0451", "direction": "in"}));
        assert_eq!(resolve(&no_pin, Some(&roster)), Who::NoPin(li));
        let card = req(json!({"card_no": "0012345678", "direction": "in"}));
        assert_eq!(
            resolve(&card, Some(&roster)),
            Who::Card(li, "0012345678".into())
        );
        // A reader typing into the staff number field.
        let typed = req(json!({"staff_id": "0012345678", "direction": "in"}));
        assert_eq!(
            resolve(&typed, Some(&roster)),
            Who::Card(li, "0012345678".into())
        );
        let stranger = req(json!({"staff_id": "9999", "pin": "1", "direction": "in"}));
        let unknown = Who::Unknown {
            staff_id: "9999".into(),
            card_no: None,
        };
        assert_eq!(resolve(&stranger, Some(&roster)), unknown);
        assert_eq!(resolve(&stranger, None), unknown);
        assert_eq!(
            resolve(&pin, None),
            Who::Unknown {
                staff_id: "0451".into(),
                card_no: None
            }
        );
        let lost = req(json!({"card_no": "999", "direction": "in"}));
        assert_eq!(
            resolve(&lost, Some(&roster)),
            Who::Unknown {
                staff_id: String::new(),
                card_no: Some("999".into())
            }
        );
    }

    #[test]
    fn five_wrong_pins_lock_a_staff_number_for_five_minutes() {
        let mut w = WrongPins::new(5, Duration::from_secs(300));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for i in 0..4 {
            assert_eq!(w.locked_for("0451", at(i)), None);
            assert_eq!(w.failed("0451", at(i)), 4 - i as usize);
        }
        assert_eq!(w.locked_for("0451", at(10)), None);
        assert_eq!(w.failed("0451", at(10)), 0);
        assert_eq!(w.locked_for("0451", at(11)), Some(Duration::from_secs(289)));
        assert_eq!(w.locked_for("0452", at(11)), None, "others are not locked");
        // The oldest failure ages out: one more try, then locked until the next one ages out.
        assert_eq!(w.locked_for("0451", at(300)), None);
        assert_eq!(w.failed("0451", at(300)), 0);
        assert_eq!(w.locked_for("0451", at(300)), Some(Duration::from_secs(1)));
        // Long after, all clear; a right PIN clears the count.
        assert_eq!(w.locked_for("0451", at(1000)), None);
        assert!(w.failures.is_empty());
        w.failed("0452", at(1000));
        w.succeeded("0452");
        assert!(w.failures.is_empty());
    }

    #[test]
    fn wrong_pins_kept_in_the_database_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let window = Duration::from_secs(300);
        let mut w = WrongPins::new(3, window).with_log(FailureLog::open(&path).unwrap());
        for _ in 0..3 {
            w.failed("0451", Instant::now());
        }
        w.failed("0452", Instant::now());
        w.succeeded("0452");
        assert!(w.locked_for("0451", Instant::now()).is_some());
        drop(w);
        // As after a restart of the agent: 0451 is still locked, 0452 has no failure left.
        let mut again = WrongPins::new(3, window).with_log(FailureLog::open(&path).unwrap());
        let left = again
            .locked_for("0451", Instant::now())
            .expect("still locked");
        assert!(
            left > Duration::from_secs(290) && left <= window,
            "{left:?}"
        );
        assert_eq!(again.locked_for("0452", Instant::now()), None);
        assert!(!again.failures.contains_key("0452"));
        // A window of nothing: the kept failures are too old and dropped.
        let none = WrongPins::new(3, Duration::ZERO).with_log(FailureLog::open(&path).unwrap());
        assert!(none.failures.is_empty());
    }

    // --- The handler, through the router.

    struct Kiosk {
        _dir: tempfile::TempDir,
        db: std::path::PathBuf,
        outbox: Outbox,
        router: Router,
    }

    fn kiosk(with_roster: bool) -> Kiosk {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let outbox = Outbox::open(
            &db,
            &sunlight_protocol::SiteId::new(SITE).unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        if with_roster {
            let file = dir.path().join("roster.json");
            std::fs::write(&file, roster_json().to_string()).unwrap();
            crate::roster::load_file(&db, SITE, &file).unwrap();
        }
        let state = KioskState::new(
            outbox.clone(),
            Clock::new(chrono_tz::Asia::Shanghai),
            Arc::new(RosterCache::open(&db).unwrap()),
            &KioskConfig::default(),
        );
        Kiosk {
            _dir: dir,
            db,
            outbox,
            router: router(state),
        }
    }

    async fn call(k: &Kiosk, method: &str, path: &str, body: Value) -> (StatusCode, Value, String) {
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let response = k.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or_default(),
            text,
        )
    }

    fn punches(k: &Kiosk) -> Vec<Value> {
        k.outbox
            .read_from(1, 100, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice::<Value>(&e.canonical).unwrap())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_is_served_self_contained() {
        let k = kiosk(true);
        let (status, _, html) = call(&k, "GET", "/kiosk", Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        for needed in [
            "考勤打卡",
            "工号",
            "密码",
            "上班",
            "下班",
            "清除",
            "lang=\"zh-CN\"",
        ] {
            assert!(html.contains(needed), "the page lacks {needed}");
        }
        assert!(!html.contains("__SERVER_MS__") && html.contains("var TZ_OFFSET_MIN = 480;"));
        // No external assets, no ES2015 syntax an old tablet browser cannot run.
        for banned in [
            "http://", "https://", "src=", "<link", "=>", "`", "fetch(", "...",
        ] {
            assert!(!html.contains(banned), "the page contains {banned:?}");
        }
        let script = html
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(script, _)| script)
            .unwrap();
        let words: std::collections::HashSet<&str> = script
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .collect();
        for banned in ["let", "const", "class", "async", "await"] {
            assert!(!words.contains(banned), "the page uses {banned:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn punches_by_pin_and_card_are_recorded_a_wrong_pin_is_not() {
        let k = kiosk(true);
        let (status, answer, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "0451", "pin": "1357", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(
            (
                &answer["recorded"],
                &answer["seq"],
                &answer["name"],
                &answer["message"]
            ),
            (&json!(true), &json!(1), &json!("李明"), &json!("已记录"))
        );
        assert_eq!(answer["time"].as_str().map(str::len), Some(8));

        // (request, status, field of the answer, what it says, whether that is all it says)
        for (request, want_status, field, want, whole) in [
            (
                json!({"staff_id": "0451", "pin": "97531", "direction": "out"}),
                StatusCode::UNAUTHORIZED,
                "error",
                "密码错误",
                true,
            ),
            (
                json!({"staff_id": "0451", "direction": "out"}),
                StatusCode::UNAUTHORIZED,
                "error",
                "请输入密码",
                true,
            ),
            (
                json!({"card_no": "0012345678", "direction": "out"}),
                StatusCode::CREATED,
                "name",
                "李明",
                true,
            ),
            (
                json!({"staff_id": "0453", "pin": "1", "direction": "in"}),
                StatusCode::UNAUTHORIZED,
                "error",
                "未设置密码",
                false,
            ),
        ] {
            let (status, answer, _) = call(&k, "POST", "/kiosk/punch", request.clone()).await;
            if whole {
                assert_eq!(
                    (status, &answer[field]),
                    (want_status, &json!(want)),
                    "{request}"
                );
            } else {
                assert_eq!(status, want_status, "{request}: {answer}");
                assert!(
                    answer[field].as_str().unwrap().contains(want),
                    "{request}: {answer}"
                );
            }
        }

        let stored = punches(&k);
        assert_eq!(
            stored.len(),
            2,
            "the wrong PIN recorded nothing: {stored:?}"
        );
        let first = &stored[0]["body"];
        assert_eq!(
            (
                &first["staff_id"],
                &first["method"],
                &first["source"],
                &first["direction"]
            ),
            (
                &json!("0451"),
                &json!("kiosk"),
                &json!("kiosk"),
                &json!("in")
            )
        );
        assert_eq!(first["box_time"], stored[0]["at"]);
        assert!(first.get("flags").is_none() && first.get("photo").is_none());
        assert!(stored[0]["at"].as_str().unwrap().ends_with("+08:00"));
        let second = &stored[1]["body"];
        assert_eq!(
            (&second["method"], &second["card_no"], &second["direction"]),
            (&json!("card"), &json!("0012345678"), &json!("out"))
        );
        // A typed PIN is never written anywhere (database and its WAL).
        for entry in std::fs::read_dir(k.db.parent().unwrap()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(5).any(|w| w == b"97531"));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strangers_are_kept_and_flagged_never_refused() {
        let k = kiosk(true);
        let (status, answer, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "9999", "pin": "1234", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(answer["message"], "已记录（工号不在名册中，已标记）");
        assert_eq!(answer["flags"], json!(["unknown_staff"]));
        assert_eq!(answer["name"], Value::Null);
        let (status, answer, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"card_no": "77", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(answer["flags"], json!(["unknown_card"]));
        let stored = punches(&k);
        assert_eq!(stored[0]["body"]["flags"], json!(["unknown_staff"]));
        assert_eq!(stored[0]["body"]["staff_id"], "9999");
        assert_eq!(stored[1]["body"]["card_no"], "77");

        // No roster at all: the same, with the reason.
        let bare = kiosk(false);
        let (status, answer, _) = call(
            &bare,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "0451", "pin": "1357", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(answer["flags"], json!(["unknown_staff", "no_roster"]));
        assert_eq!(punches(&bare).len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sixth_wrong_pin_is_refused_even_when_right() {
        let k = kiosk(true);
        for _ in 0..5 {
            let (status, _, _) = call(
                &k,
                "POST",
                "/kiosk/punch",
                json!({"staff_id": "0452", "pin": "1111", "direction": "in"}),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, answer, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "0452", "pin": "2468", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            answer["error"].as_str().unwrap().contains("分钟后再试"),
            "{answer}"
        );
        // Another clerk is not affected.
        let (status, _, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "0451", "pin": "1357", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(punches(&k).len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_punch_never_waits_for_its_photo_and_a_refused_one_keeps_none() {
        let (rig, open) = crate::capture::camera::tests::rig(vec![]).await;
        let db = rig.dir.path().join("outbox.db");
        let file = rig.dir.path().join("roster.json");
        std::fs::write(&file, roster_json().to_string()).unwrap();
        crate::roster::load_file(&db, SITE, &file).unwrap();
        let state = KioskState::new(
            rig.outbox.clone(),
            Clock::new(chrono_tz::Asia::Shanghai),
            Arc::new(RosterCache::open(&db).unwrap()),
            &KioskConfig::default(),
        )
        .with_photo(rig.cameras.clone(), "gated");
        let k = Kiosk {
            _dir: tempfile::tempdir().unwrap(),
            db,
            outbox: rig.outbox.clone(),
            router: router(state),
        };
        // The camera gives nothing until released: the punch is recorded at once, without a photo.
        let (status, answer, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"card_no": "0012345678", "direction": "in"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["photo"], Value::Null);
        let seq = answer["seq"].as_u64().unwrap();
        // A wrong PIN: its photo is released and discarded.
        let (status, _, _) = call(
            &k,
            "POST",
            "/kiosk/punch",
            json!({"staff_id": "0451", "pin": "0000", "direction": "out"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        open.add_permits(2);
        let outbox = rig.outbox.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while crate::capture::camera::tests::bodies(&outbox, "snapshot").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the photo did not follow"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let photos = crate::capture::camera::tests::bodies(&outbox, "snapshot");
        assert_eq!(photos.len(), 1, "{photos:?}");
        assert_eq!(
            (&photos[0]["punch_seq"], &photos[0]["trigger"]),
            (&json!(seq), &json!("punch"))
        );
        assert_eq!(
            rig.cameras.spool().figures().unwrap().images,
            1,
            "the refused punch's photo is gone"
        );
        assert_eq!(
            punches(&k).iter().filter(|e| e["kind"] == "punch").count(),
            1
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any body gets a request or a reason, and any request a decision: never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let roster = index();
            if let Ok(r) = parse_request(&bytes) {
                let _ = resolve(&r, Some(&roster));
            }
        }

        #[test]
        fn arbitrary_fields_never_panic(
            staff in proptest::option::of("\\PC{0,40}"),
            pin in proptest::option::of("\\PC{0,80}"),
            card in proptest::option::of("[0-9A-Za-z ]{0,40}"),
            direction in "(in|out|\\PC{0,5})",
        ) {
            let roster = index();
            let body = json!({"staff_id": staff, "pin": pin, "card_no": card, "direction": direction});
            if let Ok(r) = parse_request(body.to_string().as_bytes()) {
                let _ = resolve(&r, Some(&roster));
                let _ = resolve(&r, None);
            }
        }
    }
}
