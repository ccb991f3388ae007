//! Basic authentication of the forward proxy's clients (`Proxy-Authorization: Basic`,
//! RFC 9110 §11.7.1, RFC 7617) against an htpasswd-style file of bcrypt or argon2
//! hashes. Checking a hash is slow on purpose (tens of milliseconds), so it runs on the
//! node's verifier threads, never on a shard; a pair that checked out is remembered (as
//! a keyed digest, never the password) for `REMEMBER`, so a client's later requests cost
//! a hash lookup. Failed attempts are limited per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::limits::RequestRate;

/// How long a pair that checked out is taken without a new check.
const REMEMBER: Duration = Duration::from_secs(300);
/// Pairs remembered at once; past it the oldest are forgotten (a new check each).
const REMEMBERED_MAX: usize = 4096;

#[derive(Debug, Error)]
pub enum AuthFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: &'static str,
    },
}

/// A stored hash, by scheme.
#[derive(Clone, PartialEq, Eq)]
enum Stored {
    Bcrypt(String),
    Argon2(String),
}

impl Stored {
    fn parse(hash: &str) -> Result<Stored, &'static str> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            let parts = hash
                .parse::<bcrypt::HashParts>()
                .map_err(|_| "a bcrypt hash that does not parse")?;
            // Past 16 a check takes seconds: every request of a new client would wait.
            if !(4..=16).contains(&parts.get_cost()) {
                return Err("a bcrypt cost outside 4..=16");
            }
            return Ok(Stored::Bcrypt(hash.to_string()));
        }
        if hash.starts_with("$argon2") {
            argon2::PasswordHash::new(hash).map_err(|_| "an argon2 hash that does not parse")?;
            return Ok(Stored::Argon2(hash.to_string()));
        }
        Err("not a bcrypt ($2y$...) or argon2 ($argon2id$...) hash: other schemes are refused")
    }

    /// Hashes of one class cost the same to check: the scheme and its parameters.
    fn class(&self) -> String {
        match self {
            Stored::Bcrypt(h) => h.get(..7).unwrap_or(h).to_string(),
            Stored::Argon2(h) => h.rsplitn(3, '$').nth(2).unwrap_or(h).to_string(),
        }
    }

    /// Slow by design: call it off the shards.
    fn matches(&self, password: &[u8]) -> bool {
        use argon2::PasswordVerifier;
        match self {
            Stored::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Stored::Argon2(h) => argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password, &parsed)
                    .is_ok()
            }),
        }
    }
}

/// The users of an htpasswd-style file: `user:hash` per line, `#` comments.
#[derive(Clone, PartialEq, Eq)]
pub struct Users {
    by_name: HashMap<String, Stored>,
    /// Checked for an unknown user, so its answer takes as long as a known one's.
    decoy: Stored,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.by_name.len())
    }
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, AuthFileError> {
        let shown = path.display().to_string();
        let max = crate::config::CONFIG_FILE_BYTES_MAX;
        let text = crate::config::read_text(path, max).map_err(|source| AuthFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Users::parse(&text).map_err(|(line, why)| AuthFileError::Line {
            path: shown,
            line,
            why,
        })
    }

    fn parse(text: &str) -> Result<Users, (usize, &'static str)> {
        let mut by_name = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or((i + 1, "not user:hash"))?;
            if user.is_empty() {
                return Err((i + 1, "an empty user name"));
            }
            let stored = Stored::parse(hash).map_err(|why| (i + 1, why))?;
            if by_name.insert(user.to_string(), stored).is_some() {
                return Err((i + 1, "a user listed twice"));
            }
        }
        let decoy = slowest_class(&by_name).ok_or((0, "no users"))?;
        Ok(Users { by_name, decoy })
    }

    /// Whether `password` is `user`'s. Slow (the hash's cost): off the shards. An
    /// unknown user costs a decoy check, so timing does not tell which names exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.by_name.get(user) {
            Some(stored) => stored.matches(password),
            None => {
                let _ = self.decoy.matches(password);
                false
            }
        }
    }
}

/// A hash of the class that takes longest to check (timed once per class: a file
/// usually has one or two): an unknown user is checked against it, so no answer comes
/// faster for a name that does not exist than for one that does.
fn slowest_class(by_name: &HashMap<String, Stored>) -> Option<Stored> {
    let mut classes: HashMap<String, &Stored> = HashMap::new();
    for stored in by_name.values() {
        classes.entry(stored.class()).or_insert(stored);
    }
    classes
        .into_values()
        .map(|stored| {
            let started = Instant::now();
            let _ = stored.matches(b"not the password");
            (started.elapsed(), stored)
        })
        .max_by_key(|(took, _)| *took)
        .map(|(_, stored)| stored.clone())
}

/// `Proxy-Authorization: Basic <base64 of user:password>` into its user and password.
pub fn basic_credentials(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The forward proxy's authentication: the users, the pairs that checked out lately,
/// and each client's failed attempts.
#[derive(Debug)]
pub struct ProxyAuth {
    pub users: std::sync::Arc<Users>,
    pub realm: String,
    /// Digests of pairs that checked out, and until when they count.
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
    /// A key drawn at start: the digests mean nothing outside this process.
    key: [u8; 32],
    /// Failed attempts per client: a token per failure.
    failures: RequestRate,
    /// Digests being checked now, and by how many requests (a browser's parallel
    /// requests with a new pair are charged one attempt, not one each).
    checking: Mutex<HashMap<[u8; 32], u32>>,
}

impl ProxyAuth {
    /// `failures_per_min`: failed attempts a client may make a minute (and at once).
    pub fn new(users: Users, realm: String, failures_per_min: u32) -> ProxyAuth {
        ProxyAuth {
            key: super::random_bytes::<32>(),
            users: std::sync::Arc::new(users),
            realm,
            remembered: Mutex::new(HashMap::new()),
            failures: RequestRate::per_minute(failures_per_min, failures_per_min),
            checking: Mutex::new(HashMap::new()),
        }
    }

    /// The `Proxy-Authenticate` field line of a 407.
    pub fn challenge(&self) -> String {
        let realm = self.realm.replace(['"', '\\'], "");
        format!("Proxy-Authenticate: Basic realm=\"{realm}\", charset=\"UTF-8\"\r\n")
    }

    /// The key a pair is remembered under: for the client that showed it (a pair
    /// proved from one address is no shortcut for guesses from another).
    pub fn digest(&self, client: IpAddr, user: &str, password: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        let client = match client.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        mac.update(&client);
        mac.update(&(user.len() as u64).to_le_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    /// The pair was checked and found good within `REMEMBER` (of its last use: a
    /// client in steady use is not checked again every five minutes).
    pub fn remembered(&self, digest: &[u8; 32], now: Instant) -> bool {
        let mut map = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(digest) {
            Some(until) if now < *until => {
                *until = now + REMEMBER;
                true
            }
            _ => false,
        }
    }

    pub fn remember(&self, digest: [u8; 32], now: Instant) {
        let mut map = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= REMEMBERED_MAX {
            map.retain(|_, until| now < *until);
            if map.len() >= REMEMBERED_MAX
                && let Some(oldest) = map.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        map.insert(digest, now + REMEMBER);
    }

    /// A check of `digest` is about to run for `client`. The first check of a pair
    /// counts as a failure of the client until it succeeds (so a client firing many
    /// guesses at once gets no more than its share); checks of a pair already being
    /// checked are not charged again (they are the same guess). Err: the client has
    /// failed too often lately, and how long until it may try again.
    pub fn start_check(
        self: &Arc<Self>,
        client: IpAddr,
        digest: [u8; 32],
        now: Instant,
    ) -> Result<Check, Duration> {
        let mut checking = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        let charged = !checking.contains_key(&digest);
        if charged {
            self.failures.take(client, now)?;
        }
        *checking.entry(digest).or_default() += 1;
        Ok(Check {
            auth: self.clone(),
            client,
            digest,
            charged,
        })
    }

    fn end_check(&self, digest: &[u8; 32]) {
        let mut checking = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = checking.get_mut(digest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                checking.remove(digest);
            }
        }
    }
}

/// A check under way. Dropped without a verdict (the client went away), its attempt
/// stays charged.
pub struct Check {
    auth: Arc<ProxyAuth>,
    client: IpAddr,
    digest: [u8; 32],
    charged: bool,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check(charged: {})", self.charged)
    }
}

impl Check {
    /// The pair is good: remembered, and its attempt was no failure.
    pub fn succeeded(self, now: Instant) {
        self.auth.remember(self.digest, now);
        self.not_a_failure(now);
    }

    /// The check never ran (queue full, too slow): not the client's failure.
    pub fn not_a_failure(self, now: Instant) {
        if self.charged {
            self.auth.failures.give_back(self.client, now);
        }
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        self.auth.end_check(&self.digest);
    }
}

#[cfg(test)]
mod tests;
