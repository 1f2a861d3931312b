//! `atelier migrate status | plan | lint | run | rollback | repair | new`: the
//! schema, with the migrations embedded in this binary, one function per
//! subcommand. Migrators serialize on an advisory lock. `status` tells each
//! migration's state (applied, pending, edited, missing, unknown history);
//! `run` applies by phase (expand; `--phase contract`), and refuses (exit 5)
//! over drift where `policy.refuse_migration_drift` says so and a contract
//! migration while an older deployment is live; `repair` re-records
//! checksums, audited. Where the environment's
//! `policy.lint_before_migrate` says so (staging and production), `run` lints the pending migrations first and
//! refuses (exit 5) a destructive or locking statement that its file does not
//! allow with a reason (`rules::migration_lint`). Also owns the lint report
//! (`report_lint`) that `lint`, `plan` and `run` share. `run` gives up at once
//! (exit 7, naming the holder) while another migrator holds the lock, unless
//! `--wait`; each lock-timeout retry is said on stderr. `plan` names each
//! pending statement's lock (`rules::migration_locks`) with the table's live
//! size; `new` writes a migration's files with their header.

use crate::cli::{MigrateCommand, PhaseArg};
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::rules::migration_integrity::State;
use atelier_domain::rules::migration_lint::Phase;
use atelier_domain::rules::migration_lint::{self, Finding};
use atelier_domain::rules::migration_locks;
use atelier_domain::store::DatabaseUrl;
use atelier_domain::store::migrations::{
    self, Catalog, Limits, LockRetry, MigrationInfo, RunError, RunOptions, WaitHook,
};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Each migration file's name with its lint findings.
type Linted = [(String, Vec<Finding>)];

pub async fn run(cmd: MigrateCommand, ctx: &Context) -> Result<Code, Failure> {
    match cmd {
        // Every embedded migration, or files: no database needed (CI on a change).
        MigrateCommand::Lint { all: true, .. } => Ok(report_lint(ctx, &migrations::lint(None), "embedded")),
        MigrateCommand::Lint { files, .. } if !files.is_empty() => lint_files(ctx, &files),
        MigrateCommand::Lint { .. } => lint_pending(ctx).await,
        MigrateCommand::Status => status(ctx).await,
        MigrateCommand::Plan => plan(ctx).await,
        MigrateCommand::Run { phase, actor, wait } => apply(ctx, phase, actor.as_deref(), wait.map(Into::into)).await,
        MigrateCommand::New { name, phase, no_transaction, dir } => new(ctx, &name, phase, no_transaction, &dir),
        MigrateCommand::Repair { actor } => repair(ctx, actor.as_deref()).await,
        MigrateCommand::Rollback { steps } => rollback(ctx, steps).await,
    }
}

/// Whether `migrate run` lints before it applies, in this environment.
fn lints_before_run(ctx: &Context) -> bool {
    ctx.config.settings.policy.lint_before_migrate
}

/// The environment's database and the limits each migration runs under.
fn database(ctx: &Context) -> Result<(DatabaseUrl, Limits), Failure> {
    Ok((ctx.database_url()?, Limits::from(&ctx.config.settings.database)))
}

/// The names of the migrations not applied yet, in order.
async fn pending_names(url: &DatabaseUrl) -> Result<Vec<String>, Failure> {
    Ok(migrations::status(url).await?.into_iter().filter(|m| !m.applied).map(|m| m.name).collect())
}

async fn status(ctx: &Context) -> Result<Code, Failure> {
    let (url, _) = database(ctx)?;
    let all = migrations::status(&url).await?;
    let count = |state: State| all.iter().filter(|m| m.state == state).count();
    let pending = count(State::Pending);
    let counts = json!({"applied": count(State::Applied), "pending": pending, "edited": count(State::Edited),
        "missing": count(State::Missing), "unknown_history": count(State::UnknownHistory)});
    let drift = all.iter().any(|m| m.drift);
    let doc = json!({"success": !drift, "data": {"env": ctx.env(), "database": url.database(), "migrations": all,
        "pending": pending, "states": counts, "drift": drift}, "count": all.len()});
    ctx.out.emit(&doc, || {
        let mut s = String::new();
        for m in &all {
            let phase = if m.phase == Some(Phase::Contract) { " (contract)" } else { "" };
            s.push_str(&format!("{} {}{phase}\n", m.state.as_str(), m.name));
            if let Some(note) = &m.note {
                s.push_str(&format!("  {note}\n"));
            }
        }
        if drift {
            s.push_str("drift: `migrate run` refuses over it where policy.refuse_migration_drift is set\n");
        }
        s.push_str(&format!(
            "{} applied, {pending} pending, {} edited, {} missing, {} unknown history in {} ({})\n",
            count(State::Applied),
            count(State::Edited),
            count(State::Missing),
            count(State::UnknownHistory),
            url.database(),
            ctx.env()
        ));
        s
    });
    Ok(if drift { Code::CheckFailed } else { Code::Ok })
}

/// What `run` would apply: each pending migration's findings and SQL.
async fn plan(ctx: &Context) -> Result<Code, Failure> {
    let (url, _) = database(ctx)?;
    let pending = pending_names(&url).await?;
    let linted = migrations::lint(Some(&pending));
    let findings_of = |name: &str| linted.iter().find(|(n, _)| n == name).map(|(_, f)| f.as_slice());
    let refused = refused(&linted);
    let lint_runs = lints_before_run(ctx);
    let locks_of = |name: &str| -> Vec<(usize, String, migration_locks::LockInfo)> {
        migration_lint::statements(migrations::up_sql(name).unwrap_or_default())
            .into_iter()
            .map(|(line, _, written)| {
                let lock = migration_locks::classify(&written);
                (line, written, lock)
            })
            .collect()
    };
    let mut relations: Vec<String> =
        pending.iter().flat_map(|n| locks_of(n)).filter_map(|(_, _, l)| l.relation).collect();
    relations.sort();
    relations.dedup();
    let sizes = migrations::relation_sizes(&url, relations).await?;
    let steps: Vec<Value> = pending
        .iter()
        .map(|name| {
            let findings: Vec<Value> = findings_of(name)
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    json!({"line": f.line, "rule": f.rule, "severity": f.rule().severity,
                        "allowed": f.allowed.is_some(), "reason": f.allowed, "refuses": f.refuses()})
                })
                .collect();
            let phase = migration_lint::directives(migrations::up_sql(name).unwrap_or_default()).phase;
            let statements: Vec<Value> = locks_of(name)
                .into_iter()
                .map(|(line, statement, lock)| {
                    let size = lock.relation.as_ref().and_then(|r| sizes.iter().find(|s| &s.name == r));
                    json!({"line": line, "statement": statement, "relation": lock.relation,
                        "table": size.map(|s| &s.table), "lock": lock.lock.map(|l| l.as_str()),
                        "blocks": lock.lock.map(|l| l.blocks()), "effect": lock.effect,
                        "rewrites": lock.effect == migration_locks::Effect::Rewrite,
                        "scans": lock.effect == migration_locks::Effect::Scan,
                        "table_bytes": size.map(|s| s.total_bytes), "estimated_rows": size.and_then(|s| s.estimated_rows),
                        "phase": phase})
                })
                .collect();
            json!({"migration": name, "phase": phase, "sql": migrations::up_sql(name), "findings": findings,
                "statements": statements})
        })
        .collect();
    let blocked = lint_runs && refused > 0;
    let doc = json!({"success": true, "data": {"env": ctx.env(), "database": url.database(),
        "pending": steps, "refused_findings": refused, "run_lints_first": lint_runs, "run_would_refuse": blocked},
        "count": steps.len()});
    ctx.out.emit(&doc, || {
        if pending.is_empty() {
            return format!("{} is up to date ({}): `migrate run` would apply nothing", url.database(), ctx.env());
        }
        let mut text = String::new();
        for name in &pending {
            let phase = migration_lint::directives(migrations::up_sql(name).unwrap_or_default()).phase;
            text += &format!("-- {name}\n--   phase: {}\n", phase.as_str());
            for (line, _, lock) in locks_of(name) {
                let Some(mode) = lock.lock else { continue };
                let relation = lock.relation.unwrap_or_default();
                let size = match sizes.iter().find(|s| s.name == relation) {
                    Some(s) => format!(
                        "{} ({}, {})",
                        s.table,
                        human_bytes(s.total_bytes),
                        s.estimated_rows
                            .map(|r| format!("~{r} rows"))
                            .unwrap_or_else(|| "rows unknown: never analyzed".into())
                    ),
                    None => format!("{relation} (not in the database yet)"),
                };
                text += &format!(
                    "--   line {line}: {} on {size}; {}; blocks {}\n",
                    mode.as_str(),
                    lock.effect.as_str(),
                    mode.blocks()
                );
            }
            for f in findings_of(name).unwrap_or_default() {
                let verdict = match (&f.allowed, f.refuses()) {
                    (Some(_), _) => "allowed",
                    (None, true) => "refused",
                    (None, false) => "warning",
                };
                text += &format!("--   {verdict} line {}: {} ({})\n", f.line, f.rule, f.rule().why);
            }
            text += migrations::up_sql(name).unwrap_or_default().trim_end();
            text += "\n\n";
        }
        text +=
            &format!("`migrate run` would apply {} migration(s) to {} ({})", pending.len(), url.database(), ctx.env());
        if blocked {
            text += &format!("; it would refuse: {refused} finding(s) not allowed (`atelier migrate lint`)");
        }
        text
    });
    Ok(Code::Ok)
}

/// `lint UP_SQL...`: the files given, without a database.
fn lint_files(ctx: &Context, files: &[PathBuf]) -> Result<Code, Failure> {
    let mut linted = Vec::new();
    for path in files {
        let sql = std::fs::read_to_string(path)
            .map_err(|e| Failure::new(Code::Failure, format!("cannot read {}: {e}", path.display())))?;
        linted.push((path.display().to_string(), migration_lint::lint(&sql)));
    }
    linted.retain(|(_, findings)| !findings.is_empty());
    Ok(report_lint(ctx, &linted, "given"))
}

/// `lint`: the migrations the environment's database has not applied.
async fn lint_pending(ctx: &Context) -> Result<Code, Failure> {
    let (url, _) = database(ctx)?;
    let pending = pending_names(&url).await?;
    Ok(report_lint(ctx, &migrations::lint(Some(&pending)), "pending"))
}

/// `run`: creates the database where allowed, refuses over drift where the
/// policy says so, lints where it says so, confirms, then applies the pending
/// migrations of `phase` and adopts unrecorded history.
async fn apply(
    ctx: &Context,
    phase: PhaseArg,
    actor: Option<&str>,
    wait: Option<std::time::Duration>,
) -> Result<Code, Failure> {
    let (url, limits) = database(ctx)?;
    if ctx.config.settings.database.create_if_missing && migrations::create_database_if_missing(&url).await? {
        ctx.out.progress(0, "").println(format!("created database {}", url.database()));
    }
    let phase = match phase {
        PhaseArg::Expand => Phase::Expand,
        PhaseArg::Contract => Phase::Contract,
    };
    let policy = &ctx.config.settings.policy;
    let options = RunOptions {
        actor: migrations::actor(actor),
        phase,
        refuse_drift: policy.refuse_migration_drift,
        build_version: env!("CARGO_PKG_VERSION").to_owned(),
        retry: LockRetry::from(&ctx.config.settings.database),
        lock_wait: Some(wait.unwrap_or_default()),
        command: "atelier migrate run".into(),
        on_wait: say_waits(ctx),
    };
    let all = migrations::status(&url).await?;
    let takes =
        |m: &&MigrationInfo| m.state == State::Pending && (phase == Phase::Contract || m.phase == Some(Phase::Expand));
    let pending: Vec<String> = all.iter().filter(takes).map(|m| m.name.clone()).collect();
    if !pending.is_empty() && lints_before_run(ctx) {
        let linted = migrations::lint(Some(&pending));
        if refused(&linted) > 0 {
            report_lint(ctx, &linted, "pending");
            return Err(Failure::new(
                Code::CheckFailed,
                format!("nothing applied: {} refuses unallowed destructive or locking statements", ctx.env()),
            ));
        }
    }
    // Over drift a careful environment refuses anyway: no question first.
    let refuses_drift = policy.refuse_migration_drift && all.iter().any(|m| m.drift);
    if !pending.is_empty() && !refuses_drift {
        ctx.confirm(&format!("Apply {} migration(s) to {}", pending.len(), url.database()))?;
    }
    // The deploy lock: refused while a deploy, a rollback or a maintenance window holds it.
    let lease = crate::deploy::lease::Held::take_if_ready(ctx, "atelier migrate run", wait.unwrap_or_default()).await?;
    let bar = ctx.out.progress(pending.len() as u64, "migrating");
    let report = migrations::apply(&url, limits, &Catalog::embedded(), options, on_each(&bar, "applied")).await;
    bar.finish_and_clear();
    if let Some(lease) = lease {
        lease.release().await;
    }
    let report = match report {
        Ok(report) => report,
        Err(e @ RunError::Refused(_)) => return Err(Failure::new(Code::CheckFailed, e.to_string())),
        Err(e @ RunError::Busy { .. }) => return Err(Failure::new(Code::Busy, e.to_string())),
        Err(e @ (RunError::LockTimeout { .. } | RunError::InvalidIndex { .. })) => {
            return Err(Failure::new(Code::Failure, e.to_string()));
        }
        Err(RunError::Store(e)) => return Err(e.into()),
    };
    let doc = json!({"success": true, "data": {"env": ctx.env(), "phase": phase, "applied": report.applied,
        "waiting": report.waiting, "adopted": report.adopted, "drift": report.drift, "lock_waits": report.waits},
        "count": report.applied.len()});
    ctx.out.emit(&doc, || {
        let mut text = String::new();
        for m in &report.applied {
            text += &format!("applied {}\n", m.name);
        }
        for m in &report.adopted {
            text += &format!("adopted {}: {}\n", m.name, m.note.as_deref().unwrap_or_default());
        }
        for m in &report.drift {
            text += &format!("warning {} {}: {}\n", m.state.as_str(), m.name, m.note.as_deref().unwrap_or_default());
        }
        if report.applied.is_empty() {
            text += &format!("{} is up to date ({})", url.database(), ctx.env());
        } else {
            text += &format!("{} migration(s) applied to {} ({})", report.applied.len(), url.database(), ctx.env());
        }
        if !report.waiting.is_empty() {
            let names: Vec<&str> = report.waiting.iter().map(|m| m.name.as_str()).collect();
            text += &format!(
                "\n{} contract migration(s) wait ({}): `atelier migrate run --phase contract` applies them once no \
                 live slot runs an older version",
                names.len(),
                names.join(", ")
            );
        }
        text
    });
    Ok(Code::Ok)
}

/// `repair`: confirms, then re-records this build's checksums for every
/// edited or unrecorded migration, a row of audit each.
async fn repair(ctx: &Context, actor: Option<&str>) -> Result<Code, Failure> {
    let (url, limits) = database(ctx)?;
    let todo = migrations::repairable(&url).await?;
    if !todo.is_empty() {
        let names: Vec<&str> = todo.iter().map(|m| m.name.as_str()).collect();
        ctx.confirm_destructive(&format!(
            "Re-record the checksums of {} migration(s) of {} ({})",
            todo.len(),
            url.database(),
            names.join(", ")
        ))?;
    }
    let repaired = migrations::repair(&url, limits, &migrations::actor(actor)).await?;
    let doc = json!({"success": true, "data": {"env": ctx.env(), "repaired": repaired}, "count": repaired.len()});
    ctx.out.emit(&doc, || {
        let mut text = String::new();
        for r in &repaired {
            text += &format!(
                "repaired {} (was {}): up.sql {} -> {}, down.sql {} -> {}\n",
                r.name,
                r.was.as_str(),
                r.old_up_sha256.as_deref().unwrap_or("none"),
                r.new_up_sha256,
                r.old_down_sha256.as_deref().unwrap_or("none"),
                r.new_down_sha256
            );
        }
        text + &format!("{} migration(s) re-recorded in {} ({})", repaired.len(), url.database(), ctx.env())
    });
    Ok(Code::Ok)
}

/// `rollback --steps N`: confirms, then reverts the last N migrations.
async fn rollback(ctx: &Context, steps: u32) -> Result<Code, Failure> {
    let (url, limits) = database(ctx)?;
    ctx.confirm(&format!("Revert {steps} migration(s) of {}", url.database()))?;
    let bar = ctx.out.progress(u64::from(steps), "reverting");
    let reverted = migrations::rollback(&url, limits, steps as usize, on_each(&bar, "reverted")).await;
    bar.finish_and_clear();
    report_done(ctx, &url, "reverted", "in", &reverted?);
    Ok(Code::Ok)
}

/// Moves the progress bar on as each migration is `verb` (applied, reverted).
fn on_each(bar: &indicatif::ProgressBar, verb: &'static str) -> impl FnMut(&MigrationInfo) + Send + 'static {
    let bar = bar.clone();
    move |m| {
        bar.println(format!("{verb} {}", m.name));
        bar.inc(1);
    }
}

/// Prints the migrations `run` applied or `rollback` reverted (`verb`).
fn report_done(ctx: &Context, url: &DatabaseUrl, verb: &str, preposition: &str, done: &[MigrationInfo]) {
    let doc = json!({"success": true, "data": {"env": ctx.env(), verb: done}, "count": done.len()});
    ctx.out.emit(&doc, || {
        done.iter().map(|m| format!("{verb} {}\n", m.name)).collect::<String>()
            + &format!("{} migration(s) {verb} {preposition} {} ({})", done.len(), url.database(), ctx.env())
    });
}

/// How many findings refuse their migration: errors no `atelier:allow` line allows.
fn refused(linted: &Linted) -> usize {
    linted.iter().flat_map(|(_, f)| f).filter(|f| f.refuses()).count()
}

/// The file a finding is in: the path given, or an embedded migration's `up.sql`.
fn file_of(name: &str) -> String {
    if name.ends_with(".sql") { name.to_owned() } else { format!("migrations/{name}/up.sql") }
}

/// Prints the findings of the `which` migrations; exit 5 when one refuses.
fn report_lint(ctx: &Context, linted: &Linted, which: &str) -> Code {
    let refused = refused(linted);
    let rows: Vec<Value> = linted
        .iter()
        .flat_map(|(name, findings)| findings.iter().map(move |f| (name, f)))
        .map(|(name, f)| {
            let rule = f.rule();
            json!({"migration": name, "file": file_of(name), "line": f.line, "rule": f.rule,
                "severity": rule.severity, "statement": f.statement, "why": rule.why, "instead": rule.instead,
                "allowed": f.allowed.is_some(), "reason": f.allowed, "refuses": f.refuses()})
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
                    None if !f.refuses() => {
                        text += &format!(
                            "warning {name}:{} {}: {}\n  instead: {}\n",
                            f.line, f.rule, rule.why, rule.instead
                        )
                    }
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

/// Says each lock-timeout wait on stderr as it starts (not with `-q`).
fn say_waits(ctx: &Context) -> Option<WaitHook> {
    (!ctx.out.is_quiet()).then(|| {
        WaitHook(std::sync::Arc::new(|wait: &migrations::LockWait| crate::output::stderr(&format!("waiting: {wait}"))))
    })
}

/// `1.2 MB` for a byte count.
fn human_bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[u]) }
}

/// `new NAME`: writes `<dir>/<today>-<seq>_<name>/{up,down}.sql`, the
/// sequence one more than the highest in `dir`.
fn new(
    ctx: &Context,
    name: &str,
    phase: PhaseArg,
    no_transaction: bool,
    dir: &std::path::Path,
) -> Result<Code, Failure> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        return Err(Failure::new(
            Code::Usage,
            format!(
                "'{name}' is not a migration name: use lower-case letters, digits and underscores (add_sales_note)"
            ),
        ));
    }
    let fail = |what: String| Failure::new(Code::Failure, what);
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    // `2026-12-05-000034_name`: the six digits after the date.
    let seq = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.get(11..17).and_then(|d| d.parse::<u32>().ok()))
        .max()
        .unwrap_or(0)
        + 1;
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let full = format!("{today}-{seq:06}_{name}");
    let path = dir.join(&full);
    std::fs::create_dir(&path).map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
    let phase = match phase {
        PhaseArg::Expand => Phase::Expand,
        PhaseArg::Contract => Phase::Contract,
    };
    let mut up = format!("-- {full}\n-- atelier:phase {}\n", phase.as_str());
    up += match phase {
        Phase::Expand => "-- expand: additive and backward compatible; the running version must keep working.\n",
        Phase::Contract => {
            "-- contract: removes what no running version reads; applied by `migrate run --phase contract`.\n"
        }
    };
    if no_transaction {
        up +=
            "-- atelier:no-transaction\n-- one statement, run outside a transaction (CREATE INDEX CONCURRENTLY ...)\n";
    }
    up += "-- `atelier migrate lint <this file>` checks it; `atelier migrate plan` shows its locks.\n\n";
    let down = format!("-- {full}: undo up.sql\n\n");
    let (up_path, down_path) = (path.join("up.sql"), path.join("down.sql"));
    std::fs::write(&up_path, up).map_err(|e| fail(format!("cannot write {}: {e}", up_path.display())))?;
    std::fs::write(&down_path, down).map_err(|e| fail(format!("cannot write {}: {e}", down_path.display())))?;
    let doc = json!({"success": true, "data": {"name": full, "phase": phase, "no_transaction": no_transaction,
        "up": up_path, "down": down_path}});
    ctx.out.emit(&doc, || format!("created {}\ncreated {}", up_path.display(), down_path.display()));
    Ok(Code::Ok)
}
