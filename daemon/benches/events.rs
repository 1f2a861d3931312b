//! The events benchmark: N events of about 1 KiB (`sale.created`) are
//! published to a fresh namespace's handler queue, then consumed by
//!
//! - baseline: the fastest bare lapin consume-and-ack loop (same broker, same
//!   prefetch, one multiple-ack per 16 deliveries, sent by another task);
//! - the daemon with a no-op handler;
//! - the daemon with the real `production` handler (each sale's order, its
//!   steps and the production.created outbox row, with the processed record,
//!   in one transaction) over a studio's real sales, concurrently
//!   (`amqp.concurrency`) and one at a time.
//!
//! Baseline and no-op alternate for `ATELIER_BENCH_ROUNDS` rounds (default 5);
//! the table shows medians and each round's ratio.
//!
//! Each consumer runs in a child process (this binary re-executed), so the
//! peak RSS (VmHWM) is the consumer's alone. Prints a table.
//! `ATELIER_BENCH_EVENTS` (default 100000) and `ATELIER_BENCH_DB_EVENTS`
//! (default: the same) set the sizes.

use atelier_daemon::app::{App, Roles};
use atelier_daemon::events::handler::{Handler, HandlerError, Outcome};
use atelier_daemon::events::handlers::production::Production;
use atelier_domain::bus::publish::{await_confirm, event_properties, start_publish};
use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config::{self, Settings};
use atelier_domain::events::{Envelope, Event, EventType, Origin, SaleCreated, SaleLineData};
use atelier_domain::secrets::EnvSecrets;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CHILD: &str = "ATELIER_BENCH_CHILD";
const HANDLER: &str = "bench";
const TYPES: &[EventType] = &[EventType::SaleCreated];

fn environments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments")
}

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match std::env::var(CHILD) {
        Ok(role) => rt.block_on(child(&role)),
        Err(_) => rt.block_on(parent()),
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Figures {
    events: u64,
    events_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    peak_rss_mib: f64,
    /// The consumer's CPU time per event (user + system, from the first delivery).
    cpu_us_per_event: f64,
    /// The broker's CPU time per event while the consumer ran (0 when not found).
    #[serde(default)]
    broker_us_per_event: f64,
}

struct Scenario {
    name: &'static str,
    role: &'static str,
    concurrency: usize,
    events: u64,
}

async fn parent() {
    let n = env_n("ATELIER_BENCH_EVENTS", 100_000);
    let n_db = env_n("ATELIER_BENCH_DB_EVENTS", n);
    // Baseline and no-op alternate for several rounds and report medians: on a
    // shared 2-core machine a single run of either varies by a factor of two.
    let rounds = env_n("ATELIER_BENCH_ROUNDS", 5).max(1);
    let db = atelier_domain::testing::TestDb::new().await;
    let baseline = Scenario { name: "baseline: bare lapin consume+ack", role: "baseline", concurrency: 1, events: n };
    let noop = Scenario { name: "atelierd no-op handler", role: "noop", concurrency: 16, events: n };
    let (mut base_runs, mut noop_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let b = run_scenario(&db, &baseline).await;
        let o = run_scenario(&db, &noop).await;
        let ratio = 100.0 * o.events_per_s / b.events_per_s;
        eprintln!(
            "round {round}/{rounds}: baseline {:.0} ev/s ({:.1} + {:.1} broker CPU µs/ev), \
             no-op {:.0} ev/s ({:.1} + {:.1}), {ratio:.1}%",
            b.events_per_s,
            b.cpu_us_per_event,
            b.broker_us_per_event,
            o.events_per_s,
            o.cpu_us_per_event,
            o.broker_us_per_event
        );
        ratios.push(ratio);
        base_runs.push(b);
        noop_runs.push(o);
    }
    let mut rows = vec![(baseline.name, median(base_runs)), (noop.name, median(noop_runs))];
    for sc in [
        Scenario { name: "atelierd production handler, concurrent (16)", role: "db", concurrency: 16, events: n_db },
        Scenario { name: "atelierd production handler, one at a time", role: "db", concurrency: 1, events: n_db },
    ] {
        let f = run_scenario(&db, &sc).await;
        rows.push((sc.name, f));
    }
    let base = rows[0].1.events_per_s;
    let prefetch = config::load_with(&environments(), "test", &[]).expect("config").settings.amqp.prefetch;
    println!(
        "events of ~1 KiB, prefetch {prefetch}; latency = delivery to durable outcome, ack queued (histogram bucket bound)"
    );
    println!("baseline and no-op: medians of {rounds} interleaved rounds");
    println!(
        "{:<44} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "scenario", "events", "events/s", "% base", "p50 ms", "p99 ms", "RSS MiB", "CPU µs/ev", "broker µs"
    );
    for (name, f) in &rows {
        let ms = |v: Option<f64>| v.map(|v| format!("≤{v}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<44} {:>8} {:>10.0} {:>8.1}% {:>9} {:>9} {:>8.1} {:>9.1} {:>9.1}",
            name,
            f.events,
            f.events_per_s,
            100.0 * f.events_per_s / base,
            ms(f.p50_ms),
            ms(f.p99_ms),
            f.peak_rss_mib,
            f.cpu_us_per_event,
            f.broker_us_per_event
        );
    }
    ratios.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.1}%")).collect();
    println!("no-op / baseline per round (sorted): {}; median {:.1}%", shown.join(", "), ratios[ratios.len() / 2]);
    println!("targets: no-op ≥ 90% of baseline; peak RSS < 64 MiB; concurrent DB faster than one at a time");
}

/// The run with the median throughput (its latency and RSS come with it).
fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// A new studio with `n` final sales of a product that requires production,
/// written in bulk: the `production` handler makes each one's order.
async fn studio_sales(db: &atelier_domain::testing::TestDb, n: u64) -> Vec<(i64, i64)> {
    use atelier_domain::store::{Tenant, products, tenancy};
    use diesel_async::RunQueryDsl;
    let mut c = db.db().conn().await.expect("connection");
    let b = tenancy::create_business(&mut c, "Bench studio", "USD".parse().expect("currency")).await.expect("business");
    let tenant = Tenant::new(b.id);
    let p = products::NewProduct { name: "Saree".into(), sku: None, unit_price_minor: 1250, requires_production: true };
    let product = products::create(&mut c, tenant, p).await.expect("product");
    let (b, p) = (b.id, product.id);
    diesel::sql_query(format!(
        "INSERT INTO sales (business_id, invoice_no, status, channel, total_minor, currency, finalized_at) \
         SELECT {b}, 'INV-BENCH-' || g, 'final', 'walk_in', 1250, 'USD', now() FROM generate_series(1, {n}) g"
    ))
    .execute(&mut c)
    .await
    .expect("sales");
    diesel::sql_query(format!(
        "INSERT INTO sale_lines (business_id, sale_id, line_no, product_id, quantity, unit_price_minor, line_total_minor) \
         SELECT {b}, id, 1, {p}, 1, 1250, 1250 FROM sales WHERE business_id = {b}"
    ))
    .execute(&mut c)
    .await
    .expect("sale lines");
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let ids: Vec<Id> = diesel::sql_query(format!("SELECT id FROM sales WHERE business_id = {b} ORDER BY id"))
        .load(&mut c)
        .await
        .expect("ids");
    ids.into_iter().map(|i| (b, i.id)).collect()
}

/// Runs one scenario on a namespace of its own, its consumer in a child process.
async fn run_scenario(db: &atelier_domain::testing::TestDb, sc: &Scenario) -> Figures {
    let ns = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let vars = vec![
        ("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url())),
        ("ATELIER__AMQP__NAMESPACE".to_owned(), ns.clone()),
    ];
    let settings = config::load_with(&environments(), "test", &vars).expect("config").settings;
    let topology = Topology::new(&settings, &[(HANDLER, TYPES)]);
    let conn = connect(&settings).await;
    topology.apply(&conn, Duration::from_secs(10)).await.expect("topology");
    let sales = if sc.role == "db" { studio_sales(db, sc.events).await } else { Vec::new() };
    eprintln!("{}: publishing {} events...", sc.name, sc.events);
    prefill(&conn, &topology, sc.events, &sales).await;
    let broker = broker_pid();
    if let Some(pid) = broker.as_deref() {
        broker_quiet(pid).await;
    }
    let broker_before = broker.as_deref().map(cpu_secs).unwrap_or(0.0);
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD, sc.role)
        .env("ATELIER_CONFIG_DIR", environments())
        .env("ATELIER__DATABASE__URL", format!("{:?}", db.url()))
        .env("ATELIER__DATABASE__POOL_SIZE", sc.concurrency.max(2).to_string())
        .env("ATELIER__AMQP__NAMESPACE", &ns)
        .env("ATELIER__AMQP__CONCURRENCY", sc.concurrency.to_string())
        .env("ATELIER__AMQP__RELAY", "false")
        .env("ATELIER_BENCH_N", sc.events.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child runs");
    let mut figures: Figures = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: child failed ({e}): {}", sc.name, String::from_utf8_lossy(&out.stdout)));
    if let Some(pid) = broker.as_deref() {
        figures.broker_us_per_event = (cpu_secs(pid) - broker_before) * 1e6 / sc.events as f64;
    }
    if let Err(e) = topology.delete(&conn, Duration::from_secs(30)).await {
        eprintln!("warning: could not delete namespace {ns} ({e}); delete its queues by hand");
    }
    let _ = conn.close(200, "OK".into()).await;
    figures
}

async fn connect(settings: &Settings) -> lapin::Connection {
    let url = AmqpUrl::resolve(&settings.amqp, &EnvSecrets).expect("amqp url");
    bus::connect(&url, "atelier bench", Duration::from_secs(10)).await.expect("RabbitMQ")
}

/// One ~1 KiB sale.created envelope; `sale` names a real (business, sale)
/// for the scenarios with database effects.
fn envelope(i: u64, sale: Option<(i64, i64)>) -> Envelope {
    let lines = (0..9)
        .map(|k| SaleLineData { product_id: k, quantity: 1, unit_price_minor: 1250, requires_production: k == 0 })
        .collect();
    let (business_id, sale_id) = sale.unwrap_or((1, i as i64));
    let ev = Event::SaleCreated(SaleCreated {
        sale_id,
        invoice_no: format!("INV-202611-{i:06}"),
        customer_id: Some(7),
        location_id: Some(1),
        channel: "walk_in".into(),
        total_minor: 11250,
        currency: "USD".into(),
        lines,
    });
    Envelope::new(&ev, Some(business_id), &Origin::new("bench"), chrono::Utc::now())
}

async fn prefill(conn: &lapin::Connection, topology: &Topology, n: u64, sales: &[(i64, i64)]) {
    let t = Duration::from_secs(30);
    let ch = bus::confirm_channel(conn, t).await.expect("channel");
    let exchange = topology.events_exchange();
    let mut i = 0;
    while i < n {
        let mut pending = Vec::new();
        for _ in 0..1000.min(n - i) {
            let env = envelope(i, sales.get(i as usize).copied());
            let props = event_properties(&env.id.to_string(), &env.event_type);
            pending
                .push(start_publish(&ch, &exchange, "sale.created", &env.encode(), props, t).await.expect("publish"));
            i += 1;
        }
        for c in pending {
            await_confirm(c, &exchange, "sale.created", t).await.expect("confirm");
        }
    }
    if i > 0 {
        eprintln!("  body size: {} bytes", envelope(0, sales.first().copied()).encode().len());
    }
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits (at most 30 s) until the broker has finished the background work of
/// the prefill (its quorum queue moves the messages from its log to segment
/// files): below a tenth of a core over a quarter second. Without this, that
/// work lands on whichever consumer runs first and doubles the noise.
async fn broker_quiet(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let before = cpu_secs(pid);
        tokio::time::sleep(Duration::from_millis(250)).await;
        if cpu_secs(pid) - before < 0.025 {
            return;
        }
    }
    eprintln!("  the broker stayed busy for 30 s; measuring anyway");
}

/// The local RabbitMQ's process (beam.smp), when it runs on this machine.
fn broker_pid() -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().into_string().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Bench {
    /// The real `production` handler (its order, steps and outbox row in one
    /// transaction with its processed record), or nothing for the no-op path.
    production: Option<Production>,
    /// When the first event arrived, and the CPU time used until then.
    first: OnceLock<(Instant, f64)>,
}

impl Handler for Bench {
    fn binding(&self) -> atelier_domain::bus::handlers::HandlerBinding {
        atelier_domain::bus::handlers::HandlerBinding { name: HANDLER, event_types: TYPES }
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(async move {
            self.first.get_or_init(|| (Instant::now(), cpu_secs("self")));
            match &self.production {
                Some(p) => p.handle(envelope).await,
                None => Ok(Outcome::Applied),
            }
        })
    }
}

async fn child(role: &str) {
    let n = env_n("ATELIER_BENCH_N", 100_000);
    let resolved = config::load(&environments(), "test").expect("config");
    let figures = if role == "baseline" {
        baseline(&resolved.settings, n).await
    } else {
        daemon(resolved, role == "db", n).await
    };
    println!("{}", serde_json::to_string(&figures).expect("json"));
}

async fn baseline(settings: &Settings, n: u64) -> Figures {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
    let conn = connect(settings).await;
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(settings.amqp.prefetch, BasicQosOptions::default()).await.expect("qos");
    let topology = Topology::new(settings, &[(HANDLER, TYPES)]);
    let mut consumer = ch
        .basic_consume(
            topology.handler_queue(HANDLER).as_str().into(),
            "baseline".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect("consume");
    let mut first = None;
    let mut got = 0;
    // One multiple-ack per 16 deliveries, sent in order by another task: the
    // loop never waits for an ack (the last one is awaited).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<lapin::Acker>();
    let acker = tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            a.ack(BasicAckOptions { multiple: true }).await.expect("ack");
        }
    });
    while got < n {
        let d = consumer.next().await.expect("stream").expect("delivery");
        first.get_or_insert_with(|| (Instant::now(), cpu_secs("self")));
        got += 1;
        if got % 16 == 0 || got == n {
            let _ = tx.send(d.acker);
        }
    }
    drop(tx);
    acker.await.expect("acks sent");
    let (secs, cpu) = first.map(|(t, c)| (t.elapsed().as_secs_f64(), cpu_secs("self") - c)).unwrap_or((1.0, 0.0));
    let _ = conn.close(200, "OK".into()).await;
    Figures {
        events: n,
        events_per_s: n as f64 / secs,
        p50_ms: None,
        p99_ms: None,
        peak_rss_mib: peak_rss_mib(),
        cpu_us_per_event: cpu * 1e6 / n as f64,
        broker_us_per_event: 0.0,
    }
}

async fn daemon(resolved: config::Resolved, db_effects: bool, n: u64) -> Figures {
    let url = atelier_domain::store::DatabaseUrl::resolve(&resolved.settings.database, &EnvSecrets).expect("db url");
    let db = atelier_domain::store::Db::new(url, resolved.settings.database.pool_size, Duration::from_secs(10))
        .expect("pool");
    let production = db_effects.then(|| Production::new(db));
    let bench = Arc::new(Bench { production, first: OnceLock::new() });
    let app = App::start_with(resolved, Roles { http: false, events: true }, Some(vec![bench.clone()]))
        .await
        .expect("atelierd starts");
    let metrics = app.shared.metrics.clone();
    loop {
        if metrics.total(HANDLER, |s| s.succeeded.load(Relaxed)) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (secs, cpu) =
        bench.first.get().map(|(t, c)| (t.elapsed().as_secs_f64(), cpu_secs("self") - c)).unwrap_or((1.0, 0.0));
    let series = metrics.series(HANDLER, atelier_domain::events::EventType::SaleCreated.into());
    let figures = Figures {
        events: n,
        events_per_s: n as f64 / secs,
        p50_ms: series.handling.quantile_bound(0.5).map(|s| s * 1000.0),
        p99_ms: series.handling.quantile_bound(0.99).map(|s| s * 1000.0),
        peak_rss_mib: peak_rss_mib(),
        cpu_us_per_event: cpu * 1e6 / n as f64,
        broker_us_per_event: 0.0,
    };
    app.stop().await.expect("stops");
    figures
}
