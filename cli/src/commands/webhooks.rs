//! `atelier webhooks urls`: for each studio's channels, the URL to register
//! with the provider (WhatsApp, Facebook, Instagram, Telegram) in this
//! environment, from `http.public_base_url`. Secrets are never shown: only
//! whether the channel has the verify token Meta asks for when the URL is
//! registered.

use crate::cli::WebhooksCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::rules::webhook;
use atelier_domain::store::{Db, social};
use serde_json::json;

pub async fn run(cmd: WebhooksCommand, ctx: &Context) -> Result<Code, Failure> {
    let WebhooksCommand::Urls { business_id } = cmd;
    let settings = &ctx.config.settings;
    let db = Db::new(ctx.database_url()?, 1, settings.database.connect_timeout)?;
    let mut conn = db.conn().await?;
    let channels = social::channels_of_every_business(&mut conn, business_id).await?;
    let base = &settings.http.public_base_url;
    let rows: Vec<_> = channels
        .iter()
        .map(|(business, name, c)| {
            json!({
                "business_id": business,
                "business": name,
                "channel_type": c.channel_type,
                "account_id": c.account_id,
                "active": c.active,
                "url": webhook::url(base, *business, &c.channel_type),
                "needs_verify_token": webhook::is_meta(&c.channel_type),
                "has_verify_token": c.has_verify_token,
            })
        })
        .collect();
    let doc = json!({"success": true, "data": rows, "count": rows.len()});
    ctx.out.emit(&doc, || {
        if rows.is_empty() {
            return format!("no channels configured in {} (PUT /api/v1/social/channels adds one)", ctx.env());
        }
        let mut text = String::new();
        for r in &rows {
            text += &format!(
                "{} ({}) {} {}{}\n  {}\n",
                r["business"].as_str().unwrap_or_default(),
                r["business_id"],
                r["channel_type"].as_str().unwrap_or_default(),
                r["account_id"].as_str().unwrap_or_default(),
                if r["active"] == true { "" } else { " (inactive)" },
                r["url"].as_str().unwrap_or_default(),
            );
            if r["needs_verify_token"] == true && r["has_verify_token"] != true {
                text += "  no verify token set: Meta asks for one when the URL is registered\n";
            }
        }
        text + &format!("{} channel(s) in {}", rows.len(), ctx.env())
    });
    Ok(Code::Ok)
}
