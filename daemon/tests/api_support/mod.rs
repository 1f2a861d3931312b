//! Fixtures for the API tests: two businesses (A and B), a user of every role
//! in each (plus a second worker in A), logged in over HTTP, and A's records
//! (products, sales, an order with steps assigned to the first worker).

#![allow(dead_code)]

use crate::common::{TestApp, spawn_app, spawn_app_with};
use atelier_daemon::app::Roles;
use atelier_domain::auth;
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::Tenant;
use atelier_domain::store::tenancy::{self, NewUser};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const PASSWORD: &str = "correct horse battery";

pub struct Org {
    pub tenant: Tenant,
    /// role name (and "worker2") → (user id, token)
    pub users: HashMap<String, (i64, String)>,
}

impl Org {
    pub fn token(&self, who: &str) -> &str {
        &self.users[who].1
    }
    pub fn id(&self, who: &str) -> i64 {
        self.users[who].0
    }
}

pub struct Fixture {
    pub app: TestApp,
    pub a: Org,
    pub b: Org,
    pub ids: HashMap<&'static str, i64>,
}

pub async fn send(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(&format!("/api/v1{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    send(app, Method::POST, "/auth/login", None, Some(json!({"email": email, "password": password}))).await
}

async fn org(app: &TestApp, name: &str, hash: &str) -> Org {
    let mut conn = app.db.db().conn().await.unwrap();
    let b = tenancy::create_business(&mut conn, name, "USD".parse().unwrap()).await.unwrap();
    let tenant = Tenant::new(b.id);
    let mut users = HashMap::new();
    let mut who: Vec<(String, Role)> = Role::ALL.iter().map(|r| (r.as_str().to_owned(), *r)).collect();
    who.push(("worker2".into(), Role::ProductionWorker));
    for (label, role) in who {
        let email = format!("{label}@{}.example", name.to_lowercase());
        let u = tenancy::create_user(
            &mut conn,
            tenant,
            NewUser { email: &email, name: &label, password_hash: hash, role, location_id: None },
        )
        .await
        .unwrap();
        let (status, body) = login(app, &email, PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        users.insert(label, (u.id, body["data"]["token"].as_str().unwrap().to_owned()));
    }
    Org { tenant, users }
}

pub async fn fixture() -> Fixture {
    fixture_with(&[]).await
}

pub async fn fixture_with(extra: &[(&str, &str)]) -> Fixture {
    let app = if extra.is_empty() {
        spawn_app().await
    } else {
        spawn_app_with(Roles { http: true, events: false }, extra).await
    };
    let hash = auth::hash_password(PASSWORD).unwrap();
    let a = org(&app, "Alpha", &hash).await;
    let b = org(&app, "Beta", &hash).await;
    let mut ids = HashMap::new();
    let admin = a.token("admin").to_owned();
    let post = async |path: &str, body: Value| {
        let (s, v) = send(&app, Method::POST, path, Some(&admin), Some(body)).await;
        assert!(s == 201 || s == 200, "{path}: {s} {v}");
        v["data"].clone()
    };
    let studio =
        post("/products", json!({"name": "Dyed scarf", "unit_price_minor": 5000, "requires_production": true})).await;
    let plain = post("/products", json!({"name": "Thread", "unit_price_minor": 300})).await;
    let final_sale =
        post("/sales", json!({"lines": [{"product_id": plain["id"], "quantity": 2}], "channel": "walk_in"})).await;
    let draft =
        post("/sales", json!({"status": "draft", "lines": [{"product_id": studio["id"], "quantity": 1}]})).await;
    let order =
        post("/production/orders", json!({"steps": ["Dyeing", "Stitching"], "step_qty": 2, "final_price_minor": 9000}))
            .await;
    ids.insert("product", studio["id"].as_i64().unwrap());
    ids.insert("plain_product", plain["id"].as_i64().unwrap());
    ids.insert("sale", final_sale["id"].as_i64().unwrap());
    ids.insert("draft", draft["id"].as_i64().unwrap());
    ids.insert("order", order["id"].as_i64().unwrap());
    ids.insert("step", order["steps"][0]["id"].as_i64().unwrap());
    ids.insert("step2", order["steps"][1]["id"].as_i64().unwrap());
    for step in ["step", "step2"] {
        let (s, v) = send(
            &app,
            Method::POST,
            &format!("/production/steps/{}/assign", ids[step]),
            Some(&admin),
            Some(json!({"user_id": a.id("production_worker")})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    Fixture { app, a, b, ids }
}

impl Fixture {
    /// Replaces `{sale}`, `{step}`, ... with A's ids.
    pub fn path(&self, template: &str) -> String {
        let mut p = template.to_owned();
        for (k, v) in &self.ids {
            p = p.replace(&format!("{{{k}}}"), &v.to_string());
        }
        p
    }
}
