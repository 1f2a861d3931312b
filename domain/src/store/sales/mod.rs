//! Sales: what a sale is (its lines, payments, the filters of the list) and
//! the reads of it (one sale with its lines, a page of the business's sales,
//! a sale's payments). Sales are created final or as a draft completed later,
//! numbered per business and month: [`create`] (one sale, or several together,
//! whose batch statement is [`write`] and whose queue for the API is
//! [`writer`]), drafts edited and completed in [`draft`], payments in
//! [`payment`]. A sale becoming final raises `sale.created`; a payment raises
//! `payment.received`, each in the same transaction as the change.

mod create;
mod draft;
mod payment;
mod price;
mod write;
pub mod writer;

pub use crate::rules::pricing::NewLine;
pub use create::{SaleRequest, create, create_all};
pub use draft::{complete, create_chat_draft_in, update_draft};
pub use payment::{payments_of, record_payment};

use super::schema::{payments, sale_lines, sales};
use super::{Conn, Page, StoreError, Tenant};
use crate::rules::sale::{Channel, SaleStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = sales, check_for_backend(diesel::pg::Pg))]
pub struct Sale {
    pub id: i64,
    pub business_id: i64,
    pub location_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub invoice_no: String,
    pub status: String,
    pub channel: String,
    pub total_minor: i64,
    pub currency: String,
    pub notes: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
}

impl Sale {
    pub fn status(&self) -> SaleStatus {
        SaleStatus::parse(&self.status).unwrap_or(SaleStatus::Draft)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = sale_lines, check_for_backend(diesel::pg::Pg))]
pub struct SaleLine {
    pub id: i64,
    #[serde(skip)]
    pub business_id: i64,
    #[serde(skip)]
    pub sale_id: i64,
    pub line_no: i32,
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// A sale with its lines.
#[derive(Debug, Clone, Serialize)]
pub struct SaleWithLines {
    #[serde(flatten)]
    pub sale: Sale,
    pub lines: Vec<SaleLine>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct Payment {
    pub id: i64,
    #[serde(skip)]
    pub business_id: i64,
    pub sale_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub method: String,
    pub received_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewSale {
    pub status: SaleStatus,
    pub channel: Channel,
    pub location_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub notes: Option<String>,
    pub created_by: Option<i64>,
    pub lines: Vec<NewLine>,
}

/// The sale and its lines, locked for update when `lock`.
async fn load(conn: &mut Conn, tenant: Tenant, id: i64, lock: bool) -> Result<SaleWithLines, StoreError> {
    let scope = sales::table.filter(sales::business_id.eq(tenant.business_id).and(sales::id.eq(id)));
    let sale = if lock {
        scope.select(Sale::as_select()).for_update().first(conn).await.optional()?
    } else {
        scope.select(Sale::as_select()).first(conn).await.optional()?
    };
    let sale = sale.ok_or(StoreError::NotFound("sale"))?;
    let lines = sale_lines::table
        .filter(sale_lines::sale_id.eq(sale.id))
        .order(sale_lines::line_no.asc())
        .select(SaleLine::as_select())
        .load(conn)
        .await?;
    Ok(SaleWithLines { sale, lines })
}

pub async fn get(conn: &mut Conn, tenant: Tenant, id: i64) -> Result<SaleWithLines, StoreError> {
    load(conn, tenant, id, false).await
}

/// Filters of the sales list.
#[derive(Debug, Clone, Default)]
pub struct SaleFilter {
    pub status: Option<SaleStatus>,
    pub channel: Option<Channel>,
    pub customer_id: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A page of the business's sales, newest first, with the total count.
pub async fn list(
    conn: &mut Conn,
    tenant: Tenant,
    filter: &SaleFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Sale>, i64), StoreError> {
    let scoped = || {
        let mut q = sales::table.filter(sales::business_id.eq(tenant.business_id)).into_boxed();
        if let Some(s) = filter.status {
            q = q.filter(sales::status.eq(s.as_str()));
        }
        if let Some(c) = filter.channel {
            q = q.filter(sales::channel.eq(c.as_str()));
        }
        if let Some(c) = filter.customer_id {
            q = q.filter(sales::customer_id.eq(c));
        }
        if let Some(from) = filter.from {
            q = q.filter(sales::created_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(sales::created_at.lt(to));
        }
        q
    };
    super::page(conn, scoped, |q| q.order((sales::created_at.desc(), sales::id.desc())), Page::new(limit, offset)).await
}
