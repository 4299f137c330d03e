//! The signed down-link: everything the hub sends a box on `down/ack` and `down/cmd`.
//!
//! A broker client that is not the hub must not be able to make a box delete, skip or execute
//! anything (PROTOCOL.md "Acknowledgement"). So every down message is sealed by the hub: the
//! message text names the box it is for and what it is (`ack` or `cmd`), and carries one ed25519
//! signature per hub key in force (one, or two while a key is being rotated). The box opens it
//! with the hub keys it learned at enrollment and refuses anything else.
//!
//! ```json
//! {"v":2,"msg":"{\"site\":\"suixian-shangshi\",\"device\":\"box-01\",\"kind\":\"ack\",\"body\":{…}}",
//!  "sigs":[{"key":"<base64 public key>","sig":"<base64 signature>"}]}
//! ```
//!
//! `msg` is a JSON document carried as a string, so the signed bytes are exactly the bytes sent:
//! no canonical form is needed on either side. The signature covers [`CONTEXT`] followed by those
//! bytes, so a down signature can never be taken for a batch or update signature.
//!
//! What a seal does not say is whether the message is *new*. Replays are answered by the receiver:
//! an ack only counts when it moves past what the box has acknowledged already (and never past
//! what it has sent); a command runs at most once per `cmd_id` and never after its `expires`.

use crate::ids::{DeviceId, SiteId};
use crate::keys::{DeviceKey, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version of the sealed form (`"v": 2`); protocol v1 sent bare JSON.
pub const DOWN_VERSION: u32 = 2;

/// Prefixed to the message bytes before signing: what the signature is about.
pub const CONTEXT: &[u8] = b"sunlight down-link v2\n";

/// Largest sealed message a box reads (a roster command is the largest; it stays far below).
pub const MAX_SEALED_BYTES: usize = 4 * 1024 * 1024;

/// What a sealed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownKind {
    /// `down/ack`: a [`crate::Ack`].
    Ack,
    /// `down/cmd`: a [`crate::Command`].
    Cmd,
}

/// Why a box refused a down message. Every variant names what was wrong, for the box's log.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DownError {
    #[error("{0} bytes is over the limit of {MAX_SEALED_BYTES} bytes")]
    TooLarge(usize),
    #[error(
        "not a sealed down message ({0}); a hub from before protocol v2 sends unsigned acks and commands: upgrade the hub"
    )]
    Malformed(String),
    #[error("sealed with version {0}; this box reads version {DOWN_VERSION}")]
    Version(u32),
    #[error(
        "this box knows no hub key: set [hub] verifying_keys (sunlight-hub hub-key show prints them)"
    )]
    NoTrustedKey,
    #[error("no signature by a hub key this box trusts ({0} signature(s) checked)")]
    BadSignature(usize),
    #[error("addressed to {named}, not to this box {this}")]
    WrongDevice { named: String, this: String },
    #[error("a {got:?} message on the {expected:?} topic")]
    WrongKind { expected: DownKind, got: DownKind },
}

#[derive(Serialize, Deserialize)]
struct Signature {
    key: String,
    sig: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    v: u32,
    msg: String,
    sigs: Vec<Signature>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    site: &'a str,
    device: &'a str,
    kind: DownKind,
    body: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
struct MessageIn {
    site: String,
    device: String,
    kind: DownKind,
    body: Box<serde_json::value::RawValue>,
}

fn signed_bytes(msg: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CONTEXT.len() + msg.len());
    bytes.extend_from_slice(CONTEXT);
    bytes.extend_from_slice(msg.as_bytes());
    bytes
}

/// Seals `body` (a JSON document) for one box, signed by each of `keys` (the hub's keys in force).
/// Fails only when `body` is not JSON.
pub fn seal(
    keys: &[&DeviceKey],
    site: &SiteId,
    device: &DeviceId,
    kind: DownKind,
    body: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let body: &serde_json::value::RawValue = serde_json::from_slice(body)?;
    let msg = serde_json::to_string(&MessageOut {
        site: site.as_str(),
        device: device.as_str(),
        kind,
        body,
    })?;
    let bytes = signed_bytes(&msg);
    let sigs = keys
        .iter()
        .map(|k| Signature {
            key: k.public().to_base64(),
            sig: B64.encode(k.sign(&bytes)),
        })
        .collect();
    serde_json::to_vec(&Sealed {
        v: DOWN_VERSION,
        msg,
        sigs,
    })
}

/// Opens a sealed message for this box: checks that one signature is by a key in `trusted`, that
/// it is addressed to `site`/`device`, and that it is a `kind` message. Returns its body (JSON).
pub fn open(
    payload: &[u8],
    trusted: &[PublicKey],
    site: &SiteId,
    device: &DeviceId,
    kind: DownKind,
) -> Result<Vec<u8>, DownError> {
    if payload.len() > MAX_SEALED_BYTES {
        return Err(DownError::TooLarge(payload.len()));
    }
    let sealed: Sealed =
        serde_json::from_slice(payload).map_err(|e| DownError::Malformed(e.to_string()))?;
    if sealed.v != DOWN_VERSION {
        return Err(DownError::Version(sealed.v));
    }
    if trusted.is_empty() {
        return Err(DownError::NoTrustedKey);
    }
    let bytes = signed_bytes(&sealed.msg);
    let good = sealed.sigs.iter().any(|s| {
        let (Some(key), Ok(sig)) = (PublicKey::from_base64(&s.key), B64.decode(&s.sig)) else {
            return false;
        };
        trusted.contains(&key) && key.verify(&bytes, &sig)
    });
    if !good {
        return Err(DownError::BadSignature(sealed.sigs.len()));
    }
    let msg: MessageIn =
        serde_json::from_str(&sealed.msg).map_err(|e| DownError::Malformed(e.to_string()))?;
    if msg.site != site.as_str() || msg.device != device.as_str() {
        return Err(DownError::WrongDevice {
            named: format!("{}/{}", msg.site, msg.device),
            this: format!("{site}/{device}"),
        });
    }
    if msg.kind != kind {
        return Err(DownError::WrongKind {
            expected: kind,
            got: msg.kind,
        });
    }
    Ok(msg.body.get().as_bytes().to_vec())
}

/// Hub verifying keys as written in config files (standard base64 of 32 bytes); the error names
/// the one that is not.
pub fn trusted_keys(texts: &[String]) -> Result<Vec<PublicKey>, String> {
    texts
        .iter()
        .map(|t| {
            PublicKey::from_base64(t).ok_or_else(|| {
                format!(
                    "{t:?} is not a hub verifying key (base64 of 32 bytes, as 'sunlight-hub hub-key show' prints it)"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids() -> (SiteId, DeviceId) {
        (
            SiteId::new("suixian-shangshi").unwrap(),
            DeviceId::new("box-01").unwrap(),
        )
    }

    const ACK: &[u8] = br#"{"through_seq":41,"hub_time":"2026-12-04T08:00:00.000Z","rejected":[]}"#;

    #[test]
    fn a_sealed_ack_opens_with_the_hub_key_only() {
        let (site, device) = ids();
        let hub = DeviceKey::generate().unwrap();
        let other = DeviceKey::generate().unwrap();
        let sealed = seal(&[&hub], &site, &device, DownKind::Ack, ACK).unwrap();
        let body = open(&sealed, &[hub.public()], &site, &device, DownKind::Ack).unwrap();
        let ack: crate::Ack = serde_json::from_slice(&body).unwrap();
        assert_eq!(ack.through_seq, 41);
        assert_eq!(
            open(&sealed, &[other.public()], &site, &device, DownKind::Ack),
            Err(DownError::BadSignature(1))
        );
        assert_eq!(
            open(&sealed, &[], &site, &device, DownKind::Ack),
            Err(DownError::NoTrustedKey)
        );
        // Signed by someone else entirely.
        let forged = seal(&[&other], &site, &device, DownKind::Ack, ACK).unwrap();
        assert!(matches!(
            open(&forged, &[hub.public()], &site, &device, DownKind::Ack),
            Err(DownError::BadSignature(_))
        ));
    }

    #[test]
    fn two_keys_in_force_while_rotating() {
        let (site, device) = ids();
        let old = DeviceKey::generate().unwrap();
        let new = DeviceKey::generate().unwrap();
        let sealed = seal(&[&old, &new], &site, &device, DownKind::Cmd, b"{}").unwrap();
        for trusted in [vec![old.public()], vec![new.public()]] {
            assert!(open(&sealed, &trusted, &site, &device, DownKind::Cmd).is_ok());
        }
    }

    #[test]
    fn another_box_or_another_kind_is_refused() {
        let (site, device) = ids();
        let hub = DeviceKey::generate().unwrap();
        let sealed = seal(&[&hub], &site, &device, DownKind::Ack, ACK).unwrap();
        let box2 = DeviceId::new("box-02").unwrap();
        assert!(matches!(
            open(&sealed, &[hub.public()], &site, &box2, DownKind::Ack),
            Err(DownError::WrongDevice { .. })
        ));
        assert!(matches!(
            open(&sealed, &[hub.public()], &site, &device, DownKind::Cmd),
            Err(DownError::WrongKind { .. })
        ));
    }

    #[test]
    fn an_edited_message_or_unsigned_v1_is_refused() {
        let (site, device) = ids();
        let hub = DeviceKey::generate().unwrap();
        let sealed = seal(&[&hub], &site, &device, DownKind::Ack, ACK).unwrap();
        let edited = String::from_utf8(sealed)
            .unwrap()
            .replace("through_seq\\\":41", "through_seq\\\":99999");
        assert!(edited.contains("99999"));
        assert!(matches!(
            open(
                edited.as_bytes(),
                &[hub.public()],
                &site,
                &device,
                DownKind::Ack
            ),
            Err(DownError::BadSignature(1))
        ));
        assert!(matches!(
            open(ACK, &[hub.public()], &site, &device, DownKind::Ack),
            Err(DownError::Malformed(_))
        ));
        let v3 = br#"{"v":3,"msg":"{}","sigs":[]}"#;
        assert_eq!(
            open(v3, &[hub.public()], &site, &device, DownKind::Ack),
            Err(DownError::Version(3))
        );
    }

    #[test]
    fn trusted_keys_name_the_bad_one() {
        let hub = DeviceKey::generate().unwrap();
        assert_eq!(
            trusted_keys(&[hub.public().to_base64()]).unwrap(),
            vec![hub.public()]
        );
        let err = trusted_keys(&["nope".into()]).unwrap_err();
        assert!(err.contains("\"nope\""), "{err}");
    }

    proptest! {
        /// Any bytes at all: an error or a body, never a panic; never a body without the key.
        #[test]
        fn arbitrary_payloads_never_open(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (site, device) = ids();
            let hub = DeviceKey::generate().unwrap();
            prop_assert!(open(&payload, &[hub.public()], &site, &device, DownKind::Ack).is_err());
        }

        /// A sealed message with any byte flipped does not open.
        #[test]
        fn any_flipped_byte_is_refused(at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (site, device) = ids();
            let hub = DeviceKey::generate().unwrap();
            let mut sealed = seal(&[&hub], &site, &device, DownKind::Ack, ACK).unwrap();
            let i = at.index(sealed.len());
            sealed[i] ^= 1 << bit;
            if let Ok(body) = open(&sealed, &[hub.public()], &site, &device, DownKind::Ack) {
                // Only a flip inside JSON whitespace-free syntax that changes nothing signed could
                // open; the signed text is the `msg` string, so the body must be the original.
                prop_assert_eq!(body, ACK.to_vec());
            }
        }
    }
}
