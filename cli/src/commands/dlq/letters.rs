//! `atelier dlq stats | list | show | archive | restore | purge`: what the
//! dead-letter store holds (counts by status, handler, type, fingerprint and
//! age; a page of letters; one letter with its payload and replays), and
//! moving the selected letters between statuses. A selection that matches
//! nothing says so ("No dead letters match.", exit 0); a letter's unknown
//! event type shows as `dlq::UNKNOWN`; `show` tells which letter a failed
//! replay came from and what each replay failed again as.

use super::select;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::PooledConn;
use atelier_domain::store::dlq::{self, DeadLetter, Filter, LetterRef};
use chrono::Utc;
use serde_json::json;

pub async fn archive(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::archive(conn, filter).await?;
    report(ctx, conn, filter, "archived", n, "waiting (dead)").await
}

pub async fn restore(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::restore(conn, filter).await?;
    report(ctx, conn, filter, "restored", n, "archived").await
}

/// Deletes archived letters for good, after confirmation in any environment.
pub async fn purge(ctx: &Context, conn: &mut PooledConn, filter: &Filter) -> Result<Code, Failure> {
    let n = dlq::count_archived(conn, filter).await?;
    if n == 0 {
        return report(ctx, conn, filter, "purged", 0, "archived").await;
    }
    ctx.confirm_destructive(&format!("Delete {n} archived dead letter(s) for good"))?;
    let n = dlq::purge(conn, filter).await?;
    report(ctx, conn, filter, "purged", n, "archived").await
}

/// `{verb: n}`; when nothing moved, says so and which matching letters were
/// left aside for their status (`takes`: the status the command moves).
async fn report(
    ctx: &Context,
    conn: &mut PooledConn,
    filter: &Filter,
    verb: &str,
    n: usize,
    takes: &str,
) -> Result<Code, Failure> {
    if n > 0 {
        ctx.out.emit(&json!({"success": true, "data": {verb: n}}), || format!("{verb} {n} dead letter(s)"));
        return Ok(Code::Ok);
    }
    let others = dlq::count_by_status(conn, filter).await?;
    let text = select::nothing_matches(filter, &others, takes);
    ctx.out.emit(&json!({"success": true, "data": {verb: 0, "matched_by_status": others, "message": text}}), || {
        text.clone()
    });
    Ok(Code::Ok)
}

pub async fn stats(ctx: &Context, conn: &mut PooledConn) -> Result<Code, Failure> {
    let s = dlq::stats(conn, Utc::now()).await?;
    ctx.out.emit(&json!({"success": true, "data": s}), || {
        if s.total == 0 {
            return "No dead letters.".to_owned();
        }
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
        if total == 0 {
            return if select::is_everything(filter) && filter.status.is_none() {
                "No dead letters.".to_owned()
            } else {
                "No dead letters match.".to_owned()
            };
        }
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
                l.event_type.as_deref().unwrap_or(dlq::UNKNOWN),
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

pub async fn show(ctx: &Context, conn: &mut PooledConn, which: LetterRef) -> Result<Code, Failure> {
    let detail = dlq::show(conn, which).await.map_err(|e| match e {
        atelier_domain::store::StoreError::NotFound(_) => select::not_found(&[which]),
        other => other.into(),
    })?;
    let (letter, replays) = (&detail.letter, &detail.replays);
    let mut doc = summary(letter);
    doc["dead_letter_key"] = json!(letter.dead_letter_key);
    doc["error_kind"] = json!(letter.error_kind);
    doc["replay_of"] = json!(detail.replay_of);
    doc["headers"] = letter.headers.clone();
    doc["payload"] = letter.payload();
    doc["replays"] = json!(replays);
    ctx.out.emit(&json!({"success": true, "data": doc}), || {
        let mut t = String::new();
        for key in [
            "id",
            "dead_letter_key",
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
            let shown = match v {
                serde_json::Value::Null if key == "event_type" => dlq::UNKNOWN.to_owned(),
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            t.push_str(&format!("{key:<16} {shown}\n"));
        }
        if let Some(of) = detail.replay_of {
            t.push_str(&format!("{:<16} replay of #{of} (it failed again after that replay)\n", "replay_of"));
        }
        t.push_str(&format!("headers\n{}\n", serde_json::to_string_pretty(&letter.headers).unwrap_or_default()));
        t.push_str(&format!("payload\n{}\n", serde_json::to_string_pretty(&letter.payload()).unwrap_or_default()));
        if replays.is_empty() {
            t.push_str("never replayed\n");
        }
        for r in replays {
            let when = r.published_at.map(|p| p.to_rfc3339()).unwrap_or_else(|| "not confirmed".into());
            t.push_str(&format!(
                "replayed by {} to {} at {} ({when})",
                r.actor,
                r.target_queue,
                r.requested_at.to_rfc3339()
            ));
            if let Some(again) = r.failed_again_as {
                t.push_str(&format!("; failed again as #{again}"));
            }
            t.push('\n');
        }
        t
    });
    Ok(Code::Ok)
}
