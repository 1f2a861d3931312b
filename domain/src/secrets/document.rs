//! The `file` backend's document: what `<env>.secrets.json` holds, in the
//! sops style. Names, kinds, stages, versions, dates and the audit trail are
//! in clear (anyone with the file can list and diff it); each version's value
//! is encrypted on its own (`age:<base64 of the age file>`). Only this module
//! knows the layout; `file.rs` reads, encrypts and writes it, and
//! `rules::secrets` decides how stages move.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The format tag every file starts with; a file without it is refused.
pub const FORMAT: &str = "atelier-secrets/1";

/// What a secret is, which decides how it rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The API's token signing keys: generated; each version is one `kid:base64key`.
    JwtKeys,
    /// A generated random token (the Meta webhook verify token).
    Token,
    /// A value pasted from a provider: `set --stage pending`, then `rotate --promote`.
    External,
    /// The database password (`database.password_secret`): applied with `ALTER ROLE`, alternating users.
    PostgresPassword,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::JwtKeys, Kind::Token, Kind::External, Kind::PostgresPassword];

    pub fn name(self) -> &'static str {
        match self {
            Kind::JwtKeys => "jwt_keys",
            Kind::Token => "token",
            Kind::External => "external",
            Kind::PostgresPassword => "postgres_password",
        }
    }

    /// Whether `rotate` makes the new value itself.
    pub fn generated(self) -> bool {
        matches!(self, Kind::JwtKeys | Kind::Token | Kind::PostgresPassword)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown kind '{s}': one of {}", Kind::ALL.map(Kind::name).join(", ")))
    }
}

/// A version's stage (AWS Secrets Manager's AWSPENDING / AWSCURRENT / AWSPREVIOUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Current,
    Pending,
    Previous,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Pending => "pending",
            Stage::Previous => "previous",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One version of a secret. `value` is the encrypted value, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub version: u32,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    /// A pending version becomes current at this time (generated kinds); unset: by `rotate --promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activates_at: Option<DateTime<Utc>>,
    /// When it became current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_since: Option<DateTime<Utc>>,
    /// When it stopped being current (became previous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// The role this password belongs to (database passwords rotated with alternating users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub value: String,
}

/// One secret: its kind and its versions (at most one per stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: Kind,
    pub versions: Vec<Version>,
}

impl Entry {
    pub fn stage(&self, stage: Stage) -> Option<&Version> {
        self.versions.iter().find(|v| v.stage == stage)
    }
    pub fn stage_mut(&mut self, stage: Stage) -> Option<&mut Version> {
        self.versions.iter_mut().find(|v| v.stage == stage)
    }
    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }
}

/// One line of the audit trail: who did which step to which version, when. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub step: String,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub format: String,
    pub environment: String,
    /// The age recipients the values are encrypted to.
    pub recipients: Vec<String>,
    pub secrets: BTreeMap<String, Entry>,
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
}

impl Document {
    pub fn new(environment: &str, recipients: Vec<String>) -> Self {
        Document {
            format: FORMAT.to_owned(),
            environment: environment.to_owned(),
            recipients,
            secrets: BTreeMap::new(),
            audit: Vec::new(),
        }
    }

    pub fn record(&mut self, at: DateTime<Utc>, actor: &str, secret: &str, version: Option<u32>, step: &str) {
        self.audit.push(AuditEntry {
            at,
            actor: actor.to_owned(),
            secret: secret.to_owned(),
            version,
            step: step.to_owned(),
        });
    }
}
