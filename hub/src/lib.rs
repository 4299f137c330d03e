//! `sunlight-hub`: the county hub.
//!
//! Data flows through the modules in this order: [`broker`] (an embedded MQTT broker, or any
//! external one) → [`ingest`] (verify signature and chain, dedupe, commit, then ack) → [`store`]
//! (the append-only event store and device registry) → [`web`] (the HTTP API). Oversight engines,
//! notifications and reports build on the store in later steps.

pub mod apiauth;
pub mod blobs;
pub mod broker;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod downkeys;
pub mod enroll;
pub mod error;
pub mod fieldops;
pub mod fleet;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod oversight;
pub mod report;
pub mod s3;
pub mod sites;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod updates;
pub mod web;

pub use error::Error;

/// This hub's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
