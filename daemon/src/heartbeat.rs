//! This process's row in `daemon_instances`, for `atelier status`: written
//! when the daemon has started, refreshed every [`INTERVAL`], removed on a
//! clean stop. A heartbeat that cannot be written is logged at warn and
//! tried again at the next beat; it never stops the daemon.

use crate::state::Shared;
use atelier_domain::store::instances::{self, Instance};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the row is refreshed (`atelier status` calls an instance stale
/// after a few missed beats).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// The base URL another host reaches `addr` at: an unspecified bind address
/// (`0.0.0.0`) is named by this host's name.
fn url(addr: SocketAddr, host: &str) -> String {
    if addr.ip().is_unspecified() { format!("http://{host}:{}", addr.port()) } else { format!("http://{addr}") }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// This process as its row describes it.
pub fn instance(shared: &Shared, http: Option<SocketAddr>, metrics: Option<SocketAddr>) -> Instance {
    let host = host_name();
    let roles = match (shared.roles.http, shared.roles.events) {
        (true, true) => "http,events",
        (true, false) => "http",
        (false, true) => "events",
        (false, false) => "",
    };
    let now = chrono::Utc::now();
    Instance {
        id: uuid::Uuid::now_v7(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        roles: roles.to_owned(),
        http_url: http.map(|a| url(a, &host)),
        metrics_url: metrics.map(|a| url(a, &host)),
        host,
        started_at: now,
        heartbeat_at: now,
    }
}

/// Refreshes the row; says so at warn when it starts failing (once, not
/// at every beat), and at info when it works again. Returns whether it worked.
async fn beat(shared: &Shared, instance: &Instance, was_ok: bool) -> bool {
    let result = match shared.db.conn().await {
        Ok(mut conn) => instances::beat(&mut conn, instance).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) if !was_ok => {
            tracing::info!("this daemon's heartbeat is written again");
            true
        }
        Ok(()) => true,
        Err(e) if was_ok => {
            tracing::warn!(error = %e, "cannot write this daemon's heartbeat (atelier status will not list it)");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "heartbeat still not written");
            false
        }
    }
}

/// Refreshes the heartbeat (`App::start` wrote the first) until shutdown,
/// then removes the row.
pub async fn run(shared: Arc<Shared>, mut instance: Instance) -> Result<(), crate::app::AppError> {
    let mut ok = true;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            () = tokio::time::sleep(INTERVAL) => {
                instance.heartbeat_at = chrono::Utc::now();
                ok = beat(&shared, &instance, ok).await;
            }
        }
    }
    let removed = match shared.db.conn().await {
        Ok(mut conn) => instances::remove(&mut conn, instance.id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!(error = %e, "cannot remove this daemon's heartbeat row (it will show as stale)");
    }
    Ok(())
}
