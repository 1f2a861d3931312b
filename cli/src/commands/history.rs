//! `atelier history [--limit N]`: the environment's deployments, newest
//! first: id, kind, version, slot, status, actor, started, duration, the
//! migrations applied, the failing step and reason.

use super::deploy::database;
use crate::cli::HistoryArgs;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::deploy;
use serde_json::json;

pub async fn run(args: HistoryArgs, ctx: &Context) -> Result<Code, Failure> {
    let db = database(ctx)?;
    let mut conn = db.conn().await?;
    let rows = deploy::history(&mut conn, args.limit).await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|d| {
            let duration = d.finished_at.map(|f| (f - d.started_at).num_milliseconds() as f64 / 1000.0);
            json!({
                "id": d.id, "kind": d.kind, "version": d.version, "slot": d.slot, "status": d.status,
                "actor": d.actor, "started_at": d.started_at, "finished_at": d.finished_at,
                "duration_s": duration, "migrations": d.migrations, "failed_step": d.failed_step,
                "error": d.error, "previous_deployment_id": d.previous_deployment_id,
            })
        })
        .collect();
    ctx.out.emit(&json!({"success": true, "data": items, "count": items.len()}), || {
        if rows.is_empty() {
            return format!("no deployments in {} yet", ctx.env());
        }
        let mut t = format!(
            "{:>5}  {:<8}  {:<16}  {:<5}  {:<11}  {:<20}  {:<20}  {:>8}  {}\n",
            "id", "kind", "version", "slot", "status", "actor", "started", "duration", "migrations / failure"
        );
        for (d, item) in rows.iter().zip(&items) {
            let duration = item["duration_s"].as_f64().map_or("-".to_owned(), |s| format!("{s:.1}s"));
            let migrations = d.migrations.as_array().map_or(0, Vec::len);
            let tail = match (&d.failed_step, &d.error) {
                (Some(step), Some(e)) => format!("failed at {step}: {e}"),
                _ => format!("{migrations} migration(s)"),
            };
            t += &format!(
                "{:>5}  {:<8}  {:<16}  {:<5}  {:<11}  {:<20}  {:<20}  {:>8}  {}\n",
                d.id,
                d.kind,
                d.version,
                d.slot,
                d.status,
                d.actor,
                d.started_at.format("%Y-%m-%d %H:%M:%S"),
                duration,
                tail
            );
        }
        t
    });
    Ok(Code::Ok)
}
