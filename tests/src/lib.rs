//! The end-to-end harness: real `sunlight-hub` and `sunlight-agent` processes, a real broker
//! (the hub's embedded one, or a Mosquitto started here on a free port), a fault-injecting TCP
//! proxy, and SIGKILL. Used by the tests in `tests/` and by the demo and benchmark binaries.
//!
//! The binaries must be built first (`cargo build --bins`; the README's test command does it).

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod browser;
pub mod http;
pub mod proxy;
pub mod webhook;

pub use proxy::FaultProxy;

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out a free port")
}

/// The directory holding the built binaries (next to this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// Waits until `f` returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn process");
        Proc {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How the hub reaches MQTT.
#[derive(Clone, Debug)]
pub enum BrokerMode {
    /// The hub runs the embedded broker on this port.
    Embedded(u16),
    /// An external broker (Mosquitto) on this port.
    External(u16),
    /// An external broker's TLS listener on this port (`mqtts://`; give `--broker-ca` and the
    /// hub's certificate in `extra_args`).
    ExternalTls(u16),
}

/// A hub process with its data directory.
pub struct Hub {
    pub dir: PathBuf,
    pub http: u16,
    pub mode: BrokerMode,
    pub proc: Option<Proc>,
    /// More `sunlight-hub run` arguments (e.g. `--today 2025-11-13`).
    pub extra_args: Vec<String>,
    client: http::Client,
    /// The API token the harness's requests carry (an admin account made on the first start).
    api_token: Option<String>,
}

/// The account the harness signs in to the hub's API as.
pub const HARNESS_ACCOUNT: &str = "harness-admin";

impl Hub {
    pub fn new(dir: &Path, mode: BrokerMode) -> Hub {
        std::fs::create_dir_all(dir).expect("hub dir");
        Hub {
            dir: dir.to_path_buf(),
            http: free_port(),
            mode,
            proc: None,
            extra_args: Vec::new(),
            client: http::Client::new(),
            api_token: None,
        }
    }

    /// An API token of an admin account on this hub (made on first use with the `user` commands,
    /// as an operator would). Requests through this `Hub` carry it already.
    pub fn api_token(&mut self) -> String {
        if let Some(t) = &self.api_token {
            return t.clone();
        }
        let token = self.make_api_token(HARNESS_ACCOUNT, "admin", None);
        self.client.set_bearer(&token);
        self.api_token = Some(token.clone());
        token
    }

    /// Adds the account `name` with `role` (and the site of a head) and `password` with
    /// `sunlight-hub user add --password-file`, as an operator would; whether it was added (not
    /// when it is there already).
    pub fn add_account(&self, name: &str, role: &str, site: Option<&str>, password: &str) -> bool {
        let pw = self.dir.join(format!(".{name}.password"));
        std::fs::write(&pw, password).expect("write password file");
        let mut add = Command::new(bin("sunlight-hub"));
        add.args([
            "user",
            "add",
            "--name",
            name,
            "--role",
            role,
            "--password-file",
        ])
        .arg(&pw)
        .arg("--data-dir")
        .arg(&self.dir);
        if let Some(site) = site {
            add.args(["--site", site]);
        }
        let added = add
            .output()
            .expect("run sunlight-hub user add")
            .status
            .success();
        let _ = std::fs::remove_file(&pw);
        added
    }

    /// Adds the account `name` (if missing) with `role` (and the site of a head), and returns a
    /// new API token of it.
    pub fn make_api_token(&self, name: &str, role: &str, site: Option<&str>) -> String {
        // A second start of the same hub finds the account there already: that is fine.
        self.add_account(name, role, site, "harness-password-0123\n");
        let out = Command::new(bin("sunlight-hub"))
            .args(["user", "token", "--name", name, "--label", "test harness"])
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .expect("run sunlight-hub user token");
        assert!(
            out.status.success(),
            "user token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The `verifying_keys = [...]` line of a box's `[hub]` section for this hub, as
    /// `sunlight-hub hub-key show` prints it (it makes the hub's key when there is none yet).
    pub fn verifying_keys_line(&self) -> String {
        let out = Command::new(bin("sunlight-hub"))
            .args(["hub-key", "show", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("run sunlight-hub hub-key show");
        assert!(
            out.status.success(),
            "hub-key show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The hub's down-link signing key, read from its data directory (made by
    /// [`Hub::verifying_keys_line`] or the hub's first start): tests that play the hub seal with it.
    pub fn down_key(&self) -> sunlight_protocol::DeviceKey {
        self.verifying_keys_line();
        let hex = std::fs::read_to_string(self.dir.join("hub-down.key")).expect("hub-down.key");
        sunlight_protocol::DeviceKey::from_hex(&hex).expect("a hub key")
    }

    /// `body` sealed as this hub seals what it sends on `topic` (a box's `down/ack` or `down/cmd`).
    pub fn seal(&self, topic: &str, body: &[u8]) -> Vec<u8> {
        use sunlight_protocol::down::{DownKind, seal};
        use sunlight_protocol::topics::{Channel, parse};
        let (site, device, kind) = match parse(topic) {
            Some((s, d, Channel::Ack)) => (s, d, DownKind::Ack),
            Some((s, d, Channel::Cmd)) => (s, d, DownKind::Cmd),
            _ => panic!("{topic} is not a down topic"),
        };
        seal(&[&self.down_key()], &site, &device, kind, body).expect("a JSON body")
    }

    /// `config` (an agent.toml) with this hub's down-link keys in its `[hub]` section, unless it
    /// names some already.
    pub fn trusted_by(&self, config: &str) -> String {
        let hub_table = config
            .split_once("[hub]\n")
            .map(|(_, rest)| rest.split("\n[").next().unwrap_or(rest));
        if hub_table.is_some_and(|t| t.contains("verifying_keys")) {
            return config.to_owned();
        }
        config.replacen(
            "[hub]\n",
            &format!("[hub]\n{}\n", self.verifying_keys_line()),
            1,
        )
    }

    pub fn mqtt_port(&self) -> u16 {
        match self.mode {
            BrokerMode::Embedded(p) | BrokerMode::External(p) | BrokerMode::ExternalTls(p) => p,
        }
    }

    pub fn start(&mut self) {
        self.api_token();
        let mut cmd = Command::new(bin("sunlight-hub"));
        cmd.arg("run")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--http")
            .arg(format!("127.0.0.1:{}", self.http));
        match self.mode {
            BrokerMode::Embedded(p) => cmd.arg("--embedded-broker").arg(format!("127.0.0.1:{p}")),
            BrokerMode::External(p) => cmd.arg("--broker").arg(format!("mqtt://127.0.0.1:{p}")),
            BrokerMode::ExternalTls(p) => cmd.arg("--broker").arg(format!("mqtts://127.0.0.1:{p}")),
        };
        cmd.args(&self.extra_args);
        self.proc = Some(Proc::spawn(&mut cmd, self.dir.join("hub.log")));
        assert!(
            wait_port(self.http, Duration::from_secs(20)),
            "hub did not open its HTTP port; see {}",
            self.dir.join("hub.log").display()
        );
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        self.proc = None;
    }

    pub fn register(&self, site: &str, device: &str, pubkey: &str) {
        let out = Command::new(bin("sunlight-hub"))
            .args([
                "device",
                "add",
                "--site",
                site,
                "--device",
                device,
                "--pubkey",
                pubkey,
                "--data-dir",
            ])
            .arg(&self.dir)
            .output()
            .expect("run sunlight-hub device add");
        assert!(
            out.status.success(),
            "device add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// POSTs JSON to the hub's API: (status, body).
    pub fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        self.client
            .post_json(&format!("http://127.0.0.1:{}{path}", self.http), body)
    }

    /// GETs a page as text: (status, body).
    pub fn get_text(&self, path: &str) -> Option<(u16, String)> {
        self.client
            .get_text(&format!("http://127.0.0.1:{}{path}", self.http))
    }

    /// GETs anything (an image, say): (status, content type, body).
    pub fn get_full(&self, path: &str) -> Option<(u16, String, Vec<u8>)> {
        self.client
            .get_full(&format!("http://127.0.0.1:{}{path}", self.http))
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.client
            .get_json(&format!("http://127.0.0.1:{}{path}", self.http))
    }

    /// All events of a device and kind, paging through the API.
    pub fn events(&self, site: &str, device: &str, kind: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut since = 0;
        loop {
            let page = self.get(&format!(
                "/api/v1/events?site={site}&device={device}&kind={kind}&since={since}&limit=1000"
            ));
            let Some(page) = page else { return out };
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return out;
            }
            since = events
                .last()
                .and_then(|e| e["id"].as_i64())
                .unwrap_or(since);
            out.extend(events);
        }
    }

    pub fn dead_letters(&self) -> Vec<Value> {
        self.get("/api/v1/dead-letters?limit=1000")
            .and_then(|v| v["dead_letters"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn alarms(&self) -> Vec<Value> {
        self.get("/api/v1/alarms?limit=1000")
            .and_then(|v| v["alarms"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn device(&self, site: &str, device: &str) -> Option<Value> {
        let all = self.get("/api/v1/devices")?;
        all["devices"]
            .as_array()?
            .iter()
            .find(|d| d["site"] == site && d["device"] == device)
            .cloned()
    }

    /// `PRAGMA integrity_check` of the hub's store.
    pub fn integrity(&self) -> String {
        integrity(&self.dir.join("hub.db"))
    }
}

/// `PRAGMA integrity_check` of a SQLite file.
pub fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open sqlite");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// An agent process with its config and data directory.
pub struct Agent {
    pub site: String,
    pub device: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub intake: u16,
    pub proc: Option<Proc>,
    pub pubkey: String,
    /// The harness's intake key (a `--local` one for every kind a key may have, punches too);
    /// [`Agent::post`] and [`Agent::punch`] carry it.
    pub intake_key: String,
    client: http::Client,
}

/// The kinds of the harness's intake key: the LAN's and, as the key is `--local`, the box-only
/// `punch` and `snapshot` (the tests post punches as a terminal on the box would).
pub const HARNESS_KINDS: &str = "case,rating,complaint,duty,patrol,correction,punch,snapshot";

/// Issues an intake key on the box of `config` with `sunlight-agent intake-key add`, as its
/// operator would: `local` keys are accepted only from the box itself. Returns the key.
pub fn add_intake_key(config: &Path, name: &str, kinds: &str, local: bool) -> String {
    let mut cmd = Command::new(bin("sunlight-agent"));
    cmd.arg("-c")
        .arg(config)
        .args(["intake-key", "add", name, "--kinds", kinds]);
    if local {
        cmd.arg("--local");
    }
    let out = cmd.output().expect("run sunlight-agent intake-key add");
    assert!(
        out.status.success(),
        "intake-key add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A client carrying `key` for the intake API.
pub fn intake_client(key: &str) -> http::Client {
    let client = http::Client::new();
    client.set_bearer(key);
    client
}

impl Agent {
    /// Writes the config, creates the key (`sunlight-agent init`) and registers it at `hub`.
    /// `extra` is appended after the `[sync]` section (more sync keys, or further sections).
    pub fn new(
        dir: &Path,
        site: &str,
        device: &str,
        broker_port: u16,
        hub: &Hub,
        extra: &str,
    ) -> Agent {
        let hub_section = format!("[hub]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\n");
        Agent::with_config(dir, site, device, &hub_section, extra, hub)
    }

    /// Like [`Agent::new`] with a `[hub]` section of the caller's (TLS settings, say).
    pub fn new_with_hub(
        dir: &Path,
        site: &str,
        device: &str,
        hub_section: &str,
        hub: &Hub,
    ) -> Agent {
        Agent::with_config(dir, site, device, hub_section, "", hub)
    }

    fn with_config(
        dir: &Path,
        site: &str,
        device: &str,
        hub_section: &str,
        extra: &str,
        hub: &Hub,
    ) -> Agent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let intake = free_port();
        let config = dir.join("agent.toml");
        let text = format!(
            "site = \"{site}\"\ndevice = \"{device}\"\ndata_dir = \"{}\"\n{hub_section}[intake]\nlisten = \"127.0.0.1:{intake}\"\n[sync]\nack_timeout_ms = 2000\nbackoff_min_ms = 100\nbackoff_max_ms = 1000\n{extra}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, hub.trusted_by(&text)).expect("write agent config");
        let out = Command::new(bin("sunlight-agent"))
            .arg("-c")
            .arg(&config)
            .arg("init")
            .output()
            .expect("run sunlight-agent init");
        assert!(
            out.status.success(),
            "agent init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pubkey = String::from_utf8_lossy(&out.stdout).trim().to_string();
        hub.register(site, device, &pubkey);
        let intake_key = add_intake_key(&config, "harness", HARNESS_KINDS, true);
        Agent {
            site: site.into(),
            device: device.into(),
            dir: dir.to_path_buf(),
            config,
            intake,
            proc: None,
            pubkey,
            client: intake_client(&intake_key),
            intake_key,
        }
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(bin("sunlight-agent"));
        cmd.arg("-c").arg(&self.config).arg("run");
        self.proc = Some(Proc::spawn(&mut cmd, self.dir.join("agent.log")));
        assert!(
            wait_port(self.intake, Duration::from_secs(20)),
            "agent did not open its intake port; see {}",
            self.dir.join("agent.log").display()
        );
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        self.proc = None;
    }

    pub fn intake_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/events", self.intake)
    }

    /// Posts a punch numbered `n`; true when the agent answered 201 (durably recorded).
    pub fn punch(&self, n: u64) -> bool {
        matches!(
            self.client.post_json(&self.intake_url(), &punch_event(n)),
            Some((201, _))
        )
    }

    pub fn post(&self, body: &Value) -> Option<(u16, Value)> {
        self.client.post_json(&self.intake_url(), body)
    }

    pub fn status(&self) -> Option<Value> {
        self.client
            .get_json(&format!("http://127.0.0.1:{}/api/v1/status", self.intake))
    }

    /// Waits until the box holds the hub's calendar: every registered box is sent one when it
    /// connects (`set_calendar`), and answers it with a `cmd_result` event, so tests that count the
    /// box's events start after it. Returns the calendar's version.
    pub fn wait_for_calendar(&self) -> String {
        wait_for(
            Duration::from_secs(60),
            "the hub's calendar on the box",
            || {
                self.status()?["snapshots"]["calendar"]["version"]
                    .as_str()
                    .map(str::to_owned)
            },
        )
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.join("data").join("outbox.db")
    }
}

/// A punch whose body carries a unique number `n`, to check loss and duplicates at the hub.
pub fn punch_event(n: u64) -> Value {
    json!({"kind": "punch", "body": {"staff_id": format!("{:04}", n % 40), "direction": if n % 2 == 0 { "in" } else { "out" },
        "method": "card", "source": "test-terminal", "n": n}})
}

/// The `n` numbers of punches at the hub, in seq order, and whether seqs are 1..=len without gaps.
pub fn punch_numbers(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e["body"]["n"].as_u64())
        .collect()
}

/// Checks that the hub has every accepted number exactly once, with seqs strictly increasing.
pub fn assert_exactly_once(events: &[Value], accepted: &[u64]) {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events are not in seq order"
    );
    let numbers = punch_numbers(events);
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    let before = sorted.len();
    sorted.dedup();
    assert_eq!(before, sorted.len(), "a punch was applied twice");
    let missing: Vec<&u64> = accepted
        .iter()
        .filter(|n| sorted.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} accepted punches are missing at the hub, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The mosquitto executable (Debian installs it in /usr/sbin, often not on a user's PATH).
pub fn mosquitto_exe() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto")
}

/// A Mosquitto broker of our own on a free port, persistence off.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    pub proc: Option<Proc>,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Mosquitto {
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        let mut m = Mosquitto {
            port: free_port(),
            dir: dir.to_path_buf(),
            proc: None,
        };
        m.restart();
        m
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 100\nmessage_size_limit 4194304\n", self.port))
            .expect("mosquitto conf");
        let exe = mosquitto_exe();
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(&conf);
        self.proc = Some(Proc::spawn(&mut cmd, self.dir.join("mosquitto.log")));
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "mosquitto did not start; is it installed? see {}",
            self.dir.join("mosquitto.log").display()
        );
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        self.proc = None;
    }
}

/// A fresh directory under the target dir for one test's processes, logs and databases. It is
/// removed when dropped after a passing test and kept after a failure, for its logs.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn scratch(name: &str) -> Scratch {
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    let dir = bin_dir()
        .join("e2e")
        .join(format!("{name}-{}", u32::from_le_bytes(r)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    Scratch(dir)
}

/// Posts punches numbered from `start` in a background thread until `stop`, with the intake key
/// `key`; returns accepted numbers.
pub fn steady_intake(
    agent_url: String,
    key: String,
    start: u64,
    stop: Arc<AtomicBool>,
    pace: Duration,
) -> std::thread::JoinHandle<Vec<u64>> {
    let counter = Arc::new(AtomicU64::new(start));
    std::thread::spawn(move || {
        let client = intake_client(&key);
        let mut accepted = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            if let Some((201, _)) = client.post_json(&agent_url, &punch_event(n)) {
                accepted.push(n);
            }
            std::thread::sleep(pace);
        }
        accepted
    })
}

/// Publishes each payload on `topic` at QoS 1 as an anonymous broker client (anybody who can reach
/// the broker), waiting for the broker's PUBACKs.
pub fn publish_as_anybody(port: u16, topic: &str, payloads: &[Vec<u8>], retain: bool) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("anybody-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 64);
    for p in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, retain, p.clone())
            .expect("queue the publish");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked = 0;
    for event in connection.iter() {
        assert!(
            Instant::now() < deadline,
            "the broker did not acknowledge the publishes"
        );
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                if acked == payloads.len() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let _ = client.disconnect();
}
