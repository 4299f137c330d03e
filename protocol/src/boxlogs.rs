//! Log uploads (PROTOCOL.md "Commands", `upload_logs`): `PUT /api/v1/box/logs/{sha256}?cmd_id=...` on
//! the hub's HTTP API, body = the box's recent log as UTF-8 text. Signed by the device key like a
//! blob upload ([`crate::blob`]), with the same headers; the signed message also names the command
//! the upload answers, so a captured request cannot be replayed for another command. The hub keeps
//! one upload per command: sending it again (after a crash before the answer) stores nothing new.

/// Largest log upload accepted.
pub const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

/// The bytes a box signs to upload a log of `sha256` (lowercase hex) for command `cmd_id`.
pub fn put_message(sha256: &str, cmd_id: &str, site: &str, device: &str, time: &str) -> Vec<u8> {
    format!("PUT /api/v1/box/logs/{sha256}\n{cmd_id}\n{site}\n{device}\n{time}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKey;

    #[test]
    fn the_signature_covers_the_command() {
        let key = DeviceKey::generate().unwrap();
        let sha = "ab".repeat(32);
        let t = "2026-11-22T10:00:00+08:00";
        let sig = key.sign(&put_message(&sha, "upload_logs-s-d-1", "s", "d", t));
        assert!(
            key.public()
                .verify(&put_message(&sha, "upload_logs-s-d-1", "s", "d", t), &sig)
        );
        assert!(
            !key.public()
                .verify(&put_message(&sha, "upload_logs-s-d-2", "s", "d", t), &sig)
        );
        // Not a blob upload's signature either.
        assert!(
            !key.public()
                .verify(&crate::blob::put_message(&sha, "s", "d", t), &sig)
        );
    }
}
