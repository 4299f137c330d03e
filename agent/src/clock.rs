//! The box's wall clock in the office's time zone, and the offset the hub measured against it.

use chrono::{SecondsFormat, Utc};
use chrono_tz::Tz;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Time as the box tells it: RFC 3339 in the configured zone (Asia/Shanghai by default).
#[derive(Debug, Clone)]
pub struct Clock {
    tz: Tz,
    /// hub time − box time in ms, from the latest ack; `i64::MIN` until the first ack.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new(tz: Tz) -> Clock {
        Clock {
            tz,
            offset_ms: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The office's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Now, e.g. `2026-11-23T08:29:01.120+08:00`.
    pub fn now_rfc3339(&self) -> String {
        Utc::now()
            .with_timezone(&self.tz)
            .to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    /// Records the hub's clock as read from an ack that just arrived.
    pub fn observe_hub_time(&self, hub_time: &str) {
        if let Ok(hub) = chrono::DateTime::parse_from_rfc3339(hub_time) {
            let offset = hub.timestamp_millis() - Utc::now().timestamp_millis();
            self.offset_ms.store(offset, Ordering::Relaxed);
        }
    }

    /// hub − box in milliseconds, once known. Accurate to about half a network round trip.
    pub fn offset_ms(&self) -> Option<i64> {
        match self.offset_ms.load(Ordering::Relaxed) {
            i64::MIN => None,
            v => Some(v),
        }
    }
}
