//! The official working-day data of the People's Republic of China: each year's public holidays and
//! make-up working days (调休), transcribed from the State Council's yearly notice into
//! `data/holidays-cn.toml`. Both sides read it: the hub counts time limits and judges attendance on
//! it (with its admins' overrides on top), the box leaves scheduled snapshots out on holidays and
//! takes them on make-up Saturdays.
//!
//! A year the State Council has not yet published (the notice comes in November or December) is
//! not a blank either: from 2025 on, [`statutory`] computes the days off that 《全国年节及纪念日放假办法》
//! (as amended in 2024) fixes by law — the *provisional* year, shown as such wherever it is used
//! ([`Source::Provisional`]), with no make-up working days, since only the notice sets those. A year
//! before 2025 missing from the data is `None`, never a guess (decision 0014).

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

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
    /// The notice the year was transcribed from.
    source: String,
    holidays: Vec<String>,
    workdays: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Year {
    source: String,
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// The official holidays and make-up working days, by year.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Official {
    years: BTreeMap<i32, Year>,
}

/// A `YYYY-MM-DD` date, or a message naming the text.
pub fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a YYYY-MM-DD date"))
}

/// `message`, with the line of `text` that holds `needle` (the first), when there is one.
fn at_line(text: &str, needle: &str, message: String) -> String {
    match text.lines().position(|l| l.contains(needle)) {
        Some(i) => format!("line {}: {message}", i + 1),
        None => message,
    }
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

    /// Parses a file in the format of `data/holidays-cn.toml`; errors name the wrong entry and
    /// its line.
    pub fn parse(text: &str) -> Result<Official, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut official = Official::default();
        for (name, y) in file.years {
            let year: i32 = name
                .parse()
                .map_err(|_| at_line(text, &name, format!("year {name:?}")))?;
            let mut data = Year {
                source: y.source.clone(),
                ..Year::default()
            };
            for entry in &y.holidays {
                data.holidays
                    .extend(dates(entry).map_err(|e| at_line(text, entry, e))?);
            }
            for entry in &y.workdays {
                data.workdays
                    .insert(date(entry).map_err(|e| at_line(text, entry, e))?);
            }
            if let Some(d) = data
                .holidays
                .iter()
                .chain(&data.workdays)
                .find(|d| d.year() != year)
            {
                return Err(at_line(
                    text,
                    &d.to_string(),
                    format!("{d} is listed under {year}"),
                ));
            }
            if let Some(d) = data.holidays.intersection(&data.workdays).next() {
                return Err(at_line(
                    text,
                    &d.to_string(),
                    format!("{d} is both a holiday and a make-up working day"),
                ));
            }
            official.years.insert(year, data);
        }
        Ok(official)
    }

    /// Reads a year's arrangement as a county loads it: the project's TOML (as
    /// `data/holidays-cn.toml`) or the JSON of the `holiday-cn` dataset
    /// (`{"year": 2027, "days": [{"name": "元旦", "date": "2027-01-01", "isOffDay": true}, …]}`),
    /// then checked as a notice must be ([`Official::check`]). Errors name the line.
    pub fn import(text: &str) -> Result<Official, String> {
        let official = if text.trim_start().starts_with('{') {
            Official::parse_holiday_cn(text)?
        } else {
            Official::parse(text)?
        };
        if official.years.is_empty() {
            return Err("the file holds no year".into());
        }
        official.check(text)?;
        Ok(official)
    }

    /// The `holiday-cn` dataset's JSON for one year.
    fn parse_holiday_cn(text: &str) -> Result<Official, String> {
        #[derive(Deserialize)]
        struct Doc {
            year: i32,
            days: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            name: String,
            date: String,
            #[serde(rename = "isOffDay")]
            is_off_day: bool,
        }
        let doc: Doc =
            serde_json::from_str(text).map_err(|e| format!("not holiday-cn JSON: {e}"))?;
        let mut data = Year {
            source: format!("holiday-cn {}", doc.year),
            ..Year::default()
        };
        for e in &doc.days {
            let d = date(&e.date).map_err(|m| at_line(text, &e.date, m))?;
            if Festival::from_zh(&e.name).is_none() {
                return Err(at_line(
                    text,
                    &e.date,
                    format!("{:?} on {d} is not a statutory holiday's name", e.name),
                ));
            }
            if d.year() != doc.year {
                return Err(at_line(
                    text,
                    &e.date,
                    format!("{d} is listed under {}", doc.year),
                ));
            }
            let (this, other) = if e.is_off_day {
                (&mut data.holidays, &data.workdays)
            } else {
                (&mut data.workdays, &data.holidays)
            };
            if other.contains(&d) {
                return Err(at_line(
                    text,
                    &e.date,
                    format!("{d} is both a holiday and a make-up working day"),
                ));
            }
            this.insert(d);
        }
        let mut official = Official::default();
        official.years.insert(doc.year, data);
        Ok(official)
    }

    /// What a notice must hold: every statutory day of the 办法 is a day off (from 2025), and every
    /// make-up working day is a Saturday or Sunday. `text` is the file, to name the line.
    pub fn check(&self, text: &str) -> Result<(), String> {
        for (year, data) in &self.years {
            if let Some(d) = data.workdays.iter().find(|d| !weekend(**d)) {
                return Err(at_line(
                    text,
                    &d.to_string(),
                    format!(
                        "make-up working day {d} is a {}, not a weekend day",
                        d.weekday()
                    ),
                ));
            }
            for s in statutory(*year).unwrap_or_default() {
                if !s.substitute && !data.holidays.contains(&s.date) {
                    return Err(format!(
                        "{year}: {} ({}) is a statutory day off (全国年节及纪念日放假办法) and is not a holiday in the file",
                        s.date,
                        s.festival.zh()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Puts the years of `other` in place of these (a loaded notice wins over the shipped one).
    pub fn merge(&mut self, other: &Official) {
        for (y, data) in &other.years {
            self.years.insert(*y, data.clone());
        }
    }

    /// The notice `year` was transcribed from.
    pub fn source(&self, year: i32) -> Option<&str> {
        self.years.get(&year).map(|y| y.source.as_str())
    }

    /// `year` in the format of `data/holidays-cn.toml` (how the hub stores a loaded year).
    pub fn year_toml(&self, year: i32) -> Option<String> {
        let y = self.years.get(&year)?;
        let list = |days: &BTreeSet<NaiveDate>| {
            days.iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!(
            "[years.{year}]\nsource = {}\nholidays = [{}]\nworkdays = [{}]\n",
            // A JSON string is a TOML basic string (the same escapes).
            serde_json::to_string(&y.source).unwrap_or_else(|_| "\"\"".into()),
            list(&y.holidays),
            list(&y.workdays)
        ))
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

/// Which layer of the calendar an answer about a day came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A local admin's override (a closure, a correction); wins over the rest.
    Override,
    /// The State Council's arrangement of the year (放假安排), shipped or loaded.
    Official,
    /// The statutory holidays alone, computed ([`statutory`]): the year's arrangement is not yet in.
    Provisional,
}

/// The first year of the statutory holidays as amended in 2024 (国务院令第795号, in force from
/// 2025-01-01: the Spring Festival eve and May 2 were added). Earlier years have other rules.
pub const FIRST_STATUTORY_YEAR: i32 = 2025;
/// The last year the provisional reckoning is offered for. The lunar tables reach much further; the
/// bound keeps a mistyped date (year 20270) from being answered with a confident guess.
pub const LAST_STATUTORY_YEAR: i32 = 2100;

/// A holiday all citizens have off (全体公民放假的节日, Art. 2 of the 办法).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Festival {
    /// 元旦: January 1.
    NewYear,
    /// 春节: the eve (除夕, the last day of the 12th lunar month) and the 1st to 3rd of the 1st.
    SpringFestival,
    /// 清明节: the day of the Qingming solar term.
    Qingming,
    /// 劳动节: May 1 and 2.
    Labour,
    /// 端午节: the 5th of the 5th lunar month.
    DragonBoat,
    /// 中秋节: the 15th of the 8th lunar month.
    MidAutumn,
    /// 国庆节: October 1 to 3.
    National,
}

impl Festival {
    /// Every statutory holiday, in the order of the year.
    pub const ALL: [Festival; 7] = [
        Festival::NewYear,
        Festival::SpringFestival,
        Festival::Qingming,
        Festival::Labour,
        Festival::DragonBoat,
        Festival::MidAutumn,
        Festival::National,
    ];

    /// The name the notices use.
    pub fn zh(self) -> &'static str {
        match self {
            Festival::NewYear => "元旦",
            Festival::SpringFestival => "春节",
            Festival::Qingming => "清明节",
            Festival::Labour => "劳动节",
            Festival::DragonBoat => "端午节",
            Festival::MidAutumn => "中秋节",
            Festival::National => "国庆节",
        }
    }

    /// The festival a notice's name means ("春节", "国庆节、中秋节" names the first), if any.
    pub fn from_zh(name: &str) -> Option<Festival> {
        let name = name.trim();
        Festival::ALL
            .into_iter()
            .find(|f| name.starts_with(f.zh()) || name.starts_with(f.zh().trim_end_matches('节')))
    }
}

/// One day off the 办法 gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StatutoryDay {
    pub date: NaiveDate,
    pub festival: Festival,
    /// 补假 (Art. 6): a working day off in place of a statutory day that fell on a weekend; it is
    /// put on the first weekdays after the festival that are not statutory days themselves.
    pub substitute: bool,
}

fn to_date(year: isize, month: usize, day: usize) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )
}

fn lunar(year: i32, month: isize, day: usize) -> Option<NaiveDate> {
    let d = tyme4rs::tyme::lunar::LunarDay::new(year as isize, month, day)
        .ok()?
        .get_solar_day();
    to_date(d.get_year(), d.get_month(), d.get_day())
}

fn qingming(year: i32) -> Option<NaiveDate> {
    let d = tyme4rs::tyme::solar::SolarTerm::new(year as isize, "清明")
        .ok()?
        .get_solar_day();
    to_date(d.get_year(), d.get_month(), d.get_day())
}

fn weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

fn compute(year: i32) -> Option<Vec<StatutoryDay>> {
    let fixed = |m, d| NaiveDate::from_ymd_opt(year, m, d);
    let new_year = lunar(year, 1, 1)?;
    let festivals: Vec<(Festival, Vec<NaiveDate>)> = vec![
        (Festival::NewYear, vec![fixed(1, 1)?]),
        (
            Festival::SpringFestival,
            vec![
                new_year.pred_opt()?,
                new_year,
                new_year.succ_opt()?,
                new_year.checked_add_days(Days::new(2))?,
            ],
        ),
        (Festival::Qingming, vec![qingming(year)?]),
        (Festival::Labour, vec![fixed(5, 1)?, fixed(5, 2)?]),
        (Festival::DragonBoat, vec![lunar(year, 5, 5)?]),
        (Festival::MidAutumn, vec![lunar(year, 8, 15)?]),
        (
            Festival::National,
            vec![fixed(10, 1)?, fixed(10, 2)?, fixed(10, 3)?],
        ),
    ];
    let mut days: BTreeMap<NaiveDate, StatutoryDay> = BTreeMap::new();
    for (festival, dates) in &festivals {
        for &date in dates {
            // Mid-Autumn on a National Day date is one day off, not two: the 办法 is silent, the
            // notices of such years (2020) added a day themselves; that is theirs to do.
            days.entry(date).or_insert(StatutoryDay {
                date,
                festival: *festival,
                substitute: false,
            });
        }
    }
    // Art. 6: a statutory day on a Saturday or Sunday is made up on a working day (补假).
    for (festival, dates) in &festivals {
        let owed = dates.iter().filter(|d| weekend(**d)).count();
        let mut d = *dates.iter().max()?;
        for _ in 0..owed {
            loop {
                d = d.succ_opt()?;
                if !weekend(d) && !days.contains_key(&d) {
                    break;
                }
            }
            days.insert(
                d,
                StatutoryDay {
                    date: d,
                    festival: *festival,
                    substitute: true,
                },
            );
        }
    }
    Some(days.into_values().collect())
}

/// The days off of `year` under the 办法 of 2024 (statutory days and their 补假), in date order;
/// `None` outside [`FIRST_STATUTORY_YEAR`]..=[`LAST_STATUTORY_YEAR`]. Computed once per year.
pub fn statutory(year: i32) -> Option<&'static [StatutoryDay]> {
    const YEARS: usize = (LAST_STATUTORY_YEAR - FIRST_STATUTORY_YEAR + 1) as usize;
    static CACHE: [OnceLock<Option<Vec<StatutoryDay>>>; YEARS] = [const { OnceLock::new() }; YEARS];
    let i = usize::try_from(year.checked_sub(FIRST_STATUTORY_YEAR)?).ok()?;
    CACHE.get(i)?.get_or_init(|| compute(year)).as_deref()
}

/// What the provisional year says of `d` ([`OfficialDay::Holiday`] on a statutory day or its 补假,
/// else [`OfficialDay::Ordinary`]); `None` when `d`'s year has no statutory reckoning.
pub fn provisional_day(d: NaiveDate) -> Option<OfficialDay> {
    let days = statutory(d.year())?;
    Some(if days.binary_search_by_key(&d, |s| s.date).is_ok() {
        OfficialDay::Holiday
    } else {
        OfficialDay::Ordinary
    })
}

impl Official {
    /// What the data says of `d`, else the provisional year, with the layer it came from; `None`
    /// for a year neither covers (before 2025 and not in the data).
    pub fn day_or_provisional(&self, d: NaiveDate) -> Option<(OfficialDay, Source)> {
        match self.day(d) {
            Some(k) => Some((k, Source::Official)),
            None => provisional_day(d).map(|k| (k, Source::Provisional)),
        }
    }

    /// Does the data cover `year`?
    pub fn has_year(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }
}

/// Most official years a [`PushedCalendar`] carries.
pub const PUSH_MAX_YEARS: usize = 12;
/// Most admin overrides a [`PushedCalendar`] carries.
pub const PUSH_MAX_OVERRIDES: usize = 1_000;
/// Longest `set_calendar` args a box accepts, in bytes of JSON (a year is about 600 bytes, an
/// override about 40).
pub const PUSH_MAX_BYTES: usize = 64 * 1024;

/// The calendar a hub sends its boxes in a `set_calendar` command (PROTOCOL.md, "Commands"): the
/// official years it holds (shipped or loaded) from the current year on, and its admins' overrides
/// of those years. A box's snapshot schedule answers from it — an override, else the official
/// year — and, for a year it does not carry, from the box's own shipped data, else the provisional
/// year ([`statutory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCalendar {
    /// Names the content (the first 16 hex digits of the SHA-256 of its years and overrides): the
    /// hub sends a new calendar when it changes.
    pub version: String,
    /// When the hub made it (RFC 3339): a box keeps the newest it was sent.
    pub issued: String,
    pub official: Official,
    /// date → working day (true) or day off (false), as the county's admins set it.
    pub overrides: BTreeMap<NaiveDate, bool>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushedForm {
    version: String,
    issued: String,
    years: Vec<PushedYear>,
    #[serde(default)]
    overrides: Vec<PushedOverride>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushedYear {
    year: i32,
    source: String,
    holidays: Vec<String>,
    workdays: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushedOverride {
    day: String,
    working: bool,
}

impl PushedCalendar {
    /// The calendar of `official` and `overrides` from `from_year` on, as of `issued`: at most
    /// [`PUSH_MAX_YEARS`] years and [`PUSH_MAX_OVERRIDES`] overrides, the earliest kept.
    pub fn build(
        official: &Official,
        overrides: &BTreeMap<NaiveDate, bool>,
        from_year: i32,
        issued: &str,
    ) -> PushedCalendar {
        let mut kept = Official::default();
        for (y, data) in official.years.range(from_year..).take(PUSH_MAX_YEARS) {
            kept.years.insert(*y, data.clone());
        }
        let overrides = NaiveDate::from_ymd_opt(from_year, 1, 1)
            .map(|first| {
                overrides
                    .range(first..)
                    .take(PUSH_MAX_OVERRIDES)
                    .map(|(d, w)| (*d, *w))
                    .collect()
            })
            .unwrap_or_default();
        let mut pushed = PushedCalendar {
            version: String::new(),
            issued: issued.to_owned(),
            official: kept,
            overrides,
        };
        let content = PushedForm {
            version: String::new(),
            issued: String::new(),
            ..pushed.form()
        };
        let digest = <sha2::Sha256 as sha2::Digest>::digest(
            serde_json::to_vec(&content).unwrap_or_default(),
        );
        pushed.version = hex::encode(&digest[..8]);
        pushed
    }

    fn form(&self) -> PushedForm {
        let list = |days: &BTreeSet<NaiveDate>| days.iter().map(|d| d.to_string()).collect();
        PushedForm {
            version: self.version.clone(),
            issued: self.issued.clone(),
            years: self
                .official
                .years
                .iter()
                .map(|(year, y)| PushedYear {
                    year: *year,
                    source: y.source.clone(),
                    holidays: list(&y.holidays),
                    workdays: list(&y.workdays),
                })
                .collect(),
            overrides: self
                .overrides
                .iter()
                .map(|(d, working)| PushedOverride {
                    day: d.to_string(),
                    working: *working,
                })
                .collect(),
        }
    }

    /// The command's `args`.
    pub fn to_args(&self) -> serde_json::Value {
        serde_json::to_value(self.form()).unwrap_or_default()
    }

    /// Reads and checks a `set_calendar` command's `args`; the error says what is wrong.
    pub fn from_args(args: &serde_json::Value) -> Result<PushedCalendar, String> {
        let size = serde_json::to_vec(args)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > PUSH_MAX_BYTES {
            return Err(format!(
                "the calendar has {size} bytes, more than {PUSH_MAX_BYTES}"
            ));
        }
        let form = PushedForm::deserialize(args)
            .map_err(|e| format!("not the hub's calendar form: {e}"))?;
        if form.version.is_empty()
            || form.version.len() > 64
            || !form.version.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "version {:?} must be 1 to 64 hex digits",
                form.version
            ));
        }
        if chrono::DateTime::parse_from_rfc3339(&form.issued).is_err() {
            return Err(format!("issued {:?} is not an RFC 3339 time", form.issued));
        }
        if form.years.len() > PUSH_MAX_YEARS {
            return Err(format!(
                "{} years, more than {PUSH_MAX_YEARS}",
                form.years.len()
            ));
        }
        if form.overrides.len() > PUSH_MAX_OVERRIDES {
            return Err(format!(
                "{} overrides, more than {PUSH_MAX_OVERRIDES}",
                form.overrides.len()
            ));
        }
        let mut official = Official::default();
        for y in form.years {
            if !(2000..=LAST_STATUTORY_YEAR).contains(&y.year) {
                return Err(format!(
                    "year {} is outside 2000-{LAST_STATUTORY_YEAR}",
                    y.year
                ));
            }
            let mut data = Year {
                source: y.source.chars().take(200).collect(),
                ..Year::default()
            };
            for text in &y.holidays {
                data.holidays.insert(date(text)?);
            }
            for text in &y.workdays {
                data.workdays.insert(date(text)?);
            }
            if let Some(d) = data
                .holidays
                .iter()
                .chain(&data.workdays)
                .find(|d| d.year() != y.year)
            {
                return Err(format!("{d} is listed under {}", y.year));
            }
            if let Some(d) = data.holidays.intersection(&data.workdays).next() {
                return Err(format!("{d} is both a holiday and a make-up working day"));
            }
            if official.years.insert(y.year, data).is_some() {
                return Err(format!("year {} is given twice", y.year));
            }
        }
        official.check("")?;
        let mut overrides = BTreeMap::new();
        for o in form.overrides {
            let d = date(&o.day)?;
            if overrides.insert(d, o.working).is_some() {
                return Err(format!("the override of {d} is given twice"));
            }
        }
        Ok(PushedCalendar {
            version: form.version,
            issued: form.issued,
            official,
            overrides,
        })
    }

    /// What this calendar says of `d`: an override (as [`OfficialDay::MakeUpWorkday`] when it
    /// makes `d` a working day, [`OfficialDay::Holiday`] when a day off), else the official year;
    /// `None` when it carries neither for `d`.
    pub fn day(&self, d: NaiveDate) -> Option<(OfficialDay, Source)> {
        if let Some(&working) = self.overrides.get(&d) {
            let kind = if working {
                OfficialDay::MakeUpWorkday
            } else {
                OfficialDay::Holiday
            };
            return Some((kind, Source::Override));
        }
        self.official.day(d).map(|k| (k, Source::Official))
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

    fn statutory_dates(year: i32, substitute: bool) -> Vec<(String, Festival)> {
        statutory(year)
            .unwrap()
            .iter()
            .filter(|s| s.substitute == substitute)
            .map(|s| (s.date.to_string(), s.festival))
            .collect()
    }

    fn expect(days: &[(&str, Festival)]) -> Vec<(String, Festival)> {
        let mut v: Vec<_> = days.iter().map(|(d, f)| (d.to_string(), *f)).collect();
        v.sort();
        v
    }

    /// The lunar crate's dates against every statutory day of the shipped notices: each one the
    /// rules give is where the notice put a day off, and the notice has no festival the rules miss.
    #[test]
    fn the_statutory_days_fall_where_the_2025_and_2026_notices_put_them() {
        use Festival::*;
        let cn = Official::cn().unwrap();
        let want_2025 = expect(&[
            ("2025-01-01", NewYear),
            ("2025-01-28", SpringFestival), // 除夕
            ("2025-01-29", SpringFestival),
            ("2025-01-30", SpringFestival),
            ("2025-01-31", SpringFestival),
            ("2025-04-04", Qingming),
            ("2025-05-01", Labour),
            ("2025-05-02", Labour),
            ("2025-05-31", DragonBoat),
            ("2025-10-01", National),
            ("2025-10-02", National),
            ("2025-10-03", National),
            ("2025-10-06", MidAutumn),
        ]);
        let want_2026 = expect(&[
            ("2026-01-01", NewYear),
            ("2026-02-16", SpringFestival), // 除夕
            ("2026-02-17", SpringFestival),
            ("2026-02-18", SpringFestival),
            ("2026-02-19", SpringFestival),
            ("2026-04-05", Qingming),
            ("2026-05-01", Labour),
            ("2026-05-02", Labour),
            ("2026-06-19", DragonBoat),
            ("2026-09-25", MidAutumn),
            ("2026-10-01", National),
            ("2026-10-02", National),
            ("2026-10-03", National),
        ]);
        assert_eq!(statutory_dates(2025, false), want_2025);
        assert_eq!(statutory_dates(2026, false), want_2026);
        // 补假 of the statutory days on a weekend: 端午 Sat 2025-05-31; 清明 Sun 2026-04-05,
        // 劳动节 Sat 2026-05-02, 国庆节 Sat 2026-10-03.
        assert_eq!(
            statutory_dates(2025, true),
            expect(&[("2025-06-02", DragonBoat)])
        );
        assert_eq!(
            statutory_dates(2026, true),
            expect(&[
                ("2026-04-06", Qingming),
                ("2026-05-04", Labour),
                ("2026-10-05", National),
            ])
        );
        for year in [2025, 2026] {
            for s in statutory(year).unwrap() {
                assert_eq!(
                    cn.day(s.date),
                    Some(OfficialDay::Holiday),
                    "{} ({}) is a day off in the {year} notice",
                    s.date,
                    s.festival.zh()
                );
            }
        }
    }

    #[test]
    fn the_provisional_2027_follows_the_lunar_calendar() {
        // Chinese New Year 2027 is Saturday 2027-02-06: the eve is Friday 02-05, the festival runs
        // to Monday 02-08, and its Saturday and Sunday are made up on Tuesday 02-09 and Wednesday
        // 02-10 (Art. 6).
        let days = statutory(2027).unwrap();
        let off: Vec<String> = days
            .iter()
            .filter(|s| s.festival == Festival::SpringFestival)
            .map(|s| s.date.to_string())
            .collect();
        assert_eq!(
            off,
            [
                "2027-02-05",
                "2027-02-06",
                "2027-02-07",
                "2027-02-08",
                "2027-02-09",
                "2027-02-10"
            ]
        );
        let cn = Official::cn().unwrap();
        for (day, kind) in [
            ("2027-01-01", OfficialDay::Holiday),
            ("2027-02-05", OfficialDay::Holiday),
            ("2027-02-08", OfficialDay::Holiday),
            ("2027-02-11", OfficialDay::Ordinary),
            ("2027-01-04", OfficialDay::Ordinary),
        ] {
            assert_eq!(
                cn.day_or_provisional(d(day)),
                Some((kind, Source::Provisional)),
                "{day}"
            );
        }
        // The official layer answers for its years; before 2025 without data there is no answer.
        assert_eq!(
            cn.day_or_provisional(d("2026-02-14")),
            Some((OfficialDay::MakeUpWorkday, Source::Official))
        );
        assert_eq!(cn.day_or_provisional(d("2024-10-01")), None);
        assert_eq!(statutory(2024), None);
        assert_eq!(statutory(LAST_STATUTORY_YEAR + 1), None);
    }

    #[test]
    fn notice_names_read_as_festivals() {
        assert_eq!(
            Festival::from_zh("国庆节、中秋节"),
            Some(Festival::National)
        );
        assert_eq!(Festival::from_zh("清明"), Some(Festival::Qingming));
        assert_eq!(Festival::from_zh("元旦"), Some(Festival::NewYear));
        assert_eq!(Festival::from_zh("植树节"), None);
    }

    /// A made-up 2027 arrangement for the tests (not the State Council's: it is not published yet),
    /// in the holiday-cn JSON form, with one make-up Saturday.
    const TEST_2027_JSON: &str = r#"{
  "year": 2027,
  "papers": [],
  "days": [
    {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
    {"name": "元旦", "date": "2027-01-02", "isOffDay": true},
    {"name": "元旦", "date": "2027-01-03", "isOffDay": true},
    {"name": "春节", "date": "2027-02-05", "isOffDay": true},
    {"name": "春节", "date": "2027-02-06", "isOffDay": true},
    {"name": "春节", "date": "2027-02-07", "isOffDay": true},
    {"name": "春节", "date": "2027-02-08", "isOffDay": true},
    {"name": "春节", "date": "2027-02-09", "isOffDay": true},
    {"name": "春节", "date": "2027-02-10", "isOffDay": true},
    {"name": "春节", "date": "2027-02-11", "isOffDay": true},
    {"name": "春节", "date": "2027-02-20", "isOffDay": false},
    {"name": "清明节", "date": "2027-04-05", "isOffDay": true},
    {"name": "劳动节", "date": "2027-05-01", "isOffDay": true},
    {"name": "劳动节", "date": "2027-05-02", "isOffDay": true},
    {"name": "劳动节", "date": "2027-05-03", "isOffDay": true},
    {"name": "劳动节", "date": "2027-05-04", "isOffDay": true},
    {"name": "端午节", "date": "2027-06-09", "isOffDay": true},
    {"name": "中秋节", "date": "2027-09-15", "isOffDay": true},
    {"name": "国庆节", "date": "2027-10-01", "isOffDay": true},
    {"name": "国庆节", "date": "2027-10-02", "isOffDay": true},
    {"name": "国庆节", "date": "2027-10-03", "isOffDay": true},
    {"name": "国庆节", "date": "2027-10-04", "isOffDay": true},
    {"name": "国庆节", "date": "2027-10-05", "isOffDay": true}
  ]
}"#;

    #[test]
    fn a_year_loads_from_holiday_cn_json_and_round_trips_as_toml() {
        let y = Official::import(TEST_2027_JSON).unwrap();
        assert_eq!(y.day(d("2027-02-11")), Some(OfficialDay::Holiday));
        assert_eq!(y.day(d("2027-02-20")), Some(OfficialDay::MakeUpWorkday));
        assert_eq!(y.day(d("2027-03-01")), Some(OfficialDay::Ordinary));
        let toml = y.year_toml(2027).unwrap();
        let back = Official::import(&toml).unwrap();
        assert_eq!(back.listed(2027), y.listed(2027));
        assert_eq!(back.source(2027), Some("holiday-cn 2027"));
        let mut cn = Official::cn().unwrap();
        cn.merge(&back);
        assert_eq!(
            cn.day_or_provisional(d("2027-02-20")),
            Some((OfficialDay::MakeUpWorkday, Source::Official))
        );
        assert_eq!(cn.years().collect::<Vec<_>>(), [2025, 2026, 2027]);
        // The shipped years pass the same checks as a loaded one.
        Official::cn().unwrap().check(OFFICIAL_CN).unwrap();
    }

    #[test]
    fn a_bad_year_is_refused_with_its_line() {
        let cases = [
            (
                TEST_2027_JSON.replace("2027-06-09", "2027-06-31"),
                "line 21: \"2027-06-31\" is not a YYYY-MM-DD date",
            ),
            (
                TEST_2027_JSON.replace("\"2027-09-15\"", "\"2026-09-15\""),
                "line 22: 2026-09-15 is listed under 2027",
            ),
            (
                TEST_2027_JSON.replace(
                    "{\"name\": \"春节\", \"date\": \"2027-02-20\", \"isOffDay\": false}",
                    "{\"name\": \"春节\", \"date\": \"2027-02-10\", \"isOffDay\": false}",
                ),
                "line 13: 2027-02-10 is both a holiday and a make-up working day",
            ),
            (
                TEST_2027_JSON.replace("\"2027-02-20\"", "\"2027-02-22\""),
                "line 15: make-up working day 2027-02-22 is a Mon, not a weekend day",
            ),
            (
                TEST_2027_JSON.replace("中秋节", "教师节"),
                "line 22: \"教师节\" on 2027-09-15 is not a statutory holiday's name",
            ),
            (
                TEST_2027_JSON.replace(
                    "    {\"name\": \"端午节\", \"date\": \"2027-06-09\", \"isOffDay\": true},\n",
                    "",
                ),
                "2027: 2027-06-09 (端午节) is a statutory day off",
            ),
            (
                TEST_2027_JSON.replace("\"isOffDay\": true},\n    {\"name\": \"元旦\", \"date\": \"2027-01-02\"", "\"isOffDay\": true}\n    {\"name\": \"元旦\", \"date\": \"2027-01-02\""),
                "line 6",
            ),
            (
                "[years.2027]\nsource = \"x\"\nholidays = [\n  \"2027-01-01\",\n  \"2027-02-30\",\n]\nworkdays = []\n".into(),
                "line 5: \"2027-02-30\" is not a YYYY-MM-DD date",
            ),
        ];
        for (text, says) in cases {
            let e = Official::import(&text).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
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

    #[test]
    fn a_pushed_calendar_round_trips_and_names_its_content() {
        let mut official = Official::cn().unwrap();
        official.merge(&Official::import(TEST_2027_JSON).unwrap());
        let overrides: BTreeMap<NaiveDate, bool> = [
            (d("2025-11-05"), false),
            (d("2027-01-09"), true),
            (d("2027-03-03"), false),
        ]
        .into();
        let pushed =
            PushedCalendar::build(&official, &overrides, 2026, "2026-12-04T08:00:00+08:00");
        assert_eq!(pushed.official.years().collect::<Vec<_>>(), [2026, 2027]);
        assert_eq!(
            pushed.overrides.len(),
            2,
            "the years before 2026 are left out"
        );
        assert_eq!(pushed.version.len(), 16);
        let back = PushedCalendar::from_args(&pushed.to_args()).unwrap();
        assert_eq!(back, pushed);
        assert_eq!(
            back.day(d("2027-01-09")),
            Some((OfficialDay::MakeUpWorkday, Source::Override))
        );
        assert_eq!(
            back.day(d("2027-02-20")),
            Some((OfficialDay::MakeUpWorkday, Source::Official))
        );
        assert_eq!(
            back.day(d("2027-03-03")),
            Some((OfficialDay::Holiday, Source::Override))
        );
        assert_eq!(back.day(d("2028-01-01")), None);
        // The version names the content, not the time it was made.
        let again = PushedCalendar::build(&official, &overrides, 2026, "2026-12-05T08:00:00+08:00");
        assert_eq!(again.version, pushed.version);
        let fewer = PushedCalendar::build(&official, &BTreeMap::new(), 2026, "x");
        assert_ne!(fewer.version, pushed.version);
        // A serialized calendar of two loaded years and a few overrides stays small.
        assert!(pushed.to_args().to_string().len() < 4096);
    }

    #[test]
    fn a_malformed_pushed_calendar_is_refused_with_the_reason() {
        let official = Official::cn().unwrap();
        let good = PushedCalendar::build(&official, &BTreeMap::new(), 2025, "2026-12-04T08:00:00Z")
            .to_args();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let cases = [
            (with(&|v| v["version"] = "".into()), "version"),
            (with(&|v| v["issued"] = "yesterday".into()), "RFC 3339"),
            (
                with(&|v| v["years"][0]["holidays"][0] = "2025-02-30".into()),
                "2025-02-30",
            ),
            (
                with(&|v| v["years"][0]["year"] = 2026.into()),
                "listed under 2026",
            ),
            (
                with(&|v| {
                    v["overrides"] = serde_json::json!([{"day": "2027-1-1x", "working": true}])
                }),
                "2027-1-1x",
            ),
            (
                with(&|v| v["years"][0]["holidays"] = serde_json::json!([])),
                "statutory day off",
            ),
            (
                with(&|v| v["extra"] = 1.into()),
                "not the hub's calendar form",
            ),
            (serde_json::json!("a string"), "not the hub's calendar form"),
            (
                with(&|v| {
                    v["overrides"] = serde_json::json!((0..3000).map(|i| serde_json::json!({"day": format!("2027-01-{:02}", i % 28 + 1), "working": true})).collect::<Vec<_>>())
                }),
                "more than",
            ),
        ];
        for (args, says) in cases {
            let e = PushedCalendar::from_args(&args).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
    }
}
