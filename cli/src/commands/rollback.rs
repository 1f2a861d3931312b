//! `atelier rollback [--to ID]`: back to the previous successful deployment
//! (or deployment ID) through the same checklist as a deploy (start, ready,
//! canary, switch, analysis, drain) without migrations. Refused, naming the
//! migration, when a contract migration was applied after that deployment.

use super::deploy::{database, finish};
use crate::cli::RollbackArgs;
use crate::context::Context;
use crate::deploy::checklist::{self, Kind, Plan};
use crate::deploy::driver::Driver;
use crate::deploy::lease::Held;
use crate::exit::{Code, Failure};
use atelier_domain::rules::deployment::{self as rules, Slot};
use atelier_domain::store::deploy;

pub async fn run(args: RollbackArgs, ctx: &Context) -> Result<Code, Failure> {
    let driver = Driver::new(&ctx.config);
    let db = database(ctx)?;
    let what = match args.to {
        Some(id) => format!("roll back to deployment {id}"),
        None => "roll back to the previous deployment".to_owned(),
    };
    ctx.confirm(&what)?;
    let lease = Held::take(&db, &format!("atelier {what}"), &ctx.config.settings.deploy).await?;
    let outcome = async {
        let reconciled = checklist::reconcile(ctx, &db, &driver, &lease).await?;
        let mut conn = db.conn().await?;
        let Some(current) = deploy::current(&mut conn).await? else {
            return Err(Failure::new(Code::Failure, "nothing to roll back: no successful deployment yet"));
        };
        let target = match args.to {
            Some(id) => deploy::get(&mut conn, id)
                .await?
                .ok_or_else(|| Failure::new(Code::Failure, format!("no deployment {id} (`atelier history` lists them)")))?,
            None => deploy::previous_success(&mut conn, &current).await?.ok_or_else(|| {
                Failure::new(Code::Failure, format!("nothing to roll back to: {} is the only version deployed", current.version))
            })?,
        };
        if target.status != "succeeded" {
            return Err(Failure::new(
                Code::Failure,
                format!("deployment {} ({}) is {}, not a successful deployment", target.id, target.version, target.status),
            ));
        }
        if target.version == current.version {
            return Err(Failure::new(
                Code::Failure,
                format!("deployment {} runs {} already (deployment {})", target.id, target.version, current.id),
            ));
        }
        let contract = deploy::contract_migrations_since(&mut conn, target.started_at).await?;
        if !contract.is_empty() {
            return Err(Failure::new(
                Code::CheckFailed,
                format!(
                    "rollback to {} refused: contract migration {} was applied after it was deployed and would break it",
                    target.version,
                    contract.join(", ")
                ),
            ));
        }
        drop(conn);
        driver.installed(&target.version).map_err(|e| Failure::new(Code::Failure, e))?;
        let slot = rules::idle_slot(Slot::parse(&current.slot));
        let plan = Plan { kind: Kind::Rollback, version: target.version.clone(), slot, previous: Some(current) };
        finish(ctx, checklist::execute(ctx, &db, &driver, &lease, plan).await?, reconciled)
    }
    .await;
    lease.release().await;
    outcome
}
