//! DISRUPTIVE: these tests close this test's RabbitMQ connections, RESTART
//! THE SHARED POSTGRESQL SERVER, and SIGKILL a real `atelierd`. They run one
//! at a time (nextest group `disruptive`, .config/nextest.toml); a PostgreSQL
//! restart may briefly fail other suites running on the same machine. Each
//! run of 1,000 events must be handled exactly once with no dead letters;
//! sales posted through a restart are written or refused 503, never lost
//! once answered 201, and numbered without gaps.

mod api_support;
mod common;

use atelier_domain::testing::{TestDb, eventually};
use common::events::{Probe, Script, namespace, overrides, raise, scalar, settings, start, teardown};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// Closes the RabbitMQ connections of namespace `ns` (named `atelierd events {ns}`) only.
fn close_connections_of(ns: &str) -> usize {
    let out = Command::new("rabbitmqctl").args(["list_connections", "pid", "client_properties", "-q"]).output();
    let out = out.expect("rabbitmqctl runs (tests run as root next to the broker)");
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("atelierd events {ns}");
    let pids: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    for pid in &pids {
        let out = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: broker closed the connection"])
            .output()
            .expect("rabbitmqctl");
        assert!(out.status.success());
    }
    pids.len()
}

fn restart_postgres() {
    let st = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", "15", "main", "restart"])
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctlcluster runs");
    assert!(st.success(), "PostgreSQL restarted");
}

async fn count(db: &atelier_domain::store::Db, sql: &str) -> i64 {
    scalar(db, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connections_closed_and_postgres_restarted_mid_run_lose_and_duplicate_nothing() {
    let db = TestDb::new().await;
    let ns = namespace();
    let mut vars = overrides(&ns);
    vars.push(("ATELIER__AMQP__OUTBOX_BATCH".into(), "50".into()));
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    raise(db.db(), 1000).await;
    let processed = "SELECT count(*) AS n FROM processed_events WHERE handler = 'probe'";
    eventually(LONG, "a first part handled", || async { count(db.db(), processed).await >= 150 }).await;
    assert!(count(db.db(), processed).await < 1000, "the disruption lands mid-run");
    assert!(close_connections_of(&ns) >= 1, "the daemon's connection was closed");
    eventually(LONG, "handling resumed after the broker closed the connection", || async {
        app.shared.metrics.reconnects.load(Relaxed) >= 1 && count(db.db(), processed).await >= 400
    })
    .await;
    let before = count(db.db(), processed).await;
    restart_postgres();
    eventually(LONG, "all 1,000 handled", || async { count(db.db(), processed).await == 1000 }).await;
    eprintln!("PostgreSQL restarted at {before}/1000 processed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probe.applied.load(Relaxed), 1000, "each applied exactly once");
    assert_eq!(count(db.db(), "SELECT count(*) AS n FROM dead_letters").await, 0, "no dead letters");
    assert_eq!(count(db.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await, 0);
    app.stop().await.unwrap();
    teardown(&s).await;
}

fn spawn_atelierd(db: &TestDb, ns: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_atelierd"))
        .args(["--env", "test", "--role", "events"])
        .env("ATELIER_CONFIG_DIR", common::environments())
        .env("ATELIER__DATABASE__URL", format!("{:?}", db.url()))
        .env("ATELIER__AMQP__NAMESPACE", ns)
        .env("ATELIER__AMQP__OUTBOX_BATCH", "20")
        .env("ATELIER__RETRY__BASE_DELAY", "300ms")
        .env("ATELIER__RETRY__FACTOR", "2")
        .env("ATELIER__RETRY__MAX_RETRIES", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("atelierd starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atelierd_killed_mid_run_and_restarted_loses_and_duplicates_nothing_then_stops_on_sigterm() {
    let db = TestDb::new().await;
    let ns = namespace();
    let mut vars = overrides(&ns);
    // The in-process daemon consumes with the probe; the real atelierd relays
    // the outbox (its own canary handles the same pings on its own queue).
    vars.push(("ATELIER__AMQP__RELAY".into(), "false".into()));
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    raise(db.db(), 1000).await;
    let mut child = spawn_atelierd(&db, &ns);
    let published = "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL";
    eventually(LONG, "atelierd relaying", || async { count(db.db(), published).await >= 200 }).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let at_kill = count(db.db(), published).await;
    assert!(at_kill < 1000, "killed mid-run ({at_kill} published)");
    let mut child = spawn_atelierd(&db, &ns);
    let processed = "SELECT count(*) AS n FROM processed_events WHERE handler = 'probe'";
    eventually(LONG, "all 1,000 handled", || async { count(db.db(), processed).await == 1000 }).await;
    eventually(LONG, "all published", || async {
        count(db.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probe.applied.load(Relaxed), 1000, "each applied exactly once");
    assert_eq!(count(db.db(), "SELECT count(*) AS n FROM dead_letters").await, 0, "no dead letters");

    // SIGTERM: stops taking work and exits 0 within daemon.shutdown_timeout.
    let started = Instant::now();
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(started.elapsed() < s.daemon.shutdown_timeout + Duration::from_secs(2), "exits in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    app.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_posted_through_a_postgres_restart_are_written_or_refused_503_and_numbered_without_gaps() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let mut f = api_support::fixture().await;
    let (base, token) = (f.app.base_url.clone(), f.a.token("cashier").to_owned());
    let body = serde_json::json!({"lines": [{"product_id": f.ids["plain_product"], "quantity": 1}]});
    let stop = Arc::new(AtomicBool::new(false));
    // (status, invoice number when 201) of every sale posted, by 8 callers.
    let answers = Arc::new(std::sync::Mutex::new(Vec::<(u16, Option<String>)>::new()));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, token, body) =
                (f.app.client.clone(), format!("{base}/api/v1/sales"), token.clone(), body.clone());
            let (stop, answers) = (stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let Ok(res) = client.post(&url).bearer_auth(&token).json(&body).send().await else {
                        answers.lock().unwrap().push((0, None));
                        continue;
                    };
                    let status = res.status().as_u16();
                    let v: serde_json::Value = res.json().await.unwrap_or_default();
                    let no = v["data"]["invoice_no"].as_str().map(str::to_owned);
                    answers.lock().unwrap().push((status, no));
                }
            })
        })
        .collect();
    let written = || answers.lock().unwrap().iter().filter(|(s, _)| *s == 201).count();
    eventually(LONG, "sales written before the restart", || async { written() >= 50 }).await;
    restart_postgres();
    let at_restart = written();
    eventually(LONG, "sales written again after the restart", || async { written() >= at_restart + 50 }).await;
    stop.store(true, Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let refused = answers.iter().filter(|(s, _)| *s != 201).count();
    eprintln!("{} sales written, {refused} refused while PostgreSQL restarted", answers.len() - refused);
    let odd: Vec<_> = answers.iter().filter(|(s, _)| *s != 201 && *s != 503).collect();
    assert!(odd.is_empty(), "201 or 503 only (0: no answer): {odd:?}");
    // Every sale answered 201 is stored under its number, and the studio's
    // numbers run from 1 without a gap (the fixture's two sales first).
    let mut conn = f.app.db.db().conn().await.unwrap();
    let filter = atelier_domain::store::sales::SaleFilter::default();
    let (stored, total) = atelier_domain::store::sales::list(&mut conn, f.a.tenant, &filter, 10_000, 0).await.unwrap();
    assert_eq!(stored.len() as i64, total);
    let mut numbers: Vec<u32> = stored.iter().map(|s| s.invoice_no[11..].parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>(), "gapless");
    let stored: std::collections::HashSet<_> = stored.into_iter().map(|s| s.invoice_no).collect();
    for (_, no) in answers.iter().filter(|(s, _)| *s == 201) {
        assert!(stored.contains(no.as_ref().unwrap()), "{no:?} answered 201 and stored");
    }
    f.app.stop().await;
}
