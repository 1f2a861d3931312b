//! The command line: every command, flag (`-o`, `-v`/`-vv`, `-q` included)
//! and its help text, and the parsers that refuse a value in plain words.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Environments are files in environments/ (or $ATELIER_CONFIG_DIR): base.toml plus one
file per environment; ATELIER__SECTION__KEY variables override single keys.

Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration, 4 dependency unreachable,
5 check failed, 6 not confirmed, 7 a lock is held, 8 deploy rolled back.";

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
    #[arg(long, global = true, help_heading = "Global options", value_name = "ENV", value_hint = clap::ValueHint::Other)]
    pub env: Option<String>,
    /// Output format: text for people, json for pipelines (one JSON document on stdout).
    #[arg(short, long, global = true, help_heading = "Global options", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Answer yes to confirmations (needed to change production without a terminal).
    #[arg(long, global = true, help_heading = "Global options")]
    pub yes: bool,
    /// Show on stderr what the command does: -v its connections, queries and timings; -vv also the libraries' own.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr: no progress bars, no log lines.
    #[arg(short, long, global = true, help_heading = "Global options")]
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
    /// Deploy version V blue/green: the deployment checklist, each step journaled; any failure rolls back.
    Deploy(DeployArgs),
    /// Return to the previous successful deployment (or --to ID) through the same switch, canary and analysis.
    Rollback(RollbackArgs),
    /// The environment's deployments, newest first: version, slot, status, actor, duration, failing step.
    History(HistoryArgs),
    /// The deploy lock (a lease shared by deploy, rollback and migrate run): status, acquire, release.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Print a shell completion script: `atelier completions bash > /etc/bash_completion.d/atelier`.
    #[command(after_help = "`--env` completes the environments of environments/ (or $ATELIER_CONFIG_DIR) as \
they are when the script is written: write it again after adding one.")]
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// On-call's first look: daemons, deployment, migrations, outbox, queues, dead letters, secrets; one screen or one JSON document.
    #[command(after_help = "Reads the database, the broker and each running atelierd's /ready and /metrics. \
What cannot be reached is shown as such (\"unreachable: why\") and the rest is still shown: exit 0 whatever \
it finds, 3 only when the configuration itself is invalid.")]
    Status,
    /// Write man pages (atelier.1, atelier-dlq-replay.1, ...) into DIR, created if missing.
    Manpages {
        /// The directory to write the pages into (e.g. /usr/local/share/man/man1).
        #[arg(value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, ClapArgs)]
#[command(after_help = "Asks <URL>/version (it must name VERSION and this environment) and <URL>/ready \
(database migrated and reachable; broker and consumers up where events run). A pipeline runs \
`atelier --env staging gate --expect-version \"$V\" --wait 5m` before it deploys V to production.

With --deployment, also: deployed (V's successful deployment is recorded), soak (--min-soak), \
dead_letters (since it, --max-dead-letters), retry_rate and 5xx_ratio (the live atelierd's /metrics), \
canary (a system.ping round trip now).

Examples:
  atelier --env staging gate --expect-version 1.4.0 --wait 5m
  atelier --env staging gate --expect-version 1.4.0 --deployment --min-soak 30m --output json")]
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
    /// Also check VERSION's deployment here: deployed successfully (`atelier deploy`), soaked, dead
    /// letters since, retry rate and 5xx ratio (the live atelierd's /metrics), a canary round trip now.
    #[arg(long)]
    pub deployment: bool,
    /// With --deployment (implied): VERSION has run here at least this long. Default: deploy.min_soak.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub min_soak: Option<humantime::Duration>,
    /// With --deployment (implied): at most this many dead letters since. Default: deploy.max_dead_letters.
    #[arg(long, value_name = "N")]
    pub max_dead_letters: Option<u64>,
    /// With --deployment: at most this share of deliveries sent to a retry (0.05 = 5%).
    #[arg(long, value_name = "RATIO", default_value_t = 0.05)]
    pub max_retry_rate: f64,
}

#[derive(Debug, ClapArgs)]
#[command(
    disable_version_flag = true,
    after_help = "Steps: lock, preflight, gate (where deploy.gate_env is set: production gates on staging), \
migrate (expand only), start (the idle slot at VERSION), ready (/ready and /version say VERSION), canary \
(a system.ping handled by the new slot's own consumers), switch (the proxy's upstream, graceful reload), \
analysis (deploy.analysis of the new slot's 5xx ratio and dead letters), drain (the old slot finishes its \
work and stops), record. A failing step undoes what was done in reverse and exits 8 naming the step.

Exit codes: 0 deployed, 1 failure, 2 not a release version, 3 configuration, 4 a dependency \
unreachable, 6 not confirmed, 7 the deploy lock is held, 8 a step failed (preflight and gate included) \
and what was done is rolled back.

Examples:
  atelier --env staging deploy --version 1.4.0 --artifact ./target/release/atelierd
  atelier --env production deploy --version 1.4.0 --dry-run
  atelier --env production deploy --version 1.4.0 --yes --output json
  atelier --env staging deploy --resume"
)]
pub struct DeployArgs {
    /// The release to deploy (its directory under deploy.releases). Required unless --resume.
    #[arg(long, value_name = "VERSION", required_unless_present = "resume")]
    pub version: Option<String>,
    /// Print the plan (slots, migrations it would apply, checks) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reconcile a deployment whose command died (finish or roll it back), then stop.
    #[arg(long, conflicts_with = "dry_run")]
    pub resume: bool,
    /// Install this atelierd build as VERSION first (copied to deploy.releases/VERSION, stamped with VERSION).
    #[arg(long, value_name = "PATH", requires = "version")]
    pub artifact: Option<std::path::PathBuf>,
}

#[derive(Debug, ClapArgs)]
#[command(after_help = "Starts the target's release in the idle slot, checks it is ready at its version, \
runs a canary, switches, analyses and drains, as deploy does, without running migrations. Refused, naming \
the migration, when a contract migration was applied after the target was deployed.

Exit codes: as deploy; 5 refused over a contract migration.

Examples:
  atelier --env production rollback --yes
  atelier --env staging rollback --to 42 --output json")]
pub struct RollbackArgs {
    /// The deployment id to return to (`atelier history`). Default: the previous successful one.
    #[arg(long, value_name = "ID")]
    pub to: Option<i64>,
}

#[derive(Debug, ClapArgs)]
#[command(after_help = "Examples:
  atelier --env production history
  atelier --env staging history --limit 5 --output json")]
pub struct HistoryArgs {
    /// How many deployments, newest first (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
#[command(after_help = "Examples:
  atelier --env production lock status
  atelier --env production lock acquire --message 'database maintenance' --ttl 2h
  atelier --env production lock release")]
pub enum LockCommand {
    /// Who holds the deploy lock, since when, until when; and the last lock events.
    Status,
    /// Hold the lock for a maintenance window (deploys, rollbacks and migrate run are refused meanwhile).
    Acquire {
        /// Why: shown to whoever is refused.
        #[arg(long)]
        message: String,
        /// How long the lock is held (it expires then; acquire again to extend).
        #[arg(long, default_value = "1h", value_parser = duration)]
        ttl: humantime::Duration,
    },
    /// Release the lock, whoever holds it (audited with whose it was).
    Release,
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
    /// What differs between two environments' resolved configuration (secrets redacted): the check before promoting.
    #[command(after_help = "Compares every key of both resolved configurations (files and ATELIER__ variables), \
values of secrets redacted, and shows the layer each value came from. Exit 0 whether or not they differ.")]
    Diff {
        /// The first environment (e.g. staging).
        #[arg(value_name = "A")]
        a: String,
        /// The second environment (e.g. production).
        #[arg(value_name = "B")]
        b: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Each migration's state: applied, pending, edited (after it was applied), missing (applied by a newer version) or unknown history; exit 5 on drift.
    #[command(after_help = "Exit 5 when a migration is edited, missing or applied unrecorded (drift), 0 otherwise.")]
    Status,
    /// What `migrate run` would apply: each pending statement with the lock it takes, whether it rewrites or scans the table, the table's live size and rows, its phase; lint findings and SQL. Changes nothing.
    Plan,
    /// Find destructive or locking statements in the pending migrations (`--all`: every one); exit 5 on any a file does not allow.
    #[command(after_help = "Rules (each with its id, reason and the safe way in the README's table, \
\"atelier migrate lint\"): drop-table, drop-column, rename, column-type, set-not-null, index-lock, \
validate-lock, unique-without-index, volatile-default, whole-table-backfill, ... \
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
or, with --phase contract, while a live deployment slot runs a version older than this build. \
Exit 7 while another migrator holds the migration lock (named: command, pid, host), at once or after --wait. \
A migration that hits database.migration_lock_timeout is rolled back and retried \
(database.migration_lock_retries), each wait said on stderr with the sessions that blocked it.

Examples:
  atelier --env staging migrate run              expand migrations; exit 7 if the lock is held
  atelier --env production migrate run --wait 5m  wait up to 5 minutes for another migrator
  atelier --env production migrate run --phase contract
  atelier -o json migrate run                     data: applied, waiting, drift, lock_waits"
    )]
    Run {
        /// `expand` (default): contract migrations wait; `contract`: apply them too, once no live slot runs an older version.
        #[arg(long, value_enum, default_value_t = PhaseArg::Expand)]
        phase: PhaseArg,
        /// Who applies, recorded with the host name. Default: $USER (or $LOGNAME).
        #[arg(long)]
        actor: Option<String>,
        /// While another migrator holds the migration lock, wait up to this long (e.g. 5m) for it; default: exit 7 at once, naming the holder.
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        wait: Option<humantime::Duration>,
    },
    /// Create migrations/<date>-<seq>_<NAME>/{up,down}.sql with the phase header, for a new migration.
    #[command(after_help = "Examples:
  atelier migrate new add_sales_note                  an expand migration (the default)
  atelier migrate new drop_sales_legacy --phase contract
  atelier migrate new sales_note_index --no-transaction   for CREATE INDEX CONCURRENTLY
  atelier -o json migrate new add_sales_note          {\"data\": {\"name\", \"up\", \"down\", ...}}

The sequence number is one more than the highest in the directory. Exit 2 when NAME is not \
lower-case letters, digits and underscores, 1 when the directory cannot be written.")]
    New {
        /// What the migration does, in lower-case snake_case (`add_sales_note`).
        name: String,
        /// `expand` (default): additive, applied by `migrate run`; `contract`: removals, applied by `--phase contract`.
        #[arg(long, value_enum, default_value_t = PhaseArg::Expand)]
        phase: PhaseArg,
        /// Mark it `-- atelier:no-transaction` (one statement, such as CREATE INDEX CONCURRENTLY).
        #[arg(long)]
        no_transaction: bool,
        /// The migrations directory.
        #[arg(long, value_name = "DIR", default_value = "migrations")]
        dir: std::path::PathBuf,
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
    /// Declare the exchanges, queues and bindings (idempotent); --recreate redeclares a drifted queue, keeping its messages.
    #[command(after_help = "A queue declared earlier with other arguments (`topology verify` says \"differs\") \
cannot be declared again: RabbitMQ refuses with PRECONDITION_FAILED. --recreate QUEUE moves its messages to \
QUEUE.recreate (each acked only after the broker confirmed its copy), deletes it, declares it with this \
build's arguments and its bindings, and moves the messages back; it refuses (exit 5) while a consumer is \
attached, so stop atelierd's events role first. Run again after an interruption: it resumes, losing nothing.

Examples:
  atelier --env staging topology apply
  atelier --env staging topology verify
  atelier --env staging topology apply --recreate atelier.q.production
  atelier --env production --yes topology apply --recreate atelier.q.accounting.retry.1 -o json")]
    Apply {
        /// Recreate this queue (its full name, as `topology verify` prints it) with this build's arguments, keeping its messages. Repeatable.
        #[arg(long, value_name = "QUEUE")]
        recreate: Vec<String>,
    },
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
        /// The account's email: its login.
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
        /// Only this studio's accounts.
        #[arg(long)]
        business_id: Option<i64>,
    },
    /// Disable an account: it can no longer log in and its tokens stop working at once.
    Disable {
        /// The account's email.
        #[arg(long)]
        email: String,
    },
    /// Lift a login lockout (too many failed logins) of an account or of a client address, now.
    #[command(after_help = "Examples:\n  atelier --env production users unlock --email ann@studio.example\n  \
atelier --env production --yes users unlock --client 203.0.113.7\n\nThe account's (or address's) failed \
logins are forgotten and its lock lifted; the action is recorded in the account audit with the actor. \
Unlocking what is not locked is not an error (the output says so). Exit 0 done, 1 failed, 2 usage, \
4 database unreachable, 6 not confirmed.")]
    Unlock {
        /// The account's email (an email no account has can be locked too: it is lifted the same way).
        #[arg(long, required_unless_present = "client", conflicts_with = "client")]
        email: Option<String>,
        /// A client address (IPv4 or IPv6) locked for failed logins of any account.
        #[arg(long, value_name = "ADDRESS")]
        client: Option<String>,
        /// Who unlocks (recorded in the audit). Default: $USER, else $LOGNAME, else the user id.
        #[arg(long, env = "ATELIER_ACTOR")]
        actor: Option<String>,
    },
    /// Enable a disabled account again: it can log in again.
    #[command(after_help = "Examples:\n  atelier --env production users enable --email ann@studio.example\n\n\
Recorded in the account audit with the actor. Exit 0 done, 1 no such account, 2 usage, 4 database \
unreachable, 6 not confirmed.")]
    Enable {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// Who enables (recorded in the audit). Default: $USER, else $LOGNAME, else the user id.
        #[arg(long, env = "ATELIER_ACTOR")]
        actor: Option<String>,
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
