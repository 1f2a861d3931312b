//! The API's envelope and errors: every answer is `{"success": true, "data": ...}`
//! (with `"count"` for lists) or `{"success": false, "error": {"code", "message"}}`
//! with a stable code. Store and rule errors map here, in one place.

use atelier_domain::rules::production::StepError;
use atelier_domain::rules::sale::SaleError;
use atelier_domain::store::{RuleError, StoreError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// A success answer, serialized straight from `data` (no JSON tree built
/// first: a list of steps or sales is the bulk of an answer's work here).
#[derive(Serialize)]
struct Success<T> {
    success: bool,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
}

/// `{"success": true, "data": ...}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    (StatusCode::OK, Json(Success { success: true, data, count: None, total: None })).into_response()
}

/// 201 with the envelope.
pub fn created<T: Serialize>(data: T) -> Response {
    (StatusCode::CREATED, Json(Success { success: true, data, count: None, total: None })).into_response()
}

/// A list: `{"success": true, "data": [...], "count": N}`; `total` is the
/// number of matches before pagination, when the list is paginated.
pub fn list<T: Serialize>(items: Vec<T>, total: Option<i64>) -> Response {
    let count = Some(items.len());
    (StatusCode::OK, Json(Success { success: true, data: items, count, total })).into_response()
}

/// An error answer with a stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult = Result<Response, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", format!("{field}: {message}"))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// A bug: logged here (inside the request's span, with its id), sent to
    /// Sentry by the tracing layer when configured; the caller sees no detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error: reported with the request id")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"success": false, "error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

fn step_code(e: &StepError) -> (StatusCode, &'static str) {
    match e {
        StepError::NegativeQuantity | StepError::InvalidStepQty => (StatusCode::BAD_REQUEST, "invalid_field"),
        // Refused by the step's state, not malformed: 422 (see README, "Error codes").
        StepError::QuantityExceeded { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "quantity_exceeded"),
        StepError::NotPlanned => (StatusCode::UNPROCESSABLE_ENTITY, "step_not_planned"),
        StepError::BelowCompleted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "rule_refused"),
        StepError::InvalidTransition { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_transition"),
        StepError::IncompleteQuantity { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "incomplete_quantity"),
        StepError::AlreadyCompleted => (StatusCode::UNPROCESSABLE_ENTITY, "step_completed"),
        StepError::CostLocked => (StatusCode::UNPROCESSABLE_ENTITY, "step_cost_locked"),
        StepError::ReassignCompleted => (StatusCode::UNPROCESSABLE_ENTITY, "step_assignment_locked"),
        StepError::NotCompleted { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "step_not_completed"),
    }
}

/// A rule's refusal: its status and stable code (see README, "Error codes").
fn rule_code(r: &RuleError) -> (StatusCode, &'static str) {
    match r {
        RuleError::Step(s) => step_code(s),
        RuleError::Sale(SaleError::Draft { .. }) => (StatusCode::UNPROCESSABLE_ENTITY, "sale_draft"),
        RuleError::Sale(SaleError::PaymentExceedsBalance { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "payment_exceeds_balance")
        }
        RuleError::Sale(_) | RuleError::Cost(_) | RuleError::Money(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "rule_refused")
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Forbidden(m) => ApiError::forbidden(m),
            StoreError::Invalid { field, message } => ApiError::invalid(&field, message),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Refused(r) => {
                let (status, code) = rule_code(&r);
                ApiError::new(status, code, r.to_string())
            }
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable: retry later",
                )
            }
            StoreError::Database(e) => ApiError::internal(e),
        }
    }
}
