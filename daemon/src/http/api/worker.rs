//! `/worker`: a production worker's own steps (completed ones only with
//! `include_completed=true`), progress and status. A worker sees and changes
//! only steps assigned to it (another worker's step: 403); managers and admins
//! reach any step of their business here (the rule: `rules::production::Actor`).
//! Costs are never shown here.

use super::error::{ApiError, ApiResult, list, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Id};
use super::origin;
use crate::state::Shared;
use atelier_domain::rules::production::StepStatus;
use atelier_domain::store::production::{self, Actor, Step};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A step as a worker sees it: no cost, no vendor.
#[derive(Serialize)]
pub struct WorkerStep {
    id: i64,
    order_id: i64,
    position: i32,
    name: String,
    step_qty: Option<i32>,
    completed_qty: i32,
    status: String,
    assigned_user_id: Option<i64>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<Step> for WorkerStep {
    fn from(s: Step) -> Self {
        WorkerStep {
            id: s.id,
            order_id: s.order_id,
            position: s.position,
            name: s.name,
            step_qty: s.step_qty,
            completed_qty: s.completed_qty,
            status: s.status,
            assigned_user_id: s.assigned_user_id,
            started_at: s.started_at,
            completed_at: s.completed_at,
            updated_at: s.updated_at,
        }
    }
}

fn actor(c: &Caller) -> Actor {
    Actor::for_role(c.user_id(), c.role)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    include_completed: bool,
}

pub async fn my_steps(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let steps = production::steps_assigned_to(&mut conn, caller.tenant, caller.user_id(), q.include_completed).await?;
    Ok(list(steps.into_iter().map(WorkerStep::from).collect(), None))
}

pub async fn get_step(State(shared): State<Arc<Shared>>, caller: Caller, Id(id): Id) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let step = production::step(&mut conn, caller.tenant, id, Some(actor(&caller))).await?;
    Ok(ok(WorkerStep::from(step)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    completed_qty: i32,
}

pub async fn progress(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<ProgressBody>,
) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let step =
        production::record_progress(&mut conn, caller.tenant, id, actor(&caller), b.completed_qty, &origin()).await?;
    Ok(ok(WorkerStep::from(step)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    status: String,
}

pub async fn set_status(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    ApiJson(b): ApiJson<StatusBody>,
) -> ApiResult {
    let status = StepStatus::parse(&b.status)
        .ok_or_else(|| ApiError::invalid("status", "expected pending, in_progress or completed"))?;
    let mut conn = shared.db.conn().await?;
    let step = production::set_status(&mut conn, caller.tenant, id, actor(&caller), status, &origin()).await?;
    Ok(ok(WorkerStep::from(step)))
}
