//! atelierd as a library: the binary only parses arguments and calls
//! [`app::run`]; tests start the same [`app::App`] on port 0 with their own
//! database and broker namespace.
//!
//! - [`app`]: start (in order) and graceful stop of the roles it runs;
//! - [`state`]: what the parts share ([`state::Shared`]) and [`state::Roles`];
//! - [`error`]: [`error::AppError`], why atelierd failed, and its exit code;
//! - [`keys`]: the API's token signing keys, loaded from `auth.jwt_secret`;
//! - [`events`]: event processing: relay, consumers, handlers, dead letters;
//! - [`hashing`]: the password hashing pool (its own threads, bounded, lower priority);
//! - [`http`]: the axum facade: `/health`, `/ready`, `/version`, `/metrics`, `/api/v1`;
//! - [`metrics`]: counters and histograms served at `/metrics`;
//! - [`telemetry`]: tracing (pretty or JSON) and Sentry;
//! - [`version`]: the release version stamped in the binary, the slot, test faults.
//!
//! `events` and `http` never import each other: both depend on `state`,
//! `error`, `keys` and `metrics` only, and `app` starts them.

pub mod app;
pub mod error;
pub mod events;
pub mod hashing;
pub mod heartbeat;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod state;
pub mod telemetry;
pub mod version;
