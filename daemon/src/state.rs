//! What the parts of atelierd share: [`Shared`] (configuration, database,
//! metrics, token keys, the outbox wake-up, the sales writer, the shutdown
//! token) and [`Roles`] (which parts this process runs). Both the event side
//! (`events`) and the HTTP side (`http`) read it; neither owns it.

use crate::keys::Keys;
use crate::metrics::Metrics;
use atelier_domain::config::Resolved;
use atelier_domain::store::Db;
use atelier_domain::store::sales::writer::SalesWriter;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Which parts of atelierd this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub http: bool,
    pub events: bool,
}

/// What the parts of the daemon share.
pub struct Shared {
    pub config: Resolved,
    pub db: Db,
    pub roles: Roles,
    pub shutdown: CancellationToken,
    /// Event-processing metrics and broker state (`/metrics`, `/ready`).
    pub metrics: Arc<Metrics>,
    /// The API's token signing keys (current + previous).
    pub keys: Keys,
    /// Wakes this process's outbox relay: raised after an API request or a
    /// handled event may have written outbox rows (see `events::relay`).
    pub outbox_written: tokio::sync::Notify,
    /// Writes the API's sales, concurrent ones together (group commit).
    pub sales: SalesWriter,
    /// The password hashing pool (`auth.hash_concurrency` threads of their
    /// own, at a lower priority): a login flood queues here instead of taking
    /// every core and the memory of one argon2 run per request.
    pub hashing: crate::hashing::HashPool,
}

/// The size of the hashing pool: `auth.hash_concurrency`, else the cores.
pub fn hash_concurrency(config: &Resolved) -> usize {
    config
        .settings
        .auth
        .hash_concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}
