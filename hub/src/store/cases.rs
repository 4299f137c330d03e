//! Cases at the hub: each case's projection (from its stage events, re-folded in event-time order so
//! that late arrivals land at their own time) and its warning history, which only grows.

use crate::oversight::calendar::Calendar;
use crate::oversight::cases::{CaseState, StageEvent};
use crate::oversight::deadlines::{WarningLevel, escalate};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cases (
    site TEXT NOT NULL, case_no TEXT NOT NULL,
    events TEXT NOT NULL,            -- JSON [[at, body], ...] in event-time order
    state TEXT NOT NULL,             -- JSON CaseState
    unit TEXT NOT NULL, window TEXT NOT NULL,
    level TEXT, due TEXT, next_check TEXT, open INTEGER NOT NULL, problem TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (site, case_no));
CREATE INDEX IF NOT EXISTS cases_next_check ON cases (next_check) WHERE open = 1;
CREATE TABLE IF NOT EXISTS case_warnings (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, case_no TEXT NOT NULL, level TEXT NOT NULL,
    on_day TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS case_warnings_append_only BEFORE UPDATE ON case_warnings
    BEGIN SELECT RAISE(ABORT, 'warnings are append-only'); END;
";

/// The event's own calendar day, in the offset it was recorded with (the office's local day).
fn day_of(at: &str) -> Option<NaiveDate> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.date_naive())
}

/// Folds a new `case` event into its case and re-evaluates it as of `today`.
/// A body that does not parse as a stage event was already refused by schema validation.
pub fn apply_event(
    conn: &Connection,
    site: &str,
    at: &str,
    body: &str,
    cal: &Calendar,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    let Ok(event) = serde_json::from_str::<StageEvent>(body) else {
        return Ok(());
    };
    let Ok(body_value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Ok(());
    };
    let existing: Option<String> = conn
        .query_row(
            "SELECT events FROM cases WHERE site = ?1 AND case_no = ?2",
            params![site, event.case_no],
            |r| r.get(0),
        )
        .optional()?;
    let mut events: Vec<(String, serde_json::Value)> = existing
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    events.push((at.to_owned(), body_value));
    // Event-time order; ties keep arrival order (a stable sort).
    events.sort_by_key(|(at, _)| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MAX)
    });
    let mut state: Option<CaseState> = None;
    for (at, body) in &events {
        let (Ok(e), Some(on)) = (
            serde_json::from_value::<StageEvent>(body.clone()),
            day_of(at),
        ) else {
            continue;
        };
        state
            .get_or_insert_with(|| CaseState::new(&e))
            .apply(&e, on);
    }
    let Some(state) = state else { return Ok(()) };
    conn.execute(
        "INSERT INTO cases (site, case_no, events, state, unit, window, open, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
         ON CONFLICT (site, case_no) DO UPDATE SET events = ?3, state = ?4, unit = ?5, window = ?6, updated_ms = ?7",
        params![
            site,
            state.case_no,
            serde_json::to_string(&events).unwrap_or_default(),
            serde_json::to_string(&state).unwrap_or_default(),
            state.unit,
            state.window,
            super::now_ms()
        ],
    )?;
    evaluate(conn, site, &state, cal, today)
}

/// Re-evaluates one case as of `today`: due day, level (escalate-only, each rise recorded), and the
/// day it next needs a look.
fn evaluate(
    conn: &Connection,
    site: &str,
    state: &CaseState,
    cal: &Calendar,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    let stored: Option<Option<String>> = conn
        .query_row(
            "SELECT level FROM cases WHERE site = ?1 AND case_no = ?2",
            params![site, state.case_no],
            |r| r.get(0),
        )
        .optional()?;
    let stored = stored.flatten().as_deref().and_then(WarningLevel::parse);
    let Some(clock) = state.clock() else {
        let open = state.accepted.is_none() && state.closed.is_none();
        conn.execute(
            "UPDATE cases SET open = ?3, next_check = NULL WHERE site = ?1 AND case_no = ?2",
            params![site, state.case_no, open],
        )?;
        return Ok(());
    };
    let outcome = (|| {
        let due = clock.due(cal)?;
        let level = clock.level(cal, today)?;
        let next = clock.next_escalation(cal, today)?;
        Ok::<_, crate::oversight::calendar::CalendarError>((due, level, next))
    })();
    match outcome {
        Ok((due, level, next)) => {
            let open = state.completed.is_none();
            if let Some(new) = escalate(stored, level) {
                conn.execute(
                    "INSERT INTO case_warnings (site, case_no, level, on_day, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![site, state.case_no, new.as_str(), today.to_string(), super::now_ms()],
                )?;
                if new >= WarningLevel::YellowCard {
                    tracing::warn!(site, case_no = %state.case_no, level = new.as_str(), "case overdue");
                }
            }
            let kept = match (stored, level) {
                (Some(s), Some(l)) => Some(s.max(l)),
                (s, l) => l.or(s),
            };
            conn.execute(
                "UPDATE cases SET level = ?3, due = ?4, next_check = ?5, open = ?6, problem = NULL WHERE site = ?1 AND case_no = ?2",
                params![
                    site,
                    state.case_no,
                    kept.map(WarningLevel::as_str),
                    due.map(|d| d.to_string()),
                    if open { next.map(|(d, _)| d.to_string()) } else { None },
                    open
                ],
            )?;
        }
        Err(e) => {
            // Without the calendar there is no light to show; a completed case is still closed, and
            // an open one is looked at again once a day (the missing year may have been added).
            let open = state.completed.is_none();
            conn.execute(
                "UPDATE cases SET problem = ?3, open = ?4, next_check = CASE WHEN ?4 THEN ?5 ELSE NULL END
                 WHERE site = ?1 AND case_no = ?2",
                params![site, state.case_no, e.to_string(), open, today.succ_opt().map(|d| d.to_string())],
            )?;
        }
    }
    Ok(())
}

/// The timer tick: re-evaluates only the open cases whose next change is due by `today`.
/// Returns how many cases it looked at.
pub fn tick(conn: &Connection, cal: &Calendar, today: NaiveDate) -> rusqlite::Result<usize> {
    let due: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare_cached("SELECT site, state FROM cases WHERE open = 1 AND next_check <= ?1")?;
        stmt.query_map([today.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (site, state) in due {
        let Ok(state) = serde_json::from_str::<CaseState>(&state) else {
            continue;
        };
        evaluate(conn, &site, &state, cal, today)?;
        n += 1;
    }
    Ok(n)
}

/// A case as `GET /api/v1/cases` shows it.
#[derive(Debug, Serialize)]
pub struct CaseView {
    pub site: String,
    pub case_no: String,
    pub unit: String,
    pub window: String,
    pub level: Option<String>,
    pub due: Option<String>,
    pub open: bool,
    pub problem: Option<String>,
    pub state: serde_json::Value,
    pub warnings: Vec<WarningView>,
}

#[derive(Debug, Serialize)]
pub struct WarningView {
    pub level: String,
    pub on_day: String,
    pub at: String,
}

/// Cases filtered by site and level; with their warning history.
pub fn list(
    conn: &Connection,
    site: Option<&str>,
    level: Option<&str>,
    open_only: bool,
    limit: u32,
) -> rusqlite::Result<Vec<CaseView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT site, case_no, unit, window, level, due, open, problem, state FROM cases
         WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR level = ?2) AND (?3 = 0 OR open = 1)
         ORDER BY site, case_no LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(params![site, level, open_only, limit.clamp(1, 1000)], |r| {
            let state: String = r.get(8)?;
            Ok(CaseView {
                site: r.get(0)?,
                case_no: r.get(1)?,
                unit: r.get(2)?,
                window: r.get(3)?,
                level: r.get(4)?,
                due: r.get(5)?,
                open: r.get(6)?,
                problem: r.get(7)?,
                state: serde_json::from_str(&state).unwrap_or_default(),
                warnings: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = rows;
    let mut w = conn.prepare_cached("SELECT level, on_day, at_ms FROM case_warnings WHERE site = ?1 AND case_no = ?2 ORDER BY id")?;
    for case in out.iter_mut() {
        case.warnings = w
            .query_map(params![case.site, case.case_no], |r| {
                Ok(WarningView {
                    level: r.get(0)?,
                    on_day: r.get(1)?,
                    at: super::fmt_ms(r.get(2)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}
