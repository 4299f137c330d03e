//! The working-day calendar of the box's snapshot schedule, as the hub sends it (issue 15 part 4).
//!
//! The hub sends its calendar — the official years it holds and its admins' overrides — as a
//! sealed `set_calendar` command when it changes and when the box is registered
//! ([`sunlight_protocol::holidays::PushedCalendar`]). The box checks it ([`crate::commands`]),
//! keeps it in the outbox database (table `calendar`, one row, replaced whole in the transaction
//! that records the command and appends its answer) and puts it in force for every camera's
//! schedule at once ([`LiveCalendar`]); it is read back at each start.
//!
//! For any date the schedule asks, in order: the hub's override, the hub's official year, the
//! official data shipped with this agent, and the provisional year of the statutory holidays
//! (decision 0014) — never "every weekday is a working day" for a year from 2025 on.

use crate::error::Error;
use chrono::{NaiveDate, TimeZone};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, RwLock};
use sunlight_protocol::holidays::{Official, OfficialDay, PushedCalendar, Source};

/// The calendar's table in the outbox database.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calendar (
    id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT NOT NULL, issued TEXT NOT NULL,
    loaded_ms INTEGER NOT NULL, source TEXT NOT NULL, json TEXT NOT NULL);
";

/// A calendar as the box stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub calendar: PushedCalendar,
    /// Unix ms when it was stored on this box.
    pub loaded_ms: i64,
    /// Where it came from: `command <cmd_id>`.
    pub source: String,
}

/// Replaces the stored calendar (inside the caller's transaction).
pub(crate) fn store(
    conn: &Connection,
    calendar: &PushedCalendar,
    source: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO calendar (id, version, issued, loaded_ms, source, json) VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET version = ?1, issued = ?2, loaded_ms = ?3, source = ?4, json = ?5",
        params![
            calendar.version,
            calendar.issued,
            chrono::Utc::now().timestamp_millis(),
            source,
            calendar.to_args().to_string()
        ],
    )?;
    Ok(())
}

/// The stored calendar, or `None` when the hub never sent one. One that no longer reads is logged
/// and treated as none (the schedule then follows the shipped data and the provisional years).
pub(crate) fn read(conn: &Connection) -> rusqlite::Result<Option<Received>> {
    let row: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT loaded_ms, source, json FROM calendar WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((loaded_ms, source, text)) = row else {
        return Ok(None);
    };
    let parsed = serde_json::from_str::<Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| PushedCalendar::from_args(&v));
    match parsed {
        Ok(calendar) => Ok(Some(Received {
            calendar,
            loaded_ms,
            source,
        })),
        Err(e) => {
            tracing::error!(error = %e, "the stored calendar is unreadable; the schedule follows the shipped data until the hub sends it again");
            Ok(None)
        }
    }
}

/// The calendar stored in the outbox database at `path` (the outbox must have been opened once).
pub fn load(path: &Path) -> Result<Option<Received>, Error> {
    let conn = crate::outbox::connect(path)?;
    let db = |source| Error::Db {
        path: path.to_owned(),
        source,
    };
    conn.execute_batch(SCHEMA).map_err(db)?;
    read(&conn).map_err(db)
}

/// The calendar in force on this box: the hub's (replaced at once when a new one is stored) over
/// the shipped data and the provisional years. Clones share it.
#[derive(Debug, Clone)]
pub struct LiveCalendar {
    shipped: Arc<Official>,
    received: Arc<RwLock<Option<Arc<Received>>>>,
}

impl LiveCalendar {
    pub fn new(shipped: Official, received: Option<Received>) -> LiveCalendar {
        LiveCalendar {
            shipped: Arc::new(shipped),
            received: Arc::new(RwLock::new(received.map(Arc::new))),
        }
    }

    /// Puts a calendar just stored in force.
    pub fn set(&self, received: Received) {
        let mut slot = self.received.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::new(received));
    }

    /// The hub's calendar in force, if one was received.
    pub fn received(&self) -> Option<Arc<Received>> {
        self.received
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the calendar says of `d`, with its layer: the hub's override or official year, else the
    /// shipped data, else the provisional year; `None` for a year before 2025 nobody has data of.
    /// An override that makes `d` a working day answers [`OfficialDay::MakeUpWorkday`], one that
    /// makes it a day off [`OfficialDay::Holiday`].
    pub fn day(&self, d: NaiveDate) -> Option<(OfficialDay, Source)> {
        if let Some(answer) = self.received().and_then(|r| r.calendar.day(d)) {
            return Some(answer);
        }
        self.shipped.day_or_provisional(d)
    }

    /// For status: the hub's calendar in force (or that there is none).
    pub fn json(&self) -> Value {
        match self.received() {
            Some(r) => json!({
                "version": r.calendar.version,
                "issued": r.calendar.issued,
                "source": r.source,
                "loaded_ms": r.loaded_ms,
                "official_years": r.calendar.official.years().collect::<Vec<_>>(),
                "overrides": r.calendar.overrides.len(),
            }),
            None => json!({"version": null}),
        }
    }
}

/// How one day reads, for `sunlight-agent calendar show`.
pub fn describe(calendar: &LiveCalendar, d: NaiveDate, office_days: &[chrono::Weekday]) -> String {
    use chrono::Datelike;
    let (office, why) = match calendar.day(d) {
        Some((OfficialDay::Holiday, s)) => (false, layer(s, calendar, d)),
        Some((OfficialDay::MakeUpWorkday, s)) => (true, layer(s, calendar, d)),
        Some((OfficialDay::Ordinary, s)) => (
            office_days.contains(&d.weekday()),
            format!("{}, office_days", layer(s, calendar, d)),
        ),
        None => (
            office_days.contains(&d.weekday()),
            "no data for the year: office_days".into(),
        ),
    };
    format!(
        "{d} {}  {}  ({why})",
        d.format("%a"),
        if office { "office day" } else { "day off   " }
    )
}

fn layer(source: Source, calendar: &LiveCalendar, d: NaiveDate) -> String {
    use chrono::Datelike;
    let from_hub = calendar
        .received()
        .is_some_and(|r| r.calendar.official.has_year(d.year()));
    match source {
        Source::Override => "hub override".into(),
        Source::Official if from_hub => "official, from the hub".into(),
        Source::Official => "official, shipped with the agent".into(),
        Source::Provisional => "provisional: statutory holidays only".into(),
    }
}

/// `when` in `tz`, for `sunlight-agent calendar show --at`.
pub fn local_time<Tz: TimeZone>(tz: &Tz, text: &str) -> Result<chrono::DateTime<Tz>, String> {
    let naive = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M")
        .map_err(|_| format!("{text:?} is not \"YYYY-MM-DD HH:MM\""))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| format!("{text:?} does not exist in the box's time zone"))
}
