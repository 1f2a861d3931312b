//! The staff API over real HTTP (a daemon on port 0 with its own database):
//! the allow/deny matrix of every route and role, tenancy (404 for another
//! business's ids), workers and their own steps, the step rules' codes, auth
//! (wrong password, disabled user, key rotation), the envelope of every bad
//! input, and the OpenAPI document covering every route.

mod api_support;
mod common;

use api_support::{PASSWORD, fixture, fixture_with, login, send};
use atelier_domain::auth::KeySet;
use atelier_domain::store::outbox;
use reqwest::Method;
use serde_json::{Value, json};

/// Who may call what (DOMAIN.md): A admin, M manager, C cashier,
/// W production_worker, U auditor. `-` marks a public route.
const MATRIX: &[(&str, &str, &str, Option<&str>)] = &[
    ("GET", "/me", "AMCWU", None),
    ("GET", "/sales", "AMC", None),
    ("POST", "/sales", "AMC", Some(r#"{"lines":[{"product_id":{plain_product},"quantity":1}]}"#)),
    ("GET", "/sales/{sale}", "AMC", None),
    ("PATCH", "/sales/{draft}", "AMC", Some(r#"{"notes":"wrap it"}"#)),
    ("POST", "/sales/{draft}/complete", "AMC", None),
    ("POST", "/sales/{sale}/payments", "AMC", Some(r#"{"amount_minor":100,"method":"cash"}"#)),
    ("GET", "/products", "AMC", None),
    ("GET", "/products/{product}", "AMC", None),
    ("POST", "/products", "AM", Some(r#"{"name":"Shawl","unit_price_minor":100}"#)),
    ("PATCH", "/products/{product}", "AM", Some(r#"{"unit_price_minor":5100}"#)),
    ("GET", "/production/orders", "AM", None),
    ("GET", "/production/orders/{order}", "AM", None),
    ("POST", "/production/orders", "AM", Some(r#"{"final_price_minor":100}"#)),
    ("POST", "/production/steps/{step}/assign", "AM", Some(r#"{"user_id":{worker}}"#)),
    ("PUT", "/production/steps/{step}/plan", "AM", Some(r#"{"step_qty":2}"#)),
    ("PUT", "/production/steps/{step}/cost", "AM", Some(r#"{"cost_minor":700}"#)),
    ("GET", "/production/reports/costs", "AMU", None),
    ("GET", "/worker/steps", "AMW", None),
    ("GET", "/worker/steps/{step}", "AMW", None),
    ("POST", "/worker/steps/{step}/progress", "AMW", Some(r#"{"completed_qty":1}"#)),
    ("POST", "/worker/steps/{step}/status", "AMW", Some(r#"{"status":"in_progress"}"#)),
    ("GET", "/accounting/accounts", "AMU", None),
    ("GET", "/accounting/transactions", "AMU", None),
    ("POST", "/accounting/transactions", "AM", Some(r#"{"direction":"credit","amount_minor":100,"category":"Sales"}"#)),
    ("GET", "/accounting/reports/financial", "AMU", None),
    ("GET", "/social/channels", "A", None),
    (
        "PUT",
        "/social/channels",
        "A",
        Some(r#"{"channel_type":"whatsapp","account_id":"1555","webhook_secret":"0123456789abcdef"}"#),
    ),
    ("GET", "/social/messages", "A", None),
    ("GET", "/social/leads", "A", None),
    // Public or signed: no token needed, no role checked.
    ("POST", "/auth/login", "-", None),
    ("GET", "/openapi.json", "-", None),
    ("GET", "/social/webhook/{channel_type}", "-", None),
    ("POST", "/social/webhook/{channel_type}", "-", None),
];

const ROLES: [(char, &str); 5] =
    [('A', "admin"), ('M', "manager"), ('C', "cashier"), ('W', "production_worker"), ('U', "auditor")];

fn method(m: &str) -> Method {
    m.parse().unwrap()
}

#[tokio::test]
async fn every_route_allows_exactly_its_roles() {
    let mut f = fixture().await;
    for (m, template, allowed, body) in MATRIX.iter().filter(|r| r.2 != "-") {
        let path = f.path(template);
        let body: Option<Value> = body.map(|b| {
            let b = f.path(b).replace("{worker}", &f.a.id("production_worker").to_string());
            serde_json::from_str(&b).unwrap()
        });
        let (s, v) = send(&f.app, method(m), &path, None, body.clone()).await;
        assert_eq!(s, 401, "{m} {path} without a token: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        for (letter, role) in ROLES {
            let (s, v) = send(&f.app, method(m), &path, Some(f.a.token(role)), body.clone()).await;
            if allowed.contains(letter) {
                assert!(s != 401 && s != 403 && s < 500, "{role} must be allowed {m} {path}: {s} {v}");
            } else {
                assert_eq!(s, 403, "{role} must be refused {m} {path}: {v}");
                assert_eq!(v["success"], false);
                assert_eq!(v["error"]["code"], "forbidden", "{v}");
            }
        }
    }
    f.app.stop().await;
}

#[tokio::test]
async fn another_business_gets_404_for_every_id() {
    let mut f = fixture().await;
    let b_admin = f.b.token("admin").to_owned();
    for (m, template, _, body) in MATRIX.iter().filter(|r| r.1.contains("{") && !r.1.contains("channel_type")) {
        let path = f.path(template);
        let body: Option<Value> = body.map(|b| {
            let b = f.path(b).replace("{worker}", &f.b.id("production_worker").to_string());
            serde_json::from_str(&b).unwrap()
        });
        let (s, v) = send(&f.app, method(m), &path, Some(&b_admin), body).await;
        assert_eq!(s, 404, "B's admin on A's {m} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found", "{v}");
    }
    // Lists never show A's rows to B.
    let (_, v) = send(&f.app, Method::GET, "/sales", Some(&b_admin), None).await;
    assert_eq!(v["count"], 0, "{v}");
    let (_, v) = send(&f.app, Method::GET, "/production/orders", Some(&b_admin), None).await;
    assert_eq!(v["count"], 0, "{v}");
    // Assigning A's worker to B's step: the user is not in B.
    let (s, v) = send(
        &f.app,
        Method::POST,
        "/production/orders",
        Some(&b_admin),
        Some(json!({"steps": ["Dyeing"], "step_qty": 1})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let b_step = v["data"]["steps"][0]["id"].as_i64().unwrap();
    let (s, v) = send(
        &f.app,
        Method::POST,
        &format!("/production/steps/{b_step}/assign"),
        Some(&b_admin),
        Some(json!({"user_id": f.a.id("production_worker")})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_field")), "{v}");
    f.app.stop().await;
}

#[tokio::test]
async fn workers_see_and_change_only_their_own_steps_and_never_costs() {
    let mut f = fixture().await;
    let (w1, w2) = (f.a.token("production_worker").to_owned(), f.a.token("worker2").to_owned());
    let step = f.ids["step"];
    let (s, _) = send(
        &f.app,
        Method::PUT,
        &format!("/production/steps/{step}/cost"),
        Some(f.a.token("manager")),
        Some(json!({"cost_minor": 1500})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = send(&f.app, Method::GET, "/worker/steps", Some(&w1), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 2, "{v}");
    for st in v["data"].as_array().unwrap() {
        assert!(st.get("cost_minor").is_none() && st.get("vendor").is_none(), "a worker sees a cost: {st}");
    }
    let (_, v) = send(&f.app, Method::GET, "/worker/steps", Some(&w2), None).await;
    assert_eq!(v["count"], 0, "{v}");
    for (m, path, body) in [
        (Method::GET, format!("/worker/steps/{step}"), None),
        (Method::POST, format!("/worker/steps/{step}/progress"), Some(json!({"completed_qty": 1}))),
        (Method::POST, format!("/worker/steps/{step}/status"), Some(json!({"status": "in_progress"}))),
    ] {
        let (s, v) = send(&f.app, m.clone(), &path, Some(&w2), body).await;
        assert_eq!(s, 403, "worker2 {m} {path}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    // Worker 1 finishes its step; it drops out of the list unless asked for.
    let (s, v) = send(
        &f.app,
        Method::POST,
        &format!("/worker/steps/{step}/progress"),
        Some(&w1),
        Some(json!({"completed_qty": 2})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["status"], "completed");
    assert!(v["data"].get("cost_minor").is_none());
    let (_, v) = send(&f.app, Method::GET, "/worker/steps", Some(&w1), None).await;
    assert_eq!(v["count"], 1, "{v}");
    let (_, v) = send(&f.app, Method::GET, "/worker/steps?include_completed=true", Some(&w1), None).await;
    assert_eq!(v["count"], 2, "{v}");
    // The completion went to the outbox with its cost, in the same transaction.
    let mut conn = f.app.db.db().conn().await.unwrap();
    let rows = outbox::for_business(&mut conn, f.a.tenant.business_id).await.unwrap();
    let done: Vec<_> = rows.iter().filter(|r| r.event_type == "production.step.completed").collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].envelope["data"]["cost_minor"], 1500);
    assert_eq!(done[0].envelope["producer"], "atelierd/http");
    f.app.stop().await;
}

#[tokio::test]
async fn step_rules_and_sale_conflicts_answer_with_their_codes() {
    let mut f = fixture().await;
    let w = f.a.token("production_worker").to_owned();
    let (step, step2) = (f.ids["step"], f.ids["step2"]);
    let status = |s: &'static str| Some(json!({"status": s}));
    let qty = |q: i64| Some(json!({"completed_qty": q}));
    let cases: Vec<(String, Option<Value>, u16, &str)> = vec![
        (format!("/worker/steps/{step}/status"), status("completed"), 422, "invalid_transition"),
        (format!("/worker/steps/{step}/progress"), qty(3), 422, "quantity_exceeded"),
        (format!("/worker/steps/{step}/progress"), qty(-1), 400, "invalid_field"),
        (format!("/worker/steps/{step}/status"), status("done"), 400, "invalid_field"),
        (format!("/worker/steps/{step}/progress"), qty(1), 200, ""),
        (format!("/worker/steps/{step}/status"), status("completed"), 422, "incomplete_quantity"),
        (format!("/worker/steps/{step}/status"), status("pending"), 422, "invalid_transition"),
        (format!("/worker/steps/{step}/progress"), qty(2), 200, ""),
        (format!("/worker/steps/{step}/progress"), qty(2), 422, "step_completed"),
        (format!("/worker/steps/{step2}/status"), status("in_progress"), 200, ""),
    ];
    for (path, body, want, code) in cases {
        let (s, v) = send(&f.app, Method::POST, &path, Some(&w), body.clone()).await;
        assert_eq!(s, want, "{path} {body:?}: {v}");
        if !code.is_empty() {
            assert_eq!(v["error"]["code"], code, "{path} {body:?}: {v}");
        }
    }
    // A step without a planned quantity refuses progress.
    let admin = f.a.token("admin").to_owned();
    let (_, v) =
        send(&f.app, Method::POST, "/production/orders", Some(&admin), Some(json!({"steps": ["Handwork"]}))).await;
    let unplanned = v["data"]["steps"][0]["id"].as_i64().unwrap();
    let (s, v) = send(&f.app, Method::POST, &format!("/worker/steps/{unplanned}/progress"), Some(&admin), qty(1)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("step_not_planned")), "{v}");
    // Negative cost is an invalid field.
    let (s, v) = send(
        &f.app,
        Method::PUT,
        &format!("/production/steps/{step2}/cost"),
        Some(&admin),
        Some(json!({"cost_minor": -5})),
    )
    .await;
    assert_eq!((s, v["error"]["message"].as_str().unwrap_or("").starts_with("cost_minor")), (400, true), "{v}");
    // Completing a final sale is a conflict; a draft completes once.
    let (sale, draft) = (f.ids["sale"], f.ids["draft"]);
    let (s, v) = send(&f.app, Method::POST, &format!("/sales/{sale}/complete"), Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    let (s, v) = send(&f.app, Method::POST, &format!("/sales/{draft}/complete"), Some(&admin), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["status"], "final");
    let (s, _) =
        send(&f.app, Method::PATCH, &format!("/sales/{draft}"), Some(&admin), Some(json!({"notes": "x"}))).await;
    assert_eq!(s, 409);
    let (s, v) = send(
        &f.app,
        Method::POST,
        &format!("/sales/{sale}/payments"),
        Some(f.a.token("cashier")),
        Some(json!({"amount_minor": 600, "method": "card"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The outbox: sale.created for the final sale and the completed draft, one payment.received.
    let mut conn = f.app.db.db().conn().await.unwrap();
    let rows = outbox::for_business(&mut conn, f.a.tenant.business_id).await.unwrap();
    let count = |t: &str| rows.iter().filter(|r| r.event_type == t).count();
    assert_eq!(count("sale.created"), 2);
    assert_eq!(count("payment.received"), 1);
    assert_eq!(count("production.created"), 2);
    // Filters and pagination of the sales list.
    let (_, v) = send(&f.app, Method::GET, "/sales?status=final&channel=walk_in&limit=1", Some(&admin), None).await;
    assert_eq!((v["count"].as_i64(), v["total"].as_i64()), (Some(1), Some(1)), "{v}");
    let (s, v) = send(&f.app, Method::GET, "/sales?limit=0", Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_field")), "{v}");
    let (s, v) = send(&f.app, Method::GET, "/sales?from=yesterday", Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")), "{v}");
    f.app.stop().await;
}

#[tokio::test]
async fn cost_report_gives_profit_per_order_step_type_and_totals() {
    let mut f = fixture().await;
    let m = f.a.token("manager").to_owned();
    for (step, cost) in [(f.ids["step"], 2000), (f.ids["step2"], 1000)] {
        let (s, _) = send(
            &f.app,
            Method::PUT,
            &format!("/production/steps/{step}/cost"),
            Some(&m),
            Some(json!({"cost_minor": cost})),
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, v) = send(
        &f.app,
        Method::GET,
        &format!("/production/reports/costs?order_id={}", f.ids["order"]),
        Some(f.a.token("auditor")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let o = &v["data"]["orders"][0];
    assert_eq!((o["total_cost_minor"].as_i64(), o["final_price_minor"].as_i64()), (Some(3000), Some(9000)), "{v}");
    assert_eq!((o["profit_minor"].as_i64(), o["margin_bps"].as_i64()), (Some(6000), Some(6666)), "{v}");
    assert_eq!(v["data"]["totals"]["profit_minor"], 6000);
    let (_, v) = send(&f.app, Method::GET, "/production/reports/costs?step_type=Dyeing", Some(&m), None).await;
    assert_eq!(
        v["data"]["step_types"],
        json!([{"step_type": "Dyeing", "steps": 1, "completed_steps": 0, "total_cost_minor": 2000}])
    );
    f.app.stop().await;
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// A signed Messenger (or Instagram) webhook is stored with its sender's
/// page-scoped id, once, with its event; our own echoed message is not.
#[tokio::test]
async fn messenger_and_instagram_webhooks_store_their_messages() {
    let mut f = fixture().await;
    let admin = f.a.token("admin").to_owned();
    let biz = f.a.tenant.business_id;
    for (channel, page) in [("facebook", "PAGE1"), ("instagram", "IGACCOUNT")] {
        let (s, v) = send(
            &f.app,
            Method::PUT,
            "/social/channels",
            Some(&admin),
            Some(json!({"channel_type": channel, "account_id": page, "webhook_secret": "page-secret-0123456789"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let body = serde_json::to_vec(&json!({"object": "page", "entry": [{"id": page, "time": 1, "messaging": [
            {"sender": {"id": "PSID7"}, "recipient": {"id": page}, "message": {"mid": format!("m_{channel}"), "text": "I want to order"}},
            {"sender": {"id": page}, "recipient": {"id": "PSID7"}, "message": {"mid": "echo", "text": "Thanks", "is_echo": true}}]}]}))
        .unwrap();
        let url = f.app.url(&format!("/api/v1/social/webhook/{channel}?business_id={biz}"));
        let res = f
            .app
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", sign("page-secret-0123456789", &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{channel}");
    }
    let mut conn = f.app.db.db().conn().await.unwrap();
    let rows = outbox::for_business(&mut conn, biz).await.unwrap();
    let received: Vec<_> = rows.iter().filter(|r| r.event_type == "social.message.received").collect();
    assert_eq!(received.len(), 2, "one message per channel, no echo");
    for (row, channel) in received.iter().zip(["facebook", "instagram"]) {
        assert_eq!(row.envelope["data"]["channel_type"], channel);
        assert_eq!(row.envelope["data"]["provider_message_id"], format!("m_{channel}"));
        assert_eq!(row.envelope["data"]["phone"], "PSID7");
    }
    f.app.stop().await;
}

fn whatsapp(id: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "1555"},
        "messages": [{"id": id, "from": "15550001111", "type": "text", "text": {"body": text}}]}}]}]}))
    .unwrap()
}

#[tokio::test]
async fn webhooks_store_signed_messages_once_and_refuse_the_rest() {
    let mut f = fixture().await;
    let admin = f.a.token("admin").to_owned();
    let biz = f.a.tenant.business_id;
    let (s, v) = send(
        &f.app,
        Method::PUT,
        "/social/channels",
        Some(&admin),
        Some(json!({
        "channel_type": "whatsapp", "account_id": "1555", "webhook_secret": "first-secret-0123456789",
        "verify_token": "verify-me", "access_token": "EAAG-secret-token"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        !text.contains("first-secret") && !text.contains("EAAG") && !text.contains("verify-me"),
        "secrets returned: {text}"
    );
    let url = f.app.url(&format!("/api/v1/social/webhook/whatsapp?business_id={biz}"));
    let post = |body: Vec<u8>, sig: Option<String>| {
        let mut r = f.app.client.post(&url).header("content-type", "application/json").body(body);
        if let Some(s) = sig {
            r = r.header("X-Hub-Signature-256", s);
        }
        r.send()
    };
    let body = whatsapp("wamid.1", "I want to order a scarf");
    for sig in [None, Some("sha256=00".to_owned()), Some(sign("wrong-secret", &body))] {
        let res = post(body.clone(), sig).await.unwrap();
        assert_eq!(res.status(), 401);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_signature");
    }
    // Signed garbage is malformed JSON, stored nowhere.
    let res = post(b"{nope".to_vec(), Some(sign("first-secret-0123456789", b"{nope"))).await.unwrap();
    assert_eq!(res.status(), 400);
    let messages = |app: &common::TestApp| {
        let token = admin.clone();
        let client = app.client.clone();
        let u = app.url("/api/v1/social/messages");
        async move {
            client.get(u).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()["count"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(messages(&f.app).await, 0);
    // Sent twice by the provider: stored once, one event.
    for _ in 0..2 {
        let res = post(body.clone(), Some(sign("first-secret-0123456789", &body))).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(messages(&f.app).await, 1);
    // A rotation: the new secret and the previous one both sign.
    let (s, _) = send(
        &f.app,
        Method::PUT,
        "/social/channels",
        Some(&admin),
        Some(json!({
        "channel_type": "whatsapp", "account_id": "1555", "webhook_secret": "second-secret-0123456789"})),
    )
    .await;
    assert_eq!(s, 200);
    let b2 = whatsapp("wamid.2", "hello");
    assert_eq!(post(b2.clone(), Some(sign("first-secret-0123456789", &b2))).await.unwrap().status(), 200);
    let b3 = whatsapp("wamid.3", "yes");
    assert_eq!(post(b3.clone(), Some(sign("second-secret-0123456789", &b3))).await.unwrap().status(), 200);
    let (s, _) = send(
        &f.app,
        Method::PUT,
        "/social/channels",
        Some(&admin),
        Some(json!({
        "channel_type": "whatsapp", "account_id": "1555", "finish_rotation": true})),
    )
    .await;
    assert_eq!(s, 200);
    let b4 = whatsapp("wamid.4", "late");
    assert_eq!(post(b4.clone(), Some(sign("first-secret-0123456789", &b4))).await.unwrap().status(), 401);
    assert_eq!(messages(&f.app).await, 3);
    let mut conn = f.app.db.db().conn().await.unwrap();
    let rows = outbox::for_business(&mut conn, biz).await.unwrap();
    let received: Vec<_> = rows.iter().filter(|r| r.event_type == "social.message.received").collect();
    assert_eq!(received.len(), 3);
    assert_eq!(received[0].envelope["data"]["provider_message_id"], "wamid.1");
    assert_eq!(received[0].envelope["data"]["text"], "I want to order a scarf");
    // Another business's id in the URL: no channel there, nothing signs.
    let other = f.app.url(&format!("/api/v1/social/webhook/whatsapp?business_id={}", f.b.tenant.business_id));
    let res = f
        .app
        .client
        .post(other)
        .header("X-Hub-Signature-256", sign("second-secret-0123456789", &b3))
        .body(b3.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Meta's GET verification.
    let get = |token: &str| {
        f.app.client.get(f.app.url(&format!(
            "/api/v1/social/webhook/whatsapp?business_id={biz}&hub.mode=subscribe&hub.verify_token={token}&hub.challenge=12345"
        ))).send()
    };
    let res = get("verify-me").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "12345");
    let res = get("wrong").await.unwrap();
    assert_eq!(res.status(), 403);
    f.app.stop().await;
}

#[tokio::test]
async fn bad_input_is_answered_in_the_envelope() {
    let mut f = fixture_with(&[("ATELIER__HTTP__BODY_LIMIT", "2048")]).await;
    let admin = f.a.token("admin").to_owned();
    let url = f.app.url("/api/v1/products");
    let raw = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut r = f.app.client.post(&url).bearer_auth(&admin).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        async move {
            let res = r.send().await.unwrap();
            let s = res.status().as_u16();
            let id = res.headers().get("x-request-id").is_some();
            (s, res.json::<Value>().await.unwrap(), id)
        }
    };
    let (s, v, id) = raw(Some("application/json"), b"{\"name\": ".to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_str(), id), (400, Some("malformed_json"), true), "{v}");
    let (s, v, _) = raw(Some("application/json"), br#"{"name":"x","unit_price_minor":"ten"}"#.to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_field")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("unit_price_minor"), "{v}");
    let (s, v, _) = raw(Some("application/json"), br#"{"unit_price_minor":1}"#.to_vec()).await;
    assert!(s == 400 && v["error"]["message"].as_str().unwrap().contains("name"), "{v}");
    let (s, v, _) = raw(Some("application/json"), br#"{"name":"x","unit_price_minor":-1}"#.to_vec()).await;
    assert!(s == 400 && v["error"]["message"].as_str().unwrap().starts_with("unit_price_minor"), "{v}");
    let (s, v, _) = raw(Some("text/plain"), br#"{"name":"x","unit_price_minor":1}"#.to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{v}");
    let (s, v, _) = raw(None, br#"{"name":"x","unit_price_minor":1}"#.to_vec()).await;
    assert_eq!(s, 415, "{v}");
    let big = format!(r#"{{"name":"{}","unit_price_minor":1}}"#, "x".repeat(4096));
    let (s, v, _) = raw(Some("application/json"), big.into_bytes()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("payload_too_large")), "{v}");
    // Oversized webhooks too, before anything is stored.
    let res = f
        .app
        .client
        .post(f.app.url(&format!("/api/v1/social/webhook/whatsapp?business_id={}", f.a.tenant.business_id)))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Unknown routes, ids that are not numbers, methods a route does not take.
    let (s, v) = send(&f.app, Method::GET, "/nope", Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = send(&f.app, Method::GET, "/sales/abc", Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_field")), "{v}");
    let (s, v) = send(&f.app, Method::DELETE, "/sales", Some(&admin), None).await;
    assert_eq!((s, v["success"].as_bool()), (405, Some(false)), "{v}");
    let (s, v) = send(&f.app, Method::GET, "/sales/999999", Some(&admin), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    f.app.stop().await;
}

#[tokio::test]
async fn login_refuses_wrong_passwords_and_disabled_users_and_survives_key_rotation() {
    let mut f = fixture().await;
    let (s, v) = login(&f.app, "cashier@alpha.example", "wrong password").await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{v}");
    let (s, _) = login(&f.app, "nobody@alpha.example", PASSWORD).await;
    assert_eq!(s, 401);
    let (s, v) = login(&f.app, "CASHIER@alpha.example", PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["data"]["user"].get("password_hash").is_none(), "{v}");
    let (s, v) = send(&f.app, Method::GET, "/me", Some(f.a.token("cashier")), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["role"], "cashier");
    assert_eq!(v["data"]["modules"], json!(["sales", "products"]));
    assert_eq!(
        v["data"]["permissions"],
        json!(["sales.view", "sales.create", "sales.complete", "payments.create", "products.view"])
    );
    let (s, _) = send(&f.app, Method::GET, "/me", Some("not.a.token"), None).await;
    assert_eq!(s, 401);
    // Key rotation: the token signed with the old key stays valid, new tokens use the new key.
    let old_token = f.a.token("manager").to_owned();
    let app = f.app.app.as_ref().unwrap();
    let old = app.shared.keys.get();
    let new = KeySet::parse(&KeySet::format(&[("k2", &[7u8; 32])])).unwrap();
    app.shared.keys.replace(new.with_previous(&old));
    let (s, v) = send(&f.app, Method::GET, "/me", Some(&old_token), None).await;
    assert_eq!(s, 200, "a token of the previous key is refused: {v}");
    let (_, v) = login(&f.app, "manager@alpha.example", PASSWORD).await;
    let new_token = v["data"]["token"].as_str().unwrap().to_owned();
    let header: Value = {
        use base64::Engine;
        let h = new_token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    };
    assert_eq!(header["kid"], "k2");
    // Once the old key is dropped, its tokens stop working.
    app.shared.keys.replace(KeySet::parse(&KeySet::format(&[("k2", &[7u8; 32])])).unwrap());
    let (s, _) = send(&f.app, Method::GET, "/me", Some(&old_token), None).await;
    assert_eq!(s, 401);
    let (s, _) = send(&f.app, Method::GET, "/me", Some(&new_token), None).await;
    assert_eq!(s, 200);
    // A disabled user: its live token stops working and it cannot log in.
    let token = f.a.token("auditor").to_owned();
    {
        let mut conn = f.app.db.db().conn().await.unwrap();
        atelier_domain::store::tenancy::set_user_active(&mut conn, f.a.tenant, f.a.id("auditor"), false).await.unwrap();
    }
    let (s, v) = send(&f.app, Method::GET, "/accounting/accounts", Some(&token), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let (s, _) = login(&f.app, "auditor@alpha.example", PASSWORD).await;
    assert_eq!(s, 401);
    f.app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let mut f = fixture().await;
    let res = f.app.client.get(f.app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = 0;
    for (_, ms) in doc["paths"].as_object().unwrap() {
        ops += ms.as_object().unwrap().len();
    }
    for (m, template, allowed, _) in MATRIX {
        let path = template
            .replace("{sale}", "{id}")
            .replace("{draft}", "{id}")
            .replace("{product}", "{id}")
            .replace("{order}", "{id}")
            .replace("{step}", "{id}");
        let op = &doc["paths"][&path][m.to_lowercase()];
        assert!(op.is_object(), "{m} {path} is missing from openapi.json");
        if *allowed != "-" && path != "/me" {
            assert!(op["x-permission"].is_string(), "{m} {path} declares no permission");
        }
    }
    assert_eq!(ops, MATRIX.len(), "openapi.json and the test matrix disagree: a route is untested or undocumented");
    // The router serves what the document lists: no documented path is unrouted.
    for (path, ms) in doc["paths"].as_object().unwrap() {
        for m in ms.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "1").replace("{channel_type}", "whatsapp");
            let (s, v) = send(&f.app, method(&m.to_uppercase()), &concrete, None, None).await;
            assert!(
                s != 404 || v["error"]["code"] != "not_found" || concrete.contains("/1"),
                "{m} {path} is not routed: {v}"
            );
            assert_ne!(s, 405, "{m} {path} is not routed");
        }
    }
    f.app.stop().await;
}

#[test]
fn signing_keys_are_required_outside_dev_and_test() {
    use atelier_daemon::keys::load_keys;
    let dir = common::environments();
    let test = atelier_domain::config::load_with(&dir, "test", &[]).unwrap();
    assert!(load_keys(&test).unwrap().ephemeral);
    let staging = atelier_domain::config::load_with(
        &dir,
        "staging",
        &[
            ("ATELIER__AUTH__JWT_SECRET".into(), "surely_unset_jwt_key".into()),
            ("ATELIER__SECRETS__BACKEND".into(), "env".into()),
        ],
    )
    .unwrap();
    let err = load_keys(&staging).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    let msg = err.to_string();
    assert!(msg.contains("ATELIER_SECRET_SURELY_UNSET_JWT_KEY") && msg.contains("staging"), "{msg}");
    // Staging's default backend is its encrypted file: without one, say how to create it.
    let staging = atelier_domain::config::load_with(&dir, "staging", &[]).unwrap();
    let msg = load_keys(&staging).unwrap_err().to_string();
    assert!(msg.contains("staging.secrets.json") && msg.contains("secrets init"), "{msg}");
}

#[tokio::test]
async fn a_request_over_the_timeout_is_answered_503_in_the_envelope() {
    let mut app = common::spawn_app_with(
        atelier_daemon::app::Roles { http: true, events: false },
        &[("ATELIER__HTTP__REQUEST_TIMEOUT", "1ms")],
    )
    .await;
    // Login verifies an argon2 hash (tens of milliseconds) even for an unknown email.
    let (s, v) = login(&app, "nobody@example.com", "a password").await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("timeout")), "{v}");
    app.stop().await;
}
