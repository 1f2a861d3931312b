//! Extractors whose rejections speak the envelope: JSON bodies (400 malformed
//! or invalid field, 413 over `http.body_limit`, 415 not JSON), query strings
//! and path ids (400), pagination ([`Page`], and [`paged`] answering a page
//! of any list), and the authenticated [`Caller`] that the per-route
//! permission layer (`auth::authorize`) leaves in the request.

use super::error::{ApiError, list};
use atelier_domain::rules::limits;
use atelier_domain::rules::permissions::Role;
use atelier_domain::store::tenancy::User;
use atelier_domain::store::{self, Tenant};
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A JSON body, with axum's rejections mapped into the envelope.
pub struct ApiJson<T>(pub T);

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", clean(&e.body_text())),
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_field", clean(&e.body_text())),
        JsonRejection::BytesRejection(b) => bytes_rejection(b),
        other => ApiError::bad_request("bad_request", other.body_text()),
    }
}

pub fn bytes_rejection(b: BytesRejection) -> ApiError {
    if b.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than the limit")
    } else {
        ApiError::bad_request("bad_request", "cannot read the body")
    }
}

/// axum's messages start with what failed ("Failed to deserialize the JSON
/// body into the target type: "); keep the part that names the field.
fn clean(text: &str) -> String {
    let t = text.rsplit_once("target type: ").map(|(_, r)| r).unwrap_or(text);
    let t = t.strip_prefix("Failed to parse the request body as JSON: ").unwrap_or(t);
    t.chars().take(300).collect()
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    /// The body is read as JSON, checked against the input limits
    /// (`rules::limits`: no NUL, lengths, counts, ranges), then typed; every
    /// refusal names the field (`body` for the body itself).
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(r) => return Err(json_rejection(r)),
        };
        // Every body of this API is an object (serde would also take a list
        // for a struct, field by position: refused here).
        if !value.is_object() {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        limits::check_body(&value).map_err(|v| ApiError::invalid(&v.field, v.message))?;
        serde_path_to_error::deserialize(value).map(ApiJson).map_err(|e| typed_rejection(&e))
    }
}

/// A body that is JSON but not of the route's type, as `field: message`.
fn typed_rejection(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    let prefix = if path == "." || path.is_empty() { String::new() } else { format!("{path}.") };
    // serde names a missing or unknown field in its message, not its path.
    for (lead, what) in [("missing field `", "is required"), ("unknown field `", "is not a field of this body")] {
        if let Some(rest) = message.strip_prefix(lead)
            && let Some((name, _)) = rest.split_once('`')
        {
            // An unknown field is already the path's last segment; a missing one is not.
            let field =
                if path == name || path.ends_with(&format!(".{name}")) { path } else { format!("{prefix}{name}") };
            return ApiError::invalid(&field, what);
        }
    }
    let field = if prefix.is_empty() { "body".to_owned() } else { path };
    ApiError::invalid(&field, message.chars().take(300).collect::<String>())
}

/// A query string; a malformed or invalid parameter is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        limits::check_query(
            url::form_urlencoded::parse(raw.as_bytes()).collect::<Vec<_>>().iter().map(|(k, v)| (&**k, &**v)),
        )
        .map_err(|v| ApiError::bad_request("invalid_query", v.to_string()))?;
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(ApiQuery(q.0)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let t = e.body_text();
                let t = t.strip_prefix("Failed to deserialize query string: ").unwrap_or(&t);
                Err(ApiError::bad_request("invalid_query", t.chars().take(300).collect::<String>()))
            }
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

/// A numeric id in the path.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<i64>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Id(p.0)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::invalid("id", "must be an integer")),
            Err(other) => Err(ApiError::bad_request("bad_request", other.body_text())),
        }
    }
}

/// `limit` (1..=200, default 50) and `offset` (>= 0, default 0).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub const MAX_LIMIT: i64 = 200;
pub const DEFAULT_LIMIT: i64 = 50;

impl Page {
    /// The page a list query asks for (defaults filled in), or a 400 naming
    /// the parameter out of range.
    pub fn resolve(limit: Option<i64>, offset: Option<i64>) -> Result<store::Page, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid("offset", "must not be negative"));
        }
        Ok(store::Page::new(limit, offset))
    }
}

/// A page of a list as the API answers it (`data`, `count`, `total`), from
/// the store's page and count of all matches.
pub fn paged<T: serde::Serialize>((rows, total): (Vec<T>, i64)) -> Response {
    list(rows, Some(total))
}

/// The authenticated caller: its user (active, re-read at each request), role
/// and business. The business comes only from here, never from a request.
#[derive(Clone)]
pub struct Caller {
    pub user: User,
    pub role: Role,
    pub tenant: Tenant,
}

impl Caller {
    pub fn user_id(&self) -> i64 {
        self.user.id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a handler that needs a caller is routed without the auth layer"))
    }
}

/// The client's address (the TCP peer: behind a reverse proxy, the proxy's),
/// as the connection left it in the request.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddr(peer.map(|c| c.0.ip())))
    }
}
