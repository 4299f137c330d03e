//! The county broker's configuration: Mosquitto with mTLS (a box's certificate CN is its username)
//! and an ACL that confines each box to its own topics.
//!
//! The device list comes from the hub's store (the boxes registered with `sunlight-hub device add`
//! or enrolled, and those with a waiting enrollment token) or from a TOML file. Boxes revoked here
//! or at the hub are always left out. How it was generated is kept in the CA directory
//! (`broker.toml`), so `revoke` can generate it again the same way.
//!
//! Boxes enrolled through the hub have certificates from the hub's enrollment CA; Mosquitto needs
//! a CRL from every issuer it sees, so with `--enroll-ca-dir` the broker's `crl.pem` holds the
//! county CA's CRL and one signed by each enrollment CA (decision 0006).

use crate::ca::{self, CaDir, HUB_CN, Role};
use crate::error::Error;
use crate::files::{self, Access};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use sunlight_protocol::topics::{HUB_STATUS_FILTER, HUB_UP_FILTER};
use sunlight_protocol::{DeviceId, SiteId};

/// One box the broker lets in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub site: SiteId,
    pub device: DeviceId,
}

/// A devices file: `[[devices]]` tables with `site` and `device`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    #[serde(default)]
    devices: Vec<DeviceEntry>,
}

/// Where the list of boxes comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSource {
    /// The hub's data directory (its `hub.db`).
    HubData(PathBuf),
    /// A TOML file of `[[devices]]`.
    File(PathBuf),
}

/// What the hub's store says about boxes (empty for a devices file).
#[derive(Debug, Default)]
pub struct HubBoxes {
    /// Registered (or enrolled) boxes.
    pub registered: Vec<DeviceEntry>,
    /// Revoked at the hub (`sunlight-hub device revoke`).
    pub revoked: Vec<DeviceEntry>,
    /// With an enrollment token not used yet.
    pub waiting: Vec<DeviceEntry>,
    /// Certificates the hub's enrollment CA signed.
    pub enrolled: Vec<sunlight_hub::enroll::EnrolledCert>,
}

impl DeviceSource {
    /// The boxes to let in: registered, waiting for enrollment, or listed in the file.
    pub fn load(&self) -> Result<Vec<DeviceEntry>, Error> {
        let mut list = match self {
            DeviceSource::HubData(dir) => {
                let hub = from_hub(dir)?;
                let mut list = hub.registered;
                list.extend(hub.waiting);
                list
            }
            DeviceSource::File(path) => from_file(path)?,
        };
        list.sort();
        list.dedup();
        Ok(list)
    }

    /// The hub's view of its boxes, when the list comes from the hub.
    pub fn hub(&self) -> Result<HubBoxes, Error> {
        match self {
            DeviceSource::HubData(dir) => from_hub(dir),
            DeviceSource::File(_) => Ok(HubBoxes::default()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DeviceSource::HubData(dir) => {
                format!("the hub's registered boxes in {}", dir.display())
            }
            DeviceSource::File(path) => format!("the list in {}", path.display()),
        }
    }
}

fn from_hub(dir: &Path) -> Result<HubBoxes, Error> {
    let db = dir.join("hub.db");
    // Opening a missing store would create an empty one: look first.
    if !db.is_file() {
        return Err(Error::Refused(format!(
            "{} has no hub.db: pass the hub's --data-dir (e.g. /var/lib/sunlight-hub) to --hub-data, \
             or list the boxes in a file for --devices (see docs/provisioning.md)",
            dir.display()
        )));
    }
    let reader = sunlight_hub::store::Reader::open(&db).map_err(|e| Error::HubStore {
        path: db.clone(),
        detail: e.to_string(),
    })?;
    let store_err = |e: sunlight_hub::Error| Error::HubStore {
        path: db.clone(),
        detail: e.to_string(),
    };
    let devices = reader.devices().map_err(store_err)?;
    let waiting = reader
        .run(sunlight_hub::enroll::waiting_boxes)
        .map_err(store_err)?;
    let enrolled = reader
        .run(sunlight_hub::enroll::enrolled_certs)
        .map_err(store_err)?;
    let entry = |site: String, device: String| {
        let bad = |e: sunlight_protocol::IdError| Error::HubStore {
            path: db.clone(),
            detail: e.to_string(),
        };
        Ok(DeviceEntry {
            site: SiteId::new(site).map_err(bad)?,
            device: DeviceId::new(device).map_err(bad)?,
        })
    };
    let mut hub = HubBoxes {
        enrolled,
        ..HubBoxes::default()
    };
    for d in devices {
        let revoked = d.revoked_at.is_some();
        let e = entry(d.site, d.device)?;
        if revoked {
            hub.revoked.push(e);
        } else {
            hub.registered.push(e);
        }
    }
    for (site, device) in waiting {
        hub.waiting.push(entry(site, device)?);
    }
    Ok(hub)
}

/// The serials the hub's enrollment CA signed for `site/device` (empty unless the list comes from
/// the hub), for `revoke`.
pub fn enrolled_serials(
    plan: Option<&BrokerPlan>,
    site: &SiteId,
    device: &DeviceId,
) -> Result<Vec<String>, Error> {
    let Some(plan) = plan else {
        return Ok(Vec::new());
    };
    Ok(plan
        .source
        .hub()?
        .enrolled
        .into_iter()
        .filter(|c| c.site == site.as_str() && c.device == device.as_str())
        .map(|c| c.serial)
        .collect())
}

fn from_file(path: &Path) -> Result<Vec<DeviceEntry>, Error> {
    let text = files::read("reading the devices file", path)?;
    let file: DevicesFile = toml::from_str(&text).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "{e}\nA devices file lists one table per box:\n  [[devices]]\n  site = \"suixian-shangshi\"\n  device = \"box-01\""
            ),
        )
    })?;
    Ok(file.devices)
}

/// The Mosquitto settings a county may change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosquittoSettings {
    /// The mTLS listener for boxes.
    pub listen: SocketAddr,
    /// A plain listener for the hub on the broker's own host, until the hub connects over mTLS
    /// with its certificate. Loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_listener: Option<SocketAddr>,
    /// Where Mosquitto keeps its persistence file.
    pub persistence_dir: PathBuf,
    /// Where the broker will find the files written to the output directory (the output
    /// directory itself, unless they are copied elsewhere).
    pub install_dir: PathBuf,
    /// The agents' `sync.max_batch_bytes`: the largest message the broker passes on.
    pub max_batch_bytes: usize,
}

/// How broker-config was run, kept in the CA directory for revoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerPlan {
    pub source: DeviceSource,
    pub out: PathBuf,
    pub mosquitto: MosquittoSettings,
    /// The hub's enrollment CA directory (`hub-signer`), whose CRL the broker needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_ca_dir: Option<PathBuf>,
}

impl BrokerPlan {
    pub fn check(&self) -> Result<(), Error> {
        if let Some(local) = self.mosquitto.hub_listener {
            if !local.ip().is_loopback() {
                return Err(Error::Refused(format!(
                    "--hub-listener {local}: this plain listener gives the hub's rights (read every box, \
                     command every box) to whoever reaches it, so it must be a loopback address such \
                     as 127.0.0.1:1883, with the hub on the broker's host"
                )));
            }
            if local.port() == self.mosquitto.listen.port() {
                return Err(Error::Refused(format!(
                    "--hub-listener {local} and --listen {} use the same port: give them different ports",
                    self.mosquitto.listen
                )));
            }
        }
        for (flag, path) in [
            ("--install-dir", &self.mosquitto.install_dir),
            ("--persistence-dir", &self.mosquitto.persistence_dir),
        ] {
            if path.to_string_lossy().chars().any(char::is_whitespace) {
                return Err(Error::Refused(format!(
                    "{flag} {}: Mosquitto cannot read paths with spaces; choose one without",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    pub fn load(dir: &CaDir) -> Result<Option<BrokerPlan>, Error> {
        let path = dir.broker_plan();
        if !path.exists() {
            return Ok(None);
        }
        let text = files::read("reading the broker plan", &path)?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| Error::bad_file(&path, e.to_string()))
    }

    pub fn save(&self, dir: &CaDir) -> Result<(), Error> {
        ca::write_toml(
            &dir.broker_plan(),
            "# How 'sunlight-provision broker-config' was last run; 'revoke' runs it again the same way.\n",
            self,
        )
    }
}

/// What broker-config wrote.
#[derive(Debug)]
pub struct BrokerReport {
    pub conf: PathBuf,
    pub acl: PathBuf,
    pub files: Vec<PathBuf>,
    pub allowed: Vec<DeviceEntry>,
    pub left_out_revoked: Vec<DeviceEntry>,
    pub without_certificate: Vec<DeviceEntry>,
    /// Allowed before they enroll (a token is waiting): they connect once enrolled.
    pub waiting: Vec<DeviceEntry>,
    /// How many enrollment CAs' CRLs are in crl.pem.
    pub enrollment_crls: usize,
}

/// Writes mosquitto.conf, the ACL and the broker's certificate files into `plan.out`, and keeps
/// the plan in the CA directory.
pub fn generate(dir: &CaDir, plan: &BrokerPlan) -> Result<BrokerReport, Error> {
    plan.check()?;
    let county = dir.county()?;
    let listed = plan.source.load()?;
    let hub = plan.source.hub()?;
    let revoked = dir.revoked()?;
    let issued = dir.issued()?;
    let with_cert: BTreeSet<String> = issued
        .cert
        .iter()
        .filter(|c| c.role == Role::Device)
        .map(|c| c.cn.clone())
        .chain(hub.enrolled.iter().filter_map(|c| {
            Some(ca::device_cn(
                &SiteId::new(&c.site).ok()?,
                &DeviceId::new(&c.device).ok()?,
            ))
        }))
        .collect();
    let (mut left_out_revoked, allowed): (Vec<_>, Vec<_>) = listed.into_iter().partition(|d| {
        revoked.find(d.site.as_str(), d.device.as_str()).is_some() || hub.revoked.contains(d)
    });
    left_out_revoked.extend(hub.revoked.iter().cloned());
    left_out_revoked.sort();
    left_out_revoked.dedup();
    let (waiting, with_or_without): (Vec<DeviceEntry>, Vec<DeviceEntry>) =
        allowed.iter().cloned().partition(|d| {
            hub.waiting.contains(d) && !with_cert.contains(&ca::device_cn(&d.site, &d.device))
        });
    let without_certificate = with_or_without
        .into_iter()
        .filter(|d| !with_cert.contains(&ca::device_cn(&d.site, &d.device)))
        .collect();

    // The enrollment CAs' CRLs: every serial revoked here, and those of boxes revoked at the hub.
    let enrollment_crl = match &plan.enroll_ca_dir {
        Some(enroll_dir) => {
            let mut serials: Vec<String> = revoked
                .revoked
                .iter()
                .flat_map(|r| r.serials.iter().cloned())
                .chain(
                    hub.enrolled
                        .iter()
                        .filter(|c| c.revoked || revoked.find(&c.site, &c.device).is_some())
                        .map(|c| c.serial.clone()),
                )
                .collect();
            serials.sort();
            serials.dedup();
            crate::enroll_ca::crl_pem(enroll_dir, dir, &serials)?
        }
        None if !hub.enrolled.is_empty() => {
            return Err(Error::Refused(format!(
                "the hub has enrolled {} box certificate(s) through its enrollment CA; the broker                  refuses them unless it has that CA's revocation list. Pass the hub's enrollment                  CA directory: --enroll-ca-dir DIR (the one 'sunlight-hub run --enroll-ca-dir' uses).",
                hub.enrolled.len()
            )));
        }
        None => String::new(),
    };

    let out = &plan.out;
    let mut written = Vec::new();
    for (from, name, access) in [
        (dir.ca_cert(), "ca.pem", Access::Public),
        (dir.server_cert(), "server.pem", Access::Public),
        (dir.server_key(), "server.key", Access::Secret),
        (dir.crl(), "crl.pem", Access::Public),
    ] {
        let mut bytes = std::fs::read(&from).map_err(Error::io("reading", &from))?;
        if name == "crl.pem" {
            if !bytes.ends_with(b"\n") {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(enrollment_crl.as_bytes());
        }
        let to = out.join(name);
        files::write(&to, &bytes, access)?;
        written.push(to);
    }
    let acl = out.join("acl");
    files::write(
        &acl,
        acl_text(&county.county, &allowed).as_bytes(),
        Access::Public,
    )?;
    written.push(acl.clone());
    if plan.mosquitto.hub_listener.is_some() {
        let local = out.join("acl-hub-local");
        files::write(&local, local_acl_text().as_bytes(), Access::Public)?;
        written.push(local);
    }
    let conf = out.join("mosquitto.conf");
    files::write(
        &conf,
        mosquitto_conf(&county.county, &plan.mosquitto, allowed.len()).as_bytes(),
        Access::Public,
    )?;
    written.push(conf.clone());
    plan.save(dir)?;
    Ok(BrokerReport {
        conf,
        acl,
        files: written,
        allowed,
        left_out_revoked,
        without_certificate,
        waiting,
        enrollment_crls: enrollment_crl.matches("BEGIN X509 CRL").count(),
    })
}

/// The hub's rights: read everything boxes send, write their `down/` topics.
fn hub_rules() -> String {
    format!(
        "topic read {HUB_UP_FILTER}\n\
         topic read {HUB_STATUS_FILTER}\n\
         topic read $share/hub/{HUB_UP_FILTER}\n\
         topic write sunlight/v1/+/+/down/#\n"
    )
}

/// The ACL: the hub, then each box confined to its own `sunlight/v1/<site>/<device>/` prefix.
pub fn acl_text(county: &str, devices: &[DeviceEntry]) -> String {
    let mut s = format!(
        "# Sunlight broker ACL for {county}: generated by sunlight-provision broker-config; regenerate,\n\
         # do not edit. A username is a client certificate's CN (use_identity_as_username).\n\
         # Anything not allowed here is denied; a box missing from this file can connect but\n\
         # cannot publish or subscribe.\n\
         \n\
         user {HUB_CN}\n{}",
        hub_rules()
    );
    for d in devices {
        let prefix = format!("sunlight/v1/{}/{}", d.site, d.device);
        s.push_str(&format!(
            "\nuser {cn}\n\
             topic write {prefix}/up/#\n\
             topic write {prefix}/status\n\
             topic read {prefix}/down/#\n",
            cn = ca::device_cn(&d.site, &d.device)
        ));
    }
    s
}

/// The ACL of the hub's local plain listener: its clients are anonymous and get the hub's rights.
pub fn local_acl_text() -> String {
    format!(
        "# The hub's plain listener on the broker's host (loopback only): clients here have no\n\
         # certificate, so they are anonymous, and anonymous clients get the hub's rights.\n{}",
        hub_rules()
    )
}

fn listener_line(addr: SocketAddr) -> String {
    format!("listener {} {}", addr.port(), addr.ip())
}

/// mosquitto.conf.
pub fn mosquitto_conf(county: &str, m: &MosquittoSettings, boxes: usize) -> String {
    let d = m.install_dir.display();
    let mut s = format!(
        "# Sunlight broker for {county} ({boxes} boxes): generated by sunlight-provision broker-config\n\
         # mosquitto; regenerate, do not edit ('sunlight-provision revoke' regenerates it too).\n\
         # Run: mosquitto -c {d}/mosquitto.conf   (or install it as /etc/mosquitto/mosquitto.conf)\n\
         \n"
    );
    if m.hub_listener.is_some() {
        s.push_str("# Each listener has its own security settings (the boxes' and the hub's).\nper_listener_settings true\n\n");
    }
    s.push_str(&format!(
        "persistence true\n\
         persistence_location {p}/\n\
         # The agents' sync.max_batch_bytes: a bigger message is dropped by the broker.\n\
         message_size_limit {max}\n\
         \n\
         # Boxes: TLS with a county certificate required; its CN is the username in the ACL and\n\
         # the client id (whatever id a client asks for), so no client can take another's session.\n\
         {listener}\n\
         cafile {d}/ca.pem\n\
         certfile {d}/server.pem\n\
         keyfile {d}/server.key\n\
         crlfile {d}/crl.pem\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n\
         allow_anonymous false\n\
         acl_file {d}/acl\n",
        p = m.persistence_dir.display(),
        max = m.max_batch_bytes,
        listener = listener_line(m.listen),
    ));
    if let Some(local) = m.hub_listener {
        s.push_str(&format!(
            "\n# The hub on this host, until it connects over mTLS with hub.pem: plain, loopback only.\n\
             {}\n\
             allow_anonymous true\n\
             acl_file {d}/acl-hub-local\n",
            listener_line(local)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(site: &str, device: &str) -> DeviceEntry {
        DeviceEntry {
            site: SiteId::new(site).unwrap(),
            device: DeviceId::new(device).unwrap(),
        }
    }

    #[test]
    fn each_box_gets_only_its_own_prefix() {
        let acl = acl_text(
            "随县",
            &[
                entry("suixian-shangshi", "box-01"),
                entry("suixian-lishan", "box-01"),
            ],
        );
        assert!(acl.contains(
            "user suixian-shangshi.box-01\ntopic write sunlight/v1/suixian-shangshi/box-01/up/#\n\
             topic write sunlight/v1/suixian-shangshi/box-01/status\n\
             topic read sunlight/v1/suixian-shangshi/box-01/down/#\n"
        ));
        assert!(acl.contains("user suixian-lishan.box-01\n"));
        assert!(acl.contains("user hub\ntopic read sunlight/v1/+/+/up/#\n"));
        // No box line uses a wildcard, and nothing is granted before the first `user`
        // (which would apply to anonymous clients).
        for block in acl.split("\nuser ").skip(2) {
            assert!(
                !block.contains('+') && !block.contains("readwrite"),
                "{block}"
            );
        }
        let before_user = acl.split("\nuser ").next().unwrap();
        assert!(
            before_user
                .lines()
                .all(|l| l.is_empty() || l.starts_with('#'))
        );
    }

    #[test]
    fn the_conf_requires_certificates_and_names_every_file() {
        let m = MosquittoSettings {
            listen: "0.0.0.0:8883".parse().unwrap(),
            hub_listener: Some("127.0.0.1:1883".parse().unwrap()),
            persistence_dir: "/var/lib/mosquitto".into(),
            install_dir: "/etc/mosquitto/sunlight".into(),
            max_batch_bytes: sunlight_protocol::DEFAULT_MAX_BATCH_BYTES,
        };
        let conf = mosquitto_conf("随县", &m, 3);
        for line in [
            "per_listener_settings true",
            "listener 8883 0.0.0.0",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",
            "allow_anonymous false",
            "crlfile /etc/mosquitto/sunlight/crl.pem",
            "acl_file /etc/mosquitto/sunlight/acl",
            "message_size_limit 262144",
            "listener 1883 127.0.0.1",
            "acl_file /etc/mosquitto/sunlight/acl-hub-local",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
    }

    #[test]
    fn the_hub_listener_must_be_loopback() {
        let plan = BrokerPlan {
            source: DeviceSource::File("x".into()),
            out: "/tmp/x".into(),
            mosquitto: MosquittoSettings {
                listen: "0.0.0.0:8883".parse().unwrap(),
                hub_listener: Some("0.0.0.0:1883".parse().unwrap()),
                persistence_dir: "/var/lib/mosquitto".into(),
                install_dir: "/etc/mosquitto/sunlight".into(),
                max_batch_bytes: 1,
            },
            enroll_ca_dir: None,
        };
        assert!(plan.check().unwrap_err().to_string().contains("loopback"));
    }

    #[test]
    fn a_devices_file_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("devices.toml");
        std::fs::write(&p, "[[devices]]\nsite = \"a\"\ndevice = \"box-01\"\n").unwrap();
        assert_eq!(from_file(&p).unwrap(), vec![entry("a", "box-01")]);
        std::fs::write(&p, "[[devices]]\nsite = \"A B\"\ndevice = \"box-01\"\n").unwrap();
        let err = from_file(&p).unwrap_err().to_string();
        assert!(err.contains("site id"), "{err}");
    }
}
