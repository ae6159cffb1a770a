//! Anthropic's shapes of an answer: the `message` object and the event stream
//! (`message_start`, `ping`, `content_block_start` / `_delta` / `_stop` per text or
//! `tool_use` block, `message_delta` with the stop reason and usage, `message_stop`), each
//! event with its `event:` line. A call's `input_json_delta` fragments are the pipeline's
//! argument fragments, so they concatenate to exactly the final `input`.

use serde_json::{json, Map, Value};

use super::super::chat_shape::ChatMsg;
use super::super::error::ApiError;
use super::super::sse::{Assembler, Emit, Payload};
use crate::chat::{Answer, ChatEvent, ChatFinish, ChatOutcome, TokenUsage};

/// What every answer to one request shares.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// `msg_…`.
    pub id: String,
    /// The served model id.
    pub model: String,
}

/// Anthropic's id of a call: `toolu_` and the call id's own characters, so the same call
/// keeps the same id in the stream, the message and the next request's history.
pub fn tool_use_id(call_id: &str) -> String {
    format!("toolu_{}", call_id.strip_prefix("call_").unwrap_or(call_id))
}

/// `stop_reason`: a call, the token limit, a stop sequence, or the end of the turn.
fn stop_reason(o: &ChatOutcome) -> &'static str {
    match o.finish {
        ChatFinish::ToolCalls => "tool_use",
        ChatFinish::Length => "max_tokens",
        ChatFinish::Stop if o.stop_sequence.is_some() => "stop_sequence",
        ChatFinish::Stop => "end_turn",
    }
}

/// `usage`: Anthropic counts prompt tokens read from the cache apart from `input_tokens`
/// (their sum is the prompt).
fn usage_json(u: &TokenUsage) -> Value {
    let cached = u.cached_tokens.unwrap_or(0).min(u.prompt_tokens);
    json!({
        "input_tokens": u.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": u.completion_tokens,
    })
}

/// A call's arguments as the `input` object (the pipeline's arguments are JSON objects).
fn input_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// The content blocks of an answer: its reasoning (a `thinking` block; callm signs nothing,
/// so its `signature` is empty), its text, then its calls.
fn content_json(a: &Answer) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(r) = a.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
        blocks.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(text) = a.content.as_deref().filter(|t| !t.is_empty()) {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for c in &a.tool_calls {
        blocks.push(json!({
            "type": "tool_use",
            "id": tool_use_id(&c.id),
            "name": c.name,
            "input": input_object(&c.arguments),
        }));
    }
    blocks
}

/// The `message` object of a finished answer.
pub fn message_json(meta: &MessageMeta, o: &ChatOutcome) -> Value {
    json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content_json(&o.message),
        "stop_reason": stop_reason(o),
        "stop_sequence": o.stop_sequence,
        "usage": usage_json(&o.usage),
    })
}

/// The block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    /// The call with this index in the answer.
    Call(usize),
}

/// Assembles Anthropic's event stream from chat job messages.
#[derive(Debug)]
pub struct MessageStream {
    meta: MessageMeta,
    started: bool,
    open: Option<Open>,
    blocks: usize,
    done: bool,
}

fn event(name: &'static str, v: Value) -> Payload {
    Payload::named(name, v.to_string())
}

impl MessageStream {
    /// A stream for one request.
    pub fn new(meta: MessageMeta) -> Self {
        MessageStream {
            meta,
            started: false,
            open: None,
            blocks: 0,
            done: false,
        }
    }

    /// `message_start` (usage is known at the end: `message_delta` carries it) and a `ping`.
    fn start(&mut self, out: &mut Vec<Payload>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": self.meta.id, "type": "message", "role": "assistant", "model": self.meta.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        out.push(event(
            "message_start",
            json!({"type": "message_start", "message": message}),
        ));
        out.push(event("ping", json!({"type": "ping"})));
    }

    fn close(&mut self, out: &mut Vec<Payload>) {
        if self.open.take().is_some() {
            let index = self.blocks - 1;
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open(&mut self, block: Open, content_block: Value, out: &mut Vec<Payload>) {
        self.close(out);
        self.open = Some(block);
        self.blocks += 1;
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.blocks - 1, "content_block": content_block}),
        ));
    }

    fn delta(&self, delta: Value, out: &mut Vec<Payload>) {
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}),
        ));
    }

    fn on_event(&mut self, ev: ChatEvent, out: &mut Vec<Payload>) {
        match ev {
            ChatEvent::Content(text) => {
                if text.is_empty() {
                    return;
                }
                if self.open != Some(Open::Text) {
                    self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                self.delta(json!({"type": "text_delta", "text": text}), out);
            }
            ChatEvent::ToolCallStart { index, id, name } => {
                let block =
                    json!({"type": "tool_use", "id": tool_use_id(&id), "name": name, "input": {}});
                self.open(Open::Call(index), block, out);
            }
            ChatEvent::ToolCallArguments { index, delta } => {
                if self.open == Some(Open::Call(index)) && !delta.is_empty() {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": delta}),
                        out,
                    );
                }
            }
            ChatEvent::Reasoning(text) => {
                if text.is_empty() {
                    return;
                }
                if self.open != Some(Open::Thinking) {
                    let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                    self.open(Open::Thinking, block, out);
                }
                self.delta(json!({"type": "thinking_delta", "thinking": text}), out);
            }
            ChatEvent::Logprob(_) => {}
        }
    }

    fn finish(&mut self, o: &ChatOutcome, out: &mut Vec<Payload>) {
        self.close(out);
        let usage = usage_json(&o.usage);
        out.push(event(
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(o), "stop_sequence": o.stop_sequence},
                "usage": usage}),
        ));
        out.push(event("message_stop", json!({"type": "message_stop"})));
        self.done = true;
    }
}

/// An `error` event in Anthropic's shape.
fn error_event(e: &ApiError) -> Payload {
    event("error", super::error_body(e, None))
}

impl Assembler for MessageStream {
    type Msg = ChatMsg;

    fn on_msg(&mut self, msg: ChatMsg) -> Emit {
        let mut out = Vec::new();
        match msg {
            ChatMsg::Event(_, ev) => {
                self.start(&mut out);
                self.on_event(ev, &mut out);
            }
            ChatMsg::Done(_, outcome) if outcome.cancelled => {
                return Emit {
                    data: out,
                    end: true,
                };
            }
            ChatMsg::Done(_, outcome) => {
                self.start(&mut out);
                self.finish(&outcome, &mut out);
            }
            ChatMsg::Failed(e) => {
                out.push(error_event(&ApiError::from(e)));
                return Emit {
                    data: out,
                    end: true,
                };
            }
        }
        Emit {
            data: out,
            end: self.done,
        }
    }

    fn on_close(&mut self) -> Vec<Payload> {
        if self.done {
            return Vec::new();
        }
        vec![error_event(&ApiError::internal(
            "the generation ended unexpectedly",
        ))]
    }
}
