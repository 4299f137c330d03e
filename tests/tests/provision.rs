//! `sunlight-provision` against a real Mosquitto running the configuration it generates, with real
//! TLS: a box publishes only under its own topics and reads only its own commands; a client without
//! a county certificate is refused at the handshake; a revoked box is refused after the broker
//! restarts with the regenerated config and CRL; a real agent syncs to a real hub through it; and
//! the CLI refuses mistakes with a message that says what to do.
//!
//! Mosquitto (v3.1.1) drops a publish the ACL denies without telling the client, so "cannot
//! publish" is checked as absence at a subscriber holding the hub's certificate, after a positive
//! control sent later by the same client has arrived (one client's messages arrive in order).

use rumqttc::{
    Client, Connection, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, Transport,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sunlight_tests::*;

const SHANGSHI: &str = "suixian-shangshi";
const LISHAN: &str = "suixian-lishan";

fn provision(args: &[&str]) -> Output {
    Command::new(bin("sunlight-provision"))
        .args(args)
        .output()
        .expect("run sunlight-provision")
}

/// Runs the CLI, asserts success, returns stdout.
fn ok(args: &[&str]) -> String {
    let out = provision(args);
    assert!(
        out.status.success(),
        "sunlight-provision {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the CLI, asserts failure (exit 1 or a usage error), returns stderr.
fn refused(args: &[&str]) -> String {
    let out = provision(args);
    assert!(
        !out.status.success(),
        "sunlight-provision {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A county CA with boxes, and a Mosquitto config generated for them.
struct County {
    ca: PathBuf,
    broker_out: PathBuf,
    persistence: PathBuf,
    port: u16,
}

impl County {
    /// `init`, then certificates for shangshi/box-01 (key made here), shangshi/box-02 (CSR made
    /// "on the box") and lishan/box-01 (the same device id at another site), and shangshi/box-04
    /// which has a certificate but is not in the device list; then `broker-config mosquitto`.
    fn new(dir: &Path) -> County {
        let ca = dir.join("ca");
        ok(&[
            "init",
            "--dir",
            s(&ca),
            "--county",
            "随县",
            "--hub-host",
            "localhost,127.0.0.1",
        ]);
        for (site, device) in [
            (SHANGSHI, "box-01"),
            (LISHAN, "box-01"),
            (SHANGSHI, "box-04"),
        ] {
            ok(&[
                "device",
                "cert",
                "--dir",
                s(&ca),
                "--site",
                site,
                "--device",
                device,
            ]);
        }
        // box-02 makes its own key and a request; only the request travels.
        let box02 = dir.join("box-02-on-the-box");
        std::fs::create_dir_all(&box02).expect("box dir");
        let csr = make_csr(&box02, "suixian-shangshi.box-02");
        let box_key = std::fs::read(box02.join("box.key")).expect("box key");
        let out = ok(&[
            "device",
            "cert",
            "--dir",
            s(&ca),
            "--site",
            SHANGSHI,
            "--device",
            "box-02",
            "--csr",
            s(&csr),
            "--out",
            s(&box02),
        ]);
        assert!(out.contains("no key here"), "{out}");
        assert!(box02.join("box.pem").exists());
        assert_eq!(
            std::fs::read(box02.join("box.key")).expect("box key"),
            box_key,
            "the box's own key was touched"
        );

        let devices = dir.join("devices.toml");
        std::fs::write(
            &devices,
            format!(
                "[[devices]]\nsite = \"{SHANGSHI}\"\ndevice = \"box-01\"\n\
                 [[devices]]\nsite = \"{SHANGSHI}\"\ndevice = \"box-02\"\n\
                 [[devices]]\nsite = \"{LISHAN}\"\ndevice = \"box-01\"\n\
                 [[devices]]\nsite = \"{SHANGSHI}\"\ndevice = \"box-03\"\n"
            ),
        )
        .expect("devices file");
        let port = free_port();
        let broker_out = dir.join("broker");
        let persistence = dir.join("mosquitto-data");
        let out = ok(&[
            "broker-config",
            "mosquitto",
            "--dir",
            s(&ca),
            "--devices",
            s(&devices),
            "--out",
            s(&broker_out),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--persistence-dir",
            s(&persistence),
        ]);
        assert!(out.contains("for 4 boxes"), "{out}");
        assert!(
            out.contains("suixian-shangshi/box-03 is listed but has no certificate"),
            "{out}"
        );
        County {
            ca,
            broker_out,
            persistence,
            port,
        }
    }

    fn device_files(&self, site: &str, device: &str) -> (PathBuf, PathBuf) {
        let d = self.ca.join("devices").join(site).join(device);
        (d.join("box.pem"), d.join("box.key"))
    }

    fn hub_files(&self) -> (PathBuf, PathBuf) {
        (
            self.ca.join("hub").join("hub.pem"),
            self.ca.join("hub").join("hub.key"),
        )
    }

    fn ca_pem(&self) -> PathBuf {
        self.ca.join("ca.pem")
    }
}

/// A key and a certificate request made with rcgen, as a box would with openssl.
fn make_csr(dir: &Path, cn: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate().expect("box key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).expect("csr");
    std::fs::write(dir.join("box.key"), key.serialize_pem()).expect("write key");
    let path = dir.join("box.csr");
    std::fs::write(&path, csr.pem().expect("csr pem")).expect("write csr");
    path
}

/// Mosquitto running `out/mosquitto.conf` exactly as generated.
struct Broker {
    out: PathBuf,
    persistence: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl Broker {
    fn start(county: &County) -> Broker {
        let mut b = Broker {
            out: county.broker_out.clone(),
            persistence: county.persistence.clone(),
            port: county.port,
            proc: None,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        std::fs::create_dir_all(&self.persistence).expect("persistence dir");
        hand_to_mosquitto_user(&[&self.out, &self.persistence]);
        let mut cmd = Command::new(mosquitto_exe());
        cmd.arg("-c").arg(self.out.join("mosquitto.conf"));
        self.proc = Some(Proc::spawn(&mut cmd, self.log_path()));
        wait_for(Duration::from_secs(10), "mosquitto's TLS listener", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn log_path(&self) -> PathBuf {
        self.out.parent().expect("parent").join("mosquitto.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// Run as root, Mosquitto drops to the `mosquitto` user before reading its key, as on a Debian
/// broker: give it the files as the docs tell the operator to (`chown mosquitto: server.key`).
fn hand_to_mosquitto_user(paths: &[&Path]) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_user = Command::new("id")
        .arg("mosquitto")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if root && has_user {
        for p in paths {
            let st = Command::new("chown")
                .arg("-R")
                .arg("mosquitto:")
                .arg(p)
                .status()
                .expect("chown");
            assert!(st.success(), "chown {}", p.display());
        }
    }
}

/// An MQTT client over TLS with the county CA and optionally a client certificate.
struct Mqtt {
    client: Client,
    conn: Connection,
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Connects and waits for the CONNACK; `Err` with the error when the broker refuses.
fn connect(
    id: &str,
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Mqtt, String> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true);
    let client_auth = identity.map(|(cert, key)| (read(cert), read(key)));
    opts.set_transport(Transport::tls(read(ca), client_auth, None));
    let (client, mut conn) = Client::new(opts, 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(Mqtt { client, conn }),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(format!("{e:?}")),
            Err(_) => break,
        }
    }
    Err("no CONNACK within 10 s".into())
}

impl Mqtt {
    /// Publishes at QoS 1 and waits for the broker's PUBACK (which Mosquitto sends also for a
    /// publish its ACL drops).
    fn publish(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .expect("queue publish");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no PUBACK for {topic}");
            match self.conn.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
                Ok(Ok(_)) => {}
                other => panic!("publishing to {topic}: {other:?}"),
            }
        }
    }

    /// Subscribes to `filters` (waiting for the SUBACKs) and hands every message received from
    /// then on to a channel.
    fn listen(mut self, filters: &[&str]) -> Listener {
        for f in filters {
            self.client
                .subscribe(*f, QoS::AtLeastOnce)
                .expect("queue subscribe");
        }
        let mut codes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while codes.len() < filters.len() {
            assert!(Instant::now() < deadline, "no SUBACK for {filters:?}");
            match self.conn.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => codes.extend(ack.return_codes),
                Ok(Ok(_)) => {}
                other => panic!("subscribing to {filters:?}: {other:?}"),
            }
        }
        let (tx, rx) = mpsc::channel();
        let mut conn = self.conn;
        std::thread::spawn(move || {
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = (p.topic, String::from_utf8_lossy(&p.payload).into_owned());
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Listener {
            client: self.client,
            rx,
            seen: Vec::new(),
            codes,
        }
    }
}

/// Messages a subscriber received.
struct Listener {
    client: Client,
    rx: mpsc::Receiver<(String, String)>,
    seen: Vec<(String, String)>,
    codes: Vec<SubscribeReasonCode>,
}

impl Listener {
    /// Publishes at QoS 1 on the listening connection (its thread reads the PUBACK).
    fn send(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .expect("queue publish");
    }

    /// Waits until `payload` arrives on `topic`.
    fn expect(&mut self, topic: &str, payload: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.has(topic, payload) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{payload:?} on {topic} never arrived; got {:?}",
                self.seen
            );
            if let Ok(m) = self.rx.recv_timeout(left) {
                self.seen.push(m);
            }
        }
    }

    /// Collects what arrives for `d`, then asserts that no message carries `payload`.
    fn never(&mut self, payload: &str, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(m) = self.rx.recv_timeout(left) {
                self.seen.push(m);
            }
        }
        assert!(
            !self.seen.iter().any(|(_, p)| p == payload),
            "{payload:?} got through: {:?}",
            self.seen
        );
    }

    fn has(&self, topic: &str, payload: &str) -> bool {
        self.seen.iter().any(|(t, p)| t == topic && p == payload)
    }
}

fn up(site: &str, device: &str) -> String {
    format!("sunlight/v1/{site}/{device}/up/batch")
}

fn cmd(site: &str, device: &str) -> String {
    format!("sunlight/v1/{site}/{device}/down/cmd")
}

/// The hub's subscriber, with the hub's client certificate.
fn hub_listener(c: &County) -> Listener {
    let (cert, key) = c.hub_files();
    connect("hub-test", c.port, &c.ca_pem(), Some((&cert, &key)))
        .expect("the hub's certificate is accepted")
        .listen(&["sunlight/v1/+/+/up/#", "sunlight/v1/+/+/status"])
}

/// A box's client; each gets its own client id (a second connection with the same id would take
/// over the first one's session and disconnect it).
fn box_client(c: &County, site: &str, device: &str) -> Result<Mqtt, String> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (cert, key) = c.device_files(site, device);
    connect(
        &format!("test-{site}-{device}-{n}"),
        c.port,
        &c.ca_pem(),
        Some((&cert, &key)),
    )
}

#[test]
fn each_box_publishes_and_reads_only_under_its_own_topics() {
    let dir = scratch("provision-acl");
    let county = County::new(&dir);
    let broker = Broker::start(&county);
    let mut hub = hub_listener(&county);
    assert!(
        hub.codes
            .iter()
            .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
        "the hub may subscribe to every box: {:?}",
        hub.codes
    );

    // (a) box-01 publishes under its own prefix; the hub receives it.
    let mut box01 = box_client(&county, SHANGSHI, "box-01").expect("box-01 connects");
    box01.publish(&up(SHANGSHI, "box-01"), "box-01 own 1");
    hub.expect(&up(SHANGSHI, "box-01"), "box-01 own 1");
    box01.publish(&format!("sunlight/v1/{SHANGSHI}/box-01/status"), "online");
    hub.expect(&format!("sunlight/v1/{SHANGSHI}/box-01/status"), "online");

    // (b) box-01 forges under its neighbour's prefix and under the same device id at another
    // site, then sends a control under its own; the control arrives, the forgeries never do.
    box01.publish(&up(SHANGSHI, "box-02"), "forged as neighbour");
    box01.publish(&up(LISHAN, "box-01"), "forged as lishan box-01");
    box01.publish(
        &format!("sunlight/v1/{SHANGSHI}/box-02/status"),
        "forged status",
    );
    box01.publish(&up(SHANGSHI, "box-01"), "box-01 own 2");
    hub.expect(&up(SHANGSHI, "box-01"), "box-01 own 2");
    for forged in [
        "forged as neighbour",
        "forged as lishan box-01",
        "forged status",
    ] {
        hub.never(forged, Duration::from_millis(700));
    }

    // box-02's certificate was made from a CSR: its key never left "the box", and it works.
    let box02_dir = dir.join("box-02-on-the-box");
    let mut box02 = connect(
        "test-box-02",
        county.port,
        &county.ca_pem(),
        Some((&box02_dir.join("box.pem"), &box02_dir.join("box.key"))),
    )
    .expect("box-02 (CSR) connects");
    box02.publish(&up(SHANGSHI, "box-02"), "box-02 own");
    hub.expect(&up(SHANGSHI, "box-02"), "box-02 own");

    // Commands: box-01 tries to listen to everyone's and to box-02's, and to command box-02;
    // the hub commands box-02, then box-01. box-01 hears only its own, box-02 only the hub.
    // (One connection per certificate: the broker makes the CN the client id, so a second
    // connection would take the first one's place.)
    let mut box01_in = box01.listen(&[
        "sunlight/v1/+/+/down/#",
        &format!("sunlight/v1/{SHANGSHI}/box-02/down/#"),
        &format!("sunlight/v1/{SHANGSHI}/box-01/down/#"),
    ]);
    let mut box02_in = box02.listen(&[&format!("sunlight/v1/{SHANGSHI}/box-02/down/#")]);
    box01_in.send(&cmd(SHANGSHI, "box-02"), "forged command from box-01");
    // A control on the same connection, after the forgery: once the hub has it, the broker has
    // dealt with the forgery too.
    box01_in.send(&up(SHANGSHI, "box-01"), "box-01 own 3");
    hub.expect(&up(SHANGSHI, "box-01"), "box-01 own 3");
    hub.send(&cmd(SHANGSHI, "box-02"), "for box-02");
    hub.send(&cmd(SHANGSHI, "box-01"), "for box-01");
    box01_in.expect(&cmd(SHANGSHI, "box-01"), "for box-01");
    box02_in.expect(&cmd(SHANGSHI, "box-02"), "for box-02");
    box01_in.never("for box-02", Duration::from_millis(700));
    box02_in.never("forged command from box-01", Duration::from_millis(700));
    drop(broker);
}

#[test]
fn the_certificate_is_the_client_id_so_no_client_takes_another_s_session() {
    let dir = scratch("provision-client-id");
    let county = County::new(&dir);
    let broker = Broker::start(&county);
    let mut hub = hub_listener(&county);
    let mut box01 = box_client(&county, SHANGSHI, "box-01").expect("box-01 connects");
    let box02_dir = dir.join("box-02-on-the-box");
    let box02_identity = (box02_dir.join("box.pem"), box02_dir.join("box.key"));
    // box-02 asks for box-01's client id, then for the hub's: without the binding either would
    // disconnect the one it names (MQTT gives an id to the newest connection).
    for (n, id) in [
        format!("sunlight-{SHANGSHI}-box-01"),
        "hub-test".to_owned(),
        "sunlight-hub".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut box02 = connect(
            &id,
            county.port,
            &county.ca_pem(),
            Some((&box02_identity.0, &box02_identity.1)),
        )
        .expect("box-02 connects, under its own name whatever id it asks for");
        box02.publish(&up(SHANGSHI, "box-02"), &format!("box-02 as {id}"));
        hub.expect(&up(SHANGSHI, "box-02"), &format!("box-02 as {id}"));
        // box-01 and the hub are still connected: box-01's next publish reaches the hub.
        box01.publish(&up(SHANGSHI, "box-01"), &format!("box-01 still here {n}"));
        hub.expect(&up(SHANGSHI, "box-01"), &format!("box-01 still here {n}"));
    }
    drop(broker);
}

#[test]
fn strangers_are_refused_at_the_tls_handshake_and_a_certificate_alone_is_not_enough() {
    let dir = scratch("provision-tls");
    let county = County::new(&dir);
    let broker = Broker::start(&county);
    let mut hub = hub_listener(&county);

    // No client certificate.
    let bare = connect("no-cert", county.port, &county.ca_pem(), None);
    assert!(bare.is_err(), "a client without a certificate was let in");
    wait_for(
        Duration::from_secs(5),
        "the broker's log of the refusal",
        || {
            broker
                .log()
                .contains("peer did not return a certificate")
                .then_some(())
        },
    );

    // A certificate for the same site and device from another county's CA.
    let other = dir.join("other-ca");
    ok(&[
        "init",
        "--dir",
        s(&other),
        "--county",
        "别县",
        "--hub-host",
        "localhost",
    ]);
    ok(&[
        "device",
        "cert",
        "--dir",
        s(&other),
        "--site",
        SHANGSHI,
        "--device",
        "box-01",
    ]);
    let d = other.join("devices").join(SHANGSHI).join("box-01");
    let stranger = connect(
        "stranger",
        county.port,
        &county.ca_pem(),
        Some((&d.join("box.pem"), &d.join("box.key"))),
    );
    let Err(e) = stranger else {
        panic!("a certificate from another CA was let in")
    };
    assert!(!e.contains("ConnectionRefused"), "refused too late: {e}");
    wait_for(
        Duration::from_secs(5),
        "the broker's log of the refusal",
        || {
            broker
                .log()
                .contains("certificate verify failed")
                .then_some(())
        },
    );

    // box-04 has a county certificate but is not in the device list: it connects, and nothing
    // it publishes reaches the hub. box-01's control, sent after, does.
    let mut box04 = box_client(&county, SHANGSHI, "box-04").expect("box-04's TLS is fine");
    box04.publish(&up(SHANGSHI, "box-04"), "from unlisted box-04");
    let mut box01 = box_client(&county, SHANGSHI, "box-01").expect("box-01 connects");
    box01.publish(&up(SHANGSHI, "box-01"), "control");
    hub.expect(&up(SHANGSHI, "box-01"), "control");
    hub.never("from unlisted box-04", Duration::from_secs(1));
}

#[test]
fn a_revoked_box_is_refused_after_the_broker_restarts_with_the_regenerated_config() {
    let dir = scratch("provision-revoke");
    let county = County::new(&dir);
    let mut broker = Broker::start(&county);
    {
        let mut hub = hub_listener(&county);
        let mut box01 = box_client(&county, SHANGSHI, "box-01").expect("box-01 connects");
        box01.publish(&up(SHANGSHI, "box-01"), "before");
        hub.expect(&up(SHANGSHI, "box-01"), "before");
    }

    let out = ok(&[
        "revoke",
        "--dir",
        s(&county.ca),
        "--site",
        SHANGSHI,
        "--device",
        "box-01",
        "--reason",
        "stolen",
    ]);
    assert!(out.contains("suixian-shangshi/box-01 revoked"), "{out}");
    assert!(out.contains("Left out: suixian-shangshi/box-01"), "{out}");
    let acl = std::fs::read_to_string(county.broker_out.join("acl")).expect("acl");
    assert!(!acl.contains("user suixian-shangshi.box-01"), "{acl}");
    assert!(acl.contains("user suixian-lishan.box-01"), "{acl}");
    let revoked = std::fs::read_to_string(county.ca.join("revoked.toml")).expect("revoked");
    assert!(revoked.contains("stolen"), "{revoked}");
    // Revoking again changes nothing and says so.
    let again = ok(&[
        "revoke",
        "--dir",
        s(&county.ca),
        "--site",
        SHANGSHI,
        "--device",
        "box-01",
    ]);
    assert!(again.contains("already revoked"), "{again}");

    broker.restart();
    let refused_box = box_client(&county, SHANGSHI, "box-01");
    assert!(refused_box.is_err(), "the revoked box-01 was let in");
    wait_for(
        Duration::from_secs(5),
        "the broker's log of the refusal",
        || {
            broker
                .log()
                .contains("certificate verify failed")
                .then_some(())
        },
    );

    // The others are untouched, the same device id at another site included.
    let mut hub = hub_listener(&county);
    let mut lishan = box_client(&county, LISHAN, "box-01").expect("lishan's box-01 connects");
    lishan.publish(&up(LISHAN, "box-01"), "after");
    hub.expect(&up(LISHAN, "box-01"), "after");
    let box02_dir = dir.join("box-02-on-the-box");
    let mut box02 = connect(
        "test-box-02",
        county.port,
        &county.ca_pem(),
        Some((&box02_dir.join("box.pem"), &box02_dir.join("box.key"))),
    )
    .expect("box-02 connects");
    box02.publish(&up(SHANGSHI, "box-02"), "after");
    hub.expect(&up(SHANGSHI, "box-02"), "after");
}

#[test]
fn the_cli_refuses_mistakes_and_says_what_to_do() {
    let dir = scratch("provision-cli");
    let ca = dir.join("ca");
    let ca_s = s(&ca);

    // Nothing to work on yet.
    let e = refused(&[
        "device", "cert", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-01",
    ]);
    assert!(
        e.contains("holds no county CA") && e.contains("sunlight-provision init"),
        "{e}"
    );

    ok(&[
        "init",
        "--dir",
        ca_s,
        "--county",
        "随县",
        "--hub-host",
        "localhost",
    ]);
    let ca_pem = std::fs::read(ca.join("ca.pem")).expect("ca.pem");
    let e = refused(&[
        "init",
        "--dir",
        ca_s,
        "--county",
        "随县",
        "--hub-host",
        "localhost",
    ]);
    assert!(
        e.contains("already holds a county CA") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(ca.join("ca.pem")).expect("ca.pem"),
        ca_pem,
        "init twice changed the CA"
    );

    // Private keys are the owner's only.
    ok(&[
        "device", "cert", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-01",
    ]);
    #[cfg(unix)]
    for key in [
        ca.join("ca.key"),
        ca.join("hub").join("server.key"),
        ca.join("hub").join("hub.key"),
        ca.join("devices")
            .join(SHANGSHI)
            .join("box-01")
            .join("box.key"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }

    // The hub config skeleton is one the hub accepts.
    let hub_toml = ca.join("hub").join("hub.toml");
    let check = Command::new(bin("sunlight-hub"))
        .arg("check-config")
        .arg(&hub_toml)
        .output()
        .expect("sunlight-hub check-config");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A second certificate for the same box needs --force.
    let e = refused(&[
        "device", "cert", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-01",
    ]);
    assert!(
        e.contains("already has a certificate") && e.contains("--force"),
        "{e}"
    );

    // Unknown box for revoke: named, with the known ones and where to look.
    let e = refused(&[
        "revoke", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-09",
    ]);
    assert!(
        e.contains("no certificate for suixian-shangshi/box-09")
            && e.contains("suixian-shangshi/box-01")
            && e.contains("device list"),
        "{e}"
    );
    let e = refused(&[
        "revoke",
        "--dir",
        ca_s,
        "--site",
        "Suixian Shangshi",
        "--device",
        "box-01",
    ]);
    assert!(e.contains("invalid site id"), "{e}");

    // A request for another box, and one that is not a request at all.
    let box_dir = dir.join("box");
    std::fs::create_dir_all(&box_dir).expect("box dir");
    let csr = make_csr(&box_dir, "suixian-shangshi.box-07");
    let e = refused(&[
        "device",
        "cert",
        "--dir",
        ca_s,
        "--site",
        SHANGSHI,
        "--device",
        "box-02",
        "--csr",
        s(&csr),
    ]);
    assert!(
        e.contains("suixian-shangshi.box-07") && e.contains("-subj /CN=suixian-shangshi.box-02"),
        "{e}"
    );
    std::fs::write(box_dir.join("junk.csr"), "hello").expect("junk");
    let e = refused(&[
        "device",
        "cert",
        "--dir",
        ca_s,
        "--site",
        SHANGSHI,
        "--device",
        "box-02",
        "--csr",
        s(&box_dir.join("junk.csr")),
    ]);
    assert!(
        e.contains("not a valid certificate signing request") && e.contains("openssl req"),
        "{e}"
    );
    assert!(!ca.join("devices").join(SHANGSHI).join("box-02").exists());

    // Broker config: a hub data dir without a store; a hub listener open to the network.
    let e = refused(&[
        "broker-config",
        "mosquitto",
        "--dir",
        ca_s,
        "--hub-data",
        s(&dir),
    ]);
    assert!(
        e.contains("has no hub.db") && e.contains("--devices"),
        "{e}"
    );
    let devices = dir.join("devices.toml");
    std::fs::write(
        &devices,
        format!("[[devices]]\nsite = \"{SHANGSHI}\"\ndevice = \"box-01\"\n"),
    )
    .expect("devices");
    let e = refused(&[
        "broker-config",
        "mosquitto",
        "--dir",
        ca_s,
        "--devices",
        s(&devices),
        "--hub-listener",
        "0.0.0.0:1883",
    ]);
    assert!(e.contains("loopback"), "{e}");
    std::fs::write(&devices, "[[devices]]\nsite = \"x\"\n").expect("devices");
    let e = refused(&[
        "broker-config",
        "mosquitto",
        "--dir",
        ca_s,
        "--devices",
        s(&devices),
    ]);
    assert!(
        e.contains("devices.toml") && e.contains("[[devices]]"),
        "{e}"
    );

    // Revoked identities are never reissued; revoke before any broker config says what follows.
    let out = ok(&[
        "revoke", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-01",
    ]);
    assert!(out.contains("No broker config was generated"), "{out}");
    let e = refused(&[
        "device", "cert", "--dir", ca_s, "--site", SHANGSHI, "--device", "box-01", "--force",
    ]);
    assert!(e.contains("was revoked") && e.contains("box-02"), "{e}");

    // init --force starts over and keeps the old CA aside.
    let out = ok(&[
        "init",
        "--dir",
        ca_s,
        "--county",
        "随县",
        "--hub-host",
        "localhost",
        "--force",
    ]);
    assert!(out.contains("moved to"), "{out}");
    assert_ne!(std::fs::read(ca.join("ca.pem")).expect("ca.pem"), ca_pem);
    let kept = std::fs::read_dir(&ca)
        .expect("ca dir")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("replaced-"))
        .expect("the old CA was kept");
    assert_eq!(
        std::fs::read(kept.path().join("ca.pem")).expect("old ca"),
        ca_pem
    );
}

#[test]
fn a_real_box_syncs_through_the_generated_broker_to_a_real_hub() {
    let dir = scratch("provision-e2e");
    let ca = dir.join("ca");
    ok(&[
        "init",
        "--dir",
        s(&ca),
        "--county",
        "随县",
        "--hub-host",
        "127.0.0.1",
    ]);
    let certs = dir.join("certs");
    ok(&[
        "device",
        "cert",
        "--dir",
        s(&ca),
        "--site",
        SHANGSHI,
        "--device",
        "box-01",
        "--out",
        s(&certs),
    ]);
    let snippet = std::fs::read_to_string(certs.join("agent-hub.toml")).expect("snippet");
    assert!(snippet.contains("mqtts://127.0.0.1:8883"), "{snippet}");

    // The hub knows the box (its registration is the broker's device list).
    let (tls_port, local_port) = (free_port(), free_port());
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(local_port));
    let hub_section = format!(
        "[hub]\nbroker = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{c}/ca.pem\"\n\
         cert_file = \"{c}/box.pem\"\nkey_file = \"{c}/box.key\"\n",
        c = certs.display()
    );
    let mut agent =
        Agent::new_with_hub(&dir.join("box-01"), SHANGSHI, "box-01", &hub_section, &hub);

    let out_dir = dir.join("broker");
    let out = ok(&[
        "broker-config",
        "mosquitto",
        "--dir",
        s(&ca),
        "--hub-data",
        s(&hub.dir),
        "--out",
        s(&out_dir),
        "--listen",
        &format!("127.0.0.1:{tls_port}"),
        "--hub-listener",
        &format!("127.0.0.1:{local_port}"),
        "--persistence-dir",
        s(&dir.join("mosquitto-data")),
    ]);
    assert!(out.contains("for 1 box "), "{out}");
    let _broker = Broker::start(&County {
        ca: ca.clone(),
        broker_out: out_dir,
        persistence: dir.join("mosquitto-data"),
        port: tls_port,
    });
    wait_for(Duration::from_secs(10), "the hub listener", || {
        std::net::TcpStream::connect(("127.0.0.1", local_port)).ok()
    });
    hub.start();
    agent.start();
    let accepted: Vec<u64> = (0..30).filter(|n| agent.punch(*n)).collect();
    assert_eq!(accepted.len(), 30);
    wait_for(Duration::from_secs(30), "punches at the hub", || {
        (hub.events(SHANGSHI, "box-01", "punch").len() == 30).then_some(())
    });
    assert_exactly_once(&hub.events(SHANGSHI, "box-01", "punch"), &accepted);
    // The hub's acks reach the box (its backlog empties) and its status reaches the hub.
    wait_for(
        Duration::from_secs(30),
        "the box's backlog to empty",
        || {
            let st = agent.status()?;
            (st["backlog"]["events"].as_u64() == Some(0)).then_some(())
        },
    );
    wait_for(Duration::from_secs(30), "the box online at the hub", || {
        (hub.device(SHANGSHI, "box-01")?["online"] == true).then_some(())
    });
}
