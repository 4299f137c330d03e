//! The agent update signing key and signed update archives (docs/updates.md). The key is made with
//! the county CA material (`update-key --dir CA_DIR`) and stays offline with it; its verifying half
//! goes into the hub's `[updates] verifying_keys` and each box's `[update] verifying_keys`.

use crate::error::Error;
use crate::files::{self, Access};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use sunlight_protocol::update::{self, UpdateKey};

pub const KEY_FILE: &str = "update-signing.key";
pub const VERIFYING_FILE: &str = "update-verifying.pub";

/// What `update-key` made.
#[derive(Debug)]
pub struct MadeKey {
    pub key: PathBuf,
    pub verifying_file: PathBuf,
    pub verifying_key: String,
}

/// Makes the signing key in `dir` (0600) and writes its verifying key beside it. An existing key
/// is kept unless `force` (every box trusts the old key until its config lists the new one).
pub fn make(dir: &Path, force: bool) -> Result<MadeKey, Error> {
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() && !force {
        return Err(Error::Refused(format!(
            "{} exists: every box trusts it. Keep it, or make another with --force and list both verifying keys in the hub's and the boxes' configs until the old one is retired",
            key_path.display()
        )));
    }
    let key = UpdateKey::generate().map_err(|e| Error::Crypto {
        what: "making the update key".into(),
        detail: e.to_string(),
    })?;
    files::write(&key_path, key.to_hex().as_bytes(), Access::Secret)?;
    let verifying_file = dir.join(VERIFYING_FILE);
    let verifying_key = key.verifying_key();
    files::write(
        &verifying_file,
        format!("{verifying_key}\n").as_bytes(),
        Access::Public,
    )?;
    Ok(MadeKey {
        key: key_path,
        verifying_file,
        verifying_key,
    })
}

/// What `sign-update` did.
#[derive(Debug)]
pub struct Signed {
    pub out: PathBuf,
    pub version: String,
    pub verifying_key: String,
}

/// Signs `archive` (a .tar.gz holding `sunlight-agent` and `VERSION`) with the key file, into
/// `out` (default: the archive itself, replaced whole).
pub fn sign(key_file: &Path, archive: &Path, out: Option<&Path>) -> Result<Signed, Error> {
    let text = std::fs::read_to_string(key_file).map_err(Error::io("reading", key_file))?;
    let key = UpdateKey::from_hex(&text)
        .ok_or_else(|| Error::bad_file(key_file, "not an update signing key (64 hex digits)"))?;
    let bytes = crate::progress::read_file(archive, "reading the archive")
        .map_err(Error::io("reading", archive))?;
    let step = crate::progress::spinner("checking the archive's contents");
    let contents = update::extract(Cursor::new(&bytes), &mut std::io::sink())
        .map_err(|e| Error::bad_file(archive, e.to_string()));
    step.finish_and_clear();
    let contents = contents?;
    let step = crate::progress::spinner("signing");
    let mut signed = Cursor::new(Vec::new());
    let done = update::sign(&mut Cursor::new(&bytes), &mut signed, &key)
        .map_err(|e| Error::bad_file(archive, e.to_string()));
    step.finish_and_clear();
    done?;
    let out = out.unwrap_or(archive).to_path_buf();
    let step = crate::progress::spinner("writing the signed archive");
    let written = files::write(&out, signed.get_ref(), Access::Public);
    step.finish_and_clear();
    written?;
    Ok(Signed {
        out,
        version: contents.version,
        verifying_key: key.verifying_key(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_archives_that_verify_with_its_verifying_key() {
        let dir = tempfile::tempdir().unwrap();
        let made = make(dir.path(), false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(make(dir.path(), false).is_err(), "an existing key is kept");
        let archive = dir.path().join("a.tar.gz");
        let mut plain = Vec::new();
        update::pack(&mut plain, b"binary", "0.2.0").unwrap();
        std::fs::write(&archive, &plain).unwrap();
        let s = sign(&made.key, &archive, None).unwrap();
        assert_eq!(s.version, "0.2.0");
        let keys =
            update::verifying_keys(&[std::fs::read_to_string(&made.verifying_file).unwrap()])
                .unwrap();
        let mut f = std::fs::File::open(&archive).unwrap();
        assert_eq!(update::verify(&mut f, &keys).unwrap(), 0);
        // Not an update archive: refused before signing.
        std::fs::write(dir.path().join("x.tar.gz"), b"junk").unwrap();
        assert!(sign(&made.key, &dir.path().join("x.tar.gz"), None).is_err());
    }
}
