//! The oversight timer: once a minute (and at start), re-evaluate the open cases whose next
//! escalation day has come. Incremental: the `next_check` index selects only those cases, so the
//! work is proportional to what can change, not to the number of open cases.

use crate::clock::HubClock;
use crate::config::HubConfig;
use crate::oversight::attendance::Office;
use crate::oversight::calendar::Calendar;
use crate::report::summary::{Judging, Summaries};
use crate::store::{Writer, cases};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A value the running hub reads often and an admin replaces rarely (the calendar with its
/// overrides, the office hours): readers take the current `Arc` under a short read lock and keep
/// it for their whole computation; a change swaps in a new `Arc` (decision 0012).
#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: Arc<T>) -> Live<T> {
        Live(RwLock::new(value))
    }

    /// The value in force now.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            // A writer that panicked left the old or the new value whole: either is usable.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `value` in force for every reader from now on.
    pub fn set(&self, value: Arc<T>) {
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

/// What oversight reads besides the events: the calendar, the clock and the county's rules.
/// Clones share the live calendar and office hours: an admin's change is seen by every thread.
#[derive(Debug, Clone)]
pub struct Supervision {
    calendar: Arc<Live<Calendar>>,
    pub clock: HubClock,
    /// hub.toml, with the sections an admin saved in the database in their place.
    config: Arc<Live<HubConfig>>,
    /// hub.toml as read at start: the defaults an admin's copy replaces.
    file: Arc<HubConfig>,
    /// The attendance rules and office hours (of `config`, or an admin's copy), parsed.
    office: Arc<Live<Office>>,
    /// The sites' judged attendance months the reports sum (stale when the above change).
    summaries: Arc<Summaries>,
    /// The store's [`crate::store::settings::CALENDAR_LOADED`] the calendar in force was built
    /// with: the tick rebuilds it when another process loaded a year.
    calendar_loaded: Arc<std::sync::Mutex<Option<String>>>,
}

impl Supervision {
    pub fn new(
        calendar: Arc<Calendar>,
        clock: HubClock,
        config: Arc<HubConfig>,
    ) -> Result<Supervision, crate::Error> {
        let office = Office::from_config(&config.attendance).map_err(crate::Error::Invalid)?;
        Ok(Supervision {
            calendar: Arc::new(Live::new(calendar)),
            clock,
            file: config.clone(),
            config: Arc::new(Live::new(config)),
            office: Arc::new(Live::new(Arc::new(office))),
            summaries: Arc::new(Summaries::new()),
            calendar_loaded: Arc::default(),
        })
    }

    /// The working-day calendar in force (official data under the admin's overrides).
    pub fn calendar(&self) -> Arc<Calendar> {
        self.calendar.get()
    }

    /// The office hours and attendance rules in force.
    pub fn office(&self) -> Arc<Office> {
        self.office.get()
    }

    /// The county's rules in force.
    pub fn config(&self) -> Arc<HubConfig> {
        self.config.get()
    }

    /// hub.toml as read at start.
    pub fn file_config(&self) -> Arc<HubConfig> {
        self.file.clone()
    }

    /// Puts new rules in force, with the office hours of their `[attendance]`; refused (and nothing
    /// changed) when those do not parse.
    pub fn set_config(&self, config: HubConfig) -> Result<(), String> {
        let office = Office::from_config(&config.attendance)?;
        self.office.set(Arc::new(office));
        self.config.set(Arc::new(config));
        self.summaries.settings_changed();
        Ok(())
    }

    /// Notes the store's [`crate::store::settings::CALENDAR_LOADED`] the calendar in force was
    /// built with (at start).
    pub fn set_calendar_loaded(&self, stamp: Option<String>) {
        *self
            .calendar_loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = stamp;
    }

    pub fn set_calendar(&self, calendar: Calendar) {
        self.calendar.set(Arc::new(calendar));
        self.summaries.settings_changed();
    }

    /// The stored attendance summaries of the reports.
    pub fn summaries(&self) -> &Summaries {
        &self.summaries
    }

    /// Runs `f` with the office hours and calendar in force and the summaries' generation they
    /// belong to.
    pub fn with_judging<T>(&self, f: impl FnOnce(&Judging<'_>) -> T) -> T {
        let generation = self.summaries.generation();
        let (office, cal) = (self.office(), self.calendar());
        f(&Judging {
            generation,
            office: &office,
            cal: &cal,
        })
    }
}

/// Cases re-evaluated per transaction: short transactions leave the write lock to ingest.
pub const TICK_CHUNK: u32 = 5_000;

/// Rebuilds the calendar from the store (shipped data, loaded years, overrides), puts it in force
/// for every thread, and re-evaluates every open case against it on `today` in the same
/// transaction (due days and lights move; steps already taken are never lowered). Returns how many
/// cases were looked at.
pub fn reload_calendar(
    conn: &rusqlite::Connection,
    sup: &Supervision,
    today: chrono::NaiveDate,
) -> Result<usize, String> {
    let cal = crate::store::settings::calendar(conn)?;
    sup.set_calendar(cal);
    *sup.calendar_loaded
        .lock()
        .unwrap_or_else(|p| p.into_inner()) =
        crate::store::settings::get_setting(conn, crate::store::settings::CALENDAR_LOADED)
            .map_err(|e| e.to_string())?
            .map(|s| s.value);
    cases::recheck_open(conn, today).map_err(|e| e.to_string())?;
    let mut total = cases::recheck_provisional_done(conn, sup, today).map_err(|e| e.to_string())?;
    loop {
        let n = cases::tick_chunk(conn, sup, today, TICK_CHUNK).map_err(|e| e.to_string())?;
        total += n;
        if n < TICK_CHUNK as usize {
            break;
        }
    }
    Ok(total)
}

/// Whether a year was loaded into the store since this hub last built its calendar (by
/// `sunlight-hub calendar import`, another process).
fn calendar_loaded_elsewhere(conn: &rusqlite::Connection, sup: &Supervision) -> bool {
    let stored = crate::store::settings::get_setting(conn, crate::store::settings::CALENDAR_LOADED)
        .ok()
        .flatten()
        .map(|s| s.value);
    *sup.calendar_loaded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        != stored
}

/// One tick: every case due by `today`, in transactions of at most `chunk` cases, then the default
/// ratings of cases left unrated. Returns how many cases were looked at.
pub fn run_tick(
    writer: &mut Writer,
    sup: &Supervision,
    today: chrono::NaiveDate,
    chunk: u32,
) -> rusqlite::Result<usize> {
    let mut total = 0;
    if calendar_loaded_elsewhere(writer.conn(), sup) {
        let tx = writer.transaction()?;
        match reload_calendar(&tx, sup, today) {
            Ok(n) => {
                tracing::info!(
                    cases = n,
                    "a calendar year was loaded: the calendar is rebuilt"
                );
                total += n;
            }
            Err(e) => {
                tracing::error!(error = %e, "a loaded calendar year does not read; the calendar in force is kept")
            }
        }
        tx.commit()?;
    }
    loop {
        let tx = writer.transaction()?;
        let n = cases::tick_chunk(&tx, sup, today, chunk)?;
        tx.commit()?;
        total += n;
        if n < chunk as usize {
            break;
        }
    }
    let tx = writer.transaction()?;
    total += crate::store::ratings::default_unrated(&tx, &sup.config(), today)?;
    tx.commit()?;
    Ok(total)
}

/// Runs the tick on its own thread with its own write connection, forever.
pub fn spawn(mut writer: Writer, sup: Supervision, every: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("oversight-tick".into())
        .spawn(move || {
            loop {
                let today = sup.clock.today();
                match run_tick(&mut writer, &sup, today, TICK_CHUNK) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(cases = n, %today, "oversight tick re-evaluated cases"),
                    Err(e) => {
                        tracing::error!(error = %e, "oversight tick failed; retrying next tick")
                    }
                }
                std::thread::sleep(every);
            }
        })?;
    Ok(())
}
