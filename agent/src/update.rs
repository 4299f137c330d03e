//! Signed updates from the hub, with rollback (docs/updates.md).
//!
//! An `update` command (`{"version", "url", "sha256", "size"}`) is executed by [`Updater`]: the
//! archive is downloaded from the hub's API into `{data_dir}/update/`, its zipsign signature is
//! checked against `[update] verifying_keys` (unsigned, wrongly signed or changed archives are
//! refused and nothing is replaced), the binary is taken out beside the installed one, the
//! installed binary is kept as `update/previous`, a [`Marker`] is written, and the new binary is
//! renamed over the old one (atomic on one file system). The command is answered
//! (`update: "installed"`) and the agent exits; systemd (`Restart=always`) starts the new binary.
//!
//! The new binary proves itself: on start with a pending marker, [`on_start`] appends a `health`
//! event carrying its version and waits until the hub's ack covers it. Then the update is final:
//! a second answer (`final: true`, `update: "healthy"`). If the ack does not come within
//! `[update] health_deadline_secs` of the installation, the previous binary is put back, the
//! marker says why, and the agent exits. A new binary that cannot even run our code (it crashes at
//! once, or is not a working program at all) is caught by [`guard`]: the packaged binary runs it
//! before every start (`ExecStartPre`), counts the starts in the marker, and rolls back after
//! `[update] max_starts` starts or past the deadline. Either way the restored binary reports the
//! failure at its next start: a final `cmd_result` with `ok: false` and an `update_rolled_back`
//! alarm in a health event.
//!
//! The version a box reports is the compiled one, unless the installed binary has a
//! `{binary}.version` file beside it ("VERSION SHA256") whose hash matches the running executable:
//! the release version from the archive's `VERSION` file.

use crate::config::AgentConfig;
use crate::health::{Alarm, Alarms};
use crate::outbox::Outbox;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use sunlight_protocol::EventDraft;
use sunlight_protocol::update as archive;
use tokio::sync::Notify;

/// The pending-update marker, `{data_dir}/update/pending.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub cmd_id: String,
    /// The version being installed.
    pub version: String,
    /// The version it replaces.
    pub from_version: String,
    /// Unix ms of the installation (the deadline counts from here).
    pub installed_ms: i64,
    pub deadline_secs: u64,
    /// Starts of the new binary counted by the guard.
    pub starts: u32,
    pub state: MarkerState,
    /// Why it was rolled back.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerState {
    /// Files are being swapped: a marker left in this state means the swap was interrupted.
    Installing,
    /// Installed; the new binary has not yet been acknowledged healthy.
    Pending,
    /// The previous binary is back; its next start reports why.
    RolledBack,
}

/// The files of updates on this box.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The binary the service runs.
    pub binary: PathBuf,
    /// `{data_dir}/update`.
    pub dir: PathBuf,
}

impl Paths {
    pub fn of(config: &AgentConfig) -> Paths {
        Paths {
            binary: config.update_binary(),
            dir: config.update_dir(),
        }
    }
    pub fn marker(&self) -> PathBuf {
        self.dir.join("pending.json")
    }
    pub fn previous(&self) -> PathBuf {
        self.dir.join("previous")
    }
    fn previous_version(&self) -> PathBuf {
        self.dir.join("previous.version")
    }
    pub fn download(&self) -> PathBuf {
        self.dir.join("download.tar.gz")
    }
    /// `{binary}.version`: the release version of the installed binary and its SHA-256.
    pub fn version_file(&self) -> PathBuf {
        sibling(&self.binary, ".version")
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The version this process reports: the release version of its `.version` file when that file
/// belongs to this very executable, else the compiled version.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| release_of(&exe))
            .unwrap_or_else(|| crate::VERSION.to_owned())
    })
}

/// The release version recorded beside `binary`, if its hash matches.
fn release_of(binary: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sibling(binary, ".version")).ok()?;
    let (version, sha) = text.trim().split_once(' ')?;
    (sha256_file(binary).ok()? == sha).then(|| version.to_owned())
}

pub fn read_marker(paths: &Paths) -> Result<Option<Marker>, String> {
    let path = paths.marker();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Writes `bytes` to `dest` durably and atomically: a temporary file in the same directory,
/// synced, renamed over `dest`, and the directory synced.
fn write_atomic(dest: &Path, bytes: &mut dyn Read, mode: u32) -> Result<(), String> {
    let tmp = sibling(dest, ".swap");
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::copy(bytes, &mut file)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        if let Some(dir) = dest.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", dest.display())
    })
}

fn copy_atomic(src: &Path, dest: &Path, mode: u32) -> Result<(), String> {
    let mut file =
        std::fs::File::open(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    write_atomic(dest, &mut file, mode)
}

pub fn write_marker(paths: &Paths, marker: &Marker) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(marker).map_err(|e| e.to_string())?;
    write_atomic(&paths.marker(), &mut bytes.as_slice(), 0o644)
}

fn remove_marker(paths: &Paths) -> Result<(), String> {
    match std::fs::remove_file(paths.marker()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", paths.marker().display())),
    }
}

/// What the command asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UpdateArgs {
    pub version: String,
    /// The archive's path on the hub's API (`/api/v1/box/updates/V/archive`): archives come from
    /// the hub the box is enrolled with, never from another address.
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// The hub orders a version older than the one running (a release withdrawn): without this,
    /// an older version is refused.
    #[serde(default)]
    pub downgrade: bool,
}

impl UpdateArgs {
    pub fn parse(args: &Value) -> Result<UpdateArgs, String> {
        let a: UpdateArgs = serde_json::from_value(args.clone())
            .map_err(|e| format!("update needs args version, url and sha256: {e}"))?;
        archive::check_version(&a.version).map_err(|e| e.to_string())?;
        if !sunlight_protocol::blob::is_sha256_hex(&a.sha256) {
            return Err("update args.sha256 must be 64 lowercase hex digits".into());
        }
        if !a.url.starts_with("/api/v1/") || a.url.contains("..") || a.url.contains("//") {
            return Err(format!(
                "update args.url {:?} must be a path on the hub's API (/api/v1/box/updates/…): archives come from the hub only",
                a.url
            ));
        }
        Ok(a)
    }
}

/// Installs a downloaded archive (blocking). Refusals leave every installed file as it was.
pub fn install(
    paths: &Paths,
    downloaded: &Path,
    keys: &[String],
    want: &UpdateArgs,
    cmd_id: &str,
    deadline_secs: u64,
    from_version: &str,
) -> Result<Marker, String> {
    let keys = archive::verifying_keys(keys).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(downloaded)
        .map_err(|e| format!("reading {}: {e}", downloaded.display()))?;
    archive::verify(&mut file, &keys).map_err(|e| format!("refused: {e}; nothing was replaced"))?;
    let staged = sibling(&paths.binary, ".new");
    let contents = (|| {
        let mut out = std::fs::File::create(&staged)
            .map_err(|e| format!("writing {}: {e}", staged.display()))?;
        let c = archive::extract(std::io::BufReader::new(&mut file), &mut out)
            .map_err(|e| format!("refused: {e}; nothing was replaced"))?;
        out.sync_all()
            .map_err(|e| format!("writing {}: {e}", staged.display()))?;
        Ok::<_, String>(c)
    })();
    let contents = match contents {
        Ok(c) if c.version == want.version => c,
        Ok(c) => {
            let _ = std::fs::remove_file(&staged);
            return Err(format!(
                "refused: the archive's VERSION says {}, the command {}; nothing was replaced",
                c.version, want.version
            ));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", staged.display()))?;
    }
    let new_sha = sha256_file(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
    // Keep what runs now, with its version file.
    copy_atomic(&paths.binary, &paths.previous(), 0o755)?;
    match std::fs::read(paths.version_file()) {
        Ok(v) => write_atomic(&paths.previous_version(), &mut v.as_slice(), 0o644)?,
        Err(_) => {
            let _ = std::fs::remove_file(paths.previous_version());
        }
    }
    let mut marker = Marker {
        cmd_id: cmd_id.to_owned(),
        version: contents.version.clone(),
        from_version: from_version.to_owned(),
        installed_ms: now_ms(),
        deadline_secs,
        starts: 0,
        state: MarkerState::Installing,
        reason: None,
    };
    write_marker(paths, &marker)?;
    let line = format!("{} {new_sha}\n", contents.version);
    write_atomic(&paths.version_file(), &mut line.as_bytes(), 0o644)?;
    std::fs::rename(&staged, &paths.binary).map_err(|e| {
        format!(
            "replacing {} with {}: {e}",
            paths.binary.display(),
            staged.display()
        )
    })?;
    if let Some(dir) = paths.binary.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    marker.state = MarkerState::Pending;
    write_marker(paths, &marker)?;
    let _ = std::fs::remove_file(downloaded);
    Ok(marker)
}

/// Puts the previous binary back and records why (blocking).
pub fn rollback(paths: &Paths, marker: &mut Marker, reason: &str) -> Result<(), String> {
    copy_atomic(&paths.previous(), &paths.binary, 0o755)?;
    match std::fs::read(paths.previous_version()) {
        Ok(v) => write_atomic(&paths.version_file(), &mut v.as_slice(), 0o644)?,
        Err(_) => {
            let _ = std::fs::remove_file(paths.version_file());
        }
    }
    marker.state = MarkerState::RolledBack;
    marker.reason = Some(reason.to_owned());
    write_marker(paths, marker)
}

/// What the guard decided for a marker at a start.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardStep {
    /// Nothing to do.
    Nothing,
    /// Counted one more start of the new binary.
    Counted(u32),
    /// Roll back, for this reason.
    RollBack(String),
}

/// The pure part of [`guard`]: what a start means for the marker (its start count is raised).
pub fn guard_step(marker: &mut Marker, max_starts: u32, now_ms: i64) -> GuardStep {
    match marker.state {
        MarkerState::RolledBack => GuardStep::Nothing,
        MarkerState::Installing => {
            GuardStep::RollBack("the installation was interrupted before it finished".into())
        }
        MarkerState::Pending => {
            marker.starts += 1;
            let deadline = marker.installed_ms + (marker.deadline_secs as i64) * 1000;
            if marker.starts > max_starts {
                GuardStep::RollBack(format!(
                    "{} did not come up: started {} times without its health report being acknowledged",
                    marker.version,
                    marker.starts - 1
                ))
            } else if now_ms > deadline {
                GuardStep::RollBack(format!(
                    "{} was not healthy within {} s of its installation",
                    marker.version, marker.deadline_secs
                ))
            } else {
                GuardStep::Counted(marker.starts)
            }
        }
    }
}

/// `sunlight-agent update guard`, run by the packaged binary before every start of the service
/// (`ExecStartPre`): installs itself as the service's binary when there is none yet, counts the
/// starts of a new binary and rolls it back when it keeps failing. Returns what it did.
pub fn guard(config: &AgentConfig) -> Result<String, String> {
    let paths = Paths::of(config);
    let mut did = Vec::new();
    if !paths.binary.exists() {
        let me = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        if let Some(dir) = paths.binary.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        copy_atomic(&me, &paths.binary, 0o755)?;
        did.push(format!(
            "installed {} as {}",
            me.display(),
            paths.binary.display()
        ));
    }
    let Some(mut marker) = read_marker(&paths)? else {
        did.push("no update pending".into());
        return Ok(did.join("; "));
    };
    match guard_step(&mut marker, config.update.max_starts, now_ms()) {
        GuardStep::Nothing => did.push(format!(
            "update to {} rolled back earlier; the agent reports it",
            marker.version
        )),
        GuardStep::Counted(n) => {
            write_marker(&paths, &marker)?;
            did.push(format!(
                "start {n} of {} (of at most {}) waiting for its health report",
                marker.version, config.update.max_starts
            ));
        }
        GuardStep::RollBack(reason) => {
            rollback(&paths, &mut marker, &reason)?;
            did.push(format!("rolled back to {}: {reason}", marker.from_version));
        }
    }
    Ok(did.join("; "))
}

/// Executes `update` commands; also the agent's restart switch.
#[derive(Clone)]
pub struct Updater {
    pub config: AgentConfig,
    pub client: reqwest::Client,
    /// Notified when the agent should exit for systemd to start it again.
    pub restart: Arc<Notify>,
}

/// The outcome of an `update` command: the answer's `ok`, `detail`, and whether to restart.
pub struct Outcome {
    pub ok: bool,
    pub detail: String,
    /// `installed` when the new binary is in place.
    pub update: Option<&'static str>,
    pub restart: bool,
}

impl Outcome {
    fn refused(detail: String) -> Outcome {
        Outcome {
            ok: false,
            detail,
            update: None,
            restart: false,
        }
    }
}

impl Updater {
    pub async fn execute(&self, cmd_id: &str, args: &UpdateArgs) -> Outcome {
        let paths = Paths::of(&self.config);
        if args.version == version() {
            return Outcome {
                ok: true,
                detail: format!("already running {}", args.version),
                update: None,
                restart: false,
            };
        }
        if !args.downgrade {
            match sunlight_protocol::update::compare_versions(&args.version, version()) {
                Some(std::cmp::Ordering::Greater) => {}
                Some(_) => {
                    return Outcome::refused(format!(
                        "{} is older than {} running here: refused unless the hub's command says downgrade",
                        args.version,
                        version()
                    ));
                }
                None => {
                    return Outcome::refused(format!(
                        "cannot tell whether {} is newer than {} running here: refused unless the hub's command says downgrade",
                        args.version,
                        version()
                    ));
                }
            }
        }
        if let Err(e) = self.preconditions(&paths) {
            return Outcome::refused(e);
        }
        let api = self.config.hub.api.as_deref().unwrap_or_default();
        let url = format!("{}{}", api.trim_end_matches('/'), args.url);
        if let Err(e) = self.download(&url, &paths.download(), args).await {
            let _ = std::fs::remove_file(paths.download());
            return Outcome::refused(format!(
                "download of {} failed: {e}; nothing was replaced",
                args.version
            ));
        }
        let (p, keys, want, id) = (
            paths.clone(),
            self.config.update.verifying_keys.clone(),
            args.clone(),
            cmd_id.to_owned(),
        );
        let deadline = self.config.update.health_deadline_secs;
        let installed = tokio::task::spawn_blocking(move || {
            let r = install(&p, &p.download(), &keys, &want, &id, deadline, version());
            if r.is_err() {
                let _ = std::fs::remove_file(p.download());
            }
            r
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match installed {
            Ok(m) => Outcome {
                ok: true,
                detail: format!(
                    "installed {} (was {}); restarting into it; it must report healthy within {} s or {} is put back",
                    m.version, m.from_version, m.deadline_secs, m.from_version
                ),
                update: Some("installed"),
                restart: true,
            },
            Err(e) => Outcome::refused(e),
        }
    }

    fn preconditions(&self, paths: &Paths) -> Result<(), String> {
        if self.config.update.verifying_keys.is_empty() {
            return Err("updates are off on this box: [update] verifying_keys is empty".into());
        }
        if self.config.hub.api.is_none() {
            return Err("hub.api is not set: the box cannot download updates".into());
        }
        let me = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| format!("finding this binary: {e}"))?;
        let target = paths
            .binary
            .canonicalize()
            .map_err(|e| format!("update.binary {}: {e}", paths.binary.display()))?;
        if me != target {
            return Err(format!(
                "this agent runs from {}, not from update.binary {}: the service must run the updatable copy (packaging/systemd/sunlight-agent.service)",
                me.display(),
                target.display()
            ));
        }
        match read_marker(paths)? {
            Some(m) if m.state != MarkerState::RolledBack => Err(format!(
                "an update to {} is still being checked; try again later",
                m.version
            )),
            _ => Ok(()),
        }
    }

    async fn download(&self, url: &str, dest: &Path, args: &UpdateArgs) -> Result<(), String> {
        use futures_util::StreamExt;
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(1800))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let limit = archive::MAX_BINARY_BYTES;
        let mut file =
            std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(format!("the archive is over {limit} bytes"));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        let sha = hex::encode(hasher.finalize());
        if sha != args.sha256 || args.size.is_some_and(|s| s != size) {
            return Err(format!(
                "the download has {size} bytes with sha256 {sha}, not what the hub announced ({})",
                args.sha256
            ));
        }
        Ok(())
    }
}

fn cmd_result(
    cmd_id: &str,
    ok: bool,
    detail: &str,
    update: &str,
    clock: &crate::clock::Clock,
) -> Option<EventDraft> {
    let body =
        json!({"cmd_id": cmd_id, "ok": ok, "detail": detail, "update": update, "final": true});
    EventDraft::new("cmd_result", &clock.now_rfc3339(), &body).ok()
}

/// At the start of `run`: reports a rollback, or proves a new binary healthy (in the background).
/// `restart` is notified when the new binary had to be rolled back.
pub async fn on_start(
    config: &AgentConfig,
    outbox: &Outbox,
    clock: &crate::clock::Clock,
    alarms: &Alarms,
    restart: Arc<Notify>,
) {
    let paths = Paths::of(config);
    let marker = match read_marker(&paths) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the update marker; ignoring it");
            return;
        }
    };
    match marker.state {
        MarkerState::RolledBack => {
            let reason = marker.reason.clone().unwrap_or_default();
            let detail = format!(
                "update to {} rolled back, {} runs again: {reason}",
                marker.version,
                version()
            );
            let Some(draft) = cmd_result(&marker.cmd_id, false, &detail, "rolled_back", clock)
            else {
                return;
            };
            match outbox.append_one(draft).await {
                Ok(_) => {
                    alarms.raise(Alarm {
                        what: "update_rolled_back".into(),
                        at: clock.now_rfc3339(),
                        detail: format!("更新失败已回滚 / {detail}"),
                        camera_id: None,
                        count: None,
                    });
                    if let Err(e) = remove_marker(&paths) {
                        tracing::warn!(error = %e, "could not remove the update marker");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the rollback; reported at the next start")
                }
            }
        }
        MarkerState::Pending | MarkerState::Installing if marker.version == version() => {
            tokio::spawn(confirm(
                paths,
                marker,
                outbox.clone(),
                clock.clone(),
                config.data_dir.clone(),
                restart,
            ));
        }
        MarkerState::Pending | MarkerState::Installing => {
            // Not the new binary: the swap did not happen (or was undone by hand).
            let mut marker = marker;
            let reason = format!(
                "{} is not the running binary after the installation",
                marker.version
            );
            let p = paths.clone();
            let done =
                tokio::task::spawn_blocking(move || rollback(&p, &mut marker, &reason)).await;
            if !matches!(done, Ok(Ok(()))) {
                tracing::warn!(?done, "could not restore the previous binary");
            }
            restart.notify_one();
        }
    }
}

/// The new binary's proof: a health event with its version, acknowledged by the hub in time.
async fn confirm(
    paths: Paths,
    mut marker: Marker,
    outbox: Outbox,
    clock: crate::clock::Clock,
    data_dir: PathBuf,
    restart: Arc<Notify>,
) {
    let deadline_ms = marker.installed_ms + (marker.deadline_secs as i64) * 1000;
    let (o, c) = (outbox.clone(), clock.clone());
    let sample = tokio::task::spawn_blocking(move || {
        let mut sys = sysinfo::System::new().ok()?;
        Some(crate::health::sample(&mut sys, &data_dir, &o, &c))
    })
    .await
    .ok()
    .flatten();
    let mut body = sample.unwrap_or_else(|| json!({"version": version()}));
    body["update"] = json!({"version": marker.version, "from_version": marker.from_version, "state": "confirming"});
    let seq = match EventDraft::new("health", &clock.now_rfc3339(), &body) {
        Ok(draft) => match outbox.append_one(draft).await {
            Ok(a) => Some(a.seq),
            Err(e) => {
                tracing::warn!(error = %e, "could not record the health report of the new binary");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "health report of the new binary did not validate");
            None
        }
    };
    tracing::info!(version = %marker.version, seq, "new binary: waiting for the hub to acknowledge its health report");
    loop {
        let acked = outbox.backlog().map(|b| b.acked_seq).unwrap_or(0);
        if let Some(seq) = seq.filter(|s| acked >= *s) {
            let detail = format!(
                "{} runs and the hub acknowledged its health report (event {seq})",
                marker.version
            );
            if let Some(draft) = cmd_result(&marker.cmd_id, true, &detail, "healthy", &clock) {
                if let Err(e) = outbox.append_one(draft).await {
                    tracing::warn!(error = %e, "could not record the update's answer");
                    return;
                }
            }
            if let Err(e) = remove_marker(&paths) {
                tracing::warn!(error = %e, "could not remove the update marker");
            }
            tracing::info!(version = %marker.version, "update confirmed healthy");
            return;
        }
        if now_ms() > deadline_ms {
            let reason = format!(
                "{} was not acknowledged healthy by the hub within {} s of its installation",
                marker.version, marker.deadline_secs
            );
            tracing::error!(%reason, "rolling back");
            let p = paths.clone();
            let r = reason.clone();
            let done = tokio::task::spawn_blocking(move || rollback(&p, &mut marker, &r)).await;
            match done {
                Ok(Ok(())) => restart.notify_one(),
                other => tracing::error!(?other, "could not restore the previous binary"),
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(state: MarkerState) -> Marker {
        Marker {
            cmd_id: "update-s-b-1".into(),
            version: "0.2.0".into(),
            from_version: "0.1.0".into(),
            installed_ms: 1_000_000,
            deadline_secs: 60,
            starts: 0,
            state,
            reason: None,
        }
    }

    #[test]
    fn the_guard_counts_starts_and_rolls_back_after_too_many_or_too_late() {
        let mut m = marker(MarkerState::Pending);
        for n in 1..=3 {
            assert_eq!(guard_step(&mut m, 3, 1_000_500), GuardStep::Counted(n));
        }
        match guard_step(&mut m, 3, 1_000_500) {
            GuardStep::RollBack(r) => assert!(r.contains("started 3 times"), "{r}"),
            other => panic!("{other:?}"),
        }
        let mut m = marker(MarkerState::Pending);
        match guard_step(&mut m, 3, 1_000_000 + 61_000) {
            GuardStep::RollBack(r) => assert!(r.contains("within 60 s"), "{r}"),
            other => panic!("{other:?}"),
        }
        let mut m = marker(MarkerState::Installing);
        assert!(matches!(guard_step(&mut m, 3, 0), GuardStep::RollBack(_)));
        let mut m = marker(MarkerState::RolledBack);
        assert_eq!(guard_step(&mut m, 3, 0), GuardStep::Nothing);
        assert_eq!(m.starts, 0);
    }

    fn signed(binary: &[u8], version: &str, key: &archive::UpdateKey) -> Vec<u8> {
        let mut plain = Vec::new();
        archive::pack(&mut plain, binary, version).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        archive::sign(&mut std::io::Cursor::new(plain), &mut out, key).unwrap();
        out.into_inner()
    }

    fn args(version: &str) -> UpdateArgs {
        UpdateArgs {
            version: version.into(),
            url: "/x".into(),
            sha256: "0".repeat(64),
            size: None,
            downgrade: false,
        }
    }

    #[test]
    fn install_keeps_the_previous_binary_and_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            binary: dir.path().join("bin").join("sunlight-agent"),
            dir: dir.path().join("update"),
        };
        std::fs::create_dir_all(paths.binary.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(&paths.binary, b"old binary").unwrap();
        let key = archive::UpdateKey::generate().unwrap();
        let keys = vec![key.verifying_key()];

        // Refusals: wrong key, changed bytes, wrong version. Nothing moves.
        let other = archive::UpdateKey::generate().unwrap();
        let mut tampered = signed(b"new binary", "0.2.0", &key);
        let at = tampered.len() / 3;
        tampered[at] ^= 0x20;
        for (bytes, want, expect) in [
            (
                signed(b"new binary", "0.2.0", &other),
                "0.2.0",
                "does not match",
            ),
            (tampered, "0.2.0", "refused"),
            (
                signed(b"new binary", "0.2.0", &key),
                "0.3.0",
                "VERSION says 0.2.0",
            ),
        ] {
            std::fs::write(paths.download(), bytes).unwrap();
            let err = install(
                &paths,
                &paths.download(),
                &keys,
                &args(want),
                "c",
                60,
                "0.1.0",
            )
            .unwrap_err();
            assert!(
                err.contains(expect) && err.contains("nothing was replaced"),
                "{err}"
            );
            assert_eq!(std::fs::read(&paths.binary).unwrap(), b"old binary");
            assert!(read_marker(&paths).unwrap().is_none());
            assert!(!paths.version_file().exists());
        }

        std::fs::write(paths.download(), signed(b"new binary", "0.2.0", &key)).unwrap();
        let mut m = install(
            &paths,
            &paths.download(),
            &keys,
            &args("0.2.0"),
            "c",
            60,
            "0.1.0",
        )
        .unwrap();
        assert_eq!(std::fs::read(&paths.binary).unwrap(), b"new binary");
        assert_eq!(std::fs::read(paths.previous()).unwrap(), b"old binary");
        assert_eq!(read_marker(&paths).unwrap(), Some(m.clone()));
        assert_eq!(m.state, MarkerState::Pending);
        assert_eq!(release_of(&paths.binary).as_deref(), Some("0.2.0"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.binary)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }

        rollback(&paths, &mut m, "did not come up").unwrap();
        assert_eq!(std::fs::read(&paths.binary).unwrap(), b"old binary");
        assert!(
            !paths.version_file().exists(),
            "the old binary had no release file"
        );
        assert_eq!(release_of(&paths.binary), None);
        let back = read_marker(&paths).unwrap().unwrap();
        assert_eq!(back.state, MarkerState::RolledBack);
        assert_eq!(back.reason.as_deref(), Some("did not come up"));
    }

    #[test]
    fn a_version_file_counts_only_for_its_own_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("sunlight-agent");
        std::fs::write(&bin, b"binary").unwrap();
        let sha = sha256_file(&bin).unwrap();
        std::fs::write(sibling(&bin, ".version"), format!("0.2.0 {sha}\n")).unwrap();
        assert_eq!(release_of(&bin).as_deref(), Some("0.2.0"));
        std::fs::write(&bin, b"another binary").unwrap();
        assert_eq!(release_of(&bin), None);
    }

    #[test]
    fn update_args_are_checked() {
        let ok = json!({"version": "0.2.0", "url": "/api/v1/box/updates/0.2.0/archive", "sha256": "a".repeat(64), "size": 5});
        assert_eq!(UpdateArgs::parse(&ok).unwrap().size, Some(5));
        for bad in [
            json!({"version": "0.2.0"}),
            json!({"version": "0 2", "url": "/x", "sha256": "a".repeat(64)}),
            json!({"version": "0.2.0", "url": "/x", "sha256": "nope"}),
            // Archives come from the hub's API only.
            json!({"version": "0.2.0", "url": "http://evil.example/a.tar.gz", "sha256": "a".repeat(64)}),
            json!({"version": "0.2.0", "url": "//evil.example/api/v1/x", "sha256": "a".repeat(64)}),
            json!({"version": "0.2.0", "url": "/api/v1/../../x", "sha256": "a".repeat(64)}),
        ] {
            assert!(UpdateArgs::parse(&bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_older_version_is_refused_unless_the_hub_says_downgrade() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "site = \"suixian-shangshi\"\ndevice = \"box-01\"\ndata_dir = \"{}\"\n[hub]\nbroker = \"mqtt://127.0.0.1:1\"\n",
            dir.path().display()
        );
        let config = AgentConfig::parse(&text, std::path::Path::new("agent.toml")).unwrap();
        let updater = Updater {
            config,
            client: reqwest::Client::new(),
            restart: Arc::new(Notify::new()),
        };
        let args = |v: &str, downgrade: bool| {
            UpdateArgs::parse(
                &json!({"version": v, "url": format!("/api/v1/box/updates/{v}/archive"),
                "sha256": "a".repeat(64), "downgrade": downgrade}),
            )
            .unwrap()
        };
        let old = updater.execute("c1", &args("0.0.9", false)).await;
        assert!(
            !old.ok && old.detail.contains("older than"),
            "{}",
            old.detail
        );
        let odd = updater.execute("c2", &args("nightly", false)).await;
        assert!(
            !odd.ok && odd.detail.contains("cannot tell"),
            "{}",
            odd.detail
        );
        // Ordered as a downgrade, it goes on to the next check (this box has updates off).
        let ordered = updater.execute("c3", &args("0.0.9", true)).await;
        assert!(
            !ordered.ok && ordered.detail.contains("updates are off"),
            "{}",
            ordered.detail
        );
    }
}
