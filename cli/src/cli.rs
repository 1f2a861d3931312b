//! The command line: every command, flag (`-o`, `-v`/`-vv`, `-q` included)
//! and its help text, and the parsers that refuse a value in plain words.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Environments are files in environments/ (or $ATELIER_CONFIG_DIR): base.toml plus one
file per environment; ATELIER__SECTION__KEY variables override single keys.

Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration, 4 dependency unreachable,
5 check failed, 6 not confirmed.";

/// Operate Atelier: environments, database migrations and more.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, ClapArgs)]
pub struct Global {
    /// Environment to act on (dev, test, staging, production). Default: $ATELIER_ENV, else dev.
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,
    /// Output format: text for people, json for pipelines (one JSON document on stdout).
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Answer yes to confirmations (needed to change production without a terminal).
    #[arg(long, global = true)]
    pub yes: bool,
    /// Show on stderr what the command does: -v its connections, queries and timings; -vv also the libraries' own.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr: no progress bars, no log lines.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Environments and their resolved configuration.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Database schema migrations (embedded in this binary).
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// RabbitMQ topology of the environment's namespace.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Dead letters: what failed, why, and putting it back to work.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Staff accounts of the apps' API (the first admin of a new studio included).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The environment's secrets: an encrypted file (age), versions in stages, staged rotation, audit trail.
    #[command(subcommand, after_help = SECRETS_ENV_HELP)]
    Secrets(SecretsCommand),
    /// Preflight: configuration, secrets, database and migrations, broker and topology; exit 0 when all pass.
    #[command(after_help = "Every check runs and reports. Exit 0 all pass; else 3 when the configuration or a \
secret is wrong, 4 when PostgreSQL or RabbitMQ cannot be reached, 5 when migrations are pending or the \
topology drifted.")]
    Check,
    /// For CI: is this environment's atelierd ready and running the expected version? Exit 0 yes, 5 no, 4 unreachable.
    Gate(GateArgs),
    /// Channel webhooks: the URL each studio registers with its provider in this environment.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Print a shell completion script: `atelier completions bash > /etc/bash_completion.d/atelier`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, ClapArgs)]
#[command(after_help = "Asks <URL>/version (it must name VERSION and this environment) and <URL>/ready \
(database migrated and reachable; broker and consumers up where events run). A pipeline runs \
`atelier --env staging gate --expect-version \"$V\" --wait 5m` before it deploys V to production.")]
pub struct GateArgs {
    /// The version atelierd must run (as its /version says, e.g. 0.1.0).
    #[arg(long, value_name = "VERSION")]
    pub expect_version: String,
    /// atelierd's base URL. Default: the environment's http.public_base_url.
    #[arg(long)]
    pub url: Option<String>,
    /// Look again every 2 s until healthy or this long has passed (e.g. 5m). Default: one look.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub wait: Option<humantime::Duration>,
}

/// A duration such as `90s`, `5m` or `1h 30m`, refused in words an operator can act on.
fn duration(s: &str) -> Result<humantime::Duration, String> {
    s.parse().map_err(|_| format!("'{s}' is not a duration: give a number and a unit, such as 90s, 5m or 1h"))
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// The URL to register with each channel's provider (from http.public_base_url), per studio.
    Urls {
        /// Only this studio's channels.
        #[arg(long)]
        business_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List the environments defined in environments/.
    List,
    /// Print the resolved configuration, secrets redacted, with the layer each value came from.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Each migration's state: applied, pending, edited (after it was applied), missing (applied by a newer version) or unknown history.
    Status,
    /// What `migrate run` would apply: the pending migrations in order, their lint findings and SQL; changes nothing.
    Plan,
    /// Find destructive or locking statements in the pending migrations (`--all`: every one); exit 5 on any a file does not allow.
    #[command(after_help = "Rules: drop-table, drop-column, rename, truncate, column-type, set-not-null, \
index-lock (CREATE INDEX without CONCURRENTLY), validate-lock (a new FOREIGN KEY or CHECK without NOT VALID). \
Statements on a table the same file creates are fine. A file allows a rule with a line \
`-- atelier:allow <rule>: <reason>`. `migrate run` lints first where policy.lint_before_migrate is set \
(staging and production).")]
    Lint {
        /// Every migration embedded in this binary, without a database (for CI on a change).
        #[arg(long, conflicts_with = "files")]
        all: bool,
        /// These up.sql files instead (a migration being written), without a database.
        #[arg(value_name = "UP_SQL")]
        files: Vec<std::path::PathBuf>,
    },
    /// Apply the pending expand migrations (`--phase contract`: every pending one), in order, each in its own transaction.
    #[command(
        after_help = "Exit 5, applying nothing, when policy.refuse_migration_drift is set (staging, production) \
and a migration was edited after it was applied, is applied but unknown to this build, or was applied unrecorded; \
or, with --phase contract, while a live deployment slot runs a version older than this build."
    )]
    Run {
        /// `expand` (default): contract migrations wait; `contract`: apply them too, once no live slot runs an older version.
        #[arg(long, value_enum, default_value_t = PhaseArg::Expand)]
        phase: PhaseArg,
        /// Who applies, recorded with the host name. Default: $USER (or $LOGNAME).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Re-record this build's checksums for edited or unrecorded migrations, after a human has looked; audited. Asks first unless --yes.
    Repair {
        /// Who repairs, recorded with the host name. Default: $USER (or $LOGNAME).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Revert the most recent migrations.
    Rollback {
        /// How many migrations to revert, newest first.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
}

/// A migration phase, as `migrate run --phase` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    Expand,
    Contract,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Declare the exchanges, queues and bindings (idempotent).
    Apply,
    /// Report drift (missing, or declared with other arguments); exit 5 when there is any.
    Verify,
}

/// The selection's arguments, which `--all` excludes.
const SELECTORS: [&str; 7] = ["ids", "handler", "event_type", "fingerprint", "since", "until", "error"];

/// Which dead letters a `dlq` command acts on: ids, and/or filters.
#[derive(Debug, Clone, ClapArgs)]
pub struct DlqSelect {
    /// Dead letter ids (as `dlq list` shows them).
    pub ids: Vec<i64>,
    /// Only this handler's letters (production, accounting, notifications, inbound, canary).
    #[arg(long)]
    pub handler: Option<String>,
    /// Only this event type (e.g. sale.created).
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only this fingerprint (handler:error_kind), as `dlq stats` groups them.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Failed at or after: RFC 3339 time, or an age such as 2h or 7d.
    #[arg(long, value_name = "TIME|AGE")]
    pub since: Option<String>,
    /// Failed before: RFC 3339 time, or an age such as 30m.
    #[arg(long, value_name = "TIME|AGE")]
    pub until: Option<String>,
    /// Last error contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub error: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Counts by status, and of the letters waiting: by handler, type, fingerprint and age.
    Stats,
    /// List dead letters, newest failure first.
    List {
        #[command(flatten)]
        select: DlqSelect,
        /// Only letters in this status.
        #[arg(long, value_parser = ["dead", "replaying", "replayed", "archived"])]
        status: Option<String>,
        /// Rows per page.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
        page: i64,
    },
    /// One dead letter: payload, headers, error and replay history.
    Show {
        /// Its id as `dlq list` shows it, or its dead-letter id (the UUID atelierd's log prints).
        #[arg(value_name = "ID|UUID")]
        id: String,
    },
    /// Publish dead letters back to their handler's queue (only that queue), with publisher confirms.
    Replay {
        #[command(flatten)]
        select: DlqSelect,
        /// Print what would be replayed, grouped, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most N letters per second.
        #[arg(long, value_name = "N")]
        rate: Option<u32>,
        /// Who replays (recorded on each letter). Default: $USER, else $LOGNAME, else the user id.
        #[arg(long, env = "ATELIER_ACTOR")]
        actor: Option<String>,
        /// Every letter: needed when no id or filter is given.
        #[arg(long, conflicts_with_all = SELECTORS)]
        all: bool,
    },
    /// Set dead letters aside (status archived); restore brings them back.
    Archive {
        #[command(flatten)]
        select: DlqSelect,
        /// Every letter: needed when no id or filter is given.
        #[arg(long, conflicts_with_all = SELECTORS)]
        all: bool,
    },
    /// Bring archived letters back to dead.
    Restore {
        #[command(flatten)]
        select: DlqSelect,
        /// Every letter: needed when no id or filter is given.
        #[arg(long, conflicts_with_all = SELECTORS)]
        all: bool,
    },
    /// Delete archived letters for good (never dead or replayed ones). Asks first unless --yes.
    Purge {
        #[command(flatten)]
        select: DlqSelect,
        /// Every letter: needed when no id or filter is given.
        #[arg(long, conflicts_with_all = SELECTORS)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a staff account; with --business-name, create its studio too (the first admin).
    /// The password is read from a prompt (no echo) or, with --password-stdin, from stdin: never an argument.
    Create {
        #[arg(long)]
        email: String,
        /// The person's name (default: the part of the email before '@').
        #[arg(long)]
        name: Option<String>,
        /// admin, manager, cashier, production_worker or auditor.
        #[arg(long)]
        role: String,
        /// The studio the account belongs to.
        #[arg(long, conflicts_with = "business_name", required_unless_present = "business_name")]
        business_id: Option<i64>,
        /// Create a new studio with this name and put the account in it.
        #[arg(long)]
        business_name: Option<String>,
        /// The new studio's currency (ISO 4217).
        #[arg(long, default_value = "USD", requires = "business_name")]
        currency: String,
        /// Read the password from the first line of stdin (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List staff accounts (of one studio, or of all).
    List {
        #[arg(long)]
        business_id: Option<i64>,
    },
    /// Disable an account: it can no longer log in and its tokens stop working at once.
    Disable {
        #[arg(long)]
        email: String,
    },
}

const SECRETS_ENV_HELP: &str = "\
The file backend (secrets.backend = \"file\") keeps environments/<env>.secrets.json: names,
kinds, stages, versions and dates in clear, each value encrypted with age to secrets.recipients.
Reading a value needs an identity: $ATELIER_SECRETS_IDENTITY_FILE (a file as `secrets keygen`
or age-keygen writes it) or $ATELIER_SECRETS_IDENTITY (the identity itself). The audit trail
names $ATELIER_ACTOR (else $USER) as who did each step.";

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create a new age identity (written to a file, mode 0600) and print its recipient (public key).
    #[command(after_help = "Examples:
  atelier secrets keygen --identity-file ~/.config/atelier/staging.age
  # then add the printed age1... recipient to secrets.recipients in environments/staging.toml")]
    Keygen {
        /// Where to write the identity; refused if the file exists.
        #[arg(long, value_name = "PATH")]
        identity_file: std::path::PathBuf,
    },
    /// Create the environment's secrets file (with the token signing keys' first version), encrypted to secrets.recipients.
    #[command(after_help = concat!("Examples:
  atelier --env staging secrets init

", "The file is created beside the environment's TOML unless secrets.file names another path."))]
    Init,
    /// Each secret: kind, stages and versions, age, and when its rotation is due (no value).
    #[command(after_help = "Examples:
  atelier --env production secrets list
  atelier --env production secrets list --output json | jq '.data[] | select(.overdue)'")]
    List,
    /// Set a secret's value, read from a prompt without echo or from stdin (never an argument).
    #[command(after_help = "Examples:
  atelier --env staging secrets set sentry_dsn --kind external
  printf '%s' \"$TOKEN\" | atelier --env staging secrets set meta_app_token --kind external --stage pending --stdin

Without --stage the value becomes current at once (the old current stays accepted as previous until
`finish`). With --stage pending it waits for `rotate NAME --promote`.")]
    Set {
        /// The secret's name (letters, digits, '_').
        name: String,
        /// The kind, for a new secret: jwt_keys (one kid:base64key), token, postgres_password (the password the
        /// database URL's user has now) or external. Default: external.
        #[arg(long)]
        kind: Option<String>,
        /// current (default) or pending (an external secret you will test, then promote).
        #[arg(long, default_value = "current", value_parser = ["current", "pending"])]
        stage: String,
        /// Read the value from stdin (its first line) instead of a prompt.
        #[arg(long)]
        stdin: bool,
    },
    /// A secret's versions and stages; --reveal prints the current value (asks on a terminal, audited).
    #[command(after_help = "Examples:
  atelier --env staging secrets show jwt_signing_key
  atelier --env staging --yes secrets show meta_verify_token --reveal")]
    Show {
        /// The secret's name.
        name: String,
        /// Print the current value too (needs the identity; asks for confirmation, or --yes; recorded in the audit trail).
        #[arg(long)]
        reveal: bool,
    },
    /// Rotate: generated kinds get a new pending version (accepted at once, current after
    /// secrets.activation_delay); the database password is applied to the other role, tested, promoted;
    /// --promote makes an external secret's pending version current.
    #[command(after_help = "Examples:
  atelier --env production secrets rotate jwt_signing_key
  atelier --env production secrets rotate meta_app_token --promote
  atelier --env production secrets rotate jwt_signing_key --abort
  atelier --env production secrets rotate database_password

A rotation interrupted at any step is resumed by running the same command again, or undone with
--abort while its version is still pending. After creating a version, rotate waits (up to
secrets.daemon_wait) until every daemon of secrets.daemons has loaded it, and names those that have
not (exit 5).")]
    Rotate {
        /// The secret's name.
        name: String,
        /// Make the pending version current now (external secrets, after you have tested it).
        #[arg(long, conflicts_with = "abort")]
        promote: bool,
        /// Drop the pending version (a rotation that must not go on).
        #[arg(long)]
        abort: bool,
    },
    /// Drop the previous version once nothing signed with it can still be valid (--force: now).
    #[command(after_help = "Examples:
  atelier --env production secrets finish jwt_signing_key
  atelier --env production --yes secrets finish jwt_signing_key --force")]
    Finish {
        /// The secret's name.
        name: String,
        /// Drop it even though tokens it signed may still be valid (their users must log in again).
        #[arg(long)]
        force: bool,
    },
    /// The audit trail of a secret: who did which step to which version, when.
    #[command(after_help = "Examples:
  atelier --env production secrets history jwt_signing_key --output json")]
    History {
        /// The secret's name.
        name: String,
    },
}
