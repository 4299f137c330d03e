//! The per-device hash chain: `hash(seq) = sha256(hash(seq-1) ‖ canonical bytes of seq)`.
//!
//! "信息一经录入系统,便不能更改": once an event has a successor, changing any byte of it (or dropping
//! or re-ordering events) changes every hash after it, which the hub notices.

use sha2::{Digest, Sha256};
use std::fmt;

/// The `prev` of seq 1: 32 zero bytes (64 zeros in hex).
pub const GENESIS: EventHash = EventHash([0; 32]);

/// A SHA-256 event hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    /// The hash of the event whose canonical bytes are `canonical` and whose predecessor is `prev`.
    pub fn next(prev: &EventHash, canonical: &[u8]) -> EventHash {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(canonical);
        EventHash(h.finalize().into())
    }

    /// [`EventHash::next`] over canonical bytes given in two pieces (the hub hashes them in place).
    pub fn next_parts(prev: &EventHash, head: &[u8], rest: &[u8]) -> EventHash {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(head);
        h.update(rest);
        EventHash(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<EventHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(EventHash(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<EventHash> {
        Some(EventHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_64_zeros_and_hex_round_trips() {
        assert_eq!(GENESIS.to_hex(), "0".repeat(64));
        let h = EventHash::next(&GENESIS, b"{}");
        assert_eq!(EventHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(EventHash::next_parts(&GENESIS, b"{", b"}"), h);
        assert_eq!(EventHash::from_hex("zz"), None);
    }
}
