//! The replay benchmark (`ci/bench replay`): N dead letters of about 1 KiB
//! (`ATELIER_BENCH_LETTERS`, default 100000) are replayed by the real
//! `atelier dlq replay --all` (release build; wall time from start to exit,
//! its peak RSS from /usr/bin/time) to the `production` handler's queue of a
//! fresh namespace; then, in the same round, RabbitMQ's own shovel (the
//! management UI's "move messages": a dynamic shovel, `ack-mode on-confirm`,
//! deleted after the queue's length) moves those same messages to another
//! quorum queue of the same broker (time from its creation until the
//! destination holds them all). Rounds alternate (`ATELIER_BENCH_ROUNDS`,
//! default 3): the letters are set back to `dead` between rounds. Prints each
//! round and the medians with the replay/shovel ratio. `ATELIER_BENCH_ATELIER`
//! names another `atelier` binary to measure. Needs the
//! `rabbitmq_shovel` plugin enabled (ci/bench.d/replay enables it).

use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config::{self, Settings};
use atelier_domain::secrets::EnvSecrets;
use atelier_domain::testing::TestDb;
use diesel_async::RunQueryDsl;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(run());
}

struct Round {
    replay_per_s: f64,
    replay_rss_mib: f64,
    replay_cpu_us: f64,
    shovel_per_s: f64,
}

async fn depth(ch: &lapin::Channel, queue: &str) -> u64 {
    ch.queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await
        .map(|q| u64::from(q.message_count()))
        .unwrap_or(0)
}

async fn run() {
    let n = env_n("ATELIER_BENCH_LETTERS", 100_000);
    // The `atelier` of this build (release under `cargo bench`), or another
    // binary to measure (`ATELIER_BENCH_ATELIER`).
    let atelier = std::env::var("ATELIER_BENCH_ATELIER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_atelier").to_owned());
    let rounds = env_n("ATELIER_BENCH_ROUNDS", 3).max(1);
    let db = TestDb::new().await;
    let ns = format!("bench-replay-{}", uuid::Uuid::now_v7().simple());
    let vars: Vec<(String, String)> = vec![
        ("ATELIER__DATABASE__URL".into(), format!("{:?}", db.url())),
        ("ATELIER__AMQP__NAMESPACE".into(), ns.clone()),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments");
    let settings: Settings = config::load_with(&dir, "test", &vars).expect("configuration").settings;
    let url = AmqpUrl::resolve(&settings.amqp, &EnvSecrets).expect("broker URL");
    let amqp = bus::connect(&url, "replay bench", Duration::from_secs(30)).await.expect("RabbitMQ");
    let topology = Topology::standard(&settings);
    topology.apply(&amqp, Duration::from_secs(30)).await.expect("topology");
    let source = topology.handler_queue("production");
    let moved = format!("{ns}.moved");
    let ch = amqp.create_channel().await.expect("channel");
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    ch.queue_declare(moved.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, quorum)
        .await
        .expect("destination queue");

    let mut c = db.db().conn().await.expect("database");
    diesel::sql_query(format!(
        "INSERT INTO dead_letters (dead_letter_key, handler, event_id, event_type, body, headers, attempts, \
         first_failed_at, last_failed_at, last_error, error_kind, fingerprint) \
         SELECT gen_random_uuid(), 'production', gen_random_uuid(), 'sale.created', \
         convert_to(json_build_object('n', n, 'pad', repeat('x', 1000))::text, 'UTF8'), \
         '{{\"x-atelier-attempt\": 3}}', 4, now(), now(), 'provider timeout', 'retryable', \
         'production:retryable' FROM generate_series(1, {n}) AS n"
    ))
    .execute(&mut c)
    .await
    .expect("letters");
    diesel::sql_query("VACUUM ANALYZE dead_letters").execute(&mut c).await.ok();

    println!("replay benchmark: {n} letters of ~1 KiB, {rounds} round(s), namespace {ns}");
    println!(
        "{:>6} {:>13} {:>10} {:>12} {:>13} {:>7}",
        "round", "replay msg/s", "peak RSS", "CLI CPU/msg", "shovel msg/s", "ratio"
    );
    let mut figures = Vec::new();
    for round in 1..=rounds {
        if round > 1 {
            diesel::sql_query("DELETE FROM dead_letter_replays").execute(&mut c).await.expect("reset");
            diesel::sql_query("UPDATE dead_letters SET status = 'dead'").execute(&mut c).await.expect("reset");
            diesel::sql_query("VACUUM ANALYZE dead_letters").execute(&mut c).await.ok();
            ch.queue_purge(moved.as_str().into(), Default::default()).await.expect("purge");
        }
        // The replay: the real CLI, release build.
        let started = Instant::now();
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "maxrss_kib=%M cpu_s=%U+%S", &atelier])
            .args(["--env", "test", "-q", "--output", "json", "dlq", "replay", "--all", "--actor", "bench"])
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
            .env_remove("ATELIER_ENV");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run atelier");
        let replay_s = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "replay failed: {}{stderr}", String::from_utf8_lossy(&out.stdout));
        let last = stderr.lines().rfind(|l| l.starts_with("maxrss_kib=")).unwrap_or("");
        let field = |name: &str| last.split_whitespace().find_map(|f| f.strip_prefix(name)).unwrap_or("0");
        let rss_kib: f64 = field("maxrss_kib=").parse().unwrap_or(0.0);
        let cpu_s: f64 = field("cpu_s=").split('+').filter_map(|v| v.parse::<f64>().ok()).sum();
        assert_eq!(depth(&ch, &source).await, n, "every letter reached the queue");

        // The shovel moves the same messages, queue to queue, same broker.
        let name = format!("{ns}-move-{round}");
        let def = serde_json::json!({
            "src-uri": "amqp://", "src-queue": source, "src-delete-after": "queue-length",
            "dest-uri": "amqp://", "dest-queue": moved, "ack-mode": "on-confirm"
        });
        // Timed from the first message seen in the destination to the last,
        // so rabbitmqctl's own start-up (about a second) is not counted.
        let mut set = Command::new("rabbitmqctl")
            .args(["set_parameter", "-q", "shovel", &name, &def.to_string()])
            .spawn()
            .expect("rabbitmqctl");
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first: Option<(Instant, u64)> = None;
        loop {
            let d = depth(&ch, &moved).await;
            if d > 0 && first.is_none() {
                first = Some((Instant::now(), d));
            }
            if d >= n {
                break;
            }
            assert!(Instant::now() < deadline, "the shovel did not move {n} messages in 600 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (t0, d0) = first.expect("the shovel moved something");
        let shovel_s = t0.elapsed().as_secs_f64().max(0.001);
        assert!(set.wait().expect("rabbitmqctl").success(), "rabbitmqctl set_parameter shovel failed");
        let _ = Command::new("rabbitmqctl").args(["clear_parameter", "-q", "shovel", &name]).output();
        let shovel_per_s = (n - d0) as f64 / shovel_s;
        let r = Round {
            replay_per_s: n as f64 / replay_s,
            replay_rss_mib: rss_kib / 1024.0,
            replay_cpu_us: cpu_s * 1e6 / n as f64,
            shovel_per_s,
        };
        println!(
            "{round:>6} {:>13.0} {:>6.1} MiB {:>9.0} µs {:>13.0} {:>6.2}x",
            r.replay_per_s,
            r.replay_rss_mib,
            r.replay_cpu_us,
            r.shovel_per_s,
            r.replay_per_s / r.shovel_per_s
        );
        figures.push(r);
    }
    let med = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = figures.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (rp, rss, sp) = (med(&|r| r.replay_per_s), med(&|r| r.replay_rss_mib), med(&|r| r.shovel_per_s));
    let cpu = med(&|r| r.replay_cpu_us);
    println!("{:>6} {rp:>13.0} {rss:>6.1} MiB {cpu:>9.0} µs {sp:>13.0} {:>6.2}x", "median", rp / sp);
    topology.delete(&amqp, Duration::from_secs(30)).await.ok();
    ch.queue_delete(moved.as_str().into(), Default::default()).await.ok();
    amqp.close(200, "done".into()).await.ok();
}
