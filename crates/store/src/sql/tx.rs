//! Transactions under our control, so that `BEGIN` and `COMMIT` can travel
//! in the same round trip as the statements next to them (see `batch`).
//!
//! A `Tx` that is dropped while open (an early `?`) closes its connection
//! instead of returning it to the pool: closing rolls the transaction back,
//! and no later caller can ever find itself inside someone else's
//! transaction.

use std::ops::{Deref, DerefMut};

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor};
use vmfabric_model::Result;

use super::dialect::script;
use super::{Dialect, SqlStore, db};

/// An open transaction on a pooled connection.
#[derive(Debug)]
pub(crate) struct Tx {
    conn: PoolConnection<Any>,
    dialect: Dialect,
    open: bool,
    /// Whether committing moves the revision (see `Store::revision`).
    bump: bool,
    /// Change-log entries, written with the commit under its revision.
    changes: Vec<serde_json::Value>,
}

/// Whose plans a change may alter: the agents the controller wakes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reach<'a> {
    /// No node's plan (reservations, tokens, a new cluster).
    None,
    /// These nodes' plans (a VM's node; both nodes of a migration).
    Nodes(&'a [&'a str]),
    /// Every node of the change's cluster (its pool, route reflectors, ...).
    Cluster,
}

/// Moves the revision, last thing before `COMMIT`: the row lock it takes
/// orders the revisions of concurrent transactions as their commits, and
/// is held for one round trip only.
const BUMP: &str =
    "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'revision'";

/// Places in one commit's part of the change log (`changes.id` is
/// revision * 2^20 + place).
pub(crate) const CHANGE_SEQ_BITS: u32 = 20;

/// The change log's entries of a commit, from a JSON array argument, under
/// the revision the commit takes (SQLite: after `BUMP`, in the same
/// script; its single writer holds the lock throughout).
const SQLITE_CHANGES: &str = "INSERT INTO changes (id, at, actor, kind, subject, detail, cluster, nodes) \
     SELECT (CAST((SELECT value FROM meta WHERE key = 'revision') AS INTEGER) << 20) + CAST(j.key AS INTEGER), j.value->>'at', j.value->>'actor', j.value->>'kind', j.value->>'subject', j.value->>'detail', j.value->>'cluster', j.value->>'nodes' \
     FROM json_each($#) AS j";

/// PostgreSQL: the bump and the entries in one statement, so the row lock
/// that orders revisions as commits is held for it and `COMMIT` only.
const POSTGRES_CHANGES: &str = "WITH r AS (UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'revision' RETURNING CAST(value AS BIGINT) AS rev) \
     INSERT INTO changes (id, at, actor, kind, subject, detail, cluster, nodes) \
     SELECT (r.rev << 20) + x.ord - 1, x.at, x.actor, x.kind, x.subject, x.detail, x.cluster, x.nodes \
     FROM r, ROWS FROM (json_to_recordset(CAST($# AS JSON)) AS (at bigint, actor text, kind text, subject text, detail text, cluster text, nodes text)) WITH ORDINALITY AS x(at, actor, kind, subject, detail, cluster, nodes, ord)";

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// Statements (with `@` macros, see `dialect`) run as one script: SQLite
/// runs it in one call to the driver; PostgreSQL cannot bind arguments to
/// several statements, so there each statement goes on its own.
pub(crate) async fn run_script(
    conn: &mut AnyConnection,
    dialect: Dialect,
    statements: &[String],
    args: &[&str],
) -> Result<Vec<AnyRow>> {
    run_script_sqlx(conn, dialect, statements, args)
        .await
        .map_err(db)
}

/// `run_script` with the driver's error, for callers that tell a UNIQUE
/// violation from other failures.
async fn run_script_sqlx(
    conn: &mut AnyConnection,
    dialect: Dialect,
    statements: &[String],
    args: &[&str],
) -> sqlx::Result<Vec<AnyRow>> {
    let texts = script(dialect, statements);
    let mut rows = Vec::new();
    for text in texts.iter() {
        let mut q = sqlx::query(AssertSqlSafe(text.clone()));
        for a in args {
            q = q.bind(*a);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The outcome of a write that UNIQUE constraints may refuse.
pub(crate) enum Written {
    Committed,
    /// A UNIQUE constraint refused the write (nothing was committed):
    /// another writer took a name, MAC or key after this one checked it.
    Clash,
}

impl SqlStore {
    async fn open_tx(&self, begin: &'static str, bump: bool) -> Result<Tx> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        conn.execute(begin).await.map_err(db)?;
        Ok(Tx {
            conn,
            dialect: self.dialect,
            open: true,
            bump,
            changes: Vec::new(),
        })
    }

    fn begin_statement(&self, write: bool) -> &'static str {
        match (self.dialect, write) {
            // Take the write lock at once, so two writers never deadlock upgrading.
            (Dialect::Sqlite, true) => "BEGIN IMMEDIATE",
            (Dialect::Sqlite, false) => "BEGIN DEFERRED",
            (Dialect::Postgres, _) => "BEGIN",
        }
    }

    /// Begin a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        self.open_tx(self.begin_statement(true), true).await
    }

    /// Begin a write transaction that changes nothing any plan depends on
    /// (tokens, agent reports): it leaves the revision alone.
    pub(crate) async fn begin_quiet(&self) -> Result<Tx> {
        self.open_tx(self.begin_statement(true), false).await
    }

    /// Begin a read transaction: one consistent snapshot, no write lock.
    pub(crate) async fn begin_read(&self) -> Result<Tx> {
        self.open_tx(self.begin_statement(false), false).await
    }

    /// Begin a write transaction and run `statements` in the same round
    /// trip (SQLite), returning their rows.
    pub(crate) async fn begin_with_script(
        &self,
        statements: &[String],
        arg: &str,
    ) -> Result<(Tx, Vec<AnyRow>)> {
        if self.dialect != Dialect::Sqlite {
            let mut tx = self.begin().await?;
            let rows = run_script(&mut tx, self.dialect, statements, &[arg]).await?;
            return Ok((tx, rows));
        }
        let mut all = Vec::with_capacity(statements.len() + 1);
        all.push(self.begin_statement(true).to_string());
        all.extend_from_slice(statements);
        let conn = self.pool.acquire().await.map_err(db)?;
        // Open before the script runs: if it fails half-way, the connection
        // is closed, which rolls back.
        let mut tx = Tx {
            conn,
            dialect: self.dialect,
            open: true,
            bump: true,
            changes: Vec::new(),
        };
        let rows = run_script(&mut tx, self.dialect, &all, &[arg]).await?;
        Ok((tx, rows))
    }
}

impl Tx {
    /// Record a change-log entry; it is written with the commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log(
        &mut self,
        at: i64,
        actor: &str,
        kind: &str,
        subject: &str,
        cluster: Option<&str>,
        reach: Reach<'_>,
        detail: &serde_json::Value,
    ) {
        let nodes = match reach {
            Reach::None => None,
            Reach::Nodes(names) => {
                let mut names: Vec<&str> = names.to_vec();
                names.sort_unstable();
                names.dedup();
                Some(names.join(" "))
            }
            Reach::Cluster => Some("*".to_string()),
        };
        self.changes.push(serde_json::json!({
            "at": at,
            "actor": actor,
            "kind": kind,
            "subject": subject,
            "detail": detail.to_string(),
            "cluster": cluster,
            "nodes": nodes,
        }));
    }

    /// Run `statements` with `args` ($1, $2, …), then move the revision,
    /// write the change log under it and commit. SQLite runs all of it as
    /// one script (one round trip; the entries come as one more argument).
    /// PostgreSQL binds arguments to one statement at a time, so each
    /// statement goes with the arguments it uses: `statements` with `args`,
    /// the closing statement with the entries alone, `COMMIT` with none.
    async fn finish(&mut self, statements: &[String], args: &[&str]) -> sqlx::Result<()> {
        if !self.bump && !self.changes.is_empty() {
            // A quiet transaction has no revision to log under.
            return Err(sqlx::Error::Protocol(
                "change-log entries in a transaction that leaves the revision alone".into(),
            ));
        }
        if self.changes.len() >= 1 << CHANGE_SEQ_BITS {
            return Err(sqlx::Error::Protocol(format!(
                "{} changes in one commit; at most {} fit its part of the change log",
                self.changes.len(),
                (1 << CHANGE_SEQ_BITS) - 1
            )));
        }
        let entries = serde_json::Value::from(std::mem::take(&mut self.changes)).to_string();
        let logged = entries != "[]";
        let dialect = self.dialect;
        match dialect {
            Dialect::Sqlite => {
                let mut all = statements.to_vec();
                let mut args = args.to_vec();
                if self.bump {
                    all.push(BUMP.to_string());
                    if logged {
                        args.push(&entries);
                        all.push(SQLITE_CHANGES.replace("$#", &format!("${}", args.len())));
                    }
                }
                all.push("COMMIT".to_string());
                run_script_sqlx(&mut self.conn, dialect, &all, &args).await?;
            }
            Dialect::Postgres => {
                if !statements.is_empty() {
                    run_script_sqlx(&mut self.conn, dialect, statements, args).await?;
                }
                if self.bump {
                    if logged {
                        let sql = [POSTGRES_CHANGES.replace("$#", "$1")];
                        run_script_sqlx(&mut self.conn, dialect, &sql, &[&entries]).await?;
                    } else {
                        self.conn.execute(BUMP).await?;
                    }
                }
                self.conn.execute("COMMIT").await?;
            }
        }
        self.open = false;
        Ok(())
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        self.finish(&[], &[]).await.map_err(db)
    }

    pub(crate) async fn rollback(mut self) -> Result<()> {
        self.conn.execute("ROLLBACK").await.map_err(db)?;
        self.open = false;
        Ok(())
    }

    /// Run `statements` with `args` ($1, $2, …) and commit, in one round
    /// trip on SQLite. If any statement fails, nothing is committed; a
    /// UNIQUE violation is told apart (`Written::Clash`).
    pub(crate) async fn commit_after(
        mut self,
        statements: &[String],
        args: &[&str],
    ) -> Result<Written> {
        match self.finish(statements, args).await {
            Ok(()) => Ok(Written::Committed),
            // Dropping `self` closes the connection, which rolls back.
            Err(sqlx::Error::Database(e))
                if e.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                Ok(Written::Clash)
            }
            Err(e) => Err(db(e)),
        }
    }
}
