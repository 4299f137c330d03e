//! `sunlight-agent check` (issue 7) against real parts: a real hub (its `/api/v1/box/time`), a real
//! Mosquitto (plain, and the mTLS one `sunlight-provision broker-config` generates, with its ACL),
//! a fake IP camera over real HTTP (Basic auth), the box's real data directory and outbox.
//!
//! - A good box passes every check, next to its running agent, which it does not disturb (the
//!   agent stays connected, its punches keep reaching the hub, nothing is added to its outbox).
//! - Broken setups fail with the right check and a next step, and exit 1: the hub down, a wrong
//!   broker port, a camera refusing the login (401), too little disk (simulated with a minimum
//!   above what the disk has free: the test does not fill a disk).
//! - Through the mTLS broker: the box's certificate passes (TLS, CONNACK, SUBACK, PUBACK); a box
//!   with a valid certificate that the broker's ACL does not list gets no echo through the hub; a
//!   box without its certificate is refused by the broker.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use sunlight_agent::capture::camera::jpeg;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";
const USER: &str = "admin";
const PASSWORD: &str = "cam-pass-1";

/// An IP camera on a real HTTP port: a JPEG for `admin:cam-pass-1` (Basic), 401 otherwise.
fn fake_camera() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let picture = jpeg::generate(320, 240, 7, "check test camera");
    let good = format!(
        "authorization: basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{PASSWORD}")
        )
    )
    .to_lowercase();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let _ = if text.contains(&good) {
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            picture.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&picture))
            } else {
                stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"camera\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            };
        }
    });
    port
}

/// Runs `sunlight-agent -c CONFIG check --json --no-discovery ARGS`: (exit code, report).
fn check(config: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(bin("sunlight-agent"))
        .arg("-c")
        .arg(config)
        .args(["check", "--json", "--no-discovery", "--timeout-secs", "5"])
        .args(args)
        .output()
        .expect("run sunlight-agent check");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The names of the failed checks, and the report for messages.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn item<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

/// The box's config with `from` replaced by `to`, as another file.
fn variant(agent: &Agent, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(&agent.config).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    let path = agent.dir.join(format!("{name}.toml"));
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[test]
fn a_good_box_passes_next_to_its_running_agent_and_broken_setups_fail_with_the_reason() {
    let dir = scratch("check");
    let broker = Mosquitto::start(&dir.join("mosquitto"));
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(broker.port));
    let camera = fake_camera();
    let hub_section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{}\"\napi = \"http://127.0.0.1:{}\"\n\
         [health]\ninterval_secs = 0\n\
         [[camera]]\nid = \"w1\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{camera}/snapshot.jpg\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
        broker.port, hub.http
    );
    let mut agent = Agent::new_with_hub(&dir.join("box"), SITE, DEVICE, &hub_section, &hub);
    hub.start();
    agent.start();
    // The hub's calendar (answered with an event) comes before the count below.
    agent.wait_for_calendar();
    assert!(agent.punch(1));
    wait_for(
        Duration::from_secs(30),
        "the first punch at the hub",
        || (hub.events(SITE, DEVICE, "punch").len() == 1).then_some(()),
    );
    let head_before = agent.status().unwrap()["backlog"]["head_seq"].clone();

    // A good box: every check passes, exit 0.
    let (code, report) = check(&agent.config, &[]);
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
    assert_eq!(report["ok"], true);
    for name in [
        "config",
        "key",
        "camera w1",
        "hub",
        "clock",
        "broker",
        "disk",
        "outbox",
    ] {
        assert_eq!(item(&report, name)["status"], "pass", "{name}: {report:#}");
    }
    assert!(
        item(&report, "camera w1")["detail"]
            .as_str()
            .unwrap()
            .contains("320×240 JPEG"),
        "{report:#}"
    );
    let broker_detail = item(&report, "broker")["detail"].as_str().unwrap();
    assert!(
        broker_detail.contains("CONNACK")
            && broker_detail.contains("SUBACK grants QoS 1")
            && broker_detail.contains("PUBACK")
            && broker_detail.contains("the hub's echo back"),
        "{broker_detail}"
    );
    assert!(
        item(&report, "outbox")["detail"]
            .as_str()
            .unwrap()
            .contains("nothing written"),
        "{report:#}"
    );
    // The text report a technician photographs.
    let out = Command::new(bin("sunlight-agent"))
        .arg("-c")
        .arg(&agent.config)
        .args(["check", "--no-discovery"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("PASS  broker") && text.contains("RESULT: PASS"),
        "{text}"
    );

    // The running agent was not disturbed: still connected, nothing added to its outbox, and a
    // punch after the checks reaches the hub.
    let status = agent.status().unwrap();
    assert_eq!(status["link"]["connected"], true, "{status:#}");
    assert_eq!(status["backlog"]["head_seq"], head_before, "{status:#}");
    assert!(agent.punch(2));
    wait_for(Duration::from_secs(30), "a punch after the checks", || {
        (hub.events(SITE, DEVICE, "punch").len() == 2).then_some(())
    });

    // Broken setups: only the broken part fails, with its next step; exit 1.
    let dead = free_port();
    let cases = [
        (
            variant(
                &agent,
                "hub-down",
                &format!("api = \"http://127.0.0.1:{}\"", hub.http),
                &format!("api = \"http://127.0.0.1:{dead}\""),
            ),
            "hub",
            "is the hub running",
        ),
        (
            variant(
                &agent,
                "wrong-broker-port",
                &format!("broker = \"mqtt://127.0.0.1:{}\"", broker.port),
                &format!("broker = \"mqtt://127.0.0.1:{dead}\""),
            ),
            "broker",
            "check hub.broker",
        ),
        (
            variant(
                &agent,
                "camera-401",
                &format!("password = \"{PASSWORD}\""),
                "password = \"wrong\"",
            ),
            "camera w1",
            "username and password",
        ),
    ];
    for (config, name, next) in &cases {
        let (code, report) = check(config, &[]);
        assert_eq!(code, 1, "{report:#}");
        assert_eq!(failed(&report), vec![name.to_string()], "{report:#}");
        let it = item(&report, name);
        assert!(
            it["next"].as_str().unwrap().contains(next),
            "{name}: {it:#}"
        );
    }
    let camera = item(&check(&cases[2].0, &[]).1, "camera w1").clone();
    assert!(
        camera["detail"]
            .as_str()
            .unwrap()
            .contains("refused the login"),
        "{camera:#}"
    );
    // Too little disk, simulated: a minimum far above what any disk here has free.
    let (code, report) = check(&agent.config, &["--min-free-mb", "999999999"]);
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["disk".to_string()]),
        "{report:#}"
    );
    // A config that does not load is a failed report too, not a crash.
    let bad = agent.dir.join("bad.toml");
    std::fs::write(&bad, "site = \"suixian-shangshi\"\n").unwrap();
    let (code, report) = check(&bad, &[]);
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["config".to_string()]),
        "{report:#}"
    );

    // The hub stopped: the hub check fails (and the agent is still fine).
    hub.kill9();
    let (code, report) = check(&agent.config, &[]);
    assert_eq!(code, 1);
    assert!(failed(&report).contains(&"hub".to_string()), "{report:#}");
    assert!(agent.proc.as_mut().unwrap().is_running());
}

// ---------------------------------------------------------------------------------------------
// Through the mTLS broker that sunlight-provision generates.

fn provision(args: &[&str]) -> String {
    let out = Command::new(bin("sunlight-provision"))
        .args(args)
        .output()
        .expect("run sunlight-provision");
    assert!(
        out.status.success(),
        "sunlight-provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// As in provision.rs: run as root, Mosquitto drops to its own user before reading its files.
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
            assert!(
                Command::new("chown")
                    .arg("-R")
                    .arg("mosquitto:")
                    .arg(p)
                    .status()
                    .unwrap()
                    .success()
            );
        }
    }
}

#[test]
fn through_the_mtls_broker_the_box_certificate_passes_and_a_box_missing_from_the_acl_fails() {
    let dir = scratch("check-mtls");
    let ca = dir.join("ca");
    provision(&[
        "init",
        "--dir",
        s(&ca),
        "--county",
        "随县",
        "--hub-host",
        "127.0.0.1",
    ]);
    let certs = |device: &str| {
        let out = dir.join(format!("certs-{device}"));
        provision(&[
            "device",
            "cert",
            "--dir",
            s(&ca),
            "--site",
            SITE,
            "--device",
            device,
            "--out",
            s(&out),
        ]);
        out
    };
    let (certs1, certs9) = (certs("box-01"), certs("box-09"));
    let (tls_port, local_port) = (free_port(), free_port());
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(local_port));
    let http = hub.http;
    let hub_section = |c: &Path| {
        format!(
            "[hub]\nbroker = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{c}/ca.pem\"\n\
             cert_file = \"{c}/box.pem\"\nkey_file = \"{c}/box.key\"\napi = \"http://127.0.0.1:{http}\"\n",
            c = c.display()
        )
    };
    // box-01 is registered at the hub, so the broker's ACL lists it; box-09 has a certificate from
    // the same CA but is registered nowhere.
    let box01 = Agent::new_with_hub(
        &dir.join("box-01"),
        SITE,
        "box-01",
        &hub_section(&certs1),
        &hub,
    );
    let out_dir = dir.join("broker");
    let persistence = dir.join("mosquitto-data");
    provision(&[
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
        s(&persistence),
    ]);
    std::fs::create_dir_all(&persistence).unwrap();
    hand_to_mosquitto_user(&[&out_dir, &persistence]);
    let mut cmd = Command::new(mosquitto_exe());
    cmd.arg("-c").arg(out_dir.join("mosquitto.conf"));
    let _broker = Proc::spawn(&mut cmd, dir.join("mosquitto.log"));
    wait_for(Duration::from_secs(10), "mosquitto's TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).ok()
    });
    hub.start();

    let (code, report) = check(&box01.config, &[]);
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
    let detail = item(&report, "broker")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("TLS handshake and CONNACK") && detail.contains("SUBACK grants QoS 1"),
        "{detail}"
    );

    // box-01 without its certificate and key (a box whose enrollment did not finish): the broker
    // requires a client certificate, so the connection fails and `check` says what to do.
    let no_cert = variant(
        &box01,
        "no-cert",
        &format!(
            "cert_file = \"{c}/box.pem\"\nkey_file = \"{c}/box.key\"\n",
            c = certs1.display()
        ),
        "",
    );
    let (code, report) = check(&no_cert, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        failed(&report).contains(&"broker".to_string()),
        "{report:#}"
    );
    let it = item(&report, "broker");
    assert!(
        it["detail"]
            .as_str()
            .unwrap()
            .contains("CertificateRequired")
            && it["next"]
                .as_str()
                .unwrap()
                .contains("hub.cert_file / hub.key_file are not set"),
        "{it:#}"
    );

    // box-09: the TLS handshake and CONNACK pass (a valid certificate); Mosquitto grants even its
    // SUBACK and PUBACK (MQTT 3.1.1 has no refusal for an ACL-denied publish), but the ACL drops
    // its message, so no echo comes back.
    let box09_dir = dir.join("box-09");
    std::fs::create_dir_all(box09_dir.join("data")).unwrap();
    let config09 = box09_dir.join("agent.toml");
    std::fs::write(
        &config09,
        format!(
            "site = \"{SITE}\"\ndevice = \"box-09\"\ndata_dir = \"{}\"\n{}",
            box09_dir.join("data").display(),
            hub_section(&certs9)
        ),
    )
    .unwrap();
    let (code, report) = check(&config09, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        failed(&report).contains(&"broker".to_string()),
        "{report:#}"
    );
    let it = item(&report, "broker");
    assert!(
        it["detail"].as_str().unwrap().contains("no echo came back"),
        "{it:#}"
    );
    assert!(
        it["next"]
            .as_str()
            .unwrap()
            .contains("ACL list suixian-shangshi.box-09"),
        "{it:#}"
    );

    // box-01's agent running: the broker makes the certificate's name the client id, so `check`
    // takes the running agent's link as its round trip instead of taking the agent's place.
    let mut box01 = box01;
    box01.start();
    wait_for(Duration::from_secs(30), "box-01 connected", || {
        (box01.status()?["link"]["connected"] == true).then_some(())
    });
    let reconnects = box01.status().expect("status")["link"]["reconnects"].clone();
    let (code, report) = check(&box01.config, &[]);
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
    let detail = item(&report, "broker")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("the running agent is connected"),
        "{detail}"
    );
    let link = box01.status().expect("status")["link"].clone();
    assert_eq!(link["connected"], true, "{link}");
    assert_eq!(
        link["reconnects"], reconnects,
        "the check took the agent's place: {link}"
    );
}
