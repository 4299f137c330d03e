//! The roster (名册) cached on the box: the office's clerks, their windows, units, A/B roles (AB角),
//! kiosk PIN hashes and card numbers, as the hub exports them (`sunlight-hub roster export`).
//!
//! It arrives as a hub `set_roster` command ([`crate::commands`]) or from a file on a USB stick
//! (`sunlight-agent roster load FILE`), is checked ([`Roster::parse`]) and kept in the outbox
//! database (table `roster`, one row, replaced whole in one transaction), so kiosk punches are
//! verified offline and a half-written roster never exists. The kiosk reads it through a
//! [`RosterCache`], which reloads it whenever its version changes — a `roster load` takes effect at
//! the next punch without a restart. PINs are only ever held as argon2 hashes.

use crate::error::Error;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The roster's table in the outbox database.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS roster (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, site TEXT NOT NULL,
    loaded_ms INTEGER NOT NULL, source TEXT NOT NULL, json TEXT NOT NULL);
";

/// The shortest kiosk PIN a roster may carry, in digits (issue 14, item 8).
pub const MIN_PIN_DIGITS: u32 = 6;

/// Longest staff number or card number accepted.
pub const MAX_ID: usize = 32;

/// One clerk, as the hub exports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// 工号: the staff number clerks type at the kiosk.
    #[serde(default)]
    pub staff_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub window: String,
    /// "A" holds the window; "B" is its substitute (AB角).
    #[serde(default)]
    pub role: String,
    /// The kiosk PIN as an argon2 PHC string; absent: this clerk punches by card only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_hash: Option<String>,
    /// How many digits the PIN has (hubs since the length rule send it): a roster with a PIN
    /// shorter than [`MIN_PIN_DIGITS`] is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_digits: Option<u32>,
    /// The number a USB card reader types for this clerk's card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_no: Option<String>,
}

/// A checked roster of one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub staff: Vec<Staff>,
}

impl Roster {
    /// Reads and checks a roster (the hub's export, or a command's args) for the box of `site`.
    /// The reason it is refused names the entry and the fix.
    pub fn parse(text: &[u8], site: &str) -> Result<Roster, String> {
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let roster: Roster = serde_json::from_slice(text)
            .map_err(|e| format!("the roster is not readable JSON of the hub's export: {e}"))?;
        roster.checked(site)
    }

    /// Like [`Roster::parse`], from a JSON value (a command's `args`).
    pub fn from_value(value: serde_json::Value, site: &str) -> Result<Roster, String> {
        let roster: Roster = serde_json::from_value(value)
            .map_err(|e| format!("the roster is not readable JSON of the hub's export: {e}"))?;
        roster.checked(site)
    }

    /// Trims ids, drops empty optional fields, and checks site, staff numbers, roles, hashes and
    /// cards.
    fn checked(mut self, site: &str) -> Result<Roster, String> {
        if self.site != site {
            return Err(format!(
                "the roster is for site {:?}, this box is at {site:?}; export the roster of {site} (sunlight-hub roster export --site {site})",
                self.site
            ));
        }
        if self.staff.is_empty() {
            return Err("the roster has no staff; the cached roster is kept".into());
        }
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut cards: HashMap<String, String> = HashMap::new();
        for (i, s) in self.staff.iter_mut().enumerate() {
            s.staff_id = s.staff_id.trim().to_owned();
            s.card_no = s
                .card_no
                .take()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty());
            s.pin_hash = s.pin_hash.take().filter(|h| !h.trim().is_empty());
            if s.staff_id.is_empty() {
                return Err(format!("staff entry #{} has no staff_id", i + 1));
            }
            let who = format!("staff {}", s.staff_id);
            if s.staff_id.chars().count() > MAX_ID {
                return Err(format!(
                    "{who}: staff_id is longer than {MAX_ID} characters"
                ));
            }
            if let Some(other) = s.site.as_deref()
                && other != site
            {
                return Err(format!("{who} belongs to site {other:?}, not {site:?}"));
            }
            if s.role != "A" && s.role != "B" {
                return Err(format!("{who}: role {:?} must be \"A\" or \"B\"", s.role));
            }
            if let Some(previous) = ids.insert(s.staff_id.clone(), i) {
                return Err(format!(
                    "{who} appears twice (entries #{} and #{})",
                    previous + 1,
                    i + 1
                ));
            }
            if let (Some(_), Some(digits)) = (&s.pin_hash, s.pin_digits)
                && digits < MIN_PIN_DIGITS
            {
                return Err(format!(
                    "{who} ({}): the kiosk PIN has {digits} digits; a PIN needs at least \
                     {MIN_PIN_DIGITS}. Give this clerk a longer PIN at the hub (sunlight-hub roster \
                     import) and send the roster again",
                    s.name
                ));
            }
            if let Some(hash) = &s.pin_hash {
                let parsed = argon2::PasswordHash::new(hash)
                    .map_err(|e| format!("{who}: pin_hash is not a PHC string ({e})"))?;
                if !parsed.algorithm.as_str().starts_with("argon2") {
                    return Err(format!(
                        "{who}: pin_hash uses {}, not argon2",
                        parsed.algorithm
                    ));
                }
            }
            if let Some(card) = &s.card_no {
                if card.len() > MAX_ID || !card.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(format!(
                        "{who}: card_no {card:?} must be 1 to {MAX_ID} letters or digits"
                    ));
                }
                if let Some(holder) = cards.insert(card.clone(), s.staff_id.clone()) {
                    return Err(format!(
                        "card {card} is given to both staff {holder} and {}",
                        s.staff_id
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// What a PIN check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    Match,
    Wrong,
    /// The clerk has no PIN on the roster (card only).
    NotSet,
}

/// Checks a typed PIN against the clerk's argon2 hash. Slow by design (tens of milliseconds):
/// call from a blocking context.
pub fn verify_pin(staff: &Staff, pin: &str) -> PinCheck {
    use argon2::PasswordVerifier;
    let Some(hash) = staff.pin_hash.as_deref() else {
        return PinCheck::NotSet;
    };
    let Ok(parsed) = argon2::PasswordHash::new(hash) else {
        tracing::error!(staff_id = %staff.staff_id, "the roster holds an unreadable PIN hash; treating the PIN as not set");
        return PinCheck::NotSet;
    };
    match argon2::Argon2::default().verify_password(pin.as_bytes(), &parsed) {
        Ok(()) => PinCheck::Match,
        Err(_) => PinCheck::Wrong,
    }
}

/// A roster as cached, with its lookups.
#[derive(Debug)]
pub struct RosterIndex {
    /// Goes up by one with every replacement.
    pub version: u64,
    /// Unix ms when it was stored on this box.
    pub loaded_ms: i64,
    /// Where it came from: `command <cmd_id>` or `file <path>`.
    pub source: String,
    roster: Roster,
    by_id: HashMap<String, usize>,
    by_card: HashMap<String, usize>,
}

impl RosterIndex {
    pub fn new(roster: Roster, version: u64, loaded_ms: i64, source: String) -> RosterIndex {
        let by_id = roster
            .staff
            .iter()
            .enumerate()
            .map(|(i, s)| (s.staff_id.clone(), i))
            .collect();
        let by_card = roster
            .staff
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.card_no.clone().map(|c| (c, i)))
            .collect();
        RosterIndex {
            version,
            loaded_ms,
            source,
            roster,
            by_id,
            by_card,
        }
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The clerk with this staff number.
    pub fn staff(&self, staff_id: &str) -> Option<&Staff> {
        self.by_id.get(staff_id).map(|&i| &self.roster.staff[i])
    }

    /// The clerk holding this card.
    pub fn by_card(&self, card_no: &str) -> Option<&Staff> {
        self.by_card.get(card_no).map(|&i| &self.roster.staff[i])
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Replaces the stored roster (inside the caller's transaction). Returns the new version.
pub(crate) fn store(conn: &Connection, roster: &Roster, source: &str) -> rusqlite::Result<u64> {
    let json = serde_json::to_string(roster)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.query_row(
        "INSERT INTO roster (id, version, site, loaded_ms, source, json) VALUES (1, 1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET version = version + 1, site = ?1, loaded_ms = ?2, source = ?3, json = ?4
         RETURNING version",
        params![roster.site, now_ms(), source, json],
        |r| r.get::<_, i64>(0).map(|v| v as u64),
    )
}

fn stored_version(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    conn.query_row("SELECT version FROM roster WHERE id = 1", [], |r| {
        r.get::<_, i64>(0).map(|v| v as u64)
    })
    .optional()
}

/// The stored roster, or None when none was ever loaded. A stored roster that no longer reads is
/// logged and treated as none (punches are then kept and flagged, never refused).
fn read(conn: &Connection) -> rusqlite::Result<Option<RosterIndex>> {
    let row: Option<(i64, i64, String, String, String)> = conn
        .query_row(
            "SELECT version, loaded_ms, source, site, json FROM roster WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((version, loaded_ms, source, site, json)) = row else {
        return Ok(None);
    };
    match serde_json::from_str::<Roster>(&json) {
        Ok(roster) => Ok(Some(RosterIndex::new(
            roster,
            version as u64,
            loaded_ms,
            source,
        ))),
        Err(e) => {
            tracing::error!(%site, version, error = %e, "the cached roster is unreadable; load it again with 'sunlight-agent roster load'");
            Ok(None)
        }
    }
}

/// The kiosk's view of the stored roster: one read connection, and the roster parsed once per
/// version.
pub struct RosterCache {
    path: PathBuf,
    inner: Mutex<(Connection, Option<Arc<RosterIndex>>)>,
}

impl RosterCache {
    /// Opens the roster of the outbox database at `path` (the outbox must have been opened first).
    pub fn open(path: &Path) -> Result<RosterCache, Error> {
        let conn = crate::outbox::connect(path)?;
        let current = read(&conn).map_err(db_err(path))?.map(Arc::new);
        match &current {
            Some(r) => {
                tracing::info!(site = %r.roster.site, version = r.version, staff = r.roster.staff.len(), "roster loaded")
            }
            None => {
                tracing::warn!(
                    "no roster on this box yet: kiosk punches are kept and flagged unknown_staff until the hub sends one or 'sunlight-agent roster load' is run"
                )
            }
        }
        Ok(RosterCache {
            path: path.to_owned(),
            inner: Mutex::new((conn, current)),
        })
    }

    /// The current roster, reloaded when it was replaced since the last call. Blocking: call from
    /// a blocking context.
    pub fn current(&self) -> Result<Option<Arc<RosterIndex>>, Error> {
        let mut inner = self.inner.lock().map_err(|_| Error::Closed)?;
        let (conn, cached) = &mut *inner;
        let version = stored_version(conn).map_err(db_err(&self.path))?;
        if version != cached.as_ref().map(|r| r.version) {
            *cached = read(conn).map_err(db_err(&self.path))?.map(Arc::new);
            if let Some(r) = cached.as_ref() {
                tracing::info!(site = %r.roster.site, version = r.version, staff = r.roster.staff.len(), source = %r.source, "roster replaced");
            }
        }
        Ok(cached.clone())
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Db {
        path: path.to_owned(),
        source,
    }
}

/// `sunlight-agent roster load FILE`: checks the file and makes it the box's roster in one
/// transaction, whether or not the agent is running (a running agent uses it at the next punch).
/// Returns the stored roster's version.
pub fn load_file(db: &Path, site: &str, file: &Path) -> Result<(Roster, u64), Error> {
    let text =
        std::fs::read(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let roster = Roster::parse(&text, site).map_err(|detail| Error::Roster {
        path: file.to_owned(),
        detail,
    })?;
    if let Some(dir) = db.parent()
        && !dir.is_dir()
    {
        return Err(Error::io(
            format!(
                "the data directory {} does not exist; run 'sunlight-agent init' first",
                dir.display()
            ),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let mut conn = crate::outbox::connect(db)?;
    conn.execute_batch(SCHEMA).map_err(db_err(db))?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err(db))?;
    let version = store(&tx, &roster, &format!("file {}", file.display())).map_err(db_err(db))?;
    tx.commit().map_err(db_err(db))?;
    Ok((roster, version))
}

/// `sunlight-agent roster show`: the stored roster, read-only; None when there is none.
pub fn show(db: &Path) -> Result<Option<RosterIndex>, Error> {
    if !db.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err(db))?;
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'roster'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )
        .map_err(db_err(db))?;
    if !has_table {
        return Ok(None);
    }
    read(&conn).map_err(db_err(db))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub const SITE: &str = "suixian-shangshi";

    /// A cheap argon2id hash for tests (the hub uses the default parameters; verification reads
    /// the parameters from the hash, so both verify the same way).
    pub fn hash(pin: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"sunlight-test-salt").unwrap();
        argon
            .hash_password(pin.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    pub fn roster_json() -> serde_json::Value {
        json!({"site": SITE, "staff": [
            {"site": SITE, "staff_id": "0451", "name": "李明", "unit": "民政办", "window": "W1", "role": "A",
             "pin_hash": hash("1357"), "card_no": "0012345678"},
            {"site": SITE, "staff_id": "0452", "name": "王芳", "unit": "民政办", "window": "W1", "role": "B",
             "pin_hash": hash("2468")},
            {"staff_id": " 0453 ", "name": "赵强", "unit": "林业站", "window": "W2", "role": "A", "card_no": "  "},
        ]})
    }

    #[test]
    fn a_roster_saying_a_pin_is_short_is_refused_naming_the_clerk() {
        let with_digits = |digits: Option<u32>| {
            let mut v = roster_json();
            if let Some(d) = digits {
                v["staff"][1]["pin_digits"] = json!(d);
            }
            Roster::from_value(v, SITE)
        };
        let err = with_digits(Some(4)).unwrap_err();
        assert!(
            err.contains("staff 0452 (王芳)") && err.contains("at least 6"),
            "{err}"
        );
        // Six digits, or a hub from before the rule (no length): taken.
        assert!(with_digits(Some(6)).is_ok());
        assert!(with_digits(None).is_ok());
        // A length without a PIN says nothing.
        let mut v = roster_json();
        v["staff"][2]["pin_digits"] = json!(2);
        assert!(Roster::from_value(v, SITE).is_ok());
    }

    #[test]
    fn the_hubs_export_loads_and_looks_up() {
        let roster = Roster::from_value(roster_json(), SITE).unwrap();
        let index = RosterIndex::new(roster, 1, 0, "test".into());
        assert_eq!(index.staff("0451").map(|s| s.name.as_str()), Some("李明"));
        assert_eq!(
            index.by_card("0012345678").map(|s| s.staff_id.as_str()),
            Some("0451")
        );
        // Trimmed ids, blank cards dropped.
        let zhao = index.staff("0453").unwrap();
        assert_eq!(
            (zhao.card_no.as_deref(), zhao.pin_hash.as_deref()),
            (None, None)
        );
        assert!(index.staff("9999").is_none() && index.by_card("0451").is_none());
        // The file form (with a BOM, as Windows editors save it) reads the same.
        let mut file = b"\xEF\xBB\xBF".to_vec();
        file.extend(serde_json::to_vec(&roster_json()).unwrap());
        assert_eq!(Roster::parse(&file, SITE).unwrap(), *index.roster());
    }

    #[test]
    fn a_bad_roster_is_refused_with_the_reason() {
        let bad = |f: &dyn Fn(&mut serde_json::Value), expected: &str| {
            let mut v = roster_json();
            f(&mut v);
            let err = Roster::from_value(v, SITE).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        };
        bad(&|v| v["site"] = json!("suixian-lishan"), "this box is at");
        bad(
            &|v| v["staff"][1]["staff_id"] = json!(""),
            "#2 has no staff_id",
        );
        bad(
            &|v| {
                v["staff"][1].as_object_mut().unwrap().remove("staff_id");
            },
            "#2 has no staff_id",
        );
        bad(&|v| v["staff"][0]["role"] = json!("C"), "role \"C\"");
        bad(
            &|v| {
                v["staff"][0].as_object_mut().unwrap().remove("role");
            },
            "must be \"A\" or \"B\"",
        );
        bad(
            &|v| v["staff"][2]["staff_id"] = json!("0451"),
            "appears twice",
        );
        bad(
            &|v| v["staff"][1]["card_no"] = json!("0012345678"),
            "both staff",
        );
        bad(&|v| v["staff"][1]["pin_hash"] = json!("1234"), "PHC");
        bad(
            &|v| v["staff"][0]["site"] = json!("other"),
            "belongs to site",
        );
        bad(&|v| v["staff"] = json!([]), "no staff");
        bad(&|v| v["staff"] = json!("everyone"), "not readable");
        assert!(
            Roster::parse(b"{oops", SITE)
                .unwrap_err()
                .contains("not readable")
        );
    }

    #[test]
    fn pins_verify_against_the_hash() {
        let roster = Roster::from_value(roster_json(), SITE).unwrap();
        let index = RosterIndex::new(roster, 1, 0, "test".into());
        let li = index.staff("0451").unwrap();
        assert_eq!(verify_pin(li, "1357"), PinCheck::Match);
        assert_eq!(verify_pin(li, "1358"), PinCheck::Wrong);
        assert_eq!(verify_pin(li, ""), PinCheck::Wrong);
        assert_eq!(
            verify_pin(index.staff("0453").unwrap(), "1357"),
            PinCheck::NotSet
        );
        // A hash made with the hub's parameters (argon2 defaults) verifies too.
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"another-salt-16b").unwrap();
        let default = argon2::Argon2::default()
            .hash_password(b"0000", &salt)
            .unwrap()
            .to_string();
        let staff = Staff {
            pin_hash: Some(default),
            ..li.clone()
        };
        assert_eq!(verify_pin(&staff, "0000"), PinCheck::Match);
        assert_eq!(verify_pin(&staff, "1357"), PinCheck::Wrong);
    }

    fn write_roster(path: &Path, value: &serde_json::Value) {
        std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
    }

    #[test]
    fn a_loaded_roster_is_replaced_whole_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        assert!(show(&db).unwrap().is_none());
        let file = dir.path().join("roster.json");
        write_roster(&file, &roster_json());
        let (_, version) = load_file(&db, SITE, &file).unwrap();
        assert_eq!(version, 1);
        let cache = RosterCache::open(&db).unwrap();
        let first = cache.current().unwrap().unwrap();
        assert_eq!((first.version, first.roster().staff.len()), (1, 3));
        assert!(first.source.contains("roster.json"));

        // A new roster with one clerk less replaces the old one whole; the cache follows.
        let mut smaller = roster_json();
        smaller["staff"].as_array_mut().unwrap().pop();
        write_roster(&file, &smaller);
        assert_eq!(load_file(&db, SITE, &file).unwrap().1, 2);
        let second = cache.current().unwrap().unwrap();
        assert_eq!((second.version, second.roster().staff.len()), (2, 2));
        assert!(second.staff("0453").is_none());
        // Unchanged: the same parsed roster is handed out.
        assert!(Arc::ptr_eq(&second, &cache.current().unwrap().unwrap()));

        // A bad file changes nothing.
        let mut bad = roster_json();
        bad["site"] = json!("suixian-lishan");
        write_roster(&file, &bad);
        let err = load_file(&db, SITE, &file).unwrap_err().to_string();
        assert!(
            err.contains("roster.json") && err.contains("this box is at"),
            "{err}"
        );
        assert_eq!(cache.current().unwrap().unwrap().version, 2);

        // Reopened (a restart): the same roster.
        drop(cache);
        let shown = show(&db).unwrap().unwrap();
        assert_eq!((shown.version, shown.roster().staff.len()), (2, 2));
        let again = RosterCache::open(&db).unwrap().current().unwrap().unwrap();
        assert_eq!(again.roster(), shown.roster());
    }

    #[test]
    fn load_refuses_a_missing_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roster.json");
        write_roster(&file, &roster_json());
        let err = load_file(&dir.path().join("nope/outbox.db"), SITE, &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sunlight-agent init"), "{err}");
    }
}
