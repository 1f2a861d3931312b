//! `atelier users create | list | disable | enable | unlock`: the staff
//! accounts of the apps' API. `create --business-name` also creates the
//! studio (its first admin); `unlock` lifts a login lockout (of an account or
//! a client address); `enable`, `disable` and `unlock` are recorded in the
//! account audit with the actor.
//! Passwords come from a prompt without echo, or stdin with
//! `--password-stdin`; never from an argument, and never printed.

use crate::cli::UsersCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::auth;
use atelier_domain::rules::lockout;
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::login_throttle;
use atelier_domain::store::tenancy::{self, NewUser, User};
use atelier_domain::store::{Db, StoreError, Tenant};
use diesel_async::AsyncConnection;
use serde_json::json;
use std::io::{BufRead, IsTerminal};

async fn db(ctx: &Context) -> Result<Db, Failure> {
    let s = &ctx.config.settings.database;
    Ok(Db::new(ctx.database_url()?, 2, s.connect_timeout)?)
}

fn read_password(from_stdin: bool) -> Result<String, Failure> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(Code::Failure, format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(Code::Usage, "no terminal to ask for the password: pass --password-stdin"));
        }
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| Failure::new(Code::Failure, format!("cannot read the password: {e}")))?;
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| Failure::new(Code::Failure, format!("cannot read the password: {e}")))?;
        if first != again {
            return Err(Failure::new(Code::Failure, "the passwords differ"));
        }
        first
    };
    Ok(password)
}

/// Who acts, for the account audit: `--actor`, else the login name.
fn actor_name(actor: Option<String>) -> String {
    actor.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).unwrap_or_else(super::dlq::replay::login_name)
}

fn row(u: &User) -> String {
    format!(
        "{:>6}  {:>6}  {:<18} {:<8} {}",
        u.id,
        u.business_id,
        u.role,
        if u.active { "active" } else { "disabled" },
        u.email
    )
}

pub async fn run(cmd: UsersCommand, ctx: &Context) -> Result<Code, Failure> {
    match cmd {
        UsersCommand::Create { email, name, role, business_id, business_name, currency, password_stdin } => {
            let role: Role = role.parse().map_err(|e: atelier_domain::rules::permissions::UnknownRole| {
                Failure::new(Code::Usage, e.to_string())
            })?;
            let currency = currency
                .parse()
                .map_err(|_| Failure::new(Code::Usage, "--currency: expected a three-letter code such as USD"))?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_owned());
            let password = read_password(password_stdin)?;
            let hash = auth::hash_password(&password).map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
            drop(password);
            ctx.confirm(&format!("Create the {role} account {email}"))?;
            let db = db(ctx).await?;
            let mut conn = db.conn().await?;
            let (business, user) = conn
                .transaction(async |conn| {
                    let business = match (&business_name, business_id) {
                        (Some(n), _) => tenancy::create_business(conn, n, currency).await?,
                        (None, Some(id)) => tenancy::business(conn, Tenant::new(id)).await?,
                        (None, None) => {
                            return Err(StoreError::invalid("business_id", "give --business-id or --business-name"));
                        }
                    };
                    let user = tenancy::create_user(
                        conn,
                        Tenant::new(business.id),
                        NewUser { email: &email, name: &name, password_hash: &hash, role, location_id: None },
                    )
                    .await?;
                    Ok::<_, StoreError>((business, user))
                })
                .await?;
            let doc = json!({"success": true, "data": {"user": user, "business": business}});
            ctx.out.emit(&doc, || {
                format!(
                    "created {} ({}) in business {} \"{}\" ({})",
                    user.email,
                    user.role,
                    business.id,
                    business.name,
                    ctx.env()
                )
            });
            Ok(Code::Ok)
        }
        UsersCommand::List { business_id } => {
            let db = db(ctx).await?;
            let mut conn = db.conn().await?;
            let users = match business_id {
                Some(id) => tenancy::list_users(&mut conn, Tenant::new(id)).await?,
                None => tenancy::list_all_users(&mut conn).await?,
            };
            let doc = json!({"success": true, "data": users, "count": users.len()});
            ctx.out.emit(&doc, || {
                let mut s = format!("{:>6}  {:>6}  {:<18} {:<8} email\n", "id", "biz", "role", "status");
                for u in &users {
                    s.push_str(&row(u));
                    s.push('\n');
                }
                s + &format!("{} account(s) ({})", users.len(), ctx.env())
            });
            Ok(Code::Ok)
        }
        UsersCommand::Disable { email } => {
            let db = db(ctx).await?;
            let mut conn = db.conn().await?;
            let user = tenancy::user_by_email(&mut conn, &email)
                .await?
                .ok_or_else(|| Failure::new(Code::Failure, format!("no account with email {email}")))?;
            ctx.confirm(&format!("Disable the account {}", user.email))?;
            let user = tenancy::set_user_active(&mut conn, Tenant::new(user.business_id), user.id, false).await?;
            login_throttle::audit(&mut conn, &actor_name(None), "disable", &lockout::account_key(&user.email)).await?;
            let doc = json!({"success": true, "data": user});
            ctx.out.emit(&doc, || format!("disabled {} ({}): its tokens stop working now", user.email, ctx.env()));
            Ok(Code::Ok)
        }
        UsersCommand::Enable { email, actor } => {
            let db = db(ctx).await?;
            let mut conn = db.conn().await?;
            let user = tenancy::user_by_email(&mut conn, &email)
                .await?
                .ok_or_else(|| Failure::new(Code::Failure, format!("no account with email {email}")))?;
            ctx.confirm(&format!("Enable the account {}", user.email))?;
            let actor = actor_name(actor);
            let user = tenancy::set_user_active(&mut conn, Tenant::new(user.business_id), user.id, true).await?;
            login_throttle::audit(&mut conn, &actor, "enable", &lockout::account_key(&user.email)).await?;
            let doc = json!({"success": true, "data": user});
            ctx.out.emit(&doc, || format!("enabled {} ({}): it can log in again", user.email, ctx.env()));
            Ok(Code::Ok)
        }
        UsersCommand::Unlock { email, client, actor } => {
            let key = match (&email, &client) {
                (Some(e), _) if e.trim().is_empty() || e.contains('\0') => {
                    return Err(Failure::new(Code::Usage, "--email: give the account's email"));
                }
                (Some(e), _) => lockout::account_key(e),
                (None, Some(c)) => {
                    let ip: std::net::IpAddr = c.trim().parse().map_err(|_| {
                        Failure::new(Code::Usage, format!("--client: '{c}' is not an IPv4 or IPv6 address"))
                    })?;
                    lockout::client_key(&ip.to_string())
                }
                (None, None) => return Err(Failure::new(Code::Usage, "give --email or --client")),
            };
            let what = key.split_once(':').map_or(key.as_str(), |(_, w)| w).to_owned();
            ctx.confirm(&format!("Lift the login lockout of {what}"))?;
            let db = db(ctx).await?;
            let mut conn = db.conn().await?;
            let lifted = login_throttle::unlock(&mut conn, &key, &actor_name(actor)).await?;
            let doc = json!({"success": true, "data": {"key": key, "lifted": lifted}});
            ctx.out.emit(&doc, || {
                if lifted {
                    format!("unlocked {what} ({}): its failed logins are forgotten", ctx.env())
                } else {
                    format!("{what} had no failed logins and no lock ({}): nothing to lift", ctx.env())
                }
            });
            Ok(Code::Ok)
        }
    }
}
