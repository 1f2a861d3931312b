//! Start and stop: in what order atelierd starts the roles it runs, and how
//! it stops. It owns no state of its own ([`crate::state`]) and no error type
//! ([`crate::error`]); it builds the [`Shared`] state and spawns the parts
//! (`http::serve`, `events::run`). Start: connect the database (creating and migrating it first where
//! the environment allows: dev), then the HTTP facade. Stop: on SIGTERM or
//! Ctrl-C, stop taking work and finish what is in flight within
//! `daemon.shutdown_timeout`.

use crate::keys::{self, Keys};
use crate::state::Shared;
use crate::{events, http};
use atelier_domain::config::Resolved;
use atelier_domain::secrets;
use atelier_domain::store::sales::writer::SalesWriter;
use atelier_domain::store::{DatabaseUrl, Db, migrations};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

// What `App::start` takes and returns, also named here for its callers
// (`main`, the tests, the CLI's tests).
pub use crate::error::AppError;
pub use crate::state::Roles;

/// A started daemon.
pub struct App {
    pub shared: Arc<Shared>,
    /// Where the HTTP facade listens, when it runs.
    pub http_addr: Option<SocketAddr>,
    /// Where `/metrics` is served when `http.metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
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
        let store = secrets::open(&config);
        let (url, db_staged) = DatabaseUrl::resolve_versioned(&settings.database, store.as_ref())?;
        let db_loaded = keys::database_loaded(&config, db_staged.as_ref());
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
        let (key_set, loaded) = keys::load(&config)?;
        let keys = Keys::new(key_set);
        let db = Db::new(url, settings.database.pool_size, settings.database.connect_timeout)?;
        db.ping().await?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let sales = SalesWriter::start(&db, metrics.sales_writer.clone())?;
        let hashing = crate::hashing::HashPool::new(crate::state::hash_concurrency(&config));
        let shared = Arc::new(Shared {
            hashing,
            config,
            db,
            roles,
            shutdown: CancellationToken::new(),
            sales,
            metrics,
            keys,
            outbox_written: tokio::sync::Notify::new(),
        });
        shared.keys.set_loaded(&shared.config.settings.auth.jwt_secret, loaded);
        if let Some(name) = &shared.config.settings.database.password_secret {
            shared.keys.set_loaded(name, db_loaded);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(keys::watch(shared.clone(), keys::hangup()));
        let (mut http_addr, mut metrics_addr) = (None, None);
        if roles.http {
            let settings = &shared.config.settings.http;
            let (listener, addr) = listen(&settings.bind).await?;
            http_addr = addr;
            tracing::info!(addr = %addr.map_or_else(|| settings.bind.clone(), |a| a.to_string()), "serving HTTP");
            tasks.spawn(http::serve(listener, http::router(shared.clone()), shared.clone()));
            if let Some(bind) = &settings.metrics_bind {
                let (listener, addr) = listen(bind).await?;
                metrics_addr = addr;
                tracing::info!(addr = %addr.map_or_else(|| bind.clone(), |a| a.to_string()), "serving /metrics");
                tasks.spawn(http::serve(listener, http::metrics_router(shared.clone()), shared.clone()));
            }
        }
        if roles.events {
            match handlers {
                Some(h) => tasks.spawn(events::run_with(shared.clone(), h)),
                None => tasks.spawn(events::run(shared.clone())),
            };
        }
        // This process's row for `atelier status`, written before start returns.
        let me = crate::heartbeat::instance(&shared, http_addr, metrics_addr);
        let first = me.clone();
        if let Ok(mut conn) = shared.db.conn().await {
            let _ = atelier_domain::store::instances::beat(&mut conn, &first).await;
        }
        tasks.spawn(crate::heartbeat::run(shared.clone(), me));
        Ok(App { shared, http_addr, metrics_addr, tasks })
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
                        first_error.get_or_insert(AppError::PartPanicked(e));
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
                Ok(Ok(())) => AppError::PartStopped,
                Ok(Err(e)) => e,
                Err(e) => AppError::PartPanicked(e),
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

async fn listen(bind: &str) -> Result<(tokio::net::TcpListener, Option<SocketAddr>), AppError> {
    let listener =
        tokio::net::TcpListener::bind(bind).await.map_err(|source| AppError::Bind { addr: bind.to_owned(), source })?;
    let addr = listener.local_addr().ok();
    Ok((listener, addr))
}

/// Starts the daemon and runs it until SIGTERM or Ctrl-C.
pub async fn run(config: Resolved, roles: Roles) -> Result<(), AppError> {
    tracing::info!(env = %config.env, version = crate::version::current(), http = roles.http, events = roles.events, "starting atelierd");
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
