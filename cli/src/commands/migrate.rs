//! `atelier migrate status | run | rollback`: the schema, with the migrations
//! embedded in this binary. Migrators serialize on an advisory lock.

use crate::cli::MigrateCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::migrations::{self, Limits, MigrationInfo};
use serde_json::json;

pub async fn run(cmd: MigrateCommand, ctx: &Context) -> Result<Code, Failure> {
    let url = ctx.database_url()?;
    let limits = Limits::from(&ctx.config.settings.database);
    match cmd {
        MigrateCommand::Status => {
            let all = migrations::status(&url).await?;
            let pending = all.iter().filter(|m| !m.applied).count();
            let doc = json!({"success": true, "data": {"env": ctx.env(), "database": url.database(), "migrations": all, "pending": pending}, "count": all.len()});
            ctx.out.emit(&doc, || {
                let mut s = String::new();
                for m in &all {
                    s.push_str(&format!("{} {}\n", if m.applied { "applied" } else { "pending" }, m.name));
                }
                s.push_str(&format!(
                    "{} applied, {pending} pending in {} ({})\n",
                    all.len() - pending,
                    url.database(),
                    ctx.env()
                ));
                s
            });
            Ok(Code::Ok)
        }
        MigrateCommand::Run => {
            if ctx.config.settings.database.create_if_missing && migrations::create_database_if_missing(&url).await? {
                ctx.out.progress(0, "").println(format!("created database {}", url.database()));
            }
            let pending = migrations::status(&url).await?.into_iter().filter(|m| !m.applied).count();
            if pending == 0 {
                let doc = json!({"success": true, "data": {"env": ctx.env(), "applied": Vec::<MigrationInfo>::new()}, "count": 0});
                ctx.out.emit(&doc, || format!("{} is up to date ({})", url.database(), ctx.env()));
                return Ok(Code::Ok);
            }
            ctx.confirm(&format!("Apply {pending} migration(s) to {}", url.database()))?;
            let bar = ctx.out.progress(pending as u64, "migrating");
            let b = bar.clone();
            let applied = migrations::run(&url, limits, move |m| {
                b.println(format!("applied {}", m.name));
                b.inc(1);
            })
            .await;
            bar.finish_and_clear();
            let applied = applied?;
            let doc = json!({"success": true, "data": {"env": ctx.env(), "applied": applied}, "count": applied.len()});
            ctx.out.emit(&doc, || {
                applied.iter().map(|m| format!("applied {}\n", m.name)).collect::<String>()
                    + &format!("{} migration(s) applied to {} ({})", applied.len(), url.database(), ctx.env())
            });
            Ok(Code::Ok)
        }
        MigrateCommand::Rollback { steps } => {
            ctx.confirm(&format!("Revert {steps} migration(s) of {}", url.database()))?;
            let bar = ctx.out.progress(u64::from(steps), "reverting");
            let b = bar.clone();
            let reverted = migrations::rollback(&url, limits, steps as usize, move |m| {
                b.println(format!("reverted {}", m.name));
                b.inc(1);
            })
            .await;
            bar.finish_and_clear();
            let reverted = reverted?;
            let doc =
                json!({"success": true, "data": {"env": ctx.env(), "reverted": reverted}, "count": reverted.len()});
            ctx.out.emit(&doc, || {
                reverted.iter().map(|m| format!("reverted {}\n", m.name)).collect::<String>()
                    + &format!("{} migration(s) reverted in {} ({})", reverted.len(), url.database(), ctx.env())
            });
            Ok(Code::Ok)
        }
    }
}
