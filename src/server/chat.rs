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
use tokio::sync::mpsc::UnboundedReceiver;

use crate::chat::{ChatEvent, ChatOutcome};
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
    let (mut rx, guard) = start_chat(&state, req).await?;
    if stream {
        // Wait for the first message so that errors before any output get a real status.
        let first = first_message(&mut rx).await?;
        return Ok(sse_response(
            first,
            rx,
            ChatAssembler::new(meta, include_usage),
            guard,
        ));
    }
    let outcomes = collect_outcomes(rx, guard, n).await?;
    let body = completion_json(&meta, &outcomes);
    let tokens = total_usage(outcomes.iter().map(|o| &o.usage));
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(Tokens(tokens));
    Ok(resp)
}

/// Waits for a slot in the queue, then runs the `n` choices of `req` on a blocking thread.
/// The receiver gets their events and outcomes (or the failure); dropping the guard (the
/// client went away) cancels the job at its next token. Every chat API runs through here.
pub async fn start_chat(
    state: &AppState,
    req: ChatRequest,
) -> Result<(UnboundedReceiver<ChatMsg>, CancelGuard), ApiError> {
    let backend = state.backend.clone();
    let n = req.limits.n;
    let slot = state.queue.acquire().await?;
    let cancel = CancelToken::new();
    let guard = CancelGuard(cancel.clone());
    let req = Arc::new(req);
    let rx = spawn_job(slot, cancel, move |cancel, tx| {
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
    Ok((rx, guard))
}

/// The first message of a chat job, for streams: a failure before any output is the
/// request's error (a real status, not an error event).
pub async fn first_message(rx: &mut UnboundedReceiver<ChatMsg>) -> Result<ChatMsg, ApiError> {
    match rx.recv().await {
        Some(ChatMsg::Failed(e)) => Err(e.into()),
        Some(first) => Ok(first),
        None => Err(ApiError::internal("the generation ended unexpectedly")),
    }
}

/// Every choice's outcome, in order, for answers that are one JSON object.
pub async fn collect_outcomes(
    mut rx: UnboundedReceiver<ChatMsg>,
    guard: CancelGuard,
    n: u32,
) -> Result<Vec<ChatOutcome>, ApiError> {
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
    Ok(outcomes)
}
