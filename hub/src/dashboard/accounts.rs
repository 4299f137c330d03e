//! Dashboard accounts and sessions, in the hub's store: users with argon2id password hashes and a
//! role (county supervisor, township head or unit chief, technician, admin), and server-side
//! sessions. A session id is 32 random bytes from the OS; the store keeps only its SHA-256, so a
//! copy of the database opens no session. Each session carries its own CSRF token.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dashboard_users (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    role TEXT NOT NULL, site TEXT, unit TEXT, disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES dashboard_users(id),
    csrf TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dashboard_sessions_by_user ON dashboard_sessions (user_id);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES dashboard_users(id),
    label TEXT NOT NULL, token_hash BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL, revoked_ms INTEGER);
";

/// What API tokens start with, so that one found in a log or a script is recognisable.
pub const API_TOKEN_PREFIX: &str = "slt_";

/// How long a session lasts after sign-in (a working day and then some); no sliding renewal.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// Creates the tables if they are missing (the hub and the `user` command both call this).
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// What a user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// 县监察室: every site, every page.
    Supervisor,
    /// 乡镇负责人 / 科室负责人: one site, optionally one unit of it.
    Head,
    /// 运维: the fleet page (boxes, health, alarms) of every site.
    Technician,
    /// Everything a supervisor sees, and the accounts page.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Supervisor, Role::Head, Role::Technician, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Supervisor => "supervisor",
            Role::Head => "head",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn zh(self) -> &'static str {
        match self {
            Role::Supervisor => "监察员",
            Role::Head => "负责人",
            Role::Technician => "运维",
            Role::Admin => "管理员",
        }
    }
}

/// A user as the dashboard knows them after sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Set for a head: the only site they see.
    pub site: Option<String>,
    /// Optionally set for a head: the only unit of that site they see.
    pub unit: Option<String>,
    pub disabled: bool,
}

/// A new account, checked by [`NewUser::validate`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub site: Option<String>,
    pub unit: Option<String>,
}

impl NewUser {
    /// Says what is wrong, in words an admin can act on.
    pub fn validate(&self, password: &str) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err("the name must be 1 to 64 characters".into());
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("the name may not contain spaces or control characters".into());
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        match self.role {
            Role::Head if blank(&self.site) => {
                return Err("a head needs the site they oversee (--site)".into());
            }
            Role::Head => {}
            _ if !blank(&self.site) || !blank(&self.unit) => {
                return Err(format!(
                    "a {} sees every site: give a site and unit only to a head",
                    self.role.as_str()
                ));
            }
            _ => {}
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(format!(
                "the password must have at least {MIN_PASSWORD} characters"
            ));
        }
        Ok(())
    }
}

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(String),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Hashes a password with argon2id (default parameters) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the name is unknown, so that a wrong name takes as long as a
/// wrong password (no user enumeration by timing).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("sunlight-decoy-password").unwrap_or_default())
}

/// Adds an account. `by` is who did it (recorded in the audit log by the caller).
pub fn create(
    conn: &Connection,
    user: &NewUser,
    password: &str,
    by: &str,
) -> Result<i64, CreateError> {
    user.validate(password).map_err(CreateError::Invalid)?;
    let name = user.name.trim();
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM dashboard_users WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?;
    if exists {
        return Err(CreateError::Exists(name.to_owned()));
    }
    let hash = hash_password(password).map_err(CreateError::Invalid)?;
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    conn.execute(
        "INSERT INTO dashboard_users (name, password_hash, role, site, unit, created_ms, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            name,
            hash,
            user.role.as_str(),
            clean(&user.site),
            clean(&user.unit),
            now_ms(),
            by
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        // An unknown role (a row edited by hand) sees as little as possible.
        role: Role::parse(&role).unwrap_or(Role::Technician),
        site: r.get(3)?,
        unit: r.get(4)?,
        disabled: r.get(5)?,
    })
}

/// Every account, by name.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<User>> {
    conn.prepare_cached(
        "SELECT id, name, role, site, unit, disabled FROM dashboard_users ORDER BY name",
    )?
    .query_map([], user_row)?
    .collect()
}

/// The account of a name with its stored hash, for [`check`] (a quick read: the slow hash check
/// runs outside the store's lock).
pub fn lookup(conn: &Connection, name: &str) -> rusqlite::Result<Option<(User, String)>> {
    conn.query_row(
        "SELECT id, name, role, site, unit, disabled, password_hash FROM dashboard_users WHERE name = ?1",
        [name.trim()],
        |r| Ok((user_row(r)?, r.get(6)?)),
    )
    .optional()
}

/// Checks a password against what [`lookup`] found. `None` for a wrong name, a wrong password or a
/// disabled account alike (the sign-in page says the same for all three).
pub fn check(found: Option<(User, String)>, password: &str) -> Option<User> {
    match found {
        Some((user, hash)) => (verify_password(password, &hash) && !user.disabled).then_some(user),
        None => {
            let _ = verify_password(password, decoy_hash());
            None
        }
    }
}

/// [`lookup`] and [`check`] in one.
pub fn authenticate(
    conn: &Connection,
    name: &str,
    password: &str,
) -> rusqlite::Result<Option<User>> {
    Ok(check(lookup(conn, name)?, password))
}

/// Disables or re-enables an account; disabling ends its sessions. Returns false for no such user.
pub fn set_disabled(conn: &Connection, user_id: i64, disabled: bool) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE dashboard_users SET disabled = ?2 WHERE id = ?1",
        params![user_id, disabled],
    )?;
    if disabled {
        conn.execute(
            "DELETE FROM dashboard_sessions WHERE user_id = ?1",
            [user_id],
        )?;
    }
    Ok(n > 0)
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// 32 random bytes from the OS, hex-encoded.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn id_hash(session_id: &str) -> Vec<u8> {
    Sha256::digest(session_id.as_bytes()).to_vec()
}

/// A signed-in session: who, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires_ms: i64,
}

/// Opens a session for `user`; returns the id for the cookie and the session.
pub fn start_session(
    conn: &Connection,
    user: &User,
    now_ms: i64,
) -> Result<(String, Session), String> {
    let id = random_token().map_err(|e| format!("no randomness from the OS: {e}"))?;
    let csrf = random_token().map_err(|e| format!("no randomness from the OS: {e}"))?;
    let expires_ms = now_ms + SESSION_MS;
    // Expired sessions are swept as new ones start.
    conn.execute(
        "DELETE FROM dashboard_sessions WHERE expires_ms <= ?1",
        [now_ms],
    )
    .map_err(|e| e.to_string())?;
    conn.execute(
        "INSERT INTO dashboard_sessions (id_hash, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id_hash(&id), user.id, csrf, now_ms, expires_ms],
    )
    .map_err(|e| e.to_string())?;
    Ok((
        id,
        Session {
            user: user.clone(),
            csrf,
            expires_ms,
        },
    ))
}

/// The live session with this id, if any (unknown, expired or of a disabled user: none).
pub fn session(
    conn: &Connection,
    session_id: &str,
    now_ms: i64,
) -> rusqlite::Result<Option<Session>> {
    if session_id.len() != 64 || !session_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT u.id, u.name, u.role, u.site, u.unit, u.disabled, s.csrf, s.expires_ms
         FROM dashboard_sessions s JOIN dashboard_users u ON u.id = s.user_id
         WHERE s.id_hash = ?1 AND s.expires_ms > ?2 AND u.disabled = 0",
    )?
    .query_row(params![id_hash(session_id), now_ms], |r| {
        Ok(Session {
            user: user_row(r)?,
            csrf: r.get(6)?,
            expires_ms: r.get(7)?,
        })
    })
    .optional()
}

/// Ends a session (sign-out).
pub fn end_session(conn: &Connection, session_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM dashboard_sessions WHERE id_hash = ?1",
        [id_hash(session_id)],
    )?;
    Ok(())
}

/// An API token as listed (the token itself is shown once, at creation, and never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub user: String,
    pub label: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// Makes an API token for the account `user_name`: returns its id and the token, which is shown
/// once; the store keeps only its SHA-256. The token acts with the account's role and scope and
/// stops working when the account is disabled or the token revoked.
pub fn create_api_token(
    conn: &Connection,
    user_name: &str,
    label: &str,
    by: &str,
    now_ms: i64,
) -> Result<(i64, String), String> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(
            "the label must be 1 to 64 characters, e.g. the script or system using it".into(),
        );
    }
    let user_id: Option<i64> = conn
        .query_row(
            "SELECT id FROM dashboard_users WHERE name = ?1",
            [user_name.trim()],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    let user_id = user_id.ok_or_else(|| {
        format!("no account named {user_name:?}: add it first with `sunlight-hub user add`")
    })?;
    let token = format!(
        "{API_TOKEN_PREFIX}{}",
        random_token().map_err(|e| format!("no randomness from the OS: {e}"))?
    );
    conn.execute(
        "INSERT INTO api_tokens (user_id, label, token_hash, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, label, id_hash(&token), now_ms, by],
    )
    .map_err(|e| e.to_string())?;
    Ok((conn.last_insert_rowid(), token))
}

/// The account an API token acts for: none for an unknown or revoked token or a disabled account.
pub fn api_token_user(conn: &Connection, token: &str) -> rusqlite::Result<Option<User>> {
    let Some(hex_part) = token.strip_prefix(API_TOKEN_PREFIX) else {
        return Ok(None);
    };
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT u.id, u.name, u.role, u.site, u.unit, u.disabled
         FROM api_tokens t JOIN dashboard_users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.revoked_ms IS NULL AND u.disabled = 0",
    )?
    .query_row([id_hash(token)], user_row)
    .optional()
}

/// Every API token, newest first.
pub fn list_api_tokens(conn: &Connection) -> rusqlite::Result<Vec<ApiToken>> {
    conn.prepare(
        "SELECT t.id, u.name, t.label, t.created_ms, t.revoked_ms
         FROM api_tokens t JOIN dashboard_users u ON u.id = t.user_id ORDER BY t.id DESC",
    )?
    .query_map([], |r| {
        Ok(ApiToken {
            id: r.get(0)?,
            user: r.get(1)?,
            label: r.get(2)?,
            created_ms: r.get(3)?,
            revoked_ms: r.get(4)?,
        })
    })?
    .collect()
}

/// Revokes a token; false when there is no such live token.
pub fn revoke_api_token(conn: &Connection, id: i64, now_ms: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE api_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms],
    )? == 1)
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        ensure_schema(&c).unwrap();
        c
    }

    fn head(site: &str) -> NewUser {
        NewUser {
            name: "shangshi-head".into(),
            role: Role::Head,
            site: Some(site.into()),
            unit: None,
        }
    }

    #[test]
    fn a_user_signs_in_with_the_right_password_only() {
        let c = db();
        create(
            &c,
            &head("suixian-shangshi"),
            "correct horse battery",
            "test",
        )
        .unwrap();
        let u = authenticate(&c, "shangshi-head", "correct horse battery")
            .unwrap()
            .expect("signed in");
        assert_eq!(
            (u.role, u.site.as_deref()),
            (Role::Head, Some("suixian-shangshi"))
        );
        assert!(
            authenticate(&c, "shangshi-head", "wrong password!")
                .unwrap()
                .is_none()
        );
        assert!(
            authenticate(&c, "nobody", "correct horse battery")
                .unwrap()
                .is_none()
        );
        let stored: String = c
            .query_row("SELECT password_hash FROM dashboard_users", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
    }

    #[test]
    fn bad_accounts_are_refused_with_a_reason() {
        let c = db();
        let mut no_site = head("x");
        no_site.site = None;
        assert!(matches!(
            create(&c, &no_site, "long enough password", "t"),
            Err(CreateError::Invalid(m)) if m.contains("site")
        ));
        let scoped_supervisor = NewUser {
            name: "sup".into(),
            role: Role::Supervisor,
            site: Some("x".into()),
            unit: None,
        };
        assert!(create(&c, &scoped_supervisor, "long enough password", "t").is_err());
        assert!(matches!(
            create(&c, &head("x"), "short", "t"),
            Err(CreateError::Invalid(m)) if m.contains("at least")
        ));
        create(&c, &head("x"), "long enough password", "t").unwrap();
        assert!(matches!(
            create(&c, &head("y"), "long enough password", "t"),
            Err(CreateError::Exists(_))
        ));
    }

    #[test]
    fn sessions_expire_end_and_die_with_a_disabled_user() {
        let c = db();
        let id = create(&c, &head("s"), "long enough password", "t").unwrap();
        let user = authenticate(&c, "shangshi-head", "long enough password")
            .unwrap()
            .unwrap();
        let (sid, s) = start_session(&c, &user, 1_000).unwrap();
        assert_eq!(sid.len(), 64);
        assert_eq!(s.csrf.len(), 64);
        assert_ne!(sid, s.csrf);
        assert!(session(&c, &sid, 2_000).unwrap().is_some());
        assert!(
            session(&c, &sid, 1_000 + SESSION_MS).unwrap().is_none(),
            "expired"
        );
        assert!(session(&c, "00", 2_000).unwrap().is_none());
        // The store holds no usable id.
        let stored: Vec<u8> = c
            .query_row("SELECT id_hash FROM dashboard_sessions", [], |r| r.get(0))
            .unwrap();
        assert_ne!(hex::encode(stored), sid);
        end_session(&c, &sid).unwrap();
        assert!(session(&c, &sid, 2_000).unwrap().is_none(), "signed out");
        let (sid, _) = start_session(&c, &user, 1_000).unwrap();
        set_disabled(&c, id, true).unwrap();
        assert!(session(&c, &sid, 2_000).unwrap().is_none(), "disabled");
        assert!(
            authenticate(&c, "shangshi-head", "long enough password")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
