//! The embedded MQTT broker (rumqttd), for the default tier: a hub that needs no separate broker.
//! Production counties point the hub at Mosquitto or EMQX instead (`--broker mqtts://host:port`).
//! Why rumqttd: docs/decisions/0001-embedded-broker.md; how it is guarded: decision 0016.
//!
//! Nobody connects without a login ([`Gate`]): a box logs in with a signature by its registered
//! device key (`sunlight_protocol::login`), bound to its own client ids; the hub with a secret made
//! at each start, so no one else can take its client id. rumqttd checks logins but has no topic
//! ACL, so boxes do not reach it directly: they connect to the [`listen`](start_embedded) address,
//! where a filter reads every packet a box sends and lets through only what Mosquitto's generated
//! ACL would (`provisioning/src/broker.rs`): publishing on its own `up/…` and `status`, subscribing
//! to its own `down/…`. Anything else closes the connection. rumqttd itself listens on a loopback
//! port of its own, for the hub's connection.

use crate::error::Error;
use crate::store::Reader;
use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::Packet;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sunlight_protocol::{DeviceId, SiteId, login};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest MQTT packet the embedded broker accepts (a 256 KiB batch fits with room to spare).
pub const MAX_PACKET: usize = 1024 * 1024 + 16 * 1024;

/// The username of the hub's own connection (a box's always holds a `.`).
pub const HUB_USERNAME: &str = "sunlight-hub";

/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Hub,
    Box { site: SiteId, device: DeviceId },
}

/// Checks logins to the embedded broker.
pub struct Gate {
    devices: Mutex<Reader>,
    hub_client_id: String,
    hub_secret: String,
}

impl std::fmt::Debug for Gate {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("hub_client_id", &self.hub_client_id)
            .finish()
    }
}

impl Gate {
    /// A gate for the boxes registered in the store at `db`, and for the hub connecting as
    /// `hub_client_id` with a secret made now.
    pub fn new(db: &Path, hub_client_id: &str) -> Result<Gate, Error> {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret)
            .map_err(|e| Error::Broker(format!("no randomness for the hub's broker login: {e}")))?;
        Ok(Gate {
            devices: Mutex::new(Reader::open(db)?),
            hub_client_id: hub_client_id.to_owned(),
            hub_secret: hex::encode(secret),
        })
    }

    /// The username and password the hub's own connection logs in with.
    pub fn hub_credentials(&self) -> (String, String) {
        (HUB_USERNAME.to_owned(), self.hub_secret.clone())
    }

    /// Who `username`/`password` is, when they may connect as `client_id`; otherwise why not.
    pub fn check(&self, client_id: &str, username: &str, password: &str) -> Result<Login, String> {
        if username == HUB_USERNAME {
            if !same_bytes(password.as_bytes(), self.hub_secret.as_bytes()) {
                return Err("wrong password for the hub's login".into());
            }
            if client_id != self.hub_client_id {
                return Err(format!("the hub's login with client id {client_id:?}"));
            }
            return Ok(Login::Hub);
        }
        let Some((site, device)) = login::parse_username(username) else {
            return Err(format!("unknown username {username:?}"));
        };
        if !login::client_id_allowed(&site, &device, client_id) {
            return Err(format!("{username} may not use client id {client_id:?}"));
        }
        let key = {
            let reader = self
                .devices
                .lock()
                .map_err(|_| "the device list is unavailable".to_owned())?;
            reader
                .login_key(&site, &device)
                .map_err(|e| format!("reading the device list: {e}"))?
        };
        let Some(key) = key else {
            return Err(format!("{site}/{device} is not registered or is revoked"));
        };
        if !login::verify(&key, &site, &device, password) {
            return Err(format!(
                "{site}/{device}: the password is not signed by its registered key"
            ));
        }
        Ok(Login::Box { site, device })
    }
}

/// Equal bytes, compared without an early exit.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn config(listen: SocketAddr, gate: Arc<Gate>) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id, username, password| {
        let verdict = gate.check(&client_id, &username, &password);
        if let Err(why) = &verdict {
            tracing::warn!(%client_id, %why, "embedded broker: login refused");
        }
        std::future::ready(verdict.is_ok())
    });
    let v4 = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_string(), v4)])),
        ..Default::default()
    }
}

/// The embedded broker, running.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// Where the boxes connect (through the filter).
    pub listen: SocketAddr,
    /// Where the hub connects (rumqttd itself, on loopback).
    pub internal: SocketAddr,
}

/// Starts the broker on its own threads, its filter for the boxes on `listen`, and waits until both
/// accept connections.
pub fn start_embedded(listen: SocketAddr, gate: Arc<Gate>) -> Result<Embedded, Error> {
    // Fail early and clearly when the port is taken (rumqttd would only log it).
    let public = std::net::TcpListener::bind(listen).map_err(|e| {
        Error::io(format!("the embedded broker cannot listen on {listen} (is another broker running? pick another with --embedded-broker)"), e)
    })?;
    let listen = public
        .local_addr()
        .map_err(|e| Error::io("the embedded broker's address", e))?;
    let internal = start_rumqttd(gate.clone())?;
    public
        .set_nonblocking(true)
        .map_err(|e| Error::io("the embedded broker's listener", e))?;
    std::thread::Builder::new()
        .name("mqtt-filter".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the embedded broker's filter cannot start");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(public) {
                    Ok(l) => serve_filtered(l, internal, gate).await,
                    Err(e) => {
                        tracing::error!(error = %e, "the embedded broker's filter cannot listen")
                    }
                }
            });
        })
        .map_err(|e| Error::io("starting the embedded broker's filter", e))?;
    tracing::info!(%listen, %internal, "embedded MQTT broker ready");
    Ok(Embedded { listen, internal })
}

/// rumqttd on a free loopback port; its address once it accepts connections.
fn start_rumqttd(gate: Arc<Gate>) -> Result<SocketAddr, Error> {
    let mut last = String::new();
    // The port is chosen free and handed to rumqttd, which binds it itself: another process could
    // take it in between, so a failed start is tried again on another port.
    for _ in 0..5 {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("choosing a port for the embedded broker", e))?;
        let mut broker = Broker::new(config(addr, gate.clone()));
        let (failed_tx, failed_rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                    let _ = failed_tx.send(e.to_string());
                }
            })
            .map_err(|e| Error::io("starting the embedded broker thread", e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(why) = failed_rx.try_recv() {
                last = why;
                break;
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if last.is_empty() {
            last = format!("not listening on {addr} within 10 s");
        }
    }
    Err(Error::Broker(format!(
        "the embedded broker did not start: {last}"
    )))
}

async fn serve_filtered(listener: TcpListener, internal: SocketAddr, gate: Arc<Gate>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "embedded broker: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            if let Err(why) = filter(client, internal, &gate).await {
                tracing::warn!(%peer, %why, "embedded broker: connection closed");
            }
        });
    }
}

/// The next whole packet from `from` (read into `buf`): its bytes as sent, and what it is.
async fn next_packet(
    from: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
) -> Result<Option<(BytesMut, Packet)>, String> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), MAX_PACKET) {
            Ok(header) => {
                let frame = buf.split_to(header.frame_length());
                let packet = Packet::read(&mut frame.clone(), MAX_PACKET)
                    .map_err(|e| format!("malformed packet: {e:?}"))?;
                return Ok(Some((frame, packet)));
            }
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed packet: {e:?}")),
        }
        buf.reserve(64 * 1024);
        match from.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err("closed in the middle of a packet".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// CONNACK "not authorized" (MQTT 3.1.1, return code 5).
const CONNACK_NOT_AUTHORIZED: [u8; 4] = [0x20, 0x02, 0x00, 0x05];

/// One box's connection: its login checked, then every packet it sends held to its own topics.
async fn filter(mut client: TcpStream, internal: SocketAddr, gate: &Gate) -> Result<(), String> {
    let _ = client.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, next_packet(&mut client, &mut buf))
        .await
        .map_err(|_| "no CONNECT within 10 s".to_owned())??;
    let Some((connect_frame, Packet::Connect(connect))) = first else {
        return Err("the first packet is not CONNECT".into());
    };
    let (username, password) = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or_default();
    let who = match gate.check(&connect.client_id, username, password) {
        Ok(who) => who,
        Err(why) => {
            let _ = client.write_all(&CONNACK_NOT_AUTHORIZED).await;
            return Err(format!("login refused: {why}"));
        }
    };
    let Login::Box { site, device } = who else {
        let _ = client.write_all(&CONNACK_NOT_AUTHORIZED).await;
        return Err("the hub's login is for its own port, not the boxes'".into());
    };
    let rules = Rules::new(&site, &device);
    if let Some(will) = &connect.last_will
        && !rules.may_publish(&will.topic)
    {
        let _ = client.write_all(&CONNACK_NOT_AUTHORIZED).await;
        return Err(format!("{site}/{device}: a will on {}", will.topic));
    }
    let mut upstream = TcpStream::connect(internal)
        .await
        .map_err(|e| format!("reaching the broker: {e}"))?;
    let _ = upstream.set_nodelay(true);
    upstream
        .write_all(&connect_frame)
        .await
        .map_err(|e| format!("to the broker: {e}"))?;
    let (mut up_read, mut up_write) = upstream.into_split();
    let (mut client_read, mut client_write) = client.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let result = async {
        // Every whole packet in what has been read is checked, then they go on in one write; a
        // partial packet waits in `buf` for the rest.
        loop {
            let mut checked = 0;
            while let Some(len) = rules.check_next(&buf[checked..], &site, &device)? {
                checked += len;
            }
            if checked > 0 {
                up_write
                    .write_all(&buf[..checked])
                    .await
                    .map_err(|e| format!("to the broker: {e}"))?;
                buf.advance(checked);
            }
            buf.reserve(256 * 1024);
            match client_read.read_buf(&mut buf).await {
                Ok(0) if buf.is_empty() => return Ok(()),
                Ok(0) => return Err("closed in the middle of a packet".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
    }
    .await;
    let _ = up_write.shutdown().await;
    down.abort();
    result
}

/// The topic of a whole PUBLISH packet (MQTT 3.1.1 §3.3: the fixed header, its remaining
/// length in 1–4 bytes, then the topic as a 2-byte length and UTF-8).
fn publish_topic(frame: &[u8]) -> Option<&str> {
    let mut at = 1;
    while *frame.get(at)? & 0x80 != 0 {
        at += 1;
        if at > 4 {
            return None;
        }
    }
    at += 1;
    let len = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    std::str::from_utf8(frame.get(at + 2..at + 2 + len)?).ok()
}

/// What one box may do: the rules the Mosquitto ACL generator writes for it.
struct Rules {
    prefix: String,
}

impl Rules {
    /// The length of the whole packet at the start of `bytes` if the box may send it, `None`
    /// while it is not all there yet, `Err` when it may not. A PUBLISH (nearly everything a box
    /// sends) is judged by its topic, read in place; the rare SUBSCRIBE is decoded whole.
    fn check_next(
        &self,
        bytes: &[u8],
        site: &SiteId,
        device: &DeviceId,
    ) -> Result<Option<usize>, String> {
        let header = match rumqttc::mqttbytes::check(bytes.iter(), MAX_PACKET) {
            Ok(h) => h,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
            Err(e) => return Err(format!("malformed packet: {e:?}")),
        };
        let len = header.frame_length();
        let frame = &bytes[..len];
        match frame[0] >> 4 {
            3 => {
                let topic = publish_topic(frame)
                    .ok_or_else(|| "a PUBLISH without a readable topic".to_owned())?;
                if !self.may_publish(topic) {
                    return Err(format!("{site}/{device} published on {topic}"));
                }
            }
            8 => {
                let packet = Packet::read(&mut BytesMut::from(frame), MAX_PACKET)
                    .map_err(|e| format!("malformed SUBSCRIBE: {e:?}"))?;
                if let Packet::Subscribe(sub) = packet
                    && let Some(f) = sub.filters.iter().find(|f| !self.may_subscribe(&f.path))
                {
                    return Err(format!("{site}/{device} subscribed to {}", f.path));
                }
            }
            1 => return Err("a second CONNECT".into()),
            _ => {}
        }
        Ok(Some(len))
    }

    fn new(site: &SiteId, device: &DeviceId) -> Rules {
        Rules {
            prefix: format!("sunlight/v1/{site}/{device}/"),
        }
    }

    /// `up/…` and `status` under its own prefix, with no wildcard (MQTT forbids them in topics).
    fn may_publish(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(&self.prefix) else {
            return false;
        };
        !topic.contains(['+', '#']) && (rest == "status" || rest.starts_with("up/"))
    }

    /// Filters under its own `down/`.
    fn may_subscribe(&self, filter: &str) -> bool {
        filter
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with("down/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_held_to_its_own_topics() {
        let rules = Rules::new(
            &"suixian-lishan".parse().unwrap(),
            &"box-01".parse().unwrap(),
        );
        assert!(rules.may_publish("sunlight/v1/suixian-lishan/box-01/up/batch"));
        assert!(rules.may_publish("sunlight/v1/suixian-lishan/box-01/up/cmd_result"));
        assert!(rules.may_publish("sunlight/v1/suixian-lishan/box-01/status"));
        assert!(!rules.may_publish("sunlight/v1/suixian-lishan/box-02/up/batch"));
        assert!(!rules.may_publish("sunlight/v1/suixian-lishan/box-01/down/ack"));
        assert!(!rules.may_publish("sunlight/v1/suixian-lishan/box-01/up/+"));
        assert!(!rules.may_publish("sunlight/v1/suixian-lishan/box-01"));
        assert!(rules.may_subscribe("sunlight/v1/suixian-lishan/box-01/down/#"));
        assert!(rules.may_subscribe("sunlight/v1/suixian-lishan/box-01/down/check"));
        assert!(!rules.may_subscribe("sunlight/v1/suixian-lishan/box-01/#"));
        assert!(!rules.may_subscribe("sunlight/#"));
        assert!(!rules.may_subscribe("sunlight/v1/+/+/down/#"));
        assert!(!rules.may_subscribe("sunlight/v1/suixian-lishan/box-01/up/batch"));
        assert!(!rules.may_subscribe("$share/x/sunlight/v1/suixian-lishan/box-01/down/#"));
    }

    #[test]
    fn a_publish_is_judged_by_its_topic_and_other_packets_pass() {
        let (site, device) = ("suixian-lishan".parse().unwrap(), "box-01".parse().unwrap());
        let rules = Rules::new(&site, &device);
        let encode = |topic: &str, payload: usize| {
            let mut out = BytesMut::new();
            let mut p = rumqttc::mqttbytes::v4::Publish::new(
                topic,
                rumqttc::QoS::AtLeastOnce,
                vec![7u8; payload],
            );
            p.pkid = 1;
            Packet::Publish(p).write(&mut out, MAX_PACKET).unwrap();
            out
        };
        // Payloads whose remaining length takes 1, 2 and 3 bytes.
        for payload in [10, 1000, 300_000] {
            let own = encode("sunlight/v1/suixian-lishan/box-01/up/batch", payload);
            assert_eq!(
                publish_topic(&own),
                Some("sunlight/v1/suixian-lishan/box-01/up/batch")
            );
            assert_eq!(rules.check_next(&own, &site, &device), Ok(Some(own.len())));
            assert_eq!(
                rules.check_next(&own[..own.len() - 1], &site, &device),
                Ok(None)
            );
            let other = encode("sunlight/v1/suixian-lishan/box-02/up/batch", payload);
            assert!(rules.check_next(&other, &site, &device).is_err());
        }
        let mut ping = BytesMut::new();
        Packet::PingReq.write(&mut ping, MAX_PACKET).unwrap();
        assert_eq!(rules.check_next(&ping, &site, &device), Ok(Some(2)));
        let mut sub = BytesMut::new();
        let mut s = rumqttc::mqttbytes::v4::Subscribe::new("sunlight/#", rumqttc::QoS::AtLeastOnce);
        s.pkid = 2;
        Packet::Subscribe(s).write(&mut sub, MAX_PACKET).unwrap();
        assert!(rules.check_next(&sub, &site, &device).is_err());
        assert!(publish_topic(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_none());
        assert!(publish_topic(&[0x30, 0x05, 0x00, 0x09, b'a']).is_none());
    }

    #[test]
    fn bytes_compare_equal_only_when_equal() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
    }
}
