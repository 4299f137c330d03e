//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which scripts/test installs) driven through chromedriver with fantoccini. Signs in with the
//! form, opens every page, follows links and the language switch, signs out with the button, and
//! saves a screenshot of each page under the test's scratch directory (copied to
//! `target/debug/e2e/browser-screenshots/` to look at afterwards).

mod dashboard_fixture;

use dashboard_fixture::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use sunlight_tests::browser::fantoccini::{Client, Locator};
use sunlight_tests::browser::{
    chromedriver, click, keep_screenshots, shot, sign_in, wait_path, wait_text,
};
use sunlight_tests::{free_port, scratch};

async fn open(c: &Client, base: &str, path: &str, dir: &Path, name: &str, expect: &[&str]) {
    c.goto(&format!("{base}{path}")).await.expect("goto");
    let t = wait_text(c, expect[0]).await;
    for e in expect {
        assert!(t.contains(e), "{path} should show {e:?}; it shows:\n{t}");
    }
    shot(c, dir, name).await;
}

async fn session(c: &Client, base: &str, shots: &Path, letter: i64) {
    // Any page sends the browser to the sign-in form first.
    c.goto(&format!("{base}/warnings")).await.expect("goto");
    wait_path(c, "the sign-in form", |p| p == "/login").await;
    shot(c, shots, "00-login").await;
    // A wrong password is refused on the page.
    sign_in(c, "jiancha", "not-the-password").await;
    wait_text(c, "用户名或密码不正确").await;
    shot(c, shots, "01-login-refused").await;
    // The right one brings the browser back to the page it asked for.
    sign_in(c, "jiancha", PASSWORD).await;
    wait_path(c, "/warnings", |p| p == "/warnings").await;
    wait_text(c, "预警看板").await;

    open(
        c,
        base,
        "/",
        shots,
        "02-overview",
        &["总览", A, B, "box-shangshi", "今日空岗"],
    )
    .await;
    open(
        c,
        base,
        "/warnings",
        shots,
        "03-warnings",
        &["预警看板", "SS-0001", "LS-SECRET-01", "超期 1 个工作日"],
    )
    .await;
    // Follow the case link from the board to its timeline.
    click(c, Locator::LinkText("SS-0001")).await;
    let t = wait_text(c, "办件 SS-0001").await;
    assert!(t.contains("办理过程") && t.contains("黄牌"), "{t}");
    shot(c, shots, "04-case-timeline").await;
    open(
        c,
        base,
        &format!("/letters/{letter}"),
        shots,
        "05-letter",
        &["监察建议书", "SS-0002"],
    )
    .await;
    open(
        c,
        base,
        "/cases?view=todo",
        shots,
        "06-cases-todo",
        &["待办", "SS-0001"],
    )
    .await;
    open(
        c,
        base,
        "/cases?view=done",
        shots,
        "07-cases-done",
        &["已办", "SS-0004"],
    )
    .await;
    open(
        c,
        base,
        &format!("/attendance?site={A}&day={TODAY}"),
        shots,
        "08-attendance",
        &["李明", "迟到 6 分", "空岗"],
    )
    .await;
    open(
        c,
        base,
        &format!("/attendance/month?site={A}&month=2025-11"),
        shots,
        "09-attendance-month",
        &["民政办", "巡查签到"],
    )
    .await;
    open(
        c,
        base,
        "/fleet",
        shots,
        "10-fleet",
        &["box-lishan", "tamper", "800 MB"],
    )
    .await;
    open(
        c,
        base,
        "/wall",
        shots,
        "10b-wall",
        &["win-mz-1", "LS-CAM-SECRET", "立即抓拍"],
    )
    .await;
    open(
        c,
        base,
        &format!("/attendance/staff/{A}/0451?month=2025-11"),
        shots,
        "10a-staff-month",
        &["李明", "迟到 6 分"],
    )
    .await;
    // A make-up punch approved with the form's button (no script involved).
    open(
        c,
        base,
        "/attendance/makeups",
        shots,
        "10b-makeups",
        &["补卡审批", "林业站打卡机故障"],
    )
    .await;
    click(c, Locator::Css("button[value=approve]")).await;
    wait_text(c, "已批准").await;
    shot(c, shots, "10c-makeup-approved").await;
    // The language switch in the header.
    c.goto(&format!("{base}/warnings")).await.expect("goto");
    click(c, Locator::LinkText("English")).await;
    let t = wait_text(c, "Warnings board").await;
    assert!(t.contains("yellow card"), "{t}");
    shot(c, shots, "11-warnings-en").await;
    click(c, Locator::LinkText("中文")).await;
    wait_text(c, "预警看板").await;
    // Sign out with the header's button: back at the sign-in form, and pages are closed again.
    click(c, Locator::Css("header button[type=submit]")).await;
    wait_path(c, "the sign-in form after signing out", |p| p == "/login").await;
    c.goto(&format!("{base}/")).await.expect("goto");
    wait_path(c, "the sign-in form", |p| p == "/login").await;

    // The head of A signs in and sees A only.
    sign_in(c, "shangshi", PASSWORD).await;
    wait_path(c, "the overview", |p| p == "/").await;
    for (path, name) in [
        ("/", "12-head-overview"),
        ("/warnings", "13-head-warnings"),
        ("/fleet", "14-head-fleet"),
    ] {
        c.goto(&format!("{base}{path}")).await.expect("goto");
        wait_text(c, A).await;
        let html = c.source().await.expect("source");
        for s in B_ONLY {
            assert!(!html.contains(s), "the head of A sees {s:?} on {path}");
        }
        shot(c, shots, name).await;
    }

    // The admin: every admin page, and a calendar override saved with the page's own form.
    click(c, Locator::Css("header button[type=submit]")).await;
    wait_path(c, "the sign-in form after signing out", |p| p == "/login").await;
    sign_in(c, "admin", PASSWORD).await;
    wait_path(c, "signed in", |p| p != "/login").await;
    for (path, name, expect) in [
        (
            "/admin/users",
            "15-admin-users",
            &["账号管理", "jiancha"][..],
        ),
        ("/admin/items", "16-admin-items", &["事项目录"][..]),
        (
            "/admin/schedules",
            "17-admin-schedules",
            &["作息与考勤规则"][..],
        ),
        (
            "/admin/notify",
            "18-admin-notify",
            &["通知规则", "report_roles"][..],
        ),
        (
            "/admin/calendar",
            "19-admin-calendar",
            &["工作日历", "国务院放假安排"][..],
        ),
    ] {
        open(c, base, path, shots, name, expect).await;
    }
    for (field, value) in [("from", "2025-12-05"), ("reason", "防汛停止对外办公")] {
        c.find(Locator::Css(&format!(
            "form[action='/admin/calendar'] input[name={field}]"
        )))
        .await
        .expect("calendar form field")
        .send_keys(value)
        .await
        .expect("type");
    }
    click(
        c,
        Locator::Css("form[action='/admin/calendar'] button[type=submit]"),
    )
    .await;
    let t = wait_text(c, "已生效").await;
    assert!(
        t.contains("防汛停止对外办公"),
        "the override is listed: {t}"
    );
    shot(c, shots, "20-admin-calendar-saved").await;
    open(
        c,
        base,
        "/admin/audit",
        shots,
        "21-admin-audit",
        &["审计日志", "calendar.set", "calendar:2025-12-05"],
    )
    .await;
}

#[test]
fn the_dashboard_in_headless_chromium() {
    let dir = scratch("dashboard-browser");
    let hub = hub_with_data(&dir);
    let letter: i64 = rusqlite::Connection::open(hub.dir.join("hub.db"))
        .expect("store")
        .query_row(
            "SELECT id FROM letters WHERE case_no = 'SS-0002'",
            [],
            |r| r.get(0),
        )
        .expect("letter");
    let driver = chromedriver(&dir);
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let base = format!("http://127.0.0.1:{}", hub.http);
    let shots = &shots;
    driver.drive(
        None,
        Duration::from_secs(180),
        "the browser session",
        |c| async move { session(&c, &base, shots, letter).await },
    );
    // Keep the screenshots of the last run where a person can look at them.
    let n = keep_screenshots(shots, true);
    assert_eq!(n, 26, "a screenshot of each page");
}

/// "Snapshot now" clicked on the wall, answered by a real box (with a camera that makes frames)
/// through the real broker: the wall comes back with the new picture.
#[test]
fn snapshot_now_from_the_wall_in_headless_chromium() {
    use sunlight_tests::{Agent, BrokerMode, Hub, wait_for};
    let dir = scratch("dashboard-browser-wall");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let (ok, out) = add_user(&hub, "jiancha", "supervisor", None, None, PASSWORD);
    assert!(ok, "{out}");
    let api = format!("http://127.0.0.1:{}", hub.http);
    let hub_section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{}\"\napi = \"{api}\"\n[health]\ninterval_secs = 0\n[[camera]]\nid = \"window-3\"\nkind = \"file\"\nwidth = 640\nheight = 360\n",
        hub.mqtt_port()
    );
    let mut agent = Agent::new_with_hub(&dir.join("box"), A, "box-shangshi", &hub_section, &hub);
    agent.start();
    wait_for(Duration::from_secs(20), "the box online", || {
        agent
            .status()
            .filter(|s| s["link"]["connected"] == true)
            .map(|_| ())
    });
    // A first picture, so that the camera is on the wall.
    let (status, first) = hub
        .post(
            &format!("/api/v1/cameras/{A}/window-3/snapshot?wait=30"),
            &json!({}),
        )
        .expect("first snapshot");
    assert_eq!(status, 200, "{first}");
    let first_sha = first["snapshot"]["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();

    let driver = chromedriver(&dir);
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let (base, shots, first) = (api.clone(), &shots, first_sha.clone());
    let new_sha = driver.drive(
        None,
        Duration::from_secs(90),
        "the wall session",
        |c| async move {
            c.goto(&format!("{base}/wall")).await.expect("goto");
            wait_path(&c, "the sign-in form", |p| p == "/login").await;
            sign_in(&c, "jiancha", PASSWORD).await;
            wait_path(&c, "the wall", |p| p == "/wall").await;
            wait_text(&c, "window-3").await;
            shot(&c, shots, "wall").await;
            click(&c, Locator::XPath("//button[contains(., '立即抓拍')]")).await;
            // The page waits up to 10 s for the box's picture ("已抓拍"). On a busy machine the
            // box may answer later: the page then says the command is out and looks again every
            // 10 s until the picture is there. Either way the wall ends with the new picture,
            // loaded by the browser (signed in by its session cookie).
            let mut seen = (String::new(), json!(null));
            for _ in 0..300 {
                let src = match c.find(Locator::Css(".cam img")).await {
                    Ok(img) => img.attr("src").await.ok().flatten().unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let width = c
                    .execute(
                        "var i = document.querySelector('.cam img'); return i ? i.naturalWidth : 0",
                        vec![],
                    )
                    .await
                    .unwrap_or(json!(0));
                seen = (src, width);
                if !seen.0.is_empty() && !seen.0.contains(&first) && seen.1 == json!(320) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let t = wait_text(&c, "window-3").await;
            assert!(
                t.contains("已抓拍") || t.contains("抓拍指令已发出"),
                "the page says what became of the command: {t}"
            );
            shot(&c, shots, "wall-after-snapshot-now").await;
            assert_eq!(seen.1, json!(320), "a 320 px thumbnail loaded: {seen:?}");
            seen.0
        },
    );
    assert!(
        new_sha.contains("?thumb=1") && !new_sha.contains(&first_sha),
        "the wall shows the new picture, not the first: {new_sha}"
    );
    keep_screenshots(shots, false);
}
