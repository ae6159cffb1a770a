//! Anthropic's Messages API: `POST /v1/messages` and `/v1/messages/count_tokens`.
//!
//! The body becomes a domain request at the edge (`crate::request::anthropic`) and runs
//! through the same job as every chat API ([`super::chat::start_chat`]); the answer is a
//! `message` object or Anthropic's event stream ([`shape`]). Errors, wherever they arise on
//! these routes (the edge, the queue, authentication, the body extractor), leave in
//! Anthropic's shape through [`error_shape`], with Anthropic's statuses: a full queue is
//! 529 `overloaded_error`.

pub mod shape;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::chat::{collect_outcomes, first_message, start_chat};
use super::error::ApiError;
use super::extract::ApiJson;
use super::observe::REQUEST_ID_HEADER;
use super::run::new_id;
use super::sse::sse_response;
use super::{check_model, AppState, Tokens};
use crate::anthropic::MessagesRequest;
use crate::request::anthropic::count_tokens_request;
use crate::request::ChatRequest;
use shape::{message_json, MessageMeta, MessageStream};

/// Handles `POST /v1/messages`.
pub async fn messages(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    // How the answer is delivered is this API's business, not the domain request's.
    let stream = body.stream.unwrap_or(false);
    if let Some(user) = body.metadata.as_ref().and_then(|m| m.user_id.as_deref()) {
        tracing::info!(user, stream, "messages request");
    }
    let req = ChatRequest::try_from(body)?;
    let meta = MessageMeta {
        id: new_id("msg_"),
        model: backend.model_id().to_string(),
    };
    let (mut rx, guard) = start_chat(&state, req).await?;
    if stream {
        let first = first_message(&mut rx).await?;
        return Ok(sse_response(first, rx, MessageStream::new(meta), guard));
    }
    let outcomes = collect_outcomes(rx, guard, 1).await?;
    let mut resp = Json(message_json(&meta, &outcomes[0])).into_response();
    resp.extensions_mut().insert(Tokens(outcomes[0].usage));
    Ok(resp)
}

/// Handles `POST /v1/messages/count_tokens`: the prompt tokens the same request would use.
pub async fn count_tokens(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    let req = count_tokens_request(body)?;
    let ids = tokio::task::spawn_blocking(move || backend.prompt_tokens(&req))
        .await
        .map_err(|_| ApiError::internal("counting tokens failed"))??;
    Ok(Json(json!({"input_tokens": ids.len()})).into_response())
}

/// Whether `path` is one of the Messages API's routes (with or without `/v1`).
fn is_messages_path(path: &str) -> bool {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    path == "/messages" || path.starts_with("/messages/")
}

/// Anthropic's error type and status for an error callm raised.
pub fn error_kind(e: &ApiError) -> (StatusCode, &'static str) {
    match e.status.as_u16() {
        400 => (e.status, "invalid_request_error"),
        401 => (e.status, "authentication_error"),
        403 => (e.status, "permission_error"),
        404 => (e.status, "not_found_error"),
        405 => (e.status, "invalid_request_error"),
        413 => (e.status, "request_too_large"),
        429 if e.code == Some("queue_full") => (overloaded(), "overloaded_error"),
        429 => (e.status, "rate_limit_error"),
        503 | 529 => (overloaded(), "overloaded_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    }
}

/// Anthropic's 529 (not a standard HTTP status).
fn overloaded() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The body of an error in Anthropic's shape (a 500 names only `request_id`).
pub fn error_body(e: &ApiError, request_id: Option<&str>) -> Value {
    let (_, kind) = error_kind(e);
    json!({"type": "error", "error": {"type": kind, "message": e.client_message(request_id)}})
}

/// Middleware: on the Messages API's routes, any error callm answers (it carries its
/// [`ApiError`]) is rewritten in Anthropic's shape and status.
pub async fn error_shape(req: Request, next: Next) -> Response {
    let anthropic = is_messages_path(req.uri().path());
    let resp = next.run(req).await;
    if !anthropic {
        return resp;
    }
    match resp.extensions().get::<ApiError>() {
        Some(e) => {
            let (status, _) = error_kind(e);
            let id = resp.headers().get(REQUEST_ID_HEADER).cloned();
            let shown = id.as_ref().and_then(|v| v.to_str().ok());
            let mut out = (status, Json(error_body(e, shown))).into_response();
            if let Some(id) = id {
                out.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            out
        }
        None => resp,
    }
}
