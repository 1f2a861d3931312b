//! `atelier check`: the preflight of an environment, before a deploy or
//! after a change to its configuration. Each check runs and reports, none
//! stops the others: the configuration (it loaded and is valid), the
//! secrets it names (set; the token keys in their format, or unset where
//! `policy.allow_ephemeral_token_key` says a key per process will do), the database
//! (reachable) and its migrations (none pending), the broker (reachable)
//! and the topology (no drift). Exit 0 when every check passes; else the
//! most telling code: 3 configuration or a secret, 4 a dependency
//! unreachable, 5 a check found a problem. A URL whose password secret is not
//! set says so: the key that names the secret, the secret, how to set it.

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Check;
use atelier_domain::auth::KeySet;
use atelier_domain::bus::{self, AmqpUrl, BusError, Topology};
use atelier_domain::config::redact;
use atelier_domain::secrets::SecretError;
use atelier_domain::store::{DatabaseUrl, migrations};
use serde_json::json;

/// A check's outcome and, when it failed, the exit code its failure means.
pub struct Outcome {
    pub check: Check,
    pub code: Code,
}

fn passed(name: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome { check: Check { name, ok: true, detail: detail.into() }, code: Code::Ok }
}

fn failed(name: &'static str, code: Code, detail: impl Into<String>) -> Outcome {
    Outcome { check: Check { name, ok: false, detail: detail.into() }, code }
}

/// Every check's outcome (`deploy`'s preflight runs these too).
pub async fn gather(ctx: &Context) -> Vec<Outcome> {
    let mut outcomes = vec![passed("config", format!("environment {} loads and is valid", ctx.env()))];
    outcomes.push(secrets(ctx));
    let (database, migrations) = database(ctx).await;
    outcomes.extend([database, migrations]);
    let (broker, topology) = broker(ctx).await;
    outcomes.extend([broker, topology]);
    outcomes
}

pub async fn run(ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings;
    let outcomes = gather(ctx).await;
    // The most telling failure decides the exit code.
    let code = [Code::Config, Code::Unavailable, Code::CheckFailed]
        .into_iter()
        .find(|code| outcomes.iter().any(|o| o.code == *code))
        .unwrap_or(Code::Ok);
    let checks: Vec<Check> = outcomes.into_iter().map(|o| o.check).collect();
    let failing = checks.iter().filter(|c| !c.ok).count();
    let summary = match failing {
        0 => format!("{} passes its preflight", ctx.env()),
        n => format!("{} fails {n} of {} checks", ctx.env(), checks.len()),
    };
    let data = json!({"env": ctx.env(), "database": settings.database.url, "namespace": settings.amqp.namespace});
    ctx.out.checks(data, &checks, &summary);
    Ok(code)
}

/// Every secret the configuration names is set; the token keys parse.
fn secrets(ctx: &Context) -> Outcome {
    let s = &ctx.config.settings;
    let store = ctx.secrets();
    let mut set = Vec::new();
    let mut problems = Vec::new();
    for (key, name) in s.named_secrets() {
        match store.get(name) {
            Ok(Some(value)) if key == "auth.jwt_secret" => match KeySet::parse(value.expose()) {
                Ok(_) => set.push(name.to_owned()),
                Err(e) => problems.push(format!("{name} ({key}) is not a key set: {e}")),
            },
            Ok(Some(_)) => set.push(name.to_owned()),
            Ok(None) if key == "auth.jwt_secret" && s.policy.allow_ephemeral_token_key => {
                set.push(format!("{name} unset: a key per process (policy.allow_ephemeral_token_key)"))
            }
            Ok(None) => problems.push(format!("{name} ({key}) is not set: {}", store.hint(name))),
            Err(e) => problems.push(format!("{name} ({key}): {e}")),
        }
    }
    // Overdue for rotation: a warning (the check still passes), by the policy of each kind.
    match super::secrets::overdue(ctx) {
        Ok(late) if !late.is_empty() => {
            let warning = format!(
                "overdue for rotation: {} (`atelier --env {} secrets rotate NAME`)",
                late.join(", "),
                ctx.env()
            );
            if !ctx.out.is_json() && !ctx.out.quiet {
                crate::output::stderr(&format!("warning: {warning}"));
            }
            set.push(format!("WARNING {warning}"));
        }
        Ok(_) => {}
        Err(e) => problems.push(e.to_string()),
    }
    match problems.is_empty() {
        true if set.is_empty() => passed("secrets", "none named"),
        true => passed("secrets", set.join(", ")),
        false => failed("secrets", Code::Config, problems.join("; ")),
    }
}

/// The database answers, and every migration of this build is applied.
async fn database(ctx: &Context) -> (Outcome, Outcome) {
    let skipped = |why: &str| failed("migrations", Code::Unavailable, format!("not checked: {why}"));
    let url = match DatabaseUrl::resolve(&ctx.config.settings.database, ctx.secrets().as_ref()) {
        Ok(url) => url,
        Err(e) => {
            let detail =
                missing_password(&e, "database", &ctx.config.settings.database.url).unwrap_or_else(|| e.to_string());
            return (failed("database", Code::Config, detail), skipped("no database URL"));
        }
    };
    match migrations::status(&url).await {
        Ok(all) => {
            let pending: Vec<String> = all.iter().filter(|m| !m.applied).map(|m| m.name.clone()).collect();
            let reached = passed("database", format!("{} reachable", url.database()));
            let migrations = if pending.is_empty() {
                passed("migrations", format!("all {} applied", all.len()))
            } else {
                failed(
                    "migrations",
                    Code::CheckFailed,
                    format!("{} pending ({}): `atelier migrate run` applies them", pending.len(), pending.join(", ")),
                )
            };
            (reached, migrations)
        }
        Err(e) if e.is_transient() => {
            (failed("database", Code::Unavailable, e.to_string()), skipped("the database is unreachable"))
        }
        Err(e) => {
            (failed("database", Code::Failure, format!("{}: {e}", url.database())), skipped("the database failed"))
        }
    }
}

/// For a URL whose password secret is not set: which key names the secret,
/// which secret it is, and how to set it.
fn missing_password(e: &SecretError, section: &str, url: &str) -> Option<String> {
    let SecretError::Missing { name, hint } = e else { return None };
    Some(format!(
        "{section}.url is set ({}) but its password is missing: {section}.password_secret names the secret '{name}', \
         which is not set; {hint}",
        url
    ))
}

/// The broker answers, and the namespace's topology has no drift.
async fn broker(ctx: &Context) -> (Outcome, Outcome) {
    let settings = &ctx.config.settings;
    let skipped = |why: &str| failed("topology", Code::Unavailable, format!("not checked: {why}"));
    let url = match AmqpUrl::resolve(&settings.amqp, ctx.secrets().as_ref()) {
        Ok(url) => url,
        Err(BusError::Secret(e)) => {
            let detail =
                missing_password(&e, "amqp", redact("amqp.url", json!(settings.amqp.url)).as_str().unwrap_or("?"))
                    .unwrap_or_else(|| e.to_string());
            return (failed("broker", Code::Config, detail), skipped("no broker URL"));
        }
        Err(e) => return (failed("broker", Code::Config, e.to_string()), skipped("no broker URL")),
    };
    let conn = match bus::connect(&url, "atelier check", settings.amqp.connect_timeout).await {
        Ok(conn) => conn,
        Err(e) => return (failed("broker", Code::Unavailable, e.to_string()), skipped("the broker is unreachable")),
    };
    let reached = passed("broker", format!("{} reachable", url.redacted()));
    let topology = Topology::standard(settings);
    let drift = match topology.verify(&conn, settings.amqp.publish_timeout).await {
        Ok(drift) if drift.is_empty() => passed("topology", format!("namespace '{}' matches", topology.ns)),
        Ok(drift) => failed(
            "topology",
            Code::CheckFailed,
            format!(
                "namespace '{}': {} difference(s), first: {}; `atelier topology verify` lists them",
                topology.ns,
                drift.len(),
                drift[0]
            ),
        ),
        Err(e) => failed("topology", Code::Unavailable, e.to_string()),
    };
    let _ = conn.close(200, "OK".into()).await;
    (reached, drift)
}
