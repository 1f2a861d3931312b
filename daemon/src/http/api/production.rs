//! `/production`: orders (list, get with steps, create by hand), steps
//! (assign to a worker, plan the quantity, set the cost) and the cost report
//! (per order, per step type, totals; filters order, step type, date range).

use super::error::{ApiError, ApiResult, created, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Id, Page, paged};
use super::origin;
use crate::state::Shared;
use atelier_domain::rules::production::StepStatus;
use atelier_domain::store::production::{self, NewOrder, OrderFilter};
use atelier_domain::store::reports::{self, CostFilter};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    sale_id: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_orders(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    let status = match q.status.as_deref() {
        Some(s) => Some(
            StepStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "expected pending, in_progress or completed"))?,
        ),
        None => None,
    };
    let filter = OrderFilter { status, sale_id: q.sale_id };
    let mut conn = shared.db.conn().await?;
    Ok(paged(production::list(&mut conn, caller.tenant, &filter, page.limit, page.offset).await?))
}

pub async fn get_order(State(shared): State<Arc<Shared>>, caller: Caller, Id(id): Id) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(production::get(&mut conn, caller.tenant, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    sale_id: Option<i64>,
    steps: Option<Vec<String>>,
    step_qty: Option<i32>,
    #[serde(default)]
    final_price_minor: i64,
    location_id: Option<i64>,
}

pub async fn create_order(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult {
    let new = NewOrder {
        sale_id: b.sale_id,
        steps: b.steps,
        step_qty: b.step_qty,
        final_price_minor: b.final_price_minor,
        location_id: b.location_id,
    };
    let mut conn = shared.db.conn().await?;
    Ok(created(production::create_manual(&mut conn, caller.tenant, new, &origin()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The worker; `null` unassigns.
    user_id: Option<i64>,
}

pub async fn assign_step(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<AssignBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(production::assign_step(&mut conn, caller.tenant, id, b.user_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    step_qty: i32,
}

pub async fn plan_step(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<PlanBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(production::plan_step(&mut conn, caller.tenant, id, b.step_qty).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostBody {
    cost_minor: i64,
    vendor: Option<String>,
}

pub async fn set_step_cost(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<CostBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(production::set_step_cost(&mut conn, caller.tenant, id, b.cost_minor, b.vendor).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    order_id: Option<i64>,
    step_type: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

pub async fn cost_report(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult {
    let filter = CostFilter { order_id: q.order_id, step_type: q.step_type, from: q.from, to: q.to };
    let mut conn = shared.db.conn().await?;
    Ok(ok(reports::cost_report(&mut conn, caller.tenant, &filter).await?))
}
