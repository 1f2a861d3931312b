//! Production orders and their steps: what they are and the reads of them
//! (an order with its steps, a sale's order, a page of orders, a step as an
//! actor may see it, a worker's assigned steps). Orders are created in
//! [`orders`] (one per final studio sale, whoever races, or by hand); steps
//! change in [`steps`] through the rules of `rules::production`.

mod orders;
mod steps;

pub use crate::rules::production::Actor;
pub use orders::{ForSale, NewOrder, create_for_sale, create_for_sale_in, create_manual, set_step_names};
pub use steps::{assign_step, plan_step, record_progress, set_status, set_step_cost};

use super::schema::{production_orders, production_step_templates, production_steps};
use super::{Conn, Page, StoreError, Tenant};
use crate::rules::production::{DEFAULT_STEPS, StepState, StepStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = production_orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: i64,
    pub business_id: i64,
    pub location_id: Option<i64>,
    pub sale_id: Option<i64>,
    pub order_no: String,
    pub status: String,
    pub total_cost_minor: i64,
    pub final_price_minor: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = production_steps, check_for_backend(diesel::pg::Pg))]
pub struct Step {
    pub id: i64,
    pub business_id: i64,
    pub order_id: i64,
    pub position: i32,
    pub name: String,
    pub step_qty: Option<i32>,
    pub completed_qty: i32,
    pub status: String,
    pub assigned_user_id: Option<i64>,
    pub cost_minor: i64,
    pub vendor: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Step {
    pub fn state(&self) -> StepState {
        StepState {
            step_qty: self.step_qty,
            completed_qty: self.completed_qty,
            status: StepStatus::parse(&self.status).unwrap_or(StepStatus::Pending),
            started_at: self.started_at,
            completed_at: self.completed_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderWithSteps {
    #[serde(flatten)]
    pub order: Order,
    pub steps: Vec<Step>,
}

/// The step names a business makes to order in: its templates, or the defaults.
pub async fn step_names(conn: &mut Conn, tenant: Tenant) -> Result<Vec<String>, StoreError> {
    let names: Vec<String> = production_step_templates::table
        .filter(production_step_templates::business_id.eq(tenant.business_id))
        .order(production_step_templates::position.asc())
        .select(production_step_templates::name)
        .load(conn)
        .await?;
    Ok(if names.is_empty() { DEFAULT_STEPS.iter().map(|s| s.to_string()).collect() } else { names })
}

/// An order of the tenant with its steps in order.
pub async fn get(conn: &mut Conn, tenant: Tenant, order_id: i64) -> Result<OrderWithSteps, StoreError> {
    let order = production_orders::table
        .filter(production_orders::business_id.eq(tenant.business_id).and(production_orders::id.eq(order_id)))
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("production order"))?;
    let steps = steps_of(conn, order.id).await?;
    Ok(OrderWithSteps { order, steps })
}

/// The order of a sale, if it has one.
pub async fn for_sale(conn: &mut Conn, tenant: Tenant, sale_id: i64) -> Result<Option<OrderWithSteps>, StoreError> {
    let id: Option<i64> = production_orders::table
        .filter(production_orders::business_id.eq(tenant.business_id).and(production_orders::sale_id.eq(sale_id)))
        .select(production_orders::id)
        .first(conn)
        .await
        .optional()?;
    match id {
        Some(id) => Ok(Some(get(conn, tenant, id).await?)),
        None => Ok(None),
    }
}

async fn steps_of(conn: &mut Conn, order_id: i64) -> Result<Vec<Step>, StoreError> {
    Ok(production_steps::table
        .filter(production_steps::order_id.eq(order_id))
        .order(production_steps::position.asc())
        .select(Step::as_select())
        .load(conn)
        .await?)
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<StepStatus>,
    pub sale_id: Option<i64>,
}

pub async fn list(
    conn: &mut Conn,
    tenant: Tenant,
    filter: &OrderFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Order>, i64), StoreError> {
    let scoped = || {
        let mut q = production_orders::table.filter(production_orders::business_id.eq(tenant.business_id)).into_boxed();
        if let Some(s) = filter.status {
            q = q.filter(production_orders::status.eq(s.as_str()));
        }
        if let Some(s) = filter.sale_id {
            q = q.filter(production_orders::sale_id.eq(s));
        }
        q
    };
    super::page(
        conn,
        scoped,
        |q| q.order((production_orders::created_at.desc(), production_orders::id.desc())),
        Page::new(limit, offset),
    )
    .await
}

/// A step of the tenant, checked against the actor (a worker: only its own),
/// locked for update when `lock`.
async fn find_step(
    conn: &mut Conn,
    tenant: Tenant,
    step_id: i64,
    actor: Option<Actor>,
    lock: bool,
) -> Result<Step, StoreError> {
    let scope = production_steps::table
        .filter(production_steps::business_id.eq(tenant.business_id).and(production_steps::id.eq(step_id)))
        .select(Step::as_select());
    let step = if lock { scope.for_update().first(conn).await } else { scope.first(conn).await };
    let step = step.optional()?.ok_or(StoreError::NotFound("production step"))?;
    if let Some(a) = actor
        && !a.reaches(step.assigned_user_id)
    {
        return Err(StoreError::Forbidden("this step is assigned to someone else".into()));
    }
    Ok(step)
}

/// A step of the tenant, checked against the actor.
pub async fn step(conn: &mut Conn, tenant: Tenant, step_id: i64, actor: Option<Actor>) -> Result<Step, StoreError> {
    find_step(conn, tenant, step_id, actor, false).await
}

/// The steps assigned to `user_id`; completed ones only when asked for.
pub async fn steps_assigned_to(
    conn: &mut Conn,
    tenant: Tenant,
    user_id: i64,
    include_completed: bool,
) -> Result<Vec<Step>, StoreError> {
    let mut q = production_steps::table
        .filter(
            production_steps::business_id.eq(tenant.business_id).and(production_steps::assigned_user_id.eq(user_id)),
        )
        .into_boxed();
    if !include_completed {
        q = q.filter(production_steps::status.ne(StepStatus::Completed.as_str()));
    }
    Ok(q.order((production_steps::order_id.asc(), production_steps::position.asc()))
        .select(Step::as_select())
        .load(conn)
        .await?)
}
