//! Holding the deploy lease for one command: take it (or be refused naming
//! who holds it and since when; take over an expired one, saying so),
//! heartbeat it in the background, release it at the end.

use crate::exit::{Code, Failure};
use atelier_domain::config::DeploySettings;
use atelier_domain::store::Db;
use atelier_domain::store::deploy::{self, Acquire, Lease, Owner};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// This process as a lease owner running `command`.
pub fn owner(command: &str) -> Owner {
    let user = std::env::var("ATELIER_ACTOR")
        .ok()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    Owner { user, host, pid: i64::from(std::process::id()), command: command.to_owned() }
}

/// The refusal when another command holds the lease.
pub fn held_by(lease: &Lease) -> Failure {
    Failure::new(
        Code::Busy,
        format!(
            "the deploy lock is held by {}; wait for it, or `atelier lock status` to see it (`atelier lock release` once you know its holder is gone)",
            lease.describe()
        ),
    )
}

/// The lease, held by this process until [`Held::release`].
pub struct Held {
    pub token: Uuid,
    pub owner: Owner,
    /// The expired lease this one took over, if any.
    pub took_over: Option<Lease>,
    lost: Arc<AtomicBool>,
    beat: tokio::task::JoinHandle<()>,
    db: Db,
}

impl Held {
    /// Takes the lease for `command`, heartbeating every `deploy.heartbeat`.
    pub async fn take(db: &Db, command: &str, settings: &DeploySettings) -> Result<Held, Failure> {
        let owner = owner(command);
        let mut conn = db.conn().await?;
        let (lease, took_over) = match deploy::acquire(&mut conn, &owner, None, settings.lease_ttl).await? {
            Acquire::Held(lease) => return Err(held_by(&lease)),
            Acquire::Acquired { lease, took_over } => (lease, took_over),
        };
        drop(conn);
        let lost = Arc::new(AtomicBool::new(false));
        let beat = {
            let (db, lost, token) = (db.clone(), lost.clone(), lease.token);
            let (every, ttl) = (settings.heartbeat, settings.lease_ttl);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let beat = match db.conn().await {
                        Ok(mut conn) => deploy::heartbeat(&mut conn, token, ttl).await,
                        Err(e) => Err(e),
                    };
                    match beat {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // The database is away for a moment: try again at the next beat.
                        Err(e) => tracing::warn!(error = %e, "deploy lease heartbeat failed"),
                    }
                }
            })
        };
        Ok(Held { token: lease.token, owner, took_over, lost, beat, db: db.clone() })
    }

    /// Takes the lease for `command` where the database has its table (a
    /// database not yet migrated to it has nothing to lock against), trying
    /// again each second for up to `wait` while another command holds it.
    pub async fn take_if_ready(
        ctx: &crate::context::Context,
        command: &str,
        wait: std::time::Duration,
    ) -> Result<Option<Held>, Failure> {
        let db = Db::new(ctx.database_url()?, 2, ctx.config.settings.database.connect_timeout)?;
        let mut conn = db.conn().await?;
        if !deploy::lease_table_exists(&mut conn).await? {
            return Ok(None);
        }
        drop(conn);
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Held::take(&db, command, &ctx.config.settings.deploy).await {
                Err(f) if f.code == Code::Busy && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                other => return other.map(Some),
            }
        }
    }

    /// Whether another command took the lease over (this one stopped heartbeating too long).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// What the journal's lock step says.
    pub fn describe(&self) -> String {
        match &self.took_over {
            Some(old) => format!("took over the expired lease of {}", old.describe()),
            None => format!("held by {}@{} (pid {})", self.owner.user, self.owner.host, self.owner.pid),
        }
    }

    /// Stops heartbeating and releases the lease (audited).
    pub async fn release(self) {
        self.beat.abort();
        if let Ok(mut conn) = self.db.conn().await {
            let _ = deploy::release(&mut conn, self.token, &self.owner).await;
        }
    }
}
