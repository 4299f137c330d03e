//! Capture sources: each accepts events from one kind of source and writes them only to the outbox.
//! A source never blocks another. Today: the LAN intake API; ZKTeco terminals, the kiosk page and
//! cameras come with their own issues.

pub mod intake_api;
pub mod zkteco_push;
