//! Payments: recorded on final sales, each raising `payment.received` in
//! the same transaction; a sale's payments read back oldest first.

use super::super::RuleError;
use super::super::schema::payments;
use super::super::{Conn, StoreError, Tenant, outbox};
use super::{Payment, load};
use crate::events::{Event, Origin, PaymentReceived};
use crate::rules::sale::{SaleStatus, check_payment};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Records a payment on a final sale and raises `payment.received`.
pub async fn record_payment(
    conn: &mut Conn,
    tenant: Tenant,
    sale_id: i64,
    amount_minor: i64,
    method: &str,
    created_by: Option<i64>,
    origin: &Origin,
) -> Result<Payment, StoreError> {
    if amount_minor <= 0 {
        return Err(StoreError::invalid("amount_minor", "must be more than 0"));
    }
    let method = method.trim();
    if method.is_empty() || method.len() > 50 {
        return Err(StoreError::invalid("method", "must be 1 to 50 characters"));
    }
    conn.transaction(async |conn| {
        let current = load(conn, tenant, sale_id, true).await?;
        if current.sale.status() != SaleStatus::Final {
            return Err(StoreError::Conflict("payments are recorded on final sales: complete the draft first".into()));
        }
        // The sale's row is locked (load above): concurrent payments on it
        // are checked one after the other.
        let paid: Vec<i64> = payments::table
            .filter(payments::business_id.eq(tenant.business_id).and(payments::sale_id.eq(sale_id)))
            .select(payments::amount_minor)
            .load(conn)
            .await?;
        check_payment(current.sale.total_minor, &paid, amount_minor)
            .map_err(|e| StoreError::Refused(RuleError::Sale(e)))?;
        let payment: Payment = diesel::insert_into(payments::table)
            .values((
                payments::business_id.eq(tenant.business_id),
                payments::sale_id.eq(sale_id),
                payments::amount_minor.eq(amount_minor),
                payments::currency.eq(&current.sale.currency),
                payments::method.eq(method),
                payments::created_by.eq(created_by),
            ))
            .returning(Payment::as_returning())
            .get_result(conn)
            .await?;
        let event = Event::PaymentReceived(PaymentReceived {
            payment_id: payment.id,
            sale_id,
            invoice_no: current.sale.invoice_no.clone(),
            amount_minor,
            currency: payment.currency.clone(),
        });
        outbox::raise(conn, &event, Some(tenant.business_id), origin).await?;
        Ok(payment)
    })
    .await
}

/// A sale's payments, oldest first.
pub async fn payments_of(conn: &mut Conn, tenant: Tenant, sale_id: i64) -> Result<Vec<Payment>, StoreError> {
    Ok(payments::table
        .filter(payments::business_id.eq(tenant.business_id).and(payments::sale_id.eq(sale_id)))
        .order(payments::id.asc())
        .select(Payment::as_select())
        .load(conn)
        .await?)
}
