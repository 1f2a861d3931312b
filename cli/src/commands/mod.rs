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
mod topology;
mod users;
mod webhooks;

use crate::cli::{Args, Command};
use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Output;
use clap::CommandFactory;

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
        Command::Check => "check",
        Command::Gate(_) => "gate",
        Command::Webhooks(_) => "webhooks",
        Command::Deploy(_) => "deploy",
        Command::Rollback(_) => "rollback",
        Command::History(_) => "history",
        Command::Lock(_) => "lock",
        Command::Completions { .. } => "completions",
    }
}

async fn dispatch(args: Args) -> Result<Code, Failure> {
    let out = Output::new(args.global.output, args.global.quiet);
    match args.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::cli::Args::command(), "atelier", &mut script);
            crate::output::stdout(&script);
            Ok(Code::Ok)
        }
        Command::Env(cmd) => env::run(cmd, &args.global, out),
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
