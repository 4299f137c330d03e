//! Remote maintenance commands (issue 7): `reload_config` and `upload_logs`. The executor
//! ([`crate::commands`]) decides, calls [`Maintenance::execute`] and answers once through the outbox.
//!
//! `reload_config` reads agent.toml again and checks it as `run` does. A bad file is refused with
//! the reason and the running configuration is kept; so is a file that names another site or
//! device (a new identity is a new enrollment). Of a valid file, `[import]` (the drop folder and
//! its poll interval) is applied at once: the folder watcher is restarted. Every other section
//! (hub, intake, sync, cameras, snapshots, kiosk, zkteco, health, timezone, data_dir) is read by
//! the parts of the agent when they start, so the answer lists those that changed as waiting for a
//! restart (`systemctl restart sunlight-agent`, or the hub's `restart` command).
//!
//! `upload_logs` (`{"max_kb": N}`, default 512, at most 4096) sends the end of the agent's log file
//! ([`crate::logfile`]) to the hub, signed by the device key like a blob upload, under the
//! command's id; the hub keeps one upload per command, so an upload repeated after a crash before
//! the answer stores nothing new.

use crate::clock::Clock;
use crate::config::{AgentConfig, ImportConfig};
use crate::outbox::Outbox;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_protocol::{DeviceKey, blob, boxlogs};

/// Sections applied by `reload_config` without a restart.
pub const LIVE_SECTIONS: &[&str] = &["import"];

/// A maintenance command, decided from its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    ReloadConfig,
    UploadLogs { max_bytes: usize },
}

impl Task {
    /// The task of a `reload_config` or `upload_logs` command; `Err`: the arguments are wrong.
    pub fn upload_logs(args: &Value) -> Result<Task, String> {
        let kb = match args.get("max_kb") {
            None | Some(Value::Null) => 512,
            Some(v) => match v.as_u64() {
                Some(kb) if (1..=4096).contains(&kb) => kb,
                _ => return Err("upload_logs: args.max_kb must be 1 to 4096".into()),
            },
        };
        Ok(Task::UploadLogs {
            max_bytes: kb as usize * 1024,
        })
    }
}

/// What the executor answers: ok, the detail, and more fields for the `cmd_result` body.
pub struct Answer {
    pub ok: bool,
    pub detail: String,
    pub extra: serde_json::Map<String, Value>,
}

impl Answer {
    fn no(detail: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            detail: detail.into(),
            extra: Default::default(),
        }
    }
}

/// What the maintenance commands need from the running agent.
pub struct Maintenance {
    config_path: PathBuf,
    site: String,
    device: String,
    data_dir: PathBuf,
    api: Option<String>,
    key: Arc<DeviceKey>,
    clock: Clock,
    outbox: Outbox,
    client: reqwest::Client,
    /// The sections of agent.toml as running now (at start, then as applied by reloads).
    running: Mutex<toml::Table>,
    /// The drop-folder watcher.
    import: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Bounds of back-dating, for imported rows.
    backdating: crate::config::BackdatingConfig,
}

impl Maintenance {
    /// For the agent started with `config`, read from `config_path`.
    pub fn new(
        config: &AgentConfig,
        config_path: PathBuf,
        key: Arc<DeviceKey>,
        clock: Clock,
        outbox: Outbox,
    ) -> Result<Maintenance, crate::Error> {
        let running = std::fs::read_to_string(&config_path)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .unwrap_or_default();
        Ok(Maintenance {
            site: config.site.to_string(),
            device: config.device.to_string(),
            data_dir: config.data_dir.clone(),
            api: config.hub.api.clone(),
            client: crate::sync::upload::client(&config.hub)?,
            config_path,
            key,
            clock,
            outbox,
            running: Mutex::new(running),
            import: Mutex::new(None),
            backdating: config.backdating,
        })
    }

    /// Starts (or restarts, or stops) the drop-folder watcher.
    pub fn start_import(&self, import: Option<&ImportConfig>) {
        let Ok(mut slot) = self.import.lock() else {
            return;
        };
        if let Some(old) = slot.take() {
            old.abort();
        }
        *slot = import.map(|i| {
            tokio::spawn(crate::capture::import_dir::run(
                i.dir.clone(),
                Duration::from_secs(i.poll_secs),
                self.outbox.clone(),
                self.clock.clone(),
                self.backdating,
            ))
        });
    }

    pub async fn execute(&self, cmd_id: &str, task: Task) -> Answer {
        match task {
            Task::ReloadConfig => self.reload_config(),
            Task::UploadLogs { max_bytes } => self.upload_logs(cmd_id, max_bytes).await,
        }
    }

    fn reload_config(&self) -> Answer {
        let path = self.config_path.display().to_string();
        let kept = "the running configuration is kept";
        let text = match std::fs::read_to_string(&self.config_path) {
            Ok(t) => t,
            Err(e) => return Answer::no(format!("cannot read {path}: {e}; {kept}")),
        };
        let config = match AgentConfig::parse(&text, &self.config_path) {
            Ok(c) => c,
            Err(e) => return Answer::no(format!("{e}; {kept}")),
        };
        if config.site.as_str() != self.site || config.device.as_str() != self.device {
            return Answer::no(format!(
                "{path} names {}/{}, this box is {}/{}: a new identity needs a new enrollment; {kept}",
                config.site, config.device, self.site, self.device
            ));
        }
        let new = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => return Answer::no(format!("{path}: {e}; {kept}")),
        };
        let Ok(mut running) = self.running.lock() else {
            return Answer::no("the agent's state is poisoned; restart it");
        };
        let mut keys: Vec<&String> = running.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| running.get(*k) != new.get(*k))
            .cloned()
            .collect();
        let (live, later): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| LIVE_SECTIONS.contains(&k.as_str()));
        if live.iter().any(|k| k == "import") {
            self.start_import(config.import.as_ref());
            match new.get("import") {
                Some(v) => running.insert("import".into(), v.clone()),
                None => running.remove("import"),
            };
        }
        let mut detail = format!("{path} is valid");
        if live.is_empty() && later.is_empty() {
            detail.push_str("; nothing changed");
        }
        if !live.is_empty() {
            detail.push_str(&format!("; applied now: {}", live.join(", ")));
        }
        if !later.is_empty() {
            detail.push_str(&format!(
                "; changed, takes effect at the next restart: {}",
                later.join(", ")
            ));
        }
        let mut extra = serde_json::Map::new();
        extra.insert("applied".into(), json!(live));
        extra.insert("needs_restart".into(), json!(later));
        Answer {
            ok: true,
            detail,
            extra,
        }
    }

    async fn upload_logs(&self, cmd_id: &str, max_bytes: usize) -> Answer {
        let Some(api) = &self.api else {
            return Answer::no(
                "hub.api is not set in agent.toml: this box cannot upload to the hub's HTTP API",
            );
        };
        let dir = crate::logfile::dir(&self.data_dir);
        let text = match tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || crate::logfile::tail(&dir, max_bytes)
        })
        .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Answer::no(format!("cannot read the log in {}: {e}", dir.display()));
            }
            Err(e) => return Answer::no(format!("cannot read the log: {e}")),
        };
        if text.is_empty() {
            return Answer::no(format!(
                "no log in {} (the agent writes it while `run` runs)",
                dir.display()
            ));
        }
        let body = text.into_bytes();
        let sha256 = hex::encode(Sha256::digest(&body));
        let time = self.clock.now_rfc3339();
        let message = boxlogs::put_message(&sha256, cmd_id, &self.site, &self.device, &time);
        let signature = base64::engine::general_purpose::STANDARD.encode(self.key.sign(&message));
        let url = format!(
            "{}/api/v1/box/logs/{sha256}?cmd_id={}",
            api.trim_end_matches('/'),
            encode_query(cmd_id)
        );
        let bytes = body.len();
        let response = self
            .client
            .put(&url)
            .timeout(Duration::from_secs(120))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(blob::SITE_HEADER, &self.site)
            .header(blob::DEVICE_HEADER, &self.device)
            .header(blob::TIME_HEADER, &time)
            .header(blob::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Answer::no(format!("PUT {url}: {e}")),
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        let mut extra = serde_json::Map::new();
        extra.insert("sha256".into(), json!(sha256));
        extra.insert("bytes".into(), json!(bytes));
        if let Some(id) = answer["id"].as_i64() {
            extra.insert("log_id".into(), json!(id));
        }
        match status.as_u16() {
            201 => Answer {
                ok: true,
                detail: format!("{bytes} bytes of log uploaded (sha256 {sha256})"),
                extra,
            },
            200 => Answer {
                ok: true,
                detail: format!(
                    "the log for this command was uploaded before (sha256 {}); the first upload is kept",
                    answer["sha256"].as_str().unwrap_or("?")
                ),
                extra,
            },
            s => Answer::no(format!(
                "the hub refused the log upload: HTTP {s}: {}",
                answer["error"].as_str().unwrap_or("no reason given")
            )),
        }
    }
}

/// Percent-encodes a query value (command ids are letters, digits and dashes, but be safe).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// For fault tests only: `SUNLIGHT_AGENT_TEST_HOLD_ANSWER_MS` holds a maintenance command's answer
/// this long after its effect, so a test can kill the agent between the two.
pub async fn hold_answer_for_tests() {
    if let Some(ms) = std::env::var("SUNLIGHT_AGENT_TEST_HOLD_ANSWER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::warn!(
            ms,
            "holding the command's answer (SUNLIGHT_AGENT_TEST_HOLD_ANSWER_MS, for fault tests)"
        );
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "suixian-shangshi";

    fn config_text(dir: &std::path::Path, extra: &str) -> String {
        format!(
            "site = \"{SITE}\"\ndevice = \"box-01\"\ndata_dir = \"{}\"\n[hub]\nbroker = \"mqtt://127.0.0.1:1\"\n{extra}",
            dir.join("data").display()
        )
    }

    async fn maintenance(dir: &std::path::Path) -> Maintenance {
        let path = dir.join("agent.toml");
        std::fs::write(&path, config_text(dir, "")).unwrap();
        let config = AgentConfig::load(&path).unwrap();
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let outbox = Outbox::open(&config.outbox_path(), &config.site, &config.device).unwrap();
        Maintenance::new(
            &config,
            path,
            Arc::new(DeviceKey::generate().unwrap()),
            Clock::new(chrono_tz::Asia::Shanghai),
            outbox,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_reload_applies_import_at_once_lists_the_rest_and_refuses_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = maintenance(dir.path()).await;
        let a = m.reload_config();
        assert!(
            a.ok && a.detail.ends_with("is valid; nothing changed"),
            "{}",
            a.detail
        );

        let drop = dir.path().join("drop");
        std::fs::create_dir_all(&drop).unwrap();
        let text = config_text(
            dir.path(),
            &format!(
                "[import]\ndir = \"{}\"\n[intake]\nlisten = \"127.0.0.1:9999\"\n",
                drop.display()
            ),
        );
        std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
        let a = m.reload_config();
        assert!(a.ok, "{}", a.detail);
        assert!(a.detail.contains("applied now: import"), "{}", a.detail);
        assert!(
            a.detail
                .contains("takes effect at the next restart: intake"),
            "{}",
            a.detail
        );
        assert!(m.import.lock().unwrap().is_some(), "the watcher runs");
        assert_eq!(a.extra["needs_restart"], json!(["intake"]));
        // Applied once: a second reload of the same file has nothing new to apply.
        let a = m.reload_config();
        assert!(!a.detail.contains("applied now"), "{}", a.detail);

        for (bad, reason) in [
            ("site = \"suixian-shangshi\"\n[hub]\n", "is invalid"),
            (
                &config_text(dir.path(), "[sync]\nwindow = \"many\"\n") as &str,
                "window",
            ),
            (
                &config_text(dir.path(), "").replace("box-01", "box-02") as &str,
                "new enrollment",
            ),
        ] {
            std::fs::write(dir.path().join("agent.toml"), bad).unwrap();
            let a = m.reload_config();
            assert!(!a.ok, "{bad}");
            assert!(
                a.detail.contains(reason) && a.detail.contains("running configuration is kept"),
                "{}",
                a.detail
            );
        }
        // The watcher of the last good file still runs.
        assert!(
            m.import
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|h| !h.is_finished())
        );
    }

    #[test]
    fn upload_logs_arguments_are_checked() {
        assert_eq!(
            Task::upload_logs(&json!({})),
            Ok(Task::UploadLogs {
                max_bytes: 512 * 1024
            })
        );
        assert_eq!(
            Task::upload_logs(&json!({"max_kb": 8})),
            Ok(Task::UploadLogs { max_bytes: 8192 })
        );
        assert!(Task::upload_logs(&json!({"max_kb": 0})).is_err());
        assert!(Task::upload_logs(&json!({"max_kb": "lots"})).is_err());
        assert_eq!(encode_query("upload_logs-a-b-1"), "upload_logs-a-b-1");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
