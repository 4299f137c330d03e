//! The import directory (`[import] dir` in agent.toml): an office whose approval system can only
//! save files drops them here. Every few seconds the box imports each settled `*.csv` / `*.xlsx`
//! file exactly as `POST /api/v1/import` would, writes `<file>.result.json` beside it and moves the
//! file into `done/`. The kind comes from the file name: `case…`/`办件…`, `rating…`/`评价…`/`好差评…`,
//! `complaint…`/`投诉…`. When the outbox cannot record, the file stays for the next poll.
//!
//! A file that cannot be imported (no kind in its name, unreadable, over a bound of
//! [`import::LIMITS`]) goes to `failed/` with its `<file>.result.json` saying why, and is never
//! tried again. A file is moved into `importing/` while it is read: one found there at the next
//! scan stopped the agent (killed, or out of memory) and goes to `failed/` too, so no file can
//! make the box fail on every start.

use super::import::{self, ImportError, ImportKind};
use crate::clock::Clock;
use crate::config::BackdatingConfig;
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
pub async fn run(
    dir: PathBuf,
    poll: Duration,
    outbox: Outbox,
    clock: Clock,
    backdating: BackdatingConfig,
) {
    tracing::info!(dir = %dir.display(), "watching the import directory");
    loop {
        if let Err(e) = scan(&dir, SETTLE, &outbox, &clock, &backdating).await {
            tracing::warn!(dir = %dir.display(), error = %e, "import directory scan failed");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Imports every file in `dir` untouched for `settle`; returns how many were finished (imported
/// or failed).
pub async fn scan(
    dir: &Path,
    settle: Duration,
    outbox: &Outbox,
    clock: &Clock,
    backdating: &BackdatingConfig,
) -> Result<usize, Error> {
    let done = dir.join("done");
    let failed = dir.join("failed");
    let importing = dir.join("importing");
    for sub in [&done, &failed, &importing] {
        std::fs::create_dir_all(sub)
            .map_err(|e| Error::io(format!("creating {}", sub.display()), e))?;
    }
    let mut finished = 0;
    // Left in importing/ by an agent that stopped while reading it: never read again.
    for path in files_in(&importing)? {
        let name = file_name(&path);
        tracing::warn!(file = %name, "import file failed: the agent stopped while importing it");
        let why = format!(
            "{name}: the agent stopped while importing this file (killed, or out of memory); it was not imported again. Check the file; dropping it in again is safe (rows already recorded are not recorded twice)"
        );
        fail(&path, &failed, &why)?;
        finished += 1;
    }
    let mut files: Vec<PathBuf> = files_in(dir)?
        .into_iter()
        .filter(|p| importable(p) && settled(p, settle))
        .collect();
    files.sort();
    for path in files {
        let name = file_name(&path);
        let Some(kind) = kind_of(&name) else {
            fail(
                &path,
                &failed,
                &format!(
                    "{name}: the file name does not say what it holds; start it with case, rating or complaint (办件, 评价, 投诉)"
                ),
            )?;
            tracing::warn!(file = %name, "import file failed: no kind in its name");
            finished += 1;
            continue;
        };
        let reading = importing.join(&name);
        std::fs::rename(&path, &reading)
            .map_err(|e| Error::io(format!("moving {} into importing/", path.display()), e))?;
        let outcome = match read(&reading) {
            Ok(bytes) => {
                import::import(outbox, clock, backdating, kind.as_str(), bytes.into()).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(report) => {
                write_result(&dir.join(format!("{name}.result.json")), &json!(report))?;
                std::fs::rename(&reading, done.join(&name)).map_err(|e| {
                    Error::io(format!("moving {} into done/", reading.display()), e)
                })?;
                tracing::info!(file = %name, "import file done");
            }
            Err(ImportError::File(why) | ImportError::TooLarge(why)) => {
                tracing::warn!(file = %name, error = %why, "import file failed");
                fail(&reading, &failed, &why)?;
            }
            Err(ImportError::Store(e)) => {
                tracing::warn!(file = %name, error = %e, "import waits: the outbox could not record");
                std::fs::rename(&reading, &path)
                    .map_err(|e| Error::io(format!("moving {} back", reading.display()), e))?;
                continue;
            }
        }
        finished += 1;
    }
    Ok(finished)
}

/// The regular files directly in `dir`.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_result(path: &Path, result: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(result).unwrap_or_default();
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Moves `path` into `failed/` with `<name>.result.json` beside it saying why; the result is
/// written first, so a file in `failed/` always has its reason.
fn fail(path: &Path, failed: &Path, why: &str) -> Result<(), Error> {
    let name = file_name(path);
    write_result(
        &failed.join(format!("{name}.result.json")),
        &json!({ "error": why }),
    )?;
    std::fs::rename(path, failed.join(&name))
        .map_err(|e| Error::io(format!("moving {} into failed/", path.display()), e))
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

fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > import::MAX_FILE as u64 {
        return Err(ImportError::TooLarge(format!(
            "the file has {size} bytes; at most {} (10 MiB) are imported at once: split it",
            import::MAX_FILE
        )));
    }
    std::fs::read(path).map_err(|e| ImportError::File(format!("the file could not be read: {e}")))
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

        let finished = scan(
            &inbox,
            Duration::from_secs(3600),
            &outbox,
            &clock,
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(finished, 0, "fresh files wait until they settle");
        let finished = scan(&inbox, Duration::ZERO, &outbox, &clock, &Default::default())
            .await
            .unwrap();
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
        let refused = std::fs::read_to_string(inbox.join("failed/export.csv.result.json")).unwrap();
        assert!(refused.contains("start it with case"), "{refused}");
        assert!(inbox.join("failed/export.csv").exists());
        assert!(inbox.join("notes.txt").exists());
        assert_eq!(outbox.backlog().unwrap().head_seq, 1);
    }

    /// The files in `dir`, by name.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = files_in(dir)
            .unwrap()
            .iter()
            .map(|p| file_name(p))
            .collect();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_file_goes_to_failed_once_and_the_next_file_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            &dir.path().join("o.db"),
            &SiteId::new("suixian-shangshi").unwrap(),
            &DeviceId::new("box-01").unwrap(),
        )
        .unwrap();
        let clock = Clock::new(chrono_tz::Asia::Shanghai);
        let inbox = dir.path().join("import");
        std::fs::create_dir_all(inbox.join("importing")).unwrap();
        let mut bomb = crate::capture::table::tests::bomb();
        crate::capture::table::tests::lie_about_sizes(&mut bomb, 100);
        std::fs::write(inbox.join("case-bomb.xlsx"), &bomb).unwrap();
        // Left by an agent killed while importing it.
        std::fs::write(inbox.join("importing/case-killed.csv"), "a\n1\n").unwrap();

        assert_eq!(
            scan(&inbox, Duration::ZERO, &outbox, &clock, &Default::default())
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            names(&inbox.join("failed")),
            [
                "case-bomb.xlsx",
                "case-bomb.xlsx.result.json",
                "case-killed.csv",
                "case-killed.csv.result.json"
            ]
        );
        let why: serde_json::Value = serde_json::from_slice(
            &std::fs::read(inbox.join("failed/case-bomb.xlsx.result.json")).unwrap(),
        )
        .unwrap();
        let why = why["error"].as_str().unwrap_or_default();
        assert!(why.contains("the import limit is 128 MiB"), "{why}");
        let killed =
            std::fs::read_to_string(inbox.join("failed/case-killed.csv.result.json")).unwrap();
        assert!(killed.contains("stopped while importing"), "{killed}");
        assert!(names(&inbox).is_empty() && names(&inbox.join("importing")).is_empty());

        // Nothing is tried again; a good file after them is imported.
        std::fs::write(
            inbox.join("case-good.csv"),
            "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型\nC-1,MZ-001,老年优待证,民政办,W1,受理,0451,即办件\n",
        )
        .unwrap();
        assert_eq!(
            scan(&inbox, Duration::ZERO, &outbox, &clock, &Default::default())
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            scan(&inbox, Duration::ZERO, &outbox, &clock, &Default::default())
                .await
                .unwrap(),
            0
        );
        assert_eq!(names(&inbox.join("done")), ["case-good.csv"]);
        assert_eq!(names(&inbox.join("failed")).len(), 4);
        assert_eq!(outbox.backlog().unwrap().head_seq, 1);
    }
}
