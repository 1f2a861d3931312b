//! `atelier dlq`: the dead-letter store for operators. stats, list and show
//! read; archive, restore and purge move letters between statuses; replay
//! publishes letters back to the failing handler's queue.

use crate::cli::{DlqCommand, DlqSelect};
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::dlq::{self, DeadLetter, Filter};
use atelier_domain::store::{Db, PooledConn};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;

pub async fn run(cmd: DlqCommand, ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings.database;
    let db = Db::new(ctx.database_url()?, 2, settings.connect_timeout)?;
    let mut conn = db.conn().await?;
    match cmd {
        DlqCommand::Stats => stats(ctx, &mut conn).await,
        DlqCommand::List { select, status, limit, page } => {
            let mut filter = filter(&select)?;
            filter.status = status;
            list(ctx, &mut conn, &filter, limit, page).await
        }
        DlqCommand::Show { id } => show(ctx, &mut conn, id).await,
        DlqCommand::Archive { select } => {
            let n = dlq::archive(&mut conn, &filter(&select)?).await?;
            report(ctx, "archived", n)
        }
        DlqCommand::Restore { select } => {
            let n = dlq::restore(&mut conn, &filter(&select)?).await?;
            report(ctx, "restored", n)
        }
        DlqCommand::Purge { select } => {
            let filter = filter(&select)?;
            let n = dlq::count_archived(&mut conn, &filter).await?;
            if n == 0 {
                return report(ctx, "purged", 0);
            }
            ctx.confirm_destructive(&format!("Delete {n} archived dead letter(s) for good"))?;
            let n = dlq::purge(&mut conn, &filter).await?;
            report(ctx, "purged", n)
        }
        DlqCommand::Replay { select, dry_run, rate, actor } => {
            super::replay::run(ctx, &mut conn, &filter(&select)?, dry_run, rate, actor).await
        }
    }
}

/// `--since 2h` (an age) or `--since 2026-01-08T10:00:00Z` (a time).
fn parse_time(flag: &str, value: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(value).map_err(|_| {
        Failure::new(Code::Usage, format!("--{flag} '{value}': give an RFC 3339 time or an age such as 2h or 7d"))
    })?;
    let age =
        chrono::TimeDelta::from_std(age).map_err(|_| Failure::new(Code::Usage, format!("--{flag}: too far back")))?;
    Ok(Utc::now() - age)
}

pub fn filter(s: &DlqSelect) -> Result<Filter, Failure> {
    Ok(Filter {
        ids: s.ids.clone(),
        handler: s.handler.clone(),
        event_type: s.event_type.clone(),
        fingerprint: s.fingerprint.clone(),
        status: None,
        since: s.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: s.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        error: s.error.clone(),
    })
}

fn report(ctx: &Context, verb: &str, n: usize) -> Result<Code, Failure> {
    ctx.out.emit(&json!({"success": true, "data": {verb: n}}), || format!("{verb} {n} dead letter(s)"));
    Ok(Code::Ok)
}

async fn stats(ctx: &Context, conn: &mut PooledConn) -> Result<Code, Failure> {
    let s = dlq::stats(conn, Utc::now()).await?;
    ctx.out.emit(&json!({"success": true, "data": s}), || {
        let mut t = format!("{} dead letter(s)", s.total);
        let statuses: Vec<_> = s.by_status.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !statuses.is_empty() {
            t.push_str(&format!(": {}", statuses.join(", ")));
        }
        t.push('\n');
        if let Some(oldest) = s.oldest_dead {
            t.push_str(&format!("oldest waiting since {}\n", oldest.format("%Y-%m-%d %H:%M:%SZ")));
        }
        for (title, map) in [
            ("handler", &s.by_handler),
            ("type", &s.by_event_type),
            ("fingerprint", &s.by_fingerprint),
            ("age", &s.by_age),
        ] {
            if map.is_empty() {
                continue;
            }
            t.push_str(&format!("\nwaiting by {title}:\n"));
            for (k, v) in map {
                t.push_str(&format!("  {v:>6}  {k}\n"));
            }
        }
        t
    });
    Ok(Code::Ok)
}

fn summary(l: &DeadLetter) -> serde_json::Value {
    json!({
        "id": l.id, "handler": l.handler, "event_type": l.event_type, "event_id": l.event_id,
        "status": l.status, "attempts": l.attempts, "fingerprint": l.fingerprint,
        "first_failed_at": l.first_failed_at, "last_failed_at": l.last_failed_at, "last_error": l.last_error,
    })
}

async fn list(ctx: &Context, conn: &mut PooledConn, filter: &Filter, limit: i64, page: i64) -> Result<Code, Failure> {
    let (rows, total) = dlq::list(conn, filter, limit, (page - 1) * limit).await?;
    let doc = json!({"success": true, "data": rows.iter().map(summary).collect::<Vec<_>>(), "count": rows.len(),
        "total": total, "page": page, "limit": limit});
    ctx.out.emit(&doc, || {
        let mut t = format!(
            "{:>6}  {:<10}  {:<14}  {:<26}  {:>3}  {:<20}  last error\n",
            "id", "status", "handler", "type", "try", "failed"
        );
        for l in &rows {
            let mut err: String = l.last_error.chars().take(60).collect();
            if l.last_error.chars().count() > 60 {
                err.push('…');
            }
            t.push_str(&format!(
                "{:>6}  {:<10}  {:<14}  {:<26}  {:>3}  {:<20}  {}\n",
                l.id,
                l.status,
                l.handler,
                l.event_type.as_deref().unwrap_or("?"),
                l.attempts,
                l.last_failed_at.format("%Y-%m-%d %H:%M:%S"),
                err
            ));
        }
        let pages = (total + limit - 1) / limit;
        t.push_str(&format!("page {page} of {} ({total} in all)", pages.max(1)));
        t
    });
    Ok(Code::Ok)
}

async fn show(ctx: &Context, conn: &mut PooledConn, id: i64) -> Result<Code, Failure> {
    let (letter, replays) = dlq::show(conn, id).await.map_err(|e| match e {
        atelier_domain::store::StoreError::NotFound(_) => Failure::new(Code::Failure, format!("no dead letter {id}")),
        other => other.into(),
    })?;
    let mut doc = summary(&letter);
    doc["dead_letter_key"] = json!(letter.dead_letter_key);
    doc["error_kind"] = json!(letter.error_kind);
    doc["headers"] = letter.headers.clone();
    doc["payload"] = letter.payload();
    doc["replays"] = json!(replays);
    ctx.out.emit(&json!({"success": true, "data": doc}), || {
        let mut t = String::new();
        for key in [
            "id",
            "status",
            "handler",
            "event_type",
            "event_id",
            "attempts",
            "fingerprint",
            "first_failed_at",
            "last_failed_at",
            "last_error",
        ] {
            let v = &doc[key];
            t.push_str(&format!("{key:<16} {}\n", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())));
        }
        t.push_str(&format!("headers\n{}\n", serde_json::to_string_pretty(&letter.headers).unwrap_or_default()));
        t.push_str(&format!("payload\n{}\n", serde_json::to_string_pretty(&letter.payload()).unwrap_or_default()));
        if replays.is_empty() {
            t.push_str("never replayed\n");
        }
        for r in &replays {
            let when = r.published_at.map(|p| p.to_rfc3339()).unwrap_or_else(|| "not confirmed".into());
            t.push_str(&format!(
                "replayed by {} to {} at {} ({when})\n",
                r.actor,
                r.target_queue,
                r.requested_at.to_rfc3339()
            ));
        }
        t
    });
    Ok(Code::Ok)
}

/// The dry run's grouping: how many letters per handler and fingerprint.
pub fn group(letters: &[DeadLetter]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut g: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for l in letters {
        *g.entry(l.handler.clone()).or_default().entry(l.fingerprint.clone()).or_default() += 1;
    }
    g
}
