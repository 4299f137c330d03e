//! The agent's configuration: one TOML file (see `agent/agent.example.toml`), checked at load with
//! errors that name the file, the key and the fix.

use crate::error::Error;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sunlight_protocol::{DeviceId, SiteId};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The township office, e.g. `suixian-shangshi`.
    pub site: SiteId,
    /// This box, e.g. `box-01`.
    pub device: DeviceId,
    /// Outbox database and signing key live here.
    pub data_dir: PathBuf,
    /// The office's time zone (IANA name).
    #[serde(default = "default_tz")]
    pub timezone: String,
    pub hub: HubConfig,
    #[serde(default)]
    pub intake: IntakeConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub health: HealthConfig,
    /// The kiosk page on the intake listener (`/kiosk`), for offices without a terminal.
    #[serde(default)]
    pub kiosk: KioskConfig,
    /// ZKTeco terminals that push to this box (PUSH/ADMS protocol); absent: no terminal server.
    pub zkteco: Option<ZktecoConfig>,
    /// A directory of exported files to import; absent: files come only through the intake API.
    pub import: Option<ImportConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Where the office drops `case*.csv`, `rating*.xlsx`, `complaint*.csv` (or 办件/评价/投诉…) files.
    pub dir: PathBuf,
    /// Look for new files this often.
    #[serde(default = "default_import_poll")]
    pub poll_secs: u64,
}

fn default_import_poll() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZktecoConfig {
    /// Where the terminal server listens; set the terminal's server address and port to this.
    pub listen: SocketAddr,
    /// Serial numbers (SN) of the terminals allowed to push; any other is refused.
    pub terminals: Vec<String>,
    /// Punches dated more than this ahead of the box's clock are flagged `future_time`.
    #[serde(default = "default_future")]
    pub max_future_secs: i64,
}

fn default_future() -> i64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    /// Serve `/kiosk` and `/kiosk/punch` on the intake listener.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Wrong PINs for one staff number within `lockout_secs`, at most; then it is locked that long.
    #[serde(default = "default_wrong_pins")]
    pub max_wrong_pins: u32,
    #[serde(default = "default_lockout")]
    pub lockout_secs: u64,
}

impl Default for KioskConfig {
    fn default() -> Self {
        KioskConfig {
            enabled: true,
            max_wrong_pins: default_wrong_pins(),
            lockout_secs: default_lockout(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_wrong_pins() -> u32 {
    5
}
fn default_lockout() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    /// For `mqtts://`: the county CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// For mTLS: this box's certificate and key (PEM).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// Where the LAN intake API listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            listen: default_listen(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Upper bound of one batch in bytes.
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Upper bound of events in one batch.
    #[serde(default = "default_batch_events")]
    pub max_batch_events: usize,
    /// Batches sent and not yet acknowledged, at most.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Without an ack for this long, re-send from the last ack.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: u64,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Reconnect back-off grows from this ...
    #[serde(default = "default_backoff_min")]
    pub backoff_min_ms: u64,
    /// ... to this, with ±50% jitter.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_batch_bytes: default_batch_bytes(),
            max_batch_events: default_batch_events(),
            window: default_window(),
            ack_timeout_ms: default_ack_timeout(),
            keep_alive_secs: default_keep_alive(),
            backoff_min_ms: default_backoff_min(),
            backoff_max_ms: default_backoff_max(),
        }
    }
}

impl SyncConfig {
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A `health` event this often; 0 turns them off.
    #[serde(default = "default_health_interval")]
    pub interval_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_secs: default_health_interval(),
        }
    }
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8181))
}
fn default_batch_bytes() -> usize {
    sunlight_protocol::DEFAULT_MAX_BATCH_BYTES
}
fn default_batch_events() -> usize {
    2000
}
fn default_window() -> usize {
    8
}
fn default_ack_timeout() -> u64 {
    5000
}
fn default_keep_alive() -> u64 {
    15
}
fn default_backoff_min() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    30_000
}
fn default_health_interval() -> u64 {
    60
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.into(),
            source,
        })?;
        AgentConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, Error> {
        let bad = |detail: String| Error::Config {
            path: path.into(),
            detail,
        };
        let config: AgentConfig = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        config.tz().map_err(bad)?;
        let url = &config.hub.broker;
        broker_address(url).map_err(bad)?;
        if config.sync.window == 0 || config.sync.max_batch_events == 0 {
            return Err(bad(
                "sync.window and sync.max_batch_events must be at least 1".into(),
            ));
        }
        if config.sync.max_batch_bytes < 4096 {
            return Err(bad("sync.max_batch_bytes must be at least 4096".into()));
        }
        if url.starts_with("mqtts://") && config.hub.ca_file.is_none() {
            return Err(bad(
                "hub.broker is mqtts:// but hub.ca_file is not set: name the county CA certificate"
                    .into(),
            ));
        }
        if config
            .zkteco
            .as_ref()
            .is_some_and(|z| z.terminals.is_empty())
        {
            return Err(bad("zkteco.terminals is empty: list the serial number (SN) of every terminal, e.g. [\"CDQ9190960040\"]".into()));
        }
        if config.kiosk.max_wrong_pins == 0 || config.kiosk.lockout_secs == 0 {
            return Err(bad(
                "kiosk.max_wrong_pins and kiosk.lockout_secs must be at least 1".into(),
            ));
        }
        if config.import.as_ref().is_some_and(|i| i.poll_secs == 0) {
            return Err(bad("import.poll_secs must be at least 1".into()));
        }
        if config.hub.cert_file.is_some() != config.hub.key_file.is_some() {
            return Err(bad(
                "hub.cert_file and hub.key_file go together: set both for mTLS, or neither".into(),
            ));
        }
        Ok(config)
    }

    pub fn tz(&self) -> Result<chrono_tz::Tz, String> {
        self.timezone.parse().map_err(|_| {
            format!(
                "timezone {:?} is not an IANA zone name; use e.g. \"Asia/Shanghai\"",
                self.timezone
            )
        })
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.data_dir.join("outbox.db")
    }

    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join("device.key")
    }
}

/// `(tls, host, port)` of a broker URL.
pub fn broker_address(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        return Err(format!(
            "hub.broker {url:?} must start with mqtt:// or mqtts://"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse()
                .map_err(|_| format!("hub.broker {url:?} has a bad port"))?;
            (host, port)
        }
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(format!("hub.broker {url:?} has no host"));
    }
    Ok((tls, host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
site = "suixian-shangshi"
device = "box-01"
data_dir = "/var/lib/sunlight"
[hub]
broker = "mqtt://hub.example:1883"
"#;

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = AgentConfig::parse(MINIMAL, Path::new("agent.toml")).unwrap();
        assert_eq!(c.sync.window, 8);
        assert_eq!(c.intake.listen.port(), 8181);
        assert_eq!(c.tz().unwrap(), chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let text = MINIMAL.replace("box-01", "Box 01");
        let err = AgentConfig::parse(&text, Path::new("/etc/sunlight/agent.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/sunlight/agent.toml") && err.contains("a-z, 0-9"),
            "{err}"
        );
        let text = MINIMAL.replace("mqtt://", "http://");
        let err = AgentConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt://"), "{err}");
        let text = format!("{MINIMAL}\n[sync]\nwindoe = 3\n");
        let err = AgentConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("windoe"), "{err}");
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../agent.example.toml");
        let c = AgentConfig::parse(text, Path::new("agent.example.toml")).unwrap();
        assert_eq!(c.import.map(|i| i.poll_secs), Some(5));
        assert!(
            AgentConfig::parse(MINIMAL, Path::new("a.toml"))
                .unwrap()
                .import
                .is_none()
        );
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            broker_address("mqtt://h:1").unwrap(),
            (false, "h".into(), 1)
        );
        assert_eq!(
            broker_address("mqtts://h").unwrap(),
            (true, "h".into(), 8883)
        );
        assert!(broker_address("mqtt://:1").is_err());
    }
}
