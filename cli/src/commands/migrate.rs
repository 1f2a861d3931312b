//! `atelier migrate status | plan | lint | run | rollback`: the schema, with the
//! migrations embedded in this binary. Migrators serialize on an advisory
//! lock. In staging and production `run` lints the pending migrations first
//! and refuses (exit 5) a destructive or locking statement that its file does
//! not allow with a reason (`store::migration_lint`).

use crate::cli::MigrateCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::store::migration_lint::Finding;
use atelier_domain::store::migrations::{self, Limits, MigrationInfo};
use serde_json::{Value, json};

/// Where `migrate run` lints what it is about to apply.
const LINT_BEFORE_RUN: [&str; 2] = ["staging", "production"];

pub async fn run(cmd: MigrateCommand, ctx: &Context) -> Result<Code, Failure> {
    match &cmd {
        // Every embedded migration, or files: no database needed (CI on a change).
        MigrateCommand::Lint { all: true, .. } => return Ok(report_lint(ctx, &migrations::lint(None), "embedded")),
        MigrateCommand::Lint { files, .. } if !files.is_empty() => {
            let mut linted = Vec::new();
            for path in files {
                let sql = std::fs::read_to_string(path)
                    .map_err(|e| Failure::new(Code::Failure, format!("cannot read {}: {e}", path.display())))?;
                linted.push((path.display().to_string(), atelier_domain::store::migration_lint::lint(&sql)));
            }
            linted.retain(|(_, findings)| !findings.is_empty());
            return Ok(report_lint(ctx, &linted, "given"));
        }
        _ => {}
    }
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
        MigrateCommand::Plan => {
            let pending: Vec<String> =
                migrations::status(&url).await?.into_iter().filter(|m| !m.applied).map(|m| m.name).collect();
            let linted = migrations::lint(Some(&pending));
            let findings_of = |name: &str| linted.iter().find(|(n, _)| n == name).map(|(_, f)| f.as_slice());
            let refused = refused(&linted);
            let lint_runs = LINT_BEFORE_RUN.contains(&ctx.env());
            let steps: Vec<Value> = pending
                .iter()
                .map(|name| {
                    let findings: Vec<Value> = findings_of(name)
                        .unwrap_or_default()
                        .iter()
                        .map(|f| json!({"line": f.line, "rule": f.rule, "allowed": f.allowed.is_some(), "reason": f.allowed}))
                        .collect();
                    json!({"migration": name, "sql": migrations::up_sql(name), "findings": findings})
                })
                .collect();
            let blocked = lint_runs && refused > 0;
            let doc = json!({"success": true, "data": {"env": ctx.env(), "database": url.database(),
                "pending": steps, "refused_findings": refused, "run_would_refuse": blocked}, "count": steps.len()});
            ctx.out.emit(&doc, || {
                if pending.is_empty() {
                    return format!(
                        "{} is up to date ({}): `migrate run` would apply nothing",
                        url.database(),
                        ctx.env()
                    );
                }
                let mut text = String::new();
                for name in &pending {
                    text += &format!("-- {name}\n");
                    for f in findings_of(name).unwrap_or_default() {
                        let verdict = if f.allowed.is_some() { "allowed" } else { "refused" };
                        text += &format!("--   {verdict} line {}: {} ({})\n", f.line, f.rule, f.rule().why);
                    }
                    text += migrations::up_sql(name).unwrap_or_default().trim_end();
                    text += "\n\n";
                }
                text += &format!(
                    "`migrate run` would apply {} migration(s) to {} ({})",
                    pending.len(),
                    url.database(),
                    ctx.env()
                );
                if blocked {
                    text += &format!("; it would refuse: {refused} finding(s) not allowed (`atelier migrate lint`)");
                }
                text
            });
            Ok(Code::Ok)
        }
        MigrateCommand::Lint { .. } => {
            let pending: Vec<String> =
                migrations::status(&url).await?.into_iter().filter(|m| !m.applied).map(|m| m.name).collect();
            Ok(report_lint(ctx, &migrations::lint(Some(&pending)), "pending"))
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
            if LINT_BEFORE_RUN.contains(&ctx.env()) {
                let names: Vec<String> =
                    migrations::status(&url).await?.into_iter().filter(|m| !m.applied).map(|m| m.name).collect();
                let linted = migrations::lint(Some(&names));
                if refused(&linted) > 0 {
                    report_lint(ctx, &linted, "pending");
                    return Err(Failure::new(
                        Code::CheckFailed,
                        format!("nothing applied: {} refuses unallowed destructive or locking statements", ctx.env()),
                    ));
                }
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

/// How many findings no `atelier:allow` line in their file allows.
fn refused(linted: &[(String, Vec<Finding>)]) -> usize {
    linted.iter().flat_map(|(_, f)| f).filter(|f| f.allowed.is_none()).count()
}

/// Prints the findings of the `which` migrations; exit 5 when one is not allowed.
fn report_lint(ctx: &Context, linted: &[(String, Vec<Finding>)], which: &str) -> Code {
    let refused = refused(linted);
    let rows: Vec<Value> = linted
        .iter()
        .flat_map(|(name, findings)| findings.iter().map(move |f| (name, f)))
        .map(|(name, f)| {
            let rule = f.rule();
            json!({"migration": name, "line": f.line, "rule": f.rule, "statement": f.statement, "why": rule.why,
                "instead": rule.instead, "allowed": f.allowed.is_some(), "reason": f.allowed})
        })
        .collect();
    let doc = json!({"success": refused == 0, "data": {"env": ctx.env(), "findings": rows}, "count": rows.len()});
    ctx.out.emit(&doc, || {
        let mut text = String::new();
        for (name, findings) in linted {
            for f in findings {
                let rule = f.rule();
                match &f.allowed {
                    Some(reason) => text += &format!("allowed {name}:{} {}: {reason}\n", f.line, f.rule),
                    None => {
                        text += &format!("refused {name}:{} {}: {}\n  {}\n", f.line, f.rule, rule.why, f.statement);
                        text += &format!(
                            "  instead: {}\n  or, in the file: -- atelier:allow {}: <why it is safe>\n",
                            rule.instead, f.rule
                        );
                    }
                }
            }
        }
        text + &format!("{refused} of {} finding(s) refused in the {which} migrations ({})", rows.len(), ctx.env())
    });
    if refused == 0 { Code::Ok } else { Code::CheckFailed }
}
