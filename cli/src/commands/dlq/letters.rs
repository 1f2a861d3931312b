//! `atelier dlq stats | list | show | archive | restore | purge`: what the
//! dead-letter store holds (counts by status, handler, type, fingerprint and
//! age; a page of letters; one letter with its payload and replays), and
//! moving the selected letters between statuses.

use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::PooledConn;
use atelier_domain::store::dlq::{self, DeadLetter, Filter};
use chrono::Utc;
use serde_json::json;

pub async fn archive(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::archive(conn, filter).await?;
    report(ctx, "archived", n)
}

pub async fn restore(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::restore(conn, filter).await?;
    report(ctx, "restored", n)
}

/// Deletes archived letters for good, after confirmation in any environment.
pub async fn purge(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::count_archived(conn, filter).await?;
    if n == 0 {
        return report(ctx, "purged", 0);
    }
    ctx.confirm_destructive(&format!("Delete {n} archived dead letter(s) for good"))?;
    let n = dlq::purge(conn, filter).await?;
    report(ctx, "purged", n)
}

fn report(ctx: &Context, verb: &str, n: usize) -> Result<Code, Failure> {
    ctx.out.emit(&json!({"success": true, "data": {verb: n}}), || format!("{verb} {n} dead letter(s)"));
    Ok(Code::Ok)
}

pub async fn stats(ctx: &Context, conn: &mut PooledConn) -> Result<Code, Failure> {
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

pub async fn list(
    ctx: &Context,
    conn: &mut PooledConn,
    filter: &Filter,
    limit: i64,
    page: i64,
) -> Result<Code, Failure> {
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

pub async fn show(ctx: &Context, conn: &mut PooledConn, id: i64) -> Result<Code, Failure> {
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
