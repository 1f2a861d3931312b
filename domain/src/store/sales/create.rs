//! Creating sales: one ([`create`]) or several of any businesses together
//! ([`create_all`]): one round trip of reads for them all and the checks of
//! each ([`prepare`]), then the batch statement of [`super::write`].

use super::super::schema::customers;
use super::super::{Conn, StoreError, Tenant, outbox};
use super::price::{Catalogue, catalogue, line_data, price};
use super::write::write;
use super::{NewSale, Sale, SaleLine, SaleWithLines};
use crate::events::{Envelope, Event, Origin, SaleCreated, SaleLineData};
use crate::rules::money::Currency;
use crate::rules::pricing::PricedSaleLine;
use crate::rules::sale::SaleStatus;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// Creates a sale, final or draft; a final sale raises `sale.created`
/// ([`create_all`] of one, on `conn`, which may be in a transaction).
pub async fn create(
    conn: &mut Conn,
    tenant: Tenant,
    new: NewSale,
    origin: &Origin,
) -> Result<SaleWithLines, StoreError> {
    let request = SaleRequest { tenant, new, origin: origin.clone() };
    let mut made = create_all(conn, vec![request]).await;
    made.pop().unwrap_or_else(|| Err(unanswered()))
}

/// A sale the batch did not answer for: a bug (500).
pub(super) fn unanswered() -> StoreError {
    StoreError::Database(diesel::result::Error::QueryBuilderError("a sale of the batch got no result".into()))
}

/// A sale to create: in which business, what it says, and the chain of
/// events it starts.
pub struct SaleRequest {
    pub tenant: Tenant,
    pub new: NewSale,
    pub origin: Origin,
}

/// Creates sales of any businesses together, each result in the order asked:
/// one round trip of reads for them all ([`prepare`]), then one statement
/// that writes those that passed ([`write`]). A sale refused (a product not
/// the business's, an empty sale) refuses only itself. More than one sale
/// only outside any transaction (see [`write`]). The API creates its sales
/// through [`super::writer`], which gathers concurrent requests here.
pub async fn create_all(conn: &mut Conn, requests: Vec<SaleRequest>) -> Vec<Result<SaleWithLines, StoreError>> {
    let n = requests.len();
    let mut results: Vec<Option<Result<SaleWithLines, StoreError>>> = (0..n).map(|_| None).collect();
    let mut ready = Vec::with_capacity(n);
    for (i, prepared) in prepare(conn, requests).await.into_iter().enumerate() {
        match prepared {
            Ok(p) => ready.push((i, p)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let (order, batch): (Vec<usize>, Vec<PreparedSale>) = ready.into_iter().unzip();
    if !batch.is_empty() {
        for (i, written) in order.into_iter().zip(write(conn, batch).await) {
            results[i] = Some(written);
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(unanswered()))).collect()
}

/// A sale checked and priced, with its id and event, waiting for its invoice
/// number: what [`write`] stores.
pub(super) struct PreparedSale {
    pub(super) sale: Sale,
    pub(super) lines: Vec<PricedSaleLine>,
    /// The `sale.created` row for the outbox (a final sale only): its
    /// envelope's `data.invoice_no` is set when the sale is numbered.
    pub(super) raised: Option<(uuid::Uuid, String, serde_json::Value, DateTime<Utc>)>,
}

impl PreparedSale {
    /// The sale as stored, once numbered and its lines given ids.
    pub(super) fn stored(self, invoice_no: String, line_ids: Vec<i64>) -> SaleWithLines {
        let Self { mut sale, lines, .. } = self;
        sale.invoice_no = invoice_no;
        let lines = lines
            .into_iter()
            .zip(line_ids)
            .enumerate()
            .map(|(i, (l, id))| SaleLine {
                id,
                business_id: sale.business_id,
                sale_id: sale.id,
                line_no: i as i32 + 1,
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                line_total_minor: l.line_total_minor,
            })
            .collect();
        SaleWithLines { sale, lines }
    }
}

/// Reads what new sales need and checks each: their businesses (currency)
/// with each sale's id, the customers named, and the products, pipelined in
/// one round trip outside any transaction. They lock nothing, and the
/// write's foreign keys check again that what they found still exists.
async fn prepare(conn: &mut Conn, requests: Vec<SaleRequest>) -> Vec<Result<PreparedSale, StoreError>> {
    let businesses: Vec<i64> = requests.iter().map(|r| r.tenant.business_id).collect();
    let named: Vec<(i64, i64)> =
        requests.iter().filter_map(|r| Some((r.tenant.business_id, r.new.customer_id?))).collect();
    let read = {
        let (mut c1, mut c2, mut c3) = (&*conn, &*conn, &*conn);
        let customers = async {
            if named.is_empty() {
                return Ok(Vec::new());
            }
            let (biz, ids): (Vec<i64>, Vec<i64>) = named.iter().copied().unzip();
            customers::table
                .filter(customers::business_id.eq_any(&biz).and(customers::id.eq_any(&ids)))
                .select((customers::business_id, customers::id))
                .load::<(i64, i64)>(&mut c2)
                .await
        };
        let lines: Vec<(i64, i64)> =
            requests.iter().flat_map(|r| r.new.lines.iter().map(|l| (r.tenant.business_id, l.product_id))).collect();
        futures_util::future::try_join3(
            async {
                SaleIds { businesses: &businesses }.load::<(i64, String, i64)>(&mut c1).await.map_err(StoreError::from)
            },
            async { customers.await.map_err(StoreError::from) },
            catalogue(&mut c3, lines),
        )
        .await
    };
    let (ids, customers_found, found) = match read {
        Ok(read) => read,
        Err(e) => return requests.iter().map(|_| Err(e.for_another())).collect(),
    };
    // Each business's currency and a sale id per sale asked for it.
    let mut of_business: HashMap<i64, (String, Vec<i64>)> = HashMap::new();
    for (business, currency, id) in ids {
        of_business.entry(business).or_insert_with(|| (currency, Vec::new())).1.push(id);
    }
    let customers_found: std::collections::HashSet<(i64, i64)> = customers_found.into_iter().collect();
    requests
        .into_iter()
        .map(|r| {
            let (currency, ids) = of_business.get_mut(&r.tenant.business_id).ok_or(StoreError::NotFound("business"))?;
            let id = ids.pop().ok_or(StoreError::NotFound("business"))?;
            let currency: Currency = currency.parse()?;
            prepare_one(r, id, currency, &customers_found, &found)
        })
        .collect()
}

/// Checks and prices one sale against what [`prepare`] read (no I/O).
fn prepare_one(
    r: SaleRequest,
    sale_id: i64,
    currency: Currency,
    customers_found: &std::collections::HashSet<(i64, i64)>,
    found: &Catalogue,
) -> Result<PreparedSale, StoreError> {
    let SaleRequest { tenant, new, origin } = r;
    if let Some(id) = new.customer_id
        && !customers_found.contains(&(tenant.business_id, id))
    {
        return Err(StoreError::invalid("customer_id", "no such customer"));
    }
    let priced = price(tenant, currency, new.lines, found)?;
    // PostgreSQL keeps microseconds: the sale returned is the sale stored.
    let now = Utc::now().trunc_subsecs(6);
    let sale = Sale {
        id: sale_id,
        business_id: tenant.business_id,
        location_id: new.location_id,
        customer_id: new.customer_id,
        // Numbered by the write (see WriteSales).
        invoice_no: String::new(),
        status: new.status.as_str().to_owned(),
        channel: new.channel.as_str().to_owned(),
        total_minor: priced.total.minor,
        currency: currency.as_str().to_owned(),
        notes: new.notes,
        created_by: new.created_by,
        created_at: now,
        updated_at: now,
        finalized_at: (new.status == SaleStatus::Final).then_some(now),
    };
    let raised = match new.status {
        SaleStatus::Final => {
            let e = Envelope::new(&sale_created(&sale, line_data(&priced)), Some(tenant.business_id), &origin, now);
            Some((e.id, e.event_type.clone(), outbox::envelope_json(&e)?, e.occurred_at))
        }
        SaleStatus::Draft => None,
    };
    Ok(PreparedSale { sale, lines: priced.lines, raised })
}

/// For each business id given (repeated once per sale), the business's id,
/// currency and a new sale id: `nextval` once per row, so a business asked
/// for three times gets three ids. A business that does not exist has no
/// rows. Static, so diesel caches the prepared statement.
struct SaleIds<'a> {
    businesses: &'a [i64],
}

struct SaleIdsId;

impl diesel::query_builder::QueryId for SaleIds<'_> {
    type QueryId = SaleIdsId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for SaleIds<'_> {
    type SqlType = (diesel::sql_types::BigInt, diesel::sql_types::Text, diesel::sql_types::BigInt);
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for SaleIds<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("SELECT b.id, b.currency, nextval('sales_id_seq') FROM unnest(");
        out.push_bind_param::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(&self.businesses)?;
        out.push_sql(") AS r (business_id) JOIN businesses b ON b.id = r.business_id");
        Ok(())
    }
}

/// `sale.created` for a sale and its lines.
pub(super) fn sale_created(sale: &Sale, lines: Vec<SaleLineData>) -> Event {
    Event::SaleCreated(SaleCreated {
        sale_id: sale.id,
        invoice_no: sale.invoice_no.clone(),
        customer_id: sale.customer_id,
        location_id: sale.location_id,
        channel: sale.channel.clone(),
        total_minor: sale.total_minor,
        currency: sale.currency.clone(),
        lines,
    })
}
