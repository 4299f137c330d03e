//! Forged acks and commands on the down-link (issue "Trust nothing unsigned"): anybody on the
//! broker publishes to a box's `down/ack` and `down/cmd`. Before the down-link was sealed, one
//! retained `{"through_seq":100000}` made a box delete every event it held. Now every forgery is
//! refused, and every event the box recorded still reaches the hub exactly once.

use serde_json::json;
use std::time::Duration;
use sunlight_protocol::down::{DownKind, seal};
use sunlight_protocol::{DeviceId, DeviceKey, SiteId};
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";

/// Publishes each payload on `topic` as a broker client that is not the hub.
fn publish(port: u16, topic: &str, payloads: &[Vec<u8>], retain: bool) {
    publish_as_anybody(port, topic, payloads, retain);
}

fn ack_body(through: u64, hub_time: &str) -> Vec<u8> {
    json!({"through_seq": through, "hub_time": hub_time, "rejected": []})
        .to_string()
        .into_bytes()
}

fn refused(agent: &Agent) -> u64 {
    agent
        .status()
        .and_then(|s| s["link"]["refused_down"].as_u64())
        .unwrap_or(0)
}

fn backlog(agent: &Agent) -> (u64, u64) {
    let s = agent.status().expect("status");
    (
        s["backlog"]["events"].as_u64().unwrap_or(0),
        s["backlog"]["acked_seq"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn forged_acks_and_commands_change_nothing_and_every_event_arrives_once() {
    let dir = scratch("forged-down");
    let mosquitto = Mosquitto::start(&dir.join("mosquitto"));
    let port = mosquitto.port;
    // The hub is registered but not running yet: nothing the box sends is committed, so any ack
    // the box takes now could only delete what the hub never got.
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(port));
    let mut agent = Agent::new(
        &dir.join("box"),
        SITE,
        DEVICE,
        port,
        &hub,
        "[health]\ninterval_secs = 0\n",
    );
    agent.start();
    wait_for(Duration::from_secs(30), "the box connected", || {
        (agent.status()?["link"]["connected"] == true).then_some(())
    });
    let mut accepted = Vec::new();
    for n in 1..=20 {
        assert!(agent.punch(n));
        accepted.push(n);
    }
    // The box has sent them (to nobody): wait for its first ack timeout to pass once.
    std::thread::sleep(Duration::from_millis(2500));
    let (events, acked) = backlog(&agent);
    assert_eq!((events, acked), (20, 0));

    let (site, device) = (SiteId::new(SITE).unwrap(), DeviceId::new(DEVICE).unwrap());
    let ack_topic = format!("sunlight/v1/{SITE}/{DEVICE}/down/ack");
    let now = chrono::Utc::now().to_rfc3339();
    let hub_key = hub.down_key();
    let stranger = DeviceKey::generate().unwrap();
    let box2 = DeviceId::new("box-02").unwrap();
    let sealed = |key: &DeviceKey, device: &DeviceId, through: u64, time: &str| {
        seal(
            &[key],
            &site,
            device,
            DownKind::Ack,
            &ack_body(through, time),
        )
        .unwrap()
    };
    let forgeries = vec![
        // Protocol v1's bare ack, as the attack was made; with a forged hub time too.
        ack_body(100_000, "2031-01-01T00:00:00Z"),
        ack_body(u64::MAX, &now),
        // Sealed by a key the box does not trust.
        sealed(&stranger, &device, 10, &now),
        // Sealed by the hub, for another box.
        sealed(&hub_key, &box2, 10, &now),
        // Sealed by the hub (a hub gone wrong, or its key stolen), past what the box has sent.
        sealed(&hub_key, &device, 100_000, &now),
        sealed(&hub_key, &device, u64::MAX, &now),
        // Not JSON at all, and a command on the ack topic.
        b"\xff\xfe garbage".to_vec(),
        seal(&[&hub_key], &site, &device, DownKind::Cmd, b"{}").unwrap(),
    ];
    publish(port, &ack_topic, &forgeries, false);
    wait_for(Duration::from_secs(20), "every forged ack refused", || {
        (refused(&agent) >= forgeries.len() as u64).then_some(())
    });
    assert!(agent.proc.as_mut().is_some_and(|p| p.is_running()));
    assert_eq!(backlog(&agent), (20, 0), "a forged ack deleted events");

    // Retained forgeries wait at the broker for the box's next connect.
    publish(port, &ack_topic, &[ack_body(100_000, &now)], true);
    agent.kill9();
    agent.start();
    wait_for(
        Duration::from_secs(30),
        "the retained forgery refused",
        || (refused(&agent) >= 1).then_some(()),
    );
    for n in 21..=30 {
        assert!(agent.punch(n));
        accepted.push(n);
    }
    assert_eq!(backlog(&agent), (30, 0), "the retained ack deleted events");

    // A forged restart command: refused, the agent keeps running.
    let cmd_topic = format!("sunlight/v1/{SITE}/{DEVICE}/down/cmd");
    let restart = json!({"cmd_id": "restart-forged", "kind": "restart", "args": {},
        "expires": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()});
    let before = refused(&agent);
    publish(port, &cmd_topic, &[restart.to_string().into_bytes()], false);
    wait_for(
        Duration::from_secs(20),
        "the forged command refused",
        || (refused(&agent) > before).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.proc.as_mut().is_some_and(|p| p.is_running()));
    let log = std::fs::read_to_string(dir.join("box").join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("refused a command") && log.contains("no signature by a hub key"),
        "the refusal is logged with its reason"
    );

    // The hub comes: everything reaches it exactly once.
    hub.start();
    let events = wait_for(Duration::from_secs(60), "all 30 punches at the hub", || {
        let e = hub.events(SITE, DEVICE, "punch");
        (e.len() >= 30).then_some(e)
    });
    assert_exactly_once(&events, &accepted);
    wait_for(
        Duration::from_secs(30),
        "the box deleted what the hub acked",
        // 30 punches, and the answer to the calendar the hub sends every box it registered.
        || (backlog(&agent) == (0, 31)).then_some(()),
    );

    // A replayed genuine ack (old, with an old hub time) moves neither the acks nor the clock.
    let offset = |a: &Agent| a.status().and_then(|s| s["clock_offset_ms"].as_i64());
    let measured = offset(&agent).expect("a clock offset from the hub's acks");
    assert!(measured.abs() < 60_000, "{measured}");
    let before = refused(&agent);
    publish(
        port,
        &ack_topic,
        &[sealed(&hub_key, &device, 5, "2020-01-01T00:00:00Z")],
        false,
    );
    assert!(agent.punch(31));
    accepted.push(31);
    let events = wait_for(Duration::from_secs(30), "punch 31 at the hub", || {
        let e = hub.events(SITE, DEVICE, "punch");
        (e.len() >= 31).then_some(e)
    });
    assert_exactly_once(&events, &accepted);
    let after = offset(&agent).expect("offset");
    assert!(
        after.abs() < 60_000,
        "a replayed ack moved the clock: {after} ms"
    );
    assert_eq!(
        refused(&agent),
        before,
        "a stale genuine ack is not a forgery"
    );
    // Clear the retained forgery so the broker does not keep it.
    publish(port, &ack_topic, &[Vec::new()], true);
}

#[test]
fn the_embedded_broker_is_not_served_to_the_network_by_accident() {
    let dir = scratch("insecure-broker");
    let mut child = std::process::Command::new(bin("sunlight-hub"))
        .args(["run", "--data-dir"])
        .arg(dir.join("hub"))
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--embedded-broker", &format!("0.0.0.0:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sunlight-hub");
    let status = wait_for(Duration::from_secs(20), "the hub to refuse", || {
        child.try_wait().ok().flatten()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success());
    assert!(
        err.contains("has no TLS") && err.contains("--insecure-broker"),
        "{err}"
    );
}
