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
}

/// Moves the revision, last thing before `COMMIT`: the row lock it takes
/// orders the revisions of concurrent transactions as their commits, and
/// is held for one round trip only.
macro_rules! bump {
    () => {
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'revision'"
    };
}
const BUMP: &str = bump!();

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
        };
        let rows = run_script(&mut tx, self.dialect, &all, &[arg]).await?;
        Ok((tx, rows))
    }
}

impl Tx {
    pub(crate) async fn commit(mut self) -> Result<()> {
        let script = if self.bump {
            concat!(bump!(), "; COMMIT")
        } else {
            "COMMIT"
        };
        sqlx::raw_sql(script)
            .execute(&mut *self.conn)
            .await
            .map_err(db)?;
        self.open = false;
        Ok(())
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
        let mut all = statements.to_vec();
        if self.bump {
            all.push(BUMP.to_string());
        }
        all.push("COMMIT".to_string());
        let dialect = self.dialect;
        match run_script_sqlx(&mut self, dialect, &all, args).await {
            Ok(_) => {
                self.open = false;
                Ok(Written::Committed)
            }
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
