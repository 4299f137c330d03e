//! The monthly window work report (OVERSIGHT.md §5, after seed 001: 随县政务服务【2016】第3期) and
//! its weekly variant, computed from the facts in the store for a period and a scope (the whole
//! county, one township, or one unit of it):
//!
//! 1. 业务受理 — cases accepted and completed, split 即办件 / 承诺件; the top five units; units with none;
//! 2. 时限 — on-time and early rates, lights, cards and supervision letters by unit, and the trend;
//! 3. 考勤 — leave by type (person-times, days), out-of-office registrations, late / early / absent,
//!    vacant segments, B-role substitutions, make-up punches;
//! 4. 巡查签到 — patrol sign-ins by unit, units with none;
//! 5. 评价与投诉 — ratings, satisfaction, bad ratings and their work orders; complaints and outcomes;
//! 6. 量化评比 — red-flag windows (units) and service models (clerks) by the composite score, with
//!    the disqualifications;
//! 7. 存在问题 — problems found, generated from the figures above.
//!
//! What the store does not hold (consultations, the supervisor's score, narratives such as good
//! deeds or media reports) is listed in [`Report::missing`], never made up.

pub mod export;
pub mod summary;

use crate::oversight::attendance::Office;
use crate::oversight::calendar::Calendar;
use crate::store::attendance::{self as att, StaffTotals};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use summary::{Judging, SiteAttendance, Summaries};

/// How many units the report names as the top by volume (seed 001: 前五名).
pub const TOP_UNITS: usize = 5;
/// Red-flag windows named (seed 001: five).
pub const RED_FLAGS: usize = 5;
/// Service models named (seed 001: ten).
pub const SERVICE_MODELS: usize = 10;
/// The least composite score (of the 80 the store can give) for an award: three quarters.
pub const AWARD_MIN_SCORE: f64 = 60.0;
/// Periods in the on-time trend: this one and the ones before it.
pub const TREND_MONTHS: usize = 6;
pub const TREND_WEEKS: usize = 8;

/// Composite score weights (OVERSIGHT.md §5): efficiency, discipline, ratings, supervisor.
pub const W_EFFICIENCY: f64 = 30.0;
pub const W_DISCIPLINE: f64 = 30.0;
pub const W_RATINGS: f64 = 20.0;
/// The supervisor's 20 points are not recorded in the store: scores are out of 80.
pub const W_SUPERVISOR: f64 = 20.0;

/// A month (`2025-10`) or an ISO week (`2025-W41`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// "month" or "week".
    pub kind: &'static str,
    pub label: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// `YYYY-MM`.
    pub fn month(text: &str) -> Result<Period, String> {
        let text = text.trim();
        let (first, last) = att::month_range(text)
            .filter(|_| text.len() == 7)
            .ok_or_else(|| format!("month {text:?}: use YYYY-MM, e.g. 2025-10"))?;
        Ok(Period {
            kind: "month",
            label: first.format("%Y-%m").to_string(),
            from: first,
            to: last,
        })
    }

    /// `YYYY-Www` (ISO 8601 week, Monday to Sunday).
    pub fn week(text: &str) -> Result<Period, String> {
        let text = text.trim();
        let bad = || format!("week {text:?}: use YYYY-Www (ISO week), e.g. 2025-W41");
        let (y, w) = text.split_once(['W', 'w']).ok_or_else(bad)?;
        let year: i32 = y.trim_end_matches('-').parse().map_err(|_| bad())?;
        let week: u32 = w.parse().map_err(|_| bad())?;
        let monday = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).ok_or_else(bad)?;
        Ok(Period::week_of(monday))
    }

    fn week_of(day: NaiveDate) -> Period {
        let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
        let iso = monday.iso_week();
        Period {
            kind: "week",
            label: format!("{}-W{:02}", iso.year(), iso.week()),
            from: monday,
            to: monday + Duration::days(6),
        }
    }

    /// The month before `today`'s (the report is made after the month ends).
    pub fn last_month(today: NaiveDate) -> Period {
        let first = today.with_day(1).unwrap_or(today);
        let prev = first.pred_opt().unwrap_or(first);
        Period::month(&prev.format("%Y-%m").to_string()).unwrap_or(Period {
            kind: "month",
            label: prev.format("%Y-%m").to_string(),
            from: prev,
            to: prev,
        })
    }

    /// The week before `today`'s.
    pub fn last_week(today: NaiveDate) -> Period {
        Period::week_of(today - Duration::days(7))
    }

    /// The period before this one.
    pub fn previous(&self) -> Period {
        let before = self.from.pred_opt().unwrap_or(self.from);
        if self.kind == "week" {
            Period::week_of(before)
        } else {
            Period::month(&before.format("%Y-%m").to_string()).unwrap_or_else(|_| self.clone())
        }
    }

    /// The period after this one.
    pub fn next(&self) -> Period {
        let after = self.to.succ_opt().unwrap_or(self.to);
        if self.kind == "week" {
            Period::week_of(after)
        } else {
            Period::month(&after.format("%Y-%m").to_string()).unwrap_or_else(|_| self.clone())
        }
    }
}

/// Whose figures: every site (`site` none), one site, or one unit of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportScope {
    pub site: Option<String>,
    pub unit: Option<String>,
}

/// Every figure of one unit (科室/窗口单位) of one site in the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitRow {
    pub site: String,
    pub unit: String,
    // 1. 业务受理
    pub accepted: i64,
    pub accepted_immediate: i64,
    pub accepted_promised: i64,
    pub completed: i64,
    pub completed_immediate: i64,
    pub completed_promised: i64,
    // 2. 时限
    pub on_time: i64,
    pub early: i64,
    pub on_time_rate: Option<f64>,
    pub early_rate: Option<f64>,
    pub yellow_lights: i64,
    pub red_lights: i64,
    pub yellow_cards: i64,
    pub red_cards: i64,
    pub letters: i64,
    // 3. 考勤 (segments of the working days judged, up to today)
    pub staff: i64,
    pub segments_on_time: i64,
    pub late: i64,
    pub left_early: i64,
    /// Half days of 旷工.
    pub absent: i64,
    pub on_leave_segments: i64,
    pub makeups: i64,
    pub vacant_segments: i64,
    pub substitutions: i64,
    pub violations: i64,
    // 4. 巡查签到
    pub patrols: i64,
    // 5. 评价与投诉
    pub ratings: i64,
    pub satisfied: i64,
    pub bad_ratings: i64,
    pub very_bad_ratings: i64,
    pub satisfaction_rate: Option<f64>,
    pub work_orders: i64,
    pub called_back_on_time: i64,
    pub fixed_on_time: i64,
    pub complaints: i64,
    pub complaints_archived: i64,
    pub complaints_upheld: i64,
}

impl UnitRow {
    fn add(&mut self, o: &UnitRow) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            accepted,
            accepted_immediate,
            accepted_promised,
            completed,
            completed_immediate,
            completed_promised,
            on_time,
            early,
            yellow_lights,
            red_lights,
            yellow_cards,
            red_cards,
            letters,
            staff,
            segments_on_time,
            late,
            left_early,
            absent,
            on_leave_segments,
            makeups,
            vacant_segments,
            substitutions,
            violations,
            patrols,
            ratings,
            satisfied,
            bad_ratings,
            very_bad_ratings,
            work_orders,
            called_back_on_time,
            fixed_on_time,
            complaints,
            complaints_archived,
            complaints_upheld
        );
    }

    fn finish(&mut self) {
        self.on_time_rate = rate(self.on_time, self.completed);
        self.early_rate = rate(self.early, self.completed);
        self.satisfaction_rate = rate(self.satisfied, self.ratings);
    }

    /// Discipline: segments on time over the segments judged (leave and days off excluded; a
    /// segment both late and early counts twice as a fault).
    pub fn discipline(&self) -> Option<f64> {
        let judged = self.segments_on_time + self.late + self.left_early + self.absent;
        rate(self.segments_on_time, judged)
    }
}

/// A rate rounded to four places, none without a base.
pub fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitCount {
    pub site: String,
    pub unit: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub label: String,
    pub completed: i64,
    pub on_time: i64,
    pub early: i64,
    pub on_time_rate: Option<f64>,
    pub early_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaveKind {
    /// 事假, 病假, 年假, … as registered (未注明 when none was given).
    pub leave_type: String,
    /// Registrations (人次).
    pub person_times: i64,
    /// Working days covered within the period, in half days (a registration touching a morning
    /// or an afternoon of a working day counts half a day for it).
    pub days: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Attendance {
    pub leave: Vec<LeaveKind>,
    pub leave_person_times: i64,
    pub leave_days: f64,
    pub out_of_office: i64,
    pub late: i64,
    pub left_early: i64,
    pub absent: i64,
    pub vacant_segments: i64,
    pub substitutions: i64,
    pub makeups: i64,
    pub makeups_pending: i64,
    pub violations: i64,
    /// The last day judged (attendance is not judged for days after today).
    pub judged_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Complaints {
    pub received: i64,
    pub archived: i64,
    pub upheld: i64,
    pub not_upheld: i64,
    pub open: i64,
}

/// One candidate of the awards: a unit (red-flag window) or a clerk (service model).
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub site: String,
    pub unit: String,
    /// The clerk (service models only).
    pub staff_id: Option<String>,
    pub name: Option<String>,
    pub efficiency: Option<f64>,
    pub discipline: Option<f64>,
    pub ratings: Option<f64>,
    /// Out of 80 (the supervisor's 20 are not in the store); a missing part scores 0.
    pub score: f64,
    /// Why it cannot be awarded: "upheld_complaint", "card", "bad_rating"; empty when eligible.
    pub disqualified: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Awards {
    /// 红旗窗口: the best eligible units with completed cases (at least [`AWARD_MIN_SCORE`]).
    pub red_flag_units: Vec<Candidate>,
    /// 服务标兵: the best eligible clerks with judged attendance (at least [`AWARD_MIN_SCORE`]).
    pub service_models: Vec<Candidate>,
    /// Every unit ranked, eligible or not (the basis of the red flags).
    pub units_ranked: Vec<Candidate>,
    /// Clerks ranked (first 50).
    pub staff_ranked: Vec<Candidate>,
}

/// A problem found (存在问题), in both languages.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub zh: String,
    pub en: String,
}

/// Events dated in the period that their box recorded as back-dated (issue 14, item 6): dated
/// earlier than the box received them by more than its bound. They count in every figure as any
/// other event; this says how many there were.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackdatedCount {
    pub cases: i64,
    pub punches: i64,
    /// Ratings, complaints, duty registrations, patrols, corrections.
    pub other: i64,
}

impl BackdatedCount {
    pub fn total(&self) -> i64 {
        self.cases + self.punches + self.other
    }
}

/// The back-dated events of the period in scope; with a unit, the cases of that unit and the
/// punches of its clerks.
fn backdated_count(
    conn: &Connection,
    site: Option<&str>,
    unit: Option<&str>,
    from: &str,
    to: &str,
) -> rusqlite::Result<BackdatedCount> {
    let sql = format!(
        "SELECT b.kind, count(*) FROM backdated b
         LEFT JOIN cases c ON b.kind = 'case' AND c.site = b.site AND c.case_no = b.subject
         LEFT JOIN staff s ON b.kind = 'punch' AND s.site = b.site AND s.staff_id = b.subject
         WHERE {} AND b.day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR c.unit = ?4 OR s.unit = ?4)
         GROUP BY b.kind",
        site_cond("b.site", site)
    );
    let mut out = BackdatedCount::default();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = rows.next()? {
        let (kind, count): (String, i64) = (r.get(0)?, r.get(1)?);
        match kind.as_str() {
            "case" => out.cases += count,
            "punch" => out.punches += count,
            _ => out.other += count,
        }
    }
    Ok(out)
}

/// A figure of seed 001's report that the store does not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub zh: &'static str,
    pub en: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub period: Period,
    pub scope: ReportScope,
    /// The sites covered.
    pub sites: Vec<String>,
    pub today: NaiveDate,
    /// Every unit with anything in the period (or on the roster), by site and unit.
    pub units: Vec<UnitRow>,
    pub total: UnitRow,
    /// Top units by cases accepted.
    pub top_units: Vec<UnitCount>,
    /// Units on the roster that accepted no case in the period.
    pub zero_case_units: Vec<UnitCount>,
    pub trend: Vec<TrendPoint>,
    pub attendance: Attendance,
    /// Units on the roster without a patrol sign-in in the period.
    pub units_without_patrol: Vec<UnitCount>,
    pub complaints: Complaints,
    pub awards: Awards,
    pub problems: Vec<Problem>,
    pub missing: Vec<Missing>,
    /// Events of the period (by their own time) that their box marked back-dated.
    pub backdated: BackdatedCount,
    /// Some figure rests on a provisional calendar year (decision 0014): a day of the period judged
    /// on it, or a case of the period whose due day is reckoned on it.
    pub provisional: bool,
    /// That year (the earliest, if more than one).
    pub provisional_year: Option<i32>,
}

/// `col = ?1` when there is a site, `?1 IS NULL` otherwise (so that the `(site, …)` indexes are
/// used; see `dashboard::site_clause`).
fn site_cond(col: &str, site: Option<&str>) -> String {
    if site.is_some() {
        format!("{col} = ?1")
    } else {
        "?1 IS NULL".into()
    }
}

fn n(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<i64> {
    Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0))
}

/// The sites in scope: the one asked for, or every site known to the hub.
pub(crate) fn sites(conn: &Connection, scope: &ReportScope) -> rusqlite::Result<Vec<String>> {
    if let Some(s) = &scope.site {
        return Ok(vec![s.clone()]);
    }
    conn.prepare_cached(
        "SELECT site FROM devices UNION SELECT site FROM staff UNION SELECT DISTINCT site FROM cases
         ORDER BY 1",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

/// Runs `sql` with `args` (the site, the period's first and last day, the unit: ?1 to ?4) and
/// hands each result, whose first two columns are the site and the unit, to `each` with that unit's
/// row (made on first use).
fn per_unit(
    conn: &Connection,
    rows: &mut BTreeMap<(String, String), UnitRow>,
    sql: &str,
    args: (Option<&str>, &str, &str, Option<&str>),
    mut each: impl FnMut(&mut UnitRow, &rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut q = stmt.query(params![args.0, args.1, args.2, args.3])?;
    while let Some(r) = q.next()? {
        each(unit_row(rows, r.get(0)?, r.get(1)?), r)?;
    }
    Ok(())
}

/// The row of a (site, unit), made on first use.
fn unit_row(rows: &mut BTreeMap<(String, String), UnitRow>, s: String, u: String) -> &mut UnitRow {
    rows.entry((s.clone(), u.clone()))
        .or_insert_with(|| UnitRow {
            site: s,
            unit: u,
            ..UnitRow::default()
        })
}

/// Computes the report of `period` for `scope`. Attendance is judged for days up to `today`.
pub fn compute(
    conn: &Connection,
    office: &Office,
    cal: &Calendar,
    scope: &ReportScope,
    period: &Period,
    today: NaiveDate,
) -> rusqlite::Result<Report> {
    let judging = Judging {
        generation: 0,
        office,
        cal,
    };
    compute_from(conn, &judging, None, scope, period, today)
}

/// [`compute`] in the running hub: with the settings in force, and each site's attendance from
/// the stored summaries where they are current (`summary`).
pub fn compute_live(
    conn: &Connection,
    sup: &crate::supervise::Supervision,
    scope: &ReportScope,
    period: &Period,
    today: NaiveDate,
) -> rusqlite::Result<Report> {
    sup.with_judging(|judging| {
        compute_from(conn, judging, Some(sup.summaries()), scope, period, today)
    })
}

fn compute_from(
    conn: &Connection,
    judging: &Judging<'_>,
    summaries: Option<&Summaries>,
    scope: &ReportScope,
    period: &Period,
    today: NaiveDate,
) -> rusqlite::Result<Report> {
    let cal = judging.cal;
    let site = scope.site.as_deref();
    let unit = scope.unit.as_deref();
    let (from, to) = (period.from.to_string(), period.to.to_string());
    let sites = sites(conn, scope)?;
    let mut rows: BTreeMap<(String, String), UnitRow> = BTreeMap::new();

    let args = (site, from.as_str(), to.as_str(), unit);
    // 1, 2: cases accepted, and cases completed, in the period (each through its own index,
    // `cases_by_accepted` and `cases_by_completed`; see `store::cases::REPORT_INDEXES`).
    let sql = format!(
        "SELECT site, unit, count(*), sum(kind = 'immediate'), sum(kind = 'promised')
         FROM cases WHERE {} AND (?4 IS NULL OR unit = ?4) AND accepted BETWEEN ?2 AND ?3
         GROUP BY site, unit",
        site_cond("site", site)
    );
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        f.accepted = n(r, 2)?;
        f.accepted_immediate = n(r, 3)?;
        f.accepted_promised = n(r, 4)?;
        Ok(())
    })?;
    let sql = format!(
        "SELECT site, unit, count(*), sum(kind = 'immediate'), sum(kind = 'promised'),
            sum(on_time = 1), sum(early = 1)
         FROM cases WHERE {} AND (?4 IS NULL OR unit = ?4) AND completed BETWEEN ?2 AND ?3
         GROUP BY site, unit",
        site_cond("site", site)
    );
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        f.completed = n(r, 2)?;
        f.completed_immediate = n(r, 3)?;
        f.completed_promised = n(r, 4)?;
        f.on_time = n(r, 5)?;
        f.early = n(r, 6)?;
        Ok(())
    })?;
    // Warnings raised in the period, by level and the case's unit when raised.
    let sql = format!(
        "SELECT site, unit, level, count(*) FROM case_warnings
         WHERE {} AND on_day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR unit = ?4) AND level != 'blue'
         GROUP BY site, unit, level",
        site_cond("site", site)
    );
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        let level: String = r.get(2)?;
        let count = n(r, 3)?;
        match level.as_str() {
            "yellow_light" => f.yellow_lights += count,
            "red_light" => f.red_lights += count,
            "yellow_card" => f.yellow_cards += count,
            "red_card" => f.red_cards += count,
            "supervision_letter" => f.letters += count,
            _ => {}
        }
        Ok(())
    })?;
    // 5: ratings given (or defaulted) in the period; second ratings on one channel not counted.
    let sql = format!(
        "SELECT site, unit, count(*), sum(level >= 3), sum(level <= 2), sum(level = 1) FROM ratings
         WHERE {} AND day BETWEEN ?2 AND ?3 AND duplicate = 0 AND (?4 IS NULL OR unit = ?4)
         GROUP BY site, unit",
        site_cond("site", site)
    );
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        f.ratings = n(r, 2)?;
        f.satisfied = n(r, 3)?;
        f.bad_ratings = n(r, 4)?;
        f.very_bad_ratings = n(r, 5)?;
        Ok(())
    })?;
    // Work orders opened in the period: callbacks and fixes by their due days (a rating found
    // 不实, 误评 or 恶意 needs no fix and counts as fixed).
    let sql = format!(
        "SELECT site, unit, count(*),
            sum(callback_day IS NOT NULL AND callback_day <= callback_due),
            sum((fixed_day IS NOT NULL AND fixed_day <= fix_due)
                OR (classification IS NOT NULL AND classification != '属实'))
         FROM work_orders WHERE {} AND opened_day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR unit = ?4)
         GROUP BY site, unit",
        site_cond("site", site)
    );
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        f.work_orders = n(r, 2)?;
        f.called_back_on_time = n(r, 3)?;
        f.fixed_on_time = n(r, 4)?;
        Ok(())
    })?;
    // Complaints received in the period.
    let sql = format!(
        "SELECT site, unit, count(*), sum(stage = 'archived'), sum(outcome = 'upheld'),
            sum(outcome = 'not_upheld')
         FROM complaints WHERE {} AND received_day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR unit = ?4)
         GROUP BY site, unit",
        site_cond("site", site)
    );
    let mut complaints = Complaints::default();
    per_unit(conn, &mut rows, &sql, args, |f, r| {
        f.complaints = n(r, 2)?;
        f.complaints_archived = n(r, 3)?;
        f.complaints_upheld = n(r, 4)?;
        complaints.received += f.complaints;
        complaints.archived += f.complaints_archived;
        complaints.upheld += f.complaints_upheld;
        complaints.not_upheld += n(r, 5)?;
        Ok(())
    })?;
    complaints.open = complaints.received - complaints.archived;

    // 3, 4: attendance and patrols, per site, from the attendance engine.
    let mut attendance = Attendance::default();
    let mut staff_totals: Vec<(String, StaffTotals)> = Vec::new();
    let mut roster_units: BTreeSet<(String, String)> = BTreeSet::new();
    let judged_to = period.to.min(today);
    if period.from <= today {
        attendance.judged_to = Some(judged_to);
    }
    let days = (period.from, period.to, today);
    let judged = match summaries {
        Some(stored) => stored.sites(conn, judging, &sites, site, days)?,
        None => sites
            .iter()
            .map(|s| {
                let a = SiteAttendance::judge(conn, judging.office, cal, s, days)?;
                Ok((s.clone(), Arc::new(a)))
            })
            .collect::<rusqlite::Result<_>>()?,
    };
    for (s, judged) in &judged {
        for u in &judged.units {
            if unit.is_some_and(|x| x != u.unit) {
                continue;
            }
            if u.staff > 0 {
                roster_units.insert((s.clone(), u.unit.clone()));
            }
            let f = unit_row(&mut rows, s.clone(), u.unit.clone());
            f.staff = i64::from(u.staff);
            f.segments_on_time = i64::from(u.totals.on_time);
            f.late = i64::from(u.totals.late);
            f.left_early = i64::from(u.totals.left_early);
            f.absent = i64::from(u.totals.absent);
            f.on_leave_segments = i64::from(u.totals.on_leave);
            f.makeups = i64::from(u.totals.makeups);
            f.vacant_segments = i64::from(u.vacant_segments);
            f.substitutions = i64::from(u.substitutions);
            f.patrols = i64::from(u.patrols);
            f.violations = i64::from(u.violations);
        }
        staff_totals.extend(
            judged
                .people
                .iter()
                .filter(|p| unit.is_none_or(|x| x == p.unit))
                .map(|p| (s.clone(), p.clone())),
        );
    }
    leave_and_makeups(conn, cal, site, unit, period, &mut attendance)?;

    let mut units: Vec<UnitRow> = rows.into_values().collect();
    let mut total = UnitRow {
        site: site.unwrap_or("").into(),
        unit: unit.unwrap_or("").into(),
        ..UnitRow::default()
    };
    for u in units.iter_mut() {
        u.finish();
        total.add(u);
    }
    total.finish();
    attendance.late = total.late;
    attendance.left_early = total.left_early;
    attendance.absent = total.absent;
    attendance.vacant_segments = total.vacant_segments;
    attendance.substitutions = total.substitutions;
    attendance.makeups = total.makeups;
    attendance.violations = total.violations;

    let mut by_volume: Vec<&UnitRow> = units.iter().filter(|u| u.accepted > 0).collect();
    by_volume.sort_by(|a, b| {
        b.accepted
            .cmp(&a.accepted)
            .then_with(|| (&a.site, &a.unit).cmp(&(&b.site, &b.unit)))
    });
    let top_units = by_volume
        .iter()
        .take(TOP_UNITS)
        .map(|u| UnitCount {
            site: u.site.clone(),
            unit: u.unit.clone(),
            count: u.accepted,
        })
        .collect();
    let count0 = |u: &UnitRow| UnitCount {
        site: u.site.clone(),
        unit: u.unit.clone(),
        count: 0,
    };
    let zero_case_units = units
        .iter()
        .filter(|u| roster_units.contains(&(u.site.clone(), u.unit.clone())) && u.accepted == 0)
        .map(count0)
        .collect();
    let units_without_patrol = units
        .iter()
        .filter(|u| roster_units.contains(&(u.site.clone(), u.unit.clone())) && u.patrols == 0)
        .map(count0)
        .collect();
    let trend = trend(conn, site, unit, period)?;
    let awards = awards(conn, site, unit, period, &units, &staff_totals)?;
    let cases_provisional: Option<i32> = conn.query_row(
        &format!(
            "SELECT min(provisional) FROM cases WHERE {} AND provisional IS NOT NULL
                AND (accepted BETWEEN ?2 AND ?3 OR completed BETWEEN ?2 AND ?3)
                AND (?4 IS NULL OR unit = ?4)",
            site_cond("site", site)
        ),
        params![site, from, to, unit],
        |r| r.get(0),
    )?;
    let provisional_year = [
        cal.provisional_in(period.from, period.to.min(today)),
        cases_provisional,
    ]
    .into_iter()
    .flatten()
    .min();
    let mut report = Report {
        period: period.clone(),
        scope: scope.clone(),
        sites,
        today,
        units,
        total,
        top_units,
        zero_case_units,
        trend,
        attendance,
        units_without_patrol,
        complaints,
        awards,
        problems: Vec::new(),
        missing: missing(),
        backdated: backdated_count(conn, site, unit, &from, &to)?,
        provisional: provisional_year.is_some(),
        provisional_year,
    };
    report.problems = problems(&report);
    Ok(report)
}

/// The report in one text message (OVERSIGHT.md §5: the SMS digests to leaders use the report's
/// figures): subject and text, in Chinese, the language of the messages.
pub fn message(r: &Report) -> (String, String) {
    let t = &r.total;
    let pct = |x: Option<f64>| x.map_or("—".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let whose = match (&r.scope.site, &r.scope.unit) {
        (Some(s), Some(u)) => format!("{s} {u}"),
        (Some(s), None) => s.clone(),
        _ => "全县".to_owned(),
    };
    let (when, what) = if r.period.kind == "week" {
        let iso = r.period.from.iso_week();
        (
            format!(
                "{}年第{}周（{}至{}）",
                iso.year(),
                iso.week(),
                r.period.from.format("%m-%d"),
                r.period.to.format("%m-%d")
            ),
            "周报",
        )
    } else {
        (
            format!("{}年{}月", r.period.from.year(), r.period.from.month()),
            "月报",
        )
    };
    let subject = format!("{whose}{when}窗口工作{what}");
    let text = format!(
        "【电子监察】{subject}：受理{}件（即办{}、承诺{}），办结{}件，按时办结率{}；\
         黄灯{}、红灯{}、黄牌{}、红牌{}、督办函{}；迟到{}、早退{}、旷工{}个半天、空岗{}段；\
         评价{}条，满意率{}，差评{}条；投诉{}件，属实{}件。详见电子监察平台报表。{}",
        t.accepted,
        t.accepted_immediate,
        t.accepted_promised,
        t.completed,
        pct(t.on_time_rate),
        t.yellow_lights,
        t.red_lights,
        t.yellow_cards,
        t.red_cards,
        t.letters,
        t.late,
        t.left_early,
        t.absent,
        t.vacant_segments,
        t.ratings,
        pct(t.satisfaction_rate),
        t.bad_ratings,
        r.complaints.received,
        r.complaints.upheld,
        r.provisional_year
            .map(|y| format!("（{}）", crate::oversight::calendar::provisional_note_zh(y)))
            .unwrap_or_default(),
    );
    (subject, text)
}

/// Leave by type, out-of-office registrations and pending make-up requests of the period.
fn leave_and_makeups(
    conn: &Connection,
    cal: &Calendar,
    site: Option<&str>,
    unit: Option<&str>,
    period: &Period,
    out: &mut Attendance,
) -> rusqlite::Result<()> {
    let (from, to) = (
        format!("{} 00:00:00", period.from),
        format!("{} 23:59:59", period.to),
    );
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.duty_type, d.leave_type, d.from_at, d.to_at FROM duties d
         LEFT JOIN staff s ON s.site = d.site AND s.staff_id = d.staff_id
         WHERE {} AND d.duty_type != 'return' AND d.from_at <= ?3 AND d.to_at >= ?2
            AND (?4 IS NULL OR s.unit = ?4)",
        site_cond("d.site", site)
    ))?;
    let mut kinds: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    let mut q = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = q.next()? {
        let duty: String = r.get(0)?;
        if duty == "out_of_office" {
            out.out_of_office += 1;
            continue;
        }
        let kind = r
            .get::<_, Option<String>>(1)?
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| "未注明".into());
        let (a, b): (String, String) = (r.get(2)?, r.get(3)?);
        let days = match (att::local(&a), att::local(&b)) {
            (Some(a), Some(b)) => leave_days(cal, a, b, period),
            _ => 0.0,
        };
        let k = kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += days;
    }
    out.leave = kinds
        .into_iter()
        .map(|(leave_type, (person_times, days))| LeaveKind {
            leave_type,
            person_times,
            days,
        })
        .collect();
    out.leave_person_times = out.leave.iter().map(|k| k.person_times).sum();
    out.leave_days = total_days(&out.leave);
    out.makeups_pending = conn.query_row(
        &format!(
            "SELECT count(*) FROM makeups m LEFT JOIN staff s ON s.site = m.site AND s.staff_id = m.staff_id
             WHERE {} AND m.status = 'pending' AND m.day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR s.unit = ?4)",
            site_cond("m.site", site)
        ),
        params![site, period.from.to_string(), period.to.to_string(), unit],
        |r| r.get(0),
    )?;
    Ok(())
}

/// Working days of a leave within the period, by half days: a working day's morning (before
/// noon) and afternoon each count half a day when the leave overlaps them.
/// The leave days of every kind together: 0, not the -0 an empty float `sum()` gives ("合计 -0 天").
fn total_days(kinds: &[LeaveKind]) -> f64 {
    kinds.iter().fold(0.0, |all, k| all + k.days)
}

pub fn leave_days(cal: &Calendar, from: NaiveDateTime, to: NaiveDateTime, period: &Period) -> f64 {
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(NaiveTime::MIN);
    let first = from.date().max(period.from);
    let last = to.date().min(period.to);
    let mut halves = 0u32;
    for d in first.iter_days().take_while(|d| *d <= last) {
        // A day the calendar cannot answer (before 2025 without data) is not counted: no guess.
        if !matches!(cal.is_workday(d), Ok(true)) {
            continue;
        }
        let (start, midday) = (d.and_time(NaiveTime::MIN), d.and_time(noon));
        let end = d.succ_opt().unwrap_or(d).and_time(NaiveTime::MIN);
        if from < midday && to > start {
            halves += 1;
        }
        if from < end && to > midday {
            halves += 1;
        }
    }
    f64::from(halves) / 2.0
}

/// The on-time trend: this period and the ones before it, completions per period.
fn trend(
    conn: &Connection,
    site: Option<&str>,
    unit: Option<&str>,
    period: &Period,
) -> rusqlite::Result<Vec<TrendPoint>> {
    let count = if period.kind == "week" {
        TREND_WEEKS
    } else {
        TREND_MONTHS
    };
    let mut periods = vec![period.clone()];
    for _ in 1..count {
        let p = periods[periods.len() - 1].previous();
        periods.push(p);
    }
    periods.reverse();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT completed, count(*), sum(on_time = 1), sum(early = 1) FROM cases
         WHERE {} AND (?4 IS NULL OR unit = ?4) AND completed BETWEEN ?2 AND ?3 GROUP BY completed",
        site_cond("site", site)
    ))?;
    let mut by_day: Vec<(NaiveDate, i64, i64, i64)> = Vec::new();
    let mut q = stmt.query(params![
        site,
        periods[0].from.to_string(),
        period.to.to_string(),
        unit
    ])?;
    while let Some(r) = q.next()? {
        let day: String = r.get(0)?;
        if let Ok(d) = day.parse::<NaiveDate>() {
            by_day.push((d, n(r, 1)?, n(r, 2)?, n(r, 3)?));
        }
    }
    Ok(periods
        .into_iter()
        .map(|p| {
            let (mut c, mut o, mut e) = (0, 0, 0);
            for (d, dc, d_on, d_early) in &by_day {
                if *d >= p.from && *d <= p.to {
                    c += dc;
                    o += d_on;
                    e += d_early;
                }
            }
            TrendPoint {
                label: p.label,
                completed: c,
                on_time: o,
                early: e,
                on_time_rate: rate(o, c),
                early_rate: rate(e, c),
            }
        })
        .collect())
}

fn score(efficiency: Option<f64>, discipline: Option<f64>, ratings: Option<f64>) -> f64 {
    let s = W_EFFICIENCY * efficiency.unwrap_or(0.0)
        + W_DISCIPLINE * discipline.unwrap_or(0.0)
        + W_RATINGS * ratings.unwrap_or(0.0);
    (s * 100.0).round() / 100.0
}

fn ranked(mut c: Vec<Candidate>) -> Vec<Candidate> {
    c.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| (&a.site, &a.unit, &a.staff_id).cmp(&(&b.site, &b.unit, &b.staff_id)))
    });
    c
}

/// Red-flag units and service-model clerks by the composite score (out of 80 without the
/// supervisor's part), disqualified by an upheld complaint, a yellow or red card, or a rating of
/// 不满意 or worse in the period.
fn awards(
    conn: &Connection,
    site: Option<&str>,
    unit: Option<&str>,
    period: &Period,
    units: &[UnitRow],
    staff: &[(String, StaffTotals)],
) -> rusqlite::Result<Awards> {
    let units_ranked = ranked(
        units
            .iter()
            .filter(|u| u.completed > 0)
            .map(|u| {
                let mut disqualified = Vec::new();
                if u.complaints_upheld > 0 {
                    disqualified.push("upheld_complaint");
                }
                if u.yellow_cards + u.red_cards > 0 {
                    disqualified.push("card");
                }
                if u.bad_ratings > 0 {
                    disqualified.push("bad_rating");
                }
                Candidate {
                    site: u.site.clone(),
                    unit: u.unit.clone(),
                    staff_id: None,
                    name: None,
                    efficiency: u.on_time_rate,
                    discipline: u.discipline(),
                    ratings: u.satisfaction_rate,
                    score: score(u.on_time_rate, u.discipline(), u.satisfaction_rate),
                    disqualified,
                }
            })
            .collect(),
    );
    // Per clerk: cases they handle (the case's handler) completed in the period, their ratings,
    // cards on their cases, upheld complaints naming them.
    let (from, to) = (period.from.to_string(), period.to.to_string());
    let sc = site_cond("site", site);
    type Key = (String, String);
    let mut cases: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, staff_id, count(*), sum(on_time = 1) FROM cases
         WHERE {sc} AND (?4 IS NULL OR unit = ?4) AND completed BETWEEN ?2 AND ?3 GROUP BY 1, 2"
    ))?;
    let mut q = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = q.next()? {
        let id: Option<String> = r.get(1)?;
        cases.insert((r.get(0)?, id.unwrap_or_default()), (n(r, 2)?, n(r, 3)?));
    }
    let mut ratings: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, staff_id, count(*), sum(level >= 3), sum(level <= 2) FROM ratings
         WHERE {sc} AND day BETWEEN ?2 AND ?3 AND duplicate = 0 AND (?4 IS NULL OR unit = ?4)
         GROUP BY 1, 2"
    ))?;
    let mut q = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = q.next()? {
        let id: Option<String> = r.get(1)?;
        ratings.insert(
            (r.get(0)?, id.unwrap_or_default()),
            (n(r, 2)?, n(r, 3)?, n(r, 4)?),
        );
    }
    let mut carded: BTreeSet<Key> = BTreeSet::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT site, staff_id FROM case_warnings
         WHERE {sc} AND on_day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR unit = ?4)
            AND level IN ('yellow_card', 'red_card')"
    ))?;
    let mut q = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = q.next()? {
        let id: Option<String> = r.get(1)?;
        carded.insert((r.get(0)?, id.unwrap_or_default()));
    }
    let mut complained: BTreeSet<Key> = BTreeSet::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, json_extract(about, '$.staff_id') FROM complaints
         WHERE {sc} AND received_day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR unit = ?4)
            AND outcome = 'upheld'"
    ))?;
    let mut q = stmt.query(params![site, from, to, unit])?;
    while let Some(r) = q.next()? {
        let id: Option<String> = r.get(1)?;
        if let Some(id) = id {
            complained.insert((r.get(0)?, id));
        }
    }
    let staff_ranked = ranked(
        staff
            .iter()
            .filter(|(_, p)| {
                let t = &p.totals;
                t.on_time + t.late + t.left_early + t.absent > 0
            })
            .map(|(s, p)| {
                let key = (s.clone(), p.staff_id.clone());
                let t = &p.totals;
                let discipline = rate(
                    i64::from(t.on_time),
                    i64::from(t.on_time + t.late + t.left_early + t.absent),
                );
                let efficiency = cases.get(&key).and_then(|(c, o)| rate(*o, *c));
                let (rated, satisfied, bad) = ratings.get(&key).copied().unwrap_or_default();
                let mut disqualified = Vec::new();
                if complained.contains(&key) {
                    disqualified.push("upheld_complaint");
                }
                if carded.contains(&key) {
                    disqualified.push("card");
                }
                if bad > 0 {
                    disqualified.push("bad_rating");
                }
                let r = rate(satisfied, rated);
                Candidate {
                    site: s.clone(),
                    unit: p.unit.clone(),
                    staff_id: Some(p.staff_id.clone()),
                    name: Some(p.name.clone()),
                    efficiency,
                    discipline,
                    ratings: r,
                    score: score(efficiency, discipline, r),
                    disqualified,
                }
            })
            .collect(),
    );
    Ok(Awards {
        red_flag_units: units_ranked
            .iter()
            .filter(|c| c.disqualified.is_empty() && c.score >= AWARD_MIN_SCORE)
            .take(RED_FLAGS)
            .cloned()
            .collect(),
        service_models: staff_ranked
            .iter()
            .filter(|c| c.disqualified.is_empty() && c.score >= AWARD_MIN_SCORE)
            .take(SERVICE_MODELS)
            .cloned()
            .collect(),
        units_ranked,
        staff_ranked: staff_ranked.into_iter().take(50).collect(),
    })
}

fn names(list: &[&UnitRow], sep: &str) -> String {
    let many = list.iter().map(|u| &u.site).collect::<BTreeSet<_>>().len() > 1;
    list.iter()
        .map(|u| {
            if many {
                format!("{} {}", u.site, u.unit)
            } else {
                u.unit.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// 存在问题, generated from the figures (seed 001 part 三).
pub fn problems(r: &Report) -> Vec<Problem> {
    let mut out = Vec::new();
    let t = &r.total;
    let vacant: Vec<&UnitRow> = r.units.iter().filter(|u| u.vacant_segments > 0).collect();
    if !vacant.is_empty() {
        out.push(Problem {
            code: "ab_gaps",
            zh: format!(
                "AB角制度落实不到位：{} 个窗口单位共出现 {} 个空岗时段（{}），B角替岗 {} 次。",
                vacant.len(),
                t.vacant_segments,
                names(&vacant, "、"),
                t.substitutions
            ),
            en: format!(
                "A/B roles not kept: {} units had {} vacant window segments ({}); B-role substitutions: {}.",
                vacant.len(),
                t.vacant_segments,
                names(&vacant, ", "),
                t.substitutions
            ),
        });
    }
    if !r.units_without_patrol.is_empty() {
        let list: Vec<String> = r
            .units_without_patrol
            .iter()
            .map(|u| {
                if r.sites.len() > 1 {
                    format!("{} {}", u.site, u.unit)
                } else {
                    u.unit.clone()
                }
            })
            .collect();
        out.push(Problem {
            code: "missing_patrols",
            zh: format!(
                "巡查签到执行率过低：{} 个单位的分管领导本期未巡查签到（{}）。",
                list.len(),
                list.join("、")
            ),
            en: format!(
                "Patrol sign-ins missing: the supervising leaders of {} units did not sign in this period ({}).",
                list.len(),
                list.join(", ")
            ),
        });
    }
    if t.late + t.left_early + t.absent > 0 {
        let worst: Vec<&UnitRow> = {
            let mut v: Vec<&UnitRow> = r
                .units
                .iter()
                .filter(|u| u.late + u.left_early + u.absent > 0)
                .collect();
            v.sort_by_key(|u| std::cmp::Reverse(u.late + u.left_early + u.absent));
            v.into_iter().take(5).collect()
        };
        out.push(Problem {
            code: "discipline",
            zh: format!(
                "自律性仍有待提高：迟到 {} 次、早退 {} 次、旷工 {} 个半天（较多的单位：{}）。",
                t.late,
                t.left_early,
                t.absent,
                names(&worst, "、")
            ),
            en: format!(
                "Discipline: {} late arrivals, {} early departures, {} half days absent (most: {}).",
                t.late,
                t.left_early,
                t.absent,
                names(&worst, ", ")
            ),
        });
    }
    if t.yellow_cards + t.red_cards + t.letters > 0 {
        let carded: Vec<&UnitRow> = r
            .units
            .iter()
            .filter(|u| u.yellow_cards + u.red_cards + u.letters > 0)
            .collect();
        out.push(Problem {
            code: "overdue",
            zh: format!(
                "办件超期：黄牌 {} 张、红牌 {} 张、监察建议书 {} 份（{}）。",
                t.yellow_cards,
                t.red_cards,
                t.letters,
                names(&carded, "、")
            ),
            en: format!(
                "Overdue cases: {} yellow cards, {} red cards, {} supervision letters ({}).",
                t.yellow_cards,
                t.red_cards,
                t.letters,
                names(&carded, ", ")
            ),
        });
    }
    let b = &r.backdated;
    if b.total() > 0 {
        out.push(Problem {
            code: "backdated",
            zh: format!(
                "倒签记录：{} 条记录的时间早于盒子收到的时间，超过规定时限（办件 {}、打卡 {}、其他 {}）；已照常计入，并在办件和打卡处标注两个时间。",
                b.total(),
                b.cases,
                b.punches,
                b.other
            ),
            en: format!(
                "Back-dated records: {} were dated earlier than their box received them by more than the bound ({} case events, {} punches, {} other); counted as any other and marked with both times on the case or punch.",
                b.total(),
                b.cases,
                b.punches,
                b.other
            ),
        });
    }
    if t.bad_ratings > 0 || r.complaints.upheld > 0 {
        out.push(Problem {
            code: "complaints",
            zh: format!(
                "群众评价：不满意及以下评价 {} 件（整改工单按期整改 {} / {}），投诉属实 {} 件。",
                t.bad_ratings, t.fixed_on_time, t.work_orders, r.complaints.upheld
            ),
            en: format!(
                "Ratings: {} rated dissatisfied or worse (work orders fixed on time {} of {}); {} complaints upheld.",
                t.bad_ratings, t.fixed_on_time, t.work_orders, r.complaints.upheld
            ),
        });
    }
    out
}

/// The parts of seed 001's report the store does not hold.
pub fn missing() -> Vec<Missing> {
    vec![
        Missing {
            zh: "咨询件（咨询人次）：办件事件不记录咨询，无法统计咨询较多的单位。",
            en: "Consultations: case events do not record them, so units with the most consultations cannot be named.",
        },
        Missing {
            zh: "领导综合评分（综合评分中占 20%）：未录入，评比得分满分按 80 分计。",
            en: "The supervisor's score (20% of the composite) is not recorded: award scores are out of 80.",
        },
        Missing {
            zh: "星级首席：花名册未标明各单位首席代表，未评选。",
            en: "Star chief representatives: the roster does not mark chief representatives, so none are named.",
        },
        Missing {
            zh: "信息报送、领导督办、媒体报道、好人好事：属文字材料，由中心另行填写。",
            en: "Information submissions, leadership visits, media reports, good deeds: narratives for the center to add.",
        },
        Missing {
            zh: "网上办件量：办件事件未区分线上线下，无法按网上办件量排名。",
            en: "Online volume: case events do not say whether a case came online, so no online ranking.",
        },
    ]
}

#[cfg(test)]
mod tests {

    #[test]
    fn no_leave_is_zero_days_not_minus_zero() {
        assert_eq!(format!("{}", total_days(&[])), "0");
    }

    use super::*;

    #[test]
    fn periods_parse_and_step() {
        let m = Period::month("2025-10").unwrap();
        assert_eq!(
            (m.from.to_string(), m.to.to_string()),
            ("2025-10-01".into(), "2025-10-31".into())
        );
        assert_eq!(m.previous().label, "2025-09");
        assert_eq!(m.next().label, "2025-11");
        assert!(Period::month("2025-13").is_err());
        assert!(Period::month("2025-1").is_err());
        let w = Period::week("2025-W41").unwrap();
        assert_eq!(
            (w.from.to_string(), w.to.to_string()),
            ("2025-10-06".into(), "2025-10-12".into())
        );
        assert_eq!(w.previous().label, "2025-W40");
        assert_eq!(
            Period::week("2026-W01").unwrap().previous().label,
            "2025-W52"
        );
        assert!(Period::week("2025-W54").is_err());
        assert!(Period::week("2025-41").is_err());
        let today = NaiveDate::from_ymd_opt(2026, 1, 14).unwrap();
        assert_eq!(Period::last_month(today).label, "2025-12");
        assert_eq!(Period::last_week(today).label, "2026-W02");
    }

    #[test]
    fn leave_counts_half_days_of_working_days() {
        let cal = Calendar::official().unwrap();
        let p = Period::month("2025-11").unwrap();
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        // Monday and Tuesday, whole days.
        assert_eq!(
            leave_days(&cal, t("2025-11-03 00:00:00"), t("2025-11-04 23:59:59"), &p),
            2.0
        );
        // An afternoon.
        assert_eq!(
            leave_days(&cal, t("2025-11-06 14:00:00"), t("2025-11-06 17:30:00"), &p),
            0.5
        );
        // Friday to Monday: the weekend does not count.
        assert_eq!(
            leave_days(&cal, t("2025-11-07 00:00:00"), t("2025-11-10 23:59:59"), &p),
            2.0
        );
        // Only the part within the period.
        assert_eq!(
            leave_days(&cal, t("2025-10-30 00:00:00"), t("2025-11-03 12:00:00"), &p),
            0.5
        );
    }
}
