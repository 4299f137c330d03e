//! systemd integration (issue 7, packaging/systemd/sunlight-agent.service, `Type=notify`,
//! `WatchdogSec`): `run` says READY=1 once its intake listens and sync has started, and pings the
//! watchdog (WATCHDOG=1) only while the two parts that must never stop are alive: the outbox writer
//! thread answers a [`Outbox::ping`] (it takes requests between commits), and the sync sender loop
//! has beaten its [`Heartbeat`] recently (it turns at least every 200 ms, even with nothing to
//! send). If either hangs, the pings stop and systemd restarts the agent; nothing is lost, the
//! outbox is on disk. Outside systemd (no `NOTIFY_SOCKET`) this does nothing.

use crate::outbox::Outbox;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// When a loop last turned, in Unix ms (0: never).
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(crate::outbox::now_ms(), Ordering::Relaxed);
    }

    /// How long ago the loop last turned; `None`: never.
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(
                (crate::outbox::now_ms() - ms).max(0) as u64
            )),
        }
    }
}

/// Tells systemd the agent is ready and, when the unit has a watchdog, starts pinging it.
pub fn start(outbox: Outbox, sync: Heartbeat) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return;
    }
    let limit = Duration::from_micros(usec);
    tracing::info!(
        watchdog_ms = limit.as_millis() as u64,
        "systemd watchdog on"
    );
    tokio::spawn(watch(outbox, sync, limit, || {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }));
}

/// Every half `limit`, calls `ping` if the outbox writer answers within that time and the sync
/// loop turned within `limit`; logs what is wrong otherwise.
pub async fn watch(outbox: Outbox, sync: Heartbeat, limit: Duration, ping: impl Fn()) {
    let every = (limit / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let writer = tokio::time::timeout(every, outbox.ping()).await;
        let loop_age = sync.age();
        match (writer, loop_age) {
            (Ok(Ok(())), Some(age)) if age < limit => ping(),
            (Ok(Ok(())), age) => {
                tracing::error!(last_turn_ms = ?age.map(|a| a.as_millis() as u64), "the sync loop is stuck; not pinging the watchdog (systemd will restart the agent)")
            }
            (_, _) => {
                tracing::error!(
                    "the outbox writer does not answer; not pinging the watchdog (systemd will restart the agent)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_only_while_the_writer_answers_and_the_loop_turns() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.db"),
            &sunlight_protocol::SiteId::new("suixian-shangshi").unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        let beat = Heartbeat::default();
        let pings = Arc::new(AtomicUsize::new(0));
        let p = pings.clone();
        let limit = Duration::from_millis(200);
        let task = tokio::spawn(watch(outbox, beat.clone(), limit, move || {
            p.fetch_add(1, Ordering::Relaxed);
        }));
        // The loop never turned: no ping.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(pings.load(Ordering::Relaxed), 0);
        // It turns: pings.
        for _ in 0..10 {
            beat.beat();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alive = pings.load(Ordering::Relaxed);
        assert!(alive >= 2, "{alive}");
        // It stops turning: the pings stop once its last turn is older than the limit.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stopped = pings.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(pings.load(Ordering::Relaxed), stopped);
        task.abort();
    }
}
