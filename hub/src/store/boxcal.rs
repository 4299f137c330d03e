//! The calendar on the boxes (issue 15 part 4): every registered box that is not revoked is sent
//! the county's working-day calendar — the official years the hub holds and its admins' overrides
//! ([`PushedCalendar`]) — as a sealed `set_calendar` command, so its snapshot schedule follows the
//! hub's calendar.
//!
//! The trigger is the store, not the places that change it: [`sync`] compares what each box was
//! last sent (table `box_calendars`) with the calendar in force and records a command for every
//! box that differs. The command publisher runs it every few seconds, so a year loaded by
//! `sunlight-hub calendar import` (another process), a year or override saved on the admin page,
//! a box added with `sunlight-hub device add` or enrolled with a token, and a command that expired
//! while a box was away all lead to the same thing, without a hook in each of them. A box's earlier
//! unanswered `set_calendar` is superseded (answered by the hub as `superseded`, never published
//! again), so a box ends with the newest calendar and does not replay old ones. A box that refused
//! a calendar is not sent that version again (its answer is on the commands page); the next change
//! is sent.

use rusqlite::{Connection, params};
use sunlight_protocol::holidays::PushedCalendar;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS box_calendars (
    site TEXT NOT NULL, device TEXT NOT NULL, version TEXT NOT NULL, cmd_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (site, device));
";

/// The command's kind.
pub const KIND: &str = "set_calendar";
/// How long a box has to pick a calendar up; an expired one is recorded again at once.
pub const TTL_MS: i64 = 7 * 24 * 3_600_000;
/// The detail of a command replaced by a newer calendar before the box answered it.
pub const SUPERSEDED: &str = "superseded by a newer calendar";

/// The calendar the boxes should hold now: the official years from `from_year` on and the
/// overrides of those years, made at `now_ms`.
pub fn current(conn: &Connection, from_year: i32, now_ms: i64) -> Result<PushedCalendar, String> {
    let cal = super::settings::calendar(conn)?;
    Ok(PushedCalendar::build(
        cal.official_data(),
        cal.overrides(),
        from_year,
        &super::fmt_ms(now_ms),
    ))
}

/// The registered, unrevoked boxes whose last `set_calendar` carried another version than
/// `version`, expired unanswered, or that were never sent one. A read: the caller takes the write
/// lock only when this finds any.
pub fn stale(
    conn: &Connection,
    version: &str,
    now_ms: i64,
) -> rusqlite::Result<Vec<(String, String)>> {
    conn.prepare_cached(
        "SELECT d.site, d.device FROM devices d
         LEFT JOIN box_calendars b ON b.site = d.site AND b.device = d.device
         LEFT JOIN commands c ON c.cmd_id = b.cmd_id
         WHERE d.revoked_ms IS NULL
           AND (b.version IS NULL OR b.version != ?1 OR c.cmd_id IS NULL
                OR (c.result_ms IS NULL AND c.expires_ms <= ?2))
         ORDER BY d.site, d.device",
    )?
    .query_map(params![version, now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Records a `set_calendar` command with `pushed` for every [`stale`] box and supersedes that
/// box's unanswered earlier ones. Returns the new command ids.
pub fn sync(
    conn: &Connection,
    pushed: &PushedCalendar,
    now_ms: i64,
) -> rusqlite::Result<Vec<String>> {
    let stale = stale(conn, &pushed.version, now_ms)?;
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let args = pushed.to_args();
    let mut ids = Vec::new();
    for (site, device) in stale {
        conn.execute(
            "UPDATE commands SET result_ok = 0, result_detail = ?3, result_ms = ?4
             WHERE site = ?1 AND device = ?2 AND kind = 'set_calendar' AND result_ms IS NULL",
            params![
                site,
                device,
                format!("{SUPERSEDED} (version {})", pushed.version),
                now_ms
            ],
        )?;
        let sent: i64 = conn.query_row(
            "SELECT count(*) FROM commands WHERE site = ?1 AND device = ?2 AND kind = 'set_calendar'",
            params![site, device],
            |r| r.get(0),
        )?;
        let cmd_id = format!("{KIND}-{site}-{device}-{}-{}", pushed.version, sent + 1);
        conn.execute(
            "INSERT INTO commands (cmd_id, site, device, kind, args, created_ms, expires_ms, by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'hub')",
            params![
                cmd_id,
                site,
                device,
                KIND,
                args.to_string(),
                now_ms,
                now_ms + TTL_MS
            ],
        )?;
        conn.execute(
            "INSERT INTO box_calendars (site, device, version, cmd_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (site, device) DO UPDATE SET version = ?3, cmd_id = ?4, at_ms = ?5",
            params![site, device, pushed.version, cmd_id, now_ms],
        )?;
        ids.push(cmd_id);
    }
    Ok(ids)
}

/// The version of the calendar each box was last sent, and whether it answered: `(site, device,
/// version, state)` with state `waiting`, `done` or `failed`.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String, &'static str)>> {
    conn.prepare_cached(
        "SELECT b.site, b.device, b.version, c.result_ms, c.result_ok FROM box_calendars b
         LEFT JOIN commands c ON c.cmd_id = b.cmd_id ORDER BY b.site, b.device",
    )?
    .query_map([], |r| {
        let answered: Option<i64> = r.get(3)?;
        let ok: Option<bool> = r.get(4)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            match (answered, ok) {
                (Some(_), Some(true)) => "done",
                (Some(_), _) => "failed",
                (None, _) => "waiting",
            },
        ))
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Writer;

    fn pushed(conn: &Connection) -> PushedCalendar {
        current(conn, 2026, 1).unwrap()
    }

    fn waiting(conn: &Connection) -> Vec<(String, String)> {
        conn.prepare(
            "SELECT device, cmd_id FROM commands WHERE kind = 'set_calendar' AND result_ms IS NULL ORDER BY device",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[test]
    fn every_unrevoked_box_gets_the_newest_calendar_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let w = Writer::open(&path).unwrap();
        let conn = w.conn();
        for device in ["box-01", "box-02", "box-03"] {
            let key = sunlight_protocol::DeviceKey::generate().unwrap().public();
            crate::store::add_device(
                &path,
                &sunlight_protocol::SiteId::new("suixian-shangshi").unwrap(),
                &sunlight_protocol::DeviceId::new(device).unwrap(),
                &key,
            )
            .unwrap();
        }
        assert!(
            crate::store::revoke_device(&path, "suixian-shangshi", "box-03", "admin", "lost")
                .unwrap()
        );
        let first = pushed(conn);
        let ids = sync(conn, &first, 1_000).unwrap();
        assert_eq!(ids.len(), 2, "the revoked box is sent nothing: {ids:?}");
        assert!(sync(conn, &first, 2_000).unwrap().is_empty(), "sent once");
        // An override: a new version, the unanswered one superseded.
        let d = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        crate::store::settings::set_overrides(conn, &[d], false, "防汛", "admin").unwrap();
        let second = pushed(conn);
        assert_ne!(second.version, first.version);
        let again = sync(conn, &second, 3_000).unwrap();
        assert_eq!(again.len(), 2);
        let left = waiting(conn);
        assert_eq!(
            left.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
            again
        );
        let superseded: String = conn
            .query_row(
                "SELECT result_detail FROM commands WHERE cmd_id = ?1",
                [&ids[0]],
                |r| r.get(0),
            )
            .unwrap();
        assert!(superseded.starts_with(SUPERSEDED), "{superseded}");
        // Answered: nothing more; expired unanswered: recorded again.
        crate::store::commands::apply_result(
            conn,
            "suixian-shangshi",
            "box-01",
            &serde_json::json!({"cmd_id": again[0], "ok": true, "detail": "stored"}).to_string(),
        )
        .unwrap();
        let late = 3_000 + TTL_MS + 1;
        let renewed = sync(conn, &second, late).unwrap();
        assert_eq!(renewed.len(), 1, "{renewed:?}");
        assert!(renewed[0].contains("box-02"));
        let states = list(conn).unwrap();
        assert_eq!(
            states
                .iter()
                .map(|s| (s.1.as_str(), s.3))
                .collect::<Vec<_>>(),
            [("box-01", "done"), ("box-02", "waiting")]
        );
    }
}
