//! Cameras (issue 5): snapshots of the service windows, taken on a schedule, at a kiosk punch (the
//! punch photo) and when the hub asks, stored in the [`spool`](crate::spool) with one `snapshot`
//! event each, and uploaded later by `sync::upload`.
//!
//! Every kind of camera is a [`FrameSource`] that hands over JPEG bytes as the camera made them:
//! [`http`] (Hikvision, Dahua, any snapshot URL), `usb` (nokhwa / V4L2, feature `usb-camera`) and
//! [`file`] (a fake for tests and demos). A [`Camera`] wraps a source with what every kind shares:
//! one capture at a time, a time limit, the JPEG check and size ([`jpeg`]), and the error record
//! that status shows. [`Cameras`] holds them all and turns a picture into a spooled snapshot.
//! A camera error is logged, counted and retried with back-off by the [`schedule`]; it never stops
//! the agent or delays an event. Cameras with `on_case_stages` also shoot when a case event with one
//! of those stages is posted to the intake ([`Cameras::case_shots`], [`Cameras::start_case_shots`]).

pub mod file;
pub mod http;
pub mod jpeg;
pub mod schedule;
#[cfg(feature = "usb-camera")]
pub mod usb;

use crate::clock::Clock;
use crate::config::{CameraConfig, CameraKind};
use crate::error::Error;
use crate::health::{Alarm, Alarms};
use crate::outbox::Appended;
use crate::spool::{BlobRow, Spool, Spooled};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sunlight_protocol::EventDraft;
use sunlight_protocol::event::bodies::Stage;
use tokio::sync::{oneshot, watch};

/// A capture in progress.
pub type Capture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, CameraError>> + Send + 'a>>;

/// Where pictures come from: one kind of camera.
pub trait FrameSource: Send {
    /// Takes one picture: the JPEG bytes as the camera gave them (checked by [`Camera`]).
    fn capture(&mut self) -> Capture<'_>;
}

/// Why a camera gave no picture.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CameraError {
    #[error("the camera did not answer within {0} s")]
    Timeout(u64),
    #[error("cannot reach the camera: {0}")]
    Unreachable(String),
    #[error("the camera refused the login ({why}; {failures} in a row, the box stops after {max})")]
    Unauthorized {
        why: String,
        failures: u32,
        max: u32,
    },
    #[error(
        "the camera refused {max} logins in a row; the box stopped asking so that the camera does not lock the account: fix username / password in agent.toml and restart the agent"
    )]
    LoginsStopped { max: u32 },
    #[error("the camera answered HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("the camera's answer is not a snapshot: {0}")]
    NotJpeg(String),
    #[error("the picture is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Device(String),
}

/// Why a snapshot was taken (`trigger` in the `snapshot` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Punch,
    Command,
    /// A case event with one of the camera's `on_case_stages`.
    Event,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Punch => "punch",
            Trigger::Command => "command",
            Trigger::Event => "event",
        }
    }
}

/// A picture taken and checked.
#[derive(Debug, Clone)]
pub struct Shot {
    pub jpeg: Vec<u8>,
    pub dimensions: jpeg::Dimensions,
    /// When the capture started, by the box's clock.
    pub taken_at: String,
}

/// Failed captures in a row that make a `camera_failing` alarm.
pub const FAILING_AFTER: u32 = 3;

/// A camera's record, for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraState {
    pub captures: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub last_ok: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Set when the box stopped asking the camera (refused logins); cleared by a restart.
    pub stopped: Option<String>,
}

/// One camera: a source and what every kind shares.
pub struct Camera {
    pub id: String,
    pub kind: CameraKind,
    /// Where it is (URL without credentials, device path, directory), for status and logs.
    pub location: String,
    timeout: Duration,
    source: tokio::sync::Mutex<Box<dyn FrameSource>>,
    state: Mutex<CameraState>,
    /// Case stages at which this camera shoots (`on_case_stages`) ...
    case_stages: Vec<Stage>,
    /// ... at these windows (`on_case_windows`; empty: any).
    case_windows: Vec<String>,
    /// A case-event snapshot is being taken: another case event meanwhile is covered by it.
    case_busy: AtomicBool,
}

impl Camera {
    pub fn new(
        id: &str,
        kind: CameraKind,
        location: String,
        timeout: Duration,
        source: Box<dyn FrameSource>,
    ) -> Camera {
        Camera {
            id: id.to_owned(),
            kind,
            location,
            timeout,
            source: tokio::sync::Mutex::new(source),
            state: Mutex::new(CameraState::default()),
            case_stages: Vec::new(),
            case_windows: Vec::new(),
            case_busy: AtomicBool::new(false),
        }
    }

    /// The camera also shoots when a case event reaches one of `stages` at one of `windows` (empty:
    /// any window).
    pub fn with_case_stages(mut self, stages: Vec<Stage>, windows: Vec<String>) -> Camera {
        self.case_stages = stages;
        self.case_windows = windows;
        self
    }

    /// Builds the camera a `[[camera]]` section describes.
    pub fn from_config(c: &CameraConfig) -> Result<Camera, Error> {
        let bad = |detail: String| Error::Config {
            path: "agent config".into(),
            detail: format!("camera {:?}: {detail}", c.id),
        };
        let timeout = Duration::from_secs(c.timeout_secs);
        let (location, source): (String, Box<dyn FrameSource>) = match c.kind {
            CameraKind::Hikvision | CameraKind::Dahua | CameraKind::Http => {
                let url = c
                    .snapshot_url()
                    .ok_or_else(|| bad("no snapshot URL".into()))?;
                let password = match (&c.password, &c.password_file) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(file)) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| bad(format!("password_file {}: {e}", file.display())))?
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    ),
                    (None, None) => None,
                };
                let credentials = c
                    .username
                    .clone()
                    .map(|u| (u, password.unwrap_or_default()));
                let source = http::HttpSource::new(&url, credentials, timeout, c.max_auth_failures)
                    .map_err(bad)?;
                (url, Box::new(source))
            }
            CameraKind::File => (
                c.dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "generated frames".into()),
                Box::new(file::FileSource::new(
                    &c.id,
                    c.dir.clone(),
                    c.width.unwrap_or(640),
                    c.height.unwrap_or(480),
                )),
            ),
            CameraKind::Usb => usb_source(c).map_err(bad)?,
        };
        Ok(Camera::new(&c.id, c.kind, location, timeout, source)
            .with_case_stages(c.on_case_stages.clone(), c.on_case_windows.clone()))
    }

    /// Takes a picture and checks it is a JPEG; the outcome goes into the camera's record.
    pub async fn shoot(&self, clock: &Clock, alarms: &Alarms) -> Result<Shot, CameraError> {
        let mut source = self.source.lock().await;
        let taken_at = clock.now_rfc3339();
        let result = tokio::time::timeout(self.timeout, source.capture())
            .await
            .unwrap_or(Err(CameraError::Timeout(self.timeout.as_secs())));
        drop(source);
        let result = result.and_then(|jpeg| {
            let dimensions =
                jpeg::dimensions(&jpeg).map_err(|e| CameraError::NotJpeg(e.to_string()))?;
            Ok(Shot {
                jpeg,
                dimensions,
                taken_at: taken_at.clone(),
            })
        });
        let Ok(mut state) = self.state.lock() else {
            return result;
        };
        match &result {
            Ok(shot) => {
                state.captures += 1;
                state.consecutive_failures = 0;
                state.last_ok = Some(shot.taken_at.clone());
            }
            Err(e) => {
                state.failures += 1;
                state.consecutive_failures += 1;
                state.last_error = Some(e.to_string());
                state.last_error_at = Some(taken_at);
                let first_stop =
                    matches!(e, CameraError::LoginsStopped { .. }) && state.stopped.is_none();
                if first_stop {
                    state.stopped = Some(e.to_string());
                }
                // OVERSIGHT.md §6: a camera failing three captures in a row is an alarm, raised
                // once per run of failures (the next success starts the count again).
                let failing = !first_stop
                    && state.stopped.is_none()
                    && state.consecutive_failures == FAILING_AFTER;
                drop(state);
                if failing {
                    alarms.raise(Alarm {
                        what: "camera_failing".into(),
                        at: clock.now_rfc3339(),
                        detail: format!(
                            "camera {} ({}): {FAILING_AFTER} captures in a row failed; last: {e}",
                            self.id, self.location
                        ),
                        camera_id: Some(self.id.clone()),
                        count: Some(u64::from(FAILING_AFTER)),
                    });
                } else if first_stop {
                    alarms.raise(Alarm {
                        what: "camera_logins_stopped".into(),
                        at: clock.now_rfc3339(),
                        detail: format!("camera {} ({}): {e}", self.id, self.location),
                        camera_id: Some(self.id.clone()),
                        count: None,
                    });
                } else {
                    tracing::warn!(camera_id = %self.id, location = %self.location, error = %e, "camera gave no picture");
                }
            }
        }
        result
    }

    pub fn state(&self) -> CameraState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(feature = "usb-camera")]
fn usb_source(c: &CameraConfig) -> Result<(String, Box<dyn FrameSource>), String> {
    let device = c.device.clone().ok_or("no device path")?;
    Ok((
        device.display().to_string(),
        Box::new(usb::UsbSource::new(device, c.width, c.height)),
    ))
}

#[cfg(not(feature = "usb-camera"))]
fn usb_source(_: &CameraConfig) -> Result<(String, Box<dyn FrameSource>), String> {
    Err("this agent was built without USB camera support; build it with --features usb-camera (needs libclang-dev)".into())
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("no camera {0:?} on this box (cameras: {1})")]
    UnknownCamera(String, String),
    #[error("camera {0}: {1}")]
    Camera(String, CameraError),
    #[error(transparent)]
    Spool(#[from] Error),
}

/// A case event's snapshot to take once the event is recorded ([`Cameras::case_shots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseShot {
    pub camera_id: String,
    /// The case event's place among the events posted together.
    pub index: usize,
    pub case_no: String,
    pub stage: String,
}

/// A case event posted later than this after its `at` (an approval system catching up after an
/// outage) takes no snapshot: the picture would show the window at another time.
pub const CASE_EVENT_MAX_AGE: Duration = Duration::from_secs(300);

/// A snapshot spooled and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub camera_id: String,
    pub sha256: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub taken_at: String,
}

/// Every camera of the box, with the spool its pictures go to.
pub struct Cameras {
    cameras: Vec<Arc<Camera>>,
    spool: Spool,
    clock: Clock,
    alarms: Alarms,
    /// The calendar of the schedules (set by [`Cameras::start_schedules`]); the hub's
    /// `set_calendar` replaces what it holds.
    calendar: std::sync::OnceLock<crate::calendar::LiveCalendar>,
    /// Each scheduled camera's plan, for status (its next slot).
    plans: std::sync::Mutex<Vec<(String, schedule::Plan)>>,
}

impl Cameras {
    pub fn new(cameras: Vec<Camera>, spool: Spool, clock: Clock, alarms: Alarms) -> Cameras {
        Cameras {
            cameras: cameras.into_iter().map(Arc::new).collect(),
            spool,
            clock,
            alarms,
            calendar: std::sync::OnceLock::new(),
            plans: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The calendar in force for the schedules, once they are started.
    pub fn calendar(&self) -> Option<&crate::calendar::LiveCalendar> {
        self.calendar.get()
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Camera>> {
        self.cameras.iter().find(|c| c.id == id)
    }

    pub fn ids(&self) -> String {
        let ids: Vec<&str> = self.cameras.iter().map(|c| c.id.as_str()).collect();
        if ids.is_empty() {
            "none configured".into()
        } else {
            ids.join(", ")
        }
    }

    /// Takes a picture with camera `id`.
    pub async fn shoot(&self, id: &str) -> Result<Shot, TakeError> {
        let camera = self
            .get(id)
            .ok_or_else(|| TakeError::UnknownCamera(id.to_owned(), self.ids()))?;
        camera
            .shoot(&self.clock, &self.alarms)
            .await
            .map_err(|e| TakeError::Camera(id.to_owned(), e))
    }

    /// Takes a snapshot now: picture, spool file, index row and `snapshot` event.
    pub async fn take(
        &self,
        id: &str,
        trigger: Trigger,
        extra: Map<String, Value>,
    ) -> Result<Taken, TakeError> {
        let shot = self.shoot(id).await?;
        self.store(id, shot, trigger, extra).await
    }

    /// Spools a picture and records it.
    async fn store(
        &self,
        id: &str,
        shot: Shot,
        trigger: Trigger,
        extra: Map<String, Value>,
    ) -> Result<Taken, TakeError> {
        let dimensions = shot.dimensions;
        let taken_at = shot.taken_at.clone();
        let spooled = self.spool.write(shot.jpeg).await?;
        let (row, event) = self.record_of(id, &spooled, dimensions, &taken_at, trigger, extra)?;
        if let Err(e) = self.spool.add(row, event).await {
            self.spool.discard(&spooled.sha256).await;
            return Err(e.into());
        }
        tracing::info!(camera_id = %id, sha256 = %spooled.sha256, bytes = spooled.bytes, trigger = trigger.as_str(), "snapshot spooled");
        Ok(Taken {
            camera_id: id.to_owned(),
            sha256: spooled.sha256,
            bytes: spooled.bytes,
            width: dimensions.width,
            height: dimensions.height,
            taken_at,
        })
    }

    /// The index row and `snapshot` event of a spooled picture.
    pub fn record_of(
        &self,
        id: &str,
        spooled: &Spooled,
        dimensions: jpeg::Dimensions,
        taken_at: &str,
        trigger: Trigger,
        extra: Map<String, Value>,
    ) -> Result<(BlobRow, EventDraft), Error> {
        let mut body = json!({
            "camera_id": id, "sha256": spooled.sha256, "bytes": spooled.bytes,
            "width": dimensions.width, "height": dimensions.height,
            "taken_at": taken_at, "trigger": trigger.as_str(),
        });
        if let Some(map) = body.as_object_mut() {
            map.extend(extra);
        }
        let event = EventDraft::new("snapshot", &self.clock.now_rfc3339(), &body)?;
        let row = BlobRow {
            sha256: spooled.sha256.clone(),
            camera: id.to_owned(),
            bytes: spooled.bytes,
            taken_at: taken_at.to_owned(),
        };
        Ok((row, event))
    }

    /// Starts the punch photo with camera `id` for a punch being decided ([`PendingPhoto`]).
    pub fn start_punch_photo(self: &Arc<Self>, id: &str, staff_id: Option<String>) -> PendingPhoto {
        let (ready_tx, ready) = watch::channel(None);
        let (outcome, outcome_rx) = oneshot::channel();
        let cameras = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let shot = match cameras.shoot(&id).await {
                Ok(shot) => shot,
                Err(e) => {
                    tracing::warn!(camera_id = %id, error = %e, "no punch photo");
                    return;
                }
            };
            let (dimensions, taken_at) = (shot.dimensions, shot.taken_at.clone());
            let spooled = match cameras.spool.write(shot.jpeg).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(camera_id = %id, error = %e, "punch photo not spooled");
                    return;
                }
            };
            let _ = ready_tx.send(Some(spooled.sha256.clone()));
            let mut extra = Map::new();
            if let Some(staff) = staff_id {
                extra.insert("staff_id".into(), json!(staff));
            }
            match outcome_rx.await {
                Ok(PunchOutcome::NotRecorded) => {
                    cameras.spool.discard(&spooled.sha256).await;
                    return;
                }
                Ok(PunchOutcome::Recorded(seq)) => {
                    extra.insert("punch_seq".into(), json!(seq));
                }
                // The handler stopped without a word (the client went away): keep the photo.
                Err(_) => {}
            }
            let recorded = cameras
                .record_of(&id, &spooled, dimensions, &taken_at, Trigger::Punch, extra)
                .map_err(TakeError::from);
            let result = match recorded {
                Ok((row, event)) => cameras.spool.add(row, event).await.map_err(TakeError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(a) => {
                    tracing::info!(camera_id = %id, sha256 = %spooled.sha256, seq = a.seq, "punch photo spooled")
                }
                Err(e) => {
                    tracing::warn!(camera_id = %id, sha256 = %spooled.sha256, error = %e, "punch photo not recorded; the file stays and is indexed at the next start")
                }
            }
        });
        PendingPhoto {
            ready,
            outcome: Some(outcome),
        }
    }

    /// The snapshots that events about to be recorded call for: for each camera whose
    /// `on_case_stages` name the stage of one of the `case` events (at one of its
    /// `on_case_windows`, if it lists any), one snapshot naming the first such event. Events dated more than [`CASE_EVENT_MAX_AGE`] ago call for none.
    pub fn case_shots(&self, drafts: &[EventDraft]) -> Vec<CaseShot> {
        let mut shots: Vec<CaseShot> = Vec::new();
        if self.cameras.iter().all(|c| c.case_stages.is_empty()) {
            return shots;
        }
        let now = chrono::Utc::now();
        for (index, draft) in drafts.iter().enumerate() {
            if draft.kind().as_str() != "case" {
                continue;
            }
            let fresh = chrono::DateTime::parse_from_rfc3339(draft.at()).is_ok_and(|at| {
                now.signed_duration_since(at)
                    .to_std()
                    .map_or(true, |age| age <= CASE_EVENT_MAX_AGE)
            });
            if !fresh {
                continue;
            }
            let Ok(body) = serde_json::from_str::<Value>(draft.body()) else {
                continue;
            };
            let Ok(stage) = serde_json::from_value::<Stage>(body["stage"].clone()) else {
                continue;
            };
            let window = body["window"].as_str().unwrap_or_default();
            for camera in &self.cameras {
                if camera.case_stages.contains(&stage)
                    && (camera.case_windows.is_empty()
                        || camera.case_windows.iter().any(|w| w == window))
                    && !shots.iter().any(|s| s.camera_id == camera.id)
                {
                    shots.push(CaseShot {
                        camera_id: camera.id.clone(),
                        index,
                        case_no: body["case_no"].as_str().unwrap_or_default().to_owned(),
                        stage: body["stage"].as_str().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        shots
    }

    /// Takes the `shots` for events just recorded (`appended`, in the order posted) in the
    /// background: the caller never waits for a camera, and a camera error costs only the picture.
    /// A camera still busy with an earlier case snapshot skips this one. Each snapshot event
    /// (trigger `event`) names its case event: `case_no`, `stage` and `event_seq`.
    pub fn start_case_shots(self: &Arc<Self>, shots: Vec<CaseShot>, appended: &[Appended]) {
        for shot in shots {
            let Some(camera) = self.get(&shot.camera_id).cloned() else {
                continue;
            };
            let Some(event) = appended.get(shot.index) else {
                continue;
            };
            if camera.case_busy.swap(true, Ordering::AcqRel) {
                tracing::debug!(camera_id = %shot.camera_id, case_no = %shot.case_no, "case snapshot skipped: the camera is still taking the previous one");
                continue;
            }
            let mut extra = Map::new();
            extra.insert("case_no".into(), json!(shot.case_no));
            extra.insert("stage".into(), json!(shot.stage));
            extra.insert("event_seq".into(), json!(event.seq));
            let cameras = self.clone();
            tokio::spawn(async move {
                let result = cameras.take(&shot.camera_id, Trigger::Event, extra).await;
                camera.case_busy.store(false, Ordering::Release);
                if let Err(e) = result {
                    tracing::warn!(camera_id = %shot.camera_id, case_no = %shot.case_no, stage = %shot.stage, error = %e, "no snapshot for the case event");
                }
            });
        }
    }

    /// Starts each camera's schedule (those with `every_min` / `every_secs`). `calendar` is the
    /// calendar in force; `use_calendar` false (`snapshots.official_holidays = false`): the
    /// schedules follow the weekdays alone (a calendar the hub sends is still kept).
    pub fn start_schedules(
        self: &Arc<Self>,
        configs: &[CameraConfig],
        office_hours: &crate::config::Hours,
        office_days: &[chrono::Weekday],
        calendar: crate::calendar::LiveCalendar,
        use_calendar: bool,
    ) {
        let _ = self.calendar.set(calendar.clone());
        for c in configs {
            let Some(every) = c.every() else { continue };
            let hours = c
                .office_hours
                .as_ref()
                .and_then(|h| crate::config::parse_hours(h).ok())
                .unwrap_or_else(|| office_hours.clone());
            tracing::info!(camera_id = %c.id, every_secs = every.as_secs(), "snapshot schedule started");
            let plan = schedule::Plan {
                every,
                hours,
                days: office_days.to_vec(),
                calendar: use_calendar.then(|| calendar.clone()),
            };
            if let Ok(mut plans) = self.plans.lock() {
                plans.push((c.id.clone(), plan.clone()));
            }
            tokio::spawn(schedule::run(
                self.clone(),
                c.id.clone(),
                plan,
                self.clock.clone(),
            ));
        }
    }

    /// When camera `id`'s schedule takes its next picture (RFC 3339, box time zone), as the
    /// calendar in force says now; `None`: no schedule, or none within 40 days.
    pub fn next_scheduled(&self, id: &str) -> Option<String> {
        let plans = self.plans.lock().ok()?;
        let (_, plan) = plans.iter().find(|(c, _)| c == id)?;
        let tz = self.clock.tz();
        let now = chrono::Utc::now().with_timezone(&tz);
        schedule::next_slot(&now, plan).map(|t| t.to_rfc3339())
    }

    /// Each camera's record, for status.
    pub fn status(&self) -> Vec<Value> {
        self.cameras
            .iter()
            .map(|c| {
                let mut v = json!(c.state());
                v["id"] = json!(c.id);
                v["next_scheduled"] = json!(self.next_scheduled(&c.id));
                v["kind"] = json!(format!("{:?}", c.kind).to_lowercase());
                v["location"] = json!(c.location);
                v
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }
}

/// What became of the punch a photo was taken for.
#[derive(Debug)]
enum PunchOutcome {
    Recorded(u64),
    NotRecorded,
}

/// A punch photo being taken while its punch is decided. The punch never waits for it: when the
/// picture is on disk by the time the punch is written, the punch names it as its `photo`
/// ([`PendingPhoto::ready`]); either way the photo's `snapshot` event (trigger `punch`) follows the
/// punch and names it (`punch_seq`). A punch that is not recorded (a wrong PIN) discards its photo.
pub struct PendingPhoto {
    ready: watch::Receiver<Option<String>>,
    outcome: Option<oneshot::Sender<PunchOutcome>>,
}

impl PendingPhoto {
    /// The photo's sha256 if it is on disk already.
    pub fn ready(&self) -> Option<String> {
        self.ready.borrow().clone()
    }

    /// Waits until the photo is on disk (or will never be); for tests.
    pub async fn wait_ready(&mut self) -> Option<String> {
        let _ = self.ready.wait_for(Option::is_some).await;
        self.ready()
    }

    /// The punch is recorded at `seq`.
    pub fn recorded(mut self, seq: u64) {
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(PunchOutcome::Recorded(seq));
        }
    }

    /// The punch was not recorded: the photo is discarded.
    pub fn not_recorded(mut self) {
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(PunchOutcome::NotRecorded);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outbox::Outbox;

    /// A camera that gives a picture only when the test lets it (`open.add_permits(1)`).
    pub struct GatedSource {
        pub open: Arc<tokio::sync::Semaphore>,
        pub n: u64,
    }

    impl FrameSource for GatedSource {
        fn capture(&mut self) -> Capture<'_> {
            self.n += 1;
            let n = self.n;
            Box::pin(async move {
                let permit = self
                    .open
                    .acquire()
                    .await
                    .map_err(|e| CameraError::Device(e.to_string()))?;
                permit.forget();
                Ok(jpeg::generate(320, 240, n, "gated"))
            })
        }
    }

    pub struct Rig {
        pub dir: tempfile::TempDir,
        pub outbox: Outbox,
        pub cameras: Arc<Cameras>,
        pub raised: tokio::sync::mpsc::Receiver<Alarm>,
    }

    /// An outbox, a spool and cameras `file` (generated frames, 320×240) and `gated`.
    pub async fn rig(extra: Vec<Camera>) -> (Rig, Arc<tokio::sync::Semaphore>) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.db"),
            &sunlight_protocol::SiteId::new("suixian-shangshi").unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        let (alarms, raised) = Alarms::new();
        let spool = Spool::open(
            &dir.path().join("blobs"),
            outbox.clone(),
            1 << 30,
            alarms.clone(),
        )
        .await
        .unwrap();
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let mut cameras = vec![
            Camera::new(
                "file",
                CameraKind::File,
                "generated frames".into(),
                Duration::from_secs(5),
                Box::new(file::FileSource::new("file", None, 320, 240)),
            ),
            Camera::new(
                "gated",
                CameraKind::File,
                "gated".into(),
                Duration::from_secs(30),
                Box::new(GatedSource {
                    open: open.clone(),
                    n: 0,
                }),
            ),
        ];
        cameras.extend(extra);
        let cameras = Arc::new(Cameras::new(
            cameras,
            spool,
            Clock::new(chrono_tz::Asia::Shanghai),
            alarms,
        ));
        (
            Rig {
                dir,
                outbox,
                cameras,
                raised,
            },
            open,
        )
    }

    /// The bodies of stored events of `kind`.
    pub fn bodies(outbox: &Outbox, kind: &str) -> Vec<Value> {
        outbox
            .read_from(1, 1000, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice::<Value>(&e.canonical).unwrap())
            .filter(|e| e["kind"] == kind)
            .map(|e| {
                let mut body = e["body"].clone();
                body["seq"] = e["seq"].clone();
                body
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_spooled_with_an_event_that_describes_it() {
        let (rig, _) = rig(vec![]).await;
        let taken = rig
            .cameras
            .take("file", Trigger::Schedule, Map::new())
            .await
            .unwrap();
        assert_eq!((taken.width, taken.height), (320, 240));
        let events = bodies(&rig.outbox, "snapshot");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (
                &e["camera_id"],
                &e["sha256"],
                &e["bytes"],
                &e["width"],
                &e["height"],
                &e["trigger"]
            ),
            (
                &json!("file"),
                &json!(taken.sha256),
                &json!(taken.bytes),
                &json!(320),
                &json!(240),
                &json!("schedule")
            )
        );
        assert!(e["taken_at"].as_str().unwrap().ends_with("+08:00"));
        let on_disk = std::fs::read(rig.cameras.spool().path_of(&taken.sha256)).unwrap();
        assert_eq!(on_disk.len() as u64, taken.bytes);
        let err = rig
            .cameras
            .take("nope", Trigger::Command, Map::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cameras: file, gated"), "{err}");
        let status = rig.cameras.status();
        assert_eq!(
            (status[0]["id"].as_str(), status[0]["captures"].as_u64()),
            (Some("file"), Some(1))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_camera_that_refuses_logins_is_stopped_once_with_an_alarm_and_errors_are_recorded() {
        let (base, _) = http::tests::start(http::tests::Behaviour::Digest { sess: false }).await;
        let wrong = http::HttpSource::new(
            &format!("{base}/ISAPI/Streaming/channels/101/picture"),
            Some(("viewer".into(), "wrong".into())),
            Duration::from_secs(5),
            2,
        )
        .unwrap();
        let (html_base, _) = http::tests::start(http::tests::Behaviour::Html).await;
        let html =
            http::HttpSource::new(&format!("{html_base}/x"), None, Duration::from_secs(5), 2)
                .unwrap();
        let (mut rig, _) = rig(vec![
            Camera::new(
                "door",
                CameraKind::Hikvision,
                base.clone(),
                Duration::from_secs(5),
                Box::new(wrong),
            ),
            Camera::new(
                "html",
                CameraKind::Http,
                html_base,
                Duration::from_secs(5),
                Box::new(html),
            ),
        ])
        .await;
        for _ in 0..4 {
            assert!(
                rig.cameras
                    .take("door", Trigger::Schedule, Map::new())
                    .await
                    .is_err()
            );
        }
        let alarm = rig.raised.try_recv().unwrap();
        assert_eq!(
            (alarm.what.as_str(), alarm.camera_id.as_deref()),
            ("camera_logins_stopped", Some("door"))
        );
        assert!(rig.raised.try_recv().is_err(), "one alarm, not one per try");
        let door = rig.cameras.get("door").unwrap().state();
        assert_eq!(
            (door.failures, door.consecutive_failures, door.captures),
            (4, 4, 0)
        );
        assert!(door.stopped.unwrap().contains("restart"));
        let e = rig
            .cameras
            .take("html", Trigger::Schedule, Map::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("text/html"), "{e}");
        assert!(
            rig.raised.try_recv().is_err(),
            "one failure is no alarm yet"
        );
        // The third failure in a row is an alarm (OVERSIGHT.md §6), once for the run.
        for _ in 0..4 {
            assert!(
                rig.cameras
                    .take("html", Trigger::Schedule, Map::new())
                    .await
                    .is_err()
            );
        }
        let alarm = rig.raised.try_recv().unwrap();
        assert_eq!(
            (alarm.what.as_str(), alarm.camera_id.as_deref(), alarm.count),
            ("camera_failing", Some("html"), Some(3))
        );
        assert!(alarm.detail.contains("text/html"), "{}", alarm.detail);
        assert!(
            rig.raised.try_recv().is_err(),
            "one alarm per run of failures"
        );
        // Nothing was spooled or recorded for either.
        assert!(bodies(&rig.outbox, "snapshot").is_empty());
        assert_eq!(rig.cameras.spool().figures().unwrap().images, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_camera_that_hangs_times_out() {
        let hang = Camera::new(
            "hang",
            CameraKind::File,
            "hang".into(),
            Duration::from_millis(200),
            Box::new(GatedSource {
                open: Arc::new(tokio::sync::Semaphore::new(0)),
                n: 0,
            }),
        );
        let (rig, _) = rig(vec![hang]).await;
        let e = rig
            .cameras
            .take("hang", Trigger::Schedule, Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(e, TakeError::Camera(_, CameraError::Timeout(_))),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_punch_photo_ready_in_time_is_named_by_the_punch_and_follows_it() {
        let (rig, open) = rig(vec![]).await;
        // Ready before the punch is written.
        let mut pending = rig.cameras.start_punch_photo("file", Some("0451".into()));
        let sha = pending.wait_ready().await.unwrap();
        let punch = rig.outbox.append_one(punch_with(Some(&sha))).await.unwrap();
        pending.recorded(punch.seq);
        // Not ready: the punch goes without, the photo follows.
        let pending = rig.cameras.start_punch_photo("gated", Some("0452".into()));
        assert_eq!(pending.ready(), None);
        let late = rig.outbox.append_one(punch_with(None)).await.unwrap();
        pending.recorded(late.seq);
        open.add_permits(1);
        // Refused punch: the photo is discarded.
        let mut refused = rig.cameras.start_punch_photo("file", Some("0453".into()));
        let gone = refused.wait_ready().await.unwrap();
        refused.not_recorded();
        let outbox = rig.outbox.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bodies(&outbox, "snapshot").len() < 2 {
            assert!(std::time::Instant::now() < deadline, "photos not recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let photos = bodies(&rig.outbox, "snapshot");
        assert_eq!(photos.len(), 2, "{photos:?}");
        assert_eq!(
            (
                &photos[0]["sha256"],
                &photos[0]["punch_seq"],
                &photos[0]["trigger"]
            ),
            (&json!(sha), &json!(punch.seq), &json!("punch"))
        );
        assert_eq!(
            (&photos[1]["punch_seq"], &photos[1]["staff_id"]),
            (&json!(late.seq), &json!("0452"))
        );
        assert!(
            photos.iter().all(|p| p["seq"].as_u64() > Some(punch.seq)),
            "photos follow their punch"
        );
        assert!(!rig.cameras.spool().path_of(&gone).exists());
        assert_eq!(rig.cameras.spool().figures().unwrap().images, 2);
        drop(rig.dir);
    }

    /// The intake API of a box with the rig's cameras, and a key for it (a `--local` one: the
    /// tests post punches too, as a tool on the box would).
    fn intake(rig: &Rig) -> (axum::Router, String) {
        let (keys, key) = crate::capture::intake_keys::test_key(rig.dir.path(), true);
        let router = crate::capture::intake_api::router(crate::capture::intake_api::IntakeState {
            outbox: rig.outbox.clone(),
            clock: Clock::new(chrono_tz::Asia::Shanghai),
            link: Default::default(),
            site: "suixian-shangshi".into(),
            device: "box-01".into(),
            snapshots: Some(crate::capture::intake_api::SnapshotStatus {
                cameras: rig.cameras.clone(),
                upload: Default::default(),
            }),
            alarms: Alarms::new().0,
            keys,
            backdating: Default::default(),
        });
        (router, key)
    }

    /// POSTs events to the intake: (status, answer). Fails rather than hangs if it waits.
    async fn post((router, key): &(axum::Router, String), events: Value) -> (u16, Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::post("/api/v1/events")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(events.to_string()))
            .unwrap();
        let box_itself = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(box_itself));
        let response =
            tokio::time::timeout(Duration::from_secs(5), router.clone().oneshot(request))
                .await
                .expect("the intake answered without waiting for a camera")
                .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn case(case_no: &str, stage: &str, at: Option<String>) -> Value {
        let mut e = json!({"kind": "case", "body": {"case_no": case_no, "item_code": "MZ-001",
            "item_name": "老年优待证", "unit": "民政办", "window": "W3", "stage": stage,
            "staff_id": "0451", "kind": "immediate"}});
        if let Some(at) = at {
            e["at"] = json!(at);
        }
        e
    }

    async fn wait_snapshots(outbox: &Outbox, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = bodies(outbox, "snapshot");
            if s.len() >= n {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} snapshots",
                s.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_case_event_at_a_listed_stage_takes_a_snapshot_that_names_it() {
        let window = Camera::new(
            "window-3",
            CameraKind::File,
            "generated frames".into(),
            Duration::from_secs(5),
            Box::new(file::FileSource::new("window-3", None, 640, 480)),
        )
        .with_case_stages(vec![Stage::Accepted, Stage::Completed], vec!["W3".into()]);
        let (rig, _) = rig(vec![window]).await;
        let router = intake(&rig);
        let punch = json!({"kind": "punch", "body": {"staff_id": "0451", "direction": "in", "method": "card", "source": "t"}});
        let (status, answer) = post(
            &router,
            json!([
                punch,
                case("C-1", "undertaken", None),
                case("C-2", "accepted", None),
                case("C-3", "accepted", None)
            ]),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        let accepted_seq = answer["accepted"][2]["seq"].as_u64().unwrap();
        let shots = wait_snapshots(&rig.outbox, 1).await;
        let s = &shots[0];
        assert_eq!(
            (
                &s["camera_id"],
                &s["trigger"],
                &s["case_no"],
                &s["stage"],
                &s["event_seq"],
                &s["width"]
            ),
            (
                &json!("window-3"),
                &json!("event"),
                &json!("C-2"),
                &json!("accepted"),
                &json!(accepted_seq),
                &json!(640)
            ),
            "one snapshot per camera per request, naming the first case event that called for it"
        );
        assert!(
            s["seq"].as_u64() > Some(accepted_seq),
            "it follows its case"
        );
        // Stages the camera does not list, a completed case posted an hour late, an accepted case at
        // another window: nothing.
        let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let mut other_window = case("C-7", "accepted", None);
        other_window["body"]["window"] = json!("W1");
        for event in [
            case("C-4", "reviewed", None),
            case("C-5", "completed", Some(an_hour_ago)),
            other_window,
        ] {
            assert_eq!(post(&router, event).await.0, 201);
        }
        // A completed case now: the second snapshot.
        let (status, answer) = post(&router, case("C-6", "completed", None)).await;
        assert_eq!(status, 201);
        let shots = wait_snapshots(&rig.outbox, 2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shots_now = bodies(&rig.outbox, "snapshot");
        assert_eq!(shots_now.len(), 2, "{shots_now:?}");
        assert_eq!(
            (
                &shots[1]["case_no"],
                &shots[1]["stage"],
                &shots[1]["event_seq"]
            ),
            (
                &json!("C-6"),
                &json!("completed"),
                &answer["accepted"][0]["seq"]
            )
        );
        // The other cameras list no stages and took nothing.
        assert!(shots_now.iter().all(|s| s["camera_id"] == "window-3"));
        // What calls for a picture, without the camera's timing in the way.
        let draft = |stage: &str, window: &str, at: String| {
            let mut e = case("C-9", stage, None);
            e["body"]["window"] = json!(window);
            crate::capture::intake_api::draft("case", &at, e["body"].clone()).unwrap()
        };
        let now = Clock::new(chrono_tz::Asia::Shanghai).now_rfc3339();
        let late = (chrono::Utc::now() - chrono::Duration::minutes(6)).to_rfc3339();
        assert_eq!(
            rig.cameras.case_shots(&[
                draft("accepted", "W1", now.clone()),
                draft("undertaken", "W3", now.clone()),
                draft("completed", "W3", late),
                draft("completed", "W3", now.clone()),
                draft("accepted", "W3", now),
            ]),
            vec![CaseShot {
                camera_id: "window-3".into(),
                index: 3,
                case_no: "C-9".into(),
                stage: "completed".into()
            }]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_intake_never_waits_for_a_case_snapshot_and_a_busy_or_failing_camera_costs_only_the_picture()
     {
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let slow = Camera::new(
            "slow",
            CameraKind::File,
            "gated".into(),
            Duration::from_secs(30),
            Box::new(GatedSource {
                open: open.clone(),
                n: 100,
            }),
        )
        .with_case_stages(vec![Stage::Accepted], vec![]);
        let broken = Camera::new(
            "broken",
            CameraKind::File,
            "never answers".into(),
            Duration::from_millis(100),
            Box::new(GatedSource {
                open: Arc::new(tokio::sync::Semaphore::new(0)),
                n: 0,
            }),
        )
        .with_case_stages(vec![Stage::Accepted], vec![]);
        let (rig, _) = rig(vec![slow, broken]).await;
        let router = intake(&rig);
        // The camera has not given its picture, yet the case is recorded and answered.
        let (status, first) = post(&router, case("C-1", "accepted", None)).await;
        assert_eq!(status, 201, "{first}");
        // While it is still busy, a second accepted case is covered by the picture under way.
        let (status, _) = post(&router, case("C-2", "accepted", None)).await;
        assert_eq!(status, 201);
        assert!(bodies(&rig.outbox, "snapshot").is_empty());
        open.add_permits(1);
        let shots = wait_snapshots(&rig.outbox, 1).await;
        assert_eq!(
            (&shots[0]["camera_id"], &shots[0]["case_no"]),
            (&json!("slow"), &json!("C-1"))
        );
        // The broken camera timed out each time; its errors are in its record, nothing else.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rig.cameras.get("broken").unwrap().state().failures < 1 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Free again once the picture is stored (or failed): the next case takes its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rig
            .cameras
            .get("slow")
            .unwrap()
            .case_busy
            .load(Ordering::Acquire)
            || rig
                .cameras
                .get("broken")
                .unwrap()
                .case_busy
                .load(Ordering::Acquire)
        {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        open.add_permits(1);
        let (status, _) = post(&router, case("C-3", "accepted", None)).await;
        assert_eq!(status, 201);
        let shots = wait_snapshots(&rig.outbox, 2).await;
        assert_eq!(shots[1]["case_no"], "C-3");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rig.cameras.get("broken").unwrap().state().failures < 2 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cases = bodies(&rig.outbox, "case");
        assert_eq!(cases.len(), 3, "every case recorded");
    }

    fn punch_with(photo: Option<&str>) -> EventDraft {
        let mut body =
            json!({"staff_id": "0451", "direction": "in", "method": "kiosk", "source": "kiosk"});
        if let Some(p) = photo {
            body["photo"] = json!(p);
        }
        EventDraft::new("punch", "2026-11-23T08:29:01.120+08:00", &body).unwrap()
    }
}
