//! `/api/v1`: the staff apps' API. This file owns the route table: each route
//! is declared once, with its method, path, the one permission it needs and
//! its documentation; the router (with the permission guard as a per-route
//! layer) and the OpenAPI document (`/api/v1/openapi.json`) are both built
//! from that table, so neither can miss a route. Also here: the request id,
//! timeout and panic guard every API request goes through, the body limit, and
//! the envelope for unknown paths and methods.
//!
//! One module per resource: [`auth`] (login, me, the guard), [`sales`],
//! [`products`], [`production`], [`worker`], [`accounting`], [`social`];
//! [`error`] (envelope, codes), [`extract`] (JSON, query, ids, caller),
//! [`openapi`].

pub mod accounting;
pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod production;
pub mod products;
pub mod sales;
pub mod social;
pub mod worker;

use crate::state::Shared;
use atelier_domain::events::Origin;
use atelier_domain::rules::permissions::Permission;
use atelier_domain::rules::webhook;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use error::ApiError;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The producer name of events raised by API requests.
pub const PRODUCER: &str = "atelierd/http";

/// The origin of events raised by the current request.
pub fn origin() -> Origin {
    Origin::new(PRODUCER)
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, the OpenAPI document).
    Public,
    /// Anyone whose request carries a valid channel signature or verify token (webhooks).
    Signed,
    /// Any authenticated, active user.
    User,
    /// An authenticated user whose role holds the permission.
    Needs(Permission),
}

/// A route's declaration: what the router serves and the document shows.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: &'static str,
    /// In axum's syntax: `/sales/{id}`.
    pub path: &'static str,
    pub access: Access,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Query parameters: (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON body's fields, when the route takes one.
    pub body: Option<&'static str>,
    /// The success status.
    pub status: u16,
    /// Error statuses beyond the common ones (400, 401, 403, 404 on ids, 413, 415).
    pub errors: &'static [u16],
}

struct Entry {
    doc: RouteDoc,
    handler: MethodRouter<Arc<Shared>>,
}

#[allow(clippy::too_many_arguments)]
fn route<H, T>(
    method: &'static str,
    path: &'static str,
    access: Access,
    tag: &'static str,
    summary: &'static str,
    query: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    handler: H,
) -> Entry
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route {path}: unsupported method {other}"),
    };
    let status = if method == "POST" && body.is_some() { 201 } else { 200 };
    Entry {
        doc: RouteDoc { method, path, access, tag, summary, query, body, status, errors: &[] },
        handler: on(filter, handler),
    }
}

impl Entry {
    fn status(mut self, s: u16) -> Self {
        self.doc.status = s;
        self
    }
    fn errors(mut self, e: &'static [u16]) -> Self {
        self.doc.errors = e;
        self
    }
}

const PAGE: [(&str, &str); 2] = [("limit", "page size, 1 to 200 (default 50)"), ("offset", "rows to skip (default 0)")];

/// The route table: every route of `/api/v1`, declared once.
fn table() -> Vec<Entry> {
    use Access::*;
    use Permission::*;
    vec![
        route("POST", "/auth/login", Public, "auth", "Log in: email and password → Bearer token", &[], Some("email, password"), auth::login)
            .status(200).errors(&[429]),
        route("GET", "/me", User, "auth", "The caller: user, role, permissions, modules", &[], None, auth::me),
        route("GET", "/sales", Needs(SalesView), "sales", "List sales, newest first", &[
            ("status", "draft or final"), ("channel", "web, mobile, walk_in, whatsapp, facebook, instagram, telegram"),
            ("customer_id", "a customer's id"), ("from", "created at or after (RFC 3339)"), ("to", "created before (RFC 3339)"),
            PAGE[0], PAGE[1],
        ], None, sales::list_sales),
        route("POST", "/sales", Needs(SalesCreate), "sales", "Create a sale, final (default) or draft",  &[],
            Some("status? (final|draft), channel? (default mobile), customer_id?, location_id?, notes?, lines: [{product_id, quantity, unit_price_minor?}]"),
            sales::create_sale),
        route("GET", "/sales/{id}", Needs(SalesView), "sales", "A sale with its lines and payments", &[], None, sales::get_sale),
        route("PATCH", "/sales/{id}", Needs(SalesCreate), "sales", "Update a draft (lines, notes)", &[], Some("lines?, notes?"), sales::update_sale)
            .errors(&[409]),
        route("POST", "/sales/{id}/complete", Needs(SalesComplete), "sales", "Complete a draft: it becomes final (raises sale.created)", &[], None, sales::complete_sale)
            .errors(&[409]),
        route("POST", "/sales/{id}/payments", Needs(PaymentsCreate), "sales", "Record a payment on a final sale (raises payment.received)", &[], Some("amount_minor, method"), sales::record_payment)
            .errors(&[409, 422]),
        route("GET", "/products", Needs(ProductsView), "products", "List products", &PAGE, None, products::list_products),
        route("GET", "/products/{id}", Needs(ProductsView), "products", "A product", &[], None, products::get_product),
        route("POST", "/products", Needs(ProductsEdit), "products", "Create a product", &[], Some("name, sku?, unit_price_minor, requires_production? (default false)"), products::create_product)
            .errors(&[409]),
        route("PATCH", "/products/{id}", Needs(ProductsEdit), "products", "Update a product", &[], Some("name?, sku?, unit_price_minor?, requires_production?, active?"), products::update_product)
            .errors(&[409]),
        route("GET", "/production/orders", Needs(ProductionView), "production", "List production orders", &[
            ("status", "pending, in_progress or completed"), ("sale_id", "the order of a sale"), PAGE[0], PAGE[1],
        ], None, production::list_orders),
        route("GET", "/production/orders/{id}", Needs(ProductionView), "production", "A production order with its steps", &[], None, production::get_order),
        route("POST", "/production/orders", Needs(ProductionCreate), "production", "Create a production order by hand", &[],
            Some("sale_id? (a final studio sale: its one order), steps? (names; default the business's), step_qty?, final_price_minor?, location_id?"),
            production::create_order).errors(&[409, 422]),
        route("POST", "/production/steps/{id}/assign", Needs(ProductionAssign), "production", "Assign a step to a worker (user_id null unassigns)", &[], Some("user_id"), production::assign_step)
            .status(200).errors(&[422]),
        route("PUT", "/production/steps/{id}/plan", Needs(ProductionAssign), "production", "Plan how many units a step makes", &[], Some("step_qty"), production::plan_step)
            .errors(&[422]),
        route("PUT", "/production/steps/{id}/cost", Needs(ProductionCosts), "production", "Set a step's cost (non-negative; not once completed)", &[], Some("cost_minor, vendor?"), production::set_step_cost)
            .errors(&[422]),
        route("GET", "/production/reports/costs", Needs(ReportsAdvanced), "production", "Cost report: per order (total cost, final price, profit, margin), per step type, totals", &[
            ("order_id", "one order"), ("step_type", "a step name, e.g. Dyeing"), ("from", "orders created at or after (RFC 3339)"), ("to", "orders created before (RFC 3339)"),
        ], None, production::cost_report),
        route("GET", "/worker/steps", Needs(WorkerStepsView), "worker", "The caller's assigned steps (no costs)", &[
            ("include_completed", "true to include completed steps (default false)"),
        ], None, worker::my_steps),
        route("GET", "/worker/steps/{id}", Needs(WorkerStepsView), "worker", "One step (a worker: only its own; no costs)", &[], None, worker::get_step),
        route("POST", "/worker/steps/{id}/progress", Needs(WorkerStepsUpdate), "worker", "Record progress: completed_qty units done", &[], Some("completed_qty"), worker::progress)
            .status(200).errors(&[422]),
        route("POST", "/worker/steps/{id}/status", Needs(WorkerStepsUpdate), "worker", "Move a step one stage forward", &[], Some("status (in_progress|completed)"), worker::set_status)
            .status(200).errors(&[422]),
        route("GET", "/accounting/accounts", Needs(AccountingView), "accounting", "Accounts with balances", &[], None, accounting::list_accounts),
        route("GET", "/accounting/transactions", Needs(AccountingView), "accounting", "List transactions", &[
            ("account_id", "one account"), ("category", "one category"), ("from", "at or after (RFC 3339)"), ("to", "before (RFC 3339)"), PAGE[0], PAGE[1],
        ], None, accounting::list_transactions),
        route("POST", "/accounting/transactions", Needs(AccountingCreate), "accounting", "Book a transaction", &[],
            Some("direction (debit|credit), amount_minor, category, account_id? (default account), reference? (unique), description?"),
            accounting::create_transaction).errors(&[409]),
        route("GET", "/accounting/reports/financial", Needs(AccountingView), "accounting", "Financial report: debits and credits per category, balances", &[
            ("from", "at or after (RFC 3339)"), ("to", "before (RFC 3339)"),
        ], None, accounting::financial_report),
        route("GET", webhook::ROUTE, Signed, "social", "Webhook verification: echoes hub.challenge when hub.verify_token matches", &[
            ("business_id", "the business (in the registered URL)"), ("hub.mode", "subscribe"), ("hub.verify_token", "the channel's verify token"), ("hub.challenge", "echoed as text"),
        ], None, social::verify),
        route("POST", webhook::ROUTE, Signed, "social",
            "Inbound messages; signed: X-Hub-Signature-256: sha256=<hex> (Meta), X-Atelier-Signature-256 or X-Telegram-Bot-Api-Secret-Token (telegram)", &[
            ("business_id", "the business (in the registered URL)"),
        ], Some("the provider's payload (Meta: entry[].changes[].value.messages[]; Telegram: an update)"), social::receive)
            .status(200),
        route("GET", "/social/channels", Needs(BusinessManage), "social", "Channels (secrets never returned)", &[], None, social::list_channels),
        route("PUT", "/social/channels", Needs(BusinessManage), "social", "Create or update a channel (by type and account id)", &[],
            Some("channel_type, account_id, display_number?, access_token?, webhook_secret? (a new one starts a rotation), verify_token?, active?, finish_rotation?"),
            social::configure),
        route("GET", "/social/messages", Needs(SocialView), "social", "Messages in and out", &[
            ("direction", "inbound or outbound"), PAGE[0], PAGE[1],
        ], None, social::list_messages),
        route("GET", "/social/leads", Needs(SocialView), "social", "Leads raised by inbound messages", &PAGE, None, social::list_leads),
        route("GET", "/openapi.json", Public, "meta", "This document", &[], None, openapi::serve),
    ]
}

/// The declarations of every route (the OpenAPI document and tests read them).
pub fn docs() -> Vec<RouteDoc> {
    table().into_iter().map(|e| e.doc).collect()
}

pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Arc<Shared>>> = BTreeMap::new();
    for Entry { doc, handler } in table() {
        let guarded = match doc.access {
            Access::Public | Access::Signed => handler,
            Access::User => handler.route_layer(from_fn_with_state((shared.clone(), None), auth::authorize)),
            Access::Needs(p) => handler.route_layer(from_fn_with_state((shared.clone(), Some(p)), auth::authorize)),
        };
        let merged = match by_path.remove(doc.path) {
            Some(existing) => existing.merge(guarded),
            None => guarded,
        };
        by_path.insert(doc.path, merged);
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    let http = &shared.config.settings.http;
    router
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method")
                .into_response()
        })
        .layer(DefaultBodyLimit::max(http.body_limit))
        .layer(from_fn_with_state(shared.clone(), wake_relay))
        .layer(from_fn_with_state(http.request_timeout, guard))
        .layer(from_fn(request_id))
}

/// After a successful change (any method but GET and HEAD), wakes this
/// process's outbox relay: the change may have raised events, and the relay
/// publishes them now instead of at its next poll.
async fn wake_relay(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let changes = !req.method().is_safe();
    let res = next.run(req).await;
    if changes && res.status().is_success() {
        shared.outbox_written.notify_one();
    }
    res
}

/// A request's id: the caller's `x-request-id` when it is a UUID, else a new one.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub uuid::Uuid);

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .unwrap_or_else(uuid::Uuid::now_v7);
    req.extensions_mut().insert(RequestId(id));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut res = next.run(req).instrument(span.clone()).await;
    if res.status().is_server_error() {
        span.in_scope(|| tracing::error!(status = res.status().as_u16(), "request failed"));
    }
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// The request timeout (503 `timeout`) and the panic guard (500 `internal`,
/// logged and sent to Sentry by its panic integration): a bug never drops the
/// connection without an answer.
async fn guard(axum::extract::State(timeout): axum::extract::State<Duration>, req: Request, next: Next) -> Response {
    let run = std::panic::AssertUnwindSafe(next.run(req)).catch_unwind();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(res)) => res,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ApiError::internal(format!("handler panicked: {what}")).into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {timeout:?}"),
        )
        .into_response(),
    }
}
