//! The register of sites, and enrollment over the API (issue 7): what `sunlight-provision site
//! add` and `device add` call from the county operator's machine instead of running
//! `sunlight-hub enroll token` on the hub host.
//!
//! - `GET /api/v1/sites`, `POST /api/v1/sites` `{"id", "name"}`: a site with its name. Sites were
//!   known only by their boxes and rosters; the `sites` table names them, and the dashboard lists
//!   a registered site before its first box enrolls.
//! - `POST /api/v1/enroll/tokens` `{"site", "device", "ttl_hours"?, "hub_url", "bundle"?}`: a
//!   one-time token for a box of a registered site, made by [`crate::enroll::issue_token`] (the
//!   same code as the CLI), shown once; with `"bundle": true` also the files of the offline
//!   bundle ([`crate::enroll::bundle_files`]).
//! - `GET /api/v1/enroll/tokens`: the tokens' states (never the tokens).
//!
//! All of them are for supervisors and admins only (see [`crate::apiauth::role_allows`]) and
//! are audited with the signed-in account.

use crate::enroll::{self, Enrollment, TokenError};
use crate::store::{self, fmt_ms, now_ms};
use crate::web::{ApiState, audit_who, read, write};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sunlight_protocol::{DeviceId, SiteId};

use crate::apiauth::Caller;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, registered_ms INTEGER NOT NULL,
    registered_by TEXT NOT NULL);
";

/// A site as the API shows it: registered ones with their name, and sites known only by their
/// boxes (no name, `registered` empty).
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub id: String,
    pub name: Option<String>,
    pub registered: Option<String>,
    pub registered_by: Option<String>,
    /// Boxes registered at the hub (enrolled or added by hand), revoked ones not counted.
    pub devices: i64,
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<SiteView>> {
    conn.prepare_cached(
        "SELECT k.id, s.name, s.registered_ms, s.registered_by,
                (SELECT count(*) FROM devices d WHERE d.site = k.id AND d.revoked_ms IS NULL)
         FROM (SELECT id FROM sites UNION SELECT site FROM devices) k
         LEFT JOIN sites s ON s.id = k.id ORDER BY k.id",
    )?
    .query_map([], |r| {
        Ok(SiteView {
            id: r.get(0)?,
            name: r.get(1)?,
            registered: r.get::<_, Option<i64>>(2)?.map(fmt_ms),
            registered_by: r.get(3)?,
            devices: r.get(4)?,
        })
    })?
    .collect()
}

/// Whether the hub knows `site`: registered, or with a box.
pub fn known(conn: &Connection, site: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sites WHERE id = ?1)
             OR EXISTS (SELECT 1 FROM devices WHERE site = ?1)",
        [site],
        |r| r.get(0),
    )
}

/// Why a site was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Registers a site, audited. A site is registered once; its id is what boxes and rosters use.
pub fn add(conn: &Connection, id: &SiteId, name: &str, by: &str) -> Result<SiteView, AddError> {
    let earlier: Option<(String, i64)> = conn
        .query_row(
            "SELECT name, registered_ms FROM sites WHERE id = ?1",
            [id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((name, at)) = earlier {
        return Err(AddError::Exists(format!(
            "站点 {id} 已于 {} 登记（{name}）/ site {id} is registered already since {} ({name}): \
             add its boxes with 'sunlight-provision device add --site {id} --device …'",
            fmt_ms(at),
            fmt_ms(at)
        )));
    }
    let now = now_ms();
    conn.execute(
        "INSERT INTO sites (id, name, registered_ms, registered_by) VALUES (?1, ?2, ?3, ?4)",
        params![id.as_str(), name, now, by],
    )?;
    store::audit(conn, by, "site.add", id.as_str(), name)?;
    let devices: i64 = conn.query_row(
        "SELECT count(*) FROM devices WHERE site = ?1 AND revoked_ms IS NULL",
        [id.as_str()],
        |r| r.get(0),
    )?;
    Ok(SiteView {
        id: id.to_string(),
        name: Some(name.to_owned()),
        registered: Some(fmt_ms(now)),
        registered_by: Some(by.to_owned()),
        devices,
    })
}

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/sites", get(sites).post(site_add))
        .route("/api/v1/enroll/tokens", get(tokens).post(token_issue))
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

async fn sites(State(state): State<ApiState>) -> Response {
    match read(&state, |r| r.run(list)).await {
        Ok(s) => axum::Json(json!({ "sites": s })).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteAdd {
    id: String,
    name: String,
    #[serde(default)]
    by: String,
}

/// The longest site name kept (a township's full name is far shorter).
const MAX_NAME_CHARS: usize = 100;

/// `{"id": "suixian-shangshi", "name": "随县尚市镇便民服务中心"}` → 201 with the site.
async fn site_add(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Bytes,
) -> Response {
    let req: SiteAdd = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "请求须为 {{\"id\", \"name\"}} / the body must be {{\"id\": \"suixian-shangshi\", \"name\": \"…\"}}: {e}"
                ),
            );
        }
    };
    let id = match SiteId::new(req.id.trim()) {
        Ok(id) => id,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("站点编号无效 / site id {:?}: {e}", req.id),
            );
        }
    };
    let name = req.name.trim().to_owned();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "站点名称须为 1 至 {MAX_NAME_CHARS} 个字符 / the site's name must be 1 to {MAX_NAME_CHARS} characters, e.g. 尚市镇便民服务中心"
            ),
        );
    }
    let who = audit_who(&caller, &req.by);
    match write(&state, move |tx| add(tx, &id, &name, &who)).await {
        Ok(Ok(site)) => (StatusCode::CREATED, axum::Json(json!({ "site": site }))).into_response(),
        Ok(Err(AddError::Exists(m))) => refuse(StatusCode::CONFLICT, m),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(r) => r,
    }
}

async fn tokens(State(state): State<ApiState>) -> Response {
    match read(&state, |r| r.run(enroll::tokens)).await {
        Ok(t) => axum::Json(json!({ "tokens": t })).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIssue {
    site: String,
    device: String,
    #[serde(default)]
    ttl_hours: Option<u32>,
    /// The hub's HTTP address as boxes reach it: the printed command and the bundle name it.
    hub_url: String,
    /// Also answer the offline bundle's files.
    #[serde(default)]
    bundle: bool,
    #[serde(default)]
    by: String,
}

/// A token just issued over the API: shown once.
#[derive(Debug, Serialize)]
pub struct Issued {
    pub site: String,
    pub device: String,
    pub token: String,
    pub expires: String,
    /// Earlier unused tokens of this box that no longer work.
    pub replaced: usize,
    /// The county CA's SHA-256 the box pins (when this hub enrolls boxes).
    pub ca_sha256: Option<String>,
    /// What the technician types on the box.
    pub command: String,
    /// The offline bundle's files, when asked for.
    pub bundle: Option<Vec<enroll::BundleFile>>,
    /// Whether `POST /api/v1/enroll` is on at this hub (`--enroll-ca-dir`).
    pub enrollment_enabled: bool,
}

/// Whether a text is an address a box can be given: http(s), no spaces or quotes.
fn check_hub_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\\');
    if ok {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "hub_url {url:?}: 须为盒子访问本中心的地址 / give this hub's address as boxes reach it, e.g. https://hub.suixian.gov.cn"
        ))
    }
}

/// `{"site", "device", "ttl_hours"?, "hub_url", "bundle"?}` → 201 [`Issued`].
async fn token_issue(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    enrollment: Option<Extension<Enrollment>>,
    body: Bytes,
) -> Response {
    let req: TokenIssue = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "请求须为 {{\"site\", \"device\", \"hub_url\"}} / the body must be {{\"site\", \"device\", \"hub_url\", \"ttl_hours\"?, \"bundle\"?}}: {e}"
                ),
            );
        }
    };
    let site = match SiteId::new(req.site.trim()) {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("站点编号无效 / site {:?}: {e}", req.site),
            );
        }
    };
    let device = match DeviceId::new(req.device.trim()) {
        Ok(d) => d,
        Err(e) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("设备编号无效 / device {:?}: {e}", req.device),
            );
        }
    };
    let hub_url = match check_hub_url(&req.hub_url) {
        Ok(u) => u,
        Err(m) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let ttl_hours = req.ttl_hours.unwrap_or(72);
    if ttl_hours == 0 || ttl_hours > enroll::MAX_TTL_HOURS {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "ttl_hours {ttl_hours}: 有效期须为 1 至 {} 小时 / give 1 to {} hours (72, the default, is three days to reach the office)",
                enroll::MAX_TTL_HOURS,
                enroll::MAX_TTL_HOURS
            ),
        );
    }
    let signer = enrollment.and_then(|Extension(e)| e.signer());
    if req.bundle && signer.is_none() {
        return refuse(
            StatusCode::CONFLICT,
            "本中心未启用联网注册，无法生成离线包 / enrollment is not enabled at this hub, so there is \
             no county CA to put in a bundle: the county operator starts the hub with \
             --enroll-ca-dir DIR (made by 'sunlight-provision hub-signer')",
        );
    }
    let who = audit_who(&caller, &req.by);
    let (s, d) = (site.clone(), device.clone());
    let made = write(&state, move |tx| {
        if !known(tx, s.as_str()).map_err(|e| e.to_string())? {
            return Ok(Err((
                StatusCode::NOT_FOUND,
                format!(
                    "站点 {s} 未登记 / site {s} is not registered at this hub: register it first \
                     with 'sunlight-provision site add --id {s} --name …'"
                ),
            )));
        }
        match enroll::issue_token(tx, &s, &d, ttl_hours, &who) {
            Ok(made) => Ok(Ok(made)),
            Err(TokenError::Refused(m)) => Ok(Err((StatusCode::CONFLICT, m))),
            Err(TokenError::Db(e)) => Err(e.to_string()),
            Err(TokenError::Random(e)) => Err(e.to_string()),
        }
    })
    .await;
    let made = match made {
        Ok(Ok(Ok(m))) => m,
        Ok(Ok(Err((status, m)))) => return refuse(status, m),
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(r) => return r,
    };
    let expires = fmt_ms(made.expires_ms);
    let ca_sha256 = signer.as_ref().map(|s| s.ca_sha256.clone());
    let pin = ca_sha256
        .as_ref()
        .map(|sha| format!(" --ca-sha256 {sha}"))
        .unwrap_or_default();
    let command = format!(
        "sunlight-agent enroll --hub {hub_url} --token {} --site {site} --device {device}{pin}",
        made.token
    );
    let bundle = match (&signer, req.bundle) {
        (Some(signer), true) => Some(enroll::bundle_files(&enroll::BundleSpec {
            site: &site,
            device: &device,
            token: &made.token,
            hub_url: &hub_url,
            expires: &expires,
            ca_pem: &signer.ca_pem,
            ca_sha256: &signer.ca_sha256,
            update_keys: &state.sup.config().updates.verifying_keys,
            hub_keys: &signer.hub_keys,
        })),
        _ => None,
    };
    tracing::info!(%site, %device, %expires, "enrollment token issued over the API");
    (
        StatusCode::CREATED,
        axum::Json(Issued {
            site: site.to_string(),
            device: device.to_string(),
            token: made.token.to_string(),
            expires,
            replaced: made.replaced,
            ca_sha256,
            command,
            bundle,
            enrollment_enabled: signer.is_some(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_registered_once_and_sites_known_by_their_boxes_are_listed_too() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.db");
        let mut w = store::Writer::open(&path).unwrap();
        let shangshi = SiteId::new("suixian-shangshi").unwrap();
        let lishan = SiteId::new("suixian-lishan").unwrap();
        let key = sunlight_protocol::DeviceKey::generate().unwrap().public();
        store::add_device(&path, &lishan, &DeviceId::new("box-01").unwrap(), &key).unwrap();
        w.run(|tx| {
            assert!(!known(tx, "suixian-shangshi")?);
            assert!(known(tx, "suixian-lishan")?);
            Ok(())
        })
        .unwrap();
        let site = w
            .run(|tx| Ok(add(tx, &shangshi, "尚市镇便民服务中心", "wangke")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (site.name.as_deref(), site.devices),
            (Some("尚市镇便民服务中心"), 0)
        );
        let again = w
            .run(|tx| Ok(add(tx, &shangshi, "another", "wangke")))
            .unwrap()
            .unwrap_err();
        assert!(matches!(again, AddError::Exists(ref m) if m.contains("尚市镇")));
        let all = w.run(|tx| list(tx)).unwrap();
        let ids: Vec<(&str, Option<&str>, i64)> = all
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_deref(), s.devices))
            .collect();
        assert_eq!(
            ids,
            [
                ("suixian-lishan", None, 1),
                ("suixian-shangshi", Some("尚市镇便民服务中心"), 0)
            ]
        );
        let audit: i64 = w
            .run(|tx| {
                tx.query_row(
                    "SELECT count(*) FROM audit WHERE action = 'site.add' AND who = 'wangke'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(audit, 1);
    }
}
