//! `atelier status`: what an on-call engineer looks at first, one screen or
//! one JSON document. Each part is read on its own; a part that cannot be
//! read (database or broker down, a daemon not answering) is shown as
//! `{"unreachable": why}` and the others are still shown, so the command
//! exits 0 whatever it finds (3 only for an invalid configuration).
//!
//! Parts: the running atelierd processes (their `daemon_instances`
//! heartbeats, and each one's `/ready`), the current deployment, pending
//! migrations, the outbox backlog and lag, depth and consumers per queue
//! (passive declares), dead letters by status and the top fingerprints, and
//! the secrets the configuration names ([`secrets`]: with their rotation
//! dates when the file backend keeps them).

use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config::SecretBackendKind;
use atelier_domain::rules::migration_integrity::State;
use atelier_domain::store::{Db, dlq, instances, migrations, outbox};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// An instance whose last heartbeat is older than this is shown as stale
/// (atelierd beats every 5 s).
const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
/// How long each daemon's `/ready` may take.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// A part's value, or why it could not be read.
fn part(r: Result<Value, String>) -> Value {
    r.unwrap_or_else(|why| json!({"unreachable": why}))
}

pub async fn run(ctx: &Context) -> Result<Code, Failure> {
    let now = Utc::now();
    let db = match ctx.database_url() {
        Ok(url) => Db::new(url, 2, ctx.config.settings.database.connect_timeout).map_err(|e| e.to_string()),
        Err(f) => Err(f.message),
    };
    // One look first: a database that cannot be reached is one reason, not five.
    let db = match db {
        Ok(db) => match db.conn().await {
            Ok(conn) => {
                drop(conn);
                Ok(db)
            }
            // The pool's own prefix says nothing to an operator.
            Err(e) => Err(e.to_string().replace("Error occurred while creating a new object: ", "")),
        },
        Err(why) => Err(why),
    };
    let (daemons, deployment, migrations, outbox, dead_letters) = match &db {
        Ok(db) => (
            part(daemons(db, now).await),
            part(deployment(db).await),
            part(pending_migrations(db).await),
            part(outbox_backlog(db, now).await),
            part(dead_letters(db, now).await),
        ),
        Err(why) => {
            let down = json!({"unreachable": why});
            (down.clone(), down.clone(), down.clone(), down.clone(), down)
        }
    };
    let queues = part(queues(ctx).await);
    let secrets = secrets(ctx);
    let data = json!({
        "env": ctx.env(),
        "at": now,
        "daemons": daemons,
        "deployment": deployment,
        "migrations": migrations,
        "outbox": outbox,
        "queues": queues,
        "dead_letters": dead_letters,
        "secrets": secrets,
    });
    ctx.out.emit(&json!({"success": true, "data": data}), || text(&data));
    Ok(Code::Ok)
}

/// Each atelierd with a heartbeat: version, roles, uptime, and ready or why not.
async fn daemons(db: &Db, now: DateTime<Utc>) -> Result<Value, String> {
    let mut conn = db.conn().await.map_err(|e| e.to_string())?;
    let all = instances::all(&mut conn).await.map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().timeout(READY_TIMEOUT).build().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in all {
        let stale = now - i.heartbeat_at > STALE_AFTER;
        let ready = if stale {
            json!({"ok": false, "detail": format!("no heartbeat for {}: stopped without a clean stop?", age(now - i.heartbeat_at))})
        } else if let Some(url) = &i.http_url {
            match client.get(format!("{url}/ready")).send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let body = res.json::<Value>().await.unwrap_or(Value::Null);
                    let check = super::gate::ready_check((status, body));
                    json!({"ok": check.ok, "detail": check.detail})
                }
                Err(e) => json!({"ok": false, "detail": format!("unreachable at {url}: {}", super::gate::describe(e))}),
            }
        } else {
            json!({"ok": null, "detail": "serves no HTTP (events role only): no /ready to ask"})
        };
        out.push(json!({
            "id": i.id, "host": i.host, "pid": i.pid, "version": i.version, "roles": i.roles,
            "url": i.http_url, "started_at": i.started_at, "uptime_seconds": (now - i.started_at).num_seconds(),
            "heartbeat_at": i.heartbeat_at, "stale": stale, "ready": ready,
        }));
    }
    Ok(Value::Array(out))
}

async fn deployment(db: &Db) -> Result<Value, String> {
    let mut conn = db.conn().await.map_err(|e| e.to_string())?;
    let current = instances::current_deployment(&mut conn).await.map_err(|e| e.to_string())?;
    Ok(json!(current))
}

async fn pending_migrations(db: &Db) -> Result<Value, String> {
    let all = migrations::status(&db.url()).await.map_err(|e| e.to_string())?;
    let pending: Vec<&str> = all.iter().filter(|m| m.state == State::Pending).map(|m| m.name.as_str()).collect();
    let drift: Vec<&str> = all.iter().filter(|m| m.drift).map(|m| m.name.as_str()).collect();
    Ok(json!({"applied": all.iter().filter(|m| m.applied).count(), "pending": pending, "drift": drift}))
}

async fn outbox_backlog(db: &Db, now: DateTime<Utc>) -> Result<Value, String> {
    let mut conn = db.conn().await.map_err(|e| e.to_string())?;
    let (count, oldest) = outbox::backlog(&mut conn).await.map_err(|e| e.to_string())?;
    let lag = oldest.map(|o| (now - o).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
    Ok(json!({"backlog": count, "lag_seconds": lag, "oldest": oldest}))
}

async fn dead_letters(db: &Db, now: DateTime<Utc>) -> Result<Value, String> {
    let mut conn = db.conn().await.map_err(|e| e.to_string())?;
    let stats = dlq::stats(&mut conn, now).await.map_err(|e| e.to_string())?;
    let mut top: Vec<(&String, &i64)> = stats.by_fingerprint.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<Value> = top.into_iter().take(5).map(|(f, n)| json!({"fingerprint": f, "count": n})).collect();
    Ok(json!({"by_status": stats.by_status, "top_fingerprints": top, "oldest_dead": stats.oldest_dead}))
}

/// Depth and consumers of each queue of the topology (passive declares).
async fn queues(ctx: &Context) -> Result<Value, String> {
    let settings = &ctx.config.settings;
    let url = AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref()).map_err(|e| e.to_string())?;
    let conn = bus::connect(&url, "atelier status", settings.amqp.connect_timeout).await.map_err(|e| e.to_string())?;
    let timeout = settings.amqp.publish_timeout;
    let mut out = Vec::new();
    let mut failure = None;
    for name in Topology::standard(settings).queue_names() {
        match Topology::queue_counts(&conn, &name, timeout).await {
            Ok(Some((messages, consumers))) => {
                out.push(json!({"name": name, "messages": messages, "consumers": consumers}))
            }
            Ok(None) => out.push(json!({"name": name, "missing": true})),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, conn.close(200, "OK".into())).await;
    match failure {
        Some(why) => Err(why),
        None => Ok(Value::Array(out)),
    }
}

/// The secrets the configuration names, whether each is set, and when it
/// was last rotated: from the encrypted file on the `file` backend; the `env`
/// backend keeps no dates (the platform injects the values).
fn secrets(ctx: &Context) -> Value {
    let s = &ctx.config.settings;
    let store = ctx.secrets();
    // The file backend keeps each secret's versions and dates; the env
    // backend none (the platform injects the values).
    let (backend, rotation, stored) = match s.secrets.backend {
        SecretBackendKind::Env => ("env", "the env backend keeps no rotation dates".to_owned(), Vec::new()),
        SecretBackendKind::File => match super::secrets::rotation(ctx) {
            Ok(stored) => ("file", "dates from the encrypted file".to_owned(), stored),
            Err(e) => ("file", format!("unreachable: {e}"), Vec::new()),
        },
    };
    let rows: Vec<Value> = s
        .named_secrets()
        .into_iter()
        .map(|(key, name)| {
            let set = match store.get(name) {
                Ok(v) => json!(v.is_some()),
                Err(e) => json!(e.to_string()),
            };
            let kept = stored.iter().find(|r| r["name"] == name);
            let field = |f: &str| kept.map(|r| r[f].clone()).unwrap_or(Value::Null);
            json!({"key": key, "name": name, "set": set, "last_rotated": field("last_rotated"),
                   "current_version": field("current_version"), "due_at": field("due_at"),
                   "overdue": field("overdue")})
        })
        .collect();
    json!({"backend": backend, "rotation": rotation, "secrets": rows})
}

fn age(d: chrono::TimeDelta) -> String {
    humantime::format_duration(Duration::from_secs(d.num_seconds().max(0) as u64)).to_string()
}

fn unreachable(v: &Value) -> Option<&str> {
    v.get("unreachable").and_then(Value::as_str)
}

/// The one screen.
fn text(d: &Value) -> String {
    let mut s = format!("# {} at {}\n", d["env"].as_str().unwrap_or_default(), d["at"].as_str().unwrap_or_default());
    // The database down: said once, not under each of the five parts it holds.
    let db_parts = ["daemons", "deployment", "migrations", "outbox", "dead_letters"];
    if let Some(why) =
        unreachable(&d["daemons"]).filter(|why| db_parts.iter().all(|p| unreachable(&d[*p]) == Some(why)))
    {
        s.push_str(&format!(
            "\ndatabase unreachable: {why}\n  (daemons, deployment, migrations, outbox and dead letters unknown)\n"
        ));
        return queues_and_secrets(d, s);
    }
    s.push_str("\ndaemons:\n");
    match (unreachable(&d["daemons"]), d["daemons"].as_array()) {
        (Some(why), _) => s.push_str(&format!("  unreachable: {why}\n")),
        (None, Some(list)) if list.is_empty() => s.push_str("  none running (no heartbeat in daemon_instances)\n"),
        (None, Some(list)) => {
            for i in list {
                let ready = match i["ready"]["ok"].as_bool() {
                    Some(true) => "ready".to_owned(),
                    Some(false) => format!("NOT READY: {}", i["ready"]["detail"].as_str().unwrap_or_default()),
                    None => i["ready"]["detail"].as_str().unwrap_or_default().to_owned(),
                };
                let up = Duration::from_secs(i["uptime_seconds"].as_u64().unwrap_or(0));
                s.push_str(&format!(
                    "  {}:{}  {}  {}  up {}  {}\n",
                    i["host"].as_str().unwrap_or_default(),
                    i["pid"],
                    i["version"].as_str().unwrap_or_default(),
                    i["roles"].as_str().unwrap_or_default(),
                    humantime::format_duration(up),
                    ready
                ));
            }
        }
        _ => {}
    }
    s.push_str("\ndeployment: ");
    let dep = &d["deployment"];
    match unreachable(dep) {
        Some(why) => s.push_str(&format!("unreachable: {why}\n")),
        None if dep.is_null() => s.push_str("none recorded\n"),
        None => s.push_str(&format!(
            "#{} {} on {} ({}, by {}, started {})\n",
            dep["id"],
            dep["version"].as_str().unwrap_or_default(),
            dep["slot"].as_str().unwrap_or_default(),
            dep["status"].as_str().unwrap_or_default(),
            dep["actor"].as_str().unwrap_or_default(),
            dep["started_at"].as_str().unwrap_or_default()
        )),
    }
    s.push_str("migrations: ");
    let m = &d["migrations"];
    match unreachable(m) {
        Some(why) => s.push_str(&format!("unreachable: {why}\n")),
        None => {
            let pending = m["pending"].as_array().map_or(0, Vec::len);
            let drift = m["drift"].as_array().map_or(0, Vec::len);
            s.push_str(&format!("{} applied, {pending} pending, {drift} drifted\n", m["applied"]));
        }
    }
    s.push_str("outbox: ");
    let o = &d["outbox"];
    match unreachable(o) {
        Some(why) => s.push_str(&format!("unreachable: {why}\n")),
        None => {
            s.push_str(&format!("{} waiting, lag {:.1} s\n", o["backlog"], o["lag_seconds"].as_f64().unwrap_or(0.0)))
        }
    }
    s.push_str("\ndead letters: ");
    let dl = &d["dead_letters"];
    match unreachable(dl) {
        Some(why) => s.push_str(&format!("unreachable: {why}\n")),
        None => {
            let by: Vec<String> = dl["by_status"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{v} {k}")).collect())
                .unwrap_or_default();
            s.push_str(&if by.is_empty() { "none\n".to_owned() } else { format!("{}\n", by.join(", ")) });
            for f in dl["top_fingerprints"].as_array().into_iter().flatten() {
                s.push_str(&format!("  {:>5}  {}\n", f["count"], f["fingerprint"].as_str().unwrap_or_default()));
            }
        }
    }
    queues_and_secrets(d, s)
}

/// The parts that do not come from the database: queues and secrets.
fn queues_and_secrets(d: &Value, mut s: String) -> String {
    s.push_str("\nqueues (messages ready / consumers):\n");
    match (unreachable(&d["queues"]), d["queues"].as_array()) {
        (Some(why), _) => s.push_str(&format!("  unreachable: {why}\n")),
        (None, Some(list)) => {
            let width = list.iter().filter_map(|q| q["name"].as_str()).map(str::len).max().unwrap_or(0);
            for q in list {
                let name = q["name"].as_str().unwrap_or_default();
                if q["missing"] == true {
                    s.push_str(&format!("  {name:width$}  MISSING (atelier topology apply)\n"));
                } else {
                    s.push_str(&format!("  {name:width$}  {:>7} / {}\n", q["messages"], q["consumers"]));
                }
            }
        }
        _ => {}
    }
    let sec = &d["secrets"];
    s.push_str(&format!(
        "\nsecrets ({} backend; {}):\n",
        sec["backend"].as_str().unwrap_or_default(),
        sec["rotation"].as_str().unwrap_or_default()
    ));
    for r in sec["secrets"].as_array().into_iter().flatten() {
        let set = match &r["set"] {
            Value::Bool(true) => "set".to_owned(),
            Value::Bool(false) => "NOT SET".to_owned(),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        s.push_str(&format!(
            "  {} ({}): {set}",
            r["name"].as_str().unwrap_or_default(),
            r["key"].as_str().unwrap_or_default()
        ));
        if let Some(at) = r["last_rotated"].as_str() {
            s.push_str(&format!(
                ", v{} rotated {}, due {}{}",
                r["current_version"],
                at.get(..10).unwrap_or(at),
                r["due_at"].as_str().and_then(|d| d.get(..10)).unwrap_or("-"),
                if r["overdue"] == true { " OVERDUE" } else { "" }
            ));
        }
        s.push('\n');
    }
    s
}
