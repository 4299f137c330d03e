//! The blob uploader: sends spooled snapshots to the hub's blob store, oldest first, over HTTP
//! (PROTOCOL.md "Blobs"; `sunlight_protocol::blob`).
//!
//! For each image not uploaded yet it asks `HEAD {api}/api/v1/blobs/{sha256}` (200: the hub has it,
//! nothing to send), else `PUT`s the JPEG, signed by the box's device key over
//! [`blob::put_message`] in the `x-sunlight-*` headers. 200 or 201 (or 409: the hub holds that
//! name already) marks the image uploaded in the spool index; a 5xx or a connection error backs off
//! and tries again (the index is durable, so a restart resumes where it stopped); another 4xx is
//! logged with an alarm and the image is set aside for an hour, kept on disk.
//!
//! Events go first: uploads wait while more than `snapshots.upload_max_backlog` events wait for the
//! hub's ack, and the body is paced by a [`TokenBucket`] to `snapshots.upload_bytes_per_sec`. The
//! uploader is a task of its own and never touches the outbox writer except to mark what it sent.

use crate::clock::Clock;
use crate::error::Error;
use crate::health::{Alarm, Alarms};
use crate::outbox::{Outbox, now_ms};
use crate::spool::{Pending, Spool, sha256_hex};
use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sunlight_protocol::{DeviceKey, blob};

/// Bytes handed to the connection at a time.
const CHUNK: usize = 16 * 1024;
/// An image the hub refused (4xx) is tried again after this long.
const REFUSED_RETRY_MS: i64 = 3600 * 1000;
/// How often an idle uploader looks for new images.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What status shows about uploads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadState {
    /// The hub's API (`hub.api`); `None`: images stay in the spool.
    pub api: Option<String>,
    /// What the uploader does now: `idle`, `uploading`, `waiting for events`, `backing off`, ...
    pub doing: String,
    /// Unix ms of the last image the hub confirmed.
    pub last_upload_ms: Option<i64>,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

pub type SharedUpload = Arc<Mutex<UploadState>>;

/// A token bucket: `rate` bytes per second on average, bursts of `burst` bytes at most.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` bytes' worth; returns how long to wait before sending them. Taking more than the
    /// bucket holds runs a debt that the wait pays off.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// How one upload ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The hub has it.
    Done { sent: bool },
    /// Refused for good (a 4xx): set aside.
    Refused(String),
    /// The file is gone or damaged.
    Missing,
}

/// Sends the spool to the hub.
pub struct Uploader {
    pub api: String,
    pub site: String,
    pub device: String,
    pub key: Arc<DeviceKey>,
    pub clock: Clock,
    pub spool: Spool,
    pub outbox: Outbox,
    pub alarms: Alarms,
    pub state: SharedUpload,
    /// Bytes per second; 0: no cap.
    pub rate: u64,
    /// Uploads wait while more events than this wait for the hub's ack.
    pub max_backlog: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub client: reqwest::Client,
}

/// The HTTP client for the hub's API: with `hub.ca_file` (the county CA), an https:// hub must
/// show a certificate of that CA and no other (the system's roots are not used for the hub); this
/// box's certificate is offered when configured.
pub fn client(config: &crate::config::HubConfig) -> Result<reqwest::Client, Error> {
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
    };
    let bad = |what: &str, e: reqwest::Error| Error::Config {
        path: "agent config".into(),
        detail: format!("{what}: {e}"),
    };
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(ca) = &config.ca_file {
        let certs =
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| bad("hub.ca_file", e))?;
        if certs.is_empty() {
            return Err(Error::Config {
                path: "agent config".into(),
                detail: format!(
                    "hub.ca_file {} holds no PEM certificate (give the county CA, ca.pem)",
                    ca.display()
                ),
            });
        }
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        let mut pem = read(cert)?;
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(&read(key)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|e| bad("hub.cert_file / key_file", e))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| bad("the hub's HTTP client", e))
}

impl Uploader {
    fn set(&self, f: impl FnOnce(&mut UploadState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    fn failed(&self, error: &str) {
        self.set(|s| {
            s.last_error = Some(error.to_owned());
            s.last_error_ms = Some(now_ms());
        });
    }

    /// Uploads forever.
    pub async fn run(self) {
        // One bucket for every image: the cap holds across them.
        let bucket = Arc::new(Mutex::new(TokenBucket::new(
            self.rate,
            (CHUNK as u64).max(self.rate / 4),
            Instant::now(),
        )));
        let mut attempt = 0u32;
        loop {
            // Events first.
            let outbox = self.outbox.clone();
            let backlog = tokio::task::spawn_blocking(move || outbox.backlog()).await;
            if let Ok(Ok(b)) = backlog {
                if b.events > self.max_backlog {
                    self.set(|s| {
                        s.doing = format!("waiting: {} events go to the hub first", b.events)
                    });
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            }
            let spool = self.spool.clone();
            let next = tokio::task::spawn_blocking(move || spool.next_upload(now_ms())).await;
            let pending = match next {
                Ok(Ok(Some(p))) => p,
                Ok(Ok(None)) => {
                    self.set(|s| s.doing = "idle: nothing to upload".into());
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the spool index");
                    tokio::time::sleep(IDLE_POLL * 5).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the spool index");
                    tokio::time::sleep(IDLE_POLL * 5).await;
                    continue;
                }
            };
            self.set(|s| s.doing = format!("uploading {}", pending.sha256));
            match self.upload(&pending, &bucket).await {
                Ok(Outcome::Done { sent }) => {
                    attempt = 0;
                    if let Err(e) = self.spool.mark_uploaded(&pending.sha256).await {
                        tracing::warn!(sha256 = %pending.sha256, error = %e, "uploaded, but not yet marked; it is checked again (HEAD) next time");
                        tokio::time::sleep(IDLE_POLL).await;
                        continue;
                    }
                    tracing::info!(sha256 = %pending.sha256, bytes = pending.bytes, sent, "snapshot uploaded");
                    self.set(|s| {
                        s.last_upload_ms = Some(now_ms());
                        s.uploaded += 1;
                        if sent {
                            s.uploaded_bytes += pending.bytes;
                        }
                    });
                }
                Ok(Outcome::Refused(why)) => {
                    attempt = 0;
                    self.failed(&why);
                    self.alarms.raise(Alarm {
                        what: "snapshot_upload_refused".into(),
                        at: self.clock.now_rfc3339(),
                        detail: format!(
                            "the hub refused snapshot {}: {why}; it stays in the spool and is tried again in an hour",
                            pending.sha256
                        ),
                        camera_id: None,
                        count: Some(1),
                    });
                    let retry = now_ms() + REFUSED_RETRY_MS;
                    if let Err(e) = self.spool.mark_refused(&pending.sha256, retry).await {
                        tracing::warn!(error = %e, "could not set the refused snapshot aside");
                        tokio::time::sleep(IDLE_POLL * 5).await;
                    }
                }
                Ok(Outcome::Missing) => {
                    if let Err(e) = self.spool.forget_missing(&pending.sha256).await {
                        tracing::warn!(error = %e, "could not forget a missing snapshot");
                        tokio::time::sleep(IDLE_POLL * 5).await;
                    }
                }
                Err(e) => {
                    let wait = super::backoff(attempt, self.backoff_min_ms, self.backoff_max_ms);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sha256 = %pending.sha256, error = %e, retry_in_ms = wait.as_millis() as u64, "snapshot upload failed; retrying");
                    self.failed(&e);
                    self.set(|s| s.doing = format!("backing off after: {e}"));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One image: HEAD, then PUT if the hub lacks it. `Err`: try again later.
    async fn upload(
        &self,
        p: &Pending,
        bucket: &Arc<Mutex<TokenBucket>>,
    ) -> Result<Outcome, String> {
        let bytes = match tokio::fs::read(&p.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Missing),
            Err(e) => return Err(format!("reading {}: {e}", p.path.display())),
        };
        if sha256_hex(&bytes) != p.sha256 {
            return Ok(Outcome::Missing);
        }
        let url = format!(
            "{}/api/v1/blobs/{}",
            self.api.trim_end_matches('/'),
            p.sha256
        );
        let head = self
            .client
            .head(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("HEAD {url}: {}", chain(&e)))?;
        if head.status() == StatusCode::OK {
            return Ok(Outcome::Done { sent: false });
        }
        if head.status().is_server_error() {
            return Err(format!("HEAD {url}: HTTP {}", head.status()));
        }
        let time = self.clock.now_rfc3339();
        let message = blob::put_message(&p.sha256, &self.site, &self.device, &time);
        let signature = base64::engine::general_purpose::STANDARD.encode(self.key.sign(&message));
        let len = bytes.len();
        // Long enough for the body at the capped rate, plus a margin.
        let timeout = Duration::from_secs(60)
            + if self.rate > 0 {
                Duration::from_secs_f64(len as f64 / self.rate as f64)
            } else {
                Duration::ZERO
            };
        let body = if self.rate == 0 {
            reqwest::Body::from(bytes)
        } else {
            paced(bytes, bucket.clone())
        };
        let response = self
            .client
            .put(&url)
            .timeout(timeout)
            .header(CONTENT_TYPE, "image/jpeg")
            .header(CONTENT_LENGTH, len)
            .header(blob::SITE_HEADER, &self.site)
            .header(blob::DEVICE_HEADER, &self.device)
            .header(blob::TIME_HEADER, &time)
            .header(blob::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("PUT {url}: {}", chain(&e)))?;
        let status = response.status();
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        match status {
            StatusCode::OK | StatusCode::CREATED | StatusCode::CONFLICT => {
                Ok(Outcome::Done { sent: true })
            }
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(format!("PUT {url}: HTTP {s} {text}"))
            }
            s => Ok(Outcome::Refused(format!("HTTP {s} {text}"))),
        }
    }
}

/// The error and its sources, for the log (reqwest's own message alone says little).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The body sent in chunks, each after the bucket allows it.
fn paced(bytes: Vec<u8>, bucket: Arc<Mutex<TokenBucket>>) -> reqwest::Body {
    let bytes = bytes::Bytes::from(bytes);
    let stream = futures_util::stream::unfold(0usize, move |offset| {
        let (bytes, bucket) = (bytes.clone(), bucket.clone());
        async move {
            if offset >= bytes.len() {
                return None;
            }
            let end = (offset + CHUNK).min(bytes.len());
            let wait = bucket
                .lock()
                .map(|mut b| b.take((end - offset) as u64, Instant::now()))
                .unwrap_or_default();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Some((Ok::<_, std::io::Error>(bytes.slice(offset..end)), end))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces_to_the_rate() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 1000 bytes/s, bursts of 500.
        let mut b = TokenBucket::new(1000, 500, t0);
        assert_eq!(b.take(500, at(0)), Duration::ZERO, "a full bucket");
        assert_eq!(
            b.take(250, at(0)),
            Duration::from_millis(250),
            "then a debt to wait off"
        );
        // After waiting it off, the next 250 wait 250 ms again: 1000 bytes/s.
        assert_eq!(b.take(250, at(250)), Duration::from_millis(250));
        // A long pause refills only up to the burst.
        assert_eq!(b.take(500, at(10_000)), Duration::ZERO);
        assert_eq!(b.take(1, at(10_000)), Duration::from_millis(1));
        // Over any stretch the bytes let through stay near rate × time + burst.
        let mut b = TokenBucket::new(4096, 4096, t0);
        let mut now = t0;
        let mut sent = 0u64;
        for _ in 0..100 {
            let wait = b.take(1024, now);
            now += wait;
            sent += 1024;
        }
        let elapsed = now.duration_since(t0).as_secs_f64();
        let allowed = 4096.0 * elapsed + 4096.0;
        assert!(sent as f64 <= allowed + 1.0, "{sent} bytes in {elapsed} s");
        assert!(
            sent as f64 >= allowed - 1024.0 - 1.0,
            "{sent} bytes in {elapsed} s"
        );
    }
}

#[cfg(test)]
mod hub_tests {
    //! The uploader against a fake hub blob store that checks what `sunlight_protocol::blob` asks.
    use super::*;
    use crate::health::Alarms;
    use crate::spool::{BlobRow, Spool};
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, Method, StatusCode as Code};
    use std::collections::{HashMap, HashSet};
    use sunlight_protocol::{DeviceId, PublicKey, SiteId};

    #[derive(Default)]
    struct Store {
        blobs: HashMap<String, Vec<u8>>,
        puts: u32,
        heads: u32,
        /// Answer this many requests with 503 first.
        down: u32,
        /// Refuse these with 400.
        refuse: HashSet<String>,
        bad_signatures: u32,
    }

    type Shared = Arc<Mutex<(Store, PublicKey)>>;

    async fn blob(
        State(hub): State<Shared>,
        method: Method,
        Path(sha): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Code {
        let mut guard = hub.lock().unwrap();
        let (store, key) = &mut *guard;
        if store.down > 0 {
            store.down -= 1;
            return Code::SERVICE_UNAVAILABLE;
        }
        if method == Method::HEAD {
            store.heads += 1;
            return if store.blobs.contains_key(&sha) {
                Code::OK
            } else {
                Code::NOT_FOUND
            };
        }
        store.puts += 1;
        if store.refuse.contains(&sha) {
            return Code::BAD_REQUEST;
        }
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let message = blob::put_message(
            &sha,
            &h(blob::SITE_HEADER),
            &h(blob::DEVICE_HEADER),
            &h(blob::TIME_HEADER),
        );
        let signature = base64::engine::general_purpose::STANDARD
            .decode(h(blob::SIGNATURE_HEADER))
            .unwrap_or_default();
        if !key.verify(&message, &signature) || h(blob::SITE_HEADER) != "suixian-shangshi" {
            store.bad_signatures += 1;
            return Code::FORBIDDEN;
        }
        if sha256_hex(&body) != sha || h("content-type") != "image/jpeg" {
            return Code::UNPROCESSABLE_ENTITY;
        }
        let existed = store.blobs.insert(sha, body.to_vec()).is_some();
        if existed { Code::OK } else { Code::CREATED }
    }

    async fn fake_hub(key: PublicKey, store: Store) -> (String, Shared) {
        let shared: Shared = Arc::new(Mutex::new((store, key)));
        let app = Router::new()
            .route("/api/v1/blobs/{sha}", axum::routing::put(blob).head(blob))
            .layer(axum::extract::DefaultBodyLimit::max(blob::MAX_BLOB_BYTES))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), shared)
    }

    struct Box_ {
        _dir: tempfile::TempDir,
        outbox: Outbox,
        spool: Spool,
        alarms: Alarms,
        raised: tokio::sync::mpsc::Receiver<Alarm>,
        key: Arc<DeviceKey>,
    }

    async fn a_box() -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("outbox.db"),
            &SiteId::new("suixian-shangshi").unwrap(),
            &DeviceId::new("box-01").unwrap(),
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
        Box_ {
            _dir: dir,
            outbox,
            spool,
            alarms,
            raised,
            key: Arc::new(DeviceKey::generate().unwrap()),
        }
    }

    async fn spool_image(b: &Box_, n: u64, size: usize) -> String {
        let mut jpeg = crate::capture::camera::jpeg::generate(16, 16, n, &n.to_string());
        jpeg.resize(size.max(jpeg.len()), 0);
        let s = b.spool.write(jpeg).await.unwrap();
        let row = BlobRow {
            sha256: s.sha256.clone(),
            camera: "w1".into(),
            bytes: s.bytes,
            taken_at: "2026-11-23T09:00:00+08:00".into(),
        };
        let body = serde_json::json!({"camera_id": "w1", "sha256": s.sha256, "bytes": s.bytes, "width": 16, "height": 16,
            "taken_at": row.taken_at, "trigger": "schedule"});
        let event = sunlight_protocol::EventDraft::new("snapshot", &row.taken_at, &body).unwrap();
        b.spool.add(row, event).await.unwrap();
        s.sha256
    }

    fn uploader(b: &Box_, api: &str, rate: u64, max_backlog: u64) -> (Uploader, SharedUpload) {
        let state: SharedUpload = Default::default();
        (
            Uploader {
                api: api.to_owned(),
                site: "suixian-shangshi".into(),
                device: "box-01".into(),
                key: b.key.clone(),
                clock: Clock::new(chrono_tz::Asia::Shanghai),
                spool: b.spool.clone(),
                outbox: b.outbox.clone(),
                alarms: b.alarms.clone(),
                state: state.clone(),
                rate,
                max_backlog,
                backoff_min_ms: 50,
                backoff_max_ms: 200,
                client: reqwest::Client::new(),
            },
            state,
        )
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_oldest_first_signed_skipping_what_the_hub_has_retrying_5xx_and_setting_4xx_aside()
     {
        let mut b = a_box().await;
        let first = spool_image(&b, 1, 0).await;
        let known = spool_image(&b, 2, 0).await;
        let refused = spool_image(&b, 3, 0).await;
        let last = spool_image(&b, 4, 0).await;
        let mut store = Store {
            down: 3,
            ..Store::default()
        };
        store.blobs.insert(known.clone(), b"already there".to_vec());
        store.refuse.insert(refused.clone());
        let (api, hub) = fake_hub(b.key.public(), store).await;
        let (up, state) = uploader(&b, &api, 0, u64::MAX);
        let task = tokio::spawn(up.run());
        let spool = b.spool.clone();
        until("every image uploaded or set aside", || {
            let f = spool.figures().unwrap();
            f.waiting == 1 && f.refused == 1
        })
        .await;
        task.abort();
        let guard = hub.lock().unwrap();
        let (store, _) = &*guard;
        assert_eq!(store.bad_signatures, 0);
        assert_eq!(store.blobs.len(), 3);
        assert_eq!(sha256_hex(&store.blobs[&first]), first);
        assert_eq!(sha256_hex(&store.blobs[&last]), last);
        assert_eq!(
            store.blobs[&known], b"already there",
            "HEAD said it was there: not sent"
        );
        assert_eq!(store.puts, 3, "first, refused, last");
        drop(guard);
        let f = b.spool.figures().unwrap();
        assert_eq!((f.uploaded_total, f.waiting, f.refused), (3, 1, 1));
        let alarm = b.raised.try_recv().unwrap();
        assert_eq!(alarm.what, "snapshot_upload_refused");
        assert!(
            alarm.detail.contains(&refused) && alarm.detail.contains("400"),
            "{}",
            alarm.detail
        );
        let s = state.lock().unwrap().clone();
        assert_eq!(s.uploaded, 3);
        assert!(s.last_error.is_some() && s.last_upload_ms.is_some());
        // The refused one stays on disk.
        assert!(b.spool.path_of(&refused).exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_wait_for_the_event_backlog_and_keep_to_the_bandwidth_cap() {
        let b = a_box().await;
        // Two images of 96 KiB each, and an event backlog of 2 (the snapshot events).
        spool_image(&b, 1, 96 * 1024).await;
        spool_image(&b, 2, 96 * 1024).await;
        let (api, hub) = fake_hub(b.key.public(), Store::default()).await;
        let (up, state) = uploader(&b, &api, 128 * 1024, 0);
        let task = tokio::spawn(up.run());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(hub.lock().unwrap().0.puts, 0, "events first");
        assert!(
            state
                .lock()
                .unwrap()
                .doing
                .contains("events go to the hub first")
        );
        // The hub acknowledges the events: uploads start, paced to 128 KiB/s.
        b.outbox.ack(2).await.unwrap();
        let started = Instant::now();
        let spool = b.spool.clone();
        until("both uploaded", || spool.figures().unwrap().waiting == 0).await;
        let took = started.elapsed();
        task.abort();
        // 192 KiB at 128 KiB/s with a 32 KiB burst: 1.25 s at least.
        assert!(took >= Duration::from_millis(1200), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert_eq!(hub.lock().unwrap().0.blobs.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_file_is_forgotten_with_an_alarm() {
        let mut b = a_box().await;
        let gone = spool_image(&b, 1, 0).await;
        std::fs::remove_file(b.spool.path_of(&gone)).unwrap();
        let (api, _hub) = fake_hub(b.key.public(), Store::default()).await;
        let (up, _) = uploader(&b, &api, 0, u64::MAX);
        let task = tokio::spawn(up.run());
        let spool = b.spool.clone();
        until("the row forgotten", || spool.figures().unwrap().images == 0).await;
        task.abort();
        assert_eq!(b.raised.try_recv().unwrap().what, "snapshot_file_missing");
    }
}
