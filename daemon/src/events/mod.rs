//! Event processing (the `events` role): the outbox relay, one consumer per
//! handler with delayed retries and dead-lettering, and the handlers that
//! react to the business's events.
//!
//! Being built (issue 3): today [`run`] only waits for shutdown.

pub mod handler;
pub mod handlers;

use crate::app::{AppError, Shared};
use std::sync::Arc;

/// Runs event processing until the daemon's shutdown token fires.
pub async fn run(shared: Arc<Shared>) -> Result<(), AppError> {
    shared.shutdown.cancelled().await;
    Ok(())
}
