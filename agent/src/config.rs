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
    /// How far in the past an event may be dated before it is marked back-dated.
    #[serde(default)]
    pub backdating: BackdatingConfig,
    /// ZKTeco terminals that push to this box (PUSH/ADMS protocol); absent: no terminal server.
    pub zkteco: Option<ZktecoConfig>,
    /// A directory of exported files to import; absent: files come only through the intake API.
    pub import: Option<ImportConfig>,
    /// Where snapshots are kept, how they are sent, when scheduled ones are taken.
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    /// The cameras (`[[camera]]`, any number; none: no snapshots).
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// Signed updates from the hub (docs/updates.md).
    #[serde(default)]
    pub update: UpdateConfig,
}

/// `[update]`: who may sign this box's updates, which binary they replace, and how long a new
/// binary has to prove itself before it is rolled back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The update verifying keys (base64, `sunlight-provision update-key` prints them); none:
    /// `update` commands are refused.
    #[serde(default)]
    pub verifying_keys: Vec<String>,
    /// The binary the service runs and updates replace; default `{data_dir}/bin/sunlight-agent`
    /// (the packaged unit runs that copy: packaging/systemd/sunlight-agent.service).
    pub binary: Option<PathBuf>,
    /// A new binary must have its health report acknowledged by the hub within this many seconds
    /// of its installation, or it is rolled back.
    #[serde(default = "default_health_deadline")]
    pub health_deadline_secs: u64,
    /// A new binary started more often than this without reporting healthy is rolled back.
    #[serde(default = "default_max_starts")]
    pub max_starts: u32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            verifying_keys: Vec::new(),
            binary: None,
            health_deadline_secs: default_health_deadline(),
            max_starts: default_max_starts(),
        }
    }
}

fn default_health_deadline() -> u64 {
    300
}
fn default_max_starts() -> u32 {
    3
}

/// `[snapshots]`: the JPEG spool, its upload to the hub and the office hours of scheduled shots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Disk the spool may use, in MiB; over it, uploaded images go first, then the oldest others.
    #[serde(default = "default_quota_mb")]
    pub quota_mb: u64,
    /// Upload bandwidth cap in bytes per second; 0: no cap.
    #[serde(default = "default_upload_rate")]
    pub upload_bytes_per_sec: u64,
    /// Uploads wait while more events than this are waiting for the hub's ack (events first; 0:
    /// images go only when every event is acknowledged).
    #[serde(default = "default_upload_max_backlog")]
    pub upload_max_backlog: u64,
    /// Scheduled snapshots are taken only within these local times ("HH:MM-HH:MM") ...
    #[serde(default = "default_office_hours")]
    pub office_hours: Vec<String>,
    /// ... on these days ("mon" ... "sun").
    #[serde(default = "default_office_days")]
    pub office_days: Vec<String>,
    /// ... except on the public holidays, and also on the make-up working days (调休) that fall on
    /// other days, as the calendar in force says ([`crate::calendar`]: the hub's overrides and
    /// official years, else the State Council's data shipped with the agent). Years none covers
    /// leave out the statutory holidays (the provisional year of decision 0014) and follow
    /// `office_days` otherwise.
    #[serde(default = "yes")]
    pub official_holidays: bool,
    /// The camera whose picture becomes the kiosk punch's `photo`; absent: punches carry none.
    pub punch_camera: Option<String>,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            quota_mb: default_quota_mb(),
            upload_bytes_per_sec: default_upload_rate(),
            upload_max_backlog: default_upload_max_backlog(),
            office_hours: default_office_hours(),
            office_days: default_office_days(),
            official_holidays: true,
            punch_camera: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_quota_mb() -> u64 {
    1024
}
fn default_upload_rate() -> u64 {
    128 * 1024
}
fn default_upload_max_backlog() -> u64 {
    0
}
fn default_office_hours() -> Vec<String> {
    vec!["08:00-18:00".into()]
}
fn default_office_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .map(String::from)
        .to_vec()
}

/// Where a camera's pictures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraKind {
    /// Hikvision IP camera or NVR channel: `http://HOST/ISAPI/Streaming/channels/{channel}01/picture`.
    Hikvision,
    /// Dahua IP camera or NVR channel: `http://HOST/cgi-bin/snapshot.cgi?channel={channel}`.
    Dahua,
    /// Any camera with a snapshot URL (`url`).
    Http,
    /// A USB (UVC) camera by its `/dev/v4l/by-id/...` path (agent feature `usb-camera`).
    Usb,
    /// Frames from a directory of JPEGs, or generated: for tests and demos, no hardware.
    File,
}

/// `[[camera]]`: one camera.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// The camera's name in events and at the hub: 1-48 characters of a-z, 0-9 and '-'.
    pub id: String,
    pub kind: CameraKind,
    /// Hikvision / Dahua: the camera's address, `192.168.1.64` or `192.168.1.64:8080`.
    pub host: Option<String>,
    /// Hikvision / Dahua: the channel (1 for a single camera; the NVR's channel otherwise).
    #[serde(default = "default_channel")]
    pub channel: u32,
    /// Http: the full snapshot URL (http:// or https://).
    pub url: Option<String>,
    /// IP cameras: the account (a viewer account is enough).
    pub username: Option<String>,
    pub password: Option<String>,
    /// IP cameras: the password in a file of its own (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// Usb: the stable device path, `/dev/v4l/by-id/usb-...-video-index0`.
    pub device: Option<PathBuf>,
    /// File: a directory of `.jpg` files served in name order, round and round; absent: generated.
    pub dir: Option<PathBuf>,
    /// File (generated frames) and Usb (wished resolution): the picture size.
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// A scheduled snapshot every so many minutes within the office hours; absent: none.
    pub every_min: Option<u32>,
    /// The same in seconds, for tests and demos (set one of the two).
    pub every_secs: Option<u32>,
    /// This camera's own office hours, instead of `snapshots.office_hours`.
    pub office_hours: Option<Vec<String>>,
    /// Case stages at which this camera takes a snapshot when a case event with that stage is
    /// posted to the intake, e.g. `["accepted", "completed"]`; empty: none.
    #[serde(default)]
    pub on_case_stages: Vec<sunlight_protocol::event::bodies::Stage>,
    /// Only case events of these windows (the case's `window`, e.g. `["W3"]`); empty: any window.
    #[serde(default)]
    pub on_case_windows: Vec<String>,
    /// One snapshot attempt may take this long at most.
    #[serde(default = "default_camera_timeout")]
    pub timeout_secs: u64,
    /// IP cameras: after this many refused logins in a row the box stops asking (so the camera
    /// does not lock its account) and raises an alarm; fix the password and restart the agent.
    #[serde(default = "default_auth_failures")]
    pub max_auth_failures: u32,
}

fn default_channel() -> u32 {
    1
}
fn default_camera_timeout() -> u64 {
    10
}
fn default_auth_failures() -> u32 {
    3
}

impl CameraConfig {
    /// How often scheduled snapshots are taken, if they are.
    pub fn every(&self) -> Option<Duration> {
        match (self.every_min, self.every_secs) {
            (Some(m), _) => Some(Duration::from_secs(u64::from(m) * 60)),
            (None, Some(s)) => Some(Duration::from_secs(u64::from(s))),
            (None, None) => None,
        }
    }

    /// The snapshot URL of an IP camera.
    pub fn snapshot_url(&self) -> Option<String> {
        match self.kind {
            CameraKind::Hikvision => self.host.as_ref().map(|h| {
                format!(
                    "http://{h}/ISAPI/Streaming/channels/{}01/picture",
                    self.channel
                )
            }),
            CameraKind::Dahua => self
                .host
                .as_ref()
                .map(|h| format!("http://{h}/cgi-bin/snapshot.cgi?channel={}", self.channel)),
            CameraKind::Http => self.url.clone(),
            CameraKind::Usb | CameraKind::File => None,
        }
    }

    fn check(&self) -> Result<(), String> {
        let id = &self.id;
        if DeviceId::new(id).is_err() {
            return Err(format!(
                "camera id {id:?} must be 1-48 characters of a-z, 0-9 and '-'"
            ));
        }
        let need = |what: bool, key: &str, example: &str| {
            if what {
                Ok(())
            } else {
                Err(format!(
                    "camera {id:?} ({:?}) needs {key}, e.g. {key} = {example}",
                    self.kind
                ))
            }
        };
        match self.kind {
            CameraKind::Hikvision | CameraKind::Dahua => {
                need(self.host.is_some(), "host", "\"192.168.1.64\"")?;
                if self.host.as_deref().is_some_and(|h| h.contains('/')) {
                    return Err(format!(
                        "camera {id:?}: host is an address like \"192.168.1.64\" or \"192.168.1.64:8080\"; for a full URL use kind = \"http\" and url"
                    ));
                }
            }
            CameraKind::Http => {
                need(
                    self.url.is_some(),
                    "url",
                    "\"http://192.168.1.70/snapshot.jpg\"",
                )?;
                if !self
                    .url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
                {
                    return Err(format!(
                        "camera {id:?}: url must start with http:// or https://"
                    ));
                }
            }
            CameraKind::Usb => {
                need(
                    self.device.is_some(),
                    "device",
                    "\"/dev/v4l/by-id/usb-046d_HD_Webcam_C270-video-index0\"",
                )?;
                if !cfg!(feature = "usb-camera") {
                    return Err(format!(
                        "camera {id:?} is a USB camera, but this agent was built without USB camera support; build it with --features usb-camera (needs libclang-dev)"
                    ));
                }
            }
            CameraKind::File => {}
        }
        if self.every_min.is_some() && self.every_secs.is_some() {
            return Err(format!(
                "camera {id:?}: set every_min or every_secs, not both"
            ));
        }
        if self.every_min == Some(0) || self.every_secs == Some(0) {
            return Err(format!(
                "camera {id:?}: every_min / every_secs must be at least 1; leave it out for no schedule"
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(format!(
                "camera {id:?}: set password or password_file, not both"
            ));
        }
        if self.timeout_secs == 0 || self.max_auth_failures == 0 {
            return Err(format!(
                "camera {id:?}: timeout_secs and max_auth_failures must be at least 1"
            ));
        }
        if self.width == Some(0) || self.height == Some(0) {
            return Err(format!(
                "camera {id:?}: width and height must be at least 1"
            ));
        }
        if let Some(hours) = &self.office_hours {
            parse_hours(hours).map_err(|e| format!("camera {id:?}: office_hours: {e}"))?;
        }
        Ok(())
    }
}

/// Office hours as ranges `[from, to)` of seconds after local midnight.
pub type Hours = Vec<(u32, u32)>;

/// Parses `["08:30-12:00", "14:30-17:30"]` ("24:00" ends a range at midnight).
pub fn parse_hours(ranges: &[String]) -> Result<Hours, String> {
    if ranges.is_empty() {
        return Err("no ranges; give e.g. [\"08:30-12:00\", \"14:30-17:30\"]".into());
    }
    ranges
        .iter()
        .map(|r| {
            let bad = || format!("{r:?} is not a range like \"08:30-12:00\"");
            let (from, to) = r.split_once('-').ok_or_else(bad)?;
            let t = |s: &str| -> Result<u32, String> {
                let s = s.trim();
                if s == "24:00" {
                    return Ok(86_400);
                }
                let t = chrono::NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| bad())?;
                Ok(chrono::Timelike::num_seconds_from_midnight(&t))
            };
            let (from, to) = (t(from)?, t(to)?);
            if from >= to {
                return Err(format!("{r:?} ends before it starts"));
            }
            Ok((from, to))
        })
        .collect()
}

/// Parses `["mon", "tue", ...]`.
pub fn parse_days(days: &[String]) -> Result<Vec<chrono::Weekday>, String> {
    if days.is_empty() {
        return Err("no days; give e.g. [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]".into());
    }
    days.iter()
        .map(|d| {
            d.parse::<chrono::Weekday>()
                .map_err(|_| format!("{d:?} is not a day; use mon, tue, wed, thu, fri, sat, sun"))
        })
        .collect()
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

/// `[backdating]` (issue 14, item 6): an event whose `at` is earlier than the moment the box received
/// it by more than these bounds is recorded with a `backdated` mark carrying both times; nothing is
/// refused or dropped. ZKTeco terminal records are judged against the terminal's previous upload.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackdatingConfig {
    /// Case events, and every other kind posted or imported through the intake API (ratings,
    /// complaints, duty, patrols, corrections).
    #[serde(default = "default_backdating_case")]
    pub case_secs: u64,
    /// Punches: from the box's own tools (a `--local` intake key), and ZKTeco records against the
    /// terminal's previous upload. Kiosk punches take the box's clock and are never early.
    #[serde(default = "default_backdating_punch")]
    pub punch_secs: u64,
}

impl Default for BackdatingConfig {
    fn default() -> Self {
        BackdatingConfig {
            case_secs: default_backdating_case(),
            punch_secs: default_backdating_punch(),
        }
    }
}

fn default_backdating_case() -> u64 {
    24 * 3600
}
fn default_backdating_punch() -> u64 {
    10 * 60
}

impl BackdatingConfig {
    /// The bound for an event of `kind`, in seconds.
    pub fn bound(&self, kind: &sunlight_protocol::Kind) -> u64 {
        match kind {
            sunlight_protocol::Kind::Punch => self.punch_secs,
            _ => self.case_secs,
        }
    }

    /// Marks each of `drafts` that is dated earlier than `received` by more than its kind's bound;
    /// returns how many were marked.
    pub fn mark<'d>(
        &self,
        drafts: impl IntoIterator<Item = &'d mut sunlight_protocol::EventDraft>,
        received: &str,
    ) -> usize {
        drafts
            .into_iter()
            .filter_map(|d| {
                let bound = self.bound(d.kind());
                d.check_backdated(received, bound).then_some(())
            })
            .count()
    }
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
    /// The hub's HTTP API, `http://hub.county.example:8080`, where snapshots are uploaded
    /// (`PUT /api/v1/blobs/{sha256}`); absent: snapshots stay in the spool.
    pub api: Option<String>,
    /// The hub's down-link keys (`sunlight-hub hub-key show`; enrollment writes them). Acks and
    /// commands not sealed by one of them are refused: without any, this box records and sends but
    /// deletes nothing and runs no command.
    #[serde(default)]
    pub verifying_keys: Vec<String>,
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
        if let Some(api) = &config.hub.api {
            if !(api.starts_with("http://") || api.starts_with("https://")) {
                return Err(bad(format!(
                    "hub.api {api:?} must start with http:// or https://, e.g. \"http://hub.county.example:8080\""
                )));
            }
        }
        let snapshots = &config.snapshots;
        parse_hours(&snapshots.office_hours)
            .map_err(|e| bad(format!("snapshots.office_hours: {e}")))?;
        parse_days(&snapshots.office_days)
            .map_err(|e| bad(format!("snapshots.office_days: {e}")))?;
        sunlight_protocol::update::verifying_keys(&config.update.verifying_keys)
            .map_err(|e| bad(format!("update.verifying_keys: {e}")))?;
        sunlight_protocol::down::trusted_keys(&config.hub.verifying_keys)
            .map_err(|e| bad(format!("hub.verifying_keys: {e}")))?;
        if config.update.health_deadline_secs < 10 || config.update.max_starts == 0 {
            return Err(bad(
                "update.health_deadline_secs must be at least 10 and update.max_starts at least 1"
                    .into(),
            ));
        }
        if snapshots.quota_mb == 0 {
            return Err(bad("snapshots.quota_mb must be at least 1".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for camera in &config.cameras {
            camera
                .check()
                .map_err(|e| bad(format!("[[camera]]: {e}")))?;
            if !ids.insert(camera.id.as_str()) {
                return Err(bad(format!(
                    "[[camera]]: two cameras are called {:?}; give each its own id",
                    camera.id
                )));
            }
        }
        if let Some(punch) = &snapshots.punch_camera {
            if !ids.contains(punch.as_str()) {
                return Err(bad(format!(
                    "snapshots.punch_camera {punch:?} is not one of the [[camera]] ids ({})",
                    config
                        .cameras
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(config)
    }

    /// The directory of spooled JPEGs (`blobs/ab/<sha256>.jpg`).
    pub fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
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

    /// The binary updates replace (`[update] binary`, default `{data_dir}/bin/sunlight-agent`).
    pub fn update_binary(&self) -> PathBuf {
        self.update
            .binary
            .clone()
            .unwrap_or_else(|| self.data_dir.join("bin").join("sunlight-agent"))
    }

    /// Where updates keep their download, the previous binary and the pending marker.
    pub fn update_dir(&self) -> PathBuf {
        self.data_dir.join("update")
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
    fn cameras_are_checked_at_load() {
        let with =
            |extra: &str| AgentConfig::parse(&format!("{MINIMAL}{extra}"), Path::new("a.toml"));
        let c = with(
            r#"api = "http://hub:8080"
[snapshots]
punch_camera = "w1"
[[camera]]
id = "w1"
kind = "hikvision"
host = "192.168.1.64"
channel = 2
username = "viewer"
password = "x"
every_min = 5
on_case_stages = ["accepted", "completed"]
on_case_windows = ["W3"]
[[camera]]
id = "w2"
kind = "dahua"
host = "192.168.1.65:8080"
[[camera]]
id = "fake"
kind = "file"
every_secs = 2
office_hours = ["00:00-24:00"]
"#,
        )
        .unwrap();
        assert_eq!(c.hub.api.as_deref(), Some("http://hub:8080"));
        assert_eq!(
            c.cameras[0].snapshot_url().unwrap(),
            "http://192.168.1.64/ISAPI/Streaming/channels/201/picture"
        );
        assert_eq!(
            c.cameras[1].snapshot_url().unwrap(),
            "http://192.168.1.65:8080/cgi-bin/snapshot.cgi?channel=1"
        );
        assert_eq!(c.cameras[0].every(), Some(Duration::from_secs(300)));
        assert_eq!(c.cameras[2].every(), Some(Duration::from_secs(2)));
        use sunlight_protocol::event::bodies::Stage;
        assert_eq!(
            c.cameras[0].on_case_stages,
            vec![Stage::Accepted, Stage::Completed]
        );
        assert_eq!(c.cameras[0].on_case_windows, vec!["W3".to_owned()]);
        assert!(c.cameras[1].on_case_stages.is_empty() && c.cameras[1].on_case_windows.is_empty());
        assert_eq!(c.snapshots.quota_mb, 1024);
        let refusals = [
            (
                "[[camera]]\nid = \"w1\"\nkind = \"hikvision\"\n",
                "needs host",
            ),
            ("[[camera]]\nid = \"W 1\"\nkind = \"file\"\n", "a-z, 0-9"),
            (
                "[[camera]]\nid = \"a\"\nkind = \"file\"\n[[camera]]\nid = \"a\"\nkind = \"file\"\n",
                "two cameras",
            ),
            (
                "[[camera]]\nid = \"a\"\nkind = \"http\"\nurl = \"ftp://x\"\n",
                "http://",
            ),
            (
                "[[camera]]\nid = \"a\"\nkind = \"file\"\nevery_min = 1\nevery_secs = 1\n",
                "not both",
            ),
            (
                "[[camera]]\nid = \"a\"\nkind = \"file\"\noffice_hours = [\"9-5\"]\n",
                "08:30-12:00",
            ),
            (
                "[[camera]]\nid = \"a\"\nkind = \"webcam\"\n",
                "unknown variant",
            ),
            (
                "[snapshots]\npunch_camera = \"nope\"\n",
                "not one of the [[camera]] ids",
            ),
            ("[snapshots]\noffice_days = [\"someday\"]\n", "not a day"),
            (
                "[[camera]]\nid = \"a\"\nkind = \"file\"\non_case_stages = [\"acceptd\"]\n",
                "unknown variant `acceptd`, expected one of",
            ),
            (
                "[snapshots]\noffice_hours = [\"18:00-08:00\"]\n",
                "ends before it starts",
            ),
        ];
        for (extra, expected) in refusals {
            let err = with(extra).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{extra}: {err} should contain {expected}"
            );
        }
        let err = AgentConfig::parse(
            &MINIMAL.replace("[hub]\n", "[hub]\napi = \"hub:8080\"\n"),
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("hub.api"), "{err}");
        #[cfg(not(feature = "usb-camera"))]
        {
            let err =
                with("[[camera]]\nid = \"u\"\nkind = \"usb\"\ndevice = \"/dev/v4l/by-id/x\"\n")
                    .unwrap_err()
                    .to_string();
            assert!(err.contains("--features usb-camera"), "{err}");
        }
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
