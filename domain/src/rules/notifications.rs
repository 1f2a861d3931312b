//! Outbound notifications: which events notify the sale's customer, what a
//! notification references (at most one message per event type, reference and
//! recipient), the variables its template may use, which sale channels can
//! carry a message, and what a usable phone number looks like.

use super::money::{Currency, Money};
use super::sale::Channel;
use super::templates::{self, TemplateError, Variables};
use crate::events::{Event, EventType};

/// The events that notify the customer.
pub const NOTIFIED: [EventType; 5] = [
    EventType::SaleCreated,
    EventType::ProductionCreated,
    EventType::ProductionCompleted,
    EventType::PaymentReceived,
    EventType::OrderReady,
];

/// What one event asks to tell the customer of a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_type: EventType,
    /// The business fact the message is about (`sale:42`, `production_order:7`,
    /// `payment:3`): with the event type and the phone, it identifies the
    /// message, so a fact is never announced twice to one recipient.
    pub reference: String,
    /// The sale whose customer is told; `None`: nobody to tell.
    pub sale_id: Option<i64>,
    /// What the event itself provides to the template.
    pub variables: Variables,
}

/// The notice of a notified event; `None` for events that notify nobody.
pub fn notice(event: &Event) -> Option<Notice> {
    let mut v = Variables::new();
    let (reference, sale_id) = match event {
        Event::SaleCreated(d) => {
            v.insert("invoiceNo", d.invoice_no.clone());
            if let Ok(c) = d.currency.parse::<Currency>() {
                v.insert("total", Money::new(d.total_minor, c).to_string());
            }
            (format!("sale:{}", d.sale_id), Some(d.sale_id))
        }
        Event::ProductionCreated(d) => {
            v.insert("orderNo", d.order_no.clone());
            if let Some(i) = &d.invoice_no {
                v.insert("invoiceNo", i.clone());
            }
            (format!("production_order:{}", d.order_id), d.sale_id)
        }
        Event::ProductionCompleted(d) | Event::OrderReady(d) => {
            v.insert("orderNo", d.order_no.clone());
            if let Some(i) = &d.invoice_no {
                v.insert("invoiceNo", i.clone());
            }
            (format!("production_order:{}", d.order_id), d.sale_id)
        }
        Event::PaymentReceived(d) => {
            v.insert("invoiceNo", d.invoice_no.clone());
            if let Ok(c) = d.currency.parse::<Currency>() {
                v.insert("amount", Money::new(d.amount_minor, c).to_string());
            }
            (format!("payment:{}", d.payment_id), Some(d.sale_id))
        }
        Event::StepCompleted(_) | Event::SocialMessageReceived(_) | Event::SystemPing(_) => return None,
    };
    Some(Notice { event_type: event.event_type(), reference, sale_id, variables: v })
}

impl Notice {
    /// Adds what the sale offers every template (its invoice number and
    /// total), without overriding what the event says.
    pub fn with_sale(mut self, invoice_no: &str, total: Money) -> Notice {
        self.variables.entry("invoiceNo").or_insert_with(|| invoice_no.to_owned());
        self.variables.entry("total").or_insert_with(|| total.to_string());
        self
    }

    /// The message text: the business's own template, else the default one.
    /// A variable the template uses and the event lacks is an error.
    pub fn render(&self, business_template: Option<&str>) -> Result<String, TemplateError> {
        let template = business_template
            .or_else(|| templates::default_template(self.event_type.as_str()))
            .ok_or_else(|| TemplateError::NoTemplate(self.event_type.as_str().to_owned()))?;
        templates::render(template, &self.variables)
    }
}

/// The social channels a sale's notifications travel over: the channel the
/// sale came from, when it is a messaging channel. Web, mobile and walk-in
/// sales have no conversation to answer in.
pub fn messaging_channel(sale_channel: Channel) -> Option<&'static str> {
    match sale_channel {
        Channel::Whatsapp | Channel::Facebook | Channel::Instagram | Channel::Telegram => Some(sale_channel.as_str()),
        Channel::Web | Channel::Mobile | Channel::WalkIn => None,
    }
}

/// A phone number as stored on customers: an optional `+` and 5 to 20 digits.
/// Spaces, dashes, dots and parentheses are dropped; anything else makes the
/// number unusable (`None`).
pub fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(r) => ("+", r),
        None => ("", raw),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (5..=20).contains(&digits.len()).then(|| format!("{plus}{digits}"))
}

/// An outbound message's status: `pending` until the provider accepts it,
/// then `sent`, and later `delivered` and `read` as the provider reports;
/// `failed` when the provider refused it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        [Self::Pending, Self::Sent, Self::Delivered, Self::Read, Self::Failed].into_iter().find(|m| m.as_str() == s)
    }

    /// The provider accepted the message: sending it again would duplicate it.
    pub fn was_sent(self) -> bool {
        matches!(self, MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read)
    }

    /// Whether a provider's report moves the status forward (reports arrive
    /// out of order; a late `delivered` never undoes `read`).
    pub fn advances_to(self, next: MessageStatus) -> bool {
        let rank = |s: MessageStatus| match s {
            MessageStatus::Pending => 0,
            MessageStatus::Failed => 1,
            MessageStatus::Sent => 2,
            MessageStatus::Delivered => 3,
            MessageStatus::Read => 4,
        };
        rank(next) > rank(self)
    }
}

/// What a new delivery of a notification event may do with its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDecision {
    /// Send it (first attempt, or the previous one failed or was abandoned).
    Send,
    /// The provider already accepted it: never send again.
    AlreadySent,
    /// Another delivery started sending it less than a lease ago and has not
    /// reported: wait and try later rather than risk a second message.
    InFlight,
}

/// Decides from the stored message: its status, whether its last attempt
/// recorded an error, how many attempts started, and when the last started.
pub fn send_decision(
    status: MessageStatus,
    last_attempt_failed: bool,
    attempts: i32,
    last_attempt_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    lease: std::time::Duration,
) -> SendDecision {
    if status.was_sent() {
        return SendDecision::AlreadySent;
    }
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let started_recently = now.signed_duration_since(last_attempt_at) < lease;
    if status == MessageStatus::Pending && attempts > 0 && !last_attempt_failed && started_recently {
        SendDecision::InFlight
    } else {
        SendDecision::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{OrderCompleted, PaymentReceived, SaleCreated, StepCompleted};

    fn sale_created() -> Event {
        Event::SaleCreated(SaleCreated {
            sale_id: 42,
            invoice_no: "INV-202611-0001".into(),
            customer_id: Some(1),
            location_id: None,
            channel: "whatsapp".into(),
            total_minor: 2500,
            currency: "USD".into(),
            lines: vec![],
        })
    }

    #[test]
    fn a_sale_notice_references_the_sale_and_renders_the_default() {
        let n = notice(&sale_created()).unwrap();
        assert_eq!((n.reference.as_str(), n.sale_id), ("sale:42", Some(42)));
        assert_eq!(n.render(None).unwrap(), "Thank you for your order INV-202611-0001. Total: 25.00 USD.");
        assert_eq!(n.render(Some("{{invoiceNo}}!")).unwrap(), "INV-202611-0001!");
    }

    #[test]
    fn a_variable_the_event_lacks_is_an_error() {
        let n = notice(&sale_created()).unwrap();
        assert_eq!(n.render(Some("Paid {{amount}}")), Err(TemplateError::MissingVariable("amount".into())));
    }

    #[test]
    fn order_events_share_the_order_reference_and_payments_have_their_own() {
        let d = OrderCompleted {
            order_id: 7,
            order_no: "PO-202611-0001".into(),
            sale_id: Some(42),
            invoice_no: None,
            total_cost_minor: 0,
        };
        let ready = notice(&Event::OrderReady(d.clone())).unwrap();
        let done = notice(&Event::ProductionCompleted(d)).unwrap();
        assert_eq!(ready.reference, "production_order:7");
        assert_eq!(done.reference, ready.reference);
        assert_ne!(ready.event_type, done.event_type);
        // The sale fills in what the event lacks, never overrides it.
        let ready = ready.with_sale("INV-1", Money::new(100, "USD".parse().unwrap()));
        assert_eq!(ready.variables["invoiceNo"], "INV-1");
        let p = notice(&Event::PaymentReceived(PaymentReceived {
            payment_id: 3,
            sale_id: 42,
            invoice_no: "INV-2".into(),
            amount_minor: 1050,
            currency: "USD".into(),
        }))
        .unwrap()
        .with_sale("INV-other", Money::new(1, "USD".parse().unwrap()));
        assert_eq!(p.reference, "payment:3");
        assert_eq!(p.render(None).unwrap(), "We received your payment of 10.50 USD for INV-2. Thank you!");
    }

    #[test]
    fn step_completion_notifies_nobody() {
        let e = Event::StepCompleted(StepCompleted {
            step_id: 1,
            order_id: 1,
            order_no: "PO-1".into(),
            name: "Dyeing".into(),
            cost_minor: 0,
            currency: "USD".into(),
            completed_at: chrono::Utc::now(),
        });
        assert_eq!(notice(&e), None);
    }

    #[test]
    fn only_messaging_channels_carry_notifications() {
        assert_eq!(messaging_channel(Channel::Whatsapp), Some("whatsapp"));
        assert_eq!(messaging_channel(Channel::Telegram), Some("telegram"));
        assert_eq!(messaging_channel(Channel::WalkIn), None);
        assert_eq!(messaging_channel(Channel::Web), None);
    }

    #[test]
    fn phones_are_normalized_or_refused() {
        assert_eq!(normalize_phone(" +1 (555) 123-4567 ").as_deref(), Some("+15551234567"));
        assert_eq!(normalize_phone("919876543210").as_deref(), Some("919876543210"));
        assert_eq!(normalize_phone("123"), None);
        assert_eq!(normalize_phone("+1555abc1234"), None);
        assert_eq!(normalize_phone("++15551234567"), None);
        assert_eq!(normalize_phone(""), None);
    }

    #[test]
    fn a_sent_message_is_never_sent_again_and_one_in_flight_waits() {
        use std::time::Duration;
        let now = chrono::Utc::now();
        let lease = Duration::from_secs(20);
        let ago = |s| now - chrono::Duration::seconds(s);
        for s in [MessageStatus::Sent, MessageStatus::Delivered, MessageStatus::Read] {
            assert_eq!(send_decision(s, false, 1, ago(999), now, lease), SendDecision::AlreadySent);
        }
        assert_eq!(send_decision(MessageStatus::Pending, false, 0, now, now, lease), SendDecision::Send);
        assert_eq!(send_decision(MessageStatus::Pending, false, 1, ago(5), now, lease), SendDecision::InFlight);
        // A crash after starting: once the lease is over, the message goes again.
        assert_eq!(send_decision(MessageStatus::Pending, false, 1, ago(30), now, lease), SendDecision::Send);
        assert_eq!(send_decision(MessageStatus::Pending, true, 2, ago(1), now, lease), SendDecision::Send);
        assert_eq!(send_decision(MessageStatus::Failed, true, 1, ago(1), now, lease), SendDecision::Send);
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Pending.advances_to(Sent) && Sent.advances_to(Delivered) && Delivered.advances_to(Read));
        assert!(!Read.advances_to(Delivered) && !Sent.advances_to(Pending) && !Sent.advances_to(Failed));
        assert!(Failed.advances_to(Sent));
        for s in [Pending, Sent, Delivered, Read, Failed] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
    }
}
