//! Authentication and authorization: `POST /auth/login`, `GET /me`, and
//! [`authorize`], the per-route layer that turns a Bearer token into a [`Caller`] and checks the
//! one permission the route declared (401 without a valid token or for a
//! disabled user, 403 without the permission). Tokens are signed and verified
//! with the key set of [`crate::keys`].

use super::error::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Caller, ClientAddr};
use crate::state::Shared;
use atelier_domain::auth::{self, Claims};
use atelier_domain::rules::lockout;
use atelier_domain::rules::permissions::{Permission, Role};
use atelier_domain::store::{StoreError, Tenant, login_throttle, tenancy};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The per-route guard: authenticates the Bearer token, re-reads the user
/// (a disabled user's tokens stop working at once), checks `need`.
pub async fn authorize(
    State((shared, need)): State<(Arc<Shared>, Option<Permission>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req.headers().get(AUTHORIZATION).map(|h| h.to_str().map(str::to_owned).unwrap_or_default());
    match caller(&shared, header, need).await {
        Ok(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn caller(shared: &Shared, header: Option<String>, need: Option<Permission>) -> Result<Caller, ApiError> {
    let header = header.ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    let claims = shared
        .keys
        .get()
        .verify(token, Utc::now())
        .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
    let mut conn = shared.db.conn().await?;
    let user = match tenancy::user(&mut conn, Tenant::new(claims.bid), claims.sub).await {
        Ok(u) => u,
        Err(StoreError::NotFound(_)) => return Err(ApiError::unauthorized("invalid token: no such user")),
        Err(e) => return Err(e.into()),
    };
    if !user.active {
        return Err(ApiError::unauthorized("the account is disabled"));
    }
    let role = user.role().ok_or_else(|| ApiError::internal(format!("user {} has an unknown role", user.id)))?;
    if let Some(p) = need
        && !role.can(p)
    {
        return Err(ApiError::forbidden(format!("this needs the permission {p}, which the role {role} lacks")));
    }
    Ok(Caller { tenant: Tenant::new(user.business_id), role, user })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// The lockout limits of the configuration, per account and per address.
fn limits(shared: &Shared) -> (lockout::Limits, lockout::Limits) {
    let a = &shared.config.settings.auth;
    let per = |failures| lockout::Limits { failures, window: a.lockout_window, duration: a.lockout_duration };
    (per(a.lockout_account_failures), per(a.lockout_client_failures))
}

/// 429 in the envelope, with `Retry-After` in seconds.
fn locked_out(seconds: u64) -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed logins: try again in {seconds} s"),
    )
    .into_response();
    res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    res
}

/// `POST /auth/login`: email and password → a Bearer token.
///
/// Failed logins are counted per account (the email as typed, known or not)
/// and per client address; either over its limit answers 429 with
/// `Retry-After` before any password is checked, so a correct password
/// during a lockout still fails. An unknown email is checked against a dummy
/// hash and counted like a wrong password: the two are indistinguishable.
/// Hashing runs on the bounded pool ([`Shared::hashing`]).
pub async fn login(
    State(shared): State<Arc<Shared>>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult {
    if body.email.trim().is_empty() {
        return Err(ApiError::invalid("email", "must not be empty"));
    }
    if body.password.is_empty() || body.password.len() > 1024 {
        return Err(ApiError::invalid("password", "must be 1 to 1024 characters"));
    }
    let mut keys = vec![lockout::account_key(&body.email)];
    if let Some(ip) = client {
        keys.push(lockout::client_key(&ip.to_string()));
    }
    let mut conn = shared.db.conn().await?;
    if let Some(seconds) = login_throttle::locked_for(&mut conn, &keys, Utc::now()).await? {
        return Ok(locked_out(seconds));
    }
    let user = tenancy::user_by_email(&mut conn, &body.email).await?;
    drop(conn);
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| auth::dummy_hash().to_owned());
    let password = body.password;
    let matches = shared
        .hashing
        .run(move || auth::verify_password(&password, &hash))
        .await
        .ok_or_else(|| ApiError::internal("the password hashing pool stopped"))?;
    let mut conn = shared.db.conn().await?;
    let user = match user {
        Some(u) if matches => u,
        _ => {
            let (account, address) = limits(&shared);
            let now = Utc::now();
            login_throttle::record_failure(&mut conn, &keys[0], &account, now).await?;
            if let Some(k) = keys.get(1) {
                login_throttle::record_failure(&mut conn, k, &address, now).await?;
            }
            // Keys whose window and lock are over count for nothing: forget some.
            let over = account.window.max(account.duration).max(address.window).max(address.duration);
            login_throttle::forget_stale(
                &mut conn,
                now - chrono::Duration::from_std(over).unwrap_or(chrono::Duration::MAX),
            )
            .await?;
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong email or password"));
        }
    };
    login_throttle::clear(&mut conn, &keys[0]).await?;
    if !user.active {
        return Err(ApiError::unauthorized("the account is disabled"));
    }
    let lifetime = shared.config.settings.auth.token_lifetime;
    let claims = Claims::new(user.id, user.business_id, &user.role, Utc::now(), lifetime);
    let token = shared.keys.get().sign(&claims);
    let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0);
    Ok(ok(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": expires_at,
        "user": user,
    })))
}

/// `GET /me`: who the caller is and what the apps should show it.
pub async fn me(State(shared): State<Arc<Shared>>, caller: Caller) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    let business = tenancy::business(&mut conn, caller.tenant).await?;
    let role: Role = caller.role;
    Ok(ok(json!({
        "user": caller.user,
        "role": role,
        "business": business,
        "permissions": role.permissions(),
        "modules": role.modules(),
    })))
}
