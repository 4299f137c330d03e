//! Field operations (issue 7): what technicians and operators need to look after boxes remotely.
//!
//! - `GET /api/v1/box/time`: the hub's clock in ms, public, for `sunlight-agent check` (round trip
//!   and clock offset, NTP-style midpoint).
//! - `POST /api/v1/commands`: send any command kind to one box or every box of a site (the same
//!   store path as `sunlight-hub command send`); the box executes it at most once and answers.
//! - `PUT /api/v1/box/logs/{sha256}?cmd_id=...`: a box's recent log, answering an `upload_logs`
//!   command, signed by its device key (`sunlight_protocol::boxlogs`); one upload per command.
//! - `GET /api/v1/devices/{site}/{device}/logs` and `.../logs/{id}`: list and read the uploads.

// The HTTP helpers here return the refusal itself as their error (as in blobs.rs).
#![allow(clippy::result_large_err)]

use crate::store;
use crate::web::{ApiState, read, write};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sunlight_protocol::CommandKind;
use sunlight_protocol::boxlogs;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_logs (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, cmd_id TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, received_ms INTEGER NOT NULL, text BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS device_logs_by_device ON device_logs (site, device, id);
";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/box/time", get(box_time))
        .route(
            "/api/v1/box/logs/{sha256}",
            put(put_logs).layer(DefaultBodyLimit::max(boxlogs::MAX_LOG_BYTES)),
        )
        .route("/api/v1/devices/{site}/{device}/logs", get(list_logs))
        .route("/api/v1/devices/{site}/{device}/logs/{id}", get(read_log))
}

/// A refusal decided inside a write transaction (rolled back).
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// The hub's clock, for a box's round trip and clock offset (no secret in it, so no sign-in).
async fn box_time() -> Response {
    let now = store::now_ms();
    axum::Json(json!({ "hub_time_ms": now, "hub_time": store::fmt_ms(now) })).into_response()
}

// ---------------------------------------------------------------------------------------------
// Commands

/// What a command send asks for (the API's body and the CLI's flags).
#[derive(Debug, Clone, Deserialize)]
pub struct SendCommand {
    pub site: String,
    /// One box; every registered box of the site when absent.
    #[serde(default)]
    pub device: Option<String>,
    /// `reload_config`, `upload_logs`, `snapshot`, `set_roster`, `restart`, `update`, ...
    pub kind: String,
    /// The command's arguments, a JSON object (`{}` when absent).
    #[serde(default)]
    pub args: Option<Value>,
    /// How long boxes have to pick it up (default 24 h, at most 90 days).
    #[serde(default)]
    pub ttl_hours: Option<u32>,
    /// Who sends it, for the audit log.
    #[serde(default)]
    pub by: Option<String>,
}

/// Checks a command send; the message says what is wrong and how to fix it.
pub fn check_command(c: &SendCommand) -> Result<(), String> {
    if sunlight_protocol::SiteId::new(&c.site).is_err() {
        return Err(format!("site {:?} is not a site id", c.site));
    }
    if let Some(d) = &c.device {
        if sunlight_protocol::DeviceId::new(d).is_err() {
            return Err(format!("device {d:?} is not a device id"));
        }
    }
    if c.kind == crate::store::boxcal::KIND {
        return Err(
            "set_calendar is sent by the hub itself, to every box, whenever the calendar changes (load a year or set an override on /admin/calendar)".into(),
        );
    }
    if serde_json::from_value::<CommandKind>(json!(c.kind)).is_err() {
        return Err(format!(
            "unknown command kind {:?}: one of reload_config, upload_logs, snapshot, set_roster, restart, update",
            c.kind
        ));
    }
    match &c.args {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err("args must be a JSON object, e.g. {\"max_kb\": 256}".into()),
    }
}

/// Records a checked command (see [`check_command`]) for its box(es), with an audit entry, in the
/// caller's transaction. `Err`: no such registered box.
pub fn create_command(
    tx: &Connection,
    c: &SendCommand,
) -> rusqlite::Result<Result<Vec<String>, String>> {
    let ttl_ms = i64::from(c.ttl_hours.unwrap_or(24).clamp(1, 24 * 90)) * 3_600_000;
    let args = c.args.clone().unwrap_or_else(|| json!({}));
    let by = c.by.as_deref().unwrap_or("api");
    let ids =
        store::commands::create(tx, &c.site, c.device.as_deref(), &c.kind, &args, ttl_ms, by)?;
    if ids.is_empty() {
        return Ok(Err(match &c.device {
            Some(d) => format!(
                "no box {}/{d} is registered (sunlight-hub device add, or enroll it)",
                c.site
            ),
            None => format!("no box is registered for {}", c.site),
        }));
    }
    let target = match &c.device {
        Some(d) => format!("{}/{d}", c.site),
        None => c.site.clone(),
    };
    store::audit(
        tx,
        by,
        "command.send",
        &target,
        &format!("{} {args}", c.kind),
    )?;
    Ok(Ok(ids))
}

/// `{"site", "device"?, "kind", "args"?, "ttl_hours"?, "by"?}` → 202 `{"commands": [ids]}`; the
/// answers appear in `GET /api/v1/commands`.
pub(crate) async fn send_command(
    State(state): State<ApiState>,
    caller: Option<axum::Extension<crate::apiauth::Caller>>,
    body: Bytes,
) -> Response {
    let mut c: SendCommand = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body must be {{\"site\", \"device\", \"kind\", \"args\"}}: {e}"),
            );
        }
    };
    if let Err(m) = check_command(&c) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, m);
    }
    // The audit log names the signed-in account (and whom it says it acts for), never only what
    // the body claims.
    c.by = Some(crate::web::audit_who(
        &caller,
        c.by.as_deref().unwrap_or_default(),
    ));
    match write(&state, move |tx| match create_command(tx, &c) {
        Ok(Ok(ids)) => Ok(ids),
        Ok(Err(m)) => Err(Refusal(StatusCode::NOT_FOUND, m)),
        Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    })
    .await
    {
        Ok(Ok(ids)) => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "commands": ids }))).into_response()
        }
        Ok(Err(Refusal(status, m))) => refuse(status, m),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

#[derive(Deserialize)]
struct LogsQuery {
    cmd_id: Option<String>,
}

/// A box's log upload answering its `upload_logs` command.
async fn put_logs(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sunlight_protocol::blob::is_sha256_hex(&sha256) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the path must be the lowercase hex SHA-256 of the body",
        );
    }
    let Some(cmd_id) = q.cmd_id.filter(|c| !c.is_empty() && c.len() <= 200) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "?cmd_id= must name the upload_logs command this answers",
        );
    };
    let computed = hex::encode(Sha256::digest(&body));
    if computed != sha256 {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("the body's SHA-256 is {computed}, not {sha256}: send it again"),
        );
    }
    if std::str::from_utf8(&body).is_err() {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the log must be UTF-8 text",
        );
    }
    let reader = state.reader.clone();
    let (sha, cmd) = (sha256.clone(), cmd_id.clone());
    let who = tokio::task::spawn_blocking(move || {
        let r = reader
            .lock()
            .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "reader poisoned"))?;
        crate::blobs::authenticate_signed(&r, &headers, |site, device, time| {
            boxlogs::put_message(&sha, &cmd, site, device, time)
        })
    })
    .await;
    let (site, device) = match who {
        Ok(Ok(who)) => who,
        Ok(Err(r)) => return r,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let stored = write(&state, move |tx| {
        let asked = tx
            .query_row(
                "SELECT 1 FROM commands WHERE cmd_id = ?1 AND site = ?2 AND device = ?3 AND kind = 'upload_logs'",
                params![cmd_id, site, device],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if asked.is_none() {
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                format!("no upload_logs command {cmd_id} for {site}/{device}"),
            ));
        }
        let added = tx
            .execute(
                "INSERT INTO device_logs (site, device, cmd_id, sha256, bytes, received_ms, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (cmd_id) DO NOTHING",
                params![site, device, cmd_id, sha256, body.len() as i64, store::now_ms(), &body[..]],
            )
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let (id, sha): (i64, String) = tx
            .query_row(
                "SELECT id, sha256 FROM device_logs WHERE cmd_id = ?1",
                [&cmd_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((added == 1, id, sha))
    })
    .await;
    match stored {
        Ok(Ok((true, id, sha))) => (
            StatusCode::CREATED,
            axum::Json(json!({ "stored": true, "id": id, "sha256": sha })),
        )
            .into_response(),
        // The box uploaded for this command before (and crashed before answering): the first
        // upload stays, this one changes nothing.
        Ok(Ok((false, id, sha))) => {
            axum::Json(json!({ "stored": true, "already": true, "id": id, "sha256": sha }))
                .into_response()
        }
        Ok(Err(Refusal(status, m))) => refuse(status, m),
        Err(r) => r,
    }
}

/// One log upload, without its text.
#[derive(Debug, Serialize)]
pub struct LogView {
    pub id: i64,
    pub site: String,
    pub device: String,
    pub cmd_id: String,
    pub sha256: String,
    pub bytes: i64,
    pub received_at: String,
}

/// A box's log uploads, newest first.
pub fn logs_of(conn: &Connection, site: &str, device: &str) -> rusqlite::Result<Vec<LogView>> {
    conn.prepare_cached(
        "SELECT id, site, device, cmd_id, sha256, bytes, received_ms FROM device_logs
         WHERE site = ?1 AND device = ?2 ORDER BY id DESC LIMIT 200",
    )?
    .query_map(params![site, device], |r| {
        Ok(LogView {
            id: r.get(0)?,
            site: r.get(1)?,
            device: r.get(2)?,
            cmd_id: r.get(3)?,
            sha256: r.get(4)?,
            bytes: r.get(5)?,
            received_at: store::fmt_ms(r.get(6)?),
        })
    })?
    .collect()
}

async fn list_logs(
    State(state): State<ApiState>,
    Path((site, device)): Path<(String, String)>,
) -> Response {
    match read(&state, move |r| r.run(|c| logs_of(c, &site, &device))).await {
        Ok(l) => axum::Json(json!({ "logs": l })).into_response(),
        Err(r) => r,
    }
}

async fn read_log(
    State(state): State<ApiState>,
    Path((site, device, id)): Path<(String, String, i64)>,
) -> Response {
    let text = read(&state, move |r| {
        r.run(|c| {
            c.query_row(
                "SELECT text FROM device_logs WHERE id = ?1 AND site = ?2 AND device = ?3",
                params![id, site, device],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
        })
    })
    .await;
    match text {
        Ok(Some(t)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no such log upload for this box"),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(kind: &str, args: Option<Value>) -> SendCommand {
        SendCommand {
            site: "suixian-shangshi".into(),
            device: Some("box-01".into()),
            kind: kind.into(),
            args,
            ttl_hours: None,
            by: None,
        }
    }

    #[test]
    fn command_sends_are_checked_with_a_reason() {
        assert!(check_command(&send("reload_config", None)).is_ok());
        assert!(check_command(&send("upload_logs", Some(json!({"max_kb": 64})))).is_ok());
        let e = check_command(&send("teleport", None)).unwrap_err();
        assert!(e.contains("unknown command kind"), "{e}");
        let e = check_command(&send("upload_logs", Some(json!([1])))).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        let mut bad = send("restart", None);
        bad.site = "Not A Site".into();
        assert!(check_command(&bad).unwrap_err().contains("site id"));
    }

    #[test]
    fn a_command_for_an_unknown_box_is_refused_and_a_known_one_is_recorded_with_audit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut w = store::Writer::open(&path).unwrap();
        let refused = w
            .run(|tx| create_command(tx, &send("upload_logs", None)))
            .unwrap();
        assert!(
            refused
                .unwrap_err()
                .contains("no box suixian-shangshi/box-01")
        );
        let key = sunlight_protocol::DeviceKey::generate().unwrap();
        store::add_device(
            &path,
            &sunlight_protocol::SiteId::new("suixian-shangshi").unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
            &key.public(),
        )
        .unwrap();
        let ids = w
            .run(|tx| create_command(tx, &send("upload_logs", Some(json!({"max_kb": 8})))))
            .unwrap()
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert!(store::commands::exists(w.conn(), &ids[0]).unwrap());
        let audited: String = w
            .conn()
            .query_row(
                "SELECT detail FROM audit WHERE action = 'command.send'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(audited.contains("upload_logs"), "{audited}");
    }
}
