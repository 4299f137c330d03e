//! Commands to boxes (PROTOCOL.md "Commands"): recorded here first, published on the box's
//! `down/cmd` topic until its `cmd_result` event comes back through the outbox, or the command
//! expires. The box executes each `cmd_id` at most once, so publishing again is safe.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commands (
    cmd_id TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
    args TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    publishes INTEGER NOT NULL DEFAULT 0, last_publish_ms INTEGER,
    result_ok INTEGER, result_detail TEXT, result_ms INTEGER, by TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS commands_waiting ON commands (last_publish_ms) WHERE result_ms IS NULL;
";

/// Records a command for every registered box of `site`. Returns the command ids.
pub fn create_for_site(
    conn: &Connection,
    site: &str,
    kind: &str,
    args: &serde_json::Value,
    ttl_ms: i64,
    by: &str,
) -> rusqlite::Result<Vec<String>> {
    create(conn, site, None, kind, args, ttl_ms, by)
}

/// Records a command for one box of `site`, or for each of its registered boxes when `device` is
/// `None`. Returns the command ids (none when no such box is registered).
pub fn create(
    conn: &Connection,
    site: &str,
    device: Option<&str>,
    kind: &str,
    args: &serde_json::Value,
    ttl_ms: i64,
    by: &str,
) -> rusqlite::Result<Vec<String>> {
    let devices: Vec<String> = conn
        .prepare_cached(
            "SELECT device FROM devices WHERE site = ?1 AND (?2 IS NULL OR device = ?2) ORDER BY device",
        )?
        .query_map(params![site, device], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let now = super::now_ms();
    let mut ids = Vec::new();
    for device in devices {
        let cmd_id = format!("{kind}-{site}-{device}-{now}");
        conn.execute(
            "INSERT INTO commands (cmd_id, site, device, kind, args, created_ms, expires_ms, by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                cmd_id,
                site,
                device,
                kind,
                args.to_string(),
                now,
                now + ttl_ms,
                by
            ],
        )?;
        ids.push(cmd_id);
    }
    Ok(ids)
}

/// A command ready to publish: its topic and payload.
pub struct Publish {
    pub cmd_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Unanswered, unexpired commands not published within `resend_ms`. Never for a revoked box.
pub fn due(conn: &Connection, now_ms: i64, resend_ms: i64) -> rusqlite::Result<Vec<Publish>> {
    let rows: Vec<(String, String, String, String, String, i64)> = conn
        .prepare_cached(
            "SELECT cmd_id, site, device, kind, args, expires_ms FROM commands c
             WHERE result_ms IS NULL AND expires_ms > ?1
               AND (last_publish_ms IS NULL OR last_publish_ms <= ?1 - ?2)
               AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.site = c.site
                               AND d.device = c.device AND d.revoked_ms IS NOT NULL)
             ORDER BY created_ms LIMIT 100",
        )?
        .query_map(params![now_ms, resend_ms], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(cmd_id, site, device, kind, args, expires)| {
            let (site_id, device_id) = (
                sunlight_protocol::SiteId::new(site).ok()?,
                sunlight_protocol::DeviceId::new(device).ok()?,
            );
            let payload = serde_json::json!({
                "cmd_id": cmd_id, "kind": kind,
                "args": serde_json::from_str::<serde_json::Value>(&args).unwrap_or_default(),
                "expires": super::fmt_ms(expires),
            });
            Some(Publish {
                topic: sunlight_protocol::topics::topic(
                    &site_id,
                    &device_id,
                    sunlight_protocol::topics::Channel::Cmd,
                ),
                payload: payload.to_string().into_bytes(),
                cmd_id,
            })
        })
        .collect())
}

pub fn mark_published(conn: &Connection, cmd_id: &str, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE commands SET publishes = publishes + 1, last_publish_ms = ?2 WHERE cmd_id = ?1",
        params![cmd_id, now_ms],
    )?;
    Ok(())
}

/// Records a box's `cmd_result` event (the first answer counts; a repeat changes nothing). An
/// `update` is answered twice: before the box restarts into the new binary, and with `final: true`
/// once it is healthy or rolled back; the final answer replaces the first.
pub fn apply_result(
    conn: &Connection,
    site: &str,
    device: &str,
    body: &str,
) -> rusqlite::Result<()> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Ok(());
    };
    let Some(cmd_id) = v["cmd_id"].as_str() else {
        return Ok(());
    };
    let updated = conn.execute(
        "UPDATE commands SET result_ok = ?4, result_detail = ?5, result_ms = ?6
         WHERE cmd_id = ?1 AND site = ?2 AND device = ?3
           AND (result_ms IS NULL OR (?7 AND kind = 'update'))",
        params![
            cmd_id,
            site,
            device,
            v["ok"].as_bool(),
            v["detail"].as_str(),
            super::now_ms(),
            v["final"].as_bool() == Some(true)
        ],
    )?;
    super::updates::apply_result(conn, site, device, &v)?;
    if updated == 0 {
        tracing::info!(
            site,
            device,
            cmd_id,
            "cmd_result for an unknown or already answered command"
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct CommandView {
    pub cmd_id: String,
    pub site: String,
    pub device: String,
    pub kind: String,
    pub created_at: String,
    pub expires_at: String,
    pub publishes: u32,
    /// waiting | done | failed | expired | superseded (a `set_calendar` replaced by a newer one
    /// before the box answered)
    pub state: &'static str,
    pub detail: Option<String>,
    pub by: String,
}

pub fn list(
    conn: &Connection,
    site: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Vec<CommandView>> {
    conn.prepare_cached(
        "SELECT cmd_id, site, device, kind, created_ms, expires_ms, publishes, result_ok, result_detail, result_ms, by
         FROM commands WHERE (?1 IS NULL OR site = ?1) ORDER BY created_ms DESC LIMIT 200",
    )?
    .query_map([site], |r| {
        let expires: i64 = r.get(5)?;
        let ok: Option<bool> = r.get(7)?;
        let answered: Option<i64> = r.get(9)?;
        Ok(CommandView {
            cmd_id: r.get(0)?,
            site: r.get(1)?,
            device: r.get(2)?,
            kind: r.get(3)?,
            created_at: super::fmt_ms(r.get(4)?),
            expires_at: super::fmt_ms(expires),
            publishes: r.get(6)?,
            state: match (answered, ok) {
                (Some(_), Some(true)) => "done",
                (Some(_), _)
                    if r
                        .get::<_, Option<String>>(8)?
                        .is_some_and(|d| d.starts_with(super::boxcal::SUPERSEDED)) =>
                {
                    "superseded"
                }
                (Some(_), _) => "failed",
                (None, _) if expires <= now_ms => "expired",
                (None, _) => "waiting",
            },
            detail: r.get(8)?,
            by: r.get(10)?,
        })
    })?
    .collect()
}

/// Whether a command exists (for tests and the API).
pub fn exists(conn: &Connection, cmd_id: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM commands WHERE cmd_id = ?1", [cmd_id], |_| {
        Ok(())
    })
    .optional()
    .map(|r| r.is_some())
}
