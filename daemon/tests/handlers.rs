//! The event handlers called directly, each test with its own database:
//! effects apply once however often (and however concurrently) an event is
//! delivered, and failures are classed as the consumer needs them (transient,
//! retryable, permanent). Notifications talk to a local stand-in for the
//! Graph API that records requests and answers as scripted.

mod common;

use atelier_daemon::events::handler::{Handler, HandlerError, Outcome};
use atelier_daemon::events::handlers::accounting::Accounting;
use atelier_daemon::events::handlers::canary::Canary;
use atelier_daemon::events::handlers::inbound::Inbound;
use atelier_daemon::events::handlers::notifications::Notifications;
use atelier_daemon::events::handlers::production::Production;
use atelier_daemon::events::handlers::providers::log::LogProvider;
use atelier_daemon::events::handlers::providers::whatsapp_cloud::WhatsappCloud;
use atelier_daemon::events::handlers::{self, providers::Provider};
use atelier_daemon::state::{Roles, Shared};
use atelier_domain::events::{Envelope, Event, EventType, Origin, SocialMessageReceived, SystemPing};
use atelier_domain::rules::sale::{Channel, SaleStatus};
use atelier_domain::store::production::{Actor, ForSale};
use atelier_domain::store::sales::{NewLine, NewSale};
use atelier_domain::store::{
    Db, StoreError, Tenant, accounting, canary, inbound, notifications, outbox, production, sales, social,
};
use atelier_domain::testing::{Studio, TestDb, business, studio};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------- fixtures

async fn customer(db: &Db, tenant: Tenant, phone: &str) -> i64 {
    let mut c = db.conn().await.unwrap();
    inbound::find_or_create_customer(&mut c, tenant, phone).await.unwrap().0
}

/// A final sale and the `sale.created` envelope it put in the outbox.
async fn final_sale(db: &Db, tenant: Tenant, product: i64, customer: Option<i64>, channel: Channel) -> (i64, Envelope) {
    let mut c = db.conn().await.unwrap();
    let new = NewSale {
        status: SaleStatus::Final,
        channel,
        location_id: None,
        customer_id: customer,
        notes: None,
        created_by: None,
        lines: vec![NewLine { product_id: product, quantity: 2, unit_price_minor: None }],
    };
    let sale = sales::create(&mut c, tenant, new, &Origin::new("test")).await.unwrap();
    let invoice = sale.sale.invoice_no.clone();
    let env = raised(db, tenant, EventType::SaleCreated)
        .await
        .into_iter()
        .find(|e| e.data_json()["invoice_no"] == invoice.as_str())
        .expect("sale.created raised");
    (sale.sale.id, env)
}

/// The envelopes of `ty` the business raised, oldest first.
async fn raised(db: &Db, tenant: Tenant, ty: EventType) -> Vec<Envelope> {
    let mut c = db.conn().await.unwrap();
    outbox::for_business(&mut c, tenant.business_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event_type == ty.as_str())
        .map(|r| Envelope::from_json(&r.envelope).unwrap())
        .collect()
}

async fn handle(h: &dyn Handler, env: &Envelope) -> Result<Outcome, HandlerError> {
    let typed = Envelope::decode_event(&env.encode()).expect("a known event");
    h.handle(&typed).await
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &Db, sql: &str, business_id: i64) -> i64 {
    let mut c = db.conn().await.unwrap();
    diesel::sql_query(sql).bind::<BigInt, _>(business_id).get_result::<Count>(&mut c).await.unwrap().n
}

// ---------------------------------------------------------------- production

#[tokio::test]
async fn production_creates_one_order_when_the_sale_is_delivered_three_times() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.studio_product, None, Channel::WalkIn).await;
    let h = Production::new(t.db().clone());
    let outcomes = [handle(&h, &env).await.unwrap(), handle(&h, &env).await.unwrap(), handle(&h, &env).await.unwrap()];
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate, Outcome::Duplicate]);
    let mut c = t.db().conn().await.unwrap();
    let order = production::for_sale(&mut c, s.tenant, sale_id).await.unwrap().expect("an order");
    let names: Vec<_> = order.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Dyeing", "Handwork", "Stitching"]);
    let created = raised(t.db(), s.tenant, EventType::ProductionCreated).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].causation_id, Some(env.id), "caused by the sale's event");
    assert_eq!(created[0].correlation_id, env.correlation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_creates_one_order_when_handled_concurrently() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.studio_product, None, Channel::WalkIn).await;
    let h = Arc::new(Production::new(t.db().clone()));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (h, env) = (h.clone(), env.clone());
            tokio::spawn(async move { handle(h.as_ref(), &env).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Applied).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Applied | Outcome::Duplicate)), "{outcomes:?}");
    let mut c = t.db().conn().await.unwrap();
    assert!(production::for_sale(&mut c, s.tenant, sale_id).await.unwrap().is_some());
    let (_, orders) = production::list(&mut c, s.tenant, &Default::default(), 10, 0).await.unwrap();
    assert_eq!(orders, 1);
    assert_eq!(raised(t.db(), s.tenant, EventType::ProductionCreated).await.len(), 1);
}

#[tokio::test]
async fn production_ignores_a_normal_sale_and_refuses_an_event_without_business() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.shelf_product, None, Channel::WalkIn).await;
    let h = Production::new(t.db().clone());
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Ignored);
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Duplicate, "the ignored event is recorded as processed");
    let mut c = t.db().conn().await.unwrap();
    assert!(production::for_sale(&mut c, s.tenant, sale_id).await.unwrap().is_none());

    let mut orphan = env.clone();
    orphan.id = uuid::Uuid::now_v7();
    orphan.business_id = None;
    let err = handle(&h, &orphan).await.unwrap_err();
    assert!(matches!(err, HandlerError::Permanent { kind: "no_business", .. }), "{err:?}");
    // Another business's sale id is not found there: permanent, nothing created.
    let other = business(t.db(), "Other").await;
    let mut foreign = env.clone();
    foreign.id = uuid::Uuid::now_v7();
    foreign.business_id = Some(other.business_id);
    let err = handle(&h, &foreign).await.unwrap_err();
    assert!(matches!(err, HandlerError::Permanent { kind: "not_found", .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_database_is_transient() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let (_, env) = final_sale(t.db(), s.tenant, s.studio_product, None, Channel::WalkIn).await;
    let gone = Db::new(t.url().with_database("atelier_no_such_database"), 1, Duration::from_secs(2)).unwrap();
    let err = handle(&Production::new(gone), &env).await.unwrap_err();
    assert!(matches!(err, HandlerError::Transient(_)), "{err:?}");
}

// ---------------------------------------------------------------- accounting

/// A studio order whose steps cost `costs`, with its first two steps
/// completed; returns their `production.step.completed` envelopes.
async fn completed_steps(db: &Db, s: &Studio, costs: [i64; 3]) -> Vec<Envelope> {
    let (sale_id, _) = final_sale(db, s.tenant, s.studio_product, None, Channel::WalkIn).await;
    let mut c = db.conn().await.unwrap();
    let ForSale::Created(order) =
        production::create_for_sale(&mut c, s.tenant, sale_id, &Origin::new("test")).await.unwrap()
    else {
        panic!("no order")
    };
    let actor = Actor { user_id: 0, own_steps_only: false };
    for (step, cost) in order.steps.iter().zip(costs) {
        production::set_step_cost(&mut c, s.tenant, step.id, cost, None).await.unwrap();
    }
    for step in &order.steps[..2] {
        production::record_progress(&mut c, s.tenant, step.id, actor, 2, &Origin::new("test")).await.unwrap();
    }
    raised(db, s.tenant, EventType::StepCompleted).await
}

#[tokio::test]
async fn accounting_books_a_step_expense_once_and_nothing_for_a_free_step() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let steps = completed_steps(t.db(), &s, [1200, 0, 300]).await;
    assert_eq!(steps.len(), 2);
    let h = Accounting::new(t.db().clone());
    let outcomes = [handle(&h, &steps[0]).await.unwrap(), handle(&h, &steps[0]).await.unwrap()];
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Duplicate]);
    // The same step announced again by another event still books once.
    let mut again = steps[0].clone();
    again.id = uuid::Uuid::now_v7();
    assert_eq!(handle(&h, &again).await.unwrap(), Outcome::Duplicate);
    assert_eq!(handle(&h, &steps[1]).await.unwrap(), Outcome::Ignored, "cost 0 books nothing");
    let mut c = t.db().conn().await.unwrap();
    let (txs, n) = accounting::list_transactions(&mut c, s.tenant, &Default::default(), 10, 0).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!((txs[0].amount_minor, txs[0].category.as_str()), (1200, "Production Cost"));
    assert_eq!(accounting::list_accounts(&mut c, s.tenant).await.unwrap()[0].balance_minor, -1200);
}

// ---------------------------------------------------------------- notifications: the Graph API stand-in

#[derive(Debug, Clone, Copy)]
enum Answer {
    Accept,
    Status(u16),
    /// Never answers (past any client timeout).
    Hang,
}

#[derive(Debug, Clone)]
struct Request {
    phone_number_id: String,
    authorization: Option<String>,
    body: serde_json::Value,
}

struct GraphState {
    token: String,
    script: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<Request>>,
}

/// A local stand-in for `POST /{phone_number_id}/messages`: checks the bearer
/// token, records each request and answers as scripted (then accepts).
struct Graph {
    base_url: String,
    state: Arc<GraphState>,
}

impl Graph {
    async fn start(token: &str, script: &[Answer]) -> Graph {
        let state = Arc::new(GraphState {
            token: token.to_owned(),
            script: Mutex::new(script.iter().copied().collect()),
            requests: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/{phone_number_id}/messages", axum::routing::post(messages))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Graph { base_url: format!("http://{addr}"), state }
    }

    fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    fn provider(&self, timeout: Duration) -> Arc<dyn Provider> {
        Arc::new(WhatsappCloud::new(&self.base_url, timeout))
    }
}

fn graph_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": "OAuthException", "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

async fn messages(
    State(s): State<Arc<GraphState>>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let n = {
        let mut requests = s.requests.lock().unwrap();
        requests.push(Request { phone_number_id, authorization: authorization.clone(), body: body.clone() });
        requests.len()
    };
    if authorization.as_deref() != Some(&format!("Bearer {}", s.token)) {
        // Echoes what it got, so the test can check the client never repeats it.
        let got = authorization.unwrap_or_default();
        return graph_error(StatusCode::UNAUTHORIZED, &format!("Invalid OAuth access token - {got}"));
    }
    let answer = s.script.lock().unwrap().pop_front().unwrap_or(Answer::Accept);
    match answer {
        Answer::Accept => {
            let to = body["to"].clone();
            axum::Json(serde_json::json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": format!("wamid.test-{n}")}],
            }))
            .into_response()
        }
        Answer::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            graph_error(status, &format!("scripted {code}"))
        }
        Answer::Hang => std::future::pending().await,
    }
}

const TOKEN: &str = "EAAtest-secret-token";
const PHONE: &str = "+919876543210";
const TIMEOUT: Duration = Duration::from_millis(400);

/// A business with a WhatsApp channel (phone number id 1098765432) whose
/// token is `token`, and a customer with a phone.
async fn notified_studio(db: &Db, token: &str) -> (Studio, i64) {
    let s = studio(db, "Indigo Studio").await;
    let mut c = db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO social_channels (business_id, channel_type, account_id, access_token, webhook_secret)
         VALUES ($1, 'whatsapp', '1098765432', $2, 'whsec')",
    )
    .bind::<BigInt, _>(s.tenant.business_id)
    .bind::<Nullable<Text>, _>(Some(token))
    .execute(&mut c)
    .await
    .unwrap();
    let customer = customer(db, s.tenant, PHONE).await;
    (s, customer)
}

async fn outbound(db: &Db, tenant: Tenant, event_type: &str, reference: &str) -> Vec<notifications::Message> {
    let mut c = db.conn().await.unwrap();
    notifications::outbound_for(&mut c, tenant, event_type, reference).await.unwrap()
}

fn notifier(db: &Db, provider: Arc<dyn Provider>) -> Notifications {
    Notifications::new(db.clone(), provider, TIMEOUT * 2)
}

#[tokio::test]
async fn a_provider_answering_503_twice_then_200_sends_once_and_never_again() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[Answer::Status(503), Answer::Status(503)]).await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await;
    let h = notifier(t.db(), graph.provider(TIMEOUT));
    for _ in 0..2 {
        let err = handle(&h, &env).await.unwrap_err();
        assert!(matches!(err, HandlerError::Retryable { kind: "provider_unavailable", .. }), "{err:?}");
    }
    let reference = format!("sale:{sale_id}");
    let pending = outbound(t.db(), s.tenant, "sale.created", &reference).await;
    assert_eq!((pending.len(), pending[0].status.as_str(), pending[0].attempts), (1, "pending", 2));
    assert!(pending[0].error.as_deref().unwrap_or_default().contains("503"));

    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Applied);
    let requests = graph.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.phone_number_id, "1098765432");
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    }
    let body = &requests[2].body;
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["type"], "text");
    assert_eq!(body["to"], "919876543210");
    let invoice = env.data_json()["invoice_no"].as_str().unwrap().to_owned();
    assert_eq!(body["text"]["body"], format!("Thank you for your order {invoice}. Total: 50.00 USD."));
    let sent = outbound(t.db(), s.tenant, "sale.created", &reference).await;
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!((m.status.as_str(), m.provider_message_id.as_deref()), ("sent", Some("wamid.test-3")));
    assert_eq!(
        (m.phone.as_deref(), m.customer_id, m.channel_type.as_str()),
        (Some(PHONE), Some(customer_id), "whatsapp")
    );
    assert!(m.error.is_none());

    // Redelivered, or raised again under a new event id: nothing more is sent.
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Duplicate);
    let mut again = env.clone();
    again.id = uuid::Uuid::now_v7();
    assert_eq!(handle(&h, &again).await.unwrap(), Outcome::Duplicate);
    assert_eq!(graph.requests().len(), 3);
    assert_eq!(outbound(t.db(), s.tenant, "sale.created", &reference).await.len(), 1);
}

#[tokio::test]
async fn provider_failures_are_classed_429_retryable_400_permanent_timeout_retryable() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[Answer::Status(429), Answer::Status(400), Answer::Hang]).await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let h = notifier(t.db(), graph.provider(TIMEOUT));
    let mut envs = Vec::new();
    for _ in 0..3 {
        envs.push(final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await);
    }
    let err = handle(&h, &envs[0].1).await.unwrap_err();
    assert!(matches!(err, HandlerError::Retryable { kind: "rate_limited", .. }), "{err:?}");
    let err = handle(&h, &envs[1].1).await.unwrap_err();
    assert!(matches!(err, HandlerError::Permanent { kind: "provider_refused", .. }), "{err:?}");
    let failed = outbound(t.db(), s.tenant, "sale.created", &format!("sale:{}", envs[1].0)).await;
    assert_eq!(failed[0].status, "failed");
    let started = std::time::Instant::now();
    let err = handle(&h, &envs[2].1).await.unwrap_err();
    assert!(matches!(err, HandlerError::Retryable { kind: "timeout", .. }), "{err:?}");
    assert!(started.elapsed() < TIMEOUT * 10, "the timeout bounds the send");
    // The timed-out attempt recorded its error, so the next delivery sends at once.
    assert_eq!(handle(&h, &envs[2].1).await.unwrap(), Outcome::Applied);
    assert_eq!(graph.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_while_another_is_sending_waits_instead_of_sending_twice() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[Answer::Hang]).await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let (_, env) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await;
    // The first delivery's provider call hangs (a slow provider, or a daemon
    // that lost its broker connection mid-send).
    let slow = Duration::from_secs(30);
    let first = {
        let h = Notifications::new(t.db().clone(), graph.provider(slow), slow * 2);
        let env = env.clone();
        tokio::spawn(async move { handle(&h, &env).await })
    };
    atelier_domain::testing::eventually(Duration::from_secs(10), "the first send reaches the provider", || async {
        !graph.requests().is_empty()
    })
    .await;
    let h = Notifications::new(t.db().clone(), graph.provider(slow), slow * 2);
    let err = handle(&h, &env).await.unwrap_err();
    assert!(matches!(err, HandlerError::Retryable { kind: "in_flight", .. }), "{err:?}");
    assert_eq!(graph.requests().len(), 1, "the redelivery did not send");
    first.abort();
}

#[tokio::test]
async fn a_wrong_token_is_permanent_and_never_shows_in_the_error_or_the_message() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[]).await;
    let stale = "EAAstale-token-do-not-leak";
    let (s, customer_id) = notified_studio(t.db(), stale).await;
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await;
    let err = handle(&notifier(t.db(), graph.provider(TIMEOUT)), &env).await.unwrap_err();
    assert!(matches!(err, HandlerError::Permanent { kind: "provider_refused", .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("401") && !shown.contains(stale), "{shown}");
    let m = &outbound(t.db(), s.tenant, "sale.created", &format!("sale:{sale_id}")).await[0];
    assert!(!m.error.as_deref().unwrap_or_default().contains(stale));
}

#[tokio::test]
async fn a_template_variable_the_event_lacks_is_permanent_and_sends_nothing() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[]).await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let mut c = t.db().conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO notification_templates (business_id, event_type, body) VALUES ($1, 'sale.created', 'Paid {{amount}}')",
    )
    .bind::<BigInt, _>(s.tenant.business_id)
    .execute(&mut c)
    .await
    .unwrap();
    let (sale_id, env) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await;
    let err = handle(&notifier(t.db(), graph.provider(TIMEOUT)), &env).await.unwrap_err();
    assert!(
        matches!(&err, HandlerError::Permanent { kind: "template", reason } if reason.contains("amount")),
        "{err:?}"
    );
    assert!(graph.requests().is_empty());
    assert!(outbound(t.db(), s.tenant, "sale.created", &format!("sale:{sale_id}")).await.is_empty());
}

#[tokio::test]
async fn the_business_template_is_used_and_nobody_to_message_is_ignored() {
    let t = TestDb::new().await;
    let graph = Graph::start(TOKEN, &[]).await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let mut c = t.db().conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO notification_templates (business_id, event_type, body) VALUES ($1, 'sale.created', '{{invoiceNo}}: {{ total }}')",
    )
    .bind::<BigInt, _>(s.tenant.business_id)
    .execute(&mut c)
    .await
    .unwrap();
    let h = notifier(t.db(), graph.provider(TIMEOUT));
    let (_, env) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::Whatsapp).await;
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Applied);
    let invoice = env.data_json()["invoice_no"].as_str().unwrap().to_owned();
    assert_eq!(graph.requests()[0].body["text"]["body"], format!("{invoice}: 50.00 USD"));

    // No customer; a customer without a phone; a walk-in sale: nothing sent.
    let (_, no_customer) = final_sale(t.db(), s.tenant, s.shelf_product, None, Channel::Whatsapp).await;
    let phoneless: i64 = {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        diesel::sql_query("INSERT INTO customers (business_id, name) VALUES ($1, 'Walk-in') RETURNING id")
            .bind::<BigInt, _>(s.tenant.business_id)
            .get_result::<Id>(&mut c)
            .await
            .unwrap()
            .id
    };
    let (_, no_phone) = final_sale(t.db(), s.tenant, s.shelf_product, Some(phoneless), Channel::Whatsapp).await;
    let (_, walk_in) = final_sale(t.db(), s.tenant, s.shelf_product, Some(customer_id), Channel::WalkIn).await;
    for env in [&no_customer, &no_phone, &walk_in] {
        assert_eq!(handle(&h, env).await.unwrap(), Outcome::Ignored);
        assert_eq!(handle(&h, env).await.unwrap(), Outcome::Duplicate);
    }
    assert_eq!(graph.requests().len(), 1);
}

#[tokio::test]
async fn order_and_payment_events_notify_with_their_own_reference() {
    let t = TestDb::new().await;
    let (s, customer_id) = notified_studio(t.db(), TOKEN).await;
    let (sale_id, sale_env) =
        final_sale(t.db(), s.tenant, s.studio_product, Some(customer_id), Channel::Whatsapp).await;
    handle(&Production::new(t.db().clone()), &sale_env).await.unwrap();
    let mut c = t.db().conn().await.unwrap();
    sales::record_payment(&mut c, s.tenant, sale_id, 1050, "cash", None, &Origin::new("test")).await.unwrap();
    let h = notifier(t.db(), Arc::new(LogProvider));
    let created = raised(t.db(), s.tenant, EventType::ProductionCreated).await;
    let paid = raised(t.db(), s.tenant, EventType::PaymentReceived).await;
    assert_eq!(handle(&h, &created[0]).await.unwrap(), Outcome::Applied);
    assert_eq!(handle(&h, &paid[0]).await.unwrap(), Outcome::Applied);
    let order_id = created[0].data_json()["order_id"].as_i64().unwrap();
    let m = &outbound(t.db(), s.tenant, "production.created", &format!("production_order:{order_id}")).await[0];
    let order_no = created[0].data_json()["order_no"].as_str().unwrap().to_owned();
    assert!(m.body.contains(order_no.as_str()), "{}", m.body);
    // The log provider records the message as sent over no real channel.
    assert_eq!((m.status.as_str(), m.channel_type.as_str()), ("sent", "log"));
    assert!(m.provider_message_id.as_deref().unwrap_or_default().starts_with("log-"));
    let payment_id = paid[0].data_json()["payment_id"].as_i64().unwrap();
    let m = &outbound(t.db(), s.tenant, "payment.received", &format!("payment:{payment_id}")).await[0];
    assert!(m.body.contains("10.50 USD"), "{}", m.body);
}

// ---------------------------------------------------------------- inbound

/// Stores an inbound message as the webhook does and returns its event.
async fn inbound_message(db: &Db, tenant: Tenant, phone: Option<&str>, text: &str) -> Envelope {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let mut c = db.conn().await.unwrap();
    let id = diesel::sql_query(
        "INSERT INTO social_messages (business_id, channel_type, direction, phone, body, status)
         VALUES ($1, 'whatsapp', 'inbound', $2, $3, 'received') RETURNING id",
    )
    .bind::<BigInt, _>(tenant.business_id)
    .bind::<Nullable<Text>, _>(phone)
    .bind::<Text, _>(text)
    .get_result::<Id>(&mut c)
    .await
    .unwrap()
    .id;
    let event = Event::SocialMessageReceived(SocialMessageReceived {
        message_id: id,
        channel_id: 0,
        channel_type: "whatsapp".into(),
        phone: phone.map(str::to_owned),
        text: text.into(),
        provider_message_id: None,
    });
    Envelope::new(&event, Some(tenant.business_id), &Origin::new("test"), Utc::now())
}

const LEADS: &str = "SELECT count(*) AS n FROM leads WHERE business_id = $1";
const SALES: &str = "SELECT count(*) AS n FROM sales WHERE business_id = $1";
const CUSTOMERS: &str = "SELECT count(*) AS n FROM customers WHERE business_id = $1";

#[tokio::test]
async fn order_intent_makes_one_lead_and_creates_the_customer() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let h = Inbound::new(t.db().clone());
    let env = inbound_message(t.db(), s.tenant, Some("+44 7700 900123"), "Hi, I want to order a saree").await;
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Applied);
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Duplicate);
    // Even under a new event id, one message makes one lead.
    let mut again = env.clone();
    again.id = uuid::Uuid::now_v7();
    assert_eq!(handle(&h, &again).await.unwrap(), Outcome::Applied);
    let b = s.tenant.business_id;
    assert_eq!((count(t.db(), LEADS, b).await, count(t.db(), CUSTOMERS, b).await), (1, 1));
    let mut c = t.db().conn().await.unwrap();
    let (customer_id, known) = inbound::find_or_create_customer(&mut c, s.tenant, "+447700900123").await.unwrap();
    assert!(known, "the phone was normalized and linked");
    let lead = &social::list_leads(&mut c, s.tenant, 10, 0).await.unwrap().0[0];
    assert_eq!((lead.customer_id, lead.channel_type.as_str(), lead.status.as_str()), (customer_id, "whatsapp", "new"));
    assert_eq!(count(t.db(), SALES, b).await, 0, "an order intent makes no sale");
}

#[tokio::test]
async fn a_confirmation_from_a_known_customer_makes_a_draft_sale_and_from_a_stranger_none() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let known = customer(t.db(), s.tenant, "+919800000001").await;
    let h = Inbound::new(t.db().clone());
    // WhatsApp gives the number without the '+' staff typed: still the known customer.
    let env = inbound_message(t.db(), s.tenant, Some("919800000001"), "Yes, please proceed").await;
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Applied);
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Duplicate);
    let mut c = t.db().conn().await.unwrap();
    let (drafts, n) = sales::list(&mut c, s.tenant, &Default::default(), 10, 0).await.unwrap();
    assert_eq!(n, 1);
    let d = &drafts[0];
    assert_eq!(
        (d.status.as_str(), d.channel.as_str(), d.customer_id, d.total_minor),
        ("draft", "whatsapp", Some(known), 0)
    );
    assert_eq!(d.notes.as_deref(), Some("Yes, please proceed"));
    assert!(raised(t.db(), s.tenant, EventType::SaleCreated).await.is_empty(), "a draft raises no sale.created");
    // It cannot be completed while it has no lines.
    let err = sales::complete(&mut c, s.tenant, d.id, &Origin::new("test")).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err:?}");

    let stranger = inbound_message(t.db(), s.tenant, Some("+919800000002"), "yes").await;
    assert_eq!(handle(&h, &stranger).await.unwrap(), Outcome::Applied);
    assert_eq!(count(t.db(), SALES, s.tenant.business_id).await, 1, "no sale for an unknown phone");
    assert_eq!(count(t.db(), CUSTOMERS, s.tenant.business_id).await, 2, "the stranger is now a customer");
    let no_phone = inbound_message(t.db(), s.tenant, None, "I want to buy").await;
    assert_eq!(handle(&h, &no_phone).await.unwrap(), Outcome::Ignored);
    assert_eq!(count(t.db(), LEADS, s.tenant.business_id).await, 0);
}

#[tokio::test]
async fn an_inbound_message_of_another_business_is_not_found() {
    let t = TestDb::new().await;
    let s = studio(t.db(), "Indigo Studio").await;
    let other = business(t.db(), "Other").await;
    let mut env = inbound_message(t.db(), s.tenant, Some("+919800000001"), "I want to order").await;
    env.business_id = Some(other.business_id);
    let err = handle(&Inbound::new(t.db().clone()), &env).await.unwrap_err();
    assert!(matches!(err, HandlerError::Permanent { kind: "not_found", .. }), "{err:?}");
    assert_eq!(count(t.db(), CUSTOMERS, other.business_id).await, 0);
}

// ---------------------------------------------------------------- canary and the registry

#[tokio::test]
async fn the_canary_records_each_ping_once() {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        envelope: serde_json::Value,
    }
    let t = TestDb::new().await;
    let mut c = t.db().conn().await.unwrap();
    // A gate raises the ping through the outbox; the relay would publish this envelope.
    let ping_id = canary::raise(&mut c, &Origin::new("atelier/gate")).await.unwrap();
    let row: Row = diesel::sql_query("SELECT envelope FROM outbox WHERE event_type = 'system.ping'")
        .get_result(&mut c)
        .await
        .unwrap();
    let env = Envelope::from_json(&row.envelope).unwrap();
    assert_eq!(env.event().unwrap(), Event::SystemPing(SystemPing { ping_id }));
    assert!(canary::get(&mut c, ping_id).await.unwrap().is_none(), "not yet handled");
    let h = Canary::new(t.db().clone());
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Applied);
    assert_eq!(handle(&h, &env).await.unwrap(), Outcome::Duplicate);
    let ping = canary::get(&mut c, ping_id).await.unwrap().expect("recorded");
    assert_eq!((ping.event_id, ping.producer.as_str()), (env.id, "atelier/gate"));
    assert!(ping.round_trip() < Duration::from_secs(60));
}

#[tokio::test]
async fn the_registry_builds_every_handler_from_the_configuration() {
    let t = TestDb::new().await;
    let config = common::test_config(&t, &[]);
    let keys = atelier_daemon::keys::Keys::new(atelier_daemon::keys::load_keys(&config).unwrap());
    let shared = Arc::new(Shared {
        config,
        db: t.db().clone(),
        roles: Roles { http: false, events: true },
        shutdown: Default::default(),
        metrics: Default::default(),
        keys,
        outbox_written: Default::default(),
        hashing: atelier_daemon::hashing::HashPool::new(1),
        sales: atelier_domain::store::sales::writer::SalesWriter::start(t.db(), Default::default()).unwrap(),
    });
    let all = handlers::all(&shared);
    let names: Vec<_> = all.iter().map(|h| h.name()).collect();
    assert_eq!(names, ["production", "accounting", "notifications", "inbound", "canary"]);
    let bound: Vec<EventType> = all.iter().flat_map(|h| h.event_types().iter().copied()).collect();
    for ty in EventType::ALL {
        if ty != EventType::SaleCreated {
            assert_eq!(bound.iter().filter(|b| **b == ty).count(), 1, "{ty} is bound once");
        }
    }
    assert_eq!(bound.iter().filter(|b| **b == EventType::SaleCreated).count(), 2, "production and notifications");
    // Every handler of the registry (what `atelier topology` declares) is built.
    let registered: Vec<_> = atelier_domain::bus::handlers::STANDARD.iter().map(|b| b.name).collect();
    assert_eq!(names, registered);
}
