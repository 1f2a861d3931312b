//! `atelier dlq`: the dead-letter store for operators. This module opens the
//! environment's database and dispatches: `letters` reads (stats, list, show)
//! and moves letters between statuses (archive, restore, purge), `replay`
//! publishes them back to the failing handler's queue, and `select` turns the
//! command line's selection (ids, `--handler`, `--since 2h`, ...) into the
//! store's filter for both, refusing names and ids that do not exist.
//! Neither of the two imports the other.

mod letters;
mod replay;
mod select;

use crate::cli::DlqCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::Db;
use select::Use;

pub async fn run(cmd: DlqCommand, ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings.database;
    // Replay uses three: its claimer and its recorder work beside the main one.
    let db = Db::new(ctx.database_url()?, 3, settings.connect_timeout)?;
    let mut conn = db.conn().await?;
    let conn = &mut conn;
    match cmd {
        DlqCommand::Stats => letters::stats(ctx, conn).await,
        DlqCommand::List { select, status, limit, page } => {
            let mut filter = select::resolve(conn, &select, Use::Read).await?;
            filter.status = status;
            letters::list(ctx, conn, &filter, limit, page).await
        }
        DlqCommand::Show { id } => letters::show(ctx, conn, select::letter_ref(&id)?).await,
        DlqCommand::Archive { select, all } => {
            let filter = select::resolve(conn, &select, Use::Change { verb: "archive", all }).await?;
            letters::archive(ctx, conn, &filter).await
        }
        DlqCommand::Restore { select, all } => {
            let filter = select::resolve(conn, &select, Use::Change { verb: "restore", all }).await?;
            letters::restore(ctx, conn, &filter).await
        }
        DlqCommand::Purge { select, all } => {
            let filter = select::resolve(conn, &select, Use::Change { verb: "purge", all }).await?;
            letters::purge(ctx, conn, &filter).await
        }
        DlqCommand::Replay { select, dry_run, rate, actor, all } => {
            let filter = select::resolve(conn, &select, Use::Change { verb: "replay", all: all || dry_run }).await?;
            replay::run(ctx, &db, conn, &filter, dry_run, rate, actor).await
        }
    }
}
