//! `vmfabric db`: the schema version, upgrades, backups and restores.
//! These commands work on a database whatever its schema (every other
//! command refuses one that is not this binary's).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmfabric_model::{Error, Result};
use vmfabric_store::sql::{Database, Dialect, SchemaState, SchemaStatus};

use crate::Out;
use crate::args::{Cli, DbCmd};
use crate::commands::{Target, existing, target};

pub async fn run(cli: &Cli, c: DbCmd) -> Result<Out> {
    if let Some(s) = &cli.server {
        return Err(Error::invalid(
            "server",
            s,
            "db works on the database itself (--db), not through a controller",
        ));
    }
    let target = target(cli.db.as_deref())?;
    match c {
        DbCmd::Status => {
            let d = connect(&target).await?;
            let s = d.status().await;
            d.close().await;
            let s = s?;
            Out::new(&s, status_text(&s))
        }
        DbCmd::Migrate { backup, no_backup } => migrate(&target, backup, no_backup).await,
        DbCmd::Backup { file } => {
            let started = std::time::Instant::now();
            match &target {
                Target::Url(u) if !u.starts_with("sqlite:") => pg_dump(u, &file)?,
                _ => {
                    let d = connect(&target).await?;
                    let r = d.backup(&file).await;
                    d.close().await;
                    r?;
                }
            }
            let ms = started.elapsed().as_millis();
            Out::new(
                &serde_json::json!({"backup": file, "millis": ms}),
                format!("backup written to {} in {ms} ms\n", file.display()),
            )
        }
        DbCmd::Restore { file } => restore(&target, &file).await,
    }
}

async fn connect(target: &Target) -> Result<Database> {
    match target {
        Target::Url(u) => Database::connect(u).await,
        Target::File(p) => {
            existing(p)?;
            Database::connect_sqlite(p).await
        }
    }
}

fn status_text(s: &SchemaStatus) -> String {
    let mut t = format!(
        "schema {} (this vmfabric: {}): {}\n",
        s.version,
        s.binary,
        match s.state {
            SchemaState::Current => "up to date",
            SchemaState::Fresh => "no schema yet: `vmfabric init` creates it",
            SchemaState::Behind => "migrations pending: `vmfabric db migrate` applies them",
            SchemaState::Ahead => "written by a newer vmfabric: this one will not use it",
            SchemaState::Damaged => "damaged: restore a backup",
        }
    );
    if let Some(p) = &s.problem {
        let _ = writeln!(t, "  {p}");
    }
    for p in &s.pending {
        let _ = writeln!(t, "  pending {:04} {}", p.version, p.description);
    }
    t
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn migrate(target: &Target, backup: Option<PathBuf>, no_backup: bool) -> Result<Out> {
    let d = connect(target).await?;
    let before = match d.status().await {
        Ok(s) => s,
        Err(e) => {
            d.close().await;
            return Err(e);
        }
    };
    match before.state {
        SchemaState::Current => {
            d.close().await;
            return Out::new(
                &serde_json::json!({"status": before, "applied": [], "backup": null}),
                format!("schema {}: up to date, nothing to do\n", before.version),
            );
        }
        SchemaState::Fresh => {
            d.close().await;
            return Err(Error::invalid(
                "db",
                d_shown(target),
                "no vmfabric schema here to migrate: `vmfabric init` creates a new database",
            ));
        }
        SchemaState::Ahead | SchemaState::Damaged => {
            d.close().await;
            before.require_current(&d_shown(target))?;
            return Err(Error::storage("unreachable: the schema is not current"));
        }
        SchemaState::Behind => {}
    }
    // The backup first: a migration that fails half-way (a full disk, a
    // killed process) leaves the database to be restored from it.
    let backup = if no_backup {
        None
    } else {
        let file = backup.unwrap_or_else(|| default_backup(target, before.version));
        let made = match target {
            Target::Url(u) if d.dialect() == Dialect::Postgres => pg_dump(u, &file),
            _ => d.backup(&file).await,
        };
        if let Err(e) = made {
            d.close().await;
            return Err(e);
        }
        Some(file)
    };
    let after = d.migrate().await;
    d.close().await;
    let after = after?;
    let applied: Vec<_> = before.pending.iter().map(|p| p.version).collect();
    let mut text = format!(
        "schema {} -> {}: applied {}\n",
        before.version,
        after.version,
        before
            .pending
            .iter()
            .map(|p| format!("{:04} {}", p.version, p.description))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &backup {
        Some(b) => {
            let _ = writeln!(text, "backup of schema {}: {}", before.version, b.display());
        }
        None => text.push_str("no backup taken (--no-backup)\n"),
    }
    Out::new(
        &serde_json::json!({"status": after, "applied": applied, "backup": backup}),
        text,
    )
}

fn d_shown(target: &Target) -> String {
    match target {
        Target::Url(u) => vmfabric_store::sql::redacted_url(u),
        Target::File(p) => p.display().to_string(),
    }
}

/// Where `db migrate` puts its backup when not told.
fn default_backup(target: &Target, version: i64) -> PathBuf {
    let stamp = now_secs();
    match sqlite_path(target) {
        Some(p) => {
            let mut name = p.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".schema-{version}-{stamp}.bak"));
            p.with_file_name(name)
        }
        None => PathBuf::from(format!("vmfabric-schema-{version}-{stamp}.dump")),
    }
}

/// The file of a SQLite target.
fn sqlite_path(target: &Target) -> Option<PathBuf> {
    match target {
        Target::File(p) => Some(p.clone()),
        Target::Url(u) => u
            .strip_prefix("sqlite://")
            .and_then(|rest| rest.split('?').next())
            .map(PathBuf::from),
    }
}

/// `url` for a client program: without the password, which goes into
/// PGPASSWORD instead (never on a command line others can read).
fn without_password(url: &str) -> (String, Option<String>) {
    if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@'))
        && at > scheme
        && let Some((user, pass)) = url[scheme + 3..at].split_once(':')
    {
        return (
            format!("{}{user}{}", &url[..scheme + 3], &url[at..]),
            Some(pass.to_string()),
        );
    }
    (url.to_string(), None)
}

/// A PostgreSQL backup with pg_dump (custom format: `pg_restore` reads it).
fn pg_dump(url: &str, file: &Path) -> Result<()> {
    if file.exists() {
        return Err(Error::invalid(
            "file",
            file.display(),
            "exists already: a backup never overwrites a file",
        ));
    }
    let (url, password) = without_password(url);
    let mut c = Command::new("pg_dump");
    c.args(["--format=custom", "--no-owner", "--file"])
        .arg(file)
        .arg(format!("--dbname={url}"));
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    let out = c.output().map_err(|e| {
        Error::unavailable(format!(
            "cannot run pg_dump ({e}): apt-get install postgresql-client"
        ))
    })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(file);
        return Err(Error::storage(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The processes (pid and name) that have `path` open, from /proc.
fn holders(path: &Path) -> Vec<String> {
    let Ok(want) = path.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == want))
        {
            let name = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("{pid} ({})", name.trim()));
        }
    }
    found
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Put a backup in the database's place. The backup itself is never
/// changed (a copy is checked and moved in), and the database it replaces
/// is kept beside it under `DB.replaced-TIME`.
async fn restore(target: &Target, file: &Path) -> Result<Out> {
    let Some(db) = sqlite_path(target) else {
        return Err(Error::invalid(
            "db",
            d_shown(target),
            "db restore replaces a SQLite file; for PostgreSQL use pg_restore (see the README)",
        ));
    };
    if !file.is_file() {
        return Err(Error::invalid("file", file.display(), "no such file"));
    }
    let busy = holders(&db);
    if !busy.is_empty() {
        return Err(Error::conflict(
            "db",
            db.display(),
            format!(
                "in use by {}: stop the controller and agents on it first (systemctl stop vmfabric-serve)",
                busy.join(", ")
            ),
        ));
    }
    let incoming = with_suffix(&db, &format!(".restoring-{}", std::process::id()));
    let cleanup = |p: &Path| {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(p, s));
        }
    };
    cleanup(&incoming);
    std::fs::copy(file, &incoming).map_err(|e| {
        Error::invalid(
            "file",
            file.display(),
            format!("cannot copy it next to the database: {e}"),
        )
    })?;
    let checked = async {
        let d = Database::connect_sqlite(&incoming).await.map_err(|e| {
            Error::invalid(
                "file",
                file.display(),
                format!("not a SQLite database: {e}"),
            )
        })?;
        let s = d.status().await;
        let flushed = d.checkpoint().await;
        d.close().await;
        let s = s.map_err(|e| {
            Error::invalid(
                "file",
                file.display(),
                format!("not a vmfabric database: {e}"),
            )
        })?;
        flushed?;
        match s.state {
            SchemaState::Current | SchemaState::Behind => Ok(s),
            _ => Err(Error::invalid(
                "file",
                file.display(),
                format!(
                    "not a backup this vmfabric can use: {}",
                    status_text(&s).trim()
                ),
            )),
        }
    }
    .await;
    let status = match checked {
        Ok(s) => s,
        Err(e) => {
            cleanup(&incoming);
            return Err(e);
        }
    };
    let replaced = with_suffix(&db, &format!(".replaced-{}", now_secs()));
    if db.exists() {
        // The WAL goes with its database: SQLite finds it by name.
        for s in ["", "-wal"] {
            let from = with_suffix(&db, s);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&replaced, s)).map_err(|e| {
                    Error::storage(format!("cannot move {} aside: {e}", from.display()))
                })?;
            }
        }
        let _ = std::fs::remove_file(with_suffix(&db, "-shm"));
    }
    let _ = std::fs::remove_file(with_suffix(&incoming, "-shm"));
    std::fs::rename(&incoming, &db)
        .map_err(|e| Error::storage(format!("cannot put the backup in place: {e}")))?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    let mut text = format!(
        "{} restored from {} (schema {})\n",
        db.display(),
        file.display(),
        status.version
    );
    if replaced.exists() {
        let _ = writeln!(text, "the database it replaced: {}", replaced.display());
    }
    if status.state == SchemaState::Behind {
        text.push_str("its schema is older than this vmfabric's: run `vmfabric db migrate`\n");
    }
    Out::new(
        &serde_json::json!({
            "db": db,
            "from": file,
            "replaced": replaced.exists().then_some(&replaced),
            "status": status,
        }),
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        assert_eq!(
            without_password("postgres://vmfabric:s3cret@127.0.0.1:5432/db"),
            (
                "postgres://vmfabric@127.0.0.1:5432/db".to_string(),
                Some("s3cret".to_string())
            )
        );
        assert_eq!(
            without_password("postgres://127.0.0.1/db"),
            ("postgres://127.0.0.1/db".to_string(), None)
        );
    }
}
