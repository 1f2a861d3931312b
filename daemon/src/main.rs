//! `atelierd`: Atelier's daemon. Parses its arguments, loads the environment's
//! configuration, starts telemetry (Sentry before the runtime), then runs
//! until SIGTERM or Ctrl-C.

use atelier_daemon::app::{self, Roles};
use atelier_daemon::telemetry;
use atelier_domain::config;
use clap::{Parser, ValueEnum};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
atelierd loads its configuration, connects to PostgreSQL, migrates the
database at start where the environment allows it (dev: database.auto_migrate),
serves /health, /ready, /version, /metrics and the staff API (/api/v1, OpenAPI
at /api/v1/openapi.json) on http.bind (role http), and processes events (role
events): declares the RabbitMQ topology of amqp.namespace, relays the outbox,
runs one consumer per handler with delayed retries and dead-lettering, and
ingests dead letters. Outside dev and test the token signing keys (secret
auth.jwt_secret) must be set. Elsewhere run
`atelier migrate run` before starting it: /ready reports pending migrations.

Exit codes: 0 stopped cleanly, 1 failed while running, 3 configuration invalid,
4 a dependency could not be reached at start.";

/// Atelier's daemon: the studio back office's event processor and staff API.
#[derive(Debug, Parser)]
#[command(name = "atelierd", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Environment to run (dev, test, staging, production). Default: $ATELIER_ENV, else dev.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// Which parts to run: all, http (the API only) or events (event processing only).
    #[arg(long, value_enum, default_value_t = Role::All, env = "ATELIERD_ROLE")]
    role: Role,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    All,
    Http,
    Events,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let env = config::choose_env(args.env.as_deref());
    let resolved = match config::config_dir().and_then(|dir| config::load(&dir, &env)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("atelierd: {e}");
            return ExitCode::from(3);
        }
    };
    // Sentry first, before any thread of the runtime exists.
    let _telemetry = match telemetry::init(&resolved) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("atelierd: {e}");
            return ExitCode::from(3);
        }
    };
    let roles = match args.role {
        Role::All => Roles { http: true, events: true },
        Role::Http => Roles { http: true, events: false },
        Role::Events => Roles { http: false, events: true },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atelierd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(resolved, roles)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "atelierd stopped");
            eprintln!("atelierd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
