//! HTTP benchmark (run by `ci/bench.d/http`): atelierd on port 0 with its own
//! database, and a load generator in the same process (its own runtime) that
//! keeps 64 connections busy on `GET /health` (the bare baseline route),
//! `GET /api/v1/worker/steps` and `POST /api/v1/sales` (all on one studio, whose
//! sales all take numbers from one gapless invoice numbering, then spread
//! over `BENCH_BUSINESSES` studios), then prints
//! requests/s and p50/p99 latency for each. Bounded: a few seconds per route,
//! loopback only. `BENCH_SECONDS` and `BENCH_CONNECTIONS` override the defaults;
//! `BENCH_ROUTES=studios,health` runs only the routes whose names contain one of
//! the comma-separated words (`pgbench` for the database baseline alone);
//! `BENCH_BUSINESSES` (16) sets N, and `BENCH_POOL` (16) the server's
//! `database.pool_size`.
//!
//! The server's threads are named `atelierd` and the load generator's
//! `loadgen`, so `top -H` or `perf report --sort comm` splits the CPU between
//! them and PostgreSQL (on 2026-11-26, saturated: worker/steps about 47% /
//! 14% / 38%; sales, written together by `store::sales::writer`, 38% / 8% /
//! 50%).
//!
//! Two kinds of load, both on the same 64 connections:
//! - **saturated** (closed loop): each connection sends its next request as
//!   soon as the last one is answered. This measures the most requests/s;
//!   by Little's law its latency is connections ÷ throughput, mostly queueing.
//! - **paced** (open loop, as wrk2 does): the connections send at a fixed total
//!   rate, `BENCH_PACED` fractions of the saturated rate of the same route in
//!   the same run (default 0.5,0.8). Latency is counted from when a request
//!   was due, not from when it was sent, so a stall is not hidden by the
//!   sender waiting for it (coordinated omission).

use atelier_daemon::app::{App, Roles};
use atelier_domain::auth;
use atelier_domain::config;
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::tenancy::{self, NewUser};
use atelier_domain::store::{Tenant, production, products};
use atelier_domain::testing::TestDb;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Route {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    /// (token, body) per caller; connection i uses caller i mod len.
    callers: Vec<(Option<String>, Option<String>)>,
    /// Also measured paced at fractions of its saturated rate.
    paced: bool,
}

struct Figures {
    requests: usize,
    errors: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `route` on `connections` connections for `seconds` after a warm-up:
/// saturated when `rate` is `None`, else paced at `rate` requests/s in all.
async fn load(base: &str, route: &Route, connections: usize, seconds: u64, rate: Option<f64>) -> Figures {
    // Connection i sends its k-th request at start + (k + i / connections) × interval.
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
    let run = |start: Instant, deadline: Instant| {
        let mut tasks = Vec::new();
        for i in 0..connections {
            let (token, body) = route.callers[i % route.callers.len()].clone();
            let route = Arc::new((route.method.clone(), format!("{base}{}", route.path), token, body));
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
                let (mut lat, mut errors) = (Vec::with_capacity(4096), 0usize);
                let mut due = interval.map(|iv| start + iv.mul_f64(i as f64 / connections as f64));
                loop {
                    let begin = match due {
                        Some(at) => {
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => Instant::now(),
                    };
                    if begin >= deadline {
                        break;
                    }
                    let (m, url, token, body) = &*route;
                    let mut req = client.request(m.clone(), url);
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    if let Some(b) = body {
                        req = req.header("content-type", "application/json").body(b.clone());
                    }
                    match req.send().await {
                        Ok(res) if res.status().is_success() => {
                            let _ = res.bytes().await;
                            lat.push(begin.elapsed());
                        }
                        _ => errors += 1,
                    }
                    due = due.zip(interval).map(|(at, iv)| at + iv);
                }
                (lat, errors)
            }));
        }
        tasks
    };
    // Warm up (connections, pools, caches), then measure.
    let warm = Instant::now();
    for t in run(warm, warm + Duration::from_secs(1)) {
        let _ = t.await;
    }
    let start = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in run(start, start + Duration::from_secs(seconds)) {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    Figures::of(all, errors, start.elapsed())
}

impl Figures {
    fn of(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Figures {
        latencies.sort();
        let pct = |p: f64| {
            let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(i).copied().unwrap_or_default()
        };
        Figures {
            requests: latencies.len(),
            errors,
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

/// PostgreSQL alone: `sale.pgbench.sql` (a sale's statements, one sale per
/// write statement) from pgbench on `connections` connections to the bench's
/// database, for businesses `first..=last`, after a 1 s warm-up. `None`
/// (with the reason on stderr) when pgbench is missing or fails.
fn pgbench_sales(url: &str, connections: usize, seconds: u64, first: i64, last: i64) -> Option<Figures> {
    let pgbench = std::iter::once(PathBuf::from("pgbench"))
        .chain(std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|d| d.path().join("bin/pgbench")))
        .find(|p| std::process::Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()));
    let Some(pgbench) = pgbench else {
        eprintln!("pgbench not found (Debian: postgresql-contrib or the server package); no database baseline");
        return None;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/sale.pgbench.sql");
    let logs = std::env::temp_dir().join(format!("atelier-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).ok()?;
    let run = |secs: u64, log: bool| {
        let mut cmd = std::process::Command::new(&pgbench);
        cmd.args(["-n", "-M", "prepared", "-j", "1", "-T", &secs.to_string(), "-c", &connections.to_string()])
            .args(["-D", &format!("first={first}"), "-D", &format!("last={last}"), "-f"])
            .arg(&script)
            .current_dir(&logs);
        if log {
            cmd.args(["-l", "--log-prefix", "sale"]);
        }
        cmd.arg(url).output()
    };
    let ok = |o: std::io::Result<std::process::Output>| match o {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            eprintln!("pgbench failed: {}", err.lines().find(|l| l.contains("ERROR")).unwrap_or(err.trim()));
            false
        }
        Err(e) => {
            eprintln!("pgbench did not run: {e}");
            false
        }
    };
    let measured = ok(run(1, false)) && ok(run(seconds, true));
    // Each log line: client, transaction no, latency µs, script, epoch s, µs.
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        latencies.extend(
            text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()).map(Duration::from_micros),
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
    measured.then(|| Figures::of(latencies, 0, Duration::from_secs(seconds)))
}

fn main() {
    let connections = env_num("BENCH_CONNECTIONS", 64) as usize;
    let seconds = env_num("BENCH_SECONDS", 5);
    // The server: its own runtime and threads, as atelierd runs it.
    let server_rt = tokio::runtime::Builder::new_multi_thread().thread_name("atelierd").enable_all().build().unwrap();
    let (db, app) = server_rt.block_on(async {
        let db = TestDb::new().await;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments");
        let vars = vec![
            ("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url())),
            ("ATELIER__DATABASE__POOL_SIZE".to_owned(), env_num("BENCH_POOL", 16).to_string()),
            ("ATELIER__LOG__LEVEL".to_owned(), "error".to_owned()),
        ];
        let cfg = config::load_with(&dir, "test", &vars).expect("test configuration");
        let app = App::start(cfg, Roles { http: true, events: false }).await.expect("atelierd starts");
        (db, app)
    });
    let base = format!("http://{}", app.http_addr.unwrap());
    let shared = app.shared.clone();
    let businesses = env_num("BENCH_BUSINESSES", 16) as usize;
    let (cashiers, worker, studios) = server_rt.block_on(async {
        let mut conn = db.db().conn().await.unwrap();
        let hash = auth::hash_password("bench-password").unwrap();
        let origin = atelier_domain::events::Origin::new("bench");
        let mut cashiers = Vec::new();
        let mut worker_token = None;
        let mut studios = Vec::new();
        for n in 0..businesses {
            let b = tenancy::create_business(&mut conn, &format!("Bench {n}"), "USD".parse().unwrap()).await.unwrap();
            let t = Tenant::new(b.id);
            studios.push(b.id);
            let token = |u: &tenancy::User| {
                let claims =
                    auth::Claims::new(u.id, t.business_id, &u.role, chrono::Utc::now(), Duration::from_secs(3600));
                shared.keys.get().sign(&claims)
            };
            let cashier = tenancy::create_user(
                &mut conn,
                t,
                NewUser {
                    email: &format!("cashier{n}@bench.example"),
                    name: "cashier",
                    password_hash: &hash,
                    role: Role::Cashier,
                    location_id: None,
                },
            )
            .await
            .unwrap();
            let p = products::create(
                &mut conn,
                t,
                products::NewProduct { name: "Scarf".into(), unit_price_minor: 5000, ..Default::default() },
            )
            .await
            .unwrap();
            cashiers.push((
                Some(token(&cashier)),
                Some(format!(r#"{{"channel":"walk_in","lines":[{{"product_id":{},"quantity":2}}]}}"#, p.id)),
            ));
            if n == 0 {
                let worker = tenancy::create_user(
                    &mut conn,
                    t,
                    NewUser {
                        email: "worker@bench.example",
                        name: "worker",
                        password_hash: &hash,
                        role: Role::ProductionWorker,
                        location_id: None,
                    },
                )
                .await
                .unwrap();
                for _ in 0..4 {
                    let o = production::create_manual(
                        &mut conn,
                        t,
                        production::NewOrder { step_qty: Some(3), ..Default::default() },
                        &origin,
                    )
                    .await
                    .unwrap();
                    for s in o.steps {
                        production::assign_step(&mut conn, t, s.id, Some(worker.id)).await.unwrap();
                    }
                }
                worker_token = Some(token(&worker));
            }
        }
        (cashiers, worker_token.unwrap(), studios)
    });
    let routes = [
        Route {
            name: "GET /health (baseline)",
            method: reqwest::Method::GET,
            path: "/health".into(),
            callers: vec![(None, None)],
            paced: false,
        },
        Route {
            name: "GET /api/v1/worker/steps",
            method: reqwest::Method::GET,
            path: "/api/v1/worker/steps".into(),
            callers: vec![(Some(worker), None)],
            paced: true,
        },
        Route {
            name: "POST /api/v1/sales (1 studio)",
            method: reqwest::Method::POST,
            path: "/api/v1/sales".into(),
            callers: vec![cashiers[0].clone()],
            paced: false,
        },
        Route {
            name: "POST /api/v1/sales (N studios)",
            method: reqwest::Method::POST,
            path: "/api/v1/sales".into(),
            callers: cashiers.clone(),
            paced: true,
        },
    ];
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();
    println!(
        "HTTP benchmark: {connections} connections, {seconds}s per route after 1s warm-up, loopback, one process; N = {businesses} studios"
    );
    let only = std::env::var("BENCH_ROUTES").unwrap_or_default();
    let paced: Vec<f64> = std::env::var("BENCH_PACED")
        .unwrap_or_else(|_| "0.5,0.8".into())
        .split(',')
        .filter_map(|f| f.trim().parse().ok())
        .filter(|f| *f > 0.0)
        .collect();
    let row = |name: &str, load: &str, f: &Figures| {
        println!(
            "{:<32} {:<16} {:>9} {:>7} {:>9.0} {:>9.2} {:>9.2}",
            name,
            load,
            f.requests,
            f.errors,
            f.rps,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3
        );
    };
    println!(
        "{:<32} {:<16} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "route", "load", "requests", "errors", "req/s", "p50 ms", "p99 ms"
    );
    for r in routes.iter().filter(|r| only.is_empty() || only.split(',').any(|o| r.name.contains(o.trim()))) {
        let saturated = client_rt.block_on(load(&base, r, connections, seconds, None));
        row(r.name, "saturated", &saturated);
        if r.paced {
            for fraction in &paced {
                let rate = saturated.rps * fraction;
                let f = client_rt.block_on(load(&base, r, connections, seconds, Some(rate)));
                row(r.name, &format!("paced {:.0}%", fraction * 100.0), &f);
                if f.rps < rate * 0.97 {
                    // Requests sent one by one cost more CPU than back-to-back
                    // ones, and this VM's speed wanders: the rate was too high.
                    println!("  ^ fell behind its rate of {rate:.0}/s: overloaded, its latency is queueing");
                }
            }
        }
    }
    // The database's ceiling for sales written one per statement, in the same
    // run: the API's sales rows above write concurrent sales together.
    let (first, last) = (studios[0], studios[studios.len() - 1]);
    let wanted = only.is_empty() || only.split(',').any(|o| ["pgbench", "studios"].contains(&o.trim()));
    if wanted && last - first + 1 == studios.len() as i64 {
        let url = db.url().expose();
        if let Some(f) = pgbench_sales(&url, connections, seconds, first, last) {
            row("PostgreSQL alone: 1 sale/stmt", "saturated", &f);
        }
    }
    println!("target: p99 < 25 ms for worker/steps and sales");
    server_rt.block_on(async { app.stop().await.ok() });
    drop(db);
}
