//! The embedded broker's gate (decision 0016), tried as a stranger on the broker and as a box
//! trying to be another: nobody connects without a login, the hub's client id cannot be taken, a
//! box is held to its own topics, a revoked box is refused at its next login — and through all
//! of it, every event of the real box reaches the hub once.

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use std::time::{Duration, Instant};
use sunlight_protocol::{DeviceId, DeviceKey, SiteId, login};
use sunlight_tests::*;

const SITE: &str = "suixian-lishan";

/// Something a box tries on its connection.
type Attempt = Box<dyn Fn(&mut Probe) -> Result<(), String>>;

/// A raw MQTT client of the test's own.
struct Probe {
    client: Client,
    conn: Connection,
}

impl Probe {
    /// Connects and waits for a successful CONNACK; `Err` with what happened instead.
    fn connect(
        port: u16,
        client_id: &str,
        login: Option<(String, String)>,
    ) -> Result<Probe, String> {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(true);
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        let (client, mut conn) = Client::new(opts, 16);
        match next(&mut conn) {
            Ok(Packet::ConnAck(ack)) if ack.code == rumqttc::ConnectReturnCode::Success => {
                Ok(Probe { client, conn })
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e),
        }
    }

    /// Subscribes and waits for the SUBACK; `Err` when the connection ends instead.
    fn subscribe(&mut self, filter: &str) -> Result<(), String> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .map_err(|e| e.to_string())?;
        loop {
            match next(&mut self.conn)? {
                Packet::SubAck(_) => return Ok(()),
                _ => continue,
            }
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK; `Err` when the connection ends instead.
    fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .map_err(|e| e.to_string())?;
        loop {
            match next(&mut self.conn)? {
                Packet::PubAck(_) => return Ok(()),
                _ => continue,
            }
        }
    }
}

/// The next packet from the broker within 10 s; `Err` on a connection error or silence.
fn next(conn: &mut Connection) -> Result<Packet, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(Event::Incoming(p))) => return Ok(p),
            Ok(Ok(Event::Outgoing(_))) => continue,
            Ok(Err(e)) => return Err(format!("connection ended: {e}")),
            Err(_) => break,
        }
    }
    Err("nothing from the broker within 10 s".into())
}

fn box_login(key: &DeviceKey, device: &str) -> (String, String) {
    let site: SiteId = SITE.parse().expect("site");
    let device: DeviceId = device.parse().expect("device");
    (
        login::username(&site, &device),
        login::password(key, &site, &device),
    )
}

fn client_id(device: &str) -> String {
    format!("sunlight-{SITE}-{device}")
}

#[test]
fn strangers_and_other_boxes_get_nothing_from_the_embedded_broker() {
    let dir = scratch("broker-gate");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let port = hub.mqtt_port();
    let mut agent = Agent::new(&dir.join("box-01"), SITE, "box-01", port, &hub, "");
    agent.start();
    wait_for(Duration::from_secs(30), "box-01 connected", || {
        (agent.status()?["link"]["connected"] == true).then_some(())
    });
    let post = |agent: &Agent, n: u64| {
        let (status, body) = agent.post(&punch_event(n)).expect("intake answers");
        assert_eq!(status, 201, "{body}");
    };
    post(&agent, 1);
    wait_for(
        Duration::from_secs(30),
        "the first punch at the hub",
        || (hub.events(SITE, "box-01", "punch").len() == 1).then_some(()),
    );

    // A stranger: no login, a made-up login, box-01's name with a wrong key.
    let stranger = DeviceKey::generate().expect("key");
    for (id, login) in [
        ("anybody".to_owned(), None),
        (
            "anybody".to_owned(),
            Some(("admin".to_owned(), "admin".to_owned())),
        ),
        (client_id("box-01"), Some(box_login(&stranger, "box-01"))),
    ] {
        let refused = Probe::connect(port, &id, login.clone());
        assert!(refused.is_err(), "{id} {login:?} connected");
    }
    // The hub's client id, with no login, the hub's username and a guess, or a box's own login.
    let box02 = DeviceKey::generate().expect("key");
    hub.register(SITE, "box-02", &box02.public().to_base64());
    for login in [
        None,
        Some(("sunlight-hub".to_owned(), "0".repeat(64))),
        Some(box_login(&box02, "box-02")),
    ] {
        assert!(
            Probe::connect(port, "sunlight-hub", login.clone()).is_err(),
            "took the hub's client id with {login:?}"
        );
    }
    // box-02 with its own login but box-01's client id (it would kick box-01 off).
    assert!(
        Probe::connect(
            port,
            &client_id("box-01"),
            Some(box_login(&box02, "box-02"))
        )
        .is_err()
    );

    // box-02, logged in properly, may do what its ACL allows...
    let status_topic = format!("sunlight/v1/{SITE}/box-02/status");
    let mut b2 = Probe::connect(
        port,
        &client_id("box-02"),
        Some(box_login(&box02, "box-02")),
    )
    .expect("box-02 logs in");
    b2.subscribe(&format!("sunlight/v1/{SITE}/box-02/down/#"))
        .expect("its own down topics");
    b2.publish(&status_topic, br#"{"online":true}"#)
        .expect("its own status");
    // ...and nothing else: each try ends its connection.
    let attempts: Vec<(&str, Attempt)> = vec![
        ("read everything", Box::new(|p| p.subscribe("sunlight/#"))),
        (
            "read box-01's rosters and acks",
            Box::new(|p| p.subscribe(&format!("sunlight/v1/{SITE}/box-01/down/#"))),
        ),
        (
            "publish as box-01",
            Box::new(|p| p.publish(&format!("sunlight/v1/{SITE}/box-01/up/batch"), b"{}")),
        ),
        (
            "send box-01 a command",
            Box::new(|p| p.publish(&format!("sunlight/v1/{SITE}/box-01/down/cmd"), b"{}")),
        ),
        (
            "ack itself",
            Box::new(|p| p.publish(&format!("sunlight/v1/{SITE}/box-02/down/ack"), b"{}")),
        ),
    ];
    for (what, attempt) in attempts {
        let mut p = Probe::connect(
            port,
            &client_id("box-02"),
            Some(box_login(&box02, "box-02")),
        )
        .expect("box-02 logs in again");
        assert!(attempt(&mut p).is_err(), "box-02 could {what}");
    }
    // `sunlight-agent check`'s client id is box-02's too.
    Probe::connect(
        port,
        &format!("sunlight-check-{SITE}-box-02-4242"),
        Some(box_login(&box02, "box-02")),
    )
    .expect("the check's client id");

    // Revoked: refused at the next login.
    let out = std::process::Command::new(bin("sunlight-hub"))
        .args(["device", "revoke", "--site", SITE, "--device", "box-02"])
        .args(["--reason", "stolen", "--data-dir"])
        .arg(&hub.dir)
        .output()
        .expect("run device revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        Probe::connect(
            port,
            &client_id("box-02"),
            Some(box_login(&box02, "box-02"))
        )
        .is_err(),
        "a revoked box logged in"
    );

    // Through all of it the hub kept its session and box-01 its link: the next punches arrive,
    // and every punch is at the hub exactly once.
    for n in 2..=20 {
        post(&agent, n);
    }
    let punches = wait_for(Duration::from_secs(30), "20 punches at the hub", || {
        let p = hub.events(SITE, "box-01", "punch");
        (p.len() >= 20).then_some(p)
    });
    assert_eq!(punches.len(), 20, "{}", json!(punches));
    assert!(agent.proc.as_mut().is_some_and(|p| p.is_running()));
    let log = std::fs::read_to_string(hub.dir.join("hub.log")).expect("hub log");
    assert!(log.contains("login refused"), "the refusals are logged");
    assert!(log.contains("subscribed to sunlight/#"), "{log}");
}
