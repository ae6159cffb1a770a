//! `callm parse`: runs tool-call parsers on model output read from stdin and prints
//! `{"content": ..., "tool_calls": [...]}` as JSON (call ids are random, as in a response).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::openai::{FunctionDefinition, ParsedOutput, Tool};
use crate::parsers::{self, collect_events, ParseOptions, ParserChain};
use crate::registry::Registry;

/// Arguments of `callm parse`.
#[derive(clap::Args, Debug)]
pub struct ParseArgs {
    /// A parser name, a comma-separated chain of them, or a model family name (its chain).
    #[arg(long, value_name = "NAME")]
    pub format: String,
    /// A JSON file holding the request's tools (an array of OpenAI tools or of function definitions).
    #[arg(long, value_name = "TOOLS.json")]
    pub tools: Option<PathBuf>,
    /// Run the streaming parser, feeding N-byte chunks (cut at char boundaries).
    #[arg(long, value_name = "N")]
    pub stream_chunks: Option<usize>,
}

/// Runs `callm parse`.
pub fn run(args: &ParseArgs) -> anyhow::Result<()> {
    let chain = resolve_chain(&args.format)?;
    let tools = match &args.tools {
        Some(path) => Some(read_tools(path)?),
        None => None,
    };
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading model output from stdin")?;
    let opts = ParseOptions {
        tools,
        id_style: None,
        id_seed: None,
    };
    let out = match args.stream_chunks {
        Some(n) => parse_streaming(&chain, &text, opts, n),
        None => chain.parse(&text, &opts),
    };
    super::print(&format!("{}\n", render(&out)))?;
    Ok(())
}

/// The chain named by `format`: a family of the registry, or parser names separated by commas.
pub fn resolve_chain(format: &str) -> anyhow::Result<ParserChain> {
    let registry = Registry::load()?;
    if let Some(family) = registry.get(format.trim()) {
        return Ok(parsers::chain(&family.parsers)?);
    }
    let names: Vec<String> = format
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    parsers::chain(&names).map_err(|e| {
        let families: Vec<&str> = registry
            .families()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        anyhow::anyhow!("{e}; or a model family: {}", families.join(", "))
    })
}

/// Reads tools from a JSON file: OpenAI tools, or bare function definitions.
pub fn read_tools(path: &std::path::Path) -> anyhow::Result<Vec<Tool>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(tools) = serde_json::from_str::<Vec<Tool>>(&text) {
        return Ok(tools);
    }
    let funcs: Vec<FunctionDefinition> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON array of tools", path.display()))?;
    Ok(funcs.into_iter().map(Tool::function).collect())
}

/// Parses `text` with the streaming parser, `n`-byte chunks cut at char boundaries.
pub fn parse_streaming(
    chain: &ParserChain,
    text: &str,
    opts: ParseOptions,
    n: usize,
) -> ParsedOutput {
    let n = n.max(1);
    let mut s = chain.stream(opts);
    let mut events = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let mut j = (i + n).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        events.extend(s.push(&text[i..j]));
        i = j;
    }
    events.extend(s.finish());
    collect_events(&events)
}

/// The printed JSON: `{"content": ..., "tool_calls": [...]}`.
pub fn render(out: &ParsedOutput) -> String {
    serde_json::json!({ "content": out.content, "tool_calls": out.tool_calls }).to_string()
}
