//! The API under abuse and bad input (issue 15): login lockout per account
//! and per client address (shared by every daemon on the database, lifted by
//! an operator), the bounded hashing pool, input limits (NUL, lengths,
//! counts, ranges) answered 400 naming the field before anything reaches the
//! database, a payment over what a sale owes, and a webhook delivery with one
//! bad message in it.

mod api_support;
mod common;

use api_support::{PASSWORD, fixture_with, login, send};
use atelier_daemon::app::{App, Roles};
use atelier_domain::rules::lockout;
use atelier_domain::store::login_throttle;
use reqwest::Method;
use serde_json::{Value, json};

/// The answer to a login, with its `Retry-After` header.
async fn login_with_retry_after(app: &common::TestApp, email: &str, password: &str) -> (u16, Value, Option<u64>) {
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (status, res.json().await.expect("JSON"), retry)
}

#[tokio::test]
async fn an_account_locks_after_its_failures_for_every_daemon_until_unlocked() {
    let extra = [
        ("ATELIER__AUTH__LOCKOUT_ACCOUNT_FAILURES", "3"),
        ("ATELIER__AUTH__LOCKOUT_CLIENT_FAILURES", "0"),
        ("ATELIER__AUTH__LOCKOUT_DURATION", "10m"),
    ];
    let mut f = fixture_with(&extra).await;
    let email = "cashier@alpha.example";
    let unknown = "nobody@alpha.example";
    // Three failures each: a wrong password and an unknown email answer alike.
    for _ in 0..3 {
        let wrong = login(&f.app, email, "not the password").await;
        let nobody = login(&f.app, unknown, "not the password").await;
        assert_eq!(wrong.0, 401, "{}", wrong.1);
        assert_eq!(wrong, nobody, "an unknown email must be indistinguishable from a wrong password");
    }
    // Locked: the correct password fails too, 429 in the envelope with Retry-After.
    let (status, body, retry) = login_with_retry_after(&f.app, email, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "too_many_attempts");
    let retry = retry.expect("a Retry-After header");
    assert!((1..=600).contains(&retry), "Retry-After {retry}");
    let (status, _, retry_unknown) = login_with_retry_after(&f.app, unknown, "whatever-it-is").await;
    assert_eq!(status, 429);
    assert!(retry_unknown.is_some());
    // Another account is not locked (the address limit is off here).
    assert_eq!(login(&f.app, "manager@alpha.example", PASSWORD).await.0, 200);

    // A second daemon on the same database sees the same lock.
    let config = common::test_config(&f.app.db, &extra);
    let other = App::start(config, Roles { http: true, events: false }).await.expect("second atelierd");
    let other_url = format!("http://{}/api/v1/auth/login", other.http_addr.expect("HTTP"));
    let res = f.app.client.post(&other_url).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(res.status(), 429);

    // An operator lifts it (what `atelier users unlock` calls), recorded in the audit.
    let mut conn = f.app.db.db().conn().await.unwrap();
    let key = lockout::account_key(email);
    assert!(login_throttle::unlock(&mut conn, &key, "on-call").await.unwrap());
    let audit = login_throttle::audit_of(&mut conn, &key).await.unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str()), ("on-call", "unlock"));
    let res = f.app.client.post(&other_url).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // A success forgets the account's failures: two more do not lock it.
    for _ in 0..2 {
        assert_eq!(login(&f.app, email, "not the password").await.0, 401);
    }
    assert_eq!(login(&f.app, email, PASSWORD).await.0, 200);
    other.stop().await.expect("second atelierd stops");
    f.app.stop().await;
}

#[tokio::test]
async fn a_client_address_locks_after_failures_on_any_accounts() {
    let extra = [("ATELIER__AUTH__LOCKOUT_ACCOUNT_FAILURES", "100"), ("ATELIER__AUTH__LOCKOUT_CLIENT_FAILURES", "4")];
    let mut f = fixture_with(&extra).await;
    for i in 0..4 {
        let (s, v) = login(&f.app, &format!("guess{i}@alpha.example"), "not the password").await;
        assert_eq!(s, 401, "{v}");
    }
    // From this address every account is locked out now, even with its password.
    let (status, body, retry) = login_with_retry_after(&f.app, "admin@beta.example", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    let mut conn = f.app.db.db().conn().await.unwrap();
    assert!(login_throttle::unlock(&mut conn, &lockout::client_key("127.0.0.1"), "on-call").await.unwrap());
    assert_eq!(login(&f.app, "admin@beta.example", PASSWORD).await.0, 200);
    f.app.stop().await;
}

/// With one hashing permit, concurrent logins all finish (the permit is
/// always given back), right or wrong.
#[tokio::test]
async fn concurrent_logins_share_a_pool_of_one_permit() {
    let mut f = fixture_with(&[("ATELIER__AUTH__HASH_CONCURRENCY", "1")]).await;
    let app = &f.app;
    let attempts = (0..12).map(|i| async move {
        let password = if i % 3 == 0 { "not the password" } else { PASSWORD };
        login(app, "auditor@beta.example", password).await.0
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "{statuses:?}");
    f.app.stop().await;
}

/// Each bad body or query: 400, the code, and a message that starts with the field's name.
#[tokio::test]
async fn bad_input_is_refused_naming_the_field_before_the_database() {
    let mut f = fixture_with(&[]).await;
    let admin = f.a.token("admin").to_owned();
    let product = f.ids["plain_product"];
    let sale = f.ids["sale"];
    let long_sku = "é".repeat(3000);
    let lines: Vec<Value> = (0..101).map(|_| json!({"product_id": product, "quantity": 1})).collect();
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (Method::POST, "/products".into(), json!({"name": "Sc\u{0}arf", "unit_price_minor": 1}), "name: "),
        (Method::POST, "/products".into(), json!({"name": "Scarf", "sku": long_sku, "unit_price_minor": 1}), "sku: "),
        (
            Method::POST,
            "/products".into(),
            json!({"name": "Scarf", "unit_price_minor": 9_223_372_036_854_775_807i64}),
            "unit_price_minor: ",
        ),
        (
            Method::POST,
            "/products".into(),
            json!({"name": "Scarf", "unit_price_minor": 18_446_744_073_709_551_615u64}),
            "unit_price_minor: ",
        ),
        (Method::POST, "/sales".into(), json!({"lines": lines}), "lines: "),
        (
            Method::POST,
            "/sales".into(),
            json!({"lines": [{"product_id": product, "quantity": 2_000_000_000}]}),
            "lines[0].quantity: ",
        ),
        (
            Method::POST,
            "/sales".into(),
            json!({"lines": [{"product_id": product, "quantity": 1}], "notes": "x\u{0}"}),
            "notes: ",
        ),
        (
            Method::POST,
            "/sales".into(),
            json!({"lines": [{"product_id": product, "quantity": 1, "colour": "red"}]}),
            "lines[0].colour: ",
        ),
        (Method::POST, "/sales".into(), json!({"notes": "no lines"}), "lines: "),
        (Method::POST, "/sales".into(), json!([1, 2]), "body: "),
        (Method::POST, "/sales".into(), json!(7), "body: "),
        (Method::POST, format!("/sales/{sale}/payments"), json!({"amount_minor": 1, "method": "c\u{0}sh"}), "method: "),
        (
            Method::POST,
            "/accounting/transactions".into(),
            json!({"direction": "debit", "amount_minor": 1, "category": "Rent", "reference": "r".repeat(129)}),
            "reference: ",
        ),
        (
            Method::POST,
            "/accounting/transactions".into(),
            json!({"direction": "credit", "amount_minor": -9_000_000_000_000_000_000i64, "category": "Rent"}),
            "amount_minor: ",
        ),
        (Method::POST, "/production/orders".into(), json!({"steps": vec!["Dyeing"; 21]}), "steps: "),
        (
            Method::PUT,
            format!("/production/steps/{}/cost", f.ids["step"]),
            json!({"cost_minor": 5, "vendor": "v\u{0}"}),
            "vendor: ",
        ),
    ];
    for (method, path, body, field) in cases {
        let (s, v) = send(&f.app, method.clone(), &path, Some(&admin), Some(body)).await;
        assert_eq!(s, 400, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_field", "{method} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{method} {path}: '{message}' should start with '{field}'");
    }
    for (query, field) in [
        ("/sales?channel=walk%00in", "channel: "),
        ("/sales?status=final&from=2026-01-01T00:00:00Z%00", "from: "),
        ("/accounting/transactions?category=%00", "category: "),
        (&*format!("/production/reports/costs?step_type={}", "x".repeat(201)), "step_type: "),
        ("/sales?limit=99999999999999999999999", "limit: "),
    ] {
        let (s, v) = send(&f.app, Method::GET, query, Some(&admin), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")), "{query}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(field), "{query}: {v}");
    }
    // Nothing of it was stored: the studio has its two products still.
    let (_, v) = send(&f.app, Method::GET, "/products", Some(&admin), None).await;
    assert_eq!(v["total"], 2, "{v}");
    f.app.stop().await;
}

#[tokio::test]
async fn a_payment_larger_than_what_the_sale_owes_is_refused() {
    let mut f = fixture_with(&[]).await;
    let cashier = f.a.token("cashier").to_owned();
    let path = format!("/sales/{}/payments", f.ids["sale"]);
    let pay = |amount: i64| json!({"amount_minor": amount, "method": "cash"});
    // The fixture's final sale: 2 × 300.
    assert_eq!(send(&f.app, Method::POST, &path, Some(&cashier), Some(pay(400))).await.0, 201);
    let (s, v) = send(&f.app, Method::POST, &path, Some(&cashier), Some(pay(201))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("payment_exceeds_balance")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("amount_minor: "), "{v}");
    assert_eq!(send(&f.app, Method::POST, &path, Some(&cashier), Some(pay(200))).await.0, 201);
    let (s, v) = send(&f.app, Method::POST, &path, Some(&cashier), Some(pay(1))).await;
    assert_eq!(s, 422, "{v}");
    f.app.stop().await;
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

#[tokio::test]
async fn a_webhook_delivery_with_bad_messages_stores_the_good_ones_and_answers_200() {
    let mut f = fixture_with(&[]).await;
    let admin = f.a.token("admin").to_owned();
    let biz = f.a.tenant.business_id;
    let secret = "abuse-secret-0123456789";
    let (s, v) = send(
        &f.app,
        Method::PUT,
        "/social/channels",
        Some(&admin),
        Some(json!({"channel_type": "whatsapp", "account_id": "1555", "webhook_secret": secret})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let message =
        |id: &str, text: &str| json!({"id": id, "from": "15550001111", "type": "text", "text": {"body": text}});
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "1555"},
        "messages": [message("wamid.a", "hello"), message("wamid.b", "bad\u{0}text"), message(&"i".repeat(500), "long id"), message("wamid.c", "I want to order")]}}]}]}))
    .unwrap();
    let url = f.app.url(&format!("/api/v1/social/webhook/whatsapp?business_id={biz}"));
    let res = f
        .app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", sign(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["data"]["received"], 4, "{v}");
    assert_eq!(v["data"]["stored"], 2, "{v}");
    let skipped: Vec<i64> =
        v["data"]["skipped"].as_array().unwrap().iter().map(|s| s["index"].as_i64().unwrap()).collect();
    assert_eq!(skipped, vec![1, 2], "{v}");
    assert!(v["data"]["skipped"][0]["reason"].as_str().unwrap().starts_with("text: "), "{v}");
    let (_, v) = send(&f.app, Method::GET, "/social/messages", Some(&admin), None).await;
    assert_eq!(v["count"], 2, "{v}");
    // A NUL in the webhook's query: 400 naming it, before any signature work.
    let res = f.app.client.post(format!("{url}&x=%00")).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 400);
    f.app.stop().await;
}

/// Keys whose window and lock are over are forgotten as failures come in:
/// however many emails are tried, the table keeps only live keys.
#[tokio::test]
async fn stale_lockout_keys_are_forgotten_and_live_ones_kept() {
    let db = atelier_domain::testing::TestDb::new().await;
    let mut conn = db.db().conn().await.unwrap();
    let minute = std::time::Duration::from_secs(60);
    let limits = lockout::Limits { failures: 2, window: minute, duration: minute };
    let t0 = chrono::Utc::now();
    for i in 0..150 {
        login_throttle::record_failure(&mut conn, &lockout::account_key(&format!("spray{i}@x.example")), &limits, t0)
            .await
            .unwrap();
    }
    let locked = lockout::account_key("locked@x.example");
    for _ in 0..2 {
        login_throttle::record_failure(&mut conn, &locked, &limits, t0).await.unwrap();
    }
    let later = t0 + chrono::Duration::seconds(30);
    let live = lockout::account_key("live@x.example");
    login_throttle::record_failure(&mut conn, &live, &limits, later).await.unwrap();
    // Nothing is stale before its window is over.
    assert_eq!(login_throttle::forget_stale(&mut conn, t0).await.unwrap(), 0);
    // At t0 + 1 s (as if the window were 1 s): the 150 sprayed keys go, 100 at a time;
    // the locked one (until t0 + 60 s) and the live one stay.
    let cut = t0 + chrono::Duration::seconds(1);
    assert_eq!(login_throttle::forget_stale(&mut conn, cut).await.unwrap(), 100);
    assert_eq!(login_throttle::forget_stale(&mut conn, cut).await.unwrap(), 50);
    assert_eq!(login_throttle::forget_stale(&mut conn, cut).await.unwrap(), 0);
    let now = t0 + chrono::Duration::seconds(31);
    assert!(login_throttle::locked_for(&mut conn, std::slice::from_ref(&locked), now).await.unwrap().is_some());
    let state = login_throttle::record_failure(&mut conn, &live, &limits, now).await.unwrap();
    assert_eq!(state.failures, 2, "the live key kept its first failure");
}
