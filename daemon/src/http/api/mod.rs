//! `/api/v1`: the staff apps' API (being built, issue 4).

use crate::app::Shared;
use axum::Router;
use std::sync::Arc;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
}
