//! `POST /v1/chat/completions` body → [`ChatRequest`].
//!
//! Decisions made here, once: roles and content parts, tool and function definitions,
//! `tool_choice` and legacy `function_call` (legacy `functions` are the tools when `tools`
//! is absent or empty, and then the answer is a legacy `function_call`), `response_format`,
//! sampling ranges and `logit_bias`, stops, token and choice limits, `reasoning_effort`. History is completed on
//! the way: calls without id get `call_{message}_{index}`, a result without `tool_call_id`
//! (legacy `function` results) answers the oldest unanswered call of the last assistant
//! message, and call arguments are parsed from their JSON text.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use super::{at_least_one, sampling_fields, SamplingFields};
use crate::openai::{self as wire, ChatCompletionRequest, MessageContent};
use crate::request::{
    ChatRequest, Limits, Message, PromptEnd, ReasoningControl, RequestError, ResponseFormat, Role,
    Tool, ToolCall, ToolChoice,
};

/// Most tools (or legacy functions) per request: OpenAI's documented limit of 128 functions.
/// Every tool becomes a grammar alternative and prompt text, so the cap also bounds grammar
/// compilation (2,000 tools took seconds of CPU and broke llguidance's row limit).
pub const MAX_TOOLS: usize = 128;

/// Roles accepted in `messages`.
const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl TryFrom<ChatCompletionRequest> for ChatRequest {
    type Error = RequestError;

    fn try_from(req: ChatCompletionRequest) -> Result<Self, RequestError> {
        if req.messages.is_empty() {
            return Err(RequestError::new(
                "messages",
                "`messages` must contain at least one message.",
            ));
        }
        for (i, m) in req.messages.iter().enumerate() {
            check_message(i, m)?;
        }
        let shared = sampling_fields!(req).convert()?;
        at_least_one("max_tokens", req.max_tokens)?;
        at_least_one("max_completion_tokens", req.max_completion_tokens)?;
        let logprobs = logprobs(req.logprobs, req.top_logprobs)?;
        let (tools, legacy) = tools(&req)?;
        let tool_choice = tool_choice(&req, legacy)?;
        let response_format = response_format(req.response_format.as_ref())?;
        let reasoning =
            ReasoningControl::from_effort("reasoning_effort", req.reasoning_effort.as_deref())?;
        let messages = messages(req.messages);
        let prompt_end = prompt_end(
            &messages,
            req.add_generation_prompt,
            req.continue_final_message,
        )?;
        let request = ChatRequest {
            messages,
            tools,
            tool_choice,
            legacy_function_call: legacy,
            response_format,
            sampling: shared.sampling,
            stop: shared.stop,
            limits: Limits {
                max_tokens: req.max_completion_tokens.or(req.max_tokens),
                n: shared.n,
                logprobs,
                parallel_tool_calls: req.parallel_tool_calls != Some(false),
                max_reasoning_chars: req.max_reasoning_chars,
                max_reasoning_tokens: req.max_reasoning_tokens,
            },
            template_kwargs: req.chat_template_kwargs.unwrap_or_default(),
            reasoning,
            prompt_end,
        };
        request.check_prompt_end("continue_final_message")?;
        Ok(request)
    }
}

/// `add_generation_prompt` / `continue_final_message` (as vLLM and transformers read them):
/// continuing needs a final assistant message with text and cannot be combined with an
/// explicit new assistant turn; a trailing assistant message alone opens a new turn.
fn prompt_end(
    messages: &[Message],
    add_generation_prompt: Option<bool>,
    continue_final_message: Option<bool>,
) -> Result<PromptEnd, RequestError> {
    match (add_generation_prompt, continue_final_message) {
        (Some(true), Some(true)) => Err(RequestError::new(
            "continue_final_message",
            "`continue_final_message` and `add_generation_prompt` cannot both be true: continue \
             the final assistant message, or open a new assistant turn.",
        )),
        (_, Some(true)) if ChatRequest::ends_with_prefill(messages) => Ok(PromptEnd::ContinueFinal),
        (_, Some(true)) => Err(RequestError::new(
            "continue_final_message",
            "`continue_final_message` needs a final assistant message with text content and no \
             tool calls.",
        )),
        (Some(false), _) => Ok(PromptEnd::Conversation),
        _ => Ok(PromptEnd::GenerationPrompt),
    }
}

fn check_message(i: usize, m: &wire::ChatMessage) -> Result<(), RequestError> {
    if !ROLES.contains(&m.role.as_str()) {
        return Err(RequestError::new(
            format!("messages[{i}].role"),
            format!(
                "Invalid value '{}' for messages[{i}].role: expected one of {}.",
                m.role,
                ROLES.join(", ")
            ),
        ));
    }
    if let Some(MessageContent::Parts(parts)) = &m.content {
        for (j, p) in parts.iter().enumerate() {
            if p.kind != "text" {
                return Err(RequestError::new(
                    format!("messages[{i}].content[{j}].type"),
                    format!(
                        "Content parts of type '{}' are not supported by this model; only 'text' parts are.",
                        p.kind
                    ),
                ));
            }
            if p.text.is_none() {
                return Err(RequestError::new(
                    format!("messages[{i}].content[{j}].text"),
                    "A 'text' content part needs a `text` string.",
                ));
            }
        }
    }
    match m.role.as_str() {
        "tool" if m.tool_call_id.as_deref().is_none_or(str::is_empty) => Err(RequestError::new(
            format!("messages[{i}].tool_call_id"),
            "Messages with role 'tool' need a `tool_call_id`.",
        )),
        "function" if m.name.as_deref().is_none_or(str::is_empty) => Err(RequestError::new(
            format!("messages[{i}].name"),
            "Messages with role 'function' need a `name`.",
        )),
        "user" | "system" | "developer" if m.content.is_none() => Err(RequestError::new(
            format!("messages[{i}].content"),
            format!("Messages with role '{}' need `content`.", m.role),
        )),
        _ => {
            for (j, c) in m.tool_calls.iter().flatten().enumerate() {
                if c.function.name.is_empty() {
                    return Err(RequestError::new(
                        format!("messages[{i}].tool_calls[{j}].function.name"),
                        "A tool call needs a function name.",
                    ));
                }
            }
            Ok(())
        }
    }
}

/// `logprobs` / `top_logprobs` → alternatives per token, when log-probabilities are wanted.
fn logprobs(logprobs: Option<bool>, top: Option<u32>) -> Result<Option<u8>, RequestError> {
    if let Some(k) = top {
        if k > Limits::MAX_TOP_LOGPROBS {
            return Err(RequestError::new(
                "top_logprobs",
                format!(
                    "`top_logprobs` must be between 0 and {}.",
                    Limits::MAX_TOP_LOGPROBS
                ),
            ));
        }
        if logprobs != Some(true) {
            return Err(RequestError::new(
                "top_logprobs",
                "`top_logprobs` requires `logprobs` to be true.",
            ));
        }
    }
    // `k` is at most MAX_TOP_LOGPROBS (20) here.
    Ok((logprobs == Some(true)).then(|| top.unwrap_or(0) as u8))
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn function_def(param: &str, f: &wire::FunctionDefinition) -> Result<Tool, RequestError> {
    if !valid_function_name(&f.name) {
        return Err(RequestError::new(
            format!("{param}.name"),
            format!(
                "Invalid function name '{}': use 1 to 64 letters, digits, underscores, dots or dashes.",
                f.name
            ),
        ));
    }
    if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(RequestError::new(
            format!("{param}.parameters"),
            "Function `parameters` must be a JSON Schema object.",
        ));
    }
    Ok(Tool {
        name: f.name.clone(),
        description: f.description.clone(),
        parameters: f.parameters.clone(),
        strict: f.strict,
    })
}

/// The request's tools and whether they are legacy `functions`: `tools` when it has any,
/// else `functions` (answered with a legacy `function_call`).
fn tools(req: &ChatCompletionRequest) -> Result<(Vec<Tool>, bool), RequestError> {
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if t.kind != "function" {
            return Err(RequestError::new(
                format!("tools[{i}].type"),
                format!(
                    "Unsupported tool type '{}': only 'function' is supported.",
                    t.kind
                ),
            ));
        }
        tools.push(function_def(&format!("tools[{i}].function"), &t.function)?);
    }
    distinct_and_few(&tools, "tools", ".function")?;
    // `tool_choice` is judged against `tools` before the legacy fields are looked at.
    check_tool_choice(req, &tools)?;
    let mut functions = Vec::new();
    for (i, f) in req.functions.iter().flatten().enumerate() {
        functions.push(function_def(&format!("functions[{i}]"), f)?);
    }
    distinct_and_few(&functions, "functions", "")?;
    check_function_call(req.function_call.as_ref(), &functions)?;
    Ok(if tools.is_empty() && !functions.is_empty() {
        (functions, true)
    } else {
        (tools, false)
    })
}

/// At most [`MAX_TOOLS`] tools, no two of the same name (a call could not say which it
/// means); `list` is the field, `inner` the path from an item to its `name`'s object.
fn distinct_and_few(tools: &[Tool], list: &str, inner: &str) -> Result<(), RequestError> {
    if tools.len() > MAX_TOOLS {
        return Err(RequestError::new(
            list,
            format!(
                "`{list}` holds {} functions; at most {MAX_TOOLS} are supported.",
                tools.len()
            ),
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if let Some(first) = seen.insert(t.name.as_str(), i) {
            return Err(RequestError::new(
                format!("{list}[{i}]{inner}.name"),
                format!(
                    "Duplicate function name '{}': {list}[{first}] has the same name.",
                    t.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_tool_choice(req: &ChatCompletionRequest, tools: &[Tool]) -> Result<(), RequestError> {
    match &req.tool_choice {
        None => Ok(()),
        Some(wire::ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" | "auto" => Ok(()),
            "required" if tools.is_empty() => Err(RequestError::new(
                "tool_choice",
                "`tool_choice` 'required' needs at least one tool in `tools`.",
            )),
            "required" => Ok(()),
            other => Err(RequestError::new(
                "tool_choice",
                format!("Invalid value '{other}' for tool_choice: expected 'none', 'auto', 'required' or a named function."),
            )),
        },
        Some(wire::ToolChoice::Named(named)) => {
            if named.kind != "function" {
                return Err(RequestError::new(
                    "tool_choice.type",
                    "`tool_choice.type` must be 'function'.",
                ));
            }
            if tools.iter().any(|t| t.name == named.function.name) {
                Ok(())
            } else {
                Err(RequestError::new(
                    "tool_choice",
                    format!(
                        "`tool_choice` names the function '{}', which is not declared in `tools`.",
                        named.function.name
                    ),
                ))
            }
        }
    }
}

/// The function a legacy `function_call` names; `None` for `"none"`, `"auto"` or absent.
fn function_call_name(fc: Option<&Value>) -> Result<Option<&str>, RequestError> {
    match fc {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "none" || s == "auto" => Ok(None),
        Some(Value::Object(o)) => match o.get("name").and_then(Value::as_str) {
            Some(n) => Ok(Some(n)),
            None => Err(bad_function_call()),
        },
        Some(_) => Err(bad_function_call()),
    }
}

fn bad_function_call() -> RequestError {
    RequestError::new(
        "function_call",
        "`function_call` must be 'none', 'auto' or {\"name\": ...}.",
    )
}

fn check_function_call(fc: Option<&Value>, functions: &[Tool]) -> Result<(), RequestError> {
    match function_call_name(fc)? {
        Some(n) if !functions.iter().any(|f| f.name == n) => Err(RequestError::new(
            "function_call",
            format!(
                "`function_call` names the function '{n}', which is not declared in `functions`."
            ),
        )),
        _ => Ok(()),
    }
}

/// `tool_choice`, else (for legacy requests) `function_call`, else `auto`.
fn tool_choice(req: &ChatCompletionRequest, legacy: bool) -> Result<ToolChoice, RequestError> {
    let mode = |m: &str| match m {
        "none" => ToolChoice::None,
        "required" => ToolChoice::Required,
        _ => ToolChoice::Auto,
    };
    Ok(match &req.tool_choice {
        Some(wire::ToolChoice::Mode(m)) => mode(m),
        Some(wire::ToolChoice::Named(n)) => ToolChoice::Named(n.function.name.clone()),
        None if legacy => match (
            &req.function_call,
            function_call_name(req.function_call.as_ref())?,
        ) {
            (_, Some(name)) => ToolChoice::Named(name.to_string()),
            (Some(Value::String(m)), None) => mode(m),
            _ => ToolChoice::Auto,
        },
        None => ToolChoice::Auto,
    })
}

fn response_format(rf: Option<&Value>) -> Result<ResponseFormat, RequestError> {
    let Some(rf) = rf else {
        return Ok(ResponseFormat::Text);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(js) = rf.get("json_schema").and_then(Value::as_object) else {
                return Err(RequestError::new(
                    "response_format.json_schema",
                    "`response_format.json_schema` must be an object.",
                ));
            };
            json_schema(js)
        }
        _ => Err(RequestError::new(
            "response_format.type",
            "`response_format.type` must be 'text', 'json_object' or 'json_schema'.",
        )),
    }
}

/// `response_format.json_schema`: without a schema, any JSON object.
fn json_schema(js: &Map<String, Value>) -> Result<ResponseFormat, RequestError> {
    let strict = js.get("strict").and_then(Value::as_bool).unwrap_or(false);
    match js.get("schema") {
        None | Some(Value::Null) => Ok(ResponseFormat::JsonObject),
        Some(schema @ (Value::Object(_) | Value::Bool(_))) => Ok(ResponseFormat::JsonSchema {
            schema: schema.clone(),
            strict,
        }),
        Some(_) => Err(RequestError::new(
            "response_format.json_schema.schema",
            "`response_format.json_schema.schema` must be a JSON Schema object.",
        )),
    }
}

/// Parses call arguments: JSON text → value, empty → `{}`, anything else kept as text
/// (templates that need a mapping then fail with a render error, a client error).
pub fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// The checked messages in domain form, with call ids completed.
fn messages(wire: Vec<wire::ChatMessage>) -> Vec<Message> {
    // Ids of the last assistant message's calls that no result has answered yet.
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut out = Vec::with_capacity(wire.len());
    for (i, m) in wire.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => Role::User,
        };
        let mut calls = Vec::new();
        if role == Role::Assistant {
            for (k, c) in m.tool_calls.into_iter().flatten().enumerate() {
                let id = if c.id.is_empty() {
                    format!("call_{i}_{k}")
                } else {
                    c.id
                };
                calls.push(call(id, c.function));
            }
            if let Some(fc) = m.function_call {
                calls.push(call(format!("call_{i}_{}", calls.len()), fc));
            }
            if !calls.is_empty() {
                pending = calls.iter().map(|c| c.id.clone()).collect();
            }
        }
        let tool_call_id =
            (role == Role::Tool).then(|| match m.tool_call_id.filter(|id| !id.is_empty()) {
                Some(id) => {
                    pending.retain(|p| *p != id);
                    id
                }
                None => pending.pop_front().unwrap_or_else(|| format!("call_{i}_0")),
            });
        out.push(Message {
            role,
            content: m.content.map(|c| c.text()),
            name: m.name,
            tool_calls: calls,
            tool_call_id,
            reasoning_content: m.reasoning_content.filter(|_| role == Role::Assistant),
        });
    }
    out
}

fn call(id: String, f: wire::FunctionCall) -> ToolCall {
    ToolCall {
        id,
        arguments: parse_arguments(&f.arguments),
        name: f.name,
    }
}
