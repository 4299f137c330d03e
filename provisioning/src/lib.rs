//! `sunlight-provision`, the field technician's and county operator's tool, as a library: the
//! county CA and the certificates it issues ([`ca`]), the hub's enrollment CA for enrollment over
//! the network ([`enroll_ca`]; the tokens and the signing endpoint are the hub's,
//! `sunlight_hub::enroll`), the broker's configuration and ACL generated from the registered boxes
//! ([`broker`]), and the hub config skeleton ([`hub_skeleton`]). The binary (`main.rs`) is a thin
//! shell that parses arguments and prints what was made and what to do next. The agent update
//! signing key and signed archives are [`update_key`]. Sites and boxes are registered at a running
//! hub over its API ([`hub_api`]: `site add`, `device add`); slow steps show [`progress`] bars.
//! On-site checks are not built yet (issue 7).

pub mod broker;
pub mod ca;
pub mod enroll_ca;
pub mod error;
pub mod files;
pub mod hub_api;
pub mod hub_skeleton;
pub mod progress;
pub mod update_key;

pub use error::Error;
