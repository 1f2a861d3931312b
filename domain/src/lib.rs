//! atelier-domain: everything Atelier knows about the studio business and its
//! own operation, shared by `atelierd` and `atelier`.
//!
//! - [`rules`]: the business rules of DOMAIN.md as pure functions (no I/O);
//! - [`events`]: event names, versioned payloads and the envelope;
//! - [`store`]: PostgreSQL (diesel-async): migrations, business actions in
//!   transactions, the outbox;
//! - [`bus`]: RabbitMQ: topology, connection, confirmed publishing, headers;
//! - [`config`] and [`secrets`]: environments and the secrets they name.

pub mod auth;
pub mod bus;
pub mod config;
pub mod events;
pub mod fuzzing;
pub mod rules;
pub mod secrets;
pub mod store;

#[cfg(feature = "testing")]
pub mod testing;
