//! The HTTP facade: operational endpoints (`/health`, `/ready`, `/version`,
//! `/metrics`) and the staff apps' API under `/api/v1` ([`api`]). It reads the
//! event side's state only through [`Shared`] (metrics, broker flags) and the
//! store, never through `events`.
//! `/metrics` is served on `http.metrics_bind` instead when that is set.
//! Connections are served here ([`serve`]) with hyper's HTTP/1 builder: the
//! headers must arrive within `http.header_timeout`, a connection idle for
//! `http.idle_timeout` is closed, at most `http.max_connections` are served
//! at once; all are drained gracefully when the daemon's shutdown token fires.

pub mod api;

use crate::error::AppError;
use crate::metrics::{HttpMethod, HttpStatus};
use crate::state::Shared;
use api::error::ApiError;
use atelier_domain::store::{dlq, migrations};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// The operational routes (the API's are in [`api`]'s route table).
const OPERATIONAL: [&str; 4] = ["/health", "/ready", "/version", "/metrics"];

/// The request line's target may be this long; longer is 414 with the envelope.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The request's headers (names and values) may total this much; more is 431
/// with the envelope. hyper itself refuses (a bare 431, no body) a head over
/// its read buffer (about 400 KiB) or with more than 100 headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Every route template a request can match: the values of the `route` label.
pub fn route_templates() -> Vec<String> {
    let mut routes: Vec<String> = OPERATIONAL.iter().map(|r| r.to_string()).collect();
    for doc in api::docs() {
        let path = format!("/api/v1{}", doc.path);
        if !routes.contains(&path) {
            routes.push(path);
        }
    }
    routes
}

/// The router of `http.bind`: everything, `/metrics` included unless it has a
/// bind of its own.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router =
        Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/version", get(version));
    if shared.config.settings.http.metrics_bind.is_none() {
        router = router.route("/metrics", get(metrics));
    }
    let mut api = api::router(shared.clone());
    if crate::version::fault() == Some(crate::version::Fault::ServerErrors) {
        // Test fault: every API request fails as a bug would.
        api =
            api.layer(axum::middleware::from_fn(|_req: axum::extract::Request, _next: axum::middleware::Next| async {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "ATELIER_TEST_FAULT=5xx").into_response()
            }));
    }
    finish(router.nest("/api/v1", api), shared)
}

/// The router of `http.metrics_bind`: `/metrics` alone.
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    finish(Router::new().route("/metrics", get(metrics)), shared)
}

fn finish(router: Router<Arc<Shared>>, shared: Arc<Shared>) -> Router {
    router
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .layer(axum::middleware::from_fn(limit_head))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .with_state(shared)
}

/// Counts each request and its time to answer in `/metrics`, by method,
/// route template (`unmatched` for a path no route serves) and status, each
/// label from its closed set.
async fn count(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let method = HttpMethod::of(req.method());
    let route = shared.metrics.route(req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str()));
    let res = next.run(req).await;
    shared.metrics.http(method, route, HttpStatus::of(res.status().as_u16())).observe(started.elapsed());
    res
}

/// 414 and 431 with the error envelope and a request id, below hyper's own
/// limits (whose answers carry neither).
async fn limit_head(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let refused = if uri > MAX_URI_BYTES {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is over {MAX_URI_BYTES} bytes"),
        )
    } else if headers > MAX_HEADER_BYTES {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers total over {MAX_HEADER_BYTES} bytes"),
        )
    } else {
        return next.run(req).await;
    };
    let mut res = refused.into_response();
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Serves `router` on `listener` until the shutdown token fires, then stops
/// accepting and waits for the connections to finish their requests.
pub async fn serve(listener: TcpListener, router: Router, shared: Arc<Shared>) -> Result<(), AppError> {
    let settings = &shared.config.settings.http;
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(settings.header_timeout).keep_alive(true);
    let idle = settings.idle_timeout;
    let shutdown = shared.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // A slot first: over the limit, connections wait in the listen backlog.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(builder.clone(), stream, peer, router.clone(), idle, shutdown.clone(), slot));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// When a connection last finished a request, and how many it has in flight.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last request's end.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn end(&self) {
        self.last_ms.store(u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX), Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Returns once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let since = self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Relaxed)));
            if self.in_flight.load(Relaxed) == 0 && since >= idle {
                return;
            }
            tokio::time::sleep(if since < idle { idle - since } else { idle }).await;
        }
    }
}

/// One connection, until the client closes it, it stays idle too long, its
/// headers are too slow (hyper's header timeout), or the daemon stops (its
/// request in flight finishes first).
async fn connection(
    builder: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    idle: Duration,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity =
        Arc::new(Activity { opened: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // The client's address, for the login lockout per address.
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let mut router = router.clone();
            let activity = activity.clone();
            activity.in_flight.fetch_add(1, Relaxed);
            async move {
                use tower_service::Service;
                let ready = std::future::poll_fn(|cx| Service::<axum::extract::Request>::poll_ready(&mut router, cx));
                let res = match ready.await {
                    Ok(()) => router.call(req.map(axum::body::Body::new)).await,
                    Err(never) => match never {},
                };
                activity.end();
                res
            }
        })
    };
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.idle_for(idle), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Liveness: the process answers.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers and has every migration this build expects.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    if crate::version::fault() == Some(crate::version::Fault::NeverReady) {
        ok = false;
        checks.insert("fault".into(), json!({"ok": false, "error": "ATELIER_TEST_FAULT=never_ready"}));
    }
    match shared.db.ping().await {
        Ok(()) => {
            checks.insert("database".into(), json!({"ok": true}));
        }
        Err(e) => {
            ok = false;
            checks.insert("database".into(), json!({"ok": false, "error": e.to_string()}));
        }
    }
    match migrations::status(&shared.db.url()).await {
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
    // The secret versions this process has loaded (ids only), so `atelier
    // secrets rotate` can wait for every daemon to have a new one.
    let secrets = shared.keys.loaded();
    (status, Json(json!({"status": if ok { "ready" } else { "not_ready" }, "checks": checks, "secrets": secrets})))
        .into_response()
}

async fn version(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(
        json!({"version": crate::version::current(), "env": shared.config.env, "slot": std::env::var("ATELIER_SLOT").ok()}),
    )
}

/// Prometheus text: event counters and latency, outbox, broker, dead letters.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let dead = match shared.db.conn().await {
        Ok(mut conn) => dlq::counts_by_status(&mut conn).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut body = shared.metrics.render(&dead);
    let all = shared.keys.loaded();
    if !all.is_empty() {
        body.push_str(
            "# HELP atelier_secret_version The secret versions this process has loaded (stage current or accepted).\n",
        );
        body.push_str("# TYPE atelier_secret_version gauge\n");
    }
    for loaded in all {
        for (stage, versions) in
            [("current", loaded.current.into_iter().collect::<Vec<_>>()), ("accepted", loaded.accepted.clone())]
        {
            for v in versions {
                body.push_str(&format!(
                    "atelier_secret_version{{secret=\"{}\",stage=\"{stage}\",version=\"{v}\"}} 1\n",
                    loaded.secret
                ));
            }
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
