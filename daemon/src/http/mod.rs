//! The HTTP facade: operational endpoints (`/health`, `/ready`, `/version`,
//! `/metrics`) and the staff apps' API under `/api/v1` ([`api`]). It reads the
//! event side's state only through [`Shared`] (metrics, broker flags) and the
//! store, never through `events`.
//! Served until the daemon's shutdown token fires, then drained gracefully.

pub mod api;

use crate::error::AppError;
use crate::state::Shared;
use atelier_domain::store::{dlq, migrations};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api::router(shared.clone()))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .with_state(shared)
}

/// Counts each request and its time to answer in `/metrics`, by method,
/// route template (`unmatched` for a path no route serves) and status.
async fn count(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    shared.metrics.http(method.as_str(), route, res.status().as_u16()).observe(started.elapsed());
    res
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> Result<(), AppError> {
    let shutdown = shared.shutdown.clone();
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(AppError::Http)
}

/// Liveness: the process answers.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers and has every migration this build expects.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    match shared.db.ping().await {
        Ok(()) => {
            checks.insert("database".into(), json!({"ok": true}));
        }
        Err(e) => {
            ok = false;
            checks.insert("database".into(), json!({"ok": false, "error": e.to_string()}));
        }
    }
    match migrations::status(shared.db.url()).await {
        Ok(all) => {
            // Pending expand migrations: not ready. A pending contract one waits
            // for the old slot to go, so it must not hold the new one back. An
            // applied migration this build does not know is fine when it is an
            // expand (a newer version's, while this old slot still serves), not
            // when it is a contract one (phase from our record of it).
            use atelier_domain::rules::{migration_integrity::State, migration_lint::Phase};
            let names = |f: &dyn Fn(&migrations::MigrationInfo) -> bool| -> Vec<String> {
                all.iter().filter(|m| f(m)).map(|m| m.name.clone()).collect()
            };
            let pending = names(&|m| m.state == State::Pending && m.phase != Some(Phase::Contract));
            let contract = names(&|m| m.state == State::Missing && m.phase == Some(Phase::Contract));
            let fine = pending.is_empty() && contract.is_empty();
            ok &= fine;
            let mut check = json!({"ok": fine, "pending": pending});
            if !contract.is_empty() {
                check["reason"] = json!(format!(
                    "contract migration(s) {} applied by a newer version: this build may use what they removed",
                    contract.join(", ")
                ));
                check["unknown_contract"] = json!(contract);
            }
            checks.insert("migrations".into(), check);
        }
        Err(e) => {
            ok = false;
            checks.insert("migrations".into(), json!({"ok": false, "error": e.to_string()}));
        }
    }
    if shared.roles.events {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &shared.metrics;
        let connected = m.broker_connected.load(Relaxed);
        let (running, expected) = (m.consumers_running.load(Relaxed), m.consumers_expected.load(Relaxed));
        ok &= connected && running >= expected;
        checks.insert("broker".into(), json!({"ok": connected}));
        checks.insert("consumers".into(), json!({"ok": running >= expected, "running": running, "expected": expected}));
    }
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"status": if ok { "ready" } else { "not_ready" }, "checks": checks}))).into_response()
}

async fn version(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "env": shared.config.env}))
}

/// Prometheus text: event counters and latency, outbox, broker, dead letters.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let dead = match shared.db.conn().await {
        Ok(mut conn) => dlq::counts_by_status(&mut conn).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let body = shared.metrics.render(&dead);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
