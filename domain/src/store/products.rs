//! Products: what a business sells, at what price, and whether it is made to
//! order (`requires_production`, default false: the only thing that makes a
//! sale a studio sale).

use super::schema::products;
use super::tenancy;
use super::{Conn, Page, StoreError, Tenant};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: i64,
    pub business_id: i64,
    pub name: String,
    pub sku: Option<String>,
    pub unit_price_minor: i64,
    pub currency: String,
    pub requires_production: bool,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct NewProduct {
    pub name: String,
    pub sku: Option<String>,
    pub unit_price_minor: i64,
    pub requires_production: bool,
}

fn check(name: Option<&str>, price: Option<i64>) -> Result<(), StoreError> {
    if let Some(name) = name
        && (name.trim().is_empty() || name.len() > 200)
    {
        return Err(StoreError::invalid("name", "must be 1 to 200 characters"));
    }
    if let Some(p) = price
        && p < 0
    {
        return Err(StoreError::invalid("unit_price_minor", "must not be negative"));
    }
    Ok(())
}

/// Creates a product priced in the business's currency.
pub async fn create(conn: &mut Conn, tenant: Tenant, new: NewProduct) -> Result<Product, StoreError> {
    check(Some(&new.name), Some(new.unit_price_minor))?;
    let business = tenancy::business(conn, tenant).await?;
    diesel::insert_into(products::table)
        .values((
            products::business_id.eq(tenant.business_id),
            products::name.eq(new.name.trim()),
            products::sku.eq(new.sku),
            products::unit_price_minor.eq(new.unit_price_minor),
            products::currency.eq(business.currency),
            products::requires_production.eq(new.requires_production),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a product with this sku already exists".into()),
            other => other,
        })
}

pub async fn get(conn: &mut Conn, tenant: Tenant, id: i64) -> Result<Product, StoreError> {
    products::table
        .filter(products::business_id.eq(tenant.business_id).and(products::id.eq(id)))
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("product"))
}

pub async fn list(conn: &mut Conn, tenant: Tenant, limit: i64, offset: i64) -> Result<(Vec<Product>, i64), StoreError> {
    let scoped = || products::table.filter(products::business_id.eq(tenant.business_id)).into_boxed();
    super::page(conn, scoped, |q| q.order(products::id.asc()), Page::new(limit, offset)).await
}

/// The fields a product update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = products)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub sku: Option<Option<String>>,
    pub unit_price_minor: Option<i64>,
    pub requires_production: Option<bool>,
    pub active: Option<bool>,
}

pub async fn update(conn: &mut Conn, tenant: Tenant, id: i64, changes: ProductChanges) -> Result<Product, StoreError> {
    check(changes.name.as_deref(), changes.unit_price_minor)?;
    let target = products::table.filter(products::business_id.eq(tenant.business_id).and(products::id.eq(id)));
    let nothing = changes.name.is_none()
        && changes.sku.is_none()
        && changes.unit_price_minor.is_none()
        && changes.requires_production.is_none()
        && changes.active.is_none();
    if nothing {
        return get(conn, tenant, id).await;
    }
    diesel::update(target)
        .set((changes, products::updated_at.eq(diesel::dsl::now)))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("product"))
}
