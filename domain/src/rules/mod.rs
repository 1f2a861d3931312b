//! The business rules of DOMAIN.md as pure code: no database, no broker, no
//! clock (callers pass `now`). Each rule lives in exactly one place here; the
//! store and the daemon call these functions instead of restating them.

pub mod costing;
pub mod deployment;
pub mod intent;
pub mod limits;
pub mod lockout;
pub mod migration_integrity;
pub mod migration_lint;
pub mod migration_locks;
pub mod money;
pub mod notifications;
pub mod permissions;
pub mod pricing;
pub mod production;
pub mod release;
pub mod sale;
pub mod secrets;
pub mod templates;
pub mod webhook;
