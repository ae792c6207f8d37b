//! What the controller keeps besides the network: API tokens (hash only),
//! agents' reports, and the revision that long-polling agents wait on.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use vmfabric_model::{AgentStatus, Error, NewToken, Result, Timestamp, TokenInfo, TokenInput};

use super::tx::{CHANGE_SEQ_BITS, Tx};
use super::{RowExt, SqlStore, db};
use crate::{Change, ChangeFilter, Page, PageRequest, Reach};

/// Secrets start with this, so that a leaked one is recognisable (secret
/// scanners) and a mistyped argument is refused before any lookup.
pub const TOKEN_PREFIX: &str = "vmf_";

/// Whether `secret` has the shape of the secrets this store makes: the
/// prefix and 64 lowercase hex digits. Anything else is refused before a
/// lookup, so a client cannot make a controller hash or keep large values.
pub fn well_formed_token(secret: &str) -> bool {
    secret.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The stored form of a secret. A fast hash is right here: the secret has
/// 256 random bits, there is nothing to guess.
pub fn token_hash(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::storage(format!("no randomness from the operating system: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", to_hex(&bytes)))
}

const TOKEN_COLS: &str = "id, name, role, node, created_at, revoked_at";

fn token_from_row(row: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.int("id")?,
        name: row.opt_text("name")?.unwrap_or_default(),
        role: row.parsed("role")?,
        node: row.opt_text("node")?,
        created_at: Timestamp(row.int("created_at")?),
        revoked_at: row.opt_int("revoked_at")?.map(Timestamp),
    })
}

impl SqlStore {
    pub(crate) async fn revision_now(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        row.parsed("value")
    }

    pub(crate) async fn create_token_now(&self, input: &TokenInput) -> Result<NewToken> {
        let role = input.check()?;
        let secret = new_secret()?;
        // A change of who may do what is in the change log (no node's plan).
        let mut tx = self.begin().await?;
        // Bound to the node's row: a later node of the same name is
        // another node, which this token must not reach.
        let node_id = match &input.node {
            Some(n) => Some(self.load_node(&mut tx, n).await?.0),
            None => None,
        };
        let row = sqlx::query(SqlStore::dynamic(format!(
            "INSERT INTO tokens (name, role, node, node_id, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLS}"
        )))
        .bind(&input.name)
        .bind(role.as_str())
        .bind(input.node.as_deref())
        .bind(node_id)
        .bind(token_hash(&secret))
        .bind(self.now().0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let info = token_from_row(&row)?;
        self.log_change(
            &mut tx,
            "token.create",
            &format!("token {}", info.id),
            None,
            super::Reach::None,
            &serde_json::json!({"role": info.role.as_str(), "node": info.node, "name": info.name}),
        );
        tx.commit().await?;
        Ok(NewToken { info, secret })
    }

    pub(crate) async fn tokens_now(&self, page: &PageRequest) -> Result<Page<TokenInfo>> {
        let size = page.size()?;
        let after: i64 = match &page.after {
            None => 0,
            Some(a) => a.parse().map_err(|_| super::bad_cursor(a))?,
        };
        let tokens = sqlx::query(SqlStore::dynamic(format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(token_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_probe(tokens, size, |t| t.id.to_string()))
    }

    pub(crate) async fn revoke_token_now(&self, id: i64) -> Result<TokenInfo> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(SqlStore::dynamic(format!(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {TOKEN_COLS}"
        )))
        .bind(self.now().0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Err(Error::not_found("token", id));
        };
        let info = token_from_row(&row)?;
        self.log_change(
            &mut tx,
            "token.revoke",
            &format!("token {}", info.id),
            None,
            super::Reach::None,
            &serde_json::json!({"role": info.role.as_str(), "node": info.node, "name": info.name}),
        );
        tx.commit().await?;
        Ok(info)
    }

    pub(crate) async fn authenticate_now(&self, secret: &str) -> Result<Option<TokenInfo>> {
        if !well_formed_token(secret) {
            return Ok(None);
        }
        // A node token counts only while its node's row is the one it was
        // made for (removal revokes it too; this also holds for tokens
        // older than that rule).
        let row = sqlx::query(
            "SELECT t.id, t.name, t.role, t.node, t.created_at, t.revoked_at, n.name AS bound FROM tokens t LEFT JOIN nodes n ON n.id = t.node_id WHERE t.hash = $1",
        )
        .bind(token_hash(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut info = token_from_row(&row)?;
        if info.node.is_some() && info.revoked_at.is_none() && row.opt_text("bound")? != info.node {
            info.revoked_at = Some(self.now());
        }
        Ok(Some(info))
    }

    /// Revoke the tokens of node `node_id` (being removed, alone or with
    /// its cluster), each in the change log like any revocation.
    pub(crate) async fn revoke_node_tokens(&self, tx: &mut Tx, node_id: i64) -> Result<()> {
        let rows = sqlx::query(SqlStore::dynamic(format!(
            "UPDATE tokens SET revoked_at = $1 WHERE node_id = $2 AND revoked_at IS NULL RETURNING {TOKEN_COLS}"
        )))
        .bind(self.now().0)
        .bind(node_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for row in &rows {
            let info = token_from_row(row)?;
            self.log_change(
                tx,
                "token.revoke",
                &format!("token {}", info.id),
                None,
                super::Reach::None,
                &serde_json::json!({"role": info.role.as_str(), "node": info.node, "name": info.name, "why": "node removed"}),
            );
        }
        Ok(())
    }

    pub(crate) async fn forget_idempotency_now(&self, before: Timestamp) -> Result<u64> {
        let mut tx = self.begin_quiet().await?;
        let done = sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn report_status_now(
        &self,
        node: &str,
        report: &serde_json::Value,
    ) -> Result<AgentStatus> {
        let mut tx = self.begin_quiet().await?;
        self.load_node(&mut tx, node).await?;
        let at = self.now();
        sqlx::query(
            "INSERT INTO agent_status (node, report, at) VALUES ($1, $2, $3) ON CONFLICT (node) DO UPDATE SET report = excluded.report, at = excluded.at",
        )
        .bind(node)
        .bind(report.to_string())
        .bind(at.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await?;
        Ok(AgentStatus {
            node: node.to_string(),
            at,
            report: report.clone(),
        })
    }

    pub(crate) async fn agent_statuses_now(&self, page: &PageRequest) -> Result<Page<AgentStatus>> {
        let size = page.size()?;
        let rows = sqlx::query(
            "SELECT node, report, at FROM agent_status WHERE node > $1 ORDER BY node LIMIT $2",
        )
        .bind(page.after.clone().unwrap_or_default())
        .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(AgentStatus {
                    node: row.text("node")?,
                    at: Timestamp(row.int("at")?),
                    report: serde_json::from_str(&row.text("report")?)
                        .map_err(|_| super::corrupt("agent report"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_probe(items, size, |a| a.node.clone()))
    }

    pub(crate) async fn agent_status_now(&self, node: &str) -> Result<Option<AgentStatus>> {
        let row = sqlx::query("SELECT node, report, at FROM agent_status WHERE node = $1")
            .bind(node)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|row| {
            Ok(AgentStatus {
                node: row.text("node")?,
                at: Timestamp(row.int("at")?),
                report: serde_json::from_str(&row.text("report")?)
                    .map_err(|_| super::corrupt("agent report"))?,
            })
        })
        .transpose()
    }

    /// The change log: newest first, or after `since` oldest first; of
    /// one object with `object`. Each form is one range of an index.
    pub(crate) async fn changes_now(
        &self,
        f: &ChangeFilter,
        page: &PageRequest,
    ) -> Result<Page<Change>> {
        let size = page.size()?;
        if let Some(since) = f.since.filter(|s| *s < 0) {
            return Err(Error::invalid(
                "since",
                since.to_string(),
                "a revision: 0 or more",
            ));
        }
        let cursor = page.after.as_deref().map(parse_change_cursor).transpose()?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let q = |sql: String| sqlx::query(SqlStore::dynamic(sql));
        let query = match (&f.object, f.since) {
            (None, None) => q(format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(cursor.map_or(i64::MAX, change_id)),
            (None, Some(since)) => q(format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(cursor.map_or(change_id((since, i64::MAX)), change_id)),
            (Some(_), None) => q(format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE subject = $3 AND id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(cursor.map_or(i64::MAX, change_id)),
            (Some(_), Some(since)) => q(format!(
                "SELECT {CHANGE_COLS} FROM changes WHERE subject = $3 AND id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(cursor.map_or(change_id((since, i64::MAX)), change_id)),
        };
        let query = query.bind(probe);
        let query = match &f.object {
            Some(o) => query.bind(o.clone()),
            None => query,
        };
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        let items = rows
            .iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_probe(items, size, |c| {
            format!("{}.{}", c.revision, c.seq)
        }))
    }

    /// Changes after (revision, seq), oldest first.
    pub(crate) async fn changes_after_now(
        &self,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<Change>> {
        sqlx::query(SqlStore::dynamic(format!(
            "SELECT {CHANGE_COLS} FROM changes WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(change_id(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(change_from_row)
        .collect()
    }
}

/// The key of change (revision, seq); a seq beyond the commit's part of the
/// key means "after all of that revision".
fn change_id((revision, seq): (i64, i64)) -> i64 {
    let places = 1i64 << CHANGE_SEQ_BITS;
    revision
        .saturating_mul(places)
        .saturating_add(seq.clamp(0, places - 1))
}

const CHANGE_COLS: &str = "id, at, actor, kind, subject, detail, cluster, nodes";

fn parse_change_cursor(a: &str) -> Result<(i64, i64)> {
    a.split_once('.')
        .and_then(|(r, s)| Some((r.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| super::bad_cursor(a))
}

fn change_from_row(row: &AnyRow) -> Result<Change> {
    let reach = match row.opt_text("nodes")?.as_deref() {
        None => Reach::None,
        Some("*") => Reach::Cluster,
        Some(names) => Reach::Nodes(names.split(' ').map(String::from).collect()),
    };
    let id = row.int("id")?;
    Ok(Change {
        revision: id >> CHANGE_SEQ_BITS,
        seq: id & ((1 << CHANGE_SEQ_BITS) - 1),
        at: Timestamp(row.int("at")?),
        kind: row.text("kind")?,
        subject: row.text("subject")?,
        actor: row.opt_text("actor")?,
        detail: serde_json::from_str(&row.text("detail")?)
            .map_err(|_| super::corrupt("change detail"))?,
        cluster: row.opt_text("cluster")?,
        reach,
    })
}
