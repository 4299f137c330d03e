//! Scheduled snapshots: every `every` from local midnight (08:00, 08:05, ... for five minutes),
//! within the office hours on office days. [`next_slot`] is the pure part; [`run`] sleeps until each
//! slot, takes the snapshot, and retries a failed one with back-off until the next slot is due.

use super::{CameraError, Cameras, TakeError, Trigger};
use crate::clock::Clock;
use crate::config::Hours;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Timelike, Weekday};
use std::sync::Arc;
use std::time::Duration;

/// When a camera's scheduled snapshots are due.
#[derive(Debug, Clone)]
pub struct Plan {
    pub every: Duration,
    /// Ranges of seconds after local midnight.
    pub hours: Hours,
    pub days: Vec<Weekday>,
}

/// The first slot strictly after `now`, looking a week ahead at most.
pub fn next_slot<Tz: TimeZone>(now: &DateTime<Tz>, plan: &Plan) -> Option<DateTime<Tz>> {
    let every = plan.every.as_secs().clamp(1, 86_400) as u32;
    let tz = now.timezone();
    let today = now.date_naive();
    for day_offset in 0..8 {
        let date = today.checked_add_days(chrono::Days::new(day_offset))?;
        if !plan.days.contains(&date.weekday()) {
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
            tracing::warn!(camera_id = %id, "no office hours within a week; scheduled snapshots stop");
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
}
