//! The agent's one error type.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("outbox database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "outbox {path} belongs to {found}, not to this box ({expected}); use the data directory of this box"
    )]
    WrongDevice {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("outbox is closed (the agent is shutting down)")]
    Closed,
    #[error("could not store the event: {0}; nothing was recorded, retry")]
    Store(String),
    #[error("snapshot spool: {0}")]
    Spool(String),
    #[error("roster {path} refused: {detail}")]
    Roster { path: PathBuf, detail: String },
    #[error("signing key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Event(#[from] sunlight_protocol::EventError),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
