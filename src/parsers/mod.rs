//! Tool-call output formats and their parsers: turn what a model wrote into OpenAI's uniform
//! `{content, tool_calls}` shape, one-shot or while the text streams in.
//!
//! A format is one [`ToolFormat`] (one file each in `formats/`, listed once in
//! `formats/mod.rs`): its scanner, its call grammar description (for `constrain`), its
//! forced call openings and its id style. [`Format`] names them; `models.toml` lists a
//! family's formats, which become a [`ParserChain`] ([`chain`]). A scanner, asked what the
//! text at a position is, answers with a [`Step`] (so much content, a call segment, or
//! "need more text"). The same scanning loop ([`StreamParser`]) serves streaming and one-shot
//! parsing, so both agree exactly as long as every scanner only decides what later text
//! cannot change.
//!
//! Parsed calls are checked against the request's tools ([`ParseOptions::tools`]):
//! undeclared functions stay in the content (with a warning) and argument values are
//! coerced to the declared JSON-Schema types (see `validate`). Content is the text outside
//! calls, trimmed at both ends, `None` when empty.
//!
//! Nested calls (NexusRaven, Python formats): an argument that is itself a call becomes
//! `{"__call__": "NAME", "arguments": {...}}` (see [`pylit`]).
//!
//! Shared machinery: `chain` (a family's formats tried in order), `stream` (the loop),
//! `markers` (end markers and leading role labels dropped before scanning),
//! `scan` (marker, JSON and call readers), `pylit`/`pylit_json` (Python literals),
//! `validate` (declared names, schema coercion), `ids` (call ids), and in front of them all
//! `reasoning` (a thinking model's `<think>` block split off the answer).

pub mod answer;
pub mod chain;
pub mod cut;
pub mod format;
pub mod formats;
pub mod ids;
pub mod markers;
pub mod pylit;
pub mod pylit_json;
pub mod reasoning;
pub mod scan;
pub mod stream;
pub mod validate;

use serde_json::Value;

use crate::openai::{ParsedOutput, Tool};

pub use answer::AnswerStream;
pub use chain::ParserChain;
pub use format::{CallGrammar, CallList, CallSyntax, ToolFormat};
pub use formats::Format;
pub use ids::{IdGen, IdStyle};
pub use reasoning::{Piece, Reasoning, ReasoningSplitter};
pub use stream::{collect_events, collect_reasoning, StreamEvent, StreamParser};

/// Errors of parser lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParserError {
    /// No format of that name.
    #[error("unknown tool-call format '{name}'; known formats: {known}")]
    Unknown {
        /// The requested name.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// An empty chain was requested.
    #[error("an empty list of tool-call formats was given")]
    Empty,
}

/// Options of one parse: the request's tools and how call ids are made.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The tools of the request; `None` accepts every call as-is.
    pub tools: Option<Vec<Tool>>,
    /// Id shape; `None` uses the chain's default (Mistral's 9 alphanumerics when the chain has `mistral`).
    pub id_style: Option<IdStyle>,
    /// Seed of the id generator, for reproducible ids in tests and tools; `None` is random.
    /// Never set it from a request (its `seed`): ids must be unique across requests.
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

/// Names of all formats, in list order.
pub fn names() -> Vec<&'static str> {
    Format::ALL.iter().map(|f| f.name()).collect()
}

/// The format called `name`, or an error listing the known names.
pub fn get(name: &str) -> Result<Format, ParserError> {
    Format::from_name(name).ok_or_else(|| ParserError::Unknown {
        name: name.trim().to_string(),
        known: Format::known(),
    })
}

/// Builds the chain of the formats named by `names` (names or [`Format`]s), tried in order
/// at each position.
pub fn chain<N: AsRef<str>>(names: &[N]) -> Result<ParserChain, ParserError> {
    let formats = names
        .iter()
        .map(|n| get(n.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    ParserChain::new(formats)
}

/// Parses `text` one-shot with the chain named by `names`.
pub fn parse<N: AsRef<str>>(
    names: &[N],
    text: &str,
    opts: &ParseOptions,
) -> Result<ParsedOutput, ParserError> {
    Ok(chain(names)?.parse(text, opts))
}

/// The id shape of a list of formats: Mistral's 9 alphanumerics when one of them needs it.
pub fn id_style_of(formats: &[Format]) -> IdStyle {
    if formats
        .iter()
        .any(|f| f.def().id_style() == IdStyle::Mistral9)
    {
        IdStyle::Mistral9
    } else {
        IdStyle::OpenAi
    }
}
