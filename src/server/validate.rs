//! Wire-level validation of requests, so that the backend only sees sane ones.
//!
//! Everything here answers 400 (or 404 for the model name); generation-related checks
//! that need the model (context length, template) are the backend's.

use serde_json::Value;

use super::error::ApiError;
use crate::openai::{
    ChatCompletionRequest, CompletionRequest, MessageContent, StopSpec, ToolChoice,
};

/// Roles accepted in `messages`.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Most choices per request.
pub const MAX_N: u32 = 128;

/// Checks that `requested` (when given) names the served model.
pub fn check_model(requested: Option<&str>, served: &str) -> Result<(), ApiError> {
    match requested {
        None => Ok(()),
        Some(m) if m.is_empty() || m == served => Ok(()),
        Some(m) => Err(ApiError::model_not_found(m)),
    }
}

/// Validates a chat completion request.
pub fn validate_chat(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        validate_message(i, m)?;
    }
    let sampling = Sampling {
        n: req.n,
        temperature: req.temperature,
        top_p: req.top_p,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.as_ref(),
        stop: req.stop.as_ref(),
    };
    sampling.check()?;
    for (name, v) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if v == Some(0) {
            return Err(ApiError::invalid(
                name,
                format!("`{name}` must be at least 1."),
            ));
        }
    }
    if let Some(k) = req.top_logprobs {
        if k > 20 {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` must be between 0 and 20.",
            ));
        }
        if req.logprobs != Some(true) {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` requires `logprobs` to be true.",
            ));
        }
    }
    validate_tools(req)?;
    validate_functions(req)?;
    if let Some(rf) = &req.response_format {
        let kind = rf.get("type").and_then(Value::as_str);
        match kind {
            Some("text") | Some("json_object") => {}
            Some("json_schema") if rf.get("json_schema").is_some_and(Value::is_object) => {}
            Some("json_schema") => {
                return Err(ApiError::invalid(
                    "response_format.json_schema",
                    "`response_format.json_schema` must be an object.",
                ))
            }
            _ => {
                return Err(ApiError::invalid(
                    "response_format.type",
                    "`response_format.type` must be 'text', 'json_object' or 'json_schema'.",
                ))
            }
        }
    }
    Ok(())
}

fn validate_message(i: usize, m: &crate::openai::ChatMessage) -> Result<(), ApiError> {
    if !ROLES.contains(&m.role.as_str()) {
        return Err(ApiError::invalid(
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
                return Err(ApiError::invalid(
                    format!("messages[{i}].content[{j}].type"),
                    format!(
                        "Content parts of type '{}' are not supported by this model; only 'text' parts are.",
                        p.kind
                    ),
                ));
            }
            if p.text.is_none() {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content[{j}].text"),
                    "A 'text' content part needs a `text` string.",
                ));
            }
        }
    }
    match m.role.as_str() {
        "tool" if m.tool_call_id.as_deref().is_none_or(str::is_empty) => Err(ApiError::invalid(
            format!("messages[{i}].tool_call_id"),
            "Messages with role 'tool' need a `tool_call_id`.",
        )),
        "function" if m.name.as_deref().is_none_or(str::is_empty) => Err(ApiError::invalid(
            format!("messages[{i}].name"),
            "Messages with role 'function' need a `name`.",
        )),
        "user" | "system" | "developer" if m.content.is_none() => Err(ApiError::invalid(
            format!("messages[{i}].content"),
            format!("Messages with role '{}' need `content`.", m.role),
        )),
        _ => {
            for (j, c) in m.tool_calls.iter().flatten().enumerate() {
                if c.function.name.is_empty() {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].tool_calls[{j}].function.name"),
                        "A tool call needs a function name.",
                    ));
                }
            }
            Ok(())
        }
    }
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn validate_tools(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    let tools = req.tools.as_deref().unwrap_or(&[]);
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                format!(
                    "Unsupported tool type '{}': only 'function' is supported.",
                    t.kind
                ),
            ));
        }
        check_function_def(&format!("tools[{i}].function"), &t.function)?;
    }
    let declared = |name: &str| tools.iter().any(|t| t.function.name == name);
    match &req.tool_choice {
        None => Ok(()),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" | "auto" => Ok(()),
            "required" if tools.is_empty() => Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice` 'required' needs at least one tool in `tools`.",
            )),
            "required" => Ok(()),
            other => Err(ApiError::invalid(
                "tool_choice",
                format!("Invalid value '{other}' for tool_choice: expected 'none', 'auto', 'required' or a named function."),
            )),
        },
        Some(ToolChoice::Named(named)) => {
            if named.kind != "function" {
                return Err(ApiError::invalid("tool_choice.type", "`tool_choice.type` must be 'function'."));
            }
            if declared(&named.function.name) {
                Ok(())
            } else {
                Err(ApiError::invalid(
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

fn check_function_def(param: &str, f: &crate::openai::FunctionDefinition) -> Result<(), ApiError> {
    if !valid_function_name(&f.name) {
        return Err(ApiError::invalid(
            format!("{param}.name"),
            format!(
                "Invalid function name '{}': use 1 to 64 letters, digits, underscores, dots or dashes.",
                f.name
            ),
        ));
    }
    if let Some(p) = &f.parameters {
        if !p.is_object() {
            return Err(ApiError::invalid(
                format!("{param}.parameters"),
                "Function `parameters` must be a JSON Schema object.",
            ));
        }
    }
    Ok(())
}

fn validate_functions(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    let functions = req.functions.as_deref().unwrap_or(&[]);
    for (i, f) in functions.iter().enumerate() {
        check_function_def(&format!("functions[{i}]"), f)?;
    }
    let Some(fc) = &req.function_call else {
        return Ok(());
    };
    let name = match fc {
        Value::Null => return Ok(()),
        Value::String(s) if s == "none" || s == "auto" => return Ok(()),
        Value::Object(o) => o.get("name").and_then(Value::as_str),
        _ => None,
    };
    match name {
        Some(n) if functions.iter().any(|f| f.name == n) => Ok(()),
        Some(n) => Err(ApiError::invalid(
            "function_call",
            format!(
                "`function_call` names the function '{n}', which is not declared in `functions`."
            ),
        )),
        None => Err(ApiError::invalid(
            "function_call",
            "`function_call` must be 'none', 'auto' or {\"name\": ...}.",
        )),
    }
}

/// Sampling parameters shared by chat and raw completions.
struct Sampling<'a> {
    n: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<&'a serde_json::Map<String, Value>>,
    stop: Option<&'a StopSpec>,
}

impl Sampling<'_> {
    fn check(&self) -> Result<(), ApiError> {
        if let Some(n) = self.n {
            if !(1..=MAX_N).contains(&n) {
                return Err(ApiError::invalid(
                    "n",
                    format!("`n` must be between 1 and {MAX_N}."),
                ));
            }
        }
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        for (k, v) in self.logit_bias.into_iter().flatten() {
            let bias = v.as_f64();
            if k.parse::<u32>().is_err() || !bias.is_some_and(|b| (-100.0..=100.0).contains(&b)) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    "`logit_bias` maps token ids (as strings) to numbers between -100 and 100.",
                ));
            }
        }
        if let Some(StopSpec::Many(v)) = self.stop {
            if v.len() > 4 {
                return Err(ApiError::invalid(
                    "stop",
                    "`stop` accepts at most 4 sequences.",
                ));
            }
        }
        Ok(())
    }
}

fn range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::invalid(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}."),
        )),
        _ => Ok(()),
    }
}

/// Validates a raw completion request and returns its prompts (a string or a list of strings).
pub fn validate_completion(req: &CompletionRequest) -> Result<Vec<String>, ApiError> {
    let prompts = match &req.prompt {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid(
                    "prompt",
                    "`prompt` must be a string or a list of strings (token arrays are not supported).",
                )
            })?,
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` must be a string or a non-empty list of strings.",
            ))
        }
    };
    Sampling {
        n: req.n,
        temperature: req.temperature,
        top_p: req.top_p,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.as_ref(),
        stop: req.stop.as_ref(),
    }
    .check()?;
    if req.max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens",
            "`max_tokens` must be at least 1.",
        ));
    }
    let total = prompts.len() as u64 * u64::from(req.n.unwrap_or(1));
    if total > u64::from(MAX_N) {
        return Err(ApiError::invalid(
            "n",
            format!("At most {MAX_N} choices per request (prompts × n)."),
        ));
    }
    Ok(prompts)
}
