//! The working-day calendar (OVERSIGHT.md §1), one for every caller, in three layers: an admin
//! override for the date if any; else the year's official State Council arrangement (holidays and
//! make-up working days, 调休) if the hub has it; else the *provisional* year of the statutory
//! holidays alone (decision 0014) — and Monday to Friday around them. Every answer names its layer
//! ([`Source`]) so that what rests on a provisional day can say so. A year before 2025 without
//! official data is an error, never a guess.

use chrono::{Datelike, Days, NaiveDate, Weekday};
use std::collections::BTreeMap;
pub use sunlight_protocol::holidays::Source;
use sunlight_protocol::holidays::{
    FIRST_STATUTORY_YEAR, LAST_STATUTORY_YEAR, Official, OfficialDay,
};
use thiserror::Error;

/// The official data shipped with the hub (and the box).
pub const OFFICIAL_CN: &str = sunlight_protocol::holidays::OFFICIAL_CN;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CalendarError {
    #[error(
        "no holiday data for {0}, and the statutory holidays of 2024 are reckoned only for 2025-2100: load the year's State Council notice (sunlight-hub calendar import), or set every needed date as an admin override"
    )]
    NoData(i32),
    #[error("holiday data is invalid: {0}")]
    Invalid(String),
}

/// Working days of one county.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    official: Official,
    /// date → is a working day, set by an admin; wins over everything.
    overrides: BTreeMap<NaiveDate, bool>,
}

/// The calendar's answer for one day: working or not, and which layer said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub working: bool,
    pub source: Source,
}

/// 「暂按法定节假日计算，待录入 YYYY 年放假安排」: the note shown beside whatever rests on a provisional
/// day of `year`.
pub fn provisional_note_zh(year: i32) -> String {
    format!("暂按法定节假日计算，待录入 {year} 年放假安排")
}

/// The English of [`provisional_note_zh`].
pub fn provisional_note_en(year: i32) -> String {
    format!(
        "reckoned on the statutory holidays alone until {year}'s official arrangement is loaded"
    )
}

impl Calendar {
    /// The calendar of the official data shipped with the hub.
    pub fn official() -> Result<Calendar, CalendarError> {
        Calendar::from_toml(OFFICIAL_CN)
    }

    pub fn from_toml(text: &str) -> Result<Calendar, CalendarError> {
        Ok(Calendar {
            official: Official::parse(text).map_err(CalendarError::Invalid)?,
            overrides: BTreeMap::new(),
        })
    }

    /// The official data under the overrides (for showing an admin what they override).
    pub fn official_data(&self) -> &Official {
        &self.official
    }

    /// Puts the years of `loaded` (a notice loaded at run time) in place of the shipped ones.
    pub fn load_official(&mut self, loaded: &Official) {
        self.official.merge(loaded);
    }

    /// The admins' overrides: date → working day.
    pub fn overrides(&self) -> &BTreeMap<NaiveDate, bool> {
        &self.overrides
    }

    /// Sets an admin override: `working` true makes the date a working day, false a day off.
    pub fn set_override(&mut self, date: NaiveDate, working: bool) {
        self.overrides.insert(date, working);
    }

    /// Whether `d` is a working day, and which layer says so.
    pub fn day(&self, d: NaiveDate) -> Result<Day, CalendarError> {
        if let Some(&working) = self.overrides.get(&d) {
            return Ok(Day {
                working,
                source: Source::Override,
            });
        }
        let (kind, source) = self
            .official
            .day_or_provisional(d)
            .ok_or(CalendarError::NoData(d.year()))?;
        let working = match kind {
            OfficialDay::Holiday => false,
            OfficialDay::MakeUpWorkday => true,
            OfficialDay::Ordinary => !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
        };
        Ok(Day { working, source })
    }

    pub fn is_workday(&self, d: NaiveDate) -> Result<bool, CalendarError> {
        self.day(d).map(|day| day.working)
    }

    /// The first year whose days in `from..=to` the calendar answers provisionally (no official
    /// arrangement loaded and not every day overridden): what an answer over that span rests on.
    pub fn provisional_in(&self, from: NaiveDate, to: NaiveDate) -> Option<i32> {
        let first = from.year().max(FIRST_STATUTORY_YEAR);
        let last = to.year().min(LAST_STATUTORY_YEAR);
        (first..=last).find(|&y| {
            if self.official.has_year(y) {
                return false;
            }
            let (Some(a), Some(b)) = (
                NaiveDate::from_ymd_opt(y, 1, 1).map(|a| a.max(from)),
                NaiveDate::from_ymd_opt(y, 12, 31).map(|b| b.min(to)),
            ) else {
                return false;
            };
            let days = (b - a).num_days() + 1;
            days > 0 && (self.overrides.range(a..=b).count() as i64) < days
        })
    }

    /// The years the calendar answers provisionally from `from` to `to`, for the admin page.
    pub fn provisional_years(&self, from: i32, to: i32) -> Vec<i32> {
        (from.max(FIRST_STATUTORY_YEAR)..=to.min(LAST_STATUTORY_YEAR))
            .filter(|y| !self.official.has_year(*y))
            .collect()
    }

    /// Does `d` count towards a limit measured in `unit`?
    pub fn counts(&self, d: NaiveDate, unit: DayUnit) -> Result<bool, CalendarError> {
        match unit {
            DayUnit::Working => self.is_workday(d),
            DayUnit::Natural => Ok(true),
        }
    }

    /// The `n`th counted day after `start` (`start` itself not counted); `start` when `n` is 0.
    pub fn add_days(
        &self,
        start: NaiveDate,
        n: u32,
        unit: DayUnit,
    ) -> Result<NaiveDate, CalendarError> {
        let mut d = start;
        let mut left = n;
        while left > 0 {
            d = d
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::Invalid("date out of range".into()))?;
            if self.counts(d, unit)? {
                left -= 1;
            }
        }
        Ok(d)
    }

    /// Counted days in `(from, to]`; 0 when `to <= from`.
    pub fn days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        unit: DayUnit,
    ) -> Result<u32, CalendarError> {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d = d
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::Invalid("date out of range".into()))?;
            if self.counts(d, unit)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// How a time limit counts days: the protocol's `limit_unit`, working days by default.
pub use sunlight_protocol::event::bodies::LimitUnit as DayUnit;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        sunlight_protocol::holidays::date(s).unwrap()
    }

    #[test]
    fn national_day_2025_is_off_and_its_make_up_days_work() {
        let cal = Calendar::official().unwrap();
        for day in ["2025-10-01", "2025-10-03", "2025-10-06", "2025-10-08"] {
            assert!(!cal.is_workday(d(day)).unwrap(), "{day} is a holiday");
        }
        assert!(
            cal.is_workday(d("2025-09-28")).unwrap(),
            "Sunday 2025-09-28 is a working day (调休)"
        );
        assert!(
            cal.is_workday(d("2025-10-11")).unwrap(),
            "Saturday 2025-10-11 is a working day (调休)"
        );
        assert!(
            !cal.is_workday(d("2025-09-27")).unwrap(),
            "an ordinary Saturday is off"
        );
        assert!(cal.is_workday(d("2025-10-09")).unwrap());
    }

    #[test]
    fn spring_festival_2026_follows_the_notice() {
        let cal = Calendar::official().unwrap();
        assert!(
            !cal.is_workday(d("2026-02-16")).unwrap(),
            "Monday in the Spring Festival is off"
        );
        assert!(!cal.is_workday(d("2026-02-23")).unwrap());
        assert!(
            cal.is_workday(d("2026-02-14")).unwrap(),
            "Saturday 2026-02-14 is a working day"
        );
        assert!(
            cal.is_workday(d("2026-02-28")).unwrap(),
            "Saturday 2026-02-28 is a working day"
        );
        assert!(cal.is_workday(d("2026-02-24")).unwrap());
    }

    #[test]
    fn a_year_before_the_statutory_rules_without_data_is_an_error() {
        let cal = Calendar::official().unwrap();
        let err = cal.is_workday(d("2024-05-06")).unwrap_err();
        assert_eq!(err, CalendarError::NoData(2024));
        assert!(err.to_string().contains("State Council notice"));
        assert_eq!(
            cal.day(d("2101-01-03")).unwrap_err(),
            CalendarError::NoData(2101)
        );
    }

    #[test]
    fn every_answer_names_its_layer() {
        let mut cal = Calendar::official().unwrap();
        cal.set_override(d("2027-01-04"), false);
        let day = |s| cal.day(d(s)).unwrap();
        assert_eq!(
            day("2026-02-14"),
            Day {
                working: true,
                source: Source::Official
            },
            "the 2026 notice's make-up Saturday"
        );
        assert_eq!(
            day("2027-01-01"),
            Day {
                working: false,
                source: Source::Provisional
            },
            "元旦 2027 by the statutory rules"
        );
        for off in ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"] {
            assert_eq!(
                day(off),
                Day {
                    working: false,
                    source: Source::Provisional
                },
                "春节 2027: {off}"
            );
        }
        assert_eq!(
            day("2027-01-05"),
            Day {
                working: true,
                source: Source::Provisional
            }
        );
        assert_eq!(
            day("2027-01-09"),
            Day {
                working: false,
                source: Source::Provisional
            },
            "a Saturday, with no make-up days in a provisional year"
        );
        assert_eq!(
            day("2027-01-04"),
            Day {
                working: false,
                source: Source::Override
            }
        );
    }

    #[test]
    fn what_rests_on_a_provisional_year_is_found() {
        let mut cal = Calendar::official().unwrap();
        assert_eq!(cal.provisional_in(d("2025-03-01"), d("2026-12-31")), None);
        assert_eq!(
            cal.provisional_in(d("2026-12-21"), d("2027-01-19")),
            Some(2027)
        );
        assert_eq!(cal.provisional_in(d("2020-01-01"), d("2024-12-31")), None);
        // Every provisional day of the span overridden: nothing rests on the provisional year.
        for day in d("2027-01-01").iter_days().take(3) {
            cal.set_override(day, false);
        }
        assert_eq!(cal.provisional_in(d("2026-12-30"), d("2027-01-03")), None);
        assert_eq!(
            cal.provisional_in(d("2026-12-30"), d("2027-01-04")),
            Some(2027)
        );
        assert_eq!(cal.provisional_years(2024, 2028), vec![2027, 2028]);
    }

    #[test]
    fn an_admin_override_wins() {
        let mut cal = Calendar::official().unwrap();
        cal.set_override(d("2025-10-09"), false);
        cal.set_override(d("2024-01-08"), true);
        assert!(!cal.is_workday(d("2025-10-09")).unwrap());
        assert!(cal.is_workday(d("2024-01-08")).unwrap());
    }

    #[test]
    fn counting_days() {
        let cal = Calendar::official().unwrap();
        // Friday 2025-09-26 + 5 working days: 09-28 (Sun, 调休), 09-29, 09-30, then 10-09, 10-10.
        assert_eq!(
            cal.add_days(d("2025-09-26"), 5, DayUnit::Working).unwrap(),
            d("2025-10-10")
        );
        assert_eq!(
            cal.add_days(d("2025-09-26"), 5, DayUnit::Natural).unwrap(),
            d("2025-10-01")
        );
        assert_eq!(
            cal.days_between(d("2025-09-26"), d("2025-10-10"), DayUnit::Working)
                .unwrap(),
            5
        );
        assert_eq!(
            cal.days_between(d("2025-10-10"), d("2025-09-26"), DayUnit::Working)
                .unwrap(),
            0
        );
    }

    #[test]
    fn bad_data_is_refused_with_the_reason() {
        let bad = "[years.2025]\nsource = \"x\"\nholidays = [\"2025-13-01\"]\nworkdays = []\n";
        assert!(
            Calendar::from_toml(bad)
                .unwrap_err()
                .to_string()
                .contains("2025-13-01")
        );
        let misfiled = "[years.2025]\nsource = \"x\"\nholidays = [\"2026-01-01\"]\nworkdays = []\n";
        assert!(
            Calendar::from_toml(misfiled)
                .unwrap_err()
                .to_string()
                .contains("listed under 2025")
        );
    }
}
