//! Wiring: what atelierd runs (its roles), in what order it starts, and how it
//! stops. Start: connect the database (creating and migrating it first where
//! the environment allows: dev), then the HTTP facade. Stop: on SIGTERM or
//! Ctrl-C, stop taking work and finish what is in flight within
//! `daemon.shutdown_timeout`.

use crate::{events, http};
use atelier_domain::config::Resolved;
use atelier_domain::secrets::{self, SecretError};
use atelier_domain::store::sales_writer::SalesWriter;
use atelier_domain::store::{DatabaseUrl, Db, StoreError, migrations};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which parts of atelierd this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub http: bool,
    pub events: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Task(String),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Secret(_) => 3,
            AppError::Store(e) if e.is_transient() => 4,
            AppError::Bind { .. } => 4,
            _ => 1,
        }
    }
}

/// What the parts of the daemon share.
pub struct Shared {
    pub config: Resolved,
    pub db: Db,
    pub roles: Roles,
    pub shutdown: CancellationToken,
    /// Event-processing metrics and broker state (`/metrics`, `/ready`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The API's token signing keys (current + previous).
    pub keys: http::api::auth::Keys,
    /// Wakes this process's outbox relay: raised after an API request or a
    /// handled event may have written outbox rows (see `events::relay`).
    pub outbox_written: tokio::sync::Notify,
    /// Writes the API's sales, concurrent ones together (group commit).
    pub sales: SalesWriter,
}

/// A started daemon.
pub struct App {
    pub shared: Arc<Shared>,
    /// Where the HTTP facade listens, when it runs.
    pub http_addr: Option<SocketAddr>,
    tasks: JoinSet<Result<(), AppError>>,
}

impl App {
    pub async fn start(config: Resolved, roles: Roles) -> Result<App, AppError> {
        Self::start_with(config, roles, None).await
    }

    /// Starts with the given event handlers instead of this build's (tests).
    pub async fn start_with(
        config: Resolved,
        roles: Roles,
        handlers: Option<Vec<Arc<dyn events::handler::Handler>>>,
    ) -> Result<App, AppError> {
        let settings = &config.settings;
        let store = secrets::open(settings.secrets.backend);
        let url = DatabaseUrl::resolve(&settings.database, store.as_ref())?;
        if settings.database.create_if_missing && migrations::create_database_if_missing(&url).await? {
            tracing::info!(database = url.database(), "created the database");
        }
        if settings.database.auto_migrate {
            let applied = migrations::run(&url, (&settings.database).into(), |m| {
                tracing::info!(migration = %m.name, "applied migration");
            })
            .await?;
            if !applied.is_empty() {
                tracing::info!(count = applied.len(), "database migrated");
            }
        }
        let keys = http::api::auth::Keys::new(http::api::auth::load_keys(&config)?);
        let db = Db::new(url, settings.database.pool_size, settings.database.connect_timeout)?;
        db.ping().await?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let sales = SalesWriter::start(&db, metrics.sales_writer.clone())?;
        let shared = Arc::new(Shared {
            config,
            db,
            roles,
            shutdown: CancellationToken::new(),
            sales,
            metrics,
            keys,
            outbox_written: tokio::sync::Notify::new(),
        });
        let mut tasks = JoinSet::new();
        let mut http_addr = None;
        if roles.http {
            let bind = &shared.config.settings.http.bind;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|source| AppError::Bind { addr: bind.clone(), source })?;
            http_addr = listener.local_addr().ok();
            tracing::info!(addr = %http_addr.map_or_else(|| bind.clone(), |a| a.to_string()), "serving HTTP");
            tasks.spawn(http::serve(listener, shared.clone()));
        }
        if roles.events {
            match handlers {
                Some(h) => tasks.spawn(events::run_with(shared.clone(), h)),
                None => tasks.spawn(events::run(shared.clone())),
            };
        }
        Ok(App { shared, http_addr, tasks })
    }

    /// Stops taking work and waits for what is in flight, up to the shutdown timeout.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.shared.shutdown.cancel();
        let timeout = self.shared.config.settings.daemon.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            let mut first_error = None;
            while let Some(res) = self.tasks.join_next().await {
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => {
                        first_error.get_or_insert(AppError::Task(e.to_string()));
                    }
                }
            }
            first_error
        })
        .await;
        match drained {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => {
                tracing::warn!(?timeout, "work still in flight at the shutdown timeout; stopping anyway");
                self.tasks.abort_all();
                Ok(())
            }
        }
    }

    /// Runs until a signal or until a part fails.
    pub async fn run_until_signal(mut self) -> Result<(), AppError> {
        let failed = tokio::select! {
            _ = shutdown_signal() => None,
            Some(res) = self.tasks.join_next() => Some(match res {
                Ok(Ok(())) => AppError::Task("a part of atelierd stopped unexpectedly".into()),
                Ok(Err(e)) => e,
                Err(e) => AppError::Task(e.to_string()),
            }),
        };
        tracing::info!("stopping");
        let stopped = self.stop().await;
        match failed {
            Some(e) => Err(e),
            None => stopped,
        }
    }
}

/// Starts the daemon and runs it until SIGTERM or Ctrl-C.
pub async fn run(config: Resolved, roles: Roles) -> Result<(), AppError> {
    tracing::info!(env = %config.env, version = env!("CARGO_PKG_VERSION"), http = roles.http, events = roles.events, "starting atelierd");
    App::start(config, roles).await?.run_until_signal().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
