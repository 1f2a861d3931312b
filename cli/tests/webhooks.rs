//! `atelier webhooks urls`: the URL it prints is the one atelierd answers
//! the provider's verification on (the real binary, a real atelierd on port
//! 0 with its own database).

mod support;

use atelier_domain::store::social::{self, ChannelConfig};
use atelier_domain::testing::{TestDb, business};
use support::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_url_is_where_atelierd_answers_the_providers_verification() {
    let db = TestDb::new().await;
    let (app, base) = support::serve(&db).await;
    let (a, b) = (business(db.db(), "Alpha").await, business(db.db(), "Beta").await);
    let mut c = db.db().conn().await.unwrap();
    let channel = |t: &str, verify: Option<&str>| ChannelConfig {
        channel_type: t.into(),
        account_id: "1555".into(),
        webhook_secret: Some("a-webhook-secret-0123456789".into()),
        verify_token: verify.map(str::to_owned),
        ..Default::default()
    };
    social::configure(&mut c, a, channel("whatsapp", Some("verify-me"))).await.unwrap();
    social::configure(&mut c, b, channel("instagram", None)).await.unwrap();

    let url = format!("{:?}", db.url());
    let env = [("ATELIER__DATABASE__URL", url.as_str()), ("ATELIER__HTTP__PUBLIC_BASE_URL", base.as_str())];
    let out = support::atelier(&["--env", "test", "webhooks", "urls", "--output", "json"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let doc = json(&out);
    assert_eq!(doc["count"], 2);
    let rows = doc["data"].as_array().unwrap();
    assert_eq!(rows[0]["business"], "Alpha");
    assert_eq!(rows[1]["has_verify_token"], false);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("a-webhook-secret"), "no secret printed");

    // Registering the URL: Meta calls it with the verify token and a challenge.
    let registered = rows[0]["url"].as_str().unwrap();
    let probe = format!("{registered}&hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=4242");
    let res = reqwest::get(&probe).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "4242");

    // One studio only, in text: its URL, and the missing verify token said.
    let only = b.business_id.to_string();
    let out = support::atelier(&["--env", "test", "webhooks", "urls", "--business-id", &only], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{base}/api/v1/social/webhook/instagram?business_id={only}")), "{text}");
    assert!(text.contains("no verify token set") && !text.contains("Alpha"), "{text}");
    app.stop().await.unwrap();
}
