//! Camera snapshots end to end (issue 5): a real box with a fake camera (`kind = "file"`: generated
//! frames or a directory of JPEGs, no hardware) and a real hub with its blob store.
//!
//! - "Snapshot now": the hub's `POST /api/v1/cameras/{site}/{camera}/snapshot` sends the command
//!   through the real broker; the box answers `ok` with the image's sha256 and uploads the image,
//!   signed; the hub serves the same bytes.
//! - An outage (the hub, its broker and its HTTP API all down, and the box killed and restarted in
//!   the middle): kiosk punches are answered at once, photos and scheduled snapshots are spooled;
//!   after it, every punch reaches the hub before any image does, and every image follows.
//! - A full spool: over `quota_mb` the oldest images go, the loss is reported as an alarm at the hub
//!   and in status, and punches are accepted throughout.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use sunlight_agent::capture::camera::jpeg;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A box whose config has `hub_api`, the `[snapshots]` keys and `[[camera]]` sections given.
fn camera_box(dir: &Path, hub: &Hub, broker_port: u16, hub_api: &str, rest: &str) -> Agent {
    let hub_section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\napi = \"{hub_api}\"\n[health]\ninterval_secs = 0\n{rest}\n"
    );
    Agent::new_with_hub(dir, SITE, DEVICE, &hub_section, hub)
}

/// Runs `sunlight-agent -c CONFIG status`.
fn status_text(agent: &Agent) -> String {
    let out = Command::new(bin("sunlight-agent"))
        .arg("-c")
        .arg(&agent.config)
        .arg("status")
        .output()
        .expect("run sunlight-agent status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spool(agent: &Agent) -> Value {
    agent
        .status()
        .map(|s| s["snapshots"]["spool"].clone())
        .unwrap_or_default()
}

/// Raw bytes of a hub path, with the harness's credentials: (status, body).
fn get_bytes(hub: &Hub, path: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = hub.get_full(path).expect("GET");
    (status, body)
}

/// A kiosk punch: (status, answer).
fn kiosk_punch(agent: &Agent, staff: &str) -> (u16, Value) {
    http::Client::new()
        .post_json(
            &format!("http://127.0.0.1:{}/kiosk/punch", agent.intake),
            &json!({"staff_id": staff, "pin": "1234", "direction": "in"}),
        )
        .expect("POST /kiosk/punch")
}

/// `(sha256, received_ms)` of the images the hub holds, and the punches' latest `received_ms`.
fn hub_arrivals(hub: &Hub) -> (Vec<(String, i64)>, Option<i64>) {
    let conn = rusqlite::Connection::open_with_flags(
        hub.dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the hub's store");
    let blobs = conn
        .prepare("SELECT sha256, received_ms FROM blobs")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .expect("blobs");
    let punches = conn
        .query_row(
            "SELECT max(received_ms) FROM events WHERE kind = 'punch'",
            [],
            |r| r.get(0),
        )
        .expect("punches");
    (blobs, punches)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The box's answer to the calendar the hub sends every box it registers.
fn is_calendar(answer: &Value) -> bool {
    answer["body"]["cmd_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("set_calendar-"))
}

#[test]
fn snapshot_now_through_the_real_broker_is_answered_with_the_image_and_uploaded_signed() {
    let dir = scratch("cameras-now");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let api = format!("http://127.0.0.1:{}", hub.http);
    let mut agent = camera_box(
        &dir.join("agent"),
        &hub,
        hub.mqtt_port(),
        &api,
        "[[camera]]\nid = \"w1\"\nkind = \"file\"\nwidth = 800\nheight = 600\n",
    );
    agent.start();
    wait_for(Duration::from_secs(20), "the box online", || {
        agent
            .status()
            .filter(|s| s["link"]["connected"] == true)
            .map(|_| ())
    });

    // The supervisor's "look at window 1 now".
    let (status, answer) = hub
        .post(
            &format!("/api/v1/cameras/{SITE}/w1/snapshot?wait=30"),
            &json!({}),
        )
        .expect("POST snapshot");
    assert_eq!(status, 200, "{answer}");
    let snapshot = &answer["snapshot"];
    assert_eq!(
        (
            &snapshot["trigger"],
            &snapshot["image"],
            &snapshot["width"],
            &snapshot["height"]
        ),
        (
            &json!("command"),
            &json!("uploaded"),
            &json!(800),
            &json!(600)
        ),
        "{answer}"
    );
    let sha256 = snapshot["sha256"].as_str().expect("sha256").to_owned();

    // The hub serves exactly the bytes the box took: a JPEG of the size the event says.
    let (status, bytes) = get_bytes(&hub, &format!("/api/v1/blobs/{sha256}"));
    assert_eq!(status, 200);
    assert_eq!(sha(&bytes), sha256);
    assert_eq!(
        jpeg::dimensions(&bytes),
        Ok(jpeg::Dimensions {
            width: 800,
            height: 600
        })
    );
    assert_eq!(snapshot["bytes"].as_u64(), Some(bytes.len() as u64));

    // The answer: ok, with the sha256 in detail, once. (The box answers the calendar every
    // registered box is sent too.)
    let answers = wait_for(Duration::from_secs(20), "the cmd_result at the hub", || {
        let a: Vec<_> = hub
            .events(SITE, DEVICE, "cmd_result")
            .into_iter()
            .filter(|e| !is_calendar(e))
            .collect();
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        (&answers[0]["body"]["ok"], &answers[0]["body"]["detail"]),
        (&json!(true), &json!(sha256))
    );
    let snapshots = hub.events(SITE, DEVICE, "snapshot");
    assert_eq!(snapshots.len(), 1);
    assert!(
        snapshots[0]["seq"].as_u64() < answers[0]["seq"].as_u64(),
        "the image's event comes before the answer"
    );

    // The box says what it did.
    let spool = wait_for(
        Duration::from_secs(10),
        "the spool to show the upload",
        || {
            let s = spool(&agent);
            (s["uploaded_total"] == 1 && s["waiting"] == 0).then_some(s)
        },
    );
    assert_eq!(spool["images"], 1);
    let text = status_text(&agent);
    for expected in [
        "spool      1 images",
        "0 waiting for upload",
        &format!("upload     {api}"),
        "camera     w1 (file generated frames) — ok; 1 pictures, 0 errors",
    ] {
        assert!(
            text.contains(expected),
            "status lacks {expected:?}:\n{text}"
        );
    }

    // A camera the box does not have: answered, not ok, and nothing uploaded.
    let (status, _) = hub
        .post(
            &format!("/api/v1/cameras/{SITE}/roof/snapshot?wait=3"),
            &json!({}),
        )
        .expect("POST snapshot");
    assert_eq!(status, 202);
    let refused = wait_for(Duration::from_secs(20), "the refusal", || {
        hub.events(SITE, DEVICE, "cmd_result")
            .into_iter()
            .find(|a| a["body"]["ok"] == false)
    });
    assert!(
        refused["body"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no camera \"roof\" on this box (cameras: w1)")),
        "{refused}"
    );
    agent.kill9();
    assert_eq!(hub.integrity(), "ok");
}

#[test]
fn after_an_outage_punches_reach_the_hub_first_and_every_spooled_image_follows() {
    let dir = scratch("cameras-outage");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let api = format!("http://127.0.0.1:{}", hub.http);
    // The kiosk's camera photographs punches; the window camera shoots every second, all day.
    let mut agent = camera_box(
        &dir.join("agent"),
        &hub,
        hub.mqtt_port(),
        &api,
        r#"[snapshots]
punch_camera = "kiosk-cam"
upload_max_backlog = 0
office_hours = ["00:00-24:00"]
office_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[camera]]
id = "kiosk-cam"
kind = "file"
[[camera]]
id = "w1"
kind = "file"
width = 320
height = 240
every_secs = 1
"#,
    );
    agent.start();
    wait_for(
        Duration::from_secs(20),
        "a first scheduled image uploaded",
        || (spool(&agent)["uploaded_total"].as_u64() >= Some(1)).then_some(()),
    );

    // The county's link goes down: hub, broker and blob store at once.
    hub.kill9();
    let cut_ms = now_ms();
    let mut punched = Vec::new();
    for n in 0..6 {
        let started = Instant::now();
        let (status, answer) = kiosk_punch(&agent, &format!("90{n:02}"));
        assert_eq!(status, 201, "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a punch waited {:?}",
            started.elapsed()
        );
        punched.push(answer["seq"].as_u64().expect("seq"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let during = wait_for(
        Duration::from_secs(20),
        "images spooled during the outage",
        || {
            let s = spool(&agent);
            (s["waiting"].as_u64() >= Some(8)).then_some(s)
        },
    );
    assert!(during["oldest_waiting"].is_string(), "{during}");
    let live = agent.status().expect("status");
    assert_eq!(live["link"]["connected"], false);
    // Uploads wait for the events: nothing is tried while punches wait for the hub.
    assert!(
        live["snapshots"]["upload"]["doing"]
            .as_str()
            .is_some_and(|d| d.contains("events go to the hub first")),
        "{}",
        live["snapshots"]["upload"]
    );

    // The box is killed in the middle of it and comes back: the spool index is on disk.
    agent.kill9();
    agent.start();
    std::thread::sleep(Duration::from_secs(2));
    // (The first request after the restart may meet the old process's pooled connection.)
    let waiting_before = wait_for(Duration::from_secs(10), "the restarted box's spool", || {
        spool(&agent)["waiting"].as_u64()
    });
    assert!(waiting_before >= 8, "{waiting_before}");

    hub.start();
    let back_ms = now_ms();
    let punches = wait_for(Duration::from_secs(60), "the punches at the hub", || {
        let p = hub.events(SITE, DEVICE, "punch");
        (p.len() == punched.len()).then_some(p)
    });
    wait_for(
        Duration::from_secs(60),
        "every spooled image uploaded",
        || {
            let (blobs, _) = hub_arrivals(&hub);
            let after = blobs.iter().filter(|(_, at)| *at >= back_ms).count() as u64;
            (after >= waiting_before).then_some(())
        },
    );

    // Punches first: every image that arrived after the outage came after the last punch.
    let (blobs, last_punch) = hub_arrivals(&hub);
    let last_punch = last_punch.expect("punches at the hub");
    let first_image_after = blobs
        .iter()
        .filter(|(_, at)| *at >= back_ms)
        .map(|(_, at)| *at)
        .min()
        .expect("images after the outage");
    assert!(
        first_image_after >= last_punch,
        "an image ({first_image_after}) arrived before the last punch ({last_punch})"
    );

    // Every snapshot event at the hub has its image, and every image is what its event says.
    let at_hub: std::collections::HashSet<String> = blobs.iter().map(|(s, _)| s.clone()).collect();
    let snapshots = wait_for(
        Duration::from_secs(30),
        "all snapshot images at the hub",
        || {
            let s = hub.events(SITE, DEVICE, "snapshot");
            let (blobs, _) = hub_arrivals(&hub);
            let have: std::collections::HashSet<String> =
                blobs.into_iter().map(|(s, _)| s).collect();
            let taken_before_now: Vec<&Value> = s
                .iter()
                .filter(|e| {
                    chrono::DateTime::parse_from_rfc3339(
                        e["body"]["taken_at"].as_str().unwrap_or(""),
                    )
                    .is_ok_and(|t| t.timestamp_millis() < back_ms)
                })
                .collect();
            taken_before_now
                .iter()
                .all(|e| {
                    e["body"]["sha256"]
                        .as_str()
                        .is_some_and(|h| have.contains(h))
                })
                .then_some(s)
        },
    );
    assert!(!at_hub.is_empty());
    let outage_images = snapshots
        .iter()
        .filter(|e| {
            chrono::DateTime::parse_from_rfc3339(e["body"]["taken_at"].as_str().unwrap_or(""))
                .is_ok_and(|t| t.timestamp_millis() >= cut_ms && t.timestamp_millis() < back_ms)
        })
        .count();
    assert!(
        outage_images >= 8,
        "{outage_images} images taken during the outage"
    );

    // Each punch has its photo: named by the punch when it was ready in time, and always naming
    // the punch (punch_seq).
    for punch in &punches {
        let seq = punch["seq"].as_u64().expect("seq");
        let photo = snapshots
            .iter()
            .find(|s| {
                s["body"]["trigger"] == "punch" && s["body"]["punch_seq"].as_u64() == Some(seq)
            })
            .unwrap_or_else(|| panic!("no photo for punch {seq}"));
        assert_eq!(photo["body"]["camera_id"], "kiosk-cam");
        if let Some(named) = punch["body"]["photo"].as_str() {
            assert_eq!(Some(named), photo["body"]["sha256"].as_str());
        }
        assert!(
            photo["seq"].as_u64() > Some(seq),
            "the photo's event follows its punch"
        );
    }
    agent.kill9();
    assert_eq!(hub.integrity(), "ok");
    assert_eq!(integrity(&agent.outbox()), "ok");
}

/// A JPEG of about `kib` KiB: a generated frame padded with comment segments.
fn padded_jpeg(seed: u64, kib: usize) -> Vec<u8> {
    let frame = jpeg::generate(320, 240, seed, &format!("frame {seed}"));
    let mut out = frame[..2].to_vec();
    let mut left = kib * 1024;
    while left > 0 {
        let n = left.min(60_000);
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((n + 2) as u16).to_be_bytes());
        out.extend(std::iter::repeat_n(b'x', n));
        left -= n;
    }
    out.extend_from_slice(&frame[2..]);
    out
}

#[test]
fn a_full_spool_evicts_the_oldest_images_with_an_alarm_while_punches_are_accepted() {
    let dir = scratch("cameras-quota");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).expect("frames dir");
    for n in 0..12 {
        std::fs::write(frames.join(format!("{n:02}.jpg")), padded_jpeg(n, 250)).expect("frame");
    }
    // The blob store is out of reach (nothing listens there): nothing is ever uploaded.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut agent = camera_box(
        &dir.join("agent"),
        &hub,
        hub.mqtt_port(),
        &nowhere,
        &format!(
            r#"[snapshots]
quota_mb = 1
office_hours = ["00:00-24:00"]
office_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[camera]]
id = "w1"
kind = "file"
dir = "{}"
every_secs = 1
"#,
            frames.display()
        ),
    );
    agent.start();
    let mut accepted = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let n = accepted.len() as u64;
        assert!(agent.punch(n), "punch {n} refused while the spool is full");
        accepted.push(n);
        let s = spool(&agent);
        if s["evicted_waiting_total"].as_u64() >= Some(3) && accepted.len() >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "no eviction: {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = spool(&agent);
    assert!(s["bytes"].as_u64() <= Some(1024 * 1024), "{s}");
    assert_eq!(s["uploaded_total"], 0);
    let live = agent.status().expect("status");
    let alarm = live["alarms"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["what"] == "snapshots_evicted_unuploaded")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no alarm in status: {live}"));
    assert!(alarm["count"].as_u64() >= Some(1), "{alarm}");
    let text = status_text(&agent);
    assert!(
        text.contains("ALARM") && text.contains("snapshots_evicted_unuploaded"),
        "{text}"
    );
    assert!(text.contains("never uploaded"), "{text}");

    // At the hub: every punch, and the alarm in a health event with how many images were lost.
    let events = wait_for(Duration::from_secs(30), "the punches at the hub", || {
        let e = hub.events(SITE, DEVICE, "punch");
        (e.len() >= accepted.len()).then_some(e)
    });
    assert_exactly_once(&events, &accepted);
    let lost: u64 = wait_for(Duration::from_secs(30), "the alarm at the hub", || {
        let lost: u64 = hub
            .events(SITE, DEVICE, "health")
            .iter()
            .flat_map(|h| h["body"]["alarms"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["what"] == "snapshots_evicted_unuploaded")
            .filter_map(|a| a["count"].as_u64())
            .sum();
        (lost >= 1).then_some(lost)
    });
    assert!(lost <= spool(&agent)["evicted_waiting_total"].as_u64().unwrap_or(0));
    // Every snapshot event is still there: images go, events never.
    let snapshots = hub.events(SITE, DEVICE, "snapshot");
    assert!(snapshots.len() as u64 >= s["images"].as_u64().unwrap_or(0) + lost);
    agent.kill9();
    assert_eq!(integrity(&agent.outbox()), "ok");
}
