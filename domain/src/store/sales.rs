//! Sales: created final or as a draft completed later, numbered per business
//! and month, with their lines and payments. A sale becoming final raises
//! `sale.created`; a payment raises `payment.received`, each in the same
//! transaction as the change.

use super::schema::{customers, payments, products, sale_lines, sales};
use super::tenancy;
use super::{Conn, StoreError, Tenant, outbox};
use crate::events::{Envelope, Event, Origin, PaymentReceived, SaleCreated, SaleLineData};
use crate::rules::money::{Currency, Money};
use crate::rules::sale::{self, Channel, PricedLine, SaleStatus};
use chrono::{DateTime, Datelike, SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use std::collections::HashMap;

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
pub struct NewLine {
    pub product_id: i64,
    pub quantity: i32,
    /// The product's price when `None`.
    pub unit_price_minor: Option<i64>,
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

/// A line priced from the catalogue, its total checked by the rules.
struct PricedSaleLine {
    product_id: i64,
    quantity: i32,
    unit_price_minor: i64,
    line_total_minor: i64,
    requires_production: bool,
}

struct Priced {
    lines: Vec<PricedSaleLine>,
    total: Money,
}

/// Products by (business, id): price, currency, requires production.
type Catalogue = HashMap<(i64, i64), (i64, String, bool)>;

/// Reads the products named by `wanted` ((business, product) pairs), for
/// any number of businesses in one statement (any connection: `&mut &Conn`
/// pipelines). A pair whose product is not the business's is not found.
async fn catalogue<C>(conn: &mut C, wanted: Vec<(i64, i64)>) -> Result<Catalogue, StoreError>
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
async fn price_lines(
    conn: &mut Conn,
    tenant: Tenant,
    currency: Currency,
    lines: Vec<NewLine>,
) -> Result<Priced, StoreError> {
    let found = catalogue(conn, lines.iter().map(|l| (tenant.business_id, l.product_id)).collect()).await?;
    price(tenant, currency, lines, &found)
}

/// Prices the lines against the catalogue (no I/O).
fn price(tenant: Tenant, currency: Currency, lines: Vec<NewLine>, found: &Catalogue) -> Result<Priced, StoreError> {
    if lines.is_empty() {
        return Err(StoreError::invalid("lines", "a sale needs at least one line"));
    }
    let mut priced = Vec::with_capacity(lines.len());
    let mut for_total = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let field = |f: &str| format!("lines[{i}].{f}");
        let (price, cur, requires_production) = found
            .get(&(tenant.business_id, line.product_id))
            .ok_or_else(|| StoreError::invalid(field("product_id"), "no such product"))?;
        if cur.as_str() != currency.as_str() {
            return Err(StoreError::invalid(
                field("product_id"),
                format!("priced in {cur}, the business sells in {currency}"),
            ));
        }
        let unit = line.unit_price_minor.unwrap_or(*price);
        if unit < 0 {
            return Err(StoreError::invalid(field("unit_price_minor"), "must not be negative"));
        }
        if line.quantity < 1 {
            return Err(StoreError::invalid(field("quantity"), "must be at least 1"));
        }
        let for_line = PricedLine { quantity: line.quantity, unit_price: Money::new(unit, currency) };
        priced.push(PricedSaleLine {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_minor: unit,
            line_total_minor: for_line.total().map_err(|source| sale::SaleError::Money { line: i + 1, source })?.minor,
            requires_production: *requires_production,
        });
        for_total.push(for_line);
    }
    let total = sale::sale_total(currency, &for_total)?;
    Ok(Priced { lines: priced, total })
}

/// Writes a sale's priced lines, numbered from 1: one single-row insert per
/// line, pipelined on `conn` in one round trip. Each is a cached
/// prepared statement; one multi-row insert would not be (its text changes
/// with the number of lines), and diesel-async prepares an uncached statement
/// in a round trip of its own.
async fn insert_lines(conn: &Conn, tenant: Tenant, sale_id: i64, priced: &Priced) -> Result<Vec<SaleLine>, StoreError> {
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
fn unanswered() -> StoreError {
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
/// through [`super::sales_writer`], which gathers concurrent requests here.
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
struct PreparedSale {
    sale: Sale,
    lines: Vec<PricedSaleLine>,
    /// The `sale.created` row for the outbox (a final sale only): its
    /// envelope's `data.invoice_no` is set when the sale is numbered.
    raised: Option<(uuid::Uuid, String, serde_json::Value, DateTime<Utc>)>,
}

impl PreparedSale {
    /// The sale as stored, once numbered and its lines given ids.
    fn stored(self, invoice_no: String, line_ids: Vec<i64>) -> SaleWithLines {
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

/// What [`WriteSales`] returns of each sale: its id, invoice number and lines' ids.
type Written = (i64, String, Vec<i64>);

/// Writes one prepared sale ([`WriteSales`] of one).
async fn write_one(conn: &mut Conn, prepared: PreparedSale) -> Result<SaleWithLines, StoreError> {
    let rows =
        WriteSales::new(std::slice::from_ref(&prepared)).load::<Written>(conn).await.map_err(refused_reference)?;
    match rows.into_iter().next() {
        Some((_, invoice_no, line_ids)) => Ok(prepared.stored(invoice_no, line_ids)),
        None => Err(unanswered()),
    }
}

/// Writes prepared sales (of any businesses) in one statement, numbering
/// each studio's in the order given, and returns each sale's result in that
/// order. When the statement fails, nothing of it was written, and each sale
/// is written again alone so that only the sale at fault is refused (a
/// foreign key: a location or customer deleted since it was prepared). More
/// than one sale only on a connection outside any transaction, where a
/// failed statement aborts nothing.
async fn write(conn: &mut Conn, batch: Vec<PreparedSale>) -> Vec<Result<SaleWithLines, StoreError>> {
    if batch.len() == 1 {
        let one = batch.into_iter().next().expect("one sale");
        return vec![write_one(conn, one).await];
    }
    match WriteSales::new(&batch).load::<Written>(conn).await {
        Ok(rows) => {
            let mut numbered: HashMap<i64, (String, Vec<i64>)> =
                rows.into_iter().map(|(id, no, lines)| (id, (no, lines))).collect();
            batch
                .into_iter()
                .map(|p| match numbered.remove(&p.sale.id) {
                    Some((invoice_no, line_ids)) => Ok(p.stored(invoice_no, line_ids)),
                    None => Err(unanswered()),
                })
                .collect()
        }
        Err(e) => {
            tracing::debug!(error = %e, sales = batch.len(), "a batch of sales failed; writing each alone");
            let mut results = Vec::with_capacity(batch.len());
            for p in batch {
                results.push(write_one(conn, p).await);
            }
            results
        }
    }
}

/// One statement that numbers and writes sales: takes each studio's next
/// invoice numbers for the period (one upsert per studio and period, by
/// the number of its sales here, in business order so that concurrent
/// statements lock studios in the same order), inserts the sales with their
/// numbers, their lines and, for the final ones, their `sale.created` outbox
/// rows (whose `invoice_no` is set from the number), and returns each sale's
/// id, number and lines' ids in line order. Being one statement it is atomic
/// without a transaction: a number is taken only with its sale (gapless),
/// and the numbers' rows are locked only from here to the commit inside
/// PostgreSQL. Everything goes as arrays, so its text is the same for any
/// number of sales and lines and its prepared statement is cached.
struct WriteSales<'a> {
    id: Vec<i64>,
    business_id: Vec<i64>,
    location_id: Vec<Option<i64>>,
    customer_id: Vec<Option<i64>>,
    period: Vec<String>,
    /// The number is made in SQL from the rule's parts, as
    /// [`sale::invoice_no`] makes it (the store's tests hold the two equal).
    prefix: Vec<String>,
    status: Vec<&'a str>,
    channel: Vec<&'a str>,
    total_minor: Vec<i64>,
    currency: Vec<&'a str>,
    notes: Vec<Option<&'a str>>,
    created_by: Vec<Option<i64>>,
    created_at: Vec<DateTime<Utc>>,
    finalized_at: Vec<Option<DateTime<Utc>>>,
    line_business_id: Vec<i64>,
    line_sale_id: Vec<i64>,
    line_no: Vec<i32>,
    product_id: Vec<i64>,
    quantity: Vec<i32>,
    unit_price_minor: Vec<i64>,
    line_total_minor: Vec<i64>,
    event_sale_id: Vec<i64>,
    event_id: Vec<uuid::Uuid>,
    event_type: Vec<&'a str>,
    envelope: Vec<&'a serde_json::Value>,
    raised_at: Vec<DateTime<Utc>>,
}

impl<'a> WriteSales<'a> {
    fn new(batch: &'a [PreparedSale]) -> Self {
        let sales = || batch.iter().map(|p| &p.sale);
        let lines = || batch.iter().flat_map(|p| p.lines.iter().map(move |l| (&p.sale, l)));
        let events = || batch.iter().filter_map(|p| p.raised.as_ref().map(|r| (&p.sale, r)));
        let period = |s: &Sale| sale::invoice_period(s.created_at.year(), s.created_at.month());
        WriteSales {
            id: sales().map(|s| s.id).collect(),
            business_id: sales().map(|s| s.business_id).collect(),
            location_id: sales().map(|s| s.location_id).collect(),
            customer_id: sales().map(|s| s.customer_id).collect(),
            period: sales().map(period).collect(),
            prefix: sales().map(|s| sale::invoice_prefix(&period(s))).collect(),
            status: sales().map(|s| s.status.as_str()).collect(),
            channel: sales().map(|s| s.channel.as_str()).collect(),
            total_minor: sales().map(|s| s.total_minor).collect(),
            currency: sales().map(|s| s.currency.as_str()).collect(),
            notes: sales().map(|s| s.notes.as_deref()).collect(),
            created_by: sales().map(|s| s.created_by).collect(),
            created_at: sales().map(|s| s.created_at).collect(),
            finalized_at: sales().map(|s| s.finalized_at).collect(),
            line_business_id: lines().map(|(s, _)| s.business_id).collect(),
            line_sale_id: lines().map(|(s, _)| s.id).collect(),
            line_no: batch.iter().flat_map(|p| 1..=p.lines.len() as i32).collect(),
            product_id: lines().map(|(_, l)| l.product_id).collect(),
            quantity: lines().map(|(_, l)| l.quantity).collect(),
            unit_price_minor: lines().map(|(_, l)| l.unit_price_minor).collect(),
            line_total_minor: lines().map(|(_, l)| l.line_total_minor).collect(),
            event_sale_id: events().map(|(s, _)| s.id).collect(),
            event_id: events().map(|(_, r)| r.0).collect(),
            event_type: events().map(|(_, r)| r.1.as_str()).collect(),
            envelope: events().map(|(_, r)| &r.2).collect(),
            raised_at: events().map(|(_, r)| r.3).collect(),
        }
    }
}

/// Static, so diesel caches the prepared statement.
struct WriteSalesId;

impl diesel::query_builder::QueryId for WriteSales<'_> {
    type QueryId = WriteSalesId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for WriteSales<'_> {
    type SqlType =
        (diesel::sql_types::BigInt, diesel::sql_types::Text, diesel::sql_types::Array<diesel::sql_types::BigInt>);
}

/// Pushes comma-separated bind parameters: `binds!(out; BigInt => &a, Text => &b)`.
macro_rules! binds {
    ($out:ident; $ty:ty => $v:expr $(, $tys:ty => $vs:expr)* $(,)?) => {{
        $out.push_bind_param::<$ty, _>($v)?;
        $($out.push_sql(", "); $out.push_bind_param::<$tys, _>($vs)?;)*
    }};
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for WriteSales<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid};
        out.push_sql("WITH input AS (SELECT * FROM unnest(");
        binds!(out; Array<BigInt> => &self.id, Array<BigInt> => &self.business_id,
            Array<Nullable<BigInt>> => &self.location_id, Array<Nullable<BigInt>> => &self.customer_id,
            Array<Text> => &self.period, Array<Text> => &self.prefix, Array<Text> => &self.status,
            Array<Text> => &self.channel, Array<BigInt> => &self.total_minor, Array<Text> => &self.currency,
            Array<Nullable<Text>> => &self.notes, Array<Nullable<BigInt>> => &self.created_by,
            Array<Timestamptz> => &self.created_at, Array<Nullable<Timestamptz>> => &self.finalized_at);
        out.push_sql(
            ") WITH ORDINALITY AS s (id, business_id, location_id, customer_id, period, prefix, status, channel, \
             total_minor, currency, notes, created_by, created_at, finalized_at, ord)), ",
        );
        // Each studio's count of sales here, in the order its numbers' rows are locked.
        out.push_sql("counts AS (SELECT business_id, period, count(*)::int AS n FROM input ");
        out.push_sql("GROUP BY business_id, period ORDER BY business_id, period), ");
        out.push_sql("number AS (INSERT INTO invoice_sequences (business_id, period, last_no) ");
        out.push_sql("SELECT business_id, period, n FROM counts ON CONFLICT (business_id, period) ");
        out.push_sql("DO UPDATE SET last_no = invoice_sequences.last_no + excluded.last_no ");
        out.push_sql("RETURNING business_id, period, last_no), ");
        // A studio's sales take its numbers in the order given.
        out.push_sql("numbered AS (SELECT i.*, i.prefix || lpad(q.seq::text, greatest(");
        binds!(out; Integer => &sale::INVOICE_SEQ_DIGITS);
        out.push_sql(", length(q.seq::text)), '0') AS invoice_no FROM (SELECT *, row_number() OVER ");
        out.push_sql("(PARTITION BY business_id, period ORDER BY ord) AS k FROM input) i ");
        out.push_sql("JOIN number n USING (business_id, period) JOIN counts c USING (business_id, period) ");
        out.push_sql("CROSS JOIN LATERAL (SELECT n.last_no - c.n + i.k AS seq) q), ");
        out.push_sql("sale AS (INSERT INTO sales (id, business_id, location_id, customer_id, invoice_no, status, ");
        out.push_sql("channel, total_minor, currency, notes, created_by, created_at, updated_at, finalized_at) ");
        out.push_sql("SELECT id, business_id, location_id, customer_id, invoice_no, status, channel, total_minor, ");
        out.push_sql("currency, notes, created_by, created_at, created_at, finalized_at FROM numbered ");
        out.push_sql("RETURNING id, business_id, invoice_no), ");
        out.push_sql("lines AS (INSERT INTO sale_lines (business_id, sale_id, line_no, product_id, quantity, ");
        out.push_sql("unit_price_minor, line_total_minor) SELECT * FROM unnest(");
        binds!(out; Array<BigInt> => &self.line_business_id, Array<BigInt> => &self.line_sale_id,
            Array<Integer> => &self.line_no, Array<BigInt> => &self.product_id,
            Array<Integer> => &self.quantity, Array<BigInt> => &self.unit_price_minor,
            Array<BigInt> => &self.line_total_minor);
        out.push_sql(") RETURNING id, sale_id, line_no), ");
        out.push_sql("raised AS (INSERT INTO outbox (event_id, event_type, business_id, envelope, created_at) ");
        out.push_sql("SELECT e.event_id, e.event_type, sale.business_id, ");
        out.push_sql(
            "jsonb_set(e.envelope, '{data,invoice_no}', to_jsonb(sale.invoice_no)), e.created_at FROM unnest(",
        );
        binds!(out; Array<BigInt> => &self.event_sale_id, Array<Uuid> => &self.event_id,
            Array<Text> => &self.event_type, Array<Jsonb> => &self.envelope,
            Array<Timestamptz> => &self.raised_at);
        out.push_sql(") AS e (sale_id, event_id, event_type, envelope, created_at) JOIN sale ON sale.id = e.sale_id) ");
        out.push_sql("SELECT sale.id, sale.invoice_no, ");
        out.push_sql("ARRAY(SELECT id FROM lines WHERE lines.sale_id = sale.id ORDER BY line_no) FROM sale");
        Ok(())
    }
}

/// A write refused by a foreign key: a record named by the sale is not (or
/// no longer) in the business.
fn refused_reference(e: diesel::result::Error) -> StoreError {
    let field = match &e {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, info) => {
            match info.constraint_name() {
                Some("sales_business_id_location_id_fkey") => "location_id",
                Some("sales_business_id_customer_id_fkey") => "customer_id",
                Some("sales_business_id_created_by_fkey") => "created_by",
                Some("sale_lines_business_id_product_id_fkey") => "lines",
                _ => return e.into(),
            }
        }
        _ => return e.into(),
    };
    StoreError::invalid(field, "no such record in this business")
}

/// The event's view of priced lines.
fn line_data(priced: &Priced) -> Vec<SaleLineData> {
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

/// `sale.created` for a sale and its lines.
fn sale_created(sale: &Sale, lines: Vec<SaleLineData>) -> Event {
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
    let total = scoped().count().get_result(conn).await?;
    let rows = scoped()
        .order((sales::created_at.desc(), sales::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Sale::as_select())
        .load(conn)
        .await?;
    Ok((rows, total))
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
