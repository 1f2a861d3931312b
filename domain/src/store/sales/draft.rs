//! Drafts: opened from a chat (no lines yet), edited (lines, notes) while
//! drafts, and completed (final, raising `sale.created`). The one-sale
//! writes they need: a sale's lines and the next invoice number.

use super::super::schema::{products, sale_lines, sales};
use super::super::{Conn, StoreError, Tenant, outbox, tenancy};
use super::create::sale_created;
use super::price::price_lines;
use super::{NewLine, Sale, SaleLine, SaleWithLines, load};
use crate::events::{Origin, SaleLineData};
use crate::rules::money::Currency;
use crate::rules::pricing::PricedSale;
use crate::rules::sale::{self, Channel, SaleStatus};
use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use std::collections::HashMap;

/// Writes a sale's priced lines, numbered from 1: one single-row insert per
/// line, pipelined on `conn` in one round trip. Each is a cached
/// prepared statement; one multi-row insert would not be (its text changes
/// with the number of lines), and diesel-async prepares an uncached statement
/// in a round trip of its own.
async fn insert_lines(
    conn: &Conn,
    tenant: Tenant,
    sale_id: i64,
    priced: &PricedSale,
) -> Result<Vec<SaleLine>, StoreError> {
    let inserts = priced.lines.iter().enumerate().map(|(i, l)| {
        let mut c = conn;
        async move {
            diesel::insert_into(sale_lines::table)
                .values((
                    sale_lines::business_id.eq(tenant.business_id),
                    sale_lines::sale_id.eq(sale_id),
                    sale_lines::line_no.eq(i as i32 + 1),
                    sale_lines::product_id.eq(l.product_id),
                    sale_lines::quantity.eq(l.quantity),
                    sale_lines::unit_price_minor.eq(l.unit_price_minor),
                    sale_lines::line_total_minor.eq(l.line_total_minor),
                ))
                .returning(SaleLine::as_returning())
                .get_result(&mut c)
                .await
        }
    });
    Ok(futures_util::future::try_join_all(inserts).await?)
}

/// The next invoice number of the business for `now`'s month.
async fn next_invoice_no(conn: &mut Conn, tenant: Tenant, now: DateTime<Utc>) -> Result<String, StoreError> {
    let period = sale::invoice_period(now.year(), now.month());
    let seq: i32 = NextInvoiceSeq { business_id: tenant.business_id, period: period.clone() }.get_result(conn).await?;
    Ok(sale::invoice_no(&period, seq))
}

/// Takes the next number of a business's invoice sequence for a period
/// (locking its row until commit). Written out because diesel never caches an
/// upsert's prepared statement (an `ON CONFLICT DO UPDATE` is prepared anew,
/// in a round trip of its own, each time), and this one runs while the
/// business's sales wait for the lock.
#[derive(diesel::query_builder::QueryId)]
struct NextInvoiceSeq {
    business_id: i64,
    period: String,
}

impl diesel::query_builder::Query for NextInvoiceSeq {
    type SqlType = diesel::sql_types::Integer;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for NextInvoiceSeq {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO invoice_sequences (business_id, period, last_no) VALUES (");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.business_id)?;
        out.push_sql(", ");
        out.push_bind_param::<diesel::sql_types::Text, _>(&self.period)?;
        out.push_sql(", 1) ON CONFLICT (business_id, period) DO UPDATE SET last_no = invoice_sequences.last_no + 1");
        out.push_sql(" RETURNING last_no");
        Ok(())
    }
}

/// A draft opened by a customer's confirmation in a chat: no lines and a
/// total of 0 until staff add what was agreed, the customer linked, the
/// channel the message came on, and the message's text as notes. Never final:
/// [`complete`] refuses it while it has no lines. Runs inside the caller's
/// transaction (the inbound handler's, with its processed record).
pub async fn create_chat_draft_in(
    conn: &mut Conn,
    tenant: Tenant,
    customer_id: i64,
    channel: Channel,
    notes: &str,
) -> Result<Sale, StoreError> {
    let business = tenancy::business(conn, tenant).await?;
    let currency: Currency = business.currency.parse()?;
    let now = Utc::now();
    let invoice_no = next_invoice_no(conn, tenant, now).await?;
    diesel::insert_into(sales::table)
        .values((
            sales::business_id.eq(tenant.business_id),
            sales::customer_id.eq(customer_id),
            sales::invoice_no.eq(&invoice_no),
            sales::status.eq(SaleStatus::Draft.as_str()),
            sales::channel.eq(channel.as_str()),
            sales::total_minor.eq(0),
            sales::currency.eq(currency.as_str()),
            sales::notes.eq(notes),
            sales::created_at.eq(now),
            sales::updated_at.eq(now),
        ))
        .returning(Sale::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| foreign_key_to_invalid(e, "customer_id"))
}

/// A foreign key that points outside the business is an invalid field.
fn foreign_key_to_invalid(e: diesel::result::Error, field: &str) -> StoreError {
    match e {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::invalid(field, "no such record in this business")
        }
        other => other.into(),
    }
}

/// Raises `sale.created` for a stored sale (its products' flags read now).
async fn raise_sale_created(conn: &mut Conn, s: &SaleWithLines, origin: &Origin) -> Result<(), StoreError> {
    let ids: Vec<i64> = s.lines.iter().map(|l| l.product_id).collect();
    let flags: HashMap<i64, bool> = products::table
        .filter(products::business_id.eq(s.sale.business_id).and(products::id.eq_any(&ids)))
        .select((products::id, products::requires_production))
        .load::<(i64, bool)>(conn)
        .await?
        .into_iter()
        .collect();
    let lines = s
        .lines
        .iter()
        .map(|l| SaleLineData {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            requires_production: flags.get(&l.product_id).copied().unwrap_or(false),
        })
        .collect();
    let event = sale_created(&s.sale, lines);
    outbox::raise(conn, &event, Some(s.sale.business_id), origin).await?;
    Ok(())
}

/// Replaces a draft's lines (and notes/customer). A final sale cannot change.
pub async fn update_draft(
    conn: &mut Conn,
    tenant: Tenant,
    id: i64,
    lines: Option<Vec<NewLine>>,
    notes: Option<Option<String>>,
) -> Result<SaleWithLines, StoreError> {
    conn.transaction(async |conn| {
        let current = load(conn, tenant, id, true).await?;
        if current.sale.status() == SaleStatus::Final {
            return Err(StoreError::Conflict("the sale is final and can no longer change".into()));
        }
        let currency: Currency = current.sale.currency.parse()?;
        if let Some(lines) = lines {
            let priced = price_lines(conn, tenant, currency, lines).await?;
            diesel::delete(sale_lines::table.filter(sale_lines::sale_id.eq(id))).execute(conn).await?;
            insert_lines(conn, tenant, id, &priced).await?;
            diesel::update(sales::table.find(id)).set(sales::total_minor.eq(priced.total.minor)).execute(conn).await?;
        }
        if let Some(notes) = notes {
            diesel::update(sales::table.find(id)).set(sales::notes.eq(notes)).execute(conn).await?;
        }
        diesel::update(sales::table.find(id)).set(sales::updated_at.eq(Utc::now())).execute(conn).await?;
        load(conn, tenant, id, false).await
    })
    .await
}

/// Completes a draft: it becomes final and raises `sale.created`. Completing a
/// final sale is a conflict; completing a draft with no lines is refused
/// ([`SaleError::NoLines`](crate::rules::sale::SaleError::NoLines)).
pub async fn complete(conn: &mut Conn, tenant: Tenant, id: i64, origin: &Origin) -> Result<SaleWithLines, StoreError> {
    conn.transaction(async |conn| {
        let current = load(conn, tenant, id, true).await?;
        match sale::complete_with_lines(current.sale.status(), current.lines.len()) {
            Ok(_) => {}
            Err(e @ sale::SaleError::AlreadyFinal) => return Err(StoreError::Conflict(e.to_string())),
            // A draft opened from a chat has no lines until staff add them.
            Err(e) => return Err(e.into()),
        }
        let now = Utc::now();
        let sale: Sale = diesel::update(sales::table.find(id))
            .set((sales::status.eq(SaleStatus::Final.as_str()), sales::finalized_at.eq(now), sales::updated_at.eq(now)))
            .returning(Sale::as_returning())
            .get_result(conn)
            .await?;
        let with_lines = SaleWithLines { sale, lines: current.lines };
        raise_sale_created(conn, &with_lines, origin).await?;
        Ok(with_lines)
    })
    .await
}
