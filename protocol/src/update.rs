//! Signed agent updates: the archive format both sides check (docs/updates.md).
//!
//! An update is a `.tar.gz` holding the `sunlight-agent` binary and a `VERSION` file (one line, the
//! release's version), with a zipsign ed25519 signature embedded at its end (zipsign-api: the
//! signature is a trailing gzip member whose comment carries it, so `tar xzf` still reads the
//! archive). The signature covers every byte before it, under the context [`SIGNATURE_CONTEXT`]:
//! a signature made for another purpose with the same key does not verify here.
//!
//! The signing key is made offline with the county CA material (`sunlight-provision update-key`)
//! and stored as 64 hex digits like a box's key; its public half is written as standard base64 and
//! configured at the hub (`[updates] verifying_keys`) and on each box (`[update] verifying_keys`).
//! Nothing here touches the file system: callers hand in readers and writers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::io::{Read, Seek, Write};
use thiserror::Error;
use zipsign_api::{SigningKey, VerifyingKey};

/// Domain separation of update signatures.
pub const SIGNATURE_CONTEXT: &[u8] = b"sunlight-agent update v1";
/// The binary's name inside the archive.
pub const BINARY_ENTRY: &str = "sunlight-agent";
/// The version file's name inside the archive.
pub const VERSION_ENTRY: &str = "VERSION";
/// Largest binary taken from an archive (a box build is about 10 MB; debug builds are bigger).
pub const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum UpdateError {
    #[error(
        "the archive carries no update signature (sign it with 'sunlight-provision sign-update')"
    )]
    Unsigned,
    #[error(
        "the archive's signature does not match any trusted update key (signed by another key, or changed after signing)"
    )]
    BadSignature,
    #[error("no trusted update key is configured")]
    NoKeys,
    #[error("the archive is not a readable .tar.gz: {0}")]
    Archive(String),
    #[error("the archive has no {BINARY_ENTRY} file")]
    NoBinary,
    #[error("the archive has no {VERSION_ENTRY} file")]
    NoVersion,
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// The update signing key (kept offline with the county CA).
pub struct UpdateKey(SigningKey);

impl UpdateKey {
    pub fn generate() -> Result<UpdateKey, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(UpdateKey(SigningKey::from_bytes(&seed)))
    }

    /// From its key file: the 32-byte seed in hex.
    pub fn from_hex(text: &str) -> Option<UpdateKey> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).ok()?;
        Some(UpdateKey(SigningKey::from_bytes(&seed)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The verifying key, base64, for the hub's and the boxes' configuration.
    pub fn verifying_key(&self) -> String {
        B64.encode(self.0.verifying_key().as_bytes())
    }
}

impl std::fmt::Debug for UpdateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpdateKey(verifying {})", self.verifying_key())
    }
}

/// Parses verifying keys (standard base64 of 32 bytes each); the error names the bad one.
pub fn verifying_keys(texts: &[String]) -> Result<Vec<VerifyingKey>, UpdateError> {
    texts
        .iter()
        .map(|text| {
            let bytes = B64.decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
            bytes
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| {
                    UpdateError::Invalid(format!(
                        "{text:?} is not an update verifying key (base64 of 32 bytes, as 'sunlight-provision update-key' prints it)"
                    ))
                })
        })
        .collect()
}

/// Copies a `.tar.gz` from `input` to `output` with the signature appended.
pub fn sign<I: Read + Seek, O: Write + Seek>(
    input: &mut I,
    output: &mut O,
    key: &UpdateKey,
) -> Result<(), UpdateError> {
    // A signed archive signed again would carry a signature over the first one; refuse it.
    if zipsign_api::verify::verify_tar(input, &[key.0.verifying_key()], Some(SIGNATURE_CONTEXT))
        .is_ok()
    {
        return Err(UpdateError::Invalid("the archive is signed already".into()));
    }
    input.rewind().map_err(|source| UpdateError::Io {
        what: "reading the archive",
        source,
    })?;
    check_gzip(input)?;
    zipsign_api::sign::copy_and_sign_tar(
        input,
        output,
        std::slice::from_ref(&key.0),
        Some(SIGNATURE_CONTEXT),
    )
    .map_err(|e| UpdateError::Invalid(format!("signing failed: {e}")))
}

fn check_gzip<I: Read + Seek>(input: &mut I) -> Result<(), UpdateError> {
    let mut magic = [0u8; 2];
    let ok = input.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    input.rewind().map_err(|source| UpdateError::Io {
        what: "reading the archive",
        source,
    })?;
    if ok {
        Ok(())
    } else {
        Err(UpdateError::Archive(
            "it does not start like a gzip file; make it with 'tar czf'".into(),
        ))
    }
}

/// Checks the signature against the trusted keys: `Ok(index of the key that signed it)`.
pub fn verify<I: Read + Seek>(input: &mut I, keys: &[VerifyingKey]) -> Result<usize, UpdateError> {
    if keys.is_empty() {
        return Err(UpdateError::NoKeys);
    }
    input.rewind().map_err(|source| UpdateError::Io {
        what: "reading the archive",
        source,
    })?;
    let result = zipsign_api::verify::verify_tar(input, keys, Some(SIGNATURE_CONTEXT));
    input.rewind().map_err(|source| UpdateError::Io {
        what: "reading the archive",
        source,
    })?;
    match result {
        Ok(i) => Ok(i),
        // The two refusals a person needs told apart: a signature that matches no trusted key
        // (zipsign's "no match", the one error without an underlying cause), or none at all.
        Err(e) if std::error::Error::source(&e).is_none() => Err(UpdateError::BadSignature),
        Err(_) => Err(UpdateError::Unsigned),
    }
}

/// What an update archive holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Contents {
    /// The `VERSION` file's first line.
    pub version: String,
    /// Size of the binary in bytes.
    pub binary_bytes: u64,
}

/// Reads a (verified) archive: writes the binary to `binary` and returns the version. Entries
/// other than `sunlight-agent` and `VERSION` (with or without a leading `./`) are ignored; links and
/// directories with those names are refused.
pub fn extract<I: Read, W: Write>(input: I, binary: &mut W) -> Result<Contents, UpdateError> {
    let bad = |e: std::io::Error| UpdateError::Archive(e.to_string());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let mut version = None;
    let mut binary_bytes = None;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = path.strip_prefix("./").unwrap_or(&path);
        if name != BINARY_ENTRY && name != VERSION_ENTRY {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(UpdateError::Archive(format!(
                "{name} in the archive is not a regular file"
            )));
        }
        if name == BINARY_ENTRY {
            if binary_bytes.is_some() {
                return Err(UpdateError::Archive(format!("two {BINARY_ENTRY} entries")));
            }
            let n =
                std::io::copy(&mut (&mut entry).take(MAX_BINARY_BYTES + 1), binary).map_err(bad)?;
            if n > MAX_BINARY_BYTES {
                return Err(UpdateError::Archive(format!(
                    "{BINARY_ENTRY} is over {MAX_BINARY_BYTES} bytes"
                )));
            }
            binary_bytes = Some(n);
        } else {
            let mut text = String::new();
            (&mut entry)
                .take(256)
                .read_to_string(&mut text)
                .map_err(|_| UpdateError::Archive("VERSION is not UTF-8 text".into()))?;
            version = Some(check_version(text.lines().next().unwrap_or(""))?);
        }
    }
    Ok(Contents {
        version: version.ok_or(UpdateError::NoVersion)?,
        binary_bytes: binary_bytes.ok_or(UpdateError::NoBinary)?,
    })
}

/// A release version: 1-64 characters of letters, digits, '.', '-', '+' and '_'.
pub fn check_version(text: &str) -> Result<String, UpdateError> {
    let v = text.trim();
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
    {
        return Err(UpdateError::Invalid(format!(
            "version {v:?} must be 1-64 characters of letters, digits, '.', '-', '+' and '_'"
        )));
    }
    Ok(v.to_owned())
}

/// The order of two release versions (`0.2.0`, `0.2.0-rc1`, `1.10.3+build5`): the dotted numbers
/// compared as numbers, and a pre-release (`-…`) before its release. `None` when either does not
/// start with dotted numbers: then nobody can tell which is newer.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    fn parts(v: &str) -> Option<(Vec<u64>, bool)> {
        let v = v.trim().split('+').next().unwrap_or_default();
        let (release, pre) = match v.split_once('-') {
            Some((r, _)) => (r, true),
            None => (v, false),
        };
        let numbers = release
            .split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some((numbers, pre))
    }
    let (mut a, a_pre) = parts(a)?;
    let (mut b, b_pre) = parts(b)?;
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    // A release sorts after its pre-releases: `false` (release) > `true` (pre-release).
    Some(a.cmp(&b).then((!a_pre).cmp(&!b_pre)))
}

/// Builds an unsigned archive holding `binary` and a `VERSION` file (for tests and the docs'
/// example; operators may use `tar czf` as well).
pub fn pack<W: Write>(out: W, binary: &[u8], version: &str) -> Result<(), UpdateError> {
    let io = |source| UpdateError::Io {
        what: "writing the archive",
        source,
    };
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes, mode) in [
        (BINARY_ENTRY, binary, 0o755),
        (VERSION_ENTRY, format!("{version}\n").as_bytes(), 0o644),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).map_err(io)?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_releases() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("0.1.1", "0.1.0"), Some(Greater));
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Some(Greater));
        assert_eq!(compare_versions("0.2.0-rc1", "0.2.0"), Some(Less));
        assert_eq!(compare_versions("0.2.0+b7", "0.2"), Some(Equal));
        assert_eq!(compare_versions("1.0.0", "0.99.0"), Some(Greater));
        assert_eq!(compare_versions("nightly", "0.1.0"), None);
    }
    use std::io::Cursor;

    fn signed(binary: &[u8], version: &str, key: &UpdateKey) -> Vec<u8> {
        let mut plain = Vec::new();
        pack(&mut plain, binary, version).unwrap();
        let mut out = Cursor::new(Vec::new());
        sign(&mut Cursor::new(plain), &mut out, key).unwrap();
        out.into_inner()
    }

    fn keys(key: &UpdateKey) -> Vec<VerifyingKey> {
        verifying_keys(&[key.verifying_key()]).unwrap()
    }

    #[test]
    fn a_signed_archive_verifies_and_extracts() {
        let key = UpdateKey::generate().unwrap();
        let archive = signed(b"#!/bin/sh\nexit 0\n", "0.2.0", &key);
        assert_eq!(verify(&mut Cursor::new(&archive), &keys(&key)).unwrap(), 0);
        let mut bin = Vec::new();
        let c = extract(Cursor::new(&archive), &mut bin).unwrap();
        assert_eq!(c.version, "0.2.0");
        assert_eq!(bin, b"#!/bin/sh\nexit 0\n");
        // The second of two trusted keys.
        let other = UpdateKey::generate().unwrap();
        let both = verifying_keys(&[other.verifying_key(), key.verifying_key()]).unwrap();
        assert_eq!(verify(&mut Cursor::new(&archive), &both).unwrap(), 1);
        // The key file round-trips.
        let again = UpdateKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.verifying_key(), key.verifying_key());
    }

    #[test]
    fn unsigned_tampered_and_foreign_archives_are_refused() {
        let key = UpdateKey::generate().unwrap();
        let other = UpdateKey::generate().unwrap();
        let mut plain = Vec::new();
        pack(&mut plain, b"binary", "0.2.0").unwrap();
        assert!(matches!(
            verify(&mut Cursor::new(&plain), &keys(&key)),
            Err(UpdateError::Unsigned)
        ));
        let archive = signed(b"binary", "0.2.0", &other);
        assert!(matches!(
            verify(&mut Cursor::new(&archive), &keys(&key)),
            Err(UpdateError::BadSignature)
        ));
        // One byte changed anywhere in the signed part.
        let good = signed(b"binary", "0.2.0", &key);
        for at in [0, 10, good.len() / 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                verify(&mut Cursor::new(&bad), &keys(&key)).is_err(),
                "byte {at} changed"
            );
        }
        assert!(matches!(
            verify(&mut Cursor::new(&good), &[]),
            Err(UpdateError::NoKeys)
        ));
        // Signing twice, or something that is not gzip, is refused.
        assert!(sign(&mut Cursor::new(&good), &mut Cursor::new(Vec::new()), &key).is_err());
        assert!(
            sign(
                &mut Cursor::new(b"not an archive".to_vec()),
                &mut Cursor::new(Vec::new()),
                &key
            )
            .is_err()
        );
    }

    #[test]
    fn contents_are_checked() {
        assert!(verifying_keys(&["abc".into()]).is_err());
        assert!(check_version("0.2.0 beta").is_err());
        assert!(check_version("").is_err());
        assert_eq!(check_version(" 0.2.0+box \n").unwrap(), "0.2.0+box");
        // Without a VERSION file.
        let mut plain = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut plain, flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, "sunlight-agent", &b"bin"[..])
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        assert!(matches!(
            extract(Cursor::new(&plain), &mut Vec::new()),
            Err(UpdateError::NoVersion)
        ));
        assert!(extract(Cursor::new(b"junk".to_vec()), &mut Vec::new()).is_err());
    }
}
