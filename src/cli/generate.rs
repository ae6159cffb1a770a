//! `callm generate`: one prompt in, the continuation streamed to stdout, stats on stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::args::{ModelArgs, SamplingArgs, TemplateLimitArgs};
use crate::engine::CancelToken;
use crate::openai::{ChatCompletionRequest, ChatMessage, MessageContent, Tool};
use crate::registry::Registry;
use crate::request::{ChatRequest, Effort};
use crate::runtime::LoadedModel;

/// Arguments of `callm generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The user message (or the raw prompt with --raw).
    #[arg(short, long)]
    prompt: String,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// Tools the model may call: a JSON file with an array of OpenAI tools.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
    max_tokens: usize,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Constrain the answer to JSON valid against this JSON Schema file.
    #[arg(long = "json-schema", value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// How much a thinking model reasons (`none` turns its thinking off; see the README's
    /// "Reasoning").
    #[arg(long, value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(Effort::NAMES))]
    reasoning_effort: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Runs `callm generate`.
pub fn run(args: &GenerateArgs, registry: &Registry) -> anyhow::Result<()> {
    let lm = LoadedModel::load(&args.model.load_options(), registry)?;
    let tools: Option<Vec<Tool>> = match &args.tools {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!("{}: expected a JSON array of OpenAI tools", p.display())
            })?)
        }
        None => None,
    };
    let mut body = chat_request(args.system.as_deref(), &args.prompt, tools);
    body.reasoning_effort = args.reasoning_effort.clone();
    let schema = match &args.json_schema {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: expected a JSON Schema", p.display()))?;
            body.response_format = Some(serde_json::json!({"type": "json_schema",
                "json_schema": {"name": "answer", "schema": v, "strict": true}}));
            Some(v)
        }
        None => None,
    };
    // The same edge as the server's: the tools and schema are judged here.
    let request = ChatRequest::try_from(body)?;
    let (prompt, constraint) = if args.raw {
        let constraint = match schema {
            Some(schema) => Some(lm.constraint_engine()?.compile(
                &crate::constrain::GrammarSpec::JsonSchema {
                    schema,
                    strict: true,
                },
                "",
            )?),
            None => None,
        };
        (lm.tokenizer.encode(&args.prompt, true)?, constraint)
    } else {
        let prep = crate::chat::prepare(&lm, &request, 0)?;
        (prep.prompt_ids, prep.params.constraint)
    };
    let mut params = lm.default_params();
    params.constraint = constraint;
    params.max_tokens = Some(args.max_tokens);
    params.sampling = args.sampling.params();
    params.stop_strings.extend(args.stop.iter().cloned());
    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let stats = lm.generate(&prompt, &params, &CancelToken::new(), &mut |ev| {
        text.push_str(&ev.text);
        // A closed stdout (e.g. `| head`) ends generation instead of failing.
        stdout
            .write_all(ev.text.as_bytes())
            .and_then(|_| stdout.flush())
            .is_ok()
    })?;
    let _ = writeln!(stdout);
    if !args.raw {
        let parsed = crate::chat::parse_output(&lm, &request, &text);
        if !parsed.tool_calls.is_empty() {
            eprintln!(
                "tool_calls: {}",
                serde_json::to_string_pretty(&parsed.tool_calls)?
            );
        }
    }
    let pp = stats.prompt_tokens as f64 / stats.prefill_time.as_secs_f64().max(1e-9);
    let tg = stats.completion_tokens.saturating_sub(1) as f64
        / stats.decode_time.as_secs_f64().max(1e-9);
    eprintln!(
        "prompt: {} tokens, {:.2} tokens/s | generated: {} tokens, {:.2} tokens/s | finish: {:?}",
        stats.prompt_tokens, pp, stats.completion_tokens, tg, stats.finish
    );
    Ok(())
}

/// A chat request with an optional system message, one user message and optional tools.
pub fn chat_request(
    system: Option<&str>,
    user: &str,
    tools: Option<Vec<Tool>>,
) -> ChatCompletionRequest {
    let mut messages = vec![];
    if let Some(s) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: Some(MessageContent::Text(s.into())),
            ..Default::default()
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: Some(MessageContent::Text(user.into())),
        ..Default::default()
    });
    ChatCompletionRequest {
        messages,
        tools,
        ..Default::default()
    }
}

impl GenerateArgs {
    /// CPU threads requested with -t.
    pub fn threads(&self) -> Option<usize> {
        self.model.threads
    }

    /// The chat-template render limits asked for.
    pub fn template_limits(&self) -> &TemplateLimitArgs {
        &self.model.template_limits
    }
}
