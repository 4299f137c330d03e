//! The signed batch envelope.
//!
//! On the wire a batch is
//! `{"v":1,"site":S,"device":D,"events":[E1,E2,...],"sig":"<base64>"}` where each `Ei` is
//! `{"prev":"<64 hex>",` followed by the event's canonical bytes without their opening `{`.
//! The signature is ed25519 over every byte before `,"sig":` — "everything above" in PROTOCOL.md —
//! so the hub verifies and re-hashes exactly the bytes it received, without re-serializing anything.

use crate::PROTOCOL_VERSION;
use crate::chain::EventHash;
use crate::error::BatchError;
use crate::event::CanonicalEvent;
use crate::ids::{DeviceId, SiteId};
use crate::keys::{DeviceKey, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::value::RawValue;

const SIG_MARK: &[u8] = b",\"sig\":\"";
const PREV_HEAD: &[u8] = b"{\"prev\":\"";
/// Bytes a signature adds: `,"sig":"` + 88 base64 characters + `"}`.
const SIG_OVERHEAD: usize = 8 + 88 + 2;

/// Builds one batch of consecutive events, within a byte budget.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    max_bytes: usize,
    first_seq: Option<u64>,
    last_seq: u64,
}

impl BatchBuilder {
    pub fn new(site: &SiteId, device: &DeviceId, max_bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(max_bytes.min(1 << 20));
        buf.extend_from_slice(format!("{{\"v\":{PROTOCOL_VERSION},\"site\":\"{site}\",\"device\":\"{device}\",\"events\":[").as_bytes());
        BatchBuilder {
            buf,
            max_bytes,
            first_seq: None,
            last_seq: 0,
        }
    }

    /// Adds the event `seq` (its predecessor's hash and its canonical bytes). Returns false, adding
    /// nothing, when it would not fit; the first event of a batch always fits.
    pub fn push(&mut self, seq: u64, prev: &EventHash, canonical: &[u8]) -> bool {
        let added = PREV_HEAD.len() + 64 + 2 + canonical.len().saturating_sub(1) + 1;
        if self.first_seq.is_some() && self.buf.len() + added + 1 + SIG_OVERHEAD > self.max_bytes {
            return false;
        }
        if self.first_seq.is_some() {
            self.buf.push(b',');
        } else {
            self.first_seq = Some(seq);
        }
        self.buf.extend_from_slice(PREV_HEAD);
        self.buf.extend_from_slice(prev.to_hex().as_bytes());
        self.buf.extend_from_slice(b"\",");
        self.buf
            .extend_from_slice(canonical.get(1..).unwrap_or_default());
        self.last_seq = seq;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.first_seq.is_none()
    }

    /// `(first, last)` seq in the batch, if any.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.first_seq.map(|first| (first, self.last_seq))
    }

    /// Closes the event list, signs and returns the payload.
    pub fn finish(mut self, key: &DeviceKey) -> Vec<u8> {
        self.buf.push(b']');
        let sig = key.sign(&self.buf);
        self.buf.extend_from_slice(SIG_MARK);
        self.buf.extend_from_slice(B64.encode(sig).as_bytes());
        self.buf.extend_from_slice(b"\"}");
        self.buf
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    v: u32,
    site: String,
    device: String,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    sig: String,
}

/// A batch as received, parsed but not yet trusted: call [`ReceivedBatch::verify`] with the
/// device's registered key, then [`ReceivedBatch::events`].
#[derive(Debug)]
pub struct ReceivedBatch<'a> {
    pub site: SiteId,
    pub device: DeviceId,
    signed: &'a [u8],
    sig: Vec<u8>,
    raw_events: Vec<&'a RawValue>,
}

/// One event of a received batch, with its hash recomputed from the received bytes.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub seq: u64,
    pub prev: EventHash,
    pub hash: EventHash,
    /// The canonical bytes, exactly as the agent stored them.
    pub canonical: Vec<u8>,
    pub at: String,
    pub kind: String,
    /// The box's mark of a back-dated event (issue 14, item 6); `None` from boxes before it.
    pub backdated: Option<crate::event::Backdated>,
    body: std::ops::Range<usize>,
}

impl ReceivedEvent {
    /// The body's JSON text, a slice of the canonical bytes.
    pub fn body(&self) -> &str {
        // The range was taken from a &str inside `canonical`, so it is valid UTF-8 on char bounds.
        std::str::from_utf8(&self.canonical[self.body.clone()]).unwrap_or("null")
    }
}

impl<'a> ReceivedBatch<'a> {
    /// Parses a payload of at most `max_bytes`. Checks the shape only; nothing is trusted yet.
    pub fn parse(payload: &'a [u8], max_bytes: usize) -> Result<ReceivedBatch<'a>, BatchError> {
        if payload.len() > max_bytes {
            return Err(BatchError::TooLarge {
                size: payload.len(),
                limit: max_bytes,
            });
        }
        let env: Envelope<'a> =
            serde_json::from_slice(payload).map_err(|e| BatchError::Malformed(e.to_string()))?;
        if env.v != PROTOCOL_VERSION {
            return Err(BatchError::Version(env.v));
        }
        // The signed part is everything before the final `,"sig":"...` which must close the payload.
        let mark = payload
            .windows(SIG_MARK.len())
            .rposition(|w| w == SIG_MARK)
            .ok_or(BatchError::Unsigned)?;
        let tail = &payload[mark + SIG_MARK.len()..];
        if tail != [env.sig.as_bytes(), b"\"}"].concat().as_slice() {
            return Err(BatchError::Unsigned);
        }
        let sig = B64
            .decode(env.sig.as_bytes())
            .map_err(|_| BatchError::BadSignature)?;
        if env.events.is_empty() {
            return Err(BatchError::Empty);
        }
        Ok(ReceivedBatch {
            site: SiteId::new(env.site)?,
            device: DeviceId::new(env.device)?,
            signed: &payload[..mark],
            sig,
            raw_events: env.events,
        })
    }

    /// Checks the signature against the device's registered key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), BatchError> {
        if key.verify(self.signed, &self.sig) {
            Ok(())
        } else {
            Err(BatchError::BadSignature)
        }
    }

    pub fn len(&self) -> usize {
        self.raw_events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw_events.is_empty()
    }

    /// Splits the events, recomputes every hash, and checks that they are consecutive and chained
    /// to each other. The first event's `prev` is for the caller to check against its store.
    pub fn events(&self) -> Result<Vec<ReceivedEvent>, BatchError> {
        let mut out: Vec<ReceivedEvent> = Vec::with_capacity(self.raw_events.len());
        for (index, raw) in self.raw_events.iter().enumerate() {
            let event = split_event(index, raw.get())?;
            if let Some(before) = out.last() {
                if event.seq != before.seq + 1 {
                    return Err(BatchError::NotConsecutive {
                        after: before.seq,
                        found: event.seq,
                    });
                }
                if event.prev != before.hash {
                    return Err(BatchError::BrokenChain { seq: event.seq });
                }
            }
            out.push(event);
        }
        Ok(out)
    }
}

fn split_event(index: usize, text: &str) -> Result<ReceivedEvent, BatchError> {
    let bad = |detail: &str| BatchError::BadEvent {
        index,
        detail: detail.to_owned(),
    };
    let bytes = text.as_bytes();
    let head_len = PREV_HEAD.len() + 64 + 2;
    if bytes.len() <= head_len
        || !bytes.starts_with(PREV_HEAD)
        || &bytes[PREV_HEAD.len() + 64..head_len] != b"\","
    {
        return Err(bad("an event must start with {\"prev\":\"<64 hex>\","));
    }
    let prev = std::str::from_utf8(&bytes[PREV_HEAD.len()..PREV_HEAD.len() + 64])
        .ok()
        .and_then(EventHash::from_hex)
        .ok_or_else(|| bad("prev is not 64 hex digits"))?;
    let rest = &bytes[head_len..];
    let mut canonical = Vec::with_capacity(rest.len() + 1);
    canonical.push(b'{');
    canonical.extend_from_slice(rest);
    let hash = EventHash::next(&prev, &canonical);
    let parsed: CanonicalEvent =
        serde_json::from_slice(&canonical).map_err(|e| bad(&e.to_string()))?;
    let base = canonical.as_ptr() as usize;
    let start = parsed.body.get().as_ptr() as usize - base;
    let body = start..start + parsed.body.get().len();
    let (seq, at, kind) = (parsed.seq, parsed.at.into_owned(), parsed.kind.into_owned());
    let backdated = parsed.backdated;
    Ok(ReceivedEvent {
        seq,
        prev,
        hash,
        canonical,
        at,
        kind,
        backdated,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::GENESIS;
    use crate::event::EventDraft;
    use proptest::prelude::*;
    use serde_json::json;

    fn ids() -> (SiteId, DeviceId) {
        (
            SiteId::new("suixian-shangshi").unwrap(),
            DeviceId::new("box-01").unwrap(),
        )
    }

    /// A chain of `n` punch events starting at seq 1, as (seq, prev, canonical).
    fn chain(n: u64, staff: &str) -> Vec<(u64, EventHash, Vec<u8>)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let body = json!({"staff_id": staff, "direction": "in", "method": "card", "source": "t1", "n": seq});
                let canonical = EventDraft::new("punch", "2026-11-23T08:29:01.120+08:00", &body).unwrap().canonical(seq);
                let item = (seq, prev, canonical.clone());
                prev = EventHash::next(&prev, &canonical);
                item
            })
            .collect()
    }

    fn build(key: &DeviceKey, events: &[(u64, EventHash, Vec<u8>)]) -> Vec<u8> {
        let (site, device) = ids();
        let mut b = BatchBuilder::new(&site, &device, usize::MAX);
        for (seq, prev, canonical) in events {
            assert!(b.push(*seq, prev, canonical));
        }
        b.finish(key)
    }

    #[test]
    fn a_built_batch_verifies_and_yields_the_same_events() {
        let key = DeviceKey::generate().unwrap();
        let events = chain(5, "0451");
        let payload = build(&key, &events);
        let batch = ReceivedBatch::parse(&payload, 1 << 20).unwrap();
        batch.verify(&key.public()).unwrap();
        let got = batch.events().unwrap();
        assert_eq!(got.len(), 5);
        for (g, (seq, prev, canonical)) in got.iter().zip(&events) {
            assert_eq!((g.seq, g.prev, &g.canonical), (*seq, *prev, canonical));
            assert_eq!(g.hash, EventHash::next(prev, canonical));
            assert_eq!(g.kind, "punch");
            assert!(g.body().starts_with("{\"direction\""));
        }
        // The wire format is the documented JSON.
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["events"][0]["prev"], "0".repeat(64));
        assert_eq!(v["events"][1]["seq"], 2);
    }

    #[test]
    fn the_wrong_key_is_refused() {
        let key = DeviceKey::generate().unwrap();
        let other = DeviceKey::generate().unwrap();
        let payload = build(&key, &chain(3, "1"));
        let batch = ReceivedBatch::parse(&payload, 1 << 20).unwrap();
        assert_eq!(batch.verify(&other.public()), Err(BatchError::BadSignature));
    }

    #[test]
    fn re_ordered_events_are_caught_even_when_re_signed() {
        let key = DeviceKey::generate().unwrap();
        let mut events = chain(4, "1");
        events.swap(1, 2);
        let payload = build(&key, &events);
        let batch = ReceivedBatch::parse(&payload, 1 << 20).unwrap();
        batch.verify(&key.public()).unwrap();
        assert!(matches!(
            batch.events(),
            Err(BatchError::NotConsecutive { .. })
        ));
    }

    #[test]
    fn an_edited_event_breaks_the_chain_even_when_re_signed() {
        let key = DeviceKey::generate().unwrap();
        let mut events = chain(3, "1");
        let edited = String::from_utf8(events[1].2.clone())
            .unwrap()
            .replace("\"card\"", "\"face\"");
        events[1].2 = edited.into_bytes();
        let batch_bytes = build(&key, &events);
        let batch = ReceivedBatch::parse(&batch_bytes, 1 << 20).unwrap();
        assert_eq!(
            batch.events().unwrap_err(),
            BatchError::BrokenChain { seq: 3 }
        );
    }

    #[test]
    fn batches_respect_their_byte_budget() {
        let (site, device) = ids();
        let events = chain(100, "0451");
        let mut b = BatchBuilder::new(&site, &device, 4096);
        let mut n = 0;
        for (seq, prev, canonical) in &events {
            if !b.push(*seq, prev, canonical) {
                break;
            }
            n += 1;
        }
        assert!(n > 1 && n < 100);
        let payload = b.finish(&DeviceKey::generate().unwrap());
        assert!(payload.len() <= 4096, "{}", payload.len());
    }

    #[test]
    fn oversized_unsigned_and_malformed_batches_are_named() {
        let key = DeviceKey::generate().unwrap();
        let payload = build(&key, &chain(3, "1"));
        assert!(matches!(
            ReceivedBatch::parse(&payload, 10),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(matches!(
            ReceivedBatch::parse(b"{not json", 1 << 20),
            Err(BatchError::Malformed(_))
        ));
        let text = String::from_utf8(payload).unwrap();
        let moved = text.replacen("{\"v\":1,", "{\"v\":1,\"sig\":\"AAAA\",", 1);
        assert!(ReceivedBatch::parse(moved.as_bytes(), 1 << 20).is_err());
        assert!(matches!(
            ReceivedBatch::parse(b"\xff\xfe", 1 << 20),
            Err(BatchError::Malformed(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any event round-trips: whatever the body holds, the hub sees the bytes the agent stored.
        #[test]
        fn any_event_round_trips(staff in "\\PC{1,40}", note in any::<String>(), n in any::<i64>(), f in any::<f64>()) {
            let key = DeviceKey::generate().unwrap();
            let body = json!({"staff_id": staff, "direction": "out", "method": "pin", "source": "kiosk", "note": note, "n": n, "f": if f.is_finite() { json!(f) } else { json!(null) }});
            let draft = EventDraft::new("punch", "2026-11-23T17:30:00+08:00", &body).unwrap();
            let canonical = draft.canonical(7);
            let prev = EventHash::next(&GENESIS, b"x");
            let (site, device) = ids();
            let mut b = BatchBuilder::new(&site, &device, usize::MAX);
            b.push(7, &prev, &canonical);
            let payload = b.finish(&key);
            let batch = ReceivedBatch::parse(&payload, usize::MAX).unwrap();
            batch.verify(&key.public()).unwrap();
            let got = batch.events().unwrap();
            prop_assert_eq!(&got[0].canonical, &canonical);
            let back: serde_json::Value = serde_json::from_str(got[0].body()).unwrap();
            prop_assert_eq!(back, serde_json::from_str::<serde_json::Value>(draft.body()).unwrap());
        }

        /// Any changed byte breaks verification: the signature, the chain or the parse fails.
        #[test]
        fn any_changed_byte_is_detected(pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
            let key = DeviceKey::generate().unwrap();
            let events = chain(3, "0451");
            let mut payload = build(&key, &events);
            let i = pos.index(payload.len());
            payload[i] = payload[i].wrapping_add(delta);
            let accepted = ReceivedBatch::parse(&payload, usize::MAX)
                .and_then(|b| { b.verify(&key.public())?; b.events() })
                .map(|evs| evs.first().map(|e| e.prev) == Some(GENESIS));
            prop_assert!(!matches!(accepted, Ok(true)), "a changed byte at {} went unnoticed", i);
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the parser; they are refused with a reason.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(batch) = ReceivedBatch::parse(&bytes, 1 << 20) {
                let _ = batch.events();
            }
        }

        /// Batch-shaped JSON with arbitrary events never panics either.
        #[test]
        fn arbitrary_events_never_panic(events in proptest::collection::vec("\\PC{0,120}", 1..4), sig in "[A-Za-z0-9+/=]{0,100}") {
            let text = format!("{{\"v\":1,\"site\":\"s\",\"device\":\"d\",\"events\":[{}],\"sig\":\"{sig}\"}}", events.join(","));
            if let Ok(batch) = ReceivedBatch::parse(text.as_bytes(), 1 << 20) {
                let _ = batch.events();
            }
            let prefixed: Vec<String> = events.iter().map(|e| format!("{{\"prev\":\"{}\",{e}", "0".repeat(64))).collect();
            let text = format!("{{\"v\":1,\"site\":\"s\",\"device\":\"d\",\"events\":[{}],\"sig\":\"{sig}\"}}", prefixed.join(","));
            if let Ok(batch) = ReceivedBatch::parse(text.as_bytes(), 1 << 20) {
                let _ = batch.events();
            }
        }
    }
}
