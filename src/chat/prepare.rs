//! Turning an OpenAI chat request into what the engine runs: the prompt ids (with a forced
//! tool-call opening where `tool_choice` demands one), generation parameters and parse options.

use serde_json::Value;

use super::ChatError;
use crate::constrain::{ConstrainError, Constraint, GrammarSpec, ToolMode};
use crate::engine::{GenerateParams, LoadedModel, SamplingParams};
use crate::openai::{ChatCompletionRequest, Tool, ToolChoice};
use crate::parsers::ParseOptions;
use crate::template::RenderedPrompt;

/// Everything needed to run one choice.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Prompt token ids, including the forced text.
    pub prompt_ids: Vec<u32>,
    /// Text forced after the generation prompt (part of the model's answer).
    pub forced: String,
    /// Generation parameters.
    pub params: GenerateParams,
    /// Parse options when tool calls are to be parsed.
    pub parse: Option<ParseOptions>,
    /// The request used legacy `functions`.
    pub legacy_functions: bool,
    /// At most this many calls (`parallel_tool_calls: false` → 1).
    pub max_calls: Option<usize>,
    /// Alternatives per token in logprobs.
    pub top_logprobs: Option<usize>,
}

/// The tool choice after legacy mapping.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The tools of a request: `tools`, else legacy `functions` (flagged).
fn request_tools(req: &ChatCompletionRequest) -> (Option<Vec<Tool>>, bool) {
    match (&req.tools, &req.functions) {
        (Some(t), _) if !t.is_empty() => (Some(t.clone()), false),
        (_, Some(f)) if !f.is_empty() => {
            (Some(f.iter().cloned().map(Tool::function).collect()), true)
        }
        _ => (None, false),
    }
}

fn tool_choice(req: &ChatCompletionRequest, legacy: bool) -> Result<Choice, ChatError> {
    if let Some(tc) = &req.tool_choice {
        return match tc {
            ToolChoice::Mode(m) => match m.as_str() {
                "none" => Ok(Choice::None),
                "auto" => Ok(Choice::Auto),
                "required" => Ok(Choice::Required),
                other => Err(ChatError::bad("tool_choice", format!("tool_choice must be \"none\", \"auto\", \"required\" or a named function, got \"{other}\""))),
            },
            ToolChoice::Named(n) => Ok(Choice::Named(n.function.name.clone())),
        };
    }
    if legacy {
        if let Some(fc) = &req.function_call {
            return match fc {
                Value::String(s) if s == "none" => Ok(Choice::None),
                Value::String(s) if s == "auto" => Ok(Choice::Auto),
                Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                    Some(n) => Ok(Choice::Named(n.to_string())),
                    None => Err(ChatError::bad(
                        "function_call",
                        "function_call object needs a \"name\"",
                    )),
                },
                _ => Err(ChatError::bad(
                    "function_call",
                    "function_call must be \"none\", \"auto\" or {\"name\": ...}",
                )),
            };
        }
    }
    Ok(Choice::Auto)
}

/// Parse options for a request, or `None` when its output is plain text.
pub fn parse_plan(
    lm: &LoadedModel,
    req: &ChatCompletionRequest,
) -> Result<Option<ParseOptions>, ChatError> {
    let (tools, legacy) = request_tools(req);
    let choice = tool_choice(req, legacy)?;
    Ok(match (tools, choice) {
        (None, _) | (_, Choice::None) => None,
        (Some(tools), _) => Some(parse_options(lm, tools)),
    })
}

/// Parse options for the request's tools in the family's id style. Call ids are never
/// seeded from the request: they must stay unique across requests that share a seed.
fn parse_options(lm: &LoadedModel, tools: Vec<Tool>) -> ParseOptions {
    ParseOptions {
        tools: Some(tools),
        id_style: Some(lm.parsers.id_style()),
        id_seed: None,
    }
}

/// Prepares choice number `choice` of `req` (its seed is offset by `choice`).
pub fn prepare(
    lm: &LoadedModel,
    req: &ChatCompletionRequest,
    choice: u32,
) -> Result<Prepared, ChatError> {
    if req.messages.is_empty() {
        return Err(ChatError::bad("messages", "messages must not be empty"));
    }
    let (tools, legacy) = request_tools(req);
    let choice_mode = tool_choice(req, legacy)?;
    if let Choice::Named(n) = &choice_mode {
        if !tools
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| &t.function.name == n))
        {
            return Err(ChatError::bad(
                "tool_choice",
                format!(
                    "tool_choice names function \"{n}\", which is not among the request's tools"
                ),
            ));
        }
    }
    if choice_mode == Choice::Required && tools.is_none() {
        return Err(ChatError::bad(
            "tool_choice",
            "tool_choice \"required\" needs at least one tool",
        ));
    }
    // tool_choice "none" hides the tools from the prompt: the model cannot decide to call.
    let render_req;
    let to_render = if choice_mode == Choice::None && tools.is_some() {
        render_req = ChatCompletionRequest {
            tools: None,
            functions: None,
            tool_choice: None,
            function_call: None,
            ..req.clone()
        };
        &render_req
    } else {
        req
    };
    let rendered = lm.renderer.render(to_render).map_err(|e| {
        if e.is_client_error() {
            ChatError::Template(e.to_string())
        } else {
            ChatError::Internal(e.to_string())
        }
    })?;
    let format = response_format(req)?;
    let forced = match &choice_mode {
        Choice::Required => lm.parsers.format().def().required_opening(),
        Choice::Named(n) => lm.parsers.format().def().named_opening(n),
        _ if format == Format::JsonObject => "{".to_string(),
        _ => String::new(),
    };
    let prompt = RenderedPrompt {
        text: format!("{}{forced}", rendered.text),
        protected: rendered.protected,
    };
    let prompt_ids = crate::template::encode_prompt(lm.tokenizer.inner(), &prompt)
        .map_err(|e| ChatError::Internal(e.to_string()))?;
    if prompt_ids.len() >= lm.context {
        return Err(ChatError::ContextLength {
            prompt: prompt_ids.len(),
            context: lm.context,
        });
    }
    let mut params = lm.default_params();
    params.sampling = sampling_params(
        SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias.as_ref(),
            seed: req.seed,
        },
        choice,
    )?;
    params.max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => {
            return Err(ChatError::bad(
                "max_tokens",
                "max_tokens must be at least 1",
            ))
        }
        Some(n) => Some(n as usize),
        None => None,
    };
    if let Some(stop) = &req.stop {
        params
            .stop_strings
            .extend(stop.to_vec().into_iter().filter(|s| !s.is_empty()));
    }
    let top_logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), k) => Some(k.unwrap_or(0).min(20) as usize),
        (_, Some(_)) => {
            return Err(ChatError::bad(
                "top_logprobs",
                "top_logprobs requires logprobs: true",
            ))
        }
        _ => None,
    };
    params.top_logprobs = top_logprobs;
    let parse = match (&tools, &choice_mode) {
        (None, _) | (_, Choice::None) => None,
        (Some(t), _) => Some(parse_options(lm, t.clone())),
    };
    let max_calls = match (&choice_mode, req.parallel_tool_calls, legacy) {
        (Choice::Named(_), _, _) | (_, Some(false), _) | (_, _, true) => Some(1),
        _ => None,
    };
    params.constraint = constraint(
        lm,
        tools.as_deref(),
        &choice_mode,
        max_calls,
        format,
        &forced,
    )?;
    Ok(Prepared {
        prompt_ids,
        forced,
        params,
        parse,
        legacy_functions: legacy,
        max_calls,
        top_logprobs,
    })
}

/// What `response_format` asks for.
#[derive(Debug, Clone, PartialEq)]
enum Format {
    Text,
    JsonObject,
    JsonSchema { schema: Value, strict: bool },
}

fn response_format(req: &ChatCompletionRequest) -> Result<Format, ChatError> {
    let Some(rf) = req.response_format.as_ref() else {
        return Ok(Format::Text);
    };
    match rf.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(Format::Text),
        Some("json_object") => Ok(Format::JsonObject),
        Some("json_schema") => {
            let js = rf.get("json_schema");
            let strict = js
                .and_then(|j| j.get("strict"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match js.and_then(|j| j.get("schema")) {
                None | Some(Value::Null) => Ok(Format::JsonObject),
                Some(schema @ (Value::Object(_) | Value::Bool(_))) => Ok(Format::JsonSchema {
                    schema: schema.clone(),
                    strict,
                }),
                Some(_) => Err(ChatError::bad(
                    "response_format.json_schema.schema",
                    "response_format.json_schema.schema must be a JSON Schema object",
                )),
            }
        }
        Some(other) => Err(ChatError::bad(
            "response_format",
            format!("response_format type \"{other}\" is not supported (use \"text\", \"json_object\" or \"json_schema\")"),
        )),
    }
}

/// The grammar the answer must follow: calls for `required`/named (and, once opened, in
/// `auto`), else the `response_format` JSON; compiled with the forced answer start consumed.
fn constraint(
    lm: &LoadedModel,
    tools: Option<&[Tool]>,
    choice: &Choice,
    max_calls: Option<usize>,
    format: Format,
    forced: &str,
) -> Result<Option<Constraint>, ChatError> {
    let tool_spec = |mode| {
        tools.map(|t| GrammarSpec::Tools {
            format: lm.parsers.format(),
            tools: t.to_vec(),
            mode,
            parallel: max_calls.is_none(),
        })
    };
    let (spec, best_effort) = match (choice, format) {
        (Choice::Required, _) => (tool_spec(ToolMode::Required), false),
        (Choice::Named(n), _) => (tool_spec(ToolMode::Named(n.clone())), false),
        (_, Format::JsonObject) => (Some(GrammarSpec::JsonObject), false),
        (_, Format::JsonSchema { schema, strict }) => {
            (Some(GrammarSpec::JsonSchema { schema, strict }), false)
        }
        (Choice::Auto, Format::Text) => {
            let strict = tools.is_some_and(|t| t.iter().any(|t| t.function.strict == Some(true)));
            (tool_spec(ToolMode::Auto), !strict)
        }
        (Choice::None, Format::Text) => (None, false),
    };
    let Some(spec) = spec else {
        return Ok(None);
    };
    let compiled = lm
        .constraint_engine()
        .and_then(|e| e.compile(&spec, forced));
    match compiled {
        Ok(c) => Ok(Some(c)),
        // Free text with tools: a tool the grammar cannot express leaves the answer unconstrained.
        Err(e) if best_effort => {
            tracing::warn!(error = %e, "tool calls are not constrained for this request");
            Ok(None)
        }
        Err(ConstrainError::BadRequest { param, message }) => Err(ChatError::BadRequest {
            message: format!("{param}: {message}"),
            param: Some(param),
        }),
        Err(ConstrainError::Unsupported(m)) => Err(ChatError::BadRequest {
            message: m,
            param: Some("tool_choice".into()),
        }),
        Err(e @ ConstrainError::Internal(_)) => Err(ChatError::Internal(e.to_string())),
    }
}

/// The OpenAI sampling fields of a request (shared by chat and raw completions).
#[derive(Debug, Clone, Copy)]
pub struct SamplingFields<'a> {
    /// `temperature` (default 1).
    pub temperature: Option<f32>,
    /// `top_p` (default 1).
    pub top_p: Option<f32>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `logit_bias`: token id strings to biases.
    pub logit_bias: Option<&'a serde_json::Map<String, Value>>,
    /// `seed` (offset by the choice index).
    pub seed: Option<u64>,
}

/// Validated sampling parameters for choice number `choice`.
pub fn sampling_params(f: SamplingFields<'_>, choice: u32) -> Result<SamplingParams, ChatError> {
    let mut logit_bias = vec![];
    for (k, v) in f.logit_bias.into_iter().flatten() {
        let id: u32 = k.parse().map_err(|_| {
            ChatError::bad(
                "logit_bias",
                format!("logit_bias key \"{k}\" is not a token id"),
            )
        })?;
        let b = v.as_f64().ok_or_else(|| {
            ChatError::bad("logit_bias", format!("logit_bias for {k} must be a number"))
        })?;
        logit_bias.push((id, b as f32));
    }
    let p = SamplingParams {
        temperature: f.temperature.unwrap_or(1.0),
        top_p: f.top_p.unwrap_or(1.0),
        presence_penalty: f.presence_penalty.unwrap_or(0.0),
        frequency_penalty: f.frequency_penalty.unwrap_or(0.0),
        logit_bias,
        seed: f.seed.map(|s| s.wrapping_add(choice as u64)),
        ..SamplingParams::default()
    };
    p.validate().map_err(|m| {
        let param = m.split_whitespace().next().unwrap_or("").to_string();
        ChatError::BadRequest {
            message: m,
            param: Some(param),
        }
    })?;
    Ok(p)
}
