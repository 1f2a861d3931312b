//! `atelier gate --deployment`: the checks of a version's deployment in an
//! environment, each its own named check: `deployed` (its successful
//! deployment is recorded), `soak` (it has run `--min-soak`), `dead_letters`
//! (since it, at most `--max-dead-letters`), `retry_rate` and `5xx_ratio`
//! (the live atelierd's `/metrics`: its process started with the
//! deployment), `canary` (a `system.ping` round trip now).

use crate::cli::GateArgs;
use crate::context::Context;
use crate::output::Check;
use atelier_domain::events::Origin;
use atelier_domain::rules::deployment as rules;
use atelier_domain::store::{Db, canary, deploy};
use std::time::{Duration, Instant};

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

pub fn wanted(args: &GateArgs) -> bool {
    args.deployment || args.min_soak.is_some() || args.max_dead_letters.is_some()
}

pub async fn checks(ctx: &Context, client: &reqwest::Client, base: &str, args: &GateArgs) -> Vec<Check> {
    let settings = &ctx.config.settings.deploy;
    let min_soak: Duration = args.min_soak.map(Into::into).unwrap_or(settings.min_soak);
    let max_dead = args.max_dead_letters.unwrap_or(settings.max_dead_letters);
    let db = match ctx.database_url().and_then(|url| Ok(Db::new(url, 1, ctx.config.settings.database.connect_timeout)?))
    {
        Ok(db) => db,
        Err(e) => return vec![check("deployed", false, e.message)],
    };
    let mut conn = match db.conn().await {
        Ok(c) => c,
        Err(e) => return vec![check("deployed", false, format!("the database: {e}"))],
    };
    let mut out = Vec::new();
    let version = &args.expect_version;
    let done = match deploy::last_success_of(&mut conn, version).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return vec![check("deployed", false, format!("no successful deployment of {version} in {}", ctx.env()))];
        }
        Err(e) => return vec![check("deployed", false, e.to_string())],
    };
    let since = done.finished_at.unwrap_or(done.started_at);
    out.push(check("deployed", true, format!("deployment {} in {}", done.id, done.slot)));
    let soaked = (chrono::Utc::now() - since).to_std().unwrap_or_default();
    out.push(check(
        "soak",
        soaked >= min_soak,
        format!("has run {}s (at least {}s)", soaked.as_secs(), min_soak.as_secs()),
    ));
    out.push(match deploy::dead_letters_since(&mut conn, since).await {
        Ok(n) => check(
            "dead_letters",
            u64::try_from(n).unwrap_or(0) <= max_dead,
            format!("{n} since the deployment (at most {max_dead})"),
        ),
        Err(e) => check("dead_letters", false, e.to_string()),
    });
    match client.get(format!("{base}/metrics")).send().await {
        Ok(res) => {
            let c = rules::parse_metrics(&res.text().await.unwrap_or_default());
            let rate = if c.consumed == 0 { 0.0 } else { c.retried as f64 / c.consumed as f64 };
            out.push(check(
                "retry_rate",
                rate <= args.max_retry_rate,
                format!("{rate:.3} ({} of {} deliveries; at most {})", c.retried, c.consumed, args.max_retry_rate),
            ));
            let ratio = if c.requests == 0 { 0.0 } else { c.server_errors as f64 / c.requests as f64 };
            out.push(check(
                "5xx_ratio",
                ratio <= settings.max_5xx_ratio,
                format!(
                    "{ratio:.3} ({} of {} API requests; at most {})",
                    c.server_errors, c.requests, settings.max_5xx_ratio
                ),
            ));
        }
        Err(e) => out.push(check("retry_rate", false, format!("/metrics: {}", e.without_url()))),
    }
    out.push(round_trip(&mut conn, settings.canary_timeout).await);
    out
}

/// Raises a ping and waits for it to be handled.
async fn round_trip(conn: &mut atelier_domain::store::PooledConn, within: Duration) -> Check {
    let ping = match canary::raise(conn, &Origin::new("atelier/gate")).await {
        Ok(p) => p,
        Err(e) => return check("canary", false, e.to_string()),
    };
    let started = Instant::now();
    loop {
        match canary::get(conn, ping).await {
            Ok(Some(p)) => {
                let by = p.handled_by.clone().unwrap_or_else(|| "?".into());
                return check("canary", true, format!("round trip {} ms, handled by {by}", p.round_trip().as_millis()));
            }
            Ok(None) if started.elapsed() < within => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(None) => return check("canary", false, format!("ping {ping} not handled within {within:?}")),
            Err(e) => return check("canary", false, e.to_string()),
        }
    }
}
