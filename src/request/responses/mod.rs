//! The Responses API front end's edge: a `POST /v1/responses` body (the wire types of
//! `crate::openai::responses`) becomes a [`ChatRequest`] here, and only here.
//!
//! Decisions made here, once: `instructions` (a system message first), input items
//! (messages with text parts; `function_call` items join the assistant message before them;
//! `function_call_output` items are tool results; `reasoning` items are skipped; images,
//! files and hosted-tool items are refused), function tools (`strict` defaults to true, as
//! in the hosted API; hosted tools are refused), `tool_choice`, `parallel_tool_calls`,
//! `max_output_tokens`, sampling ranges, `text.format`, `reasoning` (the effort level; the
//! summary kind checked) with callm's `max_reasoning_tokens` / `max_reasoning_chars`, and
//! what callm does not do
//! (`background`, hosted `conversation` and `prompt`). `previous_response_id` is the
//! server's: it prepends the stored conversation's items before this conversion.

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::openai::responses::{
    ContentPart, InputItem, ItemContent, ReasoningOptions, ResponseInput, ResponseTool,
    ResponseToolChoice, ResponsesRequest,
};
use crate::request::openai::parse_arguments;
use crate::request::{
    ChatRequest, Limits, Message, PromptEnd, ReasoningControl, RequestError, ResponseFormat, Role,
    Sampling, Tool, ToolCall, ToolChoice,
};

impl TryFrom<ResponsesRequest> for ChatRequest {
    type Error = RequestError;

    fn try_from(req: ResponsesRequest) -> Result<Self, RequestError> {
        unsupported(&req)?;
        let mut messages = Vec::new();
        if let Some(instructions) = &req.instructions {
            messages.push(Message::text(Role::System, instructions.clone()));
        }
        let items = req.input.clone().map(ResponseInput::into_items);
        for (i, item) in items.iter().flatten().enumerate() {
            push_item(i, item, &mut messages)?;
        }
        // Reasoning no answer followed: nothing to render.
        messages.retain(|m| !reasoning_only(m));
        if !messages.iter().any(|m| m.role != Role::System) {
            return Err(RequestError::new(
                "input",
                "`input` must contain at least one message or item.",
            ));
        }
        let tools = tools(req.tools.as_deref().unwrap_or_default())?;
        let tool_choice = tool_choice(req.tool_choice.as_ref(), &tools)?;
        if req.max_output_tokens == Some(0) {
            return Err(RequestError::new(
                "max_output_tokens",
                "`max_output_tokens` must be at least 1.",
            ));
        }
        let request = ChatRequest {
            messages,
            tools,
            tool_choice,
            legacy_function_call: false,
            response_format: text_format(req.text.as_ref().and_then(|t| t.format.as_ref()))?,
            sampling: sampling(&req)?,
            stop: Vec::new(),
            limits: Limits {
                max_tokens: req.max_output_tokens,
                n: 1,
                logprobs: None,
                parallel_tool_calls: req.parallel_tool_calls != Some(false),
                max_reasoning_chars: req.max_reasoning_chars,
                max_reasoning_tokens: req.max_reasoning_tokens,
            },
            template_kwargs: Default::default(),
            reasoning: reasoning(req.reasoning.as_ref())?,
            prompt_end: PromptEnd::GenerationPrompt,
        };
        Ok(request)
    }
}

impl ResponseInput {
    /// The input as items (a string is one user message).
    pub fn into_items(self) -> Vec<InputItem> {
        match self {
            ResponseInput::Text(text) => vec![InputItem {
                role: Some("user".into()),
                content: Some(ItemContent::Text(text)),
                ..Default::default()
            }],
            ResponseInput::Items(items) => items,
        }
    }
}

/// Summaries a request may ask for.
const SUMMARIES: [&str; 3] = ["auto", "concise", "detailed"];

/// `reasoning`: the effort level; a summary kind is checked (callm's reasoning item carries
/// the reasoning itself, with an empty summary).
fn reasoning(r: Option<&ReasoningOptions>) -> Result<ReasoningControl, RequestError> {
    let Some(r) = r else {
        return Ok(ReasoningControl::default());
    };
    if let Some(s) = r.summary.as_deref() {
        if !SUMMARIES.contains(&s) {
            return Err(RequestError::new(
                "reasoning.summary",
                format!(
                    "Invalid value '{s}' for reasoning.summary: expected one of {}.",
                    SUMMARIES.join(", ")
                ),
            ));
        }
    }
    ReasoningControl::from_effort("reasoning.effort", r.effort.as_deref())
}

/// What callm refuses outright: background runs and hosted state other than stored responses.
fn unsupported(req: &ResponsesRequest) -> Result<(), RequestError> {
    if req.background == Some(true) {
        return Err(RequestError::new(
            "background",
            "Background mode is not supported: callm answers within the request (use `stream` for long answers).",
        ));
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(RequestError::new(
            "conversation",
            "Hosted conversations are not supported: continue with `previous_response_id`, or send the whole `input`.",
        ));
    }
    if req.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(RequestError::new(
            "prompt",
            "Hosted prompt templates are not supported: send `instructions` and `input`.",
        ));
    }
    Ok(())
}

/// The text of content parts (`input_text`, `output_text`, `refusal`); `what` names the item
/// kind in errors.
fn content_text(param: &str, content: &ItemContent) -> Result<String, RequestError> {
    let parts: &[ContentPart] = match content {
        ItemContent::Text(t) => return Ok(t.clone()),
        ItemContent::Parts(parts) => parts,
    };
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        let here = format!("{param}[{j}]");
        match p.kind.as_str() {
            "input_text" | "output_text" | "text" => match &p.text {
                Some(t) => text.push_str(t),
                None => {
                    return Err(RequestError::new(
                        format!("{here}.text"),
                        format!("A '{}' part needs a `text` string.", p.kind),
                    ))
                }
            },
            "refusal" => text.push_str(p.refusal.as_deref().unwrap_or_default()),
            kind @ ("input_image" | "input_file" | "input_audio") => {
                return Err(RequestError::new(
                    format!("{here}.type"),
                    format!("Content parts of type '{kind}' are not supported: this model reads text only."),
                ))
            }
            kind => {
                return Err(RequestError::new(
                    format!("{here}.type"),
                    format!("Unsupported content part type '{kind}'."),
                ))
            }
        }
    }
    Ok(text)
}

fn required<'a>(param: String, v: &'a Option<String>, what: &str) -> Result<&'a str, RequestError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RequestError::new(param, format!("{what} is required.")))
}

/// One input item → domain messages (a call joins the assistant message just before it).
fn push_item(i: usize, item: &InputItem, out: &mut Vec<Message>) -> Result<(), RequestError> {
    let param = format!("input[{i}]");
    match item.kind.as_deref().unwrap_or("message") {
        "message" => {
            let role = match item.role.as_deref() {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system" | "developer") => Role::System,
                other => {
                    return Err(RequestError::new(
                        format!("{param}.role"),
                        format!(
                            "Invalid value '{}' for {param}.role: expected one of user, assistant, system, developer.",
                            other.unwrap_or("")
                        ),
                    ))
                }
            };
            let text = match &item.content {
                Some(c) => content_text(&format!("{param}.content"), c)?,
                None => {
                    return Err(RequestError::new(
                        format!("{param}.content"),
                        "A message item needs `content`.",
                    ))
                }
            };
            match out.last_mut() {
                // The answer a reasoning item (just before) belongs to.
                Some(m) if role == Role::Assistant && reasoning_only(m) => m.content = Some(text),
                _ => out.push(Message::text(role, text)),
            }
        }
        "function_call" => {
            let call = ToolCall {
                id: required(format!("{param}.call_id"), &item.call_id, "`call_id`")?.to_string(),
                name: required(format!("{param}.name"), &item.name, "`name`")?.to_string(),
                arguments: parse_arguments(item.arguments.as_deref().unwrap_or_default()),
            };
            match out.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                _ => out.push(Message {
                    role: Role::Assistant,
                    tool_calls: vec![call],
                    ..Default::default()
                }),
            }
        }
        "function_call_output" => {
            let id = required(format!("{param}.call_id"), &item.call_id, "`call_id`")?;
            let text = match &item.output {
                Some(o) => content_text(&format!("{param}.output"), o)?,
                None => {
                    return Err(RequestError::new(
                        format!("{param}.output"),
                        "A function_call_output item needs `output`.",
                    ))
                }
            };
            out.push(Message {
                role: Role::Tool,
                content: Some(text),
                tool_call_id: Some(id.to_string()),
                ..Default::default()
            });
        }
        // Reasoning callm answered (`reasoning_text` parts) goes back to the template with the
        // answer it came with; summaries and encrypted reasoning of another model are skipped.
        "reasoning" => {
            let text: String = match &item.content {
                Some(ItemContent::Parts(parts)) => parts
                    .iter()
                    .filter(|p| p.kind == "reasoning_text")
                    .filter_map(|p| p.text.as_deref())
                    .collect(),
                _ => String::new(),
            };
            if !text.is_empty() {
                out.push(Message {
                    role: Role::Assistant,
                    reasoning_content: Some(text),
                    ..Default::default()
                });
            }
        }
        kind => {
            return Err(RequestError::new(
                format!("{param}.type"),
                format!("Input items of type '{kind}' are not supported: callm runs function tools only, and keeps no items but stored responses."),
            ))
        }
    }
    Ok(())
}

/// An assistant message holding only a reasoning item's text (its answer comes next).
fn reasoning_only(m: &Message) -> bool {
    m.role == Role::Assistant
        && m.reasoning_content.is_some()
        && m.content.is_none()
        && m.tool_calls.is_empty()
}

fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn tools(defs: &[ResponseTool]) -> Result<Vec<Tool>, RequestError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, t) in defs.iter().enumerate() {
        if t.kind != "function" {
            return Err(RequestError::new(
                format!("tools[{i}].type"),
                format!(
                    "Hosted tools ('{}') are not supported: callm runs no tools itself; declare function tools.",
                    t.kind
                ),
            ));
        }
        let name = t.name.clone().unwrap_or_default();
        if !valid_function_name(&name) {
            return Err(RequestError::new(
                format!("tools[{i}].name"),
                format!("Invalid function name '{name}': use 1 to 64 letters, digits, underscores, dots or dashes."),
            ));
        }
        if t.parameters
            .as_ref()
            .is_some_and(|p| !p.is_object() && !p.is_null())
        {
            return Err(RequestError::new(
                format!("tools[{i}].parameters"),
                "Function `parameters` must be a JSON Schema object.",
            ));
        }
        out.push(Tool {
            name,
            description: t.description.clone(),
            parameters: t.parameters.clone().filter(|p| !p.is_null()),
            strict: Some(t.strict.unwrap_or(true)),
        });
    }
    Ok(out)
}

fn tool_choice(
    choice: Option<&ResponseToolChoice>,
    tools: &[Tool],
) -> Result<ToolChoice, RequestError> {
    match choice {
        None => Ok(ToolChoice::Auto),
        Some(ResponseToolChoice::Mode(m)) => match m.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" if tools.is_empty() => Err(RequestError::new(
                "tool_choice",
                "`tool_choice` 'required' needs at least one function in `tools`.",
            )),
            "required" => Ok(ToolChoice::Required),
            other => Err(RequestError::new(
                "tool_choice",
                format!("Invalid value '{other}' for tool_choice: expected 'none', 'auto', 'required' or a function."),
            )),
        },
        Some(ResponseToolChoice::Object(o)) if o.kind == "function" => {
            let name = o.name.clone().unwrap_or_default();
            if tools.iter().any(|t| t.name == name) {
                Ok(ToolChoice::Named(name))
            } else {
                Err(RequestError::new(
                    "tool_choice.name",
                    format!("`tool_choice` names the function '{name}', which is not declared in `tools`."),
                ))
            }
        }
        Some(ResponseToolChoice::Object(o)) => Err(RequestError::new(
            "tool_choice.type",
            format!("`tool_choice` of type '{}' is not supported: only function tools are.", o.kind),
        )),
    }
}

fn range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), RequestError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(RequestError::new(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}."),
        )),
        _ => Ok(()),
    }
}

fn sampling(req: &ResponsesRequest) -> Result<Sampling, RequestError> {
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    if req.top_p == Some(0.0) {
        return Err(RequestError::new(
            "top_p",
            "`top_p` must be greater than 0, got 0.",
        ));
    }
    Ok(Sampling {
        temperature: req.temperature,
        top_p: req.top_p.unwrap_or(1.0),
        ..Sampling::default()
    })
}

/// `text.format` → the answer's format.
fn text_format(format: Option<&Value>) -> Result<ResponseFormat, RequestError> {
    let Some(f) = format.filter(|f| !f.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => match f.get("schema") {
            Some(schema @ (Value::Object(_) | Value::Bool(_))) => Ok(ResponseFormat::JsonSchema {
                schema: schema.clone(),
                strict: f.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }),
            _ => Err(RequestError::new(
                "text.format.schema",
                "`text.format.schema` must be a JSON Schema object.",
            )),
        },
        _ => Err(RequestError::new(
            "text.format.type",
            "`text.format.type` must be 'text', 'json_object' or 'json_schema'.",
        )),
    }
}
