//! OpenAI's Responses API: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`.
//!
//! The body becomes a domain request at the edge (`crate::request::responses`) and runs
//! through the same job as every chat API ([`super::chat::start_chat`]); the answer is a
//! `response` object ([`shape`]) or the Responses event stream ([`stream`]). This handler
//! owns what is server state rather than request: `store` (keep the response in the
//! [`store::ResponseStore`]) and `previous_response_id` (prepend a stored conversation's
//! items to the input, before the edge conversion). Errors use OpenAI's shape.

pub mod shape;
pub mod store;
pub mod stream;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

use super::chat::{collect_outcomes, first_message, start_chat};
use super::error::ApiError;
use super::extract::ApiJson;
use super::run::{new_id, unix_now};
use super::sse::sse_response;
use super::{check_model, AppState, Tokens};
use crate::openai::responses::{InputItem, ResponseInput, ResponsesRequest};
use crate::request::ChatRequest;
use shape::{output_items, response_json, Echo, ResponseMeta, Status};
use store::{ResponseStore, Stored};
use stream::ResponseStream;

/// Keeps a finished response and its conversation (`store: true`).
#[derive(Debug)]
pub struct Saver {
    store: Arc<ResponseStore>,
    /// Every input item of the conversation so far.
    items: Vec<InputItem>,
}

impl Saver {
    /// Stores `response` under `id`, with the conversation extended by its `output` items.
    pub fn save(self, id: &str, response: &Value, output: &[Value]) {
        let mut items = self.items;
        items.extend(
            output
                .iter()
                .filter_map(|o| serde_json::from_value::<InputItem>(o.clone()).ok()),
        );
        self.store.insert(
            id.to_string(),
            Stored {
                response: response.clone(),
                items,
            },
        );
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("Response with id '{id}' not found."),
        kind: "invalid_request_error",
        param: None,
        code: None,
    }
}

/// Handles `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    let stream = body.stream.unwrap_or(false);
    let store = body.store.unwrap_or(true);
    let previous = body.previous_response_id.take();
    // The conversation so far: the stored one's items (instructions are not carried over),
    // then this request's input.
    let mut items = match &previous {
        Some(id) => state
            .responses
            .get(id)
            .map(|s| s.items)
            .ok_or_else(|| ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("Previous response with id '{id}' not found."),
                kind: "invalid_request_error",
                param: Some("previous_response_id".into()),
                code: Some("previous_response_not_found"),
            })?,
        None => Vec::new(),
    };
    items.extend(
        body.input
            .take()
            .map(ResponseInput::into_items)
            .unwrap_or_default(),
    );
    body.input = Some(ResponseInput::Items(items.clone()));
    if let Some(user) = body.user.as_deref() {
        tracing::info!(user, stream, "responses request");
    }
    let echo = Echo::of(&body, store, previous);
    let req = ChatRequest::try_from(body)?;
    let meta = ResponseMeta {
        id: new_id("resp_"),
        created_at: unix_now(),
        model: backend.model_id().to_string(),
        echo,
    };
    let saver = store.then(|| Saver {
        store: state.responses.clone(),
        items,
    });
    let (mut rx, guard) = start_chat(&state, req).await?;
    if stream {
        let first = first_message(&mut rx).await?;
        return Ok(sse_response(
            first,
            rx,
            ResponseStream::new(meta, saver),
            guard,
        ));
    }
    let outcomes = collect_outcomes(rx, guard, 1).await?;
    let o = &outcomes[0];
    let status = Status::of(o.finish);
    let output = output_items(&o.message, &status);
    let body = response_json(&meta, &status, output.clone(), Some(&o.usage));
    if let Some(saver) = saver {
        saver.save(&meta.id, &body, &output);
    }
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(Tokens(o.usage));
    Ok(resp)
}

/// Handles `GET /v1/responses/{id}`: a stored response, else 404.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.responses.get(&id) {
        Some(s) => Json(s.response).into_response(),
        None => not_found(&id).into_response(),
    }
}

/// Handles `DELETE /v1/responses/{id}`.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if state.responses.remove(&id) {
        Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response()
    } else {
        not_found(&id).into_response()
    }
}
