//! Renders a chat request into a model's prompt.

use serde_json::{Map, Value as Json};
use std::sync::Arc;

use super::chat::ChatTemplate;
use super::env::Clock;
use super::error::TemplateError;
use super::normalize::{normalize_request, CallIdStyle, NormalizeOptions, TemplateInput};
use super::protect::{Protector, RenderedPrompt};
use super::source::ModelTemplateInfo;
use crate::registry::Family;
use crate::request::{ChatRequest, Message, PromptEnd, ReasoningControl, Role, Tool, ToolCall};

/// Context variables a request's `chat_template_kwargs` cannot override.
const RESERVED: &[&str] = &["messages", "tools", "add_generation_prompt"];

/// A model's compiled template(s) plus the family's input rules; renders requests.
#[derive(Debug, Clone)]
pub struct PromptRenderer {
    info: ModelTemplateInfo,
    default: Option<Arc<ChatTemplate>>,
    tool_use: Option<Arc<ChatTemplate>>,
    options: NormalizeOptions,
    protector: Protector,
    /// The reasoning settings of requests that ask for none (`callm serve --reasoning-effort`).
    default_reasoning: ReasoningControl,
}

/// The argument key of the probe call (see [`PromptRenderer::wants_text_arguments`]).
const PROBE_KEY: &str = "callm_probe_key";

/// Whether the template text refers to role `role` as a string literal.
fn mentions_role(src: &str, role: &str) -> bool {
    src.contains(&format!("'{role}'")) || src.contains(&format!("\"{role}\""))
}

/// The normalization a template needs, from its text and the family.
pub fn options_for(template: &str, family: Option<&Family>) -> NormalizeOptions {
    let mut opts = NormalizeOptions::default();
    let mistral_ids = family.is_some_and(|f| f.id_style() == crate::parsers::IdStyle::Mistral9);
    if template.contains("length != 9") || mistral_ids {
        opts.call_ids = CallIdStyle::Alnum9;
    }
    if template.contains("only supports single tool-calls") {
        opts.split_parallel_calls = true;
    }
    // Phi-4-mini's template prints `message['tools']` of the system message.
    if template.contains("message['tools']") || template.contains("message.tools") {
        opts.tools_in_system = true;
    }
    if let Some(f) = family {
        if f.tool_role != "tool"
            && !mentions_role(template, "tool")
            && mentions_role(template, &f.tool_role)
        {
            opts.tool_role = Some(f.tool_role.clone());
        }
    }
    opts
}

impl PromptRenderer {
    /// Compiles the model's templates for `family` (its id, role and split rules).
    pub fn new(info: ModelTemplateInfo, family: Option<&Family>) -> Result<Self, TemplateError> {
        Self::with_clock(info, family, Clock::Local)
    }

    /// [`Self::new`] with the templates' `strftime_now` reading `clock` (a pinned date gives
    /// reproducible prompts for templates that print today's date).
    pub fn with_clock(
        info: ModelTemplateInfo,
        family: Option<&Family>,
        clock: Clock,
    ) -> Result<Self, TemplateError> {
        let default = match info.select(false) {
            Ok(src) => Some(ChatTemplate::compile_with(src, clock)?),
            Err(e) if info.templates.is_empty() => return Err(e),
            Err(_) => None,
        };
        let tool_use = match info.select(true) {
            Ok(src) => Some(ChatTemplate::compile_with(src, clock)?),
            Err(_) => None,
        };
        let src = tool_use
            .as_ref()
            .or(default.as_ref())
            .map(|t| t.source())
            .unwrap_or("");
        let options = options_for(src, family);
        let mut tokens: Vec<String> = Vec::new();
        tokens.extend(info.bos_token.iter().cloned());
        tokens.extend(info.eos_token.iter().cloned());
        let mut renderer = PromptRenderer {
            info,
            default,
            tool_use,
            options,
            protector: Protector::new(tokens),
            default_reasoning: ReasoningControl::default(),
        };
        renderer.options.text_arguments = renderer.wants_text_arguments();
        Ok(renderer)
    }

    /// Whether the template needs call arguments as JSON text: it fails on, or does not
    /// print, arguments given as a mapping, and prints them given as text (Functionary v3.2
    /// writes `'\n' + tool_call['function']['arguments']`). Decided once, by rendering a
    /// probe conversation both ways. A template that stops at a render limit on the first
    /// probe (a hostile one: the render worker's time limit, say) is not rendered a second
    /// time: the load goes on, and its requests get the same error.
    fn wants_text_arguments(&self) -> bool {
        let probe = probe_request();
        let prints_arguments = |text_arguments: bool| {
            let opts = NormalizeOptions {
                text_arguments,
                ..self.options.clone()
            };
            let input = normalize_request(&probe, &opts);
            match self.render_input(input, &Map::new(), true) {
                Ok(p) => Ok(p.text.contains(PROBE_KEY)),
                Err(e @ TemplateError::Limit(_)) => Err(e),
                Err(_) => Ok(false),
            }
        };
        let decided = prints_arguments(false)
            .and_then(|as_mapping| Ok(!as_mapping && prints_arguments(true)?));
        decided.unwrap_or_else(|e| {
            tracing::warn!(
                "the chat template stopped at a render limit on a probe conversation while \
                 loading ({e}); requests it renders the same way will fail"
            );
            false
        })
    }

    /// Protects these control-token strings (besides bos/eos) in request text.
    pub fn with_protected_tokens<I, S>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all: Vec<String> = tokens.into_iter().map(Into::into).collect();
        all.extend(self.info.bos_token.iter().cloned());
        all.extend(self.info.eos_token.iter().cloned());
        self.protector = Protector::new(all);
        self
    }

    /// Renders requests that ask nothing of the reasoning (neither thinking on or off nor an
    /// effort level) with `control`; a request that asks anything keeps its own settings.
    pub fn set_default_reasoning(&mut self, control: ReasoningControl) {
        self.default_reasoning = control;
    }

    /// Protects every added token of `tok` (special or not) in request text.
    pub fn with_tokenizer(self, tok: &tokenizers::Tokenizer) -> Self {
        let tokens: Vec<String> = tok
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect();
        self.with_protected_tokens(tokens)
    }

    /// The normalization rules in force.
    pub fn options(&self) -> &NormalizeOptions {
        &self.options
    }

    /// Overrides the normalization rules.
    pub fn set_options(&mut self, options: NormalizeOptions) {
        self.options = options;
    }

    /// The template info this renderer was built from.
    pub fn info(&self) -> &ModelTemplateInfo {
        &self.info
    }

    /// Renders `req` ending as it asks: with the generation prompt (the usual case), the
    /// conversation as it is, or the final assistant message left open to be continued.
    pub fn render(&self, req: &ChatRequest) -> Result<RenderedPrompt, TemplateError> {
        match req.prompt_end {
            PromptEnd::GenerationPrompt => self.render_with(req, true),
            PromptEnd::Conversation => self.render_with(req, false),
            PromptEnd::ContinueFinal => {
                // As transformers does it: render with a tag after the final message's text,
                // then cut at the tag.
                let mut tagged = req.clone();
                if let Some(last) = tagged.messages.last_mut() {
                    last.content
                        .get_or_insert_with(String::new)
                        .push_str(CONTINUE_TAG);
                }
                continue_final(self.render_with(&tagged, false)?)
            }
        }
    }

    /// Renders `req`; when the template raises on parallel calls in history, retries with
    /// one call per assistant message.
    pub fn render_with(
        &self,
        req: &ChatRequest,
        add_generation_prompt: bool,
    ) -> Result<RenderedPrompt, TemplateError> {
        let input = normalize_request(req, &self.options);
        let control = if req.reasoning == ReasoningControl::default() {
            self.default_reasoning
        } else {
            req.reasoning
        };
        let kwargs =
            &super::thinking::with_reasoning(&req.template_kwargs, control, |v| self.reads(v));
        match self.render_input(input, kwargs, add_generation_prompt) {
            Err(TemplateError::Raised(msg))
                if !self.options.split_parallel_calls && has_parallel_calls(req) =>
            {
                let mut opts = self.options.clone();
                opts.split_parallel_calls = true;
                let input = normalize_request(req, &opts);
                self.render_input(input, kwargs, add_generation_prompt)
                    .map_err(|e| match e {
                        TemplateError::Raised(_) => TemplateError::Raised(msg),
                        other => other,
                    })
            }
            other => other,
        }
    }

    /// Whether one of the model's templates reads the context variable `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.default
            .iter()
            .chain(&self.tool_use)
            .any(|t| t.reads(name))
    }

    /// Renders already-normalized input with extra context variables.
    pub fn render_input(
        &self,
        mut input: TemplateInput,
        kwargs: &Map<String, Json>,
        add_generation_prompt: bool,
    ) -> Result<RenderedPrompt, TemplateError> {
        let template = match (&input.tools, &self.tool_use, &self.default) {
            (Some(_), Some(t), _) => t,
            (_, _, Some(t)) => t,
            (_, Some(t), None) => t,
            (_, None, None) => {
                return Err(TemplateError::Missing("no usable chat template".into()))
            }
        };
        let mut messages = Json::Array(std::mem::take(&mut input.messages));
        let mut tools = input.tools.take().map(Json::Array).unwrap_or(Json::Null);
        let mut extra = Json::Object(
            kwargs
                .iter()
                .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let restorer = self
            .protector
            .protect(&mut [&mut messages, &mut tools, &mut extra])?;

        let mut ctx = Map::new();
        if let Json::Object(extra) = extra {
            ctx.extend(extra);
        }
        ctx.insert("messages".into(), messages);
        // transformers passes `tools=None` when there are none: defined, but none.
        ctx.insert("tools".into(), tools);
        ctx.entry("documents").or_insert(Json::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(add_generation_prompt),
        );
        for (key, tok) in [
            ("bos_token", &self.info.bos_token),
            ("eos_token", &self.info.eos_token),
        ] {
            if !ctx.contains_key(key) {
                ctx.insert(key.into(), Json::String(tok.clone().unwrap_or_default()));
            }
        }
        let text = template.render_json(&ctx)?;
        Ok(match restorer {
            Some(r) => r.restore(&text),
            None => RenderedPrompt::plain(text),
        })
    }
}

/// A call with its result: what [`PromptRenderer::wants_text_arguments`] renders.
fn probe_request() -> ChatRequest {
    let id = "probe0001".to_string();
    ChatRequest {
        messages: vec![
            Message::text(Role::User, "probe"),
            Message {
                role: Role::Assistant,
                tool_calls: vec![ToolCall {
                    id: id.clone(),
                    name: "get_weather".into(),
                    arguments: serde_json::json!({ PROBE_KEY: "x" }),
                }],
                ..Default::default()
            },
            Message {
                tool_call_id: Some(id),
                ..Message::text(Role::Tool, "probe")
            },
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Get the weather.".into()),
            parameters: Some(serde_json::json!({"type": "object", "properties": {}})),
            strict: None,
        }],
        ..Default::default()
    }
}

/// The tag transformers appends to the final message to find where its text ends.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Cuts the rendered conversation where the tagged final message's text ends, as
/// transformers' `continue_final_message` does: at the last tag, and when the template did
/// not keep the tag's trailing space (it trimmed the content), without trailing whitespace.
fn continue_final(mut prompt: RenderedPrompt) -> Result<RenderedPrompt, TemplateError> {
    let Some(at) = prompt.text.rfind(CONTINUE_TAG.trim_end()) else {
        return Err(TemplateError::Request(
            "the final assistant message cannot be continued: the chat template does not \
             render its text"
                .into(),
        ));
    };
    let cut = if prompt.text[at..].starts_with(CONTINUE_TAG) {
        at
    } else {
        prompt.text[..at].trim_end().len()
    };
    prompt.text.truncate(cut);
    prompt.protected.retain(|r| r.start < cut);
    for r in &mut prompt.protected {
        r.end = r.end.min(cut);
    }
    Ok(prompt)
}

fn has_parallel_calls(req: &ChatRequest) -> bool {
    req.messages.iter().any(|m| m.tool_calls.len() > 1)
}
