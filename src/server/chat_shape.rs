//! OpenAI shapes of chat answers: the `chat.completion` object and the
//! `chat.completion.chunk` stream (as an SSE [`Assembler`]).

use serde_json::{json, Value};

use super::error::ApiError;
use super::observe::RequestId;
use super::sse::{Assembler, Emit, Payload};
use crate::chat::{Answer, ChatError, ChatEvent, ChatFinish, ChatOutcome, TokenUsage};
use crate::openai::{CompletionTokensDetails, FunctionCall, PromptTokensDetails, ToolCall, Usage};

/// A message from a running chat job.
#[derive(Debug)]
pub enum ChatMsg {
    /// A streamed event of choice `.0`.
    Event(u32, ChatEvent),
    /// Choice `.0` ended.
    Done(u32, ChatOutcome),
    /// The job failed; no more messages follow.
    Failed(ChatError),
}

/// What every answer to one request shares.
#[derive(Debug, Clone)]
pub struct ChatMeta {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model id.
    pub model: String,
    /// `system_fingerprint`.
    pub fingerprint: String,
    /// Whether the answer is written as a legacy `function_call` (the request used `functions`).
    pub legacy: bool,
    /// Number of choices.
    pub n: u32,
    /// The request's id (named by mid-stream internal errors).
    pub request_id: RequestId,
}

/// Sums usage over choices: the prompt counts once, completions add up.
pub fn total_usage<'a>(usages: impl IntoIterator<Item = &'a TokenUsage>) -> TokenUsage {
    let mut total = TokenUsage::default();
    let mut first = true;
    for u in usages {
        if first {
            total.prompt_tokens = u.prompt_tokens;
            total.cached_tokens = u.cached_tokens;
            first = false;
        }
        total.completion_tokens += u.completion_tokens;
        if let Some(r) = u.reasoning_tokens {
            total.reasoning_tokens = Some(total.reasoning_tokens.unwrap_or(0) + r);
        }
    }
    total
}

/// OpenAI's `usage` object (`prompt_tokens_details` where the backend counts cached tokens,
/// `completion_tokens_details` where the model has reasoning markers).
pub fn usage_json(u: TokenUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: u
            .cached_tokens
            .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        completion_tokens_details: u
            .reasoning_tokens
            .map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens }),
    }
}

/// `finish_reason`: calls of a legacy request finish with `function_call`.
fn finish_str(f: ChatFinish, legacy: bool) -> &'static str {
    match f {
        ChatFinish::Stop => "stop",
        ChatFinish::Length => "length",
        ChatFinish::ToolCalls if legacy => "function_call",
        ChatFinish::ToolCalls => "tool_calls",
    }
}

/// The assistant message of an answer: `tool_calls`, or for legacy requests the first call
/// as `function_call` (the one place the legacy shape is written). `content` and
/// `tool_calls` are always present (null when absent): client code indexes them after
/// dumping the SDK object. A thinking model's reasoning is `reasoning_content` (the field
/// DeepSeek's API and vLLM use), present only when there is some.
fn message_json(m: &Answer, legacy: bool) -> Value {
    let function = |c: &crate::chat::Call| FunctionCall {
        name: c.name.clone(),
        arguments: c.arguments.clone(),
    };
    let tool_calls: Option<Vec<ToolCall>> = (!legacy && !m.tool_calls.is_empty()).then(|| {
        m.tool_calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                kind: "function".to_string(),
                function: function(c),
            })
            .collect()
    });
    let mut v = json!({
        "role": "assistant",
        "content": m.content,
        "refusal": null,
        "tool_calls": tool_calls,
    });
    if let (Some(r), Some(obj)) = (&m.reasoning_content, v.as_object_mut()) {
        obj.insert("reasoning_content".into(), json!(r));
    }
    if legacy {
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "function_call".into(),
                json!(m.tool_calls.first().map(function)),
            );
        }
    }
    v
}

/// The `chat.completion` object for outcomes ordered by choice index.
pub fn completion_json(meta: &ChatMeta, outcomes: &[ChatOutcome]) -> Value {
    let choices: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            json!({
                "index": i,
                "message": message_json(&o.message, meta.legacy),
                "logprobs": o.logprobs.as_ref().map(|c| json!({"content": c, "refusal": null})),
                "finish_reason": finish_str(o.finish, meta.legacy),
            })
        })
        .collect();
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage_json(total_usage(outcomes.iter().map(|o| &o.usage))),
        "system_fingerprint": meta.fingerprint,
    })
}

/// Assembles `chat.completion.chunk` payloads from chat job messages.
#[derive(Debug)]
pub struct ChatAssembler {
    meta: ChatMeta,
    include_usage: bool,
    started: Vec<bool>,
    usages: Vec<TokenUsage>,
    done: usize,
}

impl ChatAssembler {
    /// An assembler for one streaming request.
    pub fn new(meta: ChatMeta, include_usage: bool) -> Self {
        let n = meta.n as usize;
        ChatAssembler {
            meta,
            include_usage,
            started: vec![false; n],
            usages: Vec::new(),
            done: 0,
        }
    }

    /// Total usage of the choices finished so far.
    pub fn usage(&self) -> TokenUsage {
        total_usage(&self.usages)
    }

    fn chunk(&self, index: u32, delta: Value, logprobs: Value, finish: Option<&str>) -> String {
        let mut v = json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": self.meta.fingerprint,
            "choices": [{
                "index": index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
        });
        if self.include_usage {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("usage".into(), Value::Null);
            }
        }
        v.to_string()
    }

    fn start(&mut self, index: u32, out: &mut Vec<String>) {
        let Some(started) = self.started.get_mut(index as usize) else {
            return;
        };
        if !*started {
            *started = true;
            let delta = json!({"role": "assistant", "content": "", "refusal": null});
            out.push(self.chunk(index, delta, Value::Null, None));
        }
    }

    fn event_delta(&self, ev: ChatEvent) -> Option<(Value, Value)> {
        let legacy = self.meta.legacy;
        Some(match ev {
            ChatEvent::Content(text) => (json!({"content": text}), Value::Null),
            ChatEvent::Reasoning(text) => (json!({"reasoning_content": text}), Value::Null),
            ChatEvent::ToolCallStart { index, id, name } if !legacy => (
                json!({"tool_calls": [{
                    "index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                Value::Null,
            ),
            ChatEvent::ToolCallArguments { index, delta } if !legacy => (
                json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}),
                Value::Null,
            ),
            ChatEvent::ToolCallStart { index: 0, name, .. } => (
                json!({"function_call": {"name": name, "arguments": ""}}),
                Value::Null,
            ),
            ChatEvent::ToolCallArguments { index: 0, delta } => {
                (json!({"function_call": {"arguments": delta}}), Value::Null)
            }
            ChatEvent::ToolCallStart { .. } | ChatEvent::ToolCallArguments { .. } => return None,
            ChatEvent::Logprob(lp) => (json!({}), json!({"content": [lp], "refusal": null})),
        })
    }
}

impl Assembler for ChatAssembler {
    type Msg = ChatMsg;

    fn on_msg(&mut self, msg: ChatMsg) -> Emit {
        let mut out = Vec::new();
        match msg {
            ChatMsg::Event(index, ev) => {
                self.start(index, &mut out);
                if let Some((delta, logprobs)) = self.event_delta(ev) {
                    out.push(self.chunk(index, delta, logprobs, None));
                }
                Emit {
                    data: payloads(out),
                    end: false,
                }
            }
            ChatMsg::Done(index, outcome) => {
                if outcome.cancelled {
                    return Emit {
                        data: payloads(out),
                        end: true,
                    };
                }
                self.start(index, &mut out);
                self.usages.push(outcome.usage);
                self.done += 1;
                let finish = finish_str(outcome.finish, self.meta.legacy);
                out.push(self.chunk(index, json!({}), Value::Null, Some(finish)));
                Emit {
                    data: payloads(out),
                    end: false,
                }
            }
            ChatMsg::Failed(e) => {
                out.push(ApiError::from(e).to_json_string_for(&self.meta.request_id));
                Emit {
                    data: payloads(out),
                    end: true,
                }
            }
        }
    }

    fn on_close(&mut self) -> Vec<Payload> {
        if self.done < self.meta.n as usize {
            let e = ApiError::internal("the generation ended unexpectedly");
            return vec![e.to_json_string_for(&self.meta.request_id).into()];
        }
        let usage = self.usage();
        tracing::info!(
            id = %self.meta.id,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "chat stream finished"
        );
        let mut out = Vec::new();
        if self.include_usage {
            let v = json!({
                "id": self.meta.id,
                "object": "chat.completion.chunk",
                "created": self.meta.created,
                "model": self.meta.model,
                "system_fingerprint": self.meta.fingerprint,
                "choices": [],
                "usage": usage_json(usage),
            });
            out.push(v.to_string());
        }
        out.push("[DONE]".to_string());
        payloads(out)
    }
}

/// `data:`-only events.
fn payloads(data: Vec<String>) -> Vec<Payload> {
    data.into_iter().map(Payload::from).collect()
}
