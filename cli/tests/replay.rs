//! `atelier dlq replay` end to end: a notification whose provider keeps
//! failing is dead-lettered after its retries; `--dry-run` shows it and
//! changes nothing; once the provider recovers, a replay delivers it once and
//! marks the letter replayed. Real PostgreSQL, RabbitMQ (own namespace), the
//! real `atelier` binary, and a local stand-in for the WhatsApp Cloud API.

use atelier_daemon::app::{App, Roles};
use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config;
use atelier_domain::events::Origin;
use atelier_domain::rules::sale::{Channel, SaleStatus};
use atelier_domain::store::{products, sales};
use atelier_domain::testing::{TestDb, business, eventually};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use diesel::QueryableByName;
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

/// The Graph API's messages endpoint: 503 while `failing`, else a message id.
#[derive(Default)]
struct Graph {
    failing: AtomicBool,
    calls: AtomicUsize,
    accepted: AtomicUsize,
}

async fn messages(State(g): State<Arc<Graph>>) -> (StatusCode, Json<Value>) {
    g.calls.fetch_add(1, SeqCst);
    if g.failing.load(SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"message": "Service unavailable", "code": 2}})),
        );
    }
    let n = g.accepted.fetch_add(1, SeqCst);
    (StatusCode::OK, Json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.TEST{n}")}]})))
}

async fn start_graph(graph: Arc<Graph>) -> String {
    let app = axum::Router::new().route("/{phone_number_id}/messages", axum::routing::post(messages)).with_state(graph);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    let mut c = db.db().conn().await.unwrap();
    diesel::sql_query(sql).get_result::<N>(&mut c).await.map(|r| r.n).unwrap_or(-1)
}

fn atelier(args: &[&str], vars: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(["--env", "test", "--output", "json"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run atelier")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "atelier failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_after_the_provider_recovers_is_delivered_once() {
    let db = TestDb::new().await;
    let graph = Arc::new(Graph { failing: AtomicBool::new(true), ..Default::default() });
    let base = start_graph(graph.clone()).await;
    let ns = format!("t-replay-{}", uuid::Uuid::now_v7().simple());
    let vars: Vec<(String, String)> = [
        ("ATELIER__DATABASE__URL", format!("{:?}", db.url())),
        ("ATELIER__AMQP__NAMESPACE", ns.clone()),
        ("ATELIER__NOTIFICATIONS__PROVIDER", "whatsapp_cloud".into()),
        ("ATELIER__NOTIFICATIONS__WHATSAPP_BASE_URL", base),
        ("ATELIER__RETRY__MAX_RETRIES", "1".into()),
        ("ATELIER__RETRY__BASE_DELAY", "100ms".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let resolved = config::load_with(&dir, "test", &vars).unwrap();
    let settings = resolved.settings.clone();
    let app = App::start(resolved, Roles { http: false, events: true }).await.expect("atelierd starts");

    // A studio with a WhatsApp channel, a customer, and a final sale to notify.
    let tenant = business(db.db(), "Replay studio").await;
    let b = tenant.business_id;
    {
        use diesel_async::RunQueryDsl;
        let mut c = db.db().conn().await.unwrap();
        diesel::sql_query(format!(
            "INSERT INTO social_channels (business_id, channel_type, account_id, access_token, webhook_secret) \
             VALUES ({b}, 'whatsapp', '1234567890', 'test-token', 'whsec')"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        diesel::sql_query(format!(
            "INSERT INTO customers (business_id, name, phone) VALUES ({b}, 'Asha', '+919800000001')"
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }
    let customer = count(&db, &format!("SELECT id AS n FROM customers WHERE business_id = {b}")).await;
    let mut c = db.db().conn().await.unwrap();
    let product = products::create(
        &mut c,
        tenant,
        products::NewProduct { name: "Spool".into(), sku: None, unit_price_minor: 500, requires_production: false },
    )
    .await
    .unwrap();
    sales::create(
        &mut c,
        tenant,
        sales::NewSale {
            status: SaleStatus::Final,
            channel: Channel::Whatsapp,
            location_id: None,
            customer_id: Some(customer),
            notes: None,
            created_by: None,
            lines: vec![sales::NewLine { product_id: product.id, quantity: 1, unit_price_minor: None }],
        },
        &Origin::new("test"),
    )
    .await
    .unwrap();

    // 1 + max_retries attempts, all 503: one dead letter.
    eventually(Duration::from_secs(30), "the notification is dead-lettered", || async {
        count(&db, "SELECT count(*) AS n FROM dead_letters WHERE handler = 'notifications'").await == 1
    })
    .await;
    assert_eq!(graph.calls.load(SeqCst), 2, "one attempt and one retry");

    let dry = json_of(&atelier(&["dlq", "replay", "--handler", "notifications", "--dry-run"], &vars));
    assert_eq!(dry["data"]["would_replay"], 1, "{dry}");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM dead_letters WHERE status = 'dead'").await,
        1,
        "dry run changed nothing"
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM dead_letter_replays").await, 0);

    graph.failing.store(false, SeqCst);
    let done = json_of(&atelier(&["dlq", "replay", "--handler", "notifications", "--actor", "ops@studio"], &vars));
    assert_eq!(done["data"]["replayed"], 1, "{done}");
    eventually(Duration::from_secs(20), "the replayed notification is sent", || async {
        count(&db, "SELECT count(*) AS n FROM social_messages WHERE direction = 'outbound' AND status = 'sent'").await
            == 1
    })
    .await;
    assert_eq!(graph.accepted.load(SeqCst), 1, "delivered once");
    let shown = json_of(&atelier(&["dlq", "list", "--handler", "notifications"], &vars));
    assert_eq!(shown["data"][0]["status"], "replayed");
    let id = shown["data"][0]["id"].as_i64().unwrap().to_string();
    let letter = json_of(&atelier(&["dlq", "show", &id], &vars));
    assert_eq!(letter["data"]["replays"][0]["actor"], "ops@studio");
    assert!(letter["data"]["replays"][0]["published_at"].is_string());
    // Replaying again finds nothing to do.
    let again = json_of(&atelier(&["dlq", "replay", "--handler", "notifications"], &vars));
    assert_eq!(again["data"]["would_replay"], 0, "{again}");

    app.stop().await.unwrap();
    let url = AmqpUrl::resolve(&settings.amqp, &atelier_domain::secrets::EnvSecrets).unwrap();
    let conn = bus::connect(&url, "test teardown", Duration::from_secs(5)).await.unwrap();
    Topology::standard(&settings).delete(&conn, Duration::from_secs(5)).await.ok();
    tokio::time::sleep(Duration::ZERO).await;
    assert_eq!(graph.accepted.load(SeqCst), 1, "nothing more was sent after the replay");
}
