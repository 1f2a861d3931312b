//! atelierd as a library: the binary only parses arguments and calls
//! [`app::run`]; tests start the same [`app::App`] on port 0 with their own
//! database and broker namespace.
//!
//! - [`app`]: wiring, roles (HTTP, events), start and graceful stop;
//! - [`events`]: event processing: relay, consumers, handlers;
//! - [`http`]: the axum facade: `/health`, `/ready`, `/version`, `/api/v1`;
//! - [`metrics`]: counters and histograms served at `/metrics`;
//! - [`telemetry`]: tracing (pretty or JSON) and Sentry.

pub mod app;
pub mod events;
pub mod http;
pub mod metrics;
pub mod telemetry;
