//! Fleet oversight (OVERSIGHT.md §6): the boxes themselves.
//!
//! Every `health` event leaves a sample (at the box's time of the event, so samples that arrive
//! together after an outage still draw the backlog as it was). A watcher looks at the fleet every
//! minute and keeps the set of open *conditions* — a box offline longer than the threshold in
//! office hours, a disk more than 90% full, a clock more than 2 minutes off, a backlog growing for
//! an hour. A condition is raised once when it starts (an alarm row, and a message to the
//! technicians in `[[contacts]]`) and closed when it ends; it is raised again only if it comes back.
//! Alarms a box raises itself (a camera failing three captures in a row, snapshots lost to the
//! disk quota, a camera refusing its password) arrive in the `alarms` field of its health events
//! and are recorded as alarms of that box as they arrive.

use crate::config::{FleetConfig, HubConfig, Role};
use crate::oversight::attendance::Office;
use crate::oversight::calendar::Calendar;
use crate::store::notices::{self, Notice};
use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS health_samples (
    device_id INTEGER NOT NULL, at_ms INTEGER NOT NULL, backlog_events INTEGER,
    disk_free INTEGER, disk_total INTEGER, clock_offset_ms INTEGER);
CREATE INDEX IF NOT EXISTS health_samples_by_device ON health_samples (device_id, at_ms);
CREATE TABLE IF NOT EXISTS fleet_conditions (
    site TEXT NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, since_ms INTEGER NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (site, device, kind));
";

/// Samples older than this are pruned by the watcher.
const KEEP_SAMPLES_DAYS: i64 = 30;

/// Records a health event's sample, and the alarms the box raised in it.
pub fn record_health(
    conn: &Connection,
    device_id: i64,
    site: &str,
    device: &str,
    at: &str,
    body: &str,
) -> rusqlite::Result<()> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let at_ms = DateTime::parse_from_rfc3339(at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| crate::store::now_ms());
    conn.prepare_cached(
        "INSERT INTO health_samples (device_id, at_ms, backlog_events, disk_free, disk_total, clock_offset_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        device_id,
        at_ms,
        v["backlog_events"].as_i64(),
        v["disk_free"].as_i64(),
        v["disk_total"].as_i64(),
        v["clock_offset_ms"].as_i64(),
    ])?;
    if let Some(alarms) = v["alarms"].as_array() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO alarms (at_ms, site, device, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for a in alarms {
            let kind = a["what"].as_str().unwrap_or("box_alarm");
            let mut detail = a["detail"].as_str().unwrap_or_default().to_owned();
            if let Some(cam) = a["camera_id"].as_str() {
                detail = format!("[{cam}] {detail}");
            }
            // Kinds are the box's own words; keep them short and printable.
            let kind: String = kind.chars().filter(|c| !c.is_control()).take(64).collect();
            insert.execute(params![at_ms, site, device, kind, detail])?;
        }
    }
    Ok(())
}

/// An open problem of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub site: String,
    pub device: String,
    /// `offline`, `disk_full`, `clock_skew`, `backlog_growing`.
    pub kind: String,
    pub detail: String,
}

/// id, site, device, last seen, clock offset.
type DeviceRow = (i64, String, String, Option<i64>, Option<i64>);

struct Sample {
    at_ms: i64,
    backlog: Option<i64>,
}

/// True when `samples` (oldest first) show a backlog that grew over at least `window_ms` and never
/// shrank: the box is not keeping up (or not syncing at all while taking events).
pub fn backlog_growing(samples: &[(i64, i64)], window_ms: i64) -> bool {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return false;
    };
    samples.len() >= 3
        && last.0 - first.0 >= window_ms * 5 / 6
        && last.1 > first.1
        && samples.windows(2).all(|w| w[1].1 >= w[0].1)
}

/// Whether `now` is within office hours of a working day. A day the calendar cannot answer (a
/// year before 2025 without data) has no office hours: no box is called offline on a guess.
pub fn in_office_hours(calendar: &Calendar, office: &Office, now: DateTime<FixedOffset>) -> bool {
    let day: NaiveDate = now.date_naive();
    if !matches!(calendar.is_workday(day), Ok(true)) {
        return false;
    }
    let t = now.time().with_nanosecond(0).unwrap_or(now.time());
    office
        .schedule_on(day)
        .is_some_and(|s| s.segments.iter().any(|g| g.start <= t && t < g.end))
}

/// Adds the provisional note to the offline conditions: they count office hours of a day the
/// calendar answers provisionally (decision 0014).
pub fn mark_provisional(conditions: &mut [Condition], year: i32) {
    for c in conditions.iter_mut().filter(|c| c.kind == "offline") {
        c.detail.push_str(&format!(
            "（{}）",
            crate::oversight::calendar::provisional_note_zh(year)
        ));
    }
}

/// The conditions of every registered box at `now_ms`. `office_hours` says whether offline boxes
/// count now; outside office hours an offline box keeps its open condition but no new one opens.
pub fn evaluate(
    conn: &Connection,
    rules: &FleetConfig,
    now_ms: i64,
    office_hours: bool,
) -> rusqlite::Result<Vec<Condition>> {
    let mut out = Vec::new();
    let devices: Vec<DeviceRow> = conn
        .prepare_cached(
            "SELECT id, site, device, last_seen_ms, clock_offset_ms FROM devices WHERE revoked_ms IS NULL ORDER BY site, device",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let open_offline: std::collections::HashSet<(String, String)> = conn
        .prepare_cached("SELECT site, device FROM fleet_conditions WHERE kind = 'offline'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let window_ms = i64::from(rules.backlog_growing_min) * 60_000;
    for (id, site, device, last_seen, offset) in devices {
        let cond = |kind: &str, detail: String| Condition {
            site: site.clone(),
            device: device.clone(),
            kind: kind.to_owned(),
            detail,
        };
        // A box never seen is not installed yet: no alarm.
        if let Some(seen) = last_seen {
            let silent_min = (now_ms - seen) / 60_000;
            let offline = silent_min >= i64::from(rules.offline_after_min);
            if offline && (office_hours || open_offline.contains(&(site.clone(), device.clone()))) {
                out.push(cond(
                    "offline",
                    format!(
                        "no contact for {silent_min} min (threshold {} min in office hours)",
                        rules.offline_after_min
                    ),
                ));
            }
        }
        if let Some(o) = offset
            && o.abs() > i64::from(rules.clock_skew_secs) * 1000
        {
            out.push(cond(
                "clock_skew",
                format!(
                    "box clock off by {:.0} s (threshold {} s): check its NTP",
                    o as f64 / 1000.0,
                    rules.clock_skew_secs
                ),
            ));
        }
        let latest: Option<(Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT disk_free, disk_total FROM health_samples WHERE device_id = ?1 ORDER BY at_ms DESC LIMIT 1",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((Some(free), Some(total))) = latest
            && total > 0
        {
            let used = 100.0 * (1.0 - free as f64 / total as f64);
            if used > f64::from(rules.disk_used_percent) {
                out.push(cond(
                    "disk_full",
                    format!(
                        "disk {used:.0}% used, {} MB free (threshold {}%)",
                        free / 1_000_000,
                        rules.disk_used_percent
                    ),
                ));
            }
        }
        let samples: Vec<Sample> = conn
            .prepare_cached(
                "SELECT at_ms, backlog_events FROM health_samples WHERE device_id = ?1 AND at_ms >= ?2 ORDER BY at_ms",
            )?
            .query_map(params![id, now_ms - window_ms], |r| {
                Ok(Sample {
                    at_ms: r.get(0)?,
                    backlog: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let points: Vec<(i64, i64)> = samples
            .iter()
            .filter_map(|s| s.backlog.map(|b| (s.at_ms, b)))
            .collect();
        if backlog_growing(&points, window_ms) {
            let (first, last) = (points[0].1, points[points.len() - 1].1);
            out.push(cond(
                "backlog_growing",
                format!(
                    "backlog grew from {first} to {last} events over {} min without shrinking",
                    rules.backlog_growing_min
                ),
            ));
        }
    }
    Ok(out)
}

/// Opens new conditions (alarm + technicians told) and closes those that ended. Returns the ones
/// opened now.
pub fn apply(
    conn: &Connection,
    config: &HubConfig,
    now: Vec<Condition>,
    now_ms: i64,
    today: NaiveDate,
) -> rusqlite::Result<Vec<Condition>> {
    let open: Vec<(String, String, String)> = conn
        .prepare_cached("SELECT site, device, kind FROM fleet_conditions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let key = |c: &Condition| (c.site.clone(), c.device.clone(), c.kind.clone());
    let current: std::collections::HashSet<_> = now.iter().map(key).collect();
    for (site, device, kind) in &open {
        if !current.contains(&(site.clone(), device.clone(), kind.clone())) {
            conn.execute(
                "DELETE FROM fleet_conditions WHERE site = ?1 AND device = ?2 AND kind = ?3",
                params![site, device, kind],
            )?;
        }
    }
    let open: std::collections::HashSet<_> = open.into_iter().collect();
    let mut opened = Vec::new();
    for c in now {
        if open.contains(&key(&c)) {
            conn.execute(
                "UPDATE fleet_conditions SET detail = ?4 WHERE site = ?1 AND device = ?2 AND kind = ?3",
                params![c.site, c.device, c.kind, c.detail],
            )?;
            continue;
        }
        conn.execute(
            "INSERT INTO fleet_conditions (site, device, kind, since_ms, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.site, c.device, c.kind, now_ms, c.detail],
        )?;
        conn.execute(
            "INSERT INTO alarms (at_ms, site, device, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_ms, c.site, c.device, c.kind, c.detail],
        )?;
        notices::enqueue(
            conn,
            config,
            &Notice {
                key: format!("fleet:{}:{}:{}:{now_ms}", c.site, c.device, c.kind),
                day: today,
                site: &c.site,
                unit: "",
                staff_id: "",
                roles: &[Role::Technician],
                subject: format!("设备告警 {} {}：{}", c.site, c.device, kind_zh(&c.kind)),
                text: format!("{} {} {}：{}", c.site, c.device, kind_zh(&c.kind), c.detail),
            },
        )?;
        opened.push(c);
    }
    conn.execute(
        "DELETE FROM health_samples WHERE at_ms < ?1",
        [now_ms - KEEP_SAMPLES_DAYS * 86_400_000],
    )?;
    Ok(opened)
}

/// A condition's name for people.
pub fn kind_zh(kind: &str) -> &str {
    match kind {
        "offline" => "离线",
        "disk_full" => "磁盘将满",
        "clock_skew" => "时钟偏差",
        "backlog_growing" => "积压持续增长",
        other => other,
    }
}

/// The open conditions (of one site, or all), oldest first.
pub fn open_conditions(
    conn: &Connection,
    site: Option<&str>,
) -> rusqlite::Result<Vec<(Condition, i64)>> {
    conn.prepare_cached(
        "SELECT site, device, kind, detail, since_ms FROM fleet_conditions
         WHERE (?1 IS NULL OR site = ?1) ORDER BY since_ms",
    )?
    .query_map([site], |r| {
        Ok((
            Condition {
                site: r.get(0)?,
                device: r.get(1)?,
                kind: r.get(2)?,
                detail: r.get(3)?,
            },
            r.get(4)?,
        ))
    })?
    .collect()
}

/// A box's backlog over the last `hours`: (time ms, events), oldest first, at most `max` points
/// (evenly thinned).
pub fn backlog_trend(
    conn: &Connection,
    site: &str,
    device: &str,
    since_ms: i64,
    max: usize,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let all: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT h.at_ms, h.backlog_events FROM health_samples h JOIN devices d ON d.id = h.device_id
             WHERE d.site = ?1 AND d.device = ?2 AND h.at_ms >= ?3 AND h.backlog_events IS NOT NULL
             ORDER BY h.at_ms",
        )?
        .query_map(params![site, device, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if all.len() <= max || max < 2 {
        return Ok(all);
    }
    let step = (all.len() - 1) as f64 / (max - 1) as f64;
    Ok((0..max)
        .map(|i| all[((i as f64 * step).round() as usize).min(all.len() - 1)])
        .collect())
}

/// One look at the fleet: evaluate and apply in one transaction.
pub fn watch_once(
    writer: &mut crate::store::Writer,
    sup: &crate::supervise::Supervision,
    now: DateTime<FixedOffset>,
) -> Result<Vec<Condition>, crate::Error> {
    let calendar = sup.calendar();
    let office = in_office_hours(&calendar, &sup.office(), now);
    let now_ms = now.timestamp_millis();
    let today = now.date_naive();
    // Office hours on a provisional day: the offline alarms of today say what they rest on.
    let provisional = calendar.provisional_in(today, today);
    let config = sup.config().clone();
    writer.run(move |tx| {
        let mut conditions = evaluate(tx, &config.fleet, now_ms, office)?;
        if let Some(year) = provisional {
            mark_provisional(&mut conditions, year);
        }
        apply(tx, &config, conditions, now_ms, today)
    })
}

/// Starts the watcher thread: one look a minute.
pub fn spawn(
    mut writer: crate::store::Writer,
    sup: crate::supervise::Supervision,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fleet-watch".into())
        .spawn(move || {
            loop {
                let now = chrono::Utc::now().with_timezone(&crate::clock::cst());
                match watch_once(&mut writer, &sup, now) {
                    Ok(opened) => {
                        for c in opened {
                            tracing::warn!(site = %c.site, device = %c.device, kind = %c.kind, "{}", c.detail);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "fleet watch failed; trying again in a minute"),
                }
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_grows_only_when_it_never_shrinks_over_the_window() {
        let hour = 3_600_000;
        let rising: Vec<(i64, i64)> = (0..7).map(|i| (i * 600_000, 100 + i * 50)).collect();
        assert!(backlog_growing(&rising, hour));
        let mut dipped = rising.clone();
        dipped[3].1 = 10;
        assert!(!backlog_growing(&dipped, hour));
        // Only twenty minutes of samples: too early to say.
        assert!(!backlog_growing(&rising[..3], hour));
        let flat: Vec<(i64, i64)> = (0..7).map(|i| (i * 600_000, 100)).collect();
        assert!(!backlog_growing(&flat, hour));
        assert!(!backlog_growing(&[], hour));
    }
}
