//! Notifications as rows: a message is recorded in the same transaction as the fact that causes it
//! (a case reaching a level, a work order opening), under a unique key, so it exists exactly once
//! however often the fact is re-evaluated, and survives restarts. The sender ([`crate::notify`])
//! delivers pending rows and records the outcome; messages for digest roles wait and are gathered
//! into one message per recipient and day.

use crate::config::{HubConfig, Role};
use chrono::NaiveDate;
use rusqlite::{Connection, params};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,        -- what the message is about, per recipient: never sent twice
    created_ms INTEGER NOT NULL,
    day TEXT NOT NULL,               -- the oversight day it belongs to (digests group by it)
    site TEXT, role TEXT NOT NULL, to_addr TEXT, to_name TEXT,
    subject TEXT NOT NULL, text TEXT NOT NULL,
    status TEXT NOT NULL,            -- pending | waiting_digest | in_digest | sent | no_contact
    digest_id INTEGER,               -- the digest message that carried it
    attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, sent_ms INTEGER, channel TEXT);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (next_ms) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_digest ON notifications (day) WHERE status = 'waiting_digest';
";

/// Something that happened and who should hear of it.
pub struct Notice<'a> {
    /// Identifies the fact (e.g. `case:<site>:<no>:yellow_card`); one message per fact and person.
    pub key: String,
    pub day: NaiveDate,
    pub site: &'a str,
    pub unit: &'a str,
    pub staff_id: &'a str,
    pub roles: &'a [Role],
    pub subject: String,
    pub text: String,
}

/// Records the messages of `notice`, one per recipient; a role with no contact is recorded as
/// `no_contact` (once a day per role and unit, or handler) so the admin sees who is missing.
/// Returns how many new rows were written.
pub fn enqueue(
    conn: &Connection,
    config: &HubConfig,
    notice: &Notice<'_>,
) -> rusqlite::Result<usize> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO notifications (key, created_ms, day, site, role, to_addr, to_name, subject, text, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut n = 0;
    for &role in notice.roles {
        let digest = config.notify.digest.roles.contains(&role);
        let mut any = false;
        for c in config.recipients(role, notice.site, notice.unit, notice.staff_id) {
            any = true;
            n += insert.execute(params![
                format!("{}:{}:{}", notice.key, role.as_str(), c.to),
                super::now_ms(),
                notice.day.to_string(),
                notice.site,
                role.as_str(),
                c.to,
                c.name,
                notice.subject,
                notice.text,
                if digest { "waiting_digest" } else { "pending" },
            ])?;
        }
        if !any {
            // One row per missing contact and day, not one per message: the admin's to-do list.
            let who = if role == Role::Handler {
                notice.staff_id
            } else {
                notice.unit
            };
            n += insert.execute(params![
                format!(
                    "no_contact:{}:{}:{}:{who}",
                    notice.day,
                    role.as_str(),
                    notice.site
                ),
                super::now_ms(),
                notice.day.to_string(),
                notice.site,
                role.as_str(),
                None::<String>,
                None::<String>,
                notice.subject,
                notice.text,
                "no_contact",
            ])?;
        }
    }
    Ok(n)
}

/// Whether a message was recorded under `key`.
pub fn recorded(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM notifications WHERE key = ?1")?
        .exists([key])
}

/// Records one message to `to` under `key` (unless one was recorded under it before), ready to go.
pub fn enqueue_to(
    conn: &Connection,
    key: &str,
    day: NaiveDate,
    to: &crate::config::Contact,
    subject: &str,
    text: &str,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO notifications (key, created_ms, day, site, role, to_addr, to_name, subject, text, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
    )?
    .execute(params![
        key,
        super::now_ms(),
        day.to_string(),
        to.site,
        to.role.as_str(),
        to.to,
        to.name,
        subject,
        text
    ])
}

/// Gathers the waiting messages of days before `through` into one digest per recipient and day.
/// Returns how many digests were made.
pub fn make_digests(conn: &Connection, before: NaiveDate) -> rusqlite::Result<usize> {
    let groups: Vec<(String, String, Option<String>, String, String)> = conn
        .prepare_cached(
            "SELECT day, to_addr, to_name, role, group_concat(subject, char(10)) FROM notifications
             WHERE status = 'waiting_digest' AND day < ?1 GROUP BY day, to_addr ORDER BY day",
        )?
        .query_map([before.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (day, to, name, role, lines) in &groups {
        let count = lines.lines().count();
        conn.execute(
            "INSERT OR IGNORE INTO notifications (key, created_ms, day, role, to_addr, to_name, subject, text, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')",
            params![
                format!("digest:{day}:{to}"),
                super::now_ms(),
                day,
                role,
                to,
                name,
                format!("{day} 电子监察日报：{count} 条"),
                lines,
            ],
        )?;
        let id: i64 = conn.query_row(
            "SELECT id FROM notifications WHERE key = ?1",
            [format!("digest:{day}:{to}")],
            |r| r.get(0),
        )?;
        conn.execute(
            "UPDATE notifications SET status = 'in_digest', digest_id = ?3
             WHERE status = 'waiting_digest' AND day = ?1 AND to_addr = ?2",
            params![day, to, id],
        )?;
    }
    Ok(groups.len())
}

/// A message ready to go.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    #[serde(skip)]
    pub id: i64,
    pub key: String,
    pub to: String,
    pub name: Option<String>,
    pub role: String,
    pub subject: String,
    pub text: String,
    #[serde(skip)]
    pub attempts: u32,
}

/// Pending messages whose next attempt is due at `now_ms`, oldest first.
pub fn due(conn: &Connection, now_ms: i64, limit: u32) -> rusqlite::Result<Vec<Outgoing>> {
    conn.prepare_cached(
        "SELECT id, key, to_addr, to_name, role, subject, text, attempts FROM notifications
         WHERE status = 'pending' AND next_ms <= ?1 ORDER BY id LIMIT ?2",
    )?
    .query_map(params![now_ms, limit], |r| {
        Ok(Outgoing {
            id: r.get(0)?,
            key: r.get(1)?,
            to: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            name: r.get(3)?,
            role: r.get(4)?,
            subject: r.get(5)?,
            text: r.get(6)?,
            attempts: r.get(7)?,
        })
    })?
    .collect()
}

pub fn mark_sent(conn: &Connection, id: i64, channel: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE notifications SET status = 'sent', sent_ms = ?2, channel = ?3, attempts = attempts + 1 WHERE id = ?1",
        params![id, super::now_ms(), channel],
    )?;
    Ok(())
}

pub fn mark_failed(conn: &Connection, id: i64, error: &str, next_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_ms = ?3 WHERE id = ?1",
        params![id, error, next_ms],
    )?;
    Ok(())
}

/// A notification as `GET /api/v1/notifications` shows it.
#[derive(Debug, Serialize)]
pub struct NoticeView {
    pub id: i64,
    pub key: String,
    pub day: String,
    pub site: Option<String>,
    pub role: String,
    pub to: Option<String>,
    pub name: Option<String>,
    pub subject: String,
    pub text: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    pub channel: Option<String>,
    pub digest_id: Option<i64>,
}

/// Notifications, newest first, optionally only one status and only about one key prefix.
pub fn list(
    conn: &Connection,
    status: Option<&str>,
    key_prefix: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<NoticeView>> {
    conn.prepare_cached(
        "SELECT id, key, day, site, role, to_addr, to_name, subject, text, status, attempts, last_error, sent_ms, channel, digest_id
         FROM notifications WHERE (?1 IS NULL OR status = ?1)
           AND (?2 IS NULL OR (key >= ?2 AND key < ?2 || char(1114111)))
         ORDER BY id DESC LIMIT ?3",
    )?
    .query_map(params![status, key_prefix, limit.clamp(1, 1000)], |r| {
        Ok(NoticeView {
            id: r.get(0)?,
            key: r.get(1)?,
            day: r.get(2)?,
            site: r.get(3)?,
            role: r.get(4)?,
            to: r.get(5)?,
            name: r.get(6)?,
            subject: r.get(7)?,
            text: r.get(8)?,
            status: r.get(9)?,
            attempts: r.get(10)?,
            last_error: r.get(11)?,
            sent_at: r.get::<_, Option<i64>>(12)?.map(super::fmt_ms),
            channel: r.get(13)?,
            digest_id: r.get(14)?,
        })
    })?
    .collect()
}
