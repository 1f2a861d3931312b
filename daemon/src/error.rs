//! [`AppError`]: why atelierd could not start or stopped, and the exit code
//! each reason maps to (3 configuration, 4 a dependency unreachable at start,
//! 1 failed while running). Event processing's own failures
//! (`events::EventsError`) end a broker session, not the daemon.

use atelier_domain::secrets::SecretError;
use atelier_domain::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The HTTP server failed while serving.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// A part (HTTP, events) returned while the daemon was running.
    #[error("a part of atelierd stopped unexpectedly")]
    PartStopped,
    /// A part panicked (or was cancelled).
    #[error("{0}")]
    PartPanicked(tokio::task::JoinError),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Secret(_) => 3,
            AppError::Store(e) if e.is_transient() => 4,
            AppError::Bind { .. } => 4,
            _ => 1,
        }
    }
}
