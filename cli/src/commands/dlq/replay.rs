//! `atelier dlq replay`: publishes dead letters back to the queue of the
//! handler that failed them (only that queue, through the default exchange),
//! with publisher confirms, attempt count reset and provenance headers
//! (`x-atelier-replay-id`, `x-atelier-replayed-by`). Each letter is claimed
//! (`replaying`) before it is published and marked `replayed` after the
//! broker's confirm; a run interrupted in between is resumed by the next run
//! with the same replay id, and the handler's exactly-once record keeps the
//! effects single. `--dry-run` groups what would be replayed and changes nothing.
//! The actor is `--actor`, else the login name (`$USER`, `$LOGNAME`), else
//! the OS user id: never a made-up name. A letter of unknown type is
//! published without a `type` property (the consumer reads the envelope).

use super::select;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::bus::{self, AmqpUrl, Topology, headers, publish::event_properties};
use atelier_domain::store::PooledConn;
use atelier_domain::store::dlq::{self, DeadLetter, Filter};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn run(
    ctx: &Context,
    conn: &mut PooledConn,
    filter: &Filter,
    dry_run: bool,
    rate: Option<u32>,
    actor: Option<String>,
) -> Result<Code, Failure> {
    let candidates = dlq::replay_candidates(conn, filter).await?;
    let groups = group(&candidates);
    if candidates.is_empty() {
        let others = dlq::count_by_status(conn, filter).await?;
        let text = select::nothing_matches(filter, &others, "waiting (dead) or replaying");
        let doc = json!({"success": true, "data": {"dry_run": dry_run, "would_replay": 0, "by_handler": groups,
            "ids": [], "matched_by_status": others, "message": text}});
        ctx.out.emit(&doc, || text.clone());
        return Ok(Code::Ok);
    }
    if dry_run {
        let doc = json!({"success": true, "data": {"dry_run": dry_run, "would_replay": candidates.len(), "by_handler": groups,
            "ids": candidates.iter().map(|l| l.id).collect::<Vec<_>>()}});
        ctx.out.emit(&doc, || {
            let mut t = format!("{} dead letter(s) would be replayed\n", candidates.len());
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
    ctx.confirm(&format!("Replay {} dead letter(s)", candidates.len()))?;
    let settings = &ctx.config.settings;
    let topology = Topology::standard(settings);
    let url = AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref())?;
    let amqp = bus::connect(&url, "atelier dlq replay", settings.amqp.connect_timeout).await?;
    let timeout = settings.amqp.publish_timeout;
    let channel = bus::confirm_channel(&amqp, timeout).await?;
    // The broker drops (and still confirms) a message for a queue that does
    // not exist: check every target queue first, so nothing is marked
    // replayed that went nowhere.
    let mut targets: Vec<String> = candidates
        .iter()
        .filter(|l| topology.handler(&l.handler).is_some())
        .map(|l| topology.handler_queue(&l.handler))
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
    let bar = ctx.out.progress(candidates.len() as u64, "replaying");
    let (mut replayed, mut skipped) = (Vec::new(), 0usize);
    for letter in &candidates {
        if let Some(p) = pace.as_mut() {
            p.tick().await;
        }
        if topology.handler(&letter.handler).is_none() {
            bar.println(format!("skipped {}: no handler '{}' in this build", letter.id, letter.handler));
            skipped += 1;
            bar.inc(1);
            continue;
        }
        let queue = topology.handler_queue(&letter.handler);
        let Some((letter, replay)) = dlq::begin_replay(conn, letter.id, &actor, &queue).await? else {
            skipped += 1; // replayed or archived by someone else meanwhile
            bar.inc(1);
            continue;
        };
        let event_id = letter.event_id.map(|u| u.to_string()).unwrap_or_else(|| replay.replay_id.to_string());
        let properties = match letter.event_type.as_deref() {
            Some(t) => event_properties(&event_id, t),
            None => untyped_properties(&event_id),
        }
        .with_headers(headers::for_replay(&letter.headers, &replay.replay_id.to_string(), &actor));
        bus::publish_confirmed(&channel, "", &queue, &letter.body, properties, timeout).await.map_err(|e| {
            bar.abandon();
            Failure::new(
                Code::Unavailable,
                format!(
                    "replay of dead letter {} not confirmed ({e}); it stays 'replaying' and the next replay resumes it",
                    letter.id
                ),
            )
        })?;
        dlq::finish_replay(conn, &replay).await?;
        replayed.push(letter.id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let doc = json!({"success": true, "data": {"replayed": replayed.len(), "skipped": skipped, "ids": replayed, "actor": actor}});
    ctx.out.emit(&doc, || format!("replayed {} dead letter(s), skipped {skipped}, as {actor}", replayed.len()));
    Ok(Code::Ok)
}

/// The dry run's grouping: how many letters per handler and fingerprint.
fn group(letters: &[DeadLetter]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut g: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for l in letters {
        *g.entry(l.handler.clone()).or_default().entry(l.fingerprint.clone()).or_default() += 1;
    }
    g
}

/// Who runs this: `$USER`, else `$LOGNAME`, else the OS user id (`uid 1000`).
pub(crate) fn login_name() -> String {
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
