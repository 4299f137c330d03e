//! Attendance at the hub (OVERSIGHT.md §3): the roster, punches and duty registrations as they
//! arrive, make-up punch requests (补卡), patrol sign-ins and confirmed violations. Verdicts are not
//! stored: they are computed from these facts by the pure engine whenever they are asked for, so a
//! punch synced hours late counts at its own time the moment it is stored.

use crate::config::HubConfig;
use crate::oversight::attendance::{Office, Segment, Verdict, judge_segment};
use crate::oversight::calendar::{Calendar, DayUnit};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use sunlight_protocol::event::bodies::{Duty, DutyType, Patrol, Punch};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS staff (
    site TEXT NOT NULL, staff_id TEXT NOT NULL, name TEXT NOT NULL, unit TEXT NOT NULL,
    window TEXT NOT NULL, role TEXT NOT NULL, pin_hash TEXT, card_no TEXT, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (site, staff_id));
CREATE TABLE IF NOT EXISTS punches (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, staff_id TEXT NOT NULL, day TEXT NOT NULL,
    time TEXT NOT NULL, at TEXT NOT NULL, direction TEXT, method TEXT, source TEXT,
    terminal_time TEXT, box_time TEXT, clock_offset_ms INTEGER, flags TEXT, received_ms INTEGER NOT NULL,
    makeup_id INTEGER);
CREATE INDEX IF NOT EXISTS punches_by_day ON punches (site, day);
CREATE INDEX IF NOT EXISTS punches_by_staff ON punches (site, staff_id, day);
CREATE TABLE IF NOT EXISTS duties (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, staff_id TEXT NOT NULL, duty_type TEXT NOT NULL,
    leave_type TEXT, from_at TEXT NOT NULL, to_at TEXT NOT NULL, note_ref TEXT, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS duties_by_staff ON duties (site, staff_id, from_at);
CREATE TABLE IF NOT EXISTS makeups (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, staff_id TEXT NOT NULL, day TEXT NOT NULL,
    time TEXT NOT NULL, reason TEXT NOT NULL, requested_day TEXT NOT NULL, requested_by TEXT NOT NULL,
    status TEXT NOT NULL, decided_by TEXT, decided_day TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS makeups_by_staff ON makeups (site, staff_id, day);
CREATE TABLE IF NOT EXISTS patrols (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, leader_id TEXT NOT NULL, unit TEXT NOT NULL,
    at TEXT NOT NULL, day TEXT NOT NULL, findings TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS patrols_by_day ON patrols (site, day);
CREATE TABLE IF NOT EXISTS violations (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, staff_id TEXT NOT NULL, unit TEXT NOT NULL,
    day TEXT NOT NULL, what TEXT NOT NULL, months INTEGER NOT NULL, by TEXT NOT NULL, at_ms INTEGER NOT NULL);
-- A change counter per site and month of the facts a site's attendance is judged from, so that a
-- stored summary of a month knows whether it is still current (report::summary). Month '*' counts
-- the changes that may touch any month: the roster, leave and duties, violations. Kept by the
-- triggers of `change_triggers`.
CREATE TABLE IF NOT EXISTS attendance_changes (
    site TEXT NOT NULL, month TEXT NOT NULL, gen INTEGER NOT NULL, PRIMARY KEY (site, month))
    WITHOUT ROWID;
";

/// The triggers that count every insert, update and delete of the attendance facts in
/// `attendance_changes`: by the row's month for the dated facts, as '*' for the others. Updates
/// count only when they change what judging reads (not a punch's photo, nor the roster's hashes).
/// Punch inserts are not counted here: they are ingest's hot path, and a summary keeps the number
/// of its site's punches in its days instead ([`punch_count`]), which every insert changes.
pub fn change_triggers() -> String {
    let roster =
        "OLD.site IS NOT NEW.site OR OLD.staff_id IS NOT NEW.staff_id OR OLD.name IS NOT NEW.name
        OR OLD.unit IS NOT NEW.unit OR OLD.window IS NOT NEW.window OR OLD.role IS NOT NEW.role";
    let punch =
        "OLD.site IS NOT NEW.site OR OLD.staff_id IS NOT NEW.staff_id OR OLD.day IS NOT NEW.day
        OR OLD.time IS NOT NEW.time";
    let mut sql = String::new();
    for (table, month, when, inserts) in [
        ("punches", "substr(ROW.day, 1, 7)", punch, false),
        ("makeups", "substr(ROW.day, 1, 7)", "", true),
        ("patrols", "substr(ROW.day, 1, 7)", "", true),
        ("duties", "'*'", "", true),
        ("violations", "'*'", "", true),
        ("staff", "'*'", roster, true),
    ] {
        for (event, rows) in [
            ("INSERT", &["NEW"][..]),
            ("UPDATE", &["OLD", "NEW"][..]),
            ("DELETE", &["OLD"][..]),
        ] {
            if event == "INSERT" && !inserts {
                continue;
            }
            let when = if event == "UPDATE" && !when.is_empty() {
                format!(" WHEN {when}")
            } else {
                String::new()
            };
            sql.push_str(&format!(
                "CREATE TRIGGER IF NOT EXISTS {table}_{}_counted AFTER {event} ON {table}{when} BEGIN\n",
                event.to_lowercase()
            ));
            for row in rows {
                sql.push_str(&format!(
                    "INSERT INTO attendance_changes VALUES ({row}.site, {}, 1)
                     ON CONFLICT (site, month) DO UPDATE SET gen = gen + 1;\n",
                    month.replace("ROW", row)
                ));
            }
            sql.push_str("END;\n");
        }
    }
    sql
}

/// How many punches `site` has on the days `first..=last` (read from the `(site, day)` index).
pub fn punch_count(
    conn: &Connection,
    site: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM punches WHERE site = ?1 AND day BETWEEN ?2 AND ?3")?
        .query_row(params![site, first.to_string(), last.to_string()], |r| {
            r.get(0)
        })
}

/// The change counters of the months `first..=last` and '*' per site (`site`, or every site), as
/// `attendance_changes` holds them now: a summary made when they read the same is current.
pub fn change_marks(
    conn: &Connection,
    site: Option<&str>,
    first: NaiveDate,
    last: NaiveDate,
) -> rusqlite::Result<BTreeMap<String, Vec<(String, i64)>>> {
    let mut marks: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT site, month, gen FROM attendance_changes
         WHERE (?1 IS NULL OR site = ?1) AND (month = '*' OR month BETWEEN ?2 AND ?3)
         ORDER BY site, month",
    )?;
    let mut rows = stmt.query(params![
        site,
        first.format("%Y-%m").to_string(),
        last.format("%Y-%m").to_string()
    ])?;
    while let Some(r) = rows.next()? {
        marks
            .entry(r.get(0)?)
            .or_default()
            .push((r.get(1)?, r.get(2)?));
    }
    Ok(marks)
}

// ---------------------------------------------------------------------------------------------
// Roster

/// One clerk in the roster file (`sunlight-hub roster import FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffEntry {
    pub site: String,
    pub staff_id: String,
    pub name: String,
    pub unit: String,
    pub window: String,
    /// "A" holds the window; "B" is its substitute (AB角).
    pub role: String,
    /// The kiosk PIN, hashed with argon2 on import and never stored in clear.
    #[serde(default)]
    pub pin: Option<String>,
    /// The number a USB card reader types for this clerk's card.
    #[serde(default)]
    pub card_no: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    staff: Vec<StaffEntry>,
}

/// The shortest and longest kiosk PIN, in digits (issue 14, item 8).
pub const MIN_PIN_DIGITS: usize = 6;
pub const MAX_PIN_DIGITS: usize = 12;

/// Parses and checks a roster file.
pub fn parse_roster(text: &str) -> Result<Vec<StaffEntry>, String> {
    let file: RosterFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut seen = BTreeSet::new();
    for s in &file.staff {
        if s.staff_id.trim().is_empty() || s.site.trim().is_empty() {
            return Err("every staff entry needs site and staff_id".into());
        }
        if !seen.insert((&s.site, &s.staff_id)) {
            return Err(format!("{}/{} appears twice", s.site, s.staff_id));
        }
        if s.role != "A" && s.role != "B" {
            return Err(format!(
                "{}/{}: role {:?} must be \"A\" or \"B\"",
                s.site, s.staff_id, s.role
            ));
        }
        if let Some(pin) = &s.pin
            && (!(MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&pin.len())
                || !pin.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "{}/{} ({}): the kiosk PIN must be {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits, not {} \
                 characters{}; give this clerk a longer PIN (a PIN of 4 digits is one of only 10,000)",
                s.site,
                s.staff_id,
                s.name,
                pin.chars().count(),
                if pin.bytes().all(|b| b.is_ascii_digit()) {
                    ""
                } else {
                    " with other signs than digits"
                }
            ));
        }
    }
    Ok(file.staff)
}

/// Hashes a PIN with argon2id and a random salt (PHC string).
pub fn hash_pin(pin: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Adds or replaces roster entries; a PIN given replaces the stored hash, none keeps it.
pub fn upsert_staff(conn: &Connection, staff: &[StaffEntry]) -> Result<usize, String> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO staff (site, staff_id, name, unit, window, role, pin_hash, updated_ms, card_no, pin_digits)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (site, staff_id) DO UPDATE SET name = ?3, unit = ?4, window = ?5, role = ?6,
                 pin_hash = COALESCE(?7, pin_hash), updated_ms = ?8, card_no = COALESCE(?9, card_no),
                 pin_digits = CASE WHEN ?7 IS NULL THEN pin_digits ELSE ?10 END",
        )
        .map_err(|e| e.to_string())?;
    for s in staff {
        let hash = s.pin.as_deref().map(hash_pin).transpose()?;
        stmt.execute(params![
            s.site,
            s.staff_id,
            s.name,
            s.unit,
            s.window,
            s.role,
            hash,
            super::now_ms(),
            s.card_no,
            s.pin.as_ref().map(|p| p.len() as i64)
        ])
        .map_err(|e| e.to_string())?;
    }
    Ok(staff.len())
}

#[derive(Debug, Clone, Serialize)]
pub struct StaffView {
    pub site: String,
    pub staff_id: String,
    pub name: String,
    pub unit: String,
    pub window: String,
    pub role: String,
    /// The argon2 hash the box checks kiosk PINs against (for the roster sent to boxes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_hash: Option<String>,
    /// How many digits the PIN has, known for PINs imported since the length rule; a box refuses a
    /// roster with a PIN shorter than [`MIN_PIN_DIGITS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_digits: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_no: Option<String>,
}

/// The roster of a site (or of all sites), with PIN hashes only when `with_hashes`.
pub fn roster(
    conn: &Connection,
    site: Option<&str>,
    with_hashes: bool,
) -> rusqlite::Result<Vec<StaffView>> {
    conn.prepare_cached(
        "SELECT site, staff_id, name, unit, window, role, pin_hash, card_no, pin_digits FROM staff
         WHERE (?1 IS NULL OR site = ?1) ORDER BY site, unit, window, role, staff_id",
    )?
    .query_map([site], |r| {
        Ok(StaffView {
            site: r.get(0)?,
            staff_id: r.get(1)?,
            name: r.get(2)?,
            unit: r.get(3)?,
            window: r.get(4)?,
            role: r.get(5)?,
            pin_hash: if with_hashes { r.get(6)? } else { None },
            pin_digits: if with_hashes { r.get(8)? } else { None },
            card_no: if with_hashes { r.get(7)? } else { None },
        })
    })?
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Facts from the boxes

/// A local time of the office (UTC+8) from an event time or a duty bound: RFC 3339 (converted to
/// UTC+8), `YYYY-MM-DD HH:MM[:SS]` (already local) or `YYYY-MM-DD` (the start of that day).
pub fn local(text: &str) -> Option<NaiveDateTime> {
    let cst = chrono::FixedOffset::east_opt(8 * 3600)?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&cst).naive_local());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// Stores a punch at its own time, with the box's clock offset as known when it arrived.
pub fn apply_punch(
    conn: &Connection,
    site: &str,
    at: &str,
    body: &str,
    clock_offset_ms: Option<i64>,
) -> rusqlite::Result<()> {
    apply_marked_punch(conn, site, at, body, clock_offset_ms, None)
}

/// [`apply_punch`] for a punch its box may have marked back-dated: the mark is kept with it and
/// shown beside it; the punch counts as any other.
pub fn apply_marked_punch(
    conn: &Connection,
    site: &str,
    at: &str,
    body: &str,
    clock_offset_ms: Option<i64>,
    backdated: Option<&sunlight_protocol::Backdated>,
) -> rusqlite::Result<()> {
    let (Ok(p), Some(t)) = (serde_json::from_str::<Punch>(body), local(at)) else {
        return Ok(());
    };
    let raw: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    conn.prepare_cached(
        "INSERT INTO punches (site, staff_id, day, time, at, direction, method, source, terminal_time, box_time,
                              clock_offset_ms, flags, received_ms, photo, backdated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        site,
        p.staff_id,
        t.date().to_string(),
        t.time().format("%H:%M:%S").to_string(),
        at,
        raw["direction"].as_str(),
        raw["method"].as_str(),
        p.source,
        raw["terminal_time"].as_str(),
        raw["box_time"].as_str(),
        clock_offset_ms,
        raw.get("flags").map(|f| f.to_string()),
        super::now_ms(),
        p.photo
            .as_deref()
            .filter(|s| sunlight_protocol::blob::is_sha256_hex(s)),
        backdated.and_then(|m| serde_json::to_string(m).ok())
    ])?;
    Ok(())
}

pub fn apply_duty(conn: &Connection, site: &str, at: &str, body: &str) -> rusqlite::Result<()> {
    let Ok(d) = serde_json::from_str::<Duty>(body) else {
        return Ok(());
    };
    let (Some(from), Some(to)) = (local(&d.from), local(&d.to)) else {
        tracing::warn!(site, staff_id = %d.staff_id, from = %d.from, to = %d.to, "duty registration with unreadable times: kept as an event, not counted");
        return Ok(());
    };
    // A bare end date covers that whole day.
    let to = if d.to.len() == 10 {
        to.date().and_hms_opt(23, 59, 59).unwrap_or(to)
    } else {
        to
    };
    let kind = match d.duty_type {
        DutyType::Leave => "leave",
        DutyType::OutOfOffice => "out_of_office",
        DutyType::Return => "return",
    };
    conn.execute(
        "INSERT INTO duties (site, staff_id, duty_type, leave_type, from_at, to_at, note_ref, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            site,
            d.staff_id,
            kind,
            d.leave_type,
            from.format("%Y-%m-%d %H:%M:%S").to_string(),
            to.format("%Y-%m-%d %H:%M:%S").to_string(),
            d.note_ref,
            at
        ],
    )?;
    Ok(())
}

pub fn apply_patrol(conn: &Connection, site: &str, at: &str, body: &str) -> rusqlite::Result<()> {
    let (Ok(p), Some(t)) = (serde_json::from_str::<Patrol>(body), local(at)) else {
        return Ok(());
    };
    conn.execute(
        "INSERT INTO patrols (site, leader_id, unit, at, day, findings) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            site,
            p.leader_id,
            p.unit,
            at,
            t.date().to_string(),
            serde_json::Value::Array(p.findings).to_string()
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Make-up punches (补卡)

/// `POST /api/v1/attendance/makeups`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeupRequest {
    pub site: String,
    pub staff_id: String,
    pub day: NaiveDate,
    /// HH:MM, the time the clerk says they were there.
    pub time: String,
    pub reason: String,
    pub by: String,
}

/// `POST /api/v1/attendance/makeups/{id}`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeupDecision {
    pub approve: bool,
    pub by: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Records a make-up punch request, or refuses it: unknown clerk, past the deadline, or the month's
/// quota of approved and pending requests used up.
pub fn request_makeup(
    conn: &Connection,
    config: &HubConfig,
    cal: &Calendar,
    r: &MakeupRequest,
    today: NaiveDate,
) -> Result<MakeupView, RequestError> {
    let time = NaiveTime::parse_from_str(r.time.trim(), "%H:%M")
        .map_err(|_| RequestError::Refused(format!("time {:?} is not HH:MM", r.time)))?;
    if r.reason.trim().is_empty() || r.by.trim().is_empty() {
        return Err(RequestError::Refused(
            "a make-up punch needs a reason and who asks (by)".into(),
        ));
    }
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM staff WHERE site = ?1 AND staff_id = ?2)",
        params![r.site, r.staff_id],
        |row| row.get(0),
    )?;
    if !known {
        return Err(RequestError::Refused(format!(
            "{} is not on the roster of {}",
            r.staff_id, r.site
        )));
    }
    let rules = &config.attendance;
    let deadline = cal
        .add_days(r.day, rules.makeup_within_working_days, DayUnit::Working)
        .map_err(|e| RequestError::Refused(e.to_string()))?;
    if today > deadline || r.day > today {
        return Err(RequestError::Refused(format!(
            "a make-up punch for {} had to be requested by {deadline} ({} working days)",
            r.day, rules.makeup_within_working_days
        )));
    }
    let month = format!("{:04}-{:02}", r.day.year(), r.day.month());
    let used: u32 = conn.query_row(
        "SELECT count(*) FROM makeups WHERE site = ?1 AND staff_id = ?2 AND substr(day, 1, 7) = ?3
         AND status IN ('pending', 'approved')",
        params![r.site, r.staff_id, month],
        |row| row.get(0),
    )?;
    if used >= rules.makeup_quota {
        return Err(RequestError::Refused(format!(
            "{} has used the {} make-up punches of {month}",
            r.staff_id, rules.makeup_quota
        )));
    }
    conn.execute(
        "INSERT INTO makeups (site, staff_id, day, time, reason, requested_day, requested_by, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
        params![
            r.site,
            r.staff_id,
            r.day.to_string(),
            time.format("%H:%M:%S").to_string(),
            r.reason,
            today.to_string(),
            r.by
        ],
    )?;
    let id = conn.last_insert_rowid();
    makeup(conn, id)?.ok_or_else(|| RequestError::NotFound(format!("make-up {id}")))
}

/// Approves or refuses a pending request. An approved one counts as a punch at its time, marked as
/// a make-up; the clerk's own punches (or their absence) stay as they were recorded.
pub fn decide_makeup(
    conn: &Connection,
    id: i64,
    d: &MakeupDecision,
    today: NaiveDate,
) -> Result<MakeupView, RequestError> {
    let m = makeup(conn, id)?.ok_or_else(|| RequestError::NotFound(format!("make-up {id}")))?;
    if m.status != "pending" {
        return Err(RequestError::Refused(format!(
            "make-up {id} was already {}",
            m.status
        )));
    }
    if d.by.trim().is_empty() {
        return Err(RequestError::Refused("`by` must name who decided".into()));
    }
    conn.execute(
        "UPDATE makeups SET status = ?2, decided_by = ?3, decided_day = ?4, note = ?5 WHERE id = ?1",
        params![
            id,
            if d.approve { "approved" } else { "refused" },
            d.by,
            today.to_string(),
            d.note
        ],
    )?;
    makeup(conn, id)?.ok_or_else(|| RequestError::NotFound(format!("make-up {id}")))
}

#[derive(Debug, Clone, Serialize)]
pub struct MakeupView {
    pub id: i64,
    pub site: String,
    pub staff_id: String,
    pub day: String,
    pub time: String,
    pub reason: String,
    pub requested_day: String,
    pub requested_by: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_day: Option<String>,
    pub note: Option<String>,
}

const MAKEUP_COLUMNS: &str = "id, site, staff_id, day, time, reason, requested_day, requested_by, status, decided_by, decided_day, note";

fn makeup_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MakeupView> {
    Ok(MakeupView {
        id: r.get(0)?,
        site: r.get(1)?,
        staff_id: r.get(2)?,
        day: r.get(3)?,
        time: r.get(4)?,
        reason: r.get(5)?,
        requested_day: r.get(6)?,
        requested_by: r.get(7)?,
        status: r.get(8)?,
        decided_by: r.get(9)?,
        decided_day: r.get(10)?,
        note: r.get(11)?,
    })
}

pub fn makeup(conn: &Connection, id: i64) -> rusqlite::Result<Option<MakeupView>> {
    conn.query_row(
        &format!("SELECT {MAKEUP_COLUMNS} FROM makeups WHERE id = ?1"),
        [id],
        makeup_row,
    )
    .optional()
}

pub fn makeups(
    conn: &Connection,
    site: Option<&str>,
    status: Option<&str>,
) -> rusqlite::Result<Vec<MakeupView>> {
    conn.prepare_cached(&format!(
        "SELECT {MAKEUP_COLUMNS} FROM makeups WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR status = ?2)
         ORDER BY id DESC LIMIT 1000"
    ))?
    .query_map(params![site, status], makeup_row)?
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Violations and bundled assessment (捆绑考核)

/// `POST /api/v1/attendance/violations`: a confirmed violation by one clerk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationInput {
    pub site: String,
    pub staff_id: String,
    pub day: NaiveDate,
    pub what: String,
    pub by: String,
    /// Months of deduction for the unit; the configured default when absent (1–12).
    #[serde(default)]
    pub months: Option<u32>,
}

pub fn record_violation(
    conn: &Connection,
    config: &HubConfig,
    v: &ViolationInput,
) -> Result<serde_json::Value, RequestError> {
    let months = v.months.unwrap_or(config.attendance.bundled_months);
    if !(1..=12).contains(&months) {
        return Err(RequestError::Refused("months must be 1 to 12".into()));
    }
    let unit: String = conn
        .query_row(
            "SELECT unit FROM staff WHERE site = ?1 AND staff_id = ?2",
            params![v.site, v.staff_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| {
            RequestError::Refused(format!("{} is not on the roster of {}", v.staff_id, v.site))
        })?;
    if v.what.trim().is_empty() || v.by.trim().is_empty() {
        return Err(RequestError::Refused(
            "a violation needs what happened and who confirmed it (by)".into(),
        ));
    }
    conn.execute(
        "INSERT INTO violations (site, staff_id, unit, day, what, months, by, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![v.site, v.staff_id, unit, v.day.to_string(), v.what, months, v.by, super::now_ms()],
    )?;
    let colleagues: Vec<String> = conn
        .prepare_cached(
            "SELECT staff_id FROM staff WHERE site = ?1 AND unit = ?2 AND staff_id != ?3 ORDER BY staff_id",
        )?
        .query_map(params![v.site, unit, v.staff_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let until = add_months(v.day, months);
    Ok(serde_json::json!({ "unit": unit, "marked": colleagues, "deduction_until": until }))
}

fn add_months(d: NaiveDate, months: u32) -> Option<NaiveDate> {
    d.checked_add_months(chrono::Months::new(months))
}

// ---------------------------------------------------------------------------------------------
// Judgements, computed on demand

/// A punch as the board shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PunchView {
    pub time: String,
    pub direction: Option<String>,
    pub method: Option<String>,
    /// The box's clock offset from the hub when the punch arrived (ms; positive = box ahead).
    pub clock_offset_ms: Option<i64>,
    pub received_at: String,
    pub flags: Option<serde_json::Value>,
    /// Set for an approved make-up punch (补卡).
    pub makeup: bool,
    /// The punch photo (拍照刷卡考勤), when the box took one: `/api/v1/blobs/<sha256>`.
    pub photo: Option<String>,
    /// The box marked this punch back-dated: its own time, when the box received it (for a ZKTeco
    /// record, the terminal's previous upload too), the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backdated: Option<sunlight_protocol::Backdated>,
}

/// What one clerk did on one day.
#[derive(Debug, Clone, Serialize)]
pub struct DayView {
    pub day: String,
    pub verdicts: Vec<SegmentView>,
    pub punches: Vec<PunchView>,
    /// The day was judged working or off on a provisional calendar year (decision 0014).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentView {
    pub start: String,
    pub end: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

struct Facts {
    /// (staff, day) → punches
    punches: BTreeMap<(String, NaiveDate), Vec<PunchView>>,
    /// staff → [(from, to, type)]
    duties: BTreeMap<String, Vec<(NaiveDateTime, NaiveDateTime, String)>>,
    /// The moment judged up to (UTC+8): a segment whose check-out window closes later is
    /// [`Verdict::Pending`]. None: every segment of the days judged is over.
    until: Option<NaiveDateTime>,
}

fn facts(conn: &Connection, site: &str, from: NaiveDate, to: NaiveDate) -> rusqlite::Result<Facts> {
    let mut punches: BTreeMap<(String, NaiveDate), Vec<PunchView>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT staff_id, day, time, direction, method, clock_offset_ms, received_ms, flags, photo, backdated
         FROM punches WHERE site = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day, time",
    )?;
    let mut rows = stmt.query(params![site, from.to_string(), to.to_string()])?;
    while let Some(r) = rows.next()? {
        let Ok(day) = NaiveDate::parse_from_str(&r.get::<_, String>(1)?, "%Y-%m-%d") else {
            continue;
        };
        let flags: Option<String> = r.get(7)?;
        punches
            .entry((r.get(0)?, day))
            .or_default()
            .push(PunchView {
                time: r.get(2)?,
                direction: r.get(3)?,
                method: r.get(4)?,
                clock_offset_ms: r.get(5)?,
                received_at: super::fmt_ms(r.get(6)?),
                flags: flags.and_then(|f| serde_json::from_str(&f).ok()),
                makeup: false,
                photo: r
                    .get::<_, Option<String>>(8)?
                    .map(|sha| format!("/api/v1/blobs/{sha}")),
                backdated: r
                    .get::<_, Option<String>>(9)?
                    .and_then(|m| serde_json::from_str(&m).ok()),
            });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT staff_id, day, time, decided_day FROM makeups
         WHERE site = ?1 AND status = 'approved' AND day BETWEEN ?2 AND ?3",
    )?;
    let mut rows = stmt.query(params![site, from.to_string(), to.to_string()])?;
    while let Some(r) = rows.next()? {
        let Ok(day) = NaiveDate::parse_from_str(&r.get::<_, String>(1)?, "%Y-%m-%d") else {
            continue;
        };
        let list = punches.entry((r.get(0)?, day)).or_default();
        list.push(PunchView {
            time: r.get(2)?,
            direction: None,
            method: Some("makeup".into()),
            clock_offset_ms: None,
            received_at: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
            flags: None,
            makeup: true,
            photo: None,
            backdated: None,
        });
        list.sort_by(|a, b| a.time.cmp(&b.time));
    }
    let mut duties: BTreeMap<String, Vec<(NaiveDateTime, NaiveDateTime, String)>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT staff_id, from_at, to_at, duty_type FROM duties
         WHERE site = ?1 AND duty_type != 'return' AND from_at <= ?3 AND to_at >= ?2",
    )?;
    let mut rows = stmt.query(params![
        site,
        format!("{from} 00:00:00"),
        format!("{to} 23:59:59")
    ])?;
    while let Some(r) = rows.next()? {
        let (Some(a), Some(b)) = (
            local(&r.get::<_, String>(1)?),
            local(&r.get::<_, String>(2)?),
        ) else {
            continue;
        };
        duties.entry(r.get(0)?).or_default().push((a, b, r.get(3)?));
    }
    Ok(Facts {
        punches,
        duties,
        until: None,
    })
}

impl Facts {
    fn judge(
        &self,
        office: &Office,
        cal: &Calendar,
        staff: &str,
        day: NaiveDate,
    ) -> (Vec<(Segment, Verdict)>, Vec<PunchView>) {
        let punches = self.punches_of(staff, day);
        (
            self.verdicts(office, cal, staff, day, punches),
            punches.to_vec(),
        )
    }

    /// `staff`'s punches (and approved make-ups) of `day`, by time.
    fn punches_of(&self, staff: &str, day: NaiveDate) -> &[PunchView] {
        self.punches
            .get(&(staff.to_owned(), day))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The verdict of each of `day`'s segments for `staff`, who punched `punches` that day.
    fn verdicts(
        &self,
        office: &Office,
        cal: &Calendar,
        staff: &str,
        day: NaiveDate,
        punches: &[PunchView],
    ) -> Vec<(Segment, Verdict)> {
        let Some(schedule) = office.schedule_on(day) else {
            return Vec::new();
        };
        // A day the calendar cannot answer (a year before 2025 without data) is not judged at
        // all, rather than guessed a working day.
        let Ok(working) = cal.is_workday(day) else {
            return Vec::new();
        };
        let times: Vec<NaiveTime> = punches
            .iter()
            .filter_map(|p| NaiveTime::parse_from_str(&p.time, "%H:%M:%S").ok())
            .collect();
        let duties = self.duties.get(staff);
        schedule
            .segments
            .iter()
            .map(|seg| {
                if !working {
                    return (*seg, Verdict::NotRequired);
                }
                let (s, e) = (day.and_time(seg.start), day.and_time(seg.end));
                let covered = duties
                    .into_iter()
                    .flatten()
                    .any(|(from, to, _)| *from <= s && *to >= e);
                if !covered
                    && self
                        .until
                        .is_some_and(|u| day.and_time(seg.check_out.1) > u)
                {
                    return (*seg, Verdict::Pending);
                }
                (*seg, judge_segment(seg, &office.rules, &times, covered))
            })
            .collect()
    }
}

/// One segment of a window staffed by `people` (role, verdict in that segment): whether it stands
/// vacant (someone was required, but neither the A-role holder nor the B-role substitute was
/// present) and whether the B-role substitute covered for an absent A-role holder. Neither while
/// the segment is not over.
fn window_segment<'a>(
    people: impl Iterator<Item = (&'a str, Option<Verdict>)> + Clone,
) -> (bool, bool) {
    if people.clone().any(|(_, v)| v == Some(Verdict::Pending)) {
        return (false, false);
    }
    let present = |role: &str| {
        people
            .clone()
            .any(|(r, v)| r == role && v.is_some_and(Verdict::present))
    };
    let required = people
        .clone()
        .any(|(_, v)| v.is_some_and(|v| v != Verdict::NotRequired));
    let (a, b) = (present("A"), present("B"));
    (required && !a && !b, !a && b)
}

/// One window's segment on the board.
#[derive(Debug, Clone, Serialize)]
pub struct BoardSegment {
    pub start: String,
    pub end: String,
    /// Staff ids present at the window in this segment.
    pub on_duty: Vec<String>,
    pub vacant: bool,
    /// The B-role substitute covered for an absent A-role holder.
    pub substituted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardStaff {
    pub staff_id: String,
    pub name: String,
    pub role: String,
    pub verdicts: Vec<SegmentView>,
    pub punches: Vec<PunchView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardWindow {
    pub unit: String,
    pub window: String,
    pub segments: Vec<BoardSegment>,
    pub staff: Vec<BoardStaff>,
}

fn segment_view(seg: &Segment, v: Verdict) -> SegmentView {
    SegmentView {
        start: seg.start.format("%H:%M").to_string(),
        end: seg.end.format("%H:%M").to_string(),
        verdict: v,
    }
}

/// The board of a site for a day: per window, who is on duty in each segment and which stand
/// vacant (neither the A-role holder nor the B-role substitute present).
pub fn board(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    site: &str,
    day: NaiveDate,
) -> rusqlite::Result<Vec<BoardWindow>> {
    board_at(conn, office, cal, site, day, None)
}

/// [`board`] as of `until` (UTC+8; the hub's [`crate::clock::HubClock::until`]): the segments
/// not over by then are [`Verdict::Pending`], neither absent nor vacant.
pub fn board_at(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    site: &str,
    day: NaiveDate,
    until: Option<NaiveDateTime>,
) -> rusqlite::Result<Vec<BoardWindow>> {
    let staff = roster(conn, Some(site), false)?;
    let mut facts = facts(conn, site, day, day)?;
    facts.until = until;
    Ok(windows_on(&staff, &facts, office, cal, day))
}

/// A clerk's month: each day's verdicts and punches, and the totals.
#[derive(Debug, Clone, Serialize)]
pub struct StaffMonth {
    pub site: String,
    pub staff_id: String,
    pub month: String,
    pub days: Vec<DayView>,
    pub totals: Totals,
    /// Leaves that need a stamped note and have none (a single leave over 1 day, or a month over 3).
    pub leave_needing_note: Vec<serde_json::Value>,
    /// Some verdict or leave-day count of the month rests on a provisional calendar year.
    pub provisional: bool,
    /// That year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisional_year: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub on_time: u32,
    pub late: u32,
    pub left_early: u32,
    /// Half days of 旷工.
    pub absent: u32,
    pub on_leave: u32,
    pub makeups: u32,
}

impl Totals {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::OnTime => self.on_time += 1,
            Verdict::Late { .. } => self.late += 1,
            Verdict::LeftEarly { .. } => self.left_early += 1,
            Verdict::LateAndEarly { .. } => {
                self.late += 1;
                self.left_early += 1;
            }
            Verdict::Absent => self.absent += 1,
            Verdict::OnLeave => self.on_leave += 1,
            Verdict::NotRequired | Verdict::Pending => {}
        }
    }
}

/// The first and last day of `YYYY-MM`.
pub fn month_range(month: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let last = first
        .checked_add_months(chrono::Months::new(1))?
        .pred_opt()?;
    Some((first, last))
}

/// Days of the month to judge: up to `today` (the future is not judged yet).
fn days(first: NaiveDate, last: NaiveDate, today: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    first
        .iter_days()
        .take_while(move |d| *d <= last && *d <= today)
}

pub fn staff_month(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    site: &str,
    staff_id: &str,
    month: &str,
    (today, until): (NaiveDate, Option<NaiveDateTime>),
) -> rusqlite::Result<Option<StaffMonth>> {
    let Some((first, last)) = month_range(month) else {
        return Ok(None);
    };
    let mut facts = facts(conn, site, first, last)?;
    facts.until = until;
    let mut totals = Totals::default();
    let mut out = Vec::new();
    for day in days(first, last, today) {
        let (verdicts, punches) = facts.judge(office, cal, staff_id, day);
        verdicts.iter().for_each(|(_, v)| totals.add(*v));
        totals.makeups += punches.iter().filter(|p| p.makeup).count() as u32;
        out.push(DayView {
            day: day.to_string(),
            verdicts: verdicts.iter().map(|(g, v)| segment_view(g, *v)).collect(),
            punches,
            provisional: cal.provisional_in(day, day).is_some(),
        });
    }
    // The verdicts judged so far and the leave days of the whole month (the stamped-note rule).
    let provisional_year = cal.provisional_in(first, last);
    Ok(Some(StaffMonth {
        site: site.into(),
        staff_id: staff_id.into(),
        month: month.into(),
        days: out,
        totals,
        leave_needing_note: leave_needing_note(conn, cal, site, staff_id, first, last)?,
        provisional: provisional_year.is_some(),
        provisional_year,
    }))
}

/// The stamped-note rule (seed 001): a single leave over one working day, or a month whose leaves
/// add up to more than three, needs a stamped note; leaves without `note_ref` are listed.
fn leave_needing_note(
    conn: &Connection,
    cal: &Calendar,
    site: &str,
    staff_id: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> rusqlite::Result<Vec<serde_json::Value>> {
    let leaves: Vec<(String, String, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT from_at, to_at, leave_type, note_ref FROM duties
             WHERE site = ?1 AND staff_id = ?2 AND duty_type = 'leave' AND from_at <= ?4 AND to_at >= ?3
             ORDER BY from_at",
        )?
        .query_map(
            params![site, staff_id, format!("{first} 00:00:00"), format!("{last} 23:59:59")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let working_days = |from: &str, to: &str| -> u32 {
        let (Some(a), Some(b)) = (local(from), local(to)) else {
            return 0;
        };
        a.date()
            .iter_days()
            .take_while(|d| *d <= b.date())
            .filter(|d| matches!(cal.is_workday(*d), Ok(true)))
            .count() as u32
    };
    let month_total: u32 = leaves.iter().map(|(a, b, ..)| working_days(a, b)).sum();
    Ok(leaves
        .iter()
        .filter(|(a, b, _, note)| {
            note.as_deref().unwrap_or("").trim().is_empty()
                && (working_days(a, b) > 1 || month_total > 3)
        })
        .map(|(a, b, kind, _)| {
            serde_json::json!({ "from": a, "to": b, "leave_type": kind, "working_days": working_days(a, b),
                "month_total": month_total })
        })
        .collect())
}

/// Per-unit figures for a month: attendance totals, vacant window segments, B-role substitutions,
/// patrol sign-ins, confirmed violations and the colleagues they mark.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitMonth {
    pub unit: String,
    pub staff: u32,
    pub totals: Totals,
    pub vacant_segments: u32,
    pub substitutions: u32,
    pub patrols: u32,
    pub violations: u32,
    /// Staff marked for deduction by a colleague's violation (捆绑考核), with the month it ends.
    pub bundled: Vec<serde_json::Value>,
}

pub fn units_month(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    site: &str,
    month: &str,
    today: NaiveDate,
    until: Option<NaiveDateTime>,
) -> rusqlite::Result<Option<Vec<UnitMonth>>> {
    let Some((first, last)) = month_range(month) else {
        return Ok(None);
    };
    Ok(Some(
        units_range(conn, office, cal, site, (first, last, today), until)?.0,
    ))
}

/// One clerk's totals over a range of days (the monthly report ranks clerks with them).
#[derive(Debug, Clone, Serialize)]
pub struct StaffTotals {
    pub staff_id: String,
    pub name: String,
    pub unit: String,
    pub window: String,
    pub role: String,
    pub totals: Totals,
}

impl Totals {
    fn merge(&mut self, o: &Totals) {
        self.on_time += o.on_time;
        self.late += o.late;
        self.left_early += o.left_early;
        self.absent += o.absent;
        self.on_leave += o.on_leave;
        self.makeups += o.makeups;
    }
}

/// [`units_month`] over any range of days (`first..=last`, judged up to `today`), with each
/// clerk's own totals.
pub fn units_range(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    site: &str,
    (first, last, today): (NaiveDate, NaiveDate, NaiveDate),
    until: Option<NaiveDateTime>,
) -> rusqlite::Result<(Vec<UnitMonth>, Vec<StaffTotals>)> {
    let staff = roster(conn, Some(site), false)?;
    let mut facts = facts(conn, site, first, last)?;
    facts.until = until;
    let mut units: BTreeMap<String, UnitMonth> = BTreeMap::new();
    let mut people: Vec<StaffTotals> = staff
        .iter()
        .map(|s| StaffTotals {
            staff_id: s.staff_id.clone(),
            name: s.name.clone(),
            unit: s.unit.clone(),
            window: s.window.clone(),
            role: s.role.clone(),
            totals: Totals::default(),
        })
        .collect();
    for s in &staff {
        units
            .entry(s.unit.clone())
            .or_insert_with(|| UnitMonth {
                unit: s.unit.clone(),
                ..Default::default()
            })
            .staff += 1;
    }
    // Each clerk's day is judged once, window by window (the roster is ordered by unit and
    // window): into the clerk's totals, and into the window's vacant and substituted segments.
    let mut window: Vec<(&str, Vec<Verdict>)> = Vec::new();
    for day in days(first, last, today) {
        let segments = office.schedule_on(day).map_or(0, |s| s.segments.len());
        let mut start = 0;
        while start < staff.len() {
            let (unit, name) = (&staff[start].unit, &staff[start].window);
            let end = staff[start..]
                .iter()
                .position(|s| s.unit != *unit || s.window != *name)
                .map_or(staff.len(), |n| start + n);
            window.clear();
            for (s, mine) in staff[start..end].iter().zip(&mut people[start..end]) {
                let punches = facts.punches_of(&s.staff_id, day);
                let verdicts = facts.verdicts(office, cal, &s.staff_id, day, punches);
                verdicts.iter().for_each(|(_, v)| mine.totals.add(*v));
                mine.totals.makeups += punches.iter().filter(|p| p.makeup).count() as u32;
                window.push((
                    s.role.as_str(),
                    verdicts.into_iter().map(|(_, v)| v).collect(),
                ));
            }
            if let Some(u) = units.get_mut(unit) {
                for i in 0..segments {
                    let (vacant, substituted) =
                        window_segment(window.iter().map(|(r, v)| (*r, v.get(i).copied())));
                    u.vacant_segments += u32::from(vacant);
                    u.substitutions += u32::from(substituted);
                }
            }
            start = end;
        }
    }
    for p in &people {
        if let Some(u) = units.get_mut(&p.unit) {
            u.totals.merge(&p.totals);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT unit, count(*) FROM patrols WHERE site = ?1 AND day BETWEEN ?2 AND ?3 GROUP BY unit",
    )?;
    let mut rows = stmt.query(params![site, first.to_string(), last.to_string()])?;
    while let Some(r) = rows.next()? {
        let unit: String = r.get(0)?;
        units
            .entry(unit.clone())
            .or_insert_with(|| UnitMonth {
                unit,
                ..Default::default()
            })
            .patrols = r.get(1)?;
    }
    // Violations in force during the month mark the unit's other staff.
    let mut stmt = conn.prepare_cached(
        "SELECT unit, staff_id, day, months FROM violations WHERE site = ?1 AND day <= ?2",
    )?;
    let mut rows = stmt.query(params![site, last.to_string()])?;
    while let Some(r) = rows.next()? {
        let (unit, by, day, months): (String, String, String, u32) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let Some(start) = NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok() else {
            continue;
        };
        let Some(until) = add_months(start, months) else {
            continue;
        };
        if until < first {
            continue;
        }
        let Some(u) = units.get_mut(&unit) else {
            continue;
        };
        if start >= first {
            u.violations += 1;
        }
        for s in staff.iter().filter(|s| s.unit == unit && s.staff_id != by) {
            u.bundled.push(
                serde_json::json!({ "staff_id": s.staff_id, "because_of": by, "until": until }),
            );
        }
    }
    Ok((units.into_values().collect(), people))
}

fn windows_on(
    staff: &[StaffView],
    facts: &Facts,
    office: &Office,
    cal: &Calendar,
    day: NaiveDate,
) -> Vec<BoardWindow> {
    let mut windows: BTreeMap<(String, String), BoardWindow> = BTreeMap::new();
    // (unit, window) → [(staff id, role, verdict per segment)]
    type Judged = Vec<(String, String, Vec<Verdict>)>;
    let mut judged: BTreeMap<(String, String), Judged> = BTreeMap::new();
    for s in staff {
        let (verdicts, punches) = facts.judge(office, cal, &s.staff_id, day);
        let key = (s.unit.clone(), s.window.clone());
        judged.entry(key.clone()).or_default().push((
            s.staff_id.clone(),
            s.role.clone(),
            verdicts.iter().map(|(_, v)| *v).collect(),
        ));
        windows
            .entry(key)
            .or_insert_with(|| BoardWindow {
                unit: s.unit.clone(),
                window: s.window.clone(),
                segments: Vec::new(),
                staff: Vec::new(),
            })
            .staff
            .push(BoardStaff {
                staff_id: s.staff_id.clone(),
                name: s.name.clone(),
                role: s.role.clone(),
                verdicts: verdicts.iter().map(|(g, v)| segment_view(g, *v)).collect(),
                punches,
            });
    }
    let segments = office
        .schedule_on(day)
        .map(|s| s.segments)
        .unwrap_or_default();
    for (key, w) in windows.iter_mut() {
        let people = judged.get(key).map(Vec::as_slice).unwrap_or_default();
        for (i, seg) in segments.iter().enumerate() {
            let verdict = |id: &(String, String, Vec<Verdict>)| id.2.get(i).copied();
            let (vacant, substituted) =
                window_segment(people.iter().map(|p| (p.1.as_str(), verdict(p))));
            w.segments.push(BoardSegment {
                start: seg.start.format("%H:%M").to_string(),
                end: seg.end.format("%H:%M").to_string(),
                on_duty: people
                    .iter()
                    .filter(|p| verdict(p).is_some_and(Verdict::present))
                    .map(|p| p.0.clone())
                    .collect(),
                vacant,
                substituted,
            });
        }
    }
    windows.into_values().collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct PatrolMonth {
    pub month: String,
    /// unit → sign-ins
    pub by_unit: BTreeMap<String, u32>,
    /// Units on the roster with no patrol sign-in this month (seed 001 problem 2).
    pub units_without: Vec<String>,
    pub patrols: Vec<serde_json::Value>,
}

pub fn patrols_month(
    conn: &Connection,
    site: &str,
    month: &str,
) -> rusqlite::Result<Option<PatrolMonth>> {
    let Some((first, last)) = month_range(month) else {
        return Ok(None);
    };
    let patrols: Vec<(String, String, String, String)> = conn
        .prepare_cached(
            "SELECT leader_id, unit, at, findings FROM patrols WHERE site = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY at",
        )?
        .query_map(params![site, first.to_string(), last.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut by_unit: BTreeMap<String, u32> = BTreeMap::new();
    for (_, unit, ..) in &patrols {
        *by_unit.entry(unit.clone()).or_default() += 1;
    }
    let units: BTreeSet<String> = roster(conn, Some(site), false)?
        .into_iter()
        .map(|s| s.unit)
        .collect();
    Ok(Some(PatrolMonth {
        month: month.into(),
        units_without: units
            .into_iter()
            .filter(|u| !by_unit.contains_key(u))
            .collect(),
        by_unit,
        patrols: patrols
            .into_iter()
            .map(|(leader, unit, at, findings)| {
                serde_json::json!({ "leader_id": leader, "unit": unit, "at": at,
                    "findings": serde_json::from_str::<serde_json::Value>(&findings).unwrap_or_default() })
            })
            .collect(),
    }))
}

/// Leave and out-of-office registrations of a site in a month, each with whether the stamped-note
/// rule asks for a note it lacks.
pub fn leave_month(
    conn: &Connection,
    cal: &Calendar,
    site: &str,
    month: &str,
) -> rusqlite::Result<Option<Vec<serde_json::Value>>> {
    let Some((first, last)) = month_range(month) else {
        return Ok(None);
    };
    // (staff, type, leave type, from, to, note)
    type Row = (
        String,
        String,
        Option<String>,
        String,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT staff_id, duty_type, leave_type, from_at, to_at, note_ref FROM duties
             WHERE site = ?1 AND duty_type != 'return' AND from_at <= ?3 AND to_at >= ?2
             ORDER BY from_at",
        )?
        .query_map(
            params![
                site,
                format!("{first} 00:00:00"),
                format!("{last} 23:59:59")
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut needing: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let staff: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    for s in staff {
        needing.insert(
            s.clone(),
            leave_needing_note(conn, cal, site, s, first, last)?,
        );
    }
    Ok(Some(
        rows.iter()
            .map(|(staff, kind, leave_type, from, to, note)| {
                let needs_note = needing.get(staff).is_some_and(|n| {
                    n.iter()
                        .any(|x| x["from"] == from.as_str() && x["to"] == to.as_str())
                });
                serde_json::json!({ "staff_id": staff, "type": kind, "leave_type": leave_type,
                    "from": from, "to": to, "note_ref": note, "needs_stamped_note": needs_note })
            })
            .collect(),
    ))
}
