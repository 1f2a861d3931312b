//! The API's token signing keys: [`Keys`], the key set in use (current +
//! accepted ones, swapped whole at a rotation) with the secret versions it
//! was built from, [`load_keys`], which reads it from the secret
//! `auth.jwt_secret`, and [`watch`], which rereads the store on SIGHUP and
//! every `secrets.reload_interval` so a rotation needs no restart. Held in
//! [`crate::state::Shared`]; the HTTP side signs and verifies with it.

use crate::error::AppError;
use crate::state::Shared;
use atelier_domain::auth::KeySet;
use atelier_domain::config::Resolved;
use atelier_domain::secrets;
use std::sync::{Arc, RwLock};

/// The versions of a secret a process has loaded: ids only, never values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    pub secret: String,
    /// The version in use (signing); `None` where the backend has no versions (`env`).
    pub current: Option<u32>,
    /// Every version accepted, current first.
    pub accepted: Vec<u32>,
}

/// The signing keys in use; replaced whole when the secret is rotated.
pub struct Keys {
    set: RwLock<Arc<KeySet>>,
    /// The versions of each versioned secret in use (token keys, database password).
    loaded: RwLock<Vec<Loaded>>,
}

impl Keys {
    pub fn new(set: KeySet) -> Self {
        Keys { set: RwLock::new(Arc::new(set)), loaded: RwLock::new(Vec::new()) }
    }
    pub fn get(&self) -> Arc<KeySet> {
        self.set.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
    /// Installs a new key set (a rotation): tokens of any key it lists stay valid.
    pub fn replace(&self, set: KeySet) {
        match self.set.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
    }
    /// Which versions of each secret the process uses (`/ready`, `/metrics`).
    pub fn loaded(&self) -> Vec<Loaded> {
        self.loaded.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
    /// Records the versions loaded of `loaded.secret`, replacing what was recorded for it.
    pub fn set_loaded(&self, secret: &str, loaded: Option<Loaded>) {
        let mut g = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        g.retain(|l| l.secret != secret);
        g.extend(loaded);
    }
}

/// Reads the key set from the secret `auth.jwt_secret`. Without it, an
/// environment whose `policy.allow_ephemeral_token_key` is set (dev, test)
/// generates a key for this process (tokens die with it); any other refuses
/// to start.
pub fn load_keys(config: &Resolved) -> Result<KeySet, AppError> {
    load(config).map(|(set, _)| set)
}

/// [`load_keys`] and the versions it read.
pub fn load(config: &Resolved) -> Result<(KeySet, Option<Loaded>), AppError> {
    let name = &config.settings.auth.jwt_secret;
    let store = secrets::open(config);
    match store.staged(name)? {
        Some(staged) => {
            // Current first (it signs), then pending and previous (accepted).
            let mut text = staged.current.expose().to_owned();
            for (_, v) in &staged.others {
                text.push(',');
                text.push_str(v.expose());
            }
            let set = KeySet::parse(&text)
                .map_err(|e| AppError::Config(format!("secret '{name}' (auth.jwt_secret): {e}")))?;
            let loaded = staged.current_version.map(|current| Loaded {
                secret: name.clone(),
                current: Some(current),
                accepted: std::iter::once(current).chain(staged.others.iter().map(|(v, _)| *v)).collect(),
            });
            Ok((set, loaded.or_else(|| Some(Loaded { secret: name.clone(), current: None, accepted: Vec::new() }))))
        }
        None if config.settings.policy.allow_ephemeral_token_key => {
            tracing::warn!(
                secret = %name,
                env = %config.env,
                "no token signing key set: using a key generated for this process (tokens stop working at restart; allowed by policy.allow_ephemeral_token_key)"
            );
            Ok((KeySet::ephemeral(), None))
        }
        None => Err(AppError::Config(format!(
            "secret '{name}' (auth.jwt_secret) is not set: {}. Environment '{}' needs token signing keys (format kid:base64key[,kid:base64key], first is current)",
            store.hint(name),
            config.env
        ))),
    }
}

/// The versions of the database password in `staged` (ids only).
pub fn database_loaded(config: &Resolved, staged: Option<&secrets::Staged>) -> Option<Loaded> {
    let name = config.settings.database.password_secret.as_ref()?;
    let current = staged?.current_version?;
    Some(Loaded { secret: name.clone(), current: Some(current), accepted: vec![current] })
}

/// Rereads the secrets atelierd uses live: the token keys (swapped whole)
/// and the database password (new connections use it; open ones finish
/// their work). Keeps what is in use when the store cannot be read (and
/// says why, without any value).
pub fn reload(shared: &Shared) {
    let config = &shared.config;
    if config.settings.database.password_secret.is_some() {
        let store = secrets::open(config);
        match atelier_domain::store::DatabaseUrl::resolve_versioned(&config.settings.database, store.as_ref()) {
            Ok((url, staged)) => {
                let loaded = database_loaded(config, staged.as_ref());
                let name = config.settings.database.password_secret.as_deref().unwrap_or_default();
                let before = shared.keys.loaded().into_iter().find(|l| l.secret == name);
                if loaded != before {
                    tracing::info!(secret = %name, user = url.user(), current = ?loaded.as_ref().and_then(|l| l.current), "database password reloaded: new connections use it");
                }
                shared.db.set_url(url);
                shared.keys.set_loaded(name, loaded);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reload the database password: keeping the one in use"),
        }
    }
    let jwt = &config.settings.auth.jwt_secret;
    let before = shared.keys.loaded().into_iter().find(|l| &l.secret == jwt);
    match load(config) {
        Ok((set, _)) if set.ephemeral && shared.keys.get().ephemeral => {}
        Ok((set, loaded)) => {
            if loaded != before || set.kids() != shared.keys.get().kids() {
                tracing::info!(
                    secret = %shared.config.settings.auth.jwt_secret,
                    current = ?loaded.as_ref().and_then(|l| l.current),
                    accepted = ?loaded.as_ref().map(|l| l.accepted.clone()),
                    kids = ?set.kids(),
                    "token keys reloaded"
                );
            }
            shared.keys.replace(set);
            shared.keys.set_loaded(jwt, loaded);
        }
        Err(e) => tracing::warn!(error = %e, "cannot reload the token keys: keeping the ones in use"),
    }
}

/// SIGHUP, registered before the daemon says it serves (so a SIGHUP sent
/// after that never hits the default action, which ends the process).
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// Registers for SIGHUP (see [`watch`]).
pub fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    None
}

/// Reloads the secrets on SIGHUP and every `secrets.reload_interval`, until shutdown.
pub async fn watch(shared: Arc<Shared>, mut hup: Hangup) -> Result<(), AppError> {
    let interval = shared.config.settings.secrets.reload_interval.max(std::time::Duration::from_millis(100));
    loop {
        let hangup = async {
            #[cfg(unix)]
            if let Some(s) = hup.as_mut() {
                s.recv().await;
                return;
            }
            #[cfg(not(unix))]
            let _ = hup.as_mut();
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
            _ = hangup => tracing::info!("SIGHUP: reloading secrets"),
        }
        let s = shared.clone();
        // Reading and decrypting the file is blocking work.
        let _ = tokio::task::spawn_blocking(move || reload(&s)).await;
    }
}
