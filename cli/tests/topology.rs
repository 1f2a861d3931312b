//! `atelier topology apply | verify` against the real RabbitMQ, in a
//! namespace of its own that a guard deletes at the end, even on failure.

mod support;

use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::BTreeSet;
use support::{NamespaceGuard, atelier, json};

#[test]
fn verify_reports_drift_with_exit_5_until_apply() {
    let guard = NamespaceGuard::new("cli-topology");
    let ns = guard.0.as_str();
    let vars = [("ATELIER__AMQP__NAMESPACE", ns)];
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
    let other = [("ATELIER__AMQP__NAMESPACE", ns), ("ATELIER__RETRY__BASE_DELAY", "9s")];
    let out = atelier(&["--env", "test", "topology", "verify"], &other);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("differs") && text.contains("x-message-ttl"), "{text}");
    assert!(text.contains(&format!("--recreate {ns}.q.production.retry.1")), "{text}");
}

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The ids (message_id property) and `x-test` headers of every message in
/// `queue`, taken with basic.get and acked.
async fn drain(conn: &Connection, queue: &str) -> BTreeSet<(String, String)> {
    let ch = conn.create_channel().await.unwrap();
    let mut seen = BTreeSet::new();
    while let Some(m) = ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        let id = m.delivery.properties.message_id().as_ref().map(|s| s.to_string()).unwrap_or_default();
        let header = m
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-test").cloned())
            .and_then(|v| match v {
                AMQPValue::LongString(s) => Some(s.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        seen.insert((id, header));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_recreate_redeclares_a_drifted_queue_and_keeps_every_message() {
    let guard = NamespaceGuard::new("cli-recreate");
    let ns = guard.0.clone();
    let queue = format!("{ns}.q.production");
    let vars = [("ATELIER__AMQP__NAMESPACE", ns.as_str())];

    // The queue as an older build declared it (another x-delivery-limit, no
    // dead-lettering), holding 40 persistent messages, each with its id and a header.
    let conn = Connection::connect(AMQP, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut old_args = FieldTable::default();
    old_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    old_args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(7));
    let durable = lapin::options::QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(queue.as_str().into(), durable, old_args).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..40 {
        let mut headers = FieldTable::default();
        headers.insert("x-test".into(), AMQPValue::LongString(format!("h{i}").into()));
        let props = BasicProperties::default()
            .with_message_id(format!("m{i}").into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let body = format!("{{\"n\":{i}}}");
        ch.basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), body.as_bytes(), props)
            .await
            .unwrap()
            .await
            .unwrap();
        sent.insert((format!("m{i}"), format!("h{i}")));
    }

    let drifted = vars;
    let verify = atelier(&["--env", "test", "topology", "verify"], &drifted);
    assert_eq!(verify.status.code(), Some(5));
    let advice = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(advice.contains(&format!("topology apply --recreate {queue}")), "{advice}");
    let plain = atelier(&["--env", "test", "topology", "apply"], &drifted);
    assert_eq!(plain.status.code(), Some(5));
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("--recreate"), "{err}");

    // A consumer attached: refused, nothing moved.
    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch.basic_qos(0, Default::default()).await.unwrap();
    let consumer = consumer_ch
        .basic_consume(queue.as_str().into(), "t".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    // The consumer's prefetch holds messages unacked; closing the channel returns them.
    let refused = atelier(&["--env", "test", "-o", "json", "topology", "apply", "--recreate", &queue], &drifted);
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stdout));
    let doc = json(&refused);
    assert!(doc["error"]["message"].as_str().unwrap().contains("consumer"), "{doc}");
    drop(consumer);
    consumer_ch.close(200, "OK".into()).await.unwrap();
    // A quorum queue's consumer count follows through its log: wait until it says 0.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let look = conn.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let q = look.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.unwrap();
        let _ = look.close(200, "OK".into()).await;
        if q.consumer_count() == 0 && q.message_count() == 40 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the consumer is still counted: {q:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A queue name this topology does not have: a usage error naming the queues.
    let unknown = atelier(&["--env", "test", "topology", "apply", "--recreate", "nope"], &drifted);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains(&queue));

    let out = atelier(&["--env", "test", "-o", "json", "topology", "apply", "--recreate", &queue], &drifted);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let doc = json(&out);
    let r = &doc["data"]["recreated"][0];
    assert_eq!(r["queue"], queue.as_str());
    assert_eq!(r["moved_out"], 40, "{doc}");
    assert_eq!(r["moved_back"], 40, "{doc}");

    let verify = atelier(&["--env", "test", "topology", "verify"], &drifted);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
    let received = drain(&conn, &queue).await;
    assert_eq!(received, sent, "every message, with its id and headers, is back");
    // The temporary queue is gone.
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let ch2 = conn.create_channel().await.unwrap();
    let temp = format!("{queue}.recreate");
    assert!(ch2.queue_declare(temp.as_str().into(), passive, FieldTable::default()).await.is_err());
    let _ = conn.close(200, "OK".into()).await;
}
