//! Changing production steps: a worker's progress and status (its own steps
//! only), planning, costs and assignment by managers. Completing a step
//! raises `production.step.completed`; completing an order's last step
//! completes the order in the same transaction and raises
//! `production.completed` and `order.ready`.

use super::super::schema::{production_orders, production_steps, sales, users};
use super::super::{Conn, StoreError, Tenant, outbox};
use super::{Actor, Order, Step, find_step};
use crate::events::{Event, OrderCompleted, Origin, StepCompleted};
use crate::rules::costing;
use crate::rules::production::{self, StepChange, StepStatus};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Locks a step of the tenant for a change, checking the actor may touch it.
async fn lock_step(conn: &mut Conn, tenant: Tenant, step_id: i64, actor: Option<Actor>) -> Result<Step, StoreError> {
    find_step(conn, tenant, step_id, actor, true).await
}

/// A worker's progress: `completed_qty` units done.
pub async fn record_progress(
    conn: &mut Conn,
    tenant: Tenant,
    step_id: i64,
    actor: Actor,
    completed_qty: i32,
    origin: &Origin,
) -> Result<Step, StoreError> {
    conn.transaction(async |conn| {
        let step = lock_step(conn, tenant, step_id, Some(actor)).await?;
        let change = production::record_progress(&step.state(), completed_qty, Utc::now())?;
        apply_change(conn, tenant, &step, change, origin).await
    })
    .await
}

/// A worker's status change: one stage forward at a time.
pub async fn set_status(
    conn: &mut Conn,
    tenant: Tenant,
    step_id: i64,
    actor: Actor,
    status: StepStatus,
    origin: &Origin,
) -> Result<Step, StoreError> {
    conn.transaction(async |conn| {
        let step = lock_step(conn, tenant, step_id, Some(actor)).await?;
        let change = production::set_status(&step.state(), status, Utc::now())?;
        apply_change(conn, tenant, &step, change, origin).await
    })
    .await
}

async fn apply_change(
    conn: &mut Conn,
    tenant: Tenant,
    step: &Step,
    change: StepChange,
    origin: &Origin,
) -> Result<Step, StoreError> {
    let s = change.state;
    let updated: Step = diesel::update(production_steps::table.find(step.id))
        .set((
            production_steps::completed_qty.eq(s.completed_qty),
            production_steps::status.eq(s.status.as_str()),
            production_steps::started_at.eq(s.started_at),
            production_steps::completed_at.eq(s.completed_at),
            production_steps::updated_at.eq(Utc::now()),
        ))
        .returning(Step::as_returning())
        .get_result(conn)
        .await?;
    refresh_order(conn, tenant, &updated, change.completed_now, origin).await?;
    Ok(updated)
}

/// Brings the order's status in line with its steps (in the same transaction),
/// raising the step's and the order's completion events.
async fn refresh_order(
    conn: &mut Conn,
    tenant: Tenant,
    step: &Step,
    step_completed_now: bool,
    origin: &Origin,
) -> Result<(), StoreError> {
    let order: Order =
        production_orders::table.find(step.order_id).select(Order::as_select()).for_update().first(conn).await?;
    if step_completed_now {
        let event = Event::StepCompleted(StepCompleted {
            step_id: step.id,
            order_id: order.id,
            order_no: order.order_no.clone(),
            name: step.name.clone(),
            cost_minor: step.cost_minor,
            currency: order.currency.clone(),
            completed_at: step.completed_at.unwrap_or_else(Utc::now),
        });
        outbox::raise(conn, &event, Some(tenant.business_id), origin).await?;
    }
    let statuses: Vec<String> = production_steps::table
        .filter(production_steps::order_id.eq(order.id))
        .select(production_steps::status)
        .load(conn)
        .await?;
    let next = production::order_status(statuses.iter().filter_map(|s| StepStatus::parse(s)));
    if next.as_str() == order.status {
        return Ok(());
    }
    let now = Utc::now();
    let completed_at = (next == StepStatus::Completed).then_some(now);
    diesel::update(production_orders::table.find(order.id))
        .set((
            production_orders::status.eq(next.as_str()),
            production_orders::completed_at.eq(completed_at),
            production_orders::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    if next == StepStatus::Completed {
        let invoice_no = match order.sale_id {
            Some(id) => sales::table.find(id).select(sales::invoice_no).first(conn).await.optional()?,
            None => None,
        };
        let data = OrderCompleted {
            order_id: order.id,
            order_no: order.order_no.clone(),
            sale_id: order.sale_id,
            invoice_no,
            total_cost_minor: order.total_cost_minor,
        };
        outbox::raise(conn, &Event::ProductionCompleted(data.clone()), Some(tenant.business_id), origin).await?;
        outbox::raise(conn, &Event::OrderReady(data), Some(tenant.business_id), origin).await?;
    }
    Ok(())
}

/// Plans how many units a step makes.
pub async fn plan_step(conn: &mut Conn, tenant: Tenant, step_id: i64, step_qty: i32) -> Result<Step, StoreError> {
    conn.transaction(async |conn| {
        let step = lock_step(conn, tenant, step_id, None).await?;
        let next = production::plan(&step.state(), step_qty)?;
        Ok(diesel::update(production_steps::table.find(step.id))
            .set((production_steps::step_qty.eq(next.step_qty), production_steps::updated_at.eq(Utc::now())))
            .returning(Step::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}

/// Sets a step's cost (admins and managers) and the order's total cost with it.
/// A completed step's cost is fixed: its expense is already booked.
pub async fn set_step_cost(
    conn: &mut Conn,
    tenant: Tenant,
    step_id: i64,
    cost_minor: i64,
    vendor: Option<String>,
) -> Result<Step, StoreError> {
    costing::validate_cost(cost_minor).map_err(|e| StoreError::invalid("cost_minor", e.to_string()))?;
    conn.transaction(async |conn| {
        let step = lock_step(conn, tenant, step_id, None).await?;
        production::cost_may_change(step.state().status)?;
        let updated: Step = diesel::update(production_steps::table.find(step.id))
            .set((
                production_steps::cost_minor.eq(cost_minor),
                production_steps::vendor.eq(vendor.or(step.vendor.clone())),
                production_steps::updated_at.eq(Utc::now()),
            ))
            .returning(Step::as_returning())
            .get_result(conn)
            .await?;
        let costs: Vec<i64> = production_steps::table
            .filter(production_steps::order_id.eq(step.order_id))
            .select(production_steps::cost_minor)
            .load(conn)
            .await?;
        let total = costing::total_cost(costs)?;
        diesel::update(production_orders::table.find(step.order_id))
            .set((production_orders::total_cost_minor.eq(total), production_orders::updated_at.eq(Utc::now())))
            .execute(conn)
            .await?;
        Ok(updated)
    })
    .await
}

/// Assigns a step to a user of the same business (or unassigns it with `None`).
pub async fn assign_step(
    conn: &mut Conn,
    tenant: Tenant,
    step_id: i64,
    user_id: Option<i64>,
) -> Result<Step, StoreError> {
    conn.transaction(async |conn| {
        let step = lock_step(conn, tenant, step_id, None).await?;
        if let Some(uid) = user_id {
            let found: i64 = users::table
                .filter(users::business_id.eq(tenant.business_id).and(users::id.eq(uid)).and(users::active.eq(true)))
                .count()
                .get_result(conn)
                .await?;
            if found == 0 {
                return Err(StoreError::invalid("user_id", "no such active user in this business"));
            }
        }
        production::may_reassign(step.state().status)?;
        Ok(diesel::update(production_steps::table.find(step.id))
            .set((production_steps::assigned_user_id.eq(user_id), production_steps::updated_at.eq(Utc::now())))
            .returning(Step::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}
