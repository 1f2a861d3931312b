//! Creating production orders: exactly one per final studio sale, whoever
//! races (a retry, a replay, another daemon), with the business's default
//! steps, or by hand; and the business's default steps themselves. Creating
//! an order raises `production.created`.

use super::super::schema::{
    production_orders, production_step_templates, production_steps, products, sale_lines, sales,
};
use super::super::{Conn, StoreError, Tenant, outbox, tenancy};
use super::{Order, OrderWithSteps, Step, step_names};
use crate::events::{Event, Origin, ProductionCreated};
use crate::rules::sale::{self, SaleKind, SaleStatus};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

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
    // A status the rules do not know is no final sale.
    sale::ready_for_production(SaleStatus::parse(&status).unwrap_or(SaleStatus::Draft), &invoice_no)?;
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
        let business = tenancy::business(conn, tenant).await?;
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
