//! Bearer tokens: every request but health carries one; the store knows
//! only its hash. Lookups are cached briefly, so a busy API does not ask
//! the database for every request; a revocation reaches every controller
//! within `CACHE_FOR` (at once on the one that revoked).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use vmfabric_model::{Access, Error, Result, TokenInfo};
use vmfabric_store::Store;
use vmfabric_store::sql::{TOKEN_PREFIX, well_formed_token};

pub const CACHE_FOR: Duration = Duration::from_secs(2);

/// Most lookups remembered. Keys are digests and secrets have one size, so
/// the cache stays under about a megabyte whatever clients send.
pub const CACHE_ENTRIES: usize = 4096;

type Seen = HashMap<[u8; 32], (Instant, Option<TokenInfo>)>;

#[derive(Debug, Default)]
pub struct TokenCache {
    seen: Mutex<Seen>,
}

impl TokenCache {
    /// The token of a request, or 401.
    pub async fn authenticate(&self, store: &dyn Store, headers: &HeaderMap) -> Result<TokenInfo> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(Error::Unauthenticated {
                detail: "send the header Authorization: Bearer TOKEN (vmfabric token create)"
                    .into(),
            });
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Error::Unauthenticated {
                detail: "the Authorization header is not `Bearer TOKEN`".into(),
            })?;
        if !well_formed_token(secret) {
            return Err(Error::Unauthenticated {
                detail: format!(
                    "malformed token: a token is {TOKEN_PREFIX} followed by 64 lowercase hex digits"
                ),
            });
        }
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let cached = self.lock().get(&key).cloned();
        let found = match cached {
            Some((at, t)) if at.elapsed() < CACHE_FOR => t,
            _ => {
                let t = store.authenticate(secret).await?;
                let mut seen = self.lock();
                if seen.len() >= CACHE_ENTRIES {
                    // Expired lookups first; a flood of fresh unknown
                    // tokens empties it (they cost a lookup each, no more).
                    seen.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
                    if seen.len() >= CACHE_ENTRIES {
                        seen.clear();
                    }
                }
                seen.insert(key, (Instant::now(), t.clone()));
                t
            }
        };
        match found {
            None => Err(Error::Unauthenticated {
                detail: "unknown token".into(),
            }),
            Some(t) if t.revoked_at.is_some() => Err(Error::Unauthenticated {
                detail: format!("token {} was revoked", t.id),
            }),
            Some(t) => Ok(t),
        }
    }

    /// Forget every cached lookup (after a revocation on this controller).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        // A panic while holding the lock leaves a usable map.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 403 unless `token` may make a call that needs `access`.
pub fn require(token: &TokenInfo, access: Access<'_>) -> Result<()> {
    if token.allows(access) {
        return Ok(());
    }
    let what = match access {
        Access::Read => "reading needs a viewer, operator or admin token".to_string(),
        Access::Operate => "VMs and addresses need an operator or admin token".to_string(),
        Access::Admin => "clusters, networks, nodes and tokens need an admin token".to_string(),
        Access::Node(n) | Access::NodeRead(n) => {
            format!("node {n}'s plan and status are for its own agent's token (or admin)")
        }
    };
    Err(Error::Forbidden {
        detail: format!(
            "token {} ({}{}): {what}",
            token.id,
            token.role,
            token
                .node
                .as_deref()
                .map(|n| format!(" of node {n}"))
                .unwrap_or_default()
        ),
    })
}
