//! Box health: a `health` event every `health.interval_secs`, through the outbox like any event,
//! so the hub sees the box's CPU, memory, disk, backlog and clock offset even after an outage.

use crate::clock::Clock;
use crate::outbox::Outbox;
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_protocol::EventDraft;
use sysinfo::{Disks, System};

/// Builds one health event body from the system and the outbox.
pub fn sample(
    sys: &mut System,
    data_dir: &std::path::Path,
    outbox: &Outbox,
    clock: &Clock,
) -> serde_json::Value {
    sys.refresh_cpu_usage();
    sys.refresh_memory();
    // The disk holding the data directory: the mount point that is the longest prefix of it.
    let disk_free = Disks::new_with_refreshed_list()
        .ok()
        .and_then(|disks| {
            disks
                .iter()
                .filter(|d| data_dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
                .map(|d| d.available_space())
        })
        .unwrap_or(0);
    let backlog = outbox.backlog().unwrap_or_default();
    json!({
        "cpu": sys.global_cpu_usage() as f64,
        "mem": sys.used_memory(),
        "disk_free": disk_free,
        "uptime": System::uptime().unwrap_or(0),
        "backlog_events": backlog.events,
        "backlog_bytes": backlog.bytes,
        "clock_offset_ms": clock.offset_ms(),
        "version": crate::VERSION,
    })
}

/// Appends a health event now and then every `interval`, forever.
pub async fn run(interval: Duration, data_dir: PathBuf, outbox: Outbox, clock: Clock) {
    let sys = match System::new() {
        Ok(sys) => Arc::new(Mutex::new(sys)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read system figures; health events are off");
            return;
        }
    };
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let (sys, dir, o, c) = (sys.clone(), data_dir.clone(), outbox.clone(), clock.clone());
        let sampled = tokio::task::spawn_blocking(move || {
            sys.lock().map(|mut s| sample(&mut s, &dir, &o, &c)).ok()
        })
        .await;
        let Ok(Some(body)) = sampled else { continue };
        match EventDraft::new("health", &clock.now_rfc3339(), &body) {
            Ok(draft) => {
                if let Err(e) = outbox.append_one(draft).await {
                    tracing::warn!(error = %e, "could not record a health event");
                }
            }
            Err(e) => tracing::warn!(error = %e, "health sample did not validate"),
        }
    }
}
