//! The configuration file (`/etc/vmfabric/vmfabric.toml`, `--config`,
//! `$VMFABRIC_CONFIG`): everything the command line can say, for the
//! services. A flag or environment variable wins over the file, the file
//! over the built-in default; `vmfabric config show` says which one each
//! value came from.
//!
//! Pure: the file's text goes in, checked settings come out; reading the
//! file and changing the parsed command line happen in [`load`] and
//! [`apply`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use toml::Spanned;
use vmfabric_model::{Error, Result};

use crate::args::{AgentDaemons, AgentRun, Cli, Command, LogFormat, ServeArgs};

/// Where the packaged services read their settings.
pub const DEFAULT_PATH: &str = "/etc/vmfabric/vmfabric.toml";

/// What a value of the file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A SQLite file (absolute path) or a sqlite:// or postgres:// URL.
    Database,
    /// An http:// or https:// URL.
    Url,
    Text,
    /// An absolute path: a relative one would depend on where the
    /// service happens to start.
    Path,
    /// ADDRESS:PORT.
    Listen,
    /// An integer, 1 or more.
    Count,
    /// Seconds, more than 0 (fractions allowed).
    Seconds,
    LogFormat,
}

/// One setting: its key in the file, the clap argument it stands for
/// (in the subcommand `sub`, or global), and its environment variable.
#[derive(Debug)]
struct Setting {
    key: &'static str,
    sub: Option<&'static str>,
    arg: &'static str,
    env: Option<&'static str>,
    kind: Kind,
    secret: bool,
}

const fn global(key: &'static str, env: Option<&'static str>, kind: Kind, secret: bool) -> Setting {
    Setting {
        key,
        sub: None,
        arg: key,
        env,
        kind,
        secret,
    }
}

const fn of(sub: &'static str, key: &'static str, arg: &'static str, kind: Kind) -> Setting {
    Setting {
        key,
        sub: Some(sub),
        arg,
        env: None,
        kind,
        secret: false,
    }
}

/// Every setting of the file, in the order `config show` lists them.
const SETTINGS: &[Setting] = &[
    global("db", Some("VMFABRIC_DB"), Kind::Database, false),
    global("server", Some("VMFABRIC_SERVER"), Kind::Url, false),
    global("token", Some("VMFABRIC_TOKEN"), Kind::Text, true),
    global("ca_cert", Some("VMFABRIC_CA_CERT"), Kind::Path, false),
    global("log_format", None, Kind::LogFormat, false),
    of("serve", "serve.listen", "listen", Kind::Listen),
    of("serve", "serve.tls_cert", "tls_cert", Kind::Path),
    of("serve", "serve.tls_key", "tls_key", Kind::Path),
    of(
        "serve",
        "serve.commit_workers",
        "commit_workers",
        Kind::Count,
    ),
    of(
        "serve",
        "serve.max_connections",
        "max_connections",
        Kind::Count,
    ),
    of(
        "serve",
        "serve.header_timeout",
        "header_timeout",
        Kind::Count,
    ),
    of("serve", "serve.idle_timeout", "idle_timeout", Kind::Count),
    of("serve", "serve.body_timeout", "body_timeout", Kind::Count),
    of("agent", "agent.node", "node", Kind::Text),
    Setting {
        env: Some("VMFABRIC_SERVER"),
        ..of("agent", "agent.server", "server", Kind::Url)
    },
    Setting {
        env: Some("VMFABRIC_TOKEN"),
        secret: true,
        ..of("agent", "agent.token", "token", Kind::Text)
    },
    of("agent", "agent.interval", "interval", Kind::Seconds),
    of("agent", "agent.state_dir", "state_dir", Kind::Path),
    of("agent", "agent.frr_dir", "frr_dir", Kind::Path),
    of("agent", "agent.frr_socket", "frr_socket", Kind::Path),
    of("agent", "agent.frr_reload", "frr_reload", Kind::Path),
    of("agent", "agent.ndppd_conf", "ndppd_conf", Kind::Path),
    of("agent", "agent.ndppd_pid", "ndppd_pid", Kind::Path),
];

// ---------------------------------------------------------------------------
// The file

type S = Option<Spanned<String>>;
type N = Option<Spanned<i64>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTop {
    db: S,
    server: S,
    token: S,
    ca_cert: S,
    log_format: S,
    #[serde(default)]
    serve: FileServe,
    #[serde(default)]
    agent: FileAgent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServe {
    listen: S,
    tls_cert: S,
    tls_key: S,
    commit_workers: N,
    max_connections: N,
    header_timeout: N,
    idle_timeout: N,
    body_timeout: N,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    node: S,
    server: S,
    token: S,
    interval: Option<Spanned<f64>>,
    state_dir: S,
    frr_dir: S,
    frr_socket: S,
    frr_reload: S,
    ndppd_conf: S,
    ndppd_pid: S,
}

/// A value of the file, checked, with the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct FileValue {
    pub text: String,
    pub line: usize,
}

/// A configuration file, read and checked.
#[derive(Debug, Clone, Default)]
pub struct File {
    pub path: Option<PathBuf>,
    values: BTreeMap<&'static str, FileValue>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// The key written on line `line`, with the table it is in (`serve.listen`).
fn key_on_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = t.trim().to_string();
        }
        if i + 1 == line {
            let key = l.split('=').next().unwrap_or("").trim();
            if l.starts_with('[') || key.is_empty() {
                return table;
            }
            return if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
        }
    }
    table
}

/// Check the text of a configuration file (`shown` names it in errors).
pub fn parse(text: &str, shown: &str) -> Result<BTreeMap<&'static str, FileValue>> {
    let top: FileTop = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        let key = key_on_line(text, line);
        let what = e.message().trim().replace('\n', " ");
        let rule = if what.starts_with("unknown field") {
            format!("not a setting of vmfabric ({what}); `vmfabric config show` lists them all")
        } else {
            what
        };
        Error::invalid(&format!("{shown} line {line}, key {key}"), "", rule)
    })?;
    let mut raw: Vec<(&'static str, String, std::ops::Range<usize>)> = Vec::new();
    let mut s = |key: &'static str, v: S| {
        if let Some(v) = v {
            let span = v.span();
            raw.push((key, v.into_inner(), span));
        }
    };
    s("db", top.db);
    s("server", top.server);
    s("token", top.token);
    s("ca_cert", top.ca_cert);
    s("log_format", top.log_format);
    s("serve.listen", top.serve.listen);
    s("serve.tls_cert", top.serve.tls_cert);
    s("serve.tls_key", top.serve.tls_key);
    s("agent.node", top.agent.node);
    s("agent.server", top.agent.server);
    s("agent.token", top.agent.token);
    s("agent.state_dir", top.agent.state_dir);
    s("agent.frr_dir", top.agent.frr_dir);
    s("agent.frr_socket", top.agent.frr_socket);
    s("agent.frr_reload", top.agent.frr_reload);
    s("agent.ndppd_conf", top.agent.ndppd_conf);
    s("agent.ndppd_pid", top.agent.ndppd_pid);
    let mut n = |key: &'static str, v: N| {
        if let Some(v) = v {
            let span = v.span();
            raw.push((key, v.into_inner().to_string(), span));
        }
    };
    n("serve.commit_workers", top.serve.commit_workers);
    n("serve.max_connections", top.serve.max_connections);
    n("serve.header_timeout", top.serve.header_timeout);
    n("serve.idle_timeout", top.serve.idle_timeout);
    n("serve.body_timeout", top.serve.body_timeout);
    if let Some(v) = top.agent.interval {
        let span = v.span();
        raw.push(("agent.interval", v.into_inner().to_string(), span));
    }
    let mut values = BTreeMap::new();
    for (key, text_value, span) in raw {
        let line = line_of(text, span.start);
        let setting = SETTINGS
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| Error::storage(format!("setting {key} is not in the table")))?;
        if let Err(rule) = check(setting.kind, &text_value) {
            let shown_value = if setting.secret { "" } else { &text_value };
            return Err(Error::invalid(
                &format!("{shown} line {line}, key {key}"),
                shown_value,
                rule,
            ));
        }
        values.insert(
            key,
            FileValue {
                text: text_value,
                line,
            },
        );
    }
    for (a, b) in [
        ("serve.tls_cert", "serve.tls_key"),
        ("serve.tls_key", "serve.tls_cert"),
    ] {
        if let (Some(v), None) = (values.get(a), values.get(b)) {
            return Err(Error::invalid(
                &format!("{shown} line {}, key {a}", v.line),
                &v.text,
                format!("TLS needs both serve.tls_cert and serve.tls_key: {b} is missing"),
            ));
        }
    }
    Ok(values)
}

/// Whether `v` is a value of `kind`; the rule it breaks if not.
fn check(kind: Kind, v: &str) -> std::result::Result<(), String> {
    let ok = match kind {
        Kind::Database => {
            v.starts_with("sqlite:")
                || v.starts_with("postgres:")
                || v.starts_with("postgresql:")
                || Path::new(v).is_absolute()
        }
        Kind::Url => v.starts_with("http://") || v.starts_with("https://"),
        Kind::Text => !v.trim().is_empty(),
        Kind::Path => Path::new(v).is_absolute(),
        Kind::Listen => v.trim().parse::<std::net::SocketAddr>().is_ok(),
        Kind::Count => v.parse::<u64>().is_ok_and(|n| n >= 1),
        Kind::Seconds => v.parse::<f64>().is_ok_and(|s| s.is_finite() && s > 0.0),
        Kind::LogFormat => v == "text" || v == "json",
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Kind::Database => {
            "an absolute path of a SQLite file, or a sqlite:// or postgres:// URL".into()
        }
        Kind::Url => "an http:// or https:// URL of the controller".into(),
        Kind::Text => "not empty".into(),
        Kind::Path => "an absolute path".into(),
        Kind::Listen => "an address and port, e.g. 127.0.0.1:7480 or [::]:7480".into(),
        Kind::Count => "a whole number, 1 or more".into(),
        Kind::Seconds => "a number of seconds, more than 0".into(),
        Kind::LogFormat => "text or json".into(),
    })
}

/// Read the configuration file: `--config`/`$VMFABRIC_CONFIG` (which
/// must exist), else the default path when there is a file there.
pub fn load(explicit: Option<&Path>) -> Result<File> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = PathBuf::from(DEFAULT_PATH);
            if !p.exists() {
                return Ok(File::default());
            }
            p
        }
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::invalid("config", &shown, format!("cannot read: {e}")))?;
    Ok(File {
        values: parse(&text, &shown)?,
        path: Some(path),
    })
}

// ---------------------------------------------------------------------------
// Applying it

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf, usize),
    Default,
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "command line"),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::File(p, line) => write!(f, "{}:{line}", p.display()),
            Source::Default => write!(f, "default"),
            Source::Unset => write!(f, "not set"),
        }
    }
}

/// How `arg` got its value in `m`, the matches of its command.
fn given(m: Option<&ArgMatches>, arg: &str) -> Option<ValueSource> {
    m.and_then(|m| m.try_contains_id(arg).ok().and(m.value_source(arg)))
}

fn overridden(m: Option<&ArgMatches>, arg: &str) -> bool {
    matches!(
        given(m, arg),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Put the file's values into the parsed command line wherever neither a
/// flag nor an environment variable gave one.
pub fn apply(cli: &mut Cli, matches: &ArgMatches, file: &File) -> Result<()> {
    let v = |key: &str| file.values.get(key).map(|v| v.text.clone());
    // A file's `server` would send every command to the controller, but
    // serve, init and db work on the database itself: for them the file's
    // `server` does not apply (a flag still conflicts, as before).
    let uses_server = !matches!(
        cli.command,
        Command::Serve(_) | Command::Init | Command::Db(_) | Command::Config(_)
    );
    if !overridden(Some(matches), "db")
        && let Some(db) = v("db")
    {
        cli.db = Some(db);
    }
    if uses_server && !overridden(Some(matches), "server") {
        cli.server = cli.server.take().or(v("server"));
    }
    if !overridden(Some(matches), "token") {
        cli.token = cli.token.take().or(v("token"));
    }
    if !overridden(Some(matches), "ca_cert") {
        cli.ca_cert = cli.ca_cert.take().or(v("ca_cert").map(PathBuf::from));
    }
    if !overridden(Some(matches), "log_format")
        && let Some(f) = v("log_format")
    {
        cli.log_format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    let sub = matches.subcommand().map(|(_, m)| m);
    match &mut cli.command {
        Command::Serve(a) => apply_serve(a, sub, file)?,
        Command::Agent(a) => {
            if a.status.is_none() {
                // The agent's own server and token, for a node whose CLI
                // otherwise works on the controller's database.
                if !overridden(Some(matches), "server")
                    && let Some(s) = v("agent.server")
                {
                    cli.server = Some(s);
                }
                if !overridden(Some(matches), "token")
                    && let Some(t) = v("agent.token")
                {
                    cli.token = Some(t);
                }
                apply_agent(&mut a.run, sub, file)?;
            } else if let Some(crate::args::AgentCmd::Status { daemons }) = &mut a.status {
                let m = sub.and_then(|m| m.subcommand().map(|(_, m)| m));
                apply_daemons(daemons, m, file);
            }
        }
        _ => {}
    }
    Ok(())
}

fn number<T: std::str::FromStr>(file: &File, key: &str) -> Result<Option<T>> {
    match file.values.get(key) {
        None => Ok(None),
        Some(v) => v
            .text
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid(key, &v.text, "a number")),
    }
}

fn apply_serve(a: &mut ServeArgs, m: Option<&ArgMatches>, file: &File) -> Result<()> {
    let text = |key: &str| file.values.get(key).map(|v| v.text.clone());
    if !overridden(m, "listen")
        && let Some(l) = text("serve.listen")
    {
        a.listen = l;
    }
    // TLS comes as a pair: a flag for one replaces the file's pair.
    if !overridden(m, "tls_cert") && !overridden(m, "tls_key") {
        if let Some(c) = text("serve.tls_cert") {
            a.tls_cert = Some(c.into());
        }
        if let Some(k) = text("serve.tls_key") {
            a.tls_key = Some(k.into());
        }
    }
    if !overridden(m, "commit_workers")
        && let Some(n) = number(file, "serve.commit_workers")?
    {
        a.commit_workers = Some(n);
    }
    for (arg, key, field) in [(
        "max_connections",
        "serve.max_connections",
        &mut a.max_connections,
    )] {
        if !overridden(m, arg)
            && let Some(n) = number(file, key)?
        {
            *field = n;
        }
    }
    for (arg, key, field) in [
        (
            "header_timeout",
            "serve.header_timeout",
            &mut a.header_timeout,
        ),
        ("idle_timeout", "serve.idle_timeout", &mut a.idle_timeout),
        ("body_timeout", "serve.body_timeout", &mut a.body_timeout),
    ] {
        if !overridden(m, arg)
            && let Some(n) = number(file, key)?
        {
            *field = n;
        }
    }
    Ok(())
}

fn apply_agent(a: &mut AgentRun, m: Option<&ArgMatches>, file: &File) -> Result<()> {
    if !overridden(m, "node") {
        a.node = a
            .node
            .take()
            .or(file.values.get("agent.node").map(|v| v.text.clone()));
    }
    if !overridden(m, "interval")
        && let Some(s) = number(file, "agent.interval")?
    {
        a.interval = s;
    }
    apply_daemons(&mut a.daemons, m, file);
    Ok(())
}

fn apply_daemons(d: &mut AgentDaemons, m: Option<&ArgMatches>, file: &File) {
    let path = |key: &str| file.values.get(key).map(|v| PathBuf::from(&v.text));
    for (arg, key, field) in [
        ("state_dir", "agent.state_dir", &mut d.state_dir),
        ("frr_dir", "agent.frr_dir", &mut d.frr_dir),
        ("frr_reload", "agent.frr_reload", &mut d.frr_reload),
        ("ndppd_conf", "agent.ndppd_conf", &mut d.ndppd_conf),
        ("ndppd_pid", "agent.ndppd_pid", &mut d.ndppd_pid),
    ] {
        if !overridden(m, arg)
            && let Some(p) = path(key)
        {
            *field = p;
        }
    }
    if !overridden(m, "frr_socket") {
        d.frr_socket = d.frr_socket.take().or(path("agent.frr_socket"));
    }
}

// ---------------------------------------------------------------------------
// `config show`

/// One line of `config show`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    pub key: &'static str,
    pub value: Option<String>,
    pub source: String,
}

/// A secret as shown: only that it is set.
fn masked(setting: &Setting, value: &str) -> String {
    if setting.secret {
        "********".into()
    } else if setting.kind == Kind::Database || setting.kind == Kind::Url {
        vmfabric_store::sql::redacted_url(value)
    } else {
        value.to_string()
    }
}

/// The effective configuration: every setting, its value (secrets
/// masked) and where it came from. `matches` are those of `config show`
/// itself, so only global flags and environment variables can be there.
pub fn show(matches: &ArgMatches, file: &File) -> Vec<Shown> {
    let root = <Cli as clap::CommandFactory>::command();
    SETTINGS
        .iter()
        .map(|s| {
            let from_cli = if s.sub.is_none() || s.env.is_some() {
                // Global flags (and the agent's server and token, which
                // are the global ones) may come from the command line or
                // the environment.
                let arg = s.arg;
                match given(Some(matches), arg) {
                    Some(ValueSource::CommandLine) => matches
                        .get_raw(arg)
                        .and_then(|mut v| v.next())
                        .map(|v| (v.to_string_lossy().to_string(), Source::Flag)),
                    Some(ValueSource::EnvVariable) => s
                        .env
                        .and_then(|env| std::env::var(env).ok().map(|v| (v, Source::Env(env)))),
                    _ => None,
                }
            } else {
                None
            };
            let from_file = || {
                file.values.get(s.key).map(|v| {
                    (
                        v.text.clone(),
                        Source::File(file.path.clone().unwrap_or_default(), v.line),
                    )
                })
            };
            let default = || {
                let cmd = match s.sub {
                    Some(sub) => root.find_subcommand(sub)?,
                    None => &root,
                };
                let arg = cmd.get_arguments().find(|a| a.get_id() == s.arg)?;
                let d = arg.get_default_values().first()?;
                Some((d.to_string_lossy().to_string(), Source::Default))
            };
            let (value, source) = match from_cli.or_else(from_file).or_else(default) {
                Some((v, src)) => (Some(masked(s, &v)), src),
                None => (None, Source::Unset),
            };
            Shown {
                key: s.key,
                value,
                source: source.to_string(),
            }
        })
        .collect()
}

pub fn show_text(file: &File, shown: &[Shown]) -> String {
    let mut t = match &file.path {
        Some(p) => format!("# configuration file: {}\n", p.display()),
        None => format!("# configuration file: none ({DEFAULT_PATH} does not exist)\n"),
    };
    let width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in shown {
        let value = s.value.as_deref().unwrap_or("-");
        let _ = writeln!(t, "{:width$}  {value}  ({})", s.key, s.source);
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "/etc/vmfabric/vmfabric.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_file() {
        let v = parse(
            "# comment\ndb = \"/var/lib/vmfabric/vmfabric.db\"\n\n[serve]\nlisten = \"0.0.0.0:7480\"\nheader_timeout = 5\n[agent]\ninterval = 2\nnode = \"n1\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(v["db"].line, 2);
        assert_eq!(v["serve.listen"].text, "0.0.0.0:7480");
        assert_eq!(v["serve.listen"].line, 5);
        assert_eq!(v["serve.header_timeout"].text, "5");
        assert_eq!(v["agent.interval"].text, "2");
        assert_eq!(v["agent.node"].line, 9);
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = err("db = \"/x.db\"\n[serve]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        assert!(
            e.contains("/etc/vmfabric/vmfabric.toml line 4, key serve.lisen"),
            "{e}"
        );
        assert!(e.contains("not a setting of vmfabric"), "{e}");
        let e = err("databse = \"/x.db\"\n");
        assert!(e.contains("line 1, key databse"), "{e}");
    }

    #[test]
    fn a_wrong_value_names_file_line_key_value_and_rule() {
        let e = err("[serve]\n\nlisten = \"everywhere\"\n");
        assert!(e.contains("line 3, key serve.listen \"everywhere\""), "{e}");
        assert!(e.contains("an address and port"), "{e}");
        let e = err("[agent]\ninterval = -1\n");
        assert!(
            e.contains("line 2, key agent.interval \"-1\": a number of seconds"),
            "{e}"
        );
        let e = err("log_format = \"xml\"\n");
        assert!(
            e.contains("line 1, key log_format \"xml\": text or json"),
            "{e}"
        );
        let e = err("db = \"relative.db\"\n");
        assert!(e.contains("an absolute path"), "{e}");
        let e = err("[serve]\nmax_connections = \"many\"\n");
        assert!(e.contains("line 2, key serve.max_connections"), "{e}");
        let e = err("[serve]\ntls_cert = \"/c.pem\"\n");
        assert!(e.contains("serve.tls_key is missing"), "{e}");
        // A secret is never repeated in an error.
        let e = err("token = \"\"\n");
        assert!(e.contains("line 1, key token: not empty"), "{e}");
        let e = err("db = \n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn every_setting_is_an_argument_of_its_command() {
        let root = <Cli as clap::CommandFactory>::command();
        for s in SETTINGS {
            let cmd = match s.sub {
                Some(sub) => root.find_subcommand(sub).unwrap(),
                None => &root,
            };
            let global = root
                .get_arguments()
                .any(|a| a.get_id() == s.arg && a.is_global_set());
            assert!(
                global || cmd.get_arguments().any(|a| a.get_id() == s.arg),
                "{} has no argument {}",
                s.key,
                s.arg
            );
        }
    }
}
