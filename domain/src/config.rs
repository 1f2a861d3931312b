//! Configuration: `environments/base.toml` → `environments/<env>.toml` →
//! `ATELIER__SECTION__KEY` variables, resolved into typed [`Settings`], with
//! the layer each value came from (for `atelier env show`). Config files hold
//! no secret values, only the names of secrets. Environment policy (which
//! environments confirm changes, lint before migrating, may run on a
//! per-process token key) is configuration too: [`PolicySettings`], so a new
//! environment is a new file, never a code change. A value that does not fit
//! is refused with the key, the value given, what is allowed and where to fix it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable that chooses the environment when `--env` is not given.
pub const ENV_VAR: &str = "ATELIER_ENV";
/// The variable that says where the `environments/` directory is.
pub const CONFIG_DIR_VAR: &str = "ATELIER_CONFIG_DIR";
/// Prefix of the variables that override single keys: `ATELIER__AMQP__NAMESPACE`.
pub const OVERRIDE_PREFIX: &str = "ATELIER__";
pub const DEFAULT_ENV: &str = "dev";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub retry: RetrySettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub secrets: SecretsSettings,
    #[serde(default)]
    pub sentry: SentrySettings,
    pub daemon: DaemonSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// Missing keys take production's (the safe) side.
    #[serde(default)]
    pub policy: PolicySettings,
    /// `atelier deploy` / `rollback`: driver, slots, analysis, lease.
    #[serde(default)]
    pub deploy: DeploySettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/db`, without a password.
    pub url: String,
    /// The secret holding the database password, when one is needed.
    #[serde(default)]
    pub password_secret: Option<String>,
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Create the database when it does not exist (dev only).
    #[serde(default)]
    pub create_if_missing: bool,
    /// Run pending migrations when `atelierd` starts (dev only).
    #[serde(default)]
    pub auto_migrate: bool,
    #[serde(with = "humantime_serde")]
    pub migration_lock_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub migration_statement_timeout: Duration,
    /// How many times `migrate run` retries a migration whose statement hit
    /// `migration_lock_timeout` (0: never), waiting longer each time.
    #[serde(default = "default_migration_lock_retries")]
    pub migration_lock_retries: u32,
    /// The first wait before such a retry; doubled each time (capped at 30 s), with jitter.
    #[serde(default = "default_migration_retry_delay", with = "humantime_serde")]
    pub migration_retry_delay: Duration,
}

fn default_migration_lock_retries() -> u32 {
    10
}
fn default_migration_retry_delay() -> Duration {
    Duration::from_millis(500)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: String,
    #[serde(default)]
    pub password_secret: Option<String>,
    /// Prefix of every exchange and queue name: `{namespace}.events`.
    pub namespace: String,
    pub prefetch: u16,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// `x-delivery-limit` of handler queues: a safety net against crash loops.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Deliveries each handler works on at once (1: one at a time).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Messages larger than this are dead-lettered at once (permanent).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Connecting (and reconnecting) gives up after this long.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The outbox relay's poll interval (it is also woken in-process after an
    /// API change or an applied event).
    #[serde(default = "default_outbox_poll", with = "humantime_serde")]
    pub outbox_poll: Duration,
    /// Whether this process runs the outbox relay (several may; each takes
    /// other rows).
    #[serde(default = "default_relay")]
    pub relay: bool,
    /// Outbox rows published per batch.
    #[serde(default = "default_outbox_batch")]
    pub outbox_batch: i64,
}

fn default_delivery_limit() -> u32 {
    20
}
fn default_concurrency() -> usize {
    16
}
fn default_max_message_bytes() -> usize {
    1 << 20
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_outbox_poll() -> Duration {
    Duration::from_millis(200)
}
fn default_outbox_batch() -> i64 {
    256
}
fn default_relay() -> bool {
    true
}
fn default_jitter() -> f64 {
    0.2
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    pub factor: u32,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Retry n waits between (1 − jitter) × delay n and delay n (a random
    /// per-message expiration under the retry queue's TTL).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Per-handler overrides: `[retry.handlers.notifications] max_retries = 5`.
    #[serde(default)]
    pub handlers: BTreeMap<String, RetryOverride>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    pub max_retries: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub base_delay: Option<Duration>,
    pub factor: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: String,
    /// Where providers reach this environment: webhook URLs start with it.
    pub public_base_url: String,
    pub body_limit: usize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Where `/metrics` is served instead of `bind` (host:port); unset: on `bind`.
    #[serde(default)]
    pub metrics_bind: Option<String>,
    /// A connection's request headers must all arrive within this (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once (on each bind); more wait to be accepted.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,atelier_daemon=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretBackendKind {
    /// Read-only: `ATELIER_SECRET_<NAME>` variables injected by the platform.
    Env,
    /// The environment's encrypted file (`<env>.secrets.json`, values encrypted with age).
    File,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    pub backend: SecretBackendKind,
    /// The `file` backend's file; unset: `<env>.secrets.json` beside the environment's TOML.
    #[serde(default)]
    pub file: Option<String>,
    /// age public keys (`age1...`) every value of the file is encrypted to
    /// (a list, or one string of comma-separated keys, as a variable gives it).
    #[serde(default, deserialize_with = "list_or_commas")]
    pub recipients: Vec<String>,
    /// How long a rotated generated secret stays `pending` (accepted, not used) before it becomes `current`.
    #[serde(with = "humantime_serde", default = "default_activation_delay")]
    pub activation_delay: Duration,
    /// How often atelierd rereads the secret store (it also does on SIGHUP).
    #[serde(with = "humantime_serde", default = "default_reload_interval")]
    pub reload_interval: Duration,
    /// Base URLs of this environment's running atelierd processes: `rotate` waits until each has loaded the new version.
    #[serde(default, deserialize_with = "list_or_commas")]
    pub daemons: Vec<String>,
    /// How long `rotate` waits for the daemons to load a version.
    #[serde(with = "humantime_serde", default = "default_daemon_wait")]
    pub daemon_wait: Duration,
    /// The rotation policy: how old each kind's current version may get.
    #[serde(default)]
    pub max_age: SecretMaxAge,
}

/// A list of strings, or one string of comma-separated items (`ATELIER__SECRETS__RECIPIENTS=age1a,age1b`).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        List(Vec<String>),
        One(String),
    }
    Ok(match Items::deserialize(d)? {
        Items::List(items) => items,
        Items::One(s) => s.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_owned).collect(),
    })
}

fn default_activation_delay() -> Duration {
    Duration::from_secs(300)
}
fn default_reload_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_daemon_wait() -> Duration {
    Duration::from_secs(120)
}

/// `[secrets.max_age]`: when each kind of secret is due for rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMaxAge {
    #[serde(with = "humantime_serde")]
    pub jwt_keys: Duration,
    #[serde(with = "humantime_serde")]
    pub token: Duration,
    #[serde(with = "humantime_serde")]
    pub external: Duration,
    #[serde(with = "humantime_serde", default = "default_postgres_max_age")]
    pub postgres_password: Duration,
}

fn default_postgres_max_age() -> Duration {
    Duration::from_secs(90 * 86_400)
}

impl Default for SecretMaxAge {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        SecretMaxAge { jwt_keys: days(90), token: days(180), external: days(365), postgres_password: days(90) }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentrySettings {
    /// The secret holding the Sentry DSN; Sentry is off when unset.
    pub dsn_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// How long SIGTERM waits for work in flight before exiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The secret holding the token signing keys.
    pub jwt_secret: String,
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// Password hashes computed at once (a semaphore); unset: the cores.
    #[serde(default)]
    pub hash_concurrency: Option<usize>,
    /// Failed logins for one account within `lockout_window` that lock it.
    #[serde(default = "default_lockout_account_failures")]
    pub lockout_account_failures: u32,
    /// Failed logins from one client address within `lockout_window` that lock it.
    #[serde(default = "default_lockout_client_failures")]
    pub lockout_client_failures: u32,
    /// The window failures are counted in (it restarts after this long).
    #[serde(default = "default_lockout_window", with = "humantime_serde")]
    pub lockout_window: Duration,
    /// How long a locked account or address stays locked.
    #[serde(default = "default_lockout_duration", with = "humantime_serde")]
    pub lockout_duration: Duration,
}

fn default_lockout_account_failures() -> u32 {
    5
}
fn default_lockout_client_failures() -> u32 {
    50
}
fn default_lockout_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_lockout_duration() -> Duration {
    Duration::from_secs(15 * 60)
}

/// Which provider sends outbound notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationProviderKind {
    /// Records each message as sent without sending it (the dev default).
    Log,
    /// The Meta Graph API's WhatsApp Cloud messages endpoint.
    WhatsappCloud,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    pub provider: NotificationProviderKind,
    /// The Graph API base, version included: messages go to
    /// `{whatsapp_base_url}/{phone_number_id}/messages`. The token and phone
    /// number id come from the business's channel, never from config.
    pub whatsapp_base_url: String,
    /// Limit of one send to the provider; a send that takes longer is retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            provider: NotificationProviderKind::Log,
            whatsapp_base_url: "https://graph.facebook.com/v21.0".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How careful commands are with an environment: `[policy]`. Every key's
/// default (and `base.toml`'s value) is production's, the safe side, so an
/// environment file that says nothing is treated as production; dev, test
/// and staging relax what they need to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// A change (`migrate run`, `migrate rollback`, `dlq replay`, ...) asks to
    /// type the environment's name, or needs `--yes`.
    pub confirm_changes: bool,
    /// `migrate run` lints the pending migrations first and applies nothing
    /// when a destructive or locking statement is not allowed by its file.
    pub lint_before_migrate: bool,
    /// `migrate run` applies nothing while a migration was edited after it
    /// was applied, is applied but unknown to this build, or is applied but
    /// unrecorded (`atelier migrate repair` re-records after a human looked).
    pub refuse_migration_drift: bool,
    /// Without the token signing keys (`auth.jwt_secret`), atelierd signs with
    /// a key generated at start (tokens die with the process) and `atelier
    /// check` passes; otherwise a missing key set is an error in both.
    pub allow_ephemeral_token_key: bool,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            confirm_changes: true,
            lint_before_migrate: true,
            refuse_migration_drift: true,
            allow_ephemeral_token_key: false,
        }
    }
}

/// How slots start, stop and are switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployDriverKind {
    /// `atelierd` processes on this host behind a local nginx.
    Process,
    /// Templated shell commands (systemd, kubectl, a load balancer's CLI).
    Command,
}

/// `[deploy]`: the deployment checklist's settings (README, "Deploying").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    pub driver: DeployDriverKind,
    /// Process driver: `<releases>/<version>/atelierd`.
    pub releases: PathBuf,
    /// Process driver: pid files, logs, nginx's prefix and upstream file.
    pub run_dir: PathBuf,
    /// Process driver: where nginx listens (the address clients use).
    pub proxy_listen: String,
    /// Process driver: the port of each slot's atelierd.
    pub blue_port: u16,
    pub green_port: u16,
    /// Process driver: the nginx binary.
    pub nginx: String,
    /// Post-switch analysis: how long the new slot is watched.
    #[serde(with = "humantime_serde")]
    pub analysis: Duration,
    /// The new slot must be ready at its version within this.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// A canary ping must be handled by the new slot within this.
    #[serde(with = "humantime_serde")]
    pub canary_timeout: Duration,
    /// The old slot must finish its work and exit within this (then SIGKILL).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Analysis fails above this share of 5xx answers (0.01 = 1%).
    pub max_5xx_ratio: f64,
    /// Analysis fails when the new slot dead-letters more than this.
    pub max_dead_letters: u64,
    /// Releases kept in `releases` (the deployment replaced stays startable).
    pub keep_releases: usize,
    /// The lease expires this long after its last heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// The holder heartbeats this often.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Production deploys gate on this environment (unset: no gate).
    pub gate_env: Option<String>,
    /// The gate's soak: the version ran at least this long in `gate_env`.
    #[serde(with = "humantime_serde")]
    pub min_soak: Duration,
    /// Command driver templates: `{slot}`, `{version}`, `{port}` placeholders.
    pub command: CommandTemplates,
}

/// `[deploy.command]`: the command driver's shell templates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandTemplates {
    pub start: String,
    pub stop: String,
    pub ready_url: String,
    pub switch: String,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            driver: DeployDriverKind::Process,
            releases: PathBuf::from("/var/lib/atelier/releases"),
            run_dir: PathBuf::from("/var/lib/atelier/run"),
            proxy_listen: "127.0.0.1:8080".into(),
            blue_port: 8081,
            green_port: 8082,
            nginx: "nginx".into(),
            analysis: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(60),
            canary_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(60),
            max_5xx_ratio: 0.01,
            max_dead_letters: 0,
            keep_releases: 5,
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            gate_env: None,
            min_soak: Duration::from_secs(0),
            command: CommandTemplates::default(),
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Layer {
    File(String),
    EnvVar(String),
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::File(p) => f.write_str(p),
            Layer::EnvVar(v) => write!(f, "${v}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no environments directory at {0}: run from the repository root or set {CONFIG_DIR_VAR} to the directory holding base.toml"
    )]
    NoConfigDir(PathBuf),
    #[error("unknown environment '{name}': expected one of {known} (files in {dir})")]
    UnknownEnvironment { name: String, known: String, dir: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("configuration of environment '{env}': {reason}")]
    Invalid { env: String, reason: String },
}

/// The resolved configuration of one environment.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub env: String,
    pub dir: PathBuf,
    pub settings: Settings,
    /// For each dotted key, the layer that set its final value.
    pub sources: BTreeMap<String, Layer>,
}

/// The `environments/` directory: `$ATELIER_CONFIG_DIR`, else `./environments`.
pub fn config_dir() -> Result<PathBuf, ConfigError> {
    let dir = std::env::var_os(CONFIG_DIR_VAR).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("environments"));
    if dir.join("base.toml").is_file() { Ok(dir) } else { Err(ConfigError::NoConfigDir(dir)) }
}

/// The environments defined in `dir`: every `<name>.toml` except `base.toml`.
pub fn environments(dir: &Path) -> Result<Vec<String>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::File { file: dir.display().to_string(), reason: e.to_string() })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(str::to_owned))
        .filter(|n| n != "base")
        .collect();
    names.sort();
    Ok(names)
}

/// The environment to use: the one given (`--env`), else `$ATELIER_ENV`, else `dev`.
pub fn choose_env(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var(ENV_VAR).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_ENV.to_owned())
}

/// Loads `env` from `dir`, with the process's `ATELIER__*` variables on top.
pub fn load(dir: &Path, env: &str) -> Result<Resolved, ConfigError> {
    let vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(OVERRIDE_PREFIX)).collect();
    load_with(dir, env, &vars)
}

/// Loads `env` from `dir` with the given override variables (tests pass their own).
pub fn load_with(dir: &Path, env: &str, vars: &[(String, String)]) -> Result<Resolved, ConfigError> {
    let known = environments(dir)?;
    if !known.iter().any(|k| k == env) {
        return Err(ConfigError::UnknownEnvironment {
            name: env.chars().take(60).collect(),
            known: known.join(", "),
            dir: dir.display().to_string(),
        });
    }
    let mut files = Vec::new();
    for file in [dir.join("base.toml"), dir.join(format!("{env}.toml"))] {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConfigError::File { file: shown.clone(), reason: e.to_string() })?;
        files.push((shown, text));
    }
    load_texts(dir, env, &files, vars)
}

/// Resolves `env` from file texts already read: `files` is (name shown in
/// errors, TOML text), base first, then the environment's file; `vars` are
/// the override variables. The pure part of [`load_with`], which reads the
/// files and calls this; the fuzz targets and their corpus replay call it
/// directly.
pub fn load_texts(
    dir: &Path,
    env: &str,
    files: &[(String, String)],
    vars: &[(String, String)],
) -> Result<Resolved, ConfigError> {
    let mut sources = BTreeMap::new();
    let mut builder = config::Config::builder();
    for (shown, text) in files {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::File { file: shown.clone(), reason: e.to_string() })?;
        flatten_keys(&toml::Value::Table(table), "", &mut |k| {
            sources.insert(k, Layer::File(shown.clone()));
        });
        builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
    }
    let mut env_source = config::Map::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(OVERRIDE_PREFIX) else { continue };
        let key = rest.split("__").map(str::to_lowercase).collect::<Vec<_>>().join(".");
        sources.insert(key.clone(), Layer::EnvVar(name.clone()));
        env_source.insert(key, value.clone());
    }
    for (key, value) in &env_source {
        builder = builder
            .set_override(key.as_str(), parse_scalar(value))
            .map_err(|e| ConfigError::Invalid { env: env.to_owned(), reason: e.to_string() })?;
    }
    let invalid = |reason: String| ConfigError::Invalid { env: env.to_owned(), reason };
    let built = builder.build().map_err(|e| invalid(e.to_string()))?;
    let settings: Settings = built.try_deserialize().map_err(|e| invalid(explain(e, env, &sources)))?;
    validate(&settings).map_err(invalid)?;
    Ok(Resolved { env: env.to_owned(), dir: dir.to_owned(), settings, sources })
}

/// `ATELIER__AMQP__PREFETCH=64` sets a number, `...=true` a boolean.
fn parse_scalar(s: &str) -> config::Value {
    if let Ok(i) = s.parse::<i64>() {
        return i.into();
    }
    match s {
        "true" => true.into(),
        "false" => false.into(),
        _ => s.into(),
    }
}

fn flatten_keys(value: &toml::Value, prefix: &str, out: &mut dyn FnMut(String)) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_keys(v, &key, out);
            }
        }
        _ => out(prefix.to_owned()),
    }
}

/// Turns the `config` crate's (serde's) message into one for people: the
/// key, the value given, what is allowed, and where to change it. No Rust
/// type names (`enum LogFormat`, `u16`) reach the operator.
fn explain(e: config::ConfigError, env: &str, sources: &BTreeMap<String, Layer>) -> String {
    let text = e.to_string();
    if let Some(key) = text.strip_prefix("missing configuration field \"").and_then(|r| r.split('"').next()) {
        return format!(
            "missing key '{key}': set it in environments/base.toml or environments/{env}.toml, or with {OVERRIDE_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        );
    }
    let (problem, key) = match text.rsplit_once(" for key `") {
        Some((problem, rest)) => (problem, rest.strip_suffix('`')),
        None => (text.as_str(), None),
    };
    let fix = |key: &str| match sources.get(key) {
        Some(layer @ Layer::EnvVar(_)) => format!("change or unset {layer}"),
        Some(layer) => format!("change it in {layer}"),
        None => format!("set it in environments/{env}.toml or with {OVERRIDE_PREFIX}{}", var_suffix(key)),
    };
    if let Some(rest) = problem.strip_prefix("unknown field `") {
        let (field, allowed) = rest.split_once("`, expected one of ").unwrap_or((rest.trim_end_matches('`'), ""));
        let field = field.trim_end_matches('`');
        let full = key.map_or_else(|| field.to_owned(), |k| format!("{k}.{field}"));
        let layer = sources
            .iter()
            .find(|(k, _)| **k == full || k.starts_with(&format!("{full}.")))
            .map(|(_, l)| format!(" (set in {l})"))
            .unwrap_or_default();
        return format!(
            "unknown key '{full}'{layer}: the keys{} are {}; remove it or fix its spelling",
            key.map(|k| format!(" of [{k}]")).unwrap_or_default(),
            allowed.replace('`', "")
        );
    }
    let Some(key) = key else { return problem.to_owned() };
    let layer = sources.get(key).map(|l| format!(" (set in {l})")).unwrap_or_default();
    if let Some(rest) = problem.strip_prefix("enum ") {
        let given = rest.split_once(" does not have variant constructor ").map_or(rest, |(_, v)| v);
        let allowed = match allowed_values(key) {
            Some(values) => format!("one of {}", values.join(", ")),
            None => "another value".to_owned(),
        };
        return format!("{key} is '{given}'{layer}, expected {allowed}: {}", fix(key));
    }
    let body = problem.strip_prefix("invalid type: ").or_else(|| problem.strip_prefix("invalid value: "));
    match body.and_then(|b| b.split_once(", expected ")) {
        Some((given, expected)) => {
            format!("{key} is {}{layer}, expected {}: {}", shown_value(given), in_words(expected), fix(key))
        }
        None => format!("{key}: {problem}{layer}: {}", fix(key)),
    }
}

/// `amqp.prefetch` → `AMQP__PREFETCH`.
fn var_suffix(key: &str) -> String {
    key.replace('.', "__").to_uppercase()
}

/// The values an enum key allows, as its files spell them.
fn allowed_values(key: &str) -> Option<&'static [&'static str]> {
    match key {
        "log.format" => Some(&["pretty", "json"]),
        "secrets.backend" => Some(&["env", "file"]),
        "notifications.provider" => Some(&["log", "whatsapp_cloud"]),
        _ => None,
    }
}

/// serde's description of a value (`string "abc"`, `64-bit integer \`-1\``,
/// `map`) as the operator wrote it.
fn shown_value(given: &str) -> String {
    if let Some(s) = given.strip_prefix("string ") {
        return s.to_owned();
    }
    match given.split_once('`') {
        Some((_, v)) => v.trim_end_matches('`').to_owned(),
        None if given == "map" => "a table of keys".to_owned(),
        None => given.to_owned(),
    }
}

/// What serde expected, in an operator's words.
fn in_words(expected: &str) -> String {
    let bits = |e: &str| e.split(' ').find_map(|w| w.parse::<u32>().ok());
    if expected.contains("unsigned") {
        return match bits(expected) {
            Some(n) if n < 64 && !expected.contains("or less") => {
                format!("a whole number from 0 to {}", (1u64 << n) - 1)
            }
            _ => "a whole number, 0 or more".to_owned(),
        };
    }
    match expected {
        e if e.contains("integer") => "a whole number".to_owned(),
        "a duration" => "a duration with a unit, such as 500ms, 2s, 5m or 1h".to_owned(),
        "a boolean" => "true or false".to_owned(),
        e if e.contains("floating point") => "a number, such as 0.2".to_owned(),
        "a string" => "text".to_owned(),
        e if e.starts_with("struct ") || e.contains("map") => {
            "a table of keys (set the keys under it, not the table itself)".to_owned()
        }
        e => e.to_owned(),
    }
}

fn validate(s: &Settings) -> Result<(), String> {
    let db = url::Url::parse(&s.database.url).map_err(|e| format!("database.url is not a URL: {e}"))?;
    if !matches!(db.scheme(), "postgres" | "postgresql") {
        return Err("database.url must start with postgres://".into());
    }
    if db.password().is_some() {
        return Err(
            "database.url must not contain a password: store it as a secret and name it in database.password_secret"
                .into(),
        );
    }
    let amqp = url::Url::parse(&s.amqp.url).map_err(|e| format!("amqp.url is not a URL: {e}"))?;
    if !matches!(amqp.scheme(), "amqp" | "amqps") {
        return Err("amqp.url must start with amqp:// or amqps://".into());
    }
    if s.amqp.namespace.is_empty() || !s.amqp.namespace.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("amqp.namespace must be letters, digits, '-', '_' or '.'".into());
    }
    if s.amqp.prefetch == 0 {
        return Err("amqp.prefetch must be at least 1".into());
    }
    if !(0.0..1.0).contains(&s.retry.jitter) {
        return Err("retry.jitter must be at least 0 and below 1".into());
    }
    if s.amqp.concurrency == 0 || s.amqp.outbox_batch < 1 {
        return Err("amqp.concurrency and amqp.outbox_batch must be at least 1".into());
    }
    if s.retry.factor == 0 {
        return Err("retry.factor must be at least 1".into());
    }
    let d = &s.deploy;
    if d.blue_port == d.green_port {
        return Err("deploy.blue_port and deploy.green_port must differ (one port per slot)".into());
    }
    if !(0.0..=1.0).contains(&d.max_5xx_ratio) {
        return Err("deploy.max_5xx_ratio must be between 0 and 1 (0.01 = 1%)".into());
    }
    if d.heartbeat >= d.lease_ttl {
        return Err(
            "deploy.heartbeat must be shorter than deploy.lease_ttl (the lease would expire between beats)".into()
        );
    }
    if d.keep_releases == 0 {
        return Err("deploy.keep_releases must be at least 1".into());
    }
    s.http
        .bind
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("http.bind '{}' is not host:port: {e}", s.http.bind))?;
    url::Url::parse(&s.http.public_base_url).map_err(|e| format!("http.public_base_url is not a URL: {e}"))?;
    if let Some(bind) = &s.http.metrics_bind {
        bind.parse::<std::net::SocketAddr>()
            .map_err(|e| format!("http.metrics_bind '{bind}' is not host:port: {e}"))?;
    }
    if s.http.header_timeout.is_zero() || s.http.idle_timeout.is_zero() {
        return Err("http.header_timeout and http.idle_timeout must be more than 0".into());
    }
    if s.http.max_connections == 0 {
        return Err("http.max_connections must be at least 1".into());
    }
    url::Url::parse(&s.notifications.whatsapp_base_url)
        .map_err(|e| format!("notifications.whatsapp_base_url is not a URL: {e}"))?;
    if s.notifications.timeout.is_zero() {
        return Err("notifications.timeout must be more than 0".into());
    }
    if s.database.pool_size == 0 {
        return Err("database.pool_size must be at least 1".into());
    }
    Ok(())
}

impl Resolved {
    /// Every key with its value (secrets redacted) and the layer it came from.
    pub fn entries(&self) -> Vec<(String, serde_json::Value, Option<&Layer>)> {
        let value = serde_json::to_value(&self.settings).unwrap_or_default();
        let mut out = Vec::new();
        flatten_json(&value, "", &mut out);
        out.into_iter()
            .map(|(k, v)| {
                let v = redact(&k, v);
                let layer = self.sources.get(&k).or_else(|| {
                    // Maps (retry.handlers.x.y) are attributed by their longest set prefix.
                    self.sources.iter().filter(|(s, _)| k.starts_with(s.as_str())).map(|(_, l)| l).next_back()
                });
                (k, v, layer)
            })
            .collect()
    }
}

fn flatten_json(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_json(v, &key, out);
            }
        }
        _ => out.push((prefix.to_owned(), v.clone())),
    }
}

/// Hides credentials: passwords in URLs, and any value whose key names a
/// password, token, key or DSN (as opposed to the *name* of a secret).
pub fn redact(key: &str, value: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::String(s) = &value else { return value };
    if key.ends_with("_secret") {
        return value;
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    if ["password", "token", "dsn", "key"].iter().any(|w| last == *w || last.ends_with(&format!("_{w}"))) {
        return serde_json::Value::String("<redacted>".into());
    }
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            serde_json::Value::String(u.to_string())
        }
        _ => value,
    }
}

impl Settings {
    /// The secrets this configuration names, as (key, secret name), in one
    /// order: what `check`, `secrets list` and `status` each look at.
    pub fn named_secrets(&self) -> Vec<(&'static str, &str)> {
        [
            ("database.password_secret", self.database.password_secret.as_deref()),
            ("amqp.password_secret", self.amqp.password_secret.as_deref()),
            ("sentry.dsn_secret", self.sentry.dsn_secret.as_deref()),
            ("auth.jwt_secret", Some(self.auth.jwt_secret.as_str())),
        ]
        .into_iter()
        .filter_map(|(key, name)| name.map(|n| (key, n)))
        .collect()
    }

    /// The retry policy of `handler`: the defaults with its overrides applied.
    pub fn retry_for(&self, handler: &str) -> RetryPolicy {
        let o = self.retry.handlers.get(handler).cloned().unwrap_or_default();
        RetryPolicy {
            max_retries: o.max_retries.unwrap_or(self.retry.max_retries),
            base_delay: o.base_delay.unwrap_or(self.retry.base_delay),
            factor: o.factor.unwrap_or(self.retry.factor),
            max_delay: self.retry.max_delay,
        }
    }
}

/// A handler's retry policy: delay of level n = base_delay × factorⁿ⁻¹, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub factor: u32,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before retry `level` (1-based).
    pub fn delay(&self, level: u32) -> Duration {
        let mult = self.factor.saturating_pow(level.saturating_sub(1));
        self.base_delay.saturating_mul(mult).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments")
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_environment_loads() {
        let envs = environments(&dir()).unwrap();
        assert_eq!(envs, ["dev", "production", "staging", "test"]);
        for env in envs {
            load_with(&dir(), &env, &[]).unwrap_or_else(|e| panic!("{env}: {e}"));
        }
    }

    #[test]
    fn variables_override_files_and_are_attributed() {
        let r =
            load_with(&dir(), "dev", &vars(&[("ATELIER__AMQP__NAMESPACE", "x1"), ("ATELIER__AMQP__PREFETCH", "7")]))
                .unwrap();
        assert_eq!(r.settings.amqp.namespace, "x1");
        assert_eq!(r.settings.amqp.prefetch, 7);
        assert_eq!(r.sources["amqp.namespace"], Layer::EnvVar("ATELIER__AMQP__NAMESPACE".into()));
        assert!(matches!(&r.sources["database.url"], Layer::File(f) if f.ends_with("dev.toml")));
        assert!(matches!(&r.sources["retry.max_retries"], Layer::File(f) if f.ends_with("base.toml")));
    }

    #[test]
    fn an_unknown_environment_names_the_known_ones() {
        let e = load_with(&dir(), "prod", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown environment 'prod'") && e.contains("production"), "{e}");
    }

    #[test]
    fn a_malformed_value_names_the_key_and_where_it_was_set() {
        let e = load_with(&dir(), "dev", &vars(&[("ATELIER__AMQP__PREFETCH", "lots")])).unwrap_err().to_string();
        assert!(e.contains("amqp.prefetch") && e.contains("ATELIER__AMQP__PREFETCH"), "{e}");
        let e = load_with(&dir(), "dev", &vars(&[("ATELIER__RETRY__BASE_DELAY", "soon")])).unwrap_err().to_string();
        assert!(e.contains("retry.base_delay"), "{e}");
    }

    #[test]
    fn a_value_that_does_not_fit_says_what_is_allowed_in_words() {
        let cases = [
            (
                "ATELIER__LOG__FORMAT",
                "xml",
                "log.format is 'xml' (set in $ATELIER__LOG__FORMAT), expected one of pretty, json",
            ),
            (
                "ATELIER__AMQP__PREFETCH",
                "abc",
                "amqp.prefetch is \"abc\" (set in $ATELIER__AMQP__PREFETCH), expected a whole number",
            ),
            ("ATELIER__AMQP__PREFETCH", "99999999", "expected a whole number from 0 to 65535"),
            ("ATELIER__AMQP__PREFETCH", "-1", "amqp.prefetch is -1"),
            ("ATELIER__AMQP__PUBLISH_TIMEOUT", "5", "expected a duration with a unit, such as 500ms"),
            (
                "ATELIER__AMQP__RELAY",
                "maybe",
                "amqp.relay is \"maybe\" (set in $ATELIER__AMQP__RELAY), expected true or false",
            ),
            ("ATELIER__RETRY__JITTER", "abc", "expected a number, such as 0.2"),
            ("ATELIER__LOG", "x", "expected a table of keys"),
            ("ATELIER__AMQP__FOO", "1", "unknown key 'amqp.foo' (set in $ATELIER__AMQP__FOO)"),
        ];
        for (var, value, expected) in cases {
            let e = load_with(&dir(), "dev", &vars(&[(var, value)])).unwrap_err().to_string();
            assert!(e.contains(expected), "{var}={value}: {e}");
            for internal in ["enum ", "variant", "invalid type", "64-bit", "16 bit", "struct ", "`"] {
                assert!(!e.contains(internal), "{var}={value}: {e}");
            }
            assert!(e.contains("change or unset $") || e.contains("remove it"), "{var}={value}: {e}");
        }
    }

    #[test]
    fn a_missing_key_is_named() {
        let tmp = std::env::temp_dir().join(format!("atelier-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let base = std::fs::read_to_string(dir().join("base.toml")).unwrap();
        std::fs::write(tmp.join("base.toml"), base.replace("namespace = ", "# namespace = ")).unwrap();
        std::fs::write(tmp.join("dev.toml"), "").unwrap();
        let e = load_with(&tmp, "dev", &[]).unwrap_err().to_string();
        std::fs::remove_dir_all(&tmp).ok();
        assert!(e.contains("missing key 'amqp.namespace'") && e.contains("ATELIER__AMQP__NAMESPACE"), "{e}");
    }

    #[test]
    fn a_password_in_the_database_url_is_refused() {
        let e = load_with(&dir(), "dev", &vars(&[("ATELIER__DATABASE__URL", "postgres://u:hunter2@h/db")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password_secret") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn entries_redact_credentials() {
        let r = load_with(&dir(), "dev", &vars(&[("ATELIER__AMQP__URL", "amqp://guest:s3cret@127.0.0.1:5672/%2f")]))
            .unwrap();
        let shown = format!("{:?}", r.entries());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn each_environment_keeps_its_policy_and_a_silent_file_is_production() {
        let policy = |env: &str| load_with(&dir(), env, &[]).unwrap().settings.policy;
        let production = policy("production");
        assert_eq!(production, PolicySettings::default());
        assert_eq!(
            production,
            PolicySettings {
                confirm_changes: true,
                lint_before_migrate: true,
                refuse_migration_drift: true,
                allow_ephemeral_token_key: false
            }
        );
        assert_eq!(policy("staging"), PolicySettings { confirm_changes: false, ..production.clone() });
        let local = PolicySettings {
            confirm_changes: false,
            lint_before_migrate: false,
            refuse_migration_drift: false,
            allow_ephemeral_token_key: true,
        };
        assert_eq!(policy("dev"), local);
        assert_eq!(policy("test"), local);

        // A new environment is a file: one that says nothing is production, and
        // so is one without [policy] in base.toml either.
        let tmp = std::env::temp_dir().join(format!("atelier-policy-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let base = std::fs::read_to_string(dir().join("base.toml")).unwrap();
        std::fs::write(tmp.join("base.toml"), &base).unwrap();
        std::fs::write(tmp.join("qa.toml"), "").unwrap();
        let qa = load_with(&tmp, "qa", &[]).unwrap();
        assert_eq!(qa.settings.policy, production);
        assert!(matches!(&qa.sources["policy.confirm_changes"], Layer::File(f) if f.ends_with("base.toml")));
        let without = base.split("[policy]").next().unwrap().to_owned();
        std::fs::write(tmp.join("base.toml"), without).unwrap();
        let qa = load_with(&tmp, "qa", &[]).unwrap();
        std::fs::remove_dir_all(&tmp).ok();
        assert_eq!(qa.settings.policy, production);
    }

    #[test]
    fn retry_delays_grow_and_overrides_apply() {
        let r =
            load_with(&dir(), "dev", &vars(&[("ATELIER__RETRY__HANDLERS__NOTIFICATIONS__MAX_RETRIES", "5")])).unwrap();
        let p = r.settings.retry_for("notifications");
        assert_eq!(p.max_retries, 5);
        assert_eq!(r.settings.retry_for("production").max_retries, 3);
        assert!(p.delay(2) > p.delay(1));
        assert!(p.delay(60) <= p.max_delay);
    }
}
