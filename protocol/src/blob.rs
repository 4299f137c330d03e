//! Blob uploads (PROTOCOL.md "Blobs"): `PUT /api/v1/blobs/{sha256}` on the hub's HTTP API, body = the
//! JPEG. The box proves who it is with a signature by its device key (the same ed25519 key that signs
//! its batches) over [`put_message`], sent in the headers below. An upload is idempotent: replaying
//! one stores nothing new, so the time only bounds how long a captured request stays usable.

/// `x-sunlight-site`: the box's site id.
pub const SITE_HEADER: &str = "x-sunlight-site";
/// `x-sunlight-device`: the box's device id.
pub const DEVICE_HEADER: &str = "x-sunlight-device";
/// `x-sunlight-time`: RFC 3339 time of signing, by the box's clock.
pub const TIME_HEADER: &str = "x-sunlight-time";
/// `x-sunlight-signature`: base64 (standard, padded) ed25519 signature over [`put_message`].
pub const SIGNATURE_HEADER: &str = "x-sunlight-signature";
/// How far the signing time may be from the hub's clock (box clocks drift during outages).
pub const MAX_SKEW_SECS: i64 = 24 * 3600;
/// Largest blob accepted.
pub const MAX_BLOB_BYTES: usize = 10 * 1024 * 1024;

/// The bytes a box signs to upload blob `sha256` (lowercase hex).
pub fn put_message(sha256: &str, site: &str, device: &str, time: &str) -> Vec<u8> {
    format!("PUT /api/v1/blobs/{sha256}\n{site}\n{device}\n{time}").into_bytes()
}

/// Whether `text` is a lowercase hex SHA-256.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKey;

    #[test]
    fn a_signed_put_verifies_and_a_changed_field_does_not() {
        let key = DeviceKey::generate().unwrap();
        let sha = "ab".repeat(32);
        let msg = put_message(&sha, "s", "d", "2026-11-22T10:00:00+08:00");
        let sig = key.sign(&msg);
        assert!(key.public().verify(&msg, &sig));
        let other = put_message(&sha, "s", "d2", "2026-11-22T10:00:00+08:00");
        assert!(!key.public().verify(&other, &sig));
        assert!(is_sha256_hex(&sha));
        assert!(!is_sha256_hex(&sha.to_uppercase()));
        assert!(!is_sha256_hex("../etc/passwd"));
    }
}
