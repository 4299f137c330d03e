//! `sunlight-agent`: the box at a township office.
//!
//! Data flows one way through the modules: `capture/*` accepts events (the LAN intake API, ZKTeco
//! terminals, the kiosk page, cameras) → [`outbox`] makes each one durable and chains it
//! → [`sync`] sends signed batches over MQTT and deletes only what the hub acknowledged. Camera
//! pictures go to the [`spool`] (files named by their hash, indexed in the outbox database, one
//! `snapshot` event each) and `sync::upload` sends them to the hub's blob store over HTTP.
//! [`health`] reports the box itself through the same outbox. Only `sync` talks to the hub; the
//! hub's commands go from `sync` to [`commands`], which answers each once through the outbox and
//! keeps the [`roster`] the kiosk checks punches against. Before any of that, [`enroll`] joins a
//! new box to the county: its keys made here, its certificate and agent.toml from the hub.

pub mod calendar;
pub mod capture;
pub mod check;
pub mod clock;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod error;
pub mod health;
pub mod logfile;
pub mod maintenance;
pub mod outbox;
pub mod roster;
pub mod run;
pub mod spool;
pub mod sync;
pub mod update;
pub mod watchdog;

pub use config::AgentConfig;
pub use error::Error;
pub use outbox::Outbox;

/// This agent's version, reported in status and health.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
