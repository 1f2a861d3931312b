//! `/accounting`: accounts with balances, transactions (list with filters,
//! create a debit or credit) and the financial report of a period.

use super::error::{ApiError, ApiResult, created, list, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Page, paged};
use crate::state::Shared;
use atelier_domain::store::accounting::{self, Direction, NewTransaction, TransactionFilter};
use atelier_domain::store::reports;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

pub async fn list_accounts(State(shared): State<Arc<Shared>>, caller: Caller) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(list(accounting::list_accounts(&mut conn, caller.tenant).await?, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    account_id: Option<i64>,
    category: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_transactions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    let filter = TransactionFilter { account_id: q.account_id, category: q.category, from: q.from, to: q.to };
    let mut conn = shared.db.conn().await?;
    Ok(paged(accounting::list_transactions(&mut conn, caller.tenant, &filter, page.limit, page.offset).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    account_id: Option<i64>,
    direction: String,
    amount_minor: i64,
    category: String,
    reference: Option<String>,
    description: Option<String>,
}

pub async fn create_transaction(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult {
    let direction =
        Direction::parse(&b.direction).ok_or_else(|| ApiError::invalid("direction", "expected debit or credit"))?;
    let new = NewTransaction {
        account_id: b.account_id,
        direction,
        amount_minor: b.amount_minor,
        category: b.category,
        reference: b.reference,
        description: b.description,
        created_by: Some(caller.user_id()),
    };
    let mut conn = shared.db.conn().await?;
    Ok(created(accounting::book(&mut conn, caller.tenant, new).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

pub async fn financial_report(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(reports::financial_report(&mut conn, caller.tenant, q.from, q.to).await?))
}
