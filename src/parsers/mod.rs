//! Tool-call output parsers: turn what a model wrote into OpenAI's uniform
//! `{content, tool_calls}` shape, one-shot or while the text streams in.
//!
//! Each output format is one [`ToolParser`] (one file each), found by name with [`get`];
//! a family's list of names becomes a [`ParserChain`] with [`chain`]. A parser is a
//! *scanner*: asked what the text at a position is, it answers with a [`Step`] (so much
//! content, a call segment, or "need more text"). The same scanning loop
//! ([`StreamParser`]) serves streaming and one-shot parsing, so both agree exactly as long
//! as every scanner only decides what later text cannot change.
//!
//! Parsed calls are checked against the request's tools ([`ParseOptions::tools`]):
//! undeclared functions stay in the content (with a warning) and argument values are
//! coerced to the declared JSON-Schema types (see `validate`). Content is the text outside
//! calls, trimmed at both ends, `None` when empty.
//!
//! Nested calls (NexusRaven, Python formats): an argument that is itself a call becomes
//! `{"__call__": "NAME", "arguments": {...}}` (see [`pylit`]).

pub mod chatglm3;
pub mod glaive;
pub mod gorilla;
pub mod hermes;
pub mod ids;
pub mod json_fallback;
pub mod llama3_json;
pub mod mistral;
pub mod nexusraven;
pub mod pylit;
pub mod pylit_json;
pub mod pythonic;
pub mod scan;
pub mod stream;
pub mod validate;

use std::sync::Arc;

use serde_json::Value;

use crate::openai::{ParsedOutput, Tool};

pub use ids::{IdGen, IdStyle};
pub use stream::{collect_events, StreamEvent, StreamParser};

/// Errors of parser lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParserError {
    /// No parser of that name.
    #[error("unknown tool-call parser '{name}'; known parsers: {known}")]
    Unknown {
        /// The requested name.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// An empty chain was requested.
    #[error("an empty list of tool-call parsers was given")]
    Empty,
}

/// Options of one parse: the request's tools and how call ids are made.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The tools of the request; `None` accepts every call as-is.
    pub tools: Option<Vec<Tool>>,
    /// Id shape; `None` uses the chain's default (Mistral's 9 alphanumerics when the chain has `mistral`).
    pub id_style: Option<IdStyle>,
    /// Seed of the id generator, for reproducible ids; `None` is random.
    pub id_seed: Option<u64>,
}

/// A call found by a scanner, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall {
    /// The function name as written.
    pub name: String,
    /// The arguments as parsed (normally an object).
    pub arguments: Value,
    /// The source text of this call, used as content when the call is rejected.
    pub raw: String,
}

/// What the text at a scan position is.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The next `n` bytes (n > 0) are content whatever text follows.
    Content(usize),
    /// The next `len` bytes are a call segment holding `calls` (none: the segment is dropped).
    Calls {
        /// Length of the segment in bytes.
        len: usize,
        /// The calls in the segment, in order.
        calls: Vec<RawCall>,
    },
    /// Undecidable until more text arrives (never returned at end of output).
    NeedMore,
}

/// What a scanner sees: all text so far, whether it is final, and the request's tools.
#[derive(Debug, Clone, Copy)]
pub struct ScanCx<'a> {
    /// The whole output received so far.
    pub text: &'a str,
    /// True when no more text will come.
    pub eof: bool,
    /// The request's tools, if any.
    pub tools: Option<&'a [Tool]>,
}

impl ScanCx<'_> {
    /// Whether a function of this name is declared (always true without tools).
    pub fn declared(&self, name: &str) -> bool {
        self.tools
            .is_none_or(|ts| ts.iter().any(|t| t.function.name == name))
    }

    /// Whether tools were given and one has this name.
    pub fn known(&self, name: &str) -> bool {
        self.tools
            .is_some_and(|ts| ts.iter().any(|t| t.function.name == name))
    }
}

/// One output format: a scanner deciding, position by position, what the text is.
pub trait ToolParser: Send + Sync + std::fmt::Debug {
    /// The registry name of the format (as in `models.toml` `parsers = [...]`).
    fn name(&self) -> &'static str;

    /// The id shape this format's models need.
    fn id_style(&self) -> IdStyle {
        IdStyle::OpenAi
    }

    /// Decides what the text at byte `pos` (a char boundary, `pos < text.len()`) is.
    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step;
}

/// Names of all parsers, in a stable order.
pub const PARSER_NAMES: &[&str] = &[
    "llama3_json",
    "pythonic",
    "mistral",
    "hermes",
    "glaive",
    "gorilla",
    "nexusraven",
    "chatglm3",
    "json_fallback",
];

/// Names of all parsers.
pub fn names() -> &'static [&'static str] {
    PARSER_NAMES
}

/// The parser called `name`, or an error listing the known names.
pub fn get(name: &str) -> Result<Arc<dyn ToolParser>, ParserError> {
    let p: Arc<dyn ToolParser> = match name.trim() {
        "llama3_json" => Arc::new(llama3_json::Llama3Json),
        "pythonic" => Arc::new(pythonic::Pythonic),
        "mistral" => Arc::new(mistral::Mistral),
        "hermes" => Arc::new(hermes::Hermes),
        "glaive" => Arc::new(glaive::Glaive),
        "gorilla" => Arc::new(gorilla::Gorilla),
        "nexusraven" => Arc::new(nexusraven::NexusRaven),
        "chatglm3" => Arc::new(chatglm3::ChatGlm3),
        "json_fallback" => Arc::new(json_fallback::JsonFallback),
        other => {
            return Err(ParserError::Unknown {
                name: other.to_string(),
                known: PARSER_NAMES.join(", "),
            })
        }
    };
    Ok(p)
}

/// Builds the chain of parsers named by `names`, tried in order at each position.
pub fn chain(names: &[String]) -> Result<ParserChain, ParserError> {
    if names.is_empty() {
        return Err(ParserError::Empty);
    }
    let parsers = names
        .iter()
        .map(|n| get(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParserChain { parsers })
}

/// Parses `text` one-shot with the chain named by `names`.
pub fn parse(
    names: &[String],
    text: &str,
    opts: &ParseOptions,
) -> Result<ParsedOutput, ParserError> {
    Ok(chain(names)?.parse(text, opts))
}

/// Several parsers tried in order: at each position the first that finds a call wins;
/// an earlier parser that still waits for text makes the chain wait.
#[derive(Debug, Clone)]
pub struct ParserChain {
    parsers: Vec<Arc<dyn ToolParser>>,
}

impl ParserChain {
    /// A chain of one parser.
    pub fn single(name: &str) -> Result<Self, ParserError> {
        Ok(ParserChain {
            parsers: vec![get(name)?],
        })
    }

    /// The names of the parsers in the chain.
    pub fn names(&self) -> Vec<&'static str> {
        self.parsers.iter().map(|p| p.name()).collect()
    }

    /// The id shape used when the options name none.
    pub fn id_style(&self) -> IdStyle {
        if self
            .parsers
            .iter()
            .any(|p| p.id_style() == IdStyle::Mistral9)
        {
            IdStyle::Mistral9
        } else {
            IdStyle::OpenAi
        }
    }

    /// Parses a complete output.
    pub fn parse(&self, text: &str, opts: &ParseOptions) -> ParsedOutput {
        let mut s = self.stream(opts.clone());
        let mut events = s.push(text);
        events.extend(s.finish());
        collect_events(&events)
    }

    /// A streaming parser for one output.
    pub fn stream(&self, opts: ParseOptions) -> StreamParser {
        StreamParser::new(self.clone(), opts)
    }

    /// How many parsers the chain holds.
    pub fn len(&self) -> usize {
        self.parsers.len()
    }

    /// Whether the chain is empty (never true for a chain built by [`chain`]).
    pub fn is_empty(&self) -> bool {
        self.parsers.is_empty()
    }

    /// The combined decision of the chain at `pos`.
    ///
    /// `until[i]` remembers how far parser `i` has promised content: it is not asked again
    /// before that position (this keeps chains linear when one parser sees far ahead).
    pub fn scan(&self, cx: &ScanCx<'_>, pos: usize, until: &mut [usize]) -> Step {
        let rest = cx.text.len() - pos;
        let mut content = rest;
        for (i, p) in self.parsers.iter().enumerate() {
            if let Some(&u) = until.get(i) {
                if u > pos {
                    content = content.min(u - pos);
                    continue;
                }
            }
            match p.scan(cx, pos) {
                Step::Calls { len, calls } if len > 0 => {
                    return Step::Calls {
                        len: len.min(rest),
                        calls,
                    }
                }
                Step::Calls { .. } => content = content.min(1),
                Step::NeedMore if !cx.eof => return Step::NeedMore,
                Step::NeedMore => {}
                Step::Content(n) => {
                    let n = n.clamp(1, rest);
                    if let Some(u) = until.get_mut(i) {
                        *u = pos + n;
                    }
                    content = content.min(n);
                }
            }
        }
        Step::Content(content)
    }
}
