//! The county CA directory: the CA itself, the certificates issued from it (hub, broker, boxes),
//! the list of revoked boxes and the CRL the broker checks.
//!
//! Layout of `--dir` (everything a later command needs is read back from here):
//! ```text
//! ca.pem ca.key(0600)          the county CA
//! county.toml                  county name and hub host names, from init
//! issued.toml                  every certificate issued: role, identity, serial, expiry
//! revoked.toml  crl.pem        revoked boxes; the CRL (signed by the CA) for Mosquitto's crlfile
//! hub/server.pem server.key    the broker's (and hub's) TLS server certificate for the hub hosts
//! hub/hub.pem hub.key          the hub's own client identity at the broker (CN "hub")
//! hub/hub.toml                 a hub config skeleton
//! devices/<site>/<device>/     a box's certificate (and key, when made here), ca.pem, agent-hub.toml
//! broker.toml                  how broker-config was last run, so revoke can regenerate it
//! ```
//!
//! A box's certificate CN is `<site>.<device>` ([`device_cn`]): device ids repeat across sites
//! (every office has a `box-01`), and `.` is in neither id, so the CN names exactly one box and never
//! the hub (`hub` has no dot). Mosquitto's `use_identity_as_username` makes the CN the username
//! that the ACL names.

use crate::error::Error;
use crate::files::{self, Access};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use sunlight_protocol::{DeviceId, SiteId};

/// The username (certificate CN) of the hub at the broker.
pub const HUB_CN: &str = "hub";
/// How long each kind of certificate is valid. Long on purpose: there is no renewal over the
/// network yet, and an expired box certificate locks the box out until a technician visits.
pub const CA_YEARS: i64 = 20;
pub const SERVER_YEARS: i64 = 10;
pub const CLIENT_YEARS: i64 = 10;

/// The certificate CN (and broker username) of a box (the hub's enrollment uses the same).
pub fn device_cn(site: &SiteId, device: &DeviceId) -> String {
    sunlight_hub::enroll::box_cn(site, device)
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The broker's and hub's TLS server certificate.
    Server,
    /// The hub's client identity at the broker.
    Hub,
    /// A township box.
    Device,
    /// The hub's enrollment CA (`hub-signer`): an intermediate that signs boxes' requests online.
    EnrollmentCa,
}

/// `county.toml`: what init was told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct County {
    pub county: String,
    pub hub_hosts: Vec<String>,
    pub created: String,
}

/// One line of `issued.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCert {
    pub role: Role,
    pub cn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Hex, as `openssl x509 -serial` prints it (lower case here).
    pub serial: String,
    pub issued_at: String,
    pub not_after: String,
    /// `generated here` (the key was made by this tool) or `csr` (the key never left the box).
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedList {
    #[serde(default)]
    pub cert: Vec<IssuedCert>,
}

/// One line of `revoked.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub site: String,
    pub device: String,
    pub cn: String,
    pub serials: Vec<String>,
    pub at: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedList {
    #[serde(default)]
    pub revoked: Vec<Revocation>,
}

impl RevokedList {
    pub fn find(&self, site: &str, device: &str) -> Option<&Revocation> {
        self.revoked
            .iter()
            .find(|r| r.site == site && r.device == device)
    }
}

/// The county CA directory given with `--dir`.
#[derive(Debug, Clone)]
pub struct CaDir {
    root: PathBuf,
}

impl CaDir {
    pub fn new(root: &Path) -> CaDir {
        CaDir {
            root: files::absolute(root),
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn county_file(&self) -> PathBuf {
        self.root.join("county.toml")
    }
    pub fn issued_file(&self) -> PathBuf {
        self.root.join("issued.toml")
    }
    pub fn revoked_file(&self) -> PathBuf {
        self.root.join("revoked.toml")
    }
    pub fn crl(&self) -> PathBuf {
        self.root.join("crl.pem")
    }
    pub fn hub_dir(&self) -> PathBuf {
        self.root.join("hub")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.hub_dir().join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.hub_dir().join("server.key")
    }
    pub fn hub_cert(&self) -> PathBuf {
        self.hub_dir().join("hub.pem")
    }
    pub fn hub_key(&self) -> PathBuf {
        self.hub_dir().join("hub.key")
    }
    pub fn hub_config(&self) -> PathBuf {
        self.hub_dir().join("hub.toml")
    }
    pub fn device_dir(&self, site: &SiteId, device: &DeviceId) -> PathBuf {
        self.root
            .join("devices")
            .join(site.as_str())
            .join(device.as_str())
    }
    pub fn broker_plan(&self) -> PathBuf {
        self.root.join("broker.toml")
    }

    /// Whether a CA lives here already (either half of it).
    pub fn has_ca(&self) -> bool {
        self.ca_cert().exists() || self.ca_key().exists()
    }

    /// What init recorded; a clear error when `--dir` holds no CA.
    pub fn county(&self) -> Result<County, Error> {
        if !self.has_ca() || !self.county_file().exists() {
            return Err(Error::Refused(format!(
                "{} holds no county CA. Pass the --dir that 'sunlight-provision init' wrote, or create \
                 the CA first: sunlight-provision init --dir {} --county NAME --hub-host HOST",
                self.root.display(),
                self.root.display()
            )));
        }
        read_toml(&self.county_file(), "reading the county file")
    }

    pub fn issued(&self) -> Result<IssuedList, Error> {
        read_toml_or_default(
            &self.issued_file(),
            "reading the list of issued certificates",
        )
    }

    pub fn revoked(&self) -> Result<RevokedList, Error> {
        read_toml_or_default(&self.revoked_file(), "reading the list of revoked boxes")
    }

    pub(crate) fn save_issued(&self, list: &IssuedList) -> Result<(), Error> {
        write_toml(
            &self.issued_file(),
            "# Every certificate issued from this CA (written by sunlight-provision; do not edit).\n",
            list,
        )
    }

    fn save_revoked(&self, list: &RevokedList) -> Result<(), Error> {
        write_toml(
            &self.revoked_file(),
            "# Revoked boxes (written by sunlight-provision revoke; do not edit). They are in crl.pem\n\
             # and left out of every broker config generated from this directory.\n",
            list,
        )
    }

    /// The CA, ready to sign.
    pub fn issuer(&self) -> Result<Issuer<'static, KeyPair>, Error> {
        self.county()?;
        let cert = files::read("reading the CA certificate", &self.ca_cert())?;
        let key = files::read("reading the CA key", &self.ca_key())?;
        let key = KeyPair::from_pem(&key).map_err(|e| {
            Error::bad_file(&self.ca_key(), format!("not a private key in PEM ({e})"))
        })?;
        Issuer::from_ca_cert_pem(&cert, key).map_err(|e| {
            Error::bad_file(
                &self.ca_cert(),
                format!("not a CA certificate in PEM ({e})"),
            )
        })
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, Error> {
    let text = files::read(what, path)?;
    toml::from_str(&text).map_err(|e| Error::bad_file(path, e.to_string()))
}

fn read_toml_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    what: &'static str,
) -> Result<T, Error> {
    if path.exists() {
        read_toml(path, what)
    } else {
        Ok(T::default())
    }
}

pub(crate) fn write_toml<T: Serialize>(path: &Path, header: &str, value: &T) -> Result<(), Error> {
    let body = toml::to_string(value).map_err(|e| Error::Crypto {
        what: format!("writing {}", path.display()),
        detail: e.to_string(),
    })?;
    files::write(path, format!("{header}{body}").as_bytes(), Access::Public)
}

/// Now, to the second, in UTC.
pub fn now() -> time::OffsetDateTime {
    sunlight_hub::enroll::cert_now()
}

/// RFC 3339 (UTC) for the lists.
pub(crate) fn stamp(t: time::OffsetDateTime) -> String {
    sunlight_hub::enroll::stamp(t)
}

pub(crate) fn years(n: i64) -> time::Duration {
    sunlight_hub::enroll::years(n)
}

/// A fresh random positive 128-bit serial number, and its hex form.
pub(crate) fn serial() -> Result<(SerialNumber, String), Error> {
    sunlight_hub::enroll::random_serial().map_err(random_failed)
}

fn random_failed(e: getrandom::Error) -> Error {
    Error::Crypto {
        what: "drawing a serial number".into(),
        detail: e.to_string(),
    }
}

pub(crate) fn serial_from_hex(hex: &str) -> Option<SerialNumber> {
    if hex.len() % 2 != 0 || hex.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    bytes.map(|b| SerialNumber::from_slice(&b))
}

/// Checks a county name: printable, not empty, at most 64 characters.
pub fn check_county(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Error::Refused(format!(
            "--county {name:?}: give the county's name, 1 to 64 printable characters (e.g. 随县 or Suixian)"
        )));
    }
    Ok(name.to_string())
}

/// A hub host as a subject alternative name: an IP address, or a DNS name.
pub fn host_san(host: &str) -> Result<SanType, Error> {
    let host = host.trim();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        if let Ok(name) = host.to_ascii_lowercase().try_into() {
            return Ok(SanType::DnsName(name));
        }
    }
    Err(Error::Refused(format!(
        "--hub-host {host:?} is neither an IP address nor a DNS name: give the names and addresses \
         boxes use to reach the hub's broker, comma-separated (e.g. hub.suixian.gov.cn,10.20.0.5)"
    )))
}

/// A client certificate's parameters: the one profile the hub's enrollment CA signs boxes with
/// too (`sunlight_hub::enroll::box_cert_params`).
fn client_params(
    cn: &str,
    county: &str,
    unit: Option<&str>,
) -> Result<(CertificateParams, String, time::OffsetDateTime), Error> {
    let not_after = now() + years(CLIENT_YEARS);
    let (params, hex) = sunlight_hub::enroll::box_cert_params(cn, county, unit, not_after)
        .map_err(random_failed)?;
    Ok((params, hex, not_after))
}

/// What init made.
#[derive(Debug)]
pub struct InitReport {
    pub made: Vec<(PathBuf, &'static str)>,
    pub replaced: Option<PathBuf>,
}

/// Creates the county CA, the broker/hub server certificate, the hub's client certificate, an
/// empty CRL and the hub config skeleton. Refuses to touch an existing CA unless `force`, and
/// then moves the old one aside rather than deleting it.
pub fn init(dir: &CaDir, county: &str, hosts: &[String], force: bool) -> Result<InitReport, Error> {
    let county = check_county(county)?;
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err(Error::Refused(
            "--hub-host is empty: give the names or addresses boxes use to reach the hub's broker \
             (e.g. --hub-host hub.suixian.gov.cn,10.20.0.5)"
                .into(),
        ));
    }
    let sans = hosts
        .iter()
        .map(|h| host_san(h))
        .collect::<Result<Vec<_>, _>>()?;

    let mut replaced = None;
    if dir.has_ca() {
        if !force {
            let since = dir
                .county()
                .map(|c| format!(" (county {}, made {})", c.county, c.created))
                .unwrap_or_default();
            return Err(Error::Refused(format!(
                "{} already holds a county CA{since}. Every box certificate issued from it would \
                 stop working if it were replaced, so init leaves it alone.\n\
                 - To keep using it: nothing to do; issue box certificates with \
                 'sunlight-provision device cert --dir {}'.\n\
                 - To start over (every box must get a new certificate): run init again with --force; \
                 the old CA is moved to a replaced-<time>/ folder inside --dir, not deleted.",
                dir.root().display(),
                dir.root().display()
            )));
        }
        replaced = Some(move_aside(dir)?);
    }

    let start = now();
    // The CA: signs end-entity certificates, CRLs and at most one level of intermediates (path
    // length 1): the hub's enrollment CA (`hub-signer`, decision 0006).
    let ca_key = KeyPair::generate().map_err(Error::crypto("generating the CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{county} Sunlight CA"));
    ca.distinguished_name
        .push(DnType::OrganizationName, county.as_str());
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = start - time::Duration::hours(1);
    ca.not_after = start + years(CA_YEARS);
    ca.serial_number = Some(serial()?.0);
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(Error::crypto("signing the CA certificate"))?;
    // The key first: a CA certificate without its key on disk would be useless.
    files::write(
        &dir.ca_key(),
        ca_key.serialize_pem().as_bytes(),
        Access::Secret,
    )?;
    files::write(&dir.ca_cert(), ca_cert.pem().as_bytes(), Access::Public)?;
    let issuer = Issuer::new(ca, ca_key);

    // The broker's (and hub's) server certificate for every hub host.
    let server_key = KeyPair::generate().map_err(Error::crypto("generating the server key"))?;
    let mut server = CertificateParams::default();
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    server
        .distinguished_name
        .push(DnType::OrganizationName, county.as_str());
    server.subject_alt_names = sans;
    server.not_before = start - time::Duration::hours(1);
    server.not_after = start + years(SERVER_YEARS);
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let (sn, server_serial) = serial()?;
    server.serial_number = Some(sn);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(Error::crypto("signing the server certificate"))?;
    files::write(
        &dir.server_key(),
        server_key.serialize_pem().as_bytes(),
        Access::Secret,
    )?;
    files::write(
        &dir.server_cert(),
        server_cert.pem().as_bytes(),
        Access::Public,
    )?;

    // The hub's client identity at the broker.
    let hub_key = KeyPair::generate().map_err(Error::crypto("generating the hub key"))?;
    let (hub, hub_serial, hub_not_after) = client_params(HUB_CN, &county, None)?;
    let hub_cert = hub
        .signed_by(&hub_key, &issuer)
        .map_err(Error::crypto("signing the hub certificate"))?;
    files::write(
        &dir.hub_key(),
        hub_key.serialize_pem().as_bytes(),
        Access::Secret,
    )?;
    files::write(&dir.hub_cert(), hub_cert.pem().as_bytes(), Access::Public)?;

    let issued = IssuedList {
        cert: vec![
            IssuedCert {
                role: Role::Server,
                cn: hosts[0].clone(),
                site: None,
                device: None,
                serial: server_serial,
                issued_at: stamp(start),
                not_after: stamp(start + years(SERVER_YEARS)),
                key: "generated here".into(),
            },
            IssuedCert {
                role: Role::Hub,
                cn: HUB_CN.into(),
                site: None,
                device: None,
                serial: hub_serial,
                issued_at: stamp(start),
                not_after: stamp(hub_not_after),
                key: "generated here".into(),
            },
        ],
    };
    dir.save_issued(&issued)?;
    dir.save_revoked(&RevokedList::default())?;
    write_toml(
        &dir.county_file(),
        "# The county CA's facts, from sunlight-provision init (do not edit).\n",
        &County {
            county: county.clone(),
            hub_hosts: hosts.clone(),
            created: stamp(start),
        },
    )?;
    write_crl_with(dir, &issuer, &RevokedList::default())?;
    files::write(
        &dir.hub_config(),
        crate::hub_skeleton::text(&county, &hosts, dir).as_bytes(),
        Access::Public,
    )?;

    Ok(InitReport {
        made: vec![
            (
                dir.ca_cert(),
                "county CA certificate: copy to every box and to the broker",
            ),
            (
                dir.ca_key(),
                "county CA private key (0600): keep it here, offline; never copy it to a box or the hub",
            ),
            (
                dir.server_cert(),
                "server certificate of the broker and hub",
            ),
            (dir.server_key(), "its private key (0600), for the broker"),
            (
                dir.hub_cert(),
                "the hub's client certificate at the broker (CN \"hub\")",
            ),
            (dir.hub_key(), "its private key (0600), for the hub"),
            (
                dir.crl(),
                "certificate revocation list (empty), for the broker",
            ),
            (
                dir.hub_config(),
                "hub config skeleton for 'sunlight-hub run --config'",
            ),
        ],
        replaced,
    })
}

/// Moves an existing CA and everything issued from it into `replaced-<time>/`.
fn move_aside(dir: &CaDir) -> Result<PathBuf, Error> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut target = dir.root().join(format!("replaced-{stamp}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = dir.root().join(format!("replaced-{stamp}-{n}"));
    }
    std::fs::create_dir_all(&target).map_err(Error::io("creating", &target))?;
    for name in [
        "ca.key",
        "ca.pem",
        "county.toml",
        "issued.toml",
        "revoked.toml",
        "crl.pem",
        "broker.toml",
        "hub",
        "devices",
    ] {
        let from = dir.root().join(name);
        if from.exists() {
            std::fs::rename(&from, target.join(name)).map_err(Error::io("moving aside", &from))?;
        }
    }
    Ok(target)
}

/// Where a box's key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Generated here and written next to the certificate (the offline / USB path).
    GenerateHere,
    /// A certificate signing request made on the box: its key never leaves the box.
    Csr(PathBuf),
}

/// What `device cert` made.
#[derive(Debug)]
pub struct DeviceReport {
    pub cn: String,
    pub out: PathBuf,
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
    pub ca: PathBuf,
    pub agent_snippet: PathBuf,
    pub serial: String,
    pub not_after: String,
    pub replaced_serials: Vec<String>,
}

/// Issues a box's client certificate (CN `<site>.<device>`), signed by the county CA.
pub fn issue_device(
    dir: &CaDir,
    site: &SiteId,
    device: &DeviceId,
    key: &KeySource,
    out: Option<&Path>,
    force: bool,
) -> Result<DeviceReport, Error> {
    let county = dir.county()?;
    let cn = device_cn(site, device);
    if let Some(r) = dir.revoked()?.find(site.as_str(), device.as_str()) {
        return Err(Error::Refused(format!(
            "{site}/{device} was revoked on {} ({}). A revoked identity is never reused: give the \
             replacement box a new device id (e.g. {}), register it at the hub, and issue its \
             certificate with that id.",
            r.at,
            r.reason,
            next_device_id(device)
        )));
    }
    let mut issued = dir.issued()?;
    let earlier: Vec<String> = issued
        .cert
        .iter()
        .filter(|c| c.role == Role::Device && c.cn == cn)
        .map(|c| c.serial.clone())
        .collect();
    if !earlier.is_empty() && !force {
        return Err(Error::Refused(format!(
            "{site}/{device} already has a certificate from this CA (serial {}). \
             If the box lost its key or needs a new certificate, run again with --force: the \
             earlier certificate stays valid until you revoke it. If the box was stolen or \
             replaced, revoke it instead (sunlight-provision revoke --dir {} --site {site} --device {device}) \
             and give the new box a new device id.",
            earlier.join(", "),
            dir.root().display()
        )));
    }

    // Read the CSR before touching anything, so a bad one changes nothing.
    let csr = match key {
        KeySource::GenerateHere => None,
        KeySource::Csr(path) => Some(read_csr(path, &cn)?),
    };
    let issuer = dir.issuer()?;
    let (params, serial, not_after) = client_params(&cn, &county.county, Some(site.as_str()))?;
    let out = out
        .map(files::absolute)
        .unwrap_or_else(|| dir.device_dir(site, device));
    let cert_path = out.join("box.pem");
    let key_path = out.join("box.key");
    let (cert, key_written) = match csr {
        None => {
            let key = KeyPair::generate().map_err(Error::crypto("generating the box key"))?;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(Error::crypto("signing the box certificate"))?;
            files::write(&key_path, key.serialize_pem().as_bytes(), Access::Secret)?;
            (cert, Some(key_path))
        }
        Some(mut csr) => {
            // Only the CSR's public key is used: subject, names and usages are ours.
            csr.params = params;
            let cert = csr
                .signed_by(&issuer)
                .map_err(Error::crypto("signing the box's certificate request"))?;
            (cert, None)
        }
    };
    files::write(&cert_path, cert.pem().as_bytes(), Access::Public)?;
    let ca_copy = out.join("ca.pem");
    std::fs::copy(dir.ca_cert(), &ca_copy)
        .map_err(Error::io("copying the CA certificate to", &ca_copy))?;
    let snippet = out.join("agent-hub.toml");
    files::write(
        &snippet,
        agent_snippet(&county, site, device).as_bytes(),
        Access::Public,
    )?;

    issued.cert.push(IssuedCert {
        role: Role::Device,
        cn: cn.clone(),
        site: Some(site.to_string()),
        device: Some(device.to_string()),
        serial: serial.clone(),
        issued_at: stamp(now()),
        not_after: stamp(not_after),
        key: if key_written.is_some() {
            "generated here".into()
        } else {
            "csr".into()
        },
    });
    dir.save_issued(&issued)?;
    Ok(DeviceReport {
        cn,
        out,
        cert: cert_path,
        key: key_written,
        ca: ca_copy,
        agent_snippet: snippet,
        serial,
        not_after: stamp(not_after),
        replaced_serials: earlier,
    })
}

/// `box-01` → `box-02`; anything else gets `-2`.
fn next_device_id(device: &DeviceId) -> String {
    sunlight_hub::enroll::next_device_id(device)
}

/// The `[hub]` lines of agent.toml for a box with this certificate.
fn agent_snippet(county: &County, site: &SiteId, device: &DeviceId) -> String {
    let host = county
        .hub_hosts
        .first()
        .map(String::as_str)
        .unwrap_or("HUB-HOST");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "# The [hub] section of /etc/sunlight/agent.toml for {site}/{device} (certificate CN {cn}).\n\
         # Copy box.pem, box.key (keep it 0600) and ca.pem to /etc/sunlight/ on the box first.\n\
         [hub]\n\
         broker = \"mqtts://{host}:8883\"\n\
         ca_file = \"/etc/sunlight/ca.pem\"\n\
         cert_file = \"/etc/sunlight/box.pem\"\n\
         key_file = \"/etc/sunlight/box.key\"\n",
        cn = device_cn(site, device)
    )
}

fn read_csr(path: &Path, cn: &str) -> Result<CertificateSigningRequestParams, Error> {
    let text = files::read("reading the certificate request", path)?;
    let csr = CertificateSigningRequestParams::from_pem(&text).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not a valid certificate signing request in PEM ({e}). Make one on the box with:\n  \
                 openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                 -keyout /etc/sunlight/box.key -out box.csr -subj /CN={cn}"
            ),
        )
    })?;
    if let Some(asked) = csr.params.distinguished_name.get(&DnType::CommonName) {
        let asked = dn_text(asked);
        if asked != cn {
            return Err(Error::bad_file(
                path,
                format!(
                    "the request is for {asked:?}, not {cn:?}: is this the right box's request? \
                     Make it again on the box with -subj /CN={cn}, or pass the --site and --device \
                     the request was made for."
                ),
            ));
        }
    }
    Ok(csr)
}

fn dn_text(v: &DnValue) -> String {
    match v {
        DnValue::Utf8String(s) => s.clone(),
        DnValue::PrintableString(s) => s.as_str().to_string(),
        DnValue::Ia5String(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// What `revoke` did.
#[derive(Debug)]
pub struct RevokeReport {
    pub cn: String,
    pub serials: Vec<String>,
    pub already: Option<String>,
}

/// Records the revocation of every certificate issued to `site/device` — from this CA, and the
/// `enrolled` serials the hub's enrollment CA signed for it — and rewrites the CRL. (The broker's
/// CRL of the enrollment CA lists the same serials, signed where its key is: `broker-config`.)
pub fn revoke(
    dir: &CaDir,
    site: &SiteId,
    device: &DeviceId,
    reason: &str,
    enrolled: &[String],
) -> Result<RevokeReport, Error> {
    dir.county()?;
    let cn = device_cn(site, device);
    let mut revoked = dir.revoked()?;
    if let Some(r) = revoked.find(site.as_str(), device.as_str()) {
        let report = RevokeReport {
            cn,
            serials: r.serials.clone(),
            already: Some(r.at.clone()),
        };
        // Rewrite the CRL anyway, in case it was lost.
        write_crl(dir, &revoked)?;
        return Ok(report);
    }
    let issued = dir.issued()?;
    let serials: Vec<String> = issued
        .cert
        .iter()
        .filter(|c| c.role == Role::Device && c.cn == cn)
        .map(|c| c.serial.clone())
        .chain(enrolled.iter().cloned())
        .collect();
    if serials.is_empty() {
        let mut known: Vec<String> = issued
            .cert
            .iter()
            .filter(|c| c.role == Role::Device)
            .filter_map(|c| Some(format!("{}/{}", c.site.as_ref()?, c.device.as_ref()?)))
            .collect();
        known.sort();
        known.dedup();
        let known = if known.is_empty() {
            "none yet".to_string()
        } else {
            known.join(", ")
        };
        return Err(Error::Refused(format!(
            "no certificate for {site}/{device} was issued from {}: nothing to revoke. \
             Boxes with certificates from this CA: {known}. Check the --site and --device spelling \
             (sunlight-provision device list --dir {} shows them all), or pass the --dir of the CA \
             that issued it. A box enrolled through the hub is revoked at the hub \
             (sunlight-hub device revoke), then the broker config is generated again.",
            dir.root().display(),
            dir.root().display()
        )));
    }
    revoked.revoked.push(Revocation {
        site: site.to_string(),
        device: device.to_string(),
        cn: cn.clone(),
        serials: serials.clone(),
        at: stamp(now()),
        reason: reason.to_string(),
    });
    // The CRL first: if it cannot be signed, nothing is recorded as revoked that is not.
    write_crl(dir, &revoked)?;
    dir.save_revoked(&revoked)?;
    Ok(RevokeReport {
        cn,
        serials,
        already: None,
    })
}

fn write_crl(dir: &CaDir, revoked: &RevokedList) -> Result<(), Error> {
    let issuer = dir.issuer()?;
    write_crl_with(dir, &issuer, revoked)
}

/// Signs and writes `crl.pem` listing every revoked serial. Valid as long as the CA: Mosquitto
/// (OpenSSL) refuses every client once a CRL's next update has passed, and this CRL is the
/// broker's only one, rewritten by every revoke.
fn write_crl_with(
    dir: &CaDir,
    issuer: &Issuer<'_, KeyPair>,
    revoked: &RevokedList,
) -> Result<(), Error> {
    let start = now();
    let mut certs = Vec::new();
    for r in &revoked.revoked {
        let at = chrono::DateTime::parse_from_rfc3339(&r.at)
            .ok()
            .and_then(|d| time::OffsetDateTime::from_unix_timestamp(d.timestamp()).ok())
            .unwrap_or(start);
        for s in &r.serials {
            let serial_number = serial_from_hex(s).ok_or_else(|| {
                Error::bad_file(&dir.revoked_file(), format!("serial {s:?} is not hex"))
            })?;
            certs.push(RevokedCertParams {
                serial_number,
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let (crl_number, _) = serial()?;
    let params = CertificateRevocationListParams {
        this_update: start - time::Duration::hours(1),
        next_update: start + years(CA_YEARS),
        crl_number,
        issuing_distribution_point: None,
        revoked_certs: certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(issuer)
        .map_err(Error::crypto("signing the revocation list"))?;
    let pem = crl
        .pem()
        .map_err(Error::crypto("encoding the revocation list"))?;
    files::write(&dir.crl(), pem.as_bytes(), Access::Public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(site: &str, device: &str) -> (SiteId, DeviceId) {
        (SiteId::new(site).unwrap(), DeviceId::new(device).unwrap())
    }

    #[test]
    fn the_cn_names_one_box_and_never_the_hub() {
        let (s, d) = ids("suixian-shangshi", "box-01");
        let (s2, d2) = ids("suixian-lishan", "box-01");
        assert_eq!(device_cn(&s, &d), "suixian-shangshi.box-01");
        assert_ne!(device_cn(&s, &d), device_cn(&s2, &d2));
        assert!(device_cn(&s, &d).contains('.') && !HUB_CN.contains('.'));
    }

    #[test]
    fn hosts_are_ips_or_dns_names() {
        assert!(matches!(
            host_san("10.0.0.5").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            host_san("hub.suixian.gov.cn").unwrap(),
            SanType::DnsName(_)
        ));
        for bad in ["", "a b", "-x.com", "x..com", "http://hub"] {
            assert!(host_san(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_ids_count_up() {
        assert_eq!(next_device_id(&DeviceId::new("box-01").unwrap()), "box-02");
        assert_eq!(next_device_id(&DeviceId::new("box-09").unwrap()), "box-10");
        assert_eq!(next_device_id(&DeviceId::new("front").unwrap()), "front-2");
    }

    #[test]
    fn serials_round_trip_through_hex() {
        let (sn, hex) = serial().unwrap();
        assert_eq!(hex.len(), 32);
        assert_eq!(serial_from_hex(&hex), Some(sn));
        assert_eq!(serial_from_hex("xyz"), None);
    }

    #[test]
    fn a_box_request_cannot_ask_for_more_than_a_box_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        init(&dir, "随县", &["localhost".into()], false).unwrap();
        // The request asks to be a CA, for a server name, and for server authentication.
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked.distinguished_name = rcgen::DistinguishedName::new();
        asked
            .distinguished_name
            .push(DnType::CommonName, "suixian-shangshi.box-02");
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        asked.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = tmp.path().join("box.csr");
        std::fs::write(&csr, asked.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
        let (s, d) = ids("suixian-shangshi", "box-02");
        let rep = issue_device(&dir, &s, &d, &KeySource::Csr(csr), None, false).unwrap();
        assert!(rep.key.is_none());

        let pem = std::fs::read_to_string(&rep.cert).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert!(!cert.is_ca());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "suixian-shangshi.box-02");
        // The certificate holds the box's public key, not one made here.
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    }

    #[test]
    fn init_issue_revoke_in_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        init(
            &dir,
            "随县",
            &["localhost".into(), "127.0.0.1".into()],
            false,
        )
        .unwrap();
        assert!(init(&dir, "随县", &["localhost".into()], false).is_err());
        let (s, d) = ids("suixian-shangshi", "box-01");
        let rep = issue_device(&dir, &s, &d, &KeySource::GenerateHere, None, false).unwrap();
        assert!(rep.cert.exists() && rep.key.as_ref().is_some_and(|k| k.exists()));
        assert!(issue_device(&dir, &s, &d, &KeySource::GenerateHere, None, false).is_err());
        let rev = revoke(&dir, &s, &d, "stolen", &[]).unwrap();
        assert_eq!(rev.serials, vec![rep.serial]);
        assert!(issue_device(&dir, &s, &d, &KeySource::GenerateHere, None, true).is_err());
        let (s, d) = ids("suixian-shangshi", "box-09");
        let err = revoke(&dir, &s, &d, "x", &[]).unwrap_err().to_string();
        assert!(err.contains("suixian-shangshi/box-01"), "{err}");
    }
}
