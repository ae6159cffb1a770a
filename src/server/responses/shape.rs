//! The Responses API's shapes: the `response` object, its output items (a `message` with
//! `output_text`, `function_call`s with `call_id`, `name`, `arguments`) and `usage` with
//! `input_tokens_details.cached_tokens`.

use serde_json::{json, Map, Value};

use super::super::run::new_id;
use crate::chat::{Answer, ChatFinish, TokenUsage};
use crate::openai::responses::{ResponseTool, ResponsesRequest};

/// The request fields a response object echoes, as the client sent them (defaults filled).
#[derive(Debug, Clone)]
pub struct Echo {
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    tools: Vec<Value>,
    tool_choice: Value,
    parallel_tool_calls: bool,
    temperature: f32,
    top_p: f32,
    format: Value,
    store: bool,
    previous_response_id: Option<String>,
    metadata: Map<String, Value>,
    user: Option<String>,
    reasoning: Value,
}

impl Echo {
    /// What the response to `req` echoes; `store` and `previous_response_id` as the handler
    /// resolved them.
    pub fn of(req: &ResponsesRequest, store: bool, previous: Option<String>) -> Self {
        let tool = |t: &ResponseTool| {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            if t.kind == "function" {
                v["strict"] = Value::Bool(t.strict.unwrap_or(true));
            }
            v
        };
        Echo {
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            tools: req.tools.iter().flatten().map(tool).collect(),
            tool_choice: req
                .tool_choice
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: req.parallel_tool_calls != Some(false),
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            format: req
                .text
                .as_ref()
                .and_then(|t| t.format.clone())
                .filter(|f| !f.is_null())
                .unwrap_or_else(|| json!({"type": "text"})),
            store,
            previous_response_id: previous,
            metadata: req.metadata.clone().unwrap_or_default(),
            user: req.user.clone(),
            reasoning: {
                let r = req.reasoning.clone().unwrap_or_default();
                json!({"effort": r.effort, "summary": r.summary})
            },
        }
    }
}

/// What every event and object of one response shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The served model id.
    pub model: String,
    /// The echoed request fields.
    pub echo: Echo,
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Still generating (the stream's first events).
    InProgress,
    /// Finished.
    Completed,
    /// Cut at `max_output_tokens`.
    Incomplete,
    /// Failed with this message.
    Failed(String),
}

impl Status {
    /// The status of a finished answer.
    pub fn of(finish: ChatFinish) -> Self {
        match finish {
            ChatFinish::Length => Status::Incomplete,
            _ => Status::Completed,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed(_) => "failed",
        }
    }

    /// An output item's status in a response of this status.
    pub fn item(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::InProgress => "in_progress",
            Status::Incomplete | Status::Failed(_) => "incomplete",
        }
    }
}

/// The `usage` object.
pub fn usage_json(u: &TokenUsage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// An `output_text` part.
pub fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `message` output item.
pub fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A `reasoning` output item: the model's own reasoning as a `reasoning_text` part (no
/// summary: callm does not summarize).
pub fn reasoning_item(id: &str, status: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "status": status, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}]})
}

/// A `function_call` output item.
pub fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

/// The output items of a finished answer, with fresh item ids: its reasoning first (a
/// `reasoning` item with one `reasoning_text` part), its text as one message (also when empty
/// and there are no calls: a response always says something), then its calls.
pub fn output_items(a: &Answer, status: &Status) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(r) = a.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
        out.push(reasoning_item(&new_id("rs_"), status.item(), r));
    }
    let text = a.content.as_deref().unwrap_or_default();
    if !text.is_empty() || a.tool_calls.is_empty() {
        out.push(message_item(
            &new_id("msg_"),
            status.item(),
            vec![text_part(text)],
        ));
    }
    for c in &a.tool_calls {
        out.push(call_item(
            &new_id("fc_"),
            status.item(),
            &c.id,
            &c.name,
            &c.arguments,
        ));
    }
    out
}

/// The `response` object.
pub fn response_json(
    meta: &ResponseMeta,
    status: &Status,
    output: Vec<Value>,
    usage: Option<&TokenUsage>,
) -> Value {
    let e = &meta.echo;
    let error = match status {
        Status::Failed(message) => json!({"code": "server_error", "message": message}),
        _ => Value::Null,
    };
    let incomplete = match status {
        Status::Incomplete => json!({"reason": "max_output_tokens"}),
        _ => Value::Null,
    };
    json!({
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status.name(),
        "background": false,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": e.instructions,
        "max_output_tokens": e.max_output_tokens,
        "max_tool_calls": null,
        "model": meta.model,
        "output": output,
        "parallel_tool_calls": e.parallel_tool_calls,
        "previous_response_id": e.previous_response_id,
        "reasoning": e.reasoning,
        "service_tier": "default",
        "store": e.store,
        "temperature": e.temperature,
        "text": {"format": e.format},
        "tool_choice": e.tool_choice,
        "tools": e.tools,
        "top_logprobs": 0,
        "top_p": e.top_p,
        "truncation": "disabled",
        "usage": usage.map(usage_json),
        "user": e.user,
        "metadata": e.metadata,
    })
}
