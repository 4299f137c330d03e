//! The contract between a township box (`sunlight-agent`) and the county hub (`sunlight-hub`).
//!
//! This crate is PROTOCOL.md v1 in code, so that neither side owns the contract: both build and check
//! messages only through it. It holds the identifiers and MQTT topics ([`ids`], [`topics`]), the
//! event kinds and their bodies ([`event`]), the per-device hash chain ([`chain`]), the signed batch
//! envelope ([`batch`]), the hub's replies and commands ([`message`]) sealed for one box ([`down`]), and the signed update archive
//! ([`update`]). Nothing here opens files or sockets: callers hand in readers and writers.

pub mod batch;
pub mod blob;
pub mod boxlogs;
pub mod chain;
pub mod down;
pub mod error;
pub mod event;
pub mod holidays;
pub mod ids;
pub mod keys;
pub mod login;
pub mod message;
pub mod topics;
pub mod update;

pub use batch::{BatchBuilder, ReceivedBatch, ReceivedEvent};
pub use chain::{EventHash, GENESIS};
pub use error::{BatchError, EventError, IdError};
pub use event::{Backdated, EventDraft, Kind};
pub use ids::{DeviceId, SiteId};
pub use keys::{DeviceKey, PublicKey};
pub use message::{Ack, Command, CommandKind, Rejected, Status};

/// The protocol version carried in every batch (`"v": 1`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Default upper bound of one batch's payload (256 KiB); big blobs never ride in a batch.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 256 * 1024;
