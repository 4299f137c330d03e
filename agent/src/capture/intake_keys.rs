//! Keys on the intake API's door. Each system that posts to the box (the approval system, the
//! evaluator pads, an import script) gets its own key, limited to the kinds it was issued for:
//! `sunlight-agent intake-key add NAME --kinds case,rating,complaint,duty` prints it once
//! (`sik_` + 32 random bytes in hex); the box keeps only its SHA-256, in
//! `{data_dir}/intake_keys.json` (0600; never served). The running agent reads the file again when
//! it changes, so `add` and `revoke` apply from the next request.
//!
//! `punch`, `health`, `cmd_result` and `snapshot` come only from the box's own sources (the kiosk,
//! the ZKTeco terminal server, the cameras, the health monitor), never from the LAN: no key is
//! issued for `health` or `cmd_result`, and `punch` / `snapshot` only on a `--local` key, which is
//! accepted from this box itself (127.0.0.1 / ::1) and nowhere else — for tools running on the
//! box, such as a terminal bridge or a test rig.

use crate::error::Error;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Every key starts so, to be recognised in a config file or a log.
pub const PREFIX: &str = "sik_";
/// Kinds a key may be issued for.
pub const LAN_KINDS: &[&str] = &[
    "case",
    "rating",
    "complaint",
    "duty",
    "patrol",
    "correction",
];
/// Kinds only a `--local` key may post (the box's own tools).
pub const LOCAL_KINDS: &[&str] = &["punch", "snapshot"];
/// Kinds no key may post: only the box itself makes them.
pub const BOX_ONLY: &[&str] = &["health", "cmd_result"];
/// How to get a key, for refusals.
pub const HOW_TO_GET_ONE: &str = "on the box run: sunlight-agent intake-key add NAME --kinds case,rating,complaint,duty — it prints the key once; send it as 'Authorization: Bearer sik_…'";

/// The file of key hashes in the data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("intake_keys.json")
}

/// One issued key, as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    /// SHA-256 of the whole key (`sik_…`), hex.
    pub sha256: String,
    pub kinds: Vec<String>,
    /// Accepted only from this box itself (loopback).
    #[serde(default)]
    pub local: bool,
    /// When it was issued, RFC 3339.
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn read_file(path: &Path) -> Result<KeyFile, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: path.into(),
            detail: format!(
                "{e}; the file is written by 'sunlight-agent intake-key', do not edit it by hand"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes the file whole (a temporary file renamed over it), 0600, owned like the data directory
/// (the agent's service account) when written by root.
fn write_file(data_dir: &Path, file: &KeyFile) -> Result<(), Error> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
    let target = path(data_dir);
    let temp = data_dir.join(".intake_keys.json.new");
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let text = serde_json::to_vec_pretty(file).unwrap_or_default();
    let mut out = options
        .open(&temp)
        .map_err(|e| Error::io(format!("creating {}", temp.display()), e))?;
    out.write_all(&text)
        .and_then(|()| out.sync_all())
        .map_err(|e| Error::io(format!("writing {}", temp.display()), e))?;
    #[cfg(unix)]
    if let Ok(dir) = std::fs::metadata(data_dir) {
        use std::os::unix::fs::MetadataExt;
        // Only root can give a file away; for anyone else this is their own file already.
        let _ = std::os::unix::fs::chown(&temp, Some(dir.uid()), Some(dir.gid()));
    }
    std::fs::rename(&temp, &target)
        .map_err(|e| Error::io(format!("replacing {}", target.display()), e))
}

fn refused(detail: String) -> Error {
    Error::Config {
        path: "intake-key".into(),
        detail,
    }
}

/// Checks `kinds` for a key (`local`: accepted only from the box itself).
pub fn check_kinds(kinds: &[String], local: bool) -> Result<(), String> {
    if kinds.is_empty() {
        return Err(format!(
            "give the kinds the key may post: --kinds with some of {}",
            LAN_KINDS.join(",")
        ));
    }
    for kind in kinds {
        let kind = kind.as_str();
        if BOX_ONLY.contains(&kind) {
            return Err(format!(
                "no key may post {kind}: {kind} events are made only by the box itself"
            ));
        }
        if LOCAL_KINDS.contains(&kind) && !local {
            return Err(format!(
                "{kind} events come only from the box's own sources (the kiosk, ZKTeco terminals, cameras), never from the LAN; a tool running on the box itself may post them with a --local key"
            ));
        }
        if !LAN_KINDS.contains(&kind) && !LOCAL_KINDS.contains(&kind) {
            return Err(format!(
                "{kind:?} is not an event kind the intake takes; use some of {}",
                LAN_KINDS.join(",")
            ));
        }
    }
    Ok(())
}

/// Issues a key named `name` for `kinds`; returns the key, which is kept nowhere on the box.
pub fn add(
    data_dir: &Path,
    name: &str,
    kinds: &[String],
    local: bool,
    now: &str,
) -> Result<String, Error> {
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(refused(format!(
            "key name {name:?}: 1 to 64 letters, digits, '-', '_' or '.' (say who uses it: approval-system, pads-hall)"
        )));
    }
    check_kinds(kinds, local).map_err(refused)?;
    let mut file = read_file(&path(data_dir))?;
    if file.keys.iter().any(|k| k.name == name) {
        return Err(refused(format!(
            "a key named {name} exists already; revoke it first (sunlight-agent intake-key revoke {name}) or choose another name"
        )));
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| refused(format!("no randomness: {e}")))?;
    let key = format!("{PREFIX}{}", hex::encode(secret));
    let mut unique = kinds.to_vec();
    unique.sort();
    unique.dedup();
    file.keys.push(KeyRecord {
        name: name.to_owned(),
        sha256: hash(&key),
        kinds: unique,
        local,
        created: now.to_owned(),
    });
    write_file(data_dir, &file)?;
    Ok(key)
}

/// The keys issued, without their secrets (only hashes are stored).
pub fn list(data_dir: &Path) -> Result<Vec<KeyRecord>, Error> {
    Ok(read_file(&path(data_dir))?.keys)
}

/// Revokes the key `name`; false when there is none of that name.
pub fn revoke(data_dir: &Path, name: &str) -> Result<bool, Error> {
    let mut file = read_file(&path(data_dir))?;
    let before = file.keys.len();
    file.keys.retain(|k| k.name != name);
    if file.keys.len() == before {
        return Ok(false);
    }
    write_file(data_dir, &file)?;
    Ok(true)
}

/// What a request's key lets it post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub kinds: Vec<String>,
}

impl Grant {
    /// `kind` may be posted with this key, or the refusal (403) says why not.
    pub fn allows(&self, kind: &str) -> Result<(), Refusal> {
        match self.forbids(kind) {
            None => Ok(()),
            Some(why) => Err(refuse(StatusCode::FORBIDDEN, why)),
        }
    }

    /// Why `kind` may not be posted with this key; `None` when it may.
    pub fn forbids(&self, kind: &str) -> Option<String> {
        if self.kinds.iter().any(|k| k == kind) {
            return None;
        }
        Some(if BOX_ONLY.contains(&kind) || LOCAL_KINDS.contains(&kind) {
            format!(
                "{kind} events are taken only from the box's own sources (the kiosk, ZKTeco terminals, cameras, its health monitor), never from the LAN intake API"
            )
        } else {
            format!(
                "key {} may post {}, not {kind}; ask the box's operator for a key with --kinds {kind}",
                self.name,
                self.kinds.join(", ")
            )
        })
    }
}

/// A request refused at the door: 401, 403 or 415, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: String) -> Refusal {
    Refusal { status, message }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"sunlight-intake\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// What the intake keeps of its keys: by hash, with the version of the file they were read from.
type Cache = (Option<Stamp>, Arc<HashMap<String, KeyRecord>>);

/// Identifies a file version: a rename (every write) gives a new inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&m),
    })
}

/// The keys as the running agent checks them: by hash, read again when the file changes.
pub struct IntakeKeys {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl IntakeKeys {
    pub fn open(data_dir: &Path) -> IntakeKeys {
        IntakeKeys {
            path: path(data_dir),
            cache: Mutex::new((None, Arc::new(HashMap::new()))),
        }
    }

    fn current(&self) -> Arc<HashMap<String, KeyRecord>> {
        let now = stamp(&self.path);
        let Ok(mut cache) = self.cache.lock() else {
            return Arc::new(HashMap::new());
        };
        if cache.0.is_none() || cache.0 != now {
            let keys = match read_file(&self.path) {
                Ok(file) => file.keys,
                Err(e) => {
                    // A broken file lets nobody in; the error says what to do.
                    tracing::error!(error = %e, "intake keys unreadable: every intake request is refused");
                    Vec::new()
                }
            };
            let by_hash = keys.into_iter().map(|k| (k.sha256.clone(), k)).collect();
            *cache = (now, Arc::new(by_hash));
        }
        cache.1.clone()
    }

    /// The grant of the request's `Authorization: Bearer sik_…`, or the refusal: 401 without a
    /// valid key, 403 for a `--local` key from another machine.
    pub fn grant(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Grant, Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| k.starts_with(PREFIX));
        let Some(presented) = presented else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                format!("this request carries no intake key; {HOW_TO_GET_ONE}"),
            ));
        };
        let keys = self.current();
        let Some(record) = keys.get(&hash(presented)) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                format!(
                    "this intake key is not valid (revoked, or never issued by this box); {HOW_TO_GET_ONE}"
                ),
            ));
        };
        let loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
        if record.local && !loopback {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "key {} is a --local key, accepted only from the box itself (127.0.0.1 or ::1)",
                    record.name
                ),
            ));
        }
        Ok(Grant {
            name: record.name.clone(),
            kinds: record.kinds.clone(),
        })
    }
}

/// Middleware on the intake's posting routes: no valid key, no further (the body is not read).
/// The grant goes on to the handler as a request extension.
pub async fn require_key(
    State(keys): State<Arc<IntakeKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match keys.grant(request.headers(), peer) {
        Ok(grant) => {
            tracing::debug!(key = %grant.name, path = %request.uri().path(), "intake request");
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// JSON posts must say so (`Content-Type: application/json`): a web page can send a form or
/// `text/plain` to any address without asking, but not JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), Refusal> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = given.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(refuse(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "send the events as JSON with 'Content-Type: application/json' (this request says {:?})",
            given.chars().take(80).collect::<String>()
        ),
    ))
}

/// For tests of the intake: the keys of `data_dir` with one key for every LAN kind (and, when
/// `local`, the box's tools' kinds too: the request must then come from loopback), and that key.
#[cfg(test)]
pub(crate) fn test_key(data_dir: &Path, local: bool) -> (Arc<IntakeKeys>, String) {
    let extra = if local { LOCAL_KINDS } else { &[] };
    let kinds: Vec<String> = LAN_KINDS
        .iter()
        .chain(extra)
        .map(|k| (*k).to_owned())
        .collect();
    let key =
        add(data_dir, "test", &kinds, local, "2025-11-03T09:00:00+08:00").expect("a test key");
    (Arc::new(IntakeKeys::open(data_dir)), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        h
    }

    const NOW: &str = "2025-11-03T09:00:00+08:00";

    #[test]
    fn keys_are_stored_hashed_and_revoked_keys_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let keys = IntakeKeys::open(dir.path());
        let key = add(
            dir.path(),
            "approval",
            &kinds(&["rating", "case"]),
            false,
            NOW,
        )
        .unwrap();
        assert!(
            key.starts_with(PREFIX) && key.len() == PREFIX.len() + 64,
            "{key}"
        );
        let stored = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(
            !stored.contains(&key[PREFIX.len()..]),
            "the key itself is not stored"
        );
        assert!(stored.contains(&hash(&key)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let grant = keys.grant(&bearer(&key), None).unwrap();
        assert_eq!(grant.kinds, ["case", "rating"]);
        assert!(grant.allows("case").is_ok());
        assert_eq!(
            grant.allows("complaint").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            grant.allows("punch").unwrap_err().status,
            StatusCode::FORBIDDEN
        );

        let other = add(dir.path(), "pads", &kinds(&["rating"]), false, NOW).unwrap();
        assert!(add(dir.path(), "pads", &kinds(&["rating"]), false, NOW).is_err());
        assert_eq!(list(dir.path()).unwrap().len(), 2);
        assert!(revoke(dir.path(), "approval").unwrap());
        assert!(!revoke(dir.path(), "approval").unwrap());
        let refused = keys.grant(&bearer(&key), None).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(keys.grant(&bearer(&other), None).is_ok());
        for headers in [HeaderMap::new(), bearer("sik_00"), bearer("not-a-key")] {
            assert_eq!(
                keys.grant(&headers, None).unwrap_err().status,
                StatusCode::UNAUTHORIZED
            );
        }
    }

    #[test]
    fn box_only_kinds_are_never_issued_to_the_lan() {
        let dir = tempfile::tempdir().unwrap();
        for kind in ["punch", "snapshot", "health", "cmd_result", "teleport"] {
            let err = add(dir.path(), "x", &kinds(&[kind]), false, NOW).unwrap_err();
            assert!(err.to_string().contains(kind), "{err}");
        }
        for kind in ["health", "cmd_result"] {
            assert!(add(dir.path(), "x", &kinds(&[kind]), true, NOW).is_err());
        }
        assert!(add(dir.path(), "bad name", &kinds(&["case"]), false, NOW).is_err());
        assert!(add(dir.path(), "none", &[], false, NOW).is_err());
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_local_key_is_taken_only_from_the_box_itself() {
        let dir = tempfile::tempdir().unwrap();
        let keys = IntakeKeys::open(dir.path());
        let key = add(dir.path(), "rig", &kinds(&["punch"]), true, NOW).unwrap();
        for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            let grant = keys.grant(&bearer(&key), peer.parse().ok()).unwrap();
            assert!(grant.allows("punch").is_ok());
        }
        for peer in [Some("192.168.1.20:5000"), None] {
            let refused = keys
                .grant(&bearer(&key), peer.and_then(|p| p.parse().ok()))
                .unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn json_posts_must_say_so() {
        let mut h = HeaderMap::new();
        assert!(require_json(&h).is_err());
        for (given, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            h.insert(header::CONTENT_TYPE, given.parse().unwrap());
            assert_eq!(require_json(&h).is_ok(), ok, "{given}");
        }
    }
}
