//! The agent's own log file, for `upload_logs` (issue 7): besides stderr (journald under systemd),
//! `run` writes its log to `<data_dir>/logs/agent.log`, capped in size: when the file passes
//! [`MAX_FILE_BYTES`] it becomes `agent.log.1` (replacing the previous one) and a new file starts,
//! so the log never takes more than twice that on the box's disk. Reading the journal instead would
//! need journalctl and the right group on the box, and says nothing on a box run by hand.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One log file's size before it is rotated.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The log directory under the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// A size-capped log file with one rotated predecessor.
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max: u64,
}

impl LogFile {
    /// Opens (appends to) `<dir>/agent.log`, creating the directory.
    pub fn open(dir: &Path, max: u64) -> io::Result<LogFile> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("agent.log");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            path,
            file: Some(file),
            written,
            max: max.max(1024),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, PathBuf::from(old))?;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.written = 0;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.max && self.written > 0 {
            // A failed rotation keeps logging to stderr; the file is a convenience.
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the log file could not be reopened"));
        };
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// The last `max_bytes` of the log (the rotated file, then the current one), starting at a line.
pub fn tail(dir: &Path, max_bytes: usize) -> io::Result<String> {
    let mut text = Vec::new();
    for name in ["agent.log.1", "agent.log"] {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => text.extend_from_slice(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if text.len() > max_bytes {
        let cut = text.len() - max_bytes;
        let start = text[cut..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| cut + p + 1)
            .unwrap_or(cut);
        text.drain(..start);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_the_tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path(), 4096).unwrap();
        for i in 0..300 {
            writeln!(log, "line {i:04} of the agent's log").unwrap();
        }
        let current = std::fs::metadata(dir.path().join("agent.log"))
            .unwrap()
            .len();
        let rotated = std::fs::metadata(dir.path().join("agent.log.1"))
            .unwrap()
            .len();
        assert!(current <= 4096 && rotated <= 4096, "{current} {rotated}");
        let all = tail(dir.path(), usize::MAX).unwrap();
        assert!(all.ends_with("line 0299 of the agent's log\n"), "{all}");
        assert!(
            !all.contains("line 0000"),
            "the oldest lines were rotated away"
        );
        let last = tail(dir.path(), 100).unwrap();
        assert!(last.len() <= 100 && last.starts_with("line "), "{last:?}");
        // A reopened log appends.
        drop(log);
        let mut log = LogFile::open(dir.path(), 4096).unwrap();
        writeln!(log, "after a restart").unwrap();
        assert!(
            tail(dir.path(), 200)
                .unwrap()
                .ends_with("after a restart\n")
        );
        // No log yet: empty.
        assert_eq!(tail(&dir.path().join("none"), 10).unwrap(), "");
    }
}
