//! The dashboard on the demo's own data: `sunlight-demo` (what `scripts/demo`, the README's first
//! Quickstart command, runs) starts as a process with its hub and three boxes, and headless
//! Chromium signs in with the accounts it prints and opens every page: as the county supervisor,
//! as the admin, and as a township head, who sees no other township. Screenshots are saved as
//! `demo-*.png` next to the other browser tests' (`target/debug/e2e/browser-screenshots/`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sunlight_tests::browser::fantoccini::{Client, Locator};
use sunlight_tests::browser::{
    chromedriver, click, keep_screenshots, shot, sign_in, wait_path, wait_text,
};
use sunlight_tests::{bin, scratch};

const A: &str = "suixian-shangshi";
const OTHERS: [&str; 2] = ["suixian-lishan", "suixian-yindian"];

/// How long the demo runs (`--seconds`): time to start, to record events and for the browser
/// session. The test then waits for it to end on its own, which stops its hub and boxes.
const DEMO_SECONDS: u64 = 100;

/// What the demo prints that a person needs: the dashboard's address and the accounts.
struct Demo {
    base: String,
    passwords: HashMap<String, String>,
}

/// Reads the demo's output until it has printed the dashboard and its accounts and its boxes have
/// had `events` events recorded by the hub; the rest of its output is read (and dropped) until it
/// ends, so that it never writes to a closed pipe.
fn read_demo(out: std::process::ChildStdout, events: usize) -> Demo {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut base, mut passwords, mut recorded) = (None, HashMap::new(), 0);
    while base.is_none() || passwords.len() < 3 || recorded < events {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the demo's output stopped ({e}) before it was ready"));
        if let Some(rest) = line.strip_prefix("Dashboard: ") {
            base = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches('/').to_owned());
        }
        if let Some((name, rest)) = line.trim().split_once(" / ")
            && ["admin", "jiancha", "shangshi"].contains(&name)
            && let Some(password) = rest.split_whitespace().next()
        {
            passwords.insert(name.to_owned(), password.to_owned());
        }
        if line.contains("→ recorded") {
            recorded += 1;
        }
    }
    Demo {
        base: base.expect("the dashboard's address"),
        passwords,
    }
}

/// Opens `path`, waits for each of `expect` and keeps a screenshot.
async fn open(
    c: &Client,
    demo: &Demo,
    path: &str,
    name: &str,
    expect: &[&str],
    shots: &std::path::Path,
) {
    c.goto(&format!("{}{path}", demo.base)).await.expect("goto");
    let t = wait_text(c, expect[0]).await;
    for e in expect {
        assert!(t.contains(e), "{path} should show {e:?}; it shows:\n{t}");
    }
    shot(c, shots, &format!("demo-{name}")).await;
}

async fn sign_in_as(c: &Client, demo: &Demo, name: &str) {
    c.goto(&format!("{}/login", demo.base)).await.expect("goto");
    sign_in(c, name, &demo.passwords[name]).await;
    wait_path(c, "signed in", |p| p != "/login").await;
}

async fn sign_out(c: &Client) {
    click(c, Locator::Css("header button[type=submit]")).await;
    wait_path(c, "the sign-in form after signing out", |p| p == "/login").await;
}

async fn session(c: &Client, demo: &Demo, shots: &std::path::Path) {
    sign_in_as(c, demo, "jiancha").await;
    let pages: [(&str, &str, &[&str]); 13] = [
        ("/", "overview", &["总览", A, OTHERS[0], OTHERS[1]]),
        ("/warnings", "warnings", &["预警看板"]),
        ("/cases?view=todo", "cases-todo", &["待办"]),
        ("/cases?view=doing", "cases-doing", &["在办"]),
        ("/cases?view=done", "cases-done", &["已办"]),
        (
            "/cases/suixian-shangshi/shangshi-00000",
            "case-timeline",
            &["办件 shangshi-00000", "办理过程"],
        ),
        (
            "/attendance?site=suixian-shangshi",
            "attendance",
            &["考勤", "李明", "民政办"],
        ),
        (
            "/attendance/month?site=suixian-shangshi",
            "attendance-month",
            &["考勤", "民政办"],
        ),
        ("/attendance/makeups", "makeups", &["补卡审批"]),
        (
            "/reports?site=suixian-shangshi",
            "report-township",
            &["窗口工作情况通报", A],
        ),
        ("/reports", "report-county", &["窗口工作情况通报（全县）"]),
        ("/fleet", "fleet", &["设备", A, OTHERS[0], OTHERS[1]]),
        ("/wall", "wall", &["抓拍墙"]),
    ];
    for (path, name, expect) in pages {
        open(c, demo, path, name, expect, shots).await;
    }
    sign_out(c).await;

    sign_in_as(c, demo, "admin").await;
    let admin: [(&str, &str, &[&str]); 6] = [
        (
            "/admin/users",
            "admin-users",
            &["账号管理", "jiancha", "shangshi"],
        ),
        ("/admin/items", "admin-items", &["事项目录", "老年优待证"]),
        (
            "/admin/calendar",
            "admin-calendar",
            &["工作日历", "国务院放假安排"],
        ),
        ("/admin/schedules", "admin-schedules", &["作息与考勤规则"]),
        (
            "/admin/notify",
            "admin-notify",
            &["通知规则", "report_roles"],
        ),
        ("/admin/audit", "admin-audit", &["审计日志"]),
    ];
    for (path, name, expect) in admin {
        open(c, demo, path, name, expect, shots).await;
    }
    sign_out(c).await;

    // The head of 尚市镇 sees their township and nothing of the other two.
    sign_in_as(c, demo, "shangshi").await;
    for (path, name) in [
        ("/", "head-overview"),
        ("/warnings", "head-warnings"),
        ("/cases?view=todo", "head-cases"),
        ("/reports", "head-report"),
    ] {
        open(c, demo, path, name, &[A], shots).await;
        let html = c.source().await.expect("source");
        for other in OTHERS {
            assert!(
                !html.contains(other),
                "the head of {A} sees {other} on {path}"
            );
        }
    }
}

#[test]
fn every_page_of_the_demo_in_headless_chromium() {
    let dir = scratch("browser-demo");
    let mut child = Command::new(bin("sunlight-demo"))
        .args(["--seconds", &DEMO_SECONDS.to_string(), "--dir"])
        .arg(dir.join("demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let started = Instant::now();
    let demo = read_demo(child.stdout.take().expect("the demo's output"), 60);
    let driver = chromedriver(&dir);
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let (demo, shots) = (&demo, &shots);
    let left = Duration::from_secs(DEMO_SECONDS).saturating_sub(started.elapsed());
    driver.drive(None, left, "the demo session", |c| async move {
        session(&c, demo, shots).await
    });
    assert_eq!(
        keep_screenshots(shots, false),
        23,
        "a screenshot of each page"
    );
    // The demo ends by itself and stops its hub and boxes.
    let status = child.wait().expect("the demo ends");
    assert!(status.success(), "the demo ended with {status}");
}
