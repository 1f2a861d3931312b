//! `/sales`: list (filters status, channel, customer, date range; `limit` and
//! `offset`), create as draft or final, get (with lines and payments), update
//! a draft, complete a draft, record a payment.

use super::error::{ApiError, ApiResult, created, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Id, Page, paged};
use super::origin;
use crate::state::Shared;
use atelier_domain::rules::sale::{Channel, SaleStatus};
use atelier_domain::store::sales::{self, NewLine, NewSale, SaleFilter, SaleRequest};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    channel: Option<String>,
    customer_id: Option<i64>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_sales(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    let filter = SaleFilter {
        status: q.status.as_deref().map(parse_status).transpose()?,
        channel: q.channel.as_deref().map(parse_channel).transpose()?,
        customer_id: q.customer_id,
        from: q.from,
        to: q.to,
    };
    let mut conn = shared.db.conn().await?;
    Ok(paged(sales::list(&mut conn, caller.tenant, &filter, page.limit, page.offset).await?))
}

fn parse_status(s: &str) -> Result<SaleStatus, ApiError> {
    SaleStatus::parse(s).ok_or_else(|| ApiError::invalid("status", "expected draft or final"))
}

fn parse_channel(s: &str) -> Result<Channel, ApiError> {
    Channel::parse(s).ok_or_else(|| {
        ApiError::invalid("channel", "expected web, mobile, walk_in, whatsapp, facebook, instagram or telegram")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    product_id: i64,
    quantity: i32,
    unit_price_minor: Option<i64>,
}

impl From<LineBody> for NewLine {
    fn from(l: LineBody) -> Self {
        NewLine { product_id: l.product_id, quantity: l.quantity, unit_price_minor: l.unit_price_minor }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `final` (default) or `draft`.
    status: Option<String>,
    /// Where the sale came from (default `mobile`): metadata only.
    channel: Option<String>,
    customer_id: Option<i64>,
    location_id: Option<i64>,
    notes: Option<String>,
    lines: Vec<LineBody>,
}

pub async fn create_sale(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult {
    let new = NewSale {
        status: b.status.as_deref().map(parse_status).transpose()?.unwrap_or(SaleStatus::Final),
        channel: b.channel.as_deref().map(parse_channel).transpose()?.unwrap_or(Channel::Mobile),
        location_id: b.location_id,
        customer_id: b.customer_id,
        notes: b.notes,
        created_by: Some(caller.user_id()),
        lines: b.lines.into_iter().map(NewLine::from).collect(),
    };
    let sale = shared.sales.create(SaleRequest { tenant: caller.tenant, new, origin: origin() }).await?;
    Ok(created(sale))
}

pub async fn get_sale(State(shared): State<Arc<Shared>>, caller: Caller, Id(id): Id) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let sale = sales::get(&mut conn, caller.tenant, id).await?;
    let payments = sales::payments_of(&mut conn, caller.tenant, id).await?;
    let mut data = serde_json::to_value(&sale).map_err(ApiError::internal)?;
    data["payments"] = json!(payments);
    Ok(ok(data))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    lines: Option<Vec<LineBody>>,
    /// `null` clears the notes; absent keeps them.
    #[serde(default, deserialize_with = "double_option")]
    notes: Option<Option<String>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn update_sale(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<UpdateBody>,
) -> ApiResult {
    let lines = b.lines.map(|ls| ls.into_iter().map(NewLine::from).collect());
    let mut conn = shared.db.conn().await?;
    let sale = sales::update_draft(&mut conn, caller.tenant, id, lines, b.notes).await?;
    Ok(ok(sale))
}

pub async fn complete_sale(State(shared): State<Arc<Shared>>, caller: Caller, Id(id): Id) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let sale = sales::complete(&mut conn, caller.tenant, id, &origin()).await?;
    Ok(ok(sale))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    amount_minor: i64,
    method: String,
}

pub async fn record_payment(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<PaymentBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let payment = sales::record_payment(
        &mut conn,
        caller.tenant,
        id,
        b.amount_minor,
        &b.method,
        Some(caller.user_id()),
        &origin(),
    )
    .await?;
    Ok(created(payment))
}
