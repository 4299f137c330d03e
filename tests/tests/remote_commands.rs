//! Remote maintenance commands end to end (issue 7): `sunlight-hub command send` and `POST
//! /api/v1/commands` record a command, the hub publishes it through a real Mosquitto, the real
//! agent executes it and answers once through its outbox.
//!
//! - `upload_logs`: the box's log file reaches the hub signed by its key, and people list and read
//!   it. The agent is SIGKILLed after the upload and before its answer: on the hub's next publish
//!   the restarted agent runs the command again, the hub keeps the first upload (one per command),
//!   and exactly one `cmd_result` arrives.
//! - `reload_config`: the same kill between effect and answer, one answer; then a bad agent.toml
//!   is refused with the reason while the agent keeps running on its config; then a new `[import]`
//!   drop folder is applied at once (a file dropped there is imported) and a changed `[intake]` is
//!   reported as waiting for a restart.

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";

/// Starts the agent, optionally holding each maintenance answer `hold_ms` after its effect.
fn start(agent: &mut Agent, hold_ms: Option<u64>) {
    let mut cmd = Command::new(bin("sunlight-agent"));
    cmd.arg("-c").arg(&agent.config).arg("run");
    if let Some(ms) = hold_ms {
        cmd.env("SUNLIGHT_AGENT_TEST_HOLD_ANSWER_MS", ms.to_string());
    }
    agent.proc = Some(Proc::spawn(&mut cmd, agent.dir.join("agent.log")));
    wait_for(Duration::from_secs(20), "the agent's intake", || {
        std::net::TcpStream::connect(("127.0.0.1", agent.intake)).ok()
    });
}

/// `sunlight-hub command send`: the command id.
fn send(hub: &Hub, kind: &str, args: Option<&str>) -> String {
    let mut cmd = Command::new(bin("sunlight-hub"));
    cmd.args([
        "command", "send", "--site", SITE, "--device", DEVICE, "--kind", kind,
    ])
    .arg("--data-dir")
    .arg(&hub.dir);
    if let Some(a) = args {
        cmd.args(["--args", a]);
    }
    let out = cmd.output().expect("sunlight-hub command send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The command as `GET /api/v1/commands` shows it.
fn command(hub: &Hub, cmd_id: &str) -> Value {
    hub.get(&format!("/api/v1/commands?site={SITE}"))
        .and_then(|v| {
            v["commands"]
                .as_array()?
                .iter()
                .find(|c| c["cmd_id"] == cmd_id)
                .cloned()
        })
        .unwrap_or(Value::Null)
}

fn answered(hub: &Hub, cmd_id: &str) -> Value {
    wait_for(Duration::from_secs(60), "the command's answer", || {
        let c = command(hub, cmd_id);
        (c["state"] == "done" || c["state"] == "failed").then_some(c)
    })
}

/// The `cmd_result` events at the hub for one command.
fn results(hub: &Hub, cmd_id: &str) -> Vec<Value> {
    hub.events(SITE, DEVICE, "cmd_result")
        .into_iter()
        .filter(|e| e["body"]["cmd_id"] == cmd_id)
        .collect()
}

fn log_of(agent: &Agent) -> String {
    std::fs::read_to_string(agent.dir.join("agent.log")).unwrap_or_default()
}

/// Kills the agent once it logged that the command's effect is done and its answer is held.
fn kill_before_the_answer(agent: &mut Agent, hub: &Hub, cmd_id: &str) {
    wait_for(
        Duration::from_secs(30),
        "the command executed, answer held",
        || {
            let log = log_of(agent);
            (log.contains(cmd_id) && log.contains("holding the command's answer")).then_some(())
        },
    );
    agent.kill9();
    assert_eq!(
        command(hub, cmd_id)["state"],
        "waiting",
        "answered before the kill"
    );
    // The old log is kept for the assertions; the restarted agent writes its own.
    let _ = std::fs::rename(
        agent.dir.join("agent.log"),
        agent.dir.join("agent-killed.log"),
    );
}

fn box_with(dir: &Path, hub: &Hub, broker: u16, rest: &str) -> Agent {
    let hub_section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{broker}\"\napi = \"http://127.0.0.1:{}\"\n[health]\ninterval_secs = 0\n{rest}",
        hub.http
    );
    Agent::new_with_hub(dir, SITE, DEVICE, &hub_section, hub)
}

#[test]
fn upload_logs_is_stored_once_and_answered_once_even_when_the_box_dies_before_answering() {
    let dir = scratch("remote-logs");
    let broker = Mosquitto::start(&dir.join("mosquitto"));
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(broker.port));
    hub.extra_args = vec!["--command-resend-secs".into(), "2".into()];
    let mut agent = box_with(&dir.join("box"), &hub, broker.port, "");
    hub.start();
    start(&mut agent, Some(4000));
    assert!(agent.punch(1));

    let cmd_id = send(&hub, "upload_logs", Some(r#"{"max_kb": 64}"#));
    assert!(cmd_id.starts_with("upload_logs-"), "{cmd_id}");
    kill_before_the_answer(&mut agent, &hub, &cmd_id);
    // The effect happened (the log is at the hub), the answer did not.
    let logs = format!("/api/v1/devices/{SITE}/{DEVICE}/logs");
    let listed = hub.get(&logs).unwrap();
    assert_eq!(listed["logs"].as_array().unwrap().len(), 1, "{listed:#}");
    let first_sha = listed["logs"][0]["sha256"].clone();

    start(&mut agent, None);
    let c = answered(&hub, &cmd_id);
    assert_eq!(c["state"], "done", "{c:#}");
    assert!(
        c["detail"].as_str().unwrap().contains("uploaded before"),
        "the second run found the first upload: {c:#}"
    );
    // Once: one upload kept, one answer (give a late duplicate the chance to show up).
    // (The test's HTTP client may hold a connection to the killed process: try again.)
    wait_for(Duration::from_secs(10), "a punch accepted", || {
        agent.punch(2).then_some(())
    });
    wait_for(
        Duration::from_secs(30),
        "the punch after the answer",
        || (hub.events(SITE, DEVICE, "punch").len() == 2).then_some(()),
    );
    assert_eq!(results(&hub, &cmd_id).len(), 1);
    let listed = hub.get(&logs).unwrap();
    assert_eq!(listed["logs"].as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed["logs"][0]["sha256"], first_sha);
    assert_eq!(listed["logs"][0]["cmd_id"], cmd_id.as_str());
    let id = listed["logs"][0]["id"].as_i64().unwrap();
    let (status, text) = hub.get_text(&format!("{logs}/{id}")).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("agent started"), "{text}");

    // Through the API, a second upload without a kill: answered ok with its sha256.
    let (status, sent) = hub
        .post(
            "/api/v1/commands",
            &json!({"site": SITE, "device": DEVICE, "kind": "upload_logs", "by": "test"}),
        )
        .unwrap();
    assert_eq!(status, 202, "{sent}");
    let second = sent["commands"][0].as_str().unwrap().to_owned();
    let c = answered(&hub, &second);
    assert_eq!(c["state"], "done", "{c:#}");
    let result = &results(&hub, &second)[0]["body"];
    assert_eq!(result["ok"], true);
    assert!(result["bytes"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(hub.get(&logs).unwrap()["logs"].as_array().unwrap().len(), 2);

    // Refusals people get: an unknown kind, a box that does not exist.
    let (status, body) = hub
        .post(
            "/api/v1/commands",
            &json!({"site": SITE, "device": DEVICE, "kind": "teleport"}),
        )
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown command kind")
    );
    let (status, body) = hub
        .post(
            "/api/v1/commands",
            &json!({"site": SITE, "device": "box-77", "kind": "upload_logs"}),
        )
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, _) = hub
        .get_text(&format!("/api/v1/devices/{SITE}/{DEVICE}/logs/999"))
        .unwrap();
    assert_eq!(status, 404);
    // Uploads: one not asked for by a command is refused even when signed with the box's own
    // key; a signature over another command's id, or none, is refused.
    let key = std::fs::read_to_string(agent.dir.join("data").join("device.key")).unwrap();
    let key = sunlight_protocol::DeviceKey::from_hex(&key).unwrap();
    let (code, answer) = put_log(
        &hub,
        &key,
        "upload_logs-invented-1",
        "upload_logs-invented-1",
    );
    assert_eq!(code, 404, "{answer}");
    assert!(answer.contains("no upload_logs command"), "{answer}");
    let (code, answer) = put_log(&hub, &key, &second, "upload_logs-other");
    assert_eq!(code, 401, "{answer}");
    assert_eq!(hub.get(&logs).unwrap()["logs"].as_array().unwrap().len(), 2);
}

/// A signed `PUT /api/v1/box/logs/{sha256}?cmd_id=` as a box sends it, with the signature made
/// over `signed_cmd`: (status, body).
fn put_log(
    hub: &Hub,
    key: &sunlight_protocol::DeviceKey,
    cmd_id: &str,
    signed_cmd: &str,
) -> (u16, String) {
    use sha2::Digest;
    use std::io::{Read, Write};
    let body = b"a log nobody asked for\n";
    let sha = hex::encode(sha2::Sha256::digest(body));
    let time = chrono::Utc::now().to_rfc3339();
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        key.sign(&sunlight_protocol::boxlogs::put_message(
            &sha, signed_cmd, SITE, DEVICE, &time,
        )),
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", hub.http)).unwrap();
    write!(
        stream,
        "PUT /api/v1/box/logs/{sha}?cmd_id={cmd_id} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\
         content-length: {}\r\nx-sunlight-site: {SITE}\r\nx-sunlight-device: {DEVICE}\r\n\
         x-sunlight-time: {time}\r\nx-sunlight-signature: {sig}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn reload_config_is_answered_once_refuses_a_bad_file_and_applies_the_import_folder_live() {
    let dir = scratch("remote-reload");
    let broker = Mosquitto::start(&dir.join("mosquitto"));
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::External(broker.port));
    hub.extra_args = vec!["--command-resend-secs".into(), "2".into()];
    let mut agent = box_with(&dir.join("box"), &hub, broker.port, "");
    hub.start();
    let good = std::fs::read_to_string(&agent.config).unwrap();

    // Killed between the reload and its answer: answered once after the restart.
    start(&mut agent, Some(4000));
    let cmd_id = send(&hub, "reload_config", None);
    kill_before_the_answer(&mut agent, &hub, &cmd_id);
    start(&mut agent, None);
    let c = answered(&hub, &cmd_id);
    assert_eq!(c["state"], "done", "{c:#}");
    assert!(c["detail"].as_str().unwrap().contains("is valid"), "{c:#}");
    assert!(agent.punch(1));
    wait_for(Duration::from_secs(30), "a punch after the answer", || {
        (hub.events(SITE, DEVICE, "punch").len() == 1).then_some(())
    });
    assert_eq!(results(&hub, &cmd_id).len(), 1);

    // A bad file: refused with the reason, the agent keeps running on its config.
    std::fs::write(
        &agent.config,
        format!("{good}\n[sync]\nwindow = \"many\"\n"),
    )
    .unwrap();
    let bad = send(&hub, "reload_config", None);
    let c = answered(&hub, &bad);
    assert_eq!(c["state"], "failed", "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains("running configuration is kept"), "{detail}");
    assert!(agent.punch(2));

    // A new drop folder is applied at once; a new intake address waits for a restart.
    let drop = dir.join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let intake_line = format!("listen = \"127.0.0.1:{}\"", agent.intake);
    let moved = format!("listen = \"127.0.0.1:{}\"", free_port());
    std::fs::write(
        &agent.config,
        format!(
            "{}\n[import]\ndir = \"{}\"\npoll_secs = 1\n",
            good.replace(&intake_line, &moved),
            drop.display()
        ),
    )
    .unwrap();
    let live = send(&hub, "reload_config", None);
    let c = answered(&hub, &live);
    assert_eq!(c["state"], "done", "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("applied now: import")
            && detail.contains("takes effect at the next restart: intake"),
        "{detail}"
    );
    let result = &results(&hub, &live)[0]["body"];
    assert_eq!(result["applied"], json!(["import"]));
    assert_eq!(result["needs_restart"], json!(["intake"]));
    // The intake still listens where it did (no restart), and the new folder is watched.
    assert!(agent.punch(3));
    std::fs::write(
        drop.join("case-export.csv"),
        "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型,时限,时限单位,申请人,联系电话,时间,备注\n\
         C-201,MZ-001,老年优待证,民政办,W1,受理,0451,承诺件,5,工作日,张三,,2025-11-03 09:00,\n",
    )
    .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the dropped file's case at the hub",
        || (!hub.events(SITE, DEVICE, "case").is_empty()).then_some(()),
    );
    wait_for(Duration::from_secs(30), "the punches at the hub", || {
        (hub.events(SITE, DEVICE, "punch").len() == 3).then_some(())
    });
    for id in [&cmd_id, &bad, &live] {
        assert_eq!(results(&hub, id).len(), 1, "{id}");
    }
}
