//! Accounting: accounts with balances and the transactions that move them. A
//! credit adds to an account's balance, a debit takes from it; a transaction
//! and its balance change commit together. A reference is unique per business,
//! so a step's expense is booked at most once.

use super::schema::{account_transactions, accounts};
use super::{Conn, Page, StoreError, Tenant, tenancy};
use crate::rules::costing::StepExpense;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

/// The account expenses go to when a business has set up none.
pub const DEFAULT_ACCOUNT_NAME: &str = "Main account";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Debit,
    Credit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "debit" => Some(Direction::Debit),
            "credit" => Some(Direction::Credit),
            _ => None,
        }
    }

    /// What the transaction does to the account's balance.
    pub fn balance_change(self, amount_minor: i64) -> i64 {
        match self {
            Direction::Debit => -amount_minor,
            Direction::Credit => amount_minor,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct Account {
    pub id: i64,
    #[serde(skip)]
    pub business_id: i64,
    pub name: String,
    pub currency: String,
    pub balance_minor: i64,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = account_transactions, check_for_backend(diesel::pg::Pg))]
pub struct Transaction {
    pub id: i64,
    #[serde(skip)]
    pub business_id: i64,
    pub account_id: i64,
    pub direction: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category: String,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub created_by: Option<i64>,
}

pub async fn create_account(
    conn: &mut Conn,
    tenant: Tenant,
    name: &str,
    is_default: bool,
) -> Result<Account, StoreError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(StoreError::invalid("name", "must be 1 to 200 characters"));
    }
    let business = tenancy::business(conn, tenant).await?;
    conn.transaction(async |conn| {
        if is_default {
            diesel::update(accounts::table.filter(accounts::business_id.eq(tenant.business_id)))
                .set(accounts::is_default.eq(false))
                .execute(conn)
                .await?;
        }
        diesel::insert_into(accounts::table)
            .values((
                accounts::business_id.eq(tenant.business_id),
                accounts::name.eq(name.trim()),
                accounts::currency.eq(&business.currency),
                accounts::is_default.eq(is_default),
            ))
            .returning(Account::as_returning())
            .get_result(conn)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("an account named {name} already exists")),
                other => other,
            })
    })
    .await
}

pub async fn list_accounts(conn: &mut Conn, tenant: Tenant) -> Result<Vec<Account>, StoreError> {
    Ok(accounts::table
        .filter(accounts::business_id.eq(tenant.business_id))
        .order(accounts::id.asc())
        .select(Account::as_select())
        .load(conn)
        .await?)
}

/// The business's default account, created on first need.
async fn default_account(conn: &mut Conn, tenant: Tenant) -> Result<Account, StoreError> {
    let found = accounts::table
        .filter(accounts::business_id.eq(tenant.business_id).and(accounts::is_default.eq(true)))
        .select(Account::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(a) = found {
        return Ok(a);
    }
    let business = tenancy::business(conn, tenant).await?;
    diesel::insert_into(accounts::table)
        .values((
            accounts::business_id.eq(tenant.business_id),
            accounts::name.eq(DEFAULT_ACCOUNT_NAME),
            accounts::currency.eq(&business.currency),
            accounts::is_default.eq(true),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(accounts::table
        .filter(accounts::business_id.eq(tenant.business_id).and(accounts::is_default.eq(true)))
        .select(Account::as_select())
        .first(conn)
        .await?)
}

/// A transaction to book.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    /// The default account when `None`.
    pub account_id: Option<i64>,
    pub direction: Direction,
    pub amount_minor: i64,
    pub category: String,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub created_by: Option<i64>,
}

/// Books a transaction and moves the account's balance, inside the caller's
/// transaction. Returns `None`, changing nothing, when a transaction with the
/// same reference already exists.
pub async fn book_in(conn: &mut Conn, tenant: Tenant, new: NewTransaction) -> Result<Option<Transaction>, StoreError> {
    if new.amount_minor <= 0 {
        return Err(StoreError::invalid("amount_minor", "must be more than 0"));
    }
    if new.category.trim().is_empty() || new.category.len() > 100 {
        return Err(StoreError::invalid("category", "must be 1 to 100 characters"));
    }
    let account = match new.account_id {
        Some(id) => accounts::table
            .filter(accounts::business_id.eq(tenant.business_id).and(accounts::id.eq(id)))
            .select(Account::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| StoreError::invalid("account_id", "no such account"))?,
        None => default_account(conn, tenant).await?,
    };
    let inserted: Option<Transaction> = diesel::insert_into(account_transactions::table)
        .values((
            account_transactions::business_id.eq(tenant.business_id),
            account_transactions::account_id.eq(account.id),
            account_transactions::direction.eq(new.direction.as_str()),
            account_transactions::amount_minor.eq(new.amount_minor),
            account_transactions::currency.eq(&account.currency),
            account_transactions::category.eq(new.category.trim()),
            account_transactions::reference.eq(&new.reference),
            account_transactions::description.eq(&new.description),
            account_transactions::created_by.eq(new.created_by),
        ))
        .on_conflict_do_nothing()
        .returning(Transaction::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let Some(tx) = inserted else { return Ok(None) };
    diesel::update(accounts::table.find(account.id))
        .set(accounts::balance_minor.eq(accounts::balance_minor + new.direction.balance_change(new.amount_minor)))
        .execute(conn)
        .await?;
    Ok(Some(tx))
}

/// [`book_in`] in its own transaction; a repeated reference is a conflict.
pub async fn book(conn: &mut Conn, tenant: Tenant, new: NewTransaction) -> Result<Transaction, StoreError> {
    conn.transaction(async |conn| {
        let reference = new.reference.clone();
        book_in(conn, tenant, new).await?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "a transaction with reference {} already exists",
                reference.unwrap_or_default()
            ))
        })
    })
    .await
}

/// Books a completed step's expense (a debit in "Production Cost") on the
/// default account, at most once. Returns whether it booked it now.
pub async fn book_step_expense_in(
    conn: &mut Conn,
    tenant: Tenant,
    expense: &StepExpense,
) -> Result<Option<Transaction>, StoreError> {
    book_in(
        conn,
        tenant,
        NewTransaction {
            account_id: None,
            direction: Direction::Debit,
            amount_minor: expense.amount_minor,
            category: expense.category.to_owned(),
            reference: Some(expense.reference.clone()),
            description: Some(expense.description.clone()),
            created_by: None,
        },
    )
    .await
}

#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub account_id: Option<i64>,
    pub category: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

pub async fn list_transactions(
    conn: &mut Conn,
    tenant: Tenant,
    filter: &TransactionFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Transaction>, i64), StoreError> {
    let scoped = || {
        let mut q =
            account_transactions::table.filter(account_transactions::business_id.eq(tenant.business_id)).into_boxed();
        if let Some(a) = filter.account_id {
            q = q.filter(account_transactions::account_id.eq(a));
        }
        if let Some(c) = &filter.category {
            q = q.filter(account_transactions::category.eq(c.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(account_transactions::occurred_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(account_transactions::occurred_at.lt(to));
        }
        q
    };
    super::page(
        conn,
        scoped,
        |q| q.order((account_transactions::occurred_at.desc(), account_transactions::id.desc())),
        Page::new(limit, offset),
    )
    .await
}
