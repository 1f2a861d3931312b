//! `spawn_app()`: atelierd on port 0, with a database of its own (cloned from
//! the migrated template) and, for event tests, a broker namespace of its own.

#![allow(dead_code)]

use atelier_daemon::app::{App, Roles};
use atelier_domain::config;
use atelier_domain::testing::TestDb;
use std::path::PathBuf;

pub struct TestApp {
    pub app: Option<App>,
    pub db: TestDb,
    pub base_url: String,
    pub client: reqwest::Client,
}

pub fn environments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments")
}

/// The test environment's configuration pointed at `db`, plus `extra` overrides.
pub fn test_config(db: &TestDb, extra: &[(&str, &str)]) -> config::Resolved {
    let mut vars = vec![("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url()))];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load_with(&environments(), "test", &vars).expect("test configuration")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Roles { http: true, events: false }, &[]).await
}

pub async fn spawn_app_with(roles: Roles, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await;
    let config = test_config(&db, extra);
    let app = App::start(config, roles).await.expect("atelierd starts");
    let addr = app.http_addr.expect("HTTP is served");
    TestApp { app: Some(app), db, base_url: format!("http://{addr}"), client: reqwest::Client::new() }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("clean stop");
        }
    }
}

pub mod events {
    //! Event-processing test support: a probe handler whose failures are
    //! scripted, a namespace per test, direct access to the broker, and the
    //! teardown that deletes the namespace's queues and exchanges.

    use atelier_daemon::app::{App, Roles};
    use atelier_daemon::events::handler::{Handler, HandlerError, Outcome};
    use atelier_domain::bus::{self, AmqpUrl, Topology};
    use atelier_domain::config::Settings;
    use atelier_domain::events::{Envelope, Event, EventType, Origin, SystemPing};
    use atelier_domain::secrets::EnvSecrets;
    use atelier_domain::store::{Db, StoreError, outbox, processing};
    use diesel_async::AsyncConnection;
    use futures_util::future::BoxFuture;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use uuid::Uuid;

    pub const PROBE: &str = "probe";
    pub const TYPES: &[EventType] = &[EventType::SystemPing];

    /// How the probe fails.
    #[derive(Clone, Copy, Debug)]
    pub enum Script {
        /// Applies every event (claims it in processed_events with its effects).
        Apply,
        /// Retryable for the first n deliveries of each event, then applies.
        FailTimes(u32),
        /// Always retryable.
        AlwaysFail,
        /// Panics on the very first call, then applies every event.
        PanicOnce,
        /// Transient (a dependency down) for the first n deliveries of each event, then applies.
        TransientTimes(u32),
    }

    pub struct Probe {
        pub db: Db,
        pub script: Script,
        /// Every call's time, per event id, in arrival order.
        pub calls: Mutex<HashMap<Uuid, Vec<Instant>>>,
        pub order: Mutex<Vec<Uuid>>,
        pub applied: AtomicU64,
    }

    impl Probe {
        pub fn new(db: &Db, script: Script) -> Arc<Probe> {
            Arc::new(Probe {
                db: db.clone(),
                script,
                calls: Mutex::default(),
                order: Mutex::default(),
                applied: AtomicU64::new(0),
            })
        }

        pub fn calls_of(&self, id: Uuid) -> Vec<Instant> {
            self.calls.lock().unwrap().get(&id).cloned().unwrap_or_default()
        }

        pub fn total_calls(&self) -> usize {
            self.calls.lock().unwrap().values().map(Vec::len).sum()
        }
    }

    impl Handler for Probe {
        fn binding(&self) -> atelier_domain::bus::handlers::HandlerBinding {
            atelier_domain::bus::handlers::HandlerBinding { name: PROBE, event_types: TYPES }
        }

        fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
            Box::pin(async move {
                let n = {
                    let mut calls = self.calls.lock().unwrap();
                    let v = calls.entry(envelope.id).or_default();
                    v.push(Instant::now());
                    v.len() as u32
                };
                let first_call = {
                    let mut order = self.order.lock().unwrap();
                    order.push(envelope.id);
                    order.len() == 1
                };
                match self.script {
                    Script::PanicOnce if first_call => panic!("the probe panics on its first call"),
                    Script::AlwaysFail => {
                        return Err(HandlerError::Retryable {
                            kind: "provider_503",
                            reason: "provider answered 503".into(),
                        });
                    }
                    Script::TransientTimes(k) if n <= k => {
                        return Err(HandlerError::Transient(format!("database unavailable (call {n})")));
                    }
                    Script::FailTimes(k) if n <= k => {
                        return Err(HandlerError::Retryable {
                            kind: "provider_503",
                            reason: format!("503 (call {n})"),
                        });
                    }
                    _ => {}
                }
                let mut conn = self.db.conn().await?;
                let id = envelope.id;
                let claimed =
                    conn.transaction::<_, StoreError, _>(async |c| processing::claim(c, PROBE, id).await).await?;
                if claimed {
                    self.applied.fetch_add(1, Relaxed);
                    Ok(Outcome::Applied)
                } else {
                    Ok(Outcome::Duplicate)
                }
            })
        }
    }

    pub fn namespace() -> String {
        format!("t-{}", Uuid::now_v7().simple())
    }

    /// Overrides for an event test in namespace `ns`: short retry delays.
    pub fn overrides(ns: &str) -> Vec<(String, String)> {
        vec![
            ("ATELIER__AMQP__NAMESPACE".into(), ns.into()),
            ("ATELIER__RETRY__BASE_DELAY".into(), "300ms".into()),
            ("ATELIER__RETRY__FACTOR".into(), "2".into()),
            ("ATELIER__RETRY__MAX_RETRIES".into(), "3".into()),
            ("ATELIER__AMQP__OUTBOX_POLL".into(), "100ms".into()),
        ]
    }

    /// A daemon with the events role (and HTTP) running `handlers` on `db`.
    pub async fn start(db: &super::TestDb, vars: &[(String, String)], handlers: Vec<Arc<dyn Handler>>) -> App {
        let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = super::test_config(db, &extra);
        App::start_with(config, Roles { http: true, events: true }, Some(handlers)).await.expect("atelierd starts")
    }

    pub fn settings(db: &super::TestDb, vars: &[(String, String)]) -> Settings {
        let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        super::test_config(db, &extra).settings
    }

    pub async fn broker(settings: &Settings) -> lapin::Connection {
        let url = AmqpUrl::resolve(&settings.amqp, &EnvSecrets).expect("amqp url");
        bus::connect(&url, "atelier test", Duration::from_secs(10)).await.expect("RabbitMQ")
    }

    /// Deletes every queue and exchange of the test's namespace.
    pub async fn teardown(settings: &Settings) {
        let conn = broker(settings).await;
        Topology::new(settings, &[(PROBE, TYPES)]).delete(&conn, Duration::from_secs(10)).await.expect("teardown");
        let _ = conn.close(200, "OK".into()).await;
    }

    /// Inserts `n` system.ping events into the outbox; their ids in order.
    pub async fn raise(db: &Db, n: usize) -> Vec<Uuid> {
        let mut conn = db.conn().await.unwrap();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let ev = Event::SystemPing(SystemPing { ping_id: Uuid::now_v7() });
            ids.push(outbox::raise(&mut conn, &ev, None, &Origin::new("test")).await.unwrap().id);
        }
        ids
    }

    pub async fn scalar(db: &Db, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel_async::RunQueryDsl;
        let Ok(mut conn) = db.conn().await else { return -1 };
        match diesel::sql_query(sql).get_result::<N>(&mut conn).await {
            Ok(r) => r.n,
            Err(_) => -1,
        }
    }
}
