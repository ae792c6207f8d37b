//! The schema version: which migrations a database has, against this
//! binary's. Opening for work requires exactly this binary's schema;
//! only `init` (a fresh database) and `db migrate` change it.

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;
use sqlx::migrate::{Migration, Migrator};
use sqlx::{AnyPool, Row};
use vmfabric_model::{Error, Result};

use super::{Dialect, db, redacted};

/// This binary's migrations, every file of `migrations/<dialect>/`
/// (`migrate!` embeds the folder, so no file can be left out).
pub(crate) fn migrator(dialect: Dialect) -> Migrator {
    let embedded = match dialect {
        Dialect::Sqlite => sqlx_macros::migrate!("migrations/sqlite"),
        Dialect::Postgres => sqlx_macros::migrate!("migrations/postgres"),
    };
    // Releases up to schema 9 listed the migrations by hand and said "no
    // transaction" beside the file instead of in it: the checksum they
    // recorded is that of the file without its `-- no-transaction` line.
    // Keeping that checksum lets databases of those releases open, and
    // those releases open a database this one created.
    let migrations: Vec<Migration> = embedded
        .migrations
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if m.no_tx {
                let sql = m.sql.as_str();
                let body = sql
                    .strip_prefix("-- no-transaction")
                    .map_or(sql, |rest| rest.strip_prefix('\n').unwrap_or(rest));
                m.checksum = Cow::Owned(checksum(body));
            }
            m
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..embedded
    }
}

/// sqlx's checksum of a migration: SHA-384 of its text.
fn checksum(sql: &str) -> Vec<u8> {
    use sha2::{Digest, Sha384};
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// The schema version this binary writes: its newest migration.
pub fn schema_version() -> i64 {
    migrator(Dialect::Sqlite)
        .migrations
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Where a database stands against this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaState {
    /// Exactly this binary's schema.
    Current,
    /// No schema at all: `vmfabric init` creates it.
    Fresh,
    /// Older: `vmfabric db migrate` brings it up to date.
    Behind,
    /// Written by a newer vmfabric: this binary must not touch it.
    Ahead,
    /// A migration failed half-way, or the recorded ones are not this
    /// binary's (changed or unknown): restore a backup.
    Damaged,
}

/// One migration this binary has and the database has not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingMigration {
    pub version: i64,
    pub description: String,
}

/// The schema of a database, as `vmfabric db status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaStatus {
    pub state: SchemaState,
    /// The database's newest applied migration (0: none).
    pub version: i64,
    /// This binary's newest migration.
    pub binary: i64,
    pub pending: Vec<PendingMigration>,
    /// What is wrong, for `Damaged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl SchemaStatus {
    /// The error a command meets when the database is not at this
    /// binary's schema, saying what to do; `Ok` when it is.
    pub fn require_current(&self, url: &str) -> Result<()> {
        // A file as the user gave it, a server without its password.
        let shown = match url.strip_prefix("sqlite://") {
            Some(path) => path.split('?').next().unwrap_or(path).to_string(),
            None => redacted(url),
        };
        let rule = match self.state {
            SchemaState::Current => return Ok(()),
            SchemaState::Fresh => {
                "no vmfabric schema in this database: `vmfabric init` creates it".to_string()
            }
            SchemaState::Behind => format!(
                "the database has schema {}, this vmfabric needs {} ({} migration{} pending): \
                 run `vmfabric db migrate` (it takes a backup first), then try again",
                self.version,
                self.binary,
                self.pending.len(),
                if self.pending.len() == 1 { "" } else { "s" }
            ),
            SchemaState::Ahead => format!(
                "the database has schema {}, written by a newer vmfabric than this one (schema {}): \
                 use that vmfabric or a newer one; this one changes nothing",
                self.version, self.binary
            ),
            SchemaState::Damaged => format!(
                "the database's schema is damaged ({}): restore a backup (`vmfabric db restore`)",
                self.problem.as_deref().unwrap_or("unknown")
            ),
        };
        Err(Error::conflict("database", shown, rule))
    }
}

/// Compare the migrations recorded in the database with `migrator`'s. One
/// query when the table exists (every command pays it).
pub(crate) async fn status(
    pool: &AnyPool,
    dialect: Dialect,
    migrator: &Migrator,
) -> Result<SchemaStatus> {
    let binary = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let rows = match sqlx::query(
        "SELECT version, checksum, CAST(success AS INTEGER) AS ok FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            if has_migrations_table(pool, dialect).await? {
                return Err(db(e));
            }
            return Ok(SchemaStatus {
                state: SchemaState::Fresh,
                version: 0,
                binary,
                pending: pending(migrator, &[]),
                problem: None,
            });
        }
    };
    let mut applied = Vec::with_capacity(rows.len());
    for r in &rows {
        let version: i64 = r.try_get("version").map_err(db)?;
        let checksum: Vec<u8> = r.try_get("checksum").map_err(db)?;
        let ok: i64 = r.try_get("ok").map_err(db)?;
        applied.push((version, checksum, ok == 1));
    }
    Ok(classify(migrator, &applied, binary))
}

/// The pure part of [`status`]: `applied` is (version, checksum, success)
/// as recorded.
fn classify(migrator: &Migrator, applied: &[(i64, Vec<u8>, bool)], binary: i64) -> SchemaStatus {
    let version = applied.iter().map(|a| a.0).max().unwrap_or(0);
    let damaged = |problem: String| SchemaStatus {
        state: SchemaState::Damaged,
        version,
        binary,
        pending: Vec::new(),
        problem: Some(problem),
    };
    if let Some((v, _, _)) = applied.iter().find(|a| !a.2) {
        return damaged(format!("migration {v} failed half-way"));
    }
    if version > binary {
        return SchemaStatus {
            state: SchemaState::Ahead,
            version,
            binary,
            pending: Vec::new(),
            problem: None,
        };
    }
    for (v, sum, _) in applied {
        match migrator.iter().find(|m| m.version == *v) {
            None => return damaged(format!("migration {v} is not one of this vmfabric's")),
            Some(m) if m.checksum.as_ref() != sum.as_slice() => {
                return damaged(format!("migration {v} differs from this vmfabric's"));
            }
            Some(_) => {}
        }
    }
    let versions: Vec<i64> = applied.iter().map(|a| a.0).collect();
    let pending = pending(migrator, &versions);
    if let Some(p) = pending.iter().find(|p| p.version < version) {
        return damaged(format!(
            "migration {} is missing below the applied {version}",
            p.version
        ));
    }
    SchemaStatus {
        state: if applied.is_empty() {
            SchemaState::Fresh
        } else if pending.is_empty() {
            SchemaState::Current
        } else {
            SchemaState::Behind
        },
        version,
        binary,
        pending,
        problem: None,
    }
}

fn pending(migrator: &Migrator, applied: &[i64]) -> Vec<PendingMigration> {
    migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| PendingMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect()
}

async fn has_migrations_table(pool: &AnyPool, dialect: Dialect) -> Result<bool> {
    let sql = match dialect {
        Dialect::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let n: i64 = sqlx::query(sql)
        .fetch_one(pool)
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(db)?;
    Ok(n > 0)
}

/// Apply the pending migrations (each recorded as it completes).
pub(crate) async fn apply(pool: &AnyPool, migrator: &Migrator) -> Result<()> {
    migrator
        .run(pool)
        .await
        .map_err(|e| Error::storage(format!("cannot migrate the database: {e}")))
}

/// A consistent copy of the SQLite database behind `pool` at `dest`,
/// taken while others keep writing (`VACUUM INTO` reads one snapshot),
/// on disk before this returns. Written under a temporary name first: a
/// copy cut short never looks like a backup.
pub(crate) async fn vacuum_into(pool: &AnyPool, dest: &Path) -> Result<()> {
    let field = |why: String| Error::invalid("file", dest.display(), why);
    if dest.exists() {
        return Err(field(
            "exists already: a backup never overwrites a file".into(),
        ));
    }
    let name = dest
        .file_name()
        .ok_or_else(|| field("names a folder, not a file".into()))?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(field(format!(
            "the folder {} does not exist",
            dir.display()
        )));
    }
    let mut partial_name = name.to_os_string();
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = dir.join(partial_name);
    let _ = std::fs::remove_file(&partial);
    let text = partial
        .to_str()
        .ok_or_else(|| field("is not valid UTF-8".into()))?
        .to_string();
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(text)
        .execute(pool)
        .await
        .map_err(|e| field(format!("cannot write the copy: {e}")));
    let synced = copied.and_then(|_| {
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| field(format!("cannot flush the copy: {e}")))
    });
    if let Err(e) = synced {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    // Link, not rename: a file that appeared meanwhile is never replaced.
    let placed = std::fs::hard_link(&partial, dest);
    let _ = std::fs::remove_file(&partial);
    placed.map_err(|e| field(format!("cannot put the copy in place: {e}")))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| field(format!("cannot flush the folder: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sums(d: Dialect) -> Vec<(i64, Vec<u8>, bool)> {
        migrator(d)
            .iter()
            .map(|m| (m.version, m.checksum.to_vec(), true))
            .collect()
    }

    #[test]
    fn every_migration_file_is_embedded_and_numbered_without_gaps() {
        for (d, dir) in [(Dialect::Sqlite, "sqlite"), (Dialect::Postgres, "postgres")] {
            let files =
                std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap()
                    .count();
            let m = migrator(d);
            assert_eq!(m.migrations.len(), files, "{dir}");
            let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
            assert_eq!(versions, (1..=files as i64).collect::<Vec<_>>(), "{dir}");
        }
        assert_eq!(
            schema_version(),
            migrator(Dialect::Postgres).iter().count() as i64
        );
    }

    #[test]
    fn the_checksum_of_a_no_transaction_migration_leaves_out_its_directive() {
        let m = migrator(Dialect::Sqlite);
        let six = m.iter().find(|m| m.version == 6).unwrap();
        assert!(
            six.no_tx,
            "SQLite 0006 rebuilds a table with foreign keys off"
        );
        let body = six
            .sql
            .as_str()
            .strip_prefix("-- no-transaction\n")
            .unwrap();
        assert_eq!(six.checksum.as_ref(), checksum(body).as_slice());
    }

    #[test]
    fn states() {
        let m = migrator(Dialect::Sqlite);
        let all = sums(Dialect::Sqlite);
        let n = all.len();
        let binary = n as i64;
        assert_eq!(classify(&m, &all, binary).state, SchemaState::Current);
        assert_eq!(classify(&m, &[], binary).state, SchemaState::Fresh);
        let behind = classify(&m, &all[..n - 2], binary);
        assert_eq!(behind.state, SchemaState::Behind);
        assert_eq!(behind.version, binary - 2);
        assert_eq!(behind.pending.len(), 2);
        let mut ahead = all.clone();
        ahead.push((binary + 1, vec![1], true));
        assert_eq!(classify(&m, &ahead, binary).state, SchemaState::Ahead);
        let mut changed = all.clone();
        changed[2].1 = vec![0; 48];
        let c = classify(&m, &changed, binary);
        assert_eq!(c.state, SchemaState::Damaged);
        assert!(c.problem.unwrap().contains("migration 3 differs"));
        let mut failed = all.clone();
        failed[n - 1].2 = false;
        assert_eq!(classify(&m, &failed, binary).state, SchemaState::Damaged);
        let gap: Vec<_> = all.iter().filter(|a| a.0 != 4).cloned().collect();
        assert_eq!(classify(&m, &gap, binary).state, SchemaState::Damaged);
        let err = behind
            .require_current("sqlite:///x.db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vmfabric db migrate"), "{err}");
    }
}
