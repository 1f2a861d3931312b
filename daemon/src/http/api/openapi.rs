//! The OpenAPI 3.1 document of `/api/v1`, generated from the route table in
//! `mod.rs` (the same table the router is built from): paths, methods,
//! parameters, bodies, the permission each operation needs (`x-permission`),
//! security, and the envelope of answers and errors.

use super::{Access, RouteDoc, docs};
use atelier_domain::rules::limits;
use axum::Json;
use serde_json::{Value, json};
use std::sync::OnceLock;

pub async fn serve() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(|| document(&docs())).clone())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => {
            "Malformed JSON (malformed_json), an invalid field or query parameter (invalid_field, invalid_query): the message names it"
        }
        401 => {
            "No valid Bearer token, a disabled account (unauthorized), wrong credentials (invalid_credentials), a bad webhook signature (invalid_signature)"
        }
        403 => "The role lacks the permission (forbidden); a worker and another worker's step",
        404 => "No such record in the caller's business (not_found), also for another business's ids",
        409 => "Conflicts with the record's state (conflict): completing a final sale, a duplicate",
        413 => "The body is over http.body_limit (payload_too_large)",
        415 => "The body is not Content-Type: application/json (unsupported_media_type)",
        422 => {
            "A business rule refused it: invalid_transition, quantity_exceeded (completed_qty over step_qty), step_not_planned, incomplete_quantity, step_completed, payment_exceeds_balance, rule_refused"
        }
        429 => {
            "Too many failed logins for the account or from the address (too_many_attempts); Retry-After says when to try again"
        }
        _ => "",
    }
}

pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let path = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        path[r.method.to_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Atelier staff API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The back office of made-to-order textile studios. Every answer is an envelope: {\"success\": true, \"data\": ..., \"count\": N for lists} or {\"success\": false, \"error\": {\"code\", \"message\"}}. The business comes only from the token.",
        },
        "servers": [{"url": "/api/v1"}],
        "x-limits": x_limits(),
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256, kid)"}},
            "schemas": {
                "Success": {"type": "object", "required": ["success", "data"], "properties": {
                    "success": {"const": true}, "data": {}, "count": {"type": "integer", "description": "lists: items in data"},
                    "total": {"type": "integer", "description": "paginated lists: matches before limit/offset"}}},
                "Error": {"type": "object", "required": ["success", "error"], "properties": {
                    "success": {"const": false},
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}}}},
            },
        },
    })
}

fn operation(r: &RouteDoc) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = if name == "id" { json!({"type": "integer"}) } else { json!({"type": "string"}) };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    params.extend(r.query.iter().map(|(name, desc)| {
        json!({"name": name, "in": "query", "required": *name == "business_id", "description": desc, "schema": {"type": "string"}})
    }));
    let mut errors: Vec<u16> = vec![400];
    match r.access {
        Access::User => errors.push(401),
        Access::Needs(_) => errors.extend([401, 403]),
        Access::Signed if r.method == "POST" => errors.push(401),
        Access::Signed => errors.push(403),
        Access::Public if r.path == "/auth/login" => errors.push(401),
        Access::Public => {}
    }
    if r.path.contains('{') {
        errors.push(404);
    }
    if r.body.is_some() {
        errors.extend([413, 415]);
    }
    errors.extend(r.errors);
    errors.sort();
    errors.dedup();
    let mut responses = serde_json::Map::new();
    responses.insert(
        r.status.to_string(),
        json!({"description": reason(r.status), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}}),
    );
    for e in errors {
        responses.insert(
            e.to_string(),
            json!({"description": reason(e), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    let op_id = format!(
        "{}{}",
        r.method.to_lowercase(),
        r.path.split(['/', '{', '}', '.', '_']).filter(|s| !s.is_empty()).map(capitalize).collect::<String>()
    );
    let mut op = json!({
        "operationId": op_id,
        "summary": r.summary,
        "tags": [r.tag],
        "parameters": params,
        "responses": responses,
    });
    match r.access {
        Access::Needs(p) => {
            op["security"] = json!([{"bearer": []}]);
            op["x-permission"] = json!(p.as_str());
        }
        Access::User => op["security"] = json!([{"bearer": []}]),
        Access::Public | Access::Signed => op["security"] = json!([]),
    }
    if let Some(body) = r.body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "description": body}}}});
    }
    op
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The input limits (`domain/src/rules/limits.rs`, the one table the API
/// checks every body and query against): the most characters of each text
/// field by name, items of each list, the range of bounded numbers.
fn x_limits() -> Value {
    let text: serde_json::Map<String, Value> = limits::TEXT.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let lists: serde_json::Map<String, Value> =
        limits::LISTS.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let mut numbers: serde_json::Map<String, Value> =
        limits::NUMBERS.iter().map(|(k, v)| ((*k).to_owned(), json!({"minimum": -v, "maximum": v}))).collect();
    numbers
        .insert("*_minor".into(), json!({"minimum": -limits::MAX_AMOUNT_MINOR, "maximum": limits::MAX_AMOUNT_MINOR}));
    json!({
        "description": "Every JSON body and query string is checked against these before anything else: a NUL character in any string, a text over its length, a list over its count or a number out of its range is 400 invalid_field (invalid_query for a query parameter) and the message starts with the field's path (lines[3].quantity: ...). Lists are answered a page at a time (limit at most 200), and every text field is bounded, so an answer is bounded in bytes too.",
        "text_max_chars": text,
        "text_max_chars_default": limits::DEFAULT_TEXT,
        "list_max_items": lists,
        "list_max_items_default": limits::DEFAULT_ITEMS,
        "numbers": numbers,
        "query_value_max_chars": limits::MAX_QUERY_VALUE,
        "webhook_messages_per_delivery": limits::MAX_WEBHOOK_MESSAGES,
    })
}
