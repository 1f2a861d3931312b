//! `atelier deploy --version V [--dry-run] [--resume] [--artifact PATH]`:
//! the deployment checklist as code (`deploy::checklist`), under the deploy
//! lease. A deployment left running by a command that died is reconciled
//! first (finished or rolled back); `--resume` does only that. `--dry-run`
//! prints the plan and changes nothing. Production asks for confirmation
//! without `--yes` (policy.confirm_changes).

use crate::cli::DeployArgs;
use crate::context::Context;
use crate::deploy::checklist::{self, Kind, Plan};
use crate::deploy::driver::{self, Driver};
use crate::deploy::lease::Held;
use crate::exit::{Code, Failure};
use atelier_domain::rules::deployment::{self as rules, Slot};
use atelier_domain::rules::release;
use atelier_domain::store::deploy;
use atelier_domain::store::{Db, migrations};
use serde_json::{Value, json};

/// The environment's database, two connections (the steps and the heartbeat).
pub fn database(ctx: &Context) -> Result<Db, Failure> {
    Ok(Db::new(ctx.database_url()?, 3, ctx.config.settings.database.connect_timeout)?)
}

pub async fn run(args: DeployArgs, ctx: &Context) -> Result<Code, Failure> {
    if let Some(v) = &args.version {
        release::check_version(v).map_err(|e| Failure::new(Code::Usage, e))?;
    }
    let driver = Driver::new(&ctx.config);
    let db = database(ctx)?;
    if args.dry_run {
        return dry_run(ctx, &db, &driver, args.version.as_deref().unwrap_or_default()).await;
    }
    let action = match &args.version {
        Some(v) => format!("deploy {v}"),
        None => "resume a deployment".to_owned(),
    };
    ctx.confirm(&action)?;
    if let (Some(v), Some(artifact)) = (&args.version, &args.artifact) {
        let bin = driver::install(&ctx.config.settings.deploy.releases, v, artifact)
            .map_err(|e| Failure::new(Code::Failure, e))?;
        if !ctx.out.is_json() && !ctx.out.quiet {
            crate::output::stderr(&format!("installed {} as release {v}", bin.display()));
        }
    }
    let command = match &args.version {
        Some(v) => format!("atelier deploy --version {v}"),
        None => "atelier deploy --resume".to_owned(),
    };
    let lease = Held::take(&db, &command, &ctx.config.settings.deploy).await?;
    let outcome = under_lease(&args, ctx, &db, &driver, &lease).await;
    lease.release().await;
    outcome
}

async fn under_lease(
    args: &DeployArgs,
    ctx: &Context,
    db: &Db,
    driver: &Driver,
    lease: &Held,
) -> Result<Code, Failure> {
    let reconciled = checklist::reconcile(ctx, db, driver, lease).await?;
    let Some(version) = args.version.clone() else {
        let data = json!({"env": ctx.env(), "took_over": lease.took_over, "reconciled": reconciled});
        ctx.out.emit(&json!({"success": true, "data": data}), || match &reconciled {
            Some(r) => format!(
                "deployment {} reconciled: {}",
                r["deployment"]["id"],
                r["deployment"]["status"].as_str().unwrap_or("?")
            ),
            None => "no deployment was left running: nothing to resume".to_owned(),
        });
        return Ok(Code::Ok);
    };
    let mut conn = db.conn().await?;
    let current = deploy::current(&mut conn).await?;
    drop(conn);
    let slot = rules::idle_slot(current.as_ref().and_then(|c| Slot::parse(&c.slot)));
    let plan = Plan { kind: Kind::Deploy, version, slot, previous: current };
    finish(ctx, checklist::execute(ctx, db, driver, lease, plan).await?, reconciled)
}

/// Prints a deployment's record and turns its outcome into the exit code.
pub fn finish(
    ctx: &Context,
    (record, failure): (Value, Option<Failure>),
    reconciled: Option<Value>,
) -> Result<Code, Failure> {
    let ok = failure.is_none();
    let mut data = record.clone();
    data["reconciled"] = reconciled.unwrap_or(Value::Null);
    if let Some(f) = &failure {
        data["error"] = json!(f.message);
    }
    ctx.out.emit(&json!({"success": ok, "data": data}), || {
        let d = &record["deployment"];
        format!(
            "deployment {}: {} {} in {} is {}",
            d["id"],
            d["kind"].as_str().unwrap_or("?"),
            d["version"].as_str().unwrap_or("?"),
            d["slot"].as_str().unwrap_or("?"),
            d["status"].as_str().unwrap_or("?")
        )
    });
    match failure {
        None => Ok(Code::Ok),
        Some(f) => {
            if !ctx.out.is_json() {
                crate::output::stderr(&format!("error: {}", f.message));
            }
            Ok(f.code)
        }
    }
}

/// The plan: slots, the migrations it would apply, the checks; changes nothing.
async fn dry_run(ctx: &Context, db: &Db, driver: &Driver, version: &str) -> Result<Code, Failure> {
    let settings = &ctx.config.settings.deploy;
    let mut conn = db.conn().await?;
    let current = deploy::current(&mut conn).await?;
    let running = deploy::running(&mut conn).await?;
    let lease = deploy::lease(&mut conn).await?;
    drop(conn);
    let slot = rules::idle_slot(current.as_ref().and_then(|c| Slot::parse(&c.slot)));
    let pending: Vec<String> = migrations::status(&db.url())
        .await?
        .into_iter()
        .filter(|m| !m.applied && m.phase != Some(atelier_domain::rules::migration_lint::Phase::Contract))
        .map(|m| m.name)
        .collect();
    let installed = driver.installed(version);
    let steps: Vec<&str> = rules::STEPS.to_vec();
    let data = json!({
        "env": ctx.env(),
        "version": version,
        "driver": driver.name(),
        "current": current.as_ref().map(|c| json!({"id": c.id, "version": c.version, "slot": c.slot})),
        "new_slot": slot.as_str(),
        "old_slot": current.as_ref().map(|c| c.slot.clone()),
        "migrations": pending,
        "gate_env": settings.gate_env,
        "installed": installed.is_ok(),
        "left_running": running.as_ref().map(|r| r.id),
        "lock": lease.as_ref().map(|l| l.describe()),
        "steps": steps,
        "analysis": humantime::format_duration(settings.analysis).to_string(),
    });
    ctx.out.emit(&json!({"success": true, "data": data}), || {
        let mut t =
            format!("plan: deploy {version} to {} in {} ({} driver)\n", slot.as_str(), ctx.env(), driver.name());
        match &current {
            Some(c) => {
                t +=
                    &format!("  current: deployment {} ({} in {}), drained after the switch\n", c.id, c.version, c.slot)
            }
            None => t += "  current: none (first deployment)\n",
        }
        t += &format!(
            "  migrations: {}\n",
            if pending.is_empty() { "none pending".to_owned() } else { pending.join(", ") }
        );
        if let Err(e) = &installed {
            t += &format!("  release: {e}\n");
        }
        if let Some(g) = &settings.gate_env {
            t += &format!("  gate: {version} must have passed {g} (soak {:?})\n", settings.min_soak);
        }
        if let Some(r) = &running {
            t += &format!("  deployment {} was left running: it is reconciled first\n", r.id);
        }
        if let Some(l) = &lease {
            t += &format!("  lock: held by {}\n", l.describe());
        }
        t += &format!("  steps: {}\n  nothing changed (--dry-run)", steps.join(" → "));
        t
    });
    Ok(Code::Ok)
}
