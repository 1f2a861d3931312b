//! Live reload of the token keys from the encrypted secrets file: a real
//! `atelierd` process (HTTP role) rereads the file on SIGHUP and every
//! `secrets.reload_interval`; a JWT key rotation logs nobody out until
//! `finish`; `/ready` and `/metrics` show the loaded versions; no log line at
//! debug level carries a key, in any encoding.

mod common;

use atelier_domain::auth;
use atelier_domain::config;
use atelier_domain::rules::permissions::Role;
use atelier_domain::secrets::document::{Document, Entry, Kind, Stage, Version};
use atelier_domain::secrets::{self, FileSecrets, SecretValue};
use atelier_domain::store::tenancy;
use atelier_domain::testing::{TestDb, business, eventually};
use base64::Engine;
use chrono::Utc;
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// A temporary directory, removed on drop (even when the test fails).
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("atelier-secrets-{tag}-{}-{}", std::process::id(), rand_tag()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn rand_tag() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

/// An `atelierd --role http` child, killed on drop; its stderr lines collected.
struct Daemon {
    child: std::process::Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(vars: &[(String, String)]) -> Daemon {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atelierd"))
            .args(["--env", "test", "--role", "http"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("RUST_LOG")
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("atelierd starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(doc) = serde_json::from_str::<Value>(&line)
                    && doc["message"] == "serving HTTP"
                    && let Some(addr) = doc["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr =
            rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("atelierd serves HTTP: {:#?}", lines.lock().unwrap()));
        Daemon { child, base: format!("http://{addr}"), lines }
    }

    fn hangup(&self) {
        let sent = std::process::Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }

    async fn loaded(&self) -> (Option<u64>, Vec<u64>) {
        let body: Value = reqwest::get(format!("{}/ready", self.base)).await.unwrap().json().await.unwrap();
        let s = body["secrets"].as_array().and_then(|a| a.first()).cloned().unwrap_or_default();
        let accepted =
            s["accepted"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
        (s["current"].as_u64(), accepted)
    }

    async fn wait_loaded(&self, current: u64, accepted: &[u64]) {
        let what = format!("atelierd loads current {current}, accepted {accepted:?}");
        eventually(WAIT, &what, || async { self.loaded().await == (Some(current), accepted.to_vec()) }).await;
    }

    async fn login(&self, email: &str) -> String {
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&serde_json::json!({"email": email, "password": "pw-of-the-keys-test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["data"]["token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, token: &str) -> u16 {
        let res =
            reqwest::Client::new().get(format!("{}/api/v1/me", self.base)).bearer_auth(token).send().await.unwrap();
        res.status().as_u16()
    }
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The test's secrets file and the values written to it (for the leak scan).
struct Store {
    fs: FileSecrets,
    values: Vec<SecretValue>,
}

impl Store {
    fn version(&mut self, version: u32, stage: Stage, activates_at: Option<chrono::DateTime<Utc>>) -> Version {
        let value = secrets::generate(Kind::JwtKeys, version);
        let encrypted = self.fs.encrypt(&value).unwrap();
        self.values.push(value);
        Version {
            version,
            stage,
            created_at: Utc::now(),
            activates_at,
            current_since: None,
            retired_at: None,
            user: None,
            value: encrypted,
        }
    }

    fn change(&self, f: impl FnOnce(&mut Entry)) {
        let mut doc = self.fs.read().unwrap();
        let entry = doc.secrets.get_mut("jwt_signing_key").unwrap();
        // As the CLI does before any change: write down an activation whose time has come.
        atelier_domain::rules::secrets::activate_due(entry, Utc::now());
        f(entry);
        self.fs.write(&doc).unwrap();
    }

    /// Every form a value could leak in: itself, its key's base64 and hex.
    fn needles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.values {
            let (_, b64) = v.expose().split_once(':').unwrap();
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            out.extend([
                v.expose().to_owned(),
                b64.to_owned(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
                hex::encode(&bytes),
            ]);
        }
        out
    }
}

async fn setup(tag: &str, reload_interval: &str) -> (TestDb, TempDir, Store, Vec<(String, String)>, String) {
    let db = TestDb::new().await;
    let tenant = business(db.db(), tag).await;
    let email = format!("keys.{}@example.com", tenant.business_id);
    let hash = auth::hash_password("pw-of-the-keys-test").unwrap();
    let mut conn = db.db().conn().await.unwrap();
    tenancy::create_user(
        &mut conn,
        tenant,
        tenancy::NewUser { email: &email, name: "Keys", password_hash: &hash, role: Role::Admin, location_id: None },
    )
    .await
    .unwrap();
    let dir = TempDir::new(tag);
    let (identity, recipient) = secrets::file::generate_identity();
    let identity_file = dir.0.join("identity.txt");
    std::fs::write(&identity_file, format!("# test identity\n{}\n", identity.expose())).unwrap();
    let vars: Vec<(String, String)> = [
        ("ATELIER__DATABASE__URL", format!("{:?}", db.url())),
        ("ATELIER__SECRETS__BACKEND", "file".into()),
        ("ATELIER__SECRETS__FILE", dir.0.join("test.secrets.json").display().to_string()),
        ("ATELIER__SECRETS__RECIPIENTS", recipient),
        ("ATELIER__SECRETS__RELOAD_INTERVAL", reload_interval.into()),
        ("ATELIER__HTTP__BIND", "127.0.0.1:0".into()),
        ("ATELIER__LOG__FORMAT", "json".into()),
        ("ATELIER__LOG__LEVEL", "debug".into()),
        ("ATELIER_SECRETS_IDENTITY_FILE", identity_file.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let overrides: Vec<(String, String)> = vars.iter().filter(|(k, _)| k.starts_with("ATELIER__")).cloned().collect();
    let resolved = config::load_with(&common::environments(), "test", &overrides).unwrap();
    let mut store = Store { fs: FileSecrets::new(&resolved), values: Vec::new() };
    let mut doc: Document = store.fs.new_document().unwrap();
    let v1 = store.version(1, Stage::Current, None);
    doc.secrets.insert("jwt_signing_key".into(), Entry { kind: Kind::JwtKeys, versions: vec![v1] });
    store.fs.write(&doc).unwrap();
    (db, dir, store, vars, email)
}

#[tokio::test]
async fn a_token_key_rotation_reloads_on_sighup_and_logs_nobody_out_until_finish() {
    let (_db, _dir, mut store, vars, email) = setup("keys-hup", "1h").await;
    let daemon = Daemon::start(&vars);
    daemon.wait_loaded(1, &[1]).await;
    let before = daemon.login(&email).await;
    assert_eq!(daemon.me(&before).await, 200);

    // rotate: v2 pending, accepted at once, not signing yet.
    let pending = store.version(2, Stage::Pending, Some(Utc::now() + chrono::Duration::hours(1)));
    store.change(|e| e.versions.push(pending));
    daemon.hangup();
    daemon.wait_loaded(1, &[1, 2]).await;
    assert_eq!(kid(&daemon.login(&email).await), kid(&before), "a pending key does not sign");
    assert_eq!(daemon.me(&before).await, 200);

    // The activation delay has passed: v2 signs, v1 (previous) is still accepted.
    store.change(|e| {
        e.stage_mut(Stage::Pending).unwrap().activates_at = Some(Utc::now() - chrono::Duration::seconds(1))
    });
    daemon.hangup();
    daemon.wait_loaded(2, &[2, 1]).await;
    let after = daemon.login(&email).await;
    assert!(kid(&after).starts_with("k2-"), "signed by the new key: {}", kid(&after));
    assert_eq!(daemon.me(&before).await, 200, "a token of the previous key still works");
    assert_eq!(daemon.me(&after).await, 200);
    let metrics = reqwest::get(format!("{}/metrics", daemon.base)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"atelier_secret_version{secret="jwt_signing_key",stage="current",version="2"} 1"#),
        "{metrics}"
    );

    // finish: the previous key is dropped; its tokens are refused.
    store.change(|e| e.versions.retain(|v| v.stage != Stage::Previous));
    daemon.hangup();
    daemon.wait_loaded(2, &[2]).await;
    assert_eq!(daemon.me(&before).await, 401);
    assert_eq!(daemon.me(&after).await, 200);

    // A file that cannot be read keeps the keys in use.
    std::fs::write(store.fs.path(), "{ not json").unwrap();
    daemon.hangup();
    let what = "atelierd says it keeps the keys in use";
    eventually(WAIT, what, || async {
        daemon.lines.lock().unwrap().iter().any(|l| l.contains("cannot reload the token keys"))
    })
    .await;
    assert_eq!(daemon.me(&after).await, 200);
    assert_eq!(daemon.loaded().await, (Some(2), vec![2]));

    // No log line (debug level), /ready or /metrics output carries a key.
    let ready = reqwest::get(format!("{}/ready", daemon.base)).await.unwrap().text().await.unwrap();
    let lines = daemon.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("token keys reloaded")), "{lines:#?}");
    for needle in store.needles() {
        for line in lines.iter().chain([&ready, &metrics]) {
            assert!(!line.contains(&needle), "a key leaked: {line}");
        }
    }
}

#[tokio::test]
async fn atelierd_rereads_the_secrets_every_reload_interval() {
    let (_db, _dir, mut store, vars, _) = setup("keys-interval", "200ms").await;
    let daemon = Daemon::start(&vars);
    daemon.wait_loaded(1, &[1]).await;
    let pending = store.version(2, Stage::Pending, Some(Utc::now() + chrono::Duration::hours(1)));
    store.change(|e| e.versions.push(pending));
    // No signal: the interval alone brings the new version in.
    daemon.wait_loaded(1, &[1, 2]).await;
}
