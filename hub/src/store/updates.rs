//! Agent updates at the hub (docs/updates.md): the published releases, and each box's progress
//! through a rollout — sent, installed (restarting), healthy, rolled back (with the box's reason)
//! or failed (refused archive, download error, ...). A rollout sends `update` commands through
//! the command path ([`super::commands`]); the box's `cmd_result` events move its row.
//!
//! Waves: every box has a fixed place in `0..10000` (from the SHA-256 of `site/device`), and a
//! rollout to P % takes the boxes whose place is below `P × 100`, so the boxes of a 10 % wave are
//! all in the 50 % wave of the same release (and the same boxes go first in every release).

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS update_releases (
    version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    published_ms INTEGER NOT NULL, by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS update_targets (
    version TEXT NOT NULL, site TEXT NOT NULL, device TEXT NOT NULL, cmd_id TEXT NOT NULL,
    state TEXT NOT NULL, detail TEXT, from_version TEXT, sent_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, by TEXT NOT NULL,
    PRIMARY KEY (version, site, device));
CREATE INDEX IF NOT EXISTS update_targets_cmd ON update_targets (cmd_id);
";

/// How long an `update` command waits for its box (boxes offline longer get it in a later rollout).
pub const COMMAND_TTL_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub version: String,
    pub sha256: String,
    pub size: i64,
    pub published_at: String,
    pub by: String,
}

/// Records a published release; `false` when the version exists already (with another archive).
pub fn add_release(
    tx: &Transaction<'_>,
    version: &str,
    sha256: &str,
    size: u64,
    by: &str,
) -> rusqlite::Result<bool> {
    if let Some(existing) = release(tx, version)? {
        return Ok(existing.sha256 == sha256);
    }
    tx.execute(
        "INSERT INTO update_releases (version, sha256, size, published_ms, by) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![version, sha256, size as i64, super::now_ms(), by],
    )?;
    super::audit(tx, by, "update.publish", version, sha256)?;
    Ok(true)
}

pub fn release(conn: &Connection, version: &str) -> rusqlite::Result<Option<Release>> {
    conn.query_row(
        "SELECT version, sha256, size, published_ms, by FROM update_releases WHERE version = ?1",
        [version],
        |r| {
            Ok(Release {
                version: r.get(0)?,
                sha256: r.get(1)?,
                size: r.get(2)?,
                published_at: super::fmt_ms(r.get(3)?),
                by: r.get(4)?,
            })
        },
    )
    .optional()
}

pub fn releases(conn: &Connection) -> rusqlite::Result<Vec<Release>> {
    conn.prepare_cached(
        "SELECT version, sha256, size, published_ms, by FROM update_releases ORDER BY published_ms DESC",
    )?
    .query_map([], |r| {
        Ok(Release {
            version: r.get(0)?,
            sha256: r.get(1)?,
            size: r.get(2)?,
            published_at: super::fmt_ms(r.get(3)?),
            by: r.get(4)?,
        })
    })?
    .collect()
}

/// A box's fixed place in `0..10000` for waves.
pub fn wave_place(site: &str, device: &str) -> u32 {
    let digest = Sha256::digest(format!("{site}/{device}").as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 10_000
}

/// Which boxes a rollout takes.
#[derive(Debug, Clone)]
pub enum Wave {
    /// 1 to 100 % of the registered boxes, by their fixed place.
    Percent(u32),
    /// Every box of these sites.
    Sites(Vec<String>),
}

/// What a rollout did.
#[derive(Debug, Default, Serialize)]
pub struct Rollout {
    /// `site/device` of the boxes sent the command now.
    pub sent: Vec<String>,
    /// `site/device: why` of the chosen boxes that were not sent it.
    pub skipped: Vec<String>,
}

/// Sends `update` to the boxes of the wave: not revoked, not already on `version`, and not
/// already sent this release (a box listed by `--sites` is sent it again if it failed or rolled
/// back before).
/// `downgrade`: the version may be older than what boxes run (a withdrawn release); boxes refuse
/// an older version without it.
pub fn rollout(
    tx: &Transaction<'_>,
    version: &str,
    wave: &Wave,
    by: &str,
    downgrade: bool,
) -> rusqlite::Result<Result<Rollout, String>> {
    let Some(release) = release(tx, version)? else {
        return Ok(Err(format!(
            "version {version} is not published at this hub (sunlight-hub update publish)"
        )));
    };
    let boxes: Vec<(String, String, Option<String>, bool)> = tx
        .prepare_cached(
            "SELECT site, device, version, revoked_ms IS NOT NULL FROM devices ORDER BY site, device",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if let Wave::Sites(sites) = wave {
        for site in sites {
            if !boxes.iter().any(|(s, ..)| s == site) {
                return Ok(Err(format!("no box is registered for site {site:?}")));
            }
        }
    }
    let args = serde_json::json!({
        "version": version,
        "url": archive_path(version),
        "sha256": release.sha256,
        "size": release.size,
        "downgrade": downgrade,
    });
    let mut out = Rollout::default();
    for (site, device, running, revoked) in boxes {
        let chosen = match wave {
            Wave::Percent(p) => wave_place(&site, &device) < p * 100,
            Wave::Sites(sites) => sites.contains(&site),
        };
        if !chosen {
            continue;
        }
        let name = format!("{site}/{device}");
        if revoked {
            out.skipped.push(format!("{name}: revoked"));
            continue;
        }
        if running.as_deref() == Some(version) {
            out.skipped.push(format!("{name}: already runs {version}"));
            continue;
        }
        let earlier: Option<String> = tx
            .query_row(
                "SELECT state FROM update_targets WHERE version = ?1 AND site = ?2 AND device = ?3",
                params![version, site, device],
                |r| r.get(0),
            )
            .optional()?;
        let retry = matches!(wave, Wave::Sites(_))
            && matches!(earlier.as_deref(), Some("failed" | "rolled_back"));
        if let Some(state) = earlier.filter(|_| !retry) {
            out.skipped.push(format!("{name}: {state} already"));
            continue;
        }
        let ids = super::commands::create(
            tx,
            &site,
            Some(&device),
            "update",
            &args,
            COMMAND_TTL_MS,
            by,
        )?;
        let Some(cmd_id) = ids.into_iter().next() else {
            continue;
        };
        let now = super::now_ms();
        tx.execute(
            "INSERT INTO update_targets (version, site, device, cmd_id, state, detail, from_version, sent_ms, updated_ms, by)
             VALUES (?1, ?2, ?3, ?4, 'sent', NULL, ?5, ?6, ?6, ?7)
             ON CONFLICT (version, site, device) DO UPDATE SET cmd_id = ?4, state = 'sent', detail = NULL,
                 from_version = ?5, sent_ms = ?6, updated_ms = ?6, by = ?7",
            params![version, site, device, cmd_id, running, now, by],
        )?;
        out.sent.push(name);
    }
    let what = match wave {
        Wave::Percent(p) => format!("{p}%"),
        Wave::Sites(s) => s.join(","),
    };
    super::audit(
        tx,
        by,
        "update.rollout",
        version,
        &format!(
            "{what}: {} sent, {} skipped",
            out.sent.len(),
            out.skipped.len()
        ),
    )?;
    Ok(Ok(out))
}

/// Where boxes download a release (relative to the hub's API address).
pub fn archive_path(version: &str) -> String {
    format!("/api/v1/box/updates/{version}/archive")
}

/// Moves a box's row on its `cmd_result` for an update command. The box answers `update:
/// "installed"` before it restarts into the new binary, then once more (`final: true`) with
/// `"healthy"` or `"rolled_back"`; any other `ok: false` is a failure before anything was replaced.
pub fn apply_result(
    tx: &Connection,
    site: &str,
    device: &str,
    v: &serde_json::Value,
) -> rusqlite::Result<()> {
    let Some(cmd_id) = v["cmd_id"].as_str() else {
        return Ok(());
    };
    let ok = v["ok"].as_bool().unwrap_or(false);
    let state = match (v["update"].as_str(), ok) {
        (Some("installed"), true) => "installed",
        (Some("healthy"), true) => "healthy",
        (Some("rolled_back"), _) => "rolled_back",
        (_, true) => "healthy",
        (_, false) => "failed",
    };
    let detail = v["detail"].as_str().unwrap_or("");
    // A late "installed" never overwrites the final word.
    let changed = tx.execute(
        "UPDATE update_targets SET state = ?4, detail = ?5, updated_ms = ?6
         WHERE cmd_id = ?1 AND site = ?2 AND device = ?3
           AND NOT (?4 = 'installed' AND state IN ('healthy', 'rolled_back', 'failed'))",
        params![cmd_id, site, device, state, detail, super::now_ms()],
    )?;
    if changed > 0 && state == "rolled_back" {
        tx.execute(
            "INSERT INTO alarms (at_ms, site, device, kind, detail) VALUES (?1, ?2, ?3, 'update_rolled_back', ?4)",
            params![super::now_ms(), site, device, format!("更新已回滚 / update rolled back: {detail}")],
        )?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub version: String,
    pub site: String,
    pub device: String,
    /// sent | installed | healthy | rolled_back | failed | expired
    pub state: String,
    pub detail: Option<String>,
    pub from_version: Option<String>,
    /// What the box reports running now.
    pub running: Option<String>,
    pub cmd_id: String,
    pub sent_at: String,
    pub updated_at: String,
}

/// Every box's progress, newest release first (`version`: one release).
pub fn targets(
    conn: &Connection,
    version: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Vec<TargetView>> {
    conn.prepare_cached(
        "SELECT t.version, t.site, t.device, t.state, t.detail, t.from_version, d.version, t.cmd_id,
                t.sent_ms, t.updated_ms, c.expires_ms
         FROM update_targets t
         LEFT JOIN devices d ON d.site = t.site AND d.device = t.device
         LEFT JOIN commands c ON c.cmd_id = t.cmd_id
         WHERE (?1 IS NULL OR t.version = ?1)
         ORDER BY t.sent_ms DESC, t.site, t.device LIMIT 1000",
    )?
    .query_map([version], |r| {
        let state: String = r.get(3)?;
        let expires: Option<i64> = r.get(10)?;
        let expired = state == "sent" && expires.is_some_and(|e| e <= now_ms);
        Ok(TargetView {
            version: r.get(0)?,
            site: r.get(1)?,
            device: r.get(2)?,
            state: if expired { "expired".into() } else { state },
            detail: r.get(4)?,
            from_version: r.get(5)?,
            running: r.get(6)?,
            cmd_id: r.get(7)?,
            sent_at: super::fmt_ms(r.get(8)?),
            updated_at: super::fmt_ms(r.get(9)?),
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_nest_and_spread() {
        let boxes: Vec<(String, String)> = (0..400)
            .map(|i| (format!("site-{}", i / 4), format!("box-{:02}", i % 4)))
            .collect();
        let take = |p: u32| -> Vec<&(String, String)> {
            boxes
                .iter()
                .filter(|(s, d)| wave_place(s, d) < p * 100)
                .collect()
        };
        let (ten, fifty, all) = (take(10), take(50), take(100));
        assert!(ten.iter().all(|b| fifty.contains(b)), "10% inside 50%");
        assert_eq!(all.len(), 400);
        // Roughly the share asked for (400 boxes: a wide margin).
        assert!((20..=60).contains(&ten.len()), "{}", ten.len());
        assert!((160..=240).contains(&fifty.len()), "{}", fifty.len());
        assert_eq!(wave_place("a", "b"), wave_place("a", "b"));
    }
}
