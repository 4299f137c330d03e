//! The box's doors against the LAN (issue 14, parts 5 and 7), with the real agent: the intake API
//! takes only keyed JSON of the kinds a key was issued for, never the box's own kinds, and keeps
//! no secret it could serve; an XLSX bomb is refused with 413 over HTTP and goes to `failed/` once
//! from the drop folder, the agent staying up and importing the next file.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";

fn case(case_no: &str) -> Value {
    json!({"kind": "case", "at": "2025-11-03T09:00:00+08:00", "body": {"case_no": case_no,
        "item_code": "MZ-001", "item_name": "老年优待证", "unit": "民政办", "window": "W1",
        "stage": "accepted", "staff_id": "0451", "kind": "immediate"}})
}

fn error(answer: &str) -> String {
    serde_json::from_str::<Value>(answer)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.to_owned())
}

/// POSTs `event` as JSON with `key` (none: no Authorization): (status, error or body).
fn post(agent: &Agent, key: Option<&str>, event: &Value) -> (u16, String) {
    let client = match key {
        Some(k) => intake_client(k),
        None => http::Client::new(),
    };
    let (status, text) = client
        .post_typed(
            &agent.intake_url(),
            "application/json",
            event.to_string().into_bytes(),
        )
        .expect("the intake answers");
    (status, error(&text))
}

#[test]
fn the_intake_takes_only_keyed_json_of_the_keys_kinds() {
    let dir = scratch("intake-keys");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "[health]\ninterval_secs = 0\n",
    );
    agent.start();
    // The hub's calendar comes first (one cmd_result event); count from there.
    agent.wait_for_calendar();
    let base = agent.status().expect("status")["backlog"]["head_seq"]
        .as_u64()
        .expect("head_seq");
    let approval = add_intake_key(&agent.config, "approval", "case", false);
    assert!(approval.starts_with("sik_"), "{approval}");

    // No key, or a made-up one: 401, saying how to get one.
    for key in [None, Some("sik_0123"), Some("Basic YWRtaW46YWRtaW4=")] {
        let (status, why) = post(&agent, key, &case("C-0"));
        assert_eq!(status, 401, "{key:?}: {why}");
        assert!(why.contains("sunlight-agent intake-key add"), "{why}");
    }
    // A key for cases: no punch, no rating; the box's own kinds with any key, even the local one.
    let punch = punch_event(1);
    let (status, why) = post(&agent, Some(&approval), &punch);
    assert_eq!(status, 403, "{why}");
    assert!(
        why.contains("punch") && why.contains("never from the LAN"),
        "{why}"
    );
    let rating = json!({"kind": "rating", "body": {"window": "W1", "level": 5, "channel": "pad"}});
    let (status, why) = post(&agent, Some(&approval), &rating);
    assert_eq!(status, 403, "{why}");
    assert!(why.contains("approval may post case, not rating"), "{why}");
    let health =
        json!({"kind": "health", "body": {"uptime_s": 1, "disk_free_mb": 1, "backlog": 0}});
    let cmd_result = json!({"kind": "cmd_result", "body": {"cmd_id": "c-1", "ok": true}});
    for key in [&approval, &agent.intake_key] {
        for forged in [&health, &cmd_result] {
            let (status, why) = post(&agent, Some(key), forged);
            assert_eq!(status, 403, "{forged}: {why}");
        }
    }
    // A batch with one forbidden event records none of it.
    let (status, _) = post(&agent, Some(&approval), &json!([case("C-9"), punch]));
    assert_eq!(status, 403);
    // JSON only as JSON: a form or text/plain (what a web page may send anywhere) is 415.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, text) = intake_client(&approval)
            .post_typed(
                &agent.intake_url(),
                content_type,
                case("C-0").to_string().into_bytes(),
            )
            .expect("answer");
        assert_eq!(status, 415, "{content_type}: {text}");
        assert!(error(&text).contains("application/json"), "{text}");
    }
    let status = agent.status().expect("status");
    assert_eq!(
        status["backlog"]["head_seq"], base,
        "nothing refused was recorded"
    );

    // The right key: 201, recorded, at the hub.
    let (status, answer) = post(&agent, Some(&approval), &case("C-1"));
    assert_eq!(status, 201, "{answer}");
    let status = agent.status().expect("status");
    assert_eq!(status["backlog"]["head_seq"], base + 1, "{status}");
    wait_for(Duration::from_secs(30), "the case at the hub", || {
        hub.events(SITE, "box-01", "case")
            .iter()
            .any(|e| e["body"]["case_no"] == "C-1")
            .then_some(())
    });
    // The same key as an import: only its kind.
    let import = |kind: &str| {
        intake_client(&approval)
            .post_bytes(
                &format!(
                    "http://127.0.0.1:{}/api/v1/import?kind={kind}",
                    agent.intake
                ),
                "满意度,评价渠道\n5,pad\n".as_bytes().to_vec(),
            )
            .expect("answer")
    };
    assert_eq!(import("rating").0, 403);
    let (status, _) = http::Client::new()
        .post_bytes(
            &format!("http://127.0.0.1:{}/api/v1/import?kind=case", agent.intake),
            b"a\n1\n".to_vec(),
        )
        .expect("answer");
    assert_eq!(status, 401);

    // Revoked on the command line while the agent runs: refused from the next request.
    let out = std::process::Command::new(bin("sunlight-agent"))
        .arg("-c")
        .arg(&agent.config)
        .args(["intake-key", "revoke", "approval"])
        .output()
        .expect("run intake-key revoke");
    assert!(out.status.success(), "{out:?}");
    let (status, why) = post(&agent, Some(&approval), &case("C-2"));
    assert_eq!(status, 401, "{why}");
    let list = std::process::Command::new(bin("sunlight-agent"))
        .arg("-c")
        .arg(&agent.config)
        .args(["intake-key", "list"])
        .output()
        .expect("run intake-key list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("harness") && !list.contains("approval"),
        "{list}"
    );
    assert!(!list.contains("sik_"), "list never shows a key: {list}");
    assert!(agent.proc.as_mut().is_some_and(Proc::is_running));
}

#[test]
fn the_key_hashes_cannot_be_read_through_the_box() {
    let dir = scratch("intake-keys-attack");
    let hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        free_port(),
        &hub,
        "[health]\ninterval_secs = 0\n[kiosk]\nenabled = true\n",
    );
    agent.start();
    let file = agent.dir.join("data").join("intake_keys.json");
    let stored = std::fs::read_to_string(&file).expect("the key file");
    let secret = &agent.intake_key["sik_".len()..];
    assert!(!stored.contains(secret), "only the hash is stored");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let hash = serde_json::from_str::<Value>(&stored).expect("json")["keys"][0]["sha256"]
        .as_str()
        .expect("a hash")
        .to_owned();
    // Every way to the file a web server might offer, with the key and without.
    let base = format!("http://127.0.0.1:{}", agent.intake);
    let with_key = intake_client(&agent.intake_key);
    let without = http::Client::new();
    for path in [
        "/intake_keys.json",
        "/data/intake_keys.json",
        "/api/v1/intake_keys.json",
        "/api/v1/../intake_keys.json",
        "/api/v1/%2e%2e/intake_keys.json",
        "/kiosk/../intake_keys.json",
        "/kiosk/%2e%2e%2fintake_keys.json",
        "/api/v1/keys",
        "/api/v1/intake-keys",
        "/api/v1/status",
        "/api/v1/openapi.json",
        "/kiosk",
        "/healthz",
    ] {
        for client in [&with_key, &without] {
            let (status, _, body) = client
                .get_full(&format!("{base}{path}"))
                .expect("an answer");
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains(&hash) && !body.contains(secret) && !body.contains("sha256\":"),
                "{path} ({status}) shows the keys: {body}"
            );
        }
    }
    // Nor does a refusal or the agent's log carry the key or its hash.
    let (_, why) = post(
        &agent,
        Some(&agent.intake_key),
        &json!({"kind": "health", "body": {}}),
    );
    assert!(!why.contains(&hash) && !why.contains(secret), "{why}");
    let log = std::fs::read_to_string(agent.dir.join("agent.log")).unwrap_or_default();
    assert!(!log.contains(&hash) && !log.contains(secret));
    assert!(agent.proc.as_mut().is_some_and(Proc::is_running));
}

/// A ZIP holding `[Content_Types].xml` and shared strings of `gib` GiB of one byte, deflated to a
/// few MB: one deflate block of 1 MiB, flushed to a byte boundary, repeated (each copy refers only
/// to the bytes just before it). The shared strings declare `declared` bytes (their true size, or
/// a lie).
fn xlsx_bomb(gib: u64, declared: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflate = Compress::new(Compression::best(), false);
    let chunk = vec![b'a'; 1 << 20];
    let mut block = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(64 * 1024);
        deflate
            .compress_vec(input, &mut out, flush)
            .expect("deflate");
        out
    };
    let first = block(&chunk, FlushCompress::Sync);
    let again = block(&chunk, FlushCompress::Sync);
    let end = block(&[], FlushCompress::Finish);
    let mut data = first;
    for _ in 1..gib * 1024 {
        data.extend_from_slice(&again);
    }
    data.extend_from_slice(&end);

    let types = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;
    let parts: [(&str, u16, &[u8], u32); 2] = [
        ("[Content_Types].xml", 0, types, types.len() as u32),
        ("xl/sharedStrings.xml", 8, &data, declared),
    ];
    let mut zip = Vec::new();
    let mut central = Vec::new();
    for (name, method, bytes, unpacked) in parts {
        let offset = zip.len() as u32;
        let crc = if method == 0 {
            crc32(bytes)
        } else {
            0 // never reached: the bound trips long before the end
        };
        let fields = |zip: &mut Vec<u8>| {
            zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
            zip.extend_from_slice(&0u16.to_le_bytes()); // flags
            zip.extend_from_slice(&method.to_le_bytes());
            zip.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            zip.extend_from_slice(&crc.to_le_bytes());
            zip.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            zip.extend_from_slice(&unpacked.to_le_bytes());
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        zip.extend_from_slice(b"PK\x03\x04");
        fields(&mut zip);
        zip.extend_from_slice(name.as_bytes());
        zip.extend_from_slice(bytes);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        fields(&mut central);
        central.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let at = zip.len() as u32;
    zip.extend_from_slice(&central);
    zip.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    zip.extend_from_slice(&2u16.to_le_bytes());
    zip.extend_from_slice(&2u16.to_le_bytes());
    zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
    zip.extend_from_slice(&at.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const GOOD_CSV: &str = "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型,时间\nC-7,MZ-001,老年优待证,民政办,W1,受理,0451,即办件,2025-11-03 09:00\n";

#[test]
fn an_xlsx_bomb_gets_413_and_the_agent_stays_up() {
    let dir = scratch("xlsx-bomb");
    let hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        free_port(),
        &hub,
        "[health]\ninterval_secs = 0\n",
    );
    agent.start();
    let url = format!("http://127.0.0.1:{}/api/v1/import?kind=case", agent.intake);
    let client = intake_client(&agent.intake_key);
    // 3 GiB of shared strings in about 3 MB, declared truly; then declared as 1 KiB.
    for (declared, expected) in [
        (
            3 << 30,
            "shared strings (xl/sharedStrings.xml) unpack to more than 32 MiB",
        ),
        (1024, "unpacks to more than the 1 KiB it declares"),
    ] {
        let bomb = xlsx_bomb(3, declared);
        assert!(bomb.len() < 5 << 20, "{} bytes", bomb.len());
        let started = std::time::Instant::now();
        let (status, text) = client.post_bytes(&url, bomb).expect("an answer");
        assert_eq!(status, 413, "{text}");
        assert!(error(&text).contains(expected), "{text}");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(agent.proc.as_mut().is_some_and(Proc::is_running));
    }
    let (status, text) = client
        .post_bytes(&url, GOOD_CSV.as_bytes().to_vec())
        .expect("an answer");
    assert_eq!(status, 201, "{text}");
    assert!(agent.proc.as_mut().is_some_and(Proc::is_running));
}

/// The regular files in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_bomb_in_the_import_directory_fails_once_and_the_next_file_is_imported() {
    let dir = scratch("xlsx-bomb-dir");
    let hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let inbox = dir.join("import");
    std::fs::create_dir_all(&inbox).expect("import dir");
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        free_port(),
        &hub,
        &format!(
            "[health]\ninterval_secs = 0\n[import]\ndir = \"{}\"\npoll_secs = 1\n",
            inbox.display()
        ),
    );
    agent.start();
    std::fs::write(inbox.join("case-bomb.xlsx"), xlsx_bomb(3, 1024)).expect("drop the bomb");
    let failed = inbox.join("failed");
    wait_for(Duration::from_secs(30), "the bomb in failed/", || {
        (names(&failed).len() == 2).then_some(())
    });
    assert_eq!(
        names(&failed),
        ["case-bomb.xlsx", "case-bomb.xlsx.result.json"]
    );
    let result: Value = serde_json::from_slice(
        &std::fs::read(failed.join("case-bomb.xlsx.result.json")).expect("result"),
    )
    .expect("json");
    let why = result["error"].as_str().unwrap_or_default();
    assert!(why.contains("the import limit is 128 MiB"), "{why}");
    assert!(agent.proc.as_mut().is_some_and(Proc::is_running));

    // The next file is imported; the bomb is not tried again, not even after a restart.
    std::fs::write(inbox.join("case-good.csv"), GOOD_CSV).expect("drop a good file");
    wait_for(Duration::from_secs(30), "the good file in done/", || {
        (names(&inbox.join("done")) == ["case-good.csv"]).then_some(())
    });
    assert_eq!(agent.status().expect("status")["backlog"]["head_seq"], 1);
    agent.kill9();
    agent.start();
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.proc.as_mut().is_some_and(Proc::is_running));
    assert_eq!(names(&failed).len(), 2);
    assert_eq!(names(&inbox), ["case-good.csv.result.json"]);
    let log = std::fs::read_to_string(agent.dir.join("agent.log")).unwrap_or_default();
    let failures = log
        .lines()
        .filter(|l| l.contains("import file failed") && l.contains("case-bomb.xlsx"))
        .count();
    assert_eq!(failures, 1, "{log}");
}
