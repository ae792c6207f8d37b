//! The SQL implementation of [`Store`](crate::Store) for SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use vmfabric_ipam::{Key, key};
use vmfabric_model::{Error, Result, Timestamp};

use crate::{Clock, SystemClock};

mod addresses;
pub(crate) mod alloc;
mod batch;
mod check;
mod clusters;
mod dialect;
mod impl_store;
mod maps;
mod nodes;
mod schema;
mod tokens;
mod tx;
mod vms;

pub use schema::{PendingMigration, SchemaState, SchemaStatus, schema_version};
pub use tokens::{TOKEN_PREFIX, well_formed_token};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The store on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
    /// Random per installation; makes MACs unique across installations.
    seed: u64,
}

pub(crate) use tx::{Reach, Tx};

/// A database error as the user sees it.
pub(crate) fn db(e: sqlx::Error) -> Error {
    Error::storage(e.to_string())
}

/// Stored data that does not decode: only a damaged database does this.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::storage(format!("damaged database: {what}"))
}

/// A `Dns` as stored: JSON, NULL when empty.
pub(crate) fn dns_text(dns: Option<&vmfabric_model::Dns>) -> Option<String> {
    dns.filter(|d| !d.is_empty())
        .and_then(|d| serde_json::to_string(d).ok())
}

pub(crate) fn dns_from_row(row: &AnyRow, col: &str) -> Result<Option<vmfabric_model::Dns>> {
    row.opt_text(col)?
        .map(|t| serde_json::from_str(&t).map_err(|_| corrupt(col)))
        .transpose()
}

/// A page cursor this listing did not hand out.
pub(crate) fn bad_cursor(after: &str) -> Error {
    Error::invalid(
        "after",
        after,
        "not a cursor of this listing: pass the `next` of the page before",
    )
}

/// Key as stored.
pub(crate) fn kb(k: Key) -> Vec<u8> {
    key::to_bytes(k).to_vec()
}

/// Typed access to row columns, with damage reported instead of panics.
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn key(&self, col: &str) -> Result<Key>;
    fn ip(&self, col: &str) -> Result<IpAddr> {
        Ok(key::addr(self.key(col)?))
    }
    fn parsed<T: std::str::FromStr>(&self, col: &str) -> Result<T> {
        let t = self.text(col)?;
        t.parse().map_err(|_| corrupt(format!("{col} {t:?}")))
    }
    fn opt_parsed<T: std::str::FromStr>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_text(col)? {
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|_| corrupt(format!("{col} {t:?}"))),
            None => Ok(None),
        }
    }
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db)
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db)
    }
    fn key(&self, col: &str) -> Result<Key> {
        let b: Vec<u8> = self.try_get(col).map_err(db)?;
        key::from_bytes(&b).ok_or_else(|| corrupt(format!("{col} is not a 16-byte address")))
    }
}

/// Counter changes of blocks, summed over a transaction and written once
/// before commit: a batch of allocations touches each block row once.
#[derive(Debug, Default)]
pub(crate) struct Counters(BTreeMap<i64, [i64; 3]>);

pub(crate) const USED: usize = 0;
pub(crate) const RESERVED: usize = 1;
pub(crate) const RELEASED: usize = 2;

impl Counters {
    pub(crate) fn add(&mut self, block: i64, which: usize, delta: i64) {
        self.0.entry(block).or_default()[which] += delta;
    }

    pub(crate) async fn flush(&mut self, tx: &mut Tx) -> Result<()> {
        for (id, d) in std::mem::take(&mut self.0) {
            if d == [0, 0, 0] {
                continue;
            }
            sqlx::query(
                "UPDATE blocks SET used = used + $1, reserved = reserved + $2, released = released + $3 WHERE id = $4",
            )
            .bind(d[USED])
            .bind(d[RESERVED])
            .bind(d[RELEASED])
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
        Ok(())
    }
}

/// `url` without its password, for messages and `config show`.
pub fn redacted_url(url: &str) -> String {
    redacted(url)
}

fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// One connection, opened and used for a write check before the pool is
/// built: the pool retries a failing connection until its acquire timeout
/// (30 s) and then reports only "pool timed out"; this says at once why
/// (connection refused, authentication failed, read-only file system,
/// permission denied).
async fn probe(opts: &AnyConnectOptions, dialect: Dialect, url: &str) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let shown = redacted(url);
    let fail = |why: String| Error::unavailable(format!("cannot open the database {shown}: {why}"));
    let cause = |e: sqlx::Error| match &e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    };
    // SQLite's own words ("unable to open database file") hide the
    // operating system's: ask it directly.
    let os_says = || -> Option<String> {
        let path = url.strip_prefix("sqlite://")?.split('?').next()?;
        let path = std::path::Path::new(path);
        let target = if path.exists() {
            path.to_path_buf()
        } else {
            path.parent()?.join(".vmfabric-probe")
        };
        let r = std::fs::OpenOptions::new()
            .write(true)
            .create(!path.exists())
            .truncate(false)
            .open(&target);
        if !path.exists() {
            let _ = std::fs::remove_file(&target);
        }
        r.err().map(|e| e.to_string())
    };
    // A database file that cannot be written: SQLite would open it
    // read-only and fail at the first write (or not at all for a read).
    if dialect == Dialect::Sqlite
        && let Some(path) = url
            .strip_prefix("sqlite://")
            .and_then(|u| u.split('?').next())
        && std::path::Path::new(path).exists()
        && let Some(why) = os_says()
    {
        return Err(fail(why));
    }
    let mut conn = match tokio::time::timeout(Duration::from_secs(5), opts.connect()).await {
        Err(_) => return Err(fail("no answer within 5 s".into())),
        Ok(Err(e)) => return Err(fail(os_says().unwrap_or_else(|| cause(e)))),
        Ok(Ok(c)) => c,
    };
    if dialect == Dialect::Sqlite {
        // SQLite opens a file it may not write read-only; the first write
        // would fail much later.
        let writable = sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK")
            .execute(&mut conn)
            .await;
        if let Err(e) = writable {
            let _ = conn.close().await;
            return Err(fail(os_says().unwrap_or_else(|| {
                format!("{} (is the file or its folder read-only?)", cause(e))
            })));
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Percent-encode the characters a SQLite URL path cannot carry as is.
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    url.push_str("?mode=rwc");
    url
}

/// Which database a URL names.
fn dialect_of(url: &str) -> Result<Dialect> {
    if url.starts_with("sqlite:") {
        Ok(Dialect::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Dialect::Postgres)
    } else {
        Err(Error::invalid(
            "database",
            redacted(url),
            "the database is a sqlite:// or postgres:// URL",
        ))
    }
}

/// The folder of a SQLite file, created when missing.
fn sqlite_folder(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::invalid(
                "db",
                path.display(),
                format!("cannot create the folder {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// A database whatever its schema, for the commands that look at or
/// change the schema itself (`vmfabric db`): no store works on it.
#[derive(Debug)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
}

impl Database {
    pub async fn connect(url: &str) -> Result<Database> {
        let (pool, dialect) = connect(url).await?;
        Ok(Database {
            pool,
            dialect,
            url: url.to_string(),
        })
    }

    pub async fn connect_sqlite(path: &Path) -> Result<Database> {
        Database::connect(&sqlite_url(path)).await
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL without its password.
    pub fn shown(&self) -> String {
        redacted(&self.url)
    }

    pub async fn status(&self) -> Result<SchemaStatus> {
        schema::status(&self.pool, self.dialect, &schema::migrator(self.dialect)).await
    }

    /// Apply every pending migration; refused on a database that is
    /// ahead of this binary or damaged. Returns the status afterwards.
    pub async fn migrate(&self) -> Result<SchemaStatus> {
        let before = self.status().await?;
        match before.state {
            SchemaState::Current => return Ok(before),
            SchemaState::Behind | SchemaState::Fresh => {}
            SchemaState::Ahead | SchemaState::Damaged => {
                before.require_current(&self.url)?;
            }
        }
        schema::apply(&self.pool, &schema::migrator(self.dialect)).await?;
        self.status().await
    }

    /// A consistent copy of a SQLite database at `dest` while others
    /// write to it (PostgreSQL: pg_dump).
    pub async fn backup(&self, dest: &Path) -> Result<()> {
        if self.dialect != Dialect::Sqlite {
            return Err(Error::invalid(
                "db",
                self.shown(),
                "db backup copies a SQLite database; for PostgreSQL use pg_dump (see the README)",
            ));
        }
        schema::vacuum_into(&self.pool, dest).await
    }

    /// Write everything (the WAL too) into the main file, for a database
    /// that is about to be moved aside.
    pub async fn checkpoint(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

impl SqlStore {
    /// Open the SQLite database file at `path`, which must have this
    /// binary's schema.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore> {
        sqlite_folder(path)?;
        SqlStore::open(&sqlite_url(path), Arc::new(SystemClock)).await
    }

    /// Open the SQLite database file at `path`, creating it (and its
    /// schema) when new: `vmfabric init`, the tour, benchmarks.
    pub async fn init_sqlite(path: &Path) -> Result<SqlStore> {
        sqlite_folder(path)?;
        SqlStore::init(&sqlite_url(path), Arc::new(SystemClock)).await
    }

    /// Open the database at `url` (`sqlite://PATH?mode=rwc` or
    /// `postgres://…`) with `clock`. It must have exactly this binary's
    /// schema: an older one is refused with `vmfabric db migrate` to run,
    /// a newer one (or none) is refused too, and nothing is written.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> Result<SqlStore> {
        SqlStore::open_with(url, clock, false).await
    }

    /// As [`SqlStore::open`], and a database without any schema gets this
    /// binary's (a new installation, a test's database).
    pub async fn init(url: &str, clock: Arc<dyn Clock>) -> Result<SqlStore> {
        SqlStore::open_with(url, clock, true).await
    }

    async fn open_with(url: &str, clock: Arc<dyn Clock>, init: bool) -> Result<SqlStore> {
        let (pool, dialect) = connect(url).await?;
        let migrator = schema::migrator(dialect);
        let status = schema::status(&pool, dialect, &migrator).await;
        let ready = match status {
            Ok(s) if init && s.state == SchemaState::Fresh => schema::apply(&pool, &migrator).await,
            Ok(s) => s.require_current(url),
            Err(e) => Err(e),
        };
        if let Err(e) = ready {
            pool.close().await;
            return Err(e);
        }
        let mut store = SqlStore {
            pool,
            dialect,
            clock,
            seed: 0,
        };
        store.seed = store.installation_seed().await?;
        Ok(store)
    }
}

/// A pool on `url`, checked at once for the reasons it could not work.
async fn connect(url: &str) -> Result<(AnyPool, Dialect)> {
    sqlx::any::install_default_drivers();
    let dialect = dialect_of(url)?;
    let opts: AnyConnectOptions = url
        .parse()
        .map_err(|e| Error::invalid("database", url, format!("not a database URL: {e}")))?;
    probe(&opts, dialect, url).await?;
    let pool = AnyPoolOptions::new()
        // SQLite has one writer; more connections only wait on its lock.
        .max_connections(if dialect == Dialect::Sqlite { 1 } else { 16 })
        .acquire_timeout(Duration::from_secs(30))
        // An embedded database has no connection to lose; a ping per
        // acquire would cost a round trip to the driver's thread.
        .test_before_acquire(dialect != Dialect::Sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    // WAL + FULL: every acknowledged commit is on disk
                    // before the call returns, even across power loss.
                    // Statement journals (savepoints, multi-row
                    // upserts) stay in memory. One round trip to the
                    // driver's thread for all of them: a command that
                    // opens the database pays each one.
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON; \
                             PRAGMA temp_store = MEMORY",
                    )
                    .execute(&mut *conn)
                    .await?;
                } else {
                    // Plans here are too short-lived for JIT compiling
                    // to pay off (it cost ~30 ms per batch, measured).
                    // Every statement of the store finds its rows by
                    // key. A plan cached while a table was nearly empty
                    // (a new installation) scanned it whole, and kept
                    // doing so as it grew, until the next ANALYZE: a VM
                    // create cost grew with the number of VMs (14 ms at
                    // 20,000, measured). No statement starts parallel
                    // workers either: starting one cost 5 ms of a
                    // node's 6 ms plan at 200,000 VMs (EXPLAIN ANALYZE).
                    sqlx::raw_sql(
                        "SET jit = off; SET enable_seqscan = off; \
                             SET max_parallel_workers_per_gather = 0",
                    )
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| Error::storage(format!("cannot open the database: {e}")))?;
    Ok((pool, dialect))
}

impl SqlStore {
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for benchmarks that compare against raw commits.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Serialise allocations in one block across controllers (PostgreSQL);
    /// SQLite's single writer already does.
    pub(crate) async fn lock_block(&self, tx: &mut Tx, block: i64) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT id FROM blocks WHERE id = $1 FOR UPDATE")
                .bind(block)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn installation_seed(&self) -> Result<u64> {
        // Read, and write only the first time: a write transaction would
        // take the write lock on every command.
        if let Some(row) = sqlx::query("SELECT value FROM meta WHERE key = 'seed'")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
        {
            return row.parsed("value");
        }
        // Quiet: opening the store changes nothing a plan depends on.
        let mut tx = self.begin_quiet().await?;
        // Only has to differ between installations, not be secret: the
        // standard library seeds RandomState from the operating system.
        let fresh = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('seed', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fresh.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'seed'")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await?;
        row.parsed("value")
    }

    /// A block as an operator names it: a CIDR or a range `A-B`; `what`
    /// says what was expected, for the error.
    pub(crate) fn block_text(field: &str, text: &str, what: &str) -> Result<vmfabric_ipam::Range> {
        text.parse::<vmfabric_ipam::Cidr>()
            .map(|c| c.range())
            .or_else(|_| vmfabric_ipam::Range::parse(text))
            .map_err(|e| Error::invalid(field, text, format!("{what}: {e}")))
    }

    /// Append to the change log (written with the commit, see `Tx::log`):
    /// what changed, in which cluster, and whose plans it may change.
    pub(crate) fn log_change(
        &self,
        tx: &mut Tx,
        kind: &str,
        subject: &str,
        cluster: Option<&str>,
        reach: Reach<'_>,
        detail: &serde_json::Value,
    ) {
        tx.log(
            self.now().0,
            &crate::actor(),
            kind,
            subject,
            cluster,
            reach,
            detail,
        );
    }

    /// Run a query that is not a static string (a few listings build their
    /// WHERE clauses from fixed fragments).
    pub(crate) fn dynamic(sql: String) -> AssertSqlSafe<String> {
        AssertSqlSafe(sql)
    }
}
