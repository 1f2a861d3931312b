//! Inbound message intent: order intent (order, buy, purchase, want, need, book)
//! and confirmations (yes, confirm, ok, proceed), and what inbound processing
//! does with them.

/// Words that show the customer wants to order, with their common inflections.
const ORDER_WORDS: &[&str] = &[
    "order",
    "orders",
    "ordering",
    "buy",
    "buying",
    "purchase",
    "purchasing",
    "want",
    "wants",
    "wanted",
    "need",
    "needs",
    "book",
    "booking",
];
/// Words that confirm a proposed sale.
const CONFIRM_WORDS: &[&str] = &["yes", "confirm", "confirmed", "ok", "okay", "proceed"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Intent {
    pub order: bool,
    pub confirmation: bool,
}

/// Reads a message's intent from whole words, case-insensitively: "needle" is
/// not "need", and "book!" is "book".
pub fn detect(text: &str) -> Intent {
    let mut intent = Intent::default();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        intent.order |= ORDER_WORDS.contains(&word.as_str());
        intent.confirmation |= CONFIRM_WORDS.contains(&word.as_str());
    }
    intent
}

/// What inbound processing does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboundActions {
    pub create_lead: bool,
    /// A draft sale, never a final one.
    pub create_draft_sale: bool,
}

/// Order intent creates a lead; a confirmation creates a draft sale only when
/// it comes from a customer the business already knows.
pub fn inbound_actions(intent: Intent, known_customer: bool) -> InboundActions {
    InboundActions { create_lead: intent.order, create_draft_sale: intent.confirmation && known_customer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_words_are_found_as_whole_words() {
        for text in ["I want a saree", "Can I ORDER two?", "buy", "need it by Friday", "book a fitting!", "purchase"] {
            assert!(detect(text).order, "{text}");
        }
        for text in ["hello", "the needle broke", "bookshelf", "wanting"] {
            assert!(!detect(text).order, "{text}");
        }
    }

    #[test]
    fn confirmations() {
        for text in ["Yes", "ok!", "please proceed", "I confirm"] {
            assert!(detect(text).confirmation, "{text}");
        }
        assert!(!detect("yesterday").confirmation);
        assert!(!detect("token").confirmation);
    }

    #[test]
    fn a_draft_sale_needs_a_known_customer() {
        let yes = detect("yes");
        assert_eq!(inbound_actions(yes, true), InboundActions { create_lead: false, create_draft_sale: true });
        assert_eq!(inbound_actions(yes, false), InboundActions::default());
        let both = detect("yes I want to order");
        assert_eq!(inbound_actions(both, true), InboundActions { create_lead: true, create_draft_sale: true });
    }
}
