//! Error text for people, for whole classes of bad input: each message says
//! what was given and what is allowed, and none shows Rust internals
//! (`Some(..)`, enum variants, parser offsets), in text or in JSON.

mod support;

use support::{atelier, json};

/// What a Rust internal looks like in a message.
const INTERNALS: &[&str] =
    &["Some(", "None", "variant", "enum ", "at line", "expected number at", "Err(", "Ok(", "panicked", "::"];

fn no_internals(what: &str, text: &str) {
    for bad in INTERNALS {
        assert!(!text.contains(bad), "{what}: '{bad}' in: {text}");
    }
}

/// Arguments, variables, the exit code, and a word the message must contain.
type Case = (&'static [&'static str], &'static [(&'static str, &'static str)], i32, &'static str);

#[test]
fn bad_values_are_refused_in_words_with_their_exit_code() {
    let cases: &[Case] = &[
        (&["--output", "xml", "env", "list"], &[], 2, "xml"),
        (&["--env", "test", "dlq", "list", "--limit", "lots"], &[], 2, "lots"),
        (&["--env", "test", "dlq", "list", "--limit", "0"], &[], 2, "0"),
        (&["--env", "test", "migrate", "rollback", "--steps", "0"], &[], 2, "0"),
        (&["--env", "test", "migrate", "run", "--phase", "sideways"], &[], 2, "sideways"),
        (&["gate", "--expect-version", "1", "--wait", "soon"], &[], 2, "soon"),
        (&["completions", "tcsh"], &[], 2, "tcsh"),
        (&["env", "show"], &[("ATELIER__LOG__FORMAT", "xml")], 3, "xml"),
        (&["env", "show"], &[("ATELIER__AMQP__PREFETCH", "many")], 3, "many"),
        (&["env", "show"], &[("ATELIER__RETRY__BASE_DELAY", "soon")], 3, "soon"),
        (&["--env", "prod", "env", "show"], &[], 3, "prod"),
        (&["env", "diff", "staging", "qa"], &[], 3, "qa"),
    ];
    for (args, vars, code, word) in cases {
        let out = atelier(args, vars);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(*code), "{args:?} {vars:?}: {err}");
        assert!(err.contains(word), "{args:?} {vars:?} does not name '{word}': {err}");
        no_internals(&format!("{args:?} {vars:?}"), &err);

        let mut with_json = args.to_vec();
        with_json.extend(["-o", "json"]);
        let out = atelier(&with_json, vars);
        assert_eq!(out.status.code(), Some(*code), "{with_json:?}");
        let doc = json(&out);
        assert_eq!(doc["success"], false, "{with_json:?}");
        assert_eq!(doc["error"]["exit_code"], *code, "{with_json:?}");
        let message = doc["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(word), "{with_json:?}: {message}");
        no_internals(&format!("{with_json:?}"), message);
    }
}
