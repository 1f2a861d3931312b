//! Test support (feature `testing`): each test gets its own PostgreSQL
//! database, cloned from a template migrated once per set of migrations (the
//! template's name carries a hash of `migrations/`, so a changed migration
//! builds a new one). Test processes coordinate through an advisory lock, so
//! nextest's process-per-test runs build the template once.
//!
//! Fixtures shared by the store's and the daemon's tests: a business
//! ([`business`]) and a studio with its products and workers ([`studio`]).
//!
//! The server comes from `ATELIER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use crate::store::migrations::{self, quote_ident};
use crate::store::{DatabaseUrl, Db, Tenant};
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

type Sync = AsyncConnectionWrapper<AsyncPgConnection>;

const TEMPLATE_LOCK: i64 = 0x0061_7465_6c69_6574;

/// The PostgreSQL server tests use.
pub fn server_url() -> DatabaseUrl {
    let url = std::env::var("ATELIER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    DatabaseUrl::plain(&url).expect("ATELIER_TEST_DATABASE_URL is not a URL")
}

/// Runs `f` on a synchronous connection in its own thread (outside any tokio
/// runtime, so the wrapper may block freely).
fn with_sync<T: Send + 'static>(url: DatabaseUrl, f: impl FnOnce(&mut Sync) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let mut conn = Sync::establish(&url.expose()).unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        f(&mut conn)
    })
    .join()
    .expect("database setup thread panicked")
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut entries: Vec<_> = walk(&dir);
    entries.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in entries {
        path.strip_prefix(&dir).unwrap_or(&path).hash(&mut h);
        std::fs::read(&path).unwrap_or_default().hash(&mut h);
    }
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn template_name() -> String {
    format!("atelier_tmpl_{}", migrations_hash())
}

fn database_exists(conn: &mut Sync, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let r: N = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .expect("query pg_database");
    r.n > 0
}

/// Builds the migrated template once (across test processes).
fn ensure_template() -> String {
    let name = template_name();
    let server = server_url();
    let exists = {
        let name = name.clone();
        with_sync(server.clone(), move |c| database_exists(c, &name))
    };
    if exists {
        return name;
    }
    // Hold the lock on one connection while another builds the template.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<bool>();
    let lock_url = server.clone();
    let n2 = name.clone();
    let holder = std::thread::spawn(move || {
        let mut c = Sync::establish(&lock_url.expose()).expect("connect for template lock");
        diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})")).execute(&mut c).expect("template lock");
        let _ = locked_tx.send(database_exists(&mut c, &n2));
        let _ = rx.recv();
        diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})")).execute(&mut c).ok();
    });
    let exists_now = locked_rx.recv().expect("template lock holder died");
    if !exists_now {
        let building = format!("{name}_building");
        let b2 = building.clone();
        with_sync(server.clone(), move |c| {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&b2))).execute(c).unwrap();
            diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&b2))).execute(c).unwrap();
        });
        let limits =
            migrations::Limits { lock_timeout: Duration::from_secs(30), statement_timeout: Duration::from_secs(120) };
        // On a runtime of its own, dropped before the rename: the test's runtime
        // may be current-thread and blocked, and would keep the session open.
        let target = server.with_database(&building);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(migrations::run(&target, limits, |_| {})).expect("migrate the template");
        })
        .join()
        .expect("template migration panicked");
        let (b3, n3) = (building.clone(), name.clone());
        with_sync(server.clone(), move |c| {
            let sql = format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&b3), quote_ident(&n3));
            retry(|| diesel::sql_query(&sql).execute(c).map(|_| ()));
        });
    }
    let _ = tx.send(());
    holder.join().ok();
    name
}

/// Runs `f` until it succeeds, for up to five seconds: PostgreSQL refuses to
/// clone or rename a database for a moment after its last session closes.
fn retry(mut f: impl FnMut() -> diesel::QueryResult<()>) {
    let mut last = None;
    for _ in 0..100 {
        match f() {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("database setup failed: {last:?}");
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDb {
    name: String,
    url: DatabaseUrl,
    db: Db,
}

impl TestDb {
    /// A fresh, migrated database (a clone of the template).
    pub async fn new() -> TestDb {
        let template = ensure_template();
        Self::create(Some(template))
    }

    /// A fresh database with nothing in it (for migration tests).
    pub async fn empty() -> TestDb {
        Self::create(None)
    }

    fn create(template: Option<String>) -> TestDb {
        let name = format!("atelier_t_{}", uuid::Uuid::now_v7().simple());
        let server = server_url();
        let n = name.clone();
        with_sync(server.clone(), move |c| {
            let sql = match template {
                Some(t) => format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&n), quote_ident(&t)),
                None => format!("CREATE DATABASE {}", quote_ident(&n)),
            };
            // A clone fails while anything is connected to the template: retry briefly.
            retry(|| diesel::sql_query(&sql).execute(c).map(|_| ()));
        });
        let url = server.with_database(&name);
        let db = Db::new(url.clone(), 8, Duration::from_secs(10)).expect("pool");
        TestDb { name, url, db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = Sync::establish(&server_url().expose()) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name)))
                    .execute(&mut c);
            }
        })
        .join();
    }
}

/// A new business for a test, in USD.
pub async fn business(db: &Db, name: &str) -> Tenant {
    let mut conn = db.conn().await.expect("connection");
    let b = crate::store::tenancy::create_business(&mut conn, name, "USD".parse().unwrap()).await.expect("business");
    Tenant::new(b.id)
}

/// A studio for a test: a business (USD) with a product made to order and
/// one off the shelf (both 2500), and two production workers.
pub struct Studio {
    pub tenant: Tenant,
    /// "Hand-dyed saree": requires production.
    pub studio_product: i64,
    /// "Thread spool": does not.
    pub shelf_product: i64,
    pub worker: i64,
    pub other_worker: i64,
}

/// A new [`Studio`] named `name`.
pub async fn studio(db: &Db, name: &str) -> Studio {
    use crate::rules::permissions::Role;
    use crate::store::{products, tenancy};
    let tenant = business(db, name).await;
    let mut c = db.conn().await.expect("connection");
    let p = |name: &str, rp| products::NewProduct {
        name: name.into(),
        sku: None,
        unit_price_minor: 2500,
        requires_production: rp,
    };
    let studio_product = products::create(&mut c, tenant, p("Hand-dyed saree", true)).await.expect("product").id;
    let shelf_product = products::create(&mut c, tenant, p("Thread spool", false)).await.expect("product").id;
    let mut user = async |email: &str| {
        tenancy::create_user(
            &mut c,
            tenant,
            tenancy::NewUser {
                email: &format!("{email}.{}@example.com", tenant.business_id),
                name: email,
                password_hash: "x",
                role: Role::ProductionWorker,
                location_id: None,
            },
        )
        .await
        .expect("user")
        .id
    };
    let worker = user("worker").await;
    let other_worker = user("other").await;
    Studio { tenant, studio_product, shelf_product, worker, other_worker }
}

/// Waits until `check` holds, polling, or panics after `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
