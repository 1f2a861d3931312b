//! Reports: cost reports of production (per order: total cost, final price,
//! profit, margin; per step type; totals), filtered by order, step type and
//! date range, and the financial report of accounting (per category debits
//! and credits over a period, account balances). Profit and margin come from
//! `rules::costing::profitability`, never stored.

use super::schema::{account_transactions, accounts, production_orders, production_steps};
use super::{Conn, StoreError, Tenant, tenancy};
use crate::rules::costing::{self, Profitability};
use crate::rules::money::{Currency, Money};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use std::collections::BTreeMap;

/// At most this many orders go into one report.
pub const MAX_REPORT_ORDERS: i64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct CostFilter {
    pub order_id: Option<i64>,
    /// A step name (Dyeing, Handwork, ...): only orders with such a step, and
    /// only that type in the per-type section.
    pub step_type: Option<String>,
    /// Orders created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Orders created before.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderCost {
    pub order_id: i64,
    pub order_no: String,
    pub sale_id: Option<i64>,
    pub status: String,
    pub currency: String,
    #[serde(flatten)]
    pub profitability: Profitability,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTypeCost {
    pub step_type: String,
    pub steps: i64,
    pub completed_steps: i64,
    pub total_cost_minor: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub currency: String,
    pub orders: Vec<OrderCost>,
    pub step_types: Vec<StepTypeCost>,
    pub totals: Profitability,
    pub order_count: usize,
}

/// id, order_no, sale_id, status, total cost, final price, currency.
type OrderRow = (i64, String, Option<i64>, String, i64, i64, String);

pub async fn cost_report(conn: &mut Conn, tenant: Tenant, filter: &CostFilter) -> Result<CostReport, StoreError> {
    let business = tenancy::business(conn, tenant).await?;
    let currency: Currency = business.currency.parse()?;
    let mut q = production_orders::table.filter(production_orders::business_id.eq(tenant.business_id)).into_boxed();
    if let Some(id) = filter.order_id {
        q = q.filter(production_orders::id.eq(id));
    }
    if let Some(from) = filter.from {
        q = q.filter(production_orders::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(production_orders::created_at.lt(to));
    }
    if let Some(t) = &filter.step_type {
        let with_type = production_steps::table
            .filter(production_steps::business_id.eq(tenant.business_id).and(production_steps::name.eq(t.clone())))
            .select(production_steps::order_id);
        q = q.filter(production_orders::id.eq_any(with_type));
    }
    let orders: Vec<OrderRow> = q
        .order((production_orders::created_at.asc(), production_orders::id.asc()))
        .limit(MAX_REPORT_ORDERS)
        .select((
            production_orders::id,
            production_orders::order_no,
            production_orders::sale_id,
            production_orders::status,
            production_orders::total_cost_minor,
            production_orders::final_price_minor,
            production_orders::currency,
        ))
        .load(conn)
        .await?;
    let ids: Vec<i64> = orders.iter().map(|o| o.0).collect();
    let steps: Vec<(String, String, i64)> = production_steps::table
        .filter(production_steps::business_id.eq(tenant.business_id).and(production_steps::order_id.eq_any(&ids)))
        .select((production_steps::name, production_steps::status, production_steps::cost_minor))
        .load(conn)
        .await?;
    let mut per_type: BTreeMap<String, StepTypeCost> = BTreeMap::new();
    for (name, status, cost) in steps {
        if filter.step_type.as_ref().is_some_and(|t| t != &name) {
            continue;
        }
        let e = per_type.entry(name.clone()).or_insert(StepTypeCost {
            step_type: name,
            steps: 0,
            completed_steps: 0,
            total_cost_minor: 0,
        });
        e.steps += 1;
        e.completed_steps += i64::from(status == "completed");
        e.total_cost_minor = e.total_cost_minor.checked_add(cost).ok_or(crate::rules::money::MoneyError::Overflow)?;
    }
    let mut rows = Vec::with_capacity(orders.len());
    let (mut total_cost, mut total_price) = (Money::zero(currency), Money::zero(currency));
    for (id, order_no, sale_id, status, cost, price, cur) in orders {
        let c: Currency = cur.parse()?;
        let p = costing::profitability(Money::new(price, c), Money::new(cost, c))?;
        if c == currency {
            total_cost = total_cost.checked_add(Money::new(cost, c))?;
            total_price = total_price.checked_add(Money::new(price, c))?;
        }
        rows.push(OrderCost { order_id: id, order_no, sale_id, status, currency: cur, profitability: p });
    }
    let totals = costing::profitability(total_price, total_cost)?;
    Ok(CostReport {
        currency: business.currency,
        order_count: rows.len(),
        orders: rows,
        step_types: per_type.into_values().collect(),
        totals,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryTotal {
    pub category: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
    pub transactions: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountBalance {
    pub account_id: i64,
    pub name: String,
    pub balance_minor: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinancialReport {
    pub currency: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub categories: Vec<CategoryTotal>,
    pub total_debit_minor: i64,
    pub total_credit_minor: i64,
    /// Credits − debits over the period.
    pub net_minor: i64,
    /// Balances now (not at the end of the period).
    pub accounts: Vec<AccountBalance>,
}

pub async fn financial_report(
    conn: &mut Conn,
    tenant: Tenant,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<FinancialReport, StoreError> {
    let business = tenancy::business(conn, tenant).await?;
    let mut q =
        account_transactions::table.filter(account_transactions::business_id.eq(tenant.business_id)).into_boxed();
    if let Some(f) = from {
        q = q.filter(account_transactions::occurred_at.ge(f));
    }
    if let Some(t) = to {
        q = q.filter(account_transactions::occurred_at.lt(t));
    }
    let rows: Vec<(String, String, i64)> = q
        .select((account_transactions::category, account_transactions::direction, account_transactions::amount_minor))
        .load(conn)
        .await?;
    let overflow = || StoreError::from(crate::rules::money::MoneyError::Overflow);
    let mut per: BTreeMap<String, CategoryTotal> = BTreeMap::new();
    let (mut debit, mut credit) = (0i64, 0i64);
    for (category, direction, amount) in rows {
        let e = per.entry(category.clone()).or_insert(CategoryTotal {
            category,
            debit_minor: 0,
            credit_minor: 0,
            transactions: 0,
        });
        e.transactions += 1;
        if direction == "debit" {
            e.debit_minor = e.debit_minor.checked_add(amount).ok_or_else(overflow)?;
            debit = debit.checked_add(amount).ok_or_else(overflow)?;
        } else {
            e.credit_minor = e.credit_minor.checked_add(amount).ok_or_else(overflow)?;
            credit = credit.checked_add(amount).ok_or_else(overflow)?;
        }
    }
    let accounts: Vec<AccountBalance> = accounts::table
        .filter(accounts::business_id.eq(tenant.business_id))
        .order(accounts::id.asc())
        .select((accounts::id, accounts::name, accounts::balance_minor))
        .load::<(i64, String, i64)>(conn)
        .await?
        .into_iter()
        .map(|(account_id, name, balance_minor)| AccountBalance { account_id, name, balance_minor })
        .collect();
    Ok(FinancialReport {
        currency: business.currency,
        from,
        to,
        categories: per.into_values().collect(),
        total_debit_minor: debit,
        total_credit_minor: credit,
        net_minor: credit.checked_sub(debit).ok_or_else(overflow)?,
        accounts,
    })
}
