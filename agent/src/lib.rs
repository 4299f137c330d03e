//! `sunlight-agent`: the box at a township office.
//!
//! Data flows one way through the modules: `capture/*` accepts events (today the LAN intake API;
//! terminals, kiosk and cameras come next) → [`outbox`] makes each one durable and chains it →
//! [`sync`] sends signed batches over MQTT and deletes only what the hub acknowledged.
//! [`health`] reports the box itself through the same outbox. Only `sync` talks to the hub.

pub mod capture;
pub mod clock;
pub mod config;
pub mod error;
pub mod health;
pub mod outbox;
pub mod run;
pub mod sync;

pub use config::AgentConfig;
pub use error::Error;
pub use outbox::Outbox;

/// This agent's version, reported in status and health.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
