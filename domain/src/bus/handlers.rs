//! The registry of this build's standard handlers: each one's name (its queue
//! is `{ns}.q.{name}`) and the event types its queue is bound to. It is the
//! one list: `atelier topology apply/verify` declares from it
//! ([`crate::bus::Topology::standard`]) and each handler of the daemon takes
//! its binding from it (`Handler::binding`), so the two cannot drift.
//!
//! Adding a handler: add its [`HandlerBinding`] here and a line to
//! [`STANDARD`]; then, in the daemon, one file under `events/handlers/`
//! implementing `Handler` with `binding()` returning that constant, its `mod`
//! line, and one line building it in `events::handlers::all`.

use crate::events::EventType;
use crate::rules::notifications::NOTIFIED;

/// A handler's name and the event types its queue is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerBinding {
    pub name: &'static str,
    pub event_types: &'static [EventType],
}

/// Turns a sale into its production order and steps.
pub const PRODUCTION: HandlerBinding = HandlerBinding { name: "production", event_types: &[EventType::SaleCreated] };

/// Books a completed step's labour.
pub const ACCOUNTING: HandlerBinding = HandlerBinding { name: "accounting", event_types: &[EventType::StepCompleted] };

/// Tells the customer about their sale and order.
pub const NOTIFICATIONS: HandlerBinding = HandlerBinding { name: "notifications", event_types: &NOTIFIED };

/// Files a social message received by a webhook.
pub const INBOUND: HandlerBinding =
    HandlerBinding { name: "inbound", event_types: &[EventType::SocialMessageReceived] };

/// The internal end-to-end probe (`system.ping`).
pub const CANARY: HandlerBinding = HandlerBinding { name: "canary", event_types: &[EventType::SystemPing] };

/// Every standard handler, in the order the daemon starts them.
pub const STANDARD: &[HandlerBinding] = &[PRODUCTION, ACCOUNTING, NOTIFICATIONS, INBOUND, CANARY];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = STANDARD.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STANDARD.len());
    }
}
