//! Signed agent updates at the hub (docs/updates.md): `sunlight-hub update publish` checks an
//! archive's signature against the configured verifying keys (`[updates] verifying_keys`) and keeps
//! it in `{data_dir}/updates/`; boxes download it from `/api/v1/box/updates/{version}/archive`
//! (public: the box checks the signature itself, and the archive holds nothing secret) after a
//! rollout sent them an `update` command; `GET /api/v1/updates` shows each box's progress.

use crate::store::{self, updates as db};
use crate::web::ApiState;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek};
use std::path::{Path as FsPath, PathBuf};

/// Where published archives are kept.
#[derive(Debug, Clone)]
pub struct Archives {
    pub dir: PathBuf,
}

impl Archives {
    pub fn in_data_dir(data_dir: &FsPath) -> Archives {
        Archives {
            dir: data_dir.join("updates"),
        }
    }

    pub fn path(&self, version: &str) -> PathBuf {
        self.dir.join(format!("sunlight-agent-{version}.tar.gz"))
    }
}

/// Gives the router's update endpoints the archive directory.
pub fn attach(router: Router, archives: Archives) -> Router {
    router.layer(Extension(archives))
}

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/box/updates/{version}", get(manifest))
        .route("/api/v1/box/updates/{version}/archive", get(archive))
        .route("/api/v1/updates", get(status))
        .route("/api/v1/updates/rollout", axum::routing::post(rollout))
}

/// What a checked archive is.
#[derive(Debug, Clone)]
pub struct Checked {
    pub version: String,
    pub sha256: String,
    pub size: u64,
    /// Which configured key signed it (0-based).
    pub key_index: usize,
}

/// Checks an archive before it is published: signed by one of `keys`, holding `sunlight-agent`
/// and a `VERSION` file that says `version`.
pub fn check_archive<R: Read + Seek>(
    archive: &mut R,
    keys: &[String],
    version: &str,
) -> Result<Checked, String> {
    use sunlight_protocol::update;
    let version = update::check_version(version).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err(
            "no update verifying key is configured: add [updates] verifying_keys to the hub's config (sunlight-provision update-key prints it)"
                .into(),
        );
    }
    let keys = update::verifying_keys(keys).map_err(|e| format!("[updates] {e}"))?;
    let key_index = update::verify(archive, &keys).map_err(|e| format!("refused: {e}"))?;
    let contents = update::extract(&mut *archive, &mut std::io::sink())
        .map_err(|e| format!("refused: {e}"))?;
    if contents.version != version {
        return Err(format!(
            "refused: the archive's VERSION says {}, not {version}",
            contents.version
        ));
    }
    archive.rewind().map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(archive, &mut hasher).map_err(|e| e.to_string())?;
    Ok(Checked {
        version,
        sha256: hex::encode(hasher.finalize()),
        size,
        key_index,
    })
}

/// `sunlight-hub update publish`: checks the archive, copies it into the data directory and
/// records the release. Publishing the same archive again changes nothing; another archive under a
/// published version is refused.
pub fn publish(
    data_dir: &FsPath,
    keys: &[String],
    version: &str,
    archive: &FsPath,
    by: &str,
) -> Result<Checked, crate::Error> {
    let invalid = crate::Error::Invalid;
    let db_path = data_dir.join("hub.db");
    if !db_path.is_file() {
        return Err(invalid(format!(
            "{} has no hub.db: pass the --data-dir the hub runs with (e.g. /var/lib/sunlight-hub)",
            data_dir.display()
        )));
    }
    let mut file = std::fs::File::open(archive)
        .map_err(|e| crate::Error::io(format!("reading {}", archive.display()), e))?;
    let checked = check_archive(&mut file, keys, version)
        .map_err(|e| invalid(format!("{}: {e}", archive.display())))?;
    let archives = Archives::in_data_dir(data_dir);
    std::fs::create_dir_all(&archives.dir)
        .map_err(|e| crate::Error::io(format!("creating {}", archives.dir.display()), e))?;
    let mut writer = store::Writer::open(&db_path)?;
    let fresh = writer
        .run(|tx| db::release(tx, &checked.version))?
        .is_none();
    if fresh {
        let dest = archives.path(&checked.version);
        let tmp = dest.with_extension("part");
        std::fs::copy(archive, &tmp)
            .and_then(|_| std::fs::File::open(&tmp).and_then(|f| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(|e| crate::Error::io(format!("writing {}", dest.display()), e))?;
    }
    let same = writer
        .run(|tx| db::add_release(tx, &checked.version, &checked.sha256, checked.size, by))?;
    if !same {
        return Err(invalid(format!(
            "version {} is published already with another archive; publish the new build under a new version",
            checked.version
        )));
    }
    Ok(checked)
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

async fn release_of(state: &ApiState, version: String) -> Result<db::Release, Response> {
    let v = version.clone();
    match crate::web::read(state, move |r| r.run(|c| db::release(c, &v))).await? {
        Some(r) => Ok(r),
        None => Err(not_found(format!(
            "version {version} is not published at this hub"
        ))),
    }
}

/// `GET /api/v1/box/updates/{version}`: the manifest a box may read before downloading.
async fn manifest(State(state): State<ApiState>, Path(version): Path<String>) -> Response {
    match release_of(&state, version).await {
        Ok(r) => axum::Json(json!({
            "version": r.version,
            "sha256": r.sha256,
            "size": r.size,
            "archive": db::archive_path(&r.version),
            "published_at": r.published_at,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `GET /api/v1/box/updates/{version}/archive`: the signed archive as published.
async fn archive(
    State(state): State<ApiState>,
    Extension(archives): Extension<Archives>,
    Path(version): Path<String>,
) -> Response {
    let release = match release_of(&state, version).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // Streamed from the file: a box's download never holds the archive in the hub's memory.
    let opened = match tokio::fs::File::open(archives.path(&release.version)).await {
        Ok(file) => file.metadata().await.map(|m| (file, m.len())),
        Err(e) => Err(e),
    };
    match opened {
        Ok((file, len)) => (
            [
                (header::CONTENT_TYPE, "application/gzip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"sunlight-agent-{}.tar.gz\"",
                        release.version
                    ),
                ),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": format!("the archive of {} cannot be read: {e}", release.version) })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    version: Option<String>,
}

/// `GET /api/v1/updates`: the releases and each box's progress.
async fn status(State(state): State<ApiState>, Query(q): Query<StatusQuery>) -> Response {
    match crate::web::read(&state, move |r| {
        r.run(|c| {
            Ok((
                db::releases(c)?,
                db::targets(c, q.version.as_deref(), store::now_ms())?,
            ))
        })
    })
    .await
    {
        Ok((releases, boxes)) => {
            axum::Json(json!({ "releases": releases, "boxes": boxes })).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    version: String,
    #[serde(default)]
    percent: Option<u32>,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    by: String,
    /// The version is older than what boxes run, on purpose.
    #[serde(default)]
    downgrade: bool,
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// `POST /api/v1/updates/rollout` `{"version", "percent": P}` or `{"version", "sites": [..]}`:
/// what `sunlight-hub update rollout` does, audited with the signed-in account → 202
/// `{"sent": ["site/device", ..], "skipped": ["site/device: why", ..]}`.
async fn rollout(
    State(state): State<ApiState>,
    caller: Option<Extension<crate::apiauth::Caller>>,
    body: axum::body::Bytes,
) -> Response {
    let b: RolloutBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "请求须为 {{\"version\", \"percent\"}} 或 {{\"version\", \"sites\"}} / the body must be {{\"version\": \"1.2.0\", \"percent\": 10}} or {{\"version\", \"sites\": [\"suixian-lishan\"]}}: {e}"
                ),
            );
        }
    };
    let wave = match (b.percent, b.sites.is_empty()) {
        (Some(p), true) if (1..=100).contains(&p) => db::Wave::Percent(p),
        (Some(p), true) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("percent {p}: 比例须为 1 至 100 / give 1 to 100"),
            );
        }
        (None, false) => db::Wave::Sites(b.sites),
        _ => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "须给出 percent 或 sites 之一 / give either \"percent\" (1 to 100) or \"sites\" (a list of site ids), not both",
            );
        }
    };
    let version = b.version.trim().to_owned();
    let who = crate::web::audit_who(&caller, &b.by);
    let downgrade = b.downgrade;
    match crate::web::write(&state, move |tx| {
        db::rollout(tx, &version, &wave, &who, downgrade)
    })
    .await
    {
        Ok(Ok(Ok(r))) => (StatusCode::ACCEPTED, axum::Json(r)).into_response(),
        Ok(Ok(Err(m))) => refuse(StatusCode::NOT_FOUND, m),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use sunlight_protocol::update::{UpdateKey, pack, sign};

    fn signed(version: &str, key: &UpdateKey) -> Vec<u8> {
        let mut plain = Vec::new();
        pack(&mut plain, b"\x7fELF...", version).unwrap();
        let mut out = Cursor::new(Vec::new());
        sign(&mut Cursor::new(plain), &mut out, key).unwrap();
        out.into_inner()
    }

    #[test]
    fn publishing_checks_signature_and_version() {
        let key = UpdateKey::generate().unwrap();
        let keys = vec![key.verifying_key()];
        let archive = signed("0.2.0", &key);
        let c = check_archive(&mut Cursor::new(&archive), &keys, "0.2.0").unwrap();
        assert_eq!(
            (c.version.as_str(), c.size),
            ("0.2.0", archive.len() as u64)
        );
        let err = check_archive(&mut Cursor::new(&archive), &keys, "0.3.0").unwrap_err();
        assert!(err.contains("VERSION says 0.2.0"), "{err}");
        let other = UpdateKey::generate().unwrap();
        let err =
            check_archive(&mut Cursor::new(signed("0.2.0", &other)), &keys, "0.2.0").unwrap_err();
        assert!(err.contains("does not match any trusted"), "{err}");
        let err = check_archive(&mut Cursor::new(&archive), &[], "0.2.0").unwrap_err();
        assert!(err.contains("verifying_keys"), "{err}");
    }

    #[test]
    fn publish_keeps_the_archive_and_refuses_another_under_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        store::Writer::open(&dir.path().join("hub.db")).unwrap();
        let key = UpdateKey::generate().unwrap();
        let keys = vec![key.verifying_key()];
        let a = dir.path().join("a.tar.gz");
        std::fs::write(&a, signed("0.2.0", &key)).unwrap();
        let c = publish(dir.path(), &keys, "0.2.0", &a, "ops").unwrap();
        let kept = Archives::in_data_dir(dir.path()).path("0.2.0");
        assert_eq!(std::fs::read(&kept).unwrap(), std::fs::read(&a).unwrap());
        // Again: nothing changes.
        assert_eq!(
            publish(dir.path(), &keys, "0.2.0", &a, "ops")
                .unwrap()
                .sha256,
            c.sha256
        );
        // Another build under the same version.
        let b = dir.path().join("b.tar.gz");
        let mut plain = Vec::new();
        pack(&mut plain, b"other build", "0.2.0").unwrap();
        let mut out = Cursor::new(Vec::new());
        sign(&mut Cursor::new(plain), &mut out, &key).unwrap();
        std::fs::write(&b, out.into_inner()).unwrap();
        let err = publish(dir.path(), &keys, "0.2.0", &b, "ops")
            .unwrap_err()
            .to_string();
        assert!(err.contains("published already"), "{err}");
        assert_eq!(std::fs::read(&kept).unwrap(), std::fs::read(&a).unwrap());
        // Not a hub data directory.
        let err = publish(&dir.path().join("nope"), &keys, "0.2.0", &a, "ops")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no hub.db"), "{err}");
    }
}
