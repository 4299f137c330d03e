//! The oversight timer: once a minute (and at start), re-evaluate the open cases whose next
//! escalation day has come. Incremental: the `next_check` index selects only those cases, so the
//! work is proportional to what can change, not to the number of open cases.

use crate::clock::HubClock;
use crate::config::HubConfig;
use crate::oversight::attendance::Office;
use crate::oversight::calendar::Calendar;
use crate::store::{Writer, cases};
use std::sync::Arc;
use std::time::Duration;

/// What oversight reads besides the events: the calendar, the clock and the county's rules.
#[derive(Debug, Clone)]
pub struct Supervision {
    pub calendar: Arc<Calendar>,
    pub clock: HubClock,
    pub config: Arc<HubConfig>,
    /// The attendance rules and office hours of `config`, parsed.
    pub office: Arc<Office>,
}

impl Supervision {
    pub fn new(
        calendar: Arc<Calendar>,
        clock: HubClock,
        config: Arc<HubConfig>,
    ) -> Result<Supervision, crate::Error> {
        let office = Office::from_config(&config.attendance).map_err(crate::Error::Invalid)?;
        Ok(Supervision {
            calendar,
            clock,
            config,
            office: Arc::new(office),
        })
    }
}

/// Cases re-evaluated per transaction: short transactions leave the write lock to ingest.
pub const TICK_CHUNK: u32 = 5_000;

/// One tick: every case due by `today`, in transactions of at most `chunk` cases, then the default
/// ratings of cases left unrated. Returns how many cases were looked at.
pub fn run_tick(
    writer: &mut Writer,
    sup: &Supervision,
    today: chrono::NaiveDate,
    chunk: u32,
) -> rusqlite::Result<usize> {
    let mut total = 0;
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
    total += crate::store::ratings::default_unrated(&tx, &sup.config, today)?;
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
