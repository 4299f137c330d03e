//! The supervision engine end to end: case, rating and complaint events posted to a box reach the
//! hub through the broker; the warning ladder tells the right people through a real HTTP gateway,
//! each message once, across hub restarts (SIGKILL) and a gateway outage; the supervision letter is
//! issued and served; a bad rating's work order and a complaint are followed up over the hub's API.

use serde_json::{Value, json};
use std::time::Duration;
use sunlight_tests::webhook::Gateway;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";

fn config(gateway: &Gateway) -> String {
    format!(
        r#"
[notify]
retry_secs = 1
retry_max_secs = 2
[notify.webhook]
url = "{}"
timeout_secs = 5
[notify.digest]
roles = ["leadership"]
report_weekly = true
[[contacts]]
role = "handler"
name = "李明"
to = "13800000001"
staff_id = "0451"
[[contacts]]
role = "unit_chief"
name = "民政办主任"
to = "13800000002"
unit = "民政办"
[[contacts]]
role = "supervisor"
name = "县电子监察室"
to = "13800000003"
[[contacts]]
role = "leadership"
name = "分管副县长"
to = "13800000004"
"#,
        gateway.url()
    )
}

fn case_event(stage: &str, at: &str) -> Value {
    json!({"kind": "case", "at": at, "body": {"case_no": "C-9", "item_code": "MZ-001", "item_name": "老年优待证办理",
        "unit": "民政办", "window": "W1", "stage": stage, "staff_id": "0451", "kind": "promised",
        "limit_days": 5, "applicant_phone": "13912345678"}})
}

/// Restarts the hub with the simulated clock on `day`, and waits until nothing is left to send.
fn day(hub: &mut Hub, day: &str) {
    hub.kill9();
    hub.extra_args[1] = day.into();
    hub.start();
}

fn settled(hub: &Hub, what: &str) {
    wait_for(Duration::from_secs(30), what, || {
        let pending = hub.get("/api/v1/notifications?status=pending")?;
        pending["notifications"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
}

fn level(hub: &Hub) -> Option<String> {
    hub.get(&format!("/api/v1/cases/{SITE}/C-9"))?["level"]
        .as_str()
        .map(String::from)
}

#[test]
fn the_ladder_reaches_the_gateway_once_per_person_across_restarts_and_outages() {
    let dir = scratch("supervision");
    let gateway = Gateway::start();
    std::fs::create_dir_all(dir.join("hub")).expect("dir");
    let config_path = dir.join("hub").join("hub.toml");
    std::fs::write(&config_path, config(&gateway)).expect("config");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.extra_args = vec![
        "--today".into(),
        "2025-10-09".into(),
        "--tick-secs".into(),
        "1".into(),
        "--config".into(),
        config_path.display().to_string(),
    ];
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "",
    );
    agent.start();
    hub.start();
    // Accepted Friday 2025-09-26, 5 working days: due Friday 10-10 on the official calendar.
    let (status, body) = agent
        .post(&case_event("accepted", "2025-09-26T09:00:00+08:00"))
        .expect("post");
    assert_eq!(status, 201, "{body}");
    wait_for(Duration::from_secs(30), "yellow light", || {
        (level(&hub)? == "yellow_light").then_some(())
    });
    settled(&hub, "the yellow light sent");

    // The gateway goes down; the red light is recorded and retried until it comes back.
    gateway.set_down(true);
    day(&mut hub, "2025-10-10");
    wait_for(Duration::from_secs(30), "a refused attempt", || {
        gateway.seen().iter().any(|d| !d.accepted).then_some(())
    });
    gateway.set_down(false);
    settled(&hub, "the red light sent after the outage");
    for d in ["2025-10-11", "2025-10-13", "2025-10-14"] {
        day(&mut hub, d);
        wait_for(Duration::from_secs(30), "the next step", || {
            let l = level(&hub)?;
            let expected = match d {
                "2025-10-11" => "yellow_card",
                "2025-10-13" => "red_card",
                _ => "supervision_letter",
            };
            (l == expected).then_some(())
        });
        settled(&hub, "the step sent");
    }
    // One more restart on the same day: nothing is sent again.
    day(&mut hub, "2025-10-14");
    std::thread::sleep(Duration::from_secs(3));
    settled(&hub, "nothing new");

    let mut delivered = gateway.delivered();
    delivered.sort();
    let mut expected: Vec<String> = [
        "case:suixian-shangshi:C-9:yellow_light:handler:13800000001",
        "case:suixian-shangshi:C-9:red_light:handler:13800000001",
        "case:suixian-shangshi:C-9:red_light:unit_chief:13800000002",
        "case:suixian-shangshi:C-9:yellow_card:unit_chief:13800000002",
        "case:suixian-shangshi:C-9:yellow_card:supervisor:13800000003",
        "case:suixian-shangshi:C-9:red_card:supervisor:13800000003",
        "case:suixian-shangshi:C-9:supervision_letter:unit_chief:13800000002",
        "case:suixian-shangshi:C-9:supervision_letter:supervisor:13800000003",
        // Leadership's red card, in the digest of 10-13 sent on 10-14.
        "digest:2025-10-13:13800000004",
        // The weekly report's figures to leadership, from Monday 10-13.
        "report:2025-W41:leadership:13800000004",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(delivered, expected, "each message exactly once");
    let letter_msg = gateway
        .seen()
        .into_iter()
        .find(|d| d.key.contains("supervision_letter:supervisor"))
        .expect("letter message");
    assert!(
        letter_msg.body["text"]
            .as_str()
            .unwrap_or("")
            .contains("监建〔2025〕1号"),
        "{}",
        letter_msg.body
    );
    let weekly = gateway
        .seen()
        .into_iter()
        .find(|d| d.key.starts_with("report:2025-W41"))
        .expect("weekly report message");
    let text = weekly.body["text"].as_str().unwrap_or("");
    assert!(
        text.contains("全县2025年第41周（10-06至10-12）窗口工作周报")
            && text.contains("黄灯1、红灯1、黄牌1、红牌0"),
        "C-9's yellow light, red light and yellow card of week 41: {text}"
    );
    // The letter, printable from the hub.
    let letters = hub.get("/api/v1/letters").expect("letters");
    let id = letters["letters"][0]["id"].as_i64().expect("letter id");
    let (status, html) = hub
        .get_text(&format!("/api/v1/letters/{id}"))
        .expect("letter");
    assert_eq!(status, 200);
    assert!(html.contains("监察建议书") && html.contains("C-9") && html.contains("3 个工作日"));
    // The case's timeline shows its steps, warnings and messages; the phone was masked on the box.
    let detail = hub
        .get(&format!("/api/v1/cases/{SITE}/C-9"))
        .expect("detail");
    // First seen on 10-09, so the ladder starts at the yellow light.
    assert_eq!(
        detail["warnings"].as_array().map(Vec::len),
        Some(5),
        "{detail}"
    );
    assert_eq!(detail["letters"].as_array().map(Vec::len), Some(1));
    assert!(!detail.to_string().contains("13912345678"), "{detail}");

    // A bad rating opens a work order; it is followed up over the API, in order.
    let (status, _) = agent
        .post(&case_event("completed", "2025-10-14T10:00:00+08:00"))
        .expect("post");
    assert_eq!(status, 201);
    let rating = json!({"kind": "rating", "at": "2025-10-14T10:05:00+08:00",
        "body": {"case_no": "C-9", "level": 1, "channel": "pad", "comment": "超期太久"}});
    assert_eq!(agent.post(&rating).expect("post").0, 201);
    let order = wait_for(Duration::from_secs(30), "a work order", || {
        hub.get("/api/v1/work-orders")?["work_orders"]
            .as_array()?
            .first()
            .cloned()
    });
    assert_eq!(
        (
            order["unit"].as_str(),
            order["callback_due"].as_str(),
            order["fix_due"].as_str()
        ),
        (Some("民政办"), Some("2025-10-15"), Some("2025-10-21"))
    );
    let id = order["id"].as_i64().expect("id");
    let path = format!("/api/v1/work-orders/{id}");
    let (status, body) = hub
        .post(
            &path,
            &json!({"action": "fix", "by": "王主任", "note": "x"}),
        )
        .expect("post");
    assert_eq!(status, 409, "{body}");
    let (status, body) = hub
        .post(&path, &json!({"action": "callbak"}))
        .expect("post");
    assert_eq!(status, 422, "{body}");
    for step in [
        json!({"action": "callback", "by": "王主任", "note": "已电话回访"}),
        json!({"action": "classify", "by": "王主任", "classification": "属实"}),
        json!({"action": "fix", "by": "王主任", "note": "已办结并致歉"}),
        json!({"action": "feedback", "by": "王主任", "note": "申请人认可"}),
    ] {
        let (status, body) = hub.post(&path, &step).expect("post");
        assert_eq!(status, 200, "{step} → {body}");
    }
    assert_eq!(hub.get(&path).expect("order")["status"], "closed");

    // A complaint lands in the queue and moves through it over the API.
    let complaint = json!({"kind": "complaint", "at": "2025-10-14T11:00:00+08:00",
        "body": {"complaint_no": "TS-1", "channel": "12345", "about": {"unit": "民政办"}, "text": "窗口无人"}});
    assert_eq!(agent.post(&complaint).expect("post").0, 201);
    let path = format!("/api/v1/complaints/{SITE}/TS-1");
    wait_for(Duration::from_secs(30), "the complaint", || {
        hub.get(&path)?["complaint_no"].as_str().map(String::from)
    });
    let (status, body) = hub
        .post(&path, &json!({"to": "handling", "by": "监察室"}))
        .expect("post");
    assert_eq!(status, 409, "{body}");
    let (status, body) = hub
        .post(&path, &json!({"to": "investigating", "by": "监察室"}))
        .expect("post");
    assert_eq!(
        (status, body["stage_name"].as_str()),
        (200, Some("调查")),
        "{body}"
    );
    // Rates for October for the unit.
    let rates = hub
        .get("/api/v1/rates?from=2025-10-01&to=2025-10-31")
        .expect("rates");
    let r = &rates["rates"][0];
    assert_eq!(
        (
            r["group"].as_str(),
            r["completed"].as_i64(),
            r["on_time"].as_i64()
        ),
        (Some("民政办"), Some(1), Some(0)),
        "{rates}"
    );
    assert_eq!(r["warnings"]["yellow_card"], 1);
    assert_eq!(hub.integrity(), "ok");
}
