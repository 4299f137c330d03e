//! `sunlight-agent check` (issue 7): run on the box at install time, next to a running agent or
//! not, it checks everything the box needs and prints a pass/fail report a technician can
//! photograph (or `--json` for machines). Exit code 0 only when every check passed.
//!
//! What it checks: the configuration and the signing key; each configured camera (one test
//! picture, not spooled, not recorded), the USB cameras the kernel lists (`/dev/v4l/by-id`) and IP
//! cameras answering ONVIF WS-Discovery on the LAN (information only); the hub (`GET
//! /api/v1/box/time`: round trip, and the clock offset from the fastest of three, NTP-style
//! midpoint); the broker (TCP or TLS with the box's certificate, CONNACK, SUBSCRIBE to the box's own
//! `down/check` and its SUBACK, a QoS 1 PUBLISH of a random nonce to `up/check` and its PUBACK, then
//! the hub's echo of the nonce on `down/check`: a round trip through the broker's ACL both ways and
//! through the hub); free disk space for the data directory; and that the data directory and the
//! outbox are writable.
//!
//! It must not disturb a running agent: it connects to the broker with its own client id
//! (`sunlight-check-<site>-<device>-<pid>`, no last will, clean session) — never the agent's, which
//! would throw the agent off — and publishes only to `up/check`, which the hub only echoes. It writes
//! nothing into the outbox: its hash chain and sequence numbers belong to the agent's writer
//! thread, and a second writer appending from another process would race it for the chain head.
//! The outbox check takes SQLite's write lock (`BEGIN IMMEDIATE`) and gives it back with
//! `ROLLBACK`, which proves the file and its directory are writable and writes nothing.

use crate::capture::camera::Camera;
use crate::clock::Clock;
use crate::config::{AgentConfig, CameraKind, broker_address};
use crate::health::Alarms;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, Transport};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use sunlight_protocol::topics::{Channel, topic};
use sunlight_protocol::{DeviceKey, login};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// For information: does not fail the check (cameras found on the LAN, ...).
    Info,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Item {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            next: None,
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, next: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            next: Some(next.into()),
        }
    }
    fn info(name: impl Into<String>, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            status: Status::Info,
            detail: detail.into(),
            next: None,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub site: String,
    pub device: String,
    pub at: String,
    pub version: String,
    pub checks: Vec<Item>,
}

/// Settings of a check run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Free space the data directory's disk must have.
    pub min_free_mb: u64,
    /// Largest clock offset against the hub that passes.
    pub max_offset_ms: i64,
    /// Time limit of each network step.
    pub timeout: Duration,
    /// Look for ONVIF cameras on the LAN (WS-Discovery, 2 s).
    pub discover: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_free_mb: 500,
            max_offset_ms: 2000,
            timeout: Duration::from_secs(10),
            discover: true,
        }
    }
}

/// A report that the configuration could not even be read.
pub fn config_failed(path: &Path, error: &str) -> Report {
    Report {
        ok: false,
        site: "?".into(),
        device: "?".into(),
        at: chrono::Utc::now().to_rfc3339(),
        version: crate::VERSION.into(),
        checks: vec![Item::fail(
            "config",
            format!("{}: {error}", path.display()),
            "fix the file (every option: /usr/share/doc/sunlight-agent/agent.example.toml), or enroll the box: sunlight-agent enroll",
        )],
    }
}

/// Runs every check; `progress` is told what is being checked (for a terminal).
pub async fn run(
    config: &AgentConfig,
    config_path: &Path,
    options: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Report {
    let tz = config.tz().unwrap_or(chrono_tz::Asia::Shanghai);
    let clock = Clock::new(tz);
    let mut checks = vec![Item::pass(
        "config",
        format!(
            "{} ({}/{})",
            config_path.display(),
            config.site,
            config.device
        ),
    )];
    progress("signing key");
    let key = crate::run::load_key(&config.key_path());
    checks.push(match &key {
        Ok(key) => Item::pass(
            "key",
            format!(
                "{} (public key {})",
                config.key_path().display(),
                key.public()
            ),
        ),
        Err(e) => Item::fail(
            "key",
            e.to_string(),
            "enroll this box (sunlight-agent enroll) or create the key: sunlight-agent init",
        ),
    });
    checks.push(match config.hub.verifying_keys.len() {
        0 => Item::fail(
            "hub keys",
            "[hub] verifying_keys is empty: this box refuses every ack and command, so it deletes nothing and runs no command",
            "add the line 'sunlight-hub hub-key show' prints on the hub (enrollment writes it)",
        ),
        n => Item::pass(
            "hub keys",
            format!("{n} hub key(s): acks and commands are taken only when sealed by the hub"),
        ),
    });
    checks.extend(cameras(config, &clock, progress).await);
    checks.push(usb_devices());
    if options.discover {
        progress("ONVIF cameras on the LAN (2 s)");
        checks.push(
            onvif_discovery(
                WS_DISCOVERY,
                Duration::from_secs(2),
                &configured_hosts(config),
            )
            .await,
        );
    }
    progress("hub");
    checks.extend(hub(config, options).await);
    progress("broker");
    checks.push(broker(config, options, key.as_ref().ok()).await);
    progress("disk");
    checks.push(disk(&config.data_dir, options.min_free_mb));
    progress("outbox");
    checks.push(outbox(config));
    Report {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        site: config.site.to_string(),
        device: config.device.to_string(),
        at: clock.now_rfc3339(),
        version: crate::VERSION.into(),
        checks,
    }
}

/// The report as text, one line per check, each failure with its next step.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "Sunlight box check — {}/{} — {} — agent {}\n",
        report.site, report.device, report.at, report.version
    );
    let width = report
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    for c in &report.checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Info => "INFO",
        };
        out.push_str(&format!("{tag}  {:<width$}  {}\n", c.name, c.detail));
        if let Some(next) = &c.next {
            out.push_str(&format!("      {:<width$}  → next: {next}\n", ""));
        }
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    let passed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Pass)
        .count();
    if failed.is_empty() {
        out.push_str(&format!("RESULT: PASS — all {passed} checks passed\n"));
    } else {
        out.push_str(&format!(
            "RESULT: FAIL — {} failed ({}), {passed} passed\n",
            failed.len(),
            failed.join(", ")
        ));
    }
    out
}

async fn cameras(
    config: &AgentConfig,
    clock: &Clock,
    progress: &(dyn Fn(&str) + Sync),
) -> Vec<Item> {
    if config.cameras.is_empty() {
        return vec![Item::info("cameras", "none configured in agent.toml")];
    }
    let (alarms, _rx) = Alarms::new();
    let mut out = Vec::new();
    for c in &config.cameras {
        let name = format!("camera {}", c.id);
        progress(&name);
        let camera = match Camera::from_config(c) {
            Ok(camera) => camera,
            Err(e) => {
                out.push(Item::fail(
                    name,
                    e.to_string(),
                    format!(
                        "fix the [[camera]] section with id = \"{}\" in agent.toml",
                        c.id
                    ),
                ));
                continue;
            }
        };
        let start = Instant::now();
        match camera.shoot(clock, &alarms).await {
            Ok(shot) => out.push(Item::pass(
                name,
                format!(
                    "{}: test picture {}×{} JPEG, {} KB in {} ms",
                    camera.location,
                    shot.dimensions.width,
                    shot.dimensions.height,
                    shot.jpeg.len().div_ceil(1024),
                    start.elapsed().as_millis()
                ),
            )),
            Err(e) => {
                let next = match (&e, c.kind) {
                    (crate::capture::camera::CameraError::Unauthorized { .. }, _) => format!(
                        "set the camera's username and password (or password_file) of camera \"{}\" in agent.toml, as set on the camera",
                        c.id
                    ),
                    (_, CameraKind::Usb) => {
                        "check the cable and the device path (ls -l /dev/v4l/by-id/); the service user needs the video group".into()
                    }
                    _ => format!(
                        "check that the camera is powered and on this LAN (ping it) and its address/URL in agent.toml (camera \"{}\")",
                        c.id
                    ),
                };
                out.push(Item::fail(name, format!("{}: {e}", camera.location), next));
            }
        }
    }
    out
}

/// USB (V4L2) cameras the kernel lists by id.
fn usb_devices() -> Item {
    let dir = Path::new("/dev/v4l/by-id");
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| {
                let target = std::fs::canonicalize(e.path())
                    .map(|t| format!(" → {}", t.display()))
                    .unwrap_or_default();
                format!("{}{target}", e.file_name().to_string_lossy())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    if names.is_empty() {
        Item::info(
            "usb cameras",
            "none attached (/dev/v4l/by-id is empty or missing)",
        )
    } else {
        Item::info(
            "usb cameras",
            format!("{} attached: {}", names.len(), names.join("; ")),
        )
    }
}

/// WS-Discovery's multicast group and port.
const WS_DISCOVERY: &str = "239.255.255.250:3702";

/// The hosts of the IP cameras in agent.toml (`host`, or the host of `url`).
fn configured_hosts(config: &AgentConfig) -> Vec<String> {
    config
        .cameras
        .iter()
        .filter_map(|c| {
            c.host.clone().or_else(|| {
                let url = reqwest::Url::parse(c.url.as_deref()?).ok()?;
                url.host_str().map(str::to_owned)
            })
        })
        .collect()
}

/// The text between `<…XAddrs>` and `</…XAddrs>` (any namespace prefix).
fn xaddrs(text: &str) -> Option<&str> {
    let open = text.find("XAddrs>")? + "XAddrs>".len();
    let rest = &text[open..];
    Some(rest[..rest.find('<')?].trim()).filter(|a| !a.is_empty())
}

/// ONVIF WS-Discovery: a Probe for network video transmitters sent to `to` (the multicast group
/// on a box); lists who answers, and which of them agent.toml does not name yet.
async fn onvif_discovery(to: &str, wait: Duration, configured: &[String]) -> Item {
    let name = "onvif";
    let socket = match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
        Ok(s) => s,
        Err(e) => return Item::info(name, format!("WS-Discovery not possible here: {e}")),
    };
    let mut id = [0u8; 16];
    let _ = getrandom::getrandom(&mut id);
    let h = hex::encode(id);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    let probe = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:w=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\">\
<e:Header><w:MessageID>uuid:{uuid}</w:MessageID><w:To e:mustUnderstand=\"true\">urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>\
<w:Action e:mustUnderstand=\"true\">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</w:Action></e:Header>\
<e:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></e:Body></e:Envelope>"
    );
    if let Err(e) = socket.send_to(probe.as_bytes(), to).await {
        return Item::info(name, format!("WS-Discovery not possible here: {e}"));
    }
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, from))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
    {
        let text = String::from_utf8_lossy(&buf[..n]);
        if !text.contains("ProbeMatch") {
            continue;
        }
        let ip = from.ip().to_string();
        let known = configured.contains(&ip)
            || xaddrs(&text).is_some_and(|a| configured.iter().any(|h| a.contains(h.as_str())));
        let mut entry = match xaddrs(&text) {
            Some(a) => format!("{ip} ({a})"),
            None => ip,
        };
        if !known {
            entry.push_str(" — not in agent.toml");
        }
        if !found.contains(&entry) {
            found.push(entry);
        }
    }
    if found.is_empty() {
        Item::info(
            name,
            format!(
                "no ONVIF camera answered WS-Discovery within {} s",
                wait.as_secs()
            ),
        )
    } else {
        Item::info(
            name,
            format!(
                "{} answered WS-Discovery: {}",
                found.len(),
                found.join("; ")
            ),
        )
    }
}

/// The hub's HTTP API: round trip and clock offset.
async fn hub(config: &AgentConfig, options: &Options) -> Vec<Item> {
    let Some(api) = &config.hub.api else {
        return vec![Item::fail(
            "hub",
            "hub.api is not set in agent.toml",
            "set [hub] api = \"https://<the county hub>\" (as printed at enrollment); snapshots and logs go there",
        )];
    };
    let client = match crate::sync::upload::client(&config.hub) {
        Ok(c) => c,
        Err(e) => {
            return vec![Item::fail(
                "hub",
                e.to_string(),
                "check hub.ca_file / cert_file / key_file in agent.toml",
            )];
        }
    };
    let url = format!("{}/api/v1/box/time", api.trim_end_matches('/'));
    let mut best: Option<(i64, i64)> = None; // (rtt, offset)
    let mut error = None;
    for _ in 0..3 {
        let t0 = chrono::Utc::now().timestamp_millis();
        let answer = client.get(&url).timeout(options.timeout).send().await;
        let answer = match answer {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
            Ok(r) => {
                error = Some(format!("{url} answered HTTP {}", r.status()));
                continue;
            }
            Err(e) => {
                error = Some(format!("{url}: {}", crate::sync::upload::chain(&e)));
                continue;
            }
        };
        let t1 = chrono::Utc::now().timestamp_millis();
        let Some(hub_ms) = answer.and_then(|v| v["hub_time_ms"].as_i64()) else {
            error = Some(format!(
                "{url} did not answer the hub's time (is it a Sunlight hub?)"
            ));
            continue;
        };
        let (rtt, offset) = (t1 - t0, hub_ms - (t0 + t1) / 2);
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
    }
    let Some((rtt, offset)) = best else {
        return vec![Item::fail(
            "hub",
            error.unwrap_or_else(|| format!("{url}: no answer")),
            "check hub.api in agent.toml and the office's network (DNS, firewall, the county link); is the hub running?",
        )];
    };
    let hub = Item::pass("hub", format!("{url} answered; round trip {rtt} ms"));
    let text = format!("hub − box = {offset:+} ms (± {} ms)", (rtt / 2).max(1));
    let clock = if offset.abs() <= options.max_offset_ms {
        Item::pass("clock", text)
    } else {
        Item::fail(
            "clock",
            format!("{text}: more than {} ms off", options.max_offset_ms),
            "set the box's clock from the network: timedatectl set-ntp true (or set the county's NTP server in /etc/systemd/timesyncd.conf)",
        )
    };
    vec![hub, clock]
}

/// The broker item from the running agent's link, when it is connected to `url`: its acks went
/// through the broker's ACL both ways. `None` when no agent runs here or it is not connected.
async fn through_running_agent(config: &AgentConfig, url: &str) -> Option<Item> {
    let status = format!("http://{}/api/v1/status", config.intake.listen);
    let live: serde_json::Value = reqwest::Client::new()
        .get(&status)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let link = &live["link"];
    if link["connected"] != true || link["broker"].as_str() != Some(url) {
        return None;
    }
    let last_ack = link["last_ack_ms"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "none since it started".into());
    Some(Item::pass(
        "broker",
        format!(
            "{url}: the running agent is connected with this box's certificate (last ack {last_ack}); \
             no second connection is made, since the broker gives the certificate's name as client id \
             to one connection only"
        ),
    ))
}

/// The broker: connect as this box (its certificate), SUBACK on its own down topic, PUBACK.
async fn broker(config: &AgentConfig, options: &Options, key: Option<&DeviceKey>) -> Item {
    let name = "broker";
    let url = &config.hub.broker;
    let (tls, host, port) = match broker_address(url) {
        Ok(a) => a,
        Err(e) => return Item::fail(name, e, "fix hub.broker in agent.toml"),
    };
    // With its certificate, the box's identity is its client id at the county broker
    // (use_username_as_clientid): a second connection would take the running agent's place, and
    // the agent would take it back. The running agent's own link is the round trip then.
    if tls && config.hub.cert_file.is_some() {
        if let Some(item) = through_running_agent(config, url).await {
            return item;
        }
    }
    let client_id = format!(
        "{}{}",
        login::check_client_id_prefix(&config.site, &config.device),
        std::process::id()
    );
    let mut opts = MqttOptions::new(client_id, host.clone(), port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    if let Some(key) = key {
        opts.set_credentials(
            login::username(&config.site, &config.device),
            login::password(key, &config.site, &config.device),
        );
    }
    if tls {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let ca = match config.hub.ca_file.as_ref().map(read).transpose() {
            Ok(ca) => ca.unwrap_or_default(),
            Err(e) => {
                return Item::fail(
                    name,
                    e,
                    "hub.ca_file must be the county CA (ca.pem from enrollment)",
                );
            }
        };
        let client_auth = match (&config.hub.cert_file, &config.hub.key_file) {
            (Some(c), Some(k)) => match (read(c), read(k)) {
                (Ok(c), Ok(k)) => Some((c, k)),
                (Err(e), _) | (_, Err(e)) => {
                    return Item::fail(
                        name,
                        e,
                        "enroll the box again (sunlight-agent enroll) to get its certificate and key",
                    );
                }
            },
            _ => None,
        };
        opts.set_transport(Transport::tls(ca, client_auth, None));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let down = format!(
        "{}/check",
        topic(&config.site, &config.device, Channel::Cmd).trim_end_matches("/cmd")
    );
    let up = format!(
        "{}/check",
        topic(&config.site, &config.device, Channel::Batch).trim_end_matches("/batch")
    );
    let start = Instant::now();
    let mut connected_ms = None;
    let mut suback = None;
    let mut puback_ms = None;
    let mut published_at = None;
    let mut echo_ms = None;
    let mut nonce = [0u8; 8];
    let _ = getrandom::getrandom(&mut nonce);
    let nonce = format!("check {}", hex::encode(nonce));
    let deadline = tokio::time::Instant::now() + options.timeout;
    let failure = loop {
        let event = match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Err(_) => {
                break Some(match connected_ms {
                    None => format!("{url}: no CONNACK within {} s", options.timeout.as_secs()),
                    Some(_) if suback.is_none() => {
                        format!("{url}: no SUBACK within {} s", options.timeout.as_secs())
                    }
                    Some(_) if puback_ms.is_none() => {
                        format!("{url}: no PUBACK within {} s", options.timeout.as_secs())
                    }
                    Some(_) => format!(
                        "{url}: the broker took the test message (PUBACK) but no echo came back on {down} within {} s",
                        options.timeout.as_secs()
                    ),
                });
            }
            Ok(Err(e)) => break Some(format!("{url}: {e}")),
            Ok(Ok(e)) => e,
        };
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    break Some(format!(
                        "{url}: the broker refused the connection: {:?}",
                        ack.code
                    ));
                }
                connected_ms = Some(start.elapsed().as_millis());
                if let Err(e) = client.try_subscribe(down.clone(), QoS::AtLeastOnce) {
                    break Some(format!("subscribing: {e}"));
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => match ack.return_codes.first() {
                Some(rumqttc::SubscribeReasonCode::Success(qos)) => {
                    suback = Some(*qos);
                    published_at = Some(Instant::now());
                    if let Err(e) = client.try_publish(
                        up.clone(),
                        QoS::AtLeastOnce,
                        false,
                        nonce.clone().into_bytes(),
                    ) {
                        break Some(format!("publishing: {e}"));
                    }
                }
                _ => {
                    break Some(format!(
                        "{url}: the broker refused this box's subscription to {down} (its ACL does not list {}.{})",
                        config.site, config.device
                    ));
                }
            },
            Event::Incoming(Packet::PubAck(_)) => {
                puback_ms = published_at.map(|t| t.elapsed().as_millis());
            }
            Event::Incoming(Packet::Publish(p))
                if p.topic == down && p.payload[..] == *nonce.as_bytes() =>
            {
                echo_ms = published_at.map(|t| t.elapsed().as_millis());
                break None;
            }
            _ => {}
        }
    };
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    match failure {
        None => Item::pass(
            name,
            format!(
                "{url}: {} and CONNACK in {} ms; SUBACK grants QoS {} on {down}; PUBACK for {up} in {} ms; the hub's echo back in {} ms",
                if tls {
                    "TLS handshake"
                } else {
                    "TCP connect (no TLS)"
                },
                connected_ms.unwrap_or_default(),
                suback.map(|q| q as u8).unwrap_or_default(),
                puback_ms.unwrap_or_default(),
                echo_ms.unwrap_or_default()
            ),
        ),
        Some(detail) => {
            let lower = detail.to_lowercase();
            let tls_failed = lower.contains("tls")
                || lower.contains("certificate")
                || lower.contains("handshake");
            let next = if tls_failed && tls && config.hub.cert_file.is_none() {
                "the broker asks for this box's certificate and hub.cert_file / hub.key_file are not set in agent.toml: enroll the box (sunlight-agent enroll --hub URL --token T) or name the files it got".to_owned()
            } else if tls_failed {
                "the broker refused this box's certificate or the box does not trust the broker's: check hub.ca_file/cert_file/key_file; a revoked box must be enrolled again".to_owned()
            } else if puback_ms.is_some() {
                format!(
                    "ask the county operator: is the hub running and connected to the broker, and does the broker's ACL list {}.{}? (regenerate it: sunlight-provision broker-config)",
                    config.site, config.device
                )
            } else if connected_ms.is_some() {
                format!(
                    "ask the county operator to regenerate the broker config (sunlight-provision broker-config) so its ACL lists {}.{}",
                    config.site, config.device
                )
            } else {
                format!(
                    "check hub.broker in agent.toml ({host}:{port}) and that the county's broker runs and is reachable from this office (firewall, port {port})"
                )
            };
            Item::fail(name, detail, next)
        }
    }
}

/// Free space on the disk holding the data directory.
fn disk(data_dir: &Path, min_free_mb: u64) -> Item {
    let name = "disk";
    // The data directory, or its nearest existing parent (before the first run).
    let mut at = data_dir.to_path_buf();
    while !at.exists() {
        if !at.pop() {
            break;
        }
    }
    let at = std::fs::canonicalize(&at).unwrap_or(at);
    let disks = match sysinfo::Disks::new_with_refreshed_list() {
        Ok(d) => d,
        Err(e) => {
            return Item::fail(
                name,
                format!("cannot list disks: {e}"),
                "check /proc is mounted",
            );
        }
    };
    let Some(disk) = disks
        .iter()
        .filter(|d| at.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
    else {
        return Item::fail(
            name,
            format!("no disk found for {}", at.display()),
            "check that the data directory is on a mounted disk",
        );
    };
    let free_mb = disk.available_space() / (1024 * 1024);
    let text = format!(
        "{free_mb} MiB free of {} MiB on {} (for {})",
        disk.total_space() / (1024 * 1024),
        disk.mount_point().display(),
        data_dir.display()
    );
    if free_mb >= min_free_mb {
        Item::pass(name, format!("{text}; needs {min_free_mb} MiB"))
    } else {
        Item::fail(
            name,
            format!("{text}: less than the {min_free_mb} MiB the box needs"),
            "free space on that disk (old files, journal: journalctl --vacuum-size=100M) or use a larger disk; the outbox must hold days of events during outages",
        )
    }
}

/// The data directory and the outbox are writable; nothing is written into the outbox.
fn outbox(config: &AgentConfig) -> Item {
    let name = "outbox";
    let dir = &config.data_dir;
    let owner = format!(
        "run `chown -R sunlight:sunlight {}` (the service user must own it), and run the check as that user: sudo -u sunlight sunlight-agent check",
        dir.display()
    );
    if !dir.is_dir() {
        return Item::fail(
            name,
            format!("the data directory {} does not exist", dir.display()),
            "enroll the box (sunlight-agent enroll) or create it: sunlight-agent init",
        );
    }
    let probe = dir.join(format!(".check-{}", std::process::id()));
    let written = std::fs::write(&probe, b"check")
        .and_then(|()| std::fs::File::open(&probe).and_then(|f| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        return Item::fail(
            name,
            format!("cannot write in {}: {e}", dir.display()),
            owner,
        );
    }
    let path = config.outbox_path();
    if !path.exists() {
        return Item::pass(
            name,
            format!(
                "{} is writable; the outbox {} is made by the first `run`",
                dir.display(),
                path.display()
            ),
        );
    }
    let result = (|| -> Result<String, String> {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let who: (String, String) = conn
            .query_row("SELECT site, device FROM identity WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| format!("not an outbox: {e}"))?;
        if who.0 != config.site.as_str() || who.1 != config.device.as_str() {
            return Err(format!(
                "it belongs to {}/{}, this config is {}/{}",
                who.0, who.1, config.site, config.device
            ));
        }
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| format!("cannot take its write lock: {e}"))?;
        let (head, acked): (i64, i64) = conn
            .query_row("SELECT seq, acked FROM head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap_or((0, 0));
        Ok(format!(
            "{} writable (write lock taken and released, nothing written); {} events not yet acknowledged by the hub",
            path.display(),
            head - acked
        ))
    })();
    match result {
        Ok(detail) => Item::pass(name, detail),
        Err(e) => Item::fail(name, format!("{}: {e}", path.display()), owner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A camera answering WS-Discovery on a real UDP socket: a ProbeMatch naming its device
    /// service for each Probe of network video transmitters, after a line of noise.
    async fn fake_onvif_camera() -> std::net::SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let probe = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !probe.contains("Probe>") || !probe.contains("NetworkVideoTransmitter") {
                    continue;
                }
                let id = probe
                    .split_once("<w:MessageID>")
                    .and_then(|(_, r)| r.split_once('<'))
                    .map(|(id, _)| id.to_owned())
                    .unwrap_or_default();
                let _ = socket.send_to(b"not a SOAP envelope", from).await;
                let answer = format!(
                    "<?xml version=\"1.0\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://www.w3.org/2003/05/soap-envelope\" \
xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\">\
<SOAP-ENV:Header><wsa:RelatesTo>{id}</wsa:RelatesTo></SOAP-ENV:Header><SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>\
<d:Types>dn:NetworkVideoTransmitter</d:Types><d:XAddrs>http://127.0.0.1:8899/onvif/device_service</d:XAddrs>\
</d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"
                );
                let _ = socket.send_to(answer.as_bytes(), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn onvif_discovery_lists_cameras_that_answer_and_marks_those_not_configured() {
        let camera = fake_onvif_camera().await.to_string();
        let wait = Duration::from_millis(500);
        let new = onvif_discovery(&camera, wait, &[]).await;
        assert_eq!(new.status, Status::Info);
        assert_eq!(
            new.detail,
            "1 answered WS-Discovery: 127.0.0.1 (http://127.0.0.1:8899/onvif/device_service) — not in agent.toml"
        );
        let known = onvif_discovery(&camera, wait, &["127.0.0.1".to_owned()]).await;
        assert_eq!(
            known.detail,
            "1 answered WS-Discovery: 127.0.0.1 (http://127.0.0.1:8899/onvif/device_service)"
        );
        // Nobody there: said so, not a failure.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let none = onvif_discovery(
            &silent.local_addr().unwrap().to_string(),
            Duration::from_millis(300),
            &[],
        )
        .await;
        assert_eq!(none.status, Status::Info);
        assert!(
            none.detail.starts_with("no ONVIF camera answered"),
            "{}",
            none.detail
        );
    }

    #[test]
    fn xaddrs_are_read_under_any_namespace_prefix() {
        assert_eq!(
            xaddrs("<d:XAddrs> http://a/onvif </d:XAddrs>"),
            Some("http://a/onvif")
        );
        assert_eq!(xaddrs("<XAddrs></XAddrs>"), None);
        assert_eq!(xaddrs("no such element"), None);
    }

    #[test]
    fn the_report_names_each_failure_with_its_next_step_and_the_result() {
        let report = Report {
            ok: false,
            site: "suixian-shangshi".into(),
            device: "box-01".into(),
            at: "2026-11-22T10:00:00+08:00".into(),
            version: "0.1.0".into(),
            checks: vec![
                Item::pass("hub", "answered"),
                Item::fail("broker", "refused", "check hub.broker"),
                Item::info("onvif", "none"),
            ],
        };
        let text = render(&report);
        assert!(text.contains("PASS  hub     answered"), "{text}");
        assert!(
            text.contains("FAIL  broker  refused\n        ")
                && text.contains("→ next: check hub.broker"),
            "{text}"
        );
        assert!(
            text.ends_with("RESULT: FAIL — 1 failed (broker), 1 passed\n"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_data_directory_and_a_foreign_outbox_fail() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "site = \"suixian-shangshi\"\ndevice = \"box-01\"\ndata_dir = \"{}\"\n[hub]\nbroker = \"mqtt://127.0.0.1:1\"\n",
            dir.path().join("data").display()
        );
        let config = AgentConfig::parse(&text, Path::new("agent.toml")).unwrap();
        let item = outbox(&config);
        assert_eq!(item.status, Status::Fail);
        assert!(item.detail.contains("does not exist"), "{}", item.detail);
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let item = outbox(&config);
        assert_eq!(item.status, Status::Pass, "{}", item.detail);
        assert!(item.detail.contains("made by the first `run`"));
        // An outbox of another box.
        let other = crate::outbox::Outbox::open(
            &config.outbox_path(),
            &sunlight_protocol::SiteId::new("suixian-lishan").unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        drop(other);
        let item = outbox(&config);
        assert_eq!(item.status, Status::Fail);
        assert!(
            item.detail.contains("belongs to suixian-lishan/box-01"),
            "{}",
            item.detail
        );
        // Disk: an impossible minimum fails with the next step.
        let item = disk(&config.data_dir, u64::MAX / (1024 * 1024));
        assert_eq!(item.status, Status::Fail, "{}", item.detail);
        assert!(item.next.unwrap().contains("free space"));
    }
}
