//! Counters for `GET /metrics` (Prometheus text format). Plain atomics: cheap on the ingest path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_received: AtomicU64,
    pub events_committed: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub batches_gap: AtomicU64,
    pub dead_letters: AtomicU64,
    pub tamper_alarms: AtomicU64,
    pub acks_sent: AtomicU64,
    pub commits: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 8] = [
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
        out
    }
}
