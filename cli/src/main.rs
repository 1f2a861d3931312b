//! `atelier`: the ops CLI. Thin: parse the command line, run the command,
//! turn its outcome into output and an exit code (see `exit.rs`).

mod cli;
mod commands;
mod context;
mod exit;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::Code::Failure.into();
        }
    };
    let out = output::Output::new(args.global.output, args.global.quiet);
    match runtime.block_on(commands::run(args)) {
        Ok(code) => code.into(),
        Err(failure) => {
            out.error(&failure);
            failure.code.into()
        }
    }
}
