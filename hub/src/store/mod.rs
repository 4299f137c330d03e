//! The hub's store: an append-only event log keyed by `(device, seq)`, the device registry with each
//! device's chain head, the dead-letter table and the alarm log. SQLite (WAL, `synchronous=FULL`).
//!
//! Ingest writes through [`Writer`] inside one transaction per group of batches; the HTTP API reads
//! through [`Reader`] on its own connection. Events can be neither updated nor deleted: triggers
//! refuse it, so "信息一经录入系统,便不能更改" holds in the database itself.

use crate::error::Error;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use sunlight_protocol::{DeviceId, EventHash, GENESIS, PublicKey, SiteId};

pub mod attendance;
pub mod boxcal;
pub mod cases;
pub mod commands;
pub mod complaints;
pub mod items;
pub mod letters;
pub mod notices;
pub mod rates;
pub mod ratings;
pub mod settings;
pub mod updates;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL, device TEXT NOT NULL, pubkey TEXT NOT NULL, registered_ms INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0, last_hash BLOB NOT NULL,
    last_seen_ms INTEGER, online INTEGER NOT NULL DEFAULT 0, status_ms INTEGER, version TEXT,
    clock_offset_ms INTEGER, backlog_events INTEGER, backlog_bytes INTEGER, health TEXT,
    revoked_ms INTEGER,
    UNIQUE (site, device));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id), seq INTEGER NOT NULL,
    kind TEXT NOT NULL, at TEXT NOT NULL, received_ms INTEGER NOT NULL, clock_offset_ms INTEGER,
    hash BLOB NOT NULL, canonical BLOB NOT NULL,
    UNIQUE (device_id, seq));
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: record a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: record a correction instead'); END;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, site TEXT, device TEXT, seq INTEGER,
    reason TEXT NOT NULL, payload BLOB);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, site TEXT, device TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL);
-- Events their box marked back-dated (issue 14, item 6): `day` is the day of the event's own time,
-- `subject` its case number or staff number.
CREATE TABLE IF NOT EXISTS backdated (
    event_id INTEGER PRIMARY KEY, site TEXT NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL,
    day TEXT NOT NULL, received_at TEXT NOT NULL, last_upload_at TEXT, bound_secs INTEGER NOT NULL,
    subject TEXT);
CREATE INDEX IF NOT EXISTS backdated_by_day ON backdated (site, day);
";

/// Dead-letter payloads are kept up to this size (the reason is always kept whole).
const DEAD_LETTER_KEEP: usize = 64 * 1024;

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        path: path.to_owned(),
        source,
    }
}

fn open(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err(path))?;
    // 64 MiB of page cache per connection: oversight touches indexes across a large file.
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(db_err(path))?;
    // No connection copies the WAL into the database when it commits: that checkpoint (pages
    // written and the file synced, ~90 ms here) would fall on whichever commit crossed the WAL's
    // size, one ingest commit in a hundred. A running hub checkpoints on a thread of its own
    // ([`spawn_checkpointer`]); a command-line process checkpoints when it closes the store.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(db_err(path))?;
    conn.execute_batch(SCHEMA).map_err(db_err(path))?;
    for schema in [
        cases::SCHEMA,
        attendance::SCHEMA,
        commands::SCHEMA,
        boxcal::SCHEMA,
        updates::SCHEMA,
        crate::blobs::SCHEMA,
        crate::fleet::SCHEMA,
        crate::fieldops::SCHEMA,
        notices::SCHEMA,
        letters::SCHEMA,
        ratings::SCHEMA,
        complaints::SCHEMA,
        items::SCHEMA,
        crate::sites::SCHEMA,
        settings::SCHEMA,
        AUDIT_SCHEMA,
    ] {
        conn.execute_batch(schema).map_err(db_err(path))?;
    }
    conn.execute_batch(&attendance::change_triggers())
        .map_err(db_err(path))?;
    migrate(&conn).map_err(db_err(path))?;
    Ok(conn)
}

/// Columns added after a table was first created: added to an older store when it is opened (SQLite's
/// `CREATE TABLE IF NOT EXISTS` leaves an existing table as it was).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("devices", "revoked_ms", "INTEGER"),
    ("cases", "view", "TEXT NOT NULL DEFAULT 'todo'"),
    ("cases", "accepted", "TEXT"),
    ("cases", "completed", "TEXT"),
    ("cases", "on_time", "INTEGER"),
    ("cases", "early", "INTEGER"),
    ("cases", "rated", "INTEGER NOT NULL DEFAULT 0"),
    ("punches", "photo", "TEXT"),
    ("staff", "card_no", "TEXT"),
    ("cases", "kind", "TEXT"),
    ("cases", "staff_id", "TEXT"),
    ("case_warnings", "unit", "TEXT"),
    ("case_warnings", "staff_id", "TEXT"),
    ("cases", "provisional", "INTEGER"),
    ("punches", "backdated", "TEXT"),
    ("staff", "pin_digits", "INTEGER"),
];

/// What an older store fills in when a column of [`ADDED_COLUMNS`] is added: the cases' kind and
/// handler from their state, the warnings' unit and handler from their case (the append-only
/// trigger is put back by `cases::SCHEMA` right after).
const BACKFILLS: &[(&str, &str, &str)] = &[
    (
        "cases",
        "staff_id",
        "UPDATE cases SET kind = json_extract(state, '$.kind'), staff_id = json_extract(state, '$.staff_id');",
    ),
    (
        "case_warnings",
        "staff_id",
        "DROP TRIGGER IF EXISTS case_warnings_append_only;
         UPDATE case_warnings SET
            unit = (SELECT c.unit FROM cases c WHERE c.site = case_warnings.site AND c.case_no = case_warnings.case_no),
            staff_id = (SELECT json_extract(c.state, '$.staff_id') FROM cases c
                        WHERE c.site = case_warnings.site AND c.case_no = case_warnings.case_no);",
    ),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            for (_, _, sql) in BACKFILLS
                .iter()
                .filter(|(t, c, _)| t == table && c == column)
            {
                conn.execute_batch(sql)?;
            }
        }
    }
    conn.execute_batch(cases::SCHEMA)?;
    conn.execute_batch(cases::REPORT_INDEXES)?;
    Ok(())
}

/// Revokes a box: its batches and uploads are refused from now on. Returns false if it was not
/// registered (or already revoked).
pub fn revoke_device(
    path: &Path,
    site: &str,
    device: &str,
    by: &str,
    reason: &str,
) -> Result<bool, Error> {
    let conn = open(path)?;
    let n = conn
        .execute(
            "UPDATE devices SET revoked_ms = ?3 WHERE site = ?1 AND device = ?2 AND revoked_ms IS NULL",
            params![site, device, now_ms()],
        )
        .map_err(db_err(path))?;
    if n == 1 {
        audit(
            &conn,
            by,
            "device.revoke",
            &format!("{site}/{device}"),
            reason,
        )
        .map_err(db_err(path))?;
        conn.execute(
            "INSERT INTO alarms (at_ms, site, device, kind, detail) VALUES (?1, ?2, ?3, 'revoked', ?4)",
            params![now_ms(), site, device, format!("revoked by {by}: {reason}")],
        )
        .map_err(db_err(path))?;
    }
    Ok(n == 1)
}

/// Copies what the WAL holds into the database without waiting for anyone (SQLite's PASSIVE
/// checkpoint): frames a reader still needs stay for the next round. Returns the WAL's frames and
/// how many of them are in the database now.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// Checkpoints the store at `path` every `every` on a thread and connection of its own, so that
/// no commit pays for it (see `open`).
pub fn spawn_checkpointer(path: &Path, every: std::time::Duration) -> Result<(), Error> {
    let conn = open(path)?;
    // After a checkpoint that reached the end, the WAL is reused from its start; this bounds the
    // file left behind by a burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(db_err(path))?;
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                if let Err(e) = checkpoint(&conn) {
                    tracing::warn!(store = %path.display(), error = %e, "checkpoint failed; trying again");
                }
            }
        })
        .map_err(|e| Error::io("starting the checkpoint thread", e))?;
    Ok(())
}

/// The boxes revoked so far.
pub fn revoked(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<(String, String)>> {
    conn.prepare_cached("SELECT site, device FROM devices WHERE revoked_ms IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// What ingest needs to know about a registered device.
#[derive(Debug, Clone)]
pub struct DeviceState {
    pub id: i64,
    pub pubkey: PublicKey,
    pub last_seq: u64,
    pub last_hash: EventHash,
    pub clock_offset_ms: Option<i64>,
}

/// Registers a device with its public key. Idempotent for the same key; a different key for a
/// registered device is refused (replacing a box is a new device identity).
pub fn add_device(
    path: &Path,
    site: &SiteId,
    device: &DeviceId,
    pubkey: &PublicKey,
) -> Result<bool, Error> {
    let conn = open(path)?;
    let existing: Option<String> = conn
        .query_row(
            "SELECT pubkey FROM devices WHERE site = ?1 AND device = ?2",
            params![site.as_str(), device.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err(path))?;
    match existing {
        Some(k) if k == pubkey.to_base64() => Ok(false),
        Some(_) => Err(Error::Invalid(format!(
            "{site}/{device} is already registered with another key; a replaced box gets a new device id (e.g. box-02)"
        ))),
        None => {
            conn.execute(
                "INSERT INTO devices (site, device, pubkey, registered_ms, last_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![site.as_str(), device.as_str(), pubkey.to_base64(), now_ms(), &GENESIS.0[..]],
            )
            .map_err(db_err(path))?;
            Ok(true)
        }
    }
}

/// The ingest side of the store: one write connection.
pub struct Writer {
    conn: Connection,
    path: PathBuf,
}

impl Writer {
    pub fn open(path: &Path) -> Result<Writer, Error> {
        Ok(Writer {
            conn: open(path)?,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for statements that need no transaction of their own.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn transaction(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    pub fn device(
        &self,
        site: &SiteId,
        device: &DeviceId,
    ) -> rusqlite::Result<Option<DeviceState>> {
        device_state(&self.conn, site, device)
    }

    /// Marks a device online or offline from its retained status message. A box coming online has
    /// its unanswered commands published again at once (it subscribes before it says so), not only
    /// at the next resend.
    pub fn set_status(
        &self,
        site: &SiteId,
        device: &DeviceId,
        online: bool,
        version: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE devices SET online = ?3, status_ms = ?4, version = COALESCE(NULLIF(?5, ''), version) WHERE site = ?1 AND device = ?2",
            params![site.as_str(), device.as_str(), online, now_ms(), version],
        )?;
        if online {
            self.conn.execute(
                "UPDATE commands SET last_publish_ms = NULL WHERE site = ?1 AND device = ?2 AND result_ms IS NULL",
                params![site.as_str(), device.as_str()],
            )?;
        }
        Ok(())
    }
}

fn device_state(
    conn: &Connection,
    site: &SiteId,
    device: &DeviceId,
) -> rusqlite::Result<Option<DeviceState>> {
    conn.query_row(
        "SELECT id, pubkey, last_seq, last_hash, clock_offset_ms FROM devices WHERE site = ?1 AND device = ?2",
        params![site.as_str(), device.as_str()],
        |r| {
            let key: String = r.get(1)?;
            let hash: Vec<u8> = r.get(3)?;
            Ok((r.get::<_, i64>(0)?, key, r.get::<_, i64>(2)?, hash, r.get::<_, Option<i64>>(4)?))
        },
    )
    .optional()
    .map(|row| {
        row.and_then(|(id, key, last_seq, hash, clock_offset_ms)| {
            Some(DeviceState {
                id,
                pubkey: PublicKey::from_base64(&key)?,
                last_seq: last_seq as u64,
                last_hash: EventHash::from_slice(&hash)?,
                clock_offset_ms,
            })
        })
    })
}

/// Statements ingest runs inside its transaction.
pub mod tx {
    use super::*;
    use sunlight_protocol::ReceivedEvent;

    pub fn insert_event(
        tx: &Transaction<'_>,
        device_id: i64,
        e: &ReceivedEvent,
        received_ms: i64,
        offset: Option<i64>,
    ) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO events (device_id, seq, kind, at, received_ms, clock_offset_ms, hash, canonical)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        stmt.execute(params![
            device_id,
            e.seq as i64,
            e.kind,
            e.at,
            received_ms,
            offset,
            &e.hash.0[..],
            &e.canonical
        ])?;
        Ok(())
    }

    /// Records that the event just inserted (`event_id`) was marked back-dated by its box.
    pub fn backdated(
        tx: &Transaction<'_>,
        event_id: i64,
        site: &str,
        e: &ReceivedEvent,
        mark: &sunlight_protocol::Backdated,
    ) -> rusqlite::Result<()> {
        let body: serde_json::Value = serde_json::from_str(e.body()).unwrap_or_default();
        let subject = body
            .get("case_no")
            .or_else(|| body.get("staff_id"))
            .or_else(|| body.get("complaint_no"))
            .or_else(|| body.get("leader_id"))
            .and_then(|v| v.as_str());
        let day = chrono::DateTime::parse_from_rfc3339(&e.at)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default();
        tx.prepare_cached(
            "INSERT OR IGNORE INTO backdated (event_id, site, kind, at, day, received_at, last_upload_at, bound_secs, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            event_id,
            site,
            e.kind,
            e.at,
            day,
            mark.received_at,
            mark.last_upload_at,
            i64::try_from(mark.bound_secs).unwrap_or(i64::MAX),
            subject
        ])?;
        Ok(())
    }

    pub fn advance_device(
        tx: &Transaction<'_>,
        device_id: i64,
        last_seq: u64,
        last_hash: &EventHash,
        seen_ms: i64,
    ) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "UPDATE devices SET last_seq = ?2, last_hash = ?3, last_seen_ms = ?4 WHERE id = ?1",
        )?;
        stmt.execute(params![
            device_id,
            last_seq as i64,
            &last_hash.0[..],
            seen_ms
        ])?;
        Ok(())
    }

    pub fn touch_device(
        tx: &Transaction<'_>,
        device_id: i64,
        seen_ms: i64,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached("UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1")?
            .execute(params![device_id, seen_ms])?;
        Ok(())
    }

    pub fn record_health(tx: &Transaction<'_>, device_id: i64, body: &str) -> rusqlite::Result<()> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        tx.prepare_cached(
            "UPDATE devices SET health = ?2, backlog_events = ?3, backlog_bytes = ?4,
             clock_offset_ms = COALESCE(?5, clock_offset_ms), version = COALESCE(?6, version) WHERE id = ?1",
        )?
        .execute(params![
            device_id,
            body,
            v["backlog_events"].as_i64(),
            v["backlog_bytes"].as_i64(),
            v["clock_offset_ms"].as_i64(),
            v["version"].as_str()
        ])?;
        Ok(())
    }

    pub fn dead_letter(
        tx: &Transaction<'_>,
        site: Option<&str>,
        device: Option<&str>,
        seq: Option<u64>,
        reason: &str,
        payload: &[u8],
    ) -> rusqlite::Result<()> {
        let keep = &payload[..payload.len().min(DEAD_LETTER_KEEP)];
        tx.prepare_cached("INSERT INTO dead_letters (received_ms, site, device, seq, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![now_ms(), site, device, seq.map(|s| s as i64), reason, keep])?;
        Ok(())
    }

    pub fn alarm(
        tx: &Transaction<'_>,
        site: Option<&str>,
        device: Option<&str>,
        kind: &str,
        detail: &str,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO alarms (at_ms, site, device, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![now_ms(), site, device, kind, detail])?;
        Ok(())
    }
}

/// A device as the API shows it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub site: String,
    pub device: String,
    pub online: bool,
    pub last_seen: Option<String>,
    pub last_seq: u64,
    pub backlog_events: Option<i64>,
    pub backlog_bytes: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    pub version: Option<String>,
    pub alarms: i64,
    /// Set once the box was revoked (`sunlight-hub device revoke`).
    pub revoked_at: Option<String>,
}

/// An event as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    pub site: String,
    pub device: String,
    pub seq: u64,
    pub kind: String,
    pub at: String,
    pub received_at: String,
    pub clock_offset_ms: Option<i64>,
    pub body: Box<serde_json::value::RawValue>,
    /// The box's mark of a back-dated event: its own time, when the box received it, the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backdated: Option<sunlight_protocol::Backdated>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub received_at: String,
    pub site: Option<String>,
    pub device: Option<String>,
    pub seq: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct AlarmView {
    pub id: i64,
    pub at: String,
    pub site: Option<String>,
    pub device: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// Filter of `GET /api/v1/events`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct EventFilter {
    pub site: Option<String>,
    pub device: Option<String>,
    pub kind: Option<String>,
    /// Return events with an id greater than this (the `next` of the previous page).
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

pub fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The API side of the store: its own read connection.
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, Error> {
        Ok(Reader {
            conn: open(path)?,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        db_err(&self.path)
    }

    /// The key a box logs in to the embedded broker with: registered and not revoked.
    pub fn login_key(&self, site: &SiteId, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        let key: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT pubkey FROM devices WHERE site = ?1 AND device = ?2 AND revoked_ms IS NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![site.as_str(), device.as_str()], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err())?;
        Ok(key.and_then(|k| PublicKey::from_base64(&k)))
    }

    pub fn devices(&self) -> Result<Vec<DeviceView>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.site, d.device, d.online, d.last_seen_ms, d.last_seq, d.backlog_events, d.backlog_bytes,
                        d.clock_offset_ms, d.version,
                        (SELECT count(*) FROM alarms a WHERE a.site = d.site AND a.device = d.device),
                        d.revoked_ms
                 FROM devices d ORDER BY d.site, d.device",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeviceView {
                    site: r.get(0)?,
                    device: r.get(1)?,
                    online: r.get(2)?,
                    last_seen: r.get::<_, Option<i64>>(3)?.map(fmt_ms),
                    last_seq: r.get::<_, i64>(4)? as u64,
                    backlog_events: r.get(5)?,
                    backlog_bytes: r.get(6)?,
                    clock_offset_ms: r.get(7)?,
                    version: r.get(8)?,
                    alarms: r.get(9)?,
                    revoked_at: r.get::<_, Option<i64>>(10)?.map(fmt_ms),
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn events(&self, f: &EventFilter) -> Result<Vec<EventView>, Error> {
        let limit = f.limit.unwrap_or(100).clamp(1, 1000) as i64;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, d.site, d.device, e.seq, e.kind, e.at, e.received_ms, e.clock_offset_ms, e.canonical
                 FROM events e JOIN devices d ON d.id = e.device_id
                 WHERE e.id > ?1 AND (?2 IS NULL OR d.site = ?2) AND (?3 IS NULL OR d.device = ?3) AND (?4 IS NULL OR e.kind = ?4)
                 ORDER BY e.id LIMIT ?5",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(
                params![f.since.unwrap_or(0), f.site, f.device, f.kind, limit],
                |r| {
                    let canonical: Vec<u8> = r.get(8)?;
                    let parsed =
                        serde_json::from_slice::<sunlight_protocol::event::CanonicalEvent>(
                            &canonical,
                        )
                        .ok();
                    let backdated = parsed.as_ref().and_then(|c| c.backdated.clone());
                    let body = parsed
                        .and_then(|c| {
                            serde_json::value::RawValue::from_string(c.body.get().to_owned()).ok()
                        })
                        .unwrap_or_else(|| {
                            serde_json::value::RawValue::from_string("null".into())
                                .expect("null is JSON")
                        });
                    Ok(EventView {
                        id: r.get(0)?,
                        site: r.get(1)?,
                        device: r.get(2)?,
                        seq: r.get::<_, i64>(3)? as u64,
                        kind: r.get(4)?,
                        at: r.get(5)?,
                        received_at: fmt_ms(r.get(6)?),
                        clock_offset_ms: r.get(7)?,
                        body,
                        backdated,
                    })
                },
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn dead_letters(&self, since: i64, limit: u32) -> Result<Vec<DeadLetterView>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, received_ms, site, device, seq, reason FROM dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![since, limit.clamp(1, 1000)], |r| {
                Ok(DeadLetterView {
                    id: r.get(0)?,
                    received_at: fmt_ms(r.get(1)?),
                    site: r.get(2)?,
                    device: r.get(3)?,
                    seq: r.get(4)?,
                    reason: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn alarms(&self, since: i64, limit: u32) -> Result<Vec<AlarmView>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, at_ms, site, device, kind, detail FROM alarms WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![since, limit.clamp(1, 1000)], |r| {
                Ok(AlarmView {
                    id: r.get(0)?,
                    at: fmt_ms(r.get(1)?),
                    site: r.get(2)?,
                    device: r.get(3)?,
                    kind: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, Error> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.err())
    }

    pub fn cases(&self, f: &CaseFilter) -> Result<Vec<cases::CaseView>, Error> {
        cases::list(&self.conn, f).map_err(self.err())
    }

    /// Runs a read with this connection.
    pub fn run<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        f(&self.conn).map_err(self.err())
    }
}

impl Writer {
    /// Runs `f` in one transaction and commits it.
    pub fn run<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let tx = self.transaction().map_err(db_err(&path))?;
        let out = f(&tx).map_err(db_err(&path))?;
        tx.commit().map_err(db_err(&path))?;
        Ok(out)
    }
}

/// Filter of `GET /api/v1/cases`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFilter {
    pub site: Option<String>,
    pub unit: Option<String>,
    pub window: Option<String>,
    /// blue, yellow_light, red_light, yellow_card, red_card, supervision_letter
    pub level: Option<String>,
    /// todo (待办), doing (在办) or done (已办), as seed 002 lists them.
    pub view: Option<String>,
    /// Only open cases (default true; ignored when `view` is given).
    pub open: Option<bool>,
    pub limit: Option<u32>,
}

const AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// Records who changed what (work orders, complaints, the item catalog), in the caller's transaction.
pub fn audit(
    conn: &Connection,
    who: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (at_ms, who, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), who, action, target, detail],
    )?;
    Ok(())
}
