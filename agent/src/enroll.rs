//! `sunlight-agent enroll`: a box joins the county with a one-time token (issue 7, decision 0006).
//!
//! Both of the box's keys are made here and never leave it: the ed25519 batch-signing key
//! (`device.key`, as `sunlight-agent init` makes it) and a TLS key (`box.key`, ECDSA P-256), both
//! 0600 in the data directory. The hub gets their public halves — the signing key, and a
//! certificate request for the TLS key — with the token (`POST /api/v1/enroll`), and answers with
//! the box's certificate, the enrollment CA that signed it, the county CA and the box's agent.toml,
//! which are written here.
//!
//! A link may drop after the hub said yes and before the answer arrived: the keys are kept with a
//! note (`enroll.pending`), and running the same command again reuses them; the hub answers the
//! same box with the same certificate again.

use crate::AgentConfig;
use crate::outbox::Outbox;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sunlight_protocol::{DeviceId, SiteId};
use thiserror::Error;

/// What enrollment could not do, and what the technician does about it.
#[derive(Debug, Error)]
pub enum EnrollError {
    /// Refused here, before anything was sent.
    #[error("{0}")]
    Refused(String),
    /// The hub could not be reached or did not answer as a hub.
    #[error("{0}")]
    Hub(String),
    /// The hub said no: its message, and what to do.
    #[error("the hub refused the enrollment ({status}): {message}\n{next}")]
    HubRefused {
        status: u16,
        reason: String,
        message: String,
        next: String,
    },
    #[error(transparent)]
    Agent(#[from] crate::Error),
}

/// `sunlight-agent enroll`'s arguments.
#[derive(Debug, Clone)]
pub struct EnrollArgs {
    /// The hub's HTTP address, `https://hub.suixian.gov.cn`.
    pub hub: String,
    pub token: String,
    pub site: SiteId,
    pub device: DeviceId,
    pub data_dir: PathBuf,
    /// The agent.toml to write.
    pub config: PathBuf,
    /// The county CA's SHA-256 fingerprint the token's printout gave (hex, colons allowed).
    pub ca_sha256: Option<String>,
    /// A CA to trust for an https:// hub besides the system's (e.g. the county CA).
    pub hub_ca: Option<PathBuf>,
    /// Enroll even though this box has keys or a config (they are moved aside).
    pub force: bool,
    /// Update verifying keys from an offline bundle: written to `[update] verifying_keys` when
    /// the hub's answer has none (a hub from before it sent them).
    pub update_keys: Vec<String>,
    /// The hub's down-link keys from an offline bundle: written to `[hub] verifying_keys` when the
    /// hub's answer has none.
    pub hub_keys: Vec<String>,
}

/// An offline bundle (`sunlight-hub enroll token --bundle DIR`): `enroll.toml` and `ca.pem`.
#[derive(Debug, Deserialize)]
struct BundleFile {
    hub: String,
    site: String,
    device: String,
    token: String,
    ca_sha256: Option<String>,
    #[serde(default)]
    update_verifying_keys: Vec<String>,
    #[serde(default)]
    hub_verifying_keys: Vec<String>,
}

impl EnrollArgs {
    /// The arguments from a bundle directory.
    pub fn from_bundle(
        dir: &Path,
        data_dir: PathBuf,
        config: PathBuf,
        force: bool,
    ) -> Result<EnrollArgs, EnrollError> {
        let path = dir.join("enroll.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EnrollError::Refused(format!(
                "reading {}: {e}. Pass the directory 'sunlight-hub enroll token --bundle' wrote \
                 (it holds enroll.toml and ca.pem)",
                path.display()
            ))
        })?;
        let b: BundleFile = toml::from_str(&text)
            .map_err(|e| EnrollError::Refused(format!("{}: {e}", path.display())))?;
        let bad = |what: &str, e: sunlight_protocol::IdError| {
            EnrollError::Refused(format!("{}: {what}: {e}", path.display()))
        };
        let ca = dir.join("ca.pem");
        sunlight_protocol::update::verifying_keys(&b.update_verifying_keys).map_err(|e| {
            EnrollError::Refused(format!(
                "{}: update_verifying_keys: {e}. Ask the county operator for a new bundle",
                path.display()
            ))
        })?;
        sunlight_protocol::down::trusted_keys(&b.hub_verifying_keys).map_err(|e| {
            EnrollError::Refused(format!(
                "{}: hub_verifying_keys: {e}. Ask the county operator for a new bundle",
                path.display()
            ))
        })?;
        Ok(EnrollArgs {
            hub: b.hub,
            token: b.token,
            site: SiteId::new(b.site).map_err(|e| bad("site", e))?,
            device: DeviceId::new(b.device).map_err(|e| bad("device", e))?,
            data_dir,
            config,
            // The bundle's CA is the pin when the bundle names no fingerprint.
            ca_sha256: b.ca_sha256.or_else(|| {
                std::fs::read_to_string(&ca)
                    .ok()
                    .and_then(|pem| pem_sha256(&pem))
            }),
            hub_ca: ca.is_file().then_some(ca),
            force,
            update_keys: b.update_verifying_keys,
            hub_keys: b.hub_verifying_keys,
        })
    }
}

/// What the box sends (the hub's `EnrollRequest`).
#[derive(Debug, Serialize)]
struct Request<'a> {
    token: &'a str,
    site: &'a str,
    device: &'a str,
    ed25519_public_key: String,
    csr_pem: String,
    data_dir: String,
    hub_url: &'a str,
}

/// What the hub answers (its `EnrollAnswer`; unknown fields are ignored).
#[derive(Debug, Deserialize)]
struct Answer {
    site: String,
    device: String,
    certificate_pem: String,
    chain_pem: String,
    ca_pem: String,
    broker_url: String,
    agent_config_toml: String,
    serial: String,
    not_after: String,
    #[serde(default)]
    repeated: bool,
}

/// What was written.
#[derive(Debug)]
pub struct Enrolled {
    pub site: SiteId,
    pub device: DeviceId,
    pub config: PathBuf,
    pub signing_key: PathBuf,
    pub public_key: String,
    pub tls_key: PathBuf,
    pub certificate: PathBuf,
    pub ca: PathBuf,
    pub ca_sha256: String,
    /// The CA matched the fingerprint given with `--ca-sha256`.
    pub ca_pinned: bool,
    pub broker_url: String,
    pub serial: String,
    pub not_after: String,
    /// The earlier keys, outbox and config were moved here (`--force`).
    pub moved_aside: Option<PathBuf>,
    /// Events the earlier identity had not delivered (they stay in the moved outbox).
    pub unsent_before: u64,
    /// Keys from an unfinished enrollment were used again.
    pub resumed: bool,
    /// The hub had enrolled this box already and sent the same answer again.
    pub repeated: bool,
    /// How many update verifying keys the config has (`[update] verifying_keys`).
    pub update_keys: usize,
}

const PENDING: &str = "enroll.pending";

/// Enrolls this box. Nothing at the hub changes unless the token is good; nothing here is
/// overwritten without `force`.
pub fn enroll(args: &EnrollArgs) -> Result<Enrolled, EnrollError> {
    let data_dir = std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone());
    let config_path = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
    let hub = args.hub.trim().trim_end_matches('/').to_string();
    let over_tls = check_hub_url(&hub, args.ca_sha256.is_some())?;
    let pin = args.ca_sha256.as_deref().map(normalize_fingerprint);
    if let Some(pin) = &pin {
        if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EnrollError::Refused(format!(
                "--ca-sha256 {:?} is not a SHA-256 fingerprint (64 hex digits): copy it from the \
                 token's printout",
                args.ca_sha256.as_deref().unwrap_or_default()
            )));
        }
    }
    let signing_path = data_dir.join("device.key");
    let tls_path = data_dir.join("box.key");
    let pending_path = data_dir.join(PENDING);
    let this_box = format!("{} {}", args.site, args.device);

    // An enrolled or set-up box is not enrolled again by accident.
    if config_path.exists() && !args.force {
        return Err(EnrollError::Refused(format!(
            "{} exists: this box is set up already. To check it: sunlight-agent status. To enroll \
             it again as a new identity (a new device id from the county), add --force: the old \
             keys, outbox and config are moved aside, not deleted.",
            config_path.display()
        )));
    }
    let has_keys = signing_path.exists() || tls_path.exists();
    let pending = std::fs::read_to_string(&pending_path).ok();
    let resumed = has_keys && !args.force && pending.as_deref().map(str::trim) == Some(&this_box);
    let mut moved_aside = None;
    let mut unsent_before = 0;
    if has_keys && !resumed {
        if !args.force {
            let what = match pending {
                Some(p) => format!(
                    "keys of an unfinished enrollment as {}",
                    p.trim().replace(' ', "/")
                ),
                None => "this box's keys (device.key / box.key)".into(),
            };
            return Err(EnrollError::Refused(format!(
                "{} already holds {what}. To enroll as {}/{} with new keys, add --force: \
                 the old keys and outbox are moved aside, not deleted.",
                data_dir.display(),
                args.site,
                args.device
            )));
        }
        let outbox = data_dir.join("outbox.db");
        if outbox.exists() {
            unsent_before = Outbox::inspect(&outbox).map(|b| b.events).unwrap_or(0);
        }
        moved_aside = Some(move_aside(&data_dir)?);
    }
    if config_path.exists() {
        // --force: the earlier config is kept beside the new one.
        let kept = config_path.with_extension(format!("toml.replaced-{}", now_stamp()));
        std::fs::rename(&config_path, &kept)
            .map_err(|e| crate::Error::io(format!("moving {} aside", config_path.display()), e))?;
    }

    // The keys, made here. `init` makes (or, resuming, reads) the signing key.
    let signing = crate::run::init(&stub_config(&data_dir, &args.site, &args.device)?)?;
    adopt_owner(&signing_path, &data_dir);
    let tls = if resumed && tls_path.exists() {
        let pem = std::fs::read_to_string(&tls_path)
            .map_err(|e| crate::Error::io(format!("reading {}", tls_path.display()), e))?;
        KeyPair::from_pem(&pem).map_err(|e| {
            EnrollError::Refused(format!(
                "{} is not a private key ({e}); enroll again with --force to make new keys",
                tls_path.display()
            ))
        })?
    } else {
        let key = KeyPair::generate()
            .map_err(|e| EnrollError::Refused(format!("making the TLS key: {e}")))?;
        write_file(&tls_path, key.serialize_pem().as_bytes(), 0o600, true)?;
        adopt_owner(&tls_path, &data_dir);
        key
    };
    write_file(&pending_path, this_box.as_bytes(), 0o644, false)?;
    let cn = format!("{}.{}", args.site, args.device);
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, &cn);
    let csr_pem = params
        .serialize_request(&tls)
        .and_then(|csr| csr.pem())
        .map_err(|e| EnrollError::Refused(format!("making the certificate request: {e}")))?;

    // Ask the hub.
    let request = Request {
        token: args.token.trim(),
        site: args.site.as_str(),
        device: args.device.as_str(),
        ed25519_public_key: signing.public().to_base64(),
        csr_pem,
        data_dir: data_dir.to_string_lossy().into_owned(),
        hub_url: &hub,
    };
    let answer = post(&hub, args.hub_ca.as_deref(), &request, &data_dir)?;

    // Check the answer before writing any of it.
    if answer.site != args.site.as_str() || answer.device != args.device.as_str() {
        return Err(EnrollError::Hub(format!(
            "the hub answered for {}/{}, not {}/{}: is {hub} the county hub?",
            answer.site, answer.device, args.site, args.device
        )));
    }
    let ca_sha256 = pem_sha256(&answer.ca_pem).ok_or_else(|| {
        EnrollError::Hub("the hub's answer holds no county CA certificate".into())
    })?;
    if let Some(pin) = &pin {
        if *pin != ca_sha256 {
            return Err(EnrollError::Hub(format!(
                "the county CA the hub sent has the fingerprint {ca_sha256}, not {pin} as given \
                 with --ca-sha256. Nothing was written. Check that {hub} is the county hub and \
                 that the fingerprint was copied right; tell the county operator."
            )));
        }
    }
    if pem_sha256(&answer.certificate_pem).is_none() || pem_sha256(&answer.chain_pem).is_none() {
        return Err(EnrollError::Hub(
            "the hub's answer holds no certificate".into(),
        ));
    }
    let mut config_text = answer.agent_config_toml.clone();
    let mut config = AgentConfig::parse(&config_text, &config_path)?;
    let has_update_table = toml::from_str::<toml::Table>(&config_text)
        .map(|t| t.contains_key("update"))
        .unwrap_or(true);
    if config.update.verifying_keys.is_empty() && !args.update_keys.is_empty() && !has_update_table
    {
        // A hub from before enroll answers carried the keys: the bundle's are written instead.
        let keys: Vec<String> = args
            .update_keys
            .iter()
            .map(|k| format!("\"{}\"", k.trim()))
            .collect();
        config_text.push_str(&format!(
            "\n[update]\n# Who may sign this box's agent updates (from the enrollment bundle).\n\
             verifying_keys = [{}]\n",
            keys.join(", ")
        ));
        config = AgentConfig::parse(&config_text, &config_path)?;
    }
    if config.hub.verifying_keys.is_empty() {
        // A box that cannot check the hub's seal would never delete an event nor run a command.
        if args.hub_keys.is_empty() || !config_text.contains("\n[hub]\n") {
            return Err(EnrollError::Hub(
                "the hub's answer names no down-link key ([hub] verifying_keys), so this box could \
                 not trust its acks and commands; nothing was written. The hub needs Sunlight 0.2 \
                 or later (tell the county operator)"
                    .into(),
            ));
        }
        let keys: Vec<String> = args
            .hub_keys
            .iter()
            .map(|k| format!("\"{}\"", k.trim()))
            .collect();
        config_text = config_text.replacen(
            "\n[hub]\n",
            &format!(
                "\n[hub]\n# The hub's down-link keys (from the enrollment bundle).\nverifying_keys = [{}]\n",
                keys.join(", ")
            ),
            1,
        );
        config = AgentConfig::parse(&config_text, &config_path)?;
    }
    check_given_config(&config, over_tls)?;
    let cert_path = data_dir.join("box.pem");
    let ca_path = data_dir.join("ca.pem");
    let names_ours = config.site == args.site
        && config.device == args.device
        && config.data_dir == data_dir
        && config.hub.ca_file.as_deref() == Some(ca_path.as_path())
        && config.hub.cert_file.as_deref() == Some(cert_path.as_path())
        && config.hub.key_file.as_deref() == Some(tls_path.as_path());
    if !names_ours {
        return Err(EnrollError::Hub(format!(
            "the agent.toml the hub sent names other files than this box's in {}; nothing was \
             written. Tell the county operator (hub version?).",
            data_dir.display()
        )));
    }

    // Write: the certificate followed by its chain (what the box sends), the CA, the config.
    let mut chain = answer.certificate_pem.clone();
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(&answer.chain_pem);
    write_file(&cert_path, chain.as_bytes(), 0o644, false)?;
    adopt_owner(&cert_path, &data_dir);
    write_file(&ca_path, answer.ca_pem.as_bytes(), 0o644, false)?;
    adopt_owner(&ca_path, &data_dir);
    if let Some(dir) = config_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::Error::io(format!("creating {}", dir.display()), e))?;
    }
    write_file(&config_path, config_text.as_bytes(), 0o640, false)?;
    if let Some(dir) = config_path.parent() {
        adopt_group(&config_path, dir);
    }
    let _ = std::fs::remove_file(&pending_path);
    Ok(Enrolled {
        site: args.site.clone(),
        device: args.device.clone(),
        config: config_path,
        signing_key: signing_path,
        public_key: signing.public().to_base64(),
        tls_key: tls_path,
        certificate: cert_path,
        ca: ca_path,
        ca_sha256,
        ca_pinned: pin.is_some(),
        broker_url: answer.broker_url,
        serial: answer.serial,
        not_after: answer.not_after,
        moved_aside,
        unsent_before,
        resumed,
        repeated: answer.repeated,
        update_keys: config.update.verifying_keys.len(),
    })
}

/// Whether a host is this box itself: 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks the hub's address before anything is made or sent: `https://` with the county CA pinned
/// (`--ca-sha256`, or the bundle's), or `http://` to this box itself only (tests and the demo run a
/// hub on loopback). Enrollment sends the one-time token and takes the CA, the certificate, the
/// down-link keys and the config from the answer: over plain http on a network anyone between the
/// box and the hub could read the token and answer instead. Returns whether it is over TLS.
pub fn check_hub_url(hub: &str, pinned: bool) -> Result<bool, EnrollError> {
    let example = "https://hub.suixian.gov.cn";
    let url = reqwest::Url::parse(hub).map_err(|e| {
        EnrollError::Refused(format!(
            "--hub {hub:?} is not an address ({e}): give the hub's address as the county operator \
             printed it, e.g. {example}"
        ))
    })?;
    match url.scheme() {
        "https" if pinned => Ok(true),
        "https" => Err(EnrollError::Refused(format!(
            "--hub {hub}: enrolling over https needs the county CA's fingerprint from the token's \
             printout (--ca-sha256 …), or an offline bundle (--bundle DIR), so that this box \
             trusts no other CA; nothing was sent"
        ))),
        "http" if is_loopback(&url) => Ok(false),
        "http" => Err(EnrollError::Refused(format!(
            "--hub {hub}: enrollment over plain http is refused — the token and the keys this box \
             will trust would cross the network readable and replaceable. Plain http is accepted \
             only to this box itself (127.0.0.0/8, ::1, localhost: tests and the demo). Use the \
             hub's https:// address with --ca-sha256 as the county operator printed them, e.g. \
             {example}, or an offline bundle (--bundle DIR); nothing was sent"
        ))),
        other => Err(EnrollError::Refused(format!(
            "--hub {hub:?}: {other}:// is not a hub address; give it as the county operator \
             printed it, e.g. {example}"
        ))),
    }
}

/// Checks the agent.toml the hub answers with: a box enrolled over TLS talks to its broker over TLS
/// (`mqtts://`) too, and sends its pictures to an `https://` API (or to one on this box itself).
pub fn check_given_config(config: &AgentConfig, over_tls: bool) -> Result<(), EnrollError> {
    if !over_tls {
        return Ok(());
    }
    if !config.hub.broker.trim().starts_with("mqtts://") {
        return Err(EnrollError::Hub(format!(
            "the agent.toml the hub sent sets broker = {:?}: a box enrolled over https must reach \
             its broker over TLS (mqtts://); nothing was written. Tell the county operator (the \
             hub's --public-broker-url must be mqtts://)",
            config.hub.broker
        )));
    }
    if let Some(api) = &config.hub.api {
        let plain = reqwest::Url::parse(api)
            .map(|u| u.scheme() != "https" && !(u.scheme() == "http" && is_loopback(&u)))
            .unwrap_or(true);
        if plain {
            return Err(EnrollError::Hub(format!(
                "the agent.toml the hub sent sets api = {api:?}: a box enrolled over https must \
                 upload over https; nothing was written. Tell the county operator"
            )));
        }
    }
    Ok(())
}

/// The error body of the hub.
#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    reason: String,
}

fn post(
    hub: &str,
    hub_ca: Option<&Path>,
    request: &Request<'_>,
    data_dir: &Path,
) -> Result<Answer, EnrollError> {
    let again = format!(
        "The keys made for this box are kept in {}; run the same command again to retry (they \
         are used again).",
        data_dir.display()
    );
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60));
    if let Some(ca) = hub_ca {
        let pem = std::fs::read(ca)
            .map_err(|e| crate::Error::io(format!("reading {}", ca.display()), e))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| EnrollError::Refused(format!("{}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| EnrollError::Hub(format!("making the HTTP client: {e}")))?;
    let url = format!("{hub}/api/v1/enroll");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the runtime", e))?;
    rt.block_on(async {
        let response = client.post(&url).json(request).send().await.map_err(|e| {
            EnrollError::Hub(format!(
                "could not reach the hub at {url}: {}.\nCheck the address and this box's link \
                 (e.g. curl {hub}/healthz). {again}",
                causes(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            EnrollError::Hub(format!(
                "the link dropped while the hub answered ({}). {again}",
                causes(&e)
            ))
        })?;
        if status.is_success() {
            return serde_json::from_slice::<Answer>(&body).map_err(|e| {
                EnrollError::Hub(format!(
                    "{url} answered {status} but not with an enrollment ({e}): is this the county \
                     hub's address? {again}"
                ))
            });
        }
        let refusal: Refusal = serde_json::from_slice(&body).map_err(|_| {
            EnrollError::Hub(format!(
                "{url} answered {status} with no Sunlight error: is this the county hub's address \
                 (and its version recent enough to enroll boxes)? {again}"
            ))
        })?;
        let next = match (status.as_u16(), refusal.reason.as_str()) {
            (401, _) => format!(
                "Nothing changed at the hub. Get a new token from the county operator, then run \
                 the command again with it. {again}"
            ),
            (409, _) => "Ask the county operator for a token for a new device id, then run the \
                         command with that --device and --force."
                .to_string(),
            (503, _) => format!("Ask the county operator to enable enrollment at the hub. {again}"),
            (422, _) => "This box's request was malformed: report it with this message.".into(),
            _ => again.clone(),
        };
        Err(EnrollError::HubRefused {
            status: status.as_u16(),
            reason: refusal.reason,
            message: refusal.error,
            next,
        })
    })
}

/// An error with its causes ("error sending request: connection refused").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The config `run::init` needs to make the signing key: only the identity and the data
/// directory are used.
fn stub_config(
    data_dir: &Path,
    site: &SiteId,
    device: &DeviceId,
) -> Result<AgentConfig, EnrollError> {
    let mut hub = toml::Table::new();
    hub.insert("broker".into(), "mqtt://127.0.0.1:1883".into());
    let mut t = toml::Table::new();
    t.insert("site".into(), site.as_str().into());
    t.insert("device".into(), device.as_str().into());
    t.insert(
        "data_dir".into(),
        data_dir.to_string_lossy().into_owned().into(),
    );
    t.insert("hub".into(), toml::Value::Table(hub));
    toml::Value::Table(t)
        .try_into()
        .map_err(|e| EnrollError::Refused(format!("preparing the data directory: {e}")))
}

/// Moves the box's earlier keys, certificates, outbox and spool into `replaced-<time>/`.
fn move_aside(data_dir: &Path) -> Result<PathBuf, EnrollError> {
    let target = data_dir.join(format!("replaced-{}", now_stamp()));
    std::fs::create_dir_all(&target)
        .map_err(|e| crate::Error::io(format!("creating {}", target.display()), e))?;
    for name in [
        "device.key",
        "box.key",
        "box.pem",
        "ca.pem",
        "outbox.db",
        "outbox.db-wal",
        "outbox.db-shm",
        "blobs",
        PENDING,
    ] {
        let from = data_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, target.join(name))
                .map_err(|e| crate::Error::io(format!("moving {} aside", from.display()), e))?;
        }
    }
    Ok(target)
}

fn now_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// Writes a file whole (temporary file, fsync, rename) with `mode` from its first byte;
/// `new_only` refuses to replace an existing file (keys).
fn write_file(path: &Path, bytes: &[u8], mode: u32, new_only: bool) -> Result<(), EnrollError> {
    use std::io::Write;
    let io = |what: &str, e| crate::Error::io(format!("{what} {}", path.display()), e);
    if new_only && path.exists() {
        return Err(EnrollError::Refused(format!(
            "{} exists; enroll with --force to make new keys",
            path.display()
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = opts
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io("writing", e))?;
    Ok(())
}

/// Run as root, files take the owner of the data directory (the agent's service user), so the
/// agent can read its keys; otherwise they are ours already.
fn adopt_owner(path: &Path, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
}

/// The config takes the group of its directory (`/etc/sunlight` is root:sunlight).
fn adopt_group(path: &Path, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let _ = std::os::unix::fs::chown(path, None, Some(meta.gid()));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
}

/// `AB:CD:…` or `abcd…` → `abcd…`.
fn normalize_fingerprint(text: &str) -> String {
    let text = text.trim();
    let text = text
        .strip_prefix("sha256 Fingerprint=")
        .or_else(|| text.strip_prefix("SHA256 Fingerprint="))
        .unwrap_or(text);
    text.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The SHA-256 (hex) of the first certificate's DER in `pem`: `openssl x509 -fingerprint
/// -sha256` without the colons.
pub fn pem_sha256(pem: &str) -> Option<String> {
    use base64::Engine;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let end = start + pem.get(start..)?.find("-----END CERTIFICATE-----")?;
    let body: String = pem
        .get(start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    Some(hex::encode(Sha256::digest(der)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_compared_as_openssl_prints_them() {
        assert_eq!(normalize_fingerprint("AB:cd:01"), "abcd01");
        assert_eq!(normalize_fingerprint("sha256 Fingerprint=AB:CD"), "abcd");
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::default().self_signed(&key).unwrap();
        let pem = cert.pem();
        assert_eq!(
            pem_sha256(&pem),
            Some(hex::encode(Sha256::digest(cert.der())))
        );
        assert_eq!(pem_sha256("not a certificate"), None);
    }

    #[test]
    fn keys_stay_and_nothing_is_sent_when_a_box_is_set_up_already() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("agent.toml");
        std::fs::write(&config, "site = \"x\"\n").unwrap();
        let args = EnrollArgs {
            // Nothing listens here: a refusal must come before any request.
            hub: "http://127.0.0.1:9".into(),
            token: "x".into(),
            site: SiteId::new("suixian-shangshi").unwrap(),
            device: DeviceId::new("box-01").unwrap(),
            data_dir: tmp.path().join("data"),
            config: config.clone(),
            ca_sha256: None,
            hub_ca: None,
            force: false,
            update_keys: Vec::new(),
            hub_keys: Vec::new(),
        };
        let err = enroll(&args).unwrap_err().to_string();
        assert!(err.contains("set up already"), "{err}");
        std::fs::remove_file(&config).unwrap();
        std::fs::create_dir_all(&args.data_dir).unwrap();
        std::fs::write(args.data_dir.join("device.key"), "00").unwrap();
        let err = enroll(&args).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(
            std::fs::read_to_string(args.data_dir.join("device.key")).unwrap(),
            "00"
        );
    }

    #[test]
    fn plain_http_only_to_this_box_and_https_only_with_the_ca_pinned() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(!check_hub_url(local, false).unwrap(), "{local}");
        }
        for remote in [
            "http://hub.suixian.gov.cn",
            "http://10.0.0.5:8080",
            "http://[fe80::1]",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com",
        ] {
            let err = check_hub_url(remote, true).unwrap_err().to_string();
            assert!(
                err.contains("plain http is refused")
                    && err.contains("127.0.0.0/8, ::1, localhost"),
                "{remote}: {err}"
            );
        }
        assert!(check_hub_url("https://hub.suixian.gov.cn", true).unwrap());
        let err = check_hub_url("https://hub.suixian.gov.cn", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--ca-sha256") && err.contains("--bundle"),
            "{err}"
        );
        for bad in ["ftp://hub", "hub.suixian.gov.cn", ""] {
            assert!(check_hub_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_box_enrolled_over_tls_takes_no_plain_broker_or_api() {
        let config = |broker: &str, api: &str| {
            AgentConfig::parse(
                &format!(
                    "site = \"suixian-shangshi\"\ndevice = \"box-01\"\ndata_dir = \"/var/lib/sunlight\"\n\
                     [hub]\nbroker = \"{broker}\"\nca_file = \"/var/lib/sunlight/ca.pem\"\n{api}"
                ),
                Path::new("agent.toml"),
            )
            .unwrap()
        };
        let tls = config(
            "mqtts://broker.suixian.gov.cn:8883",
            "api = \"https://hub.suixian.gov.cn\"\n",
        );
        check_given_config(&tls, true).unwrap();
        let plain = config("mqtt://broker.suixian.gov.cn:1883", "");
        let err = check_given_config(&plain, true).unwrap_err().to_string();
        assert!(
            err.contains("mqtts://") && err.contains("nothing was written"),
            "{err}"
        );
        // Enrolled over loopback http (tests, the demo): the hub's plain broker is taken.
        check_given_config(&plain, false).unwrap();
        let plain_api = config(
            "mqtts://broker.suixian.gov.cn:8883",
            "api = \"http://hub.suixian.gov.cn\"\n",
        );
        let err = check_given_config(&plain_api, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("upload over https"), "{err}");
    }
}
