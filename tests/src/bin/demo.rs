//! `sunlight-demo`: a county hub with its embedded broker, and three township boxes whose clerks
//! punch in and out while the approval system posts case stages and ratings. Everything is real —
//! processes, MQTT, SQLite, HTTP — only the township systems are simulated.
//!
//! Usage: `sunlight-demo [--seconds N] [--dir DIR]` (runs until Ctrl-C without --seconds).

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use sunlight_tests::{Agent, BrokerMode, Hub, add_intake_key, free_port, intake_client};

struct Township {
    name: &'static str,
    site: &'static str,
    staff: [&'static str; 4],
}

const TOWNSHIPS: [Township; 3] = [
    Township {
        name: "尚市镇 Shangshi",
        site: "suixian-shangshi",
        staff: ["0451", "0452", "0453", "0454"],
    },
    Township {
        name: "厉山镇 Lishan",
        site: "suixian-lishan",
        staff: ["0611", "0612", "0613", "0614"],
    },
    Township {
        name: "殷店镇 Yindian",
        site: "suixian-yindian",
        staff: ["0721", "0722", "0723", "0724"],
    },
];

/// The demo's clerks: at each township the first two at 民政办's window W1, the other two at
/// 林业站's W2; the first of each pair holds the window (A), the second substitutes (B).
const NAMES: [&str; 12] = [
    "李明", "王芳", "张强", "赵敏", "刘洋", "陈静", "杨帆", "黄磊", "周婷", "吴昊", "徐丽", "孙伟",
];

fn roster() -> String {
    let mut text = String::new();
    for (i, t) in TOWNSHIPS.iter().enumerate() {
        for (j, id) in t.staff.iter().enumerate() {
            let (unit, window) = if j < 2 {
                ("民政办", "W1")
            } else {
                ("林业站", "W2")
            };
            text.push_str(&format!(
                "[[staff]]\nsite = \"{}\"\nstaff_id = \"{id}\"\nname = \"{}\"\nunit = \"{unit}\"\nwindow = \"{window}\"\nrole = \"{}\"\n",
                t.site,
                NAMES[i * 4 + j],
                if j % 2 == 0 { "A" } else { "B" }
            ));
        }
    }
    text
}

/// Items from the seeds: (code, name, unit, window, promised days; 0 = 即办件 immediate).
const ITEMS: [(&str, &str, &str, &str, u32); 5] = [
    ("MZ-001", "老年优待证", "民政办", "W1", 40),
    ("LY-003", "林木采伐证", "林业站", "W2", 10),
    ("LY-007", "植物检疫证", "林业站", "W2", 5),
    ("GA-012", "户口迁移", "派出所", "W3", 0),
    ("SY-004", "食品经营许可证地址变更", "市场监管所", "W4", 7),
];

/// Contacts for the demo; without a webhook the hub writes each message to its log.
const DEMO_CONFIG: &str = r#"
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
"#;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let seconds: Option<u64> = arg("--seconds").and_then(|s| s.parse().ok());
    let dir = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sunlight-demo-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);

    println!("Sunlight demo — 让权力在阳光下运行\n");
    println!("Starting the county hub (embedded MQTT broker, SQLite store) ...");
    let mqtt = free_port();
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(mqtt));
    // Prefer the familiar port 8080 for the API when it is free.
    if std::net::TcpListener::bind("127.0.0.1:8080").is_ok() {
        hub.http = 8080;
    }
    // The demo item catalog and who is told at each warning step (messages go to the hub's log).
    let imported = std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
        .args(["items", "import", "--demo", "--data-dir"])
        .arg(&hub.dir)
        .output();
    if !imported.is_ok_and(|o| o.status.success()) {
        println!("  (could not import the demo item catalog)");
    }
    // The clerks, so that the attendance pages have windows to judge.
    let roster_file = hub.dir.join("roster.toml");
    let imported = std::fs::write(&roster_file, roster()).is_ok()
        && std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
            .args(["roster", "import", "--data-dir"])
            .arg(&hub.dir)
            .arg(&roster_file)
            .output()
            .is_ok_and(|o| o.status.success());
    if !imported {
        println!("  (could not import the demo roster)");
    }
    let config = hub.dir.join("hub.toml");
    let written = std::fs::write(&config, DEMO_CONFIG);
    if written.is_ok() {
        hub.extra_args = vec!["--config".into(), config.display().to_string()];
    }
    hub.start();
    let api = format!("http://127.0.0.1:{}", hub.http);
    // Ready dashboard accounts (demo passwords; a real county creates its own: docs/dashboard.md).
    let mut accounts = Vec::new();
    for (name, role, site) in [
        ("admin", "admin", None),
        ("jiancha", "supervisor", None),
        ("shangshi", "head", Some("suixian-shangshi")),
    ] {
        let password = format!("sunlight-{name}-demo");
        if hub.add_account(name, role, site, &password) {
            accounts.push(format!(
                "{name} / {password} ({role}{})",
                site.map(|s| format!(", {s}")).unwrap_or_default()
            ));
        }
    }
    println!("  hub API     {api}/api/v1/devices   (MQTT on 127.0.0.1:{mqtt})");

    let mut agents = Vec::new();
    // Each box's approval system and pads post with a key of their own (LAN kinds only); the
    // simulated terminal's punches come with the harness's key, accepted only from the box itself.
    let mut approval_keys = Vec::new();
    for t in &TOWNSHIPS {
        let mut a = Agent::new(
            &dir.join(t.site),
            t.site,
            "box-01",
            mqtt,
            &hub,
            "[health]\ninterval_secs = 10\n",
        );
        a.start();
        let key = add_intake_key(
            &a.config,
            "demo-approval",
            "case,rating,complaint,duty",
            false,
        );
        println!(
            "  box {:<18} intake http://127.0.0.1:{}/api/v1/events   status: sunlight-agent -c {} status",
            t.name,
            a.intake,
            a.config.display()
        );
        println!(
            "      approval-system key: {key}   (sunlight-agent -c {} intake-key list)",
            a.config.display()
        );
        approval_keys.push(intake_client(&key));
        agents.push(a);
    }
    println!("\nDashboard: {api}/   sign in as");
    for a in &accounts {
        println!("  {a}");
    }
    println!("\nWhere to look (the API needs a token; this one acts as an admin account):");
    println!("  AUTH='Authorization: Bearer {}'", hub.api_token());
    println!(
        "  curl -s -H \"$AUTH\" {api}/api/v1/devices            # boxes: online, last seen, backlog, clock offset"
    );
    println!(
        "  curl -s -H \"$AUTH\" '{api}/api/v1/events?kind=punch' # punches as the hub stored them"
    );
    println!("  curl -s -H \"$AUTH\" '{api}/api/v1/events?kind=case'  # case stages (受理 → 办结)");
    println!(
        "  curl -s -H \"$AUTH\" '{api}/api/v1/cases'             # open cases with their light or card and due day"
    );
    println!(
        "  curl -s -H \"$AUTH\" '{api}/api/v1/cases?view=doing'  # 在办 (also todo 待办, done 已办)"
    );
    println!(
        "  curl -s -H \"$AUTH\" {api}/api/v1/rates               # on-time, early, satisfaction rates per unit"
    );
    println!(
        "  curl -s -H \"$AUTH\" {api}/api/v1/letters             # supervision letters; /api/v1/letters/ID prints one"
    );
    println!("  curl -s -H \"$AUTH\" {api}/api/v1/work-orders         # bad ratings followed up");
    println!("  curl -s -H \"$AUTH\" {api}/api/v1/complaints          # the complaints queue");
    println!(
        "  curl -s -H \"$AUTH\" {api}/api/v1/notifications       # who was told what (see hub/hub.log)"
    );
    println!("  curl -s {api}/metrics                    # ingest counters");
    println!("  logs and databases under {}\n", dir.display());

    let started = Instant::now();
    let mut tick: u64 = 0;
    loop {
        for (i, (t, a)) in TOWNSHIPS.iter().zip(&agents).enumerate() {
            let event = simulate(t, tick + i as u64);
            let what = describe(t, &event);
            let sent = if event["kind"] == "punch" {
                a.post(&event)
            } else {
                approval_keys[i].post_json(&a.intake_url(), &event)
            };
            match sent {
                Some((201, body)) => println!(
                    "[{}] {what}  → recorded, seq {}",
                    t.name, body["accepted"][0]["seq"]
                ),
                Some((status, body)) => println!(
                    "[{}] {what}  → refused ({status}): {}",
                    t.name, body["error"]
                ),
                None => println!("[{}] {what}  → box not answering", t.name),
            }
        }
        tick += 1;
        if tick % 10 == 0 {
            print_hub(&hub);
        }
        if seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    print_hub(&hub);
    println!("\nDemo finished; data kept under {}", dir.display());
}

fn simulate(t: &Township, n: u64) -> Value {
    let staff = t.staff[(n % 4) as usize];
    match n % 5 {
        0 | 1 => {
            json!({"kind": "punch", "body": {"staff_id": staff, "direction": if n % 2 == 0 { "in" } else { "out" },
            "method": "card", "source": "zkteco-1", "terminal_sn": "CDQ9190960040"}})
        }
        // One step of a case every five ticks: 受理 → 承办 → 审核 → 批准 → 办结. Every other case stalls
        // after acceptance, and acceptances are back-dated 0–6 days, so the hub has lights and cards to show
        // (and, from the second day back, the box's 倒签 mark on the case page and in the report).
        2 => {
            let case_idx = n / 25;
            let step = (n / 5 % 5) as usize;
            if case_idx % 2 == 1 && step > 0 {
                return rating(staff, n);
            }
            let (code, name, unit, window, days) = ITEMS[(case_idx % 5) as usize];
            let stages = [
                "accepted",
                "undertaken",
                "reviewed",
                "approved",
                "completed",
            ];
            let mut body = json!({"case_no": format!("{}-{:05}", t.site.rsplit('-').next().unwrap_or("x"), case_idx), "item_code": code,
                "item_name": name, "unit": unit, "window": window, "stage": stages[step], "staff_id": staff,
                "kind": if days == 0 { "immediate" } else { "promised" }, "applicant_phone": "13812345678"});
            if days > 0 {
                body["limit_days"] = json!(days);
                body["limit_unit"] = json!("working");
            }
            let mut event = json!({"kind": "case", "body": body});
            if step == 0 {
                let back = chrono::Duration::days((case_idx % 7) as i64);
                let at = (chrono::Utc::now() - back)
                    .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"));
                event["at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false));
            }
            event
        }
        // Right after a case completes, its applicant rates it: every third one 不满意 (a work order).
        3 if n / 25 % 2 == 0 && n / 5 % 5 == 4 => {
            let case_idx = n / 25;
            json!({"kind": "rating", "body": {"case_no": format!("{}-{:05}", t.site.rsplit('-').next().unwrap_or("x"), case_idx),
                "level": if case_idx % 3 == 0 { 2 } else { 5 }, "channel": "pad", "comment": if case_idx % 3 == 0 { "等候时间太长" } else { "" }}})
        }
        // Now and then a complaint from the 12345 hotline.
        4 if n % 60 == 4 => {
            json!({"kind": "complaint", "body": {"complaint_no": format!("TS-{}-{n}", t.site.rsplit('-').next().unwrap_or("x")),
                "channel": "12345", "about": {"unit": "民政办", "window": "W1"}, "text": "窗口上班时间无人", "contact": "13900001111"}})
        }
        _ => rating(staff, n),
    }
}

fn rating(staff: &str, n: u64) -> Value {
    json!({"kind": "rating", "body": {"window": "W1", "level": 3 + n % 3, "channel": "pad", "staff_id": staff,
        "indicators": {"efficiency": 5, "attitude": 4}}})
}

fn describe(_t: &Township, e: &Value) -> String {
    let b = &e["body"];
    match e["kind"].as_str() {
        Some("punch") => format!(
            "clerk {} punched {}",
            b["staff_id"].as_str().unwrap_or("?"),
            b["direction"].as_str().unwrap_or("?")
        ),
        Some("case") => format!(
            "case {} {} ({}): {}",
            b["case_no"].as_str().unwrap_or("?"),
            b["item_name"].as_str().unwrap_or("?"),
            b["unit"].as_str().unwrap_or("?"),
            b["stage"].as_str().unwrap_or("?")
        ),
        Some("rating") => format!(
            "rating {} of 5 for {}",
            b["level"],
            b["case_no"]
                .as_str()
                .or(b["window"].as_str())
                .unwrap_or("?")
        ),
        Some("complaint") => format!(
            "complaint {} via {}",
            b["complaint_no"].as_str().unwrap_or("?"),
            b["channel"].as_str().unwrap_or("?")
        ),
        _ => "event".into(),
    }
}

fn print_hub(hub: &Hub) {
    let Some(devices) = hub.get("/api/v1/devices") else {
        return;
    };
    println!("\n  hub sees:");
    for d in devices["devices"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} {:<7} events through seq {:<5} backlog {:<4} clock offset {} ms",
            d["site"].as_str().unwrap_or("?"),
            if d["online"] == true {
                "online"
            } else {
                "offline"
            },
            d["last_seq"],
            d["backlog_events"],
            d["clock_offset_ms"]
        );
    }
    if let Some(cases) = hub.get("/api/v1/cases?open=false&limit=1000") {
        let mut by_level: std::collections::BTreeMap<String, usize> = Default::default();
        for c in cases["cases"].as_array().into_iter().flatten() {
            let key = if c["open"] == false {
                "closed".to_string()
            } else if c["problem"].is_string() {
                // e.g. a 40-working-day limit reaching into a year whose holiday notice is not out yet
                "waiting for next year's holiday calendar".to_string()
            } else {
                c["level"]
                    .as_str()
                    .unwrap_or("not yet accepted")
                    .to_string()
            };
            *by_level.entry(key).or_default() += 1;
        }
        let summary: Vec<String> = by_level.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "    cases: {}",
            if summary.is_empty() {
                "none yet".into()
            } else {
                summary.join(", ")
            }
        );
    }
    let count = |path: &str, key: &str| {
        hub.get(path)
            .and_then(|v| v[key].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    println!(
        "    supervision letters {}, work orders {}, complaints {}, messages {}",
        count("/api/v1/letters", "letters"),
        count("/api/v1/work-orders", "work_orders"),
        count("/api/v1/complaints", "complaints"),
        count("/api/v1/notifications?limit=1000", "notifications")
    );
    println!();
}
