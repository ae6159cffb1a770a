//! `callm chat`: an interactive terminal chat on the server's request path: each turn is an
//! OpenAI chat request converted at the same edge as the server's (`crate::request::openai`)
//! and run on a [`ChatBackend`]. It keeps the history, streams the assistant's text, prints
//! tool calls as JSON and asks the user for each tool's result. Works with piped (non-TTY)
//! input, one line per answer.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use crate::chat::{ChatBackend, ChatEvent};
use crate::engine::CancelToken;
use crate::openai::{
    ChatCompletionRequest, ChatMessage, FunctionCall, FunctionDefinition, MessageContent,
    NamedFunction, NamedToolChoice, Tool, ToolCall, ToolChoice,
};
use crate::request::{ChatRequest, Effort};

/// Most model turns in a row without a user message (tool call rounds).
const MAX_TOOL_ROUNDS: usize = 8;

/// Options of `callm chat` (flattened next to the model options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChatOptions {
    /// JSON file with the tools: an OpenAI `tools` array, `{"tools": [...]}`, or function definitions.
    #[arg(long)]
    pub tools: Option<PathBuf>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// `tool_choice`: none, auto, required, or a function name.
    #[arg(long)]
    pub tool_choice: Option<String>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Most tokens per answer.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How much a thinking model reasons (`none` turns its thinking off; see the README's
    /// "Reasoning").
    #[arg(long, value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(Effort::NAMES))]
    pub reasoning_effort: Option<String>,
}

/// Reads a tools file into OpenAI `tools`.
pub fn load_tools(path: &Path) -> anyhow::Result<Vec<Tool>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let items = match value {
        Value::Object(mut o) if o.contains_key("tools") => o.remove("tools").unwrap_or(Value::Null),
        other => other,
    };
    let Value::Array(items) = items else {
        anyhow::bail!("{}: expected a JSON array of tools", path.display());
    };
    items
        .into_iter()
        .map(|item| {
            if item.get("function").is_some() {
                serde_json::from_value::<Tool>(item).context("invalid tool")
            } else {
                serde_json::from_value::<FunctionDefinition>(item)
                    .map(Tool::function)
                    .context("invalid function definition")
            }
        })
        .collect()
}

fn tool_choice(opt: Option<&str>) -> Option<ToolChoice> {
    opt.map(|c| match c {
        "none" | "auto" | "required" => ToolChoice::Mode(c.to_string()),
        name => ToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: NamedFunction {
                name: name.to_string(),
            },
        }),
    })
}

fn text_message(role: &str, text: &str) -> ChatMessage {
    ChatMessage {
        role: role.to_string(),
        content: Some(MessageContent::Text(text.to_string())),
        ..Default::default()
    }
}

/// Runs the chat on the terminal (stdin/stdout) until `/exit` or end of input.
pub fn run_chat(backend: &dyn ChatBackend, opts: &ChatOptions) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_chat_io(backend, opts, &mut input, &mut out, interactive)
}

fn read_line(input: &mut dyn BufRead) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line).context("cannot read input")? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Runs the chat on the given streams; `interactive` adds prompts and help.
pub fn run_chat_io(
    backend: &dyn ChatBackend,
    opts: &ChatOptions,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    interactive: bool,
) -> anyhow::Result<()> {
    let tools = opts.tools.as_deref().map(load_tools).transpose()?;
    let mut base = Vec::new();
    if let Some(system) = &opts.system {
        base.push(text_message("system", system));
    }
    let mut history = base.clone();
    if interactive {
        writeln!(
            out,
            "callm chat with {} (/reset clears the history, /exit quits)",
            backend.model_id()
        )?;
    }
    loop {
        if interactive {
            write!(out, "you> ")?;
            out.flush()?;
        }
        let Some(line) = read_line(input)? else {
            break;
        };
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = base.clone();
                continue;
            }
            _ => {}
        }
        let mark = history.len();
        history.push(text_message("user", &line));
        if !assistant_turns(
            backend,
            opts,
            tools.as_ref(),
            &mut history,
            input,
            out,
            interactive,
        )? {
            history.truncate(mark);
        }
    }
    Ok(())
}

/// Runs model turns until an answer without tool calls; false if the turn failed.
fn assistant_turns(
    backend: &dyn ChatBackend,
    opts: &ChatOptions,
    tools: Option<&Vec<Tool>>,
    history: &mut Vec<ChatMessage>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    interactive: bool,
) -> anyhow::Result<bool> {
    for round in 0..MAX_TOOL_ROUNDS {
        let body = ChatCompletionRequest {
            model: Some(backend.model_id().to_string()),
            messages: history.clone(),
            tools: tools.cloned(),
            tool_choice: if round == 0 {
                tool_choice(opts.tool_choice.as_deref())
            } else {
                None
            },
            temperature: opts.temperature,
            max_tokens: opts.max_tokens,
            seed: opts.seed,
            reasoning_effort: opts.reasoning_effort.clone(),
            stream: Some(true),
            ..Default::default()
        };
        let req = match ChatRequest::try_from(body) {
            Ok(req) => req,
            Err(e) => {
                writeln!(out, "error: {}", e.message)?;
                return Ok(false);
            }
        };
        if interactive {
            write!(out, "assistant> ")?;
        }
        let cancel = CancelToken::new();
        let mut write_failed = false;
        let mut on_event = |ev: ChatEvent| {
            match ev {
                ChatEvent::Content(text) => {
                    write_failed |= write!(out, "{text}").and_then(|()| out.flush()).is_err();
                }
                // A thinking model's reasoning goes to stderr, apart from the answer.
                ChatEvent::Reasoning(text) => eprint!("{text}"),
                _ => {}
            }
            !write_failed
        };
        let result = backend.chat(&req, 0, &cancel, &mut on_event);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                writeln!(out, "\nerror: {e}")?;
                return Ok(false);
            }
        };
        let msg = outcome.message;
        if msg.content.as_deref().is_some_and(|c| !c.is_empty()) {
            writeln!(out)?;
        }
        let calls: Vec<ToolCall> = msg
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect();
        if msg.reasoning_content.is_some() {
            eprintln!();
        }
        history.push(ChatMessage {
            role: "assistant".into(),
            content: msg.content.map(MessageContent::Text),
            tool_calls: (!calls.is_empty()).then(|| calls.clone()),
            reasoning_content: msg.reasoning_content,
            ..Default::default()
        });
        if calls.is_empty() {
            return Ok(true);
        }
        for call in &calls {
            let args: Value = serde_json::from_str(&call.function.arguments)
                .unwrap_or_else(|_| Value::String(call.function.arguments.clone()));
            let shown = json!({"id": call.id, "name": call.function.name, "arguments": args});
            writeln!(out, "tool call: {shown}")?;
            if interactive {
                write!(out, "result of {} ({})> ", call.function.name, call.id)?;
                out.flush()?;
            }
            let Some(result) = read_line(input)? else {
                return Ok(false);
            };
            history.push(ChatMessage {
                role: "tool".into(),
                content: Some(MessageContent::Text(result)),
                tool_call_id: Some(call.id.clone()),
                ..Default::default()
            });
        }
    }
    writeln!(out, "error: too many tool-call rounds in a row")?;
    Ok(false)
}
