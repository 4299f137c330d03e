//! Cases at the hub: each case's projection (from its stage events, re-folded in event-time order so
//! that late arrivals land at their own time) and its warning history, which only grows.

use super::notices::{self, Notice};
use super::{items, letters};
use crate::oversight::calendar::provisional_note_zh;
use crate::oversight::cases::{Anomaly, CaseState, Kind, StageEvent};
use crate::oversight::deadlines::{WarningLevel, escalate};
use crate::supervise::Supervision;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The report's indexes (`report::compute`), made after the migration that adds their columns
/// (`store::migrate`). The cases completed in a period are read from `cases_by_completed` alone
/// (covering: the six months of the trend without a case row); it is partial, so that open cases
/// (the tick's daily updates, each new case) stay out of it, and a query's `completed BETWEEN`
/// implies its condition. The cases accepted in a period come through `cases_by_accepted` with
/// their rows: a covering index here would take each new case at a random place within its day
/// and made applying case events half as fast (`sunlight-bench oversight-store`), while the
/// accepted date alone keeps a day's cases in arrival order. Warnings carry their unit and
/// handler, so `case_warnings_by_day` needs no join.
pub const REPORT_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS cases_by_accepted ON cases (accepted) WHERE accepted IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_by_completed ON cases (completed, site, unit, on_time, early, kind, staff_id)
    WHERE completed IS NOT NULL;
";

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cases (
    site TEXT NOT NULL, case_no TEXT NOT NULL,
    events TEXT NOT NULL,            -- JSON [[at, body], ...] in event-time order
    state TEXT NOT NULL,             -- JSON CaseState
    unit TEXT NOT NULL, window TEXT NOT NULL,
    level TEXT, due TEXT, next_check TEXT, open INTEGER NOT NULL, problem TEXT,
    view TEXT NOT NULL DEFAULT 'todo',  -- 待办 todo / 在办 doing / 已办 done (seed 002)
    accepted TEXT, completed TEXT, on_time INTEGER, early INTEGER,
    rated INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL,
    kind TEXT, staff_id TEXT,        -- of `state`, as columns for the report's indexes
    provisional INTEGER,             -- the year whose provisional calendar the due day and light rest on
    PRIMARY KEY (site, case_no));
CREATE INDEX IF NOT EXISTS cases_next_check ON cases (next_check) WHERE open = 1;
CREATE INDEX IF NOT EXISTS cases_unrated ON cases (completed) WHERE rated = 0 AND completed IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_by_view ON cases (view, site);
CREATE TABLE IF NOT EXISTS case_warnings (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, case_no TEXT NOT NULL, level TEXT NOT NULL,
    on_day TEXT NOT NULL, at_ms INTEGER NOT NULL,
    unit TEXT, staff_id TEXT);       -- the case's, when the warning was raised
CREATE INDEX IF NOT EXISTS case_warnings_by_case ON case_warnings (site, case_no);
CREATE INDEX IF NOT EXISTS case_warnings_by_day ON case_warnings (on_day);
CREATE TRIGGER IF NOT EXISTS case_warnings_append_only BEFORE UPDATE ON case_warnings
    BEGIN SELECT RAISE(ABORT, 'warnings are append-only'); END;
";

/// The event's own calendar day, in the offset it was recorded with (the office's local day).
/// Where a case's timeline keeps an event's back-dated mark.
pub const BACKDATED: &str = "backdated";

pub fn day_of(at: &str) -> Option<NaiveDate> {
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
    sup: &Supervision,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    apply_marked_event(conn, site, at, body, None, sup, today)
}

/// [`apply_event`] for an event its box marked back-dated: the mark is kept with the event in the
/// case's timeline (as `backdated` beside the body's fields; a body's own `backdated` field is never
/// taken for one).
pub fn apply_marked_event(
    conn: &Connection,
    site: &str,
    at: &str,
    body: &str,
    backdated: Option<&sunlight_protocol::Backdated>,
    sup: &Supervision,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    let Ok(event) = serde_json::from_str::<StageEvent>(body) else {
        return Ok(());
    };
    let Ok(mut body_value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Ok(());
    };
    if let Some(fields) = body_value.as_object_mut() {
        fields.remove(BACKDATED);
        if let Some(mark) = backdated.and_then(|m| serde_json::to_value(m).ok()) {
            fields.insert(BACKDATED.to_owned(), mark);
        }
    }
    let existing: Option<String> = conn
        .prepare_cached("SELECT events FROM cases WHERE site = ?1 AND case_no = ?2")?
        .query_row(params![site, event.case_no], |r| r.get(0))
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
    let Some(mut state) = state else {
        return Ok(());
    };
    check_against_catalog(conn, &mut state)?;
    conn.prepare_cached(
        "INSERT INTO cases (site, case_no, events, state, unit, window, open, view, accepted, completed, rated, updated_ms,
                 kind, staff_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9,
                 EXISTS (SELECT 1 FROM ratings WHERE site = ?1 AND case_no = ?2), ?10, ?11, ?12)
         ON CONFLICT (site, case_no) DO UPDATE SET events = ?3, state = ?4, unit = ?5, window = ?6, view = ?7,
             accepted = ?8, completed = ?9, updated_ms = ?10, kind = ?11, staff_id = ?12",
    )?
    .execute(params![
            site,
            state.case_no,
            serde_json::to_string(&events).unwrap_or_default(),
            serde_json::to_string(&state).unwrap_or_default(),
            state.unit,
            state.window,
            view_of(&state),
            state.accepted.map(|d| d.to_string()),
            state.completed.map(|d| d.to_string()),
            super::now_ms(),
            match state.kind {
                Kind::Immediate => "immediate",
                Kind::Promised => "promised",
            },
            state.staff_id,
    ])?;
    // Ratings that arrived before their case learn its unit and window.
    conn.prepare_cached(
        "UPDATE ratings SET unit = ?3, window = ?4 WHERE site = ?1 AND case_no = ?2 AND unit = ''",
    )?
    .execute(params![site, state.case_no, state.unit, state.window])?;
    evaluate(conn, site, &state, sup, today)
}

/// 待办 (received or accepted, not yet taken up), 在办 (undertaken and on), 已办 (completed, rejected
/// or withdrawn): the three lists of seed 002.
fn view_of(state: &CaseState) -> &'static str {
    if state.completed.is_some() || state.closed.is_some() {
        "done"
    } else if state.last_step >= 2 {
        "doing"
    } else {
        "todo"
    }
}

/// Adds the anomalies the item catalog reveals, and the catalog's limit for a promised case that
/// came without one. Items not in the catalog are not checked.
fn check_against_catalog(conn: &Connection, state: &mut CaseState) -> rusqlite::Result<()> {
    let Some(item) = items::get(conn, &state.item_code)? else {
        return Ok(());
    };
    let on = state.accepted.or(state.completed).unwrap_or(NaiveDate::MIN);
    let mut flag = |what: String| state.anomalies.push(Anomaly { on, what });
    if state.fee_fen > 0 && !item.fees_allowed {
        flag(format!(
            "fee of {}.{:02} yuan on {} ({}), which charges none (违规收费)",
            state.fee_fen / 100,
            state.fee_fen % 100,
            item.name,
            item.code
        ));
    }
    if state.kind == Kind::Promised && state.limit_days > item.statutory_days {
        flag(format!(
            "promised limit {} days exceeds the statutory {} of {} (超法定时限)",
            state.limit_days, item.statutory_days, item.code
        ));
    }
    if state.kind == Kind::Promised && state.limit_days == 0 {
        state.limit_days = item.promised_days;
        state.unit_of_days = item.day_unit;
    }
    Ok(())
}

/// Re-evaluates one case as of `today`: due day, level (escalate-only, each rise recorded), and the
/// day it next needs a look.
fn evaluate(
    conn: &Connection,
    site: &str,
    state: &CaseState,
    sup: &Supervision,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    let stored: Option<Option<String>> = conn
        .prepare_cached("SELECT level FROM cases WHERE site = ?1 AND case_no = ?2")?
        .query_row(params![site, state.case_no], |r| r.get(0))
        .optional()?;
    let stored = stored.flatten().as_deref().and_then(WarningLevel::parse);
    evaluate_from(conn, site, state, stored, sup, today)
}

/// [`evaluate`] with the stored level already read (the tick reads it with the state).
fn evaluate_from(
    conn: &Connection,
    site: &str,
    state: &CaseState,
    stored: Option<WarningLevel>,
    sup: &Supervision,
    today: NaiveDate,
) -> rusqlite::Result<()> {
    let cal = &*sup.calendar();
    let Some(clock) = state.clock() else {
        let open = state.accepted.is_none() && state.closed.is_none();
        conn.execute(
            "UPDATE cases SET open = ?3, next_check = NULL, provisional = NULL WHERE site = ?1 AND case_no = ?2",
            params![site, state.case_no, open],
        )?;
        return Ok(());
    };
    let outcome = (|| {
        let due = clock.due(cal)?;
        let level = clock.level(cal, today)?;
        let next = clock.next_escalation(cal, today)?;
        let completion = clock.completion(cal)?;
        let overdue = clock.overdue_days(cal, today)?;
        Ok::<_, crate::oversight::calendar::CalendarError>((due, level, next, completion, overdue))
    })();
    match outcome {
        Ok((due, level, next, completion, overdue)) => {
            let open = state.completed.is_none();
            // What the due day, the light and the ladder rest on: the days from acceptance to the
            // due day, and on to today (open) or the completion (done). Any of them provisional
            // makes the whole reckoning provisional, and it says so until the year is loaded.
            let end = match state.completed {
                Some(done) => due.map_or(done, |d| d.max(done)),
                None => due.map_or(today, |d| d.max(today)),
            };
            let provisional = cal.provisional_in(clock.accepted, end);
            if let Some(new) = escalate(stored, level) {
                conn.prepare_cached(
                    "INSERT INTO case_warnings (site, case_no, level, on_day, at_ms, unit, staff_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![site, state.case_no, new.as_str(), today.to_string(), super::now_ms(),
                    state.unit, state.staff_id])?;
                tracing::debug!(site, case_no = %state.case_no, level = new.as_str(), "case escalated");
                announce(
                    conn,
                    sup,
                    site,
                    state,
                    (new, provisional),
                    due,
                    today,
                    overdue,
                )?;
            }
            let pause_check = check_pause(conn, sup, site, state, today)?;
            let next = match (next.map(|(d, _)| d), pause_check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let kept = match (stored, level) {
                (Some(s), Some(l)) => Some(s.max(l)),
                (s, l) => l.or(s),
            };
            conn.prepare_cached(
                "UPDATE cases SET level = ?3, due = ?4, next_check = ?5, open = ?6, problem = NULL,
                     on_time = ?7, early = ?8, provisional = ?9
                 WHERE site = ?1 AND case_no = ?2",
            )?
            .execute(params![
                site,
                state.case_no,
                kept.map(WarningLevel::as_str),
                due.map(|d| d.to_string()),
                if open {
                    next.map(|d| d.to_string())
                } else {
                    None
                },
                open,
                completion.map(|c| c.on_time),
                completion.map(|c| c.early),
                provisional
            ])?;
        }
        Err(e) => {
            // Without the calendar there is no light to show; a completed case is still closed, and
            // an open one is looked at again once a day (the missing year may have been added).
            let open = state.completed.is_none();
            conn.execute(
                "UPDATE cases SET problem = ?3, open = ?4, next_check = CASE WHEN ?4 THEN ?5 ELSE NULL END,
                     provisional = NULL
                 WHERE site = ?1 AND case_no = ?2",
                params![site, state.case_no, e.to_string(), open, today.succ_opt().map(|d| d.to_string())],
            )?;
        }
    }
    Ok(())
}

/// A running pause past its sub-limit is recorded once (a `pause_overdue` warning and a message to
/// the supervisor). Returns the day the pause next needs a look while it is within its limit.
fn check_pause(
    conn: &Connection,
    sup: &Supervision,
    site: &str,
    state: &CaseState,
    today: NaiveDate,
) -> rusqlite::Result<Option<NaiveDate>> {
    let Some(from) = state
        .pauses
        .last()
        .filter(|p| p.1.is_none() && state.completed.is_none())
        .map(|p| p.0)
    else {
        return Ok(None);
    };
    let reason = state.pause_reason.as_deref().unwrap_or("");
    let limit = sup.config().pauses.limit_for(reason);
    let Ok(last_day) =
        sup.calendar()
            .add_days(from, limit, crate::oversight::calendar::DayUnit::Working)
    else {
        return Ok(None);
    };
    if today <= last_day {
        return Ok(last_day.succ_opt());
    }
    let key = format!("case:{site}:{}:pause:{from}", state.case_no);
    let recorded: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE key >= ?1 AND key < ?1 || char(1114111))",
        [&key],
        |r| r.get(0),
    )?;
    if recorded {
        return Ok(None);
    }
    conn.execute(
        "INSERT INTO case_warnings (site, case_no, level, on_day, at_ms, unit, staff_id)
         VALUES (?1, ?2, 'pause_overdue', ?3, ?4, ?5, ?6)",
        params![
            site,
            state.case_no,
            today.to_string(),
            super::now_ms(),
            state.unit,
            state.staff_id
        ],
    )?;
    notices::enqueue(
        conn,
        &sup.config(),
        &Notice {
            key,
            day: today,
            site,
            unit: &state.unit,
            staff_id: &state.staff_id,
            roles: &[crate::config::Role::Supervisor],
            subject: format!("暂停超时 | {site} {} 办件 {}", state.unit, state.case_no),
            text: format!(
                "{site} {} 办件 {}（{}）自 {from} 暂停（{reason}），已超过 {limit} 个工作日的暂停时限（至 {last_day}）仍未恢复。",
                state.unit, state.case_no, state.item_name
            ),
        },
    )?;
    Ok(None)
}

/// Tells the people of the ladder step `level`, and issues the supervision letter at its step. A
/// step reckoned on a provisional year says so in the message.
#[allow(clippy::too_many_arguments)]
fn announce(
    conn: &Connection,
    sup: &Supervision,
    site: &str,
    state: &CaseState,
    (level, provisional): (WarningLevel, Option<i32>),
    due: Option<NaiveDate>,
    today: NaiveDate,
    overdue: u32,
) -> rusqlite::Result<()> {
    let config = &sup.config();
    let letter = if level == WarningLevel::SupervisionLetter {
        letters::issue(conn, &config.letters, site, state, due, today, overdue)?
    } else {
        None
    };
    let due_text = due.map(|d| d.to_string()).unwrap_or_else(|| "—".into());
    let when = match level {
        WarningLevel::Blue => format!("应于 {due_text} 前办结"),
        WarningLevel::YellowLight => format!("距办结时限还有 1 个工作日（{due_text}）"),
        WarningLevel::RedLight => format!("今日（{due_text}）到期"),
        _ => format!("已超期 {overdue} 个工作日（时限 {due_text}）"),
    };
    notices::enqueue(
        conn,
        config,
        &Notice {
            key: format!("case:{site}:{}:{}", state.case_no, level.as_str()),
            day: today,
            site,
            unit: &state.unit,
            staff_id: &state.staff_id,
            roles: config.notify.ladder.roles(level),
            subject: format!(
                "{} | {site} {} 办件 {}",
                level.zh(),
                state.unit,
                state.case_no
            ),
            text: format!(
                "【{}】{site} {} {}窗口 “{}”（办件 {}，经办人 {}）{}。{}{}",
                level.zh(),
                state.unit,
                state.window,
                state.item_name,
                state.case_no,
                state.staff_id,
                when,
                letter
                    .map(|n| format!("已生成监察建议书 {n}。"))
                    .unwrap_or_default(),
                provisional
                    .map(|y| format!("（{}）", provisional_note_zh(y)))
                    .unwrap_or_default()
            ),
        },
    )?;
    Ok(())
}

/// The timer tick: re-evaluates only the open cases whose next change is due by `today`, and gives
/// completed cases left unrated their default rating. Returns how many cases it looked at.
pub fn tick(conn: &Connection, sup: &Supervision, today: NaiveDate) -> rusqlite::Result<usize> {
    let n = tick_chunk(conn, sup, today, u32::MAX)?;
    Ok(n + super::ratings::default_unrated(conn, &sup.config(), today)?)
}

/// Re-evaluates at most `limit` of the open cases whose next change is due by `today`, earliest
/// first. Each evaluated case moves its `next_check` past `today`, so calling this in short
/// transactions until it returns less than `limit` covers them all without holding the store's
/// write lock (which ingest needs) for long.
/// Makes every open case due for a look on `today` (after the calendar changed: their due days and
/// lights may move). The next [`tick_chunk`] re-evaluates them.
pub fn recheck_open(conn: &Connection, today: NaiveDate) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE cases SET next_check = ?1 WHERE open = 1 AND (next_check IS NULL OR next_check > ?1)",
        [today.to_string()],
    )
}

/// Re-evaluates the completed cases whose due day rested on a provisional year (after a year's
/// official arrangement was loaded): their on-time verdict and their mark follow the official data.
/// Completed cases raise no step. Returns how many were looked at.
pub fn recheck_provisional_done(
    conn: &Connection,
    sup: &Supervision,
    today: NaiveDate,
) -> rusqlite::Result<usize> {
    let rows: Vec<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT site, state, level FROM cases WHERE open = 0 AND provisional IS NOT NULL",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for (site, state, level) in rows {
        let Ok(state) = serde_json::from_str::<CaseState>(&state) else {
            continue;
        };
        let stored = level.as_deref().and_then(WarningLevel::parse);
        evaluate_from(conn, &site, &state, stored, sup, today)?;
        n += 1;
    }
    Ok(n)
}

pub fn tick_chunk(
    conn: &Connection,
    sup: &Supervision,
    today: NaiveDate,
    limit: u32,
) -> rusqlite::Result<usize> {
    let due: Vec<(String, String, Option<String>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT site, state, level FROM cases WHERE open = 1 AND next_check <= ?1
             ORDER BY next_check LIMIT ?2",
        )?;
        stmt.query_map(params![today.to_string(), limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (site, state, level) in due {
        let Ok(state) = serde_json::from_str::<CaseState>(&state) else {
            continue;
        };
        let stored = level.as_deref().and_then(WarningLevel::parse);
        evaluate_from(conn, &site, &state, stored, sup, today)?;
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
    pub view: String,
    /// The due day and light rest on a provisional calendar year (decision 0014).
    pub provisional: bool,
    /// That year, while it is provisional.
    pub provisional_year: Option<i32>,
    pub state: serde_json::Value,
    pub warnings: Vec<WarningView>,
}

#[derive(Debug, Serialize)]
pub struct WarningView {
    pub level: String,
    pub on_day: String,
    pub at: String,
    /// The step rests on the case's provisional reckoning (as long as the case's does).
    pub provisional: bool,
}

/// Cases as `GET /api/v1/cases` filters them, with their warning history.
pub fn list(conn: &Connection, f: &super::CaseFilter) -> rusqlite::Result<Vec<CaseView>> {
    query(conn, f, None)
}

fn list_one(
    conn: &Connection,
    f: &super::CaseFilter,
    case_no: &str,
) -> rusqlite::Result<Vec<CaseView>> {
    query(conn, f, Some(case_no))
}

fn query(
    conn: &Connection,
    f: &super::CaseFilter,
    case_no: Option<&str>,
) -> rusqlite::Result<Vec<CaseView>> {
    // Only the conditions asked for, so SQLite can use the primary key (site, case_no) and the
    // other indexes; `(? IS NULL OR col = ?)` would make it scan the table.
    let mut sql = String::from(
        "SELECT site, case_no, unit, window, level, due, open, problem, state, view, provisional FROM cases WHERE 1",
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    let conditions: [(&str, Option<&String>); 5] = [
        ("site", f.site.as_ref()),
        ("level", f.level.as_ref()),
        ("view", f.view.as_ref()),
        ("unit", f.unit.as_ref()),
        ("window", f.window.as_ref()),
    ];
    for (column, value) in conditions {
        if let Some(v) = value {
            args.push(v);
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    if let Some(no) = &case_no {
        args.push(no);
        sql.push_str(&format!(" AND case_no = ?{}", args.len()));
    }
    if f.view.is_none() && f.open.unwrap_or(true) {
        sql.push_str(" AND open = 1");
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    sql.push_str(&format!(" ORDER BY site, case_no LIMIT {limit}"));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(args.as_slice(), |r| {
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
                view: r.get(9)?,
                provisional: r.get::<_, Option<i32>>(10)?.is_some(),
                provisional_year: r.get(10)?,
                state: serde_json::from_str(&state).unwrap_or_default(),
                warnings: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = rows;
    let mut w = conn.prepare_cached("SELECT level, on_day, at_ms FROM case_warnings WHERE site = ?1 AND case_no = ?2 ORDER BY id")?;
    for case in out.iter_mut() {
        let provisional = case.provisional;
        case.warnings = w
            .query_map(params![case.site, case.case_no], |r| {
                Ok(WarningView {
                    level: r.get(0)?,
                    on_day: r.get(1)?,
                    at: super::fmt_ms(r.get(2)?),
                    provisional,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// One step of a case's timeline.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub stage: String,
    pub staff_id: String,
    pub body: serde_json::Value,
    /// The box marked this event back-dated: its own time, when the box received it, the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backdated: Option<sunlight_protocol::Backdated>,
}

/// A case with its whole story: stage events in event-time order, warnings, letters, ratings, work
/// orders and the notifications sent about it.
#[derive(Debug, Serialize)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseView,
    pub timeline: Vec<TimelineEntry>,
    pub letters: Vec<super::letters::LetterView>,
    pub ratings: Vec<super::ratings::RatingView>,
    pub work_orders: Vec<super::ratings::WorkOrderView>,
    pub notifications: Vec<notices::NoticeView>,
}

pub fn detail(
    conn: &Connection,
    site: &str,
    case_no: &str,
) -> rusqlite::Result<Option<CaseDetail>> {
    let filter = super::CaseFilter {
        site: Some(site.to_owned()),
        open: Some(false),
        limit: Some(1000),
        ..Default::default()
    };
    let row: Option<String> = conn
        .query_row(
            "SELECT events FROM cases WHERE site = ?1 AND case_no = ?2",
            params![site, case_no],
            |r| r.get(0),
        )
        .optional()?;
    let Some(events) = row else { return Ok(None) };
    let mut views = list_one(conn, &filter, case_no)?;
    let Some(case) = views.pop() else {
        return Ok(None);
    };
    let events: Vec<(String, serde_json::Value)> =
        serde_json::from_str(&events).unwrap_or_default();
    let timeline = events
        .into_iter()
        .map(|(at, mut body)| {
            let backdated = body
                .as_object_mut()
                .and_then(|f| f.remove(BACKDATED))
                .and_then(|m| serde_json::from_value(m).ok());
            TimelineEntry {
                at,
                stage: body["stage"].as_str().unwrap_or("").to_owned(),
                staff_id: body["staff_id"].as_str().unwrap_or("").to_owned(),
                body,
                backdated,
            }
        })
        .collect();
    Ok(Some(CaseDetail {
        case,
        timeline,
        letters: super::letters::list(conn, Some(site), Some(case_no), 10)?,
        ratings: super::ratings::for_case(conn, site, case_no)?,
        work_orders: super::ratings::list(conn, Some(site), None, Some(case_no), 100)?,
        notifications: notices::list(conn, None, Some(&format!("case:{site}:{case_no}:")), 100)?,
    }))
}
