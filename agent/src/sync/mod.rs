//! Sync: the only part of the agent that talks to the hub.
//!
//! Two tasks. The *connection* task polls rumqttc's event loop (nothing moves unless it is polled),
//! reconnects with jittered exponential back-off, and forwards what matters — connected,
//! disconnected, an ack — to the *sender* task. The sender owns the [`window::Window`]: it reads
//! batches of consecutive events from the outbox, signs and publishes them, deletes events only
//! when an ack says the hub committed them, and rewinds to the last ack whenever in doubt.
//! Commands (`down/cmd`) are handed to a third task, the [`Executor`], through a bounded channel: the
//! poll task never waits for the disk, and a command dropped because the channel is full is simply
//! published again by the hub. Snapshots travel apart from events, over HTTP: [`upload`].
//!
//! Nothing on `down/…` is obeyed unless the hub sealed it for this box ([`sunlight_protocol::down`]):
//! a forged, misaddressed or retained ack or command is refused, counted and logged, and changes
//! nothing. The clock offset is read only from acks that advanced.

pub mod upload;
pub mod window;

use crate::clock::Clock;
use crate::commands::Executor;
use crate::config::{AgentConfig, broker_address};
use crate::error::Error;
use crate::outbox::Outbox;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sunlight_protocol::down::{self, DownKind};
use sunlight_protocol::topics::{Channel, topic};
use sunlight_protocol::{Ack, BatchBuilder, DeviceKey, Status, login};
use tokio::sync::mpsc;
use window::{AckOutcome, Window};

/// What `sunlight-agent status` shows about the link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkState {
    pub connected: bool,
    pub broker: String,
    /// Unix ms of the last ack that advanced.
    pub last_ack_ms: Option<i64>,
    pub acked_seq: u64,
    pub in_flight_batches: usize,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// Acks and commands refused (not sealed by the hub for this box, retained, or past what was
    /// sent), and why the last one was.
    pub refused_down: u64,
    pub last_refused: Option<String>,
}

pub type SharedLink = Arc<Mutex<LinkState>>;

enum NetEvent {
    Connected,
    Disconnected(String),
    Ack(Ack),
}

/// Counts and logs a refused down message; the first few and then every thousandth are logged,
/// so a flood of forgeries cannot fill the box's disk with log lines.
fn refuse_down(link: &SharedLink, what: &str, reason: &str) {
    let count = link
        .lock()
        .map(|mut l| {
            l.refused_down += 1;
            l.last_refused = Some(format!("{what}: {reason}"));
            l.refused_down
        })
        .unwrap_or(0);
    if count <= 20 || count % 1000 == 0 {
        tracing::warn!(refused = count, "refused {what}: {reason}");
    }
}

/// Everything the sync tasks need.
pub struct Sync {
    pub config: AgentConfig,
    pub outbox: Outbox,
    pub key: Arc<DeviceKey>,
    pub clock: Clock,
    pub link: SharedLink,
    /// The box's cameras, for the hub's `snapshot` command.
    pub cameras: Option<Arc<crate::capture::camera::Cameras>>,
    /// Installs updates and restarts the agent, for the hub's `update` and `restart` commands.
    pub updater: Option<crate::update::Updater>,
    /// For the hub's `reload_config` and `upload_logs` commands.
    pub maintenance: Option<Arc<crate::maintenance::Maintenance>>,
    /// Beaten each time the sender loop turns (the systemd watchdog checks it).
    pub heartbeat: crate::watchdog::Heartbeat,
}

fn mqtt_options(config: &AgentConfig, key: &DeviceKey) -> Result<MqttOptions, Error> {
    let path = std::path::PathBuf::from("agent config");
    let (tls, host, port) = broker_address(&config.hub.broker).map_err(|detail| Error::Config {
        path: path.clone(),
        detail,
    })?;
    let client_id = login::agent_client_id(&config.site, &config.device);
    let mut opts = MqttOptions::new(client_id, host, port);
    // The embedded broker's login (decision 0016); a county Mosquitto with mTLS goes by the
    // certificate and ignores it.
    opts.set_credentials(
        login::username(&config.site, &config.device),
        login::password(key, &config.site, &config.device),
    );
    let max = config.sync.max_batch_bytes + 4096;
    opts.set_keep_alive(Duration::from_secs(config.sync.keep_alive_secs.max(1)))
        .set_max_packet_size(max.max(64 * 1024), max)
        .set_clean_session(true)
        .set_inflight(config.sync.window.clamp(1, u16::MAX as usize) as u16 + 4);
    let status_topic = topic(&config.site, &config.device, Channel::Status);
    opts.set_last_will(LastWill::new(
        status_topic,
        Status::offline(crate::update::version()).to_bytes(),
        QoS::AtLeastOnce,
        true,
    ));
    if tls {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let ca = config
            .hub
            .ca_file
            .as_ref()
            .map(read)
            .transpose()?
            .unwrap_or_default();
        let client_auth = match (&config.hub.cert_file, &config.hub.key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        opts.set_transport(Transport::tls(ca, client_auth, None));
    }
    Ok(opts)
}

/// Commands waiting for the executor, at most; more are dropped (the hub sends them again).
const COMMAND_QUEUE: usize = 16;

/// A jittered exponential back-off: `min · 2^attempt`, capped, then ±50%.
pub fn backoff(attempt: u32, min_ms: u64, max_ms: u64) -> Duration {
    let base = min_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(1);
    let mut r = [0u8; 8];
    let jitter = if getrandom::getrandom(&mut r).is_ok() {
        u64::from_le_bytes(r) % base
    } else {
        base / 2
    };
    Duration::from_millis(base / 2 + jitter)
}

impl Sync {
    /// Runs until the process ends.
    pub async fn run(self) -> Result<(), Error> {
        let opts = mqtt_options(&self.config, &self.key)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (net_tx, mut net_rx) = mpsc::channel::<NetEvent>(256);
        let site = self.config.site.clone();
        let device = self.config.device.clone();
        let ack_topic = topic(&site, &device, Channel::Ack);
        let cmd_topic = topic(&site, &device, Channel::Cmd);
        let status_topic = topic(&site, &device, Channel::Status);
        let batch_topic = topic(&site, &device, Channel::Batch);
        let sync_cfg = self.config.sync.clone();
        let trusted = sunlight_protocol::down::trusted_keys(&self.config.hub.verifying_keys)
            .map_err(|detail| Error::Config {
                path: "agent config".into(),
                detail: format!("hub.verifying_keys: {detail}"),
            })?;
        if trusted.is_empty() {
            tracing::error!(
                "[hub] verifying_keys is empty: every ack and command will be refused, so events \
                 are sent but never deleted and no command runs. Add the line 'sunlight-hub \
                 hub-key show' prints (enrollment writes it)"
            );
        }
        self.link
            .lock()
            .map(|mut l| l.broker = self.config.hub.broker.clone())
            .ok();

        // The command executor.
        let (cmd_tx, cmd_rx) = mpsc::channel::<Vec<u8>>(COMMAND_QUEUE);
        tokio::spawn(
            Executor {
                outbox: self.outbox.clone(),
                clock: self.clock.clone(),
                site: site.to_string(),
                cameras: self.cameras.clone(),
                updater: self.updater.clone(),
                maintenance: self.maintenance.clone(),
            }
            .run(cmd_rx),
        );

        // The connection task: poll, reconnect with back-off, forward.
        let conn_client = client.clone();
        let ack_topic_in = ack_topic.clone();
        let link = self.link.clone();
        let (site_in, device_in) = (site.clone(), device.clone());
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        attempt = 0;
                        tracing::info!(broker = %link.lock().map(|l| l.broker.clone()).unwrap_or_default(), "connected to broker");
                        // rumqttc does not queue requests from its own poll task; subscribe from here with try_.
                        let _ = conn_client.try_subscribe(ack_topic_in.clone(), QoS::AtLeastOnce);
                        let _ = conn_client.try_subscribe(cmd_topic.clone(), QoS::AtLeastOnce);
                        let _ = conn_client.try_publish(
                            status_topic.clone(),
                            QoS::AtLeastOnce,
                            true,
                            Status::online(crate::update::version()).to_bytes(),
                        );
                        if net_tx.send(NetEvent::Connected).await.is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p)))
                        if p.topic == ack_topic_in || p.topic == cmd_topic =>
                    {
                        let (kind, what) = if p.topic == ack_topic_in {
                            (DownKind::Ack, "an ack")
                        } else {
                            (DownKind::Cmd, "a command")
                        };
                        // The hub never retains: a retained message was left by someone else, and
                        // would come back on every connect.
                        if p.retain {
                            refuse_down(&link, what, "a retained message (the hub never retains)");
                            continue;
                        }
                        let body =
                            match down::open(&p.payload, &trusted, &site_in, &device_in, kind) {
                                Ok(body) => body,
                                Err(e) => {
                                    refuse_down(&link, what, &e.to_string());
                                    continue;
                                }
                            };
                        if kind == DownKind::Ack {
                            match serde_json::from_slice::<Ack>(&body) {
                                Ok(ack) => {
                                    if net_tx.send(NetEvent::Ack(ack)).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    refuse_down(&link, what, &format!("sealed but not an ack: {e}"))
                                }
                            }
                            continue;
                        }
                        match cmd_tx.try_send(body) {
                            Ok(()) => tracing::debug!("command received"),
                            Err(e) => {
                                tracing::warn!(error = %e, "command dropped (executor busy or stopped); the hub sends it again")
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        tracing::info!(topic = %p.topic, "ignoring a message on a topic this box does not use");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let wait =
                            backoff(attempt, sync_cfg.backoff_min_ms, sync_cfg.backoff_max_ms);
                        attempt = attempt.saturating_add(1);
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "broker connection lost");
                        if net_tx
                            .send(NetEvent::Disconnected(e.to_string()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });

        // The sender: owns the window.
        let acked = {
            let outbox = self.outbox.clone();
            tokio::task::spawn_blocking(move || outbox.backlog())
                .await
                .map_err(|e| Error::Store(e.to_string()))??
                .acked_seq
        };
        let mut window = Window::new(
            acked,
            self.config.sync.window,
            self.config.sync.ack_timeout(),
            Instant::now(),
        );
        let appended = self.outbox.appended();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drained = false;
        loop {
            self.heartbeat.beat();
            // Send while the window has room and the outbox has events.
            while window.can_send() && !drained {
                let from = window.next_seq();
                let outbox = self.outbox.clone();
                let (max_events, max_bytes) = (
                    self.config.sync.max_batch_events,
                    self.config.sync.max_batch_bytes,
                );
                let events = tokio::task::spawn_blocking(move || {
                    outbox.read_from(from, max_events, max_bytes)
                })
                .await
                .map_err(|e| Error::Store(e.to_string()))??;
                if events.is_empty() {
                    drained = true;
                    break;
                }
                let mut builder = BatchBuilder::new(&site, &device, max_bytes);
                for e in &events {
                    if !builder.push(e.seq, &e.prev, &e.canonical) {
                        break;
                    }
                }
                let Some((first, last)) = builder.range() else {
                    break;
                };
                let payload = builder.finish(&self.key);
                if client
                    .publish(batch_topic.clone(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
                tracing::debug!(first, last, "batch sent");
                window.sent(first, last, Instant::now());
            }
            self.publish_link(&window);
            tokio::select! {
                event = net_rx.recv() => match event {
                    Some(NetEvent::Connected) => { window.connected(Instant::now()); drained = false; }
                    Some(NetEvent::Disconnected(e)) => {
                        window.disconnected();
                        if let Ok(mut l) = self.link.lock() { l.reconnects += 1; l.last_error = Some(e); }
                    }
                    Some(NetEvent::Ack(ack)) => {
                        for r in &ack.rejected {
                            tracing::error!(seq = ?r.seq, reason = %r.reason, "the hub rejected an event; it is kept in the hub's dead-letter table");
                        }
                        match window.on_ack(ack.through_seq, Instant::now()) {
                            AckOutcome::BeyondSent { through, sent } => {
                                refuse_down(&self.link, "an ack", &format!("through seq {through}, but this box has sent only through {sent}; nothing deleted"));
                            }
                            AckOutcome::Advanced(through) => {
                                // Only an ack that advanced is fresh: a replayed one cannot move the clock.
                                self.clock.observe_hub_time(&ack.hub_time);
                                if let Err(e) = self.outbox.ack(through).await {
                                    // The rows stay; the next ack deletes them. Nothing is lost.
                                    tracing::warn!(error = %e, through, "could not delete acknowledged events yet");
                                }
                                if let Ok(mut l) = self.link.lock() { l.last_ack_ms = Some(chrono::Utc::now().timestamp_millis()); }
                            }
                            AckOutcome::Rewound => { drained = false; tracing::info!(from = window.next_seq(), "hub is missing a batch; re-sending"); }
                            AckOutcome::Stale => {}
                        }
                    }
                    None => return Ok(()),
                },
                _ = appended.notified() => { drained = false; }
                _ = tick.tick() => {
                    if window.on_tick(Instant::now()) {
                        drained = false;
                        tracing::info!(from = window.next_seq(), "no ack in time; re-sending from the last ack");
                    }
                }
            }
        }
    }

    fn publish_link(&self, window: &Window) {
        if let Ok(mut l) = self.link.lock() {
            l.connected = window.is_connected();
            l.acked_seq = window.acked();
            l.in_flight_batches = window.in_flight();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        for attempt in 0..30 {
            let d = backoff(attempt, 500, 30_000).as_millis() as u64;
            let base = (500u64 << attempt.min(20)).min(30_000);
            assert!(
                d >= base / 2 && d < base + base / 2,
                "attempt {attempt}: {d}"
            );
        }
    }
}
