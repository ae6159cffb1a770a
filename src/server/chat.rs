//! `POST /v1/chat/completions`: the body becomes a domain request (the OpenAI edge,
//! `crate::request::openai`), then admission, the blocking job, and the answer (one JSON
//! object or an SSE stream).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::chat_shape::{completion_json, total_usage, ChatAssembler, ChatMeta, ChatMsg};
use super::error::ApiError;
use super::extract::ApiJson;
use super::observe::RequestId;
use super::run::{new_id, spawn_job, unix_now, CancelGuard};
use super::sse::sse_response;
use super::{check_model, AppState, Delivery, Tokens};
use crate::chat::ChatEvent;
use crate::engine::CancelToken;
use crate::openai::ChatCompletionRequest;
use crate::request::ChatRequest;

/// Handles a chat completion request.
pub async fn chat_completions(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    // How the answer is delivered is this API's business, not the domain request's.
    let Delivery {
        stream,
        include_usage,
    } = Delivery::of(body.stream, body.stream_options.as_ref());
    let user = body.user.clone();
    let req = ChatRequest::try_from(body)?;
    let n = req.limits.n;
    if let Some(user) = user.as_deref() {
        tracing::info!(user, n, stream, "chat request");
    }
    let meta = ChatMeta {
        id: new_id("chatcmpl-"),
        created: unix_now(),
        model: backend.model_id().to_string(),
        fingerprint: state.fingerprint.clone(),
        legacy: req.legacy_function_call,
        n,
        request_id,
    };
    let slot = state.queue.acquire().await?;
    let cancel = CancelToken::new();
    let guard = CancelGuard(cancel.clone());
    let req = Arc::new(req);
    let mut rx = spawn_job(slot, cancel, move |cancel, tx| {
        for choice in 0..n {
            if cancel.is_cancelled() {
                break;
            }
            let mut on_event = |ev: ChatEvent| {
                !cancel.is_cancelled() && tx.send(ChatMsg::Event(choice, ev)).is_ok()
            };
            match backend.chat(&req, choice, cancel, &mut on_event) {
                Ok(outcome) => {
                    let stop = outcome.cancelled;
                    if tx.send(ChatMsg::Done(choice, outcome)).is_err() || stop {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(ChatMsg::Failed(e));
                    break;
                }
            }
        }
    });

    if stream {
        // Wait for the first message so that errors before any output get a real status.
        return match rx.recv().await {
            Some(ChatMsg::Failed(e)) => Err(e.into()),
            Some(first) => Ok(sse_response(
                first,
                rx,
                ChatAssembler::new(meta, include_usage),
                guard,
            )),
            None => Err(ApiError::internal("the generation ended unexpectedly")),
        };
    }

    let mut outcomes = Vec::with_capacity(n as usize);
    while let Some(msg) = rx.recv().await {
        match msg {
            ChatMsg::Event(..) => {}
            ChatMsg::Done(_, outcome) => outcomes.push(outcome),
            ChatMsg::Failed(e) => return Err(e.into()),
        }
    }
    drop(guard);
    if outcomes.len() != n as usize || outcomes.iter().any(|o| o.cancelled) {
        return Err(ApiError::internal("the generation ended unexpectedly"));
    }
    let body = completion_json(&meta, &outcomes);
    let tokens = total_usage(outcomes.iter().map(|o| &o.usage));
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(Tokens(tokens));
    Ok(resp)
}
