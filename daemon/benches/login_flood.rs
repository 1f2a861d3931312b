//! Login-flood benchmark (run by `ci/bench.d/login-flood`): atelierd on port 0
//! with its own database, and a load generator in the same process (its own
//! runtime). `GET /api/v1/sales?limit=20` runs *paced* (open loop, latency
//! counted from when a request was due) at `BENCH_RATE` requests/s (200) on
//! 16 connections, twice for `BENCH_SECONDS` (10) each:
//!
//! 1. alone (the baseline of the same run);
//! 2. beside a login flood: `BENCH_FLOOD` (64) connections sending wrong
//!    passwords as fast as they are answered (the lockout is off here, so
//!    every login hashes), with the hashing pool as configured
//!    (`auth.hash_concurrency`, default the cores).
//!
//! (Before the pool, hashes ran on tokio's blocking threads: the same flood
//! took this process to 12.6 GiB and GET /sales's p99 to minutes, on
//! 2026-12-05; that peer is not rerun, it would starve a shared machine.)
//!
//! The server's `database.pool_size` is `BENCH_POOL` (16), as in `ci/bench.d/http`;
//! `BENCH_HASH_CONCURRENCY` sets `auth.hash_concurrency` (default: the configuration's).
//!
//! Printed per phase: p50/p99 of GET /sales and the ratio of its p99 to the
//! baseline's (the target: within 2× with the bounded pool), logins/s, and
//! the process's resident memory (VmRSS) before and after, with its peak
//! (VmHWM). The process holds the load generator too, so memory figures
//! are compared between phases, not read alone.

use atelier_daemon::app::{App, Roles};
use atelier_domain::auth;
use atelier_domain::config;
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::tenancy::{self, NewUser};
use atelier_domain::store::{Tenant, products};
use atelier_domain::testing::TestDb;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// VmRSS and VmHWM of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Paced {
    requests: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
}

/// `GET url` paced at `rate` requests/s in all over `connections`, for `seconds`.
async fn paced(url: &str, token: &str, connections: usize, rate: f64, seconds: u64) -> Paced {
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let (url, token) = (url.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            let mut due = start + interval.mul_f64(i as f64 / connections as f64);
            while due < deadline {
                tokio::time::sleep_until(due.into()).await;
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                        lat.push(due.elapsed());
                    }
                    _ => errors += 1,
                }
                due += interval;
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied();
    Paced { requests: all.len(), errors, p50: pct(0.5).unwrap_or_default(), p99: pct(0.99).unwrap_or_default() }
}

/// Logins with a wrong password on `connections` connections until `stop`; returns how many were answered.
fn flood(rt: &tokio::runtime::Runtime, url: String, connections: usize, stop: Arc<AtomicBool>) -> Arc<AtomicUsize> {
    let answered = Arc::new(AtomicUsize::new(0));
    for i in 0..connections {
        let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
        rt.spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let body = format!(r#"{{"email":"flood{i}@bench.example","password":"not the password {i}"}}"#);
            while !stop.load(Ordering::Relaxed) {
                let res = client.post(&url).header("content-type", "application/json").body(body.clone()).send().await;
                if res.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    answered
}

fn main() {
    let seconds = env_num("BENCH_SECONDS", 10);
    let rate = env_num("BENCH_RATE", 200) as f64;
    let flood_connections = env_num("BENCH_FLOOD", 64) as usize;
    let server_rt = tokio::runtime::Builder::new_multi_thread().thread_name("atelierd").enable_all().build().unwrap();
    let (_db, app, token) = server_rt.block_on(async {
        let db = TestDb::new().await;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments");
        let mut vars = vec![
            ("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url())),
            ("ATELIER__LOG__LEVEL".to_owned(), "error".to_owned()),
            ("ATELIER__DATABASE__POOL_SIZE".to_owned(), env_num("BENCH_POOL", 16).to_string()),
            // Every flooding login hashes: no lockout answers early.
            ("ATELIER__AUTH__LOCKOUT_ACCOUNT_FAILURES".to_owned(), "0".to_owned()),
            ("ATELIER__AUTH__LOCKOUT_CLIENT_FAILURES".to_owned(), "0".to_owned()),
        ];
        if let Ok(n) = std::env::var("BENCH_HASH_CONCURRENCY") {
            vars.push(("ATELIER__AUTH__HASH_CONCURRENCY".to_owned(), n));
        }
        let cfg = config::load_with(&dir, "test", &vars).expect("test configuration");
        let app = App::start(cfg, Roles { http: true, events: false }).await.expect("atelierd starts");
        let mut conn = db.db().conn().await.unwrap();
        let b = tenancy::create_business(&mut conn, "Bench", "USD".parse().unwrap()).await.unwrap();
        let hash = auth::hash_password("bench-password").unwrap();
        let tenant = Tenant::new(b.id);
        let new = NewUser {
            email: "cashier@bench.example",
            name: "cashier",
            password_hash: &hash,
            role: Role::Cashier,
            location_id: None,
        };
        tenancy::create_user(&mut conn, tenant, new).await.unwrap();
        let product = products::create(
            &mut conn,
            tenant,
            products::NewProduct {
                name: "Thread".into(),
                sku: None,
                unit_price_minor: 300,
                requires_production: false,
            },
        )
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let base = format!("http://{}", app.http_addr.unwrap());
        let login: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": "cashier@bench.example", "password": "bench-password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["data"]["token"].as_str().unwrap().to_owned();
        for _ in 0..40 {
            let res = client
                .post(format!("{base}/api/v1/sales"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"lines": [{"product_id": product.id, "quantity": 2}]}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "seeding a sale: {}", res.status());
        }
        (db, app, token)
    });
    let base = format!("http://{}", app.http_addr.unwrap());
    let sales_url = format!("{base}/api/v1/sales?limit=20");
    let login_url = format!("{base}/api/v1/auth/login");
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();
    let pool = app.shared.hashing.size();
    println!(
        "login flood: GET /api/v1/sales?limit=20 paced at {rate} req/s on 16 connections, {seconds} s per phase; flood: {flood_connections} connections of wrong passwords; hashing pool {pool}"
    );
    println!(
        "{:<44} {:>8} {:>6} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "phase", "GETs", "errors", "p50 ms", "p99 ms", "p99 ×", "logins/s", "RSS before", "RSS after", "peak MiB"
    );
    // Warm-up: connections, pool, plan cache.
    load_rt.block_on(paced(&sales_url, &token, 16, rate, 1));
    let mut baseline_p99 = None;
    let phases: [(&str, bool); 2] =
        [("baseline: GET /sales alone", false), ("beside a login flood (the hashing pool)", true)];
    for (name, flooding) in phases {
        let (rss_before, _) = memory();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = flooding.then(|| flood(&load_rt, login_url.clone(), flood_connections, stop.clone()));
        if answered.is_some() {
            // Let the flood reach its steady state before measuring.
            std::thread::sleep(Duration::from_secs(2));
        }
        let before = answered.as_ref().map_or(0, |a| a.load(Ordering::Relaxed));
        let started = Instant::now();
        let figures = load_rt.block_on(paced(&sales_url, &token, 16, rate, seconds));
        let logins = answered.as_ref().map_or(0, |a| a.load(Ordering::Relaxed)) - before;
        let logins_per_s = logins as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        // Let the flood's last requests finish before reading the memory.
        std::thread::sleep(Duration::from_secs(2));
        let (rss_after, peak) = memory();
        let p99_ms = figures.p99.as_secs_f64() * 1000.0;
        let base = *baseline_p99.get_or_insert(p99_ms);
        println!(
            "{:<44} {:>8} {:>6} {:>9.1} {:>9.1} {:>8.2} {:>9.0} {:>10.0} {:>10.0} {:>10.0}",
            name,
            figures.requests,
            figures.errors,
            figures.p50.as_secs_f64() * 1000.0,
            p99_ms,
            p99_ms / base,
            logins_per_s,
            rss_before,
            rss_after,
            peak
        );
    }
    drop(load_rt);
    server_rt.block_on(async {
        app.stop().await.ok();
    });
}
