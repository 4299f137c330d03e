//! The hub's down-link keys: what seals every ack and command a box receives
//! (`sunlight_protocol::down`). Boxes learn the public halves at enrollment (or from
//! `sunlight-hub hub-key show` on the manual path) and refuse anything not sealed by one of them.
//!
//! The key is made at the hub's first start and kept in the data directory, readable by the hub's
//! user only (0600): `hub-down.key`. Rotating keeps two keys in force for a while:
//! `sunlight-hub hub-key rotate` makes `hub-down.next.key`, and from the next start the hub seals
//! with both, so boxes that know either key go on. Once every box trusts the new key,
//! `sunlight-hub hub-key retire` makes it the only one (the old file is kept aside, renamed).

use crate::Error;
use std::path::{Path, PathBuf};
use sunlight_protocol::down::{self, DownKind};
use sunlight_protocol::topics::{self, Channel};
use sunlight_protocol::{DeviceKey, PublicKey};

const CURRENT: &str = "hub-down.key";
const NEXT: &str = "hub-down.next.key";

/// The keys in force: the current one and, while rotating, the next.
#[derive(Debug)]
pub struct HubKeys {
    current: DeviceKey,
    next: Option<DeviceKey>,
}

fn read_key(path: &Path) -> Result<Option<DeviceKey>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => DeviceKey::from_hex(&text).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not a hub key (64 hex digits); restore it from the backup, or move it \
                 aside and enroll the boxes again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn write_new_key(path: &Path) -> Result<DeviceKey, Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = DeviceKey::generate()
        .map_err(|e| Error::Invalid(format!("no random source for the hub key: {e}")))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(key.to_hex().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(key)
}

impl HubKeys {
    /// The keys of the hub in `data_dir`, making the first one when there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<HubKeys, Error> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("creating {}", data_dir.display()), e))?;
        let current = match read_key(&data_dir.join(CURRENT))? {
            Some(k) => k,
            None => {
                let key = write_new_key(&data_dir.join(CURRENT))?;
                tracing::info!(public = %key.public(), "made the hub's down-link key");
                key
            }
        };
        let next = read_key(&data_dir.join(NEXT))?;
        Ok(HubKeys { current, next })
    }

    /// `hub-key rotate`: makes the next key (both are in force from the hub's next start).
    pub fn rotate(data_dir: &Path) -> Result<PublicKey, Error> {
        HubKeys::load_or_create(data_dir)?;
        let path = data_dir.join(NEXT);
        if read_key(&path)?.is_some() {
            return Err(Error::Invalid(format!(
                "{} exists: a rotation is under way. Retire the old key first \
                 (sunlight-hub hub-key retire) once every box trusts the new one",
                path.display()
            )));
        }
        Ok(write_new_key(&path)?.public())
    }

    /// `hub-key retire`: the next key becomes the only one; the old file is kept, renamed.
    pub fn retire(data_dir: &Path) -> Result<PathBuf, Error> {
        let (current, next) = (data_dir.join(CURRENT), data_dir.join(NEXT));
        if read_key(&next)?.is_none() {
            return Err(Error::Invalid(
                "no rotation under way: sunlight-hub hub-key rotate makes the next key first"
                    .into(),
            ));
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = data_dir.join(format!("hub-down.retired-{stamp}.key"));
        std::fs::rename(&current, &aside)
            .and_then(|()| std::fs::rename(&next, &current))
            .map_err(|e| Error::io("retiring the old hub key", e))?;
        Ok(aside)
    }

    /// The public keys in force, as boxes write them in `[hub] verifying_keys`.
    pub fn public_keys(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .map(|k| k.public().to_base64())
            .collect()
    }

    /// Seals `body` for the box whose `down/ack` or `down/cmd` topic this is; `None` (logged) for
    /// a topic that is not a box's down topic or a body that is not JSON.
    pub fn seal_for_topic(&self, topic: &str, body: &[u8]) -> Option<Vec<u8>> {
        let (site, device, kind) = match topics::parse(topic) {
            Some((s, d, Channel::Ack)) => (s, d, DownKind::Ack),
            Some((s, d, Channel::Cmd)) => (s, d, DownKind::Cmd),
            _ => {
                tracing::error!(topic, "not a box's down topic; nothing sealed or sent");
                return None;
            }
        };
        let keys: Vec<&DeviceKey> = std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .collect();
        match down::seal(&keys, &site, &device, kind, body) {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                tracing::error!(topic, error = %e, "could not seal a down message; not sent");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sunlight_protocol::{DeviceId, SiteId};

    #[test]
    fn made_once_kept_private_rotated_with_overlap_and_retired() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = HubKeys::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CURRENT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = HubKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_keys(), again.public_keys());

        let next = HubKeys::rotate(dir.path()).unwrap();
        assert!(
            HubKeys::rotate(dir.path()).is_err(),
            "one rotation at a time"
        );
        let both = HubKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(both.public_keys().len(), 2);
        let (site, device) = (SiteId::new("s").unwrap(), DeviceId::new("d").unwrap());
        let topic = topics::topic(&site, &device, Channel::Ack);
        let sealed = both.seal_for_topic(&topic, b"{}").unwrap();
        let old_public = PublicKey::from_base64(&first.public_keys()[0]).unwrap();
        for trusted in [old_public, next] {
            assert!(down::open(&sealed, &[trusted], &site, &device, DownKind::Ack).is_ok());
        }

        HubKeys::retire(dir.path()).unwrap();
        let after = HubKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(after.public_keys(), vec![next.to_base64()]);
        assert!(HubKeys::retire(dir.path()).is_err());
        assert!(
            after
                .seal_for_topic("sunlight/v1/s/d/up/batch", b"{}")
                .is_none()
        );
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURRENT), "not hex").unwrap();
        let err = HubKeys::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("hub-down.key"), "{err}");
    }
}
