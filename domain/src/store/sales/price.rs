//! The catalogue a new sale is priced from: the products of its lines, read
//! for any number of businesses in one statement; the checks and arithmetic
//! are the rules' ([`crate::rules::pricing`]).

use super::super::schema::products;
use super::super::{Conn, StoreError, Tenant};
use crate::events::SaleLineData;
use crate::rules::money::Currency;
use crate::rules::pricing::{self, Listed, NewLine, PricedSale, PricingError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// Products by (business, id): price, currency, requires production.
pub(super) type Catalogue = HashMap<(i64, i64), (i64, String, bool)>;

/// Reads the products named by `wanted` ((business, product) pairs), for
/// any number of businesses in one statement (any connection: `&mut &Conn`
/// pipelines). A pair whose product is not the business's is not found.
pub(super) async fn catalogue<C>(conn: &mut C, wanted: Vec<(i64, i64)>) -> Result<Catalogue, StoreError>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg>,
{
    let (mut businesses, mut ids): (Vec<i64>, Vec<i64>) = wanted.into_iter().unzip();
    for v in [&mut businesses, &mut ids] {
        v.sort_unstable();
        v.dedup();
    }
    Ok(products::table
        .filter(products::business_id.eq_any(&businesses).and(products::id.eq_any(&ids)))
        .select((
            products::business_id,
            products::id,
            products::unit_price_minor,
            products::currency,
            products::requires_production,
        ))
        .load::<(i64, i64, i64, String, bool)>(conn)
        .await?
        .into_iter()
        .map(|(business, id, price, cur, rp)| ((business, id), (price, cur, rp)))
        .collect())
}

/// Prices the lines from the tenant's products; any product not in the
/// business is an invalid line.
pub(super) async fn price_lines(
    conn: &mut Conn,
    tenant: Tenant,
    currency: Currency,
    lines: Vec<NewLine>,
) -> Result<PricedSale, StoreError> {
    let found = catalogue(conn, lines.iter().map(|l| (tenant.business_id, l.product_id)).collect()).await?;
    price(tenant, currency, lines, &found)
}

/// Prices the lines against the catalogue (no I/O): the rules' pricing of
/// the tenant's products.
pub(super) fn price(
    tenant: Tenant,
    currency: Currency,
    lines: Vec<NewLine>,
    found: &Catalogue,
) -> Result<PricedSale, StoreError> {
    Ok(pricing::price(currency, lines, |product_id| {
        found.get(&(tenant.business_id, product_id)).map(|(price, cur, requires_production)| Listed {
            unit_price_minor: *price,
            currency: cur.as_str(),
            requires_production: *requires_production,
        })
    })?)
}

impl From<PricingError> for StoreError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::Line(e) => StoreError::invalid(e.field(), e.message()),
            PricingError::Sale(e) => e.into(),
        }
    }
}

/// The event's view of priced lines.
pub(super) fn line_data(priced: &PricedSale) -> Vec<SaleLineData> {
    priced
        .lines
        .iter()
        .map(|l| SaleLineData {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            requires_production: l.requires_production,
        })
        .collect()
}
