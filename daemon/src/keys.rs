//! The API's token signing keys: [`Keys`], the key set in use (current +
//! previous, swapped whole at a rotation), and [`load_keys`], which reads it
//! from the secret `auth.jwt_secret` at start. Held in [`crate::state::Shared`];
//! the HTTP side signs and verifies with it.

use crate::error::AppError;
use atelier_domain::auth::KeySet;
use atelier_domain::config::Resolved;
use atelier_domain::secrets;
use std::sync::{Arc, RwLock};

/// The signing keys in use; replaced whole when the secret is rotated.
pub struct Keys(RwLock<Arc<KeySet>>);

impl Keys {
    pub fn new(set: KeySet) -> Self {
        Keys(RwLock::new(Arc::new(set)))
    }
    pub fn get(&self) -> Arc<KeySet> {
        self.0.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
    /// Installs a new key set (a rotation): tokens of any key it lists stay valid.
    pub fn replace(&self, set: KeySet) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
    }
}

/// Reads the key set from the secret `auth.jwt_secret`. Without it, an
/// environment whose `policy.allow_ephemeral_token_key` is set (dev, test)
/// generates a key for this process (tokens die with it); any other refuses
/// to start.
pub fn load_keys(config: &Resolved) -> Result<KeySet, AppError> {
    let name = &config.settings.auth.jwt_secret;
    let store = secrets::open(config.settings.secrets.backend);
    match store.get(name)? {
        Some(value) => KeySet::parse(value.expose())
            .map_err(|e| AppError::Config(format!("secret '{name}' (auth.jwt_secret): {e}"))),
        None if config.settings.policy.allow_ephemeral_token_key => {
            tracing::warn!(
                secret = %name,
                env = %config.env,
                "no token signing key set: using a key generated for this process (tokens stop working at restart; allowed by policy.allow_ephemeral_token_key)"
            );
            Ok(KeySet::ephemeral())
        }
        None => Err(AppError::Config(format!(
            "secret '{name}' (auth.jwt_secret) is not set: {}. Environment '{}' needs token signing keys (format kid:base64key[,kid:base64key], first is current)",
            store.hint(name),
            config.env
        ))),
    }
}
