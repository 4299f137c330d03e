//! The durable outbox: every accepted event is in SQLite (WAL, `synchronous=FULL`) before anyone is
//! told "recorded", and leaves only when the hub has acknowledged it.
//!
//! One writer thread owns the write connection. Appenders hand it their events through a bounded
//! channel and wait; the writer takes everything queued, writes it in one transaction and commits
//! once (group commit), so concurrent appends share one fsync. The `seq` and the chain hash are given
//! inside that transaction, from a chain head that is kept in the same database. Acks delete rows in
//! the same serial order. Readers (sync, status) use their own connection; WAL lets them read while
//! the writer writes. Memory is bounded by the channel and the batch size, never by the backlog.
//!
//! Hub commands are recorded here too ([`Outbox::record_command`]): the executed `cmd_id`, what the
//! command changes (the roster, a snapshot) and its `cmd_result` event are written in one
//! transaction, so a crash can neither execute a command twice nor answer it twice.
//!
//! The snapshot spool's index lives in the same database ([`crate::spool`]): a spooled image's row
//! and its `snapshot` event are written in one transaction ([`Outbox::spool`]), by the same writer.

use crate::error::Error;
use crate::roster::Roster;
use crate::spool::{BlobRow, SpoolWrite};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use sunlight_protocol::{DeviceId, EventDraft, EventHash, GENESIS, SiteId};
use tokio::sync::{Notify, mpsc, oneshot};

/// Requests queued for the writer, at most; appenders wait beyond that (back-pressure).
const QUEUE: usize = 1024;
/// Events written in one transaction, at most.
const GROUP_EVENTS: usize = 8192;

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: EventHash,
}

/// An event as stored, ready to be put in a batch.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub prev: EventHash,
    pub canonical: Vec<u8>,
}

/// Backlog figures for status and health.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    /// Highest seq given out.
    pub head_seq: u64,
    /// Highest seq the hub acknowledged.
    pub acked_seq: u64,
    /// Events not yet acknowledged.
    pub events: u64,
    /// Their canonical bytes.
    pub bytes: u64,
    /// Unix ms when the oldest of them was accepted.
    pub oldest_ms: Option<i64>,
}

/// An event with an optional dedup key: a second event with a key already recorded is not
/// appended (terminals re-send whole ranges; the same record must become one punch).
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: Option<String>,
    pub draft: EventDraft,
}

/// A hub command as executed: its id, its answer (a `cmd_result` draft) and what it changes.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub cmd_id: String,
    /// The command's kind as the hub sent it (kept with the id, for the record).
    pub kind: String,
    pub ok: bool,
    /// The `cmd_result` event answering it.
    pub result: EventDraft,
    /// A roster that replaces the cached one, with where it came from.
    pub roster: Option<(Roster, String)>,
    /// A snapshot the command took: its spool row and its `snapshot` event (before the answer).
    pub snapshot: Option<(BlobRow, EventDraft)>,
    /// A calendar that replaces the stored one (`set_calendar`), with where it came from.
    pub calendar: Option<(sunlight_protocol::holidays::PushedCalendar, String)>,
}

enum Request {
    Append(
        Vec<Keyed>,
        oneshot::Sender<Result<Vec<Option<Appended>>, Error>>,
    ),
    Ack(u64, oneshot::Sender<Result<(), Error>>),
    Command(
        Box<CommandOutcome>,
        oneshot::Sender<Result<Option<Appended>, Error>>,
    ),
    Spool(
        Box<SpoolWrite>,
        oneshot::Sender<Result<Option<Appended>, Error>>,
    ),
    /// Answered by the writer thread between commits: it is alive and taking requests.
    Ping(oneshot::Sender<()>),
}

/// Handle to the outbox; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Request>,
    reader: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
    appended: Arc<Notify>,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A connection to the outbox database with the outbox's settings (WAL, `synchronous=FULL`).
pub(crate) fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err(path))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err(path))?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), site TEXT NOT NULL, device TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL, hash BLOB NOT NULL, acked INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO head (id, seq, hash, acked, bytes) VALUES (1, 0, zeroblob(32), 0, 0);
CREATE TABLE IF NOT EXISTS dedup (key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, prev BLOB NOT NULL, hash BLOB NOT NULL, kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL, canonical BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    cmd_id TEXT PRIMARY KEY, kind TEXT NOT NULL, ok INTEGER NOT NULL, seq INTEGER NOT NULL,
    executed_ms INTEGER NOT NULL) WITHOUT ROWID;
";

struct Head {
    seq: u64,
    hash: EventHash,
    acked: u64,
    bytes: u64,
}

fn read_head(conn: &Connection) -> rusqlite::Result<Head> {
    conn.query_row(
        "SELECT seq, hash, acked, bytes FROM head WHERE id = 1",
        [],
        |r| {
            let hash: Vec<u8> = r.get(1)?;
            Ok(Head {
                seq: r.get::<_, i64>(0)? as u64,
                hash: EventHash::from_slice(&hash).unwrap_or(GENESIS),
                acked: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
            })
        },
    )
}

impl Outbox {
    /// Opens (or creates) the outbox of `site`/`device` at `path` and starts its writer thread.
    pub fn open(path: &Path, site: &SiteId, device: &DeviceId) -> Result<Outbox, Error> {
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA).map_err(db_err(path))?;
        writer
            .execute_batch(crate::roster::SCHEMA)
            .map_err(db_err(path))?;
        writer
            .execute_batch(crate::calendar::SCHEMA)
            .map_err(db_err(path))?;
        writer
            .execute_batch(crate::spool::SCHEMA)
            .map_err(db_err(path))?;
        let owner: Option<(String, String)> = writer
            .query_row("SELECT site, device FROM identity WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db_err(path))?;
        match owner {
            None => {
                writer
                    .execute(
                        "INSERT INTO identity (id, site, device) VALUES (1, ?1, ?2)",
                        params![site.as_str(), device.as_str()],
                    )
                    .map_err(db_err(path))?;
            }
            Some((s, d)) if s == site.as_str() && d == device.as_str() => {}
            Some((s, d)) => {
                return Err(Error::WrongDevice {
                    path: path.into(),
                    found: format!("{s}/{d}"),
                    expected: format!("{site}/{device}"),
                });
            }
        }
        let head = read_head(&writer).map_err(db_err(path))?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let appended = Arc::new(Notify::new());
        let notify = appended.clone();
        let wpath = path.to_owned();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || {
                Writer {
                    conn: writer,
                    head,
                    path: wpath,
                    notify,
                }
                .run(rx)
            })
            .map_err(|e| Error::io("starting the outbox writer thread", e))?;
        Ok(Outbox {
            tx,
            reader: Arc::new(Mutex::new(reader)),
            path: Arc::new(path.to_owned()),
            appended,
        })
    }

    /// Appends events in order; returns once they are durable on disk.
    pub async fn append(&self, drafts: Vec<EventDraft>) -> Result<Vec<Appended>, Error> {
        let keyed = drafts
            .into_iter()
            .map(|draft| Keyed { key: None, draft })
            .collect();
        Ok(self
            .append_keyed(keyed)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Appends events in order, skipping those whose key was recorded before (`None` in the result);
    /// returns once the new ones are durable on disk.
    pub async fn append_keyed(&self, events: Vec<Keyed>) -> Result<Vec<Option<Appended>>, Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request::Append(events, reply))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Appends one event; returns once it is durable on disk.
    pub async fn append_one(&self, draft: EventDraft) -> Result<Appended, Error> {
        let mut done = self.append(vec![draft]).await?;
        done.pop().ok_or(Error::Closed)
    }

    /// Records a hub command as executed, applies what it changes and appends its answer, all in one
    /// transaction. `None`: this `cmd_id` was executed before, and nothing was done now.
    pub async fn record_command(&self, outcome: CommandOutcome) -> Result<Option<Appended>, Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request::Command(Box::new(outcome), reply))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// A change to the snapshot spool's index (with the image's `snapshot` event, for
    /// [`SpoolWrite::Add`]), in one transaction; returns where the event landed, if there was one.
    pub async fn spool(&self, write: SpoolWrite) -> Result<Option<Appended>, Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request::Spool(Box::new(write), reply))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Runs a query on the reader connection. Blocking: call from a blocking context.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Closed)?;
        f(&conn).map_err(db_err(&self.path))
    }

    /// Whether a command with this id was executed already. Blocking: call from a blocking context.
    pub fn command_executed(&self, cmd_id: &str) -> Result<bool, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Closed)?;
        conn.query_row("SELECT 1 FROM commands WHERE cmd_id = ?1", [cmd_id], |_| {
            Ok(())
        })
        .optional()
        .map(|found| found.is_some())
        .map_err(db_err(&self.path))
    }

    /// The hub committed everything up to `through_seq`: forget it.
    pub async fn ack(&self, through_seq: u64) -> Result<(), Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request::Ack(through_seq, reply))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Whether the writer thread takes requests: it answers between commits (for the watchdog).
    pub async fn ping(&self) -> Result<(), Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Request::Ping(reply))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)
    }

    /// Woken after every commit that added events.
    pub fn appended(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Up to `max_events` stored events from `from_seq` on, in order, stopping near `max_bytes`.
    /// Blocking: call from a blocking context.
    pub fn read_from(
        &self,
        from_seq: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Closed)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, prev, canonical FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db_err(&self.path))?;
        let mut rows = stmt
            .query(params![from_seq as i64, max_events as i64])
            .map_err(db_err(&self.path))?;
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.next().map_err(db_err(&self.path))? {
            let prev: Vec<u8> = row.get(1).map_err(db_err(&self.path))?;
            let canonical: Vec<u8> = row.get(2).map_err(db_err(&self.path))?;
            bytes += canonical.len() + 80;
            out.push(StoredEvent {
                seq: row.get::<_, i64>(0).map_err(db_err(&self.path))? as u64,
                prev: EventHash::from_slice(&prev).unwrap_or(GENESIS),
                canonical,
            });
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Backlog figures. Blocking: call from a blocking context.
    pub fn backlog(&self) -> Result<Backlog, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Closed)?;
        backlog(&conn).map_err(db_err(&self.path))
    }

    /// Backlog figures of an outbox file, read without starting a writer (for `sunlight-agent status`).
    pub fn inspect(path: &Path) -> Result<Backlog, Error> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err(path))?;
        backlog(&conn).map_err(db_err(path))
    }

    /// `PRAGMA integrity_check` on the reader connection: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, Error> {
        let conn = self.reader.lock().map_err(|_| Error::Closed)?;
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(db_err(&self.path))
    }
}

fn backlog(conn: &Connection) -> rusqlite::Result<Backlog> {
    let head = read_head(conn)?;
    let oldest_ms = conn
        .query_row(
            "SELECT created_ms FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [head.acked as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Backlog {
        head_seq: head.seq,
        acked_seq: head.acked,
        events: head.seq.saturating_sub(head.acked),
        bytes: head.bytes,
        oldest_ms,
    })
}

struct Writer {
    conn: Connection,
    head: Head,
    path: PathBuf,
    notify: Arc<Notify>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            if let Request::Ping(reply) = first {
                let _ = reply.send(());
                continue;
            }
            let mut group = vec![first];
            let mut events = group_events(&group[0]);
            let mut pings = Vec::new();
            while events < GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(Request::Ping(reply)) => pings.push(reply),
                    Ok(req) => {
                        events += group_events(&req);
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            for reply in pings {
                let _ = reply.send(());
            }
        }
    }

    /// Writes a group in one transaction. On failure nothing of it is kept and every waiter is told.
    fn commit_group(&mut self, group: Vec<Request>) {
        let before = Head {
            seq: self.head.seq,
            hash: self.head.hash,
            acked: self.head.acked,
            bytes: self.head.bytes,
        };
        let result = self.write(&group);
        let added = self.head.seq > before.seq;
        match result {
            Ok(appended) => {
                // One result per appended item or command, in group order.
                let mut results = appended.into_iter();
                for req in group {
                    match req {
                        Request::Append(items, reply) => {
                            let mine = results.by_ref().take(items.len()).collect();
                            let _ = reply.send(Ok(mine));
                        }
                        Request::Ack(_, reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Request::Command(_, reply) | Request::Spool(_, reply) => {
                            let _ = reply.send(Ok(results.next().flatten()));
                        }
                        Request::Ping(reply) => {
                            let _ = reply.send(());
                        }
                    }
                }
                if added {
                    self.notify.notify_one();
                }
            }
            Err(e) => {
                self.head = before;
                tracing::error!(path = %self.path.display(), error = %e, "outbox commit failed; nothing of this group was recorded");
                for req in group {
                    let err = Error::Store(e.to_string());
                    match req {
                        Request::Append(_, reply) => {
                            let _ = reply.send(Err(err));
                        }
                        Request::Ack(_, reply) => {
                            let _ = reply.send(Err(err));
                        }
                        Request::Command(_, reply) | Request::Spool(_, reply) => {
                            let _ = reply.send(Err(err));
                        }
                        Request::Ping(reply) => {
                            let _ = reply.send(());
                        }
                    }
                }
            }
        }
    }

    fn write(&mut self, group: &[Request]) -> rusqlite::Result<Vec<Option<Appended>>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut appended = Vec::new();
        let now = now_ms();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (seq, prev, hash, kind, created_ms, canonical) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut delete = tx
                .prepare_cached("DELETE FROM events WHERE seq <= ?1 RETURNING length(canonical)")?;
            let mut dedup =
                tx.prepare_cached("INSERT OR IGNORE INTO dedup (key, seq) VALUES (?1, ?2)")?;
            let mut executed = tx.prepare_cached(
                "INSERT OR IGNORE INTO commands (cmd_id, kind, ok, seq, executed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for req in group {
                match req {
                    Request::Append(items, _) => {
                        for Keyed { key, draft } in items {
                            let seq = self.head.seq + 1;
                            if let Some(key) = key {
                                if dedup.execute(params![key, seq as i64])? == 0 {
                                    appended.push(None);
                                    continue;
                                }
                            }
                            let done = insert_event(&mut insert, &mut self.head, draft, now)?;
                            appended.push(Some(done));
                        }
                    }
                    Request::Command(c, _) => {
                        let seq = self.head.seq + 1;
                        let first = executed
                            .execute(params![c.cmd_id, c.kind, c.ok, seq as i64, now])?
                            == 1;
                        if !first {
                            appended.push(None);
                            continue;
                        }
                        if let Some((roster, source)) = &c.roster {
                            crate::roster::store(&tx, roster, source)?;
                        }
                        if let Some((calendar, source)) = &c.calendar {
                            crate::calendar::store(&tx, calendar, source)?;
                        }
                        if let Some((row, snapshot)) = &c.snapshot {
                            crate::spool::insert_row(&tx, row, now)?;
                            insert_event(&mut insert, &mut self.head, snapshot, now)?;
                        }
                        let done = insert_event(&mut insert, &mut self.head, &c.result, now)?;
                        appended.push(Some(done));
                    }
                    Request::Spool(write, _) => {
                        let event = crate::spool::apply(&tx, write, now)?;
                        let done = match event {
                            Some(draft) => {
                                Some(insert_event(&mut insert, &mut self.head, draft, now)?)
                            }
                            None => None,
                        };
                        appended.push(done);
                    }
                    Request::Ping(_) => {}
                    Request::Ack(through, _) => {
                        let through = (*through).min(self.head.seq);
                        if through > self.head.acked {
                            let freed: i64 = delete
                                .query_map([through as i64], |r| r.get::<_, i64>(0))?
                                .collect::<rusqlite::Result<Vec<i64>>>()?
                                .into_iter()
                                .sum();
                            self.head.bytes = self.head.bytes.saturating_sub(freed as u64);
                            self.head.acked = through;
                        }
                    }
                }
            }
        }
        tx.execute(
            "UPDATE head SET seq = ?1, hash = ?2, acked = ?3, bytes = ?4 WHERE id = 1",
            params![
                self.head.seq as i64,
                &self.head.hash.0[..],
                self.head.acked as i64,
                self.head.bytes as i64
            ],
        )?;
        tx.commit()?;
        Ok(appended)
    }
}

/// Inserts one event after the chain head and moves the head.
fn insert_event(
    insert: &mut rusqlite::CachedStatement<'_>,
    head: &mut Head,
    draft: &EventDraft,
    now: i64,
) -> rusqlite::Result<Appended> {
    let seq = head.seq + 1;
    let canonical = draft.canonical(seq);
    let hash = EventHash::next(&head.hash, &canonical);
    insert.execute(params![
        seq as i64,
        &head.hash.0[..],
        &hash.0[..],
        draft.kind().as_str(),
        now,
        &canonical
    ])?;
    head.bytes += canonical.len() as u64;
    head.seq = seq;
    head.hash = hash;
    Ok(Appended { seq, hash })
}

fn group_events(req: &Request) -> usize {
    match req {
        Request::Append(items, _) => items.len(),
        Request::Ack(..) | Request::Command(..) | Request::Spool(..) => 1,
        Request::Ping(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> (SiteId, DeviceId) {
        (
            SiteId::new("suixian-shangshi").unwrap(),
            DeviceId::new("box-01").unwrap(),
        )
    }

    fn punch(n: u32) -> EventDraft {
        let body = json!({"staff_id": format!("{n:04}"), "direction": "in", "method": "card", "source": "t1"});
        EventDraft::new("punch", "2026-11-23T08:29:01.120+08:00", &body).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let (site, device) = ids();
        let last = {
            let outbox = Outbox::open(&path, &site, &device).unwrap();
            let a = outbox.append_one(punch(1)).await.unwrap();
            let b = outbox.append(vec![punch(2), punch(3)]).await.unwrap();
            assert_eq!((a.seq, b[0].seq, b[1].seq), (1, 2, 3));
            let stored = tokio::task::spawn_blocking({
                let o = outbox.clone();
                move || o.read_from(1, 100, usize::MAX)
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(stored[0].prev, GENESIS);
            assert_eq!(stored[1].prev, a.hash);
            assert_eq!(
                EventHash::next(&stored[2].prev, &stored[2].canonical),
                b[1].hash
            );
            b[1]
        };
        let outbox = Outbox::open(&path, &site, &device).unwrap();
        let next = outbox.append_one(punch(4)).await.unwrap();
        assert_eq!(next.seq, 4);
        let stored = outbox.read_from(4, 1, usize::MAX).unwrap();
        assert_eq!(stored[0].prev, last.hash);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits_and_get_unique_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let (site, device) = ids();
        let outbox = Outbox::open(&dir.path().join("o.db"), &site, &device).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let o = outbox.clone();
                tokio::spawn(async move { o.append_one(punch(n)).await.unwrap().seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        assert_eq!(outbox.integrity_check().unwrap(), "ok");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_delete_and_backlog_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (site, device) = ids();
        let path = dir.path().join("o.db");
        let outbox = Outbox::open(&path, &site, &device).unwrap();
        outbox.append((0..10).map(punch).collect()).await.unwrap();
        let full = outbox.backlog().unwrap();
        assert_eq!((full.head_seq, full.acked_seq, full.events), (10, 0, 10));
        outbox.ack(4).await.unwrap();
        let after = outbox.backlog().unwrap();
        assert_eq!((after.acked_seq, after.events), (4, 6));
        assert!(after.bytes < full.bytes && after.bytes > 0);
        assert_eq!(outbox.read_from(1, 100, usize::MAX).unwrap()[0].seq, 5);
        // An ack beyond the head is clamped; a stale ack changes nothing.
        outbox.ack(99).await.unwrap();
        outbox.ack(2).await.unwrap();
        let done = Outbox::inspect(&path).unwrap();
        assert_eq!((done.acked_seq, done.events, done.bytes), (10, 0, 0));
        assert_eq!(outbox.append_one(punch(11)).await.unwrap().seq, 11);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_keyed_event_is_recorded_once_even_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (site, device) = ids();
        let path = dir.path().join("o.db");
        let keyed = |k: &str, n| Keyed {
            key: Some(k.into()),
            draft: punch(n),
        };
        {
            let outbox = Outbox::open(&path, &site, &device).unwrap();
            let got = outbox
                .append_keyed(vec![keyed("a", 1), keyed("b", 2), keyed("a", 3)])
                .await
                .unwrap();
            assert_eq!(
                got.iter().map(|a| a.map(|a| a.seq)).collect::<Vec<_>>(),
                [Some(1), Some(2), None]
            );
        }
        let outbox = Outbox::open(&path, &site, &device).unwrap();
        let got = outbox
            .append_keyed(vec![keyed("b", 4), keyed("c", 5)])
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|a| a.map(|a| a.seq)).collect::<Vec<_>>(),
            [None, Some(3)]
        );
        // Unkeyed events are never deduplicated.
        assert_eq!(
            outbox.append(vec![punch(6), punch(6)]).await.unwrap().len(),
            2
        );
    }

    fn command(id: &str) -> CommandOutcome {
        let body = json!({"cmd_id": id, "ok": false, "detail": "not supported yet"});
        CommandOutcome {
            cmd_id: id.into(),
            kind: "restart".into(),
            ok: false,
            result: EventDraft::new("cmd_result", "2026-11-23T08:29:01.120+08:00", &body).unwrap(),
            roster: None,
            snapshot: None,
            calendar: None,
        }
    }

    /// Commands share group commits with appends: each caller gets its own result, a repeated id
    /// appends nothing, and the chain stays gap-free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_and_appends_in_one_group_get_their_own_results() {
        let dir = tempfile::tempdir().unwrap();
        let (site, device) = ids();
        let outbox = Outbox::open(&dir.path().join("o.db"), &site, &device).unwrap();
        let appends: Vec<_> = (0..50)
            .map(|n| {
                let o = outbox.clone();
                tokio::spawn(async move { o.append(vec![punch(n), punch(n)]).await.unwrap() })
            })
            .collect();
        let commands: Vec<_> = (0..20)
            .map(|n| {
                let o = outbox.clone();
                let id = format!("c{}", n % 5);
                tokio::spawn(
                    async move { (id.clone(), o.record_command(command(&id)).await.unwrap()) },
                )
            })
            .collect();
        let mut seqs = Vec::new();
        for t in appends {
            let got = t.await.unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(
                got[1].seq,
                got[0].seq + 1,
                "one request's events stay together"
            );
            seqs.extend(got.iter().map(|a| a.seq));
        }
        let mut executed = std::collections::BTreeMap::new();
        for t in commands {
            let (id, got) = t.await.unwrap();
            if let Some(a) = got {
                assert!(executed.insert(id, a.seq).is_none(), "executed twice");
                seqs.push(a.seq);
            }
        }
        assert_eq!(executed.len(), 5);
        seqs.sort();
        assert_eq!(seqs, (1..=105).collect::<Vec<_>>());
        for (id, seq) in &executed {
            assert!(outbox.command_executed(id).unwrap());
            let row = outbox.read_from(*seq, 1, usize::MAX).unwrap();
            let text = String::from_utf8(row[0].canonical.clone()).unwrap();
            assert!(text.contains("cmd_result") && text.contains(&format!("\"cmd_id\":\"{id}\"")));
        }
        assert!(!outbox.command_executed("c9").unwrap());
        assert_eq!(outbox.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn another_boxs_outbox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let (site, device) = ids();
        drop(Outbox::open(&path, &site, &device).unwrap());
        let err = Outbox::open(&path, &site, &DeviceId::new("box-02").unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("not to this box"), "{err}");
    }
}
