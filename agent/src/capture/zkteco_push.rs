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
use std::sync::Arc;
use sunlight_protocol::EventDraft;

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
            Ok(draft) => keyed.push(Keyed {
                key: Some(format!("zk:{sn}:{}:{}:{}", r.pin, r.time, r.status)),
                draft,
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
            tracing::info!(%sn, new, repeated = taken - new, refused, "attendance upload recorded");
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
