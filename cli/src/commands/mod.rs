//! One module per command; `run` dispatches.

mod check;
mod dlq;
mod env;
mod gate;
mod migrate;
mod topology;
mod users;
mod webhooks;

use crate::cli::{Args, Command};
use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Output;
use clap::CommandFactory;

pub async fn run(args: Args) -> Result<Code, Failure> {
    let out = Output::new(args.global.output, args.global.quiet);
    match args.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut crate::cli::Args::command(), "atelier", &mut std::io::stdout());
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
    }
}
