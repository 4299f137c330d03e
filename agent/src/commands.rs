//! Commands from the hub (`down/cmd`), each executed at most once and answered with one
//! `cmd_result` event through the outbox (PROTOCOL.md, "Commands").
//!
//! The hub publishes a command again and again until it sees the answer, and MQTT may deliver it
//! twice, so a repeat must change nothing. [`decide`] is the pure part: the payload, this box's site
//! and the time in, the answer (and the roster to install) out. [`Executor`] is the shell: it skips
//! ids already executed and hands the decision to [`Outbox::record_command`], which records the id,
//! replaces the roster and appends the answer in one transaction. It runs on its own task, fed by
//! the MQTT poll task through a channel, so the link never waits for the disk.
//!
//! `snapshot` (`{"camera_id": "..."}`) takes a picture now: the executor shoots and spools the file,
//! then the same transaction records the id, indexes the image, appends its `snapshot` event
//! (trigger `command`) and the answer, `ok` with the image's sha256 as `detail` (and in `sha256`).
//! A camera error is answered `ok: false` with the reason; the hub may send a new command.
//!
//! `reload_config` and `upload_logs` run in [`crate::maintenance`]; their answer (with what was
//! reloaded, or the uploaded log's sha256) is recorded the same way, after the effect.

use crate::capture::camera::{Cameras, TakeError, Trigger};
use crate::clock::Clock;
use crate::maintenance::{Maintenance, Task};
use crate::outbox::{CommandOutcome, Outbox};
use crate::roster::Roster;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use sunlight_protocol::{Command, CommandKind, EventDraft};
use tokio::sync::mpsc;

/// Longest command id kept; a longer one is not a command of our hub.
pub const MAX_CMD_ID: usize = 200;

/// What to do with a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub cmd_id: String,
    /// The kind as sent (`set_roster`, ...).
    pub kind: String,
    pub ok: bool,
    pub detail: String,
    /// The roster that replaces the cached one (a valid `set_roster`).
    pub roster: Option<Roster>,
    /// The camera to take a snapshot with now (a valid `snapshot`); the answer follows the shot.
    pub snapshot: Option<String>,
    /// The release to install (a valid `update`); the answer follows the installation.
    pub update: Option<crate::update::UpdateArgs>,
    /// Exit once the answer is recorded, for systemd to start the agent again (`restart`).
    pub restart: bool,
    /// A maintenance task (`reload_config`, `upload_logs`); the answer follows it.
    pub maintain: Option<Task>,
    /// The calendar that replaces the stored one (a valid `set_calendar`).
    pub calendar: Option<sunlight_protocol::holidays::PushedCalendar>,
}

impl Decision {
    fn answer(cmd_id: &str, kind: &str, ok: bool, detail: impl Into<String>) -> Decision {
        Decision {
            cmd_id: cmd_id.to_owned(),
            kind: kind.to_owned(),
            ok,
            detail: detail.into(),
            roster: None,
            snapshot: None,
            update: None,
            restart: false,
            maintain: None,
            calendar: None,
        }
    }
}

/// Decides the answer to a `down/cmd` payload. `Err`: not even a command id could be read, so
/// there is nobody to answer (the reason is for the log).
pub fn decide(payload: &[u8], site: &str, now: DateTime<Utc>) -> Result<Decision, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the command is not JSON: {e}"))?;
    let cmd_id = match value.get("cmd_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= MAX_CMD_ID => id.to_owned(),
        Some(_) => return Err(format!("cmd_id must have 1 to {MAX_CMD_ID} bytes")),
        None => return Err("the command has no cmd_id".into()),
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(64)
        .collect::<String>();
    let command: Command = match serde_json::from_value(value) {
        Ok(c) => c,
        Err(e) => {
            let detail = if serde_json::from_value::<CommandKind>(json!(kind)).is_err() {
                format!("unknown command kind {kind:?}; not supported by this box")
            } else {
                format!("the command is malformed: {e}")
            };
            return Ok(Decision::answer(&cmd_id, &kind, false, detail));
        }
    };
    if let Some(expires) = &command.expires {
        match DateTime::parse_from_rfc3339(expires) {
            Ok(t) if t.with_timezone(&Utc) <= now => {
                return Ok(Decision::answer(&cmd_id, &kind, false, "expired"));
            }
            Ok(_) => {}
            Err(_) => {
                return Ok(Decision::answer(
                    &cmd_id,
                    &kind,
                    false,
                    format!("expires {expires:?} is not an RFC 3339 time"),
                ));
            }
        }
    }
    Ok(match command.kind {
        CommandKind::SetRoster => match Roster::from_value(command.args, site) {
            Ok(roster) => {
                let with_pin = roster.staff.iter().filter(|s| s.pin_hash.is_some()).count();
                let with_card = roster.staff.iter().filter(|s| s.card_no.is_some()).count();
                Decision {
                    detail: format!(
                        "roster of {site} cached: {} staff, {with_pin} with a PIN, {with_card} with a card",
                        roster.staff.len()
                    ),
                    roster: Some(roster),
                    ..Decision::answer(&cmd_id, &kind, true, "")
                }
            }
            Err(reason) => Decision::answer(
                &cmd_id,
                &kind,
                false,
                format!("roster refused, the cached one is kept: {reason}"),
            ),
        },
        CommandKind::Snapshot => match command.args.get("camera_id").and_then(Value::as_str) {
            Some(camera) if !camera.is_empty() && camera.len() <= 48 => Decision {
                snapshot: Some(camera.to_owned()),
                ..Decision::answer(&cmd_id, &kind, true, "")
            },
            _ => Decision::answer(
                &cmd_id,
                &kind,
                false,
                "snapshot needs args.camera_id, the id of one of the box's cameras",
            ),
        },
        CommandKind::Update => match crate::update::UpdateArgs::parse(&command.args) {
            Ok(args) => Decision {
                update: Some(args),
                ..Decision::answer(&cmd_id, &kind, true, "")
            },
            Err(reason) => Decision::answer(&cmd_id, &kind, false, reason),
        },
        CommandKind::ReloadConfig => Decision {
            maintain: Some(Task::ReloadConfig),
            ..Decision::answer(&cmd_id, &kind, true, "")
        },
        CommandKind::UploadLogs => match Task::upload_logs(&command.args) {
            Ok(task) => Decision {
                maintain: Some(task),
                ..Decision::answer(&cmd_id, &kind, true, "")
            },
            Err(reason) => Decision::answer(&cmd_id, &kind, false, reason),
        },
        CommandKind::SetCalendar => {
            match sunlight_protocol::holidays::PushedCalendar::from_args(&command.args) {
                Ok(calendar) => Decision {
                    detail: format!(
                        "calendar {} stored: official years {}, {} overrides",
                        calendar.version,
                        calendar
                            .official
                            .years()
                            .map(|y| y.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        calendar.overrides.len()
                    ),
                    calendar: Some(calendar),
                    ..Decision::answer(&cmd_id, &kind, true, "")
                },
                Err(reason) => Decision::answer(
                    &cmd_id,
                    &kind,
                    false,
                    format!("calendar refused, the stored one is kept: {reason}"),
                ),
            }
        }
        CommandKind::Restart => Decision {
            restart: true,
            ..Decision::answer(
                &cmd_id,
                &kind,
                true,
                "restarting: the agent exits and the service manager starts it again",
            )
        },
    })
}

/// Executes commands from the MQTT task, one at a time.
#[derive(Clone)]
pub struct Executor {
    pub outbox: Outbox,
    pub clock: Clock,
    pub site: String,
    /// The box's cameras, for `snapshot`; `None`: it has none.
    pub cameras: Option<Arc<Cameras>>,
    /// Installs `update`s and restarts the agent (`restart`); `None`: both are refused.
    pub updater: Option<crate::update::Updater>,
    /// For `reload_config` and `upload_logs`; `None`: not available (tests).
    pub maintenance: Option<Arc<Maintenance>>,
}

impl Executor {
    /// Takes payloads until the channel closes.
    pub async fn run(self, mut payloads: mpsc::Receiver<Vec<u8>>) {
        while let Some(payload) = payloads.recv().await {
            self.execute(&payload).await;
        }
    }

    /// Executes one payload at most once; everything it does is logged.
    pub async fn execute(&self, payload: &[u8]) {
        // A repeat is dropped before any work (the transaction below is what guarantees it).
        if let Some(cmd_id) = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.get("cmd_id").and_then(Value::as_str).map(str::to_owned))
        {
            let outbox = self.outbox.clone();
            let id = cmd_id.clone();
            match tokio::task::spawn_blocking(move || outbox.command_executed(&id)).await {
                Ok(Ok(true)) => {
                    tracing::info!(%cmd_id, "command already executed and answered; repeat ignored");
                    return;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(%cmd_id, error = %e, "could not look up the command"),
                Err(e) => tracing::warn!(%cmd_id, error = %e, "could not look up the command"),
            }
        }
        let mut decision = match decide(payload, &self.site, Utc::now()) {
            Ok(d) => d,
            Err(reason) => {
                tracing::warn!(%reason, "ignoring a command that cannot be answered");
                return;
            }
        };
        let mut body =
            json!({"cmd_id": decision.cmd_id, "ok": decision.ok, "detail": decision.detail});
        let mut snapshot = None;
        if let Some(camera_id) = decision.snapshot.take() {
            match self.shoot(&decision.cmd_id, &camera_id).await {
                Ok((row, event)) => {
                    body = json!({"cmd_id": decision.cmd_id, "ok": true, "detail": row.sha256,
                        "sha256": row.sha256, "camera_id": camera_id});
                    decision.detail = row.sha256.clone();
                    snapshot = Some((row, event));
                }
                Err(e) => {
                    decision.ok = false;
                    decision.detail = e.to_string();
                    body = json!({"cmd_id": decision.cmd_id, "ok": false, "detail": decision.detail, "camera_id": camera_id});
                }
            }
        }
        let mut restart = decision.restart;
        if let Some(args) = decision.update.take() {
            let outcome = match &self.updater {
                Some(updater) => updater.execute(&decision.cmd_id, &args).await,
                None => crate::update::Outcome {
                    ok: false,
                    detail: "this agent cannot update itself here".into(),
                    update: None,
                    restart: false,
                },
            };
            decision.ok = outcome.ok;
            decision.detail = outcome.detail;
            body = json!({"cmd_id": decision.cmd_id, "ok": decision.ok, "detail": decision.detail,
                "version": args.version, "update": outcome.update});
            // Installed: the new binary runs at the next start even if the answer cannot be
            // recorded now (it answers then).
            if outcome.restart {
                if let Some(updater) = &self.updater {
                    updater.restart.notify_one();
                }
            }
        }
        if restart && self.updater.is_none() {
            decision.ok = false;
            decision.detail = "this agent cannot restart itself here".into();
            body = json!({"cmd_id": decision.cmd_id, "ok": false, "detail": decision.detail});
            restart = false;
        }
        if let Some(task) = decision.maintain.take() {
            let answer = match &self.maintenance {
                Some(m) => m.execute(&decision.cmd_id, task).await,
                None => crate::maintenance::Answer {
                    ok: false,
                    detail: "maintenance commands are not available in this agent".into(),
                    extra: Default::default(),
                },
            };
            decision.ok = answer.ok;
            decision.detail = answer.detail;
            let mut map = answer.extra;
            map.insert("cmd_id".into(), json!(decision.cmd_id));
            map.insert("ok".into(), json!(decision.ok));
            map.insert("detail".into(), json!(decision.detail));
            body = Value::Object(map);
            tracing::info!(cmd_id = %decision.cmd_id, kind = %decision.kind, ok = decision.ok, "command executed; recording its answer");
            crate::maintenance::hold_answer_for_tests().await;
        }
        if let Some(calendar) = &decision.calendar {
            let live = self.cameras.as_ref().and_then(|c| c.calendar());
            if let Some(held) = live.and_then(|l| l.received()) {
                let older = match (
                    DateTime::parse_from_rfc3339(&calendar.issued),
                    DateTime::parse_from_rfc3339(&held.calendar.issued),
                ) {
                    (Ok(new), Ok(old)) => new < old,
                    _ => false,
                };
                if older {
                    decision.ok = false;
                    decision.detail = format!(
                        "calendar refused, the stored one is kept: {} was issued at {}, before the calendar {} this box holds ({})",
                        calendar.version,
                        calendar.issued,
                        held.calendar.version,
                        held.calendar.issued
                    );
                    decision.calendar = None;
                }
            }
            body = json!({"cmd_id": decision.cmd_id, "ok": decision.ok, "detail": decision.detail});
        }
        let spooled = snapshot.as_ref().map(|(row, _)| row.sha256.clone());
        let result = match EventDraft::new("cmd_result", &self.clock.now_rfc3339(), &body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(cmd_id = %decision.cmd_id, error = %e, "could not build the command's answer");
                return;
            }
        };
        let source = format!("command {}", decision.cmd_id);
        let calendar = decision.calendar.take();
        let outcome = CommandOutcome {
            cmd_id: decision.cmd_id.clone(),
            kind: decision.kind.clone(),
            ok: decision.ok,
            result,
            roster: decision.roster.map(|r| (r, source.clone())),
            snapshot,
            calendar: calendar.clone().map(|c| (c, source.clone())),
        };
        let recorded = self.outbox.record_command(outcome).await;
        if let (Some(sha), false) = (&spooled, matches!(recorded, Ok(Some(_)))) {
            if let Some(cameras) = &self.cameras {
                cameras.spool().discard(sha).await;
            }
        }
        match recorded {
            Ok(Some(appended)) => {
                tracing::info!(cmd_id = %decision.cmd_id, kind = %decision.kind, ok = decision.ok, detail = %decision.detail, seq = appended.seq, "command executed and answered");
                // Stored: every camera's schedule follows it from now on.
                if let (Some(calendar), Some(live)) =
                    (calendar, self.cameras.as_ref().and_then(|c| c.calendar()))
                {
                    live.set(crate::calendar::Received {
                        calendar,
                        loaded_ms: chrono::Utc::now().timestamp_millis(),
                        source,
                    });
                }
                // Answered first, so a restart is executed once even across the restart.
                if restart {
                    if let Some(updater) = &self.updater {
                        updater.restart.notify_one();
                    }
                }
            }
            Ok(None) => {
                tracing::info!(cmd_id = %decision.cmd_id, "command already executed and answered; repeat ignored")
            }
            // Nothing was executed: the hub publishes the command again until it sees an answer.
            Err(e) => {
                tracing::warn!(cmd_id = %decision.cmd_id, error = %e, "could not record the command; it will run when the hub sends it again")
            }
        }
    }
}

impl Executor {
    /// Takes and spools the snapshot a command asks for; returns its index row and event.
    async fn shoot(
        &self,
        cmd_id: &str,
        camera_id: &str,
    ) -> Result<(crate::spool::BlobRow, EventDraft), TakeError> {
        let Some(cameras) = &self.cameras else {
            return Err(TakeError::UnknownCamera(
                camera_id.to_owned(),
                "none configured".into(),
            ));
        };
        let shot = cameras.shoot(camera_id).await?;
        let (dimensions, taken_at) = (shot.dimensions, shot.taken_at.clone());
        let spooled = cameras.spool().write(shot.jpeg).await?;
        let mut extra = Map::new();
        extra.insert("cmd_id".into(), json!(cmd_id));
        cameras
            .record_of(
                camera_id,
                &spooled,
                dimensions,
                &taken_at,
                Trigger::Command,
                extra,
            )
            .map_err(TakeError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::tests::{SITE, roster_json};

    fn now() -> DateTime<Utc> {
        "2026-11-23T01:00:00Z".parse().unwrap()
    }

    fn payload(kind: &str, args: Value, expires: &str) -> Vec<u8> {
        json!({"cmd_id": "roster-suixian-shangshi-1", "kind": kind, "args": args, "expires": expires})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_valid_set_roster_carries_the_roster() {
        let d = decide(
            &payload("set_roster", roster_json(), "2026-11-30T09:00:00+08:00"),
            SITE,
            now(),
        )
        .unwrap();
        assert!(d.ok, "{d:?}");
        assert_eq!(d.roster.as_ref().map(|r| r.staff.len()), Some(3));
        assert!(
            d.detail.contains("3 staff, 2 with a PIN, 1 with a card"),
            "{}",
            d.detail
        );
    }

    #[test]
    fn refusals_are_answers_with_the_reason() {
        let mut other_site = roster_json();
        other_site["site"] = json!("suixian-lishan");
        let cases = [
            (
                payload("set_roster", roster_json(), "2026-11-23T08:59:59+08:00"),
                "expired",
            ),
            (
                payload("set_roster", other_site, "2026-11-30T09:00:00+08:00"),
                "this box is at",
            ),
            (
                payload(
                    "set_roster",
                    json!({"site": SITE, "staff": [{"staff_id": "1", "role": "X"}]}),
                    "2026-11-30T09:00:00+08:00",
                ),
                "role",
            ),
            (
                payload(
                    "upload_logs",
                    json!({"max_kb": 0}),
                    "2026-11-30T09:00:00+08:00",
                ),
                "max_kb",
            ),
            (
                payload(
                    "update",
                    json!({"version": "0.2.0"}),
                    "2026-11-30T09:00:00+08:00",
                ),
                "update needs args",
            ),
            (
                payload("snapshot", json!({}), "2026-11-30T09:00:00+08:00"),
                "needs args.camera_id",
            ),
            (
                payload("teleport", json!({}), "2026-11-30T09:00:00+08:00"),
                "unknown command kind",
            ),
            (
                payload("set_roster", roster_json(), "next week"),
                "RFC 3339",
            ),
            (
                payload(
                    "set_calendar",
                    json!({"version": "abc", "issued": "2026-12-04T08:00:00Z", "years": [{"year": 2027, "source": "x", "holidays": ["2027-02-30"], "workdays": []}]}),
                    "2026-11-30T09:00:00+08:00",
                ),
                "calendar refused, the stored one is kept: \"2027-02-30\" is not a YYYY-MM-DD date",
            ),
        ];
        for (p, expected) in cases {
            let d = decide(&p, SITE, now()).unwrap();
            assert!(!d.ok && d.roster.is_none() && d.calendar.is_none(), "{d:?}");
            assert!(
                d.detail.contains(expected),
                "{} should contain {expected}",
                d.detail
            );
            assert_eq!(d.cmd_id, "roster-suixian-shangshi-1");
        }
        // Without an expiry a command does not expire.
        let forever = json!({"cmd_id": "c", "kind": "set_roster", "args": roster_json()});
        assert!(
            decide(forever.to_string().as_bytes(), SITE, now())
                .unwrap()
                .ok
        );
    }

    #[test]
    fn without_an_id_there_is_nobody_to_answer() {
        for p in [
            &b"{oops"[..],
            b"[]",
            br#"{"kind":"set_roster"}"#,
            br#"{"cmd_id":""}"#,
        ] {
            assert!(decide(p, SITE, now()).is_err());
        }
        let long = json!({"cmd_id": "x".repeat(MAX_CMD_ID + 1), "kind": "restart"});
        assert!(decide(long.to_string().as_bytes(), SITE, now()).is_err());
    }

    fn outbox(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(
            &dir.path().join("outbox.db"),
            &sunlight_protocol::SiteId::new(SITE).unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap()
    }

    fn answers(outbox: &Outbox) -> Vec<Value> {
        outbox
            .read_from(1, 100, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice::<Value>(&e.canonical).unwrap())
            .filter(|e| e["kind"] == "cmd_result")
            .map(|e| e["body"].clone())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_runs_once_even_when_sent_again_or_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = payload("set_roster", roster_json(), "2099-01-01T00:00:00+08:00");
        {
            let executor = Executor {
                outbox: outbox(&dir),
                clock: Clock::new(chrono_tz::Asia::Shanghai),
                site: SITE.into(),
                cameras: None,
                maintenance: None,
                updater: None,
            };
            // Twice in a row, and twice at once (both past the early check).
            executor.execute(&cmd).await;
            executor.execute(&cmd).await;
            let (a, b) = (executor.clone(), executor.clone());
            let other = payload("reload_config", json!({}), "2099-01-01T00:00:00+08:00");
            let other = String::from_utf8(other)
                .unwrap()
                .replace("roster-suixian-shangshi-1", "r2");
            tokio::join!(a.execute(other.as_bytes()), b.execute(other.as_bytes()));
            let got = answers(&executor.outbox);
            assert_eq!(got.len(), 2, "{got:?}");
            assert_eq!(got[0]["ok"], true);
            assert_eq!(
                (got[1]["cmd_id"].as_str(), got[1]["ok"].as_bool()),
                (Some("r2"), Some(false))
            );
        }
        // After a restart the id is still known.
        let outbox = outbox(&dir);
        let executor = Executor {
            outbox: outbox.clone(),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            site: SITE.into(),
            cameras: None,
            updater: None,
            maintenance: None,
        };
        executor.execute(&cmd).await;
        assert_eq!(answers(&outbox).len(), 2);
        let roster = crate::roster::RosterCache::open(&dir.path().join("outbox.db"))
            .unwrap()
            .current()
            .unwrap()
            .unwrap();
        assert_eq!(roster.version, 1, "installed once");
        assert_eq!(roster.source, "command roster-suixian-shangshi-1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_is_answered_first_and_executed_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::AgentConfig::parse(
            &format!(
                "site = \"{SITE}\"\ndevice = \"box-01\"\ndata_dir = {:?}\n[hub]\nbroker = \"mqtt://127.0.0.1:1\"\n",
                dir.path()
            ),
            std::path::Path::new("a.toml"),
        )
        .unwrap();
        let restart = Arc::new(tokio::sync::Notify::new());
        let executor = Executor {
            outbox: outbox(&dir),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            site: SITE.into(),
            cameras: None,
            updater: Some(crate::update::Updater {
                config,
                client: reqwest::Client::new(),
                restart: restart.clone(),
            }),
            maintenance: None,
        };
        let cmd = json!({"cmd_id": "restart-1", "kind": "restart"}).to_string();
        executor.execute(cmd.as_bytes()).await;
        let got = answers(&executor.outbox);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (&got[0]["cmd_id"], &got[0]["ok"]),
            (&json!("restart-1"), &json!(true))
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), restart.notified())
            .await
            .expect("the agent is asked to exit after the answer");
        // The hub sends it again (it has not seen the answer yet): nothing happens.
        executor.execute(cmd.as_bytes()).await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), restart.notified())
                .await
                .is_err(),
            "a repeat does not restart again"
        );
        assert_eq!(answers(&executor.outbox).len(), 1);
        // An update without keys is refused with the reason, and does not restart.
        let update = json!({"cmd_id": "u1", "kind": "update", "args": {"version": "9.9.9",
            "url": "/api/v1/box/updates/9.9.9/archive", "sha256": "a".repeat(64)}})
        .to_string();
        executor.execute(update.as_bytes()).await;
        let got = answers(&executor.outbox);
        assert_eq!(got[1]["ok"], false);
        assert!(
            got[1]["detail"]
                .as_str()
                .unwrap()
                .contains("verifying_keys"),
            "{}",
            got[1]
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), restart.notified())
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_roster_keeps_the_old_one_and_is_answered_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let executor = Executor {
            outbox: outbox.clone(),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            site: SITE.into(),
            cameras: None,
            updater: None,
            maintenance: None,
        };
        executor
            .execute(&payload(
                "set_roster",
                roster_json(),
                "2099-01-01T00:00:00+08:00",
            ))
            .await;
        let mut bad = roster_json();
        bad["staff"][0]["role"] = json!("boss");
        let bad = json!({"cmd_id": "r2", "kind": "set_roster", "args": bad}).to_string();
        executor.execute(bad.as_bytes()).await;
        executor.execute(bad.as_bytes()).await;
        let got = answers(&outbox);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["ok"], false);
        assert!(
            got[1]["detail"]
                .as_str()
                .unwrap()
                .contains("cached one is kept")
        );
        let roster = crate::roster::RosterCache::open(&dir.path().join("outbox.db"))
            .unwrap()
            .current()
            .unwrap()
            .unwrap();
        assert_eq!((roster.version, roster.roster().staff.len()), (1, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_command_takes_one_picture_and_answers_with_its_sha256() {
        let (rig, _) = crate::capture::camera::tests::rig(vec![]).await;
        let executor = Executor {
            outbox: rig.outbox.clone(),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            site: SITE.into(),
            cameras: Some(rig.cameras.clone()),
            updater: None,
            maintenance: None,
        };
        let cmd = json!({"cmd_id": "snap-1", "kind": "snapshot", "args": {"camera_id": "file"}})
            .to_string();
        executor.execute(cmd.as_bytes()).await;
        executor.execute(cmd.as_bytes()).await;
        let unknown =
            json!({"cmd_id": "snap-2", "kind": "snapshot", "args": {"camera_id": "roof"}})
                .to_string();
        executor.execute(unknown.as_bytes()).await;
        let got = answers(&rig.outbox);
        assert_eq!(got.len(), 2, "{got:?}");
        let sha = got[0]["detail"].as_str().unwrap().to_owned();
        assert!(sunlight_protocol::blob::is_sha256_hex(&sha), "{sha}");
        assert_eq!(
            (&got[0]["ok"], &got[0]["sha256"], &got[0]["camera_id"]),
            (&json!(true), &json!(sha), &json!("file"))
        );
        assert_eq!(got[1]["ok"], false);
        assert!(
            got[1]["detail"]
                .as_str()
                .unwrap()
                .contains("no camera \"roof\""),
            "{}",
            got[1]
        );
        // One picture: its event (trigger command, with the command's id) comes right before the answer.
        let snaps = crate::capture::camera::tests::bodies(&rig.outbox, "snapshot");
        assert_eq!(snaps.len(), 1);
        assert_eq!(
            (
                &snaps[0]["sha256"],
                &snaps[0]["trigger"],
                &snaps[0]["cmd_id"]
            ),
            (&json!(sha), &json!("command"), &json!("snap-1"))
        );
        let f = rig.cameras.spool().figures().unwrap();
        assert_eq!((f.images, f.waiting), (1, 1));
        assert!(rig.cameras.spool().path_of(&sha).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_calendar_is_stored_put_in_force_and_an_older_or_bad_one_changes_nothing() {
        use sunlight_protocol::holidays::{Official, OfficialDay, PushedCalendar, Source};
        let (rig, _) = crate::capture::camera::tests::rig(vec![]).await;
        let live = crate::calendar::LiveCalendar::new(Official::cn().unwrap(), None);
        rig.cameras.start_schedules(
            &[],
            &crate::config::parse_hours(&["08:30-17:30".into()]).unwrap(),
            &[],
            live.clone(),
            true,
        );
        let executor = Executor {
            outbox: rig.outbox.clone(),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            site: SITE.into(),
            cameras: Some(rig.cameras.clone()),
            updater: None,
            maintenance: None,
        };
        let day = chrono::NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let calendar = |working: bool, issued: &str| {
            PushedCalendar::build(
                &Official::cn().unwrap(),
                &[(day, working)].into(),
                2026,
                issued,
            )
        };
        let command = |id: &str, c: &PushedCalendar| {
            json!({"cmd_id": id, "kind": "set_calendar", "args": c.to_args()}).to_string()
        };
        assert_eq!(
            live.day(day),
            Some((OfficialDay::Ordinary, Source::Provisional))
        );
        let newer = calendar(false, "2026-12-04T10:00:00Z");
        executor.execute(command("c1", &newer).as_bytes()).await;
        assert_eq!(
            live.day(day),
            Some((OfficialDay::Holiday, Source::Override))
        );
        // Issued before the one in force (a message the broker held, a replay): refused.
        let older = calendar(true, "2026-12-04T09:00:00Z");
        executor.execute(command("c2", &older).as_bytes()).await;
        // Malformed: refused with the reason.
        let bad =
            json!({"cmd_id": "c3", "kind": "set_calendar", "args": {"version": "ab"}}).to_string();
        executor.execute(bad.as_bytes()).await;
        let got = answers(&rig.outbox);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0]["ok"], true, "{}", got[0]);
        assert!(
            got[0]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("calendar {} stored", newer.version)),
            "{}",
            got[0]
        );
        assert_eq!(got[1]["ok"], false);
        assert!(
            got[1]["detail"]
                .as_str()
                .unwrap()
                .contains("before the calendar"),
            "{}",
            got[1]
        );
        assert_eq!(got[2]["ok"], false);
        assert!(
            got[2]["detail"].as_str().unwrap().starts_with(
                "calendar refused, the stored one is kept: not the hub's calendar form"
            ),
            "{}",
            got[2]
        );
        assert_eq!(
            live.day(day),
            Some((OfficialDay::Holiday, Source::Override))
        );
        let stored = crate::calendar::load(&rig.dir.path().join("outbox.db"))
            .unwrap()
            .unwrap();
        assert_eq!(stored.calendar, newer);
        assert_eq!(stored.source, "command c1");
    }
}
