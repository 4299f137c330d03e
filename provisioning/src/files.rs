//! Writing the CA directory's files: whole or not at all (a temporary file renamed into place), and
//! private keys readable by their owner only (0600) from the moment they exist.

use crate::error::Error;
use std::io::Write;
use std::path::Path;

/// Who may read a file we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Certificates, configs, lists: 0644.
    Public,
    /// Private keys: 0600, never readable by others, not even for an instant.
    Secret,
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced, then renamed.
pub fn write(path: &Path, bytes: &[u8], access: Access) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io("creating the directory", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(match access {
            Access::Public => 0o644,
            Access::Secret => 0o600,
        });
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        // A leftover temporary file keeps its old mode: set it again before any byte is written.
        #[cfg(unix)]
        if access == Access::Secret {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        keep_owner(path, &f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(Error::io("writing", path))
}

/// A file that is replaced keeps its owner (e.g. server.key given to the mosquitto user), when
/// we are allowed to set it; otherwise the new file is ours, as any new file would be.
#[cfg(unix)]
fn keep_owner(path: &Path, new: &std::fs::File) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(old) = std::fs::metadata(path) {
        let _ = std::os::unix::fs::fchown(new, Some(old.uid()), Some(old.gid()));
    }
}

#[cfg(not(unix))]
fn keep_owner(_path: &Path, _new: &std::fs::File) {}

/// Reads a text file we or the technician wrote.
pub fn read(what: &'static str, path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(Error::io(what, path))
}

/// The absolute form of `path` (relative to the current directory), without touching the disk.
pub fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_owner_only_and_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub").join("ca.key");
        write(&key, b"one", Access::Secret).unwrap();
        write(&key, b"two", Access::Secret).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(key.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
