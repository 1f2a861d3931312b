//! `atelier dlq`: the dead-letter store for operators. This module opens the
//! environment's database and dispatches: `letters` reads (stats, list, show)
//! and moves letters between statuses (archive, restore, purge), `replay`
//! publishes them back to the failing handler's queue, and `select` turns the
//! command line's selection (`--id`, `--handler`, `--since 2h`, ...) into the
//! store's filter for both. Neither of the two imports the other.

mod letters;
mod replay;
mod select;

use crate::cli::DlqCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::Db;

pub async fn run(cmd: DlqCommand, ctx: &Context) -> Result<Code, Failure> {
    let settings = &ctx.config.settings.database;
    let db = Db::new(ctx.database_url()?, 2, settings.connect_timeout)?;
    let mut conn = db.conn().await?;
    match cmd {
        DlqCommand::Stats => letters::stats(ctx, &mut conn).await,
        DlqCommand::List { select, status, limit, page } => {
            let mut filter = select::filter(&select)?;
            filter.status = status;
            letters::list(ctx, &mut conn, &filter, limit, page).await
        }
        DlqCommand::Show { id } => letters::show(ctx, &mut conn, id).await,
        DlqCommand::Archive { select } => letters::archive(ctx, &mut conn, &select::filter(&select)?).await,
        DlqCommand::Restore { select } => letters::restore(ctx, &mut conn, &select::filter(&select)?).await,
        DlqCommand::Purge { select } => letters::purge(ctx, &mut conn, &select::filter(&select)?).await,
        DlqCommand::Replay { select, dry_run, rate, actor } => {
            replay::run(ctx, &mut conn, &select::filter(&select)?, dry_run, rate, actor).await
        }
    }
}
