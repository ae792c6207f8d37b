//! Panel sessions: signing in with an API token opens a session whose id
//! travels in an HttpOnly, SameSite=Strict cookie; the token itself never
//! reaches the browser again. Every request re-checks the token (through
//! the API's token cache), so a revoked token closes its sessions within
//! the cache's lifetime. Each session has its own CSRF secret, which every
//! form carries back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "vmfabric_session";
/// A session ends this long after its last request.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept; the oldest go first beyond it (memory stays bounded
/// whatever clients do).
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Session {
    /// The API token's secret, to authenticate each request with.
    pub secret: String,
    pub csrf: String,
    last: Instant,
}

/// Sessions by the SHA-256 of their id (a leaked memory dump does not give
/// the cookies away).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes as hex.
pub fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `secret`: its id (for the cookie).
    pub fn open(&self, secret: &str) -> Option<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut all = self.lock();
        if all.len() >= MAX_SESSIONS {
            all.retain(|_, s| s.last.elapsed() < IDLE);
            if all.len() >= MAX_SESSIONS
                && let Some(oldest) = all.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
            {
                all.remove(&oldest);
            }
        }
        all.insert(
            digest(&id),
            Session {
                secret: secret.to_string(),
                csrf,
                last: Instant::now(),
            },
        );
        Some(id)
    }

    /// The session of a request's cookie, if it is open and not idle.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let key = digest(&id);
        let mut all = self.lock();
        let s = all.get_mut(&key)?;
        if s.last.elapsed() >= IDLE {
            all.remove(&key);
            return None;
        }
        s.last = Instant::now();
        Some(s.clone())
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(&digest(&id));
        }
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a session id (empty and expired: sign out). `secure`
/// when the controller serves HTTPS: a browser then never sends the cookie
/// in clear.
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            IDLE.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_find_and_close() {
        let s = Sessions::default();
        let id = s.open("vmf_secret").expect("random");
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={id}").parse().expect("header"),
        );
        assert_eq!(s.get(&h).map(|x| x.secret), Some("vmf_secret".into()));
        s.close(&h);
        assert!(s.get(&h).is_none());
        let mut other = HeaderMap::new();
        other.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}=00").parse().expect("header"),
        );
        assert!(s.get(&other).is_none());
    }
}
