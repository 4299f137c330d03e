//! How a box proves who it is to the hub's embedded broker (decision 0016).
//!
//! A box has no password: it has its device key, whose public half the hub registered when the box
//! was added or enrolled. It logs in to the embedded broker with
//!
//! - username `<site>.<device>` (the same name as its certificate's CN on a county Mosquitto), and
//! - password `v1:<base64 ed25519 signature>` of [`CONTEXT`] followed by the username.
//!
//! The hub checks the signature with the registered key and refuses a revoked box. Nothing needs to
//! be issued, stored on the box or rotated, and the password is worthless for any other device or
//! purpose (the context keeps it from being taken for a batch or update signature). It is the same
//! on every connect: on a link without TLS a listener could replay it, which is why the embedded
//! broker is served to the network only with `--insecure-broker` (a closed test network) and a
//! county runs Mosquitto with mTLS.
//!
//! A box's MQTT client ids are bound to the same name: `sunlight-<site>-<device>` for its agent and
//! `sunlight-check-<site>-<device>-<pid>` for `sunlight-agent check`; see [`client_id_allowed`].

use crate::ids::{DeviceId, SiteId};
use crate::keys::{DeviceKey, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Prefixed to the username before signing: what the signature is about.
pub const CONTEXT: &[u8] = b"sunlight broker login v1\n";

const PREFIX: &str = "v1:";

/// The username of a box: `<site>.<device>`.
pub fn username(site: &SiteId, device: &DeviceId) -> String {
    format!("{site}.{device}")
}

/// The password of a box: its signature of its username.
pub fn password(key: &DeviceKey, site: &SiteId, device: &DeviceId) -> String {
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(username(site, device).as_bytes());
    format!("{PREFIX}{}", B64.encode(key.sign(&message)))
}

/// Whether `password` is the login of `site`/`device` signed by `key`.
pub fn verify(key: &PublicKey, site: &SiteId, device: &DeviceId, password: &str) -> bool {
    let Some(sig) = password
        .strip_prefix(PREFIX)
        .and_then(|b| B64.decode(b).ok())
    else {
        return false;
    };
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(username(site, device).as_bytes());
    key.verify(&message, &sig)
}

/// The box a username names (`<site>.<device>`), if it is one.
pub fn parse_username(username: &str) -> Option<(SiteId, DeviceId)> {
    let (site, device) = username.split_once('.')?;
    Some((site.parse().ok()?, device.parse().ok()?))
}

/// The agent's MQTT client id.
pub fn agent_client_id(site: &SiteId, device: &DeviceId) -> String {
    format!("sunlight-{site}-{device}")
}

/// The start of `sunlight-agent check`'s client ids (the process id follows).
pub fn check_client_id_prefix(site: &SiteId, device: &DeviceId) -> String {
    format!("sunlight-check-{site}-{device}-")
}

/// Whether a box may connect with `client_id`: its agent's id, or a check's id followed by digits.
pub fn client_id_allowed(site: &SiteId, device: &DeviceId, client_id: &str) -> bool {
    if client_id == agent_client_id(site, device) {
        return true;
    }
    client_id
        .strip_prefix(&check_client_id_prefix(site, device))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(site: &str, device: &str) -> (SiteId, DeviceId) {
        (site.parse().unwrap(), device.parse().unwrap())
    }

    #[test]
    fn a_box_s_password_opens_only_its_own_name() {
        let key = DeviceKey::generate().unwrap();
        let other = DeviceKey::generate().unwrap();
        let (s, d) = ids("suixian-lishan", "box-01");
        let (_, d2) = ids("suixian-lishan", "box-02");
        let pw = password(&key, &s, &d);
        assert!(verify(&key.public(), &s, &d, &pw));
        assert!(!verify(&other.public(), &s, &d, &pw), "another key");
        assert!(!verify(&key.public(), &s, &d2, &pw), "another device");
        assert!(!verify(&key.public(), &s, &d, ""));
        assert!(!verify(&key.public(), &s, &d, "v1:not base64"));
        assert!(!verify(
            &key.public(),
            &s,
            &d,
            &pw.replacen("v1:", "v2:", 1)
        ));
        assert_eq!(parse_username(&username(&s, &d)), Some((s, d)));
        assert_eq!(parse_username("sunlight-hub"), None);
        assert_eq!(parse_username("a.b.c"), None);
    }

    #[test]
    fn client_ids_are_bound_to_the_box() {
        let (s, d) = ids("suixian-lishan", "box-01");
        let (_, d2) = ids("suixian-lishan", "box-02");
        assert!(client_id_allowed(&s, &d, "sunlight-suixian-lishan-box-01"));
        assert!(client_id_allowed(
            &s,
            &d,
            "sunlight-check-suixian-lishan-box-01-4242"
        ));
        assert!(!client_id_allowed(&s, &d, "sunlight-hub"));
        assert!(!client_id_allowed(
            &s,
            &d2,
            "sunlight-suixian-lishan-box-01"
        ));
        assert!(!client_id_allowed(
            &s,
            &d,
            "sunlight-check-suixian-lishan-box-01-"
        ));
        assert!(!client_id_allowed(
            &s,
            &d,
            "sunlight-check-suixian-lishan-box-01-1x"
        ));
    }
}
