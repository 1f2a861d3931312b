//! Secrets: one trait in front of each environment's secret store. Values are
//! wrapped in [`SecretValue`], whose Debug and Display never show them, so a
//! secret cannot reach a log line, an error or JSON output by accident.
//!
//! Backends today: `env` (read-only; `ATELIER_SECRET_<NAME>` variables that a
//! platform injects). The encrypted-file backend and rotation stages come with
//! `atelier secrets`.

use crate::config::SecretBackendKind;
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
}

/// Reads secrets by name.
pub trait SecretStore: Send + Sync {
    fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretError>;

    /// Where an operator sets `name`, for error messages.
    fn hint(&self, name: &str) -> String;

    fn require(&self, name: &str) -> Result<SecretValue, SecretError> {
        self.get(name)?.ok_or_else(|| SecretError::Missing { name: name.to_owned(), hint: self.hint(name) })
    }
}

fn check_name(name: &str) -> Result<(), SecretError> {
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

/// The secret store an environment's `secrets.backend` names.
pub fn open(kind: SecretBackendKind) -> Box<dyn SecretStore> {
    match kind {
        SecretBackendKind::Env => Box::new(EnvSecrets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
