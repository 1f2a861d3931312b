//! Exit codes: the contract with scripts and CI pipelines (README, "Exit codes").

use std::fmt;

/// What `atelier` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Done; for checks, everything passed.
    Ok = 0,
    /// The command failed (the message says why).
    Failure = 1,
    /// The command line is wrong (clap's own code).
    Usage = 2,
    /// The configuration is invalid, or a secret it names is missing.
    Config = 3,
    /// A dependency (PostgreSQL, RabbitMQ) cannot be reached.
    Unavailable = 4,
    /// A check ran and found a problem (drift, pending migrations, unhealthy).
    CheckFailed = 5,
    /// A change to a protected environment was not confirmed.
    NotConfirmed = 6,
    /// Another migrator holds the migration lock (`migrate run` without `--wait`, or past it),
    /// or another command holds the deploy lock (deploy, rollback, migrate run, lock acquire).
    Busy = 7,
    /// A deploy or rollback failed at a step and was rolled back.
    RolledBack = 8,
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// A command's failure: the exit code and what to tell the operator.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<atelier_domain::config::ConfigError> for Failure {
    fn from(e: atelier_domain::config::ConfigError) -> Self {
        Failure::new(Code::Config, e.to_string())
    }
}

impl From<atelier_domain::secrets::SecretError> for Failure {
    fn from(e: atelier_domain::secrets::SecretError) -> Self {
        Failure::new(Code::Config, e.to_string())
    }
}

impl From<atelier_domain::store::StoreError> for Failure {
    fn from(e: atelier_domain::store::StoreError) -> Self {
        let code = if e.is_transient() { Code::Unavailable } else { Code::Failure };
        Failure::new(code, e.to_string())
    }
}
