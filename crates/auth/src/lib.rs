//! Users, roles and bearer tokens.
//!
//! The user store is one JSON file in the data directory (`users.json`),
//! rewritten atomically (temporary file, fsync, rename) on every change.
//! Passwords are hashed with argon2id. Bearer tokens are stateless: an
//! expiry, the user's name and the user's *credential nonce*, signed with
//! HMAC-SHA256 under a key kept in the same file, so they survive a restart;
//! changing a password or deleting the user draws a new nonce (or removes
//! it), which revokes every token issued before.
//!
//! What a role may do is [`allowed`]: a pure function of the role and the
//! endpoint [`Group`]; the server maps each request to its group.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, cluster and user management included.
    SuperUser,
    /// Tables' data: inserts and queries, plus what a reader may do.
    Writer,
    /// Queries and describing tables and the node.
    Reader,
}

impl Role {
    /// The role's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Role::SuperUser => "super_user",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "super_user" => Some(Role::SuperUser),
            "writer" => Some(Role::Writer),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }
}

/// The endpoint groups roles are granted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Liveness (`/ping`): answers without a credential.
    Public,
    /// Issuing a token for oneself, changing one's own password.
    Own,
    /// Reading tables' definitions, node status, version, metrics, info.
    Describe,
    /// Running queries.
    Query,
    /// Inserting events.
    Insert,
    /// Creating, changing and dropping tables, segments and subscriptions.
    Schema,
    /// Watching and cancelling other users' queries, query history.
    Operations,
    /// Cluster initialisation and the internode calls.
    Cluster,
    /// Managing users.
    Users,
}

/// Every group, for tables and tests.
pub const GROUPS: [Group; 9] = [
    Group::Public,
    Group::Own,
    Group::Describe,
    Group::Query,
    Group::Insert,
    Group::Schema,
    Group::Operations,
    Group::Cluster,
    Group::Users,
];

/// Whether `role` may use the endpoints of `group`.
pub fn allowed(role: Role, group: Group) -> bool {
    match role {
        Role::SuperUser => true,
        Role::Writer => matches!(
            group,
            Group::Public | Group::Own | Group::Describe | Group::Query | Group::Insert
        ),
        Role::Reader => matches!(
            group,
            Group::Public | Group::Own | Group::Describe | Group::Query
        ),
    }
}

/// Who a request is from, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// User name.
    pub name: String,
    /// The user's role.
    pub role: Role,
}

/// Why an auth call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, or one that is malformed, wrong, expired or revoked.
    /// Deliberately one case: the answer must not tell which.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// The named user does not exist (only said to super users).
    NoSuchUser,
    /// A user of that name exists already.
    Exists,
    /// A name, password or role breaks the rules (the text says which).
    Invalid(String),
    /// The user file could not be written.
    Io(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Unauthenticated => f.write_str("missing or invalid credentials"),
            AuthError::Forbidden => f.write_str("this role may not do this"),
            AuthError::NoSuchUser => f.write_str("user not found"),
            AuthError::Exists => f.write_str("user already exists"),
            AuthError::Invalid(d) => f.write_str(d),
            AuthError::Io(d) => write!(f, "cannot save users: {d}"),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct User {
    role: Role,
    /// argon2id PHC string.
    hash: String,
    /// Changes with the password; tokens carry it, so a new one revokes them.
    nonce: String,
}

#[derive(Serialize, Deserialize)]
struct UserFile {
    version: u32,
    /// HMAC key of bearer tokens, base64.
    token_key: String,
    users: BTreeMap<String, User>,
}

/// Name of the user file in the data directory.
pub const USER_FILE: &str = "users.json";

/// Most remembered (user, password) pairs whose argon2 check passed.
const CACHE_MAX: usize = 4096;

/// The user store and token authority of one node.
pub struct AuthStore {
    path: PathBuf,
    forced: bool,
    token_ttl: Duration,
    rng: SystemRandom,
    key: hmac::Key,
    key_b64: String,
    users: RwLock<BTreeMap<String, User>>,
    /// A hash checked when the user does not exist, so that answers take as
    /// long for unknown users as for wrong passwords.
    dummy_hash: String,
    /// HMAC(user, password) of Basic credentials already verified, mapped to
    /// the nonce they were verified under: argon2 runs once per credential,
    /// not once per request.
    verified: Mutex<HashMap<Vec<u8>, String>>,
}

impl AuthStore {
    /// Opens (or starts) the user store in `data_dir`. `forced`: auth is on
    /// even before any user exists. `token_ttl`: lifetime of issued tokens.
    pub fn open(data_dir: &Path, forced: bool, token_ttl: Duration) -> Result<AuthStore, String> {
        let path = data_dir.join(USER_FILE);
        let rng = SystemRandom::new();
        let (key_bytes, users) = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: UserFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let key = STANDARD
                    .decode(f.token_key.as_bytes())
                    .map_err(|e| format!("{}: token_key: {e}", path.display()))?;
                (key, f.users)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rng.fill(&mut key).map_err(|_| "no system randomness")?;
                (key, BTreeMap::new())
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut pw = [0u8; 16];
        rng.fill(&mut pw).map_err(|_| "no system randomness")?;
        let store = AuthStore {
            path,
            forced,
            token_ttl,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key_bytes),
            key_b64: STANDARD.encode(&key_bytes),
            users: RwLock::new(users),
            dummy_hash: String::new(),
            verified: Mutex::new(HashMap::new()),
            rng,
        };
        let dummy_hash = store.hash(&URL_SAFE_NO_PAD.encode(pw))?;
        Ok(AuthStore {
            dummy_hash,
            ..store
        })
    }

    /// Whether requests need a credential: `--auth` was given or a user exists.
    pub fn enabled(&self) -> bool {
        self.forced || self.has_users()
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> bool {
        self.users.read().map(|u| !u.is_empty()).unwrap_or(true)
    }

    /// Lifetime of issued tokens.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// Creates a user. The first user of a node is always a super user and
    /// may be created without a credential; after that only a super user
    /// (`caller`) may create users. Returns the role given.
    pub fn register(
        &self,
        name: &str,
        password: &str,
        role: Role,
        caller: Option<&Principal>,
    ) -> Result<Role, AuthError> {
        valid_name(name)?;
        valid_password(password)?;
        let hash = self.hash(password).map_err(AuthError::Io)?;
        let nonce = self.nonce()?;
        let mut users = self.users.write().map_err(|_| poisoned())?;
        let role = if users.is_empty() {
            Role::SuperUser
        } else if caller.is_some_and(|c| c.role == Role::SuperUser) {
            role
        } else {
            return Err(AuthError::Forbidden);
        };
        if users.contains_key(name) {
            return Err(AuthError::Exists);
        }
        let mut next = users.clone();
        next.insert(name.to_string(), User { role, hash, nonce });
        self.save(&next)?;
        *users = next;
        Ok(role)
    }

    /// Sets a user's password and revokes the user's tokens.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        valid_password(password)?;
        let hash = self.hash(password).map_err(AuthError::Io)?;
        let nonce = self.nonce()?;
        let mut users = self.users.write().map_err(|_| poisoned())?;
        let mut next = users.clone();
        let u = next.get_mut(name).ok_or(AuthError::NoSuchUser)?;
        u.hash = hash;
        u.nonce = nonce;
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// Deletes a user (and so every token of theirs). The last super user
    /// cannot be deleted: nobody could manage users any more.
    pub fn delete(&self, name: &str) -> Result<(), AuthError> {
        let mut users = self.users.write().map_err(|_| poisoned())?;
        let mut next = users.clone();
        let gone = next.remove(name).ok_or(AuthError::NoSuchUser)?;
        if gone.role == Role::SuperUser && !next.values().any(|u| u.role == Role::SuperUser) {
            return Err(AuthError::Invalid(
                "cannot delete the last super_user".into(),
            ));
        }
        self.save(&next)?;
        *users = next;
        Ok(())
    }

    /// Every user's name and role, by name.
    pub fn list(&self) -> Vec<(String, Role)> {
        self.users
            .read()
            .map(|u| u.iter().map(|(n, u)| (n.clone(), u.role)).collect())
            .unwrap_or_default()
    }

    /// Checks a user name and password.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let found = self
            .users
            .read()
            .map_err(|_| AuthError::Unauthenticated)?
            .get(name)
            .cloned();
        let cache_key = self.sign(&format!("basic\0{name}\0{password}"));
        if let Some(u) = &found {
            let hit = self
                .verified
                .lock()
                .ok()
                .and_then(|c| c.get(&cache_key).cloned());
            if hit.as_deref() == Some(u.nonce.as_str()) {
                return Ok(Principal {
                    name: name.to_string(),
                    role: u.role,
                });
            }
        }
        let hash = found.as_ref().map_or(&self.dummy_hash, |u| &u.hash);
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        match found {
            Some(u) if ok => {
                if let Ok(mut c) = self.verified.lock() {
                    if c.len() >= CACHE_MAX {
                        c.clear();
                    }
                    c.insert(cache_key, u.nonce.clone());
                }
                Ok(Principal {
                    name: name.to_string(),
                    role: u.role,
                })
            }
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// Issues a bearer token for `p`; returns it and its expiry (Unix ms).
    pub fn issue_token(&self, p: &Principal) -> Result<(String, i64), AuthError> {
        let nonce = self
            .users
            .read()
            .map_err(|_| poisoned())?
            .get(&p.name)
            .map(|u| u.nonce.clone())
            .ok_or(AuthError::Unauthenticated)?;
        let expires = now_ms().saturating_add(self.token_ttl.as_millis() as i64);
        let payload = URL_SAFE_NO_PAD.encode(format!("{expires}:{nonce}:{}", p.name));
        let sig = URL_SAFE_NO_PAD.encode(self.sign(&payload));
        Ok((format!("{payload}.{sig}"), expires))
    }

    /// Checks a bearer token: signature, expiry, and that the user still
    /// exists with the same credential nonce.
    pub fn check_token(&self, token: &str) -> Result<Principal, AuthError> {
        let bad = || AuthError::Unauthenticated;
        let (payload, sig) = token.split_once('.').ok_or_else(bad)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        hmac::verify(&self.key, payload.as_bytes(), &sig).map_err(|_| bad())?;
        let text = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let mut parts = text.splitn(3, ':');
        let expires: i64 = parts.next().and_then(|e| e.parse().ok()).ok_or_else(bad)?;
        let nonce = parts.next().ok_or_else(bad)?;
        let name = parts.next().ok_or_else(bad)?;
        if now_ms() >= expires {
            return Err(bad());
        }
        let users = self.users.read().map_err(|_| bad())?;
        match users.get(name) {
            Some(u) if u.nonce == nonce => Ok(Principal {
                name: name.to_string(),
                role: u.role,
            }),
            _ => Err(bad()),
        }
    }

    /// Authenticates an `Authorization` header value (`Basic` or `Bearer`).
    pub fn authenticate(&self, header: &str) -> Result<Principal, AuthError> {
        let (scheme, rest) = header
            .trim()
            .split_once(' ')
            .ok_or(AuthError::Unauthenticated)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.check_token(rest)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let raw = STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Unauthenticated)?;
            let text = String::from_utf8(raw).map_err(|_| AuthError::Unauthenticated)?;
            let (name, password) = text.split_once(':').ok_or(AuthError::Unauthenticated)?;
            self.check_password(name, password)
        } else {
            Err(AuthError::Unauthenticated)
        }
    }

    fn sign(&self, data: &str) -> Vec<u8> {
        hmac::sign(&self.key, data.as_bytes()).as_ref().to_vec()
    }

    fn hash(&self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        self.rng
            .fill(&mut salt)
            .map_err(|_| "no system randomness".to_string())?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    fn nonce(&self) -> Result<String, AuthError> {
        let mut n = [0u8; 12];
        self.rng
            .fill(&mut n)
            .map_err(|_| AuthError::Io("no system randomness".into()))?;
        Ok(URL_SAFE_NO_PAD.encode(n))
    }

    /// Writes the user file atomically: a reader sees the old or the new file.
    fn save(&self, users: &BTreeMap<String, User>) -> Result<(), AuthError> {
        let io = |e: std::io::Error| AuthError::Io(e.to_string());
        let body = serde_json::to_vec_pretty(&UserFile {
            version: 1,
            token_key: self.key_b64.clone(),
            users: users.clone(),
        })
        .map_err(|e| AuthError::Io(e.to_string()))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn poisoned() -> AuthError {
    AuthError::Io("user store lock poisoned".into())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// User names: 1 to 64 of `A-Z a-z 0-9 _ . @ -`.
fn valid_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(
            "username must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -".into(),
        ))
    }
}

/// Passwords: 8 to 1024 bytes.
fn valid_password(pw: &str) -> Result<(), AuthError> {
    if (8..=1024).contains(&pw.len()) {
        Ok(())
    } else {
        Err(AuthError::Invalid(
            "password must be 8 to 1024 bytes long".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, ttl_ms: u64) -> AuthStore {
        AuthStore::open(dir, false, Duration::from_millis(ttl_ms)).unwrap()
    }

    #[test]
    fn role_table() {
        for g in GROUPS {
            assert!(allowed(Role::SuperUser, g));
        }
        assert!(allowed(Role::Writer, Group::Insert));
        assert!(!allowed(Role::Writer, Group::Schema));
        assert!(!allowed(Role::Reader, Group::Insert));
        assert!(allowed(Role::Reader, Group::Query));
        assert!(!allowed(Role::Reader, Group::Users));
    }

    #[test]
    fn first_user_is_super_then_only_super_registers() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 60_000);
        assert!(!s.enabled());
        assert_eq!(
            s.register("root", "password1", Role::Reader, None),
            Ok(Role::SuperUser)
        );
        assert!(s.enabled());
        assert_eq!(
            s.register("bob", "password2", Role::Reader, None),
            Err(AuthError::Forbidden)
        );
        let root = s.check_password("root", "password1").unwrap();
        assert_eq!(
            s.register("bob", "password2", Role::Writer, Some(&root)),
            Ok(Role::Writer)
        );
        assert_eq!(
            s.register("bob", "password2", Role::Writer, Some(&root)),
            Err(AuthError::Exists)
        );
        // Survives reopening; the token key too.
        let (tok, _) = s.issue_token(&root).unwrap();
        let again = store(d.path(), 60_000);
        assert_eq!(
            again.check_password("bob", "password2").unwrap().role,
            Role::Writer
        );
        assert_eq!(again.check_token(&tok).unwrap(), root);
    }

    #[test]
    fn tokens_expire_and_are_revoked() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 60_000);
        s.register("root", "password1", Role::SuperUser, None)
            .unwrap();
        let root = s.check_password("root", "password1").unwrap();
        let (tok, _) = s.issue_token(&root).unwrap();
        assert!(s.check_token(&tok).is_ok());
        // Tampering breaks the signature.
        let mut forged = tok.clone().into_bytes();
        forged[2] ^= 1;
        assert!(s.check_token(&String::from_utf8(forged).unwrap()).is_err());
        s.set_password("root", "password9").unwrap();
        assert_eq!(s.check_token(&tok), Err(AuthError::Unauthenticated));
        assert!(s.check_password("root", "password1").is_err());
        let short = store(d.path(), 0);
        let p = short.check_password("root", "password9").unwrap();
        let (tok, _) = short.issue_token(&p).unwrap();
        assert_eq!(short.check_token(&tok), Err(AuthError::Unauthenticated));
    }

    #[test]
    fn malformed_headers_are_unauthenticated() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 60_000);
        for h in [
            "",
            "Basic",
            "Basic !!!",
            "Bearer x.y",
            "Digest abc",
            "Basic Og==",
        ] {
            assert_eq!(s.authenticate(h), Err(AuthError::Unauthenticated), "{h}");
        }
    }
}
