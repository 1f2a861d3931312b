//! The batch statement that numbers and writes prepared sales (of any
//! businesses) at once, with their lines and `sale.created` outbox rows, and
//! what to do when it is refused (each sale again alone).

use super::super::{Conn, StoreError};
use super::create::{PreparedSale, unanswered};
use super::{Sale, SaleWithLines};
use crate::rules::sale;
use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

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
pub(super) async fn write(conn: &mut Conn, batch: Vec<PreparedSale>) -> Vec<Result<SaleWithLines, StoreError>> {
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
