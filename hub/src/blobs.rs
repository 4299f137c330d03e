//! Snapshot images at the hub (issue 5): a content-addressed blob store behind a trait (a local
//! directory by default; an S3-compatible store is the scale option, see docs/cameras.md), the
//! signed upload `PUT /api/v1/blobs/{sha256}` (PROTOCOL.md "Blobs", `sunlight_protocol::blob`), the
//! camera API, the "snapshot now" round trip, and retention.

// The HTTP helpers here return the refusal itself as their error: an axum `Response` (large, but
// built once per refused request, on a path where its size does not matter).
#![allow(clippy::result_large_err)]

use crate::store::{self, Reader, Writer};
use crate::web::ApiState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use sunlight_protocol::blob as wire;

/// Where image bytes live. Keys are lowercase hex SHA-256 of the bytes, or, for an image's
/// thumbnail, the key [`thumb_key`] derives from the image's.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `sha256`; `false` if it was already there.
    fn put(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<bool>;
    fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>>;
    fn has(&self, sha256: &str) -> bool;
    /// Removes a blob; `false` if it was not there.
    fn remove(&self, sha256: &str) -> std::io::Result<bool>;
}

/// Blobs as files: `<root>/ab/<sha256>.jpg`, written to a temporary file, synced, then renamed.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: PathBuf) -> std::io::Result<LocalDir> {
        std::fs::create_dir_all(&root)?;
        Ok(LocalDir { root })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(format!("{sha256}.jpg"))
    }
}

impl BlobStore for LocalDir {
    fn put(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.path(sha256);
        if path.exists() {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(true)
    }

    fn get(&self, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(sha256)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn has(&self, sha256: &str) -> bool {
        self.path(sha256).exists()
    }

    fn remove(&self, sha256: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(sha256)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, bytes INTEGER NOT NULL,
    received_ms INTEGER NOT NULL, removed_ms INTEGER);
CREATE INDEX IF NOT EXISTS blobs_by_age ON blobs (site, received_ms) WHERE removed_ms IS NULL;
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL, camera_id TEXT NOT NULL,
    sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    taken_at TEXT NOT NULL, taken_ms INTEGER NOT NULL, trigger TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_by_camera ON snapshots (site, camera_id, taken_ms);
CREATE TABLE IF NOT EXISTS blob_cleanups (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, site TEXT NOT NULL, removed INTEGER NOT NULL,
    bytes INTEGER NOT NULL, older_than_days INTEGER NOT NULL);
";

/// The site whose box uploaded the image `sha256`, if the hub has it (thumbnails are asked for by
/// their image's hash).
pub fn site_of(conn: &Connection, sha256: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT site FROM blobs WHERE sha256 = ?1 AND removed_ms IS NULL")?
        .query_row([sha256], |r| r.get(0))
        .optional()
}

/// Records a `snapshot` event (the image may arrive before or after it).
pub fn apply_snapshot(
    conn: &Connection,
    site: &str,
    device: &str,
    body: &str,
) -> rusqlite::Result<()> {
    let Ok(s) = serde_json::from_str::<sunlight_protocol::event::bodies::Snapshot>(body) else {
        return Ok(());
    };
    let raw: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let taken_ms = chrono::DateTime::parse_from_rfc3339(&s.taken_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| store::now_ms());
    conn.prepare_cached(
        "INSERT INTO snapshots (site, device, camera_id, sha256, bytes, width, height, taken_at, taken_ms, trigger, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        site,
        device,
        s.camera_id,
        s.sha256.to_ascii_lowercase(),
        s.bytes as i64,
        s.width,
        s.height,
        s.taken_at,
        taken_ms,
        raw["trigger"].as_str().unwrap_or(""),
        store::now_ms()
    ])?;
    // A punch photo taken too late to ride on its punch names the clerk: it goes with that clerk's
    // punch nearest in time (within two minutes) that has no photo yet.
    if let (Some("punch"), Some(staff)) = (raw["trigger"].as_str(), raw["staff_id"].as_str()) {
        conn.prepare_cached(
            "UPDATE punches SET photo = ?1 WHERE id = (
                 SELECT id FROM punches WHERE site = ?2 AND staff_id = ?3 AND photo IS NULL
                   AND abs(julianday(at) - julianday(?4)) < 120.0 / 86400
                 ORDER BY abs(julianday(at) - julianday(?4)) LIMIT 1)",
        )?
        .execute(params![
            s.sha256.to_ascii_lowercase(),
            site,
            staff,
            s.taken_at
        ])?;
    }
    Ok(())
}

/// A snapshot as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView {
    pub site: String,
    pub device: String,
    pub camera_id: String,
    pub sha256: String,
    pub bytes: i64,
    pub width: u32,
    pub height: u32,
    pub taken_at: String,
    pub trigger: String,
    /// Seconds since it was taken (by the hub's clock).
    pub age_secs: i64,
    /// `uploaded` when the image is at the hub, `uploading` while only its event has arrived,
    /// `removed` after retention.
    pub image: &'static str,
    /// Where to fetch the image once uploaded.
    pub url: String,
}

fn snapshot_row(now_ms: i64) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<SnapshotView> {
    move |r| {
        let sha: String = r.get(3)?;
        let present: Option<i64> = r.get(10)?;
        let removed: Option<i64> = r.get(11)?;
        Ok(SnapshotView {
            site: r.get(0)?,
            device: r.get(1)?,
            camera_id: r.get(2)?,
            url: format!("/api/v1/blobs/{sha}"),
            sha256: sha,
            bytes: r.get(4)?,
            width: r.get(5)?,
            height: r.get(6)?,
            taken_at: r.get(7)?,
            age_secs: (now_ms - r.get::<_, i64>(8)?) / 1000,
            trigger: r.get(9)?,
            image: match (present, removed) {
                (Some(_), None) => "uploaded",
                (Some(_), Some(_)) => "removed",
                (None, _) => "uploading",
            },
        })
    }
}

const SNAPSHOT_COLUMNS: &str =
    "s.site, s.device, s.camera_id, s.sha256, s.bytes, s.width, s.height, s.taken_at,
    s.taken_ms, s.trigger, b.received_ms, b.removed_ms";

/// The latest snapshot of every camera (of one site, or all).
pub fn latest(conn: &Connection, site: Option<&str>) -> rusqlite::Result<Vec<SnapshotView>> {
    conn.prepare_cached(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s LEFT JOIN blobs b ON b.sha256 = s.sha256
         WHERE s.id IN (SELECT max(id) FROM snapshots WHERE (?1 IS NULL OR site = ?1) GROUP BY site, camera_id)
         ORDER BY s.site, s.camera_id"
    ))?
    .query_map([site], snapshot_row(store::now_ms()))?
    .collect()
}

/// A camera's snapshots between two times (ms since the epoch), newest first.
pub fn history(
    conn: &Connection,
    site: &str,
    camera: &str,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<SnapshotView>> {
    conn.prepare_cached(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM snapshots s LEFT JOIN blobs b ON b.sha256 = s.sha256
         WHERE s.site = ?1 AND s.camera_id = ?2 AND s.taken_ms BETWEEN ?3 AND ?4
         ORDER BY s.taken_ms DESC LIMIT 500"
    ))?
    .query_map(
        params![site, camera, from_ms, to_ms],
        snapshot_row(store::now_ms()),
    )?
    .collect()
}

/// Removes images older than the retention of their site; records and returns what was removed
/// per site. Snapshot events stay (they are facts); their image shows as `removed`.
pub fn clean(
    conn: &Connection,
    blobs: &dyn BlobStore,
    retention: &crate::config::BlobConfig,
    now_ms: i64,
) -> rusqlite::Result<Vec<(String, u64, u64)>> {
    let sites: Vec<String> = conn
        .prepare_cached("SELECT DISTINCT site FROM blobs WHERE removed_ms IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut report = Vec::new();
    for site in sites {
        let days = retention.days_for(&site);
        let cutoff = now_ms - i64::from(days) * 86_400_000;
        let old: Vec<(String, i64)> = conn
            .prepare_cached(
                "SELECT sha256, bytes FROM blobs WHERE site = ?1 AND removed_ms IS NULL AND received_ms < ?2",
            )?
            .query_map(params![site, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (mut n, mut bytes) = (0u64, 0u64);
        for (sha, size) in old {
            if let Err(e) = blobs.remove(&thumb_key(&sha)) {
                tracing::warn!(%sha, error = %e, "could not remove an expired image's thumbnail");
            }
            match blobs.remove(&sha) {
                Ok(_) => {
                    conn.execute(
                        "UPDATE blobs SET removed_ms = ?2 WHERE sha256 = ?1",
                        params![sha, now_ms],
                    )?;
                    n += 1;
                    bytes += size as u64;
                }
                Err(e) => tracing::error!(%sha, error = %e, "could not remove an expired image"),
            }
        }
        if n > 0 {
            conn.execute(
                "INSERT INTO blob_cleanups (at_ms, site, removed, bytes, older_than_days) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms, site, n as i64, bytes as i64, days],
            )?;
            tracing::info!(%site, removed = n, bytes, days, "expired snapshot images removed");
            report.push((site, n, bytes));
        }
    }
    Ok(report)
}

/// Runs the retention cleaner once an hour on its own thread.
pub fn spawn_cleaner(
    mut writer: Writer,
    blobs: Arc<dyn BlobStore>,
    config: Arc<crate::config::HubConfig>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("blob-cleaner".into())
        .spawn(move || {
            loop {
                let result =
                    writer.run(|tx| clean(tx, blobs.as_ref(), &config.blobs, store::now_ms()));
                if let Err(e) = result {
                    tracing::error!(error = %e, "blob retention failed; retrying in an hour");
                }
                std::thread::sleep(Duration::from_secs(3600));
            }
        })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Thumbnails for the wall

/// Width of a thumbnail in pixels (the height keeps the image's proportions).
pub const THUMB_WIDTH: u32 = 320;
/// JPEG quality of thumbnails.
const THUMB_QUALITY: u8 = 80;
/// Images with more pixels than this are not decoded for a thumbnail (16 Mpx: 48 MiB of RGB).
pub const MAX_THUMB_SOURCE_PIXELS: u64 = 16 * 1024 * 1024;

/// Why there is no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("no such image")]
    NotFound,
    #[error("the image cannot be made into a thumbnail: {0}")]
    BadImage(String),
    #[error("the blob store: {0}")]
    Store(#[from] std::io::Error),
}

/// The blob store key of image `sha256`'s thumbnail: the SHA-256 of a name that no JPEG can
/// have (an upload's key must be the SHA-256 of its body, and bodies start with FF D8 FF), so it
/// never meets an image's key.
pub fn thumb_key(sha256: &str) -> String {
    hex::encode(Sha256::digest(format!(
        "sunlight thumbnail v1 {THUMB_WIDTH} {sha256}"
    )))
}

/// Thumbnails are made one at a time: one decoded image in memory at most, and two first requests
/// for the same thumbnail do not race to store it.
static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Image `sha256`'s thumbnail, [`THUMB_WIDTH`] pixels wide: made on the first request and kept in
/// the blob store under [`thumb_key`]. An image no wider than that is its own thumbnail.
pub fn thumbnail(blobs: &dyn BlobStore, sha256: &str) -> Result<Vec<u8>, ThumbError> {
    let key = thumb_key(sha256);
    if let Some(thumb) = blobs.get(&key)? {
        return Ok(thumb);
    }
    let _one = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(thumb) = blobs.get(&key)? {
        return Ok(thumb);
    }
    let image = blobs.get(sha256)?.ok_or(ThumbError::NotFound)?;
    let Some(thumb) = make_thumbnail(&image)? else {
        return Ok(image);
    };
    blobs.put(&key, &thumb)?;
    Ok(thumb)
}

/// Decodes a JPEG, scales it to [`THUMB_WIDTH`] pixels wide and encodes it again; `None` when it
/// is no wider than that already.
pub fn make_thumbnail(jpeg: &[u8]) -> Result<Option<Vec<u8>>, ThumbError> {
    use image::ImageDecoder;
    let bad = |e: image::ImageError| ThumbError::BadImage(e.to_string());
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg)).map_err(bad)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_THUMB_SOURCE_PIXELS {
        return Err(ThumbError::BadImage(format!(
            "{width}×{height} pixels is more than the {MAX_THUMB_SOURCE_PIXELS} a thumbnail is made from"
        )));
    }
    if width <= THUMB_WIDTH {
        return Ok(None);
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_THUMB_SOURCE_PIXELS * 4);
    decoder.set_limits(limits).map_err(bad)?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(bad)?;
    let thumb_height =
        (u64::from(height) * u64::from(THUMB_WIDTH) / u64::from(width)).max(1) as u32;
    let small = image.thumbnail_exact(THUMB_WIDTH, thumb_height);
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, THUMB_QUALITY);
    match small {
        image::DynamicImage::ImageLuma8(grey) => encoder.encode_image(&grey),
        other => encoder.encode_image(&other.to_rgb8()),
    }
    .map_err(bad)?;
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------
// HTTP

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/v1/blobs/{sha256}",
            get(get_blob)
                .put(put_blob)
                .layer(DefaultBodyLimit::max(wire::MAX_BLOB_BYTES)),
        )
        .route("/api/v1/cameras", get(cameras))
        .route(
            "/api/v1/cameras/{site}/{camera_id}/snapshots",
            get(camera_history),
        )
        .route(
            "/api/v1/cameras/{site}/{camera_id}/snapshot",
            post(snapshot_now),
        )
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// Checks the upload's signature against the registered key of the box it names.
fn authenticate(
    reader: &Reader,
    headers: &HeaderMap,
    sha256: &str,
) -> Result<(String, String), Response> {
    authenticate_signed(reader, headers, |site, device, time| {
        wire::put_message(sha256, site, device, time)
    })
}

/// Checks a box's request signed by its device key (the headers of `sunlight_protocol::blob`) over
/// `message(site, device, time)`; returns the box's site and device.
pub(crate) fn authenticate_signed(
    reader: &Reader,
    headers: &HeaderMap,
    message: impl Fn(&str, &str, &str) -> Vec<u8>,
) -> Result<(String, String), Response> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, format!("missing {name} header")))
    };
    let (site, device, time, sig) = (
        h(wire::SITE_HEADER)?,
        h(wire::DEVICE_HEADER)?,
        h(wire::TIME_HEADER)?,
        h(wire::SIGNATURE_HEADER)?,
    );
    let signed_at = chrono::DateTime::parse_from_rfc3339(&time)
        .map_err(|_| refuse(StatusCode::UNAUTHORIZED, "x-sunlight-time is not RFC 3339"))?;
    let skew = (chrono::Utc::now().timestamp() - signed_at.timestamp()).abs();
    if skew > wire::MAX_SKEW_SECS {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            format!("signed {skew} s away from the hub's clock; fix the box's clock"),
        ));
    }
    let key: Option<String> = reader
        .run(|c| {
            c.query_row(
                "SELECT pubkey FROM devices WHERE site = ?1 AND device = ?2 AND revoked_ms IS NULL",
                params![site, device],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let key = key
        .and_then(|k| sunlight_protocol::PublicKey::from_base64(&k))
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                format!("{site}/{device} is not a registered box"),
            )
        })?;
    let sig = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sig.as_bytes())
        .map_err(|_| refuse(StatusCode::UNAUTHORIZED, "the signature is not base64"))?;
    if !key.verify(&message(&site, &device, &time), &sig) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "bad signature"));
    }
    Ok((site, device))
}

/// How long one upload's body may take to arrive once it is let in (a box capped at 1 Mbit/s sends
/// the largest image in under 90 s).
const PUT_BODY_TIMEOUT: Duration = Duration::from_secs(300);
/// What a box over the upload cap is told to wait, in seconds.
const PUT_RETRY_AFTER_SECS: u64 = 10;

/// Bodies up to this size are read and dropped before a refusal is sent, so that the client (a box
/// whose clock is off, say) reads the reason instead of a broken pipe; larger ones are answered at
/// once, unread.
const DRAIN_REFUSED_BYTES: u64 = 2 * 1024 * 1024;

/// A refusal of an upload that was not let in: a small body (declared at most
/// [`DRAIN_REFUSED_BYTES`]) is read and dropped first, within a few seconds; anything larger or
/// undeclared is not read here (the server drops the connection after the answer).
async fn refused_unread(
    refusal: Response,
    declared: Option<u64>,
    body: axum::body::Body,
) -> Response {
    if declared.is_some_and(|n| n <= DRAIN_REFUSED_BYTES) {
        // Whatever comes of it (a client that stops sending, a broken connection), the answer is
        // the same refusal.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            axum::body::to_bytes(body, DRAIN_REFUSED_BYTES as usize),
        )
        .await;
    }
    refusal
}

/// `PUT /api/v1/blobs/{sha256}`: the box's signature (over the digest in the path, its site and
/// device, and the time: all in the path and headers) is checked before a byte of the body is read,
/// so a stranger's upload is answered 401 at once, whatever its size. Then a permit of
/// `[blobs] max_concurrent_puts` (none free: 503 with `Retry-After`), then the body, bounded by
/// [`wire::MAX_BLOB_BYTES`] and [`PUT_BODY_TIMEOUT`].
async fn put_blob(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if !wire::is_sha256_hex(&sha256) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the path must be the lowercase hex SHA-256 of the body",
        );
    }
    let (reader, h, digest) = (state.reader.clone(), headers.clone(), sha256.clone());
    let who = tokio::task::spawn_blocking(move || {
        let r = reader
            .lock()
            .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "reader poisoned"))?;
        authenticate(&r, &h, &digest)
    })
    .await;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (site, device) = match who {
        Ok(Ok(who)) => who,
        Ok(Err(refusal)) => return refused_unread(refusal, declared, body).await,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an image may be at most {} bytes", wire::MAX_BLOB_BYTES),
        )
    };
    if declared.is_some_and(|n| n > wire::MAX_BLOB_BYTES as u64) {
        return refused_unread(too_large(), declared, body).await;
    }
    let Ok(_permit) = state.blob_puts.clone().try_acquire_owned() else {
        tracing::info!(%site, %device, "image upload deferred: the hub is reading as many as it may");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, PUT_RETRY_AFTER_SECS.to_string())],
            axum::Json(json!({
                "error": format!("the hub is receiving as many images as it may at once; try again in {PUT_RETRY_AFTER_SECS} s")
            })),
        )
            .into_response();
    };
    let body = match tokio::time::timeout(
        PUT_BODY_TIMEOUT,
        axum::body::to_bytes(body, wire::MAX_BLOB_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                return too_large();
            }
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the upload broke off: {e}"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the image did not arrive within {} s",
                    PUT_BODY_TIMEOUT.as_secs()
                ),
            );
        }
    };
    let computed = hex::encode(Sha256::digest(&body));
    if computed != sha256 {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "the body's SHA-256 is {computed}, not {sha256}: the upload was damaged, send it again"
            ),
        );
    }
    if !body.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is not a JPEG image",
        );
    }
    let (writer, blobs) = (state.writer.clone(), state.blobs.clone());
    let result = tokio::task::spawn_blocking(move || {
        let created = blobs
            .put(&sha256, &body)
            .map_err(|e| refuse(StatusCode::INSUFFICIENT_STORAGE, format!("storing the image: {e}")))?;
        let mut w = writer.lock().map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "writer poisoned"))?;
        w.run(|tx| {
            tx.execute(
                "INSERT INTO blobs (sha256, site, device, bytes, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sha256) DO UPDATE SET removed_ms = NULL",
                params![sha256, site, device, body.len() as i64, store::now_ms()],
            )
        })
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok::<_, Response>(created)
    })
    .await;
    match result {
        Ok(Ok(true)) => {
            (StatusCode::CREATED, axum::Json(json!({ "stored": true }))).into_response()
        }
        Ok(Ok(false)) => (
            StatusCode::OK,
            axum::Json(json!({ "stored": true, "already": true })),
        )
            .into_response(),
        Ok(Err(r)) => r,
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Other parameters (a browser's cache-buster) are ignored, as before thumbnails.
#[derive(Deserialize)]
struct BlobQuery {
    /// `thumb=1`: the image's thumbnail ([`thumbnail`]) instead of the image.
    #[serde(default)]
    thumb: u8,
}

/// The image, or with `?thumb=1` its thumbnail (HEAD answers whether the hub has it).
async fn get_blob(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    Query(q): Query<BlobQuery>,
) -> Response {
    if !wire::is_sha256_hex(&sha256) {
        return refuse(StatusCode::BAD_REQUEST, "not a SHA-256");
    }
    let blobs = state.blobs.clone();
    if q.thumb != 0 {
        return match tokio::task::spawn_blocking(move || thumbnail(blobs.as_ref(), &sha256)).await {
            Ok(Ok(bytes)) => (
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (
                        header::CACHE_CONTROL,
                        "private, max-age=31536000, immutable",
                    ),
                ],
                bytes,
            )
                .into_response(),
            Ok(Err(ThumbError::NotFound)) => refuse(
                StatusCode::NOT_FOUND,
                "no such image (not uploaded yet, or removed after retention)",
            ),
            Ok(Err(e @ ThumbError::BadImage(_))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
            Ok(Err(e @ ThumbError::Store(_))) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
            Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    match tokio::task::spawn_blocking(move || blobs.get(&sha256)).await {
        Ok(Ok(Some(bytes))) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (
                    header::CACHE_CONTROL,
                    "private, max-age=31536000, immutable",
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => refuse(
            StatusCode::NOT_FOUND,
            "no such image (not uploaded yet, or removed after retention)",
        ),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraQuery {
    site: Option<String>,
    /// RFC 3339; default a day ago.
    from: Option<String>,
    /// RFC 3339; default now.
    to: Option<String>,
    /// Seconds `POST .../snapshot` waits for the new image (default 15, at most 60).
    wait: Option<u64>,
}

fn ms(text: Option<&str>, default: i64) -> Result<i64, Response> {
    match text {
        None => Ok(default),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{t:?} is not an RFC 3339 time"),
                )
            }),
    }
}

async fn read<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let reader = state.reader.clone();
    match tokio::task::spawn_blocking(move || {
        reader
            .lock()
            .map_err(|_| crate::Error::Closed)
            .and_then(|r| r.run(f))
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// The latest image of every camera, with its age and whether it is uploaded yet.
async fn cameras(State(state): State<ApiState>, Query(q): Query<CameraQuery>) -> Response {
    match read(&state, move |c| latest(c, q.site.as_deref())).await {
        Ok(s) => axum::Json(json!({ "cameras": s })).into_response(),
        Err(r) => r,
    }
}

async fn camera_history(
    State(state): State<ApiState>,
    Path((site, camera)): Path<(String, String)>,
    Query(q): Query<CameraQuery>,
) -> Response {
    let now = store::now_ms();
    let (from, to) = match (
        ms(q.from.as_deref(), now - 86_400_000),
        ms(q.to.as_deref(), now),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match read(&state, move |c| history(c, &site, &camera, from, to)).await {
        Ok(s) => axum::Json(json!({ "snapshots": s })).into_response(),
        Err(r) => r,
    }
}

/// Sends `snapshot` to the box that has this camera and waits for the new image: 200 with it, or
/// 202 with the command when it has not arrived in time (the box may be offline; the command waits
/// for it an hour).
async fn snapshot_now(
    State(state): State<ApiState>,
    caller: Option<axum::Extension<crate::apiauth::Caller>>,
    Path((site, camera)): Path<(String, String)>,
    Query(q): Query<CameraQuery>,
) -> Response {
    let by = caller.map_or_else(|| "api".to_owned(), |c| c.0.0.name.clone());
    let wait = Duration::from_secs(q.wait.unwrap_or(15).min(60));
    match request_snapshot(&state, &site, &camera, &by, wait).await {
        Ok(SnapshotRequest::Arrived { commands, snapshot }) => {
            axum::Json(json!({ "snapshot": snapshot, "commands": commands })).into_response()
        }
        Ok(SnapshotRequest::Waiting { commands }) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "commands": commands, "state": "waiting for the box" })),
        )
            .into_response(),
        Ok(SnapshotRequest::NoBox) => refuse(
            StatusCode::NOT_FOUND,
            format!("no box is registered for {site}"),
        ),
        Err(r) => r,
    }
}

/// What became of a "snapshot now".
pub enum SnapshotRequest {
    /// The new image is at the hub.
    Arrived {
        commands: Vec<String>,
        snapshot: Box<SnapshotView>,
    },
    /// The command is out (and waits an hour for the box); the image has not arrived yet.
    Waiting { commands: Vec<String> },
    /// No box is registered for the site.
    NoBox,
}

/// Sends `snapshot` to the box that has this camera (every box of the site when the camera has
/// never sent a picture) and waits up to `wait` for the new image.
pub async fn request_snapshot(
    state: &ApiState,
    site: &str,
    camera: &str,
    by: &str,
    wait: Duration,
) -> Result<SnapshotRequest, Response> {
    let asked = store::now_ms();
    // Pictures already there when asked (the window below reaches 5 s back, for the box's clock)
    // are not the answer, even when an earlier request took them.
    let (s, c) = (site.to_owned(), camera.to_owned());
    let before: std::collections::HashSet<String> = read(state, move |conn| {
        Ok(history(conn, &s, &c, asked - 5_000, i64::MAX)?
            .into_iter()
            .map(|v| v.sha256)
            .collect())
    })
    .await?;
    let (s, c, by) = (site.to_owned(), camera.to_owned(), by.to_owned());
    let writer = state.writer.clone();
    let created = tokio::task::spawn_blocking(move || {
        let mut w = writer.lock().map_err(|_| crate::Error::Closed)?;
        w.run(|tx| {
            let device: Option<String> = tx
                .query_row(
                    "SELECT device FROM snapshots WHERE site = ?1 AND camera_id = ?2 ORDER BY id DESC LIMIT 1",
                    params![s, c],
                    |r| r.get(0),
                )
                .optional()?;
            store::commands::create(
                tx,
                &s,
                device.as_deref(),
                "snapshot",
                &json!({ "camera_id": c }),
                3_600_000,
                &by,
            )
        })
    })
    .await;
    let commands = match created {
        Ok(Ok(ids)) if !ids.is_empty() => ids,
        Ok(Ok(_)) => return Ok(SnapshotRequest::NoBox),
        Ok(Err(e)) => return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e)),
    };
    let deadline = std::time::Instant::now() + wait;
    let before = std::sync::Arc::new(before);
    loop {
        let (s, c, before) = (site.to_owned(), camera.to_owned(), before.clone());
        let fresh = read(state, move |conn| {
            Ok(history(conn, &s, &c, asked - 5_000, i64::MAX)?
                .into_iter()
                .find(|v| {
                    v.image == "uploaded" && v.trigger == "command" && !before.contains(&v.sha256)
                }))
        })
        .await?;
        match fresh {
            Some(snapshot) => {
                return Ok(SnapshotRequest::Arrived {
                    commands,
                    snapshot: Box::new(snapshot),
                });
            }
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            None => return Ok(SnapshotRequest::Waiting { commands }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob store for one test, with what it needs kept alive: a local directory, or a bucket
    /// on an S3-compatible server (moto) started for the test on a free port. Every test below
    /// runs against both.
    struct TestStore {
        store: Box<dyn BlobStore>,
        dir: tempfile::TempDir,
        _s3: Option<(crate::s3::testing::Moto, tokio::runtime::Runtime)>,
    }

    impl TestStore {
        fn local() -> TestStore {
            let dir = tempfile::tempdir().unwrap();
            let store = Box::new(LocalDir::new(dir.path().join("blobs")).unwrap());
            TestStore {
                store,
                dir,
                _s3: None,
            }
        }

        fn s3() -> TestStore {
            let dir = tempfile::tempdir().unwrap();
            let moto = crate::s3::testing::Moto::start();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let store = runtime.block_on(moto.store("snapshots", runtime.handle().clone()));
            TestStore {
                store: Box::new(store),
                dir,
                _s3: Some((moto, runtime)),
            }
        }
    }

    fn the_store_is_idempotent_and_removes(store: &dyn BlobStore) {
        let sha = hex::encode(Sha256::digest(b"x"));
        assert!(!store.has(&sha));
        assert_eq!(store.get(&sha).unwrap(), None);
        assert!(store.put(&sha, b"x").unwrap());
        assert!(store.has(&sha));
        assert!(!store.put(&sha, b"x").unwrap(), "a second put is a no-op");
        assert_eq!(store.get(&sha).unwrap().as_deref(), Some(&b"x"[..]));
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let big_sha = hex::encode(Sha256::digest(&big));
        assert!(store.put(&big_sha, &big).unwrap());
        assert_eq!(store.get(&big_sha).unwrap().unwrap(), big);
        assert!(store.remove(&sha).unwrap());
        assert!(!store.remove(&sha).unwrap(), "already gone");
        assert!(!store.has(&sha));
        assert_eq!(store.get(&sha).unwrap(), None);
        assert!(store.has(&big_sha), "only that one removed");
    }

    #[test]
    fn the_local_store_is_idempotent_and_removes() {
        the_store_is_idempotent_and_removes(TestStore::local().store.as_ref());
    }

    #[test]
    fn the_s3_store_is_idempotent_and_removes() {
        the_store_is_idempotent_and_removes(TestStore::s3().store.as_ref());
    }

    /// A colour JPEG of `width`×`height` (a gradient), as a camera would send.
    fn camera_jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&img)
            .unwrap();
        out
    }

    fn dimensions(jpeg: &[u8]) -> (u32, u32) {
        use image::ImageDecoder;
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg))
            .unwrap()
            .dimensions()
    }

    #[test]
    fn a_thumbnail_is_320_wide_made_once_and_kept_under_its_own_key() {
        thumbnails_are_made_once_and_kept(TestStore::local().store.as_ref());
    }

    #[test]
    fn a_thumbnail_is_kept_in_the_s3_store() {
        thumbnails_are_made_once_and_kept(TestStore::s3().store.as_ref());
    }

    fn thumbnails_are_made_once_and_kept(store: &dyn BlobStore) {
        let image = camera_jpeg(1280, 720);
        let sha = hex::encode(Sha256::digest(&image));
        store.put(&sha, &image).unwrap();
        let thumb = thumbnail(store, &sha).unwrap();
        assert!(thumb.starts_with(&[0xFF, 0xD8, 0xFF]));
        assert_eq!(dimensions(&thumb), (320, 180));
        assert!(thumb.len() < image.len() / 4, "{} bytes", thumb.len());
        // Kept in the store under a key of its own, never the image's.
        let key = thumb_key(&sha);
        assert_ne!(key, sha);
        assert!(wire::is_sha256_hex(&key));
        assert_eq!(store.get(&key).unwrap().as_deref(), Some(&thumb[..]));
        assert_eq!(store.get(&sha).unwrap().as_deref(), Some(&image[..]));
        // The second request is answered from the store: a thumbnail stored there is what comes back.
        store.remove(&key).unwrap();
        store.put(&key, b"\xFF\xD8\xFFcached").unwrap();
        assert_eq!(thumbnail(store, &sha).unwrap(), b"\xFF\xD8\xFFcached");
        // A grey picture stays grey; a tall one keeps its proportions.
        let grey = {
            let img = image::GrayImage::from_fn(640, 960, |x, _| image::Luma([(x % 256) as u8]));
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new(&mut out)
                .encode_image(&img)
                .unwrap();
            out
        };
        let thumb = make_thumbnail(&grey).unwrap().unwrap();
        assert_eq!(dimensions(&thumb), (320, 480));
        // An image no wider than a thumbnail is its own thumbnail, and nothing is stored for it.
        let small = camera_jpeg(320, 240);
        let small_sha = hex::encode(Sha256::digest(&small));
        store.put(&small_sha, &small).unwrap();
        assert_eq!(thumbnail(store, &small_sha).unwrap(), small);
        assert!(!store.has(&thumb_key(&small_sha)));
    }

    #[test]
    fn a_bad_image_or_a_missing_one_has_no_thumbnail_and_says_why() {
        bad_or_missing_images_have_no_thumbnail(TestStore::local().store.as_ref());
    }

    #[test]
    fn a_bad_image_in_the_s3_store_has_no_thumbnail() {
        bad_or_missing_images_have_no_thumbnail(TestStore::s3().store.as_ref());
    }

    fn bad_or_missing_images_have_no_thumbnail(store: &dyn BlobStore) {
        // JPEG magic, then nothing a decoder can read.
        let mut junk = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        junk.extend(b"JFIF\0");
        junk.extend(std::iter::repeat_n(7u8, 2000));
        let sha = hex::encode(Sha256::digest(&junk));
        store.put(&sha, &junk).unwrap();
        let e = thumbnail(store, &sha).unwrap_err();
        assert!(matches!(e, ThumbError::BadImage(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("the image cannot be made into a thumbnail: "),
            "{e}"
        );
        assert!(!store.has(&thumb_key(&sha)), "nothing stored for it");
        // A truncated JPEG (the header reads, the rest is missing): an error or a partly grey
        // picture, never a panic.
        let whole = camera_jpeg(1280, 720);
        let cut = &whole[..whole.len() / 3];
        assert!(matches!(
            make_thumbnail(cut),
            Err(ThumbError::BadImage(_)) | Ok(Some(_))
        ));
        // Too many pixels to decode on the hub: refused from the header alone.
        let mut huge = camera_jpeg(64, 64);
        let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = make_thumbnail(&huge).unwrap_err();
        assert!(e.to_string().contains("65535×65535 pixels"), "{e}");
        let missing = hex::encode(Sha256::digest(b"never uploaded"));
        assert!(matches!(
            thumbnail(store, &missing),
            Err(ThumbError::NotFound)
        ));
    }

    #[test]
    fn retention_removes_old_images_per_site_and_reports_it() {
        retention_removes_old_images(TestStore::local());
    }

    #[test]
    fn retention_removes_old_images_from_the_s3_store() {
        retention_removes_old_images(TestStore::s3());
    }

    fn retention_removes_old_images(test: TestStore) {
        let blobs = test.store.as_ref();
        let mut w = Writer::open(&test.dir.path().join("hub.db")).unwrap();
        let now = store::now_ms();
        let day = 86_400_000;
        let mut put = |site: &str, age_days: i64, content: &[u8]| {
            let sha = hex::encode(Sha256::digest(content));
            blobs.put(&sha, content).unwrap();
            w.run(|tx| {
                tx.execute(
                    "INSERT INTO blobs (sha256, site, device, bytes, received_ms) VALUES (?1, ?2, 'box-01', ?3, ?4)",
                    params![sha, site, content.len() as i64, now - age_days * day],
                )
            })
            .unwrap();
            sha
        };
        let old_a = put("a", 31, b"old a");
        let new_a = put("a", 29, b"new a");
        let old_b = put("b", 31, b"old b"); // site b keeps 60 days
        let config = crate::config::BlobConfig {
            retention_days: 30,
            retention_by_site: [("b".to_owned(), 60)].into_iter().collect(),
            ..Default::default()
        };
        // Thumbnails go with their image.
        blobs.put(&thumb_key(&old_a), b"thumb a").unwrap();
        blobs.put(&thumb_key(&new_a), b"thumb new a").unwrap();
        let report = w.run(|tx| clean(tx, blobs, &config, now)).unwrap();
        assert_eq!(report, vec![("a".to_owned(), 1, 5)]);
        assert!(!blobs.has(&old_a) && blobs.has(&new_a) && blobs.has(&old_b));
        assert!(!blobs.has(&thumb_key(&old_a)) && blobs.has(&thumb_key(&new_a)));
        let again = w.run(|tx| clean(tx, blobs, &config, now)).unwrap();
        assert!(again.is_empty());
    }
}
