//! The error types of the contract, one per concern, each saying what was wrong with the input.

use thiserror::Error;

/// A site or device identifier that breaks the `[a-z0-9-]{1,48}` rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "invalid {what} {value:?}: use 1 to 48 characters of a-z, 0-9 and '-' (e.g. suixian-shangshi, box-01)"
)]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
}

/// An event that cannot be accepted as given.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EventError {
    #[error(
        "unknown event kind {0:?}: expected one of punch, case, rating, complaint, patrol, duty, snapshot, health, cmd_result, correction"
    )]
    UnknownKind(String),
    #[error("{kind} event body is invalid: {detail}")]
    InvalidBody { kind: String, detail: String },
    #[error(
        "event time {0:?} is not an RFC 3339 time with an offset (e.g. 2026-11-23T08:29:01.120+08:00)"
    )]
    BadTime(String),
    #[error("event is not valid JSON: {0}")]
    Json(String),
}

/// Why a received batch (or one event in it) cannot be applied. Each variant is a dead-letter reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("batch is not valid JSON: {0}")]
    Malformed(String),
    #[error("batch has no signature: it must end with ,\"sig\":\"<base64>\"}}")]
    Unsigned,
    #[error("unsupported protocol version {0} (this hub speaks v1)")]
    Version(u32),
    #[error("batch names {named} but arrived on the topic of {topic}")]
    WrongTopic { named: String, topic: String },
    #[error(
        "unknown device {site}/{device}: register it with 'sunlight-hub device add --site {site} --device {device} --pubkey <key>'"
    )]
    UnknownDevice { site: String, device: String },
    #[error(
        "device {site}/{device} was revoked at the hub: its batches are refused; a replaced box enrolls with a new device id"
    )]
    Revoked { site: String, device: String },
    #[error("bad signature: the batch was not signed by the registered key of this device")]
    BadSignature,
    #[error("batch is empty")]
    Empty,
    #[error("event #{index} in the batch is malformed: {detail}")]
    BadEvent { index: usize, detail: String },
    #[error("events are not consecutive: seq {found} follows seq {after}")]
    NotConsecutive { after: u64, found: u64 },
    #[error("hash chain broken at seq {seq}: its prev does not match the hash of seq {}", seq - 1)]
    BrokenChain { seq: u64 },
    #[error(transparent)]
    Id(#[from] IdError),
}

impl BatchError {
    /// True for the errors that mean somebody tampered with the data (or a key is wrong): these raise
    /// a tamper alarm at the hub, not just a dead-letter record.
    pub fn is_tamper(&self) -> bool {
        matches!(
            self,
            BatchError::BadSignature
                | BatchError::BrokenChain { .. }
                | BatchError::NotConsecutive { .. }
        )
    }
}
