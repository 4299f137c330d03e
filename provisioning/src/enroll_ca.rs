//! The hub's enrollment CA (decision 0006): an intermediate of the county CA whose key lives with
//! the hub, so that boxes can get certificates over the network (`sunlight-agent enroll`) while the
//! county CA's key stays offline.
//!
//! `hub-signer` makes it on the CA machine and writes the directory the hub runs with
//! (`sunlight-hub run --enroll-ca-dir`): see [`sunlight_hub::enroll::files`]. It may sign box
//! certificates only: path length 0, client authentication only, valid [`ENROLL_CA_YEARS`] by
//! default. The broker's CRL file needs one CRL per issuer, so `broker-config` signs this CA's CRL
//! with its key wherever the directory is ([`crl_pem`]).

use crate::ca::{self, CaDir, IssuedCert, Role};
use crate::error::Error;
use crate::files::{self, Access};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
};
use std::path::{Path, PathBuf};
use sunlight_hub::enroll::{EnrollCaInfo, files as names};

/// The default life of an enrollment CA: shorter than the county CA's, since its key is online.
/// Box certificates it signs end when it ends, at the latest.
pub const ENROLL_CA_YEARS: i64 = 5;

/// What `hub-signer` made.
#[derive(Debug)]
pub struct SignerReport {
    pub out: PathBuf,
    pub cn: String,
    pub serial: String,
    pub not_after: String,
    pub made: Vec<(PathBuf, &'static str)>,
    pub replaced: Option<PathBuf>,
}

/// The first certificate of a PEM file, parsed; `Err` names the file.
fn with_cert<T>(
    path: &Path,
    pem: &str,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T,
) -> Result<T, Error> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Error::bad_file(path, format!("not a PEM certificate ({e})")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| Error::bad_file(path, format!("not a certificate ({e})")))?;
    Ok(f(&cert))
}

/// Creates the enrollment CA in `out`, signed by the county CA in `dir`. Refuses to replace one
/// unless `force` (the old one is then moved to `out/replaced-<time>/`, where `broker-config` still
/// finds it to keep the boxes it enrolled working until they expire).
pub fn hub_signer(
    dir: &CaDir,
    out: &Path,
    life_years: i64,
    force: bool,
) -> Result<SignerReport, Error> {
    let county = dir.county()?;
    if !(1..=ca::CA_YEARS).contains(&life_years) {
        return Err(Error::Refused(format!(
            "--years {life_years}: give 1 to {} years ({ENROLL_CA_YEARS} is the default). Boxes it \
             enrolls need a new certificate when it expires.",
            ca::CA_YEARS
        )));
    }
    let ca_path = dir.ca_cert();
    let ca_pem = files::read("reading the CA certificate", &ca_path)?;
    let (path_len, ca_not_after, ca_subject) = with_cert(&ca_path, &ca_pem, |c| {
        (
            c.basic_constraints()
                .ok()
                .flatten()
                .and_then(|b| b.value.path_len_constraint),
            c.validity().not_after.timestamp(),
            c.subject().to_string(),
        )
    })?;
    if path_len == Some(0) {
        return Err(Error::Refused(format!(
            "the county CA in {} was made before enrollment existed and may not have an \
             intermediate below it (path length 0), so brokers would refuse every box the hub \
             enrolls. Either keep issuing box certificates here ('sunlight-provision device cert \
             --csr'), or make a new county CA with 'sunlight-provision init --force' (every box \
             then needs a new certificate) and run hub-signer again.",
            dir.root().display()
        )));
    }
    let out = files::absolute(out);
    let key_path = out.join(names::CA_KEY);
    let cert_path = out.join(names::CA_CERT);
    let mut replaced = None;
    if key_path.exists() || cert_path.exists() {
        if !force {
            return Err(Error::Refused(format!(
                "{} already holds an enrollment CA. Replacing it changes the hub's signing key: \
                 run again with --force to do so (the old one is moved to a replaced-<time>/ \
                 folder there; boxes it enrolled keep working until their certificates expire, as \
                 long as broker-config is given this directory).",
                out.display()
            )));
        }
        replaced = Some(move_aside(&out)?);
    }

    let issuer = dir.issuer()?;
    let start = ca::now();
    let ca_end = time::OffsetDateTime::from_unix_timestamp(ca_not_after)
        .map_err(|e| Error::bad_file(&ca_path, format!("bad expiry ({e})")))?;
    let not_after = (start + ca::years(life_years)).min(ca_end);
    let cn = format!("{} Sunlight enrollment CA", county.county);
    let key = KeyPair::generate().map_err(Error::crypto("generating the enrollment CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, &cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, county.county.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "enrollment");
    // Box certificates only: no intermediates below it, and (the EKU) no server certificates a
    // box would accept for the broker.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = start - time::Duration::hours(1);
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    let (sn, serial) = ca::serial()?;
    params.serial_number = Some(sn);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(Error::crypto("signing the enrollment CA certificate"))?;

    files::write(&key_path, key.serialize_pem().as_bytes(), Access::Secret)?;
    files::write(&cert_path, cert.pem().as_bytes(), Access::Public)?;
    let county_copy = out.join(names::COUNTY_CA);
    files::write(&county_copy, ca_pem.as_bytes(), Access::Public)?;
    let info = EnrollCaInfo {
        county: county.county.clone(),
        hub_hosts: county.hub_hosts.clone(),
        serial: serial.clone(),
        created: ca::stamp(start),
        not_after: ca::stamp(not_after),
    };
    ca::write_toml(
        &out.join(names::INFO),
        &format!(
            "# The hub's enrollment CA, issued by {ca_subject} (written by sunlight-provision \
             hub-signer; do not edit).\n"
        ),
        &info,
    )?;
    let mut issued = dir.issued()?;
    issued.cert.push(IssuedCert {
        role: Role::EnrollmentCa,
        cn: cn.clone(),
        site: None,
        device: None,
        serial: serial.clone(),
        issued_at: ca::stamp(start),
        not_after: ca::stamp(not_after),
        key: "generated here".into(),
    });
    dir.save_issued(&issued)?;
    Ok(SignerReport {
        made: vec![
            (
                cert_path,
                "the enrollment CA's certificate, signed by the county CA",
            ),
            (
                key_path,
                "its private key (0600): for the hub only, owned by the hub's user",
            ),
            (county_copy, "the county CA, handed to enrolling boxes"),
            (out.join(names::INFO), "the county's name and hub hosts"),
        ],
        out,
        cn,
        serial,
        not_after: ca::stamp(not_after),
        replaced,
    })
}

fn move_aside(out: &Path) -> Result<PathBuf, Error> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut target = out.join(format!("replaced-{stamp}"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = out.join(format!("replaced-{stamp}-{n}"));
    }
    std::fs::create_dir_all(&target).map_err(Error::io("creating", &target))?;
    for name in [names::CA_CERT, names::CA_KEY, names::COUNTY_CA, names::INFO] {
        let from = out.join(name);
        if from.exists() {
            std::fs::rename(&from, target.join(name)).map_err(Error::io("moving aside", &from))?;
        }
    }
    Ok(target)
}

/// The enrollment CA directories under `dir`: itself, and the ones replaced by `--force`.
fn generations(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut old: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("replaced-"))
                    && p.join(names::CA_CERT).is_file()
                    && p.join(names::CA_KEY).is_file()
            })
            .collect();
        old.sort();
        found.extend(old);
    }
    found
}

/// One CRL (PEM) per enrollment CA in `dir` (the current one and any it replaced), listing
/// `serials`, signed with each one's key; checked to be issued by the county CA in `county`.
/// Mosquitto checks a box's certificate against its issuer's CRL and refuses it when there is
/// none, so every enrollment CA whose boxes may connect needs one.
pub fn crl_pem(dir: &Path, county: &CaDir, serials: &[String]) -> Result<String, Error> {
    let county_pem = files::read("reading the CA certificate", &county.ca_cert())?;
    let county_subject = with_cert(&county.ca_cert(), &county_pem, |c| {
        c.subject().as_raw().to_vec()
    })?;
    let mut out = String::new();
    for generation in generations(dir) {
        let cert_path = generation.join(names::CA_CERT);
        let key_path = generation.join(names::CA_KEY);
        let cert = files::read("reading the enrollment CA certificate", &cert_path)?;
        let (issuer_dn, expired) = with_cert(&cert_path, &cert, |c| {
            (
                c.issuer().as_raw().to_vec(),
                c.validity().not_after.timestamp() <= ca::now().unix_timestamp(),
            )
        })?;
        if issuer_dn != county_subject {
            return Err(Error::bad_file(
                &cert_path,
                format!(
                    "this enrollment CA was not issued by the county CA in {}: pass the \
                     --enroll-ca-dir made from this --dir",
                    county.root().display()
                ),
            ));
        }
        if expired {
            continue;
        }
        let key = files::read("reading the enrollment CA key", &key_path)?;
        let key = KeyPair::from_pem(&key)
            .map_err(|e| Error::bad_file(&key_path, format!("not a private key in PEM ({e})")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key)
            .map_err(|e| Error::bad_file(&cert_path, format!("not a CA certificate ({e})")))?;
        let start = ca::now();
        let revoked_certs = serials
            .iter()
            .map(|s| {
                Ok(RevokedCertParams {
                    serial_number: ca::serial_from_hex(s).ok_or_else(|| {
                        Error::Refused(format!("revoked serial {s:?} is not hex"))
                    })?,
                    revocation_time: start,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (crl_number, _) = ca::serial()?;
        let params = CertificateRevocationListParams {
            this_update: start - time::Duration::hours(1),
            next_update: start + ca::years(ca::CA_YEARS),
            crl_number,
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&issuer)
            .map_err(Error::crypto("signing the enrollment CA's revocation list"))?;
        out.push_str(
            &crl.pem()
                .map_err(Error::crypto("encoding the revocation list"))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enrollment_ca_signs_box_certificates_only_and_chains_to_the_county() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(&tmp.path().join("ca"));
        ca::init(&dir, "随县", &["localhost".into()], false).unwrap();
        let out = tmp.path().join("enroll");
        let rep = hub_signer(&dir, &out, ENROLL_CA_YEARS, false).unwrap();
        assert!(hub_signer(&dir, &out, ENROLL_CA_YEARS, false).is_err());

        let pem = std::fs::read_to_string(out.join(names::CA_CERT)).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        assert!(cert.is_ca());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert_eq!(bc.path_len_constraint, Some(0));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            cert.tbs_certificate.raw_serial_as_string().replace(':', ""),
            rep.serial
        );
        // The county CA now allows one intermediate.
        let county = std::fs::read_to_string(dir.ca_cert()).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(county.as_bytes()).unwrap();
        let county = block.parse_x509().unwrap();
        assert_eq!(
            county
                .basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(1)
        );
        assert_eq!(cert.issuer(), county.subject());
        // The hub loads what was written, and its key is the owner's only.
        let signer = sunlight_hub::enroll::Signer::load(&out, None).unwrap();
        assert_eq!(signer.broker_url, "mqtts://localhost:8883");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join(names::CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            dir.issued()
                .unwrap()
                .cert
                .iter()
                .any(|c| c.role == Role::EnrollmentCa && c.serial == rep.serial)
        );

        // Replaced: both generations get a CRL.
        hub_signer(&dir, &out, 2, true).unwrap();
        let crls = crl_pem(&out, &dir, &["4a01".into()]).unwrap();
        assert_eq!(crls.matches("BEGIN X509 CRL").count(), 2, "{crls}");
    }

    #[test]
    fn a_county_ca_without_room_for_an_intermediate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CaDir::new(tmp.path());
        ca::init(&dir, "随县", &["localhost".into()], false).unwrap();
        // A CA as init made it before enrollment: path length 0, same key.
        let key = KeyPair::from_pem(&std::fs::read_to_string(dir.ca_key()).unwrap()).unwrap();
        let mut old = CertificateParams::default();
        old.distinguished_name = rcgen::DistinguishedName::new();
        old.distinguished_name.push(DnType::CommonName, "old CA");
        old.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        old.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        std::fs::write(dir.ca_cert(), old.self_signed(&key).unwrap().pem()).unwrap();
        let err = hub_signer(&dir, &tmp.path().join("enroll"), 5, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("path length 0"), "{err}");
    }
}
