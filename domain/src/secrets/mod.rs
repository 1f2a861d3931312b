//! Secrets: one trait in front of each environment's secret store. Values are
//! wrapped in [`SecretValue`], whose Debug and Display never show them, so a
//! secret cannot reach a log line, an error or JSON output by accident.
//!
//! Backends: `env` (read-only; `ATELIER_SECRET_<NAME>` variables that a
//! platform injects) and `file` (`file.rs`: the environment's age-encrypted
//! file, with versions in stages, see `document.rs`). A Vault or cloud
//! backend is one more file implementing [`SecretStore`].

pub mod document;
pub mod file;

use crate::config::{Resolved, SecretBackendKind};
pub use file::FileSecrets;
use std::fmt;

/// A secret's value. Deliberately not `Serialize`, and redacted when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself, for the one place that must use it (a connection, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret '{name}' is not set: {hint}")]
    Missing { name: String, hint: String },
    #[error("secret name '{0}' is invalid: use letters, digits and '_'")]
    InvalidName(String),
    /// The store cannot be read or written (no file, a corrupt one, a wrong identity...): the message says what to do.
    #[error("{0}")]
    Store(String),
}

/// A secret as a reader that accepts several versions needs it: the current
/// value (the one to sign or connect with) and the other accepted ones
/// (pending and previous), each with its version (ids only are shown).
#[derive(Debug, Clone)]
pub struct Staged {
    pub current: SecretValue,
    /// `None` for a backend without versions (`env`).
    pub current_version: Option<u32>,
    pub others: Vec<(u32, SecretValue)>,
    /// The role the current version belongs to (a database password rotated with alternating users).
    pub user: Option<String>,
}

/// Reads secrets by name.
pub trait SecretStore: Send + Sync {
    fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretError>;

    /// The current value and the other accepted versions; a backend without
    /// versions has only the current one.
    fn staged(&self, name: &str) -> Result<Option<Staged>, SecretError> {
        Ok(self.get(name)?.map(|current| Staged { current, current_version: None, others: Vec::new(), user: None }))
    }

    /// Where an operator sets `name`, for error messages.
    fn hint(&self, name: &str) -> String;

    fn require(&self, name: &str) -> Result<SecretValue, SecretError> {
        self.get(name)?.ok_or_else(|| SecretError::Missing { name: name.to_owned(), hint: self.hint(name) })
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), SecretError> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(SecretError::InvalidName(name.chars().take(40).collect()))
    }
}

/// Secrets from `ATELIER_SECRET_<NAME>` variables (read-only).
#[derive(Debug, Default, Clone)]
pub struct EnvSecrets;

impl EnvSecrets {
    pub fn var_name(name: &str) -> String {
        format!("ATELIER_SECRET_{}", name.to_ascii_uppercase())
    }
}

impl SecretStore for EnvSecrets {
    fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretError> {
        check_name(name)?;
        Ok(std::env::var(Self::var_name(name)).ok().filter(|v| !v.is_empty()).map(SecretValue))
    }

    fn hint(&self, name: &str) -> String {
        format!("set the variable {}", Self::var_name(name))
    }
}

/// A new value for version `version` of a generated kind: a token key
/// (`k<version>-<random>:<32 random bytes, base64>`) or a random token (64 hex digits).
pub fn generate(kind: document::Kind, version: u32) -> SecretValue {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    match kind {
        document::Kind::JwtKeys => {
            let tag: u16 = rand::random();
            SecretValue(format!("k{version}-{tag:04x}:{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
        }
        _ => SecretValue(hex::encode(bytes)),
    }
}

/// PostgreSQL's SCRAM-SHA-256 verifier of `password` (what `ALTER ROLE ...
/// PASSWORD` stores), computed here so the password itself never reaches the
/// server's statement log: `SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`.
pub fn scram_verifier(password: &SecretValue) -> String {
    scram_verifier_with_salt(password, &rand::random())
}

/// [`scram_verifier`] with a given salt (tests).
pub fn scram_verifier_with_salt(password: &SecretValue, salt: &[u8; 16]) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    type HmacSha256 = hmac::Hmac<sha2::Sha256>;
    const ITERATIONS: u32 = 4096;
    let mac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    // PBKDF2-HMAC-SHA256, one block (32 bytes).
    let mut u = mac(password.expose().as_bytes(), &[&salt[..], &1u32.to_be_bytes()].concat());
    let mut salted = u.clone();
    for _ in 1..ITERATIONS {
        u = mac(password.expose().as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = mac(&salted, b"Client Key");
    let stored_key = <sha2::Sha256 as sha2::Digest>::digest(&client_key);
    let server_key = mac(&salted, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("SCRAM-SHA-256${ITERATIONS}:{}${}:{}", b64.encode(salt), b64.encode(stored_key), b64.encode(server_key))
}

/// The secret store an environment's `secrets.backend` names.
pub fn open(config: &Resolved) -> Box<dyn SecretStore> {
    match config.settings.secrets.backend {
        SecretBackendKind::Env => Box::new(EnvSecrets),
        SecretBackendKind::File => Box::new(FileSecrets::new(config)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scram_verifier_is_postgresql_s() {
        // The layout PostgreSQL stores in pg_authid; that the server accepts
        // the password behind it is shown against a real server in
        // cli/tests/secrets_postgres.rs (scram-sha-256 required for its roles).
        let v = scram_verifier_with_salt(&SecretValue::new("pencil"), &[7; 16]);
        assert!(v.starts_with("SCRAM-SHA-256$4096:BwcHBwcHBwcHBwcHBwcHBw==$"), "{v}");
        let parts: Vec<&str> = v.rsplit('$').next().unwrap().split(':').collect();
        assert_eq!(parts.len(), 2);
        assert!(!v.contains("pencil"));
        assert_ne!(scram_verifier(&SecretValue::new("pencil")), scram_verifier(&SecretValue::new("pencil")));
    }

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter2");
        assert!(!format!("{v:?} {v}").contains("hunter2"));
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn a_missing_secret_says_where_to_set_it() {
        let e = EnvSecrets.require("surely_not_set_anywhere").unwrap_err().to_string();
        assert!(e.contains("ATELIER_SECRET_SURELY_NOT_SET_ANYWHERE"), "{e}");
        assert!(EnvSecrets.get("bad name").is_err());
    }
}
