//! Back-dating is visible (issue 14, item 6), with the real agent, broker and hub: a case event
//! posted with an `at` days before the box received it, a punch posted hours late by a tool on the
//! box, and a ZKTeco record older than its terminal's previous upload all reach the hub, each with
//! its `backdated` mark and both times; the hub shows the mark on the case page and on the clerk's
//! punches and counts the events among the report's problems. Events within their bound carry no
//! mark, and nothing is dropped.

mod dashboard_fixture;

use chrono::{DateTime, Duration as Span, FixedOffset, Utc};
use dashboard_fixture::{Browser, PASSWORD, add_user};
use serde_json::{Value, json};
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const SN: &str = "CDQ9190960041";

fn beijing(ago: Span) -> DateTime<FixedOffset> {
    let east8 = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    (Utc::now() - ago).with_timezone(&east8)
}

fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn case(case_no: &str, at: &str) -> Value {
    json!({"kind": "case", "at": at, "body": {"case_no": case_no, "item_code": "MZ-001",
        "item_name": "老年优待证", "unit": "民政办", "window": "W1", "stage": "accepted",
        "staff_id": "0451", "kind": "immediate"}})
}

fn punch(at: &str, n: u64) -> Value {
    json!({"kind": "punch", "at": at, "body": {"staff_id": "0451", "direction": "in",
        "method": "card", "source": "test-terminal", "n": n}})
}

#[test]
fn a_back_dated_case_event_reaches_the_hub_flagged() {
    let dir = scratch("backdating");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let zk_port = free_port();
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        &format!(
            "[health]\ninterval_secs = 0\n[zkteco]\nlisten = \"127.0.0.1:{zk_port}\"\nterminals = [\"{SN}\"]\n"
        ),
    );
    agent.start();
    let approval = intake_client(&add_intake_key(&agent.config, "approval", "case", false));

    // A case accepted "three days ago" and one an hour ago (within the 24 h bound).
    let three_days = beijing(Span::days(3));
    let (late, fresh) = (rfc3339(three_days), rfc3339(beijing(Span::hours(1))));
    for (case_no, at) in [("BD-1", &late), ("BD-2", &fresh)] {
        let answer = approval
            .post_json(&agent.intake_url(), &case(case_no, at))
            .expect("the intake answers");
        assert_eq!(answer.0, 201, "{case_no}: {}", answer.1);
    }
    // Punches from a tool on the box (a --local key): two hours late, and five minutes (within the
    // 10 minute bound).
    let two_hours = beijing(Span::hours(2));
    for (at, n) in [
        (rfc3339(two_hours), 1),
        (rfc3339(beijing(Span::minutes(5))), 2),
    ] {
        let answer = agent.post(&punch(&at, n)).expect("the intake answers");
        assert_eq!(answer.0, 201, "punch {n}: {}", answer.1);
    }
    // A ZKTeco terminal: its first upload has nothing to be judged against; then a new record three
    // hours older than that upload (and one just after it) arrive.
    let terminal = http::Client::new();
    let base = format!("http://127.0.0.1:{zk_port}/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=1");
    let line = |t: DateTime<FixedOffset>, status: u8| {
        format!(
            "0451\t{}\t{status}\t1\t0\t0\t0\n",
            t.format("%Y-%m-%d %H:%M:%S")
        )
    };
    let upload = |body: String| {
        let (status, text) = terminal
            .post_bytes(&base, body.into_bytes())
            .expect("the terminal server answers");
        assert_eq!(status, 200, "{text}");
    };
    upload(line(beijing(Span::minutes(1)), 0));
    let three_hours = beijing(Span::hours(3));
    upload(format!(
        "{}{}",
        line(three_hours, 1),
        line(beijing(Span::seconds(20)), 1)
    ));

    // Everything reaches the hub; exactly the late ones are marked, with both times.
    let cases = wait_for(Duration::from_secs(30), "both cases at the hub", || {
        let cases = hub.events(SITE, "box-01", "case");
        (cases.len() == 2).then_some(cases)
    });
    let by_no = |no: &str| {
        cases
            .iter()
            .find(|e| e["body"]["case_no"] == no)
            .cloned()
            .unwrap_or_else(|| panic!("{no} at the hub: {cases:#?}"))
    };
    let marked = by_no("BD-1");
    let mark = &marked["backdated"];
    assert_eq!(mark["at"], late.as_str(), "{marked:#}");
    assert_eq!(marked["at"], late.as_str(), "the event keeps its own time");
    let received = mark["received_at"].as_str().expect("received_at");
    let received_t = DateTime::parse_from_rfc3339(received).expect("RFC 3339");
    assert!(
        (received_t.with_timezone(&Utc) - Utc::now())
            .num_minutes()
            .abs()
            < 5,
        "received now: {received}"
    );
    assert_eq!(mark["bound_secs"], 86400);
    assert!(by_no("BD-2").get("backdated").is_none(), "within the bound");

    let punches = wait_for(Duration::from_secs(30), "five punches at the hub", || {
        let p = hub.events(SITE, "box-01", "punch");
        (p.len() == 5).then_some(p)
    });
    // In seq order: the tool's two, then the terminal's first upload, then its second.
    let marks: Vec<(Option<u64>, bool, bool)> = punches
        .iter()
        .map(|p| {
            (
                p["body"]["n"].as_u64(),
                p["backdated"].is_object(),
                p["backdated"]["last_upload_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            (Some(1), true, false),
            (Some(2), false, false),
            (None, false, false),
            (None, true, true),
            (None, false, false),
        ],
        "{punches:#?}"
    );
    let zk_marked: Vec<&Value> = punches
        .iter()
        .filter(|p| p["body"]["source"] == format!("zkteco:{SN}"))
        .collect();
    assert_eq!(zk_marked.len(), 3, "{punches:#?}");
    let old_record = zk_marked
        .iter()
        .find(|p| p["backdated"].is_object())
        .unwrap_or_else(|| panic!("the old terminal record is marked: {punches:#?}"));
    assert_eq!(
        old_record["body"]["terminal_time"],
        three_hours.format("%Y-%m-%d %H:%M:%S").to_string(),
        "it keeps its terminal time"
    );
    assert_eq!(old_record["backdated"]["bound_secs"], 600);

    // The hub shows the marks: on the case page's event line and on the clerk's punches.
    let roster = dir.join("roster.toml");
    std::fs::write(
        &roster,
        format!(
            "[[staff]]\nsite = \"{SITE}\"\nstaff_id = \"0451\"\nname = \"张三\"\nunit = \"民政办\"\nwindow = \"W1\"\nrole = \"A\"\npin = \"135790\"\n"
        ),
    )
    .expect("roster");
    let out = std::process::Command::new(bin("sunlight-hub"))
        .args(["roster", "import", "--data-dir"])
        .arg(&hub.dir)
        .arg(&roster)
        .output()
        .expect("roster import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = add_user(&hub, "sup", "supervisor", None, None, PASSWORD);
    assert!(ok, "{out}");
    let mut browser = Browser::signed_in(&hub, "sup");
    let page = browser.get(&format!("/cases/{SITE}/BD-1"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("class=\"backdated\"")
            && page.body.contains(&format!("记为 {late}"))
            && page.body.contains(&format!("盒子 {received} 收到")),
        "the case page marks the event with both times: {}",
        page.body
    );
    let page = browser.get(&format!("/cases/{SITE}/BD-2"));
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("class=\"backdated\""),
        "BD-2 is not marked"
    );
    for at in [two_hours, three_hours] {
        let month = at.format("%Y-%m").to_string();
        let page = browser.get(&format!("/attendance/staff/{SITE}/0451?month={month}"));
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains(&format!(
                "{} <span class=\"backdated\"",
                at.format("%H:%M:%S")
            )),
            "the clerk's punch at {at} is marked: {}",
            page.body
        );
    }
    let page = browser.get(&format!(
        "/attendance/staff/{SITE}/0451?month={}",
        three_hours.format("%Y-%m")
    ));
    assert!(page.body.contains("早于考勤机上次上传"), "{}", page.body);

    // The report counts them among its problems (by the events' own days).
    let mut seen = (0, 0);
    let months: std::collections::BTreeSet<String> = [three_days, two_hours, three_hours]
        .iter()
        .map(|t| t.format("%Y-%m").to_string())
        .collect();
    for month in &months {
        let report = hub
            .get(&format!(
                "/api/v1/reports/monthly?month={month}&site={SITE}"
            ))
            .expect("the report");
        let b = &report["backdated"];
        let (cases, punches) = (
            b["cases"].as_i64().unwrap_or(0),
            b["punches"].as_i64().unwrap_or(0),
        );
        seen = (seen.0 + cases, seen.1 + punches);
        let problem = report["problems"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["code"] == "backdated"))
            .cloned();
        assert_eq!(problem.is_some(), cases + punches > 0, "{report:#}");
        if let Some(p) = problem {
            assert!(p["zh"].as_str().unwrap_or("").contains("倒签"), "{p:#}");
        }
        let page = browser.get(&format!("/reports?month={month}&site={SITE}"));
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(
            page.body.contains("倒签记录"),
            cases + punches > 0,
            "the report page lists the problem: {}",
            page.body
        );
    }
    assert_eq!(
        seen,
        (1, 2),
        "one case event and two punches were back-dated"
    );
}
