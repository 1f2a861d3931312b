//! `atelier lock status | acquire --message M [--ttl D] | release`: the
//! deploy lock (a lease shared by deploy, rollback and migrate run) for
//! maintenance windows. Every acquisition, refusal, takeover and release is
//! audited (`deploy_lock_events`, shown by `status`).

use super::deploy::database;
use crate::cli::LockCommand;
use crate::context::Context;
use crate::deploy::lease::{held_by, owner};
use crate::exit::{Code, Failure};
use atelier_domain::store::deploy::{self, Acquire};
use serde_json::json;

pub async fn run(cmd: LockCommand, ctx: &Context) -> Result<Code, Failure> {
    let db = database(ctx)?;
    let mut conn = db.conn().await?;
    match cmd {
        LockCommand::Status => {
            let lease = deploy::lease(&mut conn).await?;
            let events = deploy::lock_events(&mut conn, 10).await?;
            let live = lease.as_ref().is_some_and(|l| l.expires_at > chrono::Utc::now());
            let data = json!({"env": ctx.env(), "held": live, "lease": lease, "events": events});
            ctx.out.emit(&json!({"success": true, "data": data}), || {
                let mut t = match (&lease, live) {
                    (Some(l), true) => format!("the deploy lock of {} is held by {}\n", ctx.env(), l.describe()),
                    (Some(l), false) => format!(
                        "the deploy lock of {} is free (an expired lease of {} may be taken over)\n",
                        ctx.env(),
                        l.describe()
                    ),
                    (None, _) => format!("the deploy lock of {} is free\n", ctx.env()),
                };
                for e in &events {
                    t += &format!(
                        "  {} {:<10} {}@{} (pid {}, `{}`) {}\n",
                        e.at.format("%Y-%m-%d %H:%M:%S"),
                        e.action,
                        e.owner_user,
                        e.owner_host,
                        e.owner_pid,
                        e.command,
                        e.detail
                    );
                }
                t
            });
            Ok(Code::Ok)
        }
        LockCommand::Acquire { message, ttl } => {
            ctx.confirm("acquire the deploy lock")?;
            let me = owner("atelier lock acquire");
            match deploy::acquire(&mut conn, &me, Some(&message), ttl.into()).await? {
                Acquire::Held(lease) => Err(held_by(&lease)),
                Acquire::Acquired { lease, took_over } => {
                    let data = json!({"env": ctx.env(), "lease": lease, "took_over": took_over});
                    ctx.out.emit(&json!({"success": true, "data": data}), || {
                        let over = took_over
                            .as_ref()
                            .map(|o| format!(" (took over the expired lease of {})", o.describe()))
                            .unwrap_or_default();
                        format!("the deploy lock of {} is held by {}{over}", ctx.env(), lease.describe())
                    });
                    Ok(Code::Ok)
                }
            }
        }
        LockCommand::Release => {
            ctx.confirm("release the deploy lock")?;
            let released = deploy::force_release(&mut conn, &owner("atelier lock release")).await?;
            let data = json!({"env": ctx.env(), "released": released});
            ctx.out.emit(&json!({"success": true, "data": data}), || match &released {
                Some(l) => format!("released the deploy lock of {} (held by {})", ctx.env(), l.describe()),
                None => format!("the deploy lock of {} was not held", ctx.env()),
            });
            Ok(Code::Ok)
        }
    }
}
