//! The official working-day data of the People's Republic of China: each year's public holidays and
//! make-up working days (调休), transcribed from the State Council's yearly notice into
//! `data/holidays-cn.toml`. Both sides read it: the hub counts time limits and judges attendance on
//! it (with its admins' overrides on top), the box leaves scheduled snapshots out on holidays and
//! takes them on make-up Saturdays. A year missing from the data is `None`, never a guess.

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The data shipped with both binaries.
pub const OFFICIAL_CN: &str = include_str!("../data/holidays-cn.toml");

/// What the official data says of one date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OfficialDay {
    /// A public holiday (or a weekend day inside a holiday period): a day off.
    Holiday,
    /// A weekend day that is worked (调休上班).
    MakeUpWorkday,
    /// Neither: Monday to Friday work, the weekend is off.
    Ordinary,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    years: BTreeMap<String, YearFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    /// The notice the year was transcribed from; kept in the file for people, not used.
    #[serde(rename = "source")]
    _source: String,
    holidays: Vec<String>,
    workdays: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Year {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// The official holidays and make-up working days, by year.
#[derive(Debug, Clone, Default)]
pub struct Official {
    years: BTreeMap<i32, Year>,
}

/// A `YYYY-MM-DD` date, or a message naming the text.
pub fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a YYYY-MM-DD date"))
}

/// "A" or "A..B" (inclusive, at most a month) as dates.
pub fn dates(text: &str) -> Result<Vec<NaiveDate>, String> {
    let (from, to) = match text.split_once("..") {
        Some((a, b)) => (date(a)?, date(b)?),
        None => (date(text)?, date(text)?),
    };
    if to < from || (to - from).num_days() > 31 {
        return Err(format!("range {text:?} is reversed or longer than a month"));
    }
    Ok(from.iter_days().take_while(|d| *d <= to).collect())
}

impl Official {
    /// The data shipped with the binaries ([`OFFICIAL_CN`]).
    pub fn cn() -> Result<Official, String> {
        Official::parse(OFFICIAL_CN)
    }

    /// Parses a file in the format of `data/holidays-cn.toml`; errors name the wrong entry.
    pub fn parse(text: &str) -> Result<Official, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut official = Official::default();
        for (name, y) in file.years {
            let year: i32 = name.parse().map_err(|_| format!("year {name:?}"))?;
            let mut data = Year::default();
            for text in &y.holidays {
                data.holidays.extend(dates(text)?);
            }
            for text in &y.workdays {
                data.workdays.insert(date(text)?);
            }
            if let Some(d) = data
                .holidays
                .iter()
                .chain(&data.workdays)
                .find(|d| d.year() != year)
            {
                return Err(format!("{d} is listed under {year}"));
            }
            if let Some(d) = data.holidays.intersection(&data.workdays).next() {
                return Err(format!("{d} is both a holiday and a make-up working day"));
            }
            official.years.insert(year, data);
        }
        Ok(official)
    }

    /// What the data says of `d`; `None` when its year is not in the data.
    pub fn day(&self, d: NaiveDate) -> Option<OfficialDay> {
        let year = self.years.get(&d.year())?;
        Some(if year.holidays.contains(&d) {
            OfficialDay::Holiday
        } else if year.workdays.contains(&d) {
            OfficialDay::MakeUpWorkday
        } else {
            OfficialDay::Ordinary
        })
    }

    /// The years the data covers.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// The holidays and make-up working days of `year`, in date order.
    pub fn listed(&self, year: i32) -> Vec<(NaiveDate, OfficialDay)> {
        let Some(y) = self.years.get(&year) else {
            return Vec::new();
        };
        let mut all: Vec<_> = y
            .holidays
            .iter()
            .map(|d| (*d, OfficialDay::Holiday))
            .chain(y.workdays.iter().map(|d| (*d, OfficialDay::MakeUpWorkday)))
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        date(s).unwrap()
    }

    #[test]
    fn the_shipped_data_parses_and_knows_national_day_2025() {
        let cn = Official::cn().unwrap();
        assert!(cn.years().any(|y| y == 2025) && cn.years().any(|y| y == 2026));
        assert_eq!(cn.day(d("2025-10-01")), Some(OfficialDay::Holiday));
        assert_eq!(cn.day(d("2025-10-08")), Some(OfficialDay::Holiday));
        assert_eq!(cn.day(d("2025-09-28")), Some(OfficialDay::MakeUpWorkday));
        assert_eq!(cn.day(d("2025-10-09")), Some(OfficialDay::Ordinary));
        assert_eq!(cn.day(d("2031-01-01")), None);
        let listed = cn.listed(2025);
        assert!(listed.contains(&(d("2025-10-11"), OfficialDay::MakeUpWorkday)));
        assert!(listed.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn bad_files_name_the_entry() {
        for (text, says) in [
            (
                "[years.2025]\nsource = \"x\"\nholidays = [\"2025-13-01\"]\nworkdays = []\n",
                "2025-13-01",
            ),
            (
                "[years.2025]\nsource = \"x\"\nholidays = [\"2026-01-01\"]\nworkdays = []\n",
                "listed under 2025",
            ),
            (
                "[years.2025]\nsource = \"x\"\nholidays = [\"2025-10-08..2025-10-01\"]\nworkdays = []\n",
                "reversed",
            ),
            (
                "[years.2025]\nsource = \"x\"\nholidays = [\"2025-10-11\"]\nworkdays = [\"2025-10-11\"]\n",
                "both",
            ),
            (
                "[years.twenty]\nsource = \"x\"\nholidays = []\nworkdays = []\n",
                "year",
            ),
        ] {
            let e = Official::parse(text).unwrap_err();
            assert!(e.contains(says), "{e} should name {says}");
        }
    }
}
