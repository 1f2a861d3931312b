//! Rotating the database password with alternating users against the real
//! PostgreSQL, while a running atelierd (HTTP and events) answers a steady
//! flow of requests (each `/ready` opens a fresh connection with the
//! credentials of the moment) and handles a steady flow of events (canary
//! pings through the outbox, RabbitMQ and their handler): 0 failed requests,
//! every event handled and none dead-lettered, the new role's password set
//! from a SCRAM verifier, and the old password refused once `finish` has run.
//!
//! PostgreSQL here trusts local connections; for the length of the test a
//! `scram-sha-256` line in pg_hba.conf makes it check passwords for this
//! test's two roles only (removed, and the roles dropped, even on failure).
//! One test in its own binary: it sets the identity variable before any
//! thread exists.

mod support;

use atelier_domain::secrets::SecretValue;
use atelier_domain::store::{DatabaseUrl, Db};
use atelier_domain::testing::{TestDb, eventually};
use base64::Engine;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn psql(db: &str, sql: &str) -> Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .expect("psql runs")
}

fn psql_ok(db: &str, sql: &str) -> String {
    let out = psql(db, sql);
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The test's two login roles; dropped (with their grants, sessions ended) on drop.
struct Roles {
    db: String,
    base: String,
    alt: String,
}

impl Roles {
    fn create(db: &str, base: &str) -> Roles {
        let roles = Roles { db: db.to_owned(), base: base.to_owned(), alt: format!("{base}_alt") };
        let (b, a) = (&roles.base, &roles.alt);
        psql_ok(
            db,
            &format!(
                "CREATE ROLE {b} LOGIN CREATEROLE; CREATE ROLE {a} LOGIN CREATEROLE; \
                 GRANT ALL ON ALL TABLES IN SCHEMA public TO {b}, {a}; \
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {b}, {a}; \
                 GRANT USAGE, CREATE ON SCHEMA public TO {b}, {a}"
            ),
        );
        roles
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let (b, a) = (&self.base, &self.alt);
        let _ = psql(
            "postgres",
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ('{b}', '{a}')"),
        );
        let _ = psql(&self.db, &format!("DROP OWNED BY {b}, {a}"));
        let _ = psql("postgres", &format!("DROP ROLE IF EXISTS {b}; DROP ROLE IF EXISTS {a}"));
    }
}

/// A `scram-sha-256` line for the test's roles at the top of pg_hba.conf;
/// removed (and the configuration reloaded) on drop.
struct Hba {
    file: String,
    line: String,
}

impl Hba {
    fn require_passwords(roles: &Roles) -> Hba {
        let file = psql_ok("postgres", "SHOW hba_file");
        let line =
            format!("host all {},{} 127.0.0.1/32 scram-sha-256 # atelier test {}", roles.base, roles.alt, roles.base);
        let text = std::fs::read_to_string(&file).expect("pg_hba.conf is readable (tests run as root)");
        std::fs::write(&file, format!("{line}\n{text}")).expect("pg_hba.conf is writable");
        let hba = Hba { file, line };
        psql_ok("postgres", "SELECT pg_reload_conf()");
        hba
    }
}

impl Drop for Hba {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.file) {
            let kept: String = text.lines().filter(|l| *l != self.line).map(|l| format!("{l}\n")).collect();
            let _ = std::fs::write(&self.file, kept);
        }
        let _ = psql("postgres", "SELECT pg_reload_conf()");
    }
}

/// The test's RabbitMQ namespace, deleted on drop.
struct Namespace(String);
impl Drop for Namespace {
    fn drop(&mut self) {
        support::delete_namespace(&self.0);
    }
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn connects(url: &str) -> bool {
    match Db::new(DatabaseUrl::plain(url).unwrap(), 1, Duration::from_secs(10)) {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    }
}

#[test]
fn the_database_password_rotates_with_alternating_users_and_no_request_fails() {
    let dir = TempDir(std::env::temp_dir().join(format!("atelier-pg-rotation-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (identity, recipient) = atelier_domain::secrets::file::generate_identity();
    let identity_file = dir.0.join("identity.txt");
    std::fs::write(&identity_file, format!("{}\n", identity.expose())).unwrap();
    // SAFETY: no other thread exists yet (this binary holds this one test, and no runtime is built).
    unsafe { std::env::set_var("ATELIER_SECRETS_IDENTITY_FILE", &identity_file) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    runtime.block_on(rotation(&dir, recipient));
}

async fn rotation(dir: &TempDir, recipient: String) {
    let test_db = TestDb::new().await;
    let db_name = test_db.name().to_owned();
    let base = format!("t_rot_{}", std::process::id());
    let roles = Roles::create(&db_name, &base);
    let alt = roles.alt.clone();
    let stop_events = Arc::new(AtomicBool::new(false));
    let first: SecretValue = atelier_domain::secrets::generate(atelier_domain::secrets::document::Kind::Token, 1);
    psql_ok(&db_name, &format!("ALTER ROLE {base} PASSWORD '{}'", atelier_domain::secrets::scram_verifier(&first)));
    let _hba = Hba::require_passwords(&roles);
    let namespace = Namespace(format!("t-rot-{}", std::process::id()));
    let url_as = |user: &str, password: &str| format!("postgres://{user}:{password}@127.0.0.1:5432/{db_name}");
    eventually(WAIT, "PostgreSQL checks the test roles' passwords", || async {
        !connects(&url_as(&base, "wrong")).await
    })
    .await;
    assert!(connects(&url_as(&base, first.expose())).await, "the first password works");

    let vars: Vec<(String, String)> = [
        ("ATELIER__DATABASE__URL", format!("postgres://{base}@127.0.0.1:5432/{db_name}")),
        ("ATELIER__DATABASE__PASSWORD_SECRET", "database_password".to_owned()),
        ("ATELIER__SECRETS__BACKEND", "file".to_owned()),
        ("ATELIER__SECRETS__FILE", dir.0.join("test.secrets.json").display().to_string()),
        ("ATELIER__SECRETS__RECIPIENTS", recipient),
        ("ATELIER__SECRETS__RELOAD_INTERVAL", "200ms".to_owned()),
        ("ATELIER__SECRETS__DAEMON_WAIT", "60s".to_owned()),
        ("ATELIER__AMQP__NAMESPACE", namespace.0.clone()),
        ("ATELIER__AMQP__OUTBOX_POLL", "100ms".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut seen: Vec<String> = Vec::new();
    let cli = |args: &[&str], stdin: &str, extra: &[(String, String)]| -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atelier"))
            .args(["--env", "test", "-v"])
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("ATELIER_ENV")
            .envs(vars.iter().chain(extra).map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = |out: Output, seen: &mut Vec<String>| -> serde_json::Value {
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
        seen.push(String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        support::json(&out)
    };
    ok(cli(&["secrets", "init", "-o", "json"], "", &[]), &mut seen);
    let set = cli(
        &["secrets", "set", "database_password", "--kind", "postgres_password", "--stdin", "-o", "json"],
        &format!("{}\n", first.expose()),
        &[],
    );
    ok(set, &mut seen);

    // atelierd (HTTP and events) as the test's role, rereading its secrets every 200ms.
    let dir_env = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let resolved = atelier_domain::config::load_with(&dir_env, "test", &vars).unwrap();
    let app = atelier_daemon::app::App::start(resolved, atelier_daemon::app::Roles { http: true, events: true })
        .await
        .expect("atelierd starts as the test role");
    let base_url = format!("http://{}", app.http_addr.unwrap());
    eventually(WAIT, "atelierd is ready (broker and consumers up)", || async {
        reqwest::get(format!("{base_url}/ready")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // The events: a canary ping every 20ms (raised as postgres; handled by atelierd as the test's role).
    let raised = Arc::new(std::sync::Mutex::new(Vec::new()));
    let events = {
        let (raised, stop, db) = (raised.clone(), stop_events.clone(), test_db.db().clone());
        tokio::spawn(async move {
            use atelier_domain::events::Origin;
            while !stop.load(Relaxed) {
                let mut conn = db.conn().await.unwrap();
                let id = atelier_domain::store::canary::raise(&mut conn, &Origin::new("test")).await.unwrap();
                raised.lock().unwrap().push(id);
                drop(conn);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The flow: /ready (a pooled connection and a fresh one) over and over, from 4 clients.
    let (total, failed, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut flow = Vec::new();
    for _ in 0..4 {
        let (total, failed, stop, failures, url) =
            (total.clone(), failed.clone(), stop.clone(), failures.clone(), base_url.clone());
        flow.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Relaxed) {
                match client.get(format!("{url}/ready")).timeout(Duration::from_secs(30)).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => {
                        failed.fetch_add(1, Relaxed);
                        let body = r.text().await.unwrap_or_default();
                        failures.lock().unwrap().push(body);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        failures.lock().unwrap().push(e.to_string());
                    }
                }
                total.fetch_add(1, Relaxed);
            }
        }));
    }
    let more = |n: usize| {
        let total = total.clone();
        let from = total.load(Relaxed);
        async move {
            eventually(WAIT, "requests flow", || {
                let total = total.clone();
                async move { total.load(Relaxed) >= from + n }
            })
            .await
        }
    };
    more(20).await;

    // rotate: v2 on the other role, applied, tested, promoted; waits for atelierd to load it.
    let daemons = [("ATELIER__SECRETS__DAEMONS".to_owned(), base_url.clone())];
    // The flow goes on on the runtime's other threads while this one waits for the CLI.
    let rotated =
        tokio::task::block_in_place(|| cli(&["secrets", "rotate", "database_password", "-o", "json"], "", &daemons));
    let rotated = ok(rotated, &mut seen);
    assert_eq!(
        (rotated["data"]["version"].as_u64(), rotated["data"]["stage"].as_str()),
        (Some(2), Some("current")),
        "{rotated}"
    );
    assert_eq!(rotated["data"]["daemons_not_loaded"].as_array().map(Vec::len), Some(0), "{rotated}");
    let history = ok(cli(&["secrets", "history", "database_password", "-o", "json"], "", &[]), &mut seen);
    let steps: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["version"] == 2)
        .map(|a| a["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["create", "apply", "test", "promote"], "{history}");
    more(20).await;

    // finish: the old role's password is removed; PostgreSQL refuses it.
    ok(
        tokio::task::block_in_place(|| cli(&["secrets", "finish", "database_password", "-o", "json"], "", &[])),
        &mut seen,
    );
    more(20).await;
    assert!(!connects(&url_as(&base, first.expose())).await, "the old password is refused after finish");
    let before_reveal = seen.clone();
    let shown =
        ok(cli(&["--yes", "secrets", "show", "database_password", "--reveal", "-o", "json"], "", &[]), &mut seen);
    let second = shown["data"]["value"].as_str().unwrap().to_owned();
    assert!(connects(&url_as(&alt, &second)).await, "the new password works for {alt}");

    stop.store(true, Relaxed);
    stop_events.store(true, Relaxed);
    for f in flow {
        f.await.unwrap();
    }
    events.await.unwrap();
    let (total, failed) = (total.load(Relaxed), failed.load(Relaxed));
    assert_eq!(failed, 0, "{failed} of {total} requests failed: {:?}", failures.lock().unwrap());
    // Every event raised before, during and after the rotation was handled; none dead-lettered.
    let ids = raised.lock().unwrap().clone();
    assert!(ids.len() >= 10, "events flowed: {}", ids.len());
    let db = test_db.db().clone();
    eventually(WAIT, "every event is handled", || {
        let (db, ids) = (db.clone(), ids.clone());
        async move {
            let mut conn = db.conn().await.unwrap();
            for id in ids {
                if !matches!(atelier_domain::store::canary::get(&mut conn, id).await, Ok(Some(_))) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let dead = psql_ok(&db_name, "SELECT count(*) FROM dead_letters");
    assert_eq!(dead, "0", "no event was dead-lettered");
    app.stop().await.unwrap();

    // No output (with -v) carried either password, in any encoding.
    let engine = base64::engine::general_purpose::STANDARD;
    for value in [first.expose(), second.as_str()] {
        for needle in [value.to_owned(), engine.encode(value), hex::encode(value)] {
            for text in &before_reveal {
                assert!(!text.contains(&needle), "a password leaked: {text}");
            }
        }
    }
}
