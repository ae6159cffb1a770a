//! `POST /tokenize` and `/detokenize` (also under `/v1`), in the shapes of llama.cpp's server
//! and vLLM: text (`content`, or vLLM's `prompt`) or a chat (`messages`, rendered with the
//! chat template exactly as a chat completion would be: same edge, same prompt) to
//! `{"tokens": [...], "count": N}`; ids back to `{"content": text, "prompt": text}`.
//! Neither waits for a generation slot.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ApiJson;
use super::{check_model, AppState};
use crate::openai::tokenize::{DetokenizeRequest, TokenizeRequest};
use crate::openai::ChatCompletionRequest;
use crate::request::ChatRequest;

/// Runs `f` on the blocking pool (tokenizing a large body is CPU work).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::chat::ChatError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("tokenization failed"))?
        .map_err(ApiError::from)
}

/// A JSON value read as `T`, a 400 when it does not fit.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}"), None))
}

/// Handles `POST /tokenize`.
pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(value): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let body: TokenizeRequest = typed(value.clone())?;
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    let ids = if body.messages.is_some() {
        // The whole body is a chat request: the same edge as /v1/chat/completions.
        let chat: ChatCompletionRequest = typed(value)?;
        let req = ChatRequest::try_from(chat)?;
        let b = backend.clone();
        blocking(move || b.prompt_tokens(&req)).await?
    } else {
        let (text, add_special) = match (body.content, body.prompt) {
            (Some(text), _) => (
                text,
                body.add_special
                    .or(body.add_special_tokens)
                    .unwrap_or(false),
            ),
            (None, Some(text)) => (
                text,
                body.add_special_tokens.or(body.add_special).unwrap_or(true),
            ),
            (None, None) => return Err(ApiError::bad_request(
                "Send the text to tokenize as `content` (or `prompt`), or a chat as `messages`.",
                Some("content"),
            )),
        };
        let b = backend.clone();
        blocking(move || b.tokenize(&text, add_special)).await?
    };
    let count = ids.len();
    let tokens: Vec<Value> = if body.with_pieces == Some(true) {
        let b = backend.clone();
        let pieces = blocking(move || {
            ids.iter()
                .map(|&id| Ok(json!({"id": id, "piece": b.detokenize(&[id])?})))
                .collect::<Result<Vec<Value>, _>>()
        })
        .await?;
        pieces
    } else {
        ids.into_iter().map(Value::from).collect()
    };
    Ok(Json(json!({"tokens": tokens, "count": count})).into_response())
}

/// Handles `POST /detokenize`.
pub async fn detokenize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DetokenizeRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    let ids = body.tokens;
    let text = blocking(move || backend.detokenize(&ids)).await?;
    Ok(Json(json!({"content": text, "prompt": text})).into_response())
}
