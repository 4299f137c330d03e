//! `sunlight-provision`, the field technician's and county operator's tool, as a library: the
//! county CA and the certificates it issues ([`ca`]), the broker's configuration and ACL generated
//! from the registered boxes ([`broker`]), and the hub config skeleton ([`hub_skeleton`]). The
//! binary (`main.rs`) is a thin shell that parses arguments and prints what was made and what to do
//! next. Enrollment over the network, on-site checks and updates are not built yet (issue 7).

pub mod broker;
pub mod ca;
pub mod error;
pub mod files;
pub mod hub_skeleton;

pub use error::Error;
