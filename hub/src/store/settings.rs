//! What admins change in the running hub (issue 6): calendar overrides (OVERSIGHT.md §1) and the
//! database copies of hub.toml sections that win over the file once saved. The running parts read
//! them through [`crate::supervise::Supervision`], which is swapped after each change.

use crate::oversight::calendar::{Calendar, CalendarError};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use sunlight_protocol::holidays::Official;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calendar_overrides (
    day TEXT PRIMARY KEY, working INTEGER NOT NULL, reason TEXT NOT NULL,
    set_by TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, set_by TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calendar_years (
    year INTEGER PRIMARY KEY, source TEXT NOT NULL,
    data TEXT NOT NULL,              -- the year in the format of holidays-cn.toml
    loaded_by TEXT NOT NULL, at_ms INTEGER NOT NULL);
";

/// The `settings` key whose value changes with every loaded year: the running hub's tick sees
/// a year loaded by `sunlight-hub calendar import` (another process) by it.
pub const CALENDAR_LOADED: &str = "calendar.loaded";

/// Longest range one override form may cover (a holiday week, a flood closure).
pub const MAX_RANGE_DAYS: i64 = 31;

/// One admin override of the calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub day: NaiveDate,
    pub working: bool,
    pub reason: String,
    pub set_by: String,
    pub at_ms: i64,
}

/// Why an override form is refused, in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub zh: String,
    pub en: String,
}

impl Refused {
    fn new(zh: String, en: String) -> Refused {
        Refused { zh, en }
    }
}

/// The days of an override form: `from`, and `to` if given (inclusive, at most a month), with a
/// reason. Checked before anything is written.
pub fn override_days(from: &str, to: &str, reason: &str) -> Result<Vec<NaiveDate>, Refused> {
    let parse = |s: &str| {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
            Refused::new(
                format!("日期 {s:?} 格式不对，应为 YYYY-MM-DD（如 2025-11-05）。"),
                format!("Date {s:?} is not YYYY-MM-DD (e.g. 2025-11-05)."),
            )
        })
    };
    let first = parse(from)?;
    let last = if to.trim().is_empty() {
        first
    } else {
        parse(to)?
    };
    if last < first {
        return Err(Refused::new(
            format!("结束日期 {last} 早于开始日期 {first}。"),
            format!("The end {last} is before the start {first}."),
        ));
    }
    if (last - first).num_days() >= MAX_RANGE_DAYS {
        return Err(Refused::new(
            format!("一次最多设置 {MAX_RANGE_DAYS} 天（{first} 至 {last} 太长）。"),
            format!("At most {MAX_RANGE_DAYS} days at a time ({first} to {last} is longer)."),
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused::new(
            "请填写原因（如：防汛停止对外办公）。".into(),
            "Give a reason (e.g. closed for flood duty).".into(),
        ));
    }
    if reason.chars().count() > 200 {
        return Err(Refused::new(
            "原因不超过 200 字。".into(),
            "The reason is at most 200 characters.".into(),
        ));
    }
    Ok(first.iter_days().take_while(|d| *d <= last).collect())
}

/// Sets (or replaces) the override of each day.
pub fn set_overrides(
    conn: &Connection,
    days: &[NaiveDate],
    working: bool,
    reason: &str,
    by: &str,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO calendar_overrides (day, working, reason, set_by, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (day) DO UPDATE SET working = ?2, reason = ?3, set_by = ?4, at_ms = ?5",
    )?;
    for d in days {
        stmt.execute(params![
            d.to_string(),
            working,
            reason.trim(),
            by,
            super::now_ms()
        ])?;
    }
    Ok(())
}

/// Removes the override of `day`; returns it if there was one.
pub fn remove_override(conn: &Connection, day: NaiveDate) -> rusqlite::Result<Option<Override>> {
    let found = get_override(conn, day)?;
    if found.is_some() {
        conn.execute(
            "DELETE FROM calendar_overrides WHERE day = ?1",
            [day.to_string()],
        )?;
    }
    Ok(found)
}

fn override_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Override> {
    let day: String = r.get(0)?;
    Ok(Override {
        day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        working: r.get(1)?,
        reason: r.get(2)?,
        set_by: r.get(3)?,
        at_ms: r.get(4)?,
    })
}

pub fn get_override(conn: &Connection, day: NaiveDate) -> rusqlite::Result<Option<Override>> {
    conn.prepare_cached(
        "SELECT day, working, reason, set_by, at_ms FROM calendar_overrides WHERE day = ?1",
    )?
    .query_row([day.to_string()], override_row)
    .optional()
}

/// Every override, in date order.
pub fn overrides(conn: &Connection) -> rusqlite::Result<Vec<Override>> {
    conn.prepare_cached(
        "SELECT day, working, reason, set_by, at_ms FROM calendar_overrides ORDER BY day",
    )?
    .query_map([], override_row)?
    .collect()
}

/// A year of official data loaded at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedYear {
    pub year: i32,
    pub source: String,
    pub data: String,
    pub loaded_by: String,
    pub at_ms: i64,
}

/// The years loaded at run time, by year.
pub fn loaded_years(conn: &Connection) -> rusqlite::Result<Vec<LoadedYear>> {
    conn.prepare_cached(
        "SELECT year, source, data, loaded_by, at_ms FROM calendar_years ORDER BY year",
    )?
    .query_map([], |r| {
        Ok(LoadedYear {
            year: r.get(0)?,
            source: r.get(1)?,
            data: r.get(2)?,
            loaded_by: r.get(3)?,
            at_ms: r.get(4)?,
        })
    })?
    .collect()
}

/// What loading a year changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub year: i32,
    pub source: String,
    /// What answered for the year before: `official`, `provisional` or `missing`.
    pub before: &'static str,
    /// The days whose working/off changed, with what they are now (`true`: working).
    pub changed: Vec<(NaiveDate, bool)>,
}

/// Why a file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Loads a year's official arrangement (the project's TOML or holiday-cn JSON, checked by
/// [`sunlight_protocol::holidays::Official::import`]) into the store, with an audit entry of each
/// year's before → after, and marks every open case for re-evaluation on `today`. The caller puts
/// the new calendar in force ([`crate::supervise::reload_calendar`]); another process's tick does
/// it on seeing [`CALENDAR_LOADED`] change.
pub fn import_calendar(
    conn: &Connection,
    text: &str,
    by: &str,
    today: NaiveDate,
) -> Result<Vec<Imported>, ImportError> {
    let loaded = Official::import(text).map_err(ImportError::Refused)?;
    let before = calendar(conn).map_err(ImportError::Refused)?;
    let mut after = before.clone();
    after.load_official(&loaded);
    let mut out = Vec::new();
    for year in loaded.years() {
        let (Some(first), Some(last)) = (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year, 12, 31),
        ) else {
            continue;
        };
        let was = if before.official_data().has_year(year) {
            "official"
        } else if !before.provisional_years(year, year).is_empty() {
            "provisional"
        } else {
            "missing"
        };
        let changed: Vec<(NaiveDate, bool)> = first
            .iter_days()
            .take_while(|d| *d <= last)
            .filter_map(|d| {
                let now = after.is_workday(d).ok()?;
                (before.is_workday(d).ok() != Some(now)).then_some((d, now))
            })
            .collect();
        let source = loaded.source(year).unwrap_or_default().to_owned();
        let data = loaded.year_toml(year).unwrap_or_default();
        conn.execute(
            "INSERT INTO calendar_years (year, source, data, loaded_by, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (year) DO UPDATE SET source = ?2, data = ?3, loaded_by = ?4, at_ms = ?5",
            params![year, source, data, by, super::now_ms()],
        )?;
        let days: Vec<String> = changed
            .iter()
            .map(|(d, working)| {
                format!(
                    "{d} {}",
                    if *working {
                        "off→working"
                    } else {
                        "working→off"
                    }
                )
            })
            .collect();
        super::audit(
            conn,
            by,
            "calendar.import",
            &format!("calendar:{year}"),
            &format!(
                "{was} → official ({source}); {} days changed{}{}",
                changed.len(),
                if days.is_empty() { "" } else { ": " },
                days.join(", ")
            ),
        )?;
        out.push(Imported {
            year,
            source,
            before: was,
            changed,
        });
    }
    put_setting(conn, CALENDAR_LOADED, &super::now_ms().to_string(), by)?;
    crate::store::cases::recheck_open(conn, today)?;
    Ok(out)
}

/// The calendar in force: the official data shipped with the hub, the years loaded since, and the
/// stored overrides over both.
pub fn calendar(conn: &Connection) -> Result<Calendar, String> {
    let mut cal = Calendar::official().map_err(|e: CalendarError| e.to_string())?;
    for y in loaded_years(conn).map_err(|e| e.to_string())? {
        let data = Official::parse(&y.data)
            .map_err(|e| format!("the stored calendar year {}: {e}", y.year))?;
        cal.load_official(&data);
    }
    for o in overrides(conn).map_err(|e| e.to_string())? {
        cal.set_override(o.day, o.working);
    }
    Ok(cal)
}

/// A stored copy of a hub.toml section: its text, who saved it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub value: String,
    pub set_by: String,
    pub at_ms: i64,
}

pub fn get_setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<Saved>> {
    conn.prepare_cached("SELECT value, set_by, at_ms FROM settings WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(Saved {
                value: r.get(0)?,
                set_by: r.get(1)?,
                at_ms: r.get(2)?,
            })
        })
        .optional()
}

pub fn put_setting(conn: &Connection, key: &str, value: &str, by: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value, set_by, at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET value = ?2, set_by = ?3, at_ms = ?4",
        params![key, value, by, super::now_ms()],
    )?;
    Ok(())
}

/// Drops the database copy: the hub.toml section is in force again.
pub fn clear_setting(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM settings WHERE key = ?1", [key])? > 0)
}

/// The key of the admins' copy of `[attendance]`.
pub const ATTENDANCE: &str = "attendance";

/// hub.toml with the sections saved in the database in their place.
pub fn effective_config(
    conn: &Connection,
    file: &crate::config::HubConfig,
) -> Result<crate::config::HubConfig, String> {
    let mut c = file.clone();
    if let Some(saved) = get_setting(conn, ATTENDANCE).map_err(|e| e.to_string())? {
        c.attendance = parse_attendance(&saved.value).map_err(|r| r.en)?;
    }
    if let Some(saved) = get_setting(conn, NOTIFY).map_err(|e| e.to_string())? {
        parse_notify(&saved.value).map_err(|r| r.en)?.apply(&mut c);
    }
    Ok(c)
}

/// The key of the admins' copy of the notification rules.
pub const NOTIFY: &str = "notify";

/// The notification rules an admin may edit: `[notify]` without its webhook (a secret, hub.toml
/// only) and its retry delays, and the `[[contacts]]`. Keys left out take the defaults.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRules {
    #[serde(default)]
    pub ladder: crate::config::Ladder,
    #[serde(default = "default_work_order")]
    pub work_order: Vec<crate::config::Role>,
    #[serde(default = "default_complaint")]
    pub complaint: Vec<crate::config::Role>,
    #[serde(default)]
    pub digest: crate::config::DigestConfig,
    #[serde(default)]
    pub contacts: Vec<crate::config::Contact>,
}

fn default_work_order() -> Vec<crate::config::Role> {
    crate::config::NotifyConfig::default().work_order
}

fn default_complaint() -> Vec<crate::config::Role> {
    crate::config::NotifyConfig::default().complaint
}

impl NotifyRules {
    /// The rules in force in `c`.
    pub fn of(c: &crate::config::HubConfig) -> NotifyRules {
        NotifyRules {
            ladder: c.notify.ladder.clone(),
            work_order: c.notify.work_order.clone(),
            complaint: c.notify.complaint.clone(),
            digest: c.notify.digest.clone(),
            contacts: c.contacts.clone(),
        }
    }

    /// Puts these rules into `c`, leaving its webhook and retry delays as they are.
    pub fn apply(self, c: &mut crate::config::HubConfig) {
        c.notify.ladder = self.ladder;
        c.notify.work_order = self.work_order;
        c.notify.complaint = self.complaint;
        c.notify.digest = self.digest;
        c.contacts = self.contacts;
    }
}

/// Notification rules as an admin submits them (TOML: `ladder`, `work_order`, `complaint`,
/// `digest` and `[[contacts]]`), checked: the roles parse, no webhook or retry keys (those stay in
/// hub.toml), every contact has a name and an address, a contact's site is a valid site id, the
/// digest hour is 0–23.
pub fn parse_notify(text: &str) -> Result<NotifyRules, Refused> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        Refused::new(
            format!("无法解析（TOML 格式）：{e}"),
            format!("Cannot read it (TOML): {e}"),
        )
    })?;
    for key in ["webhook", "retry_secs", "retry_max_secs"] {
        if table.contains_key(key) {
            return Err(Refused::new(
                format!("{key} 只能在 hub.toml 中设置（推送地址和令牌属于机密），请从文本中删除。"),
                format!(
                    "{key} is set in hub.toml only (the gateway's address and token are a secret): remove it from the text."
                ),
            ));
        }
    }
    let r: NotifyRules = toml::Value::Table(table).try_into().map_err(|e| {
        Refused::new(
            format!("通知规则有误：{e}"),
            format!("Bad notification rules: {e}"),
        )
    })?;
    if r.digest.hour > 23 {
        return Err(Refused::new(
            format!("digest.hour 应在 0–23 之间，而不是 {}。", r.digest.hour),
            format!("digest.hour is 0–23, not {}.", r.digest.hour),
        ));
    }
    for (i, c) in r.contacts.iter().enumerate() {
        let n = i + 1;
        if c.name.trim().is_empty() || c.to.trim().is_empty() {
            return Err(Refused::new(
                format!("第 {n} 个联系人缺少姓名（name）或号码（to）。"),
                format!("Contact {n} has no name or no address (to)."),
            ));
        }
        if let Some(site) = &c.site
            && sunlight_protocol::SiteId::new(site.as_str()).is_err()
        {
            return Err(Refused::new(
                format!("第 {n} 个联系人的站点编号“{site}”无效。"),
                format!("Contact {n}: \"{site}\" is not a valid site id."),
            ));
        }
    }
    Ok(r)
}

/// An `[attendance]` section (without its header) as an admin submits it, checked: the office
/// rules parse, segments are in order without overlap, the check-in and check-out windows lie
/// around their segment's start and end, and the seasons cover every day of the year.
pub fn parse_attendance(text: &str) -> Result<crate::config::AttendanceConfig, Refused> {
    let c: crate::config::AttendanceConfig = toml::from_str(text).map_err(|e| {
        Refused::new(
            format!("无法解析（TOML 格式）：{e}"),
            format!("Cannot read it (TOML): {e}"),
        )
    })?;
    check_attendance(&c)?;
    Ok(c)
}

pub fn check_attendance(c: &crate::config::AttendanceConfig) -> Result<(), Refused> {
    use chrono::NaiveTime;
    crate::oversight::attendance::Office::from_config(c)
        .map_err(|e| Refused::new(format!("作息规则有误：{e}"), format!("Bad rules: {e}")))?;
    if c.absent_after_min > 240 || c.makeup_quota > 31 {
        return Err(Refused::new(
            "absent_after_min 不超过 240 分钟，makeup_quota 每月不超过 31 次。".into(),
            "absent_after_min is at most 240 minutes, makeup_quota at most 31 a month.".into(),
        ));
    }
    let t = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").unwrap_or(NaiveTime::MIN);
    let md = |s: &str| {
        NaiveDate::parse_from_str(&format!("2024-{}", s.trim()), "%Y-%m-%d")
            .map(|d| d.format("%m-%d").to_string())
            .unwrap_or_default()
    };
    for s in &c.schedules {
        if s.segments.is_empty() {
            return Err(Refused::new(
                format!("季节 {}–{} 没有办公时段。", s.from, s.to),
                format!("Season {}–{} has no segments.", s.from, s.to),
            ));
        }
        let mut previous_end: Option<(NaiveTime, &str)> = None;
        for g in &s.segments {
            let (start, end) = (t(&g.start), t(&g.end));
            if let Some((prev, prev_text)) = previous_end
                && start < prev
            {
                return Err(Refused::new(
                    format!(
                        "时段 {}–{} 与前一时段（至 {prev_text}）重叠或顺序颠倒。",
                        g.start, g.end
                    ),
                    format!(
                        "Segment {}–{} overlaps the one before (until {prev_text}) or is out of order.",
                        g.start, g.end
                    ),
                ));
            }
            previous_end = Some((end, g.end.as_str()));
            let (in0, in1) = (t(&g.check_in[0]), t(&g.check_in[1]));
            let (out0, out1) = (t(&g.check_out[0]), t(&g.check_out[1]));
            let sane = in0 <= start && start <= in1 && in1 <= out0 && out0 <= end && end <= out1;
            let wide = (start - in0).num_minutes() <= 180 && (out1 - end).num_minutes() <= 180;
            if !sane || !wide {
                return Err(Refused::new(
                    format!(
                        "时段 {}–{}：签到窗口须包含上班时间、签退窗口须包含下班时间，两者不重叠，且最多提前/延后 3 小时。",
                        g.start, g.end
                    ),
                    format!(
                        "Segment {}–{}: the check-in window must hold the start and the check-out window the end, without overlap, at most 3 hours out.",
                        g.start, g.end
                    ),
                ));
            }
        }
    }
    // Every day of a leap year in exactly one season.
    let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    for d in day.iter_days().take(366) {
        let x = d.format("%m-%d").to_string();
        let n = c
            .schedules
            .iter()
            .filter(|s| {
                let (a, b) = (md(&s.from), md(&s.to));
                if a <= b {
                    a <= x && x <= b
                } else {
                    x >= a || x <= b
                }
            })
            .count();
        if n != 1 {
            return Err(Refused::new(
                format!("各季节须不重叠地覆盖全年：{x} 属于 {n} 个季节。"),
                format!("The seasons must cover the year once: {x} is in {n} seasons."),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn store() -> (tempfile::TempDir, crate::store::Writer) {
        let dir = tempfile::tempdir().unwrap();
        let w = crate::store::Writer::open(&dir.path().join("hub.db")).unwrap();
        (dir, w)
    }

    #[test]
    fn override_forms_are_checked() {
        assert_eq!(
            override_days("2025-11-05", "", "防汛").unwrap(),
            vec![d("2025-11-05")]
        );
        assert_eq!(
            override_days("2025-11-05", "2025-11-07", "防汛")
                .unwrap()
                .len(),
            3
        );
        let e = override_days("2025-11-31", "", "x").unwrap_err();
        assert!(
            e.zh.contains("2025-11-31") && e.en.contains("YYYY-MM-DD"),
            "{e:?}"
        );
        let e = override_days("2025-11-07", "2025-11-05", "x").unwrap_err();
        assert!(e.zh.contains("早于"), "{e:?}");
        let e = override_days("2025-01-01", "2025-03-01", "x").unwrap_err();
        assert!(e.en.contains("At most 31 days"), "{e:?}");
        let e = override_days("2025-11-05", "", "  ").unwrap_err();
        assert!(e.zh.contains("原因"), "{e:?}");
    }

    #[test]
    fn overrides_are_stored_and_win_over_the_official_data() {
        let (dir, w) = store();
        let conn = w.conn();
        let cal = calendar(conn).unwrap();
        assert!(cal.is_workday(d("2025-11-05")).unwrap());
        assert!(!cal.is_workday(d("2025-10-01")).unwrap());
        set_overrides(conn, &[d("2025-11-05")], false, "防汛", "admin").unwrap();
        set_overrides(conn, &[d("2025-10-01")], true, "值班", "admin").unwrap();
        let cal = calendar(conn).unwrap();
        assert!(!cal.is_workday(d("2025-11-05")).unwrap());
        assert!(cal.is_workday(d("2025-10-01")).unwrap());
        // Setting again replaces.
        set_overrides(conn, &[d("2025-11-05")], true, "改为上班", "admin2").unwrap();
        let all = overrides(conn).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].reason, "改为上班");
        assert_eq!(all[1].set_by, "admin2");
        let removed = remove_override(conn, d("2025-10-01")).unwrap().unwrap();
        assert!(removed.working);
        assert_eq!(remove_override(conn, d("2025-10-01")).unwrap(), None);
        let cal = calendar(conn).unwrap();
        assert!(!cal.is_workday(d("2025-10-01")).unwrap());
        drop(dir);
    }

    #[test]
    fn attendance_copies_are_checked() {
        let good = toml::to_string(&crate::config::AttendanceConfig::default()).unwrap();
        let c = parse_attendance(&good).unwrap();
        assert_eq!(c.grace_min, 5);
        let e = parse_attendance(&good.replace("grace_min = 5", "grace_min = \"x\"")).unwrap_err();
        assert!(e.zh.contains("无法解析"), "{e:?}");
        let e = parse_attendance(&good.replace("\"08:30\"", "\"8h30\"")).unwrap_err();
        assert!(e.en.contains("HH:MM"), "{e:?}");
        // The afternoon starting before the morning ends.
        let e = parse_attendance(&good.replacen("\"14:30\"", "\"11:30\"", 1)).unwrap_err();
        assert!(e.zh.contains("重叠"), "{e:?}");
        // A check-in window after the start.
        let e = parse_attendance(&good.replacen("\"07:30\"", "\"09:00\"", 1)).unwrap_err();
        assert!(e.en.contains("check-in window"), "{e:?}");
        // Summer shortened: days in no season.
        let e = parse_attendance(&good.replacen("\"09-30\"", "\"09-20\"", 1)).unwrap_err();
        assert!(e.en.contains("09-21 is in 0 seasons"), "{e:?}");
    }

    #[test]
    fn settings_are_replaced_and_cleared() {
        let (dir, w) = store();
        let conn = w.conn();
        assert_eq!(get_setting(conn, "attendance").unwrap(), None);
        put_setting(conn, "attendance", "a = 1", "admin").unwrap();
        put_setting(conn, "attendance", "a = 2", "admin").unwrap();
        assert_eq!(
            get_setting(conn, "attendance").unwrap().unwrap().value,
            "a = 2"
        );
        assert!(clear_setting(conn, "attendance").unwrap());
        assert!(!clear_setting(conn, "attendance").unwrap());
        drop(dir);
    }

    #[test]
    fn notify_rules_round_trip_and_are_checked() {
        let file = crate::config::HubConfig::parse(
            "[notify]\ncomplaint = [\"leadership\"]\n[notify.webhook]\nurl = \"http://gw/\"\n[[contacts]]\nrole = \"supervisor\"\nname = \"s\"\nto = \"1\"\nsite = \"suixian-shangshi\"\n",
        )
        .unwrap();
        let text = toml::to_string(&NotifyRules::of(&file)).unwrap();
        assert!(
            !text.contains("webhook") && !text.contains("retry"),
            "{text}"
        );
        let back = parse_notify(&text).unwrap();
        assert_eq!(back, NotifyRules::of(&file));
        let mut c = crate::config::HubConfig::default();
        back.apply(&mut c);
        assert_eq!(c.notify.complaint, vec![crate::config::Role::Leadership]);
        assert_eq!(c.contacts.len(), 1);
        assert!(c.notify.webhook.is_none(), "the webhook is never applied");

        // Left out: the defaults.
        let empty = parse_notify("").unwrap();
        assert_eq!(empty.complaint, vec![crate::config::Role::Supervisor]);
        assert_eq!(empty.digest.hour, 8);

        for (bad, says) in [
            (
                "[webhook]\nurl = \"http://x/\"",
                "webhook is set in hub.toml only",
            ),
            ("retry_secs = 1", "retry_secs is set in hub.toml only"),
            ("complaint = [\"mayor\"]", "mayor"),
            ("[digest]\nhour = 24", "0–23"),
            (
                "[[contacts]]\nrole = \"supervisor\"\nname = \"\"\nto = \"1\"",
                "Contact 1",
            ),
            (
                "[[contacts]]\nrole = \"supervisor\"\nname = \"s\"\nto = \" \"",
                "Contact 1",
            ),
            (
                "[[contacts]]\nrole = \"supervisor\"\nname = \"s\"\nto = \"1\"\nsite = \"Bad Site!\"",
                "not a valid site id",
            ),
            ("[ladder]\nred = [\"handler\"]", "unknown field"),
            ("complaint = ", "TOML"),
        ] {
            let e = parse_notify(bad).unwrap_err();
            assert!(e.en.contains(says), "{bad}: {e:?}");
            assert!(!e.zh.is_empty());
        }
    }

    #[test]
    fn a_saved_notify_copy_wins_at_start_and_keeps_the_webhook() {
        let (dir, w) = store();
        let conn = w.conn();
        let file = crate::config::HubConfig::parse(
            "[notify]\nretry_secs = 7\n[notify.webhook]\nurl = \"http://gw/\"\n",
        )
        .unwrap();
        put_setting(
            conn,
            NOTIFY,
            "complaint = [\"leadership\"]\n[[contacts]]\nrole = \"leadership\"\nname = \"l\"\nto = \"4\"\n",
            "admin",
        )
        .unwrap();
        let c = effective_config(conn, &file).unwrap();
        assert_eq!(c.notify.complaint, vec![crate::config::Role::Leadership]);
        assert_eq!(c.contacts.len(), 1);
        assert_eq!(c.notify.retry_secs, 7);
        assert_eq!(c.notify.webhook.unwrap().url, "http://gw/");
        put_setting(conn, NOTIFY, "complaint = [\"mayor\"]", "admin").unwrap();
        assert!(effective_config(conn, &file).is_err());
        drop(dir);
    }
}
