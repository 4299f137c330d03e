//! Fault tests of the spine: whatever an agent accepted reaches the hub exactly once and in order,
//! through network cuts, broker restarts (embedded and Mosquitto), hub restarts mid-batch and
//! repeated `kill -9` of the agent. Real processes, real brokers, real SQLite files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const CONVERGE: Duration = Duration::from_secs(90);

/// Waits until the hub holds every accepted punch of `agent`, then checks exactly-once and order.
fn converge(hub: &Hub, agent: &Agent, accepted: &[u64]) -> Vec<serde_json::Value> {
    let mut sorted = accepted.to_vec();
    sorted.sort_unstable();
    let events = wait_for(CONVERGE, "every accepted punch at the hub", || {
        let events = hub.events(&agent.site, &agent.device, "punch");
        let mut have = punch_numbers(&events);
        have.sort_unstable();
        sorted
            .iter()
            .all(|n| have.binary_search(n).is_ok())
            .then_some(events)
    });
    assert_exactly_once(&events, accepted);
    events
}

fn settle_and_check_integrity(hub: &Hub, agent: &Agent) {
    // The agent deletes what the hub acked; wait for the backlog to drain, then check both files.
    wait_for(CONVERGE, "the agent's backlog to drain", || {
        let s = agent.status()?;
        (s["backlog"]["events"].as_u64()? <= 1).then_some(())
    });
    assert_eq!(hub.integrity(), "ok");
    assert_eq!(integrity(&agent.outbox()), "ok");
}

#[test]
fn events_from_several_boxes_arrive_once_in_order() {
    let dir = scratch("flow");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let mut agents: Vec<Agent> = ["box-01", "box-02"]
        .iter()
        .map(|d| Agent::new(&dir.join(d), SITE, d, hub.mqtt_port(), &hub, ""))
        .collect();
    for a in agents.iter_mut() {
        a.start();
    }
    let handles: Vec<_> = agents
        .iter()
        .map(|a| {
            let url = a.intake_url();
            let key = a.intake_key.clone();
            std::thread::spawn(move || {
                let c = intake_client(&key);
                (0..300u64)
                    .filter(|n| matches!(c.post_json(&url, &punch_event(*n)), Some((201, _))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (a, h) in agents.iter().zip(handles) {
        let accepted = h.join().expect("poster");
        assert_eq!(accepted.len(), 300, "every post was accepted");
        let events = converge(&hub, a, &accepted);
        assert_eq!(
            punch_numbers(&events),
            (0..300).collect::<Vec<_>>(),
            "order of posting is kept"
        );
    }
    let device = hub.device(SITE, "box-01").expect("device listed");
    assert_eq!(device["online"], true);
    assert!(hub.dead_letters().is_empty(), "{:?}", hub.dead_letters());
}

#[test]
fn a_network_cut_during_steady_intake_loses_and_duplicates_nothing() {
    let dir = scratch("netcut");
    let mosquitto = Mosquitto::start(&dir.join("mosquitto"));
    let proxy = FaultProxy::start(([127, 0, 0, 1], mosquitto.port).into());
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(mosquitto.port));
    hub.start();
    let mut agent = Agent::new(&dir.join("agent"), SITE, "box-01", proxy.port, &hub, "");
    agent.start();
    let stop = Arc::new(AtomicBool::new(false));
    let intake = steady_intake(
        agent.intake_url(),
        agent.intake_key.clone(),
        0,
        stop.clone(),
        Duration::from_millis(3),
    );
    for cut in [Duration::from_secs(2), Duration::from_secs(4)] {
        std::thread::sleep(Duration::from_millis(1500));
        proxy.cut();
        std::thread::sleep(cut);
        proxy.restore();
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let accepted = intake.join().expect("intake thread");
    assert!(
        accepted.len() > 500,
        "intake kept going during the cuts: {}",
        accepted.len()
    );
    let events = converge(&hub, &agent, &accepted);
    assert_eq!(punch_numbers(&events), accepted, "posting order is kept");
    settle_and_check_integrity(&hub, &agent);
}

#[test]
fn mosquitto_restart_loses_and_duplicates_nothing() {
    cut_twice_under_steady_intake("mosq-restart", |mosquitto, _| {
        mosquitto.kill9();
        std::thread::sleep(Duration::from_millis(1500));
        mosquitto.restart();
    });
}

/// Mosquitto, a hub and a box under steady intake; `cut` (a restart of one of them) runs twice,
/// each after 1.5 s of traffic: every accepted punch reaches the hub once and both stores stay
/// sound.
fn cut_twice_under_steady_intake(name: &str, mut cut: impl FnMut(&mut Mosquitto, &mut Hub)) {
    let dir = scratch(name);
    let mut mosquitto = Mosquitto::start(&dir.join("mosquitto"));
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(mosquitto.port));
    hub.start();
    let mut agent = Agent::new(&dir.join("agent"), SITE, "box-01", mosquitto.port, &hub, "");
    agent.start();
    let stop = Arc::new(AtomicBool::new(false));
    let intake = steady_intake(
        agent.intake_url(),
        agent.intake_key.clone(),
        0,
        stop.clone(),
        Duration::from_millis(3),
    );
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        cut(&mut mosquitto, &mut hub);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let accepted = intake.join().expect("intake thread");
    converge(&hub, &agent, &accepted);
    settle_and_check_integrity(&hub, &agent);
}

/// The embedded broker lives in the hub process, so restarting it is restarting the hub: this is
/// both "embedded broker restart" and "hub restart mid-batch" (killed while draining a backlog).
#[test]
fn hub_and_embedded_broker_killed_mid_drain_lose_and_duplicate_nothing() {
    let dir = scratch("hub-restart");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "",
    );
    agent.start();
    // A backlog built while the hub is down.
    let c = intake_client(&agent.intake_key);
    let batch: Vec<serde_json::Value> = (0..20_000u64).map(punch_event).collect();
    let mut accepted = Vec::new();
    for chunk in batch.chunks(1000) {
        let (status, _) = c
            .post_json(
                &agent.intake_url(),
                &serde_json::Value::Array(chunk.to_vec()),
            )
            .expect("post");
        assert_eq!(status, 201);
        accepted.extend(chunk.iter().filter_map(|e| e["body"]["n"].as_u64()));
    }
    for round in 0..3 {
        hub.start();
        // Kill it as soon as it has committed something new: mid-drain.
        wait_for(CONVERGE, "the hub to commit part of the backlog", || {
            let d = hub.device(SITE, "box-01")?;
            (d["last_seq"].as_u64()? > round * 4000).then_some(())
        });
        hub.kill9();
        std::thread::sleep(Duration::from_millis(300));
    }
    hub.start();
    converge(&hub, &agent, &accepted);
    settle_and_check_integrity(&hub, &agent);
}

#[test]
fn hub_restart_with_mosquitto_loses_and_duplicates_nothing() {
    cut_twice_under_steady_intake("hub-restart-mosq", |_, hub| {
        hub.kill9();
        std::thread::sleep(Duration::from_millis(1000));
        hub.start();
    });
}

/// `kill -9` of the agent in the middle of intake and of sync, 20 times: every punch that got a
/// 201 reaches the hub once; the outbox file stays sound.
#[test]
fn agent_killed_20_times_during_intake_and_sync_loses_nothing() {
    let dir = scratch("agent-kill");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "",
    );
    let mut accepted = Vec::new();
    let mut next = 0u64;
    for round in 0..20u64 {
        agent.start();
        let stop = Arc::new(AtomicBool::new(false));
        let posters: Vec<_> = (0..3u64)
            .map(|k| {
                steady_intake(
                    agent.intake_url(),
                    agent.intake_key.clone(),
                    next + k * 100_000,
                    stop.clone(),
                    Duration::from_millis(1),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + (round * 37) % 400));
        agent.kill9();
        stop.store(true, Ordering::Relaxed);
        for p in posters {
            accepted.extend(p.join().expect("poster"));
        }
        next += 1_000_000;
        assert_eq!(
            integrity(&agent.outbox()),
            "ok",
            "outbox sound after kill #{round}"
        );
    }
    assert!(
        accepted.len() > 100,
        "enough punches were accepted to mean something: {}",
        accepted.len()
    );
    agent.start();
    converge(&hub, &agent, &accepted);
    settle_and_check_integrity(&hub, &agent);
}
