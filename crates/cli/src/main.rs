//! `vmfabric`: the command line of the vmfabric control plane.

mod agent;
mod args;
mod bench;
mod bench_agent;
mod bench_changes;
mod bench_scale;
mod bench_serve;
mod commands;
mod config;
mod db;
mod lab;
mod listing;
mod plans;
mod render;
mod tour;

use std::io::Write;
use std::process::ExitCode;

use vmfabric_model::Error;

use args::{Cli, Format};

/// What a command produced: one JSON document, and the text for people.
#[derive(Debug)]
pub struct Out {
    pub json: serde_json::Value,
    pub text: String,
    /// Already printed, as it arrived (listings).
    pub streamed: bool,
}

impl Out {
    pub fn new<T: serde::Serialize>(value: &T, text: String) -> Result<Out, Error> {
        let json = serde_json::to_value(value)
            .map_err(|e| Error::storage(format!("cannot encode the result: {e}")))?;
        Ok(Out {
            json,
            text,
            streamed: false,
        })
    }

    /// Output the command printed itself.
    pub fn streamed() -> Out {
        Out {
            json: serde_json::Value::Null,
            text: String::new(),
            streamed: true,
        }
    }
}

/// Exit status by kind of error (documented in `--help`).
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Storage { .. } => 1,
        Error::Invalid { .. } => 2,
        Error::NotFound { .. } => 3,
        Error::Conflict { .. } => 4,
        Error::Exhausted { .. } => 5,
        Error::Unauthenticated { .. } | Error::Forbidden { .. } => 6,
        Error::Unavailable { .. } => 7,
    }
}

/// Logs through `tracing` on stderr: vmfabric's own at info (debug with
/// -v, trace with -vv), other crates' warnings; RUST_LOG overrides.
fn init_logs(verbose: u8, format: args::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,vmfabric={level},vmfabric_server={level},vmfabric_agent={level},vmfabric_store={level}"
        ))
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match format {
        args::LogFormat::Json => logs.json().flatten_event(true).try_init(),
        args::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    if let Err(e) = done {
        eprintln!("warning: logs are not set up: {e}");
    }
}

/// Whether the raw arguments ask for JSON, for errors clap reports before
/// the arguments are parsed.
fn wants_json(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| (w[0] == "--output" || w[0] == "-o") && w[1] == "json")
        || args.iter().any(|a| a == "--output=json")
}

/// The command line as clap sees it, with the version naming the build's
/// commit and the schema it writes (also for completions and man pages).
fn command() -> clap::Command {
    let version: &'static str = Box::leak(
        format!(
            "{} (commit {}, schema {})",
            env!("CARGO_PKG_VERSION"),
            env!("VMFABRIC_GIT_COMMIT"),
            vmfabric_store::sql::schema_version()
        )
        .into_boxed_str(),
    );
    <Cli as clap::CommandFactory>::command().version(version)
}

/// `vmfabric generate`: what packaging installs, made from the same
/// definitions as the parser so it cannot drift from it.
fn generate(g: &args::GenerateCmd) -> Result<Out, Error> {
    use clap_complete::Shell;
    match g {
        args::GenerateCmd::Completions { shell } => {
            let shell = match shell {
                args::Shell::Bash => Shell::Bash,
                args::Shell::Zsh => Shell::Zsh,
                args::Shell::Fish => Shell::Fish,
            };
            clap_complete::generate(shell, &mut command(), "vmfabric", &mut std::io::stdout());
            Ok(Out::streamed())
        }
        args::GenerateCmd::Man { dir } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::invalid("dir", dir.display(), format!("cannot create: {e}")))?;
            clap_mangen::generate_to(command(), dir).map_err(|e| {
                Error::invalid("dir", dir.display(), format!("cannot write the pages: {e}"))
            })?;
            Out::new(
                &serde_json::json!({"dir": dir}),
                format!("man pages in {}\n", dir.display()),
            )
        }
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    let parsed = command().try_get_matches_from(&raw).and_then(|m| {
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m)?;
        Ok((cli, m))
    });
    let (mut cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            let usage = !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            if usage && wants_json(&raw) {
                let j = serde_json::json!({"error": {"kind": "usage", "message": e.render().to_string().trim()}});
                eprintln!("{j}");
                return ExitCode::from(2);
            }
            let _ = e.print();
            return ExitCode::from(if usage { 2 } else { 0 });
        }
    };
    let format = cli.output;
    if let args::Command::Generate(g) = &cli.command {
        return finish(format, generate(g));
    }
    // The configuration file fills in what neither a flag nor the
    // environment said; `config show` reports the result.
    let file = config::load(cli.config.as_deref());
    if let args::Command::Config(args::ConfigCmd::Show) = &cli.command {
        return finish(
            format,
            file.and_then(|f| {
                let shown = config::show(&matches, &f);
                Out::new(
                    &serde_json::json!({"file": f.path, "settings": shown}),
                    config::show_text(&f, &shown),
                )
            }),
        );
    }
    if let Err(e) = file.and_then(|f| config::apply(&mut cli, &matches, &f)) {
        return finish(format, Err(e));
    }
    let format = cli.output;
    if matches!(
        cli.command,
        args::Command::Serve(_) | args::Command::Agent(_)
    ) {
        init_logs(cli.verbose, cli.log_format);
    }
    // The controller and its benchmark use every core; commands one.
    let many = matches!(
        cli.command,
        args::Command::Serve(_)
            | args::Command::Bench(
                args::BenchCmd::Serve { .. }
                    | args::BenchCmd::Scale(_)
                    | args::BenchCmd::ScaleAgents(_)
                    | args::BenchCmd::ScaleLoad(_)
            )
    );
    let built = if many {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    finish(format, runtime.block_on(commands::run(cli)))
}

/// Print what a command produced (or its error) and say how it went.
fn finish(format: Format, result: Result<Out, Error>) -> ExitCode {
    match result {
        Ok(out) if out.streamed => ExitCode::SUCCESS,
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let written = match format {
                Format::Json => writeln!(stdout, "{}", out.json),
                Format::Text => write!(stdout, "{}", out.text),
            };
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = written.and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            match format {
                Format::Json => {
                    let mut j = serde_json::to_value(&e).unwrap_or_default();
                    if let Some(o) = j.as_object_mut() {
                        o.insert("message".into(), e.to_string().into());
                    }
                    eprintln!("{}", serde_json::json!({ "error": j }));
                }
                Format::Text => eprintln!("error: {e}"),
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
