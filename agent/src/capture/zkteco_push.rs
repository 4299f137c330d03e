//! ZKTeco attendance terminals (PUSH / ADMS protocol): the terminal calls the box over HTTP, and
//! the box answers as the terminal's server.
//!
//! - `GET  /iclock/cdata?SN=..&options=all` — handshake: the options block (TimeZone=8, stamps).
//! - `POST /iclock/cdata?SN=..&table=ATTLOG` — punches, one per line: PIN, local time, status,
//!   verify type, work code, ... separated by tabs. Answer `OK: <lines taken>`.
//! - `POST /iclock/cdata?SN=..&table=OPERLOG` — users and operations (names may be GBK).
//! - `POST /iclock/cdata?SN=..&table=ATTPHOTO` — a header, then a JPEG.
//! - `GET /iclock/getrequest`, `POST /iclock/devicecmd` — command polling and results.
//!
//! Terminals re-send whole ranges: each record has a dedup key, so a record becomes one punch however
//! often it arrives. A bad line is logged with its reason and skipped; the rest of the body is kept
//! (refusing the body would make the terminal re-send it forever). Unknown SNs are refused.

use super::decode_text as decode;
use crate::clock::Clock;
use crate::outbox::{Keyed, Outbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use sunlight_protocol::{Backdated, EventDraft};

/// Largest body a terminal may send (photos included).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct TerminalState {
    pub outbox: Outbox,
    pub clock: Clock,
    pub tz: Tz,
    pub terminals: Arc<HashSet<String>>,
    /// Punches dated further ahead of the box's clock than this are flagged `future_time`.
    pub max_future_secs: i64,
    /// A record older than its terminal's previous upload by more than this is marked back-dated
    /// (`[backdating] punch_secs`).
    pub punch_bound_secs: u64,
    /// When each terminal last uploaded attendance.
    pub uploads: Arc<TerminalUploads>,
}

/// When each terminal last uploaded attendance (the box's clock), kept in the outbox database so
/// that a restart of the agent does not forget it. A terminal uploads each punch as it happens and
/// re-sends what it could not; a *new* record dated well before the terminal's previous upload
/// should have been in that upload, so it is marked back-dated (issue 14, item 6).
pub struct TerminalUploads {
    path: PathBuf,
    conn: Mutex<rusqlite::Connection>,
}

impl TerminalUploads {
    /// Opens the table in the outbox database at `path`.
    pub fn open(path: &Path) -> Result<TerminalUploads, crate::error::Error> {
        let conn = crate::outbox::connect(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS terminal_uploads (sn TEXT PRIMARY KEY, at TEXT NOT NULL);",
        )
        .map_err(|source| crate::error::Error::Db {
            path: path.to_owned(),
            source,
        })?;
        Ok(TerminalUploads {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The time of `sn`'s previous attendance upload, if any. Blocking.
    pub fn last(&self, sn: &str) -> Result<Option<String>, crate::error::Error> {
        use rusqlite::OptionalExtension;
        let conn = self.conn.lock().map_err(|_| crate::error::Error::Closed)?;
        conn.query_row("SELECT at FROM terminal_uploads WHERE sn = ?1", [sn], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|source| crate::error::Error::Db {
            path: self.path.clone(),
            source,
        })
    }

    /// Records an attendance upload of `sn` at `at`. Blocking.
    pub fn record(&self, sn: &str, at: &str) -> Result<(), crate::error::Error> {
        let conn = self.conn.lock().map_err(|_| crate::error::Error::Closed)?;
        conn.execute(
            "INSERT INTO terminal_uploads (sn, at) VALUES (?1, ?2)
             ON CONFLICT (sn) DO UPDATE SET at = ?2",
            [sn, at],
        )
        .map(|_| ())
        .map_err(|source| crate::error::Error::Db {
            path: self.path.clone(),
            source,
        })
    }
}

/// Runs `f` on the uploads table off the async threads.
async fn on_uploads<T: Send + 'static>(
    uploads: &Arc<TerminalUploads>,
    f: impl FnOnce(&TerminalUploads) -> Result<T, crate::error::Error> + Send + 'static,
) -> Result<T, crate::error::Error> {
    let uploads = uploads.clone();
    tokio::task::spawn_blocking(move || f(&uploads))
        .await
        .map_err(|_| crate::error::Error::Closed)?
}

/// The back-dated mark of a record at `at` when it is older than its terminal's previous upload
/// `last_upload` by more than `bound_secs`, received at `received`.
pub fn terminal_backdated(
    at: &str,
    received: &str,
    last_upload: Option<&str>,
    bound_secs: u64,
) -> Option<Backdated> {
    let last = last_upload?;
    let mut mark = Backdated::check(at, last, bound_secs)?;
    mark.received_at = received.to_owned();
    mark.last_upload_at = Some(last.to_owned());
    Some(mark)
}

pub fn router(state: TerminalState) -> Router {
    Router::new()
        .route("/iclock/cdata", get(handshake).post(upload))
        .route("/iclock/getrequest", get(get_request))
        .route("/iclock/devicecmd", axum::routing::post(device_cmd))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

#[derive(Deserialize)]
struct Params {
    #[serde(rename = "SN")]
    sn: Option<String>,
    table: Option<String>,
}

/// One attendance record from an ATTLOG line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttRecord {
    pub pin: String,
    /// Terminal local time, as sent.
    pub time: NaiveDateTime,
    pub status: u8,
    pub verify: u16,
}

impl AttRecord {
    /// 0 check-in, 1 check-out; break and overtime codes map to in/out as well.
    pub fn direction(&self) -> &'static str {
        match self.status {
            0 | 3 | 4 => "in",
            1 | 2 | 5 => "out",
            _ => "unspecified",
        }
    }

    pub fn method(&self) -> &'static str {
        match self.verify {
            0 | 3 => "pin",
            1 => "fingerprint",
            2 | 4 => "card",
            15 => "face",
            _ => "terminal",
        }
    }
}

/// Parses an ATTLOG body: each line becomes a record or the reason it was refused (1-based line).
pub fn parse_attlog(text: &str) -> Vec<Result<AttRecord, String>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).map_err(|e| {
                format!(
                    "ATTLOG line {}: {e}: {:?}",
                    i + 1,
                    line.chars().take(80).collect::<String>()
                )
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<AttRecord, String> {
    let mut f = line.split('\t');
    let pin = f.next().unwrap_or("").trim();
    if pin.is_empty() || pin.len() > 24 || !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("the PIN must be 1 to 24 letters or digits".into());
    }
    let time = f.next().ok_or("no time field")?.trim();
    let time = NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| "the time is not a real YYYY-MM-DD HH:MM:SS".to_string())?;
    let status = f.next().unwrap_or("0").trim();
    let status = if status.is_empty() {
        0
    } else {
        status
            .parse()
            .map_err(|_| "the status is not a number 0-255".to_string())?
    };
    let verify = f.next().unwrap_or("0").trim();
    let verify = if verify.is_empty() {
        0
    } else {
        verify
            .parse()
            .map_err(|_| "the verify type is not a number".to_string())?
    };
    Ok(AttRecord {
        pin: pin.to_owned(),
        time,
        status,
        verify,
    })
}

/// A USER line of OPERLOG: `USER PIN=1\tName=张三\t...`; other lines are operations (`OPLOG ...`).
pub fn parse_users(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .filter_map(|l| {
            let mut pin = None;
            let mut name = String::new();
            for kv in l.split('\t') {
                match kv.split_once('=') {
                    Some(("PIN", v)) => pin = Some(v.trim().to_owned()),
                    Some(("Name", v)) => name = v.trim().to_owned(),
                    _ => {}
                }
            }
            Some((pin?, name))
        })
        .collect()
}

/// A terminal whose SN is not configured on this box.
struct UnknownTerminal(String);

impl IntoResponse for UnknownTerminal {
    fn into_response(self) -> Response {
        tracing::warn!(sn = %self.0, "refused a terminal that is not configured");
        (
            StatusCode::FORBIDDEN,
            format!(
                "unknown terminal SN {}: add it to zkteco.terminals in agent.toml\n",
                self.0
            ),
        )
            .into_response()
    }
}

fn known(state: &TerminalState, p: &Params) -> Result<String, UnknownTerminal> {
    match &p.sn {
        Some(sn) if state.terminals.contains(sn) => Ok(sn.clone()),
        other => Err(UnknownTerminal(
            other
                .as_deref()
                .unwrap_or("(none)")
                .chars()
                .take(40)
                .collect(),
        )),
    }
}

async fn handshake(State(state): State<TerminalState>, Query(p): Query<Params>) -> Response {
    let sn = match known(&state, &p) {
        Ok(sn) => sn,
        Err(r) => return r.into_response(),
    };
    tracing::info!(%sn, "terminal handshake");
    format!(
        "GET OPTION FROM: {sn}\nATTLOGStamp=None\nOPERLOGStamp=9999\nATTPHOTOStamp=None\nErrorDelay=30\nDelay=10\n\
         TransTimes=00:00;14:05\nTransInterval=1\nTransFlag=TransData AttLog OpLog AttPhoto EnrollUser ChgUser\n\
         TimeZone=8\nRealtime=1\nEncrypt=None\n"
    )
    .into_response()
}

async fn upload(
    State(state): State<TerminalState>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    let sn = match known(&state, &p) {
        Ok(sn) => sn,
        Err(r) => return r.into_response(),
    };
    match p.table.as_deref() {
        Some("ATTLOG") => attlog(&state, &sn, &body).await,
        Some("OPERLOG") => {
            let users = parse_users(&decode(&body));
            for (pin, name) in &users {
                tracing::info!(%sn, %pin, %name, "terminal user");
            }
            format!("OK: {}\n", users.len()).into_response()
        }
        Some("ATTPHOTO") => {
            // Header lines, then the JPEG after a NUL. Photos go to the snapshot spool (issue 5).
            let jpeg = body
                .iter()
                .position(|b| *b == 0)
                .map(|i| &body[i + 1..])
                .unwrap_or_default();
            if jpeg.starts_with(&[0xFF, 0xD8]) {
                tracing::info!(%sn, bytes = jpeg.len(), "punch photo received (not stored yet)");
                "OK\n".into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    "ATTPHOTO body has no JPEG after its header\n",
                )
                    .into_response()
            }
        }
        other => {
            tracing::info!(%sn, table = ?other, "ignoring an upload of a table this box does not keep");
            "OK\n".into_response()
        }
    }
}

async fn attlog(state: &TerminalState, sn: &str, body: &[u8]) -> Response {
    let text = decode(body);
    let box_now = chrono::Utc::now();
    let box_time = state.clock.now_rfc3339();
    let owned_sn = sn.to_owned();
    let last_upload = match on_uploads(&state.uploads, move |u| u.last(&owned_sn)).await {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(%sn, error = %e, "the terminal's previous upload could not be read; its records are not checked for back-dating this time");
            None
        }
    };
    let mut backdated = 0;
    let mut keyed = Vec::new();
    let mut refused = 0;
    for record in parse_attlog(&text) {
        let r = match record {
            Ok(r) => r,
            Err(reason) => {
                refused += 1;
                tracing::warn!(%sn, %reason, "refused an attendance line; the rest of the upload is kept");
                continue;
            }
        };
        let Some(at) = state.tz.from_local_datetime(&r.time).earliest() else {
            refused += 1;
            tracing::warn!(%sn, time = %r.time, "refused an attendance line: the time does not exist in the office's time zone");
            continue;
        };
        let mut body = json!({
            "staff_id": r.pin, "direction": r.direction(), "method": r.method(), "source": format!("zkteco:{sn}"),
            "terminal_sn": sn, "terminal_time": r.time.format("%Y-%m-%d %H:%M:%S").to_string(), "box_time": box_time,
            "status": r.status, "verify": r.verify,
        });
        if (at.with_timezone(&chrono::Utc) - box_now).num_seconds() > state.max_future_secs {
            body["flags"] = json!(["future_time"]);
        }
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        match EventDraft::new("punch", &at, &body) {
            Ok(mut draft) => keyed.push(Keyed {
                key: Some(format!("zk:{sn}:{}:{}:{}", r.pin, r.time, r.status)),
                draft: {
                    if let Some(mark) = terminal_backdated(
                        &at,
                        &box_time,
                        last_upload.as_deref(),
                        state.punch_bound_secs,
                    ) {
                        backdated += 1;
                        draft.mark_backdated(mark);
                    }
                    draft
                },
            }),
            Err(e) => {
                refused += 1;
                tracing::warn!(%sn, error = %e, "refused an attendance record");
            }
        }
    }
    let taken = keyed.len();
    match state.outbox.append_keyed(keyed).await {
        Ok(done) => {
            let new = done.iter().filter(|a| a.is_some()).count();
            tracing::info!(%sn, new, repeated = taken - new, refused, backdated, "attendance upload recorded");
            let (owned_sn, at) = (sn.to_owned(), box_time.clone());
            if let Err(e) = on_uploads(&state.uploads, move |u| u.record(&owned_sn, &at)).await {
                tracing::warn!(%sn, error = %e, "the terminal's upload time could not be kept");
            }
            format!("OK: {}\n", taken + refused).into_response()
        }
        // Not recorded: an error makes the terminal send the same records again later.
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn get_request(State(state): State<TerminalState>, Query(p): Query<Params>) -> Response {
    match known(&state, &p) {
        Ok(_) => "OK\n".into_response(),
        Err(r) => r.into_response(),
    }
}

async fn device_cmd(State(state): State<TerminalState>, Query(p): Query<Params>) -> Response {
    match known(&state, &p) {
        Ok(_) => "OK\n".into_response(),
        Err(r) => r.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attlog_lines_parse_and_bad_ones_say_why() {
        let body = "0451\t2025-11-03 08:36:12\t0\t1\t0\t0\t0\n\n0452\t2025-11-03 17:31:00\t1\t15\t\t\n0453\t2025-02-30 08:00:00\t0\t1\n\t2025-11-03 08:00:00\n0454\tyesterday\t0\t1\n";
        let got = parse_attlog(body);
        assert_eq!(got.len(), 5);
        let first = got[0].as_ref().unwrap();
        assert_eq!(
            (first.pin.as_str(), first.direction(), first.method()),
            ("0451", "in", "fingerprint")
        );
        let second = got[1].as_ref().unwrap();
        assert_eq!((second.direction(), second.method()), ("out", "face"));
        assert!(
            got[2].as_ref().unwrap_err().contains("line 4")
                && got[2].as_ref().unwrap_err().contains("not a real")
        );
        assert!(got[3].as_ref().unwrap_err().contains("PIN"));
        assert!(got[4].as_ref().unwrap_err().contains("time"));
    }

    #[test]
    fn terminal_records_are_judged_against_the_terminal_s_previous_upload() {
        let received = "2026-11-23T18:00:00.000+08:00";
        // No previous upload (a terminal new to this box): nothing to judge against.
        assert!(terminal_backdated("2026-11-01T08:00:00+08:00", received, None, 600).is_none());
        // A terminal back online after days uploads what it held: after its previous upload.
        let last = Some("2026-11-20T17:00:00.000+08:00");
        assert!(terminal_backdated("2026-11-21T08:30:00+08:00", received, last, 600).is_none());
        // Within the bound before it: not marked.
        assert!(terminal_backdated("2026-11-20T16:55:00+08:00", received, last, 600).is_none());
        // A new record dated well before the previous upload: marked, with every time.
        let mark =
            terminal_backdated("2026-11-20T08:00:00+08:00", received, last, 600).expect("marked");
        assert_eq!(mark.at, "2026-11-20T08:00:00+08:00");
        assert_eq!(mark.received_at, received);
        assert_eq!(mark.last_upload_at.as_deref(), last);
        assert_eq!(mark.bound_secs, 600);
    }

    #[test]
    fn upload_times_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let uploads = TerminalUploads::open(&path).unwrap();
        assert_eq!(uploads.last("SN1").unwrap(), None);
        uploads
            .record("SN1", "2026-11-20T17:00:00.000+08:00")
            .unwrap();
        uploads
            .record("SN1", "2026-11-20T18:00:00.000+08:00")
            .unwrap();
        drop(uploads);
        let again = TerminalUploads::open(&path).unwrap();
        assert_eq!(
            again.last("SN1").unwrap().as_deref(),
            Some("2026-11-20T18:00:00.000+08:00")
        );
        assert_eq!(again.last("SN2").unwrap(), None);
    }

    #[test]
    fn gbk_names_from_zh_cn_terminals_decode() {
        let (gbk, _, _) = encoding_rs::GBK.encode("USER PIN=0451\tName=张三丰\tPri=0\n");
        let users = parse_users(&decode(&gbk));
        assert_eq!(users, vec![("0451".to_string(), "张三丰".to_string())]);
        assert_eq!(
            parse_users(&decode("USER PIN=7\tName=李四\n".as_bytes())),
            vec![("7".into(), "李四".into())]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Arbitrary bodies never panic the parsers.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let text = decode(&bytes);
            let _ = parse_attlog(&text);
            let _ = parse_users(&text);
        }

        #[test]
        fn arbitrary_lines_never_panic(line in "\\PC{0,60}(\t\\PC{0,20}){0,6}") {
            let _ = parse_attlog(&line);
        }
    }
}
