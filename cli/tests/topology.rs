//! `atelier topology apply | verify` against the real RabbitMQ, in a
//! namespace of its own that the test deletes at the end.

mod support;

use support::{atelier, delete_namespace, json};

#[test]
fn verify_reports_drift_with_exit_5_until_apply() {
    let ns = format!("t-cli-{}", std::process::id());
    let vars = [("ATELIER__AMQP__NAMESPACE", ns.as_str())];
    let out = atelier(&["--env", "test", "topology", "verify", "--output", "json"], &vars);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["success"], false);
    assert!(
        doc["data"]["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["drift"] == "missing" && d["name"] == format!("{ns}.events"))
    );

    let out = atelier(&["--env", "test", "topology", "apply", "--output", "json"], &vars);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = atelier(&["--env", "test", "topology", "verify", "--output", "json"], &vars);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["count"], 0);

    // Other retry delays than the declared queues: drift, named with the argument.
    let other = [("ATELIER__AMQP__NAMESPACE", ns.as_str()), ("ATELIER__RETRY__BASE_DELAY", "9s")];
    let out = atelier(&["--env", "test", "topology", "verify"], &other);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("differs") && text.contains("x-message-ttl"), "{text}");
    delete_namespace(&ns);
}
