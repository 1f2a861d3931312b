//! The business flows of DOMAIN.md end to end: through the staff API and the
//! daemon's event handlers, on a real PostgreSQL (own database) and RabbitMQ
//! (own namespace), with the `log` notification provider.
//!
//! - phases A–C: a final studio sale → its production order → the assigned
//!   worker completes every step → the order completes, the expenses are
//!   booked, and the customer's notifications are recorded;
//! - phase D: a signed WhatsApp webhook with order intent → a lead.

mod api_support;
mod common;

use api_support::{PASSWORD, send};
use atelier_daemon::app::Roles;
use atelier_domain::auth;
use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::inbound;
use atelier_domain::store::tenancy::{self, NewUser};
use atelier_domain::store::{Tenant, accounting};
use atelier_domain::testing::eventually;
use common::{TestApp, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

struct Studio {
    app: TestApp,
    tenant: Tenant,
    tokens: HashMap<Role, String>,
    ids: HashMap<Role, i64>,
    namespace: String,
}

impl Studio {
    async fn start() -> Studio {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Studio {
        let namespace = format!("t-flow-{}", uuid::Uuid::now_v7().simple());
        let mut vars = vec![("ATELIER__AMQP__NAMESPACE", namespace.as_str())];
        vars.extend_from_slice(extra);
        let app = spawn_app_with(Roles { http: true, events: true }, &vars).await;
        let hash = auth::hash_password(PASSWORD).unwrap();
        let mut conn = app.db.db().conn().await.unwrap();
        let b = tenancy::create_business(&mut conn, "Indigo Studio", "INR".parse().unwrap()).await.unwrap();
        let tenant = Tenant::new(b.id);
        let (mut tokens, mut ids) = (HashMap::new(), HashMap::new());
        for role in Role::ALL {
            let email = format!("{role}@indigo.example");
            let u = tenancy::create_user(
                &mut conn,
                tenant,
                NewUser { email: &email, name: role.as_str(), password_hash: &hash, role, location_id: None },
            )
            .await
            .unwrap();
            let (s, v) = api_support::login(&app, &email, PASSWORD).await;
            assert_eq!(s, 200, "{v}");
            tokens.insert(role, v["data"]["token"].as_str().unwrap().to_owned());
            ids.insert(role, u.id);
        }
        Studio { app, tenant, tokens, ids, namespace }
    }

    async fn call(&self, role: Role, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = send(&self.app, method.clone(), path, Some(&self.tokens[&role]), body).await;
        assert!((200..300).contains(&s), "{method} {path} as {role}: {s} {v}");
        v
    }

    async fn get(&self, role: Role, path: &str) -> Value {
        self.call(role, Method::GET, path, None).await
    }

    /// Polls `path` as `role` until `done` holds for its data.
    async fn wait_for(&self, what: &str, role: Role, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let (token, url, client) =
            (self.tokens[&role].clone(), self.app.url(&format!("/api/v1{path}")), self.app.client.clone());
        let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
        let l2 = last.clone();
        eventually(WAIT, what, || {
            let (token, url, client, last) = (token.clone(), url.clone(), client.clone(), l2.clone());
            let ok = |v: &Value| done(v);
            async move {
                let Ok(res) = client.get(&url).bearer_auth(&token).send().await else { return false };
                let v: Value = res.json().await.unwrap_or(Value::Null);
                let hit = ok(&v["data"]);
                *last.lock().unwrap() = v;
                hit
            }
        })
        .await;
        last.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        self.app.stop().await;
        let mut settings = common::test_config(&self.app.db, &[]).settings;
        settings.amqp.namespace = self.namespace.clone();
        let url = AmqpUrl::resolve(&settings.amqp, &atelier_domain::secrets::EnvSecrets).unwrap();
        if let Ok(conn) = bus::connect(&url, "test teardown", Duration::from_secs(5)).await {
            Topology::standard(&settings).delete(&conn, Duration::from_secs(5)).await.ok();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_studio_sale_is_made_costed_completed_booked_and_notified() {
    use Role::*;
    let s = Studio::start().await;
    // A customer who wrote on WhatsApp before.
    let customer = {
        let mut c = s.app.db.db().conn().await.unwrap();
        inbound::find_or_create_customer(&mut c, s.tenant, "+919800000042").await.unwrap().0
    };
    let saree = s
        .call(
            Manager,
            Method::POST,
            "/products",
            Some(json!({"name": "Bandhani saree", "unit_price_minor": 1_250_000, "requires_production": true})),
        )
        .await;
    let sale = s
        .call(
            Cashier,
            Method::POST,
            "/sales",
            Some(json!({"lines": [{"product_id": saree["data"]["id"], "quantity": 2}], "channel": "whatsapp", "customer_id": customer})),
        )
        .await;
    let sale_id = sale["data"]["id"].as_i64().unwrap();
    let invoice = sale["data"]["invoice_no"].as_str().unwrap().to_owned();

    // Phase A: the daemon creates exactly one production order with the default steps.
    let orders = s
        .wait_for("the production order", Manager, &format!("/production/orders?sale_id={sale_id}"), |d| {
            d.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    let order_id = orders["data"][0]["id"].as_i64().unwrap();
    let order = s.get(Manager, &format!("/production/orders/{order_id}")).await;
    assert_eq!(order["data"]["order_no"], format!("PO-{}", &invoice[4..]));
    let steps: Vec<(i64, String)> = order["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| (st["id"].as_i64().unwrap(), st["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(steps.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["Dyeing", "Handwork", "Stitching"]);

    // Phase B/C: costs (one step free) and assignments, then the worker's progress.
    for ((id, _), cost) in steps.iter().zip([30_000, 0, 45_000]) {
        s.call(Manager, Method::PUT, &format!("/production/steps/{id}/cost"), Some(json!({"cost_minor": cost}))).await;
        s.call(
            Manager,
            Method::POST,
            &format!("/production/steps/{id}/assign"),
            Some(json!({"user_id": s.ids[&ProductionWorker]})),
        )
        .await;
    }
    let mine = s.get(ProductionWorker, "/worker/steps").await;
    assert_eq!(mine["count"], 3);
    assert!(mine["data"][0].get("cost_minor").is_none(), "workers never see costs: {mine}");
    for (id, _) in &steps {
        s.call(
            ProductionWorker,
            Method::POST,
            &format!("/worker/steps/{id}/progress"),
            Some(json!({"completed_qty": 1})),
        )
        .await;
        let done = s
            .call(
                ProductionWorker,
                Method::POST,
                &format!("/worker/steps/{id}/progress"),
                Some(json!({"completed_qty": 2})),
            )
            .await;
        assert_eq!(done["data"]["status"], "completed");
    }
    let order = s.get(Manager, &format!("/production/orders/{order_id}")).await;
    assert_eq!(order["data"]["status"], "completed", "completed with its last step, in the same transaction");
    assert_eq!(order["data"]["total_cost_minor"], 75_000);
    assert!(s.get(ProductionWorker, "/worker/steps").await["count"] == 0, "completed steps are hidden by default");

    // The daemon books one expense per step that cost something.
    let txs = s
        .wait_for("the production expenses", Auditor, "/accounting/transactions?category=Production%20Cost", |d| {
            d.as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
    let mut amounts: Vec<i64> =
        txs["data"].as_array().unwrap().iter().map(|t| t["amount_minor"].as_i64().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, [30_000, 45_000]);
    assert!(txs["data"].as_array().unwrap().iter().all(|t| t["direction"] == "debit"));
    let accounts = s.get(Auditor, "/accounting/accounts").await;
    assert_eq!(accounts["data"][0]["balance_minor"], -75_000);

    // Profit in the cost report: final price − total cost.
    let report = s.get(Auditor, &format!("/production/reports/costs?order_id={order_id}")).await;
    assert_eq!(report["data"]["totals"]["profit_minor"], 2_500_000 - 75_000, "{report}");

    // The customer was told at each stage (log provider: recorded as sent).
    let msgs = s
        // A message is recorded `pending` before its send, then marked: wait for the marks.
        .wait_for("the notifications, sent", Admin, "/social/messages?direction=outbound", |d| {
            d.as_array().is_some_and(|a| a.len() == 4 && a.iter().all(|m| m["status"] != "pending"))
        })
        .await;
    let mut kinds: Vec<&str> =
        msgs["data"].as_array().unwrap().iter().map(|m| m["event_type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["order.ready", "production.completed", "production.created", "sale.created"]);
    assert!(msgs["data"].as_array().unwrap().iter().all(|m| m["status"] == "sent"), "{msgs}");

    // Nothing failed on the way.
    let mut c = s.app.db.db().conn().await.unwrap();
    let (dead, _) = atelier_domain::store::dlq::list(&mut c, &Default::default(), 10, 0).await.unwrap();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let balance = accounting::list_accounts(&mut c, s.tenant).await.unwrap()[0].balance_minor;
    assert_eq!(balance, -75_000);
    drop(c);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_whatsapp_message_with_order_intent_becomes_a_lead() {
    use hmac::{KeyInit, Mac};
    let s = Studio::start().await;
    s.call(
        Role::Admin,
        Method::PUT,
        "/social/channels",
        Some(json!({"channel_type": "whatsapp", "account_id": "1555", "webhook_secret": "flow-secret-0123456789", "verify_token": "v"})),
    )
    .await;
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "1555"},
        "messages": [{"id": "wamid.flow1", "from": "919811112222", "type": "text", "text": {"body": "Hi! I want to order two dupattas"}}]}}]}]}))
    .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"flow-secret-0123456789").unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let url = s.app.url(&format!("/api/v1/social/webhook/whatsapp?business_id={}", s.tenant.business_id));
    for _ in 0..2 {
        // The provider retries: the message is stored once, one lead.
        let res = s
            .app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let leads =
        s.wait_for("the lead", Role::Admin, "/social/leads", |d| d.as_array().is_some_and(|a| !a.is_empty())).await;
    assert_eq!(leads["count"], 1, "{leads}");
    let mut c = s.app.db.db().conn().await.unwrap();
    let (customer, existed) = inbound::find_or_create_customer(&mut c, s.tenant, "919811112222").await.unwrap();
    assert!(existed, "the sender became a customer");
    assert_eq!(leads["data"][0]["customer_id"], customer);
    drop(c);
    s.stop().await;
}

/// The relay is woken in its own process: by the API after a change, and by
/// the consumer after a handler applied an event. With its poll set to an
/// hour, the sale's `sale.created` (raised by the API) and the order's
/// `production.created` (raised by the production handler) are both
/// published, and the order appears, within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_at_once_without_waiting_for_the_poll() {
    use Role::*;
    let s = Studio::start_with(&[("ATELIER__AMQP__OUTBOX_POLL", "1h")]).await;
    let coat = s
        .call(
            Manager,
            Method::POST,
            "/products",
            Some(json!({"name": "Tailored coat", "unit_price_minor": 900_000, "requires_production": true})),
        )
        .await;
    s.call(
        Cashier,
        Method::POST,
        "/sales",
        Some(json!({"lines": [{"product_id": coat["data"]["id"], "quantity": 1}], "channel": "walk_in"})),
    )
    .await;
    s.wait_for("the sale's production order", Manager, "/production/orders", |d| {
        d.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let (db, business) = (s.app.db.db().clone(), s.tenant.business_id);
    eventually(Duration::from_secs(15), "sale.created and production.created published", || {
        let db = db.clone();
        async move {
            let mut conn = db.conn().await.unwrap();
            let rows = atelier_domain::store::outbox::for_business(&mut conn, business).await.unwrap();
            let published: Vec<&str> =
                rows.iter().filter(|r| r.published_at.is_some()).map(|r| r.event_type.as_str()).collect();
            published.contains(&"sale.created") && published.contains(&"production.created")
        }
    })
    .await;
    s.stop().await;
}
