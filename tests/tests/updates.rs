//! Signed agent updates end to end (issue 7, item 8): a real hub with its embedded broker, a real
//! agent process supervised the way systemd runs it (the packaged binary's `update guard` before
//! every start, then the updatable copy; started again whenever it exits), archives made and
//! signed with `sunlight-provision`, published and rolled out with `sunlight-hub`.
//!
//! The "new" release is the same agent binary with bytes appended after the ELF image (the kernel
//! loads it all the same) and its own `VERSION`: the agent reports a release version only when the
//! hash recorded at installation matches the executable that runs, so the box reporting 0.1.1 means
//! the new bytes are the ones running. The failing release is a shell script that exits 1.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sunlight-provision update-key --dir DIR`: the key file and the verifying key.
fn update_key(dir: &Path) -> (PathBuf, String) {
    run_ok(
        Command::new(bin("sunlight-provision"))
            .args(["update-key", "--dir"])
            .arg(dir),
    );
    let verifying = std::fs::read_to_string(dir.join("update-verifying.pub")).unwrap();
    (dir.join("update-signing.key"), verifying.trim().to_owned())
}

/// An archive of `binary` and VERSION, signed with `sunlight-provision sign-update`.
fn signed_archive(dir: &Path, binary: &[u8], version: &str, key: &Path) -> PathBuf {
    let path = dir.join(format!("sunlight-agent-{version}.tar.gz"));
    let mut plain = Vec::new();
    sunlight_protocol::update::pack(&mut plain, binary, version).unwrap();
    std::fs::write(&path, plain).unwrap();
    run_ok(
        Command::new(bin("sunlight-provision"))
            .args(["sign-update", "--key"])
            .arg(key)
            .arg(&path),
    );
    path
}

fn hub_config(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    std::fs::write(
        &path,
        format!("[updates]\nverifying_keys = [{}]\n", list.join(", ")),
    )
    .unwrap();
    path
}

fn publish(hub: &Hub, config: &Path, version: &str, archive: &Path) {
    run_ok(
        Command::new(bin("sunlight-hub"))
            .args(["update", "publish", "--data-dir"])
            .arg(&hub.dir)
            .arg("--config")
            .arg(config)
            .args(["--version", version])
            .arg(archive),
    );
}

fn rollout(hub: &Hub, version: &str, wave: &[&str]) -> String {
    run_ok(
        Command::new(bin("sunlight-hub"))
            .args(["update", "rollout", "--data-dir"])
            .arg(&hub.dir)
            .args(["--version", version])
            .args(wave),
    )
}

/// This box's row of a release in `GET /api/v1/updates`, once its state is one of `states`.
fn wait_state(hub: &Hub, version: &str, states: &[&str], timeout: Duration) -> Value {
    wait_for(
        timeout,
        &format!("update {version} to reach {states:?}"),
        || {
            let all = hub.get(&format!("/api/v1/updates?version={version}"))?;
            let row = all["boxes"]
                .as_array()?
                .iter()
                .find(|b| b["site"] == SITE && b["device"] == DEVICE)?
                .clone();
            states
                .contains(&row["state"].as_str().unwrap_or(""))
                .then_some(row)
        },
    )
}

/// Runs the box like systemd runs `sunlight-agent.service`: `ExecStartPre=-<packaged> update
/// guard`, `ExecStart=<installed copy> run`, `Restart=always` (after 300 ms here).
struct Supervisor {
    stop: Arc<AtomicBool>,
    starts: Arc<AtomicU32>,
    child: Arc<Mutex<Option<Child>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn start(config: PathBuf, installed: PathBuf, log: PathBuf) -> Supervisor {
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU32::new(0));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let (s, n, c) = (stop.clone(), starts.clone(), child.clone());
        let thread = std::thread::spawn(move || {
            let packaged = bin("sunlight-agent");
            while !s.load(Ordering::SeqCst) {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                let _ = Command::new(&packaged)
                    .arg("-c")
                    .arg(&config)
                    .args(["update", "guard"])
                    .stdout(out.try_clone().unwrap())
                    .stderr(out.try_clone().unwrap())
                    .status();
                let spawned = Command::new(&installed)
                    .arg("-c")
                    .arg(&config)
                    .arg("run")
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .spawn();
                n.fetch_add(1, Ordering::SeqCst);
                if let Ok(child) = spawned {
                    *c.lock().unwrap() = Some(child);
                }
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    let mut guard = c.lock().unwrap();
                    match guard.as_mut().map(|ch| ch.try_wait()) {
                        Some(Ok(None)) => {}
                        _ => {
                            *guard = None;
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Supervisor {
            stop,
            starts,
            child,
            thread: Some(thread),
        }
    }

    fn starts(&self) -> u32 {
        self.starts.load(Ordering::SeqCst)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn updates_install_refuse_bad_archives_roll_back_and_restart() {
    let dir = scratch("updates");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let ca = dir.join("ca");
    let rogue = dir.join("rogue");
    let (county_key, county_pub) = update_key(&ca);
    let (rogue_key, rogue_pub) = update_key(&rogue);
    let trusted = hub_config(&dir, "hub.toml", &[&county_pub]);

    // The box: the packaged binary installs the updatable copy (guard), which the service runs.
    let agent_dir = dir.join("box");
    let installed = agent_dir.join("bin").join("sunlight-agent");
    let hub_section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{}\"\napi = \"http://127.0.0.1:{}\"\n[update]\nverifying_keys = [\"{county_pub}\"]\nbinary = \"{}\"\nhealth_deadline_secs = 60\nmax_starts = 3\n[health]\ninterval_secs = 5\n",
        hub.mqtt_port(),
        hub.http,
        installed.display()
    );
    let agent = Agent::new_with_hub(&agent_dir, SITE, DEVICE, &hub_section, &hub);
    let sup = Supervisor::start(
        agent.config.clone(),
        installed.clone(),
        agent_dir.join("agent.log"),
    );
    let old_hash = sha256_file(&bin("sunlight-agent"));
    wait_for(Duration::from_secs(30), "the box online at 0.1.0", || {
        let d = hub.device(SITE, DEVICE)?;
        (d["version"] == sunlight_agent::VERSION).then_some(())
    });
    assert_eq!(
        sha256_file(&installed),
        old_hash,
        "the guard installed the packaged binary"
    );

    // 1. A good signed update: installed, restarted into, healthy; the old binary kept.
    let mut new_binary = std::fs::read(bin("sunlight-agent")).unwrap();
    new_binary.extend_from_slice(b"\n# sunlight-agent test release 0.1.1\n");
    let new_hash = hex::encode(Sha256::digest(&new_binary));
    let archive = signed_archive(&dir, &new_binary, "0.1.1", &county_key);
    publish(&hub, &trusted, "0.1.1", &archive);
    let out = rollout(&hub, "0.1.1", &["--sites", SITE]);
    assert!(out.contains("sent to 1 box"), "{out}");
    let row = wait_state(
        &hub,
        "0.1.1",
        &["healthy", "rolled_back", "failed"],
        Duration::from_secs(90),
    );
    assert_eq!(row["state"], "healthy", "{row}");
    assert_eq!(row["from_version"], sunlight_agent::VERSION);
    wait_for(Duration::from_secs(30), "the box to report 0.1.1", || {
        (hub.device(SITE, DEVICE)?["version"] == "0.1.1").then_some(())
    });
    assert_eq!(sha256_file(&installed), new_hash);
    assert_eq!(
        sha256_file(&agent_dir.join("data/update/previous")),
        old_hash
    );
    assert!(!agent_dir.join("data/update/pending.json").exists());
    assert_eq!(sup.starts(), 2, "one restart into the new binary");
    // Published to a box already on 0.1.1: skipped.
    let out = rollout(&hub, "0.1.1", &["--percent", "100"]);
    assert!(
        out.contains("already runs 0.1.1") || out.contains("healthy already"),
        "{out}"
    );

    // 2. Signed by a key the box does not trust (a hub told to trust it too): refused, unchanged.
    let both = hub_config(&dir, "hub-rogue.toml", &[&county_pub, &rogue_pub]);
    let foreign = signed_archive(&dir, b"#!/bin/sh\nexit 0\n", "0.1.2", &rogue_key);
    publish(&hub, &both, "0.1.2", &foreign);
    rollout(&hub, "0.1.2", &["--sites", SITE]);
    let row = wait_state(
        &hub,
        "0.1.2",
        &["failed", "installed", "healthy", "rolled_back"],
        Duration::from_secs(60),
    );
    assert_eq!(row["state"], "failed", "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("does not match any trusted update key")
            && detail.contains("nothing was replaced"),
        "{detail}"
    );
    assert_eq!(sha256_file(&installed), new_hash);

    // 3. A good archive changed at the hub after publishing (its record changed to match, as an
    //    intruder at the hub would): the signature no longer holds; refused, unchanged.
    let good = signed_archive(&dir, b"#!/bin/sh\nexit 0\n", "0.1.3", &county_key);
    publish(&hub, &trusted, "0.1.3", &good);
    let kept = hub.dir.join("updates").join("sunlight-agent-0.1.3.tar.gz");
    let mut bytes = std::fs::read(&kept).unwrap();
    let at = bytes.len() / 4;
    bytes[at] ^= 0x40;
    std::fs::write(&kept, &bytes).unwrap();
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).unwrap();
    conn.execute(
        "UPDATE update_releases SET sha256 = ?1, size = ?2 WHERE version = '0.1.3'",
        rusqlite::params![hex::encode(Sha256::digest(&bytes)), bytes.len() as i64],
    )
    .unwrap();
    drop(conn);
    rollout(&hub, "0.1.3", &["--sites", SITE]);
    let row = wait_state(
        &hub,
        "0.1.3",
        &["failed", "installed", "healthy", "rolled_back"],
        Duration::from_secs(60),
    );
    assert_eq!(row["state"], "failed", "{row}");
    assert!(row["detail"].as_str().unwrap().contains("refused"), "{row}");
    assert_eq!(sha256_file(&installed), new_hash);
    assert!(!agent_dir.join("data/update/pending.json").exists());

    // 4. A properly signed release that does not work: the guard counts its starts, puts 0.1.1
    //    back, and 0.1.1 reports the rollback.
    let starts_before = sup.starts();
    let broken = signed_archive(
        &dir,
        b"#!/bin/sh\necho broken build >&2\nexit 1\n",
        "0.1.4",
        &county_key,
    );
    publish(&hub, &trusted, "0.1.4", &broken);
    rollout(&hub, "0.1.4", &["--sites", SITE]);
    let row = wait_state(
        &hub,
        "0.1.4",
        &["rolled_back", "healthy", "failed"],
        Duration::from_secs(120),
    );
    assert_eq!(row["state"], "rolled_back", "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("0.1.4 did not come up") && detail.contains("0.1.1 runs again"),
        "{detail}"
    );
    assert_eq!(sha256_file(&installed), new_hash, "0.1.1 is back");
    // Installed once, then the script started 3 times, then 0.1.1 again.
    assert!(
        sup.starts() >= starts_before + 4,
        "{} -> {}",
        starts_before,
        sup.starts()
    );
    let alarms = hub.alarms();
    assert!(
        alarms.iter().any(|a| a["kind"] == "update_rolled_back"),
        "{alarms:?}"
    );
    wait_for(
        Duration::from_secs(30),
        "the rollback alarm in a health event",
        || {
            hub.events(SITE, DEVICE, "health")
                .iter()
                .any(|e| {
                    e["body"]["alarms"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["what"] == "update_rolled_back"))
                })
                .then_some(())
        },
    );
    assert_eq!(hub.device(SITE, DEVICE).unwrap()["version"], "0.1.1");

    // 5. restart: answered, executed once (the agent exits once and is started again).
    wait_for(Duration::from_secs(20), "the box back online", || {
        (hub.device(SITE, DEVICE)?["online"] == true).then_some(())
    });
    let before = sup.starts();
    let out = run_ok(
        Command::new(bin("sunlight-hub"))
            .args(["device", "restart", "--data-dir"])
            .arg(&hub.dir)
            .args(["--site", SITE, "--device", DEVICE]),
    );
    let cmd_id = out.split_whitespace().nth(1).unwrap().to_owned();
    wait_for(Duration::from_secs(60), "the restart answered", || {
        let all = hub.get(&format!("/api/v1/commands?site={SITE}"))?;
        let c = all["commands"]
            .as_array()?
            .iter()
            .find(|c| c["cmd_id"] == cmd_id.as_str())?
            .clone();
        (c["state"] == "done").then_some(())
    });
    wait_for(Duration::from_secs(10), "one restart", || {
        (sup.starts() == before + 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sup.starts(), before + 1, "executed once");
    let answers: Vec<Value> = hub
        .events(SITE, DEVICE, "cmd_result")
        .into_iter()
        .filter(|e| e["body"]["cmd_id"] == cmd_id.as_str())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    drop(sup);
    drop(agent);
}

#[test]
fn waves_take_a_stable_share_and_skip_boxes_already_sent() {
    let dir = scratch("update-waves");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let (key, verifying) = update_key(&dir.join("ca"));
    let config = hub_config(&dir, "hub.toml", &[&verifying]);
    let mut boxes = Vec::new();
    for s in 0..10 {
        for d in 0..4 {
            let (site, device) = (format!("suixian-town{s:02}"), format!("box-{d:02}"));
            let k = sunlight_protocol::DeviceKey::generate().unwrap();
            hub.register(&site, &device, &k.public().to_base64());
            boxes.push(format!("{site}/{device}"));
        }
    }
    let archive = signed_archive(&dir, b"#!/bin/sh\nexit 0\n", "0.2.0", &key);
    publish(&hub, &config, "0.2.0", &archive);
    let sent = |out: &str| -> Vec<String> {
        let mut v: Vec<String> = out
            .lines()
            .next()
            .and_then(|l| l.split_once("box(es): ").map(|(_, rest)| rest.to_owned()))
            .map(|rest| {
                rest.split(", ")
                    .filter(|s| s.contains('/'))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let expected = |p: u32| -> Vec<String> {
        let mut v: Vec<String> = boxes
            .iter()
            .filter(|b| {
                let (s, d) = b.split_once('/').unwrap();
                sunlight_hub::store::updates::wave_place(s, d) < p * 100
            })
            .cloned()
            .collect();
        v.sort();
        v
    };
    let ten = sent(&rollout(&hub, "0.2.0", &["--percent", "10"]));
    assert_eq!(ten, expected(10));
    let out = rollout(&hub, "0.2.0", &["--percent", "50"]);
    let fifty = sent(&out);
    // The 50 % wave is the 10 % wave and more: those already sent are skipped, not sent twice.
    let mut union: Vec<String> = ten.iter().chain(fifty.iter()).cloned().collect();
    union.sort();
    assert_eq!(union, expected(50));
    assert!(ten.iter().all(|b| !fifty.contains(b)));
    assert_eq!(out.matches("sent already").count(), ten.len(), "{out}");
    // A list of sites takes their boxes (those not yet sent).
    let sites = sent(&rollout(&hub, "0.2.0", &["--sites", "suixian-town03"]));
    let want: Vec<String> = expected(100)
        .into_iter()
        .filter(|b| b.starts_with("suixian-town03/") && !union.contains(b))
        .collect();
    assert_eq!(sites, want);
    // An unknown site or an unpublished version is refused with the reason.
    let out = Command::new(bin("sunlight-hub"))
        .args(["update", "rollout", "--data-dir"])
        .arg(&hub.dir)
        .args(["--version", "0.2.0", "--sites", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no box is registered for site"));
    let out = Command::new(bin("sunlight-hub"))
        .args(["update", "rollout", "--data-dir"])
        .arg(&hub.dir)
        .args(["--version", "9.9.9", "--percent", "10"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not published"));
    // The hub's view: every box sent so far, waiting for its answer; the release is served.
    let view = hub.get("/api/v1/updates?version=0.2.0").unwrap();
    let rows = view["boxes"].as_array().unwrap();
    assert_eq!(rows.len(), union.len() + sites.len());
    assert!(rows.iter().all(|r| r["state"] == "sent"));
    let manifest = hub.get("/api/v1/box/updates/0.2.0").unwrap();
    assert_eq!(manifest["sha256"], sha256_file(&archive));
    assert_eq!(manifest["archive"], "/api/v1/box/updates/0.2.0/archive");
    // The archive, streamed from its file at the hub: byte for byte what was published.
    let (status, kind, served) = hub
        .get_full("/api/v1/box/updates/0.2.0/archive")
        .expect("the archive");
    assert_eq!((status, kind.as_str()), (200, "application/gzip"));
    assert_eq!(
        served,
        std::fs::read(&archive).expect("the published archive")
    );
    let (status, _) = hub.get_text("/api/v1/box/updates/7.7.7").unwrap();
    assert_eq!(status, 404);
}

/// `POST /api/v1/updates/rollout` takes the same waves as `sunlight-hub update rollout`, is for
/// supervisors and admins only, refuses bad waves with a reason, and audits the signed-in account;
/// `POST /api/v1/commands` records the token's account too, not the body's `by`.
#[test]
fn rollout_over_http_takes_the_same_waves_and_the_audit_names_the_caller() {
    let dir = scratch("update-waves-http");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let (key, verifying) = update_key(&dir.join("ca"));
    let config = hub_config(&dir, "hub.toml", &[&verifying]);
    let mut boxes = Vec::new();
    for s in 0..6 {
        for d in 0..4 {
            let (site, device) = (format!("suixian-town{s:02}"), format!("box-{d:02}"));
            let k = sunlight_protocol::DeviceKey::generate().unwrap();
            hub.register(&site, &device, &k.public().to_base64());
            boxes.push(format!("{site}/{device}"));
        }
    }
    let archive = signed_archive(&dir, b"#!/bin/sh\nexit 0\n", "0.3.0", &key);
    publish(&hub, &config, "0.3.0", &archive);
    let expected = |p: u32| -> Vec<String> {
        let mut v: Vec<String> = boxes
            .iter()
            .filter(|b| {
                let (s, d) = b.split_once('/').unwrap();
                sunlight_hub::store::updates::wave_place(s, d) < p * 100
            })
            .cloned()
            .collect();
        v.sort();
        v
    };
    let names = |v: &Value, key: &str| -> Vec<String> {
        let mut out: Vec<String> = v[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    };

    // A supervisor's token: the rollout is audited with that account (and whom it acts for).
    let sup_token = hub.make_api_token("jiancha", "supervisor", None);
    let sup = http::Client::new();
    sup.set_bearer(&sup_token);
    let url = format!("http://127.0.0.1:{}/api/v1/updates/rollout", hub.http);
    let (status, body) = sup
        .post_json(
            &url,
            &json!({"version": "0.3.0", "percent": 25, "by": "王科长"}),
        )
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let quarter = names(&body, "sent");
    assert_eq!(quarter, expected(25));
    // 100 %: the rest, the quarter skipped as sent already.
    let (status, body) = sup
        .post_json(&url, &json!({"version": "0.3.0", "percent": 100}))
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let rest = names(&body, "sent");
    assert_eq!(rest.len() + quarter.len(), boxes.len());
    assert!(quarter.iter().all(|b| !rest.contains(b)));
    assert_eq!(names(&body, "skipped").len(), quarter.len());
    let view = hub.get("/api/v1/updates?version=0.3.0").unwrap();
    assert_eq!(view["boxes"].as_array().unwrap().len(), boxes.len());

    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).unwrap();
    let who: Vec<String> = conn
        .prepare("SELECT who FROM audit WHERE action = 'update.rollout' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(who, ["jiancha (for 王科长)", "jiancha"], "{who:?}");

    // Bad waves and unknown versions are refused with the reason; nothing is sent.
    for (body, code, says) in [
        (json!({"version": "0.3.0"}), 422, "percent"),
        (
            json!({"version": "0.3.0", "percent": 10, "sites": ["suixian-town01"]}),
            422,
            "not both",
        ),
        (json!({"version": "0.3.0", "percent": 0}), 422, "1 to 100"),
        (
            json!({"version": "9.9.9", "percent": 10}),
            404,
            "not published",
        ),
        (
            json!({"version": "0.3.0", "sites": ["nowhere"]}),
            404,
            "no box is registered",
        ),
        (json!({"version": "0.3.0", "wave": 10}), 422, "percent"),
    ] {
        let (status, answer) = sup.post_json(&url, &body).unwrap();
        assert_eq!(status, code, "{body} → {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    // Technicians see updates but do not roll them out; no token at all is 401.
    let tech = http::Client::new();
    tech.set_bearer(&hub.make_api_token("zhanggong", "technician", None));
    let (status, _) = tech
        .post_json(&url, &json!({"version": "0.3.0", "percent": 100}))
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = http::Client::new()
        .post_json(&url, &json!({"version": "0.3.0", "percent": 100}))
        .unwrap();
    assert_eq!(status, 401);

    // A command sent with a body that claims someone else: the audit names the token's account.
    let (status, body) = sup
        .post_json(
            &format!("http://127.0.0.1:{}/api/v1/commands", hub.http),
            &json!({"site": "suixian-town01", "device": "box-01", "kind": "restart", "by": "admin"}),
        )
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let who: String = conn
        .query_row(
            "SELECT who FROM audit WHERE action = 'command.send' AND target = 'suixian-town01/box-01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(who, "jiancha (for admin)");
    let by: String = conn
        .query_row(
            "SELECT by FROM commands WHERE site = 'suixian-town01' AND device = 'box-01' AND kind = 'restart'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "jiancha (for admin)");
}
