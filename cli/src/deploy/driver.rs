//! Drivers: how a slot is started, stopped, reached and switched.
//! - `process`: `<releases>/<V>/atelierd` on this host, one port per slot,
//!   a pid file and a log per slot in `run_dir`, behind an nginx this driver
//!   runs with its own prefix (`<run_dir>/nginx`), switched by rewriting the
//!   upstream file and `nginx -s reload` (graceful: requests in flight finish
//!   on the old workers).
//! - `command`: shell templates from `[deploy.command]` with `{slot}`,
//!   `{version}` and `{port}` placeholders (systemd, kubectl, a load
//!   balancer's CLI). Untested here (README, "Deploying").

use atelier_domain::config::{DeployDriverKind, DeploySettings, Resolved};
use atelier_domain::rules::deployment::Slot;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub enum Driver {
    Process(Process),
    Command(Templates),
}

impl Driver {
    pub fn new(config: &Resolved) -> Driver {
        let s = &config.settings.deploy;
        match s.driver {
            DeployDriverKind::Process => Driver::Process(Process {
                settings: s.clone(),
                env: config.env.clone(),
                config_dir: std::fs::canonicalize(&config.dir).unwrap_or_else(|_| config.dir.clone()),
            }),
            DeployDriverKind::Command => Driver::Command(Templates { settings: s.clone() }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Driver::Process(_) => "process",
            Driver::Command(_) => "command",
        }
    }

    fn port(&self, slot: Slot) -> u16 {
        let s = match self {
            Driver::Process(p) => &p.settings,
            Driver::Command(c) => &c.settings,
        };
        match slot {
            Slot::Blue => s.blue_port,
            Slot::Green => s.green_port,
        }
    }

    /// Whether release `version` can be started (process: its binary is installed).
    pub fn installed(&self, version: &str) -> Result<(), String> {
        match self {
            Driver::Process(p) => {
                let bin = p.binary(version);
                if bin.is_file() {
                    Ok(())
                } else {
                    Err(format!(
                        "release {version} is not installed: {} is missing (`deploy --artifact PATH` installs it)",
                        bin.display()
                    ))
                }
            }
            Driver::Command(_) => Ok(()),
        }
    }

    /// Starts `slot` at `version` (stopping whatever ran there first).
    pub async fn start(&self, slot: Slot, version: &str) -> Result<String, String> {
        match self {
            Driver::Process(p) => p.start(slot, version, self.port(slot)).await,
            Driver::Command(c) => c.run("start", &c.settings.command.start, slot, version, self.port(slot)),
        }
    }

    /// Stops `slot`: SIGTERM (atelierd finishes its requests and deliveries in
    /// flight), then SIGKILL after `within`.
    pub async fn stop(&self, slot: Slot, within: Duration) -> Result<String, String> {
        match self {
            Driver::Process(p) => p.stop(slot, within).await,
            Driver::Command(c) => c.run("stop", &c.settings.command.stop, slot, "", self.port(slot)),
        }
    }

    /// The slot's own base URL (for /ready, /version, /metrics).
    pub fn slot_url(&self, slot: Slot, version: &str) -> String {
        match self {
            Driver::Process(_) => format!("http://127.0.0.1:{}", self.port(slot)),
            Driver::Command(c) => c.fill(&c.settings.command.ready_url, slot, version, self.port(slot)),
        }
    }

    /// Points traffic at `slot`.
    pub async fn switch(&self, slot: Slot) -> Result<String, String> {
        match self {
            Driver::Process(p) => p.switch(slot, self.port(slot)).await,
            Driver::Command(c) => c.run("switch", &c.settings.command.switch, slot, "", self.port(slot)),
        }
    }

    /// Where traffic really points, when the driver can tell.
    pub fn live(&self) -> Option<Slot> {
        match self {
            Driver::Process(p) => p.live(),
            Driver::Command(_) => None,
        }
    }

    /// Whether `slot` really runs, when the driver can tell.
    pub fn running(&self, slot: Slot) -> Option<bool> {
        match self {
            Driver::Process(p) => Some(p.pid(slot).is_some()),
            Driver::Command(_) => None,
        }
    }

    /// The address clients use (the proxy), when the driver knows it.
    pub fn proxy_url(&self) -> Option<String> {
        match self {
            Driver::Process(p) => Some(format!("http://{}", p.settings.proxy_listen)),
            Driver::Command(_) => None,
        }
    }

    /// Deletes installed releases not in `keep` (process driver).
    pub fn prune_releases(&self, keep: &[String]) -> Vec<String> {
        let Driver::Process(p) = self else { return Vec::new() };
        let Ok(dir) = std::fs::read_dir(&p.settings.releases) else { return Vec::new() };
        let mut removed = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !keep.contains(&name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed.push(name);
            }
        }
        removed
    }
}

/// Installs `artifact` as release `version` under `releases`, stamped with
/// the version (so its `/version` says it).
pub fn install(releases: &Path, version: &str, artifact: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes =
        std::fs::read(artifact).map_err(|e| format!("cannot read the artifact {}: {e}", artifact.display()))?;
    atelier_domain::rules::release::stamp(&mut bytes, version).map_err(|e| format!("{}: {e}", artifact.display()))?;
    let dir = releases.join(version);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(".atelierd.installing");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", tmp.display()))?;
    let bin = dir.join("atelierd");
    std::fs::rename(&tmp, &bin).map_err(|e| format!("cannot install {}: {e}", bin.display()))?;
    Ok(bin)
}

pub struct Process {
    settings: DeploySettings,
    env: String,
    config_dir: PathBuf,
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(Stdio::null()).status();
}

impl Process {
    pub fn binary(&self, version: &str) -> PathBuf {
        self.settings.releases.join(version).join("atelierd")
    }

    fn pid_file(&self, slot: Slot) -> PathBuf {
        self.settings.run_dir.join(format!("{}.pid", slot.as_str()))
    }

    fn nginx_dir(&self) -> PathBuf {
        self.settings.run_dir.join("nginx")
    }

    /// The live pid of `slot`'s atelierd, from its pid file.
    pub fn pid(&self, slot: Slot) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(slot)).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    async fn start(&self, slot: Slot, version: &str, port: u16) -> Result<String, String> {
        let bin = self.binary(version);
        if !bin.is_file() {
            return Err(format!("release {version} is not installed: {} is missing", bin.display()));
        }
        if self.pid(slot).is_some() {
            self.stop(slot, self.settings.drain_timeout).await?;
        }
        std::fs::create_dir_all(&self.settings.run_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.settings.run_dir.display()))?;
        let log_path = self.settings.run_dir.join(format!("{}.log", slot.as_str()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.env("ATELIER_ENV", &self.env)
            .env("ATELIER_CONFIG_DIR", &self.config_dir)
            .env("ATELIER_SLOT", slot.as_str())
            .env("ATELIER__HTTP__BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // The release's own variables (`<releases>/<V>/env`, KEY=VALUE lines).
        if let Ok(text) = std::fs::read_to_string(self.settings.releases.join(version).join("env")) {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                if let Some((k, v)) = line.split_once('=') {
                    cmd.env(k.trim(), v.trim());
                }
            }
        }
        // Its own process group: a signal to this command's group (Ctrl-C) does not reach it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        std::fs::write(self.pid_file(slot), format!("{pid}\n"))
            .map_err(|e| format!("cannot write the pid file: {e}"))?;
        Ok(format!("{} (pid {pid}) on 127.0.0.1:{port}, log {}", bin.display(), log_path.display()))
    }

    async fn stop(&self, slot: Slot, within: Duration) -> Result<String, String> {
        let Some(pid) = self.pid(slot) else {
            let _ = std::fs::remove_file(self.pid_file(slot));
            return Ok(format!("{} was not running", slot.as_str()));
        };
        signal(pid, "-TERM");
        let deadline = Instant::now() + within;
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let how = if alive(pid) {
            signal(pid, "-KILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            format!("pid {pid} killed after {within:?} (it did not finish its work in time)")
        } else {
            format!("pid {pid} finished its work and stopped")
        };
        let _ = std::fs::remove_file(self.pid_file(slot));
        Ok(how)
    }

    fn nginx(&self, extra: &[&str]) -> Result<(), String> {
        let dir = self.nginx_dir();
        let out = Command::new(&self.settings.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!("cannot run {} ({e}): install Debian's nginx-light or set deploy.nginx", self.settings.nginx)
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("nginx {}: {}", extra.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    fn nginx_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.nginx_dir().join("nginx.pid")).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    fn nginx_conf(&self) -> String {
        let dir = self.nginx_dir();
        let d = dir.display();
        format!(
            "# Written by `atelier deploy` (process driver); the upstream is {d}/upstream.conf.\n\
daemon on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 2048; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
  upstream atelierd {{\n    include {d}/upstream.conf;\n    keepalive 32;\n  }}\n\
  server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://atelierd;\n\
      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_read_timeout 60s;\n    }}\n  }}\n}}\n",
            listen = self.settings.proxy_listen
        )
    }

    async fn switch(&self, slot: Slot, port: u16) -> Result<String, String> {
        let dir = self.nginx_dir();
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("nginx.conf"), self.nginx_conf()).map_err(|e| format!("nginx.conf: {e}"))?;
        let upstream = dir.join("upstream.conf");
        let tmp = dir.join("upstream.conf.new");
        std::fs::write(&tmp, format!("# slot {}\nserver 127.0.0.1:{port};\n", slot.as_str()))
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &upstream).map_err(|e| format!("cannot write {}: {e}", upstream.display()))?;
        let how = if self.nginx_pid().is_some() {
            self.nginx(&["-s", "reload"])?;
            "nginx reloaded gracefully"
        } else {
            self.nginx(&[])?;
            "nginx started"
        };
        // The reload is asynchronous: done when the proxy answers from the new slot.
        let url = format!("http://{}/version", self.settings.proxy_listen);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answered = match client.get(&url).send().await {
                Ok(res) => {
                    res.json::<serde_json::Value>().await.ok().and_then(|v| v["slot"].as_str().map(str::to_owned))
                }
                Err(_) => None,
            };
            if answered.as_deref() == Some(slot.as_str()) {
                return Ok(format!(
                    "{how}: {} answers from {} (127.0.0.1:{port})",
                    self.settings.proxy_listen,
                    slot.as_str()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{how}, but {} did not answer from {} within 30s (last: {})",
                    self.settings.proxy_listen,
                    slot.as_str(),
                    answered.unwrap_or_else(|| "no answer".into())
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn live(&self) -> Option<Slot> {
        let text = std::fs::read_to_string(self.nginx_dir().join("upstream.conf")).ok()?;
        let port: u16 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))?
            .trim_end_matches(';')
            .parse()
            .ok()?;
        [Slot::Blue, Slot::Green].into_iter().find(|s| {
            port == match s {
                Slot::Blue => self.settings.blue_port,
                Slot::Green => self.settings.green_port,
            }
        })
    }
}

pub struct Templates {
    settings: DeploySettings,
}

impl Templates {
    fn fill(&self, template: &str, slot: Slot, version: &str, port: u16) -> String {
        template.replace("{slot}", slot.as_str()).replace("{version}", version).replace("{port}", &port.to_string())
    }

    fn run(&self, what: &str, template: &str, slot: Slot, version: &str, port: u16) -> Result<String, String> {
        if template.trim().is_empty() {
            return Err(format!("deploy.command.{what} is not set (the command driver needs it)"));
        }
        let line = self.fill(template, slot, version, port);
        let out = Command::new("sh")
            .args(["-c", &line])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run deploy.command.{what}: {e}"))?;
        if out.status.success() {
            Ok(format!("deploy.command.{what} ran"))
        } else {
            let tail: String = String::from_utf8_lossy(&out.stderr)
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(format!("deploy.command.{what} exited {}: {}", out.status, tail.trim()))
        }
    }
}
