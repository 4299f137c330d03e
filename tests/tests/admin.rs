//! Admin editing in the dashboard (issue 6) over real HTTP against a real hub: calendar overrides
//! that change a case's deadline and the attendance board in the running hub without a restart, the
//! item catalog, bad forms refused with the reason and nothing changed, CSRF, 403 for every other
//! role (a scoped head included), and the audit log of every change.

mod dashboard_fixture;

use dashboard_fixture::*;
use std::time::Duration;
use sunlight_tests::{Agent, BrokerMode, Hub, free_port, scratch, wait_for};

fn count(hub: &sunlight_tests::Hub, sql: &str) -> i64 {
    rusqlite::Connection::open(hub.dir.join("hub.db"))
        .expect("store")
        .query_row(sql, [], |r| r.get(0))
        .expect(sql)
}

fn audit_rows(hub: &sunlight_tests::Hub) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    let mut stmt = conn
        .prepare("SELECT who, action, target, detail FROM audit WHERE action LIKE 'item.%' OR action LIKE 'calendar.%' OR action LIKE 'settings.%' ORDER BY id")
        .expect("audit");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("audit")
        .collect::<Result<_, _>>()
        .expect("audit rows")
}

/// The admin pages and a form each posts to.
const PAGES: [&str; 3] = ["/admin/items", "/admin/calendar", "/admin/audit"];

#[test]
fn a_calendar_override_moves_deadlines_and_attendance_in_the_running_hub() {
    let dir = scratch("admin-calendar");
    let hub = hub_with_data(&dir);
    let mut b = Browser::signed_in(&hub, "admin");
    let case = format!("/cases/{A}/SS-0003");
    let board = format!("/attendance?site={A}&day={TODAY}");

    // Accepted Tuesday 11-04 with 10 working days: due 11-18; today is a working day.
    let r = b.get(&case);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("2025-11-18"), "{}", r.body);
    let r = b.get(&board);
    assert!(!r.body.contains("休息日"), "{}", r.body);

    // The page shows the year's official holidays to override.
    let page = b.get("/admin/calendar");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("2025-10-01"),
        "National Day: {}",
        page.body
    );
    assert!(page.body.contains("调休上班"), "{}", page.body);
    let csrf = page.csrf().expect("the form has the session's token");

    // A bad form: 422 with the reason, nothing stored, the deadline unchanged.
    let r = b.post(
        "/admin/calendar",
        &[
            ("csrf", &csrf),
            ("from", "2025-11-31"),
            ("to", ""),
            ("working", "off"),
            ("reason", "防汛"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("格式不对"), "{}", r.body);
    let r = b.post(
        "/admin/calendar",
        &[
            ("csrf", &csrf),
            ("from", "2025-11-04"),
            ("to", "2025-11-05"),
            ("working", "off"),
            ("reason", " "),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("请填写原因"), "{}", r.body);
    // A stale token: 403, nothing stored.
    let r = b.post(
        "/admin/calendar",
        &[
            ("csrf", "stale"),
            ("from", "2025-11-04"),
            ("to", ""),
            ("working", "off"),
            ("reason", "防汛"),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(count(&hub, "SELECT count(*) FROM calendar_overrides"), 0);
    assert!(b.get(&case).body.contains("2025-11-18"));

    // Today and tomorrow off (flood duty): in force at once, no restart.
    let r = b.post(
        "/admin/calendar",
        &[
            ("csrf", &csrf),
            ("from", "2025-11-04"),
            ("to", "2025-11-05"),
            ("working", "off"),
            ("reason", "防汛停止对外办公"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已生效"), "{}", r.body);
    assert!(
        r.body.contains("防汛停止对外办公"),
        "the override is listed: {}",
        r.body
    );
    assert_eq!(count(&hub, "SELECT count(*) FROM calendar_overrides"), 2);
    let r = b.get(&case);
    assert!(
        r.body.contains("2025-11-19") && !r.body.contains("2025-11-18"),
        "the deadline moved by one working day: {}",
        r.body
    );
    let r = b.get(&board);
    assert!(
        r.body.contains("休息日"),
        "today is a day off now: {}",
        r.body
    );

    // Removing tomorrow's override: the deadline is back where it was (today stays off, and a
    // case accepted on a day off starts counting the day after).
    let r = b.post(
        "/admin/calendar/remove",
        &[("csrf", &csrf), ("day", "2025-11-05")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(b.get(&case).body.contains("2025-11-18"));
    let r = b.post(
        "/admin/calendar/remove",
        &[("csrf", &csrf), ("day", "2025-11-05")],
    );
    assert_eq!(r.status, 404, "already removed: {}", r.body);

    // The audit log: who, what, and the before of a replaced day.
    let r = b.post(
        "/admin/calendar",
        &[
            ("csrf", &csrf),
            ("from", "2025-11-04"),
            ("to", ""),
            ("working", "working"),
            ("reason", "恢复办公"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = audit_rows(&hub);
    let actions: Vec<_> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("admin", "calendar.set", "calendar:2025-11-04..2025-11-05"),
            ("admin", "calendar.remove", "calendar:2025-11-05"),
            ("admin", "calendar.set", "calendar:2025-11-04"),
        ]
    );
    assert!(
        rows[0].3.contains("off (防汛停止对外办公)"),
        "{:?}",
        rows[0]
    );
    assert!(rows[2].3.contains("2025-11-04 was off"), "{:?}", rows[2]);
    let r = b.get("/admin/audit?action=calendar");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("calendar.remove") && r.body.contains("2025-11-04 was off"),
        "{}",
        r.body
    );

    // Survives a restart: the override is in the database.
    drop(b);
    let mut hub = hub;
    hub.kill9();
    hub.start();
    let mut b = Browser::signed_in(&hub, "admin");
    assert!(
        !b.get(&board).body.contains("休息日"),
        "11-04 is a working day again"
    );
    assert!(b.get("/admin/calendar").body.contains("恢复办公"));
}

#[test]
fn items_are_added_and_edited_with_the_catalog_rules() {
    let dir = scratch("admin-items");
    let hub = hub_with_data(&dir);
    let mut b = Browser::signed_in(&hub, "admin");
    let page = b.get("/admin/items");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("token");
    let before = count(&hub, "SELECT count(*) FROM items");

    let item = |promised: &'static str, fees: bool| {
        let mut f = vec![
            ("code", "MZ-901"),
            ("name", "高龄津贴申领"),
            ("unit", "民政办"),
            ("kind", "promised"),
            ("statutory_days", "10"),
            ("promised_days", promised),
            ("day_unit", "working"),
        ];
        if fees {
            f.push(("fees_allowed", "1"));
        }
        f
    };
    let mut add = item("5", false);
    add.push(("csrf", &csrf));
    let r = b.post("/admin/items", &add);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已新增事项 MZ-901"), "{}", r.body);
    assert_eq!(count(&hub, "SELECT count(*) FROM items"), before + 1);

    // A promised limit beyond the statutory one: the catalog's own rule, 422, nothing changed.
    let mut bad = item("12", false);
    bad.push(("csrf", &csrf));
    let r = b.post("/admin/items", &bad);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("承诺时限不得超过法定时限"), "{}", r.body);
    assert!(
        r.body.contains("value=\"12\""),
        "the form is shown again: {}",
        r.body
    );
    let mut bad = item("x", false);
    bad.push(("csrf", &csrf));
    let r = b.post("/admin/items", &bad);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("承诺时限应为"), "{}", r.body);
    assert_eq!(
        count(
            &hub,
            "SELECT promised_days FROM items WHERE code = 'MZ-901'"
        ),
        5
    );

    // Edit: 3 promised days, fees allowed; the list shows it, the audit says before → after.
    let mut edit = item("3", true);
    edit.push(("csrf", &csrf));
    let r = b.post("/admin/items", &edit);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已修改事项 MZ-901"), "{}", r.body);
    let r = b.get("/admin/items?edit=MZ-901");
    assert!(
        r.body.contains("value=\"3\"") && r.body.contains("checked"),
        "{}",
        r.body
    );
    assert_eq!(
        count(
            &hub,
            "SELECT promised_days FROM items WHERE code = 'MZ-901'"
        ),
        3
    );
    let rows = audit_rows(&hub);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_str()),
        ("item.add", "item:MZ-901")
    );
    assert_eq!(rows[1].1, "item.edit");
    assert_eq!(
        rows[1].3,
        "promised_days: 5 → 3; fees_allowed: false → true"
    );
    assert_eq!(b.get("/admin/items?edit=NOPE").status, 404);
}

#[test]
fn only_admins_reach_the_admin_pages() {
    let dir = scratch("admin-roles");
    let hub = hub_with_data(&dir);
    for name in ["jiancha", "shangshi", "shangshi-mz", "yunwei"] {
        let mut b = Browser::signed_in(&hub, name);
        // Any page of theirs carries their session's token: the refusal is the role, not CSRF.
        let csrf = b.get("/fleet").csrf().unwrap_or_default();
        for path in PAGES.iter().chain(&["/admin/schedules", "/admin/notify"]) {
            let r = b.get(path);
            assert_eq!(r.status, 403, "{name} GET {path}: {}", r.body);
            assert!(!r.body.contains("csrf"), "{name} {path}");
        }
        for (path, fields) in [
            (
                "/admin/items",
                vec![
                    ("code", "H-1"),
                    ("name", "x"),
                    ("unit", "u"),
                    ("kind", "immediate"),
                    ("statutory_days", "1"),
                    ("promised_days", "0"),
                ],
            ),
            (
                "/admin/calendar",
                vec![("from", "2025-11-05"), ("working", "off"), ("reason", "x")],
            ),
            ("/admin/calendar/remove", vec![("day", "2025-11-05")]),
            (
                "/admin/notify",
                vec![("action", "save"), ("rules", "complaint = []")],
            ),
        ] {
            let mut f = fields.clone();
            f.push(("csrf", &csrf));
            let r = b.post(path, &f);
            assert_eq!(r.status, 403, "{name} POST {path}: {}", r.body);
        }
        let menu = b.get("/fleet").body;
        assert!(
            !menu.contains("/admin/calendar"),
            "{name} has no admin menu"
        );
    }
    assert_eq!(count(&hub, "SELECT count(*) FROM calendar_overrides"), 0);
    assert_eq!(
        count(&hub, "SELECT count(*) FROM items WHERE code = 'H-1'"),
        0
    );
    assert!(audit_rows(&hub).is_empty());
}

#[test]
fn office_hours_saved_by_an_admin_win_over_hub_toml_in_the_running_hub() {
    let dir = scratch("admin-schedules");
    let hub = hub_with_data(&dir);
    let mut b = Browser::signed_in(&hub, "admin");
    let staff = format!("/attendance/staff/{A}/0451?month=2025-11");
    assert!(b.get(&staff).body.contains("迟到 6 分"));

    let page = b.get("/admin/schedules");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("当前生效：hub.toml"), "{}", page.body);
    assert!(page.body.contains("grace_min = 5"), "{}", page.body);
    let csrf = page.csrf().expect("token");
    let at = page.body.find("<textarea").expect("textarea");
    let start = at + page.body[at..].find('>').expect("tag end") + 1;
    let end = start
        + page.body[start..]
            .find("</textarea>")
            .expect("textarea end");
    let text = page.body[start..end].replace("&quot;", "\"");

    // Overlapping segments: 422 with the reason, nothing stored, still 5 minutes of grace.
    let bad = text.replacen("\"14:30\"", "\"11:30\"", 1);
    let r = b.post(
        "/admin/schedules",
        &[("csrf", &csrf), ("action", "save"), ("attendance", &bad)],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("重叠"), "{}", r.body);
    assert_eq!(count(&hub, "SELECT count(*) FROM settings"), 0);
    assert!(b.get(&staff).body.contains("迟到 6 分"));

    // Ten minutes of grace: the 6 minutes late are on time now, without a restart.
    let good = text.replace("grace_min = 5", "grace_min = 10");
    let r = b.post(
        "/admin/schedules",
        &[("csrf", &csrf), ("action", "save"), ("attendance", &good)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("已生效") && r.body.contains("管理员保存的版本"),
        "{}",
        r.body
    );
    assert!(!b.get(&staff).body.contains("迟到 6 分"));

    // Back to hub.toml.
    let r = b.post(
        "/admin/schedules",
        &[("csrf", &csrf), ("action", "reset"), ("attendance", "")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(b.get(&staff).body.contains("迟到 6 分"));
    let rows = audit_rows(&hub);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1, "settings.attendance");
    assert!(
        rows[0].3.starts_with("grace 5 ") && rows[0].3.contains("→ grace 10 "),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[1].1, "settings.attendance.reset");
}

/// The text of the page's textarea, unescaped.
fn textarea(body: &str) -> String {
    let at = body.find("<textarea").expect("textarea");
    let start = at + body[at..].find('>').expect("tag end") + 1;
    let end = start + body[start..].find("</textarea>").expect("textarea end");
    body[start..end]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

const NOTIFY_TOML: &str = r#"
[notify]
complaint = ["supervisor"]
[notify.webhook]
url = "http://127.0.0.1:9/never"
token = "secret-token-of-the-gateway"
[[contacts]]
role = "supervisor"
name = "县电子监察室"
to = "13800000003"
"#;

#[test]
fn notification_rules_saved_by_an_admin_reach_a_new_contact_without_a_restart() {
    let dir = scratch("admin-notify");
    std::fs::create_dir_all(dir.join("hub")).expect("dir");
    let config_path = dir.join("hub").join("hub.toml");
    std::fs::write(&config_path, NOTIFY_TOML).expect("config");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.extra_args = vec![
        "--today".into(),
        TODAY.into(),
        "--tick-secs".into(),
        "3600".into(),
        "--config".into(),
        config_path.display().to_string(),
    ];
    seed(&hub.dir.join("hub.db"));
    for (name, role, site, unit) in USERS {
        let (ok, out) = add_user(&hub, name, role, site, unit, PASSWORD);
        assert!(ok, "user add {name}: {out}");
    }
    hub.start();
    let mut b = Browser::signed_in(&hub, "admin");

    let page = b.get("/admin/notify");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("当前生效：hub.toml"), "{}", page.body);
    assert!(page.body.contains("县电子监察室"), "{}", page.body);
    assert!(
        !page.body.contains("secret-token") && !page.body.contains("127.0.0.1:9"),
        "the webhook is not shown: {}",
        page.body
    );
    assert!(
        b.get("/fleet").body.contains("/admin/notify"),
        "in the menu"
    );
    let csrf = page.csrf().expect("token");
    let text = textarea(&page.body);
    assert!(text.contains("complaint = [\"supervisor\"]"), "{text}");

    // A webhook in the text: 422 with the reason, nothing stored.
    let bad = format!("{text}\n[webhook]\nurl = \"http://evil.example/\"\n");
    let r = b.post(
        "/admin/notify",
        &[("csrf", &csrf), ("action", "save"), ("rules", &bad)],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("webhook 只能在 hub.toml 中设置"),
        "{}",
        r.body
    );
    // A bad role, an empty address, an hour past 23: refused too.
    for (bad, says) in [
        (
            text.replace("complaint = [\"supervisor\"]", "complaint = [\"mayor\"]"),
            "mayor",
        ),
        (
            format!("{text}\n[[contacts]]\nrole = \"leadership\"\nname = \"x\"\nto = \" \"\n"),
            "缺少姓名",
        ),
        (text.replace("hour = 8", "hour = 24"), "0–23"),
    ] {
        let r = b.post(
            "/admin/notify",
            &[("csrf", &csrf), ("action", "save"), ("rules", &bad)],
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
    }
    assert_eq!(count(&hub, "SELECT count(*) FROM settings"), 0);
    assert!(audit_rows(&hub).is_empty());

    // Complaints go to leadership too now, with a new contact, and not into the digest.
    let good = text
        .replace(
            "complaint = [\"supervisor\"]",
            "complaint = [\"supervisor\", \"leadership\"]",
        )
        .replace("roles = [\"leadership\"]", "roles = []")
        + "\n[[contacts]]\nrole = \"leadership\"\nname = \"分管副县长\"\nto = \"13800000004\"\n";
    let r = b.post(
        "/admin/notify",
        &[("csrf", &csrf), ("action", "save"), ("rules", &good)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("已生效") && r.body.contains("管理员保存的版本"),
        "{}",
        r.body
    );
    assert!(r.body.contains("分管副县长"), "{}", r.body);

    // A complaint arrives from a box: the new contact is told, without a restart.
    let mut agent = Agent::new(&dir.join("agent"), A, "box-09", hub.mqtt_port(), &hub, "");
    agent.start();
    let complaint = serde_json::json!({"kind": "complaint", "at": format!("{TODAY}T11:00:00+08:00"),
        "body": {"complaint_no": "TS-1", "channel": "12345", "about": {"unit": "民政办"}, "text": "窗口无人"}});
    assert_eq!(agent.post(&complaint).expect("post").0, 201);
    let told = |hub: &Hub| -> Option<Vec<String>> {
        let all = hub.get("/api/v1/notifications")?;
        Some(
            all["notifications"]
                .as_array()?
                .iter()
                .filter_map(|n| n["to"].as_str().map(String::from))
                .collect(),
        )
    };
    wait_for(Duration::from_secs(30), "the complaint told", || {
        told(&hub)
            .filter(|t| t.iter().any(|to| to == "13800000004"))
            .map(|_| ())
    });
    let to = told(&hub).expect("notifications");
    assert!(to.iter().any(|t| t == "13800000003"), "{to:?}");

    // Back to hub.toml: the new contact is gone from the rules in force.
    let r = b.post(
        "/admin/notify",
        &[("csrf", &csrf), ("action", "reset"), ("rules", "")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("当前生效：hub.toml"), "{}", r.body);
    assert!(!textarea(&r.body).contains("分管副县长"), "{}", r.body);
    assert_eq!(count(&hub, "SELECT count(*) FROM settings"), 0);
    let rows = audit_rows(&hub);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1, "settings.notify");
    assert!(
        rows[0].3.contains("complaint supervisor | ")
            && rows[0].3.contains("→ ")
            && rows[0].3.contains("complaint supervisor,leadership")
            && rows[0].3.contains("leadership:分管副县长"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[1].1, "settings.notify.reset");
}

/// A made-up 2027 arrangement (test data, not the State Council's, which is not published yet) in
/// the holiday-cn JSON form, with a make-up Saturday (01-30).
const TEST_2027_JSON: &str = r#"{"year": 2027, "days": [
  {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
  {"name": "春节", "date": "2027-01-30", "isOffDay": false},
  {"name": "春节", "date": "2027-02-05", "isOffDay": true},
  {"name": "春节", "date": "2027-02-06", "isOffDay": true},
  {"name": "春节", "date": "2027-02-07", "isOffDay": true},
  {"name": "春节", "date": "2027-02-08", "isOffDay": true},
  {"name": "春节", "date": "2027-02-09", "isOffDay": true},
  {"name": "春节", "date": "2027-02-10", "isOffDay": true},
  {"name": "清明节", "date": "2027-04-05", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-01", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-02", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-03", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-04", "isOffDay": true},
  {"name": "端午节", "date": "2027-06-09", "isOffDay": true},
  {"name": "中秋节", "date": "2027-09-15", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-01", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-02", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-03", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-04", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-05", "isOffDay": true}
]}"#;

#[test]
fn a_year_is_loaded_from_the_page_and_the_command_line() {
    let dir = scratch("admin-calendar-import");
    let hub = hub_with_data(&dir);
    let mut b = Browser::signed_in(&hub, "admin");

    // Before: 2027 is provisional, and the page says so with the statutory days.
    let page = b.get("/admin/calendar?year=2027");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("2027 （暂定）"), "{}", page.body);
    assert!(
        page.body
            .contains("暂按法定节假日计算，待录入 2027 年放假安排"),
        "{}",
        page.body
    );
    assert!(page.body.contains("2027-02-05"), "春节 eve: {}", page.body);
    let csrf = page.csrf().expect("the form has the session's token");

    // A malformed file: 422 naming the line, nothing stored.
    let bad = TEST_2027_JSON.replace("2027-06-09", "2027-06-31");
    let r = b.post("/admin/calendar/import", &[("csrf", &csrf), ("data", &bad)]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("line 15: &quot;2027-06-31&quot; is not a YYYY-MM-DD date"),
        "{}",
        r.body
    );
    assert_eq!(count(&hub, "SELECT count(*) FROM calendar_years"), 0);
    // The same from the command line.
    let file = dir.join("2027-bad.json");
    std::fs::write(&file, &bad).expect("file");
    let out = std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
        .args(["calendar", "import", "--data-dir"])
        .arg(&hub.dir)
        .arg(&file)
        .output()
        .expect("calendar import");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 15"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The notice loaded from the page: in force, audited, the differences shown.
    let r = b.post(
        "/admin/calendar/import",
        &[("csrf", &csrf), ("data", TEST_2027_JSON)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已录入 2027 年放假安排"), "{}", r.body);
    assert!(r.body.contains("2027 （官方）"), "{}", r.body);
    assert!(r.body.contains("id=\"differences\""), "{}", r.body);
    assert_eq!(count(&hub, "SELECT count(*) FROM calendar_years"), 1);
    let audit = audit_rows(&hub);
    let last = audit.last().expect("an audit row");
    assert_eq!(
        (last.1.as_str(), last.2.as_str()),
        ("calendar.import", "calendar:2027")
    );
    assert!(
        last.3.starts_with(
            "provisional → official (holiday-cn 2027); 1 days changed: 2027-01-30 off→working"
        ),
        "{}",
        last.3
    );
    let out = std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
        .args(["calendar", "status", "--data-dir"])
        .arg(&hub.dir)
        .output()
        .expect("calendar status");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2027: official (holiday-cn 2027)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
