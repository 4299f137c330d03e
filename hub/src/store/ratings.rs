//! Ratings (好差评) and the work orders bad ratings open (OVERSIGHT.md §4): one rating per case and
//! channel (a second one is kept, marked duplicate, and not counted); a completed case left unrated
//! for 7 days counts as 基本满意; a rating of 不满意 or worse opens a work order with a callback
//! deadline and a fix deadline on the county calendar, followed through callback → classification →
//! fix → feedback.

use super::notices::{self, Notice};
use crate::config::HubConfig;
use crate::oversight::calendar::{Calendar, DayUnit};
use chrono::{Days, NaiveDate};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sunlight_protocol::event::bodies::Rating;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, case_no TEXT, window TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL DEFAULT '', staff_id TEXT, channel TEXT NOT NULL, level INTEGER NOT NULL,
    at TEXT NOT NULL, day TEXT NOT NULL, defaulted INTEGER NOT NULL DEFAULT 0,
    duplicate INTEGER NOT NULL DEFAULT 0, reason_codes TEXT, comment TEXT, indicators TEXT);
CREATE INDEX IF NOT EXISTS ratings_by_case ON ratings (site, case_no);
CREATE INDEX IF NOT EXISTS ratings_by_day ON ratings (day);
CREATE TABLE IF NOT EXISTS work_orders (
    id INTEGER PRIMARY KEY, rating_id INTEGER NOT NULL UNIQUE, site TEXT NOT NULL, case_no TEXT,
    unit TEXT NOT NULL, window TEXT NOT NULL, staff_id TEXT, level INTEGER NOT NULL,
    opened_day TEXT NOT NULL, callback_due TEXT, fix_due TEXT, status TEXT NOT NULL,
    classification TEXT, callback_day TEXT, fixed_day TEXT, feedback TEXT,
    history TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS work_orders_by_status ON work_orders (status, id);
";

/// The level names of the national 好差评 rules.
pub fn level_zh(level: u8) -> &'static str {
    match level {
        5 => "非常满意",
        4 => "满意",
        3 => "基本满意",
        2 => "不满意",
        _ => "非常不满意",
    }
}

/// Records a rating event; opens a work order for a bad one.
pub fn apply_event(
    conn: &Connection,
    config: &HubConfig,
    cal: &Calendar,
    site: &str,
    at: &str,
    body: &str,
) -> rusqlite::Result<()> {
    let (Ok(rating), Some(day)) = (
        serde_json::from_str::<Rating>(body),
        super::cases::day_of(at),
    ) else {
        return Ok(());
    };
    // Unit, window and handler come from the case when the rating names one.
    let case: Option<(String, String, String)> = match &rating.case_no {
        Some(no) => conn
            .query_row(
                "SELECT unit, window, json_extract(state, '$.staff_id') FROM cases WHERE site = ?1 AND case_no = ?2",
                params![site, no],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<String>>(2)?.unwrap_or_default())),
            )
            .optional()?,
        None => None,
    };
    let (unit, window, staff) = match case {
        Some((u, w, s)) => (u, w, rating.staff_id.clone().unwrap_or(s)),
        None => (
            String::new(),
            rating.window.clone().unwrap_or_default(),
            rating.staff_id.clone().unwrap_or_default(),
        ),
    };
    let channel = rating.channel.as_str();
    let duplicate = match &rating.case_no {
        Some(no) => {
            // A real rating replaces the 7-day default, which was only a stand-in.
            conn.execute(
                "DELETE FROM ratings WHERE site = ?1 AND case_no = ?2 AND defaulted = 1",
                params![site, no],
            )?;
            conn.query_row(
                "SELECT count(*) FROM ratings WHERE site = ?1 AND case_no = ?2 AND channel = ?3 AND duplicate = 0",
                params![site, no, channel],
                |r| r.get::<_, i64>(0),
            )? > 0
        }
        None => false,
    };
    conn.execute(
        "INSERT INTO ratings (site, case_no, window, unit, staff_id, channel, level, at, day, duplicate, reason_codes, comment, indicators)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            site,
            rating.case_no,
            window,
            unit,
            staff,
            channel,
            rating.level,
            at,
            day.to_string(),
            duplicate,
            rating.reason_codes.as_ref().and_then(|r| serde_json::to_string(r).ok()),
            rating.comment,
            rating.indicators.as_ref().and_then(|i| serde_json::to_string(i).ok()),
        ],
    )?;
    let rating_id = conn.last_insert_rowid();
    if let Some(no) = &rating.case_no {
        conn.execute(
            "UPDATE cases SET rated = 1 WHERE site = ?1 AND case_no = ?2",
            params![site, no],
        )?;
    }
    if duplicate {
        tracing::info!(site, case_no = ?rating.case_no, channel, "second rating of a case on one channel: kept, not counted");
        return Ok(());
    }
    if rating.level <= config.ratings.bad_at_or_below {
        open_work_order(
            conn,
            config,
            cal,
            OpenOrder {
                rating_id,
                site,
                case_no: rating.case_no.as_deref(),
                unit: &unit,
                window: &window,
                staff_id: &staff,
                level: rating.level,
                day,
                comment: rating.comment.as_deref().unwrap_or(""),
            },
        )?;
    }
    Ok(())
}

struct OpenOrder<'a> {
    rating_id: i64,
    site: &'a str,
    case_no: Option<&'a str>,
    unit: &'a str,
    window: &'a str,
    staff_id: &'a str,
    level: u8,
    day: NaiveDate,
    comment: &'a str,
}

fn open_work_order(
    conn: &Connection,
    config: &HubConfig,
    cal: &Calendar,
    o: OpenOrder<'_>,
) -> rusqlite::Result<()> {
    let rules = &config.ratings;
    let due = |n| match cal.add_days(o.day, n, DayUnit::Working) {
        Ok(d) => Some(d.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "work order deadline unknown");
            None
        }
    };
    let (callback_due, fix_due) = (
        due(rules.callback_working_days),
        due(rules.fix_working_days),
    );
    let history = serde_json::json!([{ "day": o.day.to_string(), "action": "opened", "by": "system",
        "note": format!("{} ({})", level_zh(o.level), o.comment) }]);
    conn.execute(
        "INSERT OR IGNORE INTO work_orders (rating_id, site, case_no, unit, window, staff_id, level, opened_day,
                                            callback_due, fix_due, status, history, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'open', ?11, ?12)",
        params![
            o.rating_id,
            o.site,
            o.case_no,
            o.unit,
            o.window,
            o.staff_id,
            o.level,
            o.day.to_string(),
            callback_due,
            fix_due,
            history.to_string(),
            super::now_ms()
        ],
    )?;
    let id = conn.last_insert_rowid();
    notices::enqueue(
        conn,
        config,
        &Notice {
            key: format!("work_order:{id}"),
            day: o.day,
            site: o.site,
            unit: o.unit,
            staff_id: o.staff_id,
            roles: &config.notify.work_order,
            subject: format!(
                "差评工单 {id}：{} {} 窗口 {}",
                o.site,
                o.unit,
                level_zh(o.level)
            ),
            text: format!(
                "{} {} 窗口收到“{}”评价（办件 {}）：{}。请于 {} 前回访，{} 前整改。",
                o.site,
                o.window,
                level_zh(o.level),
                o.case_no.unwrap_or("—"),
                if o.comment.is_empty() {
                    "未填写意见"
                } else {
                    o.comment
                },
                callback_due.as_deref().unwrap_or("（日历缺失）"),
                fix_due.as_deref().unwrap_or("（日历缺失）"),
            ),
        },
    )?;
    Ok(())
}

/// Completed cases unrated for `unrated_after_days` get the default rating. Returns how many.
pub fn default_unrated(
    conn: &Connection,
    config: &HubConfig,
    today: NaiveDate,
) -> rusqlite::Result<usize> {
    let days = config.ratings.unrated_after_days;
    let Some(cutoff) = today.checked_sub_days(Days::new(days.into())) else {
        return Ok(0);
    };
    let cases: Vec<(String, String, String, String, String, String)> = conn
        .prepare_cached(
            "SELECT site, case_no, unit, window, json_extract(state, '$.staff_id'), completed FROM cases
             WHERE rated = 0 AND completed IS NOT NULL AND completed <= ?1",
        )?
        .query_map([cutoff.to_string()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (site, case_no, unit, window, staff, completed) in &cases {
        let day = NaiveDate::parse_from_str(completed, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.checked_add_days(Days::new(days.into())))
            .unwrap_or(today);
        conn.execute(
            "INSERT INTO ratings (site, case_no, window, unit, staff_id, channel, level, at, day, defaulted)
             VALUES (?1, ?2, ?3, ?4, ?5, 'default', ?6, ?7, ?7, 1)",
            params![site, case_no, window, unit, staff, config.ratings.unrated_level, day.to_string()],
        )?;
        conn.execute(
            "UPDATE cases SET rated = 1 WHERE site = ?1 AND case_no = ?2",
            params![site, case_no],
        )?;
    }
    Ok(cases.len())
}

/// Classification of a bad rating after the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    #[serde(rename = "属实")]
    Upheld,
    #[serde(rename = "不实")]
    Unfounded,
    #[serde(rename = "误评")]
    Mistaken,
    #[serde(rename = "恶意")]
    Malicious,
}

impl Classification {
    pub fn zh(self) -> &'static str {
        match self {
            Classification::Upheld => "属实",
            Classification::Unfounded => "不实",
            Classification::Mistaken => "误评",
            Classification::Malicious => "恶意",
        }
    }
}

/// What a supervisor does with a work order (`POST /api/v1/work-orders/{id}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkOrderAction {
    /// The person was called back.
    Callback { by: String, note: String },
    /// What the callback found.
    Classify {
        by: String,
        classification: Classification,
        note: Option<String>,
    },
    /// The cause was fixed (only for a 属实 rating).
    Fix { by: String, note: String },
    /// The person was told the outcome; closes the order.
    Feedback { by: String, note: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("no work order {0}")]
    NotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Applies an action to a work order in its order: open → called_back → classified → fixed →
/// closed (a rating found 不实, 误评 or 恶意 needs no fix).
pub fn act(
    conn: &Connection,
    id: i64,
    action: &WorkOrderAction,
    today: NaiveDate,
) -> Result<WorkOrderView, ActError> {
    let (status, classification, history): (String, Option<String>, String) = conn
        .query_row(
            "SELECT status, classification, history FROM work_orders WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or(ActError::NotFound(id))?;
    let upheld = classification.as_deref() == Some("属实");
    let (next, by, note, name) = match (status.as_str(), action) {
        ("open", WorkOrderAction::Callback { by, note }) => {
            ("called_back", by, note.clone(), "callback")
        }
        (
            "called_back",
            WorkOrderAction::Classify {
                by,
                classification,
                note,
            },
        ) => (
            "classified",
            by,
            format!("{} {}", classification.zh(), note.as_deref().unwrap_or(""))
                .trim()
                .to_owned(),
            "classify",
        ),
        ("classified", WorkOrderAction::Fix { by, note }) if upheld => {
            ("fixed", by, note.clone(), "fix")
        }
        ("classified", WorkOrderAction::Feedback { .. }) if upheld => {
            return Err(ActError::Conflict(
                "a 属实 rating is fixed before the feedback: record the fix first".into(),
            ));
        }
        ("classified", WorkOrderAction::Fix { .. }) => {
            return Err(ActError::Conflict(format!(
                "the rating was classified {}: there is nothing to fix, give the feedback",
                classification.unwrap_or_default()
            )));
        }
        ("classified" | "fixed", WorkOrderAction::Feedback { by, note }) => {
            ("closed", by, note.clone(), "feedback")
        }
        (status, action) => {
            let expected = match status {
                "open" => "callback",
                "called_back" => "classify",
                "classified" => "fix or feedback",
                "fixed" => "feedback",
                _ => "nothing: the work order is closed",
            };
            return Err(ActError::Conflict(format!(
                "work order {id} is {status}; {action:?} is not the next step (expected {expected})"
            )));
        }
    };
    if by.trim().is_empty() {
        return Err(ActError::Conflict("`by` must name who acted".into()));
    }
    let mut history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap_or_default();
    history.push(
        serde_json::json!({ "day": today.to_string(), "action": name, "by": by, "note": note,
        "at": super::fmt_ms(super::now_ms()) }),
    );
    let day = today.to_string();
    conn.execute(
        "UPDATE work_orders SET status = ?2, history = ?3, updated_ms = ?4,
             callback_day = CASE WHEN ?2 = 'called_back' THEN ?5 ELSE callback_day END,
             classification = CASE WHEN ?2 = 'classified' THEN ?6 ELSE classification END,
             fixed_day = CASE WHEN ?2 = 'fixed' THEN ?5 ELSE fixed_day END,
             feedback = CASE WHEN ?2 = 'closed' THEN ?7 ELSE feedback END
         WHERE id = ?1",
        params![
            id,
            next,
            serde_json::Value::Array(history).to_string(),
            super::now_ms(),
            day,
            match action {
                WorkOrderAction::Classify { classification, .. } => Some(classification.zh()),
                _ => None,
            },
            note
        ],
    )?;
    get(conn, id)?.ok_or(ActError::NotFound(id))
}

#[derive(Debug, Serialize)]
pub struct WorkOrderView {
    pub id: i64,
    pub site: String,
    pub case_no: Option<String>,
    pub unit: String,
    pub window: String,
    pub staff_id: Option<String>,
    pub level: u8,
    pub level_name: &'static str,
    pub opened_day: String,
    pub callback_due: Option<String>,
    pub fix_due: Option<String>,
    pub status: String,
    pub classification: Option<String>,
    pub callback_day: Option<String>,
    pub fixed_day: Option<String>,
    pub feedback: Option<String>,
    pub history: serde_json::Value,
}

const WORK_ORDER_COLUMNS: &str =
    "id, site, case_no, unit, window, staff_id, level, opened_day, callback_due, fix_due,
    status, classification, callback_day, fixed_day, feedback, history";

fn work_order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkOrderView> {
    let level: u8 = r.get(6)?;
    let history: String = r.get(15)?;
    Ok(WorkOrderView {
        id: r.get(0)?,
        site: r.get(1)?,
        case_no: r.get(2)?,
        unit: r.get(3)?,
        window: r.get(4)?,
        staff_id: r.get(5)?,
        level,
        level_name: level_zh(level),
        opened_day: r.get(7)?,
        callback_due: r.get(8)?,
        fix_due: r.get(9)?,
        status: r.get(10)?,
        classification: r.get(11)?,
        callback_day: r.get(12)?,
        fixed_day: r.get(13)?,
        feedback: r.get(14)?,
        history: serde_json::from_str(&history).unwrap_or_default(),
    })
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<WorkOrderView>> {
    conn.query_row(
        &format!("SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE id = ?1"),
        [id],
        work_order_row,
    )
    .optional()
}

pub fn list(
    conn: &Connection,
    site: Option<&str>,
    status: Option<&str>,
    case_no: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<WorkOrderView>> {
    conn.prepare_cached(&format!(
        "SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR status = ?2)
         AND (?3 IS NULL OR case_no = ?3) ORDER BY id DESC LIMIT ?4"
    ))?
    .query_map(params![site, status, case_no, limit.clamp(1, 1000)], work_order_row)?
    .collect()
}

#[derive(Debug, Serialize)]
pub struct RatingView {
    pub id: i64,
    pub site: String,
    pub case_no: Option<String>,
    pub window: String,
    pub unit: String,
    pub channel: String,
    pub level: u8,
    pub level_name: &'static str,
    pub day: String,
    pub defaulted: bool,
    pub duplicate: bool,
    pub comment: Option<String>,
}

pub fn for_case(conn: &Connection, site: &str, case_no: &str) -> rusqlite::Result<Vec<RatingView>> {
    conn.prepare_cached(
        "SELECT id, site, case_no, window, unit, channel, level, day, defaulted, duplicate, comment FROM ratings
         WHERE site = ?1 AND case_no = ?2 ORDER BY id",
    )?
    .query_map(params![site, case_no], |r| {
        let level: u8 = r.get(6)?;
        Ok(RatingView {
            id: r.get(0)?,
            site: r.get(1)?,
            case_no: r.get(2)?,
            window: r.get(3)?,
            unit: r.get(4)?,
            channel: r.get(5)?,
            level,
            level_name: level_zh(level),
            day: r.get(7)?,
            defaulted: r.get(8)?,
            duplicate: r.get(9)?,
            comment: r.get(10)?,
        })
    })?
    .collect()
}
