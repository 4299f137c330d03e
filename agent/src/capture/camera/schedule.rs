//! Scheduled snapshots: every `every` from local midnight (08:00, 08:05, ... for five minutes),
//! within the office hours on office days: the configured weekdays, less the public holidays, plus
//! the make-up working days (调休), as the calendar in force says ([`crate::calendar`]: the hub's
//! overrides and official years, else the shipped data, else the provisional year). [`next_slot`] is the pure part; [`run`] sleeps until each
//! slot, takes the snapshot, and retries a failed one with back-off until the next slot is due.

use super::{CameraError, Cameras, TakeError, Trigger};
use crate::calendar::LiveCalendar;
use crate::clock::Clock;
use crate::config::Hours;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Weekday};
use std::sync::Arc;
use std::time::Duration;
use sunlight_protocol::holidays::OfficialDay;

/// When a camera's scheduled snapshots are due.
#[derive(Debug, Clone)]
pub struct Plan {
    pub every: Duration,
    /// Ranges of seconds after local midnight.
    pub hours: Hours,
    pub days: Vec<Weekday>,
    /// The calendar in force (shared: a calendar the hub sends changes every schedule at once);
    /// `None` (`snapshots.official_holidays = false`): the weekdays alone.
    pub calendar: Option<LiveCalendar>,
}

impl Plan {
    /// Is `date` an office day? With the calendar, a year nobody has official data of follows the
    /// statutory holidays (the provisional year, decision 0014) rather than every weekday.
    pub fn office_day(&self, date: NaiveDate) -> bool {
        match self
            .calendar
            .as_ref()
            .and_then(|c| c.day(date))
            .map(|(kind, _)| kind)
        {
            Some(OfficialDay::Holiday) => false,
            Some(OfficialDay::MakeUpWorkday) => true,
            Some(OfficialDay::Ordinary) | None => self.days.contains(&date.weekday()),
        }
    }
}

/// How far [`next_slot`] looks: past the longest official holiday (Spring Festival, nine days) with
/// the weekends around it.
const LOOKAHEAD_DAYS: u64 = 40;

/// The first slot strictly after `now`, looking [`LOOKAHEAD_DAYS`] ahead at most.
pub fn next_slot<Tz: TimeZone>(now: &DateTime<Tz>, plan: &Plan) -> Option<DateTime<Tz>> {
    let every = plan.every.as_secs().clamp(1, 86_400) as u32;
    let tz = now.timezone();
    let today = now.date_naive();
    for day_offset in 0..=LOOKAHEAD_DAYS {
        let date = today.checked_add_days(chrono::Days::new(day_offset))?;
        if !plan.office_day(date) {
            continue;
        }
        let after = if day_offset == 0 {
            now.num_seconds_from_midnight() + 1
        } else {
            0
        };
        let best = plan
            .hours
            .iter()
            .filter_map(|&(from, to)| {
                let lo = from.max(after);
                let slot = lo.div_ceil(every) * every;
                (slot < to).then_some(slot)
            })
            .min();
        if let Some(secs) = best {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?;
            if let Some(t) = tz.from_local_datetime(&date.and_time(time)).earliest() {
                return Some(t);
            }
        }
    }
    None
}

/// Takes camera `id`'s scheduled snapshots forever. The next slot is worked out again from the
/// wall clock at least every minute, so a clock set forward skips the slots in between (no burst
/// of catch-up pictures) and a clock set back does not silence the camera until it catches up.
pub async fn run(cameras: Arc<Cameras>, id: String, plan: Plan, clock: Clock) {
    let tz = clock.tz();
    loop {
        let wall = chrono::Utc::now().with_timezone(&tz);
        let Some(slot) = next_slot(&wall, &plan) else {
            tracing::warn!(camera_id = %id, "no office hours within 40 days; scheduled snapshots stop");
            return;
        };
        let wait = (slot - wall).to_std().unwrap_or_default();
        if wait > Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        }
        tokio::time::sleep(wait).await;
        if chrono::Utc::now().with_timezone(&tz) < slot {
            continue;
        }
        let following = next_slot(&slot, &plan);
        let mut attempt = 0;
        loop {
            match cameras
                .take(&id, Trigger::Schedule, Default::default())
                .await
            {
                Ok(_) => break,
                Err(TakeError::Camera(_, CameraError::LoginsStopped { .. })) => break,
                Err(e) => {
                    let wait = crate::sync::backoff(attempt, 5_000, 300_000);
                    attempt += 1;
                    let retry_at = chrono::Utc::now().with_timezone(&tz)
                        + chrono::Duration::from_std(wait).unwrap_or_default();
                    if following.as_ref().is_none_or(|f| retry_at >= *f) {
                        tracing::warn!(camera_id = %id, error = %e, "scheduled snapshot missed; next at the next slot");
                        break;
                    }
                    tracing::info!(camera_id = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "scheduled snapshot failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;
    use sunlight_protocol::holidays::{Official, PushedCalendar};

    fn at(s: &str) -> DateTime<chrono_tz::Tz> {
        Shanghai
            .from_local_datetime(
                &chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap(),
            )
            .unwrap()
    }

    fn plan(every_secs: u64) -> Plan {
        Plan {
            every: Duration::from_secs(every_secs),
            hours: crate::config::parse_hours(&["08:30-12:00".into(), "14:30-17:30".into()])
                .unwrap(),
            days: crate::config::parse_days(&[
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ])
            .unwrap(),
            calendar: None,
        }
    }

    fn next(now: &str, p: &Plan) -> String {
        next_slot(&at(now), p)
            .unwrap()
            .format("%a %Y-%m-%d %H:%M:%S")
            .to_string()
    }

    #[test]
    fn slots_are_on_the_clock_within_office_hours_on_office_days() {
        let five = plan(300);
        // 2026-11-23 is a Monday.
        assert_eq!(
            next("2026-11-23 07:00:00", &five),
            "Mon 2026-11-23 08:30:00"
        );
        assert_eq!(
            next("2026-11-23 08:30:00", &five),
            "Mon 2026-11-23 08:35:00",
            "strictly after"
        );
        assert_eq!(
            next("2026-11-23 08:31:10", &five),
            "Mon 2026-11-23 08:35:00"
        );
        assert_eq!(
            next("2026-11-23 11:55:00", &five),
            "Mon 2026-11-23 14:30:00",
            "12:00 is closed"
        );
        assert_eq!(
            next("2026-11-23 17:29:59", &five),
            "Tue 2026-11-24 08:30:00"
        );
        assert_eq!(
            next("2026-11-27 18:00:00", &five),
            "Mon 2026-11-30 08:30:00",
            "Friday evening → Monday"
        );
        // A period that does not divide the hour: slots count from midnight.
        assert_eq!(
            next("2026-11-23 08:30:00", &plan(7 * 60)),
            "Mon 2026-11-23 08:31:00"
        );
        // Whole days, every day, to midnight.
        let always = Plan {
            every: Duration::from_secs(2),
            hours: crate::config::parse_hours(&["00:00-24:00".into()]).unwrap(),
            days: crate::config::parse_days(
                &["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map(String::from),
            )
            .unwrap(),
            calendar: None,
        };
        assert_eq!(
            next("2026-11-28 23:59:59", &always),
            "Sun 2026-11-29 00:00:00"
        );
        assert_eq!(
            next("2026-11-28 10:00:01", &always),
            "Sat 2026-11-28 10:00:02"
        );
        // No office days at all: nothing.
        let never = Plan {
            days: vec![],
            ..plan(300)
        };
        assert!(next_slot(&at("2026-11-23 07:00:00"), &never).is_none());
    }

    #[test]
    fn official_holidays_are_left_out_and_make_up_days_are_worked() {
        let shipped = LiveCalendar::new(Official::cn().unwrap(), None);
        let five = Plan {
            calendar: Some(shipped.clone()),
            ..plan(300)
        };
        // National Day 2025: Tuesday 09-30 evening → Thursday 10-09 (10-01..10-08 off).
        assert_eq!(
            next("2025-09-30 17:30:00", &five),
            "Thu 2025-10-09 08:30:00"
        );
        // Sunday 2025-09-28 is a make-up working day (调休).
        assert_eq!(
            next("2025-09-27 10:00:00", &five),
            "Sun 2025-09-28 08:30:00"
        );
        // Spring Festival 2026: Saturday 02-14 worked, then nine days off, back on Tuesday 02-24.
        assert_eq!(
            next("2026-02-13 18:00:00", &five),
            "Sat 2026-02-14 08:30:00"
        );
        assert_eq!(
            next("2026-02-14 17:30:00", &five),
            "Tue 2026-02-24 08:30:00"
        );
        // A year the data does not cover follows the statutory holidays: 元旦 2031 is off, and
        // 2027's Spring Festival runs from the eve (Friday 02-05) to its 补假 (Wednesday 02-10).
        assert_eq!(
            next("2031-01-01 07:00:00", &five),
            "Thu 2031-01-02 08:30:00"
        );
        assert_eq!(
            next("2027-02-04 17:30:00", &five),
            "Thu 2027-02-11 08:30:00"
        );
        // Without the official data (official_holidays = false), National Day is a Wednesday.
        assert_eq!(
            next("2025-09-30 17:30:00", &plan(300)),
            "Wed 2025-10-01 08:30:00"
        );
    }

    /// A 2027 arrangement for the tests (made up: the State Council's is not published yet), with
    /// one make-up Saturday.
    pub(crate) const TEST_2027: &str = "[years.2027]\nsource = \"test\"\nholidays = [\"2027-01-01\", \"2027-02-05..2027-02-10\", \"2027-04-05\", \"2027-05-01..2027-05-04\", \"2027-06-09\", \"2027-09-15\", \"2027-10-01..2027-10-05\"]\nworkdays = [\"2027-01-09\"]\n";

    #[test]
    fn the_hub_s_calendar_wins_and_changes_every_schedule_at_once() {
        let live = LiveCalendar::new(Official::cn().unwrap(), None);
        let five = Plan {
            calendar: Some(live.clone()),
            ..plan(300)
        };
        // Before the hub's calendar: 2027 is provisional (no make-up days).
        assert_eq!(
            next("2027-01-08 17:30:00", &five),
            "Mon 2027-01-11 08:30:00"
        );
        let mut official = Official::cn().unwrap();
        official.merge(&Official::import(TEST_2027).unwrap());
        let overrides = [(NaiveDate::from_ymd_opt(2027, 1, 11).unwrap(), false)].into();
        let pushed = PushedCalendar::build(&official, &overrides, 2026, "2026-12-04T08:00:00Z");
        live.set(crate::calendar::Received {
            calendar: pushed,
            loaded_ms: 0,
            source: "command test".into(),
        });
        // The same plan now works the official make-up Saturday and skips the override's Monday.
        assert_eq!(
            next("2027-01-08 17:30:00", &five),
            "Sat 2027-01-09 08:30:00"
        );
        assert_eq!(
            next("2027-01-09 17:30:00", &five),
            "Tue 2027-01-12 08:30:00"
        );
        // A year the hub did not send still follows the shipped data, then the provisional year.
        assert_eq!(
            next("2025-09-30 17:30:00", &five),
            "Thu 2025-10-09 08:30:00"
        );
        assert_eq!(
            next("2031-01-01 07:00:00", &five),
            "Thu 2031-01-02 08:30:00"
        );
    }
}
