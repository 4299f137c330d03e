//! The complaints queue (OVERSIGHT.md §4; seed 002: 统一受理、归口办理、网上反馈): complaints from every
//! channel land in one queue and move 受理 → 调查 → 处置 → 反馈 → 归档, each step due a configured
//! number of working days after receipt. A complaint sent twice (same site and number) is one.

use super::notices::{self, Notice};
use crate::config::HubConfig;
use crate::oversight::calendar::{Calendar, DayUnit};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sunlight_protocol::event::bodies::Complaint;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS complaints (
    site TEXT NOT NULL, complaint_no TEXT NOT NULL, channel TEXT NOT NULL, about TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '', text TEXT NOT NULL, contact TEXT, received_day TEXT NOT NULL,
    stage TEXT NOT NULL, investigate_due TEXT, handle_due TEXT, feedback_due TEXT,
    outcome TEXT, history TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (site, complaint_no));
CREATE INDEX IF NOT EXISTS complaints_by_stage ON complaints (stage, received_day);
";

/// The steps of a complaint, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// 受理
    Received,
    /// 调查
    Investigating,
    /// 处置
    Handling,
    /// 反馈
    Feedback,
    /// 归档
    Archived,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::Received,
        Step::Investigating,
        Step::Handling,
        Step::Feedback,
        Step::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Received => "received",
            Step::Investigating => "investigating",
            Step::Handling => "handling",
            Step::Feedback => "feedback",
            Step::Archived => "archived",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Step::Received => "受理",
            Step::Investigating => "调查",
            Step::Handling => "处置",
            Step::Feedback => "反馈",
            Step::Archived => "归档",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn next(self) -> Option<Step> {
        Step::ALL.into_iter().skip_while(|s| *s != self).nth(1)
    }
}

/// Records a complaint event (the first one per number; a re-sent one is ignored).
pub fn apply_event(
    conn: &Connection,
    config: &HubConfig,
    cal: &Calendar,
    site: &str,
    at: &str,
    body: &str,
) -> rusqlite::Result<()> {
    let (Ok(c), Some(day)) = (
        serde_json::from_str::<Complaint>(body),
        super::cases::day_of(at),
    ) else {
        return Ok(());
    };
    let rules = &config.complaints;
    let due = |n| {
        cal.add_days(day, n, DayUnit::Working)
            .ok()
            .map(|d| d.to_string())
    };
    let unit = c
        .about
        .get("unit")
        .and_then(|u| u.as_str())
        .unwrap_or("")
        .to_owned();
    let history = serde_json::json!([{ "day": day.to_string(), "step": "received", "by": c.channel, "note": "" }]);
    let added = conn.execute(
        "INSERT OR IGNORE INTO complaints (site, complaint_no, channel, about, unit, text, contact, received_day, stage,
                                           investigate_due, handle_due, feedback_due, history, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'received', ?9, ?10, ?11, ?12, ?13)",
        params![
            site,
            c.complaint_no,
            c.channel,
            c.about.to_string(),
            unit,
            c.text,
            c.contact,
            day.to_string(),
            due(rules.investigate_working_days),
            due(rules.handle_working_days),
            due(rules.feedback_working_days),
            history.to_string(),
            super::now_ms()
        ],
    )?;
    if added == 1 {
        notices::enqueue(
            conn,
            config,
            &Notice {
                key: format!("complaint:{site}:{}", c.complaint_no),
                day,
                site,
                unit: &unit,
                staff_id: c
                    .about
                    .get("staff_id")
                    .and_then(|s| s.as_str())
                    .unwrap_or(""),
                roles: &config.notify.complaint,
                subject: format!("投诉 {}：{site} {unit}", c.complaint_no),
                text: format!(
                    "{site} 收到投诉 {}（{}）：{}",
                    c.complaint_no,
                    c.channel,
                    c.text.chars().take(200).collect::<String>()
                ),
            },
        )?;
    }
    Ok(())
}

/// `POST /api/v1/complaints/{site}/{no}`: move a complaint to its next step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    pub to: Step,
    pub by: String,
    #[serde(default)]
    pub note: String,
    /// At 归档: whether the complaint was upheld (counts against the unit and its awards).
    #[serde(default)]
    pub upheld: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    #[error("no complaint {1} at {0}")]
    NotFound(String, String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

pub fn advance(
    conn: &Connection,
    site: &str,
    no: &str,
    a: &Advance,
    today: NaiveDate,
) -> Result<ComplaintView, AdvanceError> {
    let (stage, history): (String, String) = conn
        .query_row(
            "SELECT stage, history FROM complaints WHERE site = ?1 AND complaint_no = ?2",
            params![site, no],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| AdvanceError::NotFound(site.into(), no.into()))?;
    let current = Step::parse(&stage).unwrap_or(Step::Received);
    if current.next() != Some(a.to) {
        return Err(AdvanceError::Conflict(match current.next() {
            Some(n) => format!(
                "complaint {no} is at {} ({}); the next step is {} ({}), not {}",
                current.as_str(),
                current.zh(),
                n.as_str(),
                n.zh(),
                a.to.as_str()
            ),
            None => format!("complaint {no} is archived"),
        }));
    }
    if a.by.trim().is_empty() {
        return Err(AdvanceError::Conflict("`by` must name who acted".into()));
    }
    if a.to == Step::Archived && a.upheld.is_none() {
        return Err(AdvanceError::Conflict(
            "archiving needs the outcome: \"upheld\": true or false".into(),
        ));
    }
    let mut history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap_or_default();
    history.push(
        serde_json::json!({ "day": today.to_string(), "step": a.to.as_str(), "by": a.by,
        "note": a.note, "at": super::fmt_ms(super::now_ms()) }),
    );
    conn.execute(
        "UPDATE complaints SET stage = ?3, history = ?4, updated_ms = ?5,
             outcome = CASE WHEN ?6 IS NULL THEN outcome WHEN ?6 THEN 'upheld' ELSE 'not_upheld' END
         WHERE site = ?1 AND complaint_no = ?2",
        params![
            site,
            no,
            a.to.as_str(),
            serde_json::Value::Array(history).to_string(),
            super::now_ms(),
            a.upheld
        ],
    )?;
    get(conn, site, no, today)?.ok_or_else(|| AdvanceError::NotFound(site.into(), no.into()))
}

#[derive(Debug, Serialize)]
pub struct ComplaintView {
    pub site: String,
    pub complaint_no: String,
    pub channel: String,
    pub about: serde_json::Value,
    pub unit: String,
    pub text: String,
    pub contact: Option<String>,
    pub received_day: String,
    pub stage: String,
    pub stage_name: &'static str,
    /// The day the next step is due, and whether that day has passed.
    pub next_due: Option<String>,
    pub overdue: bool,
    pub outcome: Option<String>,
    pub history: serde_json::Value,
}

const COLUMNS: &str =
    "site, complaint_no, channel, about, unit, text, contact, received_day, stage,
    investigate_due, handle_due, feedback_due, outcome, history";

fn row(today: NaiveDate) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<ComplaintView> {
    move |r| {
        let stage = Step::parse(&r.get::<_, String>(8)?).unwrap_or(Step::Received);
        let next_due: Option<String> = match stage {
            Step::Received => r.get(9)?,
            Step::Investigating => r.get(10)?,
            Step::Handling => r.get(11)?,
            Step::Feedback | Step::Archived => None,
        };
        let about: String = r.get(3)?;
        let history: String = r.get(13)?;
        Ok(ComplaintView {
            site: r.get(0)?,
            complaint_no: r.get(1)?,
            channel: r.get(2)?,
            about: serde_json::from_str(&about).unwrap_or_default(),
            unit: r.get(4)?,
            text: r.get(5)?,
            contact: r.get(6)?,
            received_day: r.get(7)?,
            stage: stage.as_str().into(),
            stage_name: stage.zh(),
            overdue: next_due
                .as_deref()
                .is_some_and(|d| d < today.to_string().as_str()),
            next_due,
            outcome: r.get(12)?,
            history: serde_json::from_str(&history).unwrap_or_default(),
        })
    }
}

pub fn get(
    conn: &Connection,
    site: &str,
    no: &str,
    today: NaiveDate,
) -> rusqlite::Result<Option<ComplaintView>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM complaints WHERE site = ?1 AND complaint_no = ?2"),
        params![site, no],
        row(today),
    )
    .optional()
}

pub fn list(
    conn: &Connection,
    site: Option<&str>,
    stage: Option<&str>,
    today: NaiveDate,
    limit: u32,
) -> rusqlite::Result<Vec<ComplaintView>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM complaints WHERE (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR stage = ?2)
         ORDER BY received_day DESC, complaint_no LIMIT ?3"
    ))?
    .query_map(params![site, stage, limit.clamp(1, 1000)], row(today))?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_seed_order() {
        assert_eq!(Step::Received.next(), Some(Step::Investigating));
        assert_eq!(Step::Feedback.next(), Some(Step::Archived));
        assert_eq!(Step::Archived.next(), None);
        let names: Vec<_> = Step::ALL.iter().map(|s| s.zh()).collect();
        assert_eq!(names.concat(), "受理调查处置反馈归档");
    }
}
