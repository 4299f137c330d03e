//! Box health: a `health` event every `health.interval_secs`, through the outbox like any event,
//! so the hub sees the box's CPU, memory, disk, backlog and clock offset even after an outage.
//!
//! [`Alarms`] are what a supervisor must hear about at once — a camera that refused its password so
//! often that the box stopped asking, snapshots lost to the disk quota before they were uploaded.
//! Each is logged at error level, kept for `sunlight-agent status`, and sent right away in a
//! `health` event of its own with an extra `alarms` field (PROTOCOL.md keeps unknown fields), even
//! when periodic health events are off.

use crate::clock::Clock;
use crate::outbox::Outbox;
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_protocol::EventDraft;
use sysinfo::{Disks, System};
use tokio::sync::mpsc;

/// Alarms kept for status, at most (the newest).
const RECENT_ALARMS: usize = 20;
/// Alarms waiting for the health task, at most; beyond that they are only logged and kept.
const ALARM_QUEUE: usize = 64;

/// One alarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// What happened: `camera_logins_stopped`, `snapshots_evicted_unuploaded`, ...
    pub what: String,
    /// When, by the box's clock.
    pub at: String,
    /// What happened and what to do, for a person.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_id: Option<String>,
    /// How many (images lost, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Raises alarms; cheap to clone.
#[derive(Clone)]
pub struct Alarms {
    tx: mpsc::Sender<Alarm>,
    recent: Arc<Mutex<VecDeque<Alarm>>>,
}

impl Alarms {
    /// The alarms and the receiver [`run`] reports them from.
    pub fn new() -> (Alarms, mpsc::Receiver<Alarm>) {
        let (tx, rx) = mpsc::channel(ALARM_QUEUE);
        (
            Alarms {
                tx,
                recent: Arc::new(Mutex::new(VecDeque::new())),
            },
            rx,
        )
    }

    /// Logs the alarm, keeps it for status and hands it to the health task.
    pub fn raise(&self, alarm: Alarm) {
        tracing::error!(alarm = %alarm.what, camera_id = ?alarm.camera_id, count = ?alarm.count, "{}", alarm.detail);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_ALARMS {
                recent.pop_front();
            }
            recent.push_back(alarm.clone());
        }
        let _ = self.tx.try_send(alarm);
    }

    /// The latest alarms, oldest first.
    pub fn recent(&self) -> Vec<Alarm> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

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
    let (disk_free, disk_total) = Disks::new_with_refreshed_list()
        .ok()
        .and_then(|disks| {
            disks
                .iter()
                .filter(|d| data_dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
                .map(|d| (d.available_space(), d.total_space()))
        })
        .unwrap_or((0, 0));
    let backlog = outbox.backlog().unwrap_or_default();
    json!({
        "cpu": sys.global_cpu_usage() as f64,
        "mem": sys.used_memory(),
        "disk_free": disk_free,
        "disk_total": disk_total,
        "uptime": System::uptime().unwrap_or(0),
        "backlog_events": backlog.events,
        "backlog_bytes": backlog.bytes,
        "clock_offset_ms": clock.offset_ms(),
        "version": crate::update::version(),
    })
}

/// Appends a health event now and then every `interval` (`None`: only for alarms), and one for
/// every alarm as it comes, forever.
pub async fn run(
    interval: Option<Duration>,
    data_dir: PathBuf,
    outbox: Outbox,
    clock: Clock,
    mut alarms: mpsc::Receiver<Alarm>,
) {
    let sys = match System::new() {
        Ok(sys) => Arc::new(Mutex::new(sys)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read system figures; health events are off");
            return;
        }
    };
    // Without periodic events the tick never fires (a day is as good as never: it is re-armed).
    let mut tick = tokio::time::interval(interval.unwrap_or(Duration::from_secs(86_400)));
    let periodic = interval.is_some();
    let mut alarms_open = true;
    loop {
        let mut raised = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                if !periodic { continue; }
            }
            alarm = alarms.recv(), if alarms_open => match alarm {
                Some(alarm) => {
                    raised.push(alarm);
                    while let Ok(more) = alarms.try_recv() {
                        raised.push(more);
                    }
                }
                None => { alarms_open = false; continue; }
            },
        }
        let (sys, dir, o, c) = (sys.clone(), data_dir.clone(), outbox.clone(), clock.clone());
        let sampled = tokio::task::spawn_blocking(move || {
            sys.lock().map(|mut s| sample(&mut s, &dir, &o, &c)).ok()
        })
        .await;
        let Ok(Some(mut body)) = sampled else {
            continue;
        };
        if !raised.is_empty() {
            body["alarms"] = json!(raised);
        }
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
