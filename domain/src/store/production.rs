//! Production orders and their steps. An order is created for a final studio
//! sale exactly once, whoever races; steps move through the rules of
//! `rules::production`; completing a step raises `production.step.completed`,
//! and completing an order's last step completes the order in the same
//! transaction and raises `production.completed` and `order.ready`.

use super::schema::{
    production_orders, production_step_templates, production_steps, products, sale_lines, sales, users,
};
use super::{Conn, RuleError, StoreError, Tenant, outbox};
use crate::events::{Event, OrderCompleted, Origin, ProductionCreated, StepCompleted};
use crate::rules::costing;
use crate::rules::production::{self, DEFAULT_STEPS, StepChange, StepState, StepStatus};
use crate::rules::sale::{self, SaleKind, SaleStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
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

/// Replaces the business's default steps (in order).
pub async fn set_step_names(conn: &mut Conn, tenant: Tenant, names: &[String]) -> Result<(), StoreError> {
    if names.is_empty() || names.iter().any(|n| n.trim().is_empty() || n.len() > 100) {
        return Err(StoreError::invalid("steps", "give 1 or more names of 1 to 100 characters"));
    }
    conn.transaction(async |conn| {
        diesel::delete(
            production_step_templates::table.filter(production_step_templates::business_id.eq(tenant.business_id)),
        )
        .execute(conn)
        .await?;
        let rows: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    production_step_templates::business_id.eq(tenant.business_id),
                    production_step_templates::position.eq(i as i32 + 1),
                    production_step_templates::name.eq(n.trim()),
                )
            })
            .collect();
        diesel::insert_into(production_step_templates::table).values(rows).execute(conn).await?;
        Ok(())
    })
    .await
}

/// What creating the order for a sale did.
#[derive(Debug, Clone)]
pub enum ForSale {
    Created(OrderWithSteps),
    /// Another call (a retry, a replay, another daemon) created it first.
    AlreadyExists(i64),
    /// A normal sale: none of its products requires production.
    NotNeeded,
}

/// Creates the production order of a final studio sale, with the business's
/// default steps, and raises `production.created`. Exactly one order per sale:
/// a second call, concurrent or not, finds the first and does nothing.
pub async fn create_for_sale(
    conn: &mut Conn,
    tenant: Tenant,
    sale_id: i64,
    origin: &Origin,
) -> Result<ForSale, StoreError> {
    conn.transaction(async |conn| create_for_sale_in(conn, tenant, sale_id, origin).await).await
}

/// [`create_for_sale`] inside the caller's transaction (a handler records the
/// event as processed in the same one).
pub async fn create_for_sale_in(
    conn: &mut Conn,
    tenant: Tenant,
    sale_id: i64,
    origin: &Origin,
) -> Result<ForSale, StoreError> {
    let sale: (i64, String, String, i64, String, Option<i64>) = sales::table
        .filter(sales::business_id.eq(tenant.business_id).and(sales::id.eq(sale_id)))
        .select((sales::id, sales::invoice_no, sales::status, sales::total_minor, sales::currency, sales::location_id))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("sale"))?;
    let (_, invoice_no, status, total_minor, currency, location_id) = sale;
    if SaleStatus::parse(&status) != Some(SaleStatus::Final) {
        return Err(
            RuleError::Other(format!("sale {invoice_no} is a draft: production starts when it is final")).into()
        );
    }
    let lines: Vec<(i32, bool)> = sale_lines::table
        .inner_join(products::table)
        .filter(sale_lines::sale_id.eq(sale_id).and(sale_lines::business_id.eq(tenant.business_id)))
        .select((sale_lines::quantity, products::requires_production))
        .load(conn)
        .await?;
    if sale::sale_kind(lines.iter().map(|(_, r)| *r)) == SaleKind::Normal {
        return Ok(ForSale::NotNeeded);
    }
    let planned: i32 = lines.iter().filter(|(_, r)| *r).map(|(q, _)| *q).sum();
    let order_no = sale::order_no(&invoice_no);
    let inserted: Option<Order> = diesel::insert_into(production_orders::table)
        .values((
            production_orders::business_id.eq(tenant.business_id),
            production_orders::location_id.eq(location_id),
            production_orders::sale_id.eq(sale_id),
            production_orders::order_no.eq(&order_no),
            production_orders::final_price_minor.eq(total_minor),
            production_orders::currency.eq(&currency),
        ))
        .on_conflict(production_orders::sale_id)
        .do_nothing()
        .returning(Order::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let Some(order) = inserted else {
        let existing = production_orders::table
            .filter(production_orders::sale_id.eq(sale_id))
            .select(production_orders::id)
            .first(conn)
            .await?;
        return Ok(ForSale::AlreadyExists(existing));
    };
    let names = step_names(conn, tenant).await?;
    let steps = insert_steps(conn, tenant, order.id, &names, Some(planned)).await?;
    let event = Event::ProductionCreated(ProductionCreated {
        order_id: order.id,
        order_no: order.order_no.clone(),
        sale_id: Some(sale_id),
        invoice_no: Some(invoice_no),
        steps: names,
    });
    outbox::raise(conn, &event, Some(tenant.business_id), origin).await?;
    Ok(ForSale::Created(OrderWithSteps { order, steps }))
}

async fn insert_steps(
    conn: &mut Conn,
    tenant: Tenant,
    order_id: i64,
    names: &[String],
    step_qty: Option<i32>,
) -> Result<Vec<Step>, StoreError> {
    let rows: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                production_steps::business_id.eq(tenant.business_id),
                production_steps::order_id.eq(order_id),
                production_steps::position.eq(i as i32 + 1),
                production_steps::name.eq(name),
                production_steps::step_qty.eq(step_qty.filter(|q| *q > 0)),
            )
        })
        .collect();
    Ok(diesel::insert_into(production_steps::table)
        .values(rows)
        .returning(Step::as_returning())
        .get_results(conn)
        .await?)
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
    let total = scoped().count().get_result(conn).await?;
    let rows = scoped()
        .order((production_orders::created_at.desc(), production_orders::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Order::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// Who is changing a step. A production worker may change only its own steps.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub user_id: i64,
    /// True for production workers: the step must be assigned to `user_id`.
    pub own_steps_only: bool,
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
        && a.own_steps_only
        && step.assigned_user_id != Some(a.user_id)
    {
        return Err(StoreError::Forbidden("this step is assigned to someone else".into()));
    }
    Ok(step)
}

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
        if step.state().status == StepStatus::Completed {
            return Err(
                RuleError::Other("the step is completed: its cost is booked and can no longer change".into()).into()
            );
        }
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
        if step.state().status == StepStatus::Completed {
            return Err(RuleError::Other("the step is completed and can no longer be reassigned".into()).into());
        }
        Ok(diesel::update(production_steps::table.find(step.id))
            .set((production_steps::assigned_user_id.eq(user_id), production_steps::updated_at.eq(Utc::now())))
            .returning(Step::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
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

/// An order made by hand (no sale behind it, or a sale whose order the
/// event processing has not created yet).
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    /// Create the order of this final studio sale (exactly once per sale).
    pub sale_id: Option<i64>,
    /// Step names in order; the business's defaults when `None`.
    pub steps: Option<Vec<String>>,
    pub step_qty: Option<i32>,
    /// The final price of an order without a sale.
    pub final_price_minor: i64,
    pub location_id: Option<i64>,
}

/// Creates an order by hand and raises `production.created`. With a sale, it
/// is the sale's one order (a second attempt is a conflict); without, it is
/// numbered `PO-M-<id>`.
pub async fn create_manual(
    conn: &mut Conn,
    tenant: Tenant,
    new: NewOrder,
    origin: &Origin,
) -> Result<OrderWithSteps, StoreError> {
    if let Some(q) = new.step_qty
        && q < 1
    {
        return Err(StoreError::invalid("step_qty", "must be at least 1"));
    }
    if let Some(names) = &new.steps
        && (names.is_empty() || names.iter().any(|n| n.trim().is_empty() || n.len() > 100))
    {
        return Err(StoreError::invalid("steps", "give 1 or more names of 1 to 100 characters"));
    }
    if new.final_price_minor < 0 {
        return Err(StoreError::invalid("final_price_minor", "must not be negative"));
    }
    if let Some(sale_id) = new.sale_id {
        return match create_for_sale(conn, tenant, sale_id, origin).await {
            Ok(ForSale::Created(o)) => Ok(o),
            Ok(ForSale::AlreadyExists(id)) => {
                Err(StoreError::Conflict(format!("the sale already has production order {id}")))
            }
            Ok(ForSale::NotNeeded) => {
                Err(StoreError::invalid("sale_id", "none of the sale's products requires production"))
            }
            Err(StoreError::NotFound(_)) => Err(StoreError::invalid("sale_id", "no such sale")),
            Err(e) => Err(e),
        };
    }
    conn.transaction(async |conn| {
        let business = super::tenancy::business(conn, tenant).await?;
        let placeholder = format!("PO-M-{}", uuid::Uuid::now_v7().simple());
        let order: Order = diesel::insert_into(production_orders::table)
            .values((
                production_orders::business_id.eq(tenant.business_id),
                production_orders::location_id.eq(new.location_id),
                production_orders::order_no.eq(&placeholder),
                production_orders::final_price_minor.eq(new.final_price_minor),
                production_orders::currency.eq(&business.currency),
            ))
            .returning(Order::as_returning())
            .get_result(conn)
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _) => {
                    StoreError::invalid("location_id", "no such location in this business")
                }
                other => other.into(),
            })?;
        let order: Order = diesel::update(production_orders::table.find(order.id))
            .set(production_orders::order_no.eq(format!("PO-M-{}", order.id)))
            .returning(Order::as_returning())
            .get_result(conn)
            .await?;
        let names = match new.steps {
            Some(n) => n.into_iter().map(|s| s.trim().to_owned()).collect(),
            None => step_names(conn, tenant).await?,
        };
        let steps = insert_steps(conn, tenant, order.id, &names, new.step_qty).await?;
        let event = Event::ProductionCreated(ProductionCreated {
            order_id: order.id,
            order_no: order.order_no.clone(),
            sale_id: None,
            invoice_no: None,
            steps: names,
        });
        outbox::raise(conn, &event, Some(tenant.business_id), origin).await?;
        Ok(OrderWithSteps { order, steps })
    })
    .await
}
