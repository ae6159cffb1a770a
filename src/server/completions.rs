//! `POST /v1/completions`: raw prompts (no template), answered in the `text_completion` shape.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::chat_shape::{total_usage, usage_json};
use super::error::ApiError;
use super::extract::ApiJson;
use super::observe::RequestId;
use super::run::{new_id, spawn_job, unix_now, CancelGuard};
use super::sse::{sse_response, Assembler, Emit, Payload};
use super::{check_model, AppState, Delivery, Tokens};
use crate::chat::{ChatError, ChatFinish, CompletionOutcome, TokenUsage};
use crate::engine::CancelToken;
use crate::openai::CompletionRequest;
use crate::request::TextRequest;

/// A message from a running completion job; `.0` is the choice index (prompt × n + choice).
#[derive(Debug)]
pub enum CompletionMsg {
    /// Streamed text.
    Text(u32, String),
    /// The choice ended.
    Done(u32, CompletionOutcome),
    /// The job failed; no more messages follow.
    Failed(ChatError),
}

#[derive(Debug, Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
    total: u32,
    request_id: RequestId,
}

fn finish_str(f: ChatFinish) -> &'static str {
    match f {
        ChatFinish::Length => "length",
        _ => "stop",
    }
}

/// Handles a raw completion request.
pub async fn completions(
    State(state): State<AppState>,
    request_id: RequestId,
    ApiJson(body): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = state.backend.clone();
    check_model(body.model.as_deref(), backend.model_id())?;
    let Delivery {
        stream,
        include_usage,
    } = Delivery::of(body.stream, body.stream_options.as_ref());
    let user = body.user.clone();
    let req = TextRequest::try_from(body)?;
    let n = req.n;
    let echo = req.echo;
    if let Some(user) = user.as_deref() {
        tracing::info!(user, n, stream, "completion request");
    }
    let meta = Meta {
        id: new_id("cmpl-"),
        created: unix_now(),
        model: backend.model_id().to_string(),
        fingerprint: state.fingerprint.clone(),
        total: req.prompts.len() as u32 * n,
        request_id,
    };
    let slot = state.queue.acquire().await?;
    let cancel = CancelToken::new();
    let guard = CancelGuard(cancel.clone());
    let req = Arc::new(req);
    let mut rx = spawn_job(slot, cancel, move |cancel, tx| {
        for (p, prompt) in req.prompts.iter().enumerate() {
            for choice in 0..n {
                if cancel.is_cancelled() {
                    return;
                }
                let index = p as u32 * n + choice;
                if echo && tx.send(CompletionMsg::Text(index, prompt.clone())).is_err() {
                    return;
                }
                let mut on_text = |t: &str| {
                    !cancel.is_cancelled()
                        && tx.send(CompletionMsg::Text(index, t.to_string())).is_ok()
                };
                match backend.complete(&req, prompt, choice, cancel, &mut on_text) {
                    Ok(mut outcome) => {
                        if echo {
                            outcome.text.insert_str(0, prompt);
                        }
                        if tx.send(CompletionMsg::Done(index, outcome)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(CompletionMsg::Failed(e));
                        return;
                    }
                }
            }
        }
    });

    if stream {
        return match rx.recv().await {
            Some(CompletionMsg::Failed(e)) => Err(e.into()),
            Some(first) => {
                let asm = CompletionAssembler {
                    meta,
                    include_usage,
                    usages: Vec::new(),
                    n,
                    done: 0,
                };
                Ok(sse_response(first, rx, asm, guard))
            }
            None => Err(ApiError::internal("the generation ended unexpectedly")),
        };
    }

    let mut outcomes: Vec<(u32, CompletionOutcome)> = Vec::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            CompletionMsg::Text(..) => {}
            CompletionMsg::Done(i, o) => outcomes.push((i, o)),
            CompletionMsg::Failed(e) => return Err(e.into()),
        }
    }
    drop(guard);
    if outcomes.len() != meta.total as usize {
        return Err(ApiError::internal("the generation ended unexpectedly"));
    }
    let choices: Vec<Value> = outcomes
        .iter()
        .map(|(i, o)| json!({"text": o.text, "index": i, "logprobs": null, "finish_reason": finish_str(o.finish)}))
        .collect();
    let usage = prompt_once_usage(outcomes.iter().map(|(i, o)| (*i, &o.usage)), n);
    let body = json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage_json(usage),
        "system_fingerprint": meta.fingerprint,
    });
    let mut resp = Json(body).into_response();
    resp.extensions_mut().insert(Tokens(usage));
    Ok(resp)
}

/// Usage over several prompts: each prompt's tokens count once, completions add up.
fn prompt_once_usage<'a>(items: impl Iterator<Item = (u32, &'a TokenUsage)>, n: u32) -> TokenUsage {
    let mut prompt = 0;
    let mut completions = Vec::new();
    for (i, u) in items {
        if i % n.max(1) == 0 {
            prompt += u.prompt_tokens;
        }
        completions.push(TokenUsage {
            prompt_tokens: 0,
            ..*u
        });
    }
    let mut total = total_usage(&completions);
    total.prompt_tokens = prompt;
    total
}

struct CompletionAssembler {
    meta: Meta,
    include_usage: bool,
    usages: Vec<(u32, TokenUsage)>,
    n: u32,
    done: u32,
}

impl CompletionAssembler {
    fn chunk(&self, index: u32, text: &str, finish: Option<&str>) -> String {
        let mut v = json!({
            "id": self.meta.id,
            "object": "text_completion",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": self.meta.fingerprint,
            "choices": [{"text": text, "index": index, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("usage".into(), Value::Null);
            }
        }
        v.to_string()
    }
}

impl Assembler for CompletionAssembler {
    type Msg = CompletionMsg;

    fn on_msg(&mut self, msg: CompletionMsg) -> Emit {
        match msg {
            CompletionMsg::Text(i, t) => Emit {
                data: vec![self.chunk(i, &t, None).into()],
                end: false,
            },
            CompletionMsg::Done(i, o) => {
                self.usages.push((i, o.usage));
                self.done += 1;
                Emit {
                    data: vec![self.chunk(i, "", Some(finish_str(o.finish))).into()],
                    end: false,
                }
            }
            CompletionMsg::Failed(e) => Emit {
                data: vec![ApiError::from(e)
                    .to_json_string_for(&self.meta.request_id)
                    .into()],
                end: true,
            },
        }
    }

    fn on_close(&mut self) -> Vec<Payload> {
        if self.done < self.meta.total {
            let e = ApiError::internal("the generation ended unexpectedly");
            return vec![e.to_json_string_for(&self.meta.request_id).into()];
        }
        let usage = prompt_once_usage(self.usages.iter().map(|(i, u)| (*i, u)), self.n);
        tracing::info!(id = %self.meta.id, completion_tokens = usage.completion_tokens, "completion stream finished");
        let mut out = Vec::new();
        if self.include_usage {
            let v = json!({
                "id": self.meta.id,
                "object": "text_completion",
                "created": self.meta.created,
                "model": self.meta.model,
                "system_fingerprint": self.meta.fingerprint,
                "choices": [],
                "usage": usage_json(usage),
            });
            out.push(v.to_string());
        }
        out.push("[DONE]".to_string());
        out.into_iter().map(Payload::from).collect()
    }
}
