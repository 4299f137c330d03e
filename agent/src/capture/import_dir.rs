//! The import directory (`[import] dir` in agent.toml): an office whose approval system can only
//! save files drops them here. Every few seconds the box imports each settled `*.csv` / `*.xlsx`
//! file exactly as `POST /api/v1/import` would, writes `<file>.result.json` beside it and moves the
//! file into `done/`. The kind comes from the file name: `case…`/`办件…`, `rating…`/`评价…`/`好差评…`,
//! `complaint…`/`投诉…`. When the outbox cannot record, the file stays for the next poll.

use super::import::{self, ImportError, ImportKind};
use crate::clock::Clock;
use crate::error::Error;
use crate::outbox::Outbox;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A file modified this recently may still be being copied; it waits for the next poll.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The kind of events a dropped file holds, from its name.
pub fn kind_of(file_name: &str) -> Option<ImportKind> {
    let name = file_name.to_lowercase();
    let prefixes = [
        ("case", ImportKind::Case),
        ("办件", ImportKind::Case),
        ("rating", ImportKind::Rating),
        ("评价", ImportKind::Rating),
        ("好差评", ImportKind::Rating),
        ("complaint", ImportKind::Complaint),
        ("投诉", ImportKind::Complaint),
    ];
    prefixes
        .into_iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, k)| k)
}

fn importable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("xlsx"))
}

/// Polls `dir` every `poll` until the agent stops.
pub async fn run(dir: PathBuf, poll: Duration, outbox: Outbox, clock: Clock) {
    tracing::info!(dir = %dir.display(), "watching the import directory");
    loop {
        if let Err(e) = scan(&dir, SETTLE, &outbox, &clock).await {
            tracing::warn!(dir = %dir.display(), error = %e, "import directory scan failed");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Imports every file in `dir` untouched for `settle`; returns how many were finished.
pub async fn scan(
    dir: &Path,
    settle: Duration,
    outbox: &Outbox,
    clock: &Clock,
) -> Result<usize, Error> {
    let done = dir.join("done");
    std::fs::create_dir_all(&done)
        .map_err(|e| Error::io(format!("creating {}", done.display()), e))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| importable(p) && settled(p, settle))
        .collect();
    files.sort();
    let mut finished = 0;
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = match kind_of(&name) {
            None => Err(ImportError::File(format!(
                "{name}: the file name does not say what it holds; start it with case, rating or complaint (办件, 评价, 投诉)"
            ))),
            Some(kind) => match read(&path) {
                Ok(bytes) => import::import(outbox, clock, kind.as_str(), bytes.into()).await,
                Err(e) => Err(ImportError::File(e)),
            },
        };
        let result = match outcome {
            Ok(report) => json!(report),
            Err(ImportError::File(error)) => json!({ "error": error }),
            Err(ImportError::Store(e)) => {
                tracing::warn!(file = %name, error = %e, "import waits: the outbox could not record");
                continue;
            }
        };
        let result_path = dir.join(format!("{name}.result.json"));
        let text = serde_json::to_vec_pretty(&result).unwrap_or_default();
        std::fs::write(&result_path, text)
            .map_err(|e| Error::io(format!("writing {}", result_path.display()), e))?;
        std::fs::rename(&path, done.join(&name))
            .map_err(|e| Error::io(format!("moving {} into done/", path.display()), e))?;
        tracing::info!(file = %name, "import file done");
        finished += 1;
    }
    Ok(finished)
}

fn settled(path: &Path, settle: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age >= settle)
        })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > import::MAX_FILE as u64 {
        return Err(format!(
            "the file has {size} bytes; at most {} are imported at once: split it",
            import::MAX_FILE
        ));
    }
    std::fs::read(path).map_err(|e| format!("the file could not be read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sunlight_protocol::{DeviceId, SiteId};

    #[test]
    fn the_name_says_the_kind() {
        assert_eq!(kind_of("case-2025-11.csv"), Some(ImportKind::Case));
        assert_eq!(kind_of("办件导出.xlsx"), Some(ImportKind::Case));
        assert_eq!(kind_of("Rating.csv"), Some(ImportKind::Rating));
        assert_eq!(kind_of("投诉.csv"), Some(ImportKind::Complaint));
        assert_eq!(kind_of("export.csv"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_files_are_imported_answered_and_moved() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("o.db"),
            &SiteId::new("suixian-shangshi").unwrap(),
            &DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        let inbox = dir.path().join("import");
        std::fs::create_dir_all(&inbox).unwrap();
        let (gbk, _, _) = encoding_rs::GBK.encode(
            "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型,时间\nC-1,MZ-001,老年优待证,民政办,W1,受理,0451,即办件,2025-11-03 09:00\n",
        );
        std::fs::write(inbox.join("case-1103.csv"), &gbk).unwrap();
        std::fs::write(inbox.join("export.csv"), "a\n1\n").unwrap();
        std::fs::write(inbox.join("notes.txt"), "not imported").unwrap();
        let clock = Clock::new(chrono_tz::Asia::Shanghai);

        let finished = scan(&inbox, Duration::from_secs(3600), &outbox, &clock)
            .await
            .unwrap();
        assert_eq!(finished, 0, "fresh files wait until they settle");
        let finished = scan(&inbox, Duration::ZERO, &outbox, &clock).await.unwrap();
        assert_eq!(finished, 2);

        let result: serde_json::Value = serde_json::from_slice(
            &std::fs::read(inbox.join("case-1103.csv.result.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (
                result["accepted"].as_u64(),
                result["rows"][0]["seq"].as_u64()
            ),
            (Some(1), Some(1))
        );
        assert!(inbox.join("done/case-1103.csv").exists());
        assert!(!inbox.join("case-1103.csv").exists());
        let refused = std::fs::read_to_string(inbox.join("export.csv.result.json")).unwrap();
        assert!(refused.contains("start it with case"), "{refused}");
        assert!(inbox.join("notes.txt").exists());
        assert_eq!(outbox.backlog().unwrap().head_seq, 1);
    }
}
