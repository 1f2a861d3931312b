//! `atelier secrets keygen | init | list | set | show | rotate | finish |
//! history`: the environment's secrets in the `file` backend, their stages
//! and staged rotation (the rules are `rules::secrets`; the file and its
//! encryption `secrets::file`). Every change is recorded in the file's audit
//! trail. No output carries a value, except `show --reveal` (confirmed and
//! audited); values are read from a prompt without echo or stdin, never from
//! an argument.

use crate::cli::SecretsCommand;
use crate::context::Context;
use crate::exit::{Code, Failure};
use atelier_domain::auth::KeySet;
use atelier_domain::config::SecretBackendKind;
use atelier_domain::rules::secrets::{self as rules, FinishRefused};
use atelier_domain::secrets::document::{Document, Entry, Kind, Stage, Version};
use atelier_domain::secrets::{self, FileSecrets, SecretValue};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

pub async fn run(cmd: SecretsCommand, ctx: &Context) -> Result<Code, Failure> {
    match cmd {
        SecretsCommand::Keygen { identity_file } => keygen(ctx, &identity_file),
        SecretsCommand::Init => init(ctx),
        SecretsCommand::List => list(ctx),
        SecretsCommand::Set { name, kind, stage, stdin } => set(ctx, &name, kind.as_deref(), &stage, stdin),
        SecretsCommand::Show { name, reveal } => show(ctx, &name, reveal),
        SecretsCommand::Rotate { name, promote, abort } => rotate(ctx, &name, promote, abort).await,
        SecretsCommand::Finish { name, force } => finish(ctx, &name, force).await,
        SecretsCommand::History { name } => history(ctx, &name),
    }
}

/// Who the audit trail names: `$ATELIER_ACTOR`, else the login name.
fn actor() -> String {
    ["ATELIER_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn file(ctx: &Context) -> Result<FileSecrets, Failure> {
    match ctx.config.settings.secrets.backend {
        SecretBackendKind::File => Ok(FileSecrets::new(&ctx.config)),
        SecretBackendKind::Env => Err(Failure::new(
            Code::Config,
            format!(
                "environment '{}' uses the env secrets backend (read-only ATELIER_SECRET_<NAME> variables): this needs secrets.backend = \"file\" (README, \"Secrets\")",
                ctx.env()
            ),
        )),
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    if !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Failure::new(Code::Usage, "a secret's name is 1 to 64 letters, digits or '_'"))
    }
}

/// Reads the file for a change: its recipients must be the configuration's,
/// and pending versions whose time has come are written down as current.
fn load_for_change(fs: &FileSecrets) -> Result<Document, Failure> {
    let mut doc = fs.read()?;
    fs.check_recipients(&doc)?;
    let now = Utc::now();
    let names: Vec<String> = doc.secrets.keys().cloned().collect();
    for name in names {
        let activated = doc.secrets.get_mut(&name).and_then(|e| rules::activate_due(e, now));
        if let Some(a) = activated {
            doc.record(a.at, "activation_delay", &name, Some(a.version), "activate");
        }
    }
    Ok(doc)
}

fn entry<'a>(doc: &'a Document, fs: &FileSecrets, name: &str) -> Result<&'a Entry, Failure> {
    doc.secrets.get(name).ok_or_else(|| {
        Failure::new(Code::Failure, format!("no secret '{name}' in {}: `secrets list` shows them", fs.path().display()))
    })
}

fn max_age(ctx: &Context, kind: Kind) -> Duration {
    let m = &ctx.config.settings.secrets.max_age;
    match kind {
        Kind::JwtKeys => m.jwt_keys,
        Kind::Token => m.token,
        Kind::External => m.external,
        Kind::PostgresPassword => m.postgres_password,
    }
}

/// How long `finish` waits after a version stopped signing: the longest token lifetime for token keys.
fn overlap(ctx: &Context, kind: Kind) -> Duration {
    match kind {
        Kind::JwtKeys => ctx.config.settings.auth.token_lifetime,
        Kind::Token | Kind::External | Kind::PostgresPassword => Duration::ZERO,
    }
}

fn version_json(v: &Version) -> Value {
    json!({"version": v.version, "stage": v.stage.name(), "created_at": v.created_at,
           "activates_at": v.activates_at, "current_since": v.current_since, "retired_at": v.retired_at})
}

fn stages_text(e: &Entry) -> String {
    let mut versions: Vec<&Version> = e.versions.iter().collect();
    versions.sort_by_key(|v| v.stage);
    versions
        .iter()
        .map(|v| match v.activates_at {
            Some(t) => format!("{} v{} (current at {})", v.stage, v.version, t.format("%Y-%m-%d %H:%M:%SZ")),
            None => format!("{} v{}", v.stage, v.version),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn age_text(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(if secs > 86_400 { secs / 3600 * 3600 } else { secs })).to_string()
}

fn keygen(ctx: &Context, path: &std::path::Path) -> Result<Code, Failure> {
    let (identity, recipient) = secrets::file::generate_identity();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |f: &mut std::fs::File| {
        use std::io::Write;
        let created = Utc::now().to_rfc3339();
        writeln!(f, "# created: {created}\n# public key: {recipient}\n{}", identity.expose())?;
        f.sync_all()
    };
    options
        .open(path)
        .and_then(|mut f| write(&mut f))
        .map_err(|e| Failure::new(Code::Failure, format!("cannot create the identity file {}: {e}", path.display())))?;
    let doc = json!({"success": true, "data": {"identity_file": path.display().to_string(), "recipient": recipient}});
    ctx.out.emit(&doc, || {
        format!(
            "identity written to {} (keep it secret)\nrecipient: {recipient}\nadd the recipient to secrets.recipients in the environment's TOML",
            path.display()
        )
    });
    Ok(Code::Ok)
}

fn init(ctx: &Context) -> Result<Code, Failure> {
    let fs = file(ctx)?;
    if fs.exists() {
        return Err(Failure::new(Code::Failure, format!("{} exists already", fs.path().display())));
    }
    let mut doc = fs.new_document()?;
    ctx.confirm("Create the secrets file")?;
    // The token keys every environment needs, as their first version.
    let jwt = ctx.config.settings.auth.jwt_secret.clone();
    let now = Utc::now();
    let value = fs.encrypt(&secrets::generate(Kind::JwtKeys, 1))?;
    doc.secrets.insert(
        jwt.clone(),
        Entry {
            kind: Kind::JwtKeys,
            versions: vec![Version {
                version: 1,
                stage: Stage::Current,
                created_at: now,
                activates_at: None,
                current_since: Some(now),
                retired_at: None,
                user: None,
                value,
            }],
        },
    );
    let who = actor();
    doc.record(now, &who, "*", None, "init");
    doc.record(now, &who, &jwt, Some(1), "create");
    fs.write(&doc)?;
    let out = json!({"success": true, "data": {"file": fs.path().display().to_string(), "recipients": doc.recipients, "created": [jwt]}});
    ctx.out.emit(&out, || format!("created {} with {jwt} v1 (auth.jwt_secret)", fs.path().display()));
    Ok(Code::Ok)
}

fn list(ctx: &Context) -> Result<Code, Failure> {
    if ctx.config.settings.secrets.backend == SecretBackendKind::Env {
        return list_env(ctx);
    }
    let fs = file(ctx)?;
    let doc = fs.read()?;
    let now = Utc::now();
    let rows: Vec<(String, Entry, Option<DateTime<Utc>>, bool)> = doc
        .secrets
        .keys()
        .filter_map(|name| fs.entry(&doc, name).map(|e| (name.clone(), e)))
        .map(|(name, e)| {
            let age = max_age(ctx, e.kind);
            let due = rules::due_at(&e, age);
            let overdue = rules::overdue(&e, age, now);
            (name, e, due, overdue)
        })
        .collect();
    let data: Vec<Value> = rows
        .iter()
        .map(|(name, e, due, overdue)| {
            let current = e.stage(Stage::Current);
            json!({"name": name, "kind": e.kind.name(), "versions": e.versions.iter().map(version_json).collect::<Vec<_>>(),
                   "current_version": current.map(|v| v.version),
                   "age_seconds": current.map(|v| (now - v.current_since.unwrap_or(v.created_at)).num_seconds()),
                   "due_at": due, "overdue": overdue})
        })
        .collect();
    let doc_out = json!({"success": true, "data": data, "count": data.len()});
    ctx.out.emit(&doc_out, || {
        let mut s = format!("# {} ({})\n", ctx.env(), fs.path().display());
        for (name, e, due, overdue) in &rows {
            let age = e
                .stage(Stage::Current)
                .map(|v| age_text(now - v.current_since.unwrap_or(v.created_at)))
                .unwrap_or_else(|| "-".into());
            let due = due.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "{name:<24} {:<9} age {age:<12} due {due}{}  {}\n",
                e.kind.name(),
                if *overdue { " OVERDUE" } else { "" },
                stages_text(e)
            ));
        }
        if rows.is_empty() {
            s.push_str("no secrets yet: `secrets set NAME` adds one\n");
        }
        s
    });
    Ok(Code::Ok)
}

/// The env backend has no versions: the secrets the configuration names, and whether each is set.
fn list_env(ctx: &Context) -> Result<Code, Failure> {
    let s = &ctx.config.settings;
    let store = ctx.secrets();
    let mut rows = Vec::new();
    for (key, name) in s.named_secrets() {
        let set = store.get(name)?.is_some();
        rows.push(json!({"name": name, "key": key, "backend": "env", "set": set, "variable": secrets::EnvSecrets::var_name(name)}));
    }
    let doc = json!({"success": true, "data": rows, "count": rows.len()});
    ctx.out.emit(&doc, || {
        rows.iter()
            .map(|r| {
                format!(
                    "{:<24} {:<26} {} ({})\n",
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                    if r["set"] == true { "set" } else { "NOT SET" },
                    r["variable"].as_str().unwrap_or("")
                )
            })
            .collect()
    });
    Ok(Code::Ok)
}

fn read_value(name: &str, from_stdin: bool) -> Result<SecretValue, Failure> {
    let value = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(Code::Failure, format!("cannot read the value from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(Code::Usage, "no terminal to ask for the value: pass --stdin"));
        }
        let read = |p: &str| {
            rpassword::prompt_password(p)
                .map_err(|e| Failure::new(Code::Failure, format!("cannot read the value: {e}")))
        };
        let first = read(&format!("Value of {name}: "))?;
        if first != read("Again: ")? {
            return Err(Failure::new(Code::Failure, "the two values differ"));
        }
        first
    };
    if value.is_empty() {
        return Err(Failure::new(Code::Usage, "the value is empty"));
    }
    Ok(SecretValue::new(value))
}

fn set(ctx: &Context, name: &str, kind: Option<&str>, stage: &str, stdin: bool) -> Result<Code, Failure> {
    check_name(name)?;
    let kind: Option<Kind> = kind.map(|k| k.parse().map_err(|e: String| Failure::new(Code::Usage, e))).transpose()?;
    let fs = file(ctx)?;
    let mut doc = load_for_change(&fs)?;
    let kind = match (doc.secrets.get(name), kind) {
        (Some(e), Some(k)) if e.kind != k => {
            return Err(Failure::new(Code::Usage, format!("secret '{name}' is of kind {}, not {k}", e.kind)));
        }
        (Some(e), _) => e.kind,
        (None, k) => k.unwrap_or(Kind::External),
    };
    let pending = stage == "pending";
    if pending && doc.secrets.get(name).and_then(|e| e.stage(Stage::Pending)).is_some() {
        return Err(Failure::new(
            Code::Failure,
            format!(
                "secret '{name}' has a pending version already: `secrets rotate {name} --promote` or `--abort` it first"
            ),
        ));
    }
    let value = read_value(name, stdin)?;
    if kind == Kind::JwtKeys {
        let one = KeySet::parse(value.expose()).map_err(|e| Failure::new(Code::Usage, format!("the value: {e}")))?;
        if one.kids().len() != 1 {
            return Err(Failure::new(Code::Usage, "a jwt_keys version holds one key: kid:base64key"));
        }
    }
    ctx.confirm(&format!("Set secret {name}"))?;
    let now = Utc::now();
    let encrypted = fs.encrypt(&value)?;
    drop(value);
    let entry = doc.secrets.entry(name.to_owned()).or_insert_with(|| Entry { kind, versions: Vec::new() });
    let version = entry.next_version();
    entry.versions.retain(|v| v.stage != Stage::Pending || !pending);
    entry.versions.push(Version {
        version,
        stage: Stage::Pending,
        created_at: now,
        activates_at: None,
        current_since: None,
        retired_at: None,
        user: None,
        value: encrypted,
    });
    if !pending {
        rules::promote(entry, now);
    }
    doc.record(now, &actor(), name, Some(version), if pending { "set pending" } else { "set" });
    fs.write(&doc)?;
    let out = json!({"success": true, "data": {"name": name, "kind": kind.name(), "version": version, "stage": if pending { "pending" } else { "current" }}});
    ctx.out.emit(&out, || {
        format!(
            "{name} v{version} is {}",
            if pending { "pending: `secrets rotate NAME --promote` makes it current" } else { "current" }
        )
        .replace("NAME", name)
    });
    Ok(Code::Ok)
}

fn show(ctx: &Context, name: &str, reveal: bool) -> Result<Code, Failure> {
    check_name(name)?;
    let fs = file(ctx)?;
    let mut doc = fs.read()?;
    entry(&doc, &fs, name)?;
    let e = fs.entry(&doc, name).expect("checked above");
    let mut data = json!({"name": name, "kind": e.kind.name(), "versions": e.versions.iter().map(version_json).collect::<Vec<_>>(),
                          "due_at": rules::due_at(&e, max_age(ctx, e.kind))});
    let mut revealed = None;
    if reveal {
        let current = e
            .stage(Stage::Current)
            .ok_or_else(|| Failure::new(Code::Failure, format!("'{name}' has no current version")))?;
        ctx.confirm_destructive(&format!("Reveal the value of secret {name}"))?;
        let value = fs.decrypt(name, current)?;
        doc.record(Utc::now(), &actor(), name, Some(current.version), "reveal");
        fs.write(&doc)?;
        data["value"] = json!(value.expose());
        revealed = Some(value);
    }
    let out = json!({"success": true, "data": data});
    ctx.out.emit(&out, || {
        let mut s = format!("{name} ({})\n", e.kind);
        for v in &e.versions {
            s.push_str(&format!(
                "  v{:<4} {:<8} created {}\n",
                v.version,
                v.stage,
                v.created_at.format("%Y-%m-%d %H:%M:%SZ")
            ));
        }
        if let Some(v) = &revealed {
            s.push_str(v.expose());
            s.push('\n');
        }
        s
    });
    Ok(Code::Ok)
}

async fn rotate(ctx: &Context, name: &str, promote: bool, abort: bool) -> Result<Code, Failure> {
    check_name(name)?;
    let fs = file(ctx)?;
    let mut doc = load_for_change(&fs)?;
    let kind = entry(&doc, &fs, name)?.kind;
    let now = Utc::now();
    let who = actor();
    if abort {
        let e = doc.secrets.get_mut(name).expect("checked");
        let Some(pending) = e.stage(Stage::Pending).map(|v| v.version) else {
            return Err(Failure::new(Code::Failure, format!("'{name}' has no pending version: nothing to abort")));
        };
        ctx.confirm(&format!("Abort the rotation of secret {name}"))?;
        e.versions.retain(|v| v.stage != Stage::Pending);
        doc.record(now, &who, name, Some(pending), "abort");
        fs.write(&doc)?;
        let out = json!({"success": true, "data": {"name": name, "aborted": pending}});
        ctx.out.emit(&out, || format!("{name}: pending v{pending} dropped; current unchanged"));
        return Ok(Code::Ok);
    }
    if promote {
        let e = doc.secrets.get_mut(name).expect("checked");
        if e.stage(Stage::Pending).is_none() {
            return Err(Failure::new(
                Code::Failure,
                format!("'{name}' has no pending version: `secrets set {name} --stage pending` adds one"),
            ));
        }
        ctx.confirm(&format!("Promote the pending version of secret {name}"))?;
        let a = rules::promote(e, now);
        doc.record(now, &who, name, Some(a.version), "promote");
        fs.write(&doc)?;
        let waited = wait_for_daemons(ctx, name, a.version).await;
        return report(ctx, name, a.version, "current", None, false, waited);
    }
    if !kind.generated() {
        return Err(Failure::new(
            Code::Failure,
            format!(
                "'{name}' is an {kind} secret: set the provider's new value with `secrets set {name} --stage pending`, test it, then `secrets rotate {name} --promote`"
            ),
        ));
    }
    let e = doc.secrets.get(name).expect("checked");
    let (version, activates_at, resumed) = match e.stage(Stage::Pending) {
        Some(p) => (p.version, p.activates_at, true),
        None => {
            if let Some(p) = e.stage(Stage::Previous) {
                return Err(Failure::new(
                    Code::Failure,
                    format!("'{name}' still has previous v{}: `secrets finish {name}` drops it first", p.version),
                ));
            }
            ctx.confirm(&format!("Rotate secret {name}"))?;
            let version = e.next_version();
            let (activates_at, user) = match kind {
                // Applied, tested, then promoted by this command (below), not by time.
                Kind::PostgresPassword => (None, Some(alternate_user(ctx, e)?)),
                _ => {
                    let delay = ctx.config.settings.secrets.activation_delay;
                    (Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)), None)
                }
            };
            let value = fs.encrypt(&secrets::generate(kind, version))?;
            let e = doc.secrets.get_mut(name).expect("checked");
            e.versions.push(Version {
                version,
                stage: Stage::Pending,
                created_at: now,
                activates_at,
                current_since: None,
                retired_at: None,
                user,
                value,
            });
            doc.record(now, &who, name, Some(version), "create");
            fs.write(&doc)?;
            (version, activates_at, false)
        }
    };
    if kind == Kind::PostgresPassword {
        apply_database_password(ctx, &fs, &mut doc, name, version).await?;
        let waited = wait_for_daemons(ctx, name, version).await;
        return report(ctx, name, version, "current", None, resumed, waited);
    }
    let waited = wait_for_daemons(ctx, name, version).await;
    report(ctx, name, version, "pending", activates_at, resumed, waited)
}

/// The database password's roles: the URL's user and `<user>_alt`.
fn database_roles(ctx: &Context) -> Result<(String, String), Failure> {
    let url = ctx.database_url()?;
    let base = url.user().strip_suffix("_alt").unwrap_or(url.user()).to_owned();
    Ok((base.clone(), format!("{base}_alt")))
}

/// The role a new database password goes to: the one the current version does not use.
fn alternate_user(ctx: &Context, e: &Entry) -> Result<String, Failure> {
    let (base, alt) = database_roles(ctx)?;
    let current = e.stage(Stage::Current).and_then(|v| v.user.clone()).unwrap_or_else(|| base.clone());
    Ok(if current == alt { base } else { alt })
}

/// The applied kind's steps after `create`: set the pending password on its
/// role (as the current credentials, from a SCRAM verifier computed here),
/// test a fresh connection with it, then promote it. A failed step leaves
/// `current` untouched: `rotate` again retries, `--abort` drops the pending.
async fn apply_database_password(
    ctx: &Context,
    fs: &FileSecrets,
    doc: &mut Document,
    name: &str,
    version: u32,
) -> Result<(), Failure> {
    use atelier_domain::store::{Db, roles};
    let timeout = ctx.config.settings.database.connect_timeout;
    let pending = doc.secrets[name].stage(Stage::Pending).cloned().expect("a pending version");
    let user = pending.user.clone().ok_or_else(|| Failure::new(Code::Failure, "the pending version names no role"))?;
    let password = fs.decrypt(name, &pending)?;
    let stopped = |step: &str, e: String| {
        Failure::new(
            Code::Failure,
            format!(
                "{name} v{version} was not promoted: {step} failed: {e}. current is untouched: `secrets rotate {name}` retries, `secrets rotate {name} --abort` drops v{version}"
            ),
        )
    };
    let current = ctx.database_url()?;
    let verifier = secrets::scram_verifier(&password);
    let applied = async {
        let db = Db::new(current.clone(), 1, timeout)?;
        let mut conn = db.conn().await?;
        roles::set_password_verifier(&mut conn, &user, &verifier).await
    }
    .await;
    applied
        .map_err(|e| stopped(&format!("setting the password of role {user} (as {})", current.user()), e.to_string()))?;
    doc.record(Utc::now(), &actor(), name, Some(version), "apply");
    let candidate = current.with_credentials(&user, password);
    let tested = async { Db::new(candidate, 1, timeout)?.ping().await }.await;
    tested.map_err(|e| stopped(&format!("a new connection as {user}"), e.to_string()))?;
    doc.record(Utc::now(), &actor(), name, Some(version), "test");
    let a = rules::promote(doc.secrets.get_mut(name).expect("checked"), Utc::now());
    doc.record(a.at, &actor(), name, Some(a.version), "promote");
    fs.write(doc)?;
    Ok(())
}

/// The daemons (secrets.daemons) that have not loaded `version` of `name` within secrets.daemon_wait.
async fn wait_for_daemons(ctx: &Context, name: &str, version: u32) -> Vec<(String, String)> {
    let s = &ctx.config.settings.secrets;
    if s.daemons.is_empty() {
        return Vec::new();
    }
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => return s.daemons.iter().map(|d| (d.clone(), e.to_string())).collect(),
    };
    let spinner = ctx.out.spinner(&format!("waiting for {} daemon(s) to load {name} v{version}", s.daemons.len()));
    let deadline = tokio::time::Instant::now() + s.daemon_wait;
    let mut waiting: Vec<(String, String)> =
        s.daemons.iter().map(|d| (d.clone(), "not asked yet".to_owned())).collect();
    loop {
        let mut still = Vec::new();
        for (url, _) in waiting {
            let why = match client.get(format!("{}/ready", url.trim_end_matches('/'))).send().await {
                Ok(r) => match r.json::<Value>().await {
                    Ok(body) => {
                        let loaded = body["secrets"].as_array().into_iter().flatten().any(|l| {
                            l["secret"] == name
                                && l["accepted"].as_array().is_some_and(|a| a.iter().any(|v| v == version))
                        });
                        if loaded { None } else { Some(format!("has not loaded v{version} yet")) }
                    }
                    Err(_) => Some("its /ready is not JSON".to_owned()),
                },
                Err(e) => Some(format!("unreachable: {}", e.without_url())),
            };
            if let Some(why) = why {
                still.push((url, why));
            }
        }
        waiting = still;
        if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    spinner.finish_and_clear();
    waiting
}

fn report(
    ctx: &Context,
    name: &str,
    version: u32,
    stage: &str,
    activates_at: Option<DateTime<Utc>>,
    resumed: bool,
    not_loaded: Vec<(String, String)>,
) -> Result<Code, Failure> {
    let loaded_by_all = not_loaded.is_empty();
    let missing: Vec<Value> = not_loaded.iter().map(|(u, why)| json!({"url": u, "reason": why})).collect();
    let out = json!({"success": loaded_by_all, "data": {"name": name, "version": version, "stage": stage, "activates_at": activates_at,
                     "resumed": resumed, "daemons_not_loaded": missing}});
    ctx.out.emit(&out, || {
        let mut s = format!("{name} v{version} is {stage}{}", if resumed { " (resumed)" } else { "" });
        if let Some(t) = activates_at {
            s.push_str(&format!(": accepted now, signs from {}", t.format("%Y-%m-%d %H:%M:%SZ")));
        }
        s.push('\n');
        for (u, why) in &not_loaded {
            s.push_str(&format!("daemon {u} {why}\n"));
        }
        s
    });
    if loaded_by_all {
        Ok(Code::Ok)
    } else {
        crate::output::stderr(&format!(
            "error: {} daemon(s) have not loaded {name} v{version}: run `secrets rotate {name}` again to wait once more",
            not_loaded.len()
        ));
        Ok(Code::CheckFailed)
    }
}

async fn finish(ctx: &Context, name: &str, force: bool) -> Result<Code, Failure> {
    check_name(name)?;
    let fs = file(ctx)?;
    let mut doc = load_for_change(&fs)?;
    let e = entry(&doc, &fs, name)?;
    let version = match rules::finish_allowed(e, Utc::now(), overlap(ctx, e.kind)) {
        Ok(v) => v,
        Err(FinishRefused::TooEarly(_)) if force => {
            ctx.confirm_destructive(&format!("Drop the previous version of {name} now (its tokens stop working)"))?;
            e.stage(Stage::Previous).map(|v| v.version).unwrap_or(0)
        }
        Err(refused) => return Err(Failure::new(Code::Failure, format!("cannot finish '{name}': {refused}"))),
    };
    ctx.confirm(&format!("Finish the rotation of secret {name}"))?;
    if e.kind == Kind::PostgresPassword {
        // The old role's password stops working (connected with the current credentials).
        let (base, _) = database_roles(ctx)?;
        let role = |v: Option<&Version>| v.map(|v| v.user.clone().unwrap_or_else(|| base.clone()));
        let (old, current) = (role(e.stage(Stage::Previous)), role(e.stage(Stage::Current)));
        if let Some(old) = old.filter(|o| Some(o) != current.as_ref()) {
            let db =
                atelier_domain::store::Db::new(ctx.database_url()?, 1, ctx.config.settings.database.connect_timeout)?;
            let mut conn = db.conn().await?;
            atelier_domain::store::roles::clear_password(&mut conn, &old).await?;
        }
    }
    doc.secrets.get_mut(name).expect("checked").versions.retain(|v| v.stage != Stage::Previous);
    doc.record(Utc::now(), &actor(), name, Some(version), if force { "finish --force" } else { "finish" });
    fs.write(&doc)?;
    let out = json!({"success": true, "data": {"name": name, "dropped": version}});
    ctx.out.emit(&out, || format!("{name}: previous v{version} dropped"));
    Ok(Code::Ok)
}

fn history(ctx: &Context, name: &str) -> Result<Code, Failure> {
    check_name(name)?;
    let fs = file(ctx)?;
    let doc = fs.read()?;
    let rows: Vec<_> = doc.audit.iter().filter(|a| a.secret == name || a.secret == "*").collect();
    let out = json!({"success": true, "data": rows, "count": rows.len()});
    ctx.out.emit(&out, || {
        rows.iter()
            .map(|a| {
                format!(
                    "{}  {:<16} {:<14} {}\n",
                    a.at.format("%Y-%m-%d %H:%M:%SZ"),
                    a.actor,
                    a.step,
                    a.version.map(|v| format!("v{v}")).unwrap_or_default()
                )
            })
            .collect()
    });
    Ok(Code::Ok)
}

/// For `atelier check`: the secrets overdue for rotation, by name (file backend only).
pub fn overdue(ctx: &Context) -> Result<Vec<String>, atelier_domain::secrets::SecretError> {
    if ctx.config.settings.secrets.backend != SecretBackendKind::File {
        return Ok(Vec::new());
    }
    let fs = FileSecrets::new(&ctx.config);
    if !fs.exists() {
        return Ok(Vec::new());
    }
    let doc = fs.read()?;
    let now = Utc::now();
    Ok(doc
        .secrets
        .keys()
        .filter_map(|n| fs.entry(&doc, n).map(|e| (n, e)))
        .filter(|(_, e)| rules::overdue(e, max_age(ctx, e.kind), now))
        .map(|(n, _)| n.clone())
        .collect())
}

/// For `atelier status`: each secret of the file store with its kind, current
/// version, when it was last rotated and when it is due (no value).
pub fn rotation(ctx: &Context) -> Result<Vec<Value>, atelier_domain::secrets::SecretError> {
    let fs = FileSecrets::new(&ctx.config);
    let doc = fs.read()?;
    let now = Utc::now();
    Ok(doc
        .secrets
        .keys()
        .filter_map(|n| fs.entry(&doc, n).map(|e| (n, e)))
        .map(|(name, e)| {
            let age = max_age(ctx, e.kind);
            let current = e.stage(Stage::Current);
            json!({"name": name, "kind": e.kind.name(),
                   "current_version": current.map(|v| v.version),
                   "pending": e.stage(Stage::Pending).is_some(),
                   "last_rotated": current.map(|v| v.current_since.unwrap_or(v.created_at)),
                   "due_at": rules::due_at(&e, age), "overdue": rules::overdue(&e, age, now)})
        })
        .collect())
}
