//! Input limits: the one table of what the API accepts (text lengths, list
//! counts, number ranges) and the check of a JSON body or a query string
//! against it. Pure: a value in, the first field at fault out, named by its
//! path (`lines[3].quantity`). What passes here is never refused by
//! PostgreSQL for its size (index rows stay far below its ~2.7 kB limit) and
//! never overflows a sum (see [`MAX_AMOUNT_MINOR`]).

use serde_json::Value;

/// Largest amount in minor units (`*_minor` fields), either sign: 10¹¹, a
/// billion in major units. With [`MAX_QUANTITY`] and [`MAX_LINES`], a sale's
/// total (at most 100 × 10⁵ × 10¹¹ = 10¹⁸) fits a BIGINT (9.2 × 10¹⁸).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
/// Largest quantity (`quantity`, `step_qty`, `completed_qty`), either sign.
pub const MAX_QUANTITY: i64 = 100_000;
/// Lines per sale.
pub const MAX_LINES: usize = 100;
/// Steps per production order.
pub const MAX_STEPS: usize = 20;
/// Messages stored per webhook delivery (more are skipped and reported).
pub const MAX_WEBHOOK_MESSAGES: usize = 100;
/// Any text field not in [`TEXT`], in characters.
pub const DEFAULT_TEXT: usize = 1000;
/// Any list not in [`LISTS`].
pub const DEFAULT_ITEMS: usize = 1000;
/// A query parameter's value, in characters.
pub const MAX_QUERY_VALUE: usize = 200;

/// Text fields by name → most characters. A list of strings (`steps`) is
/// limited per item by the list's name.
pub const TEXT: &[(&str, usize)] = &[
    ("email", 254),
    ("password", 1024),
    ("name", 200),
    ("sku", 64),
    ("notes", 2000),
    ("description", 1000),
    ("reference", 128),
    ("category", 100),
    ("vendor", 200),
    ("method", 50),
    ("channel", 32),
    ("status", 32),
    ("direction", 16),
    ("channel_type", 32),
    ("account_id", 100),
    ("display_number", 32),
    ("access_token", 4096),
    ("webhook_secret", 256),
    ("verify_token", 256),
    ("steps", 100),
];

/// Lists by name → most items.
pub const LISTS: &[(&str, usize)] = &[("lines", MAX_LINES), ("steps", MAX_STEPS)];

/// Integer fields by name → largest absolute value. `*_minor` is [`MAX_AMOUNT_MINOR`].
pub const NUMBERS: &[(&str, i64)] =
    &[("quantity", MAX_QUANTITY), ("step_qty", MAX_QUANTITY), ("completed_qty", MAX_QUANTITY)];

/// The most characters of a text field named `name`.
pub fn max_text(name: &str) -> usize {
    TEXT.iter().find(|(n, _)| *n == name).map_or(DEFAULT_TEXT, |(_, m)| *m)
}

/// The most items of a list named `name`.
pub fn max_items(name: &str) -> usize {
    LISTS.iter().find(|(n, _)| *n == name).map_or(DEFAULT_ITEMS, |(_, m)| *m)
}

/// The largest absolute value of an integer field named `name`, if bounded.
pub fn max_number(name: &str) -> Option<i64> {
    if name.ends_with("_minor") {
        return Some(MAX_AMOUNT_MINOR);
    }
    NUMBERS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// A field at fault: its path and what is wrong, as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Violation {
    pub field: String,
    pub message: String,
}

fn violation(field: String, message: impl Into<String>) -> Violation {
    Violation { field, message: message.into() }
}

/// A text's own checks: no NUL (PostgreSQL refuses it in text), at most `max` characters.
pub fn check_text(field: &str, s: &str, max: usize) -> Result<(), Violation> {
    if s.contains('\0') {
        return Err(violation(field.to_owned(), "must not contain a NUL character"));
    }
    if s.chars().count() > max {
        return Err(violation(field.to_owned(), format!("must be at most {max} characters")));
    }
    Ok(())
}

/// Checks a JSON body against the table; the root is called `body`.
pub fn check_body(v: &Value) -> Result<(), Violation> {
    walk(v, "", "body")
}

/// `name` is the field's own name (the key, or the list's name for its
/// items), `path` the full path for the message.
fn walk(v: &Value, name: &str, path: &str) -> Result<(), Violation> {
    match v {
        Value::String(s) => check_text(path, s, max_text(name)),
        Value::Number(n) => match max_number(name) {
            Some(max) => match n.as_i64() {
                Some(i) if i.unsigned_abs() > max.unsigned_abs() => {
                    Err(violation(path.to_owned(), format!("must be between -{max} and {max}")))
                }
                _ => Ok(()),
            },
            None => Ok(()),
        },
        Value::Array(items) => {
            let max = max_items(name);
            if items.len() > max {
                return Err(violation(path.to_owned(), format!("must have at most {max} items")));
            }
            items.iter().enumerate().try_for_each(|(i, item)| walk(item, name, &format!("{path}[{i}]")))
        }
        Value::Object(map) => map.iter().try_for_each(|(k, item)| {
            check_text(path, k, DEFAULT_TEXT)?;
            let p = if path == "body" { k.clone() } else { format!("{path}.{k}") };
            walk(item, k, &p)
        }),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// Checks a query string's decoded parameters: names and values without
/// NUL, values of at most [`MAX_QUERY_VALUE`] characters.
pub fn check_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), Violation> {
    for (k, v) in pairs {
        check_text("query", k, MAX_QUERY_VALUE)?;
        check_text(k, v, MAX_QUERY_VALUE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fault(v: Value) -> String {
        check_body(&v).unwrap_err().to_string()
    }

    #[test]
    fn a_nul_anywhere_is_refused_naming_its_path() {
        assert_eq!(fault(json!({"name": "a\u{0}b"})), "name: must not contain a NUL character");
        assert_eq!(
            fault(json!({"lines": [{"x": 1}, {"note": "\u{0}"}]})),
            "lines[1].note: must not contain a NUL character"
        );
        assert_eq!(fault(json!({"steps": ["ok", "\u{0}"]})), "steps[1]: must not contain a NUL character");
        assert_eq!(fault(json!("\u{0}")), "body: must not contain a NUL character");
    }

    #[test]
    fn lengths_counts_and_ranges_come_from_the_table() {
        assert_eq!(fault(json!({"sku": "x".repeat(65)})), "sku: must be at most 64 characters");
        assert!(check_body(&json!({"sku": "é".repeat(64)})).is_ok());
        assert_eq!(fault(json!({"other": "x".repeat(DEFAULT_TEXT + 1)})), "other: must be at most 1000 characters");
        let lines: Vec<Value> = (0..=MAX_LINES).map(|_| json!({})).collect();
        assert_eq!(fault(json!({"lines": lines})), "lines: must have at most 100 items");
        assert_eq!(
            fault(json!({"lines": [{"quantity": MAX_QUANTITY + 1}]})),
            "lines[0].quantity: must be between -100000 and 100000"
        );
        assert_eq!(
            fault(json!({"amount_minor": i64::MIN})),
            "amount_minor: must be between -100000000000 and 100000000000"
        );
        assert!(check_body(&json!({"amount_minor": MAX_AMOUNT_MINOR, "id": i64::MAX})).is_ok());
    }

    #[test]
    fn the_largest_sale_fits_a_bigint() {
        let total = (MAX_LINES as i128) * (MAX_QUANTITY as i128) * (MAX_AMOUNT_MINOR as i128);
        assert!(total <= i64::MAX as i128);
    }

    #[test]
    fn query_values_are_checked_by_name() {
        assert!(check_query([("status", "final")]).is_ok());
        assert_eq!(check_query([("to", "a\u{0}")]).unwrap_err().to_string(), "to: must not contain a NUL character");
        let long = "x".repeat(MAX_QUERY_VALUE + 1);
        assert_eq!(check_query([("from", long.as_str())]).unwrap_err().field, "from");
    }
}
