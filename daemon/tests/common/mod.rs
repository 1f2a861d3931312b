//! `spawn_app()`: atelierd on port 0, with a database of its own (cloned from
//! the migrated template) and, for event tests, a broker namespace of its own.

#![allow(dead_code)]

use atelier_daemon::app::{App, Roles};
use atelier_domain::config;
use atelier_domain::testing::TestDb;
use std::path::PathBuf;

pub struct TestApp {
    pub app: Option<App>,
    pub db: TestDb,
    pub base_url: String,
    pub client: reqwest::Client,
}

pub fn environments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments")
}

/// The test environment's configuration pointed at `db`, plus `extra` overrides.
pub fn test_config(db: &TestDb, extra: &[(&str, &str)]) -> config::Resolved {
    let mut vars = vec![("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url()))];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load_with(&environments(), "test", &vars).expect("test configuration")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Roles { http: true, events: false }, &[]).await
}

pub async fn spawn_app_with(roles: Roles, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await;
    let config = test_config(&db, extra);
    let app = App::start(config, roles).await.expect("atelierd starts");
    let addr = app.http_addr.expect("HTTP is served");
    TestApp { app: Some(app), db, base_url: format!("http://{addr}"), client: reqwest::Client::new() }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("clean stop");
        }
    }
}
