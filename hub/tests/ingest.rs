//! Ingest in process: decode, verify, dedupe, apply and ack, with the store on a temporary file and
//! the messages handed straight to [`Ingest::apply_group`] (no broker). The end-to-end tests
//! (`tests/tests/bad_input.rs`, `faults.rs`) show the same over MQTT with real processes.

use chrono::NaiveDate;
use serde_json::json;
use std::sync::Arc;
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::ingest::{Ingest, IngestConfig, Message, Outgoing};
use sunlight_hub::metrics::Metrics;
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::store::{self, Writer};
use sunlight_hub::supervise::Supervision;
use sunlight_protocol::topics::{Channel, topic};
use sunlight_protocol::{
    BatchBuilder, DeviceId, DeviceKey, EventDraft, EventHash, GENESIS, SiteId,
};

const SITE: &str = "suixian-lishan";

/// A device's events as its outbox would hold them: seq, the hash before it, canonical bytes.
struct Chain {
    site: SiteId,
    device: DeviceId,
    key: DeviceKey,
    events: Vec<(u64, EventHash, Vec<u8>)>,
}

impl Chain {
    fn new(device: &str, n: u64) -> Chain {
        let mut c = Chain {
            site: SITE.parse().unwrap(),
            device: device.parse().unwrap(),
            key: DeviceKey::generate().unwrap(),
            events: Vec::new(),
        };
        for _ in 0..n {
            c.push(
                "punch",
                json!({"staff_id": "0451", "direction": "in", "method": "card", "source": "t1"}),
            );
        }
        c
    }

    fn push(&mut self, kind: &str, body: serde_json::Value) {
        let seq = self.events.len() as u64 + 1;
        let prev = self
            .events
            .last()
            .map(|(_, p, c)| EventHash::next(p, c))
            .unwrap_or(GENESIS);
        let canonical = match EventDraft::new(kind, "2026-11-23T08:30:00.000+08:00", &body) {
            Ok(draft) => draft.canonical(seq),
            // A body its kind's schema refuses, as an older or broken agent might send it.
            Err(_) => format!(
                "{{\"seq\":{seq},\"at\":\"2026-11-23T08:30:00.000+08:00\",\"kind\":\"{kind}\",\"body\":{body}}}"
            )
            .into_bytes(),
        };
        self.events.push((seq, prev, canonical));
    }

    fn signed_by(&self, key: &DeviceKey, seqs: &[u64]) -> Message {
        let mut b = BatchBuilder::new(&self.site, &self.device, usize::MAX);
        for s in seqs {
            let (seq, prev, canonical) = &self.events[*s as usize - 1];
            b.push(*seq, prev, canonical);
        }
        self.message(b.finish(key))
    }

    fn batch(&self, seqs: &[u64]) -> Message {
        self.signed_by(&self.key, seqs)
    }

    fn message(&self, payload: Vec<u8>) -> Message {
        Message {
            topic: topic(&self.site, &self.device, Channel::Batch),
            payload: payload.into(),
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    metrics: Arc<Metrics>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        Fixture {
            _dir: dir,
            path,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// A new ingest on a fresh write connection, as after a restart of the hub.
    fn ingest(&self) -> Ingest {
        let sup = Supervision::new(
            Arc::new(Calendar::official().unwrap()),
            HubClock::fixed(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            Arc::new(HubConfig::parse("").unwrap()),
        )
        .unwrap();
        Ingest::new(
            Writer::open(&self.path).unwrap(),
            IngestConfig::default(),
            self.metrics.clone(),
            sup,
        )
    }

    fn register(&self, chain: &Chain) {
        store::add_device(&self.path, &chain.site, &chain.device, &chain.key.public()).unwrap();
    }

    fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn events(&self, device: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM events e JOIN devices d ON d.id = e.device_id WHERE d.device = '{device}'"
        ))
    }

    fn dead_letters(&self) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        let mut stmt = conn
            .prepare("SELECT reason FROM dead_letters ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// The one ack for `chain`'s device in `acks`: (through, rejection reasons).
fn ack_for(acks: &[Outgoing], chain: &Chain) -> (u64, Vec<String>) {
    let t = topic(&chain.site, &chain.device, Channel::Ack);
    let mine: Vec<&Outgoing> = acks.iter().filter(|a| a.topic == t).collect();
    assert_eq!(mine.len(), 1, "one ack for {}: {acks:?}", chain.device);
    (
        mine[0].ack.through_seq,
        mine[0]
            .ack
            .rejected
            .iter()
            .map(|r| r.reason.clone())
            .collect(),
    )
}

fn one(ingest: &mut Ingest, m: Message, chain: &Chain) -> (u64, Vec<String>) {
    ack_for(&ingest.apply_group(&[m]), chain)
}

#[test]
fn batches_are_applied_in_order_once_and_bad_ones_are_refused_with_their_reason() {
    let f = Fixture::new();
    let mut chain = Chain::new("box-01", 6);
    f.register(&chain);
    let mut ingest = f.ingest();

    assert_eq!(
        one(&mut ingest, chain.batch(&[1, 2, 3]), &chain),
        (3, vec![])
    );
    // The same again, and part of it: stored once, acked through the batch's own end.
    assert_eq!(
        one(&mut ingest, chain.batch(&[1, 2, 3]), &chain),
        (3, vec![])
    );
    assert_eq!(one(&mut ingest, chain.batch(&[1, 2]), &chain), (2, vec![]));
    assert_eq!(f.events("box-01"), 3);

    // A gap: not applied, the ack says where to resume.
    assert_eq!(one(&mut ingest, chain.batch(&[5, 6]), &chain), (3, vec![]));
    assert_eq!(f.events("box-01"), 3);

    // Re-ordered, forged, edited after signing, chain broken by a re-signed edit.
    let (through, why) = one(&mut ingest, chain.batch(&[5, 4]), &chain);
    assert_eq!(through, 3);
    assert!(why[0].contains("not consecutive"), "{why:?}");
    let forger = DeviceKey::generate().unwrap();
    let (_, why) = one(&mut ingest, chain.signed_by(&forger, &[4]), &chain);
    assert!(why[0].contains("bad signature"), "{why:?}");
    let edited = {
        let m = chain.batch(&[4]);
        let text = String::from_utf8(m.payload.to_vec()).unwrap();
        chain.message(text.replacen("card", "face", 1).into_bytes())
    };
    let (_, why) = one(&mut ingest, edited, &chain);
    assert!(why[0].contains("bad signature"), "{why:?}");
    let tampered = {
        let mut t = Chain {
            site: chain.site.clone(),
            device: chain.device.clone(),
            key: DeviceKey::from_hex(&chain.key.to_hex()).unwrap(),
            events: chain.events.clone(),
        };
        let (s, p, c) = t.events[3].clone();
        let c = String::from_utf8(c)
            .unwrap()
            .replace("card", "face")
            .into_bytes();
        t.events[3] = (s, p, c);
        t
    };
    let (_, why) = one(&mut ingest, tampered.batch(&[4, 5]), &chain);
    assert!(why[0].contains("hash chain broken at seq 5"), "{why:?}");

    // Oversized, not JSON, not UTF-8.
    let big = [
        b"{\"v\":1,\"pad\":\"".as_slice(),
        &vec![b'x'; 300 * 1024],
        b"\"}",
    ]
    .concat();
    let (_, why) = one(&mut ingest, chain.message(big), &chain);
    assert!(why[0].contains("exceeds the limit"), "{why:?}");
    for junk in [
        b"{\"v\":1, this is not json".to_vec(),
        b"\xff\xfe\xc3\x28".to_vec(),
    ] {
        let (through, why) = one(&mut ingest, chain.message(junk), &chain);
        assert_eq!(through, 3);
        assert!(why[0].contains("not valid JSON"), "{why:?}");
    }
    assert_eq!(f.events("box-01"), 3, "nothing bad was stored");

    // The honest continuation applies; a kind from a newer agent is kept, a known kind that breaks
    // its schema is dead-lettered by seq while the chain moves on.
    assert_eq!(
        one(&mut ingest, chain.batch(&[4, 5, 6]), &chain),
        (6, vec![])
    );
    chain.push("queue_ticket", json!({"ticket": "A017"}));
    chain.push("punch", json!({"staff_id": "0451"}));
    let (through, why) = one(&mut ingest, chain.batch(&[7, 8]), &chain);
    assert_eq!(through, 8);
    assert_eq!(why.len(), 1);
    assert!(why[0].contains("direction"), "{why:?}");
    // The broken event is kept as a dead letter with its seq, not as an event.
    assert_eq!(f.events("box-01"), 7);
    assert_eq!(
        f.count("SELECT count(*) FROM dead_letters WHERE seq = 8 AND device = 'box-01'"),
        1
    );

    let dead = f.dead_letters();
    for expected in [
        "not consecutive",
        "bad signature",
        "hash chain broken",
        "exceeds the limit",
        "not valid JSON",
    ] {
        assert!(
            dead.iter().any(|r| r.contains(expected)),
            "{expected}: {dead:?}"
        );
    }
    assert!(
        f.count("SELECT count(*) FROM alarms WHERE kind = 'tamper' AND device = 'box-01'") >= 4,
        "tamper alarms for the re-order, two forgeries and the broken chain"
    );
}

#[test]
fn one_group_serves_several_boxes_and_a_bad_one_stops_nobody() {
    let f = Fixture::new();
    let a = Chain::new("box-01", 4);
    let b = Chain::new("box-02", 4);
    let stranger = Chain::new("box-77", 1);
    f.register(&a);
    f.register(&b);
    let mut ingest = f.ingest();
    let forger = DeviceKey::generate().unwrap();
    let acks = ingest.apply_group(&[
        a.batch(&[1, 2]),
        b.signed_by(&forger, &[1, 2]),
        stranger.batch(&[1]),
        a.batch(&[3, 4]),
        b.batch(&[1, 2, 3, 4]),
    ]);
    // One ack per box, after its last message in the group.
    assert_eq!(ack_for(&acks, &a), (4, vec![]));
    assert_eq!(ack_for(&acks, &b).0, 4);
    let (_, why) = ack_for(&acks, &stranger);
    assert!(why[0].contains("sunlight-hub device add"), "{why:?}");
    assert_eq!(
        (f.events("box-01"), f.events("box-02"), f.events("box-77")),
        (4, 4, 0)
    );
}

#[test]
fn after_a_restart_the_chain_head_comes_from_the_store() {
    let f = Fixture::new();
    let chain = Chain::new("box-01", 6);
    f.register(&chain);
    let mut first = f.ingest();
    assert_eq!(
        one(&mut first, chain.batch(&[1, 2, 3]), &chain),
        (3, vec![])
    );
    drop(first);
    let mut second = f.ingest();
    // The box, restarted too, sends again what the hub holds: acked, not stored twice.
    assert_eq!(one(&mut second, chain.batch(&[2, 3]), &chain), (3, vec![]));
    assert_eq!(
        one(&mut second, chain.batch(&[4, 5, 6]), &chain),
        (6, vec![])
    );
    assert_eq!(f.events("box-01"), 6);
    let seqs: Vec<i64> = {
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        let mut stmt = conn.prepare("SELECT seq FROM events ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_revoked_box_is_refused_and_keeps_nothing() {
    let f = Fixture::new();
    let chain = Chain::new("box-01", 3);
    f.register(&chain);
    let mut ingest = f.ingest();
    assert_eq!(one(&mut ingest, chain.batch(&[1]), &chain), (1, vec![]));
    store::revoke_device(&f.path, SITE, "box-01", "admin", "stolen").unwrap();
    // Revocations are read again every few seconds; a new ingest reads them at once.
    let mut ingest = f.ingest();
    let (_, why) = one(&mut ingest, chain.batch(&[2, 3]), &chain);
    assert!(why[0].contains("revoked"), "{why:?}");
    assert_eq!(f.events("box-01"), 1);
}
