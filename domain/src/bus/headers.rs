//! Header names our messages carry, and reading them back. The retry count
//! is ours (`x-atelier-attempt`), never RabbitMQ's `x-death` count.

use lapin::types::{AMQPValue, FieldTable};

/// Retries already made: 0 on the first delivery, n after n delayed retries.
pub const ATTEMPT: &str = "x-atelier-attempt";
/// The handler a retry or dead letter belongs to.
pub const HANDLER: &str = "x-atelier-handler";
/// When the first failure happened (RFC 3339).
pub const FIRST_FAILED_AT: &str = "x-atelier-first-failed-at";
/// When the last failure happened (RFC 3339).
pub const LAST_FAILED_AT: &str = "x-atelier-last-failed-at";
/// The last error, shortened; never a secret or payload text.
pub const ERROR: &str = "x-atelier-error";
/// The error kind; with the handler, a dead letter's fingerprint.
pub const ERROR_KIND: &str = "x-atelier-error-kind";
/// A UUID set when we dead-letter; `dead_letters.dead_letter_key` dedupes ingest with it.
pub const DEAD_LETTER_ID: &str = "x-atelier-dead-letter-id";
/// Set by `atelier dlq replay`: which replay published this copy.
pub const REPLAY_ID: &str = "x-atelier-replay-id";
/// Set by `atelier dlq replay`: who replayed it.
pub const REPLAYED_BY: &str = "x-atelier-replayed-by";

/// A string header (short or long string).
pub fn get_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// An integer header of any width.
pub fn get_u32(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let v: i64 = match headers?.inner().get(name)? {
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => *i,
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok()?,
        _ => return None,
    };
    u32::try_from(v).ok()
}

/// Sets a string header.
pub fn set_str(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(name.into(), AMQPValue::LongString(value.into()));
}

/// Sets an integer header.
pub fn set_u32(headers: &mut FieldTable, name: &str, value: u32) {
    headers.insert(name.into(), AMQPValue::LongLongInt(value.into()));
}

/// Headers as JSON, for the `dead_letters` table and the CLI.
pub fn to_json(headers: Option<&FieldTable>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(h) = headers {
        for (k, v) in h {
            map.insert(k.as_str().to_owned(), value_to_json(v));
        }
    }
    serde_json::Value::Object(map)
}

fn value_to_json(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AMQPValue::Boolean(b) => J::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Float(f) => serde_json::Number::from_f64((*f).into()).map(J::Number).unwrap_or(J::Null),
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        AMQPValue::DecimalValue(d) => J::String(format!("{d:?}")),
        AMQPValue::ShortString(s) => J::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::FieldArray(a) => J::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::FieldTable(t) => to_json(Some(t)),
        AMQPValue::ByteArray(b) => J::String(String::from_utf8_lossy(b.as_slice()).into_owned()),
        AMQPValue::Void => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_convert_to_json() {
        let mut h = FieldTable::default();
        set_u32(&mut h, ATTEMPT, 2);
        set_str(&mut h, HANDLER, "production");
        assert_eq!(get_u32(Some(&h), ATTEMPT), Some(2));
        assert_eq!(get_str(Some(&h), HANDLER).as_deref(), Some("production"));
        assert_eq!(get_u32(None, ATTEMPT), None);
        let j = to_json(Some(&h));
        assert_eq!(j[ATTEMPT], 2);
        assert_eq!(j[HANDLER], "production");
    }
}
