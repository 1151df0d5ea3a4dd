//! `POST /graphql` and `GET /graphql`.
//!
//! Every answer is GraphQL-shaped JSON with `extensions.code` on each error:
//! 200 for anything GraphQL executed or rejected, 400 for a body that is not
//! a GraphQL request, 405 for a mutation over GET, 413 for a body over the
//! limit, 415 for a body that is not JSON, 500 only for a panic.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::ErrorExtensionValues;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::auth;
use crate::graphql::context::RequestCtx;
use crate::graphql::response_json;
use crate::telemetry::{Operation, Served};
use crate::tenancy::conn::SharedTx;
use crate::tenancy::resolver::TenantSources;

/// Code for a request the server could not read as GraphQL at all.
const BAD_REQUEST: &str = "BAD_USER_INPUT";
/// Code for a query document that does not parse.
const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// Code for a query that parses but breaks the schema or the limits.
const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// `POST /graphql` with a JSON body `{query, operationName, variables}`.
pub async fn post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut served = app.telemetry.serving();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            served.answered([BAD_REQUEST].into_iter());
            return error_response(rejection.status(), BAD_REQUEST, &rejection.body_text());
        }
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.to_ascii_lowercase().contains("json"));
    if !json {
        served.answered([BAD_REQUEST].into_iter());
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_REQUEST,
            "send the request as application/json",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            served.answered([BAD_REQUEST].into_iter());
            return error_response(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                &format!("the body is not a GraphQL request in JSON: {e}"),
            );
        }
    };
    execute(&app, &mut served, &headers, request, false).await
}

/// `GET /graphql?query=...&operationName=...&variables=...`: queries only.
pub async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut served = app.telemetry.serving();
    let Ok(Query(mut params)) = params else {
        served.answered([BAD_REQUEST].into_iter());
        return error_response(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            "malformed query string",
        );
    };
    let Some(query) = params.remove("query") else {
        served.answered([BAD_REQUEST].into_iter());
        return error_response(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            "GET /graphql needs a 'query' parameter (or open / for GraphiQL)",
        );
    };
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = params.remove("operationName").filter(|n| !n.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(vars) = params.remove("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<async_graphql::Variables>(&vars) {
            Ok(vars) => request = request.variables(vars),
            Err(e) => {
                served.answered([BAD_REQUEST].into_iter());
                return error_response(
                    StatusCode::BAD_REQUEST,
                    BAD_REQUEST,
                    &format!("'variables' is not a JSON object: {e}"),
                );
            }
        }
    }
    execute(&app, &mut served, &headers, request, true).await
}

async fn execute(
    app: &Arc<App>,
    served: &mut Served<'_>,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    queries_only: bool,
) -> Response {
    let name = request.operation_name.clone();
    let (op, merges_objects) = match app.parsed.parse(&mut request) {
        Ok(parsed) => (
            operation_type(parsed.doc, name.as_deref()),
            parsed.merges_objects,
        ),
        Err(e) => {
            served.answered([PARSE_FAILED].into_iter());
            return error_response(StatusCode::OK, PARSE_FAILED, &e.message);
        }
    };
    served.operation(Operation::of(op));
    if queries_only
        && matches!(
            op,
            Some(OperationType::Mutation | OperationType::Subscription)
        )
    {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_REQUEST,
            "mutations are not allowed over GET; use POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        served.answered([BAD_REQUEST].into_iter());
        return response;
    }
    let principal = auth::principal_from_headers(headers, &app.secrets.admin_token, &app.keys);
    let sources = TenantSources::from_headers(headers, app.config.base_domain.as_deref());
    // A query's tenant reads share one transaction, committed once the
    // response is ready; a mutation's steps each commit on their own.
    let shared = matches!(op, Some(OperationType::Query)).then(|| Arc::new(SharedTx::default()));
    let ctx = RequestCtx::new(
        app.clone(),
        principal,
        sources,
        shared.clone(),
        merges_objects,
    );
    let mut response = app.schema.execute(request.data(ctx)).await;
    if let Some(shared) = shared {
        shared.commit().await;
    }
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            // Only async-graphql's own checks produce errors without a code
            // (ours always carry one): validation and limits before execution,
            // argument values that do not parse (a bad date, say) during it.
            let code = if error.path.is_empty() {
                VALIDATION_FAILED
            } else {
                BAD_REQUEST
            };
            error
                .extensions
                .get_or_insert_with(ErrorExtensionValues::default)
                .set("code", code);
        }
    }
    let body = response_json::to_vec(&response);
    let codes = response.errors.iter().map(|error| {
        let code = error.extensions.as_ref().and_then(|e| e.get("code"));
        match code {
            Some(async_graphql::Value::String(code)) => code.as_str(),
            _ => "UNKNOWN",
        }
    });
    served.answered(codes);
    json_bytes(StatusCode::OK, body)
}

/// The type of the operation that will run, if the document names one.
fn operation_type(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        // Several operations and no name: execution reports that.
        (DocumentOperations::Multiple(ops), None) => {
            if ops.values().any(|op| op.node.ty != OperationType::Query) {
                Some(OperationType::Mutation)
            } else {
                Some(OperationType::Query)
            }
        }
    }
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    json_bytes(status, serde_json::to_vec(body))
}

fn json_bytes(status: StatusCode, body: serde_json::Result<Vec<u8>>) -> Response {
    match body {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serialising a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A GraphQL-shaped error body with one error.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &serde_json::json!({
            "errors": [{ "message": message, "extensions": { "code": code } }]
        }),
    )
}

/// What a panicking handler answers: opaque, with the detail in the log.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "internal server error",
    )
}
