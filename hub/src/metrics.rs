//! Counters for `GET /metrics` (Prometheus text format). Plain atomics: cheap on the ingest path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_received: AtomicU64,
    pub events_committed: AtomicU64,
    pub events_duplicate: AtomicU64,
    /// Events their box marked back-dated (issue 14, item 6).
    pub events_backdated: AtomicU64,
    pub batches_gap: AtomicU64,
    pub dead_letters: AtomicU64,
    pub tamper_alarms: AtomicU64,
    pub acks_sent: AtomicU64,
    pub commits: AtomicU64,
    /// The last scheduled `PRAGMA integrity_check`: unix seconds it finished (0: not yet), and
    /// whether it said "ok" (1) or not (0).
    pub integrity_checked_at: AtomicU64,
    pub integrity_ok: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 9] = [
            (
                "sunlight_hub_batches_received_total",
                "Batches received from agents.",
                &self.batches_received,
            ),
            (
                "sunlight_hub_events_committed_total",
                "Events committed to the event store.",
                &self.events_committed,
            ),
            (
                "sunlight_hub_events_duplicate_total",
                "Events received again and ignored (already stored).",
                &self.events_duplicate,
            ),
            (
                "sunlight_hub_events_backdated_total",
                "Events committed with their box's back-dated mark.",
                &self.events_backdated,
            ),
            (
                "sunlight_hub_batches_gap_total",
                "Batches not applied because an earlier one is missing.",
                &self.batches_gap,
            ),
            (
                "sunlight_hub_dead_letters_total",
                "Batches or events refused and kept in the dead-letter table.",
                &self.dead_letters,
            ),
            (
                "sunlight_hub_tamper_alarms_total",
                "Bad signatures and broken hash chains.",
                &self.tamper_alarms,
            ),
            (
                "sunlight_hub_acks_sent_total",
                "Acks published to agents.",
                &self.acks_sent,
            ),
            (
                "sunlight_hub_commits_total",
                "Store transactions committed by ingest.",
                &self.commits,
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let checked = self.integrity_checked_at.load(Ordering::Relaxed);
        if checked > 0 {
            let _ = writeln!(
                out,
                "# HELP sunlight_hub_store_integrity_ok 1 when the last scheduled integrity check of the store said ok.\n\
                 # TYPE sunlight_hub_store_integrity_ok gauge\nsunlight_hub_store_integrity_ok {}\n\
                 # HELP sunlight_hub_store_integrity_checked_seconds When it finished (unix time).\n\
                 # TYPE sunlight_hub_store_integrity_checked_seconds gauge\nsunlight_hub_store_integrity_checked_seconds {checked}",
                self.integrity_ok.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Checks the store's integrity now and then every `every` (a full `PRAGMA integrity_check`
/// reads the whole file: never on a request), recording the outcome for `/metrics`.
pub fn spawn_integrity_check(
    reader: crate::store::Reader,
    metrics: std::sync::Arc<Metrics>,
    every: std::time::Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("integrity-check".into())
        .spawn(move || {
            loop {
                let ok = match reader.integrity_check() {
                    Ok(text) if text == "ok" => true,
                    Ok(text) => {
                        tracing::error!(result = %text, "the store's integrity check found damage");
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the store's integrity check did not run");
                        false
                    }
                };
                metrics.integrity_ok.store(u64::from(ok), Ordering::Relaxed);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(1);
                metrics
                    .integrity_checked_at
                    .store(now.max(1), Ordering::Relaxed);
                std::thread::sleep(every);
            }
        })
        .map(|_| ())
}
