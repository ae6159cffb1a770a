//! Turning a chat request into what the engine runs: the prompt ids (with a forced
//! tool-call opening where `tool_choice` demands one), generation parameters, the answer's
//! grammar and parse options. Only what needs the loaded model is judged here (template,
//! grammar compilation); the request itself was judged at its edge (`crate::request`).

use super::budget::ReasoningBudget;
use super::limits;
use super::types::ChatError;
use crate::constrain::{ConstrainError, Constraint, GrammarSpec, Thinking, ToolMode};
use crate::engine::{GenerateParams, SamplingParams};
use crate::openai as wire;
use crate::parsers::{AnswerStream, ParseOptions, Reasoning, ReasoningSplitter};
use crate::request::{ChatRequest, ResponseFormat, Sampling, Tool, ToolChoice};
use crate::runtime::LoadedModel;
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
    /// At most this many calls (named choice, `parallel_tool_calls: false`, legacy → 1).
    pub max_calls: Option<usize>,
    /// Alternatives per token in logprobs.
    pub top_logprobs: Option<usize>,
    /// What the answer's grammar (in `params.constraint`) was compiled from, to name the
    /// schema at fault when it reaches a limit while generating.
    pub grammar: Option<GrammarSpec>,
    /// A thinking family's reasoning markers, and whether the prompt already opened the block.
    pub reasoning: Option<(Reasoning, bool)>,
}

impl Prepared {
    /// The stream the model's text goes through: the reasoning split off (thinking
    /// families), then the calls parsed (when the request allows them).
    pub fn answer_stream(&self, lm: &LoadedModel) -> AnswerStream {
        let reasoning = self
            .reasoning
            .clone()
            .map(|(r, inside)| ReasoningSplitter::new(r, inside));
        let parser = self.parse.clone().map(|opts| lm.parsers.stream(opts));
        AnswerStream::new(reasoning, parser)
    }
}

/// Most characters of reasoning the grammar allows before a required call or JSON answer,
/// unless the request says otherwise (`max_reasoning_chars`).
pub const DEFAULT_MAX_REASONING_CHARS: usize = 8192;

/// The largest `max_reasoning_chars` honoured (larger values are capped): the bound is a
/// counted repetition in the grammar, whose cost grows with it.
pub const MAX_REASONING_CHARS: usize = 32768;

/// Whether the answer is parsed for calls: the request offers tools and allows a call.
fn parses_calls(req: &ChatRequest) -> bool {
    !req.tools.is_empty() && req.tool_choice != ToolChoice::None
}

/// Parse options for a request, or `None` when its output is plain text.
pub fn parse_plan(lm: &LoadedModel, req: &ChatRequest) -> Option<ParseOptions> {
    parses_calls(req).then(|| parse_options(lm, &req.tools))
}

/// The request's tools as the tool-format layer (parsers, grammars) reads them.
fn wire_tools(tools: &[Tool]) -> Vec<wire::Tool> {
    tools
        .iter()
        .map(|t| {
            wire::Tool::function(wire::FunctionDefinition {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
                strict: t.strict,
            })
        })
        .collect()
}

/// Parse options for the request's tools in the family's id style. Call ids are never
/// seeded from the request: they must stay unique across requests that share a seed.
fn parse_options(lm: &LoadedModel, tools: &[Tool]) -> ParseOptions {
    ParseOptions {
        tools: Some(wire_tools(tools)),
        id_style: Some(lm.parsers.id_style()),
        id_seed: None,
    }
}

/// Prepares choice number `choice` of `req` (its seed is offset by `choice`).
pub fn prepare(lm: &LoadedModel, req: &ChatRequest, choice: u32) -> Result<Prepared, ChatError> {
    // The messages' text alone over the limit: refused before rendering (the prompt holds it all).
    let text_bytes = req
        .messages
        .iter()
        .map(|m| m.content.as_ref().map_or(0, String::len))
        .fold(0usize, usize::saturating_add);
    limits::check_prompt_bytes(lm, text_bytes, "messages")?;
    // tool_choice "none" hides the tools from the prompt: the model cannot decide to call.
    let hidden;
    let to_render = if req.tool_choice == ToolChoice::None && !req.tools.is_empty() {
        hidden = ChatRequest {
            tools: Vec::new(),
            ..req.clone()
        };
        &hidden
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
    let reasoning = lm
        .family
        .reasoning
        .as_ref()
        .map(|r| (r.clone(), r.opened_by(&rendered.text)));
    // A thinking model reasons first: the grammar allows its block, so nothing is forced
    // after the prompt, unless the template already closed the block (thinking off).
    let thinking = reasoning
        .as_ref()
        .filter(|(r, _)| !r.closed_by(&rendered.text))
        .map(|(r, inside)| Thinking {
            open: r.open.clone(),
            close: r.close.clone(),
            max_chars: req
                .limits
                .max_reasoning_chars
                .map_or(DEFAULT_MAX_REASONING_CHARS, |n| {
                    (n as usize).min(MAX_REASONING_CHARS)
                }),
            started: *inside,
        });
    let forced = match &req.tool_choice {
        _ if thinking.is_some() => String::new(),
        ToolChoice::Required => lm.parsers.format().def().required_opening(),
        ToolChoice::Named(n) => lm.parsers.format().def().named_opening(n),
        _ if req.response_format == ResponseFormat::JsonObject => "{".to_string(),
        _ => String::new(),
    };
    let prompt = RenderedPrompt {
        text: format!("{}{forced}", rendered.text),
        protected: rendered.protected,
    };
    limits::check_prompt_bytes(lm, prompt.text.len(), "messages")?;
    limits::check_logit_bias(&req.sampling, limits::vocabulary(lm))?;
    let prompt_ids = crate::template::encode_prompt(lm.tokenizer.inner(), &prompt)
        .map_err(|e| ChatError::Internal(e.to_string()))?;
    let mut params = lm.default_params();
    params.sampling = sampling_params(&req.sampling, choice);
    params.max_tokens = req.limits.max_tokens.map(|n| n as usize);
    params.stop_strings.extend(req.stop.iter().cloned());
    let top_logprobs = req.limits.logprobs.map(usize::from);
    params.top_logprobs = top_logprobs;
    let parse = parses_calls(req).then(|| parse_options(lm, &req.tools));
    let max_calls = req.single_call().then_some(1);
    let (compiled, grammar) = constraint(lm, req, max_calls, thinking.as_ref(), &forced)?;
    params.constraint = compiled;
    params.steer = match (&thinking, req.limits.max_reasoning_tokens) {
        (Some(t), Some(max)) => Some(reasoning_budget(lm, t, max)?.steer()),
        _ => None,
    };
    Ok(Prepared {
        prompt_ids,
        forced,
        params,
        parse,
        max_calls,
        top_logprobs,
        grammar,
        reasoning,
    })
}

/// The cap of `max` tokens on the answer's reasoning block `t`: once reached, the close
/// marker is fed as the family's templates write it after reasoning (`\n</think>\n\n`).
fn reasoning_budget(
    lm: &LoadedModel,
    t: &Thinking,
    max: u32,
) -> Result<ReasoningBudget, ChatError> {
    let close_ids = lm
        .tokenizer
        .encode(&format!("\n{}\n\n", t.close), false)
        .map_err(|e| ChatError::Internal(e.to_string()))?;
    Ok(ReasoningBudget {
        markers: Reasoning {
            open: t.open.clone(),
            close: t.close.clone(),
        },
        started: t.started,
        max_tokens: max as usize,
        close_ids,
    })
}

/// The grammar the answer must follow: calls for `required`/named (and, once opened, in
/// `auto`), else the `response_format` JSON, after a thinking model's reasoning block;
/// compiled with the forced answer start consumed, with the spec it was compiled from.
fn constraint(
    lm: &LoadedModel,
    req: &ChatRequest,
    max_calls: Option<usize>,
    thinking: Option<&Thinking>,
    forced: &str,
) -> Result<(Option<Constraint>, Option<GrammarSpec>), ChatError> {
    let tools = &req.tools;
    let tool_spec = |mode| {
        (!tools.is_empty()).then(|| GrammarSpec::Tools {
            format: lm.parsers.format(),
            tools: wire_tools(tools),
            mode,
            parallel: max_calls.is_none(),
        })
    };
    let (spec, best_effort) = match (&req.tool_choice, &req.response_format) {
        (ToolChoice::Required, _) => (tool_spec(ToolMode::Required), false),
        (ToolChoice::Named(n), _) => (tool_spec(ToolMode::Named(n.clone())), false),
        (_, ResponseFormat::JsonObject) => (Some(GrammarSpec::JsonObject), false),
        (_, ResponseFormat::JsonSchema { schema, strict }) => (
            Some(GrammarSpec::JsonSchema {
                schema: schema.clone(),
                strict: *strict,
            }),
            false,
        ),
        (ToolChoice::Auto, ResponseFormat::Text) => {
            let strict = tools.iter().any(|t| t.strict == Some(true));
            (tool_spec(ToolMode::Auto), !strict)
        }
        (ToolChoice::None, ResponseFormat::Text) => (None, false),
    };
    let Some(spec) = spec else {
        return Ok((None, None));
    };
    let compiled = lm
        .constraint_engine()
        .and_then(|e| e.compile_with(&spec, thinking, forced));
    match compiled {
        Ok(c) => Ok((Some(c), Some(spec))),
        // Free text with tools: a tool the grammar cannot express leaves the answer unconstrained.
        Err(e) if best_effort => {
            tracing::warn!(error = %e, "tool calls are not constrained for this request");
            Ok((None, None))
        }
        Err(e) => Err(constrain_error(e)),
    }
}

/// A grammar error as the chat pipeline reports it: a client error naming the schema, or
/// the model format's limitation (`tool_choice`), or an internal failure.
pub fn constrain_error(e: ConstrainError) -> ChatError {
    match e {
        ConstrainError::BadRequest { param, message } => ChatError::Invalid {
            message: format!("{param}: {message}"),
            param: Some(param),
        },
        ConstrainError::Unsupported(m) => ChatError::invalid("tool_choice", m),
        e @ ConstrainError::Internal(_) => ChatError::Internal(e.to_string()),
    }
}

/// The engine's sampling parameters for choice number `choice` of a request.
pub fn sampling_params(s: &Sampling, choice: u32) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature.unwrap_or(Sampling::DEFAULT_TEMPERATURE),
        top_p: s.top_p,
        top_k: s.top_k as usize,
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        logit_bias: s.logit_bias.clone(),
        seed: s.seed_for(choice),
        ..SamplingParams::default()
    }
}
