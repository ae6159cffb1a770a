//! The Anthropic Messages front end's edge: a `POST /v1/messages` body (the wire types of
//! `crate::anthropic`) becomes a [`ChatRequest`] here, and only here.
//!
//! Decisions made here, once: `max_tokens` (required), roles (`user` and `assistant` only),
//! content blocks (text, `tool_use`, `tool_result`, `thinking`; images and documents are
//! refused: the models are text-only), the system prompt, client tools (server tools are
//! refused; `strict` kept), `tool_choice` and `disable_parallel_tool_use`, `stop_sequences`,
//! sampling ranges (Anthropic's: temperature in [0, 1]), `output_config.format` (a JSON
//! Schema the answer follows, enforced). A user turn's `tool_result` blocks become
//! tool messages (in order), its text one user message after them; a failed result
//! (`is_error`) is rendered as `Error: <content>`. A conversation that ends with an
//! assistant turn is a prefill: the answer continues that text.

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::anthropic::{self as wire, Content, ContentBlock, MessagesRequest};
use crate::request::{
    ChatRequest, Effort, Limits, Message, PromptEnd, ReasoningControl, RequestError,
    ResponseFormat, Role, Sampling, Tool, ToolCall, ToolChoice,
};

/// Most stop sequences per request.
pub const MAX_STOP_SEQUENCES: usize = 16;

impl TryFrom<MessagesRequest> for ChatRequest {
    type Error = RequestError;

    fn try_from(req: MessagesRequest) -> Result<Self, RequestError> {
        let Some(max_tokens) = req.max_tokens else {
            return Err(RequestError::new(
                "max_tokens",
                "max_tokens: Field required",
            ));
        };
        if max_tokens == 0 {
            return Err(RequestError::new(
                "max_tokens",
                "max_tokens: must be greater than or equal to 1",
            ));
        }
        conversation(req, max_tokens)
    }
}

/// The request of `POST /v1/messages/count_tokens`: the same body, without `max_tokens`.
pub fn count_tokens_request(req: MessagesRequest) -> Result<ChatRequest, RequestError> {
    let max_tokens = req.max_tokens.unwrap_or(1).max(1);
    conversation(req, max_tokens)
}

fn conversation(req: MessagesRequest, max_tokens: u32) -> Result<ChatRequest, RequestError> {
    if req.messages.is_empty() {
        return Err(RequestError::new(
            "messages",
            "messages: at least one message is required",
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(Message::text(Role::System, system_text(system)?));
    }
    for (i, m) in req.messages.iter().enumerate() {
        turn(i, m, &mut messages)?;
    }
    let tools = tools(req.tools.as_deref().unwrap_or_default())?;
    let (tool_choice, parallel) = tool_choice(req.tool_choice.as_ref(), &tools)?;
    let prompt_end = prompt_end(&req.messages, &messages)?;
    let request = ChatRequest {
        messages,
        tools,
        tool_choice,
        legacy_function_call: false,
        response_format: output_format(req.output_config.as_ref().and_then(|o| o.format.as_ref()))?,
        sampling: sampling(&req)?,
        stop: stop_sequences(req.stop_sequences.as_deref().unwrap_or_default())?,
        limits: Limits {
            max_tokens: Some(max_tokens),
            n: 1,
            logprobs: None,
            parallel_tool_calls: parallel,
            max_reasoning_chars: None,
            max_reasoning_tokens: thinking_budget(req.thinking.as_ref()),
        },
        template_kwargs: Default::default(),
        reasoning: ReasoningControl {
            thinking: thinking_switch(req.thinking.as_ref())?,
            effort: effort(req.output_config.as_ref().and_then(|o| o.effort.as_deref()))?,
        },
        prompt_end,
    };
    request.check_prompt_end("messages")?;
    Ok(request)
}

/// The reasoning token budget of `thinking`: its `budget_tokens` when thinking is
/// `enabled` (an `adaptive` model budgets itself; `disabled` has no block to bound).
fn thinking_budget(thinking: Option<&crate::anthropic::ThinkingConfig>) -> Option<u32> {
    thinking
        .filter(|t| t.kind == "enabled")
        .and_then(|t| t.budget_tokens)
}

/// Anthropic's effort levels.
const EFFORTS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

/// `output_config.effort` as an effort level (`max`: the highest); absent: none asked.
fn effort(value: Option<&str>) -> Result<Option<Effort>, RequestError> {
    let Some(v) = value else {
        return Ok(None);
    };
    if !EFFORTS.contains(&v) {
        return Err(RequestError::new(
            "output_config.effort",
            format!(
                "output_config.effort: '{v}' is not one of {}.",
                EFFORTS.join(", ")
            ),
        ));
    }
    let level = if v == "max" { "xhigh" } else { v };
    Effort::parse("output_config.effort", level).map(Some)
}

/// `thinking` as the thinking switch of templates that have one (the template layer sets
/// the variable the template reads); `None` when the request does not say.
fn thinking_switch(
    thinking: Option<&crate::anthropic::ThinkingConfig>,
) -> Result<Option<bool>, RequestError> {
    let Some(t) = thinking else {
        return Ok(None);
    };
    let enabled = match t.kind.as_str() {
        "enabled" | "adaptive" => true,
        "disabled" => false,
        other => {
            return Err(RequestError::new(
                "thinking.type",
                format!(
                    "thinking.type: '{other}' is not one of 'enabled', 'adaptive', 'disabled'."
                ),
            ))
        }
    };
    Ok(Some(enabled))
}

/// `system`: a string or text blocks, joined.
fn system_text(system: &Content) -> Result<String, RequestError> {
    let mut text = String::new();
    for (j, b) in system.blocks().iter().enumerate() {
        if b.kind != "text" {
            return Err(RequestError::new(
                format!("system[{j}].type"),
                format!(
                    "system[{j}]: blocks of type '{}' are not supported in the system prompt; only 'text' blocks are.",
                    b.kind
                ),
            ));
        }
        text.push_str(&block_text(b, &format!("system[{j}]"))?);
    }
    Ok(text)
}

fn block_text(b: &ContentBlock, param: &str) -> Result<String, RequestError> {
    b.text.clone().ok_or_else(|| {
        RequestError::new(
            format!("{param}.text"),
            format!("{param}.text: Field required"),
        )
    })
}

fn unsupported_block(param: &str, kind: &str, role: &str) -> RequestError {
    let why = match kind {
        "image" | "document" => format!(
            "{param}: '{kind}' blocks are not supported: this model reads text only. Send the content as 'text' blocks."
        ),
        _ => format!("{param}: blocks of type '{kind}' are not supported in {role} messages."),
    };
    RequestError::new(format!("{param}.type"), why)
}

/// One turn → domain messages: a user turn's tool results (one tool message each, in
/// order) then its text; an assistant turn's text, calls and reasoning as one message.
fn turn(i: usize, m: &wire::InputMessage, out: &mut Vec<Message>) -> Result<(), RequestError> {
    let blocks = m.content.blocks();
    match m.role.as_str() {
        "user" => {
            let mut text = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                match b.kind.as_str() {
                    "text" => text.push_str(&block_text(b, &param)?),
                    "tool_result" => out.push(tool_result(&param, b)?),
                    kind => return Err(unsupported_block(&param, kind, "user")),
                }
            }
            let only_results = !blocks.is_empty() && blocks.iter().all(|b| b.kind != "text");
            if !only_results {
                out.push(Message::text(Role::User, text));
            }
        }
        "assistant" => {
            let mut msg = Message {
                role: Role::Assistant,
                ..Default::default()
            };
            let mut text = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                match b.kind.as_str() {
                    "text" => text.push_str(&block_text(b, &param)?),
                    "tool_use" => msg.tool_calls.push(tool_use(&param, b)?),
                    "thinking" => {
                        let r = msg.reasoning_content.get_or_insert_with(String::new);
                        r.push_str(b.thinking.as_deref().unwrap_or_default());
                    }
                    "redacted_thinking" => {}
                    kind => return Err(unsupported_block(&param, kind, "assistant")),
                }
            }
            msg.content = (!text.is_empty() || msg.tool_calls.is_empty()).then_some(text);
            out.push(msg);
        }
        other => {
            return Err(RequestError::new(
                format!("messages[{i}].role"),
                format!("messages[{i}].role: Input should be 'user' or 'assistant', got '{other}'"),
            ))
        }
    }
    Ok(())
}

fn tool_use(param: &str, b: &ContentBlock) -> Result<ToolCall, RequestError> {
    let id = b.id.clone().filter(|s| !s.is_empty());
    let name = b.name.clone().filter(|s| !s.is_empty());
    let (Some(id), Some(name)) = (id, name) else {
        return Err(RequestError::new(
            param,
            format!("{param}: a 'tool_use' block needs an `id` and a `name`"),
        ));
    };
    let arguments = match &b.input {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(_) => {
            return Err(RequestError::new(
                format!("{param}.input"),
                format!("{param}.input: Input should be a valid dictionary"),
            ))
        }
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

fn tool_result(param: &str, b: &ContentBlock) -> Result<Message, RequestError> {
    let Some(id) = b.tool_use_id.clone().filter(|s| !s.is_empty()) else {
        return Err(RequestError::new(
            format!("{param}.tool_use_id"),
            format!("{param}.tool_use_id: Field required"),
        ));
    };
    let mut text = String::new();
    if let Some(content) = &b.content {
        for (k, part) in content.blocks().iter().enumerate() {
            let p = format!("{param}.content[{k}]");
            match part.kind.as_str() {
                "text" => text.push_str(&block_text(part, &p)?),
                kind => return Err(unsupported_block(&p, kind, "tool_result")),
            }
        }
    }
    if b.is_error == Some(true) {
        text = format!("Error: {text}");
    }
    Ok(Message {
        role: Role::Tool,
        content: Some(text),
        tool_call_id: Some(id),
        ..Default::default()
    })
}

/// Anthropic's tool names: 1 to 64 letters, digits, `_` or `-` (callm also takes dots).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn tools(defs: &[wire::ToolDefinition]) -> Result<Vec<Tool>, RequestError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, t) in defs.iter().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(RequestError::new(
                format!("tools[{i}].type"),
                format!(
                    "tools[{i}]: server tools ('{kind}') are not supported: callm runs no tools itself. Declare client tools with `name` and `input_schema`."
                ),
            ));
        }
        if !valid_name(&t.name) {
            return Err(RequestError::new(
                format!("tools[{i}].name"),
                format!(
                    "tools[{i}].name: '{}' must be 1 to 64 letters, digits, underscores or dashes",
                    t.name
                ),
            ));
        }
        match &t.input_schema {
            Some(Value::Object(_)) => {}
            _ => {
                return Err(RequestError::new(
                    format!("tools[{i}].input_schema"),
                    format!("tools[{i}].input_schema: a JSON Schema object is required"),
                ))
            }
        }
        if out.iter().any(|o: &Tool| o.name == t.name) {
            return Err(RequestError::new(
                format!("tools[{i}].name"),
                format!("tools: tool names must be unique ('{}' repeats)", t.name),
            ));
        }
        out.push(Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.input_schema.clone(),
            strict: t.strict,
        });
    }
    Ok(out)
}

/// `tool_choice` → the domain choice and whether parallel calls are allowed.
fn tool_choice(
    choice: Option<&wire::ToolChoice>,
    tools: &[Tool],
) -> Result<(ToolChoice, bool), RequestError> {
    let Some(c) = choice else {
        return Ok((ToolChoice::Auto, true));
    };
    let parallel = c.disable_parallel_tool_use != Some(true);
    let needs_tools = |mode: &str| {
        RequestError::new(
            "tool_choice",
            format!("tool_choice: '{mode}' needs at least one tool in `tools`"),
        )
    };
    let choice = match c.kind.as_str() {
        "auto" => ToolChoice::Auto,
        "none" => ToolChoice::None,
        "any" if tools.is_empty() => return Err(needs_tools("any")),
        "any" => ToolChoice::Required,
        "tool" => {
            let name = c.name.clone().unwrap_or_default();
            if !tools.iter().any(|t| t.name == name) {
                return Err(RequestError::new(
                    "tool_choice.name",
                    format!("tool_choice: the tool '{name}' is not declared in `tools`"),
                ));
            }
            ToolChoice::Named(name)
        }
        other => {
            return Err(RequestError::new(
                "tool_choice.type",
                format!(
                    "tool_choice.type: expected 'auto', 'any', 'tool' or 'none', got '{other}'"
                ),
            ))
        }
    };
    Ok((choice, parallel))
}

fn range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), RequestError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(RequestError::new(
            name,
            format!("{name}: must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

fn sampling(req: &MessagesRequest) -> Result<Sampling, RequestError> {
    range("temperature", req.temperature, 0.0, 1.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    if req.top_p == Some(0.0) {
        return Err(RequestError::new(
            "top_p",
            "top_p: must be greater than 0, got 0",
        ));
    }
    Ok(Sampling {
        temperature: req.temperature,
        top_p: req.top_p.unwrap_or(1.0),
        top_k: req.top_k.unwrap_or(0),
        ..Sampling::default()
    })
}

fn stop_sequences(stops: &[String]) -> Result<Vec<String>, RequestError> {
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(RequestError::new(
            "stop_sequences",
            format!("stop_sequences: at most {MAX_STOP_SEQUENCES} sequences are accepted"),
        ));
    }
    if stops.iter().any(|s| s.is_empty()) {
        return Err(RequestError::new(
            "stop_sequences",
            "stop_sequences: sequences must not be empty",
        ));
    }
    Ok(stops.to_vec())
}

/// `output_config.format` (structured outputs): a JSON Schema the answer must follow.
fn output_format(format: Option<&Value>) -> Result<ResponseFormat, RequestError> {
    let Some(f) = format.filter(|f| !f.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match (f.get("type").and_then(Value::as_str), f.get("schema")) {
        (Some("json_schema"), Some(schema @ (Value::Object(_) | Value::Bool(_)))) => {
            Ok(ResponseFormat::JsonSchema {
                schema: schema.clone(),
                strict: true,
            })
        }
        _ => Err(RequestError::new(
            "output_config.format",
            "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}",
        )),
    }
}

/// A final assistant turn is a prefill (the answer continues its text); as in Anthropic's
/// API, its text may not end with whitespace.
fn prompt_end(
    turns: &[wire::InputMessage],
    messages: &[Message],
) -> Result<PromptEnd, RequestError> {
    if turns.last().is_none_or(|t| t.role != "assistant") {
        return Ok(PromptEnd::GenerationPrompt);
    }
    if !ChatRequest::ends_with_prefill(messages) {
        return Ok(PromptEnd::GenerationPrompt);
    }
    let text = messages
        .last()
        .and_then(|m| m.content.as_deref())
        .unwrap_or_default();
    if text.ends_with(char::is_whitespace) {
        return Err(RequestError::new(
            "messages",
            "messages: final assistant content cannot end with trailing whitespace",
        ));
    }
    Ok(PromptEnd::ContinueFinal)
}
