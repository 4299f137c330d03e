//! The fake camera (`kind = "file"`): frames from a directory of JPEGs, served in name order round
//! and round, or generated ([`super::jpeg::generate`]) when no directory is given. For tests, demos
//! and a technician checking the upload path without hardware.

use super::{CameraError, Capture, FrameSource, jpeg};
use std::path::PathBuf;

pub struct FileSource {
    id: String,
    dir: Option<PathBuf>,
    width: u16,
    height: u16,
    frame: u64,
}

impl FileSource {
    pub fn new(id: &str, dir: Option<PathBuf>, width: u16, height: u16) -> FileSource {
        FileSource {
            id: id.to_owned(),
            dir,
            width,
            height,
            frame: 0,
        }
    }
}

/// The `n`th JPEG of `dir` in name order, wrapping around.
fn nth_file(dir: &std::path::Path, n: u64) -> Result<Vec<u8>, CameraError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CameraError::Device(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    if files.is_empty() {
        return Err(CameraError::Device(format!(
            "no .jpg files in {}",
            dir.display()
        )));
    }
    files.sort();
    let path = &files[(n % files.len() as u64) as usize];
    std::fs::read(path)
        .map_err(|e| CameraError::Device(format!("cannot read {}: {e}", path.display())))
}

impl FrameSource for FileSource {
    fn capture(&mut self) -> Capture<'_> {
        let n = self.frame;
        self.frame += 1;
        Box::pin(async move {
            match &self.dir {
                Some(dir) => {
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || nth_file(&dir, n))
                        .await
                        .map_err(|e| CameraError::Device(e.to_string()))?
                }
                None => {
                    let comment = format!(
                        "sunlight fake camera {} frame {n} at {}",
                        self.id,
                        chrono::Utc::now().to_rfc3339()
                    );
                    Ok(jpeg::generate(self.width, self.height, n, &comment))
                }
            }
        })
    }
}
