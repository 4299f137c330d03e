//! The provisioning tool's one error type. Every message says what went wrong and what the
//! technician can do about it; `main` prints it and exits 1.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A certificate or key could not be made, read or signed.
    #[error("{what}: {detail}")]
    Crypto { what: String, detail: String },
    /// A file of ours (or one handed to us) has the wrong shape.
    #[error("{}: {detail}", path.display())]
    BadFile { path: PathBuf, detail: String },
    /// The technician asked for something that cannot be done as asked; the text says why and
    /// what to do instead.
    #[error("{0}")]
    Refused(String),
    /// The hub's event store could not be read.
    #[error("hub store {}: {detail}", path.display())]
    HubStore { path: PathBuf, detail: String },
}

impl Error {
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn crypto(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
        let what = what.into();
        move |e| Error::Crypto {
            what,
            detail: e.to_string(),
        }
    }

    pub fn bad_file(path: &Path, detail: impl Into<String>) -> Error {
        Error::BadFile {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}
