//! Enrollment over the network (issue 7, decision 0006): the county operator issues a one-time
//! token for a box (`sunlight-hub enroll token`); the technician runs `sunlight-agent enroll` on
//! the box, which makes both of the box's keys there and sends the public halves with the token
//! to `POST /api/v1/enroll`. In one transaction the hub checks the token, registers the box's
//! ed25519 batch-signing key, signs its TLS certificate request with the *enrollment CA* and marks
//! the token used; it answers with the certificate, its chain, the county CA and the box's
//! agent.toml.
//!
//! The enrollment CA is an intermediate of the county CA (`sunlight-provision hub-signer`): path
//! length 0, client authentication only, shorter-lived; its key is the only signing key the hub
//! holds. Certificates it signs chain to the county CA, so the county's Mosquitto verifies them when
//! the box sends the chain (its certificate file holds both). Tokens are stored only as their
//! SHA-256; a token is shown once, when it is made.
//!
//! This module also owns the profile of a box certificate ([`box_cert_params`]), which the county
//! CA (`sunlight-provision device cert`) uses too, so both paths issue the same certificate.

use crate::store::{self, fmt_ms, now_ms};
use crate::web::ApiState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sunlight_protocol::{DeviceId, GENESIS, PublicKey, SiteId};

/// The files of an enrollment CA directory: `sunlight-provision hub-signer` writes it, `sunlight-hub
/// run --enroll-ca-dir` reads it.
pub mod files {
    /// The enrollment CA's certificate (signed by the county CA): the chain a box sends.
    pub const CA_CERT: &str = "enroll-ca.pem";
    /// Its private key (0600): the hub's only signing key.
    pub const CA_KEY: &str = "enroll-ca.key";
    /// The county CA: what boxes trust the broker by, and what the broker trusts boxes by.
    pub const COUNTY_CA: &str = "ca.pem";
    /// [`super::EnrollCaInfo`].
    pub const INFO: &str = "enroll.toml";
}

/// `enroll.toml`: what `hub-signer` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollCaInfo {
    pub county: String,
    /// The hub hosts of the county CA (`init --hub-host`): the first is the default broker host.
    pub hub_hosts: Vec<String>,
    /// The enrollment CA certificate's serial (hex).
    pub serial: String,
    pub created: String,
    pub not_after: String,
}

/// Box certificates are valid this long (or until the enrollment CA expires, if sooner).
pub const BOX_CERT_YEARS: i64 = 10;
/// Token lifetime bounds, in hours.
pub const MAX_TTL_HOURS: u32 = 24 * 30;

/// The certificate CN (and broker username) of a box: `<site>.<device>` (decision 0004).
pub fn box_cn(site: &SiteId, device: &DeviceId) -> String {
    format!("{site}.{device}")
}

/// Now, to the second, for certificate times.
pub fn cert_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(chrono::Utc::now().timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// `n` years as certificate validity (leap days included).
pub fn years(n: i64) -> time::Duration {
    time::Duration::days(365 * n + n / 4)
}

/// RFC 3339 (UTC, seconds) of a certificate time.
pub fn stamp(t: time::OffsetDateTime) -> String {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A fresh random positive 128-bit serial number, and its lower-case hex.
pub fn random_serial() -> Result<(SerialNumber, String), getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok((SerialNumber::from_slice(&bytes), hex::encode(bytes)))
}

/// The one profile of a client certificate (a box's, or the hub's at the broker): subject CN, O =
/// the county, OU = the site; digital signature and client authentication only; valid from an hour
/// ago (clock skew) until `not_after`; a random serial, returned in hex.
pub fn box_cert_params(
    cn: &str,
    county: &str,
    unit: Option<&str>,
    not_after: time::OffsetDateTime,
) -> Result<(CertificateParams, String), getrandom::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, county);
    if let Some(unit) = unit {
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, unit);
    }
    params.not_before = cert_now() - time::Duration::hours(1);
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let (sn, hex) = random_serial()?;
    params.serial_number = Some(sn);
    Ok((params, hex))
}

/// The SHA-256 of the first certificate in `pem` (its DER), lower-case hex: what `openssl x509
/// -noout -fingerprint -sha256` prints, without the colons.
pub fn pem_sha256(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then(|| hex::encode(Sha256::digest(&block.contents)))
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// A one-time enrollment token: 32 random bytes, shown once as 13 groups of 4 base32 letters.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 32]);

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl Token {
    pub fn generate() -> Result<Token, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)?;
        Ok(Token(bytes))
    }

    /// A token as typed: base32 (any case; spaces and dashes ignored) or 64 hex digits.
    pub fn parse(text: &str) -> Option<Token> {
        let clean: Vec<u8> = text
            .bytes()
            .filter(|b| !matches!(b, b'-' | b' ' | b'\t' | b'\r' | b'\n'))
            .map(|b| b.to_ascii_uppercase())
            .collect();
        let mut out = [0u8; 32];
        if clean.len() == 64 && hex::decode_to_slice(&clean, &mut out).is_ok() {
            return Some(Token(out));
        }
        if clean.len() != 52 {
            return None;
        }
        let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
        for c in clean {
            let v = B32.iter().position(|&x| x == c)? as u32;
            acc = (acc << 5) | v;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                *out.get_mut(n)? = (acc >> bits) as u8;
                n += 1;
                acc &= (1 << bits) - 1;
            }
        }
        // 52 letters carry 260 bits: the 4 left over must be zero.
        (n == 32 && acc == 0).then_some(Token(out))
    }

    /// What the store keeps: the SHA-256 of the token's bytes.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut acc, mut bits) = (0u32, 0u32);
        let mut letters = Vec::with_capacity(52);
        for b in self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                letters.push(B32[((acc >> bits) & 31) as usize]);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            letters.push(B32[((acc << (5 - bits)) & 31) as usize]);
        }
        for (i, group) in letters.chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enroll_tokens (
    id INTEGER PRIMARY KEY, token_sha256 BLOB NOT NULL UNIQUE, site TEXT NOT NULL, device TEXT NOT NULL,
    created_ms INTEGER NOT NULL, created_by TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    replaced_ms INTEGER, used_ms INTEGER, used_from TEXT);
CREATE INDEX IF NOT EXISTS enroll_tokens_by_box ON enroll_tokens (site, device);
CREATE TABLE IF NOT EXISTS enrolled_certs (
    id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL REFERENCES enroll_tokens(id),
    site TEXT NOT NULL, device TEXT NOT NULL, serial TEXT NOT NULL UNIQUE, issued_ms INTEGER NOT NULL,
    not_after_ms INTEGER NOT NULL, tls_key_sha256 BLOB NOT NULL, certificate_pem TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS enrolled_certs_by_box ON enrolled_certs (site, device);
";

/// Creates the enrollment tables in a store that has none yet.
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Why a token cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Refused(String),
    #[error("drawing a random token: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// A token just made: shown once.
#[derive(Debug)]
pub struct NewToken {
    pub token: Token,
    pub expires_ms: i64,
    /// Earlier unused tokens of the same box, no longer valid.
    pub replaced: usize,
}

/// Makes a token for a box that is not registered yet, valid for `ttl_hours`; earlier unused
/// tokens of the same box stop working. Audited.
pub fn issue_token(
    tx: &Transaction<'_>,
    site: &SiteId,
    device: &DeviceId,
    ttl_hours: u32,
    by: &str,
) -> Result<NewToken, TokenError> {
    ensure_schema(tx)?;
    if ttl_hours == 0 || ttl_hours > MAX_TTL_HOURS {
        return Err(TokenError::Refused(format!(
            "--ttl-hours {ttl_hours}: give 1 to {MAX_TTL_HOURS} hours (72 is the default: three days to reach the office)"
        )));
    }
    let registered: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT registered_ms, revoked_ms FROM devices WHERE site = ?1 AND device = ?2",
            params![site.as_str(), device.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((since, revoked)) = registered {
        let state = match revoked {
            Some(at) => format!("was revoked on {}", fmt_ms(at)),
            None => format!("is registered at this hub since {}", fmt_ms(since)),
        };
        return Err(TokenError::Refused(format!(
            "{site}/{device} {state}. An identity is enrolled once: a replaced or re-installed box \
             gets a new device id (e.g. {}); the site's history stays with the site. Make the \
             token for the new id.",
            next_device_id(device)
        )));
    }
    let now = now_ms();
    let replaced = tx.execute(
        "UPDATE enroll_tokens SET replaced_ms = ?3 WHERE site = ?1 AND device = ?2
         AND used_ms IS NULL AND replaced_ms IS NULL AND expires_ms > ?3",
        params![site.as_str(), device.as_str(), now],
    )?;
    let token = Token::generate().map_err(TokenError::Random)?;
    let expires_ms = now + i64::from(ttl_hours) * 3_600_000;
    tx.execute(
        "INSERT INTO enroll_tokens (token_sha256, site, device, created_ms, created_by, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &token.hash()[..],
            site.as_str(),
            device.as_str(),
            now,
            by,
            expires_ms
        ],
    )?;
    store::audit(
        tx,
        by,
        "enroll.token",
        &format!("{site}/{device}"),
        &format!(
            "one-time enrollment token, valid until {}{}",
            fmt_ms(expires_ms),
            if replaced > 0 {
                format!("; {replaced} earlier unused token(s) replaced")
            } else {
                String::new()
            }
        ),
    )?;
    Ok(NewToken {
        token,
        expires_ms,
        replaced,
    })
}

/// `box-01` → `box-02`; anything else gets `-2`.
pub fn next_device_id(device: &DeviceId) -> String {
    let s = device.as_str();
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 {
        let (head, num) = s.split_at(s.len() - digits);
        if let Ok(n) = num.parse::<u64>() {
            return format!("{head}{:0width$}", n + 1, width = digits);
        }
    }
    format!("{s}-2")
}

// ---------------------------------------------------------------------------------------------
// The offline bundle

/// One file of an offline bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleFile {
    pub name: String,
    pub text: String,
    /// Holds the token: written readable by its owner only (0600).
    pub secret: bool,
}

/// What an offline bundle is made of.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    pub site: &'a SiteId,
    pub device: &'a DeviceId,
    pub token: &'a Token,
    /// The hub's HTTP address as boxes reach it.
    pub hub_url: &'a str,
    /// When the token expires, as shown.
    pub expires: &'a str,
    /// The county CA and its SHA-256.
    pub ca_pem: &'a str,
    pub ca_sha256: &'a str,
    /// The hub's `[updates] verifying_keys`.
    pub update_keys: &'a [String],
    /// The hub's down-link keys.
    pub hub_keys: &'a [String],
}

/// The files of an offline bundle (`sunlight-agent enroll --bundle DIR` reads them):
/// `enroll.toml` (the token, the hub, the CA's fingerprint and the update verifying keys),
/// `ca.pem` and a README for the technician. `sunlight-hub enroll token --bundle` and
/// `POST /api/v1/enroll/tokens` with `"bundle": true` both make it here.
pub fn bundle_files(b: &BundleSpec<'_>) -> Vec<BundleFile> {
    let (site, device, expires) = (b.site, b.device, b.expires);
    vec![
        BundleFile {
            name: "enroll.toml".into(),
            text: format!(
                "# Enrollment of {site}/{device} (sunlight-agent enroll --bundle THIS-DIR). One use, until {expires}.\n\
                 hub = {}\n\
                 site = {}\n\
                 device = {}\n\
                 token = \"{}\"\n\
                 ca_sha256 = {}\n\
                 # Who may sign the box's agent updates (the hub's [updates] verifying_keys).\n\
                 update_verifying_keys = [{}]\n\
                 # Whose acks and commands the box obeys (the hub's down-link keys).\n\
                 hub_verifying_keys = [{}]\n",
                toml_str(b.hub_url),
                toml_str(site.as_str()),
                toml_str(device.as_str()),
                b.token,
                toml_str(b.ca_sha256),
                toml_list(b.update_keys),
                toml_list(b.hub_keys)
            ),
            secret: true,
        },
        BundleFile {
            name: "ca.pem".into(),
            text: b.ca_pem.to_owned(),
            secret: false,
        },
        BundleFile {
            name: "README.txt".into(),
            text: format!(
                "Sunlight box enrollment: {site}/{device}\n\
                 \n\
                 On the box, as root, with the box on the network:\n\
                 \n\
                 \x20   sunlight-agent enroll --bundle <this directory>\n\
                 \n\
                 The token in enroll.toml works once, for this box only, until {expires}.\n\
                 Wipe this stick afterwards.\n"
            ),
            secret: false,
        },
    ]
}

/// Writes one bundle file into `dir` (made if missing) and syncs it to the medium (a USB stick
/// pulled out right after must hold it). Returns the file's path.
pub fn write_bundle_file(dir: &Path, file: &BundleFile) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(&file.name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if file.secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(file.text.as_bytes())?;
    f.sync_all()?;
    Ok(path)
}

/// A token as `sunlight-hub enroll list` shows it (never the token itself).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub site: String,
    pub device: String,
    pub created: String,
    pub created_by: String,
    pub expires: String,
    /// `waiting`, `used`, `expired` or `replaced`.
    pub state: &'static str,
    pub used: Option<String>,
    pub used_from: Option<String>,
}

pub fn tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenView>> {
    ensure_schema(conn)?;
    let now = now_ms();
    let mut stmt = conn.prepare(
        "SELECT site, device, created_ms, created_by, expires_ms, replaced_ms, used_ms, used_from
         FROM enroll_tokens ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let (expires, replaced, used): (i64, Option<i64>, Option<i64>) =
            (r.get(4)?, r.get(5)?, r.get(6)?);
        Ok(TokenView {
            site: r.get(0)?,
            device: r.get(1)?,
            created: fmt_ms(r.get(2)?),
            created_by: r.get(3)?,
            expires: fmt_ms(expires),
            state: if used.is_some() {
                "used"
            } else if replaced.is_some() {
                "replaced"
            } else if expires <= now {
                "expired"
            } else {
                "waiting"
            },
            used: used.map(fmt_ms),
            used_from: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Boxes with a usable token that have not enrolled yet: the broker's ACL may list them before
/// they enroll, so a box syncs as soon as it has its certificate.
pub fn waiting_boxes(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT t.site, t.device FROM enroll_tokens t
         WHERE t.used_ms IS NULL AND t.replaced_ms IS NULL AND t.expires_ms > ?1
           AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.site = t.site AND d.device = t.device)
         ORDER BY t.site, t.device",
    )?;
    let rows = stmt.query_map([now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// A certificate the enrollment CA signed.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolledCert {
    pub site: String,
    pub device: String,
    pub serial: String,
    pub not_after_ms: i64,
    /// The box was revoked at the hub (`sunlight-hub device revoke`).
    pub revoked: bool,
}

/// Every certificate the enrollment CA signed, for the broker's CRL and the revocation list.
pub fn enrolled_certs(conn: &Connection) -> rusqlite::Result<Vec<EnrolledCert>> {
    ensure_schema(conn)?;
    let mut stmt = conn.prepare(
        "SELECT c.site, c.device, c.serial, c.not_after_ms,
                EXISTS (SELECT 1 FROM devices d WHERE d.site = c.site AND d.device = c.device
                        AND d.revoked_ms IS NOT NULL)
         FROM enrolled_certs c ORDER BY c.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(EnrolledCert {
            site: r.get(0)?,
            device: r.get(1)?,
            serial: r.get(2)?,
            not_after_ms: r.get(3)?,
            revoked: r.get(4)?,
        })
    })?;
    rows.collect()
}

// ---------------------------------------------------------------------------------------------
// The enrollment CA at the hub

/// Why the enrollment CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("enrollment CA in {}: {detail}", dir.display())]
pub struct SignerError {
    pub dir: PathBuf,
    pub detail: String,
}

/// The enrollment CA, loaded from `--enroll-ca-dir`, and what the hub tells enrolling boxes.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    pub county: String,
    /// The enrollment CA certificate (the chain a box sends after its own certificate).
    pub chain_pem: String,
    /// The county CA.
    pub ca_pem: String,
    pub ca_sha256: String,
    pub not_after: time::OffsetDateTime,
    /// `mqtts://host:8883`: where enrolled boxes connect.
    pub broker_url: String,
    /// The hub's down-link keys in force (`downkeys`): enrolled boxes trust acks and commands
    /// sealed by these. Set by the hub after loading.
    pub hub_keys: Vec<String>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signer(county {}, until {}, broker {})",
            self.county,
            stamp(self.not_after),
            self.broker_url
        )
    }
}

impl Signer {
    /// Loads the directory `sunlight-provision hub-signer` wrote; `broker_url` overrides the
    /// default `mqtts://<first hub host>:8883`.
    pub fn load(dir: &Path, broker_url: Option<&str>) -> Result<Signer, SignerError> {
        let bad = |detail: String| SignerError {
            dir: dir.to_path_buf(),
            detail,
        };
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| {
                bad(format!(
                    "reading {name}: {e}. Make the directory on the county CA's machine with \
                     'sunlight-provision hub-signer --dir CA --out DIR' and copy it to the hub"
                ))
            })
        };
        let info: EnrollCaInfo = toml::from_str(&read(files::INFO)?)
            .map_err(|e| bad(format!("{}: {e}", files::INFO)))?;
        let chain_pem = read(files::CA_CERT)?;
        let ca_pem = read(files::COUNTY_CA)?;
        let key = KeyPair::from_pem(&read(files::CA_KEY)?).map_err(|e| {
            bad(format!(
                "{} is not a private key in PEM ({e})",
                files::CA_KEY
            ))
        })?;
        let (_, chain_block) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
            .map_err(|e| bad(format!("{}: not a PEM certificate ({e})", files::CA_CERT)))?;
        let cert = chain_block
            .parse_x509()
            .map_err(|e| bad(format!("{}: not a certificate ({e})", files::CA_CERT)))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(format!(
                "{} and {} do not belong together: copy both from the same 'hub-signer' run",
                files::CA_CERT,
                files::CA_KEY
            )));
        }
        if !cert.is_ca() {
            return Err(bad(format!("{} is not a CA certificate", files::CA_CERT)));
        }
        let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
            .map_err(|e| bad(format!("{}: not a PEM certificate ({e})", files::COUNTY_CA)))?;
        let county_ca = ca_block
            .parse_x509()
            .map_err(|e| bad(format!("{}: not a certificate ({e})", files::COUNTY_CA)))?;
        if cert.issuer().as_raw() != county_ca.subject().as_raw() {
            return Err(bad(format!(
                "{} was not issued by the county CA in {}: copy both from the same CA directory",
                files::CA_CERT,
                files::COUNTY_CA
            )));
        }
        let not_after =
            time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
                .map_err(|e| bad(format!("{}: bad expiry ({e})", files::CA_CERT)))?;
        if not_after <= cert_now() {
            return Err(bad(format!(
                "the enrollment CA expired on {}: make a new one with 'sunlight-provision hub-signer --force'",
                stamp(not_after)
            )));
        }
        let ca_sha256 = hex::encode(Sha256::digest(&ca_block.contents));
        let issuer = Issuer::from_ca_cert_pem(&chain_pem, key)
            .map_err(|e| bad(format!("{}: {e}", files::CA_CERT)))?;
        let broker_url = match broker_url {
            Some(url) => check_broker_url(url).map_err(bad)?,
            None => {
                let host = info.hub_hosts.first().ok_or_else(|| {
                    bad(format!(
                        "{} names no hub host: give --public-broker-url mqtts://HOST:8883",
                        files::INFO
                    ))
                })?;
                if host.contains(':') {
                    format!("mqtts://[{host}]:8883")
                } else {
                    format!("mqtts://{host}:8883")
                }
            }
        };
        Ok(Signer {
            issuer,
            county: info.county,
            chain_pem,
            ca_pem,
            ca_sha256,
            not_after,
            broker_url,
            hub_keys: Vec::new(),
        })
    }

    /// Signs a box's request: only its public key is used; the name, usages and validity are
    /// the box profile's. Returns the certificate, its serial and its expiry.
    fn sign(
        &self,
        mut csr: CertificateSigningRequestParams,
        site: &SiteId,
        device: &DeviceId,
    ) -> Result<(String, String, time::OffsetDateTime), String> {
        let not_after = (cert_now() + years(BOX_CERT_YEARS)).min(self.not_after);
        let (params, serial) = box_cert_params(
            &box_cn(site, device),
            &self.county,
            Some(site.as_str()),
            not_after,
        )
        .map_err(|e| format!("drawing a serial number: {e}"))?;
        csr.params = params;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| format!("signing the certificate: {e}"))?;
        Ok((cert.pem(), serial, not_after))
    }
}

fn check_broker_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let ok = url
        .strip_prefix("mqtts://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '"', '\\', ' ']));
    if ok {
        Ok(url.to_string())
    } else {
        Err(format!(
            "--public-broker-url {url:?}: give the county broker's TLS address as boxes reach it, \
             e.g. mqtts://hub.suixian.gov.cn:8883 (enrolled boxes connect with their certificate)"
        ))
    }
}

/// Whether this hub enrolls boxes: attached to the HTTP router by [`attach`].
#[derive(Clone, Debug, Default)]
pub struct Enrollment(Option<Arc<Signer>>);

impl Enrollment {
    pub fn enabled(signer: Signer) -> Enrollment {
        Enrollment(Some(Arc::new(signer)))
    }
    pub fn disabled() -> Enrollment {
        Enrollment(None)
    }
    /// The enrollment CA, when enrollment is on.
    pub fn signer(&self) -> Option<Arc<Signer>> {
        self.0.clone()
    }
}

/// Gives the router's enrollment endpoint its signer (or tells it enrollment is off).
pub fn attach(router: Router, enrollment: Enrollment) -> Router {
    router.layer(axum::Extension(enrollment))
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/enroll

pub fn router() -> Router<ApiState> {
    Router::new().route("/api/v1/enroll", post(enroll))
}

/// What a box sends.
#[derive(Debug, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    pub site: String,
    pub device: String,
    /// The box's ed25519 batch-signing public key, standard base64.
    pub ed25519_public_key: String,
    /// A PKCS#10 request for the box's TLS key.
    pub csr_pem: String,
    /// Where the box keeps its data (its agent.toml names files there); default /var/lib/sunlight.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The hub's HTTP address as the box reached it: the agent.toml's `[hub] api`.
    #[serde(default)]
    pub hub_url: Option<String>,
}

/// What the hub answers.
#[derive(Debug, Serialize)]
pub struct EnrollAnswer {
    pub site: String,
    pub device: String,
    /// The box's certificate (CN `<site>.<device>`).
    pub certificate_pem: String,
    /// The enrollment CA: send it after the certificate.
    pub chain_pem: String,
    /// The county CA, to trust the broker by.
    pub ca_pem: String,
    pub ca_sha256: String,
    pub broker_url: String,
    /// The box's complete agent.toml (with `[update] verifying_keys` when the hub has some).
    pub agent_config_toml: String,
    /// The hub's `[updates] verifying_keys`: who may sign the box's agent updates.
    pub update_verifying_keys: Vec<String>,
    /// The hub's down-link keys (the box's `[hub] verifying_keys`).
    pub hub_verifying_keys: Vec<String>,
    pub serial: String,
    pub not_after: String,
    /// This token was already used by this very box (same keys): the same answer again.
    pub repeated: bool,
}

/// A refused enrollment: status, a machine-readable reason, and a message for the technician.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            message: message.into(),
        }
    }
    fn internal(e: impl fmt::Display) -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
    fn response(&self) -> Response {
        (
            self.status,
            axum::Json(json!({ "error": self.message, "reason": self.reason })),
        )
            .into_response()
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Refusal {
        Refusal::internal(e)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A request whose fields are checked.
struct Checked {
    token: Token,
    site: SiteId,
    device: DeviceId,
    key: PublicKey,
    csr: CertificateSigningRequestParams,
    tls_key_sha256: [u8; 32],
    data_dir: String,
    hub_url: Option<String>,
}

fn unprocessable(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, reason, message)
}

fn check_request(body: &[u8]) -> Result<Checked, Refusal> {
    let req: EnrollRequest = serde_json::from_slice(body).map_err(|e| {
        unprocessable(
            "bad_request",
            format!("bad request body: {e}; send {{token, site, device, ed25519_public_key, csr_pem}} as JSON"),
        )
    })?;
    let site = SiteId::new(req.site.trim())
        .map_err(|e| unprocessable("bad_request", format!("site: {e}")))?;
    let device = DeviceId::new(req.device.trim())
        .map_err(|e| unprocessable("bad_request", format!("device: {e}")))?;
    let token = Token::parse(&req.token).ok_or_else(|| {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "token_malformed",
            "this is not an enrollment token (52 letters and digits in groups of 4, as \
             'sunlight-hub enroll token' printed it): check what was typed",
        )
    })?;
    let key = PublicKey::from_base64(&req.ed25519_public_key).ok_or_else(|| {
        unprocessable(
            "bad_key",
            "ed25519_public_key is not a base64 ed25519 public key",
        )
    })?;
    let csr = CertificateSigningRequestParams::from_pem(&req.csr_pem).map_err(|e| {
        unprocessable(
            "bad_csr",
            format!(
                "csr_pem is not a valid, self-signed certificate request in PEM ({e}); \
                 sunlight-agent enroll makes one on the box"
            ),
        )
    })?;
    let tls_key_sha256 = Sha256::digest(csr.public_key.der_bytes()).into();
    let data_dir = req
        .data_dir
        .unwrap_or_else(|| "/var/lib/sunlight".to_string());
    if !data_dir.starts_with('/') || data_dir.len() > 1024 || data_dir.chars().any(char::is_control)
    {
        return Err(unprocessable(
            "bad_request",
            format!("data_dir {data_dir:?} must be an absolute path"),
        ));
    }
    let hub_url = match req.hub_url {
        Some(url) => {
            let url = url.trim().trim_end_matches('/').to_string();
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() <= 2048
                && !url
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\\');
            if !ok {
                return Err(unprocessable(
                    "bad_request",
                    format!("hub_url {url:?} must be an http:// or https:// address"),
                ));
            }
            Some(url)
        }
        None => None,
    };
    Ok(Checked {
        token,
        site,
        device,
        key,
        csr,
        tls_key_sha256,
        data_dir,
        hub_url,
    })
}

/// A token as stored.
#[derive(Debug, Clone)]
struct TokenRow {
    id: i64,
    site: String,
    device: String,
    created_by: String,
    expires_ms: i64,
    replaced_ms: Option<i64>,
    used_ms: Option<i64>,
}

/// Whether a token may enroll `site/device` at `now`: the check order never tells a holder of
/// one token anything about another.
fn check_token(
    row: Option<&TokenRow>,
    site: &SiteId,
    device: &DeviceId,
    now: i64,
) -> Result<(), Refusal> {
    let unauthorized =
        |reason, message: String| Err(Refusal::new(StatusCode::UNAUTHORIZED, reason, message));
    let Some(row) = row else {
        return unauthorized(
            "token_unknown",
            "this hub issued no such token: check what was typed, or ask the county operator for a \
             token for this box (sunlight-hub enroll token)"
                .into(),
        );
    };
    if row.site != site.as_str() || row.device != device.as_str() {
        return unauthorized(
            "token_other_box",
            format!(
                "this token is not for {site}/{device}: check --site and --device against what the \
                 county operator wrote down, or ask for a token for {site}/{device}"
            ),
        );
    }
    if let Some(used) = row.used_ms {
        return unauthorized(
            "token_used",
            format!(
                "this token was already used, on {}; a token enrolls one box once. If this box \
                 was not the one enrolled, tell the county operator (sunlight-hub enroll list) and \
                 ask for a new token for a new device id",
                fmt_ms(used)
            ),
        );
    }
    if let Some(replaced) = row.replaced_ms {
        return unauthorized(
            "token_replaced",
            format!(
                "this token was replaced by a newer one for {site}/{device} on {}: use the newest token",
                fmt_ms(replaced)
            ),
        );
    }
    if row.expires_ms <= now {
        return unauthorized(
            "token_expired",
            format!(
                "this token expired on {}: ask the county operator for a new one \
                 (sunlight-hub enroll token --site {site} --device {device})",
                fmt_ms(row.expires_ms)
            ),
        );
    }
    Ok(())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The box's agent.toml: who it is, where its files are, the broker over mTLS, the hub's API.
fn agent_config(
    c: &Checked,
    broker_url: &str,
    serial: &str,
    hub_keys: &[String],
    update_keys: &[String],
) -> String {
    let dir = c.data_dir.trim_end_matches('/');
    let dir = if dir.is_empty() { "/" } else { dir };
    let file = |name: &str| toml_str(&format!("{}/{name}", dir.trim_end_matches('/')));
    let api = match &c.hub_url {
        Some(url) => format!("api = {}\n", toml_str(url)),
        None => "# api = \"https://hub.example\"\n".into(),
    };
    format!(
        "# sunlight-agent configuration of {site}/{device}, written by 'sunlight-agent enroll' from\n\
         # the county hub's answer (certificate serial {serial}). Every other option, with its\n\
         # default, is in agent.example.toml of the Sunlight source (docs/provisioning.md).\n\
         site = {site_s}\n\
         device = {device_s}\n\
         # The outbox, the signing key (device.key), the TLS key (box.key) and the certificates.\n\
         data_dir = {dir_s}\n\
         \n\
         [hub]\n\
         # The county broker, over mutual TLS: this box's certificate (CN {cn}) followed by the\n\
         # enrollment CA, checked against the county CA.\n\
         broker = {broker}\n\
         ca_file = {ca}\n\
         cert_file = {cert}\n\
         key_file = {key}\n\
         # The hub's down-link keys: acks and commands sealed by another key are refused.\n\
         verifying_keys = [{hub_keys}]\n\
         # The hub's HTTP API, where snapshots are uploaded.\n\
         {api}{updates}",
        site = c.site,
        device = c.device,
        site_s = toml_str(c.site.as_str()),
        device_s = toml_str(c.device.as_str()),
        dir_s = toml_str(dir),
        cn = box_cn(&c.site, &c.device),
        broker = toml_str(broker_url),
        ca = file("ca.pem"),
        cert = file("box.pem"),
        key = file("box.key"),
        hub_keys = toml_list(hub_keys),
        updates = update_section(update_keys),
    )
}

/// The `[update]` table of an enrolled box's agent.toml: the hub's `[updates] verifying_keys`, so
/// the box checks signed updates without anyone copying a key to it. Empty without keys.
pub fn update_section(update_keys: &[String]) -> String {
    if update_keys.is_empty() {
        return String::new();
    }
    format!(
        "\n[update]\n\
         # Who may sign this box's agent updates: the county hub's [updates] verifying_keys\n\
         # (sunlight-provision update-key).\n\
         verifying_keys = [{}]\n",
        toml_list(update_keys)
    )
}

/// Keys as the items of a TOML array: `"a", "b"`.
pub fn toml_list(keys: &[String]) -> String {
    keys.iter()
        .map(|k| toml_str(k.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer for a certificate, new or repeated.
fn answer(
    c: &Checked,
    signer: &Signer,
    update_keys: &[String],
    certificate_pem: String,
    serial: String,
    not_after_ms: i64,
    repeated: bool,
) -> EnrollAnswer {
    EnrollAnswer {
        site: c.site.to_string(),
        device: c.device.to_string(),
        agent_config_toml: agent_config(
            c,
            &signer.broker_url,
            &serial,
            &signer.hub_keys,
            update_keys,
        ),
        update_verifying_keys: update_keys.to_vec(),
        hub_verifying_keys: signer.hub_keys.clone(),
        certificate_pem,
        chain_pem: signer.chain_pem.clone(),
        ca_pem: signer.ca_pem.clone(),
        ca_sha256: signer.ca_sha256.clone(),
        broker_url: signer.broker_url.clone(),
        serial,
        not_after: fmt_ms(not_after_ms),
        repeated,
    }
}

/// The whole enrollment, in the caller's transaction: nothing is written unless it all succeeds.
fn enroll_in(
    tx: &Transaction<'_>,
    signer: &Signer,
    update_keys: &[String],
    c: &Checked,
    from: &str,
) -> Result<EnrollAnswer, Refusal> {
    ensure_schema(tx)?;
    let now = now_ms();
    let row = tx
        .query_row(
            "SELECT id, site, device, created_by, expires_ms, replaced_ms, used_ms
             FROM enroll_tokens WHERE token_sha256 = ?1",
            [&c.token.hash()[..]],
            |r| {
                Ok(TokenRow {
                    id: r.get(0)?,
                    site: r.get(1)?,
                    device: r.get(2)?,
                    created_by: r.get(3)?,
                    expires_ms: r.get(4)?,
                    replaced_ms: r.get(5)?,
                    used_ms: r.get(6)?,
                })
            },
        )
        .optional()?;
    let registered: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT pubkey, revoked_ms FROM devices WHERE site = ?1 AND device = ?2",
            params![c.site.as_str(), c.device.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Err(refusal) = check_token(row.as_ref(), &c.site, &c.device, now) {
        // The same box asking again (its answer was lost on the way): the same certificate again.
        // Only public halves are compared, and the answer holds nothing secret.
        if let (Some(row), "token_used") = (&row, refusal.reason) {
            let same_key = registered
                .as_ref()
                .is_some_and(|(k, revoked)| *k == c.key.to_base64() && revoked.is_none());
            let earlier: Option<(String, String, i64)> = tx
                .query_row(
                    "SELECT certificate_pem, serial, not_after_ms FROM enrolled_certs
                     WHERE token_id = ?1 AND tls_key_sha256 = ?2",
                    params![row.id, &c.tls_key_sha256[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let (true, Some((pem, serial, not_after))) = (same_key, earlier) {
                return Ok(answer(c, signer, update_keys, pem, serial, not_after, true));
            }
        }
        return Err(refusal);
    }
    let Some(row) = row else {
        return Err(Refusal::internal("token vanished"));
    };
    match &registered {
        Some((_, Some(revoked))) => {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "device_revoked",
                format!(
                    "{}/{} was revoked on {}: a revoked identity is never enrolled again. Ask the \
                     county operator for a token for a new device id (e.g. {})",
                    c.site,
                    c.device,
                    fmt_ms(*revoked),
                    next_device_id(&c.device)
                ),
            ));
        }
        Some((key, None)) if *key != c.key.to_base64() => {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "device_exists",
                format!(
                    "{}/{} is already registered at the hub with another signing key. A replaced \
                     box gets a new device id (e.g. {}); ask the county operator for a token for it",
                    c.site,
                    c.device,
                    next_device_id(&c.device)
                ),
            ));
        }
        _ => {}
    }
    let (pem, serial, not_after) = signer
        .sign(c.csr.clone(), &c.site, &c.device)
        .map_err(Refusal::internal)?;
    let not_after_ms = not_after.unix_timestamp() * 1000;
    tx.execute(
        "INSERT INTO enrolled_certs (token_id, site, device, serial, issued_ms, not_after_ms,
                                     tls_key_sha256, certificate_pem)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            row.id,
            c.site.as_str(),
            c.device.as_str(),
            serial,
            now,
            not_after_ms,
            &c.tls_key_sha256[..],
            pem
        ],
    )?;
    let used = tx.execute(
        "UPDATE enroll_tokens SET used_ms = ?2, used_from = ?3 WHERE id = ?1 AND used_ms IS NULL",
        params![row.id, now, from],
    )?;
    if used != 1 {
        return Err(Refusal::internal("the token was used at the same moment"));
    }
    if registered.is_none() {
        // As store::add_device registers a box, in this transaction.
        tx.execute(
            "INSERT INTO devices (site, device, pubkey, registered_ms, last_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.site.as_str(), c.device.as_str(), c.key.to_base64(), now, &GENESIS.0[..]],
        )?;
    }
    store::audit(
        tx,
        &format!("token of {}", row.created_by),
        "device.enroll",
        &format!("{}/{}", c.site, c.device),
        &format!(
            "enrolled from {from}: signing key {}, certificate serial {serial} (CN {}) valid until {}",
            c.key,
            box_cn(&c.site, &c.device),
            fmt_ms(not_after_ms)
        ),
    )?;
    Ok(answer(
        c,
        signer,
        update_keys,
        pem,
        serial,
        not_after_ms,
        false,
    ))
}

async fn enroll(
    State(state): State<ApiState>,
    enrollment: Option<axum::Extension<Enrollment>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(signer) = enrollment.and_then(|e| e.0.0.clone()) else {
        return Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "disabled",
            "enrollment is not enabled at this hub: the county operator starts it with \
             --enroll-ca-dir DIR (made by 'sunlight-provision hub-signer'). Until then a box gets \
             its certificate by hand (docs/provisioning.md, 'device cert')",
        )
        .response();
    };
    let checked = match check_request(&body) {
        Ok(c) => c,
        Err(r) => {
            tracing::warn!(reason = r.reason, "enrollment refused: {}", r.message);
            return r.response();
        }
    };
    let from = connect
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown address".into());
    let (site, device) = (checked.site.to_string(), checked.device.to_string());
    let update_keys = state.sup.config().updates.verifying_keys.clone();
    let result = crate::web::write(&state, move |tx| {
        enroll_in(tx, &signer, &update_keys, &checked, &from)
    })
    .await;
    match result {
        Ok(Ok(answer)) => {
            tracing::info!(%site, %device, serial = %answer.serial, repeated = answer.repeated, "box enrolled");
            axum::Json(answer).into_response()
        }
        Ok(Err(r)) => {
            tracing::warn!(%site, %device, reason = r.reason, "enrollment refused: {}", r.message);
            r.response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(site: &str, device: &str) -> (SiteId, DeviceId) {
        (SiteId::new(site).unwrap(), DeviceId::new(device).unwrap())
    }

    #[test]
    fn tokens_round_trip_as_typed() {
        let t = Token::generate().unwrap();
        let shown = t.to_string();
        assert_eq!(shown.len(), 52 + 12, "{shown}");
        assert_eq!(Token::parse(&shown), Some(t.clone()));
        assert_eq!(Token::parse(&shown.to_lowercase()), Some(t.clone()));
        assert_eq!(Token::parse(&shown.replace('-', " ")), Some(t.clone()));
        assert_eq!(Token::parse(&hex::encode(t.0)), Some(t.clone()));
        assert_eq!(Token::parse(&shown[..shown.len() - 1]), None);
        assert_eq!(Token::parse("hello"), None);
        // A last letter with stray low bits is not a token (one spelling per token).
        // (The last letter carries one bit and four zero bits: A or Q.)
        let mut bad = shown.clone();
        assert!(matches!(bad.pop(), Some('A' | 'Q')));
        bad.push('B');
        assert_eq!(Token::parse(&bad), None);
        assert_ne!(Token::generate().unwrap(), t);
    }

    #[test]
    fn token_states_are_checked_in_an_order_that_leaks_nothing() {
        let (s, d) = ids("suixian-shangshi", "box-01");
        let now = 1_000_000;
        let row = TokenRow {
            id: 1,
            site: "suixian-shangshi".into(),
            device: "box-01".into(),
            created_by: "op".into(),
            expires_ms: now + 10,
            replaced_ms: None,
            used_ms: None,
        };
        assert!(check_token(Some(&row), &s, &d, now).is_ok());
        let reason = |r: &TokenRow, s: &SiteId, d: &DeviceId, now| {
            check_token(Some(r), s, d, now).unwrap_err().reason
        };
        assert_eq!(
            check_token(None, &s, &d, now).unwrap_err().reason,
            "token_unknown"
        );
        let (s2, d2) = ids("suixian-shangshi", "box-02");
        // Another box's token, even used or expired, says only "not for this box".
        let used = TokenRow {
            used_ms: Some(5),
            expires_ms: 0,
            ..row.clone()
        };
        assert_eq!(reason(&used, &s2, &d2, now), "token_other_box");
        assert_eq!(reason(&used, &s, &d, now), "token_used");
        let expired = TokenRow {
            expires_ms: now,
            ..row.clone()
        };
        assert_eq!(reason(&expired, &s, &d, now), "token_expired");
        let replaced = TokenRow {
            replaced_ms: Some(3),
            ..row.clone()
        };
        assert_eq!(reason(&replaced, &s, &d, now), "token_replaced");
    }

    #[test]
    fn the_agent_config_is_valid_toml_with_escaped_paths() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let csr_pem = p.serialize_request(&key).unwrap().pem().unwrap();
        let body = json!({
            "token": Token::generate().unwrap().to_string(),
            "site": "suixian-shangshi", "device": "box-01",
            "ed25519_public_key": sunlight_protocol::DeviceKey::generate().unwrap().public().to_base64(),
            "csr_pem": csr_pem, "data_dir": "/srv/sun \"light\"", "hub_url": "https://hub.example/"
        });
        let c = check_request(body.to_string().as_bytes()).unwrap();
        let hub_keys = ["aHVi".to_string(), "bmV4dA==".to_string()];
        let text = agent_config(&c, "mqtts://hub.example:8883", "4a", &hub_keys, &[]);
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert!(v.get("update").is_none(), "{text}");
        assert_eq!(
            v["hub"]["verifying_keys"].as_array().map(|a| a.len()),
            Some(2)
        );
        let keyed = agent_config(
            &c,
            "mqtts://hub.example:8883",
            "4a",
            &hub_keys,
            &["a2V5\"x".into()],
        );
        let k: toml::Table = toml::from_str(&keyed).unwrap();
        assert_eq!(
            k["update"]["verifying_keys"].as_array().map(|a| a.len()),
            Some(1)
        );
        assert_eq!(k["update"]["verifying_keys"][0].as_str(), Some("a2V5\"x"));
        assert_eq!(v["data_dir"].as_str(), Some("/srv/sun \"light\""));
        assert_eq!(
            v["hub"]["key_file"].as_str(),
            Some("/srv/sun \"light\"/box.key")
        );
        assert_eq!(v["hub"]["api"].as_str(), Some("https://hub.example"));
        assert_eq!(
            v["hub"]["broker"].as_str(),
            Some("mqtts://hub.example:8883")
        );
        // A request that is not a CSR, and a relative data dir, are refused.
        let mut bad = body.clone();
        bad["csr_pem"] =
            json!("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
        assert_eq!(
            check_request(bad.to_string().as_bytes())
                .err()
                .map(|r| r.reason),
            Some("bad_csr")
        );
        let mut bad = body;
        bad["data_dir"] = json!("data");
        assert!(check_request(bad.to_string().as_bytes()).is_err());
    }

    #[test]
    fn tokens_only_for_boxes_not_registered_and_a_new_one_replaces_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.db");
        let mut w = store::Writer::open(&path).unwrap();
        let (s, d) = ids("suixian-shangshi", "box-03");
        let first = w
            .run(|tx| Ok(issue_token(tx, &s, &d, 72, "op")))
            .unwrap()
            .unwrap();
        let second = w
            .run(|tx| Ok(issue_token(tx, &s, &d, 72, "op")))
            .unwrap()
            .unwrap();
        assert_eq!((first.replaced, second.replaced), (0, 1));
        let list = w.run(|tx| tokens(tx)).unwrap();
        assert_eq!(
            list.iter().map(|t| t.state).collect::<Vec<_>>(),
            ["replaced", "waiting"]
        );
        assert_eq!(
            w.run(|tx| waiting_boxes(tx)).unwrap(),
            vec![(s.to_string(), d.to_string())]
        );
        assert!(
            w.run(|tx| Ok(issue_token(tx, &s, &d, 0, "op")))
                .unwrap()
                .is_err()
        );
        let key = sunlight_protocol::DeviceKey::generate().unwrap().public();
        store::add_device(&path, &s, &d, &key).unwrap();
        let err = w
            .run(|tx| Ok(issue_token(tx, &s, &d, 72, "op")))
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("box-04"), "{err}");
        assert!(w.run(|tx| waiting_boxes(tx)).unwrap().is_empty());
    }
}
