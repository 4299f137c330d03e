//! Attendance (OVERSIGHT.md §3; seeds 000, 001, 003, 004): one clerk's day judged against the
//! schedule in force, segment by segment, and a window's vacancy (空岗) with its A/B roles (AB角).
//!
//! Pure: punches, leave and the calendar in; verdicts out. Earliest valid punch counts for check-in,
//! latest for check-out; late or early beyond the grace is late/early, beyond the absence threshold
//! it is half-day absence (旷工); a missing punch follows the configured policy.

use super::calendar::{Calendar, CalendarError};
use chrono::{NaiveDate, NaiveTime};
use serde::Serialize;

/// One working segment, e.g. 08:30–12:00, with the windows in which punches count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// Check-in punches count from … to … (e.g. 07:30–10:00).
    pub check_in: (NaiveTime, NaiveTime),
    /// Check-out punches count from … to … (e.g. 11:00–13:00).
    pub check_out: (NaiveTime, NaiveTime),
}

/// A schedule valid over a date range (summer and winter hours differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    pub segments: Vec<Segment>,
}

/// What a missing punch counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    Absent,
    LateOrEarly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Minutes after the start (before the end) still on time. Default 5.
    pub grace_min: i64,
    /// Late or early by more than this many minutes is half-day absence. Default 30.
    pub absent_after_min: i64,
    pub missing: MissingPolicy,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grace_min: 5,
            absent_after_min: 30,
            missing: MissingPolicy::Absent,
        }
    }
}

/// The verdict for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    OnTime,
    Late {
        minutes: i64,
    },
    LeftEarly {
        minutes: i64,
    },
    LateAndEarly {
        late: i64,
        early: i64,
    },
    /// 旷工 for this half day.
    Absent,
    /// Covered by leave or an out-of-office registration (请假 / 外出办事登记).
    OnLeave,
    /// Not a working day on the county calendar.
    NotRequired,
    /// Not over yet: its check-out window has not closed (未到时). Counted nowhere.
    Pending,
}

impl Verdict {
    /// Was somebody at the window for (most of) the segment?
    pub fn present(self) -> bool {
        matches!(
            self,
            Verdict::OnTime
                | Verdict::Late { .. }
                | Verdict::LeftEarly { .. }
                | Verdict::LateAndEarly { .. }
        )
    }
}

fn minutes(a: NaiveTime, b: NaiveTime) -> i64 {
    (b - a).num_minutes()
}

/// Judges one segment from the day's punch times.
pub fn judge_segment(
    seg: &Segment,
    rules: &Rules,
    punches: &[NaiveTime],
    on_leave: bool,
) -> Verdict {
    if on_leave {
        return Verdict::OnLeave;
    }
    let within = |(from, to): (NaiveTime, NaiveTime)| {
        punches
            .iter()
            .copied()
            .filter(move |t| *t >= from && *t <= to)
    };
    let check_in = within(seg.check_in).min();
    let check_out = within(seg.check_out).max();
    let late = check_in.map(|t| minutes(seg.start, t).max(0));
    let early = check_out.map(|t| minutes(t, seg.end).max(0));
    let missing = |v: Option<i64>| match (v, rules.missing) {
        (Some(m), _) => Some(m),
        (None, MissingPolicy::Absent) => None,
        // Counted as just beyond the grace: late (or early), not absent.
        (None, MissingPolicy::LateOrEarly) => Some(rules.grace_min + 1),
    };
    let (Some(late), Some(early)) = (missing(late), missing(early)) else {
        return Verdict::Absent;
    };
    if late > rules.absent_after_min || early > rules.absent_after_min {
        return Verdict::Absent;
    }
    match (late > rules.grace_min, early > rules.grace_min) {
        (false, false) => Verdict::OnTime,
        (true, false) => Verdict::Late { minutes: late },
        (false, true) => Verdict::LeftEarly { minutes: early },
        (true, true) => Verdict::LateAndEarly { late, early },
    }
}

/// The schedule in force on `date`.
pub fn schedule_on(schedules: &[Schedule], date: NaiveDate) -> Option<&Schedule> {
    schedules
        .iter()
        .find(|s| s.valid_from <= date && date <= s.valid_to)
}

/// One clerk's day: a verdict per segment, or `NotRequired` on a day off.
pub fn judge_day(
    cal: &Calendar,
    schedules: &[Schedule],
    rules: &Rules,
    date: NaiveDate,
    punches: &[NaiveTime],
    on_leave: impl Fn(&Segment) -> bool,
) -> Result<Vec<Verdict>, CalendarError> {
    let Some(schedule) = schedule_on(schedules, date) else {
        return Ok(Vec::new());
    };
    if !cal.is_workday(date)? {
        return Ok(vec![Verdict::NotRequired; schedule.segments.len()]);
    }
    Ok(schedule
        .segments
        .iter()
        .map(|s| judge_segment(s, rules, punches, on_leave(s)))
        .collect())
}

/// (from, to, segments): a season's month-days and its hours.
type Season = ((u32, u32), (u32, u32), Vec<Segment>);

/// The office's attendance rules and its hours by season, as `hub.toml` sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Office {
    pub rules: Rules,
    /// (from, to) as (month, day), every year; a season may run across the new year.
    seasons: Vec<Season>,
}

fn hhmm(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| format!("{s:?} is not a HH:MM time"))
}

fn month_day(s: &str) -> Result<(u32, u32), String> {
    let d = NaiveDate::parse_from_str(&format!("2024-{}", s.trim()), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a MM-DD month-day"))?;
    Ok((chrono::Datelike::month(&d), chrono::Datelike::day(&d)))
}

impl Office {
    /// Reads and checks `[attendance]`; errors say which value is wrong.
    pub fn from_config(c: &crate::config::AttendanceConfig) -> Result<Office, String> {
        let missing = match c.missing.as_str() {
            "absent" => MissingPolicy::Absent,
            "late_or_early" => MissingPolicy::LateOrEarly,
            other => {
                return Err(format!(
                    "attendance.missing = {other:?}: use \"absent\" or \"late_or_early\""
                ));
            }
        };
        if c.grace_min < 0 || c.absent_after_min < c.grace_min {
            return Err("attendance: 0 ≤ grace_min ≤ absent_after_min".into());
        }
        let mut seasons = Vec::new();
        for s in &c.schedules {
            let mut segments = Vec::new();
            for g in &s.segments {
                let seg = Segment {
                    start: hhmm(&g.start)?,
                    end: hhmm(&g.end)?,
                    check_in: (hhmm(&g.check_in[0])?, hhmm(&g.check_in[1])?),
                    check_out: (hhmm(&g.check_out[0])?, hhmm(&g.check_out[1])?),
                };
                if seg.start >= seg.end
                    || seg.check_in.0 > seg.check_in.1
                    || seg.check_out.0 > seg.check_out.1
                {
                    return Err(format!(
                        "attendance segment {}–{}: start before end, and each window from ≤ to",
                        g.start, g.end
                    ));
                }
                segments.push(seg);
            }
            seasons.push((month_day(&s.from)?, month_day(&s.to)?, segments));
        }
        Ok(Office {
            rules: Rules {
                grace_min: c.grace_min,
                absent_after_min: c.absent_after_min,
                missing,
            },
            seasons,
        })
    }

    /// The schedule in force on `date`.
    pub fn schedule_on(&self, date: NaiveDate) -> Option<Schedule> {
        let md = (chrono::Datelike::month(&date), chrono::Datelike::day(&date));
        self.seasons
            .iter()
            .find(|(from, to, _)| {
                if from <= to {
                    *from <= md && md <= *to
                } else {
                    md >= *from || md <= *to
                }
            })
            .map(|(_, _, segments)| Schedule {
                valid_from: date,
                valid_to: date,
                segments: segments.clone(),
            })
    }
}

/// 空岗: nobody at the window for a segment — neither its A-role holder nor its B-role substitute.
pub fn vacant(a: Verdict, b: Option<Verdict>) -> bool {
    a != Verdict::NotRequired && !a.present() && !b.is_some_and(Verdict::present)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn morning() -> Segment {
        Segment {
            start: t("08:30"),
            end: t("12:00"),
            check_in: (t("07:30"), t("10:00")),
            check_out: (t("11:00"), t("13:00")),
        }
    }

    fn afternoon() -> Segment {
        Segment {
            start: t("14:30"),
            end: t("17:30"),
            check_in: (t("13:30"), t("15:30")),
            check_out: (t("16:30"), t("19:00")),
        }
    }

    #[test]
    fn late_beyond_the_grace_and_half_day_absence_beyond_the_threshold() {
        let r = Rules::default();
        assert_eq!(
            judge_segment(&morning(), &r, &[t("08:34"), t("12:01")], false),
            Verdict::OnTime
        );
        assert_eq!(
            judge_segment(&morning(), &r, &[t("08:36"), t("12:01")], false),
            Verdict::Late { minutes: 6 }
        );
        assert_eq!(
            judge_segment(&morning(), &r, &[t("09:05"), t("12:01")], false),
            Verdict::Absent
        );
        assert_eq!(
            judge_segment(&morning(), &r, &[t("08:20"), t("11:40")], false),
            Verdict::LeftEarly { minutes: 20 }
        );
    }

    #[test]
    fn earliest_punch_checks_in_and_latest_checks_out() {
        let r = Rules::default();
        let punches = [t("08:40"), t("08:25"), t("11:30"), t("12:05")];
        assert_eq!(
            judge_segment(&morning(), &r, &punches, false),
            Verdict::OnTime
        );
    }

    #[test]
    fn a_missing_punch_follows_the_policy() {
        let absent = Rules::default();
        assert_eq!(
            judge_segment(&morning(), &absent, &[t("08:20")], false),
            Verdict::Absent
        );
        let lenient = Rules {
            missing: MissingPolicy::LateOrEarly,
            ..Rules::default()
        };
        assert_eq!(
            judge_segment(&morning(), &lenient, &[t("08:20")], false),
            Verdict::LeftEarly { minutes: 6 }
        );
    }

    #[test]
    fn split_shifts_and_days_off_on_the_calendar() {
        let cal = Calendar::official().unwrap();
        let winter = Schedule {
            valid_from: d("2025-10-01"),
            valid_to: d("2026-04-30"),
            segments: vec![morning(), afternoon()],
        };
        let r = Rules::default();
        let punches = [t("08:29"), t("12:02"), t("14:41"), t("17:31")];
        // Saturday 2025-10-11 is a make-up working day (调休): punches are required.
        let v = judge_day(
            &cal,
            std::slice::from_ref(&winter),
            &r,
            d("2025-10-11"),
            &punches,
            |_| false,
        )
        .unwrap();
        assert_eq!(v, vec![Verdict::OnTime, Verdict::Late { minutes: 11 }]);
        // National Day 2025 requires none.
        let v = judge_day(
            &cal,
            std::slice::from_ref(&winter),
            &r,
            d("2025-10-03"),
            &[],
            |_| false,
        )
        .unwrap();
        assert_eq!(v, vec![Verdict::NotRequired, Verdict::NotRequired]);
        // Outside every schedule's validity: nothing to judge.
        assert!(
            judge_day(&cal, &[winter], &r, d("2025-08-01"), &[], |_| false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_window_is_vacant_only_when_a_and_b_are_both_away() {
        let r = Rules::default();
        let a_on_leave = judge_segment(&morning(), &r, &[], true);
        let b_present = judge_segment(&morning(), &r, &[t("08:31"), t("12:00")], false);
        let b_absent = judge_segment(&morning(), &r, &[], false);
        assert!(
            !vacant(a_on_leave, Some(b_present)),
            "A on leave, B punched in: not vacant"
        );
        assert!(
            vacant(a_on_leave, Some(b_absent)),
            "A on leave and B absent: vacant"
        );
        assert!(vacant(b_absent, None), "no B role and A absent: vacant");
        assert!(
            !vacant(Verdict::NotRequired, None),
            "no vacancy on a day off"
        );
    }
}
