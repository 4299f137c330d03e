//! File import end to end: a township office imports a GBK CSV export of its approval system into a
//! box; good rows are recorded and bad rows say why, a second import of the same file records
//! nothing, and the cases reach the hub with the applicant's phone masked — the clear number is on
//! no disk, the box's or the hub's.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const PHONE: &str = "13812345678";

/// The export as a zh_CN Windows approval system writes it: GBK, Chinese header, office times.
fn gbk_export() -> Vec<u8> {
    let text = format!(
        "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型,时限,时限单位,申请人,联系电话,时间,备注\r\n\
         C-101,MZ-001,老年优待证,民政办,W1,受理,0451,承诺件,5,工作日,张三,{PHONE},2025-11-03 09:00,\r\n\
         C-101,MZ-001,老年优待证,民政办,W1,办结,0451,承诺件,5,工作日,张三,{PHONE},2025-11-06 16:30:00,按时办结\r\n\
         C-102,MZ-001,老年优待证,民政办,W1,审查,0451,即办件,,,李四,13900001111,2025-11-03 10:00,\r\n"
    );
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    bytes.into_owned()
}

fn import(client: &http::Client, agent: &Agent, file: &[u8]) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}/api/v1/import?kind=case", agent.intake);
    let (status, text) = client
        .post_bytes(&url, file.to_vec())
        .expect("import request");
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, answer)
}

/// True when any file directly in `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[test]
fn a_gbk_export_is_imported_once_and_reaches_the_hub_masked() {
    let dir = scratch("intake-import");
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
    let client = intake_client(&agent.intake_key);
    let file = gbk_export();
    let openapi = client
        .get_json(&format!(
            "http://127.0.0.1:{}/api/v1/openapi.json",
            agent.intake
        ))
        .expect("the box serves its OpenAPI document");
    assert!(openapi["paths"]["/api/v1/import"]["post"].is_object());

    let (status, first) = import(&client, &agent, &file);
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (
            first["accepted"].as_u64(),
            first["duplicates"].as_u64(),
            first["rejected"].as_u64()
        ),
        (Some(2), Some(0), Some(1)),
        "{first}"
    );
    assert_eq!(first["ignored_columns"], serde_json::json!(["备注"]));
    let rows = first["rows"].as_array().expect("rows");
    assert_eq!(
        rows.iter()
            .map(|r| (r["row"].as_u64(), r["ok"].as_bool(), r["seq"].as_u64()))
            .collect::<Vec<_>>(),
        [
            (Some(2), Some(true), Some(base + 1)),
            (Some(3), Some(true), Some(base + 2)),
            (Some(4), Some(false), None)
        ]
    );
    let why = rows[2]["error"].as_str().unwrap_or("");
    assert!(why.contains("审查") && why.contains("accepted"), "{why}");

    // The same file again: every good row is a duplicate, nothing new is recorded.
    let (status, again) = import(&client, &agent, &file);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(2), Some(2)),
        "{again}"
    );
    assert!(
        again["rows"].as_array().expect("rows")[..2]
            .iter()
            .all(|r| r["duplicate"] == true && r["seq"].is_null())
    );
    let status = agent.status().expect("agent status");
    assert_eq!(status["backlog"]["head_seq"], base + 2, "{status}");

    // At the hub: both stages, at their office times, with the phone masked.
    let events = wait_for(Duration::from_secs(30), "both cases at the hub", || {
        Some(hub.events(SITE, "box-01", "case")).filter(|e| e.len() >= 2)
    });
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["body"]["applicant_phone"], "138****5678", "{e}");
        assert_eq!(e["body"]["case_no"], "C-101");
    }
    assert_eq!(events[0]["at"], "2025-11-03T09:00:00+08:00");
    assert_eq!(
        (
            events[1]["body"]["stage"].as_str(),
            events[1]["at"].as_str()
        ),
        (Some("completed"), Some("2025-11-06T16:30:00+08:00"))
    );
    let case = wait_for(Duration::from_secs(30), "C-101 closed at the hub", || {
        hub.get(&format!("/api/v1/cases?site={SITE}&open=false"))?["cases"]
            .as_array()?
            .iter()
            .find(|c| c["case_no"] == "C-101" && c["open"] == false)
            .cloned()
    });
    assert!(!case.to_string().contains(PHONE), "{case}");

    // The clear number is on no disk: not in the box's outbox, not in the hub's store.
    agent.kill9();
    hub.kill9();
    assert!(!on_disk(&agent.dir.join("data"), PHONE));
    assert!(!on_disk(&agent.dir, PHONE), "nor in the agent's log");
    assert!(!on_disk(&hub.dir, PHONE));
    assert!(!on_disk(&hub.dir, "13900001111"), "nor the refused row's");
}
