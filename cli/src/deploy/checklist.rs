//! The checklist engine and its journal. A deployment (deploy or rollback)
//! runs the steps of `rules::deployment::STEPS` in order; each is journaled
//! (`deployment_steps`: start, end, outcome, detail) as it starts and ends.
//! A failing step undoes what was done, in reverse (switch back, stop the new
//! slot; expand migrations stay), each undo journaled too, and the deployment
//! ends `rolled_back` naming the step and the reason. A deployment whose
//! command died is found by the next command ([`reconcile`]) and finished or
//! rolled back against what the driver says really runs.

use super::driver::Driver;
use super::lease::Held;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::config::{self, DeploySettings};
use atelier_domain::events::Origin;
use atelier_domain::rules::deployment::{self as rules, Counters, Reconcile, Slot};
use atelier_domain::rules::migration_lint::Phase;
use atelier_domain::store::deploy::{self, Deployment, NewDeployment};
use atelier_domain::store::migrations::{self, Catalog, Limits, LockRetry, RunOptions};
use atelier_domain::store::{DatabaseUrl, Db, canary};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The test hook: the command stops (sleeps) once it has journaled the start
/// of this step, so a test can SIGKILL it there.
pub const STALL_VAR: &str = "ATELIER_DEPLOY_STALL_AT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deploy,
    Rollback,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
        }
    }
}

/// What a deployment will do.
pub struct Plan {
    pub kind: Kind,
    pub version: String,
    pub slot: Slot,
    /// The current deployment, replaced by this one.
    pub previous: Option<Deployment>,
}

/// A step's failure: which step and why.
struct Failed {
    step: &'static str,
    reason: String,
}

/// What to undo if a later step fails.
enum Undo {
    Stop(Slot),
    SwitchBack(Slot),
}

pub struct Engine<'a> {
    ctx: &'a Context,
    db: &'a Db,
    driver: &'a Driver,
    lease: &'a Held,
    settings: DeploySettings,
    client: reqwest::Client,
    deployment_id: i64,
}

/// An HTTP client for probes: short timeouts, no idle connections kept.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn progress(ctx: &Context, line: &str) {
    if !ctx.out.is_json() && !ctx.out.quiet {
        crate::output::stderr(line);
    }
}

fn stall_at(step: &str) -> bool {
    std::env::var(STALL_VAR).is_ok_and(|s| s == step)
}

impl<'a> Engine<'a> {
    pub fn new(ctx: &'a Context, db: &'a Db, driver: &'a Driver, lease: &'a Held, deployment_id: i64) -> Self {
        Engine { ctx, db, driver, lease, settings: ctx.config.settings.deploy.clone(), client: client(), deployment_id }
    }

    async fn start_step(&self, step: &str) -> Result<i64, Failure> {
        let mut conn = self.db.conn().await?;
        let id = deploy::step_start(&mut conn, self.deployment_id, step).await?;
        drop(conn);
        if stall_at(step) {
            progress(self.ctx, &format!("… {step}: stalled ({STALL_VAR})"));
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
        Ok(id)
    }

    async fn end_step(&self, id: i64, step: &str, outcome: &str, detail: &str) -> Result<(), Failure> {
        let mut conn = self.db.conn().await?;
        deploy::step_end(&mut conn, id, outcome, detail).await?;
        let mark = match outcome {
            "ok" => "✓",
            "skipped" => "-",
            "undone" => "↺",
            _ => "✗",
        };
        progress(self.ctx, &format!("{mark} {step}: {detail}"));
        Ok(())
    }

    /// Runs one step: journals its start, runs `work`, journals its end.
    async fn step(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = Result<Option<String>, String>>,
    ) -> Result<(), Failed> {
        if self.lease.lost() {
            return Err(Failed { step, reason: "the deploy lock was taken over (heartbeats stopped too long)".into() });
        }
        let id = self.start_step(step).await.map_err(|f| Failed { step, reason: f.message })?;
        let (outcome, detail, result) = match work.await {
            Ok(Some(detail)) => ("ok", detail, Ok(())),
            Ok(None) => ("skipped", "not needed".to_owned(), Ok(())),
            Err(reason) => ("failed", reason.clone(), Err(Failed { step, reason })),
        };
        self.end_step(id, step, outcome, &detail).await.map_err(|f| Failed { step, reason: f.message })?;
        result
    }

    /// The checklist: every step in order; the first failure stops it.
    async fn steps(&self, plan: &Plan, undo: &mut Vec<Undo>) -> Result<(), Failed> {
        let old = plan.previous.as_ref().and_then(|p| Slot::parse(&p.slot)).filter(|s| *s != plan.slot);
        self.step("lock", async { Ok(Some(self.lease.describe())) }).await?;
        self.step("preflight", self.preflight()).await?;
        self.step("gate", self.gate(plan)).await?;
        self.step("migrate", self.migrate(plan)).await?;
        self.step("start", async {
            self.driver.installed(&plan.version)?;
            let started = self.driver.start(plan.slot, &plan.version).await;
            undo.push(Undo::Stop(plan.slot));
            started.map(|d| Some(format!("{} at {}: {d}", plan.slot.as_str(), plan.version)))
        })
        .await?;
        self.step("ready", self.ready(plan.slot, &plan.version)).await?;
        self.step("canary", self.canary(plan.slot)).await?;
        let baseline = self.counters(plan.slot, &plan.version).await.unwrap_or_default();
        self.step("switch", async {
            if let Some(old) = old {
                undo.push(Undo::SwitchBack(old));
            }
            self.driver.switch(plan.slot).await.map(Some)
        })
        .await?;
        self.step("analysis", self.analysis(plan.slot, &plan.version, baseline)).await?;
        self.step("drain", async {
            let Some(old) = old else { return Ok(None) };
            undo.clear();
            self.driver.stop(old, self.settings.drain_timeout).await.map(|d| Some(format!("{}: {d}", old.as_str())))
        })
        .await?;
        self.step("record", async {
            let mut conn = self.db.conn().await.map_err(|e| e.to_string())?;
            deploy::finish(&mut conn, self.deployment_id, "succeeded", None, None).await.map_err(|e| e.to_string())?;
            let kept = self.prune(&mut conn).await;
            Ok(Some(format!("{} {} live in {}{kept}", plan.kind.as_str(), plan.version, plan.slot.as_str())))
        })
        .await?;
        Ok(())
    }

    /// Releases kept: those of the newest `deploy.keep_releases` successful deployments.
    async fn prune(&self, conn: &mut atelier_domain::store::PooledConn) -> String {
        let Ok(history) = deploy::history(conn, 200).await else { return String::new() };
        let mut keep: Vec<String> = Vec::new();
        for d in history.iter().filter(|d| d.status == "succeeded") {
            if !keep.contains(&d.version) && keep.len() < self.settings.keep_releases.max(2) {
                keep.push(d.version.clone());
            }
        }
        let removed = self.driver.prune_releases(&keep);
        if removed.is_empty() { String::new() } else { format!("; releases removed: {}", removed.join(", ")) }
    }

    async fn undo(&self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let (step, result) = match u {
                Undo::SwitchBack(slot) => ("undo:switch", self.driver.switch(slot).await),
                Undo::Stop(slot) => ("undo:start", self.driver.stop(slot, self.settings.drain_timeout).await),
            };
            let Ok(id) = self.start_step(step).await else { continue };
            let (outcome, detail) = match result {
                Ok(d) => ("undone", d),
                Err(e) => ("failed", e),
            };
            let _ = self.end_step(id, step, outcome, &detail).await;
        }
    }

    /// `atelier check`'s checks; pending migrations are the next step's work
    /// and a topology not yet declared is declared by atelierd at start.
    async fn preflight(&self) -> Result<Option<String>, String> {
        let outcomes = crate::commands::check::gather(self.ctx).await;
        let failing: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.check.ok && !matches!(o.check.name, "migrations" | "topology"))
            .map(|o| format!("{}: {}", o.check.name, o.check.detail))
            .collect();
        if failing.is_empty() {
            let names: Vec<&str> = outcomes.iter().filter(|o| o.check.ok).map(|o| o.check.name).collect();
            Ok(Some(format!("passed: {}", names.join(", "))))
        } else {
            Err(failing.join("; "))
        }
    }

    /// In an environment with `deploy.gate_env`: that environment ran this
    /// version successfully for `deploy.min_soak`, with no more dead letters
    /// than `deploy.max_dead_letters` since.
    async fn gate(&self, plan: &Plan) -> Result<Option<String>, String> {
        let Some(gate_env) = self.settings.gate_env.clone() else { return Ok(None) };
        if plan.kind == Kind::Rollback {
            return Ok(None);
        }
        gate(self.ctx, &gate_env, &plan.version, self.settings.min_soak, self.settings.max_dead_letters).await.map(Some)
    }

    async fn migrate(&self, plan: &Plan) -> Result<Option<String>, String> {
        if plan.kind == Kind::Rollback {
            return Ok(None);
        }
        let url = self.db.url().clone();
        let settings = &self.ctx.config.settings;
        let options = RunOptions {
            actor: migrations::actor(None),
            phase: Phase::Expand,
            refuse_drift: settings.policy.refuse_migration_drift,
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
            retry: LockRetry::from(&settings.database),
            lock_wait: Some(self.settings.ready_timeout),
            command: "atelier deploy".into(),
            on_wait: None,
        };
        let limits = Limits::from(&settings.database);
        let report =
            migrations::apply(&url, limits, &Catalog::embedded(), options, |_| {}).await.map_err(|e| e.to_string())?;
        let names: Vec<String> = report.applied.iter().map(|m| m.name.clone()).collect();
        let mut conn = self.db.conn().await.map_err(|e| e.to_string())?;
        deploy::set_migrations(&mut conn, self.deployment_id, &names).await.map_err(|e| e.to_string())?;
        Ok(Some(if names.is_empty() {
            "no expand migration pending".to_owned()
        } else {
            format!("applied {}", names.join(", "))
        }))
    }

    /// `/ready` answers 200 and `/version` names `version`, within `deploy.ready_timeout`.
    async fn ready(&self, slot: Slot, version: &str) -> Result<Option<String>, String> {
        wait_ready(&self.client, &self.driver.slot_url(slot, version), version, self.settings.ready_timeout)
            .await
            .map(|d| Some(format!("{}: {d}", slot.as_str())))
    }

    /// A `system.ping` through the outbox, handled by `slot`'s own consumers:
    /// pings are raised every second until one is recorded as handled there.
    async fn canary(&self, slot: Slot) -> Result<Option<String>, String> {
        let started = Instant::now();
        let deadline = started + self.settings.canary_timeout;
        let mut raised = Vec::new();
        let origin = Origin::new("atelier/deploy");
        loop {
            let mut conn = self.db.conn().await.map_err(|e| e.to_string())?;
            raised.push(canary::raise(&mut conn, &origin).await.map_err(|e| e.to_string())?);
            let pause = Instant::now() + Duration::from_secs(1);
            while Instant::now() < pause {
                let handled =
                    deploy::pings_handled_by(&mut conn, &raised, slot.as_str()).await.map_err(|e| e.to_string())?;
                if handled > 0 {
                    return Ok(Some(format!(
                        "a ping was handled by {}'s consumers ({} raised, {:.1}s)",
                        slot.as_str(),
                        raised.len(),
                        started.elapsed().as_secs_f64()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "none of {} pings was handled by {}'s consumers within {:?} (deploy.canary_timeout)",
                    raised.len(),
                    slot.as_str(),
                    self.settings.canary_timeout
                ));
            }
        }
    }

    async fn counters(&self, slot: Slot, version: &str) -> Result<Counters, String> {
        let url = format!("{}/metrics", self.driver.slot_url(slot, version));
        let res = self.client.get(&url).send().await.map_err(|e| format!("{url}: {}", e.without_url()))?;
        let text = res.text().await.map_err(|e| e.to_string())?;
        Ok(rules::parse_metrics(&text))
    }

    /// For `deploy.analysis`: the new slot's API answers through the proxy
    /// (a probe each second), its 5xx ratio and dead letters since the switch
    /// (its `/metrics`) under the limits, and it stays ready.
    async fn analysis(&self, slot: Slot, version: &str, baseline: Counters) -> Result<Option<String>, String> {
        let limits = rules::Limits {
            max_5xx_ratio: self.settings.max_5xx_ratio,
            max_dead_letters: self.settings.max_dead_letters,
        };
        let through = self.driver.proxy_url().unwrap_or_else(|| self.driver.slot_url(slot, version));
        let deadline = Instant::now() + self.settings.analysis;
        let mut not_ready = 0;
        let verdict = loop {
            // A probe of the API as clients reach it.
            let _ = self.client.get(format!("{through}/api/v1/openapi.json")).send().await;
            let now = self.counters(slot, version).await?;
            let verdict = rules::analyse(baseline, now, limits)?;
            let ready = self.client.get(format!("{}/ready", self.driver.slot_url(slot, version))).send().await;
            not_ready = if ready.is_ok_and(|r| r.status().is_success()) { 0 } else { not_ready + 1 };
            if not_ready >= 3 {
                return Err(format!("{} stopped being ready after the switch", slot.as_str()));
            }
            if Instant::now() >= deadline {
                break verdict;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        Ok(Some(format!("{} for {:?}: {verdict}", slot.as_str(), self.settings.analysis)))
    }
}

/// Waits until `base`'s `/ready` is 200 and its `/version` names `version`.
pub async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    version: &str,
    within: Duration,
) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let last;
        match client.get(format!("{base}/version")).send().await {
            Ok(res) => {
                let running = res.json::<Value>().await.ok().and_then(|v| v["version"].as_str().map(str::to_owned));
                if running.as_deref() != Some(version) {
                    last = format!("/version says {}", running.unwrap_or_else(|| "nothing".into()));
                } else {
                    match client.get(format!("{base}/ready")).send().await {
                        Ok(r) if r.status().is_success() => {
                            return Ok(format!("ready at {version} after {:.1}s", started.elapsed().as_secs_f64()));
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().await.unwrap_or_default();
                            last = format!("/ready answered {status}: {}", body.chars().take(300).collect::<String>());
                        }
                        Err(e) => last = format!("/ready: {}", e.without_url()),
                    }
                }
            }
            Err(e) => last = format!("/version: {}", e.without_url()),
        }
        if started.elapsed() > within {
            return Err(format!("not ready at {version} within {within:?} (deploy.ready_timeout): {last}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The gate on `gate_env` (staging) for `version`, read from that
/// environment's own database (its configuration names it).
pub async fn gate(
    ctx: &Context,
    gate_env: &str,
    version: &str,
    min_soak: Duration,
    max_dead_letters: u64,
) -> Result<String, String> {
    // Its own files only: this process's ATELIER__* variables are this environment's.
    let staging =
        config::load_with(&ctx.config.dir, gate_env, &[]).map_err(|e| format!("{gate_env}'s configuration: {e}"))?;
    let url = DatabaseUrl::resolve(&staging.settings.database, atelier_domain::secrets::open(&staging).as_ref())
        .map_err(|e| format!("{gate_env}'s database: {e}"))?;
    let db = Db::new(url, 1, staging.settings.database.connect_timeout).map_err(|e| e.to_string())?;
    let mut conn = db.conn().await.map_err(|e| format!("{gate_env}'s database: {e}"))?;
    let Some(done) = deploy::last_success_of(&mut conn, version).await.map_err(|e| e.to_string())? else {
        return Err(format!("{version} was never deployed successfully in {gate_env}: deploy it there first"));
    };
    let since = done.finished_at.unwrap_or(done.started_at);
    let soaked = (chrono::Utc::now() - since).to_std().unwrap_or_default();
    if soaked < min_soak {
        return Err(format!(
            "{version} has run in {gate_env} for {}s, under deploy.min_soak {min_soak:?}",
            soaked.as_secs()
        ));
    }
    let dead = deploy::dead_letters_since(&mut conn, since).await.map_err(|e| e.to_string())?;
    if dead > i64::try_from(max_dead_letters).unwrap_or(i64::MAX) {
        return Err(format!(
            "{dead} dead letters in {gate_env} since {version} was deployed there, over {max_dead_letters}"
        ));
    }
    Ok(format!(
        "{version} deployed in {gate_env} (deployment {}) {}s ago, {dead} dead letters since",
        done.id,
        soaked.as_secs()
    ))
}

/// Runs `plan` as a new deployment; returns its record and whether it succeeded.
pub async fn execute(
    ctx: &Context,
    db: &Db,
    driver: &Driver,
    lease: &Held,
    plan: Plan,
) -> Result<(Value, Option<Failure>), Failure> {
    let mut conn = db.conn().await?;
    let deployment = deploy::begin(
        &mut conn,
        NewDeployment {
            version: &plan.version,
            slot: plan.slot.as_str(),
            actor: &format!("{}@{}", lease.owner.user, lease.owner.host),
            kind: plan.kind.as_str(),
            previous: plan.previous.as_ref().map(|p| p.id),
        },
    )
    .await?;
    drop(conn);
    progress(
        ctx,
        &format!(
            "{} {} to {} in {} (deployment {})",
            plan.kind.as_str(),
            plan.version,
            plan.slot.as_str(),
            ctx.env(),
            deployment.id
        ),
    );
    let engine = Engine::new(ctx, db, driver, lease, deployment.id);
    let mut undo = Vec::new();
    let failure = match engine.steps(&plan, &mut undo).await {
        Ok(()) => None,
        Err(Failed { step, reason }) => {
            engine.undo(undo).await;
            let mut conn = db.conn().await?;
            deploy::finish(&mut conn, deployment.id, "rolled_back", Some(step), Some(&reason)).await?;
            Some(Failure::new(
                Code::RolledBack,
                format!("{} of {} failed at step {step}: {reason}; rolled back", plan.kind.as_str(), plan.version),
            ))
        }
    };
    Ok((record(db, deployment.id).await?, failure))
}

/// A deployment and its journal, as `--output json` gives it.
pub async fn record(db: &Db, id: i64) -> Result<Value, Failure> {
    let mut conn = db.conn().await?;
    let deployment = deploy::get(&mut conn, id).await?;
    let steps = deploy::steps(&mut conn, id).await?;
    Ok(json!({"deployment": deployment, "steps": steps}))
}

/// Finds a deployment whose command died (still `running` while we hold
/// the lease) and finishes or rolls it back against what really runs.
/// Returns its record when there was one.
pub async fn reconcile(ctx: &Context, db: &Db, driver: &Driver, lease: &Held) -> Result<Option<Value>, Failure> {
    let mut conn = db.conn().await?;
    let Some(orphan) = deploy::running(&mut conn).await? else { return Ok(None) };
    let steps = deploy::steps(&mut conn, orphan.id).await?;
    let previous = match orphan.previous_deployment_id {
        Some(id) => deploy::get(&mut conn, id).await?,
        None => None,
    };
    drop(conn);
    let last = steps.iter().rev().map(|s| s.step.as_str()).find(|s| rules::STEPS.contains(s));
    let new = Slot::parse(&orphan.slot).unwrap_or(Slot::Blue);
    let old = previous.as_ref().and_then(|p| Slot::parse(&p.slot)).filter(|s| *s != new);
    let settings = &ctx.config.settings.deploy;
    let engine = Engine::new(ctx, db, driver, lease, orphan.id);
    progress(
        ctx,
        &format!(
            "deployment {} ({} {}) was left running at step {}: reconciling",
            orphan.id,
            orphan.kind,
            orphan.version,
            last.unwrap_or("none")
        ),
    );
    let journal = async |step: &str, result: Result<String, String>| -> Result<(), Failure> {
        let id = engine.start_step(step).await?;
        match result {
            Ok(d) => engine.end_step(id, step, "ok", &d).await,
            Err(e) => engine.end_step(id, step, "failed", &e).await,
        }
    };
    let by = format!("{}@{} (pid {})", lease.owner.user, lease.owner.host, lease.owner.pid);
    let mut conn = db.conn().await?;
    match rules::reconcile(last) {
        Reconcile::Finish => {
            if driver.live() != Some(new) {
                journal("reconcile:switch", driver.switch(new).await).await?;
            }
            if let Some(old) = old {
                journal("reconcile:drain", driver.stop(old, settings.drain_timeout).await).await?;
            }
            journal("reconcile:record", Ok(format!("finished by {by}"))).await?;
            deploy::finish(&mut conn, orphan.id, "succeeded", None, None).await?;
        }
        Reconcile::RollBack => {
            if let (Some(old), Some(prev)) = (old, previous.as_ref()) {
                if driver.running(old) == Some(false) {
                    let started = driver.start(old, &prev.version).await;
                    journal("reconcile:start", started).await?;
                    let ready = wait_ready(
                        &client(),
                        &driver.slot_url(old, &prev.version),
                        &prev.version,
                        settings.ready_timeout,
                    )
                    .await;
                    journal("reconcile:ready", ready).await?;
                }
                if driver.live() != Some(old) {
                    journal("reconcile:switch", driver.switch(old).await).await?;
                }
            }
            if driver.running(new) != Some(false) {
                journal("reconcile:stop", driver.stop(new, settings.drain_timeout).await).await?;
            }
            let reason =
                format!("the command running it died during step {}; rolled back by {by}", last.unwrap_or("(none)"));
            deploy::finish(&mut conn, orphan.id, "rolled_back", last, Some(&reason)).await?;
        }
    }
    drop(conn);
    Ok(Some(record(db, orphan.id).await?))
}
