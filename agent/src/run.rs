//! Starting and stopping the agent: load config and key, open the outbox, start intake, sync and
//! health, and stop cleanly on SIGTERM or Ctrl-C (nothing is lost either way: the outbox is durable).

use crate::capture::camera::{Camera, Cameras};
use crate::capture::intake_api::{self, IntakeState, SnapshotStatus};
use crate::capture::intake_keys::IntakeKeys;
use crate::capture::kiosk::{self, KioskState};
use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::error::Error;
use crate::health::Alarms;
use crate::outbox::Outbox;
use crate::roster::RosterCache;
use crate::spool::Spool;
use crate::sync::upload::{UploadState, Uploader};
use crate::sync::{LinkState, Sync};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_protocol::DeviceKey;

/// Creates the data directory and the signing key if missing; returns the key.
pub fn init(config: &AgentConfig) -> Result<DeviceKey, Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::io(
            format!("creating data directory {}", config.data_dir.display()),
            e,
        )
    })?;
    let path = config.key_path();
    if path.exists() {
        return load_key(&path);
    }
    let key = DeviceKey::generate().map_err(|e| Error::Key {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    write_private(&path, key.to_hex().as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

pub fn load_key(path: &Path) -> Result<DeviceKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Key {
        path: path.into(),
        detail: format!("{e}; run 'sunlight-agent init' to create it"),
    })?;
    DeviceKey::from_hex(&text).ok_or_else(|| Error::Key {
        path: path.into(),
        detail: "not a 64-hex-digit ed25519 seed".into(),
    })
}

/// Runs the agent until SIGTERM / Ctrl-C. `config_path`: where `config` was read from (the hub's
/// `reload_config` reads it again).
pub async fn run(config: AgentConfig, config_path: std::path::PathBuf) -> Result<(), Error> {
    let key = Arc::new(load_key(&config.key_path())?);
    let tz = config.tz().map_err(|detail| Error::Config {
        path: "agent config".into(),
        detail,
    })?;
    let clock = Clock::new(tz);
    let outbox = Outbox::open(&config.outbox_path(), &config.site, &config.device)?;
    let link = Arc::new(Mutex::new(LinkState::default()));
    let (alarms, raised) = Alarms::new();
    let snapshots = start_cameras(&config, &outbox, &clock, &key, &alarms).await?;

    let listener = tokio::net::TcpListener::bind(config.intake.listen)
        .await
        .map_err(|e| {
            Error::io(
                format!(
                    "listening for intake on {} (set intake.listen to a free address)",
                    config.intake.listen
                ),
                e,
            )
        })?;
    let mut intake = intake_api::router(IntakeState {
        outbox: outbox.clone(),
        clock: clock.clone(),
        link: link.clone(),
        site: config.site.to_string(),
        device: config.device.to_string(),
        snapshots: Some(snapshots.clone()),
        alarms: alarms.clone(),
        keys: Arc::new(IntakeKeys::open(&config.data_dir)),
        backdating: config.backdating,
    });
    if config.kiosk.enabled {
        let roster = Arc::new(RosterCache::open(&config.outbox_path())?);
        let mut state = KioskState::new(outbox.clone(), clock.clone(), roster, &config.kiosk);
        // Wrong PINs are kept in the box's SQLite: a restart does not lift a lock.
        let log = kiosk::FailureLog::open(&config.outbox_path())?;
        state.wrong_pins = Arc::new(std::sync::Mutex::new(
            kiosk::WrongPins::new(
                config.kiosk.max_wrong_pins,
                std::time::Duration::from_secs(config.kiosk.lockout_secs),
            )
            .with_log(log),
        ));
        if let Some(camera) = &config.snapshots.punch_camera {
            state = state.with_photo(snapshots.cameras.clone(), camera);
        }
        intake = intake.merge(kiosk::router(state));
        tracing::info!(page = %format!("http://{}/kiosk", config.intake.listen), "kiosk page served");
    }
    tracing::info!(site = %config.site, device = %config.device, intake = %config.intake.listen, broker = %config.hub.broker, "agent started");
    // The peer's address: a --local intake key is taken from this box only.
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            intake.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });

    if let Some(zk) = &config.zkteco {
        let listener = tokio::net::TcpListener::bind(zk.listen)
            .await
            .map_err(|e| Error::io(format!("listening for ZKTeco terminals on {} (set zkteco.listen to a free address)", zk.listen), e))?;
        let terminals =
            crate::capture::zkteco_push::router(crate::capture::zkteco_push::TerminalState {
                outbox: outbox.clone(),
                clock: clock.clone(),
                tz,
                terminals: Arc::new(zk.terminals.iter().cloned().collect()),
                max_future_secs: zk.max_future_secs,
                punch_bound_secs: config.backdating.punch_secs,
                uploads: Arc::new(crate::capture::zkteco_push::TerminalUploads::open(
                    &config.outbox_path(),
                )?),
            });
        tracing::info!(listen = %zk.listen, terminals = zk.terminals.len(), "ZKTeco terminal server started");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, terminals).await {
                tracing::error!(error = %e, "ZKTeco terminal server stopped");
            }
        });
    }
    let maintenance = Arc::new(crate::maintenance::Maintenance::new(
        &config,
        config_path,
        key.clone(),
        clock.clone(),
        outbox.clone(),
    )?);
    maintenance.start_import(config.import.as_ref());
    // Updates: a rollback to report, or a new binary to prove healthy; and the restart switch
    // for the hub's `update` and `restart` commands.
    let restart = Arc::new(tokio::sync::Notify::new());
    crate::update::on_start(&config, &outbox, &clock, &alarms, restart.clone()).await;
    let updater = crate::update::Updater {
        config: config.clone(),
        client: crate::sync::upload::client(&config.hub)?,
        restart: restart.clone(),
    };
    tokio::spawn(crate::health::run(
        (config.health.interval_secs > 0).then(|| Duration::from_secs(config.health.interval_secs)),
        config.data_dir.clone(),
        outbox.clone(),
        clock.clone(),
        raised,
    ));
    let heartbeat = crate::watchdog::Heartbeat::default();
    crate::watchdog::start(outbox.clone(), heartbeat.clone());
    let sync = Sync {
        config,
        outbox,
        key,
        clock,
        link,
        cameras: Some(snapshots.cameras.clone()),
        updater: Some(updater),
        maintenance: Some(maintenance),
        heartbeat,
    };
    tokio::select! {
        _ = restart.notified() => tracing::info!("exiting to restart (hub command or update); the service manager starts the agent again"),
        r = sync.run() => r?,
        r = server => { r.map_err(|e| Error::Store(e.to_string()))?.map_err(|e| Error::io("intake server", e))?; }
        _ = shutdown_signal() => tracing::info!("stopping; unsent events stay in the outbox"),
    }
    Ok(())
}

/// Opens the snapshot spool, builds the cameras, starts their schedules and the uploader.
async fn start_cameras(
    config: &AgentConfig,
    outbox: &Outbox,
    clock: &Clock,
    key: &Arc<DeviceKey>,
    alarms: &Alarms,
) -> Result<SnapshotStatus, Error> {
    let bad = |detail: String| Error::Config {
        path: "agent config".into(),
        detail,
    };
    let quota = config.snapshots.quota_mb.saturating_mul(1024 * 1024);
    let spool = Spool::open(&config.blobs_dir(), outbox.clone(), quota, alarms.clone()).await?;
    let cameras = config
        .cameras
        .iter()
        .map(Camera::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    let cameras = Arc::new(Cameras::new(
        cameras,
        spool.clone(),
        clock.clone(),
        alarms.clone(),
    ));
    let hours = crate::config::parse_hours(&config.snapshots.office_hours).map_err(bad)?;
    let days = crate::config::parse_days(&config.snapshots.office_days).map_err(bad)?;
    // The hub's calendar, if it sent one, over the shipped data and the provisional years.
    let received = crate::calendar::load(&config.outbox_path())?;
    match &received {
        Some(r) => {
            tracing::info!(version = %r.calendar.version, issued = %r.calendar.issued, source = %r.source, "the hub's calendar loaded")
        }
        None => tracing::info!(
            "no calendar from the hub yet: the snapshot schedule follows the official data shipped with the agent, and the statutory holidays for later years"
        ),
    }
    let calendar = crate::calendar::LiveCalendar::new(
        sunlight_protocol::holidays::Official::cn().map_err(bad)?,
        received,
    );
    cameras.start_schedules(
        &config.cameras,
        &hours,
        &days,
        calendar,
        config.snapshots.official_holidays,
    );
    let upload = Arc::new(Mutex::new(UploadState {
        api: config.hub.api.clone(),
        ..UploadState::default()
    }));
    match &config.hub.api {
        Some(api) => {
            tracing::info!(api = %api, cameras = config.cameras.len(), "snapshot uploads to the hub started");
            tokio::spawn(
                Uploader {
                    api: api.clone(),
                    site: config.site.to_string(),
                    device: config.device.to_string(),
                    key: key.clone(),
                    clock: clock.clone(),
                    spool,
                    outbox: outbox.clone(),
                    alarms: alarms.clone(),
                    state: upload.clone(),
                    rate: config.snapshots.upload_bytes_per_sec,
                    max_backlog: config.snapshots.upload_max_backlog,
                    backoff_min_ms: config.sync.backoff_min_ms,
                    backoff_max_ms: config.sync.backoff_max_ms,
                    client: crate::sync::upload::client(&config.hub)?,
                }
                .run(),
            );
        }
        None => {
            if let Ok(mut u) = upload.lock() {
                u.doing = "hub.api is not set: snapshots stay in the spool".into();
            }
            if !config.cameras.is_empty() {
                tracing::warn!(
                    "hub.api is not set: snapshots are spooled on this box and not uploaded; set hub.api to the hub's HTTP API"
                );
            }
        }
    }
    Ok(SnapshotStatus { cameras, upload })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
