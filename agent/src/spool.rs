//! The snapshot spool: JPEGs on disk, named by their content, waiting for the uploader.
//!
//! An image is written as `blobs/ab/<sha256>.jpg` (to a temporary name, fsynced, renamed, the
//! directory fsynced), and only then indexed: its row in the outbox database's `blobs` table (sha256,
//! camera, bytes, taken_at, uploaded, created) and its `snapshot` event are written in one
//! transaction by the outbox writer ([`SpoolWrite::Add`]). The index is what the uploader works
//! through, oldest first, and it survives restarts, so uploads resume where they stopped.
//!
//! The spool is capped (`snapshots.quota_mb`): before an image is written, room is made by evicting
//! uploaded images first, oldest first, then the oldest images not uploaded yet ([`plan_eviction`]);
//! events are never touched. Losing images that were never uploaded raises an alarm with the count.
//! A JPEG found on disk without a row at start (a crash between the file and its row) is indexed
//! again rather than deleted: the punch that names it as its photo may already be recorded.

use crate::error::Error;
use crate::health::{Alarm, Alarms};
use crate::outbox::{Appended, Outbox};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sunlight_protocol::EventDraft;

/// The index, created with the outbox's tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, camera TEXT NOT NULL, bytes INTEGER NOT NULL, taken_at TEXT NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, uploaded_ms INTEGER,
    retry_ms INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_order ON blobs (uploaded, created_ms);
CREATE TABLE IF NOT EXISTS spool_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1), uploaded_total INTEGER NOT NULL,
    last_upload_ms INTEGER, evicted_total INTEGER NOT NULL, evicted_waiting_total INTEGER NOT NULL);
INSERT OR IGNORE INTO spool_meta (id, uploaded_total, evicted_total, evicted_waiting_total)
    VALUES (1, 0, 0, 0);
";

/// An image's row in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub sha256: String,
    pub camera: String,
    pub bytes: u64,
    pub taken_at: String,
}

/// A change to the index, written by the outbox writer.
#[derive(Debug, Clone)]
pub enum SpoolWrite {
    /// A new image (the file is on disk already) and its `snapshot` event, if it has one.
    Add {
        row: BlobRow,
        event: Option<EventDraft>,
    },
    /// The hub has it.
    Uploaded { sha256: String },
    /// The hub refused it (4xx): try again at `retry_ms` (unix ms), not before.
    Refused { sha256: String, retry_ms: i64 },
    /// Rows removed (their files go next); `waiting` of them were not uploaded.
    Evict { sha256s: Vec<String>, waiting: u64 },
}

/// Inserts a row (a repeat of an image already indexed changes nothing).
pub(crate) fn insert_row(tx: &Transaction<'_>, row: &BlobRow, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs (sha256, camera, bytes, taken_at, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![row.sha256, row.camera, row.bytes as i64, row.taken_at, now])?;
    Ok(())
}

/// Applies a write inside the writer's transaction; returns the event to append after it.
pub(crate) fn apply<'w>(
    tx: &Transaction<'_>,
    write: &'w SpoolWrite,
    now: i64,
) -> rusqlite::Result<Option<&'w EventDraft>> {
    match write {
        SpoolWrite::Add { row, event } => {
            insert_row(tx, row, now)?;
            return Ok(event.as_ref());
        }
        SpoolWrite::Uploaded { sha256 } => {
            let changed = tx
                .prepare_cached(
                    "UPDATE blobs SET uploaded = 1, uploaded_ms = ?2, retry_ms = NULL WHERE sha256 = ?1 AND uploaded = 0",
                )?
                .execute(params![sha256, now])?;
            tx.prepare_cached(
                "UPDATE spool_meta SET uploaded_total = uploaded_total + ?1, last_upload_ms = ?2 WHERE id = 1",
            )?
            .execute(params![changed as i64, now])?;
        }
        SpoolWrite::Refused { sha256, retry_ms } => {
            tx.prepare_cached("UPDATE blobs SET retry_ms = ?2 WHERE sha256 = ?1")?
                .execute(params![sha256, retry_ms])?;
        }
        SpoolWrite::Evict { sha256s, waiting } => {
            let mut delete = tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?;
            let mut removed = 0i64;
            for sha in sha256s {
                removed += delete.execute([sha])? as i64;
            }
            tx.prepare_cached(
                "UPDATE spool_meta SET evicted_total = evicted_total + ?1, evicted_waiting_total = evicted_waiting_total + ?2 WHERE id = 1",
            )?
            .execute(params![removed, *waiting as i64])?;
        }
    }
    Ok(None)
}

/// One image as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sha256: String,
    pub bytes: u64,
    pub uploaded: bool,
    pub created_ms: i64,
}

/// Which images to evict so that `incoming` more bytes fit under `limit`: uploaded ones first,
/// oldest first, then those not uploaded yet, oldest first; as few as that order allows.
pub fn plan_eviction(entries: &[Entry], limit: u64, incoming: u64) -> Vec<&Entry> {
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| {
        (!a.uploaded, a.created_ms, &a.sha256).cmp(&(!b.uploaded, b.created_ms, &b.sha256))
    });
    let mut out = Vec::new();
    for e in order {
        if total.saturating_add(incoming) <= limit {
            break;
        }
        total -= e.bytes;
        out.push(e);
    }
    out
}

/// Spool figures for status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpoolFigures {
    /// Images on disk, and their bytes.
    pub images: u64,
    pub bytes: u64,
    /// The cap (`snapshots.quota_mb`), in bytes.
    pub quota_bytes: u64,
    /// Images not uploaded yet, and their bytes.
    pub waiting: u64,
    pub waiting_bytes: u64,
    /// Of those, refused by the hub (4xx) and set aside for a while.
    pub refused: u64,
    /// `taken_at` of the oldest image waiting.
    pub oldest_waiting: Option<String>,
    /// Images uploaded since the box was set up, and when the last one went.
    pub uploaded_total: u64,
    pub last_upload_ms: Option<i64>,
    /// Images evicted for the quota, and how many of them had not been uploaded (lost).
    pub evicted_total: u64,
    pub evicted_waiting_total: u64,
}

fn figures(conn: &rusqlite::Connection, quota_bytes: u64) -> rusqlite::Result<SpoolFigures> {
    let (images, bytes, waiting, waiting_bytes, refused): (i64, i64, i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(uploaded = 0), 0),
                coalesce(sum(CASE WHEN uploaded = 0 THEN bytes ELSE 0 END), 0),
                coalesce(sum(uploaded = 0 AND retry_ms IS NOT NULL), 0) FROM blobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
    let oldest_waiting = conn
        .query_row(
            "SELECT taken_at FROM blobs WHERE uploaded = 0 ORDER BY created_ms LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let (uploaded_total, last_upload_ms, evicted_total, evicted_waiting_total): (
        i64,
        Option<i64>,
        i64,
        i64,
    ) = conn.query_row(
        "SELECT uploaded_total, last_upload_ms, evicted_total, evicted_waiting_total FROM spool_meta WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    Ok(SpoolFigures {
        images: images as u64,
        bytes: bytes as u64,
        quota_bytes,
        waiting: waiting as u64,
        waiting_bytes: waiting_bytes as u64,
        refused: refused as u64,
        oldest_waiting,
        uploaded_total: uploaded_total as u64,
        last_upload_ms,
        evicted_total: evicted_total as u64,
        evicted_waiting_total: evicted_waiting_total as u64,
    })
}

/// An image written to disk, not necessarily indexed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub sha256: String,
    pub bytes: u64,
}

/// The next image to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub sha256: String,
    pub bytes: u64,
    pub path: PathBuf,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    dir: Arc<PathBuf>,
    outbox: Outbox,
    quota_bytes: u64,
    alarms: Alarms,
    /// Making room and writing happen one image at a time, so two writers cannot both think the
    /// same free space is theirs.
    room: Arc<tokio::sync::Mutex<()>>,
}

impl Spool {
    /// Opens the spool under `dir`: removes half-written files and indexes JPEGs that have no row.
    pub async fn open(
        dir: &Path,
        outbox: Outbox,
        quota_bytes: u64,
        alarms: Alarms,
    ) -> Result<Spool, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the snapshot spool {}", dir.display()), e))?;
        let spool = Spool {
            dir: Arc::new(dir.to_owned()),
            outbox,
            quota_bytes,
            alarms,
            room: Arc::new(tokio::sync::Mutex::new(())),
        };
        let found = {
            let s = spool.clone();
            tokio::task::spawn_blocking(move || s.scan())
                .await
                .map_err(|e| Error::Store(e.to_string()))??
        };
        for (row, path) in found {
            tracing::warn!(sha256 = %row.sha256, path = %path.display(), "a spooled JPEG had no index row (the box stopped while storing it); indexed again for upload");
            spool
                .outbox
                .spool(SpoolWrite::Add { row, event: None })
                .await?;
        }
        Ok(spool)
    }

    /// Where the image `sha256` lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("00");
        self.dir.join(prefix).join(format!("{sha256}.jpg"))
    }

    pub fn quota_bytes(&self) -> u64 {
        self.quota_bytes
    }

    /// Deletes temporary files; returns rows for JPEGs on disk that the index does not know.
    fn scan(&self) -> Result<Vec<(BlobRow, PathBuf)>, Error> {
        let mut found = Vec::new();
        let io = |what: &Path, e| Error::io(format!("reading the spool {}", what.display()), e);
        for sub in std::fs::read_dir(&*self.dir).map_err(|e| io(&self.dir, e))? {
            let sub = sub.map_err(|e| io(&self.dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&sub).map_err(|e| io(&sub, e))? {
                let path = file.map_err(|e| io(&sub, e))?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if name.contains(".tmp") {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let Some(sha) = name.strip_suffix(".jpg") else {
                    continue;
                };
                if !sunlight_protocol::blob::is_sha256_hex(sha) {
                    continue;
                }
                let known = self.outbox.read(|c| {
                    c.query_row("SELECT 1 FROM blobs WHERE sha256 = ?1", [sha], |_| Ok(()))
                        .optional()
                })?;
                if known.is_some() {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                if sha256_hex(&bytes) != sha {
                    tracing::warn!(path = %path.display(), "a spooled file does not match its name; removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                let taken_at = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_default();
                found.push((
                    BlobRow {
                        sha256: sha.to_owned(),
                        camera: String::new(),
                        bytes: bytes.len() as u64,
                        taken_at,
                    },
                    path,
                ));
            }
        }
        Ok(found)
    }

    /// Writes an image durably (temporary file, fsync, rename, directory fsync) after making room
    /// for it. Not indexed yet: [`Spool::add`] or a command outcome does that.
    pub async fn write(&self, jpeg: Vec<u8>) -> Result<Spooled, Error> {
        let bytes = jpeg.len() as u64;
        if bytes > self.quota_bytes {
            return Err(Error::Spool(format!(
                "a {bytes}-byte image does not fit in the snapshot quota of {} bytes; raise snapshots.quota_mb",
                self.quota_bytes
            )));
        }
        let _room = self.room.lock().await;
        self.make_room(bytes).await?;
        let sha256 = sha256_hex(&jpeg);
        let path = self.path_of(&sha256);
        tokio::task::spawn_blocking(move || write_durably(&path, &jpeg))
            .await
            .map_err(|e| Error::Store(e.to_string()))??;
        Ok(Spooled { sha256, bytes })
    }

    /// Indexes a written image with its `snapshot` event, in one transaction.
    pub async fn add(&self, row: BlobRow, event: EventDraft) -> Result<Appended, Error> {
        self.outbox
            .spool(SpoolWrite::Add {
                row,
                event: Some(event),
            })
            .await?
            .ok_or(Error::Closed)
    }

    /// Removes a written image that was never indexed (its punch or command was not recorded).
    pub async fn discard(&self, sha256: &str) {
        let s = self.clone();
        let sha = sha256.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            let known = s.outbox.read(|c| {
                c.query_row("SELECT 1 FROM blobs WHERE sha256 = ?1", [&sha], |_| Ok(()))
                    .optional()
            });
            if matches!(known, Ok(None)) {
                let _ = std::fs::remove_file(s.path_of(&sha));
            }
        })
        .await;
    }

    /// Evicts until `incoming` more bytes fit under the quota.
    async fn make_room(&self, incoming: u64) -> Result<(), Error> {
        let limit = self.quota_bytes;
        let outbox = self.outbox.clone();
        let entries = tokio::task::spawn_blocking(move || {
            outbox.read(|c| {
                let total: i64 =
                    c.query_row("SELECT coalesce(sum(bytes), 0) FROM blobs", [], |r| r.get(0))?;
                if (total as u64).saturating_add(incoming) <= limit {
                    return Ok(Vec::new());
                }
                let mut stmt = c.prepare_cached(
                    "SELECT sha256, bytes, uploaded, created_ms FROM blobs ORDER BY uploaded DESC, created_ms",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(Entry {
                        sha256: r.get(0)?,
                        bytes: r.get::<_, i64>(1)? as u64,
                        uploaded: r.get(2)?,
                        created_ms: r.get(3)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<Entry>>>()
            })
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))??;
        let victims = plan_eviction(&entries, limit, incoming);
        if victims.is_empty() {
            return Ok(());
        }
        let waiting = victims.iter().filter(|e| !e.uploaded).count() as u64;
        let freed: u64 = victims.iter().map(|e| e.bytes).sum();
        let sha256s: Vec<String> = victims.iter().map(|e| e.sha256.clone()).collect();
        // Rows first, then files: a crash in between leaves files that the next start indexes
        // again, never a row without its file.
        self.outbox
            .spool(SpoolWrite::Evict {
                sha256s: sha256s.clone(),
                waiting,
            })
            .await?;
        let paths: Vec<PathBuf> = sha256s.iter().map(|s| self.path_of(s)).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        })
        .await;
        tracing::info!(
            evicted = sha256s.len(),
            not_uploaded = waiting,
            freed_bytes = freed,
            quota_bytes = limit,
            "snapshot spool over its quota: oldest images evicted (uploaded ones first)"
        );
        if waiting > 0 {
            self.alarms.raise(Alarm {
                what: "snapshots_evicted_unuploaded".into(),
                at: chrono::Utc::now().to_rfc3339(),
                detail: format!(
                    "the snapshot spool is full ({} MiB): {waiting} images that were never uploaded were deleted to make room; check the box's link to the hub (hub.api) or raise snapshots.quota_mb",
                    limit / (1024 * 1024)
                ),
                camera_id: None,
                count: Some(waiting),
            });
        }
        Ok(())
    }

    /// The oldest image not uploaded and not set aside. Blocking: call from a blocking context.
    pub fn next_upload(&self, now_ms: i64) -> Result<Option<Pending>, Error> {
        let row: Option<(String, i64)> = self.outbox.read(|c| {
            c.query_row(
                "SELECT sha256, bytes FROM blobs WHERE uploaded = 0 AND (retry_ms IS NULL OR retry_ms <= ?1)
                 ORDER BY created_ms, sha256 LIMIT 1",
                [now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(row.map(|(sha256, bytes)| Pending {
            path: self.path_of(&sha256),
            sha256,
            bytes: bytes as u64,
        }))
    }

    pub async fn mark_uploaded(&self, sha256: &str) -> Result<(), Error> {
        self.outbox
            .spool(SpoolWrite::Uploaded {
                sha256: sha256.to_owned(),
            })
            .await
            .map(|_| ())
    }

    pub async fn mark_refused(&self, sha256: &str, retry_ms: i64) -> Result<(), Error> {
        self.outbox
            .spool(SpoolWrite::Refused {
                sha256: sha256.to_owned(),
                retry_ms,
            })
            .await
            .map(|_| ())
    }

    /// An indexed image whose file is gone (deleted by hand, a broken disk): forget it, loudly.
    pub async fn forget_missing(&self, sha256: &str) -> Result<(), Error> {
        self.outbox
            .spool(SpoolWrite::Evict {
                sha256s: vec![sha256.to_owned()],
                waiting: 1,
            })
            .await?;
        self.alarms.raise(Alarm {
            what: "snapshot_file_missing".into(),
            at: chrono::Utc::now().to_rfc3339(),
            detail: format!(
                "snapshot {sha256} was spooled but its file is missing or damaged; it cannot be uploaded"
            ),
            camera_id: None,
            count: Some(1),
        });
        Ok(())
    }

    /// Figures for status. Blocking: call from a blocking context.
    pub fn figures(&self) -> Result<SpoolFigures, Error> {
        self.outbox.read(|c| figures(c, self.quota_bytes))
    }

    /// Figures of an outbox file, read without starting a writer (for a stopped agent's status).
    pub fn inspect(db: &Path, quota_bytes: u64) -> Result<SpoolFigures, Error> {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| figures(&c, quota_bytes).map(|f| (c, f)));
        match conn {
            Ok((_, f)) => Ok(f),
            // An outbox from before cameras has no spool tables yet: nothing spooled.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                Ok(SpoolFigures {
                    quota_bytes,
                    ..SpoolFigures::default()
                })
            }
            Err(source) => Err(Error::Db {
                path: db.to_owned(),
                source,
            }),
        }
    }
}

/// Temporary file, fsync, rename, directory fsync: after this the image survives a power cut.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let dir = path
        .parent()
        .ok_or_else(|| Error::Spool(format!("{} has no directory", path.display())))?;
    if path.exists() {
        // The same picture again: content-addressed, so it is already there.
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    let mut r = [0u8; 6];
    let _ = getrandom::getrandom(&mut r);
    let tmp = path.with_extension(format!("jpg.tmp-{}", hex::encode(r)));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io("writing", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::now_ms;

    fn entry(sha: &str, bytes: u64, uploaded: bool, created_ms: i64) -> Entry {
        Entry {
            sha256: sha.into(),
            bytes,
            uploaded,
            created_ms,
        }
    }

    fn names<'a>(v: &[&'a Entry]) -> Vec<&'a str> {
        v.iter().map(|e| e.sha256.as_str()).collect()
    }

    #[test]
    fn eviction_takes_uploaded_images_first_then_the_oldest_waiting() {
        let entries = vec![
            entry("w-old", 100, false, 1),
            entry("u-new", 100, true, 5),
            entry("w-mid", 100, false, 3),
            entry("u-old", 100, true, 2),
            entry("w-new", 100, false, 6),
        ];
        // 500 on disk: under 500 with nothing coming, nothing goes.
        assert!(plan_eviction(&entries, 500, 0).is_empty());
        // 100 more to fit: the oldest uploaded one.
        assert_eq!(names(&plan_eviction(&entries, 500, 100)), ["u-old"]);
        assert_eq!(
            names(&plan_eviction(&entries, 350, 0)),
            ["u-old", "u-new"],
            "uploaded ones go first even when newer"
        );
        assert_eq!(
            names(&plan_eviction(&entries, 250, 0)),
            ["u-old", "u-new", "w-old"],
            "then the oldest not uploaded"
        );
        assert_eq!(
            names(&plan_eviction(&entries, 100, 100)),
            ["u-old", "u-new", "w-old", "w-mid", "w-new"]
        );
        // One big uploaded image frees enough by itself.
        let entries = vec![entry("w", 10, false, 1), entry("u", 1000, true, 9)];
        assert_eq!(names(&plan_eviction(&entries, 500, 0)), ["u"]);
    }

    fn outbox(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(
            &dir.path().join("outbox.db"),
            &sunlight_protocol::SiteId::new("suixian-shangshi").unwrap(),
            &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        )
        .unwrap()
    }

    fn snapshot(row: &BlobRow) -> EventDraft {
        let body = serde_json::json!({"camera_id": row.camera, "sha256": row.sha256, "bytes": row.bytes,
            "width": 8, "height": 8, "taken_at": row.taken_at, "trigger": "schedule"});
        EventDraft::new("snapshot", &row.taken_at, &body).unwrap()
    }

    async fn store(spool: &Spool, n: u64, size: usize) -> String {
        let mut jpeg = crate::capture::camera::jpeg::generate(8, 8, n, &format!("{n}"));
        jpeg.resize(size, 0);
        let s = spool.write(jpeg).await.unwrap();
        let row = BlobRow {
            sha256: s.sha256.clone(),
            camera: "w1".into(),
            bytes: s.bytes,
            taken_at: "2026-11-23T09:00:00+08:00".into(),
        };
        spool.add(row.clone(), snapshot(&row)).await.unwrap();
        s.sha256
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn images_are_stored_by_content_indexed_with_their_event_and_evicted_over_quota() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let (alarms, mut raised) = Alarms::new();
        let spool = Spool::open(
            &dir.path().join("blobs"),
            outbox.clone(),
            3000,
            alarms.clone(),
        )
        .await
        .unwrap();
        let a = store(&spool, 1, 1000).await;
        let b = store(&spool, 2, 1000).await;
        let path = spool.path_of(&a);
        assert!(path.ends_with(format!("{}/{a}.jpg", &a[..2])));
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), a);
        let f = spool.figures().unwrap();
        assert_eq!((f.images, f.bytes, f.waiting), (2, 2000, 2));
        // One event per image, in the chain like any other.
        let events = outbox.read_from(1, 10, usize::MAX).unwrap();
        assert_eq!(events.len(), 2);
        assert!(String::from_utf8_lossy(&events[0].canonical).contains(&a));

        // The oldest waiting first.
        let next = spool.next_upload(now_ms()).unwrap().unwrap();
        assert_eq!((next.sha256.as_str(), next.bytes), (a.as_str(), 1000));
        spool.mark_uploaded(&a).await.unwrap();
        assert_eq!(spool.next_upload(now_ms()).unwrap().unwrap().sha256, b);
        // A refused one is set aside until its retry time.
        spool.mark_refused(&b, now_ms() + 60_000).await.unwrap();
        assert_eq!(spool.next_upload(now_ms()).unwrap(), None);
        assert!(spool.next_upload(now_ms() + 61_000).unwrap().is_some());

        // Two more: over 3000 bytes, the uploaded one goes first, silently.
        let c = store(&spool, 3, 1000).await;
        assert!(raised.try_recv().is_err());
        let d = store(&spool, 4, 1000).await;
        assert!(!spool.path_of(&a).exists(), "the uploaded one was evicted");
        assert!(
            raised.try_recv().is_err(),
            "losing an uploaded image is no alarm"
        );
        // One more: now an image that never reached the hub goes, with an alarm.
        store(&spool, 5, 1000).await;
        assert!(!spool.path_of(&b).exists() && spool.path_of(&c).exists());
        let alarm = raised.try_recv().unwrap();
        assert_eq!(
            (alarm.what.as_str(), alarm.count),
            ("snapshots_evicted_unuploaded", Some(1))
        );
        let f = spool.figures().unwrap();
        assert_eq!(
            (
                f.images,
                f.bytes,
                f.evicted_total,
                f.evicted_waiting_total,
                f.uploaded_total
            ),
            (3, 3000, 2, 1, 1)
        );
        assert!(f.last_upload_ms.is_some());
        // Events are never evicted.
        assert_eq!(outbox.read_from(1, 100, usize::MAX).unwrap().len(), 5);
        assert!(spool.path_of(&d).exists());
        // Too big for the quota at all: refused, nothing evicted.
        assert!(spool.write(vec![0; 3001]).await.is_err());
        assert_eq!(spool.figures().unwrap().images, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_without_its_row_is_indexed_again_at_start_and_tmp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let (alarms, _raised) = Alarms::new();
        let jpeg = crate::capture::camera::jpeg::generate(8, 8, 7, "");
        let sha = sha256_hex(&jpeg);
        {
            let spool = Spool::open(&blobs, outbox(&dir), 1 << 20, alarms.clone())
                .await
                .unwrap();
            // Written, then the box stopped before the row.
            spool.write(jpeg.clone()).await.unwrap();
            std::fs::create_dir_all(blobs.join("ab")).unwrap();
            std::fs::write(blobs.join("ab").join("x.jpg.tmp-1"), b"half").unwrap();
        }
        let spool = Spool::open(&blobs, outbox(&dir), 1 << 20, alarms)
            .await
            .unwrap();
        assert!(!blobs.join("ab").join("x.jpg.tmp-1").exists());
        let f = spool.figures().unwrap();
        assert_eq!((f.images, f.waiting), (1, 1));
        assert_eq!(spool.next_upload(now_ms()).unwrap().unwrap().sha256, sha);
        // Discarding an indexed image does nothing.
        spool.discard(&sha).await;
        assert!(spool.path_of(&sha).exists());
    }
}
