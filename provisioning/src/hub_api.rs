//! `site add` and `device add`: the county operator registers a site and a box at a running hub
//! over its API (`POST /api/v1/sites`, `POST /api/v1/enroll/tokens`) with an API token of a
//! supervisor or admin account, from any machine that reaches the hub, instead of running
//! `sunlight-hub enroll token` on the hub host. The hub makes the token with the same code either
//! way (`sunlight_hub::enroll::issue_token`) and records who asked.
//!
//! Every refusal says what to do next: a token the hub does not know (401), an account that may
//! not do it (403), a site or box that is there already (409), a hub that cannot be reached.

use crate::Error;
use crate::progress;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sunlight_hub::enroll::BundleFile;

/// The environment variable `--token` falls back to.
pub const TOKEN_ENV: &str = "SUNLIGHT_API_TOKEN";

/// A hub's API, signed in with an API token.
pub struct HubApi {
    base: String,
    token: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// A site as the hub answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Site {
    pub id: String,
    pub name: Option<String>,
    pub registered: Option<String>,
    pub registered_by: Option<String>,
    pub devices: i64,
}

/// A box's one-time enrollment token as the hub answers it (shown once).
#[derive(Debug, Clone, Deserialize)]
pub struct Issued {
    pub site: String,
    pub device: String,
    pub token: String,
    pub expires: String,
    pub replaced: usize,
    pub ca_sha256: Option<String>,
    /// What the technician types on the box.
    pub command: String,
    pub bundle: Option<Vec<BundleFile>>,
    pub enrollment_enabled: bool,
}

/// What `device add` asks for.
#[derive(Debug, Clone)]
pub struct DeviceAdd<'a> {
    pub site: &'a str,
    pub device: &'a str,
    pub ttl_hours: u32,
    /// The hub's address as boxes reach it (may differ from the operator's `--hub`).
    pub box_hub_url: &'a str,
    pub bundle: bool,
}

/// The hub's error body.
#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
}

/// The text of an error and its causes (reqwest hides the interesting part in its sources).
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Checks a hub address: http(s), no path tricks; returned without the trailing slash.
pub fn check_url(url: &str, flag: &str) -> Result<String, Error> {
    let url = url.trim().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\\');
    if ok {
        Ok(url.to_owned())
    } else {
        Err(Error::Refused(format!(
            "{flag} {url:?}: give the hub's address, e.g. https://hub.suixian.gov.cn"
        )))
    }
}

impl HubApi {
    /// `token`: `--token`, else [`TOKEN_ENV`]; `ca_file`: a CA to trust for an https:// hub
    /// besides the system's (the county CA).
    pub fn new(hub: &str, token: Option<&str>, ca_file: Option<&Path>) -> Result<HubApi, Error> {
        let base = check_url(hub, "--hub")?;
        let token = token
            .map(str::to_owned)
            .or_else(|| std::env::var(TOKEN_ENV).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Refused(format!(
                    "no API token: pass --token slt_… or set {TOKEN_ENV}. At the hub, an admin \
                     makes one with: sunlight-hub user token --name <admin account> --label provisioning"
                ))
            })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(Error::io("reading", ca))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::bad_file(
                    ca,
                    format!("not a PEM certificate ({e}): pass the county CA's ca.pem"),
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| Error::Refused(format!("making the HTTP client: {}", causes(&e))))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Refused(format!("starting the HTTP runtime: {e}")))?;
        Ok(HubApi {
            base,
            token,
            client,
            rt,
        })
    }

    /// One call; a spinner while waiting; refusals turned into messages with a next step.
    fn call(&self, post: Option<&Value>, path: &str, what: &str) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let wait = progress::spinner(&format!("{what} at {}", self.base));
        let result = self.rt.block_on(async {
            let request = match post {
                Some(body) => self.client.post(&url).json(body),
                None => self.client.get(&url),
            };
            let response = request.bearer_auth(&self.token).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        wait.finish_and_clear();
        let (status, body) = result.map_err(|e| {
            let tls_hint = if self.base.starts_with("https://") {
                " For an https hub with a certificate of the county CA, pass --ca-file with the county's ca.pem."
            } else {
                ""
            };
            Error::Refused(format!(
                "could not reach the hub at {url}: {}.\nCheck --hub and this machine's link to it \
                 (e.g. curl {}/healthz).{tls_hint} Nothing was changed.",
                causes(&e),
                self.base
            ))
        })?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                Error::Refused(format!(
                    "{url} answered {status} but not with JSON: is {} a Sunlight hub?",
                    self.base
                ))
            });
        }
        let message = json
            .and_then(|v| serde_json::from_value::<Refusal>(v).ok())
            .map(|r| r.error)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        let next = match status.as_u16() {
            401 => "The hub does not know this API token (or it was revoked). An admin makes one \
                    at the hub with: sunlight-hub user token --name <admin account> --label \
                    provisioning; pass it with --token or SUNLIGHT_API_TOKEN."
                .to_owned(),
            403 => "Only supervisor and admin accounts register sites and boxes: use a token of \
                    such an account (technician and head accounts cannot)."
                .to_owned(),
            404 if path == "/api/v1/sites" || path == "/api/v1/enroll/tokens" => {
                if message.contains("not registered") {
                    "Nothing was changed.".to_owned()
                } else {
                    format!(
                        "{} has no such endpoint: is it a Sunlight hub of this version?",
                        self.base
                    )
                }
            }
            409 => "Nothing was changed.".to_owned(),
            _ => "Nothing was changed; see the hub's log for more.".to_owned(),
        };
        Err(Error::Refused(format!(
            "the hub refused {what} ({status}): {message}\n{next}"
        )))
    }

    /// `POST /api/v1/sites`.
    pub fn add_site(&self, id: &str, name: &str) -> Result<Site, Error> {
        let v = self.call(
            Some(&json!({ "id": id, "name": name })),
            "/api/v1/sites",
            &format!("registering site {id}"),
        )?;
        serde_json::from_value(v["site"].clone())
            .map_err(|e| Error::Refused(format!("the hub's answer is not a site: {e}")))
    }

    /// `GET /api/v1/sites`.
    pub fn sites(&self) -> Result<Vec<Site>, Error> {
        let v = self.call(None, "/api/v1/sites", "listing the sites")?;
        serde_json::from_value(v["sites"].clone())
            .map_err(|e| Error::Refused(format!("the hub's answer is not a site list: {e}")))
    }

    /// `POST /api/v1/enroll/tokens`.
    pub fn add_device(&self, d: &DeviceAdd<'_>) -> Result<Issued, Error> {
        let v = self.call(
            Some(&json!({
                "site": d.site, "device": d.device, "ttl_hours": d.ttl_hours,
                "hub_url": d.box_hub_url, "bundle": d.bundle,
            })),
            "/api/v1/enroll/tokens",
            &format!("an enrollment token for {}/{}", d.site, d.device),
        )?;
        serde_json::from_value(v)
            .map_err(|e| Error::Refused(format!("the hub's answer is not a token: {e}")))
    }
}

/// Writes a bundle's files into `dir` (a USB stick: each file synced before the next), with a
/// bar; returns their paths.
pub fn write_bundle(dir: &Path, files: &[BundleFile]) -> Result<Vec<PathBuf>, Error> {
    let bar = progress::steps(files.len() as u64, "writing the bundle");
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if f.name.contains(['/', '\\']) || f.name.starts_with('.') || f.name.is_empty() {
            bar.finish_and_clear();
            return Err(Error::Refused(format!(
                "the hub sent a bundle file named {:?}: refused; tell the county operator",
                f.name
            )));
        }
        bar.set_prefix(f.name.clone());
        let path = sunlight_hub::enroll::write_bundle_file(dir, f)
            .map_err(Error::io("writing", &dir.join(&f.name)))?;
        out.push(path);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}
