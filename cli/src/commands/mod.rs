//! One module per command; `run` dispatches (and with `-v` logs how long
//! the command took and its exit code).

pub mod check;
mod deploy;
mod dlq;
mod env;
mod gate;
mod history;
mod lock;
mod migrate;
mod rollback;
mod secrets;
mod status;
mod topology;
mod users;
mod webhooks;

use crate::cli::{Args, Command};
use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Output;
use atelier_domain::config;
use serde_json::json;

/// Runs the command; with `-v`, says on stderr how long it took and how it ended.
pub async fn run(args: Args) -> Result<Code, Failure> {
    let started = std::time::Instant::now();
    let what = name(&args.command);
    let outcome = dispatch(args).await;
    let exit = outcome.as_ref().map_or_else(|f| f.code, |c| *c) as u8;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis(), exit, "atelier {what} done");
    outcome
}

fn name(command: &Command) -> &'static str {
    match command {
        Command::Env(_) => "env",
        Command::Migrate(_) => "migrate",
        Command::Topology(_) => "topology",
        Command::Dlq(_) => "dlq",
        Command::Users(_) => "users",
        Command::Secrets(_) => "secrets",
        Command::Check => "check",
        Command::Gate(_) => "gate",
        Command::Webhooks(_) => "webhooks",
        Command::Deploy(_) => "deploy",
        Command::Rollback(_) => "rollback",
        Command::History(_) => "history",
        Command::Lock(_) => "lock",
        Command::Completions { .. } => "completions",
        Command::Status => "status",
        Command::Manpages { .. } => "manpages",
    }
}

async fn dispatch(args: Args) -> Result<Code, Failure> {
    let out = Output::new(args.global.output, args.global.quiet);
    match args.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut completable(), "atelier", &mut script);
            crate::output::stdout(&script);
            Ok(Code::Ok)
        }
        Command::Manpages { dir } => manpages(&dir, out),
        Command::Status => status::run(&Context::load(&args.global, out)?).await,
        Command::Env(cmd) => env::run(cmd, &args.global, out),
        Command::Secrets(cmd) => secrets::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Check => check::run(&Context::load(&args.global, out)?).await,
        Command::Gate(cmd) => gate::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Dlq(cmd) => dlq::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Migrate(cmd) => migrate::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Topology(cmd) => topology::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Users(cmd) => users::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Webhooks(cmd) => webhooks::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Deploy(cmd) => deploy::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Rollback(cmd) => rollback::run(cmd, &Context::load(&args.global, out)?).await,
        Command::History(cmd) => history::run(cmd, &Context::load(&args.global, out)?).await,
        Command::Lock(cmd) => lock::run(cmd, &Context::load(&args.global, out)?).await,
    }
}

/// The command for completion scripts: `--env` completes the environments
/// of the configuration directory (as they are now), never file names.
fn completable() -> clap::Command {
    let cmd = crate::examples::command();
    match config::config_dir().and_then(|dir| config::environments(&dir)) {
        Ok(names) => {
            // clap keeps `&'static str` names; this process ends once the script is written.
            let names: Vec<&'static str> = names.into_iter().map(|n| &*Box::leak(n.into_boxed_str())).collect();
            cmd.mut_arg("env", |a| a.value_parser(clap::builder::PossibleValuesParser::new(names)))
        }
        Err(_) => cmd,
    }
}

/// `atelier manpages DIR`: one page per command (clap_mangen), examples included.
fn manpages(dir: &std::path::Path, out: Output) -> Result<Code, Failure> {
    let failed =
        |e: std::io::Error| Failure::new(Code::Failure, format!("cannot write man pages into {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(crate::examples::command(), dir).map_err(failed)?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(failed)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("atelier") && n.ends_with(".1"))
        .collect();
    pages.sort();
    let doc =
        json!({"success": true, "data": {"dir": dir.display().to_string(), "pages": pages}, "count": pages.len()});
    out.emit(&doc, || {
        format!("{} man pages written into {} (man -l {}/atelier.1)", pages.len(), dir.display(), dir.display())
    });
    Ok(Code::Ok)
}
