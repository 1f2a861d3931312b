//! Businesses (studios), their locations (shops) and their staff (users).

use super::schema::{businesses, locations, users};
use super::{Conn, StoreError, Tenant};
use crate::rules::money::Currency;
use crate::rules::permissions::Role;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = businesses, check_for_backend(diesel::pg::Pg))]
pub struct Business {
    pub id: i64,
    pub name: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: i64,
    pub business_id: i64,
    pub location_id: Option<i64>,
    pub email: String,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn role(&self) -> Option<Role> {
        self.role.parse().ok()
    }
}

pub async fn create_business(conn: &mut Conn, name: &str, currency: Currency) -> Result<Business, StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid("name", "must not be empty"));
    }
    Ok(diesel::insert_into(businesses::table)
        .values((businesses::name.eq(name.trim()), businesses::currency.eq(currency.as_str())))
        .returning(Business::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn business(conn: &mut Conn, tenant: Tenant) -> Result<Business, StoreError> {
    businesses::table
        .find(tenant.business_id)
        .select(Business::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("business"))
}

pub async fn create_location(conn: &mut Conn, tenant: Tenant, name: &str) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(locations::table)
        .values((locations::business_id.eq(tenant.business_id), locations::name.eq(name)))
        .returning(locations::id)
        .get_result(conn)
        .await?)
}

/// A new staff account; the password arrives already hashed (argon2).
pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub location_id: Option<i64>,
}

pub async fn create_user(conn: &mut Conn, tenant: Tenant, new: NewUser<'_>) -> Result<User, StoreError> {
    let email = new.email.trim().to_lowercase();
    if !email.contains('@') || email.starts_with('@') {
        return Err(StoreError::invalid("email", "is not an email address"));
    }
    diesel::insert_into(users::table)
        .values((
            users::business_id.eq(tenant.business_id),
            users::email.eq(&email),
            users::name.eq(new.name),
            users::password_hash.eq(new.password_hash),
            users::role.eq(new.role.as_str()),
            users::location_id.eq(new.location_id),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a user with email {email} already exists")),
            other => other,
        })
}

/// A user of the tenant's business.
pub async fn user(conn: &mut Conn, tenant: Tenant, user_id: i64) -> Result<User, StoreError> {
    users::table
        .filter(users::business_id.eq(tenant.business_id).and(users::id.eq(user_id)))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("user"))
}

/// The account that logs in with `email` (any business: login precedes tenancy).
pub async fn user_by_email(conn: &mut Conn, email: &str) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .filter(users::email.eq(email.trim().to_lowercase()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn list_users(conn: &mut Conn, tenant: Tenant) -> Result<Vec<User>, StoreError> {
    Ok(users::table
        .filter(users::business_id.eq(tenant.business_id))
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)
        .await?)
}

/// Disables a user: it can no longer log in, and its tokens stop working.
pub async fn set_user_active(conn: &mut Conn, tenant: Tenant, user_id: i64, active: bool) -> Result<User, StoreError> {
    diesel::update(users::table.filter(users::business_id.eq(tenant.business_id).and(users::id.eq(user_id))))
        .set((users::active.eq(active), users::updated_at.eq(diesel::dsl::now)))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("user"))
}

/// Every account of every business (operators' listing), by business then id.
pub async fn list_all_users(conn: &mut Conn) -> Result<Vec<User>, StoreError> {
    Ok(users::table.order((users::business_id.asc(), users::id.asc())).select(User::as_select()).load(conn).await?)
}
