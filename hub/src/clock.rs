//! The hub's one clock: "today" in the county's time zone (UTC+8), or a fixed day for simulations
//! and tests (`sunlight-hub run --today 2025-11-13`). Engines never read the system time themselves.

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub struct HubClock {
    fixed: Option<NaiveDate>,
}

impl HubClock {
    pub fn system() -> HubClock {
        HubClock { fixed: None }
    }

    pub fn fixed(day: NaiveDate) -> HubClock {
        HubClock { fixed: Some(day) }
    }

    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// The hour of the day in China Standard Time (noon on a fixed day).
    pub fn hour(&self) -> u32 {
        use chrono::Timelike;
        match self.fixed {
            Some(_) => 12,
            None => Utc::now().with_timezone(&cst()).hour(),
        }
    }

    /// Today in China Standard Time (no daylight saving), or the fixed day.
    pub fn today(&self) -> NaiveDate {
        self.fixed
            .unwrap_or_else(|| Utc::now().with_timezone(&cst()).date_naive())
    }

    /// The moment attendance is judged up to: now in China Standard Time, so that a segment not
    /// over yet is pending, not absent; none on a fixed day, which is judged as if it were over.
    pub fn until(&self) -> Option<NaiveDateTime> {
        match self.fixed {
            Some(_) => None,
            None => Some(Utc::now().with_timezone(&cst()).naive_local()),
        }
    }

    /// The last day a report's attendance covers: yesterday, since today's segments are not all
    /// over (the fixed day itself on a fixed clock).
    pub fn report_day(&self) -> NaiveDate {
        match self.fixed {
            Some(day) => day,
            None => {
                let today = self.today();
                today.pred_opt().unwrap_or(today)
            }
        }
    }
}

/// China Standard Time (UTC+8), the time of every office the hub oversees.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}
