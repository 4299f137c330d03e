//! Enrollment over the network (issue 7, decision 0006) with real processes: a county CA and the
//! hub's enrollment CA made by `sunlight-provision`, a hub enrolling with it, a real Mosquitto
//! running the config `broker-config` generates (its CRL file holding the enrollment CA's CRL), and
//! `sunlight-agent enroll` then `run` on a box.
//!
//! - a box enrolls with the printed command and syncs punches over mTLS with the certificate it got;
//!   its private keys exist only in its own data directory; the token is kept only as a hash;
//! - a box revoked at the hub is refused by the broker after the config is generated again, while
//!   another enrolled box still connects;
//! - tokens: unknown, malformed, for another box, used (by other keys), expired and replaced ones
//!   are refused (401) without being consumed by a bad request (422); a box registered with another
//!   key is refused (409); the same box asking again gets the same answer; a hub without an
//!   enrollment CA answers 503;
//! - the agent: refuses to enroll a box set up already, keeps its keys across a refused attempt and
//!   reuses them, and enrolls from an offline bundle.
//! - the enrollment CA's key cannot make a broker certificate that boxes accept (client-only EKU).
//! - over the hub's API: `sunlight-provision site add` / `device add`, the printed command enrolls a
//!   box that syncs and whose config holds the hub's update verifying key; 401/403/404/409/422.

use base64::Engine;
use rumqttc::{Client, Event, MqttOptions, Packet, Transport};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use sunlight_tests::*;

const SHANGSHI: &str = "suixian-shangshi";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(bin(exe))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {exe}: {e}"))
}

/// Runs a CLI, asserts success, returns stdout.
fn ok(exe: &str, args: &[&str]) -> String {
    let out = run(exe, args);
    assert!(
        out.status.success(),
        "{exe} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a CLI, asserts failure, returns stderr.
fn refused(exe: &str, args: &[&str]) -> String {
    let out = run(exe, args);
    assert!(
        !out.status.success(),
        "{exe} {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The county: `init`, then the hub's enrollment CA.
struct County {
    ca: PathBuf,
    enroll: PathBuf,
}

impl County {
    fn new(dir: &Path) -> County {
        let ca = dir.join("ca");
        let enroll = dir.join("hub-enroll");
        ok(
            "sunlight-provision",
            &[
                "init",
                "--dir",
                s(&ca),
                "--county",
                "随县",
                "--hub-host",
                "127.0.0.1",
            ],
        );
        let out = ok(
            "sunlight-provision",
            &["hub-signer", "--dir", s(&ca), "--out", s(&enroll)],
        );
        assert!(out.contains("enrollment CA"), "{out}");
        County { ca, enroll }
    }
}

/// Makes a token at the hub's store; returns the printed output.
fn token(hub: &Hub, county: &County, device: &str, extra: &[&str]) -> String {
    let url = format!("http://127.0.0.1:{}", hub.http);
    let mut args = vec![
        "enroll",
        "token",
        "--data-dir",
        s(&hub.dir),
        "--site",
        SHANGSHI,
        "--device",
        device,
        "--by",
        "张工",
        "--hub-url",
        &url,
        "--enroll-ca-dir",
        s(&county.enroll),
    ];
    args.extend_from_slice(extra);
    ok("sunlight-hub", &args)
}

/// The technician's command from a token's printout, without the program name.
fn printed_command(out: &str) -> Vec<String> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sunlight-agent enroll"))
        .unwrap_or_else(|| panic!("no command in:\n{out}"));
    line.split_whitespace().skip(1).map(String::from).collect()
}

/// The token in a printed command.
fn token_of(command: &[String]) -> String {
    let i = command
        .iter()
        .position(|a| a == "--token")
        .expect("--token");
    command[i + 1].clone()
}

/// A box's keys made "on the box" and its enrollment request.
struct FakeBox {
    public: String,
    tls: rcgen::KeyPair,
    csr: String,
}

impl FakeBox {
    fn new(device: &str) -> FakeBox {
        let signing = sunlight_protocol::DeviceKey::generate().expect("signing key");
        let tls = rcgen::KeyPair::generate().expect("tls key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{SHANGSHI}.{device}"));
        let csr = params
            .serialize_request(&tls)
            .and_then(|c| c.pem())
            .expect("csr");
        FakeBox {
            public: signing.public().to_base64(),
            tls,
            csr,
        }
    }

    fn request(&self, token: &str, device: &str) -> Value {
        json!({"token": token, "site": SHANGSHI, "device": device,
               "ed25519_public_key": self.public, "csr_pem": self.csr,
               "data_dir": "/var/lib/sunlight", "hub_url": "http://hub.example"})
    }
}

fn enroll_post(hub: &Hub, body: &Value) -> (u16, Value) {
    hub.post("/api/v1/enroll", body).expect("the hub answers")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// Mosquitto running the generated `mosquitto.conf` exactly as written.
struct Broker {
    out: PathBuf,
    persistence: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl Broker {
    fn start(out: &Path, persistence: &Path, port: u16) -> Broker {
        let mut b = Broker {
            out: out.to_path_buf(),
            persistence: persistence.to_path_buf(),
            port,
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
/// broker: give it the files as the docs tell the operator to.
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

/// Connects over mTLS with a certificate file (the box's certificate and its chain) and key, and
/// waits for the CONNACK; `Err` when the broker refuses.
fn mqtt_connect(id: &str, port: u16, ca: &[u8], cert: Vec<u8>, key: Vec<u8>) -> Result<(), String> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true);
    opts.set_transport(Transport::tls(ca.to_vec(), Some((cert, key)), None));
    let (_client, mut conn): (Client, _) = Client::new(opts, 10);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(()),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(format!("{e:?}")),
            Err(_) => break,
        }
    }
    Err("no CONNACK within 10 s".into())
}

fn audit_count(hub: &Hub, action: &str, target: &str) -> i64 {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("open hub.db");
    conn.query_row(
        "SELECT count(*) FROM audit WHERE action = ?1 AND target = ?2",
        [action, target],
        |r| r.get(0),
    )
    .expect("audit")
}

/// Runs an enrolled box with the config it wrote (plus this test's intake port and quick retries)
/// and posts `n` punches to it: they reach the hub over mTLS, each exactly once. Returns the
/// running agent and its intake port.
fn run_enrolled_box(
    hub: &Hub,
    config: &Path,
    box_dir: &Path,
    device: &str,
    n: usize,
) -> (Proc, u16) {
    let intake = free_port();
    let mut text = std::fs::read_to_string(config).expect("config");
    text.push_str(&format!(
        "\n[intake]\nlisten = \"127.0.0.1:{intake}\"\n[sync]\nack_timeout_ms = 2000\nbackoff_min_ms = 100\nbackoff_max_ms = 1000\n"
    ));
    std::fs::write(config, text).expect("config");
    let agent = Proc::spawn(
        Command::new(bin("sunlight-agent"))
            .arg("-c")
            .arg(config)
            .arg("run"),
        box_dir.join("agent.log"),
    );
    wait_for(Duration::from_secs(20), "the agent's intake", || {
        std::net::TcpStream::connect(("127.0.0.1", intake)).ok()
    });
    let client = intake_client(&add_intake_key(config, "harness", HARNESS_KINDS, true));
    let url = format!("http://127.0.0.1:{intake}/api/v1/events");
    let accepted: Vec<u64> = (0..n as u64)
        .filter(|n| matches!(client.post_json(&url, &punch_event(*n)), Some((201, _))))
        .collect();
    assert_eq!(accepted.len(), n);
    wait_for(
        Duration::from_secs(30),
        "punches over mTLS at the hub",
        || (hub.events(SHANGSHI, device, "punch").len() == n).then_some(()),
    );
    assert_exactly_once(&hub.events(SHANGSHI, device, "punch"), &accepted);
    (agent, intake)
}

#[test]
fn a_box_enrolls_with_the_printed_command_and_syncs_over_mtls_then_revocation_locks_it_out() {
    let dir = scratch("enroll-e2e");
    let county = County::new(&dir);
    let (tls_port, local_port) = (free_port(), free_port());
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(local_port));
    hub.extra_args = vec![
        "--enroll-ca-dir".into(),
        s(&county.enroll).into(),
        "--public-broker-url".into(),
        format!("mqtts://127.0.0.1:{tls_port}"),
    ];
    // The hub runs first (it waits for its broker, started below from the hub's registrations).
    hub.start();

    // At the county: a token for box-07, and the broker config (the box is listed, waiting).
    let printed = token(&hub, &county, "box-07", &[]);
    assert!(printed.contains("valid until"), "{printed}");
    let command = printed_command(&printed);
    assert!(command.contains(&"--ca-sha256".to_string()), "{command:?}");
    let broker_out = dir.join("broker");
    let persistence = dir.join("mosquitto-data");
    let hub_dir = hub.dir.clone();
    let broker_config = || {
        ok(
            "sunlight-provision",
            &[
                "broker-config",
                "mosquitto",
                "--dir",
                s(&county.ca),
                "--hub-data",
                s(&hub_dir),
                "--enroll-ca-dir",
                s(&county.enroll),
                "--out",
                s(&broker_out),
                "--listen",
                &format!("127.0.0.1:{tls_port}"),
                "--hub-listener",
                &format!("127.0.0.1:{local_port}"),
                "--persistence-dir",
                s(&persistence),
            ],
        )
    };
    let out = broker_config();
    assert!(
        out.contains("Waiting: suixian-shangshi/box-07 has an enrollment token"),
        "{out}"
    );
    let acl = std::fs::read_to_string(broker_out.join("acl")).expect("acl");
    assert!(acl.contains("user suixian-shangshi.box-07\n"), "{acl}");
    let mut broker = Broker::start(&broker_out, &persistence, tls_port);

    // On the box: exactly the printed command, with this test's data directory and config path.
    let box_dir = dir.join("box-07");
    let data = box_dir.join("data");
    let config = box_dir.join("agent.toml");
    let mut args: Vec<String> = vec!["-c".into(), s(&config).into()];
    args.extend(command.iter().cloned());
    args.extend(["--data-dir".into(), s(&data).into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok("sunlight-agent", &args);
    assert!(out.contains("suixian-shangshi/box-07 enrolled"), "{out}");
    assert!(out.contains("matches --ca-sha256"), "{out}");
    assert!(out.contains("Next:"), "{out}");
    for key in ["device.key", "box.key"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
    let chain = std::fs::read_to_string(data.join("box.pem")).expect("box.pem");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    assert!(!data.join("enroll.pending").exists());
    // Enrolling again without --force changes nothing.
    let err = refused("sunlight-agent", &args);
    assert!(err.contains("set up already"), "{err}");

    // The hub registered the box and audited it; the token is kept only as its hash.
    assert_eq!(
        audit_count(&hub, "device.enroll", "suixian-shangshi/box-07"),
        1
    );
    assert_eq!(
        audit_count(&hub, "enroll.token", "suixian-shangshi/box-07"),
        1
    );
    let token_text = token_of(&command);
    let raw = sunlight_hub::enroll::Token::parse(&token_text).expect("token parses");

    // Regenerated after enrollment (as the docs say): the box is in, the enrollment CA's CRL too.
    let out = broker_config();
    assert!(out.contains("for 1 box "), "{out}");
    assert!(!out.contains("Waiting"), "{out}");
    assert!(out.contains("1 of the hub's enrollment CA"), "{out}");
    let crl = std::fs::read_to_string(broker_out.join("crl.pem")).expect("crl");
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 2, "{crl}");
    broker.restart();

    // Run the box with the config it wrote.
    let (mut agent, intake) = run_enrolled_box(&hub, &config, &box_dir, "box-07", 20);
    let client = http::Client::new();
    wait_for(
        Duration::from_secs(30),
        "the box's backlog to empty",
        || {
            let st = client.get_json(&format!("http://127.0.0.1:{intake}/api/v1/status"))?;
            (st["backlog"]["events"].as_u64() == Some(0)).then_some(())
        },
    );
    wait_for(Duration::from_secs(30), "the box online at the hub", || {
        (hub.device(SHANGSHI, "box-07")?["online"] == true).then_some(())
    });

    // The box's private keys are on the box only: nothing of them at the hub or in its
    // enrollment directory, no private key at all in the hub's data, and no token in clear.
    let seed = std::fs::read_to_string(data.join("device.key")).expect("seed");
    let seed = seed.trim();
    let tls_key = std::fs::read_to_string(data.join("box.key")).expect("box.key");
    let tls_body: String = tls_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let tls_der = base64::engine::general_purpose::STANDARD
        .decode(&tls_body)
        .expect("key base64");
    // The private scalar of the P-256 key: ECPrivateKey { version 1, OCTET STRING (32) ... }.
    let at = tls_der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an EC private key")
        + 5;
    let scalar = &tls_der[at..at + 32];
    for f in files_under(&hub.dir)
        .into_iter()
        .chain(files_under(&county.enroll))
    {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for (what, needle) in [
            ("the signing key", seed.as_bytes()),
            ("the TLS key", scalar),
            ("the TLS key (PEM)", tls_body.as_bytes()),
            ("the token", token_text.as_bytes()),
        ] {
            assert!(!contains(&bytes, needle), "{what} found in {}", f.display());
        }
        if f.starts_with(&hub.dir) {
            assert!(
                !contains(&bytes, b"PRIVATE KEY"),
                "a private key in the hub's data: {}",
                f.display()
            );
        }
    }
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("hub.db");
    let stored: Vec<u8> = conn
        .query_row(
            "SELECT token_sha256 FROM enroll_tokens WHERE device = 'box-07'",
            [],
            |r| r.get(0),
        )
        .expect("token row");
    assert_eq!(stored, raw.hash().to_vec());

    // A second box enrolled through the API directly, with its certificate and chain.
    let out = token(&hub, &county, "box-08", &[]);
    let b8 = FakeBox::new("box-08");
    let (status, answer) = enroll_post(
        &hub,
        &b8.request(&token_of(&printed_command(&out)), "box-08"),
    );
    assert_eq!(status, 200, "{answer}");
    let b8_cert = format!(
        "{}{}",
        answer["certificate_pem"].as_str().expect("cert"),
        answer["chain_pem"].as_str().expect("chain")
    );
    let ca_pem = std::fs::read(county.ca.join("ca.pem")).expect("ca");

    // Stolen: revoked at the hub, the broker config generated again, the broker restarted.
    agent.kill9();
    ok(
        "sunlight-hub",
        &[
            "device",
            "revoke",
            "--data-dir",
            s(&hub.dir),
            "--site",
            SHANGSHI,
            "--device",
            "box-07",
            "--reason",
            "stolen",
        ],
    );
    let out = broker_config();
    assert!(
        out.contains("Left out: suixian-shangshi/box-07 is revoked"),
        "{out}"
    );
    let acl = std::fs::read_to_string(broker_out.join("acl")).expect("acl");
    assert!(!acl.contains("user suixian-shangshi.box-07"), "{acl}");
    assert!(acl.contains("user suixian-shangshi.box-08"), "{acl}");
    broker.restart();
    let box07 = mqtt_connect(
        "test-box-07",
        tls_port,
        &ca_pem,
        std::fs::read(data.join("box.pem")).expect("cert"),
        std::fs::read(data.join("box.key")).expect("key"),
    );
    assert!(box07.is_err(), "the revoked box-07 was let in");
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
    mqtt_connect(
        "test-box-08",
        tls_port,
        &ca_pem,
        b8_cert.into_bytes(),
        b8.tls.serialize_pem().into_bytes(),
    )
    .expect("box-08, enrolled and not revoked, still connects");
}

#[test]
fn tokens_are_one_time_for_one_box_and_refusals_say_why() {
    let dir = scratch("enroll-tokens");
    let county = County::new(&dir);
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.extra_args = vec!["--enroll-ca-dir".into(), s(&county.enroll).into()];
    hub.start();
    let tok = |device: &str| token_of(&printed_command(&token(&hub, &county, device, &[])));
    let t1 = tok("box-01");
    let box1 = FakeBox::new("box-01");

    // Not a token; a token this hub never made; another box's token.
    let (status, body) = enroll_post(&hub, &box1.request("hello", "box-01"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_malformed")),
        "{body}"
    );
    let stranger = sunlight_hub::enroll::Token::generate()
        .expect("token")
        .to_string();
    let (status, body) = enroll_post(&hub, &box1.request(&stranger, "box-01"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_unknown")),
        "{body}"
    );
    let (status, body) = enroll_post(&hub, &box1.request(&t1, "box-02"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_other_box")),
        "{body}"
    );
    assert!(
        !body["error"].as_str().unwrap_or("").contains("box-01"),
        "{body}"
    );
    // A bad request does not use the token up.
    let mut bad = box1.request(&t1, "box-01");
    bad["csr_pem"] =
        json!("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n");
    let (status, body) = enroll_post(&hub, &bad);
    assert_eq!(
        (status, body["reason"].as_str()),
        (422, Some("bad_csr")),
        "{body}"
    );

    // The box enrolls; asking again with the same keys gets the same answer.
    let (status, first) = enroll_post(&hub, &box1.request(&t1, "box-01"));
    assert_eq!(status, 200, "{first}");
    for field in [
        "certificate_pem",
        "chain_pem",
        "ca_pem",
        "broker_url",
        "agent_config_toml",
    ] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {first}"
        );
    }
    assert_eq!(first["broker_url"], "mqtts://127.0.0.1:8883");
    let config = first["agent_config_toml"].as_str().unwrap_or("");
    assert!(
        config.contains("cert_file = \"/var/lib/sunlight/box.pem\""),
        "{config}"
    );
    assert!(config.contains("api = \"http://hub.example\""), "{config}");
    let (status, again) = enroll_post(&hub, &box1.request(&t1, "box-01"));
    assert_eq!((status, &again["repeated"]), (200, &json!(true)), "{again}");
    assert_eq!(again["serial"], first["serial"]);
    assert!(hub.device(SHANGSHI, "box-01").is_some());
    // Someone else with the used token is refused.
    let (status, body) = enroll_post(&hub, &FakeBox::new("box-01").request(&t1, "box-01"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_used")),
        "{body}"
    );
    assert_eq!(
        audit_count(&hub, "device.enroll", "suixian-shangshi/box-01"),
        1
    );
    // A registered box gets no new token: a replaced box is a new device id.
    let err = refused(
        "sunlight-hub",
        &[
            "enroll",
            "token",
            "--data-dir",
            s(&hub.dir),
            "--site",
            SHANGSHI,
            "--device",
            "box-01",
            "--by",
            "张工",
            "--hub-url",
            "http://x",
        ],
    );
    assert!(err.contains("new device id (e.g. box-02)"), "{err}");
    // A mistyped hub data directory makes no store of its own.
    let nowhere = dir.join("no-hub-here");
    let err = refused(
        "sunlight-hub",
        &[
            "enroll",
            "token",
            "--data-dir",
            s(&nowhere),
            "--site",
            SHANGSHI,
            "--device",
            "box-02",
            "--by",
            "张工",
            "--hub-url",
            "http://x",
        ],
    );
    assert!(err.contains("has no hub.db"), "{err}");
    assert!(!nowhere.join("hub.db").exists());

    // Expired.
    let t3 = tok("box-03");
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("hub.db");
    conn.execute(
        "UPDATE enroll_tokens SET expires_ms = 1 WHERE device = 'box-03'",
        [],
    )
    .expect("age the token");
    let (status, body) = enroll_post(&hub, &FakeBox::new("box-03").request(&t3, "box-03"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_expired")),
        "{body}"
    );

    // Replaced by a newer token.
    let old = tok("box-06");
    let _new = tok("box-06");
    let (status, body) = enroll_post(&hub, &FakeBox::new("box-06").request(&old, "box-06"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_replaced")),
        "{body}"
    );

    // Registered meanwhile with another key (sunlight-hub device add): 409, the token unused.
    let t5 = tok("box-05");
    hub.register(SHANGSHI, "box-05", &FakeBox::new("box-05").public);
    let (status, body) = enroll_post(&hub, &FakeBox::new("box-05").request(&t5, "box-05"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("device_exists")),
        "{body}"
    );
    let list = ok(
        "sunlight-hub",
        &["enroll", "list", "--data-dir", s(&hub.dir)],
    );
    for line in [
        "suixian-shangshi/box-01\tused",
        "suixian-shangshi/box-03\texpired",
        "suixian-shangshi/box-05\twaiting",
        "suixian-shangshi/box-06\treplaced",
    ] {
        assert!(list.contains(line), "{line} in\n{list}");
    }

    // The agent: a refused attempt keeps the box's keys, and the next attempt reuses them.
    let t4 = tok("box-04");
    conn.execute(
        "UPDATE enroll_tokens SET expires_ms = 1 WHERE device = 'box-04'",
        [],
    )
    .expect("age the token");
    let box4 = dir.join("box-04");
    let (data, config) = (box4.join("data"), box4.join("agent.toml"));
    let url = format!("http://127.0.0.1:{}", hub.http);
    let agent_args = |token: &str| -> Vec<String> {
        [
            "-c",
            s(&config),
            "enroll",
            "--hub",
            &url,
            "--token",
            token,
            "--site",
            SHANGSHI,
            "--device",
            "box-04",
            "--data-dir",
            s(&data),
        ]
        .map(String::from)
        .to_vec()
    };
    // Plain http to anywhere but this box, and https without the CA pinned, are refused before
    // anything is made or sent (issue 14, item 8).
    for (hub_url, says) in [
        ("http://hub.suixian.gov.cn:8080", "plain http is refused"),
        ("http://10.1.2.3:8080", "127.0.0.0/8, ::1, localhost"),
        (&*format!("https://127.0.0.1:{}", hub.http), "--ca-sha256"),
    ] {
        let mut a = agent_args(&t4);
        let at = a.iter().position(|x| x == "--hub").expect("--hub") + 1;
        a[at] = hub_url.to_owned();
        let err = refused(
            "sunlight-agent",
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(
            err.contains(says) && err.contains("nothing was sent"),
            "{hub_url}: {err}"
        );
        assert!(
            !data.exists() && !config.exists(),
            "{hub_url}: nothing made"
        );
    }
    let a = agent_args(&t4);
    let err = refused(
        "sunlight-agent",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        err.contains("expired") && err.contains("new token"),
        "{err}"
    );
    let seed = std::fs::read_to_string(data.join("device.key")).expect("kept key");
    assert!(!config.exists());
    let a = agent_args(&tok("box-04"));
    let out = ok(
        "sunlight-agent",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        out.contains("with the keys of the earlier attempt"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("device.key")).expect("key"),
        seed
    );
    let registered = hub.device(SHANGSHI, "box-04").expect("box-04 registered");
    assert_eq!(registered["revoked_at"], Value::Null);
    assert!(config.exists());

    // Offline bundle: the token, the hub and the county CA on a stick.
    // With --config, the bundle carries the update verifying keys of that hub.toml; this hub
    // runs without them, so the box takes them from the bundle.
    let stick = dir.join("stick");
    let update_key = sunlight_protocol::update::UpdateKey::generate()
        .expect("update key")
        .verifying_key();
    let hub_toml = dir.join("hub.toml");
    std::fs::write(
        &hub_toml,
        format!("[updates]\nverifying_keys = [\"{update_key}\"]\n"),
    )
    .expect("hub.toml");
    let out = token(
        &hub,
        &county,
        "box-09",
        &["--bundle", s(&stick), "--config", s(&hub_toml)],
    );
    assert!(out.contains("sunlight-agent enroll --bundle"), "{out}");
    assert_eq!(mode(&stick.join("enroll.toml")), 0o600);
    let bundle = std::fs::read_to_string(stick.join("enroll.toml")).expect("enroll.toml");
    assert!(bundle.contains(&update_key), "{bundle}");
    let box9 = dir.join("box-09");
    let out = ok(
        "sunlight-agent",
        &[
            "-c",
            s(&box9.join("agent.toml")),
            "enroll",
            "--bundle",
            s(&stick),
            "--data-dir",
            s(&box9.join("data")),
        ],
    );
    assert!(out.contains("suixian-shangshi/box-09 enrolled"), "{out}");
    assert!(out.contains("matches --ca-sha256"), "{out}");
    let keys = sunlight_agent::AgentConfig::load(&box9.join("agent.toml"))
        .expect("the agent reads its config")
        .update
        .verifying_keys;
    assert_eq!(keys, std::slice::from_ref(&update_key));

    // A hub without an enrollment CA says so.
    let mut plain = Hub::new(&dir.join("hub-plain"), BrokerMode::Embedded(free_port()));
    plain.start();
    let (status, body) = enroll_post(&plain, &FakeBox::new("box-01").request(&t1, "box-01"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("disabled")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("--enroll-ca-dir"),
        "{body}"
    );
}

/// The hub holds the enrollment CA's key; that key must not let it (or a thief) pose as the
/// county's broker to the boxes, which trust the county CA: the enrollment CA is for client
/// authentication only, and rustls (the boxes' TLS) checks that along the chain.
#[test]
fn the_enrollment_key_cannot_make_a_broker_certificate_that_boxes_accept() {
    let dir = scratch("enroll-server");
    let county = County::new(&dir);
    let fake = dir.join("fake-broker");
    std::fs::create_dir_all(&fake).expect("dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let f = |name: &str| s(&fake.join(name)).to_string();
    std::fs::write(
        fake.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
    )
    .expect("ext");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &f("server.key"),
        "-out",
        &f("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &f("server.csr"),
        "-CA",
        s(&county.enroll.join("enroll-ca.pem")),
        "-CAkey",
        s(&county.enroll.join("enroll-ca.key")),
        "-set_serial",
        "7",
        "-days",
        "30",
        "-out",
        &f("leaf.pem"),
        "-extfile",
        &f("ext"),
    ]);
    // The fake broker sends its certificate with the enrollment CA, as a full chain.
    let mut chain = std::fs::read_to_string(fake.join("leaf.pem")).expect("leaf");
    chain.push_str(&std::fs::read_to_string(county.enroll.join("enroll-ca.pem")).expect("ca"));
    std::fs::write(fake.join("server.pem"), chain).expect("chain");
    let port = free_port();
    std::fs::write(
        fake.join("mosquitto.conf"),
        format!(
            "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\nallow_anonymous true\n",
            f("server.pem"),
            f("server.key")
        ),
    )
    .expect("conf");
    hand_to_mosquitto_user(&[&fake]);
    let _broker = Proc::spawn(
        Command::new(mosquitto_exe())
            .arg("-c")
            .arg(fake.join("mosquitto.conf")),
        fake.join("mosquitto.log"),
    );
    wait_for(Duration::from_secs(10), "the fake broker", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let ca = std::fs::read(county.ca.join("ca.pem")).expect("ca");
    let mut opts = MqttOptions::new("box", "127.0.0.1", port);
    opts.set_transport(Transport::tls(ca, None, None));
    let (_client, mut conn) = Client::new(opts, 10);
    // Refused for its purpose (the intermediate's client-only EKU), not for anything else.
    let outcome = match conn.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => "connected".to_string(),
        other => format!("{other:?}"),
    };
    assert!(
        outcome.contains("InvalidPurpose"),
        "a box accepted a broker certificate made with the enrollment key: {outcome}"
    );
}

/// `sunlight-provision` with an API token, from the operator's machine.
fn provision(hub: &Hub, token: &str, args: &[&str]) -> Output {
    let url = format!("http://127.0.0.1:{}", hub.http);
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--hub", &url, "--token", token]);
    run("sunlight-provision", &all)
}

fn stdout_ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_refused(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 7 over the API: `site add` and `device add` against a running hub, the printed command
/// enrolls a box that syncs over mTLS and whose config carries the hub's update verifying key (an
/// update signed with it verifies, one signed with another key does not); a used or expired token
/// is still refused; an offline bundle written by `device add --bundle` enrolls a second box;
/// technician and head tokens get 403; the audit names the token's account.
#[test]
fn site_and_device_added_over_the_api_enroll_a_box_that_syncs_and_trusts_the_update_key() {
    let dir = scratch("provision-api");
    let county = County::new(&dir);
    // The update key (made with the county CA) and the hub's config naming it.
    ok(
        "sunlight-provision",
        &["update-key", "--dir", s(&county.ca)],
    );
    let verifying = std::fs::read_to_string(county.ca.join("update-verifying.pub"))
        .expect("verifying key")
        .trim()
        .to_owned();
    let hub_toml = dir.join("hub.toml");
    std::fs::write(
        &hub_toml,
        format!("[updates]\nverifying_keys = [\"{verifying}\"]\n"),
    )
    .expect("hub.toml");
    let (tls_port, local_port) = (free_port(), free_port());
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(local_port));
    hub.extra_args = vec![
        "--enroll-ca-dir".into(),
        s(&county.enroll).into(),
        "--public-broker-url".into(),
        format!("mqtts://127.0.0.1:{tls_port}"),
        "--config".into(),
        s(&hub_toml).into(),
    ];
    hub.start();
    let admin = hub.api_token();

    // Technician and head tokens may not register sites or boxes.
    let tech = hub.make_api_token("zhanggong", "technician", None);
    let head = hub.make_api_token("zhenzhang", "head", Some(SHANGSHI));
    for t in [&tech, &head] {
        let err = stderr_refused(
            provision(
                &hub,
                t,
                &["site", "add", "--id", SHANGSHI, "--name", "尚市镇"],
            ),
            "site add with a non-admin token",
        );
        assert!(
            err.contains("403") && err.contains("supervisor and admin"),
            "{err}"
        );
    }
    let err = stderr_refused(
        provision(
            &hub,
            "slt_nonsense",
            &["site", "add", "--id", SHANGSHI, "--name", "x"],
        ),
        "site add with an unknown token",
    );
    assert!(err.contains("401") && err.contains("user token"), "{err}");
    // A box of a site the hub does not know: refused with the next step.
    let err = stderr_refused(
        provision(
            &hub,
            &admin,
            &["device", "add", "--site", SHANGSHI, "--device", "box-09"],
        ),
        "device add before site add",
    );
    assert!(err.contains("404") && err.contains("site add"), "{err}");
    // A hub that is not there.
    let nowhere = run(
        "sunlight-provision",
        &[
            "site",
            "add",
            "--id",
            SHANGSHI,
            "--name",
            "x",
            "--hub",
            &format!("http://127.0.0.1:{}", free_port()),
            "--token",
            &admin,
        ],
    );
    let err = stderr_refused(nowhere, "site add against no hub");
    assert!(err.contains("could not reach the hub"), "{err}");

    // The site, then the box.
    let out = stdout_ok(
        provision(
            &hub,
            &admin,
            &[
                "site",
                "add",
                "--id",
                SHANGSHI,
                "--name",
                "尚市镇便民服务中心",
            ],
        ),
        "site add",
    );
    assert!(
        out.contains("registered") && out.contains("device add"),
        "{out}"
    );
    let err = stderr_refused(
        provision(
            &hub,
            &admin,
            &["site", "add", "--id", SHANGSHI, "--name", "again"],
        ),
        "site add twice",
    );
    assert!(err.contains("409") && err.contains("already"), "{err}");
    let sites = hub.get("/api/v1/sites").expect("sites");
    assert_eq!(sites["sites"][0]["name"], "尚市镇便民服务中心", "{sites}");
    // Bad input over the API: a clear 422 in both languages, nothing registered or issued.
    for (path, body, says) in [
        (
            "/api/v1/sites",
            json!({"id": "Not A Site", "name": "x"}),
            "site id",
        ),
        (
            "/api/v1/sites",
            json!({"id": "suixian-lishan", "name": "  "}),
            "1 to",
        ),
        (
            "/api/v1/sites",
            json!({"id": "suixian-lishan"}),
            "the body must be",
        ),
        (
            "/api/v1/enroll/tokens",
            json!({"site": SHANGSHI, "device": "box-12", "hub_url": "ftp://x"}),
            "hub_url",
        ),
        (
            "/api/v1/enroll/tokens",
            json!({"site": SHANGSHI, "device": "box-12", "hub_url": "http://h", "ttl_hours": 0}),
            "1 to 720",
        ),
        (
            "/api/v1/enroll/tokens",
            json!({"site": SHANGSHI, "device": "Box 12", "hub_url": "http://h"}),
            "device",
        ),
    ] {
        let (status, answer) = hub.post(path, &body).expect("the hub answers");
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(says),
            "{answer}"
        );
    }
    assert_eq!(
        hub.get("/api/v1/sites").expect("sites")["sites"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(
        hub.get("/api/v1/enroll/tokens").expect("tokens")["tokens"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let printed = stdout_ok(
        provision(
            &hub,
            &admin,
            &["device", "add", "--site", SHANGSHI, "--device", "box-09"],
        ),
        "device add",
    );
    assert!(
        printed.contains("valid until") && printed.contains("Next:"),
        "{printed}"
    );
    let command = printed_command(&printed);
    assert!(command.contains(&"--ca-sha256".to_string()), "{command:?}");
    let list = hub.get("/api/v1/enroll/tokens").expect("tokens");
    let row = &list["tokens"][0];
    assert_eq!(
        (row["device"].as_str(), row["state"].as_str()),
        (Some("box-09"), Some("waiting"))
    );
    assert_eq!(row["created_by"], HARNESS_ACCOUNT);
    assert!(!list.to_string().contains(&token_of(&command)));
    for (action, target) in [
        ("site.add", SHANGSHI),
        ("enroll.token", "suixian-shangshi/box-09"),
    ] {
        let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("hub.db");
        let who: String = conn
            .query_row(
                "SELECT who FROM audit WHERE action = ?1 AND target = ?2",
                [action, target],
                |r| r.get(0),
            )
            .expect("audit row");
        assert_eq!(who, HARNESS_ACCOUNT, "{action}");
    }

    // The broker, from the hub's registrations (the box is waiting).
    let broker_out = dir.join("broker");
    let persistence = dir.join("mosquitto-data");
    let hub_dir = hub.dir.clone();
    let broker_config = || {
        ok(
            "sunlight-provision",
            &[
                "broker-config",
                "mosquitto",
                "--dir",
                s(&county.ca),
                "--hub-data",
                s(&hub_dir),
                "--enroll-ca-dir",
                s(&county.enroll),
                "--out",
                s(&broker_out),
                "--listen",
                &format!("127.0.0.1:{tls_port}"),
                "--hub-listener",
                &format!("127.0.0.1:{local_port}"),
                "--persistence-dir",
                s(&persistence),
            ],
        )
    };
    broker_config();
    let mut broker = Broker::start(&broker_out, &persistence, tls_port);

    // On the box: the printed command.
    let box_dir = dir.join("box-09");
    let data = box_dir.join("data");
    let config = box_dir.join("agent.toml");
    let mut args: Vec<String> = vec!["-c".into(), s(&config).into()];
    args.extend(command.iter().cloned());
    args.extend(["--data-dir".into(), s(&data).into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok("sunlight-agent", &args);
    assert!(out.contains("suixian-shangshi/box-09 enrolled"), "{out}");
    assert!(out.contains("1 update verifying key"), "{out}");
    // The key is in the box's config, and it is the one that signs: an update signed with it
    // verifies against the config's keys, one signed with another key does not.
    let keys = sunlight_agent::AgentConfig::load(&config)
        .expect("the agent reads its config")
        .update
        .verifying_keys;
    assert_eq!(keys, std::slice::from_ref(&verifying));
    let keys = sunlight_protocol::update::verifying_keys(&keys).expect("keys parse");
    let sign_with = |key: &sunlight_protocol::update::UpdateKey| {
        let mut plain = Vec::new();
        sunlight_protocol::update::pack(&mut plain, b"#!/bin/sh\nexit 0\n", "0.9.0").unwrap();
        let mut signed = std::io::Cursor::new(Vec::new());
        sunlight_protocol::update::sign(&mut std::io::Cursor::new(plain), &mut signed, key)
            .unwrap();
        signed.into_inner()
    };
    let county_key_hex = std::fs::read_to_string(county.ca.join("update-signing.key")).unwrap();
    let county_key = sunlight_protocol::update::UpdateKey::from_hex(&county_key_hex).unwrap();
    let good = sign_with(&county_key);
    assert!(
        sunlight_protocol::update::verify(&mut std::io::Cursor::new(&good), &keys).is_ok(),
        "an update signed with the county's key verifies with the enrolled box's keys"
    );
    let stranger = sign_with(&sunlight_protocol::update::UpdateKey::generate().unwrap());
    assert!(
        sunlight_protocol::update::verify(&mut std::io::Cursor::new(&stranger), &keys).is_err()
    );

    // The used token is refused (401), as is an expired one.
    let reuse = FakeBox::new("box-09");
    let (status, body) = enroll_post(&hub, &reuse.request(&token_of(&command), "box-09"));
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_used")),
        "{body}"
    );
    let printed = stdout_ok(
        provision(
            &hub,
            &admin,
            &["device", "add", "--site", SHANGSHI, "--device", "box-11"],
        ),
        "device add box-11",
    );
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("hub.db");
    conn.execute(
        "UPDATE enroll_tokens SET expires_ms = 1 WHERE device = 'box-11'",
        [],
    )
    .expect("expire");
    let late = FakeBox::new("box-11");
    let (status, body) = enroll_post(
        &hub,
        &late.request(&token_of(&printed_command(&printed)), "box-11"),
    );
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("token_expired")),
        "{body}"
    );
    // An enrolled box cannot be added again.
    let err = stderr_refused(
        provision(
            &hub,
            &admin,
            &["device", "add", "--site", SHANGSHI, "--device", "box-09"],
        ),
        "device add of an enrolled box",
    );
    assert!(err.contains("409") && err.contains("box-10"), "{err}");

    // The box syncs with what it was given.
    broker_config();
    broker.restart();
    let (mut agent, _) = run_enrolled_box(&hub, &config, &box_dir, "box-09", 5);
    agent.kill9();

    // An offline bundle for a box without a link at the county's office: written by device add,
    // read by the agent; it carries the update key too.
    let stick = dir.join("usb-stick");
    let out = stdout_ok(
        provision(
            &hub,
            &admin,
            &[
                "device",
                "add",
                "--site",
                SHANGSHI,
                "--device",
                "box-10",
                "--bundle",
                s(&stick),
            ],
        ),
        "device add --bundle",
    );
    assert!(out.contains("sunlight-agent enroll --bundle"), "{out}");
    assert_eq!(mode(&stick.join("enroll.toml")), 0o600);
    let bundle = std::fs::read_to_string(stick.join("enroll.toml")).expect("enroll.toml");
    assert!(bundle.contains(&verifying), "{bundle}");
    assert!(stick.join("ca.pem").is_file() && stick.join("README.txt").is_file());
    let box10 = dir.join("box-10");
    let config10 = box10.join("agent.toml");
    let out = ok(
        "sunlight-agent",
        &[
            "-c",
            s(&config10),
            "enroll",
            "--bundle",
            s(&stick),
            "--data-dir",
            s(&box10.join("data")),
        ],
    );
    assert!(out.contains("suixian-shangshi/box-10 enrolled"), "{out}");
    let text = std::fs::read_to_string(&config10).expect("config");
    assert!(text.contains(&verifying), "{text}");
    drop(broker);
}
