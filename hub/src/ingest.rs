//! Ingest: batches from agents → verified, deduplicated, committed → acked.
//!
//! The MQTT task forwards every message to one ingest thread that owns the store's write
//! connection. The thread takes all messages that are waiting (up to a bound), applies them in one
//! transaction, commits (one fsync for many batches), and only then hands the acks to the MQTT task
//! to publish. A device's events are applied strictly in seq order; a batch after a gap is not
//! applied and the ack tells the agent where to resume. Bad input becomes a dead-letter record (and
//! a tamper alarm for bad signatures and broken chains); it never stops ingest for other devices.

use crate::downkeys::HubKeys;
use crate::metrics::Metrics;
use crate::store::{self, DeviceState, Writer, now_ms};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use sunlight_protocol::topics::{self, Channel};
use sunlight_protocol::{Ack, BatchError, DeviceId, Kind, ReceivedBatch, Rejected, SiteId, Status};
use tokio::sync::mpsc;

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest batch payload accepted.
    pub max_batch_bytes: usize,
    /// Messages applied in one transaction, at most.
    pub group_messages: usize,
    /// How often an unanswered command is published again, in ms.
    pub command_resend_ms: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_batch_bytes: sunlight_protocol::DEFAULT_MAX_BATCH_BYTES,
            group_messages: 256,
            command_resend_ms: COMMAND_RESEND_MS,
        }
    }
}

/// One MQTT message for ingest.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: bytes::Bytes,
}

/// An ack to publish once its transaction committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub ack: Ack,
}

type DeviceKey = (SiteId, DeviceId);

pub use crate::supervise::Supervision;

/// Ingest's state between messages: a cache of device chain heads (the store is the truth).
pub struct Ingest {
    writer: Writer,
    devices: HashMap<DeviceKey, DeviceState>,
    /// Revoked boxes, re-read every few seconds (a revocation is made by another process).
    revoked: std::collections::HashSet<(String, String)>,
    revoked_read: Option<std::time::Instant>,
    config: IngestConfig,
    metrics: Arc<Metrics>,
    supervision: Supervision,
}

/// What one message did, within the current transaction.
#[derive(Debug, Default)]
struct Effect {
    ack: Option<(DeviceKey, u64, Vec<Rejected>)>,
}

fn rejected(reason: &BatchError) -> Vec<Rejected> {
    vec![Rejected {
        seq: None,
        reason: reason.to_string(),
    }]
}

impl Ingest {
    pub fn new(
        writer: Writer,
        config: IngestConfig,
        metrics: Arc<Metrics>,
        supervision: Supervision,
    ) -> Ingest {
        Ingest {
            writer,
            devices: HashMap::new(),
            revoked: Default::default(),
            revoked_read: None,
            config,
            metrics,
            supervision,
        }
    }

    /// Applies a group of messages in one transaction and returns the acks to publish after it.
    /// On a store failure nothing is acked: agents re-send, and nothing is lost.
    pub fn apply_group(&mut self, group: &[Message]) -> Vec<Outgoing> {
        let received_ms = now_ms();
        let mut staged: HashMap<DeviceKey, DeviceState> = HashMap::new();
        let mut acks: Vec<(DeviceKey, u64, Vec<Rejected>)> = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            if self
                .revoked_read
                .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3))
            {
                self.revoked = store::revoked(self.writer.conn())?;
                self.revoked_read = Some(std::time::Instant::now());
            }
            // Look devices up before the transaction borrows the connection.
            for m in group {
                if let Some((site, device, Channel::Batch)) = topics::parse(&m.topic) {
                    let key = (site, device);
                    if !self.devices.contains_key(&key) {
                        if let Some(state) = self.writer.device(&key.0, &key.1)? {
                            self.devices.insert(key, state);
                        }
                    }
                }
            }
            let devices = &self.devices;
            let ctx = Context {
                revoked: &self.revoked,
                config: &self.config,
                metrics: &self.metrics,
                supervision: &self.supervision,
                today: self.supervision.clock.today(),
            };
            let tx = self.writer.transaction()?;
            for m in group {
                let effect = apply_one(&tx, devices, &mut staged, &ctx, m, received_ms)?;
                if let Some(ack) = effect.ack {
                    acks.push(ack);
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                Metrics::add(&self.metrics.commits, 1);
                self.devices.extend(staged);
                coalesce(acks)
            }
            Err(e) => {
                tracing::error!(store = %self.writer.path().display(), error = %e, "ingest commit failed; nothing acked, agents will re-send");
                self.devices.clear();
                Vec::new()
            }
        }
    }

    /// Applies a status message (online/offline) directly; it is not part of the event log.
    pub fn apply_status(&mut self, topic: &str, payload: &[u8]) {
        let Some((site, device, Channel::Status)) = topics::parse(topic) else {
            return;
        };
        let status: Status = match serde_json::from_slice(payload) {
            Ok(s) => s,
            Err(_) if payload.is_empty() => return, // a cleared retained message
            Err(e) => {
                tracing::warn!(%site, %device, error = %e, "ignoring a malformed status message");
                return;
            }
        };
        if let Err(e) =
            self.writer
                .set_status(&site, &device, status.state == "online", &status.version)
        {
            tracing::warn!(%site, %device, error = %e, "could not record device status");
        }
    }
}

/// One ack per device per group: the highest `through_seq`, all rejections.
fn coalesce(acks: Vec<(DeviceKey, u64, Vec<Rejected>)>) -> Vec<Outgoing> {
    let mut order: Vec<DeviceKey> = Vec::new();
    let mut merged: HashMap<DeviceKey, (u64, Vec<Rejected>)> = HashMap::new();
    for (key, through, rejected) in acks {
        let entry = merged.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (0, Vec::new())
        });
        entry.0 = entry.0.max(through);
        entry.1.extend(rejected);
    }
    let hub_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    order
        .into_iter()
        .filter_map(|key| {
            let (through_seq, rejected) = merged.remove(&key)?;
            Some(Outgoing {
                topic: topics::topic(&key.0, &key.1, Channel::Ack),
                ack: Ack {
                    through_seq,
                    hub_time: hub_time.clone(),
                    rejected,
                },
            })
        })
        .collect()
}

/// What applying one message reads besides the message.
struct Context<'a> {
    revoked: &'a std::collections::HashSet<(String, String)>,
    config: &'a IngestConfig,
    metrics: &'a Metrics,
    supervision: &'a Supervision,
    today: chrono::NaiveDate,
}

fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    devices: &HashMap<DeviceKey, DeviceState>,
    staged: &mut HashMap<DeviceKey, DeviceState>,
    ctx: &Context<'_>,
    m: &Message,
    received_ms: i64,
) -> rusqlite::Result<Effect> {
    let (config, metrics) = (ctx.config, ctx.metrics);
    let Some((site, device, channel)) = topics::parse(&m.topic) else {
        tracing::debug!(topic = %m.topic, "ignoring a message on a foreign topic");
        return Ok(Effect::default());
    };
    if channel != Channel::Batch {
        // cmd_result also travels as an outbox event; the direct message is informational.
        return Ok(Effect::default());
    }
    Metrics::add(&metrics.batches_received, 1);
    let (s, d) = (Some(site.as_str()), Some(device.as_str()));
    let key = (site.clone(), device.clone());
    let dead = |reason: &BatchError, seq: Option<u64>| -> rusqlite::Result<()> {
        Metrics::add(&metrics.dead_letters, 1);
        tracing::warn!(%site, %device, ?seq, %reason, "dead-lettered");
        store::tx::dead_letter(tx, s, d, seq, &reason.to_string(), &m.payload)?;
        if reason.is_tamper() {
            Metrics::add(&metrics.tamper_alarms, 1);
            tracing::error!(%site, %device, %reason, "TAMPER ALARM");
            store::tx::alarm(tx, s, d, "tamper", &reason.to_string())?;
        }
        Ok(())
    };
    let Some(state) = staged.get(&key).or_else(|| devices.get(&key)).cloned() else {
        let reason = BatchError::UnknownDevice {
            site: site.to_string(),
            device: device.to_string(),
        };
        dead(&reason, None)?;
        return Ok(Effect {
            ack: Some((key, 0, rejected(&reason))),
        });
    };
    let current = state.last_seq;
    let refuse = |reason: BatchError| -> rusqlite::Result<Effect> {
        dead(&reason, None)?;
        Ok(Effect {
            ack: Some((key.clone(), current, rejected(&reason))),
        })
    };
    if ctx
        .revoked
        .contains(&(site.to_string(), device.to_string()))
    {
        return refuse(BatchError::Revoked {
            site: site.to_string(),
            device: device.to_string(),
        });
    }
    let batch = match ReceivedBatch::parse(&m.payload, config.max_batch_bytes) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    if batch.site != site || batch.device != device {
        return refuse(BatchError::WrongTopic {
            named: format!("{}/{}", batch.site, batch.device),
            topic: format!("{site}/{device}"),
        });
    }
    if let Err(e) = batch.verify(&state.pubkey) {
        return refuse(e);
    }
    let events = match batch.events() {
        Ok(ev) => ev,
        Err(e) => return refuse(e),
    };
    let (first, last) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (f.seq, l.seq),
        _ => return refuse(BatchError::Empty),
    };
    if last <= current {
        // Acked through the batch's own end, not through `current`: a box never takes an ack past
        // what it has sent (after a restart it sends again what the hub has already).
        Metrics::add(&metrics.events_duplicate, events.len() as u64);
        store::tx::touch_device(tx, state.id, received_ms)?;
        return Ok(Effect {
            ack: Some((key, last, Vec::new())),
        });
    }
    if first > current + 1 {
        Metrics::add(&metrics.batches_gap, 1);
        tracing::debug!(%site, %device, first, expected = current + 1, "batch after a gap; not applied");
        return Ok(Effect {
            ack: Some((key, current, Vec::new())),
        });
    }
    let new = &events[(current + 1 - first) as usize..];
    if new[0].prev != state.last_hash {
        return refuse(BatchError::BrokenChain { seq: new[0].seq });
    }
    Metrics::add(&metrics.events_duplicate, (events.len() - new.len()) as u64);
    let mut rejects = Vec::new();
    for e in new {
        let kind = Kind::parse(&e.kind);
        let valid = serde_json::from_str::<serde_json::Value>(e.body())
            .map_err(|err| err.to_string())
            .and_then(|body| match chrono::DateTime::parse_from_rfc3339(&e.at) {
                Ok(_) => kind.validate(&body).map_err(|err| err.to_string()),
                Err(_) => Err(format!("event time {:?} is not RFC 3339", e.at)),
            });
        match valid {
            Ok(()) => {
                store::tx::insert_event(tx, state.id, e, received_ms, state.clock_offset_ms)?;
                let mark = e.backdated.as_ref();
                if let Some(mark) = mark {
                    Metrics::add(&metrics.events_backdated, 1);
                    tracing::info!(%site, %device, seq = e.seq, kind = %e.kind, at = %e.at, received_at = %mark.received_at, "a back-dated event, recorded with its mark");
                    store::tx::backdated(tx, tx.last_insert_rowid(), site.as_str(), e, mark)?;
                }
                match kind {
                    Kind::Health => {
                        store::tx::record_health(tx, state.id, e.body())?;
                        crate::fleet::record_health(
                            tx,
                            state.id,
                            site.as_str(),
                            device.as_str(),
                            &e.at,
                            e.body(),
                        )?
                    }
                    Kind::CmdResult => {
                        store::commands::apply_result(tx, site.as_str(), device.as_str(), e.body())?
                    }
                    Kind::Snapshot => {
                        crate::blobs::apply_snapshot(tx, site.as_str(), device.as_str(), e.body())?
                    }
                    Kind::Case => store::cases::apply_marked_event(
                        tx,
                        site.as_str(),
                        &e.at,
                        e.body(),
                        mark,
                        ctx.supervision,
                        ctx.today,
                    )?,
                    Kind::Punch => store::attendance::apply_marked_punch(
                        tx,
                        site.as_str(),
                        &e.at,
                        e.body(),
                        state.clock_offset_ms,
                        mark,
                    )?,
                    Kind::Duty => {
                        store::attendance::apply_duty(tx, site.as_str(), &e.at, e.body())?
                    }
                    Kind::Patrol => {
                        store::attendance::apply_patrol(tx, site.as_str(), &e.at, e.body())?
                    }
                    Kind::Rating => store::ratings::apply_event(
                        tx,
                        &ctx.supervision.config(),
                        &ctx.supervision.calendar(),
                        site.as_str(),
                        &e.at,
                        e.body(),
                    )?,
                    Kind::Complaint => store::complaints::apply_event(
                        tx,
                        &ctx.supervision.config(),
                        &ctx.supervision.calendar(),
                        site.as_str(),
                        &e.at,
                        e.body(),
                    )?,
                    _ => {}
                }
            }
            Err(reason) => {
                // The event is genuine (signed and chained) but does not fit its schema: it is kept
                // in the dead-letter table, and the chain moves on so the agent is not stuck.
                Metrics::add(&metrics.dead_letters, 1);
                store::tx::dead_letter(tx, s, d, Some(e.seq), &reason, &e.canonical)?;
                rejects.push(Rejected {
                    seq: Some(e.seq),
                    reason,
                });
            }
        }
    }
    Metrics::add(
        &metrics.events_committed,
        (new.len() - rejects.len()) as u64,
    );
    let tail = &new[new.len() - 1];
    store::tx::advance_device(tx, state.id, tail.seq, &tail.hash, received_ms)?;
    let mut next = state;
    next.last_seq = tail.seq;
    next.last_hash = tail.hash;
    staged.insert(key.clone(), next);
    Ok(Effect {
        ack: Some((key, tail.seq, rejects)),
    })
}

/// Largest MQTT packet the hub reads from its broker.
pub const INCOMING_PACKET_LIMIT: usize = 16 * 1024 * 1024;

/// How the hub reaches its broker.
#[derive(Debug, Clone)]
pub struct BrokerLink {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// TLS to the broker (mqtts://): the CA's PEM and, for mTLS, the hub's certificate and key.
    pub tls: Option<BrokerTls>,
    /// Username and password (the embedded broker's login for the hub).
    pub login: Option<(String, String)>,
}

#[derive(Clone)]
pub struct BrokerTls {
    pub ca: Vec<u8>,
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for BrokerTls {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("client_auth", &self.client_auth.is_some())
            .finish()
    }
}

/// How often an unanswered command is published again, by default.
const COMMAND_RESEND_MS: i64 = 60_000;

/// How often (in turns of the command publisher, about a second each) the boxes' calendars are
/// compared with the one in force ([`store::boxcal`]).
const CALENDAR_SYNC_ROUNDS: u64 = 5;

/// Records a `set_calendar` command for each box whose calendar differs from the one in force.
/// The comparison is a read; the write lock (which ingest needs too) is taken only when some box
/// needs the calendar.
fn sync_calendars(store: &std::sync::Mutex<Writer>) {
    use chrono::Datelike;
    let Ok(mut w) = store.lock() else { return };
    let now = store::now_ms();
    // The UTC year is never ahead of the county's: around New Year a box gets one year more.
    let from_year = chrono::Utc::now().year();
    let result = (|| -> Result<Vec<String>, String> {
        let pushed = store::boxcal::current(w.conn(), from_year, now)?;
        if store::boxcal::stale(w.conn(), &pushed.version, now)
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let tx = w.transaction().map_err(|e| e.to_string())?;
        let pushed = store::boxcal::current(&tx, from_year, now)?;
        let ids = store::boxcal::sync(&tx, &pushed, now).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        if !ids.is_empty() {
            tracing::info!(version = %pushed.version, boxes = ids.len(), "the calendar is sent to the boxes that do not have it");
        }
        Ok(ids)
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not compare the boxes' calendars with the one in force");
    }
}

/// Publishes recorded commands that wait for their answer (see [`store::commands`]).
async fn publish_commands(
    client: AsyncClient,
    store: Arc<std::sync::Mutex<Writer>>,
    resend_ms: i64,
    keys: Arc<HubKeys>,
) {
    let mut round: u64 = 0;
    loop {
        if round % CALENDAR_SYNC_ROUNDS == 0 {
            let store2 = store.clone();
            let _ = tokio::task::spawn_blocking(move || sync_calendars(&store2)).await;
        }
        round = round.wrapping_add(1);
        let store2 = store.clone();
        let due = tokio::task::spawn_blocking(move || {
            let w = store2.lock().ok()?;
            store::commands::due(w.conn(), store::now_ms(), resend_ms).ok()
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        for p in due {
            let Some(sealed) = keys.seal_for_topic(&p.topic, &p.payload) else {
                continue;
            };
            if client
                .publish(p.topic, QoS::AtLeastOnce, false, sealed)
                .await
                .is_err()
            {
                break;
            }
            let store2 = store.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(w) = store2.lock() {
                    let _ = store::commands::mark_published(w.conn(), &p.cmd_id, store::now_ms());
                }
            })
            .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs ingest until the process ends: MQTT in, one ingest thread, acks out. Every ack and
/// command leaves sealed by `keys` (PROTOCOL.md "Acknowledgement").
pub async fn run(
    link: BrokerLink,
    ingest: Ingest,
    commands: Arc<std::sync::Mutex<Writer>>,
    keys: Arc<HubKeys>,
) -> Result<(), crate::Error> {
    // Accept anything the broker forwards: a message over rumqttc's limit would drop the connection,
    // and with a persistent session the broker would hand the same message back forever. Oversized
    // batches are read and dead-lettered instead. Brokers cap messages themselves (the embedded one
    // at broker::MAX_PACKET; Mosquitto with message_size_limit).
    let max_packet = INCOMING_PACKET_LIMIT.max(ingest.config.max_batch_bytes + 4096);
    let group_messages = ingest.config.group_messages.max(1);
    let resend_ms = ingest.config.command_resend_ms.max(1000);
    let mut opts = MqttOptions::new(link.client_id.clone(), link.host.clone(), link.port);
    opts.set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false)
        .set_max_packet_size(max_packet, 64 * 1024)
        .set_inflight(1000);
    if let Some((user, password)) = &link.login {
        opts.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &link.tls {
        opts.set_transport(rumqttc::Transport::tls(
            tls.ca.clone(),
            tls.client_auth.clone(),
            None,
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let (in_tx, mut in_rx) = mpsc::channel::<Message>(256);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<Outgoing>>(64);

    // The ingest thread.
    let metrics = ingest.metrics.clone();
    let mut ingest = ingest;
    std::thread::Builder::new()
        .name("ingest".into())
        .spawn(move || {
            while let Some(first) = in_rx.blocking_recv() {
                let mut group = vec![first];
                while group.len() < group_messages {
                    match in_rx.try_recv() {
                        Ok(m) => group.push(m),
                        Err(_) => break,
                    }
                }
                let (statuses, batches): (Vec<Message>, Vec<Message>) = group
                    .into_iter()
                    .partition(|m| m.topic.ends_with("/status"));
                for s in &statuses {
                    ingest.apply_status(&s.topic, &s.payload);
                }
                if batches.is_empty() {
                    continue;
                }
                let acks = ingest.apply_group(&batches);
                if !acks.is_empty() && out_tx.blocking_send(acks).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| crate::Error::io("starting the ingest thread", e))?;

    tokio::spawn(publish_commands(
        client.clone(),
        commands,
        resend_ms,
        keys.clone(),
    ));

    // Acks out, never from the polling task (rumqttc would deadlock).
    let ack_client = client.clone();
    tokio::spawn(async move {
        while let Some(acks) = out_rx.recv().await {
            for out in acks {
                let Some(payload) = serde_json::to_vec(&out.ack)
                    .ok()
                    .and_then(|body| keys.seal_for_topic(&out.topic, &body))
                else {
                    continue;
                };
                if ack_client
                    .publish(out.topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
                Metrics::add(&metrics.acks_sent, 1);
            }
        }
    });

    let mut attempt = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                tracing::info!(host = %link.host, port = link.port, "hub connected to broker");
                let _ = client.try_subscribe(topics::HUB_UP_FILTER, QoS::AtLeastOnce);
                let _ = client.try_subscribe(topics::HUB_STATUS_FILTER, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/up/check") => {
                // `sunlight-agent check`: echo it on the box's own down/check, so the box sees a
                // round trip through the broker's ACL in both directions and through this hub.
                let prefix = p.topic.trim_end_matches("/up/check");
                if p.payload.len() <= 256 && prefix.matches('/').count() == 3 {
                    let _ = client.try_publish(
                        format!("{prefix}/down/check"),
                        QoS::AtLeastOnce,
                        false,
                        p.payload.to_vec(),
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if in_tx
                    .send(Message {
                        topic: p.topic,
                        payload: p.payload,
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                let wait = Duration::from_millis((250u64 << attempt.min(5)).min(5000));
                attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "hub lost the broker");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
