//! `atelier`: the ops CLI. Thin: parse the command line (a usage error exits
//! 2, as JSON on stdout with `--output json`), set up `-v`/`-q` logging on
//! stderr, run the command, turn its outcome into output and an exit code
//! (see `exit.rs`).

mod cli;
mod commands;
mod context;
mod deploy;
mod examples;
mod exit;
mod output;

use clap::FromArgMatches;
use clap::error::ErrorKind;

fn main() -> std::process::ExitCode {
    let parsed = examples::command().try_get_matches().and_then(|m| cli::Args::from_arg_matches(&m));
    let args = match parsed {
        Ok(args) => args,
        Err(e) => return usage(&e),
    };
    logging(args.global.verbose, args.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::stderr(&format!("error: cannot start the async runtime: {e}"));
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

/// `--help` and `--version` print to stdout and exit 0; any other problem
/// with the command line exits 2, with clap's message on stderr, or the JSON
/// failure document on stdout when the command line asks for JSON.
fn usage(e: &clap::Error) -> std::process::ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        output::stdout(e.render().to_string().as_bytes());
        return exit::Code::Ok.into();
    }
    if wants_json(std::env::args_os().skip(1).filter_map(|a| a.into_string().ok())) {
        let message = match e.kind() {
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "a command is missing: `atelier --help` lists them".to_owned()
            }
            _ => usage_message(&e.render().to_string()),
        };
        output::Output::new(cli::Format::Json, false).error(&exit::Failure::new(exit::Code::Usage, message));
    } else {
        // clap's own rendering (coloured on a terminal); a closed stderr is ignored.
        let _ = e.print();
    }
    exit::Code::Usage.into()
}

/// clap's message without its `error: ` prefix, usage block and `--help` hint:
/// `unrecognized subcommand 'lst' (tip: a similar subcommand exists: 'list')`.
fn usage_message(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    match parts.split_first() {
        Some((first, [])) => (*first).to_owned(),
        Some((first, rest)) => format!("{first} ({})", rest.join("; ")),
        None => "the command line is wrong: see `atelier --help`".to_owned(),
    }
}

/// Whether a command line that clap refused still asks for JSON output
/// (`--output json`, `--output=json`, `-o json`, `-ojson`, `-qo json`).
fn wants_json(args: impl IntoIterator<Item = String>) -> bool {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--output" {
            args.next()
        } else if let Some(v) = arg.strip_prefix("--output=") {
            Some(v.to_owned())
        } else if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.starts_with('-')) {
            match flags.split_once('o') {
                Some((before, "")) if before.chars().all(|c| "vqh".contains(c)) => args.next(),
                Some((before, v)) if before.chars().all(|c| "vqh".contains(c)) => {
                    Some(v.strip_prefix('=').unwrap_or(v).to_owned())
                }
                _ => None,
            }
        } else {
            None
        };
        if value.as_deref() == Some("json") {
            return true;
        }
    }
    false
}

/// `-v`: atelier's own debug events (connections, queries, timings) on
/// stderr; `-vv`: trace, with the database and broker libraries' own events.
/// Without `-v` (and with `-q`) no log line is written: only errors reach
/// stderr, as messages.
fn logging(verbose: u8, quiet: bool) {
    let filter = match (verbose, quiet) {
        (0, _) | (_, true) => return,
        (1, _) => "warn,atelier=debug,atelier_domain=debug",
        _ => {
            "info,atelier=trace,atelier_domain=trace,lapin=trace,amq_protocol=debug,diesel=trace,diesel_async=trace,\
              diesel_migrations=trace,tokio_postgres=debug"
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(verbose > 1)
        .log_internal_errors(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(line: &str) -> bool {
        wants_json(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn json_is_found_in_a_refused_command_line() {
        for yes in ["--output json env lst", "env --output=json", "-o json x", "-ojson", "-qo json", "-vo=json"] {
            assert!(json(yes), "{yes}");
        }
        for no in ["env list", "--output text", "-o xml", "-- --output json", "--env json", "-x json"] {
            assert!(!json(no), "{no}");
        }
    }

    #[test]
    fn a_usage_message_keeps_the_problem_and_the_tip() {
        let rendered = "error: unrecognized subcommand 'lst'\n\n  tip: a similar subcommand exists: 'list'\n\n\
                        Usage: atelier env [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(usage_message(rendered), "unrecognized subcommand 'lst' (tip: a similar subcommand exists: 'list')");
    }
}
