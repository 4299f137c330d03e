//! Bad input on the batch topic: replayed, re-ordered, gapped, forged, edited, oversized and
//! malformed batches are refused or ignored as PROTOCOL.md says, each with a clear dead-letter
//! reason (and a tamper alarm for forgery and broken chains), while the hub keeps ingesting
//! another box's events.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;
use sunlight_protocol::topics::{Channel, topic};
use sunlight_protocol::{
    Ack, BatchBuilder, DeviceId, DeviceKey, EventDraft, EventHash, GENESIS, SiteId,
};
use sunlight_tests::*;

const SITE: &str = "suixian-lishan";

/// A forger's-eye view of a device: its key, and a chain we extend event by event.
struct Chain {
    events: Vec<(u64, EventHash, Vec<u8>)>,
}

impl Chain {
    fn new(n: u64) -> Chain {
        let mut c = Chain { events: Vec::new() };
        for _ in 0..n {
            c.push(
                "punch",
                json!({"staff_id": "0451", "direction": "in", "method": "card", "source": "t1"}),
            );
        }
        c
    }

    fn push(&mut self, kind: &str, body: Value) {
        let seq = self.events.len() as u64 + 1;
        let prev = self
            .events
            .last()
            .map(|(_, p, c)| EventHash::next(p, c))
            .unwrap_or(GENESIS);
        // Built like the outbox does, but without validation so that tests can make bad events.
        let draft = EventDraft::new(
            "punch",
            "2026-11-23T08:30:00.000+08:00",
            &json!({"staff_id": "x", "direction": "in", "method": "card", "source": "t"}),
        )
        .expect("template");
        let template = String::from_utf8(draft.canonical(seq)).expect("utf8");
        let canonical = format!(
            "{{\"seq\":{seq},\"at\":\"2026-11-23T08:30:00.000+08:00\",\"kind\":{},\"body\":{}}}",
            serde_json::to_string(kind).expect("kind"),
            serde_json::to_string(&body).expect("body")
        );
        assert!(template.starts_with(&format!("{{\"seq\":{seq},")));
        self.events.push((seq, prev, canonical.into_bytes()));
    }

    fn batch(&self, key: &DeviceKey, device: &str, seqs: &[u64]) -> Vec<u8> {
        let mut b = BatchBuilder::new(
            &SiteId::new(SITE).expect("site"),
            &DeviceId::new(device).expect("device"),
            usize::MAX,
        );
        for s in seqs {
            let (seq, prev, canonical) = &self.events[*s as usize - 1];
            b.push(*seq, prev, canonical);
        }
        b.finish(key)
    }
}

struct Mqtt {
    rt: tokio::runtime::Runtime,
    client: AsyncClient,
    acks: tokio::sync::mpsc::Receiver<(String, Ack)>,
}

impl Mqtt {
    /// Connects as a box would and reads the acks the hub seals with `hub_key` (any other is
    /// dropped, as a box drops it).
    fn connect(port: u16, name: &str, hub_key: sunlight_protocol::PublicKey) -> Mqtt {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut opts = MqttOptions::new(format!("forger-{name}"), "127.0.0.1", port);
        opts.set_max_packet_size(4 << 20, 4 << 20)
            .set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, acks) = tokio::sync::mpsc::channel(64);
        let ack_topic = format!("sunlight/v1/{SITE}/+/down/ack");
        let sub = client.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some((site, device, _)) = sunlight_protocol::topics::parse(&p.topic)
                        else {
                            continue;
                        };
                        let opened = sunlight_protocol::down::open(
                            &p.payload,
                            &[hub_key],
                            &site,
                            &device,
                            sunlight_protocol::down::DownKind::Ack,
                        );
                        if let Some(ack) = opened
                            .ok()
                            .and_then(|body| serde_json::from_slice::<Ack>(&body).ok())
                        {
                            let _ = tx.send((p.topic.clone(), ack)).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("subscribed to acks within 20 s");
        Mqtt { rt, client, acks }
    }

    /// Publishes a payload on the device's batch topic and returns the hub's ack.
    fn send(&mut self, device: &str, payload: Vec<u8>) -> Ack {
        let t = topic(
            &SiteId::new(SITE).expect("site"),
            &DeviceId::new(device).expect("device"),
            Channel::Batch,
        );
        self.rt.block_on(async {
            let ack_topic = t.replace("/up/batch", "/down/ack");
            self.client
                .publish(t, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
            loop {
                let (topic, ack) = tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
                    .await
                    .expect("an ack within 30 s")
                    .expect("ack channel");
                if topic == ack_topic {
                    return ack;
                }
            }
        })
    }
}

fn reasons(hub: &Hub) -> Vec<String> {
    hub.dead_letters()
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn bad_batches_are_refused_with_clear_reasons_and_ingest_goes_on() {
    let dir = scratch("bad-input");
    // A broker that lets anybody publish anywhere (Mosquitto without an ACL): what the hub must
    // withstand on its own. The embedded broker would refuse most of these senders at login.
    let mosquitto = Mosquitto::start(&dir.join("mosquitto"));
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(mosquitto.port));
    hub.start();
    // A real box that keeps sending during the whole test.
    let mut good = Agent::new(
        &dir.join("box-01"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "",
    );
    good.start();
    // The device the test speaks for.
    let key = DeviceKey::generate().expect("key");
    hub.register(SITE, "box-09", &key.public().to_base64());
    let mut mqtt = Mqtt::connect(hub.mqtt_port(), "box-09", hub.down_key().public());
    let mut chain = Chain::new(6);
    let mut posted = Vec::new();
    let mut post = |n: u64| {
        assert!(good.punch(n));
        posted.push(n);
    };

    post(1);
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[1, 2, 3]));
    assert_eq!((ack.through_seq, ack.rejected.len()), (3, 0));

    // Replayed: nothing changes, the ack repeats.
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[1, 2, 3]));
    assert_eq!((ack.through_seq, ack.rejected.len()), (3, 0));
    assert_eq!(hub.events(SITE, "box-09", "punch").len(), 3);
    // Part of it again (a box after a restart): acked through its own end, not past it, since a
    // box refuses an ack past what it has sent.
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[1, 2]));
    assert_eq!((ack.through_seq, ack.rejected.len()), (2, 0));

    // A gap: not applied, the ack says where to resume. Not an error.
    post(2);
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[5, 6]));
    assert_eq!((ack.through_seq, ack.rejected.len()), (3, 0));

    // Re-ordered (validly signed): refused, tamper alarm.
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[5, 4]));
    assert_eq!(ack.through_seq, 3);
    assert!(
        ack.rejected[0].reason.contains("not consecutive"),
        "{:?}",
        ack.rejected
    );

    // Forged: signed with a key that is not the device's.
    let forger = DeviceKey::generate().expect("key");
    let ack = mqtt.send("box-09", chain.batch(&forger, "box-09", &[4]));
    assert!(
        ack.rejected[0].reason.contains("bad signature"),
        "{:?}",
        ack.rejected
    );

    // Edited after signing: the signature no longer matches.
    let mut edited = chain.batch(&key, "box-09", &[4]);
    let at = edited
        .windows(4)
        .position(|w| w == b"card")
        .expect("card in the batch");
    edited[at..at + 4].copy_from_slice(b"face");
    let ack = mqtt.send("box-09", edited);
    assert!(
        ack.rejected[0].reason.contains("bad signature"),
        "{:?}",
        ack.rejected
    );

    // Edited and re-signed (a stolen key): the hash chain breaks.
    let mut tampered = Chain {
        events: chain.events.clone(),
    };
    let (s, p, c) = tampered.events[3].clone();
    tampered.events[3] = (
        s,
        p,
        String::from_utf8(c)
            .expect("utf8")
            .replace("card", "face")
            .into_bytes(),
    );
    let ack = mqtt.send("box-09", tampered.batch(&key, "box-09", &[4, 5]));
    assert!(
        ack.rejected[0]
            .reason
            .contains("hash chain broken at seq 5"),
        "{:?}",
        ack.rejected
    );

    // Oversized and malformed.
    post(3);
    let big: Vec<u8> = [
        b"{\"v\":1,\"pad\":\"".as_slice(),
        &vec![b'x'; 300 * 1024],
        b"\"}",
    ]
    .concat();
    let ack = mqtt.send("box-09", big);
    assert!(
        ack.rejected[0].reason.contains("exceeds the limit"),
        "{:?}",
        ack.rejected
    );
    let ack = mqtt.send("box-09", b"{\"v\":1, this is not json".to_vec());
    assert!(
        ack.rejected[0].reason.contains("not valid JSON"),
        "{:?}",
        ack.rejected
    );
    let ack = mqtt.send("box-09", b"\xff\xfe\xc3\x28 GBK \xb0\xa1".to_vec());
    assert!(
        ack.rejected[0].reason.contains("not valid JSON"),
        "{:?}",
        ack.rejected
    );

    // The honest continuation still applies: nothing above disturbed the chain.
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[4, 5, 6]));
    assert_eq!((ack.through_seq, ack.rejected.len()), (6, 0));

    // A kind from a newer agent is stored and acked; a known kind that breaks its schema is
    // dead-lettered by seq while the chain moves on.
    chain.push("queue_ticket", json!({"ticket": "A017"}));
    chain.push("punch", json!({"staff_id": "0451"}));
    let ack = mqtt.send("box-09", chain.batch(&key, "box-09", &[7, 8]));
    assert_eq!(ack.through_seq, 8);
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].seq, Some(8));
    assert_eq!(hub.events(SITE, "box-09", "queue_ticket").len(), 1);

    // Dead letters and alarms are there for supervisors, with the reasons.
    let all = reasons(&hub);
    for expected in [
        "not consecutive",
        "bad signature",
        "hash chain broken",
        "exceeds the limit",
        "not valid JSON",
        "missing field `direction`",
    ] {
        assert!(
            all.iter().any(|r| r.contains(expected)),
            "no dead letter says {expected:?}: {all:?}"
        );
    }
    let alarms = hub.alarms();
    assert!(
        alarms.len() >= 4,
        "tamper alarms for re-order, 2 forgeries and the broken chain: {alarms:?}"
    );
    assert!(
        alarms
            .iter()
            .all(|a| a["device"] == "box-09" && a["kind"] == "tamper")
    );

    // Unknown devices are refused with the command that fixes it.
    let ack = mqtt.send("box-77", chain.batch(&key, "box-77", &[1]));
    assert!(
        ack.rejected[0].reason.contains("sunlight-hub device add"),
        "{:?}",
        ack.rejected
    );

    // The other box was never held up.
    post(4);
    let events = wait_for(Duration::from_secs(30), "box-01's punches", || {
        let e = hub.events(SITE, "box-01", "punch");
        (e.len() == posted.len()).then_some(e)
    });
    assert_exactly_once(&events, &posted);
    assert!(
        hub.proc.as_mut().is_some_and(|p| p.is_running()),
        "the hub is still running"
    );
    assert_eq!(hub.integrity(), "ok");
}
