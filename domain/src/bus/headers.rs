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

/// The headers of a replayed dead letter: its original headers (as stored in
/// `dead_letters.headers`) without the broker's death records and our failure
/// details, the attempt count back to 0, and who replayed it under which id.
pub fn for_replay(stored: &serde_json::Value, replay_id: &str, actor: &str) -> FieldTable {
    const DROPPED: &[&str] = &[ATTEMPT, ERROR, ERROR_KIND, DEAD_LETTER_ID, LAST_FAILED_AT, REPLAY_ID, REPLAYED_BY];
    let mut out = FieldTable::default();
    if let serde_json::Value::Object(map) = stored {
        for (k, v) in map {
            if DROPPED.contains(&k.as_str())
                || k.starts_with("x-death")
                || k.starts_with("x-first-death")
                || k.starts_with("x-last-death")
            {
                continue;
            }
            // A header name is an AMQP short string (at most 255 bytes); a
            // longer stored key cannot be sent again, and converting it would
            // panic (found by the amqp_headers fuzz target): it is dropped.
            let Ok(key) = lapin::types::ShortString::try_new(k.as_str()) else { continue };
            match v {
                serde_json::Value::String(s) => {
                    out.insert(key, AMQPValue::LongString(s.as_str().into()));
                }
                serde_json::Value::Bool(b) => {
                    out.insert(key, AMQPValue::Boolean(*b));
                }
                serde_json::Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        out.insert(key, AMQPValue::LongLongInt(i));
                    }
                }
                _ => {}
            }
        }
    }
    set_u32(&mut out, ATTEMPT, 0);
    set_str(&mut out, REPLAY_ID, replay_id);
    set_str(&mut out, REPLAYED_BY, actor);
    out
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn a_stored_header_name_too_long_for_amqp_is_dropped_not_a_panic() {
        let long = "k".repeat(256);
        let stored = serde_json::json!({ long.clone(): "v", "kept": "yes", "n": 3 });
        let h = for_replay(&stored, "r1", "ana");
        assert_eq!(get_str(Some(&h), "kept").as_deref(), Some("yes"));
        assert_eq!(get_u32(Some(&h), "n"), Some(3));
        assert!(!h.inner().contains_key(long.as_str()));
        assert_eq!(get_str(Some(&h), REPLAY_ID).as_deref(), Some("r1"));
    }

    #[test]
    fn replayed_headers_start_over_and_say_who_replayed() {
        let stored = serde_json::json!({
            ATTEMPT: 3, ERROR: "503", ERROR_KIND: "provider_5xx", DEAD_LETTER_ID: "k", FIRST_FAILED_AT: "2026-01-01T00:00:00Z",
            "x-death": [{"count": 1}], "x-first-death-queue": "q", "x-correlation": "c-1"
        });
        let table = for_replay(&stored, "r-1", "ops");
        let h = Some(&table);
        assert_eq!(get_u32(h, ATTEMPT), Some(0));
        assert_eq!(get_str(h, REPLAY_ID).as_deref(), Some("r-1"));
        assert_eq!(get_str(h, REPLAYED_BY).as_deref(), Some("ops"));
        assert_eq!(get_str(h, "x-correlation").as_deref(), Some("c-1"));
        assert_eq!(get_str(h, FIRST_FAILED_AT).as_deref(), Some("2026-01-01T00:00:00Z"));
        for gone in [ERROR, ERROR_KIND, DEAD_LETTER_ID, "x-death", "x-first-death-queue"] {
            assert!(table.inner().get(gone).is_none(), "{gone} kept");
        }
    }
}
