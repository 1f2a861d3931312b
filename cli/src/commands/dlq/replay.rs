//! `atelier dlq replay`: publishes dead letters back to the queue of the
//! handler that failed them (only that queue, through the default exchange),
//! with publisher confirms, attempt count reset and provenance headers
//! (`x-atelier-replay-id`, `x-atelier-replayed-by`). Each letter is claimed
//! (`replaying`) before it is published and marked `replayed` after the
//! broker's confirm; a run interrupted in between is resumed by the next run
//! with the same replay id, and the handler's exactly-once record keeps the
//! effects single. It streams: letters are claimed a page at a time (one
//! transaction of set-based statements per page: memory is one page whatever
//! the number of letters), published with a window of unconfirmed messages
//! (the shovel's way), and recorded `replayed` in batches once confirmed, so
//! a run killed at any moment republishes at most the letters then in flight,
//! under their same replay ids. `--dry-run` groups what would be replayed and
//! changes nothing.
//! The actor is `--actor`, else the login name (`$USER`, `$LOGNAME`), else
//! the OS user id: never a made-up name. A letter of unknown type is
//! published without a `type` property (the consumer reads the envelope).

use super::select;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::bus::{self, AmqpUrl, Topology, headers, publish::event_properties};
use atelier_domain::store::dlq::{self, ClaimedPage, Filter, Replay};
use atelier_domain::store::{Db, PooledConn};
use indicatif::ProgressBar;
use lapin::PublisherConfirm;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Letters claimed per page (one transaction each): what the replay holds in
/// memory, whatever the number of letters.
const PAGE: i64 = 1000;
/// Published letters whose confirm may be outstanding at once (the shovel's
/// window of unconfirmed messages).
const WINDOW: usize = 1000;
/// Confirmed letters recorded `replayed` together (one transaction)...
const FINISH_BATCH: usize = 500;
/// ...or after this long, so a slow (`--rate`) run records as it goes.
const FINISH_EVERY: Duration = Duration::from_millis(250);

pub async fn run(
    ctx: &Context,
    db: &Db,
    conn: &mut PooledConn,
    filter: &Filter,
    dry_run: bool,
    rate: Option<u32>,
    actor: Option<String>,
) -> Result<Code, Failure> {
    let total = dlq::count_replay_candidates(conn, filter).await?;
    if total == 0 {
        let others = dlq::count_by_status(conn, filter).await?;
        let text = select::nothing_matches(filter, &others, "waiting (dead) or replaying");
        let doc = json!({"success": true, "data": {"dry_run": dry_run, "would_replay": 0, "by_handler": {},
            "ids": [], "matched_by_status": others, "message": text}});
        ctx.out.emit(&doc, || text.clone());
        return Ok(Code::Ok);
    }
    if dry_run {
        let outline = dlq::replay_outline(conn, filter).await?;
        let groups = group(&outline);
        let doc = json!({"success": true, "data": {"dry_run": dry_run, "would_replay": outline.len(), "by_handler": groups,
            "ids": outline.iter().map(|(id, _, _)| *id).collect::<Vec<_>>()}});
        ctx.out.emit(&doc, || {
            let mut t = format!("{} dead letter(s) would be replayed\n", outline.len());
            for (handler, fps) in &groups {
                for (fp, n) in fps {
                    t.push_str(&format!("  {n:>6}  to {handler} ({fp})\n"));
                }
            }
            t.push_str("dry run: nothing changed");
            t
        });
        return Ok(Code::Ok);
    }
    let actor = actor.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).unwrap_or_else(login_name);
    ctx.confirm(&format!("Replay {total} dead letter(s)"))?;
    let settings = &ctx.config.settings;
    let topology = Topology::standard(settings);
    let url = AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref())?;
    let amqp = bus::connect(&url, "atelier dlq replay", settings.amqp.connect_timeout).await?;
    let timeout = settings.amqp.publish_timeout;
    let channel = bus::confirm_channel(&amqp, timeout).await?;
    // The broker drops (and still confirms) a message for a queue that does
    // not exist: check every target queue first, so nothing is marked
    // replayed that went nowhere.
    let mut targets: Vec<String> = dlq::replay_handlers(conn, filter)
        .await?
        .iter()
        .filter(|h| topology.handler(h).is_some())
        .map(|h| topology.handler_queue(h))
        .collect();
    targets.sort();
    targets.dedup();
    for queue in &targets {
        if !topology.queue_exists(&amqp, queue, timeout).await? {
            return Err(Failure::new(
                Code::CheckFailed,
                format!(
                    "queue {queue} does not exist in RabbitMQ, so a replay would be lost: declare the topology \
                     (`atelier topology apply`, or start atelierd) and replay again; nothing was replayed"
                ),
            ));
        }
    }
    let mut pace = rate.filter(|r| *r > 0).map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r))));
    let bar = ctx.out.progress(total as u64, "replaying");
    // Three stages overlap, each on its own connection: the claimer claims
    // the next page while this task publishes the current one, and the
    // recorder commits confirmed batches meanwhile.
    let (mut pages, claimer) = spawn_claimer(db.conn().await?, filter.clone(), actor.clone(), topology.clone());
    let (done, recorder) = spawn_recorder(db.conn().await?);
    let mut window = Window { done: Some(done), ..Default::default() };
    let mut skipped = 0usize;
    let outcome: Result<(), Failure> = async {
        while let Some(page) = pages.recv().await {
            let page = page?;
            for (id, handler) in &page.unroutable {
                bar.println(format!("skipped {id}: no handler '{handler}' in this build"));
            }
            // Unroutable, or held by another replay meanwhile: not this run's.
            skipped += page.unroutable.len() + page.taken_elsewhere;
            bar.inc((page.unroutable.len() + page.taken_elsewhere) as u64);
            for (letter, replay) in page.claimed {
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let queue = replay.target_queue.clone();
                let event_id = letter.event_id.map(|u| u.to_string()).unwrap_or_else(|| replay.replay_id.to_string());
                let properties = match letter.event_type.as_deref() {
                    Some(t) => event_properties(&event_id, t),
                    None => untyped_properties(&event_id),
                }
                .with_headers(headers::for_replay(
                    &letter.headers,
                    &replay.replay_id.to_string(),
                    &actor,
                ));
                let confirm = bus::publish::start_publish(&channel, "", &queue, &letter.body, properties, timeout)
                    .await
                    .map_err(|e| unconfirmed(letter.id, &e))?;
                window.pending.push_back((confirm, replay));
                while window.pending.len() >= WINDOW {
                    window.settle_one(timeout, &bar).await?;
                }
                window.settle_ready(&bar)?;
                window.record_if_due(false).await;
            }
        }
        while !window.pending.is_empty() {
            window.settle_one(timeout, &bar).await?;
        }
        Ok(())
    }
    .await;
    // Stop claiming (letters claimed and not published stay `replaying`: the
    // next run resumes them), and record what the broker confirmed, even when
    // the run stops early.
    drop(pages);
    claimer.abort();
    window.record_if_due(true).await;
    window.done = None;
    let recorded = recorder.await.map_err(|e| Failure::new(Code::Failure, format!("recording replays: {e}")))?;
    if let Err(e) = outcome {
        bar.abandon();
        recorded?;
        return Err(e);
    }
    let replayed = recorded?;
    bar.finish_and_clear();
    let doc = json!({"success": true, "data": {"replayed": replayed.len(), "skipped": skipped, "ids": replayed, "actor": actor}});
    ctx.out.emit(&doc, || format!("replayed {} dead letter(s), skipped {skipped}, as {actor}", replayed.len()));
    Ok(Code::Ok)
}

/// Claims pages on its own connection, one ahead of the publisher.
fn spawn_claimer(
    mut conn: PooledConn,
    filter: Filter,
    actor: String,
    topology: Topology,
) -> (mpsc::Receiver<Result<ClaimedPage, Failure>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let queue_of = |h: &str| topology.handler(h).is_some().then(|| topology.handler_queue(h));
        let mut after = 0i64;
        loop {
            let page = dlq::claim_replay_page(&mut conn, &filter, after, PAGE, &actor, queue_of).await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let Some(last) = page.last_id else { return };
            after = last;
            if tx.send(Ok(page)).await.is_err() {
                return;
            }
        }
    });
    (rx, task)
}

/// The recorder's task: the letters it recorded `replayed`, or its error.
type Recorder = tokio::task::JoinHandle<Result<Vec<i64>, Failure>>;

/// Records confirmed batches `replayed` on its own connection; returns the
/// letters it recorded, or the first error (after which it records nothing).
fn spawn_recorder(mut conn: PooledConn) -> (mpsc::Sender<Vec<Replay>>, Recorder) {
    let (tx, mut rx) = mpsc::channel::<Vec<Replay>>(2);
    let task = tokio::spawn(async move {
        let mut recorded = Vec::new();
        while let Some(batch) = rx.recv().await {
            dlq::finish_replays(&mut conn, &batch).await?;
            recorded.extend(batch.iter().map(|r| r.dead_letter_id));
        }
        Ok(recorded)
    });
    (tx, task)
}

/// The publishes awaiting their confirm (oldest first) and the confirmed
/// replays not yet recorded.
#[derive(Default)]
struct Window {
    pending: VecDeque<(PublisherConfirm, Replay)>,
    confirmed: Vec<Replay>,
    last_record: Option<Instant>,
    /// To the recorder; `None` once closed.
    done: Option<mpsc::Sender<Vec<Replay>>>,
}

impl Window {
    /// Waits for the oldest publish's confirm.
    async fn settle_one(&mut self, timeout: Duration, bar: &ProgressBar) -> Result<(), Failure> {
        let Some((confirm, replay)) = self.pending.pop_front() else { return Ok(()) };
        let letter = replay.dead_letter_id;
        bus::publish::await_confirm(confirm, "", &replay.target_queue, timeout)
            .await
            .map_err(|e| unconfirmed(letter, &e))?;
        self.confirmed.push(replay);
        bar.inc(1);
        Ok(())
    }

    /// Takes every confirm that already arrived, in order, without waiting.
    fn settle_ready(&mut self, bar: &ProgressBar) -> Result<(), Failure> {
        while let Some((confirm, replay)) = self.pending.front_mut() {
            let letter = replay.dead_letter_id;
            match bus::publish::confirm_now(confirm, "", &replay.target_queue) {
                None => break,
                Some(Err(e)) => return Err(unconfirmed(letter, &e)),
                Some(Ok(())) => {}
            }
            if let Some((_, replay)) = self.pending.pop_front() {
                self.confirmed.push(replay);
                bar.inc(1);
            }
        }
        Ok(())
    }

    /// Hands the confirmed letters to the recorder (one transaction per
    /// batch) once a batch is full or has waited long enough (always with
    /// `force`). A recorder that stopped has its error returned at the end.
    async fn record_if_due(&mut self, force: bool) {
        if self.confirmed.is_empty() {
            return;
        }
        let started = *self.last_record.get_or_insert_with(Instant::now);
        if !force && self.confirmed.len() < FINISH_BATCH && started.elapsed() < FINISH_EVERY {
            return;
        }
        let batch = std::mem::take(&mut self.confirmed);
        if let Some(done) = &self.done {
            let _ = done.send(batch).await;
        }
        self.last_record = Some(Instant::now());
    }
}

fn unconfirmed(letter: i64, e: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        Code::Unavailable,
        format!(
            "replay of dead letter {letter} not confirmed ({e}); it stays 'replaying' and the next replay resumes it"
        ),
    )
}

/// The dry run's grouping: how many letters per handler and fingerprint.
fn group(letters: &[(i64, String, String)]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut g: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (_, handler, fingerprint) in letters {
        *g.entry(handler.clone()).or_default().entry(fingerprint.clone()).or_default() += 1;
    }
    g
}

/// Who runs this: `$USER`, else `$LOGNAME`, else the OS user id (`uid 1000`).
fn login_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_owned();
        }
    }
    os_user_id()
}

#[cfg(unix)]
fn os_user_id() -> String {
    use std::os::unix::fs::MetadataExt;
    // The owner of this process's own /proc entry is its real user; a file
    // it creates is owned by its effective one, where /proc is missing.
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return format!("uid {}", m.uid());
    }
    let probe = std::env::temp_dir().join(format!("atelier-actor-{}", std::process::id()));
    let uid = std::fs::File::create(&probe).and_then(|f| f.metadata()).map(|m| m.uid());
    let _ = std::fs::remove_file(&probe);
    match uid {
        Ok(uid) => format!("uid {uid}"),
        Err(_) => format!("pid {}", std::process::id()),
    }
}

#[cfg(not(unix))]
fn os_user_id() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| format!("pid {}", std::process::id()))
}

/// A replayed letter's properties when its type is unknown: no `type`.
fn untyped_properties(event_id: &str) -> lapin::BasicProperties {
    lapin::BasicProperties::default()
        .with_message_id(event_id.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}
