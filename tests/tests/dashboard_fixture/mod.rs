//! What the dashboard tests share: a hub whose store holds two townships' worth of data (boxes with
//! health, a roster, punches, cases on every rung of the warning ladder, supervision letters, an
//! alarm) written with the hub's own store functions before it starts, the accounts of every role
//! made with `sunlight-hub user add`, and a small HTTP client that keeps cookies by hand and does
//! not follow redirects, so each answer is seen as the browser would get it.

#![allow(dead_code)]

use sha2::Digest;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::store::{self, Writer};
use sunlight_hub::supervise::Supervision;
use sunlight_protocol::{DeviceId, DeviceKey, SiteId};
use sunlight_tests::{BrokerMode, Hub, bin, free_port};

/// Township A (尚市镇) and township B (厉山镇).
pub const A: &str = "suixian-shangshi";
pub const B: &str = "suixian-lishan";
/// The hub's simulated day: a Tuesday.
pub const TODAY: &str = "2025-11-04";
pub const PASSWORD: &str = "correct-horse-battery";

/// Strings that exist only in B's data: a user scoped to A must never see any of them.
pub const B_ONLY: [&str; 7] = [
    B,
    "box-lishan",
    "LS-SECRET-01",
    "LS-SECRET-02",
    "陈秘密",
    "L611",
    "LS-CAM-SECRET",
];

/// The cameras of the two townships: (site, box, camera).
pub const CAMERAS: [(&str, &str, &str); 2] = [
    (A, "box-shangshi", "win-mz-1"),
    (B, "box-lishan", "LS-CAM-SECRET"),
];
/// Strings of A's 林业站 only: the chief of A's 民政办 must not see them.
pub const A_FORESTRY_ONLY: [&str; 3] = ["SS-0002", "赵林", "林业站"];

/// (name, role, site, unit) of the accounts the tests sign in with.
pub const USERS: [(&str, &str, Option<&str>, Option<&str>); 6] = [
    ("admin", "admin", None, None),
    ("jiancha", "supervisor", None, None),
    ("shangshi", "head", Some(A), None),
    ("shangshi-mz", "head", Some(A), Some("民政办")),
    ("yunwei", "technician", None, None),
    ("locked", "supervisor", None, None),
];

fn case(
    no: &str,
    item: &str,
    unit: &str,
    window: &str,
    staff: &str,
    stage: &str,
    limit: u32,
) -> String {
    serde_json::json!({"case_no": no, "item_code": "X-1", "item_name": item, "unit": unit, "window": window,
        "stage": stage, "staff_id": staff, "kind": "promised", "limit_days": limit, "limit_unit": "working"})
    .to_string()
}

/// Writes the two townships' data into the store at `db`, as ingest would have.
pub fn seed(db: &Path) {
    let today: chrono::NaiveDate = TODAY.parse().expect("date");
    let sup = Supervision::new(
        Arc::new(Calendar::official().expect("calendar")),
        HubClock::fixed(today),
        Arc::new(HubConfig::default()),
    )
    .expect("supervision");
    for (site, device) in [(A, "box-shangshi"), (B, "box-lishan")] {
        let key = DeviceKey::generate().expect("key");
        store::add_device(
            db,
            &SiteId::new(site).expect("site"),
            &DeviceId::new(device).expect("device"),
            &key.public(),
        )
        .expect("register box");
    }
    let roster = format!(
        r#"
[[staff]]
site = "{A}"
staff_id = "0451"
name = "李明"
unit = "民政办"
window = "W1"
role = "A"
[[staff]]
site = "{A}"
staff_id = "0452"
name = "王芳"
unit = "民政办"
window = "W1"
role = "B"
[[staff]]
site = "{A}"
staff_id = "0454"
name = "赵林"
unit = "林业站"
window = "W2"
role = "A"
[[staff]]
site = "{B}"
staff_id = "L611"
name = "陈秘密"
unit = "民政办"
window = "W1"
role = "A"
"#
    );
    let staff = store::attendance::parse_roster(&roster).expect("roster");
    let mut w = Writer::open(db).expect("store");
    let tx = w.transaction().expect("tx");
    store::attendance::upsert_staff(&tx, &staff).expect("staff");
    let t = |day: &str, hm: &str| format!("{day}T{hm}:00+08:00");
    let cases = [
        // Accepted Monday 10-27, 5 working days: due 11-03, one day overdue today: a yellow card.
        (
            A,
            t("2025-10-27", "09:00"),
            case(
                "SS-0001",
                "老年优待证",
                "民政办",
                "W1",
                "0451",
                "accepted",
                5,
            ),
        ),
        // Accepted 10-20, 3 days: due 10-23, long overdue: a supervision letter.
        (
            A,
            t("2025-10-20", "09:00"),
            case(
                "SS-0002",
                "植物检疫证",
                "林业站",
                "W2",
                "0454",
                "accepted",
                3,
            ),
        ),
        // Accepted today and taken up: blue, in progress (在办).
        (
            A,
            t("2025-11-04", "09:00"),
            case(
                "SS-0003",
                "老年优待证",
                "民政办",
                "W1",
                "0451",
                "accepted",
                10,
            ),
        ),
        (
            A,
            t("2025-11-04", "10:00"),
            case(
                "SS-0003",
                "老年优待证",
                "民政办",
                "W1",
                "0452",
                "undertaken",
                10,
            ),
        ),
        // Completed: done (已办).
        (
            A,
            t("2025-11-03", "09:00"),
            case(
                "SS-0004",
                "老年优待证",
                "民政办",
                "W1",
                "0451",
                "accepted",
                5,
            ),
        ),
        (
            A,
            t("2025-11-04", "11:00"),
            case(
                "SS-0004",
                "老年优待证",
                "民政办",
                "W1",
                "0451",
                "completed",
                5,
            ),
        ),
        (
            B,
            t("2025-10-20", "09:00"),
            case(
                "LS-SECRET-01",
                "老年优待证",
                "民政办",
                "W1",
                "L611",
                "accepted",
                3,
            ),
        ),
        (
            B,
            t("2025-11-03", "09:00"),
            case(
                "LS-SECRET-02",
                "老年优待证",
                "民政办",
                "W1",
                "L611",
                "accepted",
                5,
            ),
        ),
        (
            B,
            t("2025-11-04", "09:30"),
            case(
                "LS-SECRET-02",
                "老年优待证",
                "民政办",
                "W1",
                "L611",
                "completed",
                5,
            ),
        ),
    ];
    for (site, at, body) in &cases {
        store::cases::apply_event(&tx, site, at, body, &sup, today).expect("case");
    }
    let punch = |staff: &str, dir: &str| {
        serde_json::json!({"staff_id": staff, "direction": dir, "method": "card", "source": "zkteco-1"}).to_string()
    };
    for (site, at, body, offset) in [
        (A, t(TODAY, "08:36"), punch("0451", "in"), Some(4_000)),
        (A, t(TODAY, "12:02"), punch("0451", "out"), Some(4_000)),
        (B, t(TODAY, "08:20"), punch("L611", "in"), Some(-1_500)),
    ] {
        store::attendance::apply_punch(&tx, site, &at, &body, offset).expect("punch");
    }
    store::attendance::apply_patrol(
        &tx,
        A,
        &t(TODAY, "10:00"),
        &serde_json::json!({"leader_id": "L01", "unit": "民政办", "findings": []}).to_string(),
    )
    .expect("patrol");
    // Make-up punch requests (补卡), one per township, waiting for a decision.
    for (site, staff, time, reason) in [
        (A, "0454", "08:30", "林业站打卡机故障"),
        (B, "L611", "17:30", "忘记打卡（陈秘密）"),
    ] {
        let req = store::attendance::MakeupRequest {
            site: site.into(),
            staff_id: staff.into(),
            day: today,
            time: time.into(),
            reason: reason.into(),
            by: staff.into(),
        };
        store::attendance::request_makeup(&tx, &sup.config(), &sup.calendar(), &req, today)
            .expect("make-up request");
    }
    store::tx::alarm(
        &tx,
        Some(B),
        Some("box-lishan"),
        "tamper",
        "a forged batch from box-lishan",
    )
    .expect("alarm");
    tx.commit().expect("commit");
    for (site, device, health) in [
        (
            A,
            "box-shangshi",
            r#"{"cpu": 13.4, "mem": 350000000, "disk_free": 21000000000, "uptime": 86400, "backlog_events": 0, "backlog_bytes": 0, "clock_offset_ms": 4000, "version": "0.1.0"}"#,
        ),
        (
            B,
            "box-lishan",
            r#"{"cpu": 3.0, "mem": 250000000, "disk_free": 800000000, "uptime": 7200, "backlog_events": 17, "backlog_bytes": 4096, "clock_offset_ms": -1500, "version": "0.1.0"}"#,
        ),
    ] {
        let (s, d) = (
            SiteId::new(site).expect("site"),
            DeviceId::new(device).expect("device"),
        );
        let id = w.device(&s, &d).expect("device").expect("registered").id;
        w.set_status(&s, &d, true, "0.1.0").expect("status");
        let tx = w.transaction().expect("tx");
        store::tx::record_health(&tx, id, health).expect("health");
        store::tx::touch_device(&tx, id, store::now_ms()).expect("seen");
        // The last two hours of health samples, every 10 minutes: B's backlog only grows and its
        // disk is 96% full (both fleet alarms); A's backlog goes up and down to nothing.
        let now = chrono::Utc::now();
        for i in 0..13i64 {
            let at = (now - chrono::Duration::minutes(120 - i * 10)).to_rfc3339();
            let (backlog, free, total) = if site == B {
                (10 + i * 40, 800_000_000i64, 20_000_000_000i64)
            } else {
                (
                    [0, 12, 3, 0][(i % 4) as usize],
                    21_000_000_000,
                    64_000_000_000,
                )
            };
            let sample = serde_json::json!({"cpu": 5.0, "mem": 1, "disk_free": free, "disk_total": total,
                "uptime": 1, "backlog_events": backlog, "backlog_bytes": 0, "version": "0.1.0"});
            sunlight_hub::fleet::record_health(&tx, id, site, device, &at, &sample.to_string())
                .expect("health sample");
        }
        tx.commit().expect("commit");
    }
    // One picture per camera, taken on the simulated day, with the image in the blob store.
    let blobs = sunlight_hub::blobs::LocalDir::new(db.parent().expect("data dir").join("blobs"))
        .expect("blob dir");
    let tx = w.transaction().expect("tx");
    for (n, (site, device, camera)) in CAMERAS.into_iter().enumerate() {
        let jpeg = sunlight_agent::capture::camera::jpeg::generate(640, 360, n as u64, camera);
        let sha = hex::encode(sha2::Sha256::digest(&jpeg));
        sunlight_hub::blobs::BlobStore::put(&blobs, &sha, &jpeg).expect("image stored");
        tx.execute(
            "INSERT INTO blobs (sha256, site, device, bytes, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![sha, site, device, jpeg.len() as i64, store::now_ms()],
        )
        .expect("blob row");
        let body = serde_json::json!({"camera_id": camera, "sha256": sha, "bytes": jpeg.len(),
            "width": 640, "height": 360, "taken_at": format!("{TODAY}T09:30:00+08:00"), "trigger": "schedule"});
        sunlight_hub::blobs::apply_snapshot(&tx, site, device, &body.to_string())
            .expect("snapshot");
    }
    tx.commit().expect("commit");
}

/// The SHA-256 of a camera's picture in the fixture.
pub fn picture_of(hub: &Hub, camera: &str) -> String {
    rusqlite::Connection::open(hub.dir.join("hub.db"))
        .expect("store")
        .query_row(
            "SELECT sha256 FROM snapshots WHERE camera_id = ?1",
            [camera],
            |r| r.get(0),
        )
        .expect("a picture of the camera")
}

/// `sunlight-hub user add`, the password on standard input: (success, stdout + stderr).
pub fn add_user(
    hub: &Hub,
    name: &str,
    role: &str,
    site: Option<&str>,
    unit: Option<&str>,
    password: &str,
) -> (bool, String) {
    let mut cmd = Command::new(bin("sunlight-hub"));
    cmd.args(["user", "add", "--name", name, "--role", role, "--data-dir"])
        .arg(&hub.dir);
    if let Some(s) = site {
        cmd.args(["--site", s]);
    }
    if let Some(u) = unit {
        cmd.args(["--unit", u]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sunlight-hub user add");
    // A refused `user add` (a bad role or site, say) may exit before it reads the password: the
    // write then fails with a broken pipe, and the exit status and output below say why.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
    {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write password: {e}"
        );
    }
    let out = child.wait_with_output().expect("user add");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A hub on a simulated day with both townships' data and every account, started.
pub fn hub_with_data(dir: &Path) -> Hub {
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.extra_args = vec![
        "--today".into(),
        TODAY.into(),
        "--tick-secs".into(),
        "3600".into(),
    ];
    seed(&hub.dir.join("hub.db"));
    for (name, role, site, unit) in USERS {
        let (ok, out) = add_user(&hub, name, role, site, unit, PASSWORD);
        assert!(ok, "user add {name}: {out}");
    }
    hub.start();
    hub
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        self.body[at..].split('"').next().map(str::to_owned)
    }
}

/// A client that keeps its cookies by hand and follows no redirect.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
    /// Sent with every request (e.g. X-Forwarded-For), when set.
    pub extra: Vec<(String, String)>,
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    pub fn new(hub: &Hub) -> Browser {
        Browser {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .expect("client"),
            base: format!("http://127.0.0.1:{}", hub.http),
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let mut req = req;
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", c.join("; "));
        }
        for (k, v) in &self.extra {
            req = req.header(k.as_str(), v.as_str());
        }
        let answer = self.rt.block_on(async {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            Answer {
                status,
                headers,
                body: r.text().await.unwrap_or_default(),
            }
        });
        for c in answer.set_cookies() {
            let first = c.split(';').next().unwrap_or("");
            let Some((k, v)) = first.split_once('=') else {
                continue;
            };
            if c.contains("Max-Age=0") {
                self.cookies.remove(k.trim());
            } else {
                self.cookies
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        answer
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req)
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(fields));
        self.send(req)
    }

    /// Opens the sign-in page and submits it.
    pub fn login(&mut self, name: &str, password: &str) -> Answer {
        let form = self.get("/login");
        assert_eq!(form.status, 200, "{}", form.body);
        let token = form.csrf().expect("the sign-in form has a token");
        self.post(
            "/login",
            &[
                ("csrf", &token),
                ("name", name),
                ("password", password),
                ("next", "/"),
            ],
        )
    }

    /// Signs in and insists it worked.
    pub fn signed_in(hub: &Hub, name: &str) -> Browser {
        let mut b = Browser::new(hub);
        let r = b.login(name, PASSWORD);
        assert_eq!(r.status, 303, "sign-in of {name}: {}", r.body);
        assert!(b.cookies.contains_key("sl_session"), "{name} has a session");
        b
    }
}
