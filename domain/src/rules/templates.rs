//! Notification templates: text with `{{variable}}` placeholders, rendered for
//! one event. A variable the event does not provide is an error, never an empty
//! string; a placeholder left open is an error too.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template uses {{{{{0}}}}} but the event provides no '{0}'")]
    MissingVariable(String),
    #[error("template has an unclosed '{{{{' at byte {0}")]
    Unclosed(usize),
    #[error("template has an empty or invalid variable name at byte {0}")]
    InvalidName(usize),
    #[error("no template for '{0}'")]
    NoTemplate(String),
}

/// The variables an event offers its template.
pub type Variables = BTreeMap<&'static str, String>;

/// Renders `template`, replacing each `{{name}}` (spaces inside the braces allowed).
pub fn render(template: &str, vars: &Variables) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed(offset + start))?;
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TemplateError::InvalidName(offset + start));
        }
        let value = vars.get(name).ok_or_else(|| TemplateError::MissingVariable(name.to_owned()))?;
        out.push_str(value);
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The text sent when a business configured no template of its own.
pub fn default_template(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "sale.created" => "Thank you for your order {{invoiceNo}}. Total: {{total}}.",
        "production.created" => "Your order {{invoiceNo}} is now in production as {{orderNo}}.",
        "production.completed" => "Good news: production of {{orderNo}} is complete.",
        "payment.received" => "We received your payment of {{amount}} for {{invoiceNo}}. Thank you!",
        "order.ready" => "Your order {{orderNo}} is ready for pickup.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> Variables {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn renders_every_variable() {
        let v = vars(&[("invoiceNo", "INV-202601-0001"), ("total", "25.00 USD")]);
        assert_eq!(render("Order {{invoiceNo}}: {{ total }}.", &v).unwrap(), "Order INV-202601-0001: 25.00 USD.");
    }

    #[test]
    fn a_missing_variable_is_an_error() {
        assert_eq!(render("Hi {{orderNo}}", &vars(&[])), Err(TemplateError::MissingVariable("orderNo".into())));
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert_eq!(render("Hi {{orderNo", &vars(&[("orderNo", "x")])), Err(TemplateError::Unclosed(3)));
        assert_eq!(render("Hi {{}}", &vars(&[])), Err(TemplateError::InvalidName(3)));
        assert_eq!(render("{{a b}}", &vars(&[])), Err(TemplateError::InvalidName(0)));
    }

    #[test]
    fn values_are_not_re_expanded() {
        let v = vars(&[("a", "{{b}}")]);
        assert_eq!(render("{{a}}", &v).unwrap(), "{{b}}");
    }

    #[test]
    fn every_notified_event_has_a_default() {
        for e in ["sale.created", "production.created", "production.completed", "payment.received", "order.ready"] {
            assert!(default_template(e).is_some(), "{e}");
        }
    }
}
