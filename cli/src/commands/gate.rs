//! `atelier gate --expect-version V`: for a CI pipeline, is this
//! environment's atelierd healthy and running version V? It asks the
//! environment's own HTTP endpoints (`http.public_base_url`, or `--url`):
//! `/version` must name V and this environment, `/ready` must answer ready
//! (database reachable and migrated, broker and consumers up where they
//! run). Exit 0 when both hold, 5 when either does not, 4 when atelierd
//! cannot be reached. With `--wait`, it looks again every 2 s until both
//! hold or the whole wait is over (a pipeline gating production on staging
//! right after staging's deploy), saying what is still pending: on the
//! spinner on a terminal, else a line on stderr each time it changes.
//! With `--deployment` (or `--min-soak`, `--max-dead-letters`), also the
//! checks of V's deployment there (`deploy::soak`).

use crate::cli::GateArgs;
use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::Check;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Each request's own limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks while waiting.
const INTERVAL: Duration = Duration::from_secs(2);

/// What one look found: the checks, or why atelierd could not be asked.
enum Look {
    Checked(Vec<Check>),
    Unreachable(String),
}

pub async fn run(args: GateArgs, ctx: &Context) -> Result<Code, Failure> {
    let base = args.url.clone().unwrap_or_else(|| ctx.config.settings.http.public_base_url.clone());
    let base = base.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Failure::new(
            Code::Config,
            format!("'{base}' is not an http(s) URL (http.public_base_url or --url)"),
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("HTTP client: {e}")))?;
    let deadline = Instant::now() + args.wait.map(Duration::from).unwrap_or_default();
    let spinner = ctx.out.spinner(&format!("waiting for {} to be ready at {}", ctx.env(), args.expect_version));
    let mut said = String::new();
    let look = loop {
        let look = look(&client, &base, &args.expect_version, ctx.env()).await;
        let passed = matches!(&look, Look::Checked(checks) if checks.iter().all(|c| c.ok));
        let now = Instant::now();
        if passed || now >= deadline {
            break look;
        }
        // What is still pending: on the spinner, and (without a terminal,
        // in text mode) a line on stderr each time it changes.
        let pending = pending(&look);
        spinner.set_message(format!("waiting for {} at {}: {pending}", ctx.env(), args.expect_version));
        if pending != said && spinner.is_hidden() && !ctx.out.quiet && !ctx.out.is_json() {
            crate::output::stderr(&format!("waiting ({}s left): {pending}", (deadline - now).as_secs()));
        }
        said = pending;
        // The full wait: the last look is at the deadline, not an interval before it.
        tokio::time::sleep(INTERVAL.min(deadline - now)).await;
    };
    spinner.finish_and_clear();
    match look {
        Look::Unreachable(why) => Err(Failure::new(
            Code::Unavailable,
            format!("atelierd of {} cannot be reached at {base}: {why}", ctx.env()),
        )),
        Look::Checked(mut checks) => {
            if crate::deploy::soak::wanted(&args) {
                checks.extend(crate::deploy::soak::checks(ctx, &client, &base, &args).await);
            }
            let ok = checks.iter().all(|c| c.ok);
            let data = json!({"env": ctx.env(), "url": base, "expected_version": args.expect_version});
            let verdict = if ok { "is healthy" } else { "is not healthy" };
            ctx.out.checks(data, &checks, &format!("{} {verdict} at {}", ctx.env(), args.expect_version));
            Ok(if ok { Code::Ok } else { Code::CheckFailed })
        }
    }
}

/// What a look found still missing, in a line.
fn pending(look: &Look) -> String {
    match look {
        Look::Unreachable(why) => format!("unreachable: {why}"),
        Look::Checked(checks) => {
            checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ")
        }
    }
}

/// Asks `/version` and `/ready` once.
async fn look(client: &reqwest::Client, base: &str, expected: &str, env: &str) -> Look {
    let get = async |path: &str| -> Result<(u16, Value), String> {
        let res = client.get(format!("{base}{path}")).send().await.map_err(describe)?;
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    };
    let (version, ready) = match (get("/version").await, get("/ready").await) {
        (Ok(v), Ok(r)) => (v, r),
        (Err(e), _) | (_, Err(e)) => return Look::Unreachable(e),
    };
    Look::Checked(vec![version_check(version, expected, env), ready_check(ready)])
}

/// `/version` names the expected version and this environment.
fn version_check((status, body): (u16, Value), expected: &str, env: &str) -> Check {
    let running = body["version"].as_str().unwrap_or_default();
    let their_env = body["env"].as_str().unwrap_or_default();
    let (ok, detail) = if status != 200 || running.is_empty() {
        (false, format!("/version answered {status} without a version"))
    } else if their_env != env {
        (false, format!("this is {their_env}'s atelierd, not {env}'s"))
    } else if running != expected {
        (false, format!("runs {running}, expected {expected}"))
    } else {
        (true, format!("runs {running}"))
    };
    Check { name: "version", ok, detail }
}

/// `/ready` answers 200 ready; otherwise names the checks that failed.
pub(super) fn ready_check((status, body): (u16, Value)) -> Check {
    if status == 200 && body["status"] == "ready" {
        return Check { name: "ready", ok: true, detail: "ready".into() };
    }
    let failing: Vec<String> = body["checks"]
        .as_object()
        .map(|checks| checks.iter().filter(|(_, c)| c["ok"] != true).map(|(name, c)| describe_check(name, c)).collect())
        .unwrap_or_default();
    let detail = if failing.is_empty() {
        format!("/ready answered {status}")
    } else {
        format!("/ready answered {status}: {}", failing.join("; "))
    };
    Check { name: "ready", ok: false, detail }
}

/// A failing readiness check in a few words: its name, and its error or
/// pending migrations when it gives them.
fn describe_check(name: &str, check: &Value) -> String {
    if let Some(e) = check["error"].as_str() {
        return format!("{name} ({e})");
    }
    match check["pending"].as_array() {
        Some(p) if !p.is_empty() => {
            let names: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
            format!("{name} ({} pending: {})", names.len(), names.join(", "))
        }
        _ => name.to_owned(),
    }
}

/// A request's failure by its root cause, without the URL reqwest puts in
/// it (the caller says it): "Connection refused (os error 111)".
pub(super) fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {REQUEST_TIMEOUT:?}");
    }
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
