//! Stored summaries of the townships' attendance, so that the county's report is a sum.
//!
//! Judging a township's month of attendance means judging every clerk's every segment from the
//! stored punches: about 15 ms a township, so 1.5 s or more for a county of 100 (BENCHMARKS.md).
//! A summary is the judged month of one site ([`SiteAttendance`]), kept in memory with what it
//! was judged from: the change counters of that site's months (`attendance_changes`, kept by
//! triggers on every write of make-ups, patrols, duties, violations and the roster, and on punch
//! updates and deletes), the number of its punches in the period (which every new punch changes,
//! without a trigger on ingest's hot path) and the generation of the office hours, rules and
//! calendar. A report uses a summary only when all
//! of these still read the same, and judges the site again otherwise, so it never shows a figure
//! older than the data. A background thread keeps the current month, the twelve before it and the
//! last two weeks judged, so even the first request after data arrived usually finds them ready.

use crate::oversight::attendance::Office;
use crate::oversight::calendar::Calendar;
use crate::store::attendance::{self as att, StaffTotals, UnitMonth};
use chrono::NaiveDate;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Summaries kept at most; past it the least recently used goes (100 sites × 40 periods; the keeper
/// keeps 15 periods).
const CAPACITY: usize = 4_000;

/// One site's attendance over a range of days: per unit, and per clerk.
#[derive(Debug, Default)]
pub struct SiteAttendance {
    pub units: Vec<UnitMonth>,
    pub people: Vec<StaffTotals>,
}

impl SiteAttendance {
    /// Judges `site`'s days `first..=last` (up to `today`) from the store.
    pub fn judge(
        conn: &Connection,
        office: &Office,
        cal: &Calendar,
        site: &str,
        (first, last, today): (NaiveDate, NaiveDate, NaiveDate),
    ) -> rusqlite::Result<SiteAttendance> {
        let (units, people) =
            att::units_range(conn, office, cal, site, (first, last, today), None)?;
        Ok(SiteAttendance { units, people })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    site: String,
    first: NaiveDate,
    last: NaiveDate,
    /// The last day judged: a summary of the current month is made again the next day.
    judged_to: NaiveDate,
}

#[derive(Debug)]
struct Entry {
    settings: u64,
    marks: Vec<(String, i64)>,
    summary: Arc<SiteAttendance>,
    used: u64,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    clock: u64,
}

/// The hub's stored summaries (one per hub, shared by every request; see the module comment).
#[derive(Debug, Default)]
pub struct Summaries {
    /// Counts the changes of office hours, rules and calendar: a summary made under another
    /// count is not used.
    settings: AtomicU64,
    entries: Mutex<Entries>,
    /// Sites judged (not found current) since start.
    judged: AtomicU64,
}

/// What the summaries were made with: the settings generation (read before the settings
/// themselves, see [`Summaries::generation`]), the office hours and rules, and the calendar.
pub struct Judging<'a> {
    pub generation: u64,
    pub office: &'a Office,
    pub cal: &'a Calendar,
}

impl Summaries {
    pub fn new() -> Summaries {
        Summaries::default()
    }

    /// The settings generation. Read it before the office hours and the calendar it goes with:
    /// a change between the two then only makes a summary that is never used.
    pub fn generation(&self) -> u64 {
        self.settings.load(Ordering::SeqCst)
    }

    /// The office hours, rules or calendar changed (call after the new ones are in force): every
    /// summary is stale.
    pub fn settings_changed(&self) {
        self.settings.fetch_add(1, Ordering::SeqCst);
        self.lock().map.clear();
    }

    /// How many times a site's range was judged because no current summary was kept.
    pub fn judged(&self) -> u64 {
        self.judged.load(Ordering::Relaxed)
    }

    /// How many summaries are kept now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock left the map whole (no call here can panic half-way).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attendance of each of `sites` over `first..=last` judged up to `today`: a stored
    /// summary where it is current, else judged now (and stored). `only` is the one site asked
    /// for, if any (it narrows the counters read).
    pub fn sites(
        &self,
        conn: &Connection,
        judging: &Judging<'_>,
        sites: &[String],
        only: Option<&str>,
        (first, last, today): (NaiveDate, NaiveDate, NaiveDate),
    ) -> rusqlite::Result<Vec<(String, Arc<SiteAttendance>)>> {
        // The counters are read before the facts: a write in between makes the new summary look
        // older than it is (judged again next time), never newer.
        let mut marks = att::change_marks(conn, only, first, last)?;
        let mut out = Vec::with_capacity(sites.len());
        for site in sites {
            let key = Key {
                site: site.clone(),
                first,
                last,
                judged_to: last.min(today),
            };
            let mut marks = marks.remove(site).unwrap_or_default();
            marks.push(("punches".into(), att::punch_count(conn, site, first, last)?));
            if let Some(hit) = self.current(&key, judging.generation, &marks) {
                out.push((site.clone(), hit));
                continue;
            }
            self.judged.fetch_add(1, Ordering::Relaxed);
            let summary = Arc::new(SiteAttendance::judge(
                conn,
                judging.office,
                judging.cal,
                site,
                (first, last, today),
            )?);
            self.keep(key, judging.generation, marks, summary.clone());
            out.push((site.clone(), summary));
        }
        Ok(out)
    }

    fn current(
        &self,
        key: &Key,
        settings: u64,
        marks: &[(String, i64)],
    ) -> Option<Arc<SiteAttendance>> {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        let e = entries.map.get_mut(key)?;
        if e.settings != settings || e.marks != marks {
            return None;
        }
        e.used = now;
        Some(e.summary.clone())
    }

    fn keep(
        &self,
        key: Key,
        settings: u64,
        marks: Vec<(String, i64)>,
        summary: Arc<SiteAttendance>,
    ) {
        if settings != self.generation() {
            return;
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let used = entries.clock;
        if entries.map.len() >= CAPACITY && !entries.map.contains_key(&key) {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                entries.map.remove(&k);
            }
        }
        entries.map.insert(
            key,
            Entry {
                settings,
                marks,
                summary,
                used,
            },
        );
    }
}

/// The periods the keeper keeps judged: the current month and the twelve before it, this week and
/// the last.
pub fn kept_periods(today: NaiveDate) -> Vec<super::Period> {
    let mut month = super::Period::last_month(today).next();
    let mut out = Vec::with_capacity(15);
    for _ in 0..13 {
        let before = month.previous();
        out.push(month);
        month = before;
    }
    let last_week = super::Period::last_week(today);
    out.push(last_week.next());
    out.push(last_week);
    out
}

/// Keeps the summaries of [`kept_periods`] of every site judged, once at start and then every
/// `every`, on its own read connection (a check of the counters when nothing changed).
pub fn spawn_keeper(
    reader: crate::store::Reader,
    sup: crate::supervise::Supervision,
    every: std::time::Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("report-summaries".into())
        .spawn(move || {
            loop {
                let today = sup.clock.report_day();
                for period in kept_periods(sup.clock.today()) {
                    let scope = super::ReportScope::default();
                    let done = reader.run(|c| {
                        let sites = super::sites(c, &scope)?;
                        sup.with_judging(|judging| {
                            sup.summaries().sites(
                                c,
                                judging,
                                &sites,
                                None,
                                (period.from, period.to, today),
                            )
                        })
                    });
                    if let Err(e) = done {
                        tracing::warn!(error = %e, month = %period.label, "keeping the report summaries failed; trying again later");
                    }
                }
                std::thread::sleep(every);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keeper_keeps_thirteen_months_and_two_weeks() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 7).unwrap();
        let labels: Vec<String> = kept_periods(today).into_iter().map(|p| p.label).collect();
        assert_eq!(
            labels,
            [
                "2026-01", "2025-12", "2025-11", "2025-10", "2025-09", "2025-08", "2025-07",
                "2025-06", "2025-05", "2025-04", "2025-03", "2025-02", "2025-01", "2026-W02",
                "2026-W01"
            ]
        );
    }
}
