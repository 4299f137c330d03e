//! The working-day calendar (OVERSIGHT.md §1): an admin override for the date if any; else the
//! official State Council holidays and make-up working days (调休); else Monday to Friday.
//! A year without official data is an error, never a guess.

use chrono::{Datelike, Days, NaiveDate, Weekday};
use std::collections::BTreeMap;
use sunlight_protocol::holidays::{Official, OfficialDay};
use thiserror::Error;

/// The official data shipped with the hub (and the box).
pub const OFFICIAL_CN: &str = sunlight_protocol::holidays::OFFICIAL_CN;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CalendarError {
    #[error(
        "no official holiday data for {0}: add the year from the State Council notice to holidays-cn.toml, or set every needed date as an admin override"
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

    /// Sets an admin override: `working` true makes the date a working day, false a day off.
    pub fn set_override(&mut self, date: NaiveDate, working: bool) {
        self.overrides.insert(date, working);
    }

    pub fn is_workday(&self, d: NaiveDate) -> Result<bool, CalendarError> {
        if let Some(&working) = self.overrides.get(&d) {
            return Ok(working);
        }
        match self.official.day(d) {
            None => Err(CalendarError::NoData(d.year())),
            Some(OfficialDay::Holiday) => Ok(false),
            Some(OfficialDay::MakeUpWorkday) => Ok(true),
            Some(OfficialDay::Ordinary) => Ok(!matches!(d.weekday(), Weekday::Sat | Weekday::Sun)),
        }
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
    fn a_year_without_official_data_is_an_error() {
        let cal = Calendar::official().unwrap();
        let err = cal.is_workday(d("2031-05-06")).unwrap_err();
        assert_eq!(err, CalendarError::NoData(2031));
        assert!(err.to_string().contains("State Council notice"));
    }

    #[test]
    fn an_admin_override_wins() {
        let mut cal = Calendar::official().unwrap();
        cal.set_override(d("2025-10-09"), false);
        cal.set_override(d("2031-01-06"), true);
        assert!(!cal.is_workday(d("2025-10-09")).unwrap());
        assert!(cal.is_workday(d("2031-01-06")).unwrap());
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
