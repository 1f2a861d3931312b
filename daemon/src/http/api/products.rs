//! `/products`: list, get, create, update. `requires_production` (default
//! false) is what makes a sale a studio sale.

use super::error::{ApiResult, created, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Id, Page, paged};
use crate::state::Shared;
use atelier_domain::store::products::{self, NewProduct, ProductChanges};
use axum::extract::State;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_products(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    let mut conn = shared.db.conn().await?;
    Ok(paged(products::list(&mut conn, caller.tenant, page.limit, page.offset).await?))
}

pub async fn get_product(State(shared): State<Arc<Shared>>, caller: Caller, Id(id): Id) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(ok(products::get(&mut conn, caller.tenant, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    sku: Option<String>,
    unit_price_minor: i64,
    #[serde(default)]
    requires_production: bool,
}

pub async fn create_product(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let new = NewProduct {
        name: b.name,
        sku: b.sku,
        unit_price_minor: b.unit_price_minor,
        requires_production: b.requires_production,
    };
    Ok(created(products::create(&mut conn, caller.tenant, new).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    sku: Option<Option<String>>,
    unit_price_minor: Option<i64>,
    requires_production: Option<bool>,
    active: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn update_product(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<UpdateBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let changes = ProductChanges {
        name: b.name,
        sku: b.sku,
        unit_price_minor: b.unit_price_minor,
        requires_production: b.requires_production,
        active: b.active,
    };
    Ok(ok(products::update(&mut conn, caller.tenant, id, changes).await?))
}
