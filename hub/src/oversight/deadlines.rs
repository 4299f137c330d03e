//! Case time limits (电子监察, OVERSIGHT.md §2; seeds 002 and 004): a case's due day on the county's
//! calendar, its place on the warning ladder, and whether it was completed on time or early.
//!
//! Pure: a [`CaseClock`] (what the case's stage events say about its time) and a date in, a due day
//! or a [`WarningLevel`] out. Levels only escalate; the caller stores each transition with its time.

use super::calendar::{Calendar, CalendarError, DayUnit};
use chrono::{Days, NaiveDate};
use serde::Serialize;

/// The warning ladder, lowest first (seed 002: "提前一天黄灯,到期红灯,超一天黄牌,超两天红牌,三天发监察建议书").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningLevel {
    /// 蓝灯: two or more counted days left; a countdown is shown.
    Blue,
    /// 黄灯: one day before the due day; the handler is reminded.
    YellowLight,
    /// 红灯: due today; handler and unit chief are reminded.
    RedLight,
    /// 黄牌: one day overdue; unit chief and supervisor are notified; counts against the unit.
    YellowCard,
    /// 红牌: two days overdue; supervisor and leadership are notified.
    RedCard,
    /// 监察建议书: three days overdue; a numbered supervision letter is generated for the unit.
    SupervisionLetter,
}

impl WarningLevel {
    /// Every level, lowest first.
    pub const ALL: [WarningLevel; 6] = [
        WarningLevel::Blue,
        WarningLevel::YellowLight,
        WarningLevel::RedLight,
        WarningLevel::YellowCard,
        WarningLevel::RedCard,
        WarningLevel::SupervisionLetter,
    ];

    /// The name the API and the store use (the same as its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            WarningLevel::Blue => "blue",
            WarningLevel::YellowLight => "yellow_light",
            WarningLevel::RedLight => "red_light",
            WarningLevel::YellowCard => "yellow_card",
            WarningLevel::RedCard => "red_card",
            WarningLevel::SupervisionLetter => "supervision_letter",
        }
    }

    pub fn parse(name: &str) -> Option<WarningLevel> {
        WarningLevel::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The name supervisors use (seed 002).
    pub fn zh(self) -> &'static str {
        match self {
            WarningLevel::Blue => "蓝灯",
            WarningLevel::YellowLight => "黄灯",
            WarningLevel::RedLight => "红灯",
            WarningLevel::YellowCard => "黄牌",
            WarningLevel::RedCard => "红牌",
            WarningLevel::SupervisionLetter => "监察建议书",
        }
    }
}

/// 即办件 (due the day it is accepted) or 承诺件 (due after a promised number of days).
pub use sunlight_protocol::event::bodies::CaseKind;

/// A clock pause (暂停: 补正, or an Art. 45 step such as 听证 or 检测): the days from `from` up to,
/// not including, `until` do not count. `until` is `None` while the case is still paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub from: NaiveDate,
    pub until: Option<NaiveDate>,
}

/// What the stage events of one case say about its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseClock {
    pub kind: CaseKind,
    /// 受理: the acceptance day.
    pub accepted: NaiveDate,
    /// The governing limit (the promised one, 承诺时限), in `unit`s.
    pub limit_days: u32,
    pub unit: DayUnit,
    pub pauses: Vec<Pause>,
    /// Approved extensions (延期), in `unit`s: +10 (single unit) or +15 (joint handling) by default.
    pub extension_days: u32,
    /// 办结: the completion day.
    pub completed: Option<NaiveDate>,
}

/// How a completed case did against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Completion {
    /// Completed on or before the due day.
    pub on_time: bool,
    /// 提前办结: completed at least one counted day before the due day.
    pub early: bool,
}

impl CaseClock {
    fn paused(&self, d: NaiveDate) -> bool {
        self.pauses
            .iter()
            .any(|p| p.from <= d && p.until.is_none_or(|u| d < u))
    }

    /// Does day `d` count towards the limit (a counted day of the unit, not paused)?
    fn counts(&self, cal: &Calendar, d: NaiveDate) -> Result<bool, CalendarError> {
        Ok(!self.paused(d) && cal.counts(d, self.unit)?)
    }

    /// Counted days in `(from, to]`.
    fn between(
        &self,
        cal: &Calendar,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<u32, CalendarError> {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d = next(d)?;
            if self.counts(cal, d)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Is the clock stopped by a pause that has not ended?
    pub fn is_paused(&self) -> bool {
        self.pauses.iter().any(|p| p.until.is_none())
    }

    /// The due day, or `None` while a pause is open (the clock is stopped; it is known again on resume).
    pub fn due(&self, cal: &Calendar) -> Result<Option<NaiveDate>, CalendarError> {
        if self.is_paused() {
            return Ok(None);
        }
        let mut left = match self.kind {
            CaseKind::Immediate => 0,
            CaseKind::Promised => self.limit_days + self.extension_days,
        };
        let mut d = self.accepted;
        while left > 0 {
            d = next(d)?;
            if self.counts(cal, d)? {
                left -= 1;
            }
        }
        Ok(Some(d))
    }

    /// Counted days past the due day on `today` (0 when not overdue or not yet due).
    pub fn overdue_days(&self, cal: &Calendar, today: NaiveDate) -> Result<u32, CalendarError> {
        match self.due(cal)? {
            Some(due) if due < today => self.between(cal, due, today),
            _ => Ok(0),
        }
    }

    /// The level of an open case on `today`; `None` while its clock is stopped or once completed.
    pub fn level(
        &self,
        cal: &Calendar,
        today: NaiveDate,
    ) -> Result<Option<WarningLevel>, CalendarError> {
        if self.completed.is_some() {
            return Ok(None);
        }
        let Some(due) = self.due(cal)? else {
            return Ok(None);
        };
        self.level_at(cal, due, today).map(Some)
    }

    fn level_at(
        &self,
        cal: &Calendar,
        due: NaiveDate,
        today: NaiveDate,
    ) -> Result<WarningLevel, CalendarError> {
        Ok(if today <= due {
            match self.between(cal, today, due)? {
                0 => WarningLevel::RedLight,
                1 => WarningLevel::YellowLight,
                _ => WarningLevel::Blue,
            }
        } else {
            // Overdue by counted days: a weekend right after the due day is not yet a day overdue.
            match self.between(cal, due, today)? {
                0 => WarningLevel::RedLight,
                1 => WarningLevel::YellowCard,
                2 => WarningLevel::RedCard,
                _ => WarningLevel::SupervisionLetter,
            }
        })
    }

    /// The first day after `today` on which the level rises, and to what: the key by which a timer
    /// tick finds the cases whose state can change, without looking at the others.
    ///
    /// The level can only change on the last counted day before the due day, on the due day, and on
    /// the first three counted days after it; only those days are evaluated.
    pub fn next_escalation(
        &self,
        cal: &Calendar,
        today: NaiveDate,
    ) -> Result<Option<(NaiveDate, WarningLevel)>, CalendarError> {
        if self.completed.is_some() {
            return Ok(None);
        }
        let Some(due) = self.due(cal)? else {
            return Ok(None);
        };
        let now = self.level_at(cal, due, today)?;
        let mut candidates = Vec::with_capacity(5);
        // The last counted day before the due day, not before acceptance.
        let mut d = due;
        while d > self.accepted {
            d = d
                .pred_opt()
                .ok_or_else(|| CalendarError::Invalid("date out of range".into()))?;
            if self.counts(cal, d)? {
                candidates.push(d);
                break;
            }
        }
        candidates.push(due);
        let mut d = due;
        for _ in 0..3 {
            d = next(d)?;
            // A long holiday is the longest run of uncounted days; bound the walk to a year.
            let mut guard = 0;
            while !self.counts(cal, d)? {
                d = next(d)?;
                guard += 1;
                if guard > 366 {
                    return Ok(None);
                }
            }
            candidates.push(d);
        }
        for day in candidates.into_iter().filter(|d| *d > today) {
            let level = self.level_at(cal, due, day)?;
            if level > now {
                return Ok(Some((day, level)));
            }
        }
        Ok(None)
    }

    /// On time and early, for a completed case.
    pub fn completion(&self, cal: &Calendar) -> Result<Option<Completion>, CalendarError> {
        let Some(done) = self.completed else {
            return Ok(None);
        };
        let probe = CaseClock {
            completed: None,
            ..self.clone()
        };
        let Some(due) = probe.due(cal)? else {
            return Ok(None);
        };
        Ok(Some(Completion {
            on_time: done <= due,
            early: done < due && probe.between(cal, done, due)? >= 1,
        }))
    }
}

fn next(d: NaiveDate) -> Result<NaiveDate, CalendarError> {
    d.checked_add_days(Days::new(1))
        .ok_or_else(|| CalendarError::Invalid("date out of range".into()))
}

/// Levels only escalate: the new level when `computed` is above `stored`, else `None`.
pub fn escalate(
    stored: Option<WarningLevel>,
    computed: Option<WarningLevel>,
) -> Option<WarningLevel> {
    match (stored, computed) {
        (_, None) => None,
        (None, Some(c)) => Some(c),
        (Some(s), Some(c)) => (c > s).then_some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn promised(accepted: &str, days: u32) -> CaseClock {
        CaseClock {
            kind: CaseKind::Promised,
            accepted: d(accepted),
            limit_days: days,
            unit: DayUnit::Working,
            pauses: vec![],
            extension_days: 0,
            completed: None,
        }
    }

    fn cal() -> Calendar {
        Calendar::official().unwrap()
    }

    #[test]
    fn due_day_honours_national_day_and_its_make_up_sunday() {
        // Accepted Friday 2025-09-26, 5 working days: Sun 09-28 works, 10-01..08 are off.
        assert_eq!(
            promised("2025-09-26", 5).due(&cal()).unwrap(),
            Some(d("2025-10-10"))
        );
    }

    #[test]
    fn an_immediate_case_is_due_the_day_it_is_accepted() {
        let c = CaseClock {
            kind: CaseKind::Immediate,
            ..promised("2025-11-03", 0)
        };
        assert_eq!(c.due(&cal()).unwrap(), Some(d("2025-11-03")));
        assert_eq!(
            c.level(&cal(), d("2025-11-03")).unwrap(),
            Some(WarningLevel::RedLight)
        );
    }

    #[test]
    fn a_pause_across_a_weekend_stops_the_clock() {
        // Mon 11-03 + 3 working days is Thu 11-06; paused Wed 11-05 to Mon 11-10 it is Tue 11-11.
        let mut c = promised("2025-11-03", 3);
        assert_eq!(c.due(&cal()).unwrap(), Some(d("2025-11-06")));
        c.pauses.push(Pause {
            from: d("2025-11-05"),
            until: None,
        });
        assert_eq!(c.due(&cal()).unwrap(), None, "no due day while paused");
        assert_eq!(
            c.level(&cal(), d("2025-11-07")).unwrap(),
            None,
            "no escalation while paused"
        );
        c.pauses[0].until = Some(d("2025-11-10"));
        assert_eq!(c.due(&cal()).unwrap(), Some(d("2025-11-11")));
    }

    #[test]
    fn a_pause_starting_on_the_due_day() {
        let mut c = promised("2025-11-03", 3);
        c.pauses.push(Pause {
            from: d("2025-11-06"),
            until: Some(d("2025-11-10")),
        });
        assert_eq!(c.due(&cal()).unwrap(), Some(d("2025-11-10")));
    }

    #[test]
    fn an_extension_adds_its_days() {
        let mut c = promised("2025-11-03", 20);
        let before = c.due(&cal()).unwrap().unwrap();
        c.extension_days = 10;
        let after = c.due(&cal()).unwrap().unwrap();
        assert_eq!(
            cal().days_between(before, after, DayUnit::Working).unwrap(),
            10
        );
    }

    #[test]
    fn a_year_without_data_is_an_error() {
        let c = promised("2024-03-04", 5);
        assert!(matches!(c.due(&cal()), Err(CalendarError::NoData(2024))));
    }

    #[test]
    fn a_promised_case_climbs_every_step_of_the_ladder_once() {
        // Accepted Mon 2025-11-03 with 5 working days: due Mon 11-10.
        let c = promised("2025-11-03", 5);
        let cal = cal();
        let mut stored = None;
        let mut transitions = Vec::new();
        let mut day = d("2025-11-03");
        while day <= d("2025-11-20") {
            if let Some(level) = escalate(stored, c.level(&cal, day).unwrap()) {
                transitions.push((day, level));
                stored = Some(level);
            }
            day = day.succ_opt().unwrap();
        }
        use WarningLevel::*;
        assert_eq!(
            transitions,
            vec![
                (d("2025-11-03"), Blue),
                (d("2025-11-07"), YellowLight), // Friday: one working day (Monday) left
                (d("2025-11-10"), RedLight),    // due today
                (d("2025-11-11"), YellowCard),
                (d("2025-11-12"), RedCard),
                (d("2025-11-13"), SupervisionLetter),
            ]
        );
        // The timer index agrees with the walk.
        assert_eq!(
            c.next_escalation(&cal, d("2025-11-03")).unwrap(),
            Some((d("2025-11-07"), YellowLight))
        );
        assert_eq!(c.next_escalation(&cal, d("2025-11-13")).unwrap(), None);
    }

    #[test]
    fn the_next_escalation_agrees_with_walking_day_by_day() {
        let cal = cal();
        let mut day = d("2025-09-01");
        let mut checked = 0;
        while day < d("2025-10-20") {
            for days in [0, 1, 2, 5, 9] {
                let mut c = promised(&day.to_string(), days);
                if days == 0 {
                    c.kind = CaseKind::Immediate;
                }
                let mut t = day;
                while t < d("2025-11-10") {
                    let walked = {
                        let now = c.level(&cal, t).unwrap();
                        let mut u = t;
                        let mut found = None;
                        while u < d("2025-12-31") {
                            u = u.succ_opt().unwrap();
                            let l = c.level(&cal, u).unwrap();
                            if l > now {
                                found = Some((u, l.unwrap()));
                                break;
                            }
                        }
                        found
                    };
                    assert_eq!(
                        c.next_escalation(&cal, t).unwrap(),
                        walked,
                        "accepted {day}, {days} days, on {t}"
                    );
                    checked += 1;
                    t = t.checked_add_days(Days::new(3)).unwrap();
                }
            }
            day = day.checked_add_days(Days::new(4)).unwrap();
        }
        assert!(checked > 500);
    }

    #[test]
    fn level_names_match_their_json_form() {
        for level in WarningLevel::ALL {
            assert_eq!(serde_json::to_value(level).unwrap(), level.as_str());
            assert_eq!(WarningLevel::parse(level.as_str()), Some(level));
        }
    }

    #[test]
    fn levels_never_go_down() {
        assert_eq!(
            escalate(Some(WarningLevel::RedCard), Some(WarningLevel::Blue)),
            None
        );
        assert_eq!(
            escalate(Some(WarningLevel::Blue), Some(WarningLevel::RedLight)),
            Some(WarningLevel::RedLight)
        );
    }

    #[test]
    fn on_time_and_early_completion() {
        let cal = cal();
        let mut c = promised("2025-11-03", 5); // due 11-10
        c.completed = Some(d("2025-11-10"));
        assert_eq!(
            c.completion(&cal).unwrap(),
            Some(Completion {
                on_time: true,
                early: false
            })
        );
        c.completed = Some(d("2025-11-07"));
        assert_eq!(
            c.completion(&cal).unwrap(),
            Some(Completion {
                on_time: true,
                early: true
            })
        );
        c.completed = Some(d("2025-11-11"));
        assert_eq!(
            c.completion(&cal).unwrap(),
            Some(Completion {
                on_time: false,
                early: false
            })
        );
        assert_eq!(
            c.level(&cal, d("2025-11-20")).unwrap(),
            None,
            "a completed case has no light"
        );
    }
}
